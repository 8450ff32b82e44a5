//! The saga core: a pure state machine that decides what a saga does next.
//!
//! Nothing in this crate performs IO, reads a clock, spawns a task or draws a random number from a
//! global source. The shell (the orchestrator runtime) feeds it [`Input`]s together with the current
//! time and executes the [`Effect`]s it returns: it sends commands, arms timers and publishes events.
//! That split lets the property tests in `tests/` drive millions of steps deterministically.
//!
//! The parts:
//! - [`definition`]: a saga definition is data, an ordered list of steps with retry policies.
//! - [`state`]: the state of one saga, and the history entries the shell records for it.
//! - [`input`] and [`effect`]: what goes in and what comes out.
//! - [`machine`]: [`transition`], the only place where a saga changes.
//! - [`backoff`]: retry delays with deterministic, seeded jitter.
//!
//! The core knows nothing about orders: step names, command names and failure reasons are opaque
//! strings chosen by whoever builds the definition.

pub mod backoff;
pub mod definition;
pub mod effect;
pub mod input;
pub mod machine;
pub mod state;
pub mod time;

pub use definition::{Compensation, DefinitionError, RetryPolicy, SagaDefinition, StepDefinition};
pub use effect::{Command, Effect, SagaEvent};
pub use input::{Input, Outcome, Timer, TimerKind};
pub use machine::{transition, Applied};
pub use state::{
    CommandProgress, CommandStatus, HistoryEntry, Ignored, Phase, Saga, Status, StepIndex, StepState,
};
pub use time::{Millis, Timestamp};
