//! What every sagaflow process shares, so that the orchestrator and the three services run the
//! same, tested plumbing:
//!
//! - [`config`]: the flags and environment variables every program takes.
//! - [`telemetry`]: logging (`RUST_LOG`, `LOG_FORMAT=json`) and W3C trace ids.
//! - [`shutdown`]: SIGTERM and Ctrl-C as a cancellation token.
//! - [`broker`]: the broker step, and private RabbitMQ nodes for tests and demos.
//! - [`bus`]: the RabbitMQ connection with our own reconnect loop, the topology, consumers.
//! - [`outbox`]: messages committed with state, and the relay that publishes them with confirms.
//! - [`commit`]: group commit: apply a batch, flush once, then acknowledge.
//! - [`metrics`]: a small Prometheus registry.
//! - [`http`]: `/health` and `/metrics`, and serving a router until shutdown.

pub mod broker;
pub mod bus;
pub mod commit;
pub mod config;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod shutdown;
pub mod telemetry;

/// Opens a process's sled database: one place for the settings every sagaflow store uses.
///
/// (`Mode::HighThroughput` was tried here and "measured" faster; sled 0.34 never reads its
/// `mode` setting, so that difference was the machine's noise, which is why the bench numbers
/// in commit messages come from several runs.)
pub fn open_db(path: &std::path::Path) -> sled::Result<sled::Db> {
    sled::Config::new().path(path).open()
}

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
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
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
