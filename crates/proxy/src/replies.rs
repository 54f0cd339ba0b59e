//! Every reply holdfast makes itself: the errors of the failover contract
//! as named constructors, and the framing that puts them (and the server
//! errors it passes on) in front of the client.
//!
//! Every error holdfast sends carries holdfast's own `topologyVersion`:
//! drivers then treat it as stale for server discovery — they raise it to
//! the application but neither mark holdfast unknown nor clear their pool.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use bson::{doc, Document, RawDocument};
use holdfast_wire::codes::{self, label};
use holdfast_wire::{reply, CommandClass, ErrorReply, Frame, OpCode};

use crate::gate::GateError;
use crate::handshake::Identity;

/// An error of holdfast's own: what the client reads, plus the `holdfast`
/// field that says what happened to the request.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldfastError {
    pub error: ErrorReply,
    pub detail: Option<Document>,
    /// A bounded word for logs and metrics.
    pub reason: &'static str,
}

/// Builds reply frames for one holdfast (request ids, topologyVersion).
pub struct Replies {
    identity: Arc<Identity>,
    next_request_id: AtomicI32,
}

impl Replies {
    pub fn new(identity: Arc<Identity>) -> Replies {
        Replies {
            identity,
            next_request_id: AtomicI32::new(1),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// A fresh requestID for a frame holdfast sends.
    pub fn request_id(&self) -> i32 {
        self.next_request_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff
    }

    /// `d` as the reply to `request`, in its opcode family (OP_REPLY for an
    /// OP_QUERY, OP_MSG otherwise).
    pub fn document(&self, request: &Frame, d: &Document) -> Frame {
        if request.op_code() == OpCode::Query {
            reply::op_reply(self.request_id(), request.request_id(), d)
        } else {
            reply::msg_reply(self.request_id(), request.request_id(), d)
        }
    }

    /// An error reply with holdfast's topologyVersion.
    pub fn error(&self, request: &Frame, err: &ErrorReply) -> Frame {
        self.with_detail(request, err, None)
    }

    pub fn holdfast_error(&self, request: &Frame, e: &HoldfastError) -> Frame {
        self.with_detail(request, &e.error, e.detail.clone())
    }

    fn with_detail(&self, request: &Frame, err: &ErrorReply, detail: Option<Document>) -> Frame {
        let mut d = err.to_document();
        d.insert("topologyVersion", self.identity.topology_version());
        if let Some(x) = detail {
            d.insert("holdfast", x);
        }
        self.document(request, &d)
    }

    /// A server error passed on: holdfast's topologyVersion instead of the
    /// member's (a foreign processId would make drivers mark holdfast
    /// unknown), `TransientTransactionError` on a transaction statement, and
    /// no `RetryableWriteError` on a write holdfast made retryable (the
    /// client's own command carried no txnNumber: resending it itself would
    /// not be deduplicated).
    pub fn server_error(
        &self,
        request: &Frame,
        reply: &Frame,
        body: &RawDocument,
        class: CommandClass,
        made_retryable: bool,
    ) -> Frame {
        let Ok(mut d) = Document::try_from(body) else {
            return reply.clone();
        };
        let ok = d.get("ok").and_then(holdfast_wire::values::bson_as_i64) == Some(1);
        if d.contains_key("topologyVersion") || !ok {
            d.insert("topologyVersion", self.identity.topology_version());
        }
        if class == CommandClass::TransactionStatement {
            add_label(&mut d, label::TRANSIENT_TRANSACTION_ERROR);
        }
        if made_retryable {
            remove_label(&mut d, label::RETRYABLE_WRITE_ERROR);
        }
        let out = self.document(request, &d);
        if reply.op_code() == request.op_code() {
            out.with_ids(reply.request_id(), request.request_id())
        } else {
            out
        }
    }
}

fn add_label(d: &mut Document, l: &str) {
    match d.get_array_mut("errorLabels") {
        Ok(labels) if !labels.iter().any(|x| x.as_str() == Some(l)) => labels.push(l.into()),
        Ok(_) => {}
        Err(_) => {
            d.insert("errorLabels", vec![l]);
        }
    }
}

fn remove_label(d: &mut Document, l: &str) {
    if let Ok(labels) = d.get_array_mut("errorLabels") {
        labels.retain(|x| x.as_str() != Some(l));
        if labels.is_empty() {
            d.remove("errorLabels");
        }
    }
    if let Ok(wce) = d.get_document_mut("writeConcernError") {
        if let Ok(labels) = wce.get_array_mut("errorLabels") {
            labels.retain(|x| x.as_str() != Some(l));
        }
    }
}

/// The request waited at the gate and was not sent.
pub fn not_sent(e: &GateError, command: &str, set: &str) -> HoldfastError {
    let (error, reason) = match e {
        GateError::QueueFull {
            held,
            held_bytes,
            max_held,
            max_held_bytes,
        } => (
            ErrorReply::of(codes::NOT_WRITABLE_PRIMARY, format!(
                "holdfast: no primary of {set} is known and the hold queue is full ({held} requests, {held_bytes} bytes held; limits max_held_requests={max_held}, max_held_bytes={max_held_bytes}); this {command} was not sent")),
            "queue_full",
        ),
        GateError::HoldTimeout { waited } => (
            ErrorReply::of(codes::NOT_WRITABLE_PRIMARY, format!(
                "holdfast: no primary of {set} became available within {:.1} s (hold_timeout); this {command} was not sent",
                waited.as_secs_f64())),
            "hold_timeout",
        ),
        GateError::MaxTimeExpired { waited } => (
            ErrorReply::of(codes::MAX_TIME_MS_EXPIRED, format!(
                "operation exceeded time limit: holdfast held this {command} for {} ms waiting for a primary of {set}, longer than its maxTimeMS; it was not sent",
                waited.as_millis())),
            "max_time_ms",
        ),
        GateError::NoSuitableMember { mode, waited } => (
            ErrorReply::of(codes::FAILED_TO_SATISFY_READ_PREFERENCE, format!(
                "holdfast: no member of {set} matching the read preference (mode {mode}) became available within {:.1} s; this {command} was not sent",
                waited.as_secs_f64())),
            "no_suitable_member",
        ),
        GateError::Unreachable { why } => (
            ErrorReply::of(codes::HOST_UNREACHABLE, format!(
                "holdfast: no member of {set} can be used, and waiting will not change that: {why}; check the upstream TLS settings (tlsCAFile, tlsCertificateKeyFile); this {command} was not sent")),
            "unreachable",
        ),
        GateError::ShuttingDown => (
            ErrorReply::of(
                codes::NOT_WRITABLE_PRIMARY,
                format!("holdfast is shutting down; this {command} was not sent"),
            ),
            "shutdown",
        ),
    };
    HoldfastError {
        error,
        detail: Some(doc! {"outcome": "not_sent", "reason": reason}),
        reason,
    }
}

/// The one clear error for a request whose outcome nobody can know: which
/// command, on which member, that it may or may not have been applied, and
/// that holdfast did not retry it (no `RetryableWriteError` label).
/// `resent`: it had already been sent again once.
pub fn unknown_outcome(
    command: &str,
    class: CommandClass,
    member: &str,
    cause: &str,
    resent: bool,
) -> HoldfastError {
    let code = codes::INTERRUPTED_DUE_TO_REPL_STATE_CHANGE;
    let (error, reason) = match class {
        CommandClass::TransactionStatement => (
            ErrorReply::of(code, format!(
                "holdfast: the primary changed while this {command} (in a transaction) was in flight on {member} ({cause}); the transaction cannot continue; retry the whole transaction"))
                .with_label(label::TRANSIENT_TRANSACTION_ERROR),
            "transaction",
        ),
        CommandClass::CommitTransaction => (
            ErrorReply::of(code, format!(
                "holdfast: the primary changed while commitTransaction was in flight on {member} ({cause}); the transaction may or may not have committed"))
                .with_label(label::UNKNOWN_TRANSACTION_COMMIT_RESULT),
            "commit",
        ),
        CommandClass::AbortTransaction => (
            ErrorReply::of(code, format!(
                "holdfast: the primary changed while abortTransaction was in flight on {member} ({cause}); the transaction was aborted or will be by the new primary")),
            "abort",
        ),
        _ => (
            ErrorReply::of(code, format!(
                "holdfast: the primary changed while this {command} was in flight on {member} ({cause}); it may or may not have been applied; holdfast did not retry it because {}",
                why_not_retried(class, resent))),
            "write",
        ),
    };
    HoldfastError {
        error,
        detail: Some(
            doc! {"outcome": "unknown", "command": command, "member": member, "retried": false},
        ),
        reason,
    }
}

fn why_not_retried(class: CommandClass, resent: bool) -> &'static str {
    if resent {
        return "it had already been sent again once";
    }
    match class {
        CommandClass::Write { retryable: true } => "write_retry = \"never\"",
        CommandClass::Write { retryable: false } => "it is not a retryable write (no lsid/txnNumber, multi:true, or w:0) so sending it again could apply it twice",
        _ => "its effects are unknown and sending it again could apply them twice",
    }
}

/// A `getMore`/`killCursors` whose cursor's member is unreachable.
pub fn cursor_lost(cursor_id: i64, member: &str, cause: &str) -> HoldfastError {
    HoldfastError {
        error: ErrorReply::of(codes::CURSOR_NOT_FOUND, format!(
            "holdfast: cursor {cursor_id} lives on {member}, which is unreachable ({cause}); cursors cannot move between members, re-run the query")),
        detail: Some(doc! {"outcome": "not_sent", "reason": "cursor_member_gone"}),
        reason: "cursor_member_gone",
    }
}

/// A second hello carrying client metadata (MongoDB answers 186).
pub fn client_metadata_mutated() -> ErrorReply {
    ErrorReply::of(
        codes::CLIENT_METADATA_CANNOT_BE_MUTATED,
        "The client metadata document may only be sent in the first hello",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use holdfast_topology::ServerLimits;
    use holdfast_wire::{Limits, Message, MsgFlags};

    fn body(f: &Frame) -> Document {
        match f.parse(&Limits::default()).unwrap() {
            Message::Msg(m) => Document::from_reader(&m.body[..]).unwrap(),
            Message::Reply(r) => Document::from_reader(&r.documents[..]).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn replies() -> Replies {
        Replies::new(Arc::new(Identity::new(ServerLimits::default())))
    }

    fn msg_request() -> Frame {
        let b = reply::document_bytes(&doc! {"insert": "c", "$db": "d"});
        reply::msg_reply_bytes(77, 0, MsgFlags::empty(), b)
    }

    #[test]
    fn errors_carry_holdfasts_topology_version_and_answer_the_request() {
        let r = replies();
        let e = not_sent(
            &GateError::HoldTimeout {
                waited: Duration::from_millis(1500),
            },
            "insert",
            "rs0",
        );
        let f = r.holdfast_error(&msg_request(), &e);
        assert_eq!(f.response_to(), 77);
        assert_eq!(f.op_code(), OpCode::Msg);
        let d = body(&f);
        assert_eq!(d.get_i32("code").unwrap(), 10107);
        assert_eq!(d.get_str("codeName").unwrap(), "NotWritablePrimary");
        assert!(d.get_str("errmsg").unwrap().contains("within 1.5 s"));
        let tv = d.get_document("topologyVersion").unwrap();
        assert_eq!(
            tv.get_object_id("processId").unwrap(),
            r.identity().process_id
        );
        assert_eq!(
            d.get_document("holdfast")
                .unwrap()
                .get_str("reason")
                .unwrap(),
            "hold_timeout"
        );
    }

    #[test]
    fn op_query_requests_get_op_reply() {
        let q = holdfast_wire::OpQuery {
            flags: holdfast_wire::QueryFlags::empty(),
            full_collection_name: "admin.$cmd".into(),
            number_to_skip: 0,
            number_to_return: -1,
            query: reply::document_bytes(&doc! {"ping": 1}),
            return_fields_selector: None,
        };
        let req = Message::Query(q).to_frame(5, 0);
        let f = replies().error(&req, &client_metadata_mutated());
        assert_eq!(f.op_code(), OpCode::Reply);
        assert_eq!(body(&f).get_i32("code").unwrap(), 186);
    }

    #[test]
    fn every_refusal_names_the_command_and_is_not_sent() {
        let all = [
            GateError::QueueFull {
                held: 3,
                held_bytes: 10,
                max_held: 3,
                max_held_bytes: 64,
            },
            GateError::HoldTimeout {
                waited: Duration::from_secs(30),
            },
            GateError::MaxTimeExpired {
                waited: Duration::from_millis(20),
            },
            GateError::ShuttingDown,
        ];
        for g in &all {
            let e = not_sent(g, "find", "rs0");
            assert!(e.error.errmsg.contains("find"), "{}", e.error.errmsg);
            assert!(e.error.errmsg.contains("not sent"), "{}", e.error.errmsg);
            assert!(e.error.labels.is_empty());
            assert_eq!(
                e.detail.as_ref().unwrap().get_str("outcome").unwrap(),
                "not_sent"
            );
        }
        assert_eq!(not_sent(&all[2], "find", "rs0").error.code, 50);
        assert!(not_sent(&all[0], "find", "rs0")
            .error
            .errmsg
            .contains("max_held_requests=3"));
    }

    #[test]
    fn unknown_outcome_is_one_clear_error_without_retry_label() {
        let e = unknown_outcome(
            "update",
            CommandClass::Write { retryable: false },
            "h:1",
            "connection reset",
            false,
        );
        assert_eq!(e.error.code, 11602);
        for part in [
            "update",
            "h:1",
            "may or may not have been applied",
            "did not retry",
        ] {
            assert!(e.error.errmsg.contains(part), "{part}: {}", e.error.errmsg);
        }
        assert!(e.error.labels.is_empty());
        let d = e.detail.unwrap();
        assert_eq!(d.get_str("outcome").unwrap(), "unknown");
        assert!(!d.get_bool("retried").unwrap());
        let t = unknown_outcome(
            "insert",
            CommandClass::TransactionStatement,
            "h:1",
            "x",
            false,
        );
        assert_eq!(t.error.labels, vec!["TransientTransactionError"]);
        let c = unknown_outcome(
            "commitTransaction",
            CommandClass::CommitTransaction,
            "h:1",
            "x",
            false,
        );
        assert_eq!(c.error.labels, vec!["UnknownTransactionCommitResult"]);
        let again = unknown_outcome(
            "insert",
            CommandClass::Write { retryable: true },
            "h:1",
            "x",
            true,
        );
        assert!(again.error.errmsg.contains("already been sent again"));
    }

    #[test]
    fn server_errors_get_holdfasts_topology_version_and_transaction_labels() {
        let r = replies();
        let server = doc! {"ok": 0.0, "code": 251, "errmsg": "no txn", "topologyVersion": {"processId": bson::oid::ObjectId::new(), "counter": 9i64}};
        let raw = reply::document_bytes(&server);
        let reply_frame = reply::msg_reply_bytes(900, 77, MsgFlags::empty(), raw.clone());
        let out = r.server_error(
            &msg_request(),
            &reply_frame,
            RawDocument::from_bytes(&raw).unwrap(),
            CommandClass::TransactionStatement,
            false,
        );
        assert_eq!((out.request_id(), out.response_to()), (900, 77));
        let d = body(&out);
        assert_eq!(
            d.get_document("topologyVersion")
                .unwrap()
                .get_object_id("processId")
                .unwrap(),
            r.identity().process_id
        );
        assert_eq!(
            d.get_array("errorLabels").unwrap(),
            &vec![bson::Bson::from("TransientTransactionError")]
        );
        // Not added twice.
        let mut again = d.clone();
        add_label(&mut again, label::TRANSIENT_TRANSACTION_ERROR);
        assert_eq!(again.get_array("errorLabels").unwrap().len(), 1);
    }

    #[test]
    fn cursor_lost_is_cursor_not_found() {
        let e = cursor_lost(42, "h:2", "refused");
        assert_eq!(e.error.code, 43);
        assert!(e.error.errmsg.contains("42") && e.error.errmsg.contains("h:2"));
    }
}
