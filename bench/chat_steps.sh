#!/usr/bin/env bash
# The one-to-one figures of docs/benchmarks.md ("The one-to-one path"): `imlog-bench-load chat`
# at each fixed offered rate for SECONDS (1,000 clients; a rate of 0 is saturation with 4 unacked
# sends per client), one summary line per step with the load average at its start.
#
#   bench/chat_steps.sh [-b IMLOG_BIN] [-c CONFIG] [-s SECONDS] [-p SUBPROTOCOL] [-q] RATE...
#   bench/chat_steps.sh 2000 5000 10000 12500 15000 17500 0
#   bench/chat_steps.sh -p imlog.v1 2000 10000      (the binary WebSocket form)
#
# IMLOG_BIN defaults to the build's own `imlog`; pass another build's to compare two servers.
# CONFIG is a server config to start it with instead of the bench's own (keep its gateway keys:
# fast password hashing and no WebSocket rate limit, see bench/load/harness.cpp). -q waits before
# each step until the 1-minute load average is under 1 (at most 2 minutes), so that each step
# starts on a quiet machine rather than on the load the previous one left. SUBPROTOCOL is the
# WebSocket form the clients speak: imlog.v1.json (JSON text, the default) or imlog.v1 (binary).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
load=${IMLOG_BENCH_LOAD:-$here/build/bin/imlog-bench-load}
bin=$here/build/bin/imlog
secs=15
config=()
quiet=0
subprotocol=imlog.v1.json
while getopts b:c:s:p:q opt; do
  case $opt in
    b) bin=$OPTARG ;; c) config=(--config "$OPTARG") ;; s) secs=$OPTARG ;; p) subprotocol=$OPTARG ;; q) quiet=1 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
for rate in "$@"; do
  extra=()
  [ "$rate" = 0 ] && extra=(--window 4)
  if [ "$quiet" = 1 ]; then
    for _ in $(seq 60); do awk '{exit !($1 < 1.0)}' /proc/loadavg && break; sleep 2; done
  fi
  at_start=$(cut -d' ' -f1-3 /proc/loadavg)
  line=$("$load" chat --clients 1000 --rate "$rate" --seconds "$secs" --server-bin "$bin" --subprotocol "$subprotocol" "${config[@]}" "${extra[@]}" 2>&1 |
    grep RESULT || echo "RESULT {}")
  python3 - "$rate" "$at_start" "${line#RESULT }" "$subprotocol" <<'PY'
import json, sys
rate, load, d, subprotocol = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
if not d:
    sys.exit(f"rate={rate}: the bench printed no RESULT")
per_1k = d["server_cpu_pct"] / 100 / max(1, d["delivered_per_s"]) * 1000
print(f"{subprotocol} rate={rate} load_at_start=[{load}] sent={d['sent']} delivered={d['delivered']} "
      f"delivered/s={d['delivered_per_s']} p50={d['p50_ms']:.1f} p90={d['p90_ms']:.1f} "
      f"p99={d['p99_ms']:.1f} max={d['max_ms']:.1f} server_cpu={d['server_cpu_pct']}% "
      f"cpu_s_per_1k={per_1k:.3f} overloaded={d.get('refused_overloaded', 0)} "
      f"rate_limited={d.get('refused_rate_limited', 0)} other={d.get('errors_other', 0)} closed={d['closed']}")
PY
done
