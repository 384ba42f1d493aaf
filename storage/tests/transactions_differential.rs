//! MULTI/EXEC/DISCARD/WATCH/UNWATCH against `redis-server` 7.0, on a storage node and
//! through the proxy: scripted scenarios (queueing errors, EXECABORT, runtime errors in
//! place, nested MULTI, WATCH failing on another client's write of the same value, on its
//! own client's write, on expiry, not failing on a write before WATCH or to another key,
//! UNWATCH, DISCARD, RESET) and seeded random sequences of two clients interleaving
//! transactions and plain writes, compared reply by reply in RESP2 and RESP3.
//!
//! Through a proxy in front of several partitions: a transaction or WATCH over keys of two
//! partitions answers CROSSSLOT and runs nothing, and many clients incrementing one counter
//! with WATCH/MULTI/EXEC (optimistic locking, retried on a null reply) never lose an
//! increment.

mod support;

use std::time::Duration;

use support::diff::{b, must_start_pair_on, seeds, words, Rand, Target};
use support::{show_cmd, Client, Frame};

/// One step of a scenario: which client sends what (0: the main client, 1: the other).
type Script = &'static [(usize, &'static str)];

const SCENARIOS: &[(&str, Script)] = &[
    (
        "queueing, runtime errors in place, nesting",
        &[
            (0, "EXEC"),
            (0, "DISCARD"),
            (0, "SET k 1"),
            (0, "MULTI"),
            (0, "MULTI"),
            (0, "WATCH k"),
            (0, "SET a 1 XX NX"),
            (0, "INCR k"),
            (0, "LPUSH k x"),
            (0, "GET k"),
            (0, "PING"),
            (0, "ECHO hello"),
            (0, "CLIENT SETNAME txn"),
            (0, "CLIENT GETNAME"),
            (0, "SELECT 0"),
            (0, "UNWATCH"),
            (0, "EXEC"),
            (0, "GET k"),
            (0, "MULTI"),
            (0, "EXEC"),
        ],
    ),
    (
        "a command refused while queueing aborts EXEC",
        &[
            (0, "MULTI"),
            (0, "SET k"),
            (0, "SET k 2"),
            (0, "NOSUCHCOMMAND x"),
            (0, "CONFIG NOSUCH"),
            (0, "EXEC"),
            (0, "GET k"),
            (0, "EXEC"),
            (0, "MULTI"),
            (0, "SET k 3"),
            (0, "DISCARD"),
            (0, "GET k"),
        ],
    ),
    (
        "reads see the transaction's own writes",
        &[
            (0, "MULTI"),
            (0, "SET s 10"),
            (0, "INCRBY s 5"),
            (0, "APPEND s x"),
            (0, "GET s"),
            (0, "RPUSH l a b c"),
            (0, "LRANGE l 0 -1"),
            (0, "HSET h f v"),
            (0, "HGETALL h"),
            (0, "ZADD z 1 m"),
            (0, "ZRANGE z 0 -1 WITHSCORES"),
            (0, "DEL l"),
            (0, "EXISTS l s h"),
            (0, "EXEC"),
        ],
    ),
    (
        "WATCH: another client's write fails EXEC, even of the same value",
        &[
            (0, "SET k 1"),
            (0, "WATCH k"),
            (1, "SET k 1"),
            (0, "MULTI"),
            (0, "SET k 2"),
            (0, "EXEC"),
            (0, "GET k"),
            (0, "WATCH k"),
            (0, "MULTI"),
            (0, "SET k 3"),
            (0, "EXEC"),
            (0, "GET k"),
        ],
    ),
    (
        "WATCH: the client's own write after WATCH fails EXEC; one before does not",
        &[
            (0, "SET k 1"),
            (0, "WATCH k"),
            (0, "INCR k"),
            (0, "MULTI"),
            (0, "INCR k"),
            (0, "EXEC"),
            (1, "SET k 5"),
            (0, "WATCH k"),
            (0, "MULTI"),
            (0, "INCR k"),
            (0, "EXEC"),
        ],
    ),
    (
        "WATCH: writes to other keys, reads, UNWATCH and DISCARD",
        &[
            (0, "WATCH k j"),
            (1, "SET other 1"),
            (1, "GET k"),
            (0, "MULTI"),
            (0, "SET k 1"),
            (0, "EXEC"),
            (0, "WATCH k"),
            (1, "DEL k"),
            (0, "UNWATCH"),
            (0, "MULTI"),
            (0, "SET k 2"),
            (0, "EXEC"),
            (0, "WATCH k"),
            (0, "MULTI"),
            (1, "SET k 3"),
            (0, "DISCARD"),
            (0, "MULTI"),
            (0, "GET k"),
            (0, "EXEC"),
            (0, "WATCH missing"),
            (1, "SET missing 1"),
            (0, "MULTI"),
            (0, "GET missing"),
            (0, "EXEC"),
            (0, "WATCH k"),
            (1, "EXPIRE k 100"),
            (0, "MULTI"),
            (0, "PING"),
            (0, "EXEC"),
        ],
    ),
    (
        "WATCH with only connection commands queued, and RESET",
        &[
            (0, "WATCH k"),
            (1, "SET k 9"),
            (0, "MULTI"),
            (0, "PING"),
            (0, "EXEC"),
            (0, "WATCH k"),
            (0, "MULTI"),
            (0, "RESET"),
            (0, "EXEC"),
            (1, "SET k 10"),
            (0, "MULTI"),
            (0, "GET k"),
            (0, "EXEC"),
        ],
    ),
];

/// The other client of each server, speaking the main client's protocol.
fn second(pair: &support::diff::Pair) -> (Client, Client) {
    let mut r = Client::connect(pair.redis.port());
    let mut z = Client::connect(pair.zankv.port());
    if pair.redis.is_resp3() {
        r.hello3();
        z.hello3();
    }
    (r, z)
}

/// Replies that may differ: HELLO's and CLIENT's describe the server.
fn comparable(args: &[Vec<u8>]) -> bool {
    !args[0].eq_ignore_ascii_case(b"client") || args[1].eq_ignore_ascii_case(b"getname")
}

fn run_scenarios(target: Target, resp3: bool) {
    for (name, script) in SCENARIOS {
        let mut pair = must_start_pair_on(resp3, target);
        let (mut redis2, mut zankv2) = second(&pair);
        for (i, (who, line)) in script.iter().enumerate() {
            let args = words(line);
            let (a, z) = if *who == 0 {
                (pair.redis.cmd_vec(&args), pair.zankv.cmd_vec(&args))
            } else {
                (redis2.cmd_vec(&args), zankv2.cmd_vec(&args))
            };
            if comparable(&args) {
                assert_eq!(
                    a,
                    z,
                    "scenario {name:?} (resp3: {resp3}), step {i}: client {who} {}",
                    show_cmd(&args)
                );
            }
        }
    }
}

/// Pipelines (each sent in one write): WATCH's tokens are in before the EXEC after it, a
/// write after WATCH in the same pipeline fails EXEC and one before it does not.
const PIPELINES: &[&[&str]] = &[
    &["SET k 1", "WATCH k", "MULTI", "INCR k", "EXEC", "GET k"],
    &["WATCH k", "SET k 5", "MULTI", "INCR k", "EXEC", "GET k"],
    &["WATCH k", "WATCH j", "MULTI", "INCR j", "GET k", "EXEC"],
    &[
        "MULTI", "SET a 1", "SET a", "EXEC", "GET a", "MULTI", "DISCARD", "PING",
    ],
];

fn run_pipelines(target: Target, resp3: bool) {
    let mut pair = must_start_pair_on(resp3, target);
    for (p, lines) in PIPELINES.iter().enumerate() {
        let commands: Vec<Vec<Vec<u8>>> = lines.iter().map(|l| words(l)).collect();
        let refs: Vec<&[Vec<u8>]> = commands.iter().map(Vec::as_slice).collect();
        let replies = support::diff::send_pipeline(&mut pair, p as u64, &refs);
        for (i, (a, z)) in replies.iter().enumerate() {
            assert_eq!(
                a, z,
                "pipeline {p} (resp3: {resp3}), command {i}: {}",
                lines[i]
            );
        }
    }
}

/// A key that expires between WATCH and EXEC fails EXEC (Redis 7.0); one that had expired
/// before WATCH does not.
fn run_expiry(target: Target) {
    let mut pair = must_start_pair_on(false, target);
    for client in [&mut pair.redis, &mut pair.zankv] {
        assert_eq!(
            client.cmd_str(&["SET", "k", "v", "PX", "300"]),
            Frame::simple("OK")
        );
        assert_eq!(client.cmd_str(&["WATCH", "k"]), Frame::simple("OK"));
    }
    std::thread::sleep(Duration::from_millis(600));
    for client in [&mut pair.redis, &mut pair.zankv] {
        client.cmd_str(&["MULTI"]);
        client.cmd_str(&["SET", "x", "1"]);
        assert_eq!(
            client.cmd_str(&["EXEC"]),
            Frame::NullArray,
            "port {}",
            client.port()
        );
        assert_eq!(client.cmd_str(&["GET", "x"]), Frame::Null);
        client.cmd_str(&["SET", "gone", "v", "PX", "1"]);
    }
    std::thread::sleep(Duration::from_millis(50));
    for client in [&mut pair.redis, &mut pair.zankv] {
        client.cmd_str(&["WATCH", "gone"]);
        client.cmd_str(&["MULTI"]);
        client.cmd_str(&["SET", "x", "1"]);
        assert_eq!(
            client.cmd_str(&["EXEC"]),
            Frame::Array(vec![Frame::simple("OK")]),
            "port {}",
            client.port()
        );
        client.cmd_str(&["SET", "gone2", "v", "PX", "1"]);
    }
    // Watched already expired, then deleted by the background expiry before EXEC: still no
    // change (a CI run once saw that deletion fail EXEC).
    std::thread::sleep(Duration::from_millis(50));
    for client in [&mut pair.redis, &mut pair.zankv] {
        client.cmd_str(&["WATCH", "gone2"]);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let redis_port = pair.redis.port();
    for client in [&mut pair.redis, &mut pair.zankv] {
        client.cmd_str(&["MULTI"]);
        client.cmd_str(&["SET", "x", "2"]);
        assert_eq!(
            client.cmd_str(&["EXEC"]),
            Frame::Array(vec![Frame::simple("OK")]),
            "port {} (redis on {redis_port})",
            client.port()
        );
    }
}

/// One random step of the two-client sequences.
fn random_step(rng: &mut Rand, in_multi: bool) -> (usize, Vec<Vec<u8>>) {
    let key = |rng: &mut Rand| b(["a", "b", "c"][rng.usize(0..3)]);
    let value = |rng: &mut Rand| b(["1", "2", "x", ""][rng.usize(0..4)]);
    let data = |rng: &mut Rand| -> Vec<Vec<u8>> {
        match rng.usize(0..12) {
            0 => vec![b("SET"), key(rng), value(rng)],
            1 => vec![b("INCR"), key(rng)],
            2 => vec![b("GET"), key(rng)],
            3 => vec![b("DEL"), key(rng)],
            4 => vec![b("RPUSH"), key(rng), value(rng)],
            5 => vec![b("LRANGE"), key(rng), b("0"), b("-1")],
            6 => vec![b("HSET"), key(rng), b("f"), value(rng)],
            7 => vec![b("EXISTS"), key(rng), key(rng)],
            8 => vec![b("SET"), key(rng)],
            9 => vec![b("APPEND"), key(rng), value(rng)],
            10 => vec![b("EXPIRE"), key(rng), b("100")],
            _ => vec![b("TYPE"), key(rng)],
        }
    };
    if in_multi {
        return match rng.usize(0..10) {
            0 => (0, vec![b("EXEC")]),
            1 if rng.chance(30) => (0, vec![b("DISCARD")]),
            2 => (1, data(rng)),
            3 if rng.chance(20) => (0, vec![b("WATCH"), key(rng)]),
            _ => (0, data(rng)),
        };
    }
    match rng.usize(0..8) {
        0 | 1 => (0, vec![b("WATCH"), key(rng)]),
        2 => (0, vec![b("MULTI")]),
        3 if rng.chance(30) => (0, vec![b("UNWATCH")]),
        4 | 5 => (1, data(rng)),
        _ => (0, data(rng)),
    }
}

fn run_random(seed: u64, steps: usize, target: Target, resp3: bool) {
    let mut pair = must_start_pair_on(resp3, target);
    let (mut redis2, mut zankv2) = second(&pair);
    let mut rng = Rand::new(seed);
    let mut in_multi = false;
    let mut history = Vec::new();
    // The keys client 0 watches, and whether a write named one since its WATCH.
    let mut watched: Vec<Vec<u8>> = Vec::new();
    let mut written = false;
    // Client 0's commands queued since MULTI.
    let mut queue: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..steps {
        let (who, args) = random_step(&mut rng, in_multi);
        let (a, z) = if who == 0 {
            (pair.redis.cmd_vec(&args), pair.zankv.cmd_vec(&args))
        } else {
            (redis2.cmd_vec(&args), zankv2.cmd_vec(&args))
        };
        history.push(format!("    client {who}: {} -> {a}", show_cmd(&args)));
        let name = args[0].to_ascii_lowercase();
        let queued = who == 0 && in_multi;
        if !queued && WRITES.contains(&name.as_slice()) && args.len() > 1 {
            written |= watched.contains(&args[1]);
        }
        // Known difference (docs/transactions.md): zankv fails EXEC after any write that
        // named a watched key, Redis only after one that changed it.
        let tolerated =
            name == b"exec" && written && matches!(z, Frame::NullArray | Frame::Null) && a != z;
        if who == 0 {
            match name.as_slice() {
                b"watch" if !in_multi => watched.extend(args[1..].iter().cloned()),
                b"exec" | b"discard" | b"unwatch" if !(in_multi && name == b"unwatch") => {
                    watched.clear();
                    written = false;
                }
                _ => {}
            }
        }
        if queued && name != b"exec" && name != b"discard" {
            queue.push(args.clone());
        }
        if tolerated {
            // Run the same transaction unwatched, and both servers are equal again.
            assert_eq!(pair.zankv.cmd_str(&["MULTI"]), Frame::simple("OK"));
            for args in &queue {
                pair.zankv.cmd_vec(args);
            }
            assert_eq!(
                pair.zankv.cmd_str(&["EXEC"]),
                a,
                "seed {seed} step {i}: replay"
            );
        }
        if name == b"multi" && who == 0 {
            queue.clear();
        }
        if tolerated {
            in_multi = false;
            continue;
        }
        assert_eq!(
            a,
            z,
            "seed {seed} (resp3: {resp3}) step {i}: client {who} {}\n  \
             rerun: ZANKV_DIFF_SEED={seed} cargo test -p zankv-storage --test transactions_differential\n  \
             the last steps, with redis's replies:\n{}",
            show_cmd(&args),
            history[history.len().saturating_sub(25)..].join("\n")
        );
        if who == 0 {
            let name = &args[0];
            if name.eq_ignore_ascii_case(b"multi") {
                in_multi = true;
            } else if name.eq_ignore_ascii_case(b"exec") || name.eq_ignore_ascii_case(b"discard") {
                in_multi = false;
            }
        }
    }
}

/// The commands of [`random_step`] that write their first argument.
const WRITES: &[&[u8]] = &[
    b"set", b"incr", b"del", b"rpush", b"hset", b"append", b"expire",
];

#[test]
fn transactions_on_a_node() {
    run_scenarios(Target::Node, false);
    run_scenarios(Target::Node, true);
    run_pipelines(Target::Node, false);
    run_pipelines(Target::Node, true);
    run_expiry(Target::Node);
    for seed in seeds(&[1, 2, 3]) {
        run_random(seed, 400, Target::Node, seed % 2 == 0);
    }
}

#[test]
fn transactions_through_the_proxy() {
    let cluster = support::proxy::ProxiedCluster::must_start(1, 3, "");
    let target = Target::Proxy(cluster.proxy.port);
    run_scenarios(target, false);
    run_scenarios(target, true);
    run_pipelines(target, false);
    run_expiry(target);
    for seed in seeds(&[1, 2, 3]) {
        run_random(seed + 100, 200, target, seed % 2 == 1);
    }
    let metrics = cluster.proxy.metrics();
    assert!(
        metrics.contains("zankv_proxy_commands_total{command=\"exec\"}"),
        "the proxy forwarded EXEC: {metrics}"
    );
}

/// Two keys of `default` in different partitions: MSETNX, which is never split, answers
/// CROSSSLOT for them.
fn keys_in_two_partitions(client: &mut Client) -> (String, String) {
    for i in 1..200 {
        let other = format!("k{i}");
        let reply = client.cmd_str(&["MSETNX", "k0", "x", &other, "x"]);
        client.cmd_str(&["DEL", "k0", &other]);
        if reply.is_error() {
            return ("k0".into(), other);
        }
    }
    panic!("no two keys in different partitions among 200");
}

#[test]
fn transactions_across_partitions_and_a_watch_race() {
    let cluster = support::proxy::ProxiedCluster::must_start(4, 3, "");
    let mut c = cluster.proxy.client();
    let (k1, k2) = keys_in_two_partitions(&mut c);
    let crossslot = Frame::error("CROSSSLOT Keys in request don't hash to the same slot");
    // Keys of two partitions: refused at EXEC, and nothing ran, not even the connection
    // commands queued with them.
    assert_eq!(c.cmd_str(&["MULTI"]), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["SET", &k1, "1"]), Frame::simple("QUEUED"));
    assert_eq!(
        c.cmd_str(&["CLIENT", "SETNAME", "refused"]),
        Frame::simple("QUEUED")
    );
    assert_eq!(c.cmd_str(&["SET", &k2, "1"]), Frame::simple("QUEUED"));
    assert_eq!(c.cmd_str(&["EXEC"]), crossslot);
    assert_eq!(c.cmd_str(&["EXISTS", &k1, &k2]), Frame::Integer(0));
    assert_eq!(c.cmd_str(&["CLIENT", "GETNAME"]), Frame::Null);
    // A watched key of another partition too.
    assert_eq!(c.cmd_str(&["WATCH", &k1]), Frame::simple("OK"));
    c.cmd_str(&["MULTI"]);
    c.cmd_str(&["SET", &k2, "1"]);
    assert_eq!(c.cmd_str(&["EXEC"]), crossslot);
    assert_eq!(c.cmd_str(&["WATCH", &k1, &k2]), crossslot);
    // A keyless command has no partition of its own when there are several.
    c.cmd_str(&["MULTI"]);
    c.cmd_str(&["DBSIZE"]);
    assert_eq!(c.cmd_str(&["EXEC"]), crossslot);

    // Optimistic locking: every client adds 1 with WATCH, GET, MULTI, SET, EXEC, and
    // retries when EXEC answers null. No increment is lost or applied twice.
    const CLIENTS: usize = 4;
    const INCREMENTS: usize = 25;
    c.cmd_str(&["SET", "counter", "0"]);
    let port = cluster.proxy.port;
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut conflicts = 0;
                for _ in 0..INCREMENTS {
                    loop {
                        assert_eq!(c.cmd_str(&["WATCH", "counter"]), Frame::simple("OK"));
                        let now: i64 = match c.cmd_str(&["GET", "counter"]) {
                            Frame::Bulk(v) => String::from_utf8(v).unwrap().parse().unwrap(),
                            other => panic!("{other}"),
                        };
                        c.cmd_str(&["MULTI"]);
                        c.cmd_str(&["SET", "counter", &(now + 1).to_string()]);
                        match c.cmd_str(&["EXEC"]) {
                            Frame::Array(r) if r == vec![Frame::simple("OK")] => break,
                            Frame::NullArray => conflicts += 1,
                            other => panic!("EXEC answered {other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(
        c.cmd_str(&["GET", "counter"]),
        Frame::bulk((CLIENTS * INCREMENTS).to_string()),
        "every increment counted once ({conflicts} conflicts retried)"
    );
}
