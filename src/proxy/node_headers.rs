//! The headers a node receives: only what the gateway decides.
//!
//! A node's token is an operator credential, and a node trusts whoever names a session. So the
//! client's request head is cleaned before it leaves: every `Authorization` value, every
//! forwarding header (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`), every `x-openclaw-*` header the
//! pool does not allow, the gateway's own internal headers, and any header carrying something
//! shaped like a gateway key are dropped. Then the gateway sets what it vouches for: the node's
//! token, the BYOK provider key (in `Authorization`, or in the pool's `byok_header` when the
//! token holds `Authorization`), the Codex token, the user, the request id, the session key and
//! the forwarding headers.
//!
//! Not for: the sidecar's headers (`proxy::upstream_request_filter` keeps those).

use std::net::IpAddr;

use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::Result;

use crate::auth::{keys, NodeCredential};
use crate::headers;

/// What the gateway decided for one request to one node.
pub struct NodeHead<'a> {
    pub user: &'a str,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub credential: Option<&'a NodeCredential>,
    /// The node's own token (sent as `Authorization: Bearer …`).
    pub node_token: Option<&'a str>,
    /// Where the provider key goes when the node token holds `Authorization`.
    pub byok_header: Option<&'a str>,
    /// `x-openclaw-*` headers the client may send (lower case).
    pub allowed_openclaw: &'a [String],
    pub session_key: Option<&'a str>,
}

/// Cleans `upstream` (a copy of the client's head) and sets the gateway's headers on it.
pub fn prepare(upstream: &mut RequestHeader, head: &NodeHead<'_>) -> Result<()> {
    let dropped: Vec<http::HeaderName> = upstream
        .headers
        .iter()
        .filter(|(name, value)| {
            from_client_only(name.as_str(), head.allowed_openclaw)
                || keys::mentions_gateway_key(value.as_bytes())
        })
        .map(|(name, _)| name.clone())
        .collect();
    for name in dropped {
        upstream.remove_header(&name);
    }

    match (head.credential, head.node_token) {
        (Some(NodeCredential::ProviderKey(key)), None) => {
            upstream.insert_header(http::header::AUTHORIZATION, key.clone())?;
        }
        (Some(NodeCredential::ProviderKey(key)), Some(_)) => {
            // Config validation guarantees the header exists when a token holds Authorization.
            if let Some(name) = head.byok_header {
                upstream.insert_header(name.to_owned(), key.clone())?;
            }
        }
        (Some(NodeCredential::CodexToken(token)), _) => {
            upstream.insert_header(headers::CODEX_TOKEN, &**token)?;
        }
        (None, _) => {}
    }
    if let Some(token) = head.node_token {
        upstream.insert_header(http::header::AUTHORIZATION, format!("Bearer {token}"))?;
    }

    upstream.insert_header(headers::FORWARDED_USER, head.user)?;
    upstream.insert_header(headers::REQUEST_ID, head.request_id)?;
    if let Some(key) = head.session_key {
        upstream.insert_header(headers::OPENCLAW_SESSION_KEY, key)?;
    }
    let ip = head.client_ip.to_string();
    upstream.insert_header(headers::X_FORWARDED_FOR, ip.as_str())?;
    upstream.insert_header(headers::X_FORWARDED_PROTO, "http")?;
    upstream.insert_header(headers::FORWARDED, forwarded_value(head.client_ip))?;
    Ok(())
}

/// Headers only the gateway may set toward a node: a client's copy never passes.
fn from_client_only(name: &str, allowed_openclaw: &[String]) -> bool {
    headers::STRIPPED_FROM_CLIENT.contains(&name)
        || name == http::header::AUTHORIZATION
        || name == headers::USER_ID
        || name == headers::SESSION_ID
        || name == headers::FORWARDED
        || name == headers::X_REAL_IP
        || name == http::header::PROXY_AUTHORIZATION
        // The gateway has read (or streams) the body itself: no node should hold it back.
        || name == http::header::EXPECT
        || name.starts_with("x-forwarded-")
        || name.starts_with("x-exoclaw-")
        || (name.starts_with("x-openclaw-") && !allowed_openclaw.iter().any(|a| a == name))
}

/// RFC 7239: `for=192.0.2.1;proto=http`, an IPv6 address quoted in brackets.
fn forwarded_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V4(v4) => format!("for={v4};proto=http"),
        IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto=http"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("for=unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const KEY: &str = "exo_0123456789abcdef0123456789abcdef0123456789abcdef";

    fn client_head() -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (name, value) in [
            ("Authorization", "Bearer sk-client"),
            ("authorization", "Bearer exo_second_value_0123456789abcdef"),
            ("X-OpenClaw-Session-Key", "agent:main:openai-user:ana"),
            ("x-openclaw-session-key", "main"),
            ("X-OPENCLAW-SCOPES", "operator.admin"),
            ("x-openclaw-agent-id", "ops"),
            ("x-openclaw-model", "big"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Real-IP", "10.0.0.1"),
            ("Forwarded", "for=10.0.0.1"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil"),
            ("X-Exoclaw-Internal", "guess"),
            ("X-Session-Id", "s1"),
            ("X-Note", KEY),
            ("Content-Type", "application/json"),
        ] {
            req.append_header(name.to_owned(), value).unwrap();
        }
        req
    }

    fn values(req: &RequestHeader, name: &str) -> Vec<String> {
        req.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn head<'a>(credential: &'a NodeCredential, allowed: &'a [String]) -> NodeHead<'a> {
        NodeHead {
            user: "bob",
            request_id: "req_1",
            client_ip: "192.0.2.7".parse().unwrap(),
            credential: Some(credential),
            node_token: None,
            byok_header: None,
            allowed_openclaw: allowed,
            session_key: Some("exoclaw:bob:00"),
        }
    }

    #[test]
    fn only_the_gateways_headers_reach_the_node() {
        let credential = NodeCredential::ProviderKey(HeaderValue::from_static("Bearer sk-client"));
        let allowed = vec!["x-openclaw-model".to_owned()];
        let mut req = client_head();
        prepare(&mut req, &head(&credential, &allowed)).unwrap();
        assert_eq!(values(&req, "authorization"), ["Bearer sk-client"]);
        assert_eq!(values(&req, "x-openclaw-session-key"), ["exoclaw:bob:00"]);
        assert!(values(&req, "x-openclaw-scopes").is_empty());
        assert!(values(&req, "x-openclaw-agent-id").is_empty());
        assert_eq!(values(&req, "x-openclaw-model"), ["big"]);
        assert_eq!(values(&req, "x-forwarded-for"), ["192.0.2.7"]);
        assert_eq!(values(&req, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&req, "forwarded"), ["for=192.0.2.7;proto=http"]);
        for gone in [
            "x-real-ip",
            "x-forwarded-host",
            "x-exoclaw-internal",
            "x-session-id",
            "x-note",
        ] {
            assert!(values(&req, gone).is_empty(), "{gone}");
        }
        assert_eq!(values(&req, "x-forwarded-user"), ["bob"]);
        assert_eq!(values(&req, "content-type"), ["application/json"]);
    }

    #[test]
    fn a_node_token_takes_authorization_and_the_provider_key_moves() {
        let credential = NodeCredential::ProviderKey(HeaderValue::from_static("Bearer sk-client"));
        let mut req = client_head();
        let head = NodeHead {
            node_token: Some("node-secret"),
            byok_header: Some("x-provider-authorization"),
            ..head(&credential, &[])
        };
        prepare(&mut req, &head).unwrap();
        assert_eq!(values(&req, "authorization"), ["Bearer node-secret"]);
        assert_eq!(
            values(&req, "x-provider-authorization"),
            ["Bearer sk-client"]
        );
    }

    #[test]
    fn codex_sends_the_users_token_and_no_client_authorization() {
        let credential = NodeCredential::CodexToken(Arc::from("oauth-bob"));
        let mut req = client_head();
        prepare(&mut req, &head(&credential, &[])).unwrap();
        assert!(values(&req, "authorization").is_empty());
        assert_eq!(values(&req, "x-codex-token"), ["oauth-bob"]);
    }

    #[test]
    fn ipv6_clients_are_quoted_in_forwarded() {
        assert_eq!(
            forwarded_value("::1".parse().unwrap()),
            "for=\"[::1]\";proto=http"
        );
    }
}
