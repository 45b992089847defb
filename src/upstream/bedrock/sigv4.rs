//! SigV4 signing of Bedrock calls, through AWS's own `aws-sigv4` crate. This
//! file only adapts our types to it (and keeps the secret in [`Secret`]s);
//! the tests check it against the signatures AWS publishes in its SigV4
//! test suite, not against the crate's own verifier.

use crate::domain::{AwsCredentials, Secret};
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use http::{HeaderName, HeaderValue};
use std::time::SystemTime;

/// Why a request could not be signed. Never carries a credential.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the Bedrock request ({0})")]
pub struct SignError(&'static str);

/// What to sign with: the key pair, region and service name.
pub struct Signer<'a> {
    pub access_key_id: &'a Secret,
    pub secret_access_key: &'a Secret,
    pub session_token: Option<&'a Secret>,
    pub region: &'a str,
    pub service: &'a str,
}

impl<'a> Signer<'a> {
    pub fn bedrock(aws: &'a AwsCredentials) -> Signer<'a> {
        Signer {
            access_key_id: &aws.access_key_id,
            secret_access_key: &aws.secret_access_key,
            session_token: aws.session_token.as_ref(),
            region: &aws.region,
            service: "bedrock",
        }
    }

    /// The headers to add to a request (`authorization`, `x-amz-date`, and
    /// `x-amz-security-token` for temporary credentials), marked sensitive.
    /// `headers` are the request's own headers that get signed (the host
    /// comes from `url`).
    pub fn sign(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        time: SystemTime,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
        let identity = aws_credential_types::Credentials::new(
            self.access_key_id.expose(),
            self.secret_access_key.expose(),
            self.session_token.map(|t| t.expose().to_owned()),
            None,
            "claude-relay-account",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(self.region)
            .name(self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|_| SignError("incomplete signing parameters"))?
            .into();
        let request = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|_| SignError("unsignable request"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|_| SignError("signing failed"))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        signed
            .iter()
            .map(|h| {
                let name = HeaderName::from_static(h.name());
                let mut value =
                    HeaderValue::from_str(h.value()).map_err(|_| SignError("bad header value"))?;
                value.set_sensitive(h.sensitive() || name == http::header::AUTHORIZATION);
                Ok((name, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's SigV4 test suite (`aws-sig-v4-test-suite`):
    //! credentials AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY,
    //! 2015-08-30T12:36:00Z, region us-east-1, service `service`. The expected
    //! Authorization values are AWS's published ones.
    use super::*;
    use std::time::Duration;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SCOPE: &str =
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
    const STS_TOKEN: &str = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";

    fn at() -> SystemTime {
        // 2015-08-30T12:36:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn authorization(
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        token: Option<&str>,
    ) -> (String, Vec<(HeaderName, HeaderValue)>) {
        let akid = Secret::new("AKIDEXAMPLE");
        let secret = Secret::new(SECRET);
        let token = token.map(Secret::new);
        let signer = Signer {
            access_key_id: &akid,
            secret_access_key: &secret,
            session_token: token.as_ref(),
            region: "us-east-1",
            service: "service",
        };
        let out = signer.sign(method, url, headers, body, at()).unwrap();
        let auth = out
            .iter()
            .find(|(n, _)| n == http::header::AUTHORIZATION)
            .map(|(_, v)| v.to_str().unwrap().to_owned())
            .unwrap();
        (auth, out)
    }

    #[test]
    fn get_vanilla() {
        let (auth, out) = authorization("GET", "https://example.amazonaws.com/", &[], b"", None);
        assert_eq!(
            auth,
            format!("{SCOPE}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        );
        let date = out.iter().find(|(n, _)| n == "x-amz-date").unwrap();
        assert_eq!(date.1, "20150830T123600Z");
        assert!(out
            .iter()
            .all(|(_, v)| v.is_sensitive() || v == "20150830T123600Z"));
    }

    #[test]
    fn post_vanilla() {
        let (auth, _) = authorization("POST", "https://example.amazonaws.com/", &[], b"", None);
        assert_eq!(
            auth,
            format!("{SCOPE}, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
        );
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let (auth, _) = authorization(
            "GET",
            "https://example.amazonaws.com/?Param2=value2&Param1=value1",
            &[],
            b"",
            None,
        );
        assert_eq!(
            auth,
            format!("{SCOPE}, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
        );
    }

    #[test]
    fn post_x_www_form_urlencoded_signs_the_body() {
        let (auth, _) = authorization(
            "POST",
            "https://example.amazonaws.com/",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"Param1=value1",
            None,
        );
        assert_eq!(
            auth,
            format!("{SCOPE}, SignedHeaders=content-type;host;x-amz-date, Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
        );
        // A different body must give a different signature.
        let (other, _) = authorization(
            "POST",
            "https://example.amazonaws.com/",
            &[("content-type", "application/x-www-form-urlencoded")],
            b"Param1=value2",
            None,
        );
        assert_ne!(auth, other);
    }

    #[test]
    fn post_sts_header_before_signs_the_session_token() {
        let (auth, out) = authorization(
            "POST",
            "https://example.amazonaws.com/",
            &[],
            b"",
            Some(STS_TOKEN),
        );
        assert_eq!(
            auth,
            format!("{SCOPE}, SignedHeaders=host;x-amz-date;x-amz-security-token, Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")
        );
        let token = out
            .iter()
            .find(|(n, _)| n == "x-amz-security-token")
            .unwrap();
        assert_eq!(token.1, STS_TOKEN);
        assert!(token.1.is_sensitive());
    }
}
