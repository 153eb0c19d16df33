#!/usr/bin/env bash
# Load test of the reference server on 127.0.0.1 with wrk: the bare route (/health) against
# the same handler behind the whole stack (/ping) and against /me, with a reused token, in
# memory and with Redis; and the floor (benches/floor_server.rs): that handler behind a layer
# adding only the outputs of an admitted request, and behind the plainest implementation of
# the checks (/minimal), against its own bare route. Bounded: each
# run lasts DURATION seconds (default 10), 2 threads, 64 connections, loopback only, ROUNDS
# (default 3) runs per route and store; every process started here is stopped on exit. Each
# line also gives the server's CPU time (user + system) per request, read from /proc.
#
# With Redis, a third run keeps revocation answers for a second (`--revocation-cache 1s`).
# Each store is also measured with LOAD_TOKENS (default 256) callers, one token each, sent in
# turn (a wrk Lua script, for the bare route too).
#
# Usage: [ROUNDS=N] [LOAD_TOKENS=N] scripts/loadtest.sh [DURATION]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10}"
rounds="${ROUNDS:-3}"
LOAD_TOKENS="${LOAD_TOKENS:-256}"
# The server mints at most 10,000.
[ "$LOAD_TOKENS" -le 10000 ] || LOAD_TOKENS=10000

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
  else
    echo "wrk is needed (apt-get install wrk)" >&2; exit 1
  fi
fi
cargo build --release --example server --features axum,tonic,testing,reqwest,redis,introspection -q
floor_bin=$(scripts/bench-bin.sh floor_server)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap 'cleanup; rm -f "$lua"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

lua=$(mktemp)
# Waits (up to 10 s) for a server's "listening on http://ADDR" line in the file OUT; prints ADDR.
listening_on() {
  for _ in $(seq 1 100); do
    grep -q '^listening on' "$1" && break
    sleep 0.1
  done
  sed -n 's/^listening on http:\/\///p' "$1"
}
# Starts the server with extra flags; sets ADDR and TOKEN (the printed reader token), and
# writes a wrk script sending the LOAD_TOKENS callers' tokens in turn to $lua.
start_server() {
  local out; out=$(mktemp)
  DEV_LOAD_TOKENS=$LOAD_TOKENS ./target/release/examples/server --bind 127.0.0.1:0 \
    --rate-limit 1000000000/1s "$@" >"$out" 2>/dev/null &
  pids+=($!)
  SERVER_PID=$!
  ADDR=$(listening_on "$out")
  TOKEN=$(sed -n 's/^READER_TOKEN=//p' "$out")
  [ -n "$ADDR" ] && [ -n "$TOKEN" ] || { echo "server did not start" >&2; exit 1; }
  # Requests are formatted once per wrk thread; each thread starts at its own offset.
  {
    echo 'local tokens = {'
    sed -n 's/^LOAD_TOKEN=\(.*\)$/  "\1",/p' "$out"
    echo '}'
    cat <<'LUA'
local threads, reqs, i = 0, {}, 0
setup = function(thread) thread:set("offset", threads * 101); threads = threads + 1 end
init = function()
  for k, t in ipairs(tokens) do
    reqs[k] = wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. t })
  end
  i = offset or 0
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
LUA
  } >"$lua"
}

# CPU time (user + system, in clock ticks) the process SERVER_PID has used so far.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
ticks_per_second=$(getconf CLK_TCK)

# Prints "requests/s p99 non-2xx server-CPU-µs-per-request" for one wrk run.
run_wrk() {
  local report before after
  before=$(server_ticks)
  report=$(wrk -t2 -c64 -d"${duration}s" --latency "$@")
  after=$(server_ticks)
  local rps p99 requests
  rps=$(echo "$report" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$report" | awk '$1 == "99%" {print $2}')
  requests=$(echo "$report" | awk '/requests in/ {print $1}')
  local errors cpu
  errors=$(echo "$report" | awk '/Non-2xx/ {print $4}')
  cpu=$(python3 -c "print(f'{($after - $before) * 1e6 / $ticks_per_second / max($requests, 1):.2f}')")
  echo "$rps ${p99} ${errors:-0} $cpu"
}

# Prints the run with the median requests/s of its arguments ("rps p99 errors cpu" each).
median() {
  printf '%s\n' "$@" | sort -n -k1,1 | sed -n "$(( ($# + 1) / 2 ))p"
}

report() {
  local label=$1 path=$2 bare=$3 prot=$4
  read -r b_rps b_p99 _ b_cpu <<<"$bare"
  read -r p_rps p_p99 p_err p_cpu <<<"$prot"
  local ratio; ratio=$(python3 -c "print(f'{$p_rps / $b_rps:.2f}')")
  printf '%-8s bare /health: %10s req/s, p99 %8s, %s µs CPU | protected %-5s %10s req/s, p99 %8s, %s µs CPU, non-2xx %s | ratio %s\n' \
    "$label" "$b_rps" "$b_p99" "$b_cpu" "$path:" "$p_rps" "$p_p99" "$p_cpu" "$p_err" "$ratio"
}

# Every request carries the same `Authorization: Bearer` header, so the bare route gets the
# very bytes the protected ones get and the ratio is the cost of the layers alone. /ping runs
# the handler of /health behind the whole stack (auth, lifecycle, rate limit); /me adds a
# handler that builds JSON from the principal. ROUNDS rounds (default 3) alternate the three
# routes, and each route's median run is reported: machine noise drifts over a minute.
measure() {
  local label=$1 auth="Authorization: Bearer $TOKEN"
  local bare=() ping=() me=()
  for _ in $(seq 1 "$rounds"); do
    bare+=("$(run_wrk -H "$auth" "http://$ADDR/health")")
    ping+=("$(run_wrk -H "$auth" "http://$ADDR/ping")")
    me+=("$(run_wrk -H "$auth" "http://$ADDR/me")")
  done
  local b; b=$(median "${bare[@]}")
  report "$label" /ping "$b" "$(median "${ping[@]}")"
  report "$label" /me "$b" "$(median "${me[@]}")"
  # Many callers, each reusing its own token (LOAD_TOKENS of them, sent in turn through the
  # same wrk script to both routes): no two requests in a row share a principal, a cache
  # entry or a limiter cell, as with real clients.
  [ "$LOAD_TOKENS" -gt 0 ] || return 0
  bare=(); ping=()
  for _ in $(seq 1 "$rounds"); do
    bare+=("$(run_wrk -s "$lua" "http://$ADDR/health")")
    ping+=("$(run_wrk -s "$lua" "http://$ADDR/ping")")
  done
  report "$label" "/ping ($LOAD_TOKENS callers)" "$(median "${bare[@]}")" "$(median "${ping[@]}")"
}

# The floor: the same handler behind a layer that checks nothing and only adds the outputs
# every admitted request of the full stack carries (benches/floor_server.rs), against its own
# bare route. What it costs no implementation of the checks can save. Then the same handler
# behind the plainest implementation of the checks (`common::minimal`: what they cost at the
# least, none of the crate's hardening). Every request carries the floor server's own token.
measure_floor() {
  local out; out=$(mktemp)
  "$floor_bin" serve >"$out" 2>/dev/null &
  pids+=($!)
  SERVER_PID=$!
  local addr; addr=$(listening_on "$out")
  [ -n "$addr" ] || { echo "floor server did not start" >&2; exit 1; }
  local token; token=$(sed -n 's/^TOKEN=//p' "$out")
  [ -n "$token" ] || { echo "floor server printed no token" >&2; exit 1; }
  local auth="Authorization: Bearer $token" bare=() floor=() minimal=()
  for _ in $(seq 1 "$rounds"); do
    bare+=("$(run_wrk -H "$auth" "http://$addr/health")")
    floor+=("$(run_wrk -H "$auth" "http://$addr/floor")")
    minimal+=("$(run_wrk -H "$auth" "http://$addr/minimal")")
  done
  local b; b=$(median "${bare[@]}")
  report floor /floor "$b" "$(median "${floor[@]}")"
  report minimal /minimal "$b" "$(median "${minimal[@]}")"
  kill "${pids[-1]}" 2>/dev/null || true
}

start_server
measure memory
measure_floor
cleanup; pids=()

if command -v redis-server >/dev/null 2>&1; then
  port=$(free_port)
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no >/dev/null &
  pids+=($!)
  sleep 0.5
  start_server --redis-url "redis://127.0.0.1:$port"
  measure redis
  # The same, keeping each "not revoked" answer for a second (`--revocation-cache`): one
  # revocation round trip per token per second; the rate-limit script still runs per request.
  kill "${pids[-1]}" 2>/dev/null || true
  start_server --redis-url "redis://127.0.0.1:$port" --revocation-cache 1s
  measure redis-rc
else
  echo "redis-server not found: skipping the Redis run"
fi
