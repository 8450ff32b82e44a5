//! The relay against the real broker: an entry the broker refuses, for a reason the code never
//! expected, is parked after its strikes with the broker's reason, and everything behind it
//! goes out.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_runtime::bus::{Bus, Message, Route};
use sagaflow_runtime::health::Health;
use sagaflow_runtime::outbox::Outbox;
use sagaflow_runtime::pipeline::Input;
use sagaflow_tests::bus::TestBus;
use sagaflow_tests::{amqp_url, unique_namespace, wait};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_broker_keeps_refusing_is_parked_and_the_rest_flows() {
    let namespace = unique_namespace("relay-park");
    let url = amqp_url();
    let bus = TestBus::connect(&url, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let outbox = Outbox::open(&db).unwrap();
    // Publishing to an exchange that does not exist closes the channel: a refusal nobody wrote
    // a rule for. Behind it, two good messages.
    let nowhere = Route { exchange: format!("{namespace}.no-such-exchange"), key: String::new() };
    outbox.stage_alone(&Message::json(nowhere, "o-1", "kind", b"lost".to_vec())).unwrap();
    let dead_letters = Route { exchange: bus.topology.dead_letter_exchange(), key: String::new() };
    for body in [b"one".to_vec(), b"two".to_vec()] {
        outbox.stage_alone(&Message::json(dead_letters.clone(), "o-2", "kind", body)).unwrap();
    }
    outbox.mark_durable(outbox.staged_upto());

    let (sink, _inputs) = tokio::sync::mpsc::channel::<Input<()>>(8);
    let relay = Bus {
        url: url.parse().unwrap(),
        topology: bus.topology.clone(),
        consumers: Vec::new(),
        sink,
        outbox: outbox.clone(),
        relay_window: 16,
        health: Health::default(),
        metrics: Arc::default(),
        store_id: "relay-test".into(),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone(), stop.clone()));

    wait::until("the refused entry to be parked", Duration::from_secs(60), || async {
        (outbox.parked_count() == 1).then_some(())
    })
    .await;
    let parked = outbox.parked(10);
    assert!(
        parked[0].1.reason.contains("NOT_FOUND") || parked[0].1.reason.contains("no exchange"),
        "{}",
        parked[0].1.reason
    );
    assert_eq!(Message::decode(&parked[0].1.message).unwrap().body, b"lost");
    let letters = wait::until("the good messages to arrive", Duration::from_secs(30), || async {
        let mut letters = bus.take_dead_letters().await;
        letters.sort();
        (letters.len() == 2).then_some(letters)
    })
    .await;
    assert_eq!(letters.iter().map(|(_, b)| b.as_str()).collect::<Vec<_>>(), ["one", "two"]);
    wait::until("the outbox to empty", Duration::from_secs(10), || async {
        (outbox.depth() == 0).then_some(())
    })
    .await;
    assert_eq!(outbox.metrics.parked.get(), 1);
    stop.cancel();
    let _ = task.await;
}
