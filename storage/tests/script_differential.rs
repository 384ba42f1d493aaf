//! Lua scripting against `redis-server` 7.0, on a storage node and through the proxy,
//! compared reply by reply in RESP2 and RESP3: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO,
//! SCRIPT LOAD/EXISTS/FLUSH/KILL, and Redis 7's functions (FUNCTION
//! LOAD/DELETE/FLUSH/LIST/DUMP/RESTORE/STATS/KILL/HELP, FCALL, FCALL_RO).
//!
//! Scripted scenarios, each on emptied databases, emptied script caches and no libraries
//! of functions, every one run with the client in RESP2 and again after HELLO 3:
//! - conversions: what a script returns (integers, floats truncated, strings, booleans,
//!   nil, nested arrays stopping at the first nil, `{ok=...}`, `{err=...}`,
//!   `{double=...}`, `{big_number=...}`, `{map=...}`, `{set=...}`,
//!   `{verbatim_string=...}`, and tables whose field has the wrong type), in the script's
//!   default RESP2 and after `redis.setresp(3)`; what `redis.call` hands the script for
//!   strings, hashes (HGETALL), sorted sets (ZSCORE, ZRANGE WITHSCORES), lists, sets, MGET
//!   with a hole, status replies and missing keys, in both of the script's protocols; the
//!   libraries a script may use (`bit`, `string`, `table`, `math`, `loadstring`), and
//!   `struct`: packing every option (endianness, `!` alignment of widths that are no power
//!   of two too, integers of 1 to 12 bytes, numbers out of range and NaN, floats, `c0`,
//!   `s`), unpacking (sign extension, `c0` after a number or a numeric string, a start
//!   position, NaN and infinities through `tostring`, a packed value stored and read back),
//!   `size`, and nearly as many results as Lua lets a C function return.
//! - errors: raised (`error('x')`, `error({err=...})`, `error(redis.error_reply(...))`,
//!   `error()`, `error(42)`, runtime errors, with the line of a multi-line script, inside
//!   a local function too), caught (`pcall`, `xpcall`, `pcall(redis.call, ...)` giving the
//!   error's text), met in `redis.call` and `redis.pcall` (unknown command, wrong arity,
//!   arguments that are tables, booleans or nil, WRONGTYPE, the command's own errors),
//!   returned (`redis.error_reply` and `redis.status_reply` with empty, `-CODE`, code-less
//!   and non-string arguments); compile errors (EVAL and SCRIPT LOAD); `numkeys` errors;
//!   shebang lines (`#!lua`, `flags=no-writes` and a write, unknown flags, engines and
//!   options); EVAL_RO with a write; the commands a script may not run (BLPOP, BRPOPLPUSH,
//!   MULTI, EXEC, WATCH, EVAL, EVALSHA, SCRIPT, SUBSCRIBE, UNSUBSCRIBE, CLIENT, HELLO); the
//!   sandbox (assigning a global, `_G.x`, `rawset(_G, ...)`, `setmetatable(_G, ...)`,
//!   writing into a library, reading an undefined global, `os`, `print`, `dofile`); the
//!   argument checks of `redis.log`, `redis.setresp`, `redis.sha1hex` and
//!   `redis.set_repl`; `struct`'s errors (invalid options, integral sizes, alignments,
//!   arguments missing or of the wrong type and how the function was named, data too
//!   short, `c0` without a size, too many results, writing into the library).
//! - the script cache: EVAL then EVALSHA of its SHA1 in lower and upper case, EVAL_RO
//!   caching too, EVALSHA and EVALSHA_RO of unknown names (NOSCRIPT), a body that does not
//!   compile is not cached, SCRIPT LOAD and SCRIPT EXISTS of several names (cached and
//!   not, mixed case), SCRIPT FLUSH without an option, ASYNC, SYNC and a bad option (which
//!   keeps the cache), EVALSHA after it (NOSCRIPT), SCRIPT KILL with nothing running
//!   (NOTBUSY), SCRIPT's arity errors and unknown subcommands.
//! - effects: a script writing keys of every type (SET, INCR, RPUSH, HSET, SADD, ZADD,
//!   DEL, EXPIRE with relative times, PERSIST, HDEL, LPOP) read back with plain commands
//!   (TTL too); a script that fails halfway keeps its earlier writes, as Redis does,
//!   whether a command, the Lua code or `error()` stops it, and `redis.pcall` lets it go on
//!   past a failed write; read-only scripts write nothing; scripts read their own writes.
//! - function loading: FUNCTION LOAD's first line (no `#!`, another engine, `name=`
//!   missing, twice or invalid, unknown metadata, the engine's name in any case), compile
//!   errors at the library's lines, registration errors (bad function names, a callback
//!   that is no function, unknown flags, flags that are no table, the table form's unknown
//!   keys and missing name or callback, wrong argument counts, a function registered
//!   twice), what the loading sandbox refuses (`redis.call`, `redis.pcall`,
//!   `redis.error_reply`, `redis.setresp`, `error`, `string`, `math`, `_G`, `KEYS`,
//!   assignments), runtime errors and the timeout while loading, no functions registered;
//!   what loads (numeric names, descriptions, every flag, `redis.log` and the version while
//!   loading, functions registered in a loop); LOAD against LOAD REPLACE, `Library 'x'
//!   already exists`, `Function f already exists` across libraries, a failed replacement
//!   keeping the library it would have replaced.
//! - FCALL: the callback's keys and arguments, what it returns (conversions, status and
//!   error replies, `redis.setresp(3)`, the libraries it may use), the library's local
//!   helpers called by a callback (seeing `redis.call` and the other script globals at run
//!   time, failing as a callback would), errors raised in a function (`KEYS` and `ARGV`
//!   are no globals there; `script: <function>, on @user_function:<line>.`), FCALL_RO of
//!   a function not flagged `no-writes`, FCALL of a `no-writes` function that writes,
//!   `Function not found`, `numkeys` errors.
//! - function management: FUNCTION DELETE (of a missing library too), FUNCTION FLUSH
//!   without an option, ASYNC, SYNC and a bad option (which keeps the libraries), FLUSHALL
//!   keeping them, FUNCTION LIST with LIBRARYNAME patterns and WITHCODE and its argument
//!   errors, FUNCTION STATS with nothing running, FUNCTION KILL with nothing running
//!   (NOTBUSY), FUNCTION HELP, and the arity errors of the subcommands.
//! - function effects: functions writing keys of every type read back with plain commands,
//!   a function failing halfway keeping its earlier writes.
//! - dumps: FUNCTION DUMP, FLUSH, then RESTORE with the default APPEND, APPEND onto the
//!   same libraries (refused, nothing changed), REPLACE, REPLACE refused whole when another
//!   library has one of the payload's functions, FLUSH, a bad policy, payloads that are
//!   garbage or cut short; and across the two systems: redis-server's payload restored
//!   into zankv and zankv's into redis-server, then FCALL on both.
//!
//! Known differences from redis-server in functions (edge cases of FUNCTION LOAD's first
//! line and of `redis.register_function`'s errors, the order and repetition of flags,
//! function names and LIBRARYNAME patterns ignoring case in Redis, a few error texts) are
//! scenarios of their own in [`EDGE_CASES`], run on a node by
//! `function_edge_cases_match_redis_on_a_node`, which fails, listing them, until zankv
//! answers as Redis does.
//!
//! A scenario stops at its first difference (what follows may depend on it); the others
//! still run, and the test then fails listing every scenario's first difference.
//!
//! Seeded random sequences mix a few script templates (a rate-limiting counter with a cap
//! and an expiration, a lock taken with SET NX EX and released by compare-and-delete,
//! LPUSH + LTRIM, HINCRBY, ZADD + ZRANGE in RESP2 and in RESP3, a read-only inspection
//! sent with EVAL_RO, a string moved to a list, a keyless script) sent as EVAL, EVALSHA
//! (lower or upper case), EVAL_RO or EVALSHA_RO, with SCRIPT LOAD and SCRIPT FLUSH now and
//! then, over a few keys, interleaved with plain commands (GET, SET, DEL, LRANGE, HGETALL,
//! ZRANGE WITHSCORES, TTL, EXPIRE, TYPE), and end with a comparison of the two databases.
//! `ZANKV_DIFF_SEED=N` runs only seed N; `ZANKV_DIFF_STATS=1` prints what ran.
//!
//! Compared as sets or maps where the order is Redis's hash tables' or Lua's: SMEMBERS,
//! HGETALL, `{set=...}` and `{map=...}` with several elements. TTL may be 1 s apart (each
//! server counts from its own clock). FUNCTION LIST is compared with its libraries, and
//! each library's functions, sorted by name (Redis lists both in its hash tables' order;
//! zankv lists libraries by name and functions in registration order). FUNCTION DUMP's
//! payloads are compared only when there is no library (redis-server LZF-compresses long
//! code and orders libraries by its hash table): each side's payload is restored into the
//! same side, or into the other.
//!
//! Every key a script touches is passed in KEYS. The node's standalone namespace and the
//! proxy's namespace have one partition each (as in the other differential tests), so a
//! keyless script runs where the keyed ones do and scripts over several keys need no hash
//! tags.
//!
//! Not compared (known differences, or not deterministic): SCRIPT HELP (zankv has no
//! SCRIPT DEBUG), `redis.call('select', 1)` (zankv has only database 0), the `cjson` and
//! `cmsgpack` libraries' encodings at large (only their errors and limits are compared),
//! `struct.unpack` of the last two results below Lua's limit (which zankv refuses),
//! `error({x=1})` (which crashes redis-server 7.0),
//! SCRIPT KILL of a running script and BUSY (timing), what `redis.log` writes,
//! `math.random`, `redis.call('time')`, `redis.REDIS_VERSION`, and scripts inside MULTI;
//! for functions, FUNCTION STATS and FUNCTION KILL while a function runs (timing), the
//! value of `redis.REDIS_VERSION_NUM` (zankv says 7.0.0), and FCALL of a function flagged
//! `no-cluster` (which zankv, a cluster, refuses, and a standalone redis-server runs).

mod support;

use std::time::Instant;

use support::diff::{
    b, compare_final_state, must_start_pair_on, seeds, sorted_items, sorted_pairs, Pair, Rand,
    RunLog, Suite, Target,
};
use support::{show_cmd, Client, Frame};
use Norm::{Dumped, Exact, Failed, Items, Libraries, Pairs, Ttl};

/// How two replies to the same command are compared.
#[derive(Clone, Copy)]
enum Norm {
    /// Exactly.
    Exact,
    /// As sets: the elements of an array or set reply sorted first.
    Items,
    /// As maps: the pairs of a map or a flat field/value array sorted first.
    Pairs,
    /// As TTLs: two integers both ≥ 0 may be 1 apart; anything else exactly.
    Ttl,
    /// As FUNCTION LIST: its libraries, and each library's functions, sorted by name first.
    Libraries,
    /// As FUNCTION DUMP's payload: both bulk strings, not compared; each side's is kept for
    /// the scenario's later [`OWN_DUMP`], [`OTHER_DUMP`] and [`CUT_DUMP`].
    Dumped,
    /// As a refusal: both errors, whatever their texts (where zankv's text differs, a
    /// scenario of [`EDGE_CASES`] compares it).
    Failed,
}

/// One step of a scenario: a command sent alike to both servers, and how its replies are
/// compared.
type Step = (Norm, &'static [&'static str]);

/// A scenario: its name and steps. Each starts on emptied databases and script caches, and
/// with no libraries of functions.
type Scenario = (&'static str, &'static [Step]);

/// The SHA1 of `return 1`.
const SHA_RETURN_1: &str = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";

const CONVERSIONS: &[Scenario] = &[
    (
        "return values in the script's default RESP2",
        &[
            (Exact, &["EVAL", "return 42", "0"]),
            (Exact, &["EVAL", "return 3.7", "0"]),
            (Exact, &["EVAL", "return -3.9", "0"]),
            (Exact, &["EVAL", "return 3.0", "0"]),
            (Exact, &["EVAL", "return -0.0", "0"]),
            (Exact, &["EVAL", "return 1e300", "0"]),
            (Exact, &["EVAL", "return 9007199254740993", "0"]),
            (Exact, &["EVAL", "return tonumber(ARGV[1]) * 2", "0", "21"]),
            (Exact, &["EVAL", "return 'hello'", "0"]),
            (Exact, &["EVAL", "return ''", "0"]),
            (Exact, &["EVAL", "return '3.7'", "0"]),
            (Exact, &["EVAL", "return tostring(3.7)", "0"]),
            (Exact, &["EVAL", "return ARGV[1]", "0", "a\u{0}b\r\nc"]),
            (Exact, &["EVAL", "return true", "0"]),
            (Exact, &["EVAL", "return false", "0"]),
            (Exact, &["EVAL", "return nil", "0"]),
            (Exact, &["EVAL", "return", "0"]),
            (Exact, &["EVAL", "local x = 1", "0"]),
            (Exact, &["EVAL", "return {1, 2, 3.7, 'x', nil, 4}", "0"]),
            (Exact, &["EVAL", "return {1, {2, {3, nil, 5}}, 'z'}", "0"]),
            (Exact, &["EVAL", "return {true, false, 'after false'}", "0"]),
            (Exact, &["EVAL", "return {}", "0"]),
            (Exact, &["EVAL", "return {a = 1}", "0"]),
            (Exact, &["EVAL", "return {1, 2, a = 3}", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return {KEYS[1], ARGV[1], ARGV[2], #KEYS, #ARGV}",
                    "1",
                    "k",
                    "a1",
                    "a2",
                ],
            ),
            (Exact, &["EVAL", "return {#KEYS, #ARGV}", "0"]),
            (Exact, &["EVAL", "return KEYS[2]", "1", "k", "a"]),
            (Exact, &["eval", "return 'lower case'", "0"]),
        ],
    ),
    (
        "status, error, double, big number, map, set and verbatim tables",
        &[
            (Exact, &["EVAL", "return {ok='fine'}", "0"]),
            (Exact, &["EVAL", "return {ok=''}", "0"]),
            (Exact, &["EVAL", "return {err='MY own error'}", "0"]),
            (Exact, &["EVAL", "return {err='nocode'}", "0"]),
            (Exact, &["EVAL", "return {ok='a', err='b'}", "0"]),
            (Exact, &["EVAL", "return {ok=5}", "0"]),
            (Exact, &["EVAL", "return {err=5}", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return {1, 'two', {3, 'four'}, {ok='five'}, {err='SIX seven'}}",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "return {double=3.5}", "0"]),
            (Exact, &["EVAL", "return {double=3}", "0"]),
            (Exact, &["EVAL", "return {double=-2.5}", "0"]),
            (Exact, &["EVAL", "return {double=0.1}", "0"]),
            (Exact, &["EVAL", "return {double=1e20}", "0"]),
            (Exact, &["EVAL", "return {double=1/0}", "0"]),
            (Exact, &["EVAL", "return {double=-1/0}", "0"]),
            (Exact, &["EVAL", "return {double='2.5'}", "0"]),
            (Exact, &["EVAL", "return {big_number='123'}", "0"]),
            (
                Exact,
                &["EVAL", "return {big_number='-12345678901234567890'}", "0"],
            ),
            (Exact, &["EVAL", "return {big_number=123}", "0"]),
            (Exact, &["EVAL", "return {map={a=1}}", "0"]),
            (Pairs, &["EVAL", "return {map={a=1, b='two', c={1, 2}}}", "0"]),
            (Exact, &["EVAL", "return {map={}}", "0"]),
            (Exact, &["EVAL", "return {map={[1]='one'}}", "0"]),
            (Exact, &["EVAL", "return {set={a=true}}", "0"]),
            (Items, &["EVAL", "return {set={a=true, b=true, c=false}}", "0"]),
            (Exact, &["EVAL", "return {set={}}", "0"]),
            (Exact, &["EVAL", "return {set={[2]=true}}", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return {verbatim_string={format='txt', string='hi'}}",
                    "0",
                ],
            ),
            (
                Exact,
                &["EVAL", "return {1, {double=2.5}, {map={k={set={x=true}}}}}", "0"],
            ),
        ],
    ),
    (
        "return values after redis.setresp(3)",
        &[
            (Exact, &["EVAL", "redis.setresp(3) return true", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return false", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return nil", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return 7.9", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return {1, true, false, 'z'}", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return {double=0.1}", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return {big_number='123'}", "0"]),
            (Pairs, &["EVAL", "redis.setresp(3) return {map={a=1, b=2}}", "0"]),
            (Items, &["EVAL", "redis.setresp(3) return {set={x=true, y=true}}", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return {ok='status'}", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return {err='E3 error'}", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) redis.setresp(2) return true", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) redis.setresp(2) return false", "0"]),
        ],
    ),
    (
        "libraries a script may use",
        &[
            (Exact, &["EVAL", "return bit.band(0xff, 0x0f)", "0"]),
            (Exact, &["EVAL", "return bit.bor(1, 2, 4)", "0"]),
            (Exact, &["EVAL", "return bit.tohex(255)", "0"]),
            (Exact, &["EVAL", "return string.format('%d-%s', 5, 'x')", "0"]),
            (Exact, &["EVAL", "return string.rep('ab', 3)", "0"]),
            (Exact, &["EVAL", "return {string.byte('A'), string.char(66)}", "0"]),
            (Exact, &["EVAL", "return string.upper(ARGV[1])", "0", "abc"]),
            (Exact, &["EVAL", "return table.concat({'a', 'b'}, ',')", "0"]),
            (Exact, &["EVAL", "return math.floor(2.7)", "0"]),
            (Exact, &["EVAL", "return math.max(3, 9, 4)", "0"]),
            (Exact, &["EVAL", "return loadstring('return 1')()", "0"]),
            (
                Exact,
                &["EVAL", "local f = loadstring('return ...') return f(7)", "0"],
            ),
            (Exact, &["EVAL", "return loadstring('x=')", "0"]),
            (Exact, &["EVAL", "return type(loadstring)", "0"]),
            (Exact, &["EVAL", "return type(redis.call)", "0"]),
        ],
    ),
    (
        "the struct library: pack, unpack and size",
        &[
            (Exact, &["EVAL", "return struct.pack('>I2', 258)", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return struct.pack('<i4 >h b B', -2, 513, -1, 255)",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "return struct.pack('<L', -1)", "0"]),
            (Exact, &["EVAL", "return struct.pack('<i9', -1)", "0"]),
            // Numbers out of range, NaN and fractions, as C converts them.
            (Exact, &["EVAL", "return struct.pack('I', 1e20)", "0"]),
            (Exact, &["EVAL", "return struct.pack('<L', 0/0)", "0"]),
            (
                Exact,
                &["EVAL", "return struct.pack('<L', 2^63 + 2^62)", "0"],
            ),
            (
                Exact,
                &["EVAL", "return struct.pack('<b b B', 3.7, -3.7, 256)", "0"],
            ),
            (
                Exact,
                &["EVAL", "return struct.pack('B', ARGV[1])", "0", "12"],
            ),
            // Alignment, of widths that are no power of two too.
            (Exact, &["EVAL", "return struct.pack('!4 b i', 1, 2)", "0"]),
            (Exact, &["EVAL", "return struct.pack('!b d', 1, 2)", "0"]),
            (Exact, &["EVAL", "return struct.pack('!i3', 1)", "0"]),
            (Exact, &["EVAL", "return struct.pack('!bi6', 1, 2)", "0"]),
            (
                Exact,
                &["EVAL", "return struct.pack('<!4 b c2 i', 1, 'ab', 7)", "0"],
            ),
            (
                Exact,
                &["EVAL", "return struct.pack('f d', 1.5, -2.25)", "0"],
            ),
            (
                Exact,
                &["EVAL", "return struct.pack('>f f', 0.1, 0/0)", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return struct.pack('c3 c0 s x', 'abcdef', 'xyz', 'z')",
                    "0",
                ],
            ),
            (
                Exact,
                &["EVAL", "return struct.pack('c0 s', 2^53, 42)", "0"],
            ),
            (Exact, &["EVAL", "return struct.pack('b\\0b', 1, 2)", "0"]),
            (
                Exact,
                &["EVAL", "return {struct.unpack('>I2 b', '\\1\\2\\3')}", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('<l', ('\\255'):rep(8))}",
                    "0",
                ],
            ),
            // 2^64 - 1: a float, which the reply makes the smallest integer.
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('<L', ('\\255'):rep(8))}",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return tostring((struct.unpack('<L', ('\\255'):rep(8))))",
                    "0",
                ],
            ),
            // Wider than 8 bytes: the low 8 bytes, the sign where lua-struct's shift lands.
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('<i9', '\\128' .. ('\\0'):rep(8))}",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('<i12', '\\0\\0\\0\\128' .. ('\\0'):rep(8))}",
                    "0",
                ],
            ),
            // c0 reads as many bytes as the value before it says, in its place.
            (
                Exact,
                &["EVAL", "return {struct.unpack('bc0b', '\\2abc')}", "0"],
            ),
            (
                Exact,
                &["EVAL", "return {struct.unpack('c1c0', '3abcd')}", "0"],
            ),
            (
                Exact,
                &["EVAL", "return {struct.unpack('sc0', '2\\0abc')}", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('!4bi', 'x\\1\\0\\0\\0\\2\\0\\0\\0', 2)}",
                    "0",
                ],
            ),
            (
                Exact,
                &["EVAL", "return {struct.unpack('ss', 'ab\\0cd\\0')}", "0"],
            ),
            (
                Exact,
                &["EVAL", "return {struct.unpack('', 'abc', -5)}", "0"],
            ),
            (
                Exact,
                &["EVAL", "return {struct.unpack('', 'abc', 1e30)}", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('b', ARGV[1], ARGV[2])}",
                    "0",
                    "xyz",
                    "3",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return tostring((struct.unpack('>f', struct.pack('>f', 0.1))))",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return tostring((struct.unpack('f', '\\0\\0\\192\\255')))",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return tostring((struct.unpack('d', '\\0\\0\\0\\0\\0\\0\\240\\127')))",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], struct.pack('>I4 s', 7, 'x'))",
                    "1",
                    "k",
                ],
            ),
            (Exact, &["GET", "k"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.unpack('>I4 s', redis.call('get', KEYS[1]))}",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return select('#', struct.unpack(('b'):rep(7995), ('a'):rep(8000)))",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.size('bhilT'), struct.size('!bhilT'), struct.size('!i7')}",
                    "0",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {struct.size('Z'), struct.size('c2147483647c2147483647')}",
                    "0",
                ],
            ),
        ],
    ),
    (
        "redis.call results in RESP2 and after redis.setresp(3)",
        &[
            (Exact, &["SET", "str", "hello"]),
            (Exact, &["HSET", "h", "f1", "v1", "f2", "v2"]),
            (Exact, &["HSET", "h1", "only", "one"]),
            (Exact, &["ZADD", "z", "0.1", "m", "2", "n", "1.5", "o"]),
            (Exact, &["RPUSH", "l", "a", "b", "c"]),
            (Exact, &["SADD", "s", "x", "y", "z"]),
            (Exact, &["SET", "a", "1"]),
            (Exact, &["SET", "c", "3"]),
            // Strings and missing keys.
            (Exact, &["EVAL", "return redis.call('get', KEYS[1])", "1", "str"]),
            (Exact, &["EVAL", "return redis.call('GET', KEYS[1])", "1", "str"]),
            (Exact, &["EVAL", "return redis.call('get', KEYS[1])", "1", "missing"]),
            (
                Exact,
                &["EVAL", "return type(redis.call('get', KEYS[1]))", "1", "missing"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('get', KEYS[1])",
                    "1",
                    "missing",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return type(redis.call('get', KEYS[1]))",
                    "1",
                    "missing",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('set', KEYS[1], 'v')", "1", "str2"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local r = redis.call('set', KEYS[1], 'v') return {type(r), r.ok}",
                    "1",
                    "str2",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('set', KEYS[1], 'w', 'GET')",
                    "1",
                    "str2",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], 0.1) return redis.call('get', KEYS[1])",
                    "1",
                    "f",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], 1e20) return redis.call('get', KEYS[1])",
                    "1",
                    "f",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], -7) return redis.call('get', KEYS[1])",
                    "1",
                    "f",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('incrbyfloat', KEYS[1], '1.5')",
                    "1",
                    "fl",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('exists', KEYS[1], KEYS[2])",
                    "2",
                    "str",
                    "missing",
                ],
            ),
            // MGET with a hole: false in RESP2, nil (which ends the array) in RESP3.
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('mget', KEYS[1], KEYS[2], KEYS[3])",
                    "3",
                    "a",
                    "b",
                    "c",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('mget', KEYS[1], KEYS[2], KEYS[3])",
                    "3",
                    "a",
                    "b",
                    "c",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) local r = redis.call('mget', KEYS[1], KEYS[2], KEYS[3]) return r[3]",
                    "3",
                    "a",
                    "b",
                    "c",
                ],
            ),
            // Hashes.
            (Pairs, &["EVAL", "return redis.call('hgetall', KEYS[1])", "1", "h"]),
            (
                Pairs,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('hgetall', KEYS[1])",
                    "1",
                    "h",
                ],
            ),
            (Exact, &["EVAL", "return redis.call('hgetall', KEYS[1])", "1", "h1"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('hgetall', KEYS[1])",
                    "1",
                    "h1",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) local m = redis.call('hgetall', KEYS[1]) return {type(m.map), m.map.f1, m.map.f2}",
                    "1",
                    "h",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('hgetall', KEYS[1])", "1", "missing"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('hgetall', KEYS[1])",
                    "1",
                    "missing",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('hget', KEYS[1], 'f2')", "1", "h"],
            ),
            // Sorted sets.
            (
                Exact,
                &["EVAL", "return redis.call('zscore', KEYS[1], 'm')", "1", "z"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('zscore', KEYS[1], 'm')",
                    "1",
                    "z",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) local d = redis.call('zscore', KEYS[1], 'o') return {type(d), tostring(d.double)}",
                    "1",
                    "z",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('zscore', KEYS[1], 'nope')", "1", "z"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('zscore', KEYS[1], 'nope')",
                    "1",
                    "z",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')",
                    "1",
                    "z",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')",
                    "1",
                    "z",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('zrange', KEYS[1], 0, -1)",
                    "1",
                    "z",
                ],
            ),
            // Lists.
            (
                Exact,
                &["EVAL", "return redis.call('lrange', KEYS[1], 0, -1)", "1", "l"],
            ),
            (Exact, &["EVAL", "return redis.call('llen', KEYS[1])", "1", "l"]),
            (
                Exact,
                &["EVAL", "return redis.call('lindex', KEYS[1], 10)", "1", "l"],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('lpop', KEYS[1], 5)", "1", "missing"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('lpop', KEYS[1], 5)",
                    "1",
                    "missing",
                ],
            ),
            // Sets.
            (Items, &["EVAL", "return redis.call('smembers', KEYS[1])", "1", "s"]),
            (
                Items,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('smembers', KEYS[1])",
                    "1",
                    "s",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) local s = redis.call('smembers', KEYS[1]) return {type(s.set), s.set.x, s.set.nope}",
                    "1",
                    "s",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('sismember', KEYS[1], 'x')", "1", "s"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('sismember', KEYS[1], 'x')",
                    "1",
                    "s",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('sismember', KEYS[1], 'nope')",
                    "1",
                    "s",
                ],
            ),
            // Status replies.
            (Exact, &["EVAL", "return redis.call('type', KEYS[1])", "1", "z"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.setresp(3) return redis.call('type', KEYS[1])",
                    "1",
                    "missing",
                ],
            ),
            (Exact, &["EVAL", "return redis.call('ping')", "0"]),
            (Exact, &["EVAL", "return redis.call('ping', 'a')", "0"]),
            (Exact, &["EVAL", "return {redis.call('ping')}", "0"]),
            (Exact, &["EVAL", "redis.setresp(3) return redis.call('ping')", "0"]),
            (Exact, &["EVAL", "return redis.call('echo', 'hi')", "0"]),
        ],
    ),
];

const ERRORS: &[Scenario] = &[
    (
        "errors a script raises, with the line they come from",
        &[
            (Exact, &["EVAL", "error('x')", "0"]),
            (Exact, &["EVAL", "error('x', 0)", "0"]),
            (Exact, &["EVAL", "error()", "0"]),
            (Exact, &["EVAL", "error(42)", "0"]),
            (Exact, &["EVAL", "error({err='FOO bar'})", "0"]),
            (Exact, &["EVAL", "error(redis.error_reply('MY x'))", "0"]),
            (Exact, &["EVAL", "error(redis.error_reply('-X y'))", "0"]),
            (
                Exact,
                &["EVAL", "local function f()\n  error('deep')\nend\nf()", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local function f()\n  return redis.call('nosuch')\nend\nreturn f()",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "local t = nil\nreturn t.x", "0"]),
            (Exact, &["EVAL", "return 1 + {}", "0"]),
            (Exact, &["EVAL", "local a = 1\nlocal b = 2\nreturn a .. {}", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "local ok, e = pcall(function() error('boom') end) return e",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "return {pcall(error, {err='X y'})}", "0"]),
            (Exact, &["EVAL", "return {pcall(error, 'plain')}", "0"]),
            (
                Exact,
                &["EVAL", "return {pcall(function() return 1, 2 end)}", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {xpcall(function() error('x') end, function(e) return 'handled: ' .. e end)}",
                    "0",
                ],
            ),
        ],
    ),
    (
        "errors of redis.call and redis.pcall",
        &[
            (Exact, &["SET", "k", "abc"]),
            (Exact, &["RPUSH", "l", "a"]),
            (Exact, &["EVAL", "return redis.call('nosuch')", "0"]),
            (Exact, &["EVAL", "return redis.call('nosuch', KEYS[1])", "1", "k"]),
            (Exact, &["EVAL", "return redis.pcall('nosuch')", "0"]),
            (
                Exact,
                &["EVAL", "local r = redis.pcall('nosuch') return r['err']", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local ok, e = pcall(redis.call, 'nosuch') return {ok, e}",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "return redis.call()", "0"]),
            (Exact, &["EVAL", "return redis.pcall()", "0"]),
            (Exact, &["EVAL", "return redis.call('get')", "0"]),
            (
                Exact,
                &["EVAL", "return redis.call('get', KEYS[1], 'extra')", "1", "k"],
            ),
            (Exact, &["EVAL", "return redis.call('lpush', KEYS[1])", "1", "l"]),
            (Exact, &["EVAL", "return redis.call('get', {})", "0"]),
            (Exact, &["EVAL", "return redis.call('get', true)", "0"]),
            (Exact, &["EVAL", "return redis.call('get', nil)", "0"]),
            (Exact, &["EVAL", "return redis.call({})", "0"]),
            (Exact, &["EVAL", "return redis.pcall('get', {})", "0"]),
            (Exact, &["EVAL", "return redis.call('incr', KEYS[1])", "1", "k"]),
            (Exact, &["EVAL", "return redis.pcall('incr', KEYS[1])", "1", "k"]),
            (
                Exact,
                &["EVAL", "return {pcall(redis.call, 'incr', KEYS[1])}", "1", "k"],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('lpush', KEYS[1], 'x')", "1", "k"],
            ),
            (
                Exact,
                &["EVAL", "return redis.pcall('lpush', KEYS[1], 'x')", "1", "k"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local r = redis.pcall('lpush', KEYS[1], 'x') return r.err",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local ok, e = pcall(redis.call, 'lpush', KEYS[1], 'x') return {ok, e}",
                    "1",
                    "k",
                ],
            ),
            (Exact, &["EVAL", "return redis.call('get', KEYS[1])", "1", "l"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('set', KEYS[1], 'v', 'BOGUS')",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('expire', KEYS[1], 'abc')", "1", "k"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.pcall('lpush', KEYS[1], 'x')\nreturn redis.call('get', KEYS[1])",
                    "1",
                    "k",
                ],
            ),
            (Exact, &["GET", "k"]),
            (Exact, &["LRANGE", "l", "0", "-1"]),
        ],
    ),
    (
        "redis.error_reply and redis.status_reply",
        &[
            (Exact, &["EVAL", "return redis.error_reply('')", "0"]),
            (Exact, &["EVAL", "return redis.error_reply('-X y')", "0"]),
            (Exact, &["EVAL", "return redis.error_reply('X')", "0"]),
            (Exact, &["EVAL", "return redis.error_reply('-X')", "0"]),
            (Exact, &["EVAL", "return redis.error_reply('My error text')", "0"]),
            (Exact, &["EVAL", "return redis.error_reply('WRONGTYPE custom')", "0"]),
            (Exact, &["EVAL", "return redis.error_reply(1)", "0"]),
            (Exact, &["EVAL", "return redis.error_reply()", "0"]),
            (Exact, &["EVAL", "return redis.error_reply('a', 'b')", "0"]),
            (
                Exact,
                &["EVAL", "local e = redis.error_reply('-X y') return e.err", "0"],
            ),
            (
                Exact,
                &["EVAL", "local e = redis.error_reply('plain') return e.err", "0"],
            ),
            (Exact, &["EVAL", "return redis.status_reply('')", "0"]),
            (Exact, &["EVAL", "return redis.status_reply('OK')", "0"]),
            (Exact, &["EVAL", "return redis.status_reply('a b')", "0"]),
            (Exact, &["EVAL", "return redis.status_reply(1)", "0"]),
            (Exact, &["EVAL", "return redis.status_reply()", "0"]),
            (Exact, &["EVAL", "return redis.status_reply('a', 'b')", "0"]),
            (
                Exact,
                &["EVAL", "local s = redis.status_reply('fine') return s.ok", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return {redis.error_reply('E1 one'), redis.status_reply('s')}",
                    "0",
                ],
            ),
        ],
    ),
    (
        "compile errors, numkeys errors and arity",
        &[
            (Exact, &["EVAL", "return 1 +", "0"]),
            (Exact, &["EVAL", "x = = 1", "0"]),
            (Exact, &["EVAL", "return 'unfinished", "0"]),
            (Exact, &["SCRIPT", "LOAD", "return 1 +"]),
            (Exact, &["SCRIPT", "LOAD", "x = = 1"]),
            (Exact, &["EVAL", "return 1", "-1"]),
            (Exact, &["EVAL", "return 1 +", "-1"]),
            (Exact, &["EVAL", "return 1", "2", "a"]),
            (Exact, &["EVAL", "return 1", "1"]),
            (Exact, &["EVAL", "return 1", "x"]),
            (Exact, &["EVAL", "return 1", "1.5", "a"]),
            (Exact, &["EVAL", "return 1", ""]),
            (Exact, &["EVAL", "return 1", " 1", "a"]),
            (Exact, &["EVAL", "return 1", "99999999999999999999"]),
            (Exact, &["EVAL_RO", "return 1", "-1"]),
            (
                Exact,
                &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "-1"],
            ),
            (
                Exact,
                &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "x"],
            ),
            (
                Exact,
                &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "2", "a"],
            ),
            (
                Exact,
                &["EVALSHA_RO", "ffffffffffffffffffffffffffffffffffffffff", "5"],
            ),
            (Exact, &["EVAL"]),
            (Exact, &["EVAL", "return 1"]),
            (Exact, &["EVALSHA", "x"]),
            (Exact, &["EVAL_RO", "return 1"]),
            (Exact, &["EVALSHA_RO", "x"]),
            (Exact, &["EVAL", "return 1", "0", "extra"]),
        ],
    ),
    (
        "shebang lines, flags=no-writes and EVAL_RO",
        &[
            (Exact, &["SET", "k", "v"]),
            (Exact, &["EVAL", "#!lua\nreturn 1", "0"]),
            (Exact, &["EVAL", "#!lua\nerror('on line two')", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'w')",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "#!lua flags=no-writes\nreturn redis.pcall('set', KEYS[1], 'w')",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &["EVAL", "#!lua flags=no-writes,allow-stale\nreturn 2", "0"],
            ),
            (Exact, &["EVAL", "#!lua flags=\nreturn 3", "0"]),
            (Exact, &["GET", "k"]),
            (Exact, &["EVAL", "#!lua flags=bogus\nreturn 1", "0"]),
            (Exact, &["EVAL", "#!python\nreturn 1", "0"]),
            (Exact, &["EVAL", "#!lua name=x\nreturn 1", "0"]),
            (Exact, &["EVAL", "#!lua", "0"]),
            (Exact, &["SCRIPT", "LOAD", "#!lua flags=bogus\nreturn 1"]),
            (Exact, &["SCRIPT", "LOAD", "#!python\nreturn 1"]),
            (
                Exact,
                &["EVAL_RO", "return redis.call('set', KEYS[1], 'w')", "1", "k"],
            ),
            (
                Exact,
                &["EVAL_RO", "return redis.pcall('set', KEYS[1], 'w')", "1", "k"],
            ),
            (
                Exact,
                &["EVAL_RO", "return redis.call('incr', KEYS[1])", "1", "missing"],
            ),
            (
                Exact,
                &["EVAL_RO", "return redis.call('get', KEYS[1])", "1", "k"],
            ),
            (Exact, &["GET", "k"]),
            (Exact, &["EXISTS", "missing"]),
        ],
    ),
    (
        "commands a script may not run",
        &[
            (
                Exact,
                &["EVAL", "return redis.call('blpop', KEYS[1], 0)", "1", "l"],
            ),
            (
                Exact,
                &["EVAL", "return redis.pcall('blpop', KEYS[1], 0)", "1", "l"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('brpoplpush', KEYS[1], KEYS[2], 0)",
                    "2",
                    "l",
                    "m",
                ],
            ),
            (Exact, &["EVAL", "return redis.call('multi')", "0"]),
            (Exact, &["EVAL", "return redis.call('exec')", "0"]),
            (Exact, &["EVAL", "return redis.call('watch', KEYS[1])", "1", "l"]),
            (
                Exact,
                &["EVAL", "return redis.call('eval', 'return 1', '0')", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('evalsha', 'e0e1f9fabfc9d4800c877a703b823ac0578ff8db', '0')",
                    "0",
                ],
            ),
            (
                Exact,
                &["EVAL", "return redis.call('script', 'exists', 'x')", "0"],
            ),
            (Exact, &["EVAL", "return redis.call('script')", "0"]),
            (Exact, &["EVAL", "return redis.call('subscribe', 'ch')", "0"]),
            (Exact, &["EVAL", "return redis.call('unsubscribe')", "0"]),
            (Exact, &["EVAL", "return redis.call('client', 'id')", "0"]),
            (Exact, &["EVAL", "return redis.pcall('client', 'id')", "0"]),
            (Exact, &["EVAL", "return redis.call('client', 'list')", "0"]),
            (Exact, &["EVAL", "return redis.call('client')", "0"]),
            (Exact, &["EVAL", "return redis.call('hello')", "0"]),
            (Exact, &["EXISTS", "l", "m"]),
        ],
    ),
    (
        "the sandbox",
        &[
            (Exact, &["EVAL", "x = 1", "0"]),
            (Exact, &["EVAL", "_G.x = 1", "0"]),
            (Exact, &["EVAL", "rawset(_G, 'x', 1)", "0"]),
            (Exact, &["EVAL", "setmetatable(_G, nil)", "0"]),
            (Exact, &["EVAL", "local a = 1\nlocal b = 2\nc = a + b", "0"]),
            (Exact, &["EVAL", "string.x = 1", "0"]),
            (Exact, &["EVAL", "redis.call = nil", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "local ok, e = pcall(function() x = 1 end) return e",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "return undefined_thing", "0"]),
            (Exact, &["EVAL", "return _G.undefined", "0"]),
            (Exact, &["EVAL", "return rawget(_G, 'undefined')", "0"]),
            (Exact, &["EVAL", "return os.time()", "0"]),
            (Exact, &["EVAL", "print('hi')", "0"]),
            (Exact, &["EVAL", "dofile('/etc/passwd')", "0"]),
            (Exact, &["EVAL", "local x = 5 return x", "0"]),
            // Nothing a script assigned stays for the next one.
            (Exact, &["EVAL", "return x", "0"]),
        ],
    ),
    (
        "errors of the native libraries as a script that catches them sees them",
        &[
            (
                Exact,
                &[
                    "EVAL",
                    "local ok, e = pcall(cjson.decode, '{') return {tostring(ok), type(e), e}",
                    "0",
                ],
            ),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(cjson.encode) return {type(e), e}", "0"],
            ),
            (Exact, &["EVAL", "return cjson.decode(12)", "0"]),
            (Exact, &["EVAL", "return cjson.decode({})", "0"]),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(cmsgpack.pack) return e", "0"],
            ),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(cmsgpack.unpack_one, 'x', 5) return e", "0"],
            ),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(cmsgpack.unpack_one, 'x', -1) return e", "0"],
            ),
            (
                Exact,
                &["EVAL", "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0)}", "0"],
            ),
            (
                Exact,
                &["EVAL", "return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 0, 1)}", "0"],
            ),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(bit.tohex) return {type(e), e}", "0"],
            ),
            (Exact, &["EVAL", "return bit.band(1, 'x')", "0"]),
            (Exact, &["EVAL", "return bit.tohex('0x10')", "0"]),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(redis.sha1hex) return {type(e), e}", "0"],
            ),
            (Exact, &["EVAL", "return redis.setresp(5)", "0"]),
            (
                Exact,
                &["EVAL", "local ok, e = pcall(redis.log) return e", "0"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local ok, e = xpcall(function() return cjson.decode('[') end, function(e) return type(e) .. ':' .. e end) return e",
                    "0",
                ],
            ),
        ],
    ),
    (
        "errors of the struct library",
        &[
            (Exact, &["EVAL", "return struct.pack('Z', 1)", "0"]),
            (Exact, &["EVAL", "return struct.pack('=I2', 258)", "0"]),
            (Exact, &["EVAL", "return struct.pack('i33', 1)", "0"]),
            (
                Exact,
                &["EVAL", "return struct.pack('c99999999999', 'ab')", "0"],
            ),
            (Exact, &["EVAL", "return struct.pack('!3', 1)", "0"]),
            (
                Exact,
                &["EVAL", "return struct.pack('bbb', 1, 'x', 3)", "0"],
            ),
            (Exact, &["EVAL", "return struct.pack('bc2', 1, 'a')", "0"]),
            (Exact, &["EVAL", "return struct.pack()", "0"]),
            (Exact, &["EVAL", "return struct:pack('b', 1)", "0"]),
            (
                Exact,
                &["EVAL", "local p = struct.pack\nreturn p('Z')", "0"],
            ),
            (Exact, &["EVAL", "return struct.unpack('b', '')", "0"]),
            (Exact, &["EVAL", "return struct.unpack('b', 'abc', 0)", "0"]),
            (
                Exact,
                &["EVAL", "return struct.unpack('b', 'abc', 'z')", "0"],
            ),
            (Exact, &["EVAL", "return struct.unpack('c0', 'abc')", "0"]),
            (
                Exact,
                &["EVAL", "return struct.unpack('bc0', '\\255abc')", "0"],
            ),
            (Exact, &["EVAL", "return struct.unpack('s', 'abc')", "0"]),
            (Exact, &["EVAL", "return struct.unpack('b')", "0"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return struct.unpack(('b'):rep(7998), ('a'):rep(8000))",
                    "0",
                ],
            ),
            (Exact, &["EVAL", "return struct.size('s')", "0"]),
            (Exact, &["EVAL", "return struct.size('c0')", "0"]),
            (Exact, &["EVAL", "return struct.size('=')", "0"]),
            (Exact, &["EVAL", "struct.x = 1", "0"]),
            (Exact, &["EVAL", "struct.pack = nil", "0"]),
        ],
    ),
    (
        "argument checks of the redis library",
        &[
            (Exact, &["EVAL", "redis.log(redis.LOG_WARNING)", "0"]),
            (Exact, &["EVAL", "redis.log('x', 'y')", "0"]),
            (Exact, &["EVAL", "redis.log(99, 'y')", "0"]),
            (Exact, &["EVAL", "redis.log()", "0"]),
            (
                Exact,
                &["EVAL", "return redis.log(redis.LOG_DEBUG, 'hello')", "0"],
            ),
            (Exact, &["EVAL", "return redis.setresp(4)", "0"]),
            (Exact, &["EVAL", "return redis.setresp()", "0"]),
            (Exact, &["EVAL", "return redis.setresp(2, 3)", "0"]),
            (Exact, &["EVAL", "return redis.setresp('3')", "0"]),
            (Exact, &["EVAL", "return redis.setresp(3)", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex('')", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex('return 1')", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex(1)", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex(0.1)", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex({})", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex()", "0"]),
            (Exact, &["EVAL", "return redis.sha1hex('a', 'b')", "0"]),
            (Exact, &["EVAL", "return redis.set_repl(redis.REPL_ALL)", "0"]),
            (Exact, &["EVAL", "return redis.set_repl(99)", "0"]),
            (Exact, &["EVAL", "return redis.replicate_commands()", "0"]),
            (Exact, &["EVAL", "return redis.breakpoint()", "0"]),
        ],
    ),
];

const CACHE: &[Scenario] = &[
    (
        "EVAL caches its body; EVALSHA runs it, in either letter case",
        &[
            (Exact, &["SCRIPT", "EXISTS", SHA_RETURN_1]),
            (Exact, &["EVALSHA", SHA_RETURN_1, "0"]),
            (Exact, &["EVAL", "return 1", "0"]),
            (Exact, &["SCRIPT", "EXISTS", SHA_RETURN_1]),
            (Exact, &["EVALSHA", SHA_RETURN_1, "0"]),
            (
                Exact,
                &["EVALSHA", "E0E1F9FABFC9D4800C877A703B823AC0578FF8DB", "0"],
            ),
            (Exact, &["evalsha", SHA_RETURN_1, "1", "k", "arg"]),
            (Exact, &["EVALSHA_RO", SHA_RETURN_1, "0"]),
            (
                Exact,
                &["EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", "0"],
            ),
            (
                Exact,
                &[
                    "EVALSHA_RO",
                    "ffffffffffffffffffffffffffffffffffffffff",
                    "0",
                ],
            ),
            (Exact, &["EVALSHA", "abc", "0"]),
            (Exact, &["EVALSHA", "", "0"]),
            // A body that does not compile is not cached.
            (Exact, &["EVAL", "return 1 +", "0"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "EXISTS",
                    "2b1542794fdd1688e17864bfe9b6bd02547420a8",
                ],
            ),
            (
                Exact,
                &["EVALSHA", "2b1542794fdd1688e17864bfe9b6bd02547420a8", "0"],
            ),
            // EVAL_RO caches too.
            (Exact, &["EVAL_RO", "return 2", "0"]),
            (
                Exact,
                &["EVALSHA", "7f923f79fe76194c868d7e1d0820de36700eb649", "0"],
            ),
        ],
    ),
    (
        "SCRIPT LOAD and SCRIPT EXISTS",
        &[
            (Exact, &["SCRIPT", "LOAD", "return 1"]),
            (Exact, &["SCRIPT", "LOAD", "return 1"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "LOAD",
                    "return redis.call('set', KEYS[1], ARGV[1])",
                ],
            ),
            (
                Exact,
                &[
                    "EVALSHA",
                    "55b22c0d0cedf3866879ce7c854970626dcef0c3",
                    "1",
                    "k",
                    "v",
                ],
            ),
            (Exact, &["GET", "k"]),
            (
                Exact,
                &[
                    "EVALSHA_RO",
                    "55b22c0d0cedf3866879ce7c854970626dcef0c3",
                    "1",
                    "k",
                    "w",
                ],
            ),
            (Exact, &["GET", "k"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "EXISTS",
                    SHA_RETURN_1,
                    "ffffffffffffffffffffffffffffffffffffffff",
                    "E0E1F9FABFC9D4800C877A703B823AC0578FF8DB",
                    "55b22c0d0cedf3866879ce7c854970626dcef0c3",
                    "x",
                ],
            ),
            (Exact, &["script", "load", "return 2"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "EXISTS",
                    "7f923f79fe76194c868d7e1d0820de36700eb649",
                ],
            ),
            (
                Exact,
                &[
                    "SCRIPT",
                    "LOAD",
                    "#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'v')",
                ],
            ),
            (
                Exact,
                &[
                    "EVALSHA",
                    "34506ea5aa699a74b84d4fdd3eb056b6880221a7",
                    "1",
                    "k",
                ],
            ),
            (Exact, &["SCRIPT", "LOAD", ""]),
            (
                Exact,
                &["EVALSHA", "da39a3ee5e6b4b0d3255bfef95601890afd80709", "0"],
            ),
        ],
    ),
    (
        "SCRIPT FLUSH in every form, then NOSCRIPT",
        &[
            (Exact, &["EVAL", "return 1", "0"]),
            (Exact, &["SCRIPT", "LOAD", "return 2"]),
            (Exact, &["SCRIPT", "FLUSH"]),
            (Exact, &["EVALSHA", SHA_RETURN_1, "0"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "EXISTS",
                    SHA_RETURN_1,
                    "7f923f79fe76194c868d7e1d0820de36700eb649",
                ],
            ),
            (Exact, &["EVAL", "return 1", "0"]),
            (Exact, &["SCRIPT", "FLUSH", "ASYNC"]),
            (Exact, &["EVALSHA", SHA_RETURN_1, "0"]),
            (Exact, &["SCRIPT", "LOAD", "return 2"]),
            (Exact, &["SCRIPT", "FLUSH", "SYNC"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "EXISTS",
                    "7f923f79fe76194c868d7e1d0820de36700eb649",
                ],
            ),
            (Exact, &["SCRIPT", "LOAD", "return 2"]),
            (Exact, &["script", "flush", "async"]),
            (
                Exact,
                &["EVALSHA", "7f923f79fe76194c868d7e1d0820de36700eb649", "0"],
            ),
            // A refused FLUSH keeps the cache.
            (Exact, &["SCRIPT", "LOAD", "return 2"]),
            (Exact, &["SCRIPT", "FLUSH", "bad"]),
            (Exact, &["SCRIPT", "FLUSH", "SYNC", "ASYNC"]),
            (
                Exact,
                &[
                    "SCRIPT",
                    "EXISTS",
                    "7f923f79fe76194c868d7e1d0820de36700eb649",
                ],
            ),
            (
                Exact,
                &["EVALSHA", "7f923f79fe76194c868d7e1d0820de36700eb649", "0"],
            ),
        ],
    ),
    (
        "SCRIPT KILL with nothing running, and SCRIPT's argument errors",
        &[
            (Exact, &["SCRIPT", "KILL"]),
            (Exact, &["script", "kill"]),
            (Exact, &["SCRIPT", "KILL", "x"]),
            (Exact, &["SCRIPT", "EXISTS"]),
            (Exact, &["SCRIPT", "LOAD"]),
            (Exact, &["SCRIPT", "LOAD", "a", "b"]),
            (Exact, &["SCRIPT"]),
            (Exact, &["SCRIPT", "NOSUCH"]),
        ],
    ),
];

const EFFECTS: &[Scenario] = &[
    (
        "a script writes keys of every type; plain commands read them back",
        &[
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], 'v1')\n\
                     redis.call('incr', KEYS[2])\n\
                     redis.call('incrby', KEYS[2], 10)\n\
                     redis.call('rpush', KEYS[3], 'a', 'b', 'c')\n\
                     redis.call('hset', KEYS[4], 'f1', 'x', 'f2', 'y')\n\
                     redis.call('sadd', KEYS[5], 'm1', 'm2', 'm3')\n\
                     redis.call('zadd', KEYS[6], 1, 'one', 2.5, 'two')\n\
                     redis.call('expire', KEYS[1], 100)\n\
                     redis.call('expire', KEYS[3], 1000)\n\
                     return redis.call('exists', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])",
                    "6",
                    "str",
                    "cnt",
                    "list",
                    "hash",
                    "set",
                    "zset",
                ],
            ),
            (Exact, &["GET", "str"]),
            (Exact, &["GET", "cnt"]),
            (Exact, &["LRANGE", "list", "0", "-1"]),
            (Pairs, &["HGETALL", "hash"]),
            (Items, &["SMEMBERS", "set"]),
            (Exact, &["ZRANGE", "zset", "0", "-1", "WITHSCORES"]),
            (Exact, &["TYPE", "str"]),
            (Exact, &["TYPE", "list"]),
            (Exact, &["TYPE", "hash"]),
            (Exact, &["TYPE", "set"]),
            (Exact, &["TYPE", "zset"]),
            (Ttl, &["TTL", "str"]),
            (Ttl, &["TTL", "list"]),
            (Ttl, &["TTL", "hash"]),
            (Ttl, &["TTL", "missing"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
            (Ttl, &["EVAL", "return redis.call('ttl', KEYS[1])", "1", "str"]),
            (
                Ttl,
                &[
                    "EVAL",
                    "redis.call('expire', KEYS[1], 500) return redis.call('ttl', KEYS[1])",
                    "1",
                    "hash",
                ],
            ),
            (Ttl, &["TTL", "hash"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('persist', KEYS[1]) return redis.call('ttl', KEYS[1])",
                    "1",
                    "str",
                ],
            ),
            (Ttl, &["TTL", "str"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('expire', KEYS[1], -1) return redis.call('exists', KEYS[1])",
                    "1",
                    "zset",
                ],
            ),
            (Exact, &["EXISTS", "zset"]),
            (Exact, &["TYPE", "zset"]),
            (
                Exact,
                &[
                    "EVAL",
                    "return redis.call('del', KEYS[1], KEYS[2], KEYS[3])",
                    "3",
                    "cnt",
                    "set",
                    "missing",
                ],
            ),
            (Exact, &["EXISTS", "cnt", "set"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('hdel', KEYS[1], 'f1')\n\
                     redis.call('lpop', KEYS[2])\n\
                     return {redis.call('hlen', KEYS[1]), redis.call('llen', KEYS[2])}",
                    "2",
                    "hash",
                    "list",
                ],
            ),
            (Exact, &["HGETALL", "hash"]),
            (Exact, &["LRANGE", "list", "0", "-1"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
        ],
    ),
    (
        "a script that fails halfway keeps the writes before the failure",
        &[
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], '1') redis.call('lpush', KEYS[1], 'x')",
                    "1",
                    "a",
                ],
            ),
            (Exact, &["GET", "a"]),
            (Exact, &["TYPE", "a"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], '2')\n\
                     redis.call('incr', KEYS[2])\n\
                     error('stop here')\n\
                     redis.call('set', KEYS[1], 'never')",
                    "2",
                    "a",
                    "b",
                ],
            ),
            (Exact, &["MGET", "a", "b"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('rpush', KEYS[1], 'x')\n\
                     local r = redis.pcall('incr', KEYS[1])\n\
                     redis.call('rpush', KEYS[1], 'y')\n\
                     return {r.err, redis.call('lrange', KEYS[1], 0, -1)}",
                    "1",
                    "l",
                ],
            ),
            (Exact, &["LRANGE", "l", "0", "-1"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('hset', KEYS[1], 'f', 'v')\n\
                     return redis.call('hincrby', KEYS[1], 'f', 1)",
                    "1",
                    "h",
                ],
            ),
            (Exact, &["HGETALL", "h"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('sadd', KEYS[1], 'm')\nlocal t = nil\nreturn t.x",
                    "1",
                    "s",
                ],
            ),
            (Exact, &["SMEMBERS", "s"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('incr', KEYS[1])\n\
                     return redis.call('set', KEYS[1], 'v', 'BOGUS')",
                    "1",
                    "b",
                ],
            ),
            (Exact, &["GET", "b"]),
            // Read-only scripts write nothing.
            (
                Exact,
                &["EVAL_RO", "return redis.call('set', KEYS[1], 'ro')", "1", "a"],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "#!lua flags=no-writes\nreturn redis.call('del', KEYS[1])",
                    "1",
                    "a",
                ],
            ),
            (Exact, &["GET", "a"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
        ],
    ),
    (
        "a script reads its own writes",
        &[
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], 'v')\n\
                     local before = redis.call('get', KEYS[1])\n\
                     redis.call('append', KEYS[1], '2')\n\
                     return {before, redis.call('get', KEYS[1]), redis.call('strlen', KEYS[1])}",
                    "1",
                    "k",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('del', KEYS[1])\n\
                     local before = redis.call('exists', KEYS[1])\n\
                     redis.call('hset', KEYS[1], 'f', 1)\n\
                     redis.call('hincrby', KEYS[1], 'f', 5)\n\
                     return {before, redis.call('hget', KEYS[1], 'f'), redis.call('type', KEYS[1])}",
                    "1",
                    "k",
                ],
            ),
            (Exact, &["HGETALL", "k"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('zadd', KEYS[1], 1, 'a')\n\
                     redis.call('zincrby', KEYS[1], 2, 'a')\n\
                     redis.call('zadd', KEYS[1], 2, 'b')\n\
                     return redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')",
                    "1",
                    "z",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('sadd', KEYS[1], 'x', 'y')\n\
                     redis.call('srem', KEYS[1], 'x')\n\
                     return {redis.call('scard', KEYS[1]), redis.call('sismember', KEYS[1], 'y')}",
                    "1",
                    "s",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('rpush', KEYS[1], 1, 2, 3)\n\
                     redis.call('lpop', KEYS[1])\n\
                     return redis.call('lrange', KEYS[1], 0, -1)",
                    "1",
                    "l",
                ],
            ),
            (
                Exact,
                &[
                    "EVAL",
                    "local n = 0\nfor i = 1, 50 do n = redis.call('incr', KEYS[1]) end\nreturn n",
                    "1",
                    "c",
                ],
            ),
            (Exact, &["GET", "c"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('set', KEYS[1], 'x', 'EX', 100)\n\
                     redis.call('del', KEYS[1])\n\
                     redis.call('set', KEYS[1], 'y')\n\
                     return {redis.call('get', KEYS[1]), redis.call('ttl', KEYS[1])}",
                    "1",
                    "t",
                ],
            ),
            (Ttl, &["TTL", "t"]),
            (
                Exact,
                &[
                    "EVAL",
                    "redis.call('rpush', KEYS[2], 'moved')\n\
                     redis.call('rename', KEYS[2], KEYS[1])\n\
                     return {redis.call('exists', KEYS[2]), redis.call('lrange', KEYS[1], 0, -1)}",
                    "2",
                    "dst",
                    "src",
                ],
            ),
            (Exact, &["LRANGE", "dst", "0", "-1"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
        ],
    ),
];

// ---------------------------------------------------------------------------------------
// Functions (FUNCTION ... and FCALL)
// ---------------------------------------------------------------------------------------

/// In a step, the payload of this side's last FUNCTION DUMP in the scenario (a step
/// compared as [`Norm::Dumped`]).
const OWN_DUMP: &str = "$OWN_DUMP";
/// In a step, the payload of the other side's last FUNCTION DUMP: redis-server restores
/// zankv's and zankv redis-server's.
const OTHER_DUMP: &str = "$OTHER_DUMP";
/// In a step, this side's last payload without its last byte (a wrong checksum).
const CUT_DUMP: &str = "$CUT_DUMP";

/// A library whose functions answer their keys and arguments, read, write, convert and
/// fail. Its line numbers are in the error texts compared.
const LIB_CALLS: &str = "#!lua name=calls\n\
local function echo(keys, args)\n\
  return {#keys, #args, keys[1], args[1], args[2]}\n\
end\n\
redis.register_function('echo', echo)\n\
redis.register_function('setter', function(keys, args)\n\
  redis.call('set', keys[1], args[1])\n\
  return redis.call('get', keys[1])\n\
end)\n\
redis.register_function{function_name='getter', flags={'no-writes'}, callback=function(keys)\n\
  return redis.call('get', keys[1])\n\
end}\n\
redis.register_function{function_name='ro_setter', flags={'no-writes'}, description='declares no writes, then writes', callback=function(keys, args)\n\
  return redis.call('set', keys[1], args[1])\n\
end}\n\
redis.register_function('keys_global', function() return KEYS end)\n\
redis.register_function('argv_global', function() return ARGV[1] end)\n\
redis.register_function('raises', function(keys, args)\n\
  error('boom ' .. (args[1] or ''))\n\
end)\n\
redis.register_function('raises_table', function() return error({err='MYCODE custom'}) end)\n\
redis.register_function('unknown_command', function() return redis.call('nosuch') end)\n\
redis.register_function('wrong_type', function(keys)\n\
  redis.call('rpush', keys[1], 'x')\n\
  return redis.call('incr', keys[1])\n\
end)\n\
redis.register_function('nil_index', function()\n\
  local t = nil\n\
  return t.x\n\
end)\n\
redis.register_function('bad_option', function(keys) return redis.call('set', keys[1], 'v', 'BOGUS') end)\n\
redis.register_function('caught', function(keys)\n\
  local r = redis.pcall('incr', keys[1])\n\
  return {r.err, redis.call('get', keys[1])}\n\
end)\n\
redis.register_function('pcall_reply', function(keys) return redis.pcall('incr', keys[1]) end)\n\
redis.register_function('eval_inside', function() return redis.call('eval', 'return 1', 0) end)\n\
redis.register_function('fcall_inside', function() return redis.call('fcall', 'echo', 0) end)\n\
redis.register_function('error_reply', function() return redis.error_reply('E2 mine') end)\n\
redis.register_function('status_reply', function() return redis.status_reply('FINE') end)\n\
redis.register_function('table', function() return {1, 'two', {3, 3.9}, {ok='x'}, true, false, 'after'} end)\n\
redis.register_function('sha', function(keys, args) return redis.sha1hex(args[1]) end)\n\
redis.register_function('resp3_hash', function(keys)\n\
  redis.setresp(3)\n\
  return redis.call('hgetall', keys[1])\n\
end)\n\
redis.register_function('resp3_types', function() redis.setresp(3) return {true, {double=2.5}, {map={a=1}}} end)\n\
redis.register_function('libraries', function(keys, args)\n\
  return {string.upper(args[1]), table.concat({'a', 'b'}, ','), math.max(3, 9), bit.band(6, 3), type(cjson)}\n\
end)\n";

/// A library whose callbacks call its local helpers, which use `redis.call` and the other
/// script globals at run time (and fail as a callback would).
const LIB_HELPERS: &str = "#!lua name=helpers\n\
local function stamp(key, value)\n\
  redis.call('set', key, value)\n\
  return string.upper(redis.call('get', key))\n\
end\n\
local function keys_of()\n\
  return KEYS\n\
end\n\
local function assign()\n\
  x = 1\n\
end\n\
local function undefined()\n\
  return nosuch_global\n\
end\n\
redis.register_function('via_helper', function(keys, args)\n\
  return {stamp(keys[1], args[1]), #keys}\n\
end)\n\
redis.register_function('helper_keys', function() return keys_of() end)\n\
redis.register_function('helper_assign', function() assign() end)\n\
redis.register_function('helper_undefined', function() return undefined() end)\n\
redis.register_function('inner_function', function(keys)\n\
  local function inner() return redis.call('incr', keys[1]) end\n\
  return inner()\n\
end)\n\
local prefix = 'p:'\n\
redis.register_function('upvalue', function(keys, args) return prefix .. args[1] end)\n";

/// Two libraries of one function each, another version of the first, and one whose
/// function the second has.
const LIB_A1: &str = "#!lua name=liba\nredis.register_function('fa', function() return 'a1' end)";
const LIB_A2: &str = "#!lua name=liba\n\
redis.register_function('fa', function() return 'a2' end)\n\
redis.register_function('fa2', function() return 'a2 too' end)";
const LIB_B: &str = "#!lua name=libb\nredis.register_function('fb', function() return 'b' end)";
const LIB_B_STEALS_FA: &str =
    "#!lua name=libb\nredis.register_function('fa', function() return 'stolen' end)";
const LIB_A_STEALS_FB: &str =
    "#!lua name=liba\nredis.register_function('fb', function() return 'stolen' end)";
/// A library with a description, flags and several functions (which Redis lists in its
/// hash table's order).
const LIB_OTHER: &str = "#!lua name=other\n\
redis.register_function{function_name='fc', callback=function() return 'c' end, flags={'no-writes'}, description='the c'}\n\
redis.register_function('fd', function() return 'd' end)\n\
redis.register_function('fe', function() return 'e' end)";

/// The libraries a dump holds: a short one and a long one (which redis-server stores
/// LZF-compressed in its payload).
const LIB_DUMP_A: &str = "#!lua name=liba\n\
redis.register_function('fa', function(keys, args) return 'a:' .. (args[1] or '') end)";
const LIB_DUMP_A2: &str =
    "#!lua name=liba\nredis.register_function('fa', function() return 'replaced' end)";
const LIB_DUMP_B: &str = "#!lua name=libb\n\
redis.register_function('fb0', function() return 'b0' end)\n\
redis.register_function('fb1', function() return 'b1' end)\n\
redis.register_function('fb2', function() return 'b2' end)\n\
redis.register_function('fb3', function() return 'b3' end)\n\
redis.register_function('fb4', function() return 'b4' end)\n\
redis.register_function('fb5', function() return 'b5' end)\n\
redis.register_function('fb6', function() return 'b6' end)\n\
redis.register_function('fb7', function() return 'b7' end)\n\
redis.register_function('fb8', function() return 'b8' end)\n\
redis.register_function('fb9', function() return 'b9' end)\n";
/// A library whose function the long one has.
const LIB_DUMP_C: &str =
    "#!lua name=libc\nredis.register_function('fb1', function() return 'c' end)";

/// A library whose functions write keys of every type, delete some, and fail halfway.
const LIB_EFFECTS: &str = "#!lua name=effects\n\
redis.register_function('fill', function(keys, args)\n\
  redis.call('set', keys[1], args[1])\n\
  redis.call('incrby', keys[2], 5)\n\
  redis.call('incrby', keys[2], 5)\n\
  redis.call('rpush', keys[3], 'a', 'b', 'c')\n\
  redis.call('hset', keys[4], 'f1', 'x', 'f2', 'y')\n\
  redis.call('sadd', keys[5], 'm1', 'm2', 'm3')\n\
  redis.call('zadd', keys[6], 1, 'one', 2.5, 'two')\n\
  redis.call('expire', keys[1], 100)\n\
  redis.call('expire', keys[3], 1000)\n\
  return redis.call('exists', keys[1], keys[2], keys[3], keys[4], keys[5], keys[6])\n\
end)\n\
redis.register_function('drain', function(keys)\n\
  redis.call('del', keys[2])\n\
  redis.call('lpop', keys[3])\n\
  redis.call('hdel', keys[4], 'f1')\n\
  redis.call('srem', keys[5], 'm1')\n\
  redis.call('zincrby', keys[6], 1, 'one')\n\
  redis.call('persist', keys[1])\n\
  return {redis.call('exists', keys[2]), redis.call('llen', keys[3]), redis.call('hlen', keys[4]),\n\
    redis.call('scard', keys[5]), redis.call('zscore', keys[6], 'one'), redis.call('ttl', keys[1])}\n\
end)\n\
redis.register_function('half', function(keys)\n\
  redis.call('set', keys[1], 'before')\n\
  redis.call('rpush', keys[2], 'x')\n\
  redis.call('incr', keys[1])\n\
  redis.call('set', keys[1], 'never')\n\
end)\n\
redis.register_function{function_name='inspect', flags={'no-writes'}, callback=function(keys)\n\
  return {redis.call('type', keys[1]).ok, redis.call('exists', keys[1])}\n\
end}\n";

const FUNCTION_LOADING: &[Scenario] = &[
    (
        "FUNCTION LOAD's first line: the metadata errors",
        &[
            (Exact, &["FUNCTION", "LOAD", "return 1"]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "redis.register_function('f', function() return 1 end)",
                ],
            ),
            (Exact, &["FUNCTION", "LOAD", "#!python name=py\nreturn 1"]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a name=b\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a-b\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a=b\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a foo=bar\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a foo\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (Exact, &["FUNCTION", "LOAD", "#!lua foo=bar\nreturn 1"]),
            (Exact, &["FUNCTION", "LOAD", "REPLACE"]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "FOO",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (Exact, &["FUNCTION", "LOAD"]),
            (Exact, &["FUNCTION", "LIST"]),
            (Exact, &["FCALL", "f", "0"]),
            // What loads: the engine's name in any case, extra spaces, a name of digits.
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!LUA name=upper\nredis.register_function('f1', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua  name=spaced \nredis.register_function('f2', function() return 2 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=123\nredis.register_function('f3', function() return 3 end)",
                ],
            ),
            (
                Exact,
                &[
                    "function",
                    "load",
                    "#!lua name=lower_case\nredis.register_function('f4', function() return 4 end)",
                ],
            ),
            (Libraries, &["FUNCTION", "LIST"]),
            (Exact, &["FCALL", "f1", "0"]),
            (Exact, &["FCALL", "f2", "0"]),
            (Exact, &["FCALL", "f3", "0"]),
            (Exact, &["FCALL", "f4", "0"]),
        ],
    ),
    (
        "FUNCTION LOAD's compile errors, at the library's lines",
        &[
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end",
                ],
            ),
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nlocal x = = 1"]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nlocal ok = 1\n\nif then end",
                ],
            ),
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nreturn 'unfinished"]),
            (Exact, &["FUNCTION", "LIST"]),
        ],
    ),
    (
        "registration errors, and what the loading sandbox refuses",
        &[
            // Bad function names.
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f-g', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('', function() return 1 end)",
                ],
            ),
            // A callback that is no function.
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nredis.register_function('f', 5)"],
            ),
            // Flags: unknown, not strings, not a table.
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f', callback=function() return 1 end, flags={'bogus'}}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f', callback=function() return 1 end, flags={1}}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f', callback=function() return 1 end, flags='no-writes'}",
                ],
            ),
            // The table form: an unknown key, no name, no callback, empty; a description
            // that is no string.
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f', callback=function() return 1 end, other=1}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{callback=function() return 1 end}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f'}",
                ],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nredis.register_function({})"],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f', callback=function() return 1 end, description={}}",
                ],
            ),
            // Wrong argument counts.
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nredis.register_function()"],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end, 3)",
                ],
            ),
            // A function registered twice by one library.
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end)\nredis.register_function('f', function() return 2 end)",
                ],
            ),
            // While loading, `redis` has no call, pcall, error_reply or setresp, and the
            // other globals do not exist.
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nredis.call('set', 'x', 1)"],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nredis.pcall('set', 'x', 1)"],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nreturn redis.error_reply('x')"],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nredis.setresp(3)"],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nlocal s = string.rep('x', 2)"],
            ),
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nerror('boom')"]),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nlocal m = math.floor(1)"],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nlocal m = tostring(1)"],
            ),
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nlocal g = _G"]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nlocal function g() return KEYS end\nredis.register_function('f', function() return 1 end) g()",
                ],
            ),
            // Nothing may be assigned: a global, a field of `redis`.
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nx = 1"]),
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nredis.x = 1"]),
            // Runtime errors, before and after a registration.
            (
                Exact,
                &["FUNCTION", "LOAD", "#!lua name=a\nlocal t = {} t.x.y = 1"],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end)\nlocal t = nil\nreturn t.x",
                ],
            ),
            // redis.log's argument checks.
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end) redis.log(99, 'x')",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function('f', function() return 1 end) redis.log(1)",
                ],
            ),
            // No functions registered.
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nlocal x = 1"]),
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\n"]),
            // Loading may not run for ever.
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a\nwhile true do end"]),
            // Nothing of the failed loads is left.
            (Exact, &["FUNCTION", "LIST"]),
            (Exact, &["FCALL", "f", "0"]),
        ],
    ),
    (
        "what a library registers: names, descriptions, flags, several functions",
        &[
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=numeric\nredis.register_function(1, function() return 'one' end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=described\n\
                     redis.register_function{function_name='d1', callback=function() return 'd1' end, description='the first'}\n\
                     redis.register_function{function_name='d2', callback=function() return 'd2' end, description=5}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=flagged\n\
                     redis.register_function{function_name='all_flags', callback=function() return 'flags' end, flags={'no-writes', 'allow-oom', 'allow-stale', 'no-cluster', 'allow-cross-slot-keys'}}\n\
                     redis.register_function{function_name='no_flags', callback=function() return 'none' end, flags={}}\n\
                     redis.register_function{function_name='reads', callback=function() return 'reads' end, flags={'no-writes', 'allow-stale'}}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=logged\n\
                     redis.log(redis.LOG_WARNING, 'loading', 1)\n\
                     local v, n = redis.REDIS_VERSION, redis.REDIS_VERSION_NUM\n\
                     redis.register_function('logged', function() return type(v) .. ' ' .. type(n) end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=looped\nfor i = 1, 5 do redis.register_function('loop' .. i, function() return i end) end",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=cased\n\
                     redis.register_function('lower_f', function() return 'f' end)\n\
                     redis.register_function('UPPER_F', function() return 'F' end)",
                ],
            ),
            (Libraries, &["FUNCTION", "LIST"]),
            (Libraries, &["FUNCTION", "LIST", "WITHCODE"]),
            (Exact, &["FCALL", "1", "0"]),
            (Exact, &["FCALL", "d2", "0"]),
            // (all_flags is not called: zankv, a cluster, refuses `no-cluster`.)
            (Exact, &["FCALL_RO", "reads", "0"]),
            (Exact, &["FCALL", "no_flags", "0"]),
            (Exact, &["FCALL_RO", "no_flags", "0"]),
            (Exact, &["FCALL", "logged", "0"]),
            (Exact, &["FCALL", "loop4", "0"]),
            (Exact, &["FCALL", "UPPER_F", "0"]),
            (Exact, &["FUNCTION", "STATS"]),
        ],
    ),
    (
        "LOAD, LOAD REPLACE, and names already taken",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "LOAD", LIB_A2]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FCALL", "fa2", "0"]),
            (Exact, &["FUNCTION", "LOAD", "REPLACE", LIB_A2]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FCALL", "fa2", "0"]),
            // Replaced again: the function only the replaced version had is gone.
            (Exact, &["FUNCTION", "LOAD", "replace", LIB_A1]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FCALL", "fa2", "0"]),
            // Another library may not register a function of liba, REPLACE or not.
            (Exact, &["FUNCTION", "LOAD", LIB_B_STEALS_FA]),
            (Exact, &["FUNCTION", "LOAD", "REPLACE", LIB_B_STEALS_FA]),
            (Exact, &["FUNCTION", "LOAD", LIB_B]),
            (Exact, &["FUNCTION", "LOAD", "REPLACE", "REPLACE", LIB_B]),
            // A replacement that fails keeps the library it would have replaced.
            (Exact, &["FUNCTION", "LOAD", "REPLACE", LIB_A_STEALS_FB]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "REPLACE",
                    "#!lua name=liba\nredis.register_function('fa', function() return 1 end",
                ],
            ),
            (
                Exact,
                &["FUNCTION", "LOAD", "REPLACE", "#!lua name=liba\nlocal x = 1"],
            ),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FCALL", "fb", "0"]),
            (Libraries, &["FUNCTION", "LIST", "WITHCODE"]),
            // A library freed of a function lets another take it.
            (Exact, &["FUNCTION", "DELETE", "libb"]),
            (Exact, &["FUNCTION", "LOAD", "REPLACE", LIB_A_STEALS_FB]),
            (Exact, &["FCALL", "fb", "0"]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FUNCTION", "LOAD", LIB_B_STEALS_FA]),
            (Exact, &["FCALL", "fa", "0"]),
            (Libraries, &["FUNCTION", "LIST"]),
        ],
    ),
];

const FCALLS: &[Scenario] = &[
    (
        "FCALL: keys and arguments are the callback's parameters; what it returns",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_CALLS]),
            (Exact, &["FCALL", "echo", "0"]),
            (Exact, &["FCALL", "echo", "1", "k"]),
            (Exact, &["FCALL", "echo", "0", "a1"]),
            (Exact, &["FCALL", "echo", "1", "k", "a1", "a2"]),
            (Exact, &["FCALL", "echo", "2", "k1", "k2", "a1", "a2"]),
            (Exact, &["FCALL", "echo", "1", "a\u{0}b\r\nc", "d\u{0}"]),
            (Exact, &["fcall", "echo", "0", "lower case"]),
            (Exact, &["FCALL", "table", "0"]),
            (Exact, &["FCALL", "error_reply", "0"]),
            (Exact, &["FCALL", "status_reply", "0"]),
            (Exact, &["FCALL", "sha", "0", "abc"]),
            (Exact, &["FCALL", "libraries", "0", "up"]),
            (Exact, &["HSET", "h", "f", "v"]),
            (Exact, &["FCALL", "resp3_hash", "1", "h"]),
            (Exact, &["FCALL", "resp3_types", "0"]),
            (Exact, &["FCALL", "setter", "1", "k", "v1"]),
            (Exact, &["GET", "k"]),
            (Exact, &["FCALL", "getter", "1", "k"]),
            (Exact, &["FCALL", "getter", "1", "missing"]),
        ],
    ),
    (
        "callbacks calling the library's local helpers, which see the script globals",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_HELPERS]),
            (Exact, &["FCALL", "via_helper", "1", "k", "abc"]),
            (Exact, &["GET", "k"]),
            (Exact, &["FCALL", "helper_keys", "0"]),
            (Exact, &["FCALL", "helper_assign", "0"]),
            (Exact, &["FCALL", "helper_undefined", "0"]),
            (Exact, &["SET", "n", "1"]),
            (Exact, &["FCALL", "inner_function", "1", "n"]),
            (Exact, &["SET", "n", "x"]),
            (Exact, &["FCALL", "inner_function", "1", "n"]),
            (Exact, &["FCALL", "upvalue", "0", "z"]),
        ],
    ),
    (
        "errors in functions: the function's name and line, the command's own",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_CALLS]),
            // KEYS and ARGV are no globals of a function.
            (Exact, &["FCALL", "keys_global", "1", "k"]),
            (Exact, &["FCALL", "argv_global", "0", "a"]),
            (Exact, &["FCALL", "raises", "0"]),
            (Exact, &["FCALL", "raises", "0", "there"]),
            (Exact, &["FCALL", "raises_table", "0"]),
            (Exact, &["FCALL", "unknown_command", "0"]),
            (Exact, &["FCALL", "wrong_type", "1", "w"]),
            (Exact, &["TYPE", "w"]),
            (Exact, &["LRANGE", "w", "0", "-1"]),
            (Exact, &["FCALL", "nil_index", "0"]),
            (Exact, &["FCALL", "bad_option", "1", "s"]),
            (Exact, &["EXISTS", "s"]),
            (Exact, &["SET", "n", "x"]),
            (Exact, &["FCALL", "caught", "1", "n"]),
            (Exact, &["FCALL", "pcall_reply", "1", "n"]),
            (Exact, &["FCALL", "eval_inside", "0"]),
            (Exact, &["FCALL", "fcall_inside", "0"]),
        ],
    ),
    (
        "FCALL_RO, and functions flagged no-writes",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_CALLS]),
            (Exact, &["SET", "k", "v0"]),
            // FCALL_RO runs only the functions flagged no-writes.
            (Exact, &["FCALL_RO", "echo", "0"]),
            (Exact, &["FCALL_RO", "setter", "1", "k", "v1"]),
            (Exact, &["FCALL_RO", "getter", "1", "k"]),
            (Exact, &["fcall_ro", "getter", "1", "k"]),
            // A function flagged no-writes may not write, whichever command runs it.
            (Exact, &["FCALL", "ro_setter", "1", "k", "v2"]),
            (Exact, &["FCALL_RO", "ro_setter", "1", "k", "v3"]),
            (Exact, &["GET", "k"]),
            (Exact, &["FCALL", "setter", "1", "k", "v4"]),
            (Exact, &["FCALL_RO", "getter", "1", "k"]),
        ],
    ),
    (
        "Function not found, and numkeys errors",
        &[
            (Exact, &["FCALL", "echo", "0"]),
            (Exact, &["FCALL_RO", "echo", "0"]),
            (Exact, &["FUNCTION", "LOAD", LIB_CALLS]),
            (Exact, &["FCALL", "nosuch", "0"]),
            (Exact, &["FCALL_RO", "nosuch", "1", "k"]),
            (Exact, &["FCALL", "", "0"]),
            (Exact, &["FCALL", "echo", "-1"]),
            (Exact, &["FCALL", "echo", "2", "k"]),
            (Exact, &["FCALL_RO", "getter", "3", "a", "b"]),
            (Exact, &["FCALL", "echo"]),
            (Exact, &["FCALL_RO", "getter"]),
            (Exact, &["FCALL"]),
        ],
    ),
];

const FUNCTION_MANAGEMENT: &[Scenario] = &[
    (
        "FUNCTION DELETE",
        &[
            (Exact, &["FUNCTION", "DELETE", "nosuch"]),
            (Exact, &["FUNCTION", "DELETE"]),
            (Exact, &["FUNCTION", "DELETE", "a", "b"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "LOAD", LIB_B]),
            (Exact, &["FUNCTION", "DELETE", "liba"]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FCALL", "fb", "0"]),
            (Libraries, &["FUNCTION", "LIST"]),
            (Exact, &["FUNCTION", "DELETE", "liba"]),
            // Library names are case-sensitive.
            (Exact, &["FUNCTION", "DELETE", "LIBB"]),
            (Exact, &["function", "delete", "libb"]),
            (Exact, &["FUNCTION", "LIST"]),
            (Exact, &["FCALL", "fb", "0"]),
            // A deleted library's name and functions are free again.
            (Exact, &["FUNCTION", "LOAD", LIB_A2]),
            (Exact, &["FCALL", "fa2", "0"]),
        ],
    ),
    (
        "FUNCTION FLUSH in every form; FLUSHALL keeps the libraries",
        &[
            (Exact, &["FUNCTION", "FLUSH"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "FLUSH"]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "FLUSH", "ASYNC"]),
            (Exact, &["FUNCTION", "LIST"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "LOAD", LIB_B]),
            (Exact, &["FUNCTION", "FLUSH", "SYNC"]),
            (Exact, &["FCALL", "fb", "0"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["function", "flush", "async"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            // A refused FLUSH keeps the libraries.
            (Exact, &["FUNCTION", "FLUSH", "BAD"]),
            (Exact, &["FCALL", "fa", "0"]),
            (Exact, &["SET", "k", "v"]),
            (Exact, &["FLUSHALL"]),
            (Exact, &["DBSIZE"]),
            (Exact, &["FCALL", "fa", "0"]),
            (Libraries, &["FUNCTION", "LIST"]),
        ],
    ),
    (
        "FUNCTION LIST with LIBRARYNAME and WITHCODE",
        &[
            (Exact, &["FUNCTION", "LIST"]),
            (Exact, &["FUNCTION", "LIST", "WITHCODE"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "LOAD", LIB_B]),
            (Exact, &["FUNCTION", "LOAD", LIB_OTHER]),
            (Libraries, &["FUNCTION", "LIST"]),
            (Libraries, &["FUNCTION", "LIST", "WITHCODE"]),
            (Libraries, &["FUNCTION", "LIST", "LIBRARYNAME", "lib*"]),
            (Libraries, &["FUNCTION", "LIST", "LIBRARYNAME", "[a-l]iba"]),
            (
                Libraries,
                &["function", "list", "libraryname", "*b", "withcode"],
            ),
            (
                Libraries,
                &["FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME", "oth?r"],
            ),
            (Exact, &["FUNCTION", "LIST", "LIBRARYNAME", "nomatch"]),
            (Exact, &["FUNCTION", "LIST", "LIBRARYNAME", "libb"]),
            (Exact, &["FUNCTION", "LIST", "WITHCODE", "WITHCODE"]),
            (
                Exact,
                &["FUNCTION", "LIST", "LIBRARYNAME", "a", "LIBRARYNAME", "b"],
            ),
            (Exact, &["FUNCTION", "LIST", "FOO"]),
        ],
    ),
    (
        "FUNCTION STATS, KILL and HELP with nothing running",
        &[
            (Exact, &["FUNCTION", "STATS"]),
            (Exact, &["FUNCTION", "LOAD", LIB_A2]),
            (Exact, &["FUNCTION", "LOAD", LIB_OTHER]),
            (Exact, &["FUNCTION", "STATS"]),
            (Exact, &["function", "stats"]),
            (Exact, &["FUNCTION", "STATS", "x"]),
            (Exact, &["FUNCTION", "KILL"]),
            (Exact, &["function", "kill"]),
            (Exact, &["FUNCTION", "KILL", "x"]),
            (Exact, &["FUNCTION", "DELETE", "other"]),
            (Exact, &["FUNCTION", "STATS"]),
            (Exact, &["FUNCTION", "HELP"]),
            (Exact, &["function", "help"]),
            (Exact, &["FUNCTION", "HELP", "x"]),
            (Exact, &["FUNCTION"]),
            (Exact, &["FUNCTION", "NOSUCH"]),
            (Exact, &["FUNCTION", "DUMP", "x"]),
            (Exact, &["FUNCTION", "RESTORE"]),
            (Exact, &["FUNCTION", "FLUSH"]),
            (Exact, &["FUNCTION", "STATS"]),
        ],
    ),
];

const FUNCTION_EFFECTS: &[Scenario] = &[
    (
        "functions write keys of every type; plain commands read them back",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_EFFECTS]),
            (
                Exact,
                &[
                    "FCALL", "fill", "6", "str", "cnt", "list", "hash", "set", "zset", "v1",
                ],
            ),
            (Exact, &["GET", "str"]),
            (Exact, &["GET", "cnt"]),
            (Exact, &["LRANGE", "list", "0", "-1"]),
            (Pairs, &["HGETALL", "hash"]),
            (Items, &["SMEMBERS", "set"]),
            (Exact, &["ZRANGE", "zset", "0", "-1", "WITHSCORES"]),
            (Exact, &["TYPE", "str"]),
            (Exact, &["TYPE", "list"]),
            (Exact, &["TYPE", "hash"]),
            (Exact, &["TYPE", "set"]),
            (Exact, &["TYPE", "zset"]),
            (Ttl, &["TTL", "str"]),
            (Ttl, &["TTL", "list"]),
            (Ttl, &["TTL", "hash"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
            (Exact, &["FCALL_RO", "inspect", "1", "list"]),
            (Exact, &["FCALL", "inspect", "1", "missing"]),
            (
                Exact,
                &[
                    "FCALL", "drain", "6", "str", "cnt", "list", "hash", "set", "zset",
                ],
            ),
            (Exact, &["EXISTS", "cnt"]),
            (Exact, &["LRANGE", "list", "0", "-1"]),
            (Exact, &["HGETALL", "hash"]),
            (Items, &["SMEMBERS", "set"]),
            (Exact, &["ZRANGE", "zset", "0", "-1", "WITHSCORES"]),
            (Exact, &["TTL", "str"]),
            (Ttl, &["TTL", "list"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
        ],
    ),
    (
        "a function that fails halfway keeps the writes before the failure",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_EFFECTS]),
            (Exact, &["FCALL", "half", "2", "a", "l"]),
            (Exact, &["GET", "a"]),
            (Exact, &["LRANGE", "l", "0", "-1"]),
            (Exact, &["FCALL", "half", "2", "a", "l"]),
            (Exact, &["LRANGE", "l", "0", "-1"]),
            // A read-only run of it writes nothing.
            (Exact, &["FCALL_RO", "half", "2", "b", "m"]),
            (Exact, &["EXISTS", "b", "m"]),
            (Items, &["KEYS", "*"]),
            (Exact, &["DBSIZE"]),
        ],
    ),
];

const FUNCTION_DUMPS: &[Scenario] = &[
    (
        "FUNCTION DUMP, FLUSH, then RESTORE with each policy",
        &[
            // The payload of no library is the same on both.
            (Exact, &["FUNCTION", "DUMP"]),
            (Exact, &["FUNCTION", "LOAD", LIB_DUMP_A]),
            (Exact, &["FUNCTION", "LOAD", LIB_DUMP_B]),
            (Dumped, &["FUNCTION", "DUMP"]),
            (Exact, &["FUNCTION", "FLUSH"]),
            (Exact, &["FCALL", "fa", "0", "x"]),
            // APPEND, the default: into no libraries.
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP]),
            (Exact, &["FCALL", "fa", "0", "x"]),
            (Exact, &["FCALL", "fb9", "0"]),
            (Libraries, &["FUNCTION", "LIST", "WITHCODE"]),
            // APPEND onto the same libraries fails, and changes nothing (zankv words the
            // error differently: see EDGE_CASES).
            (Failed, &["FUNCTION", "RESTORE", OWN_DUMP]),
            (Failed, &["FUNCTION", "RESTORE", OWN_DUMP, "APPEND"]),
            (Libraries, &["FUNCTION", "LIST"]),
            // REPLACE: the payload's versions win.
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP, "REPLACE"]),
            (Exact, &["FUNCTION", "LOAD", "REPLACE", LIB_DUMP_A2]),
            (Exact, &["FCALL", "fa", "0", "x"]),
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP, "replace"]),
            (Exact, &["FCALL", "fa", "0", "x"]),
            // REPLACE fails whole when a payload's function is another library's.
            (Exact, &["FUNCTION", "DELETE", "libb"]),
            (Exact, &["FUNCTION", "LOAD", LIB_DUMP_C]),
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP, "REPLACE"]),
            (Exact, &["FCALL", "fb1", "0"]),
            (Exact, &["FCALL", "fb2", "0"]),
            // FLUSH: only the payload's libraries are left.
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP, "FLUSH"]),
            (Exact, &["FUNCTION", "LIST", "LIBRARYNAME", "libc"]),
            (Exact, &["FCALL", "fb1", "0"]),
            (Libraries, &["FUNCTION", "LIST"]),
            // Bad policies, bad payloads: nothing changes.
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP, "BAD"]),
            (Exact, &["FUNCTION", "RESTORE", "garbage"]),
            (Exact, &["FUNCTION", "RESTORE", CUT_DUMP]),
            (Exact, &["FUNCTION", "RESTORE", CUT_DUMP, "FLUSH"]),
            (Exact, &["FUNCTION", "RESTORE", "garbage", "FLUSH"]),
            (Exact, &["FUNCTION", "RESTORE", "garbage", "BAD"]),
            (Exact, &["FCALL", "fa", "0", "kept"]),
            (Exact, &["FUNCTION", "RESTORE"]),
            (Exact, &["FUNCTION", "DUMP", "x"]),
            (Exact, &["function", "restore", OWN_DUMP, "flush"]),
            (Exact, &["FUNCTION", "STATS"]),
        ],
    ),
    (
        "a FUNCTION DUMP of each system restored into the other",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_DUMP_A]),
            (Exact, &["FUNCTION", "LOAD", LIB_DUMP_B]),
            (Dumped, &["FUNCTION", "DUMP"]),
            (Exact, &["FUNCTION", "FLUSH"]),
            // redis-server restores zankv's payload, zankv redis-server's.
            (Exact, &["FUNCTION", "RESTORE", OTHER_DUMP]),
            (Exact, &["FCALL", "fa", "0", "x"]),
            (Exact, &["FCALL", "fb0", "0"]),
            (Exact, &["FCALL", "fb9", "0"]),
            (Libraries, &["FUNCTION", "LIST", "WITHCODE"]),
            (Exact, &["FUNCTION", "RESTORE", OTHER_DUMP, "REPLACE"]),
            (Exact, &["FUNCTION", "LOAD", LIB_DUMP_C]),
            (Exact, &["FUNCTION", "RESTORE", OTHER_DUMP, "FLUSH"]),
            (Exact, &["FCALL", "fb1", "0"]),
            (Exact, &["FCALL_RO", "fb5", "0"]),
            (Exact, &["FUNCTION", "STATS"]),
            // And back: each restores the payload it now makes.
            (Dumped, &["FUNCTION", "DUMP"]),
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP, "FLUSH"]),
            (Exact, &["FCALL", "fa", "0", "y"]),
        ],
    ),
];

/// Where zankv answers differently from redis-server 7.0 (found writing these tests):
/// each is a scenario of its own, so that the test lists every one. Not run through the
/// proxy, which forwards these as they are.
const EDGE_CASES: &[Scenario] = &[
    (
        "a #! line without a line end is invalid metadata",
        &[
            (Exact, &["FUNCTION", "LOAD", "#!lua name=a"]),
            (Exact, &["FUNCTION", "LOAD", "#!"]),
        ],
    ),
    (
        "the metadata is read before the engine is looked up",
        &[
            (Exact, &["FUNCTION", "LOAD", "#!python\nreturn 1"]),
            (Exact, &["FUNCTION", "LOAD", "#!\nreturn 1"]),
            (
                Exact,
                &["FUNCTION", "LOAD", "#!python name=a name=b\nreturn 1"],
            ),
        ],
    ),
    (
        "metadata words are split at any white space, the engine is the first",
        &[
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=crlf\r\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\tfoo\nredis.register_function('g', function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#! lua name=spaced\nredis.register_function('h', function() return 1 end)",
                ],
            ),
        ],
    ),
    (
        "name= in any letter case",
        &[
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua NAME=upper\nredis.register_function('f', function() return 1 end)",
                ],
            ),
            (Exact, &["FCALL", "f", "0"]),
        ],
    ),
    (
        "register_function with one argument that is no table",
        &[(
            Exact,
            &["FUNCTION", "LOAD", "#!lua name=a\nredis.register_function('f')"],
        )],
    ),
    (
        "register_function's argument type errors name the argument",
        &[
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function({}, function() return 1 end)",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name={}, callback=function() return 1 end}",
                ],
            ),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\nredis.register_function{function_name='f', callback=5}",
                ],
            ),
        ],
    ),
    (
        "flags are listed in Redis's order, once each, from the table's array part",
        &[
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=a\n\
                     redis.register_function{function_name='f1', callback=function() return 1 end, flags={'allow-oom', 'no-writes'}}\n\
                     redis.register_function{function_name='f2', callback=function() return 1 end, flags={'no-writes', 'no-writes'}}\n\
                     redis.register_function{function_name='f3', callback=function() return 1 end, flags={x='no-writes'}}",
                ],
            ),
            (Libraries, &["FUNCTION", "LIST"]),
            (Exact, &["FCALL", "f3", "0"]),
        ],
    ),
    (
        "function names are found in any letter case",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FCALL", "FA", "0"]),
            (Exact, &["FCALL_RO", "Fa", "0"]),
        ],
    ),
    (
        "a function name another library has in another letter case is taken",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (
                Exact,
                &[
                    "FUNCTION",
                    "LOAD",
                    "#!lua name=libb\nredis.register_function('FA', function() return 'b' end)",
                ],
            ),
        ],
    ),
    (
        "LIBRARYNAME's pattern ignores letter case",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FUNCTION", "LIST", "LIBRARYNAME", "LIB*"]),
        ],
    ),
    (
        "FUNCTION LIST LIBRARYNAME without a pattern",
        &[(Exact, &["FUNCTION", "LIST", "LIBRARYNAME"])],
    ),
    (
        "FCALL with a numkeys that is no number",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Exact, &["FCALL", "fa", "x"]),
        ],
    ),
    (
        "FUNCTION FLUSH and RESTORE with an argument too many",
        &[
            (Exact, &["FUNCTION", "FLUSH", "SYNC", "ASYNC"]),
            (Exact, &["FUNCTION", "RESTORE", "garbage", "FLUSH", "x"]),
        ],
    ),
    (
        "RESTORE APPEND onto a library of the same name",
        &[
            (Exact, &["FUNCTION", "LOAD", LIB_A1]),
            (Dumped, &["FUNCTION", "DUMP"]),
            (Exact, &["FUNCTION", "RESTORE", OWN_DUMP]),
        ],
    ),
];

/// Every area of scenarios, named for a report (the known differences of [`EDGE_CASES`]
/// left out).
const AREAS: &[(&str, &[Scenario])] = &[
    ("conversions", CONVERSIONS),
    ("errors", ERRORS),
    ("script cache", CACHE),
    ("effects", EFFECTS),
    ("function loading", FUNCTION_LOADING),
    ("fcall", FCALLS),
    ("function management", FUNCTION_MANAGEMENT),
    ("function effects", FUNCTION_EFFECTS),
    ("function dumps", FUNCTION_DUMPS),
];

/// Whether redis's reply `a` and zankv's reply `z` agree, as `norm` compares them.
fn same(norm: Norm, a: &Frame, z: &Frame) -> bool {
    match norm {
        Norm::Exact => a == z,
        Norm::Items => sorted_items(a.clone()) == sorted_items(z.clone()),
        Norm::Pairs => sorted_pairs(a.clone()) == sorted_pairs(z.clone()),
        Norm::Ttl => match (a, z) {
            (Frame::Integer(x), Frame::Integer(y)) if *x >= 0 && *y >= 0 => (x - y).abs() <= 1,
            _ => a == z,
        },
        Norm::Libraries => sorted_libraries(a.clone()) == sorted_libraries(z.clone()),
        Norm::Dumped => matches!((a, z), (Frame::Bulk(_), Frame::Bulk(_))),
        Norm::Failed => a.is_error() && z.is_error(),
    }
}

/// FUNCTION LIST's reply with its libraries sorted by name, and each library's functions
/// by name; any other reply unchanged. A library and a function are maps in RESP3 and
/// flat name/value arrays in RESP2.
fn sorted_libraries(frame: Frame) -> Frame {
    match frame {
        Frame::Array(mut libraries) => {
            for library in &mut libraries {
                if let Some(Frame::Array(functions)) = field_mut(library, b"functions") {
                    functions.sort_by_key(|f| field(f, b"name").map(Frame::sort_key));
                }
            }
            libraries.sort_by_key(|l| field(l, b"library_name").map(Frame::sort_key));
            Frame::Array(libraries)
        }
        other => other,
    }
}

/// The value of field `name` of a map reply, or of a flat name/value array.
fn field<'a>(frame: &'a Frame, name: &[u8]) -> Option<&'a Frame> {
    match frame {
        Frame::Map(pairs) => pairs
            .iter()
            .find(|pair| pair.0.as_bytes() == Some(name))
            .map(|pair| &pair.1),
        Frame::Array(items) => items
            .chunks(2)
            .find(|pair| pair.len() == 2 && pair[0].as_bytes() == Some(name))
            .map(|pair| &pair[1]),
        _ => None,
    }
}

/// Like [`field`], for changing the value.
fn field_mut<'a>(frame: &'a mut Frame, name: &[u8]) -> Option<&'a mut Frame> {
    match frame {
        Frame::Map(pairs) => pairs
            .iter_mut()
            .find(|pair| pair.0.as_bytes() == Some(name))
            .map(|pair| &mut pair.1),
        Frame::Array(items) => items
            .chunks_mut(2)
            .find(|pair| pair.len() == 2 && pair[0].as_bytes() == Some(name))
            .map(|pair| &mut pair[1]),
        _ => None,
    }
}

/// Empties both databases and both script caches, and deletes both sides' libraries of
/// functions (a proxy's nodes keep theirs between pairs; FLUSHALL leaves libraries).
fn reset(pair: &mut Pair) {
    let commands: [&[&str]; 3] = [&["SCRIPT", "FLUSH"], &["FUNCTION", "FLUSH"], &["FLUSHALL"]];
    for client in [&mut pair.redis, &mut pair.zankv] {
        for command in commands {
            assert_eq!(
                client.cmd_str(command),
                Frame::simple("OK"),
                "{} on port {}",
                command.join(" "),
                client.port()
            );
        }
    }
}

/// The arguments of a step as sent to one side (`this`: 0 for redis-server, 1 for zankv),
/// with the payloads of the scenario's last FUNCTION DUMP (`dumps`: redis-server's, then
/// zankv's) put in for [`OWN_DUMP`], [`OTHER_DUMP`] and [`CUT_DUMP`].
fn expand(words: &[&str], dumps: &[Vec<u8>; 2], this: usize) -> Vec<Vec<u8>> {
    words
        .iter()
        .map(|&word| match word {
            OWN_DUMP => dumps[this].clone(),
            OTHER_DUMP => dumps[1 - this].clone(),
            CUT_DUMP => {
                let dump = &dumps[this];
                dump[..dump.len().saturating_sub(1)].to_vec()
            }
            word => b(word),
        })
        .collect()
}

/// Runs `scenarios` on a fresh pair of `target` with the client in RESP2, then on another
/// in RESP3. Returns the first difference of every scenario that has one: a scenario stops
/// there (what follows may depend on it), the next one starts afresh.
fn run_scenarios(scenarios: &[Scenario], target: Target) -> Vec<String> {
    let mut mismatches = Vec::new();
    for resp3 in [false, true] {
        let proto = if resp3 { "RESP3" } else { "RESP2" };
        let mut pair = must_start_pair_on(resp3, target);
        for (name, steps) in scenarios {
            reset(&mut pair);
            let mut dumps: [Vec<u8>; 2] = Default::default();
            for (i, (norm, words)) in steps.iter().enumerate() {
                let args = expand(words, &dumps, 0);
                let a = pair.redis.cmd_vec(&args);
                let z = pair.zankv.cmd_vec(&expand(words, &dumps, 1));
                if let (Dumped, Frame::Bulk(x), Frame::Bulk(y)) = (norm, &a, &z) {
                    dumps = [x.clone(), y.clone()];
                }
                if !same(*norm, &a, &z) {
                    mismatches.push(format!(
                        "scenario {name:?} ({proto}), step {i}: {}\n    redis: {a}\n    zankv: {z}",
                        show_cmd(&args)
                    ));
                    break;
                }
            }
        }
    }
    mismatches
}

/// Panics listing `mismatches`, if there are any.
fn assert_none(what: &str, mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "script differential ({what}): {} scenario(s) differ from redis-server:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn conversions_match_redis_on_a_node() {
    assert_none("conversions", &run_scenarios(CONVERSIONS, Target::Node));
}

#[test]
fn errors_match_redis_on_a_node() {
    assert_none("errors", &run_scenarios(ERRORS, Target::Node));
}

#[test]
fn the_script_cache_matches_redis_on_a_node() {
    assert_none("script cache", &run_scenarios(CACHE, Target::Node));
}

#[test]
fn effects_match_redis_on_a_node() {
    assert_none("effects", &run_scenarios(EFFECTS, Target::Node));
}

#[test]
fn function_loading_matches_redis_on_a_node() {
    assert_none(
        "function loading",
        &run_scenarios(FUNCTION_LOADING, Target::Node),
    );
}

#[test]
fn fcall_matches_redis_on_a_node() {
    assert_none("fcall", &run_scenarios(FCALLS, Target::Node));
}

#[test]
fn function_management_matches_redis_on_a_node() {
    assert_none(
        "function management",
        &run_scenarios(FUNCTION_MANAGEMENT, Target::Node),
    );
}

#[test]
fn function_effects_match_redis_on_a_node() {
    assert_none(
        "function effects",
        &run_scenarios(FUNCTION_EFFECTS, Target::Node),
    );
}

#[test]
fn function_dumps_match_redis_on_a_node() {
    assert_none(
        "function dumps",
        &run_scenarios(FUNCTION_DUMPS, Target::Node),
    );
}

/// The known differences of [`EDGE_CASES`]: fails, listing each, until zankv answers them
/// as redis-server does.
#[test]
fn function_edge_cases_match_redis_on_a_node() {
    assert_none(
        "function edge cases",
        &run_scenarios(EDGE_CASES, Target::Node),
    );
}

// ---------------------------------------------------------------------------------------
// Seeded random sequences
// ---------------------------------------------------------------------------------------

const SUITE: Suite = Suite {
    name: "script differential",
    target: "script_differential",
    skips: false,
};

/// The keys of the random sequences: each template has its usual keys, and now and then
/// takes any key (then meets WRONGTYPE).
const STRING_KEYS: &[&str] = &["s1", "s2"];
const LIST_KEYS: &[&str] = &["l1", "l2"];
const HASH_KEYS: &[&str] = &["h1", "h2"];
const ZSET_KEYS: &[&str] = &["z1"];
const ALL_KEYS: &[&str] = &["s1", "s2", "l1", "l2", "h1", "h2", "z1"];
/// Values of plain SETs: counters, lock tokens, and a string INCR refuses.
const VALUES: &[&str] = &["1", "7", "t1", "x", ""];
const TOKENS: &[&str] = &["t1", "t2"];
const ELEMENTS: &[&str] = &["a", "b", ""];
const FIELDS: &[&str] = &["f1", "f2", "f3"];
const SCORES: &[&str] = &["1", "2.5", "-1", "0.1", "10", "inf"];
const MEMBERS: &[&str] = &["m", "n", "o", "p"];

/// The scripts of the random sequences.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Template {
    /// A rate limiter: INCR, EXPIRE on the first hit, 0 past the cap.
    RateLimit,
    /// A lock taken: SET NX EX.
    Acquire,
    /// A lock released: DEL if the value is the caller's token (compare-and-delete).
    Release,
    /// LPUSH then LTRIM to a length, answering the list.
    PushTrim,
    /// HINCRBY, answering the new value and HLEN.
    HashIncr,
    /// ZADD then ZRANGE WITHSCORES.
    ZsetRange,
    /// ZADD, ZSCORE and ZRANGE WITHSCORES after `redis.setresp(3)`.
    ZsetRangeResp3,
    /// Reads a key by its TYPE; sent with EVAL_RO or EVALSHA_RO.
    Inspect,
    /// A string moved to the end of a list (two keys).
    Move,
    /// No keys: its arguments and a SHA1.
    Keyless,
}

/// Every template, in the order they are loaded at the start of a run.
const TEMPLATES: &[Template] = &[
    Template::RateLimit,
    Template::Acquire,
    Template::Release,
    Template::PushTrim,
    Template::HashIncr,
    Template::ZsetRange,
    Template::ZsetRangeResp3,
    Template::Inspect,
    Template::Move,
    Template::Keyless,
];

impl Template {
    fn body(self) -> &'static str {
        match self {
            Template::RateLimit => {
                "local n = redis.call('incr', KEYS[1])\n\
                 if n == 1 then redis.call('expire', KEYS[1], ARGV[2]) end\n\
                 if n > tonumber(ARGV[1]) then return 0 end\n\
                 return n"
            }
            Template::Acquire => "return redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])",
            Template::Release => {
                "if redis.call('get',KEYS[1]) == ARGV[1] then return redis.call('del',KEYS[1]) else return 0 end"
            }
            Template::PushTrim => {
                "redis.call('lpush', KEYS[1], ARGV[1])\n\
                 redis.call('ltrim', KEYS[1], 0, tonumber(ARGV[2]) - 1)\n\
                 return redis.call('lrange', KEYS[1], 0, -1)"
            }
            Template::HashIncr => {
                "local v = redis.call('hincrby', KEYS[1], ARGV[1], ARGV[2])\n\
                 return {v, redis.call('hlen', KEYS[1])}"
            }
            Template::ZsetRange => {
                "redis.call('zadd', KEYS[1], ARGV[1], ARGV[2])\n\
                 return redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')"
            }
            Template::ZsetRangeResp3 => {
                "redis.setresp(3)\n\
                 redis.call('zadd', KEYS[1], ARGV[1], ARGV[2])\n\
                 return {redis.call('zscore', KEYS[1], ARGV[2]), redis.call('zrange', KEYS[1], 0, -1, 'WITHSCORES')}"
            }
            Template::Inspect => {
                "local t = redis.call('type', KEYS[1]).ok\n\
                 if t == 'string' then return {t, redis.call('get', KEYS[1])} end\n\
                 if t == 'list' then return {t, redis.call('llen', KEYS[1]), redis.call('lindex', KEYS[1], -1)} end\n\
                 if t == 'hash' then return {t, redis.call('hlen', KEYS[1]), redis.call('hget', KEYS[1], 'f1')} end\n\
                 if t == 'zset' then return {t, redis.call('zcard', KEYS[1]), redis.call('zrange', KEYS[1], 0, 0)} end\n\
                 return {t, redis.call('exists', KEYS[1])}"
            }
            Template::Move => {
                "local v = redis.call('get', KEYS[1])\n\
                 if not v then return false end\n\
                 redis.call('rpush', KEYS[2], v)\n\
                 redis.call('del', KEYS[1])\n\
                 return redis.call('llen', KEYS[2])"
            }
            Template::Keyless => "return {ARGV[1], #ARGV, redis.sha1hex(ARGV[1])}",
        }
    }

    /// Whether it only reads (it is sent with EVAL_RO or EVALSHA_RO).
    fn read_only(self) -> bool {
        self == Template::Inspect
    }

    /// The KEYS and ARGV of one run.
    fn arguments(self, rng: &mut Rand) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        match self {
            Template::RateLimit => {
                let key = random_key(rng, STRING_KEYS);
                let cap = rng.small_int(1, 4);
                (vec![key], vec![cap, rel_secs(rng)])
            }
            Template::Acquire => {
                let key = random_key(rng, STRING_KEYS);
                let token = b(rng.pick(TOKENS));
                (vec![key], vec![token, rel_secs(rng)])
            }
            Template::Release => {
                let key = random_key(rng, STRING_KEYS);
                (vec![key], vec![b(rng.pick(TOKENS))])
            }
            Template::PushTrim => {
                let key = random_key(rng, LIST_KEYS);
                let element = b(rng.pick(ELEMENTS));
                // Now and then a length that is no number: the script fails after LPUSH.
                let keep = if rng.chance(5) {
                    b("x")
                } else {
                    rng.small_int(0, 4)
                };
                (vec![key], vec![element, keep])
            }
            Template::HashIncr => {
                let key = random_key(rng, HASH_KEYS);
                let field = b(rng.pick(FIELDS));
                let by = if rng.chance(5) {
                    b("1.5")
                } else {
                    rng.small_int(-3, 5)
                };
                (vec![key], vec![field, by])
            }
            Template::ZsetRange | Template::ZsetRangeResp3 => {
                let key = random_key(rng, ZSET_KEYS);
                let score = if rng.chance(4) {
                    b("x")
                } else {
                    b(rng.pick(SCORES))
                };
                (vec![key], vec![score, b(rng.pick(MEMBERS))])
            }
            Template::Inspect => (vec![b(rng.pick(ALL_KEYS))], vec![]),
            Template::Move => {
                let from = random_key(rng, STRING_KEYS);
                let to = random_key(rng, LIST_KEYS);
                (vec![from, to], vec![])
            }
            Template::Keyless => {
                let count = rng.usize(0..3);
                let argv: Vec<Vec<u8>> = (0..count).map(|_| b(rng.pick(VALUES))).collect();
                (vec![], argv)
            }
        }
    }
}

/// One of `usual`, or now and then any key.
fn random_key(rng: &mut Rand, usual: &[&str]) -> Vec<u8> {
    if rng.chance(10) {
        b(rng.pick(ALL_KEYS))
    } else {
        b(rng.pick(usual))
    }
}

/// A distinct relative expiration in seconds, in decimal.
fn rel_secs(rng: &mut Rand) -> Vec<u8> {
    rng.fresh_rel_secs().to_string().into_bytes()
}

/// What a random step does.
#[derive(Clone, Copy)]
enum Kind {
    /// Runs a template.
    Script(Template),
    /// A plain command.
    Plain,
    /// SCRIPT LOAD of a template.
    Load,
    /// SCRIPT FLUSH: EVALSHA answers NOSCRIPT until EVAL or SCRIPT LOAD caches the body.
    Flush,
}

const MENU: &[(Kind, u32)] = &[
    (Kind::Script(Template::RateLimit), 8),
    (Kind::Script(Template::Acquire), 6),
    (Kind::Script(Template::Release), 6),
    (Kind::Script(Template::PushTrim), 7),
    (Kind::Script(Template::HashIncr), 7),
    (Kind::Script(Template::ZsetRange), 5),
    (Kind::Script(Template::ZsetRangeResp3), 4),
    (Kind::Script(Template::Inspect), 8),
    (Kind::Script(Template::Move), 5),
    (Kind::Script(Template::Keyless), 2),
    (Kind::Plain, 38),
    (Kind::Load, 2),
    (Kind::Flush, 1),
];

/// A run of `template`: EVAL or EVALSHA (its name `sha` in lower or upper case), their
/// `_RO` forms for a read-only template or now and then for one that writes.
fn script_call(rng: &mut Rand, template: Template, sha: &str) -> Vec<Vec<u8>> {
    let (keys, argv) = template.arguments(rng);
    let read_only = template.read_only() || rng.chance(3);
    let by_sha = rng.chance(45);
    let name = match (by_sha, read_only) {
        (false, false) => "EVAL",
        (false, true) => "EVAL_RO",
        (true, false) => "EVALSHA",
        (true, true) => "EVALSHA_RO",
    };
    let name = rng.name(name);
    let script = if !by_sha {
        b(template.body())
    } else if rng.chance(10) {
        sha.to_ascii_uppercase().into_bytes()
    } else {
        b(sha)
    };
    let mut args = vec![name, script, keys.len().to_string().into_bytes()];
    args.extend(keys);
    args.extend(argv);
    args
}

/// A plain command, and how its replies are compared.
fn plain(rng: &mut Rand) -> (Norm, Vec<Vec<u8>>) {
    let key = b(rng.pick(ALL_KEYS));
    match rng.usize(0..11) {
        0 | 1 => (Exact, vec![rng.name("GET"), key]),
        2 => {
            let name = rng.name("SET");
            (Exact, vec![name, key, b(rng.pick(VALUES))])
        }
        3 => (Exact, vec![rng.name("DEL"), key]),
        4 => (Exact, vec![rng.name("LRANGE"), key, b("0"), b("-1")]),
        5 => (Pairs, vec![rng.name("HGETALL"), key]),
        6 => {
            let name = rng.name("ZRANGE");
            let withscores = rng.word("WITHSCORES");
            (Exact, vec![name, key, b("0"), b("-1"), withscores])
        }
        7 | 8 => (Ttl, vec![rng.name("TTL"), key]),
        9 => {
            let name = rng.name("EXPIRE");
            (Exact, vec![name, key, rel_secs(rng)])
        }
        _ => (Exact, vec![rng.name("TYPE"), key]),
    }
}

/// One random step, and how its replies are compared; `shas` names every template.
fn random_step(rng: &mut Rand, shas: &[(Template, String)]) -> (Norm, Vec<Vec<u8>>) {
    match rng.weighted(MENU) {
        Kind::Script(template) => {
            let sha = shas
                .iter()
                .find(|(t, _)| *t == template)
                .map(|(_, sha)| sha.as_str())
                .expect("every template is loaded first");
            (Exact, script_call(rng, template, sha))
        }
        Kind::Plain => plain(rng),
        Kind::Load => {
            let template = TEMPLATES[rng.usize(..TEMPLATES.len())];
            let name = rng.name("SCRIPT");
            let load = rng.word("LOAD");
            (Exact, vec![name, load, b(template.body())])
        }
        Kind::Flush => {
            let mut args = vec![rng.name("SCRIPT"), rng.word("FLUSH")];
            match rng.usize(0..3) {
                0 => args.push(rng.word("ASYNC")),
                1 => args.push(rng.word("SYNC")),
                _ => {}
            }
            (Exact, args)
        }
    }
}

/// Sends command `#i` to both servers, compares the replies as `norm` says (panicking with
/// `log`'s report if they differ), records it; returns redis's reply.
fn run_step(pair: &mut Pair, log: &mut RunLog, i: usize, norm: Norm, args: &[Vec<u8>]) -> Frame {
    let cmd = show_cmd(args);
    let a = pair.redis.cmd_vec(args);
    let z = pair.zankv.cmd_vec(args);
    if !same(norm, &a, &z) {
        panic!(
            "{}",
            log.report(&i.to_string(), &cmd, &format!("redis: {a}\n  zankv: {z}"))
        );
    }
    log.record(i, args, &cmd, &a);
    a
}

/// A key's contents for the end-of-run comparison.
fn content(client: &mut Client, key: &[u8], kind: Option<&[u8]>) -> Frame {
    match kind {
        Some(b"string") => client.cmd(&[b"GET", key]),
        Some(b"list") => client.cmd(&[b"LRANGE", key, b"0", b"-1"]),
        Some(b"hash") => sorted_pairs(client.cmd(&[b"HGETALL", key])),
        Some(b"set") => sorted_items(client.cmd(&[b"SMEMBERS", key])),
        Some(b"zset") => client.cmd(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]),
        _ => Frame::Null,
    }
}

/// One seeded sequence of `steps` random steps on a fresh pair of `target`, after every
/// template is loaded into both caches; then the two databases are compared.
fn run_random(seed: u64, steps: usize, target: Target, resp3: bool) {
    let started = Instant::now();
    let mut pair = must_start_pair_on(resp3, target);
    reset(&mut pair);
    let mut rng = Rand::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    eprintln!(
        "script differential: seed {seed}, {steps} steps, {}",
        log.proto()
    );
    // Every template in both caches, named by redis's answer.
    let mut shas = Vec::with_capacity(TEMPLATES.len());
    for (i, &template) in TEMPLATES.iter().enumerate() {
        let args = [b("SCRIPT"), b("LOAD"), b(template.body())];
        let reply = run_step(&mut pair, &mut log, i, Exact, &args);
        let sha = match reply.as_bytes() {
            Some(sha) => String::from_utf8_lossy(sha).into_owned(),
            None => panic!("seed {seed}: SCRIPT LOAD answered {reply}"),
        };
        shas.push((template, sha));
    }
    for i in TEMPLATES.len()..TEMPLATES.len() + steps {
        let (norm, args) = random_step(&mut rng, &shas);
        run_step(&mut pair, &mut log, i, norm, &args);
    }
    compare_final_state(&mut pair, &log, content, |tolerance, a, z| {
        let close = match (tolerance, a, z) {
            (Some(ms), Frame::Integer(x), Frame::Integer(y)) => {
                *x >= 0 && *y >= 0 && (x - y).abs() <= ms
            }
            _ => false,
        };
        if close || a == z {
            Ok(())
        } else {
            Err("the two differ".to_string())
        }
    });
    log.print_stats();
    eprintln!(
        "script differential: seed {seed} ({}): {steps} steps in {:?}",
        log.proto(),
        started.elapsed()
    );
}

#[test]
fn random_scripts_match_redis_on_a_node() {
    for seed in seeds(&[1, 2]) {
        run_random(seed, 300, Target::Node, seed % 2 == 0);
    }
}

/// Every scenario and two seeds through a proxy in front of PD and three storage nodes
/// holding a one-partition namespace with three replicas.
#[test]
fn scripts_match_redis_through_the_proxy() {
    let cluster = support::proxy::ProxiedCluster::must_start(1, 3, "");
    let target = Target::Proxy(cluster.proxy.port);
    let mut mismatches = Vec::new();
    for (area, scenarios) in AREAS {
        mismatches.extend(
            run_scenarios(scenarios, target)
                .into_iter()
                .map(|m| format!("{area}: {m}")),
        );
    }
    assert_none("through the proxy", &mismatches);
    for seed in seeds(&[3, 4]) {
        run_random(seed, 200, target, seed % 2 == 0);
    }
    let metrics = cluster.proxy.metrics();
    for command in ["eval", "evalsha", "eval_ro", "fcall", "fcall_ro"] {
        assert!(
            metrics.contains(&format!(
                "zankv_proxy_commands_total{{command=\"{command}\"}}"
            )),
            "the proxy forwarded {command}: {metrics}"
        );
    }
}
