//! `exoclaw runs …` and `exoclaw tenants …`: the operator's view of the agent service, on the
//! database named by the config. A running gateway sees every change: a canceled running run
//! is stopped by its worker at the next lease renewal, a retried run is claimed at the next
//! poll.

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::ledger;
use crate::runs::queue::{self, CancelOutcome, RunFilter, RunQueue, RunStatus, SqliteQueue};
use crate::runs::run_json;
use crate::tenants::store as tenant_store;

fn open_queue(config: &Config) -> Result<SqliteQueue, String> {
    ledger::open(&config.database)?;
    SqliteQueue::open(&config.database)
}

fn queue_error(e: queue::QueueError) -> String {
    e.to_string()
}

/// `exoclaw runs list [--status S] [--tenant T] [--owner U] [--limit N] [--json]`.
pub fn runs_list(
    config: &Config,
    status: Option<&str>,
    tenant: Option<&str>,
    owner: Option<&str>,
    limit: u32,
    as_json: bool,
) -> Result<(), String> {
    let queue = open_queue(config)?;
    let status = status
        .map(|s| {
            s.parse::<RunStatus>().map_err(|_| {
                format!("`{s}` is not a run status (queued, running, succeeded, failed, canceled, dead)")
            })
        })
        .transpose()?;
    let filter = RunFilter {
        owner: owner.map(str::to_owned),
        tenant_id: tenant.map(str::to_owned),
        status,
        limit: limit.clamp(1, 100),
        before_seq: None,
    };
    let page = queue.list(&filter).map_err(queue_error)?;
    let now = SystemClock.now_ms();
    if as_json {
        let runs: Vec<_> = page.runs.iter().map(|r| run_json(r, now)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let counts = queue.counts_by_status().map_err(queue_error)?;
    let summary: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| format!("{n} {s}"))
        .collect();
    println!(
        "Runs: {}",
        if summary.is_empty() {
            "none".to_owned()
        } else {
            summary.join(", ")
        }
    );
    println!(
        "{:<31} {:<24} {:<16} {:<14} {:<10} {:>8}  ERROR",
        "ID", "TENANT", "OWNER", "TEMPLATE", "STATUS", "ATTEMPTS"
    );
    for run in &page.runs {
        println!(
            "{:<31} {:<24} {:<16} {:<14} {:<10} {:>4}/{:<3}  {}",
            run.id,
            run.tenant_id,
            run.owner,
            run.template,
            run.status.as_str(),
            run.attempts,
            run.max_attempts,
            run.last_error.as_ref().map_or("", |e| e.code.as_str()),
        );
    }
    Ok(())
}

/// `exoclaw runs show ID`: the run as JSON.
pub fn runs_show(config: &Config, id: &str) -> Result<(), String> {
    let queue = open_queue(config)?;
    let run = queue
        .get(id)
        .map_err(queue_error)?
        .ok_or_else(|| format!("no run `{id}`"))?;
    let text = serde_json::to_string_pretty(&run_json(&run, SystemClock.now_ms()))
        .map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// `exoclaw runs cancel ID`.
pub fn runs_cancel(config: &Config, id: &str) -> Result<(), String> {
    let queue = open_queue(config)?;
    match queue
        .cancel(id, SystemClock.now_ms())
        .map_err(queue_error)?
    {
        CancelOutcome::Canceled(run) => println!("{}: canceled", run.id),
        CancelOutcome::Requested(run) => println!(
            "{}: running; its worker stops it at its next lease renewal",
            run.id
        ),
        CancelOutcome::AlreadyFinished(run) => {
            return Err(format!("{} already ended: it is {}", run.id, run.status))
        }
        CancelOutcome::NotFound => return Err(format!("no run `{id}`")),
    }
    Ok(())
}

/// `exoclaw runs retry ID`: a failed, dead or canceled run is queued again.
pub fn runs_retry(config: &Config, id: &str) -> Result<(), String> {
    let queue = open_queue(config)?;
    match queue.retry(id, SystemClock.now_ms()).map_err(queue_error)? {
        Some(run) => {
            println!("{}: queued again (attempts start over)", run.id);
            Ok(())
        }
        None => match queue.get(id).map_err(queue_error)? {
            Some(run) => Err(format!(
                "{} is {}: only a failed, dead or canceled run can be retried",
                run.id, run.status
            )),
            None => Err(format!("no run `{id}`")),
        },
    }
}

/// `exoclaw tenants list [--json]`.
pub fn tenants_list(config: &Config, as_json: bool) -> Result<(), String> {
    let conn = ledger::open(&config.database)?;
    let tenants = tenant_store::list_all(&conn).map_err(|e| format!("cannot list tenants: {e}"))?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&tenants).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!("{:<24} {:<20} {:<14} NAME", "ID", "OWNER", "PINNED POOL");
    for t in tenants {
        println!(
            "{:<24} {:<20} {:<14} {}",
            t.id,
            t.owner,
            t.pool.as_deref().unwrap_or("-"),
            t.name
        );
    }
    Ok(())
}

/// `exoclaw tenants pin ID --pool P` / `tenants unpin ID`: where the tenant's runs go.
pub fn tenants_pin(config: &Config, id: &str, pool: Option<&str>) -> Result<(), String> {
    if let Some(pool) = pool {
        if !config.pools.contains_key(pool) {
            let known: Vec<&str> = config.pools.keys().map(String::as_str).collect();
            return Err(format!(
                "`{pool}` is not a pool (pools: {})",
                known.join(", ")
            ));
        }
    }
    let conn = ledger::open(&config.database)?;
    let pinned = tenant_store::pin(&conn, id, pool, SystemClock.now_ms())
        .map_err(|e| format!("cannot pin the tenant: {e}"))?;
    if !pinned {
        return Err(format!("no tenant `{id}`"));
    }
    match pool {
        Some(pool) => println!("{id}: new runs go to pool `{pool}`"),
        None => println!("{id}: new runs go to the owner's tier's pool"),
    }
    Ok(())
}
