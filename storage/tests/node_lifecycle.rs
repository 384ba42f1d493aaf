//! End-to-end checks of the `zankv-storage` process itself: start-up errors, the client
//! limit, background expiry, and clean shutdown. Every test starts its own node on a free
//! loopback port and kills it when done.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::http;

const BIN: &str = env!("CARGO_BIN_EXE_zankv-storage");

struct Node {
    child: Child,
    port: u16,
    http_port: u16,
}

impl Node {
    /// Starts a node on an OS-chosen port (`127.0.0.1:0`) and learns the port from its
    /// "ready" log line, so no other process can take the port in between.
    fn must_start(dir: &Path, extra: &[&str]) -> Node {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .arg("--redis-addr")
            .arg("127.0.0.1:0")
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zankv-storage");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("storage node ready") {
                    let port_after = |marker: &str| -> u16 {
                        let rest = line.split(marker).nth(1).expect("address in ready line");
                        let digits: String =
                            rest.chars().take_while(char::is_ascii_digit).collect();
                        digits.parse().expect("port in ready line")
                    };
                    let _ = tx.send((
                        port_after(" addr=127.0.0.1:"),
                        port_after("http_addr=127.0.0.1:"),
                    ));
                }
            }
        });
        // Own the child before anything can panic, so it is killed whatever happens.
        let mut node = Node {
            child,
            port: 0,
            http_port: 0,
        };
        (node.port, node.http_port) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("node did not report ready");
        node
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one inline command and reads one reply line (enough for simple replies).
fn call(s: &mut TcpStream, line: &str) -> String {
    s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => {
                out.push(byte[0]);
                if out.ends_with(b"\r\n") {
                    // A bulk header: read the payload line too.
                    if out[0] == b'$' && out != b"$-1\r\n" {
                        let mut payload = Vec::new();
                        while !payload.ends_with(b"\r\n") {
                            s.read_exact(&mut byte).unwrap();
                            payload.push(byte[0]);
                        }
                        return String::from_utf8_lossy(&payload[..payload.len() - 2]).into_owned();
                    }
                    break;
                }
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
    String::from_utf8_lossy(&out).trim_end().to_string()
}

#[test]
fn client_limit_refuses_with_redis_error_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::must_start(dir.path(), &["--max-clients", "2"]);
    let mut a = node.connect();
    let mut b = node.connect();
    assert_eq!(call(&mut a, "PING"), "+PONG");
    assert_eq!(call(&mut b, "PING"), "+PONG");
    let mut c = node.connect();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "-ERR max number of clients reached\r\n");
    drop(a);
    // The slot frees once the server notices the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = node.connect();
        if call(&mut d, "PING") == "+PONG" {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(call(&mut b, "PING"), "+PONG");
}

#[test]
fn expired_keys_are_reclaimed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::must_start(dir.path(), &[]);
    let mut s = node.connect();
    for i in 0..20 {
        assert_eq!(call(&mut s, &format!("SET k{i} v PX 30")), "+OK");
    }
    assert_eq!(call(&mut s, "HSET h f v"), ":1");
    assert_eq!(call(&mut s, "PEXPIRE h 30"), ":1");
    // Invisible at once after expiry, whatever the reclamation state.
    std::thread::sleep(Duration::from_millis(40));
    assert_eq!(call(&mut s, "EXISTS k0 k1 h"), ":0");
    // And gone from the key count once background expiry ran.
    let deadline = Instant::now() + Duration::from_secs(5);
    while call(&mut s, "DBSIZE") != ":0" {
        assert!(Instant::now() < deadline, "expired keys were not reclaimed");
        std::thread::sleep(Duration::from_millis(20));
    }
    s.write_all(b"INFO stats\r\n").unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let info = String::from_utf8_lossy(&buf[..n]);
    assert!(info.contains("expired_keys:21"), "{info}");
}

#[test]
fn sigterm_stops_cleanly_and_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::must_start(dir.path(), &[]);
    let mut s = node.connect();
    assert_eq!(call(&mut s, "SET durable yes"), "+OK");
    assert_eq!(call(&mut s, "HSET h a 1 b 2"), ":2");
    drop(s);
    let status = node.terminate();
    assert!(status.success(), "exit status {status}");
    let node = Node::must_start(dir.path(), &[]);
    let mut s = node.connect();
    assert_eq!(call(&mut s, "GET durable"), "yes");
    assert_eq!(call(&mut s, "HLEN h"), ":2");
    assert_eq!(call(&mut s, "DBSIZE"), ":2");
}

#[test]
fn http_endpoint_serves_metrics_status_and_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::must_start(dir.path(), &[]);
    let mut s = node.connect();
    assert_eq!(call(&mut s, "SET a 1"), "+OK");
    assert_eq!(
        http(node.http_port, "GET", "/ping"),
        (200, "OK".to_string())
    );
    let (code, metrics) = http(node.http_port, "GET", "/metrics");
    assert_eq!(code, 200);
    for name in [
        "zankv_storage_commands_total",
        "zankv_storage_clients_connected 1",
        "zankv_storage_keys{partition=\"default-0\"} 1",
        "zankv_storage_raft_entries_committed_total",
        "zankv_storage_raft_log_sync_seconds_count",
        "zankv_storage_apply_batch_changes_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    let (code, status) = http(node.http_port, "GET", "/status");
    assert_eq!(code, 200);
    // A new group's log starts after index 5; entry 6 is the new leader's empty entry,
    // entry 7 the SET.
    assert!(status.contains("\"applied_index\":7"), "{status}");
    assert!(status.contains("\"role\":\"leader\""), "{status}");
    let (code, body) = http(node.http_port, "GET", "/nope");
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"message":"no such endpoint"}"#)
    );
    let (code, body) = http(node.http_port, "POST", "/ping");
    assert_eq!(
        (code, body.as_str()),
        (405, r#"{"message":"method not allowed"}"#)
    );
}

#[test]
fn startup_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    // A config file with an unknown key is refused, naming the key.
    let conf = dir.path().join("bad.toml");
    std::fs::write(&conf, "data_dri = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("data_dri"));
    // A port in use is reported as such.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--redis-addr")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn every_config_file_in_conf_starts_a_node() {
    // conf/storage.toml must be accepted by the binary itself (flags override its addresses).
    let dir = tempfile::tempdir().unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/storage.toml");
    let node = Node::must_start(dir.path(), &["--config", conf.to_str().unwrap()]);
    let mut s = node.connect();
    assert_eq!(call(&mut s, "PING"), "+PONG");
}

#[test]
fn admin_operations_need_the_token_and_valid_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("admin.toml");
    std::fs::write(&conf, "admin_token = \"s3cret\"\n").unwrap();
    let data = dir.path().join("data");
    let node = Node::must_start(&data, &["--config", conf.to_str().unwrap()]);
    let port = node.http_port;
    let declare = "/nodes/7?raft_addr=127.0.0.1:1&redis_addr=127.0.0.1:2";
    let with = |token: &str, method: &str, path: &str| {
        let auth = format!("Bearer {token}");
        support::try_http_with(port, method, path, &[("Authorization", &auth)]).unwrap()
    };
    let (code, body) = http(port, "POST", declare);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    assert_eq!(with("wrong", "POST", declare).0, 401);
    let (code, body) = with("s3cret", "POST", declare);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""raft_addr":"127.0.0.1:1""#), "{body}");
    // Reads stay open.
    assert_eq!(http(port, "GET", "/status").0, 200);

    for (method, path, want, says) in [
        (
            "POST",
            "/nodes/zero?raft_addr=127.0.0.1:1&redis_addr=127.0.0.1:2",
            400,
            "node id must be an integer within",
        ),
        (
            "POST",
            "/nodes/7?raft_addr=127.0.0.1:1",
            400,
            "missing parameter redis_addr",
        ),
        (
            "POST",
            "/nodes/7?raft_addr=nowhere&redis_addr=127.0.0.1:2",
            400,
            "HOST:PORT",
        ),
        (
            "POST",
            "/partitions/nope-3/learners/2",
            404,
            "no partition named",
        ),
        (
            "POST",
            "/partitions/default-0/learners/0",
            400,
            "node id must be an integer within",
        ),
        (
            "POST",
            "/partitions/default-0/replica",
            400,
            "missing parameter replica",
        ),
        (
            "POST",
            "/partitions/default-0/replica?replica=abc",
            400,
            "positive replica id",
        ),
        (
            "POST",
            "/partitions/default-0/replica?replica=8589934594",
            409,
            "not a replica id the leader gave this node",
        ),
        (
            "DELETE",
            "/partitions/default-0/replica?force=maybe",
            400,
            "true or false",
        ),
        // The standalone node leads its only partition: it cannot delete it.
        (
            "DELETE",
            "/partitions/default-0/replica",
            409,
            "leads the partition",
        ),
        (
            "DELETE",
            "/partitions/default-0/members/1",
            409,
            "cannot remove itself",
        ),
        (
            "POST",
            "/partitions/default-0/voters/5",
            409,
            "not a learner",
        ),
    ] {
        let (code, body) = with("s3cret", method, path);
        assert_eq!(code, want, "{method} {path}: {body}");
        assert!(body.contains(says), "{method} {path}: {body}");
        assert!(body.starts_with("{\"message\""), "{method} {path}: {body}");
    }
    // Idempotent: what already holds is unchanged.
    let (code, body) = with(
        "s3cret",
        "POST",
        "/partitions/default-0/replica?bootstrap=true",
    );
    assert_eq!((code, body.contains("unchanged")), (200, true), "{body}");
    let (code, body) = with("s3cret", "POST", "/partitions/default-0/leader/1");
    assert_eq!((code, body.contains("unchanged")), (200, true), "{body}");
}

#[test]
fn info_in_a_pipeline_sees_the_writes_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::must_start(dir.path(), &[]);
    let mut s = node.connect();
    s.write_all(b"SET a 1\r\nSET b 2\r\nINFO keyspace\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("db0:keys=") && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read failed: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("+OK\r\n+OK\r\n"), "{text}");
    assert!(text.contains("db0:keys=2,"), "{text}");
}

#[test]
fn command_list_filters_by_pattern_and_category() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::must_start(dir.path(), &[]);
    let mut c = support::Client::connect(node.port);
    let names = |reply: support::Frame| -> Vec<String> {
        let mut v: Vec<String> = reply
            .as_items()
            .expect("an array")
            .iter()
            .map(|f| String::from_utf8_lossy(f.as_bytes().unwrap()).into_owned())
            .collect();
        v.sort();
        v
    };
    let h = names(c.cmd_str(&["COMMAND", "LIST", "FILTERBY", "PATTERN", "H*"]));
    assert!(h.iter().all(|n| n.starts_with('h')), "{h:?}");
    assert!(
        h.contains(&"hset".to_string()) && h.contains(&"hello".to_string()),
        "{h:?}"
    );
    let conn = names(c.cmd_str(&["COMMAND", "LIST", "FILTERBY", "ACLCAT", "connection"]));
    assert!(
        conn.contains(&"client|id".to_string()),
        "subcommands are listed: {conn:?}"
    );
    assert!(!conn.contains(&"get".to_string()), "{conn:?}");
    let all = names(c.cmd_str(&["COMMAND", "LIST"]));
    assert!(all.contains(&"get".to_string()) && all.contains(&"client|setname".to_string()));
}
