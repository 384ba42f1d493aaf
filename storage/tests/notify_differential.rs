//! Keyspace notifications (`notify-keyspace-events`) against `redis-server` 7.0: a subscriber
//! of each server (PSUBSCRIBE `__key*__:*`) receives the events of the same writes, compared
//! message by message (pattern, channel, payload).
//!
//! - On a storage node (one partition: one total order of events): seeded random writes
//!   over strings, keys, lists, hashes, sets, sorted sets and SORT ... STORE, and reads of
//!   the same keys, under several settings (every class; a few classes on one kind of
//!   channel; with `n`; with `m`: a lookup that finds no key publishes `keymiss`, as reads
//!   and some writes do, OBJECT not). Replies are compared as they come, the two streams
//!   whole at the end. zankv may deliver an event after the command's reply, so each
//!   stream is read until a sentinel command's last event arrives (bounded in time).
//! - Active expiry: a key set with `PX 100` and never read again publishes `expired`
//!   within 3 s.
//! - A RESP3 subscriber receives the events as push frames, as Redis sends them.
//! - Through a proxy over four partitions: the proxy's subscribers receive every partition's
//!   events. Events of different partitions may interleave in any order, so each side's
//!   messages are grouped by key (the keyspace channel's suffix, the keyevent message's
//!   payload) and each key's sequence is compared. Also the setting from the proxy's TOML.
//! - CONFIG GET shows the setting as Redis prints it; CONFIG SET with an unknown class letter
//!   answers Redis's error and changes nothing (checked before a setting with `n`: Redis
//!   restores the old setting from its text, where `A` hides `n`, and loses it).
//!
//! Not generated: events that depend on chance or time (SPOP picking among several members;
//! expirations already past, or short enough to fall during a run).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::diff::{b, must_start_pair_on, seed_from_env, seeds, sorted_items, sorted_pairs};
use support::diff::{words, Pair, Rand, Target};
use support::proxy::ProxiedCluster;
use support::{escape, show_cmd, Client, Frame, ReadOutcome, RedisServer};

/// The pattern every subscriber listens to: both kinds of channels.
const PATTERN: &str = "__key*__:*";

/// How long a stream may take to deliver the sentinel's events.
const DELIVERY: Duration = Duration::from_secs(10);

/// How long a key set with `PX 100` may take to publish `expired`.
const EXPIRY: Duration = Duration::from_secs(3);

/// The key written last: its events close each stream.
const SENTINEL: &str = "zz-sentinel";

/// Redis's answer to a class letter it does not know.
const BAD_FLAGS: &str = "ERR CONFIG SET failed (possibly related to argument \
     'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// The settings of the node rounds; each must publish SET's or DEL's events, or key misses
/// (see [`sentinel`]).
const NODE_FLAGS: &[&str] = &["KEA", "Kl$", "Egx", "KEAn", "KEAm", "Em"];

/// Hash tags for the proxy run: every step's keys share one, so multi-key commands stay in
/// one partition; the tags reach several.
const TAGS: &[&str] = &["{a}", "{b}", "{c}", "{d}", "{e}", "{f}", "{g}", "{h}"];

/// One key of each type per letter: `s` strings, `l` lists, `h` hashes, `t` sets, `z`
/// sorted sets (RENAME, COPY and the STORE commands may give a key another type).
const KINDS: &[&str] = &["s", "l", "h", "t", "z"];

/// Values, as [`words`] reads them (`""` is the empty string).
const VALUES: &[&str] = &["1", "2", "x", "\"\""];

/// List, set and sorted set members, hash fields.
const MEMBERS: &[&str] = &["a", "b", "c"];

/// A new connection to `port` (in RESP3 with `resp3`) subscribed to [`PATTERN`].
fn subscriber(port: u16, resp3: bool) -> Client {
    let mut sub = Client::connect(port);
    if resp3 {
        sub.hello3();
    }
    // As the support's Frame shows it: `>[...]` a push, `[...]` an array.
    let push = if resp3 { ">" } else { "" };
    let expected = format!("{push}[\"psubscribe\", \"{PATTERN}\", :1]");
    let confirm = sub.cmd_str(&["PSUBSCRIBE", PATTERN]);
    assert_eq!(confirm.to_string(), expected, "PSUBSCRIBE on port {port}");
    sub.set_read_timeout(Duration::from_millis(100));
    sub
}

/// The reply to `CONFIG GET notify-keyspace-events`, as the support's Frame shows it.
fn get_flags(client: &mut Client) -> String {
    client
        .cmd_str(&["CONFIG", "GET", "notify-keyspace-events"])
        .to_string()
}

/// Sets `notify-keyspace-events` on redis's and zankv's servers; CONFIG GET must then show
/// it on zankv as redis does.
fn set_flags(redis: &mut Client, zankv: &mut Client, flags: &str) {
    for client in [&mut *redis, &mut *zankv] {
        let reply = client.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", flags]);
        assert_eq!(reply, Frame::simple("OK"), "port {}", client.port());
    }
    let (a, z) = (get_flags(redis), get_flags(zankv));
    assert_eq!(a, z, "CONFIG GET after setting {flags}");
}

/// An unknown class letter answers Redis's error and leaves the setting as CONFIG GET shows
/// it.
fn check_bad_flags(client: &mut Client) {
    let before = get_flags(client);
    let reply = client.cmd_str(&["CONFIG", "SET", "notify-keyspace-events", "q"]);
    assert_eq!(reply, Frame::error(BAD_FLAGS), "port {}", client.port());
    assert_eq!(get_flags(client), before, "port {}", client.port());
}

/// The channel and payload of a `pmessage` of [`PATTERN`]: an array, or in RESP3 a push.
fn message(frame: &Frame, resp3: bool) -> Option<(&[u8], &[u8])> {
    let items = match (frame, resp3) {
        (Frame::Array(items), false) | (Frame::Push(items), true) => items,
        _ => return None,
    };
    match items.as_slice() {
        [Frame::Bulk(kind), Frame::Bulk(pattern), Frame::Bulk(channel), Frame::Bulk(payload)]
            if kind == b"pmessage" && pattern == PATTERN.as_bytes() =>
        {
            Some((channel.as_slice(), payload.as_slice()))
        }
        _ => None,
    }
}

/// A message's channel and payload.
type Message = (Vec<u8>, Vec<u8>);

/// The last message of `event` on `key` under `flags`: on the keyevent channel when `E` is
/// set (Redis publishes it after the keyspace one), else on the keyspace channel.
fn last_message(flags: &str, key: &[u8], event: &str) -> Message {
    if flags.contains('E') {
        (
            [&b"__keyevent@0__:"[..], event.as_bytes()].concat(),
            key.to_vec(),
        )
    } else {
        ([&b"__keyspace@0__:"[..], key].concat(), b(event))
    }
}

/// The sentinel's commands on `key` (SET, then DEL, then with `m` a GET of the key gone)
/// and the last message they publish under `flags`, which must publish generic or string
/// events, or key misses.
fn sentinel(flags: &str, key: &[u8]) -> (Vec<Vec<Vec<u8>>>, Message) {
    let mut commands = vec![
        vec![b("SET"), key.to_vec(), b("1")],
        vec![b("DEL"), key.to_vec()],
    ];
    let event = if flags.contains('m') {
        commands.push(vec![b("GET"), key.to_vec()]);
        "keymiss"
    } else if flags.contains(['A', 'g']) {
        "del"
    } else {
        assert!(
            flags.contains('$'),
            "{flags} publishes neither SET, DEL nor key misses"
        );
        "set"
    };
    (commands, last_message(flags, key, event))
}

/// What a subscriber received, and what went wrong if anything did.
type Stream = (Vec<Frame>, Option<String>);

/// What each of redis's and zankv's subscribers receives until every message of `ends`
/// has arrived, within `wait`.
fn collect_both(subs: &mut [Client; 2], ends: &[Message], wait: Duration) -> [Stream; 2] {
    let deadline = Instant::now() + wait;
    let [redis, zankv] = subs;
    [
        collect(redis, ends, deadline),
        collect(zankv, ends, deadline),
    ]
}

/// What `sub` receives until every message of `ends` has arrived, or until `deadline`.
fn collect(sub: &mut Client, ends: &[Message], deadline: Instant) -> Stream {
    let (resp3, mut ends) = (sub.is_resp3(), ends.to_vec());
    let mut frames = Vec::new();
    while !ends.is_empty() {
        let frame = match sub.try_read_frame() {
            ReadOutcome::Frame(frame) => frame,
            ReadOutcome::TimedOut if Instant::now() < deadline => continue,
            outcome => {
                let missing: Vec<String> = ends
                    .iter()
                    .map(|(c, p)| format!("{} {}", escape(c), escape(p)))
                    .collect();
                let problem = format!("{outcome:?} while waiting for {}", missing.join(", "));
                return (frames, Some(problem));
            }
        };
        let Some((channel, payload)) = message(&frame, resp3) else {
            let problem = format!("not a pmessage of {PATTERN} (resp3: {resp3}): {frame}");
            frames.push(frame);
            return (frames, Some(problem));
        };
        ends.retain(|(c, p)| (c.as_slice(), p.as_slice()) != (channel, payload));
        frames.push(frame);
    }
    (frames, None)
}

/// Frames one a line, numbered, as a report shows them.
fn show_stream(frames: &[Frame]) -> String {
    let line = |(i, frame): (usize, &Frame)| format!("    {i}: {frame}\n");
    frames.iter().enumerate().map(line).collect()
}

/// Each key's messages in the order they arrived: the key is the keyspace channel's suffix,
/// or the keyevent message's payload.
fn by_key(frames: &[Frame]) -> BTreeMap<Vec<u8>, Vec<Frame>> {
    let mut keys: BTreeMap<Vec<u8>, Vec<Frame>> = BTreeMap::new();
    for frame in frames {
        if let Some((channel, payload)) = message(frame, false) {
            let key = channel.strip_prefix(b"__keyspace@0__:").unwrap_or(payload);
            keys.entry(key.to_vec()).or_default().push(frame.clone());
        }
    }
    keys
}

/// One run's report: what it is and how to rerun it, and the commands sent so far.
struct Run {
    title: String,
    log: Vec<String>,
}

impl Run {
    fn new(what: &str, seed: u64) -> Run {
        let title = format!(
            "notify differential: {what}, seed {seed}\n  rerun: ZANKV_DIFF_SEED={seed} \
             cargo test -p zankv-storage --test notify_differential"
        );
        Run {
            title,
            log: Vec::new(),
        }
    }

    /// Sends `args` to redis and to zankv; the replies must be equal (as [`comparable`]).
    fn both(&mut self, redis: &mut Client, zankv: &mut Client, args: &[Vec<u8>]) {
        let (a, z) = (redis.cmd_vec(args), zankv.cmd_vec(args));
        let (a, z) = (comparable(args, a), comparable(args, z));
        self.log.push(format!("{} -> {a}", show_cmd(args)));
        if a != z {
            self.fail(&format!("replies differ\n  redis: {a}\n  zankv: {z}"));
        }
    }

    fn fail(&self, detail: &str) -> ! {
        panic!(
            "{}\n  {detail}\n  the commands, with redis's replies:\n    {}",
            self.title,
            self.log.join("\n    ")
        )
    }

    /// zankv's stream must be redis's, and both complete: message by message, or with
    /// `per_key` each key's messages, in the order they arrived.
    fn compare(&self, [(a, a_problem), (z, z_problem)]: [Stream; 2], per_key: bool) {
        let group = |frames: &[Frame]| {
            if per_key {
                by_key(frames)
            } else {
                BTreeMap::from([(b("(every key)"), frames.to_vec())])
            }
        };
        let groups = [group(&a), group(&z)];
        let keys: BTreeSet<_> = groups.iter().flat_map(BTreeMap::keys).collect();
        let mut differ = String::new();
        for key in keys {
            let [a, z] = groups
                .each_ref()
                .map(|g| g.get(key).map(Vec::as_slice).unwrap_or_default());
            if a != z {
                let at = a.iter().zip(z).take_while(|(x, y)| x == y).count();
                differ += &format!(
                    "\n  {}, from message {at}\n  redis:\n{}  zankv:\n{}",
                    escape(key),
                    show_stream(a),
                    show_stream(z)
                );
            }
        }
        if !differ.is_empty() || a_problem.is_some() || z_problem.is_some() {
            let status = |p: Option<String>| p.unwrap_or_else(|| "complete".into());
            self.fail(&format!(
                "the events differ (redis's stream: {}; zankv's: {}){differ}",
                status(a_problem),
                status(z_problem)
            ));
        }
    }
}

/// A reply of `args` as the servers' are compared: members of sets (SPOP's too) and a
/// hash's fields sorted (each server has its own order), a TTL left as 1 (the servers'
/// clocks run apart).
fn comparable(args: &[Vec<u8>], reply: Frame) -> Frame {
    match args[0].to_ascii_uppercase().as_slice() {
        b"SPOP" | b"SMEMBERS" | b"SINTER" | b"SUNION" => sorted_items(reply),
        b"HGETALL" => sorted_pairs(reply),
        b"TTL" | b"PTTL" => match reply {
            Frame::Integer(left) if left > 0 => Frame::Integer(1),
            other => other,
        },
        _ => reply,
    }
}

/// ` WORD` (one of `choices`) `percent` times in 100, else nothing.
fn opt(rng: &mut Rand, percent: u32, choices: &[&str]) -> String {
    if rng.chance(percent) {
        format!(" {}", rng.pick(choices))
    } else {
        String::new()
    }
}

/// One random step: its commands in order, writes or reads. Every key starts with `tag`.
fn random_step(rng: &mut Rand, tag: &str) -> Vec<Vec<Vec<u8>>> {
    let key = |rng: &mut Rand, kind: &str| format!("{tag}{kind}{}", rng.usize(1..=2));
    let any = |rng: &mut Rand| {
        let kind = rng.pick(KINDS);
        key(rng, kind)
    };
    let [s, s2, l, l2, h, t, t2, z, z2] =
        ["s", "s", "l", "l", "h", "t", "t", "z", "z"].map(|kind| key(rng, kind));
    let (k, k2) = (any(rng), any(rng));
    let (v, m, m2) = (rng.pick(VALUES), rng.pick(MEMBERS), rng.pick(MEMBERS));
    // Distinct and at least 100 s: EXPIRE GT/LT never compare two equal deadlines, and no
    // key expires during a run.
    let ttl = rng.fresh_rel_secs();
    let cond = opt(rng, 50, &["NX", "XX", "GT", "LT"]);
    // Commands separated by "; " are sent in turn.
    let line = match rng.usize(0..75) {
        0 => {
            let ex = match rng.usize(0..4) {
                0 => format!(" EX {ttl}"),
                1 => format!(" PX {}", ttl * 1000),
                2 => " KEEPTTL".to_string(),
                _ => String::new(),
            };
            let (nx, get) = (opt(rng, 30, &["NX", "XX"]), opt(rng, 30, &["GET"]));
            format!("SET {s} {v}{ex}{nx}{get}")
        }
        1 => format!("SETNX {s} {v}"),
        2 => format!("MSET {s} {v} {s2} {m}"),
        3 => format!("APPEND {s} {v}"),
        4 => format!("INCR {s}"),
        5 => format!("INCRBYFLOAT {s} 1.5"),
        6 => format!("SETRANGE {s} {} {v}", rng.usize(0..3)),
        7 => format!("GETDEL {s}"),
        8 => match rng.usize(0..3) {
            0 => format!("GETEX {s} EX {ttl}"),
            1 => format!("GETEX {s} PERSIST"),
            _ => format!("GETEX {s}"),
        },
        9 => format!("DEL {k} {k2}"),
        10 => format!("EXPIRE {k} {ttl}{cond}"),
        11 => format!("PERSIST {k}"),
        12 => format!("RENAME {k} {k2}"),
        13 => format!("COPY {k} {k2}{}", opt(rng, 50, &["REPLACE"])),
        14 => format!("LPUSH {l} {m} {m2}"),
        15 => format!("RPUSH {l} {m}"),
        16 => format!("LPOP {l}{}", opt(rng, 40, &["0", "1", "3"])),
        17 => format!("RPOP {l}"),
        18 => {
            let ends = ["LEFT", "RIGHT"];
            let (from, to) = (rng.pick(&ends), rng.pick(&ends));
            format!("LMOVE {l} {l2} {from} {to}")
        }
        19 => format!("LREM {l} {} {m}", rng.i64(-1..=1)),
        20 => format!("LTRIM {l} {} {}", rng.i64(0..=1), rng.i64(-1..=1)),
        21 => format!("LSET {l} {} {m}", rng.i64(-1..=1)),
        22 => format!("LINSERT {l} {} {m} {m2}", rng.pick(&["BEFORE", "AFTER"])),
        23 => format!("HSET {h} {m} {v}{}", opt(rng, 40, &["c 1", "a x"])),
        24 => format!("HSETNX {h} {m} {v}"),
        25 => format!("HDEL {h} {m} {m2}"),
        26 => format!("HINCRBY {h} {m} {}", rng.i64(-1..=2)),
        27 => format!("HINCRBYFLOAT {h} {m} 0.5"),
        28 => format!("SADD {t} {m} {m2}"),
        29 => format!("SREM {t} {m}"),
        // A count of 0 pops nothing, one of 10 every member: no choice is left to chance.
        30 => format!("SPOP {t} {}", rng.pick(&["0", "10"])),
        // A set of one member: SPOP without a count has no choice either.
        31 => format!("SADD {tag}one {m}; SPOP {tag}one"),
        32 => format!("SMOVE {t} {t2} {m}"),
        33 => format!("SINTERSTORE {k} {t} {t2}"),
        34 => format!("SUNIONSTORE {k} {t} {t2}"),
        35 => {
            let flags = opt(rng, 40, &["NX", "XX", "GT", "LT"]) + &opt(rng, 20, &["CH"]);
            let (x, y) = (rng.i64(0..=3), rng.i64(0..=3));
            if rng.chance(25) {
                format!("ZADD {z}{flags} INCR {x} {m}")
            } else {
                format!("ZADD {z}{flags} {x} {m} {y} {m2}")
            }
        }
        36 => format!("ZINCRBY {z} {} {m}", rng.i64(0..=2)),
        37 => format!("ZREM {z} {m} {m2}"),
        38 => format!("ZPOPMIN {z}{}", opt(rng, 40, &["0", "2", "5"])),
        39 => format!("ZREMRANGEBYSCORE {z} {} {}", rng.i64(0..=2), rng.i64(1..=3)),
        40 => format!("ZUNIONSTORE {k} 2 {z} {z2}"),
        41 => format!("ZRANGESTORE {k} {z} 0 {}", rng.i64(0..=2)),
        42 => {
            let source = [&l, &t, &z][rng.usize(0..3)];
            format!("SORT {source}{} STORE {k}", opt(rng, 80, &["ALPHA"]))
        }
        // Reads: each lookup of a key that is not there publishes `keymiss` (a key of
        // another type is no miss), OBJECT's none.
        43 => format!("GET {}", [&s, &k][rng.usize(0..2)]),
        44 => format!("MGET {s} {k} {s2}"),
        45 => format!("STRLEN {s}"),
        46 => format!("GETRANGE {s} {} -1", rng.i64(0..=1)),
        47 => format!("EXISTS {k} {k2}"),
        48 => format!("TYPE {k}"),
        49 => format!("{} {k}", rng.pick(&["TTL", "PTTL"])),
        50 => format!("HGET {h} {m}"),
        51 => format!("HMGET {h} {m} {m2}"),
        52 => format!("{} {h}", rng.pick(&["HGETALL", "HLEN"])),
        53 => format!("HEXISTS {h} {m}"),
        54 => match rng.usize(0..3) {
            0 => format!("LLEN {l}"),
            1 => format!("LINDEX {l} {}", rng.i64(-1..=1)),
            _ => format!("LRANGE {l} 0 {}", rng.i64(-1..=1)),
        },
        55 => format!("{} {t}", rng.pick(&["SMEMBERS", "SCARD"])),
        56 => format!("SISMEMBER {t} {m}"),
        57 => format!("{} {t} {t2}", rng.pick(&["SINTER", "SUNION"])),
        58 => format!("ZRANGE {z} 0 -1{}", opt(rng, 50, &["WITHSCORES"])),
        59 => format!("{} {z} {m}", rng.pick(&["ZSCORE", "ZRANK"])),
        60 => format!("ZCARD {z}"),
        61 => format!("ZUNION 2 {z} {z2}"),
        // Looks the key up without announcing a miss.
        62 => format!("OBJECT FREQ {k}"),
        65 => format!("PFADD {s} {m} {m2}"),
        66 => format!("PFCOUNT {s}{}", opt(rng, 50, &[s2.as_str()])),
        67 => format!("PFMERGE {s} {s2}"),
        68 => {
            let (offset, value) = (rng.usize(0..16), rng.usize(0..3));
            match rng.usize(0..3) {
                0 => format!("BITFIELD {s} GET u8 {offset}"),
                1 => format!("BITFIELD {s} SET u8 {offset} {value}"),
                _ => format!("BITFIELD {s} INCRBY u8 {offset} {value}"),
            }
        }
        69 => format!("BITFIELD_RO {s} GET i4 {}", rng.usize(0..12)),
        70 => format!("BITFIELD {s} OVERFLOW FAIL INCRBY u2 0 {}", rng.usize(0..5)),
        71 => format!(
            "GEOADD {z}{} 13.36 38.11 {m}",
            opt(rng, 40, &["NX", "XX", "CH"])
        ),
        72 => format!("GEOSEARCHSTORE {z2} {z} FROMLONLAT 13.3 38.1 BYRADIUS 50 km"),
        73 => format!("GEORADIUS {z} 13.3 38.1 50 km STORE {z2}"),
        74 => format!("GEOSEARCH {z} FROMMEMBER {m} BYBOX 10 10 km"),
        // GET's keys (never there) are looked up in the sorted order, by the write too. Not
        // through a proxy: a pattern's keys could be in another partition.
        63 if tag.is_empty() => {
            let source = [&l, &t, &z][rng.usize(0..3)];
            let store = if rng.chance(50) {
                format!(" STORE {k}")
            } else {
                String::new()
            };
            format!("SORT {source} ALPHA GET # GET w*{store}")
        }
        _ => {
            let source = [&l, &t, &z, &k][rng.usize(0..4)];
            format!("SORT {source}{}", opt(rng, 80, &["ALPHA"]))
        }
    };
    line.split("; ").map(words).collect()
}

/// A fresh redis and node with `flags` set, and a subscriber of each, in RESP3 with `resp3`.
fn node_pair(flags: &str, resp3: bool) -> (Pair, [Client; 2]) {
    let mut pair = must_start_pair_on(false, Target::Node);
    let subs = [pair.redis.port(), pair.zankv.port()].map(|port| subscriber(port, resp3));
    // Before setting `flags`: Redis restores the setting a failed CONFIG SET leaves from its
    // text, and `AKE` stands for `AKEn` too, so it would lose `n`.
    check_bad_flags(&mut pair.redis);
    check_bad_flags(&mut pair.zankv);
    set_flags(&mut pair.redis, &mut pair.zankv, flags);
    (pair, subs)
}

/// A seeded run on a node: `steps` random steps under `flags`, then the sentinel; the
/// streams of a subscriber in RESP3 (`resp3`) or RESP2 must be equal.
fn run_node(seed: u64, flags: &str, resp3: bool, steps: usize) {
    let proto = if resp3 { "RESP3" } else { "RESP2" };
    let mut run = Run::new(&format!("a node, flags {flags}, {proto} subscriber"), seed);
    let (mut pair, mut subs) = node_pair(flags, resp3);
    let (redis, zankv) = (&mut pair.redis, &mut pair.zankv);
    let mut rng = Rand::new(seed);
    for _ in 0..steps {
        for args in random_step(&mut rng, "") {
            run.both(redis, zankv, &args);
        }
    }
    let (commands, end) = sentinel(flags, SENTINEL.as_bytes());
    for args in &commands {
        run.both(redis, zankv, args);
    }
    run.compare(collect_both(&mut subs, &[end], DELIVERY), false);
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn node_events_match_redis() {
    for (round, flags) in NODE_FLAGS.iter().enumerate() {
        for seed in seeds(&[round as u64 + 1]) {
            run_node(seed, flags, false, 200);
        }
    }
}

#[test]
fn resp3_subscribers_receive_events_as_push_frames() {
    for seed in seeds(&[11]) {
        run_node(seed, "KEA", true, 60);
    }
}

#[test]
fn keys_expire_unread_and_publish_expired() {
    let mut run = Run::new("active expiry on a node", 0);
    let (mut pair, mut subs) = node_pair("KEA", false);
    run.both(&mut pair.redis, &mut pair.zankv, &words("SET k v PX 100"));
    // Nothing reads the key: the servers' own expiry must find it.
    let end = last_message("KEA", b"k", "expired");
    run.compare(collect_both(&mut subs, &[end], EXPIRY), false);
}

/// Whether [`TAGS`] reach several partitions: MSETNX, never split, answers CROSSSLOT for
/// keys of two.
fn tags_span_partitions(proxy: &mut Client) -> bool {
    TAGS[1..].iter().any(|tag| {
        let (k1, k2) = (format!("{}probe", TAGS[0]), format!("{tag}probe"));
        let reply = proxy.cmd_str(&["MSETNX", &k1, "1", &k2, "1"]);
        proxy.cmd_str(&["DEL", &k1, &k2]);
        reply.is_error()
    })
}

#[test]
fn proxy_subscribers_receive_every_partitions_events() {
    let seed = seed_from_env().unwrap_or(21);
    let mut run = Run::new("through a proxy over 4 partitions, flags KEA", seed);
    let cluster = ProxiedCluster::must_start(4, 3, "notify_keyspace_events = \"Kl\"\n");
    let redis_server = RedisServer::must_start();
    let (mut redis, mut proxy) = (redis_server.client(), cluster.proxy.client());
    assert_eq!(get_flags(&mut proxy), r#"["notify-keyspace-events", "lK"]"#);
    check_bad_flags(&mut redis);
    check_bad_flags(&mut proxy);
    assert!(tags_span_partitions(&mut proxy), "TAGS share one partition");
    let mut subs = [redis.port(), proxy.port()].map(|port| subscriber(port, false));
    set_flags(&mut redis, &mut proxy, "KEA");
    assert_eq!(
        get_flags(&mut proxy),
        r#"["notify-keyspace-events", "AKE"]"#
    );

    let mut rng = Rand::new(seed);
    for _ in 0..150 {
        let (t1, t2) = (rng.pick(TAGS), rng.pick(TAGS));
        // Now and then keys of two tags: the proxy splits MSET and DEL per partition.
        let steps = match rng.usize(0..12) {
            0 => vec![words(&format!("MSET {t1}s1 {} {t2}s2 x", rng.pick(VALUES)))],
            1 => vec![words(&format!("DEL {t1}l1 {t2}t2 {t1}s2"))],
            _ => random_step(&mut rng, t1),
        };
        for args in steps {
            run.both(&mut redis, &mut proxy, &args);
        }
    }
    // A sentinel per tag: the events of each partition arrive in order.
    let mut ends = Vec::new();
    for tag in TAGS {
        let (commands, end) = sentinel("KEA", format!("{tag}{SENTINEL}").as_bytes());
        for args in &commands {
            run.both(&mut redis, &mut proxy, args);
        }
        ends.push(end);
    }
    run.compare(collect_both(&mut subs, &ends, DELIVERY), true);
}
