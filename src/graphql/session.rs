//! Sessions in the admin API: `login`, `logout`, `changePassword` and `me`.
//! Failed logins count against the username and the client address
//! (see `auth::LoginThrottle`); messages never say whether a user exists.

use super::auth::{
    client_ip, create_session, hash_password, require_admin, services, verify_password,
    LoginThrottle,
};
use super::bootstrap;
use super::error::GqlError;
use super::scalars::DateTime;
use super::types::AdminNode;
use super::validate;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::Utc;

#[derive(SimpleObject)]
pub struct LoginPayload {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime,
    pub admin: AdminNode,
}

#[derive(InputObject, Default)]
pub struct LogoutInput {
    /// End every session of this admin, not only the current one.
    #[graphql(default)]
    pub all_sessions: bool,
}

#[derive(SimpleObject)]
pub struct LogoutPayload {
    pub revoked_sessions: usize,
}

#[derive(InputObject)]
pub struct ChangePasswordInput {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

#[derive(SimpleObject)]
pub struct ChangePasswordPayload {
    pub admin: AdminNode,
    /// The admin's other sessions, ended by the change.
    pub revoked_sessions: usize,
}

#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// The admin this session belongs to.
    async fn me(&self, ctx: &Context<'_>) -> Result<AdminNode> {
        Ok(AdminNode(require_admin(ctx)?.admin))
    }
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Starts a session. Too many failures for one username or from one
    /// address refuse further attempts for a while.
    async fn login(
        &self,
        ctx: &Context<'_>,
        username: String,
        password: String,
    ) -> Result<LoginPayload> {
        let svc = services(ctx)?;
        let ip = client_ip(ctx);
        let keys = LoginThrottle::keys(&username, ip);
        if let Some(wait) = svc.throttle.retry_after(&keys) {
            return Err(GqlError::Unauthenticated(format!(
                "too many failed login attempts; try again in {} seconds",
                wait.as_secs().max(1)
            ))
            .into());
        }
        let admin = svc
            .store
            .admin_by_username(username.trim())
            .map_err(GqlError::from)?;
        let hash = admin.as_ref().map(|a| a.password_hash.clone());
        let ok = verify_password(hash, password).await?;
        // A disabled admin gets the same answer as a wrong password.
        let Some(admin) = admin.filter(|a| ok && !a.disabled) else {
            svc.throttle.record_failure(&keys);
            tracing::warn!(client.ip = ?ip, "admin login failed");
            return Err(GqlError::Unauthenticated("invalid username or password".into()).into());
        };
        svc.throttle.clear(&keys[0]);
        let now = Utc::now();
        // Expired sessions are dropped here rather than by a background task.
        svc.store
            .prune_expired_sessions(now)
            .map_err(GqlError::from)?;
        let (token, session) =
            create_session(&svc.store, admin.id, svc.config.admin_session_ttl, now)?;
        tracing::info!(admin.id = %admin.id, "admin logged in");
        Ok(LoginPayload {
            token,
            expires_at: session.expires_at.into(),
            admin: AdminNode(admin),
        })
    }

    /// Ends the current session (or all of this admin's sessions).
    async fn logout(&self, ctx: &Context<'_>, input: Option<LogoutInput>) -> Result<LogoutPayload> {
        let me = require_admin(ctx)?;
        let store = &services(ctx)?.store;
        let revoked = if input.unwrap_or_default().all_sessions {
            store
                .delete_admin_sessions(me.admin.id, None)
                .map_err(GqlError::from)?
        } else {
            store
                .delete_session(&me.token_hash)
                .map_err(GqlError::from)?;
            1
        };
        Ok(LogoutPayload {
            revoked_sessions: revoked,
        })
    }

    /// Changes the caller's password and ends their other sessions. For the
    /// generated first admin this also deletes the password file.
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        input: ChangePasswordInput,
    ) -> Result<ChangePasswordPayload> {
        let me = require_admin(ctx)?;
        let svc = services(ctx)?;
        validate::password("newPassword", &input.new_password, &me.admin.username)?;
        if input.new_password == input.current_password {
            return Err(
                GqlError::bad_input("`newPassword` must differ from the current password").into(),
            );
        }
        let keys = LoginThrottle::keys(&me.admin.username, client_ip(ctx));
        if svc.throttle.retry_after(&keys).is_some() {
            return Err(GqlError::Unauthenticated(
                "too many failed attempts; try again later".into(),
            )
            .into());
        }
        let current = input.current_password.clone();
        if !verify_password(Some(me.admin.password_hash.clone()), current).await? {
            svc.throttle.record_failure(&keys);
            return Err(GqlError::bad_input("`currentPassword` is not correct").into());
        }
        let hash = hash_password(input.new_password).await?;
        let _guard = svc.writes.lock().await;
        // Re-read: the record may have changed since the session was resolved.
        let mut admin = svc
            .store
            .get_admin(me.admin.id)
            .map_err(GqlError::from)?
            .ok_or_else(|| GqlError::Unauthenticated("this admin no longer exists".into()))?;
        admin.password_hash = hash;
        admin.password_changed_at = Utc::now();
        svc.store.put_admin(&admin).map_err(GqlError::from)?;
        let revoked = svc
            .store
            .delete_admin_sessions(admin.id, Some(&me.token_hash))
            .map_err(GqlError::from)?;
        bootstrap::forget_generated_password(&svc.config, &input.current_password);
        tracing::info!(admin.id = %admin.id, revoked, "admin password changed");
        Ok(ChangePasswordPayload {
            admin: AdminNode(admin),
            revoked_sessions: revoked,
        })
    }
}
