//! Differential test: seeded random command sequences run against a fresh `redis-server`
//! (7.0, the reference) and a fresh zankv node, comparing every reply.
//!
//! What is compared, and why some replies are normalised first:
//! - Most replies must be identical, error texts included.
//! - KEYS, HKEYS, HVALS: multisets (order is hash-table order, which Redis leaves open).
//! - HGETALL: multiset of field/value pairs (RESP2 flat array or RESP3 map alike).
//! - TTL/EXPIRETIME (±1 s) and PTTL/PEXPIRETIME (±1500 ms) when both are non-negative,
//!   because each server counts relative expirations from its own clock.
//! - SCAN/HSCAN: each server is iterated from cursor 0 to the end; the *sets* of keys
//!   (field/value pairs) must match. Cursors themselves are never compared.
//! - RANDOMKEY: nil on both or a key on both, and the returned key exists on that server.
//! - HRANDFIELD: same reply shape (kinds and lengths), and every returned field (and value)
//!   belongs to the hash on that server; with a positive count, fields are distinct.
//!
//! Time rules, so that no reply depends on timing: relative expirations are either ≥ 100 s
//! or already in the past; every relative TTL in a run is a distinct multiple of 100 s and
//! every absolute one (computed once by the harness, the same for both servers) is 50 s off
//! that grid, so GT/LT comparisons between two expirations are never near a tie. No key is
//! ever meant to expire during a run.
//!
//! Wrong arity and syntax errors come from mutating generated commands (dropping the last
//! argument or appending a junk one) besides the invalid options and numbers generated on
//! purpose. After the last command of a seed the whole database is compared (KEYS, DBSIZE,
//! and per key TYPE, value or hash contents, PTTL). The RESP3 run sends HELLO 3 on both
//! connections first and compares the same way (maps as maps).
//!
//! On a mismatch the panic names the seed, the command index, the command (escaped), both
//! replies and the commands before it. `ZANKV_DIFF_SEED=N` runs only seed N (in RESP2 and
//! RESP3); a seed that once failed belongs in [`REGRESSION_SEEDS`]. `ZANKV_DIFF_STATS=1`
//! prints, per seed, how often each command ran and which errors it met (with
//! `--nocapture`), to check that the generator still reaches the commands' real work.
//!
//! What this test shares with `collections_differential.rs` (the random primitives, the
//! pair of servers, reports, stats, the final comparison, pipelines) is in `support/diff.rs`.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use support::diff::{self, b, must_start_pair_on, sorted_items, sorted_pairs, Rand, Suite};
use support::diff::{seed_from_env, Pair, RunLog, Target};
use support::{show_cmd, Client, Frame};

/// How this test names itself in its reports.
const SUITE: Suite = Suite {
    name: "differential",
    target: "differential",
    skips: false,
};

/// Seeds run on every `cargo test`.
const FIXED_SEEDS: [u64; 20] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
];

/// Seeds that once found a bug: kept forever.
/// Seeds that found bugs: 2 and 101 (`SCAN ""` is cursor 0), 3 (CR/LF echoed in an error
/// reply), 1001, 1006, 1016 and 1041 (expired keys deleted on access, also by a command that
/// then fails).
const REGRESSION_SEEDS: &[u64] = &[2, 3, 101, 1001, 1006, 1016, 1041];

/// Seeds for the RESP3 run (smaller).
const RESP3_SEEDS: [u64; 6] = [101, 102, 103, 104, 105, 106];

/// Commands per RESP2 seed.
const OPS_PER_SEED: usize = 600;

/// Commands per RESP3 seed.
const OPS_PER_RESP3_SEED: usize = 300;

/// The key space: small, so commands collide; one binary key. String commands prefer the
/// first three and hash commands the last three (see [`Gen::string_key`]), so that most
/// commands reach their real work while type clashes stay frequent.
const KEYS: [&[u8]; 6] = [b"k0", b"k1", b"k2", b"k3", b"k:4", b"b\x00\r\n\xff"];

/// Percentage of string/hash commands that pick any key instead of one of their family's.
const CROSS_FAMILY_PERCENT: u32 = 15;

/// Hash fields: small, one empty and one binary.
const FIELDS: [&[u8]; 5] = [b"f0", b"f1", b"f2", b"", b"\x00\r\n\xfe"];

const NUMERIC_LOOKING: &[&str] = &[
    "10",
    "-0",
    "007",
    " 1",
    "1 ",
    "1e3",
    "0x10",
    "3.0",
    "inf",
    "-inf",
    "nan",
    "+5",
    "",
    "0",
    "1",
    "-1",
    "42",
    "-17",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "9223372036854775808",
    "-9223372036854775809",
    "1.5",
    "-2.5",
    "0.1",
    "1e308",
    "-1e308",
    "12abc",
    "-",
    " ",
    "5.0e3",
    "3e-5",
    "1.7976931348623157e309",
    "0.0",
    "-0.0",
    ".5",
    "5.",
    "1_000",
    "٣",
];

const INT_BAD: &[&str] = &[
    "abc",
    "1.5",
    " 1",
    "1 ",
    "",
    "0x10",
    "+5",
    "007",
    "-0",
    "1e3",
    "9223372036854775808",
    "-9223372036854775809",
    "\x001",
];

const INT_EXTREME: &[&str] = &[
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775806",
    "-9223372036854775807",
    "4611686018427387904",
    "-4611686018427387904",
];

const FLOATS: &[&str] = &[
    "0.1",
    "1.5",
    "-2.5",
    "3",
    "10",
    "1e3",
    "-1e3",
    "5.0e3",
    "1e308",
    "-1e308",
    "inf",
    "-inf",
    "+inf",
    "nan",
    "abc",
    "",
    " 1",
    "1 ",
    "0x10",
    "+1.5",
    "1e-300",
    "1.7976931348623157e308",
    "-0",
    "3.0",
    "0.3",
    "-0.1",
    "1e400",
    "2.5e-3",
    ".5",
    "7.",
];

/// Relative times (s or ms) that are errors or already in the past for every command.
const REL_TIME_BAD: &[&str] = &[
    "abc",
    "",
    "1.5",
    " 100",
    "100 ",
    "0x10",
    "+100",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "1e3",
];

const REL_TIME_PAST: &[&str] = &["0", "-1", "-100", "-1000000"];

const PATTERNS: &[&[u8]] = &[
    b"*", b"k*", b"k?", b"?:4", b"k[0-2]", b"k[^0]", b"k[2-0]", b"*[34]", b"b*", b"\\k0", b"k\\*",
    b"*\\**", b"[a-k]*", b"b\x00*", b"*\xff", b"k[", b"[", b"\\", b"k0", b"nope*", b"*:*", b"K*",
    b"?", b"??", b"*?*", b"[!k]*", b"k[0-9]*", b"",
];

const FIELD_PATTERNS: &[&[u8]] = &[b"*", b"f*", b"f?", b"", b"[f]0", b"*\x00*", b"?", b"f[^1]"];

/// How a reply pair is judged.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Check {
    Exact,
    /// Array elements as a multiset.
    Unordered,
    /// Field/value pairs as a multiset.
    Pairs,
    /// Integers within ± the given amount when both are ≥ 0.
    Tolerance(i64),
    /// Full SCAN iteration (cursor is argument 1).
    Scan,
    /// Full HSCAN iteration (cursor is argument 2).
    HScan,
    RandomKey,
    HRandField,
}

struct Step {
    args: Vec<Vec<u8>>,
    check: Check,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Ping,
    Echo,
    Auth,
    Select,
    DbSize,
    Del,
    Unlink,
    Exists,
    Type,
    Touch,
    Expire,
    PExpire,
    ExpireAt,
    PExpireAt,
    Ttl,
    PTtl,
    ExpireTime,
    PExpireTime,
    Persist,
    Rename,
    RenameNx,
    Copy,
    Keys,
    Scan,
    ScanBadCursor,
    RandomKey,
    FlushDb,
    Get,
    Set,
    SetNx,
    SetEx,
    PSetEx,
    GetSet,
    GetDel,
    GetEx,
    MGet,
    MSet,
    MSetNx,
    Incr,
    Decr,
    IncrBy,
    DecrBy,
    IncrByFloat,
    Append,
    Strlen,
    GetRange,
    Substr,
    Lcs,
    BitOp,
    BitField,
    SetRange,
    SetBit,
    GetBit,
    BitCount,
    BitPos,
    HSet,
    HSetNx,
    HGet,
    HMGet,
    HMSet,
    HDel,
    HLen,
    HStrlen,
    HExists,
    HKeys,
    HVals,
    HGetAll,
    HIncrBy,
    HIncrByFloat,
    HRandField,
    HScan,
    Unknown,
}

/// Command kinds and their relative weights.
const MENU: &[(Kind, u32)] = &[
    (Kind::Ping, 5),
    (Kind::Echo, 3),
    (Kind::Auth, 2),
    (Kind::Select, 2),
    (Kind::DbSize, 6),
    (Kind::Del, 10),
    (Kind::Unlink, 4),
    (Kind::Exists, 8),
    (Kind::Type, 8),
    (Kind::Touch, 3),
    (Kind::Expire, 10),
    (Kind::PExpire, 8),
    (Kind::ExpireAt, 7),
    (Kind::PExpireAt, 7),
    (Kind::Ttl, 10),
    (Kind::PTtl, 8),
    (Kind::ExpireTime, 5),
    (Kind::PExpireTime, 5),
    (Kind::Persist, 6),
    (Kind::Rename, 6),
    (Kind::RenameNx, 4),
    (Kind::Copy, 6),
    (Kind::Keys, 6),
    (Kind::Scan, 6),
    (Kind::ScanBadCursor, 1),
    (Kind::RandomKey, 4),
    (Kind::FlushDb, 1),
    (Kind::Get, 18),
    (Kind::Set, 40),
    (Kind::SetNx, 5),
    (Kind::SetEx, 5),
    (Kind::PSetEx, 5),
    (Kind::GetSet, 5),
    (Kind::GetDel, 5),
    (Kind::GetEx, 8),
    (Kind::MGet, 8),
    (Kind::MSet, 8),
    (Kind::MSetNx, 5),
    (Kind::Incr, 6),
    (Kind::Decr, 4),
    (Kind::IncrBy, 8),
    (Kind::DecrBy, 5),
    (Kind::IncrByFloat, 10),
    (Kind::Append, 8),
    (Kind::Strlen, 6),
    (Kind::GetRange, 8),
    (Kind::Substr, 2),
    (Kind::Lcs, 6),
    (Kind::BitOp, 5),
    (Kind::BitField, 10),
    (Kind::SetRange, 8),
    (Kind::SetBit, 8),
    (Kind::GetBit, 6),
    (Kind::BitCount, 8),
    (Kind::BitPos, 8),
    (Kind::HSet, 30),
    (Kind::HSetNx, 6),
    (Kind::HGet, 12),
    (Kind::HMGet, 8),
    (Kind::HMSet, 6),
    (Kind::HDel, 10),
    (Kind::HLen, 6),
    (Kind::HStrlen, 5),
    (Kind::HExists, 6),
    (Kind::HKeys, 6),
    (Kind::HVals, 6),
    (Kind::HGetAll, 10),
    (Kind::HIncrBy, 10),
    (Kind::HIncrByFloat, 8),
    (Kind::HRandField, 8),
    (Kind::HScan, 6),
    (Kind::Unknown, 2),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// The command generator. Deterministic for a seed, except that absolute times are taken
/// from the clock when generated (both servers get the same arguments).
struct Gen {
    rng: Rand,
    /// Absolute offsets already handed out, in seconds (all ≡ 50 mod 100).
    used_abs: HashSet<i64>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: Rand::new(seed),
            used_abs: HashSet::new(),
        }
    }

    fn key(&mut self) -> Vec<u8> {
        self.rng.pick(&KEYS).to_vec()
    }

    /// A key for a string command: usually k0..k2.
    fn string_key(&mut self) -> Vec<u8> {
        if self.rng.chance(CROSS_FAMILY_PERCENT) {
            self.key()
        } else {
            KEYS[self.rng.usize(0..3)].to_vec()
        }
    }

    /// A key for a hash command: usually k3, k:4 or the binary key.
    fn hash_key(&mut self) -> Vec<u8> {
        if self.rng.chance(CROSS_FAMILY_PERCENT) {
            self.key()
        } else {
            KEYS[self.rng.usize(3..6)].to_vec()
        }
    }

    fn keys(&mut self, min: usize, max: usize) -> Vec<Vec<u8>> {
        let n = self.rng.usize(min..=max);
        (0..n).map(|_| self.key()).collect()
    }

    fn field(&mut self) -> Vec<u8> {
        self.rng.pick(&FIELDS).to_vec()
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=19 => self.rng.small_int(-1000, 1000),
            20..=24 => b(self.rng.pick(INT_EXTREME)),
            25..=32 => b(self.rng.pick(&[
                "1.5", "-0.25", "3.0", "1e3", "0.1", "10.5", "-7.125", "2.5e-3",
            ])),
            33..=52 => b(self.rng.pick(NUMERIC_LOOKING)),
            53..=64 => {
                let n = self.rng.usize(0..=12);
                (0..n)
                    .map(|_| match self.rng.u32(0..6) {
                        0 => 0,
                        1 => b'\r',
                        2 => b'\n',
                        _ => self.rng.u8(..),
                    })
                    .collect()
            }
            65..=96 => {
                let words = [
                    "hello",
                    "v",
                    "foo bar",
                    "x",
                    "zankv",
                    "\"quoted\"",
                    "a\tb",
                    "é",
                ];
                let w = self.rng.pick(&words);
                if self.rng.bool() {
                    b(w)
                } else {
                    format!("{w}{}", self.rng.u32(0..1000)).into_bytes()
                }
            }
            _ => {
                let n = self.rng.usize(100..=2000);
                (0..n).map(|_| self.rng.u8(..)).collect()
            }
        }
    }

    /// An integer argument: mostly small, sometimes extreme, sometimes not an integer.
    fn int_arg(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=74 => self.rng.small_int(-100, 100),
            75..=86 => b(self.rng.pick(INT_EXTREME)),
            _ => b(self.rng.pick(INT_BAD)),
        }
    }

    fn float_arg(&mut self) -> Vec<u8> {
        if self.rng.chance(25) {
            self.rng.small_int(-50, 50)
        } else {
            b(self.rng.pick(FLOATS))
        }
    }

    /// A range bound for GETRANGE/BITCOUNT/BITPOS.
    fn range_arg(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=79 => self.rng.small_int(-12, 12),
            80..=91 => b(self.rng.pick(&[
                "9223372036854775807",
                "-9223372036854775808",
                "100000",
                "-100000",
                "2147483648",
            ])),
            _ => b(self.rng.pick(&["abc", "", "1.5", " 1"])),
        }
    }

    /// A distinct absolute expiration in unix seconds: now + 100k + 50 for a fresh k.
    fn fresh_abs_secs(&mut self) -> i64 {
        loop {
            let offset = 100 * self.rng.i64(1..=100_000) + 50;
            if self.used_abs.insert(offset) {
                return now_ms() / 1000 + offset;
            }
        }
    }

    /// A relative time argument; `ms` scales valid values to milliseconds.
    fn rel_time(&mut self, ms: bool) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=74 => {
                let s = self.rng.fresh_rel_secs();
                (if ms { s * 1000 } else { s }).to_string().into_bytes()
            }
            75..=84 => b(self.rng.pick(REL_TIME_PAST)),
            _ => b(self.rng.pick(REL_TIME_BAD)),
        }
    }

    /// An absolute time argument (unix seconds or ms; ms values have any sub-second part,
    /// so EXPIRETIME's rounding is exercised).
    fn abs_time(&mut self, ms: bool) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=74 => {
                let s = self.fresh_abs_secs();
                let v = if ms {
                    s * 1000 + self.rng.i64(0..1000)
                } else {
                    s
                };
                v.to_string().into_bytes()
            }
            75..=86 => {
                let past = now_ms() / 1000 - self.rng.i64(1..=1_000_000);
                let v = if ms { past * 1000 } else { past };
                if self.rng.bool() {
                    v.to_string().into_bytes()
                } else {
                    b(self.rng.pick(&["0", "1", "-1", "-9223372036854775808"]))
                }
            }
            87..=89 => b("9223372036854775807"),
            _ => b(self.rng.pick(&["abc", "", "1.5", " 1", "1e12"])),
        }
    }

    fn bit_offset(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=69 => self.rng.small_int(0, 64),
            70..=84 => self.rng.small_int(64, 400),
            // Never a large valid offset: that would allocate up to 512 MB.
            _ => {
                let bad = ["-1", "4294967296", "abc", "1.0", "", "9223372036854775807"];
                b(self.rng.pick(&bad))
            }
        }
    }

    /// One BITFIELD subcommand: mostly valid (BITFIELD_RO: mostly GET), sometimes a bad
    /// type, offset, value or overflow mode.
    fn bitfield_op(&mut self, args: &mut Vec<Vec<u8>>, read_only: bool) {
        let op = match self.rng.u32(0..100) {
            0..=39 => "GET",
            _ if read_only && self.rng.chance(80) => "GET",
            40..=64 => "INCRBY",
            65..=84 => "SET",
            85..=97 => "OVERFLOW",
            _ => "FOO",
        };
        args.push(self.rng.word(op));
        if op == "OVERFLOW" {
            let mode = self
                .rng
                .pick(&["WRAP", "SAT", "FAIL", "fail", "sat", "NONE"]);
            args.push(self.rng.word(mode));
            return;
        }
        let signed = self.rng.chance(50);
        let ty = match self.rng.u32(0..100) {
            0..=94 => {
                let max = if signed { 64 } else { 63 };
                let bits = match self.rng.u32(0..4) {
                    0 => max,
                    1 => self.rng.u32(1..4),
                    _ => self.rng.u32(1..max + 1),
                };
                format!("{}{bits}", if signed { "i" } else { "u" })
            }
            _ => self
                .rng
                .pick(&["u64", "i65", "i0", "x8", "i", "U8"])
                .to_string(),
        };
        args.push(ty.into_bytes());
        args.push(match self.rng.u32(0..100) {
            0..=69 => self.rng.small_int(0, 80),
            70..=89 => format!("#{}", self.rng.u32(0..8)).into_bytes(),
            90..=95 => self.rng.small_int(80, 300),
            _ => b(self.rng.pick(&["-1", "#-1", "4294967296", "x", "#"])),
        });
        if op == "SET" || op == "INCRBY" {
            args.push(match self.rng.u32(0..100) {
                0..=59 => self.rng.small_int(-20, 300),
                60..=89 => b(self.rng.pick(&[
                    "9223372036854775807",
                    "-9223372036854775808",
                    "127",
                    "-128",
                    "255",
                    "4611686018427387904",
                ])),
                _ => b(self.rng.pick(&["1.5", "x", "9223372036854775808"])),
            });
        }
    }

    fn range_offset(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=69 => self.rng.small_int(0, 40),
            70..=84 => self.rng.small_int(40, 300),
            // 536870912 is one past the largest legal offset for a 1-byte value; it only
            // "succeeds" with an empty value, which allocates nothing.
            _ => {
                let bad = ["-1", "536870912", "9223372036854775807", "abc", ""];
                b(self.rng.pick(&bad))
            }
        }
    }

    fn step(&mut self) -> Step {
        let kind = self.rng.weighted(MENU);
        let mut step = self.build(kind);
        // Mutations: wrong arity and trailing junk for commands judged by their reply alone.
        if matches!(
            step.check,
            Check::Exact | Check::Unordered | Check::Pairs | Check::Tolerance(_)
        ) {
            self.rng.mutate(&mut step.args, 4, 3);
        }
        step
    }

    fn build(&mut self, kind: Kind) -> Step {
        use Check::*;
        let exact = |args: Vec<Vec<u8>>| Step { args, check: Exact };
        match kind {
            Kind::Ping => {
                let mut args = vec![self.rng.name("PING")];
                if self.rng.bool() {
                    args.push(self.value());
                }
                exact(args)
            }
            Kind::Echo => exact(vec![self.rng.name("ECHO"), self.value()]),
            Kind::Auth => {
                // Neither server has a password: only `default` with any password passes.
                let mut args = vec![self.rng.name("AUTH")];
                match self.rng.u8(0..4) {
                    0 => {}
                    1 => args.push(b("default")),
                    2 => args.push(b("someone")),
                    _ => args.extend([b("a"), b("b")]),
                }
                args.push(self.value());
                exact(args)
            }
            Kind::Select => exact(vec![self.rng.name("SELECT"), b("0")]),
            // A key SET with a time already past (EXAT/PXAT) is counted until it is
            // deleted, which each side does in its own time (Redis's expiry cycle, zankv's
            // background expiry): each string key may be one of them.
            Kind::DbSize => Step {
                args: vec![self.rng.name("DBSIZE")],
                check: Check::Tolerance(4),
            },
            Kind::Del | Kind::Unlink | Kind::Exists | Kind::Touch => {
                let name = match kind {
                    Kind::Del => "DEL",
                    Kind::Unlink => "UNLINK",
                    Kind::Exists => "EXISTS",
                    _ => "TOUCH",
                };
                let mut args = vec![self.rng.name(name)];
                args.extend(self.keys(1, 3));
                exact(args)
            }
            Kind::Type => exact(vec![self.rng.name("TYPE"), self.key()]),
            Kind::Expire | Kind::PExpire | Kind::ExpireAt | Kind::PExpireAt => {
                let (name, time) = match kind {
                    Kind::Expire => ("EXPIRE", self.rel_time(false)),
                    Kind::PExpire => ("PEXPIRE", self.rel_time(true)),
                    Kind::ExpireAt => ("EXPIREAT", self.abs_time(false)),
                    _ => ("PEXPIREAT", self.abs_time(true)),
                };
                let mut args = vec![self.rng.name(name), self.key(), time];
                let flags = match self.rng.u32(0..10) {
                    0..=3 => 0,
                    4..=8 => 1,
                    _ => 2,
                };
                for _ in 0..flags {
                    let choices = ["NX", "XX", "GT", "LT", "NX", "GT", "LT", "BOGUS"];
                    let flag = self.rng.pick(&choices);
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
            Kind::ExpireTime => Step {
                args: vec![self.rng.name("EXPIRETIME"), self.key()],
                check: Tolerance(1),
            },
            Kind::PExpireTime => Step {
                args: vec![self.rng.name("PEXPIRETIME"), self.key()],
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
            Kind::Keys => Step {
                args: vec![self.rng.name("KEYS"), self.rng.pick(PATTERNS).to_vec()],
                check: Unordered,
            },
            Kind::Scan => {
                // Redis 7.0 parses an empty cursor as 0 (strtoul with no digits).
                let start = if self.rng.chance(5) { b("") } else { b("0") };
                let mut args = vec![self.rng.name("SCAN"), start];
                self.scan_options(&mut args, true);
                Step { args, check: Scan }
            }
            Kind::ScanBadCursor => {
                let cursor =
                    self.rng
                        .pick(&["abc", " 0", "0x", "1.5", "18446744073709551616", "-"]);
                exact(vec![self.rng.name("SCAN"), b(cursor)])
            }
            Kind::RandomKey => Step {
                args: vec![self.rng.name("RANDOMKEY")],
                check: RandomKey,
            },
            Kind::FlushDb => exact(vec![self.rng.name("FLUSHDB")]),
            Kind::Get => exact(vec![self.rng.name("GET"), self.string_key()]),
            Kind::Set => {
                let mut args = vec![self.rng.name("SET"), self.string_key(), self.value()];
                self.set_options(&mut args);
                exact(args)
            }
            Kind::SetNx => exact(vec![
                self.rng.name("SETNX"),
                self.string_key(),
                self.value(),
            ]),
            Kind::SetEx => exact(vec![
                self.rng.name("SETEX"),
                self.string_key(),
                self.rel_time(false),
                self.value(),
            ]),
            Kind::PSetEx => exact(vec![
                self.rng.name("PSETEX"),
                self.string_key(),
                self.rel_time(true),
                self.value(),
            ]),
            Kind::GetSet => exact(vec![
                self.rng.name("GETSET"),
                self.string_key(),
                self.value(),
            ]),
            Kind::GetDel => exact(vec![self.rng.name("GETDEL"), self.string_key()]),
            Kind::GetEx => {
                let mut args = vec![self.rng.name("GETEX"), self.string_key()];
                let n = match self.rng.u32(0..10) {
                    0..=2 => 0,
                    3..=8 => 1,
                    _ => 2,
                };
                for _ in 0..n {
                    match self.rng.u32(0..6) {
                        0 => {
                            args.push(self.rng.word("EX"));
                            args.push(self.rel_time(false));
                        }
                        1 => {
                            args.push(self.rng.word("PX"));
                            args.push(self.rel_time(true));
                        }
                        2 => {
                            args.push(self.rng.word("EXAT"));
                            args.push(self.abs_time(false));
                        }
                        3 => {
                            args.push(self.rng.word("PXAT"));
                            args.push(self.abs_time(true));
                        }
                        4 => args.push(self.rng.word("PERSIST")),
                        _ => {
                            let w = self.rng.pick(&["EX", "KEEPTTL", "BOGUS"]);
                            args.push(self.rng.word(w));
                        }
                    }
                }
                exact(args)
            }
            Kind::MGet => {
                let mut args = vec![self.rng.name("MGET")];
                args.extend(self.keys(1, 4));
                exact(args)
            }
            Kind::MSet | Kind::MSetNx => {
                let mut args = vec![self.rng.name(if matches!(kind, Kind::MSet) {
                    "MSET"
                } else {
                    "MSETNX"
                })];
                for _ in 0..self.rng.usize(1..=3) {
                    args.push(self.string_key());
                    args.push(self.value());
                }
                exact(args)
            }
            Kind::Incr => exact(vec![self.rng.name("INCR"), self.string_key()]),
            Kind::Decr => exact(vec![self.rng.name("DECR"), self.string_key()]),
            Kind::IncrBy => exact(vec![
                self.rng.name("INCRBY"),
                self.string_key(),
                self.int_arg(),
            ]),
            Kind::DecrBy => exact(vec![
                self.rng.name("DECRBY"),
                self.string_key(),
                self.int_arg(),
            ]),
            Kind::IncrByFloat => exact(vec![
                self.rng.name("INCRBYFLOAT"),
                self.string_key(),
                self.float_arg(),
            ]),
            Kind::Append => exact(vec![
                self.rng.name("APPEND"),
                self.string_key(),
                self.value(),
            ]),
            Kind::Strlen => exact(vec![self.rng.name("STRLEN"), self.string_key()]),
            Kind::GetRange => exact(vec![
                self.rng.name("GETRANGE"),
                self.string_key(),
                self.range_arg(),
                self.range_arg(),
            ]),
            Kind::Substr => exact(vec![
                self.rng.name("SUBSTR"),
                self.string_key(),
                self.range_arg(),
                self.range_arg(),
            ]),
            Kind::Lcs => {
                let mut args = vec![self.rng.name("LCS"), self.string_key(), self.string_key()];
                for _ in 0..self.rng.usize(0..4) {
                    match self.rng.u32(0..6) {
                        0 => args.push(self.rng.word("IDX")),
                        1 => args.push(self.rng.word("LEN")),
                        2 => args.push(self.rng.word("WITHMATCHLEN")),
                        3 => {
                            args.push(self.rng.word("MINMATCHLEN"));
                            if self.rng.chance(90) {
                                args.push(b(self.rng.pick(&["0", "1", "2", "3", "-1", "x"])));
                            }
                        }
                        4 => {
                            // IDX with its companions, the common shape.
                            args.push(self.rng.word("IDX"));
                            args.push(self.rng.word("WITHMATCHLEN"));
                        }
                        _ => args.push(b(self.rng.pick(&["FOO", ""]))),
                    }
                }
                exact(args)
            }
            Kind::BitOp => {
                let op = if self.rng.chance(90) {
                    let op = self.rng.pick(&["AND", "OR", "XOR", "NOT"]);
                    self.rng.word(op)
                } else {
                    b("NAND")
                };
                let mut args = vec![self.rng.name("BITOP"), op, self.string_key()];
                for _ in 0..self.rng.usize(1..4) {
                    args.push(self.string_key());
                }
                exact(args)
            }
            Kind::BitField => {
                let read_only = self.rng.chance(25);
                let name = if read_only { "BITFIELD_RO" } else { "BITFIELD" };
                let mut args = vec![self.rng.name(name), self.string_key()];
                for _ in 0..self.rng.usize(0..5) {
                    self.bitfield_op(&mut args, read_only);
                }
                exact(args)
            }
            Kind::SetRange => {
                let value = if self.rng.chance(10) {
                    Vec::new()
                } else {
                    self.value()
                };
                exact(vec![
                    self.rng.name("SETRANGE"),
                    self.string_key(),
                    self.range_offset(),
                    value,
                ])
            }
            Kind::SetBit => {
                let bit = if self.rng.chance(85) {
                    b(self.rng.pick(&["0", "1"]))
                } else {
                    b(self.rng.pick(&["2", "-1", "a", ""]))
                };
                exact(vec![
                    self.rng.name("SETBIT"),
                    self.string_key(),
                    self.bit_offset(),
                    bit,
                ])
            }
            Kind::GetBit => exact(vec![
                self.rng.name("GETBIT"),
                self.string_key(),
                self.bit_offset(),
            ]),
            Kind::BitCount => {
                let mut args = vec![self.rng.name("BITCOUNT"), self.string_key()];
                match self.rng.u32(0..10) {
                    0..=1 => {}
                    2 => args.push(self.range_arg()),
                    3..=5 => {
                        args.push(self.range_arg());
                        args.push(self.range_arg());
                    }
                    _ => {
                        args.push(self.range_arg());
                        args.push(self.range_arg());
                        let unit = self.rng.pick(&["BYTE", "BIT", "BIT", "bits"]);
                        args.push(self.rng.word(unit));
                    }
                }
                exact(args)
            }
            Kind::BitPos => {
                let bit = if self.rng.chance(85) {
                    b(self.rng.pick(&["0", "1"]))
                } else {
                    b(self.rng.pick(&["2", "-1", "a", "01"]))
                };
                let mut args = vec![self.rng.name("BITPOS"), self.string_key(), bit];
                let extra = self.rng.u32(0..4);
                for i in 0..extra {
                    if i < 2 {
                        args.push(self.range_arg());
                    } else {
                        let unit = self.rng.pick(&["BYTE", "BIT", "BIT", "bits"]);
                        args.push(self.rng.word(unit));
                    }
                }
                exact(args)
            }
            Kind::HSet | Kind::HMSet => {
                let name = if matches!(kind, Kind::HSet) {
                    "HSET"
                } else {
                    "HMSET"
                };
                let mut args = vec![self.rng.name(name), self.hash_key()];
                for _ in 0..self.rng.usize(1..=3) {
                    args.push(self.field());
                    args.push(self.value());
                }
                exact(args)
            }
            Kind::HSetNx => exact(vec![
                self.rng.name("HSETNX"),
                self.hash_key(),
                self.field(),
                self.value(),
            ]),
            Kind::HGet => exact(vec![self.rng.name("HGET"), self.hash_key(), self.field()]),
            Kind::HMGet => {
                let mut args = vec![self.rng.name("HMGET"), self.hash_key()];
                for _ in 0..self.rng.usize(1..=4) {
                    args.push(self.field());
                }
                exact(args)
            }
            Kind::HDel => {
                let mut args = vec![self.rng.name("HDEL"), self.hash_key()];
                for _ in 0..self.rng.usize(1..=3) {
                    args.push(self.field());
                }
                exact(args)
            }
            Kind::HLen => exact(vec![self.rng.name("HLEN"), self.hash_key()]),
            Kind::HStrlen => exact(vec![
                self.rng.name("HSTRLEN"),
                self.hash_key(),
                self.field(),
            ]),
            Kind::HExists => exact(vec![
                self.rng.name("HEXISTS"),
                self.hash_key(),
                self.field(),
            ]),
            Kind::HKeys => Step {
                args: vec![self.rng.name("HKEYS"), self.hash_key()],
                check: Unordered,
            },
            Kind::HVals => Step {
                args: vec![self.rng.name("HVALS"), self.hash_key()],
                check: Unordered,
            },
            Kind::HGetAll => Step {
                args: vec![self.rng.name("HGETALL"), self.hash_key()],
                check: Pairs,
            },
            Kind::HIncrBy => exact(vec![
                self.rng.name("HINCRBY"),
                self.hash_key(),
                self.field(),
                self.int_arg(),
            ]),
            Kind::HIncrByFloat => exact(vec![
                self.rng.name("HINCRBYFLOAT"),
                self.hash_key(),
                self.field(),
                self.float_arg(),
            ]),
            Kind::HRandField => {
                let mut args = vec![self.rng.name("HRANDFIELD"), self.hash_key()];
                match self.rng.u32(0..10) {
                    0..=1 => {}
                    2..=5 => args.push(self.rng.small_int(-8, 8)),
                    6..=8 => {
                        args.push(self.rng.small_int(-8, 8));
                        args.push(self.rng.word("WITHVALUES"));
                    }
                    _ => {
                        // Errors: bad count, bad option, WITHVALUES without count.
                        let bad: &[&[&str]] = &[
                            &["abc"],
                            &["1.5"],
                            &["3", "BOGUS"],
                            &["WITHVALUES"],
                            &["2", "WITHVALUES", "x"],
                        ];
                        for a in self.rng.pick(bad) {
                            args.push(b(a));
                        }
                    }
                }
                Step {
                    args,
                    check: HRandField,
                }
            }
            Kind::HScan => {
                let mut args = vec![self.rng.name("HSCAN"), self.hash_key(), b("0")];
                self.scan_options(&mut args, false);
                Step { args, check: HScan }
            }
            Kind::Unknown => {
                let names = ["FOO", "foo", "GETT", "hsetx", "NOTACOMMAND"];
                let name = self.rng.pick(&names);
                let mut args = vec![b(name)];
                for _ in 0..self.rng.usize(0..=3) {
                    args.push(b(self.rng.pick(&["a", "b", "k0", "", "long argument"])));
                }
                exact(args)
            }
        }
    }

    /// MATCH / COUNT / TYPE options for SCAN (with TYPE) or HSCAN.
    fn scan_options(&mut self, args: &mut Vec<Vec<u8>>, with_type: bool) {
        for _ in 0..self.rng.usize(0..=3) {
            match self.rng.u32(0..if with_type { 3 } else { 2 }) {
                0 => {
                    args.push(self.rng.word("MATCH"));
                    let patterns = if with_type { PATTERNS } else { FIELD_PATTERNS };
                    args.push(self.rng.pick(patterns).to_vec());
                }
                1 => {
                    args.push(self.rng.word("COUNT"));
                    if self.rng.chance(85) {
                        args.push(self.rng.small_int(1, 20));
                    } else {
                        args.push(b(self.rng.pick(&["0", "-1", "abc", ""])));
                    }
                }
                _ => {
                    args.push(self.rng.word("TYPE"));
                    let types = ["string", "hash", "list", "none", "STRING", "bogus"];
                    args.push(b(self.rng.pick(&types)));
                }
            }
        }
        if self.rng.chance(3) {
            args.push(b(self.rng.pick(&["BOGUS", "MATCH", "COUNT"])));
        }
    }

    /// SET options: a random mix of EX/PX/EXAT/PXAT/NX/XX/KEEPTTL/GET, valid or not.
    fn set_options(&mut self, args: &mut Vec<Vec<u8>>) {
        let n = match self.rng.u32(0..20) {
            0..=6 => 0,
            7..=14 => 1,
            15..=18 => 2,
            _ => 3,
        };
        for _ in 0..n {
            match self.rng.u32(0..10) {
                0 => {
                    args.push(self.rng.word("EX"));
                    args.push(self.rel_time(false));
                }
                1 => {
                    args.push(self.rng.word("PX"));
                    args.push(self.rel_time(true));
                }
                2 => {
                    args.push(self.rng.word("EXAT"));
                    args.push(self.abs_time(false));
                }
                3 => {
                    args.push(self.rng.word("PXAT"));
                    args.push(self.abs_time(true));
                }
                4 => args.push(self.rng.word("NX")),
                5 => args.push(self.rng.word("XX")),
                6 => args.push(self.rng.word("KEEPTTL")),
                7 | 8 => args.push(self.rng.word("GET")),
                _ => {
                    let w = self.rng.pick(&["EX", "PX", "BOGUS", "PERSIST"]);
                    args.push(self.rng.word(w));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------

/// Compares replies that need no second look at the servers.
fn compare_plain(check: Check, a: &Frame, b: &Frame) -> Result<(), String> {
    let equal = match check {
        Check::Unordered => sorted_items(a.clone()) == sorted_items(b.clone()),
        Check::Pairs => sorted_pairs(a.clone()) == sorted_pairs(b.clone()),
        Check::Tolerance(tol) => match (a, b) {
            (Frame::Integer(x), Frame::Integer(y)) if *x >= 0 && *y >= 0 => {
                x.checked_sub(*y).map(|d| d.abs() <= tol).unwrap_or(false)
            }
            _ => a == b,
        },
        _ => a == b,
    };
    if equal {
        Ok(())
    } else {
        Err(format!("replies differ ({check:?})"))
    }
}

/// A hash's contents as read with HGETALL.
fn hash_contents(client: &mut Client, key: &[u8]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let reply = client.cmd(&[b"HGETALL", key]);
    let mut out = BTreeMap::new();
    if let Frame::Map(pairs) = sorted_pairs(reply.clone()) {
        for (k, v) in pairs {
            if let (Some(k), Some(v)) = (k.as_bytes(), v.as_bytes()) {
                out.insert(k.to_vec(), v.to_vec());
            }
        }
    }
    out
}

/// The reply with every string emptied: what HRANDFIELD replies must agree on.
fn shape(frame: &Frame) -> Frame {
    match frame {
        Frame::Bulk(_) => Frame::Bulk(Vec::new()),
        Frame::Array(items) => Frame::Array(items.iter().map(shape).collect()),
        other => other.clone(),
    }
}

fn flatten_bulks(frame: &Frame, out: &mut Vec<Vec<u8>>) {
    match frame {
        Frame::Bulk(b) => out.push(b.clone()),
        Frame::Array(items) => items.iter().for_each(|f| flatten_bulks(f, out)),
        _ => {}
    }
}

/// Checks an HRANDFIELD reply against the hash on the server that gave it.
fn check_hrandfield(client: &mut Client, args: &[Vec<u8>], reply: &Frame) -> Result<(), String> {
    let hash = hash_contents(client, &args[1]);
    let with_values = args.len() == 4 && args[3].eq_ignore_ascii_case(b"WITHVALUES");
    let mut bulks = Vec::new();
    flatten_bulks(reply, &mut bulks);
    let fields: Vec<Vec<u8>> = if with_values {
        for kv in bulks.chunks(2) {
            match (kv, hash.get(&kv[0])) {
                ([f, v], Some(actual)) if v == actual => {}
                _ => return Err(format!("pair {} not in the hash", show_cmd(kv))),
            }
        }
        bulks.chunks(2).map(|kv| kv[0].clone()).collect()
    } else {
        bulks
    };
    for f in &fields {
        if !hash.contains_key(f) {
            return Err(format!("field \"{}\" not in the hash", support::escape(f)));
        }
    }
    let positive_count = args.len() >= 3
        && std::str::from_utf8(&args[2])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .is_some_and(|c| c > 0);
    if positive_count {
        let distinct: HashSet<&Vec<u8>> = fields.iter().collect();
        if distinct.len() != fields.len() {
            return Err("positive count returned a field twice".into());
        }
    }
    Ok(())
}

/// Runs one step on both servers. Returns the reference reply for the history, or a
/// description of the mismatch.
fn run_step(redis: &mut Client, zankv: &mut Client, step: &Step) -> Result<Frame, String> {
    match step.check {
        Check::Scan | Check::HScan => {
            let (cursor_at, pairs) = if step.check == Check::Scan {
                (1, false)
            } else {
                (2, true)
            };
            diff::compare_scans(redis, zankv, &step.args, cursor_at, pairs)
        }
        _ => {
            let a = redis.cmd_vec(&step.args);
            let b = zankv.cmd_vec(&step.args);
            let verdict = match step.check {
                Check::RandomKey => match (&a, &b) {
                    (Frame::Null, Frame::Null) => Ok(()),
                    (Frame::Bulk(ka), Frame::Bulk(kb)) => {
                        if zankv.cmd(&[b"EXISTS", kb]) != Frame::Integer(1) {
                            Err("zankv's RANDOMKEY returned a key that does not exist".to_string())
                        } else if redis.cmd(&[b"EXISTS", ka]) != Frame::Integer(1) {
                            Err("redis's RANDOMKEY returned a key that does not exist".to_string())
                        } else {
                            Ok(())
                        }
                    }
                    _ => compare_plain(Check::Exact, &a, &b),
                },
                Check::HRandField => {
                    diff::judge_random(redis, zankv, &step.args, &a, &b, shape, check_hrandfield)
                }
                check => compare_plain(check, &a, &b),
            };
            match verdict {
                Ok(()) => Ok(a),
                Err(why) => Err(format!("{why}\n  redis: {a}\n  zankv: {b}")),
            }
        }
    }
}

/// A key's contents for the end-of-run comparison, by its TYPE: a hash's field/value
/// pairs (sorted), GET for anything else.
fn content(client: &mut Client, key: &[u8], kind: Option<&[u8]>) -> Frame {
    match kind {
        Some(b"hash") => sorted_pairs(client.cmd(&[b"HGETALL", key])),
        _ => client.cmd(&[b"GET", key]),
    }
}

/// A fresh pair of servers with a standalone node as the zankv side.
fn must_start_pair(resp3: bool) -> Pair {
    must_start_pair_on(resp3, Target::Node)
}

/// Runs one seed; panics with a full report on the first mismatch.
fn run_seed(seed: u64, ops: usize, resp3: bool) {
    run_seed_on(seed, ops, resp3, Target::Node)
}

/// Runs one seed against `target`.
fn run_seed_on(seed: u64, ops: usize, resp3: bool, target: Target) {
    let started = Instant::now();
    let mut pair = must_start_pair_on(resp3, target);
    let mut gen = Gen::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    for i in 0..ops {
        let step = gen.step();
        let cmd = show_cmd(&step.args);
        match run_step(&mut pair.redis, &mut pair.zankv, &step) {
            Ok(reply) => log.record(i, &step.args, &cmd, &reply),
            Err(detail) => panic!("{}", log.report(&i.to_string(), &cmd, &detail)),
        }
    }
    diff::compare_final_state(&mut pair, &log, content, |tolerance, a, b| {
        compare_plain(tolerance.map_or(Check::Exact, Check::Tolerance), a, b)
    });
    log.print_stats();
    eprintln!(
        "seed {seed} ({}): {ops} commands in {:?}",
        log.proto(),
        started.elapsed()
    );
}

#[test]
fn differential_resp2_fixed_seeds() {
    match seed_from_env() {
        Some(seed) => run_seed(seed, OPS_PER_SEED, false),
        None => FIXED_SEEDS
            .iter()
            .for_each(|&seed| run_seed(seed, OPS_PER_SEED, false)),
    }
}

#[test]
fn differential_resp2_regression_seeds() {
    if seed_from_env().is_some() {
        return;
    }
    REGRESSION_SEEDS
        .iter()
        .for_each(|&seed| run_seed(seed, OPS_PER_SEED, false));
}

#[test]
fn differential_resp2_random_seed() {
    if seed_from_env().is_some() {
        return;
    }
    let seed = fastrand::u64(1_000_000..);
    eprintln!("differential random seed: {seed} (rerun with ZANKV_DIFF_SEED={seed})");
    run_seed(seed, OPS_PER_SEED, false);
}

#[test]
fn differential_resp3() {
    match seed_from_env() {
        Some(seed) => run_seed(seed, OPS_PER_RESP3_SEED, true),
        None => RESP3_SEEDS
            .iter()
            .for_each(|&seed| run_seed(seed, OPS_PER_RESP3_SEED, true)),
    }
}

/// Commands sent in pipelines: each chunk of commands goes out in one write, and only then
/// are the replies read. A read must see exactly the writes sent before it on the
/// connection, whatever path each command takes inside the server. Steps that need
/// follow-up commands (SCAN iterations, RANDOMKEY and HRANDFIELD checks) are left out.
fn run_pipelined_seed(seed: u64, ops: usize, chunk: usize) {
    run_pipelined_seed_on(seed, ops, chunk, Target::Node)
}

fn run_pipelined_seed_on(seed: u64, ops: usize, chunk: usize, target: Target) {
    let mut pair = must_start_pair_on(false, target);
    let mut gen = Gen::new(seed);
    let mut sent = 0;
    while sent < ops {
        let mut steps = Vec::new();
        while steps.len() < chunk {
            let step = gen.step();
            if matches!(
                step.check,
                Check::Scan | Check::HScan | Check::RandomKey | Check::HRandField
            ) {
                continue;
            }
            steps.push(step);
        }
        sent += steps.len();
        let commands: Vec<&[Vec<u8>]> = steps.iter().map(|s| s.args.as_slice()).collect();
        let replies = diff::send_pipeline(&mut pair, seed, &commands);
        for (i, (step, (a, b))) in steps.iter().zip(&replies).enumerate() {
            if let Err(why) = compare_plain(step.check, a, b) {
                let report = diff::pipeline_report(SUITE, seed, i, &commands, &replies, &why, None);
                panic!("{report}");
            }
        }
    }
}

#[test]
fn differential_resp2_pipelined() {
    match seed_from_env() {
        Some(seed) => run_pipelined_seed(seed, OPS_PER_SEED, 25),
        None => [11, 12, 13, 14]
            .iter()
            .for_each(|&seed| run_pipelined_seed(seed, OPS_PER_SEED, 25)),
    }
}

/// A read that finds a key expired deletes it for the commands after it, as in Redis,
/// even in the same pipeline (zankv's deletion goes through raft a little later).
#[test]
fn a_key_a_read_found_expired_is_gone_for_the_next_command() {
    let mut pair = must_start_pair(false);
    for c in [&mut pair.redis, &mut pair.zankv] {
        assert_eq!(
            c.cmd_str(&["SET", "k", "v", "PX", "20"]),
            Frame::simple("OK")
        );
        assert_eq!(c.cmd_str(&["SET", "other", "v"]), Frame::simple("OK"));
    }
    std::thread::sleep(std::time::Duration::from_millis(60));
    let wire = [
        Client::encode(&[b"GET", b"k"]),
        Client::encode(&[b"DBSIZE"]),
        Client::encode(&[b"INFO", b"keyspace"]),
    ]
    .concat();
    let mut replies = Vec::new();
    for c in [&mut pair.redis, &mut pair.zankv] {
        c.send_raw(&wire);
        let get = c.read_frame().unwrap();
        let dbsize = c.read_frame().unwrap();
        let info = c.read_frame().unwrap();
        let keys = info
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).contains("db0:keys=1,"))
            .unwrap_or(false);
        replies.push((get, dbsize, keys));
    }
    assert_eq!(replies[0], (Frame::Null, Frame::Integer(1), true), "redis");
    assert_eq!(replies[1], replies[0], "zankv");
}

/// The same sequences through the proxy, in front of PD and three storage nodes holding a
/// one-partition namespace with three replicas (so DBSIZE, KEYS, SCAN, FLUSHALL and the
/// other keyless commands have one partition to go to): RESP2, RESP3 and pipelined.
#[test]
fn differential_through_the_proxy() {
    let cluster = support::proxy::ProxiedCluster::must_start(1, 3, "");
    let target = Target::Proxy(cluster.proxy.port);
    let seeds: Vec<u64> = match seed_from_env() {
        Some(seed) => vec![seed],
        None => vec![1, 2, 3, 1001],
    };
    for &seed in &seeds {
        run_seed_on(seed, OPS_PER_SEED, false, target);
    }
    run_seed_on(seeds[0] + 100, OPS_PER_RESP3_SEED, true, target);
    run_pipelined_seed_on(seeds[0] + 10, OPS_PER_SEED, 25, target);
    let metrics = cluster.proxy.metrics();
    assert!(
        metrics.contains("zankv_proxy_commands_total{command=\"set\"}"),
        "the proxy forwarded the commands: {metrics}"
    );
}
