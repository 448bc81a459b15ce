//! order-service integration tests: the real service and a real user-service on random ports,
//! each on a fresh SQLite file or a fresh PostgreSQL database, with a real NATS JetStream.
mod helpers;

mod audit;
mod authorization;
mod events;
mod idempotency;
mod money;
mod ops;
mod orders;
mod user_lookup;
