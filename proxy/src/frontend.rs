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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zankv_commands::connection::{ClientSession, REDIS_COMPAT_VERSION};
use zankv_commands::request::{RequestLimits, RequestReader};
use zankv_commands::{Command, CommandError, ConnectionCommand, Protocol, Reply};
use zankv_pd_api::Secret;

use crate::config::NamespacePassword;

use crate::forward::{plan, Forwarder, Plan};

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
    /// Idle clients are closed after this long.
    pub idle_timeout: Option<Duration>,
    /// The passwords clients must give, if any.
    pub passwords: Passwords,
    /// The port clients connect to (INFO).
    pub port: u16,
}

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

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
}

impl Session {
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
    /// Sent to storage nodes.
    Forwarded {
        plan: Plan,
        command: &'static str,
        started: Instant,
        protocol: Protocol,
    },
}

/// Serves RESP on `listener` until `shutdown` turns true, then waits for every connection
/// to finish the requests it has read.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<FrontendContext>,
    shutdown: watch::Receiver<bool>,
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
                connection(socket, &ctx, shutdown).await;
                ctx.forwarder.metrics.client_disconnected();
            }
        },
    )
    .await;
    info!("proxy front end stopped");
}

async fn connection(
    mut socket: TcpStream,
    ctx: &FrontendContext,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let mut session = Session {
        client: ClientSession::new(NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed)),
        access: if ctx.passwords.required() {
            Access::Nothing
        } else {
            Access::Everything
        },
    };
    let mut input = BytesMut::with_capacity(4 * 1024);
    let mut reader = RequestReader::default();
    let mut output = BytesMut::with_capacity(4 * 1024);
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        if input.capacity() - input.len() < 4096 {
            input.reserve(16 * 1024);
        }
        let idle = async {
            match ctx.idle_timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = socket.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            _ = idle => {
                debug!(client = session.client.id, "closing idle client");
                return;
            }
            _ = shutdown.changed() => return,
        }
        let mut close = false;
        let tables = ctx.forwarder.tables.load();
        loop {
            match reader.next(&mut input, &ctx.limits) {
                Ok(Some(argv)) if argv.is_empty() => continue,
                Ok(Some(argv)) => {
                    let started = Instant::now();
                    let protocol = session.client.protocol;
                    match zankv_commands::parse(&argv) {
                        Err(e) => pending.push_back(ready(&Reply::Error(e), protocol)),
                        Ok((Command::Connection(c), spec)) => {
                            let quit = c == ConnectionCommand::Quit;
                            let reply = connection_command(c, &mut session, ctx);
                            let error = matches!(reply, Reply::Error(_));
                            ctx.forwarder
                                .metrics
                                .command(spec.name, error, started.elapsed());
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
                        Ok((_, spec)) => {
                            let mut plan = plan(argv, spec, &tables, session.scope());
                            plan.send(&ctx.forwarder, protocol).await;
                            pending.push_back(Pending::Forwarded {
                                plan,
                                command: spec.name,
                                started,
                                protocol,
                            });
                        }
                    }
                    if pending.len() >= MAX_PIPELINE
                        && flush(&mut socket, &mut pending, &mut output, ctx)
                            .await
                            .is_err()
                    {
                        return;
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
        if flush(&mut socket, &mut pending, &mut output, ctx)
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

fn ready(reply: &Reply, protocol: Protocol) -> Pending {
    let mut out = BytesMut::new();
    reply.encode(protocol, &mut out);
    Pending::Ready(out.freeze())
}

/// Waits for every pending reply in order and writes them in one go.
async fn flush(
    socket: &mut TcpStream,
    pending: &mut VecDeque<Pending>,
    out: &mut BytesMut,
    ctx: &FrontendContext,
) -> std::io::Result<()> {
    while let Some(p) = pending.pop_front() {
        match p {
            Pending::Ready(bytes) => out.extend_from_slice(&bytes),
            Pending::Forwarded {
                plan,
                command,
                started,
                protocol,
            } => {
                let reply = plan.finish(&ctx.forwarder, protocol).await;
                let error = matches!(reply.first(), Some(b'-' | b'!'));
                ctx.forwarder
                    .metrics
                    .command(command, error, started.elapsed());
                out.extend_from_slice(&reply);
            }
        }
    }
    if !out.is_empty() {
        socket.write_all(out).await?;
        out.clear();
    }
    Ok(())
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
    match cmd {
        // Reads always go to leaders (linearizable); READONLY changes nothing here.
        ConnectionCommand::ReadOnly | ConnectionCommand::ReadWrite => Reply::OK,
        ConnectionCommand::Info(sections) => Reply::Verbatim(Bytes::from(info(&sections, ctx))),
        other => other
            .answer(&mut session.client)
            .expect("every other connection command has a common answer"),
    }
}

/// INFO's text for the requested sections (default: all of the proxy's).
fn info(sections: &[Bytes], ctx: &FrontendContext) -> String {
    const ALL: [&str; 3] = ["server", "clients", "stats"];
    let wanted: Vec<String> = sections
        .iter()
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .collect();
    let everything = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| w == "all" || w == "default" || w == "everything");
    let metrics = &ctx.forwarder.metrics;
    let counters = metrics.info();
    let mut out = String::new();
    for section in ALL {
        if !everything && !wanted.iter().any(|w| w == section) {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        match section {
            "server" => {
                let uptime = metrics.started.elapsed().as_secs();
                out.push_str(&format!(
                    "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nzankv_version:{}\r\nzankv_role:proxy\r\nredis_mode:standalone\r\nos:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\n",
                    env!("CARGO_PKG_VERSION"),
                    std::env::consts::OS,
                    std::process::id(),
                    ctx.port,
                    uptime / 86400
                ));
            }
            "clients" => out.push_str(&format!(
                "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n",
                counters.connected_clients, ctx.max_clients
            )),
            _ => out.push_str(&format!(
                "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nrejected_connections:{}\r\n",
                counters.total_connections, counters.total_commands, counters.rejected_connections
            )),
        }
    }
    out
}
