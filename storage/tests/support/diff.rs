//! The shared parts of the seeded differential tests against `redis-server`:
//! `differential.rs` (strings, hashes and the generic commands) and
//! `collections_differential.rs` (lists, sets, sorted sets and SORT). Each test keeps its
//! own command generator, checks and wording; what both do alike lives here:
//!
//! - [`Rand`]: the seeded random source and the primitives both generators draw from (a
//!   weighted menu, a chance, a pick, command names and option words in random letter
//!   case, small integers, distinct relative expirations). Nothing here draws on its own:
//!   a generator makes every draw in its own order, so a seed always generates the same
//!   commands.
//! - [`Pair`]: a fresh `redis-server` and the zankv side ([`Target`]) that a seed runs on.
//! - Reply normalisation ([`sorted_items`], [`sorted_pairs`]), full SCAN/HSCAN/SSCAN/ZSCAN
//!   iterations on both servers ([`compare_scans`]) and the judging of random replies
//!   ([`judge_random`]).
//! - [`RunLog`]: the commands before a mismatch, its report, and the per-command stats of
//!   `ZANKV_DIFF_STATS=1`; [`compare_final_state`], the end-of-run comparison of the two
//!   databases; [`send_pipeline`] and [`pipeline_report`] for the pipelined runs.
//! - [`seed_from_env`] reads `ZANKV_DIFF_SEED`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::{escape, show_cmd, Client, Frame, RedisServer, ZankvNode};

/// How many earlier commands a mismatch report shows.
const HISTORY: usize = 15;

/// Upper bound on SCAN/HSCAN/SSCAN/ZSCAN calls for one full iteration.
const MAX_SCAN_CALLS: usize = 10_000;

/// What a mutation ([`Rand::mutate`]) appends to a command.
pub const JUNK: &[&str] = &["x", "", "NX", "-1", "abc\r\n"];

/// How far apart the two servers' PTTL may be at the end of a run, in ms (each counts
/// relative expirations from its own clock).
const FINAL_PTTL_TOLERANCE: i64 = 1500;

/// A string argument's bytes.
pub fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// `ZANKV_DIFF_SEED`, if set.
pub fn seed_from_env() -> Option<u64> {
    let raw = std::env::var("ZANKV_DIFF_SEED").ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|_| panic!("ZANKV_DIFF_SEED={raw:?} is not a u64")),
    )
}

/// `ZANKV_DIFF_SEED` alone, or the `fixed` seeds.
pub fn seeds(fixed: &[u64]) -> Vec<u64> {
    seed_from_env().map_or_else(|| fixed.to_vec(), |seed| vec![seed])
}

/// The arguments of a command line: words separated by spaces. A word in double quotes may
/// be empty, hold spaces, and spell bytes as `\xNN`, `\r`, `\n`, `\"` or `\\`.
pub fn words(line: &str) -> Vec<Vec<u8>> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();
    let mut utf8 = [0u8; 4];
    loop {
        while chars.next_if_eq(&' ').is_some() {}
        let Some(&first) = chars.peek() else {
            return args;
        };
        let mut word = Vec::new();
        if first == '"' {
            chars.next();
            loop {
                match chars.next() {
                    None => panic!("no closing quote in {line:?}"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('x') => {
                            let hex: String = chars.by_ref().take(2).collect();
                            let byte = u8::from_str_radix(&hex, 16)
                                .unwrap_or_else(|_| panic!("bad \\x{hex} in {line:?}"));
                            word.push(byte);
                        }
                        Some('r') => word.push(b'\r'),
                        Some('n') => word.push(b'\n'),
                        Some(c @ ('"' | '\\')) => word.push(c as u8),
                        other => panic!("bad escape \\{other:?} in {line:?}"),
                    },
                    Some(c) => word.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|&c| c != ' ') {
                word.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
        args.push(word);
    }
}

// ---------------------------------------------------------------------------------------
// Random primitives
// ---------------------------------------------------------------------------------------

/// The seeded random source of a command generator, with the primitives both generators
/// use; for the rest it dereferences to its [`fastrand::Rng`]. Deterministic for a seed.
pub struct Rand {
    rng: fastrand::Rng,
    /// Relative expirations already handed out, in seconds (all multiples of 100).
    used_rel: HashSet<i64>,
}

impl Rand {
    /// The source for `seed`.
    pub fn new(seed: u64) -> Rand {
        Rand {
            rng: fastrand::Rng::with_seed(seed),
            used_rel: HashSet::new(),
        }
    }

    /// One of the kinds in `menu`, each as likely as its weight says.
    pub fn weighted<K: Copy>(&mut self, menu: &[(K, u32)]) -> K {
        let total: u32 = menu.iter().map(|(_, w)| w).sum();
        let mut roll = self.rng.u32(0..total);
        for &(kind, weight) in menu {
            if roll < weight {
                return kind;
            }
            roll -= weight;
        }
        menu[0].0
    }

    /// True `percent` times out of 100.
    pub fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(0..100) < percent
    }

    /// One of `items`, each as likely.
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.rng.usize(..items.len())]
    }

    /// The command name, in random letter case now and then.
    pub fn name(&mut self, name: &str) -> Vec<u8> {
        match self.rng.u32(0..10) {
            0 => name.to_ascii_lowercase().into_bytes(),
            1 => name
                .bytes()
                .map(|c| {
                    if self.rng.bool() {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect(),
            _ => b(name),
        }
    }

    /// An option keyword, in random letter case now and then.
    pub fn word(&mut self, word: &str) -> Vec<u8> {
        if self.chance(15) {
            word.to_ascii_lowercase().into_bytes()
        } else {
            b(word)
        }
    }

    /// Mutates a generated command now and then, for wrong arity and syntax errors: drops
    /// its last argument `drop_percent` times in 100 (if it has one besides the name), or
    /// appends one from [`JUNK`] `junk_percent` times in 100.
    pub fn mutate(&mut self, args: &mut Vec<Vec<u8>>, drop_percent: u32, junk_percent: u32) {
        let roll = self.rng.u32(0..100);
        if roll < drop_percent {
            if args.len() > 1 {
                args.pop();
            }
        } else if roll < drop_percent + junk_percent {
            let junk = b(self.pick(JUNK));
            args.push(junk);
        }
    }

    /// An integer in `lo..=hi`, in decimal.
    pub fn small_int(&mut self, lo: i64, hi: i64) -> Vec<u8> {
        self.rng.i64(lo..=hi).to_string().into_bytes()
    }

    /// A distinct relative expiration in seconds, ≥ 100 s, a multiple of 100.
    pub fn fresh_rel_secs(&mut self) -> i64 {
        loop {
            let v = 100 * self.rng.i64(1..=100_000);
            if self.used_rel.insert(v) {
                return v;
            }
        }
    }
}

impl Deref for Rand {
    type Target = fastrand::Rng;

    fn deref(&self) -> &fastrand::Rng {
        &self.rng
    }
}

impl DerefMut for Rand {
    fn deref_mut(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }
}

// ---------------------------------------------------------------------------------------
// The two servers
// ---------------------------------------------------------------------------------------

/// The two servers a seed runs on, with a client of each.
pub struct Pair {
    /// A client of the reference `redis-server`.
    pub redis: Client,
    /// A client of the zankv side.
    pub zankv: Client,
    // Field order: clients close before the servers are killed.
    _redis_server: RedisServer,
    _zankv_node: Option<ZankvNode>,
    _dir: tempfile::TempDir,
}

/// What the zankv side of a pair is.
#[derive(Clone, Copy)]
pub enum Target {
    /// A fresh standalone storage node.
    Node,
    /// A proxy already running on this port, in front of a one-partition namespace; it is
    /// flushed before each seed.
    Proxy(u16),
}

/// Starts a fresh `redis-server` and the zankv side `target`, and connects to both; with
/// `resp3`, both connections send HELLO 3 first.
pub fn must_start_pair_on(resp3: bool, target: Target) -> Pair {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis_server = RedisServer::must_start();
    let (zankv_node, mut zankv) = match target {
        Target::Node => {
            let node = ZankvNode::must_start(&dir.path().join("data"));
            let client = node.client();
            (Some(node), client)
        }
        Target::Proxy(port) => {
            let mut client = Client::connect(port);
            assert_eq!(client.cmd_str(&["FLUSHALL"]), Frame::simple("OK"));
            (None, client)
        }
    };
    let mut redis = redis_server.client();
    if resp3 {
        redis.hello3();
        zankv.hello3();
    }
    Pair {
        redis,
        zankv,
        _redis_server: redis_server,
        _zankv_node: zankv_node,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------
// Comparison
// ---------------------------------------------------------------------------------------

/// Sorts the elements of an array/set reply; other replies are returned unchanged.
pub fn sorted_items(frame: Frame) -> Frame {
    match frame {
        Frame::Array(mut items) => {
            items.sort_by_key(Frame::sort_key);
            Frame::Array(items)
        }
        Frame::Set(mut items) => {
            items.sort_by_key(Frame::sort_key);
            Frame::Set(items)
        }
        other => other,
    }
}

/// Turns a flat field/value array or a map into a map with sorted pairs.
pub fn sorted_pairs(frame: Frame) -> Frame {
    let mut pairs = match frame {
        Frame::Map(pairs) => pairs,
        Frame::Array(items) if items.len().is_multiple_of(2) => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        other => return other,
    };
    pairs.sort_by_key(|(k, v)| (k.sort_key(), v.sort_key()));
    Frame::Map(pairs)
}

/// Iterates SCAN/HSCAN/SSCAN/ZSCAN from the cursor in `args` (at `cursor_at`) to the end;
/// returns the sorted, deduplicated keys (members; with `pairs`, HSCAN's field/value or
/// ZSCAN's member/score pairs as two-element arrays), or the first reply that is not a
/// scan page.
fn scan_all(
    client: &mut Client,
    args: &[Vec<u8>],
    cursor_at: usize,
    pairs: bool,
) -> Result<Vec<Frame>, Frame> {
    let mut args = args.to_vec();
    let mut found = Vec::new();
    for _ in 0..MAX_SCAN_CALLS {
        let reply = client.cmd_vec(&args);
        let (cursor, items) = match &reply {
            Frame::Array(page) if page.len() == 2 => match (&page[0], page[1].as_items()) {
                (Frame::Bulk(cursor), Some(items)) if !pairs || items.len().is_multiple_of(2) => {
                    (cursor.clone(), items.to_vec())
                }
                _ => return Err(reply),
            },
            _ => return Err(reply),
        };
        if pairs {
            found.extend(items.chunks(2).map(|pair| Frame::Array(pair.to_vec())));
        } else {
            found.extend(items);
        }
        if cursor == b"0" {
            found.sort_by_key(Frame::sort_key);
            found.dedup();
            return Ok(found);
        }
        args[cursor_at] = cursor;
    }
    Err(Frame::error("harness: scan did not reach cursor 0"))
}

/// Iterates a SCAN-family command (see [`scan_all`]) on both servers; the results must be
/// the same. Returns redis's result for the history (the full iteration as one array, or
/// the reply that stopped it), or a description of the difference.
pub fn compare_scans(
    redis: &mut Client,
    zankv: &mut Client,
    args: &[Vec<u8>],
    cursor_at: usize,
    pairs: bool,
) -> Result<Frame, String> {
    let a = scan_all(redis, args, cursor_at, pairs);
    let z = scan_all(zankv, args, cursor_at, pairs);
    let show = |r: &Result<Vec<Frame>, Frame>| match r {
        Ok(items) => format!("full iteration {}", Frame::Array(items.clone())),
        Err(f) => f.to_string(),
    };
    if a == z {
        Ok(match a {
            Ok(items) => Frame::Array(items),
            Err(f) => f,
        })
    } else {
        Err(format!(
            "scan results differ\n  redis: {}\n  zankv: {}",
            show(&a),
            show(&z)
        ))
    }
}

/// Checks a random reply (the command's arguments, the reply) against the server that gave
/// it.
pub type RandomCheck = fn(&mut Client, &[Vec<u8>], &Frame) -> Result<(), String>;

/// Judges redis's reply `a` and zankv's reply `z` to a command whose answer is random
/// (HRANDFIELD, SRANDMEMBER, ZRANDMEMBER): when either is an error or their shapes (as
/// `shape` empties them) differ, they must be equal; otherwise `check` must accept zankv's
/// reply on zankv, then redis's on redis.
pub fn judge_random(
    redis: &mut Client,
    zankv: &mut Client,
    args: &[Vec<u8>],
    a: &Frame,
    z: &Frame,
    shape: fn(&Frame) -> Frame,
    check: RandomCheck,
) -> Result<(), String> {
    if a.is_error() || z.is_error() || shape(a) != shape(z) {
        if a == z {
            Ok(())
        } else {
            Err("replies differ in shape".to_string())
        }
    } else {
        check(zankv, args, z)
            .map_err(|e| format!("zankv: {e}"))
            .and_then(|_| check(redis, args, a).map_err(|e| format!("redis: {e}")))
    }
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

/// How a differential test names itself in its reports, and what its stats count.
#[derive(Clone, Copy)]
pub struct Suite {
    /// What a mismatch report calls the test: `differential`, `collections differential`.
    pub name: &'static str,
    /// The test target a rerun names: `differential`, `collections_differential`.
    pub target: &'static str,
    /// Whether the test skips some commands, answering for them with a `(not sent: ...)`
    /// simple string: its stats then count such answers among the "errors or skips".
    pub skips: bool,
}

/// Per command name: how often it ran, and how often it met each error (or skip).
type Stats = BTreeMap<String, (usize, BTreeMap<String, usize>)>;

/// The record of one seed's run: the last [`HISTORY`] commands with redis's replies, for a
/// mismatch report, and the stats that `ZANKV_DIFF_STATS` prints.
pub struct RunLog {
    suite: Suite,
    seed: u64,
    proto: &'static str,
    history: VecDeque<String>,
    stats: Stats,
}

impl RunLog {
    /// An empty record of `seed`'s run of `suite`, in RESP3 if `resp3` (else RESP2).
    pub fn new(suite: Suite, seed: u64, resp3: bool) -> RunLog {
        RunLog {
            suite,
            seed,
            proto: if resp3 { "RESP3" } else { "RESP2" },
            history: VecDeque::with_capacity(HISTORY + 1),
            stats: Stats::new(),
        }
    }

    /// `RESP2` or `RESP3`.
    pub fn proto(&self) -> &'static str {
        self.proto
    }

    /// Records command `#i` (`args`, shown as `cmd`), which both servers answered alike,
    /// with redis's reply (or the harness's answer for a skipped command).
    pub fn record(&mut self, i: usize, args: &[Vec<u8>], cmd: &str, reply: &Frame) {
        let skips = self.suite.skips;
        let entry = self
            .stats
            .entry(String::from_utf8_lossy(&args[0]).to_uppercase())
            .or_default();
        entry.0 += 1;
        match reply {
            Frame::Error(e) => {
                *entry
                    .1
                    .entry(String::from_utf8_lossy(e).into_owned())
                    .or_default() += 1;
            }
            Frame::Simple(s) if skips && s.starts_with(b"(not sent") => {
                *entry.1.entry("(not sent)".to_string()).or_default() += 1;
            }
            _ => {}
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(format!("#{i} {cmd} -> {reply}"));
    }

    /// The report of a mismatch at command `#index` (a number, or the end): the command,
    /// what differs, how to rerun the seed, and the commands before it.
    pub fn report(&self, index: &str, cmd: &str, detail: &str) -> String {
        let Suite { name, target, .. } = self.suite;
        let (seed, proto) = (self.seed, self.proto);
        let mut msg = format!(
            "{name} mismatch: seed {seed} ({proto}), command #{index}\n  command: {cmd}\n  \
             {detail}\n  \
             rerun: ZANKV_DIFF_SEED={seed} cargo test -p zankv-storage --test {target}\n  \
             preceding commands (oldest first, with redis's reply):\n"
        );
        for line in &self.history {
            msg.push_str("    ");
            msg.push_str(line);
            msg.push('\n');
        }
        msg
    }

    /// With `ZANKV_DIFF_STATS` set, prints which commands ran and which errors (or skips)
    /// they met: to check the generator's reach.
    pub fn print_stats(&self) {
        if std::env::var_os("ZANKV_DIFF_STATS").is_none() {
            return;
        }
        let met = if self.suite.skips {
            "errors or skips"
        } else {
            "errors"
        };
        for (name, (count, errors)) in &self.stats {
            eprintln!(
                "  {name}: {count} run, {} {met}",
                errors.values().sum::<usize>()
            );
            for (error, n) in errors {
                eprintln!("      {n} x {error}");
            }
        }
    }
}

/// Reads a key's contents for the end-of-run comparison, given the key and its TYPE (the
/// reply's bytes).
pub type Content = fn(&mut Client, &[u8], Option<&[u8]>) -> Frame;

/// Everything a client can see of the database, each part named for a report: KEYS
/// (sorted), DBSIZE, and per key TYPE, its contents (read by `content`) and PTTL.
fn dump(client: &mut Client, content: Content) -> Vec<(String, Frame)> {
    let mut out = Vec::new();
    let keys = sorted_items(client.cmd(&[b"KEYS", b"*"]));
    out.push(("KEYS *".to_string(), keys.clone()));
    out.push(("DBSIZE".to_string(), client.cmd(&[b"DBSIZE"])));
    for key in keys.as_items().unwrap_or(&[]) {
        let Some(key) = key.as_bytes() else { continue };
        let name = escape(key);
        let kind = client.cmd(&[b"TYPE", key]);
        let contents = content(client, key, kind.as_bytes());
        out.push((format!("TYPE {name}"), kind));
        out.push((format!("content of {name}"), contents));
        out.push((format!("PTTL {name}"), client.cmd(&[b"PTTL", key])));
    }
    out
}

/// Sends `args` (command `#i`) to both servers and returns redis's reply; when the replies
/// differ, panics with the run's report, adding what `context` finds on the two servers
/// (the values of the keys involved, say).
pub fn both_alike(
    pair: &mut Pair,
    log: &mut RunLog,
    i: usize,
    args: &[Vec<u8>],
    context: impl FnOnce(&mut Pair) -> String,
) -> Frame {
    let want = pair.redis.cmd_vec(args);
    let got = pair.zankv.cmd_vec(args);
    let cmd = show_cmd(args);
    if want != got {
        let more = context(pair);
        panic!(
            "{}",
            log.report(
                &i.to_string(),
                &cmd,
                &format!("redis: {want}\n  zankv: {got}{more}")
            )
        );
    }
    log.record(i, args, &cmd, &want);
    want
}

/// Compares the two databases after a seed's last command (see [`dump`]): `compare` judges
/// each part (redis's, zankv's), given the tolerance it allows: `Some(ms)` for a PTTL
/// (integers both ≥ 0 may be that far apart), `None` for the rest (exactly equal). Panics
/// with `log`'s report on the first difference.
pub fn compare_final_state(
    pair: &mut Pair,
    log: &RunLog,
    content: Content,
    compare: impl Fn(Option<i64>, &Frame, &Frame) -> Result<(), String>,
) {
    let a = dump(&mut pair.redis, content);
    let z = dump(&mut pair.zankv, content);
    for ((what, fa), (_, fz)) in a.iter().zip(z.iter()) {
        let tolerance = what.starts_with("PTTL").then_some(FINAL_PTTL_TOLERANCE);
        let (mut fa, mut fz) = (fa.clone(), fz.clone());
        if what == "DBSIZE" {
            // A key given an expiration already past (SET ... PXAT <past>, EXPIRE ... -1)
            // may stay counted until each server's expiry removes it: redis's active expiry
            // within about 100 ms, zankv's leader through raft a little later. Both must
            // settle on the same count.
            let settle = Instant::now() + Duration::from_secs(5);
            while fa != fz && Instant::now() < settle {
                std::thread::sleep(Duration::from_millis(100));
                fa = pair.redis.cmd(&[b"DBSIZE"]);
                fz = pair.zankv.cmd(&[b"DBSIZE"]);
            }
        }
        if let Err(why) = compare(tolerance, &fa, &fz) {
            panic!(
                "{}",
                log.report(
                    "end (final state)",
                    what,
                    &format!("{why}\n  redis: {fa}\n  zankv: {fz}")
                )
            );
        }
    }
    if a.len() != z.len() {
        panic!(
            "{}",
            log.report("end (final state)", "KEYS *", "different key sets")
        );
    }
}

/// Sends `commands` to both servers as one pipeline (one write each), and only then reads
/// the replies: (redis's, zankv's) per command. Panics if a server closes the connection.
pub fn send_pipeline(pair: &mut Pair, seed: u64, commands: &[&[Vec<u8>]]) -> Vec<(Frame, Frame)> {
    let wire: Vec<u8> = commands
        .iter()
        .flat_map(|&args| {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            Client::encode(&refs)
        })
        .collect();
    pair.redis.send_raw(&wire);
    pair.zankv.send_raw(&wire);
    commands
        .iter()
        .map(|&args| {
            let a = pair.redis.read_frame().expect("redis answers");
            let z = pair.zankv.read_frame().unwrap_or_else(|| {
                panic!(
                    "seed {seed}: zankv closed the connection at {}",
                    show_cmd(args)
                )
            });
            (a, z)
        })
        .collect()
}

/// The report of a mismatch at command `at` of a pipeline of `commands` with their
/// `replies` (`earlier`: how many commands came before the pipeline, for tests that say):
/// the command, what differs (`why`), how to rerun the seed, and the whole pipeline with
/// redis's replies.
pub fn pipeline_report(
    suite: Suite,
    seed: u64,
    at: usize,
    commands: &[&[Vec<u8>]],
    replies: &[(Frame, Frame)],
    why: &str,
    earlier: Option<usize>,
) -> String {
    let Suite { name, target, .. } = suite;
    let (a, z) = &replies[at];
    let earlier = earlier
        .map(|n| format!(" (after {n} earlier commands)"))
        .unwrap_or_default();
    let pipeline: Vec<String> = commands
        .iter()
        .zip(replies)
        .map(|(&args, (a, _))| format!("    {} -> {a}", show_cmd(args)))
        .collect();
    format!(
        "pipelined {name} mismatch: seed {seed}, command {at} of a pipeline of {}{earlier}\n  \
         command: {}\n  {why}\n  redis: {a}\n  zankv: {z}\n  \
         rerun: ZANKV_DIFF_SEED={seed} cargo test -p zankv-storage --test {target} pipelined\n  \
         the pipeline, with redis's replies:\n{}",
        commands.len(),
        show_cmd(commands[at]),
        pipeline.join("\n")
    )
}
