//! The gate: requests that need a primary while none is known wait here, in
//! a FIFO queue bounded by count and by bytes, each until its deadline.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use holdfast_topology::Snapshot;
use metrics::{counter, gauge, histogram};
use tokio::sync::{oneshot, watch};

/// Where to send a request: the primary's address and the snapshot epoch.
#[derive(Debug, Clone)]
pub struct Target {
    pub member: Arc<str>,
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GateError {
    /// The hold queue is at `max_held_requests` or `max_held_bytes`.
    QueueFull { held: usize, held_bytes: usize },
    /// `hold_timeout` passed with no primary.
    HoldTimeout { waited: Duration },
    /// The command's own `maxTimeMS` ran out while it was held.
    MaxTimeExpired { waited: Duration },
    /// holdfast is shutting down.
    ShuttingDown,
}

pub struct Gate {
    queue: Mutex<VecDeque<oneshot::Sender<Target>>>,
    held: AtomicUsize,
    held_bytes: AtomicUsize,
    max_held: usize,
    max_held_bytes: usize,
    rx: watch::Receiver<Arc<Snapshot>>,
    /// The current primary as a `Target`, rebuilt only when the epoch changes
    /// (saves an allocation per request).
    cached: Mutex<Option<Target>>,
}

struct HeldGuard<'a> {
    gate: &'a Gate,
    bytes: usize,
}

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        self.gate.held.fetch_sub(1, Ordering::AcqRel);
        self.gate.held_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
        gauge!("holdfast_held_requests").decrement(1.0);
    }
}

impl Gate {
    pub fn new(
        rx: watch::Receiver<Arc<Snapshot>>,
        max_held: usize,
        max_held_bytes: usize,
    ) -> Arc<Gate> {
        let gate = Arc::new(Gate {
            queue: Mutex::new(VecDeque::new()),
            held: AtomicUsize::new(0),
            held_bytes: AtomicUsize::new(0),
            max_held,
            max_held_bytes,
            rx: rx.clone(),
            cached: Mutex::new(None),
        });
        // Release task: whenever a primary is known, hand it to every held
        // request in arrival order.
        let weak = Arc::downgrade(&gate);
        let mut rx = rx;
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let snap = rx.borrow_and_update().clone();
                let Some(gate) = weak.upgrade() else { return };
                gate.release(&snap);
            }
        });
        gate
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// The primary of `snap` as a target (cached per epoch).
    fn target_of(&self, snap: &Snapshot) -> Option<Target> {
        let p = snap.primary.as_ref()?;
        let mut cached = self.cached.lock().unwrap();
        if let Some(t) = cached.as_ref().filter(|t| t.epoch == snap.epoch) {
            return Some(t.clone());
        }
        let t = Target {
            member: Arc::from(p.as_str()),
            epoch: snap.epoch,
        };
        *cached = Some(t.clone());
        Some(t)
    }

    fn release(&self, snap: &Snapshot) {
        let Some(target) = self.target_of(snap) else {
            return;
        };
        let waiters: Vec<_> = self.queue.lock().unwrap().drain(..).collect();
        for w in waiters {
            let _ = w.send(target.clone());
        }
    }

    /// The current primary, at once if known; otherwise waits in the queue
    /// until one is known or `deadline` passes. `max_time_deadline` is the
    /// command's maxTimeMS deadline, if any.
    pub async fn primary(
        &self,
        bytes: usize,
        deadline: Instant,
        max_time_deadline: Option<Instant>,
    ) -> Result<(Target, Duration), GateError> {
        if let Some(t) = self.target_of(&self.rx.borrow()) {
            return Ok((t, Duration::ZERO));
        }
        let start = Instant::now();
        let held = self.held.fetch_add(1, Ordering::AcqRel) + 1;
        let held_bytes = self.held_bytes.fetch_add(bytes, Ordering::AcqRel) + bytes;
        gauge!("holdfast_held_requests").increment(1.0);
        let _guard = HeldGuard { gate: self, bytes };
        if held > self.max_held || held_bytes > self.max_held_bytes {
            counter!("holdfast_held_requests_total", "outcome" => "queue_full").increment(1);
            return Err(GateError::QueueFull {
                held: held - 1,
                held_bytes: held_bytes - bytes,
            });
        }
        let (tx, rx) = oneshot::channel();
        self.queue.lock().unwrap().push_back(tx);
        // A primary may have appeared between the check and the enqueue.
        let snap = self.rx.borrow().clone();
        if snap.primary.is_some() {
            self.release(&snap);
        }
        let effective = match max_time_deadline {
            Some(m) if m < deadline => m,
            _ => deadline,
        };
        let r = tokio::time::timeout_at(effective.into(), rx).await;
        let waited = start.elapsed();
        histogram!("holdfast_hold_duration_seconds").record(waited.as_secs_f64());
        match r {
            Ok(Ok(t)) => {
                counter!("holdfast_held_requests_total", "outcome" => "released").increment(1);
                Ok((t, waited))
            }
            Ok(Err(_)) => Err(GateError::ShuttingDown),
            Err(_) if Some(effective) == max_time_deadline => {
                counter!("holdfast_held_requests_total", "outcome" => "max_time_expired")
                    .increment(1);
                Err(GateError::MaxTimeExpired { waited })
            }
            Err(_) => {
                counter!("holdfast_held_requests_total", "outcome" => "timeout").increment(1);
                Err(GateError::HoldTimeout { waited })
            }
        }
    }
}
