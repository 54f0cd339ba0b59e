//! Replica-set scenarios fed through a manual [`Topology`], after the facts
//! of the SDAM specification's replica-set tests: which member the published
//! snapshot names as primary, its epoch, members, set name and limits.
//!
//! The crate does not implement the whole SDAM state machine (it never
//! removes a member, for one); where it differs on purpose the test says so.

use std::sync::Arc;
use std::time::Duration;

use bson::{doc, oid::ObjectId, Bson, Document};
use holdfast_topology::{Role, Snapshot, Topology};

const A: &str = "a:27017";
const B: &str = "b:27017";
const C: &str = "c:27017";
const D: &str = "d:27017";
const E: &str = "e:27017";

fn oid(n: u8) -> ObjectId {
    let mut b = [0u8; 12];
    b[11] = n;
    ObjectId::from_bytes(b)
}

fn list(hosts: &[&str]) -> Bson {
    Bson::Array(hosts.iter().map(|h| Bson::String(h.to_string())).collect())
}

/// A hello reply of a replica-set primary.
fn primary(hosts: &[&str]) -> Document {
    doc! {
        "ok": 1.0, "helloOk": true, "isWritablePrimary": true, "setName": "rs",
        "hosts": list(hosts), "minWireVersion": 0, "maxWireVersion": 21,
    }
}

/// A hello reply of a replica-set secondary.
fn secondary(hosts: &[&str]) -> Document {
    doc! {
        "ok": 1.0, "helloOk": true, "isWritablePrimary": false, "secondary": true,
        "setName": "rs", "hosts": list(hosts), "minWireVersion": 0, "maxWireVersion": 21,
    }
}

trait Reply: Sized {
    fn with(self, key: &str, value: impl Into<Bson>) -> Self;
    fn election(self, n: u8) -> Self {
        self.with("electionId", oid(n))
    }
    fn set_version(self, v: i32) -> Self {
        self.with("setVersion", v)
    }
    fn tv(self, process: u8, counter: i64) -> Self {
        self.with(
            "topologyVersion",
            doc! {"processId": oid(process), "counter": counter},
        )
    }
}

impl Reply for Document {
    fn with(mut self, key: &str, value: impl Into<Bson>) -> Self {
        self.insert(key, value.into());
        self
    }
}

fn role(t: &Topology, addr: &str) -> Option<Role> {
    t.snapshot().member(addr).map(|m| m.role)
}

fn addrs(s: &Snapshot) -> Vec<&str> {
    s.members.iter().map(|m| m.addr.as_str()).collect()
}

fn primary_of(t: &Topology) -> Option<String> {
    t.snapshot().primary.clone()
}

// --- manual mode ----------------------------------------------------------

#[test]
fn seeds_start_unknown_and_nothing_is_primary() {
    let t = Topology::manual(&[A, B]);
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 0);
    assert_eq!(s.set_name, None);
    assert_eq!(addrs(&s), vec![A, B]);
    assert!(s.members.iter().all(|m| m.role == Role::Unknown));
}

#[test]
fn clones_share_one_watcher() {
    let t = Topology::manual(&[A]);
    let t2 = t.clone();
    let mut rx = t2.subscribe();
    t.observe_hello(A, &primary(&[A]));
    assert!(rx.has_changed().unwrap());
    assert_eq!(rx.borrow_and_update().primary.as_deref(), Some(A));
    assert_eq!(primary_of(&t2).as_deref(), Some(A));
}

#[test]
fn observations_after_shutdown_are_ignored() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    t.shutdown();
    t.observe_failure(A);
    t.observe_hello(B, &primary(&[A, B]).election(9));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert!(s.member(B).is_none());
}

#[tokio::test]
async fn manual_mode_never_probes() {
    // A seed that would accept a probe's connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let seed = listener.local_addr().unwrap().to_string();
    let t = Topology::manual(&[&seed]);
    t.observe_hello(&seed, &primary(&[&seed]));
    let epoch = t.snapshot().epoch;
    // No primary now: driver mode would start probing every member.
    t.report_failure(&seed, epoch);
    t.observe_failure(&seed);
    assert_eq!(t.snapshot().primary, None);
    let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(accepted.is_err(), "a manual topology connected to {seed}");
    assert_eq!(
        t.snapshot().primary,
        None,
        "nothing but observe_hello finds a primary"
    );
}

#[tokio::test]
async fn wait_for_primary_wakes_on_observed_hello() {
    let t = Topology::manual(&[A, B]);
    let t2 = t.clone();
    let feeder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        t2.observe_hello(B, &primary(&[A, B]));
    });
    let s = t
        .wait_for_primary(Duration::from_secs(5))
        .await
        .expect("a primary");
    assert_eq!(s.primary.as_deref(), Some(B));
    feeder.await.unwrap();
}

#[tokio::test]
async fn wait_for_primary_times_out_without_one() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &secondary(&[A]));
    assert!(t
        .wait_for_primary(Duration::from_millis(50))
        .await
        .is_none());
}

// --- discovery ------------------------------------------------------------

#[test]
fn secondary_hosts_list_adds_unknown_members() {
    let t = Topology::manual(&[B]);
    t.observe_hello(B, &secondary(&[A, B]));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 0);
    assert_eq!(s.set_name.as_deref(), Some("rs"));
    assert_eq!(addrs(&s), vec![A, B]);
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
}

#[test]
fn primary_is_found_through_hosts_lists() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &secondary(&[A, B, C]));
    assert_eq!(addrs(&t.snapshot()), vec![A, B, C]);
    // B names D as primary: D becomes a member to ask, not the primary.
    t.observe_hello(B, &secondary(&[B, C, D]).with("primary", D));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.member(D).unwrap().role, Role::Unknown);
    // D itself says so: now it is.
    t.observe_hello(D, &primary(&[B, C, D, E]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(D));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(E).unwrap().role, Role::Unknown);
    t.observe_hello(C, &secondary(&[A, B, C]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(D));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(C).unwrap().role, Role::Secondary);
}

#[test]
fn primary_field_alone_names_no_primary() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &secondary(&[B]).with("primary", B).with("me", C));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.member(B).unwrap().role, Role::Unknown);
    t.observe_hello(B, &primary(&[B]).with("me", B));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
}

#[test]
fn primary_discovered_with_its_hosts_as_unknown() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.set_name.as_deref(), Some("rs"));
    assert_eq!(s.member(B).unwrap().role, Role::Unknown);
}

#[test]
fn primary_reports_a_new_member() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &secondary(&[A, B]));
    t.observe_hello(B, &primary(&[A, B]));
    assert_eq!(addrs(&t.snapshot()), vec![A, B]);
    t.observe_hello(B, &primary(&[A, B, C]));
    let s = t.snapshot();
    assert_eq!(s.member(C).unwrap().role, Role::Unknown);
    t.observe_hello(C, &secondary(&[A, B, C]).with("primary", B));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(C).unwrap().role, Role::Secondary);
}

#[test]
fn primary_reached_by_an_alias_stays_primary() {
    // SDAM would drop seed A, absent from the primary's own hosts list, and
    // have no primary until B answers; holdfast never removes a member, and
    // A reaches that same primary.
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[B]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(B).unwrap().role, Role::Unknown);
}

#[test]
fn member_dropped_by_a_reconfig_is_kept() {
    // Deliberately unlike SDAM: members are never removed.
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    t.observe_hello(A, &primary(&[A]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(addrs(&s), vec![A, B]);
}

#[test]
fn reply_from_an_unseeded_address_adds_it() {
    let t = Topology::manual(&[A]);
    t.observe_hello(C, &secondary(&[A, C]));
    let s = t.snapshot();
    assert_eq!(addrs(&s), vec![A, C]);
    assert_eq!(s.member(C).unwrap().role, Role::Secondary);
}

// --- server types ---------------------------------------------------------

#[test]
fn arbiters_ghosts_and_hidden_members_are_other() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B, C, D, E]));
    t.observe_hello(
        D,
        &doc! {"ok": 1, "isWritablePrimary": false, "isreplicaset": true, "maxWireVersion": 21},
    );
    t.observe_hello(
        E,
        &doc! {"ok": 1, "isWritablePrimary": false, "arbiterOnly": true, "setName": "rs",
        "hosts": list(&[A, B, C, D, E])},
    );
    t.observe_hello(
        C,
        &doc! {"ok": 1, "isWritablePrimary": false, "hidden": true, "setName": "rs"},
    );
    t.observe_hello(B, &secondary(&[A, B, C, D, E]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
    assert_eq!(s.member(C).unwrap().role, Role::Other);
    assert_eq!(s.member(D).unwrap().role, Role::Other);
    assert_eq!(s.member(E).unwrap().role, Role::Other);
}

#[test]
fn hidden_member_is_other_but_its_hosts_are_members() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &secondary(&[C, D]).with("hidden", true));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.set_name.as_deref(), Some("rs"));
    assert_eq!(s.member(A).unwrap().role, Role::Other);
    assert_eq!(s.member(C).unwrap().role, Role::Unknown);
    assert_eq!(s.member(D).unwrap().role, Role::Unknown);
}

#[test]
fn member_neither_primary_nor_secondary_is_other() {
    let t = Topology::manual(&[B]);
    t.observe_hello(
        B,
        &doc! {"ok": 1, "isWritablePrimary": false, "secondary": false, "setName": "rs",
        "hosts": list(&[C, D])},
    );
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.member(B).unwrap().role, Role::Other);
    assert_eq!(s.member(C).unwrap().role, Role::Unknown);
    assert_eq!(s.member(D).unwrap().role, Role::Unknown);
}

#[test]
fn ghost_seed_is_no_primary() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(
        B,
        &doc! {"ok": 1, "isWritablePrimary": false, "isreplicaset": true},
    );
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.member(B).unwrap().role, Role::Other);
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
}

#[test]
fn standalone_seed_is_not_primary() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(B, &doc! {"ok": 1, "isWritablePrimary": true});
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 0);
    assert_eq!(s.member(B).unwrap().role, Role::Other);
    t.observe_hello(A, &primary(&[A]));
    assert_eq!(primary_of(&t).as_deref(), Some(A));
}

#[test]
fn mongos_is_not_primary() {
    let t = Topology::manual(&[B]);
    t.observe_hello(
        B,
        &doc! {"ok": 1, "isWritablePrimary": true, "msg": "isdbgrid"},
    );
    assert_eq!(primary_of(&t), None);
    assert_eq!(role(&t, B), Some(Role::Other));
}

#[test]
fn legacy_ismaster_reply_names_the_primary() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(
        A,
        &doc! {"ok": 1.0, "ismaster": true, "setName": "rs", "hosts": list(&[A, B])},
    );
    t.observe_hello(
        B,
        &doc! {"ok": 1.0, "ismaster": false, "secondary": true, "setName": "rs", "hosts": list(&[A, B])},
    );
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
}

#[test]
fn primary_becoming_standalone_mongos_or_ghost_is_no_longer_primary() {
    for reply in [
        doc! {"ok": 1, "minWireVersion": 0, "maxWireVersion": 21},
        doc! {"ok": 1, "isWritablePrimary": true, "msg": "isdbgrid"},
        doc! {"ok": 1, "isWritablePrimary": false, "isreplicaset": true},
    ] {
        let t = Topology::manual(&[A]);
        t.observe_hello(A, &primary(&[A]));
        t.observe_hello(A, &reply);
        let s = t.snapshot();
        assert_eq!(s.primary, None, "after {reply}");
        assert_eq!(s.epoch, 2);
        assert_eq!(s.member(A).unwrap().role, Role::Other);
    }
}

// --- members going unknown ------------------------------------------------

#[test]
fn heartbeat_failure_of_the_primary_clears_it() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    assert_eq!(t.snapshot().epoch, 1);
    t.observe_failure(A);
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 2);
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
}

#[test]
fn heartbeat_failure_of_a_secondary_keeps_the_primary_and_epoch() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    t.observe_hello(B, &secondary(&[A, B]));
    t.observe_failure(B);
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(B).unwrap().role, Role::Unknown);
}

#[test]
fn ok_zero_reply_makes_a_secondary_unknown() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    t.observe_hello(B, &secondary(&[A, B]));
    t.observe_hello(
        B,
        &doc! {"ok": 0, "minWireVersion": 0, "maxWireVersion": 21},
    );
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(B).unwrap().role, Role::Unknown);
}

#[test]
fn ok_zero_reply_from_the_primary_clears_it() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    t.observe_hello(
        A,
        &doc! {"ok": 0.0, "isWritablePrimary": true, "setName": "rs"},
    );
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 2);
}

#[test]
fn failure_of_an_unseen_address_adds_it_as_unknown() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    t.observe_failure(C);
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(C).unwrap().role, Role::Unknown);
}

#[test]
fn primary_back_after_a_failure_is_a_new_epoch() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).election(1));
    t.observe_failure(A);
    t.observe_hello(A, &primary(&[A]).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 3);
}

#[test]
fn failure_forgets_the_topology_version() {
    // After a failed check any reply is newer, whatever its counter.
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(1, 5));
    t.observe_failure(A);
    t.observe_hello(A, &primary(&[A]).tv(1, 3));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(A).unwrap().topology_version, Some((oid(1), 3)));
}

// --- new primaries, electionId and setVersion -------------------------------

#[test]
fn new_primary_replaces_the_old_one() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    assert_eq!(t.snapshot().epoch, 1);
    t.observe_hello(B, &primary(&[A, B]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.epoch, 2);
}

#[test]
fn new_primary_with_a_greater_election_id_wins_and_the_old_claim_stays_stale() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    assert_eq!(t.snapshot().election_id, Some(oid(1)));
    t.observe_hello(B, &primary(&[A, B]).set_version(1).election(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.election_id, Some(oid(2)));
    assert_eq!(s.epoch, 2);
    // A's late claim with the old electionId changes nothing.
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.election_id, Some(oid(2)));
    assert_eq!(s.epoch, 2);
}

#[test]
fn new_primary_with_a_greater_set_version_wins() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(2).election(1));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.epoch, 2);
}

#[test]
fn election_id_takes_precedence_over_set_version() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(2).election(1));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
    // A newer election at a lower setVersion.
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.election_id, Some(oid(2)));
    assert_eq!(s.epoch, 3);
}

#[test]
fn set_version_may_roll_back_with_a_newer_election() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(2).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(1).election(2));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
    t.observe_hello(A, &primary(&[A, B]).set_version(2).election(1));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
}

#[test]
fn primary_without_election_id_loses_to_one_with() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B, C]).set_version(1));
    assert_eq!(primary_of(&t).as_deref(), Some(A));
    t.observe_hello(B, &primary(&[A, B, C]).set_version(1).election(2));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
    t.observe_hello(A, &primary(&[A, B, C]).set_version(1));
    assert_eq!(primary_of(&t).as_deref(), Some(B));
    // A lower electionId is stale too.
    t.observe_hello(C, &primary(&[A, B, C]).set_version(1).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.election_id, Some(oid(2)));
    assert_eq!(s.epoch, 2);
}

#[test]
fn greater_set_version_without_election_id_is_still_stale() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(2));
    assert_eq!(primary_of(&t).as_deref(), Some(A));
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.election_id, Some(oid(2)));
    assert_eq!(s.epoch, 1);
}

#[test]
fn without_election_ids_a_lower_set_version_is_stale() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(2));
    t.observe_hello(B, &primary(&[A, B]).set_version(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
}

#[test]
fn without_election_ids_a_greater_set_version_wins() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.epoch, 2);
}

#[test]
fn equal_election_ids_the_later_claim_wins() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(1).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.election_id, Some(oid(1)));
    assert_eq!(s.epoch, 2);
}

#[test]
fn old_primary_is_unknown_once_a_newer_one_appears() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(1).election(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
    assert_eq!(s.member(B).unwrap().role, Role::Primary);
}

#[test]
fn stale_claim_leaves_the_claimant_unknown() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(1).election(2));
    t.observe_hello(A, &primary(&[A, B, C]).set_version(1).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
    // A stale primary's hosts list is not trusted.
    assert!(s.member(C).is_none());
}

#[test]
fn equal_claims_the_later_one_wins_whatever_the_address() {
    for (first, second) in [(A, B), (B, A)] {
        let t = Topology::manual(&[A, B]);
        t.observe_hello(first, &primary(&[A, B]).set_version(1).election(1));
        t.observe_hello(second, &primary(&[A, B]).set_version(1).election(1));
        let s = t.snapshot();
        assert_eq!(s.primary.as_deref(), Some(second));
        assert_eq!(s.epoch, 2);
        assert_eq!(s.member(first).unwrap().role, Role::Unknown);
    }
}

#[test]
fn without_any_ids_the_later_claim_wins_whatever_the_address() {
    for (first, second) in [(A, B), (B, A)] {
        let t = Topology::manual(&[A, B]);
        t.observe_hello(first, &primary(&[A, B]));
        t.observe_hello(second, &primary(&[A, B]));
        let s = t.snapshot();
        assert_eq!(s.primary.as_deref(), Some(second));
        assert_eq!(s.member(first).unwrap().role, Role::Unknown);
    }
}

#[test]
fn stale_primary_is_not_used_when_the_newer_one_fails() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(1).election(2));
    assert_eq!(t.snapshot().epoch, 2);
    t.observe_failure(B);
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 3);
    // A, deposed but not yet aware of it, still claims the old election.
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 3);
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
    // A wins a newer election.
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(3));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.election_id, Some(oid(3)));
    assert_eq!(s.epoch, 4);
    t.observe_hello(B, &secondary(&[A, B]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
}

#[test]
fn stale_set_version_is_not_used_when_the_newer_primary_fails() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    t.observe_hello(B, &primary(&[A, B]).set_version(2).election(1));
    t.observe_failure(B);
    t.observe_hello(A, &primary(&[A, B]).set_version(1).election(1));
    assert_eq!(primary_of(&t), None);
    t.observe_hello(A, &primary(&[A, B]).set_version(2).election(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 4);
}

#[test]
fn stale_primary_is_not_used_after_report_failure_of_the_newer_one() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]).election(1));
    t.observe_hello(B, &primary(&[A, B]).election(2));
    let epoch = t.snapshot().epoch;
    t.report_failure(B, epoch);
    assert_eq!(primary_of(&t), None);
    t.observe_hello(A, &primary(&[A, B]).election(1));
    assert_eq!(primary_of(&t), None);
    // B is still primary after all: same election, it comes back.
    t.observe_hello(B, &primary(&[A, B]).election(2));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.epoch, epoch + 2);
}

#[test]
fn epoch_increments_on_every_change_of_primary() {
    let t = Topology::manual(&[A, B]);
    let mut rx = t.subscribe();
    let mut seen = Vec::new();
    let mut step = |f: &dyn Fn(&Topology)| {
        f(&t);
        let s = rx.borrow_and_update().clone();
        seen.push((s.primary.clone(), s.epoch));
    };
    step(&|t| t.observe_hello(A, &primary(&[A, B]).election(1)));
    step(&|t| t.observe_hello(B, &secondary(&[A, B])));
    step(&|t| t.observe_failure(A));
    step(&|t| t.observe_hello(B, &primary(&[A, B]).election(2)));
    step(&|t| t.observe_hello(A, &secondary(&[A, B])));
    step(&|t| t.observe_hello(B, &secondary(&[A, B]).tv(1, 1)));
    step(&|t| t.observe_hello(A, &primary(&[A, B]).election(3)));
    let a = Some(A.to_string());
    let b = Some(B.to_string());
    assert_eq!(
        seen,
        vec![
            (a.clone(), 1),
            (a.clone(), 1),
            (None, 2),
            (b.clone(), 3),
            (b, 3),
            (None, 4),
            (a, 5),
        ]
    );
}

// --- topologyVersion ------------------------------------------------------

#[test]
fn older_topology_version_is_ignored() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(1, 1));
    let rx = t.subscribe();
    t.observe_hello(A, &secondary(&[A]).tv(1, 0));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(A).unwrap().role, Role::Primary);
    assert_eq!(s.member(A).unwrap().topology_version, Some((oid(1), 1)));
    assert!(!rx.has_changed().unwrap(), "nothing published");
}

#[test]
fn older_topology_version_adds_no_members() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(1, 1));
    t.observe_hello(A, &primary(&[A, B]).tv(1, 0));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(addrs(&s), vec![A]);
    assert_eq!(s.member(A).unwrap().hosts, vec![A]);
}

#[test]
fn equal_topology_version_is_accepted() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(1, 1));
    t.observe_hello(A, &primary(&[A, B]).tv(1, 1));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(A).unwrap().hosts, vec![A, B]);
    assert_eq!(s.member(B).unwrap().role, Role::Unknown);
}

#[test]
fn greater_topology_version_is_accepted() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(1, 1));
    t.observe_hello(A, &secondary(&[A]).tv(1, 2));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 2);
    assert_eq!(s.member(A).unwrap().topology_version, Some((oid(1), 2)));
}

#[test]
fn other_process_id_is_accepted_whatever_its_counter() {
    // The member restarted: a new processId, its counter from zero.
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(1, 7));
    t.observe_hello(A, &secondary(&[A]).tv(2, 0));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.member(A).unwrap().topology_version, Some((oid(2), 0)));
}

#[test]
fn reply_without_topology_version_is_accepted() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).tv(3, 7));
    t.observe_hello(A, &primary(&[A, D]));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(A).unwrap().topology_version, None);
    assert_eq!(s.member(D).unwrap().role, Role::Unknown);
}

#[test]
fn late_reply_from_before_a_stepdown_does_not_restore_the_primary() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]).election(1).tv(1, 1));
    t.observe_hello(A, &secondary(&[A, B]).tv(1, 2));
    assert_eq!(t.snapshot().epoch, 2);
    // A probe answered before the stepdown arrives last.
    t.observe_hello(A, &primary(&[A, B]).election(1).tv(1, 1));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 2);
    assert_eq!(s.member(A).unwrap().role, Role::Secondary);
}

// --- report_failure -------------------------------------------------------

#[test]
fn report_failure_for_the_current_epoch_clears_the_primary() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    t.observe_hello(B, &secondary(&[A, B]));
    let epoch = t.snapshot().epoch;
    t.report_failure(A, epoch);
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, epoch + 1);
    assert_eq!(s.member(A).unwrap().role, Role::Unknown);
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
}

#[test]
fn report_failure_for_an_older_epoch_is_ignored() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]).election(1));
    let old = t.snapshot().epoch;
    t.observe_hello(A, &secondary(&[A, B]));
    t.observe_hello(B, &primary(&[A, B]).election(2));
    let cur = t.snapshot().epoch;
    assert!(cur > old);
    let rx = t.subscribe();
    // A forwarder that still targeted A, and one that targets B but under
    // an epoch that is over.
    t.report_failure(A, old);
    t.report_failure(B, old);
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(B));
    assert_eq!(s.epoch, cur);
    assert!(!rx.has_changed().unwrap(), "nothing published");
}

#[test]
fn report_failure_of_a_member_that_is_not_primary_is_ignored() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    t.observe_hello(B, &secondary(&[A, B]));
    let epoch = t.snapshot().epoch;
    t.report_failure(B, epoch);
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, epoch);
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
}

#[test]
fn report_failure_without_a_primary_is_ignored() {
    let t = Topology::manual(&[A]);
    t.report_failure(A, 0);
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 0);
}

#[test]
fn after_report_failure_the_same_state_restores_the_primary_but_an_older_one_does_not() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]).election(1).tv(1, 4));
    t.report_failure(A, 1);
    assert_eq!(t.snapshot().epoch, 2);
    // Older than what A last said: ignored.
    t.observe_hello(A, &primary(&[A]).election(1).tv(1, 3));
    assert_eq!(primary_of(&t), None);
    // A heartbeat with A's current topologyVersion: it is still primary.
    t.observe_hello(A, &primary(&[A]).election(1).tv(1, 4));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 3);
}

// --- limits and set name --------------------------------------------------

#[test]
fn limits_come_from_the_primary() {
    let t = Topology::manual(&[A]);
    t.observe_hello(
        A,
        &primary(&[A, B, C])
            .with("logicalSessionTimeoutMinutes", 3)
            .with("maxBsonObjectSize", 1_000_000)
            .with("maxWireVersion", 17),
    );
    t.observe_hello(
        B,
        &secondary(&[A, B, C])
            .with("logicalSessionTimeoutMinutes", 2)
            .with("maxWireVersion", 25),
    );
    t.observe_hello(
        C,
        &doc! {"ok": 1, "isWritablePrimary": false, "setName": "rs", "hidden": true,
        "logicalSessionTimeoutMinutes": 1},
    );
    let l = t.snapshot().limits;
    assert_eq!(l.logical_session_timeout_minutes, Some(3));
    assert_eq!(l.max_bson_object_size, 1_000_000);
    assert_eq!(l.max_wire_version, 17);
}

#[test]
fn limits_are_kept_from_the_last_primary_and_follow_a_new_one() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(
        A,
        &primary(&[A, B])
            .election(1)
            .with("logicalSessionTimeoutMinutes", 3),
    );
    t.observe_failure(A);
    t.observe_hello(
        B,
        &secondary(&[A, B]).with("logicalSessionTimeoutMinutes", 9),
    );
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.limits.logical_session_timeout_minutes, Some(3));
    assert_eq!(s.election_id, Some(oid(1)));
    t.observe_hello(
        B,
        &primary(&[A, B])
            .election(2)
            .with("logicalSessionTimeoutMinutes", 5),
    );
    assert_eq!(t.snapshot().limits.logical_session_timeout_minutes, Some(5));
}

#[test]
fn primary_without_session_support_has_no_session_timeout() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    assert_eq!(t.snapshot().limits.logical_session_timeout_minutes, None);
}

#[test]
fn set_name_is_kept_without_a_primary() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    t.observe_failure(A);
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.set_name.as_deref(), Some("rs"));
}

#[test]
fn first_set_name_reported_is_the_set_name() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(B, &secondary(&[A, B]));
    t.observe_hello(
        A,
        &doc! {"ok": 1, "secondary": true, "setName": "another", "hosts": list(&[A])},
    );
    let s = t.snapshot();
    assert_eq!(s.set_name.as_deref(), Some("rs"));
    assert_eq!(s.member(A).unwrap().role, Role::Other);
}

#[test]
fn primary_of_another_set_is_not_primary() {
    // Even with a greater electionId, and listing our primary's host.
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A, B]).election(1));
    t.observe_hello(B, &primary(&[A]).election(2).with("setName", "wrong"));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.epoch, 1);
    assert_eq!(s.set_name.as_deref(), Some("rs"));
    assert_eq!(s.member(A).unwrap().role, Role::Primary);
    assert_eq!(s.member(B).unwrap().role, Role::Other);
}

#[test]
fn primary_that_changes_set_name_is_no_longer_primary() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    t.observe_hello(A, &primary(&[A]).with("setName", "wrong"));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.epoch, 2);
    assert_eq!(s.set_name.as_deref(), Some("rs"));
    assert_eq!(s.member(A).unwrap().role, Role::Other);
}

#[test]
fn primary_stepping_down_into_another_set_is_other() {
    let t = Topology::manual(&[A]);
    t.observe_hello(A, &primary(&[A]));
    t.observe_hello(A, &secondary(&[A]).with("setName", "wrong"));
    let s = t.snapshot();
    assert_eq!(s.primary, None);
    assert_eq!(s.member(A).unwrap().role, Role::Other);
}

#[test]
fn secondary_of_another_set_adds_no_members() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    t.observe_hello(B, &secondary(&[A, B, C]).with("setName", "wrong"));
    let s = t.snapshot();
    assert_eq!(s.primary.as_deref(), Some(A));
    assert_eq!(s.member(B).unwrap().role, Role::Other);
    assert!(s.member(C).is_none());
}

// --- publishing -------------------------------------------------------------

#[test]
fn identical_reply_publishes_nothing() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]).election(1).tv(1, 1));
    let before: Arc<Snapshot> = t.snapshot();
    let rx = t.subscribe();
    t.observe_hello(A, &primary(&[A, B]).election(1).tv(1, 1));
    assert!(!rx.has_changed().unwrap());
    assert!(Arc::ptr_eq(&before, &t.snapshot()));
}

#[test]
fn change_of_a_secondary_is_published_in_the_same_epoch() {
    let t = Topology::manual(&[A, B]);
    t.observe_hello(A, &primary(&[A, B]));
    let mut rx = t.subscribe();
    t.observe_hello(B, &secondary(&[A, B]));
    assert!(rx.has_changed().unwrap());
    let s = rx.borrow_and_update().clone();
    assert_eq!(s.epoch, 1);
    assert_eq!(s.member(B).unwrap().role, Role::Secondary);
}
