//! Gatehouse's shared runtime plumbing: configuration layering, telemetry, the one
//! error-to-status mapping, graceful shutdown and the standard gRPC server and
//! client setup. It holds no domain types and depends on no service crate.

pub mod callers;
pub mod canonical;
pub mod config;
pub mod error;
pub mod grpc;
pub mod http;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{
    ConfigError, GrpcClientConfig, GrpcServerConfig, LogFormat, MetricsConfig, TelemetryConfig,
    config_sources, exit_on_invalid, extract,
};
pub use error::{ErrorCode, ServiceError, to_status};
