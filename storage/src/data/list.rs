//! Execution of list commands.
//!
//! A list is a metadata record (version, length, head position) plus one element key per
//! element at positions `head..head+len` (see [`keys::encode_list_position`]), so:
//! - LPUSH/RPUSH/LPOP/RPOP, LINDEX and LSET touch only the elements they name (a point
//!   read or write each), and LLEN reads the metadata alone;
//! - LRANGE seeks straight to its first position and reads only what it returns: elements
//!   popped from either end (whose tombstones lie outside `head..head+len`) are never
//!   walked over, which keeps a list used as a queue as fast as a fresh one;
//! - LINSERT and LREM rewrite the shorter side of the list (Redis's are O(N) too);
//! - LTRIM drops each trimmed end with one range deletion.

use bytes::Bytes;
use zankv_commands::list::{End, ListRead, ListWrite, PosOptions};
use zankv_commands::notify;
use zankv_commands::number::parse_i64;
use zankv_commands::{CommandError, Reply};

use super::{collection_for_write, typed_meta, ExecError, ExecResult, ReadCtx, Txn, View};
use crate::engine::EngineError;
use crate::keys;
use crate::records::{KeyBody, KeyMeta, KeyType};

/// Where a list's elements are: version, head position, length.
#[derive(Debug, Clone, Copy)]
struct Shape {
    version: u64,
    head: i64,
    len: u64,
}

impl Shape {
    fn of(meta: &KeyMeta) -> Self {
        match meta.body {
            KeyBody::Collection {
                version, head, len, ..
            } => Shape { version, head, len },
            KeyBody::String(_) => Shape {
                version: 0,
                head: 0,
                len: 0,
            },
        }
    }

    /// The key of the element at index `i` (0 = head).
    fn key_at(&self, i: u64) -> Vec<u8> {
        position_key(self.version, self.head.wrapping_add(i as i64))
    }

    /// A Redis index (negative counts from the tail) as an index from the head, if inside.
    fn index(&self, i: i64) -> Option<u64> {
        let i = if i < 0 {
            i.checked_add(self.len as i64)?
        } else {
            i
        };
        u64::try_from(i).ok().filter(|i| *i < self.len)
    }

    /// LRANGE/LTRIM's `start`/`stop` as an inclusive index range, or `None` when empty.
    fn range(&self, start: i64, stop: i64) -> Option<(u64, u64)> {
        let len = self.len as i64;
        let start = if start < 0 {
            start.saturating_add(len)
        } else {
            start
        }
        .max(0);
        let stop = if stop < 0 {
            stop.saturating_add(len)
        } else {
            stop
        };
        if start > stop || start >= len {
            return None;
        }
        Some((start as u64, stop.min(len - 1) as u64))
    }

    /// `meta` updated to this shape.
    fn apply(&self, mut meta: KeyMeta) -> KeyMeta {
        if let KeyBody::Collection { head, len, .. } = &mut meta.body {
            *head = self.head;
            *len = self.len;
        }
        meta
    }
}

fn position_key(version: u64, position: i64) -> Vec<u8> {
    keys::element_key(keys::LIST, version, &keys::encode_list_position(position))
}

/// The elements at indexes `from..=to`, in order (reversed when `reverse`).
fn elements(
    view: &(impl View + ?Sized),
    shape: &Shape,
    from: u64,
    to: u64,
    reverse: bool,
) -> Result<Vec<Bytes>, EngineError> {
    let mut out = Vec::with_capacity((to - from + 1).min(1024) as usize);
    view.scan(
        &shape.key_at(from),
        &keys::prefix_end(&shape.key_at(to)),
        reverse,
        &mut |_, v| {
            out.push(Bytes::copy_from_slice(v));
            true
        },
    )?;
    Ok(out)
}

/// Every element, head first.
fn all_elements(view: &(impl View + ?Sized), shape: &Shape) -> Result<Vec<Bytes>, EngineError> {
    if shape.len == 0 {
        return Ok(Vec::new());
    }
    elements(view, shape, 0, shape.len - 1, false)
}

/// Every element of the list `meta` describes, head first (SORT).
pub fn elements_of(view: &(impl View + ?Sized), meta: &KeyMeta) -> Result<Vec<Bytes>, EngineError> {
    all_elements(view, &Shape::of(meta))
}

/// Executes a read-only list command.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &ListRead) -> ExecResult {
    let view = ctx.view;
    let now = ctx.now_ms;
    let shape_of = |key: &[u8]| -> Result<Option<Shape>, ExecError> {
        Ok(typed_meta(view, key, now, KeyType::List)?.map(|m| Shape::of(&m)))
    };
    match cmd {
        ListRead::Len(key) => Ok(Reply::Integer(shape_of(key)?.map_or(0, |s| s.len as i64))),
        ListRead::Index(key, index) => {
            let Some(shape) = shape_of(key)? else {
                return Ok(Reply::Nil);
            };
            let index = parse_i64(index).ok_or(CommandError::NotInteger)?;
            Ok(match shape.index(index) {
                Some(i) => Reply::bulk_or_nil(view.get(&shape.key_at(i))?),
                None => Reply::Nil,
            })
        }
        ListRead::Range(key, start, stop) => {
            let found = match shape_of(key)? {
                Some(shape) => match shape.range(*start, *stop) {
                    Some((from, to)) => elements(view, &shape, from, to, false)?,
                    None => Vec::new(),
                },
                None => Vec::new(),
            };
            Ok(Reply::Array(found.into_iter().map(Reply::Bulk).collect()))
        }
        ListRead::Pos(key, element, opts) => {
            let Some(shape) = shape_of(key)? else {
                return Ok(match opts.count {
                    Some(_) => Reply::Array(vec![]),
                    None => Reply::Nil,
                });
            };
            position(view, &shape, element, opts)
        }
    }
}

/// LPOS: walks from the head (positive RANK) or the tail, comparing at most MAXLEN elements.
fn position(view: &dyn View, shape: &Shape, element: &[u8], opts: &PosOptions) -> ExecResult {
    let from_tail = opts.rank < 0;
    // Redis 7.0 negates RANK with wrapping arithmetic, so i64::MIN behaves as "from the
    // tail, the first match".
    let skip = if opts.rank == i64::MIN {
        0
    } else {
        opts.rank.unsigned_abs() - 1
    };
    let wanted = match opts.count {
        None => 1,
        Some(0) => u64::MAX,
        Some(n) => n,
    };
    let limit = if opts.maxlen == 0 {
        shape.len
    } else {
        opts.maxlen.min(shape.len)
    };
    let mut found = Vec::new();
    if shape.len > 0 {
        let (mut matches, mut walked) = (0u64, 0u64);
        view.scan(
            &shape.key_at(0),
            &keys::prefix_end(&shape.key_at(shape.len - 1)),
            from_tail,
            &mut |_, v| {
                if walked == limit {
                    return false;
                }
                let index = if from_tail {
                    shape.len - 1 - walked
                } else {
                    walked
                };
                walked += 1;
                if v == element {
                    matches += 1;
                    if matches > skip {
                        found.push(Reply::Integer(index as i64));
                        if found.len() as u64 == wanted {
                            return false;
                        }
                    }
                }
                true
            },
        )?;
    }
    Ok(match opts.count {
        Some(_) => Reply::Array(found),
        None => found.pop().unwrap_or(Reply::Nil),
    })
}

/// Pushes `elements` one after the other at `end` of the list `meta` describes (which may
/// be a new, empty one) and stores it. Returns the new length.
fn push(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    end: End,
    elements: &[Bytes],
) -> Result<u64, EngineError> {
    let mut shape = Shape::of(&meta);
    for e in elements {
        let position = match end {
            End::Left => {
                shape.head = shape.head.wrapping_sub(1);
                shape.head
            }
            End::Right => shape.head.wrapping_add(shape.len as i64),
        };
        shape.len += 1;
        txn.put(position_key(shape.version, position), e.to_vec());
    }
    txn.set_meta(key, &shape.apply(meta))?;
    Ok(shape.len)
}

/// Replaces whatever `key` holds by a new list of `elements` (deletes it when there are
/// none: returns whether a live key was deleted then).
pub fn replace_with_list(
    txn: &mut Txn<'_>,
    key: &[u8],
    elements: &[Bytes],
) -> Result<bool, EngineError> {
    if elements.is_empty() {
        return txn.delete_key(key);
    }
    // Written over the old key (its record retired by the new one), so that a key that
    // existed is not announced as new.
    let version = txn.new_version();
    push(
        txn,
        key,
        KeyMeta::collection(KeyType::List, version),
        End::Right,
        elements,
    )?;
    Ok(false)
}

/// The event of a push at `end`.
fn push_event(end: End) -> &'static str {
    match end {
        End::Left => "lpush",
        End::Right => "rpush",
    }
}

/// Records the events of a pop from `end` of `key` that left `left` elements: `lpop` or
/// `rpop`, then `del` if the list is gone.
fn notify_pop(txn: &mut Txn<'_>, key: &[u8], end: End, left: u64) {
    let event = match end {
        End::Left => "lpop",
        End::Right => "rpop",
    };
    txn.notify(notify::LIST, event, key);
    txn.notify_emptied(key, left);
}

/// Pops up to `count` elements from `end` of the list `meta` describes, storing what is
/// left (or deleting the key). Returns them in pop order, and the length left.
fn pop(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    end: End,
    count: u64,
) -> Result<(Vec<Bytes>, u64), EngineError> {
    let mut shape = Shape::of(&meta);
    let n = count.min(shape.len);
    if n == 0 {
        return Ok((Vec::new(), shape.len));
    }
    let (from, to) = match end {
        End::Left => (0, n - 1),
        End::Right => (shape.len - n, shape.len - 1),
    };
    let popped = elements(txn, &shape, from, to, end == End::Right)?;
    for i in from..=to {
        txn.delete(shape.key_at(i));
    }
    if end == End::Left {
        shape.head = shape.head.wrapping_add(n as i64);
    }
    shape.len -= n;
    super::store_collection(txn, key, shape.apply(meta), shape.len)?;
    Ok((popped, shape.len))
}

/// Replaces the list's elements by `new` (what is left after removals or an insertion)
/// and stores the key, or deletes it when nothing is left. Old indexes before
/// `first_change` and after `last_change` hold the same elements in `new` (counted from
/// the head, resp. the tail), so only one side is rewritten: the elements from the first
/// change on, keeping the head where it is, or those up to the last change, keeping the
/// tail where it is, whichever is fewer.
fn rewrite(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    new: &[Bytes],
    first_change: u64,
    last_change: u64,
) -> Result<(), EngineError> {
    let old = Shape::of(&meta);
    if new.is_empty() {
        txn.delete_key(key)?;
        return Ok(());
    }
    let (old_len, new_len) = (old.len, new.len() as u64);
    let keep_head = old_len - first_change <= last_change + 1;
    let shape = Shape {
        head: if keep_head {
            old.head
        } else {
            old.head
                .wrapping_add(old_len as i64)
                .wrapping_sub(new_len as i64)
        },
        len: new_len,
        ..old
    };
    let (from, to) = if keep_head {
        (first_change, new_len)
    } else {
        let untouched_tail = (old_len - 1 - last_change).min(new_len);
        (0, new_len - untouched_tail)
    };
    for i in from..to {
        txn.put(shape.key_at(i), new[i as usize].to_vec());
    }
    // Positions the old list used and the new one does not.
    let old_end = old.head.wrapping_add(old_len as i64);
    let new_end = shape.head.wrapping_add(new_len as i64);
    if old.head < shape.head {
        txn.delete_range(
            position_key(old.version, old.head),
            position_key(old.version, shape.head),
        );
    }
    if new_end < old_end {
        txn.delete_range(
            position_key(old.version, new_end),
            position_key(old.version, old_end),
        );
    }
    txn.set_meta(key, &shape.apply(meta))?;
    Ok(())
}

/// Executes a list command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &ListWrite) -> ExecResult {
    match cmd {
        ListWrite::Push {
            key,
            end,
            only_existing,
            elements,
        } => {
            let meta = if *only_existing {
                match txn.typed_meta(key, KeyType::List)? {
                    Some(meta) => meta,
                    None => return Ok(Reply::Integer(0)),
                }
            } else {
                collection_for_write(txn, key, KeyType::List)?
            };
            let len = push(txn, key, meta, *end, elements)?;
            txn.notify(notify::LIST, push_event(*end), key);
            Ok(Reply::Integer(len as i64))
        }
        ListWrite::Pop { key, end, count } => {
            let Some(meta) = txn.typed_meta(key, KeyType::List)? else {
                return Ok(match count {
                    Some(_) => Reply::NilArray,
                    None => Reply::Nil,
                });
            };
            let (popped, left) = pop(txn, key, meta, *end, count.unwrap_or(1))?;
            // LPOP key 0 changes nothing.
            if !popped.is_empty() {
                notify_pop(txn, key, *end, left);
            }
            Ok(match count {
                Some(_) => Reply::Array(popped.into_iter().map(Reply::Bulk).collect()),
                None => Reply::bulk_or_nil(popped.into_iter().next()),
            })
        }
        ListWrite::Set(key, index, element) => {
            let Some(meta) = txn.typed_meta(key, KeyType::List)? else {
                return Err(CommandError::NoSuchKey.into());
            };
            let index = parse_i64(index).ok_or(CommandError::NotInteger)?;
            let shape = Shape::of(&meta);
            let i = shape.index(index).ok_or(CommandError::IndexOutOfRange)?;
            txn.put(shape.key_at(i), element.to_vec());
            txn.notify(notify::LIST, "lset", key);
            Ok(Reply::OK)
        }
        ListWrite::Trim(key, start, stop) => {
            let Some(meta) = txn.typed_meta(key, KeyType::List)? else {
                return Ok(Reply::OK);
            };
            let shape = Shape::of(&meta);
            // Redis notifies `ltrim` even when nothing was trimmed.
            txn.notify(notify::LIST, "ltrim", key);
            match shape.range(*start, *stop) {
                None => {
                    txn.delete_key(key)?;
                    txn.notify_emptied(key, 0);
                }
                Some((from, to)) if from > 0 || to + 1 < shape.len => {
                    if from > 0 {
                        txn.delete_range(shape.key_at(0), shape.key_at(from));
                    }
                    if to + 1 < shape.len {
                        txn.delete_range(shape.key_at(to + 1), shape.key_at(shape.len));
                    }
                    let trimmed = Shape {
                        head: shape.head.wrapping_add(from as i64),
                        len: to - from + 1,
                        ..shape
                    };
                    txn.set_meta(key, &trimmed.apply(meta))?;
                }
                Some(_) => {}
            }
            Ok(Reply::OK)
        }
        ListWrite::Insert {
            key,
            after,
            pivot,
            element,
        } => {
            let Some(meta) = txn.typed_meta(key, KeyType::List)? else {
                return Ok(Reply::Integer(0));
            };
            let mut all = all_elements(txn, &Shape::of(&meta))?;
            let Some(at) = all.iter().position(|e| e == pivot) else {
                return Ok(Reply::Integer(-1));
            };
            let at = at + usize::from(*after);
            all.insert(at, element.clone());
            // Seen from the head, the elements from `at` on moved; seen from the tail,
            // those before `at` did (and `at` is new).
            rewrite(txn, key, meta, &all, at as u64, at as u64)?;
            txn.notify(notify::LIST, "linsert", key);
            Ok(Reply::Integer(all.len() as i64))
        }
        ListWrite::Rem(key, count, element) => {
            let Some(meta) = txn.typed_meta(key, KeyType::List)? else {
                return Ok(Reply::Integer(0));
            };
            let all = all_elements(txn, &Shape::of(&meta))?;
            let limit = if *count == 0 {
                usize::MAX
            } else {
                usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
            };
            let matching = |i: &usize| all[*i] == *element;
            let doomed: Vec<usize> = if *count < 0 {
                let mut d: Vec<usize> = (0..all.len()).rev().filter(matching).take(limit).collect();
                d.reverse();
                d
            } else {
                (0..all.len()).filter(matching).take(limit).collect()
            };
            let (Some(&first), Some(&last)) = (doomed.first(), doomed.last()) else {
                return Ok(Reply::Integer(0));
            };
            let mut gone = doomed.iter().peekable();
            let kept: Vec<Bytes> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    if gone.peek() == Some(&i) {
                        gone.next();
                        false
                    } else {
                        true
                    }
                })
                .map(|(_, e)| e.clone())
                .collect();
            rewrite(txn, key, meta, &kept, first as u64, last as u64)?;
            txn.notify(notify::LIST, "lrem", key);
            txn.notify_emptied(key, kept.len() as u64);
            Ok(Reply::Integer(doomed.len() as i64))
        }
        ListWrite::Move { src, dst, from, to } => {
            let Some(meta) = txn.source_meta(src, KeyType::List)? else {
                return Ok(Reply::Nil);
            };
            // The destination's type is checked before anything is popped.
            txn.typed_meta(dst, KeyType::List)?;
            let shape = Shape::of(&meta);
            if src == dst && shape.len == 1 {
                // Rotating a one-element list changes nothing (and keeps its TTL), but
                // Redis notifies it as any move: the push, then the pop.
                txn.notify(notify::LIST, push_event(*to), dst);
                notify_pop(txn, src, *from, 1);
                return Ok(Reply::bulk_or_nil(txn.get(&shape.key_at(0))?));
            }
            let (popped, left) = pop(txn, src, meta, *from, 1)?;
            let dst_meta = collection_for_write(txn, dst, KeyType::List)?;
            push(txn, dst, dst_meta, *to, &popped)?;
            // Redis notifies the push before the pop (and the source's deletion).
            txn.notify(notify::LIST, push_event(*to), dst);
            notify_pop(txn, src, *from, left);
            Ok(Reply::bulk_or_nil(popped.into_iter().next()))
        }
        ListWrite::BPop { keys, end } => {
            for key in keys {
                if let Some(meta) = txn.source_meta(key, KeyType::List)? {
                    let (popped, left) = pop(txn, key, meta, *end, 1)?;
                    notify_pop(txn, key, *end, left);
                    return Ok(Reply::Array(
                        std::iter::once(key.clone())
                            .chain(popped)
                            .map(Reply::Bulk)
                            .collect(),
                    ));
                }
            }
            Ok(Reply::NilArray)
        }
        ListWrite::MPop { keys, end, count } => {
            for key in keys {
                if let Some(meta) = txn.source_meta(key, KeyType::List)? {
                    let (popped, left) = pop(txn, key, meta, *end, *count)?;
                    notify_pop(txn, key, *end, left);
                    return Ok(Reply::Array(vec![
                        Reply::Bulk(key.clone()),
                        Reply::Array(popped.into_iter().map(Reply::Bulk).collect()),
                    ]));
                }
            }
            Ok(Reply::NilArray)
        }
    }
}
