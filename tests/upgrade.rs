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
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Three clients sending chat completions back to back until `finish`. Like the OpenAI SDKs,
/// a client retries (once) a request whose connection broke before any response came back;
/// such retries are counted, and every HTTP error or second failure counts as failed.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    retried: Arc<AtomicUsize>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: &reqwest::Client, url: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let retried = Arc::new(AtomicUsize::new(0));
        let workers = (0..3)
            .map(|w| {
                let (client, url, stop) = (client.clone(), url.to_owned(), stop.clone());
                let (ok, failed, retried) = (ok.clone(), failed.clone(), retried.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let send = || {
                            client
                                .post(&url)
                                .header("x-user-id", format!("load-{w}"))
                                .bearer_auth(PROVIDER_KEY)
                                .json(&chat_body(false))
                                .send()
                        };
                        let mut result = send().await;
                        if result
                            .as_ref()
                            .is_err_and(|e| e.is_connect() || e.is_request())
                        {
                            retried.fetch_add(1, Ordering::Relaxed);
                            result = send().await;
                        }
                        let counter = match result {
                            Ok(r) if r.status() == 200 => &ok,
                            Ok(r) => {
                                eprintln!("status {}", r.status());
                                &failed
                            }
                            Err(e) => {
                                eprintln!("error {e}");
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
            retried,
            workers,
        }
    }

    fn succeeded(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns (succeeded, failed) and prints how many were retried.
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let retried = self.retried.load(Ordering::Relaxed);
        eprintln!("load: {retried} requests retried after a broken connection");
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
    let load = Load::start(&client, &gw.url("/v1/chat/completions"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = load.succeeded();
    let old_exit = tokio::task::block_in_place(|| gw.upgrade());
    assert!(
        old_exit.success(),
        "the old process drained and exited: {old_exit:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0, "{ok} succeeded, {failed} failed\n{}", gw.log());
    assert!(
        ok > before + 20,
        "traffic flowed through the upgrade ({before} → {ok})"
    );
    assert!(
        gw.log().contains("listener sockets sent"),
        "the sockets were handed over"
    );
    // The new process serves on the same address.
    let health = client.get(gw.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
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

/// What the systemd unit does: `serve --daemon` with a PID file, and a reload that sends
/// SIGQUIT to the running daemon and starts `serve --daemon --upgrade`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_systemd_reload_sequence_upgrades_a_daemon_without_failed_requests() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let (dir, addr) = common::write_config(&Setup::nodes(&[node.addr()]).top(UNLIMITED));
    let pid_file = dir.path().join("data/exoclaw.pid");
    let mut daemons = Daemons(Vec::new());

    let started = common::run_in(dir.path(), &["serve", "--daemon"]);
    assert!(started.success(), "{started:?}");
    let client = fresh_connection_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let old_pid = loop {
        if let Some(pid) = read_pid(&pid_file) {
            daemons.0.push(pid);
            if client
                .get(format!("http://{addr}/health"))
                .send()
                .await
                .is_ok()
            {
                break pid;
            }
        }
        let log = std::fs::read_to_string(dir.path().join("exoclaw.log")).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not come up\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let load = Load::start(&client, &format!("http://{addr}/v1/chat/completions"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // ExecReload: kill -QUIT $MAINPID, then exoclaw serve --daemon --upgrade.
    let quit = std::process::Command::new("kill")
        .args(["-QUIT", &old_pid.to_string()])
        .status()
        .unwrap();
    assert!(quit.success());
    let upgraded = common::run_in(dir.path(), &["serve", "--daemon", "--upgrade"]);
    assert!(upgraded.success(), "{upgraded:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new_pid = loop {
        if let Some(pid) = read_pid(&pid_file).filter(|p| *p != old_pid) {
            daemons.0.push(pid);
            if !alive(old_pid) {
                break pid;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old daemon did not hand over and exit"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
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
    drop(daemons);
}
