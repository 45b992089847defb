//! The admin API playground: GraphiQL for browsers at `GET /graphql`
//! (`Accept: text/html`, no `query` parameter), served entirely from the
//! binary: the page and its assets (web/playground/, vendored GraphiQL,
//! React and graphql-ws builds) are embedded with `include_bytes!`, so the
//! page works on an air-gapped box and references no external URL.
//!
//! Assets live under `/graphql/assets/<crate version>/`, so they can be
//! cached as immutable: a new release changes the path. The page itself is
//! never cached and carries a strict Content-Security-Policy (scripts only
//! from this origin).

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Where the assets are served (the version makes them cache-safe).
pub(crate) fn assets_base() -> String {
    format!("/graphql/assets/{}", env!("CARGO_PKG_VERSION"))
}

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    // Without an icon the browser asks for /favicon.ico and logs a 404.
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../web/playground/favicon.svg"),
    },
    Asset {
        path: "playground.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/playground/playground.js"),
    },
    Asset {
        path: "playground.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/playground/playground.css"),
    },
    Asset {
        path: "vendor/graphiql.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/playground/vendor/graphiql.min.js"),
    },
    Asset {
        path: "vendor/graphiql.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/playground/vendor/graphiql.min.css"),
    },
    Asset {
        path: "vendor/react.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/playground/vendor/react.production.min.js"),
    },
    Asset {
        path: "vendor/react-dom.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/playground/vendor/react-dom.production.min.js"),
    },
    Asset {
        path: "vendor/graphql-ws.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/playground/vendor/graphql-ws.min.js"),
    },
];

const PAGE: &str = include_str!("../../web/playground/index.html");

/// Scripts and styles from this origin only (GraphiQL sets inline styles,
/// its fonts are data URLs); fetches and sockets to this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Whether a GET to `/graphql` is a browser asking for a page (HTML
/// accepted, no query to run).
pub(crate) fn wants_page(headers: &HeaderMap, uri_query: Option<&str>) -> bool {
    let html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    let has_query = uri_query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("query"))
    });
    html && !has_query
}

/// The playground page.
pub(crate) fn page() -> Response {
    let html = PAGE.replace("{ASSETS}", &assets_base());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        html,
    )
        .into_response()
}

/// `GET /graphql/assets/{version}/{*path}`: an embedded asset, or 404.
pub(crate) async fn asset(Path((version, path)): Path<(String, String)>) -> Response {
    let found = ASSETS.iter().find(|a| a.path == path);
    match found {
        Some(a) if version == env!("CARGO_PKG_VERSION") => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(a.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            a.body,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_the_page_and_queries_run() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml"),
        );
        assert!(wants_page(&h, None));
        assert!(wants_page(&h, Some("foo=1")));
        assert!(!wants_page(&h, Some("query=%7Bme%7Bid%7D%7D")));
        assert!(!wants_page(&HeaderMap::new(), None));
    }

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let html = PAGE.replace("{ASSETS}", "/a");
        for chunk in html.split("\"/a/").skip(1) {
            let path = chunk.split('"').next().unwrap_or("");
            assert!(ASSETS.iter().any(|a| a.path == path), "{path} not embedded");
        }
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
