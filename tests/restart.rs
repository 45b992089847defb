//! A restart keeps keys, accounts and usage: everything lives in sled.

mod common;

use common::{simple_body, TestRelay};

#[tokio::test]
async fn restart_keeps_keys_accounts_and_usage() {
    let relay = TestRelay::start().await;
    let account = relay
        .add_account("persistent", "sk-ant-api03-restart", 1)
        .await;
    let (key_id, key) = relay.add_key("survivor").await;
    for stream in [false, true] {
        let resp = relay
            .messages(&key, &simple_body(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    let before = relay.wait_key_requests(&key_id, 2).await;
    let (sim, data_dir) = relay.stop().await;

    let relay = TestRelay::start_on(sim, data_dir, |_| {}).await;
    assert_eq!(relay.key_usage(&key_id).await, before);
    assert_eq!(relay.account_usage(&account).await["requests"], 2);
    let resp = relay
        .messages(&key, &simple_body(false))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the key and the account survived the restart"
    );
    relay.wait_key_requests(&key_id, 3).await;
}

#[tokio::test]
async fn usage_pending_at_shutdown_is_flushed() {
    let relay =
        TestRelay::start_with(|c| c.usage_flush_interval = std::time::Duration::from_secs(3600))
            .await;
    relay.add_account("a", "sk-ant-api03-flush", 1).await;
    let (key_id, key) = relay.add_key("k").await;
    for _ in 0..5 {
        relay
            .messages(&key, &simple_body(false))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let (sim, data_dir) = relay.stop().await;
    let relay = TestRelay::start_on(sim, data_dir, |_| {}).await;
    assert_eq!(relay.key_usage(&key_id).await["requests"], 5);
}
