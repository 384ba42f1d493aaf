//! `zankv-load`: a closed-loop load generator for Redis-protocol servers.
//!
//! `--clients` connections each send one command, wait for its reply, and send the next,
//! for `--seconds` (after `--warmup` seconds that are not counted). Keys are drawn at random
//! from `--keyspace` keys. Against a zankv cluster, list every node in `--addrs` and give
//! the namespace's `--partitions`: each key is sent to the node that last said it leads the
//! key's partition (learned from `ERR_CLUSTER_CHANGED ... leader is node N at ADDR` hints,
//! as a smart client does), so the load measures the cluster, not redirects. Against
//! redis-server, give its one address.
//!
//! Prints one JSON line on stdout: clients, ops, seconds, ops_per_sec, p50_ms, p99_ms,
//! max_ms, errors, redirects, and all_ops (ops including the warm-up).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::{Parser, ValueEnum};
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zankv_commands::partitioning::partition_of;

/// Which command the clients send.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Op {
    /// SET key value
    Set,
    /// GET key
    Get,
}

/// Drives Redis-protocol servers with concurrent clients and reports throughput and latency.
#[derive(Parser, Debug)]
#[command(name = "zankv-load")]
struct Args {
    /// RESP addresses: every node of a zankv cluster, or one redis-server.
    #[arg(long, value_delimiter = ',', required = true)]
    addrs: Vec<SocketAddr>,
    /// Concurrent clients (connections), each with one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The command.
    #[arg(long, value_enum, default_value_t = Op::Set)]
    op: Op,
    /// Value size in bytes (SET).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Distinct keys drawn from.
    #[arg(long, default_value_t = 1_000_000)]
    keyspace: u64,
    /// Partitions of the (default) namespace the keys belong to, for routing.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// What the clients share: where each partition's leader is believed to be.
struct Shared {
    addrs: Vec<SocketAddr>,
    /// Per partition: index into `addrs` of its believed leader (`usize::MAX` = unknown).
    leaders: Vec<AtomicUsize>,
    value: Bytes,
    args: Args,
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    /// Commands answered during the warm-up.
    warmup_ops: u64,
    errors: u64,
    redirects: u64,
}

/// One connection to one server, with its read buffer.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    async fn call(&mut self, request: &[u8]) -> std::io::Result<BytesFrame> {
        self.stream.write_all(request).await?;
        loop {
            match decode_bytes_mut(&mut self.buf) {
                Ok(Some((frame, _, _))) => return Ok(frame),
                Ok(None) => {}
                Err(e) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{e:?}"),
                    ))
                }
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.clear();
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The address named by a leader hint (`... at HOST:PORT`), as an index into `addrs`.
fn hinted_leader(text: &[u8], addrs: &[SocketAddr]) -> Option<usize> {
    let text = std::str::from_utf8(text).ok()?;
    let at = text.rsplit(" at ").next()?;
    let addr: SocketAddr = at.trim().parse().ok()?;
    addrs.iter().position(|a| *a == addr)
}

async fn client(shared: Arc<Shared>, measure_from: Instant, stop: Arc<AtomicBool>) -> ClientResult {
    let mut result = ClientResult::default();
    let mut conns: Vec<Option<Conn>> = (0..shared.addrs.len()).map(|_| None).collect();
    let mut rng = fastrand::Rng::new();
    let mut request = Vec::with_capacity(shared.value.len() + 64);
    while !stop.load(Ordering::Relaxed) {
        let key = format!("key:{}", rng.u64(0..shared.args.keyspace));
        let partition = partition_of(key.as_bytes(), shared.args.partitions) as usize;
        match shared.args.op {
            Op::Set => encode(&mut request, &[b"SET", key.as_bytes(), &shared.value]),
            Op::Get => encode(&mut request, &[b"GET", key.as_bytes()]),
        }
        let started = Instant::now();
        let mut attempts = 0;
        let ok = loop {
            attempts += 1;
            if attempts > 20 {
                break false;
            }
            let believed = shared.leaders[partition].load(Ordering::Relaxed);
            let node = if believed < shared.addrs.len() {
                believed
            } else {
                rng.usize(0..shared.addrs.len())
            };
            if conns[node].is_none() {
                match Conn::connect(shared.addrs[node]).await {
                    Ok(c) => conns[node] = Some(c),
                    Err(_) => {
                        shared.leaders[partition].store(usize::MAX, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                }
            }
            let conn = conns[node].as_mut().expect("connected above");
            match conn.call(&request).await {
                Ok(BytesFrame::Error(e)) if e.starts_with("ERR_CLUSTER_CHANGED") => {
                    result.redirects += 1;
                    let leader = hinted_leader(e.as_bytes(), &shared.addrs).unwrap_or(usize::MAX);
                    shared.leaders[partition].store(leader, Ordering::Relaxed);
                    if leader == usize::MAX {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Ok(BytesFrame::Error(_)) => break false,
                Ok(_) => {
                    shared.leaders[partition].store(node, Ordering::Relaxed);
                    break true;
                }
                Err(_) => {
                    conns[node] = None;
                    break false;
                }
            }
        };
        if started < measure_from {
            result.warmup_ops += u64::from(ok);
            continue;
        }
        if ok {
            let us = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            result.latencies_us.push(us);
        } else {
            result.errors += 1;
        }
    }
    result
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() {
    let args = Args::parse();
    if args.clients == 0 || args.partitions == 0 || args.keyspace == 0 {
        eprintln!("zankv-load: --clients, --partitions and --keyspace must be positive");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("the runtime starts");
    let shared = Arc::new(Shared {
        addrs: args.addrs.clone(),
        leaders: (0..args.partitions)
            .map(|_| AtomicUsize::new(usize::MAX))
            .collect(),
        value: Bytes::from(vec![b'x'; args.value_size]),
        args,
    });
    let warmup = Duration::from_secs_f64(shared.args.warmup);
    let measured = Duration::from_secs_f64(shared.args.seconds);
    let results: Vec<ClientResult> = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let measure_from = Instant::now() + warmup;
        let tasks: Vec<_> = (0..shared.args.clients)
            .map(|_| tokio::spawn(client(shared.clone(), measure_from, stop.clone())))
            .collect();
        tokio::time::sleep(warmup + measured).await;
        stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("a client task panicked"));
        }
        out
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
    let seconds = measured.as_secs_f64();
    let report = serde_json::json!({
        "clients": shared.args.clients,
        "ops": ops,
        "seconds": seconds,
        "ops_per_sec": (ops as f64 / seconds).round(),
        "p50_ms": percentile(&latencies, 0.50),
        "p99_ms": percentile(&latencies, 0.99),
        "max_ms": percentile(&latencies, 1.0),
        "errors": errors,
        "redirects": redirects,
        "all_ops": ops + warmup_ops,
    });
    println!("{report}");
}
