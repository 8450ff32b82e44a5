//! The loop every participant runs, written once:
//!
//! 1. consume commands with manual acks;
//! 2. per command, one sled transaction: barrier record + domain effect + reply in the outbox;
//! 3. flush once per batch (group commit);
//! 4. acknowledge the batch, and let the relay publish the replies with confirms.
//!
//! A crash before 3 loses nothing that was acknowledged; a crash after 3 leaves the barrier
//! to absorb the redelivered commands.

use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use lapin::message::Delivery;
use sagaflow_events::{CommandMessage, Phase, ReplyMessage, ReplyOutcome, Topology};
use sagaflow_runtime::bus::{dead_letter, Bus, BusMetrics, ConsumerSpec};
use sagaflow_runtime::commit::{Acks, GroupCommit};
use sagaflow_runtime::metrics::{Counter, Render};
use sagaflow_runtime::outbox::{Outbox, OutboxMessage};
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::barrier::{Answer, BarrierRecord, Decision, HANGING_REASON};
use crate::config::{draw, ServiceArgs};
use crate::domain::Domain;

#[derive(Debug, Default)]
pub struct ServiceMetrics {
    pub applied: Counter,
    pub refused: Counter,
    /// Commands seen before, answered from the barrier.
    pub duplicates: Counter,
    pub null_compensations: Counter,
    /// Actions that came after their compensation.
    pub hanging_refused: Counter,
    pub transient_injected: Counter,
    pub dead_lettered: Counter,
    pub bus: Arc<BusMetrics>,
}

/// Applies commands to one participant's store. Separate from the bus so the property tests
/// can drive it directly.
pub struct Handler<D: Domain> {
    pub domain: Arc<D>,
    pub barrier: sled::Tree,
    pub state: sled::Tree,
    pub outbox: Arc<Outbox>,
    pub topology: Topology,
    pub fail_rate: f64,
    pub seed: u64,
    pub metrics: Arc<ServiceMetrics>,
}

impl<D: Domain> Handler<D> {
    pub fn open(
        domain: D,
        db: &sled::Db,
        topology: Topology,
        fail_rate: f64,
        seed: u64,
    ) -> sled::Result<Self> {
        let state = db.open_tree("state")?;
        domain.seed(&state)?;
        Ok(Self {
            domain: Arc::new(domain),
            barrier: db.open_tree("barrier")?,
            state,
            outbox: Outbox::open(db)?,
            topology,
            fail_rate,
            seed,
            metrics: Arc::default(),
        })
    }

    /// Handles one command in one transaction and returns the reply it staged.
    pub fn handle(
        &self,
        command: &CommandMessage,
        traceparent: Option<String>,
    ) -> Result<ReplyMessage, String> {
        // A flaky dependency fails before anything is decided, so nothing is recorded and a
        // retry may succeed. The draw includes the attempt so that retries draw again.
        if self.fail_rate > 0.0
            && draw(self.seed, &command.idempotency_key, u64::from(command.attempt)) < self.fail_rate
        {
            self.metrics.transient_injected.inc();
            let answer = Answer {
                outcome: ReplyOutcome::Transient { reason: "simulated dependency failure".into() },
                payment_id: None,
                missing_products: Vec::new(),
            };
            let reply = reply_to(command, answer);
            let message = self.reply_message(&reply, traceparent);
            self.outbox
                .tree()
                .transaction(|tx| self.outbox.stage(tx, &message).map_err(ConflictableTransactionError::from))
                .map_err(|e: sled::transaction::TransactionError<String>| e.to_string())?;
            return Ok(reply);
        }
        let key = format!("{}/{}", command.saga_id, command.step);
        let result =
            (&self.barrier, &self.state, self.outbox.tree()).transaction(|(barrier, state, outbox)| {
                let mut record: BarrierRecord = match barrier.get(key.as_bytes())? {
                    Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                        ConflictableTransactionError::Abort(format!("barrier record {key}: {e}"))
                    })?,
                    None => BarrierRecord::default(),
                };
                let decision = match command.phase {
                    Phase::Action => record.decide_action(),
                    Phase::Compensation => record.decide_compensation(),
                };
                let (answer, kind) = match decision {
                    Decision::Repeat(answer) => (answer, Kind::Duplicate),
                    Decision::RefuseHanging => (Answer::refused(HANGING_REASON), Kind::Hanging),
                    Decision::Act => {
                        let answer = self.domain.act(state, command)?;
                        record.action = Some(answer.clone());
                        let kind = if answer.outcome == ReplyOutcome::Succeeded {
                            Kind::Applied
                        } else {
                            Kind::Refused
                        };
                        (answer, kind)
                    }
                    Decision::Undo { action_happened } => {
                        self.domain.undo(state, command, action_happened)?;
                        let answer = Answer::success();
                        record.compensation = Some(answer.clone());
                        (answer, if action_happened { Kind::Applied } else { Kind::Null })
                    }
                };
                if matches!(kind, Kind::Applied | Kind::Refused | Kind::Null) {
                    barrier.insert(key.as_bytes(), serde_json::to_vec(&record).expect("serialises"))?;
                }
                let reply = reply_to(command, answer);
                self.outbox.stage(outbox, &self.reply_message(&reply, traceparent.clone()))?;
                Ok((reply, kind))
            });
        let (reply, kind) = result.map_err(|e| e.to_string())?;
        match kind {
            Kind::Applied => self.metrics.applied.inc(),
            Kind::Refused => self.metrics.refused.inc(),
            Kind::Duplicate => self.metrics.duplicates.inc(),
            Kind::Hanging => self.metrics.hanging_refused.inc(),
            Kind::Null => self.metrics.null_compensations.inc(),
        }
        Ok(reply)
    }

    /// Applies a public event the domain follows, in one transaction on its state.
    pub fn apply_event(&self, event: &sagaflow_events::PublicEvent) -> Result<(), String> {
        self.state
            .transaction(|state| self.domain.on_event(state, event))
            .map_err(|e: sled::transaction::TransactionError<String>| e.to_string())
    }

    fn reply_message(&self, reply: &ReplyMessage, traceparent: Option<String>) -> OutboxMessage {
        let body = serde_json::to_string(reply).expect("replies serialise");
        OutboxMessage::new(
            self.topology.replies_exchange(),
            String::new(),
            reply.order_id.to_string(),
            "reply",
            body,
        )
        .with_traceparent(traceparent)
    }
}

enum Kind {
    Applied,
    Refused,
    Duplicate,
    Hanging,
    Null,
}

/// The reply to `command`, echoing its envelope so the orchestrator can match the attempt.
fn reply_to(command: &CommandMessage, answer: Answer) -> ReplyMessage {
    ReplyMessage {
        saga_id: command.saga_id.clone(),
        order_id: command.order_id.clone(),
        step: command.step.clone(),
        phase: command.phase,
        attempt: command.attempt,
        idempotency_key: command.idempotency_key.clone(),
        outcome: answer.outcome,
        payment_id: answer.payment_id,
        missing_products: answer.missing_products,
    }
}

/// Runs a participant until `stop`: bus, batch loop, HTTP.
pub async fn run<D: Domain>(
    domain: D,
    args: ServiceArgs,
    default_port: u16,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let participant = domain.participant();
    let topology = args.common.topology();
    let (data_dir, db) = args.open_store(participant)?;
    let handler = Arc::new(Handler::open(domain, &db, topology.clone(), args.fail_rate, args.seed)?);
    let commit = Arc::new(GroupCommit::new(db.clone(), handler.outbox.clone()));
    let (connected_tx, connected) = watch::channel(false);
    let (sink, mut deliveries) = mpsc::channel::<Delivery>(usize::from(args.tuning.prefetch));
    let queue = topology.command_queue(participant);

    let bus_stop = CancellationToken::new();
    let bus = Bus {
        url: args.common.amqp_url.clone(),
        topology: topology.clone(),
        consumers: {
            // Commands and followed events share one sink; a delivery's exchange tells them apart.
            let mut consumers = vec![ConsumerSpec {
                queue: queue.clone(),
                prefetch: args.tuning.prefetch,
                sink: sink.clone(),
            }];
            if let Some(events) = handler.domain.event_queue(&topology) {
                consumers.push(ConsumerSpec { queue: events, prefetch: args.tuning.prefetch, sink });
            }
            consumers
        },
        outbox: handler.outbox.clone(),
        relay_window: args.tuning.relay_window,
        connected: connected_tx,
        metrics: handler.metrics.bus.clone(),
    };
    let bus_task = tokio::spawn(bus.run(stop.clone(), bus_stop.clone()));

    let http_addr = args.http_addr(default_port);
    let router = router(handler.clone(), commit.clone(), connected);
    let http_task = tokio::spawn(sagaflow_runtime::http::serve(http_addr, router, stop.clone()));
    tracing::info!(%participant, data_dir = %data_dir.display(), "{participant} ready");

    // Names the loop compares and reports with, built once rather than per delivery.
    let events_exchange = topology.events_exchange();
    let events_queue = handler.domain.event_queue(&topology).unwrap_or_default();
    let latency = Duration::from_millis(args.latency_ms);
    let mut batch = Vec::with_capacity(args.tuning.max_batch);
    loop {
        let stopping = tokio::select! {
            n = deliveries.recv_many(&mut batch, args.tuning.max_batch) => n == 0,
            _ = stop.cancelled() => {
                while let Ok(d) = deliveries.try_recv() {
                    batch.push(d);
                }
                true
            }
        };
        if !batch.is_empty() {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let size = batch.len();
            let acks = tokio::task::block_in_place(|| {
                let mut acks = Acks::default();
                for delivery in batch.drain(..) {
                    // Commands and followed events share the sink; the exchange tells them apart.
                    let is_event = delivery.exchange.as_str() == events_exchange;
                    let from = if is_event { events_queue.as_str() } else { queue.as_str() };
                    handle_delivery(&handler, from, is_event, &delivery);
                    // They come on two channels: one run of acks each.
                    acks.push(usize::from(is_event), delivery.delivery_tag, delivery.acker);
                }
                acks
            });
            // Durable before acknowledged, and before any reply leaves: first what the domain
            // wrote outside sled, then the barrier records and replies that say it was done.
            let domain = handler.domain.clone();
            tokio::task::spawn_blocking(move || domain.make_durable()).await??;
            commit.commit(size).await?;
            acks.send().await;
        }
        if stopping {
            break;
        }
    }
    stop.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while handler.outbox.depth() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bus_stop.cancel();
    let _ = bus_task.await;
    http_task.await??;
    db.flush_async().await?;
    tracing::info!(%participant, "{participant} stopped");
    Ok(())
}

/// Parses and handles one delivery from `queue`; anything unusable goes to the dead-letter queue.
fn handle_delivery<D: Domain>(handler: &Handler<D>, queue: &str, is_event: bool, delivery: &Delivery) {
    let reject = |reason: String| {
        tracing::warn!(queue, reason, "dead-lettering a message");
        handler.metrics.dead_lettered.inc();
        let letter = dead_letter(&handler.topology, queue, delivery, &reason);
        let staged = handler
            .outbox
            .tree()
            .transaction(|tx| handler.outbox.stage(tx, &letter).map_err(ConflictableTransactionError::from));
        if let Err(e) = staged as Result<(), sled::transaction::TransactionError<String>> {
            tracing::error!(error = %e, "could not stage a dead letter");
        }
    };
    if is_event {
        return match serde_json::from_slice::<sagaflow_events::PublicEvent>(&delivery.data) {
            Ok(event) => {
                if let Err(e) = handler.apply_event(&event) {
                    reject(format!("could not apply the event: {e}"));
                }
            }
            Err(e) => reject(format!("not a public event: {e}")),
        };
    }
    let command: CommandMessage = match serde_json::from_slice(&delivery.data) {
        Ok(c) => c,
        Err(e) => return reject(format!("not a command: {e}")),
    };
    let kind = command.body.kind();
    if kind.participant() != handler.domain.participant() || kind.phase() != command.phase {
        return reject(format!(
            "{kind} in the {} phase is not for {}",
            command.phase,
            handler.domain.participant()
        ));
    }
    let traceparent = sagaflow_runtime::bus::header(delivery, sagaflow_events::headers::TRACEPARENT);
    match handler.handle(&command, traceparent) {
        Ok(reply) => {
            tracing::debug!(order_id = %command.order_id, %kind, attempt = command.attempt, outcome = ?reply.outcome, "handled")
        }
        Err(e) => reject(format!("could not apply: {e}")),
    }
}

fn router<D: Domain>(
    handler: Arc<Handler<D>>,
    commit: Arc<GroupCommit>,
    connected: watch::Receiver<bool>,
) -> Router {
    let view = handler.clone();
    let metrics = handler.clone();
    Router::new()
        .route(handler.domain.path(), get(move || async move { Json(view.domain.view(&view.state)) }))
        .route("/health", get(move || async move { sagaflow_runtime::http::health(&connected) }))
        .route(
            "/metrics",
            get(move || async move {
                let m = &metrics.metrics;
                let text = Render::default()
                    .counter("sagaflow_commands_applied_total", "Commands that took effect.", &m.applied)
                    .counter(
                        "sagaflow_commands_refused_total",
                        "Actions refused for business reasons.",
                        &m.refused,
                    )
                    .counter(
                        "sagaflow_duplicates_total",
                        "Commands seen before, answered from the barrier.",
                        &m.duplicates,
                    )
                    .counter(
                        "sagaflow_null_compensations_total",
                        "Compensations with nothing to undo.",
                        &m.null_compensations,
                    )
                    .counter(
                        "sagaflow_hanging_refused_total",
                        "Actions refused after their compensation.",
                        &m.hanging_refused,
                    )
                    .counter(
                        "sagaflow_transient_injected_total",
                        "Simulated dependency failures.",
                        &m.transient_injected,
                    )
                    .counter(
                        "sagaflow_dead_lettered_total",
                        "Commands sent to the dead-letter queue.",
                        &m.dead_lettered,
                    )
                    .counter("sagaflow_deliveries_total", "Messages received.", &m.bus.deliveries)
                    .counter(
                        "sagaflow_redeliveries_total",
                        "Messages the broker delivered again.",
                        &m.bus.redeliveries,
                    )
                    .counter(
                        "sagaflow_published_total",
                        "Replies published and confirmed.",
                        &metrics.outbox.published,
                    )
                    .gauge(
                        "sagaflow_outbox_depth",
                        "Replies waiting in the outbox.",
                        metrics.outbox.depth() as i64,
                    )
                    .histogram(
                        "sagaflow_commit_batch_size",
                        "Commands per group commit.",
                        &commit.batch_sizes,
                    )
                    .finish();
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
            }),
        )
        .fallback(sagaflow_runtime::http::not_found)
}
