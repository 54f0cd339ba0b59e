//! One request's lifecycle: route it, send it, read the reply; after a
//! failed attempt ask [`failover::decide`] what to do, and do that.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bson::{Document, RawDocument};
use bytes::Bytes;
use holdfast_wire::command::edit_fields;
use holdfast_wire::{
    codes, reply, CommandClass, CommandView, Frame, Limits, Message, MsgFlags, ReplySummary,
};
use tracing::{debug, info, warn, Span};

use crate::auth::Principal;
use crate::budget::{Budget, Charge};
use crate::config::WriteRetry;
use crate::failover::{self, Attempt, Decision, Failure, Pin, Resend};
use crate::gate::GateError;
use crate::metrics::{self as m, RequestMetrics};
use crate::pool::{BackendError, Pools};
use crate::read_preference::{self, Mode, ReadPreference};
use crate::replies::{self, HoldfastError, Replies};
use crate::router::{Reads, Route, Router};
use crate::sessions::{Lease, Sessions};

/// The settings the request path follows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Longest a request waits for a primary.
    pub hold_timeout: Duration,
    pub write_retry: WriteRetry,
}

/// May this request run on a secondary (read preference permitting)? A
/// read the command table marks opt-in (find, aggregate without
/// `$out`/`$merge`, count, distinct, listCollections, listIndexes, …),
/// outside a transaction, and not `linearizable`.
fn secondary_eligible(view: &CommandView<'_>, class: CommandClass, level: Option<&str>) -> bool {
    matches!(
        class,
        CommandClass::RetryableRead | CommandClass::Diagnostic
    ) && !view.in_transaction()
        && level != Some("linearizable")
        && holdfast_wire::commands::lookup(view.name)
            .is_some_and(|c| c.on_secondary == holdfast_wire::commands::OnSecondary::OptIn)
}

/// How a request ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    ServerError,
    Replayed,
    HoldfastError,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ServerError => "server_error",
            Outcome::Replayed => "replayed",
            Outcome::HoldfastError => "holdfast_error",
        }
    }
}

/// The request path: routing, pools, the policy, and the replies holdfast
/// makes. One per holdfast, shared by every client connection.
pub struct Forwarder {
    policy: Policy,
    /// The memory budget replies are charged to.
    budget: Arc<Budget>,
    router: Arc<Router>,
    pools: Arc<Pools>,
    replies: Arc<Replies>,
    sessions: Arc<Sessions>,
    metrics: RequestMetrics,
}

impl Forwarder {
    pub fn new(
        policy: Policy,
        router: Arc<Router>,
        pools: Arc<Pools>,
        replies: Arc<Replies>,
        sessions: Arc<Sessions>,
        budget: Arc<Budget>,
    ) -> Forwarder {
        Forwarder {
            policy,
            budget,
            router,
            pools,
            replies,
            sessions,
            metrics: RequestMetrics::new(),
        }
    }

    /// holdfast's own sessions (for the writes it makes retryable).
    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn replies(&self) -> &Replies {
        &self.replies
    }

    pub fn metrics(&self) -> &RequestMetrics {
        &self.metrics
    }

    /// Sends a client's request to the right member and returns what the
    /// client gets (`None`: nothing, for an unacknowledged request). A
    /// member's reply leaves its memory-budget charge in `charge`, to be
    /// dropped once the client has read it.
    pub async fn forward(
        &self,
        span: &Span,
        frame: &Frame,
        view: &CommandView<'_>,
        class: CommandClass,
        principal: &Arc<Principal>,
        charge: &mut Option<Charge>,
    ) -> Option<Frame> {
        let started = Instant::now();
        let pref =
            match ReadPreference::parse(view.read_preference, self.router.topology().heartbeat()) {
                Ok(p) => p,
                Err(e) => {
                    let err = holdfast_wire::ErrorReply::of(e.code, e.message);
                    self.metrics
                        .request(class.label(), Outcome::HoldfastError.label(), 0.0);
                    return Some(self.replies.error(frame, &err));
                }
            };
        if class == CommandClass::CursorContinuation {
            if let Some(id) = self.router.foreign_cursor(view, &principal.key) {
                // As mongod answers a getMore or killCursors of another
                // user's cursor.
                let err = holdfast_wire::ErrorReply::of(
                    codes::UNAUTHORIZED,
                    format!("cursor id {id} was not created by the authenticated user"),
                );
                warn!(parent: span, command = view.name, action = "refused", reason = "foreign_cursor", "a client asked for another user's cursor");
                self.metrics
                    .request(class.label(), Outcome::HoldfastError.label(), 0.0);
                return Some(self.replies.error(frame, &err));
            }
        }
        let mut req = Request::new(self, span, frame, view, class, started, principal);
        req.pref = pref;
        let (reply, outcome) = req.run().await;
        *charge = req.charge.take();
        self.metrics.request(
            class.label(),
            outcome.label(),
            started.elapsed().as_secs_f64(),
        );
        reply
    }
}

/// The reply of an attempt, read enough to decide.
struct Answer {
    reply: Frame,
    /// The reply's body and what it says, when it is a readable document.
    body: Option<(Bytes, ReplySummary)>,
}

impl Answer {
    fn of(reply: Frame) -> Answer {
        let body = reply_body(&reply).and_then(|b| {
            let info = ReplySummary::of(RawDocument::from_bytes(&b).ok()?);
            Some((b, info))
        });
        Answer { reply, body }
    }

    /// A state-change error in the reply: at the top level (refused
    /// before executing, or interrupted), or in `writeConcernError`.
    fn failure(&self) -> Option<Failure> {
        let (_, info) = self.body.as_ref()?;
        if let Some(code) = info.code.filter(|c| !info.ok && codes::is_state_change(*c)) {
            return Some(if codes::is_not_writable_primary(code) {
                Failure::Refused { code }
            } else {
                Failure::Interrupted { code }
            });
        }
        let code = info.wce_code.filter(|c| codes::is_state_change(*c))?;
        Some(Failure::Interrupted { code })
    }
}

/// One request in flight, across its attempts.
struct Request<'a> {
    fw: &'a Forwarder,
    span: &'a Span,
    frame: &'a Frame,
    view: &'a CommandView<'a>,
    class: CommandClass,
    started: Instant,
    deadline: Instant,
    max_time: Option<Instant>,
    unacknowledged: bool,
    /// What is sent: the client's frame without `exhaustAllowed` (and,
    /// for a write holdfast made retryable, with its session's fields).
    out: Frame,
    /// The session a write made retryable by holdfast runs under.
    lease: Option<Lease>,
    pref: ReadPreference,
    /// Who the request runs as upstream.
    principal: Arc<Principal>,
    /// The memory budget the last reply holds.
    charge: Option<Charge>,
    /// Members this request failed on (a resent read avoids them).
    failed_on: Vec<String>,
    resends: u32,
    attempts: u32,
    held_total: Duration,
}

impl<'a> Request<'a> {
    fn new(
        fw: &'a Forwarder,
        span: &'a Span,
        frame: &'a Frame,
        view: &'a CommandView<'a>,
        class: CommandClass,
        started: Instant,
        principal: &Arc<Principal>,
    ) -> Request<'a> {
        Request {
            fw,
            span,
            frame,
            view,
            class,
            started,
            deadline: started + fw.policy.hold_timeout,
            max_time: view
                .max_time_ms
                .filter(|ms| *ms > 0)
                .map(|ms| started + Duration::from_millis(ms as u64)),
            unacknowledged: view.more_to_come,
            out: frame.clear_msg_flags(MsgFlags::EXHAUST_ALLOWED),
            lease: None,
            pref: ReadPreference::default(),
            principal: principal.clone(),
            charge: None,
            failed_on: Vec::new(),
            resends: 0,
            attempts: 0,
            held_total: Duration::ZERO,
        }
    }

    /// Attempts until one is answered or the contract says stop.
    async fn run(&mut self) -> (Option<Frame>, Outcome) {
        loop {
            let view = self.view;
            let (level, after) = read_preference::read_concern(view.read_concern);
            let reads = Reads {
                pref: &self.pref,
                secondary_ok: secondary_eligible(view, self.class, level.as_deref()),
                after,
                avoid: &self.failed_on,
                owner: &self.principal.key,
            };
            let (len, deadline, max_time) = (self.frame.len(), self.deadline, self.max_time);
            let routed = self
                .fw
                .router
                .route(view, self.class, len, deadline, max_time, reads)
                .await;
            let route = match routed {
                Ok(r) => r,
                Err(e) => return self.refused(&e),
            };
            if self.attempts == 0 {
                self.make_retryable().await;
            }
            let Some(to_send) = self.outgoing(&route) else {
                let e = GateError::MaxTimeExpired {
                    waited: self.held_total,
                };
                return self.refused(&e);
            };
            let sending_at = self.sending_at();
            self.attempts += 1;
            let sent = self
                .fw
                .pools
                .round_trip(
                    &route.target.member,
                    &self.principal,
                    &to_send,
                    self.unacknowledged,
                    sending_at,
                    &self.fw.budget,
                )
                .await;
            let (failure, answer, cause) = match sent {
                Ok(None) => return (None, Outcome::Ok),
                Ok(Some(reply)) => {
                    self.charge = Some(reply.charge);
                    let answer = Answer::of(reply.frame);
                    match answer.failure() {
                        None => return self.answered(answer, &route),
                        Some(f) => (f, Some(answer), server_cause(f)),
                    }
                }
                Err(e @ BackendError::Auth { .. }) => return self.login_failed(&e),
                Err(BackendError::OverBudget { len, .. }) => return self.reply_over_budget(len),
                Err(e) => (failure_of(&e), None, e.to_string()),
            };
            self.fw.router.report_member_failure(&route.target);
            self.failed_on.push(route.target.member.to_string());
            let attempt = self.attempt(route.pin);
            match failover::decide(attempt, failure, self.fw.policy.write_retry) {
                Decision::Resend(why) => self.resending(why, failure, &route, &cause).await,
                d => return self.conclude(d, answer, &route, &cause),
            }
        }
    }

    fn attempt(&self, pin: Pin) -> Attempt {
        Attempt {
            class: self.class,
            unacknowledged: self.unacknowledged,
            pin,
            resends: self.resends,
            deadline_passed: Instant::now() >= self.deadline,
        }
    }

    /// The frame for this attempt: time spent held counts against the
    /// command's maxTimeMS, so what is left of it is sent. `None` when
    /// nothing is left.
    fn outgoing(&mut self, route: &Route) -> Option<Frame> {
        self.held_total += route.held;
        if route.held > Duration::ZERO {
            info!(parent: self.span, command = self.view.name, member = %route.target.member, action = "held", held_ms = route.held.as_millis() as u64, "request held until a primary was known");
        }
        let left = match (self.max_time, self.held_total.is_zero()) {
            (Some(deadline), false) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                Some(left)
            }
            _ => None,
        };
        if left.is_none() && !route.needs_secondary_ok {
            return Some(self.out.clone());
        }
        let edited = edited(&self.out, left, route.needs_secondary_ok);
        Some(edited.unwrap_or_else(|| self.out.clone()))
    }

    /// The request's arrival is recent enough for the pool and the stall
    /// watchdog, unless it was held or is being sent again.
    fn sending_at(&self) -> Instant {
        if self.attempts == 0 && self.held_total.is_zero() {
            self.started
        } else {
            Instant::now()
        }
    }

    /// A reply without a state-change error: it goes to the client.
    fn answered(&self, answer: Answer, route: &Route) -> (Option<Frame>, Outcome) {
        let Some((body, info)) = &answer.body else {
            return (Some(answer.reply), Outcome::Ok);
        };
        self.fw.router.learn(
            self.view,
            self.class,
            &route.target,
            info,
            &self.principal.key,
        );
        // An upgraded write's error may carry RetryableWriteError: for the
        // client, whose command had no txnNumber, it is not retryable.
        let relabel = self.lease.is_some() && (!info.ok || info.wce_code.is_some());
        if (info.has_topology_version && !info.ok) || relabel {
            let outcome = if info.ok {
                Outcome::Ok
            } else {
                Outcome::ServerError
            };
            return (Some(self.server_error(&answer.reply, body)), outcome);
        }
        if self.resends > 0 {
            info!(parent: self.span, command = self.view.name, member = %route.target.member, action = "replayed", held_ms = self.held_total.as_millis() as u64, "replay succeeded");
            return (Some(answer.reply), Outcome::Replayed);
        }
        let outcome = if info.ok {
            Outcome::Ok
        } else {
            Outcome::ServerError
        };
        (Some(answer.reply), outcome)
    }

    /// Before the next attempt.
    async fn resending(&mut self, why: Resend, failure: Failure, route: &Route, cause: &str) {
        let (command, member) = (self.view.name, &route.target.member);
        if why == Resend::NotSent {
            // Nothing reached a server: wait a little for the topology.
            debug!(parent: self.span, member = %member, error = cause, "backend unavailable before sending; waiting for a primary");
            tokio::time::sleep(Duration::from_millis(10)).await;
            return;
        }
        self.resends += 1;
        m::replay(self.class.label(), failure.label());
        match why {
            Resend::RetryableWrite if self.lease.is_some() => m::write_retried("holdfast_session"),
            Resend::RetryableWrite => m::write_retried("retryable_write"),
            Resend::NotExecuted => m::write_retried("not_writable_primary"),
            _ => {}
        }
        info!(parent: self.span, command, member = %member, cause, action = "replay", "primary changed; sending again to the new primary");
    }

    /// The last word on a request that failed.
    fn conclude(
        &self,
        decision: Decision,
        answer: Option<Answer>,
        route: &Route,
        cause: &str,
    ) -> (Option<Frame>, Outcome) {
        if self.resends > 0 {
            m::replay(self.class.label(), "failed");
        }
        let member = &*route.target.member;
        let err = match decision {
            Decision::PassThrough => {
                if let Some(Answer {
                    reply,
                    body: Some((body, _)),
                }) = &answer
                {
                    return (Some(self.server_error(reply, body)), Outcome::ServerError);
                }
                // Only replies are passed through; anything else is unknown.
                self.unknown(member, cause)
            }
            Decision::Lost => {
                m::unacknowledged_lost();
                warn!(parent: self.span, command = self.view.name, member = %member, error = cause, action = "lost", "unacknowledged (w:0) request could not be delivered");
                return (None, Outcome::HoldfastError);
            }
            Decision::CursorLost => {
                let e = replies::cursor_lost(self.cursor_id(), member, cause);
                warn!(parent: self.span, command = self.view.name, member = %member, action = "cursor_lost", "{}", e.error.errmsg);
                e
            }
            Decision::NoPrimary => {
                let waited = self.started.elapsed();
                return self.refused(&GateError::HoldTimeout { waited });
            }
            Decision::UnknownOutcome | Decision::Resend(_) => self.unknown(member, cause),
        };
        (
            Some(self.fw.replies.holdfast_error(self.frame, &err)),
            Outcome::HoldfastError,
        )
    }

    fn unknown(&self, member: &str, cause: &str) -> HoldfastError {
        let resent = self.resends > 0;
        let e = replies::unknown_outcome(self.view.name, self.class, member, cause, resent);
        m::write_error(e.reason);
        warn!(parent: self.span, command = self.view.name, member = %member, action = "unknown_outcome", cause, "{}", e.error.errmsg);
        e
    }

    /// Not sent: the gate refused it.
    fn refused(&self, e: &GateError) -> (Option<Frame>, Outcome) {
        let err = replies::not_sent(e, self.view.name, &self.fw.router.set_name());
        warn!(parent: self.span, command = self.view.name, action = "refused", reason = err.reason, "{}", err.error.errmsg);
        if self.unacknowledged {
            m::unacknowledged_lost();
            return (None, Outcome::HoldfastError);
        }
        (
            Some(self.fw.replies.holdfast_error(self.frame, &err)),
            Outcome::HoldfastError,
        )
    }

    /// A backend connection could not log in upstream: waiting would not
    /// help (the credentials are wrong or the user lacks the mechanism), so
    /// the client hears it at once — nothing was sent.
    fn login_failed(&self, e: &BackendError) -> (Option<Frame>, Outcome) {
        let err = HoldfastError {
            error: reply::ErrorReply::new(
                codes::AUTHENTICATION_FAILED,
                "AuthenticationFailed",
                format!("holdfast {e}; check the upstream credentials (the request was not sent)"),
            ),
            detail: None,
            reason: "upstream_login_failed",
        };
        warn!(parent: self.span, command = self.view.name, action = "refused", reason = err.reason, "{}", err.error.errmsg);
        if self.unacknowledged {
            m::unacknowledged_lost();
            return (None, Outcome::HoldfastError);
        }
        (
            Some(self.fw.replies.holdfast_error(self.frame, &err)),
            Outcome::HoldfastError,
        )
    }

    /// The member answered, but its reply did not fit in the memory budget
    /// (many large replies waiting for slow clients): the reply is dropped
    /// and the client told. For a write, the command did run.
    fn reply_over_budget(&self, len: usize) -> (Option<Frame>, Outcome) {
        let ran = match self.class {
            CommandClass::RetryableRead | CommandClass::Diagnostic => "",
            _ => " The command ran on the server; only its reply was dropped.",
        };
        let err = HoldfastError {
            error: reply::ErrorReply::new(
                codes::EXCEEDED_MEMORY_LIMIT,
                "ExceededMemoryLimit",
                format!(
                    "holdfast: the reply to this {} ({len} bytes) found no room in holdfast's memory budget (max_buffered_bytes={}, {} in use); retry later.{ran}",
                    self.view.name,
                    self.fw.budget.max(),
                    self.fw.budget.used()
                ),
            ),
            detail: None,
            reason: "reply_over_budget",
        };
        m::budget_refusal("reply");
        warn!(parent: self.span, command = self.view.name, action = "refused", reason = err.reason, len, "{}", err.error.errmsg);
        if self.unacknowledged {
            return (None, Outcome::HoldfastError);
        }
        (
            Some(self.fw.replies.holdfast_error(self.frame, &err)),
            Outcome::HoldfastError,
        )
    }

    fn server_error(&self, reply: &Frame, body: &Bytes) -> Frame {
        let upgraded = self.lease.is_some();
        match RawDocument::from_bytes(body) {
            Ok(b) => self
                .fw
                .replies
                .server_error(self.frame, reply, b, self.class, upgraded),
            Err(_) => reply.clone(),
        }
    }

    /// `write_retry = "retryable"`: an eligible write without a txnNumber
    /// is sent under one of holdfast's sessions (its lsid and the next
    /// txnNumber), the same for every attempt, so the new primary can
    /// deduplicate a resend. The client's own lsid, if any, is not used.
    async fn make_retryable(&mut self) {
        if self.fw.policy.write_retry != WriteRetry::Retryable || !self.view.may_be_made_retryable()
        {
            return;
        }
        let Some(body) = self.out.msg_body() else {
            return; // not an OP_MSG
        };
        let Ok(raw) = RawDocument::from_bytes(&body) else {
            return;
        };
        let lease = self.fw.sessions.lease(&self.principal).await;
        let edited = edit_fields(raw, &["lsid", "txnNumber"], &lease.fields());
        let Some(out) = self.out.with_msg_body(edited) else {
            return;
        };
        self.out = out;
        self.lease = Some(lease);
        self.class = CommandClass::Write { retryable: true };
        m::write_made_retryable();
    }

    fn cursor_id(&self) -> i64 {
        self.view
            .cursor_id
            .or_else(|| self.view.kill_cursor_ids().first().copied())
            .unwrap_or_default()
    }
}

/// How a failed round trip failed.
fn failure_of(e: &BackendError) -> Failure {
    match e {
        BackendError::Timeout { .. } => Failure::Stalled,
        e if e.maybe_sent() => Failure::Network,
        _ => Failure::NotSent,
    }
}

fn server_cause(f: Failure) -> String {
    match f {
        Failure::Refused { code } | Failure::Interrupted { code } => {
            format!("the old primary answered with error {code}")
        }
        _ => String::new(),
    }
}

/// A copy of an OP_MSG request with `maxTimeMS` set to what is `left` of
/// it after a hold (at least 1 ms: zero means "no limit" to a server), and
/// `$readPreference: secondaryPreferred` when a secondary serves a request
/// that named no read preference.
fn edited(frame: &Frame, left: Option<Duration>, secondary_ok: bool) -> Option<Frame> {
    let Message::Msg(mut m) = frame.parse(&Limits::default()).ok()? else {
        return None;
    };
    let mut body = Document::from_reader(&m.body[..]).ok()?;
    if let Some(left) = left {
        body.insert("maxTimeMS", (left.as_millis() as i64).max(1));
    }
    if secondary_ok {
        body.insert(
            "$readPreference",
            read_preference::document(Mode::SecondaryPreferred),
        );
    }
    m.body = reply::document_bytes(&body);
    let checksum = m.checksum.is_some();
    let mut out = Vec::with_capacity(m.encoded_len(checksum));
    m.encode(frame.request_id(), frame.response_to(), checksum, &mut out);
    Frame::from_bytes(Bytes::from(out), usize::MAX).ok()
}

/// The body of a reply (OP_MSG body, or an OP_REPLY's first document).
fn reply_body(frame: &Frame) -> Option<Bytes> {
    if let Some(body) = frame.msg_body() {
        return Some(body);
    }
    let limits = Limits {
        verify_checksum: false,
        ..Default::default()
    };
    match frame.parse(&limits).ok()? {
        Message::Msg(m) => Some(m.body),
        Message::Reply(r) => {
            let len = r.first_doc().ok()?.as_bytes().len();
            Some(r.documents.slice(0..len))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn held_time_is_taken_off_max_time_ms() {
        let body = reply::document_bytes(&doc! {"find": "c", "maxTimeMS": 5000, "$db": "d"});
        let frame = reply::msg_reply_bytes(42, 0, MsgFlags::empty(), body);
        let out = edited(&frame, Some(Duration::from_millis(1234)), false).unwrap();
        assert_eq!(out.request_id(), 42);
        let Message::Msg(m) = out.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        let d = Document::from_reader(&m.body[..]).unwrap();
        assert_eq!(d.get_i64("maxTimeMS").unwrap(), 1234);
        assert_eq!(d.get_str("find").unwrap(), "c");
        // Never zero: a zero maxTimeMS means "no limit" to the server.
        let out = edited(&frame, Some(Duration::from_micros(10)), false).unwrap();
        let Message::Msg(m) = out.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        let d = Document::from_reader(&m.body[..]).unwrap();
        assert_eq!(d.get_i64("maxTimeMS").unwrap(), 1);
        assert!(!d.contains_key("$readPreference"));
    }

    #[test]
    fn a_secondary_serving_a_primary_mode_read_is_told_secondary_preferred() {
        let body = reply::document_bytes(&doc! {"find": "c", "$db": "d"});
        let frame = reply::msg_reply_bytes(7, 0, MsgFlags::empty(), body);
        let out = edited(&frame, None, true).unwrap();
        let Message::Msg(m) = out.parse(&Limits::default()).unwrap() else {
            panic!()
        };
        let d = Document::from_reader(&m.body[..]).unwrap();
        assert_eq!(
            d.get_document("$readPreference").unwrap(),
            &doc! {"mode": "secondaryPreferred"}
        );
        assert!(!d.contains_key("maxTimeMS"));
    }

    fn answer(d: Document) -> Answer {
        Answer::of(reply::msg_reply(1, 1, &d))
    }

    #[test]
    fn replies_are_read_as_failures_by_code_family() {
        let refused = answer(doc! {"ok": 0.0, "code": 10107, "errmsg": "not primary"});
        assert_eq!(refused.failure(), Some(Failure::Refused { code: 10107 }));
        let interrupted = answer(doc! {"ok": 0.0, "code": 11602, "errmsg": "x"});
        assert_eq!(
            interrupted.failure(),
            Some(Failure::Interrupted { code: 11602 })
        );
        // A write concern error after the write executed: interrupted, even
        // with a not-writable-primary code (the write ran).
        let wce =
            answer(doc! {"n": 1, "writeConcernError": {"code": 10107, "errmsg": "x"}, "ok": 1.0});
        assert_eq!(wce.failure(), Some(Failure::Interrupted { code: 10107 }));
        let dup = answer(doc! {"ok": 0.0, "code": 11000, "writeConcernError": {"code": 11602}});
        assert_eq!(dup.failure(), Some(Failure::Interrupted { code: 11602 }));
        assert_eq!(answer(doc! {"ok": 0.0, "code": 11000}).failure(), None);
        assert_eq!(answer(doc! {"ok": 1.0, "n": 1}).failure(), None);
    }

    #[test]
    fn backend_errors_map_to_failures() {
        let m = || "h:1".to_string();
        assert_eq!(
            failure_of(&BackendError::Connect {
                member: m(),
                reason: "refused".into()
            }),
            Failure::NotSent
        );
        assert_eq!(
            failure_of(&BackendError::PoolTimeout { member: m() }),
            Failure::NotSent
        );
        assert_eq!(
            failure_of(&BackendError::Network {
                member: m(),
                reason: "reset".into()
            }),
            Failure::Network
        );
        assert_eq!(
            failure_of(&BackendError::Timeout {
                member: m(),
                waited: Duration::from_secs(3)
            }),
            Failure::Stalled
        );
    }
}
