#!/usr/bin/env bash
# The control-plane figures of the benchmark report, each from its crate's own benchmark:
#   client_credentials tokens/s   cargo bench -p authz-svc --bench token   (criterion, /token handler)
#   credential fetch latency      cargo bench -p vault-svc --bench fetch   (p50/p99 of 20,000 fetches)
#   refresh storm                 cargo bench -p vault-svc --bench refresh_storm (10,000 refreshes due in
#                                 one minute; about 3 minutes: the credentials' lifetimes are real)
#   policy decision cost          cargo bench -p policy --bench decision   (p50/p99 of single decisions)
#   audit ingest events/s         bash audit-svc/benches/report.sh         (its markdown table, verbatim)
#
#   bash bench/components.sh OUT.json [--quick]
#
# --quick shortens criterion's warm-up and measurement (1 s + 2 s) and the audit sink-lag run,
# and skips the refresh storm (its minute of due times cannot be shortened).
# PostgreSQL rows need DATABASE_URL; without it those rows say "skipped".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${1:?usage: bash bench/components.sh OUT.json [--quick]}
QUICK=${2:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse-target}
WARM=2; MEASURE=8
if [ "$QUICK" = --quick ]; then WARM=1; MEASURE=2; export SINK_LAG_SECONDS=3 MEASUREMENT_SECONDS=2; fi
WORK=$(mktemp -d /tmp/gatehouse-components.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
say() { printf '==> %s\n' "$*" >&2; }
CRITERION=(-- --noplot --warm-up-time "$WARM" --measurement-time "$MEASURE")

say "client_credentials tokens/s (authz-svc --bench token)"
cargo bench -p authz-svc --bench token "${CRITERION[@]}" client_credentials >&2
say "credential fetch latency (vault-svc --bench fetch)"
cargo bench -p vault-svc --bench fetch "${CRITERION[@]}" 2> >(tee "$WORK/fetch.err" >&2) >&2
if [ "$QUICK" != --quick ]; then
  say "refresh storm (vault-svc --bench refresh_storm)"
  cargo bench -p vault-svc --bench refresh_storm 2> >(tee "$WORK/storm.err" >&2) >&2
fi
say "policy decision cost (policy --bench decision)"
cargo bench -p policy --bench decision "${CRITERION[@]}" 2> >(tee "$WORK/decision.err" >&2) >&2
say "audit ingest (audit-svc/benches/report.sh)"
bash audit-svc/benches/report.sh > "$WORK/audit.md"

python3 - "$CARGO_TARGET_DIR/criterion" "$WORK" "$OUT" <<'PY'
import json, os, re, sys

criterion, work, out = sys.argv[1:4]

def mean_ns(group, function):
    try:
        with open(os.path.join(criterion, group, function, "new", "estimates.json")) as file:
            return json.load(file)["mean"]["point_estimate"]
    except (OSError, KeyError):
        return None

def read(name):
    try:
        with open(os.path.join(work, name)) as file:
            return file.read()
    except OSError:
        return ""

def per_second(group, function, elements=1):
    ns = mean_ns(group, function)
    return None if ns is None else elements / ns * 1e9

fetch = {}
# Case names have spaces ("sqlite edge client (cache miss)"): match the whole line.
for name, p50, p99 in re.findall(r"^fetch (.+?): p50 (\S+) p99 (\S+) p99\.9", read("fetch.err"), re.M):
    fetch[name] = {"p50": p50, "p99": p99}
storm = {}
for match in re.finditer(
    r"^storm (\S+): (\d+)/(\d+) grants refreshed exactly once, (\d+) more than once, (\d+) never, "
    r"(\d+) after expiry, (\d+) reuse detections; (\d+) refreshes/s while busy \(([\d.]+) s from first to last\), (\d+) in the busiest second; "
    r"lateness behind due time p50 ([\d.]+) ms p99 ([\d.]+) ms max ([\d.]+) ms",
    read("storm.err"), re.M,
):
    keys = ("once", "count", "more", "never", "after_expiry", "reuse", "per_second", "busy_seconds",
            "busiest_second", "late_p50_ms", "late_p99_ms", "late_max_ms")
    storm[match[1]] = dict(zip(keys, (float(value) for value in match.groups()[1:])))
decision = re.search(r"per decision: p50 ([\d.]+) µs, p99 ([\d.]+) µs", read("decision.err"))
result = {
    "tokens_per_second": {
        "sequential": per_second("client_credentials", "sequential"),
        "agent_bundle_sequential": per_second("client_credentials", "agent_bundle_sequential"),
        "concurrent64": per_second("client_credentials", "concurrent64", 64),
    },
    "fetch": fetch,
    "storm": storm,
    "decision_us": {"p50": float(decision[1]), "p99": float(decision[2])} if decision else None,
    "audit_markdown": read("audit.md").strip(),
}
with open(out, "w") as file:
    json.dump(result, file)
PY
say "wrote $OUT"
