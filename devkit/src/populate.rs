//! Stores full of finished sagas, for the bench's cost-as-work-grows runs and for trying
//! recovery by hand (`examples/populate_store.rs`). Each copy is a saga that really ran: the
//! template goes through the state machine step by step, so its record and history are byte
//! for byte what a completed order leaves behind.

use std::path::Path;
use std::sync::Arc;

use sagaflow_events::{Catalog, OrderId, OrderPlaced, SagaId, WireItem};
use sagaflow_runtime::db::Db;
use sagaflow_saga::{HistoryEntry, Input, Outcome, Phase, Saga, Timestamp};

use sagaflow_orchestrator::engine::new_saga;
use sagaflow_orchestrator::record::SagaRecord;
use sagaflow_orchestrator::store::{Store, StoreError};
use sagaflow_runtime::writes::Writes;

/// A one-item order that completed every step, as a finished record and its history.
pub fn completed_saga(now: u64) -> (SagaRecord, Vec<HistoryEntry>) {
    let definition = sagaflow_orchestrator::order_saga::default_definition();
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
        key: sagaflow_events::SagaKey::of_order(&order_id),
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
        defined: None,
    };
    (record, history)
}

/// Adds `count` finished sagas to the store at `path` (`{prefix}-00000000` onwards), each a
/// copy of [`completed_saga`] under its own ids, written through the store's own transactions
/// (so indexes and counts are what running them leaves), 10,000 to a commit.
pub fn fill(path: &Path, count: u64, prefix: &str) -> Result<usize, StoreError> {
    let definition = sagaflow_orchestrator::order_saga::default_definition();
    let label = sagaflow_orchestrator::order_saga::default_label();
    let store = Store::open(Arc::new(Db::open(path)?), definition, label)?;
    let (template, history) = completed_saga(sagaflow_runtime::now_millis());
    let mut imported = 0;
    while imported < count {
        let chunk = (count - imported).min(10_000);
        let writes = Writes::new();
        for i in imported..imported + chunk {
            let order_id = OrderId::parse(format!("{prefix}-{i:08}")).expect("a valid id");
            store.transaction(&writes, |tx| {
                let mut record = template.clone();
                record.created_seq = tx.next_seq()?;
                record.saga_id = SagaId::generate();
                if let Some(order) = record.order.as_mut() {
                    order.order_id = order_id.clone();
                }
                record.key = sagaflow_events::SagaKey::of_order(&order_id);
                record.history_len = 0;
                for entry in &history {
                    tx.append_history(&mut record, entry)?;
                }
                tx.create(&record)
            })?;
        }
        // As the pipeline does: the chunk's changes as records, and the feed trimmed to its tail.
        store.feed().seal(&writes);
        writes.commit()?;
        imported += chunk;
    }
    store.db().make_durable()?;
    Ok(imported as usize)
}
