//! Property tests of the barrier, through the real handler and real (temporary) sled stores:
//! arbitrary interleavings of duplicated and reordered actions and compensations, for many
//! sagas at once, with the invariants checked after every command:
//! - net money per order is either 0 or the order's amount, and 0 for good once refunded;
//! - stock never goes negative, and available + reserved equals the initial stock;
//! - at most one confirmation per order, and one mail file per confirmed order.

use proptest::prelude::*;
use sagaflow_events::{
    Catalog, Cents, CommandBody, CommandMessage, OrderId, OrderLine, Phase, Product, ProductId, Quantity,
    Topology, UserId,
};
use sagaflow_services::domain::Domain;
use sagaflow_services::inventory::{Inventory, Stock};
use sagaflow_services::notification::Notification;
use sagaflow_services::participant::Handler;
use sagaflow_services::payment::{Ledger, Payment};

const SAGAS: usize = 6;

fn catalog() -> Catalog {
    let product = |id: &str, stock: u64| Product {
        id: ProductId::parse(id).unwrap(),
        name: id.into(),
        price_cents: Cents(100),
        stock,
    };
    Catalog::new(vec![product("abc", 5), product("xyz", 3)]).unwrap()
}

/// Saga `i` orders (i % 3 + 1) of abc and (i % 2 + 1) of xyz, for 100 * (i + 1) cents.
fn lines(i: usize) -> Vec<OrderLine> {
    let line = |p: &str, q: i64| OrderLine {
        product_id: ProductId::parse(p).unwrap(),
        quantity: Quantity::new(q).unwrap(),
        unit_price_cents: Cents(100),
    };
    vec![line("abc", (i % 3 + 1) as i64), line("xyz", (i % 2 + 1) as i64)]
}

fn amount(i: usize) -> u64 {
    100 * (i as u64 + 1)
}

#[derive(Debug, Clone, Copy)]
enum Who {
    Payment,
    Inventory,
    Notification,
}

fn command(who: Who, saga: usize, phase: Phase, attempt: u32) -> CommandMessage {
    let order = format!("o{saga}");
    let user = UserId::parse(if saga == 4 { "mallory" } else { "alice" }).unwrap();
    let (step, body) = match (who, phase) {
        (Who::Payment, Phase::Action) => {
            ("payment", CommandBody::ChargePayment { user_id: user, amount_cents: Cents(amount(saga)) })
        }
        (Who::Payment, Phase::Compensation) => {
            ("payment", CommandBody::RefundPayment { amount_cents: Cents(amount(saga)) })
        }
        (Who::Inventory, Phase::Action) => ("inventory", CommandBody::ReserveStock { items: lines(saga) }),
        (Who::Inventory, Phase::Compensation) => {
            ("inventory", CommandBody::ReleaseStock { items: lines(saga) })
        }
        (Who::Notification, _) => (
            "notification",
            CommandBody::SendNotification {
                user_id: user,
                amount_cents: Cents(amount(saga)),
                items: lines(saga),
            },
        ),
    };
    CommandMessage {
        saga_id: order.clone(),
        order_id: OrderId::parse(order.clone()).unwrap(),
        step: step.into(),
        phase,
        attempt,
        idempotency_key: format!("{order}/{step}/{phase}"),
        body,
    }
}

fn handler<D: Domain>(domain: D, dir: &tempfile::TempDir, name: &str) -> Handler<D> {
    let db = sled::Config::new().path(dir.path().join(name)).temporary(true).open().unwrap();
    Handler::open(domain, &db, Topology::new("prop"), 0.0, 1).unwrap()
}

fn ops() -> impl Strategy<Value = Vec<(u8, usize, bool, u32)>> {
    prop::collection::vec((0u8..3, 0..SAGAS, any::<bool>(), 1u32..4), 1..80)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_order_keeps_money_stock_and_mail_consistent(ops in ops()) {
        let dir = tempfile::tempdir().unwrap();
        // Saga 4's user is on the deny list and saga 5 is over the limit: refusals are in the mix.
        let payment = handler(
            Payment { decline_over_cents: Some(550), deny_users: vec!["mallory".into()], decline_rate: 0.0, seed: 1 },
            &dir,
            "payment",
        );
        let inventory = handler(Inventory { catalog: catalog() }, &dir, "inventory");
        let notification = handler(Notification::new(&dir.path().join("notification")).unwrap(), &dir, "notification");
        let mut refunded = [false; SAGAS];

        for (who, saga, compensate, attempt) in ops {
            let phase = if compensate { Phase::Compensation } else { Phase::Action };
            let reply = match who {
                0 => payment.handle(&command(Who::Payment, saga, phase, attempt), None),
                1 => inventory.handle(&command(Who::Inventory, saga, phase, attempt), None),
                _ => notification.handle(&command(Who::Notification, saga, Phase::Action, attempt), None),
            };
            let reply = reply.expect("every command is answered");
            prop_assert_eq!(reply.attempt, attempt, "a reply echoes the attempt it answers");
            if who == 0 && compensate {
                refunded[saga] = true;
            }

            for (order, ledger) in sagaflow_services::domain::scan_json::<Ledger>(&payment.state, "ledger/") {
                let i: usize = order[1..].parse().unwrap();
                let net = ledger.charged_cents - ledger.refunded_cents;
                prop_assert!(net == 0 || net == amount(i), "order {} nets {}", order, net);
                prop_assert!(ledger.charged_cents <= amount(i), "order {} charged twice", order);
                if refunded[i] {
                    prop_assert_eq!(net, 0, "order {} has money after its refund", order);
                }
            }
            for (product, stock) in sagaflow_services::domain::scan_json::<Stock>(&inventory.state, "stock/") {
                prop_assert_eq!(stock.available + stock.reserved + stock.sold, stock.initial, "{}: {:?}", product, stock);
            }
            let sent = sagaflow_services::domain::scan_json::<u64>(&notification.state, "sent/");
            prop_assert!(sent.iter().all(|(_, n)| *n == 1));
            prop_assert_eq!(notification.domain.delivered(), sent.len());
        }
    }
}

#[test]
fn a_compensation_before_its_action_bars_the_action() {
    let dir = tempfile::tempdir().unwrap();
    let payment = handler(Payment::default(), &dir, "payment");
    let refund = payment.handle(&command(Who::Payment, 0, Phase::Compensation, 1), None).unwrap();
    assert_eq!(refund.outcome, sagaflow_events::ReplyOutcome::Succeeded, "a null compensation succeeds");
    let late = payment.handle(&command(Who::Payment, 0, Phase::Action, 1), None).unwrap();
    assert_eq!(late.outcome, sagaflow_events::ReplyOutcome::Failed { reason: "already_compensated".into() });
    assert!(
        sagaflow_services::domain::scan_json::<Ledger>(&payment.state, "ledger/").is_empty(),
        "no money moved"
    );
}

#[test]
fn a_duplicate_repeats_the_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let inventory = handler(Inventory { catalog: catalog() }, &dir, "inventory");
    let first = inventory.handle(&command(Who::Inventory, 2, Phase::Action, 1), None).unwrap();
    let again = inventory.handle(&command(Who::Inventory, 2, Phase::Action, 2), None).unwrap();
    assert_eq!(first.outcome, again.outcome);
    assert_eq!(again.attempt, 2);
    let abc = sagaflow_services::domain::scan_json::<Stock>(&inventory.state, "stock/")
        .into_iter()
        .find(|(p, _)| p == "abc")
        .unwrap()
        .1;
    assert_eq!(abc.reserved, 3, "reserved once");
}
