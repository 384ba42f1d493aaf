//! Micro-benchmarks of the request path every command crosses on the proxy and on a
//! storage node: reading RESP requests off a connection buffer, parsing them into typed
//! commands, encoding replies, and locating a key's partition.
//!
//! `cargo bench -p zankv-commands` (Criterion; reports in target/criterion).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use zankv_commands::partitioning::{locate_key, partition_for};
use zankv_commands::request::{RequestLimits, RequestReader};
use zankv_commands::{Protocol, Reply};

/// 16 pipelined `SET key:<n> <100 bytes>` requests, as a client writes them.
fn pipeline_of_sets() -> BytesMut {
    let mut out = BytesMut::new();
    let value = vec![b'x'; 100];
    for n in 0..16 {
        let key = format!("key:{n:08}");
        out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
        out.extend_from_slice(format!("${}\r\n{key}\r\n", key.len()).as_bytes());
        out.extend_from_slice(b"$100\r\n");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn resp(c: &mut Criterion) {
    let input = pipeline_of_sets();
    let limits = RequestLimits::default();
    let mut group = c.benchmark_group("resp");
    group.throughput(Throughput::Elements(16));
    group.bench_function("read 16 pipelined SET requests", |b| {
        b.iter_batched(
            || input.clone(),
            |mut buf| {
                let mut reader = RequestReader::default();
                let mut n = 0;
                while let Some(argv) = reader.next(&mut buf, &limits).expect("valid") {
                    n += argv.len();
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    let requests: Vec<Vec<Bytes>> = {
        let mut buf = input.clone();
        let mut reader = RequestReader::default();
        std::iter::from_fn(|| reader.next(&mut buf, &limits).expect("valid")).collect()
    };
    group.bench_function("parse 16 SET requests into commands", |b| {
        b.iter(|| {
            for argv in &requests {
                black_box(zankv_commands::parse(argv).expect("a valid SET"));
            }
        })
    });
    let values: Vec<Reply> = (0..16).map(|_| Reply::bulk(vec![b'x'; 100])).collect();
    group.bench_function("encode 16 bulk replies, RESP2", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            for v in &values {
                v.encode(Protocol::Resp2, &mut out);
            }
            black_box(out.len())
        })
    });
    let array = Reply::Array(values.clone());
    group.bench_function("encode an array of 16 bulks, RESP3", |b| {
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            out.clear();
            array.encode(Protocol::Resp3, &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..1024)
        .map(|n| format!("users:profile:{n:08}").into_bytes())
        .collect();
    let tagged: Vec<Vec<u8>> = (0..1024)
        .map(|n| format!("users:{{user{n}}}:cart").into_bytes())
        .collect();
    let mut group = c.benchmark_group("routing");
    group.throughput(Throughput::Elements(keys.len() as u64));
    for partitions in [8, 256] {
        group.bench_function(
            format!("1024 keys to one of {partitions} partitions"),
            |b| {
                b.iter(|| {
                    let mut sum = 0u32;
                    for k in &keys {
                        let (ns, rest) = locate_key(k, |ns| ns == b"users");
                        debug_assert!(ns.is_some());
                        sum = sum.wrapping_add(partition_for(rest, partitions, false));
                    }
                    black_box(sum)
                })
            },
        );
    }
    group.bench_function("1024 hash-tagged keys to one of 256 partitions", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for k in &tagged {
                let (_, rest) = locate_key(k, |ns| ns == b"users");
                sum = sum.wrapping_add(partition_for(rest, 256, true));
            }
            black_box(sum)
        })
    });
    group.finish();
}

criterion_group!(benches, resp, routing);
criterion_main!(benches);
