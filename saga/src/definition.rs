//! A saga definition is data: an ordered list of steps, each with an action, an optional
//! compensation and retry policies.
//!
//! Definitions are validated once, when built, so that the state machine can trust them.

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// How one command (an action or a compensation) is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// How long to wait for a reply to one attempt before counting it as failed.
    pub attempt_timeout: Millis,
    /// Attempts before giving up; `None` retries for ever. Steps without a compensation are
    /// always retried for ever, whatever this says, because there is no way back from them.
    pub max_attempts: Option<u32>,
    /// The wait after the first failed attempt; it doubles per attempt, up to `backoff_max`.
    pub backoff_initial: Millis,
    /// The longest wait between two attempts.
    pub backoff_max: Millis,
}

/// The compensation of a step: the command that undoes its action, and how it is retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Compensation {
    pub command: String,
    pub retry: RetryPolicy,
}

/// One step of a saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepDefinition {
    /// The step's name, unique within the definition (for example `payment`).
    pub name: String,
    /// The command that performs the step (for example `chargePayment`).
    pub action: String,
    pub retry: RetryPolicy,
    /// `None` makes the step a point of no return: once its action is sent the saga can only go
    /// forward, so it is retried until it succeeds and cancel is refused.
    pub compensation: Option<Compensation>,
}

/// A validated, ordered list of steps.
///
/// Steps with a compensation come first and steps without one last (compensable steps, then the
/// point of no return, then steps that are retried until they succeed). Any other order could
/// leave a saga where a later step fails after an earlier effect that can never be undone, and
/// no honest end state would exist for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<StepDefinition>", into = "Vec<StepDefinition>")]
pub struct SagaDefinition {
    steps: Vec<StepDefinition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionError {
    NoSteps,
    TooManySteps(usize),
    DuplicateStep(String),
    ZeroAttempts(String),
    CompensableAfterPointOfNoReturn { step: String, after: String },
}

impl std::fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoSteps => write!(f, "a saga needs at least one step"),
            Self::TooManySteps(n) => write!(f, "a saga has at most {MAX_STEPS} steps, not {n}"),
            Self::DuplicateStep(s) => write!(f, "step `{s}` appears twice"),
            Self::ZeroAttempts(s) => write!(f, "step `{s}` allows zero attempts"),
            Self::CompensableAfterPointOfNoReturn { step, after } => write!(
                f,
                "step `{step}` has a compensation but comes after `{after}`, which has none; \
                 steps without a compensation must come last"
            ),
        }
    }
}

impl std::error::Error for DefinitionError {}

/// A generous bound that keeps step indices small and histories short.
pub const MAX_STEPS: usize = 64;

impl SagaDefinition {
    pub fn new(steps: Vec<StepDefinition>) -> Result<Self, DefinitionError> {
        if steps.is_empty() {
            return Err(DefinitionError::NoSteps);
        }
        if steps.len() > MAX_STEPS {
            return Err(DefinitionError::TooManySteps(steps.len()));
        }
        let mut point_of_no_return: Option<&str> = None;
        for (i, step) in steps.iter().enumerate() {
            if steps[..i].iter().any(|s| s.name == step.name) {
                return Err(DefinitionError::DuplicateStep(step.name.clone()));
            }
            let zero = step.retry.max_attempts == Some(0)
                || step.compensation.as_ref().is_some_and(|c| c.retry.max_attempts == Some(0));
            if zero {
                return Err(DefinitionError::ZeroAttempts(step.name.clone()));
            }
            match (&step.compensation, point_of_no_return) {
                (Some(_), Some(after)) => {
                    return Err(DefinitionError::CompensableAfterPointOfNoReturn {
                        step: step.name.clone(),
                        after: after.to_owned(),
                    })
                }
                (None, None) => point_of_no_return = Some(&step.name),
                _ => {}
            }
        }
        Ok(Self { steps })
    }

    pub fn steps(&self) -> &[StepDefinition] {
        &self.steps
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Always false: a definition has at least one step. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn step(&self, index: u32) -> Option<&StepDefinition> {
        self.steps.get(index as usize)
    }

    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.steps.iter().position(|s| s.name == name).map(|i| i as u32)
    }

    /// The first step without a compensation, if any: sending its action is the point of no return.
    pub fn point_of_no_return(&self) -> Option<u32> {
        self.steps.iter().position(|s| s.compensation.is_none()).map(|i| i as u32)
    }

    /// A short, stable fingerprint of the definition. Sagas record the fingerprint they were
    /// started with, so that a saga in flight keeps its definition when the configuration changes.
    pub fn fingerprint(&self) -> String {
        // FNV-1a over a canonical rendering: stable across builds, unlike `DefaultHasher`.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in format!("{:?}", self.steps).bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

impl TryFrom<Vec<StepDefinition>> for SagaDefinition {
    type Error = DefinitionError;
    fn try_from(steps: Vec<StepDefinition>) -> Result<Self, Self::Error> {
        Self::new(steps)
    }
}

impl From<SagaDefinition> for Vec<StepDefinition> {
    fn from(d: SagaDefinition) -> Self {
        d.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: Millis(100),
            max_attempts: Some(3),
            backoff_initial: Millis(10),
            backoff_max: Millis(100),
        }
    }

    fn step(name: &str, compensable: bool) -> StepDefinition {
        StepDefinition {
            name: name.into(),
            action: format!("do_{name}"),
            retry: policy(),
            compensation: compensable
                .then(|| Compensation { command: format!("undo_{name}"), retry: policy() }),
        }
    }

    #[test]
    fn compensable_steps_must_come_first() {
        assert!(SagaDefinition::new(vec![step("a", true), step("b", false), step("c", false)]).is_ok());
        assert_eq!(
            SagaDefinition::new(vec![step("a", true), step("n", false), step("b", true)]),
            Err(DefinitionError::CompensableAfterPointOfNoReturn { step: "b".into(), after: "n".into() })
        );
    }

    #[test]
    fn rejects_empty_duplicate_and_zero_attempts() {
        assert_eq!(SagaDefinition::new(vec![]), Err(DefinitionError::NoSteps));
        assert_eq!(
            SagaDefinition::new(vec![step("a", true), step("a", true)]),
            Err(DefinitionError::DuplicateStep("a".into()))
        );
        let mut zero = step("z", true);
        zero.retry.max_attempts = Some(0);
        assert_eq!(SagaDefinition::new(vec![zero]), Err(DefinitionError::ZeroAttempts("z".into())));
    }

    #[test]
    fn fingerprint_follows_the_steps() {
        let ab = SagaDefinition::new(vec![step("a", true), step("b", true)]).unwrap();
        let ba = SagaDefinition::new(vec![step("b", true), step("a", true)]).unwrap();
        assert_eq!(ab.fingerprint(), ab.clone().fingerprint());
        assert_ne!(ab.fingerprint(), ba.fingerprint());
    }

    #[test]
    fn serde_validates_too() {
        let json = serde_json::to_string(&vec![step("a", false), step("b", true)]).unwrap();
        assert!(serde_json::from_str::<SagaDefinition>(&json).is_err());
    }
}
