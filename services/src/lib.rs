//! The participants of the order saga. Each is a separate binary with its own sled store; all
//! three run the shared process of the runtime (bus, pipeline, HTTP) with what is written here:
//!
//! - [`participant`]: what a participant does with a command (check it, pass it through the
//!   barrier, apply it to the books, stage the reply, in one transaction), with the
//!   orchestrator's `ForgetSagas`, and with the public events it follows.
//! - [`barrier`]: per (saga, step), what was done: duplicates repeat their first answer, a
//!   compensation without its action is a null compensation, an action after its compensation
//!   is refused, and a late command of a forgotten saga is refused.
//! - [`domain`]: what a participant must provide: an action, its undo, what to forget, a view.
//! - [`payment`], [`inventory`], [`notification`]: the three domains, each with its invariant.
//! - [`service`]: runs one participant until stopped.
//! - [`config`]: the flags every service takes.

pub mod barrier;
pub mod config;
pub mod domain;
pub mod inventory;
pub mod notification;
pub mod participant;
pub mod payment;
pub mod service;

/// Runs a participant on the bus until `stop`.
pub async fn run<D: domain::Domain>(
    domain: D,
    args: config::ServiceArgs,
    default_port: u16,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), service::ServiceError> {
    service::run(domain, args, default_port, stop).await
}
