//! The catalogue of what the masking engine looks for: one entry per
//! [`DetectorKind`] with its name, description, regular expressions,
//! specificity and which check of `checks.rs` confirms a candidate. Pure
//! data; compiling and running the patterns is `mask.rs`'s job, so this file
//! never touches `regex`.
//!
//! Regexes only propose candidates; `checks.rs` confirms them.

use super::checks::{
    aws_secret, bearer, china_mobile, china_resident_id, credit_card, email, iban, ipv4, ipv6,
    labelled, openai_key, phone_international, secret_part, token_edges, url_end, whole,
    word_edges,
};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::str::FromStr;

/// Kinds of sensitive values the masker detects. The snake_case name is
/// stable: it appears in masked output (`[REDACTED:email]`,
/// `email#1a2b3c4d5e6f`), in configuration and in the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    AnthropicApiKey,
    AnthropicOauthToken,
    AnthropicRefreshToken,
    OpenaiKey,
    RelayKey,
    AwsAccessKeyId,
    AwsSecretKey,
    GoogleApiKey,
    GithubToken,
    GithubPat,
    GitlabToken,
    SlackToken,
    SlackWebhook,
    StripeKey,
    TwilioAccountSid,
    TwilioApiKey,
    SendgridKey,
    Jwt,
    PemPrivateKey,
    BearerToken,
    UrlPassword,
    DatabaseUrl,
    LabelledSecret,
    Email,
    PhoneInternational,
    ChinaMobile,
    CreditCard,
    Iban,
    ChinaResidentId,
    Ipv4,
    Ipv6,
}

/// Confirms a candidate: gets the whole text, the whole regex match and the
/// part to mask (the `s` capture group, or the whole match), and answers the
/// range to mask, possibly narrowed, or `None` to reject the candidate.
pub(crate) type Check = fn(&str, Range<usize>, Range<usize>) -> Option<Range<usize>>;

/// One entry of the catalogue.
pub(crate) struct Detector {
    pub(crate) kind: DetectorKind,
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    /// Candidate patterns. A group named `s` marks the part to mask when it
    /// is not the whole match (a password inside a URL, a token after
    /// `Bearer`).
    pub(crate) patterns: &'static [&'static str],
    /// Breaks ties between overlapping findings of equal length: the more
    /// specific kind (a vendor prefix beats a generic shape) wins.
    pub(crate) specificity: u8,
    pub(crate) check: Check,
}

/// The relay key pattern body that follows a (configurable) prefix.
pub(crate) const RELAY_KEY_BODY: &str = "[0-9a-fA-F]{64}";

use DetectorKind as K;

/// The catalogue, in [`DetectorKind`] declaration order (a test checks it).
pub(crate) static DETECTORS: [Detector; 31] = [
    Detector {
        kind: K::AnthropicApiKey,
        name: "anthropic_api_key",
        description: "Anthropic API and admin keys (sk-ant-api03-…, sk-ant-admin01-…).",
        patterns: &["sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_-]{20,}"],
        specificity: 95,
        check: token_edges,
    },
    Detector {
        kind: K::AnthropicOauthToken,
        name: "anthropic_oauth_token",
        description: "Claude OAuth access tokens (sk-ant-oat01-…).",
        patterns: &["sk-ant-oat[0-9]{2}-[A-Za-z0-9_-]{20,}"],
        specificity: 95,
        check: token_edges,
    },
    Detector {
        kind: K::AnthropicRefreshToken,
        name: "anthropic_refresh_token",
        description: "Claude OAuth refresh tokens (sk-ant-ort01-…).",
        patterns: &["sk-ant-ort[0-9]{2}-[A-Za-z0-9_-]{20,}"],
        specificity: 95,
        check: token_edges,
    },
    Detector {
        kind: K::OpenaiKey,
        name: "openai_key",
        description: "OpenAI keys: legacy sk-… (letters and digits) and sk-proj-, sk-svcacct-, sk-admin- keys.",
        patterns: &[
            "sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}",
            "sk-[A-Za-z0-9]{20,}",
        ],
        specificity: 85,
        check: openai_key,
    },
    Detector {
        kind: K::RelayKey,
        name: "relay_key",
        description: "Keys issued by this relay: the configured prefix (default cr_) and 64 hex digits.",
        // Built from the configured prefixes by `mask.rs`; this is the default.
        patterns: &["cr_[0-9a-fA-F]{64}"],
        specificity: 100,
        check: token_edges,
    },
    Detector {
        kind: K::AwsAccessKeyId,
        name: "aws_access_key_id",
        description: "AWS access key ids (AKIA…, ASIA… and the other 4-letter IAM prefixes, 20 characters).",
        patterns: &["(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}"],
        specificity: 90,
        check: word_edges,
    },
    Detector {
        kind: K::AwsSecretKey,
        name: "aws_secret_key",
        description: "AWS secret access keys: 40 base64 characters labelled as one (aws_secret_access_key=…) or within 100 characters after an access key id.",
        patterns: &[
            r#"(?i:aws_?secret_?(?:access_?)?key|secret_?access_?key)["']?[ \t]*[:=][ \t]*["']?(?P<s>[A-Za-z0-9/+]{40})"#,
            "(?:AKIA|ASIA)[A-Z0-9]{16}[^A-Za-z0-9/+](?s:.){0,100}?(?P<s>[A-Za-z0-9/+]{40})",
        ],
        specificity: 80,
        check: aws_secret,
    },
    Detector {
        kind: K::GoogleApiKey,
        name: "google_api_key",
        description: "Google API keys (AIza followed by 35 characters).",
        patterns: &["AIza[0-9A-Za-z_-]{35}"],
        specificity: 90,
        check: token_edges,
    },
    Detector {
        kind: K::GithubToken,
        name: "github_token",
        description: "GitHub tokens: ghp_ (personal), gho_ (OAuth), ghu_ (user-to-server), ghs_ (server-to-server), ghr_ (refresh).",
        patterns: &["gh[pousr]_[A-Za-z0-9]{36,}"],
        specificity: 90,
        check: word_edges,
    },
    Detector {
        kind: K::GithubPat,
        name: "github_pat",
        description: "GitHub fine-grained personal access tokens (github_pat_…).",
        patterns: &["github_pat_[A-Za-z0-9_]{22,}"],
        specificity: 90,
        check: word_edges,
    },
    Detector {
        kind: K::GitlabToken,
        name: "gitlab_token",
        description: "GitLab tokens: personal (glpat-), deploy (gldt-), runner (glrt-), trigger (glptt-), feed (glft-) and others.",
        patterns: &["gl(?:pat|dt|rt|ptt|ft|cbt|soat|imt|agent)-[A-Za-z0-9_-]{20,}"],
        specificity: 90,
        check: token_edges,
    },
    Detector {
        kind: K::SlackToken,
        name: "slack_token",
        description: "Slack tokens (xoxb-, xoxa-, xoxp-, xoxr-, and xoxe-/xoxs-).",
        patterns: &["xox[abeprs]-[0-9A-Za-z-]{10,}"],
        specificity: 90,
        check: token_edges,
    },
    Detector {
        kind: K::SlackWebhook,
        name: "slack_webhook",
        description: "Slack incoming webhook and workflow URLs (https://hooks.slack.com/services/…).",
        patterns: &["https?://hooks\\.slack\\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{10,}"],
        specificity: 90,
        check: url_end,
    },
    Detector {
        kind: K::StripeKey,
        name: "stripe_key",
        description: "Stripe keys (sk_live_, rk_live_, pk_live_ and their _test_ forms) and webhook secrets (whsec_).",
        patterns: &["(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{10,}", "whsec_[A-Za-z0-9+/]{24,}"],
        specificity: 90,
        check: word_edges,
    },
    Detector {
        kind: K::TwilioAccountSid,
        name: "twilio_account_sid",
        description: "Twilio account SIDs (AC followed by 32 lowercase hex digits).",
        patterns: &["AC[0-9a-f]{32}"],
        specificity: 85,
        check: word_edges,
    },
    Detector {
        kind: K::TwilioApiKey,
        name: "twilio_api_key",
        description: "Twilio API key SIDs (SK followed by 32 lowercase hex digits).",
        patterns: &["SK[0-9a-f]{32}"],
        specificity: 85,
        check: word_edges,
    },
    Detector {
        kind: K::SendgridKey,
        name: "sendgrid_key",
        description: "SendGrid API keys (SG.<id>.<secret>).",
        patterns: &["SG\\.[A-Za-z0-9_-]{16,32}\\.[A-Za-z0-9_-]{16,64}"],
        specificity: 90,
        check: token_edges,
    },
    Detector {
        kind: K::Jwt,
        name: "jwt",
        description: "JSON Web Tokens: three base64url segments, header and payload starting with eyJ.",
        patterns: &["eyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]*"],
        specificity: 85,
        check: token_edges,
    },
    Detector {
        kind: K::PemPrivateKey,
        name: "pem_private_key",
        description: "PEM private key blocks (-----BEGIN … PRIVATE KEY----- to the matching END line, or to the end of a truncated text).",
        patterns: &["-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?s:.)*?(?:-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|\\z)"],
        specificity: 100,
        check: whole,
    },
    Detector {
        kind: K::BearerToken,
        name: "bearer_token",
        description: "Tokens after the word Bearer (as in an Authorization header pasted into text); must mix letters and digits.",
        patterns: &["(?i:bearer)[ \\t]+(?P<s>[A-Za-z0-9._~+/-]{8,}=*)"],
        specificity: 50,
        check: bearer,
    },
    Detector {
        kind: K::UrlPassword,
        name: "url_password",
        description: "The password in a URL's user information (scheme://user:password@host); only the password is masked.",
        patterns: &["[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\\s:/?#@\\[\\]]*:(?P<s>[^\\s/?#@]+)@"],
        specificity: 60,
        check: secret_part,
    },
    Detector {
        kind: K::DatabaseUrl,
        name: "database_url",
        description: "Database connection strings with credentials (postgres://, mysql://, mongodb(+srv)://, redis(s)://, amqp(s)://, mssql://, clickhouse://); the whole string is masked.",
        patterns: &["(?i:postgres(?:ql)?|mysql|mariadb|mongodb(?:\\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse)://[^\\s/?#@]+@[^\\s'\"<>]+"],
        specificity: 70,
        check: url_end,
    },
    Detector {
        kind: K::LabelledSecret,
        name: "labelled_secret",
        description: "Values labelled as secrets (password=…, passwd: …, pwd=…, secret=…, client_secret=…, api_key=…, access_token=…).",
        patterns: &["(?i:password|passwd|passphrase|pwd|client_secret|secret|api_?key|access_?token|auth_?token)[\"']?[ \\t]*[:=][ \\t]*[\"']?(?P<s>[^\\s\"',;&\\[][^\\s\"',;&]{3,})"],
        specificity: 40,
        check: labelled,
    },
    Detector {
        kind: K::Email,
        name: "email",
        description: "Email addresses (ASCII local part and domain, a TLD of 2+ letters).",
        patterns: &["[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,24}"],
        specificity: 50,
        check: email,
    },
    Detector {
        kind: K::PhoneInternational,
        name: "phone_international",
        description: "International phone numbers in E.164 style: + and 8 to 15 digits, spaces, dots, dashes or parentheses between groups.",
        patterns: &["\\+[1-9](?:[ .-]?\\(?[0-9]{1,5}\\)?){1,7}"],
        specificity: 30,
        check: phone_international,
    },
    Detector {
        kind: K::ChinaMobile,
        name: "china_mobile",
        description: "Chinese mobile numbers: 1[3-9] and 9 more digits, optionally +86 and 3-4-4 grouping.",
        patterns: &["(?:\\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}"],
        specificity: 35,
        check: china_mobile,
    },
    Detector {
        kind: K::CreditCard,
        name: "credit_card",
        description: "Payment card numbers: 13 to 19 digits (issuer digit 2-6), spaces or dashes allowed, Luhn-checked.",
        patterns: &["[2-6][0-9](?:[ -]?[0-9]){11,17}"],
        specificity: 40,
        check: credit_card,
    },
    Detector {
        kind: K::Iban,
        name: "iban",
        description: "International bank account numbers: country, check digits, BBAN; length per country where known; mod-97 checked.",
        patterns: &["[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?"],
        specificity: 45,
        check: iban,
    },
    Detector {
        kind: K::ChinaResidentId,
        name: "china_resident_id",
        description: "Chinese resident identity card numbers: 18 characters, province code, birth date and ISO 7064 mod 11-2 check character verified.",
        patterns: &["[1-9][0-9]{16}[0-9Xx]"],
        specificity: 45,
        check: china_resident_id,
    },
    Detector {
        kind: K::Ipv4,
        name: "ipv4",
        description: "IPv4 addresses: four decimal octets 0-255 without leading zeros, not part of a longer dotted number.",
        patterns: &["[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}"],
        specificity: 30,
        check: ipv4,
    },
    Detector {
        kind: K::Ipv6,
        name: "ipv6",
        description: "IPv6 addresses, validated by the standard parser; at least two non-empty groups (so ::1 and :: are left alone).",
        patterns: &["[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\\.[0-9]{1,3}){0,3}"],
        specificity: 30,
        check: ipv6,
    },
];

impl DetectorKind {
    /// Every kind, in declaration order.
    pub const ALL: [DetectorKind; 31] = [
        K::AnthropicApiKey,
        K::AnthropicOauthToken,
        K::AnthropicRefreshToken,
        K::OpenaiKey,
        K::RelayKey,
        K::AwsAccessKeyId,
        K::AwsSecretKey,
        K::GoogleApiKey,
        K::GithubToken,
        K::GithubPat,
        K::GitlabToken,
        K::SlackToken,
        K::SlackWebhook,
        K::StripeKey,
        K::TwilioAccountSid,
        K::TwilioApiKey,
        K::SendgridKey,
        K::Jwt,
        K::PemPrivateKey,
        K::BearerToken,
        K::UrlPassword,
        K::DatabaseUrl,
        K::LabelledSecret,
        K::Email,
        K::PhoneInternational,
        K::ChinaMobile,
        K::CreditCard,
        K::Iban,
        K::ChinaResidentId,
        K::Ipv4,
        K::Ipv6,
    ];

    pub(crate) fn detector(self) -> &'static Detector {
        // The table is in declaration order (checked by a test), and the
        // discriminant is always < 31, so this index is in bounds.
        &DETECTORS[self as usize]
    }

    /// The stable snake_case name (`anthropic_api_key`).
    pub fn name(self) -> &'static str {
        self.detector().name
    }

    /// One sentence on what the detector matches, for docs and the API.
    pub fn description(self) -> &'static str {
        self.detector().description
    }

    /// A bit for [`KindSet`].
    pub(crate) fn bit(self) -> u64 {
        1u64 << (self as u32)
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown detector name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown detector kind {0:?}")]
pub struct UnknownKind(pub String);

impl FromStr for DetectorKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DetectorKind::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// Every detector kind with its name and description (for docs and GraphQL).
pub fn detector_kinds() -> &'static [DetectorKind] {
    &DetectorKind::ALL
}

/// A set of detector kinds (a bit set: there are fewer than 64 kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KindSet(u64);

impl KindSet {
    pub const fn empty() -> Self {
        KindSet(0)
    }
    pub fn all() -> Self {
        DetectorKind::ALL
            .into_iter()
            .fold(KindSet(0), |s, k| s.with(k))
    }
    pub fn contains(self, kind: DetectorKind) -> bool {
        self.0 & kind.bit() != 0
    }
    #[must_use]
    pub fn with(self, kind: DetectorKind) -> Self {
        KindSet(self.0 | kind.bit())
    }
    #[must_use]
    pub fn without(self, kind: DetectorKind) -> Self {
        KindSet(self.0 & !kind.bit())
    }
    pub fn iter(self) -> impl Iterator<Item = DetectorKind> {
        DetectorKind::ALL
            .into_iter()
            .filter(move |k| self.contains(*k))
    }
}

impl Default for KindSet {
    fn default() -> Self {
        KindSet::all()
    }
}

impl FromIterator<DetectorKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = DetectorKind>>(iter: I) -> Self {
        iter.into_iter().fold(KindSet::empty(), KindSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_declaration_order_and_names_round_trip() {
        assert_eq!(DETECTORS.len(), DetectorKind::ALL.len());
        for (i, k) in DetectorKind::ALL.into_iter().enumerate() {
            assert_eq!(DETECTORS[i].kind, k);
            assert_eq!(k.name().parse::<DetectorKind>(), Ok(k));
            assert!(!k.description().is_empty());
            // The serde name is the documented name.
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.name())
            );
        }
        assert!(detector_kinds().len() >= 25);
        assert!("nope".parse::<DetectorKind>().is_err());
    }

    #[test]
    fn kind_set_operations() {
        let s = KindSet::empty().with(K::Email).with(K::Ipv4);
        assert!(s.contains(K::Email) && s.contains(K::Ipv4) && !s.contains(K::Jwt));
        assert!(!s.without(K::Email).contains(K::Email));
        assert_eq!(KindSet::all().iter().count(), DetectorKind::ALL.len());
        assert_eq!(
            [K::Jwt].into_iter().collect::<KindSet>(),
            KindSet::empty().with(K::Jwt)
        );
    }
}
