//! The order in which every program starts and stops, written once.
//!
//! Start-up: the caller binds HTTP and opens the store first, so that a program that cannot
//! serve says so before anything runs; then [`Process::run`] starts the bus, the program's own
//! tasks and HTTP, and runs the pipeline on the calling task.
//!
//! Shutdown: stop taking work (consumers, HTTP, the program's tasks); let the pipeline commit
//! and acknowledge what it holds; give the relay a moment to publish it; close the connection.
//! A program whose pipeline failed, or whose bus gave up (another instance holds its queues),
//! stops the same way and reports why.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusError};
use crate::http::HttpServer;
use crate::outbox::Outbox;
use crate::pipeline::{Apply, Inputs, Pipeline, PipelineError};

/// Why a program stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The parts of a running program.
pub struct Process<A: Apply> {
    pub server: HttpServer,
    pub router: Router,
    pub bus: Bus,
    pub pipeline: Pipeline<A>,
    pub inputs: Inputs<A::Job>,
    /// The program's own tasks (timers, retention); each ends when `stop` is cancelled.
    pub tasks: Vec<JoinHandle<()>>,
}

impl<A: Apply> Process<A> {
    /// Runs until `stop` (or a failure), then shuts down in order. `ready` runs once the
    /// program takes work: HTTP serves and the bus is connected (so a second instance, whose
    /// consumers the broker refuses, is never ready).
    pub async fn run(
        self,
        stop: CancellationToken,
        ready: impl FnOnce(std::net::SocketAddr) + Send + 'static,
    ) -> Result<(), ProcessError> {
        let Self { server, router, bus, pipeline, inputs, tasks } = self;
        let outbox: Arc<Outbox> = pipeline.outbox.clone();
        let mut connected = bus.health.watch_bus();
        let pipeline_watchdog = pipeline.watchdog.clone();
        let bus_stop = CancellationToken::new();
        // Consumers stop with `stop`; the connection (and the relay) only with `bus_stop`.
        let mut bus_task = tokio::spawn(bus.run(stop.clone(), bus_stop.clone()));
        let addr = server.local_addr();
        let http_task = tokio::spawn(server.serve(router, stop.clone()));
        let ready_task = tokio::spawn(async move {
            if connected.wait_for(|up| *up).await.is_ok() {
                ready(addr);
            }
        });
        // The bus gives up only when another instance or another store holds the queues.
        let mut bus_result: Option<Result<(), BusError>> = None;
        let pipeline_result = tokio::select! {
            r = pipeline.run(inputs, stop.clone()) => r.map_err(ProcessError::from),
            joined = &mut bus_task => {
                bus_result = Some(joined.unwrap_or(Ok(())));
                Ok(())
            }
        };
        stop.cancel();
        // A store that failed is not shut down gracefully: nothing of its last batch was
        // acknowledged, and closing it could hang (sled flushes in its destructor). The caller
        // exits at once; the broker takes back what the process held.
        pipeline_result?;
        // From here on, the process must end within the watchdog's limit: a store that hangs
        // (in a flush, or in its destructor) must not keep it alive.
        let watchdog = pipeline_watchdog;
        watchdog.stopping();
        // Let the relay publish what the last batches committed, briefly: whatever remains is
        // durable in the outbox and goes out on the next start.
        let deadline = Instant::now() + Duration::from_secs(2);
        while bus_result.is_none() && outbox.depth() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bus_stop.cancel();
        let bus_result = match bus_result {
            Some(r) => r,
            None => bus_task.await.unwrap_or(Ok(())),
        };
        // A pipeline that ended because the bus gave up ends with the bus's reason.
        let result = bus_result.map_err(ProcessError::from);
        ready_task.abort();
        for task in tasks {
            let _ = task.await;
        }
        let _ = http_task.await;
        result
    }
}

/// Ends a program: exit code 0 when it stopped as asked; on an error, one line naming the cause
/// and exit code 1 at once. (At once: a store that failed may hang in its own destructor, which
/// flushes, and a process that said it cannot go on must not linger.)
pub fn exit<E: std::fmt::Display>(program: &str, result: Result<(), E>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{program} cannot go on: {e}");
            std::process::exit(1)
        }
    }
}
