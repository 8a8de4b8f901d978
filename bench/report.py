"""Writes docs/benchmarks.md from the JSON lines of bench/measure.py and of the peer bench.

Figures are medians over repetitions; ratios and added latencies are computed per repetition
(gateway run against the direct run of the same repetition) and then their median is taken.

Usage: python3 bench/report.py --ours FILE [--peer FILE] [--peer-note TEXT] --command TEXT
           --seconds N --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
from collections import defaultdict

TARGET_RPS = 10_000
TARGET_ADDED_P50_US = 300
TARGET_CPU_US = 100
TARGET_ADDED_P99_US = 1_500
TARGET_PEER_TIMES = 100


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return f"{min(values):,.0f}–{max(values):,.0f}" if values else "–"


def fmt(value, digits=0, unit=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def command_output(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "unknown"


def machine(checkout: str | None, load_start: str | None) -> list[str]:
    """Returns Markdown bullet lines describing this machine and checkout."""
    model, memory = "unknown", "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    if checkout is None:
        commit = command_output("git", "rev-parse", "--short", "HEAD")
        dirty = command_output("git", "status", "--porcelain", "--untracked-files=no")
        checkout = f"`{commit}`" + (" with uncommitted changes" if dirty else "")
    with open("/proc/loadavg", encoding="utf-8") as loadavg:
        load_end = " ".join(loadavg.read().split()[:3])
    return [
        f"- CPU: {os.cpu_count()} × {model} (`nproc` = {command_output('nproc')})",
        f"- load average (1, 5, 15 min): {load_start or 'not recorded'} at the start, {load_end} at the end"
        " (other builds share the box; compare ratios measured in the same run, not absolute rps)",
        f"- memory: {memory}; kernel: {platform.system()} {platform.release()}",
        f"- toolchain: {command_output('rustc', '-V')}; Python {platform.python_version()}",
        f"- checkout: {checkout}",
    ]


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def pair_by_rep(rows: list[dict]) -> dict[tuple, dict[int, dict[str, dict]]]:
    """Groups runs as {(concurrency, era): {rep: {target: row}}}."""
    grouped: dict[tuple, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        grouped[(row["concurrency"], row["era"])][row["rep"]][row["target"]] = row
    return grouped


def within_mb(mib: float, megabytes: int) -> bool:
    """Says whether a figure in MiB (as /proc reports it) is within a target in MB (10^6 bytes)."""
    return mib * 1024 * 1024 <= megabytes * 1_000_000


def load_json(path: str | None) -> dict | None:
    """Returns the JSON object in `path`, or None when there is no such (non-empty) file."""
    if not path or not os.path.isfile(path) or not os.path.getsize(path):
        return None
    with open(path, encoding="utf-8") as file:
        return json.loads(file.read().strip().splitlines()[-1])


def summarize_ours(rows: list[dict]) -> dict[tuple, dict]:
    """Returns the per-(concurrency, era) medians of our runs."""
    summary = {}
    for key, reps in sorted(pair_by_rep(rows).items()):
        pairs = [r for r in reps.values() if "direct" in r and "gateway" in r]
        gateway = [r["gateway"] for r in pairs]
        direct = [r["direct"] for r in pairs]
        summary[key] = {
            "reps": len(pairs),
            "direct_rps": median(r["rps"] for r in direct),
            "gateway_rps": median(r["rps"] for r in gateway),
            "gateway_rps_spread": spread(r["rps"] for r in gateway),
            "ratio": median(r["gateway"]["rps"] / r["direct"]["rps"] for r in pairs if r["direct"]["rps"]),
            "direct_p50": median(r["p50_us"] for r in direct),
            "gateway_p50": median(r["p50_us"] for r in gateway),
            "direct_p99": median(r["p99_us"] for r in direct),
            "gateway_p99": median(r["p99_us"] for r in gateway),
            "rate": median(r.get("rate") for r in gateway),
            "added_p50": median(r["gateway"]["p50_us"] - r["direct"]["p50_us"] for r in pairs
                                if r["gateway"]["p50_us"] is not None and r["direct"]["p50_us"] is not None),
            "added_p99": median(r["gateway"]["p99_us"] - r["direct"]["p99_us"] for r in pairs
                                if r["gateway"]["p99_us"] is not None and r["direct"]["p99_us"] is not None),
            "gateway_cpu": median(r["gateway_cpu_us_per_call"] for r in gateway),
            "gateway_cpu_spread": spread(r["gateway_cpu_us_per_call"] for r in gateway),
            "catch_up": median(r.get("catch_up_s") for r in gateway),
            "echo_cpu_direct": median(r["echo_cpu_us_per_call"] for r in direct),
            "echo_cpu_gateway": median(r["echo_cpu_us_per_call"] for r in gateway),
            "load_cpu_direct": median(r["load_cpu_us_per_call"] for r in direct),
            "load_cpu_gateway": median(r["load_cpu_us_per_call"] for r in gateway),
            "rss_mib": max((r["gateway_rss_kib"] or 0) for r in gateway) / 1024 if gateway else None,
            "errors": sum(r["n_err"] for r in gateway + direct),
            "calls": sum(r["n_ok"] for r in gateway + direct),
        }
    return summary


def summarize_peer(rows: list[dict]) -> dict[int, dict]:
    """Returns the per-concurrency medians of the ContextForge bench (its own field names)."""
    grouped: dict[int, dict[int, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for row in rows:
        grouped[row["c"]][row["rep"]][row["label"]] = row
    summary = {}
    for concurrency, reps in sorted(grouped.items()):
        pairs = [r for r in reps.values() if "direct" in r and "cf" in r]
        summary[concurrency] = {
            "reps": len(pairs),
            "cf_rps": median(r["cf"]["rps"] for r in pairs),
            "direct_rps": median(r["direct"]["rps"] for r in pairs),
            "ratio": median(r["cf"]["rps"] / r["direct"]["rps"] for r in pairs if r["direct"]["rps"]),
            "added_p50_ms": median(r["cf"]["p50_ms"] - r["direct"]["p50_ms"] for r in pairs),
            "cpu_ms": median(r["cf"]["gw_cpu_ms_per_call"] for r in pairs),
            "errors": sum(r["cf"]["n_err"] + r["direct"]["n_err"] for r in pairs),
        }
    return summary


def our_tables(summary: dict[tuple, dict]) -> list[str]:
    lines = []
    for concurrency in sorted({c for c, _ in summary}):
        lines += [
            f"### C = {concurrency}",
            "",
            "| era | direct rps | gateway rps (spread) | ratio | direct p50 µs | gateway p50 µs "
            "| added p50 µs | added p99 µs | gateway CPU µs/call (spread) | echo CPU µs/call direct / via gw "
            "| mcp-load CPU µs/call direct / via gw | gateway idle again after s | gateway RSS MiB | errors / calls |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (c, era), s in sorted(summary.items()):
            if c != concurrency:
                continue
            lines.append(
                f"| {era} | {fmt(s['direct_rps'])} | {fmt(s['gateway_rps'])} ({s['gateway_rps_spread']}) "
                f"| {fmt(s['ratio'], 2)} | {fmt(s['direct_p50'])} | {fmt(s['gateway_p50'])} "
                f"| {fmt(s['added_p50'])} | {fmt(s['added_p99'])} | {fmt(s['gateway_cpu'], 1)} ({s['gateway_cpu_spread']}) "
                f"| {fmt(s['echo_cpu_direct'], 1)} / {fmt(s['echo_cpu_gateway'], 1)} | {fmt(s['load_cpu_direct'], 1)} / {fmt(s['load_cpu_gateway'], 1)} "
                f"| {fmt(s['catch_up'], 1)} | {fmt(s['rss_mib'], 1)} | {s['errors']} / {s['calls']:,} |"
            )
        lines.append("")
    return lines


def rated_lines(rated: dict[tuple, dict]) -> list[str]:
    """Returns the open-loop table: both targets offered the same rate, half what the gateway carried."""
    if not rated:
        return []
    lines = [
        "### Open loop: at half of what the gateway carries",
        "",
        "At C > 1 every closed-loop pair above is followed by an open-loop pair at the same concurrency: `mcp-load",
        "--rate` offers direct and gateway the same rate, half the gateway's closed-loop rps of that repetition, and",
        "counts each latency from when its call fell due (a call waiting for a free client counts its wait). This is",
        "the gateway's cost at a load the box carries; the closed-loop figures above add the queue of a box run flat",
        "out, where gateway, echo and load generator share two cores. Each open-loop run starts once the gateway is",
        "idle again, so the audit trail's catch-up after the closed-loop run is not in its latencies.",
        "",
        "| C | era | offered rps | direct p50 / p99 µs | gateway p50 / p99 µs | added p50 µs | added p99 µs "
        "| gateway CPU µs/call | gateway idle again after s | errors / calls |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (c, era), s in sorted(rated.items()):
        lines.append(
            f"| {c} | {era} | {fmt(s['rate'])} | {fmt(s['direct_p50'])} / {fmt(s['direct_p99'])} "
            f"| {fmt(s['gateway_p50'])} / {fmt(s['gateway_p99'])} | {fmt(s['added_p50'])} | {fmt(s['added_p99'])} "
            f"| {fmt(s['gateway_cpu'], 1)} | {fmt(s['catch_up'], 1)} | {s['errors']} / {s['calls']:,} |"
        )
    lines.append("")
    return lines


def target_lines(summary: dict[tuple, dict], rated: dict[tuple, dict], peer: dict[int, dict] | None) -> list[str]:
    best = max(summary.items(), key=lambda item: item[1]["gateway_rps"] or 0)
    c1 = {era: s["added_p50"] for (c, era), s in summary.items() if c == 1 and s["added_p50"] is not None}
    worst_cpu = max((s["gateway_cpu"] or 0) for s in summary.values())

    def verdict(ok):
        return "met" if ok else "**not met**"

    def p99_row(label: str, rows: dict[tuple, dict]) -> list[str]:
        added = {key: s["added_p99"] for key, s in rows.items() if s["added_p99"] is not None}
        if not added:
            return []
        measured = ", ".join(f"C = {c} {era} {fmt(v)} µs" for (c, era), v in sorted(added.items()))
        return [f"| ≤ {TARGET_ADDED_P99_US:,} µs added p99, {label} | {measured} "
                f"| {verdict(max(added.values()) <= TARGET_ADDED_P99_US)} |"]

    times = [s["gateway_rps"] / p["cf_rps"] for c, p in (peer or {}).items() if p["cf_rps"]
             for (sc, era), s in summary.items() if sc == c and era == "legacy" and s["gateway_rps"]]
    return [
        "| target (2 cores) | measured | verdict |",
        "|---|---|---|",
        f"| ≥ {TARGET_RPS:,} tools/call per second through the gateway | best {fmt(best[1]['gateway_rps'])} "
        f"(C = {best[0][0]}, {best[0][1]} era) | {verdict((best[1]['gateway_rps'] or 0) >= TARGET_RPS)} |",
        f"| ≤ {TARGET_ADDED_P50_US} µs added p50 (C = 1, no queueing) | "
        f"{', '.join(f'{era} {fmt(v)} µs' for era, v in sorted(c1.items()))} "
        f"| {verdict(bool(c1) and max(c1.values()) <= TARGET_ADDED_P50_US)} |",
        f"| ≤ {TARGET_CPU_US} µs gateway CPU per call | worst {fmt(worst_cpu, 1)} µs "
        f"| {verdict(worst_cpu <= TARGET_CPU_US)} |",
        *p99_row("C = 1 (closed loop, no queueing)", {k: s for k, s in summary.items() if k[0] == 1}),
        *p99_row("C = 16 and 64, open loop at half of what the gateway carries",
                 {k: s for k, s in rated.items() if k[0] > 1}),
        *p99_row("C = 16 and 64, closed loop (the box run flat out: queueing)",
                 {k: s for k, s in summary.items() if k[0] > 1}),
        *([f"| ≥ {TARGET_PEER_TIMES}× ContextForge's throughput (legacy era, same C) | lowest {fmt(min(times))}× "
           f"| {verdict(min(times) >= TARGET_PEER_TIMES)} |"] if times else []),
        "",
    ]


def peer_lines(ours: dict[tuple, dict], peer: dict[int, dict] | None, note: str) -> list[str]:
    if not peer:
        return [f"ContextForge was not measured in this run: {note or 'no peer results'}.", ""]
    lines = [
        "| C | ContextForge rps (its direct) | CF ÷ its direct | CF added p50 ms | CF gateway CPU ms/call "
        "| Gatehouse rps legacy / modern | Gatehouse ÷ direct legacy / modern | Gatehouse added p50 µs legacy / modern "
        "| Gatehouse CPU µs/call legacy / modern | throughput Gatehouse ÷ CF legacy / modern "
        "| CPU per call CF ÷ Gatehouse legacy / modern |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for concurrency, p in sorted(peer.items()):
        eras = [ours.get((concurrency, era)) for era in ("legacy", "modern")]

        def both(pick, digits=0, suffix=""):
            return " / ".join("–" if s is None or pick(s) is None else fmt(pick(s), digits, suffix) for s in eras)

        lines.append(
            f"| {concurrency} | {fmt(p['cf_rps'], 1)} ({fmt(p['direct_rps'], 1)}) | {fmt(p['ratio'], 3)} "
            f"| {fmt(p['added_p50_ms'], 2)} | {fmt(p['cpu_ms'], 2)} | {both(lambda s: s['gateway_rps'])} "
            f"| {both(lambda s: s['ratio'], 2)} | {both(lambda s: s['added_p50'])} "
            f"| {both(lambda s: s['gateway_cpu'], 1)} "
            f"| {both(lambda s: s['gateway_rps'] / p['cf_rps'] if p['cf_rps'] else None, 0, '×')} "
            f"| {both(lambda s: 1000 * p['cpu_ms'] / s['gateway_cpu'] if s['gateway_cpu'] else None, 0, '×')} |"
        )
    errors = sum(p["errors"] for p in peer.values())
    lines += ["", f"ContextForge runs: {sum(p['reps'] for p in peer.values())} paired repetitions, {errors} errors. "
              "Its \"direct\" is the peer bench's own Python FastMCP echo (stateful, SSE replies) driven by its "
              "Python load generator; ContextForge speaks the session (legacy) era, so its closest Gatehouse "
              "figures are the legacy-era rows. The downstreams differ, so compare each gateway to its own direct baseline, "
              "and compare gateway CPU per call, which does not depend on the downstream.", ""]
    return lines


def component_lines(components: dict | None, crowd: dict | None, idle_kib: int | None, crowd_edge: dict | None = None,
                    components_note: str = "", crowd_edge_listing: dict | None = None,
                    crowd_edge_h2: dict | None = None) -> list[str]:
    """Returns the control-plane and footprint section: each figure from its crate's benchmark."""
    lines = ["## Control plane and footprint", ""]
    if crowd:
        idle = (idle_kib or 0) / 1024
        peak = (crowd.get("rss_max_kib") or 0) / 1024
        lines += [
            "| figure | measured | target | verdict |",
            "|---|---|---|---|",
            # `gatehouse up` holds all four services and their SQLite caches: the edge targets size the
            # standalone edge below, so these rows carry no verdict of their own.
            f"| `gatehouse up` RSS idle, all four services (after start-up, before load) | {idle:.1f} MiB | | |",
            f"| `gatehouse up` RSS with {crowd['clients']:,} concurrent sessions (max VmRSS during the run) | {peak:.1f} MiB "
            f"({fmt(crowd.get('n_ok'))} calls ok, {fmt(crowd.get('n_err'))} errors, {fmt(crowd.get('rps'))} rps) | | |",
            f"| `gatehouse up` RSS growth per session | {(peak - idle) * 1024 / max(crowd['clients'], 1):.1f} KiB | | |",
            *standalone_edge_lines(crowd_edge),
            *standalone_edge_lines(crowd_edge_listing, " whose clients listed the tools first and hold a GET stream, as SDK clients do"),
            *standalone_edge_lines(crowd_edge_h2, ", connector on HTTP/2 (`http2: true`)"),
            "",
            f"The {crowd['clients']:,} clients are `mcp-load --era legacy --concurrency {crowd['clients']}`: one MCP session",
            "each (initialize + initialized), all open for the whole run and sharing the call budget; it runs after the",
            "measurements above, so the baseline it grows from is the warmed-up gateway. The first rows are",
            "`gatehouse up`, all four services in one process; the *standalone edge-svc* rows are the edge of the",
            "scale-out deployment on its own (fresh process, glibc allocator, recording to a standalone audit-svc),",
            "the process the edge RSS targets (≤ 30 MB idle, ≤ 100 MB at 1,000 clients) size. Such sessions rest (the express lane answered their `initialize`",
            "and answers their calls; rmcp runs no worker for them). Clients that behave as SDK clients do, listing",
            "the tools first and holding the session's GET stream open (`--list-tools --get-stream`), are measured",
            "in the rows after them: the lane answers a plain `tools/list` and serves the GET stream too, so their",
            "sessions rest as well.",
            "The last rows are the first crowd with the connector set to `http2: true` (h2c to the echo): edge's calls",
            "to it then share one HTTP/2 connection instead of holding an HTTP/1.1 connection each while in flight.",
            "",
        ]
    else:
        lines += ["The 1,000-client run was skipped.", ""]
    if not components:
        return lines + [components_note or "Component benchmarks skipped (`--no-components` or `--quick`).", ""]
    tokens = components.get("tokens_per_second") or {}
    seq, bundle, conc = (tokens.get(k) for k in ("sequential", "agent_bundle_sequential", "concurrent64"))
    lines += [
        "| component | figure | source |",
        "|---|---|---|",
        f"| client_credentials tokens/s, registered client, one at a time | {fmt(seq)} | `cargo bench -p authz-svc --bench token` |",
        f"| client_credentials tokens/s, agent bundle, one at a time | {fmt(bundle)} | (same) |",
        f"| client_credentials tokens/s, 64 concurrent | {fmt(conc)} (×{(conc / seq) if conc and seq else 0:.2f} of sequential) | (same) |",
    ]
    for name, figures in sorted((components.get("fetch") or {}).items()):
        lines.append(f"| credential fetch {name} | p50 {figures['p50']}, p99 {figures['p99']} | `cargo bench -p vault-svc --bench fetch` |")
    for name, storm in sorted((components.get("storm") or {}).items()):
        lines.append(
            f"| refresh storm {name}: {storm['count']:,.0f} credentials due within one minute | "
            f"{storm['per_second']:,.0f} refreshes/s ({storm['busiest_second']:,.0f} in the busiest second); {storm['once']:,.0f} refreshed exactly once, "
            f"{storm['more']:,.0f} more than once, {storm['never']:,.0f} never, {storm['after_expiry']:,.0f} after expiry, "
            f"{storm['reuse']:,.0f} reuse detections; behind due time p99 {storm['late_p99_ms']:,.0f} ms "
            f"| `cargo bench -p vault-svc --bench refresh_storm` |"
        )
    decision = components.get("decision_us")
    if decision:
        lines.append(f"| policy decision (50 policies) | p50 {decision['p50']:.1f} µs, p99 {decision['p99']:.1f} µs | `cargo bench -p policy --bench decision` |")
    lines += ["", "Audit ingest and sink lag (`bash audit-svc/benches/report.sh`):", "", components.get("audit_markdown") or "(no result)", ""]
    return lines


def standalone_edge_lines(crowd: dict | None, clients: str = "") -> list[str]:
    """Returns the footprint rows of a standalone edge-svc whose `clients` are as said, or a row saying
    the run failed."""
    if not crowd:
        return [f"| standalone edge-svc{clients} | not measured (its run failed) | | |"]
    idle = (crowd.get("rss_idle_kib") or 0) / 1024
    peak = (crowd.get("rss_max_kib") or 0) / 1024
    return [
        f"| standalone edge-svc RSS idle (after one sanity call) | {idle:.1f} MiB | ≤ 30 MB | {'met' if within_mb(idle, 30) else 'missed'} |",
        f"| standalone edge-svc RSS with {crowd['clients']:,} concurrent sessions{clients} | {peak:.1f} MiB "
        f"({fmt(crowd.get('n_ok'))} calls ok, {fmt(crowd.get('n_err'))} errors, {fmt(crowd.get('rps'))} rps) "
        f"| ≤ 100 MB | {'met' if within_mb(peak, 100) and not crowd.get('n_err') else 'missed'} |",
        f"| standalone edge-svc RSS growth per session{clients} | {(peak - idle) * 1024 / max(crowd['clients'], 1):.1f} KiB | | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ours", required=True)
    parser.add_argument("--peer")
    parser.add_argument("--peer-note", default="")
    parser.add_argument("--command", required=True)
    parser.add_argument("--settings", default="")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--checkout", help="what was built, e.g. '`abc1234` with uncommitted changes'")
    parser.add_argument("--load-start", help="/proc/loadavg's first three fields when the run began")
    parser.add_argument("--notes", help="Markdown appended as the report's last section, if the file exists")
    parser.add_argument("--components", help="JSON written by bench/components.sh")
    parser.add_argument("--components-note", default="", help="what to say when there are no component figures")
    parser.add_argument("--crowd", help="JSON line written by bench/crowd.py")
    parser.add_argument("--crowd-edge", help="JSON line written by bench/crowd.py for a standalone edge-svc")
    parser.add_argument("--crowd-edge-h2",
                        help="the same, with the connector on HTTP/2 (`http2: true`)")
    parser.add_argument("--crowd-edge-listing",
                        help="the same, for clients that list the tools first (bench/crowd.py --list-tools)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    rows = load(args.ours)
    idle = next((r for r in rows if r.get("idle")), {})
    ours = summarize_ours([r for r in rows if not r.get("idle") and not r.get("rated")])
    rated = summarize_ours([r for r in rows if r.get("rated")])
    peer = summarize_peer(load(args.peer)) if args.peer and os.path.getsize(args.peer) else None
    last = max((r for r in rows if not r.get("idle")), key=lambda r: r.get("gateway_hwm_kib") or 0, default={})
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        "Data plane: `tools/call` of an `echo` tool through Gatehouse (`gatehouse up`, virtual server `bench`,",
        "`auth: none`, one streamable-HTTP connector, no prefix) against the same Rust downstream (`mcp-echo`)",
        "called directly, in one run, both protocol eras. Load: `mcp-load` (Rust, pooled HTTP/1.1 client, one",
        "thread); every reply is checked to echo its input. Medians over repetitions; the direct and gateway",
        "runs alternate in order between repetitions. Everything on 127.0.0.1; load generator, gateway and",
        "downstream share the same cores, so absolute rps is a property of the whole box.",
        "",
        f"Measured {now}, in {args.seconds / 60:.1f} minutes, with:",
        "",
        "```sh",
        args.command,
        "```",
        "",
        *machine(args.checkout, args.load_start),
        f"- settings: {args.settings}" if args.settings else "",
        "",
        "## Targets",
        "",
        *target_lines(ours, rated, peer),
        "## Gateway against direct, per concurrency",
        "",
        "*ratio* = gateway rps ÷ direct rps; *added* = gateway minus direct latency, per repetition. Every run starts",
        "on an idle gateway. Gateway CPU per call = utime + stime from the start of the run until the gateway is idle",
        "again (under a tenth of a core over half a second: the audit trail, which runs behind the data plane, has",
        "caught up; *idle again after* counts the seconds from the run's end) ÷ calls (warm-up included); the echo's",
        "and mcp-load's over the run alone. The gateway RSS is VmRSS right after the run (max over repetitions).",
        "",
        *our_tables(ours),
        f"Gateway RSS: {fmt((idle.get('gateway_rss_kib') or 0) / 1024, 1)} MiB idle (after start-up, before load); "
        f"peak (VmHWM) {fmt((last.get('gateway_hwm_kib') or 0) / 1024, 1)} MiB.",
        "",
        *rated_lines(rated),
        "## Side by side with ContextForge",
        "",
        "IBM ContextForge (`mcp-contextforge-gateway` from PyPI, single uvicorn worker, SQLite, shipped defaults),",
        "run by `../shared/bench/peer/run.sh default` in the same session: its load generator, its FastMCP echo",
        "downstream, C = 1 and 16.",
        "",
        *peer_lines(ours, peer, args.peer_note),
        *component_lines(load_json(args.components), load_json(args.crowd), idle.get("gateway_rss_kib"),
                         load_json(args.crowd_edge), args.components_note, load_json(args.crowd_edge_listing),
                         load_json(args.crowd_edge_h2)),
    ]
    if args.notes and os.path.isfile(args.notes):
        with open(args.notes, encoding="utf-8") as notes:
            lines += [notes.read().rstrip(), ""]
    with open(args.out, "w", encoding="utf-8") as out:
        out.write("\n".join(line for line in lines if line is not None) + "\n")


if __name__ == "__main__":
    main()
