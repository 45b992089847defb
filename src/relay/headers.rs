//! Header rules at the two edges of the relay: a deny-list for request headers
//! going upstream, an allow-list for response headers going to the client.
//! Pure functions over `http::HeaderMap`; credentials are set by the adapters,
//! never here.

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

/// Request headers never forwarded upstream, by exact (lowercase) name.
const DENIED_REQUEST_HEADERS: &[&str] = &[
    // The client's relay key: the adapter sets the account's own credentials.
    "x-api-key",
    "authorization",
    "cookie",
    // Hop-by-hop (RFC 9110 §7.6.1), plus h2c's upgrade settings.
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    // `100-continue` is negotiated with the relay, which already has the body.
    "expect",
    // Describes the hop to the relay, not to upstream.
    "host",
    // Recomputed by the HTTP client from the forwarded body.
    "content-length",
    // The relay's client negotiates and decodes compression itself so that
    // usage can be read from the response.
    "accept-encoding",
    // The client's address stays with the relay.
    "forwarded",
    "x-real-ip",
];

/// Request header name prefixes never forwarded upstream.
const DENIED_REQUEST_PREFIXES: &[&str] = &["x-forwarded-", "cf-", "proxy-"];

/// Response headers copied from upstream to the client. Everything else
/// (rate-limit state, organisation ids, cookies, server identity, encoding
/// and length of a body the relay may re-encode) describes the pooled account
/// or the upstream hop and stays behind.
const ALLOWED_RESPONSE_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    HeaderName::from_static("request-id"),
    header::CACHE_CONTROL,
    HeaderName::from_static("x-accel-buffering"),
];

const ANTHROPIC_BETA: HeaderName = HeaderName::from_static("anthropic-beta");

/// The client's headers minus the deny-list (credentials, cookies, hop-by-hop,
/// host, content-length, accept-encoding, x-forwarded-*, forwarded, x-real-ip, cf-*).
///
/// Also `proxy-*` and `expect`, and any header the client's `Connection`
/// header names (hop-by-hop by declaration). Order and repeated values of the
/// kept headers are preserved.
pub fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    let connection_listed: Vec<&[u8]> = client
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
        .collect();

    let mut out = HeaderMap::with_capacity(client.len());
    for (name, value) in client {
        let n = name.as_str();
        let denied = DENIED_REQUEST_HEADERS.contains(&n)
            || DENIED_REQUEST_PREFIXES.iter().any(|p| n.starts_with(p))
            || connection_listed
                .iter()
                .any(|t| t.eq_ignore_ascii_case(n.as_bytes()));
        if !denied {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Appends betas to `anthropic-beta` (comma list), de-duplicated, keeping the client's order.
///
/// The client's header may come as several lines and with spaces around the
/// commas; when something is added, all lines are merged into one
/// `a,b,c` value (de-duplicated, client's betas first). When every beta is
/// already present the client's header is left byte for byte as sent.
/// Betas that are not valid header tokens are ignored.
pub fn append_betas(headers: &mut HeaderMap, betas: &[&str]) {
    let mut merged: Vec<&[u8]> = Vec::new();
    let existing: Vec<HeaderValue> = headers.get_all(&ANTHROPIC_BETA).iter().cloned().collect();
    for value in &existing {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if !item.is_empty() && !merged.contains(&item) {
                merged.push(item);
            }
        }
    }
    let before = merged.len();
    for beta in betas {
        let b = beta.trim().as_bytes();
        let valid = !b.is_empty() && b.iter().all(|&c| c.is_ascii_graphic() && c != b',');
        if valid && !merged.contains(&b) {
            merged.push(b);
        }
    }
    if merged.len() == before {
        return;
    }
    let joined = merged.join(&b","[..]);
    // Only bytes taken from valid header values or checked above: cannot fail,
    // but keep the client's header untouched rather than panic if it did.
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(ANTHROPIC_BETA, value);
    }
}

/// Copies the allow-listed upstream response headers (content-type, request-id,
/// cache-control, x-accel-buffering) into `out`.
///
/// An allowed header that upstream sent replaces any value `out` already had
/// for that name (so a relay default like `cache-control` is not duplicated);
/// one upstream did not send leaves `out` alone.
pub fn copy_client_response_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
    for name in &ALLOWED_RESPONSE_HEADERS {
        let mut values = upstream.get_all(name).iter();
        if let Some(first) = values.next() {
            out.insert(name.clone(), first.clone());
            for v in values {
                out.append(name.clone(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn request_deny_list_matrix() {
        let denied = [
            ("x-api-key", "cr_secret"),
            ("Authorization", "Bearer cr_secret"),
            ("cookie", "a=b"),
            ("connection", "keep-alive, X-Custom-Hop"),
            ("keep-alive", "timeout=5"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-foo"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("expect", "100-continue"),
            ("host", "127.0.0.1:8080"),
            ("content-length", "76330"),
            ("accept-encoding", "gzip, deflate, br, zstd"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("cf-connecting-ip", "10.0.0.1"),
            ("cf-ray", "abc"),
            ("x-custom-hop", "named in Connection"),
        ];
        let kept = [
            ("accept", "application/json"),
            ("content-type", "application/json"),
            ("user-agent", "claude-cli/2.1.197 (external, sdk-cli)"),
            (
                "x-claude-code-session-id",
                "c2fd1380-2a3e-4f19-af32-c12020fa2a3c",
            ),
            ("x-stainless-retry-count", "0"),
            (
                "anthropic-beta",
                "claude-code-20250219,context-1m-2025-08-07",
            ),
            ("anthropic-version", "2023-06-01"),
            ("anthropic-dangerous-direct-browser-access", "true"),
            ("x-app", "cli"),
        ];
        let all: Vec<_> = denied.iter().chain(kept.iter()).copied().collect();
        let out = upstream_request_headers(&map(&all));
        for (k, _) in denied {
            assert!(!out.contains_key(k), "{k} must not be forwarded");
        }
        for (k, v) in kept {
            assert_eq!(out.get(k).unwrap(), v, "{k} must be forwarded unchanged");
        }
        assert_eq!(out.len(), kept.len());
    }

    #[test]
    fn request_keeps_repeated_values_in_order() {
        let out = upstream_request_headers(&map(&[
            ("anthropic-beta", "a"),
            ("x-foo", "1"),
            ("anthropic-beta", "b"),
        ]));
        let betas: Vec<_> = out
            .get_all("anthropic-beta")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(betas, ["a", "b"]);
    }

    #[test]
    fn betas_are_appended_deduplicated_in_client_order() {
        let mut h = map(&[
            ("anthropic-beta", "claude-code-20250219, oauth-2025-04-20"),
            ("anthropic-beta", "effort-2025-11-24,claude-code-20250219"),
        ]);
        append_betas(
            &mut h,
            &[
                "oauth-2025-04-20",
                "context-1m-2025-08-07",
                "context-1m-2025-08-07",
            ],
        );
        let all: Vec<_> = h.get_all("anthropic-beta").iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0],
            "claude-code-20250219,oauth-2025-04-20,effort-2025-11-24,context-1m-2025-08-07"
        );
    }

    #[test]
    fn betas_already_present_leave_the_header_as_sent() {
        let mut h = map(&[("anthropic-beta", "a , b"), ("anthropic-beta", "c")]);
        append_betas(&mut h, &["b", "c", ""]);
        let all: Vec<_> = h.get_all("anthropic-beta").iter().collect();
        assert_eq!(all, ["a , b", "c"]);
    }

    #[test]
    fn betas_are_added_when_the_client_sent_none() {
        let mut h = HeaderMap::new();
        append_betas(&mut h, &["oauth-2025-04-20", "bad beta", "x,y"]);
        assert_eq!(h.get("anthropic-beta").unwrap(), "oauth-2025-04-20");
        let mut h = HeaderMap::new();
        append_betas(&mut h, &[]);
        assert!(!h.contains_key("anthropic-beta"));
    }

    #[test]
    fn response_allow_list_matrix() {
        let allowed = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("request-id", "req_011CUxyz"),
            ("cache-control", "no-cache"),
            ("x-accel-buffering", "no"),
        ];
        let dropped = [
            ("anthropic-ratelimit-requests-limit", "4000"),
            ("anthropic-ratelimit-tokens-remaining", "123"),
            ("anthropic-ratelimit-unified-status", "allowed"),
            ("anthropic-organization-id", "org-uuid"),
            ("set-cookie", "__cf_bm=abc"),
            ("cf-ray", "8f00-SJC"),
            ("cf-cache-status", "DYNAMIC"),
            ("server", "cloudflare"),
            ("via", "1.1 google"),
            ("x-envoy-upstream-service-time", "12"),
            ("content-encoding", "gzip"),
            ("content-length", "1234"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("retry-after", "30"),
            ("x-should-retry", "true"),
            ("strict-transport-security", "max-age=1"),
        ];
        let all: Vec<_> = allowed.iter().chain(dropped.iter()).copied().collect();
        let mut out = HeaderMap::new();
        copy_client_response_headers(&map(&all), &mut out);
        for (k, v) in allowed {
            assert_eq!(out.get(k).unwrap(), v, "{k} must be copied");
        }
        assert_eq!(out.len(), allowed.len());
    }

    #[test]
    fn response_copy_replaces_relay_defaults_and_keeps_others() {
        let mut out = map(&[
            ("cache-control", "no-store"),
            ("request-id", "relay_1"),
            ("x-should-retry", "false"),
        ]);
        copy_client_response_headers(&map(&[("cache-control", "no-cache")]), &mut out);
        assert_eq!(
            out.get_all("cache-control").iter().collect::<Vec<_>>(),
            ["no-cache"]
        );
        assert_eq!(out.get("request-id").unwrap(), "relay_1");
        assert_eq!(out.get("x-should-retry").unwrap(), "false");
    }
}
