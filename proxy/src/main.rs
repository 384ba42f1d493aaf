//! `zankv-proxy`: the Redis endpoint of a zankv cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zankv_proxy::config::{ProxyConfig, Secret};

/// zankv proxy: point any Redis client here. Routes each key to its partition's leader
/// (as PD's routing stream names it) and merges multi-key commands across partitions.
/// Settings come from --config (a TOML file; see conf/proxy.toml for every key), and flags
/// override the file.
#[derive(Parser, Debug)]
#[command(name = "zankv-proxy", version)]
struct Args {
    /// TOML configuration file (see conf/proxy.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address clients connect to (default 127.0.0.1:12379; bind a non-loopback address
    /// only with requirepass set or on a trusted network).
    #[arg(long, value_name = "HOST:PORT")]
    redis_addr: Option<SocketAddr>,
    /// Address of the HTTP endpoint with /ping, /routing and /metrics (default
    /// 127.0.0.1:12378).
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<SocketAddr>,
    /// PD members' HTTP addresses, comma-separated (default 127.0.0.1:18001).
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    pd: Option<Vec<SocketAddr>>,
    /// Namespace of keys that name no known namespace (default "default").
    #[arg(long, value_name = "NAME")]
    default_namespace: Option<String>,
    /// Password clients must AUTH with (prefer the config file or the environment: a
    /// flag's value is visible to other local users).
    #[arg(
        long,
        env = "ZANKV_REQUIREPASS",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    requirepass: Option<String>,
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
        Some(path) => match ProxyConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("zankv-proxy: {e}");
                return ExitCode::from(2);
            }
        },
        None => ProxyConfig::default(),
    };
    if let Some(a) = args.redis_addr {
        config.redis_addr = a;
    }
    if let Some(a) = args.http_addr {
        config.http_addr = a;
    }
    if let Some(pd) = args.pd {
        config.pd_addrs = pd;
    }
    if let Some(ns) = args.default_namespace {
        config.default_namespace = ns;
    }
    if let Some(p) = args.requirepass.filter(|p| !p.is_empty()) {
        config.requirepass = Some(Secret::new(p));
    }
    if let Some(l) = args.log_level {
        config.log_level = l;
    }
    if let Err(e) = config.validate() {
        eprintln!("zankv-proxy: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("zankv-proxy: the configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = zankv_process::init_logging(&config.log_level) {
        eprintln!("zankv-proxy: {e}");
        return ExitCode::from(2);
    }
    match zankv_proxy::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("zankv-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
