//! order-service integration tests: the real service and a real user-service on random ports,
//! each on a fresh SQLite file or a fresh PostgreSQL database, with a real NATS JetStream.
mod helpers;

/// `on_both_backends!(scenario, …)`: each scenario on SQLite and on PostgreSQL.
use service_kit::on_both_backends;

mod audit;
mod authorization;
mod events;
mod idempotency;
mod money;
mod ops;
mod orders;
mod user_lookup;
