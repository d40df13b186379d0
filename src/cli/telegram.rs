//! `exoclaw telegram set-webhook|delete-webhook|info`: the operator tells Telegram where the
//! shared bot's updates go, takes that back, or looks at what Telegram has.
//!
//! Each command reads the bot's token from the variable `telegram.bot_token_env` names, and
//! `set-webhook` the webhook secret from `telegram.webhook_secret_env`: the same variables the
//! gateway reads, so the secret Telegram sends back with every update is the one the webhook
//! checks. Neither is ever printed: `BotToken` and `BotApiError` hide the token, and the messages
//! here name the variables, not their values.
//!
//! `set-webhook` asks for `allowed_updates: ["message"]` (the bot reads nothing else) and refuses
//! a plain `http://` URL unless its host is loopback: Telegram delivers only over HTTPS, and a
//! loopback URL is only ever a local test against a fake Bot API.
//!
//! Not for: the webhook handler or the worker, which receive and answer the updates.

use std::future::Future;
use std::net::IpAddr;

use zeroize::Zeroizing;

use crate::config::telegram::Telegram;
use crate::config::Config;
use crate::onboard::sheet::utc_label;
use crate::telegram::bot_api::{
    BotApi, BotApiError, BotToken, BotUser, WebhookInfo, WebhookSettings,
};

/// Where the gateway takes Telegram's updates.
pub const WEBHOOK_PATH: &str = "/api/webhooks/telegram";
/// The only update kind the bot reads.
const ALLOWED_UPDATES: &[&str] = &["message"];
/// Telegram's bounds on `secret_token`.
const MAX_SECRET_LEN: usize = 256;

/// `exoclaw telegram set-webhook --url https://HOST/api/webhooks/telegram`.
pub fn set_webhook(config: &Config, url: &str) -> Result<(), String> {
    let telegram = section(config)?;
    check_webhook_url(url)?;
    if let Some(path) = url
        .parse::<http::Uri>()
        .ok()
        .map(|u| u.path().to_owned())
        .filter(|p| p != WEBHOOK_PATH)
    {
        eprintln!(
            "warning: the gateway takes Telegram's updates at {WEBHOOK_PATH}, and this URL's \
             path is {path:?}"
        );
    }
    let api = bot_api(telegram)?;
    let secret = env_value(&telegram.webhook_secret_env, "telegram.webhook_secret_env")?;
    check_secret(&secret, &telegram.webhook_secret_env)?;
    let settings = WebhookSettings {
        url,
        secret_token: &secret,
        allowed_updates: ALLOWED_UPDATES,
    };
    call(api.set_webhook(&settings))?;
    println!(
        "Webhook set: Telegram sends the bot's messages to {url}, with the secret from {} \
         (updates: {}).",
        telegram.webhook_secret_env,
        ALLOWED_UPDATES.join(", ")
    );
    Ok(())
}

/// `exoclaw telegram delete-webhook`.
pub fn delete_webhook(config: &Config) -> Result<(), String> {
    let api = bot_api(section(config)?)?;
    call(api.delete_webhook())?;
    println!(
        "Webhook deleted: Telegram keeps the bot's new messages (up to 24 hours) until a webhook \
         is set again."
    );
    Ok(())
}

/// `exoclaw telegram info`: the bot the token belongs to, and its webhook as Telegram has it.
pub fn info(config: &Config) -> Result<(), String> {
    let telegram = section(config)?;
    let api = bot_api(telegram)?;
    let (me, webhook) = call(async {
        let me = api.get_me().await?;
        Ok((me, api.get_webhook_info().await?))
    })?;
    let bot = me.username.as_deref().unwrap_or_default();
    if !bot.eq_ignore_ascii_case(&telegram.bot_username) {
        eprintln!(
            "warning: telegram.bot_username is `{}`, but the token is @{bot}'s: pairing links \
             would open the wrong bot",
            telegram.bot_username
        );
    }
    print!("{}", info_text(&me, &webhook));
    Ok(())
}

/// What `info` prints: one `label: value` line each.
fn info_text(me: &BotUser, webhook: &WebhookInfo) -> String {
    let bot = match &me.username {
        Some(username) => format!("@{username} ({}, id {})", me.first_name, me.id),
        None => format!("{} (id {})", me.first_name, me.id),
    };
    let url = if webhook.url.is_empty() {
        format!(
            "none (set one with `exoclaw telegram set-webhook --url https://HOST{WEBHOOK_PATH}`)"
        )
    } else {
        webhook.url.clone()
    };
    let allowed = match &webhook.allowed_updates {
        Some(kinds) if !kinds.is_empty() => kinds.join(", "),
        _ => "Telegram's default (all but a few)".to_owned(),
    };
    let last_error = match (&webhook.last_error_message, webhook.last_error_date) {
        (Some(message), Some(date)) => format!("{message} ({})", utc_label(date as u64 * 1000)),
        (Some(message), None) => message.clone(),
        (None, _) => "none".to_owned(),
    };
    format!(
        "Bot:             {bot}\n\
         Webhook:         {url}\n\
         Pending updates: {}\n\
         Allowed updates: {allowed}\n\
         Last error:      {last_error}\n",
        webhook.pending_update_count
    )
}

fn section(config: &Config) -> Result<&Telegram, String> {
    config.telegram.as_ref().ok_or_else(|| {
        "the config has no `telegram:` section: name the bot there (bot_username, template) first"
            .to_owned()
    })
}

/// A client of the Bot API with the token from the environment.
fn bot_api(telegram: &Telegram) -> Result<BotApi, String> {
    let mut token = env_value(&telegram.bot_token_env, "telegram.bot_token_env")?;
    let token = BotToken::new(std::mem::take(&mut *token)).map_err(|e| {
        format!(
            "{e} (in the environment variable {})",
            telegram.bot_token_env
        )
    })?;
    BotApi::new(&telegram.api_base, token)
}

/// The value of environment variable `name` (which config key `key` chose); an error naming
/// both when it is unset or empty. The value itself is never part of an error.
fn env_value(name: &str, key: &str) -> Result<Zeroizing<String>, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Zeroizing::new(value)),
        Ok(_) => Err(format!(
            "the environment variable {name} (named by {key}) is empty"
        )),
        Err(std::env::VarError::NotPresent) => Err(format!(
            "the environment variable {name} (named by {key}) is not set"
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "the environment variable {name} (named by {key}) is not valid UTF-8"
        )),
    }
}

/// Telegram's rule for `secret_token`: 1-256 characters of A-Z a-z 0-9 _ -.
fn check_secret(secret: &str, variable: &str) -> Result<(), String> {
    let valid = (1..=MAX_SECRET_LEN).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the webhook secret in {variable} must be 1-{MAX_SECRET_LEN} characters of \
             A-Z a-z 0-9 _ - (Telegram's rule); `openssl rand -hex 32` makes one"
        ))
    }
}

/// An `https://` URL with a host; `http://` only for a loopback host.
fn check_webhook_url(url: &str) -> Result<(), String> {
    let uri = url
        .parse::<http::Uri>()
        .ok()
        .filter(|_| !url.chars().any(|c| c.is_control() || c.is_whitespace()));
    let Some((scheme, host)) = uri
        .as_ref()
        .and_then(|u| Some((u.scheme_str()?, u.host()?)))
    else {
        return Err(format!(
            "{url:?} is not a URL: give the gateway's public https://HOST{WEBHOOK_PATH}"
        ));
    };
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "Telegram delivers updates only over HTTPS: use https://{host}{WEBHOOK_PATH} \
             (plain http is accepted for a loopback host only, in a local test)"
        )),
        other => Err(format!(
            "{other}:// is not a webhook scheme: give https://HOST{WEBHOOK_PATH}"
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Runs one exchange with the Bot API to completion, on a runtime of its own.
fn call<T>(work: impl Future<Output = Result<T, BotApiError>>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    runtime.block_on(work).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_url_is_https_or_plain_http_on_loopback() {
        for good in [
            "https://gw.example/api/webhooks/telegram",
            "https://gw.example:8443/api/webhooks/telegram",
            "http://127.0.0.1:8787/api/webhooks/telegram",
            "http://localhost/api/webhooks/telegram",
            "http://[::1]:8787/api/webhooks/telegram",
        ] {
            assert_eq!(check_webhook_url(good), Ok(()), "{good}");
        }
        let plain = check_webhook_url("http://gw.example/api/webhooks/telegram").unwrap_err();
        assert!(plain.contains("only over HTTPS"), "{plain}");
        assert!(plain.contains("loopback"), "{plain}");
        for bad in [
            "gw.example/api/webhooks/telegram",
            "ftp://gw.example/x",
            "https://",
            "https://gw.example/a b",
            "",
        ] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_secret_follows_telegrams_rule_and_is_never_echoed() {
        assert_eq!(check_secret("s3cret_-X", "S"), Ok(()));
        assert_eq!(check_secret(&"a".repeat(256), "S"), Ok(()));
        for bad in ["", "has space", "tilde~", "ümlaut"] {
            let e = check_secret(bad, "TELEGRAM_WEBHOOK_SECRET").unwrap_err();
            assert!(e.contains("TELEGRAM_WEBHOOK_SECRET"), "{e}");
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
        assert!(check_secret(&"a".repeat(257), "S").is_err());
    }

    #[test]
    fn info_reads_as_labelled_lines() {
        let me = BotUser {
            id: 42,
            is_bot: true,
            first_name: "ExoClaw".into(),
            username: Some("exoclaw_bot".into()),
        };
        let mut webhook = WebhookInfo {
            url: String::new(),
            pending_update_count: 0,
            last_error_date: None,
            last_error_message: None,
            max_connections: None,
            allowed_updates: None,
        };
        let text = info_text(&me, &webhook);
        assert!(
            text.contains("Bot:             @exoclaw_bot (ExoClaw, id 42)"),
            "{text}"
        );
        assert!(
            text.contains("Webhook:         none (set one with"),
            "{text}"
        );
        assert!(text.contains("Last error:      none"), "{text}");
        webhook.url = "https://gw.example/api/webhooks/telegram".into();
        webhook.pending_update_count = 7;
        webhook.last_error_message = Some("Connection refused".into());
        webhook.last_error_date = Some(1_796_083_200);
        webhook.allowed_updates = Some(vec!["message".into()]);
        let text = info_text(&me, &webhook);
        assert!(text.contains("Webhook:         https://gw.example/api/webhooks/telegram"));
        assert!(text.contains("Pending updates: 7"), "{text}");
        assert!(text.contains("Allowed updates: message"), "{text}");
        assert!(
            text.contains("Last error:      Connection refused (2026-12-01 00:00 UTC)"),
            "{text}"
        );
    }
}
