//! The admin playground in a real headless browser: Debian's Chromium,
//! driven by playwright-core (`tests/browser/playground.mjs`), against the
//! whole relay on loopback. The page logs in through its own form, runs a
//! query and a subscription from GraphiQL, logs out, and never asks any
//! host but the relay for anything. `.ci/run` installs Chromium and the
//! npm package; run `npm ci --prefix tests/browser` once to run it locally.

mod common;

use common::{TestRelay, ADMIN_PASSWORD, ADMIN_USER};
use serde_json::Value;

#[tokio::test]
async fn the_playground_logs_in_queries_and_subscribes_in_a_real_browser() {
    let relay = TestRelay::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/playwright-core")
            .exists(),
        "run `npm ci --prefix tests/browser` first (.ci/run does)"
    );
    let out = tokio::process::Command::new("node")
        .current_dir(dir)
        .arg("playground.mjs")
        .arg(&relay.base_url)
        .arg(ADMIN_USER)
        .arg(ADMIN_PASSWORD)
        .output()
        .await
        .expect("node must be installed (.ci/run uses the machine's Node.js)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser run failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no report from the browser ({e}): {stdout} {stderr}"));

    assert_eq!(seen["title"], "claude-relay admin API");
    assert_eq!(seen["who"], format!("{ADMIN_USER} (OWNER)"));
    assert_eq!(seen["tokenStored"], true);
    assert_eq!(seen["query"]["data"]["me"]["username"], ADMIN_USER);
    let tick = &seen["subscription"]["data"]["usageTicker"];
    assert!(tick["at"].is_string(), "a tick over the socket: {seen}");
    assert_eq!(seen["loggedOut"], true);
    assert_eq!(
        seen["consoleErrors"].as_array().map(Vec::len),
        Some(0),
        "{seen}"
    );
    // Everything came from the relay: no CDN, nothing else.
    let origin = relay.base_url.trim_start_matches("http://");
    let requests = seen["requests"].as_array().expect("requests");
    assert!(requests.len() >= 8, "{requests:?}");
    for url in requests {
        let url = url.as_str().unwrap_or_default();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .unwrap_or(url);
        assert!(rest.starts_with(origin), "request to another host: {url}");
    }
    assert!(
        requests
            .iter()
            .any(|u| u.as_str().is_some_and(|u| u.ends_with("/graphql/ws"))),
        "the subscription used the page's WebSocket: {requests:?}"
    );
    // The logout revoked the browser's session.
    let sessions = relay
        .gql(
            "{ auditLog(filter: {action: \"logout\"}) { totalCount } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(sessions["auditLog"]["totalCount"], 1);
}
