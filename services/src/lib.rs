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
//! - [`rest_chain`]: the same domains as hops of a synchronous REST chain, for the bench only.

pub mod barrier;
pub mod config;
pub mod domain;
pub mod inventory;
pub mod notification;
pub mod participant;
pub mod payment;
pub mod rest_chain;

/// Runs a participant in the mode its flags ask for: on the bus, as a saga participant, or as a
/// hop of the REST chain that `sagactl bench` compares with.
pub async fn run<D: domain::Domain>(
    domain: D,
    args: config::ServiceArgs,
    default_port: u16,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    if args.rest_chain {
        rest_chain::run(domain, args, default_port, stop).await
    } else {
        participant::run(domain, args, default_port, stop).await
    }
}
