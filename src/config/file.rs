//! The config file as operators write it: YAML mapped one-to-one onto serde structs.
//!
//! Every struct rejects unknown keys, so a typo (`listn:`) is an error that names the key instead
//! of a setting silently ignored. Values stay raw here (strings for addresses, durations and
//! sizes); `config::validate` turns them into the checked structure the rest of the code uses.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub server: ServerSection,
    pub database: Option<String>,
    pub pools: BTreeMap<String, PoolSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    pub listen: String,
    pub threads: Option<usize>,
    pub max_request_body: Option<SizeValue>,
    pub grace_period: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    pub nodes: Vec<NodeSection>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
    pub addr: String,
    pub weight: Option<usize>,
}

/// A size is either a byte count (`1048576`) or text with a unit (`1MiB`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}
