//! `gatehouse-sandbox`: restricts itself (limits, Landlock) and then runs a stdio connector.

fn main() -> std::process::ExitCode {
    edge_svc::connector::sandbox::launch(std::env::args_os().skip(1))
}
