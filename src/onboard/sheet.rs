//! The printable sheet: `index.html` with one card a trainee (their name, the QR code of their
//! kit's one-time link, the link itself in small print, and when it expires), and one PNG of
//! each code, `<user>.png`, for sending to a trainee who is not in the room.
//!
//! The sheet holds live links: whoever scans one first gets that kit. Print it, hand the cards
//! out, and delete the folder after the event.

use std::fmt::Write as _;

use super::qr;

/// One card of the sheet.
#[derive(Debug, Clone)]
pub struct Card {
    pub user: String,
    pub link: String,
}

/// The sheet's HTML.
pub fn html(cards: &[Card], expires_ms: u64) -> Result<String, String> {
    let expires = utc_label(expires_ms);
    let mut body = String::new();
    for card in cards {
        let code = qr::encode(&card.link)?;
        let _ = write!(
            body,
            "<section class=\"card\">\n<h2>{user}</h2>\n{svg}\n<p class=\"how\">Scan with your \
             phone camera to download your kit. The link works once.</p>\n<p \
             class=\"link\">{link}</p>\n</section>\n",
            user = escape(&card.user),
            svg = qr::svg(&code, 200),
            link = escape(&card.link),
        );
    }
    Ok(format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>Workshop kits</title>\n<meta name=\"robots\" content=\"noindex\">\n<style>\n\
         body {{ font-family: system-ui, sans-serif; margin: 1cm; }}\n\
         .cards {{ display: flex; flex-wrap: wrap; gap: 0.5cm; }}\n\
         .card {{ width: 6cm; border: 1px dashed #999; padding: 0.4cm; text-align: center; \
         break-inside: avoid; page-break-inside: avoid; }}\n\
         .card h2 {{ margin: 0 0 0.2cm; font-size: 16pt; }}\n\
         .card svg {{ width: 5cm; height: 5cm; }}\n\
         .how {{ font-size: 9pt; margin: 0.2cm 0; }}\n\
         .link {{ font-size: 6pt; word-break: break-all; color: #555; margin: 0; }}\n\
         @media print {{ .note {{ display: none; }} }}\n\
         </style>\n</head>\n<body>\n\
         <p class=\"note\">{count} kits. Each link works once, until {expires}. Cut along the \
         dashed lines and give each trainee their own card; this page holds live links, so \
         keep it private. (This note is not printed.)</p>\n\
         <div class=\"cards\">\n{body}</div>\n</body>\n</html>\n",
        count = cards.len(),
    ))
}

/// `YYYY-MM-DD HH:MM UTC` for Unix milliseconds.
pub fn utc_label(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = crate::clock::civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60
    )
}

/// Text safe inside HTML elements and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_label(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_label(951_825_600_000), "2000-02-29 12:00 UTC");
        assert_eq!(utc_label(1_767_225_599_000), "2025-12-31 23:59 UTC");
    }

    #[test]
    fn the_sheet_has_a_card_with_a_code_per_trainee() {
        let cards = [
            Card {
                user: "ana".into(),
                link: "https://gw.example/onboard/aa".into(),
            },
            Card {
                user: "<bo>".into(),
                link: "https://gw.example/onboard/bb?x=1&y=2".into(),
            },
        ];
        let html = html(&cards, 0).unwrap();
        assert_eq!(html.matches("<section class=\"card\">").count(), 2);
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("<h2>&lt;bo&gt;</h2>"));
        assert!(html.contains("onboard/bb?x=1&amp;y=2"));
        assert!(html.contains("until 1970-01-01 00:00 UTC"));
    }
}
