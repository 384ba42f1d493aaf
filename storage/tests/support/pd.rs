//! A `zankv-pd` process on a free loopback port, for tests of PD-managed storage nodes.
//!
//! The binary is the one cargo built beside `zankv-storage` (`cargo test --workspace`
//! builds both). The process is killed when its handle drops.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{file_tail, free_port};

/// A running PD.
pub struct PdProcess {
    child: Option<Child>,
    /// Its HTTP port.
    pub port: u16,
    dir: PathBuf,
    extra_toml: String,
}

impl Drop for PdProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn pd_bin() -> PathBuf {
    super::workspace_bin("zankv-pd")
}

impl PdProcess {
    /// Starts PD with its data under `dir`; `extra_toml` is appended to its config.
    pub fn must_start(dir: &Path, extra_toml: &str) -> PdProcess {
        let mut pd = PdProcess::prepared(dir, free_port(), extra_toml);
        pd.start();
        pd
    }

    fn prepared(dir: &Path, port: u16, extra_toml: &str) -> PdProcess {
        PdProcess {
            child: None,
            port,
            dir: dir.to_path_buf(),
            extra_toml: extra_toml.to_string(),
        }
    }

    /// Starts `n` PD members under `root` (`pd1`, `pd2`, ...) that replicate their
    /// metadata by raft; `extra_toml` is appended to every member's config (before the
    /// member list).
    pub fn must_start_group(root: &Path, n: usize, extra_toml: &str) -> Vec<PdProcess> {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
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
        let mut group: Vec<PdProcess> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let toml = format!("member_id = {}\n{extra_toml}{list}", i + 1);
                PdProcess::prepared(&root.join(format!("pd{}", i + 1)), *p, &toml)
            })
            .collect();
        for pd in &mut group {
            pd.start();
        }
        group
    }

    /// Whether it runs.
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }

    /// Starts it again (same port and data) after [`PdProcess::kill9`].
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "PD is already running");
        std::fs::create_dir_all(&self.dir).expect("create PD dir");
        let conf = self.dir.join("pd.toml");
        std::fs::write(
            &conf,
            format!(
                "data_dir = \"{}\"\nhttp_addr = \"127.0.0.1:{}\"\n{}",
                self.dir.join("data").display(),
                self.port,
                self.extra_toml
            ),
        )
        .expect("write PD config");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pd.log"))
            .expect("open PD log");
        let child = Command::new(pd_bin())
            .arg("--config")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("start zankv-pd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.try_call("GET", "/ping").is_err() {
            assert!(
                Instant::now() < deadline,
                "zankv-pd did not start:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL (a no-op if it is not running).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The end of its log.
    pub fn log_tail(&self) -> String {
        file_tail(&self.dir.join("pd.log"), 4000)
    }

    /// One call: status and JSON body (`Value::Null` if the body is not JSON).
    pub fn try_call(&self, method: &str, path: &str) -> Result<(u16, Value), String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut response = String::new();
        s.read_to_string(&mut response).map_err(|e| e.to_string())?;
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no status code in {response:?}"))?;
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// Like [`PdProcess::try_call`]; panics if the call fails.
    pub fn call(&self, method: &str, path: &str) -> (u16, Value) {
        self.try_call(method, path)
            .unwrap_or_else(|e| panic!("{method} {path} on PD: {e}\n{}", self.log_tail()))
    }

    /// Polls `GET path` until `done` holds for its answer, or panics after `timeout`.
    pub fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            if let Ok((200, v)) = self.try_call("GET", path) {
                if done(&v) {
                    return v;
                }
                last = v;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PD did not show {what} within {timeout:?}; last {path}: {last}");
    }
}
