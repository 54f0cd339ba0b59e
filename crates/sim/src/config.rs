//! How a simulated replica set is laid out and how fast it fails over.

use std::net::{IpAddr, Ipv4Addr};

/// Configuration of one simulated replica set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Number of members (data-bearing, voting). Default 3.
    pub members: usize,
    /// Port of member 0; member `i` listens on `base_port + i`. `0` gives
    /// every member its own ephemeral port (what tests use).
    pub base_port: u16,
    /// The replica set name (`setName`, `replicaSet=`). Default `rs0`.
    pub set_name: String,
    /// Time with no primary after a stepdown, a kill or a shutdown of the
    /// primary, until the new primary is elected. Default 1500 ms. (MongoDB
    /// with default settings takes roughly 10–12 s after a crash.)
    pub election_ms: u64,
    /// Secondaries apply each replicated log entry this long after the
    /// primary wrote it. Default 2 ms.
    pub repl_lag_ms: u64,
    /// Address every member binds. Default 127.0.0.1.
    pub host: IpAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            members: 3,
            base_port: 0,
            set_name: "rs0".to_string(),
            election_ms: 1500,
            repl_lag_ms: 2,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }
}

impl SimConfig {
    /// Votes needed to elect a primary and to acknowledge `w: "majority"`.
    pub fn majority(&self) -> usize {
        self.members / 2 + 1
    }
}
