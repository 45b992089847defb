//! Header rules at the two edges of the relay: a deny-list for request headers
//! going upstream, an allow-list for response headers going to the client.
//!
//! CONTRACT (implemented by the parsing line of work; signatures are fixed).

use http::HeaderMap;

/// The client's headers minus the deny-list (credentials, cookies, hop-by-hop,
/// host, content-length, accept-encoding, x-forwarded-*, forwarded, x-real-ip, cf-*).
#[allow(unused_variables)]
pub fn upstream_request_headers(client: &HeaderMap) -> HeaderMap {
    todo!()
}

/// Appends betas to `anthropic-beta` (comma list), de-duplicated, keeping the client's order.
#[allow(unused_variables)]
pub fn append_betas(headers: &mut HeaderMap, betas: &[&str]) {
    todo!()
}

/// Copies the allow-listed upstream response headers (content-type, request-id,
/// cache-control, x-accel-buffering) into `out`.
#[allow(unused_variables)]
pub fn copy_client_response_headers(upstream: &HeaderMap, out: &mut HeaderMap) {
    todo!()
}
