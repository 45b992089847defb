//! Relay keys in the admin API: the `ApiKey` object, the `apiKeys`
//! connection and `apiKey(id)`, and create/update/delete. The raw key is
//! generated here, returned once in `createApiKey`'s `secret`, and stored only
//! as its SHA-256. Names are unique (ignoring case) among keys not deleted.

use super::auth::{require_admin, require_writer, services};
use super::connection::{paginate, PageInfo, SortKey, DEFAULT_PAGE};
use super::error::GqlError;
use super::scalars::DateTime;
use super::types::{ApiKeyStatus, OrderDirection};
use super::usage::{totals, Usage};
use super::validate;
use crate::domain::{self, ApiKey, KeyId, KeyStatus, UsageSubject};
use crate::store::Store;
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID};
use chrono::Utc;

/// A relay-issued key. The key itself is never shown again after creation.
pub struct ApiKeyNode(pub ApiKey);

/// A relay-issued key. The key itself is shown only once, by `createApiKey`.
#[Object(name = "ApiKey")]
impl ApiKeyNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// A safe form of the key for recognising it, e.g. `cr_1a2b…9f0e`.
    async fn display_prefix(&self) -> &str {
        &self.0.display_prefix
    }
    async fn status(&self) -> ApiKeyStatus {
        self.0.status.into()
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
    /// When the key last served a request (updated in batches, so a little behind).
    async fn last_used_at(&self) -> Option<DateTime> {
        self.0.last_used_at.map(DateTime)
    }
    async fn expires_at(&self) -> Option<DateTime> {
        self.0.expires_at.map(DateTime)
    }
    /// Billed cost = list cost × this multiplier.
    async fn cost_multiplier(&self) -> f64 {
        self.0.cost_multiplier
    }
    /// Limits, budgets and restrictions (see the README's "Key policy"); JSON
    /// in the shape `updateApiKey(input: {policy})` takes.
    async fn policy(&self) -> async_graphql::Json<crate::limits::KeyPolicy> {
        async_graphql::Json(self.0.policy.clone())
    }
    /// The key's live limit state: each window's use and reset, budgets used
    /// and left, concurrency.
    async fn limit_status(
        &self,
        ctx: &Context<'_>,
    ) -> Result<async_graphql::Json<crate::limits::KeyLimitStatus>> {
        let svc = services(ctx)?;
        Ok(async_graphql::Json(svc.limits.key_status(
            self.0.id,
            &self.0.policy,
            Utc::now(),
        )))
    }
    /// The account this key is bound to (it is then served by that account only).
    async fn bound_account_id(&self) -> Option<ID> {
        match self.0.binding {
            domain::KeyBinding::Account(id) => Some(ID(id.to_string())),
            _ => None,
        }
    }
    /// The group this key is bound to (it is then served by that group's accounts only).
    async fn bound_group_id(&self) -> Option<ID> {
        match self.0.binding {
            domain::KeyBinding::Group(id) => Some(ID(id.to_string())),
            _ => None,
        }
    }
    /// Usage billed to this key in `[from, to)` (UTC hours), or the lifetime total.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime>,
        to: Option<DateTime>,
    ) -> Result<Usage> {
        let t = totals(
            &services(ctx)?.store,
            &UsageSubject::Key(self.0.id),
            from,
            to,
        )?;
        Ok(Usage::billed(t))
    }
}

#[derive(SimpleObject)]
pub struct ApiKeyEdge {
    pub cursor: String,
    pub node: ApiKeyNode,
}

#[derive(SimpleObject)]
pub struct ApiKeyConnection {
    /// Keys matching the filter, across all pages.
    pub total_count: usize,
    pub edges: Vec<ApiKeyEdge>,
    pub page_info: PageInfo,
}

#[derive(Enum, Copy, Clone, Debug, Default, Eq, PartialEq)]
pub enum ApiKeyOrderField {
    #[default]
    CreatedAt,
    Name,
    LastUsedAt,
}

#[derive(InputObject, Default)]
pub struct ApiKeyOrder {
    #[graphql(default)]
    pub field: ApiKeyOrderField,
    #[graphql(default)]
    pub direction: OrderDirection,
}

#[derive(InputObject, Default)]
pub struct ApiKeyFilter {
    /// Only these statuses; without it, every key except DELETED ones.
    pub status: Option<Vec<ApiKeyStatus>>,
    /// Only keys carrying this tag.
    pub tag: Option<String>,
    /// Case-insensitive substring of the name or description.
    pub search: Option<String>,
}

impl ApiKeyFilter {
    /// The store's filter for this input (exports and other batch readers).
    /// `time_zone` resolves calendar-relative criteria; none exist yet.
    pub fn to_key_filter(
        &self,
        _time_zone: chrono_tz::Tz,
    ) -> Result<crate::store::KeyFilter, GqlError> {
        Ok(crate::store::KeyFilter {
            statuses: self
                .status
                .as_ref()
                .map(|list| list.iter().map(|s| KeyStatus::from(*s)).collect()),
            tags: self.tag.iter().map(|t| t.trim().to_string()).collect(),
            search: self.search.clone(),
            ..crate::store::KeyFilter::default()
        })
    }

    fn matches(&self, k: &ApiKey) -> bool {
        let status_ok = match &self.status {
            Some(list) => list.iter().any(|s| KeyStatus::from(*s) == k.status),
            None => k.status != KeyStatus::Deleted,
        };
        let tag_ok = self
            .tag
            .as_ref()
            .is_none_or(|t| k.tags.iter().any(|x| x == t.trim()));
        let search_ok = self.search.as_ref().is_none_or(|s| {
            let s = s.trim().to_lowercase();
            k.name.to_lowercase().contains(&s) || k.description.to_lowercase().contains(&s)
        });
        status_ok && tag_ok && search_ok
    }
}

#[derive(Default)]
pub struct KeyQuery;

#[Object]
impl KeyQuery {
    /// Relay keys, oldest first unless `orderBy` says otherwise.
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(DEFAULT_PAGE)")] first: Option<i32>,
        after: Option<String>,
        filter: Option<ApiKeyFilter>,
        order_by: Option<ApiKeyOrder>,
    ) -> Result<ApiKeyConnection> {
        require_admin(ctx)?;
        let filter = filter.unwrap_or_default();
        let order = order_by.unwrap_or_default();
        let keys: Vec<ApiKey> = services(ctx)?
            .store
            .list_keys()
            .map_err(GqlError::from)?
            .into_iter()
            .filter(|k| filter.matches(k))
            .collect();
        let field = order.field;
        let sort = move |k: &ApiKey| match field {
            ApiKeyOrderField::CreatedAt => SortKey::time(Some(k.created_at), k.id.0),
            ApiKeyOrderField::Name => SortKey::text(&k.name, k.id.0),
            ApiKeyOrderField::LastUsedAt => SortKey::time(k.last_used_at, k.id.0),
        };
        let tag = format!("keys:{:?}", order.field);
        let desc = order.direction == OrderDirection::Desc;
        let first = first.unwrap_or(DEFAULT_PAGE);
        let page = paginate(keys, sort, &tag, desc, first, after.as_deref())?;
        Ok(ApiKeyConnection {
            total_count: page.total_count,
            edges: page
                .edges
                .into_iter()
                .map(|(cursor, k)| ApiKeyEdge {
                    cursor,
                    node: ApiKeyNode(k),
                })
                .collect(),
            page_info: page.page_info,
        })
    }

    /// One key by id (deleted keys included), or null.
    async fn api_key(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ApiKeyNode>> {
        require_admin(ctx)?;
        let id = validate::id("id", &id)?;
        let key = services(ctx)?
            .store
            .get_key(KeyId(id))
            .map_err(GqlError::from)?;
        Ok(key.map(ApiKeyNode))
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// After this instant the relay refuses the key.
    pub expires_at: Option<DateTime>,
    /// Defaults to 1 (list price).
    pub cost_multiplier: Option<f64>,
    /// Serve this key from this account only.
    pub bound_account_id: Option<ID>,
    /// Limits, budgets and restrictions (default: none).
    pub policy: Option<async_graphql::Json<crate::limits::KeyPolicy>>,
    /// Serve this key from this group's accounts only.
    pub bound_group_id: Option<ID>,
}

#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    pub api_key: ApiKeyNode,
    /// The raw key. Shown only here, once: the relay keeps only its hash.
    pub secret: String,
}

/// Fields left out stay as they are; `expiresAt: null` removes the expiry.
#[derive(InputObject)]
pub struct UpdateApiKeyInput {
    pub id: ID,
    pub name: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    /// ACTIVE or DISABLED (ACTIVE also restores a deleted key).
    pub status: Option<ApiKeyStatus>,
    pub expires_at: MaybeUndefined<DateTime>,
    pub cost_multiplier: Option<f64>,
    /// null unbinds.
    pub bound_account_id: MaybeUndefined<ID>,
    /// null unbinds.
    pub bound_group_id: MaybeUndefined<ID>,
    /// Replaces the whole policy; null removes every limit.
    pub policy: MaybeUndefined<async_graphql::Json<crate::limits::KeyPolicy>>,
}

#[derive(SimpleObject)]
pub struct UpdateApiKeyPayload {
    pub api_key: ApiKeyNode,
}

#[derive(InputObject)]
pub struct DeleteApiKeyInput {
    pub id: ID,
}

#[derive(SimpleObject)]
pub struct DeleteApiKeyPayload {
    pub deleted_id: ID,
}

/// `CONFLICT` when another key that is not deleted has this name (ignoring case).
fn ensure_name_free(store: &Store, name: &str, except: Option<KeyId>) -> Result<(), GqlError> {
    let lower = name.to_lowercase();
    let taken = store.list_keys()?.iter().any(|k| {
        Some(k.id) != except && k.status != KeyStatus::Deleted && k.name.to_lowercase() == lower
    });
    if taken {
        return Err(GqlError::Conflict(format!(
            "an API key named {name:?} already exists"
        )));
    }
    Ok(())
}

fn load(store: &Store, id: &ID) -> Result<ApiKey, GqlError> {
    let id = validate::id("id", id)?;
    store
        .get_key(KeyId(id))?
        .ok_or_else(|| GqlError::NotFound("no API key with this id".into()))
}

#[derive(Default)]
pub struct KeyMutation;

#[Object]
impl KeyMutation {
    /// Issues a new relay key. The payload's `secret` is the only time the key is shown.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> Result<CreateApiKeyPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let now = Utc::now();
        let name = validate::name("name", &input.name)?;
        let description = validate::description(input.description.as_deref().unwrap_or(""))?;
        let tags = validate::tags(input.tags.as_deref().unwrap_or(&[]))?;
        let expires_at = input
            .expires_at
            .map(|t| validate::future("expiresAt", t.0, now))
            .transpose()?;
        let cost_multiplier = validate::cost_multiplier(input.cost_multiplier.unwrap_or(1.0))?;
        let binding = binding_of(
            &svc.store,
            input.bound_account_id.as_ref(),
            input.bound_group_id.as_ref(),
        )?;
        let policy = match input.policy {
            Some(p) => checked_policy(p.0)?,
            None => Default::default(),
        };
        let prefix = &svc.config.key_prefix;
        let secret = domain::generate_raw_key(prefix);
        let key = ApiKey {
            id: KeyId::generate(),
            name,
            description,
            key_hash: domain::sha256_hex(&secret),
            display_prefix: domain::key_display_prefix(&secret, prefix),
            status: KeyStatus::Active,
            tags,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            expires_at,
            cost_multiplier,
            binding,
            policy,
        };
        let _guard = svc.writes.lock().await;
        ensure_name_free(&svc.store, &key.name, None)?;
        svc.store.create_key(&key).map_err(GqlError::from)?;
        tracing::info!(key.id = %key.id, "api key created");
        Ok(CreateApiKeyPayload {
            api_key: ApiKeyNode(key),
            secret,
        })
    }

    async fn update_api_key(
        &self,
        ctx: &Context<'_>,
        input: UpdateApiKeyInput,
    ) -> Result<UpdateApiKeyPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let now = Utc::now();
        let _guard = svc.writes.lock().await;
        let mut key = load(&svc.store, &input.id)?;
        if let Some(name) = &input.name {
            key.name = validate::name("name", name)?;
        }
        if let Some(d) = &input.description {
            key.description = validate::description(d)?;
        }
        if let Some(tags) = &input.tags {
            key.tags = validate::tags(tags)?;
        }
        match input.status {
            Some(ApiKeyStatus::Deleted) => {
                return Err(GqlError::bad_input("use deleteApiKey to delete a key").into());
            }
            Some(s) => key.status = s.into(),
            None => {}
        }
        match input.expires_at {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => key.expires_at = None,
            MaybeUndefined::Value(t) => {
                key.expires_at = Some(validate::future("expiresAt", t.0, now)?)
            }
        }
        if let Some(m) = input.cost_multiplier {
            key.cost_multiplier = validate::cost_multiplier(m)?;
        }
        match input.policy {
            MaybeUndefined::Undefined => {}
            MaybeUndefined::Null => key.policy = Default::default(),
            MaybeUndefined::Value(p) => key.policy = checked_policy(p.0)?,
        }
        match (input.bound_account_id, input.bound_group_id) {
            (MaybeUndefined::Undefined, MaybeUndefined::Undefined) => {}
            (account, group) => {
                key.binding = binding_of(&svc.store, account.value(), group.value())?;
            }
        }
        if key.status != KeyStatus::Deleted {
            ensure_name_free(&svc.store, &key.name, Some(key.id))?;
        }
        key.updated_at = now;
        svc.store.put_key(&key).map_err(GqlError::from)?;
        tracing::info!(key.id = %key.id, "api key updated");
        Ok(UpdateApiKeyPayload {
            api_key: ApiKeyNode(key),
        })
    }

    /// Soft delete: the key stops working at once, its history stays, and
    /// `updateApiKey(status: ACTIVE)` restores it. Deleting twice is fine.
    async fn delete_api_key(
        &self,
        ctx: &Context<'_>,
        input: DeleteApiKeyInput,
    ) -> Result<DeleteApiKeyPayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let _guard = svc.writes.lock().await;
        let mut key = load(&svc.store, &input.id)?;
        if key.status != KeyStatus::Deleted {
            key.status = KeyStatus::Deleted;
            key.updated_at = Utc::now();
            svc.store.put_key(&key).map_err(GqlError::from)?;
            tracing::info!(key.id = %key.id, "api key deleted");
        }
        Ok(DeleteApiKeyPayload {
            deleted_id: ID(key.id.to_string()),
        })
    }
}

/// The binding named by the inputs (at most one of them), checked to exist.
fn binding_of(
    store: &Store,
    account: Option<&ID>,
    group: Option<&ID>,
) -> Result<domain::KeyBinding, GqlError> {
    match (account, group) {
        (Some(_), Some(_)) => Err(GqlError::bad_input(
            "a key is bound to an account or to a group, not both",
        )),
        (Some(id), None) => {
            let id = domain::AccountId(validate::id("boundAccountId", id)?);
            match store.get_account(id)? {
                Some(a) if a.status != domain::AccountStatus::Deleted => {
                    Ok(domain::KeyBinding::Account(id))
                }
                _ => Err(GqlError::NotFound("no account with this id".into())),
            }
        }
        (None, Some(id)) => {
            let id = domain::GroupId(validate::id("boundGroupId", id)?);
            match store.get_group(id)? {
                Some(_) => Ok(domain::KeyBinding::Group(id)),
                None => Err(GqlError::NotFound("no group with this id".into())),
            }
        }
        (None, None) => Ok(domain::KeyBinding::None),
    }
}

fn checked_policy(policy: crate::limits::KeyPolicy) -> Result<crate::limits::KeyPolicy, GqlError> {
    policy.validate().map_err(|errors| {
        GqlError::bad_input(format!("invalid policy: {}", errors.0.join("; ")))
    })?;
    Ok(policy)
}
