#!/usr/bin/env bash
# Gatehouse data-plane benchmark — the one command:
#
#   bash bench/run.sh [--peer | --no-peer] [--quick]
#
# Measures MCP tools/call through the gateway (`gatehouse up`, virtual server `bench`, auth: none,
# one streamable-HTTP connector to `mcp-echo`, no prefix) against the same Rust echo downstream
# called directly, in one run: requests/s, p50/p99 added latency, CPU per call (gateway, echo and
# the load generator itself) and gateway RSS, for C = 1, 16, 64 and both protocol eras (2026-07-28
# stateless, 2025-11-25 sessions); 3 repetitions with medians, direct and gateway order alternating
# between repetitions; at C > 1 also open loop, both offered half of what the gateway carried
# (latency at a load the box carries, without the queue of a box run flat out). Then it runs ContextForge, a peer gateway, the same way with
# ../shared/bench/peer/run.sh (default mode), and writes docs/benchmarks.md with both side by side.
#
#   --peer      always run the peer (installs its venvs under $PEERS with pip when missing)
#   --no-peer   skip the peer
#               default: run the peer when its venvs exist or install within PEER_INSTALL_SECONDS
#   --quick     smoke run: 1 repetition, C = 1 16, 5,000 calls, no peer (still writes the report),
#               short component benchmarks
#   --no-components  skip the control-plane benchmarks (bench/components.sh: tokens/s, credential
#               fetch, policy decision, audit ingest)
#
# Also measured in the same run: RSS idle and with CROWD=1000 concurrent MCP sessions
# (bench/crowd.py), of `gatehouse up` and of a standalone edge-svc (the scale-out deployment's edge,
# recording to a standalone audit-svc), and the control-plane benchmarks of each crate
# (bench/components.sh).
#
# Knobs (environment): REPS=3 REQUESTS=20000 WARMUP=200 MAX_SECONDS=8 CONCURRENCY="1 16 64"
#   ERAS="modern legacy" PEERS=/tmp/peers PEER_REPS=3 PEER_MAX_SECONDS=8 PEER_INSTALL_SECONDS=300
#   CARGO_TARGET_DIR (default ~/.cache/gatehouse-target).
# Everything binds 127.0.0.1 and is bounded in calls and seconds; every process it starts is
# stopped by PID on exit. 27–44 minutes on 2 cores once the release build is cached (the last two
# reports), most of it the component benchmarks and their build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
INVOCATION="bash bench/run.sh${*:+ $*}"
# The box may be shared: the load average at start and end goes into the report.
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)

PEER_MODE=auto
COMPONENTS=full
CROWD=${CROWD:-1000}; CROWD_REQUESTS=${CROWD_REQUESTS:-20000}
REPS=${REPS:-3}; REQUESTS=${REQUESTS:-20000}; WARMUP=${WARMUP:-200}; MAX_SECONDS=${MAX_SECONDS:-8}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}; ERAS=${ERAS:-"modern legacy"}
PEERS=${PEERS:-/tmp/peers}; PEER_REPS=${PEER_REPS:-3}; PEER_MAX_SECONDS=${PEER_MAX_SECONDS:-8}
PEER_INSTALL_SECONDS=${PEER_INSTALL_SECONDS:-300}
PEER_DIR=$(cd "$ROOT/.." && pwd)/shared/bench/peer
for arg in "$@"; do
  case $arg in
    --peer) PEER_MODE=on ;;
    --no-peer) PEER_MODE=off ;;
    --quick) REPS=1; REQUESTS=5000; CONCURRENCY="1 16"; PEER_MODE=off; COMPONENTS=quick; CROWD_REQUESTS=5000 ;;
    --no-components) COMPONENTS=off ;;
    *) echo "usage: bash bench/run.sh [--peer | --no-peer] [--quick] [--no-components]" >&2; exit 64 ;;
  esac
done

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse-target}
BIN=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/gatehouse-bench.XXXXXX)
PIDS=()
source "$ROOT/bench/lib.sh"
trap cleanup EXIT

port_free() { python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null; }

CHECKOUT="\`$(git rev-parse --short HEAD)\`"
[ -n "$(git status --porcelain --untracked-files=no)" ] && CHECKOUT="$CHECKOUT with uncommitted changes"
say "building release gatehouse, mcp-echo, mcp-load (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release -p gatehouse --bin gatehouse
cargo build --release -p e2e --bin mcp-echo --bin mcp-load
cargo build --release -p edge-svc --bin edge-svc -p audit-svc --bin audit-svc

say "starting mcp-echo (scratch: $WORK)"
"$BIN/mcp-echo" http --listen 127.0.0.1:0 > "$WORK/echo.out" 2> "$WORK/echo.out.err" &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
ECHO_URL=$(wait_line "$WORK/echo.out" '^http://127\.0\.0\.1:[0-9]+/mcp' 30 "$ECHO_PID")

cat > "$WORK/gatehouse.yaml" <<EOF
connectors:
  - name: echo
    http: {url: "$ECHO_URL"}
virtual_servers:
  - name: bench
    description: data-plane benchmark
    auth: none
    connectors:
      - connector: echo
        prefix: ""
EOF
say "starting gatehouse up"
"$BIN/gatehouse" up --config "$WORK/gatehouse.yaml" --data "$WORK/data" --listen 127.0.0.1:0 \
  > "$WORK/gatehouse.out" 2> "$WORK/gatehouse.out.err" &
GATEHOUSE_PID=$!; PIDS+=("$GATEHOUSE_PID")
READY=$(wait_line "$WORK/gatehouse.out" '^gatehouse ready at http://127\.0\.0\.1:[0-9]+' 60 "$GATEHOUSE_PID")
GATEWAY_URL="${READY#gatehouse ready at }/v/bench/mcp"
say "direct $ECHO_URL (pid $ECHO_PID); gateway $GATEWAY_URL (pid $GATEHOUSE_PID)"

for era in $ERAS; do
  for url in "$ECHO_URL" "$GATEWAY_URL"; do
    check=$("$BIN/mcp-load" --url "$url" --era "$era" --concurrency 2 --requests 20 --warmup 0 --max-seconds 10)
    if ! python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(r["n_err"] > 0 or r["n_ok"] != 20)' "$check"; then
      echo "sanity check failed for $url ($era era): $check" >&2; exit 1
    fi
  done
done

say "measuring: reps=$REPS C=[$CONCURRENCY] eras=[$ERAS] requests=$REQUESTS warmup=$WARMUP max=${MAX_SECONDS}s"
# shellcheck disable=SC2086 # word splitting of the lists is intended
python3 bench/measure.py --load "$BIN/mcp-load" --direct "$ECHO_URL" --gateway "$GATEWAY_URL" \
  --gateway-pid "$GATEHOUSE_PID" --echo-pid "$ECHO_PID" --out "$WORK/ours.jsonl" --reps "$REPS" \
  --concurrency $CONCURRENCY --eras $ERAS --requests "$REQUESTS" --warmup "$WARMUP" --max-seconds "$MAX_SECONDS"
say "holding $CROWD concurrent sessions on gatehouse up (its RSS)"
python3 bench/crowd.py --load "$BIN/mcp-load" --url "$GATEWAY_URL" --pid "$GATEHOUSE_PID" \
  --clients "$CROWD" --requests "$CROWD_REQUESTS" > "$WORK/crowd.json" || say "crowd run failed"

cleanup; PIDS=()

listening() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$1" 2>/dev/null; }
wait_port() { # port, pid
  local i
  for ((i = 0; i < 300; i++)); do listening "$1" && return 0; kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  echo "nothing listens on port $1" >&2; return 1
}
standalone_edge() { # tag, crowd.py flags: the scale-out deployment's edge, recording to its own audit-svc
  # CONNECTOR_EXTRA: more of the connector's `http` settings (YAML flow), e.g. ", http2: true"
  local tag="$1" audit_port edge_port check echo_url
  shift
  "$BIN/mcp-echo" http --listen 127.0.0.1:0 > "$WORK/echo-$tag.out" 2> "$WORK/echo-$tag.out.err" &
  PIDS+=("$!")
  echo_url=$(wait_line "$WORK/echo-$tag.out" '^http://127\.0\.0\.1:[0-9]+/mcp' 30 "$!") || return 1
  sed "s|url: \".*\"|url: \"$echo_url\"${CONNECTOR_EXTRA:-}|" "$WORK/gatehouse.yaml" > "$WORK/$tag-gateway.yaml"
  audit_port=$(free_port); edge_port=$(free_port)
  env GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR="127.0.0.1:$audit_port" GATEHOUSE_AUDIT__DATA_DIR="$WORK/audit-$tag" \
    GATEHOUSE_AUDIT__CALLERS__EDGE_TOKEN=bench-edge-audit-token-0123456789abcdef \
    "$BIN/audit-svc" > "$WORK/audit-$tag.out" 2> "$WORK/audit-$tag.out.err" &
  PIDS+=("$!"); wait_port "$audit_port" "$!" || return 1
  cat > "$WORK/$tag.toml" <<EDGE
listen_addr = "127.0.0.1:$edge_port"
gateway = "$WORK/$tag-gateway.yaml"
[audit]
endpoint = "http://127.0.0.1:$audit_port"
spool_dir = "$WORK/spool-$tag"
token = "bench-edge-audit-token-0123456789abcdef"
EDGE
  "$BIN/edge-svc" --config "$WORK/$tag.toml" > "$WORK/$tag.out" 2> "$WORK/$tag.out.err" &
  EDGE_PID=$!; PIDS+=("$EDGE_PID"); wait_port "$edge_port" "$EDGE_PID" || return 1
  check=$("$BIN/mcp-load" --url "http://127.0.0.1:$edge_port/v/bench/mcp" --era legacy --concurrency 2 --requests 20 --warmup 0 --max-seconds 10)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(r["n_err"] > 0 or r["n_ok"] != 20)' "$check" \
    || { echo "standalone edge sanity check failed: $check" >&2; return 1; }
  say "holding $CROWD concurrent sessions on a standalone edge-svc (pid $EDGE_PID) $*"
  python3 bench/crowd.py --load "$BIN/mcp-load" --url "http://127.0.0.1:$edge_port/v/bench/mcp" --pid "$EDGE_PID" \
    --clients "$CROWD" --requests "$CROWD_REQUESTS" "$@" > "$WORK/crowd-$tag.json"
}
standalone_edge edge || say "standalone edge run failed"
cleanup; PIDS=()
# The same with clients that behave as SDK clients do: they list the tools first and hold the
# session's GET stream open (the lane answers the listing and serves the stream).
standalone_edge edge-listing --list-tools --get-stream || say "standalone edge run (SDK-like clients) failed"
cleanup; PIDS=()
# The first crowd again with the connector on HTTP/2 (`http2: true`, h2c to the echo): the direct
# line's calls share one connection instead of holding one each.
CONNECTOR_EXTRA=", http2: true" standalone_edge edge-h2 || say "standalone edge run (HTTP/2 downstream) failed"
cleanup; PIDS=()

PEER_NOTE=""
peer_ready() { [ -x "$PEERS/cf/bin/mcpgateway" ] && [ -x "$PEERS/bench/bin/python" ]; }
install_peer() {
  say "installing the peer venvs under $PEERS (bounded to ${PEER_INSTALL_SECONDS}s)"
  mkdir -p "$PEERS"
  { python3 -m venv "$PEERS/cf" && timeout "$PEER_INSTALL_SECONDS" "$PEERS/cf/bin/pip" install -q mcp-contextforge-gateway \
    && python3 -m venv "$PEERS/bench" && timeout "$PEER_INSTALL_SECONDS" "$PEERS/bench/bin/pip" install -q 'mcp<2' aiohttp argon2-cffi
  } > "$WORK/peer-install.log" 2>&1
}
run_peer() {
  if [ ! -x "$PEER_DIR/run.sh" ]; then PEER_NOTE="the peer scripts are not at $PEER_DIR"; return; fi
  if ! peer_ready && ! install_peer; then PEER_NOTE="installing its venvs failed (see $WORK/peer-install.log)"; return; fi
  if ! port_free 9100 || ! port_free 4444; then PEER_NOTE="its fixed ports 9100/4444 were busy"; return; fi
  local version
  version=$("$PEERS/cf/bin/pip" show mcp-contextforge-gateway 2>/dev/null | sed -n 's/^Version: //p')
  say "running ContextForge $version via $PEER_DIR/run.sh default $PEER_REPS (C = 1 16)"
  if env PEERS="$PEERS" OUT="$WORK/peer-default.jsonl" N=2000 MAXS="$PEER_MAX_SECONDS" CS="1 16" \
      timeout 900 bash "$PEER_DIR/run.sh" default "$PEER_REPS" > "$WORK/peer.log" 2>&1; then
    PEER_NOTE="mcp-contextforge-gateway $version; $PEER_REPS reps, up to 2,000 calls or ${PEER_MAX_SECONDS}s per run"
  else
    PEER_NOTE="its run failed (see $WORK/peer.log)"; rm -f "$WORK/peer-default.jsonl"
  fi
}
case $PEER_MODE in
  on) run_peer ;;
  auto) if peer_ready || [ -d "$PEER_DIR" ]; then run_peer; else PEER_NOTE="no peer venvs and no peer scripts"; fi ;;
  off) PEER_NOTE="skipped (--no-peer or --quick)" ;;
esac
[ -n "$PEER_NOTE" ] && say "peer: $PEER_NOTE"

case $COMPONENTS in
  full) bash bench/components.sh "$WORK/components.json" || say "component benchmarks failed" ;;
  quick) bash bench/components.sh "$WORK/components.json" --quick || say "component benchmarks failed" ;;
  off) ;;
esac

PEER_ARGS=()
[ -s "$WORK/peer-default.jsonl" ] && PEER_ARGS=(--peer "$WORK/peer-default.jsonl")
mkdir -p docs
python3 bench/report.py --ours "$WORK/ours.jsonl" "${PEER_ARGS[@]}" \
  --components "$WORK/components.json" --crowd "$WORK/crowd.json" --crowd-edge "$WORK/crowd-edge.json" \
  --crowd-edge-listing "$WORK/crowd-edge-listing.json" --crowd-edge-h2 "$WORK/crowd-edge-h2.json" --peer-note "$PEER_NOTE" \
  --command "$INVOCATION" --seconds "$SECONDS" --out docs/benchmarks.md --notes bench/notes.md \
  --checkout "$CHECKOUT" --load-start "$LOAD_START" \
  --settings "reps=$REPS, C=[$CONCURRENCY], eras=[$ERAS], $REQUESTS measured + $WARMUP warm-up calls per run (max ${MAX_SECONDS}s); ContextForge: $PEER_NOTE"
say "wrote docs/benchmarks.md (raw results in $WORK)"
