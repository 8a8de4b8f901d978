"""A FastMCP 4.1.2 downstream over streamable HTTP for the interop suite.

Gatehouse combines it with `@modelcontextprotocol/server-everything` (over stdio) in one
virtual server; the SDK client drivers then list and call its tools through the gateway.

Usage: python fastmcp_server.py --port N [--transport http|sse]   (binds 127.0.0.1 only)

`http` (default) serves streamable HTTP at /mcp; `sse` serves the legacy 2024-11-05 HTTP+SSE
transport (GET /sse, POST /messages/) for Gatehouse's SSE connector.
"""

from __future__ import annotations

import argparse
import sys

from fastmcp import Context, FastMCP
from fastmcp.server.dependencies import get_http_headers

mcp = FastMCP("gatehouse-interop-fast", instructions="Arithmetic and identity probes for the interop suite")


@mcp.tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool
def multiply(a: float, b: float) -> float:
    """Multiplies two numbers."""
    return a * b


@mcp.tool
def whoami(ctx: Context) -> str:
    """Reports what this server learns about its caller (client name, whether a credential came along)."""
    # include={"authorization"}: FastMCP strips that header from the map by default.
    headers = get_http_headers(include={"authorization"})
    authorization = "present" if headers.get("authorization") else "absent"
    params = ctx.session.client_params if ctx.session is not None else None
    client = params.client_info.name if params is not None and params.client_info is not None else "unknown"
    return f"fast-server: client={client}, authorization={authorization}"


@mcp.tool
def authorization_digest() -> str:
    """Returns the SHA-256 (hex) of the Authorization header the request carried, or "none":
    proves which credential arrived without echoing it."""
    import hashlib

    value = get_http_headers(include={"authorization"}).get("authorization")
    return hashlib.sha256(value.encode()).hexdigest() if value else "none"


# What `note` received, so a test can prove a call the gateway blocked never arrived here.
received_notes: list[str] = []


@mcp.tool
def card_on_file() -> str:
    """Returns the (test) payment card on file, which a DLP-guarded virtual server must mask."""
    return "card on file: 4111 1111 1111 1111"


@mcp.tool
def note(text: str) -> str:
    """Keeps a note; the downstream's own record of what it received."""
    received_notes.append(text)
    return f"noted {len(text)} characters"


@mcp.tool
def notes() -> str:
    """Returns every note this process received, one per line."""
    return "\n".join(received_notes)


@mcp.tool
def internal_debug() -> str:
    """Internal diagnostics that a curated virtual server must hide."""
    return "internal diagnostics: this tool should not be reachable through a curated virtual server"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    parser.add_argument("--transport", choices=("http", "sse"), default="http")
    args = parser.parse_args()
    path = "/mcp" if args.transport == "http" else "/sse"
    print(f"fastmcp server ({args.transport}) listening on http://127.0.0.1:{args.port}{path}", file=sys.stderr, flush=True)
    mcp.run(transport=args.transport, host="127.0.0.1", port=args.port, path=path, show_banner=False)


if __name__ == "__main__":
    main()
