//! The playground's child processes (PD, storage nodes, proxy) from start to stop: it
//! starts each from a [`Spec`], notices one that exits, reports it (name, pid, exit status
//! and the last lines of its log) and starts it again after a pause, or leaves it down when
//! the playground runs with `--no-restart`; and it stops them all.
//!
//! Invariants:
//! - a child is only ever started from its [`Spec`], so a restart runs the same program
//!   with the same arguments (hence the same configuration file, data directory and ports)
//!   and appends to the same log: a storage node rejoins with its data;
//! - every child is started on the thread that runs the playground (the runtime is
//!   single-threaded), because `PR_SET_PDEATHSIG` fires when the *thread* that forked the
//!   child ends: a child started from another thread could be killed early, or outlive a
//!   SIGKILLed playground;
//! - an exit is reported exactly once, when it is first seen; the child is then down, with
//!   a time to start again or none (`--no-restart`);
//! - a child that keeps dying soon after it starts waits longer each time (doubling up to
//!   [`MAX_PAUSE`]), so a crash loop does not flood the terminal; one that ran for
//!   [`STEADY`] starts again after [`FIRST_PAUSE`];
//! - [`Children::stop`] (also run on drop) ends every running child in reverse start order
//!   (proxy first, PD last) and waits for each; a child waiting for its restart is simply
//!   never started again.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pause before a dead child starts again, when it had been running steadily.
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause, for a child that keeps dying soon after it starts.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// A child that ran this long before it died was running steadily.
const STEADY: Duration = Duration::from_secs(30);
/// How long a child gets to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Lines of a dead child's log that are reported.
const TAIL_LINES: usize = 20;
/// The most of a log's end that is read for its last lines.
const TAIL_BYTES: u64 = 64 * 1024;

/// How to start one child; every (re)start uses it unchanged.
pub struct Spec {
    /// Its name in reports (`pd`, `storage-2`, `proxy`).
    pub name: String,
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The file its stdout and stderr are appended to.
    pub log: PathBuf,
}

/// What happens to a child that exits once the cluster is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExit {
    /// Start it again after a pause.
    Restart,
    /// Leave it down (`--no-restart`).
    StayDown,
}

/// Where one child is.
enum State {
    /// Started at `since`.
    Running { child: Child, since: Instant },
    /// Exited; starts again at `restart_at`, or never (`None`).
    Down { restart_at: Option<Instant> },
}

/// One child: how to start it, where it is, and the pause before its last restart.
struct Supervised {
    spec: Spec,
    state: State,
    last_pause: Option<Duration>,
}

/// How a child ended.
struct Exit {
    pid: u32,
    status: String,
    ran: Duration,
}

/// Every child of the playground, in start order. Dropping it stops them.
pub struct Children {
    all: Vec<Supervised>,
    on_exit: OnExit,
}

impl Children {
    pub fn new(on_exit: OnExit) -> Children {
        Children {
            all: Vec::new(),
            on_exit,
        }
    }

    /// Starts a child; an error if it cannot be started (nothing is then recorded).
    pub fn start(&mut self, spec: Spec) -> Result<(), String> {
        let child = spawn(&spec)?;
        self.all.push(Supervised {
            spec,
            state: State::Running {
                child,
                since: Instant::now(),
            },
            last_pause: None,
        });
        Ok(())
    }

    /// Each child's name and pid (`None` while it is down), in start order.
    pub fn pids(&self) -> Vec<(&str, Option<u32>)> {
        self.all
            .iter()
            .map(|s| {
                let pid = match &s.state {
                    State::Running { child, .. } => Some(child.id()),
                    State::Down { .. } => None,
                };
                (s.spec.name.as_str(), pid)
            })
            .collect()
    }

    /// While the cluster starts, any exit is fatal: the report of the first child found
    /// exited (it is left down).
    pub fn first_exit(&mut self) -> Option<String> {
        self.all
            .iter_mut()
            .find_map(|s| s.reap().map(|exit| s.report(&exit)))
    }

    /// One round of supervision once the cluster is up: reports each child that exited
    /// since the last round and schedules its restart (or leaves it down), then starts
    /// every child whose pause is over.
    pub fn supervise(&mut self, now: Instant) {
        for s in &mut self.all {
            if let Some(exit) = s.reap() {
                eprintln!("zankv: {}", s.report(&exit));
                s.schedule(&exit, self.on_exit, now);
            }
        }
        for s in &mut self.all {
            s.restart_if_due(now);
        }
    }

    /// Every child's name, log and last log lines (for a start that failed).
    pub fn log_tails(&self) -> String {
        self.all
            .iter()
            .map(|s| {
                format!(
                    "--- {} ({}) ---\n{}",
                    s.spec.name,
                    s.spec.log.display(),
                    tail(&s.spec.log)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGTERM to each running child, newest first, waiting for it to exit (SIGKILL after
    /// [`STOP_DEADLINE`]); children waiting to restart are dropped.
    pub fn stop(&mut self) {
        while let Some(s) = self.all.pop() {
            if let State::Running { child, .. } = s.state {
                stop_child(&s.spec.name, child);
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Supervised {
    /// How it ended, if it was running and has exited since the last look; it is then
    /// down with no restart scheduled.
    fn reap(&mut self) -> Option<Exit> {
        let State::Running { child, since } = &mut self.state else {
            return None;
        };
        let status = match child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => status.to_string(),
            Err(e) => format!("status unknown: {e}"),
        };
        let exit = Exit {
            pid: child.id(),
            status,
            ran: since.elapsed(),
        };
        self.state = State::Down { restart_at: None };
        Some(exit)
    }

    /// What to tell the user about its exit: who, how, and its log's last lines.
    fn report(&self, exit: &Exit) -> String {
        let lines: Vec<String> = tail(&self.spec.log)
            .lines()
            .map(|l| format!("    {l}"))
            .collect();
        format!(
            "{} (pid {}) exited ({}) after {}s; the last lines of its log ({}):\n{}",
            self.spec.name,
            exit.pid,
            exit.status,
            exit.ran.as_secs(),
            self.spec.log.display(),
            lines.join("\n")
        )
    }

    /// Sets when it starts again after `exit`, and says so.
    fn schedule(&mut self, exit: &Exit, on_exit: OnExit, now: Instant) {
        if on_exit == OnExit::StayDown {
            eprintln!(
                "zankv: {} stays down (--no-restart); the other processes keep running",
                self.spec.name
            );
            return;
        }
        let pause = pause_before_restart(self.last_pause, exit.ran);
        self.last_pause = Some(pause);
        self.state = State::Down {
            restart_at: Some(now + pause),
        };
        mark_log(
            &self.spec.log,
            &format!(
                "--- zankv playground: {} (pid {}) exited ({}); restarting it in {pause:?} ---",
                self.spec.name, exit.pid, exit.status
            ),
        );
        println!(
            "zankv: restarting {} in {pause:?} (same data, ports and arguments)",
            self.spec.name
        );
    }

    /// Starts it again if it is down and its pause is over. A start that fails is
    /// reported and tried again after a longer pause.
    fn restart_if_due(&mut self, now: Instant) {
        let State::Down {
            restart_at: Some(at),
        } = self.state
        else {
            return;
        };
        if now < at {
            return;
        }
        match spawn(&self.spec) {
            Ok(child) => {
                println!("zankv: restarted {} (pid {})", self.spec.name, child.id());
                self.state = State::Running { child, since: now };
            }
            Err(e) => {
                let pause = pause_before_restart(self.last_pause, Duration::ZERO);
                self.last_pause = Some(pause);
                eprintln!(
                    "zankv: cannot restart {}: {e}; trying again in {pause:?}",
                    self.spec.name
                );
                self.state = State::Down {
                    restart_at: Some(now + pause),
                };
            }
        }
    }
}

/// The pause before a restart, from the pause before the previous one (`None`: there was
/// none) and how long the child ran: [`FIRST_PAUSE`] after a steady run, else twice the
/// previous pause, at most [`MAX_PAUSE`].
fn pause_before_restart(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(last) if ran < STEADY => (last * 2).min(MAX_PAUSE),
        _ => FIRST_PAUSE,
    }
}

/// Starts `spec`'s program with its output appended to its log.
fn spawn(spec: &Spec) -> Result<Child, String> {
    let log = &spec.log;
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Its own process group: a terminal's Ctrl-C reaches the playground, which
            // stops the children in order.
            libc::setpgid(0, 0);
            // SIGTERM when the playground dies without stopping it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.program.display()))
}

/// SIGTERM, then waits for it to exit (SIGKILL after [`STOP_DEADLINE`]).
fn stop_child(name: &str, mut child: Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    // SAFETY: kill(2) on the pid of a child not yet reaped (try_wait saw it run).
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_DEADLINE;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) if Instant::now() >= deadline => {
                eprintln!("zankv: {name} did not stop within {STOP_DEADLINE:?}; killing it");
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    println!("zankv: stopped {name}");
}

/// Appends one line to a log, so that reading it shows where the playground restarted
/// the process (best effort: a log that cannot be written is no reason to stay down).
fn mark_log(log: &Path, line: &str) {
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(file, "{line}");
    }
}

/// The last [`TAIL_LINES`] lines of a log.
fn tail(log: &Path) -> String {
    match read_end(log, TAIL_BYTES) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// At most the last `max` bytes of a file.
fn read_end(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_waits_longer_each_time_and_a_steady_run_resets_the_pause() {
        let quick = Duration::from_secs(2);
        let mut pause = pause_before_restart(None, quick);
        assert_eq!(pause, FIRST_PAUSE);
        let mut seen = vec![pause];
        for _ in 0..7 {
            pause = pause_before_restart(Some(pause), quick);
            seen.push(pause);
        }
        let secs: Vec<u64> = seen.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(pause_before_restart(Some(MAX_PAUSE), STEADY), FIRST_PAUSE);
    }
}
