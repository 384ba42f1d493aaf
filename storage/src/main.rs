//! `zankv-storage`: a zankv storage node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zankv_storage::config::StorageConfig;

/// zankv storage node: serves Redis commands (RESP2/RESP3) on data kept in RocksDB.
///
/// With only --data-dir and --redis-addr it runs standalone: one partition of the "default"
/// namespace, replicated by a raft group of this node alone. A static cluster of several
/// nodes is described in the config file ([[nodes]], [[namespaces]]). Settings come from --config (a TOML file; see conf/storage.toml for
/// every key), and flags override the file.
#[derive(Parser, Debug)]
#[command(name = "zankv-storage", version)]
struct Args {
    /// TOML configuration file (see conf/storage.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for the node's data (default ./zankv-data/storage).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve RESP on (default 127.0.0.1:12381; bind a non-loopback address only
    /// on a trusted network: the storage node has no authentication).
    #[arg(long, value_name = "HOST:PORT")]
    redis_addr: Option<SocketAddr>,
    /// Address of the HTTP endpoint with /ping, /status and /metrics (default: the RESP
    /// host with the port below the RESP port, e.g. 127.0.0.1:12380).
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<SocketAddr>,
    /// Address raft traffic from other storage nodes arrives on (default: the RESP host
    /// with the port above the RESP port, e.g. 127.0.0.1:12382).
    #[arg(long, value_name = "HOST:PORT")]
    raft_addr: Option<SocketAddr>,
    /// This node's id in the cluster (default 1; see [[nodes]] and [[namespaces]] in the
    /// config file for a static multi-node cluster).
    #[arg(long, value_name = "ID")]
    node_id: Option<u64>,
    /// Most simultaneous client connections (default 10000).
    #[arg(long, value_name = "N")]
    max_clients: Option<usize>,
    /// Log filter: error, warn, info, debug, trace or a tracing directive (default info;
    /// RUST_LOG overrides it).
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Check the configuration (the file and the flags) and exit: 0 when it is valid, 2
    /// with the reason when not. Nothing is opened or bound.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match StorageConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("zankv-storage: {e}");
                return ExitCode::from(2);
            }
        },
        None => StorageConfig::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.redis_addr {
        config.redis_addr = a;
    }
    if let Some(a) = args.http_addr {
        config.http_addr = Some(a);
    }
    if let Some(a) = args.raft_addr {
        config.raft_addr = Some(a);
    }
    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    if let Some(n) = args.max_clients {
        config.max_clients = n;
    }
    if let Some(l) = args.log_level {
        config.log_level = l;
    }
    if let Err(e) = config.validate() {
        eprintln!("zankv-storage: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("zankv-storage: the configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = zankv_process::init_logging(&config.log_level) {
        eprintln!("zankv-storage: {e}");
        return ExitCode::from(2);
    }
    match zankv_storage::node::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("zankv-storage: {e}");
            ExitCode::FAILURE
        }
    }
}
