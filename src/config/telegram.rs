//! The shared Telegram bot's settings (`telegram:`): its username for deep links, the
//! environment variables holding its token and webhook secret, the template a chat message runs
//! as, and the Bot API's base URL (the tests point it at a fake).
//!
//! Not here: the bot itself (`crate::telegram`). The token and the secret are read from the
//! environment where they are used; this module only names the variables.

use std::collections::BTreeMap;

use super::file::TelegramSection;
use super::{env_var_name, err, AuthMode, ConfigError, Template};

pub const DEFAULT_BOT_TOKEN_ENV: &str = "TELEGRAM_BOT_TOKEN";
pub const DEFAULT_WEBHOOK_SECRET_ENV: &str = "TELEGRAM_WEBHOOK_SECRET";
pub const DEFAULT_API_BASE: &str = "https://api.telegram.org";
/// The input of the chat template that receives the user's message.
pub const MESSAGE_INPUT: &str = "message";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Telegram {
    /// Without `@`: deep links are `https://t.me/<bot_username>?start=<code>`.
    pub bot_username: String,
    pub bot_token_env: String,
    pub webhook_secret_env: String,
    /// The template a paired user's message runs as; it has a `message` input.
    pub template: String,
    /// The Bot API's base URL, without a trailing `/`.
    pub api_base: String,
}

pub(super) fn telegram(
    raw: Option<TelegramSection>,
    templates: &BTreeMap<String, Template>,
    mode: AuthMode,
) -> Result<Option<Telegram>, ConfigError> {
    let Some(TelegramSection {
        bot_username,
        bot_token_env,
        webhook_secret_env,
        template,
        api_base,
    }) = raw
    else {
        return Ok(None);
    };
    if mode == AuthMode::Byok {
        // A chat message carries no provider key, and BYOK mode has no other credential.
        return Err(err(
            "telegram",
            "the bot runs agents with the tenant owner's stored Codex token, and a Telegram \
             message cannot bring a provider key: set `auth.mode: codex` to use the bot",
        ));
    }
    let username = bot_username.trim_start_matches('@').to_owned();
    let valid = (5..=32).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(err(
            "telegram.bot_username",
            format!("{bot_username:?} is not a Telegram username (5-32 of A-Z a-z 0-9 _)"),
        ));
    }
    let Some(chat) = templates.get(&template) else {
        let known: Vec<&str> = templates.keys().map(String::as_str).collect();
        return Err(err(
            "telegram.template",
            format!(
                "`{template}` is not a template (templates: {})",
                known.join(", ")
            ),
        ));
    };
    if !chat.inputs.contains_key(MESSAGE_INPUT) {
        return Err(err(
            "telegram.template",
            format!(
                "the template `{template}` needs an input `{MESSAGE_INPUT}`: it receives the \
                 user's message"
            ),
        ));
    }
    let api_base = api_base
        .unwrap_or_else(|| DEFAULT_API_BASE.to_owned())
        .trim_end_matches('/')
        .to_owned();
    let parsed = api_base
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if parsed.is_none() || api_base.chars().any(char::is_control) {
        return Err(err(
            "telegram.api_base",
            format!("{api_base:?} is not an http(s) URL"),
        ));
    }
    Ok(Some(Telegram {
        bot_username: username,
        bot_token_env: env_var_name(
            "telegram.bot_token_env",
            bot_token_env,
            DEFAULT_BOT_TOKEN_ENV,
        )?,
        webhook_secret_env: env_var_name(
            "telegram.webhook_secret_env",
            webhook_secret_env,
            DEFAULT_WEBHOOK_SECRET_ENV,
        )?,
        template,
        api_base,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(telegram: &str) -> Result<Config, crate::config::ConfigError> {
        load_in("codex", telegram)
    }

    fn load_in(mode: &str, telegram: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_yaml(&format!(
            "server: {{ listen: \"127.0.0.1:8787\" }}\n\
             auth: {{ mode: {mode} }}\n\
             pools: {{ openclaw: {{ nodes: [ {{ name: n, addr: \"127.0.0.1:18789\" }} ] }} }}\n\
             templates:\n  chat: {{ name: Chat, agent: main, instructions: \"{{{{message}}}}\",\n    \
             inputs: {{ message: {{ required: true }} }} }}\n  other: {{ name: O, agent: main, instructions: hi }}\n\
             {telegram}"
        ))
    }

    #[test]
    fn the_bot_names_a_chat_template_with_a_message_input() {
        let config =
            load("telegram: { bot_username: \"@exoclaw_bot\", template: chat }\n").unwrap();
        let telegram = config.telegram.unwrap();
        assert_eq!(telegram.bot_username, "exoclaw_bot");
        assert_eq!(telegram.bot_token_env, "TELEGRAM_BOT_TOKEN");
        assert_eq!(telegram.api_base, "https://api.telegram.org");
        for (yaml, path) in [
            (
                "telegram: { bot_username: exo, template: chat }\n",
                "telegram.bot_username",
            ),
            (
                "telegram: { bot_username: exoclaw_bot, template: nope }\n",
                "telegram.template",
            ),
            (
                "telegram: { bot_username: exoclaw_bot, template: other }\n",
                "telegram.template",
            ),
            (
                "telegram: { bot_username: exoclaw_bot, template: chat, api_base: \"ftp://x\" }\n",
                "telegram.api_base",
            ),
        ] {
            assert_eq!(load(yaml).unwrap_err().path, path, "{yaml}");
        }
        assert!(load("").unwrap().telegram.is_none());
    }

    #[test]
    fn byok_mode_has_no_credential_for_the_bot() {
        let yaml = "telegram: { bot_username: exoclaw_bot, template: chat }\n";
        let e = load_in("byok", yaml).unwrap_err();
        assert_eq!(e.path, "telegram");
        assert!(e.message.contains("auth.mode: codex"), "{}", e.message);
    }

    #[test]
    fn unset_variables_are_warned_about() {
        let config = load(
            "telegram: { bot_username: exoclaw_bot, template: chat, \
             bot_token_env: EXOCLAW_TEST_NO_SUCH_TOKEN, \
             webhook_secret_env: EXOCLAW_TEST_NO_SUCH_SECRET }\n",
        )
        .unwrap();
        let warnings = config.warnings().join("\n");
        assert!(
            warnings.contains("EXOCLAW_TEST_NO_SUCH_TOKEN is not set"),
            "{warnings}"
        );
        assert!(
            warnings.contains("EXOCLAW_TEST_NO_SUCH_SECRET is not set"),
            "{warnings}"
        );
    }
}
