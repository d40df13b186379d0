//! A table that keeps itself current: rendered on the server from JSON items, then rebuilt every
//! few seconds by `admin.js` from the same JSON, fetched again.
//!
//! The columns are described once, here; the table's markup carries them (`data-field`,
//! `data-format`) so the script builds the same cells from the same JSON. `cell` below and
//! `cell` in `admin.js` format a value the same way: keep them in step. The script only ever
//! writes text (never HTML), so a user id cannot inject markup.
//!
//! Not for: tables that change only when the operator acts (keys, runs): those are plain.

use askama::Template;
use serde_json::Value;

/// How a column shows its JSON value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// As it is.
    Text,
    /// A number, rounded to a whole one.
    Whole,
    /// A boolean as `up` or `down`.
    UpDown,
}

impl Format {
    pub fn name(&self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Whole => "whole",
            Format::UpDown => "updown",
        }
    }
}

/// One column: the JSON field it shows, its heading, its format.
pub struct Column {
    pub field: &'static str,
    pub title: &'static str,
    pub format: Format,
}

pub struct LiveCell {
    pub field: &'static str,
    pub text: String,
    /// A class for the cell's state (`up`, `down`), or empty.
    pub state: &'static str,
}

pub struct LiveRow {
    /// The row's name (its `key` field): `data-row`, for finding it.
    pub name: String,
    pub cells: Vec<LiveCell>,
}

/// A live table: where its JSON comes from and which items it shows.
#[derive(Template)]
#[template(path = "admin_live_table.html")]
pub struct LiveTable {
    pub id: String,
    /// The JSON the script fetches again.
    pub source: String,
    /// The array of items in that JSON.
    pub list: &'static str,
    /// The field that names an item.
    pub key: &'static str,
    /// Only items whose field equals the value (one pool's nodes).
    pub only: Option<(&'static str, String)>,
    /// Milliseconds between refreshes.
    pub every_ms: u64,
    /// What the table says when there is no item.
    pub empty: String,
    pub columns: &'static [Column],
    pub rows: Vec<LiveRow>,
}

impl LiveTable {
    /// A table of `items` (the JSON array `list` of `source`), with its first rows made here.
    pub fn new(
        id: impl Into<String>,
        source: impl Into<String>,
        list: &'static str,
        key: &'static str,
        columns: &'static [Column],
        items: &[Value],
    ) -> LiveTable {
        LiveTable {
            id: id.into(),
            source: source.into(),
            list,
            key,
            only: None,
            every_ms: 3000,
            empty: "Nothing yet.".to_owned(),
            columns,
            rows: Vec::new(),
        }
        .with_rows(items)
    }

    /// Shows only the items whose `field` is `value`.
    pub fn only(mut self, field: &'static str, value: String, items: &[Value]) -> LiveTable {
        self.only = Some((field, value));
        self.with_rows(items)
    }

    pub fn empty(mut self, text: impl Into<String>) -> LiveTable {
        self.empty = text.into();
        self
    }

    /// `data-where`: `field=value`, or empty.
    pub fn only_attribute(&self) -> String {
        self.only
            .as_ref()
            .map(|(field, value)| format!("{field}={value}"))
            .unwrap_or_default()
    }

    fn with_rows(mut self, items: &[Value]) -> LiveTable {
        let shown = |item: &&Value| match &self.only {
            Some((field, value)) => item[*field].as_str() == Some(value.as_str()),
            None => true,
        };
        let rows = items
            .iter()
            .filter(shown)
            .map(|item| LiveRow {
                name: cell(Format::Text, &item[self.key]).0,
                cells: self
                    .columns
                    .iter()
                    .map(|column| {
                        let (text, state) = cell(column.format, &item[column.field]);
                        LiveCell {
                            field: column.field,
                            text,
                            state,
                        }
                    })
                    .collect(),
            })
            .collect();
        self.rows = rows;
        self
    }
}

/// A value as a cell shows it, and the cell's state class. Mirrors `cell` in `admin.js`.
pub fn cell(format: Format, value: &Value) -> (String, &'static str) {
    match (format, value) {
        (_, Value::Null) => ("—".to_owned(), ""),
        (_, Value::String(s)) if s.is_empty() => ("—".to_owned(), ""),
        (Format::UpDown, Value::Bool(true)) => ("up".to_owned(), "up"),
        (Format::UpDown, Value::Bool(false)) => ("down".to_owned(), "down"),
        (Format::Whole, Value::Number(n)) => (format!("{}", n.as_f64().unwrap_or(0.0).round()), ""),
        (_, Value::String(s)) => (s.clone(), ""),
        (_, other) => (other.to_string(), ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const COLUMNS: &[Column] = &[
        Column {
            field: "name",
            title: "Node",
            format: Format::Text,
        },
        Column {
            field: "healthy",
            title: "Health",
            format: Format::UpDown,
        },
        Column {
            field: "latency",
            title: "Latency",
            format: Format::Whole,
        },
    ];

    #[test]
    fn cells_show_values_as_the_script_does() {
        assert_eq!(cell(Format::Text, &json!(null)), ("—".into(), ""));
        assert_eq!(cell(Format::Text, &json!("")), ("—".into(), ""));
        assert_eq!(cell(Format::Text, &json!("a<b")), ("a<b".into(), ""));
        assert_eq!(cell(Format::Text, &json!(7)), ("7".into(), ""));
        assert_eq!(cell(Format::Whole, &json!(2.5)), ("3".into(), ""));
        assert_eq!(cell(Format::Whole, &json!(12.2)), ("12".into(), ""));
        assert_eq!(cell(Format::UpDown, &json!(true)), ("up".into(), "up"));
        assert_eq!(cell(Format::UpDown, &json!(false)), ("down".into(), "down"));
    }

    #[test]
    fn a_table_renders_its_items_escaped_and_its_columns_for_the_script() {
        let items = [
            json!({ "name": "<b>a</b>", "pool": "p", "healthy": true, "latency": 1.6 }),
            json!({ "name": "b", "pool": "q", "healthy": false, "latency": null }),
        ];
        let table = LiveTable::new("nodes-p", "/nodes.json", "nodes", "name", COLUMNS, &items)
            .only("pool", "p".into(), &items)
            .empty("No node.");
        assert_eq!(table.rows.len(), 1, "only pool p");
        let html = table.render().unwrap();
        assert!(html.contains("data-source=\"/nodes.json\""), "{html}");
        assert!(html.contains("data-where=\"pool=p\""), "{html}");
        assert!(
            html.contains("data-field=\"healthy\" data-format=\"updown\""),
            "{html}"
        );
        assert!(html.contains("&#60;b&#62;a&#60;/b&#62;") || html.contains("&lt;b&gt;"));
        assert!(!html.contains("<b>a</b>"), "escaped: {html}");
        assert!(
            html.contains("<td class=\"f-healthy up\">up</td>"),
            "{html}"
        );
        assert!(html.contains("<td class=\"f-latency\">2</td>"), "{html}");
    }
}
