//! Trainee onboarding: a cohort of trainees each gets a gateway key inside a ready-made kit
//! (a ZIP with `.env`, `setup.sh`, a README and starter projects), handed out as a QR code of a
//! one-time download link.
//!
//! - `roster`: the cohort's user ids (`trainee-01`…, or sanitised first names).
//! - `kit`: one trainee's ZIP, from the templates in `template/` (`setup.sh` is a real shell
//!   script there, so it can be read and linted as one).
//! - `link`: one-time link tokens (256 random bits, stored only as hashes).
//! - `store`: the SQL of `onboard_links` (claiming a link once, expiring a cohort's links).
//! - `sheet`: the printable `index.html` and one PNG per trainee, with QR codes (`qr`).
//! - `cohort`: issuing a whole cohort (keys, kits, links, sheet) and revoking it.
//! - `download`: the answers of `GET /onboard/<token>` (the ZIP, or a short HTML page).
//!
//! Not here: the HTTP routing (the proxy lets `/onboard/*` through without a gateway key and
//! the sidecar calls `download`), and the key store itself (`auth`).

pub mod cohort;
pub mod download;
pub mod kit;
pub mod link;
pub mod qr;
pub mod roster;
pub mod sheet;
pub mod store;
