//! The proxy's front end without a cluster behind it: a `zankv-proxy` process whose PD is
//! unreachable still answers connection commands, checks passwords, refuses bad input
//! with Redis's errors and keeps serving; data commands get a clear routing error.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `N` distinct free ports (held together while they are chosen, so that no two are the
/// same).
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

struct Proxy {
    child: Child,
    port: u16,
    http_port: u16,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(extra: &[&str]) -> Proxy {
        let [port, http_port, pd_port] = free_ports();
        let child = Command::new(env!("CARGO_BIN_EXE_zankv-proxy"))
            .args(["--redis-addr", &format!("127.0.0.1:{port}")])
            .args(["--http-addr", &format!("127.0.0.1:{http_port}")])
            // Nothing listens there: the proxy has no routing tables.
            .args(["--pd", &format!("127.0.0.1:{pd_port}")])
            .args(extra)
            .env_remove("ZANKV_REQUIREPASS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zankv-proxy");
        let mut proxy = Proxy {
            child,
            port,
            http_port,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("zankv-proxy exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "zankv-proxy did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy
    }

    fn client(&self) -> Client {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client { s, buf: Vec::new() }
    }

    fn http(&self, path: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.http_port)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

struct Client {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn send_raw(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// The next reply, as raw RESP; None when the connection closed.
    fn reply(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Ok(Some((_, n))) = redis_protocol::resp3::decode::complete::decode(&self.buf) {
                return Some(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn cmd(&mut self, args: &[&str]) -> String {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.send_raw(req.as_bytes());
        String::from_utf8_lossy(&self.reply().expect("a reply")).into_owned()
    }
}

#[test]
fn connection_commands_bad_input_and_data_without_routing() {
    let proxy = Proxy::start(&[]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(c.cmd(&["ECHO", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(
        c.cmd(&["AUTH", "x"]),
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
    );
    assert_eq!(c.cmd(&["AUTH", "default", "x"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        c.cmd(&["NOSUCH", "a"]),
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' \r\n"
    );
    assert_eq!(
        c.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert!(c.cmd(&["INFO", "server"]).contains("zankv_role:proxy"));
    // No table yet: a clear routing error, not a wrong answer.
    let get = c.cmd(&["GET", "k"]);
    assert!(get.starts_with("-ERR_CLUSTER_CHANGED: "), "{get}");
    let dbsize = c.cmd(&["DBSIZE"]);
    assert!(
        dbsize.starts_with("-ERR_CLUSTER_CHANGED: the proxy knows no namespace"),
        "{dbsize}"
    );
    assert!(c
        .cmd(&["ZANKV.ON", "default-0", "DBSIZE"])
        .starts_with("-ERR unknown command"));
    // RESP3.
    let hello = c.cmd(&["HELLO", "3"]);
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    // Inline commands and pipelines.
    c.send_raw(b"PING\r\nECHO a\r\n");
    assert_eq!(c.reply().unwrap(), b"+PONG\r\n");
    assert_eq!(c.reply().unwrap(), b"$1\r\na\r\n");
    // A malformed request is answered, then the connection closes; others go on.
    let mut bad = proxy.client();
    bad.send_raw(b"*1\r\n$x\r\n");
    assert_eq!(
        String::from_utf8(bad.reply().unwrap()).unwrap(),
        "-ERR Protocol error: invalid bulk length\r\n"
    );
    assert_eq!(bad.reply(), None);
    let mut huge = proxy.client();
    huge.send_raw(b"*1\r\n$99999999999\r\n");
    assert!(String::from_utf8(huge.reply().unwrap())
        .unwrap()
        .starts_with("-ERR Protocol error"));
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    let metrics = proxy.http("/metrics");
    assert!(
        metrics.contains("zankv_proxy_commands_total{command=\"ping\"}"),
        "{metrics}"
    );
    assert!(proxy
        .http("/routing")
        .contains("\"default_namespace\":\"default\""));
    assert!(proxy.http("/nope").starts_with("HTTP/1.1 404"));
    assert_eq!(c.cmd(&["QUIT"]), "+OK\r\n");
    assert_eq!(c.reply(), None);
}

#[test]
fn clients_are_listed_and_killed() {
    let proxy = Proxy::start(&[]);
    let mut a = proxy.client();
    let mut b = proxy.client();
    assert_eq!(b.cmd(&["CLIENT", "SETNAME", "worker"]), "+OK\r\n");
    let b_id: u64 = b.cmd(&["CLIENT", "ID"])[1..].trim().parse().unwrap();
    let info = b.cmd(&["CLIENT", "INFO"]);
    assert!(
        info.contains(&format!("id={b_id} addr=127.0.0.1:"))
            && info.contains(" name=worker ")
            && info.contains(" cmd=client|info "),
        "{info}"
    );
    let list = a.cmd(&["CLIENT", "LIST"]);
    assert_eq!(list.matches("id=").count(), 2, "two clients: {list}");
    assert!(list.contains("name=worker"), "{list}");
    assert_eq!(a.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]), "$0\r\n\r\n");
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "ID", &b_id.to_string()]),
        ":1\r\n"
    );
    assert_eq!(b.reply(), None, "killed");
    assert_eq!(
        a.cmd(&["CLIENT", "KILL", "USER", "default"]),
        ":0\r\n",
        "SKIPME yes"
    );
    assert_eq!(a.cmd(&["PING"]), "+PONG\r\n");
}

/// CLIENT LIST names each client's last command, also when it came in a pipeline, with
/// data commands and connection commands mixed in one read.
#[test]
fn the_last_command_of_a_pipeline_is_listed() {
    let proxy = Proxy::start(&[]);
    let mut admin = proxy.client();
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "piped"]), "+OK\r\n");
    let line = |admin: &mut Client| {
        let list = admin.cmd(&["CLIENT", "LIST"]);
        list.lines()
            .find(|l| l.contains(" name=piped "))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("the client is listed: {list}"))
    };
    c.send_raw(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$6\r\nSTRLEN\r\n$1\r\nk\r\n");
    c.reply().unwrap();
    c.reply().unwrap();
    let listed = line(&mut admin);
    assert!(listed.contains(" cmd=strlen "), "{listed}");
    // A connection command after data commands of the same read is the last one.
    c.send_raw(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n");
    c.reply().unwrap();
    assert_eq!(c.reply().unwrap(), b"+PONG\r\n");
    let listed = line(&mut admin);
    assert!(listed.contains(" cmd=ping "), "{listed}");
}

/// A client that sends requests and stops reading their replies leaves the proxy blocked
/// writing to it; CLIENT KILL still closes it at once.
#[test]
fn a_client_that_stopped_reading_is_killed() {
    let proxy = Proxy::start(&[]);
    let mut admin = proxy.client();
    let mut victim = proxy.client();
    let id: u64 = victim.cmd(&["CLIENT", "ID"])[1..].trim().parse().unwrap();
    // 64 MiB of ECHO replies, far more than the sockets' buffers hold.
    let mut writer = victim.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let value = vec![b'x'; 1 << 20];
        let mut request = format!("*2\r\n$4\r\nECHO\r\n${}\r\n", value.len()).into_bytes();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n");
        for _ in 0..64 {
            if writer.write_all(&request).is_err() {
                return;
            }
        }
    });
    // Wait until the proxy is stuck writing (its send buffer and ours are full).
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        admin.cmd(&["CLIENT", "KILL", "ID", &id.to_string()]),
        ":1\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = admin.cmd(&["CLIENT", "LIST"]);
        if !list.contains(&format!("id={id} ")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed client is still connected: {list}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(victim);
    sender.join().unwrap();
    assert_eq!(admin.cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn config_and_the_slow_log() {
    let proxy = Proxy::start(&[]);
    let mut c = proxy.client();
    assert_eq!(
        c.cmd(&["CONFIG", "GET", "maxclients"]),
        "*2\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n"
    );
    let slowlog = c.cmd(&["CONFIG", "GET", "slowlog-*"]);
    assert!(
        slowlog.contains("slowlog-log-slower-than\r\n$5\r\n10000"),
        "{slowlog}"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "maxclients", "5"]),
        "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - can't set immutable config\r\n"
    );
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        "+OK\r\n"
    );
    assert_eq!(c.cmd(&["ECHO", "slow?"]), "$5\r\nslow?\r\n");
    let entry = c.cmd(&["SLOWLOG", "GET", "1"]);
    assert!(entry.starts_with("*1\r\n*6\r\n:"), "{entry}");
    assert!(
        entry.contains("*2\r\n$4\r\nECHO\r\n$5\r\nslow?\r\n$15\r\n127.0.0.1:"),
        "{entry}"
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), "+OK\r\n");
    // RESET itself is logged after it ran, as in Redis.
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), ":1\r\n");
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]),
        "+OK\r\n"
    );
    assert_eq!(c.cmd(&["SLOWLOG", "RESET"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SLOWLOG", "LEN"]), ":0\r\n");
    // CONFIG SET timeout closes idle clients from then on.
    assert_eq!(c.cmd(&["CONFIG", "SET", "timeout", "1"]), "+OK\r\n");
    let mut idle = proxy.client();
    assert_eq!(idle.cmd(&["PING"]), "+PONG\r\n");
    let started = Instant::now();
    assert_eq!(idle.reply(), None, "closed when idle");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[test]
fn a_password_is_required_before_anything_else() {
    let proxy = Proxy::start(&["--requirepass", "s3cret"]);
    let mut c = proxy.client();
    assert_eq!(c.cmd(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(c.cmd(&["PING"]), "-NOAUTH Authentication required.\r\n");
    // Before AUTH only names and arity are judged, as Redis does.
    assert_eq!(
        c.cmd(&["SET", "k", "v", "EX", "abc"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(c
        .cmd(&["NOSUCH"])
        .starts_with("-ERR unknown command 'NOSUCH'"));
    assert_eq!(
        c.cmd(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        c.cmd(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert!(c
        .cmd(&["HELLO", "3"])
        .starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        c.cmd(&["AUTH", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.cmd(&["AUTH", "someone", "s3cret"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd(&["AUTH", "s3cret"]), "+OK\r\n");
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    // The slow log never shows a password.
    assert_eq!(
        c.cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        "+OK\r\n"
    );
    assert_eq!(c.cmd(&["AUTH", "default", "s3cret"]), "+OK\r\n");
    assert!(c
        .cmd(&["HELLO", "2", "AUTH", "default", "s3cret"])
        .starts_with("*14\r\n"));
    let log = c.cmd(&["SLOWLOG", "GET", "-1"]);
    assert!(!log.contains("s3cret"), "{log}");
    assert!(
        log.contains("*3\r\n$4\r\nAUTH\r\n$10\r\n(redacted)\r\n$10\r\n(redacted)\r\n"),
        "{log}"
    );
    assert!(
        log.contains("$4\r\nAUTH\r\n$10\r\n(redacted)\r\n$10\r\n(redacted)\r\n"),
        "{log}"
    );
    // Before AUTH, at most 10 arguments of at most 16 KiB, as Redis: the connection closes.
    let mut many = proxy.client();
    many.send_raw(b"*11\r\n");
    assert_eq!(
        String::from_utf8(many.reply().unwrap()).unwrap(),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert_eq!(many.reply(), None);
    let mut big = proxy.client();
    big.send_raw(b"*2\r\n$3\r\nSET\r\n$16385\r\n");
    assert_eq!(
        String::from_utf8(big.reply().unwrap()).unwrap(),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    // After AUTH the usual limits apply.
    let value = "v".repeat(20_000);
    let mut args = vec!["ECHO"];
    args.push(&value);
    assert_eq!(c.cmd(&args).len(), 20_000 + 10);
    let mut c3 = proxy.client();
    let hello = c3.cmd(&["HELLO", "3", "AUTH", "default", "s3cret"]);
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    assert_eq!(c3.cmd(&["PING"]), "+PONG\r\n");
    let mut wrong = proxy.client();
    assert!(wrong
        .cmd(&["HELLO", "3", "AUTH", "default", "nope"])
        .starts_with("-WRONGPASS"));
    assert_eq!(wrong.cmd(&["QUIT"]), "+OK\r\n");
}
