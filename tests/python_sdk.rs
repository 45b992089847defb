//! The official `anthropic` Python SDK (installed by .ci/run) against the
//! real relay: messages.create, messages.stream, raw streaming, count_tokens,
//! models.list with pagination, models.retrieve, and a 401.

mod common;

use common::TestRelay;
use std::process::Command;

#[tokio::test]
async fn official_python_sdk_works_through_the_relay() {
    let relay = TestRelay::start().await;
    relay.add_account("a", "sk-ant-api03-python-sdk", 1).await;
    let (key_id, key) = relay.add_key("python").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/anthropic_sdk_check.py"
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let base_url = relay.base_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("ANTHROPIC_BASE_URL", base_url)
            .env("ANTHROPIC_API_KEY", key)
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .output()
    })
    .await
    .unwrap()
    .expect("python3 must be installed (.ci/run installs it with the anthropic package)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("OK"), "{stdout}");
    // create + stream + raw stream are billed; count_tokens and models are not.
    relay.wait_key_requests(&key_id, 3).await;
}
