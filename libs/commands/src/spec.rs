//! Static facts about each command: name, arity, flags, key positions, documentation.
//!
//! The table is the single source for arity checks, COMMAND INFO/DOCS replies, whether a
//! command writes (and so must become a replicated change), and which arguments are keys
//! (which the proxy uses to route). Family modules each export their own `SPECS` slice.

/// What a command does to the keyspace, which decides how a storage node executes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads data; runs against the current state.
    Read,
    /// Changes data; becomes a deterministic change applied in order.
    Write,
    /// Touches only the connection or server state (PING, HELLO, CLIENT).
    Connection,
    /// A script (EVAL, ...) or the script cache (SCRIPT LOAD, ...): a script runs on its
    /// partition's leader, reading and writing; the cache is the node's.
    Script,
}

/// Keys whose positions depend on the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Movable {
    /// None.
    None,
    /// A `numkeys` argument at this position, followed by that many keys (LMPOP,
    /// SINTERCARD, ZUNIONSTORE, ...).
    NumKeysAt(usize),
    /// SORT's `STORE destination` (the last one given).
    SortStore,
    /// GEORADIUS's and GEORADIUSBYMEMBER's `STORE`/`STOREDIST destination`.
    GeoStore,
}

/// How a data command spreads over a namespace's partitions. The proxy plans every request
/// from this (it keeps no lists of command names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fanout {
    /// Its keys must share one partition (`CROSSSLOT` otherwise); without keys it runs
    /// only where there is a single partition.
    OnePartition,
    /// Its keys must share one partition (`CROSSSLOT` otherwise); without keys it runs on
    /// any one partition (a script that declares no keys).
    AnyPartition,
    /// Its keys may span partitions: the request is split per partition, each key with the
    /// `per_key - 1` arguments after it, and the replies merged.
    SplitByKey {
        /// Arguments per key (MSET: the key and its value).
        per_key: usize,
        /// How the parts' replies merge.
        merge: KeyMerge,
    },
    /// A keyless command that runs on every partition, the replies combined.
    EveryPartition(Combine),
}

/// How the replies of a command split by key merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMerge {
    /// The values, back in the request's key order (MGET).
    Values,
    /// The sum of the counts (DEL, EXISTS, ...).
    Sum,
    /// OK when every part is OK (MSET).
    AllOk,
}

/// How the replies of a command run on every partition combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combine {
    /// The sum of the integers (DBSIZE).
    Sum,
    /// The arrays, one after the other (KEYS).
    Concat,
    /// OK when every partition answers OK (FLUSHALL).
    AllOk,
    /// A key of a partition picked at random among those that have one (RANDOMKEY).
    AnyKey,
    /// One partition after the other, the cursor naming the partition (SCAN).
    Scan,
    /// Every partition answers the same: that answer, or the first error (SCRIPT LOAD).
    Same,
    /// Arrays of 0/1, element by element: 1 where every partition answers 1 (SCRIPT
    /// EXISTS).
    AllOf,
    /// OK if any partition answers OK, else UNKILLABLE if one does, else BUSY if one does
    /// (only the other kind of script runs there), else NOTBUSY (SCRIPT KILL, FUNCTION
    /// KILL).
    Kill,
}

/// One command's static description, mirroring what `COMMAND INFO` and `COMMAND DOCS` report.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name (`client|setname` style for subcommands).
    pub name: &'static str,
    /// Redis arity: positive = exact argument count including the name; negative = minimum.
    pub arity: i32,
    /// How the node executes it.
    pub access: Access,
    /// COMMAND INFO flags.
    pub flags: &'static [&'static str],
    /// Position of the first key (0 = none).
    pub first_key: i32,
    /// Position of the last key (-1 = last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// ACL categories, without the `@`.
    pub acl: &'static [&'static str],
    /// COMMAND DOCS group.
    pub group: &'static str,
    /// Redis version that introduced it.
    pub since: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// Subcommands of a container command (CLIENT, COMMAND).
    pub subcommands: &'static [CommandSpec],
    /// Keys found by reading the arguments (the `movablekeys` flag), besides the fixed
    /// ones.
    pub movable: Movable,
    /// How it spreads over partitions.
    pub fanout: Fanout,
    /// Where a blocking command's timeout is (BLPOP, BZMPOP, ...); None for the others.
    pub timeout_at: Option<TimeoutAt>,
}

/// Where a blocking command's timeout argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAt {
    /// The last argument (BLPOP, BLMOVE, BZPOPMIN, ...).
    Last,
    /// The argument at this position, the command name being 0 (BLMPOP and BZMPOP: 1).
    Index(usize),
}

impl CommandSpec {
    /// Whether `argc` (including the command name) satisfies the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// Whether the command changes data (a script may: it is treated as a write, run by
    /// the leader and never retried blindly).
    pub fn is_write(&self) -> bool {
        matches!(self.access, Access::Write | Access::Script)
    }

    /// Indexes of the key arguments of `argv` (the command name first): the fixed range of
    /// `first_key`/`last_key`/`step`, then the keys counted by a `numkeys` argument (as many
    /// as it names and `argv` holds; none when it is not a positive number, which the
    /// command's parser refuses).
    pub fn key_positions(&self, argv: &[bytes::Bytes]) -> impl Iterator<Item = usize> {
        let fixed = self.fixed_key_positions(argv.len());
        let counted = match self.movable {
            Movable::None => 0..0,
            Movable::NumKeysAt(at) => {
                let n = argv
                    .get(at)
                    .and_then(|a| crate::request::parse_i64(a))
                    .and_then(|n| usize::try_from(n).ok())
                    .unwrap_or(0);
                let start = at + 1;
                start..start.saturating_add(n).min(argv.len()).max(start)
            }
            Movable::SortStore => match crate::sort::store_position(argv) {
                Some(at) => at..at + 1,
                None => 0..0,
            },
            Movable::GeoStore => 0..0,
        };
        let stores = match self.movable {
            Movable::GeoStore => crate::geo::store_positions(argv),
            _ => [None; 3],
        };
        fixed.chain(counted).chain(stores.into_iter().flatten())
    }

    /// Indexes of the keys named by `first_key`/`last_key`/`step` among `argc` arguments.
    fn fixed_key_positions(&self, argc: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            (argc as i64 + i64::from(self.last_key)).max(0) as usize
        } else {
            self.last_key as usize
        };
        let step = self.step.max(1) as usize;
        let end = if first == 0 {
            0
        } else {
            last.min(argc.saturating_sub(1)) + 1
        };
        (first..end.max(first)).step_by(step)
    }
}

/// Shorthand used by the family tables.
#[allow(clippy::too_many_arguments)]
pub(crate) const fn spec(
    name: &'static str,
    arity: i32,
    access: Access,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    acl: &'static [&'static str],
    group: &'static str,
    since: &'static str,
    summary: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        access,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        acl,
        group,
        since,
        summary,
        subcommands: &[],
        movable: Movable::None,
        fanout: Fanout::OnePartition,
        timeout_at: None,
    }
}

impl CommandSpec {
    /// This spec with keys counted by a `numkeys` argument at `at`.
    pub(crate) const fn with_numkeys_at(mut self, at: usize) -> Self {
        self.movable = Movable::NumKeysAt(at);
        self
    }

    /// This spec with other keys found in the arguments as `movable` says.
    pub(crate) const fn with_movable(mut self, movable: Movable) -> Self {
        self.movable = movable;
        self
    }

    /// This spec for a blocking command whose timeout is at `at`.
    pub(crate) const fn with_timeout_at(mut self, at: TimeoutAt) -> Self {
        self.timeout_at = Some(at);
        self
    }

    /// This spec spread over partitions as `fanout` says.
    pub(crate) const fn with_fanout(mut self, fanout: Fanout) -> Self {
        self.fanout = fanout;
        self
    }
}

/// A container command (CLIENT, CONFIG, OBJECT, ...): its subcommands carry the real
/// specs.
pub(crate) const fn container(
    name: &'static str,
    summary: &'static str,
    group: &'static str,
    since: &'static str,
    subcommands: &'static [CommandSpec],
) -> CommandSpec {
    CommandSpec {
        name,
        arity: -2,
        access: Access::Connection,
        flags: &[],
        first_key: 0,
        last_key: 0,
        step: 0,
        acl: &["slow"],
        group,
        since,
        summary,
        subcommands,
        movable: Movable::None,
        fanout: Fanout::OnePartition,
        timeout_at: None,
    }
}

/// No keys.
pub(crate) const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
/// The first argument is the only key.
pub(crate) const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
/// Every argument is a key.
pub(crate) const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);
/// Every argument but the last (a blocking command's timeout) is a key.
pub(crate) const ALL_BUT_LAST: (i32, i32, i32) = (1, -2, 1);
/// Arguments 1 and 2 are keys.
pub(crate) const TWO_KEYS: (i32, i32, i32) = (1, 2, 1);
