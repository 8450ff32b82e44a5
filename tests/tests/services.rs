//! Each service on its own, against the real broker: the test plays the orchestrator,
//! publishing commands and reading the replies.

use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use sagaflow_events::{
    Cents, CommandBody, CommandMessage, Participant, Phase, ReplyMessage, ReplyOutcome, Topology, UserId,
};
use sagaflow_tests::bus::TestBus;
use sagaflow_tests::commands::{command, lines};
use sagaflow_tests::procs::Program;
use sagaflow_tests::{amqp_url, unique_namespace, wait};

struct Rig {
    service: Program,
    bus: TestBus,
    channel: lapin::Channel,
    topology: Topology,
    http: reqwest::Client,
    _connection: Connection,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(name: &str) -> Self {
        let namespace = unique_namespace(&format!("svc-{name}"));
        let url = amqp_url();
        let bus = TestBus::connect(&url, &namespace).await;
        let dir = tempfile::tempdir().unwrap();
        let service = Program::start(name, &namespace, &url, dir.path().join(name), &[]);
        service.wait_healthy(Duration::from_secs(30)).await;
        let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        Self {
            service,
            topology: bus.topology.clone(),
            bus,
            channel,
            http: reqwest::Client::new(),
            _connection: connection,
            _dir: dir,
        }
    }

    async fn send(&self, participant: Participant, command: &CommandMessage) {
        let body = serde_json::to_vec(command).unwrap();
        self.channel
            .basic_publish(
                self.topology.commands_exchange().as_str().into(),
                self.topology.command_routing_key(participant).as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
    }

    /// Reads replies until `n` have arrived.
    async fn replies(&self, n: usize) -> Vec<ReplyMessage> {
        let queue = self.topology.replies_queue();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(std::time::Instant::now() < deadline, "only {} of {n} replies arrived", got.len());
            match self
                .channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .unwrap()
            {
                // Replies ready together come as one batch.
                Some(m) => {
                    let received =
                        sagaflow_runtime::bus::amqp::properties::received(0, "replies", &m.delivery);
                    for item in sagaflow_runtime::bus::Delivery::of(received).items() {
                        got.push(serde_json::from_slice::<ReplyMessage>(&item.body).expect("replies parse"));
                    }
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        got
    }

    async fn view(&self, path: &str) -> serde_json::Value {
        self.http.get(format!("{}{path}", self.service.http)).send().await.unwrap().json().await.unwrap()
    }
}

fn charge(order: &str, phase: Phase, attempt: u32) -> CommandMessage {
    let body = match phase {
        Phase::Action => {
            CommandBody::ChargePayment { user_id: UserId::parse("u").unwrap(), amount_cents: Cents(500) }
        }
        Phase::Compensation => CommandBody::RefundPayment { amount_cents: Cents(500) },
    };
    command(order, Participant::Payment, phase, attempt, body)
}

fn ledger_of(view: &serde_json::Value, order: &str) -> Option<(u64, u64)> {
    view["payments"]
        .as_array()?
        .iter()
        .find(|p| p["orderId"] == order)
        .map(|p| (p["chargedCents"].as_u64().unwrap(), p["refundedCents"].as_u64().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_absorbs_duplicates_and_refuses_a_charge_after_its_refund() {
    let rig = Rig::start("payment").await;
    rig.send(Participant::Payment, &charge("p-1", Phase::Action, 1)).await;
    rig.send(Participant::Payment, &charge("p-1", Phase::Action, 2)).await;
    rig.send(Participant::Payment, &charge("p-2", Phase::Compensation, 1)).await;
    rig.send(Participant::Payment, &charge("p-2", Phase::Action, 1)).await;
    let replies = rig.replies(4).await;
    let of = |order: &str, phase: Phase| -> Vec<&ReplyMessage> {
        replies.iter().filter(|r| r.order_id.as_str() == order && r.phase == phase).collect()
    };
    assert!(of("p-1", Phase::Action).iter().all(|r| r.outcome == ReplyOutcome::Succeeded));
    assert_eq!(of("p-2", Phase::Compensation)[0].outcome, ReplyOutcome::Succeeded, "null compensation");
    assert_eq!(
        of("p-2", Phase::Action)[0].outcome,
        ReplyOutcome::Failed { reason: "already_compensated".into() }
    );
    let view = rig.view("/payments").await;
    assert_eq!(ledger_of(&view, "p-1"), Some((500, 0)), "charged once");
    assert_eq!(ledger_of(&view, "p-2"), None, "no money moved for p-2");
    // Garbage goes to the dead-letter queue and the service keeps going.
    rig.bus.publish(&rig.topology.commands_exchange(), "payment", b"{\"nope\": 1}", "x").await;
    rig.send(Participant::Payment, &charge("p-3", Phase::Action, 1)).await;
    rig.replies(1).await;
    let letters = wait::until("a dead letter", Duration::from_secs(10), || async {
        let l = rig.bus.take_dead_letters().await;
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert!(letters[0].0.as_deref().unwrap_or("").contains("not a command"), "{letters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_applies_each_charge_once() {
    let mut rig = Rig::start("payment").await;
    let orders: Vec<String> = (0..200).map(|i| format!("k-{i}")).collect();
    for order in &orders {
        rig.send(Participant::Payment, &charge(order, Phase::Action, 1)).await;
    }
    tokio::time::sleep(Duration::from_millis(60)).await;
    rig.service.kill();
    rig.service.restart();
    rig.service.wait_healthy(Duration::from_secs(30)).await;
    // Every command answered at least once; redelivered ones answered again from the barrier.
    let replies = rig.replies(orders.len()).await;
    assert!(replies.iter().all(|r| r.outcome == ReplyOutcome::Succeeded));
    let view = rig.view("/payments").await;
    for order in &orders {
        assert_eq!(ledger_of(&view, order), Some((500, 0)), "{order} charged exactly once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_sends_one_mail_per_order_whatever_the_duplicates() {
    let rig = Rig::start("notification").await;
    let send = |attempt: u32| {
        let items = lines(&[("abc", 100)]);
        let body = CommandBody::SendNotification {
            user_id: UserId::parse("u").unwrap(),
            amount_cents: items.total(),
            items,
        };
        command("n-1", Participant::Notification, Phase::Action, attempt, body)
    };
    for attempt in 1..=3 {
        rig.send(Participant::Notification, &send(attempt)).await;
    }
    rig.replies(3).await;
    let view = rig.view("/notifications").await;
    assert_eq!(view["notifications"]["n-1"], 1);
    assert_eq!(view["delivered"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_reserves_all_or_nothing_and_releases_exactly_what_it_reserved() {
    use sagaflow_events::ProductId;
    let rig = Rig::start("inventory").await;
    let command = |order: &str, phase: Phase, items: &[(&str, i64)]| {
        let items = lines(items);
        let body = match phase {
            Phase::Action => CommandBody::ReserveStock { items },
            Phase::Compensation => CommandBody::ReleaseStock { items },
        };
        command(order, Participant::Inventory, phase, 1, body)
    };
    let before = rig.view("/stock").await["stock"].clone();
    let abc = before["abc"]["available"].as_u64().unwrap();

    // All or nothing: one line too large refuses the whole order, naming the product.
    rig.send(Participant::Inventory, &command("i-1", Phase::Action, &[("abc", 2), ("xyz", 10_000_000)]))
        .await;
    // Reserve twice (a duplicate), then release with a command that claims other items:
    // the release returns what i-2 reserved, not what the command says.
    rig.send(Participant::Inventory, &command("i-2", Phase::Action, &[("abc", 3)])).await;
    rig.send(Participant::Inventory, &command("i-2", Phase::Action, &[("abc", 3)])).await;
    let replies = rig.replies(3).await;
    assert_eq!(replies[0].outcome, ReplyOutcome::Failed { reason: "out_of_stock".into() });
    assert_eq!(replies[0].missing_products, [ProductId::parse("xyz").unwrap()]);
    let during = rig.view("/stock").await["stock"].clone();
    assert_eq!(during["abc"]["available"].as_u64().unwrap(), abc - 3, "reserved once");
    assert_eq!(during["xyz"], before["xyz"], "nothing of the refused order was reserved");

    rig.send(Participant::Inventory, &command("i-2", Phase::Compensation, &[("abc", 99)])).await;
    rig.replies(1).await;
    assert_eq!(rig.view("/stock").await["stock"], before, "released exactly what was reserved");
}
