//! The narrow storage-engine interface the rest of the storage node is written against.
//!
//! An [`Engine`] is one ordered key-value store holding one partition's data: point reads,
//! ordered range scans, atomic write batches, and an explicit WAL sync so the caller can
//! group-commit (write many batches, then sync once). No RocksDB type appears here; the
//! RocksDB implementation lives in [`rocks`] (the only file that names RocksDB), and
//! [`memory`] is a `BTreeMap` implementation for tests.
//!
//! Invariants every implementation keeps:
//! - a batch is applied atomically and in order (later operations see earlier ones);
//! - after `sync` returns, every batch written before it survives a crash (an engine may
//!   make batches durable earlier, never later);
//! - scans see every batch written before the scan started.

pub mod memory;
pub mod rocks;

use thiserror::Error;

/// A storage failure. Never the client's fault: callers report it as an internal error.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EngineError {
    /// The underlying store returned an error (IO, corruption, ...).
    #[error("storage engine: {0}")]
    Backend(String),
    /// Data read from disk does not decode.
    #[error("corrupt record: {0}")]
    Corruption(String),
}

/// One operation of a write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
    /// Remove every key in `[start, end)`.
    DeleteRange(Vec<u8>, Vec<u8>),
}

/// An ordered list of writes applied atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// The operations, in order.
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// Appends a put.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(WriteOp::Put(key, value));
    }

    /// Appends a delete.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete(key));
    }

    /// Appends a range delete of `[start, end)`.
    pub fn delete_range(&mut self, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(WriteOp::DeleteRange(start, end));
    }
}

/// Visitor for scans: called with each key and value in order; return `false` to stop.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// What a visit of [`Engine::scan_ranges`] wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The next key of this range.
    Continue,
    /// The next range.
    NextRange,
    /// Nothing more.
    Stop,
}

/// Visitor for [`Engine::scan_ranges`]: the range's index, then each key and value.
pub type RangeVisit<'a> = dyn FnMut(usize, &[u8], &[u8]) -> Flow + 'a;

/// [`Engine::scan_ranges`] by one [`Engine::scan`] per range (engines without a cheaper way).
pub fn scan_ranges_one_by_one(
    scan: impl Fn(&[u8], &[u8], &mut Visit<'_>) -> Result<(), EngineError>,
    ranges: &[(Vec<u8>, Vec<u8>)],
    visit: &mut RangeVisit<'_>,
) -> Result<(), EngineError> {
    for (i, (start, end)) in ranges.iter().enumerate() {
        let mut stop = false;
        scan(start, end, &mut |k, v| match visit(i, k, v) {
            Flow::Continue => true,
            Flow::NextRange => false,
            Flow::Stop => {
                stop = true;
                false
            }
        })?;
        if stop {
            break;
        }
    }
    Ok(())
}

/// An ordered key-value store for one partition.
pub trait Engine: Send + Sync {
    /// Reads one key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;

    /// Visits keys in `[start, end)` in ascending order (descending when `reverse`).
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError>;

    /// Visits each of `ranges` (`[start, end)`, ascending) in the order given, as `visit`
    /// directs; an engine may serve them all from one iterator (RocksDB: one iterator,
    /// sought to each range, where a scan per range would build an iterator each).
    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut RangeVisit<'_>,
    ) -> Result<(), EngineError> {
        scan_ranges_one_by_one(|s, e, v| self.scan(s, e, false, v), ranges, visit)
    }

    /// Applies a batch atomically. With `sync`, the batch is durable on return.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), EngineError>;

    /// Makes every batch written so far durable (one fsync for many batches).
    fn sync(&self) -> Result<(), EngineError>;

    /// Writes a consistent, durable copy of everything written so far into `dir` (which
    /// must not exist), in a form [`rocks::RocksEngine::open`] opens: a raft snapshot.
    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), EngineError>;
}

/// A shared engine is an engine (tests keep a handle to a store's engine to inspect it or to
/// reopen the store on it after a simulated crash).
impl<E: Engine + ?Sized> Engine for std::sync::Arc<E> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        (**self).get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), EngineError> {
        (**self).scan(start, end, reverse, visit)
    }

    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut RangeVisit<'_>,
    ) -> Result<(), EngineError> {
        (**self).scan_ranges(ranges, visit)
    }

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), EngineError> {
        (**self).write(batch, sync)
    }

    fn sync(&self) -> Result<(), EngineError> {
        (**self).sync()
    }

    fn checkpoint(&self, dir: &std::path::Path) -> Result<(), EngineError> {
        (**self).checkpoint(dir)
    }
}
