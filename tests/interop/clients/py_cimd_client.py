"""Interop driver: the Python MCP SDK (`mcp` 2.3.0) with a URL client id (client ID metadata document).

Usage:
    python py_cimd_client.py cert DIR
    python py_cimd_client.py run ISSUER URL OTHER_URL SPEC.json DIR

`cert` writes a throwaway CA (`DIR/ca.pem`, the file Gatehouse's
`client_metadata_documents.ca_file` names) and a server certificate for 127.0.0.1 signed by it.

`run` serves the client's metadata document over https at `https://127.0.0.1:PORT/client.json`
with that certificate, and lets `OAuthClientProvider(client_metadata_url=...)` do the whole flow:
it sees `client_id_metadata_document_supported` in the AS metadata, uses the URL as its client_id
instead of registering, and the AS fetches the document (through its SSRF-safe fetcher, under the
dev opt-out `allow_local`). Then the same checks as py_oauth_client.py: tools through the virtual
server, the token's claims (`client_id` is the URL), refused at OTHER_URL.

Every check prints one `ok`/`FAIL` line; exit 1 if any check failed, 2 on a flow or connection error.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import sys
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp.client import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from mcp.shared.exceptions import MCPDeprecationWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from py_client import MODES, Report, first_line, list_all_tools, run_call  # noqa: E402
from py_oauth_client import (  # noqa: E402
    DEADLINE,
    REDIRECT_URI,
    HeadlessBrowser,
    MemoryStorage,
    check_access_token,
    refused_elsewhere,
)


def make_cert(directory: Path) -> None:
    """Writes ca.pem, server.pem and server.key (a CA and a 127.0.0.1 server certificate)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gatehouse interop CIMD CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class DocumentServer:
    """Serves one client metadata document over https and counts the fetches."""

    def __init__(self, directory: Path) -> None:
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path != "/client.json":
                    self.send_error(404)
                    return
                server.fetches += 1
                body = json.dumps(server.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "max-age=300")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "server.pem", directory / "server.key")
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/client.json"
        self.document = {
            "client_id": self.url,
            "client_name": "gatehouse interop (CIMD)",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
            "application_type": "native",
        }
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


async def run(issuer: str, url: str, other_url: str, spec: dict[str, Any], directory: Path) -> int:
    report = Report("py-oauth-cimd")
    documents = DocumentServer(directory)
    storage = MemoryStorage()
    browser = HeadlessBrowser(issuer, report)
    async with httpx2.AsyncClient(timeout=DEADLINE) as http:
        metadata = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
    report.check(
        metadata.get("client_id_metadata_document_supported") is True,
        "AS metadata advertises client_id_metadata_document_supported",
        repr(metadata.get("client_id_metadata_document_supported")),
    )
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            redirect_uris=[REDIRECT_URI],
            client_name="gatehouse interop (CIMD)",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
        client_metadata_url=documents.url,
    )
    # No keep-alive: see py_oauth_client.py.
    limits = httpx2.Limits(max_keepalive_connections=0)
    async with httpx2.AsyncClient(auth=provider, timeout=DEADLINE, limits=limits) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=MODES["modern"], cache=None, client_info=None) as client:
            tools = await list_all_tools(client)
            for name in spec.get("present", []):
                report.check(name in tools, f"tool {name} listed", f"listed: {sorted(tools)}")
            for call in spec.get("calls", []):
                await run_call(client, call, report)
    client_id = storage.client_info.client_id if storage.client_info else None
    report.check(client_id == documents.url, "the SDK used the document URL as its client_id (no DCR)", repr(client_id))
    report.check(documents.fetches >= 1, f"the AS fetched the metadata document ({documents.fetches} time(s))")
    report.check(len(browser.authorize_urls) == 1, "exactly one authorization round trip", str(browser.authorize_urls))
    report.check(storage.tokens is not None, "the SDK stored an access token")
    if storage.tokens is not None:
        token = storage.tokens.access_token
        claims = jwt.decode(token, options={"verify_signature": False})
        report.check(claims.get("client_id") == documents.url, "the token's client_id is the document URL", repr(claims))
        await check_access_token(token, issuer, url, report)
        await refused_elsewhere(token, other_url, report)
    documents.httpd.shutdown()
    print(f"[{report.label}] {'passed' if report.failures == 0 else f'{report.failures} check(s) failed'}", flush=True)
    return 0 if report.failures == 0 else 1


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "cert":
        make_cert(Path(sys.argv[2]))
        return 0
    if len(sys.argv) != 7 or sys.argv[1] != "run":
        print(__doc__, file=sys.stderr)
        return 64
    issuer, url, other_url, spec_path, directory = sys.argv[2:]
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    warnings.simplefilter("error", MCPDeprecationWarning)
    try:
        return asyncio.run(asyncio.wait_for(run(issuer, url, other_url, spec, Path(directory)), DEADLINE * 2))
    except Exception as error:  # noqa: BLE001 - one line for the runner's log
        print(f"[py-oauth-cimd] FAIL {type(error).__name__}: {first_line(error)}", flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
