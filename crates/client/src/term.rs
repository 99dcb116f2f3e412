//! Text from the cluster as it may reach a terminal.
//!
//! Error messages, resource names, labels and descriptions come from the
//! proxy, the auth service, agents and Azure tags: any of them may be hostile.
//! A control character (ESC starts the sequences that recolour, clear the
//! screen, set the window title or, on some terminals, answer back into the
//! input) must never be printed raw, so tsh and tctl pass every piece of
//! server-sent text through one of these functions before printing it.

use std::borrow::Cow;

/// `text` with every control character shown escaped (`\u{1b}`, `\r`, ...),
/// keeping only line feeds and tabs: for messages and multi-line text
/// (`ERROR: ...`).
pub fn printable(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// `text` with every control character shown escaped, line feeds and tabs
/// included: for one cell of a table or one field of a line.
pub fn cell(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// The line tsh and tctl print for an error: `ERROR: ` and the message with
/// its control characters escaped (see [`printable`]).
pub fn error_line(message: &str) -> String {
    format!("ERROR: {}", printable(message))
}

/// Serialized JSON whose strings may carry the control characters serde_json
/// leaves raw (DEL and the C1 range U+0080..U+009F, among them the one-byte
/// CSI U+009B): each becomes a JSON `\u00XX` escape, so the text is the same
/// JSON document and nothing reaches the terminal raw. Structural JSON is
/// ASCII, so such characters can only be inside strings.
pub fn json(text: String) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
    {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && !matches!(c, '\n' | '\t') {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| c.is_control() && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() && !keep(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Text from agents and Azure tags reaches a table without its control characters.
    #[test]
    fn table_cells_carry_no_control_characters() {
        assert_eq!(cell("env=dev"), "env=dev");
        let shown = cell("\u{1b}]0;pwned\u{7}\u{1b}[2Jx\ry\n\u{9b}2J");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert_eq!(shown, "\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jx\\ry\\n\\u{9b}2J");
    }

    /// Messages keep their lines and tabs, nothing else.
    #[test]
    fn messages_keep_only_line_feeds_and_tabs() {
        let shown = error_line("bad\tthing\n\u{1b}[31mred\u{7f}\r");
        assert_eq!(shown, "ERROR: bad\tthing\n\\u{1b}[31mred\\u{7f}\\r");
        assert!(matches!(printable("plain\ntext"), Cow::Borrowed(_)));
    }

    /// JSON output stays the same document with its C1 characters escaped.
    #[test]
    fn json_output_escapes_what_serde_json_leaves_raw() {
        let value = serde_json::json!({"name": "a\u{1b}b\u{9b}2J\u{7f}", "n": 1});
        let raw = serde_json::to_string_pretty(&value).unwrap();
        assert!(raw.contains('\u{9b}'), "serde_json leaves C1 raw: {raw:?}");
        let shown = json(raw);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }

    /// YAML output (serde_yaml_ng) already escapes every control character
    /// in double quotes.
    #[test]
    fn yaml_output_carries_no_raw_control_characters() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let value =
                serde_json::json!({"name": format!("a{c}b"), "labels": {format!("k{c}"): "v"}});
            let text = serde_yaml_ng::to_string(&value).unwrap();
            assert!(
                !text.chars().any(|x| x.is_control() && x != '\n'),
                "U+{:04X}: {text:?}",
                u32::from(c)
            );
            let back: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
            assert_eq!(back, value, "U+{:04X}", u32::from(c));
        }
    }
}
