//! edge-svc's `gatehouse-sandbox` launcher built inside the e2e package, so tests can name it
//! with `CARGO_BIN_EXE_e2e-sandbox` (edge-svc's own binary is not built when only this package
//! is tested); its own name keeps the two binaries from overwriting each other in one target.

fn main() -> std::process::ExitCode {
    edge_svc::connector::sandbox::launch(std::env::args_os().skip(1))
}
