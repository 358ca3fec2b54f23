//! Latency summaries, CPU accounting from /proc, the machine's description and a probe of the
//! disk's fsync cost.

use std::{
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

/// Latencies in microseconds; summarised by sorting (an exact "HDR" histogram).
#[derive(Debug, Default, Clone)]
pub struct Hist {
    micros: Vec<u32>,
}

impl Hist {
    pub fn push(&mut self, d: Duration) {
        self.micros
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Hist) {
        self.micros.extend(other.micros);
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    pub fn summary(&self) -> Summary {
        let mut v = self.micros.clone();
        v.sort_unstable();
        let at = |p: f64| -> f64 {
            if v.is_empty() {
                return f64::NAN;
            }
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            f64::from(v[rank - 1]) / 1000.0
        };
        Summary {
            n: v.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    #[cfg_attr(not(test), allow(dead_code))]
    pub n: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Machine-wide CPU counters (jiffies, all cores) and one process's CPU time.
#[derive(Debug, Clone, Default)]
pub struct CpuStamp {
    total: u64,
    idle: u64,
    iowait: u64,
    this_process: u64,
    postgres: u64,
    /// This process's threads: (thread id, name, jiffies).
    threads: Vec<(String, String, u64)>,
}

/// Where the CPU went between two stamps, as fractions of the whole machine (all cores).
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    /// The busiest threads of this process: (name, share of ONE core), busiest first.
    pub threads: Vec<(String, f64)>,
    /// Busy (not idle, not waiting for I/O).
    pub busy: f64,
    /// Idle while some I/O was outstanding.
    pub iowait: f64,
    /// This bench process (load generator, emulators, and the daemon when in-process).
    pub bench: f64,
    /// Every `postgres` process.
    pub postgres: f64,
}

fn proc_cpu(pid: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_owned();
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After the command: state is field 3 (index 0 here); utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

impl CpuStamp {
    pub fn now() -> Self {
        let mut stamp = Self::default();
        if let Ok(text) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = text.lines().find(|l| l.starts_with("cpu "))
        {
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal (guest is inside user).
            stamp.total = v.iter().take(8).sum();
            stamp.idle = v.get(3).copied().unwrap_or(0);
            stamp.iowait = v.get(4).copied().unwrap_or(0);
        }
        stamp.this_process = proc_cpu("self").map(|(_, t)| t).unwrap_or(0);
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let tid = entry.file_name().to_string_lossy().into_owned();
                if let Some((comm, t)) = proc_cpu(&format!("self/task/{tid}")) {
                    stamp.threads.push((tid, comm, t));
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let Some(pid) = name.to_str() else { continue };
                if !pid.bytes().all(|b| b.is_ascii_digit()) {
                    continue;
                }
                if let Some((comm, t)) = proc_cpu(pid)
                    && comm == "postgres"
                {
                    stamp.postgres += t;
                }
            }
        }
        stamp
    }

    pub fn until(&self, later: &CpuStamp) -> CpuUse {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let idle = later.idle.saturating_sub(self.idle) as f64;
        let iowait = later.iowait.saturating_sub(self.iowait) as f64;
        // Jiffies of all cores → the share of one core.
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        let mut threads: Vec<(String, f64)> = later
            .threads
            .iter()
            .map(|(tid, comm, t)| {
                let before = self
                    .threads
                    .iter()
                    .find(|(id, _, _)| id == tid)
                    .map_or(0, |(_, _, b)| *b);
                (
                    comm.clone(),
                    t.saturating_sub(before) as f64 / total * cores,
                )
            })
            .filter(|(_, share)| *share > 0.0)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        threads.truncate(4);
        CpuUse {
            threads,
            busy: (total - idle - iowait).max(0.0) / total,
            iowait: iowait / total,
            bench: later.this_process.saturating_sub(self.this_process) as f64 / total,
            postgres: later.postgres.saturating_sub(self.postgres) as f64 / total,
        }
    }
}

/// Clock ticks per second of the CPU times in `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on
/// Linux when it cannot be asked).
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The fields of `/proc/<pid>/stat` after the command: `[0]` is the state (field 3), `[1]` the
/// parent's pid, `[11]`/`[12]` utime/stime, `[13]`/`[14]` cutime/cstime (children waited for).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = text.rfind(')')?;
    Some(
        text.get(close + 2..)?
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// A process's own CPU time (utime + stime, all its threads), in clock ticks.
pub fn process_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(&pid.to_string())?;
    Some(f.get(11)? + f.get(12)?)
}

/// The CPU time of a PostgreSQL cluster, in clock ticks: the postmaster's own and that of its
/// children it has waited for (cutime + cstime: backends and workers that already exited), plus
/// every live child's. A child moves from the second sum to the first when it exits, so the total
/// only grows and the difference of two readings is what the cluster spent in between.
pub fn cluster_ticks(postmaster: u32) -> Option<u64> {
    let pm = stat_fields(&postmaster.to_string())?;
    let mut total = pm.get(11)? + pm.get(12)? + pm.get(13)? + pm.get(14)?;
    let dir = std::fs::read_dir("/proc").ok()?;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(f) = stat_fields(pid)
            && f.get(1).copied() == Some(u64::from(postmaster))
        {
            total += f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        }
    }
    Some(total)
}

/// The postmaster's pid: the first line of `<data dir>/postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The processes whose CPU a run charges to its messages: the daemon (a child process) and, on
/// PostgreSQL, the cluster (its postmaster and every process it started). Not the bench process:
/// the load generator and the emulators run there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    pub daemon: u32,
    pub postmaster: Option<u32>,
}

/// One reading of the watched processes.
#[derive(Debug, Clone, Copy)]
pub struct WatchStamp {
    at: Instant,
    daemon: Option<u64>,
    db: Option<u64>,
}

/// CPU milliseconds the watched processes spent between two readings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUse {
    pub window: Duration,
    /// The daemon; NaN when it could not be read.
    pub daemon_ms: f64,
    /// The database's server processes (PostgreSQL only).
    pub db_ms: Option<f64>,
}

impl ProcUse {
    pub fn total_ms(&self) -> f64 {
        self.daemon_ms + self.db_ms.unwrap_or(0.0)
    }
}

impl Watch {
    pub fn stamp(&self) -> WatchStamp {
        WatchStamp {
            at: Instant::now(),
            daemon: process_ticks(self.daemon),
            db: self.postmaster.and_then(cluster_ticks),
        }
    }
}

impl WatchStamp {
    pub fn until(&self, later: &WatchStamp) -> ProcUse {
        let ms = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 * 1000.0 / clock_ticks()),
            _ => None,
        };
        ProcUse {
            window: later.at.saturating_duration_since(self.at),
            daemon_ms: ms(self.daemon, later.daemon).unwrap_or(f64::NAN),
            db_ms: ms(self.db, later.db),
        }
    }
}

/// Resident memory of a process: (VmRSS, VmHWM) in KiB.
pub fn proc_memory(pid: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// What the report says about the machine.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub load_at_start: String,
    pub load_at_end: String,
    pub sqlite: String,
    pub postgres: String,
    pub disk: String,
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

impl Machine {
    pub fn describe(work_dir: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1);
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<f64>()
                    .ok()
            })
            .map(|kib| kib / 1024.0 / 1024.0)
            .unwrap_or(f64::NAN);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let rustc = std::env::var("BYOCD_BENCH_RUSTC").unwrap_or_else(|_| {
            std::process::Command::new("rustc")
                .arg("--version")
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|| "unknown".into())
        });
        Self {
            cpu_model,
            cores,
            memory_gib,
            kernel,
            rustc,
            load_at_start: load_average(),
            disk: disk_of(work_dir),
            ..Self::default()
        }
    }
}

/// The file system and device holding `path` (from /proc/self/mounts).
fn disk_of(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        if path.starts_with(f[1]) && best.as_ref().is_none_or(|(len, _)| f[1].len() > *len) {
            best = Some((f[1].len(), format!("{} on {} ({})", f[0], f[1], f[2])));
        }
    }
    best.map(|(_, d)| d).unwrap_or_else(|| "unknown".into())
}

/// The cost of making 4 KiB durable, as SQLite's WAL commit does: append and `fdatasync`.
#[derive(Debug, Clone, Copy)]
pub struct FsyncProbe {
    pub append: Summary,
    pub overwrite: Summary,
}

pub fn probe_fsync(
    dir: &Path,
    max_count: usize,
    max_time: Duration,
) -> std::io::Result<FsyncProbe> {
    let file = dir.join("fsync-probe.bin");
    let block = vec![0x5a_u8; 4096];
    let run = |append: bool| -> std::io::Result<Summary> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&file)?;
        f.write_all(&block)?;
        f.sync_all()?;
        let mut hist = Hist::default();
        let started = Instant::now();
        for _ in 0..max_count {
            if started.elapsed() > max_time {
                break;
            }
            if !append {
                use std::io::Seek;
                f.seek(std::io::SeekFrom::Start(0))?;
            }
            let t = Instant::now();
            f.write_all(&block)?;
            f.sync_data()?;
            hist.push(t.elapsed());
        }
        Ok(hist.summary())
    };
    let append = run(true)?;
    let overwrite = run(false)?;
    let _ = std::fs::remove_file(&file);
    Ok(FsyncProbe { append, overwrite })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut h = Hist::default();
        for ms in 1..=100 {
            h.push(Duration::from_millis(ms));
        }
        let s = h.summary();
        assert_eq!(s.n, 100);
        assert!((s.p50 - 50.0).abs() < 1e-9);
        assert!((s.p99 - 99.0).abs() < 1e-9);
        assert!((s.max - 100.0).abs() < 1e-9);
    }
}
