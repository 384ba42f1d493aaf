//! CONFIG GET/SET/RESETSTAT/REWRITE of a storage node against `redis-server` 7.0: the same
//! parameter names, and for every parameter the same reply to CONFIG SET of each value of a
//! wide menu (good values, bad values, units, percentages, enum words, special forms) and
//! the same value read back; globs select the same names. The few parameters zankv fixes
//! while a process runs are named here and must be refused as immutable.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use support::diff::{must_start_pair_on, Target};
use support::{Client, Frame};

/// Parameters a storage node fixes while it runs (docs/proxy.md, "CONFIG"), which
/// redis-server lets CONFIG SET change.
const FIXED_BY_ZANKV: &[&str] = &[
    "bind",
    "port",
    "maxclients",
    "proto-max-bulk-len",
    "client-query-buffer-limit",
    "requirepass",
    "tls-port",
    "timeout",
    "slowlog-log-slower-than",
    "slowlog-max-len",
];

/// Parameters whose CONFIG SET cannot be compared: redis-server refuses or acts on them
/// for reasons of its own build or machine.
const NOT_COMPARED: &[(&str, &str)] = &[
    (
        "activedefrag",
        "apt's redis-server lacks the jemalloc that active defragmentation needs",
    ),
    (
        "tls-cluster",
        "redis-server reloads its TLS set-up, which the reference has none of",
    ),
    (
        "tls-replication",
        "redis-server reloads its TLS set-up, which the reference has none of",
    ),
    (
        "oom-score-adj",
        "redis-server writes /proc/self/oom_score_adj, which depends on the machine",
    ),
];

/// Parameters besides [`FIXED_BY_ZANKV`] whose default differs: they describe the process
/// (or how the reference server was started).
const DESCRIBES_THE_PROCESS: &[&str] = &[
    "dir",
    "databases",
    "appendonly",
    "appendfsync",
    "save",
    "logfile",
    "pidfile",
    "protected-mode",
];

/// Every value tried on every parameter.
const MENU: &[&str] = &[
    "yes",
    "no",
    "YES",
    "No",
    "maybe",
    "0",
    "1",
    "5",
    "-1",
    "-2",
    "100",
    "500",
    "1000",
    "100000",
    "65535",
    "65536",
    "+5",
    "05",
    "-0",
    " 5",
    "5 ",
    "",
    "1k",
    "1kb",
    "5mb",
    "5MB",
    "1g",
    "1gb",
    "2b",
    "1.5",
    "1e3",
    "0x10",
    "10%",
    "0%",
    "100%",
    "101%",
    "-5%",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551616",
    "-9223372036854775809",
    "2147483647",
    "2147483648",
    "4294967296",
    // enum words
    "always",
    "everysec",
    "EVERYSEC",
    "allkeys-lru",
    "volatile-ttl",
    "noeviction",
    "debug",
    "warning",
    "swapdb",
    "on-empty-db",
    "hostname",
    "optional",
    "clients",
    "panic",
    "allchannels",
    "local",
    "relative",
    // save
    "3600 1",
    "3600 1 300 100",
    "3600",
    "0 0",
    "1 -5",
    "01 1",
    "3600 1 ",
    "a b",
    // client-output-buffer-limit
    "normal 1 2 3",
    "slave 1mb 2mb 3",
    "replica 1 2 3 pubsub 1gb 1k 0",
    "normal 1 2",
    "foo 1 2 3",
    "normal a 2 3",
    "master 1 2 3",
    // notify-keyspace-events
    "KEA",
    "A",
    "Kx",
    "Egl",
    "gA",
    "n",
    "KEn",
    "z",
    "Q",
    "$lshzxetmd",
    "g$lshzxetmdnKE",
    // oom-score-adj-values
    "0 200 800",
    "-2000 0 2000",
    "-2001 0 0",
    "1 2",
    "100 50 800",
    // latency-tracking-info-percentiles
    "50 99 99.9",
    "101",
    "50.5 0",
    "99.99999",
    "1e1",
    // shutdown-on-sig*
    "default",
    "save",
    "nosave",
    "now force",
    "save nosave",
    "SAVE NOW",
    "default now",
];

fn text(frame: &Frame) -> String {
    format!("{frame:?}")
}

/// CONFIG GET's reply as a map of names to values.
fn get_map(client: &mut Client, patterns: &[&str]) -> BTreeMap<String, String> {
    let mut args = vec!["CONFIG", "GET"];
    args.extend_from_slice(patterns);
    let reply = client.cmd_str(&args);
    let items = reply
        .as_items()
        .unwrap_or_else(|| panic!("CONFIG GET {patterns:?}: {reply:?}"));
    items
        .chunks(2)
        .map(|pair| {
            let name = String::from_utf8_lossy(pair[0].as_bytes().expect("a name")).into_owned();
            let value = String::from_utf8_lossy(pair[1].as_bytes().expect("a value")).into_owned();
            (name, value)
        })
        .collect()
}

#[test]
fn every_parameter_matches_redis() {
    let mut pair = must_start_pair_on(false, Target::Node);
    // A tiny maxmemory-clients would otherwise evict the test's own connection.
    assert_eq!(
        pair.redis.cmd_str(&["CLIENT", "NO-EVICT", "on"]),
        Frame::simple("OK")
    );
    let redis_all = get_map(&mut pair.redis, &["*"]);
    let zankv_all = get_map(&mut pair.zankv, &["*"]);
    assert_eq!(
        redis_all.keys().collect::<BTreeSet<_>>(),
        zankv_all.keys().collect::<BTreeSet<_>>(),
        "CONFIG GET * lists the same names"
    );
    for (name, value) in &redis_all {
        let name_ = name.as_str();
        if !DESCRIBES_THE_PROCESS.contains(&name_) && !FIXED_BY_ZANKV.contains(&name_) {
            assert_eq!(&zankv_all[name], value, "the default of {name}");
        }
    }

    let mut compared = 0;
    let mut mismatches = Vec::new();
    for name in redis_all.keys() {
        let name = name.as_str();
        if NOT_COMPARED.iter().any(|(n, _)| *n == name) {
            continue;
        }
        if FIXED_BY_ZANKV.contains(&name) {
            let reply = pair.zankv.cmd_str(&["CONFIG", "SET", name, "1"]);
            assert_eq!(
                reply,
                Frame::error(&format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
                )),
                "zankv fixes {name}"
            );
            continue;
        }
        let redis_before = get_map(&mut pair.redis, &[name])[name].clone();
        let zankv_before = get_map(&mut pair.zankv, &[name])[name].clone();
        for value in MENU {
            let want = pair.redis.cmd_str(&["CONFIG", "SET", name, value]);
            let got = pair.zankv.cmd_str(&["CONFIG", "SET", name, value]);
            if text(&got) != text(&want) {
                mismatches.push(format!(
                    "CONFIG SET {name} {value:?}: zankv answered {got:?}, redis {want:?}"
                ));
            } else if want == Frame::simple("OK") {
                let want = get_map(&mut pair.redis, &[name]);
                let got = get_map(&mut pair.zankv, &[name]);
                if got != want {
                    mismatches.push(format!(
                        "CONFIG GET {name} after SET {value:?}: zankv {got:?}, redis {want:?}"
                    ));
                }
            }
            compared += 1;
        }
        // Back to where each started, so one parameter's value never shapes another's test
        // (a tiny maxmemory, say).
        pair.redis.cmd_str(&["CONFIG", "SET", name, &redis_before]);
        pair.zankv.cmd_str(&["CONFIG", "SET", name, &zankv_before]);
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(compared > 150 * MENU.len(), "{compared} pairs compared");
}

#[test]
fn globs_several_pairs_and_the_other_subcommands_match_redis() {
    let mut pair = must_start_pair_on(false, Target::Node);
    for patterns in [
        &["*max*"][..],
        &["hash-*"],
        &["?z"],
        &["[hz]*"],
        &["HZ"],
        &["Hash-Max-Ziplist-Value"],
        &["nothing-here"],
        &["hz", "*-entries", "hz"],
        &["*ZIPLIST*"],
    ] {
        let want = get_map(&mut pair.redis, patterns);
        let got = get_map(&mut pair.zankv, patterns);
        let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want), "CONFIG GET {patterns:?}");
    }
    let same = |pair: &mut support::diff::Pair, args: &[&str]| {
        if args.len() > 2 && args[1] == "GET" {
            let want = get_map(&mut pair.redis, &args[2..]);
            let got = get_map(&mut pair.zankv, &args[2..]);
            assert_eq!(got, want, "{args:?}");
            return;
        }
        let want = pair.redis.cmd_str(args);
        let got = pair.zankv.cmd_str(args);
        assert_eq!(text(&got), text(&want), "{args:?}");
    };
    for args in [
        &["CONFIG", "SET", "hz", "50", "hash-max-ziplist-value", "1kb"][..],
        &["CONFIG", "SET", "HZ", "5", "hz", "6"],
        &[
            "CONFIG",
            "SET",
            "hz",
            "5",
            "hash-max-ziplist-value",
            "1",
            "hash-max-listpack-value",
            "2",
        ],
        &["CONFIG", "SET", "hz", "7", "nope", "1"],
        &["CONFIG", "SET", "appendonly", "no", "hz", "x"],
        &["CONFIG", "SET", "daemonize", "no"],
        &["CONFIG", "SET", "dbfilename", "x.rdb"],
        &["CONFIG", "SET", "hz"],
        &["CONFIG", "GET"],
        &["CONFIG", "GET", "hz", "hash-max-*"],
        &["CONFIG", "RESETSTAT"],
        &["CONFIG", "RESETSTAT", "x"],
        &["CONFIG", "REWRITE"],
        &["CONFIG", "HELP"],
        &["CONFIG", "NOPE"],
    ] {
        same(&mut pair, args);
    }
    // A pair refused leaves every pair of the command unchanged.
    assert_eq!(
        get_map(&mut pair.zankv, &["appendonly"])["appendonly"],
        "yes"
    );
    assert_eq!(get_map(&mut pair.zankv, &["hz"])["hz"], "5");

    // RESETSTAT starts INFO's counters again.
    for _ in 0..3 {
        pair.zankv.cmd_str(&["PING"]);
    }
    pair.zankv.cmd_str(&["CONFIG", "RESETSTAT"]);
    let info = pair.zankv.cmd_str(&["INFO", "stats"]);
    let info = String::from_utf8_lossy(info.as_bytes().expect("INFO text")).into_owned();
    let processed: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .expect("total_commands_processed")
        .trim()
        .parse()
        .expect("a number");
    assert!(processed <= 2, "counted from RESETSTAT: {info}");
}
