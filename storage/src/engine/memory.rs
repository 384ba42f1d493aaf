//! An in-memory [`Engine`] over a `BTreeMap`, for tests. Not durable: `sync` does nothing.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{Engine, EngineError, Visit, WriteBatch, WriteOp};

/// A `BTreeMap`-backed engine.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every key and value, for comparing replicas in tests.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let map = self.map.read().expect("memory engine lock poisoned");
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self
            .map
            .read()
            .expect("memory engine lock poisoned")
            .get(key)
            .cloned())
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
        let map = self.map.read().expect("memory engine lock poisoned");
        let range = map.range(start.to_vec()..end.to_vec());
        if reverse {
            for (k, v) in range.rev() {
                if !visit(k, v) {
                    break;
                }
            }
        } else {
            for (k, v) in range {
                if !visit(k, v) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<(), EngineError> {
        let mut map = self.map.write().expect("memory engine lock poisoned");
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => {
                    map.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    map.remove(&k);
                }
                WriteOp::DeleteRange(start, end) => {
                    if start < end {
                        let doomed: Vec<Vec<u8>> =
                            map.range(start..end).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn checkpoint(&self, _dir: &std::path::Path) -> Result<(), EngineError> {
        Err(EngineError::Backend(
            "the memory engine keeps no files to checkpoint".into(),
        ))
    }
}
