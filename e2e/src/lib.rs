//! Harness for the end-to-end tests: the services' own binaries started as OS processes, and
//! an OTLP/gRPC receiver that records the spans they export.

pub mod otlp;
pub mod platform;
pub mod process;
