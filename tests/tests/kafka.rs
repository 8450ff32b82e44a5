//! The system on Kafka: the real orchestrator, payment, inventory and notification binaries
//! with `BUS=kafka`, on a private tansu broker of the test's own, and the books of every
//! service checked against every saga's outcome, through a SIGKILL of each program and a
//! broker restart; and the hostile bus tests of the hardening work, on Kafka's topics.

use std::collections::HashMap;
use std::time::Duration;

use sagaflow_devkit::kafka::PrivateKafka;
use sagaflow_events::Participant;
use sagaflow_tests::kafka::KafkaTestBus;
use sagaflow_tests::system::{order_json, System, DECLINE_OVER};
use sagaflow_tests::wait;
use serde_json::Value;

const EXAMPLE_ORDER: &str = include_str!("../../events/tests/fixtures/OrderPlaced.json");

fn kafka() -> PrivateKafka {
    PrivateKafka::start().expect("tansu is not installed; `make test` installs it (scripts/kafka.sh)")
}

async fn system_on(kafka: &PrivateKafka, test: &str) -> System {
    let brokers = kafka.brokers();
    System::start_with(
        test,
        &[("*", "BUS", "kafka"), ("*", "KAFKA_BROKERS", &brokers), ("*", "KAFKA_PARTITIONS", "3")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_an_order_completes_a_declined_one_charges_nothing_and_a_sold_out_one_is_refunded() {
    let kafka = kafka();
    let s = system_on(&kafka, "kafka-e2e").await;
    let before = s.stock().await;

    assert_eq!(s.place(EXAMPLE_ORDER).await, 202);
    assert_eq!(s.place(&order_json("big-1", &[("xyz", 30)])).await, 202);
    assert_eq!(s.place(&order_json("many-1", &[("abc", 1), ("rare", 6)])).await, 202);

    let order = s.wait_terminal("12345").await;
    assert_eq!(order["state"], "completed", "{order}");
    let amount = order["amountCents"].as_u64().unwrap();
    assert_eq!(s.ledger().await.get("12345"), Some(&(amount, 0)));

    let big = s.wait_terminal("big-1").await;
    assert_eq!(
        (big["state"].as_str(), big["reason"].as_str()),
        (Some("compensated"), Some("payment_declined"))
    );
    assert_eq!(s.ledger().await.get("big-1"), None, "nothing charged");

    let many = s.wait_terminal("many-1").await;
    assert_eq!(
        (many["state"].as_str(), many["reason"].as_str()),
        (Some("compensated"), Some("out_of_stock"))
    );
    let many_amount = many["amountCents"].as_u64().unwrap();
    assert!(many_amount <= DECLINE_OVER);
    assert_eq!(s.ledger().await.get("many-1"), Some(&(many_amount, many_amount)), "charged, then refunded");

    // The completed order's reservation becomes a sale (inventory reads OrderCompleted from
    // its own event topic), and it got exactly one mail.
    let after = wait::until("the reservation to become a sale", Duration::from_secs(20), || async {
        let stock = s.stock().await;
        (stock["abc"]["reserved"] == 0 && stock["xyz"]["reserved"] == 0).then_some(stock)
    })
    .await;
    for (product, quantity) in [("abc", 2), ("xyz", 1)] {
        let was = before[product]["available"].as_u64().unwrap();
        assert_eq!(after[product]["available"].as_u64().unwrap(), was - quantity, "{product}");
        assert_eq!(after[product]["sold"].as_u64().unwrap(), quantity, "{product}");
    }
    let notes = s.notifications().await;
    assert_eq!(notes["notifications"]["12345"], 1);
    assert!(notes["notifications"].get("big-1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_nothing_is_lost_or_done_twice_through_kills_of_every_program_and_a_broker_restart() {
    let kafka = kafka();
    let mut s = system_on(&kafka, "kafka-crash").await;
    let initial = s.stock().await;
    let n = 120;
    let ids: Vec<String> = (0..n).map(|i| format!("k{i:04}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let items: Vec<(&str, i64)> = match i % 10 {
            0 => vec![("xyz", 40)],
            1 => vec![("rare", 6)],
            _ => vec![("abc", (i % 3 + 1) as i64), ("jkl", 1)],
        };
        assert_eq!(s.place(&order_json(id, &items)).await, 202);
        match i {
            20 => s.payment.kill(),
            30 => s.payment.restart_and_wait().await,
            40 => s.inventory.kill(),
            50 => s.inventory.restart_and_wait().await,
            60 => {
                let k = &kafka;
                tokio::task::block_in_place(|| k.restart());
            }
            70 => s.notification.kill(),
            80 => s.notification.restart_and_wait().await,
            90 => {
                s.orchestrator.kill();
                s.orchestrator.restart_and_wait().await;
            }
            _ => {}
        }
    }
    let mut orders = Vec::new();
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let order = s.wait_terminal(id).await;
        let key = format!("{}:{}", order["state"].as_str().unwrap(), order["reason"].as_str().unwrap_or("-"));
        *outcomes.entry(key).or_default() += 1;
        orders.push(order);
    }
    eprintln!("{n} orders on kafka through kills and a broker restart: {outcomes:?}");
    for order in &orders {
        assert!(matches!(order["state"].as_str(), Some("completed" | "compensated")), "{order}");
    }
    s.assert_books(&orders, &initial).await;
    assert!(outcomes.get("completed:-").copied().unwrap_or(0) > n / 2, "{outcomes:?}");
}

/// The hostile bus tests of the hardening work, on Kafka's topics: garbage and a 131 kB header
/// wedge nothing and are dead-lettered with their original bytes and reason; forged commands
/// cannot break the books.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_garbage_huge_headers_and_forged_commands_break_nothing() {
    let kafka = kafka();
    let s = system_on(&kafka, "kafka-hostile").await;
    let bus = KafkaTestBus::new(&kafka.brokers(), s.bus.topology.namespace());
    let t = &bus.topology;
    let huge = "0".repeat(131_000);
    let big: [(&str, &[u8]); 1] = [("traceparent", huge.as_bytes())];
    let raw = |v: Value| serde_json::to_vec(&v).unwrap();

    // A charge with the huge header; garbage on the replies and a real order on the intake, each
    // with it; binary garbage with headers of its own for inventory.
    let charge = raw(serde_json::json!({
        "sagaId": "wedge-1", "orderId": "wedge-1", "step": "payment", "phase": "action", "attempt": 1,
        "idempotencyKey": "wedge-1/payment/action", "sentAt": 1, "command": "chargePayment",
        "userId": "u", "amountCents": 100,
    }));
    let payment = t.command_queue(Participant::Payment);
    bus.publish_raw(&payment, "wedge-1", &charge, &[("type", b"chargePayment"), big[0]]).await;
    bus.publish_raw(&t.replies_queue(), "x", b"\xff\xfe not a reply", &big).await;
    bus.publish_raw(&t.intake_queue(), "wedge-2", order_json("wedge-2", &[("abc", 1)]).as_bytes(), &big)
        .await;
    let inventory = t.command_queue(Participant::Inventory);
    bus.publish_raw(
        &inventory,
        "x",
        b"\xff\x00\xfe binary",
        &[("message-id", b"original-id"), ("x-custom", b"42")],
    )
    .await;

    // Commands the orchestrator would never send.
    for (participant, body) in sagaflow_tests::commands::forged() {
        bus.publish_raw(&t.command_queue(participant), "forged", &body, &[]).await;
    }

    // Everything goes on, and the books add up.
    s.assert_forgeries_changed_nothing().await;
    assert_eq!(s.wait_terminal("wedge-2").await["state"], "completed", "the order with the big header ran");
    let letters = wait::until("two dead letters", Duration::from_secs(20), || async {
        let letters = tokio::task::block_in_place(|| bus.dead_letters());
        (letters.len() >= 2).then_some(letters)
    })
    .await;
    let binary =
        letters.iter().find(|l| l.body == b"\xff\x00\xfe binary").expect("the original bytes, as they were");
    assert_eq!(binary.header("message-id").as_deref(), Some("original-id"));
    assert_eq!(binary.header("x-custom").as_deref(), Some("42"));
    assert!(binary.header(sagaflow_events::headers::DEAD_LETTER_REASON).is_some());
    let garbage =
        letters.iter().find(|l| l.body.starts_with(b"\xff\xfe not a reply")).expect("the garbage reply");
    assert!(garbage.header("traceparent").is_none(), "the 131 kB header is not carried");
    // Operators see them through the orchestrator too; a log cannot give one back.
    let page = s.get(&s.orchestrator.http, "/dead-letters").await;
    let listed = page["deadLetters"].as_array().expect("a page of dead letters");
    assert!(listed.iter().any(|d| d["id"] == "original-id" && d["reason"].is_string()), "{page}");
    let overview = s.get(&s.orchestrator.http, "/overview").await;
    assert!(overview["deadLetters"].as_u64().unwrap_or(0) >= 2, "{overview}");
    let (status, answer) = s.post("/dead-letters/original-id/requeue", "").await;
    assert_eq!(status, 501, "{answer}");
    for p in s.programs() {
        let metrics = s.http.get(format!("{}/metrics", p.http)).send().await.unwrap().text().await.unwrap();
        assert!(metrics.contains("sagaflow_outbox_parked 0"), "{}: {metrics}", p.name);
    }
}

/// A second instance of a program on the same namespace, with a store of its own, does not
/// start on Kafka either: the queue's owner topic names the first one's store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_a_second_instance_refuses_to_start() {
    let kafka = kafka();
    let s = system_on(&kafka, "kafka-twice").await;
    let brokers = kafka.brokers();
    let env = [("BUS", "kafka"), ("KAFKA_BROKERS", brokers.as_str())];
    s.assert_second_instances_refused(&["payment", "orchestrator"], &env, "belongs to the store").await;
}

/// The relay on Kafka: an entry the broker (or the client, on its behalf) refuses, here a
/// record over the size limit, and one whose route names no topic are parked with the reason,
/// and the entries behind them go out. Then `sagactl purge` takes the namespace's topics away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_an_entry_that_is_refused_is_parked_and_the_rest_flows() {
    use sagaflow_runtime::bus::{Bus, Message, Route};
    use sagaflow_runtime::config::{Broker, KafkaSettings};
    use sagaflow_runtime::outbox::Outbox;

    let kafka = kafka();
    let namespace = sagaflow_tests::unique_namespace("kafka-relay");
    let bus = KafkaTestBus::new(&kafka.brokers(), &namespace);
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let outbox = Outbox::open(&db).unwrap();
    let dead_letters = Route { exchange: bus.topology.dead_letter_exchange(), key: String::new() };
    let too_big = vec![b'x'; 2_000_000];
    outbox.stage_alone(&Message::json(dead_letters.clone(), "o-1", "kind", too_big)).unwrap();
    let nowhere = Route { exchange: format!("{namespace}.no-such-exchange"), key: String::new() };
    outbox.stage_alone(&Message::json(nowhere, "o-1", "kind", b"lost".to_vec())).unwrap();
    for body in [b"one".to_vec(), b"two".to_vec()] {
        outbox.stage_alone(&Message::json(dead_letters.clone(), "o-2", "kind", body)).unwrap();
    }
    outbox.mark_durable(outbox.staged_upto());

    let (sink, _inputs) = sagaflow_runtime::bus::channel(&[]);
    let relay = Bus {
        broker: Broker::Kafka(KafkaSettings {
            brokers: kafka.brokers().parse().unwrap(),
            partitions: 1,
            fetch_wait_ms: 20,
        }),
        topology: bus.topology.clone(),
        consumers: Vec::new(),
        sink,
        outbox: outbox.clone(),
        relay_window: 16,
        events_unbound_recheck: Duration::ZERO,
        health: sagaflow_runtime::health::Health::default(),
        metrics: Default::default(),
        store_id: "relay-test".into(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(relay.run(stop.clone(), stop.clone()));
    wait::until("both refused entries to be parked", Duration::from_secs(60), || async {
        (outbox.parked_count() == 2).then_some(())
    })
    .await;
    let reasons: Vec<String> = outbox.parked(10).into_iter().map(|(_, p)| p.reason).collect();
    assert!(
        reasons.iter().any(|r| r.contains("MessageSizeTooLarge") || r.contains("too large")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("no topic")), "{reasons:?}");
    let letters = wait::until("the good messages to arrive", Duration::from_secs(30), || async {
        let letters = tokio::task::block_in_place(|| bus.dead_letters());
        (letters.len() == 2).then_some(letters)
    })
    .await;
    let mut bodies: Vec<&[u8]> = letters.iter().map(|l| l.body.as_slice()).collect();
    bodies.sort();
    assert_eq!(bodies, [b"one".as_slice(), b"two".as_slice()]);
    wait::until("the outbox to empty", Duration::from_secs(10), || async {
        (outbox.depth() == 0).then_some(())
    })
    .await;
    stop.cancel();
    let _ = task.await;
    // `sagactl purge --bus kafka` deletes the namespace's topics, and only when told to.
    let purge = |yes: bool| {
        let mut command = std::process::Command::new(sagaflow_tests::procs::binary("sagactl"));
        command.args(["purge", "--bus", "kafka", "--kafka-brokers", &bus.brokers, "--namespace", &namespace]);
        if yes {
            command.arg("--yes");
        }
        let out = command.output().expect("sagactl runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dead_letters = bus.topology.dead_letter_queue();
    assert!(purge(false).contains(&dead_letters));
    assert!(tokio::task::block_in_place(|| bus.topic_exists(&dead_letters)));
    purge(true);
    assert!(!tokio::task::block_in_place(|| bus.topic_exists(&dead_letters)));
}
