//! Logging, and the W3C trace context that lets one order be followed through every process.

use std::fmt;
use std::str::FromStr;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// lapin logs every message the broker returns as a warning, with the whole message. The relay
/// publishes public events `mandatory` to learn whether anyone listens ([`crate::bus`]'s
/// `unbound`): a return is the answer it asked for, not a fault, and at a steady rate it would
/// fill the log with order bodies (a customer's id and items among them, as bytes). Kept out
/// unless `RUST_LOG` names this target itself.
const RETURNS_TARGET: &str = "lapin::returned_messages";

/// The filter when `RUST_LOG` is unset or does not parse.
pub const DEFAULT_FILTER: &str = "info,lapin=warn";

/// Installs the global subscriber: `RUST_LOG` filters (see [`filter`]), `LOG_FORMAT=json` gives
/// one JSON object per line. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat) {
    let asked = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = filter(asked.as_deref());
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

/// `RUST_LOG`'s filter (else [`DEFAULT_FILTER`]), with lapin's returned messages kept out
/// unless it names them.
fn filter(asked: Option<&str>) -> EnvFilter {
    let filter =
        asked.and_then(|a| EnvFilter::try_new(a).ok()).unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    if asked.is_some_and(|a| a.contains(RETURNS_TARGET)) {
        return filter;
    }
    filter.add_directive(format!("{RETURNS_TARGET}=error").parse().expect("a valid directive"))
}

/// A W3C `traceparent` (version 00): a trace id shared by everything about one order, and the
/// id of the span that sent a message. Always 55 characters when rendered; a header that does
/// not parse as one is never copied anywhere, a new trace starts instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

/// Why a `traceparent` value was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)")]
pub struct BadTraceParent;

impl TraceParent {
    /// A new trace with a random id.
    pub fn new_trace() -> Self {
        Self { trace_id: uuid::Uuid::new_v4().as_u128().max(1), span_id: new_span_id(), flags: 1 }
    }

    /// The trace whose id is `trace_id` (32 hex digits), with a new span.
    pub fn in_trace(trace_id: &str) -> Result<Self, BadTraceParent> {
        let trace_id = hex_u128(trace_id)?;
        Ok(Self { trace_id, span_id: new_span_id(), flags: 1 })
    }

    /// The same trace, a new span: what a process sends on behalf of a message it received.
    pub fn child(&self) -> Self {
        Self { span_id: new_span_id(), ..*self }
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

fn new_span_id() -> u64 {
    (uuid::Uuid::new_v4().as_u128() as u64).max(1)
}

fn hex_u128(s: &str) -> Result<u128, BadTraceParent> {
    let ok = s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let id = if ok { u128::from_str_radix(s, 16).map_err(|_| BadTraceParent)? } else { 0 };
    // An all-zero trace id is invalid by the specification.
    if id == 0 {
        return Err(BadTraceParent);
    }
    Ok(id)
}

impl FromStr for TraceParent {
    type Err = BadTraceParent;

    /// Parses exactly `00-<trace id>-<span id>-<flags>` in lower-case hex, with non-zero ids.
    fn from_str(s: &str) -> Result<Self, BadTraceParent> {
        if s.len() != 55 {
            return Err(BadTraceParent);
        }
        let mut parts = s.split('-');
        let (Some("00"), Some(trace), Some(span), Some(flags), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadTraceParent);
        };
        let hex = |t: &str| t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if span.len() != 16 || flags.len() != 2 || !hex(span) || !hex(flags) {
            return Err(BadTraceParent);
        }
        let span_id = u64::from_str_radix(span, 16).map_err(|_| BadTraceParent)?;
        if span_id == 0 {
            return Err(BadTraceParent);
        }
        let flags = u8::from_str_radix(flags, 16).map_err(|_| BadTraceParent)?;
        Ok(Self { trace_id: hex_u128(trace)?, span_id, flags })
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Whether lapin's warning about a returned message, and another of its warnings, would be
    /// logged under `RUST_LOG=asked`.
    fn lapin_warnings_logged(asked: Option<&str>) -> (bool, bool) {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(filter(asked));
        tracing::subscriber::with_default(subscriber, || {
            (
                tracing::enabled!(target: "lapin::returned_messages", tracing::Level::WARN),
                tracing::enabled!(target: "lapin::channel", tracing::Level::WARN),
            )
        })
    }

    #[test]
    fn returned_messages_stay_out_of_the_log_unless_asked_for_by_name() {
        for asked in [None, Some("info"), Some("info,lapin=warn"), Some("debug"), Some("not a filter ===")] {
            assert_eq!(lapin_warnings_logged(asked), (false, true), "RUST_LOG={asked:?}");
        }
        assert_eq!(lapin_warnings_logged(Some("info,lapin::returned_messages=warn")), (true, true));
    }

    #[test]
    fn a_traceparent_round_trips_and_children_keep_the_trace() {
        let t = TraceParent::new_trace();
        let text = t.to_string();
        assert_eq!(text.len(), 55);
        assert_eq!(text.parse::<TraceParent>(), Ok(t));
        let child = t.child();
        assert_eq!(child.trace_id(), t.trace_id());
        assert_ne!(child, t);
        let known = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(known.parse::<TraceParent>().unwrap().to_string(), known);
        assert_eq!(
            TraceParent::in_trace("4bf92f3577b34da6a3ce929d0e0e4736").unwrap().trace_id(),
            &known[3..35]
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(bad.parse::<TraceParent>().is_err(), "{bad:?}");
        }
        assert!("0".repeat(131_072).parse::<TraceParent>().is_err());
    }

    proptest! {
        #[test]
        fn whatever_parses_renders_back_to_55_characters(s in ".{0,80}") {
            if let Ok(t) = s.parse::<TraceParent>() {
                prop_assert_eq!(t.to_string(), s);
            }
        }
    }
}
