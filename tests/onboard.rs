//! Trainee onboarding end to end: `exoclaw onboard` issues kits against a real gateway and mock
//! node; the kit's own `setup.sh` runs for real under sh (dash) and bash; one-time links are
//! downloaded over HTTP; `onboard revoke` cuts the cohort off; `usage --top/--csv` reports.

mod common;

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{bare_client, chat_body, client, Gateway, Setup, PROVIDER_KEY};
use exoclaw::mock::{MockNode, MockOptions};

const KEYS_ON: &str = "auth: { mode: byok, require_key: true }\n";
const CODEX: &str = "auth: { mode: codex, require_key: true }\n";

/// Issues `count` kits for `trainee-01`…; returns the kits folder.
fn issue(gw: &Gateway, count: usize) -> PathBuf {
    let out = gw.cli(&[
        "onboard",
        "--count",
        &count.to_string(),
        "--prefix",
        "trainee",
        "--url",
        &gw.url(""),
        "--out",
        "kits",
    ]);
    assert!(out.status.success(), "onboard: {out:?}");
    gw.dir.path().join("kits")
}

/// The one-time links on the printed sheet, in card order.
fn links(kits: &Path) -> Vec<String> {
    let html = std::fs::read_to_string(kits.join("index.html")).unwrap();
    html.split("<p class=\"link\">")
        .skip(1)
        .map(|rest| rest.split('<').next().unwrap().to_owned())
        .collect()
}

/// Unzips a kit into a fresh directory, keeping unix modes.
fn unzip(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let path = dir.path().join(entry.enclosed_name().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        std::fs::write(&path, contents).unwrap();
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    dir
}

/// Sets `NAME=value` in the kit's `.env`.
fn set_env(kit: &Path, name: &str, value: &str) {
    let path = kit.join(".env");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited: String = text
        .lines()
        .map(|line| match line.split_once('=') {
            Some((n, _)) if n == name => format!("{name}={value}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    std::fs::write(path, edited).unwrap();
}

fn env_value(kit: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(kit.join(".env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in .env:\n{text}"))
        .to_owned()
}

/// Runs the kit's `setup.sh` under `shell` from another directory (it must find its `.env` by
/// itself), with `stdin` fed in.
async fn setup_sh(shell: &str, kit: &Path, args: &[&str], stdin: &str) -> Output {
    let script = kit.join("setup.sh");
    let (shell, args, stdin) = (
        shell.to_owned(),
        args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        stdin.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&shell)
            .arg(&script)
            .args(&args)
            .current_dir(std::env::temp_dir())
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("OPENAI_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run {shell}: {e}"));
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// setup.sh failed with `sentence` as its last line, and printed no secret.
fn assert_fails_with(out: &Output, sentence: &str, secrets: &[&str]) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout, "", "nothing on stdout when a check fails");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains(sentence),
        "last line {last:?}, wanted {sentence:?}"
    );
    assert_no_secret(out, secrets);
}

fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in secrets {
        assert!(!all.contains(secret), "{secret} printed:\n{all}");
    }
}

/// Waits (up to 5 s) until the running gateway knows a key the CLI just created (its key sync
/// looks for changes every few hundred milliseconds).
async fn wait_for_key(gw: &Gateway, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = bare_client()
            .get(gw.url("/api/subscriptions/me"))
            .header("x-gateway-key", key)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "key still {} after 5 s",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 5 s) until a chat request with `key` gets `status`.
async fn wait_for_chat_status(gw: &Gateway, key: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client()
            .post(gw.url("/v1/chat/completions"))
            .header("x-gateway-key", key)
            .json(&chat_body(false))
            .send()
            .await
            .unwrap();
        if r.status() == status {
            return;
        }
        assert!(Instant::now() < deadline, "still {} after 5 s", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn setup_sh_says_agent_ready_and_names_each_problem_in_one_sentence() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;
    let kits = issue(&gw, 2);
    let kit = unzip(&std::fs::read(kits.join("trainee-01-kit.zip")).unwrap());
    let kit = kit.path();
    let key = env_value(kit, "EXOCLAW_GATEWAY_KEY");
    wait_for_key(&gw, &key).await;
    let secrets = [key.as_str(), PROVIDER_KEY];

    // As it comes: no OpenAI key yet.
    for shell in ["sh", "bash"] {
        let out = setup_sh(shell, kit, &[], "").await;
        assert_fails_with(&out, "OPENAI_API_KEY in .env is empty", &secrets);
    }

    set_env(kit, "OPENAI_API_KEY", PROVIDER_KEY);
    for shell in ["sh", "bash"] {
        let out = setup_sh(shell, kit, &[], "").await;
        assert!(out.status.success(), "{shell}: {out:?}");
        assert_eq!(text(&out.stdout), "Agent ready.\n", "{shell}");
        assert_no_secret(&out, &secrets);
    }
    let chats: Vec<_> = node
        .seen()
        .into_iter()
        .filter(|r| r.path == "/v1/chat/completions")
        .collect();
    assert_eq!(chats.len(), 2, "one test completion per run");
    assert_eq!(
        chats[0].headers["authorization"],
        format!("Bearer {PROVIDER_KEY}"),
        "byok: the trainee's own key reaches the node"
    );
    assert_eq!(chats[0].headers["x-forwarded-user"], "trainee-01");

    // A mistyped gateway address (port 1: nothing listens there, whatever other tests bind).
    set_env(kit, "OPENCLAW_GATEWAY_URL", "http://127.0.0.1:1");
    let out = setup_sh("sh", kit, &[], "").await;
    assert_fails_with(
        &out,
        "Cannot reach the gateway at http://127.0.0.1:1:",
        &secrets,
    );
    set_env(kit, "OPENCLAW_GATEWAY_URL", &gw.url(""));

    // A damaged key is refused by the gateway.
    let last = if key.ends_with('0') { '1' } else { '0' };
    let damaged = format!("{}{last}", &key[..key.len() - 1]);
    set_env(kit, "EXOCLAW_GATEWAY_KEY", &damaged);
    let out = setup_sh("sh", kit, &[], "").await;
    assert_fails_with(
        &out,
        "does not accept the EXOCLAW_GATEWAY_KEY in .env",
        &secrets,
    );
    set_env(kit, "EXOCLAW_GATEWAY_KEY", &key);

    // The organiser revokes the cohort.
    let out = gw.cli(&["onboard", "revoke", "--prefix", "trainee"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "trainee-01\ntrainee-02\n");
    wait_for_chat_status(&gw, &key, 401).await;
    for shell in ["sh", "bash"] {
        let out = setup_sh(shell, kit, &[], "").await;
        assert_fails_with(
            &out,
            "(it was changed or has been revoked): ask the organiser for a new kit.",
            &secrets,
        );
    }
}

#[tokio::test]
async fn setup_sh_auth_codex_stores_the_token_that_the_next_request_uses() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(CODEX)).await;
    let kits = issue(&gw, 1);
    let kit = unzip(&std::fs::read(kits.join("trainee-01-kit.zip")).unwrap());
    let kit = kit.path();
    let key = env_value(kit, "EXOCLAW_GATEWAY_KEY");
    wait_for_key(&gw, &key).await;
    let token = "oauth_trainee_codex_session_42";

    let out = setup_sh("sh", kit, &["--auth", "codex"], "\n").await;
    assert_fails_with(&out, "No token was pasted", &[&key]);

    // No OPENAI_API_KEY needed; the token comes on stdin (no terminal, so no stty).
    let out = setup_sh("sh", kit, &["--auth", "codex"], &format!("{token}\n")).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(text(&out.stdout), "Agent ready.\n");
    assert_no_secret(&out, &[&key, token]);
    let seen = node.seen();
    let chat = seen
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .expect("the test completion reached the node");
    assert_eq!(chat.headers["x-codex-token"], token);
    assert!(!chat.headers.contains_key("authorization"));

    // The stored token serves the trainee's next request, from any client.
    let r = bare_client()
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &key)
        .json(&chat_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(node.seen().last().unwrap().headers["x-codex-token"], token);
}

#[tokio::test]
async fn a_kit_link_works_once_and_unknown_links_are_404() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;
    let kits = issue(&gw, 3);
    let links = links(&kits);
    assert_eq!(links.len(), 3);
    let png = std::fs::read(kits.join("trainee-02.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));

    // The database holds the kits sealed: no gateway key in the clear.
    let blobs: Vec<Vec<u8>> = gw
        .db()
        .prepare("SELECT kit_zip FROM onboard_links")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(blobs.len(), 3);
    for blob in &blobs {
        assert!(!blob.windows(4).any(|w| w == b"exo_"), "a key in the clear");
    }

    // No gateway key: the link is the credential.
    let r = bare_client().get(&links[0]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"trainee-01-kit.zip\""
    );
    let bytes = r.bytes().await.unwrap();
    assert_eq!(
        bytes.as_ref(),
        std::fs::read(kits.join("trainee-01-kit.zip")).unwrap()
    );
    let kit = unzip(&bytes);
    let kit = kit.path();
    assert_eq!(env_value(kit, "OPENCLAW_GATEWAY_URL"), gw.url(""));
    assert!(env_value(kit, "EXOCLAW_GATEWAY_KEY").starts_with("exo_"));
    assert_eq!(env_value(kit, "USER_ID"), "trainee-01");
    assert_eq!(env_value(kit, "OPENAI_API_KEY"), "");
    let example = std::fs::read_to_string(kit.join(".env.example")).unwrap();
    assert!(example.contains("OPENAI_API_KEY=") && !example.contains("exo_"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(kit.join("setup.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "setup.sh is executable");
    }
    let readme = std::fs::read_to_string(kit.join("README.md")).unwrap();
    assert!(readme.contains("3 steps to your first agent"));
    assert!(std::fs::read_to_string(kit.join("python/requirements.txt"))
        .unwrap()
        .contains("openai"));
    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kit.join("node/package.json")).unwrap())
            .unwrap();
    assert!(package["dependencies"]["openai"].is_string());
    for starter in ["python/agent.py", "node/agent.mjs"] {
        let code = std::fs::read_to_string(kit.join(starter)).unwrap();
        assert!(
            code.contains("X-Gateway-Key") && code.contains("stream"),
            "{starter}"
        );
    }

    // Used: 410 with a page that says so.
    let again = bare_client().get(&links[0]).send().await.unwrap();
    assert_eq!(again.status(), 410);
    assert!(again.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(again
        .text()
        .await
        .unwrap()
        .contains("This link has already been used"));

    // Two downloads of one link at the same moment: exactly one kit.
    let race = (0..6).map(|_| {
        let link = links[1].clone();
        async move { bare_client().get(&link).send().await.unwrap().status() }
    });
    let mut statuses: Vec<u16> = futures_util::future::join_all(race)
        .await
        .into_iter()
        .map(|s| s.as_u16())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 410, 410, 410, 410, 410]);

    // Unknown and malformed tokens.
    let unknown = gw.url(&format!("/onboard/{}", "ab".repeat(32)));
    assert_eq!(
        bare_client().get(&unknown).send().await.unwrap().status(),
        404
    );
    let malformed = gw.url("/onboard/not-a-token");
    assert_eq!(
        bare_client().get(&malformed).send().await.unwrap().status(),
        404
    );

    // A revoked cohort's unused link is withdrawn.
    assert!(gw
        .cli(&["onboard", "revoke", "--prefix", "trainee"])
        .status
        .success());
    let withdrawn = bare_client().get(&links[2]).send().await.unwrap();
    assert_eq!(withdrawn.status(), 410);
    assert!(withdrawn.text().await.unwrap().contains("withdrawn"));

    // Guessing counts as failed authentications: the address is soon refused outright.
    let mut refused = false;
    for _ in 0..25 {
        let status = bare_client().get(&unknown).send().await.unwrap().status();
        if status == 429 {
            refused = true;
            break;
        }
        assert_eq!(status, 404);
    }
    assert!(
        refused,
        "unknown links never ran into the failed-auth guard"
    );

    // A link's token is a credential: neither the log nor the ledger ever shows one. (Wait for
    // the writers first, so an absence means something.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows: i64 = gw
            .db()
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE endpoint LIKE '/onboard/%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if rows >= 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kit downloads are in the ledger ({rows} rows)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    gw.wait_for_log_line("path=/onboard/…").await;
    let log = gw.log();
    for link in &links {
        let token = link.rsplit('/').next().unwrap();
        let in_ledger: i64 = gw
            .db()
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE instr(endpoint, ?1) > 0",
                [token],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(in_ledger, 0, "a token reached the ledger");
        assert!(!log.contains(token), "a token reached the log");
    }
}

#[tokio::test]
async fn the_python_starter_streams_an_answer_through_the_gateway() {
    let has_sdk = Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        has_sdk,
        "this test needs python3 with the openai package: `python3 -m pip install openai` \
         (or run .ci/run, which installs it)"
    );
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;
    let kits = issue(&gw, 1);
    let kit = unzip(&std::fs::read(kits.join("trainee-01-kit.zip")).unwrap());
    set_env(kit.path(), "OPENAI_API_KEY", PROVIDER_KEY);
    wait_for_key(&gw, &env_value(kit.path(), "EXOCLAW_GATEWAY_KEY")).await;
    let dir = kit.path().join("python");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["agent.py", "Plan my week"])
            .current_dir(dir)
            .env("NO_PROXY", "*")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!text(&out.stdout).trim().is_empty(), "{out:?}");
    let chat = node
        .seen()
        .into_iter()
        .find(|r| r.path == "/v1/chat/completions")
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&chat.body).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(chat.headers["x-forwarded-user"], "trainee-01");
}

#[tokio::test]
async fn usage_lists_the_most_active_users_and_writes_csv() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(KEYS_ON)).await;
    let mut total = 0;
    for (user, requests) in [("ana", 3), ("bo", 1), ("cy", 2)] {
        let (_, key) = gw.create_key(user, None).await;
        for _ in 0..requests {
            let r = client()
                .post(gw.url("/v1/chat/completions"))
                .header("x-gateway-key", &key)
                .json(&chat_body(false))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            total += 1;
        }
    }
    // A kit download is recorded, but it is nobody's usage.
    let kits = issue(&gw, 1);
    let r = bare_client().get(&links(&kits)[0]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.wait_for_rows(total + 1).await;

    let out = gw.cli(&["usage", "--since", "1d", "--top", "2"]);
    assert!(out.status.success(), "{out:?}");
    let table = text(&out.stdout);
    let users: Vec<&str> = table
        .lines()
        .skip(2)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(users, ["ana", "cy"], "{table}");

    let out = gw.cli(&["usage", "--since", "1d", "--csv"]);
    assert!(out.status.success(), "{out:?}");
    let csv = text(&out.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "user_id,requests,prompt_tokens,completion_tokens,total_tokens,avg_latency_ms,errors,last_seen"
    );
    let rows: Vec<(String, String)> = lines[1..]
        .iter()
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            assert_eq!(fields.len(), 8, "{l}");
            (fields[0].to_owned(), fields[1].to_owned())
        })
        .collect();
    assert_eq!(
        rows,
        [("ana", "3"), ("cy", "2"), ("bo", "1")].map(|(u, n)| (u.to_owned(), n.to_owned()))
    );
    let top_csv = text(
        &gw.cli(&["usage", "--since", "1d", "--top", "1", "--csv"])
            .stdout,
    );
    assert_eq!(top_csv.lines().count(), 2, "{top_csv}");
}
