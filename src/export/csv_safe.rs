//! CSV formula-injection neutralisation: a text cell that a spreadsheet
//! would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
//! carriage return) gets a leading `'`, which Excel, LibreOffice and Google
//! Sheets treat as "this is text". It owns only that rule.
//!
//! Apply it to text cells after masking (a masked value can start a cell
//! with one of these characters, and masking must see the original text),
//! and never to numeric cells: `-5` written as a number is not a formula.

use std::borrow::Cow;

/// Characters that make a spreadsheet evaluate a cell (OWASP "CSV Injection").
pub const FORMULA_TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a spreadsheet could evaluate `cell` as a formula.
pub fn needs_neutralizing(cell: &str) -> bool {
    cell.starts_with(FORMULA_TRIGGERS)
}

/// `cell` with a leading `'` when it would start a formula; borrowed otherwise.
pub fn neutralize(cell: &str) -> Cow<'_, str> {
    if needs_neutralizing(cell) {
        let mut out = String::with_capacity(cell.len() + 1);
        out.push('\'');
        out.push_str(cell);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_starts_get_a_quote() {
        for cell in [
            "=1+1",
            "=HYPERLINK(\"http://x\",\"y\")",
            "+SUM(A1)",
            "-2+3",
            "@cmd",
            "\tx",
            "\r=1",
        ] {
            let out = neutralize(cell);
            assert_eq!(out, format!("'{cell}"));
            assert!(matches!(out, Cow::Owned(_)));
        }
    }

    #[test]
    fn other_cells_are_borrowed_unchanged() {
        for cell in [
            "",
            "plain",
            "1=1",
            " =1",
            "'=1",
            "a-b",
            "email@x.io",
            "[REDACTED:email]",
            "中文=1",
        ] {
            let out = neutralize(cell);
            assert_eq!(out, cell);
            assert!(matches!(out, Cow::Borrowed(_)));
        }
    }

    #[test]
    fn applies_after_masking() {
        // A masked value can begin a cell with a trigger: partial masking of
        // `-----BEGIN…` keeps the leading dashes.
        use crate::export::mask::{MaskConfig, MaskMode, Masker};
        let m = Masker::new(MaskConfig::default().with_mode(MaskMode::Partial {
            keep_start: 4,
            keep_end: 4,
        }));
        let masked =
            m.mask("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----");
        assert!(masked.starts_with('-'));
        assert!(neutralize(&masked).starts_with("'-"));
    }
}
