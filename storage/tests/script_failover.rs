//! Lua scripts through the proxy across a leader kill, with real processes: PD, three
//! storage nodes holding a namespace of four partitions (three replicas each) and a proxy.
//!
//! Client threads send, one at a time, a script that increments a counter and appends the
//! request's unique id to a log (two keys sharing a hash tag, so one partition). The node
//! leading that partition is killed (-9) while they work, then started again. Each request
//! is recorded as acknowledged (the script's integer reply), refused (`ERR_CLUSTER_CHANGED`:
//! the proxy and the node guarantee it was not applied) or unknown (any other error, or a
//! connection that failed). Checked afterwards:
//! - every acknowledged id is in the log exactly once, at the position its reply (the
//!   counter's value) names; no id is in the log twice;
//! - every id in the log was acknowledged or has an unknown outcome, never refused;
//! - the counter equals the log's length (a script's two writes are one raft entry);
//! - scripts were acknowledged after the kill (the partition kept serving);
//! - once the cluster settles, every replica of the partition (read directly, READONLY)
//!   holds the same log as the leader.
//!
//! Every wait is bounded; every process is killed when its handle drops.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::proxy::ProxiedCluster;
use support::{Client, Frame};
use zankv_commands::partitioning::partition_for;

/// Partitions of the `default` namespace (which PD creates with hash tags).
const PARTITIONS: u32 = 4;

/// Client threads.
const CLIENTS: usize = 4;

/// The script: both writes, or neither, in one raft entry.
const SCRIPT: &str =
    "local n = redis.call('INCR', KEYS[1]); redis.call('RPUSH', KEYS[2], ARGV[1]); return n";

/// Scripts acknowledged before the kill (the warm-up).
const WARM_UP_ACKS: usize = 20;

/// The partition goes on without the killed node at least this long...
const MIN_OUTAGE: Duration = Duration::from_secs(3);

/// ...and until this many scripts were acknowledged after the kill, at most [`MAX_OUTAGE`].
const ACKS_AFTER_KILL: usize = 20;

/// See [`ACKS_AFTER_KILL`].
const MAX_OUTAGE: Duration = Duration::from_secs(30);

/// How long the clients go on after the killed node is started again.
const AFTER_RESTART: Duration = Duration::from_secs(2);

/// How long a failover, a catch-up or a settled read may take.
const WAIT: Duration = Duration::from_secs(60);

/// What the client threads share with the test's thread.
#[derive(Default)]
struct Shared {
    /// Set when the clients must stop.
    stop: AtomicBool,
    /// Set once the leader was killed.
    killed: AtomicBool,
    /// Scripts acknowledged so far.
    acked: AtomicUsize,
    /// Scripts sent after the kill and acknowledged.
    acked_after_kill: AtomicUsize,
}

/// Stops the clients when dropped, so a panic of the test's thread inside the thread
/// scope does not leave the scope waiting for clients that never stop.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What one client thread saw.
#[derive(Default)]
struct Outcomes {
    /// Acknowledged: the id, the counter value the script answered, and whether it was
    /// sent after the kill.
    acked: Vec<(String, i64, bool)>,
    /// Answered `ERR_CLUSTER_CHANGED`: certainly not applied.
    refused: Vec<String>,
    /// Outcome unknown: the id and what was answered (an error, or a failed connection).
    unknown: Vec<(String, String)>,
    /// Replies that are neither an integer nor an error (a bug).
    unexpected: Vec<(String, Frame)>,
}

/// A client of the proxy that waits long enough for the proxy's own retries.
fn proxy_client(port: u16) -> Option<Client> {
    let mut c = Client::try_connect(port)?;
    c.set_read_timeout(Duration::from_secs(15));
    Some(c)
}

/// One client thread: sends the script with a fresh id, one request at a time, until told
/// to stop, reconnecting after a failed connection.
fn run_client(port: u16, worker: usize, tag: &str, shared: &Shared) -> Outcomes {
    let count_key = format!("{{{tag}}}count");
    let log_key = format!("{{{tag}}}log");
    let mut out = Outcomes::default();
    let mut conn: Option<Client> = None;
    let mut seq = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        if conn.is_none() {
            conn = proxy_client(port);
            if conn.is_none() {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        }
        let c = conn.as_mut().expect("connected");
        let id = format!("w{worker}-{seq}");
        seq += 1;
        let after_kill = shared.killed.load(Ordering::SeqCst);
        let args: [&[u8]; 6] = [
            &b"EVAL"[..],
            SCRIPT.as_bytes(),
            &b"2"[..],
            count_key.as_bytes(),
            log_key.as_bytes(),
            id.as_bytes(),
        ];
        let reply = c.try_cmd(&args);
        let mut pause = Duration::from_millis(2);
        match reply {
            Some(Frame::Integer(n)) => {
                out.acked.push((id, n, after_kill));
                shared.acked.fetch_add(1, Ordering::SeqCst);
                if after_kill {
                    shared.acked_after_kill.fetch_add(1, Ordering::SeqCst);
                }
            }
            Some(Frame::Error(e)) if e.starts_with(b"ERR_CLUSTER_CHANGED") => {
                out.refused.push(id);
                pause = Duration::from_millis(20);
            }
            Some(Frame::Error(e)) => {
                out.unknown
                    .push((id, String::from_utf8_lossy(&e).into_owned()));
                pause = Duration::from_millis(20);
            }
            Some(other) => out.unexpected.push((id, other)),
            None => {
                out.unknown
                    .push((id, "the connection to the proxy failed".to_string()));
                conn = None;
                pause = Duration::from_millis(20);
            }
        }
        std::thread::sleep(pause);
    }
    out
}

/// Sends `args` until the answer is something other than ERR_CLUSTER_CHANGED (refused
/// without being applied), for at most [`WAIT`]; returns that answer.
fn settled(c: &mut Client, args: &[&str]) -> Frame {
    c.cmd_settled(args, WAIT)
}

/// A short description of a reply that may be a long array.
fn summary(reply: &Frame) -> String {
    match reply.as_items() {
        Some(items) => format!(
            "{} elements, first {:?}, last {:?}",
            items.len(),
            items.first(),
            items.last()
        ),
        None => reply.to_string(),
    }
}

/// At most ten of `items`, for messages.
fn sample<T: std::fmt::Debug>(items: &[T]) -> String {
    let shown: Vec<String> = items.iter().take(10).map(|i| format!("{i:?}")).collect();
    format!("{} in all: [{}]", items.len(), shown.join(", "))
}

#[test]
fn scripts_are_applied_exactly_once_across_a_leader_kill() {
    let started = Instant::now();
    let mut cluster = ProxiedCluster::must_start(PARTITIONS, 3, "");
    // Leaders stay where elections put them: the partition's leader is the one killed.
    let (status, body) = cluster.pds[0].call("POST", "/cluster/balance?enable=false");
    assert_eq!(status, 200, "turning PD's balancers off: {body}");

    // The node leading the most partitions, and a tag of a partition it leads (a direct
    // read there is served, not refused with ERR_CLUSTER_CHANGED).
    let busiest = cluster.nodes.busiest_leader();
    assert!(
        cluster
            .nodes
            .replicas(busiest)
            .unwrap_or_default()
            .iter()
            .any(|r| r.role == "leader"),
        "no node leads a partition"
    );
    let tag = {
        let mut direct = cluster.nodes.client(busiest);
        (0..2000)
            .map(|i| format!("sf{i}"))
            .find(|tag| {
                !direct
                    .cmd_str(&["GET", &format!("{{{tag}}}count")])
                    .is_error()
            })
            .unwrap_or_else(|| panic!("node {} serves no partition", busiest + 1))
    };
    let count_key = format!("{{{tag}}}count");
    let log_key = format!("{{{tag}}}log");
    let partition = format!(
        "default-{}",
        partition_for(count_key.as_bytes(), PARTITIONS, true)
    );
    assert_eq!(
        partition_for(log_key.as_bytes(), PARTITIONS, true),
        partition_for(count_key.as_bytes(), PARTITIONS, true),
        "the two keys share a partition"
    );
    eprintln!(
        "script failover: keys {count_key} and {log_key} in {partition}, led by node {}",
        busiest + 1
    );

    let shared = Shared::default();
    let port = cluster.proxy.port;
    let (outcomes, killed_id) = std::thread::scope(|s| {
        let stopper = StopOnDrop(&shared.stop);
        let handles: Vec<_> = (0..CLIENTS)
            .map(|w| {
                let (tag, shared) = (tag.as_str(), &shared);
                s.spawn(move || run_client(port, w, tag, shared))
            })
            .collect();

        // Warm-up: scripts are served before the kill.
        let deadline = Instant::now() + WAIT;
        while shared.acked.load(Ordering::SeqCst) < WARM_UP_ACKS {
            assert!(
                Instant::now() < deadline,
                "only {} scripts acknowledged within {WAIT:?} before the kill\n{}",
                shared.acked.load(Ordering::SeqCst),
                cluster.proxy.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        // The partition's leader now (normally the busiest node) dies.
        let leaders = cluster.nodes.must_agree_on_leaders(WAIT);
        let leader = *leaders
            .get(&partition)
            .unwrap_or_else(|| panic!("no leader of {partition} among {leaders:?}"));
        let victim = (leader - 1) as usize;
        cluster.nodes.kill9(victim);
        shared.killed.store(true, Ordering::SeqCst);
        let killed_at = Instant::now();
        let acked_before = shared.acked.load(Ordering::SeqCst);
        eprintln!(
            "script failover: node {leader} killed after {acked_before} acknowledged scripts"
        );

        // The others elect a new leader; the clients go on.
        loop {
            let after = shared.acked_after_kill.load(Ordering::SeqCst);
            let elapsed = killed_at.elapsed();
            if (elapsed >= MIN_OUTAGE && after >= ACKS_AFTER_KILL) || elapsed >= MAX_OUTAGE {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "script failover: {} scripts acknowledged in the {:?} after the kill",
            shared.acked_after_kill.load(Ordering::SeqCst),
            killed_at.elapsed()
        );

        // The node comes back while the clients still work, then they stop.
        cluster.nodes.start(victim);
        std::thread::sleep(AFTER_RESTART);
        drop(stopper);
        let outcomes: Vec<Outcomes> = handles
            .into_iter()
            .map(|h| h.join().expect("a client thread panicked"))
            .collect();
        (outcomes, leader)
    });

    // Every outcome, by id.
    let mut acked: HashMap<String, (i64, bool)> = HashMap::new();
    let mut refused: HashSet<String> = HashSet::new();
    let mut unknown: HashMap<String, String> = HashMap::new();
    let mut unexpected: Vec<(String, Frame)> = Vec::new();
    for o in outcomes {
        for (id, n, after_kill) in o.acked {
            assert!(
                acked.insert(id.clone(), (n, after_kill)).is_none(),
                "id {id} sent twice"
            );
        }
        refused.extend(o.refused);
        unknown.extend(o.unknown);
        unexpected.extend(o.unexpected);
    }
    assert!(
        unexpected.is_empty(),
        "scripts answered neither an integer nor an error: {}",
        sample(&unexpected)
    );
    let acked_after_kill = acked.values().filter(|(_, after)| *after).count();
    let unknown_errors: Vec<&String> = unknown.values().collect();
    eprintln!(
        "script failover: {} acknowledged ({acked_after_kill} sent after the kill of node \
         {killed_id}), {} refused with ERR_CLUSTER_CHANGED, {} unknown: {}",
        acked.len(),
        refused.len(),
        unknown.len(),
        sample(&unknown_errors)
    );

    // The cluster settles: every replica applied everything committed.
    cluster.nodes.must_converge(WAIT);

    // The log and the counter, through the proxy (linearizable reads on the leader).
    let mut c = Client::connect(cluster.proxy.port);
    c.set_read_timeout(Duration::from_secs(30));
    let log_reply = settled(&mut c, &["LRANGE", &log_key, "0", "-1"]);
    let log: Vec<String> = log_reply
        .as_items()
        .unwrap_or_else(|| panic!("LRANGE {log_key} answered {}", summary(&log_reply)))
        .iter()
        .map(|f| {
            let bytes = f
                .as_bytes()
                .unwrap_or_else(|| panic!("an element of the log: {f}"));
            String::from_utf8_lossy(bytes).into_owned()
        })
        .collect();
    let count = match settled(&mut c, &["GET", &count_key]) {
        Frame::Null => 0,
        Frame::Bulk(b) => String::from_utf8_lossy(&b)
            .parse::<usize>()
            .unwrap_or_else(|e| panic!("GET {count_key}: {:?}: {e}", String::from_utf8_lossy(&b))),
        other => panic!("GET {count_key} answered {other}"),
    };

    // No id is in the log twice.
    let mut positions: HashMap<&str, usize> = HashMap::new();
    let mut twice: Vec<&str> = Vec::new();
    for (i, id) in log.iter().enumerate() {
        if positions.insert(id.as_str(), i).is_some() {
            twice.push(id.as_str());
        }
    }
    assert!(twice.is_empty(), "ids applied twice: {}", sample(&twice));

    // Every acknowledged id is in the log once, where its counter value says.
    let mut missing: Vec<&str> = Vec::new();
    let mut misplaced: Vec<(&str, i64, usize)> = Vec::new();
    for (id, (n, _)) in &acked {
        match positions.get(id.as_str()) {
            None => missing.push(id.as_str()),
            Some(&at) if (at + 1) as i64 != *n => misplaced.push((id.as_str(), *n, at + 1)),
            Some(_) => {}
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged scripts missing from the log: {}",
        sample(&missing)
    );
    assert!(
        misplaced.is_empty(),
        "acknowledged scripts whose reply (the counter) is not their place in the log \
         (id, reply, place): {}",
        sample(&misplaced)
    );

    // Every id in the log was acknowledged or has an unknown outcome; none was refused.
    let refused_applied: Vec<&str> = log
        .iter()
        .filter(|id| refused.contains(*id))
        .map(String::as_str)
        .collect();
    assert!(
        refused_applied.is_empty(),
        "scripts answered ERR_CLUSTER_CHANGED were applied: {}",
        sample(&refused_applied)
    );
    let never_sent: Vec<&str> = log
        .iter()
        .filter(|id| !acked.contains_key(*id) && !unknown.contains_key(*id))
        .map(String::as_str)
        .collect();
    assert!(
        never_sent.is_empty(),
        "ids in the log that were neither acknowledged nor of unknown outcome: {}",
        sample(&never_sent)
    );

    // Each script's two writes are atomic: the counter counts the log.
    assert_eq!(
        count,
        log.len(),
        "{count_key} against the length of {log_key}"
    );

    // The partition kept serving after the kill.
    assert!(
        acked_after_kill >= 10,
        "only {acked_after_kill} scripts sent after node {killed_id} was killed were \
         acknowledged\n{}",
        cluster.proxy.log_tail()
    );

    // Every replica holds the same log: read each node directly (READONLY: its own replica,
    // leader or follower), until it has applied everything.
    for (i, node) in cluster.nodes.ports().iter().enumerate() {
        let deadline = Instant::now() + WAIT;
        let mut last = String::from("(no answer)");
        loop {
            if let Some(mut direct) = Client::try_connect(node.redis) {
                let readonly = direct.try_cmd(&[b"READONLY"]);
                match readonly {
                    Some(ref f) if !f.is_error() => {
                        let reply = direct.try_cmd(&[b"LRANGE", log_key.as_bytes(), b"0", b"-1"]);
                        match reply {
                            Some(ref f) if *f == log_reply => break,
                            Some(ref f) => last = summary(f),
                            None => last = "(connection failed)".to_string(),
                        }
                    }
                    Some(f) => last = format!("READONLY answered {f}"),
                    None => last = "(connection failed on READONLY)".to_string(),
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {}'s replica of {partition} did not hold the leader's log ({}) within \
                 {WAIT:?}; last: {last}",
                i + 1,
                summary(&log_reply)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!(
        "script failover: {} scripts applied, the same on every replica; done in {:?}",
        log.len(),
        started.elapsed()
    );
}
