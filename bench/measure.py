"""Runs the tools/call matrix of bench/run.sh and appends one JSON line per run.

For every repetition, concurrency and protocol era it runs `mcp-load` against the echo
downstream directly and through the gateway (the order alternates between repetitions), and
samples around each run: CPU time (utime + stime from /proc/PID/stat) of the gateway and of
the echo server, the load generator's own CPU time (rusage of the finished child), and the
gateway's VmRSS / VmHWM. CPU per call divides by every call in the window: warm-up included.

Every run starts on an idle gateway: the audit trail runs behind the data plane (SCHED_IDLE) and
catches up after a run that saturated the box, so the gateway's CPU window runs on after the load
until it uses under a tenth of a core again (`--settle-seconds` at most), before the next run: the
catch-up is counted in the calls' CPU and in `catch_up_s`, not in the next run's latencies.

Each closed-loop pair at C > 1 is followed by an open-loop pair at the same concurrency: both
targets offered the same rate, a fraction (`--rated-fraction`, 0.5 by default) of what the gateway
carried closed-loop in that repetition, so their latencies compare the gateway's cost at a load
the box carries rather than the queue of a box run flat out. Those lines say `"rated": true`.

Usage: python3 bench/measure.py --load BIN --direct URL --gateway URL --gateway-pid PID
           --echo-pid PID --out FILE [--reps 3] [--concurrency 1 16 64] [--eras modern legacy]
           [--requests 20000] [--warmup 200] [--max-seconds 8] [--rated-fraction 0.5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Returns utime + stime of a process (all its threads, live and exited), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def until_idle(pid: int, limit: float) -> tuple[float, bool]:
    """Waits until `pid` uses under a tenth of a core over half a second; returns the seconds
    waited and whether it got there within `limit` (clock ticks are 10 ms, so half a second
    tells an idle gateway, a tick or two, from a catching-up one, about fifty)."""
    window = 0.5
    start = time.monotonic()
    used = cpu_seconds(pid)
    while True:
        time.sleep(window)
        now = cpu_seconds(pid)
        if now - used < 0.1 * window:
            return round(time.monotonic() - start, 2), True
        if time.monotonic() - start > limit:
            return round(time.monotonic() - start, 2), False
        used = now


def memory_kib(pid: int) -> dict[str, int]:
    """Returns VmRSS and VmHWM of a process, in KiB."""
    found = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0])
    return found


def run_load(args: argparse.Namespace, url: str, label: str, concurrency: int, era: str,
             rate: float | None) -> dict:
    """Runs one mcp-load (open loop at `rate` when given) and returns its report plus its own CPU seconds."""
    command = [
        args.load, "--url", url, "--tool", "echo", "--era", era, "--label", label,
        "--concurrency", str(concurrency), "--requests", str(args.requests),
        "--warmup", str(args.warmup), "--max-seconds", str(args.max_seconds),
    ]
    if rate is not None:
        command += ["--rate", f"{rate:.1f}"]
    # Only mcp-load is ever a child of this process, so the children's rusage delta is its CPU.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Wall-clock bound on top of mcp-load's own: measured phase + warm-up + setup slack.
    done = subprocess.run(command, capture_output=True, timeout=2 * args.max_seconds + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"mcp-load failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    report = json.loads(done.stdout.decode().strip().splitlines()[-1])
    report["load_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return report


def measure(args: argparse.Namespace, target: str, concurrency: int, era: str, rep: int,
            rate: float | None = None) -> dict:
    """Runs one target once and returns the annotated report line."""
    url = args.direct if target == "direct" else args.gateway
    gateway0, echo0 = cpu_seconds(args.gateway_pid), cpu_seconds(args.echo_pid)
    report = run_load(args, url, target, concurrency, era, rate)
    echo1 = cpu_seconds(args.echo_pid)
    memory = memory_kib(args.gateway_pid)
    catch_up_s, caught_up = until_idle(args.gateway_pid, args.settle_seconds)
    gateway1 = cpu_seconds(args.gateway_pid)
    calls = report["n_ok"] + report["n_err"] + report["warmup"]
    report.update(
        target=target,
        rep=rep,
        rated=rate is not None,
        catch_up_s=catch_up_s if caught_up else None,
        calls=calls,
        gateway_cpu_s=round(gateway1 - gateway0, 3),
        echo_cpu_s=round(echo1 - echo0, 3),
        gateway_cpu_us_per_call=round(1e6 * (gateway1 - gateway0) / calls, 2) if calls else None,
        echo_cpu_us_per_call=round(1e6 * (echo1 - echo0) / calls, 2) if calls else None,
        load_cpu_us_per_call=round(1e6 * report["load_cpu_s"] / calls, 2) if calls else None,
        gateway_rss_kib=memory.get("VmRSS"),
        gateway_hwm_kib=memory.get("VmHWM"),
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", required=True, help="path of the mcp-load binary")
    parser.add_argument("--direct", required=True, help="URL of the echo downstream")
    parser.add_argument("--gateway", required=True, help="URL of the echo behind the gateway")
    parser.add_argument("--gateway-pid", type=int, required=True)
    parser.add_argument("--echo-pid", type=int, required=True)
    parser.add_argument("--out", required=True, help="JSON lines file to append to")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--eras", nargs="+", default=["modern", "legacy"], choices=["modern", "legacy"])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--settle-seconds", type=float, default=120.0,
                        help="longest wait for the gateway to be idle after a run (and before the first)")
    parser.add_argument("--rated-fraction", type=float, default=0.5,
                        help="open-loop pairs at this fraction of the gateway's closed-loop rps (0: none)")
    args = parser.parse_args()

    with open(args.out, "a", encoding="utf-8") as out:
        # Each run ends once the gateway is idle again, so only the first waits beforehand.
        until_idle(args.gateway_pid, args.settle_seconds)
        idle = memory_kib(args.gateway_pid)
        out.write(json.dumps({"idle": True, "gateway_rss_kib": idle.get("VmRSS"),
                              "gateway_hwm_kib": idle.get("VmHWM")}) + "\n")
        for rep in range(1, args.reps + 1):
            for concurrency in args.concurrency:
                for era in args.eras:
                    order = ["direct", "gateway"] if rep % 2 else ["gateway", "direct"]
                    carried = None
                    for target in order:
                        line = measure(args, target, concurrency, era, rep)
                        write(out, line)
                        if target == "gateway":
                            carried = line["rps"]
                    if concurrency > 1 and args.rated_fraction > 0 and carried:
                        for target in order:
                            write(out, measure(args, target, concurrency, era, rep, args.rated_fraction * carried))


def write(out, line: dict) -> None:
    """Appends one run's line to the results and says it on stderr."""
    out.write(json.dumps(line) + "\n")
    out.flush()
    rated = f" rate={line['rate']:.0f}/s" if line.get("rate") else ""
    print(f"rep {line['rep']} c={line['concurrency']:<3} {line['era']:<6} {line['target']:<7}{rated} rps={line['rps']:>9} "
          f"p50={line['p50_us']}us p99={line['p99_us']}us err={line['n_err']} "
          f"gw_cpu={line['gateway_cpu_us_per_call']}us/call catch_up={line['catch_up_s']}s",
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
