//! Zero-downtime upgrade: a new process takes the listening sockets over from the running one
//! (Pingora's graceful upgrade) while clients keep sending, and no request fails.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{chat_body, Gateway, Setup, PROVIDER_KEY};
use exoclaw::mock::{MockNode, MockOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_process_under_load_fails_no_request() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top =
        "auth: { require_key: false }\ntiers: { workshop: { requests_per_minute: 1000000 } }\n";
    let mut gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top)).await;
    let url = gw.url("/v1/chat/completions");
    // A fresh connection per request, as load generators and short-lived SDK clients open them.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for w in 0..3 {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        let (ok, failed) = (ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let result = client
                    .post(&url)
                    .header("x-user-id", format!("load-{w}"))
                    .bearer_auth(PROVIDER_KEY)
                    .json(&chat_body(false))
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("status {}", r.status());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("error {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::Relaxed);
    let old_exit = tokio::task::block_in_place(|| gw.upgrade());
    assert!(
        old_exit.success(),
        "the old process drained and exited: {old_exit:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
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
