//! One trainee's kit: the files (from the templates in `template/`, with the trainee's settings
//! filled in) and the ZIP that holds them.
//!
//! The ZIP has no top-level folder: "Extract All" on Windows and double-clicking on macOS both
//! make a folder named after the ZIP already. `setup.sh` keeps its executable bit (unix
//! permissions in the ZIP), though the README runs it as `sh setup.sh` so that it never matters.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// The checks a trainee runs first (see the script's own header).
pub const SETUP_SH: &str = include_str!("template/setup.sh");
const README_MD: &str = include_str!("template/README.md");
const AGENT_PY: &str = include_str!("template/python/agent.py");
const REQUIREMENTS_TXT: &str = include_str!("template/python/requirements.txt");
const AGENT_MJS: &str = include_str!("template/node/agent.mjs");
const PACKAGE_JSON: &str = include_str!("template/node/package.json");

/// Keeps the filled-in `.env` (and installed dependencies) out of a trainee's git history.
const GITIGNORE: &str = ".env\nnode_modules/\n__pycache__/\n.venv/\n";

/// What makes one trainee's kit theirs.
#[derive(Debug, Clone, Copy)]
pub struct KitSettings<'a> {
    /// The gateway's public base URL (`https://gateway.example`), without `/v1`.
    pub gateway_url: &'a str,
    /// The trainee's gateway key (`exo_…`), in the clear: the kit is how it reaches them.
    pub gateway_key: &'a str,
    pub user: &'a str,
}

/// One file of a kit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitFile {
    pub path: &'static str,
    pub contents: String,
    pub executable: bool,
}

/// The file name a kit is downloaded and written as.
pub fn zip_name(user: &str) -> String {
    format!("{user}-kit.zip")
}

/// Every file of the kit, in the order they are zipped.
pub fn files(settings: &KitSettings<'_>) -> Vec<KitFile> {
    let url = settings.gateway_url.trim_end_matches('/');
    let file = |path, contents: String| KitFile {
        path,
        contents,
        executable: false,
    };
    vec![
        file("README.md", fill(README_MD, settings.user, url)),
        file(".env", env_file(settings)),
        file(".env.example", env_example()),
        file(".gitignore", GITIGNORE.to_owned()),
        KitFile {
            path: "setup.sh",
            contents: SETUP_SH.to_owned(),
            executable: true,
        },
        file("python/agent.py", AGENT_PY.to_owned()),
        file("python/requirements.txt", REQUIREMENTS_TXT.to_owned()),
        file("node/agent.mjs", AGENT_MJS.to_owned()),
        file("node/package.json", PACKAGE_JSON.to_owned()),
    ]
}

/// The kit as ZIP bytes.
pub fn zip(settings: &KitSettings<'_>) -> Result<Vec<u8>, String> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for f in files(settings) {
        let mode = if f.executable { 0o755 } else { 0o644 };
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(mode);
        zip.start_file(f.path, options)
            .and_then(|()| zip.write_all(f.contents.as_bytes()).map_err(Into::into))
            .map_err(|e| format!("cannot add {} to the kit: {e}", f.path))?;
    }
    let cursor = zip
        .finish()
        .map_err(|e| format!("cannot finish the kit: {e}"))?;
    Ok(cursor.into_inner())
}

/// `.env`, filled in but for the trainee's own OpenAI key.
fn env_file(s: &KitSettings<'_>) -> String {
    format!(
        "# Your workshop settings, read by setup.sh and the starter projects.\n\
         # Keep this file private: it holds your personal gateway key.\n\
         OPENCLAW_GATEWAY_URL={url}\n\
         EXOCLAW_GATEWAY_KEY={key}\n\
         USER_ID={user}\n\
         # Paste your own OpenAI key (it starts with sk-) right after the = sign:\n\
         OPENAI_API_KEY=\n",
        url = s.gateway_url.trim_end_matches('/'),
        key = s.gateway_key,
        user = s.user,
    )
}

/// `.env.example`: the same names, no values, safe to share.
fn env_example() -> String {
    "# The settings this project reads; copy to .env and fill in (your kit's .env already is).\n\
     OPENCLAW_GATEWAY_URL=\n\
     EXOCLAW_GATEWAY_KEY=\n\
     USER_ID=\n\
     OPENAI_API_KEY=\n"
        .to_owned()
}

fn fill(template: &str, user: &str, url: &str) -> String {
    template
        .replace("{{USER_ID}}", user)
        .replace("{{GATEWAY_URL}}", url)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const SETTINGS: KitSettings<'static> = KitSettings {
        gateway_url: "https://gw.example/",
        gateway_key: "exo_0123456789abcdef",
        user: "trainee-07",
    };

    #[test]
    fn env_holds_the_trainees_settings_and_the_example_no_secret() {
        let files = files(&SETTINGS);
        let env = &files.iter().find(|f| f.path == ".env").unwrap().contents;
        for line in [
            "OPENCLAW_GATEWAY_URL=https://gw.example\n",
            "EXOCLAW_GATEWAY_KEY=exo_0123456789abcdef\n",
            "USER_ID=trainee-07\n",
            "OPENAI_API_KEY=\n",
        ] {
            assert!(env.contains(line), "{line:?} in\n{env}");
        }
        let example = &files
            .iter()
            .find(|f| f.path == ".env.example")
            .unwrap()
            .contents;
        assert!(!example.contains("exo_") && !example.contains("trainee-07"));
        let readme = &files
            .iter()
            .find(|f| f.path == "README.md")
            .unwrap()
            .contents;
        assert!(readme.contains("3 steps to your first agent"));
        assert!(readme.contains("trainee-07") && !readme.contains("{{"));
    }

    #[test]
    fn the_zip_holds_every_file_and_an_executable_setup_script() {
        let bytes = zip(&SETTINGS).unwrap();
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let expected = files(&SETTINGS);
        assert_eq!(archive.len(), expected.len());
        for f in expected {
            let mut entry = archive.by_name(f.path).unwrap();
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            assert_eq!(text, f.contents, "{}", f.path);
            let mode = entry.unix_mode().unwrap() & 0o777;
            assert_eq!(mode, if f.executable { 0o755 } else { 0o644 }, "{}", f.path);
        }
    }

    #[test]
    fn setup_sh_is_valid_posix_sh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("setup.sh");
        std::fs::write(&path, SETUP_SH).unwrap();
        for shell in ["sh", "bash"] {
            let out = std::process::Command::new(shell)
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{shell} -n: {out:?}");
        }
        // shellcheck is optional: lint when it is installed.
        if let Ok(out) = std::process::Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(&path)
            .output()
        {
            assert!(
                out.status.success(),
                "shellcheck:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}
