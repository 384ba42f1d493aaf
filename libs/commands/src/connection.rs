//! Connection and server commands a node answers without touching data: PING, ECHO, QUIT,
//! AUTH, HELLO, SELECT, CLIENT, COMMAND, CONFIG, SLOWLOG, INFO, TIME.
//!
//! [`ConnectionCommand::answer`] gives the replies that depend only on the connection
//! ([`ClientSession`]) and the command table, so the storage node and the proxy answer them
//! alike; each server answers AUTH, INFO, READONLY and READWRITE itself.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::error::CommandError;
use crate::number::parse_i64;
use crate::reply::{Protocol, Reply};
use crate::spec::{container, spec, Access, CommandSpec, ALL_KEYS, NO_KEYS};

/// The Redis version zankv reports (its command set and replies follow Redis 7.0).
pub const REDIS_COMPAT_VERSION: &str = "7.0.0";

const C: Access = Access::Connection;

/// CLIENT subcommands.
pub static CLIENT_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "client|id",
        2,
        C,
        &["noscript", "loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "connection",
        "5.0.0",
        "Returns the unique client ID of the connection.",
    ),
    spec(
        "client|getname",
        2,
        C,
        &["noscript", "loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "connection",
        "2.6.9",
        "Returns the name of the connection.",
    ),
    spec(
        "client|list",
        -2,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous", "connection"],
        "connection",
        "2.4.0",
        "Lists open connections.",
    ),
    spec(
        "client|info",
        2,
        C,
        &["noscript", "loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "connection",
        "6.2.0",
        "Returns information about the connection.",
    ),
    spec(
        "client|kill",
        -3,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous", "connection"],
        "connection",
        "2.4.0",
        "Terminates open connections.",
    ),
    spec(
        "client|unblock",
        -3,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous", "connection"],
        "connection",
        "5.0.0",
        "Unblocks a client blocked by a blocking command from a different connection.",
    ),
    spec(
        "client|setname",
        3,
        C,
        &["noscript", "loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "connection",
        "2.6.9",
        "Sets the connection name.",
    ),
    spec(
        "client|help",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "connection",
        "5.0.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// CONFIG subcommands.
pub static CONFIG_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "config|get",
        -3,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.0.0",
        "Returns the effective values of configuration parameters.",
    ),
    spec(
        "config|set",
        -4,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.0.0",
        "Sets configuration parameters in-flight.",
    ),
    spec(
        "config|resetstat",
        2,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.0.0",
        "Resets the server's statistics.",
    ),
    spec(
        "config|rewrite",
        2,
        C,
        &["admin", "noscript", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.8.0",
        "Persists the effective configuration to file.",
    ),
    spec(
        "config|help",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow"],
        "server",
        "5.0.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// SLOWLOG subcommands.
pub static SLOWLOG_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "slowlog|get",
        -2,
        C,
        &["admin", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.2.12",
        "Returns the slow log's entries.",
    ),
    spec(
        "slowlog|len",
        2,
        C,
        &["admin", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.2.12",
        "Returns the number of entries in the slow log.",
    ),
    spec(
        "slowlog|reset",
        2,
        C,
        &["admin", "loading", "stale"],
        NO_KEYS,
        &["admin", "slow", "dangerous"],
        "server",
        "2.2.12",
        "Clears all entries from the slow log.",
    ),
    spec(
        "slowlog|help",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow"],
        "server",
        "6.2.0",
        "Show helpful text about the different subcommands",
    ),
];

/// COMMAND subcommands.
pub static COMMAND_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "command|count",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "server",
        "2.8.13",
        "Returns a count of commands.",
    ),
    spec(
        "command|info",
        -2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "server",
        "2.8.13",
        "Returns information about one, multiple or all commands.",
    ),
    spec(
        "command|docs",
        -2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "server",
        "7.0.0",
        "Returns documentary information about one, multiple or all commands.",
    ),
    spec(
        "command|list",
        -2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "server",
        "7.0.0",
        "Returns a list of command names.",
    ),
    spec(
        "command|getkeys",
        -4,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "server",
        "2.8.13",
        "Extracts the key names from an arbitrary command.",
    ),
    spec(
        "command|help",
        2,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "connection"],
        "server",
        "5.0.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// Specs of the connection family.
pub static SPECS: &[CommandSpec] = &[
    spec(
        "ping",
        -1,
        C,
        &["fast"],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "1.0.0",
        "Returns the server's liveliness response.",
    ),
    spec(
        "echo",
        2,
        C,
        &["fast"],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "1.0.0",
        "Returns the given string.",
    ),
    spec(
        "quit",
        -1,
        C,
        &[
            "allow_busy",
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
        ],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "1.0.0",
        "Closes the connection.",
    ),
    spec(
        "hello",
        -1,
        C,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "6.0.0",
        "Handshakes with the Redis server.",
    ),
    spec(
        "auth",
        -2,
        C,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "1.0.0",
        "Authenticates the connection.",
    ),
    spec(
        "select",
        2,
        C,
        &["loading", "stale", "fast"],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "1.0.0",
        "Changes the selected database.",
    ),
    spec(
        "info",
        -1,
        C,
        &["loading", "stale"],
        NO_KEYS,
        &["slow", "dangerous"],
        "server",
        "1.0.0",
        "Returns information and statistics about the server.",
    ),
    spec(
        "time",
        1,
        C,
        &["loading", "stale", "fast"],
        NO_KEYS,
        &["fast"],
        "server",
        "2.6.0",
        "Returns the server time.",
    ),
    spec(
        "multi",
        1,
        C,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
        &["fast", "transaction"],
        "transactions",
        "1.2.0",
        "Starts a transaction.",
    ),
    spec(
        "exec",
        1,
        C,
        &["noscript", "loading", "stale", "skip_slowlog"],
        NO_KEYS,
        &["slow", "transaction"],
        "transactions",
        "1.2.0",
        "Executes all commands in a transaction.",
    ),
    spec(
        "discard",
        1,
        C,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
        &["fast", "transaction"],
        "transactions",
        "2.0.0",
        "Discards a transaction.",
    ),
    spec(
        "watch",
        -2,
        C,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        ALL_KEYS,
        &["fast", "transaction"],
        "transactions",
        "2.2.0",
        "Monitors changes to keys to determine the execution of a transaction.",
    ),
    spec(
        "unwatch",
        1,
        C,
        &["noscript", "loading", "stale", "fast", "allow_busy"],
        NO_KEYS,
        &["fast", "transaction"],
        "transactions",
        "2.2.0",
        "Forgets about watched keys of a transaction.",
    ),
    spec(
        "reset",
        1,
        C,
        &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        NO_KEYS,
        &["fast", "connection"],
        "connection",
        "6.2.0",
        "Resets the connection.",
    ),
    spec(
        "readonly",
        1,
        C,
        &["loading", "stale", "fast"],
        NO_KEYS,
        &["fast", "connection"],
        "cluster",
        "3.0.0",
        "Enables read-only queries for a connection to a Redis Cluster replica node.",
    ),
    spec(
        "readwrite",
        1,
        C,
        &["loading", "stale", "fast"],
        NO_KEYS,
        &["fast", "connection"],
        "cluster",
        "3.0.0",
        "Enables read-write queries for a connection to a Redis Cluster replica node.",
    ),
    container(
        "client",
        "A container for client connection commands.",
        "connection",
        "2.4.0",
        CLIENT_SUBCOMMANDS,
    ),
    container(
        "cluster",
        "A container for Redis Cluster commands.",
        "cluster",
        "3.0.0",
        crate::cluster::CLUSTER_SUBCOMMANDS,
    ),
    container(
        "config",
        "A container for server configuration commands.",
        "server",
        "2.0.0",
        CONFIG_SUBCOMMANDS,
    ),
    container(
        "slowlog",
        "A container for slow log commands.",
        "server",
        "2.2.12",
        SLOWLOG_SUBCOMMANDS,
    ),
    CommandSpec {
        arity: -1,
        ..container(
            "command",
            "Returns detailed information about all commands.",
            "server",
            "2.8.13",
            COMMAND_SUBCOMMANDS,
        )
    },
];

/// A typed connection/server command.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnectionCommand {
    /// `PING [message]`
    Ping(Option<Bytes>),
    /// A Pub/Sub command, answered by the server's subscriptions ([`crate::pubsub`]).
    PubSub(crate::pubsub::PubSubCommand),
    /// ECHO message
    Echo(Bytes),
    /// QUIT
    Quit,
    /// `CLUSTER <subcommand>`: answered by a proxy with a cluster address.
    Cluster(crate::cluster::ClusterCommand),
    /// `CONFIG GET pattern [pattern ...]`
    ConfigGet(Vec<Bytes>),
    /// `CONFIG SET parameter value [parameter value ...]`
    ConfigSet(Vec<(Bytes, Bytes)>),
    /// `CONFIG RESETSTAT`
    ConfigResetStat,
    /// `CONFIG REWRITE`
    ConfigRewrite,
    /// `COMMAND GETKEYS command [arg ...]`
    CommandGetKeys(Vec<Bytes>),
    /// `CONFIG HELP`
    ConfigHelp,
    /// `SLOWLOG GET [count]`
    SlowlogGet(Option<i64>),
    /// `SLOWLOG LEN`
    SlowlogLen,
    /// `SLOWLOG RESET`
    SlowlogReset,
    /// `SLOWLOG HELP`
    SlowlogHelp,
    /// `AUTH [username] password`
    Auth {
        /// The user (`default` when absent).
        user: Option<Bytes>,
        /// The password.
        password: Bytes,
    },
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`
    Hello {
        /// Requested protocol version (2 or 3).
        version: Option<u8>,
        /// AUTH username and password.
        auth: Option<(Bytes, Bytes)>,
        /// SETNAME value.
        setname: Option<Bytes>,
    },
    /// SELECT 0
    Select(i64),
    /// CLIENT ID
    ClientId,
    /// CLIENT GETNAME
    ClientGetName,
    /// CLIENT SETNAME name (validated)
    ClientSetName(Bytes),
    /// CLIENT HELP
    ClientHelp,
    /// `CLIENT LIST [TYPE type] [ID id ...]`
    ClientList(ClientFilter),
    /// `CLIENT INFO`
    ClientInfo,
    /// `CLIENT KILL addr` (`Err`: the old form) or `CLIENT KILL filter ...`
    ClientKill(Result<ClientFilter, Bytes>),
    /// `CLIENT UNBLOCK id [TIMEOUT|ERROR]`: end the wait of client `id` if it is blocked,
    /// as a timeout or (`error`) with an error.
    ClientUnblock {
        /// The client.
        id: i64,
        /// ERROR (else TIMEOUT).
        error: bool,
    },
    /// COMMAND (all infos)
    CommandAll,
    /// COMMAND COUNT
    CommandCount,
    /// `COMMAND INFO [name...]` (empty = all)
    CommandInfo(Vec<Bytes>),
    /// `COMMAND DOCS [name...]` (empty = all)
    CommandDocs(Vec<Bytes>),
    /// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]`
    CommandList(Option<ListFilter>),
    /// COMMAND HELP
    CommandHelp,
    /// OBJECT HELP (the other OBJECT subcommands read a key: keyspace family)
    ObjectHelp,
    /// SCRIPT HELP (the other SCRIPT subcommands: scripting family)
    ScriptHelp,
    /// FUNCTION HELP (the other FUNCTION subcommands: scripting family)
    FunctionHelp,
    /// `INFO [section...]`
    Info(Vec<Bytes>),
    /// TIME
    Time,
    /// READONLY: this connection's reads may be served by a follower replica, from its
    /// applied state (stale reads), as on a Redis Cluster replica.
    ReadOnly,
    /// READWRITE: back to linearizable reads served by the leader.
    ReadWrite,
    /// MULTI: starts queueing a transaction ([`crate::transaction`]).
    Multi,
    /// EXEC: runs the queued transaction.
    Exec,
    /// DISCARD: drops the queued transaction.
    Discard,
    /// `WATCH key [key ...]`: EXEC runs only if none of the keys changed meanwhile.
    Watch(Vec<Bytes>),
    /// UNWATCH: forgets the watched keys.
    Unwatch,
    /// RESET: the connection back to its state on connect.
    Reset,
}

/// Which commands COMMAND LIST names.
#[derive(Debug, Clone, PartialEq)]
pub enum ListFilter {
    /// Commands of a module (there are none).
    Module(Bytes),
    /// Commands in an ACL category.
    AclCategory(Bytes),
    /// Commands whose full name (`container|sub` for subcommands) matches a glob,
    /// ignoring case.
    Pattern(Bytes),
}

impl ListFilter {
    /// Whether `spec` passes the filter.
    pub fn admits(&self, spec: &CommandSpec) -> bool {
        match self {
            ListFilter::Module(_) => false,
            ListFilter::AclCategory(cat) => spec
                .acl
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(cat)),
            ListFilter::Pattern(p) => {
                crate::pattern::glob_match(&p.to_ascii_lowercase(), spec.name.as_bytes())
            }
        }
    }
}

/// Which connected clients CLIENT LIST or CLIENT KILL means; every condition given must
/// hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientFilter {
    /// Only these ids.
    pub ids: Option<Vec<u64>>,
    /// Only this address (`ip:port`).
    pub addr: Option<Bytes>,
    /// Only connections to this server address.
    pub laddr: Option<Bytes>,
    /// Only this user (`default`, or on the proxy the namespace a password restricts the
    /// connection to).
    pub user: Option<Bytes>,
    /// TYPE was given and is not `normal` (master, replica, pubsub): no connection here
    /// is of those types.
    pub other_type: bool,
    /// CLIENT KILL SKIPME (yes unless `no`): spare the connection asking.
    pub skip_me: bool,
}

impl ClientFilter {
    /// Whether a connection with these attributes passes (`me`: it is the one asking).
    pub fn admits(&self, id: u64, addr: &str, laddr: &str, user: &str, me: bool) -> bool {
        let excluded = self.other_type || (self.skip_me && me);
        !excluded
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
            && self
                .addr
                .as_ref()
                .is_none_or(|a| a.as_ref() == addr.as_bytes())
            && self
                .laddr
                .as_ref()
                .is_none_or(|a| a.as_ref() == laddr.as_bytes())
            && self
                .user
                .as_ref()
                .is_none_or(|u| u.as_ref() == user.as_bytes())
    }
}

/// TYPE's argument: whether it is not `normal`; an error for a type Redis does not have.
fn other_client_type(arg: &Bytes) -> Result<bool, CommandError> {
    let lower = arg.to_ascii_lowercase();
    match lower.as_slice() {
        b"normal" => Ok(false),
        b"master" | b"replica" | b"slave" | b"pubsub" => Ok(true),
        _ => Err(CommandError::UnknownClientType(
            String::from_utf8_lossy(arg).into_owned(),
        )),
    }
}

fn parse_client_list(args: &[Bytes]) -> Result<ClientFilter, CommandError> {
    let mut filter = ClientFilter::default();
    let mut j = 0;
    while j < args.len() {
        if args[j].eq_ignore_ascii_case(b"type") && j + 1 < args.len() {
            filter.other_type = other_client_type(&args[j + 1])?;
            j += 2;
        } else if args[j].eq_ignore_ascii_case(b"id") && j + 1 < args.len() {
            // An id that is not a number is an error; one no client can have matches none.
            let mut ids = Vec::new();
            for a in &args[j + 1..] {
                match parse_i64(a) {
                    Some(id) if id > 0 => ids.push(id as u64),
                    Some(_) => {}
                    None => return Err(CommandError::InvalidClientId),
                }
            }
            filter.ids = Some(ids);
            j = args.len();
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(filter)
}

fn parse_client_kill(args: &[Bytes]) -> Result<ClientFilter, CommandError> {
    let mut filter = ClientFilter {
        skip_me: true,
        ..ClientFilter::default()
    };
    if !args.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    for pair in args.chunks(2) {
        let (option, value) = (&pair[0], &pair[1]);
        let option = option.to_ascii_lowercase();
        match option.as_slice() {
            b"id" => match parse_i64(value) {
                Some(id) if id > 0 => filter.ids = Some(vec![id as u64]),
                _ => return Err(CommandError::ClientIdNotPositive),
            },
            b"addr" => filter.addr = Some(value.clone()),
            b"laddr" => filter.laddr = Some(value.clone()),
            b"user" => filter.user = Some(value.clone()),
            b"type" => filter.other_type = other_client_type(value)?,
            b"skipme" => {
                filter.skip_me = if value.eq_ignore_ascii_case(b"yes") {
                    true
                } else if value.eq_ignore_ascii_case(b"no") {
                    false
                } else {
                    return Err(CommandError::Syntax);
                }
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(filter)
}

/// Checks a client name the way CLIENT SETNAME does: printable ASCII without spaces.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

impl ConnectionCommand {
    /// Parses a connection command; `name` is lower case (for containers, `container|sub`)
    /// and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        Ok(match name {
            "ping" => match args {
                [] => ConnectionCommand::Ping(None),
                [msg] => ConnectionCommand::Ping(Some(msg.clone())),
                _ => return Err(CommandError::WrongArity("ping".into())),
            },
            "echo" => ConnectionCommand::Echo(args[0].clone()),
            "quit" => ConnectionCommand::Quit,
            "auth" => match args {
                [password] => ConnectionCommand::Auth {
                    user: None,
                    password: password.clone(),
                },
                [user, password] => ConnectionCommand::Auth {
                    user: Some(user.clone()),
                    password: password.clone(),
                },
                _ => return Err(CommandError::Syntax),
            },
            "hello" => {
                let mut version = None;
                let mut rest = args;
                if let Some(v) = args.first() {
                    let v = parse_i64(v).ok_or(CommandError::ProtocolVersionNotInteger)?;
                    if !(2..=3).contains(&v) {
                        return Err(CommandError::NoProto);
                    }
                    version = Some(v as u8);
                    rest = &args[1..];
                }
                let (mut auth, mut setname) = (None, None);
                let mut j = 0;
                while j < rest.len() {
                    let more = rest.len() - 1 - j;
                    if rest[j].eq_ignore_ascii_case(b"auth") && more >= 2 {
                        auth = Some((rest[j + 1].clone(), rest[j + 2].clone()));
                        j += 3;
                    } else if rest[j].eq_ignore_ascii_case(b"setname") && more >= 1 {
                        setname = Some(rest[j + 1].clone());
                        j += 2;
                    } else {
                        return Err(CommandError::HelloOption(
                            String::from_utf8_lossy(&rest[j]).into_owned(),
                        ));
                    }
                }
                if let Some(n) = &setname {
                    if !valid_client_name(n) {
                        return Err(CommandError::BadClientName);
                    }
                }
                ConnectionCommand::Hello {
                    version,
                    auth,
                    setname,
                }
            }
            "select" => {
                ConnectionCommand::Select(parse_i64(&args[0]).ok_or(CommandError::NotInteger)?)
            }
            "client|id" => ConnectionCommand::ClientId,
            "client|getname" => ConnectionCommand::ClientGetName,
            "client|setname" => {
                if !valid_client_name(&args[1]) {
                    return Err(CommandError::BadClientName);
                }
                ConnectionCommand::ClientSetName(args[1].clone())
            }
            "client|help" => ConnectionCommand::ClientHelp,
            "client|list" => ConnectionCommand::ClientList(parse_client_list(&args[1..])?),
            "client|info" => ConnectionCommand::ClientInfo,
            "client|unblock" => {
                let id = parse_i64(&args[1]).ok_or(CommandError::NotInteger)?;
                let error = match &args[2..] {
                    [] => false,
                    [reason] if reason.eq_ignore_ascii_case(b"timeout") => false,
                    [reason] if reason.eq_ignore_ascii_case(b"error") => true,
                    [_] => return Err(CommandError::UnblockReason),
                    _ => {
                        return Err(CommandError::SubcommandArgs {
                            sub: "unblock".into(),
                            command: "CLIENT",
                        })
                    }
                };
                ConnectionCommand::ClientUnblock { id, error }
            }
            "client|kill" => ConnectionCommand::ClientKill(match &args[1..] {
                [addr] => Err(addr.clone()),
                rest => Ok(parse_client_kill(rest)?),
            }),
            "config|get" => ConnectionCommand::ConfigGet(args[1..].to_vec()),
            "config|set" => {
                let rest = &args[1..];
                if !rest.len().is_multiple_of(2) {
                    return Err(CommandError::WrongArity("config|set".into()));
                }
                ConnectionCommand::ConfigSet(
                    rest.chunks(2)
                        .map(|p| (p[0].clone(), p[1].clone()))
                        .collect(),
                )
            }
            "config|help" => ConnectionCommand::ConfigHelp,
            cluster if cluster.starts_with("cluster|") => ConnectionCommand::Cluster(
                crate::cluster::ClusterCommand::parse(cluster, args)
                    .expect("every registered CLUSTER subcommand parses"),
            ),
            "config|resetstat" => ConnectionCommand::ConfigResetStat,
            "config|rewrite" => ConnectionCommand::ConfigRewrite,
            "slowlog|get" => match &args[1..] {
                [] => ConnectionCommand::SlowlogGet(None),
                [count] => match parse_i64(count) {
                    Some(c) if c >= -1 => ConnectionCommand::SlowlogGet(Some(c)),
                    _ => return Err(CommandError::SlowlogCount),
                },
                _ => {
                    return Err(CommandError::SubcommandArgs {
                        sub: String::from_utf8_lossy(&args[0]).into_owned(),
                        command: "SLOWLOG",
                    })
                }
            },
            "slowlog|len" => ConnectionCommand::SlowlogLen,
            "slowlog|reset" => ConnectionCommand::SlowlogReset,
            "slowlog|help" => ConnectionCommand::SlowlogHelp,
            "command" => ConnectionCommand::CommandAll,
            "command|count" => ConnectionCommand::CommandCount,
            "command|info" => ConnectionCommand::CommandInfo(args[1..].to_vec()),
            "command|docs" => ConnectionCommand::CommandDocs(args[1..].to_vec()),
            "command|list" => ConnectionCommand::CommandList(match &args[1..] {
                [] => None,
                [by, kind, arg] if by.eq_ignore_ascii_case(b"filterby") => {
                    Some(if kind.eq_ignore_ascii_case(b"module") {
                        ListFilter::Module(arg.clone())
                    } else if kind.eq_ignore_ascii_case(b"aclcat") {
                        ListFilter::AclCategory(arg.clone())
                    } else if kind.eq_ignore_ascii_case(b"pattern") {
                        ListFilter::Pattern(arg.clone())
                    } else {
                        return Err(CommandError::Syntax);
                    })
                }
                _ => return Err(CommandError::Syntax),
            }),
            "command|help" => ConnectionCommand::CommandHelp,
            "command|getkeys" => ConnectionCommand::CommandGetKeys(args[1..].to_vec()),
            "object|help" => ConnectionCommand::ObjectHelp,
            "script|help" => ConnectionCommand::ScriptHelp,
            "function|help" => ConnectionCommand::FunctionHelp,
            "info" => ConnectionCommand::Info(args.to_vec()),
            "time" => ConnectionCommand::Time,
            "readonly" => ConnectionCommand::ReadOnly,
            "multi" => ConnectionCommand::Multi,
            "exec" => ConnectionCommand::Exec,
            "discard" => ConnectionCommand::Discard,
            "watch" => ConnectionCommand::Watch(args.to_vec()),
            "unwatch" => ConnectionCommand::Unwatch,
            "reset" => ConnectionCommand::Reset,
            "readwrite" => ConnectionCommand::ReadWrite,
            pubsub
                if crate::pubsub::SPECS
                    .iter()
                    .chain(crate::pubsub::PUBSUB_SUBCOMMANDS)
                    .any(|s| s.name == pubsub) =>
            {
                ConnectionCommand::PubSub(crate::pubsub::PubSubCommand::parse(pubsub, args)?)
            }
            _ => unreachable!("connection family dispatched an unknown name: {name}"),
        })
    }
}

/// A client connection's own state, which connection commands read and change.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSession {
    /// CLIENT ID.
    pub id: u64,
    /// CLIENT SETNAME / HELLO SETNAME.
    pub name: Option<Bytes>,
    /// The protocol replies are encoded in (HELLO).
    pub protocol: Protocol,
    /// Whether the server speaks the cluster protocol (HELLO's `mode`).
    pub cluster: bool,
    /// READONLY (until READWRITE): its reads of keys may be answered by any replica.
    pub readonly: bool,
    /// The transaction being queued, between MULTI and EXEC or DISCARD.
    pub multi: Option<crate::transaction::Multi>,
    /// The keys WATCH was given since the last EXEC, DISCARD or UNWATCH.
    pub watched: Vec<crate::transaction::Watched>,
}

impl ClientSession {
    /// A new RESP2 connection without a name.
    pub fn new(id: u64) -> ClientSession {
        ClientSession {
            id,
            name: None,
            protocol: Protocol::Resp2,
            cluster: false,
            readonly: false,
            multi: None,
            watched: Vec::new(),
        }
    }

    /// RESET: no transaction, no watched keys, no name, RESP2, READWRITE (authentication
    /// is the server's to reset).
    pub fn reset(&mut self) {
        *self = ClientSession {
            cluster: self.cluster,
            ..ClientSession::new(self.id)
        };
    }
}

impl ConnectionCommand {
    /// The reply to a command that depends only on the connection and the command table
    /// (PING, ECHO, QUIT, HELLO, SELECT, READONLY/READWRITE, CLIENT ID/GETNAME/SETNAME/HELP,
    /// COMMAND, TIME), applying what it changes to `session`; `None` for AUTH, INFO and the
    /// commands on shared server state, which each server answers itself. HELLO's AUTH must
    /// have been checked by the caller.
    pub fn answer(&self, session: &mut ClientSession) -> Option<Reply> {
        Some(match self {
            ConnectionCommand::Ping(None) => Reply::Status("PONG"),
            ConnectionCommand::Ping(Some(msg)) | ConnectionCommand::Echo(msg) => {
                Reply::Bulk(msg.clone())
            }
            ConnectionCommand::Quit => Reply::OK,
            ConnectionCommand::Hello {
                version, setname, ..
            } => {
                if let Some(name) = setname {
                    session.name = (!name.is_empty()).then(|| name.clone());
                }
                if let Some(v) = version {
                    session.protocol = if *v == 3 {
                        Protocol::Resp3
                    } else {
                        Protocol::Resp2
                    };
                }
                let proto = if session.protocol == Protocol::Resp3 {
                    3
                } else {
                    2
                };
                Reply::Map(vec![
                    (Reply::bulk("server"), Reply::bulk("redis")),
                    (Reply::bulk("version"), Reply::bulk(REDIS_COMPAT_VERSION)),
                    (Reply::bulk("proto"), Reply::Integer(proto)),
                    (Reply::bulk("id"), Reply::Integer(session.id as i64)),
                    (
                        Reply::bulk("mode"),
                        Reply::bulk(if session.cluster {
                            "cluster"
                        } else {
                            "standalone"
                        }),
                    ),
                    (Reply::bulk("role"), Reply::bulk("master")),
                    (Reply::bulk("modules"), Reply::Array(vec![])),
                ])
            }
            ConnectionCommand::ReadOnly => {
                session.readonly = true;
                Reply::OK
            }
            // Queued in a transaction, it runs when its watches were already dropped by EXEC.
            ConnectionCommand::Unwatch => {
                session.watched.clear();
                Reply::OK
            }
            ConnectionCommand::Reset => {
                session.reset();
                Reply::Status("RESET")
            }
            ConnectionCommand::ReadWrite => {
                session.readonly = false;
                Reply::OK
            }
            ConnectionCommand::Select(0) => Reply::OK,
            ConnectionCommand::Select(_) => Reply::Error(CommandError::DbIndexOutOfRange),
            ConnectionCommand::ClientId => Reply::Integer(session.id as i64),
            ConnectionCommand::ClientGetName => Reply::bulk_or_nil(session.name.clone()),
            ConnectionCommand::ClientSetName(name) => {
                session.name = (!name.is_empty()).then(|| name.clone());
                Reply::OK
            }
            ConnectionCommand::ScriptHelp => crate::scripting::help(),
            ConnectionCommand::FunctionHelp => crate::scripting::function_help(),
            ConnectionCommand::ObjectHelp => help(&[
                "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "ENCODING <key>",
                "    Return the kind of internal representation used in order to store the value",
                "    associated with a <key>.",
                "FREQ <key>",
                "    Return the access frequency index of the <key>. The returned integer is",
                "    proportional to the logarithm of the recent access frequency of the key.",
                "IDLETIME <key>",
                "    Return the idle time of the <key>, that is the approximated number of",
                "    seconds elapsed since the last access to the key.",
                "REFCOUNT <key>",
                "    Return the number of references of the value associated with the specified",
                "    <key>.",
                "HELP",
                "    Prints this help.",
            ]),
            ConnectionCommand::ClientHelp => help(&[
                "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GETNAME",
                "    Return the name of the current connection.",
                "ID",
                "    Return the ID of the current connection.",
                "INFO",
                "    Return information about the current client connection.",
                "KILL <ip:port>",
                "    Kill connection made from <ip:port>.",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Kill connections. Options are:",
                "    * ADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made from the specified address",
                "    * LADDR (<ip:port>|<unixsocket>:0)",
                "      Kill connections made to specified local address",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Kill connections by type.",
                "    * USER <username>",
                "      Kill connections authenticated by <username>.",
                "    * SKIPME (YES|NO)",
                "      Skip killing current connection (default: yes).",
                "    * ID <client-id>",
                "      Kill connections by client id.",
                "LIST [options ...]",
                "    Return information about client connections. Options:",
                "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                "      Return clients of specified type.",
                "SETNAME <name>",
                "    Assign the name <name> to the current connection.",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "    Unblock the specified blocked client.",
                "HELP",
                "    Print this help.",
            ]),
            ConnectionCommand::CommandAll => {
                Reply::Array(crate::all_specs().map(crate::command_info).collect())
            }
            ConnectionCommand::CommandCount => Reply::Integer(crate::all_specs().count() as i64),
            ConnectionCommand::CommandInfo(names) if names.is_empty() => {
                Reply::Array(crate::all_specs().map(crate::command_info).collect())
            }
            ConnectionCommand::CommandInfo(names) => Reply::Array(
                names
                    .iter()
                    .map(|n| crate::lookup(n).map_or(Reply::Nil, crate::command_info))
                    .collect(),
            ),
            ConnectionCommand::CommandDocs(names) => {
                let specs: Vec<_> = if names.is_empty() {
                    crate::all_specs().collect()
                } else {
                    names.iter().filter_map(|n| crate::lookup(n)).collect()
                };
                Reply::Map(
                    specs
                        .into_iter()
                        .map(|s| (Reply::bulk(s.name), crate::command_docs(s)))
                        .collect(),
                )
            }
            ConnectionCommand::CommandList(filter) => Reply::Array(
                // Subcommands are listed too (`client|id`), as Redis does.
                crate::all_specs()
                    .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
                    .filter(|s| filter.as_ref().is_none_or(|f| f.admits(s)))
                    .map(|s| Reply::bulk(s.name))
                    .collect(),
            ),
            ConnectionCommand::CommandGetKeys(argv) => match crate::command_keys(argv) {
                Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
                Err(e) => Reply::Error(e),
            },
            ConnectionCommand::CommandHelp => help(&[
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all commands.",
                "COUNT",
                "    Return the total number of commands in this server.",
                "LIST",
                "    Return a list of all commands in this server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple commands.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple commands.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "HELP",
                "    Print this help.",
            ]),
            ConnectionCommand::Time => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Reply::Array(vec![
                    Reply::bulk(now.as_secs().to_string()),
                    Reply::bulk(now.subsec_micros().to_string()),
                ])
            }
            // zankv's processes read their configuration files but never write them.
            ConnectionCommand::ConfigRewrite => Reply::Error(CommandError::NoConfigFile),
            ConnectionCommand::ConfigHelp => help(&[
                "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET <pattern>",
                "    Return parameters matching the glob-like <pattern> and their values.",
                "SET <directive> <value>",
                "    Set the configuration <directive> to <value>.",
                "RESETSTAT",
                "    Reset statistics reported by the INFO command.",
                "REWRITE",
                "    Rewrite the configuration file.",
                "HELP",
                "    Prints this help.",
            ]),
            ConnectionCommand::SlowlogHelp => help(&[
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]",
                "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:",
                "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name",
                "LEN",
                "    Return the length of the slowlog.",
                "RESET",
                "    Reset the slowlog.",
                "HELP",
                "    Prints this help.",
            ]),
            ConnectionCommand::Auth { .. }
            | ConnectionCommand::Info(_)
            | ConnectionCommand::ConfigGet(_)
            | ConnectionCommand::ConfigSet(_)
            | ConnectionCommand::ConfigResetStat
            | ConnectionCommand::Cluster(_)
            | ConnectionCommand::SlowlogGet(_)
            | ConnectionCommand::SlowlogLen
            | ConnectionCommand::SlowlogReset
            | ConnectionCommand::ClientList(_)
            | ConnectionCommand::ClientInfo
            | ConnectionCommand::ClientKill(_)
            | ConnectionCommand::ClientUnblock { .. }
            // The transaction commands ([`crate::transaction::step`]) and WATCH, which each
            // server sends to the keys' partition.
            | ConnectionCommand::Multi
            | ConnectionCommand::Exec
            | ConnectionCommand::Discard
            | ConnectionCommand::Watch(_)
            // Pub/Sub, answered from the server's subscriptions.
            | ConnectionCommand::PubSub(_) => return None,
        })
    }
}

fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::Status(l)).collect())
}

/// How a server without passwords (a storage node) answers AUTH, as Redis does when the
/// default user has no password: `AUTH password` is an error, `AUTH default anything` is
/// accepted, any other user is refused.
pub fn auth_without_password(user: Option<&[u8]>) -> Reply {
    match user {
        None => Reply::Error(CommandError::AuthNotConfigured),
        Some(b"default") => Reply::OK,
        Some(_) => Reply::Error(CommandError::WrongPass),
    }
}
