"""Interop driver: two members connect their own downstream accounts through the Python MCP SDK.

Usage:
    python py_vault_client.py ISSUER URL PROVIDER GATEHOUSE_LOG DATA_DIR MEMBER:PASSWORD...

For each member: the SDK's `OAuthClientProvider` logs in at the gateway's AS (the headless browser
fills in the login form: username, password, CSRF field and cookie), then calls `whoami` of a
per-member connector at URL. The member has not connected the downstream account yet, so the
answer is a tool error carrying vault-svc's authorization link (this client declares no URL
elicitation). The browser follows the link at PROVIDER (an authlib server that signs the member in
from `&user=`), lands on vault-svc's callback on the gateway, and the retried call reaches the
downstream (`mcp-echo --whoami`, which asks PROVIDER whose token it received) as that member.

Canary: the downstream tokens PROVIDER issued (`/admin/tokens`) must appear in no response this
driver saw, no line of GATEHOUSE_LOG, and no file under DATA_DIR (the audit store, the edge spool;
vault-svc's store holds them encrypted only).

Every check prints one `ok`/`FAIL` line; exit 1 if any check failed, 2 on a flow or connection error.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from py_client import MODES, Report, first_line, result_text  # noqa: E402
from py_oauth_client import REDIRECT_URI, MemoryStorage  # noqa: E402

DEADLINE = 60.0


class LoginBrowser:
    """Plays the member's user agent at the gateway's AS: fills in and submits the login form."""

    def __init__(self, member: str, password: str, report: Report) -> None:
        self.member = member
        self.password = password
        self.report = report
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=DEADLINE) as http:
            page = await http.get(url)
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
            fields = {name: unescape(value) for name, value in fields.items()}
            self.report.check("csrf" in fields, f"{self.member}: the AS shows its login form", page.text[:200])
            form = {**fields, "username": self.member, "password": self.password, "decision": "approve"}
            response = await http.post(urljoin(url, "authorize"), data=form)
        location = response.headers.get("location", "")
        self.report.check(
            response.status_code in (302, 303) and location.startswith(REDIRECT_URI),
            f"{self.member}: logged in and redirected back",
            f"{response.status_code} {response.text[:200]!r}",
        )
        params = parse_qs(urlparse(location).query)
        self.result = AuthorizationCodeResult(
            code=params.get("code", [""])[0],
            state=params.get("state", [None])[0],
            iss=params.get("iss", [None])[0],
        )

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("callback before the redirect handler ran")
        return self.result


def unescape(value: str) -> str:
    return value.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'").replace("&amp;", "&")


async def connect_account(link: str, member: str, report: Report, seen: list[str]) -> None:
    """Follows the authorization link as `member`: provider sign-in, then vault-svc's callback."""
    async with httpx2.AsyncClient(follow_redirects=False, timeout=DEADLINE) as browser:
        authorized = await browser.get(f"{link}&user={member}")
        callback = authorized.headers.get("location", "")
        report.check(
            authorized.status_code == 302 and "/vault/oauth/callback?" in callback,
            f"{member}: the provider sends the browser to vault-svc's callback",
            f"{authorized.status_code} {callback!r}",
        )
        page = await browser.get(callback)
        seen.append(page.text)
        report.check(page.status_code == 200, f"{member}: vault-svc stored the account", f"{page.status_code} {page.text[:200]!r}")


async def member_flow(issuer: str, url: str, member: str, password: str, report: Report, seen: list[str]) -> None:
    browser = LoginBrowser(member, password, report)
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],
            client_name=f"gatehouse interop vault ({member})",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=MemoryStorage(),
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    # No keep-alive, for the reason given in py_oauth_client.py.
    limits = httpx2.Limits(max_keepalive_connections=0)
    async with httpx2.AsyncClient(auth=provider, timeout=DEADLINE, limits=limits) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=MODES["modern"], cache=None, client_info=None) as client:
            first = await client.call_tool("whoami", {})
            text = result_text(first)
            seen.append(text)
            links = re.findall(r"(http://\S+/authorize\?\S+)", text)
            report.check(bool(first.is_error) and bool(links), f"{member}: first call answers with the link", text[:300])
            if not links:
                return
            await connect_account(links[0].rstrip(".,)"), member, report, seen)
            retried = await client.call_tool("whoami", {})
            text = result_text(retried)
            seen.append(text)
            report.check(not retried.is_error and text == member, f"{member}: the retried call reaches the downstream as {member}", text[:300])


async def issued_tokens(provider: str) -> list[str]:
    async with httpx2.AsyncClient(timeout=DEADLINE) as http:
        return (await http.get(f"{provider}/admin/tokens")).json()["tokens"]


def canary(tokens: list[str], seen: list[str], log: Path, data: Path, report: Report) -> None:
    report.check(len(tokens) >= 2, "the provider issued the members' tokens", str(len(tokens)))
    report.check(all(token not in text for token in tokens for text in seen), "no downstream token in any response")
    lines = log.read_text(encoding="utf-8", errors="replace")
    report.check(all(token not in lines for token in tokens), "no downstream token in the gateway's log")
    leaked = [
        str(path)
        for path in data.rglob("*")
        if path.is_file() and any(token.encode() in path.read_bytes() for token in tokens)
    ]
    report.check(not leaked, "no downstream token in the audit store, spool or any data file", ", ".join(leaked))


async def run(args: argparse.Namespace) -> int:
    report = Report("py-vault-first-use")
    seen: list[str] = []
    for pair in args.members:
        member, password = pair.split(":", 1)
        await member_flow(args.issuer, args.url, member, password, report, seen)
    canary(await issued_tokens(args.provider), seen, args.log, args.data, report)
    print(f"[{report.label}] {'passed' if report.failures == 0 else f'{report.failures} check(s) failed'}", flush=True)
    return 0 if report.failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("issuer")
    parser.add_argument("url")
    parser.add_argument("provider")
    parser.add_argument("log", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("members", nargs="+")
    args = parser.parse_args()
    try:
        return asyncio.run(asyncio.wait_for(run(args), DEADLINE * 3))
    except Exception as error:  # noqa: BLE001 - report any flow failure as one line
        print(f"[py-vault-first-use] FAIL flow error: {first_line(error)}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
