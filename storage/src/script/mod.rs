//! Lua scripts on a storage node: the node's script cache, the scripts running now
//! (SCRIPT KILL, BUSY), and running one script against a partition.
//!
//! How a script runs (Redis 7's effects replication, on raft):
//! 1. the connection resolves the body (EVALSHA from the cache; EVAL adds it) and sends a
//!    [`ScriptJob`] to the partition leader's store loop;
//! 2. the store loop holds the partition's other proposals and asks the worker to run the
//!    script once everything proposed so far is applied (`replication::scripts`);
//! 3. the worker runs it ([`run`]) on the applied state, its `redis.call` writes going
//!    into a transaction that is never written: what the script wrote is kept as the list
//!    of its write commands;
//! 4. the store loop proposes those commands as one [`crate::change::Change::Effects`]
//!    entry right after the state the script read, then lets the held proposals go; the
//!    client gets the script's reply once that entry is applied. Replicas replay the
//!    commands; they never run the script, so scripts may be non-deterministic.
//!
//! Invariants: a script's effects are all or nothing (one entry); a script that was
//! killed or failed before writing proposes no command; the cache holds only bodies that
//! compile.

mod args;
mod bit;
mod call;
mod cjson;
mod cmsgpack;
pub mod library;
mod lua;
mod structlib;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use zankv_commands::scripting::{self, ScriptFlags};
use zankv_commands::{CommandError, Reply};

use crate::change::Change;
use crate::data::{functions, EngineView, ScanCursors};
use crate::partition::Partition;
use crate::replication::log_store::GroupId;
use crate::routing::Routing;

/// Default `busy-reply-threshold` (Redis's `lua-time-limit`), in milliseconds.
pub const DEFAULT_BUSY_MS: u64 = 5000;

/// The node's scripts: the cache of bodies by SHA1 and the scripts running now.
pub struct Scripts {
    cache: Mutex<HashMap<String, Bytes>>,
    /// Bumped by SCRIPT FLUSH: the Lua states drop what they compiled.
    generation: AtomicU64,
    running: Mutex<HashMap<u64, Arc<Running>>>,
    /// How many scripts run now (the BUSY check reads it first).
    running_count: AtomicUsize,
    next_run: AtomicU64,
    busy_ms: AtomicU64,
}

/// A script running now.
#[derive(Debug)]
pub struct Running {
    started: Instant,
    /// The script's SHA1, or the function's name.
    name: String,
    /// The command that runs it, its arguments left out.
    command: Vec<Bytes>,
    /// A function (FCALL), not a script.
    function: bool,
    /// [`RUNNING`], [`WROTE`] (SCRIPT KILL refuses to stop it, UNKILLABLE, as Redis
    /// does) or [`KILLED`] (it stops at its next check and may not write): one atomic, so
    /// a kill and a first write cannot both succeed.
    state: AtomicU8,
}

/// A script that has neither written nor been killed.
const RUNNING: u8 = 0;
/// A script that has started a write.
const WROTE: u8 = 1;
/// A script SCRIPT KILL stopped.
const KILLED: u8 = 2;

impl Running {
    /// Whether SCRIPT KILL asked it to stop.
    pub fn killed(&self) -> bool {
        self.state.load(Ordering::Acquire) == KILLED
    }

    /// Marks that the script writes; false if it was killed (it must not write).
    fn begin_write(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, WROTE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == WROTE,
        }
    }

    /// Kills the script unless it has written; false if it has.
    fn kill(&self) -> bool {
        match self
            .state
            .compare_exchange(RUNNING, KILLED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == KILLED,
        }
    }
}

/// The BUSY answer while a script (`function`: false) or a function runs.
pub fn busy_error(function: bool) -> CommandError {
    if function {
        CommandError::BusyFunction
    } else {
        CommandError::Busy
    }
}

/// Removes a running script from the registry when dropped.
struct RunGuard<'a> {
    scripts: &'a Scripts,
    id: u64,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        lock(&self.scripts.running).remove(&self.id);
        self.scripts.running_count.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            running: Mutex::new(HashMap::new()),
            running_count: AtomicUsize::new(0),
            next_run: AtomicU64::new(1),
            busy_ms: AtomicU64::new(DEFAULT_BUSY_MS),
        }
    }
}

impl Scripts {
    /// Adds `body` to the cache if its shebang line is valid and it compiles; answers its
    /// SHA1 name.
    pub fn load(&self, body: &Bytes) -> Result<String, CommandError> {
        let sha = scripting::sha1_hex(body);
        if lock(&self.cache).contains_key(&sha) {
            return Ok(sha);
        }
        scripting::shebang(body)?;
        lua::compile_check(scripting::lua_source(body))?;
        lock(&self.cache).insert(sha.clone(), body.clone());
        Ok(sha)
    }

    /// The body named `sha`.
    pub fn get(&self, sha: &str) -> Option<Bytes> {
        lock(&self.cache).get(sha).cloned()
    }

    /// SCRIPT EXISTS: 1 or 0 for each name.
    pub fn exists(&self, shas: &[Bytes]) -> Reply {
        let cache = lock(&self.cache);
        Reply::Array(
            shas.iter()
                .map(|sha| {
                    let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                    Reply::Integer(i64::from(cache.contains_key(&sha)))
                })
                .collect(),
        )
    }

    /// SCRIPT FLUSH.
    pub fn flush(&self) {
        lock(&self.cache).clear();
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Scripts in the cache.
    pub fn cached(&self) -> usize {
        lock(&self.cache).len()
    }

    /// SCRIPT KILL (`function`: false) or FUNCTION KILL (true): stops the running scripts
    /// of that kind that have not written. While only the other kind runs, the answer is
    /// that kind's BUSY, as Redis answers.
    pub fn kill(&self, function: bool) -> Result<(), CommandError> {
        let running = lock(&self.running);
        if running.is_empty() {
            return Err(CommandError::NotBusy);
        }
        if running.values().all(|r| r.function != function) {
            return Err(busy_error(!function));
        }
        // Each script is killed unless it has written (one atomic step, so a script never
        // both writes and is killed); any that has written makes the answer UNKILLABLE.
        let mut unkillable = false;
        for r in running.values().filter(|r| r.function == function) {
            unkillable |= !r.kill();
        }
        if unkillable {
            return Err(CommandError::Unkillable);
        }
        Ok(())
    }

    /// Whether a script has run longer than `busy-reply-threshold` (then the node answers
    /// BUSY to most commands, as Redis does), and if so whether it is a function.
    pub fn busy(&self) -> Option<bool> {
        // Every command asks: without a script running, no lock is taken.
        if self.running_count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let limit = Duration::from_millis(self.busy_ms.load(Ordering::Relaxed));
        lock(&self.running)
            .values()
            .find(|r| r.started.elapsed() >= limit)
            .map(|r| r.function)
    }

    /// Scripts running now.
    pub fn running(&self) -> usize {
        lock(&self.running).len()
    }

    /// The script running longest: its name, the command that runs it (name, script or
    /// function, numkeys, keys), and for how long it has run in ms (FUNCTION STATS).
    pub fn running_info(&self) -> Option<(String, Vec<Bytes>, u128)> {
        lock(&self.running)
            .values()
            .max_by_key(|r| r.started.elapsed())
            .map(|r| {
                (
                    r.name.clone(),
                    r.command.clone(),
                    r.started.elapsed().as_millis(),
                )
            })
    }

    /// Sets `busy-reply-threshold` (milliseconds).
    pub fn set_busy_ms(&self, ms: u64) {
        self.busy_ms.store(ms, Ordering::Relaxed);
    }

    /// `busy-reply-threshold` (milliseconds).
    pub fn busy_ms(&self) -> u64 {
        self.busy_ms.load(Ordering::Relaxed)
    }

    fn begin(&self, job: &ScriptJob) -> (RunGuard<'_>, Arc<Running>) {
        let id = self.next_run.fetch_add(1, Ordering::Relaxed);
        let (verb, what) = match &job.function {
            Some(name) if job.read_only => ("fcall_ro", name.clone()),
            Some(name) => ("fcall", name.clone()),
            None if job.read_only => ("evalsha_ro", Bytes::from(job.sha.clone())),
            None => ("evalsha", Bytes::from(job.sha.clone())),
        };
        let mut command = vec![
            Bytes::from_static(verb.as_bytes()),
            what,
            Bytes::from(job.keys.len().to_string()),
        ];
        command.extend(job.keys.iter().cloned());
        let running = Arc::new(Running {
            started: Instant::now(),
            name: job.sha.clone(),
            command,
            function: job.function.is_some(),
            state: AtomicU8::new(RUNNING),
        });
        lock(&self.running).insert(id, running.clone());
        self.running_count.fetch_add(1, Ordering::AcqRel);
        (RunGuard { scripts: self, id }, running)
    }
}

/// A script to run on a partition's leader.
pub struct ScriptJob {
    /// Its SHA1 name.
    pub sha: String,
    /// Its body.
    pub body: Bytes,
    /// What its shebang line declares.
    pub flags: ScriptFlags,
    /// `KEYS`.
    pub keys: Vec<Bytes>,
    /// `ARGV`.
    pub args: Vec<Bytes>,
    /// EVAL_RO, EVALSHA_RO, FCALL_RO, or `flags=no-writes`: it may not write.
    pub read_only: bool,
    /// FCALL's function (then `sha` is its name and `body` is empty): found in the
    /// partition's libraries when the job runs.
    pub function: Option<Bytes>,
    /// The partition it runs on: every key it touches must be there.
    pub group: GroupId,
    /// Where keys belong.
    pub routing: Arc<Routing>,
    /// The node's scripts.
    pub scripts: Arc<Scripts>,
    /// Largest replicated write, encoded (`raft.max_entry_mb`): the most its effects may
    /// take.
    pub max_write_bytes: usize,
}

/// What running a script gave.
#[derive(Debug)]
pub struct Outcome {
    /// The script's reply.
    pub reply: Reply,
    /// Its write commands that succeeded, in order: its effects.
    pub commands: Vec<Vec<Bytes>>,
    /// The time it ran at (its effects are applied at that time).
    pub now_ms: i64,
}

/// Runs `job` at `now_ms` on `partition`'s applied state with `on_top` after it: the
/// effects (time, commands) of earlier scripts proposed but not applied yet, in log order.
pub fn run(
    job: &ScriptJob,
    partition: &Partition,
    on_top: &[(i64, &[Vec<Bytes>])],
    now_ms: i64,
    cursors: &mut ScanCursors,
) -> Outcome {
    let (_guard, running) = job.scripts.begin(job);
    let generation = job.scripts.generation.load(Ordering::Relaxed);
    let view = EngineView::new(partition.engine());
    let refused = |e: CommandError| Outcome {
        reply: Reply::Error(e),
        commands: Vec::new(),
        now_ms,
    };
    let found = match &job.function {
        None => None,
        Some(name) => match functions::find(&view, name) {
            Ok(Some(found)) => Some(found),
            Ok(None) => return refused(CommandError::FunctionNotFound),
            Err(e) => return refused(CommandError::Internal(e.to_string())),
        },
    };
    let read_only = match &found {
        // FCALL_RO runs only functions that declared they do not write; FCALL of one
        // that did runs it read-only.
        Some((_, info)) if info.flags.iter().any(|f| f.as_ref() == b"no-cluster") => {
            return refused(CommandError::NoClusterFlag)
        }
        Some((_, info)) if job.read_only && !info.no_writes() => {
            return refused(CommandError::WriteFunctionReadOnly)
        }
        Some((_, info)) => job.read_only || info.no_writes(),
        None => job.read_only,
    };
    let target = match &found {
        // The function's own name: FCALL finds it in any case.
        Some((library, info)) => lua::Target::Function {
            library,
            name: &info.name,
        },
        None => lua::Target::Script,
    };
    let mut ctx = call::CallCtx::new(job, read_only, &view, partition, now_ms, cursors, &running);
    if let Err(e) = ctx.replay(on_top) {
        return refused(CommandError::Internal(e.to_string()));
    }
    let reply = lua::run(job, target, generation, &running, &mut ctx);
    let commands = ctx.into_commands();
    let size = Change::effects_size(&commands);
    if size > job.max_write_bytes {
        return Outcome {
            reply: Reply::Error(CommandError::WriteTooLarge(size, job.max_write_bytes)),
            commands: Vec::new(),
            now_ms,
        };
    }
    Outcome {
        reply,
        commands,
        now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NamespaceConfig;
    use crate::engine::memory::MemoryEngine;
    use crate::routing::{group_id, NamespaceLayout};

    fn routing(partitions: u32) -> Arc<Routing> {
        let ns = NamespaceLayout::from(&NamespaceConfig {
            name: "default".into(),
            id: 1,
            partitions,
            replicas: vec![1, 2, 3],
            stale_reads: false,
        });
        Arc::new(Routing::new(vec![ns], "default"))
    }

    fn b(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    fn job(scripts: &Arc<Scripts>, body: &str, keys: &[&str], args: &[&str]) -> ScriptJob {
        let body = Bytes::copy_from_slice(body.as_bytes());
        let sha = scripts.load(&body).expect("compiles");
        ScriptJob {
            sha,
            flags: scripting::shebang(&body).expect("valid"),
            body,
            keys: b(keys),
            args: b(args),
            read_only: false,
            group: group_id(1, 0),
            routing: routing(1),
            scripts: scripts.clone(),
            max_write_bytes: 1 << 20,
            function: None,
        }
    }

    fn partition() -> Partition {
        Partition::open(Box::new(MemoryEngine::new())).expect("opens")
    }

    fn run_on(partition: &Partition, job: &ScriptJob) -> Outcome {
        run(job, partition, &[], 1_000, &mut ScanCursors::new(4))
    }

    fn get(partition: &Partition, key: &str) -> Reply {
        let (cmd, _) = zankv_commands::parse(&b(&["get", key])).expect("parses");
        let read = cmd.into_read().expect("a read");
        partition
            .read(&read, 1_000, 0, &mut ScanCursors::new(4))
            .reply
    }

    #[test]
    fn a_script_reads_its_own_writes_and_its_effects_replay_them() {
        let scripts = Arc::new(Scripts::default());
        let mut p = partition();
        let j = job(
            &scripts,
            "redis.call('set', KEYS[1], ARGV[1]); redis.call('incr', KEYS[2]); \
             redis.call('get', KEYS[1]); return {redis.call('get', KEYS[1]), redis.call('incr', KEYS[2])}",
            &["a", "n"],
            &["v"],
        );
        let outcome = run_on(&p, &j);
        assert_eq!(
            outcome.reply,
            Reply::Array(vec![Reply::bulk("v"), Reply::Integer(2)])
        );
        // Writes only, in order; the partition itself is untouched until they apply.
        assert_eq!(
            outcome.commands,
            vec![b(&["set", "a", "v"]), b(&["incr", "n"]), b(&["incr", "n"])]
        );
        assert_eq!(get(&p, "a"), Reply::Nil);
        let base = p.state().applied_index;
        let change = Change::Effects {
            now_ms: outcome.now_ms,
            base,
            commands: outcome.commands,
        };
        assert_eq!(p.apply(base + 1, &change).expect("applies"), Reply::OK);
        assert_eq!(get(&p, "a"), Reply::bulk("v"));
        assert_eq!(get(&p, "n"), Reply::bulk("2"));
    }

    #[test]
    fn random_choices_of_a_script_are_those_its_effects_replay() {
        let scripts = Arc::new(Scripts::default());
        let mut p = partition();
        let fill = Change::Command {
            now_ms: 1_000,
            argv: b(&["sadd", "s", "a", "b", "c", "d", "e", "f", "g", "h"]),
        };
        let index = p.state().applied_index + 1;
        p.apply(index, &fill).expect("applies");
        let outcome = run_on(
            &p,
            &job(
                &scripts,
                "return redis.call('spop', KEYS[1], 3)",
                &["s"],
                &[],
            ),
        );
        let Reply::Array(popped) = outcome.reply else {
            panic!("{:?}", outcome.reply)
        };
        let base = p.state().applied_index;
        let change = Change::Effects {
            now_ms: outcome.now_ms,
            base,
            commands: outcome.commands,
        };
        p.apply(base + 1, &change).expect("applies");
        for member in popped {
            let Reply::Bulk(m) = member else { panic!() };
            let (cmd, _) = zankv_commands::parse(&[
                Bytes::from_static(b"sismember"),
                Bytes::from_static(b"s"),
                m,
            ])
            .expect("parses");
            let read = cmd.into_read().expect("a read");
            let reply = p.read(&read, 1_000, 0, &mut ScanCursors::new(4)).reply;
            assert_eq!(
                reply,
                Reply::Integer(0),
                "the script popped it, the replay did not"
            );
        }
    }

    #[test]
    fn effects_apply_nowhere_but_right_after_the_state_they_were_made_on() {
        let scripts = Arc::new(Scripts::default());
        let mut p = partition();
        let outcome = run_on(
            &p,
            &job(
                &scripts,
                "return redis.call('set', KEYS[1], 'x')",
                &["a"],
                &[],
            ),
        );
        let stale = Change::Effects {
            now_ms: outcome.now_ms,
            base: p.state().applied_index + 1,
            commands: outcome.commands,
        };
        let index = p.state().applied_index + 1;
        match p.apply(index, &stale).expect("applies") {
            Reply::Error(CommandError::ClusterChanged(_)) => {}
            other => panic!("stale effects applied: {other:?}"),
        }
        assert_eq!(get(&p, "a"), Reply::Nil);
    }

    #[test]
    fn a_failed_write_is_kept_for_replay_and_the_earlier_ones_stay() {
        let scripts = Arc::new(Scripts::default());
        let p = partition();
        let outcome = run_on(
            &p,
            &job(
                &scripts,
                "redis.call('set', KEYS[1], '1'); return redis.call('lpush', KEYS[1], 'x')",
                &["a"],
                &[],
            ),
        );
        let Reply::Error(CommandError::Script(text)) = &outcome.reply else {
            panic!("{:?}", outcome.reply)
        };
        assert!(
            text.starts_with(
                "WRONGTYPE Operation against a key holding the wrong kind of value script: "
            ),
            "{text}"
        );
        assert_eq!(
            outcome.commands,
            vec![b(&["set", "a", "1"]), b(&["lpush", "a", "x"])]
        );
    }

    #[test]
    fn read_only_scripts_and_other_partitions_keys_are_refused() {
        let scripts = Arc::new(Scripts::default());
        let p = partition();
        let mut ro = job(
            &scripts,
            "return redis.call('set', KEYS[1], 'x')",
            &["a"],
            &[],
        );
        ro.read_only = true;
        let outcome = run_on(&p, &ro);
        assert!(
            matches!(&outcome.reply, Reply::Error(CommandError::Script(t)) if t.starts_with("ERR Write commands are not allowed from read-only scripts.")),
            "{:?}",
            outcome.reply
        );
        assert!(outcome.commands.is_empty());
        let mut wide = job(&scripts, "return redis.call('get', ARGV[1])", &[], &["k0"]);
        wide.routing = routing(8);
        let outside = (0..100)
            .map(|i| format!("k{i}"))
            .find(|k| wide.routing.key_group(k.as_bytes()).ok() != Some(wide.group))
            .expect("a key of another partition");
        wide.args = b(&[&outside]);
        let outcome = run_on(&p, &wide);
        assert!(
            matches!(&outcome.reply, Reply::Error(CommandError::Script(t)) if t.starts_with("ERR Script attempted to access a non local key in a cluster node")),
            "{:?}",
            outcome.reply
        );
    }

    #[test]
    fn script_kill_stops_a_script_that_has_not_written_only() {
        let scripts = Arc::new(Scripts::default());
        assert_eq!(scripts.kill(false), Err(CommandError::NotBusy));
        let endless = job(&scripts, "while true do end", &[], &[]);
        let runner = std::thread::spawn(move || {
            let p = partition();
            run_on(&p, &endless)
        });
        while scripts.running() == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        scripts.set_busy_ms(0);
        assert_eq!(scripts.busy(), Some(false));
        // FUNCTION KILL does not stop a script, as in Redis.
        assert_eq!(scripts.kill(true), Err(CommandError::Busy));
        scripts.kill(false).expect("killed");
        let outcome = runner.join().expect("script thread");
        match &outcome.reply {
            Reply::Error(CommandError::Script(t)) => assert!(
                t.starts_with("ERR Script killed by user with SCRIPT KILL... script: ")
                    && t.ends_with(", on @user_script:1."),
                "{t}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(scripts.running(), 0);
        // A script that wrote keeps running: SCRIPT KILL refuses, as Redis does.
        let writer = job(
            &scripts,
            "redis.call('set', KEYS[1], 'x'); local i = 0; while i < 20000000 do i = i + 1 end; return i",
            &["a"],
            &[],
        );
        let scripts2 = scripts.clone();
        let runner = std::thread::spawn(move || {
            let p = partition();
            run_on(&p, &writer)
        });
        let mut refused = false;
        while !runner.is_finished() {
            // Once it has run a while, its first statement (the write) is behind it.
            let long = scripts2.running_info().is_some_and(|(_, _, ms)| ms >= 20);
            if long && scripts2.kill(false) == Err(CommandError::Unkillable) {
                refused = true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let outcome = runner.join().expect("script thread");
        assert_eq!(outcome.reply, Reply::Integer(20_000_000));
        assert!(
            refused,
            "SCRIPT KILL was never refused while the writer ran"
        );
    }

    #[test]
    fn the_sandbox_refuses_bytecode_and_shares_nothing_between_scripts() {
        let scripts = Arc::new(Scripts::default());
        let p = partition();
        let reply = |body: &str| run_on(&p, &job(&scripts, body, &[], &[])).reply;
        assert_eq!(
            reply("local f, e = loadstring(string.dump(function() return 1 end)); return {tostring(f), e}"),
            Reply::Array(vec![
                Reply::bulk("nil"),
                Reply::bulk("binary chunks are not allowed")
            ])
        );
        assert_eq!(
            reply("local f = load(function() return nil end); return type(f)"),
            Reply::bulk("function")
        );
        // The string library behind strings' methods is the read-only one.
        assert_eq!(
            reply("return tostring(getmetatable(''))"),
            Reply::bulk("false")
        );
        assert!(matches!(
            reply("string.format = nil"),
            Reply::Error(CommandError::Script(t)) if t.contains("Attempt to modify a readonly table")
        ));
        assert_eq!(reply("return ('%d'):format(7)"), Reply::bulk("7"));
    }

    #[test]
    fn script_kill_reaches_into_coroutines_and_past_xpcall() {
        for body in [
            "coroutine.wrap(function() while true do end end)()",
            "while true do xpcall(function() while true do end end, function(e) return e end) end",
            "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        ] {
            let scripts = Arc::new(Scripts::default());
            let endless = job(&scripts, body, &[], &[]);
            let runner = std::thread::spawn(move || run_on(&partition(), &endless));
            while scripts.running() == 0 {
                std::thread::sleep(Duration::from_millis(5));
            }
            scripts.kill(false).expect("killed");
            let outcome = runner.join().expect("script thread");
            assert!(
                matches!(&outcome.reply, Reply::Error(CommandError::Script(t)) if t.starts_with("ERR Script killed by user with SCRIPT KILL...")),
                "{body}: {:?}",
                outcome.reply
            );
        }
    }

    #[test]
    fn the_cache_holds_what_compiles_and_flush_empties_it() {
        let scripts = Scripts::default();
        let sha = scripts.load(&Bytes::from_static(b"return 1")).unwrap();
        assert_eq!(sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        assert!(matches!(
            scripts.load(&Bytes::from_static(b"retur 1")),
            Err(CommandError::ScriptCompile(_))
        ));
        assert_eq!(
            scripts.exists(&b(&[&sha.to_ascii_uppercase(), "x"])),
            Reply::Array(vec![Reply::Integer(1), Reply::Integer(0)])
        );
        assert_eq!(scripts.cached(), 1);
        scripts.flush();
        assert_eq!(scripts.cached(), 0);
        assert!(scripts.get(&sha).is_none());
    }
}
