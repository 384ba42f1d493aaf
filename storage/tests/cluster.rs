//! Multi-process replication tests: three `zankv-storage` processes on loopback form raft
//! groups from their config files; leaders are killed with SIGKILL under write load, and
//! the whole cluster is killed and restarted.
//!
//! What must hold every time: every acknowledged write is readable afterwards, through the
//! leader and on every replica; a write whose outcome the client could not learn is either
//! entirely there or entirely absent (each write sets three fields of one hash, so a
//! half-applied write would show); replicas converge to the same applied index.
//!
//! Lists and sets are held to the same: written with checked replies against a model, they
//! read back exactly through the leaders, and every replica (one that caught up by snapshot,
//! one restarted after kill -9) holds the same values, DBSIZE and keys as its leader.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::cluster::{ClusterClient, TestCluster, WriteOutcome};
use support::{Client, Frame};
use zankv_commands::partitioning::partition_of;

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

/// Lists and sets as acknowledged writes left them: what every replica must hold.
#[derive(Default)]
struct Collections {
    /// List key → its elements, head first.
    lists: BTreeMap<String, Vec<String>>,
    /// Set key → its members.
    sets: BTreeMap<String, BTreeSet<String>>,
    /// Keys that held a collection and were deleted or emptied since: absent everywhere.
    gone: BTreeSet<String>,
}

/// What a reader holds under a key: its TYPE, its LLEN or SCARD, and its elements (a list's
/// in order, a set's sorted, so replicas that iterate in another order still compare equal).
type KeyState = (String, i64, Vec<String>);

impl Collections {
    /// The model's list under `key`, a new empty one if it holds none.
    fn list(&mut self, key: &str) -> &mut Vec<String> {
        self.gone.remove(key);
        self.lists.entry(key.to_string()).or_default()
    }

    /// The model's set under `key`, a new empty one if it holds none.
    fn set(&mut self, key: &str) -> &mut BTreeSet<String> {
        self.gone.remove(key);
        self.sets.entry(key.to_string()).or_default()
    }

    /// Forgets `key`'s value, as DEL or an overwrite does: it must be absent.
    fn remove(&mut self, key: &str) {
        self.lists.remove(key);
        self.sets.remove(key);
        self.gone.insert(key.to_string());
    }

    /// Removes `key` if a command emptied it (an emptied collection is deleted).
    fn drop_if_empty(&mut self, key: &str) {
        let empty = self.lists.get(key).is_some_and(Vec::is_empty)
            || self.sets.get(key).is_some_and(BTreeSet::is_empty);
        if empty {
            self.remove(key);
        }
    }

    /// Every key the model names, live or deleted.
    fn keys(&self) -> impl Iterator<Item = &String> + '_ {
        self.lists
            .keys()
            .chain(self.sets.keys())
            .chain(self.gone.iter())
    }

    /// What [`key_state`] must read under `key`.
    fn state(&self, key: &str) -> KeyState {
        if let Some(list) = self.lists.get(key) {
            ("list".into(), list.len() as i64, list.clone())
        } else if let Some(set) = self.sets.get(key) {
            (
                "set".into(),
                set.len() as i64,
                set.iter().cloned().collect(),
            )
        } else {
            ("none".into(), 0, Vec::new())
        }
    }
}

/// Sends a write through `client` and returns its reply; panics when its outcome is unknown
/// (no node is killed while collections are written).
fn must_write(client: &mut ClusterClient, args: &[&str]) -> Frame {
    let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    match client.write(&bytes) {
        WriteOutcome::Done(reply) => reply,
        WriteOutcome::Unknown => panic!("{args:?} was sent but its outcome is unknown"),
    }
}

/// [`must_write`], whose reply must be `want`.
fn must_write_eq(client: &mut ClusterClient, args: &[&str], want: Frame) {
    assert_eq!(must_write(client, args), want, "{args:?}");
}

/// The elements of an array (or set) reply, as text; panics on any other reply.
fn strings(reply: &Frame, what: &str) -> Vec<String> {
    let items = reply
        .as_items()
        .unwrap_or_else(|| panic!("{what} answered {reply}"));
    items
        .iter()
        .map(|item| {
            let bytes = item
                .as_bytes()
                .unwrap_or_else(|| panic!("{what} answered {reply}"));
            String::from_utf8_lossy(bytes).into_owned()
        })
        .collect()
}

/// LPUSH or RPUSH (`cmd`) `elems` onto the list `key`; the reply must be the model's length.
fn must_push<S: AsRef<str>>(
    client: &mut ClusterClient,
    want: &mut Collections,
    cmd: &str,
    key: &str,
    elems: &[S],
) {
    let elems: Vec<&str> = elems.iter().map(|e| e.as_ref()).collect();
    let list = want.list(key);
    for e in &elems {
        if cmd == "LPUSH" {
            list.insert(0, e.to_string());
        } else {
            list.push(e.to_string());
        }
    }
    let len = Frame::Integer(list.len() as i64);
    let mut args = vec![cmd, key];
    args.extend(elems);
    must_write_eq(client, &args, len);
}

/// LPOP `count` elements of the list `key`: they must be the model's first ones.
fn must_lpop(client: &mut ClusterClient, want: &mut Collections, key: &str, count: usize) {
    let reply = must_write(client, &["LPOP", key, &count.to_string()]);
    let head: Vec<String> = want.list(key).drain(..count).collect();
    assert_eq!(strings(&reply, "LPOP"), head, "LPOP {key} {count}");
    want.drop_if_empty(key);
}

/// SADD `members` to the set `key`; the reply must count those the model did not hold.
fn must_sadd<S: AsRef<str>>(
    client: &mut ClusterClient,
    want: &mut Collections,
    key: &str,
    members: &[S],
) {
    let members: Vec<&str> = members.iter().map(|m| m.as_ref()).collect();
    let set = want.set(key);
    let mut added = 0;
    for m in &members {
        if set.insert(m.to_string()) {
            added += 1;
        }
    }
    let mut args = vec!["SADD", key];
    args.extend(members);
    must_write_eq(client, &args, Frame::Integer(added));
}

/// SREM `members` from the set `key`; the reply must count those the model held.
fn must_srem(client: &mut ClusterClient, want: &mut Collections, key: &str, members: &[&str]) {
    let set = want.set(key);
    let mut removed = 0;
    for m in members {
        if set.remove(*m) {
            removed += 1;
        }
    }
    want.drop_if_empty(key);
    let mut args = vec!["SREM", key];
    args.extend(members);
    must_write_eq(client, &args, Frame::Integer(removed));
}

/// Takes what SPOP popped (the leader's pick) out of the model set `key`: each must have
/// been a member.
fn must_take(want: &mut Collections, key: &str, popped: &[String]) {
    let set = want.set(key);
    for m in popped {
        assert!(
            set.remove(m),
            "SPOP {key} popped {m}, which is not a member"
        );
    }
    want.drop_if_empty(key);
}

/// Lists `q:0..q:n`: pushed, popped at both ends (the head moves on, leaving tombstones
/// behind it), pushed at the head again, then changed in the middle by LINSERT, LREM from
/// the tail and of every occurrence, LTRIM or LSET.
fn must_build_lists(client: &mut ClusterClient, want: &mut Collections, n: usize) {
    let elems: Vec<String> = (0..8).map(|j| format!("e{j}")).collect();
    for i in 0..n {
        let key = format!("q:{i}");
        must_push(client, want, "RPUSH", &key, &elems);
        must_lpop(client, want, &key, 2);
        let head = want.list(&key).remove(0);
        must_write_eq(client, &["LPOP", &key], Frame::bulk(head));
        let tail = want.list(&key).pop().expect("elements are left");
        must_write_eq(client, &["RPOP", &key], Frame::bulk(tail));
        must_push(client, want, "LPUSH", &key, &[format!("h{i}")]);
        // Now h{i} e3 e4 e5 e6.
        match i % 4 {
            0 => {
                let x = format!("x{i}");
                let list = want.list(&key);
                let at = list.iter().position(|e| e == "e4").expect("e4 is listed");
                list.insert(at, x.clone());
                let len = Frame::Integer(list.len() as i64);
                must_write_eq(client, &["LINSERT", &key, "BEFORE", "e4", &x], len);
            }
            1 => {
                must_push(client, want, "RPUSH", &key, &["e3", "e3"]);
                let list = want.list(&key);
                let at = list.iter().rposition(|e| e == "e3").expect("e3 is listed");
                list.remove(at);
                must_write_eq(client, &["LREM", &key, "-1", "e3"], Frame::Integer(1));
                want.list(&key).retain(|e| e != "e5");
                must_write_eq(client, &["LREM", &key, "0", "e5"], Frame::Integer(1));
            }
            2 => {
                let list = want.list(&key);
                *list = list[1..list.len() - 1].to_vec();
                must_write_eq(client, &["LTRIM", &key, "1", "-2"], Frame::simple("OK"));
            }
            _ => {
                let s = format!("s{i}");
                want.list(&key)[1] = s.clone();
                must_write_eq(client, &["LSET", &key, "1", &s], Frame::simple("OK"));
            }
        }
    }
}

/// Sets `st:0..st:n` of the shared members `m0..m9` and one of their own, some members
/// removed by SREM and some by SPOP (the model takes what the leader popped).
fn must_build_sets(client: &mut ClusterClient, want: &mut Collections, n: usize) {
    let members: Vec<String> = (0..10).map(|j| format!("m{j}")).collect();
    for i in 0..n {
        let key = format!("st:{i}");
        must_sadd(client, want, &key, &members);
        must_sadd(client, want, &key, &["m0".to_string(), format!("own{i}")]);
        must_srem(client, want, &key, &["m1", "m3", "nope"]);
        let popped = strings(&must_write(client, &["SPOP", &key, "2"]), "SPOP");
        assert_eq!(popped.len(), 2, "SPOP {key} 2 answered {popped:?}");
        must_take(want, &key, &popped);
        if i % 2 == 0 {
            match must_write(client, &["SPOP", &key]) {
                Frame::Bulk(m) => {
                    must_take(want, &key, &[String::from_utf8_lossy(&m).into_owned()]);
                }
                other => panic!("SPOP {key} answered {other}"),
            }
        }
    }
}

/// Two lists and two sets of 150 elements that go away again (DEL, LTRIM to nothing, SPOP
/// of every member), so their versions are reclaimed in the background; one list is created
/// again under its deleted name and must hold none of the old elements.
fn must_build_and_drop_big(client: &mut ClusterClient, want: &mut Collections) {
    let many: Vec<String> = (0..150).map(|j| format!("b{j}")).collect();
    for k in 0..2 {
        let list = format!("bigq:{k}");
        must_push(client, want, "RPUSH", &list, &many);
        must_lpop(client, want, &list, 5);
        must_sadd(client, want, &format!("bigst:{k}"), &many);
    }
    for key in ["bigq:0", "bigst:0"] {
        must_write_eq(client, &["DEL", key], Frame::Integer(1));
        want.remove(key);
    }
    must_push(client, want, "RPUSH", "bigq:0", &["n0", "n1", "n2"]);
    must_write_eq(client, &["LTRIM", "bigq:1", "1", "0"], Frame::simple("OK"));
    want.remove("bigq:1");
    let popped = strings(&must_write(client, &["SPOP", "bigst:1", "200"]), "SPOP");
    assert_eq!(popped.len(), 150, "SPOP bigst:1 200 takes every member");
    must_take(want, "bigst:1", &popped);
}

/// In each of the `partitions` partitions that holds sets `st:*`, SINTERSTOREs (up to) two
/// of them into a new key and over a list `q:*` (which becomes a set). The keys of one
/// command share a partition: they are picked by the routing rule (the cluster's only
/// namespace hashes whole keys).
fn must_intersect(client: &mut ClusterClient, want: &mut Collections, partitions: u32) {
    for p in 0..partitions {
        let here = |k: &str| partition_of(k.as_bytes(), partitions) == p;
        let sources: Vec<String> = want
            .sets
            .keys()
            .filter(|k| k.starts_with("st:") && here(k.as_str()))
            .take(2)
            .cloned()
            .collect();
        let Some(first) = sources.first() else {
            continue;
        };
        let mut inter = want.sets[first].clone();
        for s in &sources[1..] {
            inter.retain(|m| want.sets[s].contains(m));
        }
        let fresh = (0..)
            .map(|n| format!("inter:{n}"))
            .find(|k| here(k.as_str()))
            .expect("some name falls in every partition");
        let list = want
            .lists
            .keys()
            .find(|k| k.starts_with("q:") && here(k.as_str()))
            .cloned();
        for dest in std::iter::once(fresh).chain(list) {
            let mut args = vec!["SINTERSTORE", dest.as_str()];
            args.extend(sources.iter().map(String::as_str));
            must_write_eq(client, &args, Frame::Integer(inter.len() as i64));
            want.remove(&dest);
            if !inter.is_empty() {
                *want.set(&dest) = inter.clone();
            }
        }
    }
}

/// Writes lists and sets through `client` on a cluster of `partitions` partitions, every
/// reply checked against a model, which it returns: `n` lists and `n` sets changed in every
/// way that moves a list's head or leaves tombstones, SINTERSTOREs, and big collections
/// deleted so that their versions are reclaimed.
fn must_build_collections(client: &mut ClusterClient, n: usize, partitions: u32) -> Collections {
    let mut want = Collections::default();
    must_build_lists(client, &mut want, n);
    must_build_sets(client, &mut want, n);
    must_build_and_drop_big(client, &mut want);
    must_intersect(client, &mut want, partitions);
    want
}

/// One more round on every collection, applied on top of whatever a replica restored (a
/// snapshot, its own disk): each list loses its head and gains a tail, each set a member.
fn must_advance_collections(client: &mut ClusterClient, want: &mut Collections) {
    let lists: Vec<String> = want.lists.keys().cloned().collect();
    for key in &lists {
        let head = want.list(key).remove(0);
        must_write_eq(client, &["LPOP", key], Frame::bulk(head));
        must_push(client, want, "RPUSH", key, &["tail"]);
    }
    let sets: Vec<String> = want.sets.keys().cloned().collect();
    for key in &sets {
        must_sadd(client, want, key, &["late"]);
    }
}

/// Something that answers reads: the smart client through each partition's leader, or a
/// READONLY connection from one node's own replica.
trait Reader {
    /// The reply to a read command.
    fn ask(&mut self, args: &[&str]) -> Frame;
}

impl Reader for ClusterClient {
    fn ask(&mut self, args: &[&str]) -> Frame {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.read(&bytes)
    }
}

impl Reader for Client {
    fn ask(&mut self, args: &[&str]) -> Frame {
        self.cmd_str(args)
    }
}

/// What `reader` holds under `key` (see [`KeyState`]).
fn key_state(reader: &mut impl Reader, key: &str) -> KeyState {
    let reply = reader.ask(&["TYPE", key]);
    let kind = reply
        .as_bytes()
        .unwrap_or_else(|| panic!("TYPE {key} answered {reply}"));
    let kind = String::from_utf8_lossy(kind).into_owned();
    let (len, items) = match kind.as_str() {
        "list" => (
            reader.ask(&["LLEN", key]),
            reader.ask(&["LRANGE", key, "0", "-1"]),
        ),
        "set" => (reader.ask(&["SCARD", key]), reader.ask(&["SMEMBERS", key])),
        _ => return (kind, 0, Vec::new()),
    };
    let len = len
        .as_int()
        .unwrap_or_else(|| panic!("the length of {key} is {len}"));
    let mut items = strings(&items, key);
    if kind == "set" {
        items.sort();
    }
    (kind, len, items)
}

/// Partition `p`'s DBSIZE and its keys (sorted), as `reader` sees them.
fn partition_state(reader: &mut impl Reader, p: &str) -> (i64, Vec<String>) {
    let reply = reader.ask(&["ZANKV.ON", p, "DBSIZE"]);
    let size = reply
        .as_int()
        .unwrap_or_else(|| panic!("DBSIZE of {p} answered {reply}"));
    let mut keys = strings(&reader.ask(&["ZANKV.ON", p, "KEYS", "*"]), p);
    keys.sort();
    (size, keys)
}

/// The partition of the cluster's only namespace, `default`, that `key` belongs to.
fn partition_name(key: &str, partitions: u32) -> String {
    format!("default-{}", partition_of(key.as_bytes(), partitions))
}

/// Every collection of `want` reads back exactly through the leaders (lists in order, sets
/// as sorted members, their lengths, deleted keys absent), and every running replica, read
/// with READONLY from its local state once converged, holds what its leader holds: the same
/// collections and, per partition, the same DBSIZE and the same keys.
fn must_hold_collections(cluster: &TestCluster, want: &Collections) {
    let leaders = cluster.must_converge(CONVERGE);
    let partitions = leaders.len() as u32;
    let mut smart = cluster.smart_client();
    let mut lead: HashMap<String, KeyState> = HashMap::new();
    for key in want.keys() {
        let got = key_state(&mut smart, key);
        assert_eq!(got, want.state(key), "{key} through the leader");
        lead.insert(key.clone(), got);
    }
    let lead_parts: HashMap<String, (i64, Vec<String>)> = leaders
        .keys()
        .map(|p| (p.clone(), partition_state(&mut smart, p)))
        .collect();
    for i in (0..cluster.len()).filter(|&i| cluster.is_up(i)) {
        // A replica not added to its group yet takes no part.
        let hosted: Vec<String> = cluster
            .replicas(i)
            .unwrap_or_else(|| panic!("node {} does not answer /status", i + 1))
            .into_iter()
            .filter(|r| r.role != "joining")
            .map(|r| r.name)
            .collect();
        if hosted.is_empty() {
            continue;
        }
        let mut conn = cluster.client(i);
        assert_eq!(conn.cmd(&[b"READONLY"]), Frame::simple("OK"));
        for p in &hosted {
            let on_leader = lead_parts
                .get(p)
                .unwrap_or_else(|| panic!("{p} has no leader"));
            let got = partition_state(&mut conn, p);
            assert_eq!(&got, on_leader, "DBSIZE and keys of {p} on node {}", i + 1);
        }
        for key in want
            .keys()
            .filter(|k| hosted.contains(&partition_name(k.as_str(), partitions)))
        {
            let got = key_state(&mut conn, key);
            assert_eq!(got, lead[key], "{key} on node {}", i + 1);
        }
    }
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
    let collections = must_build_collections(&mut client, 6, 3);
    for i in 0..cluster.len() {
        cluster.kill9(i);
    }
    for i in 0..cluster.len() {
        cluster.start(i);
    }
    must_hold(&cluster, &[ledger]);
    must_hold_collections(&cluster, &collections);
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
    // Collections first: the hashes written after them push the log past them, so the
    // snapshot the follower installs is what brings it every list and set.
    let mut collections = must_build_collections(&mut client, 20, 2);
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
    must_hold_collections(&cluster, &collections);
    // The installed snapshot is the replica's database now: it survives a restart, and the
    // replica keeps following, also changing the collections it restored.
    cluster.kill9(follower);
    cluster.start(follower);
    must_hold_collections(&cluster, &collections);
    for n in 600..650 {
        write_one(&mut client, &format!("s:{n}"), &mut ledger);
    }
    must_advance_collections(&mut client, &mut collections);
    must_hold(&cluster, &[ledger]);
    must_hold_collections(&cluster, &collections);
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
