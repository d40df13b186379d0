//! A small client of the Telegram Bot API: the six methods the bot needs, over `reqwest`.
//!
//! Every call is `POST <api_base>/bot<token>/<method>` with a JSON body, answered by
//! `{ok, result, description, error_code, parameters: {retry_after}}`. The token sits in the
//! URL's path, so **no URL ever leaves this module**: errors name the method, never the URL
//! (`reqwest` errors are stripped of theirs, and any text that still held the token would have it
//! replaced), and `BotToken` has no `Display` and a `Debug` that hides it. A 429 comes back as
//! `BotApiError::RateLimited` with its `retry_after`; what to do about it is `reply`'s rule.
//!
//! The base URL is configurable (`telegram.api_base`): the tests point it at `fake::FakeBotApi`.
//!
//! HTTPS (`https://api.telegram.org`) goes through rustls and the system's roots, as every
//! outgoing client's (`http_client::builder`).
//!
//! Not for: pacing, splitting or retrying (`reply`), or what to send (the worker).

use crate::http_client::error_chain;
use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

/// Most bytes of a Bot API response read: its answers are small.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// A call's whole time, and its connection's.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The wait after a 429 that does not say how long: a retry is never immediate.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Said where a token would otherwise have been printed.
const REDACTED: &str = "<token>";

/// The bot's token, from the environment. It never prints: no `Display`, and `Debug` shows
/// `BotToken(<redacted>)`. Its memory is wiped when dropped.
pub struct BotToken(Zeroizing<String>);

impl BotToken {
    /// Checks the token's shape (`<bot id>:<secret>`) without ever echoing it.
    pub fn new(token: String) -> Result<BotToken, String> {
        let token = Zeroizing::new(token);
        let shaped = token.split_once(':').is_some_and(|(id, secret)| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
        if !shaped {
            return Err(
                "the Telegram bot token is not shaped like `<bot id>:<secret>` (letters, digits, _ and -)"
                    .into(),
            );
        }
        Ok(BotToken(token))
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Why a Bot API call failed. Its text names the method and never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotApiError {
    /// 429: Telegram asks to wait `retry_after` before trying again.
    RateLimited {
        method: &'static str,
        retry_after: Duration,
    },
    /// Telegram answered `ok: false` (400 bad request, 403 blocked by the user, 5xx, …).
    Refused {
        method: &'static str,
        error_code: i64,
        description: String,
    },
    /// No answer: the connection failed or timed out.
    Unreachable {
        method: &'static str,
        detail: String,
    },
    /// An answer that is not the Bot API's JSON (a proxy's error page, a truncated body).
    BadResponse {
        method: &'static str,
        detail: String,
    },
}

impl BotApiError {
    /// Whether the same call may succeed later without any change: the network, a 5xx, an
    /// unreadable answer. A 429 is not counted here: it has its own, exact, wait.
    pub fn is_transient(&self) -> bool {
        match self {
            BotApiError::Unreachable { .. } | BotApiError::BadResponse { .. } => true,
            BotApiError::Refused { error_code, .. } => *error_code >= 500,
            BotApiError::RateLimited { .. } => false,
        }
    }

    pub fn method(&self) -> &'static str {
        match self {
            BotApiError::RateLimited { method, .. }
            | BotApiError::Refused { method, .. }
            | BotApiError::Unreachable { method, .. }
            | BotApiError::BadResponse { method, .. } => method,
        }
    }
}

impl fmt::Display for BotApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BotApiError::RateLimited {
                method,
                retry_after,
            } => write!(
                f,
                "telegram {method}: rate limited, retry after {} s",
                retry_after.as_secs()
            ),
            BotApiError::Refused {
                method,
                error_code,
                description,
            } => write!(
                f,
                "telegram {method}: refused ({error_code}): {description}"
            ),
            BotApiError::Unreachable { method, detail } => {
                write!(f, "telegram {method}: cannot reach the Bot API: {detail}")
            }
            BotApiError::BadResponse { method, detail } => {
                write!(f, "telegram {method}: unreadable answer: {detail}")
            }
        }
    }
}

impl std::error::Error for BotApiError {}

/// A message Telegram accepted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SentMessage {
    pub message_id: i64,
}

/// The bot itself (`getMe`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BotUser {
    pub id: i64,
    pub is_bot: bool,
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
}

/// The webhook as Telegram has it (`getWebhookInfo`), for `exoclaw telegram info`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WebhookInfo {
    /// Empty when no webhook is set.
    pub url: String,
    #[serde(default)]
    pub pending_update_count: i64,
    #[serde(default)]
    pub last_error_date: Option<i64>,
    #[serde(default)]
    pub last_error_message: Option<String>,
    #[serde(default)]
    pub max_connections: Option<i64>,
    #[serde(default)]
    pub allowed_updates: Option<Vec<String>>,
}

/// What `telegram set-webhook` asks for.
#[derive(Clone, Copy)]
pub struct WebhookSettings<'a> {
    /// The public `https://…/api/webhooks/telegram`.
    pub url: &'a str,
    /// Sent back by Telegram in `X-Telegram-Bot-Api-Secret-Token` with every update.
    pub secret_token: &'a str,
    /// The update kinds to receive (`["message"]`).
    pub allowed_updates: &'a [&'a str],
}

impl fmt::Debug for WebhookSettings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("url", &self.url)
            .field("secret_token", &"<redacted>")
            .field("allowed_updates", &self.allowed_updates)
            .finish()
    }
}

/// What `sendChatAction` shows; the bot uses `typing` while a run works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatAction {
    Typing,
}

impl ChatAction {
    fn as_str(self) -> &'static str {
        match self {
            ChatAction::Typing => "typing",
        }
    }
}

/// The Bot API client: cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: std::sync::Arc<BotToken>,
}

impl fmt::Debug for BotApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    error_code: Option<i64>,
    #[serde(default)]
    parameters: Option<ResponseParameters>,
}

#[derive(Deserialize)]
struct ResponseParameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

impl BotApi {
    /// A client of the Bot API at `api_base` (`https://api.telegram.org`, or a fake's
    /// `http://127.0.0.1:<port>`).
    pub fn new(api_base: &str, token: BotToken) -> Result<BotApi, String> {
        let base = api_base.trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(format!(
                "telegram api_base {api_base:?} is not an http(s) URL"
            ));
        }
        let http = crate::http_client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the Telegram HTTP client: {}", e.without_url()))?;
        Ok(BotApi {
            http,
            base: base.to_owned(),
            token: std::sync::Arc::new(token),
        })
    }

    /// Sends `text` to `chat_id` as plain text (no `parse_mode`: see `reply`).
    pub async fn send_message(&self, chat_id: i64, text: &str) -> Result<SentMessage, BotApiError> {
        self.call("sendMessage", &json!({"chat_id": chat_id, "text": text}))
            .await
    }

    /// Shows `action` in the chat for about five seconds, or until the next message.
    pub async fn send_chat_action(
        &self,
        chat_id: i64,
        action: ChatAction,
    ) -> Result<(), BotApiError> {
        self.call::<bool>(
            "sendChatAction",
            &json!({"chat_id": chat_id, "action": action.as_str()}),
        )
        .await
        .map(drop)
    }

    pub async fn set_webhook(&self, settings: &WebhookSettings<'_>) -> Result<(), BotApiError> {
        let WebhookSettings {
            url,
            secret_token,
            allowed_updates,
        } = settings;
        self.call::<bool>(
            "setWebhook",
            &json!({"url": url, "secret_token": secret_token, "allowed_updates": allowed_updates}),
        )
        .await
        .map(drop)
    }

    /// Removes the webhook; updates Telegram still holds stay there.
    pub async fn delete_webhook(&self) -> Result<(), BotApiError> {
        self.call::<bool>("deleteWebhook", &json!({}))
            .await
            .map(drop)
    }

    pub async fn get_webhook_info(&self) -> Result<WebhookInfo, BotApiError> {
        self.call("getWebhookInfo", &json!({})).await
    }

    pub async fn get_me(&self) -> Result<BotUser, BotApiError> {
        self.call("getMe", &json!({})).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        body: &Value,
    ) -> Result<T, BotApiError> {
        let url = Zeroizing::new(format!(
            "{}/bot{}/{method}",
            self.base,
            self.token.0.as_str()
        ));
        let unreachable = |e: reqwest::Error| BotApiError::Unreachable {
            method,
            detail: self.scrub(&error_chain(&e.without_url())),
        };
        let mut response = self
            .http
            .post(url.as_str())
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(BotApiError::BadResponse {
                    method,
                    detail: format!("HTTP {status}, more than {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let envelope: Envelope = match serde_json::from_slice(&bytes) {
            Ok(envelope) => envelope,
            // A 429 from something in front of Telegram, without its JSON: still a 429.
            Err(_) if status.as_u16() == 429 => {
                return Err(BotApiError::RateLimited {
                    method,
                    retry_after: DEFAULT_RETRY_AFTER,
                })
            }
            Err(e) => {
                return Err(BotApiError::BadResponse {
                    method,
                    detail: format!("HTTP {status}, not the Bot API's JSON: {e}"),
                })
            }
        };
        let Envelope {
            ok,
            result,
            description,
            error_code,
            parameters,
        } = envelope;
        if !ok {
            let error_code = error_code.unwrap_or(i64::from(status.as_u16()));
            let retry_after = parameters.and_then(|p| p.retry_after);
            if error_code == 429 || status.as_u16() == 429 {
                return Err(BotApiError::RateLimited {
                    method,
                    retry_after: retry_after.map_or(DEFAULT_RETRY_AFTER, Duration::from_secs),
                });
            }
            return Err(BotApiError::Refused {
                method,
                error_code,
                description: self.scrub(description.as_deref().unwrap_or("(no description)")),
            });
        }
        let result = result.unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| BotApiError::BadResponse {
            method,
            detail: format!("unexpected result: {e}"),
        })
    }

    /// `text` with the token, should it appear, replaced.
    fn scrub(&self, text: &str) -> String {
        text.replace(self.token.0.as_str(), REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::fake::FakeBotApi;
    use super::*;

    const TOKEN: &str = "123456:AAH-secret_token_value";

    fn client(base: &str) -> BotApi {
        BotApi::new(base, BotToken::new(TOKEN.into()).unwrap()).unwrap()
    }

    #[test]
    fn the_token_never_prints() {
        let token = BotToken::new(TOKEN.into()).unwrap();
        assert_eq!(format!("{token:?}"), "BotToken(<redacted>)");
        let api = BotApi::new("http://127.0.0.1:9/", token).unwrap();
        let shown = format!("{api:?}");
        assert!(!shown.contains("secret_token_value"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:9"), "{shown}");
    }

    #[test]
    fn a_malformed_token_or_base_is_refused_without_echoing_it() {
        for bad in [
            "",
            "no-colon",
            ":secret",
            "12a:secret",
            "123:",
            "123:sec ret",
            "123:s/x",
        ] {
            let err = BotToken::new(bad.into()).unwrap_err();
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
        let token = BotToken::new(TOKEN.into()).unwrap();
        assert!(BotApi::new("api.telegram.org", token).is_err());
    }

    #[tokio::test]
    async fn each_method_posts_its_json_to_the_token_path() {
        let fake = FakeBotApi::start().await;
        let api = client(&fake.base_url());
        let sent = api.send_message(42, "hello *world*").await.unwrap();
        assert_eq!(sent.message_id, 1);
        api.send_chat_action(42, ChatAction::Typing).await.unwrap();
        api.set_webhook(&WebhookSettings {
            url: "https://gw.example/api/webhooks/telegram",
            secret_token: "s3cret",
            allowed_updates: &["message"],
        })
        .await
        .unwrap();
        api.delete_webhook().await.unwrap();
        let info = api.get_webhook_info().await.unwrap();
        assert_eq!(info.pending_update_count, 0);
        let me = api.get_me().await.unwrap();
        assert_eq!(me.username.as_deref(), Some("exoclaw_bot"));

        let calls = fake.calls();
        let methods: Vec<&str> = calls.iter().map(|c| c.method.as_str()).collect();
        assert_eq!(
            methods,
            [
                "sendMessage",
                "sendChatAction",
                "setWebhook",
                "deleteWebhook",
                "getWebhookInfo",
                "getMe"
            ]
        );
        assert!(calls.iter().all(|c| c.token == TOKEN));
        assert_eq!(
            calls[0].body,
            json!({"chat_id": 42, "text": "hello *world*"})
        );
        assert_eq!(calls[1].body, json!({"chat_id": 42, "action": "typing"}));
        assert_eq!(
            calls[2].body,
            json!({"url": "https://gw.example/api/webhooks/telegram",
                   "secret_token": "s3cret", "allowed_updates": ["message"]})
        );
    }

    #[tokio::test]
    async fn a_429_carries_its_retry_after() {
        let fake = FakeBotApi::start().await;
        fake.answer_next(
            429,
            json!({"ok": false, "error_code": 429,
                   "description": "Too Many Requests: retry after 3",
                   "parameters": {"retry_after": 3}}),
        );
        let api = client(&fake.base_url());
        let err = api.send_message(1, "hi").await.unwrap_err();
        assert_eq!(
            err,
            BotApiError::RateLimited {
                method: "sendMessage",
                retry_after: Duration::from_secs(3)
            }
        );
        assert_eq!(
            err.to_string(),
            "telegram sendMessage: rate limited, retry after 3 s"
        );
        assert_eq!(api.send_message(1, "hi").await.unwrap().message_id, 1);
        fake.answer_raw_next(429, "<html>slow down</html>");
        let err = api
            .send_chat_action(1, ChatAction::Typing)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            BotApiError::RateLimited {
                method: "sendChatAction",
                retry_after: DEFAULT_RETRY_AFTER
            }
        );
    }

    #[tokio::test]
    async fn a_refusal_keeps_telegrams_words_and_a_garbled_answer_is_bad() {
        let fake = FakeBotApi::start().await;
        fake.answer_next(
            403,
            json!({"ok": false, "error_code": 403,
                   "description": format!("Forbidden: bot was blocked by the user {TOKEN}")}),
        );
        fake.answer_raw_next(502, "<html>Bad Gateway</html>");
        let api = client(&fake.base_url());
        let err = api.send_message(1, "hi").await.unwrap_err();
        assert!(!err.is_transient());
        assert!(matches!(
            err,
            BotApiError::Refused {
                error_code: 403,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.starts_with("telegram sendMessage: refused (403): Forbidden"),
            "{text}"
        );
        assert!(!text.contains("secret_token_value"), "{text}");
        let err = api.get_me().await.unwrap_err();
        assert!(matches!(
            err,
            BotApiError::BadResponse {
                method: "getMe",
                ..
            }
        ));
        assert!(err.to_string().contains("502"), "{err}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn an_unreachable_api_names_the_method_and_not_the_url() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let api = client(&format!("http://127.0.0.1:{port}"));
        let err = api.get_me().await.unwrap_err();
        assert!(matches!(
            err,
            BotApiError::Unreachable {
                method: "getMe",
                ..
            }
        ));
        let text = format!("{err} {err:?}");
        assert!(!text.contains("secret_token_value"), "{text}");
        assert!(!text.contains("/bot"), "{text}");
        assert!(err.is_transient());
    }
}
