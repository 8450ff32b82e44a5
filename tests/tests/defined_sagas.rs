//! A saga defined as data, run by participants in another language: the real orchestrator with
//! `examples/trip/trip.toml`, and the Python participants of `examples/trip/participant.py`
//! (pika, installed by `scripts/python.sh`) on the real broker. Each test has its own namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sagaflow_events::Topology;
use sagaflow_tests::bus::TestBus;
use sagaflow_tests::procs::Program;
use sagaflow_tests::{amqp_url, unique_namespace, wait};
use serde_json::{json, Value};

const PARTICIPANTS: [&str; 3] = ["flights", "hotels", "confirmations"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Python with pika that `scripts/python.sh` made.
fn python() -> PathBuf {
    let venv = std::env::var_os("SAGAFLOW_PYENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/sagaflow/pyenv")
    });
    let python = venv.join("bin/python");
    assert!(python.exists(), "{} is missing: run scripts/python.sh (make test does)", python.display());
    python
}

/// One Python participant process; SIGKILLed when dropped.
struct PythonParticipant {
    name: &'static str,
    args: Vec<String>,
    log: PathBuf,
    data: PathBuf,
    child: Child,
}

impl PythonParticipant {
    fn start(name: &'static str, namespace: &str, dir: &Path) -> Self {
        let data = dir.join(format!("{name}.db"));
        let args = vec![
            repo().join("examples/trip/participant.py").display().to_string(),
            "serve".into(),
            "--participant".into(),
            name.into(),
            "--namespace".into(),
            namespace.into(),
            "--amqp-url".into(),
            amqp_url(),
            "--data".into(),
            data.display().to_string(),
        ];
        let log = dir.join(format!("{name}.log"));
        let child = Self::spawn(&args, &log);
        Self { name, args, log, data, child }
    }

    fn spawn(args: &[String], log: &Path) -> Child {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log");
        Command::new(python())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("start the Python participant")
    }

    /// SIGKILL, as a crash would; nothing is flushed or closed.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.child = Self::spawn(&self.args, &self.log);
    }

    /// What its books hold, read by the participant's own code.
    fn books(&self) -> Vec<Value> {
        let out = Command::new(python())
            .arg(repo().join("examples/trip/participant.py"))
            .args(["books", "--data"])
            .arg(&self.data)
            .output()
            .expect("read the books");
        assert!(out.status.success(), "books of {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("books are JSON")
    }
}

impl Drop for PythonParticipant {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fields drop in order: the participants and the orchestrator stop before the test bus
/// deletes the namespace.
struct Trip {
    participants: Vec<PythonParticipant>,
    orchestrator: Program,
    namespace: String,
    bus: TestBus,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Trip {
    async fn start(test: &str) -> Self {
        let mut trip = Self::start_without_participants(test, &repo().join("examples/trip/trip.toml")).await;
        trip.start_participants();
        trip
    }

    /// The orchestrator with the definition at `file`, and nobody serving the trip's steps yet.
    async fn start_without_participants(test: &str, file: &Path) -> Self {
        let namespace = unique_namespace(test);
        let mut bus = TestBus::connect(&amqp_url(), &namespace).await;
        // So that the clean-up deletes the trip's queues too.
        bus.topology = Topology::new(namespace.as_str()).with_participants(PARTICIPANTS);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = file.display().to_string();
        let orchestrator = Program::start(
            "orchestrator",
            &namespace,
            &amqp_url(),
            dir.path().join("orchestrator"),
            &[("SAGA_FILES", &file)],
        );
        orchestrator.wait_healthy(Duration::from_secs(30)).await;
        Self {
            participants: Vec::new(),
            orchestrator,
            namespace,
            bus,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Starts the Python participants: after the orchestrator, which declared their queues as
    /// it connected.
    fn start_participants(&mut self) {
        self.participants = PARTICIPANTS
            .iter()
            .map(|p| PythonParticipant::start(p, &self.namespace, self._dir.path()))
            .collect();
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.orchestrator.http))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("POST");
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.orchestrator.http)).send().await.expect("GET");
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    async fn book(&self, id: &str, to: &str) {
        let input =
            json!({ "from": "AMS", "to": to, "nights": 3, "travellers": 2, "email": "a@example.com" });
        let (status, body) = self.post("/sagas/trip", &json!({ "id": id, "input": input })).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["saga"], "trip");
    }

    /// Waits until the trip ended (completed or compensated) and returns it.
    async fn ended(&self, id: &str, timeout: Duration) -> Value {
        wait::until(&format!("trip {id} to end"), timeout, || async {
            let (_, trip) = self.get(&format!("/sagas/trip/{id}")).await;
            matches!(trip["state"].as_str(), Some("completed" | "compensated")).then_some(trip)
        })
        .await
    }

    fn logs(&self) -> String {
        let mut text = self.orchestrator.log_text();
        for p in &self.participants {
            text += &format!("\n--- {}\n{}", p.name, std::fs::read_to_string(&p.log).unwrap_or_default());
        }
        text
    }

    /// Every active booking, by (saga key, step).
    fn active_bookings(&self) -> Vec<(String, String)> {
        let mut active = Vec::new();
        for p in &self.participants {
            for b in p.books() {
                if b["active"] == true {
                    active.push((
                        b["key"].as_str().unwrap().to_owned(),
                        b["step"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        active
    }
}

#[tokio::test]
async fn a_trip_completes_and_a_refused_hotel_cancels_the_flight() {
    let trip = Trip::start("trip").await;

    trip.book("t-ok", "LIS").await;
    let done = trip.ended("t-ok", Duration::from_secs(60)).await;
    assert_eq!(done["state"], "completed", "{done}\n{}", trip.logs());
    assert_eq!(done["orderId"], "trip/t-ok");
    assert_eq!(done["definition"]["name"], "trip");
    assert_eq!(done["input"]["to"], "LIS");
    let flight_ref = done["results"]["flight"]["flightRef"].as_str().expect("the flight's result is kept");
    assert!(flight_ref.starts_with("F-"), "{done}");
    assert!(done["results"]["hotel"]["hotelRef"].as_str().is_some_and(|r| r.starts_with("H-")), "{done}");

    trip.book("t-atlantis", "Atlantis").await;
    let refused = trip.ended("t-atlantis", Duration::from_secs(60)).await;
    assert_eq!(refused["state"], "compensated", "{refused}\n{}", trip.logs());
    assert_eq!(refused["reason"], "no_rooms");
    let steps = refused["steps"].as_array().unwrap();
    assert_eq!(steps[0]["state"], "compensated", "the flight was cancelled: {refused}");
    assert_eq!(steps[1]["state"], "failed");
    assert_eq!(refused["compensationPlan"], json!(["flight"]));

    // The confirmation carried both references, taken from the earlier steps' results.
    let confirmations = trip.participants[2].books();
    assert_eq!(confirmations.len(), 1, "{confirmations:?}");
    assert_eq!(confirmations[0]["detail"]["flight"], flight_ref);
    // The books: the completed trip holds a flight, a hotel and a confirmation; the refused
    // one holds nothing.
    let mut active = trip.active_bookings();
    active.sort();
    let expected: Vec<(String, String)> =
        ["confirm", "flight", "hotel"].iter().map(|s| ("trip/t-ok".to_owned(), (*s).to_owned())).collect();
    assert_eq!(active, expected);

    // The front door checks the input against the file's schema, and names the field.
    let bad = json!({ "id": "t-bad", "input": { "from": "AMS", "to": "LIS", "nights": "three", "travellers": 2, "email": "a@b" } });
    let (status, body) = trip.post("/sagas/trip", &bad).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("nights"), "{body}");
    let (status, _) = trip.get("/sagas/trip/t-bad").await;
    assert_eq!(status, 404, "a refused input starts nothing");
    // Idempotent by id: the same input is the same saga; another is a conflict.
    let again = json!({ "id": "t-ok", "input": { "from": "AMS", "to": "LIS", "nights": 3, "travellers": 2, "email": "a@example.com" } });
    assert_eq!(trip.post("/sagas/trip", &again).await.0, 202);
    let other = json!({ "id": "t-ok", "input": { "from": "AMS", "to": "OPO", "nights": 3, "travellers": 2, "email": "a@example.com" } });
    assert_eq!(trip.post("/sagas/trip", &other).await.0, 409);
    assert_eq!(trip.post("/sagas/cruise", &again).await.0, 404, "no such definition");
    assert_eq!(trip.post("/sagas/order", &again).await.0, 404, "orders start at /orders");
    // Listed beside orders, and by definition.
    let (_, page) = trip.get("/sagas?saga=trip").await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 2, "{page}");
    let (_, orders) = trip.get("/orders").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 0, "/orders lists orders only: {orders}");
    // Finished sagas cannot be cancelled.
    assert_eq!(trip.post("/sagas/trip/t-ok/cancel", &json!({})).await.0, 409);

    // The console shows it, addressed by its key (the `/` sent encoded), with its input.
    let page = trip
        .http
        .get(format!("{}/console/sagas/trip%2Ft-ok", trip.orchestrator.http))
        .send()
        .await
        .expect("console");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Saga trip") && html.contains("LIS") && html.contains(flight_ref), "{html}");
    // And so does sagactl.
    let out = Command::new(sagaflow_tests::procs::binary("sagactl"))
        .args(["--api", &trip.orchestrator.http, "status", "trip/t-ok"])
        .stdin(Stdio::null())
        .output()
        .expect("sagactl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("completed") && text.contains(flight_ref), "{text}");
    let out = Command::new(sagaflow_tests::procs::binary("sagactl"))
        .args(["--api", &trip.orchestrator.http, "list", "--saga", "trip"])
        .stdin(Stdio::null())
        .output()
        .expect("sagactl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("trip/t-atlantis") && text.contains("no_rooms"), "{text}");
}

/// A participant SIGKILLed and restarted while trips run: every trip ends, and the books hold
/// exactly what the ends say: one booking per step of a completed trip, none of a
/// compensated one, and nothing booked twice.
#[tokio::test]
async fn a_python_participant_killed_mid_run_leaves_the_books_right() {
    let mut trip = Trip::start("trip-kill").await;
    let ids: Vec<String> = (0..30).map(|i| format!("k-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Every fifth trip goes where the hotel refuses, so compensation runs across the kill.
        trip.book(id, if i % 5 == 4 { "Atlantis" } else { "LIS" }).await;
        if i == 8 {
            trip.participants[0].kill();
        }
        if i == 14 {
            trip.participants[1].kill();
            trip.participants[0].restart();
        }
        if i == 20 {
            trip.participants[1].restart();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut ends = std::collections::BTreeMap::new();
    for id in &ids {
        let end = trip.ended(id, Duration::from_secs(120)).await;
        ends.insert(format!("trip/{id}"), end["state"].as_str().unwrap().to_owned());
    }
    let compensated = ends.values().filter(|s| *s == "compensated").count();
    assert!(compensated >= 6, "the refused hotels compensate: {ends:?}\n{}", trip.logs());

    // Nothing booked twice, whatever was redelivered across the kills.
    let mut all = Vec::new();
    for p in &trip.participants {
        for b in p.books() {
            all.push((b["key"].as_str().unwrap().to_owned(), b["step"].as_str().unwrap().to_owned()));
        }
    }
    let mut unique = all.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(all.len(), unique.len(), "a step was booked twice: {all:?}");
    // The books match the ends.
    let active = trip.active_bookings();
    for (key, state) in &ends {
        let mut held: Vec<&str> = active.iter().filter(|(k, _)| k == key).map(|(_, s)| s.as_str()).collect();
        held.sort();
        let expected: &[&str] = if state == "completed" { &["confirm", "flight", "hotel"] } else { &[] };
        assert_eq!(held, expected, "{key} ended {state}\n{}", trip.logs());
    }
}

/// Versions in flight, for a defined saga: a trip started under version 1 finishes under it
/// after the orchestrator restarts with version 2, which new trips get; and an orchestrator
/// started without the trip's file while a trip is in flight refuses to start, naming it.
#[tokio::test]
async fn trips_in_flight_keep_their_version_and_their_definition_cannot_vanish() {
    let files = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo().join("examples/trip/trip.toml")).unwrap();
    std::fs::copy(repo().join("examples/trip/trip.schema.json"), files.path().join("trip.schema.json"))
        .unwrap();
    // Version 1 waits long for the flight, so nothing times out while the test restarts things.
    let v1 = shipped.replacen("timeout = \"3s\"", "timeout = \"30s\"", 1);
    let v2 = v1.replacen("version = 1", "version = 2", 1).replacen("attempts = 4", "attempts = 5", 1);
    let (path_v1, path_v2) = (files.path().join("trip-v1.toml"), files.path().join("trip-v2.toml"));
    std::fs::write(&path_v1, &v1).unwrap();
    std::fs::write(&path_v2, &v2).unwrap();

    let mut trip = Trip::start_without_participants("trip-versions", &path_v1).await;
    trip.book("v1-a", "LIS").await;
    let (_, waiting) = trip.get("/sagas/trip/v1-a").await;
    assert_eq!(
        (waiting["state"].as_str(), waiting["steps"][0]["state"].as_str()),
        (Some("running"), Some("running"))
    );
    trip.orchestrator.terminate(Duration::from_secs(20)).expect("the orchestrator stops on SIGTERM");

    // Without the trip's file: refused, in one line that names the saga and the trip in flight.
    let addr = format!("127.0.0.1:{}", sagaflow_tests::procs::free_port());
    let data = trip.orchestrator.data_dir.display().to_string();
    let url = amqp_url();
    let env = [
        ("HTTP_ADDR", addr.as_str()),
        ("DATA_DIR", &data),
        ("SAGA_NAMESPACE", &trip.namespace),
        ("AMQP_URL", &url),
    ];
    let (status, out) = Program::run_to_exit("orchestrator", &env, Duration::from_secs(20));
    let status = status.unwrap_or_else(|| panic!("the orchestrator kept running:\n{out}"));
    assert!(!status.success(), "exited {status}: {out}");
    assert_eq!(out.trim().lines().count(), 1, "more than one line:\n{out}");
    assert!(out.contains("\"trip\"") && out.contains("trip/v1-a") && out.contains("1 of its sagas"), "{out}");

    // With version 2: the trip in flight finishes under version 1, a new one runs under 2.
    trip.orchestrator.set_env("SAGA_FILES", &path_v2.display().to_string());
    trip.orchestrator.restart_and_wait().await;
    trip.start_participants();
    trip.book("v2-a", "LIS").await;
    let old = trip.ended("v1-a", Duration::from_secs(60)).await;
    assert_eq!(
        (old["state"].as_str(), old["definition"]["version"].as_u64()),
        (Some("completed"), Some(1)),
        "{old}"
    );
    let new = trip.ended("v2-a", Duration::from_secs(60)).await;
    assert_eq!(
        (new["state"].as_str(), new["definition"]["version"].as_u64()),
        (Some("completed"), Some(2)),
        "{new}"
    );
    assert_ne!(old["definition"]["fingerprint"], new["definition"]["fingerprint"]);
}

/// Replies are untrusted input too: a forged, misdirected or oversized reply to a defined saga
/// changes nothing (what cannot be read is dead-lettered, with its reason), and the genuine
/// reply that follows still moves the saga and its result is kept.
#[tokio::test]
async fn forged_replies_to_a_defined_saga_change_nothing() {
    let trip = Trip::start_without_participants("trip-forged", &repo().join("examples/trip/trip.toml")).await;
    trip.book("h-1", "LIS").await;
    let (_, waiting) = trip.get("/sagas/trip/h-1").await;
    let saga_id = waiting["sagaId"].as_str().unwrap().to_owned();
    let reply = |saga_id: &str, step: &str, result: Value| {
        json!({
            "sagaId": saga_id, "saga": "trip", "id": "h-1", "step": step, "phase": "action",
            "attempt": 1, "idempotencyKey": format!("{saga_id}/{step}/action"),
            "outcome": "succeeded", "result": result,
        })
    };
    let exchange = trip.bus.topology.replies_exchange();
    let forged = [
        // Readable, and ignored: another incarnation's saga id, a step the saga does not have,
        // a saga that is not defined.
        reply("someone-else", "flight", json!({ "flightRef": "F-forged" })),
        reply(&saga_id, "nowhere", json!({})),
        {
            let mut r = reply(&saga_id, "flight", json!({}));
            r["saga"] = "order".into();
            r
        },
        // Unreadable, and dead-lettered: a result over its bound, a result that is not an
        // object, an id that cannot be one.
        reply(&saga_id, "flight", json!({ "flightRef": "F".repeat(600) })),
        reply(&saga_id, "flight", json!("F-1")),
        {
            let mut r = reply(&saga_id, "flight", json!({}));
            r["id"] = "h/1".into();
            r
        },
    ];
    for body in &forged {
        trip.bus.publish(&exchange, "", body.to_string().as_bytes(), "trip/h-1").await;
    }
    trip.bus.publish(&exchange, "", b"{not json", "trip/h-1").await;
    // One consumer takes the replies in order: once the last is dead-lettered, every forged
    // reply before it has been applied.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut letters = Vec::new();
    while letters.len() < 4 && std::time::Instant::now() < deadline {
        letters.extend(trip.bus.take_dead_letters().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(letters.len(), 4, "{letters:?}");
    for (reason, _) in &letters {
        assert!(reason.as_deref().is_some_and(|r| r.contains("not a reply")), "{letters:?}");
    }
    let (_, after) = trip.get("/sagas/trip/h-1").await;
    assert_eq!(after["steps"][0]["state"], "running", "{after}");
    assert_eq!(after["results"], json!({}), "nothing forged was kept: {after}");

    // The genuine answer still moves it, and its result is what the next step carries.
    let genuine = reply(&saga_id, "flight", json!({ "flightRef": "F-real" }));
    trip.bus.publish(&exchange, "", genuine.to_string().as_bytes(), "trip/h-1").await;
    let moved = wait::until("the genuine reply to move the trip", Duration::from_secs(20), || async {
        let (_, t) = trip.get("/sagas/trip/h-1").await;
        (t["steps"][0]["state"] == "succeeded").then_some(t)
    })
    .await;
    assert_eq!(moved["results"]["flight"]["flightRef"], "F-real", "{moved}");
}
