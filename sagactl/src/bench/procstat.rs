//! What the processes under test cost while a phase runs, read from /proc with the `procfs`
//! crate: CPU time (user + system), bytes written to storage, context switches (every thread
//! of the process), and the largest resident set.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use procfs::process::Process;

/// One process's use over a phase.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    /// CPU time (user and system) used in the phase, in ms.
    pub cpu_ms: f64,
    /// Bytes the process caused to be written to storage in the phase.
    pub written_bytes: u64,
    /// Voluntary and involuntary context switches of all its threads in the phase.
    pub context_switches: u64,
    /// The largest resident set seen while sampling, in MiB.
    pub max_rss_mib: f64,
}

/// A process's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_ms: f64,
    written_bytes: u64,
    context_switches: u64,
}

fn counters(pid: u32) -> Option<Counters> {
    let process = Process::new(pid as i32).ok()?;
    let stat = process.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let cpu_ms = (stat.utime + stat.stime) as f64 * 1000.0 / ticks;
    let written_bytes = process.io().map(|io| io.write_bytes).unwrap_or(0);
    // /proc/<pid>/status counts the main thread only; every thread is a task of its own.
    let context_switches = process
        .tasks()
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| t.status().ok())
                .map(|s| s.voluntary_ctxt_switches.unwrap_or(0) + s.nonvoluntary_ctxt_switches.unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    Some(Counters { cpu_ms, written_bytes, context_switches })
}

fn rss_kib(pid: u32) -> Option<u64> {
    Process::new(pid as i32).ok()?.status().ok()?.vmrss
}

/// Samples a set of named processes while a phase runs.
pub struct Sampler {
    started: Instant,
    start: BTreeMap<String, (u32, Counters)>,
    max_rss_kib: BTreeMap<String, u64>,
}

impl Sampler {
    pub fn start(pids: &[(String, u32)]) -> Self {
        let start =
            pids.iter().filter_map(|(name, pid)| Some((name.clone(), (*pid, counters(*pid)?)))).collect();
        let mut sampler = Self { started: Instant::now(), start, max_rss_kib: BTreeMap::new() };
        sampler.sample();
        sampler
    }

    /// Records the current resident sets; call every few hundred milliseconds.
    pub fn sample(&mut self) {
        for (name, (pid, _)) in &self.start {
            if let Some(rss) = rss_kib(*pid) {
                let max = self.max_rss_kib.entry(name.clone()).or_default();
                *max = (*max).max(rss);
            }
        }
    }

    pub fn finish(mut self) -> BTreeMap<String, Usage> {
        self.sample();
        let wall = self.started.elapsed().as_secs_f64().max(0.001);
        self.start
            .iter()
            .map(|(name, (pid, start))| {
                // A process that died during the phase (the outage experiment) reports what it
                // used until then as zero rather than a wrong number.
                let end = counters(*pid).unwrap_or(*start);
                let cpu_ms = (end.cpu_ms - start.cpu_ms).max(0.0);
                let usage = Usage {
                    cpu_percent: round1(cpu_ms / 10.0 / wall),
                    cpu_ms: round1(cpu_ms),
                    written_bytes: end.written_bytes.saturating_sub(start.written_bytes),
                    context_switches: end.context_switches.saturating_sub(start.context_switches),
                    max_rss_mib: round1(self.max_rss_kib.get(name).copied().unwrap_or(0) as f64 / 1024.0),
                };
                (name.clone(), usage)
            })
            .collect()
    }

    /// Waits until the processes, all but `except`, use together less than `quiet_percent` of
    /// one core over half a second, or until `limit`; returns how long that took. Work a load
    /// leaves behind (sled's segment cleaning, the broker's) is then counted for the load that
    /// made it, not for the next phase, which starts from a quiet system.
    pub async fn until_quiet(&mut self, except: &str, quiet_percent: f64, limit: Duration) -> Duration {
        const WINDOW: Duration = Duration::from_millis(500);
        let started = Instant::now();
        let pids: Vec<u32> =
            self.start.iter().filter(|(name, _)| *name != except).map(|(_, (pid, _))| *pid).collect();
        let cpu = || pids.iter().filter_map(|pid| counters(*pid)).map(|c| c.cpu_ms).sum::<f64>();
        let mut before = cpu();
        while started.elapsed() < limit {
            tokio::time::sleep(WINDOW).await;
            self.sample();
            let now = cpu();
            if (now - before) / WINDOW.as_millis() as f64 * 100.0 < quiet_percent {
                break;
            }
            before = now;
        }
        started.elapsed()
    }
}

/// The machine as a whole over a phase. Both figures explain a row whose latency jumps while
/// its cost per saga does not: the host ran other guests on our cores, or the disk held every
/// task up at once.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostUse {
    /// CPU time the hypervisor gave to others, in percent of all the machine's CPU time.
    pub steal_percent: f64,
    /// Time in which every task that wanted to run waited on storage (the kernel's pressure
    /// stall information, `io full`), in ms; `None` on a kernel without it.
    pub io_stalled_ms: Option<f64>,
}

/// The machine's counters at one moment ([`HostUse`]).
#[derive(Debug, Clone, Copy)]
pub struct HostCounters {
    steal_ticks: u64,
    all_ticks: u64,
    io_full_us: Option<u64>,
}

impl HostCounters {
    pub fn now() -> Option<Self> {
        use procfs::{Current, CurrentSI};
        let cpu = procfs::KernelStats::current().ok()?.total;
        let steal_ticks = cpu.steal.unwrap_or(0);
        let all_ticks = [cpu.iowait, cpu.irq, cpu.softirq, cpu.steal]
            .into_iter()
            .flatten()
            .fold(cpu.user + cpu.nice + cpu.system + cpu.idle, u64::saturating_add);
        let io_full_us = procfs::IoPressure::current().ok().map(|p| p.full.total);
        Some(Self { steal_ticks, all_ticks, io_full_us })
    }

    /// What the machine went through from `start` to now.
    pub fn since(&self, start: &Self) -> HostUse {
        let all = self.all_ticks.saturating_sub(start.all_ticks).max(1) as f64;
        let stolen = self.steal_ticks.saturating_sub(start.steal_ticks) as f64;
        let io_stalled = match (start.io_full_us, self.io_full_us) {
            (Some(before), Some(after)) => Some(round1(after.saturating_sub(before) as f64 / 1000.0)),
            _ => None,
        };
        HostUse { steal_percent: round1(stolen * 100.0 / all), io_stalled_ms: io_stalled }
    }
}

/// The block device that holds a folder, read from /proc/diskstats: what reached the disk.
///
/// A process's `write_bytes` is counted when it dirties pages, and a process that makes many
/// small synced writes dirties the same pages again after every sync: in one 8 s window at half
/// the saga peak, the system's processes counted 1,330 MiB while the disk wrote 572 MiB. The
/// device counts what was written, the file systems' journal included, but from every process
/// on the machine, so it says most on a machine that runs nothing else.
#[derive(Debug, Clone, Copy)]
pub struct Device {
    major: i32,
    minor: i32,
}

impl Device {
    pub fn of(dir: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata(dir).ok()?.dev();
        Some(Self {
            major: i32::try_from(libc::major(dev)).ok()?,
            minor: i32::try_from(libc::minor(dev)).ok()?,
        })
    }

    /// Bytes written to the device since it started.
    pub fn written_bytes(&self) -> Option<u64> {
        let stat =
            procfs::diskstats().ok()?.into_iter().find(|d| d.major == self.major && d.minor == self.minor)?;
        // /proc/diskstats counts 512-byte sectors whatever the device's own sector size.
        Some(stat.sectors_written * 512)
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

/// The shared RabbitMQ node's Erlang VM: the `beam.smp` that is not one of our private nodes
/// (theirs are named `sagaflow-*` in their environment).
pub fn shared_broker_pid() -> Option<u32> {
    procfs::process::all_processes().ok()?.flatten().find_map(|process| {
        let is_beam = process.cmdline().ok()?.first()?.ends_with("beam.smp");
        let ours = process
            .environ()
            .ok()?
            .get(std::ffi::OsStr::new("RABBITMQ_NODENAME"))
            .is_some_and(|n| n.to_string_lossy().starts_with("sagaflow-"));
        (is_beam && !ours).then_some(process.pid() as u32)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        let c = super::counters(me).unwrap();
        assert!(c.cpu_ms >= 0.0 && c.context_switches > 0);
        assert!(super::rss_kib(me).unwrap() > 0);
    }

    #[test]
    fn the_host_s_use_reads_as_a_share_and_a_time() {
        let Some(start) = super::HostCounters::now() else { return };
        std::thread::sleep(std::time::Duration::from_millis(20));
        let used = super::HostCounters::now().expect("read once, read again").since(&start);
        assert!((0.0..=100.0).contains(&used.steal_percent), "{used:?}");
        assert!(used.io_stalled_ms.is_none_or(|ms| ms >= 0.0), "{used:?}");
    }

    #[test]
    fn a_disk_counts_what_was_synced_to_it_and_a_file_system_without_one_says_nothing() {
        use super::Device;
        // /proc has no block device behind it: no number rather than a wrong one.
        assert_eq!(Device::of(std::path::Path::new("/proc")).and_then(|d| d.written_bytes()), None);
        // Where the build runs on a disk (not, say, an overlay), its counter moves forward.
        let dir = std::env::temp_dir();
        if let Some(device) = Device::of(&dir).filter(|d| d.written_bytes().is_some()) {
            let before = device.written_bytes().unwrap();
            let file = dir.join(format!("sagactl-disk-test-{}", std::process::id()));
            std::fs::write(&file, vec![1u8; 1 << 20]).unwrap();
            std::fs::File::open(&file).unwrap().sync_all().unwrap();
            let after = device.written_bytes().unwrap();
            std::fs::remove_file(&file).unwrap();
            assert!(after >= before + (1 << 20), "{before} then {after}");
        }
    }
}
