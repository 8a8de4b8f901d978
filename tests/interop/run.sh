#!/usr/bin/env bash
# Interop suite: real MCP peers through a running Gatehouse.
#
#   GATEHOUSE_BIN=/path/to/gatehouse tests/interop/run.sh            # the full suite
#   tests/interop/run.sh --direct-only                               # peers only, no gateway
#
# Needs the peers from install.sh (it sources "$GATEHOUSE_INTEROP_DIR/env.sh"); builds nothing.
# Starts the downstreams (the conformance fixture and a FastMCP server over HTTP; Gatehouse itself
# runs server-everything over stdio), writes a gatehouse config, starts `gatehouse up`, then runs:
#   - the conformance suite in `server` mode against the fixture directly (proves the fixture) and
#     through /v/conformance/mcp, for --requirements 2025-11-25 and 2026-07-28, the gateway runs
#     with the expected failures of conformance-baseline.yml;
#   - the Python (modern, legacy) and TypeScript (v1 legacy, v2 modern) SDK drivers against
#     /v/combined/mcp, checking curation (hidden, renamed, re-described, prefixed tools);
#   - the Python driver against /v/legacy-sse/mcp (the FastMCP server over legacy HTTP+SSE);
#   - OAuth with the gateway's own AS (auto-approved consent): the Python SDK's OAuthClientProvider
#     (DCR, PKCE, authorize, token), ClientCredentialsOAuthProvider (a DCR-registered agent) and
#     PrivateKeyJWTOAuthProvider (an agent bundle created with `gatehouse agents create --jwks`) on
#     both eras through /v/protected/mcp, each token refused at /v/protected-b/mcp; the same
#     OAuthClientProvider with a URL client id (CIMD: a metadata document served over https); and
#     `conformance authorization` against the issuer, driven headless; the TypeScript SDK v2
#     (`@modelcontextprotocol/client` 2.4) doing the same human flow (DCR, PKCE, authorize,
#     finishAuth, tools/call) through /v/protected/mcp, its token refused at /v/protected-b/mcp;
#   - policy through the same SDK clients at /v/policed/mcp: a member outside the `finance` group
#     and an agent neither see nor can call `add`;
#   - scope step-up through the Python SDK at /v/stepup/mcp: 403 insufficient_scope naming the
#     scope, which the SDK's OAuthClientProvider obtains and retries with by itself;
#   - DLP through the Python SDK at /v/guarded/mcp: a card in a tool result comes back masked, and
#     an argument with an SSN is refused and absent from FastMCP's own record of what it received;
#   - killing the server-everything child and calling it again (the stdio connector restarts);
#   - per-member credentials (a second `gatehouse up` with two members): the Python SDK logs in as
#     each member, gets vault-svc's authorization link as a tool error, the driver follows it at
#     the authlib provider of vault-svc's tests, and the retried call reaches `mcp-echo --whoami`
#     as that member; no downstream token in any response, log line or data file (--only-vault
#     runs this case alone).
# Everything it starts is killed on exit. The last line is `interop: N passed, M failed`; the exit
# status is non-zero when anything failed. GATEHOUSE_INTEROP_KEEP=1 keeps the work directory.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
interop_dir="${GATEHOUSE_INTEROP_DIR:-$HOME/.cache/gatehouse-interop}"
direct_only=0
only_vault=0
for arg in "$@"; do
    case "$arg" in
        --direct-only) direct_only=1 ;;
        --only-vault) only_vault=1 ;;
        -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "run.sh: unknown argument $arg" >&2; exit 64 ;;
    esac
done

say() { printf 'interop: %s\n' "$*"; }
die() { say "error: $*" >&2; echo "interop: 0 passed, 1 failed"; exit 1; }

[[ -f "$interop_dir/env.sh" ]] || die "$interop_dir/env.sh missing: run tests/interop/install.sh first"
# shellcheck disable=SC1091
source "$interop_dir/env.sh"
if [[ $direct_only -eq 0 ]]; then
    [[ -n "${GATEHOUSE_BIN:-}" ]] || die "GATEHOUSE_BIN is not set (path to the built gatehouse binary)"
    [[ -x "$GATEHOUSE_BIN" ]] || die "GATEHOUSE_BIN=$GATEHOUSE_BIN is not an executable file"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/gatehouse-interop.XXXXXX")"
pids=()
passed=0
failed=0
failures=()

# ---------------------------------------------------------------- process management

# Stops every process group we started: SIGTERM, then SIGKILL after a deadline.
cleanup() {
    local pid deadline
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
    deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "process $pid ignored SIGTERM for 15s, killing it"
            kill -KILL -- "-$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
    done
    if [[ "${GATEHOUSE_INTEROP_KEEP:-0}" == 1 ]]; then
        say "kept work directory $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts "$@" in its own process group (so cleanup reaches its children), logging to $1's log.
# Sets $started to its pid.
start() {
    local log="$1"
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    started=$!
    pids+=("$started")
}

# Returns a free loopback TCP port.
free_port() {
    "$GATEHOUSE_INTEROP_PYTHON" -c \
        'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Waits until 127.0.0.1:$2 accepts connections, or fails after $3 seconds or if pid $4 exits.
wait_port() {
    local name="$1" port="$2" timeout="$3" pid="$4" log="$5"
    local deadline=$((SECONDS + timeout))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited before listening on port $port; its log:"
            tail -n 40 "$log" | sed 's/^/    /'
            return 1
        fi
        if ((SECONDS >= deadline)); then
            say "$name did not listen on port $port within ${timeout}s; its log:"
            tail -n 40 "$log" | sed 's/^/    /'
            return 1
        fi
        sleep 0.1
    done
}

# Waits until file $2 contains the exact line $3, or fails after $4 seconds or if pid $5 exits.
wait_line() {
    local name="$1" log="$2" line="$3" timeout="$4" pid="$5"
    local deadline=$((SECONDS + timeout))
    until grep -qxF -- "$line" "$log" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name exited before printing '$line'; its output:"
            tail -n 60 "$log" | sed 's/^/    /'
            return 1
        fi
        if ((SECONDS >= deadline)); then
            say "$name did not print '$line' within ${timeout}s; its output:"
            tail -n 60 "$log" | sed 's/^/    /'
            return 1
        fi
        sleep 0.1
    done
}

# ---------------------------------------------------------------- result bookkeeping

record() {
    local name="$1" status="$2"
    if [[ "$status" -eq 0 ]]; then
        passed=$((passed + 1))
        say "PASS $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        say "FAIL $name (exit $status)"
    fi
}

# Prints every failing conformance check under results dir $1 as "scenario: check-id: message".
failing_checks() {
    "$GATEHOUSE_INTEROP_NODE" - "$1" <<'EOF'
const fs = require('node:fs');
const path = require('node:path');
const root = process.argv[2];
for (const dir of fs.existsSync(root) ? fs.readdirSync(root).sort() : []) {
  const file = path.join(root, dir, 'checks.json');
  if (!fs.existsSync(file)) continue;
  const scenario = dir.replace(/^server-/, '').replace(/-\d{4}-\d\d-\d\dT.*$/, '');
  for (const check of JSON.parse(fs.readFileSync(file, 'utf8'))) {
    // The CLI counts WARNING as a failure when --expected-failures is given.
    if (check.status === 'FAILURE' || check.status === 'WARNING') {
      console.log(`    ${check.status} ${scenario}: ${check.id}: ${(check.errorMessage ?? '').slice(0, 300)}`);
    }
  }
}
EOF
}

# Writes the baseline section for requirement set $1 into file $2.
baseline_for() {
    "$GATEHOUSE_INTEROP_PYTHON" - "$here/conformance-baseline.yml" "$1" "$2" <<'EOF'
import sys, yaml
source, revision, target = sys.argv[1:]
with open(source, encoding="utf-8") as file:
    section = (yaml.safe_load(file) or {}).get(revision) or {}
with open(target, "w", encoding="utf-8") as file:
    yaml.safe_dump({"server": section.get("server") or [], "client": section.get("client") or []}, file)
EOF
}

# Runs the conformance server suite: name, url, requirement set, baseline file. The baseline is
# always passed (empty for the fixture itself): with it the CLI also fails on WARNING checks.
conformance() {
    local name="$1" url="$2" revision="$3" baseline="$4"
    local out="$work/results/$name"
    local args=(server --url "$url" --requirements "$revision" -o "$out" --expected-failures "$baseline")
    say "---- $name: conformance server --url $url --requirements $revision"
    timeout 900 "$GATEHOUSE_CONFORMANCE" "${args[@]}" >"$work/$name.log" 2>&1
    local status=$?
    sed -n '/=== SUMMARY ===/,$p' "$work/$name.log"
    if [[ $status -ne 0 ]]; then
        # Kept for the summary too: CI shows only the end of a long run.
        {
            say "failing checks of $name:"
            failing_checks "$out"
            tail -n 5 "$work/$name.log" | sed 's/^/    /'
        } | tee "$work/failing-$name.txt"
    fi
    record "$name" "$status"
}

# Runs one SDK driver: name, then the command.
driver() {
    local name="$1"
    shift
    say "---- $name"
    timeout 120 "$@"
    record "$name" "$?"
}

# Prints the pids of the server-everything processes Gatehouse runs for this suite (identified by
# their working directory, so other suites' copies on the same machine are never touched).
everything_pids() {
    local proc pid
    for proc in /proc/[0-9]*; do
        pid="${proc#/proc/}"
        [[ "$(readlink "$proc/cwd" 2>/dev/null)" == "$work/everything" ]] || continue
        tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -qF -- "$GATEHOUSE_SERVER_EVERYTHING" && echo "$pid"
    done
}

# Kills the stdio downstream behind $1 and expects the next calls to succeed once Gatehouse has
# restarted it (polling with a deadline: the restart backoff is Gatehouse's business).
stdio_restart() {
    local url="$1" victims deadline attempt=0
    victims="$(everything_pids)"
    if [[ -z "$victims" ]]; then
        say "no server-everything process with cwd $work/everything found"
        return 1
    fi
    say "killing server-everything (pid $(echo $victims)) with SIGKILL"
    # shellcheck disable=SC2086
    kill -KILL $victims
    deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        attempt=$((attempt + 1))
        # legacy mode: this check is about the restart, not about the modern-era result shape
        if "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode legacy "$url" \
            "$here/specs/stdio-restart.json" >"$work/restart-attempt.log" 2>&1; then
            cat "$work/restart-attempt.log"
            local now
            now="$(everything_pids)"
            say "call succeeded on attempt $attempt; server-everything now pid $(echo $now)"
            [[ -n "$now" && "$now" != "$victims" ]] || { say "no new server-everything process"; return 1; }
            return 0
        fi
        sleep 0.5
    done
    say "no successful call within 60s of the kill; last attempt:"
    sed 's/^/    /' "$work/restart-attempt.log"
    return 1
}

# Waits until log $2 has a line that is a loopback URL and prints it, or fails after $3 seconds
# or if pid $4 exits.
url_line() {
    local name="$1" log="$2" timeout="$3" pid="$4" url
    local deadline=$((SECONDS + timeout))
    until url="$(grep -m1 -oE '^http://127\.0\.0\.1:[0-9]+[^ ]*' "$log" 2>/dev/null)"; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            say "$name printed no url; its output:" >&2
            tail -n 40 "$log" | sed 's/^/    /' >&2
            return 1
        fi
        sleep 0.1
    done
    echo "$url"
}

# Per-member credentials through the Python SDK: a gatehouse with two members (the built-in login)
# and a per-member connector whose downstream (`mcp-echo --whoami`) accepts only the tokens of the
# authlib provider vault-svc's tests run.
vault_first_use() {
    local provider_pid provider echo_pid downstream port base config gatehouse_pid echo_bin
    echo_bin="$(dirname "$GATEHOUSE_BIN")/mcp-echo"
    [[ -x "$echo_bin" ]] || { say "$echo_bin missing (cargo build -p e2e --bins)"; return 1; }
    start "$work/provider.log" "$GATEHOUSE_INTEROP_PYTHON" "$here/../../vault-svc/tests/peers/oauth_provider.py" \
        --expires-in 600 --print-url
    provider_pid=$started
    provider="$(url_line provider "$work/provider.log" 30 "$provider_pid")" || return 1
    start "$work/whoami.log" "$echo_bin" http --listen 127.0.0.1:0 --whoami "$provider/whoami"
    echo_pid=$started
    downstream="$(url_line mcp-echo "$work/whoami.log" 30 "$echo_pid")" || return 1
    port="$(free_port)"
    base="http://127.0.0.1:$port"
    config="$work/vault-gatehouse.yaml"
    # Test members with test passwords: argon2id PHC strings of interop-alice-pw and interop-bob-pw.
    cat >"$config" <<EOF
connectors:
  - name: own
    http: {url: "$downstream"}
    credentials:
      mode: per_member
      oauth:
        client_id: vault-client
        client_secret_env: GATEHOUSE_INTEROP_VAULT_CLIENT_SECRET
        authorization_endpoint: "$provider/authorize"
        token_endpoint: "$provider/token"
        scopes: [read]
authorization:
  members:
    - {username: alice, password_hash: "\$argon2id\$v=19\$m=19456,t=2,p=1\$/SyjtdQIUVuDrMB/aIf0hA\$2OhqoGiUPFaUH+SvenyEJ7YxFR7c++IgcNpd9qqhxwI"}
    - {username: bob, password_hash: "\$argon2id\$v=19\$m=19456,t=2,p=1\$Yy1JEh/xJuHGD6/umr6R7Q\$aLA5L5tl+8hiiG4ISOp4Z7Titj4H/nFpE5lPaR6h/kE"}
virtual_servers:
  - name: connect
    connectors: [{connector: own, prefix: ""}]
EOF
    mkdir -p "$work/vault-data"
    start "$work/vault-gatehouse.log" env GATEHOUSE_INTEROP_VAULT_CLIENT_SECRET=vault-client-secret \
        "$GATEHOUSE_BIN" up --config "$config" --data "$work/vault-data" --listen "127.0.0.1:$port"
    gatehouse_pid=$started
    wait_line "gatehouse (vault)" "$work/vault-gatehouse.log" "gatehouse ready at $base" 60 "$gatehouse_pid" || return 1
    timeout 180 "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_vault_client.py" "$base" "$base/v/connect/mcp" \
        "$provider" "$work/vault-gatehouse.log" "$work/vault-data" alice:interop-alice-pw bob:interop-bob-pw
}

if [[ $only_vault -eq 1 ]]; then
    [[ -n "${GATEHOUSE_BIN:-}" ]] || die "GATEHOUSE_BIN is not set"
    say "---- gateway-py-vault-first-use"
    vault_first_use
    record "gateway-py-vault-first-use" "$?"
    echo "interop: $passed passed, $failed failed"
    exit $((failed > 0))
fi

# ---------------------------------------------------------------- downstreams

mkdir -p "$work/results" "$work/everything" "$work/data"
fixture_port="$(free_port)"
fast_port="$(free_port)"
sse_port="$(free_port)"

start "$work/fixture.log" "$GATEHOUSE_INTEROP_PYTHON" "$here/fixture/server.py" --port "$fixture_port"
fixture_pid=$started
start "$work/fastmcp.log" "$GATEHOUSE_INTEROP_PYTHON" "$here/servers/fastmcp_server.py" --port "$fast_port"
fast_pid=$started
start "$work/fastmcp-sse.log" "$GATEHOUSE_INTEROP_PYTHON" "$here/servers/fastmcp_server.py" --port "$sse_port" \
    --transport sse
sse_pid=$started
wait_port "conformance fixture" "$fixture_port" 30 "$fixture_pid" "$work/fixture.log" || die "conformance fixture did not start"
wait_port "FastMCP server" "$fast_port" 30 "$fast_pid" "$work/fastmcp.log" || die "FastMCP server did not start"
wait_port "FastMCP SSE server" "$sse_port" 30 "$sse_pid" "$work/fastmcp-sse.log" || die "FastMCP SSE server did not start"
fixture_url="http://127.0.0.1:$fixture_port/mcp"
fast_url="http://127.0.0.1:$fast_port/mcp"
say "conformance fixture at $fixture_url, FastMCP server at $fast_url"

# The fixture itself first: a failure here means the fixture, not the gateway, is broken.
printf 'server: []\nclient: []\n' >"$work/baseline-none.yml"
conformance "direct-conformance-2025-11-25" "$fixture_url" 2025-11-25 "$work/baseline-none.yml"
conformance "direct-conformance-2026-07-28" "$fixture_url" 2026-07-28 "$work/baseline-none.yml"

if [[ $direct_only -eq 1 ]]; then
    spec="$work/fast-direct.json"
    printf '%s\n' '{"present": ["add", "multiply", "whoami", "internal_debug"],' \
        ' "calls": [{"tool": "add", "arguments": {"a": 2, "b": 3}, "text": "5"}]}' >"$spec"
    driver "direct-py-modern" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode modern "$fast_url" "$spec"
    driver "direct-py-legacy" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode legacy "$fast_url" "$spec"
    driver "direct-ts-legacy" "$GATEHOUSE_INTEROP_NODE" "$here/clients/ts_legacy_client.mjs" "$fast_url" "$spec"
    driver "direct-ts-modern" "$GATEHOUSE_INTEROP_NODE" "$here/clients/ts_modern_client.mjs" "$fast_url" "$spec"
else
    # ------------------------------------------------------------ the gateway
    # A throwaway CA for the https server that publishes the CIMD client's metadata document
    "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_cimd_client.py" cert "$work/cimd" \
        || die "could not create the CIMD test certificate"
    config="$work/gatehouse.yaml"
    cat >"$config" <<EOF
# generated by tests/interop/run.sh
connectors:
  - name: everything
    stdio:
      command: "$GATEHOUSE_INTEROP_NODE"
      args: ["$GATEHOUSE_SERVER_EVERYTHING", "stdio"]
      env: {}
      cwd: "$work/everything"
      # node and server-everything's node_modules live in the interop cache
      paths: ["$(dirname "$(dirname "$GATEHOUSE_INTEROP_NODE")")", "$GATEHOUSE_INTEROP_NODE_MODULES"]
  - name: fast
    http: {url: "$fast_url"}
  - name: fixture
    http: {url: "$fixture_url"}
  - name: fast-sse
    sse: {url: "http://127.0.0.1:$sse_port/sse"}
authorization:
  auto_approve_consent: true      # test profile: /authorize redirects straight back (member `test`)
  allow_registered_agents: true   # DCR-registered confidential clients may use client_credentials
  scim: {bearer_token_env: GATEHOUSE_INTEROP_SCIM_TOKEN}   # the SCIM client's bearer token
  # URL client ids: the test's document server is on loopback, with a CA of its own (dev opt-out)
  client_metadata_documents: {allow_local: true, ca_file: "$work/cimd/ca.pem"}
virtual_servers:
  - name: combined
    auth: none
    connectors:
      - connector: everything
        prefix: "ev__"
        allow: ["*"]
        deny: ["get-env", "*long*", "toggle-*"]
        rename: {echo: say}
        describe: {echo: "Repeats what you say"}
      - connector: fast
        deny: ["internal_*"]
        describe: {add: "Adds two integers, via Gatehouse"}
  - name: conformance
    auth: none
    connectors: [{connector: fixture, prefix: ""}]
  - name: legacy-sse
    auth: none
    connectors: [{connector: fast-sse, prefix: "sse__", deny: ["internal_*"]}]
  # OAuth-protected (the default auth): tokens from the gateway's own AS, one audience each
  - name: protected
    connectors: [{connector: fast, deny: ["internal_*"]}]
  - name: protected-b
    connectors: [{connector: fast, deny: ["internal_*"]}]
  # OAuth plus policy: only the finance group may add; the test member and agents are not in it
  - name: policed
    connectors: [{connector: fast, prefix: "", deny: ["internal_*"]}]
  # OAuth plus scopes: calc:read grants multiply, calc:write grants add (step-up)
  - name: stepup
    connectors: [{connector: fast, prefix: "", deny: ["internal_*"]}]
  # DLP: cards in results are masked, an SSN in arguments is blocked before it reaches FastMCP
  - name: guarded
    auth: none
    connectors: [{connector: fast, prefix: "", deny: ["internal_*"]}]
policies:
  cedar: |
    @id("interop-open")
    permit(principal, action, resource);
    @id("only-finance-adds")
    forbid(principal, action == Action::"call_tool", resource in VirtualServer::"policed")
      when { resource.name == "add" }
      unless { principal in Group::"finance" };
  virtual_servers:
    stepup:
      scopes:
        "calc:read": {description: "Multiply numbers", tools: [multiply]}
        "calc:write": {description: "Add numbers", tools: [add]}
dlp:
  rules:
    - virtual_server: guarded
      input: {action: block, detectors: [ssn]}
      output: {action: mask, detectors: [card]}
EOF
    gatehouse_port="$(free_port)"
    base="http://127.0.0.1:$gatehouse_port"
    say "starting $GATEHOUSE_BIN up --config $config --data $work/data --listen 127.0.0.1:$gatehouse_port"
    GATEHOUSE_INTEROP_SCIM_TOKEN="interop-scim-$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')"
    export GATEHOUSE_INTEROP_SCIM_TOKEN
    start "$work/gatehouse.log" "$GATEHOUSE_BIN" up --config "$config" --data "$work/data" \
        --listen "127.0.0.1:$gatehouse_port"
    gatehouse_pid=$started
    wait_line "gatehouse" "$work/gatehouse.log" "gatehouse ready at $base" 60 "$gatehouse_pid" \
        || die "gatehouse did not become ready"
    say "gatehouse ready at $base"

    conformance_url="$base/v/conformance/mcp"
    for revision in 2025-11-25 2026-07-28; do
        baseline_for "$revision" "$work/baseline-$revision.yml"
        conformance "gateway-conformance-$revision" "$conformance_url" "$revision" "$work/baseline-$revision.yml"
    done

    driver "gateway-py-scim" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/scim_client.py" "$base"

    combined="$base/v/combined/mcp"
    spec="$here/specs/combined.json"
    driver "gateway-py-modern" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode modern "$combined" "$spec"
    driver "gateway-py-legacy" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode legacy "$combined" "$spec"
    driver "gateway-ts-legacy" "$GATEHOUSE_INTEROP_NODE" "$here/clients/ts_legacy_client.mjs" "$combined" "$spec"
    driver "gateway-ts-modern" "$GATEHOUSE_INTEROP_NODE" "$here/clients/ts_modern_client.mjs" "$combined" "$spec"

    driver "gateway-py-modern-legacy-sse" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode modern \
        "$base/v/legacy-sse/mcp" "$here/specs/legacy-sse.json"

    # OAuth through the gateway: its AS at the issuer $base, /v/protected/mcp as the resource
    protected="$base/v/protected/mcp"
    protected_b="$base/v/protected-b/mcp"
    for flow in authcode agent; do
        for mode in modern legacy; do
            driver "gateway-py-oauth-$flow-$mode" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_oauth_client.py" \
                "$flow" --mode "$mode" "$base" "$protected" "$protected_b" "$here/specs/protected.json"
        done
    done
    # The TypeScript SDK v2's human flow: discovery, DCR, PKCE, auto-approved consent, finishAuth
    driver "gateway-ts-oauth-authcode" "$GATEHOUSE_INTEROP_NODE" "$here/clients/ts_oauth_client.mjs" \
        "$base" "$protected" "$protected_b" "$here/specs/protected.json"
    # private_key_jwt through the SDK: an agent bundle whose registered JWKS holds the SDK's key
    for mode in modern legacy; do
        driver "gateway-py-oauth-jwt-$mode" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_oauth_client.py" \
            jwt --mode "$mode" --data "$work/data" "$base" "$protected" "$protected_b" "$here/specs/protected.json"
    done
    # CIMD through the SDK: its client_id is the URL of a metadata document served over https
    driver "gateway-py-oauth-cimd" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_cimd_client.py" run \
        "$base" "$protected" "$protected_b" "$here/specs/protected.json" "$work/cimd"
    # Policy through the SDK: a member outside the group and an agent neither see nor call `add`
    for flow in authcode agent; do
        driver "gateway-py-oauth-policy-$flow" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_oauth_client.py" \
            "$flow" --mode modern "$base" "$base/v/policed/mcp" "$protected_b" "$here/specs/policed.json"
    done
    # Step-up through the SDK: a token without calc:write gets 403 insufficient_scope for add; the
    # SDK's OAuthClientProvider obtains calc:write and retries by itself
    driver "gateway-py-oauth-stepup" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_stepup_client.py" \
        "$base" "$base/v/stepup/mcp"
    # DLP through the SDK: a card in a result comes back masked; a blocked SSN never reaches FastMCP
    for mode in modern legacy; do
        driver "gateway-py-dlp-$mode" "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/py_client.py" --mode "$mode" \
            "$base/v/guarded/mcp" "$here/specs/guarded.json"
    done
    say "---- gateway-conformance-authorization: conformance authorization --url $base --resource $protected"
    timeout 180 "$GATEHOUSE_INTEROP_PYTHON" "$here/clients/conformance_authorization.py" "$GATEHOUSE_CONFORMANCE" \
        "$base" "$protected" "$work/results/gateway-conformance-authorization"
    record "gateway-conformance-authorization" "$?"

    say "---- gateway-stdio-restart"
    stdio_restart "$combined"
    record "gateway-stdio-restart" "$?"

    say "---- gateway-py-vault-first-use"
    vault_first_use
    record "gateway-py-vault-first-use" "$?"

    if ! kill -0 "$gatehouse_pid" 2>/dev/null; then
        wait "$gatehouse_pid"
        status=$?
        if ((status > 128)); then
            say "gatehouse died of signal $((status - 128)) ($(kill -l $((status - 128)) 2>/dev/null)) during the run"
        else
            say "gatehouse exited with status $status during the run"
        fi
        say "its output:"
        tail -n 60 "$work/gatehouse.log" | sed 's/^/    /'
        record "gateway-stayed-up" 1
    fi
fi

if ((failed > 0)); then
    say "failed: ${failures[*]}"
    cat "$work"/failing-*.txt 2>/dev/null
    if [[ $direct_only -eq 0 ]]; then
        say "last lines of the gatehouse output:"
        tail -n 30 "$work/gatehouse.log" | sed 's/^/    /'
    fi
fi
echo "interop: $passed passed, $failed failed"
((failed == 0))
