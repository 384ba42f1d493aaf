//! Storage nodes managed by PD, as real processes on loopback: nodes register through
//! heartbeats, PD creates namespaces on them, keys route by PD's catalog (hash tags
//! included), the nodes keep serving from their saved catalog while PD is down and after a
//! kill -9 of every node, and deleting a namespace removes its replicas from the nodes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::cluster::TestCluster;
use support::pd::PdProcess;
use support::Frame;

const WAIT: Duration = Duration::from_secs(30);

fn leaders_known(q: &Value, partitions: usize) -> bool {
    q["partitions"]
        .as_object()
        .is_some_and(|p| p.len() == partitions && p.values().all(|p| p["leader"].is_object()))
}

/// Names of the partitions node `i` hosts, per its /status.
fn hosted(cluster: &TestCluster, i: usize) -> Vec<String> {
    cluster
        .replicas(i)
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[test]
fn pd_creates_namespaces_nodes_serve_them_and_deleting_one_removes_its_replicas() {
    let root = tempfile::tempdir().unwrap();
    let mut pd = PdProcess::must_start(
        &root.path().join("pd"),
        "check_interval_ms = 200\nheartbeat_timeout_ms = 3000\n",
    );
    let mut cluster = TestCluster::must_start_managed(root.path(), 3, pd.port, "");

    // Registration by heartbeat.
    pd.wait_for("/datanodes", WAIT, "three alive nodes", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["alive"] == true))
    });
    // Before any namespace exists, plain keys are refused with a routing error.
    let mut c = cluster.client(0);
    let before = c.cmd_str(&["GET", "k"]);
    assert!(
        matches!(&before, Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED")),
        "{before:?}"
    );

    let (status, created) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=default&partition_num=4&replicator=3",
    );
    assert_eq!(status, 200, "{created}");
    let (status, created) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=users&partition_num=4&replicator=2&hash_tags=true",
    );
    assert_eq!(status, 200, "{created}");
    let table = pd.wait_for(
        "/query/default",
        WAIT,
        "a leader for every partition",
        |q| leaders_known(q, 4),
    );
    pd.wait_for("/query/users", WAIT, "a leader for every partition", |q| {
        leaders_known(q, 4)
    });
    for p in table["partitions"].as_object().unwrap().values() {
        assert_eq!(p["replicas"].as_array().unwrap().len(), 3, "{table}");
    }
    // users has 4 partitions of 2 replicas: 8 replicas over 3 nodes, default 12.
    let all: Vec<Vec<String>> = (0..3).map(|i| hosted(&cluster, i)).collect();
    let total: usize = all.iter().map(Vec::len).sum();
    assert_eq!(total, 12 + 8, "{all:?}\n{}", pd.log_tail());

    // Writes and reads through the nodes, found by leader hints.
    let mut client = cluster.smart_client();
    let mut expected = BTreeMap::new();
    for i in 0..40 {
        let key = format!("key{i}");
        let value = format!("value{i}");
        let reply = client.read(&[b"SET", key.as_bytes(), value.as_bytes()]);
        assert_eq!(reply, Frame::simple("OK"), "{key}");
        expected.insert(key, value);
    }
    // With hash tags, keys sharing a tag share a partition, so MSET across them works.
    let mset = client.read(&[
        b"MSET",
        b"users:{u1}:name",
        b"ann",
        b"users:{u1}:mail",
        b"ann@example.com",
    ]);
    assert_eq!(mset, Frame::simple("OK"));
    let mget = client.read(&[b"MGET", b"users:{u1}:name", b"users:{u1}:mail"]);
    assert_eq!(
        mget,
        Frame::Array(vec![Frame::bulk("ann"), Frame::bulk("ann@example.com")])
    );

    // PD down, then every storage node killed and restarted: they serve from the catalog
    // they saved.
    pd.kill9();
    for i in 0..3 {
        cluster.kill9(i);
    }
    for i in 0..3 {
        cluster.start(i);
    }
    let mut client = cluster.smart_client();
    for (key, value) in &expected {
        assert_eq!(
            client.read(&[b"GET", key.as_bytes()]),
            Frame::bulk(value),
            "{key} after restarting every node without PD"
        );
    }
    assert_eq!(
        client.read(&[b"GET", b"users:{u1}:name"]),
        Frame::bulk("ann")
    );

    // PD back; deleting a namespace removes its replicas and their data from every node.
    pd.start();
    pd.wait_for("/datanodes", WAIT, "three alive nodes again", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().filter(|n| n["alive"] == true).count() == 3)
    });
    let (status, body) = pd.call(
        "DELETE",
        "/cluster/namespace/delete?namespace=users&partition=**",
    );
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: Vec<String> = (0..3)
            .flat_map(|i| hosted(&cluster, i))
            .filter(|n| n.starts_with("users-"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas of the deleted namespace are still hosted: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..3 {
        let dirs: Vec<String> = std::fs::read_dir(cluster.data_dir(i))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            dirs.iter().all(|d| !d.starts_with("users-")),
            "node {} kept the data of a deleted namespace: {dirs:?}",
            i + 1
        );
        assert!(
            dirs.iter().any(|d| d.starts_with("default-")),
            "node {} lost the default namespace: {dirs:?}",
            i + 1
        );
    }
    // The deleted namespace's prefix is an ordinary key of the default namespace now.
    assert_eq!(client.read(&[b"GET", b"users:{u1}:name"]), Frame::Null);
    assert_eq!(client.read(&[b"GET", b"key7"]), Frame::bulk("value7"));
}

/// Node ids holding a voter of each partition of `ns`, per PD's routing table.
fn placement(pd: &PdProcess, ns: &str) -> Vec<Vec<u64>> {
    let (_, q) = pd.call("GET", &format!("/query/{ns}"));
    let parts = q["partitions"].as_object().cloned().unwrap_or_default();
    let mut out: Vec<(u64, Vec<u64>)> = parts
        .iter()
        .map(|(p, v)| {
            let mut ids: Vec<u64> = v["replicas"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|n| n["node_id"].as_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            ids.sort_unstable();
            (p.parse().unwrap_or(0), ids)
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, ids)| ids).collect()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pd_replaces_a_dead_node_rebalances_a_returning_one_and_drains_a_removed_one() {
    let root = tempfile::tempdir().unwrap();
    let pd = PdProcess::must_start(
        &root.path().join("pd"),
        "check_interval_ms = 200\nheartbeat_timeout_ms = 1000\ndead_node_grace_ms = 2000\n",
    );
    let mut cluster = TestCluster::must_start_managed(root.path(), 4, pd.port, "");
    pd.wait_for("/datanodes", WAIT, "four alive nodes", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 4 && n.iter().all(|n| n["alive"] == true))
    });
    let (status, body) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=default&partition_num=4&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    pd.wait_for("/cluster/stats", WAIT, "a stable cluster", |s| {
        s["stable"] == true
    });
    let mut client = cluster.smart_client();
    let mut expected = BTreeMap::new();
    let mut write = |client: &mut support::cluster::ClusterClient, from: usize, to: usize| {
        for i in from..to {
            let (key, value) = (format!("key{i}"), format!("value{i}"));
            assert_eq!(
                client.read(&[b"SET", key.as_bytes(), value.as_bytes()]),
                Frame::simple("OK")
            );
            expected.insert(key, value);
        }
    };
    write(&mut client, 0, 50);

    // Node 4 dies: after the grace period its replicas are re-created on nodes 1-3.
    cluster.kill9(3);
    wait_until("node 4's replicas replaced", WAIT * 2, || {
        let p = placement(&pd, "default");
        p.len() == 4 && p.iter().all(|ids| ids == &[1, 2, 3])
    });
    pd.wait_for("/cluster/stats", WAIT, "no operator left", |s| {
        s["operators"] == 0 && s["under_replicated"] == 0
    });
    let mut client = cluster.smart_client();
    write(&mut client, 50, 100);

    // It comes back: its stale replicas are deleted and the balancer gives it replicas
    // again (12 replicas over 4 nodes: 3 each).
    cluster.start(3);
    wait_until("node 4 rebalanced", WAIT * 2, || {
        let p = placement(&pd, "default");
        let on4 = p.iter().filter(|ids| ids.contains(&4)).count();
        on4 == 3 && p.iter().all(|ids| ids.len() == 3)
    });
    pd.wait_for("/cluster/stats", WAIT, "a stable cluster", |s| {
        s["stable"] == true
    });

    // Node 1 is removed: its replicas and leaders move away; once stopped it is forgotten.
    let (status, body) = pd.call("POST", "/cluster/node/remove?remove_node=1");
    assert_eq!(status, 200, "{body}");
    wait_until("node 1 drained", WAIT * 2, || {
        let p = placement(&pd, "default");
        p.len() == 4 && p.iter().all(|ids| ids == &[2, 3, 4])
    });
    wait_until("node 1's replicas deleted", WAIT, || {
        hosted(&cluster, 0).is_empty()
    });
    cluster.kill9(0);
    pd.wait_for("/datanodes", WAIT, "node 1 forgotten", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["node_id"] != 1))
    });
    let mut client = cluster.smart_client();
    for (key, value) in &expected {
        assert_eq!(
            client.read(&[b"GET", key.as_bytes()]),
            Frame::bulk(value),
            "{key} after a dead node, a return and a removal"
        );
    }
}

/// The PD member (index) that says it leads, if one does.
fn pd_leader(group: &[PdProcess]) -> Option<usize> {
    group.iter().position(|pd| {
        pd.is_up() && matches!(pd.try_call("GET", "/info"), Ok((200, v)) if v["leader"] == true)
    })
}

#[test]
fn killing_the_pd_leader_stops_neither_reads_nor_writes_and_a_new_leader_takes_over() {
    let root = tempfile::tempdir().unwrap();
    let mut group = PdProcess::must_start_group(
        root.path(),
        3,
        "check_interval_ms = 200\nheartbeat_timeout_ms = 2000\n",
    );
    let ports: Vec<u16> = group.iter().map(|pd| pd.port).collect();
    let cluster = TestCluster::must_start_managed_by(root.path(), 3, &ports, "");
    let mut leader = None;
    wait_until("a PD leader", WAIT, || {
        leader = pd_leader(&group);
        leader.is_some()
    });
    let first = leader.unwrap();
    let follower = (first + 1) % 3;
    // Followers refuse changes and name the leader.
    let (status, body) = group[follower].call(
        "POST",
        "/cluster/namespace/create?namespace=default&partition_num=4&replicator=3",
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("E_FAILED_ON_NOT_LEADER"),
        "{body}"
    );
    let (_, list) = group[follower].call("GET", "/listpd");
    assert_eq!(list["pdnodes"].as_array().unwrap().len(), 3, "{list}");
    assert_eq!(list["pdleader"]["id"], (first + 1).to_string(), "{list}");
    let alive = |v: &Value| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().filter(|n| n["alive"] == true).count() == 3)
    };
    group[first].wait_for("/datanodes", WAIT, "the storage nodes' heartbeats", alive);
    let (status, body) = group[first].call(
        "POST",
        "/cluster/namespace/create?namespace=default&partition_num=4&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    group[first].wait_for("/cluster/stats", WAIT, "a stable cluster", |s| {
        s["stable"] == true
    });
    // The namespace is replicated: a follower lists it.
    group[follower].wait_for("/namespaces", WAIT, "the namespace on a follower", |v| {
        v["namespaces"] == serde_json::json!(["default"])
    });

    // Writes run while the PD leader is killed.
    let mut client = cluster.smart_client();
    let mut expected = BTreeMap::new();
    let started = std::time::Instant::now();
    group[first].kill9();
    let mut new_leader = None;
    let mut i = 0;
    while new_leader.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no new PD leader within 20 s"
        );
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(
            client.read(&[b"SET", key.as_bytes(), value.as_bytes()]),
            Frame::simple("OK"),
            "writes go on without a PD leader"
        );
        expected.insert(key, value);
        i += 1;
        new_leader = pd_leader(&group);
    }
    let took = started.elapsed();
    let second = new_leader.unwrap();
    assert_ne!(second, first);
    assert!(took < Duration::from_secs(10), "took over after {took:?}");

    // The new leader serves changes, and the storage nodes follow it.
    group[second].wait_for("/datanodes", WAIT, "the storage nodes' heartbeats", alive);
    let (status, body) = group[second].call(
        "POST",
        "/cluster/namespace/create?namespace=users&partition_num=2&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    group[second].wait_for(
        "/query/users",
        WAIT,
        "a leader for every users partition",
        |q| leaders_known(q, 2),
    );
    assert_eq!(
        client.read(&[b"SET", b"users:t:1", b"x"]),
        Frame::simple("OK")
    );

    // The old leader comes back as a follower with everything committed meanwhile.
    group[first].start();
    group[first].wait_for(
        "/namespaces",
        WAIT,
        "the new namespace on the old leader",
        |v| v["namespaces"].as_array().is_some_and(|n| n.len() == 2),
    );
    assert_eq!(pd_leader(&group), Some(second));
    for (key, value) in &expected {
        assert_eq!(client.read(&[b"GET", key.as_bytes()]), Frame::bulk(value));
    }
}

/// Replicas per node in PD's routing table of `ns`, and leaders per node.
fn spread(pd: &PdProcess, ns: &str) -> (BTreeMap<u64, usize>, BTreeMap<u64, usize>) {
    let (_, q) = pd.call("GET", &format!("/query/{ns}"));
    let mut replicas = BTreeMap::new();
    let mut leaders = BTreeMap::new();
    for p in q["partitions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| p)
    {
        for r in p["replicas"].as_array().into_iter().flatten() {
            let id: u64 = r["node_id"].as_str().unwrap_or("0").parse().unwrap_or(0);
            *replicas.entry(id).or_insert(0) += 1;
        }
        if let Some(id) = p["leader"]["node_id"].as_str() {
            *leaders.entry(id.parse().unwrap_or(0)).or_insert(0) += 1;
        }
    }
    (replicas, leaders)
}

/// The whole flow: 3 PD members and 4 storage nodes; a 16 × 3 namespace; a dead
/// storage node replaced after the grace period; a 5th node filled by the balancers; the
/// PD leader killed; nothing acknowledged lost.
#[test]
fn three_pd_members_and_four_storage_nodes_survive_a_dead_node_a_new_node_and_a_dead_pd_leader() {
    let root = tempfile::tempdir().unwrap();
    let mut group = PdProcess::must_start_group(
        root.path(),
        3,
        "check_interval_ms = 200\nheartbeat_timeout_ms = 1000\ndead_node_grace_ms = 2000\nmax_operators = 8\n",
    );
    let ports: Vec<u16> = group.iter().map(|pd| pd.port).collect();
    let mut cluster = TestCluster::must_start_some_managed_by(root.path(), 5, 4, &ports, "");
    let mut leader = None;
    wait_until("a PD leader", WAIT, || {
        leader = pd_leader(&group);
        leader.is_some()
    });
    let pd = leader.unwrap();
    let alive = |n: usize| {
        move |v: &Value| {
            v["nodes"]
                .as_array()
                .is_some_and(|ns| ns.iter().filter(|x| x["alive"] == true).count() == n)
        }
    };
    group[pd].wait_for("/datanodes", WAIT, "four storage nodes", alive(4));
    let (status, body) = group[pd].call(
        "POST",
        "/cluster/namespace/create?namespace=default&partition_num=16&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    group[pd].wait_for("/cluster/stats", WAIT, "a stable cluster", |s| {
        s["stable"] == true
    });
    let mut client = cluster.smart_client();
    let mut expected = BTreeMap::new();
    let mut write = |client: &mut support::cluster::ClusterClient,
                     range: std::ops::Range<usize>| {
        for i in range {
            let (key, value) = (format!("key{i}"), format!("value{i}"));
            assert_eq!(
                client.read(&[b"SET", key.as_bytes(), value.as_bytes()]),
                Frame::simple("OK")
            );
            expected.insert(key, value);
        }
    };
    write(&mut client, 0..200);

    // Storage node 4 dies: after the grace period its replicas are re-created on the others.
    cluster.kill9(3);
    wait_until("node 4's replicas re-created", WAIT * 3, || {
        let p = placement(&group[pd], "default");
        p.len() == 16 && p.iter().all(|ids| ids.len() == 3 && !ids.contains(&4))
    });
    let mut client = cluster.smart_client();
    write(&mut client, 200..300);
    // It will not come back: removing it lets PD forget it.
    let (status, body) = group[pd].call("POST", "/cluster/node/remove?remove_node=4");
    assert_eq!(status, 200, "{body}");
    group[pd].wait_for("/datanodes", WAIT, "node 4 forgotten", |v| {
        v["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().all(|x| x["node_id"] != 4))
    });

    // A 5th node joins: the balancers move replicas and leaders onto it.
    cluster.start(4);
    wait_until(
        "replicas and leaders balanced onto node 5",
        WAIT * 4,
        || {
            let (replicas, leaders) = spread(&group[pd], "default");
            let r5 = replicas.get(&5).copied().unwrap_or(0);
            let l5 = leaders.get(&5).copied().unwrap_or(0);
            let max = replicas.values().max().copied().unwrap_or(0);
            let min = replicas.values().min().copied().unwrap_or(0);
            r5 >= 11 && max - min <= 1 && l5 >= 3
        },
    );
    group[pd].wait_for("/cluster/stats", WAIT * 2, "a stable cluster", |s| {
        s["stable"] == true
    });
    let mut client = cluster.smart_client();
    write(&mut client, 300..400);

    // The PD leader dies: another member takes over and the cluster keeps working.
    group[pd].kill9();
    let mut next = None;
    wait_until("a new PD leader", WAIT, || {
        next = pd_leader(&group);
        next.is_some()
    });
    let next = next.unwrap();
    group[next].wait_for(
        "/datanodes",
        WAIT,
        "the storage nodes at the new leader",
        alive(4),
    );
    let (status, body) = group[next].call(
        "POST",
        "/cluster/namespace/create?namespace=later&partition_num=2&replicator=3",
    );
    assert_eq!(status, 200, "{body}");
    group[next].wait_for("/query/later", WAIT, "the new namespace served", |q| {
        leaders_known(q, 2)
    });
    let mut client = cluster.smart_client();
    assert_eq!(
        client.read(&[b"SET", b"later:t:k", b"v"]),
        Frame::simple("OK")
    );
    for (key, value) in &expected {
        assert_eq!(
            client.read(&[b"GET", key.as_bytes()]),
            Frame::bulk(value),
            "{key}"
        );
    }
}
