//! The immutable picture of the replica set that routing reads.

use std::time::Instant;

use bson::{oid::ObjectId, Document, Timestamp};

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
#[derive(Debug, Clone)]
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
    /// The member's tags (hello `tags`), for read preference tag sets.
    pub tags: Document,
    /// `lastWrite.lastWriteDate` of its hello, ms since the epoch.
    pub last_write_date_ms: Option<i64>,
    /// `lastWrite.opTime.ts`: how far this member has applied the log.
    pub last_write_op_time: Option<Timestamp>,
    /// When this state was observed (SDAM's lastUpdateTime), ms since the
    /// epoch. Not part of equality: an identical reply changes nothing.
    pub observed_at_ms: i64,
    /// Round-trip time as the driver's monitor averages it. Not part of
    /// equality either.
    pub rtt: Option<std::time::Duration>,
    /// Why checks of this member fail, when waiting will not fix it (its
    /// TLS certificate is not trusted); cleared by the next answer.
    pub failure: Option<String>,
}

impl PartialEq for MemberState {
    /// Equal when routing would not tell them apart: the time of the
    /// observation and the RTT are left out (RTTs wander on every check).
    fn eq(&self, o: &Self) -> bool {
        self.addr == o.addr
            && self.role == o.role
            && self.election_id == o.election_id
            && self.set_version == o.set_version
            && self.set_name == o.set_name
            && self.topology_version == o.topology_version
            && self.limits == o.limits
            && self.hosts == o.hosts
            && self.tags == o.tags
            && self.last_write_date_ms == o.last_write_date_ms
            && self.last_write_op_time == o.last_write_op_time
            && self.failure == o.failure
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
            tags: Document::new(),
            last_write_date_ms: None,
            last_write_op_time: None,
            observed_at_ms: now_ms(),
            rtt: None,
            failure: None,
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
        // SDAM: look for isWritablePrimary first, fall back to the legacy
        // ismaster only if it is absent.
        let writable = match d.get("isWritablePrimary") {
            Some(v) => matches!(v, bson::Bson::Boolean(true)),
            None => truthy("ismaster"),
        };
        let role = if !ok {
            Role::Unknown
        } else if set_name.is_none() || truthy("isreplicaset") || truthy("hidden") {
            // Standalone, mongos, ghost, or a hidden member (which reports
            // secondary: true but is not one for clients).
            Role::Other
        } else if writable {
            Role::Primary
        } else if truthy("secondary") {
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
        let last_write = d.get_document("lastWrite").ok();
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
            tags: d.get_document("tags").cloned().unwrap_or_default(),
            last_write_date_ms: last_write
                .and_then(|lw| lw.get_datetime("lastWriteDate").ok())
                .map(|t| t.timestamp_millis()),
            last_write_op_time: last_write
                .and_then(|lw| lw.get_document("opTime").ok())
                .and_then(|o| o.get_timestamp("ts").ok()),
            observed_at_ms: now_ms(),
            rtt: None,
            failure: None,
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
    /// member claiming it with the highest (electionId, setVersion). (The
    /// watcher has already turned stale claims, lower than one seen
    /// before, into Unknown members; this only compares current claims.)
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

    /// Why no member can be used, when no primary is known and every
    /// member fails for a reason waiting will not fix (each `addr: why`);
    /// `None` while waiting may still help.
    pub fn unreachable(&self) -> Option<String> {
        if self.primary.is_some() || self.members.is_empty() {
            return None;
        }
        let why: Option<Vec<String>> = self
            .members
            .iter()
            .map(|m| m.failure.as_ref().map(|f| format!("{}: {f}", m.addr)))
            .collect();
        why.map(|w| w.join("; "))
    }
}

#[cfg(test)]
mod tests {
    //! Reading hello replies and deriving snapshots, after the server types
    //! and the primary-election rules of the SDAM specification.

    use super::*;
    use bson::{doc, Bson};

    fn oid(n: u8) -> ObjectId {
        let mut b = [0u8; 12];
        b[11] = n;
        ObjectId::from_bytes(b)
    }

    fn hosts(h: &[&str]) -> Bson {
        Bson::Array(h.iter().map(|s| Bson::String(s.to_string())).collect())
    }

    fn role(d: Document) -> Role {
        MemberState::from_hello("a:27017", &d).role
    }

    /// A member claiming primary with the given (electionId, setVersion).
    fn claimant(addr: &str, election: Option<u8>, set_version: Option<i32>) -> MemberState {
        let mut d = doc! {"ok": 1, "isWritablePrimary": true, "setName": "rs"};
        if let Some(e) = election {
            d.insert("electionId", oid(e));
        }
        if let Some(v) = set_version {
            d.insert("setVersion", v);
        }
        MemberState::from_hello(addr, &d)
    }

    fn secondary(addr: &str) -> MemberState {
        MemberState::from_hello(
            addr,
            &doc! {"ok": 1, "isWritablePrimary": false, "secondary": true, "setName": "rs"},
        )
    }

    fn derive_from_empty(members: Vec<MemberState>) -> Snapshot {
        Snapshot::derive(&Snapshot::empty(), members)
    }

    // --- server types -----------------------------------------------------

    #[test]
    fn is_writable_primary_with_set_name_is_primary() {
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": true, "setName": "rs"}),
            Role::Primary
        );
    }

    #[test]
    fn legacy_ismaster_with_set_name_is_primary() {
        assert_eq!(
            role(doc! {"ok": 1.0, "ismaster": true, "setName": "rs"}),
            Role::Primary
        );
    }

    #[test]
    fn is_writable_primary_takes_precedence_over_ismaster() {
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": false, "ismaster": true, "setName": "rs"}),
            Role::Other
        );
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": true, "ismaster": false, "setName": "rs"}),
            Role::Primary
        );
    }

    #[test]
    fn hidden_secondary_is_other() {
        assert_eq!(
            role(
                doc! {"ok": 1.0, "isWritablePrimary": false, "secondary": true, "hidden": true, "setName": "rs"}
            ),
            Role::Other
        );
    }

    #[test]
    fn secondary_with_set_name_is_secondary() {
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": false, "secondary": true, "setName": "rs"}),
            Role::Secondary
        );
    }

    #[test]
    fn standalone_claiming_writable_is_not_primary() {
        // No setName: a standalone, whatever isWritablePrimary says.
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": true}),
            Role::Other
        );
        assert_eq!(role(doc! {"ok": 1.0, "ismaster": true}), Role::Other);
    }

    #[test]
    fn mongos_is_not_primary() {
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": true, "msg": "isdbgrid"}),
            Role::Other
        );
    }

    #[test]
    fn secondary_flag_without_set_name_is_not_secondary() {
        assert_eq!(role(doc! {"ok": 1.0, "secondary": true}), Role::Other);
    }

    #[test]
    fn arbiter_is_other() {
        assert_eq!(
            role(
                doc! {"ok": 1.0, "isWritablePrimary": false, "arbiterOnly": true, "setName": "rs"}
            ),
            Role::Other
        );
    }

    #[test]
    fn ghost_is_other() {
        // An uninitialized or removed member: isreplicaset, no setName.
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": false, "isreplicaset": true}),
            Role::Other
        );
    }

    #[test]
    fn member_neither_primary_nor_secondary_is_other() {
        // Starting up, recovering, or stepping down.
        assert_eq!(
            role(doc! {"ok": 1.0, "isWritablePrimary": false, "secondary": false, "setName": "rs"}),
            Role::Other
        );
    }

    #[test]
    fn ok_zero_or_missing_is_unknown() {
        assert_eq!(
            role(doc! {"ok": 0.0, "isWritablePrimary": true, "setName": "rs"}),
            Role::Unknown
        );
        assert_eq!(
            role(doc! {"isWritablePrimary": true, "setName": "rs"}),
            Role::Unknown
        );
        assert_eq!(role(doc! {}), Role::Unknown);
    }

    #[test]
    fn ok_may_be_any_numeric_type() {
        for ok in [Bson::Double(1.0), Bson::Int32(1), Bson::Int64(1)] {
            let d = doc! {"ok": ok.clone(), "isWritablePrimary": true, "setName": "rs"};
            assert_eq!(role(d), Role::Primary, "ok: {ok:?}");
        }
    }

    #[test]
    fn role_labels() {
        assert_eq!(Role::Primary.label(), "primary");
        assert_eq!(Role::Secondary.label(), "secondary");
        assert_eq!(Role::Other.label(), "other");
        assert_eq!(Role::Unknown.label(), "unknown");
    }

    // --- fields -----------------------------------------------------------

    #[test]
    fn reads_election_id_set_version_set_name_and_hosts() {
        let m = MemberState::from_hello(
            "b:27017",
            &doc! {
                "ok": 1.0, "isWritablePrimary": true, "setName": "rs",
                "electionId": oid(7), "setVersion": 3,
                "hosts": hosts(&["a:27017", "b:27017"]),
            },
        );
        assert_eq!(m.addr, "b:27017");
        assert_eq!(m.election_id, Some(oid(7)));
        assert_eq!(m.set_version, Some(3));
        assert_eq!(m.set_name.as_deref(), Some("rs"));
        assert_eq!(m.hosts, vec!["a:27017", "b:27017"]);
    }

    #[test]
    fn missing_election_id_and_set_version_are_none() {
        let m = claimant("a:27017", None, None);
        assert_eq!(m.election_id, None);
        assert_eq!(m.set_version, None);
        assert!(m.hosts.is_empty());
    }

    #[test]
    fn reads_topology_version_with_int64_or_int32_counter() {
        for counter in [Bson::Int64(5), Bson::Int32(5)] {
            let m = MemberState::from_hello(
                "a:27017",
                &doc! {"ok": 1, "topologyVersion": {"processId": oid(1), "counter": counter}},
            );
            assert_eq!(m.topology_version, Some((oid(1), 5)));
        }
        let no_tv = MemberState::from_hello("a:27017", &doc! {"ok": 1});
        assert_eq!(no_tv.topology_version, None);
    }

    #[test]
    fn unreachable_only_when_every_member_fails_for_good() {
        let mut a = MemberState::unknown("a:1");
        let b = MemberState::unknown("b:1");
        a.failure = Some("certificate not trusted".into());
        let s = derive_from_empty(vec![a.clone(), b.clone()]);
        assert_eq!(s.unreachable(), None, "b may still answer");
        let mut b2 = b.clone();
        b2.failure = Some("certificate not trusted".into());
        let s = derive_from_empty(vec![a.clone(), b2]);
        assert_eq!(
            s.unreachable().as_deref(),
            Some("a:1: certificate not trusted; b:1: certificate not trusted")
        );
        let s = derive_from_empty(vec![a, claimant("b:1", Some(1), Some(1))]);
        assert_eq!(s.unreachable(), None, "a primary is known");
        assert_eq!(derive_from_empty(vec![]).unreachable(), None);
    }

    #[test]
    fn unknown_member_has_nothing_but_its_address() {
        let m = MemberState::unknown("c:27017");
        assert_eq!(m.addr, "c:27017");
        assert_eq!(m.role, Role::Unknown);
        assert_eq!(m.set_name, None);
        assert_eq!(m.topology_version, None);
        assert!(m.hosts.is_empty());
    }

    #[test]
    fn limits_read_from_reply() {
        let l = ServerLimits::from_hello(&doc! {
            "maxBsonObjectSize": 1024, "maxMessageSizeBytes": 4096_i64,
            "maxWriteBatchSize": 10.0, "logicalSessionTimeoutMinutes": 3,
            "minWireVersion": 6, "maxWireVersion": 17,
        });
        assert_eq!(
            l,
            ServerLimits {
                max_bson_object_size: 1024,
                max_message_size_bytes: 4096,
                max_write_batch_size: 10,
                logical_session_timeout_minutes: Some(3),
                min_wire_version: 6,
                max_wire_version: 17,
            }
        );
    }

    #[test]
    fn limits_default_when_absent_but_session_timeout_is_none() {
        let l = ServerLimits::from_hello(&doc! {"ok": 1});
        let def = ServerLimits::default();
        assert_eq!(l.max_bson_object_size, def.max_bson_object_size);
        assert_eq!(l.max_message_size_bytes, def.max_message_size_bytes);
        assert_eq!(l.max_write_batch_size, def.max_write_batch_size);
        assert_eq!(l.max_wire_version, def.max_wire_version);
        // Sessions are not supported unless the server says so.
        assert_eq!(l.logical_session_timeout_minutes, None);
    }

    // --- topologyVersion ordering -----------------------------------------

    fn with_tv(tv: Option<(u8, i64)>) -> MemberState {
        let mut m = secondary("a:27017");
        m.topology_version = tv.map(|(p, c)| (oid(p), c));
        m
    }

    #[test]
    fn older_counter_of_same_process_is_stale() {
        assert!(!with_tv(Some((1, 2))).superseded_by(&with_tv(Some((1, 1)))));
    }

    #[test]
    fn equal_or_greater_counter_of_same_process_supersedes() {
        assert!(with_tv(Some((1, 2))).superseded_by(&with_tv(Some((1, 2)))));
        assert!(with_tv(Some((1, 2))).superseded_by(&with_tv(Some((1, 3)))));
    }

    #[test]
    fn other_process_always_supersedes() {
        // A restarted server: its counter starts again from zero.
        assert!(with_tv(Some((1, 9))).superseded_by(&with_tv(Some((2, 0)))));
    }

    #[test]
    fn missing_topology_version_on_either_side_supersedes() {
        assert!(with_tv(None).superseded_by(&with_tv(Some((1, 0)))));
        assert!(with_tv(Some((1, 9))).superseded_by(&with_tv(None)));
        assert!(with_tv(None).superseded_by(&with_tv(None)));
    }

    // --- deriving the snapshot --------------------------------------------

    #[test]
    fn no_claimant_means_no_primary() {
        let s = derive_from_empty(vec![secondary("a:27017"), MemberState::unknown("b:27017")]);
        assert_eq!(s.primary, None);
        assert_eq!(s.epoch, 0, "None → None is not a change of primary");
        assert_eq!(s.members.len(), 2);
    }

    #[test]
    fn single_claimant_is_primary() {
        let s = derive_from_empty(vec![
            claimant("a:27017", Some(1), Some(1)),
            secondary("b:27017"),
        ]);
        assert_eq!(s.primary.as_deref(), Some("a:27017"));
        assert_eq!(s.election_id, Some(oid(1)));
        assert_eq!(s.epoch, 1);
    }

    #[test]
    fn higher_election_id_wins_whatever_the_order() {
        let s = derive_from_empty(vec![
            claimant("a:27017", Some(1), Some(1)),
            claimant("b:27017", Some(2), Some(1)),
        ]);
        assert_eq!(s.primary.as_deref(), Some("b:27017"));
        assert_eq!(s.election_id, Some(oid(2)));
        let s = derive_from_empty(vec![
            claimant("a:27017", Some(2), Some(1)),
            claimant("b:27017", Some(1), Some(1)),
        ]);
        assert_eq!(s.primary.as_deref(), Some("a:27017"));
        assert_eq!(s.election_id, Some(oid(2)));
    }

    #[test]
    fn same_election_id_higher_set_version_wins() {
        let s = derive_from_empty(vec![
            claimant("a:27017", Some(1), Some(2)),
            claimant("b:27017", Some(1), Some(1)),
        ]);
        assert_eq!(s.primary.as_deref(), Some("a:27017"));
    }

    #[test]
    fn election_id_takes_precedence_over_set_version() {
        // (2, 1) > (1, 50): the set version may go down with a new election.
        let s = derive_from_empty(vec![
            claimant("a:27017", Some(1), Some(50)),
            claimant("b:27017", Some(2), Some(1)),
        ]);
        assert_eq!(s.primary.as_deref(), Some("b:27017"));
    }

    #[test]
    fn missing_election_id_loses_to_present_one() {
        let s = derive_from_empty(vec![
            claimant("a:27017", Some(1), Some(1)),
            claimant("b:27017", None, Some(9)),
        ]);
        assert_eq!(s.primary.as_deref(), Some("a:27017"));
    }

    #[test]
    fn without_election_ids_higher_set_version_wins() {
        let s = derive_from_empty(vec![
            claimant("a:27017", None, Some(1)),
            claimant("b:27017", None, Some(2)),
        ]);
        assert_eq!(s.primary.as_deref(), Some("b:27017"));
    }

    #[test]
    fn unknown_or_other_members_never_become_primary() {
        let mut was_primary = claimant("a:27017", Some(9), Some(9));
        was_primary.role = Role::Unknown;
        let s = derive_from_empty(vec![was_primary, claimant("b:27017", Some(1), Some(1))]);
        assert_eq!(s.primary.as_deref(), Some("b:27017"));
    }

    #[test]
    fn epoch_counts_every_change_of_primary_including_to_none() {
        let s1 = derive_from_empty(vec![claimant("a:27017", Some(1), Some(1))]);
        assert_eq!((s1.primary.as_deref(), s1.epoch), (Some("a:27017"), 1));
        let s2 = Snapshot::derive(&s1, vec![MemberState::unknown("a:27017")]);
        assert_eq!((s2.primary.as_deref(), s2.epoch), (None, 2));
        let s3 = Snapshot::derive(&s2, vec![claimant("b:27017", Some(2), Some(1))]);
        assert_eq!((s3.primary.as_deref(), s3.epoch), (Some("b:27017"), 3));
        let s4 = Snapshot::derive(&s3, vec![claimant("a:27017", Some(3), Some(1))]);
        assert_eq!((s4.primary.as_deref(), s4.epoch), (Some("a:27017"), 4));
    }

    #[test]
    fn epoch_unchanged_while_primary_stays() {
        let s1 = derive_from_empty(vec![claimant("a:27017", Some(1), Some(1))]);
        let s2 = Snapshot::derive(
            &s1,
            vec![claimant("a:27017", Some(1), Some(2)), secondary("b:27017")],
        );
        assert_eq!(s2.primary.as_deref(), Some("a:27017"));
        assert_eq!(s2.epoch, s1.epoch);
    }

    #[test]
    fn limits_come_from_the_primary() {
        let mut p = claimant("a:27017", Some(1), Some(1));
        p.limits.max_wire_version = 17;
        p.limits.logical_session_timeout_minutes = Some(3);
        let mut s = secondary("b:27017");
        s.limits.max_wire_version = 25;
        s.limits.logical_session_timeout_minutes = Some(2);
        let snap = derive_from_empty(vec![p, s]);
        assert_eq!(snap.limits.max_wire_version, 17);
        assert_eq!(snap.limits.logical_session_timeout_minutes, Some(3));
    }

    #[test]
    fn limits_and_election_id_kept_from_last_primary_when_none() {
        let mut p = claimant("a:27017", Some(4), Some(1));
        p.limits.max_bson_object_size = 1234;
        let s1 = derive_from_empty(vec![p]);
        let mut s = secondary("b:27017");
        s.limits.max_bson_object_size = 99;
        let s2 = Snapshot::derive(&s1, vec![MemberState::unknown("a:27017"), s]);
        assert_eq!(s2.primary, None);
        assert_eq!(s2.limits.max_bson_object_size, 1234);
        assert_eq!(s2.election_id, Some(oid(4)));
    }

    #[test]
    fn default_limits_until_a_primary_is_seen() {
        let mut s = secondary("b:27017");
        s.limits.max_bson_object_size = 99;
        assert_eq!(derive_from_empty(vec![s]).limits, ServerLimits::default());
    }

    #[test]
    fn set_name_from_members_else_kept() {
        let s1 = derive_from_empty(vec![MemberState::unknown("a:27017"), secondary("b:27017")]);
        assert_eq!(s1.set_name.as_deref(), Some("rs"));
        let s2 = Snapshot::derive(&s1, vec![MemberState::unknown("b:27017")]);
        assert_eq!(s2.set_name.as_deref(), Some("rs"));
    }

    #[test]
    fn member_lookup_by_address() {
        let s = derive_from_empty(vec![claimant("a:27017", None, None), secondary("b:27017")]);
        assert_eq!(s.member("b:27017").map(|m| m.role), Some(Role::Secondary));
        assert!(s.member("c:27017").is_none());
    }

    #[test]
    fn empty_snapshot() {
        let s = Snapshot::empty();
        assert_eq!(s.primary, None);
        assert!(s.members.is_empty());
        assert_eq!(s.set_name, None);
        assert_eq!(s.epoch, 0);
        assert_eq!(s.limits, ServerLimits::default());
    }

    // --- same_as ----------------------------------------------------------

    #[test]
    fn same_as_ignores_the_time() {
        let members = vec![claimant("a:27017", Some(1), Some(1)), secondary("b:27017")];
        let s1 = derive_from_empty(members.clone());
        let mut s2 = derive_from_empty(members);
        s2.at = s1.at + std::time::Duration::from_secs(60);
        assert!(s1.same_as(&s2));
        assert!(s2.same_as(&s1));
    }

    #[test]
    fn same_as_sees_primary_members_limits_and_election_id() {
        let base = derive_from_empty(vec![claimant("a:27017", Some(1), Some(1))]);
        let mut other = base.clone();
        other.primary = None;
        assert!(!base.same_as(&other));
        let mut other = base.clone();
        other.members[0].role = Role::Secondary;
        assert!(!base.same_as(&other));
        let mut other = base.clone();
        other.limits.max_wire_version += 1;
        assert!(!base.same_as(&other));
        let mut other = base.clone();
        other.election_id = Some(oid(2));
        assert!(!base.same_as(&other));
    }
}
