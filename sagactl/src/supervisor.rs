//! Runs the four programs as child processes: logs prefixed by program, a program that dies is
//! restarted with backoff, and a stop sends SIGTERM and waits for a clean exit.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub const PROGRAMS: [&str; 4] = ["orchestrator", "payment", "inventory", "notification"];

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Where the programs keep their data (one folder each) and the private broker, if any.
    #[arg(long, env = "SAGAFLOW_DATA", default_value = "data")]
    pub data_dir: PathBuf,
    /// The namespace of every exchange and queue.
    #[arg(long, env = "SAGA_NAMESPACE", default_value = "sagaflow")]
    pub namespace: String,
    /// The orchestrator's HTTP port; payment, inventory and notification take the next three.
    #[arg(long, default_value_t = 8080)]
    pub base_port: u16,
    /// The orchestrator's port, in place of the base port.
    #[arg(long)]
    pub orchestrator_port: Option<u16>,
    #[arg(long)]
    pub payment_port: Option<u16>,
    #[arg(long)]
    pub inventory_port: Option<u16>,
    #[arg(long)]
    pub notification_port: Option<u16>,
    #[command(flatten)]
    pub bus: crate::system::BusChoice,
}

impl UpArgs {
    /// The four programs' ports, in [`PROGRAMS`] order, or why they cannot be used.
    fn ports(&self) -> anyhow::Result<[u16; 4]> {
        let given = [self.orchestrator_port, self.payment_port, self.inventory_port, self.notification_port];
        let mut ports = [0u16; 4];
        for (i, port) in given.into_iter().enumerate() {
            ports[i] = match port {
                Some(p) => p,
                None => self.base_port.checked_add(i as u16).context("--base-port is too high")?,
            };
        }
        for (i, port) in ports.iter().enumerate() {
            if ports[..i].contains(port) {
                anyhow::bail!("port {port} is given to two programs");
            }
            // Refuse before anything starts: a second system on the same ports would have its
            // programs exit one by one, and the supervisor restart them for ever.
            if std::net::TcpListener::bind(("127.0.0.1", *port)).is_err() {
                anyhow::bail!(
                    "port {port} ({}) is in use: is another system running? Choose others with --base-port",
                    PROGRAMS[i]
                );
            }
        }
        Ok(ports)
    }
}

/// One program to run.
#[derive(Debug, Clone)]
pub struct Program {
    /// What the logs and the outage call it (`payment`, ...).
    pub name: &'static str,
    /// The executable, beside `sagactl` or on the PATH: the name, or a stand-in such as the
    /// bench's `rest-chain-hop`.
    pub binary: &'static str,
    pub env: Vec<(String, String)>,
    pub http: String,
}

/// Where log lines go: the terminal with a prefix, or one file per program.
#[derive(Debug, Clone)]
pub enum Logs {
    Terminal,
    Files(PathBuf),
}

pub struct Supervisor {
    stop: CancellationToken,
    tasks: JoinSet<()>,
    pub restarts: Vec<(&'static str, Arc<AtomicU32>)>,
    /// The pid of each program's current process (0 while it is down).
    pids: Vec<(&'static str, Arc<AtomicU32>)>,
    /// A one-off pause before the next restart, in ms (0: the usual backoff).
    pauses: Vec<(&'static str, Arc<AtomicU64>)>,
}

/// The four programs with their settings and default ports (8080 to 8083, or `ports`).
pub fn plan(
    namespace: &str,
    broker: &sagaflow_devkit::broker::Broker,
    data_dir: &std::path::Path,
    ports: [u16; 4],
    extra: &[(&str, &str, &str)],
) -> Vec<Program> {
    PROGRAMS
        .iter()
        .zip(ports)
        .map(|(&name, port)| {
            let mut env = vec![("SAGA_NAMESPACE".to_owned(), namespace.to_owned())];
            env.extend(broker.program_env().into_iter().map(|(k, v)| (k.to_owned(), v)));
            env.extend([
                ("DATA_DIR".to_owned(), data_dir.join(name).display().to_string()),
                ("HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")),
            ]);
            env.extend(
                extra
                    .iter()
                    .filter(|(p, _, _)| *p == name || *p == "*")
                    .map(|(_, k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            Program { name, binary: name, env, http: format!("http://127.0.0.1:{port}") }
        })
        .collect()
}

impl Supervisor {
    pub fn start(programs: &[Program], logs: Logs) -> Self {
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut restarts = Vec::new();
        let mut pids = Vec::new();
        let mut pauses = Vec::new();
        for program in programs {
            let counter = Arc::new(AtomicU32::new(0));
            let pid = Arc::new(AtomicU32::new(0));
            let pause = Arc::new(AtomicU64::new(0));
            restarts.push((program.name, counter.clone()));
            pids.push((program.name, pid.clone()));
            pauses.push((program.name, pause.clone()));
            tasks.spawn(supervise(
                program.clone(),
                logs.clone(),
                Lifecycle { restarts: counter, pid, pause },
                stop.clone(),
            ));
        }
        Self { stop, tasks, restarts, pids, pauses }
    }

    /// SIGKILLs the program's current process; the supervisor restarts it after `pause`.
    pub fn kill(&self, name: &str, pause: Duration) -> bool {
        if let Some((_, p)) = self.pauses.iter().find(|(n, _)| *n == name) {
            p.store(pause.as_millis().max(1) as u64, Ordering::Relaxed);
        }
        let Some((_, pid)) = self.pids.iter().find(|(n, _)| *n == name) else { return false };
        let pid = pid.load(Ordering::Relaxed);
        pid != 0
            && std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
    }

    /// The pid of the program's current process, if it is running.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let (_, pid) = self.pids.iter().find(|(n, _)| *n == name)?;
        Some(pid.load(Ordering::Relaxed)).filter(|p| *p != 0)
    }

    /// Stops every program (SIGTERM, then SIGKILL after 10 s) and waits for them.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Waits until every program's `/health` answers 200.
pub async fn wait_healthy(programs: &[Program], timeout: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + timeout;
    for p in programs {
        loop {
            let ok =
                http.get(format!("{}/health", p.http)).send().await.is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{} did not become healthy at {} within {timeout:?}", p.name, p.http);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The programs sit next to sagactl (same cargo target folder), or on PATH.
fn binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// What the supervisor shares about one program's process.
struct Lifecycle {
    restarts: Arc<AtomicU32>,
    pid: Arc<AtomicU32>,
    pause: Arc<AtomicU64>,
}

async fn supervise(program: Program, logs: Logs, life: Lifecycle, stop: CancellationToken) {
    let Lifecycle { restarts, pid, pause } = life;
    let mut backoff = Duration::from_millis(200);
    loop {
        let mut command = tokio::process::Command::new(binary(program.binary));
        command
            .envs(program.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A supervisor dropped without `stop` (sagactl stopped by a signal, a command
            // that failed half way) leaves no program running behind it.
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("[sagactl] cannot start {}: {e}", program.name);
                return;
            }
        };
        let pipes = [
            child.stdout.take().map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            child.stderr.take().map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            tokio::spawn(copy_lines(program.name, pipe, logs.clone()));
        }
        pid.store(child.id().unwrap_or(0), Ordering::Relaxed);
        let started = tokio::time::Instant::now();
        tokio::select! {
            status = child.wait() => {
                pid.store(0, Ordering::Relaxed);
                if stop.is_cancelled() {
                    return;
                }
                // A program that ran a while was healthy: start the backoff afresh.
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(200);
                }
                restarts.fetch_add(1, Ordering::Relaxed);
                // A pause asked for by whoever killed it (the chaos run) replaces the backoff.
                let asked = pause.swap(0, Ordering::Relaxed);
                let wait = if asked > 0 { Duration::from_millis(asked) } else { backoff };
                eprintln!("[sagactl] {} exited ({}); restarting in {wait:?}", program.name, status.map(|s| s.to_string()).unwrap_or_default());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                if asked == 0 {
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            _ = stop.cancelled() => {
                if let Some(pid) = child.id() {
                    let _ = tokio::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                }
                if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return;
            }
        }
    }
}

async fn copy_lines(name: &'static str, pipe: Box<dyn tokio::io::AsyncRead + Unpin + Send>, logs: Logs) {
    let mut lines = BufReader::new(pipe).lines();
    let mut file = match &logs {
        Logs::Files(dir) => tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .await
            .ok(),
        Logs::Terminal => None,
    };
    while let Ok(Some(line)) = lines.next_line().await {
        match file.as_mut() {
            Some(f) => {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
            None => eprintln!("[{name:<12}] {line}"),
        }
    }
}

/// `sagactl up`.
/// Waits for Ctrl-C or SIGTERM.
pub async fn until_stopped() {
    sagaflow_runtime::shutdown::on_signal().cancelled().await;
}

pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let ports = args.ports()?;
    std::fs::create_dir_all(&args.data_dir)?;
    let broker_dir = std::path::absolute(args.data_dir.join("broker"))?;
    let (bus, kafka) = (args.bus.bus, args.bus.kafka_brokers.clone());
    let broker = tokio::task::spawn_blocking(move || {
        sagaflow_devkit::broker::find_or_start_bus(bus, kafka.as_ref(), &broker_dir)
    })
    .await?
    .map_err(anyhow::Error::msg)?;
    eprintln!("[sagactl] broker: {}", broker.describe());
    let data_dir = std::path::absolute(&args.data_dir)?;
    let programs = plan(&args.namespace, &broker, &data_dir, ports, &[]);
    let supervisor = Supervisor::start(&programs, Logs::Terminal);
    let stop = sagaflow_runtime::shutdown::on_signal();
    tokio::select! {
        ready = wait_healthy(&programs, Duration::from_secs(60)) => {
            ready?;
            eprintln!("[sagactl] ready. Ctrl-C stops everything.");
            for p in &programs {
                eprintln!("[sagactl]   {:<12} {}", p.name, p.http);
            }
            eprintln!("[sagactl] the console: {}/", programs[0].http);
            crate::output::emit(&serde_json::json!({
                "ready": true,
                "programs": programs.iter().map(|p| serde_json::json!({ "name": p.name, "http": p.http })).collect::<Vec<_>>(),
                "console": format!("{}/", programs[0].http),
            }));
            stop.cancelled().await;
        }
        _ = stop.cancelled() => {}
    }
    eprintln!("[sagactl] stopping");
    supervisor.stop().await;
    drop(broker);
    Ok(())
}
