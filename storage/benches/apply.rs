//! Micro-benchmarks of a partition's state machine, the part of a write every replica
//! runs: applying committed changes (one engine batch per call, as the worker does for the
//! entries of one store-loop round) and answering reads, on the in-memory engine so that
//! the numbers are the command code's and not the disk's.
//!
//! `cargo bench -p zankv-storage` (Criterion; reports in target/criterion).

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use zankv_commands::ReadCommand;
use zankv_storage::change::Change;
use zankv_storage::data::ScanCursors;
use zankv_storage::engine::memory::MemoryEngine;
use zankv_storage::partition::Partition;

const NOW_MS: i64 = 1_800_000_000_000;

fn command(args: &[&[u8]]) -> Change {
    Change::Command {
        now_ms: NOW_MS,
        argv: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
    }
}

fn fresh() -> Partition {
    Partition::open(Box::new(Arc::new(MemoryEngine::new()))).expect("opens")
}

fn apply(c: &mut Criterion) {
    let value = vec![b'x'; 100];
    let sets: Vec<Change> = (0..64)
        .map(|n| command(&[b"SET", format!("key:{n}").as_bytes(), &value]))
        .collect();
    let hsets: Vec<Change> = (0..64)
        .map(|n| {
            command(&[
                b"HSET",
                format!("hash:{}", n % 8).as_bytes(),
                format!("field:{n}").as_bytes(),
                &value,
            ])
        })
        .collect();
    let incrs: Vec<Change> = (0..64).map(|_| command(&[b"INCR", b"counter"])).collect();
    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(64));
    for (name, changes) in [
        ("64 SETs of new keys, one batch", &sets),
        ("64 HSETs into 8 hashes, one batch", &hsets),
        ("64 INCRs of one key, one batch", &incrs),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                fresh,
                |mut partition| {
                    let mut cursors = ScanCursors::new(16);
                    black_box(partition.apply_all(changes, &mut cursors).expect("applies"))
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    let mut partition = fresh();
    let fill: Vec<Change> = (0..10_000)
        .map(|n| command(&[b"SET", format!("key:{n}").as_bytes(), &value]))
        .collect();
    partition
        .apply_all(&fill, &mut ScanCursors::new(16))
        .expect("applies");
    let gets: Vec<ReadCommand> = (0..64)
        .map(|n| {
            let argv = [
                Bytes::from_static(b"GET"),
                Bytes::from(format!("key:{}", n * 97)),
            ];
            zankv_commands::parse(&argv)
                .expect("a valid GET")
                .0
                .into_read()
                .expect("GET reads")
        })
        .collect();
    let mut group = c.benchmark_group("read");
    group.throughput(Throughput::Elements(64));
    group.bench_function("64 GETs among 10,000 keys", |b| {
        let mut cursors = ScanCursors::new(16);
        b.iter(|| {
            for cmd in &gets {
                black_box(partition.read(cmd, NOW_MS, 0, &mut cursors));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
