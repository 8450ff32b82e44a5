//! Logging and trace context.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `LOG_FORMAT=json` gives
/// one JSON object per line. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=warn"));
    use std::io::IsTerminal;
    // Colours only for people: a log file or a supervisor's pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_target(false).try_init(),
    };
}

/// A new W3C trace id (32 hex digits).
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A `traceparent` header value for a new span of `trace_id`.
pub fn traceparent(trace_id: &str) -> String {
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace_id}-{span}-01")
}

/// The trace id of a `traceparent` header, if it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace, _span) = (parts.next()?, parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.chars().all(|c| c.is_ascii_hexdigit())).then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_its_trace_id() {
        let trace = new_trace_id();
        let header = traceparent(&trace);
        assert_eq!(header.len(), 55);
        assert_eq!(trace_id_of(&header), Some(trace.as_str()));
        assert_eq!(trace_id_of("garbage"), None);
    }
}
