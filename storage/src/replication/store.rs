//! The raft half of a node's store loop: every peer the node hosts, driven together so that
//! one write batch and **one** sync persist the raft output of all groups (group commit
//! across partitions).
//!
//! [`RaftStore`] does no networking and reads no clock: its owner (the store thread, or a
//! simulation) feeds it ticks, messages and proposals, calls [`RaftStore::process_ready`]
//! once per loop iteration, sends the returned messages and hands the committed entries to
//! the partitions' apply workers.
//!
//! Invariants:
//! - within one `process_ready`, every peer's log changes are written in a single batch,
//!   followed by a single sync, before any message that depends on them leaves and before
//!   any entry they commit is handed out (what does not depend on them goes out before the
//!   sync, to overlap it); the sync is skipped when the batch only moves commit indexes;
//! - a message for a group this node does not host is dropped (and counted), never an error.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft::eraftpb::{Entry, Message, Snapshot};

use super::log_store::{GroupId, GroupLog};
use super::peer::{Peer, ProposeError, RaftTiming};
use crate::engine::{Engine, EngineError, WriteBatch, WriteOp};

/// A raft message addressed to one group.
#[derive(Debug, Clone)]
pub struct GroupMessage {
    /// The group.
    pub group: GroupId,
    /// The raft message (its `to` is the replica id).
    pub msg: Message,
}

/// What one loop iteration produced.
#[derive(Debug, Default)]
pub struct StoreOutput {
    /// Messages to send, each to the node hosting replica `msg.to` of `group`.
    pub messages: Vec<GroupMessage>,
    /// Committed entries per group, in order, to apply.
    pub committed: Vec<(GroupId, Vec<Entry>)>,
    /// Snapshots received from leaders: each group's state machine must be replaced.
    pub snapshots: Vec<(GroupId, Snapshot)>,
    /// Confirmed reads per group: `(context, index)` as registered with
    /// [`RaftStore::read_index`].
    pub reads: Vec<(GroupId, Vec<(u64, u64)>)>,
    /// Groups whose membership changed (their conf-change entries were applied).
    pub conf_changed: Vec<GroupId>,
    /// How many groups had log changes persisted by this iteration's single sync.
    pub groups_persisted: usize,
}

/// A ready cycle between [`RaftStore::begin_ready`] and [`RaftStore::finish_ready`]: the
/// log changes to persist and the groups to advance. [`ReadyCycle::persist`] needs only the
/// log engine, so it may run on another thread while the store waits.
#[derive(Default)]
pub struct ReadyCycle {
    batch: WriteBatch,
    must_sync: bool,
    persisted: bool,
    synced: bool,
    readied: Vec<GroupId>,
    late: StoreOutput,
}

impl ReadyCycle {
    /// Whether persisting includes an fsync.
    pub fn must_sync(&self) -> bool {
        self.must_sync && !self.batch.ops.is_empty()
    }

    /// Bytes of log changes to write.
    pub fn bytes(&self) -> usize {
        self.batch
            .ops
            .iter()
            .map(|op| match op {
                WriteOp::Put(k, v) | WriteOp::DeleteRange(k, v) => k.len() + v.len(),
                WriteOp::Delete(k) => k.len(),
            })
            .sum()
    }

    /// Writes the cycle's log changes with one write and, when needed, one sync.
    pub fn persist(&mut self, log_engine: &dyn Engine) -> Result<(), EngineError> {
        if !self.batch.ops.is_empty() {
            log_engine.write(std::mem::take(&mut self.batch), false)?;
            if self.must_sync {
                log_engine.sync()?;
                self.synced = true;
            }
        }
        self.persisted = true;
        Ok(())
    }
}

/// How a replica with no log yet starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start<'a> {
    /// As one of the group's initial voters (`voters`, this replica among them), when the
    /// group is created: its log starts at [`super::log_store::INIT_INDEX`], and its state
    /// machine must start there too.
    Bootstrap(&'a [u64]),
    /// As a new replica of an existing group, with nothing: the leader will send a
    /// snapshot once the replica is added to the group.
    Join,
}

/// Counters for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Syncs of the raft-log engine.
    pub syncs: u64,
    /// Group ready cycles persisted (so `groups_persisted / syncs` is the group-commit ratio).
    pub groups_persisted: u64,
    /// Messages dropped because they were for another incarnation of this node's replica.
    pub dropped_other_incarnation: u64,
    /// Messages dropped because their group is not hosted here.
    pub dropped_unknown_group: u64,
}

/// All raft peers of one node, over one shared raft-log engine.
pub struct RaftStore {
    log_engine: Arc<dyn Engine>,
    peers: BTreeMap<GroupId, Peer>,
    timing: RaftTiming,
    logger: slog::Logger,
    stats: StoreStats,
}

impl RaftStore {
    /// A store with no groups yet, persisting raft logs to `log_engine`.
    pub fn new(log_engine: Box<dyn Engine>, timing: RaftTiming, logger: slog::Logger) -> Self {
        let log_engine: Arc<dyn Engine> = Arc::from(log_engine);
        RaftStore {
            log_engine,
            peers: BTreeMap::new(),
            timing,
            logger,
            stats: StoreStats::default(),
        }
    }

    /// Hosts replica `replica` of `group`, restarting from its persisted log if there is one
    /// (with the replica id that log records, if it records one), else creating it as
    /// `start` says. `applied` is what the group's state machine has applied.
    pub fn host(
        &mut self,
        group: GroupId,
        replica: u64,
        start: Start<'_>,
        applied: u64,
    ) -> Result<(), EngineError> {
        let log = match GroupLog::load(self.log_engine.as_ref(), group)? {
            Some(log) => log,
            None => {
                let mut batch = WriteBatch::default();
                let log = match start {
                    Start::Bootstrap(voters) => {
                        GroupLog::bootstrap(group, replica, voters, &mut batch)
                    }
                    Start::Join => GroupLog::joiner(group, replica, &mut batch),
                };
                self.log_engine.write(batch, true)?;
                log
            }
        };
        // The state machine may have applied entries whose commit index was not persisted
        // yet (a crash in between): restart from the durable commit and let the state
        // machine skip what it already has.
        let applied = applied.min(log.hard_state().commit);
        let replica = log.replica().unwrap_or(replica);
        let peer = Peer::new(replica, log, applied, self.timing, &self.logger)
            .map_err(|e| EngineError::Corruption(format!("cannot start group {group}: {e}")))?;
        self.peers.insert(group, peer);
        Ok(())
    }

    /// Stops hosting `group`: its peer goes, and its log is deleted and a tombstone left so
    /// that a restart does not bring it back. Durable on return.
    pub fn unhost(&mut self, group: GroupId) -> Result<(), EngineError> {
        self.peers.remove(&group);
        let mut batch = WriteBatch::default();
        GroupLog::destroy(group, true, &mut batch);
        self.log_engine.write(batch, true)
    }

    /// Clears whatever an earlier replica of `group` left here (a tombstone), so that a new
    /// replica can be hosted. Durable on return.
    pub fn forget(&mut self, group: GroupId) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        GroupLog::destroy(group, false, &mut batch);
        self.log_engine.write(batch, true)
    }

    /// Groups with a persisted log here (see [`GroupLog::persisted_groups`]).
    pub fn persisted_groups(&self) -> Result<Vec<GroupId>, EngineError> {
        GroupLog::persisted_groups(self.log_engine.as_ref())
    }

    /// Whether this node's raft log holds `group`.
    pub fn has_log(&self, group: GroupId) -> Result<bool, EngineError> {
        Ok(GroupLog::load(self.log_engine.as_ref(), group)?.is_some())
    }

    /// Whether a replica of `group` was removed from this node.
    pub fn is_tombstoned(&self, group: GroupId) -> Result<bool, EngineError> {
        GroupLog::is_tombstoned(self.log_engine.as_ref(), group)
    }

    /// Records a node's addresses durably.
    pub fn save_node(&mut self, node: u64, addrs: &str) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        GroupLog::save_node(node, addrs, &mut batch);
        self.log_engine.write(batch, true)
    }

    /// Nodes recorded with [`RaftStore::save_node`].
    pub fn saved_nodes(&self) -> Result<Vec<(u64, String)>, EngineError> {
        GroupLog::saved_nodes(self.log_engine.as_ref())
    }

    /// The compaction point persisted for `group`: its state machine must hold at least
    /// this index before the group is hosted (0 for a new group).
    pub fn persisted_compaction(&self, group: GroupId) -> Result<u64, EngineError> {
        GroupLog::persisted_compaction(self.log_engine.as_ref(), group)
    }

    /// The peer of `group`, if hosted.
    pub fn peer(&self, group: GroupId) -> Option<&Peer> {
        self.peers.get(&group)
    }

    /// Hosted groups.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.peers.keys().copied()
    }

    /// Counters.
    pub fn stats(&self) -> StoreStats {
        self.stats
    }

    /// Advances every peer's logical clock by one tick.
    pub fn tick(&mut self) {
        for peer in self.peers.values_mut() {
            peer.tick();
        }
    }

    /// Delivers a message from another node. A message for another replica id than the
    /// one hosted (an earlier or later incarnation of this node's replica) is dropped:
    /// raft-rs would take it for its own and could act on a history it never had.
    pub fn step(&mut self, m: GroupMessage) {
        match self.peers.get_mut(&m.group) {
            Some(peer) if peer.id() == m.msg.to => {
                // raft-rs rejects stale messages of its own replica itself.
                let _ = peer.step(m.msg);
            }
            Some(_) => self.stats.dropped_other_incarnation += 1,
            None => self.stats.dropped_unknown_group += 1,
        }
    }

    /// The peer of `group`, mutable (status, campaigns, leadership transfer).
    pub fn peer_mut(&mut self, group: GroupId) -> Option<&mut Peer> {
        self.peers.get_mut(&group)
    }

    /// Registers a linearizable read on `group`'s leader; see [`Peer::read_index`].
    pub fn read_index(&mut self, group: GroupId, context: u64) -> Result<(), ProposeError> {
        match self.peers.get_mut(&group) {
            Some(peer) => peer.read_index(context),
            None => Err(ProposeError::NotLeader { leader: 0 }),
        }
    }

    /// Proposes a membership change to `group` (this node must host its leader).
    pub fn propose_conf_change(
        &mut self,
        group: GroupId,
        change: raft::eraftpb::ConfChangeV2,
    ) -> Result<(), ProposeError> {
        match self.peers.get_mut(&group) {
            Some(peer) => peer.propose_conf_change(change),
            None => Err(ProposeError::NotLeader { leader: 0 }),
        }
    }

    /// Proposes a change to `group` (this node must host its leader).
    pub fn propose(&mut self, group: GroupId, data: Vec<u8>) -> Result<(), ProposeError> {
        match self.peers.get_mut(&group) {
            Some(peer) => peer.propose(data),
            None => Err(ProposeError::NotLeader { leader: 0 }),
        }
    }

    /// Reports a snapshot transfer's outcome to the sending peer.
    pub fn report_snapshot(&mut self, group: GroupId, to: u64, delivered: bool) {
        if let Some(peer) = self.peers.get_mut(&group) {
            peer.report_snapshot(to, delivered);
        }
    }

    /// Compacts `group`'s log up to `index`, which its state machine holds durably.
    pub fn compact(&mut self, group: GroupId, index: u64) -> Result<(), EngineError> {
        if let Some(peer) = self.peers.get_mut(&group) {
            let mut batch = WriteBatch::default();
            peer.compact_log(index, &mut batch);
            if !batch.ops.is_empty() {
                // Losing a compaction in a crash only keeps entries longer.
                self.log_engine.write(batch, false)?;
            }
        }
        Ok(())
    }

    /// Offers followers of `group` a snapshot of its state machine at `index`; see
    /// [`Peer::offer_snapshot`].
    pub fn offer_snapshot(&mut self, group: GroupId, index: u64, data: bytes::Bytes) -> bool {
        self.peers
            .get_mut(&group)
            .is_some_and(|p| p.offer_snapshot(index, data))
    }

    /// Groups whose log holds more than `max_entries` entries or `max_bytes` bytes.
    pub fn groups_with_long_logs(&self, max_entries: usize, max_bytes: usize) -> Vec<GroupId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.log().len() > max_entries || p.log().bytes() > max_bytes)
            .map(|(g, _)| *g)
            .collect()
    }

    /// Groups a follower needs a snapshot of that is not offered yet (reading clears the
    /// request; raft-rs asks again while it still needs one).
    pub fn groups_wanting_snapshots(&self) -> Vec<GroupId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.log().take_snapshot_request())
            .map(|(g, _)| *g)
            .collect()
    }

    /// One loop iteration: collect every peer's ready, persist them all with one batch and
    /// one sync, then advance every peer.
    ///
    /// What does not depend on this iteration's persistence is handed to `before_sync`
    /// before the sync starts, so it overlaps the fsync: the leaders' appends to followers
    /// (their fsyncs then run while ours does), entries already committed (raft-rs only
    /// hands out entries this node has persisted) and confirmed reads. The rest (messages
    /// that must wait for persistence, entries committed by it, snapshots to install) is
    /// returned. [`RaftStore::begin_ready`] and [`RaftStore::finish_ready`] are its two
    /// halves, for a caller that wants to do something between them.
    pub fn process_ready(
        &mut self,
        before_sync: &mut dyn FnMut(StoreOutput),
    ) -> Result<StoreOutput, EngineError> {
        match self.begin_ready()? {
            None => Ok(StoreOutput::default()),
            Some((early, mut cycle)) => {
                before_sync(early);
                cycle.persist(self.log_engine.as_ref())?;
                self.finish_ready(cycle)
            }
        }
    }

    /// The engine of the raft log, for [`ReadyCycle::persist`].
    pub fn log_engine(&self) -> Arc<dyn Engine> {
        self.log_engine.clone()
    }

    /// The first half of [`RaftStore::process_ready`]: takes every peer's ready and returns
    /// what may leave before the sync, with the cycle to finish (`None`: no peer had a
    /// ready). Nothing else may touch the store until [`RaftStore::finish_ready`] ran.
    pub fn begin_ready(&mut self) -> Result<Option<(StoreOutput, ReadyCycle)>, EngineError> {
        let mut early = StoreOutput::default();
        let mut cycle = ReadyCycle::default();
        let mut conf_batch = WriteBatch::default();
        for (&group, peer) in &mut self.peers {
            if let Some(ready) = peer.take_ready(&mut cycle.batch) {
                cycle.must_sync |= ready.must_sync;
                early.messages.extend(
                    ready
                        .messages
                        .into_iter()
                        .map(|msg| GroupMessage { group, msg }),
                );
                if let Some(snap) = ready.snapshot {
                    cycle.late.snapshots.push((group, snap));
                }
                if !ready.reads.is_empty() {
                    early.reads.push((group, ready.reads));
                }
                Self::hand_out(
                    &self.logger,
                    group,
                    peer,
                    ready.committed,
                    &mut conf_batch,
                    &mut early,
                );
                cycle.readied.push(group);
            }
        }
        if cycle.readied.is_empty() {
            return Ok(None);
        }
        if !conf_batch.ops.is_empty() {
            // A configuration must be durable before its entry can count as applied.
            self.log_engine.write(conf_batch, true)?;
        }
        Ok(Some((early, cycle)))
    }

    /// The second half of [`RaftStore::process_ready`], once [`ReadyCycle::persist`] ran:
    /// advances the peers and returns what had to wait for persistence.
    ///
    /// # Panics
    /// If the cycle was not persisted (acknowledging unpersisted entries could lose
    /// acknowledged writes).
    pub fn finish_ready(&mut self, cycle: ReadyCycle) -> Result<StoreOutput, EngineError> {
        let ReadyCycle {
            persisted,
            synced,
            readied,
            mut late,
            ..
        } = cycle;
        assert!(persisted, "a ready cycle advanced before it was persisted");
        if synced {
            self.stats.syncs += 1;
        }
        let mut conf_batch = WriteBatch::default();
        for group in readied {
            let peer = self.peers.get_mut(&group).expect("readied peer is hosted");
            let after = peer.advance();
            late.messages.extend(
                after
                    .messages
                    .into_iter()
                    .map(|msg| GroupMessage { group, msg }),
            );
            Self::hand_out(
                &self.logger,
                group,
                peer,
                after.committed,
                &mut conf_batch,
                &mut late,
            );
            late.groups_persisted += 1;
        }
        self.stats.groups_persisted += late.groups_persisted as u64;
        if !conf_batch.ops.is_empty() {
            self.log_engine.write(conf_batch, true)?;
        }
        Ok(late)
    }

    /// Hands committed entries out, applying membership changes among them to the peer.
    fn hand_out(
        logger: &slog::Logger,
        group: GroupId,
        peer: &mut Peer,
        committed: Vec<Entry>,
        conf_batch: &mut WriteBatch,
        out: &mut StoreOutput,
    ) {
        if committed.is_empty() {
            return;
        }
        let mut changed = false;
        for e in &committed {
            if e.get_entry_type() != raft::eraftpb::EntryType::EntryNormal {
                // A malformed change cannot be applied by any replica; it is skipped alike
                // everywhere.
                match peer.apply_conf_change(e, conf_batch) {
                    Ok(Some(_)) => changed = true,
                    Ok(None) => {}
                    Err(err) => {
                        slog::error!(logger, "membership change not applied"; "group" => group, "index" => e.index, "error" => %err);
                    }
                }
            }
        }
        if changed {
            out.conf_changed.push(group);
        }
        out.committed.push((group, committed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::memory::MemoryEngine;

    fn single_replica_store(disk: &Arc<MemoryEngine>) -> RaftStore {
        single_replica_store_at(disk, super::super::log_store::INIT_INDEX)
    }

    /// A store hosting group 1 alone, whose state machine has applied up to `applied`.
    fn single_replica_store_at(disk: &Arc<MemoryEngine>, applied: u64) -> RaftStore {
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut store = RaftStore::new(Box::new(disk.clone()), RaftTiming::default(), logger);
        store.host(1, 1, Start::Bootstrap(&[1]), applied).unwrap();
        store
    }

    /// Runs cycles whose persistence happens on another thread, as the store loop runs a
    /// large sync; returns the committed entries' data.
    fn cycles_persisted_elsewhere(store: &mut RaftStore, n: usize) -> Vec<Vec<u8>> {
        let mut committed = Vec::new();
        for _ in 0..n {
            store.tick();
            let Some((early, mut cycle)) = store.begin_ready().unwrap() else {
                continue;
            };
            let engine = store.log_engine();
            cycle = std::thread::spawn(move || {
                cycle.persist(engine.as_ref()).unwrap();
                cycle
            })
            .join()
            .unwrap();
            let late = store.finish_ready(cycle).unwrap();
            for (_, entries) in early.committed.into_iter().chain(late.committed) {
                committed.extend(entries.into_iter().map(|e| e.data.to_vec()));
            }
        }
        committed
    }

    #[test]
    fn a_cycle_persisted_on_another_thread_commits_and_survives_a_crash() {
        let disk = Arc::new(MemoryEngine::new());
        let mut store = single_replica_store(&disk);
        // Elect the single replica, then let it commit its empty entry.
        cycles_persisted_elsewhere(&mut store, 50);
        assert!(store.peer(1).unwrap().is_leader());
        store.propose(1, b"one".to_vec()).unwrap();
        let committed = cycles_persisted_elsewhere(&mut store, 3);
        assert!(committed.contains(&b"one".to_vec()), "{committed:?}");
        assert!(store.stats().syncs > 0);
        // What was synced survives power loss: a new store reads the entry back.
        drop(store);
        disk.lose_unsynced();
        let store = single_replica_store(&disk);
        let peer = store.peer(1).unwrap();
        let entries = raft::Storage::entries(
            peer.log(),
            raft::Storage::first_index(peer.log()).unwrap(),
            peer.last_index() + 1,
            None,
            raft::GetEntriesContext::empty(false),
        )
        .unwrap();
        assert!(
            entries.iter().any(|e| e.data.as_ref() == b"one"),
            "the acknowledged entry was lost"
        );
    }

    #[test]
    fn a_log_compacted_past_the_synced_commit_index_restarts_after_a_crash() {
        let disk = Arc::new(MemoryEngine::new());
        let mut store = single_replica_store(&disk);
        cycles_persisted_elsewhere(&mut store, 50);
        assert!(store.peer(1).unwrap().is_leader());
        // A single replica commits its entries as it persists them: raft-rs reports those
        // commit moves apart from any hard state, so no Ready writes them.
        let mut written = 0;
        for n in 0..20u8 {
            store.propose(1, vec![n]).unwrap();
            written += cycles_persisted_elsewhere(&mut store, 1).len();
        }
        assert!(written >= 20, "{written} entries committed");
        let applied = store.peer(1).unwrap().commit_index();
        store.compact(1, applied).unwrap();
        assert_eq!(store.peer(1).unwrap().log().compacted_index(), applied);
        // A later synced write makes the (unsynced) compaction durable; then power loss.
        store.propose(1, b"last".to_vec()).unwrap();
        cycles_persisted_elsewhere(&mut store, 2);
        drop(store);
        disk.lose_unsynced();
        // raft-rs refuses (panics) to start from a log compacted past its commit index. The
        // state machine holds what the log was compacted to (it had made it durable first).
        let store = single_replica_store_at(&disk, applied);
        let peer = store.peer(1).unwrap();
        assert!(peer.log().compacted_index() >= applied);
        assert!(peer.commit_index() >= peer.log().compacted_index());
    }

    #[test]
    #[should_panic(expected = "advanced before it was persisted")]
    fn a_cycle_cannot_advance_before_it_is_persisted() {
        let disk = Arc::new(MemoryEngine::new());
        let mut store = single_replica_store(&disk);
        for _ in 0..50 {
            store.tick();
            if let Some((_, cycle)) = store.begin_ready().unwrap() {
                store.finish_ready(cycle).unwrap();
            }
        }
    }
}
