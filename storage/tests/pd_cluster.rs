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
    let total: usize = (0..3).map(|i| hosted(&cluster, i).len()).sum();
    assert_eq!(total, 12 + 8);

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
