//! Stores full of finished sagas, for the bench's cost-as-work-grows runs and for trying
//! recovery by hand (`examples/populate_store.rs`). Each copy is a saga that really ran: the
//! template goes through the state machine step by step, so its record and history are byte
//! for byte what a completed order leaves behind.

use std::path::Path;
use std::sync::Arc;

use sagaflow_events::{Catalog, OrderId, OrderPlaced, SagaId, WireItem};
use sagaflow_runtime::db::Db;
use sagaflow_saga::{HistoryEntry, Input, Outcome, Phase, Saga, Timestamp};

use crate::engine::new_saga;
use crate::order_saga::{RetrySettings, StepOrder};
use crate::record::SagaRecord;
use crate::store::{Store, StoreError};

/// A one-item order that completed every step, as a finished record and its history.
pub fn completed_saga(now: u64) -> (SagaRecord, Vec<HistoryEntry>) {
    let definition =
        StepOrder::default().definition(&RetrySettings::default()).expect("the default definition is valid");
    let order_id = OrderId::parse("template-00000000").expect("a valid id");
    let placed = OrderPlaced {
        event: None,
        order_id: Some(order_id.to_string()),
        user_id: Some("customer7".into()),
        items: vec![WireItem { product_id: "abc".into(), quantity: 1 }],
    };
    let new = new_saga(order_id.clone(), &placed, &Catalog::builtin(), None);
    let saga_id = SagaId::generate();
    let mut saga = Saga::new(saga_id.as_str(), &definition, 7);
    let mut history = Vec::new();
    let mut give = |saga: &mut Saga, input: Input, at: u64| {
        let applied = saga.apply(&definition, &input, Timestamp(at));
        history.push(HistoryEntry { at: Timestamp(at), input, ignored: applied.ignored });
    };
    give(&mut saga, Input::Start, now);
    for step in 0..definition.len() as u32 {
        let reply = Input::Reply { step, phase: Phase::Action, attempt: 1, outcome: Outcome::Success };
        give(&mut saga, reply, now + 10 * (u64::from(step) + 1));
    }
    assert!(saga.is_terminal(), "the template saga completed");
    let record = SagaRecord {
        order_id,
        saga_id,
        saga,
        order: new.order.ok(),
        invalid: None,
        definition: definition.fingerprint(),
        body_hash: new.body_hash,
        created_at: now,
        updated_at: now + 40,
        created_seq: 0,
        finished_at: Some(now + 40),
        trace_id: sagaflow_runtime::telemetry::TraceParent::new_trace().trace_id(),
        payment_id: None,
        command_sent_at: now + 30,
        history_len: history.len() as u32,
        ignored_recorded: 0,
    };
    (record, history)
}

/// Adds `count` finished sagas to the store at `path` (`{prefix}-00000000` onwards).
pub fn fill(path: &Path, count: u64, prefix: &str) -> Result<usize, StoreError> {
    let definition =
        StepOrder::default().definition(&RetrySettings::default()).expect("the default definition is valid");
    let store = Store::open(Arc::new(Db::open(path)?), definition)?;
    let (template, history) = completed_saga(sagaflow_runtime::now_millis());
    let ids = (0..count).map(|i| OrderId::parse(format!("{prefix}-{i:08}")).expect("a valid id"));
    store.import_finished(&template, &history, ids)
}
