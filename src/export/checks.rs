//! Confirmation of regex candidates for the detectors of `detectors.rs`:
//! ASCII edge checks (the `regex` crate has no look-around, and its Unicode
//! `\b` sees CJK characters as word characters, so `手机13812345678` would
//! have no boundary), narrowing of greedy matches, and the checksums and
//! parsers that make a number a card, an IBAN, an ID or an address (Luhn,
//! ISO 13616 mod-97, GB 11643 mod 11-2, `std::net`). Pure functions only.
//!
//! Every check has the `detectors::Check` shape: the whole text, the whole
//! regex match and the part to mask in, the range to mask (or `None`) out.

use std::ops::Range;

fn prev_char(text: &str, at: usize) -> Option<char> {
    text.get(..at).and_then(|s| s.chars().next_back())
}

fn next_char(text: &str, at: usize) -> Option<char> {
    text.get(at..).and_then(|s| s.chars().next())
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_token(c: char) -> bool {
    is_word(c) || c == '-'
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

/// Neither neighbour of `r` is a `bad` character.
fn free_edges(text: &str, r: &Range<usize>, bad: fn(char) -> bool) -> bool {
    !prev_char(text, r.start).is_some_and(bad) && !next_char(text, r.end).is_some_and(bad)
}

fn slice<'t>(text: &'t str, r: &Range<usize>) -> &'t str {
    text.get(r.clone()).unwrap_or("")
}

// ---------------------------------------------------------------------------
// Checks.

pub(crate) fn whole(_text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    Some(m)
}

pub(crate) fn secret_part(_text: &str, _m: Range<usize>, s: Range<usize>) -> Option<Range<usize>> {
    Some(s)
}

/// Keys made of letters, digits, `_` and `-`: not glued to more of the same.
pub(crate) fn token_edges(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    free_edges(text, &m, is_token).then_some(m)
}

/// Keys made of letters and digits: not glued to more of them.
pub(crate) fn word_edges(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    free_edges(text, &m, is_word).then_some(m)
}

fn has_digit_and_letter(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit()) && s.bytes().any(|b| b.is_ascii_alphabetic())
}

pub(crate) fn openai_key(text: &str, m: Range<usize>, s: Range<usize>) -> Option<Range<usize>> {
    let m = token_edges(text, m, s)?;
    // A legacy key is 48 random letters and digits; an English slug such as
    // `sk-abcdefghijklmnopqrstuv` has no digits, a real key always has some.
    has_digit_and_letter(slice(text, &m).get(3..).unwrap_or("")).then_some(m)
}

pub(crate) fn aws_secret(text: &str, m: Range<usize>, s: Range<usize>) -> Option<Range<usize>> {
    let base64 = |c: char| is_alnum(c) || c == '/' || c == '+';
    (!prev_char(text, m.start).is_some_and(is_alnum) && free_edges(text, &s, base64))
        .then_some(s)
        .filter(|s| has_digit_and_letter(slice(text, s)))
}

pub(crate) fn bearer(text: &str, m: Range<usize>, s: Range<usize>) -> Option<Range<usize>> {
    let ok = !prev_char(text, m.start).is_some_and(is_alnum)
        && !next_char(text, s.end).is_some_and(is_token)
        && has_digit_and_letter(slice(text, &s));
    ok.then_some(s)
}

pub(crate) fn labelled(text: &str, m: Range<usize>, s: Range<usize>) -> Option<Range<usize>> {
    (!prev_char(text, m.start).is_some_and(is_alnum)).then_some(s)
}

/// URLs end before trailing sentence punctuation.
pub(crate) fn url_end(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    let trimmed = slice(text, &m).trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}']);
    Some(m.start..m.start + trimmed.len())
}

pub(crate) fn email(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    let value = slice(text, &m);
    let (local, domain) = value.rsplit_once('@')?;
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return None;
    }
    let labels_ok = domain
        .split('.')
        .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    if !labels_ok || next_char(text, m.end).is_some_and(|c| is_word(c) || c == '@') {
        return None;
    }
    // `scheme://user:pass@host` is a URL's user information, not an email
    // (the url_password detector owns it): look back through the current
    // whitespace-free run for `://` with only authority characters after it.
    let before = text.get(..m.start).unwrap_or("");
    let run_start = before
        .rfind(|c: char| c.is_whitespace())
        .map_or(0, |i| i + 1);
    let run = before.get(run_start..).unwrap_or("");
    if let Some(i) = run.rfind("://") {
        let authority = run.get(i + 3..).unwrap_or("");
        if !authority.contains(['/', '?', '#', '=', '&']) {
            return None;
        }
    }
    // The pattern's local part is ASCII (a Unicode class would bloat the
    // pre-filter); widen over accented Latin letters (`josé.núñez@…`) so
    // no piece of the address is left showing. CJK text glued before an
    // address is prose, not part of it.
    let widened = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| {
            (c.is_alphanumeric() && (c as u32) < 0x2E80) || matches!(c, '.' | '_' | '%' | '+' | '-')
        })
        .last()
        .map_or(m.start, |(i, _)| i);
    Some(widened..m.end)
}

pub(crate) fn phone_international(
    text: &str,
    m: Range<usize>,
    _s: Range<usize>,
) -> Option<Range<usize>> {
    if prev_char(text, m.start).is_some_and(|c| is_alnum(c) || c == '+') {
        return None;
    }
    // Greedy groups may take a following number (`+1 415 555 2671 2024`):
    // try every end right after a digit, longest first.
    let value = slice(text, &m);
    let ends = value
        .char_indices()
        .filter(|&(_, c)| c.is_ascii_digit())
        .map(|(i, _)| m.start + i + 1)
        .filter(|&end| !next_char(text, end).is_some_and(is_digit));
    let ends: Vec<usize> = ends.collect();
    ends.into_iter().rev().find_map(|end| {
        let r = m.start..end;
        let digits = slice(text, &r).bytes().filter(u8::is_ascii_digit).count();
        let open = slice(text, &r).matches('(').count();
        let close = slice(text, &r).matches(')').count();
        ((8..=15).contains(&digits) && open >= close).then_some(r)
    })
}

pub(crate) fn china_mobile(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    let ok = !prev_char(text, m.start).is_some_and(|c| is_alnum(c) || c == '+')
        && !next_char(text, m.end).is_some_and(is_digit);
    ok.then_some(m)
}

/// Candidate ends, longest first: the match end and every position right
/// after a digit group (before a separator). Greedy patterns may swallow a
/// following group (`4111 1111 1111 1111 2024`); the check tries shorter.
fn group_ends(text: &str, m: &Range<usize>) -> Vec<usize> {
    let value = slice(text, m);
    let mut ends: Vec<usize> = value
        .char_indices()
        .filter(|&(_, c)| c == ' ' || c == '-')
        .map(|(i, _)| m.start + i)
        .collect();
    ends.push(m.end);
    ends.reverse();
    ends
}

pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    !digits.is_empty() && sum.is_multiple_of(10)
}

pub(crate) fn credit_card(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    if prev_char(text, m.start).is_some_and(|c| is_alnum(c) || c == '.') {
        return None;
    }
    group_ends(text, &m).into_iter().find_map(|end| {
        let r = m.start..end;
        let v = slice(text, &r);
        let digits: Vec<u8> = v
            .bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect();
        // One kind of separator only: `4111-1111 1111-1111` is not a card.
        let mixed = v.contains(' ') && v.contains('-');
        let ok = (13..=19).contains(&digits.len())
            && !mixed
            && !next_char(text, end)
                .is_some_and(|c| is_alnum(c) || (c == '.' && is_digit_at(text, end + 1)))
            && luhn_valid(&digits);
        ok.then_some(r)
    })
}

fn is_digit_at(text: &str, at: usize) -> bool {
    next_char(text, at).is_some_and(is_digit)
}

/// IBAN lengths of the countries whose length is fixed and well known.
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AE", 23),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BR", 29),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NL", 18),
    ("NO", 15),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("SA", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VG", 24),
    ("XK", 20),
];

/// ISO 13616 check: move the first four characters to the end, letters to
/// 10..35, and the number mod 97 must be 1.
pub(crate) fn iban_valid(compact: &str) -> bool {
    let b = compact.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b.iter().all(u8::is_ascii_alphanumeric)
        || !b.iter().take(2).all(u8::is_ascii_uppercase)
        || !b.iter().skip(2).take(2).all(u8::is_ascii_digit)
    {
        return false;
    }
    let country = compact.get(..2).unwrap_or("");
    if let Some((_, len)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country) {
        if *len != b.len() {
            return false;
        }
    }
    let mut rem: u32 = 0;
    for &c in b.iter().skip(4).chain(b.iter().take(4)) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

pub(crate) fn iban(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    if prev_char(text, m.start).is_some_and(is_alnum) {
        return None;
    }
    group_ends(text, &m).into_iter().find_map(|end| {
        let r = m.start..end;
        let compact: String = slice(text, &r).chars().filter(|c| *c != ' ').collect();
        (!next_char(text, end).is_some_and(is_alnum) && iban_valid(&compact)).then_some(r)
    })
}

/// Province-level codes (the first two digits) in use.
#[rustfmt::skip]
const CN_PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91,
];

/// GB 11643-1999: province, a real birth date, and the ISO 7064 MOD 11-2
/// check character.
pub(crate) fn china_id_valid(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() != 18 || !b.iter().take(17).all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: Range<usize>| -> u32 {
        b.get(r)
            .unwrap_or(&[])
            .iter()
            .fold(0, |n, d| n * 10 + u32::from(d - b'0'))
    };
    let province = num(0..2);
    if !CN_PROVINCES.iter().any(|p| u32::from(*p) == province) {
        return false;
    }
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if chrono::NaiveDate::from_ymd_opt(year as i32, month, day).is_none()
        || !(1900..=2100).contains(&year)
    {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    let sum: u32 = b
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let expected = CHECK[(sum % 11) as usize];
    b.get(17)
        .is_some_and(|c| c.to_ascii_uppercase() == expected)
}

pub(crate) fn china_resident_id(
    text: &str,
    m: Range<usize>,
    _s: Range<usize>,
) -> Option<Range<usize>> {
    (free_edges(text, &m, is_alnum) && china_id_valid(slice(text, &m))).then_some(m)
}

pub(crate) fn ipv4(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    let octets_ok = slice(text, &m)
        .split('.')
        .all(|o| !(o.len() > 1 && o.starts_with('0')) && o.parse::<u16>().is_ok_and(|v| v <= 255));
    // Not part of a longer dotted number (1.2.3.4.5, a version 10.1.2.3.4)
    // nor glued to letters or digits (v1.2.3.4).
    let prev_bad = prev_char(text, m.start).is_some_and(|c| {
        is_alnum(c)
            || (c == '.'
                && text
                    .get(..m.start.saturating_sub(1))
                    .and_then(|s| s.chars().next_back())
                    .is_some_and(is_digit))
    });
    let next_bad = next_char(text, m.end)
        .is_some_and(|c| is_alnum(c) || (c == '.' && is_digit_at(text, m.end + 1)));
    (octets_ok && !prev_bad && !next_bad).then_some(m)
}

pub(crate) fn ipv6(text: &str, m: Range<usize>, _s: Range<usize>) -> Option<Range<usize>> {
    // The pattern is greedy and may run into the next word (`fe80::1:down`
    // takes `:d`): try the whole candidate, then cut before each `:` from
    // the right.
    let value = slice(text, &m);
    let cuts = value.match_indices(':').map(|(i, _)| i).rev();
    std::iter::once(value.len()).chain(cuts).find_map(|len| {
        let v = value.get(..len)?;
        let r = m.start..m.start + len;
        let groups = v.split(':').filter(|g| !g.is_empty()).count();
        let edge = |c: char| is_alnum(c) || c == ':' || c == '_';
        let next_ok = match next_char(text, r.end) {
            // A single `:` after the address is punctuation, `::` is not.
            Some(':') => {
                !text.get(r.end..).is_some_and(|t| t.starts_with("::"))
                    && !next_char(text, r.end + 1).is_some_and(is_alnum)
            }
            Some(c) => !edge(c),
            None => true,
        };
        let ok = groups >= 2
            && !prev_char(text, r.start).is_some_and(edge)
            && next_ok
            && v.parse::<std::net::Ipv6Addr>().is_ok();
        ok.then_some(r)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_valid(&digits("4111111111111111")));
        assert!(luhn_valid(&digits("378282246310005")));
        assert!(!luhn_valid(&digits("4111111111111112")));
        assert!(!luhn_valid(&[]));
    }

    #[test]
    fn iban_mod97() {
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(!iban_valid("GB82WEST12345698765433"));
        // Right checksum shape but wrong length for the country.
        assert!(!iban_valid("GB82WEST1234569876543"));
        assert!(!iban_valid("gb82WEST12345698765432"));
    }

    #[test]
    fn china_id_checksum() {
        assert!(china_id_valid("11010519491231002X"));
        assert!(!china_id_valid("110105194912310029"));
        assert!(!china_id_valid("440524188001010014"), "year < 1900");
        assert!(!china_id_valid("110105194913310021"), "month 13");
        assert!(!china_id_valid("99010519491231002X"), "no province 99");
    }

    fn digits(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }
}
