"""Checks rendered Kubernetes manifests and the chart's values the way a cluster and a reviewer would.

Usage: check_manifests.py MANIFESTS.yaml VALUES.yaml

No cluster runs here, so each check states one property the cluster (or an operator) relies on:
schema validity against the Kubernetes OpenAPI schemas of the oldest and newest supported
versions, probes on exposed ports, Services, PDBs and HPAs that select their Deployment, an
Ingress whose backends exist, and secrets that arrive only as Secret references. Prints one line
per check and a closing "N passed, M failed" line; exits 1 when any check fails.
"""

import re
import sys
import tomllib

import kubernetes_validate
import yaml

from verdict import Failure, run

# The chart's `kubeVersion` floor and the newest schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")

# Environment variable names that carry secret material and so must come from a Secret.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|KEK|KEY|CREDENTIAL|_URL$", re.IGNORECASE)

# Configuration keys that hold secret material in Gatehouse's config structs; a ConfigMap or the
# values file must never set them (they come from the environment, filled from Secrets).
SECRET_CONFIG_KEY = re.compile(
    r"^\s*\"?(postgres_url|redis_url|edge_token|authz_token|admin_token|client_secret"
    r"|password|token|secret_access_key|access_key_id)\"?\s*[=:]",
    re.MULTILINE,
)

# A URL with a password in it (scheme://user:password@host).
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def load(path):
    with open(path, encoding="utf-8") as file:
        text = file.read()
    return text, [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind(docs, kind):
    return [doc for doc in docs if doc.get("kind") == kind]


def name(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def containers(deployment):
    return deployment["spec"]["template"]["spec"]["containers"]


def selects(selector, labels):
    """Returns whether a matchLabels selector selects a pod with `labels`."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def check_schema_validator_rejects_unknown_fields(_docs, _values):
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad"},
        "spec": {"replica": 1, "selector": {}, "template": {}},
    }
    try:
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError:
        return
    raise Failure("a Deployment with the unknown field spec.replica passed strict validation")


def check_every_manifest_matches_the_kubernetes_schema(docs, _values):
    errors = []
    for version in KUBERNETES_VERSIONS:
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                errors.append(f"{name(doc)} on {version}: {error.message} at {list(error.path)}")
    if errors:
        raise Failure("; ".join(errors))


def check_chart_deploys_the_four_services(docs, _values):
    found = sorted(doc["metadata"]["labels"]["app.kubernetes.io/component"]
                   for doc in by_kind(docs, "Deployment"))
    if found != ["audit", "authz", "edge", "vault"]:
        raise Failure(f"Deployments for {found}, expected audit, authz, edge and vault")
    for kind in ("Service", "PodDisruptionBudget"):
        if len(by_kind(docs, kind)) != 4:
            raise Failure(f"{len(by_kind(docs, kind))} {kind}s, expected one per service")


def probe_port(probe):
    for handler in ("httpGet", "grpc", "tcpSocket"):
        if handler in probe:
            return probe[handler]["port"]
    raise Failure(f"probe without an httpGet, grpc or tcpSocket handler: {probe}")


def check_every_container_probes_a_port_it_exposes(docs, _values):
    for deployment in by_kind(docs, "Deployment"):
        for container in containers(deployment):
            ports = container.get("ports", [])
            exposed = {port["containerPort"] for port in ports}
            exposed |= {port["name"] for port in ports if "name" in port}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if probe is None:
                    raise Failure(f"{name(deployment)} container {container['name']} has no {kind}")
                port = probe_port(probe)
                if port not in exposed:
                    raise Failure(f"{name(deployment)} {kind} probes port {port}, "
                                  f"not one of {sorted(map(str, exposed))}")
            if "grpc" in {port.get("name") for port in ports} and "grpc" not in container["livenessProbe"]:
                raise Failure(f"{name(deployment)} serves gRPC but does not probe grpc.health.v1")


def deployment_selected_by(docs, selector, what):
    matches = [deployment for deployment in by_kind(docs, "Deployment")
               if selects(selector, deployment["spec"]["template"]["metadata"]["labels"])]
    if len(matches) != 1:
        raise Failure(f"{what} selects {len(matches)} Deployments, expected exactly one")
    return matches[0]


def check_services_select_their_deployment_and_its_ports(docs, _values):
    for service in by_kind(docs, "Service"):
        deployment = deployment_selected_by(docs, service["spec"]["selector"], name(service))
        named = {port["name"]: port["containerPort"]
                 for container in containers(deployment) for port in container.get("ports", [])}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if target not in named and target not in named.values():
                raise Failure(f"{name(service)} targets port {target}, which {name(deployment)} "
                              f"does not expose")


def check_pdbs_and_hpas_match_the_deployments(docs, _values):
    deployments = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "Deployment")}
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        selected = deployment_selected_by(docs, pdb["spec"]["selector"]["matchLabels"], name(pdb))
        if pdb["spec"]["selector"]["matchLabels"] != selected["spec"]["selector"]["matchLabels"]:
            raise Failure(f"{name(pdb)} selects other pods than {name(selected)} manages")
    covered = set()
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            raise Failure(f"{name(hpa)} scales {target['kind']}/{target['name']}, which is not rendered")
        if hpa["spec"]["minReplicas"] > hpa["spec"]["maxReplicas"]:
            raise Failure(f"{name(hpa)} has minReplicas above maxReplicas")
        if "replicas" in deployments[target["name"]]["spec"]:
            raise Failure(f"{name(hpa)} and Deployment/{target['name']} both set the replica count")
        covered.add(target["name"])
    for deployment_name, deployment in deployments.items():
        if deployment_name not in covered and "replicas" not in deployment["spec"]:
            raise Failure(f"Deployment/{deployment_name} has neither an HPA nor a replica count")


def check_ingress_backends_exist(docs, _values):
    services = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "Service")}
    ingresses = by_kind(docs, "Ingress")
    if not ingresses:
        raise Failure("no Ingress rendered")
    for ingress in ingresses:
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                if service is None:
                    raise Failure(f"{path['path']} goes to Service/{backend['name']}, not rendered")
                ports = {port["name"] for port in service["spec"]["ports"]}
                ports |= {port["port"] for port in service["spec"]["ports"]}
                wanted = backend["port"].get("name", backend["port"].get("number"))
                if wanted not in ports:
                    raise Failure(f"{path['path']} goes to port {wanted} of {name(service)}, "
                                  f"which has {sorted(map(str, ports))}")


def check_mounted_config_files_exist_in_the_configmap(docs, _values):
    configmaps = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "ConfigMap")}
    for deployment in by_kind(docs, "Deployment"):
        for volume in deployment["spec"]["template"]["spec"]["volumes"]:
            source = volume.get("configMap")
            if source is None:
                continue
            data = configmaps.get(source["name"], {}).get("data", {})
            for item in source.get("items", []):
                if item["key"] not in data:
                    raise Failure(f"{name(deployment)} mounts {item['key']}, absent from "
                                  f"ConfigMap/{source['name']}")
        args = containers(deployment)[0].get("args", [])
        if "--config" not in args:
            raise Failure(f"{name(deployment)} does not pass --config")


def check_every_pod_is_scraped_where_its_service_serves_metrics(docs, _values):
    """Prometheus finds each pod by its annotations; vault and audit serve /metrics only on
    `metrics.listen_addr`, so their config must listen on the port the annotation names."""
    configmaps = {doc["metadata"]["name"]: doc for doc in by_kind(docs, "ConfigMap")}
    for deployment in by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]
        annotations = pod["metadata"].get("annotations", {})
        if annotations.get("prometheus.io/scrape") != "true":
            raise Failure(f"{name(deployment)} is not annotated for Prometheus scrapes")
        container = containers(deployment)[0]
        ports = {port["name"]: port["containerPort"] for port in container.get("ports", [])}
        scraped = int(annotations.get("prometheus.io/port", "0"))
        if scraped not in ports.values():
            raise Failure(f"{name(deployment)} is scraped on port {scraped}, "
                          f"not one of {sorted(ports.values())}")
        if "metrics" not in ports:
            continue
        if scraped != ports["metrics"]:
            raise Failure(f"{name(deployment)} has a metrics port but is scraped on {scraped}")
        config_path = container["args"][container["args"].index("--config") + 1]
        key = config_path.rsplit("/", 1)[-1]
        texts = [cm.get("data", {}).get(key) for cm in configmaps.values()]
        config = next((tomllib.loads(text) for text in texts if text), None)
        if config is None:
            raise Failure(f"{name(deployment)} reads {key}, which no ConfigMap holds")
        listen = config.get("metrics", {}).get("listen_addr", "")
        if not listen.endswith(f":{ports['metrics']}"):
            raise Failure(f"{name(deployment)} exposes metrics on {ports['metrics']} but its "
                          f"{key} sets metrics.listen_addr = {listen!r}")


def check_secrets_arrive_only_as_secret_references(docs, values):
    references = {(ref["existingSecret"], ref["key"]) for ref in values["secrets"].values()}
    if by_kind(docs, "Secret"):
        raise Failure("the chart renders a Secret; it must only reference existing ones")
    for deployment in by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            for env in container.get("env", []):
                if "value" in env and SECRET_NAME.search(env["name"]):
                    raise Failure(f"{name(deployment)} sets {env['name']} to a literal value")
                secret = env.get("valueFrom", {}).get("secretKeyRef")
                if secret is not None and (secret["name"], secret["key"]) not in references:
                    raise Failure(f"{name(deployment)} {env['name']} references "
                                  f"{secret['name']}/{secret['key']}, not declared under secrets")
        for volume in pod["volumes"]:
            secret = volume.get("secret")
            if secret is None:
                continue
            for item in secret["items"]:
                if (secret["secretName"], item["key"]) not in references:
                    raise Failure(f"{name(deployment)} mounts {secret['secretName']}/{item['key']}, "
                                  f"not declared under secrets")
    for configmap in by_kind(docs, "ConfigMap"):
        for key, text in configmap.get("data", {}).items():
            found = SECRET_CONFIG_KEY.search(text)
            if found:
                raise Failure(f"{name(configmap)} {key} sets the secret key {found.group(1)}")
            if URL_WITH_PASSWORD.search(text):
                raise Failure(f"{name(configmap)} {key} holds a URL with a password")


def check_values_hold_no_secret_values(_docs, values, values_text):
    for entry, ref in values["secrets"].items():
        if sorted(ref) != ["existingSecret", "key"]:
            raise Failure(f"secrets.{entry} has {sorted(ref)}; only existingSecret and key are allowed")
    found = SECRET_CONFIG_KEY.search(values_text)
    if found:
        raise Failure(f"values.yaml sets the secret key {found.group(1)}")
    if URL_WITH_PASSWORD.search(values_text):
        raise Failure("values.yaml holds a URL with a password")


CHECKS = [
    check_schema_validator_rejects_unknown_fields,
    check_every_manifest_matches_the_kubernetes_schema,
    check_chart_deploys_the_four_services,
    check_every_container_probes_a_port_it_exposes,
    check_services_select_their_deployment_and_its_ports,
    check_pdbs_and_hpas_match_the_deployments,
    check_ingress_backends_exist,
    check_mounted_config_files_exist_in_the_configmap,
    check_every_pod_is_scraped_where_its_service_serves_metrics,
    check_secrets_arrive_only_as_secret_references,
]


def main(manifests_path, values_path):
    _, docs = load(manifests_path)
    values_text, values_docs = load(values_path)
    values = values_docs[0]
    checks = [(check, (docs, values)) for check in CHECKS]
    checks.append((check_values_hold_no_secret_values, (docs, values, values_text)))
    return run("manifests", checks)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
