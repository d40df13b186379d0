//! Zero-downtime upgrade: a new process takes the listening sockets over from the running one
//! (Pingora's graceful upgrade) while clients keep sending, and no request fails.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{chat_body, Gateway, Setup, PROVIDER_KEY};
use exoclaw::mock::{MockNode, MockOptions};

const UNLIMITED: &str =
    "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 1000000 } }\n";

/// A fresh connection per request, as load generators and short-lived SDK clients open them.
fn fresh_connection_client() -> reqwest::Client {
    exoclaw::http_client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Connections kept alive between requests, as a long-running SDK client keeps them.
fn keep_alive_client() -> reqwest::Client {
    exoclaw::http_client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Three clients sending chat completions back to back until `finish`. Nothing is retried:
/// a broken connection or an HTTP error counts as a failed request.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &reqwest::Client, url: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let workers = (0..3)
            .map(|w| {
                let (client, url, stop) = (client.clone(), url.to_owned(), stop.clone());
                let (ok, failed) = (ok.clone(), failed.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let result = client
                            .post(&url)
                            .header("x-user-id", format!("load-{w}"))
                            .bearer_auth(PROVIDER_KEY)
                            .json(&chat_body(false))
                            .send()
                            .await;
                        let counter = match result {
                            Ok(r) if r.status() == 200 => &ok,
                            Ok(r) => {
                                eprintln!("status {}", r.status());
                                &failed
                            }
                            Err(e) => {
                                eprintln!("error {e:?}");
                                &failed
                            }
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            workers,
        }
    }

    fn succeeded(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns (succeeded, failed).
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_process_under_load_fails_no_request() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let mut gw = Gateway::start(Setup::nodes(&[node.addr()]).top(UNLIMITED)).await;
    let client = fresh_connection_client();
    let fresh = Load::start(&client, &gw.url("/v1/chat/completions"));
    let kept = Load::start(&keep_alive_client(), &gw.url("/v1/chat/completions"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = (fresh.succeeded(), kept.succeeded());
    let old_exit = tokio::task::block_in_place(|| gw.upgrade());
    assert!(
        old_exit.success(),
        "the old process drained and exited: {old_exit:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (load, name, before) in [(fresh, "fresh", before.0), (kept, "keep-alive", before.1)] {
        let (ok, failed) = load.finish().await;
        eprintln!("{name} connections: {ok} succeeded, {failed} failed");
        assert_eq!(
            failed,
            0,
            "{name}: {ok} succeeded, {failed} failed\n{}",
            gw.log()
        );
        assert!(
            ok > before + 20,
            "{name}: traffic flowed through the upgrade ({before} → {ok})"
        );
    }
    assert!(
        gw.log().contains("listener sockets sent"),
        "the sockets were handed over"
    );
    // The new process serves on the same address.
    let health = client.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// A client that connected just before the old process stopped accepting may send its request
/// a moment later: the old process still answers it (closing the connection afterwards)
/// instead of dropping a connection it has accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_accepted_before_the_hand_over_is_still_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let mut gw = Gateway::start(Setup::nodes(&[node.addr()]).top(UNLIMITED)).await;
    let mut early = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // the old process accepts it
    let old = tokio::task::block_in_place(|| gw.start_upgrade());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !gw.log().contains("Graceful shutdown started") {
        assert!(
            std::time::Instant::now() < deadline,
            "the old process never stopped accepting\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let body = chat_body(false).to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {PROVIDER_KEY}\r\n\
         X-User-ID: early\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let sent = early.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = early.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(
        sent.is_ok() && read.is_ok() && answer.starts_with("http/1.1 200"),
        "the early connection was answered: sent {sent:?}, read {read:?}, answer {answer:?}"
    );
    assert!(
        answer.contains("connection: close"),
        "the draining process tells the client to reconnect: {answer}"
    );
    let status = tokio::task::block_in_place(|| gw.wait_for_exit(old));
    assert!(
        status.success(),
        "the old process exited cleanly: {status:?}"
    );
}

/// Kills every daemon it saw (by pid) when the test ends, whatever happened.
struct Daemons(Vec<i32>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn alive(pid: i32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn read_pid(path: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The commands of one `Exec…=` key of `systemd/exoclaw.service`, in order.
fn unit_commands(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/exoclaw.service"
    ))
    .unwrap();
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Runs one command line from the unit the way systemd would, in the gateway's directory:
/// the installed binary is this build, the config is the test's, `$MAINPID` is `main_pid`.
fn run_unit_command(dir: &std::path::Path, line: &str, main_pid: Option<i32>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let status = match words.as_slice() {
        ["/usr/local/bin/exoclaw", args @ ..] => {
            let mut rest = Vec::new();
            let mut args = args.iter();
            while let Some(arg) = args.next() {
                if *arg == "--config" {
                    assert_eq!(args.next(), Some(&"/etc/exoclaw/exoclaw.yaml"));
                } else {
                    rest.push(*arg);
                }
            }
            common::run_in(dir, &rest)
        }
        ["/bin/kill", signal, "$MAINPID"] => std::process::Command::new("/bin/kill")
            .args([*signal, &main_pid.expect("a main PID").to_string()])
            .status()
            .unwrap(),
        _ => panic!("the test does not know how to run `{line}`"),
    };
    assert!(status.success(), "`{line}` failed: {status:?}");
}

/// The unit's own start and reload commands, run in order against a daemon: `serve --daemon`
/// with a PID file; a reload starts `serve --daemon --upgrade` and sends SIGQUIT to the running
/// daemon, and then systemd reads the PID file to learn the new main process — so the file must
/// name the new daemon the moment the last command returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_reload_sequence_upgrades_a_daemon_without_failed_requests() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let (dir, addr) = common::write_config(&Setup::nodes(&[node.addr()]).top(UNLIMITED));
    let pid_file = dir.path().join("data/exoclaw.pid");
    assert_eq!(
        unit_commands("PIDFile"),
        [format!(
            "{}/data/exoclaw.pid",
            unit_commands("WorkingDirectory")[0]
        )],
        "the unit follows the PID file the config's defaults write"
    );
    let mut daemons = Daemons(Vec::new());

    // The foreground process returns once the daemon has written its PID file.
    for line in unit_commands("ExecStartPre")
        .iter()
        .chain(&unit_commands("ExecStart"))
    {
        run_unit_command(dir.path(), line, None);
    }
    let old_pid = read_pid(&pid_file).expect("the PID file is written before start returns");
    daemons.0.push(old_pid);
    assert!(alive(old_pid), "the PID file names the running daemon");
    let client = fresh_connection_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .is_err()
    {
        let log = std::fs::read_to_string(dir.path().join("exoclaw.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not come up\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let load = Load::start(&client, &format!("http://{addr}/v1/chat/completions"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    let reload = unit_commands("ExecReload");
    assert!(reload.iter().any(|l| l.contains("--upgrade")), "{reload:?}");
    for line in &reload {
        run_unit_command(dir.path(), line, Some(old_pid));
    }
    // What systemd reads now becomes the service's main PID.
    let new_pid = read_pid(&pid_file).expect("a PID file after the reload");
    daemons.0.push(new_pid);
    assert!(
        new_pid != old_pid && alive(new_pid),
        "the PID file names the new daemon when the reload returns ({old_pid} → {new_pid})"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while alive(old_pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the old daemon did not hand over and exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{ok} succeeded, {failed} failed");
    assert!(ok > 20, "traffic flowed through the upgrade ({ok})");
    assert!(alive(new_pid), "the new daemon serves");
    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // Both processes wrote to the same ledger: every successful request has its row.
    let db = rusqlite::Connection::open(dir.path().join("data/exoclaw.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rows: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM requests WHERE status = 200",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if rows >= ok as i64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{rows} ledger rows for {ok} successful requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(daemons);
}
