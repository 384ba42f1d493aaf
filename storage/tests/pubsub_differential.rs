//! Pub/Sub against `redis-server` 7.0, on a storage node and through the proxy, compared
//! frame by frame in RESP2 and RESP3: SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
//! SSUBSCRIBE, SUNSUBSCRIBE, PUBLISH, SPUBLISH and PUBSUB.
//!
//! Scripted scenarios: the confirmations (repeated names, names never subscribed, ending
//! every subscription of a kind, and the reply when there is none); delivery to channel,
//! pattern and shard channel subscribers, with PUBLISH's counts, binary and empty payloads
//! and channels nobody listens to; the commands a RESP2 connection may send while
//! subscribed (and that a RESP3 one may send anything); PUBSUB's introspection, help and
//! errors; RESET and QUIT while subscribed; argument errors; a RESP2 subscriber's command
//! refused for the context before its arguments are judged; a RESP3 subscriber's PUBLISH
//! to itself (the message comes before the reply); the empty channel, which Redis 7.0's
//! patterns never match, not even `*`. Seeded random sequences of three subscribers and a
//! publisher mix every command over four channels and two patterns.
//!
//! Several clients per server. A step is one command of one client; then what every client
//! received is compared: the sender's messages and reply, the others' messages. What Redis
//! sent is known exactly: a `PING` (the barrier) follows, and since Redis writes a message
//! to a subscriber when it is published, everything before the barrier's reply is what the
//! client received. zankv is read without a request (a subscriber that sends nothing must
//! receive its messages): as many frames as Redis sent, each within [`READ_TIMEOUT`]; then
//! a barrier on zankv too must find nothing more (zankv promises that messages published
//! before a request arrive before its reply).
//!
//! Normalised before comparing, as Redis's order there is its hash tables': the
//! confirmations of UNSUBSCRIBE and SUNSUBSCRIBE without names (their names as a set, each
//! count in place), PUBSUB CHANNELS and SHARDCHANNELS (as sets), and the `pmessage`s of one
//! publish to a client subscribed to several matching patterns (sorted by pattern).
//!
//! Not compared (known differences): messages published inside MULTI, which Redis writes
//! inside EXEC's reply; keyspace notifications; HELLO's and INFO's texts.

mod support;

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use support::diff::{
    b, must_start_pair_on, seeds, sorted_items, words, Pair, Rand, RunLog, Suite, Target,
};
use support::{show_cmd, Client, Frame, ReadOutcome};

/// How long a client waits for each frame: a message or reply later than that is missing.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The message of the barrier's `PING`: answered as a bulk string, or `[pong, message]` by
/// a RESP2 connection with subscriptions; no message or reply of a test looks like either.
const BARRIER: &[u8] = b"zankv-pubsub-barrier";

/// One step of a scenario: client `.0` sends the command line `.1` (words separated by
/// spaces; see [`words`] for quoted words). Clients are numbered from 0.
type Step = (usize, &'static str);

/// A scenario: its name and steps. Each starts on empty databases, with new connections.
type Scenario = (&'static str, &'static [Step]);

const SCENARIOS: &[Scenario] = &[
    (
        "confirmations, one per name, and the count after each",
        &[
            (0, "SUBSCRIBE a b a c"),
            (0, "PSUBSCRIBE news.* n?ws news.*"),
            (0, "SSUBSCRIBE s1 s2 s1"),
            (0, "subscribe d"),
            (0, "UNSUBSCRIBE b never d"),
            (0, "PUNSUBSCRIBE nothing* n?ws"),
            (0, "SUNSUBSCRIBE s2 s9"),
            (0, "PSUBSCRIBE x* *"),
            // Redis 7.0 keeps a client's patterns in a list: every one, in order.
            (0, "PUNSUBSCRIBE"),
            (0, "SUNSUBSCRIBE"),
            (0, "PUNSUBSCRIBE"),
            (0, "SUNSUBSCRIBE"),
            (0, "UNSUBSCRIBE"),
            (0, "UNSUBSCRIBE"),
            (0, "PSUBSCRIBE p*"),
            (0, "SSUBSCRIBE s"),
            (0, "UNSUBSCRIBE"),
            (0, "PUNSUBSCRIBE"),
            (0, "SUNSUBSCRIBE"),
            (0, "UNSUBSCRIBE x"),
            (0, "PUNSUBSCRIBE x*"),
            (0, "SUNSUBSCRIBE x"),
            (0, "PING"),
            (0, "SUBSCRIBE Mixed mixed"),
            (0, "UNSUBSCRIBE MIXED mixed"),
            (0, r#"SUBSCRIBE "" "a b""#),
            (0, "UNSUBSCRIBE Mixed"),
            (0, "UNSUBSCRIBE"),
        ],
    ),
    (
        "delivery to channel, pattern and shard channel subscribers",
        &[
            (0, "SUBSCRIBE news news.tech"),
            (1, "PSUBSCRIBE news.* n?ws *"),
            (2, "SSUBSCRIBE news.tech"),
            (2, r#"SUBSCRIBE "bin\x00\xff""#),
            (3, "PUBLISH news hello"),
            (3, "PUBLISH news.tech second"),
            (3, "PUBLISH nows third"),
            (3, "PUBLISH other fourth"),
            (3, r#"PUBLISH news """#),
            (3, r#"PUBLISH "bin\x00\xff" "\x00\r\n\xff""#),
            (3, "SPUBLISH news.tech sharded"),
            (3, "SPUBLISH news not-a-shard-channel"),
            (3, "SPUBLISH nobody x"),
            (0, "PSUBSCRIBE n?ws"),
            (3, "PUBLISH news counted-twice"),
            (3, "PUBLISH news.tech x"),
            (1, "PUNSUBSCRIBE *"),
            (3, "PUBLISH other nobody-now"),
            (3, "PUBLISH nobody.listens x"),
            (0, "UNSUBSCRIBE news"),
            (3, "PUBLISH news y"),
            (3, "publish news.tech z"),
            (2, "SUNSUBSCRIBE news.tech"),
            (3, "SPUBLISH news.tech gone"),
        ],
    ),
    (
        "a RESP2 connection with subscriptions may send only some commands; RESP3 any",
        &[
            (1, "SET k v"),
            (0, "SUBSCRIBE ch"),
            (0, "GET k"),
            (0, "SET k w"),
            (0, "PUBLISH other x"),
            (0, "PUBSUB NUMSUB ch"),
            (0, "PUBSUB FOO"),
            (0, "PING"),
            (0, "PING hi"),
            (0, r#"PING """#),
            (0, "GET"),
            (0, "PING a b"),
            (0, "NOSUCHCOMMAND x"),
            (1, "GET k"),
            (1, "PUBLISH ch from-another"),
            (0, "UNSUBSCRIBE ch"),
            (0, "GET k"),
            (0, "PING"),
            (0, "PSUBSCRIBE p*"),
            (0, "GET k"),
            (0, "PING"),
            (0, "PUNSUBSCRIBE"),
            (0, "SSUBSCRIBE s"),
            (0, "GET k"),
            (0, "SUNSUBSCRIBE"),
            (0, "GET k"),
        ],
    ),
    (
        "PUBSUB CHANNELS, NUMSUB, NUMPAT, SHARDCHANNELS, SHARDNUMSUB and HELP",
        &[
            (3, "PUBSUB CHANNELS"),
            (3, "PUBSUB NUMPAT"),
            (3, "PUBSUB NUMSUB"),
            (3, "PUBSUB SHARDCHANNELS"),
            (3, "PUBSUB SHARDNUMSUB"),
            (0, "SUBSCRIBE news.a news.b other"),
            (1, "SUBSCRIBE news.a"),
            (1, "PSUBSCRIBE news.* x*"),
            (2, "PSUBSCRIBE news.*"),
            (2, "SSUBSCRIBE s.a s.b"),
            (1, "SSUBSCRIBE s.a"),
            (3, "PUBSUB CHANNELS"),
            (3, "PUBSUB CHANNELS news.*"),
            (3, "PUBSUB CHANNELS nomatch*"),
            (3, "pubsub channels *"),
            (3, "PUBSUB NUMSUB news.a news.b unknown news.* news.a"),
            (3, "PUBSUB NUMPAT"),
            (3, "PUBSUB SHARDCHANNELS"),
            (3, "PUBSUB SHARDCHANNELS *.a"),
            (3, "PUBSUB SHARDNUMSUB s.a s.b s.c news.a"),
            (3, "PUBSUB HELP"),
            (3, "PUBSUB help"),
            (3, "PUBSUB CHANNELS a b"),
            (3, "PUBSUB SHARDCHANNELS a b"),
            (3, "PUBSUB NUMPAT x"),
            (3, "PUBSUB HELP x"),
            (3, "PUBSUB FOO"),
            (3, "PUBSUB"),
            (1, "PUNSUBSCRIBE news.*"),
            (3, "PUBSUB NUMPAT"),
            (2, "PUNSUBSCRIBE"),
            (3, "PUBSUB NUMPAT"),
            (0, "UNSUBSCRIBE news.b"),
            (3, "PUBSUB CHANNELS"),
            (3, "PUBSUB NUMSUB news.a news.b"),
            (2, "SUNSUBSCRIBE s.a"),
            (3, "PUBSUB SHARDNUMSUB s.a s.b"),
        ],
    ),
    (
        "RESET ends every subscription (and RESP3); QUIT closes a subscriber",
        &[
            (0, "SUBSCRIBE a"),
            (0, "PSUBSCRIBE a*"),
            (0, "SSUBSCRIBE sa"),
            (1, "PUBLISH a 1"),
            (1, "SPUBLISH sa 2"),
            (0, "RESET"),
            (1, "PUBLISH a 3"),
            (1, "SPUBLISH sa 4"),
            (1, "PUBSUB NUMSUB a"),
            (1, "PUBSUB NUMPAT"),
            (1, "PUBSUB SHARDNUMSUB sa"),
            (0, "PING"),
            // RESET also went back to RESP2: the restrictions apply again.
            (0, "SUBSCRIBE b"),
            (0, "GET k"),
            (1, "PUBLISH b 5"),
            (0, "QUIT"),
            (1, "PUBLISH b 6"),
            (1, "PUBSUB NUMSUB b"),
        ],
    ),
    (
        "argument errors",
        &[
            (0, "SUBSCRIBE"),
            (0, "PSUBSCRIBE"),
            (0, "SSUBSCRIBE"),
            (0, "PUBLISH"),
            (0, "PUBLISH ch"),
            (0, "PUBLISH ch a b"),
            (0, "SPUBLISH"),
            (0, "SPUBLISH a"),
            (0, "SPUBLISH a b c"),
            (0, "SUBSCRIBE ch"),
            (0, "SUBSCRIBE"),
            (0, "PUBLISH ch"),
        ],
    ),
    (
        "a RESP2 subscriber's command with bad arguments is refused for the context",
        &[
            (0, "SUBSCRIBE ch"),
            (0, "SET k v BADOPTION"),
            (0, "EXPIRE k abc"),
            (0, "SET k v"),
        ],
    ),
    (
        "a RESP3 subscriber's own PUBLISH: the message comes before the reply",
        &[
            (0, "SUBSCRIBE ch"),
            (0, "PSUBSCRIBE c*"),
            (0, "PUBLISH ch mine"),
            (1, "PUBLISH ch theirs"),
        ],
    ),
    (
        "the empty channel: Redis 7.0's patterns never match it, not even *",
        &[
            (0, r#"SUBSCRIBE """#),
            (1, "PSUBSCRIBE * ** ?*"),
            (2, r#"PUBLISH "" x"#),
            (2, "PUBSUB CHANNELS"),
            (2, "PUBSUB CHANNELS *"),
            (2, r#"PUBSUB CHANNELS """#),
            (2, "PUBLISH a y"),
        ],
    ),
];

// ---------------------------------------------------------------------------------------
// Reading what a client received
// ---------------------------------------------------------------------------------------

/// Whether `frame` answers the barrier's `PING`.
fn is_barrier(frame: &Frame) -> bool {
    match frame {
        Frame::Bulk(message) => message == BARRIER,
        Frame::Array(items) => matches!(
            items.as_slice(),
            [Frame::Bulk(pong), Frame::Bulk(message)] if pong == b"pong" && message == BARRIER
        ),
        _ => false,
    }
}

/// Frames as a report shows them.
fn show(frames: &[Frame]) -> String {
    if frames.is_empty() {
        return "nothing".to_string();
    }
    let shown: Vec<String> = frames.iter().map(Frame::to_string).collect();
    shown.join(", ")
}

/// What `server`'s client received before the reply to a barrier sent now.
fn until_barrier(client: &mut Client, server: &str) -> Result<Vec<Frame>, String> {
    if !client.try_send_raw(&Client::encode(&[b"PING", BARRIER])) {
        return Err(format!("{server} closed the connection"));
    }
    let mut frames = Vec::new();
    loop {
        match client.try_read_frame() {
            ReadOutcome::Frame(frame) if is_barrier(&frame) => return Ok(frames),
            ReadOutcome::Frame(frame) => frames.push(frame),
            ReadOutcome::Closed => {
                return Err(format!(
                    "{server} closed the connection after {}",
                    show(&frames)
                ))
            }
            ReadOutcome::TimedOut => {
                return Err(format!(
                    "{server} did not answer PING within {READ_TIMEOUT:?}, after {}",
                    show(&frames)
                ))
            }
        }
    }
}

/// What `server`'s client received until the server closed the connection (after QUIT).
fn until_closed(client: &mut Client, server: &str) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::new();
    loop {
        match client.try_read_frame() {
            ReadOutcome::Frame(frame) => frames.push(frame),
            ReadOutcome::Closed => return Ok(frames),
            ReadOutcome::TimedOut => {
                return Err(format!(
                    "{server} did not close the connection within {READ_TIMEOUT:?}, after {}",
                    show(&frames)
                ))
            }
        }
    }
}

/// Reads from zankv, without a request, as many frames as redis sent (`expected`); then,
/// if redis closed the connection, requires zankv to close it too, and otherwise a barrier
/// must find nothing more.
fn read_like(zankv: &mut Client, expected: &[Frame], closed: bool) -> Result<Vec<Frame>, String> {
    let mut frames = Vec::new();
    while frames.len() < expected.len() {
        let missing = match zankv.try_read_frame() {
            ReadOutcome::Frame(frame) => {
                frames.push(frame);
                continue;
            }
            ReadOutcome::Closed => "zankv closed the connection",
            ReadOutcome::TimedOut => "zankv sent nothing more",
        };
        return Err(format!(
            "{missing}\n  redis: {}\n  zankv: {}",
            show(expected),
            show(&frames)
        ));
    }
    let more = if closed {
        match zankv.try_read_frame() {
            ReadOutcome::Closed => return Ok(frames),
            ReadOutcome::Frame(frame) => vec![frame],
            ReadOutcome::TimedOut => {
                return Err(format!(
                    "redis closed the connection, zankv did not within {READ_TIMEOUT:?}"
                ))
            }
        }
    } else {
        until_barrier(zankv, "zankv")?
    };
    if more.is_empty() {
        Ok(frames)
    } else {
        Err(format!(
            "zankv sent more\n  redis: {}\n  zankv: {}, then {}",
            show(expected),
            show(&frames),
            show(&more)
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------

/// How the frames a sender received are compared.
#[derive(Clone, Copy)]
enum Compare {
    /// Frame by frame.
    Exact,
    /// The reply (the last frame) as a set: PUBSUB CHANNELS and SHARDCHANNELS, which Redis
    /// answers in its hash order.
    SortedReply,
    /// The names of the confirmations as a set, each count in place: UNSUBSCRIBE and
    /// SUNSUBSCRIBE without names, which Redis confirms in its hash order.
    NamesAnyOrder,
}

/// How the reply to `args` is compared.
fn compare_for(args: &[Vec<u8>]) -> Compare {
    let name = args[0].to_ascii_lowercase();
    let sub = args.get(1).map(|s| s.to_ascii_lowercase());
    match (name.as_slice(), sub.as_deref()) {
        (b"unsubscribe" | b"sunsubscribe", None) => Compare::NamesAnyOrder,
        (b"pubsub", Some(b"channels" | b"shardchannels")) => Compare::SortedReply,
        _ => Compare::Exact,
    }
}

/// The first word and the rest of a message or confirmation (an array or a push whose
/// first element is a bulk string).
fn kind_of(frame: &Frame) -> Option<(&[u8], &[Frame])> {
    match frame.as_items()? {
        [Frame::Bulk(kind), rest @ ..] => Some((kind.as_slice(), rest)),
        _ => None,
    }
}

/// The channel and payload of a `pmessage`.
fn pmessage_of(frame: &Frame) -> Option<&[Frame]> {
    match kind_of(frame)? {
        (b"pmessage", [_, rest @ ..]) => Some(rest),
        _ => None,
    }
}

/// The frames as [`Compare`] says to compare them; in every case each run of `pmessage`s
/// of one publish (the same channel and payload) is sorted by pattern, as Redis sends them
/// in its patterns' hash order.
fn normalize(frames: &[Frame], compare: Compare) -> Vec<Frame> {
    let mut frames = frames.to_vec();
    let mut start = 0;
    while start < frames.len() {
        let publish = pmessage_of(&frames[start]).map(<[Frame]>::to_vec);
        let mut end = start + 1;
        if publish.is_some() {
            while end < frames.len() && pmessage_of(&frames[end]) == publish.as_deref() {
                end += 1;
            }
            frames[start..end].sort_by_key(Frame::sort_key);
        }
        start = end;
    }
    match compare {
        Compare::Exact => {}
        Compare::SortedReply => {
            if let Some(last) = frames.pop() {
                frames.push(sorted_items(last));
            }
        }
        Compare::NamesAnyOrder => {
            let ends = |frame: &Frame| {
                matches!(
                    kind_of(frame),
                    Some((b"unsubscribe" | b"sunsubscribe", [Frame::Bulk(_), _]))
                )
            };
            let mut names: Vec<Frame> = frames
                .iter()
                .filter(|f| ends(f))
                .filter_map(|f| f.as_items().map(|items| items[1].clone()))
                .collect();
            names.sort_by_key(Frame::sort_key);
            let mut names = names.into_iter();
            for frame in frames.iter_mut().filter(|f| ends(f)) {
                if let (Frame::Array(items) | Frame::Push(items), Some(name)) =
                    (frame, names.next())
                {
                    items[1] = name;
                }
            }
        }
    }
    frames
}

/// Client `who`'s frames from redis (`a`) and zankv (`z`), compared as `compare` says.
fn check(who: usize, compare: Compare, a: &[Frame], z: &[Frame]) -> Result<(), String> {
    if normalize(a, compare) == normalize(z, compare) {
        Ok(())
    } else {
        Err(format!(
            "client {who} received different frames\n  redis: {}\n  zankv: {}",
            show(a),
            show(z)
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// The clients of one scenario (or random run), each a connection to both servers in the
/// pair's protocol.
struct Clients {
    /// Per client: its connections to redis and to zankv; `None` once closed (QUIT).
    conns: Vec<Option<(Client, Client)>>,
}

impl Clients {
    fn connect(pair: &Pair, count: usize) -> Clients {
        let resp3 = pair.redis.is_resp3();
        let conns = (0..count)
            .map(|_| {
                let mut redis = Client::connect(pair.redis.port());
                let mut zankv = Client::connect(pair.zankv.port());
                for client in [&mut redis, &mut zankv] {
                    client.set_read_timeout(READ_TIMEOUT);
                    if resp3 {
                        client.hello3();
                    }
                }
                Some((redis, zankv))
            })
            .collect();
        Clients { conns }
    }

    /// Client `who` sends `args` to both servers; what it received up to the reply is
    /// compared, then what every other client received meanwhile. Returns the frames redis
    /// sent the sender, or what differs.
    fn exchange(&mut self, who: usize, args: &[Vec<u8>]) -> Result<Vec<Frame>, String> {
        let wire = Client::encode_owned(args);
        let quit = args[0].eq_ignore_ascii_case(b"quit");
        let (redis, zankv) = self.conns[who]
            .as_mut()
            .unwrap_or_else(|| panic!("client {who} was closed before {}", show_cmd(args)));
        redis.send_raw(&wire);
        // After QUIT no barrier: a request to a closing connection may reset it.
        let a = if quit {
            until_closed(redis, "redis")?
        } else {
            until_barrier(redis, "redis")?
        };
        zankv.send_raw(&wire);
        let z = read_like(zankv, &a, quit)?;
        check(who, compare_for(args), &a, &z)?;
        if quit {
            self.conns[who] = None;
        }
        for (other, conns) in self.conns.iter_mut().enumerate() {
            let Some((redis, zankv)) = conns.as_mut().filter(|_| other != who) else {
                continue;
            };
            let received = until_barrier(redis, "redis")
                .and_then(|a| read_like(zankv, &a, false).map(|z| (a, z)))
                .and_then(|(a, z)| check(other, Compare::Exact, &a, &z));
            received.map_err(|e| format!("meanwhile, client {other}: {e}"))?;
        }
        Ok(a)
    }

    /// Ends every open client's subscriptions alike on both servers (RESET), so that the
    /// next scenario or run starts with none.
    fn reset(&mut self) -> Result<(), String> {
        for who in 0..self.conns.len() {
            if self.conns[who].is_some() {
                let a = self.exchange(who, &[b("RESET")])?;
                if a != [Frame::simple("RESET")] {
                    return Err(format!("client {who}: RESET answered {}", show(&a)));
                }
            }
        }
        Ok(())
    }
}

/// Empties both databases through the pair's own clients (which never subscribe).
fn flush(pair: &mut Pair) {
    for client in [&mut pair.redis, &mut pair.zankv] {
        assert_eq!(
            client.cmd_str(&["FLUSHALL"]),
            Frame::simple("OK"),
            "FLUSHALL on port {}",
            client.port()
        );
    }
}

/// Runs [`SCENARIOS`] on a fresh pair of `target` in RESP2, then on one in RESP3.
fn run_scenarios(target: Target) {
    for resp3 in [false, true] {
        let mut pair = must_start_pair_on(resp3, target);
        let proto = if resp3 { "RESP3" } else { "RESP2" };
        for (name, steps) in SCENARIOS {
            flush(&mut pair);
            let count = steps.iter().map(|(who, _)| who + 1).max().unwrap_or(1);
            let mut clients = Clients::connect(&pair, count);
            for (i, (who, line)) in steps.iter().enumerate() {
                let args = words(line);
                if let Err(detail) = clients.exchange(*who, &args) {
                    panic!(
                        "scenario {name:?} ({proto}), step {i}: client {who} {}\n  {detail}",
                        show_cmd(&args)
                    );
                }
            }
            if let Err(detail) = clients.reset() {
                panic!("scenario {name:?} ({proto}), at its end: {detail}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Seeded random sequences
// ---------------------------------------------------------------------------------------

const SUITE: Suite = Suite {
    name: "pubsub differential",
    target: "pubsub_differential",
    skips: false,
};

/// Clients 0 to 2 subscribe (and now and then publish); client 3, the publisher, never
/// does.
const SUBSCRIBERS: usize = 3;
const PUBLISHER: usize = 3;

/// `news.*` matches two of them, `c?` one, none `x`; shard channels use the same names.
const CHANNELS: &[&str] = &["news.a", "news.b", "c1", "x"];
const PATTERNS: &[&str] = &["news.*", "c?"];
const PAYLOADS: &[&[u8]] = &[b"hi", b"", b"two words", b"\x00\xff\r\n"];

/// What a random step does.
#[derive(Clone, Copy)]
enum Kind {
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
    SSubscribe,
    SUnsubscribe,
    Publish,
    SPublish,
    /// PUBSUB NUMSUB, NUMPAT, CHANNELS, SHARDNUMSUB or SHARDCHANNELS.
    Introspect,
    /// PING, PING with a message, or GET (refused to a RESP2 subscriber).
    Other,
}

const MENU: &[(Kind, u32)] = &[
    (Kind::Subscribe, 16),
    (Kind::Unsubscribe, 10),
    (Kind::PSubscribe, 9),
    (Kind::PUnsubscribe, 7),
    (Kind::SSubscribe, 5),
    (Kind::SUnsubscribe, 4),
    (Kind::Publish, 30),
    (Kind::SPublish, 6),
    (Kind::Introspect, 9),
    (Kind::Other, 4),
];

/// The command `name` with a number in `count` of names from `names` (repeats allowed).
fn with_names(
    rng: &mut Rand,
    name: &str,
    names: &[&str],
    count: RangeInclusive<usize>,
) -> Vec<Vec<u8>> {
    let mut args = vec![rng.name(name)];
    for _ in 0..rng.usize(count) {
        args.push(b(rng.pick(names)));
    }
    args
}

/// A channel to publish to: one of [`CHANNELS`], or now and then one nobody listens to.
fn target_channel(rng: &mut Rand) -> Vec<u8> {
    if rng.chance(10) {
        b("nobody")
    } else {
        b(rng.pick(CHANNELS))
    }
}

/// One random step: the client and its command.
fn random_command(rng: &mut Rand) -> (usize, Vec<Vec<u8>>) {
    let subscriber = rng.usize(0..SUBSCRIBERS);
    let publisher = if rng.chance(75) {
        PUBLISHER
    } else {
        subscriber
    };
    match rng.weighted(MENU) {
        Kind::Subscribe => (subscriber, with_names(rng, "SUBSCRIBE", CHANNELS, 1..=3)),
        Kind::Unsubscribe => (subscriber, with_names(rng, "UNSUBSCRIBE", CHANNELS, 0..=2)),
        Kind::PSubscribe => (subscriber, with_names(rng, "PSUBSCRIBE", PATTERNS, 1..=2)),
        Kind::PUnsubscribe => (subscriber, with_names(rng, "PUNSUBSCRIBE", PATTERNS, 0..=1)),
        Kind::SSubscribe => (subscriber, with_names(rng, "SSUBSCRIBE", CHANNELS, 1..=2)),
        Kind::SUnsubscribe => (subscriber, with_names(rng, "SUNSUBSCRIBE", CHANNELS, 0..=1)),
        kind @ (Kind::Publish | Kind::SPublish) => {
            let name = match kind {
                Kind::SPublish => rng.name("SPUBLISH"),
                _ => rng.name("PUBLISH"),
            };
            let channel = target_channel(rng);
            (publisher, vec![name, channel, rng.pick(PAYLOADS).to_vec()])
        }
        Kind::Introspect => {
            let mut args = vec![rng.name("PUBSUB")];
            match rng.usize(0..5) {
                0 => {
                    args.push(rng.word("NUMSUB"));
                    for _ in 0..rng.usize(1..=3) {
                        args.push(target_channel(rng));
                    }
                }
                1 => args.push(rng.word("NUMPAT")),
                2 => {
                    args.push(rng.word("CHANNELS"));
                    if rng.bool() {
                        args.push(b(rng.pick(PATTERNS)));
                    }
                }
                3 => {
                    args.push(rng.word("SHARDNUMSUB"));
                    args.push(target_channel(rng));
                }
                _ => args.push(rng.word("SHARDCHANNELS")),
            }
            (publisher, args)
        }
        Kind::Other => {
            let args = match rng.usize(0..3) {
                0 => vec![rng.name("PING")],
                1 => vec![rng.name("PING"), b("hi")],
                _ => vec![rng.name("GET"), b("k")],
            };
            (subscriber, args)
        }
    }
}

/// Step `i` (a number, or the end): client `who` sends `args` on both servers; recorded
/// in `log`, or the run's report if the two differ.
fn logged(clients: &mut Clients, log: &mut RunLog, i: usize, who: usize, args: &[Vec<u8>]) {
    let cmd = format!("client {who}: {}", show_cmd(args));
    match clients.exchange(who, args) {
        Ok(frames) => {
            let reply = match frames.as_slice() {
                [reply] => reply.clone(),
                _ => Frame::Array(frames),
            };
            log.record(i, args, &cmd, &reply);
        }
        Err(detail) => panic!("{}", log.report(&i.to_string(), &cmd, &detail)),
    }
}

/// One seeded sequence of `steps` random steps on a fresh pair of `target`; at its end
/// every subscriber resets and no subscription is left on either server.
fn run_random(seed: u64, steps: usize, target: Target, resp3: bool) {
    let proto = if resp3 { "RESP3" } else { "RESP2" };
    eprintln!("pubsub differential: seed {seed}, {steps} steps, {proto}");
    let started = Instant::now();
    let pair = must_start_pair_on(resp3, target);
    let mut clients = Clients::connect(&pair, SUBSCRIBERS + 1);
    let mut rng = Rand::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    for i in 0..steps {
        let (who, mut args) = random_command(&mut rng);
        // Wrong arity, extra names and unknown subcommand arguments now and then.
        rng.mutate(&mut args, 3, 3);
        logged(&mut clients, &mut log, i, who, &args);
    }
    for who in 0..SUBSCRIBERS {
        logged(&mut clients, &mut log, steps + who, who, &[b("RESET")]);
    }
    let mut numsub = vec![b("PUBSUB"), b("NUMSUB")];
    numsub.extend(CHANNELS.iter().map(|c| b(c)));
    let mut shardnumsub = vec![b("PUBSUB"), b("SHARDNUMSUB")];
    shardnumsub.extend(CHANNELS.iter().map(|c| b(c)));
    let end = [numsub, shardnumsub, vec![b("PUBSUB"), b("NUMPAT")]];
    for (k, args) in end.iter().enumerate() {
        logged(
            &mut clients,
            &mut log,
            steps + SUBSCRIBERS + k,
            PUBLISHER,
            args,
        );
    }
    log.print_stats();
    eprintln!(
        "pubsub differential: seed {seed} ({proto}): {steps} steps in {:?}",
        started.elapsed()
    );
}

#[test]
fn pubsub_matches_redis_on_a_node() {
    run_scenarios(Target::Node);
    for seed in seeds(&[1, 2]) {
        run_random(seed, 300, Target::Node, seed % 2 == 0);
    }
}

#[test]
fn pubsub_matches_redis_through_the_proxy() {
    let cluster = support::proxy::ProxiedCluster::must_start(1, 3, "");
    let target = Target::Proxy(cluster.proxy.port);
    run_scenarios(target);
    for seed in seeds(&[3, 4]) {
        run_random(seed, 300, target, seed % 2 == 0);
    }
}
