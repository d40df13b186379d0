//! `/nodes`: every pool's nodes and their health — up or down, requests in flight, ejections,
//! errors, the last error — kept current by `admin.js` from `/nodes.json` (what `/admin/nodes`
//! answers).

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::live::{Column, Format, LiveTable};
use super::{Nav, PageError};
use crate::admin::session::Operator;
use crate::admin::AdminApp;
use crate::dashboard::render;

const NODE_COLUMNS: &[Column] = &[
    Column {
        field: "name",
        title: "Node",
        format: Format::Text,
    },
    Column {
        field: "healthy",
        title: "Health",
        format: Format::UpDown,
    },
    Column {
        field: "inflight",
        title: "In flight",
        format: Format::Text,
    },
    Column {
        field: "max_inflight",
        title: "Max",
        format: Format::Text,
    },
    Column {
        field: "ejections",
        title: "Ejections",
        format: Format::Text,
    },
    Column {
        field: "errors",
        title: "Errors",
        format: Format::Text,
    },
    Column {
        field: "consecutive_failures",
        title: "Failing in a row",
        format: Format::Text,
    },
    Column {
        field: "addr",
        title: "Address",
        format: Format::Text,
    },
    Column {
        field: "last_error",
        title: "Last error",
        format: Format::Text,
    },
];

pub struct PoolView {
    pub name: String,
    pub nodes: LiveTable,
}

#[derive(Template)]
#[template(path = "admin_nodes.html")]
struct Nodes {
    nav: Option<Nav>,
    pools: Vec<PoolView>,
}

/// `GET /nodes`.
pub async fn page(
    State(app): State<Arc<AdminApp>>,
    operator: Operator,
) -> Result<Response, PageError> {
    let reports = app.nodes();
    let names: Vec<String> = app
        .live
        .load()
        .pools
        .iter()
        .map(|pool| pool.name().to_owned())
        .collect();
    let pools = names
        .into_iter()
        .map(|name| PoolView {
            nodes: LiveTable::new(
                format!("pool-{name}"),
                "/nodes.json",
                "nodes",
                "name",
                NODE_COLUMNS,
                &[],
            )
            .only("pool", name.clone(), &reports)
            .empty("This pool has no node."),
            name,
        })
        .collect();
    Ok(render(&Nodes {
        nav: Nav::of(&operator, "nodes"),
        pools,
    }))
}

/// `GET /nodes.json`: what `/admin/nodes` answers, for the signed-in page.
pub async fn nodes_json(State(app): State<Arc<AdminApp>>, _: Operator) -> Response {
    crate::sidecar::extract::json(200, json!({ "nodes": app.nodes() }))
}
