//! The embedded replica set: with no upstream configured, a build with the
//! `embedded-sim` feature (the default) starts an in-memory three-member
//! holdfast-sim and proxies to it — a demo and a playground. Its data lives
//! in memory and is lost when holdfast exits. A build without the feature
//! (`--no-default-features`, the production image) refuses to start
//! without an upstream instead of silently writing into memory.

/// Tells the operator what the embedded set means for their data.
pub const IN_MEMORY_NOTICE: &str = "holdfast: the embedded replica set keeps its data in memory only; everything written to it is lost when holdfast exits";

#[cfg(feature = "embedded-sim")]
mod imp {
    use anyhow::Context;

    /// A running embedded replica set.
    pub struct Embedded(holdfast_sim::ReplicaSet);

    impl Embedded {
        pub async fn start(base_port: u16, election_ms: u64) -> anyhow::Result<Embedded> {
            let cfg = holdfast_sim::SimConfig {
                base_port,
                election_ms,
                ..Default::default()
            };
            let rs = holdfast_sim::ReplicaSet::start(cfg)
                .await
                .context("starting the embedded holdfast-sim replica set")?;
            Ok(Embedded(rs))
        }

        pub fn uri(&self) -> String {
            self.0.uri()
        }

        pub fn shutdown(&self) {
            self.0.shutdown();
        }
    }
}

#[cfg(not(feature = "embedded-sim"))]
mod imp {
    /// This build has no embedded replica set: there is never one running.
    pub enum Embedded {}

    impl Embedded {
        pub async fn start(_base_port: u16, _election_ms: u64) -> anyhow::Result<Embedded> {
            anyhow::bail!(
                "no upstream configured: set --upstream, HOLDFAST_UPSTREAM or `upstream` in the \
                 configuration file to the replica set's connection string (this build of \
                 holdfast has no embedded replica set)"
            )
        }

        pub fn uri(&self) -> String {
            match *self {}
        }

        pub fn shutdown(&self) {
            match *self {}
        }
    }
}

pub use imp::Embedded;
