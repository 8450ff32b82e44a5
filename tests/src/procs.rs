//! The real binaries, run as child processes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where `cargo build` put the binaries of this workspace, or `SAGAFLOW_BIN_DIR` (to run the
/// tests against other binaries, such as an older commit's, to see that a test fails there).
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("SAGAFLOW_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join(if cfg!(debug_assertions) { "debug" } else { "release" })
    });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (make test does)",
        path.display()
    );
    path
}

pub use sagaflow_devkit::broker::free_port;

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
    /// The test picks the HTTP port (a free one) and keeps it across restarts; should another
    /// process take it first, the program exits at once naming the port, and a new one is tried.
    pub fn start(
        name: &str,
        namespace: &str,
        amqp_url: &str,
        data_dir: PathBuf,
        env: &[(&str, &str)],
    ) -> Self {
        let log = data_dir.with_extension(format!("{name}.log"));
        for _ in 0..5 {
            let port = free_port();
            let mut all = vec![
                ("SAGA_NAMESPACE".to_owned(), namespace.to_owned()),
                ("AMQP_URL".to_owned(), amqp_url.to_owned()),
                ("DATA_DIR".to_owned(), data_dir.display().to_string()),
                ("HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")),
                (
                    "RUST_LOG".to_owned(),
                    std::env::var("TEST_LOG")
                        .unwrap_or_else(|_| sagaflow_runtime::telemetry::DEFAULT_FILTER.into()),
                ),
            ];
            all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
            let mut program = Self {
                name: name.to_owned(),
                http: format!("http://127.0.0.1:{port}"),
                data_dir: data_dir.clone(),
                log: log.clone(),
                env: all,
                child: None,
            };
            program.spawn();
            if program.listening(port, Duration::from_secs(30)) {
                return program;
            }
        }
        panic!(
            "{name} could not listen on any free port; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    }

    /// Waits until something accepts connections on `port`; false if the program exited first.
    fn listening(&mut self, port: u16, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not start listening; its log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs a program that is expected to stop by itself (refuse to start, say), and returns
    /// its exit status (`None` if it was still running at the deadline) and what it printed.
    pub fn run_to_exit(
        name: &str,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let mut child = Command::new(binary(name))
            .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let status = wait_exit(&mut child, timeout);
        let mut out = String::new();
        use std::io::Read;
        if let Some(mut s) = child.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = child.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        (status, out)
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

    /// SIGTERM, then waits for the exit status; see [`terminate`].
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        terminate(&mut self.child.take()?, timeout).ok().flatten()
    }

    /// Sets `key` to `value` for the next start, as with a changed configuration.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the program again with the same settings, port and data folder.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts the program again and waits until it is healthy.
    pub async fn restart_and_wait(&mut self) {
        self.restart();
        self.wait_healthy(Duration::from_secs(30)).await;
    }

    /// The exit status, once the program has exited by itself.
    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
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

/// Sends `child` SIGTERM and waits for it as [`wait_exit`] does. When the signal cannot be
/// sent, `child` is killed and reaped, and the error returned: a test that checks a graceful
/// stop must not pass on a process that never got the signal.
pub fn terminate(child: &mut Child, timeout: Duration) -> std::io::Result<Option<std::process::ExitStatus>> {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().and_then(|status| {
        status.success().then_some(()).ok_or_else(|| std::io::Error::other(format!("kill -TERM: {status}")))
    });
    if let Err(not_sent) = sent {
        let _ = child.kill();
        let _ = child.wait();
        return Err(not_sent);
    }
    Ok(wait_exit(child, timeout))
}

/// Waits for `child` to exit; past `timeout` it is killed and `None` returned.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
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

/// How much of a program's log a failing test prints.
const LOG_TAIL_LINES: usize = 200;

impl Drop for Program {
    fn drop(&mut self) {
        self.kill();
        // A test that fails by timing out says only what it waited for; the programs' logs say
        // why, and they live in a folder the test deletes.
        if std::thread::panicking() {
            let tail = sagaflow_devkit::broker::log_tail(&self.log, LOG_TAIL_LINES);
            eprintln!("--- the test failed; the end of {}'s log:\n{tail}", self.name);
        }
    }
}

/// The processes named `name` whose environment has `variable` set to a value starting with
/// `value`: how a test finds a private broker node (`beam.smp`) by its data folder, whoever
/// started it. (The name matters: a node may start helpers, such as `epmd`, that inherit its
/// environment and are meant to outlive it.)
pub fn with_environment(name: &str, variable: &str, value: &str) -> Vec<u32> {
    let Ok(processes) = procfs::process::all_processes() else { return Vec::new() };
    processes
        .flatten()
        .filter(|process| process.stat().is_ok_and(|stat| stat.comm == name))
        .filter(|process| {
            process.environ().is_ok_and(|env| {
                env.get(std::ffi::OsStr::new(variable))
                    .is_some_and(|v| v.to_string_lossy().starts_with(value))
            })
        })
        .map(|process| process.pid() as u32)
        .collect()
}
