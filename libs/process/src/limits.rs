//! Process limits: the open-file limit, raised to the hard limit at start (as Redis does),
//! since a storage node's partitions keep many files open and a proxy holds one socket per
//! client.

/// Raises the soft limit on open files to the hard limit; returns the limit now in effect.
pub fn raise_open_files() -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct it is given, which lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok(lim.rlim_cur);
    }
    Ok(lim.rlim_max)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_limit_is_at_least_what_it_was() {
        let before = super::raise_open_files().unwrap();
        assert!(before > 0);
        assert_eq!(super::raise_open_files().unwrap(), before, "already raised");
    }
}
