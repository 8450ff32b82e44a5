//! CPU time and memory of the processes under test, read from /proc (Linux).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Clock ticks per second of /proc/<pid>/stat's times. 100 on every Linux we run on; reading
/// sysconf would need libc for one number.
const TICKS_PER_SECOND: f64 = 100.0;

/// One process's use over a phase.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// The largest resident set seen while sampling, in MiB.
    pub max_rss_mib: f64,
}

/// Samples a set of named processes while a phase runs.
pub struct Sampler {
    started: Instant,
    start_ticks: BTreeMap<String, (u32, u64)>,
    max_rss_kib: BTreeMap<String, u64>,
}

impl Sampler {
    pub fn start(pids: &[(String, u32)]) -> Self {
        let mut start_ticks = BTreeMap::new();
        for (name, pid) in pids {
            if let Some(ticks) = cpu_ticks(*pid) {
                start_ticks.insert(name.clone(), (*pid, ticks));
            }
        }
        let mut sampler = Self { started: Instant::now(), start_ticks, max_rss_kib: BTreeMap::new() };
        sampler.sample();
        sampler
    }

    /// Records the current resident sets; call every few hundred milliseconds.
    pub fn sample(&mut self) {
        for (name, (pid, _)) in &self.start_ticks {
            if let Some(rss) = rss_kib(*pid) {
                let max = self.max_rss_kib.entry(name.clone()).or_default();
                *max = (*max).max(rss);
            }
        }
    }

    pub fn finish(mut self) -> BTreeMap<String, Usage> {
        self.sample();
        let wall = self.started.elapsed().as_secs_f64().max(0.001);
        self.start_ticks
            .iter()
            .map(|(name, (pid, start))| {
                // A process that died during the phase (the outage experiment) reports what it
                // used until then as zero rather than a wrong number.
                let used = cpu_ticks(*pid).map(|t| t.saturating_sub(*start)).unwrap_or(0);
                let usage = Usage {
                    cpu_percent: round1(100.0 * used as f64 / TICKS_PER_SECOND / wall),
                    max_rss_mib: round1(self.max_rss_kib.get(name).copied().unwrap_or(0) as f64 / 1024.0),
                };
                (name.clone(), usage)
            })
            .collect()
    }
}

/// Runs `sampler.sample()` every `every` until `done` resolves, and returns its output.
pub async fn sampled<F: std::future::Future>(sampler: &mut Sampler, every: Duration, done: F) -> F::Output {
    tokio::pin!(done);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            out = &mut done => return out,
            _ = tick.tick() => sampler.sample(),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after its last ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The RabbitMQ node's Erlang VM: the `beam.smp` whose command line names `node`, or, for the
/// shared broker, the one that names no private node of ours.
pub fn broker_pid(private_node: Option<&str>) -> Option<u32> {
    let mut found = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains("beam.smp") {
            continue;
        }
        let matches = match private_node {
            Some(node) => cmdline.contains(node),
            None => !cmdline.contains("sagaflow-"),
        };
        if matches {
            found = Some(pid);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(super::cpu_ticks(me).is_some());
        assert!(super::rss_kib(me).unwrap() > 0);
    }
}
