#!/usr/bin/env bash
# Syscalls and context switches per message of a server under one-to-one chat load: starts
# `imlog serve`, drives `imlog-bench-load chat` at RATE for 10 s, and counts 5 s of the server's
# syscalls with `perf stat` (Debian's linux-perf; run as root). With -p it records those 5 s with
# `perf record -g` instead and prints the server's CPU by thread and its hottest symbols.
#
#   bench/chat_syscalls.sh [-p] RATE [IMLOG_BIN]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
profile=0
[ "${1:-}" = "-p" ] && { profile=1; shift; }
rate=$1
bin=${2:-$here/build/bin/imlog}
load=${IMLOG_BENCH_LOAD:-$here/build/bin/imlog-bench-load}
dir=$(mktemp -d /tmp/imlog-syscalls.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/bench.yaml" <<YAML
gateway:
  listen: 127.0.0.1:$port
  password_ops_limit: 1
  password_mem_limit: 8KiB
  ws_rate: 1000000
  ws_burst: 1000000
log: {level: warn}
YAML
"$bin" serve --config "$dir/bench.yaml" --data-dir "$dir/data" >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
"$load" chat --port "$port" --server-pid "$pid" --clients 1000 --rate "$rate" --seconds 8 --warmup 2 >"$dir/result" &
driver=$!
sleep 5
if [ "$profile" = 1 ]; then
  perf record -q -g -o "$dir/perf.data" -p "$pid" -- sleep 5 2>/dev/null
  echo "--- server CPU by thread"
  perf report -i "$dir/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -12
  echo "--- hottest symbols (self)"
  perf report -i "$dir/perf.data" --no-children --sort sym --stdio -g none ${IMLOG_PERF_COMM:+--comm "$IMLOG_PERF_COMM"} 2>/dev/null | grep -E "^ +[0-9]" | cut -c1-160 | head -40
  wait "$driver"
  grep RESULT "$dir/result" | cut -c1-240
  exit 0
fi
perf stat -e context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg \
  -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_fdatasync,syscalls:sys_enter_write -p "$pid" -- sleep 5 2>&1 |
  awk -v r="$rate" '/switches|syscalls/ {printf "%-36s %10d  %.2f per message\n", $2, $1, $1 / (5 * r)}'
wait "$driver"
grep RESULT "$dir/result" | cut -c1-240
