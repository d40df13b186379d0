//! Agent runs: a customer's request to have their tenant's agent do one job, queued durably,
//! worked by background workers through the gateway's own proxy, with its output kept as
//! artifacts.
//!
//! | module | what |
//! |---|---|
//! | `queue` | the durable queue (SQLite today) behind the `RunQueue` trait: leases, backoff, dead |
//! | `worker` | the background service that claims runs and works them |
//! | `node_call` | one attempt: a streaming call to the node through the proxy |
//! | `output` | the node's answer assembled into text and a `response.json` |
//! | `artifacts` | where outputs are kept (`object_store`: a local directory today) |
//! | `events` | live status and output for watchers (SSE) |
//! | `template` | a template's instructions rendered with the caller's input |
//! | `submit` | accepting a run: the tier's gates, the input, the enqueue |
//! | `byok` | provider keys riding with queued runs, in memory only |
//!
//! `RunService` ties them together for the sidecar, the admin API and the workers: one place
//! that changes a run's state and tells its watchers and its worker.

pub mod artifacts;
pub mod byok;
pub mod events;
pub mod node_call;
pub mod output;
pub mod queue;
pub mod submit;
pub mod template;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{watch, Notify};

use crate::api_error::ApiError;
use crate::clock::SharedClock;
use artifacts::Artifacts;
use byok::ByokKeys;
use events::{EventError, EventHub, RunEvent};
use queue::{CancelOutcome, QueueError, Run, RunQueue, RunStatus};

/// A run as its owner (and an operator) sees it.
pub fn run_json(run: &Run, now_ms: u64) -> Value {
    let input: Value = serde_json::from_str(&run.input).unwrap_or(Value::Null);
    let next_attempt_ms =
        (run.status == RunStatus::Queued && run.available_ms > now_ms).then_some(run.available_ms);
    json!({
        "id": run.id,
        "object": "run",
        "tenant_id": run.tenant_id,
        "owner": run.owner,
        "template": run.template,
        "agent": run.agent,
        "status": run.status.as_str(),
        "attempts": run.attempts,
        "max_attempts": run.max_attempts,
        "input": input,
        "byok": run.byok,
        "idempotency_key": run.idempotency_key,
        "created_ms": run.created_ms,
        "started_ms": run.started_ms,
        "finished_ms": run.finished_ms,
        "next_attempt_ms": next_attempt_ms,
        "cancel_requested": run.cancel_requested,
        "error": run.last_error.as_ref().map(|e| json!({ "code": e.code, "message": e.message })),
    })
}

/// The status event that tells watchers where `run` is now.
pub fn status_event(run: &Run, at_ms: u64) -> RunEvent {
    RunEvent::Status {
        status: run.status.as_str().to_owned(),
        attempt: run.attempts,
        error: run.last_error.as_ref().map(|e| EventError {
            code: e.code.clone(),
            message: e.message.clone(),
        }),
        at_ms,
    }
}

/// What a running run's worker is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Work,
    /// Stop and finish the run as canceled.
    Cancel,
    /// Stop and put the run back in the queue (a graceful stop that ran out of time).
    Release,
}

/// The run queue and everything around it, shared by the sidecar, the admin API and the
/// workers.
pub struct RunService {
    pub queue: Arc<dyn RunQueue>,
    pub artifacts: Artifacts,
    pub events: EventHub,
    pub byok: ByokKeys,
    pub clock: SharedClock,
    /// Wakes idle workers when a run is queued.
    wake: Notify,
    /// Runs being worked in this process, and how to tell their worker to stop.
    active: Mutex<HashMap<String, Active>>,
}

struct Active {
    tenant_id: String,
    control: watch::Sender<Control>,
}

impl RunService {
    pub fn new(queue: Arc<dyn RunQueue>, artifacts: Artifacts, clock: SharedClock) -> RunService {
        RunService {
            queue,
            artifacts,
            events: EventHub::new(),
            byok: ByokKeys::default(),
            clock,
            wake: Notify::new(),
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `work` against the queue on a blocking thread; a queue failure is logged and
    /// answered 500.
    pub async fn with_queue<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn RunQueue) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let queue = self.queue.clone();
        crate::local_http::blocking("run queue", move || {
            work(queue.as_ref()).map_err(|e| e.to_string())
        })
        .await
    }

    /// Tells an idle worker there is a run to claim.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }

    /// Cancels a run: a queued one at once, a running one by telling its worker (here, or in
    /// another process through the queue's `cancel_requested`).
    pub async fn cancel(&self, run_id: &str) -> Result<CancelOutcome, ApiError> {
        let (id, now) = (run_id.to_owned(), self.clock.now_ms());
        let outcome = self.with_queue(move |q| q.cancel(&id, now)).await?;
        match &outcome {
            CancelOutcome::Canceled(run) => self.finished(run),
            CancelOutcome::Requested(run) => self.signal(&run.id, Control::Cancel),
            CancelOutcome::AlreadyFinished(_) | CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    /// Cancels every run of a deleted tenant; returns how many were queued or running.
    pub async fn cancel_tenant(&self, tenant_id: &str) -> Result<u64, ApiError> {
        let (id, now) = (tenant_id.to_owned(), self.clock.now_ms());
        let count = self.with_queue(move |q| q.cancel_tenant(&id, now)).await?;
        for active in self.lock_active().values() {
            if active.tenant_id == tenant_id {
                let _ = active.control.send(Control::Cancel);
            }
        }
        Ok(count)
    }

    /// Announces a run's current status to its watchers.
    pub fn announce(&self, run: &Run) {
        let event = status_event(run, self.clock.now_ms());
        self.events.status(&run.id, event, run.status.is_terminal());
    }

    /// A run reached a final state: watchers are told, its key is dropped.
    pub fn finished(&self, run: &Run) {
        debug_assert!(run.status.is_terminal() || run.status == RunStatus::Queued);
        self.announce(run);
        if run.status.is_terminal() {
            self.byok.remove(&run.id);
        }
    }

    /// Registers a run this process works on; the receiver tells its worker when to stop.
    pub(crate) fn start_working(&self, run: &Run) -> watch::Receiver<Control> {
        let (control, receiver) = watch::channel(Control::Work);
        let active = Active {
            tenant_id: run.tenant_id.clone(),
            control,
        };
        self.lock_active().insert(run.id.clone(), active);
        receiver
    }

    pub(crate) fn stop_working(&self, run_id: &str) {
        self.lock_active().remove(run_id);
    }

    /// Tells the worker of `run_id` (if it is in this process) what to do.
    pub(crate) fn signal(&self, run_id: &str, control: Control) {
        if let Some(active) = self.lock_active().get(run_id) {
            let _ = active.control.send(control);
        }
    }

    /// Tells every worker of this process to stop (a graceful stop out of time).
    pub(crate) fn signal_all(&self, control: Control) {
        for active in self.lock_active().values() {
            let _ = active.control.send(control);
        }
    }

    /// Runs being worked in this process.
    pub fn working(&self) -> usize {
        self.lock_active().len()
    }

    fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<String, Active>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}
