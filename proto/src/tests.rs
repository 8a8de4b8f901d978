use std::collections::BTreeSet;

use prost::Message as _;
use prost_types::FileDescriptorSet;

use super::{FILE_DESCRIPTOR_SET, common};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes")
}

#[test]
fn descriptor_set_holds_the_four_packages() {
    let packages: BTreeSet<String> = descriptor_set()
        .file
        .into_iter()
        .filter_map(|file| file.package)
        .collect();
    for package in [
        "gatehouse.common.v1",
        "gatehouse.authz.v1",
        "gatehouse.vault.v1",
        "gatehouse.audit.v1",
    ] {
        assert!(packages.contains(package), "missing package {package}");
    }
}

#[test]
fn descriptor_set_holds_every_service() {
    let services: BTreeSet<String> = descriptor_set()
        .file
        .iter()
        .flat_map(|file| {
            let package = file.package().to_owned();
            file.service
                .iter()
                .map(move |service| format!("{package}.{}", service.name()))
        })
        .collect();
    let expected: BTreeSet<String> = [
        "gatehouse.authz.v1.Authz",
        "gatehouse.authz.v1.AgentAdmin",
        "gatehouse.vault.v1.Vault",
        "gatehouse.audit.v1.Audit",
        "gatehouse.admin.v1.Admin",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(services, expected);
}

#[test]
fn every_rpc_is_documented() {
    for file in descriptor_set().file {
        let Some(source_info) = file.source_code_info else {
            continue;
        };
        for (service_index, service) in file.service.iter().enumerate() {
            for method_index in 0..service.method.len() {
                // Path 6 = FileDescriptorProto.service, 2 = ServiceDescriptorProto.method.
                let path = [6, service_index as i32, 2, method_index as i32];
                let comment = source_info
                    .location
                    .iter()
                    .find(|location| location.path == path)
                    .and_then(|location| location.leading_comments.as_deref())
                    .unwrap_or_default();
                let method = service.method[method_index].name();
                assert!(
                    comment.contains("Callers:"),
                    "{}.{method} does not state its callers",
                    service.name()
                );
            }
        }
    }
}

#[test]
fn secret_debug_hides_the_value() {
    let secret = common::v1::Secret {
        value: "canary-4f1d9c".to_owned(),
    };
    let shown = format!("{secret:?}");
    assert!(!shown.contains("canary-4f1d9c"), "{shown}");
    assert_eq!(shown, r#"Secret("redacted")"#);
}

#[test]
fn secret_debug_hides_values_inside_messages() {
    let material = crate::vault::v1::CredentialMaterial {
        kind: Some(crate::vault::v1::credential_material::Kind::Bearer(
            crate::vault::v1::BearerToken {
                token: Some(common::v1::Secret {
                    value: "canary-7a2e11".to_owned(),
                }),
            },
        )),
    };
    assert!(!format!("{material:?}").contains("canary-7a2e11"));
}
