//! The connection loop: reads a client's pipelined requests, takes each through the
//! session (Pub/Sub mode, authentication, MULTI, connection commands) to the executor,
//! and writes the replies in request order.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zankv_commands::connection::ClientSession;
use zankv_commands::request::{RequestLimits, RequestReader};
use zankv_commands::transaction::{self, Step};
use zankv_commands::{Command, CommandError, CommandSpec, ConnectionCommand, Protocol, Reply};

use super::answer::{answer, before_auth};
use super::{encode, Entry, Executor, Run, Session, MAX_PIPELINE};
use crate::pubsub::{self, Subscriptions};

static NEXT_CLIENT_ID: AtomicU64 = AtomicU64::new(1);

/// Serves RESP on `listener` with `exec` until `shutdown` turns true, then waits for every
/// connection to finish the requests it has read.
pub async fn serve<E: Executor>(
    listener: TcpListener,
    exec: Arc<E>,
    shutdown: watch::Receiver<bool>,
) {
    let max_clients = exec.base().max_clients;
    let refusing = exec.clone();
    crate::serve_clients(
        listener,
        max_clients,
        shutdown.clone(),
        move || refusing.rejected(),
        |socket, peer| {
            let exec = exec.clone();
            let shutdown = shutdown.clone();
            async move {
                exec.connected();
                debug!(%peer, "client connected");
                connection(socket, peer, &*exec, shutdown).await;
                exec.disconnected();
            }
        },
    )
    .await;
    info!("RESP server stopped");
}

/// The client's socket and buffers.
struct Io {
    socket: TcpStream,
    /// Read, not yet parsed.
    input: BytesMut,
    /// Replies gathered for the next write.
    output: BytesMut,
}

/// Why a connection ends.
struct Closed;

async fn connection<E: Executor>(
    socket: TcpStream,
    peer: SocketAddr,
    exec: &E,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = socket.set_nodelay(true);
    let base = exec.base();
    let id = NEXT_CLIENT_ID.fetch_add(1, Ordering::Relaxed);
    let local = socket
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let registration = base.clients.register(id, peer.to_string(), local);
    let mut client = ClientSession::new(id);
    let conn = exec.open(&mut client);
    let mut s = Session::<E> {
        client,
        handle: registration.handle.clone(),
        subs: Subscriptions::new(base.pubsub.clone(), id),
        authenticated: !exec.passwords_required(),
        conn,
        queue: Default::default(),
        last_command: None,
    };
    let mut io = Io {
        socket,
        input: BytesMut::with_capacity(4 * 1024),
        output: BytesMut::with_capacity(4 * 1024),
    };
    let mut reader = RequestReader::default();
    loop {
        // Keep room for a full-sized read (a full buffer would otherwise be refilled a few
        // bytes at a time); BytesMut reuses its allocation once consumed input is released.
        if io.input.capacity() - io.input.len() < 4096 {
            io.input.reserve(16 * 1024);
        }
        // A subscriber is never idle (Redis exempts Pub/Sub clients from `timeout`).
        let idle_s = match s.subs.active() {
            true => 0,
            false => base.idle_timeout_s.load(Ordering::Relaxed),
        };
        let idle = async {
            match idle_s {
                0 => std::future::pending().await,
                s => tokio::time::sleep(Duration::from_secs(s)).await,
            }
        };
        tokio::select! {
            biased;
            _ = s.handle.killed() => {
                debug!(client = id, "closing killed client");
                return;
            }
            _ = shutdown.changed() => return,
            _ = idle => {
                debug!(client = id, "closing idle client");
                return;
            }
            read = io.socket.read_buf(&mut io.input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            message = s.subs.next() => {
                // A subscriber cut off for falling behind is closed.
                let Some(message) = message else { return };
                let protocol = s.client.protocol;
                message.write(protocol, &mut io.output);
                for m in s.subs.ready() {
                    m.write(protocol, &mut io.output);
                }
                if io.socket.write_all(&io.output).await.is_err() {
                    return;
                }
                io.output.clear();
                continue;
            }
        }
        if E::YIELD_AFTER_READ {
            tokio::task::yield_now().await;
        }
        exec.begin_read(&mut s);
        // Every request of this read arrived now: one clock read for all of them.
        let started = Instant::now();
        let mut close = false;
        let mut commands = 0u64;
        let mut owed = 0usize;
        loop {
            if owed >= MAX_PIPELINE {
                if flush(exec, &mut s, &mut io).await.is_err() {
                    return;
                }
                owed = 0;
            }
            // Before AUTH, Redis's small request limits apply.
            let limits = RequestLimits {
                unauthenticated: !s.authenticated,
                ..base.limits
            };
            match reader.next(&mut io.input, &limits) {
                Ok(Some(argv)) if argv.is_empty() => continue,
                Ok(Some(argv)) => {
                    commands += 1;
                    owed += 1;
                    match request(exec, &mut s, &mut io, argv, started, &mut shutdown).await {
                        Ok(Next::Continue) => {}
                        Ok(Next::Quit) => {
                            close = true;
                            break;
                        }
                        Err(Closed) => return,
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    debug!(client = id, error = %e, "protocol error; closing connection");
                    exec.seal(&mut s).await;
                    s.push_reply(&Reply::Error(e));
                    close = true;
                    break;
                }
            }
        }
        exec.commands_read(commands);
        if flush(exec, &mut s, &mut io).await.is_err() || close {
            return;
        }
        if io.input.len() > base.max_query_buffer {
            warn!(
                client = id,
                bytes = io.input.len(),
                "closing client that exceeded the query buffer limit"
            );
            return;
        }
    }
}

/// What the connection does after a request.
enum Next {
    Continue,
    /// QUIT: the replies are written, then the connection is closed.
    Quit,
}

/// Takes one request through the session to its reply (queued).
async fn request<E: Executor>(
    exec: &E,
    s: &mut Session<E>,
    io: &mut Io,
    argv: Vec<Bytes>,
    started: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Next, Closed> {
    // Messages published before this request arrived go out before its reply.
    if let Some(pushes) = s.subs.ready_encoded(s.client.protocol) {
        exec.seal(s).await;
        s.queue.push_back(Entry::Ready(pushes));
    }
    let argv = match exec.internal(s, argv, started).await {
        Ok(run) => return settle(exec, s, io, run, started, shutdown).await,
        Err(argv) => argv,
    };
    let protocol = s.client.protocol;
    let parsed = zankv_commands::parse(&argv);
    if let Some(reply) = pubsub::while_subscribed(&s.subs, protocol, &argv, &parsed) {
        return settle(exec, s, io, Run::Reply(reply), started, shutdown).await;
    }
    // Nothing is queued before AUTH: MULTI too answers NOAUTH.
    let step = match s.authenticated {
        true => transaction::step(&mut s.client, argv, parsed),
        false => Step::Run(argv, parsed),
    };
    let (argv, parsed) = match step {
        Step::Run(argv, parsed) => (argv, parsed),
        Step::Reply(reply) => {
            return settle(exec, s, io, Run::Reply(reply), started, shutdown).await
        }
        Step::Exec {
            queued,
            mut watched,
        } => {
            s.last_command = Some("exec");
            exec.seal(s).await;
            // The tokens of a WATCH of this pipeline must be in first.
            if s.queue
                .iter()
                .any(|e| matches!(e, Entry::Later(l) if E::is_watch(l)))
            {
                flush(exec, s, io).await.map_err(|_| Closed)?;
                watched.append(&mut s.client.watched);
            }
            let run = exec.exec(s, queued, watched, started).await;
            return settle(exec, s, io, run, started, shutdown).await;
        }
    };
    let run = match parsed {
        // Before AUTH, only a command's name and arity are judged (as Redis does); its
        // arguments are not looked at.
        Err(e) if !s.authenticated && !before_auth(&e, &argv[0]) => {
            Run::Reply(Reply::Error(CommandError::NoAuth))
        }
        Err(e) => Run::Reply(Reply::Error(e)),
        Ok((Command::Connection(c), spec)) => {
            return connection_command(exec, s, io, c, spec, argv, started, shutdown).await
        }
        Ok(_) if !s.authenticated => Run::Reply(Reply::Error(CommandError::NoAuth)),
        Ok((cmd, spec)) => {
            s.last_command = Some(spec.name);
            exec.data(s, argv, cmd, spec, started).await
        }
    };
    settle(exec, s, io, run, started, shutdown).await
}

/// A connection command: INFO, WATCH and what the executor takes go to it; the session
/// answers the rest.
#[allow(clippy::too_many_arguments)]
async fn connection_command<E: Executor>(
    exec: &E,
    s: &mut Session<E>,
    io: &mut Io,
    cmd: ConnectionCommand,
    spec: &'static CommandSpec,
    argv: Vec<Bytes>,
    started: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Next, Closed> {
    // The last command so far: earlier data commands of the read are not listed after it.
    s.last_command = None;
    s.handle.touch(spec.name);
    exec.seal(s).await;
    let run = match cmd {
        ConnectionCommand::Info(sections) if s.authenticated => {
            exec.info(s, sections, argv, started).await
        }
        ConnectionCommand::Watch(keys) if s.authenticated => {
            s.last_command = Some(spec.name);
            exec.watch(s, keys, argv, started).await
        }
        cmd => {
            let cmd = match s.authenticated {
                true => match exec.connection(s, cmd, spec.name, &argv, started).await {
                    Ok(run) => return settle(exec, s, io, run, started, shutdown).await,
                    Err(cmd) => cmd,
                },
                false => cmd,
            };
            let quit = cmd == ConnectionCommand::Quit;
            let reply = answer(exec, s, cmd).await;
            // A PUBLISH to the connection's own channels: its messages come before its
            // reply, as in Redis.
            s.push_messages();
            let resp = if s.client.protocol == Protocol::Resp3 {
                3
            } else {
                2
            };
            s.handle.set_identity(s.client.name.as_deref(), resp);
            exec.done(
                s,
                spec.name,
                matches!(reply, Reply::Error(_)),
                started,
                Some(&argv),
            );
            // HELLO answers in the protocol it selects.
            s.push_reply(&reply);
            return Ok(if quit { Next::Quit } else { Next::Continue });
        }
    };
    settle(exec, s, io, run, started, shutdown).await
}

/// Queues what became of a request; a job that runs alone runs now.
async fn settle<E: Executor>(
    exec: &E,
    s: &mut Session<E>,
    io: &mut Io,
    run: Run<E::Job>,
    started: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Next, Closed> {
    match run {
        Run::Queued => {}
        Run::Reply(reply) => {
            exec.seal(s).await;
            s.push_reply(&reply);
        }
        Run::Alone {
            job,
            name,
            blocking,
        } => {
            // Earlier replies leave first; later requests run once it is answered, as in
            // Redis.
            flush(exec, s, io).await.map_err(|_| Closed)?;
            s.handle.touch(name);
            let handle = s.handle.clone();
            let protocol = s.client.protocol;
            let max_query_buffer = exec.base().max_query_buffer;
            if blocking {
                handle.set_blocked(true);
            }
            let mut unblocked = false;
            let reply: Option<Bytes> = tokio::select! {
                reply = exec.run(s, job, started) => Some(reply),
                // CLIENT UNBLOCK: dropping the job ends its wait where it waits.
                reply = handle.unblocked(), if blocking => {
                    unblocked = true;
                    Some(encode(&reply, protocol))
                }
                // A client that leaves ends its wait.
                () = crate::read_while_blocked(&mut io.socket, &mut io.input, max_query_buffer), if blocking => None,
                _ = shutdown.changed() => None,
                _ = handle.killed() => None,
            };
            handle.set_blocked(false);
            let reply = reply.ok_or(Closed)?;
            if unblocked {
                let error = matches!(reply.first(), Some(b'-' | b'!'));
                exec.done(s, name, error, started, None);
            }
            s.queue.push_back(Entry::Ready(reply));
        }
    }
    Ok(Next::Continue)
}

/// Sends what the executor holds back, waits for every reply in order and writes them in
/// one go; error replies are counted.
async fn flush<E: Executor>(exec: &E, s: &mut Session<E>, io: &mut Io) -> std::io::Result<()> {
    exec.seal(s).await;
    if let Some(name) = s.last_command.take() {
        s.handle.touch(name);
    }
    exec.flushing(s);
    let errors = &exec.base().errors;
    while let Some(entry) = s.queue.pop_front() {
        match entry {
            Entry::Ready(bytes) => {
                errors.record_encoded(&bytes);
                io.output.extend_from_slice(&bytes);
            }
            Entry::Later(later) => exec.finish(s, later, &mut io.output).await,
        }
    }
    exec.flushed(s);
    if !io.output.is_empty() {
        // The replies go out first (a client that kills itself hears CLIENT KILL's
        // reply), but a client that stopped reading is still closed at once when CLIENT
        // KILL names it.
        tokio::select! {
            biased;
            written = io.socket.write_all(&io.output) => written?,
            _ = s.handle.killed() => {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "killed"));
            }
        }
        io.output.clear();
    }
    Ok(())
}
