"""Runs the official `conformance authorization` scenarios headless against the gateway's AS.

Usage: python conformance_authorization.py CONFORMANCE ISSUER RESOURCE RESULTS_DIR

Registers a client by DCR with redirect `http://127.0.0.1:PORT/callback` (PORT free), starts
`CONFORMANCE authorization --url ISSUER --client-id ID --resource RESOURCE --port PORT -o DIR`,
reads the authorize URL the `authorization-code-grant` scenario prints, and plays the browser: GETs
it following redirects, which lands on the suite's callback because the gateway runs with
`auto_approve_consent`. Exits with the suite's status (non-zero when a check failed or warned is
the suite's own rule); 2 when the run could not be driven.

The client is public (`token_endpoint_auth_method: none`): the suite sends `client_id` only,
without client authentication, whenever the AS advertises `none` in
`token_endpoint_auth_methods_supported` (which Gatehouse does, for native apps), even when it was
given `--client-secret`; a confidential client would then be refused at `/token` (401), rightly.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time

import httpx2

DEADLINE = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    conformance, issuer, resource, results = sys.argv[1:5]
    port = free_port()
    callback = f"http://127.0.0.1:{port}/callback"
    with httpx2.Client(timeout=30.0) as http:
        registration = http.post(
            f"{issuer}/register",
            json={
                "redirect_uris": [callback],
                "client_name": "MCP conformance (gatehouse interop)",
                "application_type": "native",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            },
        )
    if registration.status_code != 201:
        print(f"registration failed: {registration.status_code} {registration.text[:300]}", flush=True)
        return 2
    client_id = registration.json()["client_id"]
    print(f"registered client {client_id} with redirect {callback}", flush=True)

    # `--client-id=ID` in one argument: a client id may begin with "-", which the CLI would read as a flag.
    command = [conformance, "authorization", "--url", issuer, f"--client-id={client_id}", "--resource", resource]
    command += ["--port", str(port), "-o", results]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # The deadline is enforced by a timer that kills the suite; reading its output then ends.
    timer = threading.Timer(DEADLINE, child.kill)
    timer.start()
    pattern = re.compile(re.escape(f"{issuer}/authorize?") + r"\S+")
    browsed = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            print(f"    {line.rstrip()}", flush=True)
            match = pattern.search(line)
            if match is None or "Ensure" in line:
                continue
            browsed += 1
            # The suite listens on its callback port only once it has printed the URL and started
            # waiting; poll that port (bounded) before playing the browser.
            wait_for_port(port, time.monotonic() + 30.0)
            with httpx2.Client(follow_redirects=True, timeout=30.0) as browser:
                landed = browser.get(match.group(0))
            print(f"browser: {landed.status_code} at {landed.url}", flush=True)
        status = child.wait()
    finally:
        timer.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    if browsed == 0:
        print("the suite never printed an authorize URL", flush=True)
        return 2
    for line in failing_checks(results):
        print(line, flush=True)
    return status


def wait_for_port(port: int, deadline: float) -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def failing_checks(results: str) -> list[str]:
    """Every non-SUCCESS check the suite wrote, as `STATUS id: message`."""
    from pathlib import Path

    lines = []
    for checks in sorted(Path(results).glob("*/checks.json")):
        for check in json.loads(checks.read_text(encoding="utf-8")):
            if check.get("status") not in ("SUCCESS", "INFO"):
                message = (check.get("errorMessage") or check.get("description") or "")[:300]
                lines.append(f"    {check.get('status')} {checks.parent.name}: {check.get('id')}: {message}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
