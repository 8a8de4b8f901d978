"""Holds CLIENTS concurrent MCP sessions on the gateway and reports its RSS while they run.

`mcp-load --era legacy --concurrency CLIENTS` opens one session per client (initialize +
initialized, kept for the whole run) and shares a bounded budget of calls between them, so every
session is live and in use at once. With --list-tools each client also lists the tools once after
the handshake, as SDK clients do (Gatehouse's express lane answers a plain `tools/list` too, so the
session stays at rest); with --get-stream each also holds its session's GET stream open, as SDK clients
do (the lane serves that too). VmRSS of the gateway is sampled every 50 ms during the run.

Usage: python3 bench/crowd.py --load BIN --url URL --pid PID [--clients 1000] [--requests 20000]
           [--max-seconds 30] [--list-tools] [--get-stream]
Prints one JSON line: clients, list_tools, get_stream, n_ok, n_err, rps, rss_idle_kib (just before), rss_max_kib
(during).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--max-seconds", type=float, default=30)
    parser.add_argument("--list-tools", action="store_true")
    parser.add_argument("--get-stream", action="store_true")
    args = parser.parse_args()
    idle = rss_kib(args.pid)
    command = [args.load, "--url", args.url, "--era", "legacy", "--concurrency", str(args.clients),
               "--requests", str(args.requests), "--warmup", str(args.clients),
               "--max-seconds", str(args.max_seconds), "--threads", "1", "--label", "crowd"]
    if args.list_tools:
        command.append("--list-tools")
    if args.get_stream:
        command.append("--get-stream")
    peak = idle
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as load:
        while load.poll() is None:
            peak = max(peak, rss_kib(args.pid))
            time.sleep(0.05)
        output = load.stdout.read() if load.stdout else ""
    result = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    print(json.dumps({
        "clients": args.clients,
        "list_tools": args.list_tools,
        "get_stream": args.get_stream,
        "n_ok": result.get("n_ok"),
        "n_err": result.get("n_err"),
        "rps": result.get("rps"),
        "rss_idle_kib": idle,
        "rss_max_kib": peak,
    }))


if __name__ == "__main__":
    main()
