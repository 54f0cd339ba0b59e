//! holdfast-topology: watches a replica set and publishes one immutable
//! [`Snapshot`] of it through a `tokio::sync::watch` channel.
//!
//! Two sources feed it:
//! - the official `mongodb` driver's SDAM events (its monitors stream hello
//!   from 4.4+ servers, so a stepdown or an election reaches us as soon as the
//!   member's `topologyVersion` changes), and
//! - holdfast's own probes: when a forwarder sees a network error or a
//!   state-change error, it calls [`Topology::report_failure`]; the member is
//!   marked non-primary at once and every member is probed with a plain
//!   hello every `probe_interval` until a primary is known again (the driver
//!   has no public "check now").
//!
//! For tests of code that routes on snapshots, [`Topology::manual`] makes a
//! watcher without a driver or probes, fed by hand with
//! [`Topology::observe_hello`] and [`Topology::observe_failure`].
//!
//! Replies are ordered by `topologyVersion`, so a late reply never undoes a
//! newer one, and, as in SDAM, a member claiming to be primary with a lower
//! `(electionId, setVersion)` than a primary has already reported is a stale
//! primary and is not used; a newer claim makes the previous primary
//! Unknown.
#![forbid(unsafe_code)]

mod probe;
mod snapshot;
mod uri;
mod watcher;

pub use probe::hello;
pub use snapshot::{MemberState, Role, ServerLimits, Snapshot};
pub use uri::take_allow_invalid_hostnames;
pub use watcher::{Topology, TopologyConfig, TopologyError};
