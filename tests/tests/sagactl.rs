//! `sagactl` against a running system: JSON output for scripts, ids percent-encoded, a closed
//! pipe ends it quietly, and shell completions.

use std::process::{Command, Stdio};

use sagaflow_tests::procs::binary;
use sagaflow_tests::system::System;
use serde_json::{json, Value};

fn sagactl(api: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary("sagactl")).arg("--api").arg(api).args(args).stdin(Stdio::null()).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagactl_speaks_json_encodes_ids_and_ends_quietly_on_a_closed_pipe() {
    let s = System::start("sagactl").await;
    let api = s.orchestrator.http.clone();
    for (id, user) in [("cli:one.1", "carol"), ("cli-two", "dave")] {
        let body = json!({ "orderId": id, "userId": user, "items": [{ "productId": "abc", "quantity": 1 }] });
        assert_eq!(s.place(&body.to_string()).await, 202);
        assert_eq!(s.wait_terminal(id).await["state"], "completed");
    }
    let run = |args: &[&str]| {
        let out = sagactl(&api, args);
        assert!(out.status.success(), "sagactl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    // JSON for scripts, with the filters of the API.
    let page: Value = serde_json::from_slice(&run(&["-o", "json", "list", "--user", "carol"])).unwrap();
    let ids: Vec<&str> =
        page["orders"].as_array().unwrap().iter().filter_map(|o| o["orderId"].as_str()).collect();
    assert_eq!(ids, ["cli:one.1"], "{page}");
    let order: Value = serde_json::from_slice(&run(&["status", "cli:one.1", "-o", "json"])).unwrap();
    assert_eq!(order["state"], "completed", "{order}");
    // A finished saga's compensations will never run: not "pending".
    for step in order["steps"].as_array().unwrap() {
        if let Some(state) = step["compensation"]["state"].as_str() {
            assert_eq!(state, "not_needed", "{step}");
        }
    }
    let table = String::from_utf8(run(&["status", "cli:one.1"])).unwrap();
    assert!(table.contains("LAST ERROR") && !table.contains("pending"), "{table}");
    // An id is one path segment: `#` would otherwise cut the URL to /orders/cli.
    let out = sagactl(&api, &["status", "cli#one"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("422"), "the id reached the API whole: {err}");
    // A reader that goes away: no panic, no message.
    let mut child = Command::new(binary("sagactl"))
        .args(["--api", &api, "list"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    // Completions for a shell.
    let script = String::from_utf8(run(&["completions", "bash"])).unwrap();
    assert!(script.contains("_sagactl") && script.contains("--output"), "{script}");
}

/// `purge` lists a namespace's queues and exchanges, and deletes them only with `--yes`;
/// `retry --all-stuck` goes through every stuck order (none here) and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagactl_purges_a_namespace_only_when_told_to() {
    let url = sagaflow_tests::amqp_url();
    let namespace = sagaflow_tests::unique_namespace("purge");
    let bus = sagaflow_tests::bus::TestBus::connect(&url, &namespace).await;
    let queue = bus.topology.replies_queue();
    let exists = || async {
        let connection =
            lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        channel
            .queue_declare(queue.as_str().into(), options, lapin::types::FieldTable::default())
            .await
            .is_ok()
    };
    let purge = |yes: bool| {
        let mut args = vec!["purge", "--namespace", &namespace, "--amqp-url", &url];
        if yes {
            args.push("--yes");
        }
        let out = sagactl("http://127.0.0.1:1", &args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = purge(false);
    assert!(listed.contains(&queue) && listed.contains("--yes"), "{listed}");
    // -o json: stdout is one JSON document; the text for people went to stderr.
    let out = sagactl("http://127.0.0.1:1", &["-o", "json", "purge", "--namespace", &namespace]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(listed["queues"].as_array().unwrap().iter().any(|q| q == queue.as_str()), "{listed}");
    assert_eq!(listed["deleted"], false);
    assert!(exists().await, "nothing is deleted without --yes");
    purge(true);
    assert!(!exists().await, "deleted with --yes");

    let s = System::start("retry-all").await;
    let out = sagactl(&s.orchestrator.http, &["-o", "json", "retry", "--all-stuck"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary, json!({ "retried": [], "skipped": 0 }));
    // `check -o json`: the verdict as JSON, every invariant with what broke it.
    let [payment, inventory, notification] = [&s.payment.http, &s.inventory.http, &s.notification.http];
    let out = sagactl(
        &s.orchestrator.http,
        &[
            "-o",
            "json",
            "check",
            "--payment",
            payment,
            "--inventory",
            inventory,
            "--notification",
            notification,
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let verdict: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["invariants"].as_array().map(Vec::len), Some(5), "{verdict}");
}

/// `sagactl up` refuses ports that are taken, before it starts anything.
#[test]
fn sagactl_up_refuses_ports_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(binary("sagactl"))
        .args(["up", "--base-port", "1", "--orchestrator-port", &port, "--namespace", "unused"])
        .arg("--data-dir")
        .arg(data.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port {port} (orchestrator) is in use")), "{err}");
}

/// `sagactl watch ID` follows the stream: each change of that order, as it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagactl_watch_follows_one_order() {
    use std::io::BufRead;

    let s = System::start("watch").await;
    let mut child = Command::new(binary("sagactl"))
        .args(["--api", &s.orchestrator.http, "-o", "json", "watch", "watched-1", "--after", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("\"completed\"");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    // From the start of the feed, so it does not matter whether it connects before the order.
    let body =
        json!({ "orderId": "watched-1", "userId": "erin", "items": [{ "productId": "abc", "quantity": 1 }] });
    assert_eq!(s.place(&body.to_string()).await, 202);
    let seen = tokio::task::spawn_blocking(move || lines.join().unwrap()).await.unwrap();
    child.kill().unwrap();
    let _ = child.wait();
    let changes: Vec<Value> = seen.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        changes.iter().all(|c| c["event"] == "change" && c["data"]["orderId"] == "watched-1"),
        "{seen:?}"
    );
    assert_eq!(changes.last().unwrap()["data"]["state"], "completed", "{seen:?}");
    assert!(changes.len() >= 4, "running through three steps, then completed: {seen:?}");
}

/// `sagactl bench` starts a private RabbitMQ node, detached. SIGTERM used to end sagactl on the
/// spot and leave the node running; now sagactl stops it (and the programs) before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagactl_bench_stopped_by_a_signal_stops_its_private_broker() {
    use sagaflow_tests::wait;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("bench.log")).unwrap();
    // Its data folder is under the working folder, so the node's environment names this folder.
    let mut bench = Command::new(binary("sagactl"))
        .args(["bench", "--smoke", "--phases", "saga", "--out"])
        .arg(dir.path().join("out"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let folder = dir.path().display().to_string();
    let nodes = || sagaflow_tests::procs::with_environment("beam.smp", "RABBITMQ_MNESIA_BASE", &folder);
    let log = || std::fs::read_to_string(dir.path().join("bench.log")).unwrap_or_default();
    wait::until("the bench's private node to start", Duration::from_secs(90), || async {
        (!nodes().is_empty()).then_some(())
    })
    .await;
    let status = sagaflow_tests::procs::terminate(&mut bench, Duration::from_secs(90)).expect("SIGTERM sent");
    // Not `wait::until`: whatever is left must be killed before the test fails.
    let gone = Instant::now() + Duration::from_secs(30);
    while !nodes().is_empty() && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left = nodes();
    for pid in &left {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    }
    assert!(left.is_empty(), "the private node outlived sagactl: {left:?}; sagactl's log:\n{}", log());
    // Not the signal's default action: sagactl ended by itself, saying it was stopped.
    assert_eq!(status.and_then(|s| s.code()), Some(130), "{}", log());
}
