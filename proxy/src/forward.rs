//! From one client request to its reply: which partitions it needs ([`plan`]), sending it
//! to their leaders ([`Plan::send`]), and waiting for, retrying and merging the replies
//! ([`Plan::finish`]).
//!
//! Rules:
//! - a command whose keys all belong to one partition goes whole to that partition's
//!   leader;
//! - MGET, MSET, DEL, UNLINK, EXISTS and TOUCH whose keys span partitions are split per
//!   partition (keys keep their order within each part) and the replies merged in the
//!   order of the request's keys (MSET is then not atomic across partitions);
//! - any other command whose keys span partitions is refused with `CROSSSLOT`; a keyless
//!   data command goes to every partition (as `ZANKV.ON <partition> ...`) and the replies
//!   are combined (summed, concatenated, ...; SCAN fills a page from the partitions in
//!   turn, [`crate::scan`]);
//! - a reply `ERR_CLUSTER_CHANGED` (the node did not apply it), or a request that never
//!   left the proxy, is sent again to the partition's leader as the node's hint or PD's
//!   table names it, up to `max_retries` times with a growing pause; a request that was
//!   sent and got no reply is sent again only if it is a read; a write then answers
//!   `TIMEOUT ... may or may not have been applied`, never a silent repeat;
//! - a request is sent again only while every later request of the same client pipeline to
//!   the same partition was refused too, or was a read whose reply was lost (none of them
//!   changed anything, and they are all sent again in order); once a later write may have
//!   run, a retry would run after it, out of the client's order, so the request answers its
//!   refusal (which says it was not applied);
//! - the parts of a split or keyless command retry side by side, so the reply waits for the
//!   slowest partition's retries, not for the sum of them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use zankv_commands::{Combine, CommandError, CommandSpec, Fanout, KeyMerge, Protocol, Reply};

use crate::backend::{BackendError, BackendPool, Lane, ReplyReceiver};
use crate::metrics::ProxyMetrics;
use crate::pd_watch::Refresher;
use crate::reply_frames::{array, array_items, error_text, integer};
use crate::routing::{leader_hint, KeyTarget, RoutingTables, SharedTables};
use crate::scan::{page_reply, ScanPage};

/// What forwarding needs from the proxy.
pub struct Forwarder {
    /// The routing tables.
    pub tables: Arc<SharedTables>,
    /// Storage node connections.
    pub backends: BackendPool,
    /// On-demand table fetches.
    pub refresher: Refresher,
    /// Metrics.
    pub metrics: Arc<ProxyMetrics>,
    /// Most re-sends of one request.
    pub max_retries: u32,
    /// First pause before a re-send.
    pub retry_backoff: Duration,
}

/// How the replies of a split command combine.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// MGET: the values, back in the request's key order.
    Values,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the counts.
    Sum,
    /// MSET, FLUSHDB, FLUSHALL: OK when every part is OK.
    AllOk,
    /// KEYS: the arrays, one after the other.
    Concat,
    /// RANDOMKEY: a key of a partition picked at random among those that have one.
    AnyKey,
    /// INFO: the proxy's facts with the storage nodes' key counts and memory
    /// ([`crate::info`](mod@crate::info)).
    Info(Box<crate::info::ClusterInfo>),
    /// SCAN: a page filled from the partitions in turn ([`crate::scan`]).
    Scan(ScanPage),
    /// SCRIPT EXISTS: 1 where every part answers 1.
    AllOf,
    /// SCRIPT KILL: OK if a part killed a script, else UNKILLABLE if one could not, else
    /// NOTBUSY.
    Kill,
    /// EXEC: the transaction's replies put back in queue order among the connection
    /// commands' encoded replies (`None` in each data command's place).
    Exec(Vec<Option<Bytes>>),
}

/// The internal command a storage node runs on one named partition (its
/// `server/resp.rs`).
const ON_PARTITION: &[u8] = b"ZANKV.ON";

/// The internal prefix that names a blocking pop (the storage node's `server/resp.rs`).
const POP_ID: &[u8] = b"ZANKV.POPID";

/// A request (or part of one) for one partition.
pub struct Part {
    request: Bytes,
    target: KeyTarget,
    write: bool,
    /// Indexes, in the whole request's keys, of this part's keys (for [`Merge::Values`]).
    keys: Vec<usize>,
    pending: Option<(ReplyReceiver, Instant)>,
    /// The first outcome, once awaited ahead of its turn (by an earlier request of the
    /// pipeline that wants to be sent again).
    outcome: Option<(Result<Bytes, BackendError>, Instant)>,
    /// Its partition in the table snapshot it was planned with.
    key: PartitionKey,
    /// Whether sending it again keeps its client's order: no later request of its
    /// pipeline went to its partition ([`Plan::follow_with`]), or every one that did
    /// changed nothing ([`Part::decide_retry`]).
    may_retry: bool,
    /// Most times it is sent again, when fewer than the proxy's `max_retries`.
    retries: Option<u32>,
    /// A read any replica may answer: sent on READONLY connections to storage nodes.
    stale: bool,
    /// Where a stale read goes first (a replica picked at random); later tries go to the
    /// leader.
    replica: Option<SocketAddr>,
    /// A blocking pop: sent on a connection of its own, with the time left.
    blocking: Option<Box<Blocking>>,
    /// A script: no reply timeout ([`crate::backend::Backend::send_patient`]).
    patient: bool,
}

/// A blocking pop (BLPOP, BZMPOP, ...) as a part sends it: each try waits on the
/// partition's leader for the time left of the client's timeout, on a connection of its
/// own (a wait holds its connection), closed when the part is dropped (the client left),
/// which ends the wait on the node too. Every try carries the same random id
/// (`ZANKV.POPID <id> ...`), with which the partition runs the pop once however often it
/// is sent: a try whose connection failed is sent again like a refused one, and answers
/// what the first one took if it ran.
pub struct Blocking {
    id: Bytes,
    argv: Vec<Bytes>,
    spec: &'static CommandSpec,
    timeout_ms: u64,
    /// Set by the first try, when there is a timeout.
    deadline: Option<Instant>,
    /// A try's outcome is unknown (it may have popped): one more try must collect it,
    /// even once the timeout has passed.
    unsettled: bool,
    /// Sent as `ZANKV.ON <partition> ...` (a connection restricted to a namespace).
    on_partition: bool,
    link: Option<crate::backend::Dedicated>,
}

impl Blocking {
    /// Whether the timeout has passed and no earlier try is left to collect.
    fn over(&self, now: Instant) -> bool {
        !self.unsettled && self.deadline.is_some_and(|d| d <= now)
    }

    /// The request for a try at `now` to `target`: the command with the time left (0: for
    /// ever); None once the timeout has passed, unless an earlier try is to be collected
    /// (then the shortest wait, 1 ms: the partition answers what that try took, if any).
    fn request(&mut self, target: &KeyTarget, now: Instant) -> Option<Bytes> {
        if self.deadline.is_none() && self.timeout_ms > 0 {
            self.deadline = now.checked_add(Duration::from_millis(self.timeout_ms));
        }
        let left = match self.deadline {
            None => 0,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(now);
                if left.is_zero() && !self.unsettled {
                    return None;
                }
                // Whole milliseconds, rounded up: a wait never ends early.
                u64::try_from(left.as_micros().div_ceil(1000))
                    .unwrap_or(u64::MAX)
                    .max(1)
            }
        };
        let mut argv = zankv_commands::blocking::with_timeout(self.spec, &self.argv, left);
        if self.on_partition {
            argv.splice(
                0..0,
                [
                    Bytes::from_static(ON_PARTITION),
                    Bytes::from(target.namespace.partition_name(target.partition)),
                ],
            );
        }
        argv.splice(0..0, [Bytes::from_static(POP_ID), self.id.clone()]);
        Some(encode_request(&argv))
    }
}

/// A partition as seen in one table snapshot, to compare requests of one pipeline.
pub type PartitionKey = (usize, u32);

/// The requests after one in its client's pipeline, as far as retries need them.
pub trait LaterRequests {
    /// Their parts that went to partition `key`, in pipeline order.
    fn parts_on(&mut self, key: PartitionKey) -> Vec<&mut Part>;
}

/// What a request becomes.
pub enum Plan {
    /// Answered by the proxy itself.
    Reply(Reply),
    /// Sent to partitions; `merge` is None for a request sent whole to one.
    Forward {
        /// The parts, one per partition.
        parts: Vec<Part>,
        /// How their replies combine.
        merge: Option<Merge>,
        /// Number of keys of the whole request.
        keys: usize,
    },
}

/// Encodes `argv` as a RESP request.
pub fn encode_request(argv: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + argv.iter().map(|a| a.len() + 16).sum::<usize>());
    put_header(&mut out, b'*', argv.len());
    for a in argv {
        put_header(&mut out, b'$', a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out.freeze()
}

/// Appends `kind`, `n` in decimal and CRLF (an array's or a bulk string's header).
fn put_header(out: &mut BytesMut, kind: u8, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The merge of a command that may be split across partitions, and how many arguments
/// each of its keys takes (the key and its value for MSET), as its spec says.
fn splittable(spec: &CommandSpec) -> Option<(Merge, usize)> {
    match spec.fanout {
        Fanout::SplitByKey { per_key, merge } => Some((
            match merge {
                KeyMerge::Values => Merge::Values,
                KeyMerge::Sum => Merge::Sum,
                KeyMerge::AllOk => Merge::AllOk,
            },
            per_key,
        )),
        Fanout::OnePartition | Fanout::AnyPartition | Fanout::EveryPartition(_) => None,
    }
}

/// A cluster connection's share of the partitions for keyless commands: partition `i` (in
/// [`RoutingTables::all_partitions`] order) is covered by proxy `i % of`, so the proxies'
/// answers summed or merged by a cluster client count every key once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// This proxy's place among the live proxies.
    pub index: usize,
    /// Live proxies.
    pub of: usize,
}

/// What a connection's commands reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope<'a> {
    /// A connection whose password is restricted to this namespace: its keys must be
    /// there, and keyless commands cover only its partitions.
    pub namespace: Option<&'a str>,
    /// A cluster connection: keyless commands cover this share of the partitions.
    pub share: Option<Share>,
    /// A connection that sent READONLY: its reads of keys may be answered by any replica.
    pub readonly: bool,
}

impl<'a> From<Option<&'a str>> for Scope<'a> {
    fn from(namespace: Option<&'a str>) -> Scope<'a> {
        Scope {
            namespace,
            share: None,
            readonly: false,
        }
    }
}

/// Decides where `argv` (a data command that parsed, with `spec`) goes, for a connection
/// reaching `scope`.
pub fn plan<'a>(
    argv: &[Bytes],
    spec: &'static CommandSpec,
    tables: &RoutingTables,
    scope: impl Into<Scope<'a>>,
) -> Plan {
    let scope: Scope = scope.into();
    let write = spec.is_write();
    let positions: Vec<usize> = spec.key_positions(argv).collect();
    if positions.is_empty() {
        return every_partition(argv.to_vec(), spec, &partitions_in(tables, scope));
    }
    let mut targets: Vec<KeyTarget> = Vec::with_capacity(positions.len());
    for &pos in &positions {
        match tables.locate(&argv[pos]) {
            Ok(t) if scope.namespace.is_some_and(|ns| ns != t.namespace.name) => {
                return Plan::Reply(Reply::Error(CommandError::NoPerm))
            }
            Ok(t) => targets.push(t),
            Err(e) => return Plan::Reply(Reply::Error(e)),
        }
    }
    // A connection restricted to a namespace has the storage node check, by its own
    // routing, that the keys are in the partition the proxy picked: a namespace the proxy
    // has not heard of yet cannot pass for the connection's own.
    let request = |target: &KeyTarget, argv: &[Bytes]| match scope.namespace {
        Some(_) => on_partition(target, argv),
        None => encode_request(argv),
    };
    // A read of a READONLY connection, or of a namespace with stale reads, may be answered
    // by any replica.
    let part = |request: Bytes, target: KeyTarget, keys: Vec<usize>| {
        let stale = !write && (scope.readonly || target.namespace.stale_reads);
        let part = Part::new(request, target, write, keys);
        if stale {
            part.stale_read()
        } else {
            part
        }
    };
    let first = &targets[0];
    if targets.iter().all(|t| t.same_partition(first)) {
        let mut whole = part(request(first, argv), first.clone(), vec![]).patient(spec);
        if let Some(Ok(timeout_ms)) = zankv_commands::blocking::timeout_ms(spec, argv) {
            whole = whole.blocking(argv, spec, timeout_ms, scope.namespace.is_some());
        }
        return Plan::Forward {
            parts: vec![whole],
            merge: None,
            keys: positions.len(),
        };
    }
    let Some((merge, width)) = splittable(spec) else {
        return Plan::Reply(Reply::Error(CommandError::CrossSlot));
    };
    // Group the keys by partition, in order of first appearance.
    let mut groups: Vec<(KeyTarget, Vec<usize>)> = Vec::new();
    for (i, t) in targets.into_iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| g.same_partition(&t)) {
            Some((_, keys)) => keys.push(i),
            None => groups.push((t, vec![i])),
        }
    }
    let parts = groups
        .into_iter()
        .map(|(target, keys)| {
            let mut sub = Vec::with_capacity(1 + keys.len() * width);
            sub.push(argv[0].clone());
            for &k in &keys {
                let pos = positions[k];
                sub.extend(argv[pos..pos + width].iter().cloned());
            }
            part(request(&target, &sub), target, keys)
        })
        .collect();
    Plan::Forward {
        parts,
        merge: Some(merge),
        keys: positions.len(),
    }
}

/// The partitions a connection's keyless commands cover: its namespace's, or every one;
/// for a cluster connection, this proxy's share of those.
pub(crate) fn partitions_in(tables: &RoutingTables, scope: Scope) -> Vec<KeyTarget> {
    let mut all = tables.all_partitions();
    if let Some(ns) = scope.namespace {
        all.retain(|t| t.namespace.name == ns);
    }
    if let Some(Share { index, of }) = scope.share {
        all = all
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % of == index)
            .map(|(_, t)| t)
            .collect();
    }
    all
}

/// `argv` wrapped to run on `target`'s partition (`ZANKV.ON <namespace>-<partition> ...`).
pub(crate) fn on_partition(target: &KeyTarget, argv: &[Bytes]) -> Bytes {
    let mut wrapped = Vec::with_capacity(argv.len() + 2);
    wrapped.push(Bytes::from_static(ON_PARTITION));
    wrapped.push(Bytes::from(
        target.namespace.partition_name(target.partition),
    ));
    wrapped.extend(argv.iter().cloned());
    encode_request(&wrapped)
}

/// A keyless data command over the partitions `all` (in
/// [`RoutingTables::all_partitions`] order).
fn every_partition(argv: Vec<Bytes>, spec: &'static CommandSpec, all: &[KeyTarget]) -> Plan {
    if all.is_empty() {
        return Plan::Reply(Reply::Error(CommandError::ClusterChanged(
            "the proxy knows no namespace yet".into(),
        )));
    }
    let on = |target: &KeyTarget, argv: &[Bytes]| {
        Part::new(
            on_partition(target, argv),
            target.clone(),
            spec.is_write(),
            vec![],
        )
    };
    let combine = match spec.fanout {
        Fanout::EveryPartition(combine) => combine,
        // A script that names no keys runs on one partition, picked at random.
        Fanout::AnyPartition => {
            return Plan::Forward {
                parts: vec![on(&all[fastrand::usize(..all.len())], &argv).patient(spec)],
                merge: None,
                keys: 0,
            }
        }
        Fanout::OnePartition | Fanout::SplitByKey { .. } => {
            return Plan::Reply(Reply::Error(CommandError::NotAcrossPartitions(
                spec.name.to_string(),
            )))
        }
    };
    let merge = match combine {
        Combine::Sum => Merge::Sum,
        Combine::Concat => Merge::Concat,
        // Every part answers alike: the first answer, or the first error.
        Combine::AllOk | Combine::Same => Merge::AllOk,
        Combine::AllOf => Merge::AllOf,
        Combine::Kill => Merge::Kill,
        Combine::AnyKey => Merge::AnyKey,
        Combine::Scan => {
            return match ScanPage::start(argv, all) {
                Ok((page, target, argv)) => Plan::Forward {
                    parts: vec![on(&target, &argv)],
                    merge: Some(Merge::Scan(page)),
                    keys: 0,
                },
                Err(e) => Plan::Reply(Reply::Error(e)),
            };
        }
    };
    Plan::Forward {
        parts: all.iter().map(|t| on(t, &argv)).collect(),
        merge: Some(merge),
        keys: 0,
    }
}

impl Part {
    pub(crate) fn new(request: Bytes, target: KeyTarget, write: bool, keys: Vec<usize>) -> Part {
        Part {
            request,
            write,
            keys,
            pending: None,
            outcome: None,
            key: (Arc::as_ptr(&target.namespace) as usize, target.partition),
            target,
            may_retry: true,
            retries: None,
            stale: false,
            replica: None,
            blocking: None,
            patient: false,
        }
    }

    /// The part, as a script (it waits for its reply however long the script runs).
    fn patient(mut self, spec: &CommandSpec) -> Part {
        self.patient = spec.access == zankv_commands::Access::Script;
        self
    }

    /// The part, as the blocking pop `argv` (see [`Blocking`]).
    fn blocking(
        mut self,
        argv: &[Bytes],
        spec: &'static CommandSpec,
        timeout_ms: u64,
        on_partition: bool,
    ) -> Part {
        self.blocking = Some(Box::new(Blocking {
            id: Bytes::from(format!("{:032x}", fastrand::u128(..))),
            argv: argv.to_vec(),
            spec,
            timeout_ms,
            deadline: None,
            unsettled: false,
            on_partition,
            link: None,
        }));
        self
    }

    /// The part, as a read any replica of its partition may answer.
    fn stale_read(mut self) -> Part {
        self.replica = self.target.any_replica();
        self.stale = true;
        self
    }

    /// The part, sent again at most `n` times (or the proxy's `max_retries`, if fewer).
    pub(crate) fn with_retries(mut self, n: u32) -> Part {
        self.retries = Some(n);
        self
    }

    /// The reply or failure of the last send, awaited now unless it already was.
    async fn first_outcome(&mut self) -> &(Result<Bytes, BackendError>, Instant) {
        if self.outcome.is_none() {
            let outcome = match self.pending.take() {
                // A reply channel dropped unanswered: the request may have been written.
                Some((rx, at)) => (
                    rx.await.unwrap_or_else(|_| {
                        Err(BackendError::Lost("the connection task ended".into()))
                    }),
                    at,
                ),
                None => (
                    Err(BackendError::NotSent(format!(
                        "no leader of {} is known",
                        self.target.namespace.partition_name(self.target.partition)
                    ))),
                    Instant::now(),
                ),
            };
            self.outcome = Some(outcome);
        }
        self.outcome.as_ref().expect("just filled")
    }

    /// Whether its first outcome shows it changed nothing, so that it may be sent again,
    /// and an earlier request of its pipeline before it: it was refused or never sent, or
    /// it is a read whose reply was lost.
    async fn changed_nothing(&mut self) -> bool {
        let write = self.write;
        match &self.first_outcome().await.0 {
            Ok(reply) => error_text(reply).is_some_and(|t| t.starts_with(b"ERR_CLUSTER_CHANGED")),
            Err(BackendError::NotSent(_)) => true,
            Err(BackendError::Lost(_)) => !write,
        }
    }

    /// Decides, once its first outcome is in, whether sending it again keeps its client's
    /// order: when a later request of the pipeline went to its partition, only if every
    /// such request changed nothing either. The answer cannot change later (outcomes are
    /// kept once awaited), so the retries themselves need no look at the pipeline.
    async fn decide_retry(&mut self, later: &mut (dyn LaterRequests + Send)) {
        if self.may_retry || !self.changed_nothing().await {
            return;
        }
        self.may_retry = true;
        for p in later.parts_on(self.key) {
            if !p.changed_nothing().await {
                self.may_retry = false;
                return;
            }
        }
    }

    async fn send(&mut self, fwd: &Forwarder, protocol: Protocol, now: Instant) {
        let to = match self.replica.take() {
            Some(replica) => Some(replica),
            None => self.target.leader(),
        };
        if let Some(b) = &mut self.blocking {
            // A try after the timeout passed is not sent: `finish` answers the timeout.
            let (Some(addr), Some(request)) = (to, b.request(&self.target, now)) else {
                self.pending = None;
                return;
            };
            fwd.metrics.namespace_command(&self.target.namespace.name);
            let link = match b.link.take() {
                Some(link)
                    if link.addr == addr && link.protocol == protocol && !link.is_closed() =>
                {
                    link
                }
                _ => fwd.backends.dedicated(addr, protocol),
            };
            self.pending = Some((link.send(request).await, now));
            b.link = Some(link);
            return;
        }
        self.pending = match to {
            Some(addr) => {
                fwd.metrics.namespace_command(&self.target.namespace.name);
                let lane = if self.patient {
                    Lane::Scripts
                } else if self.stale {
                    Lane::ReadOnly
                } else {
                    Lane::Shared
                };
                let backend = fwd.backends.get(
                    addr,
                    protocol,
                    &self.target.namespace.name,
                    self.target.partition,
                    lane,
                );
                let request = self.request.clone();
                let rx = if self.patient {
                    backend.send_patient(request).await
                } else {
                    backend.send(request).await
                };
                Some((rx, now))
            }
            None => None,
        };
    }

    /// Waits for the reply, sending the request again while that is safe and useful
    /// ([`Part::decide_retry`] has run).
    async fn finish(&mut self, fwd: &Forwarder, protocol: Protocol) -> Bytes {
        let mut backoff = fwd.retry_backoff;
        let mut attempt = 0;
        loop {
            self.first_outcome().await;
            let (outcome, sent_at) = self.outcome.take().expect("awaited");
            let (reason, hint, last) = match outcome {
                Ok(reply) => match error_text(&reply) {
                    Some(text) if text.starts_with(b"ERR_CLUSTER_CHANGED") => {
                        ("moved", leader_hint(text), Ok(reply))
                    }
                    // A pop whose outcome the node does not know: its id makes it safe
                    // to send again.
                    Some(text) if self.blocking.is_some() && text.starts_with(b"TIMEOUT") => {
                        ("lost_pop", None, Ok(reply))
                    }
                    _ => return reply,
                },
                Err(BackendError::NotSent(why)) => (
                    if self.target.leader().is_some() {
                        "unreachable"
                    } else {
                        "no_leader"
                    },
                    None,
                    Err(why),
                ),
                Err(BackendError::Lost(why)) if !self.write => ("lost_read", None, Err(why)),
                // Its id makes a pop safe to send again: it runs once.
                Err(BackendError::Lost(why)) if self.blocking.is_some() => {
                    ("lost_pop", None, Err(why))
                }
                Err(BackendError::Lost(why)) => {
                    return encode(
                        &Reply::Error(CommandError::WriteOutcomeUnknown(why)),
                        protocol,
                    )
                }
            };
            if let Some(b) = &mut self.blocking {
                b.unsettled |= reason == "lost_pop";
                if b.over(Instant::now()) {
                    // Refused after its time was up, nothing to collect: the wait is over.
                    return encode(&zankv_commands::blocking::timed_out(), protocol);
                }
                // A try that a node held for a while (not one that failed to connect):
                // a new failure, with retries of its own (a long wait may live through
                // many leader changes).
                let held = matches!(reason, "moved" | "lost_pop");
                if held && sent_at.elapsed() > Duration::from_secs(1) {
                    attempt = 0;
                    backoff = fwd.retry_backoff;
                }
            }
            let max_retries = self
                .retries
                .map_or(fwd.max_retries, |n| n.min(fwd.max_retries));
            if attempt >= max_retries || !self.may_retry {
                return match last {
                    Ok(reply) => reply,
                    Err(why) => encode(&Reply::Error(CommandError::ClusterChanged(why)), protocol),
                };
            }
            attempt += 1;
            fwd.metrics.retry(reason);
            let name = self.target.namespace.name.clone();
            let partition = self.target.partition;
            match hint {
                // The node named the leader: go there at once.
                Some(addr) if Some(addr) != self.target.leader() => {
                    fwd.tables.update(|t| t.hint_leader(&name, partition, addr));
                }
                _ => {
                    // When the table already names another leader (an earlier request's
                    // refresh, or PD's stream), go there at once.
                    let now =
                        retarget(&fwd.tables.load(), &name, partition).and_then(|t| t.leader());
                    if now.is_none() || now == self.target.leader() {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        fwd.refresher.refresh(&name, sent_at).await;
                    }
                }
            }
            match retarget(&fwd.tables.load(), &name, partition) {
                Some(target) => self.target = target,
                None => {
                    return encode(
                        &Reply::Error(CommandError::ClusterChanged(format!(
                            "namespace {name} no longer exists"
                        ))),
                        protocol,
                    )
                }
            }
            self.send(fwd, protocol, Instant::now()).await;
        }
    }
}

/// The same partition in the tables now (its leader may have changed).
fn retarget(tables: &RoutingTables, namespace: &str, partition: u32) -> Option<KeyTarget> {
    let ns = tables.namespace(namespace)?;
    (partition < ns.partitions).then(|| KeyTarget {
        namespace: ns.clone(),
        partition,
    })
}

fn encode(reply: &Reply, protocol: Protocol) -> Bytes {
    let mut out = BytesMut::new();
    reply.encode(protocol, &mut out);
    out.freeze()
}

impl Plan {
    /// Forbids re-sending the parts whose partition is in `later` (partitions that
    /// requests after this one in the same pipeline went to), then adds this plan's
    /// partitions to it. Called for a pipeline's plans from the last to the first.
    pub fn follow_with(&mut self, later: &mut std::collections::HashSet<PartitionKey>) {
        if let Plan::Forward { parts, .. } = self {
            for part in parts.iter_mut() {
                part.may_retry = !later.contains(&part.key);
            }
            later.extend(parts.iter().map(|p| p.key));
        }
    }

    /// Its parts that went to partition `key`.
    pub fn parts_on(&mut self, key: PartitionKey) -> impl Iterator<Item = &mut Part> {
        let parts = match self {
            Plan::Forward { parts, .. } => parts.as_mut_slice(),
            Plan::Reply(_) => &mut [],
        };
        parts.iter_mut().filter(move |p| p.key == key)
    }

    /// Sends every part to its partition's leader; `now` is when the request was read
    /// (a routing error is then met by a table fetched after it).
    pub async fn send(&mut self, fwd: &Forwarder, protocol: Protocol, now: Instant) {
        if let Plan::Forward { parts, .. } = self {
            for part in parts {
                part.send(fwd, protocol, now).await;
            }
        }
    }

    /// The reply, encoded for `protocol`; `later` are the requests after it in its
    /// client's pipeline.
    pub async fn finish(
        self,
        fwd: &Forwarder,
        protocol: Protocol,
        later: &mut (dyn LaterRequests + Send),
    ) -> Bytes {
        let (mut parts, merge, keys) = match self {
            Plan::Reply(reply) => return encode(&reply, protocol),
            Plan::Forward { parts, merge, keys } => (parts, merge, keys),
        };
        for part in &mut parts {
            part.decide_retry(later).await;
        }
        let merge = match merge {
            None => return parts[0].finish(fwd, protocol).await,
            Some(Merge::Scan(page)) => return scan_page(fwd, protocol, parts, page).await,
            Some(merge) => merge,
        };
        // The parts retry side by side: a partition without a leader delays the reply by
        // its own retries, not by those of every such partition in turn.
        let mut replies = join_all(parts.iter_mut().map(|p| p.finish(fwd, protocol))).await;
        if let Merge::Info(info) = merge {
            return crate::info::merge(*info, &replies, protocol);
        }
        if let Merge::Exec(answers) = merge {
            // A watched key changed (a null reply), or the transaction's replies.
            let reply = replies.swap_remove(0);
            if error_text(&reply).is_some() || is_nil(&reply) {
                return reply;
            }
            return array_items(&reply, protocol)
                .and_then(|items| zankv_commands::transaction::in_queue_order(answers, items))
                .map_or_else(|| unexpected(protocol), |all| array(&all));
        }
        if let Merge::Kill = merge {
            // OK where a script stopped, else what says the most: UNKILLABLE, then BUSY
            // (only the other kind runs), then NOTBUSY.
            let killed = replies.iter().position(|r| r.as_ref() == b"+OK\r\n");
            let unkillable = replies.iter().position(|r| r.starts_with(b"-UNKILLABLE"));
            let busy = replies.iter().position(|r| r.starts_with(b"-BUSY"));
            return replies.swap_remove(killed.or(unkillable).or(busy).unwrap_or(0));
        }
        // The first error of any part is the answer.
        if let Some(e) = replies.iter().find(|r| error_text(r).is_some()) {
            return e.clone();
        }
        match merge {
            Merge::AllOk => replies.swap_remove(0),
            Merge::Sum => {
                let mut total = 0i64;
                for r in &replies {
                    match integer(r) {
                        Some(n) => total += n,
                        None => return unexpected(protocol),
                    }
                }
                encode(&Reply::Integer(total), protocol)
            }
            Merge::Info(_) | Merge::Exec(_) | Merge::Kill => unreachable!("merged above"),
            Merge::AllOf => {
                let mut all: Option<Vec<i64>> = None;
                for r in &replies {
                    let Some(flags) = array_items(r, protocol).and_then(|items| {
                        items.iter().map(|i| integer(i)).collect::<Option<Vec<_>>>()
                    }) else {
                        return unexpected(protocol);
                    };
                    all = Some(match all {
                        None => flags,
                        Some(so_far) if so_far.len() == flags.len() => so_far
                            .into_iter()
                            .zip(flags)
                            .map(|(a, b)| i64::from(a == 1 && b == 1))
                            .collect(),
                        Some(_) => return unexpected(protocol),
                    });
                }
                let flags = all.unwrap_or_default();
                encode(
                    &Reply::Array(flags.into_iter().map(Reply::Integer).collect()),
                    protocol,
                )
            }
            Merge::Concat => {
                let mut all = Vec::new();
                for r in &replies {
                    match array_items(r, protocol) {
                        Some(items) => all.extend(items),
                        None => return unexpected(protocol),
                    }
                }
                array(&all)
            }
            Merge::AnyKey => {
                let found: Vec<&Bytes> = replies.iter().filter(|r| !is_nil(r)).collect();
                match found.len() {
                    0 => replies.swap_remove(0),
                    n => found[fastrand::usize(..n)].clone(),
                }
            }
            Merge::Scan(_) => unreachable!("paged above"),
            Merge::Values => {
                let mut values: Vec<Option<Bytes>> = vec![None; keys];
                for (part, reply) in parts.iter().zip(&replies) {
                    let Some(items) = array_items(reply, protocol) else {
                        return unexpected(protocol);
                    };
                    if items.len() != part.keys.len() {
                        return unexpected(protocol);
                    }
                    for (&k, item) in part.keys.iter().zip(items) {
                        values[k] = Some(item);
                    }
                }
                let values: Option<Vec<Bytes>> = values.into_iter().collect();
                match values {
                    Some(v) => array(&v),
                    None => unexpected(protocol),
                }
            }
        }
    }
}

/// Whether a reply is nil (RESP2 `$-1` or `*-1`, RESP3 `_`).
/// Fills a SCAN page: the first step's `parts`, then the next partitions' (or the same
/// one's further on) while the page wants more keys.
async fn scan_page(
    fwd: &Forwarder,
    protocol: Protocol,
    mut parts: Vec<Part>,
    mut page: ScanPage,
) -> Bytes {
    let mut part = parts.swap_remove(0);
    let mut keys = Vec::new();
    let mut steps = 0;
    loop {
        let reply = part.finish(fwd, protocol).await;
        steps += 1;
        if error_text(&reply).is_some() {
            return reply;
        }
        let Some(items) = array_items(&reply, protocol) else {
            return unexpected(protocol);
        };
        let [cursor, step_keys] = items.as_slice() else {
            return unexpected(protocol);
        };
        let (Some(node_cursor), Some(step_keys)) =
            (bulk_u64(cursor), array_items(step_keys, protocol))
        else {
            return unexpected(protocol);
        };
        match page.take(node_cursor, step_keys, &mut keys, steps) {
            (next, None) => return page_reply(next, &keys, protocol),
            (_, Some((target, argv))) => {
                part = Part::new(on_partition(&target, &argv), target, false, vec![]);
                part.send(fwd, protocol, Instant::now()).await;
            }
        }
    }
}

fn is_nil(reply: &[u8]) -> bool {
    matches!(reply, b"$-1\r\n" | b"*-1\r\n" | b"_\r\n")
}

/// The number in a bulk string reply.
fn bulk_u64(reply: &[u8]) -> Option<u64> {
    let rest = reply.strip_prefix(b"$")?;
    let start = rest.iter().position(|&b| b == b'\n')? + 1;
    let body = rest[start..].strip_suffix(b"\r\n")?;
    std::str::from_utf8(body).ok()?.parse().ok()
}

pub(crate) fn unexpected(protocol: Protocol) -> Bytes {
    encode(
        &Reply::Error(CommandError::Internal(
            "a storage node's reply to part of a split command has an unexpected shape".into(),
        )),
        protocol,
    )
}

/// The leader address a plan's first part goes to (tests and logs).
pub fn first_leader(plan: &Plan) -> Option<SocketAddr> {
    match plan {
        Plan::Forward { parts, .. } => parts.first().and_then(|p| p.target.leader()),
        Plan::Reply(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::INDEX_BITS as SCAN_INDEX_BITS;
    use std::collections::BTreeMap;
    use zankv_pd_api::{QueryNode, QueryPartition, QueryResponse};

    #[test]
    fn requests_are_encoded_as_resp_arrays_of_bulk_strings() {
        let long = "x".repeat(12_345);
        let args: Vec<Bytes> = [
            "SET",
            "",
            long.as_str(),
            "7",
            "8",
            "9",
            "a",
            "b",
            "c",
            "d",
            "e",
        ]
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
        let mut want = b"*11\r\n$3\r\nSET\r\n$0\r\n\r\n$12345\r\n".to_vec();
        want.extend_from_slice(long.as_bytes());
        want.extend_from_slice(b"\r\n");
        for a in ["7", "8", "9", "a", "b", "c", "d", "e"] {
            want.extend_from_slice(format!("$1\r\n{a}\r\n").as_bytes());
        }
        assert_eq!(encode_request(&args), Bytes::from(want));
        assert_eq!(encode_request(&[]), Bytes::from_static(b"*0\r\n"));
    }

    fn tables(partitions: u32) -> RoutingTables {
        let mut t = RoutingTables::new("default");
        t.apply_table("default", &table(partitions));
        t
    }

    fn table(partitions: u32) -> QueryResponse {
        QueryResponse {
            epoch: 1,
            partition_num: partitions,
            replicator: 1,
            expire_policy: "wait_compact".into(),
            fsync_optimized: true,
            eng_type: "rockredis".into(),
            hash_tags: false,
            stale_reads: false,
            partitions: (0..partitions)
                .map(|p| {
                    let node = QueryNode {
                        node_id: p.to_string(),
                        broadcast_address: "127.0.0.1".into(),
                        hostname: "127.0.0.1".into(),
                        redis_port: (7000 + p).to_string(),
                        http_port: "0".into(),
                        grpc_port: "0".into(),
                        version: "0".into(),
                        dc_info: String::new(),
                    };
                    (
                        p.to_string(),
                        QueryPartition {
                            leader: Some(node),
                            replicas: vec![],
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn argv(args: &[&str]) -> (Vec<Bytes>, &'static CommandSpec) {
        let argv = raw(args);
        let (_, spec) = zankv_commands::parse(&argv).unwrap();
        (argv, spec)
    }

    fn raw(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::from(a.to_string())).collect()
    }

    /// Keys `count` keys apart in partitions: two in partition a, one in b.
    fn keys_in_two_partitions(t: &RoutingTables) -> (String, String, String) {
        let p = |k: &str| t.locate(k.as_bytes()).unwrap().partition;
        let a = "k0".to_string();
        let same = (1..1000)
            .map(|i| format!("k{i}"))
            .find(|k| p(k) == p(&a))
            .unwrap();
        let other = (1..1000)
            .map(|i| format!("k{i}"))
            .find(|k| p(k) != p(&a))
            .unwrap();
        (a, same, other)
    }

    #[test]
    fn one_partition_goes_whole_and_split_commands_keep_their_key_order() {
        let t = tables(4);
        let (a, same, other) = keys_in_two_partitions(&t);
        let (v, spec) = argv(&["GET", &a]);
        let Plan::Forward { parts, merge, .. } = plan(&v, spec, &t, None) else {
            panic!("forwarded")
        };
        assert_eq!(parts.len(), 1);
        assert_eq!(merge, None);
        assert_eq!(parts[0].request, encode_request(&v));
        let (v, spec) = argv(&["MGET", &a, &other, &same]);
        let Plan::Forward { parts, merge, keys } = plan(&v, spec, &t, None) else {
            panic!("forwarded")
        };
        assert_eq!((merge, keys, parts.len()), (Some(Merge::Values), 3, 2));
        assert_eq!(parts[0].keys, vec![0, 2]);
        assert_eq!(
            parts[0].request,
            encode_request(&argv(&["MGET", &a, &same]).0)
        );
        assert_eq!(parts[1].keys, vec![1]);
        let (v, spec) = argv(&["MSET", &a, "1", &other, "2"]);
        let Plan::Forward { parts, merge, .. } = plan(&v, spec, &t, None) else {
            panic!("forwarded")
        };
        assert_eq!(merge, Some(Merge::AllOk));
        assert_eq!(
            parts[1].request,
            encode_request(&argv(&["MSET", &other, "2"]).0)
        );
    }

    #[test]
    fn keyless_commands_go_to_every_partition_and_scan_cursors_carry_the_partition() {
        let t = tables(4);
        let (v, spec) = argv(&["DBSIZE"]);
        let Plan::Forward { parts, merge, .. } = plan(&v, spec, &t, None) else {
            panic!("forwarded")
        };
        assert_eq!(merge, Some(Merge::Sum));
        assert_eq!(parts.len(), 4);
        assert_eq!(
            parts[2].request,
            encode_request(&raw(&["ZANKV.ON", "default-2", "DBSIZE"]))
        );
        // Cursor 0 starts at partition 0; the storage cursor rides above the index.
        let (v, spec) = argv(&[
            "SCAN",
            &((77u64 << SCAN_INDEX_BITS) | 3).to_string(),
            "COUNT",
            "5",
        ]);
        let Plan::Forward { parts, merge, .. } = plan(&v, spec, &t, None) else {
            panic!("forwarded")
        };
        let Some(Merge::Scan(page)) = merge else {
            panic!("a scan page")
        };
        assert_eq!(page.index, 3);
        assert_eq!(
            parts[0].request,
            encode_request(&raw(&["ZANKV.ON", "default-3", "SCAN", "77", "COUNT", "5"]))
        );
        let (v, spec) = argv(&["SCAN", "9"]);
        assert!(matches!(
            plan(&v, spec, &t, None),
            Plan::Reply(Reply::Error(CommandError::InvalidCursor))
        ));
        assert_eq!(bulk_u64(b"$3\r\n123\r\n"), Some(123));
        assert!(is_nil(b"$-1\r\n") && is_nil(b"_\r\n") && !is_nil(b"$1\r\na\r\n"));
    }

    #[test]
    fn a_request_followed_by_one_to_its_partition_is_not_sent_again() {
        let t = tables(4);
        let (a, same, other) = keys_in_two_partitions(&t);
        let mut plans: Vec<Plan> = [&a, &other, &same]
            .iter()
            .map(|k| {
                let (v, spec) = argv(&["SET", k, "v"]);
                plan(&v, spec, &t, None)
            })
            .collect();
        let mut later = std::collections::HashSet::new();
        for p in plans.iter_mut().rev() {
            p.follow_with(&mut later);
        }
        let may_retry: Vec<bool> = plans
            .iter()
            .map(|p| match p {
                Plan::Forward { parts, .. } => parts[0].may_retry,
                Plan::Reply(_) => unreachable!(),
            })
            .collect();
        assert_eq!(may_retry, vec![false, true, true]);
    }

    #[test]
    fn a_scoped_connection_reaches_only_its_namespace() {
        let mut t = tables(4);
        t.apply_table("users", &table(2));
        let scope = Some("users");
        for args in [&["GET", "plain"][..], &["MGET", "users:a", "default:b"]] {
            let (v, spec) = argv(args);
            assert!(matches!(
                plan(&v, spec, &t, scope),
                Plan::Reply(Reply::Error(CommandError::NoPerm))
            ));
        }
        let (v, spec) = argv(&["GET", "users:a"]);
        assert!(matches!(plan(&v, spec, &t, scope), Plan::Forward { .. }));
        let (v, spec) = argv(&["DBSIZE"]);
        let Plan::Forward { parts, .. } = plan(&v, spec, &t, scope) else {
            panic!("forwarded")
        };
        assert_eq!(parts.len(), 2, "the scope's partitions only");
        assert!(parts.iter().all(|p| p.target.namespace.name == "users"));
        let Plan::Forward { parts, .. } = plan(&v, spec, &t, None) else {
            panic!("forwarded")
        };
        assert_eq!(parts.len(), 6);
    }

    #[test]
    fn other_commands_across_partitions_are_refused_and_one_partition_takes_keyless_ones() {
        let t = tables(4);
        let (a, _, other) = keys_in_two_partitions(&t);
        let (v, spec) = argv(&["RENAME", &a, &other]);
        assert!(matches!(
            plan(&v, spec, &t, None),
            Plan::Reply(Reply::Error(CommandError::CrossSlot))
        ));
        let (v, spec) = argv(&["DBSIZE"]);
        let one = tables(1);
        let p = plan(&v, spec, &one, None);
        assert_eq!(first_leader(&p), Some("127.0.0.1:7000".parse().unwrap()));
        let (v, spec) = argv(&["GET", "k"]);
        assert!(matches!(
            plan(&v, spec, &RoutingTables::new("default"), None),
            Plan::Reply(Reply::Error(CommandError::ClusterChanged(_)))
        ));
    }
}
