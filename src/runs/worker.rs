//! The run workers: a background service that claims queued runs and works them.
//!
//! One loop owns the service's life, like mini-redis's listener: it expires stale leases,
//! claims runs while fewer than `runs.workers` are working (read from the live config, so a
//! reload changes it), and sleeps until a run is queued, a worker finishes, or
//! `runs.poll_interval` passes (a backoff may have ended). Each claimed run is worked in its
//! own task:
//!
//! 1. checks the owner's subscription (the seed's "worker checks tenant subscription status")
//!    and, for a BYOK run, that its key is still in memory;
//! 2. calls the node through the proxy (`node_call`), streaming the output to watchers, within
//!    the template's timeout, while renewing its lease every third of it;
//! 3. stores `output.md` and `response.json` (overwritten by a retry, never duplicated), and
//!    finishes the run — only if it still holds the lease, so a worker that lost its run to
//!    another changes nothing.
//!
//! A graceful stop claims nothing more, gives running runs the grace period to finish, then
//! puts the rest back in the queue. After `kill -9` their leases expire and they run again:
//! at least once, made safe by the session key and artifacts that derive from the run id.
//! The same loop prunes old runs' artifacts every `artifacts.prune_interval`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::node_call::{run_error, CallError, NodeClient};
use super::queue::{Backoff, Candidate, Claimed, Expired, Lease, Outcome, Renewal, Run, RunStatus};
use super::{Control, RunService};
use crate::billing::{self, Billing};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{LiveSnapshot, Snapshot};

/// How often the run gauges are refreshed from the queue.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// Runs pruned per pass of artifact retention.
const PRUNE_BATCH: u32 = 500;

pub struct RunWorkers {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<RunService>,
    live: LiveSnapshot,
    billing: Arc<Billing>,
    client: NodeClient,
    metrics: Arc<Metrics>,
    clock: SharedClock,
    /// How long running runs get to finish on a graceful stop.
    grace: Duration,
}

/// How one attempt ended.
enum Attempt {
    Finish(Outcome),
    /// Put back in the queue without counting the attempt (graceful stop).
    Release,
    /// Another worker has the run now: touch nothing.
    LeaseLost,
}

impl RunWorkers {
    pub fn new(
        service: Arc<RunService>,
        live: LiveSnapshot,
        billing: Arc<Billing>,
        client: NodeClient,
        metrics: Arc<Metrics>,
        clock: SharedClock,
        grace: Duration,
    ) -> RunWorkers {
        RunWorkers {
            inner: Arc::new(Inner {
                service,
                live,
                billing,
                client,
                metrics,
                clock,
                grace,
            }),
        }
    }
}

#[async_trait]
impl BackgroundService for RunWorkers {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let inner = &self.inner;
        inner.fail_runs_whose_key_is_lost().await;
        let mut tasks = JoinSet::new();
        let (mut gauges_at, mut pruned_at) = (None::<Instant>, Instant::now());
        loop {
            let snapshot = inner.live.load_full();
            let config = &snapshot.config;
            inner.expire_leases(config).await;
            while tasks.len() < config.runs.workers {
                match inner.claim(&snapshot).await {
                    Some(claimed) => {
                        tasks.spawn(inner.clone().work(claimed));
                    }
                    None => break,
                }
            }
            if gauges_at.is_none_or(|at| at.elapsed() >= GAUGE_INTERVAL) {
                inner.refresh_gauges().await;
                gauges_at = Some(Instant::now());
            }
            if pruned_at.elapsed() >= config.artifacts.prune_interval {
                inner.prune_artifacts(config).await;
                pruned_at = Instant::now();
            }
            tokio::select! {
                _ = inner.service.woken() => {}
                _ = tokio::time::sleep(config.runs.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        inner.stop(tasks).await;
    }
}

impl Inner {
    fn backoff(config: &Config) -> Backoff {
        Backoff {
            base: config.runs.backoff_base,
            max: config.runs.backoff_max,
        }
    }

    /// A graceful stop: running runs get the grace period, then go back to the queue.
    async fn stop(&self, mut tasks: JoinSet<()>) {
        if tasks.is_empty() {
            return;
        }
        tracing::info!(
            running = tasks.len(),
            "run workers stopping: running runs get the grace period to finish"
        );
        // Leave the last quarter of the grace period to put the rest back.
        let finish_within = self.grace.mul_f64(0.75);
        let all_done = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(finish_within, all_done).await.is_ok() {
            return;
        }
        tracing::info!(
            left = tasks.len(),
            "grace period over: putting unfinished runs back in the queue"
        );
        self.service.signal_all(Control::Release);
        let released = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(2), released)
            .await
            .is_err()
        {
            tracing::warn!("some runs could not be put back in time; their leases will expire");
        }
    }

    /// After a restart the provider keys of queued BYOK runs are gone: those runs cannot run.
    async fn fail_runs_whose_key_is_lost(&self) {
        let service = &self.service;
        let Ok(ids) = service.with_queue(|q| q.queued_byok()).await else {
            return;
        };
        for id in ids.into_iter().filter(|id| service.byok.get(id).is_none()) {
            let now = self.clock.now_ms();
            let failed = service
                .with_queue(move |q| q.fail_queued(&id, key_lost(), now))
                .await;
            if let Ok(Some(run)) = failed {
                tracing::warn!(run = %run.id, "BYOK run failed: its key was lost in a restart");
                self.finished(&run);
            }
        }
    }

    async fn expire_leases(&self, config: &Config) {
        let (now, backoff) = (self.clock.now_ms(), Self::backoff(config));
        let expired = match self
            .service
            .with_queue(move |q| q.expire_leases(now, &backoff))
            .await
        {
            Ok(expired) => expired,
            Err(_) => return,
        };
        for expired in expired {
            match expired {
                Expired::Requeued(run) => {
                    tracing::warn!(run = %run.id, attempts = run.attempts, "run's lease expired: queued again");
                    self.service.announce(&run);
                    self.service.wake();
                }
                Expired::Dead(run) => {
                    tracing::warn!(run = %run.id, attempts = run.attempts, "run's lease expired with no attempts left: dead");
                    self.finished(&run);
                }
                Expired::Canceled(run) => self.finished(&run),
            }
        }
    }

    /// Claims the next run this process may start: the owner's tier caps their runs at once.
    async fn claim(&self, snapshot: &Arc<Snapshot>) -> Option<Claimed> {
        let snapshot = snapshot.clone();
        let lease = snapshot.config.runs.lease;
        let now = self.clock.now_ms();
        let billing = self.billing.clone();
        let claimed = self
            .service
            .with_queue(move |q| {
                let config = &snapshot.config;
                let plans = billing.plans.load();
                let mut admit = |candidate: &Candidate| {
                    let (_, tier) = billing::resolve_tier(
                        config,
                        &plans,
                        candidate.owner,
                        Some(candidate.tier),
                        now,
                    );
                    candidate.running_for_owner < tier.max_concurrent_runs
                };
                q.claim(now, lease, &mut admit)
            })
            .await
            .ok()??;
        Some(claimed)
    }

    /// Works one claimed run to the end of its attempt.
    async fn work(self: Arc<Self>, claimed: Claimed) {
        let Claimed { run, lease } = claimed;
        let control = self.service.start_working(&run);
        self.service.announce(&run);
        tracing::info!(run = %run.id, tenant = %run.tenant_id, attempt = run.attempts, "run started");
        let attempt = self.attempt(&run, &lease, control).await;
        self.service.stop_working(&run.id);
        let config = self.live.load_full().config.clone();
        let now = self.clock.now_ms();
        match attempt {
            Attempt::Finish(outcome) => {
                let backoff = Self::backoff(&config);
                let result = self
                    .service
                    .with_queue(move |q| q.finish(&lease, outcome, &backoff, now))
                    .await;
                match result {
                    Ok(Some(run)) if run.status == RunStatus::Queued => {
                        tracing::warn!(
                            run = %run.id,
                            attempt = run.attempts,
                            error = ?run.last_error.as_ref().map(|e| &e.code),
                            "run attempt failed: retried after backoff"
                        );
                        self.service.announce(&run);
                    }
                    Ok(Some(run)) => self.finished(&run),
                    Ok(None) => {
                        tracing::warn!(run = %run.id, "run's lease was lost: its result is dropped")
                    }
                    Err(_) => {}
                }
            }
            Attempt::Release => {
                let released = self
                    .service
                    .with_queue(move |q| q.release(&lease, now))
                    .await;
                if matches!(released, Ok(true)) {
                    tracing::info!(run = %run.id, "run put back in the queue");
                    if let Ok(Some(run)) = self
                        .service
                        .with_queue({
                            let id = run.id.clone();
                            move |q| q.get(&id)
                        })
                        .await
                    {
                        self.service.announce(&run);
                    }
                }
            }
            Attempt::LeaseLost => {
                tracing::warn!(run = %run.id, "run's lease was lost to another worker: stopped");
            }
        }
        // The next run may be waiting for this one's lane or slot.
        self.service.wake();
    }

    /// One attempt: checks, the node call, the artifacts. Stops early when told to, or when the
    /// lease is lost.
    async fn attempt(
        &self,
        run: &Run,
        lease: &Lease,
        mut control: watch::Receiver<Control>,
    ) -> Attempt {
        let config = self.live.load_full().config.clone();
        let now = self.clock.now_ms();
        if self.billing.lapsed(&config, &run.owner, now) {
            let message = match &config.stripe.upgrade_url {
                Some(url) => format!("The subscription of this tenant's owner is no longer active; renew it at {url}."),
                None => "The subscription of this tenant's owner is no longer active.".to_owned(),
            };
            return Attempt::Finish(Outcome::Failed(run_error("subscription_inactive", message)));
        }
        let key = match run.byok {
            true => match self.service.byok.get(&run.id) {
                Some(key) => Some(key),
                None => return Attempt::Finish(Outcome::Failed(key_lost())),
            },
            false => None,
        };
        let service = &self.service;
        let run_id = run.id.clone();
        let call = self.client.call(run, key.as_ref(), |text| {
            service.events.output(&run_id, text)
        });
        let timeout = Duration::from_millis(run.timeout_ms);
        let renewals = self.keep_lease(lease, config.runs.lease);
        tokio::select! {
            result = tokio::time::timeout(timeout, call) => match result {
                Err(_) => Attempt::Finish(Outcome::Retry(run_error(
                    "run_timeout",
                    format!("the attempt took longer than the template's timeout ({}s)", timeout.as_secs()),
                ))),
                Ok(Err(CallError::Retry(error))) => Attempt::Finish(Outcome::Retry(error)),
                Ok(Err(CallError::Fail(error))) => Attempt::Finish(Outcome::Failed(error)),
                Ok(Ok(answer)) => match self.store_artifacts(run, answer).await {
                    Ok(()) => Attempt::Finish(Outcome::Succeeded),
                    Err(e) => {
                        tracing::error!(run = %run.id, "could not store the run's artifacts: {e}");
                        Attempt::Finish(Outcome::Retry(run_error("artifact_write_failed", "the run's output could not be stored")))
                    }
                },
            },
            stop = renewals => stop,
            stop = told_to_stop(&mut control) => stop,
        }
    }

    /// Renews the lease every third of it; ends only when the run must stop.
    async fn keep_lease(&self, lease: &Lease, length: Duration) -> Attempt {
        loop {
            tokio::time::sleep(length / 3).await;
            let (lease, now) = (lease.clone(), self.clock.now_ms());
            match self
                .service
                .with_queue(move |q| q.renew(&lease, now, length))
                .await
            {
                Ok(Renewal::Held) | Err(_) => {}
                Ok(Renewal::CancelRequested) => return Attempt::Finish(Outcome::Canceled),
                Ok(Renewal::Lost) => return Attempt::LeaseLost,
            }
        }
    }

    async fn store_artifacts(
        &self,
        run: &Run,
        answer: super::output::NodeOutput,
    ) -> Result<(), String> {
        let artifacts = &self.service.artifacts;
        let response =
            serde_json::to_vec_pretty(&answer.response_json).map_err(|e| e.to_string())?;
        artifacts
            .put(&run.id, "response.json", Bytes::from(response))
            .await?;
        artifacts
            .put(&run.id, "output.md", Bytes::from(answer.text.into_bytes()))
            .await
    }

    /// A run reached its final state here: watchers, its key, and the metrics.
    fn finished(&self, run: &Run) {
        self.service.finished(run);
        let status = run.status.as_str();
        tracing::info!(run = %run.id, status, attempts = run.attempts, "run finished");
        self.metrics
            .runs_finished
            .with_label_values(&[status])
            .inc();
        let now = self.clock.now_ms();
        let seconds = now.saturating_sub(run.created_ms) as f64 / 1000.0;
        self.metrics
            .run_duration
            .with_label_values(&[status])
            .observe(seconds);
        self.metrics.run_attempts.observe(f64::from(run.attempts));
    }

    async fn refresh_gauges(&self) {
        if let Ok(counts) = self.service.with_queue(|q| q.counts_by_status()).await {
            for status in RunStatus::ALL {
                let count = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                let count = i64::try_from(count).unwrap_or(i64::MAX);
                self.metrics
                    .runs
                    .with_label_values(&[status.as_str()])
                    .set(count);
                if status == RunStatus::Queued {
                    self.metrics.run_queue_depth.set(count);
                }
            }
        }
    }

    /// Deletes the artifacts of runs that finished more than `artifacts.retention` ago.
    async fn prune_artifacts(&self, config: &Config) {
        let retention = config.artifacts.retention.as_millis() as u64;
        let cutoff = self.clock.now_ms().saturating_sub(retention);
        let Ok(ids) = self
            .service
            .with_queue(move |q| q.finished_before(cutoff, PRUNE_BATCH))
            .await
        else {
            return;
        };
        let mut pruned = Vec::with_capacity(ids.len());
        for id in ids {
            match self.service.artifacts.delete_run(&id).await {
                Ok(_) => pruned.push(id),
                Err(e) => tracing::warn!(run = %id, "could not prune the run's artifacts: {e}"),
            }
        }
        if !pruned.is_empty() {
            let count = pruned.len();
            if self
                .service
                .with_queue(move |q| q.mark_pruned(&pruned))
                .await
                .is_ok()
            {
                tracing::info!(runs = count, "old runs' artifacts pruned");
            }
        }
    }
}

/// Resolves when the run's worker is told to stop.
async fn told_to_stop(control: &mut watch::Receiver<Control>) -> Attempt {
    loop {
        match *control.borrow_and_update() {
            Control::Work => {}
            Control::Cancel => return Attempt::Finish(Outcome::Canceled),
            Control::Release => return Attempt::Release,
        }
        if control.changed().await.is_err() {
            // Nobody can tell us anything any more: keep working.
            std::future::pending::<()>().await;
        }
    }
}

fn key_lost() -> super::queue::RunError {
    run_error(
        "byok_key_lost",
        "This run's provider key is kept in memory only, while the run is pending, and it is gone \
         (the gateway restarted, or the run was retried after it ended): submit the run again \
         with your key.",
    )
}
