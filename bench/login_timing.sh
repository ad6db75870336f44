#!/usr/bin/env bash
# Login timing (issue 12): does an unknown username answer in the time of a known one with a
# wrong password? Starts `imlog serve` on a temp dir with the default Argon2id cost (libsodium's
# interactive limits: 64 MiB, 2 passes) and a login throttle too loose to refuse anything here,
# registers one user, then times ROUNDS logins of each kind with curl, interleaved (unknown,
# known, unknown, ...) so that drift in the machine's load hits both alike. Prints each kind's
# median, min and max in ms and one RESULT {json} line. Stops the server it started.
#
#   bench/login_timing.sh [ROUNDS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
bin=${IMLOG_BUILD_DIR:-build}/bin

work=$(mktemp -d /tmp/imlog-bench-login.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=
for _ in $(seq 1 200); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || { echo "login_timing: no free port" >&2; exit 1; }

cat >"$work/imlog.yaml" <<YAML
log: {level: warn}
gateway:
  login_throttle: {account_address_failures: 100000, address_failures: 100000, account_failures: 100000}
YAML
"$bin/imlog" serve --config "$work/imlog.yaml" --data-dir "$work/data" --listen "127.0.0.1:$port" \
  >"$work/imlog.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$url/readyz" >/dev/null || { echo "login_timing: imlog did not become ready" >&2; tail "$work/imlog.log" >&2; exit 1; }

login() {  # login USERNAME → seconds
  curl -s -o /dev/null -w '%{time_total}' -H 'Content-Type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"not the password\"}" "$url/api/v1/auth/login"
}
known=timing_known
status=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -d "{\"username\":\"$known\",\"password\":\"correct horse\"}" "$url/api/v1/auth/register")
[ "$status" = 201 ] || { echo "login_timing: register answered $status" >&2; exit 1; }
# Not this gateway's own recent registration any more: restart, so the user comes from the read
# model as any user registered earlier does.
kill "$pid"; wait "$pid" || true
"$bin/imlog" serve --config "$work/imlog.yaml" --data-dir "$work/data" --listen "127.0.0.1:$port" \
  >>"$work/imlog.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done

login "warmup_unknown" >/dev/null
login "$known" >/dev/null
: >"$work/unknown"
: >"$work/known"
for i in $(seq 1 "$rounds"); do
  login "nobody_$i" >>"$work/unknown"; echo >>"$work/unknown"
  login "$known" >>"$work/known"; echo >>"$work/known"
done

stats() {  # stats FILE → "median min max" in ms
  sort -n "$1" | awk '{v[NR] = $1 * 1000} END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.1f %.1f %.1f", m, v[1], v[NR] }'
}
read -r um umin umax <<<"$(stats "$work/unknown")"
read -r km kmin kmax <<<"$(stats "$work/known")"
diff=$(awk -v a="$um" -v b="$km" 'BEGIN { printf "%.1f", (a > b ? a - b : b - a) * 100 / b }')
load=$(cut -d' ' -f1-3 /proc/loadavg)
printf '%-28s %10s %10s %10s\n' "login (wrong password)" "median ms" "min ms" "max ms"
printf '%-28s %10s %10s %10s\n' "unknown username" "$um" "$umin" "$umax"
printf '%-28s %10s %10s %10s\n' "known username" "$km" "$kmin" "$kmax"
echo "medians differ by $diff % ($rounds rounds each; load average $load)"
echo "RESULT {\"bench\":\"login_timing\",\"rounds\":$rounds,\"unknown_median_ms\":$um,\"known_median_ms\":$km,\"diff_pct\":$diff,\"loadavg\":\"$load\"}"
