#!/usr/bin/env bash
# Where a tools/call's cost goes — the floor against the gateway, in one run:
#
#   bash bench/floor.sh
#
# Four paths to the same `mcp-echo` downstream, driven by `mcp-load` in one protocol era (ERA=modern,
# 2026-07-28, stateless; or ERA=legacy, 2025-11-25 sessions with `Mcp-Session-Id`):
#   direct        mcp-load → mcp-echo
#   relay         mcp-load → http-relay → mcp-echo: the HTTP hop alone over edge's HTTP stacks
#                 (axum, pooled reqwest, TCP_NODELAY), no JSON-RPC parsed, nothing recorded
#   edge          mcp-load → edge-svc (no audit, auth: none) → mcp-echo: the data plane alone
#   gatehouse     mcp-load → gatehouse up (audit on, all services in one process) → mcp-echo
# For each: requests/s, p50, added p50 against direct in the same repetition, and CPU per call of
# the process in the middle (utime + stime over the run ÷ calls, warm-up included). Medians over
# REPS repetitions; the order of the paths rotates between repetitions. Prints a Markdown table.
#
# Knobs (environment): REPS=3 REQUESTS=20000 WARMUP=200 MAX_SECONDS=6 CONCURRENCY="1 16" ERA=modern
#   CARGO_TARGET_DIR (default ~/.cache/gatehouse-target). BASELINE_BIN=DIR also measures the
#   `edge-svc` and `gatehouse` binaries in DIR (built from another commit) as `edge@baseline`
#   and `gatehouse@baseline`, in the same run. Everything binds 127.0.0.1; every process it
#   starts is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
REPS=${REPS:-3}; REQUESTS=${REQUESTS:-20000}; WARMUP=${WARMUP:-200}; MAX_SECONDS=${MAX_SECONDS:-6}
CONCURRENCY=${CONCURRENCY:-"1 16"}; ERA=${ERA:-modern}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse-target}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/gatehouse-floor.XXXXXX)
PIDS=()
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

say "building release binaries (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release -q -p gatehouse --bin gatehouse -p edge-svc --bin edge-svc \
  -p e2e --bin mcp-echo --bin mcp-load --bin http-relay

"$BIN/mcp-echo" http --listen 127.0.0.1:0 > "$WORK/echo" 2> "$WORK/echo.err" &
PIDS+=("$!"); ECHO_PID=$!
ECHO_URL=$(wait_line "$WORK/echo" '^http://' 30 "$ECHO_PID")

"$BIN/http-relay" --upstream "$ECHO_URL" > "$WORK/relay" 2> "$WORK/relay.err" &
PIDS+=("$!"); RELAY_PID=$!
RELAY_URL=$(wait_line "$WORK/relay" '^http://' 30 "$RELAY_PID")

cat > "$WORK/gateway.yaml" <<EOF
connectors:
  - name: echo
    http: {url: "$ECHO_URL"}
virtual_servers:
  - name: bench
    auth: none
    connectors:
      - connector: echo
        prefix: ""
EOF
# Starts edge-svc (no audit) and `gatehouse up` from the binaries in $1, tagging them with $2;
# appends their paths to `paths`.
start_gateways() {
  local bin=$1 tag=$2 port pid ready
  port=$(free_port)
  printf 'listen_addr = "127.0.0.1:%s"\ngateway = "%s"\n' "$port" "$WORK/gateway.yaml" > "$WORK/edge$tag.toml"
  "$bin/edge-svc" --config "$WORK/edge$tag.toml" > "$WORK/edge$tag" 2> "$WORK/edge$tag.err" &
  PIDS+=("$!"); pid=$!
  paths+=("edge$tag http://127.0.0.1:$port/v/bench/mcp $pid")
  for ((i = 0; i < 300; i++)); do
    "$BIN/mcp-load" --url "http://127.0.0.1:$port/v/bench/mcp" --era modern --requests 1 --warmup 0 \
      > /dev/null 2>&1 && break
    sleep 0.1
  done
  "$bin/gatehouse" up --config "$WORK/gateway.yaml" --data "$WORK/data$tag" --listen 127.0.0.1:0 \
    > "$WORK/gatehouse$tag" 2> "$WORK/gatehouse$tag.err" &
  PIDS+=("$!"); pid=$!
  ready=$(wait_line "$WORK/gatehouse$tag" '^gatehouse ready at ' 60 "$pid")
  paths+=("gatehouse$tag ${ready#gatehouse ready at }/v/bench/mcp $pid")
}

paths=("direct $ECHO_URL -" "relay $RELAY_URL $RELAY_PID")
start_gateways "$BIN" ""
if [ -n "${BASELINE_BIN:-}" ]; then
  start_gateways "$BASELINE_BIN" "@baseline"
fi

ticks() { [ "$1" = - ] && echo 0 || awk '{print $14 + $15}' "/proc/$1/stat"; }
: > "$WORK/runs.jsonl"
for ((rep = 0; rep < REPS; rep++)); do
  for c in $CONCURRENCY; do
    for ((k = 0; k < ${#paths[@]}; k++)); do
      read -r name url pid <<< "${paths[$(((k + rep) % ${#paths[@]}))]}"
      before=$(ticks "$pid")
      result=$("$BIN/mcp-load" --url "$url" --era "$ERA" --concurrency "$c" --requests "$REQUESTS" \
        --warmup "$WARMUP" --max-seconds "$MAX_SECONDS")
      after=$(ticks "$pid")
      printf '{"path":"%s","rep":%d,"ticks":%d,"hz":%d,"run":%s}\n' \
        "$name" "$rep" "$((after - before))" "$(getconf CLK_TCK)" "$result" >> "$WORK/runs.jsonl"
      say "rep $rep C=$c $name done"
    done
  done
done

python3 - "$WORK/runs.jsonl" "$REPS" "$ERA" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for r in runs:
    by.setdefault((r["run"]["concurrency"], r["path"]), []).append(r)
direct_p50 = {(r["run"]["concurrency"], r["rep"]): r["run"]["p50_us"] for r in runs if r["path"] == "direct"}
med = statistics.median
era = {"modern": "2026-07-28 era", "legacy": "2025-11-25 sessions"}[sys.argv[3]]
print(f"Medians of {sys.argv[2]} repetitions, {era}, `mcp-echo` downstream.\n")
print("| C | path | rps | p50 µs | added p50 µs | CPU µs/call of the middle process | errors |")
print("|---|---|---|---|---|---|---|")
order = ["direct", "relay", "edge", "edge@baseline", "gatehouse", "gatehouse@baseline"]
for (c, path) in sorted(by, key=lambda k: (k[0], order.index(k[1]))):
    rs = by[(c, path)]
    rps = med(r["run"]["rps"] for r in rs)
    p50 = med(r["run"]["p50_us"] for r in rs)
    added = "" if path == "direct" else f"{med(r['run']['p50_us'] - direct_p50[(c, r['rep'])] for r in rs):,.0f}"
    cpu = "" if path == "direct" else f"{med(r['ticks'] / r['hz'] * 1e6 / (r['run']['n_ok'] + r['run']['warmup']) for r in rs):,.1f}"
    errors = sum(r["run"]["n_err"] for r in rs)
    print(f"| {c} | {path} | {rps:,.0f} | {p50:,.0f} | {added} | {cpu} | {errors} |")
EOF
