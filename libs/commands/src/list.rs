//! List commands: typed forms, parsers and specs.
//!
//! Arguments that Redis checks before it looks the key up are checked here, so their errors
//! win over WRONGTYPE as in Redis; those it checks after the lookup (LINDEX's and LSET's
//! index) are kept raw and checked by the executor.

use bytes::Bytes;

use crate::blocking::parse_timeout;
use crate::error::CommandError;
use crate::number::parse_i64;
use crate::spec::{spec, Access, CommandSpec, TimeoutAt, ALL_BUT_LAST, NO_KEYS, ONE_KEY, TWO_KEYS};

const W: Access = Access::Write;
const R: Access = Access::Read;
const G: &str = "list";

/// Specs of the list family.
pub static SPECS: &[CommandSpec] = &[
    spec("lpush", -3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "list", "fast"], G, "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist."),
    spec("rpush", -3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "list", "fast"], G, "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist."),
    spec("lpushx", -3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "list", "fast"], G, "2.2.0", "Prepends one or more elements to a list only when the list exists."),
    spec("rpushx", -3, W, &["write", "denyoom", "fast"], ONE_KEY, &["write", "list", "fast"], G, "2.2.0", "Appends an element to a list only when the list exists."),
    spec("lpop", -2, W, &["write", "fast"], ONE_KEY, &["write", "list", "fast"], G, "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped."),
    spec("rpop", -2, W, &["write", "fast"], ONE_KEY, &["write", "list", "fast"], G, "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped."),
    spec("llen", 2, R, &["readonly", "fast"], ONE_KEY, &["read", "list", "fast"], G, "1.0.0", "Returns the length of a list."),
    spec("lindex", 3, R, &["readonly"], ONE_KEY, &["read", "list", "slow"], G, "1.0.0", "Returns an element from a list by its index."),
    spec("lset", 4, W, &["write", "denyoom"], ONE_KEY, &["write", "list", "slow"], G, "1.0.0", "Sets the value of an element in a list by its index."),
    spec("lrange", 4, R, &["readonly"], ONE_KEY, &["read", "list", "slow"], G, "1.0.0", "Returns a range of elements from a list."),
    spec("ltrim", 4, W, &["write"], ONE_KEY, &["write", "list", "slow"], G, "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed."),
    spec("linsert", 5, W, &["write", "denyoom"], ONE_KEY, &["write", "list", "slow"], G, "2.2.0", "Inserts an element before or after another element in a list."),
    spec("lrem", 4, W, &["write"], ONE_KEY, &["write", "list", "slow"], G, "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed."),
    spec("lpos", -3, R, &["readonly"], ONE_KEY, &["read", "list", "slow"], G, "6.0.6", "Returns the index of matching elements in a list."),
    spec("lmove", 5, W, &["write", "denyoom"], TWO_KEYS, &["write", "list", "slow"], G, "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved."),
    spec("rpoplpush", 3, W, &["write", "denyoom"], TWO_KEYS, &["write", "list", "slow"], G, "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped."),
    spec("lmpop", -4, W, &["write", "movablekeys"], NO_KEYS, &["write", "list", "slow"], G, "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.").with_numkeys_at(1),
    spec("blpop", -3, W, &["write", "noscript", "blocking"], ALL_BUT_LAST, &["write", "list", "slow", "blocking"], G, "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.").with_timeout_at(TimeoutAt::Last),
    spec("brpop", -3, W, &["write", "noscript", "blocking"], ALL_BUT_LAST, &["write", "list", "slow", "blocking"], G, "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.").with_timeout_at(TimeoutAt::Last),
    spec("brpoplpush", 4, W, &["write", "denyoom", "noscript", "blocking"], TWO_KEYS, &["write", "list", "slow", "blocking"], G, "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was popped.").with_timeout_at(TimeoutAt::Last),
    spec("blmove", 6, W, &["write", "denyoom", "noscript", "blocking"], TWO_KEYS, &["write", "list", "slow", "blocking"], G, "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.").with_timeout_at(TimeoutAt::Last),
    spec("blmpop", -5, W, &["write", "blocking", "movablekeys"], NO_KEYS, &["write", "list", "slow", "blocking"], G, "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.").with_numkeys_at(2).with_timeout_at(TimeoutAt::Index(1)),
];

/// An end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The head (index 0).
    Left,
    /// The tail (index -1).
    Right,
}

impl End {
    /// Parses `LEFT`/`RIGHT` in any case.
    pub fn parse(arg: &[u8]) -> Result<Self, CommandError> {
        if arg.eq_ignore_ascii_case(b"left") {
            Ok(End::Left)
        } else if arg.eq_ignore_ascii_case(b"right") {
            Ok(End::Right)
        } else {
            Err(CommandError::Syntax)
        }
    }
}

/// LPOS options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PosOptions {
    /// RANK: which match to start from (negative: from the tail). Never 0.
    pub rank: i64,
    /// COUNT: how many matches to return (`Some(0)` = all); `None` = a single reply.
    pub count: Option<u64>,
    /// MAXLEN: most elements to compare (0 = all).
    pub maxlen: u64,
}

/// A list command that only reads (served from a replica's state, never replicated).
#[derive(Debug, Clone, PartialEq)]
pub enum ListRead {
    /// LLEN key
    Len(Bytes),
    /// LINDEX key index (the index is checked after the key lookup, as Redis does)
    Index(Bytes, Bytes),
    /// LRANGE key start stop
    Range(Bytes, i64, i64),
    /// `LPOS key element [RANK r] [COUNT c] [MAXLEN m]`
    Pos(Bytes, Bytes, PosOptions),
}

/// A list command that writes (replicated through raft).
#[derive(Debug, Clone, PartialEq)]
pub enum ListWrite {
    /// LPUSH/RPUSH/LPUSHX/RPUSHX key element...
    Push {
        /// Key.
        key: Bytes,
        /// Which end.
        end: End,
        /// Only if the list exists (the X forms).
        only_existing: bool,
        /// Elements, pushed one after the other.
        elements: Vec<Bytes>,
    },
    /// `LPOP/RPOP key [count]`
    Pop {
        /// Key.
        key: Bytes,
        /// Which end.
        end: End,
        /// The count, if given (the reply is then an array).
        count: Option<u64>,
    },
    /// LSET key index element (likewise)
    Set(Bytes, Bytes, Bytes),
    /// LTRIM key start stop
    Trim(Bytes, i64, i64),
    /// LINSERT key BEFORE|AFTER pivot element
    Insert {
        /// Key.
        key: Bytes,
        /// AFTER the pivot (else BEFORE).
        after: bool,
        /// The element to insert next to.
        pivot: Bytes,
        /// The new element.
        element: Bytes,
    },
    /// LREM key count element
    Rem(Bytes, i64, Bytes),
    /// LMOVE source destination LEFT|RIGHT LEFT|RIGHT, RPOPLPUSH source destination (and
    /// their blocking forms)
    Move {
        /// Source key.
        src: Bytes,
        /// Destination key.
        dst: Bytes,
        /// End popped from.
        from: End,
        /// End pushed to.
        to: End,
    },
    /// `BLPOP/BRPOP key... timeout` as it runs once (inside MULTI, or each time a blocked
    /// client tries): one element from the first non-empty list, with its key.
    BPop {
        /// Keys, tried in order.
        keys: Vec<Bytes>,
        /// Which end.
        end: End,
    },
    /// `LMPOP numkeys key... LEFT|RIGHT [COUNT count]` (and BLMPOP's)
    MPop {
        /// Keys, tried in order.
        keys: Vec<Bytes>,
        /// Which end.
        end: End,
        /// Most elements to pop (default 1).
        count: u64,
    },
}

/// A typed list command.
#[derive(Debug, Clone, PartialEq)]
pub enum ListCommand {
    /// Reads only: the type says which executor may run it.
    Read(ListRead),
    /// Writes.
    Write(ListWrite),
}

/// Parses a count that must not be negative (LPOP, RPOP, SPOP): anything else, a
/// non-number included, is Redis's "must be positive".
pub fn positive_count(arg: &[u8]) -> Result<u64, CommandError> {
    parse_i64(arg)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(CommandError::MustBePositive)
}

/// Parses `numkeys key...` at the start of `args`: the keys and the arguments after them.
/// More keys than arguments is `too_many` (which differs between commands), and so is a
/// count that leaves fewer than `after` arguments behind the keys.
pub fn numkeys_and_keys(
    args: &[Bytes],
    after: usize,
    too_many: CommandError,
) -> Result<(Vec<Bytes>, &[Bytes]), CommandError> {
    let n = parse_i64(&args[0])
        .filter(|n| *n > 0)
        .ok_or(CommandError::NumkeysNotPositive)?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n.saturating_add(after) > args.len() - 1 {
        return Err(too_many);
    }
    Ok((args[1..=n].to_vec(), &args[n + 1..]))
}

/// Parses an option value that must be a non-negative integer, refusing anything else with
/// `err` (LPOS COUNT/MAXLEN, SINTERCARD LIMIT).
pub fn non_negative(arg: &[u8], err: CommandError) -> Result<u64, CommandError> {
    parse_i64(arg)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or(err)
}

/// The `[COUNT count]` after LMPOP's (and ZMPOP's) direction: given once, at least 1; the
/// default is 1. Options are read in order, so a bad count wins over a later stray word.
pub fn mpop_count(mut rest: &[Bytes]) -> Result<u64, CommandError> {
    let mut count = None;
    while let [opt, tail @ ..] = rest {
        match tail.split_first() {
            Some((n, tail)) if count.is_none() && opt.eq_ignore_ascii_case(b"count") => {
                let n = parse_i64(n)
                    .filter(|n| *n > 0)
                    .ok_or(CommandError::CountNotPositive)?;
                count = Some(n as u64);
                rest = tail;
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(count.unwrap_or(1))
}

impl ListCommand {
    /// Parses a list command; `name` is lower case and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        let key = || args[0].clone();
        let int = |i: usize| parse_i64(&args[i]).ok_or(CommandError::NotInteger);
        Ok(match name {
            "lpush" | "rpush" | "lpushx" | "rpushx" => ListCommand::Write(ListWrite::Push {
                key: key(),
                end: if name.starts_with('l') {
                    End::Left
                } else {
                    End::Right
                },
                only_existing: name.ends_with('x'),
                elements: args[1..].to_vec(),
            }),
            "lpop" | "rpop" => {
                let count = match &args[1..] {
                    [] => None,
                    [c] => Some(positive_count(c)?),
                    _ => return Err(CommandError::WrongArity(name.to_string())),
                };
                ListCommand::Write(ListWrite::Pop {
                    key: key(),
                    end: if name == "lpop" {
                        End::Left
                    } else {
                        End::Right
                    },
                    count,
                })
            }
            "llen" => ListCommand::Read(ListRead::Len(key())),
            "lindex" => ListCommand::Read(ListRead::Index(key(), args[1].clone())),
            "lset" => ListCommand::Write(ListWrite::Set(key(), args[1].clone(), args[2].clone())),
            "lrange" => ListCommand::Read(ListRead::Range(key(), int(1)?, int(2)?)),
            "ltrim" => ListCommand::Write(ListWrite::Trim(key(), int(1)?, int(2)?)),
            "linsert" => {
                let after = if args[1].eq_ignore_ascii_case(b"after") {
                    true
                } else if args[1].eq_ignore_ascii_case(b"before") {
                    false
                } else {
                    return Err(CommandError::Syntax);
                };
                ListCommand::Write(ListWrite::Insert {
                    key: key(),
                    after,
                    pivot: args[2].clone(),
                    element: args[3].clone(),
                })
            }
            "lrem" => ListCommand::Write(ListWrite::Rem(key(), int(1)?, args[2].clone())),
            "lpos" => {
                let mut opts = PosOptions {
                    rank: 1,
                    count: None,
                    maxlen: 0,
                };
                let mut rest = &args[2..];
                while let [opt, tail @ ..] = rest {
                    let Some((value, tail)) = tail.split_first() else {
                        return Err(CommandError::Syntax);
                    };
                    if opt.eq_ignore_ascii_case(b"rank") {
                        let rank = parse_i64(value).ok_or(CommandError::NotInteger)?;
                        if rank == 0 {
                            return Err(CommandError::RankZero);
                        }
                        opts.rank = rank;
                    } else if opt.eq_ignore_ascii_case(b"count") {
                        opts.count = Some(non_negative(value, CommandError::CountNegative)?);
                    } else if opt.eq_ignore_ascii_case(b"maxlen") {
                        opts.maxlen = non_negative(value, CommandError::MaxlenNegative)?;
                    } else {
                        return Err(CommandError::Syntax);
                    }
                    rest = tail;
                }
                ListCommand::Read(ListRead::Pos(key(), args[1].clone(), opts))
            }
            "lmove" => ListCommand::Write(ListWrite::Move {
                src: key(),
                dst: args[1].clone(),
                from: End::parse(&args[2])?,
                to: End::parse(&args[3])?,
            }),
            "rpoplpush" => ListCommand::Write(ListWrite::Move {
                src: key(),
                dst: args[1].clone(),
                from: End::Right,
                to: End::Left,
            }),
            "lmpop" | "blmpop" => {
                let blocking = name == "blmpop";
                let (keys, rest) =
                    numkeys_and_keys(&args[usize::from(blocking)..], 1, CommandError::Syntax)?;
                let (end, rest) = match rest.split_first() {
                    Some((end, rest)) => (End::parse(end)?, rest),
                    None => return Err(CommandError::Syntax),
                };
                let count = mpop_count(rest)?;
                if blocking {
                    // Checked after the other arguments, as Redis does.
                    parse_timeout(&args[0])?;
                }
                ListCommand::Write(ListWrite::MPop { keys, end, count })
            }
            "blpop" | "brpop" => {
                let (timeout, keys) = args.split_last().expect("arity checked");
                parse_timeout(timeout)?;
                ListCommand::Write(ListWrite::BPop {
                    keys: keys.to_vec(),
                    end: if name == "blpop" {
                        End::Left
                    } else {
                        End::Right
                    },
                })
            }
            "brpoplpush" => {
                parse_timeout(&args[2])?;
                ListCommand::Write(ListWrite::Move {
                    src: key(),
                    dst: args[1].clone(),
                    from: End::Right,
                    to: End::Left,
                })
            }
            "blmove" => {
                let (from, to) = (End::parse(&args[2])?, End::parse(&args[3])?);
                parse_timeout(&args[4])?;
                ListCommand::Write(ListWrite::Move {
                    src: key(),
                    dst: args[1].clone(),
                    from,
                    to,
                })
            }
            _ => unreachable!("list family dispatched an unknown name: {name}"),
        })
    }
}
