//! What the operating system says this process uses: resident memory, CPU time, and the
//! machine's memory (INFO's memory and cpu sections). Linux only: elsewhere they read 0.

/// The process's resident memory in bytes.
pub fn rss_bytes() -> u64 {
    // /proc/self/statm: sizes in pages; the second is the resident set.
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// The machine's memory in bytes.
pub fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU seconds used: system and user time of the process, then of its waited-for children.
pub fn cpu_seconds() -> [f64; 4] {
    let times = |who| {
        // SAFETY: getrusage only writes the struct it is given, which lives for the call.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut usage) } != 0 {
            return (0.0, 0.0);
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        (secs(usage.ru_stime), secs(usage.ru_utime))
    };
    let (sys, user) = times(libc::RUSAGE_SELF);
    let (sys_children, user_children) = times(libc::RUSAGE_CHILDREN);
    [sys, user, sys_children, user_children]
}

/// A new run id: 40 hex digits, different at every start.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 20];
    // SAFETY: getrandom writes at most `len` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
            ^ u128::from(std::process::id());
        bytes.copy_from_slice(&seed.to_le_bytes().repeat(2)[..20]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_uses_some_memory_and_time() {
        assert!(rss_bytes() > 1 << 20);
        assert!(total_system_memory() > rss_bytes());
        let _ = vec![0u8; 1 << 20]
            .iter()
            .map(|b| u64::from(*b))
            .sum::<u64>();
        assert!(cpu_seconds()[1] >= 0.0);
        let (a, b) = (new_run_id(), new_run_id());
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
    }
}
