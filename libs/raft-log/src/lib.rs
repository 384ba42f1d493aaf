//! A raft log kept in memory after its last snapshot: the entries that follow the
//! snapshot's index, in order. This crate answers raft-rs's `Storage` reads over such a
//! window, so the storage node's groups and PD's metadata log agree on them.
//!
//! Invariant the callers keep: `entries[i].index == snapshot.index + 1 + i`.

use raft::eraftpb::{Entry, SnapshotMetadata};
use raft::StorageError;

/// The first index the window holds an entry for (or would, if it is empty).
pub fn first_index(snapshot: &SnapshotMetadata) -> u64 {
    snapshot.index + 1
}

/// The last index of the log: the last entry's, or the snapshot's when there is none.
pub fn last_index(snapshot: &SnapshotMetadata, entries: &[Entry]) -> u64 {
    entries.last().map_or(snapshot.index, |e| e.index)
}

/// `Storage::entries`: the entries in `[low, high)`, at most `max_size` bytes (at least one).
pub fn entries(
    snapshot: &SnapshotMetadata,
    entries: &[Entry],
    low: u64,
    high: u64,
    max_size: Option<u64>,
) -> raft::Result<Vec<Entry>> {
    let first = first_index(snapshot);
    if low < first {
        return Err(raft::Error::Store(StorageError::Compacted));
    }
    if high > last_index(snapshot, entries) + 1 || low > high {
        return Err(raft::Error::Store(StorageError::Unavailable));
    }
    let mut out = entries[(low - first) as usize..(high - first) as usize].to_vec();
    raft::util::limit_size(&mut out, max_size);
    Ok(out)
}

/// `Storage::term`: the term of entry `idx` (the snapshot's own index included).
pub fn term(snapshot: &SnapshotMetadata, entries: &[Entry], idx: u64) -> raft::Result<u64> {
    if idx == snapshot.index {
        return Ok(snapshot.term);
    }
    if idx < first_index(snapshot) {
        return Err(raft::Error::Store(StorageError::Compacted));
    }
    if idx > last_index(snapshot, entries) {
        return Err(raft::Error::Store(StorageError::Unavailable));
    }
    Ok(entries[(idx - first_index(snapshot)) as usize].term)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn reads_follow_the_snapshot_point() {
        let snap = SnapshotMetadata {
            index: 10,
            term: 2,
            ..Default::default()
        };
        let log = vec![entry(11, 2), entry(12, 3), entry(13, 3)];
        assert_eq!((first_index(&snap), last_index(&snap, &log)), (11, 13));
        assert_eq!(last_index(&snap, &[]), 10);
        assert_eq!(term(&snap, &log, 10).unwrap(), 2);
        assert_eq!(term(&snap, &log, 12).unwrap(), 3);
        assert!(matches!(
            term(&snap, &log, 9),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            term(&snap, &log, 14),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));
        assert_eq!(entries(&snap, &log, 11, 13, None).unwrap().len(), 2);
        assert_eq!(
            entries(&snap, &log, 11, 14, Some(0)).unwrap().len(),
            1,
            "at least one"
        );
        assert!(entries(&snap, &log, 10, 12, None).is_err());
        assert!(entries(&snap, &log, 12, 15, None).is_err());
    }
}
