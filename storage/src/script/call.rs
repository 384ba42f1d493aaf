//! `redis.call` and `redis.pcall`: one command of a running script, run against the
//! partition's applied state plus the script's own earlier writes.
//!
//! Reads run on the script's transaction as they would on the partition; writes run inside
//! it as a transaction's commands do at apply time ([`crate::partition::run_in`]), and
//! their arguments are recorded: replaying them in order on the same state gives the same
//! data, which is how replicas apply a script ([`crate::change::Change::Effects`]). The
//! transaction itself is never written.

use bytes::Bytes;
use zankv_commands::{Access, CommandError, ConnectionCommand, Reply, Routed};

use super::{Running, ScriptJob};
use crate::change::Change;
use crate::data::{self, EngineView, ExecError, ReadCtx, ScanCursors, Txn};
use crate::engine::EngineError;
use crate::partition::{self, Partition};

/// Errors `redis.call` raises itself, before a command runs (Redis 7.0's texts).
pub(super) const NO_ARGUMENTS: &str =
    "ERR Please specify at least one argument for this redis lib call";
pub(super) const BAD_ARGUMENT: &str =
    "ERR Lua redis lib command arguments must be strings or integers";
const UNKNOWN_COMMAND: &str = "ERR Unknown Redis command called from script";
const WRONG_ARITY: &str = "ERR Wrong number of args calling Redis command from script";
const NOT_ALLOWED: &str = "ERR This Redis command is not allowed from script";
const READ_ONLY: &str = "ERR Write commands are not allowed from read-only scripts.";
const NON_LOCAL_KEY: &str = "ERR Script attempted to access a non local key in a cluster node";
const CROSS_SLOT: &str = "ERR Script attempted to access keys that do not hash to the same slot";
/// A write of a script SCRIPT KILL stopped.
const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";

/// What a script's commands run against.
pub(super) struct CallCtx<'a> {
    txn: Txn<'a>,
    job: &'a ScriptJob,
    cursors: &'a mut ScanCursors,
    running: &'a Running,
    read_only: bool,
    commands: Vec<Vec<Bytes>>,
    /// The encoded size of `commands` (they must fit one raft entry).
    size: usize,
}

/// A command's outcome for the script: its reply, or an error (its text, code first).
pub(super) type CallResult = Result<Reply, String>;

impl<'a> CallCtx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        job: &'a ScriptJob,
        read_only: bool,
        view: &'a EngineView<'a>,
        partition: &Partition,
        now_ms: i64,
        cursors: &'a mut ScanCursors,
        running: &'a Running,
    ) -> Self {
        // The effects apply as the entry after the state read: what depends on the log
        // index there (SPOP's random choice) must be drawn here as it will be there.
        let mut state = partition.state();
        state.applied_index += 1;
        CallCtx {
            txn: Txn::new(view, now_ms, state),
            job,
            cursors,
            running,
            read_only,
            commands: Vec::new(),
            size: 0,
        }
    }

    /// Replays the effects of earlier scripts not applied yet (time, commands, in log
    /// order) before this script runs, as replicas will apply them: each as the next
    /// entry, at its own time.
    pub(super) fn replay(&mut self, on_top: &[(i64, &[Vec<Bytes>])]) -> Result<(), EngineError> {
        let (now_ms, index) = (self.txn.now_ms, self.txn.state.applied_index);
        // The state read is `on_top.len()` entries further on.
        self.txn.state.applied_index = index - 1;
        for (at, commands) in on_top {
            self.txn.state.applied_index += 1;
            self.txn.now_ms = *at;
            partition::replay_effects(&mut self.txn, commands, self.cursors)?;
        }
        self.txn.state.applied_index = index + on_top.len() as u64;
        self.txn.now_ms = now_ms;
        Ok(())
    }

    /// The write commands run so far.
    pub(super) fn into_commands(self) -> Vec<Vec<Bytes>> {
        self.commands
    }

    /// Runs one command of the script.
    pub(super) fn call(&mut self, argv: Vec<Bytes>) -> CallResult {
        let Some(spec) = argv.first().and_then(|name| zankv_commands::lookup(name)) else {
            return Err(UNKNOWN_COMMAND.into());
        };
        if !spec.arity_ok(argv.len()) {
            return Err(WRONG_ARITY.into());
        }
        if spec.access == Access::Script
            || spec.timeout_at.is_some()
            || spec.flags.contains(&"noscript")
        {
            return Err(NOT_ALLOWED.into());
        }
        let (cmd, spec) = match zankv_commands::parse(&argv) {
            Ok(parsed) => parsed,
            Err(CommandError::WrongArity(_)) => return Err(WRONG_ARITY.into()),
            Err(e) => return Err(e.to_string()),
        };
        let routed = cmd.route();
        if matches!(routed, Routed::Write(_)) && self.read_only {
            return Err(READ_ONLY.into());
        }
        if spec.key_positions(&argv).next().is_some() {
            match self.job.routing.route(spec, &argv) {
                Ok(group) if group == self.job.group => {}
                Ok(_) => return Err(NON_LOCAL_KEY.into()),
                Err(CommandError::CrossSlot) => return Err(CROSS_SLOT.into()),
                Err(e) => return Err(e.to_string()),
            }
        }
        match routed {
            Routed::Connection(c) => connection(c),
            Routed::Script(_) => Err(NOT_ALLOWED.into()),
            Routed::Read(read) => {
                let mut ctx = ReadCtx {
                    view: &self.txn,
                    now_ms: self.txn.now_ms,
                    state: self.txn.state,
                    cursors: self.cursors,
                };
                let result = data::execute_read(&mut ctx, &read);
                // Keys a read finds expired stay for the partition's own expiry: a
                // script's effects are its writes only.
                self.txn.take_noted_expired();
                outcome(result)
            }
            Routed::Write(write) => {
                if !self.running.begin_write() {
                    return Err(KILLED.into());
                }
                self.size += Change::command_size(&argv);
                if self.size > self.job.max_write_bytes {
                    return Err(
                        CommandError::WriteTooLarge(self.size, self.job.max_write_bytes)
                            .to_string(),
                    );
                }
                // Every write is recorded, even one that fails: replaying it does exactly
                // what it did here (a failing command may still delete keys it found
                // expired).
                self.commands.push(argv);
                let result =
                    partition::run_in(&mut self.txn, |txn| data::execute_write(txn, &write));
                let result = match result {
                    Ok(reply) => Ok(reply),
                    Err(e) => Err(ExecError::Engine(e)),
                };
                outcome(result)
            }
        }
    }
}

/// A read's or write's result as a script sees it.
fn outcome(result: Result<Reply, ExecError>) -> CallResult {
    match result {
        Ok(Reply::Error(e)) | Err(ExecError::Command(e)) => Err(e.to_string()),
        Ok(reply) => Ok(reply),
        Err(ExecError::Engine(e)) => Err(CommandError::Internal(e.to_string()).to_string()),
    }
}

/// The connection commands a script may run: those that depend on nothing (PING, ECHO,
/// TIME, SELECT 0).
fn connection(c: ConnectionCommand) -> CallResult {
    match c {
        ConnectionCommand::Ping(_)
        | ConnectionCommand::Echo(_)
        | ConnectionCommand::Time
        | ConnectionCommand::Select(_) => {
            let mut session = zankv_commands::connection::ClientSession::new(0);
            match c.answer(&mut session) {
                Some(Reply::Error(e)) => Err(e.to_string()),
                Some(reply) => Ok(reply),
                None => Err(NOT_ALLOWED.into()),
            }
        }
        _ => Err(NOT_ALLOWED.into()),
    }
}
