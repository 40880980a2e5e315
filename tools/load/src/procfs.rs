//! The server's CPU time and memory from `/proc`: utime+stime of each process
//! (its threads included) and of its descendants, VmRSS and VmHWM.

use std::{collections::BTreeSet, fs};

/// CPU seconds and memory of a set of processes at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    /// utime + stime, seconds, summed.
    pub cpu_seconds: f64,
    /// VmRSS, KiB, summed.
    pub rss_kib: u64,
    /// VmHWM, KiB, summed.
    pub hwm_kib: u64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// (ppid, utime + stime in ticks) from the text of `/proc/PID/stat`.
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the name start at field 3 (state): ppid is 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// A `/proc/PID/status` field in KiB (`VmRSS:   1234 kB`).
pub fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The processes and every live descendant.
fn with_descendants(pids: &[u32]) -> BTreeSet<u32> {
    let mut set: BTreeSet<u32> = pids.iter().copied().collect();
    let Ok(dir) = fs::read_dir("/proc") else {
        return set;
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parse_stat(&stat)?.0))
        })
        .collect();
    loop {
        let before = set.len();
        for (pid, ppid) in &parents {
            if set.contains(ppid) {
                set.insert(*pid);
            }
        }
        if set.len() == before {
            return set;
        }
    }
}

/// Samples `pids` and their descendants now.
pub fn sample(pids: &[u32]) -> Sample {
    let tps = ticks_per_second();
    let mut s = Sample::default();
    for pid in with_descendants(pids) {
        if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
            if let Some((_, ticks)) = parse_stat(&stat) {
                s.cpu_seconds += ticks as f64 / tps;
            }
        }
        if let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) {
            s.rss_kib += status_kib(&status, "VmRSS");
            s.hwm_kib += status_kib(&status, "VmHWM");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_in_the_name() {
        let stat = "1234 (my (odd) prog) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_stat(stat), Some((77, 300)));
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), 10240);
        assert_eq!(status_kib(status, "VmHWM"), 20480);
        assert_eq!(status_kib(status, "VmSwap"), 0);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(&[std::process::id()]);
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
    }
}
