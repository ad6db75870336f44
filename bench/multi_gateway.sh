#!/usr/bin/env bash
# Idle WebSocket connections across several gateway processes of the distributed mode
# (docs/deploy.md) on this one machine: the issue-8 figure of >= 100,000 connections, which one
# process cannot hold (open files are capped at 20,000 per process here).
#
#   bench/multi_gateway.sh [GATEWAYS=6] [PER_GATEWAY=17000] [PER_USER=50]
#
# Starts MariaDB, Redis and the Kafka mock (as scripts/test does) in a temp dir, `imlog init`, one
# process with the engine, projector, router and tasks roles, GATEWAYS gateway processes, then one
# `imlog-bench-load idle` per gateway (each holding PER_GATEWAY connections, PER_USER per user),
# all at once; prints each generator's RESULT line and the sum. Stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
gateways=${1:-6}
per_gateway=${2:-17000}
per_user=${3:-50}
bench_name=multi_gateway
source bench/distributed_env.sh

ids=()
for g in $(seq 1 "$gateways"); do ids+=(--gateway-id "gw$g"); done
"$bin/imlog" init --config "$work/imlog.yaml" "${ids[@]}" >"$work/init.log" 2>&1

start_core
gw_pids=() gw_ports=()
for g in $(seq 1 "$gateways"); do
  start_gateway "gw$g"
  gw_pids+=("$gw_pid")
  gw_ports+=("$gw_port")
done
for g in $(seq 0 $((gateways - 1))); do
  wait_for 120 "gateway gw$((g + 1))" curl -sf "http://127.0.0.1:${gw_ports[$g]}/readyz"
done
echo "multi_gateway: $gateways gateways ready; $(uptime)"

gen_pids=()
for g in $(seq 0 $((gateways - 1))); do
  "$bin/imlog-bench-load" idle --port "${gw_ports[$g]}" --server-pid "${gw_pids[$g]}" \
    --connections "$per_gateway" --per-user "$per_user" --prefix "g$g" --http-parallel 16 \
    --hold 20 >"$work/gen$g.out" 2>&1 &
  gen_pids+=($!)
done
status=0
for p in "${gen_pids[@]}"; do wait "$p" || status=1; done
grep -h RESULT "$work"/gen*.out
grep -h "failed" "$work"/gen*.out || true
grep -h RESULT "$work"/gen*.out | sed 's/^RESULT //' | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
held = sum(r["open_after_hold"] for r in rows)
kib = [r.get("server_kib_per_conn", 0) for r in rows]
rss = sum(r["server_rss_after_hold_kib"] for r in rows)
print(f"multi_gateway: {len(rows)} gateways, {held} connections held after the hold, "
      f"server KiB per connection {min(kib):.2f}..{max(kib):.2f}, gateway RSS after {rss} KiB in all")
'
echo "multi_gateway: $(uptime)"
exit $status
