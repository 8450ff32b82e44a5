//! What can happen to a saga.

use serde::{Deserialize, Serialize};

use crate::state::{Phase, StepIndex};

/// An input to the state machine. The shell records it in the saga's history; one that was
/// ignored may be recorded or only counted, since it changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Input {
    /// Begin the first step.
    Start,
    /// A participant answered attempt `attempt` of a step's action or compensation.
    #[serde(rename_all = "camelCase")]
    Reply { step: StepIndex, phase: Phase, attempt: u32, outcome: Outcome },
    /// A timer the saga armed has come due.
    TimerFired { timer: Timer },
    /// Stop going forward and undo what was done, unless the saga is past its point of no return.
    Cancel { reason: String },
    /// An operator asks a stuck saga to try again.
    Retry,
}

/// A participant's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Outcome {
    /// The command took effect (or had taken effect before, for a repeated command).
    Success,
    /// A business refusal, such as a declined payment: the command had no effect, and asking
    /// again would get the same answer.
    Failure { reason: String },
    /// The participant could not do it now (a dependency is down); asking again may succeed.
    /// Counts as a failed attempt.
    Transient { reason: String },
}

/// Why a timer was armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TimerKind {
    /// The reply to an attempt is overdue.
    AttemptTimeout,
    /// The wait between a failed attempt and the next is over.
    Backoff,
}

/// A timer names the attempt it belongs to, so a timer from an earlier attempt is recognised as
/// stale and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    pub step: StepIndex,
    pub phase: Phase,
    pub attempt: u32,
    pub kind: TimerKind,
}
