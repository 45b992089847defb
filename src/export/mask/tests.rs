//! Tests of the masking engine: every detector with positive and negative
//! examples (checksum failures included), the three modes, pseudonym
//! stability, overlap resolution and the borrowed fast path.

use super::*;
use crate::export::detectors::detector_kinds;
use DetectorKind as K;

fn all() -> Masker {
    Masker::new(MaskConfig::default())
}

fn only(kind: DetectorKind) -> Masker {
    Masker::new(MaskConfig {
        enabled: KindSet::empty().with(kind),
        ..MaskConfig::default()
    })
}

/// `needle` is found in `text` as exactly one finding of `kind`, by the
/// single-kind masker and by the full one (where it must win overlaps).
fn check_found(kind: DetectorKind, text: &str, needle: &str) -> Option<String> {
    let start = text.find(needle).expect("needle in text");
    let want = Finding {
        kind,
        range: start..start + needle.len(),
    };
    let alone = only(kind).findings(text);
    if !alone.contains(&want) {
        return Some(format!(
            "{kind}: {needle:?} not found alone in {text:?}: {alone:?}"
        ));
    }
    let full = all().findings(text);
    (!full.contains(&want)).then(|| format!("{kind}: {needle:?} not chosen in {text:?}: {full:?}"))
}

fn check_not_found(kind: DetectorKind, text: &str) -> Option<String> {
    let f = only(kind).findings(text);
    (!f.is_empty()).then(|| format!("{kind}: unexpected finding in {text:?}: {f:?}"))
}

const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// (kind, [(text, the masked part)], [texts with nothing of that kind]).
type Case = (DetectorKind, Vec<(String, String)>, Vec<String>);

fn p(text: &str, needle: &str) -> (String, String) {
    (text.to_string(), needle.to_string())
}

fn pw(needle: &str) -> (String, String) {
    (format!("see {needle} here"), needle.to_string())
}

fn cases() -> Vec<Case> {
    let ant_body = "abcDEF123456ghiJKL789012mnoPQR345678stuVWX-_yz";
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        (
            K::AnthropicApiKey,
            vec![
                pw(&format!("sk-ant-api03-{ant_body}")),
                pw(&format!("sk-ant-admin01-{ant_body}")),
            ],
            s(&[
                "sk-ant-api03-short",
                &format!("xsk-ant-api03-{ant_body}"),
                &format!("sk-ant-apiXX-{ant_body}"),
            ]),
        ),
        (
            K::AnthropicOauthToken,
            vec![pw(&format!("sk-ant-oat01-{ant_body}"))],
            s(&[&format!("sk-ant-oat1-{ant_body}"), "sk-ant-oat01-tooshort"]),
        ),
        (
            K::AnthropicRefreshToken,
            vec![pw(&format!("sk-ant-ort01-{ant_body}"))],
            s(&[&format!("sk-ant-ortXY-{ant_body}"), "sk-ant-ort01-tooshort"]),
        ),
        (
            K::OpenaiKey,
            vec![
                pw("sk-proj-AbC123dEf456GhI789jKl012MnO345pQr678"),
                pw("sk-AbC123dEf456GhI789jKl012MnO345pQr678sTu901vWx2"),
                pw("sk-svcacct-AbC123dEf456GhI789jKl012"),
            ],
            s(&[
                "sk-abcdefghijklmnopqrstuvwxyz",
                "task-1234567890abcdefghij12",
                "sk-AbC123",
            ]),
        ),
        (
            K::RelayKey,
            vec![pw(&format!("cr_{HEX64}")), pw(&format!("cr_{}", HEX64.to_uppercase()))],
            s(&[
                &format!("cr_{}", &HEX64[1..]),
                &format!("cr_{HEX64}0"),
                &format!("xcr_{HEX64}"),
                HEX64,
            ]),
        ),
        (
            K::AwsAccessKeyId,
            vec![pw("AKIAIOSFODNN7EXAMPLE"), pw("ASIAY34FZKBOKMUTVV7A")],
            s(&["AKIAIOSFODNN7EXAMPL", "XAKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLEX", "AKIAiosfodnn7example"]),
        ),
        (
            K::AwsSecretKey,
            vec![
                p(
                    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
                p(
                    "AWS_SECRET_KEY: \"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
                p(
                    "id AKIAIOSFODNN7EXAMPLE secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
            ],
            s(&[
                "token wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE",
                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEYX",
            ]),
        ),
        (
            K::GoogleApiKey,
            vec![pw("AIzaSyA1234567890abcdefghijklmnopqrstuv")],
            s(&["AIzaSyA1234567890abcdefghijklmnopqrstu", "AIzbSyA1234567890abcdefghijklmnopqrstuv"]),
        ),
        (
            K::GithubToken,
            vec![
                pw("ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123"),
                pw("gho_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123"),
                pw("ghu_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123"),
                pw("ghs_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123"),
                pw("ghr_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123"),
            ],
            s(&["ghx_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123", "ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef012"]),
        ),
        (
            K::GithubPat,
            vec![pw("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVW")],
            s(&["github_pat_short", "my_github_pat_11ABCDEFG0123456789_abcdef"]),
        ),
        (
            K::GitlabToken,
            vec![pw("glpat-AbCdEfGhIj1234567890"), pw("glrt-AbCdEfGhIj1234567890xy")],
            s(&["glpat-short", "xglpat-AbCdEfGhIj1234567890"]),
        ),
        (
            K::SlackToken,
            vec![
                pw("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"),
                pw("xoxp-1234567890-abcdef"),
            ],
            s(&["xoxz-1234567890ab", "xoxb-short"]),
        ),
        (
            K::SlackWebhook,
            vec![p(
                "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX.",
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
            )],
            s(&["https://hooks.slack.com/", "https://example.com/services/T0000/B0000/XXXXXXXXXXXX"]),
        ),
        (
            K::StripeKey,
            vec![
                pw("sk_live_51HxYzAbCdEfGhIjKlMn"),
                pw("rk_live_51HxYzAbCdEfGhIjKlMn"),
                pw("pk_test_51HxYzAbCdEfGhIjKlMn"),
                pw("whsec_AbCdEfGhIjKlMnOpQrStUvWx12"),
            ],
            s(&["sk_demo_51HxYzAbCdEfGhIjKlMn", "sk_live_short", "ask_live_51HxYzAbCdEfGhIjKlMn"]),
        ),
        (
            K::TwilioAccountSid,
            vec![pw("AC0123456789abcdef0123456789abcdef")],
            s(&["AC0123456789abcdef0123456789abcde", "AC0123456789ABCDEF0123456789ABCDEF", "AC0123456789abcdef0123456789abcdef0"]),
        ),
        (
            K::TwilioApiKey,
            vec![pw("SK0123456789abcdef0123456789abcdef")],
            s(&["SK0123456789abcdef0123456789abcdeg", "XSK0123456789abcdef0123456789abcdef"]),
        ),
        (
            K::SendgridKey,
            vec![pw("SG.AbCdEfGhIjKlMnOpQrStUv.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE")],
            s(&["SG.short.short", "SG.AbCdEfGhIjKlMnOpQrStUv"]),
        ),
        (
            K::Jwt,
            vec![pw("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")],
            s(&["eyJhbGciOiJIUzI1NiJ9", "eyJ.eyJ.x", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24gYXQgYWxs.sig"]),
        ),
        (
            K::PemPrivateKey,
            vec![
                p(
                    "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----\nbye",
                    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc=\n-----END RSA PRIVATE KEY-----",
                ),
                pw("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----"),
                pw("-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk\\n-----END OPENSSH PRIVATE KEY-----"),
                // Truncated: everything after BEGIN is masked.
                p("x -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE"),
            ],
            s(&[
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            ]),
        ),
        (
            K::BearerToken,
            vec![
                p("Authorization: Bearer abc123DEF456ghi789", "abc123DEF456ghi789"),
                p("curl -H 'authorization: bearer a1b2c3d4e5f6.g7h8=' x", "a1b2c3d4e5f6.g7h8="),
            ],
            s(&["the bearer instrument", "Bearer short1", "Bearerabc123DEF456ghi789"]),
        ),
        (
            K::UrlPassword,
            vec![
                p("proxy https://alice:s3cr3t@example.com/path", "s3cr3t"),
                p("socks5h://u:p%40ss@10.0.0.1:1080", "p%40ss"),
            ],
            s(&["https://alice@example.com", "https://example.com/a:b@c", "mailto:bob@example.com"]),
        ),
        (
            K::DatabaseUrl,
            vec![
                p("db: postgres://app:hunter2@db.internal:5432/prod.", "postgres://app:hunter2@db.internal:5432/prod"),
                pw("mongodb+srv://user:pw@cluster0.abc.mongodb.net/db?retryWrites=true"),
                pw("redis://:secretpw@cache:6379/0"),
                pw("MySQL://root:root@127.0.0.1/app"),
            ],
            s(&["postgres://db.internal:5432/prod", "postgresql is great", "http://user:pw@example.com"]),
        ),
        (
            K::LabelledSecret,
            vec![
                p("password=hunter22", "hunter22"),
                p("db_pwd: 'xyz123'", "xyz123"),
                p("{\"client_secret\": \"abcd1234\"}", "abcd1234"),
                p("API_KEY=zzzz9999 next", "zzzz9999"),
            ],
            s(&["password policy applies", "password=abc", "mypassword=hunter22", "password: [REDACTED:email]"]),
        ),
        (
            K::Email,
            vec![
                pw("alice.smith+tag@example.co.uk"),
                p("联系人：bob@例子.com 或 carol@example.org。", "carol@example.org"),
                p("https://example.com/contact?to=dave@example.com", "dave@example.com"),
            ],
            s(&[
                "alice@localhost",
                "alice@example..com",
                "alice@-example.com",
                "https://user:pw@example.com",
                "user@example.c",
                "@example.com",
            ]),
        ),
        (
            K::PhoneInternational,
            vec![
                pw("+1 415 555 2671"),
                pw("+44 20 7946 0958"),
                pw("+49-30-901820"),
                p("call (+33 1 23 45 67 89)", "+33 1 23 45 67 89"),
                p("tel +1 415 555 2671 4111111111111111", "+1 415 555 2671"),
            ],
            s(&["+12 34", "1+4155552671", "+1234567890123456789", "version +1.2"]),
        ),
        (
            K::ChinaMobile,
            vec![
                pw("13812345678"),
                p("手机13812345678，谢谢", "13812345678"),
                pw("+86 138 1234 5678"),
                pw("138-1234-5678"),
            ],
            s(&["12812345678", "138123456789", "a13812345678", "2138123456789"]),
        ),
        (
            K::CreditCard,
            vec![
                pw("4111 1111 1111 1111"),
                pw("4111-1111-1111-1111"),
                pw("378282246310005"),
                pw("5555555555554444"),
                p("card 4111 1111 1111 1111 2024", "4111 1111 1111 1111"),
            ],
            s(&[
                "4111 1111 1111 1112",
                "1234567812345670",
                "4111-1111 1111-1111",
                "41111111111111112",
                "order 411111111111",
            ]),
        ),
        (
            K::Iban,
            vec![
                pw("GB82 WEST 1234 5698 7654 32"),
                pw("DE89370400440532013000"),
                pw("DE89 3704 0044 0532 0130 00"),
                p("iban GB82 WEST 1234 5698 7654 32 BANK", "GB82 WEST 1234 5698 7654 32"),
            ],
            s(&["GB82 WEST 1234 5698 7654 33", "XX00 ABCD", "GB82WEST12345698765432X", "DE89370400440532013001"]),
        ),
        (
            K::ChinaResidentId,
            vec![pw("11010519491231002X"), p("身份证号11010519491231002x。", "11010519491231002x")],
            s(&["110105194912310021", "110105194913310021", "99010519491231002X", "11010519491231002X1"]),
        ),
        (
            K::Ipv4,
            vec![pw("192.168.1.10"), p("host 10.0.0.1.", "10.0.0.1"), p("ip:8.8.8.8", "8.8.8.8")],
            s(&["999.1.1.1", "1.2.3", "1.2.3.4.5", "01.2.3.4", "v1.2.3.4", "10.0.0.256"]),
        ),
        (
            K::Ipv6,
            vec![
                pw("2001:db8::1"),
                pw("fe80::1ff:fe23:4567:890a"),
                pw("::ffff:192.0.2.128"),
                pw("2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
                p("addr fe80::1: down", "fe80::1"),
            ],
            s(&["12:30:45", "::1", "std::io::Read", "00:1a:2b:3c:4d:5e", "a:b:c"]),
        ),
    ]
}

#[test]
fn every_detector_has_positive_and_negative_cases() {
    let cases = cases();
    for kind in detector_kinds() {
        let case = cases.iter().find(|c| c.0 == *kind);
        let (_, pos, neg) = case.unwrap_or_else(|| panic!("no case for {kind}"));
        assert!(!pos.is_empty() && !neg.is_empty(), "{kind}");
    }
}

#[test]
fn detectors_find_their_positives() {
    let failures: Vec<String> = cases()
        .into_iter()
        .flat_map(|(kind, pos, _)| pos.into_iter().map(move |(t, n)| (kind, t, n)))
        .filter_map(|(kind, t, n)| check_found(kind, &t, &n))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn detectors_reject_their_negatives() {
    let failures: Vec<String> = cases()
        .into_iter()
        .flat_map(|(kind, _, neg)| neg.into_iter().map(move |t| (kind, t)))
        .filter_map(|(kind, t)| check_not_found(kind, &t))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn configurable_relay_key_prefix() {
    let text = format!("key rk_{HEX64}");
    assert!(all().findings(&text).iter().all(|f| f.kind != K::RelayKey));
    let m = Masker::new(MaskConfig {
        relay_key_prefixes: vec!["cr_".into(), "rk_".into(), String::new()],
        ..MaskConfig::default()
    });
    assert_eq!(m.mask(&text), "key [REDACTED:relay_key]");
    // The empty prefix is ignored: a bare digest stays.
    assert_eq!(m.mask(HEX64), HEX64);
}

#[test]
fn clean_text_is_borrowed() {
    let m = all();
    for text in [
        "",
        "Team Alpha production key",
        "按月结算 – 用户组 7",
        "v1.2.3 release, 2024-05-01",
    ] {
        assert!(matches!(m.mask(text), Cow::Borrowed(_)), "{text}");
    }
    // A candidate the check rejects is also no allocation.
    assert!(matches!(
        m.mask("card 4111 1111 1111 1112"),
        Cow::Borrowed(_)
    ));
}

#[test]
fn full_mode() {
    let m = all();
    assert_eq!(
        m.mask("mail alice@example.com or call +1 415 555 2671"),
        "mail [REDACTED:email] or call [REDACTED:phone_international]"
    );
    assert_eq!(
        m.mask("联系 13812345678 谢谢"),
        "联系 [REDACTED:china_mobile] 谢谢"
    );
}

#[test]
fn partial_mode_keeps_ends_and_hides_at_least_half() {
    let m = Masker::new(MaskConfig::default().with_mode(MaskMode::Partial {
        keep_start: 4,
        keep_end: 4,
    }));
    let key = "sk-ant-api03-abcDEF123456ghiJKL789012mnoPQR345678stuVWXyz";
    assert_eq!(m.mask(&format!("k={key}")), "k=sk-a****WXyz");
    // 11 digits: 6 must stay hidden, so 4 + 1 are shown.
    assert_eq!(m.mask("tel 13812345678"), "tel 1381****8");
    // Short secrets show nothing.
    assert_eq!(m.mask("password=abcd1"), "password=****");
    // Asking for more than half is cut down.
    let greedy = Masker::new(MaskConfig::default().with_mode(MaskMode::Partial {
        keep_start: 40,
        keep_end: 40,
    }));
    let out = greedy.mask("alice@example.com").into_owned();
    let shown = out.replace("****", "");
    assert!(
        shown.chars().count() <= "alice@example.com".len() / 2,
        "{out}"
    );
}

#[test]
fn pseudonyms_are_stable_per_key_and_distinct_per_value() {
    let key = PseudonymKey::from_bytes([7; 32]);
    let cfg = || MaskConfig {
        mode: MaskMode::Pseudonym,
        pseudonym_key: key.clone(),
        ..MaskConfig::default()
    };
    let (a, b) = (Masker::new(cfg()), Masker::new(cfg()));
    let text = format!("sk-ant-api03-{} and cr_{HEX64}", "x1".repeat(20));
    let once = a.mask(&text).into_owned();
    assert_eq!(once, b.mask(&text));
    let re = Regex::new(r"^anthropic_api_key#[0-9a-f]{12} and relay_key#[0-9a-f]{12}$").unwrap();
    assert!(re.is_match(&once), "{once}");
    // Another secret, another token.
    let other = a
        .mask(&format!("sk-ant-api03-{}", "y2".repeat(20)))
        .into_owned();
    assert_ne!(once.get(..30), other.get(..30));
    // Another instance key, other tokens.
    let c = Masker::new(MaskConfig {
        pseudonym_key: PseudonymKey::from_bytes([8; 32]),
        ..cfg()
    });
    assert_ne!(once, c.mask(&text));
    // Canonical forms: case of an email, separators of a phone number.
    assert_eq!(a.mask("Bob@Example.COM"), a.mask("bob@example.com"));
    assert_eq!(a.mask("+86 138 1234 5678"), a.mask("13812345678"));
    assert_ne!(a.mask("13812345678"), a.mask("13812345679"));
    // The key never prints.
    assert_eq!(format!("{key:?}"), "PseudonymKey(****)");
}

#[test]
fn overlaps_resolve_to_longest_then_most_specific() {
    let m = all();
    let ant = format!("sk-ant-api03-{}", "Ab3".repeat(14));
    // Same span as bearer_token: the vendor kind wins.
    assert_eq!(
        m.mask(&format!("Authorization: Bearer {ant}")),
        "Authorization: Bearer [REDACTED:anthropic_api_key]"
    );
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl";
    assert_eq!(m.mask(&format!("Bearer {jwt}")), "Bearer [REDACTED:jwt]");
    // The connection string covers its password (url_password) and host.
    assert_eq!(
        m.mask("postgres://app:pw1@10.1.2.3:5432/db"),
        "[REDACTED:database_url]"
    );
    // A URL with a password keeps its host; the password is not an email.
    assert_eq!(
        m.mask("https://bob:pw@example.com/x"),
        "https://bob:[REDACTED:url_password]@example.com/x"
    );
    // An 18-digit ID that is also Luhn-valid is reported as an ID.
    let findings = m.findings("11010519491231002X");
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].kind, K::ChinaResidentId);
    // Findings never overlap and are ordered, however many detectors fire.
    let busy =
        format!("a@b.io 10.0.0.1 {ant} Bearer {jwt} +1 415 555 2671 4111111111111111 fe80::1");
    let f = m.findings(&busy);
    assert!(f.len() >= 7, "{f:?}");
    assert!(
        f.windows(2).all(|w| w[0].range.end <= w[1].range.start),
        "{f:?}"
    );
    // Deterministic: the same input gives the same output.
    assert_eq!(m.findings(&busy), f);
}

#[test]
fn kinds_can_be_disabled() {
    let m = Masker::new(MaskConfig::default().disable(K::Email));
    assert!(!m.is_enabled(K::Email) && m.is_enabled(K::Ipv4));
    assert_eq!(
        m.mask("alice@example.com 10.0.0.1"),
        "alice@example.com [REDACTED:ipv4]"
    );
    let none = Masker::new(MaskConfig {
        enabled: KindSet::empty(),
        ..MaskConfig::default()
    });
    assert!(matches!(none.mask("alice@example.com"), Cow::Borrowed(_)));
    let back = Masker::new(
        MaskConfig {
            enabled: KindSet::empty(),
            ..MaskConfig::default()
        }
        .enable(K::Email),
    );
    assert_eq!(back.mask("alice@example.com"), "[REDACTED:email]");
    assert!(!back.is_fail_closed());
}

#[test]
fn multibyte_text_around_findings_survives() {
    let m = all();
    let text = "🙂 émile@example.fr — 张三 alice@example.com ✓";
    assert_eq!(
        m.mask(text),
        "🙂 [REDACTED:email] — 张三 [REDACTED:email] ✓"
    );
    // A Latin local part is taken whole; CJK text glued before it is not.
    assert_eq!(m.mask("José.núñez@example.es"), "[REDACTED:email]");
    assert_eq!(m.mask("邮箱alice@example.com"), "邮箱[REDACTED:email]");
}

#[test]
fn hostile_input_stays_linear() {
    let m = all();
    let mut text = "a".repeat(200_000);
    text.push_str("@-bad.com ");
    text.push_str(&"1".repeat(100_000));
    text.push_str(&" 1.2.3.4.5".repeat(10_000));
    text.push_str(&"::".repeat(20_000));
    let start = std::time::Instant::now();
    let _ = m.mask(&text);
    // Debug build; a quadratic scan of this input takes minutes.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}
