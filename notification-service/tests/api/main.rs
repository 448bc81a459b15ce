//! notification-service integration tests: the real service on a random port against a fresh
//! SQLite file or PostgreSQL database, a real NATS JetStream, a real user-service for tokens
//! (and its `users.registered` events), and an in-process SMTP server
//! (`service_kit::testing::smtp::SmtpSink`) that receives the mail.
mod helpers;

/// `on_both_backends!(scenario, …)`: each scenario on SQLite and on PostgreSQL.
use service_kit::on_both_backends;

mod audit;
mod claims;
mod events;
mod notifications;
mod ops;
mod replicas;
