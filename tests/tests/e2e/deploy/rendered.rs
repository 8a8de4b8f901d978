//! The rendered manifests as the deploy tests read them: the Ingress's routes resolved to
//! components, the public origin, the ConfigMap's files and each container's environment.

use std::collections::BTreeMap;

use edge_svc::GatewaySpec;
use serde::Deserialize;
use serde_json::Value;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s/gatehouse.yaml");
/// One path of the Ingress and the component its backend Service selects.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) path: String,
    pub(super) exact: bool,
    pub(super) component: String,
}

/// What the tests read from the rendered manifests.
#[derive(Debug)]
pub(super) struct Rendered {
    pub(super) docs: Vec<Value>,
    pub(super) routes: Vec<Route>,
    pub(super) origin: url::Url,
}

impl Rendered {
    pub(super) fn load() -> Self {
        let text = std::fs::read_to_string(MANIFESTS).expect("deploy/k8s/gatehouse.yaml");
        let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
            .map(|document| Value::deserialize(document).expect("a YAML document"))
            .filter(|document| !document.is_null())
            .collect();
        let (routes, origin) = ingress(&docs);
        Self {
            docs,
            routes,
            origin,
        }
    }

    /// Returns the component the Ingress sends `path` to, by the Kubernetes Ingress rules: an
    /// Exact path wins, then the longest Prefix that matches whole path elements.
    pub(super) fn component_for(&self, path: &str) -> Option<&str> {
        if let Some(route) = self
            .routes
            .iter()
            .find(|route| route.exact && route.path == path)
        {
            return Some(&route.component);
        }
        self.routes
            .iter()
            .filter(|route| !route.exact && prefix_matches(&route.path, path))
            .max_by_key(|route| route.path.len())
            .map(|route| route.component.as_str())
    }

    /// Returns the data of the rendered ConfigMap.
    pub(super) fn config_file(&self, key: &str) -> String {
        let configmap = kinds(&self.docs, "ConfigMap").next().expect("a ConfigMap");
        str_at(configmap, &format!("/data/{key}")).to_owned()
    }

    pub(super) fn gateway(&self) -> GatewaySpec {
        GatewaySpec::from_yaml(&self.config_file("gateway.yaml"), "gateway.yaml")
            .expect("the chart's gateway is one edge accepts")
    }

    /// Returns the environment of `component`'s container: names and whether a Secret fills it.
    pub(super) fn environment(&self, component: &str) -> Vec<(String, bool)> {
        let deployment = kinds(&self.docs, "Deployment")
            .find(|deployment| {
                str_at(deployment, "/metadata/labels/app.kubernetes.io~1component") == component
            })
            .expect("the component's Deployment");
        deployment["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|var| {
                        let from_secret = var.pointer("/valueFrom/secretKeyRef").is_some();
                        (str_at(var, "/name").to_owned(), from_secret)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Returns the Ingress's routes, each resolved to the component its Service selects, and the
/// public origin its host and TLS block make.
fn ingress(docs: &[Value]) -> (Vec<Route>, url::Url) {
    let component_of: BTreeMap<&str, &str> = kinds(docs, "Service")
        .map(|service| {
            (
                str_at(service, "/metadata/name"),
                str_at(service, "/spec/selector/app.kubernetes.io~1component"),
            )
        })
        .collect();
    let ingress = kinds(docs, "Ingress").next().expect("an Ingress");
    let rule = &ingress["spec"]["rules"][0];
    let routes = rule["http"]["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(|path| Route {
            path: str_at(path, "/path").to_owned(),
            exact: str_at(path, "/pathType") == "Exact",
            component: component_of[str_at(path, "/backend/service/name")].to_owned(),
        })
        .collect();
    let scheme = if ingress["spec"]["tls"].is_array() {
        "https"
    } else {
        "http"
    };
    let origin = format!("{scheme}://{}", str_at(rule, "/host"))
        .parse()
        .expect("the Ingress host is a URL host");
    (routes, origin)
}

pub(super) fn kinds<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> {
    docs.iter().filter(move |doc| doc["kind"] == kind)
}

pub(super) fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing in {value}"))
}

/// Matches an Ingress Prefix path element-wise, as Kubernetes does (`/v` matches `/v/x`, not `/vx`).
pub(super) fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    path == prefix || path.starts_with(&format!("{prefix}/"))
}
