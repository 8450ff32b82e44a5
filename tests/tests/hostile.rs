//! The running system, tried as an attacker and as a careless client would: one test per class
//! of defect that the hardening work fixed (numbered as in its issue). The bus tests publish raw
//! messages to the real queues; every test uses the real binaries. Each one fails on the code
//! before the fix (`SAGAFLOW_BIN_DIR` runs them against other binaries).

use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use sagaflow_events::{CommandBody, Participant, Phase, ReplyMessage, ReplyOutcome, UserId};
use sagaflow_tests::bus::{Answer, TestBus};
use sagaflow_tests::commands::command;
use sagaflow_tests::disk::{LoopExt4, Tmpfs};
use sagaflow_tests::procs::{free_port, Program};
use sagaflow_tests::system::{metric, order_json, System};
use sagaflow_tests::{amqp_url, raw_http, unique_namespace, wait};
use serde_json::Value;

/// A header far beyond what a reply or a dead letter can carry in one frame.
fn huge_traceparent() -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("traceparent"),
        AMQPValue::LongString(LongString::from("0".repeat(131_000))),
    );
    headers
}

fn json_body(body: &str) -> Vec<u8> {
    body.as_bytes().to_vec()
}

async fn healthy(http: &reqwest::Client, base: &str) -> bool {
    http.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status().is_success())
}

/// The orchestrator alone, with the test playing the participants.
struct Alone {
    orchestrator: Program,
    bus: TestBus,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Alone {
    async fn start(test: &str, env: &[(&str, &str)]) -> Self {
        let namespace = unique_namespace(test);
        let url = amqp_url();
        let bus = TestBus::connect(&url, &namespace).await;
        let dir = tempfile::tempdir().unwrap();
        let orchestrator =
            Program::start("orchestrator", &namespace, &url, dir.path().join("orchestrator"), env);
        orchestrator.wait_healthy(Duration::from_secs(30)).await;
        Self { orchestrator, bus, http: reqwest::Client::new(), _dir: dir }
    }

    async fn place(&self, body: &str) -> u16 {
        let r = self
            .http
            .post(format!("{}/orders", self.orchestrator.http))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    }

    async fn order_text(&self, id: &str) -> String {
        self.http
            .get(format!("{}/orders/{id}", self.orchestrator.http))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn order(&self, id: &str) -> Value {
        serde_json::from_str(&self.order_text(id).await).unwrap_or_default()
    }

    async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait::until(&format!("order {id} to be {state}"), timeout, || async {
            let order = self.order(id).await;
            (order["state"] == state).then_some(order)
        })
        .await
    }
}

/// 1. A single message can stop a process for good: a 131 kB `traceparent` was copied into the
/// reply (or the dead letter), which the broker refused; the relay sent it again after every
/// reconnect, for ever. Now a trace header is parsed (or a new trace starts), dead letters keep
/// only what fits, and the relay parks what the broker keeps refusing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_1_one_message_cannot_wedge_any_process() {
    let s = System::start("hostile-wedge").await;
    let t = &s.bus.topology;
    let with_big_header =
        || BasicProperties::default().with_delivery_mode(2).with_headers(huge_traceparent());
    // A charge for payment, garbage for the orchestrator's replies and intake: each with the header.
    let charge = command(
        "wedge-1",
        Participant::Payment,
        Phase::Action,
        1,
        CommandBody::ChargePayment {
            user_id: UserId::parse("u").unwrap(),
            amount_cents: sagaflow_events::Cents(100),
        },
    );
    let charge = serde_json::to_vec(&charge).unwrap();
    s.bus.publish_raw(&t.commands_exchange(), "payment", &charge, with_big_header()).await;
    s.bus.publish_raw(&t.replies_exchange(), "", b"\xff\xfe not a reply", with_big_header()).await;
    s.bus
        .publish_raw(
            &t.intake_exchange(),
            "",
            &json_body(&order_json("wedge-2", &[("abc", 1)])),
            with_big_header(),
        )
        .await;
    // Garbage whose original bytes and properties must survive into the dead-letter queue.
    let mut custom = FieldTable::default();
    custom.insert(ShortString::from("x-custom"), AMQPValue::LongLongInt(42));
    let original = BasicProperties::default()
        .with_message_id("original-id".into())
        .with_correlation_id("original-correlation".into())
        .with_headers(custom);
    s.bus.publish_raw(&t.commands_exchange(), "inventory", b"\xff\x00\xfe binary", original).await;

    // Everything goes on: an order placed afterwards completes, and every program is healthy.
    assert_eq!(s.place(&order_json("after-1", &[("abc", 1)])).await, 202);
    let order = s.wait_terminal("after-1").await;
    assert_eq!(order["state"], "completed", "{order}");
    // The order that came on the intake with the big header ran too.
    assert_eq!(s.wait_terminal("wedge-2").await["state"], "completed");
    for p in s.programs() {
        wait::until(&format!("{} to stay healthy", p.name), Duration::from_secs(20), || async {
            healthy(&s.http, &p.http).await.then_some(())
        })
        .await;
    }
    let letters = wait::until("two dead letters", Duration::from_secs(20), || async {
        let letters = s.bus.take_dead_letter_messages().await;
        (letters.len() >= 2).then_some(letters)
    })
    .await;
    let binary =
        letters.iter().find(|l| l.body == b"\xff\x00\xfe binary").expect("the original bytes, as they were");
    assert_eq!(binary.properties.message_id().as_ref().map(|m| m.as_str()), Some("original-id"));
    assert_eq!(binary.properties.correlation_id().as_ref().map(|c| c.as_str()), Some("original-correlation"));
    assert_eq!(binary.header("x-custom").as_deref(), Some("LongLongInt(42)"));
    assert!(binary.header(sagaflow_events::headers::DEAD_LETTER_REASON).is_some());
    let reply_garbage =
        letters.iter().find(|l| l.body.starts_with(b"\xff\xfe not a reply")).expect("the garbage reply");
    assert!(reply_garbage.header("traceparent").is_none(), "the 131 kB header is not carried");
    assert_eq!(reply_garbage.header("x-sagaflow-dropped-headers").as_deref(), Some("traceparent"));
    // Nothing had to be parked: every input was bounded before it went out.
    for p in s.programs() {
        let metrics = s.http.get(format!("{}/metrics", p.http)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("sagaflow_outbox_parked 0"), "{}: {metrics}", p.name);
    }
}

/// 2. Participants trusted their commands: a repeated line took the same stock twice (past
/// zero), and a second charge of an order added to its ledger until it wrapped around.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_2_forged_commands_cannot_break_the_books() {
    let s = System::start("hostile-books").await;
    let t = &s.bus.topology;
    let persistent = || BasicProperties::default().with_delivery_mode(2);
    for (participant, body) in sagaflow_tests::commands::forged() {
        let key = t.command_routing_key(participant);
        s.bus.publish_raw(&t.commands_exchange(), &key, &body, persistent()).await;
    }
    s.assert_forgeries_changed_nothing().await;
}

/// 3. An order id used again after retention was answered from the old saga's barrier: it
/// "completed" with no charge, no stock and no mail. Now every saga has its own id, and the
/// new one's effects happen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_3_an_order_id_placed_again_after_retention_runs_anew() {
    let s = System::start_with("hostile-reuse", &[("orchestrator", "RETAIN_FINISHED_SECS", "1")]).await;
    let body = order_json("again-1", &[("abc", 1)]);
    assert_eq!(s.place(&body).await, 202);
    assert_eq!(s.wait_terminal("again-1").await["state"], "completed");
    wait::until("the finished saga to be removed", Duration::from_secs(30), || async {
        (s.order("again-1").await["error"].is_string()).then_some(())
    })
    .await;
    assert_eq!(s.place(&body).await, 202);
    let second = s.wait_terminal("again-1").await;
    assert_eq!(second["state"], "completed", "{second}");
    // A second mail went out, for the second saga.
    wait::until("a second confirmation", Duration::from_secs(20), || async {
        (s.notifications().await["delivered"] == 2).then_some(())
    })
    .await;
    // The second saga was charged, under its own saga id.
    let saga_id = second["sagaId"].as_str().expect("a saga id").to_owned();
    let payments = s.get(&s.payment.http, "/payments").await;
    let charged =
        payments["payments"].as_array().unwrap().iter().find(|p| p["sagaId"] == saga_id.as_str()).cloned();
    assert_eq!(charged.map(|p| p["chargedCents"].clone()), Some(second["amountCents"].clone()), "{payments}");
}

/// 4. Every ignored input was appended to the saga's history and the whole record rewritten:
/// 2,000 forged replies made one record 343 KB. Text from replies was stored unbounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_4_forged_replies_do_not_grow_a_saga() {
    let a = Alone::start("hostile-grow", &[("ATTEMPT_TIMEOUT_MS", "60000")]).await;
    let payment = a.bus.participant(Participant::Payment, |_| Answer::Silent).await;
    assert_eq!(a.place(&order_json("grow-1", &[("abc", 1)])).await, 202);
    let charge = wait::until("the charge", Duration::from_secs(10), || async {
        payment.received_for("grow-1").first().cloned()
    })
    .await;
    let reply = |attempt: u32, outcome: ReplyOutcome| ReplyMessage {
        saga_id: charge.saga_id.clone(),
        order_id: charge.order_id.clone(),
        step: charge.step.clone(),
        phase: Phase::Action,
        attempt,
        idempotency_key: charge.idempotency_key.clone(),
        outcome,
        payment_id: None,
        missing_products: vec![],
    };
    // An accepted transient failure whose reason is 10 kB long.
    let long = "r".repeat(10_000);
    a.bus.send_reply(&reply(1, ReplyOutcome::Transient { reason: long.as_str().into() })).await;
    // Then 2,000 forged replies for attempts that were never sent.
    for i in 0..2_000u32 {
        a.bus.send_reply(&reply(100 + i, ReplyOutcome::Succeeded)).await;
    }
    // The record and its history stay small, and the reason was cut.
    wait::until("the replies to be read", Duration::from_secs(60), || async {
        let ignored = metric(&a.http, &a.orchestrator.http, "sagaflow_inputs_ignored_total").await?;
        (ignored >= 2_000.0).then_some(())
    })
    .await;
    let text = a.order_text("grow-1").await;
    assert!(text.len() < 32 * 1024, "GET /orders/grow-1 answered {} bytes", text.len());
    let order: Value = serde_json::from_str(&text).unwrap();
    assert!(order["history"].as_array().unwrap().len() <= 40, "{order}");
    let last_error = order["steps"][0]["lastError"].as_str().unwrap_or("");
    assert!(!last_error.is_empty() && last_error.len() <= 200, "lastError is {} bytes", last_error.len());
    let largest = metric(&a.http, &a.orchestrator.http, "sagaflow_saga_record_bytes_max")
        .await
        .expect("the largest record is reported");
    assert!(largest < 8.0 * 1024.0, "a record grew to {largest} bytes");
}

/// 5. HTTP edges: errors that were not JSON (a path that is not UTF-8, an oversized header), no
/// header timeout, no cap on connections, a declared body over the limit read before refusing
/// it, and order ids no client can address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_5_every_http_edge_answers_json_at_once() {
    let env = [("HTTP_HEADER_TIMEOUT_MS", "1000"), ("HTTP_MAX_CONNECTIONS", "8")];
    let a = Alone::start("hostile-http", &env).await;
    let addr = a.orchestrator.http.trim_start_matches("http://").to_owned();
    let deadline = Duration::from_secs(8);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a percent-encoded path that is not UTF-8", b"GET /orders/%FF%FE HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), 400),
        ("raw bytes that are not UTF-8", b"GET /orders/\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(), 400),
        (
            "a 600 kB header",
            format!("GET /orders HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n", "a".repeat(600_000)).into_bytes(),
            431,
        ),
        ("a declared body over the limit", b"POST /orders HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000000\r\n\r\n".to_vec(), 413),
    ];
    for (what, request, want) in cases {
        let answer = raw_http::send(&addr, &request, deadline);
        assert_eq!(answer.status, want, "{what}: {}", answer.raw.chars().take(300).collect::<String>());
        assert!(
            answer.json["error"].is_string(),
            "{what} answered {}",
            answer.raw.chars().take(300).collect::<String>()
        );
        assert!(answer.took < Duration::from_secs(5), "{what} took {:?}", answer.took);
    }
    // A head that never ends gets 408 once the header timeout passes.
    let stalled = raw_http::send(&addr, b"GET /orders HTTP/1.1\r\nhost:", deadline);
    assert_eq!(stalled.status, 408, "{}", stalled.raw);
    assert!(stalled.json["error"].is_string());
    // Ids a client cannot address are refused.
    for id in [".", "..", ".hidden"] {
        let body = order_json(id, &[("abc", 1)]);
        assert_eq!(a.place(&body).await, 422, "placing {id:?}");
    }
    let hidden = a.http.get(format!("{}/orders/.hidden", a.orchestrator.http)).send().await.unwrap();
    assert_eq!(hidden.status().as_u16(), 422);
    // Connections are capped: with 8 held open, the next is answered 503 and closed.
    let held: Vec<std::net::TcpStream> =
        (0..8).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = raw_http::send(&addr, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n", deadline);
    assert_eq!(refused.status, 503, "{}", refused.raw);
    assert!(refused.json["error"].is_string());
    drop(held);
    wait::until("connections to be served again", Duration::from_secs(10), || async {
        healthy(&a.http, &a.orchestrator.http).await.then_some(())
    })
    .await;
}

/// 6. Nobody was asked who they are: no token on any endpoint, and any content type accepted,
/// so a cross-site "simple" POST could place an order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_6_the_token_and_the_content_type_are_required() {
    let s = System::start_with("hostile-token", &[("*", "API_TOKEN", "s3cret-token")]).await;
    let http = &s.http;
    let base = &s.orchestrator.http;
    let status = |r: reqwest::Response| r.status().as_u16();
    for (what, request) in [
        ("no token", http.get(format!("{base}/orders"))),
        ("a wrong token", http.get(format!("{base}/orders")).bearer_auth("guess")),
        ("a wrong scheme", http.get(format!("{base}/orders")).basic_auth("s3cret-token", None::<&str>)),
        ("a service without a token", http.get(format!("{}/payments", s.payment.http))),
        ("the console", http.get(format!("{base}/"))),
        ("the console's files", http.get(format!("{base}/console/assets/console.js"))),
        ("the openapi document", http.get(format!("{base}/openapi.json"))),
        ("the dead letters", http.get(format!("{base}/dead-letters"))),
        (
            "a made-up session cookie",
            http.get(format!("{base}/orders")).header("cookie", "sagaflow_session=00ff"),
        ),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(
            r.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned()),
            Some("Bearer".into()),
            "{what}"
        );
        assert_eq!(status(r), 401, "{what}");
    }
    assert_eq!(
        status(http.get(format!("{base}/orders")).bearer_auth("s3cret-token").send().await.unwrap()),
        200
    );
    assert_eq!(
        status(
            http.get(format!("{}/payments", s.payment.http))
                .bearer_auth("s3cret-token")
                .send()
                .await
                .unwrap()
        ),
        200
    );
    for open in ["/health", "/metrics"] {
        assert_eq!(status(http.get(format!("{base}{open}")).send().await.unwrap()), 200, "{open}");
    }
    // The console's session: issued for the right token only, sent as JSON only, and it holds
    // a digest, not the token. A browser without it gets the sign-in page (still a 401).
    let session = |body: &str, content_type: &str| {
        http.post(format!("{base}/console/session"))
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    assert_eq!(status(session(r#"{"token":"guess"}"#, "application/json").send().await.unwrap()), 401);
    assert_eq!(status(session(r#"{"token":"s3cret-token"}"#, "text/plain").send().await.unwrap()), 415);
    let issued = session(r#"{"token":"s3cret-token"}"#, "application/json").send().await.unwrap();
    assert_eq!(issued.status().as_u16(), 204);
    let cookie = issued.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("s3cret-token"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();
    let with_cookie = http.get(format!("{base}/orders")).header("cookie", pair).send().await.unwrap();
    assert_eq!(status(with_cookie), 200);
    let page = http.get(format!("{base}/")).header("accept", "text/html").send().await.unwrap();
    assert_eq!(page.status().as_u16(), 401);
    assert!(page.text().await.unwrap().contains("API token"));
    // A body must say it is JSON.
    let body = order_json("ct-1", &[("abc", 1)]);
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut r = http.post(format!("{base}/orders")).bearer_auth("s3cret-token").body(body.clone());
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 415, "{content_type:?}");
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
    assert_eq!(s.place(&body).await, 202, "with the token and JSON");
}

/// 7. A program that cannot serve said it was ready: one whose port was taken logged "ready",
/// consumed from the broker, and failed only at shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_7_a_program_that_cannot_serve_exits_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("hostile-serve");
    let url = amqp_url();
    for program in ["orchestrator", "payment"] {
        let data = dir.path().join(program).display().to_string();
        let env = [
            ("HTTP_ADDR", port.as_str()),
            ("DATA_DIR", data.as_str()),
            ("SAGA_NAMESPACE", &namespace),
            ("AMQP_URL", &url),
        ];
        let (status, out) = Program::run_to_exit(program, &env, Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("{program} kept running with its port taken:\n{out}"));
        assert!(!status.success(), "{program} exited {status}");
        assert!(out.contains(&port), "{program} did not name the address:\n{out}");
        assert!(!out.contains(&format!("{program} ready")), "{program} said it was ready:\n{out}");
        assert_eq!(out.trim().lines().count(), 1, "{program} printed more than one line:\n{out}");
    }
    // A data folder another process holds, and one that is a file.
    let orchestrator = Program::start("orchestrator", &namespace, &url, dir.path().join("held"), &[]);
    let held = dir.path().join("held").display().to_string();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let file = file.display().to_string();
    for (what, data) in [("a held folder", held.as_str()), ("a file", file.as_str())] {
        let free = format!("127.0.0.1:{}", free_port());
        let env = [
            ("HTTP_ADDR", free.as_str()),
            ("DATA_DIR", data),
            ("SAGA_NAMESPACE", &namespace),
            ("AMQP_URL", &url),
        ];
        let (status, out) = Program::run_to_exit("orchestrator", &env, Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("{what}: the orchestrator kept running:\n{out}"));
        assert!(!status.success(), "{what}: exited {status}");
        assert!(out.contains(data), "{what}: the folder is not named:\n{out}");
        assert_eq!(out.trim().lines().count(), 1, "{what}: more than one line:\n{out}");
    }
    drop(orchestrator);
    let _bus = TestBus::connect(&url, &namespace).await; // deletes the namespace on drop
}

/// 8a. sled's flush syncs with `sync_file_range`, which does not make a growing file durable:
/// orders answered `202` were gone after the disk's contents were cut at that moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_8_orders_answered_202_survive_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut disk = LoopExt4::create(dir.path(), 256);
    let namespace = unique_namespace("hostile-power");
    let url = amqp_url();
    let _bus = TestBus::connect(&url, &namespace).await;
    let data = disk.mount.join("orchestrator");
    let mut orchestrator = Program::start("orchestrator", &namespace, &url, data, &[]);
    orchestrator.wait_healthy(Duration::from_secs(30)).await;
    let http = reqwest::Client::new();
    let mut answered = Vec::new();
    for i in 0..40 {
        let id = format!("power-{i}");
        let r = http
            .post(format!("{}/orders", orchestrator.http))
            .header("content-type", "application/json")
            .body(order_json(&id, &[("abc", 1)]))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 202 {
            answered.push(id);
        }
    }
    assert_eq!(answered.len(), 40);
    // The power goes: the process dies and the disk keeps what was written through to it.
    orchestrator.kill();
    let copy = dir.path().join("after-the-cut.img");
    disk.crash_copy(&copy);
    disk.unmount();
    let after = LoopExt4::open(&copy, &dir.path().join("after"));
    let restarted = Program::start("orchestrator", &namespace, &url, after.mount.join("orchestrator"), &[]);
    let missing: Vec<&String> = {
        let mut missing = Vec::new();
        for id in &answered {
            let r = http.get(format!("{}/orders/{id}", restarted.http)).send().await.unwrap();
            if r.status().as_u16() != 200 {
                missing.push(id);
            }
        }
        missing
    };
    assert!(
        missing.is_empty(),
        "{} of {} orders answered 202 are gone: {missing:?}",
        missing.len(),
        answered.len()
    );
    drop(restarted);
}

/// 8b. A start on a full disk left an empty `snap.*.generating` that sled then read as a
/// corrupt snapshot: every later start failed, even with space again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_8_a_full_disk_stops_the_orchestrator_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&dir.path().join("small"), 24);
    let namespace = unique_namespace("hostile-full");
    let url = amqp_url();
    let _bus = TestBus::connect(&url, &namespace).await;
    let data = disk.path.join("orchestrator");
    let mut orchestrator = Program::start("orchestrator", &namespace, &url, data.clone(), &[]);
    orchestrator.wait_healthy(Duration::from_secs(30)).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let base = orchestrator.http.clone();
    let place = |id: String| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let r = http
                .post(format!("{base}/orders"))
                .header("content-type", "application/json")
                .body(order_json(&id, &[("abc", 1)]))
                .send()
                .await;
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }
    };
    let mut answered = Vec::new();
    for i in 0..20 {
        let id = format!("full-{i}");
        assert_eq!(place(id.clone()).await, 202);
        answered.push(id);
    }
    let filler = disk.fill("filler", 64 * 1024);
    // Orders go on until the store cannot take them, and the orchestrator stops rather than
    // carry on without a store; none is answered 202 without being kept.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut i = 20;
    let status = loop {
        if let Some(status) = orchestrator.try_status() {
            break status;
        }
        assert!(Instant::now() < deadline, "the orchestrator kept running on a full disk");
        let id = format!("full-{i}");
        i += 1;
        if place(id.clone()).await == 202 {
            answered.push(id);
        }
    };
    assert!(!status.success(), "it exited {status}");
    std::fs::remove_file(filler).unwrap();
    // A start while the disk is still full must not harm the store. (A start writes a
    // snapshot when the log moved on since the last one: run once more, stop, then fill.)
    orchestrator.restart_and_wait().await;
    assert_eq!(place("full-after".into()).await, 202);
    answered.push("full-after".into());
    assert!(orchestrator.terminate(Duration::from_secs(15)).is_some_and(|s| s.success()));
    let filler = disk.fill("filler", 0);
    let free = format!("127.0.0.1:{}", free_port());
    let data = data.display().to_string();
    let env = [
        ("HTTP_ADDR", free.as_str()),
        ("DATA_DIR", data.as_str()),
        ("SAGA_NAMESPACE", &namespace),
        ("AMQP_URL", &url),
    ];
    for _ in 0..2 {
        let (status, out) = Program::run_to_exit("orchestrator", &env, Duration::from_secs(20));
        assert!(status.is_some_and(|s| !s.success()), "a start on a full disk: {status:?}\n{out}");
    }
    // With room again, it opens, and every order answered 202 is there.
    std::fs::remove_file(filler).unwrap();
    orchestrator.restart_and_wait().await;
    for id in &answered {
        let r = http.get(format!("{}/orders/{id}", orchestrator.http)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{id} is gone after the full disk");
    }
}

/// 8c. A mail that could not be written (a full disk) was dead-lettered and acknowledged, as if
/// the command were poison. A storage failure now holds the command and says so on /health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_8_a_mail_that_cannot_be_written_waits_and_is_never_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let notification_dir = dir.path().join("notification");
    let maildir = Tmpfs::mount(&notification_dir.join("Maildir"), 1);
    let data = notification_dir.display().to_string();
    let s = System::start_with("hostile-mail", &[("notification", "DATA_DIR", data.as_str())]).await;
    let filler = maildir.fill("filler", 0);
    assert_eq!(s.place(&order_json("mail-1", &[("abc", 1)])).await, 202);
    wait::until("notification to report its store failing", Duration::from_secs(20), || async {
        let r = s.http.get(format!("{}/health", s.notification.http)).send().await.ok()?;
        (r.status().as_u16() == 503).then_some(())
    })
    .await;
    assert!(s.bus.take_dead_letters().await.is_empty(), "a storage failure was dead-lettered");
    std::fs::remove_file(filler).unwrap();
    assert_eq!(s.wait_terminal("mail-1").await["state"], "completed");
    assert_eq!(s.notifications().await["notifications"]["mail-1"], 1);
    assert!(healthy(&s.http, &s.notification.http).await);
    assert!(s.bus.take_dead_letters().await.is_empty(), "a storage failure was dead-lettered");
}

/// 9. The chaos verdict could be wrong: the checker read the payment ledger while payment was
/// restarting, and a failed read counted as an empty ledger ("charged 0" for every order). Books
/// that cannot be read now end the run with its own exit code: never a violation, never a pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_9_unreadable_books_are_an_error_of_the_run_not_a_verdict() {
    let mut s = System::start("hostile-verdict").await;
    for i in 0..3 {
        assert_eq!(s.place(&order_json(&format!("verdict-{i}"), &[("abc", 1)])).await, 202);
        s.wait_terminal(&format!("verdict-{i}")).await;
    }
    let check = |s: &System| {
        let args = [
            "--api",
            &s.orchestrator.http,
            "check",
            "--payment",
            &s.payment.http,
            "--inventory",
            &s.inventory.http,
            "--notification",
            &s.notification.http,
            "--timeout-secs",
            "3",
        ]
        .map(str::to_owned);
        let out =
            std::process::Command::new(sagaflow_tests::procs::binary("sagactl")).args(args).output().unwrap();
        (
            out.status.code(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    // Payment is down: no verdict.
    s.payment.kill();
    let (code, out) = check(&s);
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("payment") && !out.contains("pass") && !out.contains("FAIL"), "{out}");
    // Payment is back: the books are read, and they hold.
    s.payment.restart_and_wait().await;
    let (code, out) = tokio::task::block_in_place(|| check(&s));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("pass") && !out.contains("FAIL"), "{out}");
}

/// 10. A stuck saga did not heal: after a participant's freeze, the late success of an earlier
/// attempt of a compensation was ignored, and the saga stayed stuck though nothing was left to
/// undo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_10_a_late_compensation_success_heals_a_stuck_saga() {
    let fast = [
        ("ATTEMPT_TIMEOUT_MS", "300"),
        ("ACTION_ATTEMPTS", "3"),
        ("COMPENSATION_ATTEMPTS", "2"),
        ("BACKOFF_INITIAL_MS", "50"),
        ("BACKOFF_MAX_MS", "100"),
    ];
    let a = Alone::start("hostile-heal", &fast).await;
    // Payment charges, but its refunds are frozen: no answer at all.
    let payment = a
        .bus
        .participant(Participant::Payment, |c| match c.phase {
            Phase::Action => Answer::Succeed,
            Phase::Compensation => Answer::Silent,
        })
        .await;
    let _inventory =
        a.bus.participant(Participant::Inventory, |_| Answer::Refuse("out_of_stock".into())).await;
    assert_eq!(a.place(&order_json("heal-1", &[("abc", 1)])).await, 202);
    a.wait_state("heal-1", "stuck", Duration::from_secs(30)).await;
    // The refund had gone through on its first attempt; its answer arrives only now.
    let refund = payment
        .received_for("heal-1")
        .into_iter()
        .find(|c| c.phase == Phase::Compensation && c.attempt == 1)
        .expect("refund attempt 1");
    a.bus
        .send_reply(&ReplyMessage {
            saga_id: refund.saga_id.clone(),
            order_id: refund.order_id.clone(),
            step: refund.step.clone(),
            phase: Phase::Compensation,
            attempt: 1,
            idempotency_key: refund.idempotency_key.clone(),
            outcome: ReplyOutcome::Succeeded,
            payment_id: None,
            missing_products: vec![],
        })
        .await;
    let order = a.wait_state("heal-1", "compensated", Duration::from_secs(20)).await;
    assert_eq!(order["reason"], "out_of_stock");
}

/// 11. Services kept everything for ever: barrier records, ledgers and reservations grew with
/// every order. They now forget what the orchestrator's retention removed, and refuse a late
/// duplicate of a forgotten saga.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_11_services_forget_what_retention_removed() {
    let s = System::start_with("hostile-forget", &[("orchestrator", "RETAIN_FINISHED_SECS", "1")]).await;
    for i in 0..5 {
        assert_eq!(s.place(&order_json(&format!("forget-{i}"), &[("abc", 1)])).await, 202);
    }
    let first = s.wait_terminal("forget-0").await;
    for i in 1..5 {
        s.wait_terminal(&format!("forget-{i}")).await;
    }
    wait::until("the services to forget", Duration::from_secs(40), || async {
        let payments = s.get(&s.payment.http, "/payments").await;
        let notes = s.notifications().await;
        let empty =
            payments["payments"].as_array()?.is_empty() && notes["notifications"].as_object()?.is_empty();
        empty.then_some(())
    })
    .await;
    let stock = s.stock().await;
    assert_eq!(stock["abc"]["reserved"], 0);
    assert_eq!(stock["abc"]["sold"], 5, "{stock}");
    // A charge of the first saga, redelivered from before it ended, charges nothing.
    let saga_id = first["sagaId"].as_str().unwrap();
    let late = serde_json::json!({
        "sagaId": saga_id, "orderId": "forget-0", "step": "payment", "phase": "action", "attempt": 1,
        "idempotencyKey": format!("{saga_id}/payment/action"), "sentAt": 1, "command": "chargePayment",
        "userId": "user1", "amountCents": first["amountCents"],
    });
    let t = &s.bus.topology;
    s.bus
        .publish_raw(
            &t.commands_exchange(),
            "payment",
            &serde_json::to_vec(&late).unwrap(),
            BasicProperties::default(),
        )
        .await;
    wait::until("the late charge to be refused", Duration::from_secs(10), || async {
        let refused = metric(&s.http, &s.payment.http, "sagaflow_expired_refused_total").await?;
        (refused == 1.0).then_some(())
    })
    .await;
    assert!(s.get(&s.payment.http, "/payments").await["payments"].as_array().unwrap().is_empty());
}

/// 12. A second instance on a namespace was a silent hazard: it consumed beside the first with
/// a store that lacked the first one's records. Now it refuses to start, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_12_a_second_instance_refuses_to_start() {
    let s = System::start("hostile-twice").await;
    let url = amqp_url();
    s.assert_second_instances_refused(
        &["payment", "orchestrator"],
        &[("AMQP_URL", &url)],
        "another process consumes",
    )
    .await;
}

/// 13. Commands and replies that the relay finds ready together travel as one batch (issue
/// 11). A batch is input like any other: an item that cannot be understood is dead-lettered
/// alone, with its reason, and the items around it are applied; an envelope that cannot be read
/// is dead-lettered whole, as it came. (Code before batches dead-letters the first envelope
/// whole, so its charges never happen.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn class_13_a_bad_item_of_a_batch_is_dead_lettered_alone() {
    let s = System::start("hostile-batch").await;
    let t = &s.bus.topology;
    let charge = |saga: &str| {
        serde_json::json!({
            "sagaId": saga, "orderId": saga, "step": "payment", "phase": "action", "attempt": 1,
            "idempotencyKey": format!("{saga}/payment/action"), "sentAt": 1, "command": "chargePayment",
            "userId": "u", "amountCents": 250,
        })
    };
    let item = |id: &str, body: Value| serde_json::json!({ "messageId": id, "correlationId": "batch", "kind": "command", "body": body });
    let batch = serde_json::json!([
        item("good-1", charge("batch-1")),
        item("bad-item", serde_json::json!({ "command": "chargePayment", "amountCents": -5 })),
        item("good-2", charge("batch-2")),
        // The same charge again, in the same batch: applied once.
        item("good-2-again", charge("batch-2")),
    ]);
    let batch_properties = || {
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_type("sagaflow.batch".into())
            .with_message_id("envelope".into())
    };
    let body = serde_json::to_vec(&batch).unwrap();
    s.bus.publish_raw(&t.commands_exchange(), "payment", &body, batch_properties()).await;
    s.bus
        .publish_raw(&t.commands_exchange(), "inventory", b"[{\"messageId\": broken", batch_properties())
        .await;

    let payments = wait::until("both good items to be charged", Duration::from_secs(20), || async {
        let payments = s.get(&s.payment.http, "/payments").await;
        let charged: Vec<(String, u64)> = payments["payments"]
            .as_array()?
            .iter()
            .filter(|p| p["sagaId"].as_str().is_some_and(|id| id.starts_with("batch-")))
            .map(|p| (p["sagaId"].as_str().unwrap().to_owned(), p["chargedCents"].as_u64().unwrap()))
            .collect();
        (charged.len() == 2).then_some(charged)
    })
    .await;
    assert!(payments.iter().all(|(_, cents)| *cents == 250), "each charged once: {payments:?}");

    let mut letters = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while letters.len() < 2 && Instant::now() < deadline {
        letters.extend(s.bus.take_dead_letter_messages().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let message_id =
        |l: &sagaflow_tests::bus::Taken| l.properties.message_id().as_ref().map(|m| m.to_string());
    let bad =
        letters.iter().find(|l| message_id(l).as_deref() == Some("bad-item")).expect("the bad item, alone");
    let bad_body: Value = serde_json::from_slice(&bad.body).unwrap();
    assert_eq!(bad_body["amountCents"], -5, "the item's own body: {bad_body}");
    assert!(bad.header(sagaflow_events::headers::DEAD_LETTER_REASON).is_some());
    let broken =
        letters.iter().find(|l| message_id(l).as_deref() == Some("envelope")).expect("the broken envelope");
    assert_eq!(broken.body, b"[{\"messageId\": broken", "whole, as it came");
    assert_eq!(letters.len(), 2, "nothing else is dead-lettered");

    // And the system goes on.
    assert_eq!(s.place(&order_json("after-batch", &[("abc", 1)])).await, 202);
    assert_eq!(s.wait_terminal("after-batch").await["state"], "completed");
}
