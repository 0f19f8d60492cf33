//! `stats --no-stream`: one sample of a running container's CPU, memory and pids, as Docker's
//! columns. Usage is summed over the container's processes (those in PID 1's pid namespace,
//! from /proc), so it works with or without a cgroup; the memory limit is the container's
//! cgroup limit when it has one (`-m`), else the host's memory, as Docker shows.

use std::time::{Duration, Instant};

use super::{manage, Container, ContainerError};

/// Time between the two CPU samples.
const SAMPLE: Duration = Duration::from_millis(500);

/// One container's figures.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Percent of one CPU (Docker's: 100% = one full CPU).
    pub cpu_percent: f64,
    /// Memory in use, in bytes: the resident set of the container's processes.
    pub mem_usage: u64,
    /// The memory limit in bytes (`--memory`); the host's memory when none is set.
    pub mem_limit: u64,
    /// Number of processes in the container.
    pub pids: usize,
}

fn ticks(pid: i32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // utime and stime: fields 14 and 15 (11th and 12th after the state).
    let f: Vec<&str> = after.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn rss(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Samples the running container `c`.
pub fn sample(c: &Container) -> Result<Stats, ContainerError> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let before: u64 = manage::pids(c)?.into_iter().map(ticks).sum();
    let t0 = Instant::now();
    std::thread::sleep(SAMPLE);
    let pids = manage::pids(c)?;
    let after: u64 = pids.iter().copied().map(ticks).sum();
    let secs = t0.elapsed().as_secs_f64();
    let cpu_percent = after.saturating_sub(before) as f64 / hz / secs * 100.0;
    let limit = c
        .config
        .as_ref()
        .and_then(|cfg| cfg.spec.limits.memory)
        .unwrap_or_else(host_memory);
    Ok(Stats {
        cpu_percent,
        mem_usage: pids.iter().copied().map(rss).sum(),
        mem_limit: limit,
        pids: pids.len(),
    })
}

/// Go's `units.BytesSize` (docker stats' memory column): binary units, 4 significant digits.
pub fn bytes_size(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    // %.4g: four significant digits, trailing zeros dropped.
    let digits = if v >= 1000.0 {
        0
    } else if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytes_size_is_go_units() {
        assert_eq!(super::bytes_size(64 << 20), "64MiB");
        assert_eq!(super::bytes_size(1536 * 1024), "1.5MiB");
        assert_eq!(super::bytes_size(512), "512B");
        assert_eq!(super::bytes_size(3_182_592), "3.035MiB");
    }
}
