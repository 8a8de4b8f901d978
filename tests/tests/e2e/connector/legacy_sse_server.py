"""A FastMCP server on the legacy 2024-11-05 HTTP+SSE transport, for the connector tests.

Binds 127.0.0.1 on a free port itself and prints the SSE URL as its first stdout line.
"""

import asyncio
import socket

from fastmcp import Context, FastMCP

mcp = FastMCP("legacy-sse")


@mcp.tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool
async def slow(ctx: Context) -> str:
    """Report progress twice, then finish."""
    await ctx.report_progress(1, 2)
    await ctx.report_progress(2, 2)
    return "done"


async def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    print(f"http://127.0.0.1:{port}/sse", flush=True)
    await mcp.run_http_async(
        transport="sse", host="127.0.0.1", port=port, sockets=[sock], show_banner=False, log_level="warning"
    )


asyncio.run(main())
