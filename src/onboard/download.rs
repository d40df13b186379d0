//! The answers of `GET /onboard/<token>`: the kit as a ZIP attachment, or a short HTML page
//! that tells the person holding the phone what happened and what to do.
//!
//! These are pages for people, not API errors, so they are HTML rather than the OpenAI-shaped
//! JSON of `api_error`. None of them is cached or indexed, and none names the trainee.

use http::Response;

use super::kit;
use super::store::{Claim, GoneReason};

/// The response to a download attempt.
pub fn response(claim: Claim) -> Response<Vec<u8>> {
    match claim {
        Claim::Kit { user, zip } => Response::builder()
            .status(200)
            .header("content-type", "application/zip")
            .header(
                "content-disposition",
                format!("attachment; filename=\"{}\"", kit::zip_name(&user)),
            )
            .header("content-length", zip.len())
            .header("cache-control", "no-store")
            .header("x-robots-tag", "noindex")
            .body(zip)
            .unwrap_or_else(|_| Response::new(Vec::new())),
        Claim::Gone(reason) => page(410, "This link no longer works", gone_sentence(reason)),
        Claim::Unknown => not_found(),
    }
}

/// 404: no kit has this link.
pub fn not_found() -> Response<Vec<u8>> {
    page(
        404,
        "Link not found",
        "This is not a kit link: check that you scanned your own code, or ask the organiser.",
    )
}

fn gone_sentence(reason: GoneReason) -> &'static str {
    match reason {
        GoneReason::Used => {
            "This link has already been used: each kit link works once. If you have not \
             downloaded your kit yourself, ask the organiser for a new one."
        }
        GoneReason::Expired => "This link has expired: ask the organiser for a new kit.",
        GoneReason::Revoked => {
            "This link has been withdrawn by the organiser: ask them for a new kit."
        }
    }
}

fn page(status: u16, title: &str, sentence: &str) -> Response<Vec<u8>> {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta \
         name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
         </head>\n<body style=\"font-family: system-ui, sans-serif; margin: 2em; font-size: \
         1.2em;\">\n<h1>{title}</h1>\n<p>{sentence}</p>\n</body>\n</html>\n"
    )
    .into_bytes();
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .header("x-robots-tag", "noindex")
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kit_is_a_zip_attachment_named_for_its_user() {
        let r = response(Claim::Kit {
            user: "trainee-01".into(),
            zip: b"PK".to_vec(),
        });
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/zip");
        assert_eq!(
            r.headers()["content-disposition"],
            "attachment; filename=\"trainee-01-kit.zip\""
        );
        assert_eq!(r.body(), b"PK");
    }

    #[test]
    fn used_expired_and_revoked_links_are_410_pages() {
        for (reason, words) in [
            (GoneReason::Used, "already been used"),
            (GoneReason::Expired, "expired"),
            (GoneReason::Revoked, "withdrawn"),
        ] {
            let r = response(Claim::Gone(reason));
            assert_eq!(r.status(), 410);
            assert!(r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"));
            assert!(String::from_utf8_lossy(r.body()).contains(words));
        }
        assert_eq!(response(Claim::Unknown).status(), 404);
    }
}
