//! Prometheus metrics: one registry, served by the admin listener at `/metrics`.
//!
//! Counters and histograms move on the request path (atomic adds, no locks held across awaits);
//! gauges that mirror other state (node health, in-flight counts, the ledger queue) are read at
//! scrape time. No label carries a user id, a key or anything a client chooses freely: labels
//! are route classes, pools, nodes, statuses and fixed reasons.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::ledger::writer::LedgerStats;
use crate::state::Snapshot;

/// Buckets from 5 ms to 5 minutes: LLM answers take seconds to minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// A run's life: from a second (a quick answer) to hours (backoff, long agents).
const RUN_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0,
];
/// The gateway's own time: microseconds to a few hundred milliseconds.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    pub overhead: Histogram,
    pub stream_first_byte: Histogram,
    pub tokens: IntCounterVec,
    pub rejections: IntCounterVec,
    pub webhooks: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Anonymous requests whose ledger row was not written (over the per-address budget).
    pub ledger_rows_suppressed: IntCounter,
    node_up: IntGaugeVec,
    node_inflight: IntGaugeVec,
    node_ejections: IntGaugeVec,
    node_errors: IntGaugeVec,
    pool_waiting: IntGaugeVec,
    ledger_queue: IntGauge,
    ledger_written: IntGauge,
    ledger_dropped: IntGauge,
    log_dropped: IntGauge,
    ledger_write_errors: IntGauge,
    /// Agent runs by status, refreshed by the run workers from the queue.
    pub runs: IntGaugeVec,
    /// Runs waiting to be claimed.
    pub run_queue_depth: IntGauge,
    /// Runs that reached a final state, by that state (`dead`: attempts spent).
    pub runs_finished: IntCounterVec,
    /// Time from a run's acceptance to its final state.
    pub run_duration: HistogramVec,
    /// Attempts a run took, counted when it finished.
    pub run_attempts: Histogram,
    /// Telegram updates at the webhook, by what became of them.
    pub telegram_updates: IntCounterVec,
    /// Messages the bot tried to send, by outcome.
    pub telegram_messages: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let single_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram_vec = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let build_info = gauge(
            "exoclaw_build_info",
            "Build information; the value is always 1.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Metrics {
            requests: counter(
                "exoclaw_requests_total",
                "Requests by route class, pool and status.",
                &["route", "pool", "status"],
            ),
            request_duration: histogram_vec(
                "exoclaw_request_duration_seconds",
                "Time from request arrival to the end of the response.",
                &["route"],
                LATENCY_BUCKETS,
            ),
            upstream_duration: histogram_vec(
                "exoclaw_upstream_duration_seconds",
                "Time from choosing a node to the end of its response.",
                &["pool"],
                LATENCY_BUCKETS,
            ),
            overhead: histogram(
                "exoclaw_gateway_overhead_seconds",
                "Request time minus node time: what the gateway itself adds.",
                OVERHEAD_BUCKETS,
            ),
            stream_first_byte: histogram(
                "exoclaw_stream_first_byte_seconds",
                "Time from request arrival to the first byte of a streamed answer.",
                LATENCY_BUCKETS,
            ),
            tokens: counter(
                "exoclaw_tokens_total",
                "Tokens accounted, by type (prompt, completion) and source (reported, estimated).",
                &["type", "source"],
            ),
            rejections: counter(
                "exoclaw_rejections_total",
                "Requests the gateway refused, by reason.",
                &["reason"],
            ),
            webhooks: counter(
                "exoclaw_webhooks_total",
                "Stripe webhooks by event type and outcome.",
                &["type", "result"],
            ),
            config_reloads: counter(
                "exoclaw_config_reloads_total",
                "Configuration reloads by result (ok, invalid, failed: building the new config panicked).",
                &["result"],
            ),
            ledger_rows_suppressed: {
                let c = IntCounter::new(
                    "exoclaw_ledger_rows_suppressed_total",
                    "Anonymous requests not written to the ledger: their address was over its \
                     per-minute budget of rows.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("metric registered once");
                c
            },
            node_up: gauge(
                "exoclaw_node_up",
                "1 when the node is healthy, 0 when ejected.",
                &["pool", "node"],
            ),
            node_inflight: gauge(
                "exoclaw_node_inflight",
                "Requests in flight on the node.",
                &["pool", "node"],
            ),
            node_ejections: gauge(
                "exoclaw_node_ejections",
                "Times the node was ejected since the gateway started.",
                &["pool", "node"],
            ),
            node_errors: gauge(
                "exoclaw_node_errors",
                "Failed checks and connections of the node since the gateway started.",
                &["pool", "node"],
            ),
            pool_waiting: gauge(
                "exoclaw_admission_waiting",
                "Requests waiting for a free slot on the pool's nodes.",
                &["pool"],
            ),
            ledger_queue: single_gauge(
                "exoclaw_ledger_queue_depth",
                "Ledger rows accepted but not yet committed.",
            ),
            ledger_written: single_gauge(
                "exoclaw_ledger_rows_written",
                "Ledger rows committed since start.",
            ),
            ledger_dropped: single_gauge(
                "exoclaw_ledger_rows_dropped",
                "Ledger rows dropped because the queue was full, since start.",
            ),
            log_dropped: single_gauge(
                "exoclaw_log_lines_dropped",
                "Log lines dropped because the log writer's queue was full, since start.",
            ),
            ledger_write_errors: single_gauge(
                "exoclaw_ledger_write_errors",
                "Failed ledger write attempts (each retried) since start.",
            ),
            runs: gauge(
                "exoclaw_runs",
                "Agent runs in the queue's store, by status.",
                &["status"],
            ),
            run_queue_depth: single_gauge(
                "exoclaw_run_queue_depth",
                "Agent runs queued and not yet claimed by a worker.",
            ),
            runs_finished: counter(
                "exoclaw_runs_finished_total",
                "Agent runs that reached a final state, by state (dead: every attempt failed).",
                &["status"],
            ),
            run_duration: histogram_vec(
                "exoclaw_run_duration_seconds",
                "Time from a run's acceptance to its final state.",
                &["status"],
                RUN_BUCKETS,
            ),
            run_attempts: histogram(
                "exoclaw_run_attempts",
                "Attempts a finished run took.",
                &[1.0, 2.0, 3.0, 5.0, 10.0, 20.0],
            ),
            telegram_updates: counter(
                "exoclaw_telegram_updates_total",
                "Telegram webhook calls by result (accepted, duplicate, ignored, invalid, unauthorized).",
                &["result"],
            ),
            telegram_messages: counter(
                "exoclaw_telegram_messages_total",
                "Bot messages by outcome (sent, retried: a 429 or a failure to reach Telegram, dropped: refused for good).",
                &["result"],
            ),
            registry,
        }
    }

    /// The Prometheus text exposition, after refreshing the gauges that mirror other state.
    pub fn render(&self, snapshot: &Snapshot, ledger: LedgerStats) -> String {
        for pool in snapshot.pools.iter() {
            self.pool_waiting
                .with_label_values(&[pool.name()])
                .set(i64::try_from(pool.queue().waiting()).unwrap_or(i64::MAX));
            for node in pool.nodes() {
                let labels = [pool.name(), node.config.name.as_str()];
                let report = node.report();
                let number = |key: &str| report[key].as_i64().unwrap_or(0);
                self.node_up
                    .with_label_values(&labels)
                    .set(i64::from(node.is_healthy()));
                self.node_inflight
                    .with_label_values(&labels)
                    .set(i64::from(node.inflight()));
                self.node_ejections
                    .with_label_values(&labels)
                    .set(number("ejections"));
                self.node_errors
                    .with_label_values(&labels)
                    .set(number("errors"));
            }
        }
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.ledger_queue.set(as_i64(ledger.queued));
        self.ledger_written.set(as_i64(ledger.written));
        self.ledger_dropped.set(as_i64(ledger.dropped));
        self.ledger_write_errors.set(as_i64(ledger.write_errors));
        self.log_dropped
            .set(as_i64(crate::logging::dropped_lines()));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("cannot encode metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
