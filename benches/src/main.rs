//! `zankv-load`: a closed-loop load generator for Redis-protocol servers and etcd.
//!
//! `--clients` connections each send one command (or a pipeline of `--pipeline`
//! commands), wait for the reply, and send the next, for `--seconds` (after `--warmup`
//! seconds that are not counted). Keys `<key-prefix><n>` are drawn at random from
//! `--keyspace` keys. `--op fill` instead writes every key of the keyspace once, in
//! batches of `--batch` keys (MSET, or an etcd Txn of puts), and reports how fast.
//!
//! - RESP (`--protocol resp`): redis-server or a zankv proxy (one address), or every
//!   node of a zankv cluster with the namespace's `--partitions`: each key then goes to
//!   the node that last said it leads the key's partition ([`resp`]).
//! - etcd (`--protocol etcd`): v3 gRPC `Put` and linearizable `Range` ([`etcd`]); client
//!   i talks to member i mod n of `--addrs`, as etcd's client balances endpoints.
//! - `--wait N` (RESP, a write): each write, or pipeline of writes, is followed by
//!   `WAIT N 1000`, so redis-server answers only once N of its replicas have the writes; a
//!   WAIT that reports fewer counts the writes it followed as errors.
//! - `--op lpush|rpop|lrange|sadd|sismember|hset|zadd|zrange|zrangebyscore` (RESP): the
//!   collection operations, on keys drawn as above and members `m<n>` below `--members`.
//! - `--op publish --subscribers N` (RESP): PUBLISH of a `--value-size` message to a
//!   channel drawn as a key, while N more connections (spread over `--subscriber-addrs`,
//!   or `--addrs`) subscribe to every channel of the keyspace and count what they receive
//!   (`delivered` in the report, during the measured time).
//!
//! Prints one JSON line on stdout: label, protocol, op, clients, pipeline, ops, seconds,
//! ops_per_sec, p50_ms, p99_ms, max_ms (per operation: every command of a pipeline gets
//! the pipeline's latency), errors, redirects, all_ops (with the warm-up) and cpu_s (CPU
//! seconds during the measured time of each `--watch NAME=PID` process).

mod cpu;
mod etcd;
mod resp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use redis_protocol::resp2::types::BytesFrame;
use zankv_commands::partitioning::partition_of;

use etcd::EtcdConn;
use resp::{encode, hinted_leader, RespConn};

/// Which operation the clients run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// SET key value (etcd: Put)
    Set,
    /// GET key (etcd: Range of the key)
    Get,
    /// Write every key of the keyspace once, in batches (MSET; etcd: Txn of puts).
    Fill,
    /// LPUSH key value (RESP only, as are the collection operations below; a member or
    /// field is `m<n>` with n below `--members`, a score a random integer below it).
    Lpush,
    /// RPOP key
    Rpop,
    /// SADD key member
    Sadd,
    /// SISMEMBER key member
    Sismember,
    /// HSET key field value
    Hset,
    /// ZADD key score member
    Zadd,
    /// ZRANGE key 0 9
    Zrange,
    /// ZRANGEBYSCORE key -inf +inf LIMIT 0 10
    Zrangebyscore,
    /// LRANGE key 0 9
    Lrange,
    /// PUBLISH channel message (the channel drawn as a key)
    Publish,
    /// PFADD key member
    Pfadd,
    /// PFCOUNT key
    Pfcount,
    /// GEOADD key longitude latitude member (a position within about 10 km of 13.5, 38.5)
    Geoadd,
    /// GEOSEARCH key FROMLONLAT 13.5 38.5 BYRADIUS 5 km ASC COUNT 10
    Geosearch,
}

impl Op {
    /// Whether the operation changes data (so `--wait` may follow it).
    fn writes(self) -> bool {
        matches!(
            self,
            Op::Set
                | Op::Fill
                | Op::Lpush
                | Op::Rpop
                | Op::Sadd
                | Op::Hset
                | Op::Zadd
                | Op::Pfadd
                | Op::Geoadd
        )
    }

    /// Appends this operation on `key` to `request` (a random member, field or score
    /// below `members` where it takes one).
    fn encode(
        self,
        request: &mut Vec<u8>,
        key: &[u8],
        value: &[u8],
        members: u64,
        rng: &mut fastrand::Rng,
    ) {
        let member = format!("m{}", rng.u64(0..members));
        let m = member.as_bytes();
        match self {
            Op::Set => encode(request, &[b"SET", key, value]),
            Op::Get | Op::Fill => encode(request, &[b"GET", key]),
            Op::Lpush => encode(request, &[b"LPUSH", key, value]),
            Op::Rpop => encode(request, &[b"RPOP", key]),
            Op::Sadd => encode(request, &[b"SADD", key, m]),
            Op::Sismember => encode(request, &[b"SISMEMBER", key, m]),
            Op::Hset => encode(request, &[b"HSET", key, m, value]),
            Op::Zadd => {
                let score = rng.u64(0..members).to_string();
                encode(request, &[b"ZADD", key, score.as_bytes(), m])
            }
            Op::Zrange => encode(request, &[b"ZRANGE", key, b"0", b"9"]),
            Op::Lrange => encode(request, &[b"LRANGE", key, b"0", b"9"]),
            Op::Publish => encode(request, &[b"PUBLISH", key, value]),
            Op::Pfadd => encode(request, &[b"PFADD", key, m]),
            Op::Pfcount => encode(request, &[b"PFCOUNT", key]),
            Op::Geoadd => {
                let long = format!("{:.6}", 13.5 + (rng.f64() - 0.5) * 0.2);
                let lat = format!("{:.6}", 38.5 + (rng.f64() - 0.5) * 0.2);
                encode(
                    request,
                    &[b"GEOADD", key, long.as_bytes(), lat.as_bytes(), m],
                )
            }
            Op::Geosearch => encode(
                request,
                &[
                    b"GEOSEARCH",
                    key,
                    b"FROMLONLAT",
                    b"13.5",
                    b"38.5",
                    b"BYRADIUS",
                    b"5",
                    b"km",
                    b"ASC",
                    b"COUNT",
                    b"10",
                ],
            ),
            Op::Zrangebyscore => encode(
                request,
                &[
                    b"ZRANGEBYSCORE",
                    key,
                    b"-inf",
                    b"+inf",
                    b"LIMIT",
                    b"0",
                    b"10",
                ],
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Redis's protocol (redis-server, a zankv proxy or storage nodes).
    Resp,
    /// etcd's v3 gRPC API.
    Etcd,
}

/// Drives Redis-protocol servers or etcd with concurrent clients and reports throughput,
/// latency and the CPU time of the servers.
#[derive(Parser, Debug)]
#[command(name = "zankv-load")]
struct Args {
    /// Server addresses: one redis-server or proxy, every node of a zankv cluster, or the
    /// client addresses of etcd's members.
    #[arg(long, value_delimiter = ',', required = true)]
    addrs: Vec<SocketAddr>,
    /// The protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Resp)]
    protocol: Protocol,
    /// Concurrent clients (connections), each with one request or pipeline in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The operation.
    #[arg(long, value_enum, default_value_t = Op::Set)]
    op: Op,
    /// Value size in bytes (SET, fill).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Distinct keys drawn from (or written, by fill).
    #[arg(long, default_value_t = 1_000_000)]
    keyspace: u64,
    /// Keys are this followed by a number (e.g. `ns:key:` for a namespace's keys).
    #[arg(long, default_value = "key:")]
    key_prefix: String,
    /// Partitions of the namespace the keys belong to, for routing to storage nodes.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Commands per pipeline (RESP, one address).
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Replicas that must acknowledge each SET (or pipeline of SETs): `WAIT N 1000` follows
    /// it (RESP to one redis-server; 0 = no WAIT).
    #[arg(long, default_value_t = 0)]
    wait: u32,
    /// Keys per batch of fill.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Distinct members, fields and scores of the collection operations.
    #[arg(long, default_value_t = 1000)]
    members: u64,
    /// Threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A process whose CPU time to report, as NAME=PID (repeatable).
    #[arg(long, value_parser = parse_watch)]
    watch: Vec<(String, u32)>,
    /// A name for this run, copied into the report.
    #[arg(long, default_value = "")]
    label: String,
    /// Connections that subscribe to every channel of the keyspace (`--op publish`).
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// Where the subscribers connect, in turn (default: `--addrs`).
    #[arg(long, value_delimiter = ',')]
    subscriber_addrs: Vec<SocketAddr>,
}

fn parse_watch(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid.parse().map_err(|_| format!("{pid:?} is not a pid"))?;
    Ok((name.to_string(), pid))
}

/// What the clients share.
struct Shared {
    /// Per partition: index into `addrs` of its believed leader (`usize::MAX` = unknown).
    leaders: Vec<AtomicUsize>,
    value: Bytes,
    args: Args,
}

impl Shared {
    fn key(&self, n: u64) -> String {
        format!("{}{n}", self.args.key_prefix)
    }
}

/// One client's measurements.
#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    /// Operations answered during the warm-up.
    warmup_ops: u64,
    errors: u64,
    redirects: u64,
}

impl ClientResult {
    /// Counts `ops` operations sent together at `started`, answered now (`ok`) or not.
    fn record(&mut self, measure_from: Instant, started: Instant, ops: usize, ok: bool) {
        if started < measure_from {
            self.warmup_ops += if ok { ops as u64 } else { 0 };
        } else if ok {
            let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            self.latencies_us.extend(std::iter::repeat_n(us, ops));
        } else {
            self.errors += ops as u64;
        }
    }
}

/// A RESP client: one command at a time to the partition's believed leader, or a
/// pipeline to the one address.
async fn resp_client(
    shared: Arc<Shared>,
    measure_from: Instant,
    stop: Arc<AtomicBool>,
) -> ClientResult {
    let args = &shared.args;
    let mut result = ClientResult::default();
    let mut conns: Vec<Option<RespConn>> = (0..args.addrs.len()).map(|_| None).collect();
    let mut rng = fastrand::Rng::new();
    let mut request = Vec::with_capacity((shared.value.len() + 64) * args.pipeline);
    let mut replies = Vec::with_capacity(args.pipeline + 1);
    let wait = (args.wait > 0).then(|| args.wait.to_string());
    let expected = args.pipeline + usize::from(wait.is_some());
    while !stop.load(Ordering::Relaxed) {
        request.clear();
        let mut partition = 0;
        for _ in 0..args.pipeline {
            let key = shared.key(rng.u64(0..args.keyspace));
            partition = partition_of(key.as_bytes(), args.partitions) as usize;
            args.op.encode(
                &mut request,
                key.as_bytes(),
                &shared.value,
                args.members,
                &mut rng,
            );
        }
        if let Some(wait) = &wait {
            encode(&mut request, &[b"WAIT", wait.as_bytes(), WAIT_TIMEOUT_MS]);
        }
        let started = Instant::now();
        let mut attempts = 0;
        let ok = loop {
            attempts += 1;
            if attempts > 20 {
                break false;
            }
            let believed = shared.leaders[partition].load(Ordering::Relaxed);
            let node = if believed < args.addrs.len() {
                believed
            } else {
                rng.usize(0..args.addrs.len())
            };
            if conns[node].is_none() {
                match RespConn::connect(args.addrs[node]).await {
                    Ok(c) => conns[node] = Some(c),
                    Err(_) => {
                        shared.leaders[partition].store(usize::MAX, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            let conn = conns[node].as_mut().expect("connected above");
            if conn.call(&request, expected, &mut replies).await.is_err() {
                conns[node] = None;
                break false;
            }
            match replies.as_slice() {
                // One command to a node that does not lead its partition: follow the hint.
                [BytesFrame::Error(e)] if e.starts_with("ERR_CLUSTER_CHANGED") => {
                    result.redirects += 1;
                    let leader = hinted_leader(e.as_bytes(), &args.addrs).unwrap_or(usize::MAX);
                    shared.leaders[partition].store(leader, Ordering::Relaxed);
                    if leader == usize::MAX {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                all if all.iter().any(|r| matches!(r, BytesFrame::Error(_))) => break false,
                all if wait.is_some() && replicas_short(all, args.wait) => break false,
                _ => {
                    shared.leaders[partition].store(node, Ordering::Relaxed);
                    break true;
                }
            }
        };
        result.record(measure_from, started, args.pipeline, ok);
    }
    result
}

/// An etcd client: one call at a time to its member.
async fn etcd_client(
    shared: Arc<Shared>,
    index: usize,
    measure_from: Instant,
    stop: Arc<AtomicBool>,
) -> ClientResult {
    let args = &shared.args;
    let addr = args.addrs[index % args.addrs.len()];
    let mut result = ClientResult::default();
    let mut rng = fastrand::Rng::new();
    let mut conn: Option<EtcdConn> = None;
    while !stop.load(Ordering::Relaxed) {
        let key = shared.key(rng.u64(0..args.keyspace));
        let started = Instant::now();
        if conn.is_none() {
            match EtcdConn::connect(addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    result.record(measure_from, started, 1, false);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let outcome = match args.op {
            Op::Set => c.put(key.as_bytes(), &shared.value).await,
            _ => c.get(key.as_bytes()).await,
        };
        if outcome.is_err() {
            conn = None;
        }
        result.record(measure_from, started, 1, outcome.is_ok());
    }
    result
}

/// Fill: client `index` of `clients` writes batches index, index + clients, ... of the
/// keyspace.
async fn fill_client(shared: Arc<Shared>, index: usize) -> ClientResult {
    let args = &shared.args;
    let mut result = ClientResult::default();
    let batches = args.keyspace.div_ceil(args.batch as u64);
    let addr = args.addrs[index % args.addrs.len()];
    let mut resp_conn = None;
    let mut etcd_conn = None;
    let mut request = Vec::new();
    let mut replies = Vec::new();
    let from = Instant::now();
    for b in (index as u64..batches).step_by(args.clients) {
        let keys: Vec<String> = (b * args.batch as u64
            ..((b + 1) * args.batch as u64).min(args.keyspace))
            .map(|n| shared.key(n))
            .collect();
        let started = Instant::now();
        let ok = match args.protocol {
            Protocol::Resp => {
                if resp_conn.is_none() {
                    resp_conn = RespConn::connect(addr).await.ok();
                }
                request.clear();
                let mut argv: Vec<&[u8]> = vec![b"MSET"];
                for k in &keys {
                    argv.push(k.as_bytes());
                    argv.push(&shared.value);
                }
                encode(&mut request, &argv);
                match resp_conn.as_mut() {
                    Some(c) => {
                        c.call(&request, 1, &mut replies).await.is_ok()
                            && !matches!(replies.first(), Some(BytesFrame::Error(_)))
                    }
                    None => false,
                }
            }
            Protocol::Etcd => {
                if etcd_conn.is_none() {
                    etcd_conn = EtcdConn::connect(addr).await.ok();
                }
                let pairs: Vec<(Vec<u8>, &[u8])> = keys
                    .iter()
                    .map(|k| (k.clone().into_bytes(), &shared.value[..]))
                    .collect();
                match etcd_conn.as_mut() {
                    Some(c) => c.put_all(&pairs).await.is_ok(),
                    None => false,
                }
            }
        };
        if !ok {
            resp_conn = None;
            etcd_conn = None;
        }
        result.record(from, started, keys.len(), ok);
    }
    result
}

/// A subscriber to every channel of the keyspace at `addr`: reports once subscribed, then
/// counts the messages it receives while `counting`, until `stop`.
async fn subscriber(
    shared: Arc<Shared>,
    addr: SocketAddr,
    ready: tokio::sync::mpsc::Sender<()>,
    counting: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let args = &shared.args;
    let Ok(mut conn) = RespConn::connect(addr).await else {
        return 0;
    };
    let channels: Vec<String> = (0..args.keyspace).map(|n| shared.key(n)).collect();
    let mut request = Vec::new();
    let mut argv: Vec<&[u8]> = vec![b"SUBSCRIBE"];
    argv.extend(channels.iter().map(|c| c.as_bytes()));
    encode(&mut request, &argv);
    let mut replies = Vec::new();
    if conn
        .call(&request, channels.len(), &mut replies)
        .await
        .is_err()
    {
        return 0;
    }
    let _ = ready.send(()).await;
    let mut delivered = 0;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(100), conn.call(&[], 1, &mut replies))
            .await
        {
            Ok(Ok(())) => delivered += u64::from(counting.load(Ordering::Relaxed)),
            Ok(Err(_)) => break,
            Err(_) => {}
        }
    }
    delivered
}

/// How long a `WAIT` waits for the replicas, in milliseconds.
const WAIT_TIMEOUT_MS: &[u8] = b"1000";

/// Whether the replies of a pipeline that ended in `WAIT want ...` show that fewer than
/// `want` replicas had its writes in time (or carry no WAIT answer at all).
fn replicas_short(replies: &[BytesFrame], want: u32) -> bool {
    !matches!(replies.last(), Some(BytesFrame::Integer(n)) if *n >= i64::from(want))
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// CPU seconds of every watched process now.
fn cpu_now(watch: &[(String, u32)]) -> Vec<Option<f64>> {
    watch
        .iter()
        .map(|(_, pid)| cpu::cpu_seconds(*pid))
        .collect()
}

fn main() {
    let args = Args::parse();
    if args.clients == 0
        || args.partitions == 0
        || args.keyspace == 0
        || args.pipeline == 0
        || args.batch == 0
    {
        eprintln!("zankv-load: --clients, --partitions, --keyspace, --pipeline and --batch must be positive");
        std::process::exit(2);
    }
    if args.pipeline > 1 && (args.addrs.len() > 1 || args.protocol == Protocol::Etcd) {
        eprintln!("zankv-load: --pipeline needs the RESP protocol and one address");
        std::process::exit(2);
    }
    if args.wait > 0
        && (!args.op.writes() || args.protocol != Protocol::Resp || args.addrs.len() > 1)
    {
        eprintln!("zankv-load: --wait needs a writing --op, the RESP protocol and one address");
        std::process::exit(2);
    }
    if !matches!(args.op, Op::Set | Op::Get | Op::Fill) && args.protocol != Protocol::Resp {
        eprintln!("zankv-load: the collection operations need the RESP protocol");
        std::process::exit(2);
    }
    if args.op == Op::Fill && args.protocol == Protocol::Resp && args.addrs.len() > 1 {
        eprintln!("zankv-load: fill over RESP needs one address (redis-server or a proxy)");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("the runtime starts");
    let shared = Arc::new(Shared {
        leaders: (0..args.partitions)
            .map(|_| AtomicUsize::new(usize::MAX))
            .collect(),
        value: Bytes::from(vec![b'x'; args.value_size]),
        args,
    });
    let args = &shared.args;
    let fill = args.op == Op::Fill;
    let warmup = if fill {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(args.warmup)
    };
    let (results, cpu, seconds, delivered) = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        // Subscribers first, every one subscribed before the load starts.
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(args.subscribers.max(1));
        let sub_addrs = if args.subscriber_addrs.is_empty() {
            &args.addrs
        } else {
            &args.subscriber_addrs
        };
        let counting = Arc::new(AtomicBool::new(false));
        let subscribers: Vec<_> = (0..args.subscribers)
            .map(|i| {
                let addr = sub_addrs[i % sub_addrs.len()];
                let (shared, stop) = (shared.clone(), stop.clone());
                let (ready, counting) = (ready_tx.clone(), counting.clone());
                tokio::spawn(subscriber(shared, addr, ready, counting, stop))
            })
            .collect();
        drop(ready_tx);
        for _ in 0..args.subscribers {
            if ready.recv().await.is_none() {
                break;
            }
        }
        let measure_from = Instant::now() + warmup;
        let tasks: Vec<_> = (0..args.clients)
            .map(|i| {
                let shared = shared.clone();
                let stop = stop.clone();
                match (fill, args.protocol) {
                    (true, _) => tokio::spawn(fill_client(shared, i)),
                    (false, Protocol::Resp) => {
                        tokio::spawn(resp_client(shared, measure_from, stop))
                    }
                    (false, Protocol::Etcd) => {
                        tokio::spawn(etcd_client(shared, i, measure_from, stop))
                    }
                }
            })
            .collect();
        tokio::time::sleep(warmup).await;
        let cpu_before = cpu_now(&args.watch);
        let started = Instant::now();
        counting.store(true, Ordering::Relaxed);
        if !fill {
            tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
            counting.store(false, Ordering::Relaxed);
            stop.store(true, Ordering::Relaxed);
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("a client task panicked"));
        }
        let seconds = if fill {
            started.elapsed().as_secs_f64()
        } else {
            args.seconds
        };
        let cpu_after = cpu_now(&args.watch);
        let mut delivered = 0;
        for s in subscribers {
            delivered += s.await.expect("a subscriber task panicked");
        }
        let cpu: serde_json::Map<String, serde_json::Value> = args
            .watch
            .iter()
            .zip(cpu_before.iter().zip(&cpu_after))
            .map(|((name, _), (b, a))| {
                let used = match (b, a) {
                    (Some(b), Some(a)) => serde_json::json!(((a - b) * 1000.0).round() / 1000.0),
                    _ => serde_json::Value::Null,
                };
                (name.clone(), used)
            })
            .collect();
        (out, cpu, seconds, delivered)
    });
    let mut latencies: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let redirects: u64 = results.iter().map(|r| r.redirects).sum();
    let warmup_ops: u64 = results.iter().map(|r| r.warmup_ops).sum();
    let report = serde_json::json!({
        "label": args.label,
        "protocol": format!("{:?}", args.protocol).to_lowercase(),
        "op": format!("{:?}", args.op).to_lowercase(),
        "clients": args.clients,
        "pipeline": args.pipeline,
        "ops": ops,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "ops_per_sec": (ops as f64 / seconds).round(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": percentile(&latencies, 1.0),
        "errors": errors,
        "redirects": redirects,
        "all_ops": ops + warmup_ops,
        "cpu_s": cpu,
        "subscribers": args.subscribers,
        "delivered": delivered,
    });
    println!("{report}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_answer_below_the_replicas_asked_for_fails_the_writes() {
        let ok = BytesFrame::SimpleString(Bytes::from_static(b"OK"));
        assert!(!replicas_short(&[ok.clone(), BytesFrame::Integer(1)], 1));
        assert!(!replicas_short(&[ok.clone(), BytesFrame::Integer(2)], 1));
        assert!(replicas_short(&[ok.clone(), BytesFrame::Integer(0)], 1));
        assert!(replicas_short(&[ok.clone(), BytesFrame::Integer(1)], 2));
        assert!(replicas_short(&[ok], 1));
    }
}
