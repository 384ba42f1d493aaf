//! The raft log of PD's metadata group, as raft-rs reads it ([`raft::Storage`]), and its
//! one durable file.
//!
//! Every entry is a whole metadata value (JSON), and the log is compacted right after each
//! apply, so it only ever holds the entries not applied yet; the compaction point is a
//! snapshot whose data is the metadata applied there. A member that falls behind is sent
//! that snapshot.
//!
//! Durable form: `<data_dir>/raft.bin`, replaced atomically (temporary file, sync, rename,
//! directory sync) by [`MetaLog::persist`], holding the hard state, the snapshot
//! (metadata and data) and the entries after it, each a length-prefixed protobuf. A crash
//! leaves the old or the new file. Invariant: entries are contiguous and start right after
//! the snapshot's index.

use std::io::Write;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage};

const MAGIC: &[u8; 8] = b"zankvpd1";

/// PD's raft log.
#[derive(Debug, Clone)]
pub struct MetaLog {
    path: PathBuf,
    hard_state: HardState,
    /// The compaction point, with the metadata applied there as its data.
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

fn encode(m: &impl protobuf::Message) -> Vec<u8> {
    m.write_to_bytes()
        .expect("encoding into memory cannot fail")
}

impl MetaLog {
    /// Opens the log in `dir`, or creates one whose initial state is `initial` (the
    /// metadata at index 1, term 1, with `voters` as the configuration) when there is none.
    /// Every member created from the same `voters` and `initial` starts identically.
    pub fn open(dir: &Path, voters: &[u64], initial: Vec<u8>) -> Result<MetaLog, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join("raft.bin");
        match std::fs::read(&path) {
            Ok(bytes) => Self::decode(path.clone(), &bytes)
                .map_err(|e| format!("{} is corrupt: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut snapshot = Snapshot::default();
                let meta = snapshot.mut_metadata();
                meta.index = 1;
                meta.term = 1;
                meta.set_conf_state(ConfState {
                    voters: voters.to_vec(),
                    ..Default::default()
                });
                snapshot.data = initial.into();
                let log = MetaLog {
                    path,
                    hard_state: HardState {
                        term: 1,
                        commit: 1,
                        ..Default::default()
                    },
                    snapshot,
                    entries: Vec::new(),
                };
                log.persist()?;
                Ok(log)
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn decode(path: PathBuf, bytes: &[u8]) -> Result<MetaLog, String> {
        let mut rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or("not a PD raft log")?;
        let mut next = || -> Result<&[u8], String> {
            let len: [u8; 4] = rest
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or("truncated")?;
            let len = u32::from_be_bytes(len) as usize;
            let body = rest.get(4..4 + len).ok_or("truncated")?;
            rest = &rest[4 + len..];
            Ok(body)
        };
        let hard_state = HardState::parse_from_bytes(next()?).map_err(|e| e.to_string())?;
        let snapshot = Snapshot::parse_from_bytes(next()?).map_err(|e| e.to_string())?;
        let count: [u8; 4] = next()?.try_into().map_err(|_| "bad entry count")?;
        let mut entries = Vec::new();
        for _ in 0..u32::from_be_bytes(count) {
            entries.push(Entry::parse_from_bytes(next()?).map_err(|e| e.to_string())?);
        }
        let first = snapshot.get_metadata().index + 1;
        if entries
            .iter()
            .enumerate()
            .any(|(i, e)| e.index != first + i as u64)
        {
            return Err("entries are not contiguous".into());
        }
        Ok(MetaLog {
            path,
            hard_state,
            snapshot,
            entries,
        })
    }

    /// Writes the whole log to its file, durably.
    pub fn persist(&self) -> Result<(), String> {
        let mut out = MAGIC.to_vec();
        let mut put = |body: &[u8]| {
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(body);
        };
        put(&encode(&self.hard_state));
        put(&encode(&self.snapshot));
        put(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            put(&encode(e));
        }
        let tmp = self.path.with_extension("bin.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&out)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }

    fn first(&self) -> u64 {
        zankv_raft_log::first_index(self.snapshot.get_metadata())
    }

    fn last(&self) -> u64 {
        zankv_raft_log::last_index(self.snapshot.get_metadata(), &self.entries)
    }

    /// The snapshot: the metadata applied at the compaction point.
    pub fn snapshot_data(&self) -> &[u8] {
        &self.snapshot.data
    }

    /// Index of the compaction point.
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    /// Appends entries from raft-rs, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        if first.index <= self.snapshot_index() {
            // Already covered by the snapshot: keep only what follows it.
            let keep: Vec<Entry> = entries
                .iter()
                .filter(|e| e.index > self.snapshot_index())
                .cloned()
                .collect();
            return self.append(&keep);
        }
        let keep = (first.index - self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Records the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// The hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Installs a snapshot received from the leader: the log restarts after it.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        self.entries.retain(|e| e.index > index);
        if self.entries.first().is_some_and(|e| e.index != index + 1) {
            self.entries.clear();
        }
        if self.hard_state.commit < index {
            self.hard_state.commit = index;
        }
        self.snapshot = snapshot;
    }

    /// Compacts the log at `index` (applied, with `data` the metadata there).
    pub fn compact(&mut self, index: u64, data: Vec<u8>) {
        if index <= self.snapshot_index() || index > self.last() {
            return;
        }
        let term = self.term(index).expect("index is within the log");
        let conf = self.snapshot.get_metadata().get_conf_state().clone();
        self.entries.retain(|e| e.index > index);
        let mut snapshot = Snapshot::default();
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf);
        snapshot.data = data.into();
        self.snapshot = snapshot;
    }
}

impl Storage for MetaLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.snapshot.get_metadata().get_conf_state().clone(),
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

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The compaction point is always a complete snapshot (its data is the metadata).
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &str) -> Entry {
        Entry {
            index,
            term,
            data: data.as_bytes().to_vec().into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_log_survives_a_reopen_and_compacts_into_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path(), &[1, 2, 3], b"{}".to_vec()).unwrap();
        assert_eq!(
            log.initial_state().unwrap().conf_state.voters,
            vec![1, 2, 3]
        );
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (2, 1)
        );
        log.append(&[entry(2, 2, "a"), entry(3, 2, "b")]);
        // A new leader overwrites the conflicting suffix.
        log.append(&[entry(3, 3, "c"), entry(4, 3, "d")]);
        log.set_hard_state(HardState {
            term: 3,
            commit: 3,
            ..Default::default()
        });
        log.persist().unwrap();
        let again = MetaLog::open(dir.path(), &[9], b"ignored".to_vec()).unwrap();
        assert_eq!(again.last_index().unwrap(), 4);
        assert_eq!(again.term(3).unwrap(), 3);
        assert_eq!(again.hard_state().commit, 3);
        assert_eq!(again.snapshot_data(), b"{}");
        log.compact(3, b"meta at 3".to_vec());
        assert_eq!(log.first_index().unwrap(), 4);
        assert_eq!(log.term(3).unwrap(), 3);
        assert!(log.term(2).is_err());
        assert_eq!(log.snapshot(0, 2).unwrap().data.as_ref(), b"meta at 3");
        assert_eq!(
            log.snapshot(0, 2)
                .unwrap()
                .get_metadata()
                .get_conf_state()
                .voters,
            vec![1, 2, 3]
        );
        std::fs::write(dir.path().join("raft.bin"), b"zankvpd1\0\0").unwrap();
        let err = MetaLog::open(dir.path(), &[1], vec![]).unwrap_err();
        assert!(err.contains("raft.bin is corrupt"), "{err}");
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_what_it_covers() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path(), &[1, 2], b"{}".to_vec()).unwrap();
        log.append(&[entry(2, 1, "a")]);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 10;
        snap.mut_metadata().term = 4;
        snap.data = b"meta at 10".to_vec().into();
        log.apply_snapshot(snap);
        assert_eq!(
            (log.first_index().unwrap(), log.last_index().unwrap()),
            (11, 10)
        );
        assert_eq!(log.hard_state().commit, 10);
        assert_eq!(log.snapshot_data(), b"meta at 10");
    }
}
