//! `zankv`: the operator's command. Calls PD's HTTP API (the leader, found by trying each
//! `--pd` address in turn) and prints what it answers as readable tables.

mod playground;
mod supervise;
mod table;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::Value;

use table::Table;

/// zankv's operator command: storage nodes, namespaces, partitions and placement, through
/// PD's HTTP API.
#[derive(Parser, Debug)]
#[command(name = "zankv", version)]
struct Args {
    /// PD members' HTTP addresses, comma-separated (the leader answers changes; the others
    /// are tried in turn).
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        default_value = "127.0.0.1:18001",
        value_delimiter = ','
    )]
    pd: Vec<SocketAddr>,
    /// PD's admin token (also read from ZANKV_ADMIN_TOKEN), sent with every call.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ZANKV_ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Print PD's JSON answer instead of a table.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The storage nodes: addresses, liveness, replicas and leaders.
    Nodes,
    /// Drain a storage node: its replicas and leaders move away; PD forgets it once it is
    /// empty and stopped.
    RemoveNode {
        /// Its node id.
        id: u64,
    },
    /// Namespaces: list, create, delete, change the replica count.
    #[command(subcommand)]
    Namespace(NamespaceCommand),
    /// A namespace's partitions: leader and replicas of each.
    Partitions {
        /// The namespace.
        namespace: String,
    },
    /// Cluster health: nodes alive, leaderless and under-replicated partitions, pauses.
    Stats,
    /// Placement operators in progress.
    Operators,
    /// Turn the balancers on or off.
    Balance {
        /// `on` or `off`.
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Pause (begin) or resume (done) new operators around a rolling upgrade.
    Upgrade {
        /// `begin` or `done`.
        #[arg(value_parser = ["begin", "done"])]
        phase: String,
    },
    /// PD's members and which one leads.
    Pd,
    /// Start a local cluster (1 PD, 3 storage nodes, 1 proxy on loopback) and keep it
    /// running until Ctrl-C; `--pd` and `--token` do not apply.
    Playground(playground::PlaygroundArgs),
}

#[derive(Subcommand, Debug)]
enum NamespaceCommand {
    /// List the namespaces.
    List,
    /// Create a namespace.
    Create {
        /// Its name: 1 to 255 characters of [A-Za-z0-9_].
        name: String,
        /// Number of partitions (1..1024).
        #[arg(long)]
        partitions: u32,
        /// Replicas per partition (1..5).
        #[arg(long)]
        replicas: u32,
        /// Redis-style hash tags (`{...}` in a key picks the hashed part): `true` or
        /// `false`. Unset: PD's rule (on for the default namespace, off for the others).
        #[arg(long)]
        hash_tags: Option<bool>,
        /// Let any replica answer reads (`true`), from what it has applied: faster, may
        /// miss the latest writes. Default: only leaders (`false`).
        #[arg(long)]
        stale_reads: Option<bool>,
        /// Placement tags, comma-separated: only nodes with all of them get replicas.
        #[arg(long)]
        tags: Option<String>,
    },
    /// Delete a namespace and its data on every node.
    Delete {
        /// The namespace.
        name: String,
    },
    /// Change a namespace's replica count.
    SetReplicas {
        /// The namespace.
        name: String,
        /// Replicas per partition (1..5).
        replicas: u32,
    },
}

/// Deadline of one call.
const TIMEOUT: Duration = Duration::from_secs(15);

struct Pd {
    members: Vec<SocketAddr>,
    token: Option<String>,
}

impl Pd {
    /// Sends the call to each member until one that can answer it does: a follower's
    /// `E_FAILED_ON_NOT_LEADER` sends it next to the leader it names (if not tried yet),
    /// an unreachable member moves on to the next.
    async fn call(&self, method: &str, path: &str) -> Result<Value, String> {
        let mut errors = Vec::new();
        let mut queue: std::collections::VecDeque<SocketAddr> =
            self.members.iter().copied().collect();
        let mut tried = Vec::new();
        while let Some(addr) = queue.pop_front() {
            if tried.contains(&addr) {
                continue;
            }
            tried.push(addr);
            match zankv_pd_api::client::call(
                addr,
                method,
                path,
                None,
                self.token.as_deref(),
                TIMEOUT,
            )
            .await
            {
                Ok(r) if (200..300).contains(&r.status) => {
                    return Ok(if r.body.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&r.body).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(&r.body).into_owned())
                        })
                    });
                }
                Ok(r) if r.message().contains("E_FAILED_ON_NOT_LEADER") => {
                    let message = r.message();
                    if let Some(leader) = named_leader(&message) {
                        queue.push_front(leader);
                    }
                    errors.push(format!("{addr}: {message}"));
                }
                Ok(r) => {
                    return Err(format!(
                        "PD at {addr} answered {}: {}",
                        r.status,
                        r.message()
                    ))
                }
                Err(e) => errors.push(e),
            }
        }
        Err(format!("no PD member answered: {}", errors.join("; ")))
    }
}

/// The leader's address in a follower's refusal (`... the leader is member N at H:P`).
fn named_leader(message: &str) -> Option<SocketAddr> {
    let (_, after) = message.rsplit_once(" at ")?;
    after.trim().parse().ok()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs one of PD's commands and renders its answer (`json`: as PD's JSON).
async fn run(pd: Pd, command: Command, json: bool) -> Result<String, String> {
    let (value, render): (Value, fn(&Value) -> String) = match command {
        Command::Nodes => (pd.call("GET", "/datanodes").await?, render_nodes),
        Command::RemoveNode { id } => (
            pd.call("POST", &format!("/cluster/node/remove?remove_node={id}"))
                .await?,
            |_| "node removal started: its replicas move away (watch `zankv nodes`)".into(),
        ),
        Command::Namespace(NamespaceCommand::List) => {
            (pd.call("GET", "/catalog").await?, render_namespaces)
        }
        Command::Namespace(NamespaceCommand::Create {
            name,
            partitions,
            replicas,
            hash_tags,
            stale_reads,
            tags,
        }) => {
            let mut path = format!(
                "/cluster/namespace/create?namespace={}&partition_num={partitions}&replicator={replicas}",
                encode(&name)
            );
            if let Some(hash_tags) = hash_tags {
                path.push_str(&format!("&hash_tags={hash_tags}"));
            }
            if let Some(stale_reads) = stale_reads {
                path.push_str(&format!("&stale_reads={stale_reads}"));
            }
            if let Some(tags) = tags {
                path.push_str(&format!("&tags={}", encode(&tags)));
            }
            (pd.call("POST", &path).await?, |v| {
                format!(
                    "namespace {} created: {} partitions x {} replicas",
                    text(&v["name"]),
                    v["partition_num"],
                    v["replicator"]
                )
            })
        }
        Command::Namespace(NamespaceCommand::Delete { name }) => (
            pd.call(
                "DELETE",
                &format!(
                    "/cluster/namespace/delete?namespace={}&partition=**",
                    encode(&name)
                ),
            )
            .await?,
            |v| format!("namespace {} deleted", text(&v["namespace"])),
        ),
        Command::Namespace(NamespaceCommand::SetReplicas { name, replicas }) => (
            pd.call(
                "POST",
                &format!(
                    "/cluster/namespace/meta/update?namespace={}&replicator={replicas}",
                    encode(&name)
                ),
            )
            .await?,
            |v| {
                format!(
                    "namespace {}: {} replicas per partition (partitions change one replica at a time)",
                    text(&v["namespace"]),
                    v["replicator"]
                )
            },
        ),
        Command::Partitions { namespace } => (
            pd.call("GET", &format!("/query/{}", encode(&namespace)))
                .await?,
            render_partitions,
        ),
        Command::Stats => (pd.call("GET", "/cluster/stats").await?, render_stats),
        Command::Operators => (
            pd.call("GET", "/cluster/operators").await?,
            render_operators,
        ),
        Command::Balance { state } => (
            pd.call(
                "POST",
                &format!("/cluster/balance?enable={}", state == "on"),
            )
            .await?,
            |v| {
                format!(
                    "balancing {}",
                    if v["balance"] == true { "on" } else { "off" }
                )
            },
        ),
        Command::Upgrade { phase } => (
            pd.call("POST", &format!("/cluster/upgrade/{phase}"))
                .await?,
            |v| {
                if v["upgrading"] == true {
                    "rolling upgrade: no new operator starts until `zankv upgrade done`".into()
                } else {
                    "rolling upgrade done: scheduling resumes".into()
                }
            },
        ),
        Command::Pd => (pd.call("GET", "/listpd").await?, render_pd),
        Command::Playground(args) => return playground::run(args).await,
    };
    Ok(if json {
        serde_json::to_string_pretty(&value).expect("JSON prints")
    } else {
        render(&value)
    })
}

fn render_nodes(v: &Value) -> String {
    let mut t = Table::new(&[
        "ID", "ADDRESS", "REDIS", "HTTP", "RAFT", "DC", "ALIVE", "REPLICAS", "LEADERS", "STATE",
    ]);
    for n in v["nodes"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&n["node_id"]),
            text(&n["broadcast_address"]),
            text(&n["redis_port"]),
            text(&n["http_port"]),
            text(&n["raft_port"]),
            text(&n["dc_info"]),
            if n["alive"] == true { "yes" } else { "no" }.into(),
            text(&n["replicas"]),
            text(&n["leaders"]),
            if n["removing"] == true {
                "removing"
            } else {
                ""
            }
            .into(),
        ]);
    }
    t.render()
}

fn render_namespaces(v: &Value) -> String {
    let mut t = Table::new(&[
        "NAME",
        "ID",
        "PARTITIONS",
        "REPLICAS",
        "EXPIRATION",
        "HASH_TAGS",
        "TAGS",
    ]);
    for ns in v["namespaces"].as_array().into_iter().flatten() {
        t.row(vec![
            text(&ns["name"]),
            text(&ns["id"]),
            text(&ns["partition_num"]),
            text(&ns["replicator"]),
            text(&ns["expiration_policy"]),
            if ns["hash_tags"] == true { "yes" } else { "no" }.into(),
            text(&ns["tags"]),
        ]);
    }
    t.render()
}

fn render_partitions(v: &Value) -> String {
    let mut t = Table::new(&["PARTITION", "LEADER", "REPLICAS"]);
    let mut rows: Vec<(u64, &Value)> = v["partitions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(p, info)| (p.parse().unwrap_or(0), info))
        .collect();
    rows.sort_by_key(|(p, _)| *p);
    let node = |n: &Value| {
        format!(
            "{}@{}:{}",
            text(&n["node_id"]),
            text(&n["broadcast_address"]),
            text(&n["redis_port"])
        )
    };
    for (p, info) in rows {
        let leader = if info["leader"].is_null() {
            "(none)".to_string()
        } else {
            node(&info["leader"])
        };
        let replicas: Vec<String> = info["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| text(&n["node_id"]))
            .collect();
        t.row(vec![p.to_string(), leader, replicas.join(",")]);
    }
    format!("epoch {}\n{}", v["epoch"], t.render())
}

fn render_stats(v: &Value) -> String {
    let mut t = Table::new(&["", ""]);
    for (name, key) in [
        ("stable", "stable"),
        ("nodes", "nodes"),
        ("alive nodes", "alive_nodes"),
        ("stable node number", "stable_node_num"),
        ("namespaces", "namespaces"),
        ("partitions", "partitions"),
        ("leaderless", "leaderless"),
        ("under-replicated", "under_replicated"),
        ("unavailable", "unavailable"),
        ("operators", "operators"),
        ("paused", "paused"),
    ] {
        t.row(vec![name.to_string(), text(&v[key])]);
    }
    t.render_without_header()
}

fn render_operators(v: &Value) -> String {
    let mut t = Table::new(&["PARTITION", "KIND", "STEP", "WAITING FOR", "REASON"]);
    for op in v["operators"].as_array().into_iter().flatten() {
        let steps = op["steps"].as_array().map_or(0, Vec::len);
        let at = op["at"].as_u64().unwrap_or(0) as usize;
        let step = op["steps"]
            .get(at)
            .map(|s| format!("{}/{} {}", at + 1, steps, text(&s["step"])))
            .unwrap_or_default();
        t.row(vec![
            text(&op["partition"]),
            text(&op["kind"]),
            step,
            text(&op["waiting"]),
            text(&op["reason"]),
        ]);
    }
    t.render()
}

fn render_pd(v: &Value) -> String {
    let mut t = Table::new(&["ID", "HTTP ADDRESS", "LEADER"]);
    let leader = text(&v["pdleader"]["id"]);
    for m in v["pdnodes"].as_array().into_iter().flatten() {
        let id = text(&m["id"]);
        let leads = if id == leader { "yes" } else { "" };
        t.row(vec![id, text(&m["http_address"]), leads.into()]);
    }
    t.render()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zankv: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let pd = Pd {
        members: args.pd,
        token: args.token,
    };
    match runtime.block_on(run(pd, args.command, args.json)) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zankv: {e}");
            ExitCode::from(1)
        }
    }
}
