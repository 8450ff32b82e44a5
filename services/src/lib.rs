//! The participants of the order saga. Each is a separate binary with its own sled store; all
//! three run the same loop, written once here:
//!
//! - [`participant`]: consume a command, pass it through the barrier, apply it to the domain and
//!   stage the reply in the outbox, in one sled transaction; group-commit; then acknowledge and
//!   let the relay publish the replies. Also HTTP, shutdown, and the simulated slow or flaky
//!   dependency (`--latency-ms`, `--fail-rate`).
//! - [`barrier`]: per (saga, step), what was done: duplicates repeat their first answer, a
//!   compensation without its action is a null compensation, an action after its compensation
//!   is refused.
//! - [`domain`]: what a participant must provide: an action, its undo, and a read-only view.
//! - [`payment`], [`inventory`], [`notification`]: the three domains.
//! - [`config`]: the flags every service takes.

pub mod barrier;
pub mod config;
pub mod domain;
pub mod inventory;
pub mod notification;
pub mod participant;
pub mod payment;
