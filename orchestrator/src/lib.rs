//! The orchestrator: it turns orders into sagas and runs them.
//!
//! - [`order_saga`]: the order saga's definition (payment, inventory, notification) and the
//!   translation of the core's abstract commands into wire commands.

pub mod order_saga;
