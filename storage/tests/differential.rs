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

mod support;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use support::{show_cmd, Client, Frame, RedisServer, ZankvNode};

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

/// How many earlier commands a mismatch report shows.
const HISTORY: usize = 15;

/// Upper bound on SCAN/HSCAN calls for one full iteration.
const MAX_SCAN_CALLS: usize = 10_000;

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

const JUNK: &[&str] = &["x", "", "NX", "-1", "abc\r\n"];

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

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// The command generator. Deterministic for a seed, except that absolute times are taken
/// from the clock when generated (both servers get the same arguments).
struct Gen {
    rng: fastrand::Rng,
    /// Relative expirations already handed out, in seconds (all multiples of 100).
    used_rel: HashSet<i64>,
    /// Absolute offsets already handed out, in seconds (all ≡ 50 mod 100).
    used_abs: HashSet<i64>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: fastrand::Rng::with_seed(seed),
            used_rel: HashSet::new(),
            used_abs: HashSet::new(),
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(0..100) < percent
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.rng.usize(..items.len())]
    }

    /// The command name, in random letter case now and then.
    fn name(&mut self, name: &str) -> Vec<u8> {
        match self.rng.u32(0..10) {
            0 => name.to_ascii_lowercase().into_bytes(),
            1 => name
                .bytes()
                .map(|c| {
                    if self.rng.bool() {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect(),
            _ => b(name),
        }
    }

    /// An option keyword, in random letter case now and then.
    fn word(&mut self, word: &str) -> Vec<u8> {
        if self.chance(15) {
            word.to_ascii_lowercase().into_bytes()
        } else {
            b(word)
        }
    }

    fn key(&mut self) -> Vec<u8> {
        self.pick(&KEYS).to_vec()
    }

    /// A key for a string command: usually k0..k2.
    fn string_key(&mut self) -> Vec<u8> {
        if self.chance(CROSS_FAMILY_PERCENT) {
            self.key()
        } else {
            KEYS[self.rng.usize(0..3)].to_vec()
        }
    }

    /// A key for a hash command: usually k3, k:4 or the binary key.
    fn hash_key(&mut self) -> Vec<u8> {
        if self.chance(CROSS_FAMILY_PERCENT) {
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
        self.pick(&FIELDS).to_vec()
    }

    fn value(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=19 => self.small_int(-1000, 1000),
            20..=24 => b(self.pick(INT_EXTREME)),
            25..=32 => b(self.pick(&[
                "1.5", "-0.25", "3.0", "1e3", "0.1", "10.5", "-7.125", "2.5e-3",
            ])),
            33..=52 => b(self.pick(NUMERIC_LOOKING)),
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
                let w = self.pick(&words);
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

    fn small_int(&mut self, lo: i64, hi: i64) -> Vec<u8> {
        self.rng.i64(lo..=hi).to_string().into_bytes()
    }

    /// An integer argument: mostly small, sometimes extreme, sometimes not an integer.
    fn int_arg(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=74 => self.small_int(-100, 100),
            75..=86 => b(self.pick(INT_EXTREME)),
            _ => b(self.pick(INT_BAD)),
        }
    }

    fn float_arg(&mut self) -> Vec<u8> {
        if self.chance(25) {
            self.small_int(-50, 50)
        } else {
            b(self.pick(FLOATS))
        }
    }

    /// A range bound for GETRANGE/BITCOUNT/BITPOS.
    fn range_arg(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=79 => self.small_int(-12, 12),
            80..=91 => b(self.pick(&[
                "9223372036854775807",
                "-9223372036854775808",
                "100000",
                "-100000",
                "2147483648",
            ])),
            _ => b(self.pick(&["abc", "", "1.5", " 1"])),
        }
    }

    /// A distinct relative expiration in seconds, ≥ 100 s, a multiple of 100.
    fn fresh_rel_secs(&mut self) -> i64 {
        loop {
            let v = 100 * self.rng.i64(1..=100_000);
            if self.used_rel.insert(v) {
                return v;
            }
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
                let s = self.fresh_rel_secs();
                (if ms { s * 1000 } else { s }).to_string().into_bytes()
            }
            75..=84 => b(self.pick(REL_TIME_PAST)),
            _ => b(self.pick(REL_TIME_BAD)),
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
                    b(self.pick(&["0", "1", "-1", "-9223372036854775808"]))
                }
            }
            87..=89 => b("9223372036854775807"),
            _ => b(self.pick(&["abc", "", "1.5", " 1", "1e12"])),
        }
    }

    fn bit_offset(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=69 => self.small_int(0, 64),
            70..=84 => self.small_int(64, 400),
            // Never a large valid offset: that would allocate up to 512 MB.
            _ => b(self.pick(&["-1", "4294967296", "abc", "1.0", "", "9223372036854775807"])),
        }
    }

    fn range_offset(&mut self) -> Vec<u8> {
        match self.rng.u32(0..100) {
            0..=69 => self.small_int(0, 40),
            70..=84 => self.small_int(40, 300),
            // 536870912 is one past the largest legal offset for a 1-byte value; it only
            // "succeeds" with an empty value, which allocates nothing.
            _ => b(self.pick(&["-1", "536870912", "9223372036854775807", "abc", ""])),
        }
    }

    fn step(&mut self) -> Step {
        let total: u32 = MENU.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.u32(0..total);
        let mut kind = MENU[0].0;
        for (k, w) in MENU {
            if roll < *w {
                kind = *k;
                break;
            }
            roll -= w;
        }
        let mut step = self.build(kind);
        // Mutations: wrong arity and trailing junk for commands judged by their reply alone.
        if matches!(
            step.check,
            Check::Exact | Check::Unordered | Check::Pairs | Check::Tolerance(_)
        ) {
            match self.rng.u32(0..100) {
                0..=3 if step.args.len() > 1 => {
                    step.args.pop();
                }
                4..=6 => {
                    let junk = b(self.pick(JUNK));
                    step.args.push(junk);
                }
                _ => {}
            }
        }
        step
    }

    fn build(&mut self, kind: Kind) -> Step {
        use Check::*;
        let exact = |args: Vec<Vec<u8>>| Step { args, check: Exact };
        match kind {
            Kind::Ping => {
                let mut args = vec![self.name("PING")];
                if self.rng.bool() {
                    args.push(self.value());
                }
                exact(args)
            }
            Kind::Echo => exact(vec![self.name("ECHO"), self.value()]),
            Kind::Auth => {
                // Neither server has a password: only `default` with any password passes.
                let mut args = vec![self.name("AUTH")];
                match self.rng.u8(0..4) {
                    0 => {}
                    1 => args.push(b("default")),
                    2 => args.push(b("someone")),
                    _ => args.extend([b("a"), b("b")]),
                }
                args.push(self.value());
                exact(args)
            }
            Kind::Select => exact(vec![self.name("SELECT"), b("0")]),
            Kind::DbSize => exact(vec![self.name("DBSIZE")]),
            Kind::Del | Kind::Unlink | Kind::Exists | Kind::Touch => {
                let name = match kind {
                    Kind::Del => "DEL",
                    Kind::Unlink => "UNLINK",
                    Kind::Exists => "EXISTS",
                    _ => "TOUCH",
                };
                let mut args = vec![self.name(name)];
                args.extend(self.keys(1, 3));
                exact(args)
            }
            Kind::Type => exact(vec![self.name("TYPE"), self.key()]),
            Kind::Expire | Kind::PExpire | Kind::ExpireAt | Kind::PExpireAt => {
                let (name, time) = match kind {
                    Kind::Expire => ("EXPIRE", self.rel_time(false)),
                    Kind::PExpire => ("PEXPIRE", self.rel_time(true)),
                    Kind::ExpireAt => ("EXPIREAT", self.abs_time(false)),
                    _ => ("PEXPIREAT", self.abs_time(true)),
                };
                let mut args = vec![self.name(name), self.key(), time];
                let flags = match self.rng.u32(0..10) {
                    0..=3 => 0,
                    4..=8 => 1,
                    _ => 2,
                };
                for _ in 0..flags {
                    let flag = self.pick(&["NX", "XX", "GT", "LT", "NX", "GT", "LT", "BOGUS"]);
                    let flag = self.word(flag);
                    args.push(flag);
                }
                exact(args)
            }
            Kind::Ttl => Step {
                args: vec![self.name("TTL"), self.key()],
                check: Tolerance(1),
            },
            Kind::PTtl => Step {
                args: vec![self.name("PTTL"), self.key()],
                check: Tolerance(1500),
            },
            Kind::ExpireTime => Step {
                args: vec![self.name("EXPIRETIME"), self.key()],
                check: Tolerance(1),
            },
            Kind::PExpireTime => Step {
                args: vec![self.name("PEXPIRETIME"), self.key()],
                check: Tolerance(1500),
            },
            Kind::Persist => exact(vec![self.name("PERSIST"), self.key()]),
            Kind::Rename => exact(vec![self.name("RENAME"), self.key(), self.key()]),
            Kind::RenameNx => exact(vec![self.name("RENAMENX"), self.key(), self.key()]),
            Kind::Copy => {
                let mut args = vec![self.name("COPY"), self.key(), self.key()];
                if self.rng.bool() {
                    args.push(self.word("REPLACE"));
                }
                exact(args)
            }
            Kind::Keys => Step {
                args: vec![self.name("KEYS"), self.pick(PATTERNS).to_vec()],
                check: Unordered,
            },
            Kind::Scan => {
                // Redis 7.0 parses an empty cursor as 0 (strtoul with no digits).
                let start = if self.chance(5) { b("") } else { b("0") };
                let mut args = vec![self.name("SCAN"), start];
                self.scan_options(&mut args, true);
                Step { args, check: Scan }
            }
            Kind::ScanBadCursor => {
                let cursor = self.pick(&["abc", " 0", "0x", "1.5", "18446744073709551616", "-"]);
                exact(vec![self.name("SCAN"), b(cursor)])
            }
            Kind::RandomKey => Step {
                args: vec![self.name("RANDOMKEY")],
                check: RandomKey,
            },
            Kind::FlushDb => exact(vec![self.name("FLUSHDB")]),
            Kind::Get => exact(vec![self.name("GET"), self.string_key()]),
            Kind::Set => {
                let mut args = vec![self.name("SET"), self.string_key(), self.value()];
                self.set_options(&mut args);
                exact(args)
            }
            Kind::SetNx => exact(vec![self.name("SETNX"), self.string_key(), self.value()]),
            Kind::SetEx => exact(vec![
                self.name("SETEX"),
                self.string_key(),
                self.rel_time(false),
                self.value(),
            ]),
            Kind::PSetEx => exact(vec![
                self.name("PSETEX"),
                self.string_key(),
                self.rel_time(true),
                self.value(),
            ]),
            Kind::GetSet => exact(vec![self.name("GETSET"), self.string_key(), self.value()]),
            Kind::GetDel => exact(vec![self.name("GETDEL"), self.string_key()]),
            Kind::GetEx => {
                let mut args = vec![self.name("GETEX"), self.string_key()];
                let n = match self.rng.u32(0..10) {
                    0..=2 => 0,
                    3..=8 => 1,
                    _ => 2,
                };
                for _ in 0..n {
                    match self.rng.u32(0..6) {
                        0 => {
                            args.push(self.word("EX"));
                            args.push(self.rel_time(false));
                        }
                        1 => {
                            args.push(self.word("PX"));
                            args.push(self.rel_time(true));
                        }
                        2 => {
                            args.push(self.word("EXAT"));
                            args.push(self.abs_time(false));
                        }
                        3 => {
                            args.push(self.word("PXAT"));
                            args.push(self.abs_time(true));
                        }
                        4 => args.push(self.word("PERSIST")),
                        _ => {
                            let w = self.pick(&["EX", "KEEPTTL", "BOGUS"]);
                            args.push(self.word(w));
                        }
                    }
                }
                exact(args)
            }
            Kind::MGet => {
                let mut args = vec![self.name("MGET")];
                args.extend(self.keys(1, 4));
                exact(args)
            }
            Kind::MSet | Kind::MSetNx => {
                let mut args = vec![self.name(if matches!(kind, Kind::MSet) {
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
            Kind::Incr => exact(vec![self.name("INCR"), self.string_key()]),
            Kind::Decr => exact(vec![self.name("DECR"), self.string_key()]),
            Kind::IncrBy => exact(vec![self.name("INCRBY"), self.string_key(), self.int_arg()]),
            Kind::DecrBy => exact(vec![self.name("DECRBY"), self.string_key(), self.int_arg()]),
            Kind::IncrByFloat => exact(vec![
                self.name("INCRBYFLOAT"),
                self.string_key(),
                self.float_arg(),
            ]),
            Kind::Append => exact(vec![self.name("APPEND"), self.string_key(), self.value()]),
            Kind::Strlen => exact(vec![self.name("STRLEN"), self.string_key()]),
            Kind::GetRange => exact(vec![
                self.name("GETRANGE"),
                self.string_key(),
                self.range_arg(),
                self.range_arg(),
            ]),
            Kind::SetRange => {
                let value = if self.chance(10) {
                    Vec::new()
                } else {
                    self.value()
                };
                exact(vec![
                    self.name("SETRANGE"),
                    self.string_key(),
                    self.range_offset(),
                    value,
                ])
            }
            Kind::SetBit => {
                let bit = if self.chance(85) {
                    b(self.pick(&["0", "1"]))
                } else {
                    b(self.pick(&["2", "-1", "a", ""]))
                };
                exact(vec![
                    self.name("SETBIT"),
                    self.string_key(),
                    self.bit_offset(),
                    bit,
                ])
            }
            Kind::GetBit => exact(vec![
                self.name("GETBIT"),
                self.string_key(),
                self.bit_offset(),
            ]),
            Kind::BitCount => {
                let mut args = vec![self.name("BITCOUNT"), self.string_key()];
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
                        let unit = self.pick(&["BYTE", "BIT", "BIT", "bits"]);
                        args.push(self.word(unit));
                    }
                }
                exact(args)
            }
            Kind::BitPos => {
                let bit = if self.chance(85) {
                    b(self.pick(&["0", "1"]))
                } else {
                    b(self.pick(&["2", "-1", "a", "01"]))
                };
                let mut args = vec![self.name("BITPOS"), self.string_key(), bit];
                let extra = self.rng.u32(0..4);
                for i in 0..extra {
                    if i < 2 {
                        args.push(self.range_arg());
                    } else {
                        let unit = self.pick(&["BYTE", "BIT", "BIT", "bits"]);
                        args.push(self.word(unit));
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
                let mut args = vec![self.name(name), self.hash_key()];
                for _ in 0..self.rng.usize(1..=3) {
                    args.push(self.field());
                    args.push(self.value());
                }
                exact(args)
            }
            Kind::HSetNx => exact(vec![
                self.name("HSETNX"),
                self.hash_key(),
                self.field(),
                self.value(),
            ]),
            Kind::HGet => exact(vec![self.name("HGET"), self.hash_key(), self.field()]),
            Kind::HMGet => {
                let mut args = vec![self.name("HMGET"), self.hash_key()];
                for _ in 0..self.rng.usize(1..=4) {
                    args.push(self.field());
                }
                exact(args)
            }
            Kind::HDel => {
                let mut args = vec![self.name("HDEL"), self.hash_key()];
                for _ in 0..self.rng.usize(1..=3) {
                    args.push(self.field());
                }
                exact(args)
            }
            Kind::HLen => exact(vec![self.name("HLEN"), self.hash_key()]),
            Kind::HStrlen => exact(vec![self.name("HSTRLEN"), self.hash_key(), self.field()]),
            Kind::HExists => exact(vec![self.name("HEXISTS"), self.hash_key(), self.field()]),
            Kind::HKeys => Step {
                args: vec![self.name("HKEYS"), self.hash_key()],
                check: Unordered,
            },
            Kind::HVals => Step {
                args: vec![self.name("HVALS"), self.hash_key()],
                check: Unordered,
            },
            Kind::HGetAll => Step {
                args: vec![self.name("HGETALL"), self.hash_key()],
                check: Pairs,
            },
            Kind::HIncrBy => exact(vec![
                self.name("HINCRBY"),
                self.hash_key(),
                self.field(),
                self.int_arg(),
            ]),
            Kind::HIncrByFloat => exact(vec![
                self.name("HINCRBYFLOAT"),
                self.hash_key(),
                self.field(),
                self.float_arg(),
            ]),
            Kind::HRandField => {
                let mut args = vec![self.name("HRANDFIELD"), self.hash_key()];
                match self.rng.u32(0..10) {
                    0..=1 => {}
                    2..=5 => args.push(self.small_int(-8, 8)),
                    6..=8 => {
                        args.push(self.small_int(-8, 8));
                        args.push(self.word("WITHVALUES"));
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
                        for a in self.pick(bad) {
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
                let mut args = vec![self.name("HSCAN"), self.hash_key(), b("0")];
                self.scan_options(&mut args, false);
                Step { args, check: HScan }
            }
            Kind::Unknown => {
                let name = self.pick(&["FOO", "foo", "GETT", "hsetx", "NOTACOMMAND"]);
                let mut args = vec![b(name)];
                for _ in 0..self.rng.usize(0..=3) {
                    args.push(b(self.pick(&["a", "b", "k0", "", "long argument"])));
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
                    args.push(self.word("MATCH"));
                    let patterns = if with_type { PATTERNS } else { FIELD_PATTERNS };
                    args.push(self.pick(patterns).to_vec());
                }
                1 => {
                    args.push(self.word("COUNT"));
                    if self.chance(85) {
                        args.push(self.small_int(1, 20));
                    } else {
                        args.push(b(self.pick(&["0", "-1", "abc", ""])));
                    }
                }
                _ => {
                    args.push(self.word("TYPE"));
                    args.push(b(
                        self.pick(&["string", "hash", "list", "none", "STRING", "bogus"])
                    ));
                }
            }
        }
        if self.chance(3) {
            args.push(b(self.pick(&["BOGUS", "MATCH", "COUNT"])));
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
                    args.push(self.word("EX"));
                    args.push(self.rel_time(false));
                }
                1 => {
                    args.push(self.word("PX"));
                    args.push(self.rel_time(true));
                }
                2 => {
                    args.push(self.word("EXAT"));
                    args.push(self.abs_time(false));
                }
                3 => {
                    args.push(self.word("PXAT"));
                    args.push(self.abs_time(true));
                }
                4 => args.push(self.word("NX")),
                5 => args.push(self.word("XX")),
                6 => args.push(self.word("KEEPTTL")),
                7 | 8 => args.push(self.word("GET")),
                _ => {
                    let w = self.pick(&["EX", "PX", "BOGUS", "PERSIST"]);
                    args.push(self.word(w));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------

/// Sorts the elements of an array/set reply; other replies are returned unchanged.
fn sorted_items(frame: Frame) -> Frame {
    match frame {
        Frame::Array(mut items) => {
            items.sort_by_key(Frame::sort_key);
            Frame::Array(items)
        }
        Frame::Set(mut items) => {
            items.sort_by_key(Frame::sort_key);
            Frame::Set(items)
        }
        other => other,
    }
}

/// Turns a flat field/value array or a map into a map with sorted pairs.
fn sorted_pairs(frame: Frame) -> Frame {
    let mut pairs = match frame {
        Frame::Map(pairs) => pairs,
        Frame::Array(items) if items.len() % 2 == 0 => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        other => return other,
    };
    pairs.sort_by_key(|(k, v)| (k.sort_key(), v.sort_key()));
    Frame::Map(pairs)
}

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

/// Iterates SCAN/HSCAN from the cursor in `args` to the end; returns the sorted, deduplicated
/// keys (or `[field, value]` pairs), or the first reply that is not a scan page.
fn scan_all(
    client: &mut Client,
    args: &[Vec<u8>],
    cursor_at: usize,
    pairs: bool,
) -> Result<Vec<Frame>, Frame> {
    let mut args = args.to_vec();
    let mut found = Vec::new();
    for _ in 0..MAX_SCAN_CALLS {
        let reply = client.cmd_vec(&args);
        let (cursor, items) = match &reply {
            Frame::Array(page) if page.len() == 2 => match (&page[0], page[1].as_items()) {
                (Frame::Bulk(cursor), Some(items)) => (cursor.clone(), items.to_vec()),
                _ => return Err(reply),
            },
            _ => return Err(reply),
        };
        if pairs {
            if items.len() % 2 != 0 {
                return Err(reply);
            }
            for kv in items.chunks(2) {
                found.push(Frame::Array(kv.to_vec()));
            }
        } else {
            found.extend(items);
        }
        if cursor == b"0" {
            found.sort_by_key(Frame::sort_key);
            found.dedup();
            return Ok(found);
        }
        args[cursor_at] = cursor;
    }
    Err(Frame::error("harness: scan did not reach cursor 0"))
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
            let a = scan_all(redis, &step.args, cursor_at, pairs);
            let b = scan_all(zankv, &step.args, cursor_at, pairs);
            let show = |r: &Result<Vec<Frame>, Frame>| match r {
                Ok(items) => format!("full iteration {}", Frame::Array(items.clone())),
                Err(f) => f.to_string(),
            };
            if a == b {
                Ok(match a {
                    Ok(items) => Frame::Array(items),
                    Err(f) => f,
                })
            } else {
                Err(format!(
                    "scan results differ\n  redis: {}\n  zankv: {}",
                    show(&a),
                    show(&b)
                ))
            }
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
                    if a.is_error() || b.is_error() || shape(&a) != shape(&b) {
                        compare_plain(Check::Exact, &a, &b)
                            .map_err(|_| "replies differ in shape".to_string())
                    } else {
                        check_hrandfield(zankv, &step.args, &b)
                            .map_err(|e| format!("zankv: {e}"))
                            .and_then(|_| {
                                check_hrandfield(redis, &step.args, &a)
                                    .map_err(|e| format!("redis: {e}"))
                            })
                    }
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

/// Everything a client can see of the database, for the end-of-run comparison.
fn dump(client: &mut Client) -> Vec<(String, Frame)> {
    let mut out = Vec::new();
    let keys = sorted_items(client.cmd(&[b"KEYS", b"*"]));
    out.push(("KEYS *".to_string(), keys.clone()));
    out.push(("DBSIZE".to_string(), client.cmd(&[b"DBSIZE"])));
    for key in keys.as_items().unwrap_or(&[]) {
        let Some(key) = key.as_bytes() else { continue };
        let name = support::escape(key);
        let kind = client.cmd(&[b"TYPE", key]);
        let content = match kind.as_bytes() {
            Some(b"hash") => sorted_pairs(client.cmd(&[b"HGETALL", key])),
            _ => client.cmd(&[b"GET", key]),
        };
        out.push((format!("TYPE {name}"), kind));
        out.push((format!("content of {name}"), content));
        out.push((format!("PTTL {name}"), client.cmd(&[b"PTTL", key])));
    }
    out
}

struct Pair {
    redis: Client,
    zankv: Client,
    // Field order: clients close before the servers are killed.
    _redis_server: RedisServer,
    _zankv_node: Option<ZankvNode>,
    _dir: tempfile::TempDir,
}

/// What the zankv side of a pair is.
#[derive(Clone, Copy)]
enum Target {
    /// A fresh standalone storage node.
    Node,
    /// A proxy already running on this port, in front of a one-partition namespace; it is
    /// flushed before each seed.
    Proxy(u16),
}

fn must_start_pair(resp3: bool) -> Pair {
    must_start_pair_on(resp3, Target::Node)
}

fn must_start_pair_on(resp3: bool, target: Target) -> Pair {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis_server = RedisServer::must_start();
    let (zankv_node, mut zankv) = match target {
        Target::Node => {
            let node = ZankvNode::must_start(&dir.path().join("data"));
            let client = node.client();
            (Some(node), client)
        }
        Target::Proxy(port) => {
            let mut client = Client::connect(port);
            assert_eq!(client.cmd_str(&["FLUSHALL"]), Frame::simple("OK"));
            (None, client)
        }
    };
    let mut redis = redis_server.client();
    if resp3 {
        redis.hello3();
        zankv.hello3();
    }
    Pair {
        redis,
        zankv,
        _redis_server: redis_server,
        _zankv_node: zankv_node,
        _dir: dir,
    }
}

/// Runs one seed; panics with a full report on the first mismatch.
fn run_seed(seed: u64, ops: usize, resp3: bool) {
    run_seed_on(seed, ops, resp3, Target::Node)
}

/// Runs one seed against `target`.
fn run_seed_on(seed: u64, ops: usize, resp3: bool, target: Target) {
    let started = Instant::now();
    let proto = if resp3 { "RESP3" } else { "RESP2" };
    let mut pair = must_start_pair_on(resp3, target);
    let mut gen = Gen::new(seed);
    let mut history: VecDeque<String> = VecDeque::with_capacity(HISTORY + 1);
    let report = |index: String, cmd: &str, detail: &str, history: &VecDeque<String>| -> String {
        let mut msg = format!(
            "differential mismatch: seed {seed} ({proto}), command #{index}\n  command: {cmd}\n  {detail}\n  \
             rerun: ZANKV_DIFF_SEED={seed} cargo test -p zankv-storage --test differential\n  \
             preceding commands (oldest first, with redis's reply):\n"
        );
        for line in history {
            msg.push_str("    ");
            msg.push_str(line);
            msg.push('\n');
        }
        msg
    };
    let mut stats: BTreeMap<String, (usize, BTreeMap<String, usize>)> = BTreeMap::new();
    for i in 0..ops {
        let step = gen.step();
        let cmd = show_cmd(&step.args);
        match run_step(&mut pair.redis, &mut pair.zankv, &step) {
            Ok(reply) => {
                let entry = stats
                    .entry(String::from_utf8_lossy(&step.args[0]).to_uppercase())
                    .or_default();
                entry.0 += 1;
                if let Frame::Error(e) = &reply {
                    *entry
                        .1
                        .entry(String::from_utf8_lossy(e).into_owned())
                        .or_default() += 1;
                }
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(format!("#{i} {cmd} -> {reply}"));
            }
            Err(detail) => panic!("{}", report(i.to_string(), &cmd, &detail, &history)),
        }
    }
    let a = dump(&mut pair.redis);
    let b = dump(&mut pair.zankv);
    for ((what, fa), (_, fb)) in a.iter().zip(b.iter()) {
        let check = if what.starts_with("PTTL") {
            Check::Tolerance(1500)
        } else {
            Check::Exact
        };
        let (mut fa, mut fb) = (fa.clone(), fb.clone());
        if what == "DBSIZE" {
            // A key set with an expiration already past (SET ... PXAT <past>) stays counted
            // until each server's expiry removes it: redis's active expiry within about
            // 100 ms, zankv's leader through raft a little later. Both must settle on the
            // same count.
            let settle = Instant::now() + std::time::Duration::from_secs(5);
            while fa != fb && Instant::now() < settle {
                std::thread::sleep(std::time::Duration::from_millis(100));
                fa = pair.redis.cmd(&[b"DBSIZE"]);
                fb = pair.zankv.cmd(&[b"DBSIZE"]);
            }
        }
        let (fa, fb) = (&fa, &fb);
        if let Err(why) = compare_plain(check, fa, fb) {
            panic!(
                "{}",
                report(
                    "end (final state)".into(),
                    what,
                    &format!("{why}\n  redis: {fa}\n  zankv: {fb}"),
                    &history
                )
            );
        }
    }
    if a.len() != b.len() {
        panic!(
            "{}",
            report(
                "end (final state)".into(),
                "KEYS *",
                "different key sets",
                &history
            )
        );
    }
    if std::env::var_os("ZANKV_DIFF_STATS").is_some() {
        // Which commands ran and which errors they met: to check the generator's reach.
        for (name, (count, errors)) in &stats {
            eprintln!(
                "  {name}: {count} run, {} errors",
                errors.values().sum::<usize>()
            );
            for (error, n) in errors {
                eprintln!("      {n} x {error}");
            }
        }
    }
    eprintln!(
        "seed {seed} ({proto}): {ops} commands in {:?}",
        started.elapsed()
    );
}

/// `ZANKV_DIFF_SEED`, if set.
fn seed_from_env() -> Option<u64> {
    let raw = std::env::var("ZANKV_DIFF_SEED").ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|_| panic!("ZANKV_DIFF_SEED={raw:?} is not a u64")),
    )
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
        let wire: Vec<u8> = steps
            .iter()
            .flat_map(|s| {
                let refs: Vec<&[u8]> = s.args.iter().map(Vec::as_slice).collect();
                Client::encode(&refs)
            })
            .collect();
        pair.redis.send_raw(&wire);
        pair.zankv.send_raw(&wire);
        let replies: Vec<(Frame, Frame)> = steps
            .iter()
            .map(|s| {
                let a = pair.redis.read_frame().expect("redis answers");
                let b = pair.zankv.read_frame().unwrap_or_else(|| {
                    panic!(
                        "seed {seed}: zankv closed the connection at {}",
                        show_cmd(&s.args)
                    )
                });
                (a, b)
            })
            .collect();
        for (i, (step, (a, b))) in steps.iter().zip(&replies).enumerate() {
            if let Err(why) = compare_plain(step.check, a, b) {
                let pipeline: Vec<String> = steps
                    .iter()
                    .zip(&replies)
                    .map(|(s, (a, _))| format!("    {} -> {a}", show_cmd(&s.args)))
                    .collect();
                panic!(
                    "pipelined differential mismatch: seed {seed}, command {i} of a pipeline of {}\n  \
                     command: {}\n  {why}\n  redis: {a}\n  zankv: {b}\n  \
                     rerun: ZANKV_DIFF_SEED={seed} cargo test -p zankv-storage --test differential pipelined\n  \
                     the pipeline, with redis's replies:\n{}",
                    steps.len(),
                    show_cmd(&step.args),
                    pipeline.join("\n")
                );
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
