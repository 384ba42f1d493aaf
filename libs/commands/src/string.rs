//! String commands: typed forms, parsers and specs.

use bytes::Bytes;

use crate::bitfield::BitField;
use crate::error::CommandError;
use crate::number::parse_i64;
use crate::spec::{spec, Access, CommandSpec, Fanout, KeyMerge, ALL_KEYS, ONE_KEY};

const W: Access = Access::Write;
const R: Access = Access::Read;
const G: &str = "string";

/// Specs of the string family.
pub static SPECS: &[CommandSpec] = &[
    spec("get", 2, R, &["readonly", "fast"], ONE_KEY, &["read", "string", "fast"], G, "1.0.0", "Returns the string value of a key."),
    spec("set", -3, W, &["write", "denyoom"], ONE_KEY, &["write", "string", "slow"], G, "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist."),
    spec("setnx", 3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "1.0.0", "Set the string value of a key only when the key doesn't exist."),
    spec("setex", 4, W, &["write", "denyoom"], ONE_KEY, &["write", "string", "slow"], G, "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist."),
    spec("psetex", 4, W, &["write", "denyoom"], ONE_KEY, &["write", "string", "slow"], G, "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist."),
    spec("getset", 3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "1.0.0", "Returns the previous string value of a key after setting it to a new value."),
    spec("getdel", 2, W, &["write", "fast"], ONE_KEY, &["write", "string", "fast"], G, "6.2.0", "Returns the string value of a key after deleting the key."),
    spec("getex", -2, W, &["write", "fast"], ONE_KEY, &["write", "string", "fast"], G, "6.2.0", "Returns the string value of a key after setting its expiration time."),
    spec("mget", -2, R, &["readonly", "fast"], ALL_KEYS, &["read", "string", "fast"], G, "1.0.0", "Atomically returns the string values of one or more keys.").with_fanout(Fanout::SplitByKey { per_key: 1, merge: KeyMerge::Values }),
    spec("mset", -3, W, &["write", "denyoom"], (1, -1, 2), &["write", "string", "slow"], G, "1.0.1", "Atomically creates or modifies the string values of one or more keys.").with_fanout(Fanout::SplitByKey { per_key: 2, merge: KeyMerge::AllOk }),
    spec("msetnx", -3, W, &["write", "denyoom"], (1, -1, 2), &["write", "string", "slow"], G, "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec("incr", 2, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("decr", 2, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist."),
    spec("incrby", 3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("decrby", 3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist."),
    spec("incrbyfloat", 3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist."),
    spec("append", 3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "string", "fast"], G, "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist."),
    spec("strlen", 2, R, &["readonly", "fast"], ONE_KEY, &["read", "string", "fast"], G, "2.2.0", "Returns the length of a string value."),
    spec("getrange", 4, R, &["readonly"], ONE_KEY, &["read", "string", "slow"], G, "2.4.0", "Returns a substring of the string stored at a key."),
    spec("substr", 4, R, &["readonly"], ONE_KEY, &["read", "string", "slow"], G, "1.0.0", "Returns a substring from string stored at key."),
    spec("lcs", -3, R, &["readonly"], (1, 2, 1), &["read", "string", "slow"], G, "7.0.0", "Finds the longest common substring."),
    spec("setrange", 4, W, &["write", "denyoom"], ONE_KEY, &["write", "string", "slow"], G, "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist."),
    spec("setbit", 4, W, &["write", "denyoom"], ONE_KEY, &["write", "bitmap", "slow"], "bitmap", "2.2.0", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist."),
    spec("getbit", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "bitmap", "fast"], "bitmap", "2.2.0", "Returns a bit value by offset."),
    spec("bitcount", -2, R, &["readonly"], ONE_KEY, &["read", "bitmap", "slow"], "bitmap", "2.6.0", "Counts the number of set bits (population counting) in a string."),
    spec("bitpos", -3, R, &["readonly"], ONE_KEY, &["read", "bitmap", "slow"], "bitmap", "2.8.7", "Finds the first set (1) or clear (0) bit in a string."),
    spec("bitfield", -2, W, &["write", "denyoom"], ONE_KEY, &["write", "bitmap", "slow"], "bitmap", "3.2.0", "Perform arbitrary bitfield integer operations on strings"),
    spec("bitfield_ro", -2, R, &["readonly", "fast"], ONE_KEY, &["read", "bitmap", "fast"], "bitmap", "6.0.0", "Perform arbitrary bitfield integer operations on strings. Read-only variant of BITFIELD"),
    spec("bitop", -4, W, &["write", "denyoom"], (2, -1, 1), &["write", "bitmap", "slow"], "bitmap", "2.6.0", "Performs bitwise operations on multiple strings, and stores the result."),
];

/// When a SET-like command makes the key expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Milliseconds from the change's time (EX, PX, SETEX, PSETEX); always > 0.
    In(i64),
    /// Unix time in milliseconds (EXAT, PXAT); always > 0.
    At(i64),
}

impl Expiry {
    /// The absolute expiry for a change taking place at `now_ms`, or `None` on overflow.
    pub fn at(self, now_ms: i64) -> Option<i64> {
        match self {
            Expiry::In(ms) => ms.checked_add(now_ms),
            Expiry::At(ms) => Some(ms),
        }
    }
}

/// What SET does with the key's existing time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlUpdate {
    /// Remove any TTL (plain SET).
    Clear,
    /// Keep the current TTL (KEEPTTL).
    Keep,
    /// Set a new expiry.
    Set(Expiry),
}

/// SET's existence condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Always set.
    Always,
    /// Only if the key does not exist (NX).
    IfMissing,
    /// Only if the key exists (XX).
    IfExists,
}

/// GETEX's effect on the TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetExUpdate {
    /// No option: just GET.
    None,
    /// PERSIST.
    Persist,
    /// EX/PX/EXAT/PXAT with its still unchecked argument: Redis validates it only after
    /// finding the key, so `GETEX missing EX junk` answers nil.
    Set(UncheckedExpiry),
}

/// An expiry argument kept as sent, checked when the command executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UncheckedExpiry {
    arg: Bytes,
    kind: ExpireKind,
}

impl UncheckedExpiry {
    /// Validates the argument as Redis does (integer, positive, no overflow in ms).
    pub fn check(&self, command: &'static str) -> Result<Expiry, CommandError> {
        expiry_of(self.kind, &self.arg, command)
    }
}

/// A string command that only reads (served from a replica's state, never replicated).
#[derive(Debug, Clone, PartialEq)]
pub enum StringRead {
    /// GET key
    Get(Bytes),
    /// MGET key...
    MGet(Vec<Bytes>),
    /// STRLEN key
    StrLen(Bytes),
    /// GETRANGE key start end
    GetRange(Bytes, i64, i64),
    /// GETBIT key offset
    GetBit(Bytes, u64),
    /// `BITCOUNT key [start end [BYTE|BIT]]` (the range is parsed at execution, after the key lookup)
    BitCount(Bytes, Vec<Bytes>),
    /// `BITPOS key bit [start [end [BYTE|BIT]]]`
    BitPos(Bytes, bool, Vec<Bytes>),
    /// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]` (the options are read
    /// at execution, after the keys' types are checked, as Redis orders its errors:
    /// [`lcs_options`]).
    Lcs(Bytes, Bytes, Vec<Bytes>),
    /// `BITFIELD_RO key [GET type offset ...]`
    BitField(Bytes, BitField),
}

/// A string command that writes (replicated through raft).
#[derive(Debug, Clone, PartialEq)]
pub enum StringWrite {
    /// SET and its variants SETEX, PSETEX, GETSET.
    Set {
        /// Key.
        key: Bytes,
        /// New value.
        value: Bytes,
        /// NX/XX.
        condition: SetCondition,
        /// Reply with the old value (GET option, GETSET).
        get: bool,
        /// TTL handling.
        ttl: TtlUpdate,
        /// Name for error texts (`set`, `setex`, ...).
        command: &'static str,
    },
    /// SETNX key value
    SetNx(Bytes, Bytes),
    /// GETDEL key
    GetDel(Bytes),
    /// `GETEX key [option]`
    GetEx(Bytes, GetExUpdate),
    /// MSET / MSETNX
    MSet {
        /// Key/value pairs in argument order.
        pairs: Vec<(Bytes, Bytes)>,
        /// MSETNX semantics.
        only_if_none_exist: bool,
    },
    /// INCR, DECR, INCRBY, DECRBY
    IncrBy(Bytes, i64),
    /// INCRBYFLOAT key increment (the increment is validated, kept as text for exact math)
    IncrByFloat(Bytes, Bytes),
    /// APPEND key value
    Append(Bytes, Bytes),
    /// SETRANGE key offset value (offset >= 0)
    SetRange(Bytes, i64, Bytes),
    /// SETBIT key offset bit
    SetBit(Bytes, u64, bool),
    /// `BITFIELD key [GET ...] [SET ...] [INCRBY ...] [OVERFLOW ...]`
    BitField(Bytes, BitField),
    /// `BITOP AND|OR|XOR|NOT destkey key [key ...]` (NOT: one key).
    BitOp {
        /// The operation.
        op: BitOperation,
        /// Where the result goes.
        dest: Bytes,
        /// The operands.
        sources: Vec<Bytes>,
    },
}

/// A typed string command.
#[derive(Debug, Clone, PartialEq)]
pub enum StringCommand {
    /// Reads only: the type says which executor may run it.
    Read(StringRead),
    /// Writes.
    Write(StringWrite),
}

/// Largest string Redis accepts (`proto-max-bulk-len`).
pub const MAX_STRING_LEN: u64 = 512 * 1024 * 1024;

fn int(arg: &Bytes) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Parses a SETBIT/GETBIT offset.
fn bit_offset(arg: &Bytes) -> Result<u64, CommandError> {
    match parse_i64(arg) {
        Some(off) if off >= 0 && ((off as u64) >> 3) < MAX_STRING_LEN => Ok(off as u64),
        _ => Err(CommandError::BitOffset),
    }
}

/// Converts an EX/PX/EXAT/PXAT argument to milliseconds, with Redis's checks.
pub(crate) fn expire_arg(
    arg: &Bytes,
    seconds: bool,
    command: &'static str,
) -> Result<i64, CommandError> {
    let v = int(arg)?;
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        return Err(CommandError::InvalidExpireTime(command));
    }
    Ok(if seconds { v * 1000 } else { v })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpireKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// Parses SET / GETEX options exactly as Redis's shared option parser does.
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(ExpireKind, Bytes)>,
}

fn parse_set_options(args: &[Bytes], is_set: bool) -> Result<SetOptions, CommandError> {
    let mut o = SetOptions {
        nx: false,
        xx: false,
        get: false,
        keepttl: false,
        persist: false,
        expire: None,
    };
    let mut j = 0;
    while j < args.len() {
        let opt = &args[j];
        let next = args.get(j + 1);
        let other_expire = |k: ExpireKind| o.expire.as_ref().is_some_and(|(e, _)| *e != k);
        let kind = if eq(opt, "ex") {
            Some(ExpireKind::Ex)
        } else if eq(opt, "px") {
            Some(ExpireKind::Px)
        } else if eq(opt, "exat") {
            Some(ExpireKind::ExAt)
        } else if eq(opt, "pxat") {
            Some(ExpireKind::PxAt)
        } else {
            None
        };
        if is_set && eq(opt, "nx") && !o.xx {
            o.nx = true;
        } else if is_set && eq(opt, "xx") && !o.nx {
            o.xx = true;
        } else if is_set && eq(opt, "get") {
            o.get = true;
        } else if is_set && eq(opt, "keepttl") && !o.persist && o.expire.is_none() {
            o.keepttl = true;
        } else if !is_set && eq(opt, "persist") && !o.keepttl && o.expire.is_none() {
            o.persist = true;
        } else if let (Some(k), Some(value)) = (kind, next) {
            if o.keepttl || o.persist || other_expire(k) {
                return Err(CommandError::Syntax);
            }
            o.expire = Some((k, value.clone()));
            j += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

fn expiry_of(
    kind: ExpireKind,
    value: &Bytes,
    command: &'static str,
) -> Result<Expiry, CommandError> {
    Ok(match kind {
        ExpireKind::Ex => Expiry::In(expire_arg(value, true, command)?),
        ExpireKind::Px => Expiry::In(expire_arg(value, false, command)?),
        ExpireKind::ExAt => Expiry::At(expire_arg(value, true, command)?),
        ExpireKind::PxAt => Expiry::At(expire_arg(value, false, command)?),
    })
}

impl StringCommand {
    /// Parses a string command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        let key = || args[0].clone();
        Ok(match name {
            "get" => StringCommand::Read(StringRead::Get(key())),
            "set" => {
                let o = parse_set_options(&args[2..], true)?;
                let ttl = match &o.expire {
                    Some((k, v)) => TtlUpdate::Set(expiry_of(*k, v, "set")?),
                    None if o.keepttl => TtlUpdate::Keep,
                    None => TtlUpdate::Clear,
                };
                let condition = if o.nx {
                    SetCondition::IfMissing
                } else if o.xx {
                    SetCondition::IfExists
                } else {
                    SetCondition::Always
                };
                StringCommand::Write(StringWrite::Set {
                    key: key(),
                    value: args[1].clone(),
                    condition,
                    get: o.get,
                    ttl,
                    command: "set",
                })
            }
            "setex" | "psetex" => {
                let command = if name == "setex" { "setex" } else { "psetex" };
                let ms = expire_arg(&args[1], name == "setex", command)?;
                StringCommand::Write(StringWrite::Set {
                    key: key(),
                    value: args[2].clone(),
                    condition: SetCondition::Always,
                    get: false,
                    ttl: TtlUpdate::Set(Expiry::In(ms)),
                    command,
                })
            }
            "getset" => StringCommand::Write(StringWrite::Set {
                key: key(),
                value: args[1].clone(),
                condition: SetCondition::Always,
                get: true,
                ttl: TtlUpdate::Clear,
                command: "getset",
            }),
            "setnx" => StringCommand::Write(StringWrite::SetNx(key(), args[1].clone())),
            "getdel" => StringCommand::Write(StringWrite::GetDel(key())),
            "getex" => {
                let o = parse_set_options(&args[1..], false)?;
                let update = match o.expire {
                    Some((kind, arg)) => GetExUpdate::Set(UncheckedExpiry { arg, kind }),
                    None if o.persist => GetExUpdate::Persist,
                    None => GetExUpdate::None,
                };
                StringCommand::Write(StringWrite::GetEx(key(), update))
            }
            "mget" => StringCommand::Read(StringRead::MGet(args.to_vec())),
            "mset" | "msetnx" => {
                if !args.len().is_multiple_of(2) {
                    return Err(CommandError::WrongArity(name.to_string()));
                }
                let pairs = args
                    .chunks(2)
                    .map(|p| (p[0].clone(), p[1].clone()))
                    .collect();
                StringCommand::Write(StringWrite::MSet {
                    pairs,
                    only_if_none_exist: name == "msetnx",
                })
            }
            "incr" => StringCommand::Write(StringWrite::IncrBy(key(), 1)),
            "decr" => StringCommand::Write(StringWrite::IncrBy(key(), -1)),
            "incrby" => StringCommand::Write(StringWrite::IncrBy(key(), int(&args[1])?)),
            "decrby" => {
                let by = int(&args[1])?;
                if by == i64::MIN {
                    return Err(CommandError::DecrementOverflow);
                }
                StringCommand::Write(StringWrite::IncrBy(key(), -by))
            }
            "incrbyfloat" => StringCommand::Write(StringWrite::IncrByFloat(key(), args[1].clone())),
            "append" => StringCommand::Write(StringWrite::Append(key(), args[1].clone())),
            "strlen" => StringCommand::Read(StringRead::StrLen(key())),
            "getrange" | "substr" => {
                StringCommand::Read(StringRead::GetRange(key(), int(&args[1])?, int(&args[2])?))
            }
            "lcs" => {
                StringCommand::Read(StringRead::Lcs(key(), args[1].clone(), args[2..].to_vec()))
            }
            "setrange" => {
                let offset = int(&args[1])?;
                if offset < 0 {
                    return Err(CommandError::OffsetOutOfRange);
                }
                StringCommand::Write(StringWrite::SetRange(key(), offset, args[2].clone()))
            }
            "setbit" => {
                let offset = bit_offset(&args[1])?;
                let bit = match parse_i64(&args[2]) {
                    Some(0) => false,
                    Some(1) => true,
                    _ => return Err(CommandError::BitValue),
                };
                StringCommand::Write(StringWrite::SetBit(key(), offset, bit))
            }
            "getbit" => StringCommand::Read(StringRead::GetBit(key(), bit_offset(&args[1])?)),
            "bitop" => {
                let op = match args[0].to_ascii_lowercase().as_slice() {
                    b"and" => BitOperation::And,
                    b"or" => BitOperation::Or,
                    b"xor" => BitOperation::Xor,
                    b"not" => BitOperation::Not,
                    _ => return Err(CommandError::Syntax),
                };
                let sources = args[2..].to_vec();
                if op == BitOperation::Not && sources.len() != 1 {
                    return Err(CommandError::BitOpNotOneKey);
                }
                StringCommand::Write(StringWrite::BitOp {
                    op,
                    dest: args[1].clone(),
                    sources,
                })
            }
            "bitfield" => StringCommand::Write(StringWrite::BitField(
                key(),
                BitField::parse(&args[1..], false)?,
            )),
            "bitfield_ro" => StringCommand::Read(StringRead::BitField(
                key(),
                BitField::parse(&args[1..], true)?,
            )),
            "bitcount" => StringCommand::Read(StringRead::BitCount(key(), args[1..].to_vec())),
            "bitpos" => {
                let bit = match int(&args[1])? {
                    0 => false,
                    1 => true,
                    _ => return Err(CommandError::BitArgument),
                };
                StringCommand::Read(StringRead::BitPos(key(), bit, args[2..].to_vec()))
            }
            _ => unreachable!("string family dispatched an unknown name: {name}"),
        })
    }
}

/// A parsed BITCOUNT/BITPOS range, in bits or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitRange {
    /// Start index (may be negative: from the end).
    pub start: i64,
    /// End index, inclusive, if given.
    pub end: Option<i64>,
    /// Whether indexes count bits (BIT) rather than bytes (BYTE, the default).
    pub bits: bool,
}

/// Parses BITCOUNT's optional arguments (after the key), the way Redis does once the key
/// exists. `Ok(None)` means "the whole string"; `Err(None)` means "reply 0 at once".
pub fn parse_bitcount_range(args: &[Bytes]) -> Result<Option<BitRange>, Option<CommandError>> {
    match args.len() {
        0 => Ok(None),
        2 | 3 => {
            let start = int(&args[0]).map_err(Some)?;
            let end = int(&args[1]).map_err(Some)?;
            if start < 0 && end < 0 && start > end {
                return Err(None);
            }
            let bits = match args.get(2) {
                None => false,
                Some(a) if eq(a, "bit") => true,
                Some(a) if eq(a, "byte") => false,
                Some(_) => return Err(Some(CommandError::Syntax)),
            };
            Ok(Some(BitRange {
                start,
                end: Some(end),
                bits,
            }))
        }
        _ => Err(Some(CommandError::Syntax)),
    }
}

/// Parses BITPOS's optional arguments (after the bit).
pub fn parse_bitpos_range(args: &[Bytes]) -> Result<Option<BitRange>, CommandError> {
    match args.len() {
        0 => Ok(None),
        1..=3 => {
            let start = int(&args[0])?;
            let bits = match args.get(2) {
                None => false,
                Some(a) if eq(a, "bit") => true,
                Some(a) if eq(a, "byte") => false,
                Some(_) => return Err(CommandError::Syntax),
            };
            let end = match args.get(1) {
                Some(a) => Some(int(a)?),
                None => None,
            };
            Ok(Some(BitRange { start, end, bits }))
        }
        _ => Err(CommandError::Syntax),
    }
}

/// BITOP's operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOperation {
    /// AND
    And,
    /// OR
    Or,
    /// XOR
    Xor,
    /// NOT (of one operand)
    Not,
}

/// BITOP of `operands` (a missing key is an empty string): as long as the longest, the
/// shorter ones read as zero bytes past their end.
pub fn bit_operation(op: BitOperation, operands: &[Vec<u8>]) -> Vec<u8> {
    let len = operands.iter().map(Vec::len).max().unwrap_or(0);
    let byte = |v: &Vec<u8>, i: usize| v.get(i).copied().unwrap_or(0);
    (0..len)
        .map(|i| match op {
            BitOperation::Not => !byte(&operands[0], i),
            BitOperation::And => operands.iter().fold(0xff, |acc, v| acc & byte(v, i)),
            BitOperation::Or => operands.iter().fold(0, |acc, v| acc | byte(v, i)),
            BitOperation::Xor => operands.iter().fold(0, |acc, v| acc ^ byte(v, i)),
        })
        .collect()
}

/// What LCS is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LcsOptions {
    /// LEN: the length only.
    pub len: bool,
    /// IDX: the matching ranges.
    pub idx: bool,
    /// MINMATCHLEN: ranges shorter than this are left out (0: none).
    pub min_match_len: u64,
    /// WITHMATCHLEN: each range with its length.
    pub with_match_len: bool,
}

/// LCS's options (its arguments after the two keys).
pub fn lcs_options(args: &[Bytes]) -> Result<LcsOptions, CommandError> {
    let mut o = LcsOptions::default();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].to_ascii_lowercase();
        match word.as_slice() {
            b"idx" => o.idx = true,
            b"len" => o.len = true,
            b"withmatchlen" => o.with_match_len = true,
            b"minmatchlen" if i + 1 < args.len() => {
                let n = parse_i64(&args[i + 1]).ok_or(CommandError::NotInteger)?;
                o.min_match_len = n.max(0) as u64;
                i += 1;
            }
            _ => return Err(CommandError::Syntax),
        }
        i += 1;
    }
    if o.idx && o.len {
        return Err(CommandError::LcsLenAndIdx);
    }
    Ok(o)
}

/// LCS of `a` and `b` as Redis answers it: the longest common subsequence, its length
/// (LEN), or (IDX) a map of the matching ranges, from the end of the strings back, each
/// `[[a_start, a_end], [b_start, b_end]]` (and its length with WITHMATCHLEN), and the
/// length. The table it builds takes (len(a)+1) x (len(b)+1) x 4 bytes, refused past
/// `max_table_bytes` (Redis's proto-max-bulk-len).
pub fn lcs(
    a: &[u8],
    b: &[u8],
    o: &LcsOptions,
    max_table_bytes: u64,
) -> Result<crate::reply::Reply, CommandError> {
    use crate::reply::Reply;
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1).saturating_mul(blen as u64 + 1);
    if cells.saturating_mul(4) > max_table_bytes {
        return Err(CommandError::LcsTooLarge);
    }
    let width = blen + 1;
    // table[i * width + j]: the LCS length of a[..i] and b[..j].
    let mut table = vec![0u32; cells as usize];
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if a[i - 1] == b[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[alen * width + blen];
    if o.len {
        return Ok(Reply::Integer(i64::from(total)));
    }
    // Walk back from the end: the common bytes, and the runs they form in both strings.
    let mut common = vec![0u8; total as usize];
    let mut left = total as usize;
    let mut ranges = Vec::new();
    // The run being followed: (a_start, a_end, b_start, b_end).
    let mut run: Option<(usize, usize, usize, usize)> = None;
    let (mut i, mut j) = (alen, blen);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            common[left - 1] = a[i - 1];
            left -= 1;
            match &mut run {
                None => run = Some((i - 1, i - 1, j - 1, j - 1)),
                // Contiguous in both: the run grows backwards.
                Some((a_start, _, b_start, _)) if *a_start == i && *b_start == j => {
                    *a_start -= 1;
                    *b_start -= 1;
                }
                Some(_) => emit = true,
            }
            if run.is_some_and(|(a_start, _, b_start, _)| a_start == 0 || b_start == 0) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit |= run.is_some();
        }
        if emit {
            if let Some((a_start, a_end, b_start, b_end)) = run.take() {
                let len = (a_end - a_start + 1) as u64;
                if o.min_match_len == 0 || len >= o.min_match_len {
                    let mut range = vec![
                        Reply::Array(vec![
                            Reply::Integer(a_start as i64),
                            Reply::Integer(a_end as i64),
                        ]),
                        Reply::Array(vec![
                            Reply::Integer(b_start as i64),
                            Reply::Integer(b_end as i64),
                        ]),
                    ];
                    if o.with_match_len {
                        range.push(Reply::Integer(len as i64));
                    }
                    ranges.push(Reply::Array(range));
                }
            }
        }
    }
    if !o.idx {
        return Ok(Reply::bulk(common));
    }
    Ok(Reply::Map(vec![
        (Reply::bulk("matches"), Reply::Array(ranges)),
        (Reply::bulk("len"), Reply::Integer(i64::from(total))),
    ]))
}
