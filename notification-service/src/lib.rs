//! notification-service: consumes `users.*` and `orders.*` events from JetStream, keeps users'
//! addresses, mails users over SMTP (exactly one notification per event, at most one mail),
//! and serves the notification API of the original Gin service.
//!
//! `startup` wires everything; `consumer` holds the JetStream consumer and event handling;
//! `claims` inserts an order mail's row addressed and claimed (grouped on PostgreSQL);
//! `delivery` sends one notification and records the outcome; `grouped` writes the same
//! statement of concurrent handlers as one (group commit); `mail` the templates and the
//! lettre transport; `routes` the HTTP handlers; `entity`/`migration` the tables.

pub mod claims;
pub mod consumer;
pub mod delivery;
pub mod domain;
pub mod entity;
mod grouped;
pub mod mail;
pub mod metrics;
pub mod migration;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod smtp;
pub mod startup;

pub use settings::Settings;
pub use startup::Application;
