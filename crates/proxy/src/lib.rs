//! holdfast: a MongoDB wire-protocol proxy that hides replica-set primary
//! failover from the applications behind it. The repository's `README.md`
//! is the entry point; `docs/architecture.md` says where each decision
//! lives.
//!
//! A request's path: [`client`] (one task per connection) → [`request`]
//! (its lifecycle) → [`router`] (which member; the [`gate`] holds requests
//! while no primary is known) → [`pool`] (the round trip); after a failed
//! attempt [`failover::decide`] says what happens next, and [`replies`]
//! builds every error holdfast sends.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod budget;
pub mod client;
pub mod config;
#[cfg(feature = "embedded-sim")]
pub mod demo;
pub mod embedded;
pub mod failover;
pub mod gate;
pub mod handshake;
pub mod legacy;
pub mod metrics;
pub mod pool;
pub mod read_preference;
pub mod replies;
pub mod request;
pub mod router;
pub mod security;
pub mod server;
pub mod sessions;
pub mod upstream;

pub use config::{Config, WriteRetry};
pub use server::{start, Holdfast};
