//! One partition's state machine: its engine plus the applied state, applying changes and
//! answering reads.
//!
//! Invariants:
//! - every applied change writes exactly one batch holding its data changes and the new
//!   applied state (index, versions, counts), so a crash never separates the two;
//! - a change whose command fails with a user error still advances the applied index (the
//!   error is its result on every replica);
//! - a storage error while applying writes nothing and is returned: the caller must stop
//!   serving writes on this partition rather than let replicas diverge.

use zankv_commands::{Command, CommandError, Reply};

use crate::change::Change;
use crate::data::{self, EngineView, ExecError, ReadCtx, ScanCursors, Txn, View};
use crate::engine::{Engine, EngineError};
use crate::keys;
use crate::records::{AppliedState, KeyMeta};

/// Most element keys a single reclamation change deletes.
pub const RECLAIM_BUDGET: u32 = 1024;

/// A partition's data and bookkeeping.
pub struct Partition {
    engine: Box<dyn Engine>,
    state: AppliedState,
}

impl Partition {
    /// Opens a partition on `engine`, reading its applied state (fresh partitions start at
    /// index 0, version 1).
    pub fn open(engine: Box<dyn Engine>) -> Result<Self, EngineError> {
        let state = match engine.get(&keys::applied_state_key())? {
            Some(bytes) => AppliedState::decode(&bytes)?,
            None => AppliedState { next_version: 1, ..AppliedState::default() },
        };
        Ok(Partition { engine, state })
    }

    /// The applied state.
    pub fn state(&self) -> AppliedState {
        self.state
    }

    /// The engine, for reads.
    pub fn engine(&self) -> &dyn Engine {
        self.engine.as_ref()
    }

    /// Applies `change` as log entry `index` (which must follow the applied index). Returns
    /// the reply for the client that proposed it.
    pub fn apply(&mut self, index: u64, change: &Change) -> Result<Reply, EngineError> {
        assert!(
            index == self.state.applied_index + 1,
            "change {index} applied out of order after {}",
            self.state.applied_index
        );
        let (now_ms, engine) = match change {
            Change::Command { now_ms, .. } | Change::Expire { now_ms, .. } => (*now_ms, self.engine.as_ref()),
            Change::Reclaim { .. } => (0, self.engine.as_ref()),
        };
        let mut txn = Txn::new(engine, now_ms, self.state);
        let reply = match change {
            Change::Command { argv, .. } => match zankv_commands::parse(argv) {
                Ok((cmd, spec)) if spec.is_write() => data::execute_write(&mut txn, &cmd),
                Ok(_) => Err(ExecError::Command(CommandError::Internal("read command in a change".into()))),
                Err(e) => Err(ExecError::Command(e)),
            },
            Change::Expire { keys, .. } => expire_keys(&mut txn, keys).map_err(ExecError::Engine),
            Change::Reclaim { versions, budget } => reclaim(&mut txn, versions, *budget).map_err(ExecError::Engine),
        };
        let (mut batch, mut state, reply) = match reply {
            Ok(reply) => {
                let (batch, state) = txn.finish();
                (batch, state, reply)
            }
            Err(ExecError::Command(e)) => (Default::default(), self.state, Reply::Error(e)),
            Err(ExecError::Engine(e)) => return Err(e),
        };
        state.applied_index = index;
        batch.put(keys::applied_state_key(), state.encode());
        self.engine.write(batch, false)?;
        self.state = state;
        Ok(reply)
    }

    /// Makes every applied change durable.
    pub fn sync(&self) -> Result<(), EngineError> {
        self.engine.sync()
    }

    /// Answers a read command at `now_ms`.
    pub fn read(&self, cmd: &Command, now_ms: i64, cursors: &mut ScanCursors) -> Reply {
        let view = EngineView(self.engine.as_ref());
        let mut ctx = ReadCtx { view: &view, now_ms, state: self.state, cursors };
        match data::execute_read(&mut ctx, cmd) {
            Ok(reply) => reply,
            Err(ExecError::Command(e)) => Reply::Error(e),
            Err(ExecError::Engine(e)) => Reply::Error(CommandError::Internal(e.to_string())),
        }
    }

    /// Up to `limit` (key, expire-at) entries of the expiry index that are due at `now_ms`.
    pub fn due_expirations(&self, now_ms: i64, limit: usize) -> Result<Vec<(bytes::Bytes, u64)>, EngineError> {
        let start = vec![keys::EXPIRY];
        let end = keys::expiry_key(now_ms.max(0) as u64 + 1, b"");
        let mut out = Vec::new();
        self.engine.scan(&start, &end, false, &mut |k, _| {
            if let Some((at, key)) = keys::parse_expiry_key(k) {
                out.push((bytes::Bytes::copy_from_slice(key), at));
            }
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Up to `limit` collection versions waiting for reclamation.
    pub fn pending_reclaims(&self, limit: usize) -> Result<Vec<(u8, u64)>, EngineError> {
        let (start, end) = keys::space(keys::RECLAIM);
        let mut out = Vec::new();
        self.engine.scan(&start, &end, false, &mut |k, v| {
            if let (Some(version), Some(&tag)) = (keys::parse_reclaim_key(k), v.first()) {
                out.push((tag, version));
            }
            out.len() < limit
        })?;
        Ok(out)
    }
}

/// Deletes keys whose expiry (as recorded in the index) has passed; drops index entries that
/// no longer match their key's metadata.
fn expire_keys(txn: &mut Txn<'_>, entries: &[(bytes::Bytes, u64)]) -> Result<Reply, EngineError> {
    let mut deleted = 0;
    for (key, at) in entries {
        match data::raw_meta(txn, key)? {
            Some(KeyMeta { expire_at: Some(current), .. }) if current == *at && (*at as i64) <= txn.now_ms => {
                txn.delete_key(key)?;
                deleted += 1;
            }
            Some(KeyMeta { expire_at: Some(current), .. }) if current == *at => {}
            _ => txn.delete(keys::expiry_key(*at, key)),
        }
    }
    Ok(Reply::Integer(deleted))
}

/// Deletes up to `budget` elements of dropped versions; a version's record is removed once
/// its elements are gone.
fn reclaim(txn: &mut Txn<'_>, versions: &[(u8, u64)], budget: u32) -> Result<Reply, EngineError> {
    let mut left = budget as usize;
    for &(tag, version) in versions {
        let prefix = keys::element_prefix(tag, version);
        let mut doomed = Vec::new();
        txn.scan(&prefix, &keys::prefix_end(&prefix), false, &mut |k, _| {
            doomed.push(k.to_vec());
            doomed.len() <= left
        })?;
        let finished = doomed.len() <= left;
        doomed.truncate(left);
        left -= doomed.len();
        for k in doomed {
            txn.delete(k);
        }
        if finished {
            txn.delete(keys::reclaim_key(version));
        }
        if left == 0 {
            break;
        }
    }
    Ok(Reply::Integer((budget as usize - left) as i64))
}
