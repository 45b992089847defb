//! Admin management (OWNER only for changes; OWNER and ADMIN may list):
//! the `admins` connection, `createAdmin`, `updateAdmin` (role, disabled),
//! `deleteAdmin` and `resetAdminPassword`. The relay always keeps at least
//! one enabled OWNER: removing, disabling or demoting the last one is a
//! `CONFLICT`. Disabling, deleting and resetting a password end the
//! admin's sessions, which also closes their WebSockets (see `http`).

use super::auth::{
    hash_password, require_auditor, require_owner, services, verify_password, Services,
};
use super::bootstrap;
use super::connection::{paginate, PageInfo, SortKey, DEFAULT_PAGE};
use super::error::GqlError;
use super::types::{AdminNode, Role};
use super::validate;
use crate::domain::{self, Admin, AdminId};
use crate::store::Store;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::Utc;

/// One admin in a page of admins.
#[derive(SimpleObject)]
pub struct AdminEdge {
    /// Opaque position of this admin in the list.
    pub cursor: String,
    /// The admin.
    pub node: AdminNode,
}

/// A page of admins, oldest first.
#[derive(SimpleObject)]
pub struct AdminConnection {
    /// Admins across all pages.
    pub total_count: usize,
    /// This page's admins with their cursors.
    pub edges: Vec<AdminEdge>,
    /// Whether more pages follow, and where this one ends.
    pub page_info: PageInfo,
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// The admins of this relay, oldest first. OWNER and ADMIN only.
    async fn admins(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
    ) -> Result<AdminConnection> {
        require_auditor(ctx)?;
        let admins = services(ctx)?.store.list_admins().map_err(GqlError::from)?;
        let page = paginate(
            admins,
            |a: &Admin| SortKey::time(Some(a.created_at), a.id.0),
            "admins",
            false,
            first.unwrap_or(DEFAULT_PAGE),
            after.as_deref(),
        )?;
        Ok(AdminConnection {
            total_count: page.total_count,
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, a)| AdminEdge {
                    cursor,
                    node: AdminNode(a),
                })
                .collect(),
            page_info: page.page_info,
        })
    }
}

/// A new admin.
#[derive(InputObject)]
pub struct CreateAdminInput {
    /// 1 to 64 letters, digits or `._@-`; unique ignoring case.
    pub username: String,
    /// 12 to 1024 characters, not the username.
    pub password: String,
    /// What the new admin may do.
    pub role: Role,
}

/// What `createAdmin` returns.
#[derive(SimpleObject)]
pub struct CreateAdminPayload {
    /// The admin created.
    pub admin: AdminNode,
}

/// Fields left out stay as they are.
#[derive(InputObject)]
pub struct UpdateAdminInput {
    /// The admin to change.
    pub id: ID,
    /// The new role; demoting the last enabled OWNER is a CONFLICT.
    pub role: Option<Role>,
    /// A disabled admin cannot log in; disabling ends their sessions.
    pub disabled: Option<bool>,
}

/// What `updateAdmin` returns.
#[derive(SimpleObject)]
pub struct UpdateAdminPayload {
    /// The admin as changed.
    pub admin: AdminNode,
    /// Sessions ended by this change (when disabling).
    pub revoked_sessions: usize,
}

/// Which admin `deleteAdmin` removes.
#[derive(InputObject)]
pub struct DeleteAdminInput {
    /// The admin to remove.
    pub id: ID,
}

/// What `deleteAdmin` returns.
#[derive(SimpleObject)]
pub struct DeleteAdminPayload {
    /// The id of the removed admin.
    pub deleted_id: ID,
    /// The deleted admin's sessions, ended (their WebSockets are closed).
    pub revoked_sessions: usize,
}

/// A new password for another admin.
#[derive(InputObject)]
pub struct ResetAdminPasswordInput {
    /// The admin whose password is set.
    pub id: ID,
    /// 12 to 1024 characters, not the username.
    pub new_password: String,
}

/// What `resetAdminPassword` returns.
#[derive(SimpleObject)]
pub struct ResetAdminPasswordPayload {
    /// The admin with the new password.
    pub admin: AdminNode,
    /// The admin's sessions ended by the reset (the caller's own is kept).
    pub revoked_sessions: usize,
}

fn load(store: &Store, id: &ID) -> Result<Admin, GqlError> {
    let id = AdminId(validate::id("id", id)?);
    store
        .get_admin(id)?
        .ok_or_else(|| GqlError::NotFound("no admin with this id".into()))
}

/// When `admin` is the generated first admin and its password still is the
/// one in the generated password file, that file now holds a dead password:
/// delete it (as `changePassword` does), so it cannot mislead anyone.
async fn retire_generated_password(svc: &Services, admin: &Admin) {
    let Ok(content) = std::fs::read_to_string(bootstrap::password_file(&svc.config)) else {
        return;
    };
    let old = content.trim_end_matches(['\n', '\r']).to_string();
    if let Ok(true) = verify_password(Some(admin.password_hash.clone()), old.clone()).await {
        bootstrap::forget_generated_password(&svc.config, &old);
    }
}

fn is_active_owner(a: &Admin) -> bool {
    a.role == domain::Role::Owner && !a.disabled
}

/// `CONFLICT` when `before` is the last enabled OWNER and `after` (None:
/// deleted) no longer is one. Call with the writes lock held.
fn keep_an_owner(store: &Store, before: &Admin, after: Option<&Admin>) -> Result<(), GqlError> {
    if !is_active_owner(before) || after.is_some_and(is_active_owner) {
        return Ok(());
    }
    let others = store
        .list_admins()?
        .iter()
        .filter(|a| a.id != before.id && is_active_owner(a))
        .count();
    if others == 0 {
        return Err(GqlError::Conflict(
            "this is the last enabled OWNER; make another admin OWNER first".into(),
        ));
    }
    Ok(())
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Adds an admin. OWNER only.
    async fn create_admin(
        &self,
        ctx: &Context<'_>,
        input: CreateAdminInput,
    ) -> Result<CreateAdminPayload> {
        require_owner(ctx)?;
        let svc = services(ctx)?;
        let username = validate::username(&input.username)?;
        validate::password("password", &input.password, &username)?;
        let hash = hash_password(input.password).await?;
        let now = Utc::now();
        let admin = Admin {
            id: AdminId::generate(),
            username,
            password_hash: hash,
            role: input.role.into(),
            created_at: now,
            password_changed_at: now,
            disabled: false,
        };
        let _guard = svc.writes.lock().await;
        // put_admin refuses a taken username (ignoring case) with CONFLICT.
        svc.store.put_admin(&admin).map_err(GqlError::from)?;
        tracing::info!(admin.id = %admin.id, "admin created");
        Ok(CreateAdminPayload {
            admin: AdminNode(admin),
        })
    }

    /// Changes an admin's role or disables/enables them. OWNER only.
    async fn update_admin(
        &self,
        ctx: &Context<'_>,
        input: UpdateAdminInput,
    ) -> Result<UpdateAdminPayload> {
        require_owner(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let before = load(&svc.store, &input.id)?;
        let mut admin = before.clone();
        if let Some(role) = input.role {
            admin.role = role.into();
        }
        if let Some(d) = input.disabled {
            admin.disabled = d;
        }
        keep_an_owner(&svc.store, &before, Some(&admin))?;
        svc.store.put_admin(&admin).map_err(GqlError::from)?;
        let revoked = if admin.disabled && !before.disabled {
            svc.store
                .delete_admin_sessions(admin.id, None)
                .map_err(GqlError::from)?
        } else {
            0
        };
        tracing::info!(admin.id = %admin.id, revoked, "admin updated");
        Ok(UpdateAdminPayload {
            admin: AdminNode(admin),
            revoked_sessions: revoked,
        })
    }

    /// Removes an admin and ends their sessions. OWNER only; the last
    /// enabled OWNER cannot be removed.
    async fn delete_admin(
        &self,
        ctx: &Context<'_>,
        input: DeleteAdminInput,
    ) -> Result<DeleteAdminPayload> {
        require_owner(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let before = load(&svc.store, &input.id)?;
        keep_an_owner(&svc.store, &before, None)?;
        retire_generated_password(svc, &before).await;
        let revoked = svc.store.delete_admin(before.id).map_err(GqlError::from)?;
        tracing::info!(admin.id = %before.id, revoked, "admin deleted");
        Ok(DeleteAdminPayload {
            deleted_id: ID(before.id.to_string()),
            revoked_sessions: revoked,
        })
    }

    /// Sets another admin's password (for one who forgot theirs) and ends
    /// their sessions. OWNER only. Admins change their own with `changePassword`.
    async fn reset_admin_password(
        &self,
        ctx: &Context<'_>,
        input: ResetAdminPasswordInput,
    ) -> Result<ResetAdminPasswordPayload> {
        let me = require_owner(ctx)?;
        let svc = services(ctx)?;
        let target = load(&svc.store, &input.id)?;
        validate::password("newPassword", &input.new_password, &target.username)?;
        let hash = hash_password(input.new_password).await?;
        let _guard = svc.writes.lock().await;
        // Re-read under the lock: the admin may have changed while hashing.
        let mut admin = load(&svc.store, &input.id)?;
        retire_generated_password(svc, &admin).await;
        admin.password_hash = hash;
        admin.password_changed_at = Utc::now();
        svc.store.put_admin(&admin).map_err(GqlError::from)?;
        let revoked = svc
            .store
            .delete_admin_sessions(admin.id, Some(&me.token_hash))
            .map_err(GqlError::from)?;
        tracing::info!(admin.id = %admin.id, revoked, "admin password reset");
        Ok(ResetAdminPasswordPayload {
            admin: AdminNode(admin),
            revoked_sessions: revoked,
        })
    }
}
