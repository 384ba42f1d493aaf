#!/usr/bin/env bash
# zankv developer entry point. Two commands:
#   ./dev.sh start [--port PORT] [--data-dir DIR]   build and start a local storage node
#   ./dev.sh test                                    run every check and test (what CI runs)
# Both install the system packages they need first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")"

cmd="${1:-}"
[ $# -gt 0 ] && shift

case "$cmd" in
  start)
    port=12381
    data_dir="./zankv-data"
    while [ $# -gt 0 ]; do
      case "$1" in
        --port) port="$2"; shift 2 ;;
        --data-dir) data_dir="$2"; shift 2 ;;
        *) echo "dev.sh start: unknown option $1" >&2; exit 2 ;;
      esac
    done
    ./scripts/setup.sh
    cargo build --release --locked -p zankv-storage
    echo "zankv: storage node on 127.0.0.1:${port}, data in ${data_dir}/storage"
    echo "zankv: metrics at http://127.0.0.1:$((port - 1))/metrics (status: /status)"
    echo "zankv: connect with: redis-cli -p ${port}    stop with: Ctrl-C"
    exec ./target/release/zankv-storage --data-dir "${data_dir}/storage" --redis-addr "127.0.0.1:${port}"
    ;;
  test)
    ./scripts/setup.sh
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
    cargo test --workspace --locked
    ;;
  *)
    echo "usage: ./dev.sh start [--port PORT] [--data-dir DIR] | ./dev.sh test" >&2
    exit 2
    ;;
esac
