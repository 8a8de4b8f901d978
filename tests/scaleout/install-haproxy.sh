#!/usr/bin/env bash
# Installs HAProxy (Debian's package) for the multi-replica harness and writes
# ${GATEHOUSE_SCALEOUT_DIR:-$HOME/.cache/gatehouse-scaleout}/env.sh exporting GATEHOUSE_HAPROXY.
# Idempotent: a haproxy already on PATH or already unpacked into the cache is reused; otherwise
# the .deb files are downloaded once (kept in the cache) and unpacked there without root.
set -euo pipefail

dir="${GATEHOUSE_SCALEOUT_DIR:-$HOME/.cache/gatehouse-scaleout}"
mkdir -p "$dir/debs" "$dir/root"
dir="$(cd "$dir" && pwd)"
log() { printf 'scaleout-install: %s\n' "$*" >&2; }

haproxy="$(command -v haproxy || true)"
if [[ -z "$haproxy" && -x "$dir/root/usr/sbin/haproxy" ]]; then
    haproxy="$dir/root/usr/sbin/haproxy"
fi
if [[ -z "$haproxy" ]]; then
    log "downloading haproxy and its libraries into $dir/debs"
    apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed; trying the current lists"
    # Only the libraries a minimal Debian lacks; the rest come from the system.
    (cd "$dir/debs" && apt-get download -qq haproxy liblua5.3-0 libopentracing-c-wrapper0 libopentracing1 2>/dev/null \
        || apt-get download -qq haproxy liblua5.3-0)
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
    haproxy="$dir/root/usr/sbin/haproxy"
fi
libs="$dir/root/usr/lib/x86_64-linux-gnu"
if ! LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$haproxy" -v >/dev/null; then
    log "error: $haproxy does not run"
    exit 1
fi
cat >"$dir/env.sh" <<ENV
export GATEHOUSE_HAPROXY="$haproxy"
export GATEHOUSE_HAPROXY_LIBS="$libs"
ENV
log "haproxy: $(LD_LIBRARY_PATH="$libs" "$haproxy" -v | head -1)"
echo "$dir/env.sh"
