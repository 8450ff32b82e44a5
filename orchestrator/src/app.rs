//! Wires the orchestrator together and runs it until stopped.
//!
//! Shutdown, in order: stop taking work (HTTP, consumers, timers); let the engine commit and
//! acknowledge what it holds; give the relay a moment to publish it; close the connection;
//! flush the store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sagaflow_events::Catalog;
use sagaflow_runtime::bus::{Bus, ConsumerSpec};
use sagaflow_runtime::commit::GroupCommit;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::engine::{Engine, Job, Source};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::timers;

pub async fn run(config: Config, stop: CancellationToken) -> anyhow::Result<()> {
    let started = Instant::now();
    let topology = config.common.topology();
    let catalog = Arc::new(Catalog::load_or_builtin(config.catalog.as_deref())?);
    let definition = config.steps.definition(&config.retry())?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let store = Arc::new(
        Store::open(&config.data_dir.join("sagas.sled"), topology.clone(), definition)
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?,
    );
    // No counting here: sled's len() walks a whole tree, and start-up must not grow with the
    // number of sagas. /metrics reports the outbox depth and armed timers.
    tracing::info!(
        data_dir = %config.data_dir.display(),
        steps = %config.steps,
        open_ms = started.elapsed().as_millis() as u64,
        "store open"
    );

    let commit = Arc::new(GroupCommit::new(store.db().clone(), store.outbox().clone()));
    let metrics = Arc::new(Metrics::default());
    let (jobs, job_queue) = mpsc::channel::<Job>(config.tuning.max_batch * 4);
    let (connected_tx, connected) = watch::channel(false);

    // Deliveries from each queue become engine jobs tagged with their source.
    let mut consumers = Vec::new();
    for (queue, source) in
        [(topology.intake_queue(), Source::Intake), (topology.replies_queue(), Source::Replies)]
    {
        let (sink, mut deliveries) = mpsc::channel(usize::from(config.tuning.prefetch));
        let jobs = jobs.clone();
        tokio::spawn(async move {
            while let Some(delivery) = deliveries.recv().await {
                if jobs.send(Job::Delivery { source, delivery: Box::new(delivery) }).await.is_err() {
                    break;
                }
            }
        });
        consumers.push(ConsumerSpec { queue, prefetch: config.tuning.prefetch, sink });
    }

    let bus_stop = CancellationToken::new();
    let bus = Bus {
        url: config.common.amqp_url.clone(),
        topology: topology.clone(),
        consumers,
        outbox: store.outbox().clone(),
        relay_window: config.tuning.relay_window,
        connected: connected_tx,
        metrics: metrics.bus.clone(),
    };
    let bus_task = tokio::spawn(bus.run(stop.clone(), bus_stop.clone()));

    let timers_in_flight = Arc::default();
    let timer_wake = Arc::new(Notify::new());
    let timer_task = tokio::spawn(timers::run(
        store.clone(),
        jobs.clone(),
        Arc::clone(&timers_in_flight),
        timer_wake.clone(),
        connected.clone(),
        Duration::from_millis(config.attempt_timeout_ms.min(2_000)),
        stop.clone(),
    ));

    let retention_task = tokio::spawn(crate::retention::run(
        Duration::from_secs(config.retain_finished_secs),
        jobs.clone(),
        stop.clone(),
    ));

    let api_state = ApiState {
        store: store.clone(),
        jobs: jobs.clone(),
        catalog: catalog.clone(),
        connected,
        metrics: metrics.clone(),
        commit: commit.clone(),
    };
    let router = api::router(api_state, config.body_limit_bytes);
    let http_task = tokio::spawn(sagaflow_runtime::http::serve(config.http_addr, router, stop.clone()));
    drop(jobs);

    let engine = Engine {
        store: store.clone(),
        commit,
        catalog,
        topology,
        metrics,
        timers_in_flight,
        timer_wake,
        max_batch: config.tuning.max_batch,
    };
    tracing::info!(ready_ms = started.elapsed().as_millis() as u64, http = %config.http_addr, "orchestrator ready");
    let engine_result = engine.run(job_queue, stop.clone()).await;
    stop.cancel();

    // Let the relay publish what the last batches committed, briefly: whatever remains is
    // durable in the outbox and goes out on the next start.
    let deadline = Instant::now() + Duration::from_secs(2);
    while store.outbox().depth() > 0 && Instant::now() < deadline && engine_result.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus_stop.cancel();
    let _ = bus_task.await;
    let _ = timer_task.await;
    let _ = retention_task.await;
    match http_task.await {
        Ok(Err(e)) => return Err(e).context(format!("HTTP server on {}", config.http_addr)),
        Err(e) => return Err(e.into()),
        Ok(Ok(())) => {}
    }
    store.db().flush_async().await?;
    engine_result?;
    tracing::info!("orchestrator stopped");
    Ok(())
}
