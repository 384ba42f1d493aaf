//! One raft group's log as raft-rs sees it ([`raft::Storage`]), plus its durable form.
//!
//! The in-memory [`GroupLog`] is what raft-rs reads; every change to it also appends the
//! matching write operations to a caller-supplied [`WriteBatch`] for the node's raft-log
//! engine, so the store loop can persist many groups in one batch and sync once.
//! [`GroupLog::load`] rebuilds the in-memory form from that engine after a restart.
//!
//! Raft-log engine layout (big-endian integers):
//!
//! | key | value |
//! |---|---|
//! | `e` group index | `Entry` (protobuf) |
//! | `h` group | `HardState` (protobuf) |
//! | `c` group | `ConfState` (protobuf) |
//! | `s` group | `SnapshotMetadata` (protobuf): the log's compaction point |
//!
//! Invariants:
//! - entries are contiguous and start right after the snapshot index;
//! - the durable form holds exactly the in-memory entries once the batch is written (a
//!   truncated suffix is deleted in the same batch that appends its replacement).

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::engine::{Engine, EngineError, WriteBatch};

/// Identifies a raft group (one partition of one namespace) on a node.
pub type GroupId = u64;

fn key(tag: u8, group: GroupId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(tag);
    k.extend_from_slice(&group.to_be_bytes());
    k
}

fn entry_key(group: GroupId, index: u64) -> Vec<u8> {
    let mut k = key(b'e', group);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn encode(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes()
        .expect("encoding a raft message into memory cannot fail")
}

fn decode<M: protobuf::Message>(bytes: &[u8], what: &str) -> Result<M, EngineError> {
    M::parse_from_bytes(bytes).map_err(|e| EngineError::Corruption(format!("raft {what}: {e}")))
}

/// One group's raft log, hard state, configuration and compaction point.
#[derive(Debug, Clone)]
pub struct GroupLog {
    group: GroupId,
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot: metadata always; data only while it is being offered to a
    /// follower (the data of a real snapshot is the partition itself).
    snapshot: Snapshot,
    entries: Vec<Entry>,
    /// Set when raft-rs asked for a snapshot we could not give: the driver should produce
    /// one (compact at the applied index with the state machine's data).
    snapshot_wanted: std::cell::Cell<bool>,
}

impl GroupLog {
    /// A new, empty log for a group whose initial voters are `voters`.
    pub fn new(group: GroupId, voters: &[u64], batch: &mut WriteBatch) -> Self {
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        batch.put(key(b'c', group), encode(&conf_state));
        GroupLog {
            group,
            hard_state: HardState::default(),
            conf_state,
            snapshot: Snapshot::default(),
            entries: Vec::new(),
            snapshot_wanted: std::cell::Cell::new(false),
        }
    }

    /// Reads a group's log back from the raft-log engine; `None` if the group was never
    /// created there.
    pub fn load(engine: &dyn Engine, group: GroupId) -> Result<Option<Self>, EngineError> {
        let Some(conf) = engine.get(&key(b'c', group))? else {
            return Ok(None);
        };
        let conf_state: ConfState = decode(&conf, "conf state")?;
        let hard_state = match engine.get(&key(b'h', group))? {
            Some(b) => decode(&b, "hard state")?,
            None => HardState::default(),
        };
        let mut snapshot = Snapshot::default();
        if let Some(b) = engine.get(&key(b's', group))? {
            snapshot.set_metadata(decode::<SnapshotMetadata>(&b, "snapshot metadata")?);
        }
        let mut entries = Vec::new();
        let mut bad = None;
        let start = entry_key(group, snapshot.get_metadata().index + 1);
        let end = key(b'e', group + 1);
        engine.scan(
            &start,
            &end,
            false,
            &mut |_, v| match decode::<Entry>(v, "entry") {
                Ok(e) => {
                    entries.push(e);
                    true
                }
                Err(e) => {
                    bad = Some(e);
                    false
                }
            },
        )?;
        if let Some(e) = bad {
            return Err(e);
        }
        let first = snapshot.get_metadata().index + 1;
        for (i, e) in entries.iter().enumerate() {
            if e.index != first + i as u64 {
                return Err(EngineError::Corruption(format!(
                    "raft log of group {group} has a gap at index {}",
                    first + i as u64
                )));
            }
        }
        Ok(Some(GroupLog {
            group,
            hard_state,
            conf_state,
            snapshot,
            entries,
            snapshot_wanted: std::cell::Cell::new(false),
        }))
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    fn first(&self) -> u64 {
        self.snapshot.get_metadata().index + 1
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.get_metadata().index, |e| e.index)
    }

    /// Whether a follower needs a snapshot that is not available yet; reading clears it.
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Number of entries held (not yet compacted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entries are held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends entries from a `Ready`, replacing any conflicting suffix.
    pub fn append(&mut self, new: &[Entry], batch: &mut WriteBatch) {
        let Some(head) = new.first() else {
            return;
        };
        assert!(
            head.index >= self.first(),
            "group {}: appending at {} below the compaction point {}",
            self.group,
            head.index,
            self.first()
        );
        assert!(
            head.index <= self.last() + 1,
            "group {}: gap before appended index {}",
            self.group,
            head.index
        );
        let old_last = self.last();
        self.entries.truncate((head.index - self.first()) as usize);
        for e in new {
            batch.put(entry_key(self.group, e.index), encode(e));
        }
        self.entries.extend_from_slice(new);
        let new_last = self.last();
        if old_last > new_last {
            batch.delete_range(
                entry_key(self.group, new_last + 1),
                entry_key(self.group, old_last + 1),
            );
        }
    }

    /// Records a new hard state.
    pub fn set_hard_state(&mut self, hs: HardState, batch: &mut WriteBatch) {
        batch.put(key(b'h', self.group), encode(&hs));
        self.hard_state = hs;
    }

    /// Notes a commit index learned without a new hard state (in memory only).
    pub fn note_commit(&mut self, commit: u64) {
        self.hard_state.commit = self.hard_state.commit.max(commit);
    }

    /// Records a new configuration (after a membership change is applied).
    pub fn set_conf_state(&mut self, cs: ConfState, batch: &mut WriteBatch) {
        batch.put(key(b'c', self.group), encode(&cs));
        self.conf_state = cs;
    }

    /// Replaces the log with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot, batch: &mut WriteBatch) {
        let meta = snapshot.get_metadata().clone();
        let old_first = self.first();
        let old_last = self.last();
        self.entries.clear();
        if old_last >= old_first {
            batch.delete_range(
                entry_key(self.group, old_first),
                entry_key(self.group, old_last + 1),
            );
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = meta.index;
        self.set_hard_state(hs, batch);
        self.set_conf_state(meta.get_conf_state().clone(), batch);
        batch.put(key(b's', self.group), encode(&meta));
        self.snapshot = Snapshot::default();
        self.snapshot.set_metadata(meta);
    }

    /// Compacts the log up to `index` (which the state machine has applied): entries at or
    /// below it are dropped, and `data` becomes the snapshot offered to lagging followers.
    pub fn compact(&mut self, index: u64, data: bytes::Bytes, batch: &mut WriteBatch) {
        if index < self.first() || index > self.last() {
            return;
        }
        let term = self.entries[(index - self.first()) as usize].term;
        let old_first = self.first();
        self.entries.drain(..(index + 1 - old_first) as usize);
        batch.delete_range(
            entry_key(self.group, old_first),
            entry_key(self.group, index + 1),
        );
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state.clone());
        batch.put(key(b's', self.group), encode(&meta));
        self.snapshot = Snapshot::default();
        self.snapshot.set_metadata(meta);
        self.snapshot.data = data;
    }
}

impl Storage for GroupLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let offset = self.first();
        let mut out = self.entries[(low - offset) as usize..(high - offset) as usize].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let meta = self.snapshot.get_metadata();
        if idx == meta.index {
            return Ok(meta.term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let meta = self.snapshot.get_metadata();
        if meta.index == 0 || meta.index < request_index || self.snapshot.data.is_empty() {
            // Not ready yet: the driver produces one, and raft-rs asks again later.
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: bytes::Bytes::from(format!("{index}@{term}")),
            ..Default::default()
        }
    }

    fn persist(engine: &MemoryEngine, batch: WriteBatch) {
        engine.write(batch, true).unwrap();
    }

    #[test]
    fn append_truncate_compact_and_reload() {
        let disk = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let mut log = GroupLog::new(7, &[1, 2, 3], &mut batch);
        log.append(
            &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>(),
            &mut batch,
        );
        // A new leader overwrites 4..5 with one entry at term 2.
        log.append(&[entry(4, 2)], &mut batch);
        let hs = HardState {
            term: 2,
            commit: 3,
            ..Default::default()
        };
        log.set_hard_state(hs, &mut batch);
        persist(&disk, batch);
        assert_eq!(log.last_index().unwrap(), 4);
        assert_eq!(log.term(4).unwrap(), 2);

        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.last_index().unwrap(), 4);
        assert_eq!(
            reloaded
                .entries(1, 5, None, GetEntriesContext::empty(false))
                .unwrap(),
            log.entries
        );
        assert_eq!(reloaded.hard_state().commit, 3);
        assert_eq!(reloaded.conf_state().voters, vec![1, 2, 3]);

        let mut batch = WriteBatch::default();
        log.compact(3, bytes::Bytes::from_static(b"state"), &mut batch);
        persist(&disk, batch);
        assert_eq!(log.first_index().unwrap(), 4);
        assert_eq!(log.term(3).unwrap(), 1);
        assert!(log.term(2).is_err());
        assert_eq!(log.snapshot(3, 2).unwrap().get_metadata().index, 3);
        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.first_index().unwrap(), 4);
        assert_eq!(reloaded.last_index().unwrap(), 4);
        assert!(GroupLog::load(&disk, 8).unwrap().is_none());
    }

    #[test]
    fn snapshot_replaces_the_log() {
        let disk = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let mut log = GroupLog::new(1, &[1, 2, 3], &mut batch);
        log.append(&[entry(1, 1), entry(2, 1)], &mut batch);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 3;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        log.apply_snapshot(snap, &mut batch);
        persist(&disk, batch);
        let reloaded = GroupLog::load(&disk, 1).unwrap().unwrap();
        assert_eq!(reloaded.first_index().unwrap(), 11);
        assert_eq!(reloaded.last_index().unwrap(), 10);
        assert_eq!(reloaded.term(10).unwrap(), 3);
        assert_eq!(reloaded.hard_state().commit, 10);
        assert!(disk.dump().iter().all(|(k, _)| k[0] != b'e'));
    }
}
