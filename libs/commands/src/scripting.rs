//! Lua scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT's subcommands.
//!
//! This module owns what does not depend on where a script runs: the specs, parsing
//! (`numkeys`, the shebang line of Redis 7's scripts), the SHA1 names of script bodies
//! and SCRIPT HELP. A storage node runs scripts (`zankv_storage::script`); the proxy
//! routes them by their keys like any command of one partition (a keyless script goes to
//! one partition of its choice: [`Fanout::AnyPartition`]) and spreads SCRIPT's
//! subcommands over every partition ([`Combine`]).
//!
//! Invariant: a script's keys are the `numkeys` arguments after it, as the spec's
//! [`crate::spec::Movable::NumKeysAt`] says, so COMMAND GETKEYS, the proxy's routing
//! and the node's CROSSSLOT check agree.

use bytes::Bytes;

use crate::error::CommandError;
use crate::reply::Reply;
use crate::request::parse_i64;
use crate::spec::{container, spec, Access, Combine, CommandSpec, Fanout, NO_KEYS};

const S: Access = Access::Script;
const G: &str = "scripting";
const EVAL_FLAGS: &[&str] = &[
    "noscript",
    "stale",
    "skip_monitor",
    "may_replicate",
    "no_mandatory_keys",
    "movablekeys",
];
const EVAL_RO_FLAGS: &[&str] = &[
    "readonly",
    "noscript",
    "stale",
    "skip_monitor",
    "no_mandatory_keys",
    "movablekeys",
];
const EVAL_ACL: &[&str] = &["slow", "scripting"];

/// Specs of the scripting family.
pub static SPECS: &[CommandSpec] = &[
    spec(
        "eval",
        -3,
        S,
        EVAL_FLAGS,
        NO_KEYS,
        EVAL_ACL,
        G,
        "2.6.0",
        "Executes a server-side Lua script.",
    )
    .with_numkeys_at(2)
    .with_fanout(Fanout::AnyPartition),
    spec(
        "evalsha",
        -3,
        S,
        EVAL_FLAGS,
        NO_KEYS,
        EVAL_ACL,
        G,
        "2.6.0",
        "Executes a server-side Lua script by SHA1 digest.",
    )
    .with_numkeys_at(2)
    .with_fanout(Fanout::AnyPartition),
    spec(
        "eval_ro",
        -3,
        S,
        EVAL_RO_FLAGS,
        NO_KEYS,
        EVAL_ACL,
        G,
        "7.0.0",
        "Executes a read-only server-side Lua script.",
    )
    .with_numkeys_at(2)
    .with_fanout(Fanout::AnyPartition),
    spec(
        "evalsha_ro",
        -3,
        S,
        EVAL_RO_FLAGS,
        NO_KEYS,
        EVAL_ACL,
        G,
        "7.0.0",
        "Executes a read-only server-side Lua script by SHA1 digest.",
    )
    .with_numkeys_at(2)
    .with_fanout(Fanout::AnyPartition),
    container(
        "script",
        "A container for Lua scripts management commands.",
        G,
        "2.6.0",
        SCRIPT_SUBCOMMANDS,
    ),
    spec(
        "fcall",
        -3,
        S,
        EVAL_FLAGS,
        NO_KEYS,
        EVAL_ACL,
        G,
        "7.0.0",
        "Invokes a function.",
    )
    .with_numkeys_at(2)
    .with_fanout(Fanout::AnyPartition),
    spec(
        "fcall_ro",
        -3,
        S,
        EVAL_RO_FLAGS,
        NO_KEYS,
        EVAL_ACL,
        G,
        "7.0.0",
        "Invokes a read-only function.",
    )
    .with_numkeys_at(2)
    .with_fanout(Fanout::AnyPartition),
    container(
        "function",
        "A container for function commands.",
        G,
        "7.0.0",
        FUNCTION_SUBCOMMANDS,
    ),
];

const FUNCTION_WRITE: &[&str] = &["noscript", "write"];
const FUNCTION_READ: &[&str] = &["noscript"];
const FUNCTION_ACL_WRITE: &[&str] = &["write", "slow", "scripting"];
const FUNCTION_ACL_READ: &[&str] = &["slow", "scripting"];

/// FUNCTION's subcommands. The libraries are stored in every partition (replicated like
/// data), so the proxy sends the changes to every partition and reads from any.
pub static FUNCTION_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "function|delete",
        3,
        S,
        FUNCTION_WRITE,
        NO_KEYS,
        FUNCTION_ACL_WRITE,
        G,
        "7.0.0",
        "Deletes a library and its functions.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "function|dump",
        2,
        S,
        FUNCTION_READ,
        NO_KEYS,
        FUNCTION_ACL_READ,
        G,
        "7.0.0",
        "Dumps all libraries into a serialized binary payload.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "function|flush",
        -2,
        S,
        FUNCTION_WRITE,
        NO_KEYS,
        FUNCTION_ACL_WRITE,
        G,
        "7.0.0",
        "Deletes all libraries and functions.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "function|help",
        2,
        Access::Connection,
        &["loading", "stale"],
        NO_KEYS,
        &["slow"],
        G,
        "7.0.0",
        "Returns helpful text about the different subcommands.",
    ),
    spec(
        "function|kill",
        2,
        S,
        &["noscript", "allow_busy"],
        NO_KEYS,
        FUNCTION_ACL_READ,
        G,
        "7.0.0",
        "Terminates a function during execution.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Kill)),
    spec(
        "function|list",
        -2,
        S,
        FUNCTION_READ,
        NO_KEYS,
        FUNCTION_ACL_READ,
        G,
        "7.0.0",
        "Returns information about all libraries.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "function|load",
        -3,
        S,
        &["noscript", "write", "denyoom"],
        NO_KEYS,
        FUNCTION_ACL_WRITE,
        G,
        "7.0.0",
        "Creates a library.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "function|restore",
        -3,
        S,
        &["noscript", "write", "denyoom"],
        NO_KEYS,
        FUNCTION_ACL_WRITE,
        G,
        "7.0.0",
        "Restores all libraries from a payload.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "function|stats",
        2,
        S,
        &["noscript", "allow_busy"],
        NO_KEYS,
        FUNCTION_ACL_READ,
        G,
        "7.0.0",
        "Returns information about a function during execution.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
];

/// SCRIPT's subcommands.
pub static SCRIPT_SUBCOMMANDS: &[CommandSpec] = &[
    spec(
        "script|exists",
        -3,
        S,
        &["noscript"],
        NO_KEYS,
        EVAL_ACL,
        G,
        "2.6.0",
        "Determines whether server-side Lua scripts exist in the script cache.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::AllOf)),
    spec(
        "script|flush",
        -2,
        S,
        &["noscript"],
        NO_KEYS,
        EVAL_ACL,
        G,
        "2.6.0",
        "Removes all server-side Lua scripts from the script cache.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "script|kill",
        2,
        S,
        &["noscript", "allow_busy"],
        NO_KEYS,
        EVAL_ACL,
        G,
        "2.6.0",
        "Terminates a server-side Lua script during execution.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Kill)),
    spec(
        "script|load",
        3,
        S,
        &["noscript", "stale"],
        NO_KEYS,
        EVAL_ACL,
        G,
        "2.6.0",
        "Loads a server-side Lua script to the script cache.",
    )
    .with_fanout(Fanout::EveryPartition(Combine::Same)),
    spec(
        "script|help",
        2,
        Access::Connection,
        &["loading", "stale"],
        NO_KEYS,
        &["slow"],
        G,
        "5.0.0",
        "Returns helpful text about the different subcommands.",
    ),
];

/// Where a script's body comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// EVAL's body.
    Body(Bytes),
    /// EVALSHA's SHA1 name, in lower case.
    Sha(String),
    /// FCALL's function name.
    Function(Bytes),
}

/// EVAL and its variants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eval {
    /// The script.
    pub source: Source,
    /// `KEYS`.
    pub keys: Vec<Bytes>,
    /// `ARGV`.
    pub args: Vec<Bytes>,
    /// EVAL_RO/EVALSHA_RO/FCALL_RO: the script may not write.
    pub read_only: bool,
}

/// A read of the libraries of functions, which every partition stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionRead {
    /// `FUNCTION LIST [LIBRARYNAME pattern] [WITHCODE]`.
    List {
        /// LIBRARYNAME's pattern.
        pattern: Option<Bytes>,
        /// WITHCODE.
        with_code: bool,
    },
    /// FUNCTION DUMP.
    Dump,
}

/// What FUNCTION RESTORE does with the libraries already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestorePolicy {
    /// Deletes them first.
    Flush,
    /// Adds the payload's; a name taken fails the whole restore.
    Append,
    /// Adds the payload's, replacing libraries of the same name.
    Replace,
}

/// A change to the libraries of functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionWrite {
    /// `FUNCTION LOAD [REPLACE] code`.
    Load {
        /// REPLACE.
        replace: bool,
        /// The library's code, its `#!lua name=...` line first.
        code: Bytes,
    },
    /// FUNCTION DELETE library.
    Delete(Bytes),
    /// `FUNCTION FLUSH [ASYNC|SYNC]`.
    Flush,
    /// `FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]`.
    Restore {
        /// FUNCTION DUMP's payload.
        payload: Bytes,
        /// What happens to the libraries there.
        policy: RestorePolicy,
    },
}

/// A scripting command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptCommand {
    /// EVAL, EVALSHA, EVAL_RO, EVALSHA_RO.
    Eval(Eval),
    /// SCRIPT LOAD body.
    Load(Bytes),
    /// SCRIPT EXISTS sha [sha ...].
    Exists(Vec<Bytes>),
    /// `SCRIPT FLUSH [ASYNC|SYNC]`.
    Flush,
    /// SCRIPT KILL (`function`: false) and FUNCTION KILL (true): each stops its own kind.
    Kill {
        /// FUNCTION KILL.
        function: bool,
    },
    /// FUNCTION LOAD, DELETE, FLUSH, RESTORE.
    FunctionWrite(FunctionWrite),
    /// FUNCTION LIST and DUMP.
    FunctionRead(FunctionRead),
    /// FUNCTION STATS.
    FunctionStats,
}

impl ScriptCommand {
    /// Parses a scripting command; `name` is lower case (`script|load` for a subcommand)
    /// and arity has been checked.
    pub fn parse(name: &str, args: &[Bytes]) -> Result<Self, CommandError> {
        Ok(match name {
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => {
                let numkeys = parse_i64(&args[1]).ok_or(if name.starts_with("fcall") {
                    CommandError::BadNumberOfKeys
                } else {
                    CommandError::NotInteger
                })?;
                if numkeys < 0 {
                    return Err(CommandError::NumkeysNegative);
                }
                let rest = &args[2..];
                let n = usize::try_from(numkeys).unwrap_or(usize::MAX);
                if n > rest.len() {
                    return Err(CommandError::NumkeysOverArgs);
                }
                let source = if name.starts_with("evalsha") {
                    Source::Sha(String::from_utf8_lossy(&args[0]).to_ascii_lowercase())
                } else if name.starts_with("fcall") {
                    Source::Function(args[0].clone())
                } else {
                    Source::Body(args[0].clone())
                };
                ScriptCommand::Eval(Eval {
                    source,
                    keys: rest[..n].to_vec(),
                    args: rest[n..].to_vec(),
                    read_only: name.ends_with("_ro"),
                })
            }
            "script|load" => ScriptCommand::Load(args[1].clone()),
            "script|exists" => ScriptCommand::Exists(args[1..].to_vec()),
            "script|flush" => match &args[1..] {
                [] => ScriptCommand::Flush,
                [mode]
                    if mode.eq_ignore_ascii_case(b"sync")
                        || mode.eq_ignore_ascii_case(b"async") =>
                {
                    ScriptCommand::Flush
                }
                _ => return Err(CommandError::ScriptFlushOption),
            },
            "script|kill" => ScriptCommand::Kill { function: false },
            "function|kill" => ScriptCommand::Kill { function: true },
            "function|stats" => ScriptCommand::FunctionStats,
            "function|dump" => ScriptCommand::FunctionRead(FunctionRead::Dump),
            "function|delete" => {
                ScriptCommand::FunctionWrite(FunctionWrite::Delete(args[1].clone()))
            }
            "function|flush" => match &args[1..] {
                [] => ScriptCommand::FunctionWrite(FunctionWrite::Flush),
                [mode]
                    if mode.eq_ignore_ascii_case(b"sync")
                        || mode.eq_ignore_ascii_case(b"async") =>
                {
                    ScriptCommand::FunctionWrite(FunctionWrite::Flush)
                }
                [_] => return Err(CommandError::FunctionFlushOption),
                _ => {
                    return Err(CommandError::SubcommandArgs {
                        sub: String::from_utf8_lossy(&args[0]).into_owned(),
                        command: "FUNCTION",
                    })
                }
            },
            "function|load" => {
                let mut replace = false;
                let mut rest = &args[1..];
                while rest.len() > 1 {
                    if rest[0].eq_ignore_ascii_case(b"replace") {
                        replace = true;
                        rest = &rest[1..];
                    } else {
                        return Err(CommandError::UnknownOptionGiven(
                            String::from_utf8_lossy(&rest[0]).into_owned(),
                        ));
                    }
                }
                ScriptCommand::FunctionWrite(FunctionWrite::Load {
                    replace,
                    code: rest[0].clone(),
                })
            }
            "function|restore" => {
                let policy = match &args[2..] {
                    [] => RestorePolicy::Append,
                    [p] if p.eq_ignore_ascii_case(b"flush") => RestorePolicy::Flush,
                    [p] if p.eq_ignore_ascii_case(b"append") => RestorePolicy::Append,
                    [p] if p.eq_ignore_ascii_case(b"replace") => RestorePolicy::Replace,
                    [_] => return Err(CommandError::RestorePolicy),
                    _ => {
                        return Err(CommandError::SubcommandArgs {
                            sub: String::from_utf8_lossy(&args[0]).into_owned(),
                            command: "FUNCTION",
                        })
                    }
                };
                ScriptCommand::FunctionWrite(FunctionWrite::Restore {
                    payload: args[1].clone(),
                    policy,
                })
            }
            "function|list" => {
                let (mut pattern, mut with_code) = (None, false);
                let mut rest = &args[1..];
                while let Some(word) = rest.first() {
                    if word.eq_ignore_ascii_case(b"withcode") && !with_code {
                        with_code = true;
                        rest = &rest[1..];
                    } else if word.eq_ignore_ascii_case(b"libraryname") && pattern.is_none() {
                        let Some(p) = rest.get(1) else {
                            return Err(CommandError::LibraryNameArgMissing);
                        };
                        pattern = Some(p.clone());
                        rest = &rest[2..];
                    } else {
                        return Err(CommandError::UnknownArgument(
                            String::from_utf8_lossy(word).into_owned(),
                        ));
                    }
                }
                ScriptCommand::FunctionRead(FunctionRead::List { pattern, with_code })
            }
            _ => unreachable!("scripting family dispatched an unknown name: {name}"),
        })
    }
}

/// SCRIPT HELP's text.
pub fn help() -> Reply {
    Reply::Array(
        [
            "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "EXISTS <sha1> [<sha1> ...]",
            "    Return information about the existence of the scripts in the script cache.",
            "FLUSH [ASYNC|SYNC]",
            "    Flush the Lua scripts cache. Very dangerous on replicas.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the scripts cache.",
            "    * SYNC: Synchronously flush the scripts cache.",
            "KILL",
            "    Kill the currently executing Lua script.",
            "LOAD <script>",
            "    Load a script into the scripts cache without executing it.",
            "HELP",
            "    Prints this help.",
        ]
        .iter()
        .map(|l| Reply::Status(l))
        .collect(),
    )
}

impl ScriptCommand {
    /// Whether it needs a partition: a script runs on one, and the libraries of functions
    /// are stored in every one; the script cache, SCRIPT KILL and FUNCTION STATS are the
    /// node's.
    pub fn on_partition(&self) -> bool {
        matches!(
            self,
            ScriptCommand::Eval(_)
                | ScriptCommand::FunctionWrite(_)
                | ScriptCommand::FunctionRead(_)
        )
    }
}

/// FUNCTION HELP's text.
pub fn function_help() -> Reply {
    Reply::Array(
        [
            "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "LOAD [REPLACE] <FUNCTION CODE>",
            "    Create a new library with the given library name and code.",
            "DELETE <LIBRARY NAME>",
            "    Delete the given library.",
            "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
            "    Return general information on all the libraries:",
            "    * Library name",
            "    * The engine used to run the Library",
            "    * Library description",
            "    * Functions list",
            "    * Library code (if WITHCODE is given)",
            "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
            "STATS",
            "    Return information about the current function running:",
            "    * Function name",
            "    * Command used to run the function",
            "    * Duration in MS that the function is running",
            "    If no function is running, return nil",
            "    In addition, returns a list of available engines.",
            "KILL",
            "    Kill the current running function.",
            "FLUSH [ASYNC|SYNC]",
            "    Delete all the libraries.",
            "    When called without the optional mode argument, the behavior is determined by the",
            "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
            "    * ASYNC: Asynchronously flush the libraries.",
            "    * SYNC: Synchronously flush the libraries.",
            "DUMP",
            "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
            "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
            "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
            "    control how to handle existing libraries (default APPEND):",
            "    * FLUSH: delete all existing libraries.",
            "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
            "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
            "      libraries with the new libraries (notice that even on this option there is a chance of failure",
            "      in case of functions name collision with another library).",
            "HELP",
            "    Prints this help.",
        ]
        .iter()
        .map(|l| Reply::Status(l))
        .collect(),
    )
}

/// The SHA1 of `body` in lower-case hex: a script's name in the cache.
pub fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// What a script's shebang line (`#!lua flags=...`, Redis 7) declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptFlags {
    /// The script has a shebang line (then only the flags it names apply).
    pub shebang: bool,
    /// `no-writes`: the script may not write.
    pub no_writes: bool,
    /// `no-cluster`: the script refuses to run in a cluster (zankv is one).
    pub no_cluster: bool,
}

/// Reads a script's shebang line, if it has one; the body Lua compiles is the script with
/// that line blanked (so line numbers stay those of the script).
pub fn shebang(body: &[u8]) -> Result<ScriptFlags, CommandError> {
    if !body.starts_with(b"#!") {
        return Ok(ScriptFlags::default());
    }
    // Redis wants the line to end: a script cannot be its shebang alone.
    let Some(line_end) = body.iter().position(|&b| b == b'\n') else {
        return Err(CommandError::ShebangInvalid);
    };
    let line = String::from_utf8_lossy(&body[..line_end]);
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let engine = words.next().unwrap_or("#!");
    if engine != "#!lua" {
        return Err(CommandError::ShebangEngine(engine.to_string()));
    }
    let mut flags = ScriptFlags {
        shebang: true,
        no_writes: false,
        no_cluster: false,
    };
    for word in words {
        let Some(list) = word.strip_prefix("flags=") else {
            return Err(CommandError::ShebangOption(word.to_string()));
        };
        for flag in list.split(',').filter(|f| !f.is_empty()) {
            match flag {
                "no-writes" => flags.no_writes = true,
                "no-cluster" => flags.no_cluster = true,
                "allow-oom" | "allow-stale" | "allow-cross-slot-keys" => {}
                other => return Err(CommandError::ShebangFlag(other.to_string())),
            }
        }
    }
    Ok(flags)
}

/// The part of a script Lua compiles: without its shebang line (the line break stays, so
/// line numbers are the script's).
pub fn lua_source(body: &[u8]) -> &[u8] {
    if body.starts_with(b"#!") {
        let line_end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
        &body[line_end..]
    } else {
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{argv, parse, Command};

    fn eval(words: &[&str]) -> Result<Eval, CommandError> {
        match parse(&argv(words))? {
            (Command::Script(ScriptCommand::Eval(e)), _) => Ok(e),
            other => panic!("not an eval: {other:?}"),
        }
    }

    #[test]
    fn numkeys_errors_match_redis() {
        let text = |w: &[&str]| eval(w).unwrap_err().to_string();
        assert_eq!(
            text(&["eval", "return 1", "-1"]),
            "ERR Number of keys can't be negative"
        );
        assert_eq!(
            text(&["eval", "return 1", "2", "a"]),
            "ERR Number of keys can't be greater than number of args"
        );
        assert_eq!(
            text(&["eval", "return 1", "x"]),
            "ERR value is not an integer or out of range"
        );
        let e = eval(&["evalsha_ro", "ABC", "1", "k", "a1", "a2"]).unwrap();
        assert_eq!(e.source, Source::Sha("abc".into()));
        assert_eq!(e.keys, argv(&["k"]));
        assert_eq!(e.args, argv(&["a1", "a2"]));
        assert!(e.read_only);
    }

    #[test]
    fn keys_are_the_numkeys_arguments() {
        let v = argv(&["eval", "s", "2", "a", "b", "c"]);
        let (_, spec) = parse(&v).unwrap();
        assert_eq!(spec.key_positions(&v).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(spec.fanout, Fanout::AnyPartition);
    }

    #[test]
    fn sha1_names_match_redis() {
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1_hex(b"return 1"),
            "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
    }

    #[test]
    fn shebang_lines() {
        assert_eq!(shebang(b"return 1").unwrap(), ScriptFlags::default());
        let f = shebang(b"#!lua flags=no-writes,allow-stale\nreturn 1").unwrap();
        assert!(f.shebang && f.no_writes);
        assert_eq!(
            shebang(b"#!python\nreturn 1").unwrap_err().to_string(),
            "ERR Unexpected engine in script shebang: #!python"
        );
        assert_eq!(
            shebang(b"#!lua flags=bogus\n").unwrap_err().to_string(),
            "ERR Unexpected flag in script shebang: bogus"
        );
        assert_eq!(
            shebang(b"#!lua name=x\n").unwrap_err().to_string(),
            "ERR Unknown lua shebang option: name=x"
        );
        assert_eq!(lua_source(b"#!lua\nreturn 1"), b"\nreturn 1");
        assert_eq!(
            shebang(b"#!lua").unwrap_err().to_string(),
            "ERR Invalid script shebang"
        );
    }

    #[test]
    fn script_flush_modes() {
        assert!(parse(&argv(&["script", "flush", "ASYNC"])).is_ok());
        assert_eq!(
            parse(&argv(&["script", "flush", "foo"]))
                .unwrap_err()
                .to_string(),
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option"
        );
    }
}
