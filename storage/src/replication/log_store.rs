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
//! | `i` group | `u64-BE`: index of the entry that produced the `ConfState` |
//! | `s` group | `SnapshotMetadata` (protobuf): the log's compaction point |
//! | `r` group | `u64-BE`: this node's raft replica id in the group (absent in logs written before replica ids had incarnations: the node id) |
//! | `t` group | empty: the replica was removed from this node (not hosted again at start) |
//! | `N` node | `raft_addr redis_addr` of a node declared at run time |
//!
//! A group with a `c` record is hosted here: the node restarts it from its log.
//!
//! The compaction point (entries up to it are gone) and the snapshot offered to followers
//! are kept apart: a follower that needs entries from before the compaction point gets the
//! latest offered snapshot, a copy of the state machine the driver produced on request
//! ([`GroupLog::take_snapshot_request`], [`GroupLog::offer_snapshot`]); it is never
//! persisted here (after a restart a new one is produced when needed).
//!
//! Invariants:
//! - entries are contiguous and start right after the compaction point;
//! - the durable commit index is at or past the compaction point (a compaction is written
//!   with the hard state);
//! - an offered snapshot is at or after the compaction point, so the entries after it exist;
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
    /// This node's replica id in the group, when recorded.
    replica: Option<u64>,
    hard_state: HardState,
    conf_state: ConfState,
    /// Index of the entry whose membership change produced `conf_state` (0: the initial
    /// configuration or a snapshot's).
    conf_index: u64,
    /// The compaction point: metadata of the last entry dropped (index 0 = none).
    snapshot: Snapshot,
    /// The snapshot offered to followers that need entries before the compaction point.
    offered: Option<Snapshot>,
    entries: Vec<Entry>,
    /// Data bytes of `entries`.
    bytes: usize,
    /// Set when raft-rs asked for a snapshot we could not give: the driver should produce
    /// one (compact at the applied index with the state machine's data).
    snapshot_wanted: std::cell::Cell<bool>,
}

/// Index (and term) at which a group's log starts when it is created with its initial
/// voters: the configuration sits in snapshot metadata at this index and the first entry is
/// the next one, so a replica added later, which has nothing, always needs a snapshot (and
/// so learns the configuration from its metadata, never from a partial history).
pub const INIT_INDEX: u64 = 5;
/// Term of [`INIT_INDEX`].
pub const INIT_TERM: u64 = 5;

impl GroupLog {
    /// The log of a new group whose initial voters are `voters` (this replica, `replica`,
    /// among them): it starts after [`INIT_INDEX`], whose state is the empty partition.
    pub fn bootstrap(group: GroupId, replica: u64, voters: &[u64], batch: &mut WriteBatch) -> Self {
        let conf_state = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let mut meta = SnapshotMetadata {
            index: INIT_INDEX,
            term: INIT_TERM,
            ..Default::default()
        };
        meta.set_conf_state(conf_state.clone());
        let hard_state = HardState {
            term: INIT_TERM,
            commit: INIT_INDEX,
            ..Default::default()
        };
        batch.put(key(b'c', group), encode(&conf_state));
        batch.put(key(b'i', group), INIT_INDEX.to_be_bytes().to_vec());
        batch.put(key(b's', group), encode(&meta));
        batch.put(key(b'h', group), encode(&hard_state));
        batch.put(key(b'r', group), replica.to_be_bytes().to_vec());
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta);
        GroupLog {
            group,
            replica: Some(replica),
            hard_state,
            conf_state,
            conf_index: INIT_INDEX,
            snapshot,
            offered: None,
            entries: Vec::new(),
            bytes: 0,
            snapshot_wanted: std::cell::Cell::new(false),
        }
    }

    /// The log of a replica joining an existing group: no configuration and no entries
    /// until the leader sends a snapshot. Until then the replica is not a voter, so it
    /// neither campaigns nor votes.
    pub fn joiner(group: GroupId, replica: u64, batch: &mut WriteBatch) -> Self {
        let conf_state = ConfState::default();
        batch.put(key(b'c', group), encode(&conf_state));
        batch.put(key(b'r', group), replica.to_be_bytes().to_vec());
        GroupLog {
            group,
            replica: Some(replica),
            hard_state: HardState::default(),
            conf_state,
            conf_index: 0,
            snapshot: Snapshot::default(),
            offered: None,
            entries: Vec::new(),
            bytes: 0,
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
        let replica = match engine.get(&key(b'r', group))? {
            Some(b) => {
                Some(u64::from_be_bytes(b.as_slice().try_into().map_err(
                    |_| EngineError::Corruption("raft replica id".into()),
                )?))
            }
            None => None,
        };
        let mut hard_state: HardState = match engine.get(&key(b'h', group))? {
            Some(b) => decode(&b, "hard state")?,
            None => HardState::default(),
        };
        let conf_index = match engine.get(&key(b'i', group))? {
            Some(b) => u64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| EngineError::Corruption("raft conf index".into()))?,
            ),
            None => 0,
        };
        let mut snapshot = Snapshot::default();
        if let Some(b) = engine.get(&key(b's', group))? {
            snapshot.set_metadata(decode::<SnapshotMetadata>(&b, "snapshot metadata")?);
        }
        // Logs written before compactions carried the hard state can hold a commit index
        // below the compaction point (raft-rs would not start from them). Everything up to
        // the compaction point was applied, hence committed: the commit index is at least
        // that (written with the next hard state).
        hard_state.commit = hard_state.commit.max(snapshot.get_metadata().index);
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
            replica,
            hard_state,
            conf_state,
            conf_index,
            snapshot,
            offered: None,
            bytes: entries.iter().map(|e| e.data.len()).sum(),
            entries,
            snapshot_wanted: std::cell::Cell::new(false),
        }))
    }

    /// This node's replica id in the group, if the log records it.
    pub fn replica(&self) -> Option<u64> {
        self.replica
    }

    /// The persisted compaction point of `group` (0 if none or the group is unknown),
    /// without loading its entries.
    pub fn persisted_compaction(engine: &dyn Engine, group: GroupId) -> Result<u64, EngineError> {
        match engine.get(&key(b's', group))? {
            Some(b) => Ok(decode::<SnapshotMetadata>(&b, "snapshot metadata")?.index),
            None => Ok(0),
        }
    }

    /// Groups with a persisted log on `engine`: the replicas this node hosts.
    pub fn persisted_groups(engine: &dyn Engine) -> Result<Vec<GroupId>, EngineError> {
        let mut groups = Vec::new();
        engine.scan(b"c", b"d", false, &mut |k, _| {
            if let Ok(id) = <[u8; 8]>::try_from(&k[1..]) {
                groups.push(GroupId::from_be_bytes(id));
            }
            true
        })?;
        Ok(groups)
    }

    /// Whether a replica of `group` was removed from this node.
    pub fn is_tombstoned(engine: &dyn Engine, group: GroupId) -> Result<bool, EngineError> {
        Ok(engine.get(&key(b't', group))?.is_some())
    }

    /// Deletes every record of `group` and leaves a tombstone (`tombstone`), or clears
    /// one (a replica hosted here again starts from nothing).
    pub fn destroy(group: GroupId, tombstone: bool, batch: &mut WriteBatch) {
        batch.delete_range(key(b'e', group), key(b'e', group + 1));
        for tag in [b'h', b'c', b'i', b's', b'r'] {
            batch.delete(key(tag, group));
        }
        if tombstone {
            batch.put(key(b't', group), Vec::new());
        } else {
            batch.delete(key(b't', group));
        }
    }

    /// Records node `node`'s addresses (`raft_addr redis_addr`).
    pub fn save_node(node: u64, addrs: &str, batch: &mut WriteBatch) {
        batch.put(key(b'N', node), addrs.as_bytes().to_vec());
    }

    /// Nodes recorded with [`GroupLog::save_node`].
    pub fn saved_nodes(engine: &dyn Engine) -> Result<Vec<(u64, String)>, EngineError> {
        let mut nodes = Vec::new();
        engine.scan(b"N", b"O", false, &mut |k, v| {
            if let Ok(id) = <[u8; 8]>::try_from(&k[1..]) {
                nodes.push((
                    u64::from_be_bytes(id),
                    String::from_utf8_lossy(v).into_owned(),
                ));
            }
            true
        })?;
        Ok(nodes)
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

    /// Index of the entry that produced the current configuration (0 if none did).
    pub fn conf_index(&self) -> u64 {
        self.conf_index
    }

    /// The compaction point: entries up to this index are gone.
    pub fn compacted_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// The index of the snapshot offered to followers, if any.
    pub fn offered_index(&self) -> Option<u64> {
        self.offered.as_ref().map(|s| s.get_metadata().index)
    }

    fn first(&self) -> u64 {
        zankv_raft_log::first_index(self.snapshot.get_metadata())
    }

    fn last(&self) -> u64 {
        zankv_raft_log::last_index(self.snapshot.get_metadata(), &self.entries)
    }

    /// Whether a follower needs a snapshot that is not available yet; reading clears it.
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Number of entries held (not yet compacted).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Data bytes of the entries held.
    pub fn bytes(&self) -> usize {
        self.bytes
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
        let keep = (head.index - self.first()) as usize;
        self.bytes -= self.entries[keep..]
            .iter()
            .map(|e| e.data.len())
            .sum::<usize>();
        self.entries.truncate(keep);
        for e in new {
            batch.put(entry_key(self.group, e.index), encode(e));
            self.bytes += e.data.len();
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

    /// Records a new configuration, produced by the membership change at `index` (0 for a
    /// snapshot's configuration).
    pub fn set_conf_state(&mut self, cs: ConfState, index: u64, batch: &mut WriteBatch) {
        batch.put(key(b'c', self.group), encode(&cs));
        batch.put(key(b'i', self.group), index.to_be_bytes().to_vec());
        self.conf_state = cs;
        self.conf_index = index;
    }

    /// Replaces the log with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot, batch: &mut WriteBatch) {
        let meta = snapshot.get_metadata().clone();
        let old_first = self.first();
        let old_last = self.last();
        self.entries.clear();
        self.bytes = 0;
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
        self.set_conf_state(meta.get_conf_state().clone(), meta.index, batch);
        batch.put(key(b's', self.group), encode(&meta));
        self.snapshot = Snapshot::default();
        self.snapshot.set_metadata(meta);
        self.offered = None;
    }

    /// Compacts the log up to `index`: entries at or below it are dropped. The caller
    /// guarantees the state machine durably holds them. Indexes outside the log are ignored,
    /// and so is the part past the commit index: the hard state, with the commit index the
    /// peer knows (raft-rs leaves persisting the commit moves it reports apart from a hard
    /// state to the application), goes into the same batch, because raft-rs refuses to
    /// start from a log compacted past its hard state's commit index.
    pub fn compact(&mut self, index: u64, batch: &mut WriteBatch) {
        let index = index.min(self.hard_state.commit);
        if index < self.first() || index > self.last() {
            return;
        }
        let term = self.entries[(index - self.first()) as usize].term;
        let old_first = self.first();
        for e in self.entries.drain(..(index + 1 - old_first) as usize) {
            self.bytes -= e.data.len();
        }
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
        batch.put(key(b'h', self.group), encode(&self.hard_state));
        self.snapshot = Snapshot::default();
        self.snapshot.set_metadata(meta);
        if self.offered_index().is_some_and(|i| i < index) {
            self.offered = None;
        }
    }

    /// The metadata a snapshot of the state machine at `index` carries, if it can be
    /// offered: `index` must be in the log (or be the compaction point), and the current
    /// configuration must already hold at `index` (no membership change after it).
    pub fn snapshot_metadata(&self, index: u64) -> Option<SnapshotMetadata> {
        if self.conf_index > index || index < self.compacted_index() || index > self.last() {
            return None;
        }
        let term = self.term(index).ok()?;
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state.clone());
        Some(meta)
    }

    /// Offers a snapshot (built for metadata from [`GroupLog::snapshot_metadata`]) to
    /// followers that need one; it replaces an older offer.
    pub fn offer_snapshot(&mut self, snapshot: Snapshot) {
        assert!(
            snapshot.get_metadata().index >= self.compacted_index(),
            "group {}: offered snapshot {} is older than the compaction point {}",
            self.group,
            snapshot.get_metadata().index,
            self.compacted_index()
        );
        self.offered = Some(snapshot);
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
        zankv_raft_log::entries(
            self.snapshot.get_metadata(),
            &self.entries,
            low,
            high,
            max_size.into(),
        )
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        zankv_raft_log::term(self.snapshot.get_metadata(), &self.entries, idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let needed = request_index.max(self.compacted_index());
        match &self.offered {
            // An offer made before the latest membership change carries the configuration
            // before it: a learner that change added would refuse it (it is not in it),
            // again and again. Only an offer with the current configuration will do.
            Some(snap)
                if snap.get_metadata().index >= needed
                    && snap.get_metadata().get_conf_state() == &self.conf_state =>
            {
                Ok(snap.clone())
            }
            _ => {
                // Not ready yet: the driver produces one, and raft-rs asks again later.
                self.snapshot_wanted.set(true);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
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

    /// Index `n` entries after a new group's log starts.
    fn at(n: u64) -> u64 {
        INIT_INDEX + n
    }

    #[test]
    fn a_new_group_starts_after_its_initial_index_and_a_joiner_with_nothing() {
        let disk = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let log = GroupLog::bootstrap(7, 1, &[1, 2, 3], &mut batch);
        let joiner = GroupLog::joiner(8, zankv_pd_api::replica_id(2, 77), &mut batch);
        persist(&disk, batch);
        assert_eq!(log.first_index().unwrap(), INIT_INDEX + 1);
        assert_eq!(log.last_index().unwrap(), INIT_INDEX);
        assert_eq!(log.term(INIT_INDEX).unwrap(), INIT_TERM);
        let state = log.initial_state().unwrap();
        assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
        assert_eq!(state.hard_state.commit, INIT_INDEX);
        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.first_index().unwrap(), INIT_INDEX + 1);
        assert_eq!(reloaded.compacted_index(), INIT_INDEX);
        // Entry 1 never existed here: a replica that needs it gets a snapshot.
        assert!(reloaded
            .entries(1, 2, None, GetEntriesContext::empty(false))
            .is_err());
        assert!(joiner.conf_state().voters.is_empty());
        let joiner = GroupLog::load(&disk, 8).unwrap().unwrap();
        assert!(joiner.conf_state().voters.is_empty());
        assert_eq!(reloaded.replica(), Some(1));
        assert_eq!(joiner.replica(), Some(zankv_pd_api::replica_id(2, 77)));
        assert_eq!(joiner.last_index().unwrap(), 0);
        let mut hosted = GroupLog::persisted_groups(&disk).unwrap();
        hosted.sort_unstable();
        assert_eq!(hosted, vec![7, 8]);
    }

    #[test]
    fn a_compaction_carries_the_commit_index_and_stops_at_it() {
        let disk = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let mut log = GroupLog::bootstrap(7, 1, &[1], &mut batch);
        log.append(
            &(1..=6).map(|n| entry(at(n), 2)).collect::<Vec<_>>(),
            &mut batch,
        );
        log.set_hard_state(
            HardState {
                term: 2,
                vote: 1,
                commit: at(1),
                ..Default::default()
            },
            &mut batch,
        );
        persist(&disk, batch);
        // Commit moves raft-rs reports apart from a hard state are only noted in memory.
        log.note_commit(at(4));
        let mut batch = WriteBatch::default();
        log.compact(at(6), &mut batch);
        assert_eq!(log.compacted_index(), at(4), "not past the commit index");
        persist(&disk, batch);
        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.compacted_index(), at(4));
        assert_eq!(
            reloaded.hard_state().commit,
            at(4),
            "written with the compaction"
        );
        assert_eq!(
            (reloaded.hard_state().term, reloaded.hard_state().vote),
            (2, 1)
        );

        // A log an older version wrote: its hard state's commit before the compaction point.
        let mut batch = WriteBatch::default();
        batch.put(
            key(b'h', 7),
            encode(&HardState {
                term: 2,
                vote: 1,
                commit: at(2),
                ..Default::default()
            }),
        );
        persist(&disk, batch);
        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.hard_state().commit, at(4));
    }

    #[test]
    fn append_truncate_compact_and_reload() {
        let disk = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let mut log = GroupLog::bootstrap(7, 1, &[1, 2, 3], &mut batch);
        log.append(
            &(1..=5).map(|n| entry(at(n), 6)).collect::<Vec<_>>(),
            &mut batch,
        );
        // A new leader overwrites 4..5 with one entry at term 7.
        log.append(&[entry(at(4), 7)], &mut batch);
        let hs = HardState {
            term: 7,
            commit: at(3),
            ..Default::default()
        };
        log.set_hard_state(hs, &mut batch);
        persist(&disk, batch);
        assert_eq!(log.last_index().unwrap(), at(4));
        assert_eq!(log.term(at(4)).unwrap(), 7);
        let data_bytes = |log: &GroupLog| log.entries.iter().map(|e| e.data.len()).sum::<usize>();
        assert_eq!(
            log.bytes(),
            data_bytes(&log),
            "truncation keeps the byte count"
        );

        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.last_index().unwrap(), at(4));
        assert_eq!(
            reloaded
                .entries(at(1), at(5), None, GetEntriesContext::empty(false))
                .unwrap(),
            log.entries
        );
        assert_eq!(reloaded.hard_state().commit, at(3));
        assert_eq!(reloaded.bytes(), log.bytes());
        assert_eq!(reloaded.conf_state().voters, vec![1, 2, 3]);

        let mut batch = WriteBatch::default();
        log.compact(at(3), &mut batch);
        persist(&disk, batch);
        assert_eq!(log.first_index().unwrap(), at(4));
        assert_eq!(
            log.bytes(),
            data_bytes(&log),
            "compaction keeps the byte count"
        );
        assert_eq!(log.term(at(3)).unwrap(), 6);
        assert!(log.term(at(2)).is_err());
        // No snapshot offered yet: raft-rs is told to wait, and the driver is asked for one.
        assert!(log.snapshot(0, 2).is_err());
        assert!(log.take_snapshot_request());
        assert!(!log.take_snapshot_request());
        assert!(log.snapshot_metadata(at(2)).is_none(), "compacted away");
        let meta = log.snapshot_metadata(at(4)).unwrap();
        assert_eq!((meta.index, meta.term), (at(4), 7));
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        snap.data = bytes::Bytes::from_static(b"state at 4");
        log.offer_snapshot(snap);
        assert_eq!(log.snapshot(0, 2).unwrap().get_metadata().index, at(4));
        assert!(log.snapshot(at(5), 2).is_err(), "older than requested");
        // A membership change after an index makes that index unfit for a snapshot.
        let mut batch = WriteBatch::default();
        log.set_conf_state(
            ConfState {
                voters: vec![1, 2, 3, 4],
                ..Default::default()
            },
            at(4),
            &mut batch,
        );
        assert!(log.snapshot_metadata(at(3)).is_none());
        assert!(
            log.snapshot(0, 4).is_err(),
            "the offer predates the change: the new member would refuse it"
        );
        assert!(log.take_snapshot_request(), "a new one is asked for");
        assert_eq!(
            log.snapshot_metadata(at(4))
                .unwrap()
                .get_conf_state()
                .voters,
            vec![1, 2, 3, 4]
        );
        persist(&disk, batch);
        let reloaded = GroupLog::load(&disk, 7).unwrap().unwrap();
        assert_eq!(reloaded.first_index().unwrap(), at(4));
        assert_eq!(reloaded.last_index().unwrap(), at(4));
        assert_eq!(reloaded.conf_index(), at(4));
        assert_eq!(reloaded.offered_index(), None, "offers are not persisted");
        assert!(GroupLog::load(&disk, 9).unwrap().is_none());
    }

    #[test]
    fn snapshot_replaces_the_log() {
        let disk = MemoryEngine::new();
        let mut batch = WriteBatch::default();
        let mut log = GroupLog::joiner(1, 2, &mut batch);
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
        assert_eq!(reloaded.conf_state().voters, vec![1, 2, 3]);
        assert!(disk.dump().iter().all(|(k, _)| k[0] != b'e'));
    }
}
