//! End to end through the proxy: PD, three PD-managed storage nodes and a `zankv-proxy` on
//! loopback. Keys spread over partitions, multi-key commands split and merged, commands
//! that need one partition refused across several, keyless commands combined over all
//! (INFO answering without partitions that lost their leaders), a partition leader killed
//! under write load, and the stock Redis tools (redis-cli, redis-benchmark) pointed at the
//! proxy.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use support::proxy::ProxiedCluster;
use support::Frame;

fn b(s: &str) -> Frame {
    Frame::bulk(s)
}

#[test]
fn keys_spread_over_partitions_and_multi_key_commands_are_split_and_merged() {
    let cluster = ProxiedCluster::must_start(8, 3, "");
    let mut c = cluster.proxy.client();
    for i in 0..200 {
        let (k, v) = (format!("key{i}"), format!("value{i}"));
        assert_eq!(c.cmd_str(&["SET", &k, &v]), Frame::simple("OK"));
    }
    for i in (0..200).step_by(7) {
        assert_eq!(
            c.cmd_str(&["GET", &format!("key{i}")]),
            b(&format!("value{i}"))
        );
    }
    // Every node holds some of the keys: they really are spread.
    let keys_per_node: Vec<u64> = (0..3)
        .map(|i| {
            cluster
                .nodes
                .replicas(i)
                .unwrap_or_default()
                .iter()
                .filter(|r| r.role == "leader")
                .map(|r| r.keys)
                .sum()
        })
        .collect();
    assert_eq!(keys_per_node.iter().sum::<u64>(), 200, "{keys_per_node:?}");

    // MSET over many partitions, then MGET in an order of its own, with missing keys.
    let mut mset = vec!["MSET".to_string()];
    for i in 0..20 {
        mset.push(format!("m{i}"));
        mset.push(format!("mv{i}"));
    }
    let refs: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd_str(&refs), Frame::simple("OK"));
    let order = ["m5", "nope1", "m0", "m19", "m5", "nope2", "m11"];
    let mut mget = vec!["MGET"];
    mget.extend(order);
    let expected: Vec<Frame> = order
        .iter()
        .map(|k| match k.strip_prefix('m') {
            Some(n) => b(&format!("mv{n}")),
            None => Frame::Null,
        })
        .collect();
    assert_eq!(c.cmd_str(&mget), Frame::Array(expected));
    assert_eq!(
        c.cmd_str(&["EXISTS", "m1", "m2", "nope", "m1", "key3"]),
        Frame::Integer(4)
    );
    assert_eq!(c.cmd_str(&["TOUCH", "m1", "m2", "nope"]), Frame::Integer(2));
    assert_eq!(
        c.cmd_str(&["DEL", "m1", "m2", "nope", "m3"]),
        Frame::Integer(3)
    );
    assert_eq!(c.cmd_str(&["UNLINK", "m4", "m5"]), Frame::Integer(2));
    assert_eq!(
        c.cmd_str(&["MGET", "m1", "m4", "m6"]),
        Frame::Array(vec![Frame::Null, Frame::Null, b("mv6")])
    );
    // A value of another type reads as nil in MGET, as in Redis, also in a split part.
    assert_eq!(c.cmd_str(&["HSET", "h", "f", "v"]), Frame::Integer(1));
    assert_eq!(
        c.cmd_str(&["MGET", "h", "m6"]),
        Frame::Array(vec![Frame::Null, b("mv6")])
    );

    // Commands that need one partition are refused across several, with no effect.
    let (a, z) = (0..50)
        .map(|i| format!("key{i}"))
        .flat_map(|a| (0..50).map(move |j| (a.clone(), format!("key{j}"))))
        .find(|(a, z)| {
            a != z && {
                let mut probe = cluster.proxy.client();
                matches!(probe.cmd_str(&["RENAME", a, z]), Frame::Error(e) if e.starts_with(b"CROSSSLOT"))
            }
        })
        .expect("two keys in different partitions");
    assert_eq!(c.cmd_str(&["GET", &a]), b(&format!("value{}", &a[3..])));
    assert_eq!(c.cmd_str(&["GET", &z]), b(&format!("value{}", &z[3..])));

    // The default namespace follows Redis Cluster's hash tags unless created otherwise:
    // keys sharing a {tag} share a partition, so commands over them work on 8 partitions.
    for i in 0..20 {
        let (cart, profile) = (
            format!("user:{{{i}}}:cart"),
            format!("user:{{{i}}}:profile"),
        );
        let (copy, moved) = (format!("user:{{{i}}}:copy"), format!("user:{{{i}}}:moved"));
        assert_eq!(
            c.cmd_str(&["MSETNX", &cart, "c", &profile, "p"]),
            Frame::Integer(1),
            "{cart}"
        );
        assert_eq!(c.cmd_str(&["COPY", &cart, &copy]), Frame::Integer(1));
        assert_eq!(
            c.cmd_str(&["RENAME", &profile, &moved]),
            Frame::simple("OK")
        );
        assert_eq!(
            c.cmd_str(&["MGET", &cart, &profile, &copy, &moved]),
            Frame::Array(vec![b("c"), Frame::Null, b("c"), b("p")])
        );
    }

    // Pipelined requests to many partitions come back in order.
    let mut wire = Vec::new();
    for i in 0..100 {
        wire.extend(support::Client::encode(&[
            b"GET",
            format!("key{i}").as_bytes(),
        ]));
    }
    c.send_raw(&wire);
    for i in 0..100 {
        assert_eq!(c.read_frame().unwrap(), b(&format!("value{i}")));
    }
    // RESP3 through the proxy.
    let mut r3 = cluster.proxy.client();
    r3.hello3();
    assert_eq!(r3.cmd_str(&["GET", "nope"]), Frame::Null);
    assert_eq!(
        r3.cmd_str(&["MGET", "key1", "nope", "key2"]),
        Frame::Array(vec![b("value1"), Frame::Null, b("value2")])
    );
    let metrics = cluster.proxy.metrics();
    assert!(
        metrics.contains("zankv_proxy_commands_total{command=\"mget\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("zankv_proxy_namespace_commands_total{namespace=\"default\"}"));
}

/// Keyless commands combine every partition: DBSIZE sums, KEYS and SCAN see every key once
/// (SCAN's cursor walks the partitions), RANDOMKEY finds one, FLUSHALL empties them all.
#[test]
fn keyless_commands_combine_every_partition() {
    let mut cluster = ProxiedCluster::must_start(8, 3, "");
    let mut c = cluster.proxy.client();
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(0));
    assert_eq!(c.cmd_str(&["RANDOMKEY"]), Frame::Null);
    let empty_page = Frame::Array(vec![b("0"), Frame::Array(vec![])]);
    assert_eq!(
        c.cmd_str(&["SCAN", "0"]),
        empty_page,
        "one call, no empty pages"
    );
    // A small database comes back in one call, as Redis returns it: the page goes on
    // through the partitions until COUNT keys or the end.
    for k in ["a1", "a2", "a3"] {
        assert_eq!(c.cmd_str(&["SET", k, "v"]), Frame::simple("OK"));
    }
    let page = c.cmd_str(&["SCAN", "0"]);
    let items = page.as_items().expect("[cursor, keys]");
    assert_eq!(items[0], b("0"), "{page:?}");
    assert_eq!(items[1].as_items().map(<[Frame]>::len), Some(3), "{page:?}");
    assert_eq!(c.cmd_str(&["DEL", "a1", "a2", "a3"]), Frame::Integer(3));
    let mut all = std::collections::BTreeSet::new();
    for i in 0..300 {
        let k = format!("k{i}");
        assert_eq!(c.cmd_str(&["SET", &k, "v"]), Frame::simple("OK"));
        all.insert(k);
    }
    assert_eq!(c.cmd_str(&["HSET", "h1", "f", "v"]), Frame::Integer(1));
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(301));
    for k in ["k1", "k2", "k3"] {
        assert_eq!(c.cmd_str(&["EXPIRE", k, "1000"]), Frame::Integer(1));
    }
    // INFO's keyspace section totals every partition's keys and expiring keys.
    let info = |c: &mut support::Client, section: Option<&str>| -> String {
        let mut argv = vec!["INFO"];
        argv.extend(section);
        match c.cmd_str(&argv) {
            Frame::Bulk(text) => String::from_utf8(text).unwrap(),
            other => panic!("INFO answered {other:?}"),
        }
    };
    let line = "db0:keys=301,expires=3,avg_ttl=0\r\n";
    let keyspace = info(&mut c, Some("keyspace"));
    assert_eq!(keyspace, format!("# Keyspace\r\n{line}"));
    let everything = info(&mut c, None);
    assert!(everything.starts_with("# Server\r\n"), "{everything}");
    assert!(
        everything.ends_with(&format!("\r\n\r\n# Keyspace\r\n{line}")),
        "{everything}"
    );
    assert!(!info(&mut c, Some("server")).contains("# Keyspace"));
    // Every section Redis has; memory adds the storage nodes' to the proxy's own.
    let headers: Vec<String> = info(&mut c, Some("everything"))
        .lines()
        .filter_map(|l| l.strip_prefix("# ").map(str::to_string))
        .collect();
    assert_eq!(
        headers,
        [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "CPU",
            "Modules",
            "Commandstats",
            "Errorstats",
            "Latencystats",
            "Cluster",
            "Keyspace"
        ]
    );
    let used = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .expect("used_memory")
            .trim()
            .parse()
            .unwrap()
    };
    let proxy_memory = used(&info(&mut c, Some("memory")));
    let node_memory = used(&info(&mut cluster.nodes.client(0), Some("memory")));
    assert!(
        proxy_memory > 2 * node_memory,
        "the proxy's {proxy_memory} counts three nodes of about {node_memory}"
    );
    let keys = c.cmd_str(&["KEYS", "k*"]);
    let mut listed: Vec<String> = keys
        .as_items()
        .unwrap()
        .iter()
        .map(|k| String::from_utf8(k.as_bytes().unwrap().to_vec()).unwrap())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = all.iter().cloned().collect();
    expected.sort();
    assert_eq!(listed, expected);
    // SCAN from 0 to 0 sees every key exactly once, COUNT and TYPE passed on.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    let mut calls = 0;
    loop {
        let reply = c.cmd_str(&["SCAN", &cursor, "COUNT", "17", "TYPE", "string"]);
        let items = reply.as_items().expect("SCAN replies [cursor, keys]");
        let page_len = items[1].as_items().unwrap().len();
        assert!(
            page_len >= 17 || items[0] == b("0"),
            "only the last page is short: {reply:?}"
        );
        for k in items[1].as_items().unwrap() {
            seen.push(String::from_utf8(k.as_bytes().unwrap().to_vec()).unwrap());
        }
        cursor = String::from_utf8(items[0].as_bytes().unwrap().to_vec()).unwrap();
        calls += 1;
        assert!(calls < 1000, "SCAN does not end");
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    assert_eq!(seen, expected, "every string key once, the hash left out");
    assert!(
        calls > 8,
        "COUNT 17 over 300 keys takes several calls per partition"
    );
    assert_eq!(
        c.cmd_str(&["SCAN", "12345"]),
        Frame::error("ERR invalid cursor")
    );
    assert!(
        matches!(c.cmd_str(&["RANDOMKEY"]), Frame::Bulk(k) if all.contains(std::str::from_utf8(&k).unwrap()) || k == b"h1")
    );
    assert_eq!(c.cmd_str(&["FLUSHALL"]), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(0));
    assert_eq!(info(&mut c, Some("keyspace")), "# Keyspace\r\n");
    assert_eq!(c.cmd_str(&["KEYS", "*"]), Frame::Array(vec![]));
    // The internal command is not for clients.
    assert!(matches!(
        c.cmd_str(&["ZANKV.ON", "default-0", "DBSIZE"]),
        Frame::Error(e) if e.starts_with(b"ERR unknown command")
    ));
    // Two of the three nodes die: soon no partition has a leader. INFO goes on answering,
    // without those partitions in its totals, and says how many it left out.
    assert_eq!(c.cmd_str(&["SET", "k1", "v"]), Frame::simple("OK"));
    cluster.nodes.kill9(0);
    cluster.nodes.kill9(1);
    c.set_read_timeout(Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut partial = 0;
    loop {
        let keyspace = info(&mut c, Some("keyspace"));
        if keyspace == "# Keyspace\r\nzankv_partitions_unanswered:8\r\n" {
            break;
        }
        assert!(keyspace.starts_with("# Keyspace\r\n"), "{keyspace}");
        partial += usize::from(keyspace.contains("zankv_partitions_unanswered:"));
        assert!(
            Instant::now() < deadline,
            "INFO still reaches a leader: {keyspace}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("INFO answered partially {partial} times before no partition had a leader");
    // The parts of a keyless command retry side by side: DBSIZE, with none of the eight
    // partitions able to elect a leader, answers after about one partition's retries
    // (max_retries 8 from 25 ms doubling to 1 s: ~3.6 s of pauses), not after eight
    // partitions' in turn (~29 s).
    let started = Instant::now();
    let reply = c.cmd_str(&["DBSIZE"]);
    let took = started.elapsed();
    assert!(
        matches!(&reply, Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED")),
        "{reply:?}"
    );
    assert!(
        took < Duration::from_secs(15),
        "DBSIZE waited {took:?}: its parts retried one after another"
    );
}

#[test]
fn a_partition_leader_killed_under_write_load_loses_no_acknowledged_write() {
    let mut cluster = ProxiedCluster::must_start(4, 3, "");
    let mut c = cluster.proxy.client();
    c.set_read_timeout(Duration::from_secs(30));
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut killed_at = None;
    let mut acked_after_kill = 0;
    let started = Instant::now();
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(12) {
        if killed_at.is_none() && started.elapsed() > Duration::from_secs(3) {
            // The node leading the most partitions dies.
            let victim = cluster.nodes.busiest_leader();
            cluster.nodes.kill9(victim);
            killed_at = Some(Instant::now());
        }
        let (k, v) = (format!("w{i}"), format!("v{i}"));
        i += 1;
        match c.cmd_str(&["SET", &k, &v]) {
            Frame::Simple(s) if s == b"OK" => {
                acked.insert(k, v);
                acked_after_kill += usize::from(killed_at.is_some());
            }
            Frame::Error(e) => {
                errors.push((Instant::now(), String::from_utf8_lossy(&e).into_owned()))
            }
            other => panic!("SET {k}: {other}"),
        }
        // Reads in between never see a wrong value.
        if i.is_multiple_of(10) {
            let back = format!("w{}", i / 2);
            if let Some(v) = acked.get(&back) {
                match c.cmd_str(&["GET", &back]) {
                    Frame::Error(_) => {}
                    got => assert_eq!(got, b(v), "GET {back}"),
                }
            }
        }
    }
    let killed_at = killed_at.expect("a node was killed");
    eprintln!(
        "{} writes acknowledged, {acked_after_kill} after the kill, {} errors",
        acked.len(),
        errors.len()
    );
    assert!(acked_after_kill > 100, "writes go on after the kill");
    // Errors come only as a short burst right after the kill, and every one says the write
    // was not applied or that its outcome is unknown.
    for (at, e) in &errors {
        assert!(
            *at >= killed_at && at.duration_since(killed_at) < Duration::from_secs(8),
            "an error outside the failover window: {e}"
        );
        assert!(
            e.starts_with("ERR_CLUSTER_CHANGED") || e.starts_with("TIMEOUT"),
            "{e}"
        );
    }
    assert!(errors.len() < 50, "{} errors: {errors:?}", errors.len());
    // Every acknowledged write is readable, with its value.
    let mut check = cluster.proxy.client();
    check.set_read_timeout(Duration::from_secs(30));
    for (k, v) in &acked {
        assert_eq!(check.cmd_str(&["GET", k]), b(v), "{k}");
    }
    let retries = cluster.proxy.metrics();
    assert!(
        retries.contains("zankv_proxy_retries_total"),
        "the proxy retried: {retries}"
    );
}

/// The PD leader dies: the proxy keeps serving with the tables it has, follows the routing
/// stream of the member that takes over, and learns a namespace created there.
#[test]
fn killing_the_pd_leader_does_not_stop_the_proxy() {
    let mut cluster = ProxiedCluster::must_start_with_pd(3, 4, 3, "");
    let mut c = cluster.proxy.client();
    for i in 0..50 {
        assert_eq!(
            c.cmd_str(&["SET", &format!("k{i}"), "v"]),
            Frame::simple("OK")
        );
    }
    let leader = ProxiedCluster::wait_for_pd_leader(&cluster.pds);
    cluster.pds[leader].kill9();
    // Reads and writes go on at once: nothing waits for PD.
    for i in 0..50 {
        assert_eq!(c.cmd_str(&["GET", &format!("k{i}")]), b("v"));
        assert_eq!(
            c.cmd_str(&["SET", &format!("after{i}"), "w"]),
            Frame::simple("OK")
        );
    }
    let next = ProxiedCluster::wait_for_pd_leader(&cluster.pds);
    assert_ne!(next, leader);
    // A new leader starts its view of the nodes afresh, from their next heartbeats.
    cluster.pds[next].wait_for("/datanodes", Duration::from_secs(30), "the nodes", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().filter(|x| x["alive"] == true).count() == 3)
    });
    let (status, body) = cluster.pds[next].call(
        "POST",
        "/cluster/namespace/create?namespace=later&partition_num=2&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    cluster.proxy.must_know_leaders("later", 2);
    assert_eq!(c.cmd_str(&["SET", "later:t:k", "x"]), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["GET", "later:t:k"]), b("x"));
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(101));
}

/// `requirepass` opens everything; a namespace's password opens that namespace alone.
#[test]
fn a_namespace_password_reaches_only_its_namespace() {
    let cluster = ProxiedCluster::must_start(
        2,
        3,
        "requirepass = \"root-pass\"\n[[namespace_passwords]]\nnamespace = \"users\"\npassword = \"users-pass\"\n",
    );
    let (status, body) = cluster.pds[0].call(
        "POST",
        "/cluster/namespace/create?namespace=users&partition_num=3&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    cluster.proxy.must_know_leaders("users", 3);
    let mut root = cluster.proxy.client();
    assert_eq!(
        root.cmd_str(&["GET", "k"]),
        Frame::error("NOAUTH Authentication required.")
    );
    assert_eq!(root.cmd_str(&["AUTH", "root-pass"]), Frame::simple("OK"));
    assert_eq!(root.cmd_str(&["SET", "plain", "1"]), Frame::simple("OK"));
    assert_eq!(
        root.cmd_str(&["SET", "users:u:1", "alice"]),
        Frame::simple("OK")
    );
    assert_eq!(root.cmd_str(&["DBSIZE"]), Frame::Integer(2));

    for auth in [
        &["AUTH", "users-pass"][..],
        &["AUTH", "users", "users-pass"],
    ] {
        let mut u = cluster.proxy.client();
        assert_eq!(u.cmd_str(auth), Frame::simple("OK"));
        assert_eq!(u.cmd_str(&["GET", "users:u:1"]), b("alice"));
        assert_eq!(u.cmd_str(&["SET", "users:u:2", "bob"]), Frame::simple("OK"));
        let denied = Frame::error(
            "NOPERM this user has no permissions to access one of the keys used as arguments",
        );
        assert_eq!(u.cmd_str(&["GET", "plain"]), denied);
        assert_eq!(u.cmd_str(&["MGET", "users:u:1", "plain"]), denied);
        // Keyless commands see its namespace only.
        assert_eq!(u.cmd_str(&["DBSIZE"]), Frame::Integer(2));
        let mut keys: Vec<Frame> = u.cmd_str(&["KEYS", "*"]).as_items().unwrap().to_vec();
        keys.sort_by_key(Frame::sort_key);
        assert_eq!(keys, vec![b("users:u:1"), b("users:u:2")]);
        assert_eq!(u.cmd_str(&["DEL", "users:u:2"]), Frame::Integer(1));
        // What all namespaces share is not theirs to read or change.
        assert_eq!(
            u.cmd_str(&["CONFIG", "GET", "*"]),
            Frame::error("NOPERM this user has no permissions to run the 'config|get' command")
        );
        assert!(
            matches!(u.cmd_str(&["SLOWLOG", "GET"]), Frame::Error(e) if e.starts_with(b"NOPERM"))
        );
        assert!(
            matches!(u.cmd_str(&["CLIENT", "LIST"]), Frame::Error(e) if e.starts_with(b"NOPERM"))
        );
        assert!(matches!(
            u.cmd_str(&["CLIENT", "INFO"]),
            Frame::Verbatim(..) | Frame::Bulk(_)
        ));
    }
    let mut wrong = cluster.proxy.client();
    let wrongpass = Frame::error("WRONGPASS invalid username-password pair or user is disabled.");
    assert_eq!(wrong.cmd_str(&["AUTH", "default", "users-pass"]), wrongpass);
    assert_eq!(wrong.cmd_str(&["AUTH", "users", "root-pass"]), wrongpass);
    assert_eq!(wrong.cmd_str(&["AUTH", "other", "users-pass"]), wrongpass);
    assert_eq!(root.cmd_str(&["DBSIZE"]), Frame::Integer(2));
}

/// The value of a gauge in Prometheus text.
fn gauge(metrics: &str, name: &str) -> Option<i64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Connections to storage nodes that no request uses are closed, and opened again when
/// needed.
#[test]
fn idle_storage_connections_are_closed_and_reopened() {
    let cluster = ProxiedCluster::must_start(2, 3, "backend_idle_s = 1\n");
    let mut c = cluster.proxy.client();
    assert_eq!(c.cmd_str(&["SET", "a", "1"]), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(1));
    let open = gauge(&cluster.proxy.metrics(), "zankv_proxy_backend_connections");
    assert!(open.is_some_and(|n| n > 0), "{open:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while gauge(&cluster.proxy.metrics(), "zankv_proxy_backend_connections") != Some(0) {
        assert!(
            Instant::now() < deadline,
            "idle connections were not closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.cmd_str(&["GET", "a"]), b("1"));
}

#[test]
fn redis_cli_and_redis_benchmark_work_against_the_proxy() {
    let cluster = ProxiedCluster::must_start(4, 3, "");
    let port = cluster.proxy.port.to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-p", &port])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["PING"]), "PONG");
    assert_eq!(cli(&["SET", "cli:key", "hello"]), "OK");
    assert_eq!(cli(&["GET", "cli:key"]), "hello");
    assert_eq!(cli(&["MSET", "a", "1", "b", "2", "c", "3"]), "OK");
    assert_eq!(cli(&["MGET", "c", "a", "b"]), "3\n1\n2");
    assert_eq!(cli(&["-3", "GET", "a"]), "1");
    let out = Command::new("redis-benchmark")
        .args([
            "-p", &port, "-t", "set,get", "-n", "2000", "-c", "10", "-P", "4", "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
    assert!(!text.to_lowercase().contains("error"), "{text}");
}

/// redis-py (Debian's python3-redis, which scripts/setup.sh installs) with a password,
/// pipelines, and MGET/MSET/SCAN across partitions: tests/clients/redis_py.py.
#[test]
fn a_mainstream_client_library_works_against_the_proxy() {
    let cluster = ProxiedCluster::must_start(8, 3, "requirepass = \"py-pass\"\n");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/redis_py.py");
    // Debian's interpreter, where python3-redis is installed (not one found first on PATH).
    let out = Command::new("/usr/bin/python3")
        .args([script, &cluster.proxy.port.to_string(), "py-pass"])
        .output()
        .expect("run /usr/bin/python3");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim_end().ends_with("ok"),
        "{text}\n{}",
        cluster.proxy.log_tail()
    );
}

/// The cluster protocol: two proxies with cluster addresses report to PD and share the
/// slots; CLUSTER answers as Redis Cluster does; keyless commands on a cluster address
/// cover that proxy's share of the partitions; redis-py's RedisCluster and `redis-cli -c`
/// read, write, pipeline and scan, and the client moves on when one proxy is killed.
#[test]
fn cluster_clients_spread_over_the_proxies_and_survive_one_dying() {
    let cluster_port = support::free_port();
    let cluster = ProxiedCluster::must_start(
        8,
        3,
        &format!("cluster_addr = \"127.0.0.1:{cluster_port}\"\n"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let other_cluster_port = support::free_port();
    let pd_ports: Vec<u16> = cluster.pds.iter().map(|p| p.port).collect();
    let other = support::proxy::ProxyProcess::must_start(
        dir.path(),
        &pd_ports,
        &format!("cluster_addr = \"127.0.0.1:{other_cluster_port}\"\n"),
    );
    other.must_know_leaders("default", 8);
    let mut c = cluster.proxy.client();

    // Both proxies are listed once each has reported to PD.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let slots = loop {
        let slots = c.cmd_str(&["CLUSTER", "SLOTS"]);
        if slots.as_items().map(<[Frame]>::len) == Some(2) {
            break slots;
        }
        assert!(std::time::Instant::now() < deadline, "{slots:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let ranges = slots.as_items().unwrap();
    let range = |r: &Frame| {
        let items = r.as_items().unwrap();
        let node = items[2].as_items().unwrap();
        (
            items[0].as_int().unwrap(),
            items[1].as_int().unwrap(),
            node[1].as_int().unwrap(),
        )
    };
    let (a, z) = (range(&ranges[0]), range(&ranges[1]));
    assert_eq!((a.0, a.1, z.0, z.1), (0, 8191, 8192, 16383), "{slots:?}");
    let mut ports = vec![a.2, z.2];
    ports.sort_unstable();
    let mut want = vec![i64::from(cluster_port), i64::from(other_cluster_port)];
    want.sort_unstable();
    assert_eq!(ports, want, "each proxy at its cluster address");
    assert_eq!(
        c.cmd_str(&["CLUSTER", "KEYSLOT", "foo"]),
        Frame::Integer(12182)
    );
    let id = c.cmd_str(&["CLUSTER", "MYID"]);
    let id = String::from_utf8(id.as_bytes().expect("an id").to_vec()).unwrap();
    assert_eq!(id.len(), 40);
    let nodes = c.cmd_str(&["CLUSTER", "NODES"]);
    let nodes = String::from_utf8_lossy(nodes.as_bytes().expect("text")).into_owned();
    assert!(
        nodes.contains(&format!("{id} 127.0.0.1:{cluster_port}@0 myself,master")),
        "{nodes}"
    );
    let info = c.cmd_str(&["CLUSTER", "INFO"]);
    let info = String::from_utf8_lossy(info.as_bytes().expect("text")).into_owned();
    assert!(
        info.starts_with("cluster_state:ok\r\n") && info.contains("cluster_known_nodes:2\r\n"),
        "{info}"
    );
    assert_eq!(
        c.cmd_str(&["CLUSTER", "ADDSLOTS", "1"]),
        Frame::error("ERR unknown subcommand 'ADDSLOTS'. Try CLUSTER HELP.")
    );
    assert_eq!(
        c.cmd_str(&["CONFIG", "GET", "cluster-enabled"]),
        Frame::Array(vec![b("cluster-enabled"), b("yes")])
    );
    // A storage node is no cluster node.
    assert_eq!(
        cluster.nodes.client(0).cmd_str(&["CLUSTER", "INFO"]),
        Frame::error("ERR This instance has cluster support disabled")
    );

    // On the cluster addresses, DBSIZE is each proxy's share; the shares add up.
    for i in 0..100 {
        assert_eq!(
            c.cmd_str(&["SET", &format!("k{i}"), "v"]),
            Frame::simple("OK")
        );
    }
    let dbsize = |port: u16| {
        support::Client::connect(port)
            .cmd_str(&["DBSIZE"])
            .as_int()
            .expect("a count")
    };
    assert_eq!(dbsize(cluster.proxy.port), 100);
    let (mine, theirs) = (dbsize(cluster_port), dbsize(other_cluster_port));
    assert_eq!(mine + theirs, 100, "{mine} + {theirs}");
    assert!(mine > 0 && theirs > 0, "{mine} + {theirs}");
    assert_eq!(c.cmd_str(&["FLUSHALL"]), Frame::simple("OK"));

    // redis-cli in cluster mode, against the proxy's own address.
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &cluster.proxy.port.to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "cli:a", "1"]), "OK");
    assert_eq!(cli(&["GET", "cli:a"]), "1");
    assert_eq!(cli(&["SCAN", "0"]), "0\ncli:a");
    assert_eq!(c.cmd_str(&["DEL", "cli:a"]), Frame::Integer(1));

    // redis-py's RedisCluster, which kills the other proxy halfway.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/redis_py_cluster.py"
    );
    let out = Command::new("/usr/bin/python3")
        .args([
            script,
            &cluster.proxy.port.to_string(),
            &other.pid().to_string(),
        ])
        .output()
        .expect("run /usr/bin/python3");
    // redis-py prints the connection errors it retried past on stderr.
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{stdout}\n{stderr}\n{}",
        cluster.proxy.log_tail()
    );
    // The other proxy is dead: redis-cli in cluster mode still works through this one.
    assert_eq!(cli(&["SET", "cli:b", "2"]), "OK");
    assert_eq!(cli(&["GET", "cli:b"]), "2");
    let slots = c.cmd_str(&["CLUSTER", "SLOTS"]);
    assert_eq!(slots.as_items().map(<[Frame]>::len), Some(1), "{slots:?}");
}

/// The total of a node's `total_commands_processed` (INFO stats).
fn commands_processed(client: &mut support::Client) -> u64 {
    let info = client.cmd_str(&["INFO", "stats"]);
    let text = String::from_utf8_lossy(info.as_bytes().expect("INFO text")).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .expect("total_commands_processed")
        .trim()
        .parse()
        .expect("a number")
}

/// READONLY connections, and namespaces with stale reads, have their reads answered by any
/// replica; READWRITE (and namespaces without) by the leader alone.
#[test]
fn readonly_reads_are_spread_over_the_replicas() {
    let cluster = ProxiedCluster::must_start(1, 3, "");
    let mut c = cluster.proxy.client();
    // How many commands each node ran while `reads` ran.
    let spread = |reads: &mut dyn FnMut()| -> Vec<u64> {
        let before: Vec<u64> = (0..3)
            .map(|i| commands_processed(&mut cluster.nodes.client(i)))
            .collect();
        reads();
        (0..3)
            .map(|i| commands_processed(&mut cluster.nodes.client(i)) - before[i])
            .collect()
    };
    let busy = |counts: &[u64]| counts.iter().filter(|&&n| n >= 5).count();
    assert_eq!(c.cmd_str(&["SET", "k", "v"]), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["READONLY"]), Frame::simple("OK"));
    let counts = spread(&mut || {
        for _ in 0..90 {
            // A follower may not have applied the write yet: an older value, never another.
            let got = c.cmd_str(&["GET", "k"]);
            assert!(got == b("v") || got == Frame::Null, "{got:?}");
        }
    });
    assert!(busy(&counts) >= 2, "READONLY reads spread: {counts:?}");
    // Writes still go to the leader.
    assert_eq!(c.cmd_str(&["SET", "k", "w"]), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["READWRITE"]), Frame::simple("OK"));
    let counts = spread(&mut || {
        for _ in 0..90 {
            assert_eq!(c.cmd_str(&["GET", "k"]), b("w"));
        }
    });
    assert_eq!(
        busy(&counts),
        1,
        "READWRITE reads go to the leader: {counts:?}"
    );

    // A namespace created with stale_reads spreads every connection's reads, until the
    // setting is turned off.
    let pd = &cluster.pds[0];
    let (status, body) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=cache&partition_num=1&replicator=3&stale_reads=true",
    );
    assert_eq!(status, 200, "{body}");
    cluster.proxy.must_know_leaders("cache", 1);
    assert_eq!(c.cmd_str(&["SET", "cache:k", "v"]), Frame::simple("OK"));
    let counts = spread(&mut || {
        for _ in 0..90 {
            let got = c.cmd_str(&["GET", "cache:k"]);
            assert!(got == b("v") || got == Frame::Null, "{got:?}");
        }
    });
    assert!(busy(&counts) >= 2, "stale_reads spreads reads: {counts:?}");
    let (status, body) = pd.call(
        "POST",
        "/cluster/namespace/meta/update?namespace=cache&stale_reads=false",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stale_reads"], serde_json::json!(false), "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.proxy.routing()["namespaces"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["namespace"] == "cache"))
        .is_some_and(|n| n["stale_reads"] == true)
    {
        assert!(
            Instant::now() < deadline,
            "the proxy never learned stale_reads=false"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts = spread(&mut || {
        for _ in 0..90 {
            assert_eq!(c.cmd_str(&["GET", "cache:k"]), b("v"));
        }
    });
    assert_eq!(busy(&counts), 1, "back to the leader: {counts:?}");
}
