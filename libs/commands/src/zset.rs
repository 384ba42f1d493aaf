//! Sorted-set commands: typed forms, parsers and specs.
//!
//! As with the other families, what Redis checks before it looks a key up is checked here
//! (so its errors win over WRONGTYPE); the options of ZUNION/ZINTER/ZDIFF and their STORE
//! forms, which Redis reads only after checking the input keys' types, are kept raw and
//! read by [`combine_options`] in the executor.

use bytes::Bytes;

use crate::blocking::parse_timeout;
use crate::error::CommandError;
use crate::hash::RandFieldCount;
use crate::keyspace::scan_cursor;
use crate::list::{mpop_count, non_negative, numkeys_and_keys, positive_count};
use crate::number::{parse_double, parse_i64, parse_range_double};
use crate::set::SetOp;
use crate::spec::{spec, Access, CommandSpec, TimeoutAt, ALL_BUT_LAST, NO_KEYS, ONE_KEY, TWO_KEYS};

const W: Access = Access::Write;
const R: Access = Access::Read;
const G: &str = "sorted-set";
/// ZUNIONSTORE-style commands: the destination is key 1, the inputs follow `numkeys` at 2.
const DEST_KEY: (i32, i32, i32) = (1, 1, 1);

/// Specs of the sorted-set family.
pub static SPECS: &[CommandSpec] = &[
    spec("zadd", -4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "sortedset", "fast"], G, "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist."),
    spec("zincrby", 4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "sortedset", "fast"], G, "1.2.0", "Increments the score of a member in a sorted set."),
    spec("zrem", -3, W, &["write", "fast"], ONE_KEY, &["write", "sortedset", "fast"], G, "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed."),
    spec("zcard", 2, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "1.2.0", "Returns the number of members in a sorted set."),
    spec("zscore", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "1.2.0", "Returns the score of a member in a sorted set."),
    spec("zmscore", -3, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "6.2.0", "Returns the score of one or more members in a sorted set."),
    spec("zcount", 4, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "2.0.0", "Returns the count of members in a sorted set that have scores within a range."),
    spec("zlexcount", 4, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "2.8.9", "Returns the number of members in a sorted set within a lexicographical range."),
    spec("zrank", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores."),
    spec("zrevrank", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "sortedset", "fast"], G, "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores."),
    spec("zrange", -4, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "1.2.0", "Returns members in a sorted set within a range of indexes."),
    spec("zrangestore", -5, W, &["write", "denyoom"], TWO_KEYS, &["write", "sortedset", "slow"], G, "6.2.0", "Stores a range of members from sorted set in a key."),
    spec("zrevrange", -4, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order."),
    spec("zrangebyscore", -4, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "1.0.5", "Returns members in a sorted set within a range of scores."),
    spec("zrevrangebyscore", -4, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "2.2.0", "Returns members in a sorted set within a range of scores in reverse order."),
    spec("zrangebylex", -4, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "2.8.9", "Returns members in a sorted set within a lexicographical range."),
    spec("zrevrangebylex", -4, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order."),
    spec("zremrangebyrank", 4, W, &["write"], ONE_KEY, &["write", "sortedset", "slow"], G, "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed."),
    spec("zremrangebyscore", 4, W, &["write"], ONE_KEY, &["write", "sortedset", "slow"], G, "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed."),
    spec("zremrangebylex", 4, W, &["write"], ONE_KEY, &["write", "sortedset", "slow"], G, "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed."),
    spec("zpopmin", -2, W, &["write", "fast"], ONE_KEY, &["write", "sortedset", "fast"], G, "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."),
    spec("zpopmax", -2, W, &["write", "fast"], ONE_KEY, &["write", "sortedset", "fast"], G, "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped."),
    spec("zmpop", -4, W, &["write", "movablekeys"], NO_KEYS, &["write", "sortedset", "slow"], G, "7.0.0", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.").with_numkeys_at(1),
    spec("bzpopmin", -3, W, &["write", "noscript", "blocking", "fast"], ALL_BUT_LAST, &["write", "sortedset", "fast", "blocking"], G, "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.").with_timeout_at(TimeoutAt::Last),
    spec("bzpopmax", -3, W, &["write", "noscript", "blocking", "fast"], ALL_BUT_LAST, &["write", "sortedset", "fast", "blocking"], G, "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.").with_timeout_at(TimeoutAt::Last),
    spec("bzmpop", -5, W, &["write", "blocking", "movablekeys"], NO_KEYS, &["write", "sortedset", "slow", "blocking"], G, "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.").with_numkeys_at(2).with_timeout_at(TimeoutAt::Index(1)),
    spec("zrandmember", -2, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "6.2.0", "Returns one or more random members from a sorted set."),
    spec("zunion", -3, R, &["readonly", "movablekeys"], NO_KEYS, &["read", "sortedset", "slow"], G, "6.2.0", "Returns the union of multiple sorted sets.").with_numkeys_at(1),
    spec("zinter", -3, R, &["readonly", "movablekeys"], NO_KEYS, &["read", "sortedset", "slow"], G, "6.2.0", "Returns the intersect of multiple sorted sets.").with_numkeys_at(1),
    spec("zdiff", -3, R, &["readonly", "movablekeys"], NO_KEYS, &["read", "sortedset", "slow"], G, "6.2.0", "Returns the difference between multiple sorted sets.").with_numkeys_at(1),
    spec("zunionstore", -4, W, &["write", "denyoom", "movablekeys"], DEST_KEY, &["write", "sortedset", "slow"], G, "2.0.0", "Stores the union of multiple sorted sets in a key.").with_numkeys_at(2),
    spec("zinterstore", -4, W, &["write", "denyoom", "movablekeys"], DEST_KEY, &["write", "sortedset", "slow"], G, "2.0.0", "Stores the intersect of multiple sorted sets in a key.").with_numkeys_at(2),
    spec("zdiffstore", -4, W, &["write", "denyoom", "movablekeys"], DEST_KEY, &["write", "sortedset", "slow"], G, "6.2.0", "Stores the difference of multiple sorted sets in a key.").with_numkeys_at(2),
    spec("zintercard", -3, R, &["readonly", "movablekeys"], NO_KEYS, &["read", "sortedset", "slow"], G, "7.0.0", "Returns the number of members of the intersect of multiple sorted sets.").with_numkeys_at(1),
    spec("zscan", -3, R, &["readonly"], ONE_KEY, &["read", "sortedset", "slow"], G, "2.8.0", "Iterates over members and scores of a sorted set."),
];

/// One end of a score range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBound {
    /// The score.
    pub value: f64,
    /// `(`: the bound itself is outside the range.
    pub exclusive: bool,
}

/// A score range (`min max` of ZCOUNT, ZRANGEBYSCORE, ...).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    /// Lower end.
    pub min: ScoreBound,
    /// Upper end.
    pub max: ScoreBound,
}

impl ScoreRange {
    /// Parses `min max` as Redis's `zslParseRange` does.
    pub fn parse(min: &[u8], max: &[u8]) -> Result<Self, CommandError> {
        let bound = |s: &[u8]| -> Option<ScoreBound> {
            match s.split_first() {
                Some((b'(', rest)) => Some(ScoreBound {
                    value: parse_range_double(rest)?,
                    exclusive: true,
                }),
                _ => Some(ScoreBound {
                    value: parse_range_double(s)?,
                    exclusive: false,
                }),
            }
        };
        match (bound(min), bound(max)) {
            (Some(min), Some(max)) => Ok(ScoreRange { min, max }),
            _ => Err(CommandError::MinMaxNotFloat),
        }
    }

    /// Whether `score` is at or above the lower end.
    pub fn above_min(&self, score: f64) -> bool {
        if self.min.exclusive {
            score > self.min.value
        } else {
            score >= self.min.value
        }
    }

    /// Whether `score` is at or below the upper end.
    pub fn below_max(&self, score: f64) -> bool {
        if self.max.exclusive {
            score < self.max.value
        } else {
            score <= self.max.value
        }
    }

    /// Whether no score can be in the range.
    pub fn is_empty(&self) -> bool {
        self.min.value > self.max.value
            || (self.min.value == self.max.value && (self.min.exclusive || self.max.exclusive))
    }
}

/// One end of a lexicographical range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    /// `[member`.
    Inclusive(Bytes),
    /// `(member`.
    Exclusive(Bytes),
}

impl LexBound {
    fn parse(s: &Bytes) -> Option<Self> {
        match s.first() {
            Some(b'-') if s.len() == 1 => Some(LexBound::Min),
            Some(b'+') if s.len() == 1 => Some(LexBound::Max),
            Some(b'[') => Some(LexBound::Inclusive(s.slice(1..))),
            Some(b'(') => Some(LexBound::Exclusive(s.slice(1..))),
            _ => None,
        }
    }
}

/// A lexicographical range (`min max` of ZLEXCOUNT, ZRANGEBYLEX, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    /// Lower end.
    pub min: LexBound,
    /// Upper end.
    pub max: LexBound,
}

impl LexRange {
    /// Parses `min max` as Redis's `zslParseLexRange` does.
    pub fn parse(min: &Bytes, max: &Bytes) -> Result<Self, CommandError> {
        match (LexBound::parse(min), LexBound::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(CommandError::MinMaxNotString),
        }
    }

    /// Whether no member can be in the range (Redis's test: the lower end above the upper
    /// one, or both the same and either exclusive).
    pub fn is_empty(&self) -> bool {
        use std::cmp::Ordering;
        let value = |b: &LexBound| match b {
            LexBound::Min => (0, None),
            LexBound::Max => (2, None),
            LexBound::Inclusive(m) | LexBound::Exclusive(m) => (1, Some(m.clone())),
        };
        let exclusive = |b: &LexBound| matches!(b, LexBound::Exclusive(_));
        match value(&self.min).cmp(&value(&self.max)) {
            Ordering::Greater => true,
            Ordering::Equal => exclusive(&self.min) || exclusive(&self.max),
            Ordering::Less => false,
        }
    }

    /// Whether `member` is at or above the lower end.
    pub fn above_min(&self, member: &[u8]) -> bool {
        match &self.min {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Inclusive(m) => member >= &m[..],
            LexBound::Exclusive(m) => member > &m[..],
        }
    }

    /// Whether `member` is at or below the upper end.
    pub fn below_max(&self, member: &[u8]) -> bool {
        match &self.max {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Inclusive(m) => member <= &m[..],
            LexBound::Exclusive(m) => member < &m[..],
        }
    }
}

/// What a range selects by.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeBy {
    /// Ranks `start..=stop` (negative counts from the end).
    Rank(i64, i64),
    /// Scores.
    Score(ScoreRange),
    /// Members, byte-wise (for members of equal scores).
    Lex(LexRange),
}

/// A ZRANGE-family query.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    /// What to select by.
    pub by: RangeBy,
    /// Highest scores first (the range's ends are then given high end first).
    pub rev: bool,
    /// LIMIT offset count (count < 0: no limit).
    pub limit: Option<(i64, i64)>,
    /// Include the scores.
    pub with_scores: bool,
}

/// How ZUNION/ZINTER combine the scores of a member found in several inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// The weighted sum.
    Sum,
    /// The smallest weighted score.
    Min,
    /// The largest weighted score.
    Max,
}

/// ZUNION/ZINTER/ZDIFF options, read after the input keys' types are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CombineOptions {
    /// One weight per input (1 by default).
    pub weights: Vec<f64>,
    /// How scores combine.
    pub aggregate: Aggregate,
    /// Include the scores (not with a destination).
    pub with_scores: bool,
}

/// Reads ZUNION/ZINTER/ZDIFF options for `inputs` keys (`store`: a STORE form, which has
/// no WITHSCORES; ZDIFF has neither WEIGHTS nor AGGREGATE).
pub fn combine_options(
    op: SetOp,
    inputs: usize,
    store: bool,
    mut rest: &[Bytes],
) -> Result<CombineOptions, CommandError> {
    let mut opts = CombineOptions {
        weights: vec![1.0; inputs],
        aggregate: Aggregate::Sum,
        with_scores: false,
    };
    while let Some((opt, tail)) = rest.split_first() {
        let weighted = op != SetOp::Diff;
        if weighted && tail.len() >= inputs && opt.eq_ignore_ascii_case(b"weights") {
            for (w, arg) in opts.weights.iter_mut().zip(tail) {
                *w = parse_double(arg).ok_or(CommandError::WeightNotFloat)?;
            }
            rest = &tail[inputs..];
        } else if weighted && !tail.is_empty() && opt.eq_ignore_ascii_case(b"aggregate") {
            let how = &tail[0];
            opts.aggregate = if how.eq_ignore_ascii_case(b"sum") {
                Aggregate::Sum
            } else if how.eq_ignore_ascii_case(b"min") {
                Aggregate::Min
            } else if how.eq_ignore_ascii_case(b"max") {
                Aggregate::Max
            } else {
                return Err(CommandError::Syntax);
            };
            rest = &tail[1..];
        } else if !store && opt.eq_ignore_ascii_case(b"withscores") {
            opts.with_scores = true;
            rest = tail;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(opts)
}

/// Reads ZINTERCARD's `[LIMIT n]` (0 = no limit), after the input keys' types are checked.
pub fn intercard_limit(mut rest: &[Bytes]) -> Result<u64, CommandError> {
    let mut limit = 0;
    while let Some((opt, tail)) = rest.split_first() {
        match tail.split_first() {
            Some((value, tail)) if opt.eq_ignore_ascii_case(b"limit") => {
                limit = non_negative(value, CommandError::LimitNegative)?;
                rest = tail;
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(limit)
}

/// ZADD's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddFlags {
    /// Only add new members.
    pub nx: bool,
    /// Only update existing members.
    pub xx: bool,
    /// Only update when the new score is greater.
    pub gt: bool,
    /// Only update when the new score is less.
    pub lt: bool,
    /// Count changed members too.
    pub ch: bool,
    /// Increment (one pair only); reply with the new score.
    pub incr: bool,
}

/// A sorted-set command that only reads (served from a replica's state, never replicated).
#[derive(Debug, Clone, PartialEq)]
pub enum ZsetRead {
    /// ZCARD key
    Card(Bytes),
    /// ZSCORE key member
    Score(Bytes, Bytes),
    /// ZMSCORE key member...
    MScore(Bytes, Vec<Bytes>),
    /// ZCOUNT key min max
    Count(Bytes, ScoreRange),
    /// ZLEXCOUNT key min max
    LexCount(Bytes, LexRange),
    /// ZRANK / ZREVRANK key member
    Rank(Bytes, Bytes, bool),
    /// ZRANGE and its older forms
    Range(Bytes, RangeQuery),
    /// `ZRANDMEMBER key [count [WITHSCORES]]`
    RandMember(Bytes, RandFieldCount),
    /// `ZUNION/ZINTER/ZDIFF numkeys key... [options]`; options raw (see [`combine_options`]).
    Combine(SetOp, Vec<Bytes>, Vec<Bytes>),
    /// `ZINTERCARD numkeys key... [LIMIT n]`; options raw (see [`intercard_limit`]).
    InterCard(Vec<Bytes>, Vec<Bytes>),
    /// `ZSCAN key cursor [MATCH p] [COUNT n]`; options raw, as for HSCAN.
    Scan(Bytes, u64, Vec<Bytes>),
}

/// A sorted-set command that writes (replicated through raft).
#[derive(Debug, Clone, PartialEq)]
pub enum ZsetWrite {
    /// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member ...` and ZINCRBY (INCR).
    Add {
        /// Key.
        key: Bytes,
        /// Flags.
        flags: AddFlags,
        /// (score, member) pairs.
        pairs: Vec<(f64, Bytes)>,
    },
    /// ZREM key member...
    Rem(Bytes, Vec<Bytes>),
    /// ZRANGESTORE dst src ...
    RangeStore(Bytes, Bytes, RangeQuery),
    /// ZREMRANGEBYRANK/SCORE/LEX key a b
    RemRange(Bytes, RangeBy),
    /// `ZPOPMIN/ZPOPMAX key [count]`: whether the highest scores, and the count if given.
    Pop(Bytes, bool, Option<u64>),
    /// `ZMPOP numkeys key... MIN|MAX [COUNT n]` (and BZMPOP's)
    MPop(Vec<Bytes>, bool, u64),
    /// `BZPOPMIN/BZPOPMAX key... timeout` as it runs once (inside MULTI, or each time a
    /// blocked client tries): the lowest (highest: true) member of the first non-empty
    /// sorted set, with its key and score.
    BPop(Vec<Bytes>, bool),
    /// `ZUNIONSTORE/ZINTERSTORE/ZDIFFSTORE dst numkeys key... [options]`
    Store(SetOp, Bytes, Vec<Bytes>, Vec<Bytes>),
}

/// A typed sorted-set command.
#[derive(Debug, Clone, PartialEq)]
pub enum ZsetCommand {
    /// Reads only: the type says which executor may run it.
    Read(ZsetRead),
    /// Writes.
    Write(ZsetWrite),
}

/// What a ZRANGE-family command fixes before its options.
#[derive(Clone, Copy, PartialEq)]
enum Preset {
    /// ZRANGE/ZRANGESTORE: BYSCORE/BYLEX/REV come from the options.
    Any,
    /// ZREVRANGE and the BYSCORE/BYLEX commands.
    Fixed(Kind, bool),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Rank,
    Score,
    Lex,
}

/// Parses `start stop [options]` of a ZRANGE-family command, in Redis's order: options,
/// then their conflicts, then the range itself.
fn range_query(args: &[Bytes], preset: Preset, store: bool) -> Result<RangeQuery, CommandError> {
    let (mut kind, mut rev) = match preset {
        Preset::Any => (None, None),
        Preset::Fixed(kind, rev) => (Some(kind), Some(rev)),
    };
    let mut with_scores = false;
    let mut limit = None;
    let mut j = 2;
    while j < args.len() {
        let opt = &args[j];
        let left = args.len() - j - 1;
        if !store && opt.eq_ignore_ascii_case(b"withscores") {
            with_scores = true;
        } else if opt.eq_ignore_ascii_case(b"limit") && left >= 2 {
            let offset = parse_i64(&args[j + 1]).ok_or(CommandError::NotInteger)?;
            let count = parse_i64(&args[j + 2]).ok_or(CommandError::NotInteger)?;
            limit = Some((offset, count));
            j += 2;
        } else if rev.is_none() && opt.eq_ignore_ascii_case(b"rev") {
            rev = Some(true);
        } else if kind.is_none() && opt.eq_ignore_ascii_case(b"bylex") {
            kind = Some(Kind::Lex);
        } else if kind.is_none() && opt.eq_ignore_ascii_case(b"byscore") {
            kind = Some(Kind::Score);
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    let kind = kind.unwrap_or(Kind::Rank);
    let rev = rev.unwrap_or(false);
    // Redis takes a LIMIT whose count is -1 for no LIMIT at all.
    if limit.is_some_and(|(_, count)| count != -1) && kind == Kind::Rank {
        return Err(CommandError::LimitNeedsByScoreOrLex);
    }
    if with_scores && kind == Kind::Lex {
        return Err(CommandError::WithScoresWithByLex);
    }
    // Reversed score and lex ranges are written high end first.
    let (lo, hi) = if rev && kind != Kind::Rank {
        (&args[1], &args[0])
    } else {
        (&args[0], &args[1])
    };
    let by = match kind {
        Kind::Rank => RangeBy::Rank(
            parse_i64(lo).ok_or(CommandError::NotInteger)?,
            parse_i64(hi).ok_or(CommandError::NotInteger)?,
        ),
        Kind::Score => RangeBy::Score(ScoreRange::parse(lo, hi)?),
        Kind::Lex => RangeBy::Lex(LexRange::parse(lo, hi)?),
    };
    Ok(RangeQuery {
        by,
        rev,
        limit: limit.filter(|_| kind != Kind::Rank),
        with_scores,
    })
}

/// Reads ZADD's flags and pairs (`args` after the key).
fn add(args: &[Bytes]) -> Result<(AddFlags, Vec<(f64, Bytes)>), CommandError> {
    let mut f = AddFlags::default();
    let mut at = 0;
    while let Some(opt) = args.get(at) {
        let flag = match opt.to_ascii_lowercase().as_slice() {
            b"nx" => &mut f.nx,
            b"xx" => &mut f.xx,
            b"gt" => &mut f.gt,
            b"lt" => &mut f.lt,
            b"ch" => &mut f.ch,
            b"incr" => &mut f.incr,
            _ => break,
        };
        *flag = true;
        at += 1;
    }
    let rest = &args[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    if f.nx && f.xx {
        return Err(CommandError::ZaddXxNx);
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(CommandError::ZaddGtLtNx);
    }
    if f.incr && rest.len() > 2 {
        return Err(CommandError::ZaddIncrPairs);
    }
    let pairs = rest
        .chunks(2)
        .map(|p| {
            Ok((
                parse_double(&p[0]).ok_or(CommandError::NotFloat)?,
                p[1].clone(),
            ))
        })
        .collect::<Result<_, CommandError>>()?;
    Ok((f, pairs))
}

/// Parses `numkeys key...` of ZUNION-style commands: the keys and the options after them.
fn combine_keys(name: &str, args: &[Bytes]) -> Result<(Vec<Bytes>, Vec<Bytes>), CommandError> {
    let n = parse_i64(&args[0]).ok_or(CommandError::NotInteger)?;
    if n < 1 {
        return Err(CommandError::NoInputKeys(name.to_string()));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > args.len() - 1 {
        return Err(CommandError::Syntax);
    }
    Ok((args[1..=n].to_vec(), args[n + 1..].to_vec()))
}

fn set_op(name: &str) -> SetOp {
    match &name[..5] {
        "zunio" => SetOp::Union,
        "zinte" => SetOp::Inter,
        _ => SetOp::Diff,
    }
}

/// MIN or MAX, in any case.
fn min_or_max(arg: &[u8]) -> Result<bool, CommandError> {
    if arg.eq_ignore_ascii_case(b"min") {
        Ok(false)
    } else if arg.eq_ignore_ascii_case(b"max") {
        Ok(true)
    } else {
        Err(CommandError::Syntax)
    }
}

impl ZsetCommand {
    /// Parses a sorted-set command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        let key = || args[0].clone();
        Ok(match name {
            "zadd" => {
                let (flags, pairs) = add(&args[1..])?;
                ZsetCommand::Write(ZsetWrite::Add {
                    key: key(),
                    flags,
                    pairs,
                })
            }
            "zincrby" => ZsetCommand::Write(ZsetWrite::Add {
                key: key(),
                flags: AddFlags {
                    incr: true,
                    ..AddFlags::default()
                },
                pairs: vec![(
                    parse_double(&args[1]).ok_or(CommandError::NotFloat)?,
                    args[2].clone(),
                )],
            }),
            "zrem" => ZsetCommand::Write(ZsetWrite::Rem(key(), args[1..].to_vec())),
            "zcard" => ZsetCommand::Read(ZsetRead::Card(key())),
            "zscore" => ZsetCommand::Read(ZsetRead::Score(key(), args[1].clone())),
            "zmscore" => ZsetCommand::Read(ZsetRead::MScore(key(), args[1..].to_vec())),
            "zcount" => ZsetCommand::Read(ZsetRead::Count(
                key(),
                ScoreRange::parse(&args[1], &args[2])?,
            )),
            "zlexcount" => ZsetCommand::Read(ZsetRead::LexCount(
                key(),
                LexRange::parse(&args[1], &args[2])?,
            )),
            "zrank" | "zrevrank" => {
                ZsetCommand::Read(ZsetRead::Rank(key(), args[1].clone(), name == "zrevrank"))
            }
            "zrange" => ZsetCommand::Read(ZsetRead::Range(
                key(),
                range_query(&args[1..], Preset::Any, false)?,
            )),
            "zrevrange" => ZsetCommand::Read(ZsetRead::Range(
                key(),
                range_query(&args[1..], Preset::Fixed(Kind::Rank, true), false)?,
            )),
            "zrangebyscore" | "zrevrangebyscore" | "zrangebylex" | "zrevrangebylex" => {
                let kind = if name.ends_with("score") {
                    Kind::Score
                } else {
                    Kind::Lex
                };
                let preset = Preset::Fixed(kind, name.starts_with("zrev"));
                ZsetCommand::Read(ZsetRead::Range(
                    key(),
                    range_query(&args[1..], preset, false)?,
                ))
            }
            "zrangestore" => ZsetCommand::Write(ZsetWrite::RangeStore(
                key(),
                args[1].clone(),
                range_query(&args[2..], Preset::Any, true)?,
            )),
            "zremrangebyrank" => ZsetCommand::Write(ZsetWrite::RemRange(
                key(),
                RangeBy::Rank(
                    parse_i64(&args[1]).ok_or(CommandError::NotInteger)?,
                    parse_i64(&args[2]).ok_or(CommandError::NotInteger)?,
                ),
            )),
            "zremrangebyscore" => ZsetCommand::Write(ZsetWrite::RemRange(
                key(),
                RangeBy::Score(ScoreRange::parse(&args[1], &args[2])?),
            )),
            "zremrangebylex" => ZsetCommand::Write(ZsetWrite::RemRange(
                key(),
                RangeBy::Lex(LexRange::parse(&args[1], &args[2])?),
            )),
            "zpopmin" | "zpopmax" => {
                let count = match &args[1..] {
                    [] => None,
                    [c] => Some(positive_count(c)?),
                    _ => return Err(CommandError::Syntax),
                };
                ZsetCommand::Write(ZsetWrite::Pop(key(), name == "zpopmax", count))
            }
            "zmpop" | "bzmpop" => {
                let blocking = name == "bzmpop";
                let (keys, rest) =
                    numkeys_and_keys(&args[usize::from(blocking)..], 1, CommandError::Syntax)?;
                let max = min_or_max(&rest[0])?;
                let count = mpop_count(&rest[1..])?;
                if blocking {
                    // Checked after the other arguments, as Redis does.
                    parse_timeout(&args[0])?;
                }
                ZsetCommand::Write(ZsetWrite::MPop(keys, max, count))
            }
            "bzpopmin" | "bzpopmax" => {
                let (timeout, keys) = args.split_last().expect("arity checked");
                parse_timeout(timeout)?;
                ZsetCommand::Write(ZsetWrite::BPop(keys.to_vec(), name == "bzpopmax"))
            }
            "zrandmember" => ZsetCommand::Read(ZsetRead::RandMember(
                key(),
                crate::hash::rand_count(&args[1..], b"withscores")?,
            )),
            "zunion" | "zinter" | "zdiff" => {
                let (keys, opts) = combine_keys(name, args)?;
                ZsetCommand::Read(ZsetRead::Combine(set_op(name), keys, opts))
            }
            "zunionstore" | "zinterstore" | "zdiffstore" => {
                let (keys, opts) = combine_keys(name, &args[1..])?;
                ZsetCommand::Write(ZsetWrite::Store(set_op(name), key(), keys, opts))
            }
            "zintercard" => {
                let (keys, opts) = combine_keys(name, args)?;
                ZsetCommand::Read(ZsetRead::InterCard(keys, opts))
            }
            "zscan" => ZsetCommand::Read(ZsetRead::Scan(
                key(),
                scan_cursor(&args[1])?,
                args[2..].to_vec(),
            )),
            _ => unreachable!("sorted-set family dispatched an unknown name: {name}"),
        })
    }
}
