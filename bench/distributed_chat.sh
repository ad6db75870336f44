#!/usr/bin/env bash
# One-to-one chat in the distributed mode at small scale (docs/benchmarks.md, "The one-to-one
# path"): commands through im.commands, acks and pushes through im.deliver.<gateway>, on the Kafka
# mock, with MariaDB and Redis, on this one machine.
#
#   bench/distributed_chat.sh [-c CLIENTS=200] [-s SECONDS=15] RATE...
#   bench/distributed_chat.sh 500 1000 2000
#
# Starts the servers (bench/distributed_env.sh), `imlog init`, one process with the engine,
# projector, router and tasks roles and one gateway process, then runs `imlog-bench-load chat`
# against the gateway at each fixed offered rate. Per step it prints the bench's figures and the
# CPU of the gateway, of the core process and of the Kafka mock, each per 1,000 delivered
# messages. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=200
secs=15
while getopts c:s: opt; do
  case $opt in c) clients=$OPTARG ;; s) secs=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
bench_name=distributed_chat
source bench/distributed_env.sh
kafka_pid=${pids[2]}

"$bin/imlog" init --config "$work/imlog.yaml" --gateway-id gw1 >"$work/init.log" 2>&1
start_core
start_gateway gw1
wait_for 120 "gateway gw1" curl -sf "http://127.0.0.1:$gw_port/readyz"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for rate in "$@"; do
  at_start=$(cut -d' ' -f1-3 /proc/loadavg)
  before="$(cpu_ticks "$gw_pid") $(cpu_ticks "$core_pid") $(cpu_ticks "$kafka_pid")"
  line=$("$bin/imlog-bench-load" chat --port "$gw_port" --server-pid "$gw_pid" --clients "$clients" \
    --rate "$rate" --seconds "$secs" 2>&1 | grep RESULT || echo "RESULT {}")
  after="$(cpu_ticks "$gw_pid") $(cpu_ticks "$core_pid") $(cpu_ticks "$kafka_pid")"
  python3 - "$rate" "$at_start" "${line#RESULT }" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import json, sys
rate, load, d = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
if not d:
    sys.exit(f"rate={rate}: the bench printed no RESULT")
before, after, hz = sys.argv[4].split(), sys.argv[5].split(), int(sys.argv[6])
# The ticks span set-up (registrations, logins) as well as the step: an upper bound per message.
delivered = max(1, d["delivered"])
per_1k = [(int(a) - int(b)) / hz / delivered * 1000 for a, b in zip(after, before)]
print(f"rate={rate} clients={d.get('clients', '?')} load_at_start=[{load}] sent={d['sent']} "
      f"delivered={d['delivered']} delivered/s={d['delivered_per_s']} p50={d['p50_ms']:.1f} "
      f"p99={d['p99_ms']:.1f} max={d['max_ms']:.1f} cpu_s_per_1k: gateway={per_1k[0]:.3f} "
      f"core={per_1k[1]:.3f} kafka_mock={per_1k[2]:.3f} overloaded={d.get('refused_overloaded', 0)} "
      f"other={d.get('errors_other', 0)} closed={d['closed']}")
PY
done
echo "distributed_chat: $(uptime)"
