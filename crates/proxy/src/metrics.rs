//! Every metric holdfast exports, described once. Labels are bounded:
//! member address, command class, outcome, reason.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub fn describe() {
    describe_connections();
    describe_requests();
    describe_failover();
    describe_traffic();
}

fn describe_connections() {
    describe_gauge!("holdfast_client_connections", "Client connections open now");
    describe_counter!(
        "holdfast_client_connections_total",
        "Client connections accepted"
    );
    describe_counter!(
        "holdfast_client_connections_closed_total",
        "Client connections closed, by reason (timeouts, memory budget, protocol errors, the client itself)"
    );
    describe_counter!(
        "holdfast_client_connections_rejected_total",
        "Client connections refused because max_client_connections was reached"
    );
    describe_gauge!(
        "holdfast_backend_connections",
        "Backend connections open now, by member"
    );
    describe_counter!(
        "holdfast_backend_connections_opened_total",
        "Backend connections opened, by member"
    );
    describe_counter!(
        "holdfast_backend_connect_failures_total",
        "Backend connections that could not be opened (connect or handshake failed or timed out), by member"
    );
    describe_counter!(
        "holdfast_backend_connections_closed_total",
        "Backend connections closed, by member and reason"
    );
}

fn describe_requests() {
    describe_counter!(
        "holdfast_requests_total",
        "Requests by command class and outcome"
    );
    describe_histogram!(
        "holdfast_request_duration_seconds",
        Unit::Seconds,
        "Request latency seen by the client, by command class"
    );
    describe_gauge!(
        "holdfast_held_requests",
        "Requests waiting for a primary now"
    );
    describe_histogram!(
        "holdfast_hold_duration_seconds",
        Unit::Seconds,
        "Time requests spent waiting for a primary"
    );
    describe_counter!(
        "holdfast_held_requests_total",
        "Requests that had to wait for a primary, by outcome"
    );
}

fn describe_failover() {
    describe_counter!(
        "holdfast_replays_total",
        "In-flight requests sent again after the primary failed, by class and outcome"
    );
    describe_counter!(
        "holdfast_write_errors_total",
        "Writes answered with holdfast's error because their outcome is unknown, by reason"
    );
    describe_counter!(
        "holdfast_writes_retried_total",
        "Writes sent to the new primary because that was provably safe, by reason"
    );
    describe_counter!(
        "holdfast_writes_made_retryable_total",
        "Writes without a txnNumber sent under one of holdfast's sessions (write_retry = retryable)"
    );
    describe_counter!(
        "holdfast_unacknowledged_writes_lost_total",
        "w:0 writes lost at a failover (cannot be signalled on the wire)"
    );
    describe_counter!(
        "holdfast_primary_changes_total",
        "Times the primary changed (including to none)"
    );
    describe_gauge!(
        "holdfast_primary_known",
        "1 when a primary is known, else 0"
    );
    describe_histogram!(
        "holdfast_primary_unknown_duration_seconds",
        Unit::Seconds,
        "Time from losing the primary to knowing the new one"
    );
}

fn describe_traffic() {
    describe_counter!(
        "holdfast_protocol_errors_total",
        "Malformed client frames, by kind"
    );
    describe_counter!(
        "holdfast_legacy_requests_total",
        "Requests in a legacy wire format (OP_QUERY, OP_GET_MORE, OP_KILL_CURSORS, OP_INSERT, OP_UPDATE, OP_DELETE) translated into commands, by opcode"
    );
    describe_counter!(
        "holdfast_legacy_translation_errors_total",
        "Legacy requests refused because they could not be translated, by opcode"
    );
    describe_counter!(
        "holdfast_client_authentications_total",
        "Client logins to holdfast (users_file), by mechanism and outcome"
    );
    describe_counter!(
        "holdfast_backend_logins_total",
        "Logins of backend connections to members (as the upstream user or a client's own user), by mechanism and outcome"
    );
    describe_counter!(
        "holdfast_memory_budget_refusals_total",
        "Requests refused because max_buffered_bytes had no room, by what did not fit: a request frame, a compressed request's inflated size, a member's reply"
    );
    describe_counter!(
        "holdfast_tls_handshake_failures_total",
        "TLS handshakes that failed, by side (client: holdfast's listener; upstream: connections to members)"
    );
    describe_counter!(
        "holdfast_reads_total",
        "Reads that may run on a secondary, by read preference mode and the role of the member that served them"
    );
    describe_counter!(
        "holdfast_bytes_received_total",
        Unit::Bytes,
        "Bytes received from clients"
    );
    describe_counter!(
        "holdfast_bytes_sent_total",
        Unit::Bytes,
        "Bytes sent to clients"
    );
}

/// Registers every family with every known label value at zero, so the
/// first scrape shows them all (dashboards and `rate()` alerts need series
/// before anything happens). Member-labelled families are registered per
/// member by [`register_member`].
pub fn register_known() {
    gauge!("holdfast_client_connections").increment(0.0);
    counter!("holdfast_client_connections_total").increment(0);
    counter!("holdfast_client_connections_rejected_total").increment(0);
    for r in CLOSE_REASONS {
        counter!("holdfast_client_connections_closed_total", "reason" => r).increment(0);
    }
    gauge!("holdfast_held_requests").increment(0.0);
    for o in [
        "released",
        "queue_full",
        "timeout",
        "max_time_expired",
        "unreachable",
    ] {
        counter!("holdfast_held_requests_total", "outcome" => o).increment(0);
    }
    let _ = histogram!("holdfast_hold_duration_seconds");
    for class in CLASSES {
        for o in ["state_change", "network", "failed"] {
            counter!("holdfast_replays_total", "class" => class, "outcome" => o).increment(0);
        }
    }
    for r in ["write", "transaction", "commit", "abort"] {
        counter!("holdfast_write_errors_total", "reason" => r).increment(0);
    }
    for r in [
        "retryable_write",
        "holdfast_session",
        "not_writable_primary",
    ] {
        counter!("holdfast_writes_retried_total", "reason" => r).increment(0);
    }
    counter!("holdfast_writes_made_retryable_total").increment(0);
    counter!("holdfast_unacknowledged_writes_lost_total").increment(0);
    counter!("holdfast_primary_changes_total").increment(0);
    gauge!("holdfast_primary_known").increment(0.0);
    let _ = histogram!("holdfast_primary_unknown_duration_seconds");
    for k in PROTOCOL_ERRORS {
        counter!("holdfast_protocol_errors_total", "kind" => k).increment(0);
    }
    for mech in [
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "MONGODB-X509",
        "speculative",
        "other",
    ] {
        for outcome in ["ok", "failed"] {
            counter!("holdfast_client_authentications_total", "mechanism" => mech, "outcome" => outcome)
                .increment(0);
        }
    }
    for mech in ["SCRAM-SHA-256", "SCRAM-SHA-1", "MONGODB-X509"] {
        for outcome in ["ok", "failed"] {
            counter!("holdfast_backend_logins_total", "mechanism" => mech, "outcome" => outcome)
                .increment(0);
        }
    }
    for what in ["request", "compressed", "reply"] {
        counter!("holdfast_memory_budget_refusals_total", "what" => what).increment(0);
    }
    for side in ["client", "upstream"] {
        counter!("holdfast_tls_handshake_failures_total", "side" => side).increment(0);
    }
    for mode in crate::read_preference::Mode::ALL {
        for role in ["primary", "secondary"] {
            counter!("holdfast_reads_total", "mode" => mode.name(), "role" => role).increment(0);
        }
    }
    for k in crate::legacy::Kind::ALL {
        counter!("holdfast_legacy_requests_total", "opcode" => k.label()).increment(0);
        counter!("holdfast_legacy_translation_errors_total", "opcode" => k.label()).increment(0);
    }
}

/// The kinds of `holdfast_protocol_errors_total`.
pub const PROTOCOL_ERRORS: [&str; 7] = [
    "framing",
    "fatal",
    "malformed",
    "bad_command",
    "legacy_opcode",
    "compression",
    "unexpected_reply",
];

/// The member-labelled families of one member, at zero.
pub fn register_member(member: &str) {
    let m = member.to_string();
    gauge!("holdfast_backend_connections", "member" => m.clone()).increment(0.0);
    counter!("holdfast_backend_connections_opened_total", "member" => m.clone()).increment(0);
    counter!("holdfast_backend_connect_failures_total", "member" => m.clone()).increment(0);
    for r in [
        "stale",
        "dropped",
        "cleared",
        "unhealthy",
        "idle",
        "evicted",
    ] {
        counter!("holdfast_backend_connections_closed_total", "member" => m.clone(), "reason" => r)
            .increment(0);
    }
}

pub fn backend_conn_opened(member: &str) {
    counter!("holdfast_backend_connections_opened_total", "member" => member.to_string())
        .increment(1);
    gauge!("holdfast_backend_connections", "member" => member.to_string()).increment(1.0);
}

pub fn backend_connect_failed(member: &str) {
    counter!("holdfast_backend_connect_failures_total", "member" => member.to_string())
        .increment(1);
}

pub fn backend_conn_closed(member: &str, reason: &'static str) {
    counter!("holdfast_backend_connections_closed_total", "member" => member.to_string(), "reason" => reason).increment(1);
    gauge!("holdfast_backend_connections", "member" => member.to_string()).decrement(1.0);
}

/// Command classes and request outcomes, as metric label values.
pub const CLASSES: [&str; 11] = [
    "handshake",
    "auth",
    "read",
    "cursor",
    "retryable_write",
    "write",
    "txn_statement",
    "txn_commit",
    "txn_abort",
    "diagnostic",
    "other",
];
pub const OUTCOMES: [&str; 4] = ["ok", "server_error", "replayed", "holdfast_error"];

/// Handles for the per-request metrics, registered once: looking a
/// labelled metric up in the registry on every request costs more than the
/// rest of the bookkeeping.
pub struct RequestMetrics {
    requests: Vec<metrics::Counter>,
    durations: Vec<metrics::Histogram>,
    pub bytes_received: metrics::Counter,
    pub bytes_sent: metrics::Counter,
}

impl RequestMetrics {
    /// Registers the handles with the installed recorder (no-ops if none).
    pub fn new() -> RequestMetrics {
        let mut requests = Vec::new();
        let mut durations = Vec::new();
        for class in CLASSES {
            for outcome in OUTCOMES {
                requests.push(
                    counter!("holdfast_requests_total", "class" => class, "outcome" => outcome),
                );
            }
            durations.push(histogram!("holdfast_request_duration_seconds", "class" => class));
        }
        RequestMetrics {
            requests,
            durations,
            bytes_received: counter!("holdfast_bytes_received_total"),
            bytes_sent: counter!("holdfast_bytes_sent_total"),
        }
    }

    pub fn request(&self, class: &'static str, outcome: &'static str, seconds: f64) {
        let c = CLASSES
            .iter()
            .position(|x| *x == class)
            .unwrap_or(CLASSES.len() - 1);
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(0);
        self.requests[c * OUTCOMES.len() + o].increment(1);
        self.durations[c].record(seconds);
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

pub fn protocol_error(kind: &'static str) {
    counter!("holdfast_protocol_errors_total", "kind" => kind).increment(1);
}

pub fn replay(class: &'static str, outcome: &'static str) {
    counter!("holdfast_replays_total", "class" => class, "outcome" => outcome).increment(1);
}

pub fn write_error(reason: &'static str) {
    counter!("holdfast_write_errors_total", "reason" => reason).increment(1);
}

/// Why client connections end, as metric label values.
pub const CLOSE_REASONS: [&str; 11] = [
    "client_closed",
    "io_error",
    "framing",
    "protocol_error",
    "first_message_timeout",
    "frame_timeout",
    "idle_timeout",
    "write_timeout",
    "memory_budget",
    "shutdown",
    "tls_handshake",
];

pub fn client_closed(reason: &'static str) {
    counter!("holdfast_client_connections_closed_total", "reason" => reason).increment(1);
}

pub fn legacy_request(kind: crate::legacy::Kind) {
    counter!("holdfast_legacy_requests_total", "opcode" => kind.label()).increment(1);
}

pub fn legacy_error(kind: crate::legacy::Kind) {
    counter!("holdfast_legacy_translation_errors_total", "opcode" => kind.label()).increment(1);
}

pub fn client_authentication(mechanism: &'static str, outcome: &'static str) {
    counter!("holdfast_client_authentications_total", "mechanism" => mechanism, "outcome" => outcome)
        .increment(1);
}

pub fn backend_login(mechanism: &'static str, outcome: &'static str) {
    counter!("holdfast_backend_logins_total", "mechanism" => mechanism, "outcome" => outcome)
        .increment(1);
}

pub fn budget_refusal(what: &'static str) {
    counter!("holdfast_memory_budget_refusals_total", "what" => what).increment(1);
}

pub fn tls_handshake_failed(side: &'static str) {
    counter!("holdfast_tls_handshake_failures_total", "side" => side).increment(1);
}

pub fn read(mode: &'static str, role: &'static str) {
    counter!("holdfast_reads_total", "mode" => mode, "role" => role).increment(1);
}

pub fn write_made_retryable() {
    counter!("holdfast_writes_made_retryable_total").increment(1);
}

pub fn unacknowledged_lost() {
    counter!("holdfast_unacknowledged_writes_lost_total").increment(1);
}

pub fn write_retried(reason: &'static str) {
    counter!("holdfast_writes_retried_total", "reason" => reason).increment(1);
}
