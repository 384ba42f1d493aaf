//! Redis 7 functions across a cluster, with real processes: PD, three storage nodes holding
//! a namespace of four partitions (three replicas each), and two proxies that find the
//! cluster through PD.
//!
//! A library is stored in every partition: the proxy sends FUNCTION LOAD, DELETE, FLUSH and
//! RESTORE to each, and reads FUNCTION LIST and DUMP from them. Checked here:
//! - a library loaded through one proxy is listed by the other, and FCALL through the other
//!   finds its functions on every partition (one key of each);
//! - FUNCTION DUMP through one proxy, FLUSH through the other, RESTORE through the first
//!   puts it back on every partition;
//! - kill -9 of the node that leads the most partitions: once new leaders are elected,
//!   FCALL through both proxies works on every partition (only ERR_CLUSTER_CHANGED, the
//!   refusal that changed nothing, is sent again), and a library loaded meanwhile reaches
//!   every partition;
//! - the node comes back: its replicas catch up, and once it leads every partition (PD's
//!   balancers are off, and leadership is handed to it) it answers FCALL of both
//!   libraries itself, the one loaded before it died and the one loaded while it was down;
//! - FUNCTION DELETE through the second proxy makes FCALL answer `ERR Function not found`
//!   through the first, on every partition, while the other library and the data the
//!   functions wrote stay.
//!
//! Every wait is bounded; every process is killed when its handle drops.

mod support;

use std::time::{Duration, Instant};

use support::proxy::{ProxiedCluster, ProxyProcess};
use support::{Client, Frame};
use zankv_commands::partitioning::partition_of;

/// Partitions of the `default` namespace.
const PARTITIONS: u32 = 4;

/// How long a failover, a catch-up or a move of leadership may take.
const WAIT: Duration = Duration::from_secs(60);

/// The library loaded before the failure: a function that writes and answers what it
/// wrote, and one flagged no-writes that reads.
const LIBRARY: &str = "#!lua name=clusterlib\n\
redis.register_function('stamp', function(keys, args)\n\
  redis.call('set', keys[1], args[1])\n\
  return {keys[1], redis.call('get', keys[1])}\n\
end)\n\
redis.register_function{function_name='peek', flags={'no-writes'}, callback=function(keys)\n\
  return redis.call('get', keys[1])\n\
end}\n";

/// The library loaded while a node is down.
const LATER: &str = "#!lua name=laterlib\n\
redis.register_function{function_name='later', flags={'no-writes'}, callback=function(keys)\n\
  return 'later:' .. keys[1]\n\
end}\n";

/// One key of each partition of the `default` namespace, in partition order.
fn key_per_partition() -> Vec<String> {
    (0..PARTITIONS)
        .map(|p| {
            (0..10_000)
                .map(|i| format!("fn-key-{i}"))
                .find(|k| partition_of(k.as_bytes(), PARTITIONS) == p)
                .unwrap_or_else(|| panic!("no key of partition {p}"))
        })
        .collect()
}

/// A client of `port` that waits long enough for a proxy's own retries.
fn client(port: u16) -> Client {
    let mut c = Client::connect(port);
    c.set_read_timeout(Duration::from_secs(30));
    c
}

/// Sends `args` until the answer is something other than ERR_CLUSTER_CHANGED (refused
/// without being applied: while partitions elect new leaders, or the proxy learns them),
/// for at most [`WAIT`]; returns that answer.
fn settled(c: &mut Client, args: &[&str]) -> Frame {
    c.cmd_settled(args, WAIT)
}

/// The library names of a FUNCTION LIST reply (RESP2), in its order.
fn library_names(list: &Frame) -> Vec<String> {
    let libraries = list
        .as_items()
        .unwrap_or_else(|| panic!("FUNCTION LIST answered {list}"));
    libraries
        .iter()
        .map(|library| {
            let fields = library
                .as_items()
                .unwrap_or_else(|| panic!("a library of FUNCTION LIST: {library}"));
            let at = fields
                .iter()
                .position(|f| f.as_bytes() == Some(b"library_name".as_slice()))
                .unwrap_or_else(|| panic!("no library_name in {library}"));
            let name = fields
                .get(at + 1)
                .and_then(Frame::as_bytes)
                .unwrap_or_else(|| panic!("no library name in {library}"));
            String::from_utf8_lossy(name).into_owned()
        })
        .collect()
}

/// FUNCTION STATS's answer (RESP2) when nothing runs and the node holds `libraries`
/// libraries of `functions` functions.
fn stats(libraries: i64, functions: i64) -> Frame {
    Frame::Array(vec![
        Frame::bulk("running_script"),
        Frame::Null,
        Frame::bulk("engines"),
        Frame::Array(vec![
            Frame::bulk("LUA"),
            Frame::Array(vec![
                Frame::bulk("libraries_count"),
                Frame::Integer(libraries),
                Frame::bulk("functions_count"),
                Frame::Integer(functions),
            ]),
        ]),
    ])
}

/// What `stamp` answers for `key` and `value`.
fn stamped(key: &str, value: &str) -> Frame {
    Frame::Array(vec![Frame::bulk(key), Frame::bulk(value)])
}

#[test]
fn libraries_reach_every_partition_through_every_proxy_and_survive_a_failover_and_a_restart() {
    let started = Instant::now();
    let mut cluster = ProxiedCluster::must_start(PARTITIONS, 3, "");
    // Leaders stay where elections (and the moves below) put them.
    let (status, body) = cluster.pds[0].call("POST", "/cluster/balance?enable=false");
    assert_eq!(status, 200, "turning PD's balancers off: {body}");
    let pd_ports: Vec<u16> = cluster.pds.iter().map(|p| p.port).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let other = ProxyProcess::must_start(dir.path(), &pd_ports, "");
    other.must_know_leaders("default", PARTITIONS as usize);
    let keys = key_per_partition();
    let mut a = client(cluster.proxy.port);
    let mut b = client(other.port);

    // Loaded through the first proxy: listed by the second, and found by FCALL through it
    // on every partition.
    assert_eq!(
        a.cmd_str(&["FUNCTION", "LOAD", LIBRARY]),
        Frame::bulk("clusterlib")
    );
    assert_eq!(
        library_names(&b.cmd_str(&["FUNCTION", "LIST"])),
        ["clusterlib"]
    );
    assert_eq!(
        b.cmd_str(&["FUNCTION", "LIST", "WITHCODE"]),
        a.cmd_str(&["FUNCTION", "LIST", "WITHCODE"])
    );
    assert_eq!(b.cmd_str(&["FUNCTION", "STATS"]), stats(1, 2));
    for (p, key) in keys.iter().enumerate() {
        let value = format!("v1-{p}");
        assert_eq!(
            b.cmd_str(&["FCALL", "stamp", "1", key, &value]),
            stamped(key, &value),
            "FCALL through the second proxy, partition {p}"
        );
        assert_eq!(
            a.cmd_str(&["FCALL_RO", "peek", "1", key]),
            Frame::bulk(&value),
            "FCALL_RO through the first proxy, partition {p}"
        );
    }
    // Loading it again is refused, once.
    assert_eq!(
        b.cmd_str(&["FUNCTION", "LOAD", LIBRARY]),
        Frame::error("ERR Library 'clusterlib' already exists")
    );

    // Dumped through one proxy, flushed through the other, restored through the first.
    let dump = match a.cmd_str(&["FUNCTION", "DUMP"]) {
        Frame::Bulk(payload) => payload,
        other => panic!("FUNCTION DUMP answered {other}"),
    };
    assert_eq!(b.cmd_str(&["FUNCTION", "FLUSH"]), Frame::simple("OK"));
    for (p, key) in keys.iter().enumerate() {
        assert_eq!(
            a.cmd_str(&["FCALL_RO", "peek", "1", key]),
            Frame::error("ERR Function not found"),
            "after FUNCTION FLUSH, partition {p}"
        );
    }
    assert_eq!(
        a.cmd(&[b"FUNCTION", b"RESTORE", dump.as_slice()]),
        Frame::simple("OK")
    );
    assert_eq!(
        library_names(&b.cmd_str(&["FUNCTION", "LIST"])),
        ["clusterlib"]
    );
    for (p, key) in keys.iter().enumerate() {
        assert_eq!(
            b.cmd_str(&["FCALL_RO", "peek", "1", key]),
            Frame::bulk(format!("v1-{p}")),
            "after FUNCTION RESTORE, partition {p}"
        );
    }

    // The node leading the most partitions dies.
    let victim = cluster.nodes.busiest_leader();
    let leads = cluster.nodes.replicas(victim).unwrap_or_default();
    assert!(
        leads.iter().any(|r| r.role == "leader"),
        "no node leads a partition"
    );
    let id = victim as u64 + 1;
    cluster.nodes.kill9(victim);
    let killed = Instant::now();
    // The proxies' connections to it see it close before the next requests.
    std::thread::sleep(Duration::from_millis(500));
    for (p, key) in keys.iter().enumerate() {
        let value = format!("v2-{p}");
        assert_eq!(
            settled(&mut a, &["FCALL", "stamp", "1", key, &value]),
            stamped(key, &value),
            "FCALL through the first proxy after node {id} died, partition {p}"
        );
        assert_eq!(
            settled(&mut b, &["FCALL_RO", "peek", "1", key]),
            Frame::bulk(&value),
            "FCALL_RO through the second proxy after node {id} died, partition {p}"
        );
    }
    eprintln!(
        "functions cluster: FCALL served on every partition {:?} after node {id} was killed",
        killed.elapsed()
    );
    // A library loaded while the node is down (REPLACE: sending it again is harmless).
    assert_eq!(
        settled(&mut b, &["FUNCTION", "LOAD", "REPLACE", LATER]),
        Frame::bulk("laterlib")
    );
    for (p, key) in keys.iter().enumerate() {
        assert_eq!(
            settled(&mut a, &["FCALL_RO", "later", "1", key]),
            Frame::bulk(format!("later:{key}")),
            "the library loaded while node {id} was down, partition {p}"
        );
    }

    // The node comes back; its replicas catch up.
    cluster.nodes.start(victim);
    cluster.nodes.must_converge(WAIT);
    // It takes the lead of every partition.
    let deadline = Instant::now() + WAIT;
    loop {
        let leaders = cluster.nodes.must_agree_on_leaders(WAIT);
        let elsewhere: Vec<(String, u64)> = leaders.into_iter().filter(|(_, l)| *l != id).collect();
        if elsewhere.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} did not take the lead of {elsewhere:?} within {WAIT:?}"
        );
        for (name, leader) in &elsewhere {
            // A refusal (no longer the leader, the node not caught up yet) is asked again.
            let _ = cluster.nodes.http(
                (*leader - 1) as usize,
                "POST",
                &format!("/partitions/{name}/leader/{id}"),
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.nodes.must_converge(WAIT);
    // It answers FCALL of both libraries itself: its replicas hold them.
    let mut direct = client(cluster.nodes.ports()[victim].redis);
    for (p, key) in keys.iter().enumerate() {
        // The key is partition p's: the node refuses one of another partition (CROSSSLOT).
        assert_eq!(
            settled(
                &mut direct,
                &["ZANKV.ON", &format!("default-{p}"), "GET", key]
            ),
            Frame::bulk(format!("v2-{p}")),
            "partition {p}'s key"
        );
        assert_eq!(
            settled(&mut direct, &["FCALL_RO", "peek", "1", key]),
            Frame::bulk(format!("v2-{p}")),
            "node {id} after its restart, partition {p}"
        );
        assert_eq!(
            settled(&mut direct, &["FCALL_RO", "later", "1", key]),
            Frame::bulk(format!("later:{key}")),
            "node {id} after its restart, partition {p}"
        );
        assert_eq!(
            settled(&mut a, &["FCALL_RO", "peek", "1", key]),
            Frame::bulk(format!("v2-{p}")),
            "through the first proxy after node {id}'s restart, partition {p}"
        );
    }

    // Deleted through the second proxy: the first finds the functions nowhere.
    assert_eq!(
        settled(&mut b, &["FUNCTION", "DELETE", "clusterlib"]),
        Frame::simple("OK")
    );
    for (p, key) in keys.iter().enumerate() {
        assert_eq!(
            settled(&mut a, &["FCALL", "stamp", "1", key, "v3"]),
            Frame::error("ERR Function not found"),
            "FCALL after FUNCTION DELETE, partition {p}"
        );
        assert_eq!(
            settled(&mut a, &["FCALL_RO", "peek", "1", key]),
            Frame::error("ERR Function not found"),
            "FCALL_RO after FUNCTION DELETE, partition {p}"
        );
        // The other library and the data stay.
        assert_eq!(
            settled(&mut a, &["FCALL_RO", "later", "1", key]),
            Frame::bulk(format!("later:{key}")),
            "the other library after FUNCTION DELETE, partition {p}"
        );
        assert_eq!(
            settled(&mut b, &["GET", key]),
            Frame::bulk(format!("v2-{p}")),
            "data after FUNCTION DELETE, partition {p}"
        );
    }
    assert_eq!(
        library_names(&settled(&mut a, &["FUNCTION", "LIST"])),
        ["laterlib"]
    );
    assert_eq!(
        settled(&mut b, &["FUNCTION", "DELETE", "clusterlib"]),
        Frame::error("ERR Library not found")
    );
    eprintln!("functions cluster: done in {:?}", started.elapsed());
}
