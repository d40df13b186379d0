//! The runs pages: a tenant's page, where its runs are listed and launched, and a run's page,
//! where one run is followed live to its end.
//!
//! | page | module |
//! |---|---|
//! | `GET /dashboard/tenants/{id}`: name, runtime, runs by status, a launch form per template | `tenant_page` |
//! | `POST /dashboard/tenants/{id}/runs`: the launch form | `tenant_page` |
//! | `GET /dashboard/runs/{id}`: status, input, output, artifacts, cancel | `run_page` |
//! | `GET /dashboard/runs/{id}/events`: the run's Server-Sent Events (`assets/runs.js` reads them) | `run_page` |
//! | `GET /dashboard/runs/{id}/artifacts/{name}`, `POST /dashboard/runs/{id}/cancel` | `run_page` |
//!
//! Every page works through the actions of `sidecar::runs` and `sidecar::tenants`, with the
//! signed-in user as the caller: the same gates, the same messages, the same 404 for anything
//! that is someone else's, and the one SSE stream of a run. What lives here is only how it looks.
//!
//! Not for: the tenant's skills and Telegram pages (they are linked from the tenant's page).

pub mod run_page;
pub mod tenant_page;

use crate::config::Config;
use crate::onboard::sheet::utc_label;
use crate::runs::queue::Run;

/// A run as a line of a list shows it.
pub struct RunLine {
    pub id: String,
    /// The template's name (its id, if the template left the config since).
    pub template: String,
    pub status: &'static str,
    pub created: String,
}

impl RunLine {
    pub fn of(run: &Run, config: &Config) -> RunLine {
        RunLine {
            id: run.id.clone(),
            template: template_name(config, &run.template),
            status: run.status.as_str(),
            created: utc_label(run.created_ms),
        }
    }
}

/// What a page calls a template: its name, or its id once the operator removed it.
pub fn template_name(config: &Config, id: &str) -> String {
    config
        .templates
        .get(id)
        .map_or_else(|| id.to_owned(), |t| t.name.clone())
}
