//! user-service integration tests: the real service on a random port, against a fresh SQLite
//! file and a fresh PostgreSQL database, with a real NATS JetStream.
mod helpers;

mod audit;
mod auth;
mod events;
mod ops;
mod users;
