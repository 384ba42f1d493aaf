//! BLPOP, BRPOP, BRPOPLPUSH, BLMOVE, BLMPOP, BZPOPMIN, BZPOPMAX and BZMPOP against
//! `redis-server` 7.0, on a storage node and through the proxy, compared reply by reply in
//! RESP2 and RESP3.
//!
//! Scripted scenarios: argument errors and WRONGTYPE; pops that find data at once; the
//! same commands inside MULTI, where they never block (EXEC's reply is also compared byte
//! for byte in RESP2, where a null array and a null bulk differ); timeouts (the null reply,
//! no sooner than the timeout and at most 2 s after it); a waiter served by another
//! client's push, LMOVE or transaction, for every command; clients blocked on a key served
//! first blocked, first served; a wait on several keys served from the key pushed; a
//! BLMOVE whose move serves a client blocked on its destination; a key of another type
//! that does not serve a waiter; a blocked connection whose pipelined commands wait for its
//! reply.
//!
//! Several clients per server: a waiter sends its command without reading the reply, the
//! servers get a moment to register it (so waiters block in a known order), another client
//! writes, and the waiter's reply is read then; every read is bounded by the client's read
//! timeout. Seeded random sequences of two clients mix pushes, pops, short blocking calls
//! (10–50 ms) and waits that the other client serves, and end with a comparison of the two
//! databases.
//!
//! A separate test checks how Redis 7.0 serves a waiter after a write: from the key the
//! write made ready (not the first non-empty key of its command), past a waited key of
//! another type, and with WRONGTYPE when BLMOVE's destination holds another type.
//!
//! The proxy's namespace has one partition, as in the other differential tests, so
//! commands over several keys need no hash tags.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::diff::{
    b, compare_final_state, must_start_pair_on, seeds, words, Pair, Rand, RunLog, Suite, Target,
};
use support::{escape, show_cmd, Client, Frame, ReadOutcome};
use Step::{Block, Collect, Raw, Run, TimesOut};

/// How long the servers get to register a client that sent a blocking command, before the
/// next step: clients blocked on a key are served in the order they blocked.
const SETTLE: Duration = Duration::from_millis(150);

/// How much later than its timeout a wait may end.
const LATE: Duration = Duration::from_secs(2);

/// How long a raw connection ([`Step::Raw`]) waits for replies.
const RAW_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One step of a scenario, taken alike on both servers. Clients are numbered from 0.
#[derive(Clone, Copy)]
enum Step {
    /// The client sends a command and reads its reply.
    Run(usize, &'static str),
    /// The client sends commands in one write and reads nothing yet (it blocks in one of
    /// them); then the servers get [`SETTLE`] to register it.
    Block(usize, &'static [&'static str]),
    /// The client reads the replies to the commands it sent in [`Step::Block`].
    Collect(usize),
    /// The client sends a command that waits out its timeout, given again in ms, and reads
    /// the reply: zankv's comes no sooner than the timeout and at most [`LATE`] after it.
    TimesOut(usize, &'static str, u64),
    /// The commands are sent in one write on a new connection, in RESP2 whatever the
    /// scenario's protocol, and the replies compared byte for byte: inside EXEC's reply a
    /// null array and a null bulk differ on the wire, not as [`Frame`]s.
    Raw(&'static [&'static str]),
}

/// A scenario: its name and steps. Each starts on empty databases.
type Scenario = (&'static str, &'static [Step]);

const SCENARIOS: &[Scenario] = &[
    (
        "argument errors, and WRONGTYPE from the first key that exists",
        &[
            Run(0, "BLPOP k"),
            Run(0, "BRPOP"),
            Run(0, "BLPOP k x"),
            Run(0, "BLPOP k \" 1\""),
            Run(0, "BRPOP k \"1 \""),
            Run(0, "BLPOP k \"\""),
            Run(0, "BLPOP k nan"),
            Run(0, "BLPOP k 1e3x"),
            Run(0, "BLPOP k -1"),
            Run(0, "BRPOP k1 k2 inf"),
            Run(0, "BLPOP k -inf"),
            Run(0, "BLPOP k 1e400"),
            Run(0, "BLPOP k 92233720368547758"),
            Run(0, "BZPOPMIN z"),
            Run(0, "BZPOPMIN z x"),
            Run(0, "BZPOPMAX z -0.5"),
            Run(0, "BRPOPLPUSH a b"),
            Run(0, "BRPOPLPUSH a b x"),
            Run(0, "BRPOPLPUSH a b -1"),
            Run(0, "BLMOVE a b LEFT RIGHT"),
            Run(0, "BLMOVE a b UP LEFT x"),
            Run(0, "BLMOVE a b LEFT DOWN -1"),
            Run(0, "BLMOVE a b LEFT RIGHT x"),
            Run(0, "BLMOVE a b left right -1"),
            Run(0, "BLMPOP 0 1 a"),
            Run(0, "BLMPOP x 0 a LEFT"),
            Run(0, "BLMPOP x -1 a LEFT"),
            Run(0, "BLMPOP x 1 a LEFT"),
            Run(0, "BLMPOP -1 1 a LEFT COUNT 0"),
            Run(0, "BLMPOP -1 1 a UP"),
            Run(0, "BLMPOP -1 1 a LEFT"),
            Run(0, "BLMPOP 0 3 a b LEFT"),
            Run(0, "BLMPOP 0 1 a LEFT COUNT"),
            Run(0, "BLMPOP 0 1 a LEFT COUNT 1 x"),
            Run(0, "BZMPOP 0 1 z"),
            Run(0, "BZMPOP x 0 z MIN"),
            Run(0, "BZMPOP x 1 z MIN"),
            Run(0, "BZMPOP -1 1 z MIN COUNT -2"),
            Run(0, "BZMPOP -1 1 z LEFT"),
            Run(0, "BZMPOP -1 1 z MAX"),
            Run(0, "SET s v"),
            Run(0, "BLPOP missing s 1"),
            Run(0, "BRPOP s 1"),
            Run(0, "BZPOPMIN missing s 1"),
            Run(0, "BZPOPMAX s 1"),
            Run(0, "BRPOPLPUSH s d 1"),
            Run(0, "BLMOVE s d LEFT LEFT 1"),
            Run(0, "BLMPOP 1 2 missing s LEFT"),
            Run(0, "BZMPOP 1 1 s MIN"),
            Run(0, "RPUSH l a"),
            Run(0, "BZPOPMIN l 1"),
            Run(0, "BZMPOP 1 2 l z MAX"),
            Run(0, "BLMOVE l s LEFT LEFT 1"),
            Run(0, "BRPOPLPUSH l s 1"),
            Run(0, "LRANGE l 0 -1"),
            Run(0, "BLPOP l s 1"),
            Run(0, "EXISTS l"),
        ],
    ),
    (
        "with data present every command pops at once",
        &[
            Run(0, "RPUSH l a b c d e f"),
            Run(0, "BLPOP missing l 0"),
            Run(0, "BRPOP l missing 0"),
            Run(0, "BRPOPLPUSH l dst 0"),
            Run(0, "BLMOVE l dst LEFT RIGHT 0"),
            Run(0, "BLMOVE l l RIGHT LEFT 0"),
            Run(0, "LRANGE l 0 -1"),
            Run(0, "LRANGE dst 0 -1"),
            Run(0, "BLMPOP 0 2 missing l RIGHT"),
            Run(0, "BLMPOP 0 2 l dst LEFT COUNT 5"),
            Run(0, "EXISTS l dst"),
            Run(0, "ZADD z 1 a 2 b 3 c 4.5 d -1 e"),
            Run(0, "BZPOPMIN missing z 0"),
            Run(0, "BZPOPMAX z 0"),
            Run(0, "BZMPOP 0 2 missing z MIN"),
            Run(0, "BZMPOP 0 1 z MAX COUNT 10"),
            Run(0, "EXISTS z"),
            Run(0, "RPUSH one x"),
            Run(0, "BLMPOP 0 1 one LEFT COUNT 3"),
            Run(0, "EXISTS one"),
        ],
    ),
    (
        "inside MULTI they are queued and never block",
        &[
            Raw(&[
                "MULTI",
                "BLPOP e 0",
                "BRPOP e e2 0",
                "BRPOPLPUSH e dst 0",
                "BLMOVE e dst LEFT RIGHT 0",
                "BLMPOP 0 2 e e2 LEFT",
                "BZPOPMIN e 0",
                "BZPOPMAX e 0",
                "BZMPOP 0 1 e MIN COUNT 2",
                "BLPOP e x",
                "EXEC",
            ]),
            Run(0, "MULTI"),
            Run(0, "BLPOP e 0"),
            Run(0, "BRPOP e e2 0"),
            Run(0, "BRPOPLPUSH e dst 0"),
            Run(0, "BLMOVE e dst LEFT RIGHT 0"),
            Run(0, "BLMPOP 0 2 e e2 LEFT"),
            Run(0, "BZPOPMIN e 0"),
            Run(0, "BZPOPMAX e 0"),
            Run(0, "BZMPOP 0 1 e MIN COUNT 2"),
            Run(0, "BLPOP e x"),
            Run(0, "EXEC"),
            Run(0, "MULTI"),
            Run(0, "RPUSH e a b c"),
            Run(0, "BLPOP e 0"),
            Run(0, "BRPOPLPUSH e dst 0"),
            Run(0, "BLMOVE e dst LEFT RIGHT 0"),
            Run(0, "BLMPOP 0 1 e LEFT"),
            Run(0, "ZADD z 1 a 2 b 3 c"),
            Run(0, "BZPOPMIN z 0"),
            Run(0, "BZPOPMAX z 0"),
            Run(0, "BZMPOP 0 1 z MIN"),
            Run(0, "BZMPOP 0 1 z MIN"),
            Run(0, "EXEC"),
            Run(0, "LRANGE dst 0 -1"),
            Run(0, "EXISTS e z"),
        ],
    ),
    (
        "a wait that times out answers a null",
        &[
            TimesOut(0, "BLPOP e1 e2 0.1", 100),
            TimesOut(0, "BRPOP e 0.05", 50),
            TimesOut(0, "BRPOPLPUSH e dst 0.1", 100),
            TimesOut(0, "BLMOVE e dst RIGHT LEFT .1", 100),
            TimesOut(0, "BLMPOP 0.1 2 e e2 LEFT COUNT 2", 100),
            TimesOut(0, "BZPOPMIN e 0.1", 100),
            TimesOut(0, "BZPOPMAX e e2 0.05", 50),
            TimesOut(0, "BZMPOP 0.1 1 e MAX", 100),
            TimesOut(0, "BLPOP e 0.0001", 1),
            TimesOut(0, "BLPOP e 0x1p-4", 63),
            TimesOut(0, "BRPOP e 3e-1", 300),
            Run(0, "EXISTS e e2 dst"),
            Block(0, &["BLPOP e 0.3"]),
            Run(1, "RPUSH other x"),
            Collect(0),
            Run(1, "LRANGE other 0 -1"),
        ],
    ),
    (
        "a waiter is served by a push, for every command",
        &[
            Block(0, &["BLPOP q 0"]),
            Run(1, "RPUSH q a"),
            Collect(0),
            Block(0, &["BRPOP q1 q2 5"]),
            Run(1, "LPUSH q2 a b"),
            Collect(0),
            Run(1, "LRANGE q2 0 -1"),
            Run(1, "RPUSH dst pre"),
            Block(0, &["BRPOPLPUSH src dst 5"]),
            Run(1, "RPUSH src a b"),
            Collect(0),
            Run(1, "LRANGE src 0 -1"),
            Run(1, "LRANGE dst 0 -1"),
            Block(0, &["BLMOVE src2 dst LEFT RIGHT -0"]),
            Run(1, "RPUSH src2 c d"),
            Collect(0),
            Run(1, "LRANGE src2 0 -1"),
            Run(1, "LRANGE dst 0 -1"),
            Block(0, &["BLMPOP 5 2 q1 q3 RIGHT COUNT 2"]),
            Run(1, "RPUSH q3 a b c"),
            Collect(0),
            Run(1, "LRANGE q3 0 -1"),
            Block(0, &["BZPOPMIN z 5"]),
            Run(1, "ZADD z 2 b 1 a"),
            Collect(0),
            Block(0, &["BZPOPMAX z1 z2 0"]),
            Run(1, "ZADD z2 1 a 2.5 b"),
            Collect(0),
            Block(0, &["BZMPOP 5 2 z3 z4 MIN COUNT 5"]),
            Run(1, "ZADD z4 3 c 1 a 2 b"),
            Collect(0),
            Block(0, &["BZPOPMIN z5 5"]),
            Run(1, "ZINCRBY z5 1.5 m"),
            Collect(0),
            Run(1, "RPUSH from x y"),
            Block(0, &["BLPOP q4 5"]),
            Run(1, "LMOVE from q4 RIGHT LEFT"),
            Collect(0),
            Run(1, "EXISTS q4 z z1 z2 z3 z4 z5"),
        ],
    ),
    (
        "clients blocked on one key are served first blocked, first served",
        &[
            Block(0, &["BLPOP q 5"]),
            Block(1, &["BLPOP q 5"]),
            Block(2, &["BRPOP q 5"]),
            Run(3, "RPUSH q a b c"),
            Collect(0),
            Collect(1),
            Collect(2),
            Block(0, &["BZPOPMIN z 5"]),
            Block(1, &["BZPOPMAX z 5"]),
            Block(2, &["BZMPOP 5 1 z MIN"]),
            Run(3, "ZADD z 1 a 2 b 3 c 4 d"),
            Collect(0),
            Collect(1),
            Collect(2),
            Run(3, "ZRANGE z 0 -1 WITHSCORES"),
            Block(0, &["BLPOP q 5"]),
            Block(1, &["BLPOP q 5"]),
            Run(3, "RPUSH q a"),
            Collect(0),
            Run(3, "RPUSH q b c"),
            Collect(1),
            Run(3, "LRANGE q 0 -1"),
            Block(0, &["BLPOP q1 5"]),
            Block(1, &["BLPOP q1 q2 5"]),
            Block(2, &["BRPOP q2 5"]),
            Run(3, "RPUSH q2 x"),
            Collect(1),
            Run(3, "RPUSH q1 y"),
            Collect(0),
            Run(3, "RPUSH q2 z"),
            Collect(2),
        ],
    ),
    (
        "a wait on several keys is served from the key pushed",
        &[
            Block(0, &["BLPOP q1 q2 q3 5"]),
            Run(1, "RPUSH q3 x"),
            Collect(0),
            Block(0, &["BRPOP q1 q2 5"]),
            Run(1, "RPUSH q2 a b"),
            Collect(0),
            Block(0, &["BZPOPMIN z1 z2 5"]),
            Run(1, "ZADD z2 1 m"),
            Collect(0),
            Block(0, &["BLMPOP 5 3 q1 q3 q4 LEFT COUNT 3"]),
            Run(1, "RPUSH q4 a b"),
            Collect(0),
            Block(0, &["BZMPOP 5 2 z3 z4 MAX COUNT 2"]),
            Run(1, "ZADD z4 1 a 2 b 3 c"),
            Collect(0),
            Run(1, "EXISTS q1 q2 q3 q4 z1 z2 z3 z4"),
        ],
    ),
    (
        "a BLMOVE served by a push serves a client blocked on its destination",
        &[
            Block(0, &["BLMOVE src dst RIGHT LEFT 5"]),
            Block(1, &["BLPOP dst 5"]),
            Run(2, "RPUSH src a"),
            Collect(0),
            Collect(1),
            Run(2, "EXISTS src dst"),
            Block(0, &["BRPOPLPUSH s1 s2 5"]),
            Block(1, &["BRPOPLPUSH s2 s3 5"]),
            Run(2, "LPUSH s1 x"),
            Collect(0),
            Collect(1),
            Run(2, "LRANGE s3 0 -1"),
            Run(2, "EXISTS s1 s2"),
        ],
    ),
    (
        "a waiter is served by another client's transaction, after all of it",
        &[
            Block(0, &["BLPOP q 5"]),
            Run(1, "MULTI"),
            Run(1, "RPUSH q a b"),
            Run(1, "LPOP q"),
            Run(1, "EXEC"),
            Collect(0),
            Run(1, "EXISTS q"),
            Block(0, &["BZPOPMAX z 5"]),
            Run(1, "MULTI"),
            Run(1, "ZADD z 1 a 2 b"),
            Run(1, "ZREM z b"),
            Run(1, "EXEC"),
            Collect(0),
            Block(0, &["BLPOP q 0.5"]),
            Run(1, "MULTI"),
            Run(1, "RPUSH q a"),
            Run(1, "LPOP q"),
            Run(1, "EXEC"),
            Collect(0),
        ],
    ),
    (
        "a key of another type does not serve a waiter",
        &[
            Block(0, &["BLPOP q 5"]),
            Run(1, "ZADD q 1 m"),
            Run(1, "DEL q"),
            Run(1, "RPUSH q x"),
            Collect(0),
            Block(0, &["BZPOPMIN z 0.5"]),
            Run(1, "RPUSH z a"),
            Collect(0),
            Run(1, "LRANGE z 0 -1"),
        ],
    ),
    (
        "a blocked connection's pipelined commands wait for its reply",
        &[
            Block(0, &["BLPOP q 0.3", "RPUSH q x"]),
            Collect(0),
            Run(0, "LRANGE q 0 -1"),
            Block(0, &["BLPOP q2 5", "LLEN q2", "PING"]),
            Run(1, "LLEN q2"),
            Run(1, "RPUSH q2 a b"),
            Collect(0),
            Block(
                0,
                &["RPUSH q3 x", "BLPOP q3 5", "BLPOP q3 0.2", "ECHO done"],
            ),
            Collect(0),
        ],
    ),
];

/// How Redis 7.0 serves a waiter after a write: from the key the write made ready, past a
/// waited key of another type, and with WRONGTYPE (the element left in place) when
/// BLMOVE's destination holds another type.
const REDIS_7_0_SERVING: &[Scenario] = &[
    (
        "a transaction pushing to two waited keys serves from the one pushed first",
        &[
            Block(0, &["BLPOP q1 q2 5"]),
            Run(1, "MULTI"),
            Run(1, "RPUSH q2 x"),
            Run(1, "RPUSH q1 y"),
            Run(1, "EXEC"),
            Collect(0),
            Run(1, "LRANGE q1 0 -1"),
            Run(1, "LRANGE q2 0 -1"),
        ],
    ),
    (
        "a waited key of another type does not keep a push to another waited key from serving",
        &[
            Block(0, &["BLPOP q1 q2 5"]),
            Run(1, "ZADD q1 1 m"),
            Run(1, "RPUSH q2 x"),
            Collect(0),
            Block(0, &["BZPOPMIN z1 z2 5"]),
            Run(1, "RPUSH z1 a"),
            Run(1, "ZADD z2 1 m"),
            Collect(0),
        ],
    ),
    (
        "a BLMOVE served into a destination of another type answers WRONGTYPE",
        &[
            Run(1, "ZADD dst 1 m"),
            Block(0, &["BLMOVE src dst LEFT RIGHT 5"]),
            Run(1, "RPUSH src x"),
            Collect(0),
            Run(1, "LRANGE src 0 -1"),
        ],
    ),
];

/// One reply of `server` (named in messages) to `what`; panics if none comes within the
/// client's read timeout, or if the connection closes.
fn answer(client: &mut Client, server: &str, what: &str) -> Frame {
    match client.try_read_frame() {
        ReadOutcome::Frame(frame) => frame,
        ReadOutcome::TimedOut => {
            panic!("{what}: {server} did not answer within the read timeout (still blocked?)")
        }
        ReadOutcome::Closed => panic!("{what}: {server} closed the connection"),
    }
}

/// Sends `commands` in one write on a new connection to `port` (RESP2) and returns the
/// bytes of their replies as they came.
fn raw_replies(port: u16, commands: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to port {port}: {e}"));
    stream
        .set_read_timeout(Some(RAW_READ_TIMEOUT))
        .expect("set read timeout");
    let wire: Vec<u8> = commands
        .iter()
        .flat_map(|args| Client::encode_owned(args))
        .collect();
    stream
        .write_all(&wire)
        .unwrap_or_else(|e| panic!("write to port {port}: {e}"));
    let mut replies = Vec::new();
    let mut chunk = [0u8; 4096];
    while whole_replies(&replies) < commands.len() {
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "port {port} closed the connection after \"{}\"",
                escape(&replies)
            ),
            Ok(n) => replies.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!(
                "port {port}: {e}, with {} of {} replies: \"{}\"",
                whole_replies(&replies),
                commands.len(),
                escape(&replies)
            ),
        }
    }
    replies
}

/// How many whole RESP2 replies `bytes` holds.
fn whole_replies(bytes: &[u8]) -> usize {
    let (mut at, mut count) = (0, 0);
    while let Some((_, used)) = redis_protocol::resp2::decode::decode_range(&bytes[at..])
        .unwrap_or_else(|e| panic!("not RESP2: {e:?}: \"{}\"", escape(bytes)))
    {
        at += used;
        count += 1;
    }
    count
}

/// The clients of one scenario (or random run) on both servers: client 0 is the pair's
/// own, the others extra connections speaking its protocol.
struct Clients<'a> {
    pair: &'a mut Pair,
    extra: Vec<(Client, Client)>,
    /// Per client, the commands sent in [`Step::Block`] and not answered yet.
    pending: Vec<Vec<Vec<Vec<u8>>>>,
}

impl<'a> Clients<'a> {
    fn new(pair: &'a mut Pair, count: usize) -> Clients<'a> {
        let resp3 = pair.redis.is_resp3();
        let extra = (1..count)
            .map(|_| {
                let mut redis = Client::connect(pair.redis.port());
                let mut zankv = Client::connect(pair.zankv.port());
                if resp3 {
                    redis.hello3();
                    zankv.hello3();
                }
                (redis, zankv)
            })
            .collect();
        Clients {
            pair,
            extra,
            pending: vec![Vec::new(); count],
        }
    }

    /// Client `who` of each server: (redis's, zankv's).
    fn of(&mut self, who: usize) -> (&mut Client, &mut Client) {
        if who == 0 {
            (&mut self.pair.redis, &mut self.pair.zankv)
        } else {
            let (redis, zankv) = &mut self.extra[who - 1];
            (redis, zankv)
        }
    }

    /// Takes `step` on both servers; `at` names it in messages.
    fn take(&mut self, step: Step, at: &str) {
        match step {
            Run(who, line) => {
                let args = words(line);
                let (redis, zankv) = self.of(who);
                let (a, z) = (redis.cmd_vec(&args), zankv.cmd_vec(&args));
                assert_eq!(a, z, "{at}: client {who} {}", show_cmd(&args));
            }
            Block(who, lines) => {
                let commands: Vec<Vec<Vec<u8>>> = lines.iter().map(|line| words(line)).collect();
                let wire: Vec<u8> = commands
                    .iter()
                    .flat_map(|args| Client::encode_owned(args))
                    .collect();
                let (redis, zankv) = self.of(who);
                redis.send_raw(&wire);
                zankv.send_raw(&wire);
                self.pending[who].extend(commands);
                std::thread::sleep(SETTLE);
            }
            Collect(who) => {
                let commands = std::mem::take(&mut self.pending[who]);
                assert!(!commands.is_empty(), "{at}: client {who} has nothing sent");
                let (redis, zankv) = self.of(who);
                for args in &commands {
                    let what = format!("{at}: client {who}, {}", show_cmd(args));
                    let a = answer(redis, "redis", &what);
                    let z = answer(zankv, "zankv", &what);
                    assert_eq!(a, z, "{what}");
                }
            }
            TimesOut(who, line, ms) => {
                let args = words(line);
                let what = format!("{at}: client {who}, {}", show_cmd(&args));
                let wire = Client::encode_owned(&args);
                let (redis, zankv) = self.of(who);
                let started = Instant::now();
                zankv.send_raw(&wire);
                redis.send_raw(&wire);
                let z = answer(zankv, "zankv", &what);
                let waited = started.elapsed();
                let a = answer(redis, "redis", &what);
                assert_eq!(a, z, "{what}");
                let timeout = Duration::from_millis(ms);
                assert!(
                    waited >= timeout && waited <= timeout + LATE,
                    "{what}: zankv answered after {waited:?}, for a timeout of {timeout:?}"
                );
            }
            Raw(lines) => {
                let commands: Vec<Vec<Vec<u8>>> = lines.iter().map(|line| words(line)).collect();
                let a = raw_replies(self.pair.redis.port(), &commands);
                let z = raw_replies(self.pair.zankv.port(), &commands);
                assert!(
                    a == z,
                    "{at}: the raw replies to {lines:?} differ\n  redis: \"{}\"\n  zankv: \"{}\"",
                    escape(&a),
                    escape(&z)
                );
            }
        }
    }
}

/// How many clients `steps` name.
fn clients_in(steps: &[Step]) -> usize {
    steps
        .iter()
        .map(|step| match *step {
            Run(who, _) | Block(who, _) | Collect(who) | TimesOut(who, _, _) => who + 1,
            Raw(_) => 1,
        })
        .max()
        .unwrap_or(1)
}

/// Runs `scenarios` on a fresh pair of `target` in RESP2, then on one in RESP3.
fn run_scenarios(scenarios: &[Scenario], target: Target) {
    for resp3 in [false, true] {
        let mut pair = must_start_pair_on(resp3, target);
        for (name, steps) in scenarios {
            for client in [&mut pair.redis, &mut pair.zankv] {
                assert_eq!(
                    client.cmd_str(&["FLUSHALL"]),
                    Frame::simple("OK"),
                    "FLUSHALL on port {}",
                    client.port()
                );
            }
            let mut clients = Clients::new(&mut pair, clients_in(steps));
            for (i, step) in steps.iter().enumerate() {
                clients.take(
                    *step,
                    &format!("scenario {name:?} (resp3: {resp3}), step {i}"),
                );
            }
            assert!(
                clients.pending.iter().all(Vec::is_empty),
                "scenario {name:?} leaves replies unread"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeded random sequences
// ---------------------------------------------------------------------------------------

const SUITE: Suite = Suite {
    name: "blocking differential",
    target: "blocking_differential",
    skips: false,
};

/// The keys of the random sequences: lists go to `a` and `b`, sorted sets to `b` and `c`,
/// so `b` changes type now and then and commands meet WRONGTYPE there.
const KEYS: &[&str] = &["a", "b", "c"];
const LIST_KEYS: &[&str] = &["a", "b"];
const ZSET_KEYS: &[&str] = &["b", "c"];
const ELEMENTS: &[&str] = &["x", "y", "z", ""];
const MEMBERS: &[&str] = &["m", "n", "o"];
const SCORES: &[&str] = &["1", "2", "-1", "2.5", "inf"];

/// The timeout of a waiter that the other client serves: it only bounds a wait that
/// nobody ends.
const SERVED_TIMEOUT: &[u8] = b"5";

/// What a random step does.
#[derive(Clone, Copy)]
enum Kind {
    /// RPUSH, LPUSH or ZADD.
    Push,
    /// A non-blocking pop, a read, DEL or LMOVE.
    Other,
    /// A blocking command with a short timeout, alone.
    Wait,
    /// A blocking command that the other client's push serves.
    Served,
}

const MENU: &[(Kind, u32)] = &[
    (Kind::Push, 30),
    (Kind::Other, 25),
    (Kind::Wait, 30),
    (Kind::Served, 15),
];

/// A blocking command of the random sequences.
struct Wait {
    args: Vec<Vec<u8>>,
    /// The keys it waits on.
    keys: Vec<Vec<u8>>,
    /// Whether it pops sorted sets (else lists).
    zset: bool,
    /// The list it pushes to (BRPOPLPUSH, BLMOVE).
    dst: Option<Vec<u8>>,
}

/// A key for a sorted set, or for a list.
fn random_key(rng: &mut Rand, zset: bool) -> Vec<u8> {
    b(rng.pick(if zset { ZSET_KEYS } else { LIST_KEYS }))
}

/// LEFT or RIGHT.
fn side(rng: &mut Rand) -> Vec<u8> {
    let side = rng.pick(&["LEFT", "RIGHT"]);
    rng.word(side)
}

/// 0.01 to 0.05 seconds.
fn short_timeout(rng: &mut Rand) -> Vec<u8> {
    format!("0.0{}", rng.u32(1..=5)).into_bytes()
}

/// One of the eight blocking commands over 1 to 3 random keys, with `timeout`.
fn random_wait(rng: &mut Rand, timeout: &[u8]) -> Wait {
    let which = rng.usize(0..8);
    let zset = which >= 5;
    let mut keys: Vec<Vec<u8>> = (0..rng.usize(1..=3))
        .map(|_| random_key(rng, zset))
        .collect();
    let mut args = Vec::new();
    let mut dst = None;
    match which {
        0 | 1 => {
            args.push(rng.name(["BLPOP", "BRPOP"][which]));
            args.extend(keys.iter().cloned());
            args.push(timeout.to_vec());
        }
        2 | 3 => {
            keys.truncate(1);
            let to = random_key(rng, false);
            if which == 2 {
                args.push(rng.name("BRPOPLPUSH"));
                args.extend([keys[0].clone(), to.clone()]);
            } else {
                args.push(rng.name("BLMOVE"));
                args.extend([keys[0].clone(), to.clone(), side(rng), side(rng)]);
            }
            args.push(timeout.to_vec());
            dst = Some(to);
        }
        4 | 7 => {
            args.push(rng.name(if zset { "BZMPOP" } else { "BLMPOP" }));
            args.push(timeout.to_vec());
            args.push(keys.len().to_string().into_bytes());
            args.extend(keys.iter().cloned());
            let end = if zset {
                let end = rng.pick(&["MIN", "MAX"]);
                rng.word(end)
            } else {
                side(rng)
            };
            args.push(end);
            if rng.chance(50) {
                args.push(rng.word("COUNT"));
                args.push(rng.small_int(1, 3));
            }
        }
        _ => {
            args.push(rng.name(["BZPOPMIN", "BZPOPMAX"][which - 5]));
            args.extend(keys.iter().cloned());
            args.push(timeout.to_vec());
        }
    }
    Wait {
        args,
        keys,
        zset,
        dst,
    }
}

/// A push of 1 to 3 elements to `key`: RPUSH or LPUSH, or ZADD for a sorted set.
fn random_push(rng: &mut Rand, key: Vec<u8>, zset: bool) -> Vec<Vec<u8>> {
    let name = if zset {
        "ZADD"
    } else {
        rng.pick(&["RPUSH", "LPUSH"])
    };
    let mut args = vec![rng.name(name), key];
    for _ in 0..rng.usize(1..=3) {
        if zset {
            args.push(b(rng.pick(SCORES)));
            args.push(b(rng.pick(MEMBERS)));
        } else {
            args.push(b(rng.pick(ELEMENTS)));
        }
    }
    args
}

/// A non-blocking pop, a read, DEL or LMOVE.
fn random_other(rng: &mut Rand) -> Vec<Vec<u8>> {
    let list = random_key(rng, false);
    let zset = random_key(rng, true);
    match rng.usize(0..10) {
        0 => vec![rng.name("LPOP"), list],
        1 => vec![rng.name("RPOP"), list, rng.small_int(1, 3)],
        2 => vec![rng.name("ZPOPMIN"), zset],
        3 => vec![rng.name("ZPOPMAX"), zset, rng.small_int(1, 3)],
        4 => vec![rng.name("LRANGE"), list, b("0"), b("-1")],
        5 => vec![
            rng.name("ZRANGE"),
            zset,
            b("0"),
            b("-1"),
            rng.word("WITHSCORES"),
        ],
        6 => vec![rng.name("LLEN"), list],
        7 => vec![rng.name("DEL"), b(rng.pick(KEYS))],
        8 => {
            let dst = random_key(rng, false);
            vec![rng.name("LMOVE"), list, dst, side(rng), side(rng)]
        }
        _ => vec![rng.name("TYPE"), b(rng.pick(KEYS))],
    }
}

/// Records step `i` (`cmd`, with `args`) with redis's reply `a`, or panics with the run's
/// report if zankv's `z` differs.
fn check(log: &mut RunLog, i: usize, cmd: &str, args: &[Vec<u8>], a: &Frame, z: &Frame) {
    if a != z {
        panic!(
            "{}",
            log.report(&i.to_string(), cmd, &format!("redis: {a}\n  zankv: {z}"))
        );
    }
    log.record(i, args, cmd, a);
}

/// Runs `args` on client `who` of both servers, as step `i`: sent to both before either
/// reply is read, so a wait that times out costs its time once.
fn run_logged(clients: &mut Clients<'_>, log: &mut RunLog, i: usize, who: usize, args: &[Vec<u8>]) {
    let cmd = format!("client {who}: {}", show_cmd(args));
    let wire = Client::encode_owned(args);
    let (redis, zankv) = clients.of(who);
    redis.send_raw(&wire);
    zankv.send_raw(&wire);
    let a = answer(redis, "redis", &cmd);
    let z = answer(zankv, "zankv", &cmd);
    check(log, i, &cmd, args, &a, &z);
}

/// What keeps `wait` from blocking on redis now: those of its keys that exist, and
/// BLMOVE's or BRPOPLPUSH's destination if it holds another type than a list (Redis 7.0
/// would answer the waiter WRONGTYPE when served, an edge case of [`REDIS_7_0_SERVING`]).
fn in_the_way(redis: &mut Client, wait: &Wait) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    for key in &wait.keys {
        let kind = redis.cmd_vec(&[b("TYPE"), key.clone()]);
        if !matches!(kind.as_bytes(), Some(b"none")) {
            keys.push(key.clone());
        }
    }
    if let Some(dst) = &wait.dst {
        let kind = redis.cmd_vec(&[b("TYPE"), dst.clone()]);
        if !matches!(kind.as_bytes(), Some(b"none" | b"list")) {
            keys.push(dst.clone());
        }
    }
    keys
}

/// Step `i`: the other client deletes what keeps a blocking command from blocking (if
/// anything), client `waiter` sends the command, the other client pushes to one of its
/// keys, and the waiter's reply is read. Whichever of the command and the push reaches a
/// server first, the replies are the same: the waiter's keys are all missing, and the push
/// is of its type.
fn serve(
    clients: &mut Clients<'_>,
    log: &mut RunLog,
    rng: &mut Rand,
    seed: u64,
    i: usize,
    waiter: usize,
) {
    let other = 1 - waiter;
    let wait = random_wait(rng, SERVED_TIMEOUT);
    let key = wait.keys[rng.usize(..wait.keys.len())].clone();
    let push = random_push(rng, key, wait.zset);
    let in_the_way = in_the_way(&mut clients.pair.redis, &wait);
    if !in_the_way.is_empty() {
        let mut del = vec![b("DEL")];
        del.extend(in_the_way);
        run_logged(clients, log, i, other, &del);
    }
    let wire = Client::encode_owned(&wait.args);
    let (redis, zankv) = clients.of(waiter);
    redis.send_raw(&wire);
    zankv.send_raw(&wire);
    run_logged(clients, log, i, other, &push);
    let cmd = format!(
        "client {waiter}, sent before the push: {}",
        show_cmd(&wait.args)
    );
    let what = format!("seed {seed}, step {i}, {cmd}");
    let (redis, zankv) = clients.of(waiter);
    let a = answer(redis, "redis", &what);
    let z = answer(zankv, "zankv", &what);
    check(log, i, &cmd, &wait.args, &a, &z);
}

/// A key's contents for the end-of-run comparison.
fn content(client: &mut Client, key: &[u8], kind: Option<&[u8]>) -> Frame {
    match kind {
        Some(b"list") => client.cmd(&[b"LRANGE", key, b"0", b"-1"]),
        Some(b"zset") => client.cmd(&[b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"]),
        _ => Frame::Null,
    }
}

/// One seeded sequence of `steps` random steps of two clients on a fresh pair of `target`,
/// then the two databases compared.
fn run_random(seed: u64, steps: usize, target: Target, resp3: bool) {
    eprintln!("blocking differential: seed {seed}, {steps} steps, resp3: {resp3}");
    let started = Instant::now();
    let mut pair = must_start_pair_on(resp3, target);
    let mut clients = Clients::new(&mut pair, 2);
    let mut rng = Rand::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    for i in 0..steps {
        let kind = rng.weighted(MENU);
        let who = rng.usize(0..2);
        let mut args = match kind {
            Kind::Push => {
                let zset = rng.chance(40);
                let key = random_key(&mut rng, zset);
                random_push(&mut rng, key, zset)
            }
            Kind::Other => random_other(&mut rng),
            Kind::Wait => {
                let timeout = short_timeout(&mut rng);
                random_wait(&mut rng, &timeout).args
            }
            Kind::Served => {
                serve(&mut clients, &mut log, &mut rng, seed, i, who);
                continue;
            }
        };
        // Wrong arity and syntax errors now and then; a blocking command so changed never
        // waits longer (its timeout becomes invalid, or stays where it was).
        rng.mutate(&mut args, 3, 3);
        run_logged(&mut clients, &mut log, i, who, &args);
    }
    drop(clients);
    compare_final_state(&mut pair, &log, content, |_, a, z| {
        if a == z {
            Ok(())
        } else {
            Err("the two differ".to_string())
        }
    });
    log.print_stats();
    eprintln!(
        "blocking differential: seed {seed} ({}): {steps} steps in {:?}",
        log.proto(),
        started.elapsed()
    );
}

#[test]
fn blocking_commands_match_redis_on_a_node() {
    run_scenarios(SCENARIOS, Target::Node);
    for seed in seeds(&[1, 2]) {
        run_random(seed, 300, Target::Node, seed % 2 == 0);
    }
}

#[test]
fn blocking_commands_match_redis_through_the_proxy() {
    let cluster = support::proxy::ProxiedCluster::must_start(1, 3, "");
    let target = Target::Proxy(cluster.proxy.port);
    run_scenarios(SCENARIOS, target);
    for seed in seeds(&[3, 4]) {
        run_random(seed, 200, target, seed % 2 == 0);
    }
    let metrics = cluster.proxy.metrics();
    for command in ["blpop", "blmove", "bzmpop"] {
        assert!(
            metrics.contains(&format!(
                "zankv_proxy_commands_total{{command=\"{command}\"}}"
            )),
            "the proxy forwarded {command}: {metrics}"
        );
    }
}

#[test]
fn waiters_are_served_as_redis_7_0_serves_them_on_a_node() {
    run_scenarios(REDIS_7_0_SERVING, Target::Node);
}
