//! The state of one saga. It is plain data: serialisable, comparable, and rebuilt exactly by
//! replaying the inputs that moved it ([`Saga::replay`]).
//!
//! The fields are private to this crate: a saga changes only in [`crate::machine`], and the
//! compiler, not a convention, keeps it that way. Everyone else reads through the getters.
//!
//! The history is not part of the state. The shell records each input as a [`HistoryEntry`]
//! under keys of its own, so that a saga's size, and what one more input costs, do not grow
//! with its past.

use serde::{Deserialize, Serialize};

use crate::definition::SagaDefinition;
use crate::input::{Input, Timer};
use crate::time::Timestamp;

/// The position of a step in its definition, counted from 0.
pub type StepIndex = u32;

/// Which of a step's two commands: the action, or the compensation that undoes it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum Phase {
    Action,
    Compensation,
}

/// Where the saga as a whole stands. The names are those of the HTTP API.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Status {
    /// Created but not yet given [`Input::Start`]. The orchestrator starts every saga in the same
    /// transaction that creates it, so the API never shows this state.
    NotStarted,
    /// Steps are going forward.
    Running,
    /// A step failed, ran out of attempts, or the saga was cancelled: compensations run.
    Compensating,
    /// Every step succeeded. Terminal.
    Completed,
    /// Every effect that may have happened was undone. Terminal.
    Compensated,
    /// A command kept failing past its retry limit and no automatic way forward is left. Waits for
    /// an operator's [`Input::Retry`].
    Stuck,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Compensated)
    }
}

/// What became of one command (an action or a compensation) of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "state", rename_all = "camelCase")]
#[strum(serialize_all = "snake_case")]
pub enum CommandStatus {
    /// Never sent.
    Idle,
    /// Attempt number `attempts` was sent; its reply is awaited until the timer fires.
    Waiting,
    /// The last attempt failed or timed out; the next one goes out when the backoff timer fires.
    BackingOff,
    Succeeded,
    /// The participant answered with a business failure: the command definitely had no effect.
    Failed {
        reason: String,
    },
    /// Every attempt timed out or failed: the outcome is unknown.
    Exhausted,
    /// The action was in flight when the saga turned to compensation; its outcome is unknown and
    /// no longer awaited, so it is compensated as if it had happened.
    Abandoned,
}

/// The progress of one command of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandProgress {
    pub(crate) status: CommandStatus,
    /// Attempts sent so far, over the saga's whole life.
    pub(crate) attempts: u32,
    /// Attempts that were sent before the current retry budget began. An operator's retry
    /// starts a fresh budget without forgetting how many attempts were made.
    pub(crate) budget_start: u32,
    /// The last transient failure or timeout, for operators.
    pub(crate) last_error: Option<String>,
}

impl CommandProgress {
    fn idle() -> Self {
        Self { status: CommandStatus::Idle, attempts: 0, budget_start: 0, last_error: None }
    }

    pub fn status(&self) -> &CommandStatus {
        &self.status
    }

    /// Attempts sent so far, over the saga's whole life.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last transient failure or timeout, for operators.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// True while a reply to the latest attempt is still welcome.
    pub fn is_pending(&self) -> bool {
        matches!(self.status, CommandStatus::Waiting | CommandStatus::BackingOff)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    pub(crate) action: CommandProgress,
    pub(crate) compensation: CommandProgress,
}

impl StepState {
    pub fn action(&self) -> &CommandProgress {
        &self.action
    }

    pub fn compensation(&self) -> &CommandProgress {
        &self.compensation
    }

    pub fn progress(&self, phase: Phase) -> &CommandProgress {
        match phase {
            Phase::Action => &self.action,
            Phase::Compensation => &self.compensation,
        }
    }

    pub(crate) fn progress_mut(&mut self, phase: Phase) -> &mut CommandProgress {
        match phase {
            Phase::Action => &mut self.action,
            Phase::Compensation => &mut self.compensation,
        }
    }

    /// True when the action may have taken effect: it was sent and was not definitely refused.
    pub fn action_may_have_happened(&self) -> bool {
        self.action.attempts > 0 && !matches!(self.action.status, CommandStatus::Failed { .. })
    }
}

/// Why an input was recorded but did not move the saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Ignored {
    /// The saga was built from another definition than the one given.
    DefinitionMismatch,
    NotStarted,
    AlreadyStarted,
    /// The saga is terminal.
    Finished,
    UnknownStep,
    /// A reply for a command that is not awaited now: a duplicate, or a step that is not current.
    NotAwaited,
    /// A reply for an attempt other than the latest one.
    StaleAttempt,
    /// A timer other than the one armed now.
    StaleTimer,
    /// A timer fired before its time.
    NotDue,
    /// Cancel after a step without compensation was sent.
    PastPointOfNoReturn,
    AlreadyCompensating,
    NotStuck,
}

/// One input as it was applied, with its time and whether it was ignored. The shell stores
/// these; [`Saga::replay`] rebuilds a saga from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub input: Input,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<Ignored>,
}

/// One saga: where it stands and what each step did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saga {
    /// The saga's id; part of every idempotency key. Unique per saga, so an order id placed
    /// again after retention is a new saga that participants do not confuse with the old one.
    pub(crate) id: String,
    /// The seed of the retry jitter, chosen when the saga is created so that replay is exact.
    pub(crate) seed: u64,
    pub(crate) status: Status,
    /// Why the saga compensates: the failing step's reason, `timed_out`, or the cancel's reason.
    pub(crate) reason: Option<String>,
    /// One entry per step of the definition, in order.
    pub(crate) steps: Vec<StepState>,
    /// The one timer the saga waits on, if any. A saga has at most one command in flight, so it
    /// needs at most one timer; the shell keeps exactly this one armed and forgets older ones.
    pub(crate) timer: Option<(Timer, Timestamp)>,
}

impl Saga {
    /// A saga that has not started yet. Give it [`Input::Start`] to begin.
    pub fn new(id: impl Into<String>, definition: &SagaDefinition, seed: u64) -> Self {
        let steps = (0..definition.len())
            .map(|_| StepState { action: CommandProgress::idle(), compensation: CommandProgress::idle() })
            .collect();
        Self { id: id.into(), seed, status: Status::NotStarted, reason: None, steps, timer: None }
    }

    /// Rebuilds a saga from the inputs it was given. Equal to the live saga that lived them,
    /// with or without the ignored ones, since an ignored input changes nothing.
    pub fn replay<'a>(
        id: impl Into<String>,
        definition: &SagaDefinition,
        seed: u64,
        history: impl IntoIterator<Item = &'a HistoryEntry>,
    ) -> Self {
        let mut saga = Self::new(id, definition, seed);
        for entry in history {
            saga.apply(definition, &entry.input, entry.at);
        }
        saga
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Why the saga compensates, once it does.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub fn steps(&self) -> &[StepState] {
        &self.steps
    }

    /// The timer the saga waits on, with its due time.
    pub fn timer(&self) -> Option<(Timer, Timestamp)> {
        self.timer
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// True once the action of a step without compensation has been sent: from then on the saga
    /// can only go forward.
    pub fn past_point_of_no_return(&self, definition: &SagaDefinition) -> bool {
        definition
            .point_of_no_return()
            .and_then(|p| self.steps.get(p as usize))
            .is_some_and(|s| s.action.attempts > 0)
    }

    /// True when [`Input::Cancel`] would start compensation now.
    pub fn can_cancel(&self, definition: &SagaDefinition) -> bool {
        match self.status {
            Status::NotStarted => true,
            Status::Running => !self.past_point_of_no_return(definition),
            _ => false,
        }
    }
}
