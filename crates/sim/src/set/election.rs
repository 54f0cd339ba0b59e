//! Roles: the initial election, the election loop, `replSetStepDown`,
//! `replSetStepUp` and `replSetFreeze`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::DateTime;
use rand::Rng;
use tracing::{info, warn};

use super::{Repl, SetInner};
use crate::errors::{self, CmdError};
use crate::member::MemberData;
use crate::oplog::EntryKind;

/// What the election loop does when an election is due.
enum Decision {
    /// The primary lost its majority: it steps down.
    Demote(usize),
    /// Elect this member, if nothing changed since (generation).
    Elect(usize, u64),
}

impl SetInner {
    /// Takes the primary role away from `p` (caller holds both locks).
    pub(super) fn demote_locked(&self, data: &mut MemberData, repl: &mut Repl, p: usize) {
        if repl.primary == Some(p) {
            repl.primary = None;
            repl.primary_lost_at = Some(Instant::now());
        }
        repl.members[p].stepping_down = false;
        data.writable = false;
        data.abort_transactions();
        self.members[p].writable.store(false, Ordering::Release);
        repl.generation += 1;
    }

    /// First election when the set starts: member 0 wins term 1.
    pub fn initial_election(&self) {
        {
            let m = &self.members[0];
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            repl.term = 1;
            repl.primary = Some(0);
            data.writable = true;
            m.writable.store(true, Ordering::Release);
            let idx = self.append(&mut repl, 0, EntryKind::Noop("initiating set"));
            repl.election_optime = repl.optime_at(idx).0;
            repl.election_completed_at = Some(Instant::now());
            repl.election_date = Some(DateTime::now());
            repl.generation += 1;
        }
        self.members[0].role_changed();
        self.after_role_change();
    }

    /// The election loop of the set: runs elections when they are due.
    pub async fn election_loop(self: Arc<Self>) {
        loop {
            let due = self.repl.lock().election_due;
            let notified = self.election_notify.notified();
            match due {
                Some(t) => tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = notified => {}
                    _ = tokio::time::sleep_until(t.into()) => self.election_tick(),
                },
                None => tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = notified => {}
                },
            }
        }
    }

    /// One turn of the election loop once `election_due` has passed.
    fn election_tick(&self) {
        let now = Instant::now();
        let retry = now + self.election_delay().max(Duration::from_millis(10));
        let Some(decision) = self.election_decision(now, retry) else {
            return;
        };
        match decision {
            Decision::Demote(p) => {
                {
                    let m = &self.members[p];
                    let mut data = m.data.lock();
                    let mut repl = self.repl.lock();
                    if repl.primary != Some(p) {
                        return;
                    }
                    self.demote_locked(&mut data, &mut repl, p);
                    repl.election_due = Some(retry);
                }
                warn!(member = p, "primary lost the majority and steps down");
                self.members[p].role_changed();
                self.after_role_change();
            }
            Decision::Elect(c, generation) => self.elect(c, generation),
        }
    }

    /// What a due election tick does: `None` if nothing (with
    /// `election_due` moved on as needed), else demote the primary that lost
    /// its majority or elect one of the most up-to-date members that may
    /// stand.
    fn election_decision(&self, now: Instant, retry: Instant) -> Option<Decision> {
        let majority = self.cfg.majority();
        let mut repl = self.repl.lock();
        match repl.election_due {
            Some(d) if d <= now => {}
            _ => return None,
        }
        let live = repl.live();
        if let Some(p) = repl.primary {
            if live < majority && !repl.members[p].stepping_down {
                Some(Decision::Demote(p))
            } else {
                repl.election_due = None;
                None
            }
        } else if live < majority {
            repl.election_due = Some(retry);
            None
        } else {
            let preferred = repl.preferred;
            let eligible: Vec<usize> = (0..repl.members.len())
                .filter(|j| repl.members[*j].can_stand(now))
                .filter(|j| preferred.is_none_or(|p| p == *j))
                .collect();
            if eligible.is_empty() {
                repl.preferred = None;
                let next = repl
                    .members
                    .iter()
                    .filter(|m| m.alive)
                    .flat_map(|m| [m.frozen_until, m.no_elect_until])
                    .flatten()
                    .filter(|t| *t > now)
                    .min();
                repl.election_due = Some(next.unwrap_or(retry));
                return None;
            }
            let best = eligible
                .iter()
                .map(|j| repl.members[*j].applied)
                .max()
                .unwrap_or(0);
            let top: Vec<usize> = eligible
                .into_iter()
                .filter(|j| repl.members[*j].applied == best)
                .collect();
            let pick = top[rand::thread_rng().gen_range(0..top.len())];
            Some(Decision::Elect(pick, repl.generation))
        }
    }

    fn elect(&self, c: usize, generation: u64) {
        let m = &self.members[c];
        let (term, lost) = {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.generation != generation || repl.primary.is_some() || !repl.members[c].alive {
                return;
            }
            // Catch up from the most up-to-date live member first (the
            // candidate must be as current as its voters).
            let target = repl.max_live_applied();
            self.apply_range(&mut data, &mut repl, c, target);
            let lost = repl.end() - target;
            if lost > 0 {
                // Entries only dead members had: rolled back when they return.
                repl.truncate(target);
            }
            repl.term += 1;
            repl.primary = Some(c);
            repl.election_due = None;
            repl.preferred = None;
            repl.generation += 1;
            data.writable = true;
            m.writable.store(true, Ordering::Release);
            let idx = self.append(&mut repl, c, EntryKind::Noop("new primary"));
            repl.election_optime = repl.optime_at(idx).0;
            repl.election_completed_at = Some(Instant::now());
            repl.election_date = Some(DateTime::now());
            (repl.term, lost)
        };
        if lost > 0 {
            warn!(
                lost,
                "new primary does not have the last entries of the log: they will be rolled back"
            );
        }
        info!(member = c, term, "elected primary");
        m.role_changed();
        self.after_role_change();
    }

    /// `replSetStepDown` on member `i`.
    pub async fn step_down(
        &self,
        i: usize,
        step_down_secs: u64,
        catch_up_secs: u64,
        force: bool,
    ) -> Result<(), CmdError> {
        let m = &self.members[i];
        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary != Some(i) || repl.members[i].stepping_down {
                return Err(CmdError::not_writable_primary());
            }
            // Not writable at once; in-flight writes are interrupted.
            repl.members[i].stepping_down = true;
            data.writable = false;
            data.abort_transactions();
            m.writable.store(false, Ordering::Release);
            repl.generation += 1;
        }
        info!(member = i, step_down_secs, force, "stepping down");
        m.role_changed();
        m.bump_topology();
        self.notify_progress();
        self.publish();

        // Wait for an electable secondary to catch up.
        let caught_up = self.wait_electable_caught_up(i, catch_up_secs).await;

        if !caught_up && !force {
            self.resume_primary(i);
            return Err(CmdError::new(
                errors::EXCEEDED_TIME_LIMIT,
                format!(
                    "No electable secondaries caught up as of {}. Please use the replSetStepDown command with the argument {{force: true}} to force node to step down.",
                    DateTime::now().try_to_rfc3339_string().unwrap_or_default()
                ),
            ));
        }

        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary == Some(i) {
                self.demote_locked(&mut data, &mut repl, i);
                let now = Instant::now();
                repl.members[i].no_elect_until = Some(now + Duration::from_secs(step_down_secs));
                repl.election_due = Some(now + self.election_delay());
            }
        }
        m.role_changed();
        self.after_role_change();
        Ok(())
    }

    /// Waits up to `catch_up_secs` until a live, unfrozen member other than
    /// `i` has applied the whole log. Returns whether one did.
    async fn wait_electable_caught_up(&self, i: usize, catch_up_secs: u64) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(catch_up_secs);
        let mut progress = self.progress_tx.subscribe();
        loop {
            progress.borrow_and_update();
            let ok = {
                let repl = self.repl.lock();
                let now = Instant::now();
                let end = repl.end();
                repl.members.iter().enumerate().any(|(j, mr)| {
                    j != i
                        && mr.alive
                        && mr.frozen_until.is_none_or(|t| t <= now)
                        && mr.applied >= end
                })
            };
            if ok {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// A stepdown that found no electable secondary caught up (and was not
    /// forced): `i` is a writable primary again, if it still is primary.
    fn resume_primary(&self, i: usize) {
        let m = &self.members[i];
        {
            let mut data = m.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary == Some(i) && repl.members[i].stepping_down {
                repl.members[i].stepping_down = false;
                data.writable = true;
                m.writable.store(true, Ordering::Release);
                repl.generation += 1;
            }
        }
        m.role_changed();
        m.bump_topology();
        self.publish();
    }

    /// `replSetStepUp` on member `j`: it wins a short election.
    pub async fn step_up(&self, j: usize) -> Result<(), CmdError> {
        let mut state_rx = self.state_tx.subscribe();
        let demoted = {
            let repl = self.repl.lock();
            if repl.primary == Some(j) {
                return Ok(());
            }
            if !repl.members[j].alive {
                return Err(CmdError::new(errors::NOT_SECONDARY, "node is not alive"));
            }
            repl.primary
        };
        if let Some(p) = demoted {
            let pm = &self.members[p];
            let mut data = pm.data.lock();
            let mut repl = self.repl.lock();
            if repl.primary == Some(p) {
                self.demote_locked(&mut data, &mut repl, p);
            }
        }
        if let Some(p) = demoted {
            self.members[p].role_changed();
        }
        {
            let mut repl = self.repl.lock();
            repl.members[j].frozen_until = None;
            repl.members[j].no_elect_until = None;
            repl.preferred = Some(j);
            repl.generation += 1;
            let short = self.election_delay().min(Duration::from_millis(100));
            repl.election_due = Some(Instant::now() + short);
        }
        self.after_role_change();
        let limit = self.election_delay() * 2 + Duration::from_secs(1);
        let won = tokio::time::timeout(limit, state_rx.wait_for(|s| s.primary == Some(j))).await;
        match won {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CmdError::new(errors::COMMAND_FAILED, "Election failed.")),
        }
    }

    /// `replSetFreeze`: no candidacy for `secs` (0 unfreezes).
    pub fn freeze(&self, i: usize, secs: u64) -> Result<bool, CmdError> {
        let unfrozen = {
            let mut repl = self.repl.lock();
            if repl.primary == Some(i) {
                return Err(CmdError::new(
                    errors::NOT_SECONDARY,
                    "cannot freeze node when primary or running for election. state: Primary",
                ));
            }
            repl.generation += 1;
            if secs == 0 {
                repl.members[i].frozen_until = None;
                if repl.primary.is_none() && repl.election_due.is_none() {
                    repl.election_due = Some(Instant::now() + self.election_delay());
                }
                true
            } else {
                repl.members[i].frozen_until = Some(Instant::now() + Duration::from_secs(secs));
                false
            }
        };
        self.election_notify.notify_one();
        self.publish();
        Ok(unfrozen)
    }
}
