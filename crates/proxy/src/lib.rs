//! holdfast: a MongoDB wire-protocol proxy that hides replica-set primary
//! failover from the applications behind it. See the repository's
//! `README.md` and `shared/design.md`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod client;
pub mod config;
pub mod demo;
pub mod gate;
pub mod handshake;
pub mod metrics;
pub mod pool;
pub mod router;
pub mod server;

pub use config::{Config, WriteRetry};
pub use server::{start, Holdfast};
