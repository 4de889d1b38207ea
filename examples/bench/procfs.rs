//! Process measurements for the load generator: the broker's CPU time and memory from
//! `/proc/<pid>`, the generator's own CPU time from `getrusage`, and the open-file limit.
//!
//! Used by every scenario in `bench.rs`: a [`BrokerMonitor`] is started before the measured
//! phase and finished after it; it samples the broker's VmRSS every 100 ms for the peak.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Clock ticks per second used by `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` in seconds, or `None` when the process is gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// A `kB` value from `/proc/<pid>/status` (e.g. `VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds (user + system) this process has used so far.
pub fn own_cpu_secs() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer we own.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: rc == 0 means the struct was filled in.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Raises the soft open-file limit to the hard one and returns the (new) soft limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Broker and generator resource use over one measured phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResourceReport {
    /// Pid of the broker, when one was given.
    pub broker_pid: Option<u32>,
    /// Broker CPU seconds (utime + stime) spent during the phase.
    pub broker_cpu_secs: Option<f64>,
    /// `broker_cpu_secs` divided by the phase's wall time (1.0 = one core busy).
    pub broker_cpu_util: Option<f64>,
    /// Broker VmRSS at the start of the phase, in kB.
    pub broker_rss_start_kb: Option<u64>,
    /// Broker VmRSS at the end of the phase, in kB.
    pub broker_rss_end_kb: Option<u64>,
    /// Highest broker VmRSS seen by the 100 ms sampler during the phase, in kB.
    pub broker_peak_rss_kb: Option<u64>,
    /// Broker VmHWM (peak RSS over its whole life) at the end of the phase, in kB.
    pub broker_vmhwm_kb: Option<u64>,
    /// Generator CPU seconds (user + system) spent during the phase.
    pub gen_cpu_secs: f64,
    /// `gen_cpu_secs` divided by the phase's wall time (1.0 = one core busy).
    pub gen_cpu_util: f64,
    /// Wall time of the phase in seconds.
    pub phase_secs: f64,
}

/// Measures the broker (if a pid is known) and the generator over one phase.
pub struct BrokerMonitor {
    pid: Option<u32>,
    started: Instant,
    broker_cpu0: Option<f64>,
    own_cpu0: f64,
    rss_start: Option<u64>,
    peak: Arc<AtomicU64>,
    sampler: Option<tokio::task::JoinHandle<()>>,
}

impl BrokerMonitor {
    /// Starts measuring; must be called inside the tokio runtime (spawns the RSS sampler).
    pub fn start(pid: Option<u32>) -> Self {
        let rss_start = pid.and_then(|p| status_kb(p, "VmRSS"));
        let peak = Arc::new(AtomicU64::new(rss_start.unwrap_or(0)));
        let sampler = pid.map(|p| {
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    match status_kb(p, "VmRSS") {
                        Some(kb) => {
                            peak.fetch_max(kb, Ordering::Relaxed);
                        }
                        None => break,
                    }
                }
            })
        });
        BrokerMonitor {
            pid,
            started: Instant::now(),
            broker_cpu0: pid.and_then(cpu_secs),
            own_cpu0: own_cpu_secs(),
            rss_start,
            peak,
            sampler,
        }
    }

    /// VmRSS at the start of the phase, in kB.
    pub fn rss_start(&self) -> Option<u64> {
        self.rss_start
    }

    /// True while the broker process exists (or when no pid was given).
    pub fn broker_alive(&self) -> bool {
        match self.pid {
            Some(p) => std::path::Path::new(&format!("/proc/{p}")).exists(),
            None => true,
        }
    }

    /// Ends the phase and reports what was used.
    pub fn finish(self) -> ResourceReport {
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        if let Some(s) = self.sampler {
            s.abort();
        }
        let rss_end = self.pid.and_then(|p| status_kb(p, "VmRSS"));
        if let Some(kb) = rss_end {
            self.peak.fetch_max(kb, Ordering::Relaxed);
        }
        let broker_cpu = match (self.pid.and_then(cpu_secs), self.broker_cpu0) {
            (Some(end), Some(start)) => Some(end - start),
            _ => None,
        };
        let gen_cpu = own_cpu_secs() - self.own_cpu0;
        ResourceReport {
            broker_pid: self.pid,
            broker_cpu_secs: broker_cpu.map(round3),
            broker_cpu_util: broker_cpu.map(|c| round3(c / wall)),
            broker_rss_start_kb: self.rss_start,
            broker_rss_end_kb: rss_end,
            broker_peak_rss_kb: self.pid.map(|_| self.peak.load(Ordering::Relaxed)),
            broker_vmhwm_kb: self.pid.and_then(|p| status_kb(p, "VmHWM")),
            gen_cpu_secs: round3(gen_cpu),
            gen_cpu_util: round3(gen_cpu / wall),
            phase_secs: round3(wall),
        }
    }
}

/// Rounds to three decimals for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
