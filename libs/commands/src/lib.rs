//! Typed Redis commands shared by the zankv proxy and storage node.
//!
//! This crate owns everything about a command that does not depend on where it runs:
//! - [`request`]: reading requests off the wire (RESP multibulk and inline);
//! - [`spec`] and each family's `SPECS`: arity, flags, key positions, docs;
//! - one module per command family ([`connection`], [`keyspace`], [`string`] with
//!   [`bitfield`], [`hash`], [`list`], [`set`], [`zset`], [`hyperloglog`], [`geo`], [`sort`]) with a
//!   typed command enum and its parser; a data family's enum is split into its reads and
//!   its writes (`ListRead`, `ListWrite`), so which commands write is decided by their
//!   types: [`Command::route`] gives a storage node a [`ReadCommand`] or a [`WriteCommand`],
//!   and its read executors cannot be handed a write (a test checks every spec's flags
//!   agree);
//! - [`reply`]: typed replies and their RESP2/RESP3 encoding;
//! - [`error`]: the one mapping from errors to Redis error text;
//! - [`partitioning`]: which namespace partition a key belongs to; [`cluster`]: Redis
//!   Cluster's slots and CLUSTER's replies;
//! - [`slowlog`]: the slow log; [`config`]: CONFIG's parameters; [`info`]: INFO's sections.
//!
//! Invariants: parsing is pure and deterministic (a storage node re-parses a replicated
//! change's arguments and must get the same command); every error a client sees is a
//! [`CommandError`].

pub mod bitfield;
pub mod blocking;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod error;
pub mod geo;
pub mod hash;
pub mod hyperloglog;
pub mod info;
pub mod keyspace;
pub mod list;
pub mod notify;
pub mod number;
pub mod partitioning;
pub mod pattern;
pub mod pubsub;
pub mod reply;
pub mod request;
pub mod scripting;
pub mod set;
pub mod slowlog;
pub mod sort;
pub mod spec;
pub mod string;
pub mod transaction;
pub mod zset;

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::request::parse_i64;

pub use connection::ConnectionCommand;
pub use error::CommandError;
pub use hash::HashCommand;
pub use keyspace::KeyspaceCommand;
pub use list::ListCommand;
pub use reply::{Protocol, Reply};
pub use set::SetCommand;
pub use spec::{Access, Combine, CommandSpec, Fanout, KeyMerge, Movable};
pub use string::StringCommand;
pub use zset::ZsetCommand;

/// A parsed command of any family.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Connection/server commands.
    Connection(ConnectionCommand),
    /// Generic key commands.
    Keyspace(KeyspaceCommand),
    /// String commands.
    String(StringCommand),
    /// Hash commands.
    Hash(HashCommand),
    /// List commands.
    List(ListCommand),
    /// Set commands.
    Set(SetCommand),
    /// Sorted-set commands.
    Zset(ZsetCommand),
    /// HyperLogLog commands.
    HyperLogLog(hyperloglog::HllCommand),
    /// Geo commands.
    Geo(geo::GeoCommand),
    /// SORT and SORT_RO.
    Sort(sort::SortCommand),
    /// Scripts and the script cache.
    Script(scripting::ScriptCommand),
}

/// A data command that only reads: a storage node runs it on a replica's state and never
/// replicates it. The read executors take these types, so a write cannot reach them.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadCommand {
    /// Generic key commands.
    Keyspace(keyspace::KeyspaceRead),
    /// String commands.
    String(string::StringRead),
    /// Hash commands.
    Hash(hash::HashRead),
    /// List commands.
    List(list::ListRead),
    /// Set commands.
    Set(set::SetRead),
    /// Sorted-set commands.
    Zset(zset::ZsetRead),
    /// Geo commands.
    Geo(geo::GeoRead),
    /// SORT without STORE, and SORT_RO.
    Sort(sort::SortCommand),
    /// FUNCTION LIST and DUMP: the partition's libraries.
    Functions(scripting::FunctionRead),
}

/// A data command that writes: replicated through raft, then applied by every replica.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteCommand {
    /// Generic key commands.
    Keyspace(keyspace::KeyspaceWrite),
    /// String commands.
    String(string::StringWrite),
    /// Hash commands.
    Hash(hash::HashWrite),
    /// List commands.
    List(list::ListWrite),
    /// Set commands.
    Set(set::SetWrite),
    /// Sorted-set commands.
    Zset(zset::ZsetWrite),
    /// HyperLogLog commands (all write: PFCOUNT stores the cardinality it computed).
    HyperLogLog(hyperloglog::HllCommand),
    /// Geo commands.
    Geo(geo::GeoWrite),
    /// SORT with STORE.
    Sort(sort::SortCommand),
}

/// What a parsed command is to a storage node.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// Answered by the connection.
    Connection(ConnectionCommand),
    /// Run on a replica's state.
    Read(ReadCommand),
    /// Replicated, then applied.
    Write(WriteCommand),
    /// A script, run by the partition leader (its writes replicated), or a command of the
    /// script cache.
    Script(scripting::ScriptCommand),
}

impl Command {
    /// Sorts the command by what it does: the split of each family's commands into reads
    /// and writes is in their types, so this match is where a storage node learns it.
    pub fn route(self) -> Routed {
        use Routed::{Read, Write};
        match self {
            Command::Connection(c) => Routed::Connection(c),
            Command::Keyspace(KeyspaceCommand::Read(c)) => Read(ReadCommand::Keyspace(c)),
            Command::Keyspace(KeyspaceCommand::Write(c)) => Write(WriteCommand::Keyspace(c)),
            Command::String(StringCommand::Read(c)) => Read(ReadCommand::String(c)),
            Command::String(StringCommand::Write(c)) => Write(WriteCommand::String(c)),
            Command::Hash(HashCommand::Read(c)) => Read(ReadCommand::Hash(c)),
            Command::Hash(HashCommand::Write(c)) => Write(WriteCommand::Hash(c)),
            Command::List(ListCommand::Read(c)) => Read(ReadCommand::List(c)),
            Command::List(ListCommand::Write(c)) => Write(WriteCommand::List(c)),
            Command::Set(SetCommand::Read(c)) => Read(ReadCommand::Set(c)),
            Command::Set(SetCommand::Write(c)) => Write(WriteCommand::Set(c)),
            Command::Zset(ZsetCommand::Read(c)) => Read(ReadCommand::Zset(c)),
            Command::Zset(ZsetCommand::Write(c)) => Write(WriteCommand::Zset(c)),
            Command::HyperLogLog(c) => Write(WriteCommand::HyperLogLog(c)),
            Command::Geo(geo::GeoCommand::Read(c)) => Read(ReadCommand::Geo(c)),
            Command::Geo(geo::GeoCommand::Write(c)) => Write(WriteCommand::Geo(c)),
            // SORT writes only with STORE: without, it is a read like SORT_RO.
            Command::Sort(c) if c.store.is_some() => Write(WriteCommand::Sort(c)),
            Command::Sort(c) => Read(ReadCommand::Sort(c)),
            Command::Script(c) => Routed::Script(c),
        }
    }

    /// The command as a read, if it is one.
    pub fn into_read(self) -> Option<ReadCommand> {
        match self.route() {
            Routed::Read(read) => Some(read),
            _ => None,
        }
    }
}

#[derive(Clone, Copy)]
enum Family {
    Connection,
    Keyspace,
    String,
    Hash,
    List,
    Set,
    Zset,
    HyperLogLog,
    Geo,
    Sort,
    Script,
}

/// The registry of command families: a new family is one line here (and its arm in
/// [`parse`]).
fn families() -> [(Family, &'static [CommandSpec]); 12] {
    [
        (Family::Connection, connection::SPECS),
        (Family::Connection, pubsub::SPECS),
        (Family::Keyspace, keyspace::SPECS),
        (Family::String, string::SPECS),
        (Family::Hash, hash::SPECS),
        (Family::List, list::SPECS),
        (Family::Set, set::SPECS),
        (Family::Zset, zset::SPECS),
        (Family::HyperLogLog, hyperloglog::SPECS),
        (Family::Geo, geo::SPECS),
        (Family::Sort, sort::SPECS),
        (Family::Script, scripting::SPECS),
    ]
}

fn table() -> &'static HashMap<&'static str, (Family, &'static CommandSpec)> {
    static TABLE: OnceLock<HashMap<&'static str, (Family, &'static CommandSpec)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        for (family, specs) in families() {
            for spec in specs {
                let previous = map.insert(spec.name, (family, spec));
                assert!(previous.is_none(), "command {} defined twice", spec.name);
            }
        }
        map
    })
}

/// Every top-level command spec, in family order.
pub fn all_specs() -> impl Iterator<Item = &'static CommandSpec> {
    families().into_iter().flat_map(|(_, specs)| specs.iter())
}

/// Looks up a top-level command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    table_entry(name).map(|(_, spec)| *spec)
}

/// The table's entry for a command name in any case, without allocating (every request
/// is looked up; no command name is longer than the buffer).
fn table_entry(name: &[u8]) -> Option<&'static (Family, &'static CommandSpec)> {
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table().get(std::str::from_utf8(lower).ok()?)
}

/// Parses a request's arguments into a command, checking the name, arity and options.
/// Returns the command and its spec (the subcommand's spec for CLIENT/COMMAND).
pub fn parse(argv: &[Bytes]) -> Result<(Command, &'static CommandSpec), CommandError> {
    let Some(name) = argv.first() else {
        return Err(CommandError::Syntax);
    };
    let Some(&(family, spec)) = table_entry(name) else {
        return Err(CommandError::unknown_command(name, &argv[1..]));
    };
    if !spec.arity_ok(argv.len()) {
        return Err(CommandError::WrongArity(spec.name.to_string()));
    }
    let mut spec = spec;
    let mut full_name = spec.name;
    if !spec.subcommands.is_empty() && argv.len() >= 2 {
        let sub = String::from_utf8_lossy(&argv[1]).to_ascii_lowercase();
        let wanted = format!("{}|{}", spec.name, sub);
        let container = spec.name.to_ascii_uppercase();
        match spec.subcommands.iter().find(|s| s.name == wanted) {
            Some(s) => {
                if !s.arity_ok(argv.len()) {
                    return Err(CommandError::WrongArity(s.name.to_string()));
                }
                spec = s;
                full_name = s.name;
            }
            None => {
                return Err(CommandError::UnknownSubcommand {
                    sub: String::from_utf8_lossy(&argv[1]).into_owned(),
                    command: match container.as_str() {
                        "CLIENT" => "CLIENT",
                        "CLUSTER" => "CLUSTER",
                        "CONFIG" => "CONFIG",
                        "SLOWLOG" => "SLOWLOG",
                        "OBJECT" => "OBJECT",
                        "PUBSUB" => "PUBSUB",
                        "SCRIPT" => "SCRIPT",
                        "FUNCTION" => "FUNCTION",
                        _ => "COMMAND",
                    },
                })
            }
        }
    }
    // A container's subcommand that only answers from the connection (OBJECT HELP) is a
    // connection command, whatever family its container belongs to.
    let family = if spec.access == Access::Connection {
        Family::Connection
    } else {
        family
    };
    let args = &argv[1..];
    let command = match family {
        Family::Connection => Command::Connection(ConnectionCommand::parse(full_name, args)?),
        Family::Keyspace => Command::Keyspace(KeyspaceCommand::parse(full_name, args)?),
        Family::String => Command::String(StringCommand::parse(full_name, args)?),
        Family::Hash => Command::Hash(HashCommand::parse(full_name, args)?),
        Family::List => Command::List(ListCommand::parse(full_name, args)?),
        Family::Set => Command::Set(SetCommand::parse(full_name, args)?),
        Family::Zset => Command::Zset(ZsetCommand::parse(full_name, args)?),
        Family::HyperLogLog => {
            Command::HyperLogLog(hyperloglog::HllCommand::parse(full_name, args))
        }
        Family::Geo => Command::Geo(geo::GeoCommand::parse(full_name, name, args)?),
        Family::Sort => Command::Sort(sort::SortCommand::parse(args, full_name == "sort_ro")?),
        Family::Script => Command::Script(scripting::ScriptCommand::parse(full_name, args)?),
    };
    Ok((command, spec))
}

/// Whether `argv` may run while a script is busy (its spec, or its subcommand's, has
/// Redis's `allow_busy` flag: AUTH, HELLO, MULTI, SCRIPT KILL, ...).
pub fn allowed_while_busy(argv: &[Bytes]) -> bool {
    let Some(spec) = lookup(&argv[0]) else {
        return false;
    };
    let spec = match argv.get(1) {
        Some(sub) if !spec.subcommands.is_empty() => {
            let wanted = format!(
                "{}|{}",
                spec.name,
                String::from_utf8_lossy(sub).to_ascii_lowercase()
            );
            match spec.subcommands.iter().find(|s| s.name == wanted) {
                Some(sub) => sub,
                None => return false,
            }
        }
        _ => spec,
    };
    spec.flags.contains(&"allow_busy")
}

/// COMMAND GETKEYS: the keys of the full command `argv`, as its spec (and, for a
/// container, its subcommand's) names them.
pub fn command_keys(argv: &[Bytes]) -> Result<Vec<Bytes>, CommandError> {
    let mut spec = lookup(&argv[0]).ok_or(CommandError::GetKeysUnknownCommand)?;
    if !spec.arity_ok(argv.len()) {
        return Err(CommandError::GetKeysArity);
    }
    if !spec.subcommands.is_empty() {
        let wanted = format!(
            "{}|{}",
            spec.name,
            String::from_utf8_lossy(&argv[1]).to_ascii_lowercase()
        );
        spec = spec
            .subcommands
            .iter()
            .find(|s| s.name == wanted)
            .ok_or(CommandError::GetKeysUnknownCommand)?;
        if !spec.arity_ok(argv.len()) {
            return Err(CommandError::GetKeysArity);
        }
    }
    if let Movable::NumKeysAt(at) = spec.movable {
        let fits = argv
            .get(at)
            .and_then(|n| parse_i64(n))
            .and_then(|n| usize::try_from(n).ok())
            .is_some_and(|n| at + n < argv.len());
        if !fits {
            return Err(CommandError::GetKeysBadArguments);
        }
    }
    let keys: Vec<Bytes> = spec.key_positions(argv).map(|i| argv[i].clone()).collect();
    if keys.is_empty() {
        return Err(CommandError::GetKeysNoKeys);
    }
    Ok(keys)
}

/// `COMMAND INFO` entry for one spec (Redis 7.0 shape: name, arity, flags, first key, last
/// key, step, ACL categories, tips, key specs, subcommands).
pub fn command_info(spec: &CommandSpec) -> Reply {
    let status_set =
        |items: &[&'static str]| Reply::Set(items.iter().map(|s| Reply::Status(s)).collect());
    let acl: Vec<Reply> = spec
        .acl
        .iter()
        .map(|c| Reply::StatusOwned(format!("@{c}")))
        .collect();
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        status_set(spec.flags),
        Reply::Integer(i64::from(spec.first_key)),
        Reply::Integer(i64::from(spec.last_key)),
        Reply::Integer(i64::from(spec.step)),
        Reply::Set(acl),
        // Tips (none: a set), key specs (none: an array), subcommands (a set when there are
        // none, an array otherwise), as Redis 7.0 sends them.
        Reply::Set(vec![]),
        Reply::Array(vec![]),
        if spec.subcommands.is_empty() {
            Reply::Set(vec![])
        } else {
            Reply::Array(spec.subcommands.iter().map(command_info).collect())
        },
    ])
}

/// `COMMAND DOCS` entry for one spec: a map of summary, since, group (and subcommands).
pub fn command_docs(spec: &CommandSpec) -> Reply {
    let mut fields = vec![
        (Reply::bulk("summary"), Reply::bulk(spec.summary)),
        (Reply::bulk("since"), Reply::bulk(spec.since)),
        (Reply::bulk("group"), Reply::bulk(spec.group)),
    ];
    if !spec.subcommands.is_empty() {
        let subs = spec
            .subcommands
            .iter()
            .map(|s| (Reply::bulk(s.name), command_docs(s)))
            .collect();
        fields.push((Reply::bulk("subcommands"), Reply::Map(subs)));
    }
    Reply::Map(fields)
}

/// A request's arguments from words, for the crate's tests.
#[cfg(test)]
pub(crate) fn argv(words: &[&str]) -> Vec<Bytes> {
    words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first of a few argument lists every data command's parser takes.
    fn some_valid_argv(name: &str) -> Option<Vec<Bytes>> {
        let (container, sub) = match name.split_once('|') {
            Some((c, s)) => (c, Some(s)),
            None => (name, None),
        };
        const TAILS: &[&[&str]] = &[
            &[],
            &["k"],
            &["k", "1"],
            &["k", "m"],
            &["k", "1", "m"],
            &["k", "1", "1"],
            &["k", "f", "v"],
            &["k", "0", "-1"],
            &["k", "-", "+"],
            &["k", "before", "p", "e"],
            &["k", "k2"],
            &["k", "k2", "left", "right"],
            &["k", "k2", "m"],
            &["1", "k"],
            &["1", "k", "left"],
            &["1", "k", "min"],
            &["0", "1", "k", "left"],
            &["0", "1", "k", "min"],
            &["k", "k2", "left", "right", "0"],
            &["d", "1", "k"],
            &["d", "k", "0", "-1"],
            &["and", "d", "k"],
            &["0"],
            &["k", "1", "2", "m"],
            &["k", "frommember", "m", "byradius", "1", "m"],
            &["d", "k", "frommember", "m", "byradius", "1", "m"],
        ];
        TAILS.iter().find_map(|tail| {
            let mut words = vec![container];
            words.extend(sub);
            words.extend_from_slice(tail);
            let argv = argv(&words);
            parse(&argv).ok().map(|_| argv)
        })
    }

    #[test]
    fn every_data_command_reads_or_writes_as_its_spec_says() {
        let mut checked = 0;
        let mut unparsed = Vec::new();
        for spec in all_specs().flat_map(|s| std::iter::once(s).chain(s.subcommands)) {
            if matches!(spec.access, Access::Connection | Access::Script)
                || !spec.subcommands.is_empty()
            {
                continue;
            }
            let Some(sample) = some_valid_argv(spec.name) else {
                unparsed.push(spec.name);
                continue;
            };
            let (cmd, _) = parse(&sample).unwrap();
            let writes = matches!(cmd.route(), Routed::Write(_));
            // SORT writes only with STORE: COMMAND INFO says write, as Redis does.
            if spec.name == "sort" {
                assert!(!writes, "SORT without STORE reads");
                let store = parse(&argv(&["sort", "k", "store", "d"])).unwrap().0;
                assert!(matches!(store.route(), Routed::Write(_)));
            } else {
                assert_eq!(
                    writes,
                    spec.is_write(),
                    "{}: its spec and its type disagree",
                    spec.name
                );
            }
            checked += 1;
        }
        assert!(
            unparsed.is_empty(),
            "no sample arguments parse for {unparsed:?}"
        );
        assert!(checked >= 135, "{checked} commands checked");
    }

    fn err(words: &[&str]) -> String {
        parse(&argv(words)).unwrap_err().to_string()
    }

    #[test]
    fn parse_errors_match_redis() {
        assert_eq!(
            err(&["GET"]),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err(&["mset", "a"]),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            err(&["mset", "a", "b", "c"]),
            "ERR wrong number of arguments for 'mset' command"
        );
        assert_eq!(
            err(&["client", "setname"]),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            err(&["client", "nope"]),
            "ERR unknown subcommand 'nope'. Try CLIENT HELP."
        );
        assert_eq!(err(&["set", "k", "v", "nx", "xx"]), "ERR syntax error");
        assert_eq!(
            err(&["set", "k", "v", "ex", "0"]),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            err(&["set", "k", "v", "ex", "x"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(&["expire", "k", "1", "nx", "xx"]),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            err(&["expire", "k", "1", "foo"]),
            "ERR Unsupported option foo"
        );
        assert_eq!(err(&["hello", "4"]), "NOPROTO unsupported protocol version");
        assert_eq!(
            err(&["decrby", "k", "-9223372036854775808"]),
            "ERR decrement would overflow"
        );
        assert_eq!(
            err(&["setbit", "k", "-1", "1"]),
            "ERR bit offset is not an integer or out of range"
        );
        assert_eq!(
            err(&["setbit", "k", "1", "2"]),
            "ERR bit is not an integer or out of range"
        );
        assert_eq!(
            err(&["hrandfield", "h", "-4611686018427387904", "withvalues"]),
            "ERR value is out of range"
        );
        assert!(parse(&argv(&[
            "hrandfield",
            "h",
            "-4611686018427387903",
            "withvalues"
        ]))
        .is_ok());
        assert!(parse(&argv(&["hrandfield", "h", "4611686018427387903"])).is_ok());
    }

    #[test]
    fn every_spec_parses_with_minimal_arity() {
        // Each command must be reachable from its spec: the parser knows every name.
        for spec in all_specs() {
            if !spec.subcommands.is_empty() {
                continue;
            }
            let n = spec.arity.unsigned_abs() as usize;
            let mut words = vec![spec.name];
            words.extend(std::iter::repeat_n("1", n.saturating_sub(1)));
            let _ = parse(&argv(&words));
        }
    }

    #[test]
    fn every_keyless_data_command_says_how_partitions_combine() {
        let all = all_specs().flat_map(|s| std::iter::once(s).chain(s.subcommands));
        for spec in all.filter(|s| s.access != Access::Connection && s.subcommands.is_empty()) {
            let keyless = spec.first_key == 0 && spec.movable == Movable::None;
            if spec.fanout == Fanout::AnyPartition {
                // Keys only when it names some (a script's numkeys).
                assert!(!keyless, "{}: AnyPartition without movable keys", spec.name);
                continue;
            }
            let every = matches!(spec.fanout, Fanout::EveryPartition(_));
            assert_eq!(
                keyless, every,
                "{}: keyless {keyless}, fanout {:?}",
                spec.name, spec.fanout
            );
        }
        let (_, mset) = parse(&argv(&["mset", "a", "1"])).unwrap();
        assert_eq!(
            mset.fanout,
            Fanout::SplitByKey {
                per_key: 2,
                merge: KeyMerge::AllOk
            }
        );
        let (_, lmove) = parse(&argv(&["lmove", "a", "b", "left", "left"])).unwrap();
        assert_eq!(lmove.fanout, Fanout::OnePartition);
    }

    #[test]
    fn key_positions() {
        let keys = |words: &[&str]| {
            let v = argv(words);
            let (_, spec) = parse(&v).unwrap();
            spec.key_positions(&v).collect::<Vec<_>>()
        };
        assert_eq!(keys(&["mset", "a", "1", "b", "2"]), vec![1, 3]);
        assert_eq!(keys(&["del", "a", "b"]), vec![1, 2]);
        assert_eq!(keys(&["ping"]), Vec::<usize>::new());
        assert_eq!(keys(&["lmpop", "2", "a", "b", "left"]), vec![2, 3]);
        assert_eq!(
            keys(&["zunionstore", "d", "2", "a", "b", "weights", "1", "2"]),
            vec![1, 3, 4]
        );
        assert_eq!(keys(&["object", "encoding", "k"]), vec![2]);
    }
}
