//! Outbound fetches on behalf of clients: the http(s) image URLs of OpenAI
//! chat requests (conventions.md "Secrets and security"). Off unless the
//! admin enables it; when on, a URL is fetched only if every address its
//! host resolves to is public (no loopback, private, link-local, CGNAT,
//! multicast or unspecified addresses, IPv4-mapped ones included), the
//! connection is pinned to the address that was checked (so a second DNS
//! answer cannot swap in an internal one), redirects are not followed, and
//! time and size are capped. Only images come back.

use crate::openai::{FetchedImage, OpenAiError};
use bytes::BytesMut;
use futures::StreamExt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The limits of one fetch.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Most bytes of one image (Anthropic takes images up to 5 MB).
    pub max_bytes: usize,
    /// Whole fetch: DNS, connect, headers and body.
    pub timeout: Duration,
    /// Tests only: lets the address rules pass loopback and private
    /// addresses so a local server can stand in for the internet. No
    /// configuration setting sets it.
    pub allow_private_addresses: bool,
}

impl FetchPolicy {
    pub fn new(max_bytes: usize, timeout: Duration) -> FetchPolicy {
        FetchPolicy {
            max_bytes,
            timeout,
            allow_private_addresses: false,
        }
    }
}

/// Why a URL was not fetched; the text is safe to show the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    #[error("the URL is not a valid http(s) URL")]
    BadUrl,
    #[error("its host could not be resolved")]
    Unresolvable,
    #[error("its host resolves to a loopback, private or link-local address")]
    PrivateAddress,
    #[error("the server answered with a redirect, which the relay does not follow")]
    Redirect,
    #[error("the server answered with status {0}")]
    Status(u16),
    #[error("it is not an image (content-type {0})")]
    NotAnImage(String),
    #[error("it is larger than {0} bytes")]
    TooLarge(usize),
    #[error("it did not arrive in time")]
    Timeout,
    #[error("the connection failed")]
    Transport,
}

/// Fetches every URL (in order) under `policy`; the first failure is a 400
/// naming the URL.
pub async fn fetch_images(
    urls: &[String],
    policy: &FetchPolicy,
) -> Result<Vec<FetchedImage>, OpenAiError> {
    let mut images = Vec::with_capacity(urls.len());
    for url in urls {
        let image = fetch_image(url, policy).await.map_err(|e| {
            OpenAiError::invalid_request(None, format!("Could not fetch the image at {url}: {e}"))
        })?;
        images.push(image);
    }
    Ok(images)
}

/// One image, under the rules in the module doc.
pub async fn fetch_image(url: &str, policy: &FetchPolicy) -> Result<FetchedImage, FetchError> {
    match tokio::time::timeout(policy.timeout, fetch_inner(url, policy)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn fetch_inner(url: &str, policy: &FetchPolicy) -> Result<FetchedImage, FetchError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl)?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.username().is_empty() {
        return Err(FetchError::BadUrl);
    }
    let host = parsed.host_str().ok_or(FetchError::BadUrl)?.to_owned();
    let port = parsed.port_or_known_default().ok_or(FetchError::BadUrl)?;
    let address = resolve_public(&host, port, policy.allow_private_addresses).await?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(policy.timeout);
    // IP literals need no pinning; names are pinned to the checked address.
    if host.parse::<IpAddr>().is_err() && !host.starts_with('[') {
        builder = builder.resolve(&host, address);
    }
    let client = builder.build().map_err(|_| FetchError::Transport)?;
    let response = client
        .get(parsed)
        .header(http::header::ACCEPT, "image/*")
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Transport
            }
        })?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirect);
    }
    if !status.is_success() {
        return Err(FetchError::Status(status.as_u16()));
    }
    let media_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !media_type.starts_with("image/") {
        return Err(FetchError::NotAnImage(if media_type.is_empty() {
            "missing".into()
        } else {
            media_type
        }));
    }
    if response
        .content_length()
        .is_some_and(|n| n > policy.max_bytes as u64)
    {
        return Err(FetchError::TooLarge(policy.max_bytes));
    }
    let mut data = BytesMut::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Transport
            }
        })?;
        if data.len() + chunk.len() > policy.max_bytes {
            return Err(FetchError::TooLarge(policy.max_bytes));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(FetchedImage {
        media_type,
        data: data.freeze(),
    })
}

/// Resolves `host` and returns an address to connect to, only if every
/// address it resolves to is public (one internal answer refuses the host).
async fn resolve_public(
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<SocketAddr, FetchError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| FetchError::Unresolvable)?
            .collect(),
    };
    let first = *addresses.first().ok_or(FetchError::Unresolvable)?;
    if !allow_private && !addresses.iter().all(|a| is_public(a.ip())) {
        return Err(FetchError::PrivateAddress);
    }
    Ok(first)
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped and IPv4-compatible forms reach the IPv4 address.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            is_public_v6(v6)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64 (may reach IPv4 internals)
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::get;

    #[test]
    fn address_rules() {
        for refused in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
            "2001:db8::1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!is_public(ip), "{refused} must be refused");
        }
        for allowed in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert!(is_public(ip), "{allowed} must be allowed");
        }
    }

    /// A local stand-in for image hosts.
    async fn server() -> String {
        let app = axum::Router::new()
            .route(
                "/cat.png",
                get(|| async {
                    (
                        [("content-type", "image/png")],
                        vec![0x89u8, b'P', b'N', b'G'],
                    )
                }),
            )
            .route(
                "/big.png",
                get(|| async { ([("content-type", "image/png")], vec![0u8; 4096]) }),
            )
            .route(
                "/page.html",
                get(|| async { ([("content-type", "text/html")], "<html>") }),
            )
            .route(
                "/moved.png",
                get(|| async {
                    let mut r = StatusCode::FOUND.into_response();
                    r.headers_mut()
                        .insert("location", HeaderValue::from_static("/cat.png"));
                    r
                }),
            )
            .route(
                "/slow.png",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    ([("content-type", "image/png")], vec![1u8])
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn fetch_rules_against_a_real_server() {
        let base = server().await;
        let strict = FetchPolicy::new(1024, Duration::from_secs(2));
        // Loopback is refused before any connection, by IP and by name.
        assert_eq!(
            fetch_image(&format!("{base}/cat.png"), &strict)
                .await
                .unwrap_err(),
            FetchError::PrivateAddress
        );
        let port = base.rsplit(':').next().unwrap();
        assert_eq!(
            fetch_image(&format!("http://localhost:{port}/cat.png"), &strict)
                .await
                .unwrap_err(),
            FetchError::PrivateAddress
        );
        let open = FetchPolicy {
            allow_private_addresses: true,
            ..strict.clone()
        };
        let image = fetch_image(&format!("{base}/cat.png"), &open)
            .await
            .unwrap();
        assert_eq!(image.media_type, "image/png");
        assert_eq!(&image.data[..], b"\x89PNG");
        assert_eq!(
            fetch_image(&format!("{base}/moved.png"), &open)
                .await
                .unwrap_err(),
            FetchError::Redirect
        );
        assert_eq!(
            fetch_image(&format!("{base}/big.png"), &open)
                .await
                .unwrap_err(),
            FetchError::TooLarge(1024)
        );
        assert_eq!(
            fetch_image(&format!("{base}/page.html"), &open)
                .await
                .unwrap_err(),
            FetchError::NotAnImage("text/html".into())
        );
        assert_eq!(
            fetch_image(&format!("{base}/nope.png"), &open)
                .await
                .unwrap_err(),
            FetchError::Status(404)
        );
        let hurried = FetchPolicy {
            timeout: Duration::from_millis(200),
            ..open.clone()
        };
        assert_eq!(
            fetch_image(&format!("{base}/slow.png"), &hurried)
                .await
                .unwrap_err(),
            FetchError::Timeout
        );
        assert_eq!(
            fetch_image("ftp://example.com/x.png", &open)
                .await
                .unwrap_err(),
            FetchError::BadUrl
        );
        let err = fetch_images(&[format!("{base}/cat.png")], &strict)
            .await
            .unwrap_err();
        assert!(err.message().contains("/cat.png"), "{}", err.message());
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
