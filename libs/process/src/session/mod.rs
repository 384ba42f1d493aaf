//! One RESP session for every zankv server (the proxy and the storage node): the
//! connection loop, the connection's state (authentication, RESP version, MULTI queue,
//! WATCHed keys, subscriptions, blocked state), the answers to CONFIG, CLIENT, SLOWLOG,
//! AUTH, RESET and Pub/Sub commands, and the ordered flush of replies. A server supplies
//! only how its data commands run, as an [`Executor`].
//!
//! Invariants:
//! - replies leave in exactly the order requests arrived, whoever produces them: the
//!   session's queue holds each reply, ready or to come, in request order, and a request
//!   run alone ([`Run::Alone`]: blocking pops, long scripts, a node's INFO) starts only
//!   once every earlier reply is written, later requests waiting for it;
//! - a protocol error is answered, then the connection is closed (as Redis does); any
//!   other error is just that command's reply;
//! - with passwords required ([`Executor::passwords_required`]) nothing but AUTH, HELLO
//!   ... AUTH and QUIT runs before the connection authenticates, and only a command's name
//!   and arity are judged;
//! - at most [`MAX_PIPELINE`] replies wait before they are written, and a client whose
//!   unparsed input passes `max_query_buffer` is closed;
//! - messages published to a subscriber before a request arrived are written before that
//!   request's reply.

mod answer;
mod connection;

pub use answer::{answer, answer_queued};
pub use connection::serve;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use zankv_commands::config::Config;
use zankv_commands::connection::{auth_without_password, ClientSession};
use zankv_commands::info::ErrorStats;
use zankv_commands::request::RequestLimits;
use zankv_commands::slowlog::SlowLog;
use zankv_commands::transaction::{Queued, Watched};
use zankv_commands::{Command, CommandError, CommandSpec, ConnectionCommand, Protocol, Reply};

use crate::clients::{ClientHandle, ClientRegistry};
use crate::pubsub::{Hub, Subscriptions};

/// Most replies that wait before they are written.
pub const MAX_PIPELINE: usize = 1024;

/// What a server's sessions share, whatever the server.
pub struct Base {
    /// Request limits.
    pub limits: RequestLimits,
    /// Largest unparsed input a client may accumulate.
    pub max_query_buffer: usize,
    /// Most simultaneous clients.
    pub max_clients: usize,
    /// Idle clients are closed after this many seconds (0: never); CONFIG SET `timeout`.
    pub idle_timeout_s: AtomicU64,
    /// The connected clients (CLIENT LIST / KILL / UNBLOCK).
    pub clients: ClientRegistry,
    /// What CONFIG GET shows and CONFIG SET changes.
    pub config: Mutex<Config>,
    /// The slow log (SLOWLOG); only a server that times its commands records in it.
    pub slowlog: Mutex<SlowLog>,
    /// The slow log's threshold, readable without its lock.
    pub slow_threshold_us: AtomicI64,
    /// Error replies sent, for INFO.
    pub errors: ErrorStats,
    /// The server's Pub/Sub subscriptions.
    pub pubsub: Arc<Hub>,
}

impl Base {
    /// Shared state for a server with `config`, its idle timeout and slow log as the
    /// configuration says.
    pub fn new(
        config: Config,
        limits: RequestLimits,
        max_query_buffer: usize,
        max_clients: usize,
        pubsub: Arc<Hub>,
    ) -> Base {
        let number = |name: &str| config.value(name).parse::<i64>().unwrap_or(0);
        let threshold = number("slowlog-log-slower-than");
        let slowlog = SlowLog::new(threshold, number("slowlog-max-len").max(0) as usize);
        Base {
            limits,
            max_query_buffer,
            max_clients,
            idle_timeout_s: AtomicU64::new(number("timeout").max(0) as u64),
            clients: ClientRegistry::default(),
            slowlog: Mutex::new(slowlog),
            slow_threshold_us: AtomicI64::new(threshold),
            config: Mutex::new(config),
            errors: ErrorStats::default(),
            pubsub,
        }
    }

    /// CONFIG's values.
    pub fn config(&self) -> MutexGuard<'_, Config> {
        self.config
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The slow log.
    pub fn slow_log(&self) -> MutexGuard<'_, SlowLog> {
        self.slowlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `argv` in the slow log if it `took` long enough (passwords redacted).
    pub fn record_slow(
        &self,
        took: Duration,
        argv: &[Bytes],
        handle: &ClientHandle,
        name: Option<&Bytes>,
    ) {
        // Checked without the lock: most commands are not slow.
        let threshold = self.slow_threshold_us.load(Ordering::Relaxed);
        if threshold < 0 || took.as_micros() < threshold as u128 {
            return;
        }
        let argv = answer::redacted(argv);
        let mut log = self.slow_log();
        if log.slower_than_us >= 0 && took.as_micros() >= log.slower_than_us as u128 {
            log.record(took, &argv, &handle.addr, name);
        }
    }

    /// Puts in effect what the session owns of a CONFIG SET change: the idle timeout and
    /// the slow log.
    fn apply_setting(&self, name: &str, value: &str) {
        let number = || value.parse::<i64>().unwrap_or(0);
        match name {
            "timeout" => self
                .idle_timeout_s
                .store(number().max(0) as u64, Ordering::Relaxed),
            "slowlog-log-slower-than" => {
                self.slow_log().slower_than_us = number();
                self.slow_threshold_us.store(number(), Ordering::Relaxed);
            }
            "slowlog-max-len" => self.slow_log().set_max_len(number().max(0) as usize),
            _ => {}
        }
    }
}

/// One entry of a session's queue of replies, in request order.
pub enum Entry<L> {
    /// Encoded already.
    Ready(Bytes),
    /// To come: the executor finishes it ([`Executor::finish`]).
    Later(L),
}

/// What became of a request an executor was given.
pub enum Run<J> {
    /// Its reply is in the session's queue.
    Queued,
    /// Its reply, known now.
    Reply(Reply),
    /// It runs alone: every earlier reply is written first, and later requests wait until
    /// it is answered ([`Executor::run`]).
    Alone {
        job: J,
        /// The command's name, for CLIENT LIST.
        name: &'static str,
        /// A blocking command: CLIENT UNBLOCK ends its wait, and so does the client
        /// leaving.
        blocking: bool,
    },
}

/// A client connection's state.
pub struct Session<E: Executor> {
    /// What connection commands read and change (protocol, name, MULTI queue, WATCHed
    /// keys, READONLY).
    pub client: ClientSession,
    /// Its entry among the connected clients.
    pub handle: Arc<ClientHandle>,
    /// Its Pub/Sub subscriptions.
    pub subs: Subscriptions,
    /// Whether it may run commands (always, where no password is required).
    pub authenticated: bool,
    /// The executor's own state for it.
    pub conn: E::Conn,
    /// Its replies, ready or to come, in request order.
    pub queue: VecDeque<Entry<E::Later>>,
    /// The last data command queued since the last write, recorded for CLIENT LIST when
    /// the write goes out (a connection command records itself at once).
    pub last_command: Option<&'static str>,
}

impl<E: Executor> Session<E> {
    /// Queues `reply`, encoded in the connection's protocol.
    pub fn push_reply(&mut self, reply: &Reply) {
        self.queue
            .push_back(Entry::Ready(encode(reply, self.client.protocol)));
    }

    /// Queues a reply to come.
    pub fn push_later(&mut self, later: E::Later) {
        self.queue.push_back(Entry::Later(later));
    }

    /// Queues the messages published to the connection's channels that are waiting.
    pub fn push_messages(&mut self) {
        if let Some(pushes) = self.subs.ready_encoded(self.client.protocol) {
            self.queue.push_back(Entry::Ready(pushes));
        }
    }
}

/// `reply` encoded for `protocol`.
pub fn encode(reply: &Reply, protocol: Protocol) -> Bytes {
    let mut out = BytesMut::new();
    reply.encode(protocol, &mut out);
    out.freeze()
}

/// How a server runs what the session does not answer itself: its data commands, WATCH,
/// EXEC, INFO, and its own internal requests. Every method that queues a reply pushes it
/// on [`Session::queue`] in request order.
pub trait Executor: Send + Sync + Sized + 'static {
    /// The executor's state per connection.
    type Conn: Send;
    /// A reply to come, in the queue.
    type Later: Send;
    /// A request run alone ([`Run::Alone`]).
    type Job: Send;

    /// Whether the connection lets other connections run after each read (so that their
    /// requests reach the executor together).
    const YIELD_AFTER_READ: bool = false;

    /// What the sessions share.
    fn base(&self) -> &Base;

    /// The executor's state for a new connection (which may set up `client`).
    fn open(&self, client: &mut ClientSession) -> Self::Conn;

    /// Called once per read of the client's input, before its requests.
    fn begin_read(&self, _s: &mut Session<Self>) {}

    /// A request before it is parsed: the server's own requests, which are not in the
    /// command table, or a refusal of every request (a node running a long script);
    /// `Err(argv)` hands the request back to the session.
    fn internal(
        &self,
        s: &mut Session<Self>,
        argv: Vec<Bytes>,
        started: Instant,
    ) -> impl Future<Output = Result<Run<Self::Job>, Vec<Bytes>>> + Send;

    /// A data command of an authenticated connection, outside MULTI.
    fn data(
        &self,
        s: &mut Session<Self>,
        argv: Vec<Bytes>,
        cmd: Command,
        spec: &'static CommandSpec,
        started: Instant,
    ) -> impl Future<Output = Run<Self::Job>> + Send;

    /// WATCH of `keys`: its reply, once in, leaves the keys' tokens in
    /// `s.client.watched`.
    fn watch(
        &self,
        s: &mut Session<Self>,
        keys: Vec<Bytes>,
        argv: Vec<Bytes>,
        started: Instant,
    ) -> impl Future<Output = Run<Self::Job>> + Send;

    /// Whether a reply to come is a WATCH's (EXEC waits for those).
    fn is_watch(later: &Self::Later) -> bool;

    /// EXEC of `queued` with the `watched` keys' tokens; the connection commands among
    /// them are answered with [`answer_queued`], only once the transaction is accepted.
    fn exec(
        &self,
        s: &mut Session<Self>,
        queued: Vec<Queued>,
        watched: Vec<Watched>,
        started: Instant,
    ) -> impl Future<Output = Run<Self::Job>> + Send;

    /// INFO (outside MULTI).
    fn info(
        &self,
        s: &mut Session<Self>,
        sections: Vec<Bytes>,
        argv: Vec<Bytes>,
        started: Instant,
    ) -> impl Future<Output = Run<Self::Job>> + Send;

    /// INFO's text from this process alone (INFO inside MULTI).
    fn local_info(&self, sections: &[Bytes]) -> impl Future<Output = String> + Send;

    /// A connection command the server may answer its own way (outside MULTI, after the
    /// authentication checks); `Err` hands it back to the session.
    fn connection(
        &self,
        _s: &mut Session<Self>,
        cmd: ConnectionCommand,
        _name: &'static str,
        _argv: &[Bytes],
        _started: Instant,
    ) -> impl Future<Output = Result<Run<Self::Job>, ConnectionCommand>> + Send {
        std::future::ready(Err(cmd))
    }

    /// Runs a job alone, to its encoded reply.
    fn run(
        &self,
        s: &mut Session<Self>,
        job: Self::Job,
        started: Instant,
    ) -> impl Future<Output = Bytes> + Send;

    /// Sends what the executor holds back of the connection's requests (the node's open
    /// batch), queueing its replies; called before anything else is queued or awaited.
    fn seal(&self, _s: &mut Session<Self>) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// Called before the queue is drained.
    fn flushing(&self, _s: &mut Session<Self>) {}

    /// Waits for a reply to come and writes it (encoded) to `out`, counting its errors.
    fn finish(
        &self,
        s: &mut Session<Self>,
        later: Self::Later,
        out: &mut BytesMut,
    ) -> impl Future<Output = ()> + Send;

    /// Called once the queue is drained, before the replies are written.
    fn flushed(&self, _s: &mut Session<Self>) {}

    /// Whether connections must authenticate.
    fn passwords_required(&self) -> bool {
        false
    }

    /// Checks `user`/`password` (the session then counts as authenticated).
    fn authenticate(
        &self,
        _s: &mut Session<Self>,
        user: Option<&[u8]>,
        _password: &[u8],
    ) -> Result<(), CommandError> {
        match auth_without_password(user) {
            Reply::Error(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Forgets the connection's authentication (RESET, where passwords are required).
    fn deauthenticate(&self, _s: &mut Session<Self>) {}

    /// Whether the connection may run `cmd` (a connection command).
    fn permitted(&self, _s: &Session<Self>, _cmd: &ConnectionCommand) -> Result<(), CommandError> {
        Ok(())
    }

    /// A setting CONFIG SET changed (the session applied what it owns already), with its
    /// value as the client gave it (an alias's change comes with the stored form).
    /// The reply waits for it: a setting that takes a moment to be in effect (the
    /// proxy's keyspace notifications) is in effect when CONFIG SET answers.
    fn setting_changed(&self, _name: &str, _value: &str) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// CONFIG RESETSTAT: the server's own counters (the session resets the error counts).
    fn reset_stats(&self) {}

    /// CLUSTER's answer.
    fn cluster(&self, _sub: &zankv_commands::cluster::ClusterCommand) -> Reply {
        zankv_commands::cluster::disabled()
    }

    /// A command the session answered (or a job run alone) took until `now`; `argv` for
    /// the slow log (`None`: not logged).
    fn done(
        &self,
        _s: &Session<Self>,
        _name: &'static str,
        _error: bool,
        _started: Instant,
        _argv: Option<&[Bytes]>,
    ) {
    }

    /// `count` requests were read.
    fn commands_read(&self, _count: u64) {}

    /// A client connected.
    fn connected(&self) {}

    /// A client left.
    fn disconnected(&self) {}

    /// A client was refused (too many).
    fn rejected(&self) {}
}
