//! `claude-relay demo`: the relay in front of the built-in simulated upstream
//! with three demo accounts and one demo key, so a newcomer sees it work
//! without an Anthropic account.

use crate::domain::{
    generate_raw_key, key_display_prefix, sha256_hex, Account, AccountId, AccountKind,
    AccountStatus, ApiKey, Credentials, KeyId, KeyStatus, Secret,
};
use crate::store::{self, Store};
use chrono::Utc;

/// Demo account credentials; the simulator accepts any `sk-ant-` key.
const DEMO_ACCOUNTS: [(&str, &str, u32); 3] = [
    ("demo-primary", "sk-ant-api03-demo-primary-0000000000", 1),
    ("demo-secondary", "sk-ant-api03-demo-secondary-000000000", 1),
    ("demo-backup", "sk-ant-api03-demo-backup-00000000000", 2),
];

/// Adds the demo accounts (pointing at `sim_base_url`) and a fresh demo key;
/// returns the raw key.
pub fn seed(store: &Store, sim_base_url: &str, key_prefix: &str) -> Result<String, store::Error> {
    let now = Utc::now();
    for (name, key, priority) in DEMO_ACCOUNTS {
        store.put_account(&Account {
            id: AccountId::generate(),
            name: name.into(),
            kind: AccountKind::AnthropicApiKey,
            priority,
            status: AccountStatus::Active,
            base_url: Some(sim_base_url.to_string()),
            credentials: Credentials {
                api_key: Some(Secret::new(key)),
                ..Credentials::default()
            },
            proxy: None,
            routing: Default::default(),
            created_at: now,
            updated_at: now,
        })?;
    }
    let raw = generate_raw_key(key_prefix);
    store.create_key(&ApiKey {
        id: KeyId::generate(),
        name: "demo".into(),
        description: "created by claude-relay demo".into(),
        key_hash: sha256_hex(&raw),
        display_prefix: key_display_prefix(&raw, key_prefix),
        status: KeyStatus::Active,
        tags: vec!["demo".into()],
        created_at: now,
        updated_at: now,
        last_used_at: None,
        expires_at: None,
        cost_multiplier: 1.0,
        binding: Default::default(),
        policy: Default::default(),
    })?;
    Ok(raw)
}

/// The copy-paste instructions printed by `demo`.
pub fn instructions(base_url: &str, key: &str) -> String {
    format!(
        r#"
claude-relay demo is running at {base_url}
(upstream: the built-in simulator with 3 demo accounts; nothing leaves this machine)

Demo key: {key}

curl:
  curl -s {base_url}/v1/messages \
    -H "x-api-key: {key}" -H "anthropic-version: 2023-06-01" -H "content-type: application/json" \
    -d '{{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{{"role":"user","content":"Hello"}}]}}'

Python SDK (pip install anthropic):
  ANTHROPIC_BASE_URL={base_url} ANTHROPIC_API_KEY={key} python3 -c 'import anthropic; print(anthropic.Anthropic().messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=[{{"role":"user","content":"Hello"}}]).content[0].text)'

Claude Code:
  ANTHROPIC_BASE_URL={base_url} ANTHROPIC_API_KEY={key} claude -p "Hello"

Admin API: POST {base_url}/graphql (log in with the admin credentials shown above)
Press Ctrl-C to stop.
"#
    )
}
