//! Hash commands: typed forms, parsers and specs.

use bytes::Bytes;

use crate::error::CommandError;
use crate::keyspace::{scan_cursor, scan_options, ScanArgs};
use crate::number::{is_infinite_long_double, is_valid_long_double, parse_i64};
use crate::spec::{spec, Access, CommandSpec, ONE_KEY};

const W: Access = Access::Write;
const R: Access = Access::Read;
const G: &str = "hash";

/// Specs of the hash family.
pub static SPECS: &[CommandSpec] = &[
    spec("hset", -4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "hash", "fast"], G, "2.0.0", "Creates or modifies the value of a field in a hash."),
    spec("hsetnx", 4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "hash", "fast"], G, "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist."),
    spec("hmset", -4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "hash", "fast"], G, "2.0.0", "Sets the values of multiple fields."),
    spec("hget", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "hash", "fast"], G, "2.0.0", "Returns the value of a field in a hash."),
    spec("hmget", -3, R, &["readonly", "fast"], ONE_KEY, &["read", "hash", "fast"], G, "2.0.0", "Returns the values of all fields in a hash."),
    spec("hdel", -3, W, &["write", "fast"], ONE_KEY, &["write", "hash", "fast"], G, "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain."),
    spec("hlen", 2, R, &["readonly", "fast"], ONE_KEY, &["read", "hash", "fast"], G, "2.0.0", "Returns the number of fields in a hash."),
    spec("hstrlen", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "hash", "fast"], G, "3.2.0", "Returns the length of the value of a field."),
    spec("hexists", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "hash", "fast"], G, "2.0.0", "Determines whether a field exists in a hash."),
    spec("hkeys", 2, R, &["readonly"], ONE_KEY, &["read", "hash", "slow"], G, "2.0.0", "Returns all fields in a hash."),
    spec("hvals", 2, R, &["readonly"], ONE_KEY, &["read", "hash", "slow"], G, "2.0.0", "Returns all values in a hash."),
    spec("hgetall", 2, R, &["readonly"], ONE_KEY, &["read", "hash", "slow"], G, "2.0.0", "Returns all fields and values in a hash."),
    spec("hincrby", 4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "hash", "fast"], G, "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist."),
    spec("hincrbyfloat", 4, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "hash", "fast"], G, "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist."),
    spec("hrandfield", -2, R, &["readonly"], ONE_KEY, &["read", "hash", "slow"], G, "6.2.0", "Returns one or more random fields from a hash."),
    spec("hscan", -3, R, &["readonly"], ONE_KEY, &["read", "hash", "slow"], G, "2.8.0", "Iterates over fields and values of a hash."),
];

/// What HRANDFIELD returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandFieldCount {
    /// No count: one field or nil.
    One,
    /// A count: distinct fields when `distinct`, else `n` draws with repetition.
    Many {
        /// How many.
        n: u64,
        /// Whether fields are distinct (non-negative count).
        distinct: bool,
        /// Include values.
        with_values: bool,
    },
}

/// A hash command that only reads (served from a replica's state, never replicated).
#[derive(Debug, Clone, PartialEq)]
pub enum HashRead {
    /// HGET key field
    Get(Bytes, Bytes),
    /// HMGET key field...
    MGet(Bytes, Vec<Bytes>),
    /// HLEN key
    Len(Bytes),
    /// HSTRLEN key field
    StrLen(Bytes, Bytes),
    /// HEXISTS key field
    Exists(Bytes, Bytes),
    /// HKEYS key
    Keys(Bytes),
    /// HVALS key
    Vals(Bytes),
    /// HGETALL key
    GetAll(Bytes),
    /// `HRANDFIELD key [count [WITHVALUES]]`
    RandField(Bytes, RandFieldCount),
    /// `HSCAN key cursor [MATCH p] [COUNT n]`; options are parsed after the key lookup, as
    /// Redis does, so they are kept raw here.
    Scan(Bytes, u64, Vec<Bytes>),
}

/// A hash command that writes (replicated through raft).
#[derive(Debug, Clone, PartialEq)]
pub enum HashWrite {
    /// `HSET`/`HMSET key field value [field value ...]`
    Set {
        /// Key.
        key: Bytes,
        /// Field/value pairs in argument order.
        pairs: Vec<(Bytes, Bytes)>,
        /// HMSET replies OK instead of the count of new fields.
        reply_ok: bool,
    },
    /// HSETNX key field value
    SetNx(Bytes, Bytes, Bytes),
    /// HDEL key field...
    Del(Bytes, Vec<Bytes>),
    /// HINCRBY key field increment
    IncrBy(Bytes, Bytes, i64),
    /// HINCRBYFLOAT key field increment (validated; kept as text for exact long-double math)
    IncrByFloat(Bytes, Bytes, Bytes),
}

/// A typed hash command.
#[derive(Debug, Clone, PartialEq)]
pub enum HashCommand {
    /// Reads only: the type says which executor may run it.
    Read(HashRead),
    /// Writes.
    Write(HashWrite),
}

impl HashCommand {
    /// Parses a hash command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        let key = || args[0].clone();
        Ok(match name {
            "hset" | "hmset" => {
                if args.len().is_multiple_of(2) {
                    return Err(CommandError::WrongArity(name.to_string()));
                }
                let pairs = args[1..]
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                HashCommand::Write(HashWrite::Set {
                    key: key(),
                    pairs,
                    reply_ok: name == "hmset",
                })
            }
            "hsetnx" => {
                HashCommand::Write(HashWrite::SetNx(key(), args[1].clone(), args[2].clone()))
            }
            "hget" => HashCommand::Read(HashRead::Get(key(), args[1].clone())),
            "hmget" => HashCommand::Read(HashRead::MGet(key(), args[1..].to_vec())),
            "hdel" => HashCommand::Write(HashWrite::Del(key(), args[1..].to_vec())),
            "hlen" => HashCommand::Read(HashRead::Len(key())),
            "hstrlen" => HashCommand::Read(HashRead::StrLen(key(), args[1].clone())),
            "hexists" => HashCommand::Read(HashRead::Exists(key(), args[1].clone())),
            "hkeys" => HashCommand::Read(HashRead::Keys(key())),
            "hvals" => HashCommand::Read(HashRead::Vals(key())),
            "hgetall" => HashCommand::Read(HashRead::GetAll(key())),
            "hincrby" => {
                let by = parse_i64(&args[2]).ok_or(CommandError::NotInteger)?;
                HashCommand::Write(HashWrite::IncrBy(key(), args[1].clone(), by))
            }
            "hincrbyfloat" => {
                if !is_valid_long_double(&args[2]) {
                    return Err(CommandError::NotFloat);
                }
                if is_infinite_long_double(&args[2]) {
                    return Err(CommandError::NanOrInfinityArgument);
                }
                HashCommand::Write(HashWrite::IncrByFloat(
                    key(),
                    args[1].clone(),
                    args[2].clone(),
                ))
            }
            "hrandfield" => HashCommand::Read(HashRead::RandField(
                key(),
                rand_count(&args[1..], b"withvalues")?,
            )),
            "hscan" => HashCommand::Read(HashRead::Scan(
                key(),
                scan_cursor(&args[1])?,
                args[2..].to_vec(),
            )),
            _ => unreachable!("hash family dispatched an unknown name: {name}"),
        })
    }
}

/// Reads `[count [WITH...]]` of HRANDFIELD (`WITHVALUES`) and ZRANDMEMBER (`WITHSCORES`).
pub fn rand_count(args: &[Bytes], with_word: &[u8]) -> Result<RandFieldCount, CommandError> {
    let Some(count) = args.first() else {
        return Ok(RandFieldCount::One);
    };
    let n = parse_i64(count).ok_or(CommandError::NotInteger)?;
    if n == i64::MIN {
        return Err(CommandError::OutOfRangeBetween(-i64::MAX, i64::MAX));
    }
    let with_values = match &args[1..] {
        [] => false,
        [a] if a.eq_ignore_ascii_case(with_word) => true,
        _ => return Err(CommandError::Syntax),
    };
    if with_values && !(-i64::MAX / 2..=i64::MAX / 2).contains(&n) {
        return Err(CommandError::OutOfRange);
    }
    Ok(RandFieldCount::Many {
        n: n.unsigned_abs(),
        distinct: n >= 0,
        with_values,
    })
}

/// Most fields HRANDFIELD returns for a negative count (fields may repeat): the reply is
/// built whole in memory, so a larger count is refused when the hash exists (Redis streams
/// such a reply instead).
pub const MAX_RANDOM_PICKS: i64 = 10_000_000;

/// Parses HSCAN options once the key is known to exist.
pub fn hscan_options(cursor: u64, opts: &[Bytes]) -> Result<ScanArgs, CommandError> {
    scan_options(cursor, opts, false)
}
