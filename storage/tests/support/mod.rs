//! Shared end-to-end test support: free ports, a reference `redis-server`, a `zankv-storage`
//! node as a child process, and a blocking RESP client whose replies are a small [`Frame`]
//! enum that both RESP2 and RESP3 decode into, so tests can compare the two servers.
//!
//! Every process started here is killed when its handle drops; waits are bounded and poll
//! for the state they need instead of sleeping a fixed time.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod cluster;
pub mod diff;
pub mod pd;
pub mod proxy;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;

/// The node binary under test.
pub const ZANKV_BIN: &str = env!("CARGO_BIN_EXE_zankv-storage");

/// The workspace binary `name` (zankv-pd, zankv-proxy, zankv), built next to zankv-storage.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let bin = std::path::Path::new(ZANKV_BIN).with_file_name(name);
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

/// The reference server.
pub const REDIS_BIN: &str = "/usr/bin/redis-server";

/// How long a process gets to start answering PING, or to exit after SIGTERM.
const PROCESS_DEADLINE: Duration = Duration::from_secs(10);

/// How long a client waits for one reply by default.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How often start-up polls for the server to answer.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Attempts at starting a server on a fresh port when another process took the port between
/// [`free_port`] and the child's bind.
const START_ATTEMPTS: usize = 3;

/// Returns a loopback port that was free a moment ago and that no other caller in this
/// process has been given. Ports come from below the kernel's ephemeral range (read from
/// `/proc`), so the outgoing connections of concurrent tests cannot take them between this
/// check and the server's bind.
pub fn free_port() -> u16 {
    free_ports(1)
}

/// The first of `count` consecutive loopback ports that were all free a moment ago and
/// that no other caller in this process has been given (as [`free_port`]).
pub fn free_ports(count: u16) -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_000 + count));
    let mut given = GIVEN.lock().expect("port registry poisoned");
    let given = given.get_or_insert_with(HashSet::new);
    let mut rng = fastrand::Rng::new();
    for _ in 0..10_000 {
        let base = rng.u16(low..high - count + 1);
        let ports = base..base + count;
        if ports
            .clone()
            .all(|p| !given.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok())
        {
            given.extend(ports);
            return base;
        }
    }
    panic!("no {count} free consecutive loopback ports in {low}..{high}");
}

// ---------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------

/// One reply, RESP2 or RESP3. Aggregates keep the server's order; tests that must ignore
/// order normalise explicitly.
#[derive(Clone)]
pub enum Frame {
    /// `+...`
    Simple(Vec<u8>),
    /// `-...` (simple error) or `!...` (blob error), without the leading marker.
    Error(Vec<u8>),
    /// `:...`
    Integer(i64),
    /// `$...`
    Bulk(Vec<u8>),
    /// `$-1` or RESP3 `_`.
    Null,
    /// RESP2's null array `*-1` (LPOP with a count on a missing key, LMPOP finding nothing),
    /// told apart from `$-1` so replies are compared to the byte.
    NullArray,
    /// `*...`
    Array(Vec<Frame>),
    /// RESP3 `%...`, pairs in the server's order.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~...`
    Set(Vec<Frame>),
    /// RESP3 `,...`
    Double(f64),
    /// RESP3 `#t` / `#f`
    Boolean(bool),
    /// RESP3 `=...`: the three-letter format and the text.
    Verbatim(String, Vec<u8>),
    /// RESP3 `(...`
    BigNumber(Vec<u8>),
    /// RESP3 `>...`
    Push(Vec<Frame>),
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        use Frame::*;
        match (self, other) {
            (Simple(a), Simple(b)) | (Error(a), Error(b)) | (Bulk(a), Bulk(b)) => a == b,
            (BigNumber(a), BigNumber(b)) => a == b,
            (Integer(a), Integer(b)) => a == b,
            (Null, Null) | (NullArray, NullArray) => true,
            (Array(a), Array(b)) | (Set(a), Set(b)) | (Push(a), Push(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            // Bit equality, so NaN equals NaN and 0.0 differs from -0.0 as on the wire.
            (Double(a), Double(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (Boolean(a), Boolean(b)) => a == b,
            (Verbatim(fa, a), Verbatim(fb, b)) => fa == fb && a == b,
            _ => false,
        }
    }
}

impl Eq for Frame {}

impl Frame {
    /// Convenience for building expected replies.
    pub fn bulk(data: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(data.as_ref().to_vec())
    }

    /// Convenience for building expected replies.
    pub fn simple(data: &str) -> Frame {
        Frame::Simple(data.as_bytes().to_vec())
    }

    /// Convenience for building expected replies.
    pub fn error(data: &str) -> Frame {
        Frame::Error(data.as_bytes().to_vec())
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// The bytes of a simple string, bulk string or verbatim string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(b) | Frame::Bulk(b) | Frame::Verbatim(_, b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Frame::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The elements of an array, set or push.
    pub fn as_items(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => Some(v),
            _ => None,
        }
    }

    /// A total order key, used to sort elements whose order the server does not specify.
    pub fn sort_key(&self) -> String {
        let mut out = String::new();
        self.render(&mut out, true);
        out
    }

    fn from_resp2(frame: redis_protocol::resp2::types::BytesFrame) -> Frame {
        use redis_protocol::resp2::types::BytesFrame as F;
        match frame {
            F::SimpleString(b) => Frame::Simple(b.to_vec()),
            F::Error(s) => Frame::Error(s.as_bytes().to_vec()),
            F::Integer(i) => Frame::Integer(i),
            F::BulkString(b) => Frame::Bulk(b.to_vec()),
            F::Array(items) => Frame::Array(items.into_iter().map(Frame::from_resp2).collect()),
            F::Null => Frame::Null,
        }
    }

    fn from_resp3(frame: redis_protocol::resp3::types::BytesFrame) -> Frame {
        use redis_protocol::resp3::types::BytesFrame as F;
        // Attributes (`|`) are dropped: no command under test sends them.
        match frame {
            F::BlobString { data, .. } => Frame::Bulk(data.to_vec()),
            F::BlobError { data, .. } => Frame::Error(data.to_vec()),
            F::SimpleString { data, .. } => Frame::Simple(data.to_vec()),
            F::SimpleError { data, .. } => Frame::Error(data.as_bytes().to_vec()),
            F::Boolean { data, .. } => Frame::Boolean(data),
            F::Null => Frame::Null,
            F::Number { data, .. } => Frame::Integer(data),
            F::Double { data, .. } => Frame::Double(data),
            F::BigNumber { data, .. } => Frame::BigNumber(data.to_vec()),
            F::VerbatimString { data, format, .. } => {
                use redis_protocol::resp3::types::VerbatimStringFormat;
                let format = match format {
                    VerbatimStringFormat::Text => "txt",
                    VerbatimStringFormat::Markdown => "mkd",
                };
                Frame::Verbatim(format.to_string(), data.to_vec())
            }
            F::Array { data, .. } => {
                Frame::Array(data.into_iter().map(Frame::from_resp3).collect())
            }
            F::Map { data, .. } => Frame::Map(
                data.into_iter()
                    .map(|(k, v)| (Frame::from_resp3(k), Frame::from_resp3(v)))
                    .collect(),
            ),
            F::Set { data, .. } => Frame::Set(data.into_iter().map(Frame::from_resp3).collect()),
            F::Push { data, .. } => Frame::Push(data.into_iter().map(Frame::from_resp3).collect()),
            other => panic!("unsupported RESP3 frame from server: {other:?}"),
        }
    }
}

/// Writes bytes the way a reader can tell them apart: printable ASCII as is, `"` and `\`
/// escaped, `\r \n \t \0` by name, everything else as `\xNN`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// A command line as a reader would type it: every argument quoted and escaped.
pub fn show_cmd(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| format!("\"{}\"", escape(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Long values are shortened in messages; the length is kept.
fn escape_short(bytes: &[u8]) -> String {
    const LIMIT: usize = 200;
    if bytes.len() <= LIMIT {
        escape(bytes)
    } else {
        format!("{}...({} bytes)", escape(&bytes[..LIMIT]), bytes.len())
    }
}

impl Frame {
    /// Renders the frame; `full` keeps long strings whole instead of shortening them.
    fn render(&self, out: &mut String, full: bool) {
        let text = |b: &[u8]| if full { escape(b) } else { escape_short(b) };
        let list = |out: &mut String, open: &str, items: &[Frame], close: &str| {
            out.push_str(open);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                item.render(out, full);
            }
            out.push_str(close);
        };
        match self {
            Frame::Simple(b) => out.push_str(&format!("+{}", text(b))),
            Frame::Error(b) => out.push_str(&format!("-{}", text(b))),
            Frame::Integer(i) => out.push_str(&format!(":{i}")),
            Frame::Bulk(b) => out.push_str(&format!("\"{}\"", text(b))),
            Frame::Null => out.push_str("(nil)"),
            Frame::NullArray => out.push_str("(nil array)"),
            Frame::Array(items) => list(out, "[", items, "]"),
            Frame::Set(items) => list(out, "~{", items, "}"),
            Frame::Push(items) => list(out, ">[", items, "]"),
            Frame::Map(pairs) => {
                out.push_str("%{");
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.render(out, full);
                    out.push_str(": ");
                    v.render(out, full);
                }
                out.push('}');
            }
            Frame::Double(d) => out.push_str(&format!(",{d:?}")),
            Frame::Boolean(b) => out.push_str(if *b { "#t" } else { "#f" }),
            Frame::Verbatim(format, b) => out.push_str(&format!("={format}:\"{}\"", text(b))),
            Frame::BigNumber(b) => out.push_str(&format!("({}", text(b))),
        }
    }
}

/// `{}` shortens strings over 200 bytes (keeping their length); `{:#}` prints them whole.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.render(&mut out, f.alternate());
        f.write_str(&out)
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

// ---------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------

/// What one attempt to read a reply found.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome {
    Frame(Frame),
    /// The server closed (or reset) the connection before a whole reply arrived.
    Closed,
    /// Nothing complete arrived within the read timeout.
    TimedOut,
}

/// A blocking RESP client over one TCP connection. Requests are RESP2 multibulk; replies
/// are decoded as RESP2 until [`Client::hello3`] switches the decoder to RESP3.
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    resp3: bool,
    port: u16,
}

impl Client {
    /// Connects to 127.0.0.1:`port`, with a 10 s read timeout. Panics if it cannot.
    pub fn connect(port: u16) -> Client {
        Client::try_connect(port).unwrap_or_else(|| panic!("connect to 127.0.0.1:{port} failed"))
    }

    /// Connects to 127.0.0.1:`port`, or `None` if nothing accepts there.
    pub fn try_connect(port: u16) -> Option<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(READ_TIMEOUT))
            .expect("set write timeout");
        stream.set_nodelay(true).expect("set nodelay");
        Some(Client {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            resp3: false,
            port,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command and reads its reply; `None` if the connection failed, closed or
    /// timed out (the server may have died): the command's outcome is then unknown.
    pub fn try_cmd(&mut self, args: &[&[u8]]) -> Option<Frame> {
        if !self.try_send_raw(&Client::encode(args)) {
            return None;
        }
        match self.try_read_frame() {
            ReadOutcome::Frame(frame) => Some(frame),
            ReadOutcome::Closed | ReadOutcome::TimedOut => None,
        }
    }

    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.stream
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
    }

    /// Encodes one command as a RESP2 multibulk request.
    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Like [`Client::encode`] with owned arguments.
    pub fn encode_owned(args: &[Vec<u8>]) -> Vec<u8> {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        Client::encode(&refs)
    }

    /// Sends one command and reads one reply; panics if the server closed the connection or
    /// did not answer in time.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Frame {
        self.send_raw(&Client::encode(args));
        match self.read_frame() {
            Some(frame) => frame,
            None => panic!(
                "server on port {} closed the connection instead of answering {}",
                self.port,
                show_cmd(&args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
            ),
        }
    }

    /// Like [`Client::cmd`] with owned arguments.
    pub fn cmd_vec(&mut self, args: &[Vec<u8>]) -> Frame {
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        self.cmd(&refs)
    }

    /// Like [`Client::cmd`] with string arguments.
    pub fn cmd_str(&mut self, args: &[&str]) -> Frame {
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&refs)
    }

    /// Sends `args` until the answer is something other than ERR_CLUSTER_CHANGED (refused
    /// without being applied: while partitions elect new leaders, or a proxy learns them),
    /// for at most `wait`; returns that answer.
    pub fn cmd_settled(&mut self, args: &[&str], wait: Duration) -> Frame {
        let deadline = Instant::now() + wait;
        loop {
            match self.cmd_str(args) {
                Frame::Error(e) if e.starts_with(b"ERR_CLUSTER_CHANGED") => {
                    assert!(
                        Instant::now() < deadline,
                        "{} still answered {} after {wait:?}",
                        args.join(" "),
                        String::from_utf8_lossy(&e)
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    /// Writes bytes as they are. Panics on a write error.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write to port {}: {e}", self.port));
    }

    /// Writes bytes as they are; `false` if the server had already closed the connection.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// Reads one reply; `None` when the server closed the connection. Panics on a timeout.
    pub fn read_frame(&mut self) -> Option<Frame> {
        match self.try_read_frame() {
            ReadOutcome::Frame(frame) => Some(frame),
            ReadOutcome::Closed => None,
            ReadOutcome::TimedOut => panic!(
                "no reply from port {} within the read timeout; buffered: \"{}\"",
                self.port,
                escape_short(&self.buf)
            ),
        }
    }

    /// Reads one reply, telling a closed connection from a timeout.
    pub fn try_read_frame(&mut self) -> ReadOutcome {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.decode_buffered() {
                return ReadOutcome::Frame(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return ReadOutcome::TimedOut
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::ConnectionAborted
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return ReadOutcome::Closed
                }
                Err(e) => panic!("read from port {}: {e}", self.port),
            }
        }
    }

    /// Whether bytes that do not yet form a whole reply are buffered.
    pub fn has_buffered(&self) -> bool {
        !self.buf.is_empty()
    }

    fn decode_buffered(&mut self) -> Option<Frame> {
        if self.buf.is_empty() {
            return None;
        }
        if self.resp3 {
            use redis_protocol::resp3::decode::complete::decode_bytes_mut;
            match decode_bytes_mut(&mut self.buf) {
                Ok(Some((frame, _, _))) => Some(Frame::from_resp3(frame)),
                Ok(None) => None,
                Err(e) => panic!(
                    "undecodable RESP3 from port {}: {e:?}; buffered: \"{}\"",
                    self.port,
                    escape_short(&self.buf)
                ),
            }
        } else {
            use redis_protocol::resp2::decode::decode_bytes_mut;
            // The decoder reads `*-1` as `$-1`'s null; a top-level one is told apart here.
            if self.buf.starts_with(b"*-1\r\n") {
                let _ = self.buf.split_to(5);
                return Some(Frame::NullArray);
            }
            match decode_bytes_mut(&mut self.buf) {
                Ok(Some((frame, _, _))) => Some(Frame::from_resp2(frame)),
                Ok(None) => None,
                Err(e) => panic!(
                    "undecodable RESP2 from port {}: {e:?}; buffered: \"{}\"",
                    self.port,
                    escape_short(&self.buf)
                ),
            }
        }
    }

    /// Sends `HELLO 3` and decodes every later reply as RESP3. Returns the HELLO reply.
    pub fn hello3(&mut self) -> Frame {
        self.send_raw(&Client::encode(&[b"HELLO", b"3"]));
        // The reply to HELLO 3 is already RESP3.
        self.resp3 = true;
        let reply = self
            .read_frame()
            .expect("server closed the connection on HELLO 3");
        let proto = match &reply {
            Frame::Map(pairs) => pairs.iter().find(|(k, _)| k.as_bytes() == Some(b"proto")),
            _ => None,
        };
        assert!(
            matches!(proto, Some((_, Frame::Integer(3)))),
            "HELLO 3 on port {} answered {reply}",
            self.port
        );
        reply
    }

    pub fn is_resp3(&self) -> bool {
        self.resp3
    }

    /// Sends PING and requires PONG.
    pub fn must_ping(&mut self) {
        let reply = self.cmd(&[b"PING"]);
        assert_eq!(reply, Frame::simple("PONG"), "PING on port {}", self.port);
    }

    /// Closes the write half so the server sees end of input.
    pub fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`; the status code and the body, or why it
/// failed.
pub fn try_http(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    try_http_with(port, method, path, &[])
}

/// [`try_http`] with extra request headers.
pub fn try_http_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    // Admin calls wait up to 10 s for a change to show.
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n{extra}Connection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status code in {response:?}"))?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

/// Like [`try_http`]; panics if the request fails.
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    try_http(port, method, path).unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"))
}

/// Polls until a fresh connection to `port` answers PING with PONG, or `deadline` passes.
/// `alive` is asked between attempts and may panic if the process died.
fn wait_for_pong(port: u16, deadline: Instant, mut alive: impl FnMut()) -> bool {
    while Instant::now() < deadline {
        alive();
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok() {
                let mut reply = [0u8; 7];
                if stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
                    return true;
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    false
}

/// Returns the last `max` bytes of a log file, lossily decoded.
fn file_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Waits at most [`PROCESS_DEADLINE`] for a child to exit; `None` if it is still running.
fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + PROCESS_DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Sends a signal with kill(1). A child that already exited makes kill fail, which is not an
/// error here: the caller waits for the exit either way.
fn send_signal(child: &Child, signal: &str) {
    let _exit = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .stderr(Stdio::null())
        .status()
        .expect("run kill");
}

// ---------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------

/// A reference `redis-server` on a free loopback port, with no persistence and its working
/// directory and log in its own temp dir. Killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server and waits (at most 10 s) until it answers PING.
    pub fn must_start() -> RedisServer {
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temp dir for redis-server");
            let port = free_port();
            let log = dir.path().join("redis.log");
            let log_file = File::create(&log).expect("create redis log");
            let child = Command::new(REDIS_BIN)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args([
                    "--logfile",
                    "",
                    "--protected-mode",
                    "no",
                    "--databases",
                    "16",
                ])
                // SORT ALPHA compares with strcoll: the C locale makes it byte order, as
                // zankv compares, whatever the machine's locale.
                .env("LC_ALL", "C")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone log handle"))
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("start {REDIS_BIN}: {e}"));
            let mut server = RedisServer {
                child,
                port,
                log,
                _dir: dir,
            };
            let mut exited = false;
            let ready = wait_for_pong(port, Instant::now() + PROCESS_DEADLINE, || {
                exited = exited || server.child.try_wait().expect("try_wait").is_some();
            });
            if ready {
                if server.answers_as_own_child() {
                    return server;
                }
                // Another process answered on the port: try another one.
                continue;
            }
            last_log = file_tail(&server.log, 4096);
            if !exited {
                panic!(
                    "redis-server on port {port} did not answer PING within 10 s; log:\n{last_log}"
                );
            }
            // Most likely the port was taken in between: try another one.
        }
        panic!("redis-server failed to start {START_ATTEMPTS} times; last log:\n{last_log}");
    }

    /// Whether the server on the port is this child (and not another process that took the
    /// port first), judged by the pid in INFO.
    fn answers_as_own_child(&mut self) -> bool {
        let info = Client::connect(self.port).cmd(&[b"INFO", b"server"]);
        let pid_line = format!("process_id:{}\r\n", self.child.id());
        info.as_bytes().is_some_and(|text| {
            text.windows(pid_line.len())
                .any(|w| w == pid_line.as_bytes())
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 4096)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// zankv-storage
// ---------------------------------------------------------------------------------------

/// A `zankv-storage` child process serving RESP on 127.0.0.1:`port`. Its stdout and stderr
/// go to `<data dir>.log` beside the data dir, appended across restarts; the tail is printed
/// if a test panics while the node is alive. Killed (SIGKILL) on drop.
pub struct ZankvNode {
    child: Option<Child>,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl ZankvNode {
    /// Starts a node on a free port and waits (at most 10 s) until it answers PING.
    pub fn must_start(data_dir: &Path) -> ZankvNode {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            match ZankvNode::start_on(data_dir, free_port()) {
                Ok(node) => return node,
                // Most likely the port was taken in between: try another one.
                Err(e) => last_err = e,
            }
        }
        panic!("zankv-storage failed to start {START_ATTEMPTS} times; last attempt: {last_err}");
    }

    /// Starts a node on the given port (for restarts) and waits until it answers PING.
    pub fn must_start_on(data_dir: &Path, port: u16) -> ZankvNode {
        ZankvNode::start_on(data_dir, port).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a cluster node from a config file (which names its HTTP and raft addresses)
    /// on the given RESP port and waits until it answers PING.
    pub fn must_start_with_config(data_dir: &Path, port: u16, config: &Path) -> ZankvNode {
        let args = vec!["--config".to_string(), config.display().to_string()];
        ZankvNode::start_with(data_dir, port, &args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a standalone node with its HTTP endpoint on `http_port` and the settings of
    /// `config`, on the given RESP port, and waits until it answers PING.
    pub fn must_start_standalone_with(
        data_dir: &Path,
        port: u16,
        http_port: u16,
        config: &Path,
    ) -> ZankvNode {
        let args = [
            "--http-addr".to_string(),
            format!("127.0.0.1:{http_port}"),
            "--raft-addr".to_string(),
            "127.0.0.1:0".to_string(),
            "--config".to_string(),
            config.display().to_string(),
        ];
        ZankvNode::start_with(data_dir, port, &args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn start_on(data_dir: &Path, port: u16) -> Result<ZankvNode, String> {
        // A standalone node: its HTTP and raft listeners on any free port.
        let args = ["--http-addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"].map(String::from);
        ZankvNode::start_with(data_dir, port, &args)
    }

    fn start_with(data_dir: &Path, port: u16, extra: &[String]) -> Result<ZankvNode, String> {
        std::fs::create_dir_all(data_dir).expect("create data dir");
        let log = log_path_for(data_dir);
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open node log");
        let child = Command::new(ZANKV_BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--redis-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {ZANKV_BIN}: {e}"));
        let mut node = ZankvNode {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
            log,
        };
        let mut exit = None;
        let ready = wait_for_pong(port, Instant::now() + PROCESS_DEADLINE, || {
            if exit.is_none() {
                exit = node
                    .child
                    .as_mut()
                    .expect("child")
                    .try_wait()
                    .expect("try_wait");
            }
        });
        if ready {
            // A node that failed to bind exits; then the PONG came from another process that
            // took the port first.
            let child = node.child.as_mut().expect("child");
            exit = child.try_wait().expect("try_wait");
            if exit.is_none() {
                return Ok(node);
            }
        }
        let tail = node.log_tail();
        match exit {
            Some(status) => {
                node.child = None;
                Err(format!(
                    "zankv-storage on port {port} exited early ({status}); log:\n{tail}"
                ))
            }
            None => Err(format!(
                "zankv-storage on port {port} did not answer PING within 10 s; log:\n{tail}"
            )),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// The last 8 KiB of the node's stdout/stderr.
    pub fn log_tail(&self) -> String {
        file_tail(&self.log, 8192)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node is running").id()
    }

    /// SIGKILL, then wait for the process to be gone.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("node is running");
        child.kill().expect("SIGKILL zankv-storage");
        child.wait().expect("wait for killed zankv-storage");
    }

    /// SIGTERM, then wait (at most 10 s) for a clean exit. Panics, after SIGKILL, if the node
    /// does not exit in time; returns its exit status otherwise.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node is running");
        send_signal(&child, "-TERM");
        match wait_bounded(&mut child) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "zankv-storage on port {} did not exit within 10 s of SIGTERM; log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
        }
    }
}

impl Drop for ZankvNode {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!(
                    "--- zankv-storage (port {}) log tail, {} ---\n{}\n--- end of log ---",
                    self.port,
                    self.log.display(),
                    file_tail(&self.log, 8192)
                );
            }
        }
    }
}

/// `<parent>/<data dir name>.log`: outside the data dir, so the node never sees it.
fn log_path_for(data_dir: &Path) -> PathBuf {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "node".into());
    let parent = data_dir.parent().unwrap_or_else(|| Path::new("."));
    parent.join(format!("{name}.log"))
}
