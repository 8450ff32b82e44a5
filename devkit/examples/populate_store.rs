//! Fills a saga store, to try recovery and listing at scale by hand.
//!
//! - `started`: N sagas mid-flight, as a crash under load would leave them: every saga with a
//!   timer armed and its first command in the outbox. Recovery must re-arm and re-publish.
//! - `finished`: N completed sagas (what `sagactl bench` measures the cost of).
//!
//! ```sh
//! cargo run --release -p sagaflow-devkit --example populate_store -- /tmp/store 100000 started
//! DATA_DIR=/tmp/store target/release/orchestrator   # the log shows open_ms and ready_ms
//! ```

use std::sync::Arc;

use sagaflow_events::{Catalog, OrderId, OrderPlaced, Topology, WireItem};
use sagaflow_orchestrator::engine::{new_saga, Engine};
use sagaflow_orchestrator::store::Store;
use sagaflow_runtime::db::Db;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/sagaflow-populated".into()));
    let count: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100_000);
    let kind = args.next().unwrap_or_else(|| "started".into());
    let path = dir.join("sagas.sled");
    let started = std::time::Instant::now();
    if kind == "finished" {
        sagaflow_devkit::populate::fill(&path, count, "pop")?;
        let (record, _) = sagaflow_devkit::populate::completed_saga(0);
        println!(
            "{count} finished sagas in {:.1?}; one record is {} bytes",
            started.elapsed(),
            record.encode().len()
        );
        return Ok(());
    }
    let definition = sagaflow_orchestrator::order_saga::default_definition();
    let db = Arc::new(Db::open(&path)?);
    let label = sagaflow_orchestrator::order_saga::default_label();
    let store = Arc::new(Store::open(db.clone(), definition, label)?);
    let catalog = Arc::new(Catalog::builtin());
    let engine = Engine {
        store: store.clone(),
        catalog: catalog.clone(),
        topology: Topology::new("sagaflow"),
        metrics: Arc::default(),
        held_timers: Arc::default(),
        timer_wake: Arc::default(),
    };
    let mut writes = sagaflow_runtime::writes::Writes::new();
    for i in 0..count {
        let id = format!("pop-{i:08}");
        let placed = OrderPlaced {
            event: None,
            order_id: Some(id.clone()),
            user_id: Some("user1".into()),
            items: vec![WireItem { product_id: "abc".into(), quantity: 1 }],
        };
        engine.place(&writes, new_saga(OrderId::parse(id)?, &placed, &catalog, None), 1_000 + i)?;
        if i % 1_000 == 999 {
            store.feed().seal(&writes);
            std::mem::take(&mut writes).commit()?;
        }
    }
    store.feed().seal(&writes);
    writes.commit()?;
    db.make_durable()?;
    println!(
        "{count} sagas in {:.1?}; outbox {}, timers {}, {} bytes on disk",
        started.elapsed(),
        store.outbox().depth(),
        store.armed_timers(),
        db.sled().size_on_disk()?
    );
    Ok(())
}
