"""Load from the Python MCP SDK (`mcp` 2.3.0 `Client`) for the multi-replica harness.

Usage: python py_load.py --mode {modern,legacy} --stop FILE URL

Reads the bearer token from the environment variable SCALEOUT_TOKEN (never from argv, so
it does not show in a process listing), then calls the `echo` tool in a loop until FILE
exists; after its first answered call it prints the line `ready`, so the harness starts
its chaos only once every client is under way. A failed call is counted and the client reconnects (a fresh session in the legacy
era), as an application would after an error. At the end it prints one JSON object:

    {"ok": <calls answered with the echoed text>, "failed": <calls that were not>,
     "errors": [<the first few error lines>]}

Exit status 0 when it printed its counts (the harness judges them), 2 when it could not
connect at all. Once FILE exists the client has STOP_GRACE seconds to finish its call and close
its session; after that it reports what it counted, the call still in flight as one failure,
and exits: a legacy session whose SSE stream a killed edge left open must not hold the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

MODES = {"modern": "2026-07-28", "legacy": "legacy"}
TIMEOUT = 10.0
STOP_GRACE = 5.0


def first_line(error: BaseException) -> str:
    """Returns the innermost cause of `error` (unwrapping exception groups) on one line."""
    while getattr(error, "exceptions", None):
        error = error.exceptions[0]
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def text_of(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


class Counts:
    """What the client counted so far, reported once: by the run or by the stop watchdog."""

    def __init__(self) -> None:
        self.ok, self.failed, self.errors, self.connected = 0, 0, [], False
        self.in_flight = False
        self.lock = threading.Lock()
        self.reported = False

    def report(self, extra_failure: str | None = None) -> bool:
        """Prints the counts unless they were printed already; says whether this call did."""
        with self.lock:
            if self.reported:
                return False
            self.reported = True
            failed, errors = self.failed, list(self.errors)
            if extra_failure:
                failed += 1
                errors.append(extra_failure)
            print(json.dumps({"ok": self.ok, "failed": failed, "errors": errors[:5],
                              "connected": self.connected}), flush=True)
            return True


def watchdog(stop: Path, counts: Counts) -> None:
    """Once `stop` exists, gives the run STOP_GRACE seconds, then reports and exits."""
    while not stop.exists():
        time.sleep(0.05)
    time.sleep(STOP_GRACE)
    if counts.report("stopped with a call in flight" if counts.in_flight else None):
        os._exit(0 if counts.connected else 2)


async def run(url: str, mode: str, stop: Path, token: str, counts: Counts) -> None:
    call = 0
    while not stop.exists():
        try:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(headers=headers, timeout=TIMEOUT) as http:
                transport = streamable_http_client(url, http_client=http)
                async with Client(transport, mode=MODES[mode], cache=None, client_info=None) as client:
                    counts.connected = True
                    while not stop.exists():
                        call += 1
                        expected = f"py-{mode}-{call}"
                        counts.in_flight = True
                        result = await client.call_tool("echo", {"text": expected})
                        counts.in_flight = False
                        if not result.is_error and text_of(result) == expected:
                            counts.ok += 1
                            if counts.ok == 1:
                                print("ready", flush=True)
                        else:
                            counts.failed += 1
                            if len(counts.errors) < 5:
                                counts.errors.append(f"call {call}: {text_of(result)[:200]}")
        except Exception as error:  # noqa: BLE001 - counted and reported, then reconnect
            counts.in_flight = False
            counts.failed += 1
            if len(counts.errors) < 5:
                counts.errors.append(first_line(error))
            await asyncio.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), required=True)
    parser.add_argument("--stop", type=Path, required=True)
    parser.add_argument("url")
    args = parser.parse_args()
    token = os.environ.get("SCALEOUT_TOKEN", "")
    if not token:
        print(json.dumps({"error": "SCALEOUT_TOKEN is not set"}), flush=True)
        return 2
    counts = Counts()
    threading.Thread(target=watchdog, args=(args.stop, counts), daemon=True).start()
    asyncio.run(run(args.url, args.mode, args.stop, token, counts))
    counts.report()
    return 0 if counts.connected else 2


if __name__ == "__main__":
    sys.exit(main())
