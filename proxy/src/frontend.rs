//! The RESP front end: accepts client connections and runs each as a task that reads
//! pipelined requests, answers connection commands itself, sends data commands to their
//! partitions' leaders at once, and writes the replies back in request order.
//!
//! Invariants:
//! - replies leave in exactly the order requests arrived; requests of one read are all
//!   sent before the first reply is awaited, so one client's pipeline to many partitions
//!   runs in parallel, and one read's requests are all routed with one table snapshot;
//! - with any password configured (`requirepass`, `namespace_passwords`), nothing but AUTH,
//!   HELLO ... AUTH and QUIT runs before the connection authenticates, and a connection
//!   authenticated with a namespace's password reaches only that namespace's keys;
//! - a protocol error is answered, then the connection is closed (as Redis does);
//! - at most `max_clients` connections are served; one more gets Redis's error and is
//!   closed; an idle connection is closed after `idle_timeout_s` (when set);
//! - nothing here blocks: storage nodes are only reached through [`crate::backend`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zankv_commands::config::Config;
use zankv_commands::connection::ClientSession;
use zankv_commands::info::{wanted_sections, ErrorStats, InfoFacts};
use zankv_commands::request::{RequestLimits, RequestReader};
use zankv_commands::slowlog::SlowLog;
use zankv_commands::transaction::{self, Queued, Step, Watched};
use zankv_commands::{Command, CommandError, ConnectionCommand, Fanout, Protocol, Reply};
use zankv_pd_api::Secret;
use zankv_process::clients::{ClientHandle, ClientRegistry};
use zankv_process::pubsub::{self, Hub, Subscriptions};
use zankv_process::usage;

use crate::config::NamespacePassword;
use crate::forward::{plan, Forwarder, LaterRequests, Part, PartitionKey, Plan, Scope};
use crate::peers::Peers;
use crate::reply_frames::{array_items, bulk_text, error_text};

/// Most requests read from one connection before their replies are written.
const MAX_PIPELINE: usize = 1024;

/// What every connection task shares.
pub struct FrontendContext {
    /// Routing and storage node connections.
    pub forwarder: Forwarder,
    /// Request limits.
    pub limits: RequestLimits,
    /// Largest unparsed input a client may accumulate.
    pub max_query_buffer: usize,
    /// Most simultaneous clients.
    pub max_clients: usize,
    /// Idle clients are closed after this many seconds (0: never); CONFIG SET `timeout`.
    pub idle_timeout_s: AtomicU64,
    /// The slow log.
    pub slowlog: Mutex<SlowLog>,
    /// The slow log's threshold, readable without its lock.
    pub slow_threshold_us: AtomicI64,
    /// The connected clients (CLIENT LIST / KILL).
    pub clients: ClientRegistry,
    /// The passwords clients must give, if any.
    pub passwords: Passwords,
    /// The port clients connect to (INFO).
    pub port: u16,
    /// What CONFIG GET shows and CONFIG SET changes.
    pub config: Mutex<Config>,
    /// The live proxies, when the proxy has a cluster address.
    pub peers: Option<Arc<Peers>>,
    /// INFO's `run_id`.
    pub run_id: String,
    /// Error replies sent, for INFO.
    pub errors: ErrorStats,
    /// The most memory INFO has seen the proxy use.
    pub peak_memory: AtomicU64,
    /// The Pub/Sub subscriptions of this proxy's clients.
    pub pubsub: Arc<Hub>,
    /// The other proxies, which PUBLISH reaches too (none: a proxy that announces no
    /// address to them).
    pub mesh: Option<crate::mesh::Mesh>,
}

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

impl FrontendContext {
    fn slow_log(&self) -> std::sync::MutexGuard<'_, SlowLog> {
        self.slowlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record_slow(&self, took: Duration, argv: &[Bytes], session: &Session) {
        // Checked without the lock: most commands are not slow.
        let threshold = self.slow_threshold_us.load(Ordering::Relaxed);
        if threshold < 0 || took.as_micros() < threshold as u128 {
            return;
        }
        let argv = redacted(argv);
        let mut log = self.slow_log();
        if log.slower_than_us >= 0 && took.as_micros() >= log.slower_than_us as u128 {
            log.record(
                took,
                &argv,
                &session.handle.addr,
                session.client.name.as_ref(),
            );
        }
    }

    /// CONFIG's values.
    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts in effect a change CONFIG SET made: the proxy's idle timeout and slow log take
    /// it; every other parameter is only shown.
    fn apply_setting(&self, name: &str, value: &str) {
        let number = || value.parse::<i64>().expect("CONFIG SET checked an integer");
        match name {
            "timeout" => self
                .idle_timeout_s
                .store(number() as u64, Ordering::Relaxed),
            "slowlog-log-slower-than" => {
                self.slow_log().slower_than_us = number();
                self.slow_threshold_us.store(number(), Ordering::Relaxed);
            }
            "slowlog-max-len" => self.slow_log().set_max_len(number() as usize),
            _ => {}
        }
        info!(setting = name, value, "setting changed by CONFIG SET");
    }
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

/// What a connection may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Access {
    /// Nothing until it authenticates.
    Nothing,
    /// Every namespace.
    Everything,
    /// One namespace's keys.
    Namespace(String),
}

struct Session {
    client: ClientSession,
    access: Access,
    /// Its entry among the connected clients.
    handle: Arc<ClientHandle>,
    /// Whether it came in through the cluster address.
    cluster: bool,
    /// Its Pub/Sub subscriptions.
    subs: Subscriptions,
}

impl Session {
    /// What its commands reach: its namespace, and on the cluster address this proxy's
    /// share of the partitions.
    fn reach(&self, ctx: &FrontendContext) -> Scope<'_> {
        Scope {
            namespace: self.scope(),
            readonly: self.client.readonly,
            share: match (&ctx.peers, self.cluster) {
                (Some(peers), true) => Some(peers.share()),
                _ => None,
            },
        }
    }

    fn authenticated(&self) -> bool {
        self.access != Access::Nothing
    }

    fn scope(&self) -> Option<&str> {
        match &self.access {
            Access::Namespace(ns) => Some(ns),
            _ => None,
        }
    }
}

/// A reply being produced.
enum Pending {
    /// Known now, encoded.
    Ready(Bytes),
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

impl Pending {
    /// `plan`, sent to its partitions' leaders, waiting for their replies.
    async fn sent(
        mut plan: Plan,
        forwarder: &Forwarder,
        argv: Vec<Bytes>,
        command: &'static str,
        started: Instant,
        protocol: Protocol,
    ) -> Pending {
        plan.send(forwarder, protocol, started).await;
        Pending::Forwarded {
            plan,
            argv,
            command,
            started,
            protocol,
            watch: None,
        }
    }

    fn is_watch(&self) -> bool {
        matches!(self, Pending::Forwarded { watch: Some(_), .. })
    }
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
    let metrics = ctx.forwarder.metrics.clone();
    let max_clients = ctx.max_clients;
    let rejected = move || metrics.client_rejected();
    zankv_process::serve_clients(
        listener,
        max_clients,
        shutdown.clone(),
        rejected,
        |socket, peer| {
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            async move {
                ctx.forwarder.metrics.client_connected();
                debug!(%peer, "client connected");
                connection(socket, peer, &ctx, shutdown, cluster).await;
                ctx.forwarder.metrics.client_disconnected();
            }
        },
    )
    .await;
    info!("proxy front end stopped");
}

async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    ctx: &FrontendContext,
    mut shutdown: watch::Receiver<bool>,
    cluster: bool,
) {
    let _ = socket.set_nodelay(true);
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let registration = ctx.clients.register(id, peer.to_string(), local);
    let mut session = Session {
        client: ClientSession {
            cluster: ctx.peers.is_some(),
            ..ClientSession::new(id)
        },
        access: if ctx.passwords.required() {
            Access::Nothing
        } else {
            Access::Everything
        },
        handle: registration.handle.clone(),
        cluster,
        subs: Subscriptions::new(ctx.pubsub.clone(), id),
    };
    let mut input = BytesMut::with_capacity(4 * 1024);
    let mut reader = RequestReader::default();
    let mut outgoing = Outgoing {
        bytes: BytesMut::with_capacity(4 * 1024),
        answered: Vec::new(),
        last_data_command: None,
    };
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        // A subscriber is never idle (Redis exempts Pub/Sub clients from `timeout`).
        let idle_s = match session.subs.active() {
            true => 0,
            false => ctx.idle_timeout_s.load(Ordering::Relaxed),
        };
        let idle = async {
            match idle_s {
                0 => std::future::pending().await,
                s => tokio::time::sleep(Duration::from_secs(s)).await,
            }
        };
        tokio::select! {
            biased;
            _ = session.handle.killed() => {
                debug!(client = session.client.id, "closing killed client");
                return;
            }
            _ = shutdown.changed() => return,
            _ = idle => {
                debug!(client = session.client.id, "closing idle client");
                return;
            }
            read = socket.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            message = session.subs.next() => {
                // A subscriber cut off for falling behind is closed.
                let Some(message) = message else { return };
                let protocol = session.client.protocol;
                message.write(protocol, &mut outgoing.bytes);
                for m in session.subs.ready() {
                    m.write(protocol, &mut outgoing.bytes);
                }
                if socket.write_all(&outgoing.bytes).await.is_err() {
                    return;
                }
                outgoing.bytes.clear();
                continue;
            }
        }
        let mut close = false;
        let tables = ctx.forwarder.tables.load();
        // Every request of this read arrived now: one clock read for all of them.
        let read_at = Instant::now();
        loop {
            // At most MAX_PIPELINE replies wait before they are written.
            if pending.len() >= MAX_PIPELINE
                && flush(&mut socket, &mut pending, &mut outgoing, ctx, &mut session)
                    .await
                    .is_err()
            {
                return;
            }
            // Before AUTH, Redis's small request limits apply.
            let limits = RequestLimits {
                unauthenticated: !session.authenticated(),
                ..ctx.limits
            };
            match reader.next(&mut input, &limits) {
                Ok(Some(argv)) if argv.is_empty() => continue,
                Ok(Some(argv)) => {
                    let started = read_at;
                    let protocol = session.client.protocol;
                    // Messages published before this request arrived go out before its
                    // reply.
                    if let Some(pushes) = session.subs.ready_encoded(protocol) {
                        pending.push_back(Pending::Ready(pushes));
                    }
                    if session.authenticated() && crate::mesh::is_peer_request(&argv) {
                        let reply = crate::mesh::answer_peer(&argv, &ctx.pubsub);
                        pending.push_back(ready(&reply, protocol));
                        continue;
                    }
                    let parsed = zankv_commands::parse(&argv);
                    if let Some(reply) =
                        pubsub::while_subscribed(&session.subs, protocol, &argv, &parsed)
                    {
                        pending.push_back(ready(&reply, protocol));
                        continue;
                    }
                    // Nothing is queued before AUTH: MULTI too answers NOAUTH.
                    let step = if session.authenticated() {
                        transaction::step(&mut session.client, argv, parsed)
                    } else {
                        Step::Run(argv, parsed)
                    };
                    let (argv, parsed) = match step {
                        Step::Run(argv, parsed) => (argv, parsed),
                        Step::Reply(reply) => {
                            pending.push_back(ready(&reply, protocol));
                            continue;
                        }
                        Step::Exec {
                            queued,
                            mut watched,
                        } => {
                            outgoing.last_data_command = Some("exec");
                            // The tokens of a WATCH of this pipeline must be in first.
                            if pending.iter().any(Pending::is_watch) {
                                if flush(
                                    &mut socket,
                                    &mut pending,
                                    &mut outgoing,
                                    ctx,
                                    &mut session,
                                )
                                .await
                                .is_err()
                                {
                                    return;
                                }
                                watched.append(&mut session.client.watched);
                            }
                            let p =
                                exec(ctx, &mut session, &tables, queued, watched, started).await;
                            pending.push_back(p);
                            continue;
                        }
                    };
                    match parsed {
                        // Before AUTH, only a command's name and arity are judged (as
                        // Redis does); its arguments are not looked at.
                        Err(e) if !session.authenticated() && !before_auth(&e, &argv[0]) => {
                            pending.push_back(ready(&Reply::Error(CommandError::NoAuth), protocol))
                        }
                        Err(e) => pending.push_back(ready(&Reply::Error(e), protocol)),
                        // INFO's keyspace and memory sections ask the storage nodes.
                        Ok((Command::Connection(ConnectionCommand::Info(sections)), spec))
                            if session.authenticated() =>
                        {
                            outgoing.last_data_command = None;
                            session.handle.touch(spec.name);
                            let plan = crate::info::plan(
                                &sections,
                                info_facts(ctx),
                                &tables,
                                session.reach(ctx),
                            );
                            pending.push_back(
                                Pending::sent(
                                    plan,
                                    &ctx.forwarder,
                                    argv,
                                    spec.name,
                                    started,
                                    protocol,
                                )
                                .await,
                            );
                        }
                        // WATCH asks the keys' partition leader for tokens.
                        Ok((Command::Connection(ConnectionCommand::Watch(keys)), spec))
                            if session.authenticated() =>
                        {
                            outgoing.last_data_command = Some(spec.name);
                            let plan =
                                crate::transaction::watch_plan(&keys, &tables, session.reach(ctx));
                            let mut p = Pending::sent(
                                plan,
                                &ctx.forwarder,
                                argv,
                                spec.name,
                                started,
                                protocol,
                            )
                            .await;
                            if let Pending::Forwarded { watch, .. } = &mut p {
                                *watch = Some(keys);
                            }
                            pending.push_back(p);
                        }
                        // PUBLISH and PUBSUB's introspection reach every proxy.
                        Ok((Command::Connection(ConnectionCommand::PubSub(cmd)), spec))
                            if session.authenticated() && ctx.mesh.is_some() =>
                        {
                            outgoing.last_data_command = None;
                            session.handle.touch(spec.name);
                            let mesh = ctx.mesh.as_ref().expect("checked");
                            let backends = &ctx.forwarder.backends;
                            let started_here =
                                crate::mesh::start(&cmd, &ctx.pubsub, mesh, backends).await;
                            // A PUBLISH to the connection's own channels: its messages come
                            // before its reply, as in Redis.
                            if let Some(pushes) = session.subs.ready_encoded(protocol) {
                                pending.push_back(Pending::Ready(pushes));
                            }
                            match started_here {
                                Some((gather, replies)) => pending.push_back(Pending::Gathered {
                                    gather,
                                    replies,
                                    command: spec.name,
                                    started,
                                    argv,
                                    protocol,
                                }),
                                None => {
                                    let c = ConnectionCommand::PubSub(cmd);
                                    let reply = connection_command(c, &mut session, ctx);
                                    pending.push_back(ready(&reply, protocol));
                                }
                            }
                        }
                        Ok((Command::Connection(c), spec)) => {
                            outgoing.last_data_command = None;
                            session.handle.touch(spec.name);
                            let quit = c == ConnectionCommand::Quit;
                            let reply = connection_command(c, &mut session, ctx);
                            if let Some(pushes) = session.subs.ready_encoded(protocol) {
                                pending.push_back(Pending::Ready(pushes));
                            }
                            let resp = if session.client.protocol == Protocol::Resp3 {
                                3
                            } else {
                                2
                            };
                            session
                                .handle
                                .set_identity(session.client.name.as_deref(), resp);
                            let error = matches!(reply, Reply::Error(_));
                            let took = started.elapsed();
                            ctx.forwarder.metrics.command(spec.name, error, took);
                            ctx.record_slow(took, &argv, &session);
                            // HELLO answers in the protocol it selects.
                            pending.push_back(ready(&reply, session.client.protocol));
                            if quit {
                                close = true;
                                break;
                            }
                        }
                        Ok(_) if !session.authenticated() => {
                            pending.push_back(ready(&Reply::Error(CommandError::NoAuth), protocol));
                        }
                        Ok((_, spec)) if spec.timeout_at.is_some() => {
                            // A blocking pop: earlier replies leave first, later requests
                            // run once it is answered (as in Redis), and a client that
                            // leaves meanwhile ends its wait.
                            if flush(&mut socket, &mut pending, &mut outgoing, ctx, &mut session)
                                .await
                                .is_err()
                            {
                                return;
                            }
                            session.handle.touch(spec.name);
                            let _blocked = ctx.forwarder.metrics.client_blocked();
                            let mut plan = plan(&argv, spec, &tables, session.reach(ctx));
                            plan.send(&ctx.forwarder, protocol, Instant::now()).await;
                            let mut later = LaterInPipeline(&mut pending);
                            session.handle.set_blocked(true);
                            let reply = tokio::select! {
                                reply = plan.finish(&ctx.forwarder, protocol, &mut later) => reply,
                                // CLIENT UNBLOCK: dropping the plan closes its connection,
                                // and the storage node forgets the waiter.
                                reply = session.handle.unblocked() => ready_bytes(&reply, protocol),
                                () = zankv_process::read_while_blocked(&mut socket, &mut input, ctx.max_query_buffer) => return,
                                _ = session.handle.killed() => return,
                                _ = shutdown.changed() => return,
                            };
                            session.handle.set_blocked(false);
                            ctx.errors.record_encoded(&reply);
                            let error = matches!(reply.first(), Some(b'-' | b'!'));
                            // Its latency includes the time it waited; the slow log leaves
                            // it out, as Redis's does.
                            ctx.forwarder
                                .metrics
                                .command(spec.name, error, started.elapsed());
                            pending.push_back(Pending::Ready(reply));
                        }
                        Ok((_, spec)) if spec.fanout == Fanout::AnyPartition => {
                            // A script (EVAL, FCALL, ...) goes on a connection of its own
                            // (it may run long): so that it sees the client's earlier
                            // commands and its later ones see it, as in Redis, earlier
                            // replies leave first and later requests go once it answers.
                            if flush(&mut socket, &mut pending, &mut outgoing, ctx, &mut session)
                                .await
                                .is_err()
                            {
                                return;
                            }
                            session.handle.touch(spec.name);
                            let mut plan = plan(&argv, spec, &tables, session.reach(ctx));
                            plan.send(&ctx.forwarder, protocol, Instant::now()).await;
                            let mut later = LaterInPipeline(&mut pending);
                            let reply = tokio::select! {
                                reply = plan.finish(&ctx.forwarder, protocol, &mut later) => reply,
                                _ = session.handle.killed() => return,
                                _ = shutdown.changed() => return,
                            };
                            ctx.errors.record_encoded(&reply);
                            let error = matches!(reply.first(), Some(b'-' | b'!'));
                            let took = started.elapsed();
                            ctx.forwarder.metrics.command(spec.name, error, took);
                            ctx.record_slow(took, &argv, &session);
                            pending.push_back(Pending::Ready(reply));
                        }
                        Ok((_, spec)) => {
                            outgoing.last_data_command = Some(spec.name);
                            let plan = plan(&argv, spec, &tables, session.reach(ctx));
                            pending.push_back(
                                Pending::sent(
                                    plan,
                                    &ctx.forwarder,
                                    argv,
                                    spec.name,
                                    started,
                                    protocol,
                                )
                                .await,
                            );
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(client = session.client.id, error = %e, "protocol error; closing connection");
                    pending.push_back(ready(&Reply::Error(e), session.client.protocol));
                    close = true;
                    break;
                }
            }
        }
        if flush(&mut socket, &mut pending, &mut outgoing, ctx, &mut session)
            .await
            .is_err()
            || close
        {
            return;
        }
        if input.len() > ctx.max_query_buffer {
            warn!(
                client = session.client.id,
                bytes = input.len(),
                "closing client that exceeded the query buffer limit"
            );
            return;
        }
    }
}

/// `argv` as the slow log may keep it: passwords (AUTH's arguments, HELLO's after AUTH)
/// become `(redacted)`, as in Redis.
fn redacted(argv: &[Bytes]) -> std::borrow::Cow<'_, [Bytes]> {
    let secret = Bytes::from_static(b"(redacted)");
    let name = &argv[0];
    if name.eq_ignore_ascii_case(b"auth") {
        let mut out = vec![name.clone()];
        out.extend(argv[1..].iter().map(|_| secret.clone()));
        return out.into();
    }
    if name.eq_ignore_ascii_case(b"hello") {
        if let Some(at) = argv.iter().position(|a| a.eq_ignore_ascii_case(b"auth")) {
            let mut out = argv.to_vec();
            for a in out.iter_mut().skip(at + 1).take(2) {
                *a = secret.clone();
            }
            return out.into();
        }
    }
    argv.into()
}

/// Whether error `e` of command `name` is answered even before authentication: an unknown
/// command or subcommand, a wrong number of arguments, or anything about AUTH, HELLO and
/// QUIT themselves.
fn before_auth(e: &CommandError, name: &[u8]) -> bool {
    matches!(
        e,
        CommandError::UnknownCommand { .. }
            | CommandError::UnknownSubcommand { .. }
            | CommandError::WrongArity(_)
    ) || [&b"auth"[..], b"hello", b"quit"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
}

fn ready(reply: &Reply, protocol: Protocol) -> Pending {
    Pending::Ready(ready_bytes(reply, protocol))
}

fn ready_bytes(reply: &Reply, protocol: Protocol) -> Bytes {
    let mut out = BytesMut::new();
    reply.encode(protocol, &mut out);
    out.freeze()
}

/// The requests still pending after the one being finished.
struct LaterInPipeline<'a>(&'a mut VecDeque<Pending>);

impl LaterRequests for LaterInPipeline<'_> {
    fn parts_on(&mut self, key: PartitionKey) -> Vec<&mut Part> {
        self.0
            .iter_mut()
            .filter_map(|p| match p {
                Pending::Forwarded { plan, .. } => Some(plan),
                Pending::Ready(_) | Pending::Gathered { .. } => None,
            })
            .flat_map(|plan| plan.parts_on(key))
            .collect()
    }
}

/// A forwarded request whose reply is in, waiting for its metrics and slow-log entry.
struct Answered {
    command: &'static str,
    error: bool,
    started: Instant,
    argv: Vec<Bytes>,
}

/// What a connection gathers for its next write to the client.
struct Outgoing {
    /// The replies' bytes.
    bytes: BytesMut,
    /// The forwarded requests answered in it: every reply of a write reaches the client at
    /// once, so one clock read times them all.
    answered: Vec<Answered>,
    /// The last data command read since the last write (a connection command records
    /// itself at once), recorded for CLIENT LIST when the write goes out.
    last_data_command: Option<&'static str>,
}

/// Waits for every pending reply in order and writes them in one go.
async fn flush(
    socket: &mut TcpStream,
    pending: &mut VecDeque<Pending>,
    outgoing: &mut Outgoing,
    ctx: &FrontendContext,
    session: &mut Session,
) -> std::io::Result<()> {
    if let Some(name) = outgoing.last_data_command.take() {
        session.handle.touch(name);
    }
    let Outgoing {
        bytes: out,
        answered,
        ..
    } = outgoing;
    // A request whose partition a later request of this pipeline went to is re-sent only
    // while those later ones did not run either.
    let mut later = std::collections::HashSet::new();
    for p in pending.iter_mut().rev() {
        if let Pending::Forwarded { plan, .. } = p {
            plan.follow_with(&mut later);
        }
    }
    while let Some(p) = pending.pop_front() {
        match p {
            Pending::Ready(bytes) => {
                ctx.errors.record_encoded(&bytes);
                out.extend_from_slice(&bytes);
            }
            Pending::Gathered {
                gather,
                replies,
                command,
                started,
                argv,
                protocol,
            } => {
                let reply = crate::mesh::finish(gather, replies, protocol).await;
                ctx.errors.record_encoded(&reply);
                answered.push(Answered {
                    command,
                    error: false,
                    started,
                    argv,
                });
                out.extend_from_slice(&reply);
            }
            Pending::Forwarded {
                plan,
                argv,
                command,
                started,
                protocol,
                watch,
            } => {
                let mut reply = plan
                    .finish(&ctx.forwarder, protocol, &mut LaterInPipeline(pending))
                    .await;
                if let Some(keys) = watch {
                    reply = remember_watched(&mut session.client, keys, reply, protocol);
                }
                ctx.errors.record_encoded(&reply);
                answered.push(Answered {
                    command,
                    error: matches!(reply.first(), Some(b'-' | b'!')),
                    started,
                    argv,
                });
                out.extend_from_slice(&reply);
            }
        }
    }
    if !answered.is_empty() {
        let now = Instant::now();
        for a in answered.drain(..) {
            let took = now.saturating_duration_since(a.started);
            ctx.forwarder.metrics.command(a.command, a.error, took);
            ctx.record_slow(took, &a.argv, session);
        }
    }
    if !out.is_empty() {
        // A client that stopped reading is still closed at once when CLIENT KILL names it.
        tokio::select! {
            biased;
            _ = session.handle.killed() => {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "killed"));
            }
            written = socket.write_all(out) => written?,
        }
        out.clear();
    }
    Ok(())
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
            ready_bytes(&Reply::OK, protocol)
        }
        None if error_text(&reply).is_some() => reply,
        None => crate::forward::unexpected(protocol),
    }
}

/// EXEC: the connection commands answered now, in order; the data commands sent as one
/// transaction to their partition ([`crate::transaction`]).
async fn exec(
    ctx: &FrontendContext,
    session: &mut Session,
    tables: &crate::routing::RoutingTables,
    queued: Vec<Queued>,
    watched: Vec<Watched>,
    started: Instant,
) -> Pending {
    let protocol = session.client.protocol;
    // The scope outlives this borrow of the session (the connection commands change it).
    let reach = session.reach(ctx);
    let (namespace, share, readonly) = (
        reach.namespace.map(str::to_owned),
        reach.share,
        reach.readonly,
    );
    let scope = Scope {
        namespace: namespace.as_deref(),
        share,
        readonly,
    };
    // The connection commands run only once the transaction is accepted.
    let answers = || {
        queued
            .iter()
            .map(|q| match q {
                Queued::Local(Ok(c)) => Some(match c {
                    // Inside a transaction, INFO shows the proxy's own measures.
                    ConnectionCommand::Info(sections) => Reply::Verbatim(Bytes::from(
                        info_facts(ctx).render(&wanted_sections(sections)),
                    )),
                    c => connection_command(c.clone(), session, ctx),
                }),
                Queued::Local(Err(e)) => Some(Reply::Error(e.clone())),
                Queued::Data { .. } => None,
            })
            .map(|a| a.map(|r| ready_bytes(&r, protocol)))
            .collect()
    };
    match crate::transaction::exec_plan(&queued, watched, answers, tables, scope) {
        Ok(crate::transaction::Exec::Local(bytes)) => Pending::Ready(bytes),
        Ok(crate::transaction::Exec::Remote(plan)) => {
            let argv = vec![Bytes::from_static(b"EXEC")];
            Pending::sent(plan, &ctx.forwarder, argv, "exec", started, protocol).await
        }
        Err(e) => ready(&Reply::Error(e), protocol),
    }
}

/// AUTH's answer for `user` / `password`, marking the session authenticated on success.
fn authenticate(
    ctx: &FrontendContext,
    session: &mut Session,
    user: Option<&[u8]>,
    password: &[u8],
) -> Reply {
    if !ctx.passwords.required() {
        return zankv_commands::connection::auth_without_password(user);
    }
    match ctx.passwords.check(user, password) {
        Some(access) => {
            // CLIENT LIST's `user`: the namespace a password restricts the connection to.
            session.handle.set_user(match &access {
                Access::Namespace(ns) => ns,
                _ => "default",
            });
            session.access = access;
            Reply::OK
        }
        None => Reply::Error(CommandError::WrongPass),
    }
}

fn connection_command(
    cmd: ConnectionCommand,
    session: &mut Session,
    ctx: &FrontendContext,
) -> Reply {
    match &cmd {
        ConnectionCommand::Auth { user, password } => {
            return authenticate(ctx, session, user.as_deref(), password)
        }
        ConnectionCommand::Hello { auth, .. } => match auth {
            Some((user, password)) => {
                if let Reply::Error(e) = authenticate(ctx, session, Some(user), password) {
                    return Reply::Error(e);
                }
            }
            None if !session.authenticated() => return Reply::Error(CommandError::HelloNoAuth),
            None => {}
        },
        ConnectionCommand::Quit => {}
        _ if !session.authenticated() => return Reply::Error(CommandError::NoAuth),
        _ => {}
    }
    // A connection restricted to a namespace may not read or change what all share.
    if session.scope().is_some() {
        let shared = match &cmd {
            ConnectionCommand::ConfigGet(_) => Some("config|get"),
            ConnectionCommand::ConfigSet(_) => Some("config|set"),
            ConnectionCommand::ConfigResetStat => Some("config|resetstat"),
            ConnectionCommand::SlowlogGet(_) => Some("slowlog|get"),
            ConnectionCommand::SlowlogLen => Some("slowlog|len"),
            ConnectionCommand::SlowlogReset => Some("slowlog|reset"),
            ConnectionCommand::ClientList(_) => Some("client|list"),
            ConnectionCommand::ClientKill(_) => Some("client|kill"),
            ConnectionCommand::ClientUnblock { .. } => Some("client|unblock"),
            _ => None,
        };
        if let Some(name) = shared {
            return Reply::Error(CommandError::NoPermCommand(name.to_string()));
        }
    }
    match cmd {
        ConnectionCommand::Info(_) => unreachable!("INFO is planned with the storage nodes"),
        ConnectionCommand::ConfigGet(patterns) => ctx.config().get(&patterns),
        ConnectionCommand::ConfigSet(pairs) => {
            let changes = ctx.config().set(&pairs);
            match changes {
                Ok(changes) => {
                    for (name, value) in changes {
                        ctx.apply_setting(name, &value);
                    }
                    Reply::OK
                }
                Err(e) => Reply::Error(e),
            }
        }
        ConnectionCommand::ConfigResetStat => {
            ctx.forwarder.metrics.reset_stats();
            ctx.errors.reset();
            Reply::OK
        }
        ConnectionCommand::Cluster(sub) => match &ctx.peers {
            Some(peers) => peers.view().answer(&sub),
            None => zankv_commands::cluster::disabled(),
        },
        ConnectionCommand::ClientList(_)
        | ConnectionCommand::ClientInfo
        | ConnectionCommand::ClientKill(_)
        | ConnectionCommand::ClientUnblock { .. } => {
            zankv_process::clients::answer(&ctx.clients, &session.handle, &cmd)
                .expect("a CLIENT command the registry answers")
        }
        ConnectionCommand::SlowlogGet(count) => ctx.slow_log().get(count),
        ConnectionCommand::SlowlogLen => Reply::Integer(ctx.slow_log().len() as i64),
        ConnectionCommand::SlowlogReset => {
            ctx.slow_log().reset();
            Reply::OK
        }
        ConnectionCommand::PubSub(cmd) => pubsub::answer(&cmd, &mut session.subs, &ctx.pubsub),
        // RESET also forgets the authentication, where a password is needed.
        ConnectionCommand::Reset => {
            session.subs.clear();
            if ctx.passwords.required() {
                session.access = Access::Nothing;
                session.handle.set_user("default");
            }
            cmd.answer(&mut session.client)
                .expect("RESET has a common answer")
        }
        other => other
            .answer(&mut session.client)
            .expect("every other connection command has a common answer"),
    }
}

/// What the proxy knows of itself for INFO (the storage nodes' key counts and memory are
/// added by [`crate::info`]).
fn info_facts(ctx: &FrontendContext) -> InfoFacts {
    let metrics = &ctx.forwarder.metrics;
    let counters = metrics.info();
    let (errorstats, total_error_replies) = ctx.errors.snapshot();
    let rss = usage::rss_bytes();
    let peak = ctx.peak_memory.fetch_max(rss, Ordering::Relaxed).max(rss);
    let config = ctx.config();
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
        pubsub: ctx.pubsub.counts(),
        maxclients: ctx.max_clients as u64,
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
