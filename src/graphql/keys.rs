//! Relay keys in the admin API: the `ApiKey` object, the `apiKeys`
//! connection and `apiKey(id)`, and create/update/delete. The raw key is
//! generated here, returned once in `createApiKey`'s `secret`, and stored only
//! as its SHA-256. Names are unique (ignoring case) among keys not deleted.

use super::auth::{require_admin, require_writer, services};
use super::connection::{PageInfo, DEFAULT_PAGE, MAX_PAGE};
use super::error::GqlError;
use super::scalars::{DateTime, Usd};
use super::types::{ApiKeyStatus, OrderDirection};
use super::usage::{totals, Usage};
use super::validate;
use super::viewer;
use crate::domain::{self, ApiKey, KeyId, KeyStatus, UsageSubject};
use crate::store::{KeyFilter, KeyHit, KeyOrder, KeyPage, KeyPosition, KeySortField, Store};
use async_graphql::{Context, Enum, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID};
use base64::Engine;
use chrono::Utc;

/// A relay-issued key. The key itself is never shown again after creation.
pub struct ApiKeyNode(pub ApiKey);

/// A relay-issued key. The key itself is shown only once, by `createApiKey`.
#[Object(name = "ApiKey")]
impl ApiKeyNode {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Masked for VIEWER callers.
    async fn name(&self, ctx: &Context<'_>) -> String {
        viewer::text(ctx, &self.0.name).into_owned()
    }
    /// Masked for VIEWER callers.
    async fn description(&self, ctx: &Context<'_>) -> String {
        viewer::text(ctx, &self.0.description).into_owned()
    }
    /// A safe form of the key for recognising it, e.g. `cr_1a2b…9f0e`.
    async fn display_prefix(&self) -> &str {
        &self.0.display_prefix
    }
    async fn status(&self) -> ApiKeyStatus {
        self.0.status.into()
    }
    /// Masked for VIEWER callers.
    async fn tags(&self, ctx: &Context<'_>) -> Vec<String> {
        viewer::texts(ctx, &self.0.tags)
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

/// What `apiKeys` can be sorted by. Ties are broken by id, so the order is total.
#[derive(Enum, Copy, Clone, Debug, Default, Eq, PartialEq)]
pub enum ApiKeyOrderField {
    /// Creation time.
    #[default]
    CreatedAt,
    /// Name, ignoring case.
    Name,
    /// Last use (keys never used sort first ascending, last descending).
    LastUsedAt,
    /// Billed cost since the start of this month in the relay's time zone.
    BilledCostThisMonth,
    /// Billed cost over the key's whole life.
    BilledCostLifetime,
}

/// An ordering of `apiKeys`.
#[derive(InputObject, Default)]
pub struct ApiKeyOrder {
    /// What to sort by (default CREATED_AT).
    #[graphql(default)]
    pub field: ApiKeyOrderField,
    /// ASC (default) or DESC.
    #[graphql(default)]
    pub direction: OrderDirection,
}

impl ApiKeyOrder {
    /// The store's ordering, and the usage period a cost ordering needs.
    pub(crate) fn to_key_order(&self) -> (KeyOrder, Option<UsagePeriod>) {
        let (field, period) = match self.field {
            ApiKeyOrderField::CreatedAt => (KeySortField::CreatedAt, None),
            ApiKeyOrderField::Name => (KeySortField::Name, None),
            ApiKeyOrderField::LastUsedAt => (KeySortField::LastUsedAt, None),
            ApiKeyOrderField::BilledCostThisMonth => {
                (KeySortField::BilledCost, Some(UsagePeriod::ThisMonth))
            }
            ApiKeyOrderField::BilledCostLifetime => {
                (KeySortField::BilledCost, Some(UsagePeriod::Lifetime))
            }
        };
        let order = KeyOrder {
            field,
            descending: self.direction == OrderDirection::Desc,
        };
        (order, period)
    }
}

/// The period that usage and cost criteria refer to.
#[derive(Enum, Copy, Clone, Debug, Default, Eq, PartialEq)]
pub enum UsagePeriod {
    /// Since the start of this month in the relay's time zone (`time_zone`).
    #[default]
    ThisMonth,
    /// The key's whole life.
    Lifetime,
}

/// Which keys `apiKeys` (and batch operations and exports) cover. Every
/// criterion given must hold.
#[derive(InputObject, Default, Clone)]
pub struct ApiKeyFilter {
    /// Only these statuses; without it, every key except DELETED ones.
    pub status: Option<Vec<ApiKeyStatus>>,
    /// Only these keys.
    pub ids: Option<Vec<ID>>,
    /// Only keys carrying this tag (ignoring case).
    pub tag: Option<String>,
    /// Only keys carrying every one of these tags (ignoring case).
    pub tags: Option<Vec<String>>,
    /// Case-insensitive substring of the name, description or display prefix.
    pub search: Option<String>,
    /// Keys created at or after this instant.
    pub created_from: Option<DateTime>,
    /// Keys created before this instant.
    pub created_before: Option<DateTime>,
    /// Keys with an expiry before this instant (keys that never expire are left out).
    pub expires_before: Option<DateTime>,
    /// Keys bound to this account.
    pub bound_account_id: Option<ID>,
    /// Keys bound to this group.
    pub bound_group_id: Option<ID>,
    /// The period of the usage and cost criteria below (default THIS_MONTH).
    pub usage_period: Option<UsagePeriod>,
    /// Billed cost in the period at least this much.
    pub min_cost_usd: Option<Usd>,
    /// Billed cost in the period at most this much.
    pub max_cost_usd: Option<Usd>,
    /// At least this many requests in the period.
    pub min_requests: Option<i64>,
    /// At most this many requests in the period.
    pub max_requests: Option<i64>,
}

/// Longest search string accepted (longer ones cannot match a name anyway).
const MAX_SEARCH_CHARS: usize = 200;
/// Most ids one filter may list.
const MAX_FILTER_IDS: usize = 1000;

/// The relay's configured time zone (`time_zone`), which "this month" means.
pub(crate) fn relay_time_zone(config: &crate::config::Config) -> Result<chrono_tz::Tz, GqlError> {
    crate::limits::parse_time_zone(&config.time_zone).map_err(GqlError::internal)
}

fn count(field: &str, v: Option<i64>) -> Result<Option<u64>, GqlError> {
    v.map(|n| {
        u64::try_from(n).map_err(|_| GqlError::bad_input(format!("`{field}` must not be negative")))
    })
    .transpose()
}

impl ApiKeyFilter {
    /// The store's filter for this input, checked (`BAD_USER_INPUT` for ids
    /// that are not ids, empty or reversed ranges, negative counts). "This
    /// month" starts at the first instant of the current month in `time_zone`.
    pub(crate) fn to_key_filter(
        &self,
        time_zone: chrono_tz::Tz,
    ) -> Result<crate::store::KeyFilter, GqlError> {
        let statuses = self
            .status
            .as_ref()
            .map(|list| list.iter().map(|s| KeyStatus::from(*s)).collect::<Vec<_>>());
        let ids = match &self.ids {
            None => None,
            Some(list) if list.len() > MAX_FILTER_IDS => {
                return Err(GqlError::bad_input(format!(
                    "`ids` lists at most {MAX_FILTER_IDS} ids"
                )))
            }
            Some(list) => Some(
                list.iter()
                    .map(|id| validate::id("ids", id).map(KeyId))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let mut tags: Vec<String> = Vec::new();
        for t in self.tag.iter().chain(self.tags.iter().flatten()) {
            let t = t.trim();
            if t.is_empty() {
                return Err(GqlError::bad_input("a tag in the filter is empty"));
            }
            if !tags.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                tags.push(t.to_string());
            }
        }
        let search = match self.search.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) if s.chars().count() > MAX_SEARCH_CHARS => {
                return Err(GqlError::bad_input(format!(
                    "`search` is longer than {MAX_SEARCH_CHARS} characters"
                )))
            }
            Some(s) => Some(s.to_string()),
        };
        let created_from = self.created_from.map(|t| t.0);
        let created_before = self.created_before.map(|t| t.0);
        if let (Some(from), Some(before)) = (created_from, created_before) {
            if from >= before {
                return Err(GqlError::bad_input(
                    "`createdFrom` must be before `createdBefore`",
                ));
            }
        }
        let bound_account = self
            .bound_account_id
            .as_ref()
            .map(|id| validate::id("boundAccountId", id).map(domain::AccountId))
            .transpose()?;
        let bound_group = self
            .bound_group_id
            .as_ref()
            .map(|id| validate::id("boundGroupId", id).map(domain::GroupId))
            .transpose()?;
        let min_billed_cost_nano = self.min_cost_usd.map(|u| u.0 .0);
        let max_billed_cost_nano = self.max_cost_usd.map(|u| u.0 .0);
        if let (Some(lo), Some(hi)) = (min_billed_cost_nano, max_billed_cost_nano) {
            if lo > hi {
                return Err(GqlError::bad_input("`minCostUsd` is above `maxCostUsd`"));
            }
        }
        let min_requests = count("minRequests", self.min_requests)?;
        let max_requests = count("maxRequests", self.max_requests)?;
        if let (Some(lo), Some(hi)) = (min_requests, max_requests) {
            if lo > hi {
                return Err(GqlError::bad_input("`minRequests` is above `maxRequests`"));
            }
        }
        let usage_since = match self.usage_period.unwrap_or_default() {
            UsagePeriod::ThisMonth => Some(crate::store::month_start(Utc::now(), time_zone)),
            UsagePeriod::Lifetime => None,
        };
        Ok(crate::store::KeyFilter {
            statuses,
            ids,
            tags,
            search,
            created_from,
            created_before,
            expires_before: self.expires_before.map(|t| t.0),
            bound_account,
            bound_group,
            min_billed_cost_nano,
            max_billed_cost_nano,
            min_requests,
            max_requests,
            usage_since,
        })
    }

    /// Whether any usage or cost criterion is given.
    fn has_usage_criteria(&self) -> bool {
        self.min_cost_usd.is_some()
            || self.max_cost_usd.is_some()
            || self.min_requests.is_some()
            || self.max_requests.is_some()
    }
}

/// The store query for a filter and an ordering: a cost ordering sets the
/// usage period unless the filter's usage criteria name a different one.
pub(crate) fn key_query(
    filter: &ApiKeyFilter,
    order: &ApiKeyOrder,
    time_zone: chrono_tz::Tz,
) -> Result<(crate::store::KeyFilter, KeyOrder), GqlError> {
    let (order, period) = order.to_key_order();
    let mut f = filter.clone();
    if let Some(period) = period {
        match f.usage_period {
            Some(p) if p != period && filter.has_usage_criteria() => {
                return Err(GqlError::bad_input(
                    "usage criteria and the cost ordering must use the same period",
                ))
            }
            _ => f.usage_period = Some(period),
        }
    }
    Ok((f.to_key_filter(time_zone)?, order))
}

/// The opaque cursor of a key's position in one ordering.
fn encode_key_cursor(order: &KeyOrder, p: &KeyPosition) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "k{:?}{}\n{}\n{}",
        order.field, order.descending as u8, p.value, p.id
    ))
}

fn decode_key_cursor(order: &KeyOrder, cursor: &str) -> Result<KeyPosition, GqlError> {
    let bad = || GqlError::bad_input("`after` is not a cursor from this list");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (tag, rest) = text.split_once('\n').ok_or_else(bad)?;
    let (value, id) = rest.rsplit_once('\n').ok_or_else(bad)?;
    if tag != format!("k{:?}{}", order.field, order.descending as u8) {
        return Err(GqlError::bad_input(
            "`after` is a cursor from a different ordering",
        ));
    }
    let id = uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(KeyPosition {
        value: value.to_string(),
        id: KeyId(id),
    })
}

/// Whether a viewer's query touches free text (search, tags, name order),
/// which must then run on the masked values the viewer is shown.
fn viewer_text_query(filter: &KeyFilter, order: &KeyOrder) -> bool {
    filter.search.is_some() || !filter.tags.is_empty() || order.field == KeySortField::Name
}

/// A viewer's page when text is involved: every match of the non-text
/// criteria is masked, then searched and (by name) sorted on the masked text,
/// so probing searches cannot recover what the mask hides. Slower than the
/// index path, which is acceptable for read-only viewers.
fn masked_page(
    ctx: &Context<'_>,
    store: &crate::store::Store,
    filter: &KeyFilter,
    order: &KeyOrder,
    after: Option<&KeyPosition>,
    limit: usize,
) -> Result<KeyPage, GqlError> {
    let untexted = KeyFilter {
        search: None,
        tags: Vec::new(),
        ..filter.clone()
    };
    let text_only = KeyFilter {
        statuses: Some(vec![
            KeyStatus::Active,
            KeyStatus::Disabled,
            KeyStatus::Deleted,
        ]),
        search: filter.search.clone(),
        tags: filter.tags.clone(),
        ..KeyFilter::default()
    };
    let by_name = order.field == KeySortField::Name;
    let all = store
        .query_keys(
            &untexted,
            order,
            if by_name { None } else { after },
            10_000_000,
            false,
        )
        .map_err(GqlError::from)?;
    let mut hits: Vec<KeyHit> = all
        .hits
        .into_iter()
        .filter_map(|mut h| {
            h.key = viewer::masked_keys(ctx, vec![h.key]).pop()?;
            if by_name {
                h.position.value = h.key.name.to_lowercase();
            }
            text_only.matches_record(&h.key).then_some(h)
        })
        .collect();
    if by_name {
        if order.descending {
            hits.sort_by(|a, b| b.position.cmp(&a.position));
        } else {
            hits.sort_by(|a, b| a.position.cmp(&b.position));
        }
        if let Some(a) = after {
            hits.retain(|h| {
                if order.descending {
                    h.position < *a
                } else {
                    h.position > *a
                }
            });
        }
    }
    let total = hits.len() as u64;
    let has_next = hits.len() > limit;
    hits.truncate(limit);
    Ok(KeyPage {
        hits,
        total_count: Some(total),
        has_next,
    })
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
        let svc = services(ctx)?;
        let first = first.unwrap_or(DEFAULT_PAGE);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(
                GqlError::bad_input(format!("`first` must be between 0 and {MAX_PAGE}")).into(),
            );
        }
        let tz = relay_time_zone(&svc.config)?;
        let (filter, order) = key_query(
            &filter.unwrap_or_default(),
            &order_by.unwrap_or_default(),
            tz,
        )?;
        let after = after
            .as_deref()
            .map(|c| decode_key_cursor(&order, c))
            .transpose()?;
        // Counting every match can cost more than the page: only when asked.
        let with_total = ctx.look_ahead().field("totalCount").exists();
        let limit = usize::try_from(first).unwrap_or(0);
        let page = if viewer::is_viewer(ctx) && viewer_text_query(&filter, &order) {
            masked_page(ctx, &svc.store, &filter, &order, after.as_ref(), limit)?
        } else {
            svc.store
                .query_keys(&filter, &order, after.as_ref(), limit, with_total)
                .map_err(GqlError::from)?
        };
        let edges: Vec<ApiKeyEdge> = page
            .hits
            .into_iter()
            .map(|h| ApiKeyEdge {
                cursor: encode_key_cursor(&order, &h.position),
                node: ApiKeyNode(h.key),
            })
            .collect();
        Ok(ApiKeyConnection {
            total_count: page
                .total_count
                .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            page_info: PageInfo {
                has_next_page: page.has_next,
                has_previous_page: after.is_some(),
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
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
pub(super) fn ensure_name_free(
    store: &Store,
    name: &str,
    except: Option<KeyId>,
) -> Result<(), GqlError> {
    let taken = store
        .keys_named(name)?
        .iter()
        .any(|k| Some(k.id) != except && k.status != KeyStatus::Deleted);
    if taken {
        return Err(GqlError::Conflict(format!(
            "an API key named {name:?} already exists"
        )));
    }
    Ok(())
}

pub(super) fn load(store: &Store, id: &ID) -> Result<ApiKey, GqlError> {
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
pub(super) fn binding_of(
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

pub(super) fn checked_policy(
    policy: crate::limits::KeyPolicy,
) -> Result<crate::limits::KeyPolicy, GqlError> {
    policy.validate().map_err(|errors| {
        GqlError::bad_input(format!("invalid policy: {}", errors.0.join("; ")))
    })?;
    Ok(policy)
}
