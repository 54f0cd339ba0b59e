//! The failover contract as one pure decision: given what kind of request
//! failed, how it failed and what has been tried, what holdfast does next.
//! The request path ([`crate::request`]) calls [`decide`] after every
//! failed attempt and nothing else decides; the table in `docs/failover.md`
//! is this function in words.
//!
//! Safety rests on one distinction: whether the first attempt can have
//! changed anything. A request that never reached a server, or that the
//! server refused before executing (not-writable-primary), is always safe
//! to send again. A request that may have executed is sent again only if a
//! second execution cannot differ from the first: reads and diagnostics,
//! and writes the server deduplicates (`lsid` + `txnNumber`).

use holdfast_wire::CommandClass;

use crate::config::WriteRetry;

/// How one attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing was sent: no backend connection could be made or checked out.
    NotSent,
    /// The member answered a not-writable-primary error (10107, 13435,
    /// 10058): it refused the command without executing it.
    Refused { code: i32 },
    /// The member answered a node-is-recovering error, or a state-change
    /// code in `writeConcernError`: the command may have executed (11602
    /// interrupts writes part way; a write concern error follows a write).
    Interrupted { code: i32 },
    /// The connection failed after the request may have been written.
    Network,
    /// No reply, and the member did not answer a probe (blackholed).
    Stalled,
}

impl Failure {
    /// True when the failure came with the server's own error reply.
    pub fn has_reply(self) -> bool {
        matches!(self, Failure::Refused { .. } | Failure::Interrupted { .. })
    }

    /// A bounded label for the replay metric.
    pub fn label(self) -> &'static str {
        if self.has_reply() {
            "state_change"
        } else {
            "network"
        }
    }
}

/// Where the request had to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    /// Wherever the primary is.
    Primary,
    /// The member holding its cursor (`getMore`, `killCursors`).
    Cursor,
    /// The member its transaction runs on.
    Transaction,
}

/// What is known about the request when an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub class: CommandClass,
    /// `moreToCome` or `w: 0`: the client expects no reply.
    pub unacknowledged: bool,
    pub pin: Pin,
    /// How many times the request was already sent again after a failure.
    pub resends: u32,
    /// The request's hold deadline (`hold_timeout`) has passed.
    pub deadline_passed: bool,
}

/// Why a request is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// It never reached a server: wait for a primary and send it.
    NotSent,
    /// A read or diagnostic: running it twice changes nothing.
    Replay,
    /// A retryable write (`lsid` + `txnNumber`): the new primary returns
    /// the first attempt's result if it replicated, or runs it once.
    RetryableWrite,
    /// The old primary refused it before executing it.
    NotExecuted,
}

/// What holdfast does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Resend(Resend),
    /// The server's own error goes back to the client (with holdfast's
    /// `topologyVersion`, and labels a transaction needs).
    PassThrough,
    /// The one clear error for a request whose outcome nobody can know.
    UnknownOutcome,
    /// The cursor's member is gone: `CursorNotFound`.
    CursorLost,
    /// No primary took the request within `hold_timeout`.
    NoPrimary,
    /// An unacknowledged request could not be delivered and cannot be
    /// answered: count and log it.
    Lost,
}

/// How often a request the server cannot apply twice (a retryable write,
/// or one refused before executing) may be sent again: a new primary can
/// itself step down while the resend is in flight. Reads are replayed once.
pub const MAX_DEDUPLICATED_RESENDS: u32 = 3;

/// The contract. See the module documentation and `docs/failover.md`.
pub fn decide(a: Attempt, failure: Failure, policy: WriteRetry) -> Decision {
    match failure {
        Failure::NotSent => not_sent(a),
        Failure::Refused { .. } | Failure::Interrupted { .. } => server_error(a, failure, policy),
        Failure::Network | Failure::Stalled => connection_lost(a, policy),
    }
}

/// Nothing reached a server: safe to send again, to wherever it must go.
fn not_sent(a: Attempt) -> Decision {
    match a.pin {
        Pin::Cursor => Decision::CursorLost,
        // The transaction exists only on its member; it cannot continue.
        Pin::Transaction => Decision::UnknownOutcome,
        Pin::Primary if a.deadline_passed => Decision::NoPrimary,
        Pin::Primary => Decision::Resend(Resend::NotSent),
    }
}

/// The member answered with a state-change error.
fn server_error(a: Attempt, failure: Failure, policy: WriteRetry) -> Decision {
    let refused = matches!(failure, Failure::Refused { .. });
    if let Some(why) = may_resend(a, refused, policy) {
        return Decision::Resend(why);
    }
    match a.class {
        // It may have been applied, and holdfast will not send it again.
        CommandClass::Write { .. } | CommandClass::Other if !refused => Decision::UnknownOutcome,
        // Reads replayed once already, cursors (their member keeps them
        // across a stepdown), transactions (labelled for the driver's own
        // retry), refused writes not resent: the server's word stands.
        _ => Decision::PassThrough,
    }
}

/// The connection broke (or was cut by the stall watchdog) after sending.
fn connection_lost(a: Attempt, policy: WriteRetry) -> Decision {
    if a.unacknowledged {
        return Decision::Lost;
    }
    match a.pin {
        Pin::Cursor => return Decision::CursorLost,
        Pin::Transaction => return Decision::UnknownOutcome,
        Pin::Primary => {}
    }
    match may_resend(a, false, policy) {
        Some(why) => Decision::Resend(why),
        None => Decision::UnknownOutcome,
    }
}

/// May the request be sent again after an attempt that may have executed
/// (`refused`: the server said it did not)? Reads and diagnostics once;
/// what the server cannot apply twice up to [`MAX_DEDUPLICATED_RESENDS`].
fn may_resend(a: Attempt, refused: bool, policy: WriteRetry) -> Option<Resend> {
    let writes = policy != WriteRetry::Never;
    let why = match a.class {
        CommandClass::RetryableRead | CommandClass::Diagnostic => Resend::Replay,
        CommandClass::Write { .. } | CommandClass::Other if writes && refused => {
            Resend::NotExecuted
        }
        CommandClass::Write { retryable: true } if writes => Resend::RetryableWrite,
        _ => return None,
    };
    let limit = match why {
        Resend::Replay => 1,
        _ => MAX_DEDUPLICATED_RESENDS,
    };
    (a.resends < limit).then_some(why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CommandClass::*;

    const READ: CommandClass = RetryableRead;
    const WRITE: CommandClass = Write { retryable: false };
    const RETRYABLE_WRITE: CommandClass = Write { retryable: true };
    const REFUSED: Failure = Failure::Refused { code: 10107 };
    const INTERRUPTED: Failure = Failure::Interrupted { code: 11602 };

    fn attempt(class: CommandClass) -> Attempt {
        Attempt {
            class,
            unacknowledged: false,
            pin: match class {
                CursorContinuation => Pin::Cursor,
                TransactionStatement => Pin::Transaction,
                _ => Pin::Primary,
            },
            resends: 0,
            deadline_passed: false,
        }
    }

    fn safe(class: CommandClass, f: Failure) -> Decision {
        decide(attempt(class), f, WriteRetry::Safe)
    }

    fn resent(class: CommandClass, f: Failure) -> Decision {
        resent_times(class, f, 1)
    }

    fn resent_times(class: CommandClass, f: Failure, resends: u32) -> Decision {
        let a = Attempt {
            resends,
            ..attempt(class)
        };
        decide(a, f, WriteRetry::Safe)
    }

    // Row: new request, no primary known → held, then sent. A request that
    // could not be sent waits for a primary like a new one ...
    #[test]
    fn not_sent_is_sent_again_whatever_it_is() {
        for class in [
            READ,
            WRITE,
            RETRYABLE_WRITE,
            Other,
            Diagnostic,
            CommitTransaction,
            AbortTransaction,
            Auth,
        ] {
            assert_eq!(
                safe(class, Failure::NotSent),
                Decision::Resend(Resend::NotSent),
                "{class:?}"
            );
            assert_eq!(
                decide(attempt(class), Failure::NotSent, WriteRetry::Never),
                Decision::Resend(Resend::NotSent),
                "{class:?} under write_retry = never"
            );
        }
        // ... and an unacknowledged one too: nothing was lost yet.
        let w0 = Attempt {
            unacknowledged: true,
            ..attempt(WRITE)
        };
        assert_eq!(
            decide(w0, Failure::NotSent, WriteRetry::Safe),
            Decision::Resend(Resend::NotSent)
        );
    }

    // Row: hold_timeout passes with no primary → one clear error.
    #[test]
    fn not_sent_past_the_deadline_is_refused() {
        let a = Attempt {
            deadline_passed: true,
            ..attempt(WRITE)
        };
        assert_eq!(
            decide(a, Failure::NotSent, WriteRetry::Safe),
            Decision::NoPrimary
        );
    }

    // Row: read in flight when the primary fails (network or state-change
    // error) → replayed once on the new primary.
    #[test]
    fn reads_in_flight_are_replayed_once() {
        for f in [INTERRUPTED, REFUSED, Failure::Network, Failure::Stalled] {
            assert_eq!(safe(READ, f), Decision::Resend(Resend::Replay), "{f:?}");
            assert_eq!(
                decide(attempt(READ), f, WriteRetry::Never),
                Decision::Resend(Resend::Replay),
                "reads do not depend on write_retry"
            );
        }
        // A read refused with 13435 by a member that just stepped down.
        assert_eq!(
            safe(READ, Failure::Refused { code: 13435 }),
            Decision::Resend(Resend::Replay)
        );
    }

    // Diagnostics are side-effect free: like reads.
    #[test]
    fn diagnostics_are_replayed_once() {
        for f in [INTERRUPTED, Failure::Network, Failure::Stalled] {
            assert_eq!(
                safe(Diagnostic, f),
                Decision::Resend(Resend::Replay),
                "{f:?}"
            );
        }
    }

    // A read that failed again after its replay: the server's error, or the
    // clear error when the connection broke again.
    #[test]
    fn a_read_is_replayed_once() {
        assert_eq!(resent(READ, INTERRUPTED), Decision::PassThrough);
        assert_eq!(resent(READ, Failure::Network), Decision::UnknownOutcome);
        assert_eq!(
            resent(Diagnostic, Failure::Stalled),
            Decision::UnknownOutcome
        );
        assert_eq!(resent(WRITE, INTERRUPTED), Decision::UnknownOutcome);
    }

    // What the server deduplicates (or did not execute) may be sent again
    // while new primaries keep failing, up to a bound.
    #[test]
    fn deduplicated_writes_are_resent_up_to_the_bound() {
        for n in 1..MAX_DEDUPLICATED_RESENDS {
            assert_eq!(
                resent_times(RETRYABLE_WRITE, Failure::Network, n),
                Decision::Resend(Resend::RetryableWrite)
            );
            assert_eq!(
                resent_times(RETRYABLE_WRITE, INTERRUPTED, n),
                Decision::Resend(Resend::RetryableWrite)
            );
            assert_eq!(
                resent_times(WRITE, REFUSED, n),
                Decision::Resend(Resend::NotExecuted)
            );
        }
        let max = MAX_DEDUPLICATED_RESENDS;
        assert_eq!(
            resent_times(RETRYABLE_WRITE, Failure::Network, max),
            Decision::UnknownOutcome
        );
        assert_eq!(
            resent_times(RETRYABLE_WRITE, INTERRUPTED, max),
            Decision::UnknownOutcome
        );
        assert_eq!(resent_times(WRITE, REFUSED, max), Decision::PassThrough);
    }

    // write_retry = "retryable" and "safe" decide alike: the difference is
    // which writes are retryable (holdfast's sessions make more of them).
    #[test]
    fn retryable_and_safe_policies_decide_alike() {
        for class in [READ, WRITE, RETRYABLE_WRITE, Other, TransactionStatement] {
            for f in [REFUSED, INTERRUPTED, Failure::Network, Failure::NotSent] {
                assert_eq!(
                    decide(attempt(class), f, WriteRetry::Retryable),
                    decide(attempt(class), f, WriteRetry::Safe),
                    "{class:?} {f:?}"
                );
            }
        }
    }

    // Row: write with lsid + txnNumber in flight → sent again (the server
    // deduplicates).
    #[test]
    fn retryable_writes_are_sent_again() {
        for f in [INTERRUPTED, Failure::Network, Failure::Stalled] {
            assert_eq!(
                safe(RETRYABLE_WRITE, f),
                Decision::Resend(Resend::RetryableWrite),
                "{f:?}"
            );
        }
        assert_eq!(
            safe(RETRYABLE_WRITE, REFUSED),
            Decision::Resend(Resend::NotExecuted)
        );
    }

    // Row: write refused with NotWritablePrimary before executing → sent to
    // the new primary (write_retry = "safe").
    #[test]
    fn refused_writes_are_sent_again() {
        for code in [10107, 13435, 10058] {
            let f = Failure::Refused { code };
            assert_eq!(safe(WRITE, f), Decision::Resend(Resend::NotExecuted));
            assert_eq!(safe(Other, f), Decision::Resend(Resend::NotExecuted));
        }
    }

    // Row: other write in flight, outcome unknown → not retried, one clear error.
    #[test]
    fn writes_of_unknown_outcome_get_the_clear_error() {
        for f in [
            INTERRUPTED,
            Failure::Interrupted { code: 189 },
            Failure::Network,
            Failure::Stalled,
        ] {
            assert_eq!(safe(WRITE, f), Decision::UnknownOutcome, "{f:?}");
            assert_eq!(safe(Other, f), Decision::UnknownOutcome, "{f:?}");
        }
    }

    // write_retry = "never": every in-flight write gets the clear error,
    // including retryable and refused ones.
    #[test]
    fn write_retry_never_resends_no_write() {
        let never = |class, f| decide(attempt(class), f, WriteRetry::Never);
        for f in [INTERRUPTED, Failure::Network, Failure::Stalled] {
            assert_eq!(never(RETRYABLE_WRITE, f), Decision::UnknownOutcome);
            assert_eq!(never(WRITE, f), Decision::UnknownOutcome);
        }
        assert_eq!(never(WRITE, REFUSED), Decision::PassThrough);
        assert_eq!(never(RETRYABLE_WRITE, REFUSED), Decision::PassThrough);
    }

    // Row: statement inside a transaction when the primary changes → not
    // replayed; the server's error (labelled) or the clear transient error.
    #[test]
    fn transaction_statements_are_never_replayed() {
        assert_eq!(
            safe(TransactionStatement, INTERRUPTED),
            Decision::PassThrough
        );
        assert_eq!(safe(TransactionStatement, REFUSED), Decision::PassThrough);
        for f in [Failure::Network, Failure::Stalled, Failure::NotSent] {
            assert_eq!(
                safe(TransactionStatement, f),
                Decision::UnknownOutcome,
                "{f:?}"
            );
        }
    }

    // commit/abort go to the current primary; never sent again by holdfast
    // (the driver retries commit itself on UnknownTransactionCommitResult).
    #[test]
    fn commit_and_abort_are_not_resent_after_sending() {
        for class in [CommitTransaction, AbortTransaction] {
            assert_eq!(safe(class, Failure::Network), Decision::UnknownOutcome);
            assert_eq!(safe(class, INTERRUPTED), Decision::PassThrough);
            assert_eq!(safe(class, REFUSED), Decision::PassThrough);
        }
    }

    // Row: getMore/killCursors → always to the cursor's member, never
    // replayed; CursorNotFound if that member is gone.
    #[test]
    fn cursors_stay_on_their_member() {
        assert_eq!(safe(CursorContinuation, INTERRUPTED), Decision::PassThrough);
        assert_eq!(safe(CursorContinuation, REFUSED), Decision::PassThrough);
        for f in [Failure::Network, Failure::Stalled, Failure::NotSent] {
            assert_eq!(safe(CursorContinuation, f), Decision::CursorLost, "{f:?}");
        }
    }

    // Row: w:0 write lost → cannot be signalled; counted.
    #[test]
    fn unacknowledged_requests_lost_after_sending() {
        for class in [WRITE, READ, RETRYABLE_WRITE, CursorContinuation] {
            let a = Attempt {
                unacknowledged: true,
                ..attempt(class)
            };
            for f in [Failure::Network, Failure::Stalled] {
                assert_eq!(decide(a, f, WriteRetry::Safe), Decision::Lost);
            }
        }
    }

    // The handshake and authentication are answered or run per connection;
    // they are never replayed after sending.
    #[test]
    fn auth_is_not_replayed() {
        assert_eq!(safe(Auth, Failure::Network), Decision::UnknownOutcome);
        assert_eq!(safe(Auth, INTERRUPTED), Decision::PassThrough);
    }

    #[test]
    fn failure_labels() {
        assert_eq!(REFUSED.label(), "state_change");
        assert_eq!(INTERRUPTED.label(), "state_change");
        assert_eq!(Failure::Network.label(), "network");
        assert_eq!(Failure::Stalled.label(), "network");
        assert!(!Failure::NotSent.has_reply());
    }
}
