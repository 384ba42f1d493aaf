//! Executing Redis commands against a partition's data.
//!
//! Reads run against a [`View`] of the current state; writes run inside a [`Txn`] that
//! buffers every change into one write batch and also serves reads of its own writes, so a
//! command that touches the same key twice sees its first touch. The family modules
//! ([`keyspace`], [`string`], [`hash`], [`list`], [`set`], [`zset`], [`sort`],
//! [`hyperloglog`] on [`hll`] sketches, [`geo`] on [`geohash`] scores) hold one function
//! per command.
//!
//! Invariants:
//! - every metadata change goes through [`Txn::set_meta`] / [`Txn::delete_key`], which keep
//!   the expiry index, the key and expiry counts, and reclamation records consistent;
//! - a write's result depends only on the data, the change's `now_ms` and its arguments, so
//!   replaying the same changes gives byte-identical data;
//! - a key whose expiry is at or before "now" is invisible to every command.

pub mod functions;
pub mod geo;
pub mod geohash;
pub mod hash;
pub mod hll;
pub mod hyperloglog;
pub mod keyspace;
pub mod list;
pub mod pops;
pub mod pqsort;
pub mod set;
pub mod sort;
pub mod string;
pub mod zset;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use zankv_commands::hash::{RandFieldCount, MAX_RANDOM_PICKS};
use zankv_commands::keyspace::ScanArgs;
use zankv_commands::notify;
use zankv_commands::pattern::keys_match;
use zankv_commands::{CommandError, ReadCommand, Reply, WriteCommand};

use crate::engine::{Engine, EngineError, RangeVisit, Visit, WriteBatch, WriteOp};
use crate::events::Event;
use crate::keys;
use crate::records::{AppliedState, KeyBody, KeyMeta, KeyType, ReclaimRecord};

/// Why executing a command did not produce a normal reply.
#[derive(Debug)]
pub enum ExecError {
    /// A user error; deterministic, so it is simply the command's reply.
    Command(CommandError),
    /// A storage failure; not deterministic, never applied partially.
    Engine(EngineError),
}

impl From<CommandError> for ExecError {
    fn from(e: CommandError) -> Self {
        ExecError::Command(e)
    }
}

impl From<EngineError> for ExecError {
    fn from(e: EngineError) -> Self {
        ExecError::Engine(e)
    }
}

/// Result of executing one command.
pub type ExecResult = Result<Reply, ExecError>;

/// Read access to a partition's data.
pub trait View {
    /// Reads one stored key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    /// Visits stored keys in `[start, end)`, in order (reverse order when `reverse`).
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError>;

    /// Visits each of `ranges` in the order given (see [`Engine::scan_ranges`]).
    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut RangeVisit<'_>,
    ) -> Result<(), EngineError> {
        crate::engine::scan_ranges_one_by_one(|s, e, v| self.scan(s, e, false, v), ranges, visit)
    }

    /// Called when a command looked up `key` and found it expired (at `expire_at`). Redis
    /// deletes such keys on access; views remember them so they are deleted right after
    /// the command (by a replicated expiry change, so replicas stay identical).
    fn note_expired(&self, _key: &[u8], _expire_at: u64) {}

    /// Called when a command looked up `key` and found nothing (missing or expired):
    /// Redis's key miss, which a read announces (`keymiss`) when asked to.
    fn note_missing(&self, _key: &[u8]) {}
}

/// A [`View`] of an engine's committed data, for reads.
pub struct EngineView<'a> {
    engine: &'a dyn Engine,
    expired: RefCell<Vec<(Bytes, u64)>>,
    /// The keys looked up and not found, when they are wanted.
    missed: Option<RefCell<Vec<Bytes>>>,
}

impl<'a> EngineView<'a> {
    /// A view of `engine`.
    pub fn new(engine: &'a dyn Engine) -> Self {
        EngineView {
            engine,
            expired: RefCell::new(Vec::new()),
            missed: None,
        }
    }

    /// A view of `engine` that remembers the keys looked up and not found.
    pub fn noting_misses(engine: &'a dyn Engine) -> Self {
        EngineView {
            missed: Some(RefCell::new(Vec::new())),
            ..EngineView::new(engine)
        }
    }

    /// The expired keys reads came across, to be deleted.
    pub fn take_expired(&self) -> Vec<(Bytes, u64)> {
        std::mem::take(&mut self.expired.borrow_mut())
    }

    /// The keys looked up and not found, in order (none unless noted).
    pub fn take_missed(&self) -> Vec<Bytes> {
        self.missed
            .as_ref()
            .map(|m| std::mem::take(&mut *m.borrow_mut()))
            .unwrap_or_default()
    }
}

impl View for EngineView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.engine.get(key)
    }

    fn note_expired(&self, key: &[u8], expire_at: u64) {
        self.expired
            .borrow_mut()
            .push((Bytes::copy_from_slice(key), expire_at));
    }

    fn note_missing(&self, key: &[u8]) {
        if let Some(missed) = &self.missed {
            missed.borrow_mut().push(Bytes::copy_from_slice(key));
        }
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        self.engine.scan(start, end, reverse, visit)
    }

    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut RangeVisit<'_>,
    ) -> Result<(), EngineError> {
        self.engine.scan_ranges(ranges, visit)
    }
}

/// A key's metadata record, whether or not it has expired.
pub fn raw_meta(view: &(impl View + ?Sized), key: &[u8]) -> Result<Option<KeyMeta>, EngineError> {
    match view.get(&keys::meta_key(key))? {
        Some(bytes) => Ok(Some(KeyMeta::decode_vec(bytes)?)),
        None => Ok(None),
    }
}

/// A key's metadata if the key exists and has not expired at `now_ms` (an expired key is
/// reported to [`View::note_expired`]).
pub fn live_meta(
    view: &(impl View + ?Sized),
    key: &[u8],
    now_ms: i64,
) -> Result<Option<KeyMeta>, EngineError> {
    match raw_meta(view, key)? {
        Some(KeyMeta {
            expire_at: Some(at),
            ..
        }) if (at as i64) <= now_ms => {
            view.note_expired(key, at);
            view.note_missing(key);
            Ok(None)
        }
        None => {
            view.note_missing(key);
            Ok(None)
        }
        live => Ok(live),
    }
}

/// Like [`live_meta`] but WRONGTYPE unless the key is of `kind`.
pub fn typed_meta(
    view: &(impl View + ?Sized),
    key: &[u8],
    now_ms: i64,
    kind: KeyType,
) -> Result<Option<KeyMeta>, ExecError> {
    match live_meta(view, key, now_ms)? {
        Some(m) if m.key_type() != kind => Err(CommandError::WrongType.into()),
        other => Ok(other),
    }
}

/// Everything a read command needs.
pub struct ReadCtx<'a> {
    /// The data.
    pub view: &'a dyn View,
    /// The time reads are evaluated at (expiry, TTL).
    pub now_ms: i64,
    /// The partition's bookkeeping (DBSIZE).
    pub state: AppliedState,
    /// SCAN-family cursor positions.
    pub cursors: &'a mut ScanCursors,
}

/// Executes a read command (its type admits no write: [`zankv_commands::Command::route`]).
pub fn execute_read(ctx: &mut ReadCtx<'_>, cmd: &ReadCommand) -> ExecResult {
    match cmd {
        ReadCommand::Keyspace(c) => keyspace::read(ctx, c),
        ReadCommand::String(c) => string::read(ctx, c),
        ReadCommand::Hash(c) => hash::read(ctx, c),
        ReadCommand::List(c) => list::read(ctx, c),
        ReadCommand::Set(c) => set::read(ctx, c),
        ReadCommand::Zset(c) => zset::read(ctx, c),
        ReadCommand::Geo(c) => geo::read(ctx, c),
        ReadCommand::Sort(c) => sort::read(ctx, c),
        ReadCommand::Functions(c) => functions::read(ctx, c),
    }
}

/// Executes a write command inside `txn`.
pub fn execute_write(txn: &mut Txn<'_>, cmd: &WriteCommand) -> ExecResult {
    match cmd {
        WriteCommand::Keyspace(c) => keyspace::write(txn, c),
        WriteCommand::String(c) => string::write(txn, c),
        WriteCommand::Hash(c) => hash::write(txn, c),
        WriteCommand::List(c) => list::write(txn, c),
        WriteCommand::Set(c) => set::write(txn, c),
        WriteCommand::Zset(c) => zset::write(txn, c),
        WriteCommand::HyperLogLog(c) => hyperloglog::write(txn, c),
        WriteCommand::Geo(c) => geo::write(txn, c),
        WriteCommand::Sort(c) => sort::write(txn, c),
    }
}

/// Cursor numbers stay below this.
pub const CURSOR_LIMIT: u64 = 1 << 47;

/// Remembers where unfinished SCAN/HSCAN iterations stopped. Cursor numbers are opaque and
/// below 2^47 (so the proxy can add a partition index in the bits above); the oldest
/// positions are forgotten past a fixed capacity (an expired cursor answers
/// "ERR invalid cursor").
pub struct ScanCursors {
    next: u64,
    positions: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
    capacity: usize,
}

impl ScanCursors {
    /// A table holding up to `capacity` open cursors, numbered from a random start so
    /// cursors from before a restart are not mistaken for new ones.
    pub fn new(capacity: usize) -> Self {
        ScanCursors {
            next: fastrand::u64(1..CURSOR_LIMIT / 2),
            positions: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Stores a position and returns its cursor number (never 0).
    pub fn save(&mut self, position: Vec<u8>) -> u64 {
        let id = self.next;
        self.next = if self.next + 1 >= CURSOR_LIMIT {
            1
        } else {
            self.next + 1
        };
        self.positions.insert(id, position);
        self.order.push_back(id);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.positions.remove(&old);
            }
        }
        id
    }

    /// The position of a cursor, if still known.
    pub fn get(&self, id: u64) -> Option<&[u8]> {
        self.positions.get(&id).map(Vec::as_slice)
    }

    /// Where an iteration resumes: `first` for cursor 0, else just after the stored position.
    pub fn resume(&self, cursor: u64, first: Vec<u8>) -> Result<Vec<u8>, CommandError> {
        if cursor == 0 {
            return Ok(first);
        }
        let mut after = self
            .get(cursor)
            .ok_or(CommandError::InvalidCursor)?
            .to_vec();
        after.push(0);
        Ok(after)
    }
}

/// A write in progress: buffers one change's writes into a single batch and reads through
/// them.
pub struct Txn<'a> {
    /// What the change reads through to: the engine, or an enclosing transaction that holds
    /// earlier changes of the same batch.
    base: &'a dyn View,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Engine reads already made by this change (commands often read a key's metadata more
    /// than once: to decide, then to update counters and indexes).
    reads: RefCell<HashMap<Vec<u8>, Option<Vec<u8>>>>,
    /// Expired keys this change came across; deleted when it finishes (as Redis does on
    /// access).
    expired: RefCell<Vec<Vec<u8>>>,
    deleted_ranges: Vec<(Vec<u8>, Vec<u8>)>,
    batch: WriteBatch,
    /// The change's time; every expiry decision uses it.
    pub now_ms: i64,
    /// Bookkeeping, updated as the change proceeds.
    pub state: AppliedState,
    /// A blocked client's pop tried again after a write woke it: source keys of another
    /// type are passed over ([`Txn::source_meta`]), as Redis serves a waiter only from a
    /// key of its type.
    pub waiting: bool,
    /// The keyspace event classes wanted (`zankv_commands::notify`); 0: events are not
    /// even recorded.
    pub notify: u16,
    /// The keyspace events of this change so far, in order (also recorded while a key is
    /// looked up: `expired`).
    events: RefCell<Vec<Event>>,
    /// The keys whose `expired` event is recorded.
    announced: RefCell<HashSet<Vec<u8>>>,
    /// Set while a read command runs inside the change (MULTI): its lookups that find
    /// nothing are key misses (`keymiss`), as a write's are not.
    pub reading: Cell<bool>,
}

impl View for Txn<'_> {
    fn note_expired(&self, key: &[u8], _expire_at: u64) {
        self.expired.borrow_mut().push(key.to_vec());
        self.announce_expired(key);
    }

    fn note_missing(&self, key: &[u8]) {
        if self.reading.get() {
            self.record(notify::KEY_MISS, "keymiss", key);
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        if self.in_deleted_range(key) {
            return Ok(None);
        }
        if let Some(v) = self.reads.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.base.get(key)?;
        self.reads.borrow_mut().insert(key.to_vec(), v.clone());
        Ok(v)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        if start >= end {
            return Ok(());
        }
        let touched = self
            .overlay
            .range(start.to_vec()..end.to_vec())
            .next()
            .is_some()
            || self
                .deleted_ranges
                .iter()
                .any(|(s, e)| s.as_slice() < end && e.as_slice() > start);
        if !touched {
            return self.base.scan(start, end, reverse, visit);
        }
        // Merge the base's keys with this change's own writes as the scan goes, so a visit
        // that stops early stops the base's scan too (a command reading the first few
        // elements of a big collection it has just written to reads only those).
        let range = self.overlay.range(start.to_vec()..end.to_vec());
        let mut own: std::iter::Peekable<Box<dyn Iterator<Item = _>>> = if reverse {
            (Box::new(range.rev()) as Box<dyn Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)>>)
                .peekable()
        } else {
            (Box::new(range) as Box<dyn Iterator<Item = _>>).peekable()
        };
        let mut stopped = false;
        self.base.scan(start, end, reverse, &mut |k, v| {
            // This change's keys that come first in scan order.
            while let Some((key, _)) = own.peek() {
                let first = if reverse {
                    key.as_slice() > k
                } else {
                    key.as_slice() < k
                };
                if !first {
                    break;
                }
                if let Some((key, Some(value))) = own.next() {
                    if !visit(key, value) {
                        stopped = true;
                        return false;
                    }
                }
            }
            let (key, value) = match own.peek() {
                // This change wrote (or deleted) the same key: its version wins.
                Some((key, value)) if key.as_slice() == k => {
                    let (key, value) = (*key, *value);
                    own.next();
                    match value {
                        Some(value) => (key.as_slice(), value.as_slice()),
                        None => return true,
                    }
                }
                _ if self.in_deleted_range(k) => return true,
                _ => (k, v),
            };
            if !visit(key, value) {
                stopped = true;
                return false;
            }
            true
        })?;
        if !stopped {
            for (key, value) in own {
                if let Some(value) = value {
                    if !visit(key, value) {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

impl<'a> Txn<'a> {
    /// Starts a change at `now_ms` on top of `state`, reading through to `base`.
    pub fn new(base: &'a dyn View, now_ms: i64, state: AppliedState) -> Self {
        Txn {
            base,
            overlay: BTreeMap::new(),
            reads: RefCell::new(HashMap::new()),
            expired: RefCell::new(Vec::new()),
            deleted_ranges: Vec::new(),
            batch: WriteBatch::default(),
            now_ms,
            state,
            waiting: false,
            notify: 0,
            events: RefCell::new(Vec::new()),
            announced: RefCell::new(HashSet::new()),
            reading: Cell::new(false),
        }
    }

    /// Records keyspace event `event` of `class` on `key`, if that class is wanted (as
    /// Redis's `notifyKeyspaceEvent`, called where Redis calls it).
    pub fn notify(&mut self, class: u16, event: &'static str, key: &[u8]) {
        self.record(class, event, key);
    }

    /// Records event `event` of `class` on `key` if that class is wanted (also while the
    /// change is only looked at: lookups announce `expired` and `keymiss`).
    fn record(&self, class: u16, event: &'static str, key: &[u8]) {
        if self.notify & class != 0 {
            self.events.borrow_mut().push(Event {
                class,
                name: event,
                key: Bytes::copy_from_slice(key),
            });
        }
    }

    /// After a command's own event on a collection it left with `len` elements: `del` if
    /// none are left (the key is gone), as Redis notifies.
    pub fn notify_emptied(&mut self, key: &[u8], len: u64) {
        if len == 0 {
            self.notify(notify::GENERIC, "del", key);
        }
    }

    /// `expired` for `key`, once per change: when a lookup first finds it expired, as
    /// Redis deletes such a key on access, before the command's own events.
    fn announce_expired(&self, key: &[u8]) {
        if self.notify & notify::EXPIRED != 0 && self.announced.borrow_mut().insert(key.to_vec()) {
            self.record(notify::EXPIRED, "expired", key);
        }
    }

    /// The events recorded so far, in order.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(self.events.get_mut())
    }

    /// Records events that happened in a change nested in this one.
    pub fn extend_events(&mut self, events: Vec<Event>) {
        self.events.get_mut().extend(events);
    }

    fn in_deleted_range(&self, key: &[u8]) -> bool {
        self.deleted_ranges
            .iter()
            .any(|(s, e)| key >= s.as_slice() && key < e.as_slice())
    }

    /// Stores a raw key.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key.clone(), Some(value.clone()));
        self.batch.put(key, value);
    }

    /// Removes a raw key.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key.clone(), None);
        self.batch.delete(key);
    }

    /// Removes every raw key in `[start, end)`.
    pub fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        let doomed: Vec<Vec<u8>> = self
            .overlay
            .range(start.clone()..end.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.overlay.remove(&k);
        }
        self.batch.delete_range(start.clone(), end.clone());
        self.deleted_ranges.push((start, end));
    }

    /// A fresh collection version.
    pub fn new_version(&mut self) -> u64 {
        let v = self.state.next_version;
        self.state.next_version += 1;
        v
    }

    /// Live metadata of `key` (see [`live_meta`]).
    pub fn live_meta(&self, key: &[u8]) -> Result<Option<KeyMeta>, EngineError> {
        live_meta(self, key, self.now_ms)
    }

    /// Live metadata, WRONGTYPE unless of `kind`.
    pub fn typed_meta(&self, key: &[u8], kind: KeyType) -> Result<Option<KeyMeta>, ExecError> {
        typed_meta(self, key, self.now_ms, kind)
    }

    /// Live metadata of a key a pop takes from: as [`Txn::typed_meta`], except that for a
    /// blocked client's pop tried again ([`Txn::waiting`]) a key of another type is as good
    /// as missing.
    pub fn source_meta(&self, key: &[u8], kind: KeyType) -> Result<Option<KeyMeta>, ExecError> {
        match self.typed_meta(key, kind) {
            Err(ExecError::Command(CommandError::WrongType)) if self.waiting => Ok(None),
            other => other,
        }
    }

    /// Removes what an old metadata record implies (expiry index entry, elements of another
    /// version); returns whether there was a record.
    fn retire(
        &mut self,
        key: &[u8],
        keep_version: Option<u64>,
    ) -> Result<Option<KeyMeta>, EngineError> {
        let Some(old) = raw_meta(self, key)? else {
            return Ok(None);
        };
        if let Some(at) = old.expire_at {
            self.delete(keys::expiry_key(at, key));
            self.state.expires = self.state.expires.saturating_sub(1);
        }
        if let KeyBody::Collection {
            kind, version, len, ..
        } = old.body
        {
            if keep_version != Some(version) {
                let record = ReclaimRecord {
                    tag: kind_code(kind),
                    len: Some(len),
                };
                self.put(keys::reclaim_key(version), record.encode());
                self.state.reclaims += 1;
            }
        }
        Ok(Some(old))
    }

    /// Writes `key`'s metadata, keeping counts, the expiry index and reclamation in step.
    pub fn set_meta(&mut self, key: &[u8], meta: &KeyMeta) -> Result<(), EngineError> {
        let keep = match meta.body {
            KeyBody::Collection { version, .. } => Some(version),
            KeyBody::String(_) => None,
        };
        match self.retire(key, keep)? {
            None => {
                self.state.keys += 1;
                self.notify(notify::NEW, "new", key);
            }
            // An expired key replaced is deleted first, as Redis does on access.
            Some(old) if old.is_expired(self.now_ms) => {
                self.announce_expired(key);
                self.notify(notify::NEW, "new", key);
            }
            Some(_) => {}
        }
        if let Some(at) = meta.expire_at {
            self.put(keys::expiry_key(at, key), Vec::new());
            self.state.expires += 1;
        }
        self.put(keys::meta_key(key), meta.encode());
        Ok(())
    }

    /// Deletes `key` (live or expired). Returns whether a live key was deleted.
    pub fn delete_key(&mut self, key: &[u8]) -> Result<bool, EngineError> {
        self.remove_key(key, None)
    }

    /// Deletes `key`'s metadata but keeps the elements of collection version `keep` (they
    /// now belong to another key: RENAME).
    pub fn detach_key(&mut self, key: &[u8], keep: u64) -> Result<bool, EngineError> {
        self.remove_key(key, Some(keep))
    }

    fn remove_key(&mut self, key: &[u8], keep_version: Option<u64>) -> Result<bool, EngineError> {
        match self.retire(key, keep_version)? {
            Some(old) => {
                self.delete(keys::meta_key(key));
                self.state.keys = self.state.keys.saturating_sub(1);
                let live = !old.is_expired(self.now_ms);
                if !live {
                    self.announce_expired(key);
                }
                Ok(live)
            }
            None => Ok(false),
        }
    }

    /// Replays another transaction's writes (a finished change of the same batch) on top of
    /// this one, in their original order.
    pub fn absorb(&mut self, batch: WriteBatch) {
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => self.put(k, v),
                WriteOp::Delete(k) => self.delete(k),
                WriteOp::DeleteRange(s, e) => self.delete_range(s, e),
            }
        }
    }

    /// Deletes the expired keys this change came across and that are still expired (a
    /// command may have recreated one since).
    pub fn reap_expired(&mut self) -> Result<(), EngineError> {
        let keys = self.take_noted_expired();
        self.reap(keys)
    }

    /// The expired keys this change came across so far.
    pub fn take_noted_expired(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.expired.borrow_mut())
    }

    /// Deletes those of `keys` that exist and are expired.
    pub fn reap(&mut self, keys: Vec<Vec<u8>>) -> Result<(), EngineError> {
        for key in keys {
            if raw_meta(self, &key)?.is_some_and(|m| m.is_expired(self.now_ms)) {
                self.delete_key(&key)?;
            }
        }
        Ok(())
    }

    /// Ends the change: the batch to write (with the applied state appended by the caller)
    /// and the new bookkeeping.
    pub fn finish(self) -> (WriteBatch, AppliedState) {
        (self.batch, self.state)
    }
}

/// Type byte stored in reclamation records: the element tag of the collection's type.
pub fn kind_code(kind: KeyType) -> u8 {
    kind.element_tag().unwrap_or(0)
}

/// A collection's element version (0 for a string, which has no elements).
pub fn version_of(meta: &KeyMeta) -> u64 {
    match meta.body {
        KeyBody::Collection { version, .. } => version,
        KeyBody::String(_) => 0,
    }
}

/// A collection's element count (0 for a string).
pub fn len_of(meta: &KeyMeta) -> u64 {
    match meta.body {
        KeyBody::Collection { len, .. } => len,
        KeyBody::String(_) => 0,
    }
}

/// `meta` with its element count set to `new_len`.
pub fn with_len(mut meta: KeyMeta, new_len: u64) -> KeyMeta {
    if let KeyBody::Collection { len, .. } = &mut meta.body {
        *len = new_len;
    }
    meta
}

/// The collection of `kind` at `key` for writing: its live metadata (WRONGTYPE if the key
/// holds another type), or a new empty one under a fresh version. A new collection is not
/// stored until the caller writes its metadata, which it must not do while it is empty.
pub fn collection_for_write(
    txn: &mut Txn<'_>,
    key: &[u8],
    kind: KeyType,
) -> Result<KeyMeta, ExecError> {
    match txn.typed_meta(key, kind)? {
        Some(m) => Ok(m),
        None => {
            let version = txn.new_version();
            Ok(KeyMeta::collection(kind, version))
        }
    }
}

/// Stores `meta` with `len` elements, or deletes the key when none are left (Redis never
/// keeps an empty collection). The elements of a deleted key's version are reclaimed in
/// the background.
pub fn store_collection(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    len: u64,
) -> Result<(), EngineError> {
    if len == 0 {
        txn.delete_key(key)?;
    } else {
        txn.set_meta(key, &with_len(meta, len))?;
    }
    Ok(())
}

/// HSCAN/SSCAN/ZSCAN: walks the elements under `prefix` from the cursor's position, looking
/// at up to COUNT of them, and returns those whose name passes MATCH (each followed by its
/// stored value as `value` shows it, when given) and the cursor to continue from (0 at the
/// end).
pub fn scan_elements(
    ctx: &mut ReadCtx<'_>,
    prefix: &[u8],
    args: &ScanArgs,
    value: Option<fn(&[u8]) -> Reply>,
) -> ExecResult {
    let start = ctx.cursors.resume(args.cursor, prefix.to_vec())?;
    let mut out = Vec::new();
    let (mut seen, mut more, mut last) = (0usize, false, None);
    ctx.view
        .scan(&start, &keys::prefix_end(prefix), false, &mut |k, v| {
            if seen == args.count {
                more = true;
                return false;
            }
            seen += 1;
            last = Some(k.to_vec());
            let name = &k[prefix.len()..];
            if args.pattern.as_ref().is_none_or(|p| keys_match(p, name)) {
                out.push(Reply::bulk_from(name));
                if let Some(show) = value {
                    out.push(show(v));
                }
            }
            true
        })?;
    let next = match (more, last) {
        (true, Some(pos)) => ctx.cursors.save(pos),
        _ => 0,
    };
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(out),
    ]))
}

/// HRANDFIELD/ZRANDMEMBER with a count over `entries` (name, value) of an existing key:
/// distinct entries for a non-negative count, `n` draws with repetition otherwise; values
/// included when asked. Random choices are made on the node answering the read: reads are
/// not replicated, so they need not be deterministic.
pub fn random_entries(entries: &[(Reply, Reply)], count: RandFieldCount) -> ExecResult {
    let (n, distinct, with_values) = match count {
        RandFieldCount::One => {
            return Ok(if entries.is_empty() {
                Reply::Nil
            } else {
                entries[fastrand::usize(..entries.len())].0.clone()
            })
        }
        RandFieldCount::Many {
            n,
            distinct,
            with_values,
        } => (n, distinct, with_values),
    };
    if entries.is_empty() {
        return Ok(Reply::Array(vec![]));
    }
    if !distinct && n > MAX_RANDOM_PICKS as u64 {
        return Err(ExecError::Command(CommandError::OutOfRange));
    }
    let chosen: Vec<&(Reply, Reply)> = if distinct {
        let mut idx: Vec<usize> = (0..entries.len()).collect();
        fastrand::shuffle(&mut idx);
        idx.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        idx.into_iter().map(|i| &entries[i]).collect()
    } else {
        (0..n)
            .map(|_| &entries[fastrand::usize(..entries.len())])
            .collect()
    };
    Ok(if with_values {
        Reply::Pairs(chosen.into_iter().cloned().collect())
    } else {
        Reply::Array(chosen.into_iter().map(|(f, _)| f.clone()).collect())
    })
}
