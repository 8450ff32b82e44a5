//! Wires the orchestrator together and runs it until stopped.
//!
//! Start-up, in order, so that a program that cannot serve says so before it is ready: bind the
//! HTTP port, open (and lock) the store, then start the bus, the timers, retention and HTTP
//! ([`Process`] keeps the order, and the shutdown order, for every program).

use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_events::Catalog;
use sagaflow_runtime::bus::{Bus, ConsumerSpec};
use sagaflow_runtime::db::{Db, DbError};
use sagaflow_runtime::health::Health;
use sagaflow_runtime::http::server::BindError;
use sagaflow_runtime::http::HttpServer;
use sagaflow_runtime::pipeline::{Inputs, Pipeline, PipelineMetrics};
use sagaflow_runtime::process::{Process, ProcessError};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, DEFAULT_PORT};
use crate::engine::{Engine, Job};
use crate::http::{self, api::ApiState};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use crate::timers;

/// Why the orchestrator stopped or could not start: one line each.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] sagaflow_events::CatalogError),
    #[error("the saga definition {0}")]
    SagaFile(#[from] crate::saga_file::SagaFileError),
    #[error("the saga {saga:?} is no longer defined, but {count} of its sagas are in flight (such as {}): start with its file again (--saga-file) and let them finish, or cancel them, before removing it", .examples.join(", "))]
    DefinitionInUse { saga: String, count: usize, examples: Vec<String> },
    #[error("{}: the saga {saga:?} runs on RabbitMQ only so far (BUS=rabbitmq)", .file.display())]
    NotOnKafka { file: std::path::PathBuf, saga: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// The program's name, in its log lines.
const PROGRAM: &str = "orchestrator";

pub async fn run(config: Config, stop: CancellationToken) -> Result<(), AppError> {
    let started = Instant::now();
    let server = HttpServer::bind(&config.http, DEFAULT_PORT).await?;
    let catalog = Arc::new(Catalog::load_or_builtin(config.catalog.as_deref())?);
    let sagas = crate::saga_file::load(&config.saga_files)?;
    let mut defined = Vec::new();
    let mut input_schemas = std::collections::HashMap::new();
    for file in sagas.values().filter(|s| s.name != "order") {
        if config.common.bus == sagaflow_runtime::config::BusKind::Kafka {
            // Participants in other languages read AMQP (pika) in the guide and the example;
            // on Kafka the orchestrator would send commands nobody there is told how to read.
            return Err(AppError::NotOnKafka { file: file.path.clone(), saga: file.name.clone() });
        }
        let definition = file.definition().map_err(|e| file.refuse_definition(e))?;
        let schema = file
            .input_schema
            .as_ref()
            .map(|schema| jsonschema::validator_for(schema).map(Arc::new))
            .transpose()
            .map_err(|e| file.refuse(None, crate::saga_file::Rule::BadSchema(e.to_string())))?;
        input_schemas.insert(file.name.clone(), schema);
        defined.push(crate::store::DefinedSaga { file: file.clone(), definition });
    }
    // Each defined saga's participants get a command queue, declared with the others.
    let topology = config
        .common
        .topology()
        .with_participants(defined.iter().flat_map(|d| d.file.steps.iter().map(|s| s.participant.as_str())));
    let order_saga = &sagas["order"];
    let definition = crate::order_saga::definition(order_saga, &config.order_overrides())?;
    // How often timers look for what is due: often enough for the shortest attempt timeout.
    let shortest_timeout = std::iter::once(&definition)
        .chain(defined.iter().map(|d| &d.definition))
        .flat_map(|d| d.steps().iter().map(|s| s.retry.attempt_timeout.0))
        .min()
        .unwrap_or(0);
    let steps = definition.steps().iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(",");
    let db = Arc::new(Db::open(&config.data_dir.join("sagas.sled"))?);
    let label = crate::store::DefinitionLabel { name: order_saga.name.clone(), version: order_saga.version };
    let defined_names = defined.iter().map(|d| d.file.name.clone()).collect::<Vec<_>>().join(",");
    let store = Arc::new(
        Store::open_with(db.clone(), definition, label, defined)?.keeping_changes(config.change_feed_keep),
    );
    // A definition still in use is not removed silently: its sagas would run on from the
    // stored copy, but nobody could start or find its kind in the configuration any more.
    if let Some((saga, (count, examples))) = store.in_flight_without_definition()?.into_iter().next() {
        return Err(AppError::DefinitionInUse { saga, count, examples });
    }
    // No counting here: sled's len() walks a whole tree, and start-up must not grow with the
    // number of sagas. /metrics reports the outbox depth and armed timers.
    tracing::info!(
        data_dir = %config.data_dir.display(),
        order_saga = %order_saga.path.display(),
        version = order_saga.version,
        steps,
        defined = defined_names,
        open_ms = started.elapsed().as_millis() as u64,
        "store open"
    );

    let health = Health::default();
    let metrics = Arc::new(Metrics::default());
    let pipeline_metrics = Arc::new(PipelineMetrics::default());
    // Jobs (HTTP requests, timers) wait here for the pipeline. One batch's worth is enough:
    // the pipeline takes waiting jobs first, and a full channel only makes a handler wait,
    // which the HTTP server's connection cap already bounds.
    let (jobs, queued_jobs) = mpsc::channel::<Job>(config.tuning.max_batch);
    // In the order of `engine::INTAKE` and `engine::REPLIES`.
    let consumers = vec![
        ConsumerSpec { queue: topology.intake_queue(), prefetch: config.tuning.prefetch },
        ConsumerSpec { queue: topology.replies_queue(), prefetch: config.tuning.prefetch },
    ];
    let (sink, deliveries) = sagaflow_runtime::bus::channel(&consumers);
    let bus = Bus {
        broker: config.common.broker(),
        topology: topology.clone(),
        consumers,
        sink,
        outbox: store.outbox().clone(),
        relay_window: config.tuning.relay_window,
        events_unbound_recheck: config.tuning.events_unbound_recheck(),
        health: health.clone(),
        metrics: metrics.bus.clone(),
        store_id: db.id().to_owned(),
    };

    let held_timers = Arc::default();
    let timer_wake = Arc::new(Notify::new());
    let tasks = vec![
        tokio::spawn(timers::run(
            store.clone(),
            jobs.clone(),
            Arc::clone(&held_timers),
            timer_wake.clone(),
            health.watch_bus(),
            Duration::from_millis(shortest_timeout.min(2_000)),
            stop.clone(),
        )),
        tokio::spawn(crate::retention::run(
            Duration::from_secs(config.retain_finished_secs),
            jobs.clone(),
            stop.clone(),
        )),
    ];

    let api_state = ApiState {
        store: store.clone(),
        jobs,
        catalog: catalog.clone(),
        health: health.clone(),
        metrics: metrics.clone(),
        pipeline: pipeline_metrics.clone(),
        stop: stop.clone(),
        inspector: sagaflow_runtime::bus::inspect::Inspector::new(config.common.broker(), topology.clone()),
        topology: topology.clone(),
        input_schemas: Arc::new(input_schemas),
    };
    let router = sagaflow_runtime::http::harden(http::router(api_state), &config.http);
    let engine = Engine {
        store: store.clone(),
        catalog,
        topology: topology.clone(),
        metrics,
        held_timers,
        timer_wake,
    };
    let pipeline = Pipeline {
        applier: engine,
        db,
        outbox: store.outbox().clone(),
        topology,
        health,
        max_batch: config.tuning.max_batch,
        metrics: pipeline_metrics,
        watchdog: sagaflow_runtime::watchdog::Watchdog::start(PROGRAM),
        acks: config.tuning.ack_deferral(),
    };
    let inputs = Inputs { deliveries, jobs: Some(queued_jobs) };
    let process = Process { server, router, bus, pipeline, inputs, tasks };
    process
        .run(stop, move |http| {
            tracing::info!(ready_ms = started.elapsed().as_millis() as u64, %http, "orchestrator ready")
        })
        .await?;
    tracing::info!("orchestrator stopped");
    Ok(())
}
