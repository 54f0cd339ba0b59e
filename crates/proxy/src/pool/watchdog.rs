//! The stall watchdog: a blackholed member neither answers nor closes, so
//! requests waiting on it would wait for ever. Every `stall / 4` (10–500
//! ms) the watchdog looks for requests without a reply for `stall`; per
//! member with any, it sends one hello with `probe_timeout`. No answer:
//! those connections are shut down and the requests waiting on them fail
//! at once with [`BackendError::Timeout`](super::BackendError::Timeout).
//! An answer: the member is only slow, and is not probed again for
//! `stall`. One probe per member however many requests wait, and no timer
//! per request.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::conn::InFlight;
use super::{Pool, Pools};

impl Pools {
    /// Runs the watchdog until `shutdown`.
    pub async fn watch_stalls(
        &self,
        stall: Duration,
        probe_timeout: Duration,
        shutdown: CancellationToken,
    ) {
        let tick = (stall / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
        let stall_ms = stall.as_millis() as u64;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
            let now_ms = self.clock.ms(Instant::now());
            for pool in self.all() {
                let stalled = pool.stalled_requests(now_ms, stall_ms);
                if stalled.is_empty()
                    || now_ms < pool.next_probe_ms.load(Ordering::Acquire)
                    || pool.probing.swap(true, Ordering::AcqRel)
                {
                    continue;
                }
                tokio::spawn(probe(pool, stalled, probe_timeout, stall_ms));
            }
        }
    }
}

impl Pool {
    /// Requests of this pool without a reply for `stall_ms`, with the time
    /// each was sent.
    fn stalled_requests(&self, now_ms: u64, stall_ms: u64) -> Vec<(Arc<InFlight>, u64)> {
        self.inflight
            .lock()
            .unwrap()
            .iter()
            .filter_map(Weak::upgrade)
            .filter_map(|f| {
                let since = f.since_ms.load(Ordering::Acquire);
                (since != 0 && now_ms.saturating_sub(since) >= stall_ms).then_some((f, since))
            })
            .collect()
    }
}

/// One hello to the pool's member; unanswered, the stalled requests are cut.
async fn probe(
    pool: Arc<Pool>,
    stalled: Vec<(Arc<InFlight>, u64)>,
    probe_timeout: Duration,
    stall_ms: u64,
) {
    let answered = holdfast_topology::hello(&pool.member, probe_timeout, pool.cfg.tls.as_ref())
        .await
        .is_ok();
    if answered {
        let at = pool.clock.ms(Instant::now()) + stall_ms;
        pool.next_probe_ms.store(at, Ordering::Release);
    } else {
        let mut cut = 0;
        for (f, since) in &stalled {
            // Only if that same request is still waiting.
            if f.since_ms.load(Ordering::Acquire) == *since {
                f.cut();
                cut += 1;
            }
        }
        warn!(member = %pool.member, requests = cut, "member does not answer a hello probe while requests wait for it; treating it as gone");
    }
    pool.probing.store(false, Ordering::Release);
}
