//! Execution of keyspace commands: existence, types, expiry, renames, copies, iteration and
//! flushing.

use bytes::Bytes;
use zankv_commands::keyspace::{KeyspaceRead, KeyspaceWrite, ObjectQuery, ScanArgs, TimeUnit};
use zankv_commands::number::parse_i64;
use zankv_commands::pattern::keys_match;
use zankv_commands::{notify, CommandError, Reply};

use super::{live_meta, ExecError, ExecResult, ReadCtx, Txn};
use crate::keys;
use crate::records::{KeyBody, KeyMeta, KeyType};

/// Executes a read-only keyspace command.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &KeyspaceRead) -> ExecResult {
    let now = ctx.now_ms;
    match cmd {
        KeyspaceRead::Exists(keys) | KeyspaceRead::Touch(keys) => {
            let mut n = 0;
            for key in keys {
                if live_meta(ctx.view, key, now)?.is_some() {
                    n += 1;
                }
            }
            Ok(Reply::Integer(n))
        }
        KeyspaceRead::Type(key) => Ok(Reply::Status(match live_meta(ctx.view, key, now)? {
            Some(m) => m.key_type().name(),
            None => "none",
        })),
        KeyspaceRead::Ttl(key, unit) => Ok(Reply::Integer(match live_meta(ctx.view, key, now)? {
            None => -2,
            Some(KeyMeta {
                expire_at: None, ..
            }) => -1,
            Some(KeyMeta {
                expire_at: Some(at),
                ..
            }) => {
                let left = (at as i64 - now).max(0);
                match unit {
                    TimeUnit::Millis => left,
                    TimeUnit::Seconds => (left + 500) / 1000,
                }
            }
        })),
        KeyspaceRead::ExpireTime(key, unit) => {
            Ok(Reply::Integer(match live_meta(ctx.view, key, now)? {
                None => -2,
                Some(KeyMeta {
                    expire_at: None, ..
                }) => -1,
                Some(KeyMeta {
                    expire_at: Some(at),
                    ..
                }) => match unit {
                    TimeUnit::Millis => at as i64,
                    // Rounded to the nearest second, as Redis does.
                    TimeUnit::Seconds => ((at + 500) / 1000) as i64,
                },
            }))
        }
        KeyspaceRead::Scan(args) => scan(ctx, args),
        KeyspaceRead::Keys(pattern) => {
            let mut out = Vec::new();
            let (start, end) = keys::space(keys::META);
            let mut bad = None;
            ctx.view.scan(&start, &end, false, &mut |k, v| {
                let user_key = keys::user_key_of_meta(k);
                if keys_match(pattern, user_key) {
                    match KeyMeta::decode(v) {
                        Ok(m) if !m.is_expired(now) => out.push(Reply::bulk_from(user_key)),
                        Ok(_) => {}
                        Err(e) => {
                            bad = Some(e);
                            return false;
                        }
                    }
                }
                true
            })?;
            if let Some(e) = bad {
                return Err(e.into());
            }
            Ok(Reply::Array(out))
        }
        KeyspaceRead::RandomKey => random_key(ctx),
        KeyspaceRead::Object(query, key) => {
            let Some(meta) = live_meta(ctx.view, key, now)? else {
                return Ok(Reply::Nil);
            };
            match query {
                ObjectQuery::Encoding => Ok(Reply::bulk(encoding(ctx.view, &meta)?)),
                ObjectQuery::Freq => Err(CommandError::LfuNotSelected.into()),
                // Access times are not tracked.
                ObjectQuery::IdleTime => Ok(Reply::Integer(0)),
                ObjectQuery::RefCount => Ok(Reply::Integer(match &meta.body {
                    // Redis shares the objects of the integers below 10000.
                    KeyBody::String(v)
                        if parse_i64(v).is_some_and(|n| (0..10_000).contains(&n)) =>
                    {
                        i64::from(i32::MAX)
                    }
                    _ => 1,
                })),
            }
        }
        KeyspaceRead::DbSize => Ok(Reply::Integer(ctx.state.keys as i64)),
        KeyspaceRead::PartitionKeyspace => Ok(Reply::Array(vec![
            Reply::Integer(ctx.state.keys as i64),
            Reply::Integer(ctx.state.expires as i64),
        ])),
    }
}

/// The encoding Redis 7.0 would report for a value of this size and content (with its
/// default thresholds): Redis may keep a larger encoding after the value shrank, or turn a
/// string it appended to into `raw`, which zankv does not track.
fn encoding(view: &dyn super::View, meta: &KeyMeta) -> Result<&'static str, ExecError> {
    const HASH_ENTRIES: u64 = 128;
    const HASH_VALUE: usize = 64;
    const SET_INTEGERS: u64 = 512;
    const ZSET_ENTRIES: u64 = 128;
    const ZSET_VALUE: usize = 64;
    let (kind, version, len) = match &meta.body {
        KeyBody::String(v) => {
            return Ok(if v.len() <= 20 && parse_i64(v).is_some() {
                "int"
            } else if v.len() <= 44 {
                "embstr"
            } else {
                "raw"
            })
        }
        KeyBody::Collection {
            kind, version, len, ..
        } => (*kind, *version, *len),
    };
    let small = |limit: u64, fits: &dyn Fn(&[u8], &[u8]) -> bool| -> Result<bool, ExecError> {
        if len > limit {
            return Ok(false);
        }
        let tag = kind.element_tag().unwrap_or(keys::HASH);
        let prefix = keys::element_prefix(tag, version);
        let mut all = true;
        view.scan(&prefix, &keys::prefix_end(&prefix), false, &mut |k, v| {
            all = fits(&k[prefix.len()..], v);
            all
        })?;
        Ok(all)
    };
    Ok(match kind {
        KeyType::String => "raw",
        KeyType::List => "quicklist",
        KeyType::Hash => {
            if small(HASH_ENTRIES, &|f, v| {
                f.len() <= HASH_VALUE && v.len() <= HASH_VALUE
            })? {
                "listpack"
            } else {
                "hashtable"
            }
        }
        KeyType::Set => {
            if small(SET_INTEGERS, &|m, _| parse_i64(m).is_some())? {
                "intset"
            } else {
                "hashtable"
            }
        }
        KeyType::ZSet => {
            if small(ZSET_ENTRIES, &|m, _| m.len() <= ZSET_VALUE)? {
                "listpack"
            } else {
                "skiplist"
            }
        }
    })
}

/// SCAN: walks metadata keys in byte order from the cursor's position, looking at up to
/// COUNT records, and returns the live ones that pass MATCH and TYPE.
fn scan(ctx: &mut ReadCtx<'_>, args: &ScanArgs) -> ExecResult {
    let (space_start, end) = keys::space(keys::META);
    let start = ctx.cursors.resume(args.cursor, space_start)?;
    let now = ctx.now_ms;
    let mut found = Vec::new();
    let mut seen = 0usize;
    let mut last = None;
    let mut more = false;
    let mut bad = None;
    ctx.view.scan(&start, &end, false, &mut |k, v| {
        if seen == args.count {
            more = true;
            return false;
        }
        seen += 1;
        last = Some(k.to_vec());
        let user_key = keys::user_key_of_meta(k);
        if args
            .pattern
            .as_ref()
            .is_some_and(|p| !keys_match(p, user_key))
        {
            return true;
        }
        match KeyMeta::decode(v) {
            Ok(m) if m.is_expired(now) => {
                // Redis's SCAN deletes the expired keys it walks over.
                ctx.view.note_expired(user_key, m.expire_at.unwrap_or(0));
            }
            Ok(m) => {
                if args
                    .type_filter
                    .as_deref()
                    .is_none_or(|t| t == m.key_type().name().as_bytes())
                {
                    found.push(Reply::bulk_from(user_key));
                }
            }
            Err(e) => {
                bad = Some(e);
                return false;
            }
        }
        true
    })?;
    if let Some(e) = bad {
        return Err(e.into());
    }
    let next = match (more, last) {
        (true, Some(pos)) => ctx.cursors.save(pos),
        _ => 0,
    };
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(found),
    ]))
}

/// RANDOMKEY: seeks to a random point of the key space and takes the first live key at or
/// after it, wrapping around once.
fn random_key(ctx: &mut ReadCtx<'_>) -> ExecResult {
    let (space_start, end) = keys::space(keys::META);
    let mut probe = vec![keys::META];
    probe.extend((0..fastrand::usize(1..4)).map(|_| fastrand::u8(..)));
    let now = ctx.now_ms;
    for (from, to) in [(probe.clone(), end.clone()), (space_start, probe)] {
        let mut hit = None;
        let mut bad = None;
        ctx.view
            .scan(&from, &to, false, &mut |k, v| match KeyMeta::decode(v) {
                Ok(m) if m.is_expired(now) => {
                    ctx.view
                        .note_expired(keys::user_key_of_meta(k), m.expire_at.unwrap_or(0));
                    true
                }
                Ok(_) => {
                    hit = Some(Bytes::copy_from_slice(keys::user_key_of_meta(k)));
                    false
                }
                Err(e) => {
                    bad = Some(e);
                    false
                }
            })?;
        if let Some(e) = bad {
            return Err(e.into());
        }
        if let Some(k) = hit {
            return Ok(Reply::Bulk(k));
        }
    }
    Ok(Reply::Nil)
}

/// Executes a keyspace command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &KeyspaceWrite) -> ExecResult {
    match cmd {
        KeyspaceWrite::Del(keys) => {
            let mut n = 0;
            for key in keys {
                if txn.delete_key(key)? {
                    txn.notify(notify::GENERIC, "del", key);
                    n += 1;
                }
            }
            Ok(Reply::Integer(n))
        }
        KeyspaceWrite::Expire {
            key,
            when_ms,
            relative,
            condition,
            command,
        } => {
            let base = if *relative { txn.now_ms } else { 0 };
            let at = when_ms
                .checked_add(base)
                .ok_or(CommandError::InvalidExpireTime(command))?;
            let Some(mut meta) = txn.live_meta(key)? else {
                return Ok(Reply::Integer(0));
            };
            let current = meta.expire_at.map(|a| a as i64);
            let refused = (condition.nx && current.is_some())
                || (condition.xx && current.is_none())
                || (condition.gt && current.is_none_or(|c| at <= c))
                || (condition.lt && current.is_some_and(|c| at >= c));
            if refused {
                return Ok(Reply::Integer(0));
            }
            if at <= txn.now_ms {
                txn.delete_key(key)?;
                txn.notify(notify::GENERIC, "del", key);
            } else {
                meta.expire_at = Some(at as u64);
                txn.set_meta(key, &meta)?;
                txn.notify(notify::GENERIC, "expire", key);
            }
            Ok(Reply::Integer(1))
        }
        KeyspaceWrite::Persist(key) => match txn.live_meta(key)? {
            Some(mut meta) if meta.expire_at.is_some() => {
                meta.expire_at = None;
                txn.set_meta(key, &meta)?;
                txn.notify(notify::GENERIC, "persist", key);
                Ok(Reply::Integer(1))
            }
            _ => Ok(Reply::Integer(0)),
        },
        KeyspaceWrite::Rename {
            src,
            dst,
            only_if_missing,
        } => {
            let Some(meta) = txn.live_meta(src)? else {
                return Err(CommandError::NoSuchKey.into());
            };
            if src == dst {
                return Ok(if *only_if_missing {
                    Reply::Integer(0)
                } else {
                    Reply::OK
                });
            }
            if *only_if_missing && txn.live_meta(dst)?.is_some() {
                return Ok(Reply::Integer(0));
            }
            // Elements are keyed by version, not by key: moving the metadata moves the value.
            match meta.body {
                KeyBody::Collection { version, .. } => txn.detach_key(src, version)?,
                KeyBody::String(_) => txn.delete_key(src)?,
            };
            // Redis deletes an existing destination and adds the key anew (so "new" fires).
            txn.delete_key(dst)?;
            txn.set_meta(dst, &meta)?;
            txn.notify(notify::GENERIC, "rename_from", src);
            txn.notify(notify::GENERIC, "rename_to", dst);
            Ok(if *only_if_missing {
                Reply::Integer(1)
            } else {
                Reply::OK
            })
        }
        KeyspaceWrite::Copy { src, dst, replace } => {
            if src == dst {
                return Err(CommandError::SameObject.into());
            }
            // The source is read (a miss is announced), the destination only written.
            let Some(meta) = txn.live_meta(src)? else {
                txn.notify(notify::KEY_MISS, "keymiss", src);
                return Ok(Reply::Integer(0));
            };
            if !*replace && txn.live_meta(dst)?.is_some() {
                return Ok(Reply::Integer(0));
            }
            // Redis deletes an existing destination and adds the copy anew (so "new" fires).
            txn.delete_key(dst)?;
            copy_value(txn, &meta, dst)?;
            txn.notify(notify::GENERIC, "copy_to", dst);
            Ok(Reply::Integer(1))
        }
        KeyspaceWrite::Flush => {
            let tags = [keys::META, keys::EXPIRY, keys::RECLAIM]
                .into_iter()
                .chain(KeyType::element_tags());
            for tag in tags {
                let (start, end) = keys::space(tag);
                txn.delete_range(start, end);
            }
            txn.state.keys = 0;
            txn.state.expires = 0;
            txn.state.reclaims = 0;
            Ok(Reply::OK)
        }
    }
}

/// Writes a copy of a value (whose live metadata is `meta`) under `dst`, replacing whatever
/// `dst` held, keeping the TTL. Collections get a new version with copied elements.
fn copy_value(txn: &mut Txn<'_>, meta: &KeyMeta, dst: &[u8]) -> Result<(), ExecError> {
    match &meta.body {
        KeyBody::String(_) => txn.set_meta(dst, meta)?,
        KeyBody::Collection { kind, version, .. } => {
            let new_version = txn.new_version();
            for &tag in kind.tags() {
                let prefix = keys::element_prefix(tag, *version);
                let mut elements = Vec::new();
                super::View::scan(
                    txn,
                    &prefix,
                    &keys::prefix_end(&prefix),
                    false,
                    &mut |k, v| {
                        elements.push((k[prefix.len()..].to_vec(), v.to_vec()));
                        true
                    },
                )?;
                for (sub, value) in elements {
                    txn.put(keys::element_key(tag, new_version, &sub), value);
                }
            }
            let mut copy = meta.clone();
            if let KeyBody::Collection { version, .. } = &mut copy.body {
                *version = new_version;
            }
            txn.set_meta(dst, &copy)?;
        }
    }
    Ok(())
}
