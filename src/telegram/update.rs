//! Telegram updates as the bot reads them: the JSON the webhook receives, parsed into bounded
//! types, and a message's text classified into the bot's commands.
//!
//! Only `message` updates matter; every other kind (`edited_message`, `callback_query`,
//! `channel_post`, …) parses to an `Update` without a message, which the bot ignores. Unknown
//! fields are ignored too: Telegram adds fields, and an update must not fail for that. What the
//! bot reads is checked: a missing or mistyped field, or one over its bound, is an error that
//! names the field (`message.chat.id`).
//!
//! Not for: trusting the sender (the webhook checks the secret header before parsing), or
//! deciding what to answer (the worker, with `pairing` and the tenant's state).

use std::fmt;

use serde::Deserialize;

use super::pairing::PairingCode;

/// The largest update body accepted: a text message is at most 4,096 characters (16 KiB of
/// UTF-8), and the envelope around it is small.
pub const MAX_UPDATE_BYTES: usize = 64 * 1024;
/// The longest message text Telegram sends, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// The longest name (first name, username, language code) accepted, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest `/start` payload kept: Telegram allows 64 characters.
const MAX_START_PAYLOAD_CHARS: usize = 64;

/// One update from the webhook.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Update {
    pub update_id: i64,
    /// None for every update kind but a new message.
    #[serde(default)]
    pub message: Option<Message>,
}

/// A new message.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Message {
    pub message_id: i64,
    /// None only for messages without a sender (posts in channels).
    #[serde(default)]
    pub from: Option<User>,
    pub chat: Chat,
    /// None for photos, stickers and the rest: the bot answers text only.
    #[serde(default)]
    pub text: Option<String>,
    /// Unix seconds.
    pub date: i64,
}

/// A Telegram user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub id: i64,
    pub is_bot: bool,
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub language_code: Option<String>,
}

/// The chat a message was sent in.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Chat {
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: ChatKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatKind {
    Private,
    Group,
    Supergroup,
    Channel,
    /// A kind Telegram adds later.
    #[serde(other)]
    Other,
}

/// An update the bot cannot read; `field` is its path, as in `message.from.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for UpdateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "telegram update: {}: {}", self.field, self.problem)
    }
}

impl std::error::Error for UpdateError {}

impl Update {
    /// Parses and bounds a webhook body.
    pub fn parse(body: &[u8]) -> Result<Update, UpdateError> {
        if body.len() > MAX_UPDATE_BYTES {
            return Err(UpdateError {
                field: "(body)".into(),
                problem: format!("{} bytes, more than {MAX_UPDATE_BYTES}", body.len()),
            });
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let update: Update = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            UpdateError {
                field: if path == "." || path == "?" {
                    "(body)".into()
                } else {
                    path
                },
                problem: e.into_inner().to_string(),
            }
        })?;
        update.check_bounds()?;
        Ok(update)
    }

    /// The chat the update belongs to, which orders the inbox: None for updates the bot ignores.
    pub fn chat_id(&self) -> Option<i64> {
        self.message.as_ref().map(|m| m.chat.id)
    }

    fn check_bounds(&self) -> Result<(), UpdateError> {
        let Some(message) = &self.message else {
            return Ok(());
        };
        bound("message.text", message.text.as_deref(), MAX_TEXT_CHARS)?;
        if let Some(from) = &message.from {
            bound(
                "message.from.first_name",
                Some(&from.first_name),
                MAX_NAME_CHARS,
            )?;
            bound(
                "message.from.username",
                from.username.as_deref(),
                MAX_NAME_CHARS,
            )?;
            bound(
                "message.from.language_code",
                from.language_code.as_deref(),
                MAX_NAME_CHARS,
            )?;
        }
        Ok(())
    }
}

fn bound(field: &str, value: Option<&str>, max_chars: usize) -> Result<(), UpdateError> {
    match value {
        Some(v) if v.chars().count() > max_chars => Err(UpdateError {
            field: field.into(),
            problem: format!("longer than {max_chars} characters"),
        }),
        _ => Ok(()),
    }
}

/// What a message's text asks of the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/start`, with the deep link's payload (a pairing code, or anything a user typed after
    /// it: the worker parses it with `PairingCode::parse`, and a wrong one is a failed attempt).
    Start {
        payload: Option<String>,
    },
    Help,
    Skills,
    Status,
    Unpair,
    /// A bare pairing code. `text` is the message as sent: for a paired user it may simply be
    /// an eight-letter word, which the worker then runs as text.
    Code {
        code: PairingCode,
        text: String,
    },
    /// A command the bot does not know, without its slash (`"settings"`).
    Unknown {
        name: String,
    },
    /// A command addressed to another bot (`/help@other_bot`), in a group: not ours to answer.
    OtherBot,
    /// Anything else: a message for the tenant's agent.
    Text(String),
}

impl Command {
    /// Classifies a message's text. `bot_username` (without `@`) decides whether a
    /// `/command@bot` is ours; the comparison ignores case, as Telegram's usernames do.
    pub fn classify(text: &str, bot_username: &str) -> Command {
        let trimmed = text.trim();
        let Some(rest) = trimmed.strip_prefix('/') else {
            return match PairingCode::parse(trimmed) {
                Some(code) => Command::Code {
                    code,
                    text: text.to_owned(),
                },
                None => Command::Text(text.to_owned()),
            };
        };
        let (word, argument) = match rest.split_once(char::is_whitespace) {
            Some((word, argument)) => (word, argument.trim()),
            None => (rest, ""),
        };
        let name = match word.split_once('@') {
            Some((name, bot)) => {
                let ours = bot.eq_ignore_ascii_case(bot_username.trim_start_matches('@'));
                if !ours {
                    return Command::OtherBot;
                }
                name
            }
            None => word,
        };
        match name.to_ascii_lowercase().as_str() {
            "start" => Command::Start {
                payload: (!argument.is_empty())
                    .then(|| argument.chars().take(MAX_START_PAYLOAD_CHARS).collect()),
            },
            "help" => Command::Help,
            "skills" => Command::Skills,
            "status" => Command::Status,
            "unpair" => Command::Unpair,
            "" => Command::Text(text.to_owned()),
            _ => Command::Unknown {
                name: name.chars().take(MAX_NAME_CHARS).collect(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const BOT: &str = "exoclaw_bot";

    fn message_update(text: Option<&str>) -> serde_json::Value {
        json!({
            "update_id": 900_000_001,
            "message": {
                "message_id": 17,
                "from": {"id": 4242, "is_bot": false, "first_name": "Ada",
                         "username": "ada", "language_code": "en"},
                "chat": {"id": 4242, "type": "private", "first_name": "Ada"},
                "date": 1_760_000_000,
                "text": text,
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}]
            }
        })
    }

    fn parse(value: &serde_json::Value) -> Result<Update, UpdateError> {
        Update::parse(&serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn a_text_message_parses_with_its_sender_and_chat() {
        let update = parse(&message_update(Some("/start ABCD2345"))).unwrap();
        assert_eq!(update.update_id, 900_000_001);
        assert_eq!(update.chat_id(), Some(4242));
        let message = update.message.unwrap();
        assert_eq!(message.message_id, 17);
        assert_eq!(message.date, 1_760_000_000);
        assert_eq!(message.text.as_deref(), Some("/start ABCD2345"));
        assert_eq!(message.chat.kind, ChatKind::Private);
        let from = message.from.unwrap();
        assert_eq!(
            (from.id, from.is_bot, from.first_name.as_str()),
            (4242, false, "Ada")
        );
        assert_eq!(from.username.as_deref(), Some("ada"));
        assert_eq!(from.language_code.as_deref(), Some("en"));
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let update = parse(&json!({
            "update_id": 1,
            "message": {"message_id": 2, "chat": {"id": -100, "type": "channel"}, "date": 3}
        }))
        .unwrap();
        let message = update.message.unwrap();
        assert_eq!((message.from, message.text), (None, None));
        assert_eq!(message.chat.kind, ChatKind::Channel);
        let update = parse(&json!({
            "update_id": 1,
            "message": {"message_id": 2, "chat": {"id": 5, "type": "secret_chat"}, "date": 3}
        }))
        .unwrap();
        assert_eq!(update.message.unwrap().chat.kind, ChatKind::Other);
    }

    #[test]
    fn other_update_kinds_have_no_message() {
        let update = parse(&json!({
            "update_id": 5,
            "edited_message": message_update(Some("edited"))["message"].clone()
        }))
        .unwrap();
        assert_eq!(update.message, None);
        assert_eq!(update.chat_id(), None);
    }

    #[test]
    fn a_malformed_update_names_the_field() {
        let mut missing_id = message_update(Some("hi"));
        missing_id["message"]["from"]
            .as_object_mut()
            .unwrap()
            .remove("id");
        let mut bad_chat = message_update(Some("hi"));
        bad_chat["message"]["chat"]["id"] = json!("four");
        let cases = [
            (missing_id, "message.from"),
            (bad_chat, "message.chat.id"),
            (json!({"message": null}), "(body)"),
            (json!({"update_id": "x"}), "update_id"),
        ];
        for (value, field) in cases {
            let err = parse(&value).unwrap_err();
            assert_eq!(err.field, field, "{err}");
        }
        let err = Update::parse(b"{not json").unwrap_err();
        assert_eq!(err.field, "(body)");
    }

    #[test]
    fn sizes_are_bounded() {
        let long_text = "é".repeat(MAX_TEXT_CHARS + 1);
        let err = parse(&message_update(Some(&long_text))).unwrap_err();
        assert_eq!(err.field, "message.text");
        assert!(parse(&message_update(Some(&"é".repeat(MAX_TEXT_CHARS)))).is_ok());
        let mut long_name = message_update(Some("hi"));
        long_name["message"]["from"]["first_name"] = json!("x".repeat(MAX_NAME_CHARS + 1));
        assert_eq!(
            parse(&long_name).unwrap_err().field,
            "message.from.first_name"
        );
        let huge = vec![b' '; MAX_UPDATE_BYTES + 1];
        assert_eq!(Update::parse(&huge).unwrap_err().field, "(body)");
    }

    #[test]
    fn commands_are_classified_with_or_without_the_bot_suffix() {
        let code = PairingCode::parse("ABCD2345").unwrap();
        let cases = [
            ("/start", Command::Start { payload: None }),
            (
                "/start ABCD2345",
                Command::Start {
                    payload: Some("ABCD2345".into()),
                },
            ),
            (
                "/start@exoclaw_bot  ABCD2345 ",
                Command::Start {
                    payload: Some("ABCD2345".into()),
                },
            ),
            ("/START@ExoClaw_Bot", Command::Start { payload: None }),
            ("/help", Command::Help),
            ("/skills@exoclaw_bot", Command::Skills),
            (" /status ", Command::Status),
            ("/unpair now", Command::Unpair),
            ("/help@other_bot", Command::OtherBot),
            (
                "/settings",
                Command::Unknown {
                    name: "settings".into(),
                },
            ),
            (
                "abcd2345",
                Command::Code {
                    code: code.clone(),
                    text: "abcd2345".into(),
                },
            ),
            ("ABCD0345", Command::Text("ABCD0345".into())),
            ("What is 2 + 2?", Command::Text("What is 2 + 2?".into())),
            ("/", Command::Text("/".into())),
            ("/ hello", Command::Text("/ hello".into())),
        ];
        for (text, expected) in cases {
            assert_eq!(Command::classify(text, BOT), expected, "{text:?}");
        }
        assert_eq!(
            Command::classify("/help@exoclaw_bot", "@exoclaw_bot"),
            Command::Help
        );
    }

    #[test]
    fn a_start_payload_is_bounded() {
        let text = format!("/start {}", "A".repeat(1000));
        let Command::Start {
            payload: Some(payload),
        } = Command::classify(&text, BOT)
        else {
            panic!("not a start");
        };
        assert_eq!(payload.len(), MAX_START_PAYLOAD_CHARS);
    }
}
