"""The upstream identity provider of authz-svc's federation tests: an OpenID Connect provider
built on authlib (its authorization code grant with PKCE and its OpenID Connect extension sign
the ID tokens), also acting as the enterprise IdP that mints ID-JAGs.

Endpoints:
  GET  /.well-known/openid-configuration   OIDC discovery
  GET  /jwks                               the RS256 signing key (public)
  GET  /authorize                          auto-approves the member set by /admin/login
  POST /token                              authlib's token endpoint (client_secret_basic)
  POST /admin/login   {"sub", "groups", "tamper"}
       sets who the next sign-ins are and how the ID token misbehaves: tamper is null, "nonce"
       (a nonce other than the one sent), "iss" (another issuer), "aud" (another audience),
       "azp" (two audiences, azp someone else) or "alg-none" (an unsigned token, alg none).
  POST /admin/id-jag  {"claims": {...}, "header": {...}}
       returns {"assertion": ...}: an ID-JAG (typ oauth-id-jag+jwt, iss this issuer, iat, exp in
       60 s, a fresh jti) signed with the same key; `claims`/`header` add or override fields.
  GET  /admin/stats   {"codes_issued", "tokens_issued"}

Usage: python oidc_idp.py --client-id ID --client-secret SECRET. Prints the issuer URL
(http://127.0.0.1:PORT) on stdout once listening.
"""

import argparse
import base64
import json
import os
import secrets
import sys
import threading
import time

os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

from authlib.integrations.flask_oauth2 import AuthorizationServer  # noqa: E402
from authlib.oauth2.rfc6749 import grants  # noqa: E402
from authlib.oauth2.rfc6749.models import ClientMixin  # noqa: E402
from authlib.oauth2.rfc7636 import CodeChallenge  # noqa: E402
from authlib.oidc.core import AuthorizationCodeMixin  # noqa: E402
from authlib.oidc.core.grants import OpenIDCode  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.jwk import KeySet, RSAKey  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

KEY = RSAKey.generate_key(2048, parameters={"kid": "idp-key-1", "use": "sig", "alg": "RS256"})
LOCK = threading.Lock()
CODES = {}
LOGIN = {"sub": "member-1", "groups": [], "tamper": None}
STATS = {"codes_issued": 0, "tokens_issued": 0}
ISSUER = {"url": ""}


class Client(ClientMixin):
    def __init__(self, client_id, client_secret):
        self.client_id = client_id
        self.client_secret = client_secret

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri.startswith("http://127.0.0.1:")

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "client_secret_basic"

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class AuthCode(AuthorizationCodeMixin):
    def __init__(self, code, redirect_uri, scope, user, challenge, method, nonce):
        self.code = code
        self.redirect_uri = redirect_uri
        self.scope = scope
        self.user = user
        self.code_challenge = challenge
        self.code_challenge_method = method
        self.nonce = nonce
        self.auth_time = int(time.time())

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_auth_time(self):
        return self.auth_time

    def get_nonce(self):
        return self.nonce


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

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
                data.get("nonce"),
            )
            STATS["codes_issued"] += 1

    def query_authorization_code(self, code, client):
        with LOCK:
            return CODES.get(code)

    def delete_authorization_code(self, authorization_code):
        with LOCK:
            CODES.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class OpenIDConnect(OpenIDCode):
    def resolve_client_private_key(self, client):
        return KeySet([KEY])

    def get_client_algorithm(self, client):
        return "RS256"

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": KEY.kid}

    def get_client_claims(self, client):
        return {"iss": ISSUER["url"], "aud": [client.get_client_id()], "exp": int(time.time()) + 300}

    def exists_nonce(self, nonce, req):
        with LOCK:
            return any(code.nonce == nonce for code in CODES.values())

    def generate_user_info(self, user, scope):
        return {"sub": user["sub"], "groups": user["groups"]}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tamper(id_token, mode, client_id):
    """Returns `id_token` re-issued the way `mode` misbehaves."""
    header_part, payload_part, _ = id_token.split(".")
    header = json.loads(unb64(header_part))
    claims = json.loads(unb64(payload_part))
    if mode == "nonce":
        claims["nonce"] = "a-nonce-this-sign-in-never-sent"
    elif mode == "iss":
        claims["iss"] = ISSUER["url"] + "/elsewhere"
    elif mode == "aud":
        claims["aud"] = ["another-client"]
    elif mode == "azp":
        claims["aud"] = [client_id, "another-client"]
        claims["azp"] = "another-client"
    elif mode == "alg-none":
        none_header = b64(json.dumps({"alg": "none"}).encode())
        return f"{none_header}.{b64(json.dumps(claims).encode())}."
    else:
        raise ValueError(f"unknown tamper mode {mode}")
    return jwt.encode(header, claims, KEY)


def create_app(client_id, client_secret):
    app = Flask(__name__)
    client = Client(client_id, client_secret)
    server = AuthorizationServer(
        app,
        query_client=lambda wanted: client if wanted == client_id else None,
        save_token=lambda token, req: None,
    )
    server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True), OpenIDConnect(require_nonce=True)])

    @app.get("/.well-known/openid-configuration")
    def discovery():
        base = ISSUER["url"]
        return jsonify(
            issuer=base,
            authorization_endpoint=f"{base}/authorize",
            token_endpoint=f"{base}/token",
            jwks_uri=f"{base}/jwks",
            response_types_supported=["code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            code_challenge_methods_supported=["S256"],
            token_endpoint_auth_methods_supported=["client_secret_basic"],
        )

    @app.get("/jwks")
    def jwks():
        return jsonify(KeySet([KEY]).as_dict(private=False))

    @app.get("/authorize")
    def authorize():
        with LOCK:
            user = {"sub": LOGIN["sub"], "groups": list(LOGIN["groups"])}
        return server.create_authorization_response(grant_user=user)

    @app.post("/token")
    def token():
        response = server.create_token_response()
        with LOCK:
            mode = LOGIN["tamper"]
            if response.status_code == 200:
                STATS["tokens_issued"] += 1
        if response.status_code == 200 and mode:
            body = json.loads(response.get_data())
            body["id_token"] = tamper(body["id_token"], mode, client_id)
            response.set_data(json.dumps(body))
        return response

    @app.post("/admin/login")
    def login():
        body = request.get_json()
        with LOCK:
            LOGIN["sub"] = body["sub"]
            LOGIN["groups"] = body.get("groups", [])
            LOGIN["tamper"] = body.get("tamper")
        return jsonify(ok=True)

    @app.post("/admin/id-jag")
    def id_jag():
        body = request.get_json()
        now = int(time.time())
        claims = {"iss": ISSUER["url"], "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(16)}
        claims.update(body.get("claims", {}))
        header = {"alg": "RS256", "kid": KEY.kid, "typ": "oauth-id-jag+jwt"}
        header.update(body.get("header", {}))
        return jsonify(assertion=jwt.encode(header, claims, KEY))

    @app.get("/admin/stats")
    def stats():
        with LOCK:
            return jsonify(STATS)

    return app


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    args = parser.parse_args()
    app = create_app(args.client_id, args.client_secret)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    ISSUER["url"] = f"http://127.0.0.1:{server.server_port}"
    print(ISSUER["url"], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
