//! PD's HTTP API, end to end: a `zankv-pd` process on a free loopback port, storage nodes
//! played by heartbeats sent from the test. Every endpoint, its 4xx cases, the admin token,
//! and metadata surviving a restart.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_zankv-pd");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PD process, killed on drop.
struct Pd {
    child: Child,
    port: u16,
}

impl Drop for Pd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pd {
    fn start(dir: &Path, port: u16, extra_toml: &str) -> Pd {
        let conf = dir.join("pd.toml");
        std::fs::write(
            &conf,
            format!(
                "data_dir = \"{}\"\nhttp_addr = \"127.0.0.1:{port}\"\nheartbeat_timeout_ms = 3000\n{extra_toml}",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zankv-pd");
        let pd = Pd { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while pd.try_call("GET", "/ping", None, None).is_err() {
            assert!(Instant::now() < deadline, "zankv-pd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        pd
    }

    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, String), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        let mut response = String::new();
        s.read_to_string(&mut response).map_err(|e| e.to_string())?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("no status")?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        Ok((status, body))
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>) -> (u16, Value) {
        self.send(method, path, None, token)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let (status, body) = self.try_call(method, path, body, token).unwrap();
        let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (status, v)
    }
}

fn heartbeat(node: u64, epoch: u64, replicas: Value) -> Value {
    json!({
        "node": {
            "node_id": node,
            "broadcast_address": "127.0.0.1",
            "redis_port": 20000 + node,
            "http_port": 21000 + node,
            "raft_port": 22000 + node,
            "version": "0.1.0",
            "dc_info": "",
            "tags": [],
        },
        "replicas": replicas,
        "catalog_epoch": epoch,
    })
}

#[test]
fn namespaces_nodes_and_routing_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Pd::start(dir.path(), free_port(), "");
    assert_eq!(
        pd.try_call("GET", "/ping", None, None).unwrap(),
        (200, "OK".into())
    );
    let (code, info) = pd.call("GET", "/info", None);
    assert_eq!((code, info["leader"].clone()), (200, json!(true)));
    let (_, list) = pd.call("GET", "/listpd", None);
    assert_eq!(
        list["pdleader"]["http_address"],
        format!("127.0.0.1:{}", pd.port)
    );

    // Three storage nodes register through heartbeats and get the catalog.
    for node in 1..=3 {
        let (code, reply) = pd.send(
            "POST",
            "/storage/heartbeat",
            Some(&heartbeat(node, 0, json!([]))),
            None,
        );
        assert_eq!(code, 200, "{reply}");
        assert!(reply["catalog"]["epoch"].as_u64().unwrap() >= 1);
    }
    let (_, nodes) = pd.call("GET", "/datanodes", None);
    let nodes = nodes["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["alive"] == json!(true)));
    assert_eq!(nodes[0]["redis_port"], 20001);

    let (code, ns) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=users&partition_num=4&replicator=3&tags=&hash_tags=true",
        None,
    );
    assert_eq!(code, 400, "an empty tag: {ns}");
    let (code, ns) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=users&partition_num=4&replicator=3&hash_tags=true&expiration_policy=wait_compact",
        None,
    );
    assert_eq!(code, 200, "{ns}");
    assert_eq!(ns["initial_replicas"].as_array().unwrap().len(), 4);
    assert_eq!(ns["hash_tags"], json!(true));
    let (_, names) = pd.call("GET", "/namespaces", None);
    assert_eq!(names, json!({"namespaces": ["users"]}));

    // The routing table: no leader yet; then node 2 reports leading partition 1.
    let (code, q) = pd.call("GET", "/query/users", None);
    assert_eq!(code, 200);
    assert_eq!(q["partition_num"], 4);
    assert_eq!(q["eng_type"], "rockredis");
    assert!(q["partitions"]["1"]["leader"].is_null());
    let epoch = q["epoch"].as_u64().unwrap();
    let (code, _) = pd.call("GET", &format!("/query/users?epoch={epoch}"), None);
    assert_eq!(code, 304, "unchanged");
    let group1 = (1u64 << 32) | 1;
    let report = json!([{
        "partition": "users-1", "group": group1, "role": "leader", "term": 3, "leader": 2,
        "commit": 5, "applied": 5, "voters": [2, 3, 4], "learners": [], "lag": [], "keys": 0
    }]);
    let catalog_epoch = pd.call("GET", "/catalog", None).1["epoch"]
        .as_u64()
        .unwrap();
    pd.send(
        "POST",
        "/storage/heartbeat",
        Some(&heartbeat(2, catalog_epoch, report)),
        None,
    );
    let (code, q) = pd.call("GET", &format!("/query/users?epoch={epoch}"), None);
    assert_eq!(code, 200);
    assert!(q["epoch"].as_u64().unwrap() > epoch, "{q}");
    assert_eq!(q["partitions"]["1"]["leader"]["node_id"], "2");
    assert_eq!(q["partitions"]["1"]["leader"]["redis_port"], "20002");
    let (_, stats) = pd.call("GET", "/cluster/stats", None);
    assert_eq!(stats["namespaces"], 1);
    assert_eq!(stats["stable"], json!(false), "partitions without leaders");
    let (code, metrics) = pd.call("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("zankv_pd_heartbeats_total 4"),
        "{metrics}"
    );

    // Every 4xx, with a message naming the problem.
    let cases: &[(&str, &str, u16, &str)] = &[
        ("POST", "/cluster/namespace/create?partition_num=1&replicator=1", 400, "MISSING_ARG_NAMESPACE"),
        ("POST", "/cluster/namespace/create?namespace=a-b&partition_num=1&replicator=1", 400, "INVALID_ARG_NAMESPACE"),
        ("POST", "/cluster/namespace/create?namespace=a&replicator=1", 400, "MISSING_ARG_PARTITION_NUM"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=0&replicator=1", 400, "INVALID_ARG_PARTITION_NUM"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1025&replicator=1", 400, "within 1..1024"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=6", 400, "INVALID_ARG_REPLICATOR"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=x", 400, "INVALID_ARG_REPLICATOR"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1&expiration_policy=never", 400, "INVALID_ARG_EXPIRATION_POLICY"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1&hash_tags=yes", 400, "INVALID_ARG_HASH_TAGS"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1&expiration_policy=local_deletion", 400, "local_deletion is not supported"),
        ("POST", "/cluster/namespace/meta/update?namespace=users&replicator=3&hash_tags=false", 400, "INVALID_ARG_HASH_TAGS: which part of a key is hashed is fixed"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1&engtype=pebble", 400, "INVALID_ARG_ENGTYPE"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1&data_version=v9", 400, "INVALID_ARG_DATA_VERSION"),
        ("POST", "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1&color=red", 400, "unknown parameter color"),
        ("POST", "/cluster/namespace/create?namespace=users&partition_num=1&replicator=1", 409, "already exists"),
        ("POST", "/cluster/namespace/create?namespace=big&partition_num=1&replicator=4", 409, "4 replicas need 4 alive nodes"),
        ("DELETE", "/cluster/namespace/delete?namespace=nope", 404, "no namespace named nope"),
        ("DELETE", "/cluster/namespace/delete?namespace=users&partition=3", 400, "INVALID_ARG_PARTITION"),
        ("DELETE", "/cluster/namespace/delete", 400, "MISSING_ARG_NAMESPACE"),
        ("GET", "/query/nope", 404, "no namespace named nope"),
        ("GET", "/query/users?epoch=x", 400, "INVALID_ARG_EPOCH"),
        ("GET", "/query/users?foo=1", 400, "unknown parameter foo"),
        ("POST", "/cluster/namespace/meta/update?namespace=users", 400, "MISSING_ARG_REPLICATOR"),
        ("POST", "/cluster/namespace/meta/update?namespace=users&replicator=0", 400, "INVALID_ARG_REPLICATOR"),
        ("POST", "/cluster/namespace/meta/update?namespace=users&replicator=4", 409, "4 replicas need 4 alive nodes"),
        ("POST", "/cluster/namespace/meta/update?namespace=nope&replicator=1", 404, "no namespace named nope"),
        ("POST", "/cluster/namespace/meta/update?namespace=users&replicator=1&snapcount=5", 400, "INVALID_ARG_SNAPCOUNT"),
        ("POST", "/cluster/balance", 400, "MISSING_ARG_ENABLE"),
        ("POST", "/cluster/balance?enable=maybe", 400, "INVALID_ARG_ENABLE"),
        ("POST", "/cluster/node/remove", 400, "MISSING_ARG_REMOVE_NODE"),
        ("POST", "/cluster/node/remove?remove_node=0", 400, "INVALID_ARG_REMOVE_NODE"),
        ("POST", "/cluster/node/remove?remove_node=9", 404, "no storage node 9"),
        ("DELETE", "/cluster/partition/remove_node?namespace=users&partition=1", 400, "MISSING_ARG_NODE"),
        ("DELETE", "/cluster/partition/remove_node?namespace=users&partition=9&node=2", 400, "INVALID_ARG_PARTITION"),
        ("DELETE", "/cluster/partition/remove_node?namespace=users&partition=0&node=2", 409, "no known leader"),
        ("DELETE", "/cluster/partition/remove_node?namespace=users&partition=1&node=1", 404, "holds no replica"),
        ("POST", "/stable/nodenum?number=0", 400, "INVALID_ARG_NUMBER"),
        ("POST", "/stable/nodenum?number=7", 400, "within 1..=3"),
        ("POST", "/raft/messages", 404, "runs alone"),
        ("GET", "/routing/watch?foo=1", 400, "unknown parameter foo"),
        ("GET", "/routing/watch?namespace=a-b", 400, "INVALID_ARG_NAMESPACE"),
        ("GET", "/nowhere", 404, "no such endpoint"),
        ("GET", "/cluster/namespace/create", 405, "method not allowed"),
    ];
    for (method, path, want, says) in cases {
        let (code, body) = pd.call(method, path, None);
        assert_eq!(code, *want, "{method} {path}: {body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(says),
            "{method} {path}: {body}"
        );
    }
    // Without saying, the default namespace takes hash tags and the others do not.
    for (name, tags) in [("default", true), ("plain", false)] {
        let (code, ns) = pd.call(
            "POST",
            &format!("/cluster/namespace/create?namespace={name}&partition_num=1&replicator=1"),
            None,
        );
        assert_eq!(code, 200, "{ns}");
        assert_eq!(ns["hash_tags"], json!(tags), "{name}: {ns}");
        let (code, _) = pd.call(
            "DELETE",
            &format!("/cluster/namespace/delete?namespace={name}"),
            None,
        );
        assert_eq!(code, 200);
    }
    let (code, body) = pd.send(
        "POST",
        "/storage/heartbeat",
        Some(&json!({"node": 1})),
        None,
    );
    assert_eq!(code, 400);
    assert!(
        body["message"].as_str().unwrap().contains("INVALID_BODY"),
        "{body}"
    );
    let (code, _) = pd.send(
        "POST",
        "/storage/heartbeat",
        Some(&heartbeat(0, 0, json!([]))),
        None,
    );
    assert_eq!(code, 400, "node id 0");

    // The operator-facing switches answer and survive a restart.
    assert_eq!(
        pd.call("POST", "/cluster/balance?enable=false", None).0,
        200
    );
    assert_eq!(pd.call("POST", "/cluster/upgrade/begin", None).0, 200);
    assert_eq!(pd.call("POST", "/stable/nodenum?number=2", None).0, 200);
    let (code, op) = pd.call(
        "DELETE",
        "/cluster/partition/remove_node?namespace=users&partition=1&node=4",
        None,
    );
    assert_eq!(code, 200, "{op}");
    assert_eq!(op["operator"]["kind"], "remove_replica");
    let (_, ops) = pd.call("GET", "/cluster/operators", None);
    assert_eq!(ops["operators"][0]["partition"], "users-1", "{ops}");
    let (_, stats) = pd.call("GET", "/cluster/stats", None);
    assert!(
        stats["paused"]
            .as_str()
            .unwrap()
            .contains("rolling upgrade"),
        "{stats}"
    );
    assert_eq!(pd.call("POST", "/cluster/upgrade/done", None).0, 200);

    // The metadata survives a restart; the namespace can then be deleted.
    let port = pd.port;
    drop(pd);
    let pd = Pd::start(dir.path(), port, "");
    assert_eq!(
        pd.call("GET", "/namespaces", None).1,
        json!({"namespaces": ["users"]})
    );
    assert_eq!(
        pd.call("GET", "/datanodes", None).1["nodes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        pd.call("GET", "/stable/nodenum", None).1,
        json!({"stable_node_num": 2})
    );
    let (code, _) = pd.call(
        "DELETE",
        "/cluster/namespace/delete?namespace=users&partition=**",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        pd.call("GET", "/namespaces", None).1,
        json!({"namespaces": []})
    );
}

#[test]
fn mutating_calls_need_the_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Pd::start(dir.path(), free_port(), "admin_token = \"s3cret\"\n");
    let create = "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1";
    let (code, body) = pd.call("POST", create, None);
    assert_eq!(code, 401);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));
    assert_eq!(pd.call("POST", create, Some("wrong")).0, 401);
    let hb = heartbeat(1, 0, json!([]));
    assert_eq!(
        pd.send("POST", "/storage/heartbeat", Some(&hb), None).0,
        401
    );
    assert_eq!(
        pd.send("POST", "/storage/heartbeat", Some(&hb), Some("s3cret"))
            .0,
        200
    );
    assert_eq!(pd.call("POST", create, Some("s3cret")).0, 200);
    // Reads stay open.
    assert_eq!(pd.call("GET", "/query/a", None).0, 200);
    assert_eq!(
        pd.call("DELETE", "/cluster/namespace/delete?namespace=a", None)
            .0,
        401
    );
    for (method, path) in [
        ("POST", "/cluster/balance?enable=false"),
        ("POST", "/cluster/node/remove?remove_node=1"),
        (
            "DELETE",
            "/cluster/partition/remove_node?namespace=a&partition=0&node=1",
        ),
        ("POST", "/cluster/upgrade/begin"),
        ("POST", "/cluster/upgrade/done"),
        (
            "POST",
            "/cluster/namespace/meta/update?namespace=a&replicator=1",
        ),
        ("POST", "/stable/nodenum?number=1"),
    ] {
        assert_eq!(pd.call(method, path, None).0, 401, "{method} {path}");
    }
    assert_eq!(pd.call("GET", "/cluster/operators", None).0, 200);
    assert_eq!(pd.call("GET", "/stable/nodenum", None).0, 200);
}

/// Reads a chunked HTTP response's body line by line.
struct LineStream {
    stream: TcpStream,
    buf: Vec<u8>,
    body: Vec<u8>,
    /// The stream said its first tables were all sent.
    synced: bool,
}

impl LineStream {
    fn open(port: u16, path: &str) -> (u16, LineStream) {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut s = LineStream {
            stream,
            buf: Vec::new(),
            body: Vec::new(),
            synced: false,
        };
        let head = s.until(b"\r\n\r\n");
        let status = String::from_utf8_lossy(&head)
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap();
        (status, s)
    }

    /// Bytes up to and including `end`, reading more as needed.
    fn until(&mut self, end: &[u8]) -> Vec<u8> {
        loop {
            if let Some(at) = self.buf.windows(end.len()).position(|w| w == end) {
                return self.buf.drain(..at + end.len()).collect();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("stream read");
            assert!(n > 0, "the stream ended");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next newline-terminated JSON line of the body.
    fn next(&mut self) -> Value {
        loop {
            if let Some(at) = self.body.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.body.drain(..=at).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let size_line = self.until(b"\r\n");
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&size_line).trim(), 16).unwrap();
            assert!(size > 0, "the stream ended");
            while self.buf.len() < size + 2 {
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).expect("stream read");
                assert!(n > 0, "the stream ended");
                self.buf.extend_from_slice(&chunk[..n]);
            }
            let data: Vec<u8> = self.buf.drain(..size + 2).collect();
            self.body.extend_from_slice(&data[..size]);
        }
    }

    /// The next event that is neither a keepalive nor the snapshot mark (noted).
    fn next_event(&mut self) -> Value {
        loop {
            let v = self.next();
            if v["event"] == "synced" {
                assert!(!self.synced, "one snapshot mark per stream");
                self.synced = true;
                continue;
            }
            if v["event"] != "keepalive" {
                return v;
            }
        }
    }
}

#[test]
fn the_routing_stream_pushes_every_table_change() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Pd::start(dir.path(), free_port(), "check_interval_ms = 100\n");
    for node in 1..=3 {
        pd.send(
            "POST",
            "/storage/heartbeat",
            Some(&heartbeat(node, 0, json!([]))),
            None,
        );
    }
    let (code, _) = pd.call(
        "POST",
        "/cluster/namespace/create?namespace=users&partition_num=2&replicator=3",
        None,
    );
    assert_eq!(code, 200);
    let (code, body) = pd.call("GET", "/routing/watch?namespace=a-b", None);
    assert_eq!(code, 400, "{body}");

    let (code, mut watch) = LineStream::open(pd.port, "/routing/watch?namespace=users");
    assert_eq!(code, 200);
    let first = watch.next_event();
    assert_eq!(first["event"], "table", "{first}");
    assert_eq!(first["namespace"], "users");
    assert_eq!(first["table"]["partition_num"], 2);
    let epoch = first["table"]["epoch"].as_u64().unwrap();

    // Node 2 reports leading users-1: the stream carries the new table by itself.
    let group1 = (1u64 << 32) | 1;
    let catalog_epoch = pd.call("GET", "/catalog", None).1["epoch"]
        .as_u64()
        .unwrap();
    let report = json!([{
        "partition": "users-1", "group": group1, "role": "leader", "term": 3, "leader": 2,
        "commit": 6, "applied": 6, "voters": [1, 2, 3], "learners": [], "lag": [], "keys": 0
    }]);
    pd.send(
        "POST",
        "/storage/heartbeat",
        Some(&heartbeat(2, catalog_epoch, report)),
        None,
    );
    let next = watch.next_event();
    assert_eq!(next["event"], "table", "{next}");
    assert!(next["table"]["epoch"].as_u64().unwrap() > epoch, "{next}");
    assert_eq!(next["table"]["partitions"]["1"]["leader"]["node_id"], "2");
    let (_, metrics) = pd.call("GET", "/metrics", None);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("zankv_pd_routing_watchers 1"),
        "{metrics}"
    );

    // Deleting the namespace ends its table.
    let (code, _) = pd.call("DELETE", "/cluster/namespace/delete?namespace=users", None);
    assert_eq!(code, 200);
    let gone = watch.next_event();
    assert_eq!(gone, json!({"event": "deleted", "namespace": "users"}));
    assert!(
        watch.synced,
        "the stream marked the end of its first tables"
    );
}

/// Runs the `zankv` command against `ports` (the first one is tried first).
fn zankv(ports: &[u16], args: &[&str]) -> (bool, String, String) {
    let pd: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new(env!("CARGO_BIN_EXE_zankv"))
        .arg("--pd")
        .arg(pd.join(","))
        .args(args)
        .env_remove("ZANKV_ADMIN_TOKEN")
        .output()
        .expect("run zankv");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_zankv_command_prints_pd_s_answers_as_tables() {
    let dir = tempfile::tempdir().unwrap();
    let pd = Pd::start(dir.path(), free_port(), "admin_token = \"s3cret\"\n");
    for node in 1..=2 {
        pd.send(
            "POST",
            "/storage/heartbeat",
            Some(&heartbeat(node, 0, json!([]))),
            Some("s3cret"),
        );
    }
    // A member that is not there is skipped; the next one answers.
    let ports = [free_port(), pd.port];
    let (ok, out, err) = zankv(&ports, &["nodes"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID  ADDRESS"), "{out}");
    assert!(lines[1].starts_with("1   127.0.0.1  20001"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");

    // Changes need the token.
    let (ok, _, err) = zankv(
        &ports,
        &[
            "namespace",
            "create",
            "users",
            "--partitions",
            "2",
            "--replicas",
            "2",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("401") && err.contains("Authorization"),
        "{err}"
    );
    let with = |args: &[&str]| {
        let mut all = vec!["--token", "s3cret"];
        all.extend_from_slice(args);
        zankv(&ports, &all)
    };
    let (ok, out, err) = with(&[
        "namespace",
        "create",
        "users",
        "--partitions",
        "2",
        "--replicas",
        "2",
        "--hash-tags",
        "true",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        "namespace users created: 2 partitions x 2 replicas"
    );
    let (ok, out, _) = with(&["namespace", "list"]);
    assert!(ok);
    assert!(
        out.lines()
            .nth(1)
            .unwrap()
            .starts_with("users  1   2           2         wait_compact  yes"),
        "{out}"
    );
    let (ok, out, _) = with(&["partitions", "users"]);
    assert!(ok);
    assert!(out.contains("PARTITION  LEADER  REPLICAS"), "{out}");
    assert!(out.contains("0          (none)  1,2"), "{out}");
    let (ok, out, _) = with(&["stats"]);
    assert!(ok && out.contains("namespaces          1"), "{out}");
    let (ok, out, _) = with(&["operators"]);
    assert!(ok && out.trim() == "(none)", "{out}");
    let (ok, out, _) = with(&["balance", "off"]);
    assert!(ok && out.trim() == "balancing off", "{out}");
    let (ok, out, _) = with(&["upgrade", "begin"]);
    assert!(ok && out.contains("no new operator starts"), "{out}");
    let (ok, _, _) = with(&["upgrade", "done"]);
    assert!(ok);
    let (ok, out, _) = with(&["namespace", "set-replicas", "users", "1"]);
    assert!(ok && out.contains("1 replicas per partition"), "{out}");
    let (ok, out, _) = with(&["remove-node", "2"]);
    assert!(ok && out.contains("node removal started"), "{out}");
    let (ok, out, _) = with(&["--json", "nodes"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nodes"][1]["removing"], json!(true));
    let (ok, out, _) = with(&["pd"]);
    assert!(ok && out.lines().nth(1).unwrap().ends_with("yes"), "{out}");
    // Errors name the problem and fail.
    let (ok, _, err) = with(&["partitions", "nope"]);
    assert!(
        !ok && err.contains("404") && err.contains("no namespace named nope"),
        "{err}"
    );
    let (ok, _, err) = with(&["namespace", "delete", "users"]);
    assert!(ok, "{err}");
    let (ok, _, err) = zankv(&[free_port()], &["nodes"]);
    assert!(!ok && err.contains("no PD member answered"), "{err}");
}

#[test]
fn members_elect_a_leader_replicate_metadata_and_followers_name_it() {
    let root = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let list: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "[[members]]\nid = {}\nhttp_addr = \"127.0.0.1:{p}\"\n",
                i + 1
            )
        })
        .collect();
    let mut members: Vec<Option<Pd>> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let dir = root.path().join(format!("pd{}", i + 1));
            std::fs::create_dir_all(&dir).unwrap();
            Some(Pd::start(
                &dir,
                *p,
                &format!("member_id = {}\n{list}", i + 1),
            ))
        })
        .collect();
    let leader_of = |members: &[Option<Pd>]| {
        members.iter().position(|m| {
            m.as_ref()
                .is_some_and(|pd| pd.call("GET", "/info", None).1["leader"] == json!(true))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        if let Some(l) = leader_of(&members) {
            break l;
        }
        assert!(Instant::now() < deadline, "no PD leader elected");
        std::thread::sleep(Duration::from_millis(100));
    };
    let follower = members[(leader + 1) % 3].as_ref().unwrap();
    let lead = members[leader].as_ref().unwrap();
    // Followers name the leader for everything but reads of the metadata.
    for (method, path) in [
        (
            "POST",
            "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1",
        ),
        ("DELETE", "/cluster/namespace/delete?namespace=a"),
        (
            "POST",
            "/cluster/namespace/meta/update?namespace=a&replicator=1",
        ),
        ("POST", "/cluster/balance?enable=false"),
        ("POST", "/cluster/node/remove?remove_node=1"),
        (
            "DELETE",
            "/cluster/partition/remove_node?namespace=a&partition=0&node=1",
        ),
        ("POST", "/cluster/upgrade/begin"),
        ("POST", "/stable/nodenum?number=1"),
        ("GET", "/query/a"),
        ("GET", "/datanodes"),
        ("GET", "/cluster/stats"),
        ("GET", "/cluster/operators"),
        ("GET", "/routing/watch"),
    ] {
        let (code, body) = follower.call(method, path, None);
        assert_eq!(code, 400, "{method} {path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("E_FAILED_ON_NOT_LEADER")
                && message.contains(&format!("127.0.0.1:{}", ports[leader])),
            "{method} {path}: {body}"
        );
    }
    let (code, _) = follower.send(
        "POST",
        "/storage/heartbeat",
        Some(&heartbeat(1, 0, json!([]))),
        None,
    );
    assert_eq!(code, 400, "heartbeats go to the leader");
    let (code, body) = follower.call("POST", "/raft/messages?x", None);
    assert_eq!(code, 204, "an empty batch is fine: {body}");
    let (code, body) = follower.send("POST", "/raft/messages", Some(&json!("garbage")), None);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("INVALID_BODY"),
        "{body}"
    );
    let (_, list) = follower.call("GET", "/listpd", None);
    assert_eq!(list["pdleader"]["id"], (leader + 1).to_string(), "{list}");
    // The CLI given only a follower goes on to the leader the follower names.
    let (ok, out, err) = zankv(&[ports[(leader + 1) % 3]], &["stats"]);
    assert!(ok, "{out}{err}");

    // The leader takes changes; every member has them.
    lead.send(
        "POST",
        "/storage/heartbeat",
        Some(&heartbeat(1, 0, json!([]))),
        None,
    );
    let (code, body) = lead.call(
        "POST",
        "/cluster/namespace/create?namespace=a&partition_num=1&replicator=1",
        None,
    );
    assert_eq!(code, 200, "{body}");
    for m in members.iter().flatten() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while m.call("GET", "/namespaces", None).1 != json!({"namespaces": ["a"]}) {
            assert!(Instant::now() < deadline, "a member lacks the namespace");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // The leader dies: another member leads and still has the namespace.
    members[leader] = None;
    let deadline = Instant::now() + Duration::from_secs(15);
    let next = loop {
        if let Some(l) = leader_of(&members) {
            break l;
        }
        assert!(Instant::now() < deadline, "no new leader");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_ne!(next, leader);
    let lead = members[next].as_ref().unwrap();
    assert_eq!(
        lead.call("GET", "/namespaces", None).1,
        json!({"namespaces": ["a"]})
    );
    let (code, body) = lead.call("DELETE", "/cluster/namespace/delete?namespace=a", None);
    assert_eq!(code, 200, "{body}");
}
