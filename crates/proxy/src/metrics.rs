//! Every metric holdfast exports, described once. Labels are bounded:
//! member address, command class, outcome, reason.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

pub fn describe() {
    describe_gauge!("holdfast_client_connections", "Client connections open now");
    describe_counter!(
        "holdfast_client_connections_total",
        "Client connections accepted"
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
        "holdfast_backend_connections_closed_total",
        "Backend connections closed, by member and reason"
    );
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
    describe_counter!(
        "holdfast_protocol_errors_total",
        "Malformed client frames, by kind"
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

pub fn backend_conn_opened(member: &str) {
    counter!("holdfast_backend_connections_opened_total", "member" => member.to_string())
        .increment(1);
    gauge!("holdfast_backend_connections", "member" => member.to_string()).increment(1.0);
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

pub fn write_retried(reason: &'static str) {
    counter!("holdfast_writes_retried_total", "reason" => reason).increment(1);
}
