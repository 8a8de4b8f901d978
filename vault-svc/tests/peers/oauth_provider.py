"""A third-party OAuth 2 provider for vault-svc's tests, built on authlib.

It issues short-lived access tokens and rotating refresh tokens with reuse
detection: presenting a refresh token that was already redeemed revokes the
whole grant (as Auth0, Okta and others do). It counts every refresh per grant,
every reuse, and every refresh that came after the previous access token had
expired, and serves them at GET /admin/stats.

Client credentials are accepted too (tokens for user "client:vault-client").

Endpoints: /revoke (RFC 7009; revoking either token ends the grant), /authorize (auto-approves the user named by the `user` query
parameter, i.e. the member "logging in"), /token, /whoami (bearer-protected),
POST /admin/seed (creates grants directly, as if consent had happened), GET
/admin/stats, and RFC 8414 metadata.

Usage: python oauth_provider.py --expires-in SECONDS [--print-url]. Prints one
JSON line {"port": N} (or, with --print-url, the base URL) on stdout once
listening on 127.0.0.1.
"""

import argparse
import json
import os
import secrets
import sys
import threading
import time
import uuid

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from authlib.integrations.flask_oauth2 import AuthorizationServer  # noqa: E402
from authlib.oauth2.rfc6749 import grants  # noqa: E402
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin, ClientMixin, TokenMixin  # noqa: E402
from authlib.oauth2.rfc7009 import RevocationEndpoint  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

CLIENT_ID = "vault-client"
CLIENT_SECRET = "vault-client-secret"

LOCK = threading.Lock()
CODES = {}
BY_ACCESS = {}
BY_REFRESH = {}
REVOKED_GRANTS = set()
STATS = {"refreshes": {}, "reuse_detected": 0, "late_refreshes": 0, "codes_redeemed": 0, "revocations": 0}


class Client(ClientMixin):
    client_id = CLIENT_ID

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri.startswith("http://127.0.0.1:")

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, CLIENT_SECRET)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type in ("authorization_code", "refresh_token", "client_credentials")


CLIENT = Client()


class Token(TokenMixin):
    def __init__(self, grant_id, user, scope, data):
        self.grant_id = grant_id
        self.user = user
        self.scope = scope
        self.access_token = data["access_token"]
        self.refresh_token = data.get("refresh_token")
        self.expires_in = int(data["expires_in"])
        self.issued_at = time.time()
        self.refresh_used = False

    def check_client(self, client):
        return client.get_client_id() == CLIENT_ID

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_revoked(self):
        return self.grant_id in REVOKED_GRANTS

    def is_expired(self):
        return time.time() > self.issued_at + self.expires_in


class AuthCode(AuthorizationCodeMixin):
    def __init__(self, code, redirect_uri, scope, user, challenge, method):
        self.code = code
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.user = user
        self.code_challenge = challenge
        self.code_challenge_method = method
        self.auth_time = time.time()

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_auth_time(self):
        return self.auth_time

    def get_nonce(self):
        return None


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def save_authorization_code(self, code, req):
        data = req.payload.data
        with LOCK:
            CODES[code] = AuthCode(
                code,
                req.payload.redirect_uri,
                req.payload.scope,
                req.user,
                data.get("code_challenge"),
                data.get("code_challenge_method"),
            )

    def query_authorization_code(self, code, client):
        with LOCK:
            return CODES.get(code)

    def delete_authorization_code(self, authorization_code):
        with LOCK:
            CODES.pop(authorization_code.code, None)
            STATS["codes_redeemed"] += 1

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        # Check and mark in one step: two concurrent redemptions of one refresh
        # token are a reuse, never two successes.
        with LOCK:
            token = BY_REFRESH.get(refresh_token)
            if token is None or token.grant_id in REVOKED_GRANTS:
                return None
            if token.refresh_used:
                STATS["reuse_detected"] += 1
                REVOKED_GRANTS.add(token.grant_id)
                return None
            token.refresh_used = True
            if token.is_expired():
                STATS["late_refreshes"] += 1
            refreshes = STATS["refreshes"]
            refreshes[token.grant_id] = refreshes.get(token.grant_id, 0) + 1
            return token

    def authenticate_user(self, refresh_token):
        return refresh_token.user

    def revoke_old_credential(self, refresh_token):
        refresh_token.refresh_used = True


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with LOCK:
            return BY_REFRESH.get(token_string) or BY_ACCESS.get(token_string)

    def revoke_token(self, token, req):
        # Revoking either token ends the whole grant.
        with LOCK:
            REVOKED_GRANTS.add(token.grant_id)
            STATS["revocations"] += 1


def save_token(data, req):
    if getattr(req, "refresh_token", None) is not None:
        grant_id = req.refresh_token.grant_id
    else:
        grant_id = str(uuid.uuid4())
    user = req.user if req.user is not None else f"client:{CLIENT_ID}"
    token = Token(grant_id, user, data.get("scope", ""), data)
    with LOCK:
        BY_ACCESS[token.access_token] = token
        if token.refresh_token:
            BY_REFRESH[token.refresh_token] = token


def create_app(expires_in):
    app = Flask(__name__)
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        "authorization_code": expires_in,
        "refresh_token": expires_in,
        "client_credentials": expires_in,
    }
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
    server = AuthorizationServer(app, query_client=lambda client_id: CLIENT if client_id == CLIENT_ID else None, save_token=save_token)
    server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_endpoint(Revocation)

    @app.post("/revoke")
    def revoke():
        return server.create_endpoint_response(Revocation.ENDPOINT_NAME)

    @app.get("/authorize")
    def authorize():
        user = request.args.get("user")
        if not user:
            return "no user logged in", 401
        return server.create_authorization_response(grant_user=user)

    @app.post("/token")
    def token():
        return server.create_token_response()

    @app.get("/whoami")
    def whoami():
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            return jsonify(error="invalid_token"), 401
        with LOCK:
            token = BY_ACCESS.get(header[len("Bearer "):])
        if token is None or token.is_expired() or token.is_revoked():
            return jsonify(error="invalid_token"), 401
        return jsonify(user=token.user)

    @app.post("/admin/seed")
    def seed():
        body = request.get_json()
        grants_out = []
        for index in range(int(body["count"])):
            user = f"{body.get('prefix', 'user')}-{index}"
            data = {
                "access_token": secrets.token_urlsafe(24),
                "refresh_token": secrets.token_urlsafe(32),
                "expires_in": int(body.get("expires_in", expires_in)),
            }
            save_token(data, type("Seed", (), {"user": user, "refresh_token": None})())
            grants_out.append({"user": user, **data})
        return jsonify(grants=grants_out)

    @app.get("/admin/stats")
    def stats():
        with LOCK:
            return jsonify(
                refreshes=STATS["refreshes"],
                reuse_detected=STATS["reuse_detected"],
                late_refreshes=STATS["late_refreshes"],
                revoked_grants=len(REVOKED_GRANTS),
                codes_redeemed=STATS["codes_redeemed"],
                revocations=STATS["revocations"],
            )

    @app.get("/admin/tokens")
    def tokens():
        # Every access and refresh token issued, for canary checks that none leaked anywhere.
        with LOCK:
            issued = [token.access_token for token in BY_ACCESS.values()]
            issued += [token.refresh_token for token in BY_ACCESS.values() if token.refresh_token]
        return jsonify(tokens=issued)

    @app.get("/.well-known/oauth-authorization-server")
    def metadata():
        base = request.host_url.rstrip("/")
        return jsonify(
            issuer=base,
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            code_challenge_methods_supported=["S256"],
            grant_types_supported=["authorization_code", "refresh_token"],
        )

    return app


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--expires-in", type=int, default=3)
    parser.add_argument("--print-url", action="store_true", help="print http://127.0.0.1:PORT instead of JSON")
    args = parser.parse_args()
    app = create_app(args.expires_in)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    if args.print_url:
        print(f"http://127.0.0.1:{server.server_port}", flush=True)
    else:
        print(json.dumps({"port": server.server_port}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
