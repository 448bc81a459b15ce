//! Harness for the end-to-end tests: the services' own binaries started as OS processes, and
//! an OTLP/gRPC receiver that records the spans they export, a NATS server the test can stop
//! and start, and a small API client for the scenarios.

pub mod api;
pub mod nats;
pub mod otlp;
pub mod platform;
pub mod process;
