//! The simulator's own CPU time, to show whether it was saturated (and so
//! whether the measured limit is the server's or the simulator's).

use std::time::Duration;

/// Clock ticks per second of /proc's times (`USER_HZ`): 100 on every Linux
/// architecture, whatever the kernel's internal HZ. Reading it with
/// `sysconf` would need `libc` and `unsafe`, which the workspace forbids.
const USER_HZ: f64 = 100.0;

/// User plus system CPU time of this process so far, from
/// `/proc/self/stat` (10 ms resolution); `None` off Linux.
pub(crate) fn process_cpu_time() -> Option<Duration> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_stat(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces;
    // the fields after it start with field 3, so utime (14) and stime (15)
    // are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((utime + stime) as f64 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime() {
        let stat = "4242 (m2m (sim) x) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 8 0 100";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(1750)));
        assert_eq!(parse_stat("garbage"), None);
        if cfg!(target_os = "linux") {
            assert!(process_cpu_time().is_some());
        }
    }
}
