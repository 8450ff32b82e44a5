//! The settings every program shares. Each is a flag with an environment variable of the same
//! meaning, and `--help` prints them all.

use std::fmt;

use sagaflow_events::Topology;

#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Which broker carries the messages: `rabbitmq` (at AMQP_URL) or `kafka` (at
    /// KAFKA_BROKERS). Every program of one system must use the same.
    #[arg(long, env = "BUS", default_value = "rabbitmq")]
    pub bus: BusKind,
    /// The RabbitMQ broker to use (BUS=rabbitmq).
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: AmqpUrl,
    /// The Kafka brokers to use (BUS=kafka): host:port, comma-separated.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: KafkaBrokers,
    /// Partitions of each topic the system creates on Kafka (BUS=kafka). Messages are keyed by
    /// order id, so each order's messages stay in order within one partition.
    #[arg(long, env = "KAFKA_PARTITIONS", default_value_t = KafkaSettings::PARTITIONS, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub kafka_partitions: u16,
    /// How long a consumer's fetch may wait at the Kafka broker for records (BUS=kafka). Kafka
    /// answers as soon as records arrive, whatever this is; tansu 0.6 sleeps about this long
    /// on every fetch, records or not, so there it bounds what each hop of a saga costs.
    #[arg(long, env = "KAFKA_FETCH_WAIT_MS", default_value_t = KafkaSettings::FETCH_WAIT_MS, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub kafka_fetch_wait_ms: u32,
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
    /// Most inputs per group commit (one flush), counted in items: a delivery that carries a
    /// batch counts its items. A delivery is never split, so a commit may pass it by one.
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
    /// Acknowledgements of messages already made durable wait up to this many milliseconds to
    /// go out together (sooner once half a consumer's prefetch is owed): a quorum queue writes
    /// each ack to its log, so one ack for several deliveries costs the broker one write. A
    /// crash in the wait means only a redelivery, recognised as a duplicate. 0 acknowledges
    /// each commit at once.
    #[arg(long, env = "ACK_DELAY_MS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub ack_delay_ms: u64,
}

/// How long a pipeline's acknowledgements may wait to go out together, and how many may be
/// owed before they go at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckDeferral {
    pub delay: std::time::Duration,
    /// Deliveries owed that send the acks at once, whatever the delay: half the prefetch, so
    /// that a consumer never waits on the delay for room in its window.
    pub most: usize,
}

impl TuningArgs {
    /// When acknowledgements go out: [`Self::ack_delay_ms`], bounded by the prefetch.
    pub fn ack_deferral(&self) -> AckDeferral {
        AckDeferral {
            delay: std::time::Duration::from_millis(self.ack_delay_ms),
            most: (usize::from(self.prefetch) / 2).max(1),
        }
    }

    /// [`Self::events_unbound_recheck_ms`] as a duration.
    pub fn events_unbound_recheck(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.events_unbound_recheck_ms)
    }
}

impl CommonArgs {
    pub fn topology(&self) -> Topology {
        Topology::new(self.namespace.clone())
    }

    /// The broker these settings choose.
    pub fn broker(&self) -> Broker {
        match self.bus {
            BusKind::Rabbitmq => Broker::RabbitMq(self.amqp_url.clone()),
            BusKind::Kafka => Broker::Kafka(KafkaSettings {
                brokers: self.kafka_brokers.clone(),
                partitions: self.kafka_partitions,
                fetch_wait_ms: self.kafka_fetch_wait_ms,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum BusKind {
    Rabbitmq,
    Kafka,
}

/// Where a process's messages go, and how to reach it.
#[derive(Debug, Clone)]
pub enum Broker {
    RabbitMq(AmqpUrl),
    Kafka(KafkaSettings),
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: KafkaBrokers,
    /// Partitions of each topic the system creates.
    pub partitions: u16,
    /// How long a fetch may wait at the broker for records.
    pub fetch_wait_ms: u32,
}

impl KafkaSettings {
    pub const PARTITIONS: u16 = 4;
    pub const FETCH_WAIT_MS: u32 = 20;

    /// `brokers` with the default settings (for tools that only look or delete).
    pub fn at(brokers: KafkaBrokers) -> Self {
        Self { brokers, partitions: Self::PARTITIONS, fetch_wait_ms: Self::FETCH_WAIT_MS }
    }
}

impl fmt::Display for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RabbitMq(url) => write!(f, "{url}"),
            Self::Kafka(k) => write!(f, "kafka://{}", k.brokers),
        }
    }
}

/// Kafka bootstrap servers: one or more `host:port`, comma-separated, each checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaBrokers(String);

impl KafkaBrokers {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for KafkaBrokers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut hosts = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (host, port) = part.rsplit_once(':').ok_or_else(|| format!("{part:?} is not host:port"))?;
            if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(format!("{part:?} does not name a host"));
            }
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{part:?} has no valid port"))?;
            hosts.push(part);
        }
        Ok(Self(hosts.join(",")))
    }
}

impl fmt::Display for KafkaBrokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

    #[test]
    fn kafka_brokers_are_host_port_pairs() {
        let ok: KafkaBrokers = "127.0.0.1:9092, kafka-2:19092".parse().unwrap();
        assert_eq!(ok.as_str(), "127.0.0.1:9092,kafka-2:19092");
        for bad in ["", "host", ":9092", "host:0", "host:port", "host:99999", "a b:1", "x:1,,y:2"] {
            assert!(bad.parse::<KafkaBrokers>().is_err(), "{bad:?}");
        }
    }
}
