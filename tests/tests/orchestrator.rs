//! The real `orchestrator` binary against the real broker. The test plays payment, inventory
//! and notification itself (see `sagaflow_tests::bus::ParticipantDouble`), so it can script
//! every participant behaviour. Each test has its own namespace and data folder.

use std::collections::HashMap;
use std::time::Duration;

use sagaflow_devkit::broker::{host_port, PrivateBroker};
use sagaflow_events::{CommandBody, Participant, Phase};
use sagaflow_tests::bus::{Answer, ParticipantDouble, TestBus};
use sagaflow_tests::procs::Program;
use sagaflow_tests::system::metric;
use sagaflow_tests::{amqp_url, unique_namespace, wait};
use serde_json::{json, Value};

const EXAMPLE_ORDER: &str = include_str!("../../events/tests/fixtures/OrderPlaced.json");

/// The order saga's definition as shipped.
const ORDER_SAGA: &str = include_str!("../../sagas/order.toml");

/// `order_saga` (a definition file of the order saga) with inventory's step before payment's.
fn inventory_first(order_saga: &str) -> String {
    let payment_step = order_saga.split("[[steps]]").nth(1).unwrap();
    let inventory_step = order_saga.split("[[steps]]").nth(2).unwrap();
    order_saga.replacen(payment_step, "PAYMENT", 1).replacen(inventory_step, payment_step, 1).replacen(
        "PAYMENT",
        inventory_step,
        1,
    )
}

/// A participant double's script: never answers an action, succeeds at every compensation.
fn silent_on_actions(c: &sagaflow_events::CommandMessage) -> Answer {
    if c.phase == Phase::Action {
        Answer::Silent
    } else {
        Answer::Succeed
    }
}

/// Short timeouts so that retry and timeout paths run in seconds.
const FAST: &[(&str, &str)] = &[
    ("ATTEMPT_TIMEOUT_MS", "400"),
    ("ACTION_ATTEMPTS", "3"),
    ("COMPENSATION_ATTEMPTS", "3"),
    ("BACKOFF_INITIAL_MS", "50"),
    ("BACKOFF_MAX_MS", "200"),
];

/// Realistic retry budgets, for runs with crashes and outages.
const STEADY: &[(&str, &str)] = &[
    ("ATTEMPT_TIMEOUT_MS", "1500"),
    ("ACTION_ATTEMPTS", "6"),
    ("COMPENSATION_ATTEMPTS", "10"),
    ("BACKOFF_INITIAL_MS", "100"),
    ("BACKOFF_MAX_MS", "1000"),
];

/// Timeouts long enough that nothing is retried behind the test's back.
const PATIENT: &[(&str, &str)] = &[("ATTEMPT_TIMEOUT_MS", "30000")];

/// Fields drop in order: the orchestrator stops before the test bus deletes the namespace, so
/// nothing declares it again behind the clean-up.
struct Harness {
    orchestrator: Program,
    bus: TestBus,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(test: &str, env: &[(&str, &str)]) -> Self {
        Self::start_on(test, &amqp_url(), env).await
    }

    async fn start_on(test: &str, url: &str, env: &[(&str, &str)]) -> Self {
        let namespace = unique_namespace(test);
        let bus = TestBus::connect(url, &namespace).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let orchestrator =
            Program::start("orchestrator", &namespace, url, dir.path().join("orchestrator"), env);
        orchestrator.wait_healthy(Duration::from_secs(30)).await;
        Self { bus, orchestrator, http: reqwest::Client::new(), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.orchestrator.http)
    }

    async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        let response = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn order(&self, id: &str) -> Value {
        self.get(&format!("/orders/{id}")).await.1
    }

    /// Waits until the order is in `state` and returns it.
    async fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> Value {
        wait::until(&format!("order {id} to be {state}"), timeout, || async {
            let order = self.order(id).await;
            (order["state"] == state).then_some(order)
        })
        .await
    }

    async fn all_succeed(&self) -> [sagaflow_tests::bus::ParticipantDouble; 3] {
        [
            self.bus.participant(Participant::Payment, |_| Answer::Succeed).await,
            self.bus.participant(Participant::Inventory, |_| Answer::Succeed).await,
            self.bus.participant(Participant::Notification, |_| Answer::Succeed).await,
        ]
    }
}

fn order_json(id: &str, items: &[(&str, i64)]) -> String {
    let items: Vec<Value> = items.iter().map(|(p, q)| json!({ "productId": p, "quantity": q })).collect();
    json!({ "event": "OrderPlaced", "orderId": id, "userId": "user1", "items": items }).to_string()
}

fn phases(commands: &[sagaflow_events::CommandMessage]) -> Vec<(Phase, u32)> {
    commands.iter().map(|c| (c.phase, c.attempt)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_example_order_completes_and_its_events_are_public() {
    let h = Harness::start("example", PATIENT).await;
    let events = h.bus.watch_events().await;
    let _participants = h.all_succeed().await;

    let (status, body) = h.post("/orders", EXAMPLE_ORDER).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["orderId"], "12345");
    let order = h.wait_state("12345", "completed", Duration::from_secs(20)).await;
    assert_eq!(order["steps"][0]["name"], "payment");
    assert!(order["history"].as_array().unwrap().len() >= 4);

    // The same order again starts nothing new; a different body under the same id is a conflict.
    let (status, body) = h.post("/orders", EXAMPLE_ORDER).await;
    assert_eq!((status, body["state"].as_str()), (202, Some("completed")));
    let (status, body) = h.post("/orders", &order_json("12345", &[("abc", 9)])).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].is_string());

    wait::until("the order's public events", Duration::from_secs(10), || async {
        let names = events.names_for("12345");
        let want =
            ["OrderPlaced", "PaymentProcessed", "InventoryUpdated", "NotificationSent", "OrderCompleted"];
        want.iter().all(|w| names.iter().any(|n| n == w)).then_some(())
    })
    .await;

    // An OrderPlaced on the intake queue starts a saga exactly as POST /orders does.
    h.bus.place_order(&order_json("from-the-bus", &[("xyz", 1)])).await;
    h.wait_state("from-the-bus", "completed", Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_compensates_without_a_refund() {
    let h = Harness::start("declined", PATIENT).await;
    let payment =
        h.bus.participant(Participant::Payment, |_| Answer::Refuse("payment_declined".into())).await;
    let inventory = h.bus.participant(Participant::Inventory, |_| Answer::Succeed).await;

    assert_eq!(h.post("/orders", &order_json("d-1", &[("abc", 1)])).await.0, 202);
    let order = h.wait_state("d-1", "compensated", Duration::from_secs(20)).await;
    assert_eq!(order["reason"], "payment_declined");
    assert_eq!(phases(&payment.received_for("d-1")), [(Phase::Action, 1)], "no refund for a declined charge");
    assert!(inventory.received_for("d-1").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_refunds_then_compensates() {
    let h = Harness::start("stock", PATIENT).await;
    let payment = h.bus.participant(Participant::Payment, |_| Answer::Succeed).await;
    let _inventory =
        h.bus.participant(Participant::Inventory, |_| Answer::Refuse("out_of_stock".into())).await;

    assert_eq!(h.post("/orders", &order_json("s-1", &[("abc", 1)])).await.0, 202);
    let order = h.wait_state("s-1", "compensated", Duration::from_secs(20)).await;
    assert_eq!(order["reason"], "out_of_stock");
    let received = payment.received_for("s-1");
    assert_eq!(phases(&received), [(Phase::Action, 1), (Phase::Compensation, 1)]);
    assert!(matches!(received[1].body, CommandBody::RefundPayment { .. }));
    assert_eq!(order["steps"][0]["state"], "compensated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_and_stale_replies_change_nothing() {
    let h = Harness::start("duplicates", PATIENT).await;
    let payment = h.bus.participant(Participant::Payment, |_| Answer::Silent).await;
    let inventory = h.bus.participant(Participant::Inventory, |_| Answer::Succeed).await;
    let _notification = h.bus.participant(Participant::Notification, |_| Answer::Succeed).await;

    assert_eq!(h.post("/orders", &order_json("dup-1", &[("abc", 1)])).await.0, 202);
    let charge = wait::until("the charge command", Duration::from_secs(10), || async {
        payment.received_for("dup-1").first().cloned()
    })
    .await;
    let reply = |attempt: u32, step: &str| sagaflow_events::ReplyMessage {
        saga_id: charge.saga_id.clone(),
        order_id: charge.order_id.clone(),
        step: sagaflow_events::StepName::parse(step).unwrap(),
        phase: Phase::Action,
        attempt,
        idempotency_key: charge.idempotency_key.clone(),
        outcome: sagaflow_events::ReplyOutcome::Succeeded,
        payment_id: None,
        missing_products: vec![],
    };

    // An attempt never sent, and a step that is not current: recorded, ignored.
    h.bus.send_reply(&reply(7, "payment")).await;
    h.bus.send_reply(&reply(1, "inventory")).await;
    h.bus.send_reply(&reply(1, "no-such-step")).await;
    let order = wait::until("three ignored replies in the history", Duration::from_secs(10), || async {
        let order = h.order("dup-1").await;
        let ignored = order["history"].as_array()?.iter().filter(|e| !e["ignored"].is_null()).count();
        (ignored == 3).then_some(order)
    })
    .await;
    assert_eq!(order["state"], "running");
    assert_eq!(order["steps"][0]["state"], "running");
    assert!(inventory.received_for("dup-1").is_empty());

    // The right reply, twice: the saga moves once.
    h.bus.send_reply(&reply(1, "payment")).await;
    h.bus.send_reply(&reply(1, "payment")).await;
    let order = h.wait_state("dup-1", "completed", Duration::from_secs(20)).await;
    assert_eq!(phases(&inventory.received_for("dup-1")), [(Phase::Action, 1)]);
    let history = order["history"].as_array().unwrap();
    let reasons: Vec<&str> = history.iter().filter_map(|e| e["ignored"].as_str()).collect();
    assert!(reasons.contains(&"stale_attempt") && reasons.contains(&"unknown_step"), "{reasons:?}");
    wait::until("the duplicate to be recorded", Duration::from_secs(10), || async {
        let order = h.order("dup-1").await;
        let n = order["history"]
            .as_array()?
            .iter()
            .filter(|e| e["ignored"] == "finished" || e["ignored"] == "not_awaited")
            .count();
        (n >= 1).then_some(())
    })
    .await;
}

/// Acknowledgements wait up to `ACK_DELAY_MS` to go out together. The ones owed when the
/// process is SIGKILLed come back as redeliveries, which change nothing; and the ones owed
/// when nothing more arrives still go out once the delay is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_wait_together_and_still_go_out_when_nothing_follows() {
    let mut h = Harness::start("ack-delay", &[("ACK_DELAY_MS", "1000"), PATIENT[0]]).await;
    let _participants = h.all_succeed().await;
    let redeliveries = |h: &Harness| {
        let program = h.orchestrator.http.clone();
        let http = h.http.clone();
        async move { metric(&http, &program, "sagaflow_redeliveries_total").await }
    };

    // Killed within the delay: the last reply was applied, not acknowledged.
    assert_eq!(h.post("/orders", &order_json("ack-1", &[("abc", 1)])).await.0, 202);
    h.wait_state("ack-1", "completed", Duration::from_secs(20)).await;
    h.orchestrator.kill();
    h.orchestrator.restart_and_wait().await;
    wait::until("the unacknowledged reply to come again", Duration::from_secs(10), || async {
        redeliveries(&h).await.filter(|n| *n >= 1.0)
    })
    .await;
    let order = wait::until("the redelivered reply to be recorded", Duration::from_secs(10), || async {
        let order = h.order("ack-1").await;
        let history = order["history"].as_array()?;
        history.iter().any(|e| e["ignored"] == "finished" || e["ignored"] == "not_awaited").then_some(order)
    })
    .await;
    assert_eq!(order["state"], "completed", "a redelivery changes nothing: {order}");

    // Killed well after the delay, with nothing arriving meanwhile: every ack went out.
    assert_eq!(h.post("/orders", &order_json("ack-2", &[("abc", 1)])).await.0, 202);
    h.wait_state("ack-2", "completed", Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    h.orchestrator.kill();
    h.orchestrator.restart_and_wait().await;
    // Time for anything unacknowledged to come again, as it did above.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(redeliveries(&h).await, Some(0.0), "every ack owed before the kill went out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_participant_is_retried_with_one_key_then_compensated() {
    let h = Harness::start("silent", FAST).await;
    let payment = h.bus.participant(Participant::Payment, |_| Answer::Succeed).await;
    let inventory = h.bus.participant(Participant::Inventory, silent_on_actions).await;

    assert_eq!(h.post("/orders", &order_json("t-1", &[("abc", 1)])).await.0, 202);
    let order = h.wait_state("t-1", "compensated", Duration::from_secs(30)).await;
    assert_eq!(order["reason"], "timed_out");

    let received = inventory.received_for("t-1");
    let reserves: Vec<_> = received.iter().filter(|c| c.phase == Phase::Action).collect();
    assert_eq!(reserves.iter().map(|c| c.attempt).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(reserves.iter().all(|c| c.idempotency_key == reserves[0].idempotency_key));
    // The reservation may have happened: it is released, with a key of its own, then the
    // payment is refunded.
    let release = received.iter().find(|c| c.phase == Phase::Compensation).expect("a release");
    assert_ne!(release.idempotency_key, reserves[0].idempotency_key);
    assert_eq!(phases(&payment.received_for("t-1")), [(Phase::Action, 1), (Phase::Compensation, 1)]);
}

/// A harness whose orchestrator was SIGKILLed while `order_id` waited on its first
/// reservation, with attempts that time out after `attempt_timeout_ms`: payment succeeds,
/// inventory never answers an action. The doubles (payment, inventory) are returned so that
/// they stay on the bus.
async fn killed_while_waiting_on_inventory(
    test: &str,
    order_id: &str,
    attempt_timeout_ms: &str,
) -> (Harness, [ParticipantDouble; 2]) {
    let env =
        [("ATTEMPT_TIMEOUT_MS", attempt_timeout_ms), ("ACTION_ATTEMPTS", "2"), ("BACKOFF_MAX_MS", "100")];
    let mut h = Harness::start(test, &env).await;
    let payment = h.bus.participant(Participant::Payment, |_| Answer::Succeed).await;
    let inventory = h.bus.participant(Participant::Inventory, silent_on_actions).await;
    assert_eq!(h.post("/orders", &order_json(order_id, &[("abc", 1)])).await.0, 202);
    wait::until("the first reservation", Duration::from_secs(10), || async {
        (!inventory.received_for(order_id).is_empty()).then_some(())
    })
    .await;
    h.orchestrator.kill();
    (h, [payment, inventory])
}

/// A restart must find the timers armed before it in the store, or a saga waiting on a silent
/// participant waits for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_armed_before_a_sigkill_fires_after_the_restart() {
    a_timer_fires_after_the_restart("timer-kill", "tk-1", false).await;
}

/// A timer index entry that cannot be read (a future encoding, say) still names its saga and
/// due time; the engine fires what the saga's record armed for then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_whose_index_entry_is_unreadable_fires_what_its_saga_armed() {
    a_timer_fires_after_the_restart("timer-index", "ti-1", true).await;
}

async fn a_timer_fires_after_the_restart(test: &str, order_id: &str, spoil_index_entry: bool) {
    let (mut h, [_payment, inventory]) = killed_while_waiting_on_inventory(test, order_id, "2000").await;
    if spoil_index_entry {
        let store = h.orchestrator.data_dir.join("sagas.sled");
        let db = sled::Config::new().path(store).open().expect("the store opens");
        let timers = db.open_tree("timers").expect("the timers tree");
        let keys: Vec<_> = timers.iter().keys().map(|k| k.expect("a key")).collect();
        assert_eq!(keys.len(), 1, "the saga's one armed timer");
        timers.insert(&keys[0], b"\xff not a timer".to_vec()).unwrap();
        db.flush().unwrap();
    }
    h.orchestrator.restart();
    h.orchestrator.wait_healthy(Duration::from_secs(30)).await;

    let order = h.wait_state(order_id, "compensated", Duration::from_secs(30)).await;
    assert_eq!(order["reason"], "timed_out");
    // The first attempt may be published again after the kill (its confirm unrecorded).
    let mut reserves: Vec<_> = inventory
        .received_for(order_id)
        .into_iter()
        .filter(|c| c.phase == Phase::Action)
        .map(|c| c.attempt)
        .collect();
    reserves.dedup();
    assert_eq!(reserves, [1, 2]);
}

/// A timer that its saga cannot take (here, its record is unreadable) stays armed and is tried
/// again later. Handed straight back, it failed again at once: a commit and an error line
/// fifty times a second, for as long as the process ran. Once the saga can take it again (the
/// record mended, the process restarted), it fires at once and leaves nothing behind; moved 30 s
/// on in the store, as it once was, it made the saga wait those 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_its_saga_cannot_take_is_tried_again_later_not_in_a_loop() {
    let (mut h, _doubles) = killed_while_waiting_on_inventory("timer-unreadable", "tu-1", "1000").await;
    let store = h.orchestrator.data_dir.join("sagas.sled");
    let overwrite_record = |bytes: Vec<u8>| {
        let db = sled::Config::new().path(&store).open().expect("the store opens");
        let sagas = db.open_tree("sagas").expect("the sagas tree");
        let old = sagas.insert("tu-1", bytes).unwrap().expect("the saga is stored under its order id");
        db.flush().unwrap();
        old.to_vec()
    };
    let record = overwrite_record(b"\xff not a saga record".to_vec());
    h.orchestrator.restart();
    h.orchestrator.wait_healthy(Duration::from_secs(30)).await;

    let metric = |text: &str, name: &str| -> f64 {
        let line = text.lines().find(|l| l.split(' ').next() == Some(name));
        line.and_then(|l| l.split(' ').nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    };
    let metrics = || async { h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap() };
    // The timeout was due a second after the reservation: it has fallen due by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = metric(&metrics().await, "sagaflow_commit_seconds_count");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = metrics().await;
    let commits = metric(&after, "sagaflow_commit_seconds_count") - before;
    assert!(commits <= 3.0, "{commits} commits in 3 s with nothing to do but a timer that cannot be applied");
    assert_eq!(metric(&after, "sagaflow_timers_armed"), 1.0, "the timer stays armed: {after}");

    h.orchestrator.kill();
    overwrite_record(record);
    h.orchestrator.restart();
    h.orchestrator.wait_healthy(Duration::from_secs(30)).await;
    let order = h.wait_state("tu-1", "compensated", Duration::from_secs(15)).await;
    assert_eq!(order["reason"], "timed_out");
    let after = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(metric(&after, "sagaflow_timers_armed"), 0.0, "nothing left behind: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_compensation_gets_stuck_and_retry_resumes_it() {
    let h = Harness::start("stuck", FAST).await;
    let refunds_work = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = refunds_work.clone();
    let _payment = h
        .bus
        .participant(Participant::Payment, move |c| match c.phase {
            Phase::Action => Answer::Succeed,
            Phase::Compensation if flag.load(std::sync::atomic::Ordering::SeqCst) => Answer::Succeed,
            Phase::Compensation => Answer::Transient("refund provider down".into()),
        })
        .await;
    let _inventory =
        h.bus.participant(Participant::Inventory, |_| Answer::Refuse("out_of_stock".into())).await;

    assert_eq!(h.post("/orders", &order_json("k-1", &[("abc", 1)])).await.0, 202);
    let order = h.wait_state("k-1", "stuck", Duration::from_secs(30)).await;
    assert_eq!(order["steps"][0]["compensation"]["lastError"], "refund provider down");
    let (status, listed) = h.get("/orders?state=stuck").await;
    assert_eq!(status, 200);
    assert_eq!(listed["orders"][0]["orderId"], "k-1");

    refunds_work.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, body) = h.post("/orders/k-1/retry", "").await;
    assert_eq!(status, 202, "{body}");
    let order = h.wait_state("k-1", "compensated", Duration::from_secs(20)).await;
    assert_eq!(order["reason"], "out_of_stock");
    let (status, body) = h.post("/orders/k-1/retry", "").await;
    assert_eq!(status, 409, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_compensates_mid_flight_and_is_refused_past_the_point_of_no_return() {
    let h = Harness::start("cancel", PATIENT).await;
    let payment = h.bus.participant(Participant::Payment, |_| Answer::Succeed).await;
    let inventory = h
        .bus
        .participant(Participant::Inventory, |c| match (c.order_id.as_str(), c.phase) {
            ("c-1", Phase::Action) => Answer::Silent,
            _ => Answer::Succeed,
        })
        .await;
    let notification = h.bus.participant(Participant::Notification, |_| Answer::Silent).await;

    // Mid-flight: the reservation is out, unanswered.
    assert_eq!(h.post("/orders", &order_json("c-1", &[("abc", 1)])).await.0, 202);
    wait::until("the reservation", Duration::from_secs(10), || async {
        (!inventory.received_for("c-1").is_empty()).then_some(())
    })
    .await;
    let (status, body) = h.post("/orders/c-1/cancel", "").await;
    assert_eq!(status, 202, "{body}");
    let order = h.wait_state("c-1", "compensated", Duration::from_secs(20)).await;
    assert_eq!(order["reason"], "cancelled");
    assert!(inventory.received_for("c-1").iter().any(|c| c.phase == Phase::Compensation));
    assert!(payment.received_for("c-1").iter().any(|c| c.phase == Phase::Compensation));
    assert_eq!(h.post("/orders/c-1/cancel", "").await.0, 409, "terminal");

    // Past the point of no return: the confirmation is out.
    assert_eq!(h.post("/orders", &order_json("c-2", &[("abc", 1)])).await.0, 202);
    wait::until("the notification", Duration::from_secs(10), || async {
        (!notification.received_for("c-2").is_empty()).then_some(())
    })
    .await;
    let (status, body) = h.post("/orders/c-2/cancel", "").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("point of no return"));
    assert_eq!(h.post("/orders/nope/cancel", "").await.0, 404);
}

/// Orders whose id ends in 7 are declined, in 3 out of stock; the rest complete.
fn scripted(participant: Participant) -> impl Fn(&sagaflow_events::CommandMessage) -> Answer + Send + Sync {
    move |c| match (participant, c.phase, c.order_id.as_str().chars().last()) {
        (Participant::Payment, Phase::Action, Some('7')) => Answer::Refuse("payment_declined".into()),
        (Participant::Inventory, Phase::Action, Some('3')) => Answer::Refuse("out_of_stock".into()),
        _ => Answer::Succeed,
    }
}

/// Places orders over HTTP, retrying through outages: the order id makes it idempotent.
async fn place_all(http: &reqwest::Client, base: &str, ids: &[String]) {
    for id in ids {
        let body = order_json(id, &[("abc", 1), ("xyz", 2)]);
        wait::until(&format!("order {id} to be accepted"), Duration::from_secs(60), || async {
            let r = http
                .post(format!("{base}/orders"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .ok()?;
            (r.status().as_u16() == 202).then_some(())
        })
        .await;
        // Spread the load over the kills.
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
}

/// Every order terminal, and the participants' books agree with each saga's outcome.
async fn check_outcomes(h: &Harness, ids: &[String], doubles: &[sagaflow_tests::bus::ParticipantDouble; 3]) {
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for id in ids {
        let order = wait::until(&format!("order {id} to end"), Duration::from_secs(90), || async {
            let order = h.order(id).await;
            matches!(order["state"].as_str(), Some("completed" | "compensated")).then_some(order)
        })
        .await;
        let state = order["state"].as_str().unwrap().to_owned();
        let expected = match id.chars().last() {
            Some('7') => "compensated",
            Some('3') => "compensated",
            _ => "completed",
        };
        assert_eq!(state, expected, "order {id}: {order}");
        for (i, double) in doubles.iter().enumerate() {
            let books = double.state.lock().unwrap();
            assert!(
                books.times_applied.get(id.as_str()).copied().unwrap_or(0) <= 1,
                "order {id} applied twice"
            );
            let present = books.effect_present.contains(id.as_str());
            // Notification (index 2) cannot be undone and only runs for completed orders.
            assert_eq!(
                present,
                state == "completed",
                "order {id} ({state}): effect of participant {i} present={present}"
            );
        }
        *outcomes.entry(state).or_default() += 1;
    }
    eprintln!("outcomes: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_load_loses_nothing_and_does_nothing_twice() {
    let mut h = Harness::start("sigkill", STEADY).await;
    let doubles = [
        h.bus.participant(Participant::Payment, scripted(Participant::Payment)).await,
        h.bus.participant(Participant::Inventory, scripted(Participant::Inventory)).await,
        h.bus.participant(Participant::Notification, scripted(Participant::Notification)).await,
    ];
    let ids: Vec<String> = (0..300).map(|i| format!("k{i:04}")).collect();
    let http = h.http.clone();
    let base = h.orchestrator.http.clone();
    let load = {
        let ids = ids.clone();
        tokio::spawn(async move { place_all(&http, &base, &ids).await })
    };
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        h.orchestrator.kill();
        tokio::time::sleep(Duration::from_millis(200)).await;
        h.orchestrator.restart();
    }
    h.orchestrator.wait_healthy(Duration::from_secs(30)).await;
    load.await.expect("load");
    check_outcomes(&h, &ids, &doubles).await;
    assert!(h.orchestrator.log_text().matches("orchestrator ready").count() >= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_under_load_is_survived() {
    let Some(broker) = PrivateBroker::start() else {
        panic!("rabbitmq-server is not installed: the broker-restart test needs its own node");
    };
    let h = Harness::start_on("broker", &broker.url(), STEADY).await;
    let doubles = [
        h.bus.participant(Participant::Payment, scripted(Participant::Payment)).await,
        h.bus.participant(Participant::Inventory, scripted(Participant::Inventory)).await,
        h.bus.participant(Participant::Notification, scripted(Participant::Notification)).await,
    ];
    let ids: Vec<String> = (0..300).map(|i| format!("b{i:04}")).collect();
    let load = {
        let (http, base, ids) = (h.http.clone(), h.orchestrator.http.clone(), ids.clone());
        tokio::spawn(async move { place_all(&http, &base, &ids).await })
    };
    // Restart while orders are still arriving: the load takes several seconds.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let placed_before = h.get("/orders?limit=1000").await.1["orders"].as_array().map_or(0, Vec::len);
    tokio::task::block_in_place(|| broker.restart());
    load.await.expect("load");
    check_outcomes(&h, &ids, &doubles).await;
    assert!(placed_before < ids.len(), "the load should still be arriving when the broker restarts");
    wait::until("the orchestrator to report a healthy bus", Duration::from_secs(30), || async {
        (h.get("/health").await.0 == 200).then_some(())
    })
    .await;
    assert!(h.orchestrator.log_text().contains("bus disconnected"), "the orchestrator never saw the restart");
}

/// A broker out of memory or disk blocks publishing. Nothing may be lost, and the stall must
/// be visible: the orchestrator logs it and reports `sagaflow_bus_blocked 1` until it lifts,
/// and then the order goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_blocks_publishing_is_reported_and_nothing_is_lost() {
    let Some(broker) = PrivateBroker::start() else {
        panic!("rabbitmq-server is not installed: the alarm test needs its own node");
    };
    let h = Harness::start_on("blocked", &broker.url(), PATIENT).await;
    let _participants = h.all_succeed().await;
    // A watermark of 0 sets off the memory alarm at once: the node blocks every publisher.
    assert!(broker.ctl(&["set_vm_memory_high_watermark", "0"]), "could not set off the memory alarm");
    let (status, answer) = h.post("/orders", &order_json("held", &[("abc", 1)])).await;
    assert_eq!(status, 202, "{answer}");
    let blocked = || async { metric(&h.http, &h.orchestrator.http, "sagaflow_bus_blocked").await };
    wait::until("the orchestrator to report that the broker blocks it", Duration::from_secs(30), || async {
        (blocked().await == Some(1.0)).then_some(())
    })
    .await;
    assert!(
        h.orchestrator.log_text().contains("the broker blocks publishing"),
        "no line in the log says why"
    );
    assert_eq!(h.order("held").await["state"], "running", "nothing can move while the broker is blocked");

    assert!(broker.ctl(&["set_vm_memory_high_watermark", "0.4"]), "could not lift the memory alarm");
    h.wait_state("held", "completed", Duration::from_secs(60)).await;
    assert_eq!(blocked().await, Some(0.0));
}

/// The same alarm, already on when a process first starts on a namespace: its setup publishes
/// the claim of its queue, and the broker blocks that publish. The process must say so by
/// name (the gauge and the log line), not only, after a while, that its setup was slow; and
/// once the alarm lifts it must come up by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_blocks_publishing_during_the_setup_is_reported() {
    let Some(broker) = PrivateBroker::start() else {
        panic!("rabbitmq-server is not installed: the alarm test needs its own node");
    };
    assert!(broker.ctl(&["set_vm_memory_high_watermark", "0"]), "could not set off the memory alarm");
    let namespace = unique_namespace("blocked-setup");
    let dir = tempfile::tempdir().expect("temp dir");
    let orchestrator =
        Program::start("orchestrator", &namespace, &broker.url(), dir.path().join("orchestrator"), PATIENT);
    let http = reqwest::Client::new();
    // Within the setup's own 20 s bound, so that a report after a timed-out setup cannot pass.
    wait::until(
        "the orchestrator to report that the broker blocks its setup",
        Duration::from_secs(15),
        || async {
            (metric(&http, &orchestrator.http, "sagaflow_bus_blocked").await == Some(1.0)).then_some(())
        },
    )
    .await;
    assert!(
        orchestrator.log_text().contains("the broker blocks publishing"),
        "no line in the log says why the bus does not come up"
    );
    assert!(broker.ctl(&["set_vm_memory_high_watermark", "0.4"]), "could not lift the memory alarm");
    orchestrator.wait_healthy(Duration::from_secs(60)).await;
    assert_eq!(metric(&http, &orchestrator.http, "sagaflow_bus_blocked").await, Some(0.0));
}

/// A node can accept a TCP connection and then say nothing (still booting, stalled, a socket
/// left half-open). The orchestrator must give up on such a connection and try another, not
/// wait on it for good with its bus, and so its timers, down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_accepts_a_connection_and_never_answers_does_not_hold_the_bus_down() {
    let url = amqp_url();
    let (host, port) = host_port(&url).expect("AMQP_URL names a host and port");
    // In front of the real broker: the first connection is held open and silent, and every
    // later one is relayed to the broker.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let front_port = front.local_addr().expect("address").port();
    let authority =
        if url.contains(&format!("{host}:{port}")) { format!("{host}:{port}") } else { host.clone() };
    let front_url = url.replacen(&authority, &format!("127.0.0.1:{front_port}"), 1);
    let relay = tokio::spawn(async move {
        let (_silent, _) = front.accept().await.expect("accept");
        loop {
            let (mut client, _) = front.accept().await.expect("accept");
            let broker = (host.clone(), port);
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(broker).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    let namespace = unique_namespace("silent");
    let bus = TestBus::connect(&url, &namespace).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut orchestrator =
        Program::start("orchestrator", &namespace, &front_url, dir.path().join("orchestrator"), PATIENT);
    orchestrator.wait_healthy(Duration::from_secs(90)).await;
    assert!(
        orchestrator.log_text().contains("setup took longer"),
        "the orchestrator should have given up on the silent connection"
    );
    orchestrator.kill();
    relay.abort();
    drop(bus);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_nothing_stops() {
    let h = Harness::start("bad", PATIENT).await;
    let _participants = h.all_succeed().await;

    let cases: &[(&str, u16)] = &[
        ("{not json", 400),
        ("", 400),
        ("[1, 2]", 422),
        (r#"{"userId": "u", "items": []}"#, 422),
        (r#"{"userId": "u", "items": [{"productId": "abc", "quantity": 0}]}"#, 422),
        (r#"{"userId": "u", "items": [{"productId": "abc", "quantity": -1}]}"#, 422),
        (r#"{"userId": "u", "items": [{"productId": "no-such-thing", "quantity": 1}]}"#, 422),
        (r#"{"orderId": "has space", "userId": "u", "items": [{"productId": "abc", "quantity": 1}]}"#, 422),
        (r#"{"userId": "u", "items": [{"productId": "abc", "quantity": "two"}]}"#, 422),
    ];
    for (body, want) in cases {
        let (status, answer) = h.post("/orders", body).await;
        assert_eq!(status, *want, "POST {body:?} answered {answer}");
        assert!(answer["error"].is_string(), "POST {body:?} answered {answer}");
    }
    let big = format!(r#"{{"userId": "u", "note": "{}", "items": []}}"#, "x".repeat(200_000));
    // The server stops reading and closes this connection; use one of its own.
    let response = reqwest::Client::new()
        .post(h.url("/orders"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 413, "{answer}");
    assert!(answer["error"].is_string());
    for (path, want) in
        [("/orders/missing", 404), ("/orders?state=bogus", 400), ("/orders?limit=0", 400), ("/nowhere", 404)]
    {
        let (status, answer) = h.get(path).await;
        assert_eq!(status, want, "GET {path}: {answer}");
        assert!(answer["error"].is_string(), "GET {path}: {answer}");
    }
    let (status, listed) = h.get("/orders").await;
    assert_eq!(status, 200);
    assert_eq!(listed["orders"].as_array().unwrap().len(), 0, "nothing started");

    // On the bus: garbage on the reply queue and an order without an id go to the dead-letter
    // queue with a reason; an order that can never go through ends compensated.
    h.bus.publish(&h.bus.topology.replies_exchange(), "", b"\xff not json at all", "x").await;
    h.bus.place_order(r#"{"event": "OrderPlaced", "userId": "u", "items": []}"#).await;
    h.bus.place_order(&order_json("bad-qty", &[("abc", 0)])).await;
    let order = h.wait_state("bad-qty", "compensated", Duration::from_secs(20)).await;
    assert_eq!(order["reason"], "invalid_order");
    let letters = wait::until("two dead letters", Duration::from_secs(20), || async {
        let letters = h.bus.take_dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await;
    let mut letters = letters;
    if letters.len() < 2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        letters.extend(h.bus.take_dead_letters().await);
    }
    let reasons: Vec<String> = letters.iter().map(|(r, _)| r.clone().unwrap_or_default()).collect();
    assert!(reasons.iter().any(|r| r.contains("not a reply message")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("orderId is missing")), "{reasons:?}");

    // And it still works.
    assert_eq!(h.post("/orders", EXAMPLE_ORDER).await.0, 202);
    h.wait_state("12345", "completed", Duration::from_secs(20)).await;
}

/// After an outage, replies arrive by the tens of thousands, 64 to a broker message. A
/// `POST /orders` that came meanwhile must not wait behind all of them: each is a caller holding
/// a connection, and a few hundred such callers fill the server (stop 28's outage row turned
/// orders away at the door this way). The replies here are for sagas this store does not hold,
/// so the orchestrator counts each one it takes (`sagaflow_replies_unknown_saga_total`); the
/// count at each answer says how much of the backlog the request waited behind. Before the fix
/// a request waited behind every delivery the consumer held when it came (up to 512 of 64
/// items: about 32,000 replies), and four times in five more than 16,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_answered_before_a_backlog_of_replies_is_worked_off() {
    use sagaflow_runtime::bus::{amqp::properties::properties, batch, Message, Route};
    const BACKLOG: usize = 200_000;
    const UNKNOWN: &str = "sagaflow_replies_unknown_saga_total";

    let h = Harness::start("backlog", PATIENT).await;
    let _doubles = h.all_succeed().await;
    // Frozen, so the whole backlog is queued before it takes any.
    let pid = h.orchestrator.pid().expect("running").to_string();
    let signal = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().expect("kill");
    signal("-STOP");
    let route = Route { exchange: h.bus.topology.replies_exchange(), key: String::new() };
    let replies: Vec<Message> = (0..BACKLOG)
        .map(|n| {
            let order_id = format!("gone-{n:06}");
            let reply = sagaflow_events::ReplyMessage {
                saga_id: sagaflow_events::SagaId::generate(),
                order_id: sagaflow_events::OrderId::parse(order_id.clone()).unwrap(),
                step: sagaflow_events::StepName::parse("payment").unwrap(),
                phase: Phase::Action,
                attempt: 1,
                idempotency_key: format!("{order_id}:payment:action"),
                outcome: sagaflow_events::ReplyOutcome::Succeeded,
                payment_id: None,
                missing_products: vec![],
            };
            Message::json(route.clone(), &order_id, "reply", serde_json::to_vec(&reply).unwrap()).batchable()
        })
        .collect();
    let batches = batch::group(&replies);
    assert!(batches.len() < BACKLOG / 32, "the replies travel in batches: {}", batches.len());
    for (_, envelope) in &batches {
        h.bus.publish_raw(&route.exchange, "", &envelope.body, properties(envelope)).await;
    }
    signal("-CONT");

    // Wait until it is working the backlog off, with its consumer's deliveries queued inside.
    let metric = || async { sagaflow_tests::system::metric(&h.http, &h.orchestrator.http, UNKNOWN).await };
    wait::until("the orchestrator to work on the backlog", Duration::from_secs(60), || async {
        (metric().await? >= 5_000.0).then_some(())
    })
    .await;
    // Requests one after another while the backlog lasts: each would have waited behind
    // whatever the consumer held when it came, which is most of the time a full prefetch.
    let mut answered = Vec::new();
    while answered.len() < 5 {
        let before = metric().await.unwrap();
        if before > (BACKLOG - 40_000) as f64 {
            break;
        }
        let id = format!("behind-the-backlog-{}", answered.len());
        assert_eq!(h.post("/orders", &order_json(&id, &[("abc", 1)])).await.0, 202);
        let waited_behind = metric().await.unwrap() - before;
        assert!(
            waited_behind < 16_000.0,
            "{id} waited behind {waited_behind} replies of the backlog before it was answered"
        );
        answered.push(id);
    }
    assert!(answered.len() >= 2, "the backlog went too fast to test anything: {answered:?}");
    for id in &answered {
        h.wait_state(id, "completed", Duration::from_secs(120)).await;
    }
    wait::until("the whole backlog to be counted", Duration::from_secs(120), || async {
        (metric().await? >= BACKLOG as f64).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_exit_zero() {
    let mut h = Harness::start("sigterm", PATIENT).await;
    let status = h.orchestrator.terminate(Duration::from_secs(15)).expect("exits after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_finished_sagas_and_keeps_the_rest() {
    let retain = [("RETAIN_FINISHED_SECS", "1")];
    let h = Harness::start("retention", &[PATIENT, &retain].concat()).await;
    let succeed = h.all_succeed().await;
    let (status, _) = h.post("/orders", &order_json("done-early", &[("abc", 1)])).await;
    assert_eq!(status, 202);
    h.wait_state("done-early", "completed", Duration::from_secs(20)).await;
    // A saga that waits for a silent payment stays in flight, however old it gets.
    drop(succeed);
    let _silent = h.bus.participant(Participant::Payment, |_| Answer::Silent).await;
    let (status, _) = h.post("/orders", &order_json("in-flight", &[("abc", 1)])).await;
    assert_eq!(status, 202);

    wait::until("the finished saga to be removed", Duration::from_secs(20), || async {
        (h.get("/orders/done-early").await.0 == 404).then_some(())
    })
    .await;
    assert_eq!(h.order("in-flight").await["state"], "running");
    let metrics = h.http.get(h.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sagaflow_sagas_removed_total 1"), "{metrics}");
    assert!(metrics.contains("sagaflow_sagas{state=\"completed\"} 0"), "{metrics}");
    // The order id is free again: placing it starts a new saga.
    let (status, body) = h.post("/orders", &order_json("done-early", &[("abc", 1)])).await;
    assert_eq!((status, body["state"].as_str()), (202, Some("running")), "{body}");
}

/// `GET /orders` narrows by user, reason and creation time, pages with the cursor, and refuses
/// what it does not understand instead of ignoring it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_filters_pages_and_refuses_unknown_parameters() {
    let h = Harness::start("filters", PATIENT).await;
    let _participants = h.all_succeed().await;
    let before = sagaflow_runtime::now_millis();
    for (id, user) in [("f1", "alice"), ("f2", "bob"), ("f3", "alice")] {
        let body = json!({ "orderId": id, "userId": user, "items": [{ "productId": "abc", "quantity": 1 }] });
        assert_eq!(h.post("/orders", &body.to_string()).await.0, 202);
    }
    for id in ["f1", "f2", "f3"] {
        wait::until(&format!("{id} to complete"), Duration::from_secs(30), || async {
            (h.order(id).await["state"] == "completed").then_some(())
        })
        .await;
    }
    let after = sagaflow_runtime::now_millis() + 1;
    let ids = |page: &Value| -> Vec<String> {
        page["orders"].as_array().unwrap().iter().map(|o| o["orderId"].as_str().unwrap().to_owned()).collect()
    };
    let (status, page) = h.get("/orders?userId=alice").await;
    assert_eq!((status, ids(&page)), (200, vec!["f3".to_owned(), "f1".to_owned()]), "{page}");
    // One at a time, with the cursor.
    let (_, first) = h.get("/orders?userId=alice&limit=1").await;
    assert_eq!(ids(&first), ["f3"]);
    let cursor = first["next"].as_str().expect("a cursor while there is more");
    let (_, second) = h.get(&format!("/orders?userId=alice&limit=1&after={cursor}")).await;
    assert_eq!(ids(&second), ["f1"]);
    assert!(second["next"].is_null(), "{second}");
    // Time: epoch milliseconds or RFC 3339.
    assert_eq!(ids(&h.get(&format!("/orders?since={before}&state=completed")).await.1).len(), 3);
    assert!(ids(&h.get(&format!("/orders?since={after}")).await.1).is_empty());
    assert!(ids(&h.get(&format!("/orders?until={before}")).await.1).is_empty());
    assert!(ids(&h.get("/orders?until=2000-01-01T00:00:00Z").await.1).is_empty());
    assert!(ids(&h.get("/orders?reason=out_of_stock").await.1).is_empty());
    // What it does not understand is a 400 with a JSON error, never silently ignored.
    for bad in
        ["bogus=1", "userid=alice", "state=completed&state=running", "since=yesterday", "reason=", "limit=0"]
    {
        let (status, answer) = h.get(&format!("/orders?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"].is_string(), "{bad}: {answer}");
    }
}

/// The order saga is a file (`sagas/order.toml`): one given with `--saga-file` (`SAGA_FILES`)
/// sets its steps' order and retries. Here inventory goes first and is tried twice, so a
/// silent inventory times the saga out before payment is ever asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_saga_file_sets_the_steps_and_their_retries() {
    let file = inventory_first(ORDER_SAGA)
        .replacen("timeout = \"5s\"\nattempts = 4", "timeout = \"400ms\"\nattempts = 2", 1)
        .replace("initial = \"250ms\", max = \"10s\"", "initial = \"50ms\", max = \"200ms\"");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("order.toml");
    std::fs::write(&path, &file).unwrap();
    let path = path.display().to_string();
    let h = Harness::start("saga-file", &[("SAGA_FILES", path.as_str())]).await;
    let payment = h.bus.participant(Participant::Payment, |_| Answer::Succeed).await;
    let inventory = h.bus.participant(Participant::Inventory, silent_on_actions).await;

    assert_eq!(h.post("/orders", &order_json("f-1", &[("abc", 1)])).await.0, 202);
    let order = h.wait_state("f-1", "compensated", Duration::from_secs(30)).await;
    assert_eq!(order["reason"], "timed_out");
    let steps: Vec<&str> =
        order["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["inventory", "payment", "notification"]);
    let reserves: Vec<u32> = inventory
        .received_for("f-1")
        .iter()
        .filter(|c| c.phase == Phase::Action)
        .map(|c| c.attempt)
        .collect();
    assert_eq!(reserves, [1, 2]);
    assert!(payment.received_for("f-1").is_empty(), "payment was asked before inventory");
}

/// A definition that breaks a rule stops the orchestrator at start-up, before it is ready, with
/// one line naming the file, the step and the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_saga_file_stops_the_orchestrator_with_one_line() {
    let shipped = ORDER_SAGA;
    let trip = "name = \"trip\"\nversion = 1\n[[steps]]\nname = \"flight\"\nparticipant = \"flights\"\n\
                action = { command = \"bookFlight\", carries = [\"input.from\"] }\n\
                compensation = { command = \"cancelFlight\" }\n";
    let cases = [
        ("syntax.toml", "name = \"x\"\nversion = [", None, "not a valid definition"),
        (
            "later.toml",
            &trip.replace("input.from", "steps.hotel.ref") as &str,
            Some("flight"),
            "step `hotel` does not come before",
        ),
        (
            "order.toml",
            &format!("{shipped}compensation = {{ command = \"unsend\" }}\n"),
            Some("notification"),
            "compensation is none",
        ),
        (
            "order.toml",
            &shipped.replacen("\"chargePayment\"", "\"charge\"", 1),
            Some("payment"),
            "action is chargePayment",
        ),
        (
            "twice.toml",
            &trip.replace("[\"input.from\"]", "[\"input.from\", \"input.from\"]") as &str,
            Some("flight"),
            "carries \"input.from\" twice",
        ),
    ];
    let namespace = unique_namespace("saga-file-refused");
    let url = amqp_url();
    for (name, text, step, rule) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        let path = path.display().to_string();
        let addr = format!("127.0.0.1:{}", sagaflow_tests::procs::free_port());
        let data = dir.path().join("data").display().to_string();
        let env = [
            ("HTTP_ADDR", addr.as_str()),
            ("DATA_DIR", data.as_str()),
            ("SAGA_NAMESPACE", &namespace),
            ("AMQP_URL", &url),
            ("SAGA_FILES", &path),
        ];
        let (status, out) = Program::run_to_exit("orchestrator", &env, Duration::from_secs(20));
        let status = status.unwrap_or_else(|| panic!("{name}: the orchestrator kept running:\n{out}"));
        assert!(!status.success(), "{name}: exited {status}");
        assert_eq!(out.trim().lines().count(), 1, "{name}: more than one line:\n{out}");
        assert!(out.contains(&path), "{name}: the file is not named:\n{out}");
        assert!(out.contains(rule), "{name}: should say {rule:?}:\n{out}");
        if let Some(step) = step {
            assert!(out.contains(&format!("step `{step}`")), "{name}: the step is not named:\n{out}");
        }
        assert!(!out.contains("ready"), "{name}: said it was ready:\n{out}");
    }
}

/// Versions in flight: sagas started under version 1 of the order saga's file finish under it
/// after the orchestrator restarts with version 2, which new sagas get. Here version 2 puts
/// inventory first, so each saga's steps show which definition it ran under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_in_flight_finish_under_the_version_they_started_with() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let v1 = ORDER_SAGA;
    let v2 = inventory_first(v1).replacen("version = 1", "version = 2", 1);
    let files = tempfile::tempdir().unwrap();
    let (path_v1, path_v2) = (files.path().join("order-v1.toml"), files.path().join("order-v2.toml"));
    std::fs::write(&path_v1, v1).unwrap();
    std::fs::write(&path_v2, v2).unwrap();
    let (path_v1, path_v2) = (path_v1.display().to_string(), path_v2.display().to_string());

    let env = [("SAGA_FILES", path_v1.as_str()), ("ATTEMPT_TIMEOUT_MS", "1000"), ("BACKOFF_MAX_MS", "200")];
    let mut h = Harness::start("versions", &env).await;
    let mail_open = Arc::new(AtomicBool::new(false));
    let open = mail_open.clone();
    let _doubles = [
        h.bus.participant(Participant::Payment, |_| Answer::Succeed).await,
        h.bus.participant(Participant::Inventory, |_| Answer::Succeed).await,
        h.bus
            .participant(Participant::Notification, move |_| {
                if open.load(Ordering::SeqCst) {
                    Answer::Succeed
                } else {
                    Answer::Silent
                }
            })
            .await,
    ];
    for id in ["v1-a", "v1-b"] {
        assert_eq!(h.post("/orders", &order_json(id, &[("abc", 1)])).await.0, 202);
    }
    // Both wait on the mail, past payment and inventory: in flight under version 1.
    for id in ["v1-a", "v1-b"] {
        wait::until(&format!("{id} to wait on the mail"), Duration::from_secs(20), || async {
            let order = h.order(id).await;
            (order["steps"][1]["state"] == "succeeded").then_some(())
        })
        .await;
    }

    h.orchestrator.terminate(Duration::from_secs(20)).expect("the orchestrator stops on SIGTERM");
    h.orchestrator.set_env("SAGA_FILES", &path_v2);
    h.orchestrator.restart_and_wait().await;
    mail_open.store(true, Ordering::SeqCst);
    assert_eq!(h.post("/orders", &order_json("v2-a", &[("abc", 1)])).await.0, 202);

    let step_names = |order: &Value| -> Vec<String> {
        order["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
    };
    for id in ["v1-a", "v1-b"] {
        let order = h.wait_state(id, "completed", Duration::from_secs(30)).await;
        assert_eq!(step_names(&order), ["payment", "inventory", "notification"], "{id} left version 1");
        assert_eq!(
            (&order["definition"]["name"], &order["definition"]["version"]),
            (&json!("order"), &json!(1))
        );
    }
    let order = h.wait_state("v2-a", "completed", Duration::from_secs(30)).await;
    assert_eq!(step_names(&order), ["inventory", "payment", "notification"], "v2-a is not under version 2");
    assert_eq!(order["definition"]["version"], 2, "{order}");
    assert!(h.orchestrator.log_text().contains("version=2"), "the log does not say which version runs");
}
