//! The barrier, after DTM's sub-transaction barrier: one record per (saga, step) that makes a
//! participant safe under any delivery order.
//!
//! - The same action or compensation again changes nothing and repeats the first answer.
//! - A compensation for an action that never arrived is recorded and answered as a success: a
//!   "null compensation".
//! - An action that arrives after its own compensation is refused and changes nothing: no
//!   "hanging" (a late charge after its refund never takes money).
//!
//! Records go when the orchestrator says their saga is gone (`ForgetSagas`). A command that
//! arrives afterwards finds no record, and is refused if it was sent before the forgotten
//! sagas ended: it can only be a late duplicate of one of them ([`expired`]).

use sagaflow_events::{PaymentId, ProductId, ReplyOutcome};
use serde::{Deserialize, Serialize};

/// What a participant did for one (saga, step).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BarrierRecord {
    /// The answer to the action, once it was decided.
    pub action: Option<Answer>,
    /// Set once the compensation ran (or ran as a null compensation).
    pub compensation: Option<Answer>,
    /// When a command last changed the record (ms since the epoch, this participant's clock).
    #[serde(default)]
    pub touched_at: u64,
}

/// A recorded answer, repeated for every duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub outcome: ReplyOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<PaymentId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_products: Vec<ProductId>,
}

impl Answer {
    pub fn success() -> Self {
        Self { outcome: ReplyOutcome::Succeeded, payment_id: None, missing_products: Vec::new() }
    }

    pub fn refused(reason: &str) -> Self {
        Self {
            outcome: ReplyOutcome::Failed { reason: reason.into() },
            payment_id: None,
            missing_products: Vec::new(),
        }
    }
}

/// What to do with a command, given the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Seen before: answer as the first time, change nothing.
    Repeat(Answer),
    /// An action after its compensation: refuse, change nothing.
    RefuseHanging,
    /// Run the action.
    Act,
    /// Run the compensation; `action_happened` says whether there is anything to undo.
    Undo { action_happened: bool },
}

impl BarrierRecord {
    pub fn decide_action(&self) -> Decision {
        if self.compensation.is_some() {
            Decision::RefuseHanging
        } else if let Some(answer) = &self.action {
            Decision::Repeat(answer.clone())
        } else {
            Decision::Act
        }
    }

    pub fn decide_compensation(&self) -> Decision {
        match (&self.compensation, &self.action) {
            (Some(answer), _) => Decision::Repeat(answer.clone()),
            (None, Some(a)) => Decision::Undo { action_happened: a.outcome == ReplyOutcome::Succeeded },
            (None, None) => Decision::Undo { action_happened: false },
        }
    }

    /// True for a record no command has written yet.
    pub fn is_new(&self) -> bool {
        self.action.is_none() && self.compensation.is_none()
    }
}

/// True when a command that finds no record was sent before sagas this participant forgot had
/// ended: it belongs to one of them, and acting on it would act twice.
pub fn expired(sent_at: u64, forgotten_before: u64) -> bool {
    sent_at < forgotten_before
}

/// The reason given when an action comes after its compensation.
pub const HANGING_REASON: &str = sagaflow_events::reply::reasons::ALREADY_COMPENSATED;
