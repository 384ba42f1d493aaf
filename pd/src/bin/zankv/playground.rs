//! `zankv playground`: a whole cluster on this machine, for trying zankv and for
//! development. It starts one PD, three storage nodes and one proxy on loopback (the
//! `zankv-pd`, `zankv-storage` and `zankv-proxy` binaries next to this one), keeps all their
//! data, generated configuration and logs under one directory, has PD create the default
//! namespace, waits until the proxy answers for every partition, prints where everything
//! is (with every process's pid), restarts a process that dies (unless `--no-restart`), and
//! stops everything on Ctrl-C or SIGTERM.
//!
//! It owns the cluster's layout; [`crate::supervise`] owns the child processes. Invariants:
//! - every port is derived from the proxy's port, which the data directory records
//!   (`playground.toml`), so running it again on the same directory finds the same
//!   cluster (storage nodes keep their addresses, which PD knows them by);
//! - nothing starts unless every port is free and the directory is writable;
//! - a process that dies before the cluster is up stops the playground (a restart would
//!   most likely die the same way); once it is up, one that dies is reported and started
//!   again with the same configuration, or left down with `--no-restart`, while the
//!   others keep serving;
//! - on every way out (signal, a start that does not become healthy or loses a process)
//!   the children are stopped, proxy first and PD last; they also get SIGTERM if this
//!   process itself is killed.

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::supervise::{Children, OnExit, Spec};

/// The proxy's RESP port when none is given or recorded.
pub const DEFAULT_PORT: u16 = 12379;
/// Storage nodes of the playground.
const STORAGE_NODES: u16 = 3;
/// How long the cluster gets to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(90);
/// How often the children are looked at: how soon a death is reported.
const SUPERVISE_EVERY: Duration = Duration::from_millis(200);
/// The file in the data directory that records the playground's settings.
const RECORD: &str = "playground.toml";

/// What `zankv playground` was asked for.
#[derive(clap::Args, Debug)]
pub struct PlaygroundArgs {
    /// Directory of all the playground's data, configuration and logs (created if needed;
    /// reused when it exists).
    #[arg(long, value_name = "DIR", default_value = "./zankv-data")]
    data_dir: PathBuf,
    /// The proxy's Redis port, which clients connect to. The other ports follow it: the
    /// proxy's HTTP port is PORT+1, PD's PORT+2, the proxy's address for Redis Cluster
    /// clients PORT+3, storage node N uses PORT+10N (RESP),
    /// PORT+10N+1 (HTTP) and PORT+10N+2 (raft). Default: the one the data directory
    /// recorded, else 12379.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Partitions of the default namespace (when the playground creates it).
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Replicas of each partition (1..=3).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=3))]
    replicas: u32,
    /// Leave a process that dies down (it is still reported) instead of starting it again
    /// with the same data, ports and arguments after a short pause.
    #[arg(long)]
    no_restart: bool,
}

/// The ports of the playground's processes, all derived from the proxy's.
#[derive(Debug, Clone, Copy)]
struct Ports {
    proxy: u16,
}

impl Ports {
    fn new(proxy: u16) -> Result<Ports, String> {
        if proxy == 0 || u32::from(proxy) + 10 * u32::from(STORAGE_NODES) + 2 > 65535 {
            return Err(format!(
                "--port {proxy}: the playground needs ports {proxy}..={} (the proxy's and the ones derived from it)",
                u32::from(proxy) + 10 * u32::from(STORAGE_NODES) + 2
            ));
        }
        Ok(Ports { proxy })
    }
    fn proxy_http(self) -> u16 {
        self.proxy + 1
    }
    fn pd(self) -> u16 {
        self.proxy + 2
    }
    fn proxy_cluster(self) -> u16 {
        self.proxy + 3
    }
    fn storage(self, node: u16) -> (u16, u16, u16) {
        let base = self.proxy + 10 * node;
        (base, base + 1, base + 2)
    }
    /// Every port with what it is for.
    fn all(self) -> Vec<(u16, String)> {
        let mut all = vec![
            (self.proxy, "the proxy's Redis port".to_string()),
            (self.proxy_http(), "the proxy's HTTP port".to_string()),
            (self.pd(), "PD's HTTP port".to_string()),
            (
                self.proxy_cluster(),
                "the proxy's port for cluster clients".to_string(),
            ),
        ];
        for n in 1..=STORAGE_NODES {
            let (redis, http, raft) = self.storage(n);
            all.push((redis, format!("storage node {n}'s Redis port")));
            all.push((http, format!("storage node {n}'s HTTP port")));
            all.push((raft, format!("storage node {n}'s raft port")));
        }
        all
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Runs the playground until a signal (then `Ok`, every process stopped) or a failure: a
/// start refused, a cluster that did not become healthy, a process that died while it
/// started.
pub async fn run(args: PlaygroundArgs) -> Result<String, String> {
    start_and_serve(args)
        .await
        .map(|()| "playground stopped".to_string())
        .map_err(|e| format!("playground: {e}"))
}

async fn start_and_serve(args: PlaygroundArgs) -> Result<(), String> {
    let (ports, logs, specs) = prepare(&args)?;
    let on_exit = if args.no_restart {
        OnExit::StayDown
    } else {
        OnExit::Restart
    };
    let mut children = Children::new(on_exit);
    for spec in specs {
        children.start(spec)?;
    }
    println!(
        "zankv: starting 1 PD, {STORAGE_NODES} storage nodes and a proxy (data in {}, logs in {})",
        args.data_dir.display(),
        logs.display()
    );
    let signal = zankv_process::wait_for_signal();
    tokio::pin!(signal);
    let up = until_up(&mut children, &mut signal, ports, &args).await?;
    if let Some(shape) = up {
        print_banner(&args.data_dir, ports, shape, &pids(&children, on_exit));
        supervise_until(&mut children, &mut signal).await;
    }
    println!("zankv: stopping");
    children.stop();
    Ok(())
}

/// Everything before the first process starts: checks the data directory and every
/// port, finds the binaries, writes the configurations and the port record. The ports,
/// the log directory and how to start each process.
fn prepare(args: &PlaygroundArgs) -> Result<(Ports, PathBuf, Vec<Spec>), String> {
    let dir = &args.data_dir;
    fs::create_dir_all(dir)
        .and_then(|_| fs::write(dir.join(".writable"), b""))
        .and_then(|_| fs::remove_file(dir.join(".writable")))
        .map_err(|e| format!("the data directory {} is not writable: {e}", dir.display()))?;
    let port = resolve_port(dir, args.port)?;
    let ports = Ports::new(port)?;
    for (p, what) in ports.all() {
        if let Err(e) = TcpListener::bind(addr(p)) {
            return Err(format!(
                "port {p} ({what}) on 127.0.0.1 is taken ({e}): stop what uses it (another playground?) or choose another --port"
            ));
        }
    }
    let bins = Binaries::find()?;
    let conf = dir.join("conf");
    let logs = dir.join("logs");
    for d in [&conf, &logs] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    write_configs(dir, ports)?;
    fs::write(dir.join(RECORD), format!("# written by `zankv playground`: the proxy's Redis port, which every other port follows\nport = {port}\n"))
        .map_err(|e| format!("cannot write {}: {e}", dir.join(RECORD).display()))?;
    let all = specs(&bins, &conf, &logs);
    Ok((ports, logs, all))
}

/// Waits until the cluster is healthy: its partitions and replicas per partition, or
/// `None` when a signal came first. A process that exits meanwhile, or a cluster not
/// healthy within [`START_DEADLINE`], is an error (with the logs' last lines).
async fn until_up(
    children: &mut Children,
    signal: &mut (impl std::future::Future<Output = ()> + Unpin),
    ports: Ports,
    args: &PlaygroundArgs,
) -> Result<Option<(usize, usize)>, String> {
    let ready = wait_until_healthy(ports, args);
    tokio::pin!(ready);
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = &mut *signal => return Ok(None),
            outcome = &mut ready => {
                return outcome
                    .map(Some)
                    .map_err(|e| format!("the cluster did not become healthy: {e}\n{}", children.log_tails()));
            }
            _ = tokio::time::sleep(SUPERVISE_EVERY) => {
                if let Some(report) = children.first_exit() {
                    return Err(format!("while the cluster was starting, {report}"));
                }
                if started.elapsed() > START_DEADLINE {
                    return Err(format!("the cluster did not become healthy within {START_DEADLINE:?}\n{}", children.log_tails()));
                }
            }
        }
    }
}

/// Looks after the children (see [`Children::supervise`]) until a signal comes.
async fn supervise_until(
    children: &mut Children,
    signal: &mut (impl std::future::Future<Output = ()> + Unpin),
) {
    loop {
        tokio::select! {
            _ = &mut *signal => return,
            _ = tokio::time::sleep(SUPERVISE_EVERY) => children.supervise(Instant::now()),
        }
    }
}

/// How to start each process, in start order (PD, the storage nodes, the proxy): each
/// reads its generated configuration file and appends to `logs/<name>.log`.
fn specs(bins: &Binaries, conf: &Path, logs: &Path) -> Vec<Spec> {
    let spec = |name: String, program: &Path, config: PathBuf| Spec {
        log: logs.join(format!("{name}.log")),
        name,
        program: program.to_path_buf(),
        args: vec![OsString::from("--config"), config.into_os_string()],
    };
    let mut all = vec![spec("pd".into(), &bins.pd, conf.join("pd.toml"))];
    for n in 1..=STORAGE_NODES {
        all.push(spec(
            format!("storage-{n}"),
            &bins.storage,
            conf.join(format!("storage-{n}.toml")),
        ));
    }
    all.push(spec("proxy".into(), &bins.proxy, conf.join("proxy.toml")));
    all
}

/// The proxy port: the one asked for, else the one the directory recorded, else the
/// default. A directory made with one port refuses another (its nodes are known by their
/// addresses).
fn resolve_port(dir: &Path, asked: Option<u16>) -> Result<u16, String> {
    let record = dir.join(RECORD);
    let recorded = match fs::read_to_string(&record) {
        Ok(text) => {
            let value: toml::Table = text
                .parse()
                .map_err(|e| format!("{} is not valid TOML: {e}", record.display()))?;
            let port = value
                .get("port")
                .and_then(|p| p.as_integer())
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("{} has no valid `port`", record.display()))?;
            Some(port)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", record.display())),
    };
    match (asked, recorded) {
        (Some(a), Some(r)) if a != r => Err(format!(
            "{} holds a playground made with --port {r}; run it with --port {r} (or without --port), or use another --data-dir",
            dir.display()
        )),
        (Some(p), _) | (None, Some(p)) => Ok(p),
        (None, None) => Ok(DEFAULT_PORT),
    }
}

/// The three server binaries, found next to this one.
struct Binaries {
    pd: PathBuf,
    storage: PathBuf,
    proxy: PathBuf,
}

impl Binaries {
    fn find() -> Result<Binaries, String> {
        let me = std::env::current_exe().map_err(|e| format!("cannot locate zankv: {e}"))?;
        let find = |name: &str| {
            let path = me.with_file_name(name);
            if path.is_file() {
                Ok(path)
            } else {
                Err(format!(
                    "{} is missing: build every binary (`cargo build --release --workspace`)",
                    path.display()
                ))
            }
        };
        Ok(Binaries {
            pd: find("zankv-pd")?,
            storage: find("zankv-storage")?,
            proxy: find("zankv-proxy")?,
        })
    }
}

/// A path as a TOML string.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Writes each process's configuration under `<dir>/conf` (rewritten at every start, from
/// the ports).
fn write_configs(dir: &Path, ports: Ports) -> Result<(), String> {
    let abs = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let header = "# Written by `zankv playground` at each start; edits are overwritten.\n# conf/*.toml in the source tree documents every key.\n";
    let pd = format!(
        "{header}data_dir = {}\nhttp_addr = \"{}\"\n",
        toml_path(&abs.join("pd")),
        addr(ports.pd())
    );
    let mut files = vec![("pd.toml".to_string(), pd)];
    for n in 1..=STORAGE_NODES {
        let (redis, http, raft) = ports.storage(n);
        files.push((
            format!("storage-{n}.toml"),
            format!(
                "{header}node_id = {n}\ndata_dir = {}\nredis_addr = \"{}\"\nhttp_addr = \"{}\"\nraft_addr = \"{}\"\npd_addrs = [\"{}\"]\n# Several nodes share this machine's cores and memory.\napply_threads = 1\n\n[rocksdb]\nblock_cache_mb = 64\nwrite_buffer_budget_mb = 64\n",
                toml_path(&abs.join(format!("storage-{n}"))),
                addr(redis),
                addr(http),
                addr(raft),
                addr(ports.pd()),
            ),
        ));
    }
    files.push((
        "proxy.toml".to_string(),
        format!(
            "{header}redis_addr = \"{}\"\nhttp_addr = \"{}\"\npd_addrs = [\"{}\"]\n# Redis Cluster clients (redis-py RedisCluster, redis-cli -c, ...) get CLUSTER SLOTS here.\ncluster_addr = \"{}\"\n",
            addr(ports.proxy),
            addr(ports.proxy_http()),
            addr(ports.pd()),
            addr(ports.proxy_cluster())
        ),
    ));
    for (name, text) in files {
        let path = dir.join("conf").join(name);
        fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// One HTTP call's body (2xx only).
async fn http(port: u16, method: &str, path: &str) -> Result<Vec<u8>, String> {
    let r =
        zankv_pd_api::client::call(addr(port), method, path, None, None, Duration::from_secs(5))
            .await?;
    if !(200..300).contains(&r.status) {
        return Err(format!(
            "{method} {path} answered {}: {}",
            r.status,
            r.message()
        ));
    }
    Ok(r.body.to_vec())
}

/// One HTTP call's JSON answer (2xx only).
async fn get_json(port: u16, method: &str, path: &str) -> Result<Value, String> {
    let body = http(port, method, path).await?;
    serde_json::from_slice(&body).map_err(|e| format!("{method} {path}: not JSON: {e}"))
}

/// Retries `check` every 200 ms until it answers `Ok`; its last error is what a caller
/// that gives up reports.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    let mut since = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(e) => {
                if since.elapsed() > Duration::from_secs(10) && e != last {
                    println!("zankv: waiting for {what}: {e}");
                    since = Instant::now();
                }
                last = e;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for PD, the storage nodes' registration, the default namespace (created when
/// missing) with a leader and every replica per partition, the proxy's table, and finally
/// a PING and a DBSIZE through the proxy (DBSIZE asks every partition's leader).
async fn wait_until_healthy(ports: Ports, args: &PlaygroundArgs) -> Result<(usize, usize), String> {
    until("PD", || http(ports.pd(), "GET", "/ping")).await;
    until("the storage nodes to register with PD", || async {
        let nodes = get_json(ports.pd(), "GET", "/datanodes").await?;
        let alive = nodes["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["alive"] == true).count());
        if alive >= usize::from(STORAGE_NODES) {
            Ok(())
        } else {
            Err(format!("{alive} of {STORAGE_NODES} registered"))
        }
    })
    .await;
    let catalog = until("PD's catalog", || get_json(ports.pd(), "GET", "/catalog")).await;
    let exists = catalog["namespaces"]
        .as_array()
        .is_some_and(|all| all.iter().any(|ns| ns["name"] == "default"));
    if !exists {
        get_json(
            ports.pd(),
            "POST",
            &format!(
                // Redis Cluster's hash tags, so keys that share a `{tag}` share a
                // partition and multi-key commands (RENAME, SMOVE, ZUNIONSTORE, ...) on
                // them work.
                "/cluster/namespace/create?namespace=default&partition_num={}&replicator={}&hash_tags=true",
                args.partitions, args.replicas
            ),
        )
        .await
        .map_err(|e| format!("creating the default namespace: {e}"))?;
        println!(
            "zankv: created namespace default: {} partitions x {} replicas",
            args.partitions, args.replicas
        );
    }
    let shape = until("every partition's replicas and leader", || async {
        let table = get_json(ports.pd(), "GET", "/query/default").await?;
        let replicas = table["replicator"].as_u64().unwrap_or(0) as usize;
        let parts = table["partitions"].as_object().ok_or("no partitions yet")?;
        let waiting = parts
            .values()
            .filter(|p| {
                p["leader"].is_null() || p["replicas"].as_array().map_or(0, Vec::len) < replicas
            })
            .count();
        if parts.is_empty() || waiting > 0 {
            Err(format!("{waiting} of {} partitions not ready", parts.len()))
        } else {
            Ok((parts.len(), replicas))
        }
    })
    .await;
    until("the proxy's routing table", || async {
        let routing = get_json(ports.proxy_http(), "GET", "/routing").await?;
        let known = routing["namespaces"].as_array().is_some_and(|all| {
            all.iter().any(|ns| {
                ns["namespace"] == "default"
                    && ns["leaders"]
                        .as_array()
                        .is_some_and(|l| !l.is_empty() && l.iter().all(Value::is_string))
            })
        });
        if known {
            Ok(())
        } else {
            Err("the proxy does not know every leader yet".to_string())
        }
    })
    .await;
    until("the proxy to answer", || async {
        let pong = resp_call(ports.proxy, "*1\r\n$4\r\nPING\r\n").await?;
        let size = resp_call(ports.proxy, "*1\r\n$6\r\nDBSIZE\r\n").await?;
        if pong == "+PONG" && size.starts_with(':') {
            Ok(())
        } else {
            Err(format!("PING answered {pong:?}, DBSIZE {size:?}"))
        }
    })
    .await;
    Ok(shape)
}

/// Sends one RESP request to the proxy and reads its one-line reply.
async fn resp_call(port: u16, request: &str) -> Result<String, String> {
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(addr(port)).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 512];
        while !reply.ends_with(b"\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&reply).trim_end().to_string())
    };
    tokio::time::timeout(Duration::from_secs(5), io)
        .await
        .map_err(|_| "no reply within 5 s".to_string())?
        .map_err(|e| e.to_string())
}

/// Where everything is; `pids` is [`pids`]'s text.
fn print_banner(dir: &Path, ports: Ports, (partitions, replicas): (usize, usize), pids: &str) {
    let storage: Vec<String> = (1..=STORAGE_NODES)
        .map(|n| format!("http://{}/metrics", addr(ports.storage(n).1)))
        .collect();
    println!(
        "zankv playground is up: 1 PD, {STORAGE_NODES} storage nodes, 1 proxy; namespace default: {partitions} partitions x {replicas} replicas
  connect:  redis-cli -p {} (cluster clients too: start them there, they are sent to port {})
  PD API:   http://{}   (e.g. `zankv --pd {} nodes`, `zankv --pd {} partitions default`)
  metrics:  proxy http://{}/metrics, PD http://{}/metrics,
            storage {}
  pids:     {pids}
  data:     {} (configs in conf/, logs in logs/)
  stop:     Ctrl-C (running it again reuses the data)",
        ports.proxy,
        ports.proxy_cluster(),
        addr(ports.pd()),
        addr(ports.pd()),
        addr(ports.pd()),
        addr(ports.proxy_http()),
        addr(ports.pd()),
        storage.join(", "),
        dir.display()
    );
}

/// Every process's pid on one line a user (or a test) can read (`pd 101, storage-1 102,
/// ..., proxy 105`), then what happens when one dies.
fn pids(children: &Children, on_exit: OnExit) -> String {
    let pids: Vec<String> = children
        .pids()
        .into_iter()
        .map(|(name, pid)| match pid {
            Some(pid) => format!("{name} {pid}"),
            None => format!("{name} down"),
        })
        .collect();
    let on_death = match on_exit {
        OnExit::Restart => {
            "kill -9 one to watch failover: it is reported and restarted with its data"
        }
        OnExit::StayDown => "--no-restart: a process that dies is reported and stays down",
    };
    format!("{}\n            ({on_death})", pids.join(", "))
}
