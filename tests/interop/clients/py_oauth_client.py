"""Interop driver: the Python MCP SDK's OAuth clients (`mcp` 2.3.0) through a protected virtual server.

Usage:
    python py_oauth_client.py authcode --mode {modern,legacy} ISSUER URL OTHER_URL SPEC.json
    python py_oauth_client.py agent --mode {modern,legacy} ISSUER URL OTHER_URL SPEC.json
    python py_oauth_client.py jwt --mode {modern,legacy} --data DIR ISSUER URL OTHER_URL SPEC.json

`authcode`: `OAuthClientProvider` does everything from the first 401: protected resource metadata
discovery, authorization server metadata, dynamic client registration, PKCE S256, the authorize
request (headless: the redirect handler GETs the authorize URL without following the redirect and
reads `code`, `state` and `iss` from `Location`, which works because the gateway runs with
`auto_approve_consent`), the token request, and the retried MCP request.

`agent`: registers a confidential client with plain HTTP (RFC 7591, `grant_types:
[client_credentials]`, `client_secret_basic`), then `ClientCredentialsOAuthProvider` gets the token
itself and calls through the virtual server.

`jwt`: generates an ES256 key pair, creates an agent bundle for URL's virtual server with the
public key as its registered JWKS (`$GATEHOUSE_BIN agents create NAME --virtual-server VS --jwks FILE
--data DIR`, on the running gateway's data directory), then `PrivateKeyJWTOAuthProvider` (RFC 7523
client assertion signed by `SignedJWTParameters`) gets the token itself and calls through.

All three then check that the access token the SDK obtained is refused (401 with a
`resource_metadata` naming OTHER_URL) at OTHER_URL, another protected virtual server: tokens are
bound to one virtual server's URL. SPEC.json has the format of py_client.py.

Every check prints one `ok`/`FAIL` line; exit 1 if any check failed, 2 on a flow or connection error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.auth.extensions.client_credentials import (
    ClientCredentialsOAuthProvider,
    PrivateKeyJWTOAuthProvider,
    SignedJWTParameters,
)
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp.shared.exceptions import MCPDeprecationWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from py_client import EXPECTED_VERSION, MODES, Report, first_line, list_all_tools, run_call  # noqa: E402

# The redirect URI the client registers. Nothing listens there: the redirect handler reads the
# authorization response from the AS's `Location` header instead of letting a browser follow it.
REDIRECT_URI = "http://127.0.0.1:9/callback"
DEADLINE = 60.0


class MemoryStorage:
    """The SDK's `TokenStorage` protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class HeadlessBrowser:
    """Plays the user agent: GETs the authorize URL and hands the redirect's parameters back."""

    def __init__(self, issuer: str, report: Report) -> None:
        self.issuer = issuer
        self.report = report
        self.authorize_urls: list[str] = []
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, url: str) -> None:
        self.authorize_urls.append(url)
        query = parse_qs(urlparse(url).query)
        self.report.check(url.startswith(f"{self.issuer}/authorize?"), "authorize URL on the gateway's AS", url)
        self.report.check(query.get("code_challenge_method") == ["S256"], "authorize request uses PKCE S256", url)
        async with httpx2.AsyncClient(follow_redirects=False, timeout=DEADLINE) as http:
            response = await http.get(url)
        location = response.headers.get("location", "")
        self.report.check(
            response.status_code in (302, 303) and location.startswith(REDIRECT_URI),
            "authorize redirects to the registered redirect URI (consent auto-approved)",
            f"{response.status_code} Location={location!r} body={response.text[:200]!r}",
        )
        params = parse_qs(urlparse(location).query)
        self.report.check(params.get("iss") == [self.issuer], "authorization response carries iss (RFC 9207)", location)
        self.report.check(
            params.get("state") == query.get("state"), "authorization response echoes state", location
        )
        self.result = AuthorizationCodeResult(
            code=params.get("code", [""])[0],
            state=params.get("state", [None])[0],
            iss=params.get("iss", [None])[0],
        )

    async def callback(self) -> AuthorizationCodeResult:
        if self.result is None:
            raise RuntimeError("callback before the redirect handler ran")
        return self.result


async def register_agent(issuer: str, report: Report) -> tuple[str, str]:
    """Registers a confidential client_credentials client with plain HTTP (RFC 7591)."""
    async with httpx2.AsyncClient(timeout=DEADLINE) as http:
        metadata = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
        response = await http.post(
            metadata["registration_endpoint"],
            json={
                "client_name": "gatehouse interop agent",
                "grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "client_secret_basic",
            },
        )
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    ok = response.status_code == 201 and bool(body.get("client_id")) and bool(body.get("client_secret"))
    report.check(ok, "DCR registers a confidential client_credentials client", f"{response.status_code} {response.text[:300]}")
    if not ok:
        raise RuntimeError("registration failed")
    return body["client_id"], body["client_secret"]


def create_jwt_agent(data_dir: Path, url: str, name: str, report: Report) -> tuple[str, str]:
    """Creates an agent bundle whose registered JWKS holds a fresh ES256 public key; returns
    (client_id, private key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=f"{name}-1", alg="ES256", use="sig")
    jwks_file = data_dir / f"{name}.jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    virtual_server = urlparse(url).path.split("/")[2]
    command = [
        os.environ["GATEHOUSE_BIN"], "agents", "create", name, "--virtual-server", virtual_server,
        "--jwks", str(jwks_file), "--data", str(data_dir),
    ]
    created = subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE, check=False)
    body = json.loads(created.stdout) if created.returncode == 0 else {}
    ok = bool(body.get("client_id")) and not body.get("client_secret")
    report.check(ok, "gatehouse agents create --jwks made a secretless agent bundle", f"{created.returncode} {created.stdout[:300]} {created.stderr[:300]}")
    if not ok:
        raise RuntimeError("agent creation failed")
    return body["client_id"], pem


async def check_access_token(token: str, issuer: str, url: str, report: Report) -> None:
    """The token is an RFC 9068 JWT from the issuer, for this virtual server, verifiable with the JWKS."""
    header = jwt.get_unverified_header(token)
    report.check(header.get("typ", "").lower() in ("at+jwt", "application/at+jwt"), "token typ at+jwt", repr(header))
    async with httpx2.AsyncClient(timeout=DEADLINE) as http:
        metadata = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
        jwks = (await http.get(metadata["jwks_uri"])).json()
    keys = {key.get("kid"): key for key in jwks.get("keys", [])}
    key = keys.get(header.get("kid"))
    report.check(key is not None, "token kid is in the JWKS", f"kid {header.get('kid')!r}, JWKS kids {sorted(map(str, keys))}")
    if key is None:
        return
    try:
        claims = jwt.decode(
            token,
            jwt.PyJWK(key).key,
            algorithms=[header.get("alg", "ES256")],
            audience=url,
            issuer=issuer,
            options={"require": ["exp", "iat", "jti", "sub", "client_id"]},
        )
    except jwt.PyJWTError as error:
        report.check(False, "token verifies against the JWKS (iss, aud = this virtual server, exp)", str(error))
        return
    report.check(True, f"token verifies against the JWKS (iss, aud = this virtual server, exp, alg {header.get('alg')})")
    report.check(bool(claims.get("sub")), f"token sub {claims.get('sub')!r}, client_id {claims.get('client_id')!r}")


async def refused_elsewhere(token: str, other_url: str, report: Report) -> None:
    """The token must be refused at another protected virtual server with a 401 naming that server."""
    request = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "gatehouse-interop", "version": "0"},
        },
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
    }
    async with httpx2.AsyncClient(timeout=DEADLINE) as http:
        response = await http.post(other_url, json=request, headers=headers)
    challenge = response.headers.get("www-authenticate", "")
    other_path = urlparse(other_url).path
    report.check(
        response.status_code == 401, f"the same token is refused at {other_url}", f"{response.status_code} {response.text[:200]!r}"
    )
    report.check(
        challenge.startswith("Bearer") and f"oauth-protected-resource{other_path}" in challenge,
        "the refusal names that server's resource metadata",
        f"WWW-Authenticate: {challenge!r}",
    )


async def run(
    flow: str,
    mode: str,
    issuer: str,
    url: str,
    other_url: str,
    spec: dict[str, Any],
    keepalive: bool,
    data_dir: Path | None = None,
) -> int:
    report = Report(f"py-oauth-{flow}-{mode}")
    storage = MemoryStorage()
    browser = HeadlessBrowser(issuer, report)
    if flow == "authcode":
        provider: OAuthClientProvider = OAuthClientProvider(
            server_url=url,
            client_metadata=OAuthClientMetadata(
                redirect_uris=[REDIRECT_URI],
                client_name=f"gatehouse interop ({mode})",
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
            ),
            storage=storage,
            redirect_handler=browser.redirect,
            callback_handler=browser.callback,
        )
    elif flow == "jwt":
        if data_dir is None:
            raise RuntimeError("the jwt flow needs --data")
        client_id, pem = create_jwt_agent(data_dir, url, f"interop-jwt-{mode}", report)
        assertion = SignedJWTParameters(issuer=client_id, subject=client_id, signing_key=pem, signing_algorithm="ES256")
        provider = PrivateKeyJWTOAuthProvider(
            server_url=url,
            storage=storage,
            client_id=client_id,
            assertion_provider=assertion.create_assertion_provider(),
            issuer=issuer,
        )
    else:
        client_id, client_secret = await register_agent(issuer, report)
        provider = ClientCredentialsOAuthProvider(
            server_url=url,
            storage=storage,
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method="client_secret_basic",
            issuer=issuer,
        )
    # No keep-alive: the gateway answers the unauthenticated first POST with 401 before reading its
    # body and then closes that connection without `Connection: close`; a pooled client that reuses
    # it for the discovery GET races the close ("Server disconnected without sending a response").
    # `--keepalive` reproduces it.
    limits = httpx2.Limits() if keepalive else httpx2.Limits(max_keepalive_connections=0)
    async with httpx2.AsyncClient(auth=provider, timeout=DEADLINE, limits=limits) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=MODES[mode], cache=None, client_info=None) as client:
            version = client.session.protocol_version
            report.check(version in EXPECTED_VERSION[mode], f"negotiated protocol {version}", f"expected {EXPECTED_VERSION[mode]}")
            tools = await list_all_tools(client)
            for name in spec.get("present", []):
                report.check(name in tools, f"tool {name} listed", f"listed: {sorted(tools)}")
            for name in spec.get("absent", []):
                report.check(name not in tools, f"tool {name} hidden", "it is listed")
            for call in spec.get("calls", []):
                await run_call(client, call, report)
    if flow == "authcode":
        report.check(len(browser.authorize_urls) == 1, "exactly one authorization round trip", str(browser.authorize_urls))
        registered = storage.client_info is not None and bool(storage.client_info.client_id)
        report.check(registered, "the SDK registered itself by DCR", repr(storage.client_info))
    report.check(storage.tokens is not None, "the SDK stored an access token")
    if storage.tokens is not None:
        report.check(storage.tokens.token_type.lower() == "bearer", "token_type Bearer", storage.tokens.token_type)
        await check_access_token(storage.tokens.access_token, issuer, url, report)
        await refused_elsewhere(storage.tokens.access_token, other_url, report)
    print(f"[{report.label}] {'passed' if report.failures == 0 else f'{report.failures} check(s) failed'}", flush=True)
    return 0 if report.failures == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("flow", choices=["authcode", "agent", "jwt"])
    parser.add_argument("--data", type=Path, help="the gateway's data directory (jwt flow)")
    parser.add_argument("--mode", choices=["modern", "legacy"], required=True)
    parser.add_argument("--keepalive", action="store_true", help="pool connections (see the comment in run)")
    parser.add_argument("issuer")
    parser.add_argument("url")
    parser.add_argument("other_url")
    parser.add_argument("spec", type=Path)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    warnings.simplefilter("error", MCPDeprecationWarning)  # a deprecated SDK path is a finding, not noise
    try:
        return asyncio.run(
            asyncio.wait_for(run(args.flow, args.mode, args.issuer, args.url, args.other_url, spec, args.keepalive, args.data), DEADLINE * 2)
        )
    except Exception as error:  # noqa: BLE001 - one line for the runner's log
        print(f"[py-oauth-{args.flow}-{args.mode}] FAIL {type(error).__name__}: {first_line(error)}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
