//! The settings every program shares. Each is a flag with an environment variable of the same
//! meaning, and `--help` prints them all.

use std::fmt;

use sagaflow_events::Topology;

#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The RabbitMQ broker to use.
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: AmqpUrl,
    /// Prefix of every exchange and queue, so several systems can share one broker.
    #[arg(long = "namespace", env = "SAGA_NAMESPACE", default_value = "sagaflow")]
    pub namespace: String,
    /// `text` for people, `json` for one JSON object per line. Filter with RUST_LOG.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// How much work a process takes at once. The same knobs in every process: what the bench
/// tunes.
#[derive(Debug, Clone, clap::Args)]
pub struct TuningArgs {
    /// Unacknowledged messages the broker may hand each consumer at once.
    #[arg(long, env = "PREFETCH", default_value_t = 512)]
    pub prefetch: u16,
    /// Most inputs per group commit (one flush).
    #[arg(long, env = "MAX_BATCH", default_value_t = 1024)]
    pub max_batch: usize,
    /// Messages the relay keeps in flight awaiting publisher confirms.
    #[arg(long, env = "RELAY_WINDOW", default_value_t = 512)]
    pub relay_window: usize,
    /// A public event that no queue is bound to comes back from the broker; for this many
    /// milliseconds afterwards the events with its routing key are not sent at all, then one is
    /// sent again to look. A queue bound to the events exchange gets every event from at most
    /// this long after it was bound. 0 sends every event.
    #[arg(long, env = "EVENTS_UNBOUND_RECHECK_MS", default_value_t = 1000)]
    pub events_unbound_recheck_ms: u64,
}

impl TuningArgs {
    /// [`Self::events_unbound_recheck_ms`] as a duration.
    pub fn events_unbound_recheck(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.events_unbound_recheck_ms)
    }
}

impl CommonArgs {
    pub fn topology(&self) -> Topology {
        Topology::new(self.namespace.clone())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// An AMQP URL whose password never appears in logs or `Debug` output.
#[derive(Clone)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for AmqpUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("amqp://") || s.starts_with("amqps://") {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("{s:?} is not an amqp:// URL"))
        }
    }
}

impl fmt::Display for AmqpUrl {
    /// Shows the URL with its password masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.find("://"), self.0.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let credentials = &self.0[scheme_end + 3..at];
                let user = credentials.split(':').next().unwrap_or("");
                write!(f, "{}{user}:***{}", &self.0[..scheme_end + 3], &self.0[at..])
            }
            _ => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked() {
        let url: AmqpUrl = "amqp://guest:s3cret@127.0.0.1:5672/%2f".parse().unwrap();
        assert_eq!(url.to_string(), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!("http://x".parse::<AmqpUrl>().is_err());
    }
}
