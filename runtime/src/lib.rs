//! What every sagaflow process shares, so that the orchestrator and the three services run the
//! same, tested plumbing:
//!
//! - [`config`]: the flags and environment variables every program takes.
//! - [`telemetry`]: logging (`RUST_LOG`, `LOG_FORMAT=json`) and W3C trace context.
//! - [`shutdown`]: SIGTERM and Ctrl-C as a cancellation token.
//! - [`db`]: a process's sled store, and the `fdatasync` that makes a flush durable.
//! - [`writes`]: a batch's writes, gathered in memory and committed as one transaction.
//! - [`outbox`]: messages committed with state, and the entries the broker refused.
//! - [`records`]: a batch's entries of an append-only log stored under one key (outbox, feed).
//! - [`bus`]: the broker connection with our own reconnect loop, consumers, the relay.
//! - [`pipeline`]: the one loop: a batch in, applied, made durable, then acked and let out.
//! - [`process`]: the order in which every program starts and stops.
//! - [`watchdog`]: ends a process whose store stops answering, rather than let it hang.
//! - [`health`]: what `/health` says: bus connected, store working.
//! - [`http`]: a hardened HTTP server, JSON errors, the bearer token, common endpoints.
//! - [`metrics`]: a small Prometheus registry.

pub mod bus;
pub mod config;
pub mod db;
pub mod health;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod pipeline;
pub mod process;
pub mod records;
pub mod shutdown;
pub mod telemetry;
pub mod watchdog;
pub mod writes;

/// Milliseconds since the Unix epoch: the one place a sagaflow process reads the wall clock for
/// its state machines.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Formats milliseconds since the epoch as RFC 3339 in UTC, such as `2026-11-25T10:00:00.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(super::rfc3339(1_795_564_800_000), "2026-11-25T00:00:00.000Z");
    }
}
