//! user-service integration tests: the real service on a random port, against a fresh SQLite
//! file and a fresh PostgreSQL database, with a real NATS JetStream.
mod helpers;

/// `on_both_backends!(scenario, …)`: each scenario on SQLite and on PostgreSQL.
use service_kit::on_both_backends;

mod audit;
mod auth;
mod events;
mod ops;
mod users;
