#!/usr/bin/env bash
# The whole Gatehouse test suite, exactly as CI runs it (`.ci/run` calls this script).
# Installs its own real peers (Node 22, the MCP conformance suite, the Python and TypeScript SDKs,
# reference MCP servers) into a cache outside the clone, then runs lint, Rust tests and interop.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/gatehouse-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Backend suites read these; CI always sets them so a dead server fails instead of skipping.
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

step() { printf '\n==> %s\n' "$*"; }

step "format"
cargo fmt --all --check

step "lint"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "deployment manifests (helm chart, deploy/k8s, compose)"
bash deploy/tests/run.sh

step "real peers (node 22, conformance, MCP SDKs, reference servers)"
bash tests/interop/install.sh
# shellcheck disable=SC1091
source "${GATEHOUSE_INTEROP_DIR:-$HOME/.cache/gatehouse-interop}/env.sh"

step "real SIEM receivers (rsyslog, moto, rotel)"
bash audit-svc/tests/install-receivers.sh
# shellcheck disable=SC1091
source "${GATEHOUSE_AUDIT_RECEIVERS_DIR:-$HOME/.cache/gatehouse-audit-receivers}/env.sh"

step "vault-svc's OAuth provider peer (authlib + flask in the interop venv)"
"$GATEHOUSE_INTEROP_PYTHON" -m pip install --quiet --disable-pip-version-check "flask==3.1.3"
export GATEHOUSE_VAULT_PEERS_PYTHON="$GATEHOUSE_INTEROP_PYTHON"

step "load balancer for the multi-replica harness (haproxy)"
bash tests/scaleout/install-haproxy.sh
# shellcheck disable=SC1091
source "${GATEHOUSE_SCALEOUT_DIR:-$HOME/.cache/gatehouse-scaleout}/env.sh"

step "build binaries"
cargo build --workspace --bins --locked

step "rust tests"
cargo nextest run --workspace --all-features --locked --profile ci
cargo test --workspace --doc --locked

step "interop through the gateway"
GATEHOUSE_BIN="$CARGO_TARGET_DIR/debug/gatehouse" bash tests/interop/run.sh

step "web console in headless Chromium (screenshots to docs/console/)"
GATEHOUSE_BIN="$CARGO_TARGET_DIR/debug/gatehouse" GATEHOUSE_ECHO_BIN="$CARGO_TARGET_DIR/debug/mcp-echo" \
    bash tests/console/run.sh
