//! Execution of SORT and SORT_RO, as Redis 7.0 sorts: numbers by default (an element or BY
//! value that is not one is an error), strings with ALPHA, the elements' own order when a
//! BY pattern has no `*`; numeric ties are broken by the elements' bytes, and the sort is
//! stable. BY and GET patterns read string keys (`pattern_*`) or hash fields
//! (`pattern_*->field`); the routing has already checked that those keys are in this
//! partition. SORT (a write, for STORE) runs when its change is applied, SORT_RO as a read.

use std::cmp::Ordering;

use bytes::Bytes;
use zankv_commands::number::parse_sort_double;
use zankv_commands::sort::SortCommand;
use zankv_commands::{notify, CommandError, Reply};

use super::{live_meta, ExecError, ExecResult, ReadCtx, Txn, View};
use crate::engine::EngineError;
use crate::keys;
use crate::records::{KeyBody, KeyType};

/// Executes SORT_RO (or SORT without STORE on the read path).
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &SortCommand) -> ExecResult {
    let values = sorted(ctx.view, ctx.now_ms, cmd)?;
    Ok(Reply::Array(
        values.into_iter().map(Reply::bulk_or_nil).collect(),
    ))
}

/// Executes SORT: the reply, or with STORE the result stored as a list (GET's missing
/// values as empty strings) and its length.
pub fn write(txn: &mut Txn<'_>, cmd: &SortCommand) -> ExecResult {
    // SORT reads its key and the BY and GET keys as a read command does (Redis's
    // lookupKeyRead): each lookup that finds nothing is a key miss, announced in turn (after
    // the key's `expired`), before the STORE's events.
    let reading = txn.reading.replace(true);
    let values = sorted(&*txn, txn.now_ms, cmd);
    txn.reading.set(reading);
    let values = values?;
    let Some(dst) = &cmd.store else {
        return Ok(Reply::Array(
            values.into_iter().map(Reply::bulk_or_nil).collect(),
        ));
    };
    let elements: Vec<Bytes> = values.into_iter().map(Option::unwrap_or_default).collect();
    let deleted = super::list::replace_with_list(txn, dst, &elements)?;
    if !elements.is_empty() {
        txn.notify(notify::LIST, "sortstore", dst);
    } else if deleted {
        txn.notify(notify::GENERIC, "del", dst);
    }
    Ok(Reply::Integer(elements.len() as i64))
}

/// The elements of the key to sort in their own order (a missing key has none).
fn load(
    view: &(impl View + ?Sized),
    now_ms: i64,
    key: &[u8],
) -> Result<(Option<KeyType>, Vec<Bytes>), ExecError> {
    let Some(meta) = live_meta(view, key, now_ms)? else {
        return Ok((None, Vec::new()));
    };
    let kind = meta.key_type();
    let elements = match kind {
        KeyType::List => super::list::elements_of(view, &meta)?,
        KeyType::Set => super::set::members(view, &meta)?,
        KeyType::ZSet => super::zset::members_of(view, &meta)?,
        KeyType::String | KeyType::Hash => return Err(CommandError::WrongType.into()),
    };
    Ok((Some(kind), elements))
}

/// The value a BY or GET `pattern` names for `element`: `#` is the element; otherwise the
/// first `*` is replaced by it and the key's string value, or with `->field` the hash
/// field's value, is read (`None` when missing or of another type).
fn lookup(
    view: &(impl View + ?Sized),
    now_ms: i64,
    pattern: &[u8],
    element: &Bytes,
) -> Result<Option<Bytes>, EngineError> {
    if pattern == b"#" {
        return Ok(Some(element.clone()));
    }
    let Some(star) = pattern.iter().position(|&b| b == b'*') else {
        return Ok(None);
    };
    let after = &pattern[star + 1..];
    let (suffix, field) = match after.windows(2).position(|w| w == b"->") {
        Some(at) if at + 2 < after.len() => (&after[..at], Some(&after[at + 2..])),
        _ => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(suffix);
    let Some(meta) = live_meta(view, &key, now_ms)? else {
        return Ok(None);
    };
    Ok(match (&meta.body, field) {
        (KeyBody::String(v), None) => Some(Bytes::copy_from_slice(v)),
        (
            KeyBody::Collection {
                kind: KeyType::Hash,
                version,
                ..
            },
            Some(field),
        ) => view
            .get(&keys::element_key(keys::HASH, *version, field))?
            .map(Bytes::from),
        _ => None,
    })
}

/// What an element is compared by.
enum SortKey {
    Number(f64),
    Text(Option<Bytes>),
}

/// Sorts (or not) and cuts to LIMIT, then applies GET: the values to reply or store.
fn sorted(
    view: &(impl View + ?Sized),
    now_ms: i64,
    cmd: &SortCommand,
) -> Result<Vec<Option<Bytes>>, ExecError> {
    let (kind, mut elements) = load(view, now_ms, &cmd.key)?;
    let (mut dont_sort, mut alpha, mut by) = (cmd.dont_sort, cmd.alpha, cmd.by.as_ref());
    // A set's own order is not stable across replicas of Redis, so STORE sorts it.
    if dont_sort && kind == Some(KeyType::Set) && cmd.store.is_some() {
        (dont_sort, alpha, by) = (false, true, None);
    }
    let n = elements.len() as i64;
    let (limit_start, limit_count) = cmd.limit;
    let mut start = limit_start.max(0);
    let mut end = if limit_count < 0 {
        n - 1
    } else {
        start.saturating_add(limit_count) - 1
    };
    if start >= n {
        start = n - 1;
        end = n - 2;
    }
    end = end.min(n - 1);
    if dont_sort {
        if cmd.desc && matches!(kind, Some(KeyType::List | KeyType::ZSet)) {
            elements.reverse();
        }
    } else {
        let mut keyed = Vec::with_capacity(elements.len());
        let mut not_double = false;
        for e in elements {
            let value = match by {
                Some(pattern) => lookup(view, now_ms, pattern, &e)?,
                None => Some(e.clone()),
            };
            let key = if alpha {
                SortKey::Text(value)
            } else {
                match value.map(|v| parse_sort_double(&v)) {
                    None => SortKey::Number(0.0),
                    Some(Some(n)) => SortKey::Number(n),
                    Some(None) => {
                        not_double = true;
                        SortKey::Number(0.0)
                    }
                }
            };
            keyed.push((key, e));
        }
        // As Redis: every BY key is looked up (a miss is announced) before a value that is
        // not a number fails the sort.
        if not_double {
            return Err(CommandError::SortNotDouble.into());
        }
        keyed.sort_by(|(ka, ea), (kb, eb)| {
            let order = match (ka, kb) {
                (SortKey::Number(a), SortKey::Number(b)) => a
                    .partial_cmp(b)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| ea.cmp(eb)),
                // Missing BY values come first.
                (SortKey::Text(a), SortKey::Text(b)) => a.cmp(b),
                _ => Ordering::Equal,
            };
            if cmd.desc {
                order.reverse()
            } else {
                order
            }
        });
        elements = keyed.into_iter().map(|(_, e)| e).collect();
    }
    let window = if end >= start && start >= 0 {
        &elements[start as usize..=end as usize]
    } else {
        &[][..]
    };
    let mut out = Vec::with_capacity(window.len() * cmd.gets.len().max(1));
    for e in window {
        if cmd.gets.is_empty() {
            out.push(Some(e.clone()));
        }
        for pattern in &cmd.gets {
            out.push(lookup(view, now_ms, pattern, e)?);
        }
    }
    Ok(out)
}
