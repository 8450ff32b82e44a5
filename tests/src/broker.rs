//! A private RabbitMQ node owned by one test, which may stop and start it at will. It never
//! touches the shared broker: own node name, ports, data and log folders, bound to 127.0.0.1.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PrivateBroker {
    pub port: u16,
    dist_port: u16,
    node: String,
    dir: tempfile::TempDir,
}

impl PrivateBroker {
    /// Starts a node on a free port. `None` when rabbitmq-server is not installed.
    pub fn start() -> Option<Self> {
        if Command::new("sh").args(["-c", "command -v rabbitmq-server"]).output().ok()?.stdout.is_empty() {
            return None;
        }
        let port = crate::procs::free_port();
        let dir = tempfile::Builder::new().prefix("sagaflow-broker-").tempdir().ok()?;
        let dist_port = crate::procs::free_port();
        let broker = Self { port, dist_port, node: format!("sagaflow-test-{port}@localhost"), dir };
        broker.boot();
        Some(broker)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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
        std::fs::write(self.path("enabled_plugins"), "[].\n").expect("plugins file");
        // Our own (empty) config file shadows the system one, which may pin a listener to 5672;
        // the listener comes from RABBITMQ_NODE_PORT and RABBITMQ_NODE_IP_ADDRESS.
        std::fs::write(self.path("rabbitmq.conf"), "# private test node\n").expect("config file");
        // As root, the Debian wrapper runs the node as `rabbitmq`: it must own its folders.
        let _ = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(self.dir.path()).status();
        let _ = Command::new("chmod").args(["755"]).arg(self.dir.path()).status();
        let mut start = Command::new("rabbitmq-server");
        start.arg("-detached");
        self.env(&mut start);
        let _ = start.status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut ready = Command::new("rabbitmqctl");
            ready.args(["-n", &self.node, "--timeout", "10", "await_startup"]);
            self.env(&mut ready);
            let up = ready.output().is_ok_and(|o| o.status.success());
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
        let log =
            std::fs::read_to_string(self.path("log").join(format!("{}.log", self.node))).unwrap_or_default();
        log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Stops the node; its data stays, so a restart keeps durable queues and messages.
    pub fn stop(&self) {
        let mut stop = Command::new("rabbitmqctl");
        stop.args(["-n", &self.node, "stop"]);
        self.env(&mut stop);
        let _ = stop.output();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn restart(&self) {
        self.stop();
        self.boot();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
