//! Runs a participant: bind HTTP first, open (and lock) the store, then the shared process —
//! bus, pipeline and HTTP — until stopped.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use sagaflow_runtime::bus::{Bus, ConsumerSpec};
use sagaflow_runtime::db::{Db, DbError};
use sagaflow_runtime::health::Health;
use sagaflow_runtime::http::server::BindError;
use sagaflow_runtime::http::HttpServer;
use sagaflow_runtime::metrics::Render;
use sagaflow_runtime::pipeline::{Inputs, Pipeline, PipelineMetrics};
use sagaflow_runtime::process::{Process, ProcessError};
use tokio_util::sync::CancellationToken;

use crate::config::ServiceArgs;
use crate::domain::Domain;
use crate::participant::{Handler, COMMANDS, EVENTS};

/// Why a service stopped or could not start: one line each.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot open the store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// Runs a participant on the bus until `stop`.
pub async fn run<D: Domain>(
    domain: D,
    args: ServiceArgs,
    default_port: u16,
    stop: CancellationToken,
) -> Result<(), ServiceError> {
    let participant = domain.participant();
    let server = HttpServer::bind(&args.http, default_port).await?;
    let topology = args.common.topology();
    let data_dir = args.data_dir(participant);
    let db = Arc::new(Db::open(&data_dir.join("store.sled"))?);
    let handler = Handler::open(domain, db.sled(), topology.clone())?.simulating(
        args.fail_rate,
        args.seed,
        Duration::from_millis(args.latency_ms),
    );
    let health = Health::default();
    let pipeline_metrics = Arc::new(PipelineMetrics::default());
    // In the order of `participant::COMMANDS` and `participant::EVENTS`.
    let mut consumers =
        vec![ConsumerSpec { queue: topology.command_queue(participant), prefetch: args.tuning.prefetch }];
    if let Some(events) = handler.domain.event_queue(&topology) {
        consumers.push(ConsumerSpec { queue: events, prefetch: args.tuning.prefetch });
    }
    debug_assert_eq!((COMMANDS, EVENTS), (0, 1));
    let (sink, deliveries) = sagaflow_runtime::bus::channel(&consumers);
    let bus = Bus {
        broker: args.common.broker(),
        topology: topology.clone(),
        consumers,
        sink,
        outbox: handler.outbox.clone(),
        relay_window: args.tuning.relay_window,
        events_unbound_recheck: args.tuning.events_unbound_recheck(),
        health: health.clone(),
        metrics: handler.metrics.bus.clone(),
        store_id: db.id().to_owned(),
    };
    let router = router(&handler, &health, &pipeline_metrics);
    let router = sagaflow_runtime::http::harden(router, &args.http);
    let outbox = handler.outbox.clone();
    let pipeline = Pipeline {
        applier: handler,
        db,
        outbox,
        topology,
        health,
        max_batch: args.tuning.max_batch,
        metrics: pipeline_metrics,
        watchdog: sagaflow_runtime::watchdog::Watchdog::start(participant.into()),
        acks: args.tuning.ack_deferral(),
    };
    let inputs = Inputs { deliveries, jobs: None };
    let process = Process { server, router, bus, pipeline, inputs, tasks: Vec::new() };
    process
        .run(
            stop,
            move |http| tracing::info!(%participant, data_dir = %data_dir.display(), %http, "{participant} ready"),
        )
        .await?;
    tracing::info!(%participant, "{participant} stopped");
    Ok(())
}

fn router<D: Domain>(handler: &Handler<D>, health: &Health, pipeline: &Arc<PipelineMetrics>) -> Router {
    let (domain, books) = (handler.domain.clone(), handler.books().clone());
    let (metrics, outbox, pipeline) = (handler.metrics.clone(), handler.outbox.clone(), pipeline.clone());
    let path = domain.path();
    Router::new()
        .route(path, get(move || async move { Json(domain.view(&books)) }))
        .route(
            "/metrics",
            get(move || async move {
                let mut r = Render::default();
                metrics.render(&mut r);
                r.transport(&metrics.bus, &outbox);
                pipeline.render(&mut r);
                sagaflow_runtime::http::metrics_text(r.finish())
            }),
        )
        .merge(sagaflow_runtime::http::common_routes(health.clone(), handler.outbox.clone()))
}
