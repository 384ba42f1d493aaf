//! Durability across crashes: every write a zankv node acknowledged must still be there after
//! the process is killed with SIGKILL (and, in one round, stopped with SIGTERM) and started
//! again on the same data dir: values, hash, list and set contents, expirations and DBSIZE.
//!
//! Writes are pipelined in random batches so acknowledged writes may have shared a batch
//! with others; the expected state is a model updated only from acknowledged replies.
//!
//! The node compacts its raft log after a few hundred entries, so every restart starts
//! from a compacted log; a node whose only replica commits entries as it persists them
//! once left its log compacted past the commit index it had written, and could not start
//! again.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::{escape, free_port, try_http, Client, Frame, ZankvNode};

/// Restart rounds: SIGKILL, SIGTERM, SIGKILL.
const ROUNDS: [Stop; 3] = [Stop::Kill, Stop::Term, Stop::Kill];

/// Write commands per round.
const WRITES_PER_ROUND: usize = 400;

/// Distinct keys the writes draw from (per round some are new, most are reused).
const KEY_POOL: usize = 120;

/// Longest a round may take; the test fails rather than run on.
const ROUND_DEADLINE: Duration = Duration::from_secs(60);

/// The node's raft-log compaction settings: a log is compacted once it holds more than
/// this many entries (each round writes more than that), keeping the last few.
const COMPACTION: &str = "[raft]\nlog_compact_entries = 150\nlog_catchup_entries = 20\n";

/// Relative TTLs are checked against [send time, ack time] widened by this much.
const TTL_SLACK_MS: i64 = 1500;

#[derive(Clone, Copy, Debug)]
enum Stop {
    Kill,
    Term,
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
}

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    /// Absolute expiration in unix ms, as a range [lo, hi] (equal for absolute writes).
    expire: Option<(i64, i64)>,
}

type Model = BTreeMap<Vec<u8>, Entry>;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// One write and how the model changes when it is acknowledged.
struct Write {
    args: Vec<Vec<u8>>,
    effect: Effect,
}

enum Effect {
    /// SET key value [PXAT t | EX s]: replaces value and expiration.
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        expire_at: Option<i64>,
        expire_in_ms: Option<i64>,
    },
    /// HSET key f v ...: adds fields; reply is the count of new fields.
    HSet {
        key: Vec<u8>,
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// HDEL key f: reply is 0 or 1.
    HDel { key: Vec<u8>, field: Vec<u8> },
    /// APPEND key value: reply is the new length.
    Append { key: Vec<u8>, value: Vec<u8> },
    /// PEXPIREAT key t: reply 1 if the key exists.
    PExpireAt { key: Vec<u8>, at: i64 },
    /// EXPIRE key s: reply 1 if the key exists.
    Expire { key: Vec<u8>, secs: i64 },
    /// PERSIST key: reply 1 if it had an expiration.
    Persist { key: Vec<u8> },
    /// DEL key: reply 0 or 1.
    Del { key: Vec<u8> },
    /// RPUSH key e...: reply is the new length.
    RPush {
        key: Vec<u8>,
        elements: Vec<Vec<u8>>,
    },
    /// LPOP key: reply is the head element or nil.
    LPop { key: Vec<u8> },
    /// SADD key m...: reply is the count of new members.
    SAdd { key: Vec<u8>, members: Vec<Vec<u8>> },
    /// SREM key m: reply is 0 or 1.
    SRem { key: Vec<u8>, member: Vec<u8> },
}

fn random_bytes(rng: &mut fastrand::Rng) -> Vec<u8> {
    match rng.u32(0..10) {
        0 => Vec::new(),
        1..=6 => format!("v{}", rng.u32(..)).into_bytes(),
        7 | 8 => (0..rng.usize(1..40)).map(|_| rng.u8(..)).collect(),
        _ => (0..rng.usize(1000..20_000)).map(|_| rng.u8(..)).collect(),
    }
}

fn pick_key(rng: &mut fastrand::Rng) -> Vec<u8> {
    let i = rng.usize(..KEY_POOL);
    if i.is_multiple_of(17) {
        format!("bin\0\r\n{i}\u{ff}").into_bytes()
    } else {
        format!("key:{i}").into_bytes()
    }
}

/// A random write that is valid for the key's current type in the model.
fn gen_write(rng: &mut fastrand::Rng, model: &Model) -> Write {
    let key = pick_key(rng);
    let kind = model.get(&key).map(|e| matches!(e.value, Value::Hash(_)));
    let choice = rng.u32(0..100);
    let member = |rng: &mut fastrand::Rng| format!("m{}", rng.u32(0..12)).into_bytes();
    match model.get(&key).map(|e| &e.value) {
        Some(Value::List(_)) if choice >= 23 => {
            let effect = if rng.bool() {
                Effect::LPop { key: key.clone() }
            } else {
                Effect::RPush {
                    key: key.clone(),
                    elements: (0..rng.usize(1..=3)).map(|_| random_bytes(rng)).collect(),
                }
            };
            return write_of(effect);
        }
        Some(Value::Set(_)) if choice >= 23 => {
            let effect = if rng.bool() {
                Effect::SRem {
                    key: key.clone(),
                    member: member(rng),
                }
            } else {
                Effect::SAdd {
                    key: key.clone(),
                    members: (0..rng.usize(1..=4)).map(|_| member(rng)).collect(),
                }
            };
            return write_of(effect);
        }
        None if (60..70).contains(&choice) => {
            return write_of(Effect::RPush {
                key: key.clone(),
                elements: (0..rng.usize(1..=3)).map(|_| random_bytes(rng)).collect(),
            })
        }
        None if (70..80).contains(&choice) => {
            return write_of(Effect::SAdd {
                key: key.clone(),
                members: (0..rng.usize(1..=4)).map(|_| member(rng)).collect(),
            })
        }
        _ => {}
    }
    let effect = match (kind, choice) {
        (_, 0..=4) => Effect::Del { key: key.clone() },
        (_, 5..=9) if kind.is_some() => Effect::Persist { key: key.clone() },
        (_, 10..=16) if kind.is_some() => Effect::PExpireAt {
            key: key.clone(),
            at: now_ms() + rng.i64(3_600_000..360_000_000),
        },
        (_, 17..=22) if kind.is_some() => Effect::Expire {
            key: key.clone(),
            secs: rng.i64(3_600..360_000),
        },
        (Some(true), _) | (None, 23..=59) => {
            if kind == Some(true) && rng.u32(0..4) == 0 {
                Effect::HDel {
                    key: key.clone(),
                    field: format!("f{}", rng.u32(0..8)).into_bytes(),
                }
            } else {
                let pairs = (0..rng.usize(1..=4))
                    .map(|_| {
                        (
                            format!("f{}", rng.u32(0..8)).into_bytes(),
                            random_bytes(rng),
                        )
                    })
                    .collect();
                Effect::HSet {
                    key: key.clone(),
                    pairs,
                }
            }
        }
        (Some(false), 23..=39) => Effect::Append {
            key: key.clone(),
            value: random_bytes(rng),
        },
        _ => {
            let value = random_bytes(rng);
            match rng.u32(0..4) {
                0 => Effect::Set {
                    key: key.clone(),
                    value,
                    expire_at: Some(now_ms() + rng.i64(3_600_000..360_000_000)),
                    expire_in_ms: None,
                },
                1 => Effect::Set {
                    key: key.clone(),
                    value,
                    expire_at: None,
                    expire_in_ms: Some(1000 * rng.i64(3_600..360_000)),
                },
                _ => Effect::Set {
                    key: key.clone(),
                    value,
                    expire_at: None,
                    expire_in_ms: None,
                },
            }
        }
    };
    write_of(effect)
}

/// The command that makes `effect`.
fn write_of(effect: Effect) -> Write {
    let arg = |s: &str| s.as_bytes().to_vec();
    let args = match &effect {
        Effect::RPush { key, elements } => {
            [vec![arg("RPUSH"), key.clone()], elements.clone()].concat()
        }
        Effect::LPop { key } => vec![arg("LPOP"), key.clone()],
        Effect::SAdd { key, members } => [vec![arg("SADD"), key.clone()], members.clone()].concat(),
        Effect::SRem { key, member } => vec![arg("SREM"), key.clone(), member.clone()],
        Effect::Set {
            key,
            value,
            expire_at,
            expire_in_ms,
        } => {
            let mut args = vec![arg("SET"), key.clone(), value.clone()];
            if let Some(at) = expire_at {
                args.extend([arg("PXAT"), at.to_string().into_bytes()]);
            }
            if let Some(ms) = expire_in_ms {
                args.extend([arg("EX"), (ms / 1000).to_string().into_bytes()]);
            }
            args
        }
        Effect::HSet { key, pairs } => {
            let mut args = vec![arg("HSET"), key.clone()];
            for (f, v) in pairs {
                args.extend([f.clone(), v.clone()]);
            }
            args
        }
        Effect::HDel { key, field } => vec![arg("HDEL"), key.clone(), field.clone()],
        Effect::Append { key, value } => vec![arg("APPEND"), key.clone(), value.clone()],
        Effect::PExpireAt { key, at } => {
            vec![arg("PEXPIREAT"), key.clone(), at.to_string().into_bytes()]
        }
        Effect::Expire { key, secs } => {
            vec![arg("EXPIRE"), key.clone(), secs.to_string().into_bytes()]
        }
        Effect::Persist { key } => vec![arg("PERSIST"), key.clone()],
        Effect::Del { key } => vec![arg("DEL"), key.clone()],
    };
    Write { args, effect }
}

/// Applies an acknowledged write to the model, checking the reply on the way.
/// `sent`/`acked` bound the node's clock for relative expirations.
fn must_apply(model: &mut Model, write: &Write, reply: &Frame, sent: i64, acked: i64) {
    let what = support::show_cmd(&write.args);
    let expect_int = |n: i64| assert_eq!(reply, &Frame::Integer(n), "reply to {what}");
    match &write.effect {
        Effect::Set {
            key,
            value,
            expire_at,
            expire_in_ms,
        } => {
            assert_eq!(reply, &Frame::simple("OK"), "reply to {what}");
            let expire = match (expire_at, expire_in_ms) {
                (Some(at), _) => Some((*at, *at)),
                (_, Some(ms)) => Some((sent + ms, acked + ms)),
                _ => None,
            };
            model.insert(
                key.clone(),
                Entry {
                    value: Value::Str(value.clone()),
                    expire,
                },
            );
        }
        Effect::HSet { key, pairs } => {
            let entry = model.entry(key.clone()).or_insert(Entry {
                value: Value::Hash(BTreeMap::new()),
                expire: None,
            });
            let Value::Hash(hash) = &mut entry.value else {
                panic!("model: HSET on a string")
            };
            let mut added = 0;
            for (f, v) in pairs {
                if hash.insert(f.clone(), v.clone()).is_none() {
                    added += 1;
                }
            }
            expect_int(added);
        }
        Effect::HDel { key, field } => {
            let removed = match model.get_mut(key) {
                Some(Entry {
                    value: Value::Hash(hash),
                    ..
                }) => hash.remove(field).is_some(),
                _ => false,
            };
            if model
                .get(key)
                .is_some_and(|e| e.value == Value::Hash(BTreeMap::new()))
            {
                model.remove(key);
            }
            expect_int(removed as i64);
        }
        Effect::Append { key, value } => {
            let entry = model.entry(key.clone()).or_insert(Entry {
                value: Value::Str(Vec::new()),
                expire: None,
            });
            let Value::Str(s) = &mut entry.value else {
                panic!("model: APPEND on a hash")
            };
            s.extend_from_slice(value);
            expect_int(s.len() as i64);
        }
        Effect::PExpireAt { key, at } => {
            let exists = model
                .get_mut(key)
                .map(|e| e.expire = Some((*at, *at)))
                .is_some();
            expect_int(exists as i64);
        }
        Effect::Expire { key, secs } => {
            let ms = secs * 1000;
            let exists = model
                .get_mut(key)
                .map(|e| e.expire = Some((sent + ms, acked + ms)))
                .is_some();
            expect_int(exists as i64);
        }
        Effect::Persist { key } => {
            let had = model
                .get_mut(key)
                .map(|e| e.expire.take().is_some())
                .unwrap_or(false);
            expect_int(had as i64);
        }
        Effect::Del { key } => expect_int(model.remove(key).is_some() as i64),
        Effect::RPush { key, elements } => {
            let entry = model.entry(key.clone()).or_insert(Entry {
                value: Value::List(Vec::new()),
                expire: None,
            });
            let Value::List(list) = &mut entry.value else {
                panic!("model: RPUSH on another type")
            };
            list.extend(elements.iter().cloned());
            expect_int(list.len() as i64);
        }
        Effect::LPop { key } => {
            let popped = match model.get_mut(key) {
                Some(Entry {
                    value: Value::List(list),
                    ..
                }) if !list.is_empty() => Some(list.remove(0)),
                _ => None,
            };
            if model
                .get(key)
                .is_some_and(|e| e.value == Value::List(Vec::new()))
            {
                model.remove(key);
            }
            match popped {
                Some(e) => assert_eq!(reply, &Frame::Bulk(e), "reply to {what}"),
                None => assert_eq!(reply, &Frame::Null, "reply to {what}"),
            }
        }
        Effect::SAdd { key, members } => {
            let entry = model.entry(key.clone()).or_insert(Entry {
                value: Value::Set(BTreeSet::new()),
                expire: None,
            });
            let Value::Set(set) = &mut entry.value else {
                panic!("model: SADD on another type")
            };
            let added = members.iter().filter(|m| set.insert((*m).clone())).count();
            expect_int(added as i64);
        }
        Effect::SRem { key, member } => {
            let removed = match model.get_mut(key) {
                Some(Entry {
                    value: Value::Set(set),
                    ..
                }) => set.remove(member),
                _ => false,
            };
            if model
                .get(key)
                .is_some_and(|e| e.value == Value::Set(BTreeSet::new()))
            {
                model.remove(key);
            }
            expect_int(removed as i64);
        }
    }
}

/// Runs `WRITES_PER_ROUND` writes in pipelined batches, updating the model from the acks.
fn must_write_round(
    client: &mut Client,
    rng: &mut fastrand::Rng,
    model: &mut Model,
    deadline: Instant,
) {
    let mut done = 0;
    while done < WRITES_PER_ROUND {
        assert!(
            Instant::now() < deadline,
            "write round took longer than {ROUND_DEADLINE:?}"
        );
        let batch = rng.usize(1..=32).min(WRITES_PER_ROUND - done);
        // The batch is generated against the model as of its start; a later write in the
        // batch may target a key an earlier one changed, so each write is generated against
        // a scratch copy that already includes the earlier writes' likely effects.
        let mut scratch = model.clone();
        let mut writes = Vec::with_capacity(batch);
        for _ in 0..batch {
            let write = gen_write(rng, &scratch);
            predict(&mut scratch, &write);
            writes.push(write);
        }
        let mut bytes = Vec::new();
        for write in &writes {
            let refs: Vec<&[u8]> = write.args.iter().map(|a| a.as_slice()).collect();
            bytes.extend(Client::encode(&refs));
        }
        let sent = now_ms();
        client.send_raw(&bytes);
        let replies: Vec<Frame> = (0..batch)
            .map(|_| {
                client
                    .read_frame()
                    .expect("node closed the connection during a write batch")
            })
            .collect();
        let acked = now_ms();
        for (write, reply) in writes.iter().zip(&replies) {
            must_apply(model, write, reply, sent, acked);
        }
        done += batch;
    }
}

/// The type a write leaves its key with, for generating the rest of a batch.
fn predict(model: &mut Model, write: &Write) {
    let placeholder = |v| Entry {
        value: v,
        expire: None,
    };
    match &write.effect {
        Effect::Set { key, .. } | Effect::Append { key, .. } => {
            if !matches!(
                model.get(key),
                Some(Entry {
                    value: Value::Str(_),
                    ..
                })
            ) {
                model.insert(key.clone(), placeholder(Value::Str(Vec::new())));
            }
        }
        Effect::HSet { key, pairs } => {
            let entry = model
                .entry(key.clone())
                .or_insert(placeholder(Value::Hash(BTreeMap::new())));
            if let Value::Hash(h) = &mut entry.value {
                for (f, v) in pairs {
                    h.insert(f.clone(), v.clone());
                }
            }
        }
        Effect::HDel { key, field } => {
            if let Some(Entry {
                value: Value::Hash(h),
                ..
            }) = model.get_mut(key)
            {
                h.remove(field);
                if h.is_empty() {
                    model.remove(key);
                }
            }
        }
        Effect::Del { key } => {
            model.remove(key);
        }
        Effect::RPush { key, elements } => {
            let entry = model
                .entry(key.clone())
                .or_insert(placeholder(Value::List(Vec::new())));
            if let Value::List(l) = &mut entry.value {
                l.extend(elements.iter().cloned());
            }
        }
        Effect::LPop { key } => {
            if let Some(Entry {
                value: Value::List(l),
                ..
            }) = model.get_mut(key)
            {
                l.remove(0);
                if l.is_empty() {
                    model.remove(key);
                }
            }
        }
        Effect::SAdd { key, members } => {
            let entry = model
                .entry(key.clone())
                .or_insert(placeholder(Value::Set(BTreeSet::new())));
            if let Value::Set(s) = &mut entry.value {
                s.extend(members.iter().cloned());
            }
        }
        Effect::SRem { key, member } => {
            if let Some(Entry {
                value: Value::Set(s),
                ..
            }) = model.get_mut(key)
            {
                s.remove(member);
                if s.is_empty() {
                    model.remove(key);
                }
            }
        }
        Effect::PExpireAt { .. } | Effect::Expire { .. } | Effect::Persist { .. } => {}
    }
}

/// Every key in the model is on the node with its value and expiration, and nothing else is.
fn must_match_model(client: &mut Client, model: &Model, context: &str) {
    assert_eq!(
        client.cmd(&[b"DBSIZE"]),
        Frame::Integer(model.len() as i64),
        "{context}: DBSIZE"
    );
    for (key, entry) in model {
        let name = escape(key);
        match &entry.value {
            Value::Str(expected) => match client.cmd(&[b"GET", key]) {
                Frame::Bulk(got) => assert!(
                    &got == expected,
                    "{context}: GET \"{name}\" returned {} bytes, expected {} bytes (\"{}\")",
                    got.len(),
                    expected.len(),
                    escape(&expected[..expected.len().min(60)])
                ),
                other => panic!("{context}: GET \"{name}\" returned {other}"),
            },
            Value::Hash(expected) => {
                let reply = client.cmd(&[b"HGETALL", key]);
                let items = reply
                    .as_items()
                    .unwrap_or_else(|| panic!("{context}: HGETALL \"{name}\" returned {reply}"));
                let mut got = BTreeMap::new();
                for pair in items.chunks(2) {
                    match pair {
                        [Frame::Bulk(f), Frame::Bulk(v)] => {
                            got.insert(f.clone(), v.clone());
                        }
                        _ => panic!("{context}: HGETALL \"{name}\" returned {reply}"),
                    }
                }
                assert!(
                    &got == expected,
                    "{context}: HGETALL \"{name}\" = {reply}, expected {expected:?}"
                );
            }
            Value::List(expected) => {
                let reply = client.cmd(&[b"LRANGE", key, b"0", b"-1"]);
                let got: Vec<Vec<u8>> = reply
                    .as_items()
                    .unwrap_or_else(|| panic!("{context}: LRANGE \"{name}\" returned {reply}"))
                    .iter()
                    .map(|f| f.as_bytes().unwrap_or_default().to_vec())
                    .collect();
                assert!(
                    &got == expected,
                    "{context}: LRANGE \"{name}\" has {} elements, expected {}",
                    got.len(),
                    expected.len()
                );
            }
            Value::Set(expected) => {
                let reply = client.cmd(&[b"SMEMBERS", key]);
                let got: BTreeSet<Vec<u8>> = reply
                    .as_items()
                    .unwrap_or_else(|| panic!("{context}: SMEMBERS \"{name}\" returned {reply}"))
                    .iter()
                    .map(|f| f.as_bytes().unwrap_or_default().to_vec())
                    .collect();
                assert!(
                    &got == expected,
                    "{context}: SMEMBERS \"{name}\" = {reply}, expected {expected:?}"
                );
            }
        }
        let at = client.cmd(&[b"PEXPIRETIME", key]);
        match (entry.expire, &at) {
            (None, Frame::Integer(-1)) => {}
            (Some((lo, hi)), Frame::Integer(t))
                if *t >= lo - TTL_SLACK_MS && *t <= hi + TTL_SLACK_MS => {}
            _ => panic!(
                "{context}: PEXPIRETIME \"{name}\" = {at}, expected {:?}",
                entry.expire
            ),
        }
    }
}

#[test]
fn acknowledged_writes_survive_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let config = dir.path().join("storage.toml");
    std::fs::write(&config, COMPACTION).expect("write the config");
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut model = Model::new();
    let (port, http) = (free_port(), free_port());
    let start = || ZankvNode::must_start_standalone_with(&data_dir, port, http, &config);
    let mut node = start();
    let mut compacted_to = 0;
    for (round, stop) in ROUNDS.iter().enumerate() {
        let deadline = Instant::now() + ROUND_DEADLINE;
        let mut client = node.client();
        must_write_round(&mut client, &mut rng, &mut model, deadline);
        must_match_model(
            &mut client,
            &model,
            &format!("round {round}, before {stop:?}"),
        );
        drop(client);
        let first = must_wait_for_compaction(http, compacted_to, deadline);
        assert!(
            first > compacted_to,
            "round {round}: the raft log was not compacted past index {compacted_to}"
        );
        compacted_to = first;
        match stop {
            Stop::Kill => node.kill9(),
            Stop::Term => {
                let status = node.stop();
                assert!(
                    status.success(),
                    "round {round}: node exited with {status} after SIGTERM"
                );
            }
        }
        node = start();
        let mut client = node.client();
        must_match_model(
            &mut client,
            &model,
            &format!("round {round}, after {stop:?} and restart"),
        );
        assert!(
            Instant::now() < deadline,
            "round {round} took longer than {ROUND_DEADLINE:?}"
        );
        let count = |f: fn(&Value) -> bool| model.values().filter(|e| f(&e.value)).count();
        let hashes = count(|v| matches!(v, Value::Hash(_)));
        let lists = count(|v| matches!(v, Value::List(_)));
        let sets = count(|v| matches!(v, Value::Set(_)));
        assert!(
            hashes > 0 && lists > 0 && sets > 0,
            "round {round} left no hash, list or set to check"
        );
        let with_ttl = model.values().filter(|e| e.expire.is_some()).count();
        eprintln!(
            "round {round} ({stop:?}): {} keys ({hashes} hashes, {lists} lists, {sets} sets, \
             {with_ttl} with a TTL) intact, the log starting at index {compacted_to}",
            model.len()
        );
    }
    assert!(!model.is_empty(), "the rounds left no keys to check");
}

/// The first index of the partition's raft log, as the node's `/status` reports it, once it
/// is past `after` (compaction follows the writes by a tick or two); the last one seen if
/// `deadline` comes first.
fn must_wait_for_compaction(http: u16, after: u64, deadline: Instant) -> u64 {
    let mut first = 0;
    while Instant::now() < deadline {
        if let Ok((200, body)) = try_http(http, "GET", "/status") {
            let status: serde_json::Value = serde_json::from_str(&body).expect("status is JSON");
            first = status["partitions"][0]["raft"]["first_index"]
                .as_u64()
                .expect("first_index in /status");
            if first > after {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    first
}
