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
connect at all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

import httpx2
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

MODES = {"modern": "2026-07-28", "legacy": "legacy"}
TIMEOUT = 10.0


def first_line(error: BaseException) -> str:
    """Returns the innermost cause of `error` (unwrapping exception groups) on one line."""
    while getattr(error, "exceptions", None):
        error = error.exceptions[0]
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def text_of(result) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


async def run(url: str, mode: str, stop: Path, token: str) -> dict:
    ok, failed, errors, connected = 0, 0, [], False
    call = 0
    while not stop.exists():
        try:
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx2.AsyncClient(headers=headers, timeout=TIMEOUT) as http:
                transport = streamable_http_client(url, http_client=http)
                async with Client(transport, mode=MODES[mode], cache=None, client_info=None) as client:
                    connected = True
                    while not stop.exists():
                        call += 1
                        expected = f"py-{mode}-{call}"
                        result = await client.call_tool("echo", {"text": expected})
                        if not result.is_error and text_of(result) == expected:
                            ok += 1
                            if ok == 1:
                                print("ready", flush=True)
                        else:
                            failed += 1
                            if len(errors) < 5:
                                errors.append(f"call {call}: {text_of(result)[:200]}")
        except Exception as error:  # noqa: BLE001 - counted and reported, then reconnect
            failed += 1
            if len(errors) < 5:
                errors.append(first_line(error))
            await asyncio.sleep(0.05)
    return {"ok": ok, "failed": failed, "errors": errors, "connected": connected}


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
    counts = asyncio.run(run(args.url, args.mode, args.stop, token))
    print(json.dumps(counts), flush=True)
    return 0 if counts["connected"] else 2


if __name__ == "__main__":
    sys.exit(main())
