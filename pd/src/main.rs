//! `zankv-pd`: placeholder binary. The role is specified (see docs/architecture.md) but not
//! built yet; it refuses to start rather than pretend to work.

use std::process::ExitCode;

use clap::Parser;

/// zankv placement driver (PD): cluster metadata, placement and routing. Not implemented yet: this release ships the storage node (zankv-storage) only.
#[derive(Parser, Debug)]
#[command(name = "zankv-pd", version)]
struct Args {}

fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("zankv-pd: not implemented yet; run zankv-storage for a standalone node");
    ExitCode::from(2)
}
