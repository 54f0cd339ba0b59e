//! One memory budget (`max_buffered_bytes`) for every request byte holdfast
//! buffers: frames being read from clients (charged when their length is
//! announced, before their bytes are read), requests held for a primary
//! (they keep their charge), and replies (charged when a member announces
//! their length, before their bytes are read, and kept until the client
//! has read them). Over the budget a reader waits up to [`BUDGET_WAIT`];
//! then the request, or the reply, is refused with a clear error.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a frame waits for room in the memory budget before it is
/// refused.
pub const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The budget: one permit per byte.
pub struct Budget {
    bytes: Arc<Semaphore>,
    max: usize,
}

/// Bytes charged to the budget; returned when dropped.
pub struct Charge(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Charge {
    /// Nothing charged.
    pub fn none() -> Charge {
        Charge(None)
    }
}

impl Budget {
    pub fn new(max: usize) -> Arc<Budget> {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Budget {
            bytes: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes charged now.
    pub fn used(&self) -> usize {
        self.max - self.bytes.available_permits()
    }

    /// Charges `n` bytes, waiting up to `wait` for room; `None` if there
    /// was none (or `n` exceeds the whole budget).
    pub async fn charge(&self, n: usize, wait: Duration) -> Option<Charge> {
        if n == 0 {
            return Some(Charge(None));
        }
        let n32 = u32::try_from(n).ok().filter(|_| n <= self.max)?;
        if let Ok(p) = self.bytes.clone().try_acquire_many_owned(n32) {
            return Some(Charge(Some(p)));
        }
        let p = tokio::time::timeout(wait, self.bytes.clone().acquire_many_owned(n32)).await;
        p.ok()?.ok().map(|p| Charge(Some(p)))
    }
}
