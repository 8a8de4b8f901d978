#!/usr/bin/env bash
# The console in headless Chromium: installs its peers (tests/console/install.sh), then runs
# console.test.mjs against the built `gatehouse` and `mcp-echo` binaries. Screenshots go to
# docs/console/ (committed; the README shows them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
env_file="$(bash "$here/install.sh")"
# shellcheck disable=SC1090
source "$env_file"
export GATEHOUSE_BIN="${GATEHOUSE_BIN:-$target/debug/gatehouse}"
export GATEHOUSE_ECHO_BIN="${GATEHOUSE_ECHO_BIN:-$target/debug/mcp-echo}"
export GATEHOUSE_CONSOLE_SHOTS="${GATEHOUSE_CONSOLE_SHOTS:-$root/docs/console}"
[[ -x "$GATEHOUSE_BIN" ]] || { echo "console: $GATEHOUSE_BIN is missing (cargo build -p gatehouse)" >&2; exit 1; }
[[ -x "$GATEHOUSE_ECHO_BIN" ]] || { echo "console: $GATEHOUSE_ECHO_BIN is missing (cargo build -p e2e --bins)" >&2; exit 1; }
# ES modules resolve packages next to the importing file (NODE_PATH does not apply to them), so the
# test runs from a copy beside the installed node_modules.
cp "$here/console.test.mjs" "$GATEHOUSE_CONSOLE_NODE_PATH/../console.test.mjs"
exec "$GATEHOUSE_CONSOLE_NODE" --test --test-reporter=spec "$GATEHOUSE_CONSOLE_NODE_PATH/../console.test.mjs"
