//! The one place where command errors become Redis error text.
//!
//! Every error a client can see from a command is a variant of [`CommandError`]; its `Display`
//! is the exact text Redis 7.0 sends (without the leading `-`). Nothing else in the workspace
//! formats Redis error strings.

use thiserror::Error;

/// An error answered to a client instead of a command's reply.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// A command name that no spec knows. `args` are the first arguments, already quoted.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand {
        /// The name as the client sent it (truncated, sanitised).
        name: String,
        /// The first arguments, each as `'arg' `.
        args: String,
    },
    /// A container command (CLIENT, COMMAND) with an unknown subcommand.
    #[error("ERR unknown subcommand '{sub}'. Try {command} HELP.")]
    UnknownSubcommand {
        /// The subcommand as sent.
        sub: String,
        /// The container command in upper case.
        command: &'static str,
    },
    /// CONFIG SET of a setting the server does not have.
    #[error("ERR Unknown option or number of arguments for CONFIG SET - '{0}'")]
    ConfigUnknownOption(String),
    /// CONFIG SET of a value the setting refuses (or of a setting fixed at run time).
    #[error("ERR CONFIG SET failed (possibly related to argument '{0}') - {1}")]
    ConfigSetFailed(String, String),
    /// COMMAND GETKEYS of a command the server does not have.
    #[error("ERR Invalid command specified")]
    GetKeysUnknownCommand,
    /// COMMAND GETKEYS of a command with the wrong number of arguments.
    #[error("ERR Invalid number of arguments specified for command")]
    GetKeysArity,
    /// COMMAND GETKEYS of a command whose `numkeys` does not fit its arguments.
    #[error("ERR Invalid arguments specified for command")]
    GetKeysBadArguments,
    /// COMMAND GETKEYS of a command without keys.
    #[error("ERR The command has no key arguments")]
    GetKeysNoKeys,
    /// CLUSTER on a server without cluster support.
    #[error("ERR This instance has cluster support disabled")]
    ClusterDisabled,
    /// CONFIG REWRITE: zankv never rewrites its configuration files.
    #[error("ERR The server is running without a config file")]
    NoConfigFile,
    /// CLIENT KILL addr of no connected client.
    #[error("ERR No such client")]
    NoSuchClient,
    /// CLIENT KILL ID with an id that is not a positive integer.
    #[error("ERR client-id should be greater than 0")]
    ClientIdNotPositive,
    /// CLIENT LIST ID with an id that is not a positive integer.
    #[error("ERR Invalid client ID")]
    InvalidClientId,
    /// CLIENT LIST / KILL TYPE with a type Redis does not have.
    #[error("ERR Unknown client type '{0}'")]
    UnknownClientType(String),
    /// SLOWLOG GET with a count below -1 or not a number.
    #[error("ERR count should be greater than or equal to -1")]
    SlowlogCount,
    /// A subcommand given more arguments than it takes (SLOWLOG GET 1 2).
    #[error(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {command} HELP."
    )]
    SubcommandArgs {
        /// The subcommand as sent.
        sub: String,
        /// The container command in upper case.
        command: &'static str,
    },
    /// Argument count does not match the command's arity.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    /// Generic option parsing failure.
    #[error("ERR syntax error")]
    Syntax,
    /// The key holds a value of another type.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// An argument or stored value that should be a 64-bit integer is not.
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    /// An argument or stored value that should be a float is not.
    #[error("ERR value is not a valid float")]
    NotFloat,
    /// A numeric argument is outside the accepted range.
    #[error("ERR value is out of range")]
    OutOfRange,
    /// A numeric argument outside a documented range.
    #[error("ERR value is out of range, value must between {0} and {1}")]
    OutOfRangeBetween(i64, i64),
    /// HINCRBYFLOAT with an infinite increment.
    #[error("ERR value is NaN or Infinity")]
    NanOrInfinityArgument,
    /// HELLO with an unknown option.
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloOption(String),
    /// INCR-family result does not fit in a signed 64-bit integer.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    /// DECRBY with i64::MIN.
    #[error("ERR decrement would overflow")]
    DecrementOverflow,
    /// A float increment whose result is NaN or infinite.
    #[error("ERR increment would produce NaN or Infinity")]
    NanOrInfinity,
    /// RENAME of a missing key.
    #[error("ERR no such key")]
    NoSuchKey,
    /// An expiry that overflows or is not positive where it must be.
    #[error("ERR invalid expire time in '{0}' command")]
    InvalidExpireTime(&'static str),
    /// EXPIRE with an option other than NX/XX/GT/LT.
    #[error("ERR Unsupported option {0}")]
    UnsupportedOption(String),
    /// EXPIRE NX combined with XX, GT or LT.
    #[error("ERR NX and XX, GT or LT options at the same time are not compatible")]
    ExpireNxConflict,
    /// EXPIRE GT combined with LT.
    #[error("ERR GT and LT options at the same time are not compatible")]
    ExpireGtLtConflict,
    /// A count that must not be negative (LPOP, RPOP, SPOP).
    #[error("ERR value is out of range, must be positive")]
    MustBePositive,
    /// LSET of an index outside the list.
    #[error("ERR index out of range")]
    IndexOutOfRange,
    /// LPOS RANK 0.
    #[error("ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list")]
    RankZero,
    /// LPOS COUNT negative or not a number.
    #[error("ERR COUNT can't be negative")]
    CountNegative,
    /// LPOS MAXLEN negative or not a number.
    #[error("ERR MAXLEN can't be negative")]
    MaxlenNegative,
    /// LMPOP COUNT below 1 or not a number.
    #[error("ERR count should be greater than 0")]
    CountNotPositive,
    /// A numkeys argument below 1 or not a number.
    #[error("ERR numkeys should be greater than 0")]
    NumkeysNotPositive,
    /// A blocking command's timeout that is not a number.
    #[error("ERR timeout is not a float or out of range")]
    TimeoutNotFloat,
    /// A blocking command's timeout below 0 (or too large to count in milliseconds).
    #[error("ERR timeout is negative")]
    TimeoutNegative,
    /// SINTERCARD numkeys beyond the arguments given.
    #[error("ERR Number of keys can't be greater than number of args")]
    NumkeysExceedArgs,
    /// SINTERCARD LIMIT negative or not a number.
    #[error("ERR LIMIT can't be negative")]
    LimitNegative,
    /// A score range bound that is not a number.
    #[error("ERR min or max is not a float")]
    MinMaxNotFloat,
    /// A lexicographical range bound of the wrong form.
    #[error("ERR min or max not valid string range item")]
    MinMaxNotString,
    /// A WEIGHTS value that is not a number.
    #[error("ERR weight value is not a float")]
    WeightNotFloat,
    /// ZADD NX with XX.
    #[error("ERR XX and NX options at the same time are not compatible")]
    ZaddXxNx,
    /// ZADD with two of NX, GT and LT.
    #[error("ERR GT, LT, and/or NX options at the same time are not compatible")]
    ZaddGtLtNx,
    /// ZADD INCR with several pairs.
    #[error("ERR INCR option supports a single increment-element pair")]
    ZaddIncrPairs,
    /// A score increment whose result is NaN.
    #[error("ERR resulting score is not a number (NaN)")]
    ScoreNan,
    /// ZRANGE by rank with LIMIT.
    #[error(
        "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
    )]
    LimitNeedsByScoreOrLex,
    /// ZRANGE BYLEX with WITHSCORES.
    #[error("ERR syntax error, WITHSCORES not supported in combination with BYLEX")]
    WithScoresWithByLex,
    /// ZUNION-style numkeys below 1 (the command's name in the text).
    #[error("ERR at least 1 input key is needed for '{0}' command")]
    NoInputKeys(String),
    /// SORT BY with a pattern whose keys may be outside the sorted key's partition.
    #[error("ERR BY option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.")]
    SortByDenied,
    /// SORT GET with a pattern whose keys may be outside the sorted key's partition.
    #[error("ERR GET option of SORT denied in Cluster mode when keys formed by the pattern may be in different slots.")]
    SortGetDenied,
    /// SORT of elements that are not numbers, without ALPHA.
    #[error("ERR One or more scores can't be converted into double")]
    SortNotDouble,
    /// OBJECT FREQ without an LFU eviction policy (zankv has none).
    #[error("ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.")]
    LfuNotSelected,
    /// SETBIT/GETBIT offset invalid.
    #[error("ERR bit offset is not an integer or out of range")]
    BitOffset,
    /// SETBIT value other than 0 or 1.
    #[error("ERR bit is not an integer or out of range")]
    BitValue,
    /// BITPOS bit other than 0 or 1.
    #[error("ERR The bit argument must be 1 or 0.")]
    BitArgument,
    /// BITOP NOT of more than one key.
    #[error("ERR BITOP NOT must be called with a single source key.")]
    BitOpNotOneKey,
    /// BITFIELD OVERFLOW with a mode other than WRAP, SAT or FAIL.
    #[error("ERR Invalid OVERFLOW type specified")]
    BitfieldOverflowType,
    /// BITFIELD with a type other than i1..i64 or u1..u63.
    #[error("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")]
    BitfieldType,
    /// BITFIELD_RO with SET or INCRBY.
    #[error("ERR BITFIELD_RO only supports the GET subcommand")]
    BitfieldReadOnly,
    /// A HyperLogLog command on a string that is not a sketch.
    #[error("WRONGTYPE Key is not a valid HyperLogLog string value.")]
    NotHll,
    /// A sketch whose registers are inconsistent.
    #[error("INVALIDOBJ Corrupted HLL object detected")]
    CorruptHll,
    /// A geo unit other than M, KM, FT or MI.
    #[error("ERR unsupported unit provided. please use M, KM, FT, MI")]
    GeoUnit,
    /// A position outside ±180 longitude, ±85.05112878 latitude (printed with `%f`).
    #[error("ERR invalid longitude,latitude pair {0},{1}")]
    GeoInvalidPosition(String, String),
    /// A radius, width or height that is not a number.
    #[error("ERR need numeric {0}")]
    GeoNeedNumeric(&'static str),
    /// A negative radius.
    #[error("ERR radius cannot be negative")]
    GeoRadiusNegative,
    /// BYBOX with a negative width or height.
    #[error("ERR height or width cannot be negative")]
    GeoBoxNegative,
    /// A search from a member the set does not have.
    #[error("ERR could not decode requested zset member")]
    GeoMemberUnknown,
    /// A search's COUNT below 1.
    #[error("ERR COUNT must be > 0")]
    GeoCountNotPositive,
    /// STORE (or GEOSEARCHSTORE) with WITHDIST, WITHHASH or WITHCOORD.
    #[error("ERR {0} is not compatible with WITHDIST, WITHHASH and WITHCOORD options")]
    GeoStoreWith(&'static str),
    /// GEOSEARCH without FROMMEMBER or FROMLONLAT (the command's name as sent).
    #[error("ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for {0}")]
    GeoNeedFrom(String),
    /// GEOSEARCH without BYRADIUS or BYBOX.
    #[error("ERR exactly one of BYRADIUS and BYBOX can be specified for {0}")]
    GeoNeedBy(String),
    /// ANY without COUNT.
    #[error("ERR the ANY argument requires COUNT argument")]
    GeoAnyNeedsCount,
    /// PFDEBUG of a missing key.
    #[error("ERR The specified key does not exist")]
    HllDebugNoKey,
    /// PFDEBUG DECODE of a dense sketch.
    #[error("ERR HLL encoding is not sparse")]
    HllNotSparse,
    /// PFDEBUG with another subcommand (as sent).
    #[error("ERR Unknown PFDEBUG subcommand '{0}'")]
    HllDebugUnknown(String),
    /// LCS of a key holding something other than a string.
    #[error("ERR The specified keys must contain string values")]
    LcsNotStrings,
    /// LCS with both LEN and IDX.
    #[error("ERR If you want both the length and indexes, please just use IDX.")]
    LcsLenAndIdx,
    /// LCS whose table would pass proto-max-bulk-len.
    #[error("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")]
    LcsTooLarge,
    /// SETRANGE with a negative offset.
    #[error("ERR offset is out of range")]
    OffsetOutOfRange,
    /// A string would grow past proto-max-bulk-len.
    #[error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")]
    StringTooLong,
    /// HINCRBY on a field that is not an integer.
    #[error("ERR hash value is not an integer")]
    HashNotInteger,
    /// HINCRBYFLOAT on a field that is not a float.
    #[error("ERR hash value is not a float")]
    HashNotFloat,
    /// SCAN-family cursor that is not an unsigned integer.
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// SELECT/COPY DB with an index this server does not have.
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    /// COPY of a key onto itself.
    #[error("ERR source and destination objects are the same")]
    SameObject,
    /// HELLO with a protocol version that is not a number.
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtocolVersionNotInteger,
    /// HELLO with a protocol version other than 2 or 3.
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    /// CLIENT SETNAME with spaces or special characters.
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    BadClientName,
    /// Authentication failed.
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// A command before AUTH on a server that requires a password.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// A key outside the namespace a connection's password is restricted to.
    #[error("NOPERM this user has no permissions to access one of the keys used as arguments")]
    NoPerm,
    /// A server command a namespace-restricted connection may not run.
    #[error("NOPERM this user has no permissions to run the '{0}' command")]
    NoPermCommand(String),
    /// HELLO without AUTH before authenticating.
    #[error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time")]
    HelloNoAuth,
    /// A write sent to a storage node whose connection failed before the reply: it may or
    /// may not have been applied, so the proxy does not send it again.
    #[error("TIMEOUT the connection to the storage node failed before the reply ({0}); the write may or may not have been applied")]
    WriteOutcomeUnknown(String),
    /// A keyless data command through the proxy that it has no way to combine over several
    /// partitions (the proxy combines DBSIZE, SCAN, KEYS, RANDOMKEY, FLUSHDB and FLUSHALL).
    #[error("ERR '{0}' needs every partition of the cluster, which the proxy does not combine for this command")]
    NotAcrossPartitions(String),
    /// `AUTH password` on a server without a password.
    #[error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")]
    AuthNotConfigured,
    /// Malformed request framing; the connection is closed after this reply.
    #[error("ERR Protocol error: {0}")]
    Protocol(String),
    /// The server is shutting down or a partition worker is gone.
    #[error("ERR server is shutting down")]
    ShuttingDown,
    /// The request reached a node that cannot serve it now: not the partition's leader, no
    /// leader elected yet, partition not hosted here, or a leader change dropped a write
    /// before it committed (so it was not applied). Smart clients and the proxy refresh their
    /// routing and retry; the text starts like ZanRedisDB's so its clients do too.
    #[error("ERR_CLUSTER_CHANGED: {0}")]
    ClusterChanged(String),
    /// The keys of one command belong to different partitions.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// A RESP2 connection with subscriptions sent a command other than the subscription
    /// commands, PING, QUIT and RESET.
    #[error("ERR Can't execute '{0}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")]
    SubscribedContext(String),
    /// CLIENT UNBLOCK with a reason other than TIMEOUT or ERROR.
    #[error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")]
    UnblockReason,
    /// The reply of a blocked client that CLIENT UNBLOCK ... ERROR ended.
    #[error("UNBLOCKED client unblocked via CLIENT UNBLOCK")]
    Unblocked,
    /// EVAL with a negative `numkeys`.
    #[error("ERR Number of keys can't be negative")]
    NumkeysNegative,
    /// EVAL with a `numkeys` past its arguments.
    #[error("ERR Number of keys can't be greater than number of args")]
    NumkeysOverArgs,
    /// EVALSHA of a script the server does not have.
    #[error("NOSCRIPT No matching script. Please use EVAL.")]
    NoScript,
    /// SCRIPT KILL with no script running.
    #[error("NOTBUSY No scripts in execution right now.")]
    NotBusy,
    /// SCRIPT KILL of a script that wrote already.
    #[error("UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.")]
    Unkillable,
    /// A command sent while a script (EVAL, ...) has run past `busy-reply-threshold`.
    #[error(
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    )]
    Busy,
    /// A command sent while a function (FCALL) has run past `busy-reply-threshold`.
    #[error(
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    )]
    BusyFunction,
    /// SCRIPT FLUSH with an option other than ASYNC or SYNC.
    #[error("ERR SCRIPT FLUSH only support SYNC|ASYNC option")]
    ScriptFlushOption,
    /// A script that is a shebang line without a line break.
    #[error("ERR Invalid script shebang")]
    ShebangInvalid,
    /// A script's shebang line names another engine than Lua.
    #[error("ERR Unexpected engine in script shebang: {0}")]
    ShebangEngine(String),
    /// A script's shebang line has a flag Redis does not know.
    #[error("ERR Unexpected flag in script shebang: {0}")]
    ShebangFlag(String),
    /// A script's shebang line has an option other than `flags=`.
    #[error("ERR Unknown lua shebang option: {0}")]
    ShebangOption(String),
    /// A script that does not compile.
    #[error("ERR Error compiling script (new function): {0}")]
    ScriptCompile(String),
    /// An error a script raised or returned, or one of `redis.call`'s: the text as Redis
    /// shapes it (its code first; for a raised one, the script and line it came from).
    #[error("{0}")]
    Script(String),
    /// FUNCTION FLUSH with an option other than ASYNC or SYNC.
    #[error("ERR FUNCTION FLUSH only supports SYNC|ASYNC option")]
    FunctionFlushOption,
    /// FUNCTION LOAD with an option other than REPLACE.
    #[error("ERR Unknown option given: {0}")]
    UnknownOptionGiven(String),
    /// FUNCTION LIST with an argument it does not take.
    #[error("ERR Unknown argument {0}")]
    UnknownArgument(String),
    /// FUNCTION RESTORE with a policy other than FLUSH, APPEND or REPLACE.
    #[error("ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.")]
    RestorePolicy,
    /// FUNCTION RESTORE of a payload that is not FUNCTION DUMP's.
    #[error("ERR DUMP payload version or checksum are wrong")]
    DumpPayload,
    /// A library's code without its `#!lua name=...` line.
    #[error("ERR Missing library metadata")]
    MissingLibraryMetadata,
    /// A library whose `#!` line does not end (no line break).
    #[error("ERR Invalid library metadata")]
    LibraryMetadataInvalid,
    /// FUNCTION LIST LIBRARYNAME without its pattern.
    #[error("ERR library name argument was not given")]
    LibraryNameArgMissing,
    /// FCALL or FCALL_RO with a `numkeys` that is not a number.
    #[error("ERR Bad number of keys provided")]
    BadNumberOfKeys,
    /// FUNCTION RESTORE APPEND of a library whose name is in use (Redis words it without
    /// quotes there).
    #[error("ERR Library {0} already exists")]
    LibraryExistsRestore(String),
    /// A library's `#!lua` line without `name=`.
    #[error("ERR Library name was not given")]
    LibraryNameMissing,
    /// A library's `#!` line naming an engine other than Lua.
    #[error("ERR Engine '{0}' not found")]
    EngineNotFound(String),
    /// A library's `#!lua` line with `name=` twice.
    #[error("ERR Invalid metadata value, name argument was given multiple times")]
    LibraryNameTwice,
    /// A library or function name with other characters than letters, digits and `_`.
    #[error("ERR Library names can only contain letters, numbers, or underscores(_) and must be at least one character long")]
    LibraryNameInvalid,
    /// A library's `#!lua` line with an option other than `name=`.
    #[error("ERR Invalid metadata value given: {0}")]
    LibraryMetadata(String),
    /// A library's code that does not compile.
    #[error("ERR Error compiling function: {0}")]
    FunctionCompile(String),
    /// A library whose code failed while registering its functions (the reason follows).
    #[error("ERR Error registering functions: {0}")]
    RegisteringFunctions(String),
    /// A library that registers no function.
    #[error("ERR No functions registered")]
    NoFunctionsRegistered,
    /// FUNCTION LOAD (without REPLACE) or RESTORE APPEND of a library name in use.
    #[error("ERR Library '{0}' already exists")]
    LibraryExists(String),
    /// A library registering a function another library has.
    #[error("ERR Function {0} already exists")]
    FunctionExists(String),
    /// FUNCTION DELETE of a library that does not exist.
    #[error("ERR Library not found")]
    LibraryNotFound,
    /// A script or function flagged `no-cluster`: zankv is a cluster.
    #[error("ERR Can not run script on cluster, 'no-cluster' flag is set.")]
    NoClusterFlag,
    /// FCALL of a function no library registered.
    #[error("ERR Function not found")]
    FunctionNotFound,
    /// FCALL_RO of a function without the `no-writes` flag.
    #[error("ERR Can not execute a script with write flag using *_ro command.")]
    WriteFunctionReadOnly,
    /// EVAL or SCRIPT queued in MULTI: a transaction is replayed by every replica, a
    /// script runs on the partition leader only.
    #[error("ERR scripts cannot run inside MULTI on zankv; run the script on its own")]
    ScriptInMulti,
    /// MULTI inside MULTI.
    #[error("ERR MULTI calls can not be nested")]
    MultiNested,
    /// EXEC outside MULTI.
    #[error("ERR EXEC without MULTI")]
    ExecWithoutMulti,
    /// DISCARD outside MULTI.
    #[error("ERR DISCARD without MULTI")]
    DiscardWithoutMulti,
    /// WATCH inside MULTI.
    #[error("ERR WATCH inside MULTI is not allowed")]
    WatchInMulti,
    /// EXEC of a transaction in which a command was refused while queueing.
    #[error("EXECABORT Transaction discarded because of previous errors.")]
    ExecAbort,
    /// A keyless data command (DBSIZE, SCAN, KEYS, ...) sent to a node that hosts several
    /// partitions: only the proxy can combine them.
    #[error("ERR this command has no key and this node hosts several partitions; send it through the proxy")]
    KeylessOnManyPartitions,
    /// A write whose commit was not confirmed in time: it may or may not have been applied,
    /// so it must not be retried blindly.
    #[error(
        "TIMEOUT the write was not confirmed within {0} ms; it may or may not have been applied"
    )]
    WriteTimeout(u64),
    /// A write proposed on a replica that stopped hosting its partition (it was moved or
    /// removed) before the write was confirmed: it may or may not have been applied, so it
    /// must not be retried blindly.
    #[error("TIMEOUT the partition left this node before the write was confirmed; it may or may not have been applied")]
    WriteAbandoned,
    /// A write whose replicated form exceeds the node's limit on raft entries.
    #[error("ERR the write is {0} bytes, over the {1} bytes one replicated write may take (raft.max_entry_mb)")]
    WriteTooLarge(usize, usize),
    /// Storage failure that is not the client's fault (disk error, corruption). The text is
    /// meant for operators; the request was not applied.
    #[error("ERR internal error: {0}")]
    Internal(String),
}

impl CommandError {
    /// Builds the unknown-command error the way Redis 7.0 quotes the name and the first
    /// arguments (each truncated to 128 bytes, at most as many as fit in 128 characters).
    pub fn unknown_command(name: &[u8], args: &[bytes::Bytes]) -> Self {
        let mut quoted = String::new();
        for arg in args {
            if quoted.len() >= 128 {
                break;
            }
            let shown = &arg[..arg.len().min(128 - quoted.len())];
            quoted.push('\'');
            quoted.push_str(&sanitize(shown));
            quoted.push_str("' ");
        }
        CommandError::UnknownCommand {
            name: sanitize(&name[..name.len().min(128)]),
            args: quoted,
        }
    }

    /// Whether the connection must be closed after replying (protocol errors).
    pub fn closes_connection(&self) -> bool {
        matches!(self, CommandError::Protocol(_))
    }
}

/// Redis formats echoed names as C strings (so they end at the first NUL byte) and replaces
/// CR and LF with spaces, so the error stays one line. Non-UTF-8 bytes are shown lossily.
fn sanitize(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end])
        .chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn unknown_command_text_matches_redis() {
        let err = CommandError::unknown_command(
            b"foo",
            &[Bytes::from_static(b"a"), Bytes::from_static(b"b")],
        );
        assert_eq!(
            err.to_string(),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        let err = CommandError::unknown_command(b"foo", &[]);
        assert_eq!(
            err.to_string(),
            "ERR unknown command 'foo', with args beginning with: "
        );
    }

    #[test]
    fn arity_text_matches_redis() {
        assert_eq!(
            CommandError::WrongArity("get".into()).to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
    }
}

#[cfg(test)]
mod docs_table {
    use super::CommandError as E;

    /// One example of every variant. The match below fails to compile when a variant is
    /// added without an example here (and so without a row in docs/errors.md).
    fn examples() -> Vec<E> {
        let all = vec![
            E::unknown_command(b"foo", &[bytes::Bytes::from_static(b"a")]),
            E::UnknownSubcommand {
                sub: "x".into(),
                command: "CLIENT",
            },
            E::WrongArity("get".into()),
            E::ConfigUnknownOption("foo".into()),
            E::ConfigSetFailed("databases".into(), "can't set immutable config".into()),
            E::NoConfigFile,
            E::ClusterDisabled,
            E::GetKeysUnknownCommand,
            E::GetKeysArity,
            E::GetKeysBadArguments,
            E::GetKeysNoKeys,
            E::SlowlogCount,
            E::NoSuchClient,
            E::ClientIdNotPositive,
            E::InvalidClientId,
            E::UnknownClientType("foo".into()),
            E::SubcommandArgs {
                sub: "GET".into(),
                command: "SLOWLOG",
            },
            E::Syntax,
            E::WrongType,
            E::NotInteger,
            E::NotFloat,
            E::OutOfRange,
            E::OutOfRangeBetween(-9223372036854775807, 9223372036854775807),
            E::NanOrInfinityArgument,
            E::HelloOption("x".into()),
            E::Overflow,
            E::DecrementOverflow,
            E::NanOrInfinity,
            E::NoSuchKey,
            E::InvalidExpireTime("set"),
            E::UnsupportedOption("x".into()),
            E::ExpireNxConflict,
            E::ExpireGtLtConflict,
            E::MustBePositive,
            E::IndexOutOfRange,
            E::RankZero,
            E::CountNegative,
            E::MaxlenNegative,
            E::CountNotPositive,
            E::NumkeysNotPositive,
            E::TimeoutNotFloat,
            E::TimeoutNegative,
            E::NumkeysExceedArgs,
            E::LimitNegative,
            E::MinMaxNotFloat,
            E::MinMaxNotString,
            E::WeightNotFloat,
            E::ZaddXxNx,
            E::ZaddGtLtNx,
            E::ZaddIncrPairs,
            E::ScoreNan,
            E::LimitNeedsByScoreOrLex,
            E::WithScoresWithByLex,
            E::NoInputKeys("zunionstore".into()),
            E::SortByDenied,
            E::SortGetDenied,
            E::SortNotDouble,
            E::LfuNotSelected,
            E::BitOffset,
            E::BitValue,
            E::BitArgument,
            E::BitOpNotOneKey,
            E::GeoUnit,
            E::GeoInvalidPosition("200.000000".into(), "100.000000".into()),
            E::GeoNeedNumeric("radius"),
            E::GeoRadiusNegative,
            E::GeoBoxNegative,
            E::GeoMemberUnknown,
            E::GeoCountNotPositive,
            E::GeoStoreWith("GEOSEARCHSTORE"),
            E::GeoNeedFrom("geosearch".into()),
            E::GeoNeedBy("geosearch".into()),
            E::GeoAnyNeedsCount,
            E::NotHll,
            E::HllDebugNoKey,
            E::HllNotSparse,
            E::HllDebugUnknown("foo".into()),
            E::CorruptHll,
            E::BitfieldOverflowType,
            E::BitfieldType,
            E::BitfieldReadOnly,
            E::LcsNotStrings,
            E::LcsLenAndIdx,
            E::LcsTooLarge,
            E::OffsetOutOfRange,
            E::StringTooLong,
            E::HashNotInteger,
            E::HashNotFloat,
            E::InvalidCursor,
            E::DbIndexOutOfRange,
            E::SameObject,
            E::ProtocolVersionNotInteger,
            E::NoProto,
            E::BadClientName,
            E::WrongPass,
            E::NoAuth,
            E::HelloNoAuth,
            E::NoPerm,
            E::NoPermCommand("config|set".into()),
            E::WriteOutcomeUnknown("writing: broken pipe".into()),
            E::WriteAbandoned,
            E::NotAcrossPartitions("dbsize".into()),
            E::AuthNotConfigured,
            E::Protocol("invalid bulk length".into()),
            E::ShuttingDown,
            E::ClusterChanged(
                "not leader of default-0, leader is node 2 at 127.0.0.1:22381".into(),
            ),
            E::CrossSlot,
            E::SubscribedContext("get".into()),
            E::UnblockReason,
            E::Unblocked,
            E::NumkeysNegative,
            E::NumkeysOverArgs,
            E::NoScript,
            E::NotBusy,
            E::Unkillable,
            E::Busy,
            E::BusyFunction,
            E::ScriptFlushOption,
            E::ShebangInvalid,
            E::ShebangEngine("#!python".into()),
            E::ShebangFlag("bogus".into()),
            E::ShebangOption("name=x".into()),
            E::ScriptCompile("user_script:1: '=' expected near '1'".into()),
            E::FunctionFlushOption,
            E::UnknownOptionGiven("foo".into()),
            E::UnknownArgument("foo".into()),
            E::RestorePolicy,
            E::DumpPayload,
            E::MissingLibraryMetadata,
            E::LibraryNameMissing,
            E::LibraryMetadataInvalid,
            E::LibraryNameArgMissing,
            E::BadNumberOfKeys,
            E::LibraryExistsRestore("liba".into()),
            E::LibraryMetadata("foo=y".into()),
            E::EngineNotFound("python".into()),
            E::LibraryNameTwice,
            E::LibraryNameInvalid,
            E::FunctionCompile("user_function:2: '=' expected near '1'".into()),
            E::RegisteringFunctions("ERR unknown flag given".into()),
            E::NoFunctionsRegistered,
            E::LibraryExists("lib1".into()),
            E::FunctionExists("f1".into()),
            E::LibraryNotFound,
            E::FunctionNotFound,
            E::NoClusterFlag,
            E::WriteFunctionReadOnly,
            E::ScriptInMulti,
            E::MultiNested,
            E::ExecWithoutMulti,
            E::DiscardWithoutMulti,
            E::WatchInMulti,
            E::ExecAbort,
            E::KeylessOnManyPartitions,
            E::WriteTimeout(10000),
            E::WriteTooLarge(70000000, 67108864),
            E::Internal("x".into()),
        ];
        for e in &all {
            match e {
                E::UnknownCommand { .. }
                | E::UnknownSubcommand { .. }
                | E::WrongArity(_)
                | E::ConfigUnknownOption(_)
                | E::ConfigSetFailed(..)
                | E::NoConfigFile
                | E::ClusterDisabled
                | E::GetKeysUnknownCommand
                | E::GetKeysArity
                | E::GetKeysBadArguments
                | E::GetKeysNoKeys
                | E::SlowlogCount
                | E::NoSuchClient
                | E::ClientIdNotPositive
                | E::InvalidClientId
                | E::UnknownClientType(_)
                | E::SubcommandArgs { .. }
                | E::Syntax
                | E::WrongType
                | E::NotInteger
                | E::NotFloat
                | E::OutOfRange
                | E::OutOfRangeBetween(..)
                | E::NanOrInfinityArgument
                | E::HelloOption(_)
                | E::Overflow
                | E::DecrementOverflow
                | E::NanOrInfinity
                | E::NoSuchKey
                | E::InvalidExpireTime(_)
                | E::UnsupportedOption(_)
                | E::ExpireNxConflict
                | E::ExpireGtLtConflict
                | E::MustBePositive
                | E::IndexOutOfRange
                | E::RankZero
                | E::CountNegative
                | E::MaxlenNegative
                | E::CountNotPositive
                | E::NumkeysNotPositive
                | E::TimeoutNotFloat
                | E::TimeoutNegative
                | E::NumkeysExceedArgs
                | E::LimitNegative
                | E::MinMaxNotFloat
                | E::MinMaxNotString
                | E::WeightNotFloat
                | E::ZaddXxNx
                | E::ZaddGtLtNx
                | E::ZaddIncrPairs
                | E::ScoreNan
                | E::LimitNeedsByScoreOrLex
                | E::WithScoresWithByLex
                | E::NoInputKeys(_)
                | E::SortByDenied
                | E::SortGetDenied
                | E::SortNotDouble
                | E::LfuNotSelected
                | E::BitOffset
                | E::BitValue
                | E::BitArgument
                | E::BitOpNotOneKey
                | E::GeoUnit
                | E::GeoInvalidPosition(..)
                | E::GeoNeedNumeric(_)
                | E::GeoRadiusNegative
                | E::GeoBoxNegative
                | E::GeoMemberUnknown
                | E::GeoCountNotPositive
                | E::GeoStoreWith(_)
                | E::GeoNeedFrom(_)
                | E::GeoNeedBy(_)
                | E::GeoAnyNeedsCount
                | E::NotHll
                | E::HllDebugNoKey
                | E::HllNotSparse
                | E::HllDebugUnknown(_)
                | E::CorruptHll
                | E::BitfieldOverflowType
                | E::BitfieldType
                | E::BitfieldReadOnly
                | E::LcsNotStrings
                | E::LcsLenAndIdx
                | E::LcsTooLarge
                | E::OffsetOutOfRange
                | E::StringTooLong
                | E::HashNotInteger
                | E::HashNotFloat
                | E::InvalidCursor
                | E::DbIndexOutOfRange
                | E::SameObject
                | E::ProtocolVersionNotInteger
                | E::NoProto
                | E::BadClientName
                | E::WrongPass
                | E::NoAuth
                | E::HelloNoAuth
                | E::NoPerm
                | E::NoPermCommand(_)
                | E::WriteOutcomeUnknown(_)
                | E::WriteAbandoned
                | E::NotAcrossPartitions(_)
                | E::AuthNotConfigured
                | E::Protocol(_)
                | E::ShuttingDown
                | E::ClusterChanged(_)
                | E::CrossSlot
                | E::SubscribedContext(_)
                | E::UnblockReason
                | E::Unblocked
                | E::NumkeysNegative
                | E::NumkeysOverArgs
                | E::NoScript
                | E::NotBusy
                | E::Unkillable
                | E::Busy
                | E::BusyFunction
                | E::ScriptFlushOption
                | E::ShebangInvalid
                | E::ShebangEngine(_)
                | E::ShebangFlag(_)
                | E::ShebangOption(_)
                | E::ScriptCompile(_)
                | E::Script(_)
                | E::FunctionFlushOption
                | E::UnknownOptionGiven(_)
                | E::UnknownArgument(_)
                | E::RestorePolicy
                | E::DumpPayload
                | E::MissingLibraryMetadata
                | E::LibraryNameMissing
                | E::LibraryMetadataInvalid
                | E::LibraryNameArgMissing
                | E::BadNumberOfKeys
                | E::LibraryExistsRestore(_)
                | E::LibraryMetadata(_)
                | E::EngineNotFound(_)
                | E::LibraryNameTwice
                | E::LibraryNameInvalid
                | E::FunctionCompile(_)
                | E::RegisteringFunctions(_)
                | E::NoFunctionsRegistered
                | E::LibraryExists(_)
                | E::FunctionExists(_)
                | E::LibraryNotFound
                | E::FunctionNotFound
                | E::NoClusterFlag
                | E::WriteFunctionReadOnly
                | E::ScriptInMulti
                | E::MultiNested
                | E::ExecWithoutMulti
                | E::DiscardWithoutMulti
                | E::WatchInMulti
                | E::ExecAbort
                | E::KeylessOnManyPartitions
                | E::WriteTimeout(_)
                | E::WriteTooLarge(..)
                | E::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_error_text_is_documented() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/errors.md"))
                .expect("docs/errors.md");
        for e in examples() {
            let text = e.to_string();
            assert!(
                doc.contains(&format!("`{text}`")),
                "docs/errors.md lacks `{text}`"
            );
        }
    }
}
