//! End to end: the real orchestrator, payment, inventory and notification binaries against the
//! real broker, and the books of every service checked against every saga's outcome.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sagaflow_tests::system::{metric, order_json, System, DECLINE_OVER};
use sagaflow_tests::wait;
use serde_json::Value;

const EXAMPLE_ORDER: &str = include_str!("../../events/tests/fixtures/OrderPlaced.json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_order_is_charged_reserved_and_confirmed() {
    let s = System::start("e2e-example").await;
    let before = s.stock().await;
    assert_eq!(s.place(EXAMPLE_ORDER).await, 202);
    let order = s.wait_terminal("12345").await;
    assert_eq!(order["state"], "completed", "{order}");
    let attempts: Vec<u64> =
        order["steps"].as_array().unwrap().iter().map(|s| s["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 1, 1], "every step answered at the first attempt: {order}");
    let amount = order["amountCents"].as_u64().unwrap();

    assert_eq!(s.ledger().await.get("12345"), Some(&(amount, 0)));
    // Once the order completes, its reservation becomes a sale: nothing stays reserved.
    let after = wait::until("the reservation to become a sale", Duration::from_secs(10), || async {
        let stock = s.stock().await;
        (stock["abc"]["reserved"] == 0 && stock["xyz"]["reserved"] == 0).then_some(stock)
    })
    .await;
    for (product, quantity) in [("abc", 2), ("xyz", 1)] {
        let was = before[product]["available"].as_u64().unwrap();
        assert_eq!(after[product]["available"].as_u64().unwrap(), was - quantity);
        assert_eq!(after[product]["sold"].as_u64().unwrap(), quantity);
    }
    let notes = s.notifications().await;
    assert_eq!(notes["notifications"]["12345"], 1);
    let maildir = std::path::PathBuf::from(notes["maildir"].as_str().unwrap()).join("new");
    let mails: Vec<_> = std::fs::read_dir(&maildir).unwrap().collect();
    assert_eq!(mails.len(), 1, "one mail in {}", maildir.display());
    let mail = std::fs::read_to_string(mails[0].as_ref().unwrap().path()).unwrap();
    assert!(mail.contains("Subject: Your order 12345 is confirmed"), "{mail}");
}

/// The relay learns that nobody listens to a public event from the broker returning it; lapin
/// logged every such return as a warning with the whole event. The test kit sets `RUST_LOG` to
/// the default filter (`info,lapin=warn`), as an operator's would be set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_nobody_listens_to_are_dropped_without_a_warning_in_the_log() {
    let s = System::start("e2e-quiet-returns").await;
    assert_eq!(s.place(EXAMPLE_ORDER).await, 202);
    assert_eq!(s.wait_terminal("12345").await["state"], "completed");
    wait::until("an event nobody listens to, returned and dropped", Duration::from_secs(10), || async {
        let skipped = metric(&s.http, &s.orchestrator.http, "sagaflow_events_skipped_total").await?;
        (skipped >= 1.0).then_some(())
    })
    .await;
    let log = s.orchestrator.log_text();
    assert!(!log.contains("returned us a message"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_over_the_decline_limit_charges_nothing() {
    let s = System::start("e2e-decline").await;
    assert_eq!(s.place(&order_json("big-1", &[("xyz", 30)])).await, 202);
    let order = s.wait_terminal("big-1").await;
    assert_eq!(
        (order["state"].as_str(), order["reason"].as_str()),
        (Some("compensated"), Some("payment_declined"))
    );
    assert_eq!(s.ledger().await.get("big-1"), None, "nothing charged");
    assert!(s.notifications().await["notifications"].get("big-1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_beyond_the_stock_is_refunded_and_the_stock_is_unchanged() {
    let s = System::start("e2e-stock").await;
    let before = s.stock().await;
    // Cheap enough for payment; more than the 5 rare prints that exist.
    let body = order_json("many-1", &[("abc", 1), ("rare", 6)]);
    assert_eq!(s.place(&body).await, 202);
    let order = s.wait_terminal("many-1").await;
    assert_eq!(
        (order["state"].as_str(), order["reason"].as_str()),
        (Some("compensated"), Some("out_of_stock")),
        "{order}"
    );
    let amount = order["amountCents"].as_u64().unwrap();
    if amount <= DECLINE_OVER {
        assert_eq!(s.ledger().await.get("many-1"), Some(&(amount, amount)), "charged, then refunded in full");
    }
    assert_eq!(s.stock().await, before, "stock unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_hundred_mixed_orders_conserve_money_and_stock() {
    let s = System::start("e2e-mixed").await;
    let initial = s.stock().await;
    let n = 300;
    let started = Instant::now();
    let mut expected_cancel = Vec::new();
    for i in 0..n {
        let id = format!("m{i:04}");
        let items: Vec<(&str, i64)> = match i % 10 {
            0 => vec![("xyz", 40)], // over the decline limit
            1 => vec![("rare", 6)], // out of stock
            _ => vec![("abc", (i % 3 + 1) as i64), ("jkl", 1)],
        };
        assert_eq!(s.place(&order_json(&id, &items)).await, 202);
        if i % 10 == 5 {
            // Some customers change their mind at once; the cancel may land before or after
            // the point of no return, and either answer is a valid one.
            let r = s.http.post(format!("{}/orders/{id}/cancel", s.orchestrator.http)).send().await.unwrap();
            assert!(matches!(r.status().as_u16(), 202 | 409), "cancel answered {}", r.status());
            expected_cancel.push(id);
        }
    }
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    let mut orders = Vec::new();
    for i in 0..n {
        let order = s.wait_terminal(&format!("m{i:04}")).await;
        let key = format!("{}:{}", order["state"].as_str().unwrap(), order["reason"].as_str().unwrap_or("-"));
        *outcomes.entry(key).or_default() += 1;
        orders.push(order);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{n} mixed orders in {elapsed:.1?} ({:.0} orders/s): {outcomes:?}",
        n as f64 / elapsed.as_secs_f64()
    );

    // Let the last replies, compensations and completions settle, then check the books.
    s.assert_books(&orders, &initial).await;
    assert!(outcomes.get("completed:-").copied().unwrap_or(0) > n / 2, "{outcomes:?}");
    assert!(
        outcomes.contains_key("compensated:payment_declined")
            && outcomes.contains_key("compensated:out_of_stock")
    );
    let notes = s.notifications().await;
    assert_eq!(
        notes["delivered"].as_u64().unwrap() as usize,
        outcomes.get("completed:-").copied().unwrap_or(0)
    );
}

/// Reads Server-Sent Events from `response` until `done` says the text so far is enough.
async fn read_events(mut response: reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done(&text) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
        match chunk {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            other => panic!("the stream ended or stalled ({other:?}) after:\n{text}"),
        }
    }
    text
}

/// `GET /orders/stream` pushes every state and step change as it becomes durable, filtered to
/// one order on request, and `Last-Event-ID` replays what a client missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_pushes_changes_and_resumes_after_a_disconnect() {
    let s = System::start("stream").await;
    let url = format!("{}/orders/stream?orderId=streamed-1", s.orchestrator.http);
    let live = s.http.get(&url).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(s.place(&order_json("streamed-1", &[("abc", 1)])).await, 202);
    assert_eq!(s.place(&order_json("other-1", &[("abc", 1)])).await, 202);
    let text = read_events(live, |t| t.contains("\"state\":\"completed\"")).await;
    assert!(!text.contains("other-1"), "filtered to one order:\n{text}");
    for step in ["\"step\":\"payment\"", "\"step\":\"inventory\"", "\"step\":\"notification\""] {
        assert!(text.contains(step), "{step} missing:\n{text}");
    }
    // Resume after the first event: everything after it comes again, from the durable feed.
    let first_id = text.lines().find_map(|l| l.strip_prefix("id:")).unwrap().trim().to_owned();
    let resumed = s.http.get(&url).header("last-event-id", &first_id).send().await.unwrap();
    let replay = read_events(resumed, |t| t.contains("\"state\":\"completed\"")).await;
    assert!(!replay.contains(&format!("id:{first_id}\n")) && !replay.contains(&format!("id: {first_id}\n")));
    assert!(replay.contains("\"step\":\"inventory\""), "{replay}");
    // What it does not understand is a 400, not an endless stream.
    for bad in ["?bogus=1", "?state=nonsense", "?after=x"] {
        let r = s.http.get(format!("{}/orders/stream{bad}", s.orchestrator.http)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

/// Asking the stream to resume from further back than its feed keeps is a clear `410`, which
/// says where it can resume; from there, it resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_says_how_far_back_it_can_resume() {
    let s = System::start_with("stream-gone", &[("orchestrator", "CHANGE_FEED_KEEP", "3")]).await;
    for id in ["gone-1", "gone-2"] {
        assert_eq!(s.place(&order_json(id, &[("abc", 1)])).await, 202);
        assert_eq!(s.wait_terminal(id).await["state"], "completed");
    }
    let stream = format!("{}/orders/stream", s.orchestrator.http);
    let gone = s.http.get(&stream).header("last-event-id", "1").send().await.unwrap();
    assert_eq!(gone.status(), 410);
    let error: Value = gone.json().await.unwrap();
    let message = error["error"].as_str().unwrap();
    assert!(message.contains("keeps the last 3 changes"), "{message}");
    let earliest: String =
        message.split("resume after ").nth(1).unwrap().chars().take_while(char::is_ascii_digit).collect();
    let resumed = s.http.get(&stream).header("last-event-id", &earliest).send().await.unwrap();
    assert_eq!(resumed.status(), 200);
    let text =
        read_events(resumed, |t| t.contains("\"orderId\":\"gone-2\"") && t.contains("completed")).await;
    assert!(!text.contains("gone-1"), "only the last three changes are kept:\n{text}");
}
