//! Fault injection: the [`Fault`] kinds, the per-credential fault table (explicit faults,
//! optionally for the next N requests, and faults implied by credential names), and the
//! error responses of the HTTP-level faults.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use chrono::{Datelike, Utc};
use parking_lot::Mutex;

use super::wire::{self, CredKind};

/// A failure the simulator injects for one credential.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 `rate_limit_error` with a `retry-after` header.
    RateLimited { retry_after_secs: u64 },
    /// 429 `rate_limit_error` without `retry-after` (spend limit reached).
    SpendLimited,
    /// 529 `overloaded_error`.
    Overloaded,
    /// 500 `api_error`.
    ServerError,
    /// 401 `authentication_error`.
    Unauthorized,
    /// 403 `permission_error`.
    Forbidden,
    /// Accept the request and never answer (until the client goes away or shutdown).
    Hang,
    /// Streaming only: close the connection abruptly after N deltas (no `message_stop`).
    DropMidStream { after_deltas: u32 },
    /// Streaming only: send `event: error` (`overloaded_error`) after N deltas, then end.
    ErrorEventMidStream { after_deltas: u32 },
    /// Streaming only: 200, `message_start`, then `event: error` before any content block.
    ErrorEventBeforeContent,
}

impl Fault {
    /// Faults that only make sense inside an SSE stream; other requests are served healthy
    /// (and do not use up a counted fault), like a flaky stream followed by a good retry.
    pub(crate) fn streaming_only(&self) -> bool {
        matches!(
            self,
            Fault::DropMidStream { .. }
                | Fault::ErrorEventMidStream { .. }
                | Fault::ErrorEventBeforeContent
        )
    }

    /// The naming convention that lets demos and manual tests inject faults without code.
    pub(crate) fn from_credential_name(credential: &str) -> Option<Fault> {
        const NAMED: &[(&str, Fault)] = &[
            (
                "-fault-429",
                Fault::RateLimited {
                    retry_after_secs: 30,
                },
            ),
            ("-fault-529", Fault::Overloaded),
            ("-fault-500", Fault::ServerError),
            ("-fault-401", Fault::Unauthorized),
            ("-fault-403", Fault::Forbidden),
            ("-fault-spend", Fault::SpendLimited),
            ("-fault-hang", Fault::Hang),
            ("-fault-drop", Fault::DropMidStream { after_deltas: 3 }),
        ];
        NAMED
            .iter()
            .find(|(marker, _)| credential.contains(marker))
            .map(|(_, fault)| fault.clone())
    }

    /// The complete error response of an HTTP-level fault; `None` for `Hang` and the
    /// streaming faults, which the handlers play out themselves.
    pub(crate) fn http_response(&self, kind: CredKind, request_id: &str) -> Option<Response> {
        let (status, error_type, message, retry): (StatusCode, &str, String, Option<bool>) =
            match self {
                Fault::RateLimited { .. } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    match kind {
                        CredKind::ApiKey => "This request would exceed the rate limit for your organization of 4,000 requests per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later.".to_owned(),
                        CredKind::OAuth => "This request would exceed your account's rate limit. Please try again later.".to_owned(),
                    },
                    Some(true),
                ),
                Fault::SpendLimited => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    format!(
                        "You have reached your specified API usage limits. You will regain access on {} at 00:00 UTC.",
                        first_of_next_month()
                    ),
                    Some(false),
                ),
                Fault::Overloaded => (
                    StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "overloaded_error",
                    "Overloaded".to_owned(),
                    Some(true),
                ),
                Fault::ServerError => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "Internal server error".to_owned(),
                    Some(true),
                ),
                Fault::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    match kind {
                        CredKind::ApiKey => "invalid x-api-key".to_owned(),
                        CredKind::OAuth => "OAuth token has expired. Please obtain a new token or refresh your existing token.".to_owned(),
                    },
                    None,
                ),
                Fault::Forbidden => (
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    "Your API key does not have permission to use the specified resource."
                        .to_owned(),
                    None,
                ),
                Fault::Hang
                | Fault::DropMidStream { .. }
                | Fault::ErrorEventMidStream { .. }
                | Fault::ErrorEventBeforeContent => return None,
            };
        let mut resp = wire::error_response(status, error_type, &message, request_id);
        let headers = resp.headers_mut();
        if let Fault::RateLimited { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                headers.insert("retry-after", v);
            }
        }
        if let Some(retry) = retry {
            headers.insert(
                "x-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        Some(resp)
    }
}

fn first_of_next_month() -> String {
    let now = Utc::now();
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    format!("{y:04}-{m:02}-01")
}

struct Entry {
    fault: Fault,
    /// `None`: until cleared.
    remaining: Option<u32>,
}

/// Explicit faults by credential. Explicit faults win over name-implied ones.
#[derive(Default)]
pub(crate) struct FaultTable {
    explicit: Mutex<HashMap<String, Entry>>,
}

impl FaultTable {
    pub(crate) fn set(&self, credential: &str, fault: Fault, remaining: Option<u32>) {
        self.explicit
            .lock()
            .insert(credential.to_owned(), Entry { fault, remaining });
    }

    pub(crate) fn clear(&self, credential: &str) {
        self.explicit.lock().remove(credential);
    }

    /// The fault for this request, if any, using up one count of a counted fault. A
    /// streaming-only fault does not apply to (and is not used up by) other requests.
    pub(crate) fn take(&self, credential: &str, streaming: bool) -> Option<Fault> {
        match self.take_explicit_entry(credential, streaming) {
            Some(explicit) => explicit,
            None => {
                Fault::from_credential_name(credential).filter(|f| streaming || !f.streaming_only())
            }
        }
    }

    /// Like [`take`](Self::take), ignoring faults implied by the name.
    pub(crate) fn take_explicit(&self, credential: &str, streaming: bool) -> Option<Fault> {
        self.take_explicit_entry(credential, streaming).flatten()
    }

    /// `None`: no explicit entry; `Some(None)`: an entry that does not apply here.
    fn take_explicit_entry(&self, credential: &str, streaming: bool) -> Option<Option<Fault>> {
        let mut explicit = self.explicit.lock();
        let entry = explicit.get_mut(credential)?;
        if entry.fault.streaming_only() && !streaming {
            return Some(None);
        }
        let fault = entry.fault.clone();
        if let Some(left) = entry.remaining.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                explicit.remove(credential);
            }
        }
        Some(Some(fault))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_and_names_imply_faults() {
        let t = FaultTable::default();
        t.set("k", Fault::Overloaded, Some(2));
        assert_eq!(t.take("k", false), Some(Fault::Overloaded));
        assert_eq!(t.take("k", true), Some(Fault::Overloaded));
        assert_eq!(t.take("k", false), None);

        t.set("s", Fault::DropMidStream { after_deltas: 1 }, Some(1));
        assert_eq!(t.take("s", false), None, "not used up by a non-stream call");
        assert!(t.take("s", true).is_some());
        assert_eq!(t.take("s", true), None);

        assert_eq!(
            t.take("sk-ant-api03-x-fault-429", false),
            Some(Fault::RateLimited {
                retry_after_secs: 30
            })
        );
        assert_eq!(t.take("sk-ant-api03-x-fault-drop", false), None);
        t.set("sk-ant-api03-x-fault-529", Fault::ServerError, None);
        assert_eq!(
            t.take("sk-ant-api03-x-fault-529", false),
            Some(Fault::ServerError),
            "explicit wins"
        );
    }
}
