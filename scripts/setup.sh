#!/usr/bin/env bash
# Installs the system packages zankv needs to build and test, once, on a fresh Debian machine.
# Idempotent: packages already present are not fetched again. Extra package names given as
# arguments are installed too (benches/report.sh adds etcd-server).
#   librocksdb-dev  RocksDB 7.8 (linked by the storage crate; see docs/build.md)
#   libclang-dev    bindgen, run by librocksdb-sys on rocksdb/c.h
#   redis-server    the reference server for the differential tests
#   redis-tools     redis-cli and redis-benchmark (by hand, and the proxy tests)
#   python3-redis   redis-py, the client library the proxy tests drive
set -euo pipefail
need=()
for pkg in librocksdb-dev libclang-dev redis-server redis-tools python3-redis "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
