//! The RocksDB [`Engine`]: the only file in the workspace that names RocksDB types.
//!
//! One RocksDB database per partition (see docs/storage-format.md for why), plus the
//! node's raft-log database. Two kinds:
//! - [`RocksEngine::open_log`] (the raft log): writes go to the WAL without fsync, and
//!   [`Engine::sync`] syncs the WAL once for everything written before it (group commit);
//! - [`RocksEngine::open_unlogged`] (partition data): no WAL at all, because the raft log is
//!   the record of every change. Writes live in memtables until RocksDB flushes them;
//!   [`Engine::sync`] flushes. After a crash the database holds what was flushed, and the
//!   node replays the rest from the raft log (which is compacted only up to a flushed
//!   index).
//!
//! All databases of a node share one block cache, handed in through [`RocksOptions`].

use std::path::Path;

use rocksdb::{
    Cache, DBCompressionType, Direction, IteratorMode, MemtableFactory, Options, ReadOptions,
    WriteOptions, DB,
};

use super::{Engine, EngineError, Flow, RangeVisit, Visit, WriteBatch, WriteOp};

/// Smallest and largest memtable a database gets from the node's budget.
const MIN_WRITE_BUFFER: usize = 1 << 20;
const MAX_WRITE_BUFFER: usize = 64 << 20;

/// Node-wide RocksDB settings: one block cache shared by every database, and the memtable
/// size of the databases opened with these options.
#[derive(Clone)]
pub struct RocksOptions {
    cache: Cache,
    write_buffer_size: usize,
    /// Most table files one database keeps open (-1: no limit).
    max_open_files: i32,
}

impl RocksOptions {
    /// Settings with one shared block cache of `block_cache_bytes` and memtables of
    /// `write_buffer_bytes` (clamped to 1..64 MiB).
    pub fn new(block_cache_bytes: usize, write_buffer_bytes: usize) -> Result<Self, EngineError> {
        let cache = Cache::new_lru_cache(block_cache_bytes).map_err(backend)?;
        Ok(RocksOptions {
            cache,
            write_buffer_size: write_buffer_bytes.clamp(MIN_WRITE_BUFFER, MAX_WRITE_BUFFER),
            max_open_files: -1,
        })
    }

    /// Bytes the shared block cache holds now.
    pub fn cache_usage(&self) -> u64 {
        self.cache.get_usage() as u64
    }

    /// The same settings, with each database keeping at most `files` table files open.
    pub fn with_open_files(&self, files: i32) -> RocksOptions {
        RocksOptions {
            max_open_files: files,
            ..self.clone()
        }
    }

    /// The same cache, with memtables of `budget_bytes / databases` each (clamped): how a
    /// memory budget is shared by many databases.
    pub fn sharing(&self, budget_bytes: usize, databases: usize) -> RocksOptions {
        RocksOptions {
            cache: self.cache.clone(),
            write_buffer_size: (budget_bytes / databases.max(1))
                .clamp(MIN_WRITE_BUFFER, MAX_WRITE_BUFFER),
            max_open_files: self.max_open_files,
        }
    }

    fn db_options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        // One memtable filling while at most one flushes: a database holds at most twice
        // its share.
        opts.set_write_buffer_size(self.write_buffer_size / 2);
        opts.set_max_write_buffer_number(2);
        // Most writes look a key up first (type, expiry): a memtable bloom filter answers
        // "absent" without walking the skip list.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.02);
        opts.set_keep_log_file_num(4);
        opts.set_max_open_files(self.max_open_files);
        // Each database has one writer (its partition's worker, or the store loop): no
        // concurrent memtable inserts, no spinning for a write group to form.
        opts.set_allow_concurrent_memtable_write(false);
        opts.set_enable_write_thread_adaptive_yield(false);
        // RocksDB's periodic statistics dump is noise with hundreds of databases.
        opts.set_stats_dump_period_sec(0);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks live in the shared cache (so memory does not grow with the
        // number of databases), partitioned into small blocks: a lookup reads the top-level
        // index (pinned) and the one filter and index partition it needs. Unpartitioned, a
        // large table's filter is megabytes, and once the cache cannot keep every filter,
        // each lookup (every write looks its key up first) reads and checksums a whole
        // filter from disk: throughput fell tenfold past a few million keys per node.
        table.set_cache_index_and_filter_blocks(true);
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        opts.set_block_based_table_factory(&table);
        opts
    }
}

fn backend(e: rocksdb::Error) -> EngineError {
    EngineError::Backend(e.into_string())
}

/// A RocksDB database.
pub struct RocksEngine {
    db: DB,
    /// Whether writes go to a WAL.
    logged: bool,
}

impl RocksEngine {
    /// Opens (creating if needed) the database in `dir`, with a write-ahead log.
    pub fn open(dir: &Path, options: &RocksOptions) -> Result<Self, EngineError> {
        let db = DB::open(&options.db_options(), dir).map_err(backend)?;
        Ok(RocksEngine { db, logged: true })
    }

    /// Opens (creating if needed) the database in `dir` without a write-ahead log: writes
    /// are durable once [`Engine::sync`] (a flush) returns or RocksDB flushes by itself.
    pub fn open_unlogged(dir: &Path, options: &RocksOptions) -> Result<Self, EngineError> {
        let db = DB::open(&options.db_options(), dir).map_err(backend)?;
        Ok(RocksEngine { db, logged: false })
    }

    /// Opens (creating if needed) a database for an append-mostly log, read back only when
    /// the node starts (the raft log): like [`RocksEngine::open`], but its memtable is a
    /// plain vector (an append costs no skip-list search; reads sort it, which the flush
    /// done here at opening spares the start-up reads).
    pub fn open_log(dir: &Path, options: &RocksOptions) -> Result<Self, EngineError> {
        let mut opts = options.db_options();
        opts.set_memtable_factory(MemtableFactory::Vector);
        opts.set_allow_concurrent_memtable_write(false);
        opts.set_memtable_whole_key_filtering(false);
        opts.set_memtable_prefix_bloom_ratio(0.0);
        let db = DB::open(&opts, dir).map_err(backend)?;
        db.flush().map_err(backend)?;
        Ok(RocksEngine { db, logged: true })
    }
}

impl Engine for RocksEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        self.db.get(key).map_err(backend)
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
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(start.to_vec());
        read.set_iterate_upper_bound(end.to_vec());
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::From(start, Direction::Forward)
        };
        for item in self.db.iterator_opt(mode, read) {
            let (k, v) = item.map_err(backend)?;
            if !visit(&k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut RangeVisit<'_>,
    ) -> Result<(), EngineError> {
        let ranges: Vec<_> = ranges
            .iter()
            .enumerate()
            .filter(|(_, (s, e))| s < e)
            .collect();
        let (Some(low), Some(high)) = (
            ranges.iter().map(|(_, (s, _))| s).min(),
            ranges.iter().map(|(_, (_, e))| e).max(),
        ) else {
            return Ok(());
        };
        let mut read = ReadOptions::default();
        read.set_iterate_lower_bound(low.clone());
        read.set_iterate_upper_bound(high.clone());
        let mut it = self.db.raw_iterator_opt(read);
        'ranges: for (i, (start, end)) in ranges {
            it.seek(start);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if k >= end.as_slice() {
                    break;
                }
                match visit(i, k, v) {
                    Flow::Continue => it.next(),
                    Flow::NextRange => break,
                    Flow::Stop => break 'ranges,
                }
            }
            // A read error ends the range like its end would; the next seek would clear it.
            it.status().map_err(backend)?;
        }
        it.status().map_err(backend)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), EngineError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => wb.put(k, v),
                WriteOp::Delete(k) => wb.delete(k),
                WriteOp::DeleteRange(s, e) => wb.delete_range(s, e),
            }
        }
        let mut opts = WriteOptions::default();
        if self.logged {
            opts.set_sync(sync);
        } else {
            opts.disable_wal(true);
        }
        self.db.write_opt(wb, &opts).map_err(backend)?;
        if sync && !self.logged {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        if self.logged {
            self.db.flush_wal(true).map_err(backend)
        } else {
            self.db.flush().map_err(backend)
        }
    }

    fn checkpoint(&self, dir: &Path) -> Result<(), EngineError> {
        // Flushes the memtables first, so the copy needs no WAL replay.
        rocksdb::checkpoint::Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::scan_ranges_one_by_one;

    /// Every (range, key) a scan of `ranges` visits, with a visit that skips to the next
    /// range after two keys of a range starting with `b` and stops at key `k5`.
    fn visited(
        scan: impl Fn(&[(Vec<u8>, Vec<u8>)], &mut RangeVisit<'_>) -> Result<(), EngineError>,
        ranges: &[(Vec<u8>, Vec<u8>)],
    ) -> Vec<(usize, String)> {
        let mut out = Vec::new();
        let mut in_range = (usize::MAX, 0);
        scan(ranges, &mut |i, k, _| {
            in_range = if in_range.0 == i {
                (i, in_range.1 + 1)
            } else {
                (i, 1)
            };
            out.push((i, String::from_utf8_lossy(k).into_owned()));
            if k == b"k5" {
                Flow::Stop
            } else if ranges[i].0.starts_with(b"b") && in_range.1 == 2 {
                Flow::NextRange
            } else {
                Flow::Continue
            }
        })
        .unwrap();
        out
    }

    #[test]
    fn one_iterator_visits_ranges_as_separate_scans_do() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RocksOptions::new(8 << 20, 4 << 20).unwrap();
        let engine = RocksEngine::open_unlogged(dir.path(), &opts).unwrap();
        let mut batch = WriteBatch::default();
        for k in ["a1", "a2", "b1", "b2", "b3", "c1", "k1", "k5", "k9"] {
            batch.put(k.as_bytes().to_vec(), b"v".to_vec());
        }
        engine.write(batch, false).unwrap();
        let r = |s: &str, e: &str| (s.as_bytes().to_vec(), e.as_bytes().to_vec());
        // Out of order, overlapping, empty and inverted ranges, and a stop.
        let ranges = [
            r("c", "d"),
            r("a", "b3"),
            r("b", "c"),
            r("x", "y"),
            r("b", "a"),
            r("a1", "a2"),
            r("k", "l"),
            r("a", "z"),
        ];
        let one = visited(|rs, v| engine.scan_ranges(rs, v), &ranges);
        let each = visited(
            |rs, v| scan_ranges_one_by_one(|s, e, v| engine.scan(s, e, false, v), rs, v),
            &ranges,
        );
        assert_eq!(one, each);
        assert_eq!(one.first(), Some(&(0, "c1".to_string())));
        assert_eq!(one.last(), Some(&(6, "k5".to_string())));
    }
}
