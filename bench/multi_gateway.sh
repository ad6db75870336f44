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
bin=${IMLOG_BUILD_DIR:-build}/bin

work=$(mktemp -d /tmp/imlog-bench-multi.XXXXXX)
pids=()
cleanup() {
  # Newest first (gateways and the core before Kafka, MySQL and Redis); SIGKILL after 10 s.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    local pid=${pids[$i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  return 1
}
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "multi_gateway: $what did not come up within ${secs}s; logs in $work" >&2
  tail -n 20 "$work"/*.log >&2 || true
  return 1
}

mysql_port=$(pick_port)
mkdir -p "$work/mysql"
mariadb-install-db --no-defaults --datadir="$work/mysql" --auth-root-authentication-method=normal \
  --skip-test-db >"$work/mariadb-install.log" 2>&1
mariadbd --no-defaults --datadir="$work/mysql" --socket="$work/mysql/sock" --port="$mysql_port" \
  --bind-address=127.0.0.1 --user=root --skip-log-bin --innodb-buffer-pool-size=256M \
  --max-connections=500 >"$work/mariadb.log" 2>&1 &
pids+=($!)
wait_for 60 "MariaDB" mariadb --no-defaults -h 127.0.0.1 -P "$mysql_port" -u root -e "SELECT 1"
mariadb --no-defaults -h 127.0.0.1 -P "$mysql_port" -u root -e "CREATE DATABASE imlog_bench"

redis_port=$(pick_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
wait_for 20 "Redis" redis-cli -h 127.0.0.1 -p "$redis_port" ping

mkdir -p "$work/kafka"
"$bin/imlog-kafka-mock" --brokers 1 --dir "$work/kafka" >"$work/kafka-mock.log" 2>&1 &
pids+=($!)
wait_for 20 "the Kafka mock" test -s "$work/kafka/control"

cat >"$work/imlog.yaml" <<YAML
log: {level: warn}
event_log:
  backend: kafka
  partitions: 4
  kafka:
    brokers: [$(cat "$work/kafka/bootstrap")]
    session_timeout: 6s
    mock_control: "$(cat "$work/kafka/control")"
mysql: {host: 127.0.0.1, port: $mysql_port, user: root, password: "", database: imlog_bench}
redis: {host: 127.0.0.1, port: $redis_port, key_prefix: "b:"}
sessions: {key_prefix: "b:s:", ttl: 300s}
gateway:
  jwt_secret: "multi-gateway-bench-secret-0123456789"
  password_ops_limit: 1
  password_mem_limit: 8KiB
  read_model_wait: 30s
  command_timeout: 30s
YAML

ids=()
for g in $(seq 1 "$gateways"); do ids+=(--gateway-id "gw$g"); done
"$bin/imlog" init --config "$work/imlog.yaml" "${ids[@]}" >"$work/init.log" 2>&1

"$bin/imlog" serve --config "$work/imlog.yaml" --roles engine,projector,router,tasks \
  --data-dir "$work/core" >"$work/core.log" 2>&1 &
pids+=($!)
gw_pids=() gw_ports=()
for g in $(seq 1 "$gateways"); do
  port=$(pick_port)
  "$bin/imlog" serve --config "$work/imlog.yaml" --roles gateway --gateway-id "gw$g" \
    --listen "127.0.0.1:$port" --data-dir "$work/gw$g" >"$work/gw$g.log" 2>&1 &
  pids+=($!)
  gw_pids+=($!)
  gw_ports+=("$port")
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
