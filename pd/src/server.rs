//! Running PD: the thread that owns the [`Cluster`], its periodic check that sends storage
//! nodes what they must do, and the HTTP API.
//!
//! The cluster model has one owner, a thread of its own: HTTP handlers hand it closures
//! through a bounded queue and await their answers ([`PdHandle::call`]), so every change
//! is serialized and its metadata write (an fsync) never runs on an async thread. Commands
//! to storage nodes are HTTP calls made on the async runtime; their outcomes come back
//! through the same queue. A command is sent again while the reports do not show it done
//! (at most every [`RESEND`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};
use zankv_pd_api::QueryResponse;

use crate::cluster::Cluster;
use crate::command::NodeCommand;
use crate::config::Secret;
use crate::metrics::PdMetrics;
use crate::replication::member::MemberHandle;

/// How long a command may stay unanswered before it is sent again.
pub const RESEND: Duration = Duration::from_secs(10);
/// Calls queued for the owner before callers are told PD is busy.
const QUEUE: usize = 1024;
/// Deadline of a call to a storage node.
const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce(&mut Owner) + Send>;

/// Every namespace's routing table, as last published.
pub type RoutingTables = std::collections::BTreeMap<String, QueryResponse>;

/// Why a call to the owner did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Its queue is full.
    Busy,
    /// It stopped.
    Stopped,
    /// This PD member does not lead; the leader's id and HTTP address, when known.
    NotLeader(Option<(u64, SocketAddr)>),
}

/// This member's place in PD's raft group.
pub struct Membership {
    /// The raft thread.
    pub member: MemberHandle,
    /// Every member's HTTP address, for leader hints.
    pub members: std::collections::BTreeMap<u64, SocketAddr>,
}

/// A handle to the owner of the cluster model.
#[derive(Clone)]
pub struct PdHandle {
    tx: SyncSender<Job>,
}

impl PdHandle {
    /// Runs `f` on the owner with the current time and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster, Instant) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |owner: &mut Owner| {
            let _ = tx.send(f(&mut owner.cluster, Instant::now()));
        });
        match self.tx.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Unavailable::Stopped),
            Err(TrySendError::Full(_)) => Err(Unavailable::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Unavailable::Stopped),
        }
    }

    /// Like [`PdHandle::call`], but only on the leader: a follower answers
    /// [`Unavailable::NotLeader`] (its view of storage nodes is empty, and only the leader
    /// may change the metadata).
    pub async fn call_leader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster, Instant) -> T + Send + 'static,
    ) -> Result<T, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |owner: &mut Owner| {
            let answer = if owner.leading {
                Ok(f(&mut owner.cluster, Instant::now()))
            } else {
                Err(Unavailable::NotLeader(owner.leader_hint()))
            };
            let _ = tx.send(answer);
        });
        match self.tx.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Unavailable::Stopped)?,
            Err(TrySendError::Full(_)) => Err(Unavailable::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Unavailable::Stopped),
        }
    }

    /// This member's id, whether it leads, and the leader it knows (id and address).
    pub async fn leadership(&self) -> Result<Leadership, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |owner: &mut Owner| {
            let (me, members) = match &owner.membership {
                Some(m) => (m.member.id(), m.members.clone()),
                None => (1, Default::default()),
            };
            let leader = if owner.leading {
                Some(me)
            } else {
                owner.leader_hint().map(|(id, _)| id)
            };
            let _ = tx.send(Leadership {
                me,
                leading: owner.leading,
                leader,
                members,
            });
        });
        match self.tx.try_send(job) {
            Ok(()) => rx.await.map_err(|_| Unavailable::Stopped),
            Err(TrySendError::Full(_)) => Err(Unavailable::Busy),
            Err(TrySendError::Disconnected(_)) => Err(Unavailable::Stopped),
        }
    }

    /// Stops the owner thread once it has run what is queued.
    pub fn stop(&self) {
        let job: Job = Box::new(|owner: &mut Owner| owner.stopping = true);
        let _ = self.tx.send(job);
    }
}

/// The owner thread's state.
struct Owner {
    cluster: Cluster,
    /// Commands sent and not answered yet, with when they were sent.
    in_flight: HashMap<NodeCommand, Instant>,
    runtime: tokio::runtime::Handle,
    token: Option<Secret>,
    metrics: Arc<PdMetrics>,
    tx: SyncSender<Job>,
    /// Where the routing stream's watchers learn of new tables.
    routing: watch::Sender<Arc<RoutingTables>>,
    /// PD's raft group (None: a single PD, which always leads).
    membership: Option<Membership>,
    /// Whether this member leads (and so schedules and answers leader calls).
    leading: bool,
    stopping: bool,
}

/// Who leads PD, as one member sees it.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// This member's id (1 for a single PD).
    pub me: u64,
    /// Whether it leads.
    pub leading: bool,
    /// The leader's id, when known.
    pub leader: Option<u64>,
    /// Every member's HTTP address (empty for a single PD).
    pub members: std::collections::BTreeMap<u64, SocketAddr>,
}

/// Starts the owner thread of `cluster`; it checks the cluster every `interval` until
/// [`PdHandle::stop`]. The receiver sees every routing table each time one changes.
pub fn spawn_owner(
    cluster: Cluster,
    interval: Duration,
    runtime: tokio::runtime::Handle,
    token: Option<Secret>,
    metrics: Arc<PdMetrics>,
    membership: Option<Membership>,
) -> std::io::Result<(
    PdHandle,
    watch::Receiver<Arc<RoutingTables>>,
    JoinHandle<()>,
)> {
    let (tx, rx) = sync_channel::<Job>(QUEUE);
    let (routing, routing_rx) = watch::channel(Arc::new(RoutingTables::new()));
    let owner = Owner {
        cluster,
        in_flight: HashMap::new(),
        runtime,
        token,
        metrics,
        tx: tx.clone(),
        routing,
        leading: membership.is_none(),
        membership,
        stopping: false,
    };
    let thread = std::thread::Builder::new()
        .name("pd-cluster".into())
        .spawn(move || run(owner, rx, interval))?;
    Ok((PdHandle { tx }, routing_rx, thread))
}

fn run(mut owner: Owner, rx: Receiver<Job>, interval: Duration) {
    let mut next_check = Instant::now() + interval;
    loop {
        let wait = next_check.saturating_duration_since(Instant::now());
        let job = match rx.recv_timeout(wait) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        owner.follow_leadership();
        if let Some(job) = job {
            job(&mut owner);
        }
        if Instant::now() >= next_check {
            owner.check();
            next_check = Instant::now() + interval;
        }
        if owner.stopping {
            break;
        }
    }
    info!("cluster owner stopped");
}

impl Owner {
    /// Takes in committed metadata and leadership changes of PD's raft group.
    fn follow_leadership(&mut self) {
        let Some(m) = &self.membership else {
            return;
        };
        let leading = m.member.state().leading;
        self.cluster.refresh_meta();
        if leading && !self.leading {
            match self.cluster.became_leader(Instant::now()) {
                Ok(()) => self.leading = true,
                Err(e) => {
                    warn!(error = %e.message, "cannot take over as PD leader yet; trying again")
                }
            }
        } else if !leading && self.leading {
            info!("this PD member no longer leads");
            self.cluster.lost_leadership();
            self.in_flight.clear();
            self.leading = false;
        }
    }

    /// The leader this member knows, with its HTTP address.
    fn leader_hint(&self) -> Option<(u64, SocketAddr)> {
        let m = self.membership.as_ref()?;
        let leader = m.member.state().leader;
        Some((leader, *m.members.get(&leader)?))
    }

    /// Runs a scheduling round and sends what it asks for (on the leader only).
    fn check(&mut self) {
        if !self.leading {
            return;
        }
        let now = Instant::now();
        self.in_flight
            .retain(|_, sent| now.duration_since(*sent) < RESEND);
        let round = match self.cluster.schedule(now, hour_utc()) {
            Ok(round) => round,
            Err(e) => {
                warn!(error = %e.message, "scheduling round failed (metadata not written); trying again");
                return;
            }
        };
        for op in &round.started {
            info!(partition = %op.partition, kind = op.kind.name(), reason = %op.reason, steps = ?op.steps, "operator started");
            self.metrics.operator_event(op.kind.name(), "started");
        }
        for op in &round.finished {
            info!(partition = %op.partition, kind = op.kind.name(), took_ms = op.age(now).as_millis() as u64, "operator finished");
            self.metrics.operator_event(op.kind.name(), "finished");
        }
        for (op, why) in &round.failed {
            warn!(partition = %op.partition, kind = op.kind.name(), reason = %why, "operator failed; the checkers will look again");
            self.metrics.operator_event(op.kind.name(), "failed");
        }
        self.metrics.observe(&self.cluster, now);
        let tables = self.cluster.routing_tables(now);
        if **self.routing.borrow() != tables {
            self.routing.send_replace(Arc::new(tables));
        }
        for command in round.commands {
            if self.in_flight.contains_key(&command) {
                continue;
            }
            let Some(node) = self.cluster.meta().nodes.get(&command.node()) else {
                continue;
            };
            let Ok(ip) = node.broadcast_address.parse::<std::net::IpAddr>() else {
                warn!(node = node.node_id, address = %node.broadcast_address, "node address is not an IP address");
                continue;
            };
            let addr = SocketAddr::new(ip, node.http_port);
            self.in_flight.insert(command.clone(), now);
            self.metrics.commands_sent.inc();
            let tx = self.tx.clone();
            let token = self.token.clone();
            self.runtime.spawn(async move {
                let outcome = send(addr, &command, token.as_ref()).await;
                let job: Job = Box::new(move |owner: &mut Owner| owner.done(command, outcome));
                let _ = tx.try_send(job);
            });
        }
    }

    /// A command's outcome: on success it may be sent again once due (if reports still do
    /// not show it done); a failure waits for the resend delay.
    fn done(&mut self, command: NodeCommand, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.in_flight.remove(&command);
            }
            Err(e) => {
                self.metrics.command_failures.inc();
                warn!(?command, error = %e, "command to a storage node failed; it will be sent again");
            }
        }
    }
}

/// Sends one command to a storage node's admin API.
async fn send(
    addr: SocketAddr,
    command: &NodeCommand,
    token: Option<&Secret>,
) -> Result<(), String> {
    let (method, path) = command.http();
    let r = zankv_pd_api::client::call(
        addr,
        method,
        &path,
        None,
        token.map(Secret::expose),
        NODE_CALL_TIMEOUT,
    )
    .await?;
    if r.status == 200 {
        Ok(())
    } else {
        Err(format!(
            "{method} {path} on {addr}: {} {}",
            r.status,
            r.message()
        ))
    }
}

/// The current hour of the day, UTC (for the balance window).
fn hour_utc() -> u8 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ((secs / 3600) % 24) as u8
}
