#!/usr/bin/env bash
# zankv developer entry point. Two commands:
#   ./dev.sh start [--port PORT] [--data-dir DIR]   build and start a local cluster (PD, 3 nodes, proxy)
#   ./dev.sh test                                    run every check and test (what CI runs)
# Both install the system packages they need first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"

cmd="${1:-}"
[ $# -gt 0 ] && shift

case "$cmd" in
  start)
    # A local cluster: 1 PD, 3 storage nodes and a proxy (`zankv playground --help`).
    ./scripts/setup.sh
    cargo build --release --locked --bins
    exec ./target/release/zankv playground "$@"
    ;;
  test)
    ./scripts/setup.sh
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
    cargo test --workspace --locked
    ;;
  *)
    echo "usage: ./dev.sh start [--port PORT] [--data-dir DIR] [--partitions N] [--replicas N] | ./dev.sh test" >&2
    exit 2
    ;;
esac
