//! Execution of sorted-set commands.
//!
//! A sorted set is a metadata record (version, member count, score bounds) plus, per
//! member, a member record `z`version member → score and an index entry
//! `Z`version score member (see [`keys::zset_score_key`]), so:
//! - ZSCORE, ZMSCORE and the existence checks of ZADD and ZREM are point reads, ZCARD
//!   reads the metadata alone;
//! - ranges by score are a seek into the index; ranges by rank and by member walk it from
//!   the nearer end; ZRANK counts the entries below the member (O(rank));
//! - the metadata's bounds are encoded scores at or below the lowest live entry and at or
//!   above the highest. Every walk of the index starts at a bound, and a removal at either
//!   end (ZPOPMIN, ZREMRANGEBYRANK 0 N, ZREMRANGEBYSCORE -inf X, ...) moves the bound past
//!   what it removed, so a hot sorted set trimmed at one end never walks over the
//!   tombstones the trimming leaves.
//!
//! Scores are stored as `encode_score` bytes in both records (-0 is stored as 0, as a small
//! Redis sorted set stores it, though a reply shows a computed -0 as Redis does), and
//! replied with Redis's `%.17g` ([`Reply::Double`]).

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use zankv_commands::hash::RandFieldCount;
use zankv_commands::keyspace::scan_options;
use zankv_commands::number::format_double;
use zankv_commands::set::SetOp;
use zankv_commands::zset::{
    combine_options, intercard_limit, AddFlags, Aggregate, LexRange, RangeBy, ScoreRange, ZsetRead,
    ZsetWrite,
};
use zankv_commands::{notify, CommandError, Reply};

use super::{
    collection_for_write, live_meta, typed_meta, ExecError, ExecResult, ReadCtx, Txn, View,
};
use crate::engine::{EngineError, Flow};
use crate::keys;
use crate::records::{KeyBody, KeyMeta, KeyType};

/// One member and its score.
pub(super) type Entry = (f64, Bytes);

/// Where a sorted set's records are and the bounds of its index.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    version: u64,
    len: u64,
    floor: u64,
    ceil: u64,
}

impl Shape {
    pub(super) fn of(meta: &KeyMeta) -> Self {
        match meta.body {
            KeyBody::Collection {
                version,
                len,
                bounds,
                ..
            } => Shape {
                version,
                len,
                floor: bounds.0,
                ceil: bounds.1,
            },
            KeyBody::String(_) => Shape {
                version: 0,
                len: 0,
                floor: u64::MAX,
                ceil: 0,
            },
        }
    }

    /// `meta` updated to this shape.
    fn apply(&self, mut meta: KeyMeta) -> KeyMeta {
        if let KeyBody::Collection { len, bounds, .. } = &mut meta.body {
            *len = self.len;
            *bounds = (self.floor, self.ceil);
        }
        meta
    }

    fn member_key(&self, member: &[u8]) -> Vec<u8> {
        keys::element_key(keys::ZSET_MEMBER, self.version, member)
    }

    fn index_key(&self, score: f64, member: &[u8]) -> Vec<u8> {
        keys::zset_score_key(self.version, score, member)
    }

    /// Widens the bounds to cover `score`.
    fn cover(&mut self, score: f64) {
        let s = encoded(score);
        self.floor = self.floor.min(s);
        self.ceil = self.ceil.max(s);
    }
}

fn encoded(score: f64) -> u64 {
    u64::from_be_bytes(keys::encode_score(score))
}

fn decoded(bytes: &[u8]) -> f64 {
    keys::decode_score(bytes.try_into().unwrap_or([0; 8]))
}

pub(super) fn score_of(
    view: &(impl View + ?Sized),
    z: &Shape,
    member: &[u8],
) -> Result<Option<f64>, EngineError> {
    Ok(view.get(&z.member_key(member))?.map(|v| decoded(&v)))
}

/// Walks the index between the scores `lo` and `hi` (clamped to the set's bounds), upwards
/// or downwards, until `visit` returns false.
fn walk(
    view: &(impl View + ?Sized),
    z: &Shape,
    lo: Option<f64>,
    hi: Option<f64>,
    reverse: bool,
    visit: &mut dyn FnMut(f64, &[u8]) -> bool,
) -> Result<(), EngineError> {
    let lo = lo.map_or(z.floor, |s| encoded(s).max(z.floor));
    let hi = hi.map_or(z.ceil, |s| encoded(s).min(z.ceil));
    if lo > hi {
        return Ok(());
    }
    let end = keys::prefix_end(&index_bound(z, hi));
    view.scan(
        &index_bound(z, lo),
        &end,
        reverse,
        &mut |k, _| match index_entry(k) {
            Some((score, member)) => visit(score, member),
            None => true,
        },
    )
}

/// Walks the index over each score range `[lo, hi)` of `ranges` in the order given, with
/// one engine pass ([`View::scan_ranges`]); `visit` says whether to go on, skip to the next
/// range or stop.
pub(super) fn walk_ranges(
    view: &(impl View + ?Sized),
    z: &Shape,
    ranges: &[(f64, f64)],
    visit: &mut dyn FnMut(f64, &[u8]) -> Flow,
) -> Result<(), EngineError> {
    let key = |score: u64| index_bound(z, score);
    let keyed: Vec<(Vec<u8>, Vec<u8>)> = ranges
        .iter()
        .map(|&(lo, hi)| {
            let (lo, hi) = (encoded(lo).max(z.floor), encoded(hi));
            // Past the set's bounds the range is empty; below its ceiling it ends before
            // `hi`, else just after the ceiling's entries.
            let end = if hi > z.ceil {
                keys::prefix_end(&key(z.ceil))
            } else {
                key(hi)
            };
            (key(lo), end)
        })
        .collect();
    view.scan_ranges(&keyed, &mut |_, k, _| match index_entry(k) {
        Some((score, member)) => visit(score, member),
        None => Flow::Continue,
    })
}

/// The first index key of encoded score `score` (the entries of that score follow it).
fn index_bound(z: &Shape, score: u64) -> Vec<u8> {
    let mut key = keys::element_prefix(keys::ZSET_SCORE, z.version);
    key.extend_from_slice(&score.to_be_bytes());
    key
}

/// An index key's score and member.
fn index_entry(key: &[u8]) -> Option<(f64, &[u8])> {
    Some((decoded(key.get(9..17)?), &key[17..]))
}

/// The entries `by` selects, in walking order (highest first when `rev`), after LIMIT.
fn select(
    view: &(impl View + ?Sized),
    z: &Shape,
    by: &RangeBy,
    rev: bool,
    limit: Option<(i64, i64)>,
) -> Result<Vec<Entry>, EngineError> {
    let mut out = Vec::new();
    let (skip, take) = match limit {
        Some((offset, _)) if offset < 0 => return Ok(out),
        Some((offset, count)) => (offset as u64, u64::try_from(count).unwrap_or(u64::MAX)),
        None => (0, u64::MAX),
    };
    if take == 0 {
        return Ok(out);
    }
    // Counts LIMIT's offset, then collects; false once LIMIT's count is reached.
    let skip = std::cell::Cell::new(skip);
    let keep = |score: f64, member: &[u8], out: &mut Vec<Entry>| {
        if skip.get() > 0 {
            skip.set(skip.get() - 1);
            return true;
        }
        out.push((score, Bytes::copy_from_slice(member)));
        (out.len() as u64) < take
    };
    match by {
        RangeBy::Rank(start, stop) => {
            let Some((a, b)) = rank_window(z.len, *start, *stop, rev) else {
                return Ok(out);
            };
            // Walk from the nearer end.
            let from_top = a > z.len - 1 - b;
            let (mut to_skip, mut to_take) = if from_top {
                (z.len - 1 - b, b - a + 1)
            } else {
                (a, b - a + 1)
            };
            walk(view, z, None, None, from_top, &mut |score, member| {
                if to_skip > 0 {
                    to_skip -= 1;
                    return true;
                }
                out.push((score, Bytes::copy_from_slice(member)));
                to_take -= 1;
                to_take > 0
            })?;
            if from_top != rev {
                out.reverse();
            }
        }
        RangeBy::Score(range) => {
            if range.is_empty() {
                return Ok(out);
            }
            let (lo, hi) = (Some(range.min.value), Some(range.max.value));
            walk(view, z, lo, hi, rev, &mut |score, member| {
                let (inside, past) = if rev {
                    (range.below_max(score), !range.above_min(score))
                } else {
                    (range.above_min(score), !range.below_max(score))
                };
                if past {
                    return false;
                }
                !inside || keep(score, member, &mut out)
            })?;
        }
        RangeBy::Lex(range) => {
            // Redis first checks the range against the set's ends (by member alone).
            let end = |top: bool| -> Result<Option<Bytes>, EngineError> {
                let mut found = None;
                walk(view, z, None, None, top, &mut |_, m| {
                    found = Some(Bytes::copy_from_slice(m));
                    false
                })?;
                Ok(found)
            };
            let inside = match (end(false)?, end(true)?) {
                (Some(first), Some(last)) => range.below_max(&first) && range.above_min(&last),
                _ => false,
            };
            if range.is_empty() || !inside {
                return Ok(out);
            }
            let mut started = false;
            walk(view, z, None, None, rev, &mut |score, member| {
                let (inside, within) = if rev {
                    (range.below_max(member), range.above_min(member))
                } else {
                    (range.above_min(member), range.below_max(member))
                };
                if !started {
                    if !inside {
                        return true;
                    }
                    started = true;
                }
                // As Redis: LIMIT's offset skips members without looking at them (in a set
                // of mixed scores, members past the upper end may come before ones within).
                (within || skip.get() > 0) && keep(score, member, &mut out)
            })?;
        }
    }
    Ok(out)
}

/// Ranks `start..=stop` (negative from the end; reversed ranks when `rev`) as an inclusive
/// window of ascending positions, or `None` when empty.
fn rank_window(len: u64, start: i64, stop: i64, rev: bool) -> Option<(u64, u64)> {
    let n = len as i64;
    let start = if start < 0 {
        start.saturating_add(n)
    } else {
        start
    }
    .max(0);
    let stop = if stop < 0 {
        stop.saturating_add(n)
    } else {
        stop
    };
    if start > stop || start >= n {
        return None;
    }
    let (start, stop) = (start as u64, stop.min(n - 1) as u64);
    Some(if rev {
        (len - 1 - stop, len - 1 - start)
    } else {
        (start, stop)
    })
}

/// How many entries a lexicographical range covers (walked as Redis walks a small set:
/// from the first member at or above the lower end, while at or below the upper end).
fn lex_count(view: &(impl View + ?Sized), z: &Shape, range: &LexRange) -> Result<u64, EngineError> {
    let by = RangeBy::Lex(range.clone());
    Ok(select(view, z, &by, false, None)?.len() as u64)
}

fn entries_reply(entries: Vec<Entry>, with_scores: bool) -> Reply {
    if with_scores {
        Reply::Pairs(
            entries
                .into_iter()
                .map(|(s, m)| (Reply::Bulk(m), Reply::Double(s)))
                .collect(),
        )
    } else {
        Reply::Array(entries.into_iter().map(|(_, m)| Reply::Bulk(m)).collect())
    }
}

/// Every entry, lowest score first.
fn all_entries(view: &(impl View + ?Sized), z: &Shape) -> Result<Vec<Entry>, EngineError> {
    let mut out = Vec::with_capacity(z.len.min(1024) as usize);
    walk(view, z, None, None, false, &mut |score, member| {
        out.push((score, Bytes::copy_from_slice(member)));
        true
    })?;
    Ok(out)
}

/// Every member of the sorted set `meta` describes, lowest score first (SORT).
pub fn members_of(view: &(impl View + ?Sized), meta: &KeyMeta) -> Result<Vec<Bytes>, EngineError> {
    Ok(all_entries(view, &Shape::of(meta))?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

/// One input of ZUNION/ZINTER/ZDIFF: its members and scores (a set's are 1), or none.
fn input(
    view: &(impl View + ?Sized),
    now_ms: i64,
    key: &[u8],
) -> Result<Option<HashMap<Bytes, f64>>, ExecError> {
    let Some(meta) = live_meta(view, key, now_ms)? else {
        return Ok(None);
    };
    Ok(Some(match meta.key_type() {
        KeyType::ZSet => all_entries(view, &Shape::of(&meta))?
            .into_iter()
            .map(|(s, m)| (m, s))
            .collect(),
        KeyType::Set => super::set::members(view, &meta)?
            .into_iter()
            .map(|m| (m, 1.0))
            .collect(),
        _ => return Err(CommandError::WrongType.into()),
    }))
}

/// A weighted score; NaN (infinity times 0) counts as 0, as in Redis.
fn weighted(score: f64, weight: f64) -> f64 {
    let w = score * weight;
    if w.is_nan() {
        0.0
    } else {
        w
    }
}

fn aggregate(how: Aggregate, a: f64, b: f64) -> f64 {
    match how {
        Aggregate::Sum => {
            let s = a + b;
            if s.is_nan() {
                0.0
            } else {
                s
            }
        }
        Aggregate::Min => a.min(b),
        Aggregate::Max => a.max(b),
    }
}

/// The inputs of ZUNION/ZINTER/ZDIFF's `keys`, looked up in turn (WRONGTYPE at the first
/// key of another type).
fn lookup_inputs(
    view: &(impl View + ?Sized),
    now_ms: i64,
    keys: &[Bytes],
) -> Result<Vec<Option<HashMap<Bytes, f64>>>, ExecError> {
    let mut inputs = Vec::with_capacity(keys.len());
    for key in keys {
        inputs.push(input(view, now_ms, key)?);
    }
    Ok(inputs)
}

/// ZUNION/ZINTER/ZDIFF of `inputs` ([`lookup_inputs`]: every key's type is checked before
/// the options are read, as Redis does); the result is in (score, member) order.
fn combine(
    op: SetOp,
    inputs: &[Option<HashMap<Bytes, f64>>],
    opts: &[Bytes],
    store: bool,
) -> Result<(Vec<Entry>, bool), ExecError> {
    let options = combine_options(op, inputs.len(), store, opts)?;
    let mut result: HashMap<Bytes, f64> = HashMap::new();
    match op {
        SetOp::Diff => {
            if let Some(Some(first)) = inputs.first() {
                result = first.clone();
                for other in inputs[1..].iter().flatten() {
                    result.retain(|m, _| !other.contains_key(m));
                }
            }
        }
        SetOp::Union | SetOp::Inter => {
            // Inputs smallest first (stable), as Redis orders them: the order in which
            // scores are added can change a sum's last bits.
            let mut order: Vec<(Option<&HashMap<Bytes, f64>>, f64)> = inputs
                .iter()
                .map(Option::as_ref)
                .zip(options.weights.iter().copied())
                .collect();
            order.sort_by_key(|(set, _)| set.map_or(0, |s| s.len()));
            if op == SetOp::Inter {
                if order.iter().any(|(set, _)| set.is_none()) {
                    return Ok((Vec::new(), options.with_scores));
                }
                let (first, w0) = order[0];
                for (member, score) in first.into_iter().flatten() {
                    let mut total = weighted(*score, w0);
                    let mut everywhere = true;
                    for (other, w) in &order[1..] {
                        match other.and_then(|o| o.get(member)) {
                            // Redis turns a NaN product (inf x 0) into 0 for the first
                            // input only; a later one's NaN reaches the sum, which then
                            // becomes 0.
                            Some(s) => total = aggregate(options.aggregate, total, *s * *w),
                            None => {
                                everywhere = false;
                                break;
                            }
                        }
                    }
                    if everywhere {
                        result.insert(member.clone(), total);
                    }
                }
            } else {
                for (set, w) in &order {
                    for (member, score) in set.iter().copied().flatten() {
                        let s = weighted(*score, *w);
                        result
                            .entry(member.clone())
                            .and_modify(|t| *t = aggregate(options.aggregate, *t, s))
                            .or_insert(s);
                    }
                }
            }
        }
    }
    let mut entries: Vec<Entry> = result.into_iter().map(|(m, s)| (s, m)).collect();
    // -0 and 0 tie (then the member decides), as in Redis's comparisons; no score is NaN.
    entries.sort_by(|a, b| {
        a.0.partial_cmp(&b.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.1.cmp(&b.1))
    });
    Ok((entries, options.with_scores))
}

/// The sorted set at `key` live at `now_ms` (WRONGTYPE for another type; `None` when
/// missing).
pub(super) fn shape_at(
    view: &(impl View + ?Sized),
    key: &[u8],
    now_ms: i64,
) -> Result<Option<Shape>, ExecError> {
    Ok(typed_meta(view, key, now_ms, KeyType::ZSet)?.map(|m| Shape::of(&m)))
}

/// Executes a read-only sorted-set command.
pub fn read(ctx: &mut ReadCtx<'_>, cmd: &ZsetRead) -> ExecResult {
    let view = ctx.view;
    let now = ctx.now_ms;
    let shape_of = |key: &[u8]| shape_at(view, key, now);
    match cmd {
        ZsetRead::Card(key) => Ok(Reply::Integer(shape_of(key)?.map_or(0, |z| z.len as i64))),
        ZsetRead::Score(key, member) => Ok(match shape_of(key)? {
            Some(z) => score_of(view, &z, member)?.map_or(Reply::Nil, Reply::Double),
            None => Reply::Nil,
        }),
        ZsetRead::MScore(key, members) => {
            let z = shape_of(key)?;
            let mut out = Vec::with_capacity(members.len());
            for m in members {
                out.push(match &z {
                    Some(z) => score_of(view, z, m)?.map_or(Reply::Nil, Reply::Double),
                    None => Reply::Nil,
                });
            }
            Ok(Reply::Array(out))
        }
        ZsetRead::Count(key, range) => Ok(Reply::Integer(match shape_of(key)? {
            Some(z) => count_scores(view, &z, range)? as i64,
            None => 0,
        })),
        ZsetRead::LexCount(key, range) => Ok(Reply::Integer(match shape_of(key)? {
            Some(z) => lex_count(view, &z, range)? as i64,
            None => 0,
        })),
        ZsetRead::Rank(key, member, rev) => {
            let Some(z) = shape_of(key)? else {
                return Ok(Reply::Nil);
            };
            let Some(score) = score_of(view, &z, member)? else {
                return Ok(Reply::Nil);
            };
            let target = z.index_key(score, member);
            let mut below = 0u64;
            walk(view, &z, None, Some(score), false, &mut |s, m| {
                if z.index_key(s, m) >= target {
                    return false;
                }
                below += 1;
                true
            })?;
            Ok(Reply::Integer(if *rev {
                (z.len - 1 - below) as i64
            } else {
                below as i64
            }))
        }
        ZsetRead::Range(key, query) => Ok(match shape_of(key)? {
            Some(z) => entries_reply(
                select(view, &z, &query.by, query.rev, query.limit)?,
                query.with_scores,
            ),
            None => Reply::Array(vec![]),
        }),
        ZsetRead::RandMember(key, count) => {
            let Some(z) = shape_of(key)? else {
                return Ok(match count {
                    RandFieldCount::One => Reply::Nil,
                    RandFieldCount::Many { .. } => Reply::Array(vec![]),
                });
            };
            let entries: Vec<(Reply, Reply)> = all_entries(view, &z)?
                .into_iter()
                .map(|(s, m)| (Reply::Bulk(m), Reply::Double(s)))
                .collect();
            super::random_entries(&entries, *count)
        }
        ZsetRead::Combine(op, keys, opts) => {
            let inputs = lookup_inputs(view, now, keys)?;
            let (entries, with_scores) = combine(*op, &inputs, opts, false)?;
            Ok(entries_reply(entries, with_scores))
        }
        ZsetRead::InterCard(keys, opts) => {
            let inputs = lookup_inputs(view, now, keys)?;
            let limit = usize::try_from(intercard_limit(opts)?).unwrap_or(usize::MAX);
            let mut sets: Vec<&HashMap<Bytes, f64>> = Vec::with_capacity(inputs.len());
            for set in &inputs {
                match set {
                    Some(s) => sets.push(s),
                    None => return Ok(Reply::Integer(0)),
                }
            }
            sets.sort_by_key(|s| s.len());
            let mut n = 0usize;
            for member in sets[0].keys() {
                if sets[1..].iter().all(|s| s.contains_key(member)) {
                    n += 1;
                    if n == limit {
                        break;
                    }
                }
            }
            Ok(Reply::Integer(n as i64))
        }
        ZsetRead::Scan(key, cursor, opts) => {
            let Some(z) = shape_of(key)? else {
                return Ok(Reply::Array(vec![Reply::bulk("0"), Reply::Array(vec![])]));
            };
            let args = scan_options(*cursor, opts, false)?;
            let prefix = keys::element_prefix(keys::ZSET_MEMBER, z.version);
            super::scan_elements(
                ctx,
                &prefix,
                &args,
                Some(|v| Reply::bulk(format_double(decoded(v)))),
            )
        }
    }
}

fn count_scores(
    view: &(impl View + ?Sized),
    z: &Shape,
    range: &ScoreRange,
) -> Result<u64, EngineError> {
    Ok(select(view, z, &RangeBy::Score(*range), false, None)?.len() as u64)
}

/// Removes `gone` (entries of the set `meta` describes, ascending), stores what is left
/// and, if it removed any, notifies `event` (and `del` when none are left). When `gone`
/// is a contiguous span of the index, a removal that reaches the lowest (highest) live
/// entry moves the floor (ceiling) to the entry just past it, found by one step of the
/// index from the removed edge.
fn remove_entries(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    gone: &[Entry],
    contiguous: bool,
    event: &'static str,
) -> Result<u64, EngineError> {
    let mut z = Shape::of(&meta);
    let (Some(lowest), Some(highest)) = (gone.first(), gone.last()) else {
        return Ok(0);
    };
    let n = gone.len() as u64;
    if n < z.len && (contiguous || n == 1) {
        // The live entries next to the removed span, read before anything is written.
        let below = neighbour(txn, &z, lowest, true)?;
        let above = neighbour(txn, &z, highest, false)?;
        if below.is_none() {
            if let Some(s) = above {
                z.floor = encoded(s);
            }
        }
        if above.is_none() {
            if let Some(s) = below {
                z.ceil = encoded(s);
            }
        }
    }
    for (score, member) in gone {
        txn.delete(z.member_key(member));
        txn.delete(z.index_key(*score, member));
    }
    z.len -= n;
    super::store_collection(txn, key, z.apply(meta), z.len)?;
    txn.notify(notify::ZSET, event, key);
    txn.notify_emptied(key, z.len);
    Ok(n)
}

/// The score of the live entry just below (`down`) or above `edge` that is not in a
/// contiguous removed span starting at `edge`; `None` at the end of the index.
fn neighbour(
    view: &(impl View + ?Sized),
    z: &Shape,
    edge: &Entry,
    down: bool,
) -> Result<Option<f64>, EngineError> {
    let target = z.index_key(edge.0, &edge.1);
    let mut found = None;
    let (lo, hi) = if down {
        (None, Some(edge.0))
    } else {
        (Some(edge.0), None)
    };
    walk(view, z, lo, hi, down, &mut |s, m| {
        let k = z.index_key(s, m);
        if (down && k < target) || (!down && k > target) {
            found = Some(s);
            return false;
        }
        true
    })?;
    Ok(found)
}

/// ZRANGESTORE/ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE: replaces whatever `dst` holds by a new
/// sorted set of `entries` and notifies `event`, or deletes `dst` when there are none
/// (`del` if it existed).
pub(super) fn store_zset(
    txn: &mut Txn<'_>,
    dst: &[u8],
    entries: &[Entry],
    event: &'static str,
) -> Result<u64, EngineError> {
    if entries.is_empty() {
        if txn.delete_key(dst)? {
            txn.notify(notify::GENERIC, "del", dst);
        }
        return Ok(0);
    }
    let version = txn.new_version();
    let meta = KeyMeta::collection(KeyType::ZSet, version);
    let mut z = Shape::of(&meta);
    for (score, member) in entries {
        txn.put(z.member_key(member), keys::encode_score(*score).to_vec());
        txn.put(z.index_key(*score, member), Vec::new());
        z.cover(*score);
    }
    z.len = entries.len() as u64;
    // Written over the old record (set_meta retires it), so that replacing a key is not
    // notified as a new one.
    txn.set_meta(dst, &z.apply(meta))?;
    txn.notify(notify::ZSET, event, dst);
    Ok(z.len)
}

/// ZADD (and ZINCRBY, which is ZADD INCR).
pub(super) fn add(txn: &mut Txn<'_>, key: &[u8], flags: &AddFlags, pairs: &[Entry]) -> ExecResult {
    let meta = collection_for_write(txn, key, KeyType::ZSet)?;
    let mut z = Shape::of(&meta);
    let (mut added, mut changed, mut processed) = (0i64, 0i64, 0i64);
    let mut last = 0.0;
    for (score, member) in pairs {
        let old = score_of(txn, &z, member)?;
        let new = match old {
            Some(_) if flags.nx => continue,
            None if flags.xx => continue,
            Some(o) if flags.incr => {
                let n = o + score;
                if n.is_nan() {
                    return Err(CommandError::ScoreNan.into());
                }
                n
            }
            _ => *score,
        };
        if let Some(o) = old {
            if (flags.gt && new <= o) || (flags.lt && new >= o) {
                continue;
            }
        }
        // The reply shows the score computed (-0 included); the records store -0 as 0.
        processed += 1;
        last = new;
        if old == Some(new) {
            continue;
        }
        match old {
            Some(o) => {
                txn.delete(z.index_key(o, member));
                changed += 1;
            }
            None => added += 1,
        }
        txn.put(z.member_key(member), keys::encode_score(new).to_vec());
        txn.put(z.index_key(new, member), Vec::new());
        z.cover(new);
    }
    if added > 0 || changed > 0 {
        z.len += added as u64;
        txn.set_meta(key, &z.apply(meta))?;
        txn.notify(notify::ZSET, if flags.incr { "zincr" } else { "zadd" }, key);
    }
    Ok(if flags.incr {
        if processed > 0 {
            Reply::Double(last)
        } else {
            Reply::Nil
        }
    } else if flags.ch {
        Reply::Integer(added + changed)
    } else {
        Reply::Integer(added)
    })
}

/// The `count` lowest (or highest, `max`) entries, in pop order.
fn pop_entries(
    txn: &mut Txn<'_>,
    key: &[u8],
    meta: KeyMeta,
    max: bool,
    count: u64,
) -> Result<Vec<Entry>, EngineError> {
    let z = Shape::of(&meta);
    let mut out = Vec::new();
    if count > 0 {
        walk(txn, &z, None, None, max, &mut |s, m| {
            out.push((s, Bytes::copy_from_slice(m)));
            (out.len() as u64) < count
        })?;
    }
    let mut ascending = out.clone();
    if max {
        ascending.reverse();
    }
    let event = if max { "zpopmax" } else { "zpopmin" };
    remove_entries(txn, key, meta, &ascending, true, event)?;
    Ok(out)
}

/// Executes a sorted-set command that writes.
pub fn write(txn: &mut Txn<'_>, cmd: &ZsetWrite) -> ExecResult {
    match cmd {
        ZsetWrite::Add { key, flags, pairs } => {
            let pairs: Vec<Entry> = pairs.iter().map(|(s, m)| (*s, m.clone())).collect();
            add(txn, key, flags, &pairs)
        }
        ZsetWrite::Rem(key, members) => {
            let Some(meta) = txn.typed_meta(key, KeyType::ZSet)? else {
                return Ok(Reply::Integer(0));
            };
            let z = Shape::of(&meta);
            let mut gone: BTreeSet<(u64, Bytes)> = BTreeSet::new();
            for m in members {
                if let Some(s) = score_of(txn, &z, m)? {
                    gone.insert((encoded(s), m.clone()));
                }
            }
            let gone: Vec<Entry> = gone
                .into_iter()
                .map(|(s, m)| (keys::decode_score(s.to_be_bytes()), m))
                .collect();
            Ok(Reply::Integer(
                remove_entries(txn, key, meta, &gone, false, "zrem")? as i64,
            ))
        }
        ZsetWrite::RemRange(key, by) => {
            let Some(meta) = txn.typed_meta(key, KeyType::ZSet)? else {
                return Ok(Reply::Integer(0));
            };
            let gone = select(txn, &Shape::of(&meta), by, false, None)?;
            let event = match by {
                RangeBy::Rank(..) => "zremrangebyrank",
                RangeBy::Score(_) => "zremrangebyscore",
                RangeBy::Lex(_) => "zremrangebylex",
            };
            Ok(Reply::Integer(
                remove_entries(txn, key, meta, &gone, true, event)? as i64,
            ))
        }
        ZsetWrite::Pop(key, max, count) => {
            let Some(meta) = txn.typed_meta(key, KeyType::ZSet)? else {
                return Ok(Reply::Array(vec![]));
            };
            let popped = pop_entries(txn, key, meta, *max, count.unwrap_or(1))?;
            Ok(match count {
                Some(_) => entries_reply(popped, true),
                None => Reply::Array(
                    popped
                        .into_iter()
                        .flat_map(|(s, m)| [Reply::Bulk(m), Reply::Double(s)])
                        .collect(),
                ),
            })
        }
        ZsetWrite::MPop(keys, max, count) => {
            for key in keys {
                if let Some(meta) = txn.source_meta(key, KeyType::ZSet)? {
                    let popped = pop_entries(txn, key, meta, *max, *count)?;
                    return Ok(Reply::Array(vec![
                        Reply::Bulk(key.clone()),
                        Reply::Array(
                            popped
                                .into_iter()
                                .map(|(s, m)| Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]))
                                .collect(),
                        ),
                    ]));
                }
            }
            Ok(Reply::NilArray)
        }
        ZsetWrite::BPop(keys, max) => {
            for key in keys {
                if let Some(meta) = txn.source_meta(key, KeyType::ZSet)? {
                    let mut reply = vec![Reply::Bulk(key.clone())];
                    for (score, member) in pop_entries(txn, key, meta, *max, 1)? {
                        reply.extend([Reply::Bulk(member), Reply::Double(score)]);
                    }
                    return Ok(Reply::Array(reply));
                }
            }
            Ok(Reply::NilArray)
        }
        ZsetWrite::RangeStore(dst, src, query) => {
            let entries = match txn.typed_meta(src, KeyType::ZSet)? {
                Some(meta) => select(txn, &Shape::of(&meta), &query.by, query.rev, query.limit)?,
                // The source is read: its miss is announced, before the destination's events.
                None => {
                    txn.notify(notify::KEY_MISS, "keymiss", src);
                    Vec::new()
                }
            };
            Ok(Reply::Integer(
                store_zset(txn, dst, &entries, "zrangestore")? as i64,
            ))
        }
        ZsetWrite::Store(op, dst, keys, opts) => {
            // As [`lookup_inputs`], announcing each source key missed (Redis reads them), in
            // turn, before a later key's WRONGTYPE or a bad option.
            let mut inputs = Vec::with_capacity(keys.len());
            for key in keys {
                let found = input(&*txn, txn.now_ms, key)?;
                if found.is_none() {
                    txn.notify(notify::KEY_MISS, "keymiss", key);
                }
                inputs.push(found);
            }
            let (entries, _) = combine(*op, &inputs, opts, true)?;
            let event = match op {
                SetOp::Union => "zunionstore",
                SetOp::Inter => "zinterstore",
                SetOp::Diff => "zdiffstore",
            };
            Ok(Reply::Integer(store_zset(txn, dst, &entries, event)? as i64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_windows_follow_redis_index_rules() {
        assert_eq!(rank_window(5, 0, -1, false), Some((0, 4)));
        assert_eq!(rank_window(5, -2, -1, false), Some((3, 4)));
        assert_eq!(rank_window(5, 0, 0, true), Some((4, 4)));
        assert_eq!(rank_window(5, 3, 1, false), None);
        assert_eq!(rank_window(5, 5, 9, false), None);
        assert_eq!(rank_window(5, -100, 100, true), Some((0, 4)));
    }

    #[test]
    fn scores_keep_their_order_and_minus_zero_is_zero() {
        assert_eq!(
            decoded(&keys::encode_score(-0.0)).to_bits(),
            0.0f64.to_bits()
        );
        assert!(encoded(-1.0) < encoded(0.0) && encoded(0.0) < encoded(f64::INFINITY));
        assert_eq!(decoded(&keys::encode_score(2.5)), 2.5);
    }
}
