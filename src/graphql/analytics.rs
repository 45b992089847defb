//! Usage analytics in the admin API: time series (`usageSeries`), top-N by
//! cost (`topUsage`), today's and this month's totals (`usageSummary`),
//! per-account window usage (`accountWindowUsage`), cost insights
//! (`costInsights`), the bounded request log (`recentRequests`), the live
//! subscriptions `requestLog` and `usageTicker`, `resetAccountState`, and the
//! pricing-override part of the run-time settings.
//!
//! Every figure comes from the pre-aggregated buckets and rankings
//! (`usage::analytics`), never from scanning the request log; subscriptions
//! listen to the usage sink's broadcast, which the relay feeds without ever
//! waiting (a subscriber that lags loses events and is told how many).

use super::auth::{require_admin, require_writer, services};
use super::connection::{PageInfo, MAX_PAGE};
use super::error::GqlError;
use super::scalars::{DateTime, Usd};
use super::usage::Usage;
use super::validate;
use crate::balancer::{AccountState as LiveState, BreakerState};
use crate::config::PriceOverride;
use crate::domain::{AccountId, KeyId, NanoUsd, UsageRecord, UsageSubject, UsageTotals};
use crate::store::{RankKind, RankedCost, RequestLogFilter, Store};
use crate::usage::analytics::{self, Analytics, Granularity as Gran};
use crate::usage::insights::{self, SuggestionKind as Kind};
use crate::usage::pricing::{ModelPrice, PricingTable};
use crate::usage::UsageSink;
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, Subscription, ID};
use base64::Engine;
use chrono::Utc;
use chrono_tz::Tz;
use futures::Stream;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often `usageTicker` pushes.
const TICK: Duration = Duration::from_secs(1);
/// Most entries a top list or an insight list returns.
const MAX_TOP: i32 = 100;

/// What the analytics resolvers need beyond the common services.
pub(crate) struct AnalyticsServices {
    pub analytics: Analytics,
    /// The relay's usage sink (live records); absent in an admin API built
    /// without a relay (tools, some tests): then subscriptions are refused.
    pub live: Option<UsageSink>,
    /// Prices in effect (with file and run-time overrides), for savings.
    pub pricing: Arc<PricingTable>,
    /// Key and account names by id, for live rows (names change rarely).
    names: moka::sync::Cache<uuid::Uuid, Arc<str>>,
}

impl AnalyticsServices {
    pub fn new(store: Store, live: Option<UsageSink>, pricing: Arc<PricingTable>) -> Self {
        AnalyticsServices {
            analytics: Analytics::new(store),
            live,
            pricing,
            names: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        }
    }

    fn key_name(&self, id: KeyId) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(&id.0) {
            return Some(n);
        }
        let name: Arc<str> = self.analytics.store().get_key(id).ok()??.name.into();
        self.names.insert(id.0, name.clone());
        Some(name)
    }

    fn account_name(&self, id: AccountId) -> Option<Arc<str>> {
        if let Some(n) = self.names.get(&id.0) {
            return Some(n);
        }
        let name: Arc<str> = self.analytics.store().get_account(id).ok()??.name.into();
        self.names.insert(id.0, name.clone());
        Some(name)
    }

    fn name_of(&self, kind: RankKind, id: &str) -> String {
        let parsed = uuid::Uuid::parse_str(id).ok();
        let name = match (kind, parsed) {
            (RankKind::Key, Some(u)) => self.key_name(KeyId(u)),
            (RankKind::Account, Some(u)) => self.account_name(AccountId(u)),
            _ => None,
        };
        name.map_or_else(|| id.to_string(), |n| n.to_string())
    }
}

fn analytics_services<'a>(ctx: &Context<'a>) -> Result<&'a Arc<AnalyticsServices>, GqlError> {
    ctx.data::<Arc<AnalyticsServices>>()
        .map_err(|_| GqlError::internal("analytics services missing from the schema"))
}

fn bad(e: analytics::Error) -> GqlError {
    match e {
        analytics::Error::BadInput(m) => GqlError::bad_input(m),
        analytics::Error::Store(e) => e.into(),
    }
}

/// Width of one point of a usage series.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum Granularity {
    /// UTC hours (also the hours of any zone with a whole-hour offset).
    Hour,
    /// Local days of the time zone.
    Day,
    /// Local months of the time zone (summed from day and hour buckets).
    Month,
}

impl From<Granularity> for Gran {
    fn from(g: Granularity) -> Self {
        match g {
            Granularity::Hour => Gran::Hour,
            Granularity::Day => Gran::Day,
            Granularity::Month => Gran::Month,
        }
    }
}

/// What usage is grouped or ranked by.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum UsageDimension {
    /// Relay keys (ranked by billed cost).
    Key,
    /// Upstream accounts (ranked by list cost).
    Account,
    /// Models as upstream reported them (ranked by billed cost).
    Model,
}

impl From<UsageDimension> for RankKind {
    fn from(d: UsageDimension) -> Self {
        match d {
            UsageDimension::Key => RankKind::Key,
            UsageDimension::Account => RankKind::Account,
            UsageDimension::Model => RankKind::Model,
        }
    }
}

/// Restricts analytics to some keys, accounts or models (empty or absent:
/// all). Keys and accounts cannot be combined (usage is not kept per pair).
#[derive(InputObject, Default, Clone)]
pub struct UsageFilter {
    /// Only these keys.
    pub key_ids: Option<Vec<ID>>,
    /// Only these accounts.
    pub account_ids: Option<Vec<ID>>,
    /// Only these models (upstream-reported names).
    pub models: Option<Vec<String>>,
}

struct ParsedFilter {
    keys: Vec<KeyId>,
    accounts: Vec<AccountId>,
    models: Vec<String>,
}

const MAX_FILTER_VALUES: usize = 100;

fn parse_filter(f: Option<UsageFilter>) -> Result<ParsedFilter, GqlError> {
    let f = f.unwrap_or_default();
    let ids = |field: &str, v: Option<Vec<ID>>| -> Result<Vec<uuid::Uuid>, GqlError> {
        let v = v.unwrap_or_default();
        if v.len() > MAX_FILTER_VALUES {
            return Err(GqlError::bad_input(format!(
                "`{field}` takes at most {MAX_FILTER_VALUES} values"
            )));
        }
        v.iter().map(|id| validate::id(field, id)).collect()
    };
    let models = f.models.unwrap_or_default();
    if models.len() > MAX_FILTER_VALUES {
        return Err(GqlError::bad_input(format!(
            "`models` takes at most {MAX_FILTER_VALUES} values"
        )));
    }
    Ok(ParsedFilter {
        keys: ids("keyIds", f.key_ids)?.into_iter().map(KeyId).collect(),
        accounts: ids("accountIds", f.account_ids)?
            .into_iter()
            .map(AccountId)
            .collect(),
        models,
    })
}

fn zone(svc: &AnalyticsServices, name: Option<String>) -> Result<Tz, GqlError> {
    match name {
        Some(n) => crate::limits::parse_time_zone(&n).map_err(GqlError::bad_input),
        None => Ok(svc.analytics.time_zone()),
    }
}

fn range(
    from: DateTime,
    to: DateTime,
) -> Result<(chrono::DateTime<Utc>, chrono::DateTime<Utc>), GqlError> {
    if from.0 >= to.0 {
        return Err(GqlError::bad_input("`from` must be before `to`"));
    }
    Ok((from.0, to.0))
}

fn top_count(first: i32) -> Result<usize, GqlError> {
    if !(1..=MAX_TOP).contains(&first) {
        return Err(GqlError::bad_input(format!(
            "`first` must be between 1 and {MAX_TOP}"
        )));
    }
    Ok(first as usize)
}

/// One point of a usage series: the totals of one whole period.
#[derive(SimpleObject)]
pub struct UsagePoint {
    /// Start of the period (inclusive).
    pub start: DateTime,
    /// End of the period (exclusive).
    pub end: DateTime,
    /// The period in the query's time zone: `2025-01-31T14`, `2025-01-31` or `2025-01`.
    pub label: String,
    /// Requests served.
    pub requests: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache writes with the 5-minute TTL.
    #[graphql(name = "cacheCreation5mInputTokens")]
    pub cache_creation_5m_input_tokens: u64,
    /// Cache writes with the 1-hour TTL.
    #[graphql(name = "cacheCreation1hInputTokens")]
    pub cache_creation_1h_input_tokens: u64,
    /// Cache reads.
    pub cache_read_input_tokens: u64,
    /// Upstream price of the tokens.
    pub list_cost_usd: Usd,
    /// List cost times each key's multiplier.
    pub billed_cost_usd: Usd,
    /// Requests answered with a non-2xx status.
    pub error_requests: u64,
}

fn point(
    t: &UsageTotals,
    start: chrono::DateTime<Utc>,
    end: chrono::DateTime<Utc>,
    g: Gran,
    tz: Tz,
) -> UsagePoint {
    let local = start.with_timezone(&tz);
    UsagePoint {
        start: start.into(),
        end: end.into(),
        label: match g {
            Gran::Hour => local.format("%Y-%m-%dT%H").to_string(),
            Gran::Day => local.format("%Y-%m-%d").to_string(),
            Gran::Month => local.format("%Y-%m").to_string(),
        },
        requests: t.requests,
        input_tokens: t.input_tokens,
        output_tokens: t.output_tokens,
        cache_creation_5m_input_tokens: t.cache_creation_5m_tokens,
        cache_creation_1h_input_tokens: t.cache_creation_1h_tokens,
        cache_read_input_tokens: t.cache_read_tokens,
        list_cost_usd: Usd(t.list_cost),
        billed_cost_usd: Usd(t.billed_cost),
        error_requests: t.error_requests,
    }
}

/// One series: the whole selection, or one group of it.
#[derive(SimpleObject)]
pub struct UsageSeries {
    /// The group's dimension; null for an ungrouped series.
    pub group_by: Option<UsageDimension>,
    /// The key or account id, or the model name; null when ungrouped.
    pub group_id: Option<String>,
    /// The key's or account's name (the model name for models); null when ungrouped.
    pub group_name: Option<String>,
    /// One point per whole period overlapping the range, oldest first.
    pub points: Vec<UsagePoint>,
    /// The sum of the points.
    pub total: Usage,
}

/// One entry of a cost ranking.
#[derive(SimpleObject)]
pub struct UsageRank {
    /// 1 for the most expensive.
    pub rank: u32,
    /// What is ranked.
    pub dimension: UsageDimension,
    /// Key or account id, or the model name.
    pub id: String,
    /// The key's or account's name (the model name for models).
    pub name: String,
    /// The cost ranked by: billed for keys and models, list for accounts.
    pub cost_usd: Usd,
    /// Billed cost over the range.
    pub billed_cost_usd: Usd,
    /// List cost over the range.
    pub list_cost_usd: Usd,
    /// Everything over the range.
    pub usage: Usage,
}

/// Totals of the current local day and month.
#[derive(SimpleObject)]
pub struct UsageSummary {
    /// The zone the day and month are taken in.
    pub time_zone: String,
    /// Start of today (local midnight).
    pub today_start: DateTime,
    /// Start of this month.
    pub month_start: DateTime,
    /// Everything served today (billed cost).
    pub today: Usage,
    /// Everything served this month (billed cost).
    pub this_month: Usage,
}

/// One account's use of its 5-hour window.
#[derive(SimpleObject)]
pub struct AccountWindowUsage {
    /// The account.
    pub account_id: ID,
    /// Its name.
    pub name: String,
    /// Tokens the relay counted in the current 5-hour window.
    pub window_tokens_used: u64,
    /// The configured tokens per window, when known.
    pub window_token_limit: Option<u64>,
    /// When the window resets, when known.
    pub window_resets_at: Option<DateTime>,
    /// 0–1 share of the tightest window left.
    pub headroom: f64,
    /// Usage of the last five hours from the hourly buckets (whole hours,
    /// so up to six hours; list cost).
    pub last_five_hours: Usage,
}

/// Cache use and what it saved, for one key or account.
#[derive(SimpleObject)]
pub struct CacheEfficiency {
    /// Key or account id.
    pub id: ID,
    /// Its name.
    pub name: String,
    /// Requests over the range.
    pub requests: u64,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Cache writes (both TTLs).
    pub cache_write_tokens: u64,
    /// Cache reads.
    pub cache_read_tokens: u64,
    /// Cache reads / (input + cache writes + cache reads).
    pub cache_read_share: f64,
    /// Cache reads × (input price − cache-read price), per model, at list prices.
    pub saving_usd: Usd,
}

/// What a suggestion is about.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum SuggestionKind {
    /// A key sends small requests to the most expensive model in use.
    SmallRequestsOnExpensiveModel,
    /// An account served nothing while others were resting.
    IdleAccountWhileOthersRest,
    /// A key writes prompt cache but rarely reads it back.
    LowCacheHitRatio,
}

/// One figure behind a suggestion.
#[derive(SimpleObject)]
pub struct SuggestionFigure {
    /// What the figure is (camelCase).
    pub name: String,
    /// Its value as shown in the message.
    pub value: String,
}

/// A plain-language suggestion derived from the data.
#[derive(SimpleObject)]
pub struct CostSuggestion {
    /// The rule that fired.
    pub kind: SuggestionKind,
    /// The key or account it is about.
    pub subject_id: ID,
    /// Its name.
    pub subject_name: String,
    /// The suggestion in words, with its numbers.
    pub message: String,
    /// The numbers that triggered it.
    pub figures: Vec<SuggestionFigure>,
}

/// Where money goes and how to spend less, over a range.
#[derive(SimpleObject)]
pub struct CostInsights {
    /// Start of the range.
    pub from: DateTime,
    /// End of the range.
    pub to: DateTime,
    /// The most expensive keys (billed cost).
    pub top_keys: Vec<UsageRank>,
    /// The most expensive models (billed cost).
    pub top_models: Vec<UsageRank>,
    /// The most expensive accounts (list cost).
    pub top_accounts: Vec<UsageRank>,
    /// Cache use of the most expensive keys.
    pub cache_by_key: Vec<CacheEfficiency>,
    /// Cache use of the most expensive accounts.
    pub cache_by_account: Vec<CacheEfficiency>,
    /// Suggestions, each with the figures that triggered it.
    pub suggestions: Vec<CostSuggestion>,
}

/// One finished request of the log.
#[derive(SimpleObject)]
pub struct LoggedRequest {
    /// When it finished.
    pub at: DateTime,
    /// The relay key (null: a failed attempt billed to its account only).
    pub key_id: Option<ID>,
    /// The key's name, when the key still exists.
    pub key_name: Option<String>,
    /// The account that served it.
    pub account_id: Option<ID>,
    /// The account's name, when it still exists.
    pub account_name: Option<String>,
    /// The model the client asked for.
    pub requested_model: String,
    /// The model upstream reported (prices come from this one).
    pub model: String,
    /// Uncached input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cache writes (both TTLs).
    pub cache_creation_input_tokens: u64,
    /// Cache reads.
    pub cache_read_input_tokens: u64,
    /// Upstream price.
    pub list_cost_usd: Usd,
    /// List cost times the key's multiplier.
    pub billed_cost_usd: Usd,
    /// HTTP status the client got (499: the client left).
    pub status: u32,
    /// Total time in milliseconds.
    pub latency_ms: u64,
    /// Time to the first byte in milliseconds (0 when unknown).
    pub ttfb_ms: u64,
    /// Whether it streamed.
    pub stream: bool,
    /// Whether some counts were estimated.
    pub estimated: bool,
    /// Whether its model had no known price.
    pub unpriced: bool,
}

fn logged(svc: &AnalyticsServices, r: &UsageRecord) -> LoggedRequest {
    LoggedRequest {
        at: r.at.into(),
        key_id: r.key_id.map(|k| ID(k.to_string())),
        key_name: r
            .key_id
            .and_then(|k| svc.key_name(k))
            .map(|n| n.to_string()),
        account_id: r.account_id.map(|a| ID(a.to_string())),
        account_name: r
            .account_id
            .and_then(|a| svc.account_name(a))
            .map(|n| n.to_string()),
        requested_model: r.requested_model.clone(),
        model: r.model.clone(),
        input_tokens: r.tokens.input,
        output_tokens: r.tokens.output,
        cache_creation_input_tokens: r.tokens.cache_creation(),
        cache_read_input_tokens: r.tokens.cache_read,
        list_cost_usd: Usd(r.list_cost),
        billed_cost_usd: Usd(r.billed_cost),
        status: u32::from(r.status),
        latency_ms: r.latency_ms,
        ttfb_ms: r.ttfb_ms,
        stream: r.stream,
        estimated: r.estimated,
        unpriced: r.unpriced,
    }
}

/// Filters the request log and the `requestLog` subscription.
#[derive(InputObject, Default)]
pub struct RequestLogFilterInput {
    /// Only these keys.
    pub key_ids: Option<Vec<ID>>,
    /// Only these accounts.
    pub account_ids: Option<Vec<ID>>,
    /// Only these models (requested or upstream-reported name).
    pub models: Option<Vec<String>>,
    /// Only these HTTP statuses.
    pub statuses: Option<Vec<i32>>,
    /// true: only non-2xx; false: only 2xx.
    pub errors: Option<bool>,
}

fn log_filter(f: Option<RequestLogFilterInput>) -> Result<RequestLogFilter, GqlError> {
    let f = f.unwrap_or_default();
    let parsed = parse_filter(Some(UsageFilter {
        key_ids: f.key_ids,
        account_ids: f.account_ids,
        models: f.models,
    }))?;
    let statuses = f
        .statuses
        .unwrap_or_default()
        .into_iter()
        .map(|s| u16::try_from(s).map_err(|_| GqlError::bad_input("`statuses` are HTTP statuses")))
        .collect::<Result<_, _>>()?;
    Ok(RequestLogFilter {
        key_ids: parsed.keys,
        account_ids: parsed.accounts,
        models: parsed.models,
        statuses,
        errors: f.errors,
    })
}

/// An edge of the request log.
#[derive(SimpleObject)]
pub struct LoggedRequestEdge {
    /// Opaque position for `after`.
    pub cursor: String,
    /// The request.
    pub node: LoggedRequest,
}

/// A page of the request log, newest first.
#[derive(SimpleObject)]
pub struct LoggedRequestConnection {
    /// Requests that match the filter in the kept log.
    pub total_count: u64,
    /// This page.
    pub edges: Vec<LoggedRequestEdge>,
    /// Paging state.
    pub page_info: PageInfo,
}

const LOG_CURSOR: &str = "log:";

fn log_cursor(position: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode([LOG_CURSOR.as_bytes(), position].concat())
}

fn parse_log_cursor(c: &str) -> Result<Vec<u8>, GqlError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| b.strip_prefix(LOG_CURSOR.as_bytes()).map(<[u8]>::to_vec))
        .ok_or_else(|| GqlError::bad_input("`after` is not a request-log cursor"))
}

/// How long the request log keeps entries.
#[derive(SimpleObject)]
pub struct RequestLogRetention {
    /// Most entries kept (the oldest go first).
    pub max_entries: u64,
    /// Oldest entry age kept, in seconds.
    pub max_age_seconds: u64,
    /// Entries kept now.
    pub entries: u64,
    /// Bytes of their keys and values (before sled's own overhead).
    pub bytes: u64,
}

#[derive(Default)]
pub struct AnalyticsQuery;

impl AnalyticsQuery {
    fn ranks(
        svc: &AnalyticsServices,
        dim: UsageDimension,
        from: chrono::DateTime<Utc>,
        to: chrono::DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<UsageRank>, GqlError> {
        let kind = RankKind::from(dim);
        let top = svc.analytics.top(kind, from, to, n).map_err(bad)?;
        top.iter()
            .enumerate()
            .map(|(i, r)| {
                let subject = analytics::subject_of(kind, &r.id);
                let totals = match subject {
                    Some(s) => svc.analytics.total(&[s], from, to).map_err(bad)?,
                    None => UsageTotals::default(),
                };
                Ok(rank_row(svc, kind, dim, i, r, totals))
            })
            .collect()
    }
}

fn rank_row(
    svc: &AnalyticsServices,
    kind: RankKind,
    dim: UsageDimension,
    i: usize,
    r: &RankedCost,
    totals: UsageTotals,
) -> UsageRank {
    UsageRank {
        rank: i as u32 + 1,
        dimension: dim,
        id: r.id.clone(),
        name: svc.name_of(kind, &r.id),
        cost_usd: Usd(kind.sort_cost(r.billed, r.list)),
        billed_cost_usd: Usd(r.billed),
        list_cost_usd: Usd(r.list),
        usage: if kind == RankKind::Account {
            Usage::list(totals)
        } else {
            Usage::billed(totals)
        },
    }
}

#[Object]
impl AnalyticsQuery {
    /// Usage over `[from, to)` as a series of whole periods (hours, or days
    /// and months of `timeZone`, default the configured zone), optionally
    /// filtered and grouped. Grouped without a filter on that dimension, the
    /// `limit` most expensive groups of the range are returned.
    #[allow(clippy::too_many_arguments)]
    async fn usage_series(
        &self,
        ctx: &Context<'_>,
        from: DateTime,
        to: DateTime,
        granularity: Granularity,
        group_by: Option<UsageDimension>,
        filter: Option<UsageFilter>,
        #[graphql(default = 10)] limit: i32,
        time_zone: Option<String>,
    ) -> Result<Vec<UsageSeries>> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?;
        let tz = zone(svc, time_zone)?;
        let (from, to) = range(from, to)?;
        let g = Gran::from(granularity);
        let bounds = analytics::boundaries(from, to, g, tz).map_err(bad)?;
        let f = parse_filter(filter)?;
        if !(1..=analytics::MAX_GROUPS as i32).contains(&limit) {
            return Err(GqlError::bad_input(format!(
                "`limit` must be between 1 and {}",
                analytics::MAX_GROUPS
            ))
            .into());
        }
        let (lo, hi) = (bounds[0], bounds[bounds.len() - 1]);
        // (group id, subjects) pairs.
        let groups: Vec<(Option<String>, Vec<UsageSubject>)> = match group_by {
            None => vec![(
                None,
                analytics::subjects(&f.keys, &f.accounts, &f.models).map_err(bad)?,
            )],
            Some(UsageDimension::Key) => {
                if !f.accounts.is_empty() {
                    return Err(
                        GqlError::bad_input("cannot group by key with an account filter").into(),
                    );
                }
                let keys = if f.keys.is_empty() {
                    Self::ranks(svc, UsageDimension::Key, lo, hi, limit as usize)?
                        .into_iter()
                        .filter_map(|r| uuid::Uuid::parse_str(&r.id).ok().map(KeyId))
                        .collect()
                } else {
                    f.keys.clone()
                };
                keys.into_iter()
                    .map(|k| {
                        Ok((
                            Some(k.to_string()),
                            analytics::subjects(&[k], &[], &f.models).map_err(bad)?,
                        ))
                    })
                    .collect::<Result<_, GqlError>>()?
            }
            Some(UsageDimension::Account) => {
                if !f.keys.is_empty() {
                    return Err(
                        GqlError::bad_input("cannot group by account with a key filter").into(),
                    );
                }
                let accounts = if f.accounts.is_empty() {
                    Self::ranks(svc, UsageDimension::Account, lo, hi, limit as usize)?
                        .into_iter()
                        .filter_map(|r| uuid::Uuid::parse_str(&r.id).ok().map(AccountId))
                        .collect()
                } else {
                    f.accounts.clone()
                };
                accounts
                    .into_iter()
                    .map(|a| {
                        Ok((
                            Some(a.to_string()),
                            analytics::subjects(&[], &[a], &f.models).map_err(bad)?,
                        ))
                    })
                    .collect::<Result<_, GqlError>>()?
            }
            Some(UsageDimension::Model) => {
                let store = svc.analytics.store();
                let models: Vec<String> = if !f.models.is_empty() {
                    f.models.clone()
                } else if !f.keys.is_empty() || !f.accounts.is_empty() {
                    let mut set = std::collections::BTreeSet::new();
                    for k in &f.keys {
                        set.extend(store.key_models(*k).map_err(GqlError::from)?);
                    }
                    for a in &f.accounts {
                        set.extend(store.account_models(*a).map_err(GqlError::from)?);
                    }
                    set.into_iter().take(limit as usize).collect()
                } else {
                    Self::ranks(svc, UsageDimension::Model, lo, hi, limit as usize)?
                        .into_iter()
                        .map(|r| r.id)
                        .collect()
                };
                models
                    .into_iter()
                    .map(|m| {
                        Ok((
                            Some(m.clone()),
                            analytics::subjects(&f.keys, &f.accounts, std::slice::from_ref(&m))
                                .map_err(bad)?,
                        ))
                    })
                    .collect::<Result<_, GqlError>>()?
            }
        };
        let mut out = Vec::with_capacity(groups.len());
        for (id, subjects) in groups {
            let totals = svc.analytics.series(&subjects, &bounds).map_err(bad)?;
            let mut sum = UsageTotals::default();
            let points = totals
                .iter()
                .zip(bounds.windows(2))
                .map(|(t, w)| {
                    sum.merge(t);
                    point(t, w[0], w[1], g, tz)
                })
                .collect();
            let name = match (group_by, &id) {
                (Some(d), Some(id)) => Some(svc.name_of(d.into(), id)),
                _ => None,
            };
            out.push(UsageSeries {
                group_by,
                group_id: id,
                group_name: name,
                points,
                total: if group_by == Some(UsageDimension::Account) {
                    Usage::list(sum)
                } else {
                    Usage::billed(sum)
                },
            });
        }
        Ok(out)
    }

    /// The `first` most expensive keys, accounts or models over `[from, to)`
    /// (default: this month in the configured zone), most expensive first.
    async fn top_usage(
        &self,
        ctx: &Context<'_>,
        by: UsageDimension,
        from: Option<DateTime>,
        to: Option<DateTime>,
        #[graphql(default = 10)] first: i32,
    ) -> Result<Vec<UsageRank>> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?;
        let n = top_count(first)?;
        let (from, to) = default_month(svc, from, to)?;
        Ok(Self::ranks(svc, by, from, to, n)?)
    }

    /// Today's and this month's totals in `timeZone` (default: the configured zone).
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        time_zone: Option<String>,
    ) -> Result<UsageSummary> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?;
        let tz = zone(svc, time_zone)?;
        let ((d0, d1), (m0, m1)) = analytics::today_and_month(Utc::now(), tz);
        let g = [UsageSubject::Global];
        Ok(UsageSummary {
            time_zone: tz.name().to_string(),
            today_start: d0.into(),
            month_start: m0.into(),
            today: Usage::billed(svc.analytics.total(&g, d0, d1).map_err(bad)?),
            this_month: Usage::billed(svc.analytics.total(&g, m0, m1).map_err(bad)?),
        })
    }

    /// Each account's 5-hour window: the balancer's live count and the last
    /// five hours from the buckets.
    async fn account_window_usage(&self, ctx: &Context<'_>) -> Result<Vec<AccountWindowUsage>> {
        require_admin(ctx)?;
        let common = services(ctx)?;
        let svc = analytics_services(ctx)?;
        let now = Utc::now();
        let since = now - chrono::Duration::hours(5);
        let accounts = common.store.list_accounts().map_err(GqlError::from)?;
        let stats = common.balancer.stats();
        let mut out = Vec::new();
        for a in accounts
            .iter()
            .filter(|a| a.status != crate::domain::AccountStatus::Deleted)
        {
            let live = stats.accounts.iter().find(|s| s.id == a.id);
            let t = svc
                .analytics
                .total(&[UsageSubject::Account(a.id)], since, now)
                .map_err(bad)?;
            out.push(AccountWindowUsage {
                account_id: ID(a.id.to_string()),
                name: a.name.clone(),
                window_tokens_used: live.map_or(0, |s| s.window_tokens_used),
                window_token_limit: a.routing.window_token_limit,
                window_resets_at: live
                    .and_then(|s| s.window_resets_at)
                    .map(|t| DateTime(t.into())),
                headroom: live.map_or(1.0, |s| s.headroom),
                last_five_hours: Usage::list(t),
            });
        }
        Ok(out)
    }

    /// Cache savings, the most expensive keys, models and accounts, and
    /// suggestions over `[from, to)` (default: this month).
    async fn cost_insights(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime>,
        to: Option<DateTime>,
        #[graphql(default = 10)] first: i32,
    ) -> Result<CostInsights> {
        require_admin(ctx)?;
        let common = services(ctx)?;
        let svc = analytics_services(ctx)?;
        let n = top_count(first)?;
        let (from, to) = default_month(svc, from, to)?;
        let store = svc.analytics.store();
        let top_keys = Self::ranks(svc, UsageDimension::Key, from, to, n)?;
        let top_models = Self::ranks(svc, UsageDimension::Model, from, to, n)?;
        let top_accounts = Self::ranks(svc, UsageDimension::Account, from, to, n)?;

        // Per key: its models over the range, priced for savings.
        let mut key_models: Vec<insights::KeyModelFigures> = Vec::new();
        let mut cache_by_key = Vec::new();
        let mut cache_figures = Vec::new();
        for r in &top_keys {
            let Ok(u) = uuid::Uuid::parse_str(&r.id) else {
                continue;
            };
            let key = KeyId(u);
            let models = store.key_models_in(key, from, to).map_err(GqlError::from)?;
            let mut per_model = Vec::new();
            for m in models {
                let t = store
                    .usage_total(&UsageSubject::KeyModel(key, m.clone()), Some((from, to)))
                    .map_err(GqlError::from)?;
                key_models.push(insights::KeyModelFigures {
                    key_id: r.id.clone(),
                    key_name: r.name.clone(),
                    model: m.clone(),
                    requests: t.requests,
                    tokens: t.input_tokens
                        + t.output_tokens
                        + t.cache_creation_tokens()
                        + t.cache_read_tokens,
                    billed: t.billed_cost,
                });
                per_model.push((m, t));
            }
            let row = efficiency(svc, &r.id, &r.name, &per_model);
            cache_figures.push(insights::CacheFigures {
                id: r.id.clone(),
                name: r.name.clone(),
                requests: row.requests,
                cache_write_tokens: row.cache_write_tokens,
                cache_read_tokens: row.cache_read_tokens,
            });
            cache_by_key.push(row);
        }
        let mut cache_by_account = Vec::new();
        for r in &top_accounts {
            let Ok(u) = uuid::Uuid::parse_str(&r.id) else {
                continue;
            };
            let account = AccountId(u);
            let mut per_model = Vec::new();
            for m in store.account_models(account).map_err(GqlError::from)? {
                let t = store
                    .usage_total(
                        &UsageSubject::AccountModel(account, m.clone()),
                        Some((from, to)),
                    )
                    .map_err(GqlError::from)?;
                if t.requests > 0 {
                    per_model.push((m, t));
                }
            }
            cache_by_account.push(efficiency(svc, &r.id, &r.name, &per_model));
        }

        let mut suggestions = Vec::new();
        // The most and least expensive models in use, by input price.
        let priced: Vec<(String, ModelPrice)> = top_models
            .iter()
            .filter_map(|m| svc.pricing.price(&m.id).map(|p| (m.id.clone(), p)))
            .collect();
        let expensive = priced.iter().max_by_key(|(_, p)| p.input);
        let cheapest = priced.iter().min_by_key(|(_, p)| p.input);
        if let Some((name, price)) = expensive {
            suggestions.extend(insights::small_requests_on_expensive_model(
                &key_models,
                (name, price),
                cheapest.map(|(n, p)| (n.as_str(), p)),
            ));
        }
        let now = Utc::now();
        let stats = common.balancer.stats();
        let mut figures = Vec::new();
        for a in &stats.accounts {
            let recent = store
                .usage_total(
                    &UsageSubject::Account(a.id),
                    Some((now - chrono::Duration::hours(1), now)),
                )
                .map_err(GqlError::from)?;
            figures.push(insights::AccountFigures {
                id: a.id.to_string(),
                name: a.name.clone(),
                recent_requests: recent.requests,
                resting: matches!(a.state, LiveState::CoolingDown | LiveState::RateLimited)
                    || matches!(a.breaker, BreakerState::Open { .. }),
                usable: !matches!(a.state, LiveState::Disabled | LiveState::AuthFailed),
            });
        }
        suggestions.extend(insights::idle_while_others_rest(&figures));
        suggestions.extend(insights::low_cache_hit_ratio(&cache_figures));
        Ok(CostInsights {
            from: from.into(),
            to: to.into(),
            top_keys,
            top_models,
            top_accounts,
            cache_by_key,
            cache_by_account,
            suggestions: suggestions
                .into_iter()
                .map(|s| CostSuggestion {
                    kind: match s.kind {
                        Kind::SmallRequestsOnExpensiveModel => {
                            SuggestionKind::SmallRequestsOnExpensiveModel
                        }
                        Kind::IdleAccountWhileOthersRest => {
                            SuggestionKind::IdleAccountWhileOthersRest
                        }
                        Kind::LowCacheHitRatio => SuggestionKind::LowCacheHitRatio,
                    },
                    subject_id: ID(s.subject_id),
                    subject_name: s.subject_name,
                    message: s.message,
                    figures: s
                        .figures
                        .into_iter()
                        .map(|(name, value)| SuggestionFigure { name, value })
                        .collect(),
                })
                .collect(),
        })
    }

    /// The newest finished requests (the bounded live log: at most
    /// 100,000 entries and 7 days by default), newest first, filtered.
    async fn recent_requests(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 50)] first: i32,
        after: Option<String>,
        filter: Option<RequestLogFilterInput>,
    ) -> Result<LoggedRequestConnection> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?;
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(
                GqlError::bad_input(format!("`first` must be between 0 and {MAX_PAGE}")).into(),
            );
        }
        let filter = log_filter(filter)?;
        let after = after.as_deref().map(parse_log_cursor).transpose()?;
        let store = svc.analytics.store().clone();
        let (page, more, total) = tokio::task::spawn_blocking(move || {
            store.request_log_page(&filter, after.as_deref(), first as usize)
        })
        .await
        .map_err(|e| GqlError::internal(e.to_string()))?
        .map_err(GqlError::from)?;
        let edges: Vec<LoggedRequestEdge> = page
            .iter()
            .map(|e| LoggedRequestEdge {
                cursor: log_cursor(&e.position),
                node: logged(svc, &e.record),
            })
            .collect();
        Ok(LoggedRequestConnection {
            total_count: total as u64,
            page_info: PageInfo {
                has_next_page: more,
                has_previous_page: false,
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
            },
            edges,
        })
    }

    /// How long the request log keeps entries, and what it holds now.
    async fn request_log_retention(&self, ctx: &Context<'_>) -> Result<RequestLogRetention> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?;
        let store = svc.analytics.store().clone();
        let (entries, bytes) = tokio::task::spawn_blocking(move || store.request_log_footprint())
            .await
            .map_err(|e| GqlError::internal(e.to_string()))?
            .map_err(GqlError::from)?;
        Ok(RequestLogRetention {
            max_entries: crate::store::REQUEST_LOG_MAX as u64,
            max_age_seconds: crate::store::REQUEST_LOG_MAX_AGE.num_seconds() as u64,
            entries: entries as u64,
            bytes,
        })
    }
}

/// `[from, to)`, defaulting to this month in the configured zone.
fn default_month(
    svc: &AnalyticsServices,
    from: Option<DateTime>,
    to: Option<DateTime>,
) -> Result<(chrono::DateTime<Utc>, chrono::DateTime<Utc>), GqlError> {
    let (_, (m0, m1)) = analytics::today_and_month(Utc::now(), svc.analytics.time_zone());
    range(from.unwrap_or(DateTime(m0)), to.unwrap_or(DateTime(m1)))
}

fn efficiency(
    svc: &AnalyticsServices,
    id: &str,
    name: &str,
    per_model: &[(String, UsageTotals)],
) -> CacheEfficiency {
    let mut sum = UsageTotals::default();
    let mut saving = NanoUsd::ZERO;
    for (m, t) in per_model {
        sum.merge(t);
        if let Some(p) = svc.pricing.price(m) {
            saving = saving.saturating_add(insights::cache_saving(t.cache_read_tokens, &p));
        }
    }
    CacheEfficiency {
        id: ID(id.to_string()),
        name: name.to_string(),
        requests: sum.requests,
        input_tokens: sum.input_tokens,
        cache_write_tokens: sum.cache_creation_tokens(),
        cache_read_tokens: sum.cache_read_tokens,
        cache_read_share: insights::cache_read_share(
            sum.input_tokens,
            sum.cache_creation_tokens(),
            sum.cache_read_tokens,
        ),
        saving_usd: Usd(saving),
    }
}

/// Input of `resetAccountState`.
#[derive(InputObject)]
pub struct ResetAccountStateInput {
    /// The account to reset.
    pub id: ID,
}

/// Result of `resetAccountState`.
#[derive(SimpleObject)]
pub struct ResetAccountStatePayload {
    /// The account that was reset.
    pub account_id: ID,
    /// False when the balancer had no live state for it (e.g. disabled).
    pub reset: bool,
}

#[derive(Default)]
pub struct AnalyticsMutation;

#[Object]
impl AnalyticsMutation {
    /// Clears an account's cooldowns, circuit breaker and health verdicts in
    /// the balancer (its traffic counters stay).
    async fn reset_account_state(
        &self,
        ctx: &Context<'_>,
        input: ResetAccountStateInput,
    ) -> Result<ResetAccountStatePayload> {
        require_writer(ctx)?;
        let svc = services(ctx)?;
        let id = AccountId(validate::id("id", &input.id)?);
        if svc.store.get_account(id).map_err(GqlError::from)?.is_none() {
            return Err(GqlError::NotFound("no account with this id".into()).into());
        }
        let reset = svc.balancer.reset_account(id);
        tracing::info!(account.id = %id, reset, "account state reset");
        Ok(ResetAccountStatePayload {
            account_id: input.id,
            reset,
        })
    }
}

/// One model's prices set at run time, per million tokens.
#[derive(SimpleObject)]
pub struct PricingOverride {
    /// The model name (an undated name also prices its dated ids).
    pub model: String,
    /// Input tokens, USD per million.
    pub input_per_mtok: Usd,
    /// Output tokens, USD per million.
    pub output_per_mtok: Usd,
    /// 5-minute cache writes, USD per million.
    #[graphql(name = "cacheWrite5mPerMtok")]
    pub cache_write_5m_per_mtok: Usd,
    /// 1-hour cache writes, USD per million.
    #[graphql(name = "cacheWrite1hPerMtok")]
    pub cache_write_1h_per_mtok: Usd,
    /// Cache reads, USD per million.
    pub cache_read_per_mtok: Usd,
}

/// One model's prices, per million tokens. Cache prices left out follow
/// Anthropic's multipliers of the input price (5m write 1.25×, 1h write 2×,
/// read 0.1×). At most 6 decimals (prices are kept per token to the pico-dollar).
#[derive(InputObject)]
pub struct PricingOverrideInput {
    /// The model name as upstream reports it.
    pub model: String,
    /// Input tokens, USD per million.
    pub input_per_mtok: Usd,
    /// Output tokens, USD per million.
    pub output_per_mtok: Usd,
    /// 5-minute cache writes, USD per million.
    #[graphql(name = "cacheWrite5mPerMtok")]
    pub cache_write_5m_per_mtok: Option<Usd>,
    /// 1-hour cache writes, USD per million.
    #[graphql(name = "cacheWrite1hPerMtok")]
    pub cache_write_1h_per_mtok: Option<Usd>,
    /// Cache reads, USD per million.
    pub cache_read_per_mtok: Option<Usd>,
}

/// Most models one override list may hold.
const MAX_OVERRIDES: usize = 500;

/// USD per MTok (nano-USD) to pico-USD per token: 1 nano-USD per MTok is
/// 0.001 pico-USD per token, so only whole pico-dollars are exact.
fn pico_per_token(field: &str, model: &str, usd: Usd) -> Result<u64, GqlError> {
    if !usd.0 .0.is_multiple_of(1000) {
        return Err(GqlError::bad_input(format!(
            "{model}: `{field}` has more than 6 decimals per million tokens"
        )));
    }
    Ok(usd.0 .0 / 1000)
}

/// Checks and converts the `pricingOverrides` of `updateSettings` (the list
/// replaces the stored one; an empty list removes every override).
pub(crate) fn pricing_overrides(
    list: Vec<PricingOverrideInput>,
) -> Result<BTreeMap<String, PriceOverride>, GqlError> {
    if list.len() > MAX_OVERRIDES {
        return Err(GqlError::bad_input(format!(
            "at most {MAX_OVERRIDES} pricing overrides"
        )));
    }
    let mut out = BTreeMap::new();
    for o in list {
        let model = o.model.trim().to_string();
        if model.is_empty() || model.len() > 200 || model.chars().any(char::is_whitespace) {
            return Err(GqlError::bad_input(
                "pricing override models must be non-empty names without spaces",
            ));
        }
        let input = pico_per_token("inputPerMtok", &model, o.input_per_mtok)?;
        let output = pico_per_token("outputPerMtok", &model, o.output_per_mtok)?;
        let opt = |field: &str, v: Option<Usd>, default: u64| match v {
            Some(v) => pico_per_token(field, &model, v),
            None => Ok(default),
        };
        let entry = PriceOverride {
            input,
            output,
            cache_write_5m: opt(
                "cacheWrite5mPerMtok",
                o.cache_write_5m_per_mtok,
                input * 5 / 4,
            )?,
            cache_write_1h: opt("cacheWrite1hPerMtok", o.cache_write_1h_per_mtok, input * 2)?,
            cache_read: opt("cacheReadPerMtok", o.cache_read_per_mtok, input / 10)?,
        };
        if out.insert(model.clone(), entry).is_some() {
            return Err(GqlError::bad_input(format!(
                "{model} appears twice in pricingOverrides"
            )));
        }
    }
    Ok(out)
}

/// The stored overrides as the API shows them.
pub(crate) fn pricing_override_nodes(
    map: &BTreeMap<String, PriceOverride>,
) -> Vec<PricingOverride> {
    let usd = |pico: u64| Usd(NanoUsd(pico.saturating_mul(1000)));
    map.iter()
        .map(|(m, p)| PricingOverride {
            model: m.clone(),
            input_per_mtok: usd(p.input),
            output_per_mtok: usd(p.output),
            cache_write_5m_per_mtok: usd(p.cache_write_5m),
            cache_write_1h_per_mtok: usd(p.cache_write_1h),
            cache_read_per_mtok: usd(p.cache_read),
        })
        .collect()
}

/// Totals of one second of traffic and of today so far.
#[derive(SimpleObject)]
pub struct UsageTick {
    /// End of the second.
    pub at: DateTime,
    /// Requests that finished in the last second.
    pub requests: u64,
    /// Tokens (all kinds) of those requests.
    pub tokens: u64,
    /// Their billed cost.
    pub cost_usd: Usd,
    /// Their list cost.
    pub list_cost_usd: Usd,
    /// Those answered with a non-2xx status.
    pub errors: u64,
    /// Events this subscriber missed because it fell behind (since it started).
    pub dropped_events: u64,
    /// Today's totals in the configured zone, as written so far (the usage
    /// writer flushes a few times a second).
    pub today: Usage,
}

#[derive(Default)]
pub struct AnalyticsSubscription;

fn live_sink(svc: &AnalyticsServices) -> Result<UsageSink, GqlError> {
    svc.live
        .clone()
        .ok_or_else(|| GqlError::internal("live usage is not available in this server"))
}

#[Subscription]
impl AnalyticsSubscription {
    /// Each finished request as it is billed, optionally filtered. A slow
    /// subscriber misses events rather than slowing the relay.
    async fn request_log(
        &self,
        ctx: &Context<'_>,
        filter: Option<RequestLogFilterInput>,
    ) -> Result<impl Stream<Item = LoggedRequest>> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?.clone();
        let filter = log_filter(filter)?;
        let mut rx = live_sink(&svc)?.subscribe();
        Ok(async_stream::stream! {
            loop {
                match rx.recv().await {
                    Ok(record) => {
                        if filter.matches(&record) {
                            yield logged(&svc, &record);
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => break,
                }
            }
        })
    }

    /// Totals per second (requests, tokens, cost, errors of the last second)
    /// with today's running totals, pushed every second.
    async fn usage_ticker(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = UsageTick>> {
        require_admin(ctx)?;
        let svc = analytics_services(ctx)?.clone();
        let mut rx = live_sink(&svc)?.subscribe();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(async_stream::stream! {
            // The first tick fires at once; the first full second starts now.
            tick.tick().await;
            let mut second = UsageTotals::default();
            let mut dropped = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = Utc::now();
                        let ((d0, d1), _) = analytics::today_and_month(now, svc.analytics.time_zone());
                        let today = svc
                            .analytics
                            .total(&[UsageSubject::Global], d0, d1)
                            .unwrap_or_default();
                        let s = std::mem::take(&mut second);
                        yield UsageTick {
                            at: now.into(),
                            requests: s.requests,
                            tokens: s.input_tokens + s.output_tokens + s.cache_creation_tokens() + s.cache_read_tokens,
                            cost_usd: Usd(s.billed_cost),
                            list_cost_usd: Usd(s.list_cost),
                            errors: s.error_requests,
                            dropped_events: dropped,
                            today: Usage::billed(today),
                        };
                    }
                    event = rx.recv() => match event {
                        Ok(record) => second.merge(&UsageTotals::from_record(&record)),
                        Err(RecvError::Lagged(n)) => dropped += n,
                        Err(RecvError::Closed) => break,
                    },
                }
            }
        })
    }
}
