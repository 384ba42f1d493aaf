//! HyperLogLog against `redis-server` 7.0: seeded random PFADD / PFCOUNT / PFMERGE
//! sequences with every reply compared and every sketch compared byte for byte (GET), values
//! copied from Redis (GET there, SET here) counted the same, damaged sketches refused alike,
//! and PFCOUNT equal to Redis's at checkpoints up to 10 million inserts.
//!
//! Keys `h0`..`h4` hold sketches; `s` a plain string and `l` a list (the wrong types).
//! `ZANKV_DIFF_SEED=N` runs only seed N (in RESP2 and RESP3), `ZANKV_HLL_MILLIONS=N` sets
//! the big test's size (default 10).

mod support;

use support::diff::{
    b, both_alike, must_start_pair_on, seed_from_env, seeds, Pair, Rand, RunLog, Suite,
};
use support::{show_cmd, Frame};

const SUITE: Suite = Suite {
    name: "hll differential",
    target: "hll_differential",
    skips: false,
};

const FIXED_SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const COMMANDS_PER_SEED: usize = 400;

fn key(rng: &mut Rand) -> Vec<u8> {
    match rng.u32(0..100) {
        0..=89 => format!("h{}", rng.u32(0..5)).into_bytes(),
        90..=94 => b("s"),
        _ => b("l"),
    }
}

/// An element: mostly from a small pool (repeats change nothing), sometimes fresh, of
/// lengths that exercise every tail of the hash.
fn element(rng: &mut Rand) -> Vec<u8> {
    match rng.u32(0..100) {
        0..=49 => format!("e{}", rng.u32(0..200)).into_bytes(),
        50..=89 => format!("x{}", rng.u64(..)).into_bytes(),
        _ => {
            let len = rng.usize(0..40);
            (0..len).map(|_| rng.u8(..)).collect()
        }
    }
}

fn command(rng: &mut Rand) -> Vec<Vec<u8>> {
    let roll = rng.u32(0..100);
    let mut args = match roll {
        0..=44 => {
            let mut args = vec![rng.name("PFADD"), key(rng)];
            let n = match rng.u32(0..10) {
                0 => 0,
                1 => rng.usize(100..600),
                _ => rng.usize(1..8),
            };
            for _ in 0..n {
                args.push(element(rng));
            }
            args
        }
        45..=64 => {
            let mut args = vec![rng.name("PFCOUNT")];
            for _ in 0..rng.usize(1..4) {
                args.push(key(rng));
            }
            args
        }
        65..=74 => {
            let mut args = vec![rng.name("PFMERGE"), key(rng)];
            for _ in 0..rng.usize(0..3) {
                args.push(key(rng));
            }
            args
        }
        75..=89 => vec![b("GET"), key(rng)],
        90..=93 => vec![b("DEL"), key(rng)],
        94..=96 => vec![
            b("SET"),
            b("s"),
            b(rng.pick(&["foo", "HYLL", "HYLL\x01\0\0\0"])),
        ],
        _ => vec![b("RPUSH"), b("l"), b("a")],
    };
    if rng.chance(2) {
        args.pop();
    }
    args
}

/// Whether a sparse sketch ends with the first byte of a two-byte XZERO opcode: Redis then
/// reads its second byte from memory past the value's end (what an earlier edit left
/// there), which no copy of the value carries, so later edits of that run cannot be
/// compared.
fn ends_inside_xzero(value: &[u8]) -> bool {
    if value.len() < 16 || value[4] != 1 {
        return false;
    }
    let mut p = 16;
    while p < value.len() {
        p += if value[p] & 0xc0 == 0x40 { 2 } else { 1 };
    }
    p > value.len()
}

/// The same command on both; panics with the seed's report when the replies differ.
/// The same command on both; on a difference, the report shows the sketches named.
fn both(pair: &mut Pair, log: &mut RunLog, i: usize, args: &[Vec<u8>]) -> Frame {
    both_alike(pair, log, i, args, |pair| {
        let mut values = String::new();
        for arg in args[1..]
            .iter()
            .filter(|a| a.starts_with(b"h") && a.len() == 2)
        {
            let get = [b("GET"), arg.clone()];
            let (r, z) = (pair.redis.cmd_vec(&get), pair.zankv.cmd_vec(&get));
            values.push_str(&format!(
                "\n  {}: redis {r}\n      zankv {z}",
                show_cmd(&get)
            ));
        }
        values
    })
}

fn run_seed(seed: u64, resp3: bool) {
    let mut pair = must_start_pair_on(resp3, support::diff::Target::Node);
    let mut rng = Rand::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    for i in 0..COMMANDS_PER_SEED {
        let args = command(&mut rng);
        both(&mut pair, &mut log, i, &args);
        // A sketch written is compared at once, so a difference shows where it began.
        let name = args[0].to_ascii_uppercase();
        if (name == b"PFADD" || name == b"PFMERGE") && args.len() > 1 {
            both(&mut pair, &mut log, i, &[b("GET"), args[1].clone()]);
        }
        // Now and then a sketch copied from Redis, intact or damaged, into another key.
        if rng.chance(4) {
            let from = format!("h{}", rng.u32(0..5));
            let value = pair.redis.cmd_str(&["GET", &from]);
            if let Some(bytes) = value.as_bytes() {
                let mut bytes = bytes.to_vec();
                if rng.chance(40) && bytes.len() > 16 {
                    let at = rng.usize(16..bytes.len());
                    if rng.bool() {
                        bytes.truncate(at);
                    } else {
                        bytes[at] = rng.u8(..);
                    }
                }
                if ends_inside_xzero(&bytes) {
                    continue;
                }
                let set = vec![b("SET"), format!("h{}", rng.u32(0..5)).into_bytes(), bytes];
                both(&mut pair, &mut log, i, &set);
            }
        }
    }
    for k in ["h0", "h1", "h2", "h3", "h4"] {
        both(&mut pair, &mut log, COMMANDS_PER_SEED, &[b("GET"), b(k)]);
    }
    log.print_stats();
}

#[test]
fn random_sequences_match_redis_resp2() {
    for seed in seeds(&FIXED_SEEDS) {
        run_seed(seed, false);
    }
}

#[test]
fn random_sequences_match_redis_resp3() {
    for seed in seeds(&FIXED_SEEDS) {
        run_seed(seed + 100, true);
    }
}

/// Seeded distinct inserts in batches; PFCOUNT and the sketch's bytes equal Redis's at
/// each checkpoint, the last at `ZANKV_HLL_MILLIONS` million (10 by default).
#[test]
fn pfcount_matches_redis_up_to_ten_million_inserts() {
    if seed_from_env().is_some() {
        return;
    }
    let millions: u64 = std::env::var("ZANKV_HLL_MILLIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let total = millions * 1_000_000;
    let mut pair = must_start_pair_on(false, support::diff::Target::Node);
    let mut log = RunLog::new(SUITE, 0, false);
    let mut rng = Rand::new(42);
    let mut checkpoints = vec![1_000u64, 3_000, 10_000, 100_000, 1_000_000, total];
    checkpoints.retain(|&c| c <= total);
    checkpoints.dedup();
    let batch = 5_000u64;
    let mut inserted = 0u64;
    let mut i = 0;
    for checkpoint in checkpoints {
        while inserted < checkpoint {
            let n = batch.min(checkpoint - inserted);
            let mut args = Vec::with_capacity(n as usize + 2);
            args.push(b("PFADD"));
            args.push(b("big"));
            let salt = rng.u64(..);
            for j in 0..n {
                args.push(format!("{salt:x}:{}", inserted + j).into_bytes());
            }
            both(&mut pair, &mut log, i, &args);
            inserted += n;
            i += 1;
        }
        let count = both(&mut pair, &mut log, i, &[b("PFCOUNT"), b("big")]);
        both(&mut pair, &mut log, i, &[b("GET"), b("big")]);
        eprintln!("{inserted} inserts: PFCOUNT {count} on both");
    }
}
