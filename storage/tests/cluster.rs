//! Multi-process replication tests: three `zankv-storage` processes on loopback form raft
//! groups from their config files; leaders are killed with SIGKILL under write load, and
//! the whole cluster is killed and restarted.
//!
//! What must hold every time: every acknowledged write is readable afterwards, through the
//! leader and on every replica; a write whose outcome the client could not learn is either
//! entirely there or entirely absent (each write sets three fields of one hash, so a
//! half-applied write would show); replicas converge to the same applied index.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::cluster::{ClusterClient, TestCluster, WriteOutcome};
use support::{Client, Frame};

/// Short ticks so elections take a fraction of a second.
const FAST_RAFT: &str =
    "[raft]\ntick_ms = 50\nelection_ticks = 10\nheartbeat_ticks = 2\nwrite_timeout_ms = 5000\n";

const CONVERGE: Duration = Duration::from_secs(30);

/// What one writer saw.
#[derive(Default)]
struct Ledger {
    /// Keys whose write was acknowledged.
    acked: Vec<String>,
    /// Keys whose write had an unknown outcome.
    unknown: Vec<String>,
    /// When each acknowledgement arrived.
    ack_times: Vec<Instant>,
}

fn hset_args(key: &str) -> Vec<Vec<u8>> {
    let v = key.as_bytes().to_vec();
    vec![
        b"HSET".to_vec(),
        v.clone(),
        b"a".to_vec(),
        v.clone(),
        b"b".to_vec(),
        v.clone(),
        b"c".to_vec(),
        v,
    ]
}

fn write_one(client: &mut ClusterClient, key: &str, ledger: &mut Ledger) {
    let args = hset_args(key);
    let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    match client.write(&refs) {
        WriteOutcome::Done(Frame::Integer(3)) => {
            ledger.acked.push(key.to_string());
            ledger.ack_times.push(Instant::now());
        }
        WriteOutcome::Done(other) => panic!("HSET {key} answered {other}"),
        WriteOutcome::Unknown => ledger.unknown.push(key.to_string()),
    }
}

/// Writes fresh keys `<prefix>:<n>` until `stop`.
fn spawn_writer(
    mut client: ClusterClient,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Ledger> {
    std::thread::spawn(move || {
        let mut ledger = Ledger::default();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            write_one(&mut client, &format!("{prefix}:{n}"), &mut ledger);
            n += 1;
        }
        ledger
    })
}

/// Checks one key on one connection: `Some(true)` all three fields, `Some(false)` none.
fn hash_state(conn: &mut Client, key: &str) -> Result<bool, String> {
    let reply = conn.cmd(&[b"HGETALL", key.as_bytes()]);
    let Some(items) = reply.as_items() else {
        return Err(format!("HGETALL {key} answered {reply}"));
    };
    if items.is_empty() {
        return Ok(false);
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = items
        .chunks(2)
        .map(|c| {
            (
                c[0].as_bytes().unwrap_or_default().to_vec(),
                c[1].as_bytes().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    pairs.sort();
    let v = key.as_bytes().to_vec();
    let want = vec![
        (b"a".to_vec(), v.clone()),
        (b"b".to_vec(), v.clone()),
        (b"c".to_vec(), v),
    ];
    if pairs == want {
        Ok(true)
    } else {
        Err(format!("{key} is half-applied or wrong: {reply}"))
    }
}

/// Every acknowledged key is complete and every unknown one complete or absent, on every
/// running replica (read with READONLY from its local state once converged) and through
/// the leaders.
fn must_hold(cluster: &TestCluster, ledgers: &[Ledger]) {
    cluster.must_converge(CONVERGE);
    let mut smart = cluster.smart_client();
    for ledger in ledgers {
        for key in &ledger.acked {
            let reply = smart.read(&[b"HLEN", key.as_bytes()]);
            assert_eq!(
                reply,
                Frame::Integer(3),
                "acknowledged {key} through the leader"
            );
        }
    }
    // Nodes hosting nothing (never given a replica, or theirs was removed, or it is not
    // added to its group yet) are skipped.
    let hosting = |i: usize| {
        cluster
            .replicas(i)
            .is_some_and(|r| r.iter().any(|r| r.role != "joining"))
    };
    for i in (0..cluster.len()).filter(|&i| cluster.is_up(i) && hosting(i)) {
        let mut conn = cluster.client(i);
        assert_eq!(conn.cmd(&[b"READONLY"]), Frame::simple("OK"));
        for ledger in ledgers {
            for key in &ledger.acked {
                match hash_state(&mut conn, key) {
                    Ok(true) => {}
                    Ok(false) => panic!("acknowledged {key} is missing on node {}", i + 1),
                    Err(e) => panic!("node {}: {e}", i + 1),
                }
            }
            for key in &ledger.unknown {
                if let Err(e) = hash_state(&mut conn, key) {
                    panic!("node {}: {e}", i + 1);
                }
            }
        }
    }
}

/// The node leading the most partitions.
fn busiest_leader(leaders: &HashMap<String, u64>) -> usize {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for id in leaders.values() {
        *counts.entry(*id).or_default() += 1;
    }
    let (id, _) = counts
        .into_iter()
        .max_by_key(|(id, n)| (*n, *id))
        .expect("some leader");
    id as usize - 1
}

#[test]
fn killing_a_leader_under_write_load_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::must_start(dir.path(), 3, 4, FAST_RAFT);
    let leaders = cluster.must_converge(CONVERGE);
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|w| spawn_writer(cluster.smart_client(), format!("w{w}"), stop.clone()))
        .collect();
    sleep(Duration::from_millis(1500));
    let victim = busiest_leader(&leaders);
    cluster.kill9(victim);
    let killed_at = Instant::now();
    sleep(Duration::from_secs(3));
    cluster.start(victim);
    sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let ledgers: Vec<Ledger> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    let acked: usize = ledgers.iter().map(|l| l.acked.len()).sum();
    let after_kill: usize = ledgers
        .iter()
        .map(|l| l.ack_times.iter().filter(|t| **t > killed_at).count())
        .sum();
    assert!(after_kill > 0, "no write was acknowledged after the kill");
    // Writers stall only while a new leader is elected (well under the write timeout).
    for l in &ledgers {
        let worst = l
            .ack_times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        assert!(
            worst < Duration::from_secs(10),
            "a writer stalled for {worst:?}"
        );
    }
    eprintln!(
        "acknowledged {acked} writes ({after_kill} after the kill), {} unknown",
        ledgers.iter().map(|l| l.unknown.len()).sum::<usize>()
    );
    must_hold(&cluster, &ledgers);
}

#[test]
fn whole_cluster_kill_and_restart_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::must_start(dir.path(), 3, 3, FAST_RAFT);
    cluster.must_converge(CONVERGE);
    let mut client = cluster.smart_client();
    let mut ledger = Ledger::default();
    for n in 0..200 {
        write_one(&mut client, &format!("k:{n}"), &mut ledger);
    }
    assert_eq!(ledger.acked.len(), 200, "nothing was killed yet");
    for i in 0..cluster.len() {
        cluster.kill9(i);
    }
    for i in 0..cluster.len() {
        cluster.start(i);
    }
    must_hold(&cluster, &[ledger]);
}

#[test]
fn followers_serve_stale_reads_only_when_asked_and_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::must_start(dir.path(), 3, 1, FAST_RAFT);
    let leaders = cluster.must_converge(CONVERGE);
    let leader = leaders["default-0"] as usize - 1;
    let follower = (leader + 1) % 3;
    let mut lead = cluster.client(leader);
    assert_eq!(lead.cmd_str(&["SET", "k", "v"]), Frame::simple("OK"));
    cluster.must_converge(CONVERGE);

    let mut conn = cluster.client(follower);
    let hint = format!(
        "ERR_CLUSTER_CHANGED: not leader of default-0, leader is node {} at 127.0.0.1:{}",
        leader + 1,
        cluster.ports()[leader].redis
    );
    assert_eq!(conn.cmd_str(&["GET", "k"]), Frame::error(&hint));
    assert_eq!(conn.cmd_str(&["READONLY"]), Frame::simple("OK"));
    assert_eq!(conn.cmd_str(&["GET", "k"]), Frame::bulk("v"));
    // READONLY does not make a follower accept writes.
    assert_eq!(conn.cmd_str(&["SET", "k", "w"]), Frame::error(&hint));
    assert_eq!(conn.cmd_str(&["READWRITE"]), Frame::simple("OK"));
    assert_eq!(conn.cmd_str(&["GET", "k"]), Frame::error(&hint));

    // A follower killed and restarted catches up from the leader's log.
    cluster.kill9(follower);
    for n in 0..50 {
        assert_eq!(
            lead.cmd_str(&["SET", &format!("x{n}"), "1"]),
            Frame::simple("OK")
        );
    }
    cluster.start(follower);
    cluster.must_converge(CONVERGE);
    let mut conn = cluster.client(follower);
    assert_eq!(conn.cmd_str(&["READONLY"]), Frame::simple("OK"));
    assert_eq!(conn.cmd_str(&["GET", "x49"]), Frame::bulk("1"));
}

/// The value of a counter on node `i`'s `/metrics`.
fn metric(cluster: &TestCluster, i: usize, name: &str) -> u64 {
    let (_, body) = support::http(cluster.ports()[i].http, "GET", "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let raft = format!("{FAST_RAFT}log_compact_entries = 100\nlog_catchup_entries = 20\n");
    let mut cluster = TestCluster::must_start(dir.path(), 3, 2, &raft);
    let leaders = cluster.must_converge(CONVERGE);
    // A node that leads nothing, so writes keep flowing while it is down.
    let follower = (0..3)
        .find(|i| !leaders.values().any(|l| *l == *i as u64 + 1))
        .unwrap_or(0);
    cluster.kill9(follower);
    let mut client = cluster.smart_client();
    let mut ledger = Ledger::default();
    for n in 0..600 {
        write_one(&mut client, &format!("s:{n}"), &mut ledger);
    }
    assert_eq!(ledger.acked.len(), 600);
    cluster.start(follower);
    must_hold(&cluster, std::slice::from_ref(&ledger));
    assert!(
        metric(
            &cluster,
            follower,
            "zankv_storage_raft_snapshots_installed_total"
        ) >= 1,
        "the follower caught up without a snapshot"
    );
    let sent: u64 = (0..3)
        .map(|i| metric(&cluster, i, "zankv_storage_raft_snapshots_sent_total"))
        .sum();
    assert!(sent >= 1);
    // The installed snapshot is the replica's database now: it survives a restart, and the
    // replica keeps following.
    cluster.kill9(follower);
    cluster.start(follower);
    for n in 600..650 {
        write_one(&mut client, &format!("s:{n}"), &mut ledger);
    }
    must_hold(&cluster, &[ledger]);
}

/// Calls an admin operation until it answers 200 (a learner may still be catching up, a
/// change may still be in progress); returns the outcome.
fn must_admin(cluster: &TestCluster, i: usize, method: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = cluster.http(i, method, path);
        if code == 200 {
            return body["outcome"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline && (code == 409 || code == 504),
            "{method} {path} on node {}: {code} {body}",
            i + 1
        );
        sleep(Duration::from_millis(100));
    }
}

/// Adds node `node` as a learner of `p` at its leader (node index `leader`); returns the
/// replica id the new replica must be hosted with.
fn add_learner(cluster: &TestCluster, leader: usize, p: &str, node: u64) -> u64 {
    let path = format!("/partitions/{p}/learners/{node}");
    must_admin(cluster, leader, "POST", &path);
    let (code, body) = cluster.http(leader, "POST", &path);
    assert_eq!(code, 200, "{body}");
    let replica = body["replica"]
        .as_u64()
        .expect("add_learner answers the replica id");
    assert_eq!(replica & u64::from(u32::MAX), node, "the id names the node");
    assert_ne!(replica, node, "a learner is never incarnation 0");
    replica
}

/// The node leading `name`, as the running nodes agree.
fn leader_of(cluster: &TestCluster, name: &str) -> usize {
    let leaders = cluster.must_agree_on_leaders(CONVERGE);
    leaders[name] as usize - 1
}

#[test]
fn a_replica_moves_to_a_new_node_under_write_load_without_losing_a_write() {
    let dir = tempfile::tempdir().unwrap();
    // Four nodes; the partition starts on nodes 1-3, node 4 is new.
    let mut cluster = TestCluster::must_start_with(dir.path(), 4, 1, &[1, 2, 3], FAST_RAFT);
    let p = "default-0";
    let leader = leader_of(&cluster, p);
    assert!(
        cluster.replicas(3).unwrap().is_empty(),
        "node 4 starts empty"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| spawn_writer(cluster.smart_client(), format!("m{w}"), stop.clone()))
        .collect();
    sleep(Duration::from_millis(500));

    // The leader adds node 4 as a learner with a fresh replica id; node 4 hosts an empty
    // replica with that id, fills from a snapshot, and is promoted once caught up.
    let learners = format!("/partitions/{p}/learners/4");
    let (code, body) = cluster.http((leader + 1) % 3, "POST", &learners);
    assert_eq!(code, 409, "a follower refuses: {body}");
    assert_eq!(body["leader"], leader as u64 + 1);
    let replica = add_learner(&cluster, leader, p, 4);
    assert_eq!(must_admin(&cluster, leader, "POST", &learners), "unchanged");
    let (code, body) = cluster.http(3, "POST", &format!("/partitions/{p}/replica"));
    assert_eq!(code, 400, "hosting a joiner needs its replica id: {body}");
    let host = format!("/partitions/{p}/replica?replica={replica}");
    assert_eq!(must_admin(&cluster, 3, "POST", &host), "done");
    assert_eq!(must_admin(&cluster, 3, "POST", &host), "unchanged");
    let (code, body) = cluster.http(
        3,
        "POST",
        &format!("/partitions/{p}/replica?replica={}", replica + (1 << 32)),
    );
    assert_eq!(code, 409, "another incarnation is refused: {body}");
    assert_eq!(
        must_admin(
            &cluster,
            leader,
            "POST",
            &format!("/partitions/{p}/voters/4")
        ),
        "done"
    );
    // Leadership moves to the new node, which then removes node 1's replica; node 1
    // deletes it.
    let leader = if leader == 0 {
        must_admin(&cluster, 0, "POST", &format!("/partitions/{p}/leader/2"));
        leader_of(&cluster, p)
    } else {
        leader
    };
    assert_eq!(
        must_admin(
            &cluster,
            leader,
            "POST",
            &format!("/partitions/{p}/leader/4")
        ),
        "done"
    );
    let leader = leader_of(&cluster, p);
    assert_eq!(leader, 3, "node 4 leads");
    assert_eq!(
        must_admin(&cluster, 3, "DELETE", &format!("/partitions/{p}/members/1")),
        "done"
    );
    let removed = must_admin(
        &cluster,
        0,
        "DELETE",
        &format!("/partitions/{p}/replica?force=true"),
    );
    assert_eq!(removed, "done");
    sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let ledgers: Vec<Ledger> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(ledgers.iter().all(|l| !l.acked.is_empty()));

    assert!(
        cluster.replicas(0).unwrap().is_empty(),
        "node 1 hosts nothing now"
    );
    assert!(
        !cluster.data_dir(0).join(p).exists(),
        "node 1 deleted its data"
    );
    let mut voters = cluster.replicas(3).unwrap()[0].voters.clone();
    voters.sort_unstable();
    assert_eq!(voters, vec![2, 3, 4]);
    must_hold(&cluster, &ledgers);
    // The new layout survives a restart of every node (node 1 does not bring its replica
    // back, node 4 keeps its own).
    for i in 0..4 {
        cluster.kill9(i);
        cluster.start(i);
    }
    assert!(cluster.replicas(0).unwrap().is_empty());
    must_hold(&cluster, &ledgers);
}

#[test]
fn lease_reads_and_a_namespace_that_allows_follower_reads() {
    let dir = tempfile::tempdir().unwrap();
    // The bare key lands in the namespace's table (the cluster's config ends with it).
    let extra = format!("stale_reads = true\n{FAST_RAFT}read_mode = \"lease\"\n");
    let cluster = TestCluster::must_start(dir.path(), 3, 1, &extra);
    let leader = leader_of(&cluster, "default-0");
    let mut lead = cluster.client(leader);
    assert_eq!(lead.cmd_str(&["SET", "k", "v1"]), Frame::simple("OK"));
    // The leader answers reads from its lease, no quorum round needed.
    assert_eq!(lead.cmd_str(&["GET", "k"]), Frame::bulk("v1"));
    cluster.must_converge(CONVERGE);
    // Followers answer reads themselves (no READONLY needed) but still refuse writes.
    let follower = (leader + 1) % 3;
    let mut conn = cluster.client(follower);
    assert_eq!(conn.cmd_str(&["GET", "k"]), Frame::bulk("v1"));
    let refused = conn.cmd_str(&["SET", "k", "v2"]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED: not leader")),
        "{refused}"
    );
}

#[test]
fn large_values_replicate_and_writes_over_the_entry_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let raft = format!("{FAST_RAFT}max_entry_mb = 16\n");
    let cluster = TestCluster::must_start(dir.path(), 3, 1, &raft);
    // 10 MiB: larger than a transport frame's target, so it travels in a frame of its own.
    // On a loaded machine an election may drop it before it commits; that answer says it
    // was not applied, so it is sent again to the new leader, as a client would.
    let big = vec![b'v'; 10 << 20];
    let mut attempts = 0;
    let mut lead = loop {
        attempts += 1;
        let mut lead = cluster.client(leader_of(&cluster, "default-0"));
        lead.set_read_timeout(Duration::from_secs(30));
        match lead.cmd(&[b"SET", b"big", &big]) {
            Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED") && attempts < 5 => continue,
            reply => assert_eq!(reply, Frame::simple("OK")),
        }
        break lead;
    };
    let too_big = vec![b'v'; 17 << 20];
    let refused = lead.cmd(&[b"SET", b"huge", &too_big]);
    assert!(
        matches!(&refused, Frame::Error(e) if e.starts_with(b"ERR the write is")),
        "{refused}"
    );
    // The connection and the group go on.
    assert_eq!(lead.cmd_str(&["SET", "after", "1"]), Frame::simple("OK"));
    cluster.must_converge(CONVERGE);
    for i in 0..3 {
        let mut c = cluster.client(i);
        c.set_read_timeout(Duration::from_secs(30));
        assert_eq!(c.cmd_str(&["READONLY"]), Frame::simple("OK"));
        assert_eq!(
            c.cmd_str(&["STRLEN", "big"]),
            Frame::Integer(10 << 20),
            "node {}",
            i + 1
        );
        assert_eq!(c.cmd_str(&["EXISTS", "huge"]), Frame::Integer(0));
        assert_eq!(c.cmd_str(&["GET", "after"]), Frame::bulk("1"));
    }
}

/// Every (term, leader) pair the running nodes report for `name`.
fn leaders_by_term(cluster: &TestCluster, name: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for i in (0..cluster.len()).filter(|&i| cluster.is_up(i)) {
        for r in cluster.replicas(i).unwrap_or_default() {
            if r.name == name && r.role == "leader" {
                out.push((r.term, i as u64 + 1));
            }
        }
    }
    out
}

#[test]
fn a_replica_re_created_on_a_node_that_held_one_cannot_elect_a_second_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = TestCluster::must_start_with(dir.path(), 4, 1, &[1, 2, 3], FAST_RAFT);
    let p = "default-0";
    let first = leader_of(&cluster, p);
    // Node 3 (or 2, if 3 leads) goes down with the old membership in its log.
    let stale = if first == 2 { 1 } else { 2 };
    cluster.kill9(stale);
    // The partition moves to node 4, which takes the lead and removes another old replica.
    let replica = add_learner(&cluster, first, p, 4);
    must_admin(
        &cluster,
        3,
        "POST",
        &format!("/partitions/{p}/replica?replica={replica}"),
    );
    must_admin(
        &cluster,
        first,
        "POST",
        &format!("/partitions/{p}/voters/4"),
    );
    must_admin(
        &cluster,
        first,
        "POST",
        &format!("/partitions/{p}/leader/4"),
    );
    assert_eq!(leader_of(&cluster, p), 3);
    let removed = (0..3).find(|&i| i != stale).unwrap();
    must_admin(
        &cluster,
        3,
        "DELETE",
        &format!("/partitions/{p}/members/{}", removed + 1),
    );
    // The removed node deletes its replica and is added back (as an operator moving the
    // partition back would): a new incarnation with a new replica id and nothing on disk.
    must_admin(
        &cluster,
        removed,
        "DELETE",
        &format!("/partitions/{p}/replica?force=true"),
    );
    let again = add_learner(&cluster, 3, p, removed as u64 + 1);
    must_admin(
        &cluster,
        removed,
        "POST",
        &format!("/partitions/{p}/replica?replica={again}"),
    );
    let mut writer = cluster.smart_client();
    let mut ledger = Ledger::default();
    cluster.start(stale);
    // The stale node campaigns with the old membership; it must not win a term that
    // already has a leader, however the votes go.
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut n = 0;
    while Instant::now() < deadline {
        let seen = leaders_by_term(&cluster, p);
        for (term, leader) in &seen {
            assert!(
                seen.iter().all(|(t, l)| t != term || l == leader),
                "two leaders in term {term}: {seen:?}"
            );
        }
        write_one(&mut writer, &format!("r:{n}"), &mut ledger);
        n += 1;
    }
    assert!(!ledger.acked.is_empty());
    let view = cluster.replicas(removed).unwrap();
    assert!(
        view[0].role == "joining" || view[0].role == "learner",
        "the re-created replica is not a member: {view:?}"
    );
    must_hold(&cluster, &[ledger]);
}

/// CLIENT LIST names each client's last command, also when it came in a pipeline, with
/// data commands and connection commands mixed in one read.
#[test]
fn the_last_command_of_a_pipeline_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = TestCluster::must_start(dir.path(), 1, 1, FAST_RAFT);
    cluster.must_converge(CONVERGE);
    let mut admin = cluster.client(0);
    let mut c = cluster.client(0);
    assert_eq!(
        c.cmd_str(&["CLIENT", "SETNAME", "piped"]),
        Frame::simple("OK")
    );
    let line = |admin: &mut Client| {
        let list = admin.cmd_str(&["CLIENT", "LIST"]);
        let list = String::from_utf8(list.as_bytes().unwrap().to_vec()).unwrap();
        list.lines()
            .find(|l| l.contains(" name=piped "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("the client is listed: {list}"))
    };
    let mut piped = Client::encode(&[b"SET", b"k", b"v"]);
    piped.extend(Client::encode(&[b"STRLEN", b"k"]));
    c.send_raw(&piped);
    assert_eq!(c.read_frame(), Some(Frame::simple("OK")));
    assert_eq!(c.read_frame(), Some(Frame::Integer(1)));
    let listed = line(&mut admin);
    assert!(listed.contains(" cmd=strlen "), "{listed}");
    // A connection command after data commands of the same read is the last one.
    let mut piped = Client::encode(&[b"GET", b"k"]);
    piped.extend(Client::encode(&[b"PING"]));
    c.send_raw(&piped);
    assert_eq!(c.read_frame(), Some(Frame::bulk("v")));
    assert_eq!(c.read_frame(), Some(Frame::simple("PONG")));
    let listed = line(&mut admin);
    assert!(listed.contains(" cmd=ping "), "{listed}");
}
