//! Validation of a [`KeyPolicy`] before it is stored: one message per
//! problem, each naming the field by its GraphQL (camelCase) path, for
//! `BAD_USER_INPUT`. Also parses zone names, which GraphQL receives as strings.

use super::policy::{ActivationUnit, ClientKind, Expiry, KeyPolicy, ModelRule, ModelScope};
use super::policy::{MAX_ACTIVATION_HOURS, MAX_QUEUE_WAIT_MS, MAX_WINDOW_SECS};
use crate::domain::NanoUsd;
use chrono_tz::Tz;
use std::fmt;

impl KeyPolicy {
    /// Checks every field; the messages name the field (GraphQL camelCase
    /// paths) and what is wrong, for `BAD_USER_INPUT`.
    pub fn validate(&self) -> Result<(), PolicyErrors> {
        let mut errors = Vec::new();
        self.validate_expiry(&mut errors);
        self.validate_windows(&mut errors);
        self.validate_budgets(&mut errors);
        self.validate_rules(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PolicyErrors(errors))
        }
    }

    fn validate_expiry(&self, errors: &mut Vec<String>) {
        if let Expiry::Activation { amount, unit, .. } = self.expiry {
            let hours = match unit {
                ActivationUnit::Days => u64::from(amount) * 24,
                ActivationUnit::Hours => u64::from(amount),
            };
            if amount == 0 {
                errors.push("expiry.amount: the activation period must be at least 1".into());
            } else if hours > MAX_ACTIVATION_HOURS {
                errors.push(format!(
                    "expiry.amount: the activation period may be at most {} days",
                    MAX_ACTIVATION_HOURS / 24
                ));
            }
        }
    }

    fn validate_windows(&self, errors: &mut Vec<String>) {
        for (i, w) in self.rate_windows.iter().enumerate() {
            let at = format!("rateWindows[{i}]");
            if w.duration_secs == 0 || w.duration_secs > MAX_WINDOW_SECS {
                errors.push(format!(
                    "{at}.durationSecs: must be between 1 second and 366 days (got {})",
                    w.duration_secs
                ));
            }
            if w.max_requests.is_none() && w.max_tokens.is_none() && w.max_cost.is_none() {
                errors.push(format!(
                    "{at}: set at least one of maxRequests, maxTokens or maxCost"
                ));
            }
            if w.max_requests == Some(0) {
                errors.push(format!(
                    "{at}.maxRequests: must be at least 1 (omit it for no limit; disable the key to block it)"
                ));
            }
            if w.max_tokens == Some(0) {
                errors.push(format!(
                    "{at}.maxTokens: must be at least 1 (omit it for no limit)"
                ));
            }
            if w.max_cost == Some(NanoUsd::ZERO) {
                errors.push(format!(
                    "{at}.maxCost: must be greater than 0 (omit it for no limit)"
                ));
            }
            let duplicate = self.rate_windows[..i]
                .iter()
                .any(|other| other.duration_secs == w.duration_secs);
            if duplicate {
                errors.push(format!(
                    "{at}.durationSecs: another window already lasts {} seconds; put both maxima in one window",
                    w.duration_secs
                ));
            }
        }
    }

    fn validate_budgets(&self, errors: &mut Vec<String>) {
        let b = &self.budgets;
        for (name, limit) in [
            ("daily", b.daily),
            ("weekly", b.weekly),
            ("monthly", b.monthly),
            ("total", b.total),
        ] {
            if limit == Some(NanoUsd::ZERO) {
                errors.push(format!(
                    "budgets.{name}: must be greater than 0 (omit it for no limit; disable the key to block it)"
                ));
            }
        }
        if b.weekly_reset.hour > 23 {
            errors.push(format!(
                "budgets.weeklyReset.hour: must be 0-23 (got {})",
                b.weekly_reset.hour
            ));
        }
        if let Some(family) = &b.family_weekly {
            if family.limit == NanoUsd::ZERO {
                errors.push("budgets.familyWeekly.limit: must be greater than 0".into());
            }
            if let ModelScope::Matching(pattern) = &family.models {
                if let Some(problem) = pattern_problem(pattern) {
                    errors.push(format!("budgets.familyWeekly.models: {problem}"));
                }
            }
        }
    }

    fn validate_rules(&self, errors: &mut Vec<String>) {
        if let Some(c) = &self.concurrency {
            if c.max_in_flight == 0 {
                errors.push(
                    "concurrency.maxInFlight: must be at least 1 (omit concurrency for no limit)"
                        .into(),
                );
            }
            if let Some(q) = &c.queue {
                if q.max_queued == 0 {
                    errors.push(
                        "concurrency.queue.maxQueued: must be at least 1 (omit the queue to refuse at once)"
                            .into(),
                    );
                }
                if q.max_wait_ms == 0 || q.max_wait_ms > MAX_QUEUE_WAIT_MS {
                    errors.push(format!(
                        "concurrency.queue.maxWaitMs: must be between 1 and {MAX_QUEUE_WAIT_MS} (got {})",
                        q.max_wait_ms
                    ));
                }
            }
        }
        match &self.models {
            ModelRule::Any => {}
            ModelRule::Allow(patterns) | ModelRule::Deny(patterns) => {
                if patterns.is_empty() && matches!(self.models, ModelRule::Allow(_)) {
                    errors.push(
                        "models.patterns: an empty allow-list permits no model; use mode ANY for every model"
                            .into(),
                    );
                }
                for (i, p) in patterns.iter().enumerate() {
                    if let Some(problem) = pattern_problem(p) {
                        errors.push(format!("models.patterns[{i}]: {problem}"));
                    }
                }
            }
        }
        for (i, client) in self.clients.iter().enumerate() {
            if let ClientKind::UserAgentPrefix(prefix) = client {
                if prefix.trim().is_empty() {
                    errors.push(format!("clients[{i}].userAgentPrefix: must not be empty"));
                }
            }
        }
    }
}

/// Why a model pattern is unusable, if it is.
fn pattern_problem(pattern: &str) -> Option<String> {
    if pattern.is_empty() {
        Some("a model pattern must not be empty".into())
    } else if pattern.chars().any(char::is_whitespace) {
        Some(format!("model pattern {pattern:?} contains whitespace"))
    } else if pattern.len() > 200 {
        Some("a model pattern may be at most 200 characters".into())
    } else {
        None
    }
}

/// Validation failures, one message each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyErrors(pub Vec<String>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

impl std::error::Error for PolicyErrors {}

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`) with a message for
/// GraphQL, which receives zones as strings.
pub fn parse_time_zone(name: &str) -> Result<Tz, String> {
    name.trim()
        .parse::<Tz>()
        .map_err(|_| format!("unknown time zone {name:?}; use an IANA name such as Europe/Berlin"))
}

#[cfg(test)]
mod tests {
    use super::super::policy::*;
    use super::*;
    use chrono::Weekday;

    #[test]
    fn validation_names_each_problem() {
        let p = KeyPolicy {
            expiry: Expiry::Activation {
                amount: 0,
                unit: ActivationUnit::Days,
                activated_at: None,
            },
            rate_windows: vec![
                RateWindow {
                    duration_secs: 0,
                    ..RateWindow::default()
                },
                RateWindow {
                    duration_secs: 60,
                    max_requests: Some(0),
                    ..RateWindow::default()
                },
                RateWindow {
                    duration_secs: 60,
                    max_tokens: Some(5),
                    ..RateWindow::default()
                },
            ],
            budgets: Budgets {
                daily: Some(NanoUsd::ZERO),
                weekly_reset: WeeklyReset {
                    weekday: Weekday::Mon,
                    hour: 24,
                },
                ..Budgets::default()
            },
            concurrency: Some(ConcurrencyLimit {
                max_in_flight: 0,
                queue: Some(WaitQueue {
                    max_queued: 0,
                    max_wait_ms: 0,
                }),
            }),
            models: ModelRule::Allow(vec![]),
            clients: vec![ClientKind::UserAgentPrefix(" ".into())],
            permissions: vec![],
        };
        let errors = p.validate().unwrap_err().0;
        let expect = [
            "expiry.amount",
            "rateWindows[0].durationSecs",
            "rateWindows[0]: set at least one",
            "rateWindows[1].maxRequests",
            "rateWindows[2].durationSecs: another window",
            "budgets.daily",
            "budgets.weeklyReset.hour",
            "concurrency.maxInFlight",
            "concurrency.queue.maxQueued",
            "concurrency.queue.maxWaitMs",
            "models.patterns: an empty allow-list",
            "clients[0].userAgentPrefix",
        ];
        for e in expect {
            assert!(
                errors.iter().any(|m| m.starts_with(e)),
                "missing {e}: {errors:#?}"
            );
        }
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
    }

    #[test]
    fn time_zone_names_parse_with_a_message() {
        assert_eq!(
            parse_time_zone("Europe/Berlin"),
            Ok(chrono_tz::Europe::Berlin)
        );
        assert_eq!(parse_time_zone("UTC"), Ok(chrono_tz::UTC));
        assert!(parse_time_zone("Mars/Olympus")
            .unwrap_err()
            .contains("IANA"));
    }
}
