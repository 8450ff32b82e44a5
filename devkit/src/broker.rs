//! The broker step, and a private RabbitMQ node that its owner (a test, `sagactl up`) may stop
//! and start at will. A private node never touches the shared broker: own node name, ports,
//! data and log folders, bound to 127.0.0.1.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PrivateBroker {
    pub port: u16,
    dist_port: u16,
    /// Where the node serves its Prometheus metrics, if asked to (the bench counts the
    /// messages the broker itself saw there).
    metrics_port: Option<u16>,
    node: String,
    dir: PathBuf,
    /// Delete `dir` when dropped (a temporary node).
    temporary: bool,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The last `lines` lines of a log file, for a failure message.
pub fn log_tail(log: &std::path::Path, lines: usize) -> String {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines().rev().take(lines).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// How much of a broker's log a failure message shows.
pub(crate) const BROKER_LOG_LINES: usize = 30;

/// True when something accepts TCP connections at `host:port` within a second.
pub fn answers(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(mut addrs) = (host, port).to_socket_addrs() else { return false };
    addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
}

/// Host and port of an amqp:// URL.
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split("://").nth(1)?;
    let rest = rest.rsplit('@').next()?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), 5672)),
    }
}

/// Where the broker came from, and the private node if we started one (stopped on drop).
pub struct Broker {
    /// The RabbitMQ broker's URL (for a system on Kafka, the programs' default, unused).
    pub url: String,
    pub private: Option<PrivateBroker>,
    /// Set when the system runs on Kafka.
    pub kafka: Option<Kafka>,
}

/// A Kafka broker for the system, and the private one if we started it (stopped on drop).
pub struct Kafka {
    pub brokers: String,
    pub private: Option<crate::kafka::PrivateKafka>,
}

const SHARED_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

impl Broker {
    pub fn amqp(url: String, private: Option<PrivateBroker>) -> Self {
        Self { url, private, kafka: None }
    }

    pub fn kafka(kafka: Kafka) -> Self {
        Self { url: SHARED_URL.into(), private: None, kafka: Some(kafka) }
    }

    /// This broker as the programs' own settings describe it.
    pub fn runtime_broker(&self) -> Result<sagaflow_runtime::config::Broker, String> {
        use sagaflow_runtime::config::{Broker as Runtime, KafkaSettings};
        Ok(match &self.kafka {
            Some(kafka) => Runtime::Kafka(KafkaSettings::at(kafka.brokers.parse()?)),
            None => Runtime::RabbitMq(self.url.parse()?),
        })
    }

    /// The settings that point a program at this broker.
    pub fn program_env(&self) -> Vec<(&'static str, String)> {
        match &self.kafka {
            Some(kafka) => vec![("BUS", "kafka".into()), ("KAFKA_BROKERS", kafka.brokers.clone())],
            None => vec![("AMQP_URL", self.url.clone())],
        }
    }

    /// One line for people: which broker, and whether it was started for this run.
    pub fn describe(&self) -> String {
        match (&self.kafka, &self.private) {
            (Some(k), _) if k.private.is_some() => format!("a private tansu (Kafka) broker at {}", k.brokers),
            (Some(k), _) => format!("the Kafka brokers at {}", k.brokers),
            (None, Some(_)) => "a private RabbitMQ node started for this run".into(),
            (None, None) => "the RabbitMQ broker found".into(),
        }
    }
}

/// The broker step for `bus`: [`find_or_start`] for RabbitMQ; for Kafka, `kafka_brokers` if
/// given (and answering), else a private tansu broker under `dir`.
pub fn find_or_start_bus(
    bus: sagaflow_runtime::config::BusKind,
    kafka_brokers: Option<&sagaflow_runtime::config::KafkaBrokers>,
    dir: &std::path::Path,
) -> Result<Broker, String> {
    use sagaflow_runtime::config::BusKind;
    match bus {
        BusKind::Rabbitmq => find_or_start(dir),
        BusKind::Kafka => {
            if let Some(parsed) = kafka_brokers {
                let brokers = parsed.to_string();
                let first = parsed.as_str().split(',').next().unwrap_or_default().to_owned();
                let (host, port) = first.rsplit_once(':').unwrap_or((&first, "9092"));
                return if answers(host, port.parse().unwrap_or(9092)) {
                    Ok(Broker::kafka(Kafka { brokers, private: None }))
                } else {
                    Err(format!("nothing answers on the Kafka broker {first}"))
                };
            }
            match crate::kafka::PrivateKafka::start_in(dir.to_path_buf(), false) {
                Some(node) => Ok(Broker::kafka(Kafka { brokers: node.brokers(), private: Some(node) })),
                None => Err("No Kafka broker: set KAFKA_BROKERS to one, or build the private one with scripts/kafka.sh and run this again.".into()),
            }
        }
    }
}

/// The contract's broker step: `AMQP_URL` if set; else a broker on 127.0.0.1:5672; else a
/// private node of the installed rabbitmq-server under `dir`; else, as root, install
/// rabbitmq-server and start that; else an error that says in one line what to do.
pub fn find_or_start(dir: &std::path::Path) -> Result<Broker, String> {
    if let Ok(url) = std::env::var("AMQP_URL") {
        let (host, port) =
            host_port(&url).ok_or_else(|| format!("AMQP_URL {url:?} is not an amqp:// URL"))?;
        return if answers(&host, port) {
            Ok(Broker::amqp(url, None))
        } else {
            Err(format!("AMQP_URL is set, but nothing answers on {host}:{port}"))
        };
    }
    if answers("127.0.0.1", 5672) {
        return Ok(Broker::amqp(SHARED_URL.into(), None));
    }
    if !installed() && is_root() {
        eprintln!("no broker found; installing rabbitmq-server with apt-get");
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "rabbitmq-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
        if answers("127.0.0.1", 5672) {
            return Ok(Broker::amqp(SHARED_URL.into(), None));
        }
    }
    match PrivateBroker::start_in(dir.to_path_buf(), false) {
        Some(node) => Ok(Broker::amqp(node.url(), Some(node))),
        None => Err("No RabbitMQ broker: set AMQP_URL to one, or install RabbitMQ (sudo apt-get install rabbitmq-server) and run this again.".into()),
    }
}

fn installed() -> bool {
    Command::new("sh").args(["-c", "command -v rabbitmq-server"]).output().is_ok_and(|o| !o.stdout.is_empty())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PrivateBroker {
    /// Starts a temporary node on a free port. `None` when rabbitmq-server is not installed.
    pub fn start() -> Option<Self> {
        let dir =
            std::env::temp_dir().join(format!("sagaflow-broker-{}-{}", std::process::id(), free_port()));
        Self::start_in(dir, true)
    }

    /// Starts a node keeping its data under `dir`.
    pub fn start_in(dir: PathBuf, temporary: bool) -> Option<Self> {
        Self::start_node(dir, temporary, None)
    }

    /// Starts a node under `dir` that also serves Prometheus metrics on 127.0.0.1.
    pub fn start_with_metrics(dir: PathBuf) -> Option<Self> {
        Self::start_node(dir, false, Some(free_port()))
    }

    fn start_node(dir: PathBuf, temporary: bool, metrics_port: Option<u16>) -> Option<Self> {
        if !installed() {
            return None;
        }
        let port = free_port();
        let dist_port = free_port();
        let node = format!("sagaflow-{port}@localhost");
        let broker = Self { port, dist_port, metrics_port, node, dir, temporary };
        broker.boot();
        Some(broker)
    }

    /// The process id of the node's Erlang VM, from its pid file.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.path("node.pid")).ok()?.trim().parse().ok()
    }

    /// The node's Prometheus endpoint, if it serves one.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_port.map(|port| format!("http://127.0.0.1:{port}/metrics"))
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The Erlang node name, which also appears in its VM's command line.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn env(&self, command: &mut Command) {
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.path("log"))
            .env("RABBITMQ_PID_FILE", self.path("node.pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.path("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq.conf"));
    }

    fn boot(&self) {
        std::fs::create_dir_all(self.path("mnesia")).expect("mnesia dir");
        std::fs::create_dir_all(self.path("log")).expect("log dir");
        // Our own config file shadows the system one, which may pin a listener to 5672; the
        // listener comes from RABBITMQ_NODE_PORT and RABBITMQ_NODE_IP_ADDRESS.
        let (plugins, config) = match self.metrics_port {
            Some(port) => (
                "[rabbitmq_prometheus].\n".to_owned(),
                format!("prometheus.tcp.port = {port}\nprometheus.tcp.ip = 127.0.0.1\n"),
            ),
            None => ("[].\n".to_owned(), "# private test node\n".to_owned()),
        };
        std::fs::write(self.path("enabled_plugins"), plugins).expect("plugins file");
        std::fs::write(self.path("rabbitmq.conf"), config).expect("config file");
        // As root, the Debian wrapper runs the node as `rabbitmq`: it must own its folders.
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(&self.dir).status();
        let _ = Command::new("chmod").args(["755"]).arg(&self.dir).status();
        let mut start = Command::new("rabbitmq-server");
        start.arg("-detached");
        self.env(&mut start);
        let _ = start.status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = self.ctl(&["--timeout", "10", "await_startup"]);
            if up && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if Instant::now() > deadline {
                panic!("private broker on port {} did not start; its log:\n{}", self.port, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn log_tail(&self) -> String {
        log_tail(&self.path("log").join(format!("{}.log", self.node)), BROKER_LOG_LINES)
    }

    /// Stops the node; its data stays, so a restart keeps durable queues and messages.
    pub fn stop(&self) {
        self.ctl(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `rabbitmqctl` against this node; true when it succeeded.
    pub fn ctl(&self, args: &[&str]) -> bool {
        let mut ctl = Command::new("rabbitmqctl");
        ctl.args(["-n", &self.node]).args(args);
        self.env(&mut ctl);
        ctl.output().is_ok_and(|o| o.status.success())
    }

    pub fn restart(&self) {
        self.stop();
        self.boot();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- the test failed; the end of private broker {}'s log:\n{}",
                self.node,
                self.log_tail()
            );
        }
        self.stop();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
