//! Property tests of the participants' books, through the real handler and real (temporary)
//! sled stores. Every command goes in as bytes, through the same edge as on the bus, and the
//! invariants each domain states are checked after every single one:
//!
//! - payment: for every saga, `refunded ∈ {0, charged}`, and `charged` is set once, to the
//!   amount of the charge that set it;
//! - inventory: for every product, `available + reserved + sold = initial`, and the
//!   reservations add up to what is reserved;
//! - notification: one mail per saga that has a sent record, and never two.
//!
//! Two kinds of schedules: the orchestrator's own commands, duplicated and reordered across
//! sagas (the barrier); and hostile commands that no orchestrator would send (overflowing
//! amounts, repeated lines, forged keys and steps, wrong phases, garbage), mixed with forged
//! `ForgetSagas` messages.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sagaflow_events::{
    Catalog, Cents, CommandBody, CommandMessage, ForgetSagas, Forgotten, ForgottenSagas, OrderId, OrderLine,
    OrderLines, Participant, Phase, Product, ProductId, Quantity, ReplyOutcome, SagaId, StepName, Topology,
    UserId,
};
use sagaflow_runtime::pipeline::Verdict;
use sagaflow_runtime::writes::Writes;
use sagaflow_services::domain::{scan_json, Domain};
use sagaflow_services::inventory::{Inventory, Stock};
use sagaflow_services::notification::{Notification, Sent};
use sagaflow_services::participant::Handler;
use sagaflow_services::payment::{Ledger, Payment};
use serde_json::json;

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

/// Saga `i` orders (i % 3 + 1) of abc and (i % 2 + 1) of xyz.
fn lines(i: usize) -> OrderLines {
    let line = |p: &str, q: i64| OrderLine {
        product_id: ProductId::parse(p).unwrap(),
        quantity: Quantity::new(q).unwrap(),
        unit_price_cents: Cents(100),
    };
    OrderLines::new(vec![line("abc", (i % 3 + 1) as i64), line("xyz", (i % 2 + 1) as i64)]).unwrap()
}

fn command(participant: Participant, saga: usize, phase: Phase, attempt: u32) -> CommandMessage {
    let order = format!("o{saga}");
    let user = UserId::parse(if saga == 4 { "mallory" } else { "alice" }).unwrap();
    let items = lines(saga);
    let phase = if participant == Participant::Notification { Phase::Action } else { phase };
    let body = match (participant, phase) {
        (Participant::Payment, Phase::Action) => {
            CommandBody::ChargePayment { user_id: user, amount_cents: items.total() }
        }
        (Participant::Payment, Phase::Compensation) => {
            CommandBody::RefundPayment { amount_cents: items.total() }
        }
        (Participant::Inventory, Phase::Action) => CommandBody::ReserveStock { items },
        (Participant::Inventory, Phase::Compensation) => CommandBody::ReleaseStock { items },
        (Participant::Notification, _) => {
            CommandBody::SendNotification { user_id: user, amount_cents: items.total(), items }
        }
    };
    let saga_id = SagaId::parse(format!("s{saga}")).unwrap();
    let step = StepName::parse(participant.to_string()).unwrap();
    CommandMessage {
        idempotency_key: CommandMessage::key_for(&saga_id, &step, phase),
        saga_id,
        order_id: OrderId::parse(order).unwrap(),
        step,
        phase,
        attempt,
        sent_at: sagaflow_runtime::now_millis(),
        body,
    }
}

/// The three participants, each on its own temporary store.
struct Books {
    _dir: tempfile::TempDir,
    payment: Handler<Payment>,
    inventory: Handler<Inventory>,
    notification: Handler<Notification>,
    /// What the payment ledger held before the last command, to check it only moves as allowed.
    ledgers: BTreeMap<String, Ledger>,
}

impl Books {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = |name: &str| sled::Config::new().path(dir.path().join(name)).temporary(true).open().unwrap();
        // Saga 4's user is on the deny list and saga 5 is over the limit: refusals are in the mix.
        let payment = Payment {
            decline_over_cents: Some(550),
            deny_users: vec!["mallory".into()],
            ..Payment::default()
        };
        let notification = Notification::new(&dir.path().join("notification")).unwrap();
        let topology = Topology::new("prop");
        Self {
            payment: Handler::open(payment, &db("payment"), topology.clone()).unwrap(),
            inventory: Handler::open(Inventory { catalog: catalog() }, &db("inventory"), topology.clone())
                .unwrap(),
            notification: Handler::open(notification, &db("notification"), topology).unwrap(),
            _dir: dir,
            ledgers: BTreeMap::new(),
        }
    }

    /// Sends `bytes` to the participant, as the bus would, and checks every invariant after.
    fn send(&mut self, participant: Participant, bytes: &[u8]) -> Verdict {
        // As the pipeline does: the input's writes are kept only if it is done, then committed.
        let writes = Writes::new();
        let own = writes.child();
        let verdict = match participant {
            Participant::Payment => self.payment.receive_command(bytes, None, &own),
            Participant::Inventory => self.inventory.receive_command(bytes, None, &own),
            Participant::Notification => self.notification.receive_command(bytes, None, &own),
        }
        .expect("a command never breaks the store");
        if verdict == Verdict::Done {
            own.keep();
        }
        self.notification.domain.make_durable().expect("mails sync");
        writes.commit().expect("the batch commits");
        self.check(participant, bytes);
        verdict
    }

    fn forget(&mut self, message: &ForgetSagas) {
        // Each participant has its own store, so each its own batch.
        for forget in [
            &mut |w: &Writes<'_>| self.payment.forget(message, w),
            &mut |w: &Writes<'_>| self.inventory.forget(message, w),
            &mut |w: &Writes<'_>| self.notification.forget(message, w),
        ] as [&mut dyn FnMut(&Writes<'_>) -> _; 3]
        {
            let writes = Writes::new();
            forget(&writes).expect("forgetting never breaks the store");
            writes.commit().expect("the batch commits");
        }
        let ledgers: BTreeMap<String, Ledger> =
            scan_json(self.payment.books(), "ledger/").into_iter().collect();
        self.ledgers.retain(|saga, _| ledgers.contains_key(saga));
        self.check(Participant::Payment, b"");
    }

    fn check(&mut self, participant: Participant, bytes: &[u8]) {
        let sent: Option<CommandMessage> = serde_json::from_slice(bytes).ok();
        let ledgers: BTreeMap<String, Ledger> =
            scan_json(self.payment.books(), "ledger/").into_iter().collect();
        for (saga, ledger) in &ledgers {
            assert!(
                ledger.refunded_cents == 0 || ledger.refunded_cents == ledger.charged_cents,
                "saga {saga}: refunded {} of {}",
                ledger.refunded_cents,
                ledger.charged_cents
            );
            match self.ledgers.get(saga) {
                Some(before) => {
                    assert_eq!(before.charged_cents, ledger.charged_cents, "saga {saga} charged twice")
                }
                None => {
                    // A new charge: set by this command, to its amount.
                    let Some(CommandMessage {
                        body: CommandBody::ChargePayment { amount_cents, .. }, ..
                    }) = &sent
                    else {
                        panic!(
                            "saga {saga} charged by something that is not a charge: {}",
                            String::from_utf8_lossy(bytes)
                        )
                    };
                    assert_eq!(participant, Participant::Payment);
                    assert_eq!(ledger.charged_cents, amount_cents.0, "saga {saga} charged another amount");
                }
            }
        }
        self.ledgers = ledgers;

        let stock: BTreeMap<String, Stock> =
            scan_json(self.inventory.books(), "stock/").into_iter().collect();
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        for (_, reservation) in scan_json::<Vec<(ProductId, u64)>>(self.inventory.books(), "reservation/") {
            for (product, quantity) in reservation {
                *held.entry(product.to_string()).or_default() += quantity;
            }
        }
        for (product, s) in &stock {
            let total = u128::from(s.available) + u128::from(s.reserved) + u128::from(s.sold);
            assert_eq!(total, u128::from(s.initial), "{product}: {s:?}");
            assert_eq!(
                held.get(product).copied().unwrap_or(0),
                s.reserved,
                "{product}: reservations vs {s:?}"
            );
        }

        let sent: Vec<(String, Sent)> = scan_json(self.notification.books(), "sent/");
        assert!(sent.iter().all(|(_, s)| s.mails == 1), "{sent:?}");
        let maildir = self.notification.domain.maildir.join("new");
        for (saga, _) in &sent {
            assert!(
                maildir.join(format!("{saga}.sagaflow")).exists(),
                "saga {saga} recorded as mailed without a mail"
            );
        }
    }
}

fn bytes(command: &CommandMessage) -> Vec<u8> {
    serde_json::to_vec(command).unwrap()
}

fn ops() -> impl Strategy<Value = Vec<(u8, usize, bool, u32)>> {
    prop::collection::vec((0u8..3, 0..SAGAS, any::<bool>(), 1u32..4), 1..80)
}

fn participant(who: u8) -> Participant {
    match who {
        0 => Participant::Payment,
        1 => Participant::Inventory,
        _ => Participant::Notification,
    }
}

/// A command no orchestrator would send: every field drawn from values that are fine, odd or
/// hostile, and sometimes not JSON at all.
fn hostile() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let id = prop_oneof![
        20 => (0..SAGAS).prop_map(|i| json!(format!("s{i}"))),
        1 => Just(json!("")),
        1 => Just(json!(".hidden")),
        1 => Just(json!("a b")),
        1 => Just(json!("x".repeat(300))),
        1 => Just(json!(42)),
    ];
    let amount = prop_oneof![
        3 => Just(json!(0)),
        3 => Just(json!(1)),
        3 => Just(json!(500)),
        3 => Just(json!(u64::MAX)),
        3 => Just(json!(u64::MAX - 1)),
        1 => Just(json!(-1)),
        1 => Just(json!(1e30)),
        1 => Just(json!("500")),
    ];
    let quantity = prop_oneof![
        12 => 1i64..5,
        3 => Just(i64::from(u32::MAX)),
        1 => Just(0),
        1 => Just(-1),
        1 => Just(i64::MAX),
    ];
    let price = prop_oneof![3 => Just(0u64), 3 => Just(1), 3 => Just(100), 1 => Just(u64::MAX)];
    let line = (prop_oneof![Just("abc"), Just("xyz"), Just("nope")], quantity, price)
        .prop_map(|(p, q, price)| json!({ "productId": p, "quantity": q, "unitPriceCents": price }));
    let items = prop::collection::vec(line, 0..4);
    let kind = |who: u8| {
        let (action, undo) = match participant(who) {
            Participant::Payment => ("chargePayment", "refundPayment"),
            Participant::Inventory => ("reserveStock", "releaseStock"),
            Participant::Notification => ("sendNotification", "sendNotification"),
        };
        prop_oneof![8 => Just(action), 4 => Just(undo), 1 => Just("reserveStock"), 1 => Just("launchMissiles")]
    };
    let step = |who: u8| prop_oneof![12 => Just(participant(who).to_string()), 1 => Just("payment2".to_owned()), 1 => Just(String::new())];
    let attempt = prop_oneof![12 => Just(json!(1)), 1 => Just(json!(0)), 3 => Just(json!(u32::MAX)), 1 => Just(json!(-1))];
    let sent_at = prop_oneof![Just(0u64), Just(sagaflow_runtime::now_millis()), Just(u64::MAX)];
    let command = (0u8..3)
        .prop_flat_map(move |who| {
            (
                Just(who),
                id.clone(),
                step(who),
                kind(who),
                attempt.clone(),
                amount.clone(),
                items.clone(),
                sent_at.clone(),
                0u8..16,
            )
        })
        .prop_map(|(who, saga, step, kind, attempt, amount, items, sent_at, twist)| {
            // The phase that goes with the command, mostly; the key that goes with the envelope, mostly.
            let phase = match (kind, twist) {
                (_, 0) => "sideways",
                ("refundPayment" | "releaseStock", _) => "compensation",
                (_, 1) => "compensation",
                _ => "action",
            };
            let key = if twist == 2 {
                json!("forged/key")
            } else {
                json!(format!("{}/{step}/{phase}", saga.as_str().unwrap_or("")))
            };
            let command = json!({
                "sagaId": saga, "orderId": "o-1", "step": step, "phase": phase, "attempt": attempt,
                "idempotencyKey": key, "sentAt": sent_at, "command": kind, "userId": "alice",
                "amountCents": amount, "items": items,
            });
            (who, serde_json::to_vec(&command).unwrap())
        });
    prop_oneof![
        9 => command,
        1 => (0u8..3, prop::collection::vec(any::<u8>(), 0..64)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_delivery_order_keeps_money_stock_and_mail_consistent(ops in ops()) {
        let mut books = Books::new();
        for (who, saga, compensate, attempt) in ops {
            let phase = if compensate { Phase::Compensation } else { Phase::Action };
            let command = command(participant(who), saga, phase, attempt);
            prop_assert_eq!(books.send(participant(who), &bytes(&command)), Verdict::Done);
        }
    }

    #[test]
    fn hostile_commands_and_forgets_never_break_the_books(
        commands in prop::collection::vec(hostile(), 1..60),
        forgets in prop::collection::vec((0..SAGAS, any::<bool>(), 0u64..3), 0..4),
    ) {
        let mut books = Books::new();
        let mut forgets = forgets.into_iter();
        for (i, (who, bytes)) in commands.into_iter().enumerate() {
            books.send(participant(who), &bytes);
            // Now and then, a forget (honest or not) for some saga.
            if i % 15 == 14 {
                if let Some((saga, completed, when)) = forgets.next() {
                    let finished_before = match when {
                        0 => 0,
                        1 => sagaflow_runtime::now_millis(),
                        _ => u64::MAX,
                    };
                    let sagas = vec![Forgotten {
                        saga_id: SagaId::parse(format!("s{saga}")).unwrap(),
                        order_id: OrderId::parse("o-1").unwrap(),
                        completed,
                    }];
                    books.forget(&ForgetSagas { finished_before, sagas: ForgottenSagas::new(sagas).unwrap() });
                }
            }
        }
    }
}

/// The outcome of the reply the handler staged last.
fn last_outcome(handler: &Handler<impl Domain>) -> ReplyOutcome {
    let (_, message) = handler.outbox.read(0, u64::MAX, usize::MAX).pop().expect("a reply");
    serde_json::from_slice::<sagaflow_events::ReplyMessage>(&message.body).unwrap().outcome
}

#[test]
fn a_compensation_before_its_action_bars_the_action() {
    let mut books = Books::new();
    books.send(Participant::Payment, &bytes(&command(Participant::Payment, 0, Phase::Compensation, 1)));
    assert_eq!(last_outcome(&books.payment), ReplyOutcome::Succeeded, "a null compensation succeeds");
    books.send(Participant::Payment, &bytes(&command(Participant::Payment, 0, Phase::Action, 1)));
    assert_eq!(last_outcome(&books.payment), ReplyOutcome::Failed { reason: "already_compensated".into() });
    assert!(scan_json::<Ledger>(books.payment.books(), "ledger/").is_empty(), "no money moved");
}

#[test]
fn a_duplicate_repeats_the_first_answer() {
    let mut books = Books::new();
    books.send(Participant::Inventory, &bytes(&command(Participant::Inventory, 2, Phase::Action, 1)));
    let first = last_outcome(&books.inventory);
    books.send(Participant::Inventory, &bytes(&command(Participant::Inventory, 2, Phase::Action, 2)));
    assert_eq!(first, last_outcome(&books.inventory));
    let abc = scan_json::<Stock>(books.inventory.books(), "stock/")
        .into_iter()
        .find(|(p, _)| p == "abc")
        .unwrap()
        .1;
    assert_eq!(abc.reserved, 3, "reserved once");
}

/// A repeated line used to pass the stock check line by line and then take the stock twice,
/// past zero: the command's type refuses it now, so it never reaches the books.
#[test]
fn a_reservation_with_a_repeated_line_is_refused_and_moves_nothing() {
    let mut books = Books::new();
    let repeated = json!({
        "sagaId": "s1", "orderId": "o-1", "step": "inventory", "phase": "action", "attempt": 1,
        "idempotencyKey": "s1/inventory/action", "sentAt": 1, "command": "reserveStock",
        "items": [
            { "productId": "abc", "quantity": 4, "unitPriceCents": 1 },
            { "productId": "abc", "quantity": 4, "unitPriceCents": 1 },
        ],
    });
    let verdict = books.send(Participant::Inventory, &serde_json::to_vec(&repeated).unwrap());
    assert!(matches!(verdict, Verdict::Reject(ref why) if why.contains("two lines")), "{verdict:?}");
    assert!(scan_json::<Vec<(ProductId, u64)>>(books.inventory.books(), "reservation/").is_empty());
}

#[test]
fn after_a_forget_a_late_duplicate_is_refused_and_charges_nothing() {
    let mut books = Books::new();
    let charge = command(Participant::Payment, 0, Phase::Action, 1);
    books.send(Participant::Payment, &bytes(&charge));
    assert_eq!(last_outcome(&books.payment), ReplyOutcome::Succeeded);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let sagas = vec![Forgotten {
        saga_id: charge.saga_id.clone(),
        order_id: charge.order_id.clone(),
        completed: true,
    }];
    let finished_before = sagaflow_runtime::now_millis();
    books.forget(&ForgetSagas { finished_before, sagas: ForgottenSagas::new(sagas).unwrap() });
    assert!(scan_json::<Ledger>(books.payment.books(), "ledger/").is_empty(), "the ledger is forgotten");
    // The same charge, redelivered from long ago: no record, and sent before the saga ended.
    books.send(Participant::Payment, &bytes(&charge));
    assert_eq!(last_outcome(&books.payment), ReplyOutcome::Failed { reason: "expired".into() });
    assert!(scan_json::<Ledger>(books.payment.books(), "ledger/").is_empty(), "nothing charged again");
    // A new saga is charged as usual.
    books.send(Participant::Payment, &bytes(&command(Participant::Payment, 1, Phase::Action, 1)));
    assert_eq!(last_outcome(&books.payment), ReplyOutcome::Succeeded);
}

#[test]
fn a_forget_keeps_a_record_written_after_the_saga_supposedly_ended() {
    let mut books = Books::new();
    let charge = command(Participant::Payment, 0, Phase::Action, 1);
    books.send(Participant::Payment, &bytes(&charge));
    let sagas = vec![Forgotten {
        saga_id: charge.saga_id.clone(),
        order_id: charge.order_id.clone(),
        completed: false,
    }];
    books.forget(&ForgetSagas { finished_before: 1, sagas: ForgottenSagas::new(sagas).unwrap() });
    assert_eq!(
        scan_json::<Ledger>(books.payment.books(), "ledger/").len(),
        1,
        "a live saga's charge is kept"
    );
}
