//! Compiles the `.proto` files with protox (no system `protoc`) into Rust modules and
//! an encoded descriptor set in `OUT_DIR`.

use std::path::PathBuf;

use prost::Message as _;

const PROTOS: &[&str] = &[
    "gatehouse/common/v1/decision.proto",
    "gatehouse/common/v1/page.proto",
    "gatehouse/common/v1/principal.proto",
    "gatehouse/common/v1/request.proto",
    "gatehouse/common/v1/secret.proto",
    "gatehouse/authz/v1/authz.proto",
    "gatehouse/authz/v1/agent_admin.proto",
    "gatehouse/vault/v1/vault.proto",
    "gatehouse/audit/v1/event.proto",
    "gatehouse/audit/v1/audit.proto",
    "gatehouse/admin/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=gatehouse");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let file_descriptor_set = protox::compile(PROTOS, ["."])?;
    std::fs::write(
        out_dir.join("gatehouse_descriptor.bin"),
        file_descriptor_set.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        // Secret gets a redacting Debug in lib.rs, so that no generated message
        // can print a secret value.
        .skip_debug([".gatehouse.common.v1.Secret"])
        .compile_fds(file_descriptor_set)?;
    Ok(())
}
