//! `zankv playground`, the README's first command, as a user runs it: it starts PD, three
//! storage nodes and a proxy, the default namespace gets 8 partitions × 3 replicas, Redis
//! clients work through the proxy, SIGTERM stops every process, running it again reuses
//! the data, killing it with SIGKILL still stops its processes, and a taken port or an
//! unusable data directory is refused with a clear message before anything starts. Its
//! banner gives every process's pid: a storage node killed with SIGKILL is reported and
//! restarted on its data while the proxy keeps serving, or left down with `--no-restart`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{free_ports, workspace_bin, Client, Frame};

/// Ports a playground uses, from its proxy port: up to PORT+32.
const PORT_SPAN: u16 = 33;
const UP_DEADLINE: Duration = Duration::from_secs(120);
/// How long a write through the proxy may take to succeed while partitions elect new
/// leaders, or a restarted node to answer (generous: a loaded machine with two cores).
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

fn zankv() -> PathBuf {
    workspace_bin("zankv")
}

/// A running `zankv playground`, SIGKILLed when dropped (its processes then get SIGTERM).
struct Playground {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Playground {
    fn start(dir: &Path, port: Option<u16>) -> Playground {
        Playground::start_with(dir, port, &[])
    }

    /// [`Playground::start`] with more arguments.
    fn start_with(dir: &Path, port: Option<u16>, extra: &[&str]) -> Playground {
        let mut cmd = Command::new(zankv());
        cmd.arg("playground").arg("--data-dir").arg(dir);
        if let Some(port) = port {
            cmd.args(["--port", &port.to_string()]);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start zankv playground");
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Playground {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line of its output containing `text`; the first such line.
    fn must_print(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!(
                    "zankv playground did not print {text:?} within {within:?}:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The pid of process `name` (`storage-2`) in the banner's line
    /// `  pids:     pd 101, storage-1 102, ...`.
    fn must_banner_pid(&mut self, name: &str) -> u32 {
        let line = self.must_print("  pids:     ", Duration::from_secs(5));
        line.split([',', ':'])
            .map(str::trim)
            .find_map(|part| part.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no pid of {name} in the banner's line {line:?}"))
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for it to exit; its exit code.
    fn must_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "zankv playground did not exit within {within:?}:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGKILL to `pid`.
fn kill9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid}");
}

/// Checks that `pid` runs storage node `node` of a playground (`zankv-storage --config
/// .../storage-<node>.toml`), before a test kills it or once it was restarted.
fn must_be_storage_node(pid: u32, node: u16) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("pid {pid} is not running: {e}"));
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        args[0].ends_with("zankv-storage")
            && args
                .iter()
                .any(|a| a.ends_with(&format!("storage-{node}.toml"))),
        "pid {pid} is not storage node {node}: {args:?}"
    );
}

/// Sends `args` to 127.0.0.1:`port` on a fresh connection until the reply is `want`;
/// panics after [`FAILOVER_DEADLINE`] with the last reply or error.
fn must_reply(port: u16, args: &[&str], want: Frame) {
    let within = FAILOVER_DEADLINE;
    let deadline = Instant::now() + within;
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    loop {
        let got = match Client::try_connect(port) {
            Some(mut c) => match c.try_cmd(&args) {
                Some(frame) if frame == want => return,
                Some(frame) => format!("{frame:?}"),
                None => "no reply".to_string(),
            },
            None => "cannot connect".to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{} on port {port} did not answer {want:?} within {within:?}; last: {got}",
            support::show_cmd(&args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every port of the playground at `base` can be bound again (each process it
/// started has exited).
fn must_free_ports(base: u16, within: Duration) {
    let deadline = Instant::now() + within;
    for port in base..base + PORT_SPAN {
        while TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "port {port} is still in use: a process of the playground outlived it"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn the_playground_starts_a_three_replica_cluster_stops_cleanly_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_ports(PORT_SPAN);

    let mut first = Playground::start(&data, Some(port));
    first.must_print("zankv playground is up", UP_DEADLINE);
    first.must_print(&format!("redis-cli -p {port}"), Duration::from_secs(1));
    first.must_print("8 partitions x 3 replicas", Duration::from_secs(1));
    let mut c = Client::connect(port);
    assert_eq!(
        c.cmd_str(&["SET", "greeting", "hello"]),
        Frame::simple("OK")
    );
    let mut mset = vec!["MSET"];
    let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
    for k in &keys {
        mset.extend([k.as_str(), k.as_str()]);
    }
    assert_eq!(c.cmd_str(&mset), Frame::simple("OK"));
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(41));
    // The default namespace follows hash tags: keys sharing a tag take multi-key commands
    // (without tags, some of these pairs would be in two of the 8 partitions: CROSSSLOT).
    for user in 0..6 {
        let (tags, old) = (
            format!("user:{{{user}}}:tags"),
            format!("user:{{{user}}}:old"),
        );
        assert_eq!(c.cmd_str(&["SADD", &tags, "a", "b"]), Frame::Integer(2));
        assert_eq!(
            c.cmd_str(&["SMOVE", &tags, &old, "a"]),
            Frame::Integer(1),
            "{tags}"
        );
        assert_eq!(c.cmd_str(&["DEL", &tags, &old]), Frame::Integer(2));
    }
    // PD placed 8 partitions with 3 replicas each, every one with a leader.
    let query = Command::new(zankv())
        .args(["--pd", &format!("127.0.0.1:{}", port + 2)])
        .args(["--json", "partitions", "default"])
        .output()
        .expect("run zankv partitions");
    let table: serde_json::Value = serde_json::from_slice(&query.stdout).expect("JSON");
    let partitions = table["partitions"].as_object().expect("partitions");
    assert_eq!(partitions.len(), 8, "{table}");
    for p in partitions.values() {
        assert_eq!(p["replicas"].as_array().map(Vec::len), Some(3), "{table}");
        assert!(!p["leader"].is_null(), "{table}");
    }
    drop(c);

    // SIGTERM (as Ctrl-C) stops every process and exits 0.
    first.signal("-TERM");
    assert_eq!(first.must_exit(Duration::from_secs(90)), 0);
    first.must_print("playground stopped", Duration::from_secs(1));
    must_free_ports(port, Duration::from_secs(10));

    // Again on the same directory, without --port: the same cluster, the same data.
    let mut second = Playground::start(&data, None);
    second.must_print("zankv playground is up", UP_DEADLINE);
    let mut c = Client::connect(port);
    assert_eq!(c.cmd_str(&["GET", "greeting"]), Frame::bulk("hello"));
    assert_eq!(c.cmd_str(&["DBSIZE"]), Frame::Integer(41));
    drop(c);

    // Another port for this directory is refused: its nodes are known by their addresses.
    let mut other = Playground::start(&data, Some(port + 100));
    assert_eq!(other.must_exit(Duration::from_secs(30)), 1);
    other.must_print("made with --port", Duration::from_secs(1));

    // Killed without a chance to stop them, it still takes its processes down.
    second.signal("-KILL");
    second.must_exit(Duration::from_secs(10));
    must_free_ports(port, Duration::from_secs(60));
}

#[test]
fn a_taken_port_or_an_unusable_data_directory_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_ports(PORT_SPAN);
    // Something else holds the port of storage node 2's raft traffic.
    let squatter = TcpListener::bind(("127.0.0.1", port + 22)).expect("bind");
    let mut p = Playground::start(&dir.path().join("data"), Some(port));
    assert_eq!(p.must_exit(Duration::from_secs(30)), 1);
    p.must_print(
        &format!(
            "port {} (storage node 2's raft port) on 127.0.0.1 is taken",
            port + 22
        ),
        Duration::from_secs(1),
    );
    drop(squatter);
    // Nothing was started: every other port is still free.
    must_free_ports(port, Duration::from_secs(1));

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let mut p = Playground::start(&file.join("data"), Some(port));
    assert_eq!(p.must_exit(Duration::from_secs(30)), 1);
    p.must_print("is not writable", Duration::from_secs(1));
}

#[test]
fn a_killed_storage_node_is_reported_and_restarted_on_its_data_while_the_proxy_keeps_serving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = free_ports(PORT_SPAN);
    let mut p = Playground::start(&data, Some(port));
    p.must_print("zankv playground is up", UP_DEADLINE);
    p.must_print("kill -9 one to watch failover", Duration::from_secs(5));
    let old = p.must_banner_pid("storage-2");
    must_be_storage_node(old, 2);
    must_reply(port, &["SET", "before", "before"], Frame::simple("OK"));

    kill9(old);
    p.must_print(
        &format!("storage-2 (pid {old}) exited (signal: 9"),
        Duration::from_secs(30),
    );
    p.must_print("logs/storage-2.log):", Duration::from_secs(5));
    // The other two replicas of each partition elect new leaders; writes go on.
    let keys: Vec<String> = (0..20).map(|i| format!("during{i}")).collect();
    for k in &keys {
        must_reply(port, &["SET", k, k], Frame::simple("OK"));
    }

    // It comes back: a new process with the same arguments, answering on its port.
    let line = p.must_print("zankv: restarted storage-2 (pid ", FAILOVER_DEADLINE);
    let new: u32 = line
        .rsplit("(pid ")
        .next()
        .and_then(|rest| rest.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"));
    assert_ne!(new, old);
    must_be_storage_node(new, 2);
    must_reply(port + 20, &["PING"], Frame::simple("PONG"));
    for k in keys.iter().map(String::as_str).chain(["before"]) {
        must_reply(port, &["GET", k], Frame::bulk(k));
    }

    // A process waiting for its restart does not hold up the stop, nor outlive it.
    let one = p.must_banner_pid("storage-1");
    must_be_storage_node(one, 1);
    kill9(one);
    p.must_print(
        &format!("storage-1 (pid {one}) exited"),
        Duration::from_secs(30),
    );
    p.signal("-TERM");
    assert_eq!(p.must_exit(Duration::from_secs(90)), 0);
    must_free_ports(port, Duration::from_secs(10));

    // With --no-restart, a dead node is reported and stays down; the cluster serves on
    // the two others, with the data written before.
    let mut p = Playground::start_with(&data, None, &["--no-restart"]);
    p.must_print("zankv playground is up", UP_DEADLINE);
    p.must_print("--no-restart: a process that dies", Duration::from_secs(5));
    let three = p.must_banner_pid("storage-3");
    must_be_storage_node(three, 3);
    kill9(three);
    p.must_print(
        &format!("storage-3 (pid {three}) exited"),
        Duration::from_secs(30),
    );
    p.must_print(
        "storage-3 stays down (--no-restart)",
        Duration::from_secs(5),
    );
    for i in 0..20 {
        let k = format!("down{i}");
        must_reply(port, &["SET", &k, &k], Frame::simple("OK"));
    }
    must_reply(port, &["GET", "before"], Frame::bulk("before"));
    assert!(
        Client::try_connect(port + 30).is_none(),
        "storage-3 answers on its port despite --no-restart"
    );
    p.signal("-TERM");
    assert_eq!(p.must_exit(Duration::from_secs(90)), 0);
    assert!(
        !p.seen.iter().any(|l| l.contains("restarted storage-3")),
        "{}",
        p.seen.join("\n")
    );
    must_free_ports(port, Duration::from_secs(10));
}
