//! order-service: the order API of the original FastAPI service, persisted with sea-orm, with
//! exact money, users checked against user-service, idempotent creation, a status state
//! machine, and `orders.*` events through the outbox.
//!
//! `startup` wires everything; `routes` holds the handlers and the error type; `domain` parses
//! input into valid values (money, quantities, statuses); `store` reads and writes orders with
//! their events; `idempotency` remembers `Idempotency-Key`s; `user_directory` asks
//! user-service; `entity`/`migration` the tables; `metrics` the domain metrics.

pub mod domain;
pub mod entity;
pub mod idempotency;
pub mod metrics;
pub mod migration;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
pub mod user_directory;

pub use settings::Settings;
pub use startup::Application;
