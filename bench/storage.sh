#!/usr/bin/env bash
# The storage figures of docs/benchmarks.md ("Growth over 10 M messages, and a retention run"):
# imlog-bench-storage with the MySQL model too, against a MariaDB of its own on a free loopback
# port (as scripts/test starts one), removed on exit with everything else the run made.
#
#   bench/storage.sh [imlog-bench-storage options]
#   bench/storage.sh --messages 10000000 --step 1000000
#
# Needs about 40 GB free under /tmp for 10 M messages (the log, the RocksDB model, InnoDB).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${IMLOG_BUILD_DIR:-$here/build}/bin
work=$(mktemp -d /tmp/imlog-bench-storage.XXXXXX)
mysqld_pid=
cleanup() {
  if [ -n "$mysqld_pid" ]; then
    kill "$mysqld_pid" 2>/dev/null || true
    wait "$mysqld_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=
for _ in $(seq 1 200); do
  p=$((20000 + RANDOM % 20000))
  if port_free "$p"; then port=$p; break; fi
done
[ -n "$port" ] || { echo "storage.sh: no free port" >&2; exit 1; }

mkdir -p "$work/mysql"
mariadb-install-db --no-defaults --datadir="$work/mysql" --auth-root-authentication-method=normal \
  --skip-test-db >"$work/mariadb-install.log" 2>&1
mariadbd --no-defaults --datadir="$work/mysql" --socket="$work/mysql/sock" --port="$port" \
  --bind-address=127.0.0.1 --user=root --skip-log-bin --innodb-buffer-pool-size=1G \
  >"$work/mariadb.log" 2>&1 &
mysqld_pid=$!
for _ in $(seq 1 600); do
  mariadb --no-defaults -h 127.0.0.1 -P "$port" -u root -e "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "storage.sh: load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin/imlog-bench-storage" --dir "$work/data" --mysql-port "$port" --mysql-user root \
  --mysql-database bench_storage "$@" 2>"$work/bench.log" || { tail -n 30 "$work/bench.log" >&2; exit 1; }
echo "storage.sh: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
