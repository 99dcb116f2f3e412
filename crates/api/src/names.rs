//! The one host-name parser: RFC 1123 names (letters, digits and `-` in dot-separated labels of 1
//! to 63 characters, at most 253 in all, no label starting or ending with `-`), plus a rule for the
//! last label, which decides whether the name can be mistaken for an IPv4 address.
//!
//! Pure text checks (std only). Callers choose the last-label rule: host certificates
//! (`pki::names`) accept names whose last label starts with a digit (UUID host IDs) as long as it
//! is not a number; addresses a client names for dialling (`azure_endpoints::authority`) require a
//! letter.

use std::fmt;

/// Longest host name (RFC 1123 2.1, without a trailing dot).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest label.
pub const MAX_LABEL_LEN: usize = 63;

/// What the last label of a host name must be, so that the name is not read as an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastLabel {
    /// Anything but a number as URL parsers and TLS clients read the last label of an IPv4
    /// address: decimal digits, or `0x`/`0X` and hex digits (`5`, `127.1`, `0x7f.1`, `host.0x`).
    /// `1a` and UUIDs are accepted (the WHATWG URL "ends in a number" rule).
    NotNumeric,
    /// Starts with a letter (so `127.1`, `0x7f000001` and `2130706433` are all refused).
    StartsWithLetter,
}

/// Why text is not a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostNameError {
    /// Nothing was given.
    Empty,
    /// Longer than [`MAX_HOST_NAME_LEN`].
    TooLong,
    /// Two dots in a row, or a leading or trailing dot.
    EmptyLabel,
    /// A label longer than [`MAX_LABEL_LEN`].
    LabelTooLong,
    /// A label with characters other than ASCII letters, digits and `-`.
    Character,
    /// A label starting or ending with `-`.
    Hyphen,
    /// The last label breaks the [`LastLabel`] rule asked for.
    LastLabel(LastLabel),
}

impl HostNameError {
    /// The reason in words.
    pub fn reason(self) -> &'static str {
        match self {
            HostNameError::Empty => "empty",
            HostNameError::TooLong => "longer than 253 characters",
            HostNameError::EmptyLabel => "an empty label",
            HostNameError::LabelTooLong => "a label longer than 63 characters",
            HostNameError::Character => {
                "a label with characters other than letters, digits and '-'"
            }
            HostNameError::Hyphen => "a label starting or ending with '-'",
            HostNameError::LastLabel(LastLabel::NotNumeric) => {
                "the last label is a number (it could be read as an IP address)"
            }
            HostNameError::LastLabel(LastLabel::StartsWithLetter) => {
                "the last label does not start with a letter (it could be read as an IP address)"
            }
        }
    }
}

impl fmt::Display for HostNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HostNameError {}

/// Checks that `name` is an RFC 1123 host name (ASCII, any case, no trailing dot: a caller that
/// accepts one strips it first) whose last label follows `last`. Labels are checked in order,
/// each for emptiness, length, characters, then hyphens; the last-label rule comes after them.
pub fn check_host_name(name: &str, last: LastLabel) -> Result<(), HostNameError> {
    if name.is_empty() {
        return Err(HostNameError::Empty);
    }
    if name.len() > MAX_HOST_NAME_LEN {
        return Err(HostNameError::TooLong);
    }
    let mut last_label = "";
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostNameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostNameError::LabelTooLong);
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(HostNameError::Character);
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(HostNameError::Hyphen);
        }
        last_label = label;
    }
    let ok = match last {
        LastLabel::NotNumeric => !is_numeric_label(last_label),
        LastLabel::StartsWithLetter => last_label.starts_with(|c: char| c.is_ascii_alphabetic()),
    };
    if !ok {
        return Err(HostNameError::LastLabel(last));
    }
    Ok(())
}

/// Whether `label` is a number as URL parsers and TLS clients read the last label of an IPv4
/// address: decimal digits, or `0x` and hex digits (none at all included).
fn is_numeric_label(label: &str) -> bool {
    match label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use LastLabel::{NotNumeric, StartsWithLetter};

    #[test]
    fn rfc_1123_labels_under_either_rule() {
        for rule in [NotNumeric, StartsWithLetter] {
            for ok in ["a", "node-1", "vm.example.com", "A.B", "x1.y-z.com"] {
                assert_eq!(check_host_name(ok, rule), Ok(()), "{ok} {rule:?}");
            }
            let cases: &[(&str, HostNameError)] = &[
                ("", HostNameError::Empty),
                ("a..b", HostNameError::EmptyLabel),
                (".a", HostNameError::EmptyLabel),
                ("a.", HostNameError::EmptyLabel),
                ("a_b", HostNameError::Character),
                ("a b", HostNameError::Character),
                ("é.com", HostNameError::Character),
                ("a/b", HostNameError::Character),
                ("a@b", HostNameError::Character),
                ("-a", HostNameError::Hyphen),
                ("a-", HostNameError::Hyphen),
                ("a.-b.com", HostNameError::Hyphen),
            ];
            for (bad, why) in cases {
                assert_eq!(check_host_name(bad, rule), Err(*why), "{bad:?} {rule:?}");
            }
            let long_label = format!("{}.com", "x".repeat(64));
            assert_eq!(
                check_host_name(&long_label, rule),
                Err(HostNameError::LabelTooLong)
            );
            assert_eq!(
                check_host_name(&format!("{}.com", "x".repeat(63)), rule),
                Ok(())
            );
            // 253 characters is the most; 254 is refused however well-formed its labels.
            let at_most = format!("{}com", "abcdefgh.".repeat(250 / 9)) + &"x".repeat(250 % 9);
            assert_eq!(at_most.len(), 253);
            assert_eq!(check_host_name(&at_most, rule), Ok(()));
            assert_eq!(
                check_host_name(&format!("a{at_most}"), rule),
                Err(HostNameError::TooLong)
            );
        }
    }

    #[test]
    fn the_last_label_rule_is_the_callers() {
        // Numbers as IPv4 parsers read them: refused by both rules.
        for numeric in [
            "5",
            "127.1",
            "010.0.0.4",
            "0x7f.1",
            "host.0x",
            "vm.123",
            "2130706433",
        ] {
            for rule in [NotNumeric, StartsWithLetter] {
                assert_eq!(
                    check_host_name(numeric, rule),
                    Err(HostNameError::LastLabel(rule)),
                    "{numeric} {rule:?}"
                );
            }
        }
        // Starting with a digit without being a number: a UUID host ID, `1a`, `0xg`.
        for digit_first in [
            "12345678-1234-1234-1234-123456789012",
            "1a",
            "0xg",
            "a.0x7g",
        ] {
            assert_eq!(
                check_host_name(digit_first, NotNumeric),
                Ok(()),
                "{digit_first}"
            );
            assert_eq!(
                check_host_name(digit_first, StartsWithLetter),
                Err(HostNameError::LastLabel(StartsWithLetter)),
                "{digit_first}"
            );
        }
        // Only the last label is held to the rule.
        assert_eq!(check_host_name("123.vm-1", StartsWithLetter), Ok(()));
        assert_eq!(check_host_name("0x7f.example", NotNumeric), Ok(()));
    }
}
