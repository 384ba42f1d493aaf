//! An in-memory [`Engine`] over a `BTreeMap`, for tests, with a model of durability: a
//! batch written without `sync` is visible at once but durable only after the next
//! [`Engine::sync`] (or a later synced write), and [`MemoryEngine::lose_unsynced`]
//! simulates a power loss by going back to what was durable. Invariant: the durable map
//! plus the pending batches, applied in order, equal the visible map.

use std::collections::BTreeMap;
use std::sync::RwLock;

use super::{Engine, EngineError, Visit, WriteBatch, WriteOp};

type Map = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Debug, Default)]
struct State {
    /// What reads see.
    visible: Map,
    /// What survives a power loss.
    durable: Map,
    /// Batches written since the last sync, oldest first (not yet in `durable`).
    pending: Vec<Vec<WriteOp>>,
}

/// A `BTreeMap`-backed engine.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    state: RwLock<State>,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every key and value, for comparing replicas in tests.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let state = self.state.read().expect("memory engine lock poisoned");
        state
            .visible
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Simulates a power loss: every batch written since the last sync is forgotten.
    /// Returns how many batches were lost.
    pub fn lose_unsynced(&self) -> usize {
        let mut state = self.state.write().expect("memory engine lock poisoned");
        let lost = state.pending.len();
        state.pending.clear();
        state.visible = state.durable.clone();
        lost
    }
}

fn apply(map: &mut Map, ops: &[WriteOp]) {
    for op in ops {
        match op {
            WriteOp::Put(k, v) => {
                map.insert(k.clone(), v.clone());
            }
            WriteOp::Delete(k) => {
                map.remove(k);
            }
            WriteOp::DeleteRange(start, end) => {
                if start < end {
                    let doomed: Vec<Vec<u8>> = map
                        .range(start.clone()..end.clone())
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
    }
}

impl State {
    fn sync(&mut self) {
        for ops in std::mem::take(&mut self.pending) {
            apply(&mut self.durable, &ops);
        }
    }
}

impl Engine for MemoryEngine {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self
            .state
            .read()
            .expect("memory engine lock poisoned")
            .visible
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
        let state = self.state.read().expect("memory engine lock poisoned");
        let range = state.visible.range(start.to_vec()..end.to_vec());
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

    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), EngineError> {
        let mut state = self.state.write().expect("memory engine lock poisoned");
        apply(&mut state.visible, &batch.ops);
        state.pending.push(batch.ops);
        if sync {
            state.sync();
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        self.state
            .write()
            .expect("memory engine lock poisoned")
            .sync();
        Ok(())
    }

    fn checkpoint(&self, _dir: &std::path::Path) -> Result<(), EngineError> {
        Err(EngineError::Backend(
            "the memory engine keeps no files to checkpoint".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(ops: &[(&str, Option<&str>)]) -> WriteBatch {
        let mut b = WriteBatch::default();
        for (k, v) in ops {
            match v {
                Some(v) => b.put(k.as_bytes().to_vec(), v.as_bytes().to_vec()),
                None => b.delete(k.as_bytes().to_vec()),
            }
        }
        b
    }

    fn get(e: &MemoryEngine, k: &str) -> Option<String> {
        e.get(k.as_bytes())
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn a_power_loss_forgets_exactly_what_was_not_synced() {
        let e = MemoryEngine::new();
        e.write(batch(&[("a", Some("1")), ("b", Some("1"))]), true)
            .unwrap();
        e.write(batch(&[("a", Some("2"))]), false).unwrap();
        e.sync().unwrap();
        e.write(batch(&[("b", None), ("c", Some("3"))]), false)
            .unwrap();
        assert_eq!(get(&e, "c").as_deref(), Some("3"), "visible before sync");
        assert_eq!(e.lose_unsynced(), 1);
        assert_eq!(get(&e, "a").as_deref(), Some("2"));
        assert_eq!(get(&e, "b").as_deref(), Some("1"));
        assert_eq!(get(&e, "c"), None);
    }

    #[test]
    fn a_synced_write_makes_earlier_ones_durable_in_order() {
        let e = MemoryEngine::new();
        e.write(batch(&[("a", Some("1"))]), false).unwrap();
        e.write(batch(&[("a", None), ("b", Some("2"))]), false)
            .unwrap();
        e.write(batch(&[("c", Some("3"))]), true).unwrap();
        assert_eq!(e.lose_unsynced(), 0);
        assert_eq!(get(&e, "a"), None);
        assert_eq!(get(&e, "b").as_deref(), Some("2"));
        assert_eq!(get(&e, "c").as_deref(), Some("3"));
    }
}
