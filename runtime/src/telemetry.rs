//! Logging, and the W3C trace context that lets one order be followed through every process.

use std::fmt;
use std::str::FromStr;

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
