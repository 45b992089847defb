//! The `Usage` object (totals of one entity over a period) and the relay-wide
//! `usage` query. Keys report billed cost, accounts list cost
//! (conventions.md "Billing").

use super::auth::{require_admin, services};
use super::error::GqlError;
use super::scalars::{DateTime, Usd};
use crate::domain::{NanoUsd, UsageSubject, UsageTotals};
use crate::store::Store;
use async_graphql::{Context, Object, Result};

/// Usage totals over a period (or the lifetime).
pub struct Usage {
    totals: UsageTotals,
    cost: NanoUsd,
}

impl Usage {
    /// For a key (and relay-wide): `costUsd` is the billed cost.
    pub fn billed(totals: UsageTotals) -> Self {
        Usage {
            cost: totals.billed_cost,
            totals,
        }
    }

    /// For an account: `costUsd` is the list (upstream) cost.
    pub fn list(totals: UsageTotals) -> Self {
        Usage {
            cost: totals.list_cost,
            totals,
        }
    }
}

/// Usage totals of one entity over a period (or its lifetime). Token counts
/// are exact; costs are exact decimal strings.
#[Object]
impl Usage {
    /// Requests served (count_tokens and models calls are not counted).
    async fn requests(&self) -> u64 {
        self.totals.requests
    }
    async fn input_tokens(&self) -> u64 {
        self.totals.input_tokens
    }
    async fn output_tokens(&self) -> u64 {
        self.totals.output_tokens
    }
    /// Cache writes of both TTLs.
    async fn cache_creation_input_tokens(&self) -> u64 {
        self.totals.cache_creation_tokens()
    }
    #[graphql(name = "cacheCreation5mInputTokens")]
    async fn cache_creation_5m_input_tokens(&self) -> u64 {
        self.totals.cache_creation_5m_tokens
    }
    #[graphql(name = "cacheCreation1hInputTokens")]
    async fn cache_creation_1h_input_tokens(&self) -> u64 {
        self.totals.cache_creation_1h_tokens
    }
    async fn cache_read_input_tokens(&self) -> u64 {
        self.totals.cache_read_tokens
    }
    /// Billed cost for keys and relay-wide totals; list cost for accounts.
    async fn cost_usd(&self) -> Usd {
        Usd(self.cost)
    }
    /// The upstream price of the tokens.
    async fn list_cost_usd(&self) -> Usd {
        Usd(self.totals.list_cost)
    }
    /// List cost times each key's multiplier.
    async fn billed_cost_usd(&self) -> Usd {
        Usd(self.totals.billed_cost)
    }
    /// Requests whose model had no known price: their cost is unknown, not zero.
    async fn unpriced_requests(&self) -> u64 {
        self.totals.unpriced_requests
    }
    /// Requests with estimated counts (client disconnects, cancellations).
    async fn estimated_requests(&self) -> u64 {
        self.totals.estimated_requests
    }
    /// Requests answered with a non-2xx status.
    async fn error_requests(&self) -> u64 {
        self.totals.error_requests
    }
}

/// Reads one subject's totals: lifetime without bounds, else `[from, to)`
/// with an open end defaulting to the beginning or the end of time.
pub(crate) fn totals(
    store: &Store,
    subject: &UsageSubject,
    from: Option<DateTime>,
    to: Option<DateTime>,
) -> Result<UsageTotals, GqlError> {
    let range = match (from, to) {
        (None, None) => None,
        (from, to) => {
            let from = from.map_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH, |d| d.0);
            let to = to.map_or(chrono::DateTime::<chrono::Utc>::MAX_UTC, |d| d.0);
            if from > to {
                return Err(GqlError::bad_input("usage: `from` must not be after `to`"));
            }
            Some((from, to))
        }
    };
    Ok(store.usage_total(subject, range)?)
}

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// Everything the relay served, billed cost. Hour granularity in UTC;
    /// without arguments the lifetime total.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        from: Option<DateTime>,
        to: Option<DateTime>,
    ) -> Result<Usage> {
        require_admin(ctx)?;
        let t = totals(&services(ctx)?.store, &UsageSubject::Global, from, to)?;
        Ok(Usage::billed(t))
    }
}
