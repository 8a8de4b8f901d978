#!/usr/bin/env bash
# Installs what the console's browser test needs, outside the clone:
#   - Debian's `chromium` (apt-get, as root) when /usr/bin/chromium is missing
#   - playwright-core (drives that Chromium; no bundled browser download) and the TypeScript MCP
#     SDK (the real client whose calls the console must show), pinned in package-lock.json
# into ${GATEHOUSE_CONSOLE_DIR:-$HOME/.cache/gatehouse-console}. Idempotent: the npm step is keyed
# by the sha256 of the lock file and skipped when already done. Writes "$DIR/env.sh".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${GATEHOUSE_CONSOLE_DIR:-$HOME/.cache/gatehouse-console}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

log() { printf 'console-install: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ ! -x /usr/bin/chromium ]]; then
    [[ "$(id -u)" == 0 ]] || die "/usr/bin/chromium is missing and installing it needs root (apt-get install chromium)"
    log "installing Debian's chromium"
    # Everything but the env file's path goes to stderr: run.sh reads this script's stdout.
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
fi
[[ -x /usr/bin/chromium ]] || die "chromium did not provide /usr/bin/chromium"

# Node 22 from the interop install when present (run.sh installs it first), else the system node.
interop_env="${GATEHOUSE_INTEROP_DIR:-$HOME/.cache/gatehouse-interop}/env.sh"
if [[ -f "$interop_env" ]]; then
    # shellcheck disable=SC1090
    source "$interop_env"
fi
node_bin="$(command -v node)" || die "node not found on PATH"
npm_bin="$(command -v npm)" || die "npm not found on PATH"

key="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -d' ' -f1)-node$("$node_bin" --version)"
if [[ -f "$dir/.stamp-npm" && "$(cat "$dir/.stamp-npm")" == "$key" && -d "$dir/npm/node_modules" ]]; then
    log "npm packages already installed"
else
    log "installing playwright-core and the MCP SDK into $dir/npm"
    rm -rf "$dir/npm" && mkdir -p "$dir/npm"
    cp "$here/package.json" "$here/package-lock.json" "$dir/npm/"
    (cd "$dir/npm" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 "$npm_bin" ci --no-audit --no-fund --loglevel=error) >&2
    printf '%s\n' "$key" >"$dir/.stamp-npm"
fi

cat >"$dir/env.sh" <<ENV
export GATEHOUSE_CONSOLE_NODE="$node_bin"
export GATEHOUSE_CONSOLE_NODE_PATH="$dir/npm/node_modules"
export GATEHOUSE_CONSOLE_CHROMIUM=/usr/bin/chromium
ENV
printf '%s\n' "$dir/env.sh"
