//! Static restrictions: activation and fixed expiry, model allow/deny lists, Claude Code only, endpoint permissions.

use super::*;

#[tokio::test]
async fn activation_on_first_use_then_expiry() {
    let (l, key) = engine();
    let p = KeyPolicy {
        expiry: Expiry::Activation {
            amount: 2,
            unit: ActivationUnit::Hours,
            activated_at: None,
        },
        ..KeyPolicy::default()
    };
    // Uncounted calls neither activate nor refuse.
    l.check(&ask(key, &p, t0(), Estimate::default())).unwrap();
    assert!(l.key_status(key, &p, t0()).activation_pending);
    let first = admit(&l, ask(key, &p, t0() + secs(60), Estimate::default())).await;
    assert_eq!(first.activated(), Some(t0() + secs(60)));
    let second = admit(&l, ask(key, &p, t0() + secs(61), Estimate::default())).await;
    assert_eq!(second.activated(), None);
    let s = l.key_status(key, &p, t0() + secs(61));
    assert_eq!(s.activated_at, Some(t0() + secs(60)));
    assert_eq!(s.expires_at, Some(t0() + secs(60 + 7_200)));
    assert!(!s.activation_pending);
    let r = refuse(
        &l,
        ask(key, &p, t0() + secs(60 + 7_200), Estimate::default()),
    )
    .await;
    assert_eq!(r.kind, RefusalKind::Expired);
    assert_eq!(
        (r.kind.status(), r.kind.error_type()),
        (401, "authentication_error")
    );
    assert!(
        r.message
            .contains("activated at 2026-03-02T10:01:00Z for 2 hours"),
        "{}",
        r.message
    );
    assert_eq!(
        l.check(&ask(key, &p, t0() + secs(60 + 7_200), Estimate::default()))
            .unwrap_err()
            .kind,
        RefusalKind::Expired
    );

    // A persisted activation in the policy wins over the engine's memory.
    let persisted = KeyPolicy {
        expiry: Expiry::Activation {
            amount: 1,
            unit: ActivationUnit::Days,
            activated_at: Some(t0() - TimeDelta::days(2)),
        },
        ..KeyPolicy::default()
    };
    let other = KeyId::generate();
    assert_eq!(
        refuse(&l, ask(other, &persisted, t0(), Estimate::default()))
            .await
            .kind,
        RefusalKind::Expired
    );
}

#[tokio::test]
async fn fixed_expiry() {
    let (l, key) = engine();
    let p = KeyPolicy {
        expiry: Expiry::Fixed { at: t0() },
        ..KeyPolicy::default()
    };
    admit(&l, ask(key, &p, t0() - secs(1), Estimate::default())).await;
    let r = refuse(&l, ask(key, &p, t0(), Estimate::default())).await;
    assert_eq!(r.message, "This API key expired at 2026-03-02T10:00:00Z.");
}

#[tokio::test]
async fn model_allow_and_deny_lists_with_wildcards() {
    let (l, key) = engine();
    let deny = KeyPolicy {
        models: ModelRule::Deny(vec!["claude-opus-*".into()]),
        ..KeyPolicy::default()
    };
    let mut a = ask(key, &deny, t0(), Estimate::default());
    a.model = "claude-opus-4-8";
    let r = refuse(&l, a).await;
    assert_eq!(
        (r.kind, r.kind.status(), r.kind.error_type()),
        (RefusalKind::Model, 403, "permission_error")
    );
    assert!(r.message.contains("claude-opus-4-8"));
    admit(&l, ask(key, &deny, t0(), Estimate::default())).await;

    let allow = KeyPolicy {
        models: ModelRule::Allow(vec!["claude-haiku-*".into()]),
        ..KeyPolicy::default()
    };
    assert_eq!(
        refuse(&l, ask(key, &allow, t0(), Estimate::default()))
            .await
            .kind,
        RefusalKind::Model
    );
    let mut a = ask(key, &allow, t0(), Estimate::default());
    a.model = "claude-haiku-4-5";
    admit(&l, a).await;
    // count_tokens is checked against the same rule; /v1/models has no model.
    assert_eq!(
        l.check(&ask(key, &allow, t0(), Estimate::default()))
            .unwrap_err()
            .kind,
        RefusalKind::Model
    );
    let mut models = ask(key, &allow, t0(), Estimate::default());
    models.model = "";
    l.check(&models).unwrap();
}

#[tokio::test]
async fn claude_code_only_key_with_real_claude_code_headers() {
    let (l, key) = engine();
    let p = KeyPolicy {
        clients: vec![ClientKind::ClaudeCode],
        ..KeyPolicy::default()
    };
    let mut cc = ask(key, &p, t0(), Estimate::default());
    cc.model = "claude-opus-4-8";
    cc.user_agent = Some(CC_UA);
    cc.client_hints = ClientHints {
        x_app: Some(CC_X_APP),
        metadata_user_id: Some(CC_USER_ID),
    };
    admit(&l, cc).await;
    // The Python SDK (captures/python_anthropic.jsonl) is refused.
    let mut sdk = ask(key, &p, t0(), Estimate::default());
    sdk.user_agent = Some("Anthropic/Python 2.14.0");
    let r = refuse(&l, sdk).await;
    assert_eq!((r.kind, r.kind.status()), (RefusalKind::Client, 403));
    // A borrowed user-agent without Claude Code's request shape is refused too.
    let mut fake = ask(key, &p, t0(), Estimate::default());
    fake.user_agent = Some(CC_UA);
    assert_eq!(refuse(&l, fake).await.kind, RefusalKind::Client);
}

#[tokio::test]
async fn endpoint_permissions() {
    let (l, key) = engine();
    let p = KeyPolicy {
        permissions: vec![EndpointFamily::AnthropicMessages],
        ..KeyPolicy::default()
    };
    let mut a = ask(key, &p, t0(), Estimate::default());
    a.endpoint = EndpointFamily::OpenaiCompatible;
    let r = refuse(&l, a).await;
    assert_eq!(
        (r.kind, r.kind.status(), r.kind.error_type()),
        (RefusalKind::Permission, 403, "permission_error")
    );
    assert!(r.message.contains("openai_compatible"));
    admit(&l, ask(key, &p, t0(), Estimate::default())).await;
    // Empty list: everything.
    let open = KeyPolicy::default();
    let mut a = ask(key, &open, t0(), Estimate::default());
    a.endpoint = EndpointFamily::OpenaiCompatible;
    admit(&l, a).await;
}
