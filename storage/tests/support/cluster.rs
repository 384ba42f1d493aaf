//! A static cluster of `zankv-storage` processes on loopback, for multi-process tests, and a
//! client that finds each partition's leader the way a smart client does: by following the
//! `ERR_CLUSTER_CHANGED` leader hints.
//!
//! Node `i` (0-based) has node id `i + 1`. Every node gets its own config file listing all
//! nodes and one namespace whose partitions are replicated on every node. Ports are chosen
//! free when the cluster is created and kept across restarts. Every process is killed when
//! the cluster drops.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_port, try_http, Client, Frame, ZankvNode};

/// The ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// Node id.
    pub id: u64,
    /// RESP.
    pub redis: u16,
    /// HTTP (status, metrics, admin).
    pub http: u16,
    /// Raft transport.
    pub raft: u16,
}

/// One partition replica as a node's `/status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    /// `<namespace>-<partition>`.
    pub name: String,
    /// Applied index of the state machine.
    pub applied: u64,
    /// Commit index known to the replica.
    pub commit: u64,
    /// `leader`, `follower` or `candidate`.
    pub role: String,
    /// Leader known to the replica (0 = none).
    pub leader: u64,
    /// Current term.
    pub term: u64,
    /// Voters.
    pub voters: Vec<u64>,
    /// Learners.
    pub learners: Vec<u64>,
    /// Keys stored.
    pub keys: u64,
}

/// A running (or partly stopped) cluster.
pub struct TestCluster {
    root: PathBuf,
    ports: Vec<NodePorts>,
    nodes: Vec<Option<ZankvNode>>,
}

impl TestCluster {
    /// Starts `n` nodes under `root` with one namespace `default` of `partitions`
    /// partitions, each replicated on every node. `extra_toml` is appended to every node's
    /// config (settings such as `[raft]`); it must not contain tables that precede the
    /// cluster's own `[[nodes]]`/`[[namespaces]]`, so put tables last.
    pub fn must_start(root: &Path, n: usize, partitions: u32, extra_toml: &str) -> TestCluster {
        let all: Vec<u64> = (1..=n as u64).collect();
        TestCluster::must_start_with(root, n, partitions, &all, extra_toml)
    }

    /// Like [`TestCluster::must_start`], with the partitions initially replicated on
    /// `replicas` (node ids) only; the other nodes start empty.
    pub fn must_start_with(
        root: &Path,
        n: usize,
        partitions: u32,
        replicas: &[u64],
        extra_toml: &str,
    ) -> TestCluster {
        let ports: Vec<NodePorts> = (0..n)
            .map(|i| NodePorts {
                id: i as u64 + 1,
                redis: free_port(),
                http: free_port(),
                raft: free_port(),
            })
            .collect();
        let mut cluster = TestCluster {
            root: root.to_path_buf(),
            ports,
            nodes: (0..n).map(|_| None).collect(),
        };
        let replicas: Vec<String> = replicas.iter().map(u64::to_string).collect();
        for i in 0..n {
            let p = cluster.ports[i];
            let mut toml = format!(
                "node_id = {}\nhttp_addr = \"127.0.0.1:{}\"\nraft_addr = \"127.0.0.1:{}\"\n",
                p.id, p.http, p.raft
            );
            for q in &cluster.ports {
                toml.push_str(&format!(
                    "[[nodes]]\nid = {}\nraft_addr = \"127.0.0.1:{}\"\nredis_addr = \"127.0.0.1:{}\"\n",
                    q.id, q.raft, q.redis
                ));
            }
            toml.push_str(&format!(
                "[[namespaces]]\nname = \"default\"\nid = 1\npartitions = {partitions}\nreplicas = [{}]\n",
                replicas.join(", ")
            ));
            toml.push_str(extra_toml);
            std::fs::write(cluster.config_path(i), toml).expect("write node config");
        }
        for i in 0..n {
            cluster.start(i);
        }
        cluster
    }

    /// Starts `n` nodes under `root` managed by the PD at HTTP port `pd_port`: no static
    /// namespaces or nodes, heartbeats every 200 ms. `extra_toml` is appended to every
    /// node's config.
    pub fn must_start_managed(
        root: &Path,
        n: usize,
        pd_port: u16,
        extra_toml: &str,
    ) -> TestCluster {
        TestCluster::must_start_managed_by(root, n, &[pd_port], extra_toml)
    }

    /// Like [`TestCluster::must_start_managed`], with every PD member's HTTP port.
    pub fn must_start_managed_by(
        root: &Path,
        n: usize,
        pd_ports: &[u16],
        extra_toml: &str,
    ) -> TestCluster {
        TestCluster::must_start_some_managed_by(root, n, n, pd_ports, extra_toml)
    }

    /// Like [`TestCluster::must_start_managed_by`], configuring `n` nodes but starting
    /// only the first `started` (the others join later with [`TestCluster::start`]).
    pub fn must_start_some_managed_by(
        root: &Path,
        n: usize,
        started: usize,
        pd_ports: &[u16],
        extra_toml: &str,
    ) -> TestCluster {
        let ports: Vec<NodePorts> = (0..n)
            .map(|i| NodePorts {
                id: i as u64 + 1,
                redis: free_port(),
                http: free_port(),
                raft: free_port(),
            })
            .collect();
        let mut cluster = TestCluster {
            root: root.to_path_buf(),
            ports,
            nodes: (0..n).map(|_| None).collect(),
        };
        let pd_addrs: Vec<String> = pd_ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let pd_addrs = pd_addrs.join(", ");
        for i in 0..n {
            let p = cluster.ports[i];
            let toml = format!(
                "node_id = {}\nhttp_addr = \"127.0.0.1:{}\"\nraft_addr = \"127.0.0.1:{}\"\npd_addrs = [{pd_addrs}]\nheartbeat_ms = 200\n{extra_toml}",
                p.id, p.http, p.raft
            );
            std::fs::write(cluster.config_path(i), toml).expect("write node config");
        }
        for i in 0..started {
            cluster.start(i);
        }
        cluster
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{}.toml", i + 1))
    }

    /// Node `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.root.join(format!("node{}", i + 1))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Ports of every node.
    pub fn ports(&self) -> Vec<NodePorts> {
        self.ports.clone()
    }

    /// Starts (or restarts) node `i` and waits until it answers PING.
    pub fn start(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {} is already running", i + 1);
        let node = ZankvNode::must_start_with_config(
            &self.data_dir(i),
            self.ports[i].redis,
            &self.config_path(i),
        );
        self.nodes[i] = Some(node);
    }

    /// SIGKILL node `i`.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].take().expect("node is running").kill9();
    }

    /// Whether node `i` runs.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// Node `i`'s log tail.
    pub fn log_tail(&self, i: usize) -> String {
        self.nodes[i]
            .as_ref()
            .map_or_else(|| "(not running)".into(), |n| n.log_tail())
    }

    /// A plain RESP client of node `i`.
    pub fn client(&self, i: usize) -> Client {
        Client::connect(self.ports[i].redis)
    }

    /// A client that follows leader hints across the whole cluster.
    pub fn smart_client(&self) -> ClusterClient {
        ClusterClient::new(self.ports.clone())
    }

    /// An HTTP call to node `i`; panics if it cannot be made.
    pub fn http(&self, i: usize, method: &str, path: &str) -> (u16, Value) {
        let (code, body) = try_http(self.ports[i].http, method, path)
            .unwrap_or_else(|e| panic!("{method} {path} on node {}: {e}", i + 1));
        let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (code, json)
    }

    /// Node `i`'s `/status`, or `None` if it does not answer.
    pub fn status(&self, i: usize) -> Option<Value> {
        let (code, body) = try_http(self.ports[i].http, "GET", "/status").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).expect("status is JSON"))
    }

    /// The node leading the most partitions now (the first such, counting a node that
    /// does not answer as leading none).
    pub fn busiest_leader(&self) -> usize {
        let leads = |n: usize| {
            self.replicas(n)
                .unwrap_or_default()
                .iter()
                .filter(|r| r.role == "leader")
                .count()
        };
        (0..self.len())
            .max_by_key(|&n| leads(n))
            .expect("a cluster has nodes")
    }

    /// The replicas node `i` hosts, or `None` if it does not answer.
    pub fn replicas(&self, i: usize) -> Option<Vec<ReplicaView>> {
        let status = self.status(i)?;
        let ids = |v: &Value| -> Vec<u64> {
            v.as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default()
        };
        let parts = status["partitions"].as_array()?;
        Some(
            parts
                .iter()
                .map(|p| {
                    let raft = &p["raft"];
                    ReplicaView {
                        name: p["name"].as_str().unwrap_or_default().to_string(),
                        applied: p["applied_index"].as_u64().unwrap_or(0),
                        commit: raft["commit"].as_u64().unwrap_or(0),
                        role: raft["role"].as_str().unwrap_or_default().to_string(),
                        leader: raft["leader"].as_u64().unwrap_or(0),
                        term: raft["term"].as_u64().unwrap_or(0),
                        voters: ids(&raft["voters"]),
                        learners: ids(&raft["learners"]),
                        keys: p["keys"].as_u64().unwrap_or(0),
                    }
                })
                .collect(),
        )
    }

    /// Waits until every partition hosted by the running nodes has one leader that every
    /// running replica of it agrees on, and every running replica has applied everything
    /// the leader committed. Returns partition name → leader node id. Panics after
    /// `timeout`, showing the last status of every node.
    pub fn must_converge(&self, timeout: Duration) -> HashMap<String, u64> {
        self.must_settle(timeout, true)
    }

    /// Waits until every partition has one leader that every running replica agrees on
    /// (whatever they applied: under write load they never all show the same index).
    pub fn must_agree_on_leaders(&self, timeout: Duration) -> HashMap<String, u64> {
        self.must_settle(timeout, false)
    }

    fn must_settle(&self, timeout: Duration, applied: bool) -> HashMap<String, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let views: Vec<(usize, Vec<ReplicaView>)> = (0..self.len())
                .filter(|&i| self.is_up(i))
                .filter_map(|i| Some((i, self.replicas(i)?)))
                .collect();
            let up = (0..self.len()).filter(|&i| self.is_up(i)).count();
            if views.len() == up {
                if let Some(leaders) = converged(&views, applied) {
                    return leaders;
                }
            }
            if Instant::now() > deadline {
                let shown: Vec<String> = views
                    .iter()
                    .map(|(i, v)| format!("node {}: {v:?}", i + 1))
                    .collect();
                panic!(
                    "cluster did not converge within {timeout:?}:\n{}",
                    shown.join("\n")
                );
            }
            sleep(Duration::from_millis(50));
        }
    }
}

/// Partition → leader if every partition has one agreed leader (running, and leading) and,
/// with `applied`, all replicas applied the leader's commit index.
fn converged(views: &[(usize, Vec<ReplicaView>)], applied: bool) -> Option<HashMap<String, u64>> {
    let mut by_name: HashMap<&str, Vec<(usize, &ReplicaView)>> = HashMap::new();
    for (i, replicas) in views {
        // A replica hosted but not added to its group yet takes no part.
        for r in replicas.iter().filter(|r| r.role != "joining") {
            by_name.entry(&r.name).or_default().push((*i, r));
        }
    }
    let mut leaders = HashMap::new();
    for (name, replicas) in by_name {
        let leader = replicas[0].1.leader;
        if leader == 0 || replicas.iter().any(|(_, r)| r.leader != leader) {
            return None;
        }
        let (_, lead) = replicas.iter().find(|(i, _)| *i as u64 + 1 == leader)?;
        if lead.role != "leader" {
            return None;
        }
        if applied
            && replicas
                .iter()
                .any(|(_, r)| r.applied < lead.commit || r.commit < lead.commit)
        {
            return None;
        }
        leaders.insert(name.to_string(), leader);
    }
    Some(leaders)
}

/// What a write through [`ClusterClient`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The leader answered (a reply, possibly a Redis error of the command itself).
    Done(Frame),
    /// No answer could tell whether the write was applied: the connection died after the
    /// request was sent, or the node answered TIMEOUT.
    Unknown,
}

/// A client that keeps one connection per node and sends each command to the node it
/// last learned leads, following `ERR_CLUSTER_CHANGED` hints, retrying only what is safe
/// to retry (refusals that say the command was not applied, and failed connects).
pub struct ClusterClient {
    ports: Vec<NodePorts>,
    conns: HashMap<u16, Client>,
    /// Round-robin position for when no leader is known.
    next: usize,
    /// The node that answered last or that the last hint named.
    preferred: Option<u16>,
    /// Give up retrying after this long.
    pub patience: Duration,
}

impl ClusterClient {
    fn new(ports: Vec<NodePorts>) -> ClusterClient {
        ClusterClient {
            ports,
            conns: HashMap::new(),
            next: 0,
            preferred: None,
            patience: Duration::from_secs(20),
        }
    }

    fn pick(&mut self) -> u16 {
        if let Some(p) = self.preferred {
            return p;
        }
        self.next = (self.next + 1) % self.ports.len();
        self.ports[self.next].redis
    }

    fn conn(&mut self, port: u16) -> Option<&mut Client> {
        match self.conns.entry(port) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(e) => {
                let mut c = Client::try_connect(port)?;
                c.set_read_timeout(Duration::from_secs(15));
                Some(e.insert(c))
            }
        }
    }

    /// The RESP port named by a leader hint, if any.
    fn hint(text: &str) -> Option<u16> {
        let at = text.split(" at 127.0.0.1:").nth(1)?;
        at.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .ok()
    }

    /// Sends a command until a node that can serve it answers. `Unknown` when a write's
    /// outcome cannot be known (then it is not retried).
    pub fn write(&mut self, args: &[&[u8]]) -> WriteOutcome {
        self.send(args, false)
    }

    /// Sends a read (retried on any failure) and returns the leader's reply.
    pub fn read(&mut self, args: &[&[u8]]) -> Frame {
        match self.send(args, true) {
            WriteOutcome::Done(f) => f,
            WriteOutcome::Unknown => unreachable!("reads are retried"),
        }
    }

    fn send(&mut self, args: &[&[u8]], retry_unknown: bool) -> WriteOutcome {
        let deadline = Instant::now() + self.patience;
        loop {
            assert!(
                Instant::now() < deadline,
                "no node served {:?} within {:?}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>(),
                self.patience
            );
            let port = self.pick();
            let Some(conn) = self.conn(port) else {
                // Nothing listens there (a killed node): certainly not sent.
                self.preferred = None;
                sleep(Duration::from_millis(20));
                continue;
            };
            let reply = conn.try_cmd(args);
            match reply {
                None => {
                    self.conns.remove(&port);
                    self.preferred = None;
                    if !retry_unknown {
                        return WriteOutcome::Unknown;
                    }
                }
                Some(Frame::Error(e)) if e.starts_with(b"ERR_CLUSTER_CHANGED") => {
                    // Refused without being applied: safe to send again.
                    let text = String::from_utf8_lossy(&e).into_owned();
                    self.preferred = ClusterClient::hint(&text);
                    if self.preferred.is_none() {
                        sleep(Duration::from_millis(20));
                    }
                }
                Some(Frame::Error(e)) if e.starts_with(b"TIMEOUT") && !retry_unknown => {
                    return WriteOutcome::Unknown;
                }
                Some(Frame::Error(e)) if e.starts_with(b"TIMEOUT") => {}
                Some(frame) => {
                    self.preferred = Some(port);
                    return WriteOutcome::Done(frame);
                }
            }
        }
    }
}
