//! ExoClaw: a programmable gateway in front of OpenClaw agent nodes, built on Pingora.
//!
//! The binary (`main.rs`) is a thin command line over this library; integration tests and
//! benchmarks use the library directly for the mock node and the pure request-path steps.

pub mod admin;
pub mod api_error;
pub mod auth;
pub mod billing;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dashboard;
pub mod demo;
pub mod headers;
pub mod http_client;
pub mod ledger;
pub mod limits;
pub mod local_http;
pub mod logging;
pub mod metrics;
pub mod mock;
pub mod onboard;
pub mod proxy;
pub mod reload;
pub mod runs;
pub mod server;
pub mod sidecar;
pub mod skills;
pub mod state;
pub mod telegram;
pub mod tenants;
pub mod upstream;
pub mod usage;
