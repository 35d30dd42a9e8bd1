//! What Linux says about a process (resident memory and its peak from
//! `/proc/<pid>/status`, CPU time from `/proc/<pid>/stat`) and about the
//! machine (busy CPU time from `/proc/stat`; cores, CPU model, memory,
//! kernel, load), plus the commit and the date a report is made at.

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde::Serialize;

/// A process: another one by its id, or this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    Of(u32),
    Me,
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::Of(pid) => format!("/proc/{pid}"),
            Self::Me => "/proc/self".to_owned(),
        }
    }

    /// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB.
    fn status_mib(self, field: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("{}/status", self.dir())).ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// Resident memory now.
    pub fn rss_mib(self) -> Option<f64> {
        self.status_mib("VmRSS:")
    }

    /// The peak of resident memory so far.
    pub fn peak_rss_mib(self) -> Option<f64> {
        self.status_mib("VmHWM:")
    }

    /// CPU time used so far, user and system, by every thread.
    pub fn cpu_time(self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("{}/stat", self.dir())).ok()?;
        // The command name may hold spaces and parentheses: fields are
        // counted from the last ')'. utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let ticks = utime + stime;
        Some(Duration::from_secs_f64(ticks as f64 / clock_ticks() as f64))
    }
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot say).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        command_output("getconf", &["CLK_TCK"])
            .and_then(|t| t.parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// The CPU time of the deployment and of the bench itself over a stretch.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pub server: Option<Pid>,
}

/// The servers of the scaled stack whose CPU time a report names, by the
/// command name of their processes (`comm`): every PostgreSQL backend, the
/// NATS servers, the Redis server.
pub const SERVER_COMMANDS: [&str; 3] = ["postgres", "nats-server", "redis-server"];

/// CPU times read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    server: Option<Duration>,
    bench: Option<Duration>,
    machine: Option<Duration>,
    /// Summed over the live processes of each of [`SERVER_COMMANDS`].
    servers: [Duration; 3],
}

/// CPU used between two samples, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuUsed {
    /// The deployment's process (none when the bench itself serves).
    pub server_ms: Option<f64>,
    /// The bench: load generator, and the ceiling when it serves one.
    pub bench_ms: Option<f64>,
    /// Every other process on the machine: PostgreSQL, NATS and Redis on
    /// the scaled stack, and whatever else ran meanwhile (noise).
    pub other_ms: Option<f64>,
    /// Part of `other_ms`: the processes named `postgres`, `nats-server`
    /// and `redis-server` (a process that ended inside the window is not
    /// counted; the pools keep their connections, so few do).
    pub postgresql_ms: f64,
    pub nats_ms: f64,
    pub redis_ms: f64,
}

impl CpuMeter {
    pub fn sample(&self) -> CpuSample {
        CpuSample {
            server: self.server.and_then(Pid::cpu_time),
            bench: Pid::Me.cpu_time(),
            machine: machine_busy(),
            servers: servers_cpu_time(),
        }
    }
}

impl CpuSample {
    /// What was used from `self` until `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUsed {
        let ms = |a: Option<Duration>, b: Option<Duration>| {
            Some(b?.saturating_sub(a?).as_secs_f64() * 1000.0)
        };
        let server_ms = ms(self.server, later.server);
        let bench_ms = ms(self.bench, later.bench);
        let other_ms = ms(self.machine, later.machine)
            .map(|all| (all - server_ms.unwrap_or(0.0) - bench_ms.unwrap_or(0.0)).max(0.0));
        let server = |i: usize| {
            let (before, after): (Duration, Duration) = (self.servers[i], later.servers[i]);
            after.saturating_sub(before).as_secs_f64() * 1000.0
        };
        CpuUsed {
            server_ms,
            bench_ms,
            other_ms,
            postgresql_ms: server(0),
            nats_ms: server(1),
            redis_ms: server(2),
        }
    }
}

/// CPU time used so far by the processes of each of [`SERVER_COMMANDS`].
fn servers_cpu_time() -> [Duration; 3] {
    let mut times = [Duration::ZERO; 3];
    let Ok(entries) = std::fs::read_dir("/proc") else { return times };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        if let Some(i) = SERVER_COMMANDS.iter().position(|name| *name == comm.trim_end())
            && let Some(used) = Pid::Of(pid).cpu_time()
        {
            times[i] += used;
        }
    }
    times
}

/// CPU time every core spent busy since boot (the `cpu` line of
/// `/proc/stat`: user, nice, system, irq, softirq, steal).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| fields.get(*i)).sum::<u64>();
    Some(Duration::from_secs_f64(busy as f64 / clock_ticks() as f64))
}

/// The machine a report was made on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: Option<String>,
    pub memory_total_mib: Option<f64>,
    pub kernel: Option<String>,
    /// `git rev-parse --short HEAD` where the bench ran, when it is a clone.
    pub commit: Option<String>,
    /// When the bench started, RFC 3339 UTC.
    pub date: String,
    /// The 1-minute load average when the bench started: above 0.5 or so,
    /// something else was using the cores the figures depend on.
    pub load_average: Option<f64>,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, model)| model.trim().to_owned());
        let memory_total_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
            Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        let date = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|now| now.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default();
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_total_mib,
            kernel,
            commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
            date,
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().next()?.parse().ok()),
        }
    }
}

/// The trimmed standard output of a command that succeeded.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        assert!(Pid::Me.rss_mib().is_some_and(|m| m > 0.0));
        assert!(Pid::Me.peak_rss_mib().is_some_and(|m| m > 0.0));
        assert!(Pid::Me.cpu_time().is_some());
        assert!(machine_busy().is_some());
        assert!(clock_ticks() > 0);
    }
}
