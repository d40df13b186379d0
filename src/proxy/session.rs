//! Which OpenClaw session a request lands in: always the gateway's choice, never the client's.
//!
//! A node is one trust boundary: whoever names a session on it gets that session. So the
//! gateway drops every session name a client sends (`x-openclaw-session-key`, and the OpenAI
//! `user` field as sent) and names the session itself, from the authenticated user:
//!
//! - `per_user` (the default): one session per user, `exoclaw:<user>:<digest>`. A client that
//!   keeps several conversations of its own names them with the OpenAI `user` field or the
//!   `X-Session-Id` header; that name is namespaced under the user
//!   (`exoclaw:<user>/<name>:<digest>`), never taken as is. The digest (SHA-256 over the exact
//!   user id and name) keeps two users apart even on a node that folds case or reads `:` and
//!   `/` as separators; the readable part is for operators looking at the node's sessions.
//! - `per_request`: no session is named and the `user` field is removed, so the node opens a
//!   fresh session for every request.
//!
//! Not for: choosing the agent (`model: "openclaw/<agent>"` passes through; an agent is not a
//! session).

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;
use crate::config::SessionMode;
use crate::headers;

/// The session decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChoice {
    /// The `x-openclaw-session-key` to send (None: send none).
    pub key: Option<String>,
    /// What the node's body carries as `user`.
    pub body_user: BodyUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyUser {
    /// The client sent no `user`: nothing to change.
    Untouched,
    /// Replace the client's `user` with this.
    Replace(String),
    /// Remove the client's `user`.
    Remove,
}

/// The sub-session a client asked for: `X-Session-Id`, else the body's `user`.
pub fn requested_sub_session(
    header: Option<&[u8]>,
    body_user: &UserField,
) -> Result<Option<String>, ApiError> {
    let invalid = |what: &str| {
        ApiError::invalid_request(
            "invalid_session_name",
            format!("{what} must be 1-128 characters of A-Z a-z 0-9 - _ . : @"),
        )
    };
    if let Some(value) = header {
        return match headers::is_well_formed_id(value) {
            true => Ok(Some(String::from_utf8_lossy(value).into_owned())),
            false => Err(invalid("X-Session-Id")),
        };
    }
    match body_user {
        UserField::Absent => Ok(None),
        UserField::Text(text) if headers::is_well_formed_id(text.as_bytes()) => {
            Ok(Some(text.clone()))
        }
        UserField::Text(_) | UserField::NotText => Err(invalid("The `user` field")),
    }
}

/// Decides the session for `user`'s request; `client_sent_user` says whether its body holds a
/// `user` member (which must then be rewritten or removed).
pub fn choose(
    mode: SessionMode,
    user: &str,
    sub_session: Option<&str>,
    client_sent_user: bool,
) -> SessionChoice {
    match mode {
        SessionMode::PerUser => {
            let key = session_key(user, sub_session);
            let body_user = if client_sent_user {
                BodyUser::Replace(key.clone())
            } else {
                BodyUser::Untouched
            };
            SessionChoice {
                key: Some(key),
                body_user,
            }
        }
        SessionMode::PerRequest => SessionChoice {
            key: None,
            body_user: if client_sent_user {
                BodyUser::Remove
            } else {
                BodyUser::Untouched
            },
        },
    }
}

/// `exoclaw:<user>[/<sub>]:<digest>`; `user` and `sub` are well-formed ids (header-safe).
pub fn session_key(user: &str, sub_session: Option<&str>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"exoclaw session\0");
    hasher.update(user.as_bytes());
    if let Some(sub) = sub_session {
        hasher.update(b"\0");
        hasher.update(sub.as_bytes());
    }
    let digest = hex::encode(&hasher.finalize()[..16]);
    match sub_session {
        Some(sub) => format!("exoclaw:{user}/{sub}:{digest}"),
        None => format!("exoclaw:{user}:{digest}"),
    }
}

/// The `user` member of a request body, as a node would read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserField {
    /// Not there (or the body is not a JSON object: the node refuses it itself).
    Absent,
    Text(String),
    /// There, but not a string.
    NotText,
}

/// Reads `user` the way JavaScript's `JSON.parse` would: the last of duplicate keys wins, and
/// an escaped key (`"\u0075ser"`) is the same key.
pub fn user_field(body: &[u8]) -> UserField {
    if !might_hold_user(body) {
        return UserField::Absent;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => match object.get("user") {
            None => UserField::Absent,
            Some(Value::String(text)) => UserField::Text(text.clone()),
            Some(_) => UserField::NotText,
        },
        _ => UserField::Absent,
    }
}

/// A body that holds neither `"user"` nor any `\u` escape cannot hold a `user` key: this skips
/// parsing most bodies twice.
fn might_hold_user(body: &[u8]) -> bool {
    body.windows(6).any(|w| w == b"\"user\"") || body.windows(2).any(|w| w == b"\\u")
}

/// The body with its `user` member replaced or removed (re-serialised, key order kept); None
/// when nothing changes or the body is not a JSON object.
pub fn rewrite_user(body: &[u8], change: &BodyUser) -> Option<Bytes> {
    if *change == BodyUser::Untouched {
        return None;
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
        return None;
    };
    match change {
        BodyUser::Replace(value) => {
            object.insert("user".to_owned(), Value::String(value.clone()));
        }
        BodyUser::Remove => {
            object.shift_remove("user");
        }
        BodyUser::Untouched => {}
    }
    serde_json::to_vec(&object).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_their_sub_sessions_get_distinct_keys() {
        let keys = [
            session_key("ana", None),
            session_key("Ana", None),
            session_key("ana", Some("work")),
            session_key("ana:work", None),
            session_key("bob", Some("work")),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a.to_lowercase(), b.to_lowercase(), "{a} vs {b}");
            }
        }
        assert!(keys[0].starts_with("exoclaw:ana:"), "{}", keys[0]);
        assert!(keys[2].starts_with("exoclaw:ana/work:"), "{}", keys[2]);
        assert_eq!(session_key("ana", None), keys[0], "stable");
        assert!(http::HeaderValue::from_str(&keys[2]).is_ok());
    }

    #[test]
    fn per_user_replaces_the_clients_user_and_per_request_removes_it() {
        let choice = choose(SessionMode::PerUser, "ana", Some("s1"), true);
        let key = session_key("ana", Some("s1"));
        assert_eq!(choice.key.as_deref(), Some(key.as_str()));
        assert_eq!(choice.body_user, BodyUser::Replace(key));
        let untouched = choose(SessionMode::PerUser, "ana", None, false);
        assert_eq!(untouched.body_user, BodyUser::Untouched);
        let fresh = choose(SessionMode::PerRequest, "ana", Some("s1"), true);
        assert_eq!(fresh.key, None);
        assert_eq!(fresh.body_user, BodyUser::Remove);
    }

    #[test]
    fn the_user_field_is_read_as_javascript_reads_it() {
        assert_eq!(user_field(br#"{"model":"m"}"#), UserField::Absent);
        assert_eq!(
            user_field(br#"{"user":"a","user":"agent:main:openai-user:ana"}"#),
            UserField::Text("agent:main:openai-user:ana".into())
        );
        assert_eq!(
            user_field(br#"{"\u0075ser":"ana"}"#),
            UserField::Text("ana".into())
        );
        assert_eq!(user_field(br#"{"user":5}"#), UserField::NotText);
        assert_eq!(user_field(br#"["user"]"#), UserField::Absent);
        assert_eq!(user_field(b"not json \"user\""), UserField::Absent);
    }

    #[test]
    fn a_sub_session_must_be_a_well_formed_name() {
        let text = |t: &str| UserField::Text(t.to_owned());
        assert_eq!(
            requested_sub_session(None, &text("ana@example.com")).unwrap(),
            Some("ana@example.com".to_owned())
        );
        assert_eq!(
            requested_sub_session(Some(b"s-2"), &text("x")).unwrap(),
            Some("s-2".to_owned())
        );
        assert_eq!(
            requested_sub_session(None, &UserField::Absent).unwrap(),
            None
        );
        for bad in [text("has space"), text(""), UserField::NotText] {
            let e = requested_sub_session(None, &bad).unwrap_err();
            assert_eq!(e.code, "invalid_session_name");
        }
        assert!(requested_sub_session(Some(b"a/b"), &UserField::Absent).is_err());
    }

    #[test]
    fn rewriting_replaces_or_removes_only_the_user_member() {
        let body = br#"{"model":"m","user":"a","user":"b","messages":[]}"#;
        let replaced = rewrite_user(body, &BodyUser::Replace("k".into())).unwrap();
        assert_eq!(&replaced[..], br#"{"model":"m","user":"k","messages":[]}"#);
        let removed = rewrite_user(body, &BodyUser::Remove).unwrap();
        assert_eq!(&removed[..], br#"{"model":"m","messages":[]}"#);
        assert_eq!(rewrite_user(body, &BodyUser::Untouched), None);
    }
}
