//! The RESP front end: accepts client connections and runs each as a task that reads
//! pipelined requests, answers connection commands itself and queues data commands to the
//! store loop, then writes the replies back in request order.
//!
//! Invariants:
//! - replies leave in exactly the order requests arrived, whatever executes them;
//! - a protocol error is answered, then the connection is closed (as Redis does); any other
//!   error is just that command's reply;
//! - at most `max_clients` connections are served; one more gets Redis's error and is closed;
//! - no RocksDB call and no blocking call runs on this module's tasks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};
use zankv_commands::config::Config;
use zankv_commands::connection::{auth_without_password, ClientSession};
use zankv_commands::info::{wanted_sections, ErrorStats, InfoFacts};
use zankv_commands::keyspace::KeyspaceRead;
use zankv_commands::request::{self, RequestLimits};
use zankv_commands::scripting::ScriptCommand;
use zankv_commands::transaction::{self, in_queue_order, Queued, Step, Watched};
use zankv_commands::{
    blocking, Command, CommandError, ConnectionCommand, Protocol, ReadCommand, Reply, Routed,
};
use zankv_process::clients::{ClientHandle, ClientRegistry};
use zankv_process::pubsub::{self, Hub, Subscriptions};
use zankv_process::usage;

use super::scripting;
use crate::change::Change;
use crate::engine::rocks::RocksOptions;
use crate::node_stats::NodeStats;
use crate::replication::blocking::BlockedPop;
use crate::replication::log_store::GroupId;
use crate::replication::store_loop::StoreHandle;
use crate::routing::{Routing, SharedRouting};
use crate::script::Scripts;
use crate::worker::BatchItem;

/// Most requests parsed from one connection before their replies are written.
const MAX_PIPELINE: usize = 1024;

/// What every connection task shares.
pub struct ServerContext {
    /// The store loop, which executes data commands.
    pub store: StoreHandle,
    /// Which group a command's keys belong to.
    pub routing: Arc<SharedRouting>,
    /// Counters for INFO.
    pub stats: Arc<NodeStats>,
    /// Largest replicated write, encoded (`raft.max_entry_mb`).
    pub max_write_bytes: usize,
    /// Request limits.
    pub limits: RequestLimits,
    /// Largest unparsed input a client may accumulate.
    pub max_query_buffer: usize,
    /// Most simultaneous clients.
    pub max_clients: usize,
    /// The port clients connect to (INFO).
    pub port: u16,
    /// The connected clients (CLIENT LIST / KILL).
    pub clients: ClientRegistry,
    /// What CONFIG GET shows and CONFIG SET changes.
    pub config: std::sync::Mutex<Config>,
    /// INFO's `run_id`.
    pub run_id: String,
    /// Error replies sent, for INFO.
    pub errors: ErrorStats,
    /// The most memory INFO has seen in use.
    pub peak_memory: AtomicU64,
    /// RocksDB's settings (its shared block cache), for INFO's memory section.
    pub rocks: RocksOptions,
    /// The node's Pub/Sub subscriptions (a node's own: its clients', not the proxies').
    pub pubsub: Arc<Hub>,
    /// The script cache and the scripts running now.
    pub scripts: Arc<Scripts>,
}

impl ServerContext {
    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Per-connection state.
struct Session {
    client: ClientSession,
    /// Its entry among the connected clients.
    handle: Arc<ClientHandle>,
    /// Its Pub/Sub subscriptions.
    subs: Subscriptions,
}

/// Replies that are known now or will come from a store loop.
enum Pending {
    /// A reply produced by the connection itself, encoded for `Protocol`.
    Ready(Reply, Protocol),
    /// Bytes to write as they are (Pub/Sub messages, encoded once for their subscribers).
    Encoded(Bytes),
    /// WATCH's tokens; `remember`: a client's WATCH, which keeps them and answers OK (else
    /// a proxy's `ZANKV.WATCH`, answered with the tokens).
    Watch {
        rx: oneshot::Receiver<Reply>,
        keys: Vec<Bytes>,
        remember: bool,
        protocol: Protocol,
    },
    /// EXEC: the connection commands' answers (`None` in each data command's place) and
    /// the transaction's reply.
    Exec {
        rx: oneshot::Receiver<Vec<Reply>>,
        answers: Vec<Option<Reply>>,
        protocol: Protocol,
    },
    /// The replies of a batch of `len` data commands.
    Batch {
        rx: oneshot::Receiver<Vec<Reply>>,
        len: usize,
        protocol: Protocol,
    },
}

/// What the connection does with one request.
enum Dispatch {
    /// Answered already (a command that does not parse).
    Reply(Reply),
    /// A connection or server command, answered by the connection itself.
    Connection(ConnectionCommand, &'static str),
    /// A data command for the group's leader.
    Data(GroupId, BatchItem, &'static str),
    /// A transaction, sent alone to the group's leader.
    Transaction(GroupId, BatchItem),
    /// WATCH of keys of a group (`remember`: see [`Pending::Watch`]).
    Watch {
        group: GroupId,
        keys: Vec<Bytes>,
        remember: bool,
    },
    /// EXEC of the connection's queued transaction.
    Exec {
        queued: Vec<Queued>,
        watched: Vec<Watched>,
    },
    /// A script (for the group's leader) or a command of the script cache (`group`: None).
    Script {
        group: Option<GroupId>,
        cmd: ScriptCommand,
    },
    /// A blocking pop for the group's leader, which holds the connection until answered.
    Block {
        group: GroupId,
        pop: BlockedPop,
        timeout_ms: u64,
        name: &'static str,
    },
}

/// Serves RESP on `listener` until `shutdown` turns true, then waits for every connection
/// task to finish its current batch.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    shutdown: watch::Receiver<bool>,
) {
    let stats = ctx.stats.clone();
    let max_clients = ctx.max_clients;
    let rejected = move || stats.connection_rejected();
    zankv_process::serve_clients(
        listener,
        max_clients,
        shutdown.clone(),
        rejected,
        |socket, peer| {
            let ctx = ctx.clone();
            let shutdown = shutdown.clone();
            async move {
                ctx.stats.client_connected();
                debug!(%peer, "client connected");
                connection(socket, peer, &ctx, shutdown).await;
                ctx.stats.client_disconnected();
            }
        },
    )
    .await;
    info!("RESP server stopped");
}

async fn connection(
    mut socket: TcpStream,
    peer: SocketAddr,
    ctx: &ServerContext,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let registration = ctx.clients.register(id, peer.to_string(), local);
    let mut session = Session {
        client: ClientSession::new(id),
        handle: registration.handle.clone(),
        subs: Subscriptions::new(ctx.pubsub.clone(), id),
    };
    let mut input = BytesMut::with_capacity(4 * 1024);
    let mut reader = request::RequestReader::default();
    let mut out = Outbox {
        batch: OpenBatch::default(),
        pending: VecDeque::new(),
        output: BytesMut::with_capacity(4 * 1024),
    };
    loop {
        // Keep room for a full-sized read (a full buffer would otherwise be refilled a few
        // bytes at a time); BytesMut reuses its allocation once consumed input is released.
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        tokio::select! {
            read = socket.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = shutdown.changed() => return,
            _ = session.handle.killed() => return,
            message = session.subs.next() => {
                // A subscriber cut off for falling behind is closed.
                let Some(message) = message else { return };
                message.write(session.client.protocol, &mut out.output);
                for m in session.subs.ready() {
                    m.write(session.client.protocol, &mut out.output);
                }
                if socket.write_all(&out.output).await.is_err() {
                    return;
                }
                out.output.clear();
                continue;
            }
        }
        // Let the other connections that became readable run first, so that their batches
        // reach the store loop close together and share its next iteration.
        tokio::task::yield_now().await;
        let mut close = false;
        let mut commands = 0u64;
        // One routing table for all the commands of this read; the client's last command is
        // recorded once, after the read's data commands.
        let routing = ctx.routing.load();
        let mut last_data_command = None;
        loop {
            match reader.next(&mut input, &ctx.limits) {
                Ok(Some(argv)) if argv.is_empty() => continue,
                Ok(Some(argv)) => {
                    commands += 1;
                    // Messages published before this request arrived go out before its
                    // reply.
                    if let Some(pushes) = session.subs.ready_encoded(session.client.protocol) {
                        out.send_batch(ctx, session.client.protocol).await;
                        out.pending.push_back(Pending::Encoded(pushes));
                    }
                    let dispatched = match scripting::busy_refusal(ctx, &argv) {
                        Some(refusal) => Dispatch::Reply(refusal),
                        None => dispatch(argv, &mut session, &routing, ctx.max_write_bytes),
                    };
                    match dispatched {
                        Dispatch::Data(group, item, name) => {
                            last_data_command = Some(name);
                            let stale =
                                session.client.readonly && matches!(item, BatchItem::Read(_));
                            if out.batch.group != Some(group) || out.batch.stale != stale {
                                out.send_batch(ctx, session.client.protocol).await;
                                out.batch.group = Some(group);
                                out.batch.stale = stale;
                            }
                            out.batch.items.push(item);
                        }
                        Dispatch::Reply(reply) => {
                            out.send_batch(ctx, session.client.protocol).await;
                            out.pending
                                .push_back(Pending::Ready(reply, session.client.protocol));
                        }
                        Dispatch::Transaction(group, item) => {
                            last_data_command = Some("exec");
                            out.send_batch(ctx, session.client.protocol).await;
                            let rx = ctx.store.batch(group, vec![item]).await;
                            out.pending.push_back(Pending::Batch {
                                rx,
                                len: 1,
                                protocol: session.client.protocol,
                            });
                        }
                        Dispatch::Watch {
                            group,
                            keys,
                            remember,
                        } => {
                            last_data_command = Some("watch");
                            // Earlier writes are proposed before the keys are watched.
                            out.send_batch(ctx, session.client.protocol).await;
                            let rx = ctx.store.watch(group, keys.clone()).await;
                            out.pending.push_back(Pending::Watch {
                                rx,
                                keys,
                                remember,
                                protocol: session.client.protocol,
                            });
                        }
                        Dispatch::Exec { queued, watched } => {
                            last_data_command = Some("exec");
                            out.send_batch(ctx, session.client.protocol).await;
                            // The tokens of a WATCH of this pipeline must be in first.
                            let watching = out
                                .pending
                                .iter()
                                .any(|p| matches!(p, Pending::Watch { remember: true, .. }));
                            let mut watched = watched;
                            if watching {
                                if out
                                    .flush(ctx, &mut socket, &mut session.client)
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                                watched.append(&mut session.client.watched);
                            }
                            let p = exec(ctx, &mut session, &routing, queued, watched).await;
                            out.pending.push_back(p);
                        }
                        Dispatch::Block {
                            group,
                            pop,
                            timeout_ms,
                            name,
                        } => {
                            last_data_command = None;
                            session.handle.touch(name);
                            // Earlier replies leave first; later commands run once it is
                            // answered, as in Redis.
                            if out
                                .flush(ctx, &mut socket, &mut session.client)
                                .await
                                .is_err()
                            {
                                return;
                            }
                            let _blocked = ctx.stats.client_blocked();
                            session.handle.set_blocked(true);
                            let rx = ctx.store.block(group, pop, timeout_ms).await;
                            let reply = tokio::select! {
                                reply = rx => reply.unwrap_or(Reply::Error(CommandError::ShuttingDown)),
                                // CLIENT UNBLOCK: the store loop forgets the waiter once
                                // its reply channel is dropped.
                                reply = session.handle.unblocked() => reply,
                                () = zankv_process::read_while_blocked(&mut socket, &mut input, ctx.max_query_buffer) => return,
                                _ = shutdown.changed() => return,
                                _ = session.handle.killed() => return,
                            };
                            session.handle.set_blocked(false);
                            out.pending
                                .push_back(Pending::Ready(reply, session.client.protocol));
                        }
                        Dispatch::Script { group, cmd } => {
                            last_data_command = Some("eval");
                            out.send_batch(ctx, session.client.protocol).await;
                            match scripting::request(ctx, &routing, group, cmd).await {
                                Ok((group, item)) => {
                                    let rx = ctx.store.batch(group, vec![item]).await;
                                    out.pending.push_back(Pending::Batch {
                                        rx,
                                        len: 1,
                                        protocol: session.client.protocol,
                                    });
                                }
                                Err(reply) => out
                                    .pending
                                    .push_back(Pending::Ready(reply, session.client.protocol)),
                            }
                        }
                        Dispatch::Connection(c, name) => {
                            last_data_command = None;
                            session.handle.touch(name);
                            // Earlier data commands go first; INFO must see their effects,
                            // so it waits for their replies.
                            out.send_batch(ctx, session.client.protocol).await;
                            if matches!(c, ConnectionCommand::Info(_))
                                && out
                                    .flush(ctx, &mut socket, &mut session.client)
                                    .await
                                    .is_err()
                            {
                                return;
                            }
                            let quit = c == ConnectionCommand::Quit;
                            let reply = connection_command(c, &mut session, ctx).await;
                            // A PUBLISH to the connection's own channels: its messages come
                            // before its reply, as in Redis.
                            if let Some(pushes) =
                                session.subs.ready_encoded(session.client.protocol)
                            {
                                out.pending.push_back(Pending::Encoded(pushes));
                            }
                            let resp = if session.client.protocol == Protocol::Resp3 {
                                3
                            } else {
                                2
                            };
                            session
                                .handle
                                .set_identity(session.client.name.as_deref(), resp);
                            out.pending
                                .push_back(Pending::Ready(reply, session.client.protocol));
                            if quit {
                                close = true;
                                break;
                            }
                        }
                    }
                    if out.pending.len() + out.batch.items.len() >= MAX_PIPELINE {
                        if let Some(name) = last_data_command.take() {
                            session.handle.touch(name);
                        }
                        if out
                            .flush(ctx, &mut socket, &mut session.client)
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(client = session.client.id, error = %e, "protocol error; closing connection");
                    out.send_batch(ctx, session.client.protocol).await;
                    out.pending
                        .push_back(Pending::Ready(Reply::Error(e), session.client.protocol));
                    close = true;
                    break;
                }
            }
        }
        ctx.stats.add_commands(commands);
        if let Some(name) = last_data_command {
            session.handle.touch(name);
        }
        if out
            .flush(ctx, &mut socket, &mut session.client)
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

/// What a connection owes its client: the open batch of data commands, the replies to
/// come in request order, and the bytes to write.
struct Outbox {
    /// Consecutive data commands of one group, sent to the store loop as one batch.
    batch: OpenBatch,
    pending: VecDeque<Pending>,
    output: BytesMut,
}

impl Outbox {
    /// Sends the open batch, if any (see [`send_batch`]).
    async fn send_batch(&mut self, ctx: &ServerContext, protocol: Protocol) {
        send_batch(ctx, &mut self.batch, &mut self.pending, protocol).await;
    }

    /// Sends the open batch, then waits for every pending reply and writes them.
    async fn flush(
        &mut self,
        ctx: &ServerContext,
        socket: &mut TcpStream,
        session: &mut ClientSession,
    ) -> std::io::Result<()> {
        self.send_batch(ctx, session.protocol).await;
        flush(
            socket,
            &mut self.pending,
            &mut self.output,
            &ctx.errors,
            session,
        )
        .await
    }
}

/// Consecutive data commands of one group.
#[derive(Default)]
struct OpenBatch {
    group: Option<GroupId>,
    /// Reads of a READONLY connection, served by the local replica as it is.
    stale: bool,
    items: Vec<BatchItem>,
}

/// Sends the open batch of data commands, if any, to the store loop (or, for stale reads,
/// straight to the local replica's worker).
async fn send_batch(
    ctx: &ServerContext,
    batch: &mut OpenBatch,
    pending: &mut VecDeque<Pending>,
    protocol: Protocol,
) {
    let Some(group) = batch.group.take() else {
        return;
    };
    let items = std::mem::take(&mut batch.items);
    let len = items.len();
    let rx = if batch.stale {
        ctx.store
            .stale_reads(group, BatchItem::into_reads(items))
            .await
    } else {
        ctx.store.batch(group, items).await
    };
    pending.push_back(Pending::Batch { rx, len, protocol });
}

/// Waits for every pending reply in order, encodes them and writes them in one go.
/// Error replies are counted in `errors`.
async fn flush(
    socket: &mut TcpStream,
    pending: &mut VecDeque<Pending>,
    out: &mut BytesMut,
    errors: &ErrorStats,
    session: &mut ClientSession,
) -> std::io::Result<()> {
    let count = |reply: &Reply| {
        if let Reply::Error(e) = reply {
            errors.record_message(&e.to_string());
        }
    };
    while let Some(p) = pending.pop_front() {
        match p {
            Pending::Ready(reply, protocol) => {
                count(&reply);
                reply.encode(protocol, out);
            }
            Pending::Encoded(bytes) => out.extend_from_slice(&bytes),
            Pending::Watch {
                rx,
                keys,
                remember,
                protocol,
            } => {
                let reply = match rx.await {
                    Ok(Reply::Array(tokens)) if remember && tokens.len() == keys.len() => {
                        for (key, token) in keys.into_iter().zip(tokens) {
                            if let Reply::Bulk(token) = token {
                                session.watched.push(Watched { key, token });
                            }
                        }
                        Reply::OK
                    }
                    Ok(reply) => reply,
                    Err(_) => Reply::Error(CommandError::ShuttingDown),
                };
                count(&reply);
                reply.encode(protocol, out);
            }
            Pending::Exec {
                rx,
                answers,
                protocol,
            } => {
                let reply = match rx.await.map(|mut r| r.pop()) {
                    Ok(Some(Reply::Array(data))) => in_queue_order(answers, data)
                        .map(Reply::Array)
                        .unwrap_or_else(|| {
                            Reply::Error(CommandError::Internal(
                                "a transaction answered a different number of replies".into(),
                            ))
                        }),
                    Ok(Some(reply)) => reply,
                    Ok(None) | Err(_) => Reply::Error(CommandError::ShuttingDown),
                };
                count(&reply);
                reply.encode(protocol, out);
            }
            Pending::Batch { rx, len, protocol } => match rx.await {
                Ok(replies) => {
                    for reply in replies {
                        count(&reply);
                        reply.encode(protocol, out);
                    }
                }
                Err(_) => {
                    for _ in 0..len {
                        Reply::Error(CommandError::ShuttingDown).encode(protocol, out);
                    }
                }
            },
        }
    }
    if !out.is_empty() {
        socket.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Parses one request and decides who answers it, through the connection's transaction
/// state.
fn dispatch(
    argv: Vec<Bytes>,
    session: &mut Session,
    routing: &Routing,
    max_write_bytes: usize,
) -> Dispatch {
    if argv[0].eq_ignore_ascii_case(ON_PARTITION) {
        return dispatch_on_partition(argv, routing, max_write_bytes);
    }
    if argv[0].eq_ignore_ascii_case(POP_ID) {
        return dispatch_with_pop_id(argv, session, routing, max_write_bytes);
    }
    if argv[0].eq_ignore_ascii_case(transaction::TXN_COMMAND) {
        return match super::transaction::remote(&argv, routing, max_write_bytes) {
            Ok((group, item)) => Dispatch::Transaction(group, item),
            Err(e) => Dispatch::Reply(Reply::Error(e)),
        };
    }
    if argv[0].eq_ignore_ascii_case(transaction::WATCH_COMMAND) {
        return match super::transaction::remote_watch(&argv, routing) {
            Ok((group, keys)) => Dispatch::Watch {
                group,
                keys,
                remember: false,
            },
            Err(e) => Dispatch::Reply(Reply::Error(e)),
        };
    }
    let parsed = zankv_commands::parse(&argv);
    if let Some(reply) =
        pubsub::while_subscribed(&session.subs, session.client.protocol, &argv, &parsed)
    {
        return Dispatch::Reply(reply);
    }
    let (argv, parsed) = match transaction::step(&mut session.client, argv, parsed) {
        Step::Run(argv, parsed) => (argv, parsed),
        Step::Reply(reply) => return Dispatch::Reply(reply),
        Step::Exec { queued, watched } => return Dispatch::Exec { queued, watched },
    };
    let (cmd, spec) = match parsed {
        Err(e) => return Dispatch::Reply(Reply::Error(e)),
        Ok((Command::Connection(ConnectionCommand::Watch(keys)), _)) => {
            return match super::transaction::watch_group(&keys, routing) {
                Ok(group) => Dispatch::Watch {
                    group,
                    keys,
                    remember: true,
                },
                Err(e) => Dispatch::Reply(Reply::Error(e)),
            }
        }
        Ok((Command::Connection(c), spec)) => return Dispatch::Connection(c, spec.name),
        // The script cache is the node's: no partition.
        Ok((Command::Script(cmd), _)) if !cmd.on_partition() => {
            return Dispatch::Script { group: None, cmd }
        }
        Ok(parsed) => parsed,
    };
    match routing.route(spec, &argv) {
        Ok(group) => data(argv, cmd, spec, group, max_write_bytes),
        Err(e) => Dispatch::Reply(Reply::Error(e)),
    }
}

/// The proxy's way to run a data command on one named partition, which is how it combines
/// keyless commands (DBSIZE, SCAN, KEYS, ...) over every partition:
/// `ZANKV.ON <namespace>-<partition> <command> [arg ...]`. A command with keys must have
/// them in that partition; `INFO KEYSPACE` answers the partition's `[keys, expires]`. Not in
/// the command table: clients of the proxy cannot send it.
pub(super) const ON_PARTITION: &[u8] = b"zankv.on";

fn dispatch_on_partition(
    mut argv: Vec<Bytes>,
    routing: &Routing,
    max_write_bytes: usize,
) -> Dispatch {
    if argv.len() < 3 {
        return Dispatch::Reply(Reply::Error(CommandError::WrongArity("zankv.on".into())));
    }
    let inner = argv.split_off(2);
    let name = String::from_utf8_lossy(&argv[1]);
    let Some(layout) = routing.layout_by_name(&name) else {
        return Dispatch::Reply(Reply::Error(CommandError::ClusterChanged(format!(
            "partition {name} is not known to this node"
        ))));
    };
    let (cmd, spec) = match zankv_commands::parse(&inner) {
        Err(e) => return Dispatch::Reply(Reply::Error(e)),
        // The partition's keyspace counts, which the proxy totals for its INFO.
        Ok((Command::Connection(ConnectionCommand::Info(sections)), spec)) if matches!(sections.as_slice(), [s] if s.eq_ignore_ascii_case(b"keyspace")) =>
        {
            return Dispatch::Data(
                layout.id,
                BatchItem::Read(ReadCommand::Keyspace(KeyspaceRead::PartitionKeyspace)),
                spec.name,
            );
        }
        Ok((Command::Connection(_), _)) => {
            return Dispatch::Reply(Reply::Error(CommandError::Syntax))
        }
        Ok(parsed) => parsed,
    };
    if spec.key_positions(&inner).next().is_some() {
        match routing.route(spec, &inner) {
            Ok(group) if group == layout.id => {}
            Ok(_) => return Dispatch::Reply(Reply::Error(CommandError::CrossSlot)),
            Err(e) => return Dispatch::Reply(Reply::Error(e)),
        }
    }
    data(inner, cmd, spec, layout.id, max_write_bytes)
}

/// A proxy's blocking pop named by an id, which it sends again (with the same id) when its
/// connection failed before the reply came, so that the pop runs once
/// ([`crate::data::pops`]): `ZANKV.POPID <id> <command> [arg ...]`, the command possibly a
/// `ZANKV.ON` one. Not in the command table: clients of the proxy cannot send it.
const POP_ID: &[u8] = b"zankv.popid";
/// Longest pop id.
const MAX_POP_ID: usize = 64;

fn dispatch_with_pop_id(
    mut argv: Vec<Bytes>,
    session: &mut Session,
    routing: &Routing,
    max_write_bytes: usize,
) -> Dispatch {
    // One id per pop: a nested one is refused (it would also let a request recurse).
    if argv.len() < 3 || argv[1].len() > MAX_POP_ID || argv[2].eq_ignore_ascii_case(POP_ID) {
        return Dispatch::Reply(Reply::Error(CommandError::Syntax));
    }
    let inner = argv.split_off(2);
    let id = argv.pop().expect("checked");
    match dispatch(inner, session, routing, max_write_bytes) {
        Dispatch::Block {
            group,
            mut pop,
            timeout_ms,
            name,
        } => {
            pop.id = Some(id);
            Dispatch::Block {
                group,
                pop,
                timeout_ms,
                name,
            }
        }
        // Only a blocking pop outside MULTI carries an id.
        Dispatch::Reply(reply) => Dispatch::Reply(reply),
        _ => Dispatch::Reply(Reply::Error(CommandError::Syntax)),
    }
}

/// A data command for `group`: a write is replicated as its arguments, a read runs as
/// parsed (which one it is, its type says).
fn data(
    argv: Vec<Bytes>,
    cmd: Command,
    spec: &zankv_commands::CommandSpec,
    group: GroupId,
    max_write_bytes: usize,
) -> Dispatch {
    match cmd.route() {
        Routed::Write(_) if Change::command_size(&argv) > max_write_bytes => {
            Dispatch::Reply(Reply::Error(CommandError::WriteTooLarge(
                Change::command_size(&argv),
                max_write_bytes,
            )))
        }
        Routed::Write(_) => match blocking::timeout_ms(spec, &argv) {
            Some(timeout) => Dispatch::Block {
                group,
                pop: BlockedPop {
                    keys: blocking::source_positions(spec, &argv)
                        .into_iter()
                        .map(|i| argv[i].clone())
                        .collect(),
                    argv,
                    id: None,
                },
                timeout_ms: timeout.unwrap_or(0),
                name: spec.name,
            },
            None => Dispatch::Data(group, BatchItem::Write(argv), spec.name),
        },
        Routed::Read(read) => Dispatch::Data(group, BatchItem::Read(read), spec.name),
        Routed::Script(cmd) => Dispatch::Script {
            group: Some(group),
            cmd,
        },
        Routed::Connection(_) => Dispatch::Reply(Reply::Error(CommandError::Internal(
            "a connection command taken for a data command".into(),
        ))),
    }
}

/// EXEC of a connection's transaction: its connection commands answered now, in order, and
/// its data commands sent as one transaction to their partition's leader.
async fn exec(
    ctx: &ServerContext,
    session: &mut Session,
    routing: &Routing,
    queued: Vec<Queued>,
    watched: Vec<Watched>,
) -> Pending {
    let protocol = session.client.protocol;
    // Nothing runs, not even the connection commands, when the transaction is refused.
    let transaction =
        match super::transaction::local(&queued, watched, routing, ctx.max_write_bytes) {
            Ok(transaction) => transaction,
            Err(e) => return Pending::Ready(Reply::Error(e), protocol),
        };
    let mut answers = Vec::with_capacity(queued.len());
    for q in queued {
        answers.push(match q {
            Queued::Local(Ok(c)) => Some(connection_command(c, session, ctx).await),
            Queued::Local(Err(e)) => Some(Reply::Error(e)),
            Queued::Data { .. } => None,
        });
    }
    match transaction {
        None => Pending::Ready(
            Reply::Array(answers.into_iter().flatten().collect()),
            protocol,
        ),
        Some((group, item)) => Pending::Exec {
            rx: ctx.store.batch(group, vec![item]).await,
            answers,
            protocol,
        },
    }
}

async fn connection_command(
    cmd: ConnectionCommand,
    session: &mut Session,
    ctx: &ServerContext,
) -> Reply {
    match cmd {
        // The storage node has only Redis's passwordless default user; the proxy is where
        // passwords are checked.
        ConnectionCommand::Auth { user, .. } => auth_without_password(user.as_deref()),
        ConnectionCommand::Hello {
            auth: Some((user, _)),
            ..
        } if user.as_ref() != b"default" => Reply::Error(CommandError::WrongPass),
        ConnectionCommand::Info(sections) => {
            Reply::Verbatim(Bytes::from(info(&sections, ctx).await))
        }
        ConnectionCommand::ConfigGet(patterns) => ctx.config().get(&patterns),
        // A storage node's own settings come from its configuration file; the rest are
        // only shown, but for busy-reply-threshold.
        ConnectionCommand::ConfigSet(pairs) => match ctx.config().set(&pairs) {
            Ok(changed) => {
                for (name, value) in changed {
                    // The one setting a node applies at run time: when a script is BUSY.
                    if name == "busy-reply-threshold" {
                        if let Ok(ms) = value.parse() {
                            ctx.scripts.set_busy_ms(ms);
                        }
                    }
                }
                Reply::OK
            }
            Err(e) => Reply::Error(e),
        },
        ConnectionCommand::ConfigResetStat => {
            ctx.stats.reset_info();
            ctx.errors.reset();
            Reply::OK
        }
        // A storage node is not a cluster node: proxies speak the cluster protocol.
        ConnectionCommand::Cluster(_) => zankv_commands::cluster::disabled(),
        // A storage node keeps no slow log (slowlog-log-slower-than is -1): the proxy does.
        ConnectionCommand::ClientList(_)
        | ConnectionCommand::ClientInfo
        | ConnectionCommand::ClientKill(_)
        | ConnectionCommand::ClientUnblock { .. } => {
            zankv_process::clients::answer(&ctx.clients, &session.handle, &cmd)
                .expect("a CLIENT command the registry answers")
        }
        ConnectionCommand::PubSub(cmd) => pubsub::answer(&cmd, &mut session.subs, &ctx.pubsub),
        ConnectionCommand::Reset => {
            session.subs.clear();
            cmd.answer(&mut session.client)
                .expect("RESET has a common answer")
        }
        ConnectionCommand::SlowlogGet(_) => Reply::Array(vec![]),
        ConnectionCommand::SlowlogLen => Reply::Integer(0),
        ConnectionCommand::SlowlogReset => Reply::OK,
        other => other
            .answer(&mut session.client)
            .expect("every other connection command has a common answer"),
    }
}

/// INFO's text for the requested sections, Redis's fields filled with this node's own
/// measures: its memory (resident, and RocksDB's shared block cache as the data part), CPU
/// time, counters, error replies, the raft roles of its replicas (replication section) and
/// the keys of every replica it hosts, leaders and followers alike (keyspace section).
async fn info(sections: &[Bytes], ctx: &ServerContext) -> String {
    let wanted = wanted_sections(sections);
    let stats = ctx.stats.snapshot();
    let (errorstats, total_error_replies) = ctx.errors.snapshot();
    let mut keyspace = None;
    if wanted.contains(&"keyspace") {
        let (mut keys, mut expires) = (0, 0);
        for (_, _, p) in ctx.store.workers().await {
            if let Some(state) = p.state() {
                keys += state.keys;
                expires += state.expires;
            }
        }
        keyspace = Some((keys, expires));
    }
    let mut replication = Vec::new();
    if wanted.contains(&"replication") {
        let groups = ctx.store.status().await.unwrap_or_default();
        let count = |role: &str| groups.iter().filter(|g| g.role == role).count();
        replication = vec![
            ("zankv_raft_groups".to_string(), groups.len().to_string()),
            ("zankv_raft_leaders".into(), count("leader").to_string()),
            ("zankv_raft_followers".into(), count("follower").to_string()),
        ];
    }
    let rss = usage::rss_bytes();
    let dataset = ctx.rocks.cache_usage();
    let used = rss.max(dataset);
    let peak = ctx.peak_memory.fetch_max(used, Ordering::Relaxed).max(used);
    let (hz, maxmemory, policy) = {
        let config = ctx.config();
        (
            config.value("hz").to_string(),
            config.value("maxmemory").parse().unwrap_or(0),
            config.value("maxmemory-policy").to_string(),
        )
    };
    InfoFacts {
        zankv_role: "storage",
        tcp_port: ctx.port,
        run_id: ctx.run_id.clone(),
        uptime_s: ctx.stats.started.elapsed().as_secs(),
        hz,
        config_file: String::new(),
        cluster_enabled: false,
        connected_clients: stats.connected_clients,
        blocked_clients: stats.blocked_clients,
        pubsub: ctx.pubsub.counts(),
        maxclients: ctx.max_clients as u64,
        used_memory: used,
        used_memory_rss: rss,
        used_memory_peak: peak,
        used_memory_dataset: dataset,
        maxmemory,
        maxmemory_policy: policy,
        total_system_memory: usage::total_system_memory(),
        total_connections: stats.total_connections,
        total_commands: stats.total_commands,
        rejected_connections: stats.rejected_connections,
        expired_keys: stats.expired_keys,
        total_error_replies,
        errorstats,
        replication,
        cpu: usage::cpu_seconds(),
        keyspace,
    }
    .render(&wanted)
}
