//! What every participant does with what it receives, written once, as the participant's
//! [`Apply`] for the shared pipeline:
//!
//! - a command: checked ([`CommandMessage::check_for`]), then, as one unit of the batch's
//!   writes, the barrier record, the domain's books and the reply in the outbox;
//! - a `ForgetSagas` from the orchestrator's retention: the barrier records and books of those
//!   sagas go, and commands sent before they ended are refused from then on;
//! - a public event the domain follows (inventory: `OrderCompleted`).
//!
//! A message that cannot be understood, or a command that cannot be for this participant, is
//! dead-lettered with the reason. A command the books cannot take is refused with a reason in
//! the reply, and nothing is applied. A store that cannot take the write now holds the command
//! unacknowledged.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_events::reply::reasons::{EXPIRED, INVALID_COMMAND};
use sagaflow_events::{CommandMessage, ForgetSagas, PublicEvent, ReplyMessage, ReplyOutcome, Topology};
use sagaflow_runtime::bus::{BusMetrics, Message, Received, Route};
use sagaflow_runtime::metrics::{Counter, Render};
use sagaflow_runtime::outbox::Outbox;
use sagaflow_runtime::pipeline::{Apply, ApplyError, Reply, Verdict};
use sagaflow_runtime::telemetry::TraceParent;
use sagaflow_runtime::writes::Writes;

use crate::barrier::{expired, Answer, BarrierRecord, Decision, HANGING_REASON};
use crate::config::draw;
use crate::domain::{Books, Domain, DomainError};

/// The participant's consumers, in the order the bus is given them.
pub const COMMANDS: usize = 0;
pub const EVENTS: usize = 1;

/// Where, in the books tree, the forget watermark is kept.
const FORGOTTEN_BEFORE: &str = "meta/forgotten-before";
/// How far in the future a `ForgetSagas` may claim sagas ended, for clocks that differ.
const CLOCK_SLACK_MS: u64 = 60_000;

#[derive(Debug, Default)]
pub struct ServiceMetrics {
    pub applied: Counter,
    pub refused: Counter,
    /// Commands seen before, answered from the barrier.
    pub duplicates: Counter,
    pub null_compensations: Counter,
    /// Actions that came after their compensation.
    pub hanging_refused: Counter,
    /// Commands of forgotten sagas that came late.
    pub expired_refused: Counter,
    /// Sagas forgotten at the orchestrator's word.
    pub forgotten: Counter,
    pub transient_injected: Counter,
    pub bus: Arc<BusMetrics>,
}

impl ServiceMetrics {
    pub fn render(&self, r: &mut Render) {
        r.counter("sagaflow_commands_applied_total", "Commands that took effect.", &self.applied)
            .counter(
                "sagaflow_commands_refused_total",
                "Commands refused, for business or safety reasons.",
                &self.refused,
            )
            .counter(
                "sagaflow_duplicates_total",
                "Commands seen before, answered from the barrier.",
                &self.duplicates,
            )
            .counter(
                "sagaflow_null_compensations_total",
                "Compensations with nothing to undo.",
                &self.null_compensations,
            )
            .counter(
                "sagaflow_hanging_refused_total",
                "Actions refused after their compensation.",
                &self.hanging_refused,
            )
            .counter(
                "sagaflow_expired_refused_total",
                "Late commands of forgotten sagas, refused.",
                &self.expired_refused,
            )
            .counter(
                "sagaflow_sagas_forgotten_total",
                "Sagas forgotten after the orchestrator removed them.",
                &self.forgotten,
            )
            .counter(
                "sagaflow_transient_injected_total",
                "Simulated dependency failures.",
                &self.transient_injected,
            );
    }
}

/// Applies what one participant receives to its store. Separate from the bus so the property
/// tests can drive it directly.
pub struct Handler<D: Domain> {
    pub domain: Arc<D>,
    barrier: sled::Tree,
    books: sled::Tree,
    pub outbox: Arc<Outbox>,
    topology: Topology,
    fail_rate: f64,
    seed: u64,
    /// Simulated slowness of a dependency, per batch.
    latency: Duration,
    /// Commands without a barrier record sent before this are late duplicates of forgotten
    /// sagas. Kept in the books; cached here.
    forgotten_before: u64,
    pub metrics: Arc<ServiceMetrics>,
}

/// What the barrier and the domain made of one command.
enum Kind {
    Applied,
    Refused,
    Duplicate,
    Hanging,
    Null,
    Expired,
}

impl<D: Domain> Handler<D> {
    pub fn open(domain: D, db: &sled::Db, topology: Topology) -> sled::Result<Self> {
        let books = db.open_tree("state")?;
        domain.seed(&books)?;
        let forgotten_before = books
            .get(FORGOTTEN_BEFORE)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        Ok(Self {
            domain: Arc::new(domain),
            barrier: db.open_tree("barrier")?,
            books,
            outbox: Outbox::open(db)?,
            topology,
            fail_rate: 0.0,
            seed: 0,
            latency: Duration::ZERO,
            forgotten_before,
            metrics: Arc::default(),
        })
    }

    /// Simulates a flaky and a slow dependency (`--fail-rate`, `--latency-ms`).
    pub fn simulating(mut self, fail_rate: f64, seed: u64, latency: Duration) -> Self {
        self.fail_rate = fail_rate;
        self.seed = seed;
        self.latency = latency;
        self
    }

    pub fn books(&self) -> &sled::Tree {
        &self.books
    }

    /// Handles a command's bytes as they came off the bus: what the pipeline and the property
    /// tests both call.
    pub fn receive_command(
        &mut self,
        body: &[u8],
        trace: Option<TraceParent>,
        writes: &Writes<'_>,
    ) -> Result<Verdict, ApplyError> {
        let command: CommandMessage = match serde_json::from_slice(body) {
            Ok(c) => c,
            Err(e) => return Ok(Verdict::Reject(format!("not a command: {e}"))),
        };
        if let Err(e) = command.check_for(self.domain.participant()) {
            return Ok(Verdict::Reject(format!("{INVALID_COMMAND}: {e}")));
        }
        self.handle(&command, trace.map(|t| t.child()).unwrap_or_else(TraceParent::new_trace), writes)?;
        Ok(Verdict::Done)
    }

    /// Handles one checked command as one unit of `writes`, and returns the reply it staged.
    pub fn handle(
        &self,
        command: &CommandMessage,
        trace: TraceParent,
        writes: &Writes<'_>,
    ) -> Result<ReplyMessage, ApplyError> {
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
            return Ok(self.reply_alone(command, answer, &trace, writes));
        }
        let key = format!("{}/{}", command.saga_id, command.step);
        let now = sagaflow_runtime::now_millis();
        let result = writes.scope(|writes| {
            let books = Books::new(writes, &self.books);
            let mut record: BarrierRecord = match writes.get(&self.barrier, key.as_bytes())? {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| DomainError::Corrupt { key: key.clone(), error: e.to_string() })?,
                None => BarrierRecord::default(),
            };
            let decision = match command.phase {
                sagaflow_events::Phase::Action => record.decide_action(),
                sagaflow_events::Phase::Compensation => record.decide_compensation(),
            };
            let (answer, kind) = match decision {
                Decision::Repeat(answer) => (answer, Kind::Duplicate),
                Decision::RefuseHanging => (Answer::refused(HANGING_REASON), Kind::Hanging),
                // No record, and sent before sagas this participant forgot ended: a late
                // duplicate of one of them. Acting would act twice.
                _ if record.is_new() && expired(command.sent_at, self.forgotten_before) => {
                    (Answer::refused(EXPIRED), Kind::Expired)
                }
                Decision::Act => {
                    let answer = self.domain.act(&books, command)?;
                    record.action = Some(answer.clone());
                    let kind =
                        if answer.outcome == ReplyOutcome::Succeeded { Kind::Applied } else { Kind::Refused };
                    (answer, kind)
                }
                Decision::Undo { action_happened } => {
                    self.domain.undo(&books, command, action_happened)?;
                    let answer = Answer::success();
                    record.compensation = Some(answer.clone());
                    (answer, if action_happened { Kind::Applied } else { Kind::Null })
                }
            };
            if matches!(kind, Kind::Applied | Kind::Refused | Kind::Null) {
                record.touched_at = now;
                writes.insert(
                    &self.barrier,
                    key.as_bytes(),
                    serde_json::to_vec(&record).expect("serialises"),
                );
            }
            let reply = reply_to(command, answer);
            self.outbox.stage(writes, &self.reply_message(&reply, &trace));
            Ok::<_, DomainError>((reply, kind))
        });
        let (reply, kind) = match result {
            Ok(done) => done,
            Err(DomainError::Unavailable(e)) => return Err(ApplyError::Retry(e)),
            Err(DomainError::Store(e)) => return Err(ApplyError::fatal(e)),
            Err(refusal) => {
                // The books cannot take it: refused, nothing applied, and the reason goes back.
                tracing::warn!(saga_id = %command.saga_id, error = %refusal, "command refused");
                self.metrics.refused.inc();
                let answer = Answer::refused(&format!("{INVALID_COMMAND}: {refusal}"));
                return Ok(self.reply_alone(command, answer, &trace, writes));
            }
        };
        match kind {
            Kind::Applied => self.metrics.applied.inc(),
            Kind::Refused => self.metrics.refused.inc(),
            Kind::Duplicate => self.metrics.duplicates.inc(),
            Kind::Hanging => self.metrics.hanging_refused.inc(),
            Kind::Null => self.metrics.null_compensations.inc(),
            Kind::Expired => self.metrics.expired_refused.inc(),
        }
        Ok(reply)
    }

    /// Stages a reply that records nothing else.
    fn reply_alone(
        &self,
        command: &CommandMessage,
        answer: Answer,
        trace: &TraceParent,
        writes: &Writes<'_>,
    ) -> ReplyMessage {
        let reply = reply_to(command, answer);
        self.outbox.stage(writes, &self.reply_message(&reply, trace));
        reply
    }

    /// Forgets the sagas the orchestrator removed. A record written after the saga supposedly
    /// ended is kept: the message is wrong about it (or forged).
    pub fn forget(&mut self, message: &ForgetSagas, writes: &Writes<'_>) -> Result<Verdict, ApplyError> {
        let now = sagaflow_runtime::now_millis();
        if message.finished_before > now.saturating_add(CLOCK_SLACK_MS) {
            return Ok(Verdict::Reject("a ForgetSagas about sagas that end in the future".into()));
        }
        let step = self.domain.participant().to_string();
        let watermark = message.finished_before.max(self.forgotten_before);
        let result = writes.scope(|writes| {
            let books = Books::new(writes, &self.books);
            let mut forgotten = 0u64;
            for saga in message.sagas.iter() {
                let key = format!("{}/{step}", saga.saga_id);
                if let Some(bytes) = writes.get(&self.barrier, key.as_bytes())? {
                    let record: BarrierRecord = serde_json::from_slice(&bytes).unwrap_or_default();
                    if record.touched_at > message.finished_before {
                        continue;
                    }
                    writes.remove(&self.barrier, key.as_bytes());
                }
                self.domain.forget(&books, saga)?;
                forgotten += 1;
            }
            books.insert(FORGOTTEN_BEFORE, watermark.to_be_bytes().to_vec());
            Ok::<_, DomainError>(forgotten)
        });
        match result {
            Ok(n) => {
                // The watermark is cached before the batch is durable: a crash loses both, and
                // the message comes again.
                self.forgotten_before = watermark;
                self.metrics.forgotten.add(n);
                Ok(Verdict::Done)
            }
            Err(e) => verdict_of(e, "cannot forget"),
        }
    }

    /// Applies a public event the domain follows, as one unit of `writes`.
    fn apply_event(&self, event: &PublicEvent, writes: &Writes<'_>) -> Result<Verdict, ApplyError> {
        match writes.scope(|writes| self.domain.on_event(&Books::new(writes, &self.books), event)) {
            Ok(()) => Ok(Verdict::Done),
            Err(e) => verdict_of(e, "could not apply the event"),
        }
    }

    fn reply_message(&self, reply: &ReplyMessage, trace: &TraceParent) -> Message {
        let route = Route { exchange: self.topology.replies_exchange(), key: String::new() };
        let body = serde_json::to_vec(reply).expect("replies serialise");
        Message::json(route, reply.order_id.as_str(), "reply", body).with_trace(trace).batchable()
    }
}

impl<D: Domain> Apply for Handler<D> {
    /// Participants take work only from the bus.
    type Job = std::convert::Infallible;

    fn apply_message(&mut self, message: &Received, writes: &Writes<'_>) -> Result<Verdict, ApplyError> {
        match message.from {
            EVENTS => match serde_json::from_slice::<PublicEvent>(&message.body) {
                Ok(event) => self.apply_event(&event, writes),
                Err(e) => Ok(Verdict::Reject(format!("not a public event: {e}"))),
            },
            _ if message.kind.as_deref() == Some(sagaflow_events::topology::kinds::FORGET_SAGAS) => {
                match serde_json::from_slice::<ForgetSagas>(&message.body) {
                    Ok(forget) => self.forget(&forget, writes),
                    Err(e) => Ok(Verdict::Reject(format!("not a ForgetSagas message: {e}"))),
                }
            }
            _ => self.receive_command(&message.body, message.trace(), writes),
        }
    }

    fn apply_job(&mut self, job: Self::Job, _: &Writes<'_>) -> Result<Reply, ApplyError> {
        match job {}
    }

    fn before_commit(&mut self) -> Result<(), ApplyError> {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        self.domain.make_durable().map_err(|e| ApplyError::Retry(e.to_string()))
    }
}

/// What a domain error makes of a message: a store that cannot take it now holds it, a broken
/// store stops the process, and anything else dead-letters it with the reason.
fn verdict_of(e: DomainError, what: &str) -> Result<Verdict, ApplyError> {
    match e {
        DomainError::Unavailable(e) => Err(ApplyError::Retry(e)),
        DomainError::Store(e) => Err(ApplyError::fatal(e)),
        e => Ok(Verdict::Reject(format!("{what}: {e}"))),
    }
}

/// The reply to `command`, echoing its envelope so the orchestrator can match the attempt.
fn reply_to(command: &CommandMessage, answer: Answer) -> ReplyMessage {
    ReplyMessage {
        payment_id: answer.payment_id,
        missing_products: answer.missing_products,
        ..ReplyMessage::answering(command, answer.outcome)
    }
}
