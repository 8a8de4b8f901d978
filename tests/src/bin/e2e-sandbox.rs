//! `gatehouse-sandbox` built inside the e2e package, so tests can name it with
//! `CARGO_BIN_EXE_gatehouse-sandbox` (edge-svc's own binary of the same name is not built
//! when only this package is tested).

fn main() -> std::process::ExitCode {
    edge_svc::connector::sandbox::launch(std::env::args_os().skip(1))
}
