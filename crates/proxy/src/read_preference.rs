//! Read preference, as mongos honours it: the mode, tag sets,
//! `maxStalenessSeconds`, a latency window and a random choice inside it
//! (the server-selection and max-staleness specifications). `hedge` is
//! accepted and ignored. Pure: a snapshot of the set in, a member out.

use std::time::Duration;

use bson::{Bson, Document, RawBsonRef, RawDocument, Timestamp};
use holdfast_topology::{MemberState, Role, Snapshot};
use holdfast_wire::codes;

/// The smallest `maxStalenessSeconds` (the specification's 90 s, or the
/// heartbeat plus 10 s when that is larger).
pub const SMALLEST_MAX_STALENESS: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Primary,
    PrimaryPreferred,
    Secondary,
    SecondaryPreferred,
    Nearest,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Primary,
        Mode::PrimaryPreferred,
        Mode::Secondary,
        Mode::SecondaryPreferred,
        Mode::Nearest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Primary => "primary",
            Mode::PrimaryPreferred => "primaryPreferred",
            Mode::Secondary => "secondary",
            Mode::SecondaryPreferred => "secondaryPreferred",
            Mode::Nearest => "nearest",
        }
    }

    fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadPreference {
    pub mode: Mode,
    /// Tried in order; `{}` matches every member.
    pub tag_sets: Vec<Document>,
    pub max_staleness: Option<Duration>,
}

impl Default for ReadPreference {
    fn default() -> Self {
        ReadPreference {
            mode: Mode::Primary,
            tag_sets: Vec::new(),
            max_staleness: None,
        }
    }
}

/// An invalid read preference: the error mongos gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: i32,
    pub message: String,
}

fn invalid(code: i32, message: impl Into<String>) -> Invalid {
    Invalid {
        code,
        message: message.into(),
    }
}

impl ReadPreference {
    /// Reads a `$readPreference` document (`None`: primary). `heartbeat`
    /// sets the smallest allowed `maxStalenessSeconds` beyond 90 s.
    pub fn parse(d: Option<&RawDocument>, heartbeat: Duration) -> Result<ReadPreference, Invalid> {
        let Some(d) = d else {
            return Ok(ReadPreference::default());
        };
        let bad = |m: String| invalid(codes::FAILED_TO_PARSE, m);
        let mode = match d.get("mode") {
            Ok(Some(RawBsonRef::String(s))) => Mode::parse(s)
                .ok_or_else(|| bad(format!("Could not parse $readPreference mode '{s}'")))?,
            Ok(Some(_)) => return Err(bad("$readPreference mode must be a string".into())),
            _ => return Err(bad("$readPreference has no mode".into())),
        };
        let tag_sets = match d.get("tags") {
            Ok(Some(RawBsonRef::Array(a))) => a
                .into_iter()
                .map(|t| match t {
                    Ok(RawBsonRef::Document(t)) => {
                        Document::try_from(t).map_err(|e| bad(e.to_string()))
                    }
                    _ => Err(bad(
                        "$readPreference tags must be an array of documents".into()
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Ok(Some(_)) => return Err(bad("$readPreference tags must be an array".into())),
            _ => Vec::new(),
        };
        let max_staleness = match d.get("maxStalenessSeconds") {
            Ok(Some(v)) => staleness(v, heartbeat)?,
            _ => None,
        };
        if mode == Mode::Primary && tag_sets.iter().any(|t| !t.is_empty()) {
            return Err(bad(
                "Only empty tags are allowed with primary read preference".into(),
            ));
        }
        if mode == Mode::Primary && max_staleness.is_some() {
            return Err(bad(
                "mode primary cannot be combined with maxStalenessSeconds".into(),
            ));
        }
        Ok(ReadPreference {
            mode,
            tag_sets,
            max_staleness,
        })
    }
}

fn staleness(v: RawBsonRef<'_>, heartbeat: Duration) -> Result<Option<Duration>, Invalid> {
    let secs = match v {
        RawBsonRef::Int32(i) => i as f64,
        RawBsonRef::Int64(i) => i as f64,
        RawBsonRef::Double(d) => d,
        _ => {
            return Err(invalid(
                codes::FAILED_TO_PARSE,
                "maxStalenessSeconds must be a number",
            ))
        }
    };
    if secs == -1.0 || secs == 0.0 {
        return Ok(None); // "no maximum"
    }
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(
            codes::BAD_VALUE,
            "maxStalenessSeconds must be a non-negative number",
        ));
    }
    let smallest = SMALLEST_MAX_STALENESS.max(heartbeat + Duration::from_secs(10));
    let d = Duration::from_secs_f64(secs);
    if d < smallest {
        return Err(invalid(
            codes::MAX_STALENESS_OUT_OF_RANGE,
            format!(
                "maxStalenessSeconds value can not be less than {} seconds",
                smallest.as_secs()
            ),
        ));
    }
    Ok(Some(d))
}

/// What the selection decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Send it to the primary (waiting at the gate while none is known).
    Primary,
    /// Send it to this member.
    Member(String),
    /// No member suits now: wait for the set to change.
    Wait,
}

/// What selection needs besides the read preference.
#[derive(Debug, Clone)]
pub struct Criteria<'a> {
    pub heartbeat: Duration,
    pub local_threshold: Duration,
    /// `readConcern.afterClusterTime`: members known to have reached it
    /// are preferred.
    pub after: Option<Timestamp>,
    /// Members that already failed this request: avoided when others suit.
    pub avoid: &'a [String],
    /// `election_reads = "secondary"`: a primary-mode read is served by the
    /// most caught-up secondary while no primary is known.
    pub election_reads_secondary: bool,
    /// A random number for the choice inside the latency window.
    pub random: u64,
}

/// Chooses the member for a read that may run on a secondary.
pub fn select(snap: &Snapshot, pref: &ReadPreference, c: &Criteria<'_>) -> Choice {
    let primary_known = snap.primary.is_some();
    match pref.mode {
        Mode::Primary if !primary_known && c.election_reads_secondary => most_caught_up(snap),
        Mode::Primary => Choice::Primary,
        Mode::PrimaryPreferred if primary_known => Choice::Primary,
        Mode::PrimaryPreferred | Mode::Secondary => pick(snap, pref, c, false),
        Mode::SecondaryPreferred => match pick(snap, pref, c, false) {
            Choice::Wait if primary_known => Choice::Primary,
            other => other,
        },
        Mode::Nearest => pick(snap, pref, c, true),
    }
}

/// The secondary with the newest `lastWriteDate` (election reads).
fn most_caught_up(snap: &Snapshot) -> Choice {
    snap.members
        .iter()
        .filter(|m| m.role == Role::Secondary)
        .max_by_key(|m| m.last_write_date_ms.unwrap_or(i64::MIN))
        .map_or(Choice::Wait, |m| Choice::Member(m.addr.clone()))
}

/// Eligible members (secondaries, and the primary for `nearest`) after
/// staleness and tag sets, then the latency window and a random choice.
fn pick(snap: &Snapshot, pref: &ReadPreference, c: &Criteria<'_>, with_primary: bool) -> Choice {
    let eligible =
        |m: &&MemberState| m.role == Role::Secondary || (with_primary && m.role == Role::Primary);
    let mut suitable: Vec<&MemberState> = snap.members.iter().filter(eligible).collect();
    if let Some(max) = pref.max_staleness {
        suitable.retain(|m| staleness_of(snap, m, c.heartbeat).is_some_and(|s| s <= max));
    }
    let suitable = by_tags(suitable, &pref.tag_sets);
    let fresh: Vec<&MemberState> = suitable
        .iter()
        .copied()
        .filter(|m| !c.avoid.contains(&m.addr))
        .collect();
    let mut pool = if fresh.is_empty() { suitable } else { fresh };
    if let Some(t) = c.after {
        let caught_up: Vec<&MemberState> = pool
            .iter()
            .copied()
            .filter(|m| m.last_write_op_time.is_some_and(|o| o >= t))
            .collect();
        if !caught_up.is_empty() {
            pool = caught_up;
        }
    }
    window(pool, c.local_threshold, c.random)
}

/// The first tag set some member matches picks those members; no tag
/// sets (or only `{}`) keeps them all; no set matched: none.
fn by_tags<'a>(members: Vec<&'a MemberState>, sets: &[Document]) -> Vec<&'a MemberState> {
    if sets.is_empty() {
        return members;
    }
    for set in sets {
        let matched: Vec<&MemberState> = members
            .iter()
            .copied()
            .filter(|m| set.iter().all(|(k, v)| m.tags.get(k) == Some(v)))
            .collect();
        if !matched.is_empty() {
            return matched;
        }
    }
    Vec::new()
}

/// Random choice among the members within `threshold` of the fastest.
fn window(members: Vec<&MemberState>, threshold: Duration, random: u64) -> Choice {
    let rtt = |m: &MemberState| m.rtt.unwrap_or(Duration::ZERO);
    let Some(fastest) = members.iter().map(|m| rtt(m)).min() else {
        return Choice::Wait;
    };
    let inside: Vec<&MemberState> = members
        .into_iter()
        .filter(|m| rtt(m) <= fastest + threshold)
        .collect();
    let m = inside[(random % inside.len() as u64) as usize];
    Choice::Member(m.addr.clone())
}

/// A member's staleness estimate (the max-staleness specification); `None`
/// when its last write is unknown.
pub fn staleness_of(snap: &Snapshot, s: &MemberState, heartbeat: Duration) -> Option<Duration> {
    if s.role == Role::Primary {
        return Some(Duration::ZERO);
    }
    let s_lwd = s.last_write_date_ms?;
    let hb = heartbeat.as_millis() as i64;
    let ms = match snap.primary.as_deref().and_then(|p| snap.member(p)) {
        Some(p) => {
            let p_lwd = p.last_write_date_ms?;
            (s.observed_at_ms - s_lwd) - (p.observed_at_ms - p_lwd) + hb
        }
        None => {
            let newest = snap
                .members
                .iter()
                .filter(|m| m.role == Role::Secondary)
                .filter_map(|m| m.last_write_date_ms)
                .max()?;
            newest - s_lwd + hb
        }
    };
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// `readConcern`'s level and `afterClusterTime`.
pub fn read_concern(rc: Option<&RawDocument>) -> (Option<String>, Option<Timestamp>) {
    let Some(rc) = rc else {
        return (None, None);
    };
    let level = match rc.get("level") {
        Ok(Some(RawBsonRef::String(l))) => Some(l.to_string()),
        _ => None,
    };
    let after = match rc.get("afterClusterTime") {
        Ok(Some(RawBsonRef::Timestamp(t))) => Some(t),
        _ => None,
    };
    (level, after)
}

/// The `$readPreference` value for a mode (tests, translations).
pub fn document(mode: Mode) -> Bson {
    Bson::Document(bson::doc! {"mode": mode.name()})
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use holdfast_wire::reply::document_bytes;

    fn parse(d: Document) -> Result<ReadPreference, Invalid> {
        let b = document_bytes(&d);
        ReadPreference::parse(
            Some(RawDocument::from_bytes(&b).unwrap()),
            Duration::from_secs(2),
        )
    }

    fn member(
        addr: &str,
        role: Role,
        lwd_behind_s: i64,
        tags: Document,
        rtt_ms: u64,
    ) -> MemberState {
        let now = 1_700_000_000_000i64;
        let mut m = MemberState::unknown(addr);
        m.role = role;
        m.observed_at_ms = now;
        m.last_write_date_ms = Some(now - lwd_behind_s * 1000);
        m.last_write_op_time = Some(Timestamp {
            time: (now / 1000 - lwd_behind_s) as u32,
            increment: 1,
        });
        m.tags = tags;
        m.rtt = Some(Duration::from_millis(rtt_ms));
        m
    }

    fn set(primary: bool) -> Snapshot {
        let mut members = vec![
            member("s1:1", Role::Secondary, 0, doc! {"dc": "east"}, 1),
            member("s2:1", Role::Secondary, 0, doc! {"dc": "west"}, 2),
        ];
        if primary {
            members.push(member("p:1", Role::Primary, 0, doc! {"dc": "east"}, 1));
        }
        Snapshot {
            primary: primary.then(|| "p:1".to_string()),
            members,
            ..Snapshot::empty()
        }
    }

    fn criteria(random: u64) -> Criteria<'static> {
        Criteria {
            heartbeat: Duration::from_secs(2),
            local_threshold: Duration::from_millis(15),
            after: None,
            avoid: &[],
            election_reads_secondary: false,
            random,
        }
    }

    fn pref(mode: Mode) -> ReadPreference {
        ReadPreference {
            mode,
            ..Default::default()
        }
    }

    fn chosen(snap: &Snapshot, p: &ReadPreference) -> std::collections::BTreeSet<String> {
        (0..32)
            .filter_map(|r| match select(snap, p, &criteria(r)) {
                Choice::Member(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parsing_follows_mongos() {
        assert_eq!(
            ReadPreference::parse(None, Duration::ZERO).unwrap().mode,
            Mode::Primary
        );
        let p = parse(doc! {"mode": "secondary", "tags": [{"dc": "east"}, {}], "maxStalenessSeconds": 120, "hedge": {"enabled": true}}).unwrap();
        assert_eq!(p.mode, Mode::Secondary);
        assert_eq!(p.tag_sets, vec![doc! {"dc": "east"}, doc! {}]);
        assert_eq!(p.max_staleness, Some(Duration::from_secs(120)));
        assert_eq!(
            parse(doc! {"mode": "secondary", "maxStalenessSeconds": 30})
                .unwrap_err()
                .code,
            160
        );
        assert_eq!(
            parse(doc! {"mode": "secondary", "maxStalenessSeconds": -1})
                .unwrap()
                .max_staleness,
            None
        );
        assert_eq!(parse(doc! {"mode": "bogus"}).unwrap_err().code, 9);
        assert_eq!(
            parse(doc! {"mode": "primary", "tags": [{"a": "b"}]})
                .unwrap_err()
                .code,
            9
        );
        assert_eq!(
            parse(doc! {"mode": "primary", "maxStalenessSeconds": 100})
                .unwrap_err()
                .code,
            9
        );
        assert_eq!(
            parse(doc! {"mode": "primary", "tags": [{}]}).unwrap().mode,
            Mode::Primary
        );
        assert_eq!(parse(doc! {"tags": []}).unwrap_err().code, 9);
        assert_eq!(
            parse(doc! {"mode": "nearest", "maxStalenessSeconds": "x"})
                .unwrap_err()
                .code,
            9
        );
    }

    #[test]
    fn modes_choose_as_the_specification_says() {
        let with = set(true);
        let without = set(false);
        assert_eq!(
            select(&with, &pref(Mode::Primary), &criteria(0)),
            Choice::Primary
        );
        assert_eq!(
            select(&with, &pref(Mode::PrimaryPreferred), &criteria(0)),
            Choice::Primary
        );
        assert_eq!(
            chosen(&without, &pref(Mode::PrimaryPreferred)).len(),
            2,
            "both secondaries"
        );
        assert_eq!(
            chosen(&with, &pref(Mode::Secondary)),
            ["s1:1", "s2:1"].map(String::from).into()
        );
        assert_eq!(chosen(&with, &pref(Mode::SecondaryPreferred)).len(), 2);
        assert!(chosen(&with, &pref(Mode::Nearest)).contains("p:1"));
        // No primary: primary mode waits (at the gate).
        assert_eq!(
            select(&without, &pref(Mode::Primary), &criteria(0)),
            Choice::Primary
        );
    }

    #[test]
    fn with_no_secondary_secondary_preferred_falls_back_and_secondary_waits() {
        let mut only_primary = set(true);
        only_primary.members.retain(|m| m.role == Role::Primary);
        assert_eq!(
            select(&only_primary, &pref(Mode::SecondaryPreferred), &criteria(0)),
            Choice::Primary
        );
        assert_eq!(
            select(&only_primary, &pref(Mode::Secondary), &criteria(0)),
            Choice::Wait
        );
        let mut nothing = only_primary.clone();
        nothing.members.clear();
        nothing.primary = None;
        assert_eq!(
            select(&nothing, &pref(Mode::SecondaryPreferred), &criteria(0)),
            Choice::Wait
        );
    }

    #[test]
    fn tag_sets_are_tried_in_order() {
        let s = set(true);
        let p = |sets: Vec<Document>| ReadPreference {
            mode: Mode::Secondary,
            tag_sets: sets,
            max_staleness: None,
        };
        assert_eq!(
            chosen(&s, &p(vec![doc! {"dc": "west"}])),
            ["s2:1".to_string()].into()
        );
        assert_eq!(
            chosen(&s, &p(vec![doc! {"dc": "north"}, doc! {"dc": "east"}])),
            ["s1:1".to_string()].into()
        );
        assert_eq!(chosen(&s, &p(vec![doc! {"dc": "north"}, doc! {}])).len(), 2);
        assert!(chosen(&s, &p(vec![doc! {"dc": "north"}])).is_empty());
        assert_eq!(
            select(&s, &p(vec![doc! {"dc": "north"}]), &criteria(0)),
            Choice::Wait
        );
    }

    #[test]
    fn stale_members_get_no_reads() {
        let mut s = set(true);
        s.members[1] = member("s2:1", Role::Secondary, 200, doc! {}, 1);
        let p = ReadPreference {
            mode: Mode::Secondary,
            tag_sets: vec![],
            max_staleness: Some(Duration::from_secs(90)),
        };
        assert_eq!(chosen(&s, &p), ["s1:1".to_string()].into());
        assert_eq!(
            staleness_of(&s, &s.members[1], Duration::from_secs(2)),
            Some(Duration::from_secs(202))
        );
        // Without a primary: measured against the freshest secondary.
        let mut np = s.clone();
        np.primary = None;
        np.members.retain(|m| m.role != Role::Primary);
        assert_eq!(
            staleness_of(&np, &np.members[1], Duration::from_secs(2)),
            Some(Duration::from_secs(202))
        );
        assert_eq!(
            staleness_of(&np, &np.members[0], Duration::from_secs(2)),
            Some(Duration::from_secs(2))
        );
        assert_eq!(chosen(&np, &p), ["s1:1".to_string()].into());
    }

    #[test]
    fn the_latency_window_keeps_the_fast_members() {
        let mut s = set(true);
        s.members[1].rtt = Some(Duration::from_millis(40));
        assert_eq!(
            chosen(&s, &pref(Mode::Secondary)),
            ["s1:1".to_string()].into()
        );
        s.members[1].rtt = Some(Duration::from_millis(10));
        assert_eq!(chosen(&s, &pref(Mode::Secondary)).len(), 2, "within 15 ms");
    }

    #[test]
    fn a_member_that_failed_is_avoided_when_another_suits() {
        let s = set(true);
        let avoid = vec!["s1:1".to_string()];
        let c = Criteria {
            avoid: &avoid,
            ..criteria(0)
        };
        for r in 0..8 {
            let c = Criteria {
                random: r,
                ..c.clone()
            };
            assert_eq!(
                select(&s, &pref(Mode::Secondary), &c),
                Choice::Member("s2:1".into())
            );
        }
        let both = vec!["s1:1".to_string(), "s2:1".to_string()];
        let c = Criteria {
            avoid: &both,
            ..criteria(0)
        };
        assert!(
            matches!(select(&s, &pref(Mode::Secondary), &c), Choice::Member(_)),
            "none other: any"
        );
    }

    #[test]
    fn after_cluster_time_prefers_members_that_reached_it() {
        let mut s = set(true);
        s.members[0] = member("s1:1", Role::Secondary, 30, doc! {}, 1);
        let t = s.members[1].last_write_op_time.unwrap();
        for r in 0..8 {
            let c = Criteria {
                after: Some(t),
                random: r,
                ..criteria(0)
            };
            assert_eq!(
                select(&s, &pref(Mode::Secondary), &c),
                Choice::Member("s2:1".into())
            );
        }
        let later = Timestamp {
            time: t.time + 1000,
            increment: 0,
        };
        let c = Criteria {
            after: Some(later),
            ..criteria(0)
        };
        assert!(
            matches!(select(&s, &pref(Mode::Secondary), &c), Choice::Member(_)),
            "none has it: the server waits"
        );
    }

    #[test]
    fn election_reads_use_the_most_caught_up_secondary() {
        let mut s = set(false);
        s.members[0] = member("s1:1", Role::Secondary, 5, doc! {}, 1);
        let c = Criteria {
            election_reads_secondary: true,
            ..criteria(0)
        };
        assert_eq!(
            select(&s, &pref(Mode::Primary), &c),
            Choice::Member("s2:1".into())
        );
        // With a primary, primary mode is the primary.
        assert_eq!(
            select(&set(true), &pref(Mode::Primary), &c),
            Choice::Primary
        );
    }

    #[test]
    fn read_concern_level_and_after_cluster_time() {
        let b = document_bytes(
            &doc! {"level": "majority", "afterClusterTime": Timestamp { time: 5, increment: 2 }},
        );
        let (l, t) = read_concern(Some(RawDocument::from_bytes(&b).unwrap()));
        assert_eq!(l.as_deref(), Some("majority"));
        assert_eq!(
            t,
            Some(Timestamp {
                time: 5,
                increment: 2
            })
        );
        assert_eq!(read_concern(None), (None, None));
    }
}
