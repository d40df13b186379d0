//! The `usage` object as OpenAI-compatible nodes write it, and the lenient JSON pieces the
//! body and stream parsers share to read it.
//!
//! This is the single place that knows the field names of a usage object: chat completions
//! and embeddings say `prompt_tokens` / `completion_tokens` / `total_tokens`, the Responses API
//! says `input_tokens` / `output_tokens` / `total_tokens`.
//!
//! Everything here is *lenient* on purpose: a node that writes a count as `12.0`, a model as
//! `null` or a usage as a string must not make the gateway lose the rest of the event, so a
//! field of an unexpected type reads as "absent" instead of failing the whole document.
//!
//! Not for: deciding where the usage object sits in a body or an event (`json.rs`, `sse.rs`),
//! or the request side (`rewrite.rs`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::TokenUsage;

/// The visitor methods that read "anything else" as the given absent value, draining maps and
/// sequences so the surrounding document still parses.
macro_rules! forward_to_ignored {
    ($absent:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok($absent)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($absent)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($absent)
        }
    };
}

/// A model name longer than this is cut (on a character boundary) before it is kept: the name
/// comes from the node and ends up in every ledger row, so a broken or hostile node must not be
/// able to write megabytes per request.
pub const MODEL_NAME_MAX_BYTES: usize = 256;

/// A usage object with either naming scheme; every count is optional and lenient.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    total_tokens: Count,
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
}

impl WireUsage {
    /// The counts as the gateway records them, or None when the object names no count at all
    /// (`{}`), which says nothing about what the request cost.
    ///
    /// A missing prompt or completion count is 0 (embeddings have no completion); a missing
    /// total is prompt + completion.
    pub(crate) fn token_usage(&self) -> Option<TokenUsage> {
        let prompt = self.prompt_tokens.0.or(self.input_tokens.0);
        let completion = self.completion_tokens.0.or(self.output_tokens.0);
        let total = self.total_tokens.0;
        if prompt.is_none() && completion.is_none() && total.is_none() {
            return None;
        }
        let prompt = prompt.unwrap_or(0);
        let completion = completion.unwrap_or(0);
        Some(TokenUsage {
            prompt,
            completion,
            total: total.unwrap_or(prompt.saturating_add(completion)),
        })
    }
}

/// A model name as the gateway keeps it: cut to at most [`MODEL_NAME_MAX_BYTES`] on a character
/// boundary. Callers drop empty names.
pub(crate) fn bounded_model_name(name: &str) -> &str {
    let mut end = name.len().min(MODEL_NAME_MAX_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A token count: a non-negative JSON number. Floats are truncated (`12.0` → 12); negative
/// numbers, non-finite numbers and every other JSON type read as absent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Count(pub(crate) Option<u64>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl<'de> Visitor<'de> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_u64<E>(self, v: u64) -> Result<Count, E> {
                Ok(Count(Some(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Count, E> {
                Ok(Count(u64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Count, E> {
                // `as` saturates at u64::MAX, which is fine for a count nobody will ever reach.
                Ok(Count((v.is_finite() && v >= 0.0).then_some(v as u64)))
            }
            fn visit_str<E>(self, _: &str) -> Result<Count, E> {
                Ok(Count(None))
            }
            forward_to_ignored!(Count(None));
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// A JSON string, borrowed from the input when it has no escapes; every other JSON type reads
/// as absent.
#[derive(Debug, Default)]
pub(crate) struct Text<'a>(pub(crate) Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Some(Cow::Owned(v))))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Text<'a>, E> {
                Ok(Text(None))
            }
            forward_to_ignored!(Text(None));
        }
        deserializer.deserialize_any(TextVisitor(PhantomData))
    }
}

/// A JSON object read as `T`, or absent when the value is anything else (null, a string, an
/// array…). Only the object case can fail, and only when `T` itself rejects the object.
#[derive(Debug)]
pub(crate) struct Lenient<T>(pub(crate) Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for LenientVisitor<T> {
            type Value = Lenient<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lenient<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|v| Lenient(Some(v)))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Lenient<T>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_unit<E>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E>(self) -> Result<Lenient<T>, E> {
                Ok(Lenient(None))
            }
        }
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(json: &str) -> Option<TokenUsage> {
        serde_json::from_str::<Lenient<WireUsage>>(json)
            .ok()
            .and_then(|u| u.0)
            .and_then(|u| u.token_usage())
    }

    #[test]
    fn reads_both_naming_schemes() {
        let chat = usage(r#"{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}"#);
        assert_eq!(
            chat,
            Some(TokenUsage {
                prompt: 3,
                completion: 5,
                total: 8
            })
        );
        let responses = usage(r#"{"input_tokens":3,"output_tokens":5,"total_tokens":8}"#);
        assert_eq!(responses, chat);
    }

    #[test]
    fn fills_missing_counts() {
        let embeddings = usage(r#"{"prompt_tokens":7,"total_tokens":7}"#);
        assert_eq!(
            embeddings,
            Some(TokenUsage {
                prompt: 7,
                completion: 0,
                total: 7
            })
        );
        let no_total = usage(r#"{"prompt_tokens":2,"completion_tokens":3}"#);
        assert_eq!(
            no_total,
            Some(TokenUsage {
                prompt: 2,
                completion: 3,
                total: 5
            })
        );
        assert_eq!(usage("{}"), None);
        assert_eq!(
            usage(r#"{"prompt_tokens_details":{"cached_tokens":1}}"#),
            None
        );
    }

    #[test]
    fn odd_types_read_as_absent_instead_of_failing() {
        let odd = usage(
            r#"{"prompt_tokens":4.0,"completion_tokens":-1,"total_tokens":"9",
                "input_tokens":[1],"output_tokens":{"a":1}}"#,
        );
        assert_eq!(
            odd,
            Some(TokenUsage {
                prompt: 4,
                completion: 0,
                total: 4
            })
        );
        assert_eq!(usage("null"), None);
        assert_eq!(usage(r#""12""#), None);
        assert_eq!(usage("[1,2]"), None);
    }

    #[test]
    fn model_names_are_bounded_on_a_char_boundary() {
        assert_eq!(bounded_model_name(""), "");
        assert_eq!(bounded_model_name("gpt-4o"), "gpt-4o");
        let long = "é".repeat(MODEL_NAME_MAX_BYTES);
        let kept = bounded_model_name(&long);
        assert_eq!(kept.len(), MODEL_NAME_MAX_BYTES);
        assert!(kept.chars().all(|c| c == 'é'));
        let odd = format!("x{long}");
        assert_eq!(bounded_model_name(&odd).len(), MODEL_NAME_MAX_BYTES - 1);
    }
}
