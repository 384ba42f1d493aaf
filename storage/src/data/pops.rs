//! Blocking pops with an id ([`crate::change::Change::Pop`]): whatever number of times one
//! is sent, it pops once. A proxy whose connection to a partition's leader failed while a
//! client waited on BLPOP cannot know whether the pop ran; it sends it again, with the same
//! id, to the new leader, and gets what the first one took, or a first pop now.
//!
//! Invariants:
//! - a pop that took something is recorded under its id in the same write batch as its
//!   effects (so on every replica, and in snapshots); one that found nothing or failed
//!   changed nothing and is not recorded;
//! - a pop whose id is recorded answers the recorded reply and changes nothing;
//! - records live [`RETENTION_MS`] (far longer than a proxy takes to send a pop again);
//!   every pop applied drops a few expired ones, each with its age-index key.

use crate::data::{ExecResult, Txn, View};
use crate::engine::EngineError;
use crate::keys;
use crate::records::PopRecord;
use zankv_commands::Reply;

/// How long a pop's record is kept.
pub const RETENTION_MS: u64 = 10 * 60 * 1000;
/// Most expired records one pop drops.
const DROP_PER_POP: usize = 8;

/// Runs a blocked client's pop with `pop`, unless `id` (empty: none) names one that ran
/// already; `retry`: a try after a wake-up ([`Txn::waiting`]).
pub fn pop_once(
    txn: &mut Txn<'_>,
    id: &[u8],
    retry: bool,
    pop: impl FnOnce(&mut Txn<'_>) -> ExecResult,
) -> ExecResult {
    txn.waiting = retry;
    if id.is_empty() {
        return pop(txn);
    }
    let now = u64::try_from(txn.now_ms).unwrap_or(0);
    drop_expired(txn, now.saturating_sub(RETENTION_MS))?;
    if let Some(record) = txn.get(&keys::pop_record_key(id))? {
        return Ok(PopRecord::decode(&record)?.reply);
    }
    let reply = pop(txn)?;
    if took_something(&reply) {
        let record = PopRecord {
            at_ms: now,
            reply: reply.clone(),
        };
        txn.put(keys::pop_record_key(id), record.encode());
        txn.put(keys::pop_age_key(now, id), Vec::new());
    }
    Ok(reply)
}

/// Whether a pop's reply says it took an element (not a null, not an error).
fn took_something(reply: &Reply) -> bool {
    !matches!(reply, Reply::Nil | Reply::NilArray | Reply::Error(_))
}

/// Drops up to [`DROP_PER_POP`] records made before `before` (ms).
fn drop_expired(txn: &mut Txn<'_>, before: u64) -> Result<(), EngineError> {
    let start = keys::pop_age_key(0, b"");
    let end = keys::pop_age_key(before, b"");
    let mut old: Vec<Vec<u8>> = Vec::new();
    txn.scan(&start, &end, false, &mut |key, _| {
        old.push(key.to_vec());
        old.len() < DROP_PER_POP
    })?;
    for age_key in old {
        if let Some((_, id)) = keys::parse_pop_age_key(&age_key) {
            txn.delete(keys::pop_record_key(id));
        }
        txn.delete(age_key);
    }
    Ok(())
}
