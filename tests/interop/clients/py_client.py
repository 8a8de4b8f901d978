"""Interop driver: the Python MCP SDK (`mcp` 2.3.0 `Client`) against an MCP endpoint.

Usage: python py_client.py --mode {modern,legacy,auto} URL SPEC.json

`modern` pins protocol 2026-07-28 (stateless, no handshake); `legacy` forces the initialize
handshake (2025-11-25 session); `auto` lets the SDK probe `server/discover` and fall back.
SPEC.json (shared with the TypeScript drivers):

    {
      "present": ["ev__say", "fast__add"],          # tool names that must be listed
      "absent": ["ev__echo", "ev__get-env"],         # tool names that must not be listed
      "descriptions": {"ev__say": "Repeats what you say"},   # exact descriptions
      "calls": [
        {"tool": "fast__add", "arguments": {"a": 2, "b": 3}, "text": "5"},          # exact text
        {"tool": "ev__say", "arguments": {"message": "hi"}, "contains": "hi"},     # substring
        {"tool": "ev__get-env", "arguments": {}, "rejected": true},                 # must fail
        {"tool": "notes", "arguments": {}, "contains": "hi", "excludes": "123-45"}  # and must not contain
      ]
    }

Every check prints one `ok`/`FAIL` line; the exit status is 1 if any check failed, 2 on a
usage or connection error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from mcp.client import Client
from mcp.shared.exceptions import MCPError

MODES = {"modern": "2026-07-28", "legacy": "legacy", "auto": "auto"}
EXPECTED_VERSION = {"modern": {"2026-07-28"}, "legacy": {"2025-11-25", "2025-06-18"}}


class Report:
    def __init__(self, label: str) -> None:
        self.label = label
        self.failures = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        if not ok:
            self.failures += 1
        suffix = f": {detail}" if detail and not ok else ""
        print(f"[{self.label}] {'ok  ' if ok else 'FAIL'} {what}{suffix}", flush=True)


def first_line(error: BaseException) -> str:
    """Returns the innermost cause of `error` (unwrapping exception groups), shortened to one line."""
    while getattr(error, "exceptions", None):
        error = error.exceptions[0]
    return " | ".join(line.strip() for line in str(error).splitlines()[:3])


def result_text(result: Any) -> str:
    """Returns the concatenated text blocks of a CallToolResult."""
    return "".join(getattr(block, "text", "") for block in result.content if getattr(block, "type", "") == "text")


async def list_all_tools(client: Client) -> dict[str, Any]:
    tools: dict[str, Any] = {}
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        for tool in page.tools:
            tools[tool.name] = tool
        cursor = page.next_cursor
        if not cursor:
            return tools


async def run_call(client: Client, call: dict[str, Any], report: Report) -> None:
    name = call["tool"]
    arguments = call.get("arguments", {})
    what = f"call {name}({json.dumps(arguments, separators=(',', ':'))})"
    try:
        result = await client.call_tool(name, arguments)
    except MCPError as error:
        if call.get("rejected"):
            report.check(True, f"{what} rejected", "")
        else:
            report.check(False, what, f"JSON-RPC error {error.error.code}: {error.error.message}")
        return
    except Exception as error:  # noqa: BLE001 - e.g. a result that violates the negotiated revision
        report.check(False, what, f"{type(error).__name__}: {first_line(error)}")
        return
    text = result_text(result)
    if call.get("rejected"):
        report.check(bool(result.is_error), f"{what} rejected", f"succeeded with {text!r}")
        return
    if result.is_error:
        report.check(False, what, f"isError result: {text!r}")
    elif "excludes" in call and call["excludes"] in text:
        report.check(False, f"{what} excludes {call['excludes']!r}", f"got {text!r}")
    elif "text" in call:
        report.check(text == call["text"], f"{what} == {call['text']!r}", f"got {text!r}")
    elif "contains" in call:
        excludes = f" and not {call['excludes']!r}" if "excludes" in call else ""
        report.check(call["contains"] in text, f"{what} contains {call['contains']!r}{excludes}", f"got {text!r}")
    else:
        report.check(True, what)


async def run(url: str, mode: str, spec: dict[str, Any]) -> int:
    report = Report(f"py-{mode}")
    async with Client(url, mode=MODES[mode], cache=None, client_info=None) as client:
        version = client.session.protocol_version
        expected = EXPECTED_VERSION.get(mode)
        report.check(expected is None or version in expected, f"negotiated protocol {version}", f"expected {expected}")
        tools = await list_all_tools(client)
        for name in spec.get("present", []):
            report.check(name in tools, f"tool {name} listed", f"listed: {sorted(tools)}")
        for name in spec.get("absent", []):
            report.check(name not in tools, f"tool {name} hidden", "it is listed")
        for name, description in spec.get("descriptions", {}).items():
            actual = tools[name].description if name in tools else None
            report.check(actual == description, f"tool {name} description", f"got {actual!r}")
        for call in spec.get("calls", []):
            await run_call(client, call, report)
    print(f"[py-{mode}] {'passed' if report.failures == 0 else f'{report.failures} check(s) failed'}", flush=True)
    return 0 if report.failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=sorted(MODES), default="modern")
    parser.add_argument("url")
    parser.add_argument("spec", help="JSON spec file (see module docstring)")
    args = parser.parse_args()
    with open(args.spec, encoding="utf-8") as file:
        spec = json.load(file)
    try:
        return asyncio.run(run(args.url, args.mode, spec))
    except Exception as error:  # noqa: BLE001 - any transport or protocol failure is a test failure
        print(f"[py-{args.mode}] FAIL could not complete the session with {args.url}: {error!r}", flush=True)
        cause = error
        while getattr(cause, "exceptions", None):  # unwrap anyio/Trio exception groups
            cause = cause.exceptions[0]
            print(f"[py-{args.mode}]      caused by {cause!r}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
