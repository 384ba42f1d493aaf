//! Set commands: typed forms, parsers and specs.

use bytes::Bytes;

use crate::error::CommandError;
use crate::keyspace::scan_cursor;
use crate::list::{non_negative, numkeys_and_keys, positive_count};
use crate::number::parse_i64;
use crate::spec::{spec, Access, CommandSpec, ALL_KEYS, NO_KEYS, ONE_KEY, TWO_KEYS};

const W: Access = Access::Write;
const R: Access = Access::Read;
const G: &str = "set";

/// Specs of the set family.
pub static SPECS: &[CommandSpec] = &[
    spec("sadd", -3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "set", "fast"], G, "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist."),
    spec("srem", -3, W, &["write", "fast"], ONE_KEY, &["write", "set", "fast"], G, "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed."),
    spec("scard", 2, R, &["readonly", "fast"], ONE_KEY, &["read", "set", "fast"], G, "1.0.0", "Returns the number of members in a set."),
    spec("sismember", 3, R, &["readonly", "fast"], ONE_KEY, &["read", "set", "fast"], G, "1.0.0", "Determines whether a member belongs to a set."),
    spec("smismember", -3, R, &["readonly", "fast"], ONE_KEY, &["read", "set", "fast"], G, "6.2.0", "Determines whether multiple members belong to a set."),
    spec("smembers", 2, R, &["readonly"], ONE_KEY, &["read", "set", "slow"], G, "1.0.0", "Returns all members of a set."),
    spec("srandmember", -2, R, &["readonly"], ONE_KEY, &["read", "set", "slow"], G, "1.0.0", "Get one or multiple random members from a set"),
    spec("spop", -2, W, &["write", "fast"], ONE_KEY, &["write", "set", "fast"], G, "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped."),
    spec("smove", 4, W, &["write", "fast"], TWO_KEYS, &["write", "set", "fast"], G, "1.0.0", "Moves a member from one set to another."),
    spec("sinter", -2, R, &["readonly"], ALL_KEYS, &["read", "set", "slow"], G, "1.0.0", "Returns the intersect of multiple sets."),
    spec("sintercard", -3, R, &["readonly", "movablekeys"], NO_KEYS, &["read", "set", "slow"], G, "7.0.0", "Returns the number of members of the intersect of multiple sets.").with_numkeys_at(1),
    spec("sunion", -2, R, &["readonly"], ALL_KEYS, &["read", "set", "slow"], G, "1.0.0", "Returns the union of multiple sets."),
    spec("sdiff", -2, R, &["readonly"], ALL_KEYS, &["read", "set", "slow"], G, "1.0.0", "Returns the difference of multiple sets."),
    spec("sinterstore", -3, W, &["write", "denyoom"], ALL_KEYS, &["write", "set", "slow"], G, "1.0.0", "Stores the intersect of multiple sets in a key."),
    spec("sunionstore", -3, W, &["write", "denyoom"], ALL_KEYS, &["write", "set", "slow"], G, "1.0.0", "Stores the union of multiple sets in a key."),
    spec("sdiffstore", -3, W, &["write", "denyoom"], ALL_KEYS, &["write", "set", "slow"], G, "1.0.0", "Stores the difference of multiple sets in a key."),
    spec("sscan", -3, R, &["readonly"], ONE_KEY, &["read", "set", "slow"], G, "2.0.0", "Iterates over members of a set."),
];

/// How several sets combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOp {
    /// Members in every set.
    Inter,
    /// Members in any set.
    Union,
    /// Members of the first set in none of the others.
    Diff,
}

/// A set command that only reads (served from a replica's state, never replicated).
#[derive(Debug, Clone, PartialEq)]
pub enum SetRead {
    /// SCARD key
    Card(Bytes),
    /// SISMEMBER key member
    IsMember(Bytes, Bytes),
    /// SMISMEMBER key member...
    MIsMember(Bytes, Vec<Bytes>),
    /// SMEMBERS key
    Members(Bytes),
    /// `SRANDMEMBER key [count]`: `None` for one member, else the count (negative: members
    /// may repeat).
    RandMember(Bytes, Option<i64>),
    /// SINTER/SUNION/SDIFF key...
    Combine(SetOp, Vec<Bytes>),
    /// `SINTERCARD numkeys key... [LIMIT limit]` (0 = no limit)
    InterCard(Vec<Bytes>, u64),
    /// `SSCAN key cursor [MATCH p] [COUNT n]`; options are parsed after the key lookup, as
    /// Redis does, so they are kept raw here.
    Scan(Bytes, u64, Vec<Bytes>),
}

/// A set command that writes (replicated through raft).
#[derive(Debug, Clone, PartialEq)]
pub enum SetWrite {
    /// SADD key member...
    Add(Bytes, Vec<Bytes>),
    /// SREM key member...
    Rem(Bytes, Vec<Bytes>),
    /// `SPOP key [count]`
    Pop(Bytes, Option<u64>),
    /// SMOVE source destination member
    Move(Bytes, Bytes, Bytes),
    /// SINTERSTORE/SUNIONSTORE/SDIFFSTORE destination key...
    Store(SetOp, Bytes, Vec<Bytes>),
}

/// A typed set command.
#[derive(Debug, Clone, PartialEq)]
pub enum SetCommand {
    /// Reads only: the type says which executor may run it.
    Read(SetRead),
    /// Writes.
    Write(SetWrite),
}

impl SetCommand {
    /// Parses a set command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        let key = || args[0].clone();
        let op = |name: &str| match name.trim_end_matches("store") {
            "sinter" => SetOp::Inter,
            "sunion" => SetOp::Union,
            _ => SetOp::Diff,
        };
        Ok(match name {
            "sadd" => SetCommand::Write(SetWrite::Add(key(), args[1..].to_vec())),
            "srem" => SetCommand::Write(SetWrite::Rem(key(), args[1..].to_vec())),
            "scard" => SetCommand::Read(SetRead::Card(key())),
            "sismember" => SetCommand::Read(SetRead::IsMember(key(), args[1].clone())),
            "smismember" => SetCommand::Read(SetRead::MIsMember(key(), args[1..].to_vec())),
            "smembers" => SetCommand::Read(SetRead::Members(key())),
            "srandmember" => {
                let count = match &args[1..] {
                    [] => None,
                    [c] => {
                        let n = parse_i64(c).ok_or(CommandError::NotInteger)?;
                        if n == i64::MIN {
                            return Err(CommandError::OutOfRangeBetween(-i64::MAX, i64::MAX));
                        }
                        Some(n)
                    }
                    _ => return Err(CommandError::Syntax),
                };
                SetCommand::Read(SetRead::RandMember(key(), count))
            }
            "spop" => {
                let count = match &args[1..] {
                    [] => None,
                    [c] => Some(positive_count(c)?),
                    _ => return Err(CommandError::Syntax),
                };
                SetCommand::Write(SetWrite::Pop(key(), count))
            }
            "smove" => SetCommand::Write(SetWrite::Move(key(), args[1].clone(), args[2].clone())),
            "sinter" | "sunion" | "sdiff" => {
                SetCommand::Read(SetRead::Combine(op(name), args.to_vec()))
            }
            "sinterstore" | "sunionstore" | "sdiffstore" => {
                SetCommand::Write(SetWrite::Store(op(name), key(), args[1..].to_vec()))
            }
            "sintercard" => {
                let (keys, mut rest) = numkeys_and_keys(args, 0, CommandError::NumkeysExceedArgs)?;
                let mut limit = 0;
                while let [opt, tail @ ..] = rest {
                    match tail.split_first() {
                        Some((value, tail)) if opt.eq_ignore_ascii_case(b"limit") => {
                            limit = non_negative(value, CommandError::LimitNegative)?;
                            rest = tail;
                        }
                        _ => return Err(CommandError::Syntax),
                    }
                }
                SetCommand::Read(SetRead::InterCard(keys, limit))
            }
            "sscan" => SetCommand::Read(SetRead::Scan(
                key(),
                scan_cursor(&args[1])?,
                args[2..].to_vec(),
            )),
            _ => unreachable!("set family dispatched an unknown name: {name}"),
        })
    }
}
