//! One partition's state machine: its engine plus the applied state, applying changes and
//! answering reads.
//!
//! Invariants:
//! - every applied change writes exactly one batch holding its data changes and the new
//!   applied state (index, versions, counts), so a crash never separates the two;
//! - a change whose command fails with a user error still advances the applied index (the
//!   error is its result on every replica);
//! - a storage error while applying writes nothing and is returned: the caller must stop
//!   serving writes on this partition rather than let replicas diverge.

use zankv_commands::keyspace::KeyspaceRead;
use zankv_commands::notify;
use zankv_commands::{CommandError, ReadCommand, Reply, Routed};

use crate::change::Change;
use crate::data::{self, EngineView, ExecError, ReadCtx, ScanCursors, Txn, View};
use crate::engine::{Engine, EngineError};
use crate::events::Event;
use crate::keys;
use crate::records::{AppliedState, KeyMeta, KeyType, ReclaimRecord};

/// Most element keys a single reclamation change deletes.
pub const RECLAIM_BUDGET: u32 = 1024;

/// A partition's data and bookkeeping.
pub struct Partition {
    engine: Box<dyn Engine>,
    state: AppliedState,
    /// The keyspace event classes to record while applying (0: none).
    pub notify: u16,
    /// The events of the changes applied since they were last taken.
    events: Vec<Event>,
}

impl Partition {
    /// Opens a partition on `engine`, reading its applied state (fresh partitions start at
    /// index 0, version 1).
    pub fn open(engine: Box<dyn Engine>) -> Result<Self, EngineError> {
        let state = match engine.get(&keys::applied_state_key())? {
            Some(bytes) => AppliedState::decode(&bytes)?,
            None => AppliedState {
                next_version: 1,
                ..AppliedState::default()
            },
        };
        Ok(Partition {
            engine,
            state,
            notify: 0,
            events: Vec::new(),
        })
    }

    /// The applied state.
    pub fn state(&self) -> AppliedState {
        self.state
    }

    /// Makes an empty partition start at log index `index` (where a new raft group's log
    /// starts: see [`crate::replication::log_store::INIT_INDEX`]), durably. A partition that
    /// applied anything already is left alone.
    pub fn bootstrap_at(&mut self, index: u64) -> Result<(), EngineError> {
        if self.state.applied_index != 0 {
            return Ok(());
        }
        let mut state = self.state;
        state.applied_index = index;
        let mut batch = crate::engine::WriteBatch::default();
        batch.put(keys::applied_state_key(), state.encode());
        self.engine.write(batch, true)?;
        self.state = state;
        Ok(())
    }

    /// The keyspace events of the changes applied since the last call, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The engine, for reads.
    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// Applies `change` as log entry `index` (which must follow the applied index). Returns
    /// the reply for the client that proposed it.
    pub fn apply(&mut self, index: u64, change: &Change) -> Result<Reply, EngineError> {
        assert!(
            index == self.state.applied_index + 1,
            "change {index} applied out of order after {}",
            self.state.applied_index
        );
        let mut cursors = ScanCursors::new(16);
        let mut replies = self.apply_all(std::slice::from_ref(change), &mut cursors)?;
        Ok(replies.pop().expect("one reply per change"))
    }

    /// Applies `changes` as the next log entries, in order, and writes all their effects and
    /// the final applied state in **one** engine batch. Each change sees the effects of the
    /// earlier ones. Returns one reply per change. A SCAN inside a transaction keeps its
    /// cursor in `cursors`.
    pub fn apply_all(
        &mut self,
        changes: &[Change],
        cursors: &mut ScanCursors,
    ) -> Result<Vec<Reply>, EngineError> {
        let committed = EngineView::new(self.engine.as_ref());
        let mut batch_txn = Txn::new(&committed, 0, self.state);
        batch_txn.notify = self.notify;
        let mut replies = Vec::with_capacity(changes.len());
        for change in changes {
            let now_ms = match change {
                Change::Command { now_ms, .. }
                | Change::Pop { now_ms, .. }
                | Change::Expire { now_ms, .. }
                | Change::Transaction { now_ms, .. }
                | Change::Effects { now_ms, .. } => *now_ms,
                Change::Reclaim { .. } | Change::Noop | Change::Functions(_) => 0,
            };
            let mut state = batch_txn.state;
            state.applied_index += 1;
            let contained = run_contained(&batch_txn, now_ms, state, |txn| match change {
                Change::Command { argv, .. } => execute(txn, argv, cursors, false),
                Change::Pop {
                    id, retry, argv, ..
                } => {
                    data::pops::pop_once(txn, id, *retry, |txn| execute(txn, argv, cursors, false))
                }
                Change::Transaction {
                    watched, commands, ..
                } => transaction(txn, watched, commands, cursors),
                Change::Effects { base, commands, .. } => {
                    effects(txn, *base, state.applied_index, commands, cursors)
                }
                Change::Expire { keys, .. } => expire_keys(txn, keys).map_err(ExecError::Engine),
                Change::Reclaim { versions, budget } => {
                    reclaim(txn, versions, *budget).map_err(ExecError::Engine)
                }
                Change::Functions(change) => data::functions::apply(txn, change),
                Change::Noop => Ok(Reply::Nil),
            })?;
            batch_txn.absorb(contained.writes);
            batch_txn.state = contained.state;
            batch_txn.extend_events(contained.events);
            replies.push(contained.reply);
        }
        let events = batch_txn.take_events();
        let (mut batch, state) = batch_txn.finish();
        batch.put(keys::applied_state_key(), state.encode());
        self.engine.write(batch, false)?;
        self.state = state;
        self.events.extend(events);
        Ok(replies)
    }

    /// Makes every applied change durable.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.engine.sync()
    }

    /// Answers a read command at `now_ms`, counting `hidden_keys` fewer keys than stored
    /// (keys known expired whose deletion is pending). Also returns the expired keys the
    /// read came across, which the caller should delete with an expiry change (Redis
    /// deletes expired keys on access).
    /// Notes the keys it looked up and did not find when `self.notify` asks for key
    /// misses (and the command is one whose misses Redis announces).
    pub fn read(
        &self,
        cmd: &ReadCommand,
        now_ms: i64,
        hidden_keys: u64,
        cursors: &mut ScanCursors,
    ) -> ReadOutcome {
        let view = if self.notify & notify::KEY_MISS != 0 && announces_misses(cmd) {
            EngineView::noting_misses(self.engine.as_ref())
        } else {
            EngineView::new(self.engine.as_ref())
        };
        let mut state = self.state;
        state.keys = state.keys.saturating_sub(hidden_keys);
        let mut ctx = ReadCtx {
            view: &view,
            now_ms,
            state,
            cursors,
        };
        let reply = match contain_panic(|| data::execute_read(&mut ctx, cmd)) {
            Ok(reply) => reply,
            Err(ExecError::Command(e)) => Reply::Error(e),
            Err(ExecError::Engine(e)) => Reply::Error(CommandError::Internal(e.to_string())),
        };
        ReadOutcome {
            reply,
            expired: view.take_expired(),
            missed: view.take_missed(),
        }
    }

    /// Up to `limit` (key, expire-at) entries of the expiry index that are due at `now_ms`.
    pub fn due_expirations(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<(bytes::Bytes, u64)>, EngineError> {
        if self.state.expires == 0 {
            return Ok(Vec::new());
        }
        let start = vec![keys::EXPIRY];
        let end = keys::expiry_key(now_ms.max(0) as u64 + 1, b"");
        let mut out = Vec::new();
        self.engine.scan(&start, &end, false, &mut |k, _| {
            if let Some((at, key)) = keys::parse_expiry_key(k) {
                out.push((bytes::Bytes::copy_from_slice(key), at));
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Up to `limit` collection versions waiting for reclamation.
    pub fn pending_reclaims(&self, limit: usize) -> Result<Vec<(u8, u64)>, EngineError> {
        if self.state.reclaims == 0 {
            return Ok(Vec::new());
        }
        let (start, end) = keys::space(keys::RECLAIM);
        let mut out = Vec::new();
        self.engine.scan(&start, &end, false, &mut |k, v| {
            if let (Some(version), Some(&tag)) = (keys::parse_reclaim_key(k), v.first()) {
                out.push((tag, version));
            }
            out.len() < limit
        })?;
        Ok(out)
    }
}

/// Deletes keys whose expiry (as recorded in the index) has passed; drops index entries that
/// no longer match their key's metadata.
fn expire_keys(txn: &mut Txn<'_>, entries: &[(bytes::Bytes, u64)]) -> Result<Reply, EngineError> {
    let mut deleted = 0;
    for (key, at) in entries {
        match data::raw_meta(txn, key)? {
            Some(KeyMeta {
                expire_at: Some(current),
                ..
            }) if current == *at && (*at as i64) <= txn.now_ms => {
                txn.delete_key(key)?;
                deleted += 1;
            }
            Some(KeyMeta {
                expire_at: Some(current),
                ..
            }) if current == *at => {}
            _ => txn.delete(keys::expiry_key(*at, key)),
        }
    }
    Ok(Reply::Integer(deleted))
}

/// Deletes up to `budget` elements of dropped versions (every element tag of the type the
/// record names); a version's record is removed once its elements are gone. A version that
/// held more elements than the budget is dropped whole with one range deletion per tag: no
/// scan, a few bytes written, and RocksDB's compactions return the space (a read never
/// enters a dropped version's range). Smaller ones are deleted key by key (many small range
/// deletions would slow every iterator until the memtable is flushed).
fn reclaim(txn: &mut Txn<'_>, versions: &[(u8, u64)], budget: u32) -> Result<Reply, EngineError> {
    let mut left = budget as usize;
    for (tag, version) in versions {
        let version = *version;
        let tags: &[u8] = match KeyType::of_element_tag(*tag) {
            Some(kind) => kind.tags(),
            None => std::slice::from_ref(tag),
        };
        let record = match txn.get(&keys::reclaim_key(version))? {
            Some(bytes) => ReclaimRecord::decode(&bytes)?,
            // Reclaimed already (by an earlier change of the same batch).
            None => continue,
        };
        if record.len.is_some_and(|len| len > u64::from(budget)) {
            for &tag in tags {
                let prefix = keys::element_prefix(tag, version);
                let end = keys::prefix_end(&prefix);
                txn.delete_range(prefix, end);
            }
            txn.delete(keys::reclaim_key(version));
            txn.state.reclaims = txn.state.reclaims.saturating_sub(1);
            left = left.saturating_sub(1);
            if left == 0 {
                break;
            }
            continue;
        }
        let mut finished = true;
        for &tag in tags {
            // One element more than the budget is read to learn whether the tag is done.
            let prefix = keys::element_prefix(tag, version);
            let mut doomed = Vec::new();
            txn.scan(&prefix, &keys::prefix_end(&prefix), false, &mut |k, _| {
                doomed.push(k.to_vec());
                doomed.len() <= left
            })?;
            finished &= doomed.len() <= left;
            doomed.truncate(left);
            left -= doomed.len();
            for k in doomed {
                txn.delete(k);
            }
        }
        if finished {
            txn.delete(keys::reclaim_key(version));
            txn.state.reclaims = txn.state.reclaims.saturating_sub(1);
        }
        if left == 0 {
            break;
        }
    }
    Ok(Reply::Integer((budget as usize - left) as i64))
}

/// Runs `exec` as one change on top of `base`, at `now_ms` from `state`: its reply, writes
/// and bookkeeping. A user error (or a panic: a bug) changes nothing but the deletion of the
/// expired keys it came across, as Redis deletes them on access; a storage error is
/// returned.
fn run_contained(
    base: &Txn<'_>,
    now_ms: i64,
    state: AppliedState,
    exec: impl FnOnce(&mut Txn<'_>) -> Result<Reply, ExecError>,
) -> Result<Contained, EngineError> {
    let mut txn = Txn::new(base, now_ms, state);
    txn.notify = base.notify;
    let outcome = contain_panic(|| exec(&mut txn)).and_then(|reply| {
        txn.reap_expired()?;
        Ok(reply)
    });
    match outcome {
        Ok(reply) => {
            let events = txn.take_events();
            let (writes, state) = txn.finish();
            Ok(Contained {
                reply,
                writes,
                state,
                events,
            })
        }
        Err(ExecError::Command(e)) => {
            let expired = txn.take_noted_expired();
            // A failed command changed nothing, but the keys it found expired are deleted
            // and its lookups happened: their events stand, as in Redis.
            let events: Vec<Event> = txn
                .take_events()
                .into_iter()
                .filter(|e| e.class & (notify::EXPIRED | notify::KEY_MISS) != 0)
                .collect();
            drop(txn);
            let mut reaper = Txn::new(base, now_ms, state);
            reaper.reap(expired)?;
            let (writes, state) = reaper.finish();
            Ok(Contained {
                reply: Reply::Error(e),
                writes,
                state,
                events,
            })
        }
        Err(ExecError::Engine(e)) => Err(e),
    }
}

/// What a read leaves.
pub struct ReadOutcome {
    /// Its reply.
    pub reply: Reply,
    /// The keys it found expired (and their expiry), to be deleted.
    pub expired: Vec<(bytes::Bytes, u64)>,
    /// The keys it looked up and did not find, when noted ([`Partition::read`]).
    pub missed: Vec<bytes::Bytes>,
}

/// Whether Redis announces a read's key misses (`keymiss`): every read of keys but those
/// that look without notifying (OBJECT) or do not look keys up (KEYS, SCAN, RANDOMKEY,
/// DBSIZE, ...).
fn announces_misses(cmd: &ReadCommand) -> bool {
    !matches!(
        cmd,
        ReadCommand::Keyspace(
            KeyspaceRead::Object(..)
                | KeyspaceRead::Scan(_)
                | KeyspaceRead::Keys(_)
                | KeyspaceRead::RandomKey
                | KeyspaceRead::DbSize
                | KeyspaceRead::PartitionKeyspace
        )
    )
}

/// What one command's contained run leaves: its reply, its writes, the bookkeeping after
/// them and its keyspace events (a failed command's are only those of the expired keys
/// it deleted and of its key misses).
struct Contained {
    reply: Reply,
    writes: crate::engine::WriteBatch,
    state: AppliedState,
    events: Vec<Event>,
}

/// Executes one replicated command: a write, or (`reads`: inside a transaction) a read,
/// which sees the transaction's earlier writes.
fn execute(
    txn: &mut Txn<'_>,
    argv: &[bytes::Bytes],
    cursors: &mut ScanCursors,
    reads: bool,
) -> Result<Reply, ExecError> {
    match zankv_commands::parse(argv).map(|(c, _)| c.route()) {
        Ok(Routed::Write(cmd)) => data::execute_write(txn, &cmd),
        Ok(Routed::Read(cmd)) if reads => {
            txn.reading.set(announces_misses(&cmd));
            let mut ctx = ReadCtx {
                view: &*txn,
                now_ms: txn.now_ms,
                state: txn.state,
                cursors,
            };
            let reply = data::execute_read(&mut ctx, &cmd);
            txn.reading.set(false);
            reply
        }
        // The log holds arguments: only a write (or a transaction's commands) was ever
        // proposed.
        Ok(_) => Err(ExecError::Command(CommandError::Internal(
            "read command in a change".into(),
        ))),
        Err(e) => Err(ExecError::Command(e)),
    }
}

/// A MULTI/EXEC transaction: nothing when a watched key expired since its WATCH (a null
/// array), else each command in turn on the effects of the ones before, an error answering
/// in place of its command's reply without stopping the others (as Redis).
fn transaction(
    txn: &mut Txn<'_>,
    watched: &[(bytes::Bytes, i64)],
    commands: &[Vec<bytes::Bytes>],
    cursors: &mut ScanCursors,
) -> Result<Reply, ExecError> {
    for (key, watched_at) in watched {
        if let Some(KeyMeta {
            expire_at: Some(at),
            ..
        }) = data::raw_meta(txn, key)?
        {
            if (at as i64) > *watched_at && (at as i64) <= txn.now_ms {
                return Ok(Reply::NilArray);
            }
        }
    }
    let mut replies = Vec::with_capacity(commands.len());
    for argv in commands {
        replies.push(run_in(txn, |inner| execute(inner, argv, cursors, true))?);
    }
    Ok(Reply::Array(replies))
}

/// Replays a script's effects inside `txn` (an entry not applied yet, under a script that
/// follows it on the leader), as [`Change::Effects`] applies them.
pub(crate) fn replay_effects(
    txn: &mut Txn<'_>,
    commands: &[Vec<bytes::Bytes>],
    cursors: &mut ScanCursors,
) -> Result<(), EngineError> {
    match transaction(txn, &[], commands, cursors) {
        Err(ExecError::Engine(e)) => Err(e),
        // Without watched keys a transaction fails on storage errors only.
        Ok(_) | Err(ExecError::Command(_)) => Ok(()),
    }
}

/// Runs one command of a transaction or script inside `txn`: its writes join the
/// transaction only if it succeeds (a failing one still deletes the expired keys it came
/// across), and a user error is its reply.
pub(crate) fn run_in(
    txn: &mut Txn<'_>,
    exec: impl FnOnce(&mut Txn<'_>) -> Result<Reply, ExecError>,
) -> Result<Reply, EngineError> {
    let contained = run_contained(txn, txn.now_ms, txn.state, exec)?;
    txn.absorb(contained.writes);
    txn.state = contained.state;
    txn.extend_events(contained.events);
    Ok(contained.reply)
}

/// Applies a script's effects as log entry `index`: its write commands one after the
/// other, if the entry directly follows the state the script ran on (`base`). Answers OK
/// (the script's own reply is the leader's to give), or ERR_CLUSTER_CHANGED having
/// applied nothing.
fn effects(
    txn: &mut Txn<'_>,
    base: u64,
    index: u64,
    commands: &[Vec<bytes::Bytes>],
    cursors: &mut ScanCursors,
) -> Result<Reply, ExecError> {
    if index != base + 1 {
        return Err(ExecError::Command(CommandError::ClusterChanged(
            "the partition changed while the script ran; it was not applied".into(),
        )));
    }
    transaction(txn, &[], commands, cursors)?;
    Ok(Reply::OK)
}

/// Runs one command's execution; a panic in it becomes that command's error.
fn contain_panic(run: impl FnOnce() -> Result<Reply, ExecError>) -> Result<Reply, ExecError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
        tracing::error!("a command panicked; it was answered with an error and changed nothing");
        Err(ExecError::Command(CommandError::Internal(
            "the command failed unexpectedly and changed nothing".into(),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;
    use crate::engine::rocks::{RocksEngine, RocksOptions};
    use bytes::Bytes;
    use std::sync::Arc;

    fn random_change(rng: &mut fastrand::Rng, now: i64) -> Change {
        let key = || Bytes::from(format!("k{}", fastrand::u8(0..4)));
        let field = || Bytes::from(format!("f{}", fastrand::u8(0..4)));
        let score = || Bytes::from(fastrand::i8(-3..4).to_string());
        let words: Vec<Bytes> = match rng.u8(0..32) {
            0 => vec!["set".into(), key(), "v".into()],
            1 => vec![
                "set".into(),
                key(),
                "v".into(),
                "px".into(),
                Bytes::from(rng.u16(1..50).to_string()),
            ],
            2 => vec![
                "hset".into(),
                key(),
                field(),
                "1".into(),
                field(),
                "2".into(),
            ],
            3 => vec!["hdel".into(), key(), field()],
            4 => vec!["del".into(), key(), key()],
            5 => vec!["rename".into(), key(), key()],
            6 => vec!["copy".into(), key(), key(), "replace".into()],
            7 => vec!["incrbyfloat".into(), key(), "1.5".into()],
            8 => vec!["hincrby".into(), key(), field(), "3".into()],
            9 => vec![
                "pexpire".into(),
                key(),
                Bytes::from(rng.u16(1..50).to_string()),
            ],
            10 => vec!["append".into(), key(), "xyz".into()],
            11 => vec![
                "setbit".into(),
                key(),
                Bytes::from(rng.u16(0..100).to_string()),
                "1".into(),
            ],
            12 => vec!["flushdb".into()],
            // Lists and sets, SPOP's random choice included: replicas must agree on it.
            14 => vec!["rpush".into(), key(), field(), field()],
            15 => vec!["lpush".into(), key(), field()],
            16 => vec!["lpop".into(), key(), "2".into()],
            17 => vec![
                "linsert".into(),
                key(),
                "before".into(),
                field(),
                "x".into(),
            ],
            18 => vec!["lrem".into(), key(), "-1".into(), field()],
            19 => vec!["ltrim".into(), key(), "1".into(), "-2".into()],
            20 => vec!["lmove".into(), key(), key(), "left".into(), "right".into()],
            21 => vec!["sadd".into(), key(), field(), field(), field()],
            22 => vec!["spop".into(), key(), "2".into()],
            23 => vec!["smove".into(), key(), key(), field()],
            24 => vec!["sinterstore".into(), key(), key(), key()],
            25 => vec!["srem".into(), key(), field()],
            26 => vec!["zadd".into(), key(), score(), field(), score(), field()],
            27 => vec!["zincrby".into(), key(), score(), field()],
            28 => vec!["zpopmin".into(), key(), "2".into()],
            29 => vec!["zremrangebyrank".into(), key(), "0".into(), "0".into()],
            30 => vec!["zunionstore".into(), key(), "2".into(), key(), key()],
            31 => vec!["zrem".into(), key(), field()],
            _ => vec!["persist".into(), key()],
        };
        Change::Command {
            now_ms: now,
            argv: words,
        }
    }

    /// Applies the same random changes (commands, background expiry and reclamation) to
    /// several partitions; they must reply identically and end byte-identical.
    fn replay(seed: u64, partitions: &mut [Partition]) -> Vec<Reply> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut replies = Vec::new();
        let mut now = 1_000_000;
        for i in 1..=400u64 {
            now += i64::from(rng.u8(0..10));
            let change = if i % 10 == 0 {
                let due = partitions[0].due_expirations(now, 16).unwrap();
                Change::Expire {
                    now_ms: now,
                    keys: due,
                }
            } else if i % 15 == 0 {
                let versions = partitions[0].pending_reclaims(4).unwrap();
                Change::Reclaim {
                    versions,
                    budget: 3,
                }
            } else {
                random_change(&mut rng, now)
            };
            // Replicated changes travel encoded: apply what the log would carry.
            let change = Change::decode(&change.encode()).unwrap();
            let mut first = None;
            for p in partitions.iter_mut() {
                let reply = p.apply(i, &change).unwrap();
                match &first {
                    None => first = Some(reply),
                    Some(r) => assert_eq!(&reply, r, "seed {seed} change {i} {change:?}"),
                }
            }
            replies.push(first.unwrap());
        }
        replies
    }

    #[test]
    fn replicas_applying_the_same_changes_are_byte_identical() {
        for seed in 0..20 {
            let engines: Vec<Arc<MemoryEngine>> =
                (0..2).map(|_| Arc::new(MemoryEngine::new())).collect();
            let mut parts: Vec<Partition> = engines
                .iter()
                .map(|e| Partition::open(Box::new(e.clone())).unwrap())
                .collect();
            replay(seed, &mut parts);
            assert_eq!(engines[0].dump(), engines[1].dump(), "seed {seed}");
            // Counters agree with the records they count.
            let dump = engines[0].dump();
            let metas = dump.iter().filter(|(k, _)| k[0] == keys::META).count() as u64;
            let index = dump.iter().filter(|(k, _)| k[0] == keys::EXPIRY).count() as u64;
            assert_eq!(parts[0].state().keys, metas, "seed {seed}");
            assert_eq!(parts[0].state().expires, index, "seed {seed}");
        }
    }

    #[test]
    fn batched_apply_equals_one_by_one() {
        for seed in 0..10 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let changes: Vec<Change> = (0..300)
                .map(|i| random_change(&mut rng, 1_000 + i))
                .collect();
            let one = Arc::new(MemoryEngine::new());
            let many = Arc::new(MemoryEngine::new());
            let mut p1 = Partition::open(Box::new(one.clone())).unwrap();
            let mut p2 = Partition::open(Box::new(many.clone())).unwrap();
            let mut replies1 = Vec::new();
            for (i, c) in changes.iter().enumerate() {
                replies1.push(p1.apply(i as u64 + 1, c).unwrap());
            }
            let mut replies2 = Vec::new();
            let mut rest = &changes[..];
            while !rest.is_empty() {
                let n = rng.usize(1..=rest.len().min(40));
                replies2.extend(p2.apply_all(&rest[..n], &mut ScanCursors::new(16)).unwrap());
                rest = &rest[n..];
            }
            assert_eq!(replies1, replies2, "seed {seed}");
            assert_eq!(one.dump(), many.dump(), "seed {seed}");
        }
    }

    #[test]
    fn a_huge_repeating_hrandfield_of_an_existing_hash_is_refused() {
        let mem = Arc::new(MemoryEngine::new());
        let mut p = Partition::open(Box::new(mem.clone())).unwrap();
        let argv: Vec<Bytes> = vec!["hset".into(), "h".into(), "f".into(), "v".into()];
        p.apply(1, &Change::Command { now_ms: 1, argv }).unwrap();
        let read = |p: &Partition, count: &str| {
            let argv: Vec<Bytes> = vec![
                "hrandfield".into(),
                "h".into(),
                Bytes::from(count.to_string()),
            ];
            let cmd = zankv_commands::parse(&argv).unwrap().0.into_read().unwrap();
            p.read(&cmd, 1, 0, &mut ScanCursors::new(10)).reply
        };
        assert_eq!(
            read(&p, "-20000000"),
            Reply::Error(CommandError::OutOfRange)
        );
        match read(&p, "-3") {
            Reply::Array(items) => assert_eq!(items.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn applied_changes_record_the_wanted_events_in_order_and_failed_ones_none() {
        let mut p = Partition::open(Box::new(MemoryEngine::new())).unwrap();
        let words = |line: &str| -> Vec<Bytes> {
            line.split(' ')
                .map(|w| Bytes::copy_from_slice(w.as_bytes()))
                .collect()
        };
        let mut index = 0;
        let mut apply = |p: &mut Partition, now_ms: i64, line: &str| {
            index += 1;
            let argv = words(line);
            p.apply(index, &Change::Command { now_ms, argv }).unwrap()
        };
        apply(&mut p, 1, "set quiet v");
        assert!(
            p.take_events().is_empty(),
            "nothing recorded while nobody wants it"
        );
        p.notify = zankv_commands::notify::ALL | zankv_commands::notify::NEW;
        apply(&mut p, 1, "set s v ex 1");
        apply(&mut p, 1, "rpush l a");
        apply(&mut p, 1, "lpop l");
        // A failed command records nothing.
        apply(&mut p, 1, "lpush s x");
        // At 5 s, `s` expired: writing it deletes it first.
        apply(&mut p, 5_000, "set s w");
        // A key found expired by a lookup is announced then, before the command's events.
        apply(&mut p, 5_000, "sadd t a");
        apply(&mut p, 5_000, "pexpire t 10");
        apply(&mut p, 6_000, "sunionstore t2 t l");
        let events: Vec<String> = p
            .take_events()
            .iter()
            .map(|e| format!("{} {}", e.name, String::from_utf8_lossy(&e.key)))
            .collect();
        assert_eq!(
            events,
            [
                "new s",
                "set s",
                "expire s",
                "new l",
                "rpush l",
                "lpop l",
                "del l",
                "expired s",
                "new s",
                "set s",
                "new t",
                "sadd t",
                "expire t",
                "expired t"
            ]
        );
    }

    #[test]
    fn a_pop_sent_again_with_its_id_pops_once() {
        let mem = Arc::new(MemoryEngine::new());
        let mut p = Partition::open(Box::new(mem.clone())).unwrap();
        let words =
            |w: &[&str]| -> Vec<Bytes> { w.iter().map(|s| Bytes::from(s.to_string())).collect() };
        let push = Change::Command {
            now_ms: 1,
            argv: words(&["rpush", "q", "a", "b"]),
        };
        p.apply(1, &push).unwrap();
        let pop = |id: &str, now_ms: i64| Change::Pop {
            now_ms,
            id: Bytes::from(id.to_string()),
            retry: false,
            argv: words(&["blpop", "q", "0"]),
        };
        let took_a = Reply::Array(vec![Reply::bulk("q"), Reply::bulk("a")]);
        assert_eq!(p.apply(2, &pop("x", 10)).unwrap(), took_a);
        // Sent again: the same reply, nothing popped.
        assert_eq!(p.apply(3, &pop("x", 20)).unwrap(), took_a);
        let took_b = Reply::Array(vec![Reply::bulk("q"), Reply::bulk("b")]);
        assert_eq!(p.apply(4, &pop("y", 30)).unwrap(), took_b);
        // A pop that found nothing is not recorded: sent again, it tries again.
        assert_eq!(p.apply(5, &pop("z", 40)).unwrap(), Reply::NilArray);
        p.apply(6, &push).unwrap();
        assert_eq!(p.apply(7, &pop("z", 50)).unwrap(), took_a);
        // Records go once their time is up (dropped by later pops).
        let later = 50 + data::pops::RETENTION_MS as i64 + 1;
        assert_eq!(p.apply(8, &pop("w", later)).unwrap(), took_b);
        let mut records = 0;
        p.engine()
            .scan(
                &[keys::SYSTEM, b'p'],
                &[keys::SYSTEM, b'q'],
                false,
                &mut |_, _| {
                    records += 1;
                    true
                },
            )
            .unwrap();
        assert_eq!(records, 1, "only w's record is left");
        assert_eq!(p.apply(9, &pop("x", later)).unwrap(), Reply::NilArray);
    }

    #[test]
    fn a_panicking_command_fails_alone() {
        let e = contain_panic(|| panic!("a bug")).unwrap_err();
        assert!(
            matches!(e, ExecError::Command(CommandError::Internal(ref t)) if t.contains("changed nothing")),
            "{e:?}"
        );
        assert!(contain_panic(|| Ok(Reply::OK)).is_ok());
    }

    #[test]
    fn rocksdb_and_memory_engines_agree() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions::new(8 << 20, 4 << 20).unwrap();
        let mem = Arc::new(MemoryEngine::new());
        let mut parts = vec![
            Partition::open(Box::new(
                RocksEngine::open_unlogged(dir.path(), &opts).unwrap(),
            ))
            .unwrap(),
            Partition::open(Box::new(mem.clone())).unwrap(),
        ];
        replay(7, &mut parts);
        let mut rocks_dump = Vec::new();
        parts[0]
            .engine()
            .scan(&[0], &[0xff], false, &mut |k, v| {
                rocks_dump.push((k.to_vec(), v.to_vec()));
                true
            })
            .unwrap();
        assert_eq!(rocks_dump, mem.dump());
    }

    /// Applies reclamation changes (after log index `applied`) until nothing is pending;
    /// returns how many it took.
    fn must_reclaim_all(p: &mut Partition, applied: u64, budget: u32) -> u64 {
        let mut changes = 0;
        while !p.pending_reclaims(10).unwrap().is_empty() {
            changes += 1;
            let versions = p.pending_reclaims(10).unwrap();
            p.apply(applied + changes, &Change::Reclaim { versions, budget })
                .unwrap();
            assert!(changes < 20, "reclamation does not make progress");
        }
        changes
    }

    #[test]
    fn reclamation_removes_every_element_of_dropped_collections() {
        let mem = Arc::new(MemoryEngine::new());
        let mut p = Partition::open(Box::new(mem.clone())).unwrap();
        let mut index = 0;
        let mut run = |p: &mut Partition, words: Vec<String>| {
            index += 1;
            let argv = words.into_iter().map(Bytes::from).collect();
            p.apply(index, &Change::Command { now_ms: 1, argv })
                .unwrap()
        };
        // Bigger than the budget (dropped whole), a sorted set (two element tags) too, and
        // one within the budget (deleted key by key).
        let mut hset = vec!["hset".to_string(), "h".into()];
        let mut zadd = vec!["zadd".to_string(), "z".into()];
        for i in 0..50 {
            hset.extend([format!("f{i}"), "v".into()]);
            zadd.extend([i.to_string(), format!("m{i}")]);
        }
        run(&mut p, hset);
        run(&mut p, zadd);
        run(
            &mut p,
            vec![
                "sadd".into(),
                "s".into(),
                "a".into(),
                "b".into(),
                "c".into(),
            ],
        );
        run(
            &mut p,
            vec!["del".into(), "h".into(), "z".into(), "s".into()],
        );
        assert_eq!(
            p.state().reclaims,
            3,
            "the dropped collections wait for reclamation"
        );
        let changes = must_reclaim_all(&mut p, index, 7);
        assert_eq!(changes, 1, "one change drops them all");
        assert_eq!(p.state().reclaims, 0);
        let left: Vec<_> = mem
            .dump()
            .into_iter()
            .filter(|(k, _)| k[0] != keys::SYSTEM)
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn reclamation_records_written_before_the_count_was_kept_still_work() {
        let mem = Arc::new(MemoryEngine::new());
        let mut p = Partition::open(Box::new(mem.clone())).unwrap();
        let mut argv: Vec<Bytes> = vec!["hset".into(), "h".into()];
        for i in 0..20 {
            argv.extend([Bytes::from(format!("f{i}")), "v".into()]);
        }
        p.apply(1, &Change::Command { now_ms: 1, argv }).unwrap();
        p.apply(
            2,
            &Change::Command {
                now_ms: 1,
                argv: vec!["del".into(), "h".into()],
            },
        )
        .unwrap();
        // The record as the previous release wrote it: the element tag alone.
        let (tag, version) = p.pending_reclaims(1).unwrap()[0];
        let mut batch = crate::engine::WriteBatch::default();
        batch.put(keys::reclaim_key(version), vec![tag]);
        mem.write(batch, true).unwrap();
        let mut p = Partition::open(Box::new(mem.clone())).unwrap();
        // Without a count, key by key: 20 elements at 7 per change.
        assert_eq!(must_reclaim_all(&mut p, 2, 7), 3);
        assert!(mem.dump().iter().all(|(k, _)| k[0] == keys::SYSTEM));
    }

    /// Data as the release before lists, sets and sorted sets wrote it (strings and hashes
    /// have kept that format): spelled out byte by byte, so a change of the format that
    /// would strand existing data directories fails here.
    #[test]
    fn data_written_by_the_previous_release_reads_the_same() {
        let mem = Arc::new(MemoryEngine::new());
        let word = |v: u64| v.to_be_bytes().to_vec();
        let mut batch = crate::engine::WriteBatch::default();
        // Applied state, format 2: applied index 7, next version 4, 2 keys, 1 with an
        // expiry, no reclamation pending.
        let mut state = vec![2u8];
        for v in [7u64, 4, 2, 1, 0] {
            state.extend(word(v));
        }
        batch.put(b"\0applied".to_vec(), state);
        // A string `s` = "v" expiring at 9,000,000,000,000 ms, and its expiry entry.
        let at = 9_000_000_000_000u64;
        batch.put(b"ms".to_vec(), [&[1u8][..], &word(at), b"v"].concat());
        batch.put([&b"x"[..], &word(at), b"s"].concat(), Vec::new());
        // A hash `h` of version 3 with two fields.
        batch.put(
            b"mh".to_vec(),
            [vec![2u8], word(0), word(3), word(2)].concat(),
        );
        batch.put([&b"h"[..], &word(3), b"f1"].concat(), b"one".to_vec());
        batch.put([&b"h"[..], &word(3), b"f2"].concat(), b"two".to_vec());
        mem.write(batch, true).unwrap();

        let p = Partition::open(Box::new(mem.clone())).unwrap();
        assert_eq!(p.state().applied_index, 7);
        assert_eq!(p.state().next_version, 4);
        let read = |words: &[&str]| {
            let argv: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
            let cmd = zankv_commands::parse(&argv).unwrap().0.into_read().unwrap();
            p.read(&cmd, 1_000, 0, &mut ScanCursors::new(10)).reply
        };
        assert_eq!(read(&["get", "s"]), Reply::bulk("v"));
        assert_eq!(read(&["pexpiretime", "s"]), Reply::Integer(at as i64));
        assert_eq!(
            read(&["hgetall", "h"]),
            Reply::Map(vec![
                (Reply::bulk("f1"), Reply::bulk("one")),
                (Reply::bulk("f2"), Reply::bulk("two")),
            ])
        );
        assert_eq!(read(&["hlen", "h"]), Reply::Integer(2));
        assert_eq!(read(&["dbsize"]), Reply::Integer(2));
        // And it takes new writes: a new collection gets the next version.
        let mut p = p;
        p.apply(
            8,
            &Change::Command {
                now_ms: 1_000,
                argv: vec!["sadd".into(), "set".into(), "m".into()],
            },
        )
        .unwrap();
        assert_eq!(p.state().next_version, 5);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions::new(8 << 20, 4 << 20).unwrap();
        {
            let mut p = Partition::open(Box::new(
                RocksEngine::open_unlogged(dir.path(), &opts).unwrap(),
            ))
            .unwrap();
            p.apply(
                1,
                &Change::Command {
                    now_ms: 5,
                    argv: vec!["hset".into(), "h".into(), "f".into(), "v".into()],
                },
            )
            .unwrap();
            p.sync().unwrap();
        }
        let p = Partition::open(Box::new(
            RocksEngine::open_unlogged(dir.path(), &opts).unwrap(),
        ))
        .unwrap();
        assert_eq!(p.state().applied_index, 1);
        assert_eq!(p.state().keys, 1);
        assert_eq!(p.state().next_version, 2);
    }
}
