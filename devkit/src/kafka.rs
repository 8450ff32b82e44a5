//! A private Kafka-protocol broker for tests, the chaos run and the bench: tansu, a Rust broker
//! from crates.io, with its SQLite engine (so that topics, records, consumer groups and their
//! offsets survive a restart), on its own port and data folder, bound to 127.0.0.1.
//!
//! `make test` installs tansu once (`scripts/kafka.sh`); a machine that has it skips the
//! build. Nothing here downloads anything.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::broker::free_port;

/// Where `scripts/kafka.sh` installs tansu, unless `TANSU` names another binary.
pub fn tansu() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TANSU") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let installed = home.join("bin").join("tansu");
    installed.exists().then_some(installed)
}

pub struct PrivateKafka {
    pub port: u16,
    binary: PathBuf,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
    /// Delete `dir` when dropped (a temporary node).
    temporary: bool,
}

impl PrivateKafka {
    /// Starts a temporary broker on a free port. `None` when tansu is not installed.
    pub fn start() -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("sagaflow-kafka-{}-{}", std::process::id(), free_port()));
        Self::start_in(dir, true)
    }

    /// Starts a broker keeping its data under `dir`.
    pub fn start_in(dir: PathBuf, temporary: bool) -> Option<Self> {
        let binary = tansu()?;
        let broker = Self { port: free_port(), binary, dir, child: Mutex::new(None), temporary };
        broker.boot();
        Some(broker)
    }

    /// `KAFKA_BROKERS` for the programs.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.lock().expect("not poisoned").as_ref().map(Child::id)
    }

    fn boot(&self) {
        std::fs::create_dir_all(&self.dir).expect("kafka data dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("kafka log file");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(&self.binary)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            // The engine's path is relative to the working folder.
            .current_dir(&self.dir)
            .env_remove("STORAGE_ENGINE")
            .env("RUST_LOG", std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("tansu starts");
        *self.child.lock().expect("not poisoned") = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) =
                self.child.lock().expect("not poisoned").as_mut().and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status} on port {}; its log:\n{}", self.port, self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on port {}; its log:\n{}",
                self.port,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_tail(&self) -> String {
        crate::broker::log_tail(&self.dir.join("tansu.log"), crate::broker::BROKER_LOG_LINES)
    }

    /// Stops the broker; its data stays. With SIGKILL, as a crash would: tansu 0.6 does not
    /// exit on SIGTERM while clients stay connected, and until it does it answers every request
    /// with an error (its storage stopped at the signal). Its SQLite file is as a crash leaves
    /// it, which is what a restart must survive anyway.
    pub fn stop(&self) {
        let Some(mut child) = self.child.lock().expect("not poisoned").take() else { return };
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn restart(&self) {
        self.stop();
        self.boot();
    }
}

impl Drop for PrivateKafka {
    fn drop(&mut self) {
        self.stop();
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
