//! `zankv-pd`: the placement driver. See `lib.rs` for its parts and conf/pd.toml for its
//! settings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use zankv_pd::config::PdConfig;

/// zankv placement driver (PD): keeps the cluster's namespaces and storage nodes, places new
/// partitions on the nodes and serves routing tables (GET /query/{namespace}).
///
/// Settings come from --config (a TOML file; see conf/pd.toml for every key), and flags
/// override the file.
#[derive(Parser, Debug)]
#[command(name = "zankv-pd", version)]
struct Args {
    /// TOML configuration file (see conf/pd.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of PD's metadata (default ./zankv-data/pd).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTP API (default 127.0.0.1:18001).
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<SocketAddr>,
    /// Log filter: error, warn, info, debug, trace (default info).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Check the configuration (the file and the flags) and exit: 0 when it is valid, 2
    /// with the reason when not. Nothing is opened or bound.
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match PdConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("zankv-pd: {e}");
                return ExitCode::from(2);
            }
        },
        None => PdConfig::default(),
    };
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(a) = args.http_addr {
        config.http_addr = a;
    }
    if let Some(l) = args.log_level {
        config.log_level = l;
    }
    if let Err(e) = config.validate() {
        eprintln!("zankv-pd: {e}");
        return ExitCode::from(2);
    }
    if args.check_config {
        println!("zankv-pd: the configuration is valid");
        return ExitCode::SUCCESS;
    }
    if let Err(e) = zankv_process::init_logging(&config.log_level) {
        eprintln!("zankv-pd: {e}");
        return ExitCode::from(2);
    }
    match zankv_pd::node::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zankv-pd: {e}");
            ExitCode::from(1)
        }
    }
}
