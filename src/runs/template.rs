//! A run's prompt: a template's instructions with the caller's input put in its placeholders.
//!
//! The input is checked against the template's declared fields before anything is queued: an
//! unknown field, a missing required one, a value that is not text or is longer than its
//! `max_len` is a 400 that names the field. Substitution is one pass over the instructions, so
//! a value that itself holds `{{…}}` is sent as written, never expanded.
//!
//! Not for: validating the template itself (`config::agents`, at load time).

use serde_json::{Map, Value};

use crate::config::Template;

/// Renders `template` with `input` (a JSON object of text fields).
pub fn render(template: &Template, input: &Value) -> Result<String, String> {
    let Some(fields) = input.as_object() else {
        return Err("`input` must be a JSON object of text fields".to_owned());
    };
    check(template, fields)?;
    let mut prompt = String::with_capacity(template.instructions.len());
    let mut rest = template.instructions.as_str();
    while let Some(start) = rest.find("{{") {
        prompt.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // Validated at load: every `{{` is closed and names a declared input.
        let Some(end) = after.find("}}") else {
            prompt.push_str(&rest[start..]);
            return Ok(prompt);
        };
        let name = after[..end].trim();
        if let Some(Value::String(value)) = fields.get(name) {
            prompt.push_str(value);
        }
        rest = &after[end + 2..];
    }
    prompt.push_str(rest);
    Ok(prompt)
}

fn check(template: &Template, fields: &Map<String, Value>) -> Result<(), String> {
    if let Some(unknown) = fields.keys().find(|k| !template.inputs.contains_key(*k)) {
        let known: Vec<&str> = template.inputs.keys().map(String::as_str).collect();
        return Err(format!(
            "`input.{}` is not an input of this template (inputs: {})",
            shown(unknown),
            known.join(", ")
        ));
    }
    for (name, spec) in &template.inputs {
        match fields.get(name) {
            None | Some(Value::Null) if spec.required => {
                return Err(format!("`input.{name}` is required"))
            }
            None | Some(Value::Null) => {}
            Some(Value::String(value)) => {
                if spec.required && value.trim().is_empty() {
                    return Err(format!("`input.{name}` is required"));
                }
                let chars = value.chars().count();
                if chars > spec.max_len {
                    return Err(format!(
                        "`input.{name}` is {chars} characters long; at most {} are allowed",
                        spec.max_len
                    ));
                }
            }
            Some(_) => return Err(format!("`input.{name}` must be text")),
        }
    }
    Ok(())
}

fn shown(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use serde_json::json;

    fn summarize() -> Template {
        let yaml = r#"
server: { listen: "127.0.0.1:8787" }
pools: { openclaw: { nodes: [ { name: n, addr: "127.0.0.1:18789" } ] } }
templates:
  summarize:
    name: Summarize
    agent: main
    instructions: "Summarize for {{audience}}: {{ text }}"
    inputs:
      text: { required: true, max_len: 20 }
      audience: {}
"#;
        Config::from_yaml(yaml).unwrap().templates["summarize"].clone()
    }

    #[test]
    fn placeholders_take_the_input_and_missing_optional_ones_are_empty() {
        let t = summarize();
        assert_eq!(
            render(&t, &json!({"text": "hello", "audience": "kids"})).unwrap(),
            "Summarize for kids: hello"
        );
        assert_eq!(
            render(&t, &json!({"text": "hello"})).unwrap(),
            "Summarize for : hello"
        );
    }

    #[test]
    fn a_value_holding_a_placeholder_is_not_expanded() {
        let t = summarize();
        assert_eq!(
            render(&t, &json!({"text": "{{audience}}", "audience": "x"})).unwrap(),
            "Summarize for x: {{audience}}"
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let t = summarize();
        let cases = [
            (json!({}), "`input.text` is required"),
            (json!({"text": "   "}), "`input.text` is required"),
            (
                json!({"text": "x", "colour": "red"}),
                "`input.colour` is not an input",
            ),
            (json!({"text": 5}), "`input.text` must be text"),
            (
                json!({"text": "é".repeat(21)}),
                "`input.text` is 21 characters long",
            ),
            (json!("text"), "`input` must be a JSON object"),
        ];
        for (input, expected) in cases {
            let e = render(&t, &input).unwrap_err();
            assert!(e.starts_with(expected), "{input}: {e}");
        }
        // Twenty characters (not bytes) fit.
        assert!(render(&t, &json!({"text": "é".repeat(20)})).is_ok());
    }
}
