#!/usr/bin/env bash
# The audit benchmark of issue 5 — the one command for all its figures:
#
#   bash audit-svc/benches/report.sh
#
# In one run it measures and prints, as a markdown table:
#   1. events/s durably stored (committed, fsynced) on SQLite and PostgreSQL, in batches of 500:
#      from one stream (one transaction per batch) and from 4 concurrent streams through the log
#      (their batches share group commits) — `cargo bench -p audit-svc --bench append`;
#   2. the latency a tools/call gains at edge when it is audited (event built, encoded and
#      spooled) against the same path with audit off — `cargo bench -p edge-svc --bench audit`;
#      criterion's median over samples of the mean time per call;
#   3. sink lag (commit to a JSONL/OCSF sink accepting the event, fsynced) p50/p99 while events
#      are appended in batches of 500 at up to SINK_LAG_RATE events/s in all, from
#      SINK_LAG_STREAMS concurrent streams (their batches share group commits, as edge replicas'
#      do; one stream alone is bounded by one commit's round trip), for SINK_LAG_SECONDS, on both
#      backends, with the rate actually achieved — `cargo bench -p audit-svc --bench sink_lag`.
#
# PostgreSQL runs need DATABASE_URL (scratch databases are created and dropped); without it the
# PostgreSQL rows say "skipped". Knobs: SINK_LAG_RATE (53000), SINK_LAG_SECONDS (10),
# SINK_LAG_STREAMS (12), MEASUREMENT_SECONDS (8, per criterion benchmark), CARGO_TARGET_DIR.
# About 5 minutes once the bench profile is built.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse-target}
export SINK_LAG_RATE=${SINK_LAG_RATE:-53000} SINK_LAG_SECONDS=${SINK_LAG_SECONDS:-10}
export SINK_LAG_STREAMS=${SINK_LAG_STREAMS:-12} SINK_LAG_BATCH=500
MEASURE=${MEASUREMENT_SECONDS:-8}
CRITERION=$CARGO_TARGET_DIR/criterion
WORK=$(mktemp -d /tmp/gatehouse-audit-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf '==> %s\n' "$*" >&2; }

say "building the bench profile"
cargo bench -p audit-svc --bench append --bench sink_lag --no-run
cargo bench -p edge-svc --bench audit --no-run

say "ingest: events/s durably stored"
cargo bench -p audit-svc --bench append -- --noplot --warm-up-time 2 \
  --measurement-time "$MEASURE" append >&2
say "tools/call at edge: audit on against off"
cargo bench -p edge-svc --bench audit -- --noplot --warm-up-time 2 --measurement-time "$MEASURE" >&2
say "sink lag under load"
SINK_LAG_BACKEND=sqlite cargo bench -p audit-svc --bench sink_lag | tee "$WORK/lag-sqlite" >&2
if [ -n "${DATABASE_URL:-}" ]; then
  SINK_LAG_BACKEND=postgres cargo bench -p audit-svc --bench sink_lag | tee "$WORK/lag-postgres" >&2
fi

python3 - "$CRITERION" "$WORK" <<'EOF'
import json, os, re, sys

criterion, work = sys.argv[1], sys.argv[2]

def estimate(group, function, statistic):
    path = os.path.join(criterion, group, function, "new", "estimates.json")
    try:
        with open(path) as file:
            return json.load(file)[statistic]["point_estimate"]
    except (OSError, KeyError):
        return None

def rate(group, function, events):
    ns = estimate(group, function, "mean")
    return "skipped" if ns is None else f"{events / ns * 1e9:,.0f}"

def lag(backend):
    try:
        with open(os.path.join(work, f"lag-{backend}")) as file:
            text = file.read()
    except OSError:
        return "skipped"
    found = re.search(
        r"= (\d+) events/s achieved, offered (\d+)/s from (\d+) streams.*"
        r"p50 ([\d.]+) ms, p99 ([\d.]+) ms",
        text,
    )
    if not found:
        return "no result"
    return (
        f"p50 {found[4]} ms, p99 {found[5]} ms at {int(found[1]):,} events/s achieved "
        f"({int(found[2]):,}/s offered from {found[3]} streams)"
    )

off = estimate("tools_call_audit", "off", "median")
on = estimate("tools_call_audit", "spooled", "median")
added = "skipped" if off is None or on is None else f"{(on - off) / 1000:.1f} µs (on {on / 1000:.1f} µs, off {off / 1000:.2f} µs)"
print("| figure | SQLite | PostgreSQL | target |")
print("|---|---|---|---|")
print(f"| events/s stored, 1 stream, batches of 500 | {rate('append', 'sqlite', 500)} | {rate('append', 'postgres', 500)} | ≥ 50,000 |")
print(f"| events/s stored, 4 streams, batches of 500 (group commit) | {rate('append_streams', 'sqlite', 2000)} | {rate('append_streams', 'postgres', 2000)} | ≥ 50,000 |")
print(f"| sink lag under load (JSONL, OCSF), {os.environ['SINK_LAG_STREAMS']} streams | {lag('sqlite')} | {lag('postgres')} | p99 < 1 s at ≥ 50,000/s |")
print(f"| added latency of a tools/call at edge, audit on − off (median) | {added} | (same) | ≤ 20 µs p50 |")
EOF
