//! Reading another process's memory, descriptors, threads and TCP connections from /proc (Linux), for
//! the benchmarks and the soak.

use std::collections::HashSet;

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// Peak resident set size of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time `pid` has used in user space and in the kernel, in clock ticks (`/proc/PID/stat` fields
/// 14 and 15; 100 a second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// Clock ticks per second of `cpu_ticks`.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// Threads of `pid`.
pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads:")
}

/// Open file descriptors of `pid`.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Established TCP connections of `pid` whose remote port is `port`.
pub fn established_to(pid: u32, port: u16) -> usize {
    established(pid, |_, remote| remote == port)
}

/// Established TCP connections of `pid` for which `wanted(local port, remote port)` holds.
pub fn established(pid: u32, wanted: impl Fn(u16, u16) -> bool) -> usize {
    let inodes = socket_inodes(pid);
    let port =
        |addr: Option<&&str>| addr.and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_string).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // cols: sl local_address rem_address st ... inode (index 9); state 01 = ESTABLISHED.
            let (Some(local), Some(remote)) = (port(cols.get(1)), port(cols.get(2))) else { return false };
            let established = cols.get(3) == Some(&"01");
            let inode = cols.get(9).and_then(|i| i.parse::<u64>().ok());
            established && inode.is_some_and(|i| inodes.contains(&i)) && wanted(local, remote)
        })
        .count()
}

fn socket_inodes(pid: u32) -> HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return HashSet::new() };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}
