// Interop driver: the TypeScript SDK v2 (`@modelcontextprotocol/client` 2.4) doing the human
// OAuth flow through a protected virtual server, with no browser.
// Usage: node ts_oauth_client.mjs ISSUER URL OTHER_URL SPEC.json
//
// The SDK does everything from the first 401: protected resource metadata discovery (RFC 9728),
// authorization server metadata (RFC 8414), dynamic client registration (RFC 7591), PKCE S256 and
// the authorize URL. Its provider's redirectToAuthorization plays the user agent: it GETs the URL
// without following the redirect (the gateway runs with auto-approved consent) and keeps the
// redirect's query; the driver hands that to transport.finishAuth (which checks `iss`, RFC 9207),
// the SDK redeems the code, and a new session lists and calls tools with the token. The token
// must then verify against the issuer's JWKS with this virtual server as audience and be
// refused at OTHER_URL, another protected virtual server.
import { createPublicKey, createVerify } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { interopRequire, main, packageVersion, Report, runSpec } from './spec_checks.mjs';

const LABEL = 'ts-oauth-authcode';
const MODERN = '2026-07-28';
// Nothing listens there: the provider reads the authorization response from `Location`.
const REDIRECT_URI = 'http://127.0.0.1:9/callback';
const require = interopRequire();
const { Client, StreamableHTTPClientTransport, UnauthorizedError } = require('@modelcontextprotocol/client');
const sdkVersion = packageVersion('@modelcontextprotocol/client');

/** The SDK's OAuthClientProvider, in memory, with a headless user agent. */
class HeadlessProvider {
  constructor(issuer, report) {
    this.issuer = issuer;
    this.report = report;
    this.authorizeUrls = [];
    this.callback = undefined;
    this.saved = {};
  }

  get redirectUrl() {
    return REDIRECT_URI;
  }

  get clientMetadata() {
    return {
      client_name: 'gatehouse interop (ts)',
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation() {
    return this.saved.client;
  }

  saveClientInformation(info) {
    this.saved.client = info;
  }

  tokens() {
    return this.saved.tokens;
  }

  saveTokens(tokens) {
    this.saved.tokens = tokens;
  }

  saveCodeVerifier(verifier) {
    this.saved.verifier = verifier;
  }

  codeVerifier() {
    return this.saved.verifier;
  }

  async redirectToAuthorization(url) {
    const report = this.report;
    this.authorizeUrls.push(url.href);
    report.check(url.href.startsWith(`${this.issuer}/authorize?`), "authorize URL on the gateway's AS", url.href);
    report.check(url.searchParams.get('code_challenge_method') === 'S256', 'authorize request uses PKCE S256', url.href);
    report.check(url.searchParams.has('resource'), 'authorize request names the resource (RFC 8707)', url.href);
    const response = await fetch(url, { redirect: 'manual' });
    const location = response.headers.get('location') ?? '';
    report.check(
      [302, 303].includes(response.status) && location.startsWith(REDIRECT_URI),
      'authorize redirects to the registered redirect URI (consent auto-approved)',
      `${response.status} Location=${location}`,
    );
    const params = new URL(location, REDIRECT_URI).searchParams;
    report.check(params.get('iss') === this.issuer, 'authorization response carries iss (RFC 9207)', location);
    report.check(params.get('state') === url.searchParams.get('state'), 'authorization response echoes state', location);
    report.check(response.headers.get('x-frame-options') === 'DENY', 'authorization response is never framed');
    this.callback = params;
  }
}

/** Returns the base64url-decoded JSON of a JWT segment. */
function segment(token, index) {
  return JSON.parse(Buffer.from(token.split('.')[index], 'base64url').toString('utf8'));
}

/** The token is an RFC 9068 JWT from the issuer for this virtual server, verified with the JWKS. */
async function checkAccessToken(token, issuer, url, report) {
  const header = segment(token, 0);
  const claims = segment(token, 1);
  report.check(header.typ === 'at+jwt', 'token typ at+jwt', JSON.stringify(header));
  const metadata = await (await fetch(`${issuer}/.well-known/oauth-authorization-server`)).json();
  const jwks = await (await fetch(metadata.jwks_uri)).json();
  const jwk = (jwks.keys ?? []).find((key) => key.kid === header.kid);
  report.check(jwk !== undefined, 'token kid is in the JWKS', header.kid);
  if (jwk === undefined) return;
  const [head, body, signature] = token.split('.');
  const verifier = createVerify('SHA256');
  verifier.update(`${head}.${body}`);
  const valid = header.alg === 'ES256'
    && verifier.verify({ key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'));
  report.check(valid, 'token signature verifies against the JWKS (ES256)');
  const now = Math.floor(Date.now() / 1000);
  report.check(claims.iss === issuer && claims.aud === url && claims.exp > now, 'token iss, aud = this virtual server, exp', JSON.stringify(claims));
  report.check(Boolean(claims.sub) && Boolean(claims.client_id) && Boolean(claims.jti), `token sub ${claims.sub}, client_id ${claims.client_id}`);
}

/** The same token is refused at another protected virtual server, naming that server's metadata. */
async function refusedElsewhere(token, otherUrl, report) {
  const response = await fetch(otherUrl, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, accept: 'application/json, text/event-stream', 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
  });
  const challenge = response.headers.get('www-authenticate') ?? '';
  report.check(response.status === 401, `the same token is refused at ${otherUrl}`, `${response.status}`);
  report.check(
    challenge.startsWith('Bearer') && challenge.includes(`oauth-protected-resource${new URL(otherUrl).pathname}`),
    "the refusal names that server's resource metadata",
    challenge,
  );
}

/** Connects a modern-era client through `provider` and runs `body` with it. */
async function session(url, provider, body) {
  const client = new Client({ name: 'gatehouse-interop-ts-oauth', version: sdkVersion }, { versionNegotiation: { mode: { pin: MODERN } } });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await client.connect(transport);
  try {
    return await body(client, transport);
  } finally {
    await client.close();
  }
}

await main(LABEL, async () => {
  const [issuer, url, otherUrl, specPath] = process.argv.slice(2);
  if (!specPath) {
    console.error('usage: node ts_oauth_client.mjs ISSUER URL OTHER_URL SPEC.json');
    return 2;
  }
  const spec = JSON.parse(readFileSync(specPath, 'utf8'));
  const report = new Report(LABEL);
  const provider = new HeadlessProvider(issuer, report);
  // The first session meets the 401: the SDK discovers, registers and sends the user agent to
  // /authorize, then reports UnauthorizedError; finishAuth redeems the code.
  let unauthorized = false;
  try {
    await session(url, provider, async (client) => runSpec(report, client, spec));
  } catch (error) {
    if (!(error instanceof UnauthorizedError)) throw error;
    unauthorized = true;
  }
  report.check(unauthorized, 'the first request without a token is refused (UnauthorizedError)');
  report.check(provider.callback !== undefined, 'the SDK sent the user agent to /authorize');
  if (provider.callback === undefined) return report.finish();
  const finisher = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await finisher.finishAuth(provider.callback);
  report.check(Boolean(provider.saved.client?.client_id), 'the SDK registered itself by DCR', JSON.stringify(provider.saved.client ?? {}));
  const token = provider.saved.tokens?.access_token;
  report.check(Boolean(token), 'the SDK redeemed the code for an access token');
  if (!token) return report.finish();
  report.check(provider.saved.tokens.token_type?.toLowerCase() === 'bearer', 'token_type Bearer', provider.saved.tokens.token_type);
  await session(url, provider, async (client) => {
    report.check(client.getProtocolEra() === 'modern', `negotiated ${client.getProtocolEra()} ${client.getNegotiatedProtocolVersion()} (client ${sdkVersion})`);
    await runSpec(report, client, spec);
  });
  report.check(provider.authorizeUrls.length === 1, 'exactly one authorization round trip', provider.authorizeUrls.join(' '));
  await checkAccessToken(token, issuer, url, report);
  await refusedElsewhere(token, otherUrl, report);
  return report.finish();
});
