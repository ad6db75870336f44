#!/usr/bin/env bash
# Syscalls and context switches per message of a server under one-to-one chat load: starts
# `imlog serve`, drives `imlog-bench-load chat` at RATE for 10 s, and counts 5 s of the server's
# syscalls with `perf stat` (Debian's linux-perf; run as root). With -p it records those 5 s with
# `perf record -g` instead and prints the server's CPU by thread and its hottest symbols. With -t
# it counts per thread (by name): CPU microseconds, context switches and syscalls per message, so
# a change that moves work between threads shows where it went.
#
#   bench/chat_syscalls.sh [-p | -t] RATE [IMLOG_BIN]
#
# IMLOG_BENCH_YAML names a file of config lines appended to the server's (e.g. one setting
# `engine: {batch_window: 0ms}`, to compare two settings of one binary).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
profile=0
per_thread=0
[ "${1:-}" = "-p" ] && { profile=1; shift; }
[ "${1:-}" = "-t" ] && { per_thread=1; shift; }
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
[ -n "${IMLOG_BENCH_YAML:-}" ] && cat "$IMLOG_BENCH_YAML" >>"$dir/bench.yaml"
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
if [ "$per_thread" = 1 ]; then
  perf stat --per-thread -x, -e task-clock,context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_sendmsg \
    -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write,syscalls:sys_enter_fdatasync -p "$pid" -- sleep 5 2>"$dir/stat"
  python3 - "$dir/stat" "$rate" <<'PY'
import collections, sys
# perf's lines: thread-tid,value,unit,event,... (task-clock in ms)
per = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 3 and f[1].replace(".", "").isdigit():
        per[f[0].rsplit("-", 1)[0]][f[3].split(":")[-1]] += float(f[1])
messages = float(sys.argv[2]) * 5
events = ["task-clock", "context-switches", "sys_enter_futex", "sys_enter_sendmsg", "sys_enter_epoll_wait",
          "sys_enter_write", "sys_enter_fdatasync"]
scale = {"task-clock": 1000.0}  # ms -> microseconds
print("per message:     CPU-us  switches     futex   sendmsg  epoll_wait     write fdatasync")
total = collections.Counter()
for name, c in sorted(per.items(), key=lambda kv: -kv[1]["task-clock"]):
    total.update(c)
    if c["task-clock"] >= 1:
        print(f"{name:<14}" + "".join(f"{c[e] * scale.get(e, 1) / messages:10.3f}" for e in events))
print(f"{'all threads':<14}" + "".join(f"{total[e] * scale.get(e, 1) / messages:10.3f}" for e in events))
PY
  wait "$driver"
  grep RESULT "$dir/result" | cut -c1-240
  exit 0
fi
perf stat -e context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvmsg \
  -e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_fdatasync,syscalls:sys_enter_write -p "$pid" -- sleep 5 2>&1 |
  awk -v r="$rate" '/switches|syscalls/ {printf "%-36s %10d  %.2f per message\n", $2, $1, $1 / (5 * r)}'
wait "$driver"
grep RESULT "$dir/result" | cut -c1-240
