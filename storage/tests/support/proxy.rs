//! A `zankv-proxy` process on free loopback ports, and [`ProxiedCluster`]: one PD, three
//! PD-managed storage nodes, a namespace and a proxy in front, for end-to-end tests
//! through the proxy.
//!
//! The binary is the one cargo built beside `zankv-storage` (`cargo test --workspace`
//! builds it). Every process is killed when its handle drops.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cluster::TestCluster;
use super::pd::PdProcess;
use super::{file_tail, free_port, try_http, Client};

/// How long a cluster gets to elect leaders and the proxy to learn them.
const READY: Duration = Duration::from_secs(60);

/// A running proxy.
pub struct ProxyProcess {
    child: Option<Child>,
    /// Its RESP port.
    pub port: u16,
    /// Its HTTP port.
    pub http_port: u16,
    dir: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn proxy_bin() -> PathBuf {
    super::workspace_bin("zankv-proxy")
}

impl ProxyProcess {
    /// Starts a proxy following the PD members on `pd_ports`, its files under `dir`;
    /// `extra_toml` is appended to its config.
    pub fn must_start(dir: &Path, pd_ports: &[u16], extra_toml: &str) -> ProxyProcess {
        std::fs::create_dir_all(dir).expect("create proxy dir");
        let (port, http_port) = (free_port(), free_port());
        let pd: Vec<String> = pd_ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let conf = dir.join("proxy.toml");
        std::fs::write(
            &conf,
            format!(
                "redis_addr = \"127.0.0.1:{port}\"\nhttp_addr = \"127.0.0.1:{http_port}\"\npd_addrs = [{}]\n{extra_toml}",
                pd.join(", ")
            ),
        )
        .expect("write proxy config");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("proxy.log"))
            .expect("open proxy log");
        let child = Command::new(proxy_bin())
            .arg("--config")
            .arg(&conf)
            .env_remove("ZANKV_REQUIREPASS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start zankv-proxy");
        let proxy = ProxyProcess {
            child: Some(child),
            port,
            http_port,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Client::try_connect(port).is_none() {
            assert!(
                Instant::now() < deadline,
                "zankv-proxy did not start:\n{}",
                proxy.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.join("proxy.log"), 4000)
    }

    /// A client connected to it.
    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// Its routing tables (`GET /routing`).
    pub fn routing(&self) -> Value {
        try_http(self.http_port, "GET", "/routing")
            .ok()
            .and_then(|(_, body)| serde_json::from_str(&body).ok())
            .unwrap_or(Value::Null)
    }

    /// Its metrics text.
    pub fn metrics(&self) -> String {
        try_http(self.http_port, "GET", "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Waits until the proxy knows a leader for every one of `namespace`'s `partitions`.
    pub fn must_know_leaders(&self, namespace: &str, partitions: usize) {
        let deadline = Instant::now() + READY;
        loop {
            let routing = self.routing();
            let known = routing["namespaces"].as_array().is_some_and(|all| {
                all.iter().any(|ns| {
                    ns["namespace"] == namespace
                        && ns["leaders"].as_array().is_some_and(|l| {
                            l.len() == partitions && l.iter().all(Value::is_string)
                        })
                })
            });
            if known {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy did not learn {namespace}'s leaders within {READY:?}: {routing}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// PD, three storage nodes, the `default` namespace and a proxy.
pub struct ProxiedCluster {
    /// The proxy (dropped first).
    pub proxy: ProxyProcess,
    /// The storage nodes.
    pub nodes: TestCluster,
    /// PD's members (one without raft, or a raft group).
    pub pds: Vec<PdProcess>,
    _dir: tempfile::TempDir,
}

/// PD settings for these tests: quick scheduling rounds and failure detection.
const PD_TOML: &str = "check_interval_ms = 200\nheartbeat_timeout_ms = 2000\n";

impl ProxiedCluster {
    /// Starts one PD, three nodes, a `default` namespace of `partitions` × `replicas` and
    /// a proxy, and waits until the proxy knows every partition's leader.
    pub fn must_start(partitions: u32, replicas: u32, proxy_toml: &str) -> ProxiedCluster {
        ProxiedCluster::must_start_with_pd(1, partitions, replicas, proxy_toml)
    }

    /// Like [`ProxiedCluster::must_start`] with `pd_members` PD members (more than one: a
    /// raft group).
    pub fn must_start_with_pd(
        pd_members: usize,
        partitions: u32,
        replicas: u32,
        proxy_toml: &str,
    ) -> ProxiedCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let pds = if pd_members == 1 {
            vec![PdProcess::must_start(&dir.path().join("pd"), PD_TOML)]
        } else {
            PdProcess::must_start_group(dir.path(), pd_members, PD_TOML)
        };
        let ports: Vec<u16> = pds.iter().map(|p| p.port).collect();
        let nodes = TestCluster::must_start_managed_by(dir.path(), 3, &ports, "");
        let leader = ProxiedCluster::wait_for_pd_leader(&pds);
        pds[leader].wait_for("/datanodes", READY, "three storage nodes", |v| {
            v["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().filter(|x| x["alive"] == true).count() == 3)
        });
        let (status, body) = pds[leader].call(
            "POST",
            &format!(
                "/cluster/namespace/create?namespace=default&partition_num={partitions}&replicator={replicas}"
            ),
        );
        assert_eq!(status, 200, "{body}");
        let proxy = ProxyProcess::must_start(&dir.path().join("proxy"), &ports, proxy_toml);
        proxy.must_know_leaders("default", partitions as usize);
        ProxiedCluster {
            proxy,
            nodes,
            pds,
            _dir: dir,
        }
    }

    /// The index of the PD member that leads (a single PD leads), waiting for one.
    pub fn wait_for_pd_leader(pds: &[PdProcess]) -> usize {
        let deadline = Instant::now() + READY;
        loop {
            let leader = pds.iter().position(|pd| {
                pd.is_up()
                    && matches!(pd.try_call("GET", "/info"), Ok((200, v)) if v["leader"] == true)
            });
            if let Some(l) = leader {
                return l;
            }
            assert!(Instant::now() < deadline, "no PD leader within {READY:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
