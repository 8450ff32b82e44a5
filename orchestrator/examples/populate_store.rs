//! Fills a saga store with N started sagas, as a crash under load would leave it: every saga
//! mid-flight with a timer armed and its first command in the outbox. Used to measure recovery:
//!
//! ```sh
//! cargo run --release -p sagaflow-orchestrator --example populate_store -- /tmp/store 100000
//! DATA_DIR=/tmp/store target/release/orchestrator   # the log shows open_ms and ready_ms
//! ```

use sagaflow_events::{Catalog, OrderId, OrderPlaced, Topology, WireItem};
use sagaflow_orchestrator::engine::new_saga;
use sagaflow_orchestrator::order_saga::{RetrySettings, StepOrder};
use sagaflow_orchestrator::store::Store;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/sagaflow-populated".into()));
    let count: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(100_000);
    std::fs::create_dir_all(&dir)?;
    let definition = StepOrder::default().definition(&RetrySettings::default())?;
    let store = Store::open(&dir.join("sagas.sled"), Topology::new("sagaflow"), definition)?;
    let catalog = Catalog::builtin();
    let started = std::time::Instant::now();
    for i in 0..count {
        let id = format!("pop-{i:08}");
        let placed = OrderPlaced {
            event: None,
            order_id: Some(id.clone()),
            user_id: Some("user1".into()),
            items: vec![WireItem { product_id: "abc".into(), quantity: 1 }],
        };
        store.place(new_saga(OrderId::parse(id)?, &placed, &catalog), 1_000 + i)?;
    }
    store.db().flush()?;
    println!(
        "{count} sagas in {:.1?}; outbox {}, timers {}, {} bytes on disk",
        started.elapsed(),
        store.outbox().depth(),
        store.armed_timers(),
        store.db().size_on_disk()?
    );
    Ok(())
}
