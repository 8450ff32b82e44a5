//! What the shell must do after a transition. Effects are data; the core never performs them.

use serde::{Deserialize, Serialize};

use crate::input::Timer;
use crate::state::{Phase, Status, StepIndex};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Effect {
    /// Send a command to the participant that owns the step.
    Send { command: Command },
    /// Make sure `timer` fires at `at`. It replaces any timer the saga armed before.
    ArmTimer { timer: Timer, at: Timestamp },
    /// Tell the world what happened.
    Publish { event: SagaEvent },
    /// The saga reached a terminal state.
    Finished { status: Status },
}

/// A command for a participant, as the core sees it: which step, which phase, which attempt.
/// The shell turns it into a wire message with the business payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub step: StepIndex,
    pub step_name: String,
    pub phase: Phase,
    /// The command's name from the definition, such as `chargePayment`.
    pub command: String,
    pub attempt: u32,
    /// The same for every attempt of one action, different for its compensation. Participants
    /// use it to apply each command at most once.
    pub idempotency_key: String,
}

/// Something that happened to a saga, worth publishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum SagaEvent {
    Started,
    StepSucceeded { step: StepIndex },
    StepFailed { step: StepIndex, reason: String },
    CompensationStarted { reason: String },
    StepCompensated { step: StepIndex },
    Completed,
    Compensated { reason: String },
    Stuck { step: StepIndex, phase: Phase },
    Resumed,
}
