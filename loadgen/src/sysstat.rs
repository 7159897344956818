//! What the kernel says about a load test (Linux `/proc`): CPU time of a process and of each of
//! its threads, the machine's CPU split, UDP error counters, packets dropped on the way in, and
//! datagrams dropped at a process's own sockets. Everything returns `None` where `/proc` is not
//! there or not readable, so the load generator still runs elsewhere (without these numbers).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

/// `USER_HZ`: the unit of the times in `/proc/*/stat` and `/proc/stat` (100 on every Linux).
const USER_HZ: f64 = 100.0;

/// utime + stime in seconds from the text of a `/proc/PID/stat` or `/proc/PID/task/TID/stat`,
/// and the command (thread) name.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    // The name is in parentheses and may itself contain ')' or spaces.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((name, ticks / USER_HZ))
}

/// CPU seconds used so far by a whole process (every thread, dead ones included).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s).map(|(_, t)| t)
}

/// Resident memory of a process now and at its peak (`VmRSS`, `VmHWM` of `/proc/PID/status`),
/// in bytes.
pub fn process_memory(pid: u32) -> Option<(u64, u64)> {
    parse_memory(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

fn parse_memory(status: &str) -> Option<(u64, u64)> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    Some((kb("VmRSS:")? * 1024, kb("VmHWM:")? * 1024))
}

/// CPU seconds used so far by the calling process.
pub fn own_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&s).map(|(_, t)| t)
}

/// CPU seconds of each live thread of a process, by thread id: `(name, seconds)`.
pub fn thread_cpu_seconds(pid: u32) -> Option<HashMap<u32, (String, f64)>> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(e) = e else { continue };
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        // A thread can end between listing and reading: skip it.
        let Ok(s) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some(v) = parse_stat(&s) {
            out.insert(tid, v);
        }
    }
    Some(out)
}

/// CPU seconds per thread name between two samples of [`thread_cpu_seconds`], divided by
/// `window` seconds; threads of the same name (tokio workers) are summed. A thread that ended
/// in between is missing from the result (its time is still in the process total).
pub fn thread_cpu_rates(
    before: &HashMap<u32, (String, f64)>,
    after: &HashMap<u32, (String, f64)>,
    window: f64,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (tid, (name, t1)) in after {
        let t0 = before.get(tid).map_or(0.0, |(_, t)| *t);
        *out.entry(name.clone()).or_insert(0.0) += (t1 - t0) / window;
    }
    out
}

/// The machine's CPU time split (`/proc/stat`, first line), in seconds summed over all CPUs.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SystemCpu {
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
}

impl SystemCpu {
    pub fn read() -> Option<Self> {
        let s = std::fs::read_to_string("/proc/stat").ok()?;
        let line = s.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|x| x.parse::<f64>().map(|t| t / USER_HZ))
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self {
            user: *v.first()?,
            nice: *v.get(1)?,
            system: *v.get(2)?,
            idle: *v.get(3)?,
            iowait: v.get(4).copied().unwrap_or(0.0),
            irq: v.get(5).copied().unwrap_or(0.0),
            softirq: v.get(6).copied().unwrap_or(0.0),
            steal: v.get(7).copied().unwrap_or(0.0),
        })
    }

    /// Per-second rates (in cores) between `self` (earlier) and `later`.
    pub fn rates(&self, later: &Self, window: f64) -> Self {
        let r = |a: f64, b: f64| (b - a) / window;
        Self {
            user: r(self.user, later.user),
            nice: r(self.nice, later.nice),
            system: r(self.system, later.system),
            idle: r(self.idle, later.idle),
            iowait: r(self.iowait, later.iowait),
            irq: r(self.irq, later.irq),
            softirq: r(self.softirq, later.softirq),
            steal: r(self.steal, later.steal),
        }
    }

    /// Cores busy (everything but idle and iowait).
    pub fn busy(&self) -> f64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }
}

/// The UDP counters of `/proc/net/snmp` (this network namespace, all sockets).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub no_ports: u64,
    pub in_errors: u64,
    pub out_datagrams: u64,
    /// Datagrams dropped because a receiving socket's buffer was full.
    pub rcvbuf_errors: u64,
    /// Sends that failed for lack of send buffer.
    pub sndbuf_errors: u64,
    /// Datagrams dropped because UDP as a whole was over `net.ipv4.udp_mem`.
    pub mem_errors: u64,
}

impl UdpCounters {
    pub fn read() -> Option<Self> {
        let s = std::fs::read_to_string("/proc/net/snmp").ok()?;
        let mut lines = s.lines().filter(|l| l.starts_with("Udp: "));
        let names: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
        let values: Vec<&str> = lines.next()?.split_whitespace().skip(1).collect();
        let get = |n: &str| -> u64 {
            names
                .iter()
                .position(|x| *x == n)
                .and_then(|i| values.get(i)?.parse().ok())
                .unwrap_or(0)
        };
        Some(Self {
            in_datagrams: get("InDatagrams"),
            no_ports: get("NoPorts"),
            in_errors: get("InErrors"),
            out_datagrams: get("OutDatagrams"),
            rcvbuf_errors: get("RcvbufErrors"),
            sndbuf_errors: get("SndbufErrors"),
            mem_errors: get("MemErrors"),
        })
    }

    /// `later - self`, counter by counter.
    pub fn delta(&self, later: &Self) -> Self {
        Self {
            in_datagrams: later.in_datagrams.wrapping_sub(self.in_datagrams),
            no_ports: later.no_ports.wrapping_sub(self.no_ports),
            in_errors: later.in_errors.wrapping_sub(self.in_errors),
            out_datagrams: later.out_datagrams.wrapping_sub(self.out_datagrams),
            rcvbuf_errors: later.rcvbuf_errors.wrapping_sub(self.rcvbuf_errors),
            sndbuf_errors: later.sndbuf_errors.wrapping_sub(self.sndbuf_errors),
            mem_errors: later.mem_errors.wrapping_sub(self.mem_errors),
        }
    }
}

/// Packets dropped because a CPU's input backlog (`net.core.netdev_max_backlog`) was full:
/// the second column of `/proc/net/softnet_stat`, summed over CPUs. On loopback every sent
/// datagram passes through this queue before UDP sees it.
pub fn softnet_dropped() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/net/softnet_stat").ok()?;
    let mut sum = 0u64;
    for l in s.lines() {
        let col = l.split_whitespace().nth(1)?;
        sum += u64::from_str_radix(col, 16).ok()?;
    }
    Some(sum)
}

/// Datagrams dropped at the UDP sockets of process `pid` (`None`: this process) since each
/// socket was opened: the `drops` column of `/proc/net/udp` and `/proc/net/udp6` for the
/// socket inodes the process holds. Also returns how many sockets were matched.
pub fn socket_drops(pid: Option<u32>) -> Option<(u64, usize)> {
    let dir = pid.map_or_else(|| "/proc/self/fd".to_string(), |p| format!("/proc/{p}/fd"));
    let mut inodes = HashSet::new();
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            if let Some(n) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                inodes.insert(n);
            }
        }
    }
    let mut drops = 0;
    let mut matched = 0;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(s) = std::fs::read_to_string(table) else {
            continue;
        };
        for l in s.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(inode), Some(d)) = (
                f.get(9).and_then(|x| x.parse::<u64>().ok()),
                f.get(12).and_then(|x| x.parse::<u64>().ok()),
            ) else {
                continue;
            };
            if inodes.contains(&inode) {
                drops += d;
                matched += 1;
            }
        }
    }
    Some((drops, matched))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names() {
        let s = "42 (tokio-runtime-w) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(parse_stat(s), Some(("tokio-runtime-w".into(), 3.0)));
        let s = "43 (a) b (c) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0";
        assert_eq!(parse_stat(s), Some(("a) b (c".into(), 0.03)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_visible() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        assert!(own_cpu_seconds().is_some());
        let threads = thread_cpu_seconds(std::process::id()).unwrap();
        assert!(!threads.is_empty());
        assert!(SystemCpu::read().unwrap().idle >= 0.0);
        let udp = UdpCounters::read().unwrap();
        assert_eq!(udp.delta(&udp).rcvbuf_errors, 0);
        let _sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        // Other tests of this binary may hold sockets too.
        let (_, matched) = socket_drops(None).unwrap();
        assert!(matched >= 1);
    }

    #[test]
    fn memory_figures_come_from_the_status_file() {
        let status = "Name:\tx\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_memory(status), Some((10_485_760, 20_971_520)));
        assert_eq!(parse_memory("Name:\tx\n"), None);
        assert!(process_memory(std::process::id()).is_some_and(|(rss, hwm)| rss > 0 && hwm >= rss));
    }
}
