#!/usr/bin/env bash
# The deployment checks, as CI runs them (`tests/run.sh` step "deployment manifests"):
#   1. the chart lints (helm lint --strict), its values schema refuses a literal secret, and
#      deploy/k8s/ is exactly what deploy/render.sh renders from it today;
#   2. the rendered manifests, and a rendering with the optional parts switched the other way,
#      pass check_manifests.py (Kubernetes schemas, probes, selectors, routes' backends, secrets);
#   3. the compose trial passes check_compose.py (Compose schema, env files, mounts, public URL);
#   4. each check fails on a manifest broken on purpose, so a check that cannot fail is caught.
# The Ingress routes are checked against the services' routers by the e2e test `deploy`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
deploy="$(dirname "$here")"
# shellcheck disable=SC1090
source "$(bash "$here/install.sh")"
python="$GATEHOUSE_DEPLOY_PYTHON"
chart="$deploy/helm/gatehouse"
values="$chart/values.yaml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf 'FAIL %s\n' "$*"; }

if "$GATEHOUSE_HELM" lint --strict "$chart" >"$work/lint.log" 2>&1; then
    pass "the chart lints"
else
    fail "the chart lints: $(cat "$work/lint.log")"
fi

# values.schema.json: a secret is a reference, so Helm itself refuses a value next to it.
if "$GATEHOUSE_HELM" template gatehouse "$chart" --set secrets.vaultKek.value=hunter2 \
    >/dev/null 2>"$work/schema.log"; then
    fail "helm accepted a literal secret value in values"
elif grep -q "additional properties 'value' not allowed" "$work/schema.log"; then
    pass "helm refuses a literal secret value in values"
else
    fail "helm refused a literal secret value otherwise: $(cat "$work/schema.log")"
fi

GATEHOUSE_HELM="$GATEHOUSE_HELM" bash "$deploy/render.sh" "$work/rendered" 2>/dev/null
if diff -u "$deploy/k8s/gatehouse.yaml" "$work/rendered/gatehouse.yaml" >"$work/render.diff"; then
    pass "deploy/k8s is rendered from the chart as it is"
else
    fail "deploy/k8s is stale: run deploy/render.sh"
    cat "$work/render.diff"
fi

# Runs a checker; counts its result lines; succeeds when it passed.
run_checker() {
    local output status=0
    output="$("$python" "$@")" || status=$?
    printf '%s\n' "$output"
    passed=$((passed + $(grep -c '^PASS' <<<"$output" || true)))
    failed=$((failed + $(grep -c '^FAIL' <<<"$output" || true)))
    return "$status"
}

run_checker "$here/check_manifests.py" "$deploy/k8s/gatehouse.yaml" "$values" || true

"$GATEHOUSE_HELM" template gatehouse "$chart" --namespace gatehouse \
    --set edge.autoscaling.enabled=false,authz.autoscaling.enabled=false \
    --set vault.autoscaling.enabled=false,audit.autoscaling.enabled=false \
    --set ingress.tlsSecretName=,ingress.className=,networkPolicy.enabled=false \
    --set telemetry.otlp_endpoint=http://otel-collector.observability:4317 >"$work/variant.yaml"
echo "--- variant: fixed replica counts, no TLS, no NetworkPolicy, OTLP export"
run_checker "$here/check_manifests.py" "$work/variant.yaml" "$values" || true

run_checker "$here/check_compose.py" "$deploy/compose/compose.yaml" || true

# Expects the checker ($2…) to fail with the FAIL line $1 on input broken on purpose.
expect_failure() {
    local wanted="$1" output
    shift
    if output="$("$python" "$@" 2>&1)"; then
        fail "a broken input passed: expected 'FAIL $wanted'"
    elif grep -q "^FAIL $wanted" <<<"$output"; then
        pass "catches: $wanted"
    else
        fail "a broken input failed otherwise than 'FAIL $wanted': $output"
    fi
}

manifests="$deploy/k8s/gatehouse.yaml"
sed 's/maxUnavailable: 1/maxUnavailabl: 1/' "$manifests" >"$work/schema.yaml"
expect_failure "every manifest matches the kubernetes schema" \
    "$here/check_manifests.py" "$work/schema.yaml" "$values"
sed 's/httpGet: {path: \/healthz, port: http}/httpGet: {path: \/healthz, port: 9090}/' \
    "$manifests" >"$work/probe.yaml"
expect_failure "every container probes a port it exposes" \
    "$here/check_manifests.py" "$work/probe.yaml" "$values"
sed 's/^\( *\)- name: GATEHOUSE_AUDIT__STORE__POSTGRES_URL$/&\n\1  value: postgres:\/\/audit:hunter2@db\/audit/' \
    "$manifests" >"$work/literal.yaml"
expect_failure "secrets arrive only as secret references" \
    "$here/check_manifests.py" "$work/literal.yaml" "$values"
# Only the HPA's scaleTargetRef is indented four spaces: it now scales a Deployment that is gone.
sed 's/^    name: gatehouse-edge$/    name: gatehouse-edge-old/' "$manifests" >"$work/selector.yaml"
expect_failure "pdbs and hpas match the deployments" \
    "$here/check_manifests.py" "$work/selector.yaml" "$values"
# vault's metrics port no longer matches where its configuration says it serves /metrics.
sed 's/^\( *\)listen_addr = "0.0.0.0:9464"$/\1listen_addr = "0.0.0.0:9465"/' "$manifests" >"$work/metrics.yaml"
expect_failure "every pod is scraped where its service serves metrics" \
    "$here/check_manifests.py" "$work/metrics.yaml" "$values"

compose_dir="$work/compose"
cp -r "$deploy/compose" "$compose_dir"
sed 's/^    ports: \[/    portz: [/' "$deploy/compose/compose.yaml" >"$compose_dir/compose.yaml"
expect_failure "compose file matches the compose specification" \
    "$here/check_compose.py" "$compose_dir/compose.yaml"
sed 's/^    env_file: \[gatehouse.env\]$/&\n    environment: {GATEHOUSE_VAULT__CALLERS__EDGE_TOKEN: leaked}/' \
    "$deploy/compose/compose.yaml" >"$compose_dir/compose.yaml"
expect_failure "secrets come only from ignored env files" \
    "$here/check_compose.py" "$compose_dir/compose.yaml"

echo "deploy: $passed passed, $failed failed"
((failed == 0))
