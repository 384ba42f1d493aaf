//! Execution of hash commands. A hash is a metadata record (version, field count) plus one
//! element key per field under that version.

use bytes::Bytes;
use zankv_commands::hash::{hscan_options, HashRead, HashWrite, RandFieldCount};
use zankv_commands::notify;
use zankv_commands::number::{long_double_add, parse_i64, FloatIncrError};
use zankv_commands::{CommandError, Reply};

use super::{
    collection_for_write, len_of, typed_meta, version_of, with_len, ExecError, ExecResult, ReadCtx,
    Txn, View,
};
use crate::engine::EngineError;
use crate::keys;
use crate::records::{KeyMeta, KeyType};

fn field(
    view: &(impl View + ?Sized),
    version: u64,
    name: &[u8],
) -> Result<Option<Vec<u8>>, EngineError> {
    view.get(&keys::element_key(keys::HASH, version, name))
}

/// Every (field, value) of a hash version, in field order.
fn all_fields(
    view: &(impl View + ?Sized),
    version: u64,
) -> Result<Vec<(Bytes, Bytes)>, EngineError> {
    let prefix = keys::element_prefix(keys::HASH, version);
    let mut out = Vec::new();
    view.scan(&prefix, &keys::prefix_end(&prefix), false, &mut |k, v| {
        out.push((
            Bytes::copy_from_slice(&k[prefix.len()..]),
            Bytes::copy_from_slice(v),
        ));
        true
    })?;
    Ok(out)
}

/// Executes a read-only hash command.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &HashRead) -> ExecResult {
    let view = ctx.view;
    let now = ctx.now_ms;
    let meta_of = |key: &[u8]| typed_meta(view, key, now, KeyType::Hash);
    match cmd {
        HashRead::Get(key, f) => Ok(match meta_of(key)? {
            Some(m) => Reply::bulk_or_nil(field(view, version_of(&m), f)?),
            None => Reply::Nil,
        }),
        HashRead::MGet(key, fields) => {
            let meta = meta_of(key)?;
            let mut out = Vec::with_capacity(fields.len());
            for f in fields {
                out.push(match &meta {
                    Some(m) => Reply::bulk_or_nil(field(view, version_of(m), f)?),
                    None => Reply::Nil,
                });
            }
            Ok(Reply::Array(out))
        }
        HashRead::Len(key) => Ok(Reply::Integer(
            meta_of(key)?.map_or(0, |m| len_of(&m) as i64),
        )),
        HashRead::StrLen(key, f) => Ok(Reply::Integer(match meta_of(key)? {
            Some(m) => field(view, version_of(&m), f)?.map_or(0, |v| v.len() as i64),
            None => 0,
        })),
        HashRead::Exists(key, f) => Ok(Reply::Integer(match meta_of(key)? {
            Some(m) => i64::from(field(view, version_of(&m), f)?.is_some()),
            None => 0,
        })),
        HashRead::Keys(key) | HashRead::Vals(key) | HashRead::GetAll(key) => {
            let fields = match meta_of(key)? {
                Some(m) => all_fields(view, version_of(&m))?,
                None => Vec::new(),
            };
            Ok(match cmd {
                HashRead::Keys(_) => {
                    Reply::Array(fields.into_iter().map(|(f, _)| Reply::Bulk(f)).collect())
                }
                HashRead::Vals(_) => {
                    Reply::Array(fields.into_iter().map(|(_, v)| Reply::Bulk(v)).collect())
                }
                _ => Reply::Map(
                    fields
                        .into_iter()
                        .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
                        .collect(),
                ),
            })
        }
        HashRead::RandField(key, count) => rand_field(view, meta_of(key)?, *count),
        HashRead::Scan(key, cursor, opts) => {
            let Some(meta) = meta_of(key)? else {
                return Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]));
            };
            let args = hscan_options(*cursor, opts)?;
            let prefix = keys::element_prefix(keys::HASH, version_of(&meta));
            super::scan_elements(ctx, &prefix, &args, Some(Reply::bulk_from))
        }
    }
}

/// HRANDFIELD (see [`super::random_entries`]).
fn rand_field(view: &dyn View, meta: Option<KeyMeta>, count: RandFieldCount) -> ExecResult {
    let Some(meta) = meta else {
        return Ok(match count {
            RandFieldCount::One => Reply::Nil,
            RandFieldCount::Many { .. } => Reply::Array(vec![]),
        });
    };
    let entries: Vec<(Reply, Reply)> = all_fields(view, version_of(&meta))?
        .into_iter()
        .map(|(f, v)| (Reply::Bulk(f), Reply::Bulk(v)))
        .collect();
    super::random_entries(&entries, count)
}

/// The hash at `key` for writing: its metadata, or a new empty hash with a fresh version.
fn hash_for_write(txn: &mut Txn<'_>, key: &[u8]) -> Result<KeyMeta, ExecError> {
    collection_for_write(txn, key, KeyType::Hash)
}

/// Counts `added` new fields in the hash `meta` describes. Its metadata is rewritten only
/// when the count changes: overwriting fields (most HSETs of a busy hash) leaves it as it
/// is, which spares a metadata read and write per command.
fn count_added(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    added: u64,
) -> Result<(), EngineError> {
    if added > 0 {
        let len = len_of(&meta) + added;
        txn.set_meta(key, &with_len(meta, len))?;
    }
    Ok(())
}

/// Executes a hash command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &HashWrite) -> ExecResult {
    match cmd {
        HashWrite::Set {
            key,
            pairs,
            reply_ok,
        } => {
            let meta = hash_for_write(txn, key)?;
            let version = version_of(&meta);
            let mut added = 0u64;
            for (f, v) in pairs {
                let k = keys::element_key(keys::HASH, version, f);
                if txn.get(&k)?.is_none() {
                    added += 1;
                }
                txn.put(k, v.to_vec());
            }
            count_added(txn, key, meta, added)?;
            // Even when every field was only overwritten (with the same value or not).
            txn.notify(notify::HASH, "hset", key);
            Ok(if *reply_ok {
                Reply::OK
            } else {
                Reply::Integer(added as i64)
            })
        }
        HashWrite::SetNx(key, f, v) => {
            let meta = hash_for_write(txn, key)?;
            let k = keys::element_key(keys::HASH, version_of(&meta), f);
            if txn.get(&k)?.is_some() {
                return Ok(Reply::Integer(0));
            }
            txn.put(k, v.to_vec());
            count_added(txn, key, meta, 1)?;
            txn.notify(notify::HASH, "hset", key);
            Ok(Reply::Integer(1))
        }
        HashWrite::Del(key, fields) => {
            let Some(meta) = txn.typed_meta(key, KeyType::Hash)? else {
                return Ok(Reply::Integer(0));
            };
            let version = version_of(&meta);
            let mut removed = 0u64;
            for f in fields {
                let k = keys::element_key(keys::HASH, version, f);
                if txn.get(&k)?.is_some() {
                    txn.delete(k);
                    removed += 1;
                }
            }
            let left = len_of(&meta).saturating_sub(removed);
            if removed > 0 {
                super::store_collection(txn, key, meta, left)?;
                txn.notify(notify::HASH, "hdel", key);
                txn.notify_emptied(key, left);
            }
            Ok(Reply::Integer(removed as i64))
        }
        HashWrite::IncrBy(key, f, by) => {
            let meta = hash_for_write(txn, key)?;
            let k = keys::element_key(keys::HASH, version_of(&meta), f);
            let old = txn.get(&k)?;
            let current = match &old {
                Some(v) => parse_i64(v).ok_or(CommandError::HashNotInteger)?,
                None => 0,
            };
            let next = current.checked_add(*by).ok_or(CommandError::Overflow)?;
            txn.put(k, next.to_string().into_bytes());
            count_added(txn, key, meta, u64::from(old.is_none()))?;
            txn.notify(notify::HASH, "hincrby", key);
            Ok(Reply::Integer(next))
        }
        HashWrite::IncrByFloat(key, f, by) => {
            let meta = hash_for_write(txn, key)?;
            let k = keys::element_key(keys::HASH, version_of(&meta), f);
            let old = txn.get(&k)?;
            let next = long_double_add(old.as_deref(), by).map_err(|e| match e {
                FloatIncrError::BaseNotFloat => CommandError::HashNotFloat,
                FloatIncrError::IncrNotFloat => CommandError::NotFloat,
                FloatIncrError::NanOrInfinity => CommandError::NanOrInfinity,
            })?;
            txn.put(k, next.clone());
            count_added(txn, key, meta, u64::from(old.is_none()))?;
            txn.notify(notify::HASH, "hincrbyfloat", key);
            Ok(Reply::bulk(next))
        }
    }
}
