//! The relay against the real broker: an entry the broker refuses, for a reason the code never
//! expected, is parked after its strikes with the broker's reason, and everything behind it
//! goes out.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_runtime::bus::{Bus, BusMetrics, Message, Route};
use sagaflow_runtime::health::Health;
use sagaflow_runtime::outbox::Outbox;
use sagaflow_runtime::writes::Writes;
use sagaflow_tests::bus::TestBus;
use sagaflow_tests::{amqp_url, unique_namespace, wait};
use tokio_util::sync::CancellationToken;

/// A bus that only relays (no consumers), over `outbox`, on the test's namespace.
fn relay_only(bus: &TestBus, outbox: &Arc<Outbox>, recheck: Duration, metrics: Arc<BusMetrics>) -> Bus {
    let (sink, _inputs) = sagaflow_runtime::bus::channel(&[]);
    Bus {
        broker: sagaflow_runtime::config::Broker::RabbitMq(amqp_url().parse().unwrap()),
        topology: bus.topology.clone(),
        consumers: Vec::new(),
        sink,
        outbox: outbox.clone(),
        relay_window: 16,
        events_unbound_recheck: recheck,
        health: Health::default(),
        metrics,
        store_id: "relay-test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_the_broker_keeps_refusing_is_parked_and_the_rest_flows() {
    let namespace = unique_namespace("relay-park");
    let url = amqp_url();
    let bus = TestBus::connect(&url, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let outbox = Outbox::open(&db).unwrap();
    // Publishing to an exchange that does not exist closes the channel: a refusal nobody wrote
    // a rule for. Around it, two good messages, all three committed as one batch, as the
    // pipeline does: one outbox record, of which only the refused entry is parked.
    let nowhere = Route { exchange: format!("{namespace}.no-such-exchange"), key: String::new() };
    let dead_letters = Route { exchange: bus.topology.dead_letter_exchange(), key: String::new() };
    let writes = Writes::new();
    outbox.stage(&writes, &Message::json(dead_letters.clone(), "o-2", "kind", b"one".to_vec()));
    outbox.stage(&writes, &Message::json(nowhere, "o-1", "kind", b"lost".to_vec()));
    outbox.stage(&writes, &Message::json(dead_letters, "o-2", "kind", b"two".to_vec()));
    outbox.seal(&writes);
    writes.commit().unwrap();
    assert_eq!(outbox.tree().len(), 1, "one record");
    outbox.mark_durable(outbox.staged_upto());

    let relay = relay_only(&bus, &outbox, Duration::from_secs(1), Arc::default());
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
    // A good message that was out when the channel closed goes again (its confirm was lost
    // with the channel): at least once, so a body may come twice, and receivers deduplicate.
    let arrived = std::sync::Mutex::new(std::collections::BTreeSet::new());
    wait::until("the good messages to arrive", Duration::from_secs(30), || async {
        let letters = bus.take_dead_letters().await;
        let mut arrived = arrived.lock().unwrap();
        arrived.extend(letters.into_iter().map(|(_, body)| body));
        (arrived.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(arrived.into_inner().unwrap().into_iter().collect::<Vec<_>>(), ["one", "two"]);
    wait::until("the outbox to empty", Duration::from_secs(10), || async {
        (outbox.depth() == 0).then_some(())
    })
    .await;
    assert_eq!(outbox.metrics.parked.get(), 1);
    stop.cancel();
    let _ = task.await;
}

/// Public events that no queue is bound to are returned by the broker once, then held back and
/// dropped only when a later look proves nobody was bound; a queue bound later gets every event
/// made after it was bound, and none is lost to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_nobody_listens_to_are_dropped_and_a_new_listener_misses_none() {
    use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let namespace = unique_namespace("relay-unbound");
    let url = amqp_url();
    let bus = TestBus::connect(&url, &namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let outbox = Outbox::open(&db).unwrap();
    let route = Route { exchange: bus.topology.events_exchange(), key: "NobodyListens".into() };
    let stage = |n: usize| {
        for i in 0..n {
            let event =
                Message::json(route.clone(), "o", "NobodyListens", format!("{{\"n\":{i}}}").into_bytes());
            outbox.stage_alone(&event.skip_while_unbound()).unwrap();
        }
        outbox.mark_durable(outbox.staged_upto());
    };
    let recheck = Duration::from_millis(1000);
    let metrics: Arc<BusMetrics> = Arc::default();
    let relay = relay_only(&bus, &outbox, recheck, metrics.clone());
    let stop = CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone(), stop.clone()));
    let drained = || async {
        wait::until("the outbox to empty", Duration::from_secs(20), || async {
            (outbox.depth() == 0).then_some(())
        })
        .await
    };

    // The first goes out and comes back; the next ones are held, and dropped by the next look.
    stage(1);
    drained().await;
    assert_eq!(metrics.events_skipped.get(), 1);
    stage(20);
    drained().await;
    assert_eq!(metrics.events_skipped.get(), 21, "nobody was bound to any of them");
    assert_eq!(outbox.metrics.published.get(), 0);

    // Someone binds, and events follow at once: held (the route is still thought unbound), then
    // released by the next look, every one of them.
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = format!("{namespace}.listener");
    let options = QueueDeclareOptions { auto_delete: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(queue.as_str().into(), options, FieldTable::default()).await.unwrap();
    let bind = QueueBindOptions::default();
    let (exchange, key) = (route.exchange.as_str(), route.key.as_str());
    channel
        .queue_bind(queue.as_str().into(), exchange.into(), key.into(), bind, FieldTable::default())
        .await
        .unwrap();
    stage(3);
    drained().await;
    stage(2);
    drained().await;
    let mut received = 0;
    for _ in 0..100 {
        match channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap() {
            Some(_) => received += 1,
            None if received == 5 => break,
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(received, 5, "every event made after the queue was bound");
    assert_eq!(metrics.events_skipped.get(), 21);
    stop.cancel();
    let _ = task.await;
}
