//! The proxy's RESP front end: a [`zankv_process::session`] whose executor sends data
//! commands to their partitions' leaders at once, answers INFO with the storage nodes'
//! counts, and reaches the other proxies for PUBLISH and PUBSUB.
//!
//! Invariants:
//! - requests of one read are all sent before the first reply is awaited, so one client's
//!   pipeline to many partitions runs in parallel, and one read's requests are all routed
//!   with one table snapshot;
//! - with any password configured (`requirepass`, `namespace_passwords`), a connection
//!   authenticated with a namespace's password reaches only that namespace's keys, and
//!   none of what all namespaces share (CONFIG, SLOWLOG, CLIENT LIST/KILL/UNBLOCK);
//! - a request that may not be re-sent (a write whose outcome is unknown) is not, and one
//!   whose partition a later request of the pipeline went to is re-sent only while those
//!   did not run either;
//! - nothing here blocks: storage nodes are only reached through [`crate::backend`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpListener;
use tokio::sync::watch;
use zankv_commands::connection::ClientSession;
use zankv_commands::info::{wanted_sections, InfoFacts};
use zankv_commands::transaction::{Queued, Watched};
use zankv_commands::{
    Command, CommandError, CommandSpec, ConnectionCommand, Fanout, Protocol, Reply,
};
use zankv_pd_api::Secret;
use zankv_process::session::{self, Base, Entry, Executor, Run};
use zankv_process::usage;

use crate::config::NamespacePassword;
use crate::forward::{plan, Forwarder, LaterRequests, Part, PartitionKey, Plan, Scope};
use crate::peers::Peers;
use crate::reply_frames::{array_items, bulk_text, error_text};
use crate::routing::RoutingTables;

/// What every connection task shares.
pub struct FrontendContext {
    /// What every RESP session shares (clients, CONFIG, slow log, limits, Pub/Sub, ...).
    pub base: Base,
    /// Routing and storage node connections.
    pub forwarder: Forwarder,
    /// The passwords clients must give, if any.
    pub passwords: Passwords,
    /// The port clients connect to (INFO).
    pub port: u16,
    /// The live proxies, when the proxy has a cluster address.
    pub peers: Option<Arc<Peers>>,
    /// INFO's `run_id`.
    pub run_id: String,
    /// The most memory INFO has seen the proxy use.
    pub peak_memory: AtomicU64,
    /// The other proxies, which PUBLISH reaches too (none: a proxy that announces no
    /// address to them).
    pub mesh: Option<crate::mesh::Mesh>,
    /// The keyspace notifications the proxy relays to its subscribers.
    pub events: crate::events::EventSetting,
}

/// The passwords of the proxy.
#[derive(Debug, Clone, Default)]
pub struct Passwords {
    /// Gives access to everything.
    pub requirepass: Option<Secret>,
    /// Each gives access to one namespace.
    pub namespaces: Vec<NamespacePassword>,
}

impl Passwords {
    fn required(&self) -> bool {
        self.requirepass.is_some() || !self.namespaces.is_empty()
    }

    /// What `AUTH [user] password` gives: `default` (or no user) with `requirepass`
    /// everything; a namespace's name (or no user) with its password that namespace.
    fn check(&self, user: Option<&[u8]>, password: &[u8]) -> Option<Access> {
        let password = std::str::from_utf8(password).ok()?;
        if user.is_none_or(|u| u == b"default")
            && self
                .requirepass
                .as_ref()
                .is_some_and(|p| p.matches(password))
        {
            return Some(Access::Everything);
        }
        self.namespaces
            .iter()
            .find(|np| {
                user.is_none_or(|u| u == np.namespace.as_bytes()) && np.password.matches(password)
            })
            .map(|np| Access::Namespace(np.namespace.clone()))
    }
}

/// What an authenticated connection may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    /// Every namespace.
    Everything,
    /// One namespace's keys.
    Namespace(String),
}

/// The proxy's executor for one listener.
pub struct Frontend {
    ctx: Arc<FrontendContext>,
    /// Whether the listener is the cluster address.
    cluster: bool,
}

/// Serves RESP on `listener` until `shutdown` turns true, then waits for every connection
/// to finish the requests it has read.
/// `cluster`: the listener is the cluster address.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<FrontendContext>,
    shutdown: watch::Receiver<bool>,
    cluster: bool,
) {
    session::serve(listener, Arc::new(Frontend { ctx, cluster }), shutdown).await;
}

type Session = session::Session<Frontend>;

/// A connection's state of its own on the proxy.
pub struct ProxyConn {
    /// The namespace its password restricts it to.
    namespace: Option<String>,
    /// The routing tables of the requests being read.
    tables: Arc<RoutingTables>,
    /// The forwarded requests answered in the write being gathered: every reply of a
    /// write reaches the client at once, so one clock read times them all.
    answered: Vec<Answered>,
}

/// A forwarded request whose reply is in, waiting for its metrics and slow-log entry.
struct Answered {
    command: &'static str,
    error: bool,
    started: Instant,
    argv: Vec<Bytes>,
}

/// A reply being produced.
pub enum Later {
    /// PUBLISH or PUBSUB's introspection: this proxy's part and the other proxies'
    /// replies ([`crate::mesh`]).
    Gathered {
        gather: crate::mesh::Gather,
        replies: Vec<crate::backend::ReplyReceiver>,
        command: &'static str,
        started: Instant,
        argv: Vec<Bytes>,
        protocol: Protocol,
    },
    /// Sent to storage nodes.
    Forwarded {
        plan: Plan,
        /// The request, for the slow log.
        argv: Vec<Bytes>,
        command: &'static str,
        started: Instant,
        protocol: Protocol,
        /// A WATCH: its keys, whose tokens the reply carries.
        watch: Option<Vec<Bytes>>,
    },
}

/// A request the proxy runs alone: a blocking pop, or a script (which goes on a
/// connection of its own, as it may run long; so that it sees the client's earlier
/// commands and its later ones see it, as in Redis).
pub struct Job {
    plan: Plan,
    argv: Vec<Bytes>,
    name: &'static str,
    blocking: bool,
}

impl Frontend {
    /// What a connection's commands reach: its namespace, and on the cluster address this
    /// proxy's share of the partitions.
    fn reach<'a>(&self, s: &'a Session) -> Scope<'a> {
        Scope {
            namespace: s.conn.namespace.as_deref(),
            readonly: s.client.readonly,
            share: match (&self.ctx.peers, self.cluster) {
                (Some(peers), true) => Some(peers.share()),
                _ => None,
            },
        }
    }

    /// `plan`, sent to its partitions' leaders, queued for its reply.
    async fn send(
        &self,
        s: &mut Session,
        mut plan: Plan,
        argv: Vec<Bytes>,
        command: &'static str,
        started: Instant,
        watch: Option<Vec<Bytes>>,
    ) -> Run<Job> {
        let protocol = s.client.protocol;
        plan.send(&self.ctx.forwarder, protocol, started).await;
        s.push_later(Later::Forwarded {
            plan,
            argv,
            command,
            started,
            protocol,
            watch,
        });
        Run::Queued
    }

    fn record_slow(&self, took: std::time::Duration, argv: &[Bytes], s: &Session) {
        self.ctx
            .base
            .record_slow(took, argv, &s.handle, s.client.name.as_ref());
    }
}

impl Executor for Frontend {
    type Conn = ProxyConn;
    type Later = Later;
    type Job = Job;

    fn base(&self) -> &Base {
        &self.ctx.base
    }

    fn open(&self, client: &mut ClientSession) -> ProxyConn {
        client.cluster = self.ctx.peers.is_some();
        ProxyConn {
            namespace: None,
            tables: self.ctx.forwarder.tables.load(),
            answered: Vec::new(),
        }
    }

    fn begin_read(&self, s: &mut Session) {
        s.conn.tables = self.ctx.forwarder.tables.load();
    }

    async fn internal(
        &self,
        s: &mut Session,
        argv: Vec<Bytes>,
        _started: Instant,
    ) -> Result<Run<Job>, Vec<Bytes>> {
        // Another proxy's PUBLISH or PUBSUB, answered from this proxy's subscriptions.
        if s.authenticated && crate::mesh::is_peer_request(&argv) {
            return Ok(Run::Reply(crate::mesh::answer_peer(
                &argv,
                &self.ctx.base.pubsub,
            )));
        }
        Err(argv)
    }

    async fn data(
        &self,
        s: &mut Session,
        argv: Vec<Bytes>,
        _cmd: Command,
        spec: &'static CommandSpec,
        started: Instant,
    ) -> Run<Job> {
        let plan = plan(&argv, spec, &s.conn.tables, self.reach(s));
        // A blocking pop waits alone, and a client that leaves meanwhile ends its wait; a
        // script (EVAL, FCALL, ...) runs alone on a connection of its own.
        let blocking = spec.timeout_at.is_some();
        if blocking || spec.fanout == Fanout::AnyPartition {
            return Run::Alone {
                job: Job {
                    plan,
                    argv,
                    name: spec.name,
                    blocking,
                },
                name: spec.name,
                blocking,
            };
        }
        self.send(s, plan, argv, spec.name, started, None).await
    }

    async fn watch(
        &self,
        s: &mut Session,
        keys: Vec<Bytes>,
        argv: Vec<Bytes>,
        started: Instant,
    ) -> Run<Job> {
        let plan = crate::transaction::watch_plan(&keys, &s.conn.tables, self.reach(s));
        self.send(s, plan, argv, "watch", started, Some(keys)).await
    }

    fn is_watch(later: &Later) -> bool {
        matches!(later, Later::Forwarded { watch: Some(_), .. })
    }

    /// EXEC: the connection commands answered now, in order; the data commands sent as one
    /// transaction to their partition ([`crate::transaction`]).
    async fn exec(
        &self,
        s: &mut Session,
        queued: Vec<Queued>,
        watched: Vec<Watched>,
        started: Instant,
    ) -> Run<Job> {
        let protocol = s.client.protocol;
        let accepted = match crate::transaction::exec_target(
            &queued,
            watched,
            &s.conn.tables,
            self.reach(s),
        ) {
            Ok(accepted) => accepted,
            Err(e) => return Run::Reply(Reply::Error(e)),
        };
        // The connection commands run only once the transaction is accepted.
        let mut answers = Vec::with_capacity(queued.len());
        for q in queued {
            answers.push(match q {
                Queued::Local(Ok(c)) => Some(session::encode(
                    &session::answer(self, s, c).await,
                    protocol,
                )),
                Queued::Local(Err(e)) => Some(session::encode(&Reply::Error(e), protocol)),
                Queued::Data { .. } => None,
            });
        }
        match accepted.plan(answers) {
            crate::transaction::Exec::Local(bytes) => {
                s.queue.push_back(Entry::Ready(bytes));
                Run::Queued
            }
            crate::transaction::Exec::Remote(plan) => {
                let argv = vec![Bytes::from_static(b"EXEC")];
                self.send(s, plan, argv, "exec", started, None).await
            }
        }
    }

    /// INFO's keyspace and memory sections ask the storage nodes.
    async fn info(
        &self,
        s: &mut Session,
        sections: Vec<Bytes>,
        argv: Vec<Bytes>,
        started: Instant,
    ) -> Run<Job> {
        let plan = crate::info::plan(
            &sections,
            info_facts(&self.ctx),
            &s.conn.tables,
            self.reach(s),
        );
        self.send(s, plan, argv, "info", started, None).await
    }

    /// Inside a transaction, INFO shows the proxy's own measures.
    async fn local_info(&self, sections: &[Bytes]) -> String {
        info_facts(&self.ctx).render(&wanted_sections(sections))
    }

    /// PUBLISH and PUBSUB's introspection reach every proxy.
    async fn connection(
        &self,
        s: &mut Session,
        cmd: ConnectionCommand,
        name: &'static str,
        argv: &[Bytes],
        started: Instant,
    ) -> Result<Run<Job>, ConnectionCommand> {
        let (cmd, mesh) = match (cmd, &self.ctx.mesh) {
            (ConnectionCommand::PubSub(cmd), Some(mesh)) => (cmd, mesh),
            (cmd, _) => return Err(cmd),
        };
        let backends = &self.ctx.forwarder.backends;
        let started_here = crate::mesh::start(&cmd, &self.ctx.base.pubsub, mesh, backends).await;
        // A PUBLISH to the connection's own channels: its messages come before its reply,
        // as in Redis.
        s.push_messages();
        match started_here {
            Some((gather, replies)) => {
                let protocol = s.client.protocol;
                s.push_later(Later::Gathered {
                    gather,
                    replies,
                    command: name,
                    started,
                    argv: argv.to_vec(),
                    protocol,
                });
                Ok(Run::Queued)
            }
            None => Err(ConnectionCommand::PubSub(cmd)),
        }
    }

    async fn run(&self, s: &mut Session, job: Job, started: Instant) -> Bytes {
        let Job {
            mut plan,
            argv,
            name,
            blocking,
        } = job;
        let forwarder = &self.ctx.forwarder;
        let _blocked = blocking.then(|| forwarder.metrics.client_blocked());
        let protocol = s.client.protocol;
        plan.send(forwarder, protocol, Instant::now()).await;
        let reply = plan
            .finish(forwarder, protocol, &mut LaterInPipeline(&mut s.queue))
            .await;
        let error = matches!(reply.first(), Some(b'-' | b'!'));
        // A blocking command's latency includes the time it waited; the slow log leaves
        // it out, as Redis's does.
        let took = started.elapsed();
        forwarder.metrics.command(name, error, took);
        if !blocking {
            self.record_slow(took, &argv, s);
        }
        reply
    }

    fn flushing(&self, s: &mut Session) {
        // A request whose partition a later request of this pipeline went to is re-sent
        // only while those later ones did not run either.
        let mut later = std::collections::HashSet::new();
        for entry in s.queue.iter_mut().rev() {
            if let Entry::Later(Later::Forwarded { plan, .. }) = entry {
                plan.follow_with(&mut later);
            }
        }
    }

    async fn finish(&self, s: &mut Session, later: Later, out: &mut BytesMut) {
        let errors = &self.ctx.base.errors;
        let (reply, answered) = match later {
            Later::Gathered {
                gather,
                replies,
                command,
                started,
                argv,
                protocol,
            } => {
                let reply = crate::mesh::finish(gather, replies, protocol).await;
                let answered = Answered {
                    command,
                    error: false,
                    started,
                    argv,
                };
                (reply, answered)
            }
            Later::Forwarded {
                plan,
                argv,
                command,
                started,
                protocol,
                watch,
            } => {
                let mut reply = plan
                    .finish(
                        &self.ctx.forwarder,
                        protocol,
                        &mut LaterInPipeline(&mut s.queue),
                    )
                    .await;
                if let Some(keys) = watch {
                    reply = remember_watched(&mut s.client, keys, reply, protocol);
                }
                let answered = Answered {
                    command,
                    error: matches!(reply.first(), Some(b'-' | b'!')),
                    started,
                    argv,
                };
                (reply, answered)
            }
        };
        errors.record_encoded(&reply);
        s.conn.answered.push(answered);
        out.extend_from_slice(&reply);
    }

    fn flushed(&self, s: &mut Session) {
        if s.conn.answered.is_empty() {
            return;
        }
        let now = Instant::now();
        let answered = std::mem::take(&mut s.conn.answered);
        for a in &answered {
            let took = now.saturating_duration_since(a.started);
            self.ctx.forwarder.metrics.command(a.command, a.error, took);
            self.record_slow(took, &a.argv, s);
        }
        // The allocation is kept for the next write.
        s.conn.answered = answered;
        s.conn.answered.clear();
    }

    fn passwords_required(&self) -> bool {
        self.ctx.passwords.required()
    }

    fn authenticate(
        &self,
        s: &mut Session,
        user: Option<&[u8]>,
        password: &[u8],
    ) -> Result<(), CommandError> {
        if !self.ctx.passwords.required() {
            return match zankv_commands::connection::auth_without_password(user) {
                Reply::Error(e) => Err(e),
                _ => Ok(()),
            };
        }
        match self.ctx.passwords.check(user, password) {
            Some(access) => {
                // CLIENT LIST's `user`: the namespace a password restricts the connection
                // to.
                s.conn.namespace = match access {
                    Access::Namespace(ns) => {
                        s.handle.set_user(&ns);
                        Some(ns)
                    }
                    Access::Everything => {
                        s.handle.set_user("default");
                        None
                    }
                };
                // Keyspace notifications name the keys of every namespace.
                s.subs.allow_keyspace_events(s.conn.namespace.is_none());
                Ok(())
            }
            None => Err(CommandError::WrongPass),
        }
    }

    fn deauthenticate(&self, s: &mut Session) {
        s.conn.namespace = None;
        s.subs.allow_keyspace_events(true);
    }

    /// A connection restricted to a namespace may not read or change what all share.
    fn permitted(&self, s: &Session, cmd: &ConnectionCommand) -> Result<(), CommandError> {
        if s.conn.namespace.is_none() {
            return Ok(());
        }
        let shared = match cmd {
            ConnectionCommand::ConfigGet(_) => "config|get",
            ConnectionCommand::ConfigSet(_) => "config|set",
            ConnectionCommand::ConfigResetStat => "config|resetstat",
            ConnectionCommand::SlowlogGet(_) => "slowlog|get",
            ConnectionCommand::SlowlogLen => "slowlog|len",
            ConnectionCommand::SlowlogReset => "slowlog|reset",
            ConnectionCommand::ClientList(_) => "client|list",
            ConnectionCommand::ClientKill(_) => "client|kill",
            ConnectionCommand::ClientUnblock { .. } => "client|unblock",
            _ => return Ok(()),
        };
        Err(CommandError::NoPermCommand(shared.to_string()))
    }

    /// Keyspace notifications are in effect once the proxy listens to every node.
    async fn setting_changed(&self, name: &str, value: &str) {
        if name == "notify-keyspace-events" {
            let flags = zankv_commands::notify::parse(value).unwrap_or(0);
            self.ctx.events.set(flags).await;
        }
    }

    fn reset_stats(&self) {
        self.ctx.forwarder.metrics.reset_stats();
    }

    fn cluster(&self, sub: &zankv_commands::cluster::ClusterCommand) -> Reply {
        match &self.ctx.peers {
            Some(peers) => peers.view().answer(sub),
            None => zankv_commands::cluster::disabled(),
        }
    }

    fn done(
        &self,
        s: &Session,
        name: &'static str,
        error: bool,
        started: Instant,
        argv: Option<&[Bytes]>,
    ) {
        let took = started.elapsed();
        self.ctx.forwarder.metrics.command(name, error, took);
        if let Some(argv) = argv {
            self.record_slow(took, argv, s);
        }
    }

    fn connected(&self) {
        self.ctx.forwarder.metrics.client_connected();
    }

    fn disconnected(&self) {
        self.ctx.forwarder.metrics.client_disconnected();
    }

    fn rejected(&self) {
        self.ctx.forwarder.metrics.client_rejected();
    }
}

/// The requests still pending after the one being finished.
struct LaterInPipeline<'a>(&'a mut std::collections::VecDeque<Entry<Later>>);

impl LaterRequests for LaterInPipeline<'_> {
    fn parts_on(&mut self, key: PartitionKey) -> Vec<&mut Part> {
        self.0
            .iter_mut()
            .filter_map(|entry| match entry {
                Entry::Later(Later::Forwarded { plan, .. }) => Some(plan),
                Entry::Ready(_) | Entry::Later(Later::Gathered { .. }) => None,
            })
            .flat_map(|plan| plan.parts_on(key))
            .collect()
    }
}

/// A WATCH's reply: the tokens, kept by the connection, become OK; an error stays.
fn remember_watched(
    client: &mut ClientSession,
    keys: Vec<Bytes>,
    reply: Bytes,
    protocol: Protocol,
) -> Bytes {
    let tokens: Option<Vec<Bytes>> = array_items(&reply, protocol)
        .filter(|items| items.len() == keys.len())
        .and_then(|items| items.iter().map(bulk_text).collect());
    match tokens {
        Some(tokens) => {
            for (key, token) in keys.into_iter().zip(tokens) {
                client.watched.push(Watched { key, token });
            }
            session::encode(&Reply::OK, protocol)
        }
        None if error_text(&reply).is_some() => reply,
        None => crate::forward::unexpected(protocol),
    }
}

/// What the proxy knows of itself for INFO (the storage nodes' key counts and memory are
/// added by [`crate::info`]).
fn info_facts(ctx: &FrontendContext) -> InfoFacts {
    let metrics = &ctx.forwarder.metrics;
    let counters = metrics.info();
    let (errorstats, total_error_replies) = ctx.base.errors.snapshot();
    let rss = usage::rss_bytes();
    let peak = ctx.peak_memory.fetch_max(rss, Ordering::Relaxed).max(rss);
    let config = ctx.base.config();
    InfoFacts {
        zankv_role: "proxy",
        tcp_port: ctx.port,
        run_id: ctx.run_id.clone(),
        uptime_s: metrics.started.elapsed().as_secs(),
        hz: config.value("hz").to_string(),
        config_file: String::new(),
        cluster_enabled: ctx.peers.is_some(),
        connected_clients: counters.connected_clients.max(0) as u64,
        blocked_clients: counters.blocked_clients.max(0) as u64,
        pubsub: ctx.base.pubsub.counts(),
        maxclients: ctx.base.max_clients as u64,
        used_memory: rss,
        used_memory_rss: rss,
        used_memory_peak: peak,
        used_memory_dataset: 0,
        maxmemory: config.value("maxmemory").parse().unwrap_or(0),
        maxmemory_policy: config.value("maxmemory-policy").to_string(),
        total_system_memory: usage::total_system_memory(),
        total_connections: counters.total_connections,
        total_commands: counters.total_commands,
        rejected_connections: counters.rejected_connections,
        expired_keys: 0,
        total_error_replies,
        errorstats,
        replication: vec![],
        cpu: usage::cpu_seconds(),
        keyspace: None,
    }
}
