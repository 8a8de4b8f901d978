"""A FastMCP server on stdio, for the sandbox test of Python connectors."""

import os

from fastmcp import FastMCP

mcp = FastMCP("py-stdio")


@mcp.tool
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@mcp.tool
def env(name: str) -> str:
    """Return an environment variable, or "unset"."""
    return os.environ.get(name, "unset")


mcp.run(show_banner=False)
