//! `/`: the live monitor — requests and tokens per user over a recent window, kept current by
//! `admin.js` from `/usage.json` (the seed's `watch … SELECT user_id, COUNT(*),
//! SUM(total_tokens) … GROUP BY user_id`, and what `exoclaw usage --watch` prints) — with how
//! the latest config reload went and a line on nodes and runs.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::live::{Column, Format, LiveTable};
use super::{Nav, PageError};
use crate::admin::session::Operator;
use crate::admin::AdminApp;
use crate::api_error::ApiError;
use crate::dashboard::render;
use crate::onboard::sheet::utc_label;
use crate::reload::ReloadOutcome;
use crate::runs::queue::RunStatus;

/// The windows offered; any duration `exoclaw usage --since` takes works in the address.
const WINDOWS: [&str; 4] = ["1m", "5m", "1h", "24h"];

const USAGE_COLUMNS: &[Column] = &[
    Column {
        field: "user_id",
        title: "User",
        format: Format::Text,
    },
    Column {
        field: "requests",
        title: "Requests",
        format: Format::Text,
    },
    Column {
        field: "total_tokens",
        title: "Tokens",
        format: Format::Text,
    },
    Column {
        field: "errors",
        title: "Errors",
        format: Format::Text,
    },
    Column {
        field: "avg_latency_ms",
        title: "Avg ms",
        format: Format::Whole,
    },
    Column {
        field: "last_seen",
        title: "Last seen (UTC)",
        format: Format::Text,
    },
];

#[derive(Deserialize)]
pub struct Window {
    #[serde(default = "five_minutes")]
    since: String,
}

fn five_minutes() -> String {
    "5m".to_owned()
}

/// The latest reload as the page shows it.
pub struct ReloadView {
    pub when: String,
    pub trigger: String,
    pub ok: bool,
    pub error: String,
}

impl ReloadView {
    fn of(outcome: &ReloadOutcome) -> ReloadView {
        ReloadView {
            when: utc_label(outcome.at_ms),
            trigger: outcome.trigger.clone(),
            ok: outcome.error.is_none(),
            error: outcome.error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "admin_overview.html")]
struct Overview {
    nav: Option<Nav>,
    since: String,
    windows: &'static [&'static str],
    usage: LiveTable,
    reload: Option<ReloadView>,
    nodes_up: usize,
    nodes: usize,
    runs_queued: u64,
    runs_running: u64,
}

/// `GET /?since=5m`.
pub async fn page(
    State(app): State<Arc<AdminApp>>,
    operator: Operator,
    Query(Window { since }): Query<Window>,
) -> Result<Response, PageError> {
    let users = serde_json::to_value(app.usage(&since).await?).unwrap_or_default();
    let items = users.as_array().map(Vec::as_slice).unwrap_or_default();
    let usage = LiveTable::new(
        "usage",
        format!("/usage.json?since={since}"),
        "users",
        "user_id",
        USAGE_COLUMNS,
        items,
    )
    .empty(format!("No request in the last {since}."));
    let nodes = app.nodes();
    let counts = app.runs.with_queue(|q| q.counts_by_status()).await?;
    let count = |status: RunStatus| {
        counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n)
    };
    Ok(render(&Overview {
        nav: Nav::of(&operator, "usage"),
        windows: &WINDOWS,
        usage,
        reload: app.last_reload.get().as_deref().map(ReloadView::of),
        nodes_up: nodes.iter().filter(|n| n["healthy"] == true).count(),
        nodes: nodes.len(),
        runs_queued: count(RunStatus::Queued),
        runs_running: count(RunStatus::Running),
        since,
    }))
}

/// `GET /usage.json?since=5m`: what `/admin/usage` answers, for the signed-in page.
pub async fn usage_json(
    State(app): State<Arc<AdminApp>>,
    _: Operator,
    Query(Window { since }): Query<Window>,
) -> Result<Response, ApiError> {
    let users: Value = serde_json::to_value(app.usage(&since).await?).unwrap_or_default();
    Ok(crate::sidecar::extract::json(
        200,
        json!({ "since": since, "users": users }),
    ))
}
