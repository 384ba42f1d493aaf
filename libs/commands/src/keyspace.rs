//! Keyspace commands (generic key operations, SCAN, KEYS, FLUSHDB, DBSIZE): typed forms,
//! parsers and specs.

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::{parse_cursor, parse_i64};
use crate::spec::{
    container, spec, Access, Combine, CommandSpec, Fanout, KeyMerge, ALL_KEYS, NO_KEYS, ONE_KEY,
    TWO_KEYS,
};

const W: Access = Access::Write;
const R: Access = Access::Read;
const G: &str = "generic";

/// The OBJECT subcommands: each reads the key at position 2 (HELP is a connection command).
static OBJECT: &[CommandSpec] = &[
    spec(
        "object|encoding",
        3,
        R,
        &["readonly"],
        (2, 2, 1),
        &["keyspace", "read", "slow"],
        G,
        "2.2.3",
        "Returns the internal encoding of a Redis object.",
    ),
    spec(
        "object|freq",
        3,
        R,
        &["readonly"],
        (2, 2, 1),
        &["keyspace", "read", "slow"],
        G,
        "4.0.0",
        "Returns the logarithmic access frequency counter of a Redis object.",
    ),
    spec(
        "object|idletime",
        3,
        R,
        &["readonly"],
        (2, 2, 1),
        &["keyspace", "read", "slow"],
        G,
        "2.2.3",
        "Returns the time since the last access to a Redis object.",
    ),
    spec(
        "object|refcount",
        3,
        R,
        &["readonly"],
        (2, 2, 1),
        &["keyspace", "read", "slow"],
        G,
        "2.2.3",
        "Returns the reference count of a value of a key.",
    ),
    spec(
        "object|help",
        2,
        Access::Connection,
        &["loading", "stale"],
        NO_KEYS,
        &["keyspace", "slow"],
        G,
        "6.2.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// DEL, UNLINK, EXISTS and TOUCH split by key; the counts add up.
const SPLIT_SUM: Fanout = Fanout::SplitByKey {
    per_key: 1,
    merge: KeyMerge::Sum,
};

/// Specs of the keyspace family.
pub static SPECS: &[CommandSpec] = &[
    container("object", "A container for object introspection commands.", G, "2.2.3", OBJECT),
    spec("del", -2, W, &["write"], ALL_KEYS, &["keyspace", "write", "slow"], G, "1.0.0", "Deletes one or more keys.").with_fanout(SPLIT_SUM),
    spec("unlink", -2, W, &["write", "fast"], ALL_KEYS, &["keyspace", "write", "fast"], G, "4.0.0", "Asynchronously deletes one or more keys.").with_fanout(SPLIT_SUM),
    spec("exists", -2, R, &["readonly", "fast"], ALL_KEYS, &["keyspace", "read", "fast"], G, "1.0.0", "Determines whether one or more keys exist.").with_fanout(SPLIT_SUM),
    spec("type", 2, R, &["readonly", "fast"], ONE_KEY, &["keyspace", "read", "fast"], G, "1.0.0", "Determines the type of value stored at a key."),
    spec("touch", -2, R, &["readonly", "fast"], ALL_KEYS, &["keyspace", "read", "fast"], G, "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed.").with_fanout(SPLIT_SUM),
    spec("expire", -3, W, &["write", "fast"], ONE_KEY, &["keyspace", "write", "fast"], G, "1.0.0", "Sets the expiration time of a key in seconds."),
    spec("pexpire", -3, W, &["write", "fast"], ONE_KEY, &["keyspace", "write", "fast"], G, "2.6.0", "Sets the expiration time of a key in milliseconds."),
    spec("expireat", -3, W, &["write", "fast"], ONE_KEY, &["keyspace", "write", "fast"], G, "1.2.0", "Sets the expiration time of a key to a Unix timestamp."),
    spec("pexpireat", -3, W, &["write", "fast"], ONE_KEY, &["keyspace", "write", "fast"], G, "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec("ttl", 2, R, &["readonly", "fast"], ONE_KEY, &["keyspace", "read", "fast"], G, "1.0.0", "Returns the expiration time in seconds of a key."),
    spec("pttl", 2, R, &["readonly", "fast"], ONE_KEY, &["keyspace", "read", "fast"], G, "2.6.0", "Returns the expiration time in milliseconds of a key."),
    spec("expiretime", 2, R, &["readonly", "fast"], ONE_KEY, &["keyspace", "read", "fast"], G, "7.0.0", "Returns the expiration time of a key as a Unix timestamp."),
    spec("pexpiretime", 2, R, &["readonly", "fast"], ONE_KEY, &["keyspace", "read", "fast"], G, "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec("persist", 2, W, &["write", "fast"], ONE_KEY, &["keyspace", "write", "fast"], G, "2.2.0", "Removes the expiration time of a key."),
    spec("rename", 3, W, &["write"], TWO_KEYS, &["keyspace", "write", "slow"], G, "1.0.0", "Renames a key and overwrites the destination."),
    spec("renamenx", 3, W, &["write", "fast"], TWO_KEYS, &["keyspace", "write", "fast"], G, "1.0.0", "Renames a key only when the target key name doesn't exist."),
    spec("copy", -3, W, &["write", "denyoom"], TWO_KEYS, &["keyspace", "write", "slow"], G, "6.2.0", "Copies the value of a key to a new key."),
    spec("scan", -2, R, &["readonly"], NO_KEYS, &["keyspace", "read", "slow"], G, "2.8.0", "Iterates over the key names in the database.").with_fanout(Fanout::EveryPartition(Combine::Scan)),
    spec("keys", 2, R, &["readonly"], NO_KEYS, &["keyspace", "read", "slow", "dangerous"], G, "1.0.0", "Returns all key names that match a pattern.").with_fanout(Fanout::EveryPartition(Combine::Concat)),
    spec("randomkey", 1, R, &["readonly"], NO_KEYS, &["keyspace", "read", "slow"], G, "1.0.0", "Returns a random key name from the database.").with_fanout(Fanout::EveryPartition(Combine::AnyKey)),
    spec("dbsize", 1, R, &["readonly", "fast"], NO_KEYS, &["keyspace", "read", "fast"], "server", "1.0.0", "Returns the number of keys in the database.").with_fanout(Fanout::EveryPartition(Combine::Sum)),
    spec("flushdb", -1, W, &["write"], NO_KEYS, &["keyspace", "write", "slow", "dangerous"], "server", "1.0.0", "Removes all keys from the current database.").with_fanout(Fanout::EveryPartition(Combine::AllOk)),
    spec("flushall", -1, W, &["write"], NO_KEYS, &["keyspace", "write", "slow", "dangerous"], "server", "1.0.0", "Removes all keys from all databases.").with_fanout(Fanout::EveryPartition(Combine::AllOk)),
];

/// Conditions of EXPIRE-family commands (Redis 7.0 options); several may combine (XX with
/// GT or LT), and each must hold for the expiry to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// NX: only if the key has no expiry.
    pub nx: bool,
    /// XX: only if the key has an expiry.
    pub xx: bool,
    /// GT: only if the new expiry is greater (no expiry counts as infinite).
    pub gt: bool,
    /// LT: only if the new expiry is less (no expiry counts as infinite).
    pub lt: bool,
}

/// Unit of a TTL query reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Millis,
}

/// A keyspace command that only reads (served from a replica's state, never replicated).
#[derive(Debug, Clone, PartialEq)]
pub enum KeyspaceRead {
    /// EXISTS key...
    Exists(Vec<Bytes>),
    /// TOUCH key...
    Touch(Vec<Bytes>),
    /// TYPE key
    Type(Bytes),
    /// TTL / PTTL
    Ttl(Bytes, TimeUnit),
    /// EXPIRETIME / PEXPIRETIME
    ExpireTime(Bytes, TimeUnit),
    /// `SCAN cursor [MATCH p] [COUNT n] [TYPE t]`
    Scan(ScanArgs),
    /// KEYS pattern
    Keys(Bytes),
    /// RANDOMKEY
    RandomKey,
    /// DBSIZE
    DbSize,
    /// One partition's key and expiring-key counts, as `[keys, expires]`. Never parsed
    /// from a client: a storage node runs it for `ZANKV.ON <partition> INFO KEYSPACE`, the
    /// proxy's way to total INFO's keyspace line over a cluster.
    PartitionKeyspace,
    /// `OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key`
    Object(ObjectQuery, Bytes),
}

/// A keyspace command that writes (replicated through raft).
#[derive(Debug, Clone, PartialEq)]
pub enum KeyspaceWrite {
    /// DEL / UNLINK
    Del(Vec<Bytes>),
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT
    Expire {
        /// Key.
        key: Bytes,
        /// The time in milliseconds (relative or absolute).
        when_ms: i64,
        /// Whether `when_ms` is relative to the change's time.
        relative: bool,
        /// NX/XX/GT/LT.
        condition: ExpireCondition,
        /// Name for error texts.
        command: &'static str,
    },
    /// PERSIST key
    Persist(Bytes),
    /// RENAME / RENAMENX
    Rename {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// RENAMENX semantics.
        only_if_missing: bool,
    },
    /// `COPY source destination [DB 0] [REPLACE]`
    Copy {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// Overwrite an existing destination.
        replace: bool,
    },
    /// `FLUSHDB`/`FLUSHALL [ASYNC|SYNC]`
    Flush,
}

/// A typed keyspace command.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyspaceCommand {
    /// Reads only: the type says which executor may run it.
    Read(KeyspaceRead),
    /// Writes.
    Write(KeyspaceWrite),
}

/// What an OBJECT subcommand asks about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectQuery {
    /// ENCODING: the name of the representation Redis would use for the value.
    Encoding,
    /// FREQ: the LFU counter (refused: no LFU policy).
    Freq,
    /// IDLETIME: seconds since the last access.
    IdleTime,
    /// REFCOUNT: references to the value.
    RefCount,
}

/// Cursor and options of a SCAN-family command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanArgs {
    /// Cursor (0 starts a new iteration).
    pub cursor: u64,
    /// MATCH pattern.
    pub pattern: Option<Bytes>,
    /// COUNT hint (≥ 1).
    pub count: usize,
    /// TYPE filter (SCAN only), lower-cased.
    pub type_filter: Option<Vec<u8>>,
}

/// Parses a SCAN-family cursor argument.
pub fn scan_cursor(arg: &Bytes) -> Result<u64, CommandError> {
    parse_cursor(arg).ok_or(CommandError::InvalidCursor)
}

/// Parses SCAN-family options after the cursor. `allow_type` is true only for SCAN.
pub fn scan_options(
    cursor: u64,
    opts: &[Bytes],
    allow_type: bool,
) -> Result<ScanArgs, CommandError> {
    let mut args = ScanArgs {
        cursor,
        pattern: None,
        count: 10,
        type_filter: None,
    };
    let mut j = 0;
    while j < opts.len() {
        let opt = &opts[j];
        let Some(value) = opts.get(j + 1) else {
            return Err(CommandError::Syntax);
        };
        if opt.eq_ignore_ascii_case(b"count") {
            let n = parse_i64(value).ok_or(CommandError::NotInteger)?;
            if n < 1 {
                return Err(CommandError::Syntax);
            }
            args.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if opt.eq_ignore_ascii_case(b"match") {
            args.pattern = Some(value.clone());
        } else if allow_type && opt.eq_ignore_ascii_case(b"type") {
            args.type_filter = Some(value.to_ascii_lowercase());
        } else {
            return Err(CommandError::Syntax);
        }
        j += 2;
    }
    Ok(args)
}

fn expire(name: &str, args: &[Bytes]) -> Result<KeyspaceCommand, CommandError> {
    let (command, seconds, relative) = match name {
        "expire" => ("expire", true, true),
        "pexpire" => ("pexpire", false, true),
        "expireat" => ("expireat", true, false),
        _ => ("pexpireat", false, false),
    };
    let mut c = ExpireCondition::default();
    for opt in &args[2..] {
        if opt.eq_ignore_ascii_case(b"nx") {
            c.nx = true;
        } else if opt.eq_ignore_ascii_case(b"xx") {
            c.xx = true;
        } else if opt.eq_ignore_ascii_case(b"gt") {
            c.gt = true;
        } else if opt.eq_ignore_ascii_case(b"lt") {
            c.lt = true;
        } else {
            return Err(CommandError::UnsupportedOption(
                String::from_utf8_lossy(opt).into_owned(),
            ));
        }
    }
    if c.nx && (c.xx || c.gt || c.lt) {
        return Err(CommandError::ExpireNxConflict);
    }
    if c.gt && c.lt {
        return Err(CommandError::ExpireGtLtConflict);
    }
    let mut when = parse_i64(&args[1]).ok_or(CommandError::NotInteger)?;
    if seconds {
        when = when
            .checked_mul(1000)
            .ok_or(CommandError::InvalidExpireTime(command))?;
    }
    Ok(KeyspaceCommand::Write(KeyspaceWrite::Expire {
        key: args[0].clone(),
        when_ms: when,
        relative,
        condition: c,
        command,
    }))
}

impl KeyspaceCommand {
    /// Parses a keyspace command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        Ok(match name {
            "object|encoding" => {
                KeyspaceCommand::Read(KeyspaceRead::Object(ObjectQuery::Encoding, args[1].clone()))
            }
            "object|freq" => {
                KeyspaceCommand::Read(KeyspaceRead::Object(ObjectQuery::Freq, args[1].clone()))
            }
            "object|idletime" => {
                KeyspaceCommand::Read(KeyspaceRead::Object(ObjectQuery::IdleTime, args[1].clone()))
            }
            "object|refcount" => {
                KeyspaceCommand::Read(KeyspaceRead::Object(ObjectQuery::RefCount, args[1].clone()))
            }
            "del" | "unlink" => KeyspaceCommand::Write(KeyspaceWrite::Del(args.to_vec())),
            "exists" => KeyspaceCommand::Read(KeyspaceRead::Exists(args.to_vec())),
            "touch" => KeyspaceCommand::Read(KeyspaceRead::Touch(args.to_vec())),
            "type" => KeyspaceCommand::Read(KeyspaceRead::Type(args[0].clone())),
            "expire" | "pexpire" | "expireat" | "pexpireat" => expire(name, args)?,
            "ttl" => KeyspaceCommand::Read(KeyspaceRead::Ttl(args[0].clone(), TimeUnit::Seconds)),
            "pttl" => KeyspaceCommand::Read(KeyspaceRead::Ttl(args[0].clone(), TimeUnit::Millis)),
            "expiretime" => {
                KeyspaceCommand::Read(KeyspaceRead::ExpireTime(args[0].clone(), TimeUnit::Seconds))
            }
            "pexpiretime" => {
                KeyspaceCommand::Read(KeyspaceRead::ExpireTime(args[0].clone(), TimeUnit::Millis))
            }
            "persist" => KeyspaceCommand::Write(KeyspaceWrite::Persist(args[0].clone())),
            "rename" | "renamenx" => KeyspaceCommand::Write(KeyspaceWrite::Rename {
                src: args[0].clone(),
                dst: args[1].clone(),
                only_if_missing: name == "renamenx",
            }),
            "copy" => {
                let mut replace = false;
                let mut j = 2;
                while j < args.len() {
                    if args[j].eq_ignore_ascii_case(b"replace") {
                        replace = true;
                    } else if args[j].eq_ignore_ascii_case(b"db") && j + 1 < args.len() {
                        let db = parse_i64(&args[j + 1]).ok_or(CommandError::NotInteger)?;
                        if db != 0 {
                            return Err(CommandError::DbIndexOutOfRange);
                        }
                        j += 1;
                    } else {
                        return Err(CommandError::Syntax);
                    }
                    j += 1;
                }
                KeyspaceCommand::Write(KeyspaceWrite::Copy {
                    src: args[0].clone(),
                    dst: args[1].clone(),
                    replace,
                })
            }
            "scan" => KeyspaceCommand::Read(KeyspaceRead::Scan(scan_options(
                scan_cursor(&args[0])?,
                &args[1..],
                true,
            )?)),
            "keys" => KeyspaceCommand::Read(KeyspaceRead::Keys(args[0].clone())),
            "randomkey" => KeyspaceCommand::Read(KeyspaceRead::RandomKey),
            "dbsize" => KeyspaceCommand::Read(KeyspaceRead::DbSize),
            "flushdb" | "flushall" => {
                match args {
                    [] => {}
                    [mode]
                        if mode.eq_ignore_ascii_case(b"async")
                            || mode.eq_ignore_ascii_case(b"sync") => {}
                    _ => return Err(CommandError::Syntax),
                }
                KeyspaceCommand::Write(KeyspaceWrite::Flush)
            }
            _ => unreachable!("keyspace family dispatched an unknown name: {name}"),
        })
    }
}
