//! The storage node's RESP front end: a [`zankv_process::session`] whose executor queues
//! data commands to the store loop — consecutive ones of one partition as one batch — and
//! answers the node's internal requests from proxies (`ZANKV.ON`, `ZANKV.POPID`, remote
//! transactions and WATCH).
//!
//! Invariants:
//! - replies leave in exactly the order requests arrived (the session's queue; a batch is
//!   sent to the store loop before anything after it is queued or awaited);
//! - while a script has run past `busy-reply-threshold`, only Redis's `allow_busy`
//!   commands run;
//! - no RocksDB call and no blocking call runs on this module's tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use zankv_commands::connection::ClientSession;
use zankv_commands::info::{wanted_sections, InfoFacts};
use zankv_commands::keyspace::KeyspaceRead;
use zankv_commands::notify;
use zankv_commands::pubsub::Kind;
use zankv_commands::scripting::ScriptCommand;
use zankv_commands::transaction::{self, in_queue_order, Queued, Watched};
use zankv_commands::{
    blocking, Command, CommandError, CommandSpec, ConnectionCommand, Protocol, ReadCommand, Reply,
    Routed,
};
use zankv_process::session::{self, Base, Executor, Run};
use zankv_process::usage;

use super::scripting;
use crate::change::Change;
use crate::engine::rocks::RocksOptions;
use crate::events::{Listening, Notifier};
use crate::node_stats::NodeStats;
use crate::replication::blocking::BlockedPop;
use crate::replication::log_store::GroupId;
use crate::replication::store_loop::StoreHandle;
use crate::routing::{Routing, SharedRouting};
use crate::script::Scripts;
use crate::worker::BatchItem;

/// What every connection task shares.
pub struct ServerContext {
    /// What every RESP session shares (clients, CONFIG, limits, Pub/Sub, ...).
    pub base: Base,
    /// The store loop, which executes data commands.
    pub store: StoreHandle,
    /// Which group a command's keys belong to.
    pub routing: Arc<SharedRouting>,
    /// Counters for INFO.
    pub stats: Arc<NodeStats>,
    /// Largest replicated write, encoded (`raft.max_entry_mb`).
    pub max_write_bytes: usize,
    /// The port clients connect to (INFO).
    pub port: u16,
    /// INFO's `run_id`.
    pub run_id: String,
    /// The most memory INFO has seen in use.
    pub peak_memory: AtomicU64,
    /// RocksDB's settings (its shared block cache), for INFO's memory section.
    pub rocks: RocksOptions,
    /// The script cache and the scripts running now.
    pub scripts: Arc<Scripts>,
    /// Keyspace notifications: the node's setting and the proxies listening.
    pub events: Arc<Notifier>,
}

/// Serves RESP on `listener` until `shutdown` turns true, then waits for every connection
/// task to finish its current batch.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ServerContext>,
    shutdown: watch::Receiver<bool>,
) {
    session::serve(listener, ctx, shutdown).await;
}

type Session = session::Session<ServerContext>;

/// A connection's state of its own on a node.
pub struct NodeConn {
    /// The routing table of the requests being read.
    routing: Arc<Routing>,
    /// Consecutive data commands of one group, sent to the store loop as one batch.
    batch: OpenBatch,
    /// A proxy's connection listening to keyspace events (`ZANKV.EVENTS`).
    listening: Option<Listening>,
}

/// Consecutive data commands of one group.
#[derive(Default)]
struct OpenBatch {
    group: Option<GroupId>,
    /// Reads of a READONLY connection, served by the local replica as it is.
    stale: bool,
    items: Vec<BatchItem>,
}

/// Replies that will come from the store loop.
pub enum Later {
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

/// What a node runs alone.
pub enum Job {
    /// A blocking pop for the group's leader, which holds the connection until answered.
    Block {
        group: GroupId,
        pop: BlockedPop,
        timeout_ms: u64,
    },
    /// INFO, which must see the effects of the connection's earlier commands.
    Info(Vec<Bytes>),
}

/// What the node does with a data request.
enum Dispatch {
    /// Answered already.
    Reply(Reply),
    /// A data command for the group's leader.
    Data(GroupId, BatchItem, &'static str),
    /// A transaction, sent alone to the group's leader.
    Transaction(GroupId, BatchItem),
    /// WATCH of keys of a group (`remember`: see [`Later::Watch`]).
    Watch {
        group: GroupId,
        keys: Vec<Bytes>,
        remember: bool,
    },
    /// A script (for the group's leader) or a command of the script cache (`group`: None).
    Script {
        group: Option<GroupId>,
        cmd: ScriptCommand,
    },
    /// A blocking pop for the group's leader.
    Block {
        group: GroupId,
        pop: BlockedPop,
        timeout_ms: u64,
        name: &'static str,
    },
}

impl Executor for ServerContext {
    type Conn = NodeConn;
    type Later = Later;
    type Job = Job;

    // The batches of connections that became readable together reach the store loop close
    // together and share its next iteration.
    const YIELD_AFTER_READ: bool = true;

    fn base(&self) -> &Base {
        &self.base
    }

    fn open(&self, _client: &mut ClientSession) -> NodeConn {
        NodeConn {
            routing: self.routing.load(),
            batch: OpenBatch::default(),
            listening: None,
        }
    }

    fn begin_read(&self, s: &mut Session) {
        // One routing table for all the commands of a read.
        s.conn.routing = self.routing.load();
    }

    async fn internal(
        &self,
        s: &mut Session,
        argv: Vec<Bytes>,
        _started: Instant,
    ) -> Result<Run<Job>, Vec<Bytes>> {
        if let Some(refusal) = scripting::busy_refusal(self, &argv) {
            return Ok(Run::Reply(refusal));
        }
        if argv[0].eq_ignore_ascii_case(EVENTS) {
            return Ok(Run::Reply(self.listen(s, &argv)));
        }
        let routing = &s.conn.routing;
        let dispatch = if argv[0].eq_ignore_ascii_case(ON_PARTITION) {
            dispatch_on_partition(argv, routing, self.max_write_bytes)
        } else if argv[0].eq_ignore_ascii_case(POP_ID) {
            dispatch_with_pop_id(argv, routing, self.max_write_bytes)
        } else if argv[0].eq_ignore_ascii_case(transaction::TXN_COMMAND) {
            match super::transaction::remote(&argv, routing, self.max_write_bytes) {
                Ok((group, item)) => Dispatch::Transaction(group, item),
                Err(e) => Dispatch::Reply(Reply::Error(e)),
            }
        } else if argv[0].eq_ignore_ascii_case(transaction::WATCH_COMMAND) {
            match super::transaction::remote_watch(&argv, routing) {
                Ok((group, keys)) => Dispatch::Watch {
                    group,
                    keys,
                    remember: false,
                },
                Err(e) => Dispatch::Reply(Reply::Error(e)),
            }
        } else {
            return Err(argv);
        };
        Ok(self.start(s, dispatch).await)
    }

    async fn data(
        &self,
        s: &mut Session,
        argv: Vec<Bytes>,
        cmd: Command,
        spec: &'static CommandSpec,
        _started: Instant,
    ) -> Run<Job> {
        let dispatch = match cmd {
            // The script cache is the node's: no partition.
            Command::Script(cmd) if !cmd.on_partition() => Dispatch::Script { group: None, cmd },
            cmd => match s.conn.routing.route(spec, &argv) {
                Ok(group) => data(argv, cmd, spec, group, self.max_write_bytes),
                Err(e) => Dispatch::Reply(Reply::Error(e)),
            },
        };
        self.start(s, dispatch).await
    }

    async fn watch(
        &self,
        s: &mut Session,
        keys: Vec<Bytes>,
        _argv: Vec<Bytes>,
        _started: Instant,
    ) -> Run<Job> {
        let dispatch = match super::transaction::watch_group(&keys, &s.conn.routing) {
            Ok(group) => Dispatch::Watch {
                group,
                keys,
                remember: true,
            },
            Err(e) => Dispatch::Reply(Reply::Error(e)),
        };
        self.start(s, dispatch).await
    }

    fn is_watch(later: &Later) -> bool {
        matches!(later, Later::Watch { remember: true, .. })
    }

    /// EXEC: the connection commands answered now, in order, and the data commands sent as
    /// one transaction to their partition's leader.
    async fn exec(
        &self,
        s: &mut Session,
        queued: Vec<Queued>,
        watched: Vec<Watched>,
        _started: Instant,
    ) -> Run<Job> {
        let protocol = s.client.protocol;
        let routing = s.conn.routing.clone();
        // Nothing runs, not even the connection commands, when the transaction is refused.
        let transaction =
            match super::transaction::local(&queued, watched, &routing, self.max_write_bytes) {
                Ok(transaction) => transaction,
                Err(e) => return Run::Reply(Reply::Error(e)),
            };
        let answers = session::answer_queued(self, s, &queued).await;
        match transaction {
            None => Run::Reply(Reply::Array(answers.into_iter().flatten().collect())),
            Some((group, item)) => {
                let rx = self.store.batch(group, vec![item]).await;
                s.push_later(Later::Exec {
                    rx,
                    answers,
                    protocol,
                });
                Run::Queued
            }
        }
    }

    async fn info(
        &self,
        _s: &mut Session,
        sections: Vec<Bytes>,
        _argv: Vec<Bytes>,
        _started: Instant,
    ) -> Run<Job> {
        Run::Alone {
            job: Job::Info(sections),
            name: "info",
            blocking: false,
        }
    }

    async fn local_info(&self, sections: &[Bytes]) -> String {
        info(sections, self).await
    }

    async fn run(&self, s: &mut Session, job: Job, _started: Instant) -> Bytes {
        let reply = match job {
            Job::Block {
                group,
                pop,
                timeout_ms,
            } => {
                let _blocked = self.stats.client_blocked();
                let rx = self.store.block(group, pop, timeout_ms).await;
                // CLIENT UNBLOCK drops this wait: the store loop forgets the waiter once
                // its reply channel is dropped.
                rx.await.unwrap_or(Reply::Error(CommandError::ShuttingDown))
            }
            Job::Info(sections) => Reply::Verbatim(Bytes::from(info(&sections, self).await)),
        };
        session::encode(&reply, s.client.protocol)
    }

    /// Sends the open batch of data commands, if any, to the store loop (or, for stale
    /// reads, straight to the local replica's worker).
    async fn seal(&self, s: &mut Session) {
        let batch = &mut s.conn.batch;
        let Some(group) = batch.group.take() else {
            return;
        };
        let items = std::mem::take(&mut batch.items);
        let len = items.len();
        let rx = if batch.stale {
            self.store
                .stale_reads(group, BatchItem::into_reads(items))
                .await
        } else {
            self.store.batch(group, items).await
        };
        let protocol = s.client.protocol;
        s.push_later(Later::Batch { rx, len, protocol });
    }

    async fn finish(&self, s: &mut Session, later: Later, out: &mut BytesMut) {
        let count = |reply: &Reply| {
            if let Reply::Error(e) = reply {
                self.base.errors.record_message(&e.to_string());
            }
        };
        match later {
            Later::Watch {
                rx,
                keys,
                remember,
                protocol,
            } => {
                let reply = match rx.await {
                    Ok(Reply::Array(tokens)) if remember && tokens.len() == keys.len() => {
                        for (key, token) in keys.into_iter().zip(tokens) {
                            if let Reply::Bulk(token) = token {
                                s.client.watched.push(Watched { key, token });
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
            Later::Exec {
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
            Later::Batch { rx, len, protocol } => match rx.await {
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

    async fn setting_changed(&self, name: &str, value: &str) {
        // The settings of its own a node applies at run time: when a script is BUSY, and
        // the keyspace events its clients hear of.
        match name {
            "busy-reply-threshold" => {
                if let Ok(ms) = value.parse() {
                    self.scripts.set_busy_ms(ms);
                }
            }
            "notify-keyspace-events" => {
                self.events.set_flags(notify::parse(value).unwrap_or(0));
            }
            _ => {}
        }
    }

    fn reset_stats(&self) {
        self.stats.reset_info();
    }

    fn commands_read(&self, count: u64) {
        self.stats.add_commands(count);
    }

    fn connected(&self) {
        self.stats.client_connected();
    }

    fn disconnected(&self) {
        self.stats.client_disconnected();
    }

    fn rejected(&self) {
        self.stats.connection_rejected();
    }
}

impl ServerContext {
    /// `ZANKV.EVENTS <class letters>`: the connection (a proxy's) listens to the keyspace
    /// events of those classes, subscribed to the internal channel ([`crate::events`]);
    /// once per connection.
    fn listen(&self, s: &mut Session, argv: &[Bytes]) -> Reply {
        let [_, letters] = argv else {
            return Reply::Error(CommandError::WrongArity("zankv.events".into()));
        };
        let classes = match std::str::from_utf8(letters).ok().map(notify::parse) {
            Some(Ok(classes)) => classes & !(notify::KEYSPACE | notify::KEYEVENT),
            _ => return Reply::Error(CommandError::Syntax),
        };
        if s.conn.listening.is_some() {
            return Reply::Error(CommandError::Syntax);
        }
        s.conn.listening = Some(self.events.listen(s.client.id, classes));
        s.subs
            .subscribe(Kind::Shard, &[Bytes::from_static(notify::LISTEN_CHANNEL)])
    }

    /// Sends `item` to the store loop as a batch of its own, after the open batch.
    async fn send_alone(&self, s: &mut Session, group: GroupId, item: BatchItem) -> Run<Job> {
        self.seal(s).await;
        let rx = self.store.batch(group, vec![item]).await;
        let protocol = s.client.protocol;
        s.push_later(Later::Batch {
            rx,
            len: 1,
            protocol,
        });
        Run::Queued
    }

    /// Starts what a request became.
    async fn start(&self, s: &mut Session, dispatch: Dispatch) -> Run<Job> {
        match dispatch {
            Dispatch::Reply(reply) => Run::Reply(reply),
            Dispatch::Data(group, item, name) => {
                s.last_command = Some(name);
                let stale = s.client.readonly && matches!(item, BatchItem::Read(_));
                let batch = &s.conn.batch;
                if batch.group != Some(group) || batch.stale != stale {
                    self.seal(s).await;
                    s.conn.batch.group = Some(group);
                    s.conn.batch.stale = stale;
                }
                s.conn.batch.items.push(item);
                Run::Queued
            }
            Dispatch::Transaction(group, item) => {
                s.last_command = Some("exec");
                self.send_alone(s, group, item).await
            }
            Dispatch::Watch {
                group,
                keys,
                remember,
            } => {
                s.last_command = Some("watch");
                // Earlier writes are proposed before the keys are watched.
                self.seal(s).await;
                let rx = self.store.watch(group, keys.clone()).await;
                let protocol = s.client.protocol;
                s.push_later(Later::Watch {
                    rx,
                    keys,
                    remember,
                    protocol,
                });
                Run::Queued
            }
            Dispatch::Script { group, cmd } => {
                s.last_command.get_or_insert("eval");
                self.seal(s).await;
                match scripting::request(self, &s.conn.routing, group, cmd).await {
                    Ok((group, item)) => self.send_alone(s, group, item).await,
                    Err(reply) => Run::Reply(reply),
                }
            }
            Dispatch::Block {
                group,
                pop,
                timeout_ms,
                name,
            } => Run::Alone {
                job: Job::Block {
                    group,
                    pop,
                    timeout_ms,
                },
                name,
                blocking: true,
            },
        }
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

/// A proxy's connection listening to keyspace events: `ZANKV.EVENTS <class letters>`
/// ([`crate::events`]). Not in the command table: clients of the proxy cannot send it.
const EVENTS: &[u8] = b"zankv.events";

/// A proxy's blocking pop named by an id, which it sends again (with the same id) when its
/// connection failed before the reply came, so that the pop runs once
/// ([`crate::data::pops`]): `ZANKV.POPID <id> <command> [arg ...]`, the command possibly a
/// `ZANKV.ON` one. Not in the command table: clients of the proxy cannot send it.
const POP_ID: &[u8] = b"zankv.popid";
/// Longest pop id.
const MAX_POP_ID: usize = 64;

fn dispatch_with_pop_id(
    mut argv: Vec<Bytes>,
    routing: &Routing,
    max_write_bytes: usize,
) -> Dispatch {
    // One id per pop: a nested one is refused (it would also let a request recurse).
    if argv.len() < 3 || argv[1].len() > MAX_POP_ID || argv[2].eq_ignore_ascii_case(POP_ID) {
        return Dispatch::Reply(Reply::Error(CommandError::Syntax));
    }
    let inner = argv.split_off(2);
    let id = argv.pop().expect("checked");
    let dispatched = if inner[0].eq_ignore_ascii_case(ON_PARTITION) {
        dispatch_on_partition(inner, routing, max_write_bytes)
    } else {
        match zankv_commands::parse(&inner) {
            Err(e) => Dispatch::Reply(Reply::Error(e)),
            Ok((Command::Connection(_) | Command::Script(_), _)) => {
                Dispatch::Reply(Reply::Error(CommandError::Syntax))
            }
            Ok((cmd, spec)) => match routing.route(spec, &inner) {
                Ok(group) => data(inner, cmd, spec, group, max_write_bytes),
                Err(e) => Dispatch::Reply(Reply::Error(e)),
            },
        }
    };
    match dispatched {
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
        // Only a blocking pop carries an id.
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

/// INFO's text for the requested sections, Redis's fields filled with this node's own
/// measures: its memory (resident, and RocksDB's shared block cache as the data part), CPU
/// time, counters, error replies, the raft roles of its replicas (replication section) and
/// the keys of every replica it hosts, leaders and followers alike (keyspace section).
async fn info(sections: &[Bytes], ctx: &ServerContext) -> String {
    let wanted = wanted_sections(sections);
    let stats = ctx.stats.snapshot();
    let (errorstats, total_error_replies) = ctx.base.errors.snapshot();
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
        let config = ctx.base.config();
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
        pubsub: ctx.base.pubsub.counts(),
        maxclients: ctx.base.max_clients as u64,
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
