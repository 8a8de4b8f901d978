"""Interop driver: scope step-up with the Python MCP SDK's `OAuthClientProvider` (`mcp` 2.3.0).

Usage:
    python py_stepup_client.py ISSUER URL

URL is a protected virtual server whose policy declares two scopes: `calc:read` grants `multiply`,
`calc:write` grants `add`. The member consents to reading only: the headless browser narrows the
first authorize request's `scope` to `calc:read`, as a member unticking a scope on the consent
page would, so the SDK holds a token without `calc:write`. Then:

- `multiply` works with that token, and `add` is listed (a missing scope can be stepped up to);
- calling `add` gets HTTP 403 with `WWW-Authenticate: Bearer error="insufficient_scope",
  scope="calc:write"` (the gateway checks the `Mcp-Name` header, which the SDK sends in the
  modern era);
- the SDK handles that by itself (`OAuthClientProvider._auth_flow` treats a 403
  `insufficient_scope` like a 401: it unions the scope it was granted with the challenged one per
  SEP-2350, runs the authorization again and retries the request), so the call returns 5 with no
  help from this driver, after exactly one more authorize round trip that asks for `calc:write`.

Every check prints one `ok`/`FAIL` line; exit 1 if any check failed, 2 on a flow or connection error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import httpx2
import jwt
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from mcp.shared.exceptions import MCPDeprecationWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from py_client import MODES, Report, first_line, list_all_tools, run_call  # noqa: E402
from py_oauth_client import DEADLINE, REDIRECT_URI, HeadlessBrowser, MemoryStorage  # noqa: E402

READ = "calc:read"
WRITE = "calc:write"


def granted(storage: MemoryStorage) -> set[str]:
    """The scopes of the access token the SDK holds, from the token itself (the token response may
    leave `scope` out when it equals the request, RFC 6749 §5.1)."""
    if storage.tokens is None:
        return set()
    claims = jwt.decode(storage.tokens.access_token, options={"verify_signature": False})
    return set(str(claims.get("scope", "")).split())


class NarrowingBrowser(HeadlessBrowser):
    """The headless browser of a member who grants only `READ` at the first consent."""

    def __init__(self, issuer: str, report: Report) -> None:
        super().__init__(issuer, report)
        self.requested_scopes: list[set[str]] = []

    async def redirect(self, url: str) -> None:
        parts = urlparse(url)
        query = parse_qs(parts.query)
        self.requested_scopes.append(set(" ".join(query.get("scope", [])).split()))
        if len(self.requested_scopes) == 1:
            query["scope"] = [READ]
            url = urlunparse(parts._replace(query=urlencode(query, doseq=True)))
        await super().redirect(url)


class Challenges:
    """Records the gateway's 403 answers (an httpx response hook) to check what the SDK was told."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def hook(self, response: httpx2.Response) -> None:
        if response.status_code == 403:
            self.seen.append(response.headers.get("www-authenticate", ""))


async def run(issuer: str, url: str) -> int:
    report = Report("py-oauth-stepup")
    storage = MemoryStorage()
    browser = NarrowingBrowser(issuer, report)
    challenges = Challenges()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],
            client_name="gatehouse interop (step-up)",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    # No keep-alive, for the reason py_oauth_client.py gives (refusals close their connection).
    limits = httpx2.Limits(max_keepalive_connections=0)
    hooks = {"response": [challenges.hook]}
    async with httpx2.AsyncClient(auth=provider, timeout=DEADLINE, limits=limits, event_hooks=hooks) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=MODES["modern"], cache=None, client_info=None) as client:
            # The modern era sends nothing before the first request: listing obtains the token.
            tools = await list_all_tools(client)
            first = granted(storage)
            report.check(first == {READ}, f"the first token carries only {READ}", f"scope {first}")
            for name in ("multiply", "add"):
                report.check(name in tools, f"tool {name} listed", f"listed: {sorted(tools)}")
            await run_call(client, {"tool": "multiply", "arguments": {"a": 2, "b": 4}, "contains": "8"}, report)
            report.check(not challenges.seen, "no challenge while the token suffices", repr(challenges.seen))
            await run_call(client, {"tool": "add", "arguments": {"a": 2, "b": 3}, "text": "5"}, report)
    step_up = [value for value in challenges.seen if 'error="insufficient_scope"' in value]
    report.check(len(step_up) == 1, "calling add got one 403 insufficient_scope", repr(challenges.seen))
    report.check(
        bool(step_up) and f'scope="{WRITE}"' in step_up[0] and "resource_metadata=" in step_up[0],
        f"the challenge names {WRITE} and the resource metadata",
        repr(step_up),
    )
    report.check(
        len(browser.requested_scopes) == 2,
        "the SDK ran exactly one more authorization for the step-up",
        repr(browser.requested_scopes),
    )
    if len(browser.requested_scopes) == 2:
        report.check(WRITE in browser.requested_scopes[1], f"the step-up asks for {WRITE}", repr(browser.requested_scopes[1]))
    final = granted(storage)
    report.check(WRITE in final, f"the SDK now holds a token with {WRITE}", f"scope {final}")
    print(f"[{report.label}] {'passed' if report.failures == 0 else f'{report.failures} check(s) failed'}", flush=True)
    return 0 if report.failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("issuer")
    parser.add_argument("url")
    args = parser.parse_args()
    warnings.simplefilter("error", MCPDeprecationWarning)  # a deprecated SDK path is a finding, not noise
    try:
        return asyncio.run(asyncio.wait_for(run(args.issuer, args.url), DEADLINE * 2))
    except Exception as error:  # noqa: BLE001 - one line for the runner's log
        print(f"[py-oauth-stepup] FAIL {type(error).__name__}: {first_line(error)}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
