//! Execution of set commands. A set is a metadata record (version, member count) plus one
//! element key per member under that version, with an empty value: SADD, SREM and
//! SISMEMBER are a point read (and write) per member, SCARD reads the metadata alone.
//!
//! SPOP's random choice is a write's, so it must be the same on every replica: it draws
//! from a generator seeded by the change's log index and the set's version, never from a
//! node's own randomness. SRANDMEMBER is a read and uses the answering node's.

use std::collections::BTreeSet;

use bytes::Bytes;
use zankv_commands::hash::RandFieldCount;
use zankv_commands::keyspace::scan_options;
use zankv_commands::set::{SetOp, SetRead, SetWrite};
use zankv_commands::{notify, Reply};

use super::{
    collection_for_write, len_of, store_collection, typed_meta, version_of, ExecError, ExecResult,
    ReadCtx, Txn, View,
};
use crate::engine::EngineError;
use crate::keys;
use crate::records::{KeyMeta, KeyType};

fn member_key(version: u64, member: &[u8]) -> Vec<u8> {
    keys::element_key(keys::SET, version, member)
}

fn has_member(
    view: &(impl View + ?Sized),
    meta: &KeyMeta,
    member: &[u8],
) -> Result<bool, EngineError> {
    Ok(view.get(&member_key(version_of(meta), member))?.is_some())
}

/// Every member of the set `meta` describes, in byte order.
pub fn members(view: &(impl View + ?Sized), meta: &KeyMeta) -> Result<Vec<Bytes>, EngineError> {
    let prefix = keys::element_prefix(keys::SET, version_of(meta));
    let mut out = Vec::with_capacity(len_of(meta).min(1024) as usize);
    view.scan(&prefix, &keys::prefix_end(&prefix), false, &mut |k, _| {
        out.push(Bytes::copy_from_slice(&k[prefix.len()..]));
        true
    })?;
    Ok(out)
}

fn set_reply(members: impl IntoIterator<Item = Bytes>) -> Reply {
    Reply::Set(members.into_iter().map(Reply::Bulk).collect())
}

/// The sets of SINTER/SUNION/SDIFF's `keys` (`None`: missing), looked up in turn: every
/// key's type is checked first (WRONGTYPE even when an intersection is empty because of a
/// missing key).
fn lookup_sets(
    view: &(impl View + ?Sized),
    now_ms: i64,
    keys: &[Bytes],
) -> Result<Vec<Option<KeyMeta>>, ExecError> {
    let mut sets = Vec::with_capacity(keys.len());
    for key in keys {
        sets.push(typed_meta(view, key, now_ms, KeyType::Set)?);
    }
    Ok(sets)
}

/// SINTER/SUNION/SDIFF of `sets` ([`lookup_sets`]). Stops early once `limit` members are
/// found (0 = no limit; SINTERCARD).
fn combine(
    view: &(impl View + ?Sized),
    op: SetOp,
    sets: &[Option<KeyMeta>],
    limit: usize,
) -> Result<BTreeSet<Bytes>, ExecError> {
    if op == SetOp::Inter && sets.iter().any(Option::is_none) {
        return Ok(BTreeSet::new());
    }
    let mut result: BTreeSet<Bytes> = BTreeSet::new();
    match op {
        SetOp::Union => {
            for meta in sets.iter().flatten() {
                result.extend(members(view, meta)?);
            }
        }
        SetOp::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Ok(result);
            };
            result.extend(members(view, first)?);
            for meta in sets[1..].iter().flatten() {
                if result.is_empty() {
                    break;
                }
                for m in members(view, meta)? {
                    result.remove(&m);
                }
            }
        }
        SetOp::Inter => {
            // Walk the smallest set and probe the others.
            let mut order: Vec<&KeyMeta> = sets.iter().flatten().collect();
            order.sort_by_key(|m| len_of(m));
            let Some((smallest, others)) = order.split_first() else {
                return Ok(result);
            };
            for m in members(view, smallest)? {
                let mut everywhere = true;
                for other in others {
                    if !has_member(view, other, &m)? {
                        everywhere = false;
                        break;
                    }
                }
                if everywhere {
                    result.insert(m);
                    if result.len() == limit {
                        break;
                    }
                }
            }
        }
    }
    Ok(result)
}

/// Executes a read-only set command.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &SetRead) -> ExecResult {
    let view = ctx.view;
    let now = ctx.now_ms;
    let meta_of = |key: &[u8]| typed_meta(view, key, now, KeyType::Set);
    match cmd {
        SetRead::Card(key) => Ok(Reply::Integer(
            meta_of(key)?.map_or(0, |m| len_of(&m) as i64),
        )),
        SetRead::IsMember(key, member) => Ok(Reply::Integer(match meta_of(key)? {
            Some(m) => i64::from(has_member(view, &m, member)?),
            None => 0,
        })),
        SetRead::MIsMember(key, wanted) => {
            let meta = meta_of(key)?;
            let mut out = Vec::with_capacity(wanted.len());
            for member in wanted {
                let found = match &meta {
                    Some(m) => has_member(view, m, member)?,
                    None => false,
                };
                out.push(Reply::Integer(i64::from(found)));
            }
            Ok(Reply::Array(out))
        }
        SetRead::Members(key) => Ok(set_reply(match meta_of(key)? {
            Some(m) => members(view, &m)?,
            None => Vec::new(),
        })),
        SetRead::RandMember(key, count) => rand_member(view, meta_of(key)?, *count),
        SetRead::Combine(op, keys) => {
            let sets = lookup_sets(view, now, keys)?;
            Ok(set_reply(combine(view, *op, &sets, 0)?))
        }
        SetRead::InterCard(keys, limit) => {
            let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
            let sets = lookup_sets(view, now, keys)?;
            Ok(Reply::Integer(
                combine(view, SetOp::Inter, &sets, limit)?.len() as i64,
            ))
        }
        SetRead::Scan(key, cursor, opts) => {
            let Some(meta) = meta_of(key)? else {
                return Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]));
            };
            let args = scan_options(*cursor, opts, false)?;
            let prefix = keys::element_prefix(keys::SET, version_of(&meta));
            super::scan_elements(ctx, &prefix, &args, None)
        }
    }
}

/// SRANDMEMBER (see [`super::random_entries`]).
fn rand_member(view: &dyn View, meta: Option<KeyMeta>, count: Option<i64>) -> ExecResult {
    let count = match count {
        None => RandFieldCount::One,
        Some(n) => RandFieldCount::Many {
            n: n.unsigned_abs(),
            distinct: n >= 0,
            with_values: false,
        },
    };
    let Some(meta) = meta else {
        return Ok(match count {
            RandFieldCount::One => Reply::Nil,
            RandFieldCount::Many { .. } => Reply::Array(vec![]),
        });
    };
    let entries: Vec<(Reply, Reply)> = members(view, &meta)?
        .into_iter()
        .map(|m| (Reply::Bulk(m), Reply::Nil))
        .collect();
    super::random_entries(&entries, count)
}

/// SINTERSTORE/SUNIONSTORE/SDIFFSTORE: replaces whatever `dst` holds by a new set of
/// `members` and notifies `event`, or deletes `dst` when there are none (`del` if it
/// existed).
fn store_set(
    txn: &mut Txn<'_>,
    dst: &[u8],
    members: BTreeSet<Bytes>,
    event: &'static str,
) -> Result<u64, EngineError> {
    let n = members.len() as u64;
    if n == 0 {
        if txn.delete_key(dst)? {
            txn.notify(notify::GENERIC, "del", dst);
        }
        return Ok(0);
    }
    let version = txn.new_version();
    for m in &members {
        txn.put(member_key(version, m), Vec::new());
    }
    // Written over the old record (set_meta retires it), so that replacing a key is not
    // notified as a new one.
    let meta = super::with_len(KeyMeta::collection(KeyType::Set, version), n);
    txn.set_meta(dst, &meta)?;
    txn.notify(notify::SET, event, dst);
    Ok(n)
}

/// Executes a set command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &SetWrite) -> ExecResult {
    match cmd {
        SetWrite::Add(key, new) => {
            let meta = collection_for_write(txn, key, KeyType::Set)?;
            let version = version_of(&meta);
            let mut added = 0u64;
            for m in new {
                let k = member_key(version, m);
                if txn.get(&k)?.is_none() {
                    txn.put(k, Vec::new());
                    added += 1;
                }
            }
            if added > 0 {
                let len = len_of(&meta) + added;
                store_collection(txn, key, meta, len)?;
                txn.notify(notify::SET, "sadd", key);
            }
            Ok(Reply::Integer(added as i64))
        }
        SetWrite::Rem(key, gone) => {
            let Some(meta) = txn.typed_meta(key, KeyType::Set)? else {
                return Ok(Reply::Integer(0));
            };
            let version = version_of(&meta);
            let mut removed = 0u64;
            for m in gone {
                let k = member_key(version, m);
                if txn.get(&k)?.is_some() {
                    txn.delete(k);
                    removed += 1;
                }
            }
            if removed > 0 {
                let left = len_of(&meta).saturating_sub(removed);
                store_collection(txn, key, meta, left)?;
                txn.notify(notify::SET, "srem", key);
                txn.notify_emptied(key, left);
            }
            Ok(Reply::Integer(removed as i64))
        }
        SetWrite::Pop(key, count) => {
            let Some(meta) = txn.typed_meta(key, KeyType::Set)? else {
                return Ok(match count {
                    Some(_) => Reply::Set(vec![]),
                    None => Reply::Nil,
                });
            };
            let wanted = count.unwrap_or(1);
            if wanted == 0 {
                return Ok(Reply::Set(vec![]));
            }
            let mut all = members(txn, &meta)?;
            // The same choice on every replica: seeded by the log index and the version.
            let mut rng = fastrand::Rng::with_seed(
                txn.state.applied_index ^ version_of(&meta).rotate_left(32),
            );
            rng.shuffle(&mut all);
            all.truncate(usize::try_from(wanted).unwrap_or(usize::MAX));
            let version = version_of(&meta);
            for m in &all {
                txn.delete(member_key(version, m));
            }
            let left = len_of(&meta).saturating_sub(all.len() as u64);
            store_collection(txn, key, meta, left)?;
            // One "spop" whatever the count.
            txn.notify(notify::SET, "spop", key);
            txn.notify_emptied(key, left);
            Ok(match count {
                Some(_) => set_reply(all),
                None => Reply::bulk_or_nil(all.into_iter().next()),
            })
        }
        SetWrite::Move(src, dst, member) => {
            let Some(src_meta) = txn.typed_meta(src, KeyType::Set)? else {
                return Ok(Reply::Integer(0));
            };
            let dst_meta = txn.typed_meta(dst, KeyType::Set)?;
            if src == dst {
                return Ok(Reply::Integer(i64::from(has_member(
                    txn, &src_meta, member,
                )?)));
            }
            let k = member_key(version_of(&src_meta), member);
            if txn.get(&k)?.is_none() {
                return Ok(Reply::Integer(0));
            }
            txn.delete(k);
            let left = len_of(&src_meta) - 1;
            store_collection(txn, src, src_meta, left)?;
            txn.notify(notify::SET, "srem", src);
            txn.notify_emptied(src, left);
            let dst_meta = match dst_meta {
                Some(m) => m,
                None => collection_for_write(txn, dst, KeyType::Set)?,
            };
            let k = member_key(version_of(&dst_meta), member);
            if txn.get(&k)?.is_none() {
                txn.put(k, Vec::new());
                let len = len_of(&dst_meta) + 1;
                store_collection(txn, dst, dst_meta, len)?;
                txn.notify(notify::SET, "sadd", dst);
            }
            Ok(Reply::Integer(1))
        }
        SetWrite::Store(op, dst, keys) => {
            // As [`lookup_sets`], announcing each source key missed (Redis reads them), in
            // turn, before a later key's WRONGTYPE.
            let mut sets = Vec::with_capacity(keys.len());
            for key in keys {
                let meta = txn.typed_meta(key, KeyType::Set)?;
                if meta.is_none() {
                    txn.notify(notify::KEY_MISS, "keymiss", key);
                }
                sets.push(meta);
            }
            let result = combine(&*txn, *op, &sets, 0)?;
            let event = match op {
                SetOp::Inter => "sinterstore",
                SetOp::Union => "sunionstore",
                SetOp::Diff => "sdiffstore",
            };
            Ok(Reply::Integer(store_set(txn, dst, result, event)? as i64))
        }
    }
}
