//! A run worker calling a node through the proxy: the gateway's one trusted internal client.
//!
//! Agent runs (and Telegram messages, which become runs) reach nodes the way clients' requests
//! do — same pools, health, admission, node credentials, ledger and accounting — because the
//! worker sends them through this very proxy, over loopback, on behalf of the tenant's owner.
//! It proves itself with the gateway's internal secret (`x-exoclaw-internal`, the one the
//! sidecar checks), and says which run, user, session and pinned pool the call is for. A
//! client cannot send any of these: without the secret they are stripped like every header
//! only the gateway may set.
//!
//! Not for: running anything (`crate::runs::worker`), or choosing the session key format
//! (`session::session_key`, which namespaces the run's session under its owner).

use pingora::http::RequestHeader;

use crate::api_error::ApiError;
use crate::auth::Identity;
use crate::headers;
use crate::local_http;

/// What a run worker's node call carries besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCall {
    pub run_id: String,
    /// The run's sub-session name: `tenant/<id>/run/<id>` (`/` is a character no client's
    /// session name may hold, so no client can name a run's session).
    pub session: String,
    /// The operator's pin for the tenant; None: the owner's tier's pool.
    pub pool: Option<String>,
    /// The tier the run was accepted under; None (or a tier no longer configured): the
    /// owner's subscription decides, as for a client.
    pub tier: Option<String>,
}

/// A run worker's call: None for any request without the internal secret (a client's guess
/// of it included: such a request is authenticated like any other, and the internal headers
/// it carries are stripped); an error when the secret is right but the fields are malformed.
pub fn from_request(
    req: &RequestHeader,
    secret: &str,
) -> Option<Result<(Identity, RunCall), ApiError>> {
    let presented = req.headers.get(headers::INTERNAL_SECRET)?;
    let forged = || {
        ApiError::unauthenticated(
            "invalid_internal_call",
            "This request claims to come from the gateway itself and does not.",
        )
    };
    if req.headers.get_all(headers::INTERNAL_SECRET).iter().count() > 1
        || !local_http::secret_matches(presented.as_bytes(), secret.as_bytes())
    {
        // A client's guess: an ordinary request, whose forged headers are stripped like any.
        return None;
    }
    let field = |name: &str| {
        let mut values = req.headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.to_str().ok(),
            _ => None,
        }
    };
    let user = field(headers::RUN_USER).filter(|u| headers::is_well_formed_id(u.as_bytes()));
    let run_id = field(headers::RUN_ID).filter(|r| headers::is_well_formed_id(r.as_bytes()));
    let session = field(headers::RUN_SESSION).filter(|s| is_run_session(s));
    let (Some(user), Some(run_id), Some(session)) = (user, run_id, session) else {
        return Some(Err(forged()));
    };
    let pool = field(headers::RUN_POOL).map(str::to_owned);
    let tier = field(headers::RUN_TIER).map(str::to_owned);
    Some(Ok((
        Identity::without_key(user),
        RunCall {
            run_id: run_id.to_owned(),
            session: session.to_owned(),
            pool,
            tier,
        },
    )))
}

/// A run's session name: segments of well-formed ids joined by `/`, starting with `tenant/`.
pub fn is_run_session(name: &str) -> bool {
    name.len() <= 256
        && name.starts_with("tenant/")
        && name
            .split('/')
            .all(|segment| headers::is_well_formed_id(segment.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/v1/chat/completions", None).unwrap();
        for (name, value) in pairs {
            req.append_header(name.to_string(), *value).unwrap();
        }
        req
    }

    const SECRET: &str = "s3cret-s3cret-s3cret";

    fn run_headers(secret: &str) -> Vec<(&'static str, String)> {
        vec![
            (headers::INTERNAL_SECRET, secret.to_owned()),
            (headers::RUN_USER, "ana".to_owned()),
            (headers::RUN_ID, "run_abc".to_owned()),
            (headers::RUN_SESSION, "tenant/ten_1/run/run_abc".to_owned()),
        ]
    }

    fn parse(pairs: &[(&'static str, String)]) -> Option<Result<(Identity, RunCall), ApiError>> {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        from_request(&request(&borrowed), SECRET)
    }

    #[test]
    fn a_client_request_is_not_a_run_call() {
        assert!(parse(&[]).is_none());
    }

    #[test]
    fn the_right_secret_vouches_for_the_run_and_its_owner() {
        let (identity, call) = parse(&run_headers(SECRET)).unwrap().unwrap();
        assert_eq!(identity.user, "ana");
        assert!(identity.key.is_none());
        assert_eq!(call.run_id, "run_abc");
        assert_eq!(call.session, "tenant/ten_1/run/run_abc");
        assert_eq!((call.pool, call.tier), (None, None));
    }

    #[test]
    fn a_wrong_or_repeated_secret_is_no_run_call_and_bad_fields_are_refused() {
        assert!(parse(&run_headers("s3cret-s3cret-s3creT")).is_none());
        let mut twice = run_headers(SECRET);
        twice.push((headers::INTERNAL_SECRET, SECRET.to_owned()));
        assert!(parse(&twice).is_none());
        let mut bad_session = run_headers(SECRET);
        bad_session[3].1 = "../other".to_owned();
        assert!(parse(&bad_session).unwrap().is_err());
        let mut no_user = run_headers(SECRET);
        no_user.remove(1);
        assert!(parse(&no_user).unwrap().is_err());
    }

    #[test]
    fn run_sessions_are_tenant_scoped_segments() {
        assert!(is_run_session("tenant/ten_1/run/run_2"));
        assert!(is_run_session("tenant/ten_1/telegram/12345"));
        assert!(!is_run_session("ten_1/run/run_2"));
        assert!(!is_run_session("tenant//run"));
        assert!(!is_run_session("tenant/a b"));
    }
}
