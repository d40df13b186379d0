//! Which agent and which session an OpenAI-style request lands in, the way an OpenClaw gateway
//! decides it, and how many turns each session has had.
//!
//! An OpenClaw gateway picks the agent from the `x-openclaw-agent-id` header, else from the
//! request's `model` (`openclaw/<agentId>`, `openclaw:<agentId>`, `agent:<agentId>`), else the
//! default agent `main`. It picks the session from the `x-openclaw-session-key` header (the key
//! as is), else from the OpenAI body field `user` (`agent:<agentId>:openai-user:<user>`); a
//! request with neither opens a session of its own. The mock does the same, so a gateway in front
//! of it can be tested for keeping those headers and fields intact. It is not a conversation
//! store: a session here is only a turn count.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;

/// The request header that names the agent.
pub const AGENT_HEADER: &str = "x-openclaw-agent-id";
/// The request header that names the session key.
pub const SESSION_HEADER: &str = "x-openclaw-session-key";
/// The response headers in which the mock reports the agent, the session key and the session's
/// turns (this request included). A real OpenClaw node does not send them.
pub const AGENT_REPORT_HEADER: &str = "x-mock-agent";
pub const SESSION_REPORT_HEADER: &str = "x-mock-session";
pub const TURNS_REPORT_HEADER: &str = "x-mock-session-turns";
/// The agent a request gets when it names none.
pub const DEFAULT_AGENT: &str = "main";

/// Past this many sessions the count starts again from empty, so a mock that runs for days
/// (`exoclaw mock-node`) keeps its memory bounded. Tests never come near it.
const MAX_TRACKED_SESSIONS: usize = 100_000;

/// The agent and session a request was routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRoute {
    pub agent: String,
    pub session_key: String,
}

impl SessionRoute {
    /// Routes a request from its headers, its `model` and its `user` field.
    pub fn resolve(headers: &HeaderMap, model: &str, user: Option<&str>) -> SessionRoute {
        let agent = header_text(headers, AGENT_HEADER)
            .map(str::to_owned)
            .unwrap_or_else(|| agent_from_model(model));
        let session_key = match (header_text(headers, SESSION_HEADER), non_empty(user)) {
            (Some(key), _) => key.to_owned(),
            (None, Some(user)) => format!("agent:{agent}:openai-user:{user}"),
            (None, None) => format!(
                "agent:{agent}:http:{}",
                &crate::headers::new_request_id()[4..]
            ),
        };
        SessionRoute { agent, session_key }
    }
}

/// The agent a `model` names: `openclaw/<id>`, `openclaw:<id>` or `agent:<id>`; anything else
/// (`openclaw`, `openclaw/default`, `gpt-4o`) means the default agent.
pub fn agent_from_model(model: &str) -> String {
    let named = ["openclaw/", "openclaw:", "agent:"]
        .iter()
        .find_map(|prefix| model.trim().strip_prefix(prefix))
        .map(str::trim)
        .filter(|id| !id.is_empty() && *id != "default");
    named.unwrap_or(DEFAULT_AGENT).to_owned()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    non_empty(headers.get(name)?.to_str().ok())
}

fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// Turns per session key, for at most `limit` keys: a new key past the limit starts the count
/// again from empty (so an old session may count from 1 again, which a mock can afford).
pub struct SessionTurns {
    turns: Mutex<HashMap<String, u64>>,
    limit: usize,
}

impl Default for SessionTurns {
    fn default() -> SessionTurns {
        SessionTurns::with_limit(MAX_TRACKED_SESSIONS)
    }
}

impl SessionTurns {
    pub fn with_limit(limit: usize) -> SessionTurns {
        SessionTurns {
            turns: Mutex::new(HashMap::new()),
            limit,
        }
    }

    /// Counts one more turn of `key` and returns its turns so far, this one included.
    pub fn record_turn(&self, key: &str) -> u64 {
        let Ok(mut turns) = self.turns.lock() else {
            return 1;
        };
        if turns.len() >= self.limit && !turns.contains_key(key) {
            turns.clear();
        }
        let count = turns.entry(key.to_owned()).or_insert(0);
        *count += 1;
        *count
    }

    /// The turns `key` has had (0: none yet).
    pub fn turns(&self, key: &str) -> u64 {
        self.turns
            .lock()
            .ok()
            .and_then(|turns| turns.get(key).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn model_names_the_agent_in_each_spelling_and_defaults_to_main() {
        assert_eq!(agent_from_model("openclaw/beta"), "beta");
        assert_eq!(agent_from_model("openclaw:beta"), "beta");
        assert_eq!(agent_from_model("agent:beta"), "beta");
        for model in ["openclaw", "openclaw/default", "openclaw/", "gpt-4o", ""] {
            assert_eq!(agent_from_model(model), "main", "{model:?}");
        }
    }

    #[test]
    fn agent_header_wins_over_model() {
        let route = SessionRoute::resolve(
            &headers(&[(AGENT_HEADER, "ops")]),
            "openclaw/beta",
            Some("u1"),
        );
        assert_eq!(route.agent, "ops");
        assert_eq!(route.session_key, "agent:ops:openai-user:u1");
    }

    #[test]
    fn session_header_is_the_key_as_is_and_wins_over_user() {
        let route = SessionRoute::resolve(
            &headers(&[(SESSION_HEADER, "my-own-key")]),
            "openclaw/beta",
            Some("u1"),
        );
        assert_eq!(route.agent, "beta");
        assert_eq!(route.session_key, "my-own-key");
    }

    #[test]
    fn user_field_makes_a_per_agent_key() {
        let route = SessionRoute::resolve(&HeaderMap::new(), "openclaw", Some("alice"));
        assert_eq!(
            route,
            SessionRoute {
                agent: "main".into(),
                session_key: "agent:main:openai-user:alice".into(),
            }
        );
    }

    #[test]
    fn without_header_or_user_every_request_gets_a_new_session() {
        let first = SessionRoute::resolve(&HeaderMap::new(), "openclaw/beta", None);
        let second = SessionRoute::resolve(&HeaderMap::new(), "openclaw/beta", Some("  "));
        assert!(
            first.session_key.starts_with("agent:beta:http:"),
            "{first:?}"
        );
        assert_ne!(first.session_key, second.session_key);
    }

    #[test]
    fn turns_count_per_key() {
        let sessions = SessionTurns::default();
        assert_eq!(sessions.turns("a"), 0);
        assert_eq!(sessions.record_turn("a"), 1);
        assert_eq!(sessions.record_turn("a"), 2);
        assert_eq!(sessions.record_turn("b"), 1);
        assert_eq!(sessions.turns("a"), 2);
    }

    #[test]
    fn a_new_key_past_the_limit_starts_the_count_afresh() {
        let sessions = SessionTurns::with_limit(2);
        sessions.record_turn("a");
        sessions.record_turn("b");
        assert_eq!(sessions.record_turn("b"), 2, "a known key does not clear");
        assert_eq!(sessions.record_turn("c"), 1);
        assert_eq!(sessions.turns("a"), 0, "the old keys are gone");
        assert_eq!(sessions.turns("b"), 0);
    }
}
