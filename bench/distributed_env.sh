# Sourced by the distributed-mode benches (multi_gateway.sh, distributed_chat.sh): a temp dir
# with MariaDB, Redis and the Kafka mock on free loopback ports (as scripts/test starts them), a
# config for them in $work/imlog.yaml, and helpers to start imlog processes. Everything started
# is stopped on exit, newest first. Set `bench_name` before sourcing (for messages).
bin=${IMLOG_BUILD_DIR:-build}/bin
work=$(mktemp -d /tmp/imlog-bench-dist.XXXXXX)
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
  echo "$bench_name: $what did not come up within ${secs}s; logs in $work" >&2
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


# start_core: one process with the engine, projector, router and tasks roles.
start_core() {
  "$bin/imlog" serve --config "$work/imlog.yaml" --roles engine,projector,router,tasks \
    --data-dir "$work/core" >"$work/core.log" 2>&1 &
  pids+=($!)
  core_pid=$!
}

# start_gateway ID: a gateway process; sets gw_pid and gw_port (wait for its /readyz yourself).
start_gateway() {
  gw_port=$(pick_port)
  "$bin/imlog" serve --config "$work/imlog.yaml" --roles gateway --gateway-id "$1" \
    --listen "127.0.0.1:$gw_port" --data-dir "$work/$1" >"$work/$1.log" 2>&1 &
  pids+=($!)
  gw_pid=$!
}
