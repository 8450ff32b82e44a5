//! Stores full of finished sagas, for the bench's cost-as-work-grows runs and for trying
//! recovery by hand (`examples/populate_store.rs`). Each copy is a saga that really ran: the
//! template goes through the state machine step by step, so its record (history included) is
//! byte for byte what a completed order leaves behind.

use std::path::Path;

use sagaflow_events::{Catalog, OrderId, OrderPlaced, Topology, WireItem};
use sagaflow_saga::{Input, Outcome, Phase, Timestamp};

use crate::engine::new_saga;
use crate::order_saga::{RetrySettings, StepOrder};
use crate::record::SagaRecord;
use crate::store::{Placed, Store, StoreError};

/// A one-item order that completed every step, as a finished record.
pub fn completed_saga(now: u64) -> Result<SagaRecord, StoreError> {
    let definition =
        StepOrder::default().definition(&RetrySettings::default()).expect("the default definition is valid");
    let scratch = std::env::temp_dir().join(format!("sagaflow-template-{}-{now}", std::process::id()));
    let record = {
        let store = Store::open(&scratch, Topology::new("template"), definition.clone())?;
        let placed = OrderPlaced {
            event: None,
            order_id: Some("template-00000000".into()),
            user_id: Some("customer7".into()),
            items: vec![WireItem { product_id: "abc".into(), quantity: 1 }],
        };
        let new =
            new_saga(OrderId::parse("template-00000000").expect("a valid id"), &placed, &Catalog::builtin());
        let Placed::Created(mut record) = store.place(new, now)? else { unreachable!("a fresh store") };
        for (step, _) in definition.steps().iter().enumerate() {
            let reply = Input::Reply {
                step: step as u32,
                phase: Phase::Action,
                attempt: 1,
                outcome: Outcome::Success,
            };
            let at = now + 10 * (step as u64 + 1);
            record.saga.apply(&definition, reply, Timestamp(at));
            record.command_sent_at = at;
        }
        record.finished_at = Some(now + 40);
        record
    };
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(record.saga.status.is_terminal(), "the template saga completed");
    Ok(record)
}

/// Adds `count` finished sagas to the store at `path` (`{prefix}-00000000` onwards).
pub fn fill(path: &Path, namespace: &str, count: u64, prefix: &str) -> Result<usize, StoreError> {
    let definition =
        StepOrder::default().definition(&RetrySettings::default()).expect("the default definition is valid");
    let store = Store::open(path, Topology::new(namespace), definition)?;
    let template = completed_saga(sagaflow_runtime::now_millis())?;
    let ids = (0..count).map(|i| OrderId::parse(format!("{prefix}-{i:08}")).expect("a valid id"));
    store.import_finished(&template, ids)
}
