//! user-service: registration, login (RS256 tokens), the JWKS, and the user API of the
//! original Express service, persisted with sea-orm and publishing `users.*` events through
//! the outbox.
//!
//! `startup` wires everything; `routes` holds the handlers (one module per resource);
//! `domain` parses input into valid values; `entity`/`migration` the table; `keys` the
//! signing key and JWKS.

pub mod domain;
pub mod entity;
pub mod keys;
pub mod migration;
pub mod openapi;
pub mod routes;
pub mod settings;
pub mod startup;

pub use settings::Settings;
pub use startup::Application;
