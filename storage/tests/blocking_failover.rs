//! Blocking pops through the proxy across failures, with real processes: clients blocked in
//! BLPOP when their partition's leader is killed (-9) keep waiting and are served by the
//! new leader, each element delivered exactly once; a client that leaves while blocked
//! takes nothing.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use support::proxy::ProxiedCluster;
use support::{Client, Frame};

/// A key of the `default` namespace whose partition node `node` leads now.
fn key_led_by(cluster: &ProxiedCluster, node: usize) -> String {
    let mut direct = cluster.nodes.client(node);
    (0..1000)
        .map(|i| format!("queue{i}"))
        .find(|k| matches!(direct.cmd_str(&["LLEN", k]), Frame::Integer(0)))
        .unwrap_or_else(|| panic!("node {node} leads no partition"))
}

/// Sends `BLPOP key timeout` through the proxy without waiting for the reply.
fn block(cluster: &ProxiedCluster, key: &str, timeout: &str) -> Client {
    let mut c = cluster.proxy.client();
    c.set_read_timeout(Duration::from_secs(60));
    c.send_raw(&Client::encode(&[
        b"BLPOP",
        key.as_bytes(),
        timeout.as_bytes(),
    ]));
    c
}

/// RPUSHes `element` through the proxy until a push is acknowledged. A push refused with
/// ERR_CLUSTER_CHANGED did not apply and is sent again; any other failure fails the test
/// (its outcome would be unknown).
fn must_push(cluster: &ProxiedCluster, key: &str, element: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = cluster.proxy.client();
    loop {
        match c.cmd_str(&["RPUSH", key, element]) {
            Frame::Integer(_) => return,
            Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED") => {
                assert!(Instant::now() < deadline, "no leader took RPUSH in time");
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("RPUSH {key} {element}: {other}"),
        }
    }
}

#[test]
fn blocked_pops_are_served_after_their_leader_is_killed() {
    let mut cluster = ProxiedCluster::must_start(4, 3, "");
    let victim = cluster.nodes.busiest_leader();
    let key = key_led_by(&cluster, victim);
    // Waits for ever (timeout 0) and a long timeout: both survive the failover.
    let mut waiters: Vec<Client> = ["0", "45", "0"]
        .iter()
        .map(|timeout| block(&cluster, &key, timeout))
        .collect();
    // Let the node register them before it dies.
    std::thread::sleep(Duration::from_millis(500));
    cluster.nodes.kill9(victim);
    // The proxy's shared connections to the node see it close before the pushes come.
    std::thread::sleep(Duration::from_millis(300));
    let elements = ["job-a", "job-b", "job-c", "job-d"];
    for e in elements {
        must_push(&cluster, &key, e);
    }
    let mut served = BTreeSet::new();
    for w in &mut waiters {
        match w.read_frame() {
            Some(Frame::Array(items)) => {
                assert_eq!(items[0], Frame::bulk(&key), "{items:?}");
                let element = items[1].as_bytes().expect("an element").to_vec();
                assert!(served.insert(element), "an element delivered twice");
            }
            other => panic!("a blocked client got {other:?}"),
        }
    }
    // Three served, one left in the list: nothing lost, nothing twice.
    let mut c = cluster.proxy.client();
    let left = match c.cmd_str(&["LRANGE", &key, "0", "-1"]) {
        Frame::Array(items) => items,
        other => panic!("LRANGE: {other}"),
    };
    assert_eq!(left.len(), 1, "{left:?}");
    let mut all: BTreeSet<Vec<u8>> = served;
    all.insert(left[0].as_bytes().expect("an element").to_vec());
    let pushed: BTreeSet<Vec<u8>> = elements.iter().map(|e| e.as_bytes().to_vec()).collect();
    assert_eq!(all, pushed);
}

#[test]
fn a_nested_pop_id_is_refused_and_the_node_serves_on() {
    let cluster = ProxiedCluster::must_start(1, 3, "");
    let mut direct = cluster.nodes.client(0);
    let mut nested: Vec<&[u8]> = Vec::new();
    for _ in 0..10_000 {
        nested.extend([&b"ZANKV.POPID"[..], b"x"]);
    }
    nested.extend([&b"BLPOP"[..], b"q", b"0"]);
    assert!(matches!(direct.cmd(&nested), Frame::Error(_)));
    assert_eq!(direct.cmd_str(&["PING"]), Frame::simple("PONG"));
}

#[test]
fn a_client_that_leaves_while_blocked_takes_nothing() {
    let cluster = ProxiedCluster::must_start(2, 3, "");
    let key = "leaving-queue";
    let waiter = block(&cluster, key, "0");
    std::thread::sleep(Duration::from_millis(300));
    drop(waiter);
    // The proxy closes its connection to the node, which forgets the waiter.
    std::thread::sleep(Duration::from_millis(500));
    must_push(&cluster, key, "kept");
    let mut c = cluster.proxy.client();
    assert_eq!(
        c.cmd_str(&["LRANGE", key, "0", "-1"]),
        Frame::Array(vec![Frame::bulk("kept")])
    );
    // A new waiter gets it at once.
    let mut w = block(&cluster, key, "5");
    assert_eq!(
        w.read_frame(),
        Some(Frame::Array(vec![Frame::bulk(key), Frame::bulk("kept")]))
    );
}

/// CLIENT UNBLOCK on redis-server and on zankv (a node, then through a proxy): the replies
/// of the unblocking and of the unblocked client, compared.
#[test]
fn client_unblock_ends_a_wait_as_in_redis() {
    use support::diff::{must_start_pair_on, Target};
    let cluster = ProxiedCluster::must_start(1, 3, "");
    for target in [Target::Node, Target::Proxy(cluster.proxy.port)] {
        let pair = must_start_pair_on(false, target);
        let ports = [pair.redis.port(), pair.zankv.port()];
        let runs: Vec<Vec<Frame>> = ports
            .iter()
            .map(|&port| {
                let mut waiter = Client::connect(port);
                let mut other = Client::connect(port);
                let id = match waiter.cmd_str(&["CLIENT", "ID"]) {
                    Frame::Integer(id) => id.to_string(),
                    other => panic!("CLIENT ID: {other}"),
                };
                let mut seen = Vec::new();
                for reason in [None, Some("TIMEOUT"), Some("ERROR")] {
                    waiter.send_raw(&Client::encode(&[b"BLPOP", b"unblock-me", b"0"]));
                    std::thread::sleep(Duration::from_millis(200));
                    let mut unblock = vec!["CLIENT", "UNBLOCK", &id];
                    unblock.extend(reason);
                    seen.push(other.cmd_str(&unblock));
                    seen.push(waiter.read_frame().expect("the waiter's reply"));
                }
                // Not blocked, unknown, malformed.
                seen.push(other.cmd_str(&["CLIENT", "UNBLOCK", &id]));
                seen.push(other.cmd_str(&["CLIENT", "UNBLOCK", "999999"]));
                seen.push(other.cmd_str(&["CLIENT", "UNBLOCK", "x"]));
                seen.push(other.cmd_str(&["CLIENT", "UNBLOCK", &id, "later"]));
                // The wait is over for the node too: a push stays for the next pop.
                seen.push(other.cmd_str(&["RPUSH", "unblock-me", "kept"]));
                seen.push(other.cmd_str(&["LPOP", "unblock-me"]));
                seen
            })
            .collect();
        assert_eq!(runs[0], runs[1], "redis-server, then zankv");
    }
}
