"""Drives Gatehouse's authorization server with authlib as an independent OAuth client.

authlib builds and parses every OAuth message (authorization URI, PKCE S256,
authorization response, token requests, client authentication) and verifies the
access token's ES256 signature against the published JWKS; the standard
library carries the HTTP.

Usage: authlib_client.py ISSUER RESOURCE PUBLIC_CLIENT_ID REDIRECT_URI AGENT_ID AGENT_SECRET
Prints one JSON object describing what each step returned.
"""

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings

from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import (
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge

warnings.simplefilter("ignore")
from authlib.jose import JsonWebKey, JsonWebToken  # noqa: E402


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)


def call(method, url, body=None, headers=None):
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_form(url, body, auth=None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth is not None:
        url, headers, body = auth.prepare(None, url, headers, body)
    status, _, payload = call("POST", url, body.encode(), headers)
    return status, json.loads(payload) if payload else None


issuer, resource, public_id, redirect_uri, agent_id, agent_secret = sys.argv[1:7]
metadata = json.loads(call("GET", issuer + "/.well-known/oauth-authorization-server")[2])
report = {"issuer": metadata["issuer"]}

# Human flow: authorization code + PKCE S256 with a public client.
verifier = generate_token(64)
state = generate_token(24)
uri = prepare_grant_uri(
    metadata["authorization_endpoint"],
    public_id,
    "code",
    redirect_uri=redirect_uri,
    scope="tools",
    state=state,
    code_challenge=create_s256_code_challenge(verifier),
    code_challenge_method="S256",
    resource=resource,
)
status, headers, _ = call("GET", uri)
location = headers["location"]
report["redirect"] = location.split("?")[0]
parsed = parse_authorization_code_response(location, state=state)
report["iss_param"] = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query)).get("iss")
body = prepare_token_request(
    "authorization_code",
    code=parsed["code"],
    redirect_uri=redirect_uri,
    code_verifier=verifier,
    client_id=public_id,
    resource=resource,
)
status, token = post_form(metadata["token_endpoint"], body)
report["code_status"] = status
jwks = JsonWebKey.import_key_set(json.loads(call("GET", metadata["jwks_uri"])[2]))
claims = JsonWebToken(["ES256"]).decode(token["access_token"], jwks)
claims.validate()
report["claims"] = {key: claims[key] for key in ("iss", "aud", "sub", "client_id", "scope")}
body = prepare_token_request("refresh_token", refresh_token=token["refresh_token"], client_id=public_id)
status, refreshed = post_form(metadata["token_endpoint"], body)
report["rotated"] = status == 200 and refreshed["refresh_token"] != token["refresh_token"]
status, replay = post_form(metadata["token_endpoint"], body)
report["replay_error"] = replay["error"]

# Agent flow: client credentials with client_secret_basic, then introspect and revoke.
basic = ClientAuth(agent_id, agent_secret, "client_secret_basic")
body = prepare_token_request("client_credentials", resource=resource)
status, agent_token = post_form(metadata["token_endpoint"], body, basic)
report["agent_expires_in"] = agent_token["expires_in"]
access = agent_token["access_token"]
status, introspection = post_form(metadata["introspection_endpoint"], urllib.parse.urlencode({"token": access}), basic)
report["introspected"] = [introspection["active"], introspection.get("aud")]
post_form(metadata["revocation_endpoint"], urllib.parse.urlencode({"token": access}), basic)
status, after = post_form(metadata["introspection_endpoint"], urllib.parse.urlencode({"token": access}), basic)
report["active_after_revoke"] = after["active"]
print(json.dumps(report))
