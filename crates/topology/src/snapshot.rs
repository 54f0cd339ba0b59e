//! The immutable picture of the replica set that routing reads.

use std::time::Instant;

use bson::{oid::ObjectId, Document};

/// What a member said it is in its last hello (or Unknown after an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Primary,
    Secondary,
    /// Arbiter, hidden, recovering, or not a replica-set member.
    Other,
    /// No successful hello since the last error.
    Unknown,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
            Role::Other => "other",
            Role::Unknown => "unknown",
        }
    }
}

/// Limits and versions drivers need in their handshake, taken from the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    pub max_bson_object_size: i32,
    pub max_message_size_bytes: i32,
    pub max_write_batch_size: i32,
    pub logical_session_timeout_minutes: Option<i32>,
    pub min_wire_version: i32,
    pub max_wire_version: i32,
}

impl Default for ServerLimits {
    /// MongoDB 7.0's values, used until a primary has been seen.
    fn default() -> Self {
        ServerLimits {
            max_bson_object_size: 16 * 1024 * 1024,
            max_message_size_bytes: 48_000_000,
            max_write_batch_size: 100_000,
            logical_session_timeout_minutes: Some(30),
            min_wire_version: 0,
            max_wire_version: 21,
        }
    }
}

impl ServerLimits {
    pub fn from_hello(d: &Document) -> ServerLimits {
        let def = ServerLimits::default();
        let num = |k: &str| -> Option<i32> {
            match d.get(k)? {
                bson::Bson::Int32(i) => Some(*i),
                bson::Bson::Int64(i) => i32::try_from(*i).ok(),
                bson::Bson::Double(f) => Some(*f as i32),
                _ => None,
            }
        };
        ServerLimits {
            max_bson_object_size: num("maxBsonObjectSize").unwrap_or(def.max_bson_object_size),
            max_message_size_bytes: num("maxMessageSizeBytes")
                .unwrap_or(def.max_message_size_bytes),
            max_write_batch_size: num("maxWriteBatchSize").unwrap_or(def.max_write_batch_size),
            logical_session_timeout_minutes: num("logicalSessionTimeoutMinutes"),
            min_wire_version: num("minWireVersion").unwrap_or(def.min_wire_version),
            max_wire_version: num("maxWireVersion").unwrap_or(def.max_wire_version),
        }
    }
}

/// One member as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberState {
    /// `host:port` as the replica set names it.
    pub addr: String,
    pub role: Role,
    pub election_id: Option<ObjectId>,
    pub set_version: Option<i32>,
    pub set_name: Option<String>,
    /// `(processId, counter)` of the reply this state came from.
    pub topology_version: Option<(ObjectId, i64)>,
    pub limits: ServerLimits,
    pub hosts: Vec<String>,
}

impl MemberState {
    pub fn unknown(addr: &str) -> MemberState {
        MemberState {
            addr: addr.to_string(),
            role: Role::Unknown,
            election_id: None,
            set_version: None,
            set_name: None,
            topology_version: None,
            limits: ServerLimits::default(),
            hosts: Vec::new(),
        }
    }

    /// Reads a hello/isMaster reply.
    pub fn from_hello(addr: &str, d: &Document) -> MemberState {
        let truthy = |k: &str| matches!(d.get(k), Some(bson::Bson::Boolean(true)));
        let ok = match d.get("ok") {
            Some(bson::Bson::Double(f)) => *f == 1.0,
            Some(bson::Bson::Int32(i)) => *i == 1,
            Some(bson::Bson::Int64(i)) => *i == 1,
            _ => false,
        };
        let set_name = d.get_str("setName").ok().map(str::to_string);
        let role = if !ok {
            Role::Unknown
        } else if (truthy("isWritablePrimary") || truthy("ismaster")) && set_name.is_some() {
            Role::Primary
        } else if truthy("secondary") && set_name.is_some() {
            Role::Secondary
        } else {
            Role::Other
        };
        let topology_version = d.get_document("topologyVersion").ok().and_then(|tv| {
            let pid = tv.get_object_id("processId").ok()?;
            let counter = match tv.get("counter")? {
                bson::Bson::Int64(c) => *c,
                bson::Bson::Int32(c) => *c as i64,
                _ => return None,
            };
            Some((pid, counter))
        });
        let hosts = d
            .get_array("hosts")
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        MemberState {
            addr: addr.to_string(),
            role,
            election_id: d.get_object_id("electionId").ok(),
            set_version: d.get_i32("setVersion").ok(),
            set_name,
            topology_version,
            limits: ServerLimits::from_hello(d),
            hosts,
        }
    }

    /// Should `newer` replace `self`? A reply with an older topologyVersion
    /// from the same process is stale.
    pub fn superseded_by(&self, newer: &MemberState) -> bool {
        match (&self.topology_version, &newer.topology_version) {
            (Some((p1, c1)), Some((p2, c2))) if p1 == p2 => c2 >= c1,
            _ => true,
        }
    }
}

/// Everything routing needs, immutable; a new one is published at each change.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The current primary's address, if one is known.
    pub primary: Option<String>,
    pub members: Vec<MemberState>,
    pub set_name: Option<String>,
    pub election_id: Option<ObjectId>,
    /// The primary's limits (or the last primary's, or MongoDB 7.0 defaults).
    pub limits: ServerLimits,
    /// Incremented every time `primary` changes (including to None).
    pub epoch: u64,
    /// When this snapshot was made.
    pub at: Instant,
}

impl Snapshot {
    pub fn empty() -> Snapshot {
        Snapshot {
            primary: None,
            members: Vec::new(),
            set_name: None,
            election_id: None,
            limits: ServerLimits::default(),
            epoch: 0,
            at: Instant::now(),
        }
    }

    /// Derives the next snapshot from member states. The primary is the
    /// member claiming it with the highest (electionId, setVersion).
    pub fn derive(prev: &Snapshot, members: Vec<MemberState>) -> Snapshot {
        let primary = members
            .iter()
            .filter(|m| m.role == Role::Primary)
            .max_by(|a, b| (a.election_id, a.set_version).cmp(&(b.election_id, b.set_version)));
        let primary_addr = primary.map(|m| m.addr.clone());
        let limits = primary.map(|m| m.limits).unwrap_or(prev.limits);
        let election_id = primary.and_then(|m| m.election_id).or(prev.election_id);
        let set_name = members
            .iter()
            .find_map(|m| m.set_name.clone())
            .or_else(|| prev.set_name.clone());
        let epoch = if primary_addr != prev.primary {
            prev.epoch + 1
        } else {
            prev.epoch
        };
        Snapshot {
            primary: primary_addr,
            members,
            set_name,
            election_id,
            limits,
            epoch,
            at: Instant::now(),
        }
    }

    /// Same routing-relevant content (ignores `at`).
    pub fn same_as(&self, other: &Snapshot) -> bool {
        self.primary == other.primary
            && self.members == other.members
            && self.limits == other.limits
            && self.election_id == other.election_id
    }

    pub fn member(&self, addr: &str) -> Option<&MemberState> {
        self.members.iter().find(|m| m.addr == addr)
    }
}
