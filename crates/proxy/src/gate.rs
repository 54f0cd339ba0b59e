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
    QueueFull {
        held: usize,
        held_bytes: usize,
        max_held: usize,
        max_held_bytes: usize,
    },
    /// `hold_timeout` passed with no primary.
    HoldTimeout { waited: Duration },
    /// The command's own `maxTimeMS` ran out while it was held.
    MaxTimeExpired { waited: Duration },
    /// holdfast is shutting down.
    ShuttingDown,
    /// No member matched the read preference within the wait.
    NoSuitableMember {
        mode: &'static str,
        waited: Duration,
    },
    /// No primary is known and no member can be used for a reason waiting
    /// will not fix (each member's, as `addr: why`).
    Unreachable { why: String },
}

pub struct Gate {
    queue: Mutex<VecDeque<oneshot::Sender<Result<Target, String>>>>,
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

    /// Hands the primary of `snap` to every held request, or, when no
    /// member can be used for good, the reason.
    fn release(&self, snap: &Snapshot) {
        let answer = match self.target_of(snap) {
            Some(target) => Ok(target),
            None => match snap.unreachable() {
                Some(why) => Err(why),
                None => return,
            },
        };
        let waiters: Vec<_> = self.queue.lock().unwrap().drain(..).collect();
        for w in waiters {
            let _ = w.send(answer.clone());
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
        let snap = self.rx.borrow().clone();
        if let Some(t) = self.target_of(&snap) {
            return Ok((t, Duration::ZERO));
        }
        if let Some(why) = snap.unreachable() {
            counter!("holdfast_held_requests_total", "outcome" => "unreachable").increment(1);
            return Err(GateError::Unreachable { why });
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
                max_held: self.max_held,
                max_held_bytes: self.max_held_bytes,
            });
        }
        let (tx, rx) = oneshot::channel();
        self.queue.lock().unwrap().push_back(tx);
        // A primary may have appeared between the check and the enqueue.
        let snap = self.rx.borrow().clone();
        if snap.primary.is_some() || snap.unreachable().is_some() {
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
            Ok(Ok(Ok(t))) => {
                counter!("holdfast_held_requests_total", "outcome" => "released").increment(1);
                Ok((t, waited))
            }
            Ok(Ok(Err(why))) => {
                counter!("holdfast_held_requests_total", "outcome" => "unreachable").increment(1);
                Err(GateError::Unreachable { why })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(primary: Option<&str>, epoch: u64) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            primary: primary.map(str::to_string),
            epoch,
            ..Snapshot::empty()
        })
    }

    fn gate(max_held: usize, max_bytes: usize) -> (watch::Sender<Arc<Snapshot>>, Arc<Gate>) {
        let (tx, rx) = watch::channel(snapshot(None, 0));
        (tx, Gate::new(rx, max_held, max_bytes))
    }

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    #[tokio::test]
    async fn a_known_primary_is_returned_at_once() {
        let (tx, g) = gate(10, 1000);
        tx.send(snapshot(Some("a:1"), 3)).unwrap();
        let (t, held) = g.primary(10, soon(1000), None).await.unwrap();
        assert_eq!((&*t.member, t.epoch, held), ("a:1", 3, Duration::ZERO));
        assert_eq!(g.held(), 0);
    }

    #[tokio::test]
    async fn every_held_request_is_released_when_a_primary_appears() {
        let (tx, g) = gate(10, 1000);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..5 {
            let (g2, order) = (g.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let r = g2.primary(10, soon(5000), None).await;
                order.lock().unwrap().push(i);
                r
            }));
            // Each request is queued before the next one arrives.
            while g.held() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(g.held(), 5);
        tokio::time::sleep(Duration::from_millis(30)).await;
        tx.send(snapshot(Some("b:1"), 4)).unwrap();
        for t in tasks {
            let (target, held) = t.await.unwrap().unwrap();
            assert_eq!(&*target.member, "b:1");
            assert!(held >= Duration::from_millis(30), "{held:?}");
        }
        assert_eq!(g.held(), 0);
        assert_eq!(order.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn the_queue_is_bounded_by_count_and_by_bytes() {
        let (_tx, g) = gate(2, 100);
        let g1 = g.clone();
        let a = tokio::spawn(async move { g1.primary(40, soon(2000), None).await });
        while g.held() < 1 {
            tokio::task::yield_now().await;
        }
        // 40 + 70 bytes > 100.
        let full = g.primary(70, soon(2000), None).await.unwrap_err();
        assert_eq!(
            full,
            GateError::QueueFull {
                held: 1,
                held_bytes: 40,
                max_held: 2,
                max_held_bytes: 100
            }
        );
        let g2 = g.clone();
        let b = tokio::spawn(async move { g2.primary(10, soon(2000), None).await });
        while g.held() < 2 {
            tokio::task::yield_now().await;
        }
        // A third request: over the count.
        assert!(matches!(
            g.primary(1, soon(2000), None).await,
            Err(GateError::QueueFull { held: 2, .. })
        ));
        a.abort();
        b.abort();
        let _ = (a.await, b.await);
        assert_eq!(
            g.held(),
            0,
            "refused and cancelled requests leave the queue"
        );
    }

    #[tokio::test]
    async fn hold_timeout_and_max_time_ms() {
        let (_tx, g) = gate(10, 1000);
        let t0 = Instant::now();
        match g.primary(1, soon(60), None).await {
            Err(GateError::HoldTimeout { waited }) => assert!(waited >= Duration::from_millis(50)),
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(2));
        // The command's own maxTimeMS comes first.
        match g.primary(1, soon(5000), Some(soon(40))).await {
            Err(GateError::MaxTimeExpired { waited }) => {
                assert!(waited < Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
        // A later maxTimeMS does not extend the hold deadline.
        assert!(matches!(
            g.primary(1, soon(40), Some(soon(5000))).await,
            Err(GateError::HoldTimeout { .. })
        ));
        assert_eq!(g.held(), 0);
    }

    #[tokio::test]
    async fn requests_are_refused_at_once_when_no_member_can_be_used() {
        let (tx, g) = gate(10, 1000);
        let failing = |addr: &str| {
            let mut m = holdfast_topology::MemberState::unknown(addr);
            m.failure = Some("TLS handshake failed: invalid peer certificate".into());
            m
        };
        let unreachable = |members| {
            Arc::new(Snapshot {
                members,
                ..Snapshot::empty()
            })
        };
        // Held while one member may still answer...
        tx.send(unreachable(vec![
            failing("a:1"),
            holdfast_topology::MemberState::unknown("b:1"),
        ]))
        .unwrap();
        let held = {
            let g = g.clone();
            tokio::spawn(async move { g.primary(1, soon(5000), None).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(g.held(), 1);
        // ...and refused, held or new, once none can.
        tx.send(unreachable(vec![failing("a:1"), failing("b:1")]))
            .unwrap();
        match held.await.unwrap() {
            Err(GateError::Unreachable { why }) => {
                assert!(
                    why.contains("a:1: TLS") && why.contains("b:1: TLS"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let t0 = Instant::now();
        assert!(matches!(
            g.primary(1, soon(5000), None).await,
            Err(GateError::Unreachable { .. })
        ));
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(g.held(), 0);
    }

    #[tokio::test]
    async fn the_cached_target_follows_the_epoch() {
        let (tx, g) = gate(10, 1000);
        tx.send(snapshot(Some("a:1"), 1)).unwrap();
        assert_eq!(g.primary(1, soon(100), None).await.unwrap().0.epoch, 1);
        tx.send(snapshot(Some("b:1"), 2)).unwrap();
        let (t, _) = g.primary(1, soon(100), None).await.unwrap();
        assert_eq!((&*t.member, t.epoch), ("b:1", 2));
    }
}
