//! The real binaries, run as child processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `cargo build` put the binaries of this workspace.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub use sagaflow_runtime::broker::free_port;

/// One running program. Killed when dropped.
pub struct Program {
    pub name: String,
    pub http: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Program {
    /// Starts `name` with `SAGA_NAMESPACE`, `DATA_DIR`, `HTTP_ADDR` and `AMQP_URL` set, plus `env`.
    /// The program picks its own HTTP port (port 0) and keeps it across restarts, so tests
    /// running in parallel never race for one.
    pub fn start(
        name: &str,
        namespace: &str,
        amqp_url: &str,
        data_dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let mut all = vec![
            ("SAGA_NAMESPACE".to_owned(), namespace.to_owned()),
            ("AMQP_URL".to_owned(), amqp_url.to_owned()),
            ("DATA_DIR".to_owned(), data_dir.display().to_string()),
            ("HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("RUST_LOG".to_owned(), std::env::var("TEST_LOG").unwrap_or_else(|_| "info,lapin=warn".into())),
        ];
        all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let log = data_dir.with_extension(format!("{name}.log"));
        let mut program =
            Self { name: name.to_owned(), http: String::new(), data_dir, log, env: all, child: None };
        program.spawn();
        let addr = program.bound_address(Duration::from_secs(30));
        program.http = format!("http://{addr}");
        for (key, value) in &mut program.env {
            if key == "HTTP_ADDR" {
                *value = addr.clone();
            }
        }
        program
    }

    /// Reads the address the program bound from its log ("HTTP listening addr=...").
    fn bound_address(&self, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let log = self.log_text();
            if let Some(addr) = log
                .lines()
                .filter(|l| l.contains("HTTP listening"))
                .filter_map(|l| l.split("addr=").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .next_back()
            {
                return addr.to_owned();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not start listening; its log:\n{log}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.data_dir).expect("data dir");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(binary(&self.name))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name));
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the program again with the same settings, port and data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits until `GET /health` answers 200.
    pub async fn wait_healthy(&self, timeout: Duration) {
        let url = format!("{}/health", self.http);
        let client = reqwest::Client::new();
        crate::wait::until(&format!("{} to be healthy", self.name), timeout, || {
            let request = client.get(&url).send();
            async move { request.await.ok().filter(|r| r.status().is_success()).map(|_| ()) }
        })
        .await;
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
    }
}
