//! Differential test for the list, set and sorted-set commands: seeded random command
//! sequences run against a fresh `redis-server` (7.0, the reference) and a fresh zankv node,
//! comparing every reply, in RESP2, in RESP3 (HELLO 3 on both connections) and pipelined.
//!
//! The generator mixes list commands (LPUSH ... LMPOP), set commands (SADD ... SSCAN),
//! sorted-set commands (ZADD ... ZSCAN, about a third of all commands, and OBJECT ENCODING)
//! and the generic commands that touch any key (TYPE, DEL, EXISTS, EXPIRE, TTL, PTTL,
//! PERSIST, RENAME, RENAMENX, COPY, SCAN with TYPE, DBSIZE, KEYS), plus a few string and hash
//! writes and reads on the same keys, so that WRONGTYPE happens in all directions. The key
//! space is small (`l0`, `l1`, `s0`, `s1`, `z0`, `z1`, `x` and one binary key shared by lists
//! and sets): each family's commands prefer their own keys, but now and then take any key.
//! Elements and members come from a small pool (with an empty string, a binary string and
//! integer-looking strings), so duplicates, collisions and Redis's intset encoding all occur.
//!
//! Sorted sets: members come from their own small pool (`a`..`d`, `""`, `1`, `10`) and
//! scores from a pool that exercises formatting and ordering (integers, `1.5`, `0.1`, which
//! prints as `0.10000000000000001`, `1e300`, `-0`, `inf`, `+inf`, `-inf`, `0x10`) with some
//! invalid ones (`nan`, `abc`, `""`, `" 1"`). Many ZADDs give one score to all their members
//! (`z0` mostly gets score 0), so the lex commands (ZRANGEBYLEX ...), which assume equal
//! scores, have real work; with mixed scores both servers walk the set as Redis's listpack
//! encoding does (the sets stay far below 128 members, so Redis keeps that encoding). Score
//! bounds (`-inf`, `(1`, `(inf`, invalid `x`, `((1` ...), lex bounds (`-`, `+`, `[a`, `(b`,
//! `[`, `(`, invalid `a` ...), ZRANGE's BYSCORE/BYLEX/REV/LIMIT/WITHSCORES in any order,
//! ZADD's NX/XX/GT/LT/CH/INCR in any combination, and ZUNION/ZINTER/ZDIFF (and their STORE
//! forms and ZINTERCARD), which also take plain sets as inputs (score 1), with WEIGHTS (`2`,
//! `0.5`, `-1`, `inf` for the inf*0 = 0 rule, invalid `x`) and AGGREGATE SUM/MIN/MAX/bad.
//! ZMPOP and ZINTERCARD get the same numkeys edge cases (0, `x`, more than given) as LMPOP.
//!
//! SORT and SORT_RO (about 4% of commands) sort the list, set and sorted-set keys, a list of
//! numbers `n` (strtod spellings: `" 3"`, `1e3`, `0x10`, `-0`, `""`, `inf`, rarely `nan`
//! ...), the store target `st`, and now and then a weight string or object hash (WRONGTYPE)
//! or a missing key. Their BY and GET patterns (`w_*`, `o_*->f`, `o_*->g`, `*`, `missing_*`,
//! `w_*->`, `#`, `nostar`; BY `nosort`, `#`, `""` without `*`) find the weight strings
//! `w_<element>` and object hashes `o_<element>` that a few MSET, HSET and DEL commands
//! write for some elements (mostly numbers with ties, a few non-numbers, now and then the
//! other type). Options come in any order, some twice (the last LIMIT wins, any BY without
//! `*` stops sorting), with LIMIT offsets and counts from 0, 1, 2, -1, 5, 100, `x`, GET
//! repeated, STORE into `st`, a key of the key space, the sorted key or a weight key, and
//! syntax errors (an unknown word, LIMIT with one argument, STORE in SORT_RO). The
//! comparison is exact, except where Redis's order is not determined (see [`sort_plan`]):
//! a set's own order, when it shows, is compared as rows in any order. Redis turns a sorted
//! set it sorts into a skiplist for good; the harness restores its listpack (DUMP and
//! RESTORE), see [`relist_zset`]. ALPHA assumes redis-server collates bytes in order (the C
//! or C.UTF-8 locale).
//!
//! What is compared, and why some replies are normalised first:
//! - Most replies must be identical, error texts included; ZRANGE and friends, ZPOP*,
//!   ZMPOP, ZUNION/ZINTER/ZDIFF in their exact order (score, then member).
//! - SMEMBERS, SINTER, SUNION, SDIFF, KEYS: multisets (the kind of aggregate, array or
//!   RESP3 set, must still match).
//! - TTL (±1 s) and PTTL (±1500 ms) when both are non-negative.
//! - SCAN/SSCAN/ZSCAN: each server is iterated from cursor 0 to the end; the *sets* of keys
//!   (members, (member, score) pairs) must match. Cursors themselves are never compared.
//! - OBJECT ENCODING: both servers are asked TYPE first and the command is skipped for sets,
//!   whose Redis encoding depends on history (it never goes back to intset). Not pipelined.
//! - SORT/SORT_RO: both servers are asked TYPE first; for a set, replies that show its own
//!   order are compared as rows in any order (or by length when LIMIT picks a window), and a
//!   STORE that would store it is skipped. In pipelines, without TYPE, a SORT is judged as if
//!   the key were a set (such a STORE is left out), and ends its pipeline.
//!
//! Randomness:
//! - SRANDMEMBER: same reply shape on both (nil, bulk, or an array of the same length), and
//!   every returned member belongs to the set on the server that returned it; with a
//!   non-negative count, members are distinct and there are min(count, SCARD) of them;
//!   with a negative count there are |count| (or none for a missing key).
//! - ZRANDMEMBER: the same, against ZCARD and ZSCORE on the server that replied: every
//!   member has a score there and, with WITHSCORES, the returned score is ZSCORE's reply.
//! - SPOP: popping a random subset would leave the two servers with different sets, so the
//!   harness asks both servers for SCARD first and skips (does not send) any SPOP that
//!   could pop fewer members than the set holds. Everything else is deterministic: a count
//!   of at least SCARD (pops all: compared as a multiset), a count of 0, a negative or
//!   non-integer count, extra arguments, a missing or wrongly typed key. In pipelines the
//!   harness cannot ask first, so only SPOPs that are deterministic whatever the state
//!   (a count above any possible set size, or an error) are sent. (ZPOPMIN, ZPOPMAX and
//!   ZMPOP are deterministic.)
//!
//! Time rules, as in `differential.rs`: relative expirations are either ≥ 100 s (every one a
//! distinct multiple of 100 s, so GT/LT are never near a tie) or already in the past (the
//! key is deleted); no key is ever meant to expire during a run.
//!
//! Wrong arity and syntax errors come from mutating generated commands (dropping the last
//! argument or appending a junk one) besides the invalid options and numbers generated on
//! purpose. After the last command of a seed the whole database is compared: KEYS, DBSIZE,
//! and per key TYPE, contents (LRANGE 0 -1 exactly for lists, SMEMBERS as a multiset for
//! sets, ZRANGE 0 -1 WITHSCORES exactly for sorted sets, GET for strings, HGETALL pairs for
//! hashes) and PTTL.
//!
//! On a mismatch the panic names the seed, the command index, the command (escaped), both
//! replies and the commands before it. `ZANKV_DIFF_SEED=N` runs only seed N (in RESP2,
//! RESP3 and pipelined); a seed that once failed belongs in [`REGRESSION_SEEDS`].
//! `ZANKV_DIFF_STATS=1` prints, per seed, how often each command ran and which errors it
//! met (with `--nocapture`), to check that the generator still reaches the commands' work.
//!
//! What this test shares with `differential.rs` (the random primitives, the pair of servers,
//! reports, stats, the final comparison, pipelines) is in `support/diff.rs`.

mod support;

use std::collections::HashSet;
use std::time::Instant;

use support::diff::{self, b, judge_random, must_start_pair_on, sorted_items, sorted_pairs};
use support::diff::{seed_from_env, Rand, RandomCheck, RunLog, Suite, Target, JUNK};
use support::{show_cmd, Client, Frame};

/// How this test names itself in its reports; it skips some commands (SPOP, OBJECT
/// ENCODING, SORT ... STORE, see [`Check`]).
const SUITE: Suite = Suite {
    name: "collections differential",
    target: "collections_differential",
    skips: true,
};

/// Seeds run on every `cargo test`, in RESP2.
const FIXED_SEEDS: [u64; 12] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// Seeds that once found a bug: kept forever (run with the fixed seeds): 578 (-0 and 0 tie
/// in ZUNION's order), 11773971471019068315 (a NaN product of ZINTERSTORE's later inputs
/// reaches the sum), 16120663839084848775 (ZRANGEBYLEX's LIMIT offset skips members past
/// the upper end in a set of mixed scores).
const REGRESSION_SEEDS: &[u64] = &[578, 11773971471019068315, 16120663839084848775];

/// Seeds for the RESP3 run.
const RESP3_SEEDS: [u64; 4] = [101, 102, 103, 104];

/// Seeds for the pipelined run (RESP2).
const PIPELINED_SEEDS: [u64; 2] = [11, 12];

/// Commands per RESP2 seed.
const OPS_PER_SEED: usize = 400;

/// Commands per RESP3 seed.
const OPS_PER_RESP3_SEED: usize = 250;

/// Commands per pipelined seed.
const OPS_PER_PIPELINED_SEED: usize = 400;

/// Commands per pipeline.
const PIPELINE_CHUNK: usize = 16;

/// Commands per run through the proxy.
const OPS_THROUGH_PROXY: usize = 200;

/// The binary key, shared by the list and the set families.
const BINARY_KEY: &[u8] = b"b\x00\r\n";

/// The key space: small, so commands collide.
const KEYS: [&[u8]; 8] = [b"l0", b"l1", b"s0", b"s1", b"z0", b"z1", b"x", BINARY_KEY];

/// Keys list commands prefer.
const LIST_KEYS: [&[u8]; 3] = [b"l0", b"l1", BINARY_KEY];

/// Keys set commands prefer.
const SET_KEYS: [&[u8]; 3] = [b"s0", b"s1", BINARY_KEY];

/// Keys sorted-set commands prefer. `z0` mostly gets equal scores (for the lex commands),
/// `z1` mostly mixed ones.
const ZSET_KEYS: [&[u8]; 2] = [b"z0", b"z1"];

/// Percentage of list/set/zset/string/hash commands that pick any key instead of their family's.
const CROSS_FAMILY_PERCENT: u32 = 15;

/// List elements and set members: small, with integer-looking, empty and binary ones. The
/// binary one ends with its NUL: SORT ... ALPHA compares C strings (strcoll) in Redis, under
/// which `\x00\xff` would equal `""`.
const MEMBERS: [&[u8]; 9] = [b"a", b"b", b"c", b"1", b"2", b"10", b"-5", b"", b"\xff\x00"];

/// Sorted-set members: small, with an empty and integer-looking ones.
const ZMEMBERS: [&[u8]; 7] = [b"a", b"b", b"c", b"d", b"", b"1", b"10"];

/// Valid scores other than small integers: formatting (`0.1` prints as
/// 0.10000000000000001, `1e300` as 1.0000000000000001e+300, `-0`), infinities and hex.
const ODD_SCORES: &[&str] = &[
    "1.5", "-2.5", "0.1", "1e300", "-0", "inf", "-inf", "+inf", "0x10",
];

/// Scores Redis refuses ("ERR value is not a valid float").
const BAD_SCORES: &[&str] = &["nan", "abc", "", " 1"];

/// Score range bounds other than small integers.
const ODD_SCORE_BOUNDS: &[&str] = &[
    "-inf", "+inf", "inf", "(1", "(1.5", "2", "1.5", "(-2.5", "0.1", "(0.1", "(inf", "(-inf",
    "1e300", "(1e300", "-0", "(0", "0x10",
];

/// Score range bounds drawn rarely: odd spellings Redis's strtod takes (`(` and `""` are
/// both 0, `" 1"` is 1, `1e400` is inf) and invalid ones.
const RARE_SCORE_BOUNDS: &[&str] = &["(", "", " 1", "1e400", "x", "((1", "nan", "(nan", "1x"];

/// ZUNION/ZINTER/ZUNIONSTORE/ZINTERSTORE weights; `inf` times a score of 0 is 0.
const WEIGHTS: &[&str] = &["1", "2", "0.5", "-1", "inf", "-inf", "0", "1.5"];

/// No set can ever hold more members than this: members come from [`MEMBERS`] or, through
/// a mutation of SADD/SMOVE, from [`JUNK`]. An SPOP count at least this large pops every
/// member whatever the state.
const MAX_SET_CARD: usize = MEMBERS.len() + JUNK.len();

/// Hash fields for the few hash commands.
const FIELDS: [&[u8]; 3] = [b"f0", b"f1", b""];

/// String values for SET and HSET.
const VALUES: &[&str] = &["v", "1", "", "hello world", "-5"];

/// SCAN MATCH patterns over the key space.
const KEY_PATTERNS: &[&[u8]] = &[
    b"*", b"l*", b"s?", b"*0", b"*1", b"b*", b"x", b"[ls]0", b"?", b"", b"b\x00*", b"z*", b"[sz]?",
];

/// SSCAN MATCH patterns over the members.
const MEMBER_PATTERNS: &[&[u8]] = &[
    b"*", b"a*", b"?", b"1*", b"[ab]", b"*0", b"", b"*\x00", b"[^a]", b"1?", b"-*",
];

/// Large or extreme LRANGE/LTRIM bounds and LINDEX/LSET indexes.
const BIG_INDEXES: &[&str] = &["100", "-100", "9223372036854775807", "-9223372036854775808"];

/// A list of numbers for SORT (outside the key space): what Redis's strtod takes, with ties
/// (`""`, `-0` and `0` are all 0; `" 3"` and `3` are 3) and, rarely, what it refuses.
const NUMBERS_KEY: &[u8] = b"n";

/// Where SORT ... STORE writes when it does not write into the key space (or the sorted key).
const STORE_KEY: &[u8] = b"st";

/// Elements of [`NUMBERS_KEY`].
const NUMBERS: &[&str] = &[
    "1", "2", "3", "10", "-5", "0", "-0", "1.5", " 3", "1e3", "inf", "-inf", "0x10", "",
];

/// Elements of [`NUMBERS_KEY`] that are not numbers to Redis's strtod.
const BAD_NUMBERS: &[&str] = &["3 ", "nan", "x", "1,5"];

/// Elements that SORT's BY and GET patterns can find keys for: the weight strings
/// `w_<element>` and the object hashes `o_<element>` (fields `f` and `g`) that a few MSET,
/// HSET and DEL commands write. Other elements (`\xff\x00`, junk) never have any.
const WEIGHTED: [&[u8]; 11] = [
    b"a", b"b", b"c", b"d", b"1", b"2", b"3", b"10", b"-5", b"", b"1.5",
];

/// Weights and object fields: mostly numbers, with ties, as strtod reads them.
const WEIGHT_VALUES: &[&str] = &[
    "1", "2", "3", "-1", "0", "-0", "1.5", "10", "1e3", "inf", "-inf", " 2", "0x10", "", "2", "1",
];

/// Weights that are not numbers: a numeric sort by them is an error.
const BAD_WEIGHTS: &[&str] = &["a", "b", "2x", "nan"];

/// SORT BY patterns with a `*` (sorting by what they find; `w_*->f` and `o_*` look for the
/// wrong type, `w_*->` has an empty field so it names the key `w_<element>->`).
const SORT_BY_PATTERNS: &[&str] = &[
    "w_*",
    "w_*",
    "w_*",
    "o_*->f",
    "o_*->f",
    "o_*->g",
    "missing_*",
    "*",
    "w_*->f",
    "o_*",
    "w_*->",
];

/// SORT BY patterns without a `*`: no sorting at all.
const NO_SORT_PATTERNS: &[&str] = &["nosort", "#", "w_a", ""];

/// SORT GET patterns (`#` is the element; `nostar` finds nothing).
const SORT_GET_PATTERNS: &[&str] = &[
    "#",
    "#",
    "w_*",
    "w_*",
    "o_*->f",
    "o_*->g",
    "missing_*",
    "nostar",
    "o_*->",
    "*",
    "w_*->f",
];

/// How a reply pair is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    Exact,
    /// Array/set elements as a multiset.
    Unordered,
    /// Integers within ± the given amount when both are ≥ 0.
    Tolerance(i64),
    /// Full SCAN iteration (cursor is argument 1).
    Scan,
    /// Full SSCAN iteration (cursor is argument 2).
    SScan,
    /// SRANDMEMBER: shape and membership.
    SRandMember,
    /// SPOP: skipped when it could pop a random subset, else compared as a multiset.
    SPop,
    /// Full ZSCAN iteration (cursor is argument 2), as (member, score) pairs.
    ZScan,
    /// ZRANDMEMBER: shape, membership and scores.
    ZRandMember,
    /// OBJECT ENCODING (key is argument 2): skipped when the key holds a set.
    Encoding,
    /// SORT and SORT_RO: exact unless the key's own order shows (see [`sort_plan`]).
    Sort(SortPlan),
}

/// How a SORT or SORT_RO reply is judged, by the type of the sorted key (asked first).
#[derive(Clone, Copy, Debug, PartialEq)]
struct SortPlan {
    /// Values per element in the reply: the number of GETs, or 1.
    row: usize,
    /// When the key holds a set.
    on_set: SortVerdict,
    /// When the key holds a sorted set: Redis feeds SORT its members in hash order, which
    /// shows where ALPHA BY values tie (its own order, with BY nosort, is by score).
    on_zset: SortVerdict,
    /// When the key holds anything else or nothing.
    on_other: SortVerdict,
}

impl SortPlan {
    /// The verdict when the key's type is not known (in pipelines).
    fn loosest(self) -> SortVerdict {
        self.on_set.max(self.on_zset).max(self.on_other)
    }
}

/// From the strictest to the loosest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SortVerdict {
    /// Identical replies.
    Exact,
    /// The same rows (an element's values) in any order.
    Rows,
    /// As many values (which elements are in the window depends on the order).
    Count,
    /// Not sent: it would store a list whose order differs.
    Skip,
}

struct Step {
    args: Vec<Vec<u8>>,
    check: Check,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    // Lists.
    LPush,
    RPush,
    LPushX,
    RPushX,
    LPop,
    RPop,
    LLen,
    LIndex,
    LSet,
    LRange,
    LTrim,
    LInsert,
    LRem,
    LPos,
    LMove,
    RPopLPush,
    LMPop,
    // Sets.
    SAdd,
    SRem,
    SCard,
    SIsMember,
    SMIsMember,
    SMembers,
    SRandMember,
    SPop,
    SMove,
    SInter,
    SUnion,
    SDiff,
    SInterStore,
    SUnionStore,
    SDiffStore,
    SInterCard,
    SScan,
    SScanBadCursor,
    // Sorted sets.
    ZAdd,
    ZIncrBy,
    ZRem,
    ZCard,
    ZCount,
    ZLexCount,
    ZScore,
    ZMScore,
    ZRank,
    ZRange,
    ZRangeStore,
    ZRevRange,
    ZRangeByScore,
    ZRangeByLex,
    ZRemRangeByRank,
    ZRemRangeByScore,
    ZRemRangeByLex,
    ZPop,
    ZMPop,
    ZRandMember,
    ZSetOp,
    ZSetOpStore,
    ZInterCard,
    ZScan,
    ZScanBadCursor,
    ObjectEncoding,
    // Generic.
    Type,
    Del,
    Exists,
    Expire,
    Ttl,
    PTtl,
    Persist,
    Rename,
    RenameNx,
    Copy,
    Scan,
    DbSize,
    Keys,
    // Other types on the same keys.
    Set,
    Get,
    HSet,
    HGet,
    // SORT.
    Sort,
    SortData,
}

/// Command kinds and their relative weights.
const MENU: &[(Kind, u32)] = &[
    (Kind::LPush, 14),
    (Kind::RPush, 14),
    (Kind::LPushX, 4),
    (Kind::RPushX, 4),
    (Kind::LPop, 8),
    (Kind::RPop, 8),
    (Kind::LLen, 5),
    (Kind::LIndex, 6),
    (Kind::LSet, 6),
    (Kind::LRange, 10),
    (Kind::LTrim, 6),
    (Kind::LInsert, 6),
    (Kind::LRem, 6),
    (Kind::LPos, 8),
    (Kind::LMove, 6),
    (Kind::RPopLPush, 4),
    (Kind::LMPop, 6),
    (Kind::SAdd, 18),
    (Kind::SRem, 8),
    (Kind::SCard, 5),
    (Kind::SIsMember, 5),
    (Kind::SMIsMember, 4),
    (Kind::SMembers, 8),
    (Kind::SRandMember, 6),
    (Kind::SPop, 6),
    (Kind::SMove, 6),
    (Kind::SInter, 4),
    (Kind::SUnion, 4),
    (Kind::SDiff, 4),
    (Kind::SInterStore, 3),
    (Kind::SUnionStore, 3),
    (Kind::SDiffStore, 3),
    (Kind::SInterCard, 5),
    (Kind::SScan, 4),
    (Kind::SScanBadCursor, 1),
    // Sorted sets: about a third of the total weight.
    (Kind::ZAdd, 22),
    (Kind::ZIncrBy, 6),
    (Kind::ZRem, 7),
    (Kind::ZCard, 3),
    (Kind::ZCount, 5),
    (Kind::ZLexCount, 5),
    (Kind::ZScore, 5),
    (Kind::ZMScore, 3),
    (Kind::ZRank, 5),
    (Kind::ZRange, 12),
    (Kind::ZRangeStore, 4),
    (Kind::ZRevRange, 4),
    (Kind::ZRangeByScore, 6),
    (Kind::ZRangeByLex, 6),
    (Kind::ZRemRangeByRank, 3),
    (Kind::ZRemRangeByScore, 3),
    (Kind::ZRemRangeByLex, 3),
    (Kind::ZPop, 6),
    (Kind::ZMPop, 5),
    (Kind::ZRandMember, 5),
    (Kind::ZSetOp, 9),
    (Kind::ZSetOpStore, 7),
    (Kind::ZInterCard, 4),
    (Kind::ZScan, 3),
    (Kind::ZScanBadCursor, 1),
    (Kind::ObjectEncoding, 2),
    (Kind::Type, 6),
    (Kind::Del, 6),
    (Kind::Exists, 4),
    (Kind::Expire, 5),
    (Kind::Ttl, 4),
    (Kind::PTtl, 2),
    (Kind::Persist, 3),
    (Kind::Rename, 4),
    (Kind::RenameNx, 2),
    (Kind::Copy, 4),
    (Kind::Scan, 4),
    (Kind::DbSize, 3),
    (Kind::Keys, 2),
    (Kind::Set, 4),
    (Kind::Get, 3),
    (Kind::HSet, 4),
    (Kind::HGet, 2),
    // About 4% of the total weight, with its weights and numbers.
    (Kind::Sort, 18),
    (Kind::SortData, 12),
];

/// The command generator. Deterministic for a seed.
struct Gen {
    rng: Rand,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: Rand::new(seed),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        self.rng.pick(&KEYS).to_vec()
    }

    /// A key for a list command: usually l0, l1 or the binary key.
    fn list_key(&mut self) -> Vec<u8> {
        if self.rng.chance(CROSS_FAMILY_PERCENT) {
            self.key()
        } else {
            self.rng.pick(&LIST_KEYS).to_vec()
        }
    }

    /// A key for a set command: usually s0, s1 or the binary key.
    fn set_key(&mut self) -> Vec<u8> {
        if self.rng.chance(CROSS_FAMILY_PERCENT) {
            self.key()
        } else {
            self.rng.pick(&SET_KEYS).to_vec()
        }
    }

    /// A key for a sorted-set command: usually z0 or z1.
    fn zset_key(&mut self) -> Vec<u8> {
        if self.rng.chance(CROSS_FAMILY_PERCENT) {
            self.key()
        } else {
            self.rng.pick(&ZSET_KEYS).to_vec()
        }
    }

    /// An input key of ZUNION, ZINTER, ZDIFF, their STORE forms and ZINTERCARD: usually a
    /// sorted-set key, often a set key on purpose (a set is an input with scores 1), now and
    /// then any key.
    fn zset_input_key(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=54 => self.rng.pick(&ZSET_KEYS).to_vec(),
            55..=84 => self.rng.pick(&SET_KEYS).to_vec(),
            _ => self.key(),
        }
    }

    /// A key for a string or hash command: usually x.
    fn other_key(&mut self) -> Vec<u8> {
        if self.rng.chance(40) {
            self.key()
        } else {
            b("x")
        }
    }

    /// The key SORT sorts: usually a list, set or sorted-set key, often the list of numbers
    /// or the store target, now and then a weight string or object hash (WRONGTYPE) or a
    /// missing key.
    fn sort_key(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=19 => self.rng.pick(&LIST_KEYS).to_vec(),
            20..=37 => self.rng.pick(&SET_KEYS).to_vec(),
            38..=55 => self.rng.pick(&ZSET_KEYS).to_vec(),
            56..=67 => self.key(),
            68..=81 => NUMBERS_KEY.to_vec(),
            82..=89 => STORE_KEY.to_vec(),
            90..=95 => {
                let prefix = self.rng.pick(&["w_", "o_"]);
                self.weighted_key(prefix)
            }
            _ => b("missing"),
        }
    }

    /// `prefix` and an element that has weights: `w_a`, `o_10`, `w_` ...
    fn weighted_key(&mut self, prefix: &str) -> Vec<u8> {
        let mut key = b(prefix);
        key.extend_from_slice(self.rng.pick(&WEIGHTED));
        key
    }

    /// A weight or object field value: now and then one that is not a number.
    fn weight_value(&mut self) -> Vec<u8> {
        if self.rng.chance(10) {
            b(self.rng.pick(BAD_WEIGHTS))
        } else {
            b(self.rng.pick(WEIGHT_VALUES))
        }
    }

    /// SORT's `LIMIT offset count`; with `keep_all`, one that leaves no element out.
    fn sort_limit(&mut self, keep_all: bool) -> Vec<Vec<u8>> {
        let (offset, count) = if keep_all {
            (
                self.rng.pick(&["0", "-1", "-5"]),
                self.rng.pick(&["-1", "-5"]),
            )
        } else {
            let offset = if self.rng.chance(5) {
                "x"
            } else {
                self.rng.pick(&["0", "0", "1", "2", "-1", "5", "100"])
            };
            let count = if self.rng.chance(5) {
                "x"
            } else {
                self.rng.pick(&["0", "1", "2", "-1", "5", "100"])
            };
            (offset, count)
        };
        vec![self.rng.word("LIMIT"), b(offset), b(count)]
    }

    fn keys(&mut self, min: usize, max: usize) -> Vec<Vec<u8>> {
        let n = self.rng.usize(min..=max);
        (0..n).map(|_| self.key()).collect()
    }

    fn set_keys(&mut self, min: usize, max: usize) -> Vec<Vec<u8>> {
        let n = self.rng.usize(min..=max);
        (0..n).map(|_| self.set_key()).collect()
    }

    fn member(&mut self) -> Vec<u8> {
        self.rng.pick(&MEMBERS).to_vec()
    }

    fn members(&mut self, min: usize, max: usize) -> Vec<Vec<u8>> {
        let n = self.rng.usize(min..=max);
        (0..n).map(|_| self.member()).collect()
    }

    fn zmember(&mut self) -> Vec<u8> {
        self.rng.pick(&ZMEMBERS).to_vec()
    }

    fn zmembers(&mut self, min: usize, max: usize) -> Vec<Vec<u8>> {
        let n = self.rng.usize(min..=max);
        (0..n).map(|_| self.zmember()).collect()
    }

    /// A valid score: mostly a small integer.
    fn valid_score(&mut self) -> Vec<u8> {
        if self.rng.chance(60) {
            self.rng.small_int(-3, 3)
        } else {
            b(self.rng.pick(ODD_SCORES))
        }
    }

    /// A ZADD/ZINCRBY score: now and then one Redis refuses.
    fn score(&mut self) -> Vec<u8> {
        if self.rng.chance(4) {
            b(self.rng.pick(BAD_SCORES))
        } else {
            self.valid_score()
        }
    }

    /// A score range bound (ZCOUNT, ZRANGEBYSCORE, ...): a small integer, inclusive or
    /// exclusive, an odd one, rarely a strange or invalid one.
    fn score_bound(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=34 => {
                let n = self.rng.i64(-3..=3);
                if self.rng.chance(30) {
                    format!("({n}").into_bytes()
                } else {
                    n.to_string().into_bytes()
                }
            }
            35..=93 => b(self.rng.pick(ODD_SCORE_BOUNDS)),
            _ => b(self.rng.pick(RARE_SCORE_BOUNDS)),
        }
    }

    /// A lex range bound (ZLEXCOUNT, ZRANGEBYLEX, ...): `-`, `+`, `[member` or `(member`
    /// (`[` and `(` alone for the empty member), rarely an invalid one.
    fn lex_bound(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=29 => b(self.rng.pick(&["-", "+"])),
            30..=93 => {
                let mut bound = b(self.rng.pick(&["[", "("]));
                bound.extend(self.zmember());
                bound
            }
            _ => b(self.rng.pick(&["a", "", "+a", "-a", "x"])),
        }
    }

    /// `LIMIT offset count`, now and then with a value that is not an integer.
    fn limit(&mut self) -> Vec<Vec<u8>> {
        let offset = if self.rng.chance(5) {
            "x"
        } else {
            self.rng.pick(&["0", "0", "1", "2", "-1", "5"])
        };
        let count = if self.rng.chance(5) {
            "x"
        } else {
            self.rng.pick(&["0", "1", "2", "3", "-1", "-5"])
        };
        vec![self.rng.word("LIMIT"), b(offset), b(count)]
    }

    /// Appends option groups in a random order, now and then one of them twice (Redis
    /// refuses some repeated options and takes the last of others).
    fn push_options(&mut self, args: &mut Vec<Vec<u8>>, mut options: Vec<Vec<Vec<u8>>>) {
        if !options.is_empty() && self.rng.chance(3) {
            let again = options[self.rng.usize(..options.len())].clone();
            options.push(again);
        }
        self.rng.shuffle(&mut options);
        args.extend(options.into_iter().flatten());
    }

    /// An LINDEX/LSET index: mostly -6..=6.
    fn index_arg(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=86 => self.rng.small_int(-6, 6),
            87..=93 => b(self.rng.pick(BIG_INDEXES)),
            _ => b(self.rng.pick(&["x", "", "1.5"])),
        }
    }

    /// An LRANGE/LTRIM bound: mostly -8..=8.
    fn range_arg(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=81 => self.rng.small_int(-8, 8),
            82..=94 => b(self.rng.pick(BIG_INDEXES)),
            _ => b(self.rng.pick(&["x", "", "1.5"])),
        }
    }

    /// LEFT or RIGHT (any letter case now and then), rarely a bad word.
    fn end(&mut self) -> Vec<u8> {
        if self.rng.chance(5) {
            b(self.rng.pick(&["UP", "", "LEFTX", "0"]))
        } else {
            let w = self.rng.pick(&["LEFT", "RIGHT"]);
            self.rng.word(w)
        }
    }

    /// `numkeys key...` with keys from `key`: usually a matching count, sometimes 0,
    /// negative, not a number or larger than the keys given. Returns how many keys it gave.
    fn numkeys_and_keys(&mut self, args: &mut Vec<Vec<u8>>, key: fn(&mut Gen) -> Vec<u8>) -> usize {
        let n = self.rng.usize(1..=3);
        let numkeys = match self.rng.u32(0..100) {
            0..=83 => n.to_string().into_bytes(),
            84..=89 => (n + self.rng.usize(1..=2)).to_string().into_bytes(),
            90..=93 => b("0"),
            94..=96 => b("x"),
            _ => b("-1"),
        };
        args.push(numkeys);
        for _ in 0..n {
            args.push(key(self));
        }
        n
    }

    /// An EXPIRE time: a fresh large one, one in the past, or an invalid one.
    fn rel_time(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=79 => self.rng.fresh_rel_secs().to_string().into_bytes(),
            80..=92 => b(self.rng.pick(&["0", "-1", "-100"])),
            _ => b(self.rng.pick(&["abc", "", "1.5", "9223372036854775807"])),
        }
    }

    fn step(&mut self) -> Step {
        let kind = self.rng.weighted(MENU);
        let mut step = self.build(kind);
        // Mutations: wrong arity and trailing junk, for commands whose check does not
        // depend on the exact form (SCAN/SSCAN/ZSCAN iterate, SPOP and OBJECT ENCODING
        // decide whether to run; SORT's plan is read again from the mutated form).
        if matches!(
            step.check,
            Check::Exact
                | Check::Unordered
                | Check::Tolerance(_)
                | Check::SRandMember
                | Check::ZRandMember
                | Check::Sort(_)
        ) {
            self.rng.mutate(&mut step.args, 3, 3);
        }
        if matches!(step.check, Check::Sort(_)) {
            step.check = sort_plan(&step.args);
        }
        step
    }

    fn build(&mut self, kind: Kind) -> Step {
        use Check::*;
        let exact = |args: Vec<Vec<u8>>| Step { args, check: Exact };
        let unordered = |args: Vec<Vec<u8>>| Step {
            args,
            check: Unordered,
        };
        match kind {
            // ---- lists ----
            Kind::LPush | Kind::RPush | Kind::LPushX | Kind::RPushX => {
                let name = match kind {
                    Kind::LPush => "LPUSH",
                    Kind::RPush => "RPUSH",
                    Kind::LPushX => "LPUSHX",
                    _ => "RPUSHX",
                };
                let mut args = vec![self.rng.name(name), self.list_key()];
                args.extend(self.members(1, 4));
                exact(args)
            }
            Kind::LPop | Kind::RPop => {
                let name = if matches!(kind, Kind::LPop) {
                    "LPOP"
                } else {
                    "RPOP"
                };
                let mut args = vec![self.rng.name(name), self.list_key()];
                if self.rng.bool() {
                    args.push(b(self.rng.pick(&["0", "1", "2", "5", "-1", "x"])));
                }
                exact(args)
            }
            Kind::LLen => exact(vec![self.rng.name("LLEN"), self.list_key()]),
            Kind::LIndex => exact(vec![
                self.rng.name("LINDEX"),
                self.list_key(),
                self.index_arg(),
            ]),
            Kind::LSet => exact(vec![
                self.rng.name("LSET"),
                self.list_key(),
                self.index_arg(),
                self.member(),
            ]),
            Kind::LRange | Kind::LTrim => {
                let name = if matches!(kind, Kind::LRange) {
                    "LRANGE"
                } else {
                    "LTRIM"
                };
                exact(vec![
                    self.rng.name(name),
                    self.list_key(),
                    self.range_arg(),
                    self.range_arg(),
                ])
            }
            Kind::LInsert => {
                let place = match self.rng.u32(0..20) {
                    0 => b(self.rng.pick(&["BEFOR", "MIDDLE", "", "AFTERX"])),
                    1..=9 => self.rng.word("BEFORE"),
                    _ => self.rng.word("AFTER"),
                };
                exact(vec![
                    self.rng.name("LINSERT"),
                    self.list_key(),
                    place,
                    self.member(),
                    self.member(),
                ])
            }
            Kind::LRem => {
                let count = if self.rng.chance(8) {
                    b(self.rng.pick(&["x", "", "1.5"]))
                } else {
                    self.rng.small_int(-3, 3)
                };
                exact(vec![
                    self.rng.name("LREM"),
                    self.list_key(),
                    count,
                    self.member(),
                ])
            }
            Kind::LPos => {
                let mut args = vec![self.rng.name("LPOS"), self.list_key(), self.member()];
                for _ in 0..self.rng.usize(0..=3) {
                    match self.rng.u32(0..3) {
                        0 => {
                            args.push(self.rng.word("RANK"));
                            args.push(b(self.rng.pick(&["1", "2", "-1", "-2", "0", "x"])));
                        }
                        1 => {
                            args.push(self.rng.word("COUNT"));
                            args.push(b(self.rng.pick(&["0", "1", "2", "-1", "x"])));
                        }
                        _ => {
                            args.push(self.rng.word("MAXLEN"));
                            args.push(b(self.rng.pick(&["0", "1", "3", "-1", "x"])));
                        }
                    }
                }
                match self.rng.u32(0..100) {
                    // A bad option name, with a value.
                    0..=3 => {
                        args.push(b(self.rng.pick(&["BOGUS", "RANKS", ""])));
                        args.push(b("1"));
                    }
                    // An option without its value.
                    4..=7 => {
                        let w = self.rng.pick(&["RANK", "COUNT", "MAXLEN"]);
                        let w = self.rng.word(w);
                        args.push(w);
                    }
                    _ => {}
                }
                exact(args)
            }
            Kind::LMove => exact(vec![
                self.rng.name("LMOVE"),
                self.list_key(),
                self.list_key(),
                self.end(),
                self.end(),
            ]),
            Kind::RPopLPush => exact(vec![
                self.rng.name("RPOPLPUSH"),
                self.list_key(),
                self.list_key(),
            ]),
            Kind::LMPop => {
                let mut args = vec![self.rng.name("LMPOP")];
                self.numkeys_and_keys(&mut args, Gen::list_key);
                args.push(self.end());
                match self.rng.u32(0..100) {
                    0..=49 => {}
                    50..=95 => {
                        args.push(self.rng.word("COUNT"));
                        args.push(b(self.rng.pick(&["1", "2", "5", "0", "-1"])));
                    }
                    _ => {
                        args.push(self.rng.word("COUNT"));
                        args.push(b(self.rng.pick(&["x", ""])));
                    }
                }
                exact(args)
            }
            // ---- sets ----
            Kind::SAdd | Kind::SRem => {
                let name = if matches!(kind, Kind::SAdd) {
                    "SADD"
                } else {
                    "SREM"
                };
                let mut args = vec![self.rng.name(name), self.set_key()];
                args.extend(self.members(1, 4));
                exact(args)
            }
            Kind::SCard => exact(vec![self.rng.name("SCARD"), self.set_key()]),
            Kind::SIsMember => exact(vec![
                self.rng.name("SISMEMBER"),
                self.set_key(),
                self.member(),
            ]),
            Kind::SMIsMember => {
                let mut args = vec![self.rng.name("SMISMEMBER"), self.set_key()];
                args.extend(self.members(1, 4));
                exact(args)
            }
            Kind::SMembers => unordered(vec![self.rng.name("SMEMBERS"), self.set_key()]),
            Kind::SRandMember => {
                let mut args = vec![self.rng.name("SRANDMEMBER"), self.set_key()];
                match self.rng.u32(0..100) {
                    0..=29 => {}
                    30..=84 => args.push(self.rng.small_int(-5, 5)),
                    _ => args.push(b(self.rng.pick(&[
                        "9",
                        "20",
                        "x",
                        "1.5",
                        "",
                        "-9223372036854775808",
                    ]))),
                }
                Step {
                    args,
                    check: SRandMember,
                }
            }
            Kind::SPop => {
                let mut args = vec![self.rng.name("SPOP"), self.set_key()];
                if self.rng.chance(65) {
                    args.push(b(self.rng.pick(&[
                        "0",
                        "1",
                        "2",
                        "3",
                        "20",
                        "100",
                        "9223372036854775807",
                        "-1",
                        "x",
                    ])));
                    if self.rng.chance(4) {
                        args.push(b(self.rng.pick(JUNK)));
                    }
                }
                Step { args, check: SPop }
            }
            Kind::SMove => exact(vec![
                self.rng.name("SMOVE"),
                self.set_key(),
                self.set_key(),
                self.member(),
            ]),
            Kind::SInter | Kind::SUnion | Kind::SDiff => {
                let name = match kind {
                    Kind::SInter => "SINTER",
                    Kind::SUnion => "SUNION",
                    _ => "SDIFF",
                };
                let mut args = vec![self.rng.name(name)];
                args.extend(self.set_keys(1, 3));
                unordered(args)
            }
            Kind::SInterStore | Kind::SUnionStore | Kind::SDiffStore => {
                let name = match kind {
                    Kind::SInterStore => "SINTERSTORE",
                    Kind::SUnionStore => "SUNIONSTORE",
                    _ => "SDIFFSTORE",
                };
                let mut args = vec![self.rng.name(name), self.set_key()];
                args.extend(self.set_keys(1, 3));
                exact(args)
            }
            Kind::SInterCard => {
                let mut args = vec![self.rng.name("SINTERCARD")];
                self.numkeys_and_keys(&mut args, Gen::set_key);
                if self.rng.chance(40) {
                    args.push(self.rng.word("LIMIT"));
                    args.push(b(self.rng.pick(&["0", "1", "2", "-1", "x"])));
                }
                exact(args)
            }
            Kind::SScan => {
                let mut args = vec![self.rng.name("SSCAN"), self.set_key(), b("0")];
                self.scan_options(&mut args, false);
                Step { args, check: SScan }
            }
            Kind::SScanBadCursor => {
                // Never a cursor Redis would accept: its one page would be compared exactly.
                let cursor = self.rng.pick(&["x", "1.5", " 0", "0x"]);
                exact(vec![self.rng.name("SSCAN"), self.set_key(), b(cursor)])
            }
            // ---- sorted sets ----
            Kind::ZAdd => {
                let key = self.zset_key();
                let mut flags = Vec::new();
                for (flag, percent) in [
                    ("NX", 8),
                    ("XX", 10),
                    ("GT", 8),
                    ("LT", 8),
                    ("CH", 15),
                    ("INCR", 8),
                ] {
                    if self.rng.chance(percent) {
                        flags.push(self.rng.word(flag));
                    }
                }
                self.rng.shuffle(&mut flags);
                let incr = flags.iter().any(|f| f.eq_ignore_ascii_case(b"INCR"));
                let pairs = if incr && self.rng.chance(85) {
                    1
                } else {
                    self.rng.usize(1..=4)
                };
                // One score for all the members: z0 mostly gets 0 (for the lex commands).
                let shared = match (key == b"z0", self.rng.u32(0..100)) {
                    (true, 0..=69) => Some(b("0")),
                    (true, 70..=79) | (false, 0..=24) => Some(self.score()),
                    _ => None,
                };
                let mut args = vec![self.rng.name("ZADD"), key];
                args.extend(flags);
                for _ in 0..pairs {
                    let score = match &shared {
                        Some(score) => score.clone(),
                        None => self.score(),
                    };
                    args.push(score);
                    args.push(self.zmember());
                }
                exact(args)
            }
            Kind::ZIncrBy => exact(vec![
                self.rng.name("ZINCRBY"),
                self.zset_key(),
                self.score(),
                self.zmember(),
            ]),
            Kind::ZRem => {
                let mut args = vec![self.rng.name("ZREM"), self.zset_key()];
                args.extend(self.zmembers(1, 3));
                exact(args)
            }
            Kind::ZCard => exact(vec![self.rng.name("ZCARD"), self.zset_key()]),
            Kind::ZCount | Kind::ZRemRangeByScore => {
                let name = if matches!(kind, Kind::ZCount) {
                    "ZCOUNT"
                } else {
                    "ZREMRANGEBYSCORE"
                };
                exact(vec![
                    self.rng.name(name),
                    self.zset_key(),
                    self.score_bound(),
                    self.score_bound(),
                ])
            }
            Kind::ZLexCount | Kind::ZRemRangeByLex => {
                let name = if matches!(kind, Kind::ZLexCount) {
                    "ZLEXCOUNT"
                } else {
                    "ZREMRANGEBYLEX"
                };
                exact(vec![
                    self.rng.name(name),
                    self.zset_key(),
                    self.lex_bound(),
                    self.lex_bound(),
                ])
            }
            Kind::ZRemRangeByRank => exact(vec![
                self.rng.name("ZREMRANGEBYRANK"),
                self.zset_key(),
                self.range_arg(),
                self.range_arg(),
            ]),
            Kind::ZScore => exact(vec![
                self.rng.name("ZSCORE"),
                self.zset_key(),
                self.zmember(),
            ]),
            Kind::ZMScore => {
                let mut args = vec![self.rng.name("ZMSCORE"), self.zset_key()];
                args.extend(self.zmembers(1, 4));
                exact(args)
            }
            Kind::ZRank => {
                let name = self.rng.pick(&["ZRANK", "ZREVRANK"]);
                exact(vec![self.rng.name(name), self.zset_key(), self.zmember()])
            }
            Kind::ZRange | Kind::ZRangeStore => {
                let store = matches!(kind, Kind::ZRangeStore);
                let mut args = if store {
                    vec![
                        self.rng.name("ZRANGESTORE"),
                        self.zset_key(),
                        self.zset_key(),
                    ]
                } else {
                    vec![self.rng.name("ZRANGE"), self.zset_key()]
                };
                // 0: by rank, 1: BYSCORE, 2: BYLEX; now and then the bounds of another kind.
                let by = self.rng.u32(0..3);
                let bounds_by = if self.rng.chance(5) {
                    self.rng.u32(0..3)
                } else {
                    by
                };
                for _ in 0..2 {
                    let bound = match bounds_by {
                        0 => self.range_arg(),
                        1 => self.score_bound(),
                        _ => self.lex_bound(),
                    };
                    args.push(bound);
                }
                let mut options = Vec::new();
                match by {
                    1 => options.push(vec![self.rng.word("BYSCORE")]),
                    2 => options.push(vec![self.rng.word("BYLEX")]),
                    _ => {}
                }
                if self.rng.chance(2) {
                    // Both kinds: a syntax error.
                    let other = if by == 2 { "BYSCORE" } else { "BYLEX" };
                    options.push(vec![self.rng.word(other)]);
                }
                if self.rng.chance(30) {
                    options.push(vec![self.rng.word("REV")]);
                }
                // LIMIT needs BYSCORE or BYLEX, and WITHSCORES does not go with BYLEX nor
                // with ZRANGESTORE: rarely, for the errors.
                if self.rng.chance(if by == 0 { 8 } else { 35 }) {
                    options.push(self.limit());
                }
                let withscores = match (store, by) {
                    (true, _) => 4,
                    (false, 2) => 6,
                    _ => 45,
                };
                if self.rng.chance(withscores) {
                    options.push(vec![self.rng.word("WITHSCORES")]);
                }
                self.push_options(&mut args, options);
                exact(args)
            }
            Kind::ZRevRange => {
                let mut args = vec![
                    self.rng.name("ZREVRANGE"),
                    self.zset_key(),
                    self.range_arg(),
                    self.range_arg(),
                ];
                if self.rng.chance(40) {
                    args.push(self.rng.word("WITHSCORES"));
                }
                exact(args)
            }
            Kind::ZRangeByScore => {
                let name = self.rng.pick(&["ZRANGEBYSCORE", "ZREVRANGEBYSCORE"]);
                let mut args = vec![
                    self.rng.name(name),
                    self.zset_key(),
                    self.score_bound(),
                    self.score_bound(),
                ];
                let mut options = Vec::new();
                if self.rng.chance(45) {
                    options.push(vec![self.rng.word("WITHSCORES")]);
                }
                if self.rng.chance(35) {
                    options.push(self.limit());
                }
                self.push_options(&mut args, options);
                exact(args)
            }
            Kind::ZRangeByLex => {
                let name = self.rng.pick(&["ZRANGEBYLEX", "ZREVRANGEBYLEX"]);
                let mut args = vec![
                    self.rng.name(name),
                    self.zset_key(),
                    self.lex_bound(),
                    self.lex_bound(),
                ];
                let mut options = Vec::new();
                if self.rng.chance(35) {
                    options.push(self.limit());
                }
                if self.rng.chance(4) {
                    options.push(vec![self.rng.word("WITHSCORES")]);
                }
                self.push_options(&mut args, options);
                exact(args)
            }
            Kind::ZPop => {
                let name = self.rng.pick(&["ZPOPMIN", "ZPOPMAX"]);
                let mut args = vec![self.rng.name(name), self.zset_key()];
                if self.rng.bool() {
                    args.push(b(self.rng.pick(&["0", "1", "2", "3", "10", "-1", "x"])));
                }
                exact(args)
            }
            Kind::ZMPop => {
                let mut args = vec![self.rng.name("ZMPOP")];
                self.numkeys_and_keys(&mut args, Gen::zset_key);
                let end = if self.rng.chance(5) {
                    b(self.rng.pick(&["MIDDLE", "", "MINX", "LEFT"]))
                } else {
                    let w = self.rng.pick(&["MIN", "MAX"]);
                    self.rng.word(w)
                };
                args.push(end);
                match self.rng.u32(0..100) {
                    0..=49 => {}
                    50..=95 => {
                        args.push(self.rng.word("COUNT"));
                        args.push(b(self.rng.pick(&["1", "2", "5", "0", "-1"])));
                    }
                    _ => {
                        args.push(self.rng.word("COUNT"));
                        args.push(b(self.rng.pick(&["x", ""])));
                    }
                }
                exact(args)
            }
            Kind::ZRandMember => {
                let mut args = vec![self.rng.name("ZRANDMEMBER"), self.zset_key()];
                if self.rng.chance(75) {
                    // Never a large negative count that Redis accepts: it would answer with
                    // that many members.
                    let count = if self.rng.chance(85) {
                        self.rng.small_int(-5, 5)
                    } else {
                        b(self.rng.pick(&[
                            "9",
                            "20",
                            "9223372036854775807",
                            "-9223372036854775808",
                            "x",
                            "1.5",
                            "",
                        ]))
                    };
                    args.push(count);
                    if self.rng.chance(45) {
                        let with = if self.rng.chance(5) {
                            b("WITHSCORE")
                        } else {
                            self.rng.word("WITHSCORES")
                        };
                        args.push(with);
                    }
                }
                Step {
                    args,
                    check: ZRandMember,
                }
            }
            Kind::ZSetOp | Kind::ZSetOpStore => {
                let op = self.rng.pick(&["ZUNION", "ZINTER", "ZDIFF"]);
                let store = matches!(kind, Kind::ZSetOpStore);
                let name = if store {
                    format!("{op}STORE")
                } else {
                    op.to_string()
                };
                let mut args = vec![self.rng.name(&name)];
                if store {
                    args.push(self.zset_key());
                }
                let n = self.numkeys_and_keys(&mut args, Gen::zset_input_key);
                // ZDIFF takes neither WEIGHTS nor AGGREGATE, and the STORE forms no
                // WITHSCORES: rarely, for the syntax errors.
                let diff = op == "ZDIFF";
                let mut options = Vec::new();
                if self.rng.chance(if diff { 3 } else { 40 }) {
                    let mut weights = vec![self.rng.word("WEIGHTS")];
                    let count = match self.rng.u32(0..100) {
                        0..=89 => n,
                        90..=94 => n + 1,
                        _ => n - 1,
                    };
                    for _ in 0..count {
                        let weight = if self.rng.chance(4) {
                            self.rng.pick(&["x", "nan", ""])
                        } else {
                            self.rng.pick(WEIGHTS)
                        };
                        weights.push(b(weight));
                    }
                    options.push(weights);
                }
                if self.rng.chance(if diff { 3 } else { 35 }) {
                    let how = if self.rng.chance(6) {
                        b(self.rng.pick(&["AVG", "", "SUMX"]))
                    } else {
                        let w = self.rng.pick(&["SUM", "MIN", "MAX"]);
                        self.rng.word(w)
                    };
                    options.push(vec![self.rng.word("AGGREGATE"), how]);
                }
                if self.rng.chance(if store { 4 } else { 45 }) {
                    options.push(vec![self.rng.word("WITHSCORES")]);
                }
                self.push_options(&mut args, options);
                exact(args)
            }
            Kind::ZInterCard => {
                let mut args = vec![self.rng.name("ZINTERCARD")];
                self.numkeys_and_keys(&mut args, Gen::zset_input_key);
                if self.rng.chance(40) {
                    args.push(self.rng.word("LIMIT"));
                    args.push(b(self.rng.pick(&["0", "1", "2", "-1", "x"])));
                }
                exact(args)
            }
            Kind::ZScan => {
                let mut args = vec![self.rng.name("ZSCAN"), self.zset_key(), b("0")];
                self.scan_options(&mut args, false);
                Step { args, check: ZScan }
            }
            Kind::ZScanBadCursor => {
                // Never a cursor Redis would accept: its one page would be compared exactly.
                let cursor = self.rng.pick(&["x", "1.5", " 0", "0x"]);
                exact(vec![self.rng.name("ZSCAN"), self.zset_key(), b(cursor)])
            }
            Kind::ObjectEncoding => Step {
                args: vec![
                    self.rng.name("OBJECT"),
                    self.rng.word("ENCODING"),
                    self.zset_key(),
                ],
                check: Encoding,
            },
            // ---- generic ----
            Kind::Type => exact(vec![self.rng.name("TYPE"), self.key()]),
            Kind::Del | Kind::Exists => {
                let name = if matches!(kind, Kind::Del) {
                    "DEL"
                } else {
                    "EXISTS"
                };
                let mut args = vec![self.rng.name(name)];
                args.extend(self.keys(1, 3));
                exact(args)
            }
            Kind::Expire => {
                let mut args = vec![self.rng.name("EXPIRE"), self.key(), self.rel_time()];
                if self.rng.chance(20) {
                    let flag = self.rng.pick(&["NX", "XX", "GT", "LT"]);
                    let flag = self.rng.word(flag);
                    args.push(flag);
                }
                exact(args)
            }
            Kind::Ttl => Step {
                args: vec![self.rng.name("TTL"), self.key()],
                check: Tolerance(1),
            },
            Kind::PTtl => Step {
                args: vec![self.rng.name("PTTL"), self.key()],
                check: Tolerance(1500),
            },
            Kind::Persist => exact(vec![self.rng.name("PERSIST"), self.key()]),
            Kind::Rename => exact(vec![self.rng.name("RENAME"), self.key(), self.key()]),
            Kind::RenameNx => exact(vec![self.rng.name("RENAMENX"), self.key(), self.key()]),
            Kind::Copy => {
                let mut args = vec![self.rng.name("COPY"), self.key(), self.key()];
                if self.rng.bool() {
                    args.push(self.rng.word("REPLACE"));
                }
                exact(args)
            }
            Kind::Scan => {
                let mut args = vec![self.rng.name("SCAN"), b("0")];
                self.scan_options(&mut args, true);
                Step { args, check: Scan }
            }
            Kind::DbSize => exact(vec![self.rng.name("DBSIZE")]),
            Kind::Keys => unordered(vec![
                self.rng.name("KEYS"),
                self.rng.pick(KEY_PATTERNS).to_vec(),
            ]),
            // ---- other types on the same keys ----
            Kind::Set => exact(vec![
                self.rng.name("SET"),
                self.other_key(),
                b(self.rng.pick(VALUES)),
            ]),
            Kind::Get => exact(vec![self.rng.name("GET"), self.other_key()]),
            Kind::HSet => {
                let mut args = vec![self.rng.name("HSET"), self.other_key()];
                for _ in 0..self.rng.usize(1..=2) {
                    args.push(self.rng.pick(&FIELDS).to_vec());
                    args.push(b(self.rng.pick(VALUES)));
                }
                exact(args)
            }
            Kind::HGet => exact(vec![
                self.rng.name("HGET"),
                self.other_key(),
                self.rng.pick(&FIELDS).to_vec(),
            ]),
            // ---- SORT ----
            Kind::Sort => {
                let read_only = self.rng.chance(30);
                let name = if read_only { "SORT_RO" } else { "SORT" };
                let key = self.sort_key();
                let mut args = vec![self.rng.name(name), key.clone()];
                let mut options = Vec::new();
                let bys = match self.rng.u32(0..100) {
                    0..=54 => 0,
                    55..=91 => 1,
                    _ => 2,
                };
                let (mut sort_by, mut no_sort) = (false, false);
                for _ in 0..bys {
                    let pattern = if self.rng.chance(75) {
                        sort_by = true;
                        self.rng.pick(SORT_BY_PATTERNS)
                    } else {
                        no_sort = true;
                        self.rng.pick(NO_SORT_PATTERNS)
                    };
                    options.push(vec![self.rng.word("BY"), b(pattern)]);
                }
                let alpha = self.rng.chance(40);
                if alpha {
                    options.push(vec![self.rng.word("ALPHA")]);
                }
                match self.rng.u32(0..100) {
                    0..=29 => options.push(vec![self.rng.word("DESC")]),
                    30..=39 => options.push(vec![self.rng.word("ASC")]),
                    _ => {}
                }
                // With BY and a LIMIT that leaves elements out, Redis sorts with its own
                // quicksort, which is not stable: ALPHA ties (equal or missing BY values)
                // would come out in an order of its own, so those LIMITs keep everything.
                let keep_all = alpha && sort_by && !no_sort;
                let limits = match self.rng.u32(0..100) {
                    0..=64 => 0,
                    65..=93 => 1,
                    _ => 2,
                };
                for _ in 0..limits {
                    options.push(self.sort_limit(keep_all));
                }
                let gets = match self.rng.u32(0..100) {
                    0..=59 => 0,
                    60..=84 => 1,
                    85..=94 => 2,
                    _ => 3,
                };
                for _ in 0..gets {
                    options.push(vec![
                        self.rng.word("GET"),
                        b(self.rng.pick(SORT_GET_PATTERNS)),
                    ]);
                }
                // STORE: SORT_RO refuses it (rarely, for the syntax error).
                if self.rng.chance(if read_only { 4 } else { 22 }) {
                    let dst = match self.rng.u32(0..100) {
                        0..=44 => STORE_KEY.to_vec(),
                        45..=79 => self.key(),
                        80..=89 => key,
                        _ => b(self.rng.pick(&["n", "w_a", "o_b"])),
                    };
                    options.push(vec![self.rng.word("STORE"), dst]);
                }
                // Syntax errors: an unknown word; LIMIT with one argument (the next
                // option's word is then its count, not an integer).
                if self.rng.chance(3) {
                    options.push(vec![b(self.rng.pick(&["BOGUS", "LIMITS", "GETS", ""]))]);
                }
                if self.rng.chance(3) {
                    options.push(vec![self.rng.word("LIMIT"), b("1")]);
                }
                self.push_options(&mut args, options);
                let check = sort_plan(&args);
                Step { args, check }
            }
            Kind::SortData => match self.rng.u32(0..100) {
                0..=44 => {
                    let mut args = vec![self.rng.name("MSET")];
                    for _ in 0..self.rng.usize(1..=4) {
                        // Now and then an object key becomes a string.
                        let prefix = if self.rng.chance(8) { "o_" } else { "w_" };
                        args.push(self.weighted_key(prefix));
                        args.push(self.weight_value());
                    }
                    exact(args)
                }
                45..=64 => {
                    // Now and then a weight key becomes a hash.
                    let prefix = if self.rng.chance(12) { "w_" } else { "o_" };
                    let mut args = vec![self.rng.name("HSET"), self.weighted_key(prefix)];
                    let (f, g) = match self.rng.u32(0..10) {
                        0..=5 => (true, false),
                        6..=7 => (false, true),
                        _ => (true, true),
                    };
                    for (field, set) in [("f", f), ("g", g)] {
                        if set {
                            args.push(b(field));
                            args.push(self.weight_value());
                        }
                    }
                    exact(args)
                }
                65..=74 => {
                    let mut args = vec![self.rng.name("DEL")];
                    for _ in 0..self.rng.usize(1..=2) {
                        let prefix = self.rng.pick(&["w_", "o_"]);
                        args.push(self.weighted_key(prefix));
                    }
                    exact(args)
                }
                75..=93 => {
                    let mut args = vec![self.rng.name("RPUSH"), NUMBERS_KEY.to_vec()];
                    for _ in 0..self.rng.usize(1..=4) {
                        let number = if self.rng.chance(4) {
                            self.rng.pick(BAD_NUMBERS)
                        } else {
                            self.rng.pick(NUMBERS)
                        };
                        args.push(b(number));
                    }
                    exact(args)
                }
                _ => exact(vec![self.rng.name("DEL"), NUMBERS_KEY.to_vec()]),
            },
        }
    }

    /// Options for SCAN (`keys`: MATCH over keys, COUNT, and usually TYPE list/set/zset/
    /// string/hash) or SSCAN/ZSCAN (MATCH over members, COUNT).
    fn scan_options(&mut self, args: &mut Vec<Vec<u8>>, keys: bool) {
        if keys && self.rng.chance(80) {
            args.push(self.rng.word("TYPE"));
            let types = ["list", "set", "zset", "string", "hash", "LIST"];
            args.push(b(self.rng.pick(&types)));
        }
        for _ in 0..self.rng.usize(0..=2) {
            if self.rng.bool() {
                args.push(self.rng.word("MATCH"));
                let patterns = if keys { KEY_PATTERNS } else { MEMBER_PATTERNS };
                args.push(self.rng.pick(patterns).to_vec());
            } else {
                args.push(self.rng.word("COUNT"));
                if self.rng.chance(85) {
                    args.push(self.rng.small_int(1, 20));
                } else {
                    args.push(b(self.rng.pick(&["0", "-1", "abc", ""])));
                }
            }
        }
        if self.rng.chance(3) {
            args.push(b(self.rng.pick(&["BOGUS", "MATCH", "COUNT"])));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------

/// Compares replies that need no second look at the servers.
fn compare_plain(check: Check, a: &Frame, z: &Frame) -> Result<(), String> {
    let equal = match check {
        Check::Unordered | Check::SPop => sorted_items(a.clone()) == sorted_items(z.clone()),
        Check::Tolerance(tol) => match (a, z) {
            (Frame::Integer(x), Frame::Integer(y)) if *x >= 0 && *y >= 0 => {
                x.checked_sub(*y).is_some_and(|d| d.abs() <= tol)
            }
            _ => a == z,
        },
        Check::SRandMember | Check::ZRandMember => shape(a) == shape(z),
        Check::Sort(plan) => sort_replies_match(plan.loosest(), plan.row, a, z),
        Check::Exact | Check::Scan | Check::SScan | Check::ZScan | Check::Encoding => a == z,
    };
    if equal {
        Ok(())
    } else {
        Err(format!("replies differ ({check:?})"))
    }
}

/// A set's members as read with SMEMBERS (empty for a missing key or another type).
fn set_members(client: &mut Client, key: &[u8]) -> HashSet<Vec<u8>> {
    let reply = client.cmd(&[b"SMEMBERS", key]);
    reply
        .as_items()
        .unwrap_or(&[])
        .iter()
        .filter_map(|f| f.as_bytes().map(|m| m.to_vec()))
        .collect()
}

/// The reply with every string and double emptied: what SRANDMEMBER and ZRANDMEMBER
/// replies must agree on.
fn shape(frame: &Frame) -> Frame {
    match frame {
        Frame::Bulk(_) => Frame::Bulk(Vec::new()),
        Frame::Double(_) => Frame::Double(0.0),
        Frame::Array(items) => Frame::Array(items.iter().map(shape).collect()),
        Frame::Set(items) => Frame::Set(items.iter().map(shape).collect()),
        other => other.clone(),
    }
}

fn flatten_bulks(frame: &Frame, out: &mut Vec<Vec<u8>>) {
    match frame {
        Frame::Bulk(b) => out.push(b.clone()),
        Frame::Array(items) | Frame::Set(items) => items.iter().for_each(|f| flatten_bulks(f, out)),
        _ => {}
    }
}

/// Checks a (non-error) SRANDMEMBER reply against the set on the server that gave it.
fn check_srandmember(client: &mut Client, args: &[Vec<u8>], reply: &Frame) -> Result<(), String> {
    let Some(key) = args.get(1) else {
        return Ok(());
    };
    let members = set_members(client, key);
    let mut got = Vec::new();
    flatten_bulks(reply, &mut got);
    for m in &got {
        if !members.contains(m) {
            return Err(format!(
                "\"{}\" is not a member of the set",
                support::escape(m)
            ));
        }
    }
    let card = members.len();
    match args.len() {
        2 if (card == 0) != (*reply == Frame::Null) => {
            return Err(format!("a set of {card} members answered {reply}"));
        }
        3 => {
            let Some(count) = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            else {
                return Ok(());
            };
            if count >= 0 {
                let distinct: HashSet<&Vec<u8>> = got.iter().collect();
                if distinct.len() != got.len() {
                    return Err("a non-negative count returned a member twice".into());
                }
                let want = (count as u64).min(card as u64);
                if got.len() as u64 != want {
                    return Err(format!(
                        "count {count} on a set of {card} returned {} members",
                        got.len()
                    ));
                }
            } else {
                let want = if card == 0 { 0 } else { count.unsigned_abs() };
                if got.len() as u64 != want {
                    return Err(format!(
                        "count {count} on a set of {card} returned {} members",
                        got.len()
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The (member, score) pairs of a WITHSCORES reply: flat in RESP2, two-element arrays in
/// RESP3. `None` if it is neither.
fn score_pairs(items: &[Frame]) -> Option<Vec<(Vec<u8>, Frame)>> {
    let mut out = Vec::with_capacity(items.len() / 2);
    if matches!(items.first(), Some(Frame::Array(_))) {
        for item in items {
            match item {
                Frame::Array(pair) if pair.len() == 2 => {
                    out.push((pair[0].as_bytes()?.to_vec(), pair[1].clone()))
                }
                _ => return None,
            }
        }
    } else {
        if !items.len().is_multiple_of(2) {
            return None;
        }
        for pair in items.chunks(2) {
            out.push((pair[0].as_bytes()?.to_vec(), pair[1].clone()));
        }
    }
    Some(out)
}

/// Checks a (non-error) ZRANDMEMBER reply against the sorted set on the server that gave
/// it: every member has a score there (ZSCORE), with WITHSCORES the very score returned;
/// the number of members and their distinctness follow the count as for SRANDMEMBER.
fn check_zrandmember(client: &mut Client, args: &[Vec<u8>], reply: &Frame) -> Result<(), String> {
    let Some(key) = args.get(1) else {
        return Ok(());
    };
    let withscores = args.len() == 4 && args[3].eq_ignore_ascii_case(b"WITHSCORES");
    let got: Vec<(Vec<u8>, Option<Frame>)> = match reply {
        Frame::Null => Vec::new(),
        Frame::Bulk(m) => vec![(m.clone(), None)],
        Frame::Array(items) if withscores => score_pairs(items)
            .ok_or_else(|| "the reply is not member/score pairs".to_string())?
            .into_iter()
            .map(|(m, s)| (m, Some(s)))
            .collect(),
        Frame::Array(items) => items
            .iter()
            .map(|item| {
                item.as_bytes()
                    .map(|m| (m.to_vec(), None))
                    .ok_or_else(|| format!("{item} is not a member"))
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("unexpected reply {other}")),
    };
    for (member, score) in &got {
        let actual = client.cmd(&[b"ZSCORE", key.as_slice(), member.as_slice()]);
        if actual == Frame::Null || actual.is_error() {
            return Err(format!(
                "\"{}\" is not a member of the sorted set (ZSCORE answers {actual})",
                support::escape(member)
            ));
        }
        if let Some(score) = score {
            if *score != actual {
                return Err(format!(
                    "\"{}\" came with the score {score}, ZSCORE answers {actual}",
                    support::escape(member)
                ));
            }
        }
    }
    let card = match client.cmd(&[b"ZCARD", key.as_slice()]) {
        Frame::Integer(n) => n.max(0) as u64,
        other => return Err(format!("ZCARD answers {other}")),
    };
    if args.len() == 2 {
        if (card == 0) != (*reply == Frame::Null) {
            return Err(format!("a sorted set of {card} members answered {reply}"));
        }
        return Ok(());
    }
    let Some(count) = args
        .get(2)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|s| s.parse::<i64>().ok())
    else {
        return Ok(());
    };
    let want = if count >= 0 {
        let distinct: HashSet<&Vec<u8>> = got.iter().map(|(m, _)| m).collect();
        if distinct.len() != got.len() {
            return Err("a non-negative count returned a member twice".into());
        }
        (count as u64).min(card)
    } else if card == 0 {
        0
    } else {
        count.unsigned_abs()
    };
    if got.len() as u64 != want {
        return Err(format!(
            "count {count} on a sorted set of {card} returned {} members",
            got.len()
        ));
    }
    Ok(())
}

/// Asks both servers for the key's TYPE before an OBJECT ENCODING: `Some(marker)` when it
/// must be skipped (a set: Redis's set encoding depends on the set's history, as a set that
/// once left intset never goes back), an error when the types differ.
fn encoding_guard(
    redis: &mut Client,
    zankv: &mut Client,
    args: &[Vec<u8>],
) -> Result<Option<Frame>, String> {
    let Some(key) = args.get(2) else {
        return Ok(None);
    };
    let a = redis.cmd(&[b"TYPE", key.as_slice()]);
    let z = zankv.cmd(&[b"TYPE", key.as_slice()]);
    if a != z {
        return Err(format!(
            "TYPE before this OBJECT ENCODING differs\n  redis: {a}\n  zankv: {z}"
        ));
    }
    Ok(matches!(a.as_bytes(), Some(b"set")).then(|| {
        Frame::simple("(not sent: the key holds a set, whose encoding depends on its history)")
    }))
}

/// The most members an SPOP could pop, when it would pop some: `None` when the command
/// is an error whatever the set (a count that is not a positive integer, extra
/// arguments) or pops nothing (count 0).
fn spop_pops_at_most(args: &[Vec<u8>]) -> Option<u64> {
    match args.len() {
        2 => Some(1),
        3 => std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|&c| c > 0)
            .map(|c| c as u64),
        _ => None,
    }
}

/// Whether an SPOP gives the same result on both servers whatever their (equal) state.
fn spop_is_deterministic(args: &[Vec<u8>]) -> bool {
    !matches!(spop_pops_at_most(args), Some(n) if n < MAX_SET_CARD as u64)
}

/// Asks both servers for the set's size before an SPOP: `Some(marker)` when the SPOP must
/// be skipped (it would pop a random subset), an error when the sizes differ.
fn spop_guard(
    redis: &mut Client,
    zankv: &mut Client,
    args: &[Vec<u8>],
) -> Result<Option<Frame>, String> {
    let Some(limit) = spop_pops_at_most(args) else {
        return Ok(None);
    };
    let Some(key) = args.get(1) else {
        return Ok(None);
    };
    let a = redis.cmd(&[b"SCARD", key.as_slice()]);
    let z = zankv.cmd(&[b"SCARD", key.as_slice()]);
    if a != z {
        return Err(format!(
            "SCARD before this SPOP differs\n  redis: {a}\n  zankv: {z}"
        ));
    }
    match a {
        Frame::Integer(n) if n > 0 && n as u64 > limit => Ok(Some(Frame::simple(&format!(
            "(not sent: SCARD is {n}, the SPOP would pop a random subset)"
        )))),
        _ => Ok(None),
    }
}

/// How a SORT or SORT_RO is judged, read from its arguments as Redis reads them (a syntax
/// error or a LIMIT that is not a number: exactly, both must refuse it).
///
/// Redis sorts with glibc's qsort, which is stable (elements that compare equal keep the
/// key's own order), except with BY and a LIMIT that leaves elements out (its own partial
/// quicksort, not stable); zankv's sort is stable. Numeric ties are broken by the elements'
/// bytes, and ALPHA without BY compares the elements themselves (no two of them are equal as
/// C strings), so only ALPHA with BY can tie different elements (equal or both missing
/// values). The generator gives ALPHA with BY only LIMITs that keep every element; what is
/// left is a set's own order, which is Redis's hash order and zankv's byte order: it shows
/// when nothing is sorted (a BY without `*`, but not with STORE, where Redis sorts a set by
/// its members) and in ALPHA BY ties. Such replies are compared as rows in any order, or
/// by their length when LIMIT picks a window; such a STORE is not sent.
fn sort_plan(args: &[Vec<u8>]) -> Check {
    let exact = SortPlan {
        row: 1,
        on_set: SortVerdict::Exact,
        on_zset: SortVerdict::Exact,
        on_other: SortVerdict::Exact,
    };
    let number = |arg: &[u8]| {
        std::str::from_utf8(arg)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
    };
    let (mut alpha, mut sort_by, mut no_sort, mut store, mut gets) =
        (false, false, false, false, 0);
    let (mut offset, mut count) = (0, -1);
    let mut j = 2;
    while j < args.len() {
        let left = args.len() - j - 1;
        match args[j].to_ascii_lowercase().as_slice() {
            b"asc" | b"desc" => {}
            b"alpha" => alpha = true,
            b"limit" if left >= 2 => {
                let (Some(o), Some(c)) = (
                    number(args[j + 1].as_slice()),
                    number(args[j + 2].as_slice()),
                ) else {
                    return Check::Sort(exact);
                };
                (offset, count) = (o, c);
                j += 2;
            }
            b"store" if left >= 1 => {
                store = true;
                j += 1;
            }
            b"by" if left >= 1 => {
                if args[j + 1].contains(&b'*') {
                    sort_by = true;
                } else {
                    no_sort = true;
                }
                j += 1;
            }
            b"get" if left >= 1 => {
                gets += 1;
                j += 1;
            }
            _ => return Check::Sort(exact),
        }
        j += 1;
    }
    if store && args[0].eq_ignore_ascii_case(b"SORT_RO") {
        return Check::Sort(exact);
    }
    // Whether LIMIT leaves no element out of a key of at most `len` elements.
    let keeps_all = |len: i64| offset <= 0 && (count < 0 || count >= len);
    let ties = alpha && sort_by && !no_sort;
    let unordered = if keeps_all(MAX_SET_CARD as i64) {
        SortVerdict::Rows
    } else {
        SortVerdict::Count
    };
    let on_set = match (no_sort, ties, store) {
        (true, _, true) | (false, false, _) => SortVerdict::Exact,
        (_, _, true) => SortVerdict::Skip,
        _ => unordered,
    };
    let on_other = match (ties && !keeps_all(i64::MAX), store) {
        (false, _) => SortVerdict::Exact,
        (true, true) => SortVerdict::Skip,
        (true, false) => SortVerdict::Count,
    };
    let on_zset = match (ties, store) {
        (false, _) => on_other,
        (true, true) => SortVerdict::Skip,
        (true, false) => unordered,
    };
    Check::Sort(SortPlan {
        row: gets.max(1),
        on_set,
        on_zset,
        on_other,
    })
}

/// Whether two SORT replies agree under `verdict` (`row` values per element).
fn sort_replies_match(verdict: SortVerdict, row: usize, a: &Frame, z: &Frame) -> bool {
    match (verdict, a, z) {
        (SortVerdict::Rows, Frame::Array(x), Frame::Array(y)) => {
            sorted_rows(x, row) == sorted_rows(y, row)
        }
        (SortVerdict::Count | SortVerdict::Skip, Frame::Array(x), Frame::Array(y)) => {
            x.len() == y.len()
        }
        _ => a == z,
    }
}

/// A reply's values cut into rows of `row`, the rows sorted.
fn sorted_rows(items: &[Frame], row: usize) -> Vec<Vec<Frame>> {
    let mut rows: Vec<Vec<Frame>> = items.chunks(row).map(<[Frame]>::to_vec).collect();
    rows.sort_by_key(|r| r.iter().map(Frame::sort_key).collect::<Vec<_>>());
    rows
}

/// Runs a SORT or SORT_RO: both servers are asked the key's TYPE first, which picks the
/// plan's verdict; afterwards Redis's copy of a sorted set gets its encoding back.
fn run_sort(
    redis: &mut Client,
    zankv: &mut Client,
    args: &[Vec<u8>],
    plan: SortPlan,
) -> Result<Frame, String> {
    let verdict = match args.get(1) {
        Some(key) => {
            let a = redis.cmd(&[b"TYPE", key.as_slice()]);
            let z = zankv.cmd(&[b"TYPE", key.as_slice()]);
            if a != z {
                return Err(format!(
                    "TYPE before this SORT differs\n  redis: {a}\n  zankv: {z}"
                ));
            }
            match a.as_bytes() {
                Some(b"set") => plan.on_set,
                Some(b"zset") => plan.on_zset,
                _ => plan.on_other,
            }
        }
        None => SortVerdict::Exact,
    };
    if verdict == SortVerdict::Skip {
        return Ok(Frame::simple(
            "(not sent: the set's elements with equal ALPHA BY values would be stored in its own order)",
        ));
    }
    let a = redis.cmd_vec(args);
    let z = zankv.cmd_vec(args);
    if let Some(key) = args.get(1) {
        relist_zset(redis, key)?;
    }
    if sort_replies_match(verdict, plan.row, &a, &z) {
        Ok(a)
    } else {
        Err(format!(
            "replies differ (SORT, {verdict:?})\n  redis: {a}\n  zankv: {z}"
        ))
    }
}

/// SORT and SORT_RO turn a sorted set in Redis's small encoding (listpack) into a skiplist
/// for good, even on an error about the scores; zankv keeps no such state. Redis's OBJECT
/// ENCODING would then answer `skiplist`, and its lex range commands would walk a set with
/// mixed scores through the skiplist's random levels instead of in order. So Redis's copy
/// gets its encoding back: DUMP, then RESTORE with REPLACE and the same absolute expiry
/// (loading a small sorted set makes a listpack again).
fn relist_zset(redis: &mut Client, key: &[u8]) -> Result<(), String> {
    let encoding = redis.cmd(&[b"OBJECT", b"ENCODING", key]);
    if !matches!(encoding.as_bytes(), Some(b"skiplist")) {
        return Ok(());
    }
    let at = match redis.cmd(&[b"PEXPIRETIME", key]) {
        Frame::Integer(at) if at > 0 => at,
        _ => 0,
    };
    let dumped = redis.cmd(&[b"DUMP", key]);
    let Some(payload) = dumped.as_bytes() else {
        return Err(format!("harness: DUMP of the sorted set answered {dumped}"));
    };
    let at = at.to_string();
    let restored = redis.cmd(&[
        b"RESTORE",
        key,
        at.as_bytes(),
        payload,
        b"REPLACE",
        b"ABSTTL",
    ]);
    let encoding = redis.cmd(&[b"OBJECT", b"ENCODING", key]);
    if restored != Frame::simple("OK") || !matches!(encoding.as_bytes(), Some(b"listpack")) {
        return Err(format!(
            "harness: RESTORE of the sorted set answered {restored}, encoding {encoding}"
        ));
    }
    Ok(())
}

/// Runs one step on both servers. Returns the reference reply for the history, or a
/// description of the mismatch.
fn run_step(redis: &mut Client, zankv: &mut Client, step: &Step) -> Result<Frame, String> {
    if let Check::Sort(plan) = step.check {
        return run_sort(redis, zankv, &step.args, plan);
    }
    match step.check {
        Check::Scan | Check::SScan | Check::ZScan => {
            let cursor_at = if step.check == Check::Scan { 1 } else { 2 };
            let pairs = step.check == Check::ZScan;
            return diff::compare_scans(redis, zankv, &step.args, cursor_at, pairs);
        }
        Check::SPop => {
            if let Some(skipped) = spop_guard(redis, zankv, &step.args)? {
                return Ok(skipped);
            }
        }
        Check::Encoding => {
            if let Some(skipped) = encoding_guard(redis, zankv, &step.args)? {
                return Ok(skipped);
            }
        }
        _ => {}
    }
    let a = redis.cmd_vec(&step.args);
    let z = zankv.cmd_vec(&step.args);
    let verdict = match step.check {
        Check::SRandMember | Check::ZRandMember => {
            let check_random: RandomCheck = if step.check == Check::SRandMember {
                check_srandmember
            } else {
                check_zrandmember
            };
            judge_random(redis, zankv, &step.args, &a, &z, shape, check_random)
        }
        check => compare_plain(check, &a, &z),
    };
    match verdict {
        Ok(()) => Ok(a),
        Err(why) => Err(format!("{why}\n  redis: {a}\n  zankv: {z}")),
    }
}

/// A key's contents for the end-of-run comparison, by its TYPE: a list's elements in
/// order, a set's members (sorted), a hash's field/value pairs (sorted), a sorted set's
/// members with their scores in order, GET for anything else.
fn content(client: &mut Client, key: &[u8], kind: Option<&[u8]>) -> Frame {
    match kind {
        Some(b"list") => client.cmd(&[b"LRANGE", key, b"0", b"-1"]),
        Some(b"set") => sorted_items(client.cmd(&[b"SMEMBERS", key])),
        Some(b"hash") => sorted_pairs(client.cmd(&[b"HGETALL", key])),
        Some(b"zset") => client.cmd(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]),
        _ => client.cmd(&[b"GET", key]),
    }
}

/// Runs one seed against a fresh node; panics with a full report on the first mismatch.
fn run_seed(seed: u64, ops: usize, resp3: bool) {
    run_seed_on(seed, ops, resp3, Target::Node)
}

/// Runs one seed against `target`.
fn run_seed_on(seed: u64, ops: usize, resp3: bool, target: Target) {
    let started = Instant::now();
    let mut pair = must_start_pair_on(resp3, target);
    let mut gen = Gen::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    // ZANKV_DIFF_TRACE=1 prints every command and redis's reply (with --nocapture).
    let trace = std::env::var_os("ZANKV_DIFF_TRACE").is_some();
    for i in 0..ops {
        let step = gen.step();
        let cmd = show_cmd(&step.args);
        match run_step(&mut pair.redis, &mut pair.zankv, &step) {
            Ok(reply) => {
                if trace {
                    eprintln!("#{i} {cmd} -> {reply}");
                }
                log.record(i, &step.args, &cmd, &reply);
            }
            Err(detail) => panic!("{}", log.report(&i.to_string(), &cmd, &detail)),
        }
    }
    diff::compare_final_state(&mut pair, &log, content, |tolerance, a, z| {
        compare_plain(tolerance.map_or(Check::Exact, Check::Tolerance), a, z)
    });
    log.print_stats();
    eprintln!(
        "collections seed {seed} ({}): {ops} commands in {:?}",
        log.proto(),
        started.elapsed()
    );
}

#[test]
fn collections_resp2_fixed_seeds() {
    match seed_from_env() {
        Some(seed) => run_seed(seed, OPS_PER_SEED, false),
        None => FIXED_SEEDS
            .iter()
            .chain(REGRESSION_SEEDS)
            .for_each(|&seed| run_seed(seed, OPS_PER_SEED, false)),
    }
}

#[test]
fn collections_resp2_random_seed() {
    if seed_from_env().is_some() {
        return;
    }
    let seed = fastrand::u64(1_000_000..);
    eprintln!("collections differential random seed: {seed} (rerun with ZANKV_DIFF_SEED={seed})");
    run_seed(seed, OPS_PER_SEED, false);
}

#[test]
fn collections_resp3() {
    match seed_from_env() {
        Some(seed) => run_seed(seed, OPS_PER_RESP3_SEED, true),
        None => RESP3_SEEDS
            .iter()
            .for_each(|&seed| run_seed(seed, OPS_PER_RESP3_SEED, true)),
    }
}

/// Commands sent in pipelines: each chunk of commands goes out in one write, and only then
/// are the replies read. Steps that need follow-up commands (SCAN/SSCAN/ZSCAN iterations, an
/// SPOP that could pop a random subset, OBJECT ENCODING's TYPE check) are left out;
/// SRANDMEMBER and ZRANDMEMBER replies are compared by shape only.
fn run_pipelined_seed_on(seed: u64, ops: usize, chunk: usize, target: Target) {
    let started = Instant::now();
    let mut pair = must_start_pair_on(false, target);
    let mut gen = Gen::new(seed);
    let mut sent = 0;
    while sent < ops {
        let mut steps = Vec::new();
        while steps.len() < chunk {
            let step = gen.step();
            let pipelinable = match step.check {
                Check::Scan | Check::SScan | Check::ZScan | Check::Encoding => false,
                Check::SPop => spop_is_deterministic(&step.args),
                Check::Sort(plan) => plan.loosest() != SortVerdict::Skip,
                _ => true,
            };
            if pipelinable {
                let sort = matches!(step.check, Check::Sort(_));
                steps.push(step);
                if sort {
                    // Redis's sorted set gets its encoding back before the next command.
                    break;
                }
            }
        }
        sent += steps.len();
        let commands: Vec<&[Vec<u8>]> = steps.iter().map(|s| s.args.as_slice()).collect();
        let replies = diff::send_pipeline(&mut pair, seed, &commands);
        for (i, (step, (a, z))) in steps.iter().zip(&replies).enumerate() {
            if let Err(why) = compare_plain(step.check, a, z) {
                let earlier = Some(sent - steps.len());
                let report =
                    diff::pipeline_report(SUITE, seed, i, &commands, &replies, &why, earlier);
                panic!("{report}");
            }
        }
        for step in &steps {
            if let (Check::Sort(_), Some(key)) = (step.check, step.args.get(1)) {
                if let Err(why) = relist_zset(&mut pair.redis, key) {
                    panic!("seed {seed}: {why}");
                }
            }
        }
    }
    eprintln!(
        "collections seed {seed} (pipelined by {chunk}): {sent} commands in {:?}",
        started.elapsed()
    );
}

#[test]
fn collections_resp2_pipelined() {
    match seed_from_env() {
        Some(seed) => {
            run_pipelined_seed_on(seed, OPS_PER_PIPELINED_SEED, PIPELINE_CHUNK, Target::Node)
        }
        None => PIPELINED_SEEDS.iter().for_each(|&seed| {
            run_pipelined_seed_on(seed, OPS_PER_PIPELINED_SEED, PIPELINE_CHUNK, Target::Node)
        }),
    }
}

/// The same sequences (fewer commands) through the proxy, in front of PD and three storage
/// nodes holding a one-partition namespace with three replicas (so DBSIZE, KEYS, SCAN,
/// FLUSHALL and LMPOP/SINTERCARD/ZMPOP/ZUNION/ZINTERCARD ... with a bad numkeys have one
/// partition to go to): RESP2, RESP3 and pipelined.
#[test]
fn collections_through_the_proxy() {
    let cluster = support::proxy::ProxiedCluster::must_start(1, 3, "");
    let target = Target::Proxy(cluster.proxy.port);
    let seeds: Vec<u64> = match seed_from_env() {
        Some(seed) => vec![seed],
        None => vec![1, 2],
    };
    for &seed in &seeds {
        run_seed_on(seed, OPS_THROUGH_PROXY, false, target);
    }
    run_seed_on(seeds[0] + 100, OPS_THROUGH_PROXY, true, target);
    run_pipelined_seed_on(seeds[0] + 10, OPS_THROUGH_PROXY, PIPELINE_CHUNK, target);
    let metrics = cluster.proxy.metrics();
    assert!(
        metrics.contains("zankv_proxy_commands_total{command=\"sadd\"}")
            && metrics.contains("zankv_proxy_commands_total{command=\"lpush\"}")
            && metrics.contains("zankv_proxy_commands_total{command=\"zadd\"}"),
        "the proxy forwarded the commands: {metrics}"
    );
}
