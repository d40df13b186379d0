//! Prometheus metrics over real HTTP: names and values move as requests flow, no user ids
//! appear as labels, and `promtool check metrics` accepts the output.

mod common;

use common::{chat_body, client, Gateway, Setup};
use exoclaw::mock::{MockNode, MockOptions};

async fn scrape(gw: &Gateway) -> String {
    let r = client().get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    r.text().await.unwrap()
}

/// The value of the sample `series` in a scrape, or None when the scrape has no such sample.
/// `series` is a metric name with its labels as the exposition writes them; a bare name also
/// matches the name with labels (the first such sample), never a longer name (`foo_count`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let labels_follow = !series.contains('{') && rest.starts_with('{');
        if !rest.starts_with(' ') && !labels_follow {
            return None;
        }
        line.rsplit(' ').next()?.parse().ok()
    })
}

/// The value of the sample `series`, which must be in the scrape: a missing series is a
/// missing metric, not a zero.
fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in the scrape:\n{text}"))
}

#[tokio::test]
async fn metrics_move_as_requests_flow_and_pass_promtool() {
    let node = MockNode::start(MockOptions::default()).await.unwrap();
    let top = "auth: { require_key: true }\ntiers: { workshop: { requests_per_minute: 3 } }\n";
    let gw = Gateway::start(Setup::nodes(&[node.addr()]).top(top)).await;
    let (_, key) = gw.create_key("metrics-user-secret-name", None).await;
    let before = scrape(&gw).await;
    assert!(before.contains("exoclaw_build_info{version=\""));

    let c = client();
    for stream in [false, true, false] {
        let r = c
            .post(gw.url("/v1/chat/completions"))
            .header("x-gateway-key", &key)
            .json(&chat_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    let limited = c
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", &key);
    assert_eq!(
        limited
            .json(&chat_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        429
    );
    let forged = c
        .post(gw.url("/v1/chat/completions"))
        .header("x-gateway-key", "exo_nope");
    assert_eq!(
        forged
            .json(&chat_body(false))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A request is counted when its logging phase runs, just after its last byte is sent.
    let ok = r#"exoclaw_requests_total{pool="openclaw",route="v1",status="200"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut text = scrape(&gw).await;
    let counted = |text: &str, series: &str| sample(text, series).unwrap_or(0.0);
    while counted(&text, ok) < 3.0 || counted(&text, "exoclaw_request_duration_seconds_count") < 5.0
    {
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        text = scrape(&gw).await;
    }
    assert_eq!(value(&text, ok), 3.0, "{text}");
    assert_eq!(
        value(
            &text,
            r#"exoclaw_rejections_total{reason="rate_limit_exceeded"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"exoclaw_rejections_total{reason="invalid_api_key"}"#
        ),
        1.0
    );
    assert!(
        value(
            &text,
            r#"exoclaw_tokens_total{source="reported",type="completion"}"#
        ) > 0.0
    );
    assert_eq!(
        value(&text, "exoclaw_stream_first_byte_seconds_count"),
        1.0,
        "{text}"
    );
    assert_eq!(value(&text, "exoclaw_gateway_overhead_seconds_count"), 3.0);
    assert_eq!(
        value(
            &text,
            r#"exoclaw_request_duration_seconds_bucket{route="v1",le="300"}"#
        ),
        5.0
    );
    assert_eq!(
        value(&text, r#"exoclaw_node_up{node="node-0",pool="openclaw"}"#),
        1.0
    );
    assert!(text.contains("exoclaw_ledger_queue_depth"));
    assert_eq!(value(&text, "exoclaw_log_lines_dropped"), 0.0);
    assert!(
        !text.contains("metrics-user-secret-name"),
        "no user ids in labels"
    );
    assert!(!text.contains(&key));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool is installed (.ci/run installs the prometheus package)");
    assert!(
        promtool.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
}
