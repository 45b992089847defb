//! Admin authentication: who is calling (sessions from `Authorization:
//! Bearer`), what they may do (roles), password hashing (argon2id, with a
//! dummy verification for unknown users) and login throttling per username
//! and per client address. Session tokens are random and stored only as
//! SHA-256 hex.

use super::error::GqlError;
use crate::config::Config;
use crate::domain::{sha256_hex, Admin, AdminId, AdminSession, Role};
use crate::store::Store;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_graphql::Context;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use rand::RngCore;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// What every resolver may reach: the store, the config, the login throttle
/// and the lock that makes admin writes' read-check-write steps atomic.
pub(crate) struct Services {
    pub store: Store,
    pub config: Arc<Config>,
    pub throttle: LoginThrottle,
    /// Held across "check the name is free, then write" so two concurrent
    /// creates cannot both take one name. Admin writes are rare.
    pub writes: tokio::sync::Mutex<()>,
    pub limits: crate::limits::Limits,
    pub balancer: crate::balancer::Balancer,
    /// Masks free text for VIEWER callers (see `viewer`).
    pub viewer_masker: crate::export::Masker,
    /// Export jobs (`None` if the export service could not start).
    pub exports: Option<crate::export::service::Exports>,
}

impl Services {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        limits: crate::limits::Limits,
        balancer: crate::balancer::Balancer,
    ) -> Self {
        Services {
            store,
            limits,
            balancer,
            exports: None,
            throttle: LoginThrottle::new(),
            writes: tokio::sync::Mutex::new(()),
            viewer_masker: super::viewer::masker(&config),
            config,
        }
    }
}

/// A caller with a valid session.
#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub admin: Admin,
    pub token_hash: String,
}

/// Per-request data: the caller as resolved from the HTTP header, or (on a
/// WebSocket) the session hash from `connection_init`, re-checked on every
/// operation so a revoked session stops working at once.
pub(crate) struct RequestAuth {
    pub principal: Option<Principal>,
    pub ws_token_hash: Option<String>,
    pub client_ip: Option<IpAddr>,
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> Result<&'a Arc<Services>, GqlError> {
    ctx.data::<Arc<Services>>()
        .map_err(|_| GqlError::internal("admin services missing from the schema"))
}

pub(crate) fn client_ip(ctx: &Context<'_>) -> Option<IpAddr> {
    ctx.data_opt::<RequestAuth>().and_then(|a| a.client_ip)
}

/// The calling admin, or `UNAUTHENTICATED`.
pub(crate) fn require_admin(ctx: &Context<'_>) -> Result<Principal, GqlError> {
    let unauthenticated = || {
        GqlError::Unauthenticated(
            "a valid session is required: log in and send Authorization: Bearer <token>".into(),
        )
    };
    let auth = ctx.data_opt::<RequestAuth>().ok_or_else(unauthenticated)?;
    if let Some(p) = &auth.principal {
        return Ok(p.clone());
    }
    match &auth.ws_token_hash {
        Some(hash) => {
            resolve_hash(&services(ctx)?.store, hash, Utc::now())?.ok_or_else(unauthenticated)
        }
        None => Err(unauthenticated()),
    }
}

/// The calling admin if they may change things (OWNER or ADMIN), else `FORBIDDEN`.
pub(crate) fn require_writer(ctx: &Context<'_>) -> Result<Principal, GqlError> {
    let p = require_admin(ctx)?;
    match p.admin.role {
        Role::Owner | Role::Admin => Ok(p),
        Role::Viewer => Err(GqlError::Forbidden("the VIEWER role is read-only".into())),
    }
}

/// The calling admin if they are an OWNER (managing admins), else `FORBIDDEN`.
pub(crate) fn require_owner(ctx: &Context<'_>) -> Result<Principal, GqlError> {
    let p = require_admin(ctx)?;
    match p.admin.role {
        Role::Owner => Ok(p),
        _ => Err(GqlError::Forbidden("only an OWNER may do this".into())),
    }
}

/// The calling admin if they may read the audit log and the admin list
/// (OWNER or ADMIN), else `FORBIDDEN`.
pub(crate) fn require_auditor(ctx: &Context<'_>) -> Result<Principal, GqlError> {
    let p = require_admin(ctx)?;
    match p.admin.role {
        Role::Owner | Role::Admin => Ok(p),
        Role::Viewer => Err(GqlError::Forbidden(
            "the VIEWER role cannot read admins or the audit log".into(),
        )),
    }
}

/// Resolves a raw bearer token.
pub(crate) fn resolve_token(
    store: &Store,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Principal>, GqlError> {
    resolve_hash(store, &sha256_hex(token), now)
}

/// Resolves a session by token hash; expired sessions are removed on sight,
/// and a disabled admin's sessions resolve to nobody.
pub(crate) fn resolve_hash(
    store: &Store,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<Principal>, GqlError> {
    let Some(session) = store.session_by_hash(hash)? else {
        return Ok(None);
    };
    if session.expires_at <= now {
        store.delete_session(hash)?;
        return Ok(None);
    }
    Ok(store
        .get_admin(session.admin_id)?
        .filter(|admin| !admin.disabled)
        .map(|admin| Principal {
            admin,
            token_hash: hash.to_string(),
        }))
}

/// The bearer token of an `Authorization` header value, if it is one.
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Starts a session: a random opaque token, stored only as its hash.
pub(crate) fn create_session(
    store: &Store,
    admin_id: AdminId,
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(String, AdminSession), GqlError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("cra_{}", hex::encode(bytes));
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12));
    let session = AdminSession {
        token_hash: sha256_hex(&token),
        admin_id,
        created_at: now,
        expires_at: now + ttl,
    };
    store.put_session(&session)?;
    Ok((token, session))
}

/// A random password for a generated admin: 24 bytes, base64url (32 characters).
pub(crate) fn generate_password() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// argon2id PHC string; runs on the blocking pool (it is deliberately slow).
pub(crate) async fn hash_password(password: String) -> Result<String, GqlError> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| GqlError::internal(format!("password hashing task: {e}")))?
}

fn hash_blocking(password: &str) -> Result<String, GqlError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| GqlError::internal(format!("password hashing: {e}")))
}

/// Verifies a password against a PHC string. With no hash (unknown user) it
/// verifies against a dummy hash with the same parameters and returns false,
/// so the answer takes as long either way.
pub(crate) async fn verify_password(
    hash: Option<String>,
    password: String,
) -> Result<bool, GqlError> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = match hash {
            Some(h) => h,
            None => dummy_hash()?.to_string(),
        };
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| GqlError::internal(format!("stored password hash: {e}")))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok && known)
    })
    .await
    .map_err(|e| GqlError::internal(format!("password verification task: {e}")))?
}

fn dummy_hash() -> Result<&'static str, GqlError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h);
    }
    let h = hash_blocking(&generate_password())?;
    Ok(DUMMY.get_or_init(|| h))
}

/// Failed logins per username and per client address in a sliding window.
pub(crate) struct LoginThrottle {
    failures: moka::sync::Cache<String, Arc<Mutex<VecDeque<Instant>>>>,
}

/// At most this many failures per key in [`THROTTLE_WINDOW`].
pub(crate) const MAX_LOGIN_FAILURES: usize = 10;
pub(crate) const THROTTLE_WINDOW: Duration = Duration::from_secs(300);

impl LoginThrottle {
    fn new() -> Self {
        LoginThrottle {
            failures: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(THROTTLE_WINDOW)
                .build(),
        }
    }

    /// The keys a login attempt counts against.
    pub fn keys(username: &str, ip: Option<IpAddr>) -> Vec<String> {
        let mut keys = vec![format!("user:{}", username.trim().to_lowercase())];
        if let Some(ip) = ip {
            keys.push(format!("ip:{ip}"));
        }
        keys
    }

    /// How long until another attempt is allowed, if any key is over the limit.
    pub fn retry_after(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        keys.iter()
            .filter_map(|k| self.failures.get(k))
            .filter_map(|q| {
                let mut q = q.lock();
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= THROTTLE_WINDOW)
                {
                    q.pop_front();
                }
                (q.len() >= MAX_LOGIN_FAILURES)
                    .then(|| {
                        q.front()
                            .map(|t| THROTTLE_WINDOW.saturating_sub(now.duration_since(*t)))
                    })
                    .flatten()
            })
            .max()
    }

    pub fn record_failure(&self, keys: &[String]) {
        let now = Instant::now();
        for k in keys {
            let q = self
                .failures
                .get_with(k.clone(), || Arc::new(Mutex::new(VecDeque::new())));
            let mut q = q.lock();
            q.push_back(now);
            // Only the newest MAX matter for the decision; keep memory bounded.
            while q.len() > MAX_LOGIN_FAILURES {
                q.pop_front();
            }
        }
    }

    pub fn clear(&self, key: &str) {
        self.failures.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[tokio::test]
    async fn passwords_hash_and_verify_and_unknown_users_fail() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(Some(hash.clone()), "correct horse".into())
            .await
            .unwrap());
        assert!(!verify_password(Some(hash), "wrong".into()).await.unwrap());
        assert!(!verify_password(None, "anything".into()).await.unwrap());
    }

    #[test]
    fn throttle_trips_after_the_limit_and_clears() {
        let t = LoginThrottle::new();
        let keys = LoginThrottle::keys("Admin", Some(IpAddr::from([10, 0, 0, 1])));
        for _ in 0..MAX_LOGIN_FAILURES - 1 {
            t.record_failure(&keys);
        }
        assert!(t.retry_after(&keys).is_none());
        t.record_failure(&keys);
        let wait = t.retry_after(&keys).unwrap();
        assert!(wait > Duration::from_secs(290) && wait <= THROTTLE_WINDOW);
        // The address stays throttled for another user; the user is cleared on success.
        t.clear(&keys[0]);
        assert!(t.retry_after(&keys[..1]).is_none());
        assert!(t
            .retry_after(&LoginThrottle::keys(
                "other",
                Some(IpAddr::from([10, 0, 0, 1]))
            ))
            .is_some());
    }
}
