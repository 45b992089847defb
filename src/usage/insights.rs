//! Cost insights: pure, deterministic rules over usage figures. Each rule
//! takes plain numbers (gathered by the admin API from the buckets and the
//! balancer) and returns suggestions that carry the figures that triggered
//! them, so an admin can check the reasoning. Thresholds are constants here.

use crate::domain::NanoUsd;
use crate::usage::pricing::ModelPrice;

/// Fewer requests than this say too little to suggest anything.
pub const MIN_REQUESTS: u64 = 20;
/// A request at or under this many tokens (all kinds) is "small".
pub const SMALL_REQUEST_TOKENS: u64 = 2_000;
/// A subject must have written at least this many cache tokens before a
/// low read-back ratio means anything.
pub const MIN_CACHE_WRITE_TOKENS: u64 = 100_000;
/// Cache reads under this share of (reads + writes) mean the cache is
/// mostly written and rarely read back.
pub const LOW_CACHE_HIT_RATIO: f64 = 0.5;

/// What a suggestion is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuggestionKind {
    /// A key sends small requests to the most expensive model in use.
    SmallRequestsOnExpensiveModel,
    /// An account served nothing while others were resting.
    IdleAccountWhileOthersRest,
    /// A key writes prompt cache but rarely reads it back (sessions move
    /// between accounts, or prefixes change).
    LowCacheHitRatio,
}

/// One suggestion: about whom, in words, and the figures behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Suggestion {
    pub kind: SuggestionKind,
    /// Key or account id (text).
    pub subject_id: String,
    pub subject_name: String,
    pub message: String,
    /// (name, value) pairs, values as shown in the message.
    pub figures: Vec<(String, String)>,
}

/// Dollars per million tokens of a pico-USD per-token price.
pub fn per_mtok(pico_per_token: u64) -> NanoUsd {
    // pico/token × 1e6 tokens = 1e6 pico = 1e3 nano.
    NanoUsd(pico_per_token.saturating_mul(1_000))
}

/// What cache reads saved: tokens × (input price − cache-read price), in nano-USD.
pub fn cache_saving(cache_read_tokens: u64, price: &ModelPrice) -> NanoUsd {
    let per_token = price.input.saturating_sub(price.cache_read);
    let pico = u128::from(cache_read_tokens) * u128::from(per_token);
    NanoUsd(u64::try_from((pico + 500) / 1000).unwrap_or(u64::MAX))
}

/// Share of prompt tokens served from cache: reads / (input + writes + reads).
pub fn cache_read_share(input: u64, cache_write: u64, cache_read: u64) -> f64 {
    let all = input + cache_write + cache_read;
    if all == 0 {
        0.0
    } else {
        cache_read as f64 / all as f64
    }
}

/// One key's use of one model over the range.
#[derive(Clone, Debug)]
pub struct KeyModelFigures {
    pub key_id: String,
    pub key_name: String,
    pub model: String,
    pub requests: u64,
    /// All token kinds.
    pub tokens: u64,
    pub billed: NanoUsd,
}

/// Rule: a key sending small requests (≤ [`SMALL_REQUEST_TOKENS`] on
/// average, at least [`MIN_REQUESTS`]) to the most expensive model in use
/// (highest input price among the models seen). `cheapest` names the
/// cheapest model in use, suggested instead when it differs.
pub fn small_requests_on_expensive_model(
    usage: &[KeyModelFigures],
    expensive: (&str, &ModelPrice),
    cheapest: Option<(&str, &ModelPrice)>,
) -> Vec<Suggestion> {
    let (model, price) = expensive;
    let mut out = Vec::new();
    for u in usage.iter().filter(|u| u.model == model) {
        if u.requests < MIN_REQUESTS {
            continue;
        }
        let avg = u.tokens / u.requests;
        if avg > SMALL_REQUEST_TOKENS {
            continue;
        }
        let alternative = match cheapest {
            Some((name, p)) if name != model && p.input < price.input => format!(
                " A smaller model such as {name} (${}/MTok input) may do for these.",
                per_mtok(p.input)
            ),
            _ => String::new(),
        };
        out.push(Suggestion {
            kind: SuggestionKind::SmallRequestsOnExpensiveModel,
            subject_id: u.key_id.clone(),
            subject_name: u.key_name.clone(),
            message: format!(
                "Key {} sent {} requests averaging {avg} tokens to {model}, the most expensive model in use (${}/MTok input), costing ${}.{alternative}",
                u.key_name,
                u.requests,
                per_mtok(price.input),
                u.billed
            ),
            figures: vec![
                ("requests".into(), u.requests.to_string()),
                ("averageTokens".into(), avg.to_string()),
                ("model".into(), model.to_string()),
                ("inputPricePerMTok".into(), per_mtok(price.input).to_string()),
                ("billedCostUsd".into(), u.billed.to_string()),
            ],
        });
    }
    out
}

/// One account as the balancer sees it now, with its recent traffic.
#[derive(Clone, Debug)]
pub struct AccountFigures {
    pub id: String,
    pub name: String,
    /// Requests it served in the recent period the caller chose (e.g. last hour).
    pub recent_requests: u64,
    /// Cooling down, rate limited or with an open breaker.
    pub resting: bool,
    /// Enabled and not failed authentication: it could serve.
    pub usable: bool,
}

/// Rule: an account that could serve but served nothing while others rest
/// (its models, mode or groups may keep traffic away from it).
pub fn idle_while_others_rest(accounts: &[AccountFigures]) -> Vec<Suggestion> {
    let resting: Vec<&AccountFigures> = accounts.iter().filter(|a| a.resting).collect();
    if resting.is_empty() {
        return Vec::new();
    }
    let names = resting
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    accounts
        .iter()
        .filter(|a| a.usable && !a.resting && a.recent_requests == 0)
        .map(|a| Suggestion {
            kind: SuggestionKind::IdleAccountWhileOthersRest,
            subject_id: a.id.clone(),
            subject_name: a.name.clone(),
            message: format!(
                "Account {} served no request recently while {} account(s) rest ({names}): check its allowed models, mode and groups so it can take their traffic.",
                a.name,
                resting.len()
            ),
            figures: vec![
                ("recentRequests".into(), "0".into()),
                ("restingAccounts".into(), resting.len().to_string()),
            ],
        })
        .collect()
}

/// Cache figures of one key (or account) over the range.
#[derive(Clone, Debug)]
pub struct CacheFigures {
    pub id: String,
    pub name: String,
    pub requests: u64,
    pub cache_write_tokens: u64,
    pub cache_read_tokens: u64,
}

/// Rule: a key that writes a lot of prompt cache (≥ [`MIN_CACHE_WRITE_TOKENS`])
/// but reads back less than [`LOW_CACHE_HIT_RATIO`] of reads + writes: its
/// sessions lose cache affinity (moved between accounts, or prefixes change
/// from request to request), so it pays cache writes without the saving.
pub fn low_cache_hit_ratio(subjects: &[CacheFigures]) -> Vec<Suggestion> {
    subjects
        .iter()
        .filter(|s| s.requests >= MIN_REQUESTS && s.cache_write_tokens >= MIN_CACHE_WRITE_TOKENS)
        .filter_map(|s| {
            let ratio =
                s.cache_read_tokens as f64 / (s.cache_read_tokens + s.cache_write_tokens) as f64;
            (ratio < LOW_CACHE_HIT_RATIO).then(|| Suggestion {
                kind: SuggestionKind::LowCacheHitRatio,
                subject_id: s.id.clone(),
                subject_name: s.name.clone(),
                message: format!(
                    "Key {} wrote {} cache tokens but read back only {} (hit ratio {:.2}): its sessions lose cache affinity. Send a stable session id (x-claude-code-session-id or metadata.user_id) and keep prompt prefixes stable.",
                    s.name, s.cache_write_tokens, s.cache_read_tokens, ratio
                ),
                figures: vec![
                    ("requests".into(), s.requests.to_string()),
                    ("cacheWriteTokens".into(), s.cache_write_tokens.to_string()),
                    ("cacheReadTokens".into(), s.cache_read_tokens.to_string()),
                    ("hitRatio".into(), format!("{ratio:.2}")),
                ],
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPUS: ModelPrice = ModelPrice {
        input: 15_000_000,
        output: 75_000_000,
        cache_write_5m: 18_750_000,
        cache_write_1h: 30_000_000,
        cache_read: 1_500_000,
    };
    const HAIKU: ModelPrice = ModelPrice {
        input: 1_000_000,
        output: 5_000_000,
        cache_write_5m: 1_250_000,
        cache_write_1h: 2_000_000,
        cache_read: 100_000,
    };

    #[test]
    fn saving_and_share_are_exact() {
        // 1M cache-read tokens of opus save (15 − 1.5) $/MTok = $13.5.
        assert_eq!(cache_saving(1_000_000, &OPUS), NanoUsd(13_500_000_000));
        assert_eq!(per_mtok(OPUS.input).to_string(), "15");
        assert_eq!(cache_read_share(10, 10, 80), 0.8);
        assert_eq!(cache_read_share(0, 0, 0), 0.0);
    }

    fn km(key: &str, model: &str, requests: u64, tokens: u64) -> KeyModelFigures {
        KeyModelFigures {
            key_id: key.into(),
            key_name: format!("name-{key}"),
            model: model.into(),
            requests,
            tokens,
            billed: NanoUsd(1_000),
        }
    }

    #[test]
    fn small_requests_on_the_most_expensive_model() {
        let usage = [
            km("a", "opus", 100, 100 * 500),   // small: triggers
            km("b", "opus", 100, 100 * 5_000), // large: fine
            km("c", "opus", 5, 5 * 10),        // too few requests
            km("d", "haiku", 100, 100 * 10),   // cheap model: fine
        ];
        let s = small_requests_on_expensive_model(&usage, ("opus", &OPUS), Some(("haiku", &HAIKU)));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].subject_id, "a");
        assert_eq!(s[0].kind, SuggestionKind::SmallRequestsOnExpensiveModel);
        assert!(
            s[0].message.contains("averaging 500 tokens"),
            "{}",
            s[0].message
        );
        assert!(
            s[0].message.contains("haiku ($1/MTok input)"),
            "{}",
            s[0].message
        );
        assert!(s[0]
            .figures
            .contains(&("averageTokens".to_string(), "500".to_string())));
        // The boundary itself is small.
        let edge = [km(
            "e",
            "opus",
            MIN_REQUESTS,
            MIN_REQUESTS * SMALL_REQUEST_TOKENS,
        )];
        assert_eq!(
            small_requests_on_expensive_model(&edge, ("opus", &OPUS), None).len(),
            1
        );
    }

    fn acct(id: &str, recent: u64, resting: bool, usable: bool) -> AccountFigures {
        AccountFigures {
            id: id.into(),
            name: id.into(),
            recent_requests: recent,
            resting,
            usable,
        }
    }

    #[test]
    fn idle_accounts_only_matter_while_others_rest() {
        let calm = [acct("a", 0, false, true), acct("b", 10, false, true)];
        assert!(idle_while_others_rest(&calm).is_empty());
        let busy = [
            acct("idle", 0, false, true),
            acct("rest", 5, true, true),
            acct("disabled", 0, false, false),
            acct("working", 9, false, true),
        ];
        let s = idle_while_others_rest(&busy);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].subject_id, "idle");
        assert!(
            s[0].message.contains("1 account(s) rest (rest)"),
            "{}",
            s[0].message
        );
    }

    fn cache(id: &str, requests: u64, write: u64, read: u64) -> CacheFigures {
        CacheFigures {
            id: id.into(),
            name: id.into(),
            requests,
            cache_write_tokens: write,
            cache_read_tokens: read,
        }
    }

    #[test]
    fn low_cache_hit_ratio_needs_volume_and_a_low_ratio() {
        let subjects = [
            cache("losing", 50, 400_000, 100_000), // 0.2: triggers
            cache("good", 50, 100_000, 900_000),   // 0.9
            cache("small", 50, 1_000, 0),          // too little written
            cache("few", 5, 400_000, 0),           // too few requests
        ];
        let s = low_cache_hit_ratio(&subjects);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].subject_id, "losing");
        assert!(s[0].message.contains("hit ratio 0.20"), "{}", s[0].message);
    }
}
