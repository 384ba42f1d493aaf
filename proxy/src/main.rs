//! `zankv-proxy`: placeholder binary. The role is specified (see docs/architecture.md) but not
//! built yet; it refuses to start rather than pretend to work.

use std::process::ExitCode;

use clap::Parser;

/// zankv proxy: the Redis endpoint applications connect to; routes each key to its partition's leader. Not implemented yet: this release ships the storage node (zankv-storage) only.
#[derive(Parser, Debug)]
#[command(name = "zankv-proxy", version)]
struct Args {}

fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("zankv-proxy: not implemented yet; run zankv-storage for a standalone node");
    ExitCode::from(2)
}
