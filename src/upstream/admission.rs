//! Priority admission: when every candidate node of a pool is at its `max_inflight`, requests
//! wait here, ordered by tier priority (tier2's priority slots ahead of tier1, ahead of the
//! workshop), first come first served within a priority, up to the pool's queue timeout.
//!
//! This is what flattens a 50-trainee peak instead of pushing a 16 GB Mac mini into swap. A
//! waiter holds only a oneshot receiver; the heap's lock is held for a push or a pop, never
//! across an await. A freed slot wakes the best waiter, which then picks a node; while anyone
//! waits, new arrivals queue behind them instead of taking a slot first. Waiters also re-check
//! on a short interval, so a wake-up lost to a racing timeout never strands the queue.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

#[derive(Debug, Default)]
pub struct AdmissionQueue {
    waiters: Mutex<BinaryHeap<Waiter>>,
    next_seq: AtomicU64,
}

#[derive(Debug)]
struct Waiter {
    priority: u8,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.priority, self.seq) == (other.priority, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    /// Higher priority first; within a priority, the earlier arrival (lower seq) first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A waiter's place in the queue, given up when the wait ends (a woken waiter was already
/// popped, so that finds nothing to remove).
struct Place<'a> {
    queue: &'a AdmissionQueue,
    ticket: u64,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.queue.leave(self.ticket);
    }
}

/// Why a request stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    QueueFull,
    TimedOut,
}

impl AdmissionQueue {
    /// A ticket that keeps a request's place across wake-ups.
    pub fn ticket(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub fn waiting(&self) -> usize {
        self.waiters.lock().map_or(0, |w| w.len())
    }

    /// Waits until a slot frees up (or `timeout` passes).
    pub async fn wait(
        &self,
        priority: u8,
        ticket: u64,
        max_waiting: usize,
        timeout: Duration,
    ) -> Result<(), Refused> {
        let (wake, woken) = oneshot::channel();
        {
            let mut waiters = self.waiters.lock().map_err(|_| Refused::QueueFull)?;
            if waiters.len() >= max_waiting {
                return Err(Refused::QueueFull);
            }
            waiters.push(Waiter {
                priority,
                seq: ticket,
                wake,
            });
        }
        // However this wait ends — woken, timed out, or dropped because the client hung up —
        // it leaves no stale place behind (one would count against `max_waiting` and make
        // newcomers queue behind nobody).
        let _place = Place {
            queue: self,
            ticket,
        };
        match tokio::time::timeout(timeout, woken).await {
            Ok(_) => Ok(()),
            Err(_) => Err(Refused::TimedOut),
        }
    }

    fn leave(&self, ticket: u64) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.retain(|w| w.seq != ticket);
        }
    }

    /// A slot was freed: wake the best waiter still waiting.
    pub fn release_one(&self) {
        let Ok(mut waiters) = self.waiters.lock() else {
            return;
        };
        while let Some(waiter) = waiters.pop() {
            if waiter.wake.send(()).is_ok() {
                return;
            }
            // That waiter gave up (its request was dropped, or it timed out and has not yet
            // taken its place out): try the next one.
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn wakes_by_priority_then_arrival() {
        let queue = Arc::new(AdmissionQueue::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("w1", 0u8), ("w2", 0), ("p1", 1), ("w3", 0), ("p2", 1)] {
            let ticket = queue.ticket();
            let (waiter, order) = (queue.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                waiter
                    .wait(priority, ticket, 10, Duration::from_secs(5))
                    .await
                    .unwrap();
                order.lock().unwrap().push(name);
            }));
            while queue.waiting() < tasks.len() {
                tokio::task::yield_now().await;
            }
        }
        for _ in 0..5 {
            queue.release_one();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["p1", "p2", "w1", "w2", "w3"]);
    }

    #[tokio::test]
    async fn a_full_queue_and_a_timeout_refuse() {
        let queue = AdmissionQueue::default();
        let t = queue.ticket();
        assert_eq!(
            queue.wait(0, t, 0, Duration::from_secs(1)).await,
            Err(Refused::QueueFull)
        );
        assert_eq!(
            queue.wait(0, t, 5, Duration::from_millis(20)).await,
            Err(Refused::TimedOut)
        );
        assert_eq!(
            queue.waiting(),
            0,
            "a timed-out waiter leaves no place behind"
        );
    }

    /// A waiter that goes away (its client hung up, its task was dropped) gives its place up
    /// at once; a freed slot then goes to the next waiter rather than to nobody. (Should a
    /// slot be freed in the instant between a waiter's timeout and its leaving, `release_one`
    /// skips the waiter it cannot wake: that race cannot be forced from a test.)
    #[tokio::test]
    async fn a_waiter_that_gave_up_leaves_and_the_slot_goes_to_the_next() {
        let queue = Arc::new(AdmissionQueue::default());
        let spawn_waiter = |priority: u8| {
            let (queue, ticket) = (queue.clone(), queue.ticket());
            tokio::spawn(async move {
                queue
                    .wait(priority, ticket, 10, Duration::from_secs(30))
                    .await
            })
        };
        // The first in line (higher priority) goes away.
        let gone = spawn_waiter(1);
        while queue.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let next = spawn_waiter(0);
        while queue.waiting() < 2 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        assert_eq!(queue.waiting(), 1, "the dropped waiter left the queue");

        queue.release_one();
        let woken = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the slot went to the waiter still waiting");
        assert_eq!(woken.unwrap(), Ok(()));
        assert_eq!(queue.waiting(), 0);
    }

    #[tokio::test]
    async fn a_wait_dropped_midway_leaves_no_place_behind() {
        let queue = AdmissionQueue::default();
        let ticket = queue.ticket();
        let wait = queue.wait(0, ticket, 10, Duration::from_secs(5));
        // The client hangs up: the proxy drops the wait before anyone wakes it.
        let dropped = tokio::time::timeout(Duration::from_millis(20), wait).await;
        assert!(dropped.is_err(), "still waiting when dropped");
        assert_eq!(queue.waiting(), 0);
    }
}
