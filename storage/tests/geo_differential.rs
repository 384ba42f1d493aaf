//! Geo commands against `redis-server` 7.0: seeded random GEOADD / GEOPOS / GEOHASH /
//! GEODIST / GEORADIUS[BYMEMBER][_RO] / GEOSEARCH[STORE] sequences, every reply compared
//! exactly (members found in Redis's order, distances, hashes, coordinates, errors), in
//! RESP2 and RESP3, and each stored result compared with ZRANGE WITHSCORES.
//!
//! Positions are drawn at and around a few centres (so searches find something, and find
//! members at equal distances), anywhere on
//! Earth, and near the poles' limits and the antimeridian (where the cells a search scans
//! wrap or are dropped). `ZANKV_DIFF_SEED=N` runs only seed N.

mod support;

use support::diff::{b, both_alike, must_start_pair_on, seeds, Pair, Rand, RunLog, Suite, Target};
use support::Frame;

const SUITE: Suite = Suite {
    name: "geo differential",
    target: "geo_differential",
    skips: false,
};

const FIXED_SEEDS: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
const COMMANDS_PER_SEED: usize = 300;
const CENTRES: [(f64, f64); 4] = [(13.36, 38.11), (-73.98, 40.75), (179.9, -16.5), (0.0, 84.9)];

fn key(rng: &mut Rand) -> Vec<u8> {
    match rng.u32(0..100) {
        0..=84 => format!("g{}", rng.u32(0..3)).into_bytes(),
        85..=94 => b("dst"),
        _ => b("str"),
    }
}

fn member(rng: &mut Rand) -> Vec<u8> {
    format!("m{}", rng.u32(0..40)).into_bytes()
}

fn number(v: f64) -> Vec<u8> {
    format!("{v}").into_bytes()
}

/// A position: near a centre, anywhere, at the limits, or (rarely) outside them.
fn position(rng: &mut Rand) -> (Vec<u8>, Vec<u8>) {
    let (long, lat) = match rng.u32(0..100) {
        // Shared positions: members at equal distances, which COUNT picks among as Redis's
        // partial sort does.
        0..=14 => CENTRES[rng.usize(0..2)],
        15..=69 => {
            let (cl, ca) = CENTRES[rng.usize(0..CENTRES.len())];
            let spread = [0.01, 0.5, 3.0][rng.usize(0..3)];
            (
                (cl + (rng.f64() - 0.5) * spread).clamp(-180.0, 180.0),
                (ca + (rng.f64() - 0.5) * spread).clamp(-85.05, 85.05),
            )
        }
        70..=89 => (rng.f64() * 360.0 - 180.0, rng.f64() * 170.0 - 85.0),
        90..=96 => {
            let long = *rng.pick(&[&180.0, &-180.0, &0.0]);
            let lat = *rng.pick(&[&85.05112878, &-85.05112878, &0.0]);
            (long, lat)
        }
        _ => {
            let bad = rng.pick(&["181", "-180.5", "abc", "", "nan"]);
            return (b(bad), b("85.06"));
        }
    };
    (number(long), number(lat))
}

fn unit(rng: &mut Rand) -> Vec<u8> {
    b(rng.pick(&["m", "km", "km", "mi", "ft", "KM", "yd"]))
}

fn distance(rng: &mut Rand) -> Vec<u8> {
    match rng.u32(0..100) {
        0..=84 => number([1.0, 50.0, 300.0, 2000.0, 100000.0][rng.usize(0..5)] * rng.f64()),
        85..=94 => b(rng.pick(&["0", "20000", "5000000"])),
        _ => b(rng.pick(&["-1", "x"])),
    }
}

/// Search options: WITH*, ASC/DESC, COUNT [ANY], and (where allowed) STORE/STOREDIST.
fn options(rng: &mut Rand, args: &mut Vec<Vec<u8>>, store: bool) {
    for _ in 0..rng.usize(0..4) {
        match rng.u32(0..100) {
            0..=14 => args.push(b("WITHDIST")),
            15..=24 => args.push(b("WITHCOORD")),
            25..=32 => args.push(b("WITHHASH")),
            33..=49 => args.push(b(rng.pick(&["ASC", "DESC", "asc"]))),
            50..=69 => {
                args.push(b("COUNT"));
                args.push(b(rng.pick(&["1", "2", "5", "0", "-1", "x"])));
                if rng.chance(30) {
                    args.push(b("ANY"));
                }
            }
            70..=79 if store => {
                args.push(b(rng.pick(&["STORE", "STOREDIST"])));
                args.push(b("dst"));
            }
            80..=84 => args.push(b("ANY")),
            _ => {}
        }
    }
}

fn search(rng: &mut Rand) -> Vec<Vec<u8>> {
    let roll = rng.u32(0..100);
    let mut args = match roll {
        0..=24 => {
            let ro = rng.chance(30);
            let name = if ro { "GEORADIUS_RO" } else { "GEORADIUS" };
            let (long, lat) = position(rng);
            let mut args = vec![
                rng.name(name),
                key(rng),
                long,
                lat,
                distance(rng),
                unit(rng),
            ];
            options(rng, &mut args, !ro);
            args
        }
        25..=44 => {
            let ro = rng.chance(30);
            let name = if ro {
                "GEORADIUSBYMEMBER_RO"
            } else {
                "GEORADIUSBYMEMBER"
            };
            let mut args = vec![
                rng.name(name),
                key(rng),
                member(rng),
                distance(rng),
                unit(rng),
            ];
            options(rng, &mut args, !ro);
            args
        }
        _ => {
            let store = rng.chance(30);
            let mut args = if store {
                vec![rng.name("GEOSEARCHSTORE"), b("dst"), key(rng)]
            } else {
                vec![rng.name("GEOSEARCH"), key(rng)]
            };
            let mut from = || {
                if rng.chance(50) {
                    vec![b("FROMMEMBER"), member(rng)]
                } else {
                    let (long, lat) = position(rng);
                    vec![b("FROMLONLAT"), long, lat]
                }
            };
            let from = from();
            let by = if rng.chance(50) {
                vec![b("BYRADIUS"), distance(rng), unit(rng)]
            } else {
                vec![b("BYBOX"), distance(rng), distance(rng), unit(rng)]
            };
            if rng.chance(95) {
                args.extend(from);
            }
            if rng.chance(95) {
                args.extend(by);
            }
            options(rng, &mut args, false);
            if store && rng.chance(30) {
                args.push(b("STOREDIST"));
            }
            args
        }
    };
    if rng.chance(5) {
        let (at, last) = (rng.usize(1..args.len()), args.len() - 1);
        args.swap(at, last);
    }
    args
}

fn command(rng: &mut Rand) -> Vec<Vec<u8>> {
    match rng.u32(0..100) {
        0..=29 => {
            let mut args = vec![rng.name("GEOADD"), key(rng)];
            for _ in 0..rng.usize(0..2) {
                args.push(b(rng.pick(&["NX", "XX", "CH"])));
            }
            for _ in 0..rng.usize(1..6) {
                let (long, lat) = position(rng);
                args.extend([long, lat, member(rng)]);
            }
            if rng.chance(3) {
                args.pop();
            }
            args
        }
        30..=39 => {
            let name = rng.pick(&["GEOPOS", "GEOHASH"]);
            let mut args = vec![rng.name(name), key(rng)];
            for _ in 0..rng.usize(0..4) {
                args.push(member(rng));
            }
            args
        }
        40..=49 => {
            let mut args = vec![rng.name("GEODIST"), key(rng), member(rng), member(rng)];
            if rng.chance(60) {
                args.push(unit(rng));
            }
            args
        }
        50..=52 => vec![b("SET"), b("str"), b("x")],
        53..=54 => vec![
            b("ZADD"),
            key(rng),
            b(rng.pick(&["1", "-5", "1e20"])),
            member(rng),
        ],
        55..=57 => vec![b("ZREM"), key(rng), member(rng)],
        _ => search(rng),
    }
}

fn both(pair: &mut Pair, log: &mut RunLog, i: usize, args: &[Vec<u8>]) -> Frame {
    both_alike(pair, log, i, args, |_| String::new())
}

fn run_seed(seed: u64, resp3: bool) {
    let mut pair = must_start_pair_on(resp3, Target::Node);
    let mut rng = Rand::new(seed);
    let mut log = RunLog::new(SUITE, seed, resp3);
    for i in 0..COMMANDS_PER_SEED {
        let args = command(&mut rng);
        both(&mut pair, &mut log, i, &args);
        if args.iter().any(|a| a.eq_ignore_ascii_case(b"dst")) {
            let check = [b("ZRANGE"), b("dst"), b("0"), b("-1"), b("WITHSCORES")];
            both(&mut pair, &mut log, i, &check);
        }
    }
    for k in ["g0", "g1", "g2", "dst"] {
        let check = [b("ZRANGE"), b(k), b("0"), b("-1"), b("WITHSCORES")];
        both(&mut pair, &mut log, COMMANDS_PER_SEED, &check);
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
