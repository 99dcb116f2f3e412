//! Bounds on the text an agent announces about what it serves (apps and
//! databases in heartbeats): names, descriptions, labels and addresses reach
//! users' terminals through `tsh apps ls`, `tsh db ls` and `tctl get`, so the
//! auth service refuses control characters in them and bounds their sizes.
//!
//! The limits are Teleport-like and roomy enough for Azure tags (at most 50
//! per resource, values of at most 256 characters):
//! a label key is 1 to [`MAX_LABEL_KEY`] bytes, a value at most
//! [`MAX_LABEL_VALUE`] bytes, a resource has at most [`MAX_LABELS`] labels
//! (static and dynamic together), a description is at most
//! [`MAX_DESCRIPTION`] bytes.

use std::collections::BTreeMap;

use crate::{App, CommandLabel, Database, Metadata};

/// Longest label key, in bytes.
pub const MAX_LABEL_KEY: usize = 256;
/// Longest label value (and dynamic label result), in bytes.
pub const MAX_LABEL_VALUE: usize = 1024;
/// Most labels, static and dynamic together, on one app or database.
pub const MAX_LABELS: usize = 256;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest single-line field (URIs, addresses, server names, Azure names and IDs).
pub const MAX_FIELD: usize = 2048;
/// Longest PEM text (a CA bundle).
pub const MAX_PEM: usize = 64 * 1024;
/// Most arguments of a dynamic label command, and the longest one in bytes.
pub const MAX_COMMAND_ARGS: usize = 64;
/// Longest argument of a dynamic label command, in bytes.
pub const MAX_COMMAND_ARG: usize = 1024;

/// One line of text of at most `max` bytes without control characters.
fn line(what: &str, text: &str, max: usize) -> Result<(), String> {
    if text.len() > max {
        return Err(format!(
            "{what} is {} bytes long (at most {max})",
            text.len()
        ));
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        let shown: String = text.chars().take(64).collect();
        return Err(format!(
            "{what} {shown:?} carries the control character {c:?}"
        ));
    }
    Ok(())
}

/// A label as it may be announced: a key of 1 to [`MAX_LABEL_KEY`] bytes and a value of
/// at most [`MAX_LABEL_VALUE`] bytes, neither with control characters.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a label key is empty".into());
    }
    line("label key", key, MAX_LABEL_KEY)?;
    line(&format!("label {key:?}"), value, MAX_LABEL_VALUE)
}

fn check_metadata(m: &Metadata, dynamic: &BTreeMap<String, CommandLabel>) -> Result<(), String> {
    line("name", &m.name, MAX_FIELD)?;
    line("description", &m.description, MAX_DESCRIPTION)?;
    if m.labels.len() + dynamic.len() > MAX_LABELS {
        return Err(format!(
            "{} labels (at most {MAX_LABELS}, static and dynamic together)",
            m.labels.len() + dynamic.len()
        ));
    }
    for (k, v) in &m.labels {
        check_label(k, v)?;
    }
    for (k, l) in dynamic {
        check_label(k, &l.result)?;
        if l.command.len() > MAX_COMMAND_ARGS {
            return Err(format!(
                "dynamic label {k:?} has {} command arguments (at most {MAX_COMMAND_ARGS})",
                l.command.len()
            ));
        }
        for a in &l.command {
            line(
                &format!("dynamic label {k:?} command argument"),
                a,
                MAX_COMMAND_ARG,
            )?;
        }
    }
    Ok(())
}

/// PEM text: lines (`\n`, `\r\n`) of printable text, at most [`MAX_PEM`] bytes.
fn pem(what: &str, text: &str) -> Result<(), String> {
    if text.len() > MAX_PEM {
        return Err(format!(
            "{what} is {} bytes long (at most {MAX_PEM})",
            text.len()
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(format!("{what} carries control characters"));
    }
    Ok(())
}

impl App {
    /// The text an agent announces about this app is fit to show: see the module.
    pub fn check_served_text(&self) -> Result<(), String> {
        check_metadata(&self.metadata, &self.spec.dynamic_labels)
            .and_then(|()| line("uri", &self.spec.uri, MAX_FIELD))
            .and_then(|()| line("public_addr", &self.spec.public_addr, MAX_FIELD))
    }
}

impl Database {
    /// The text an agent announces about this database is fit to show: see the module.
    pub fn check_served_text(&self) -> Result<(), String> {
        check_metadata(&self.metadata, &self.spec.dynamic_labels)?;
        line("protocol", &self.spec.protocol, MAX_FIELD)?;
        line("uri", &self.spec.uri, MAX_FIELD)?;
        if let Some(ca) = &self.spec.ca_cert {
            pem("ca_cert", ca)?;
        }
        if let Some(tls) = &self.spec.tls {
            line("tls.mode", &tls.mode, MAX_FIELD)?;
            line("tls.server_name", &tls.server_name, MAX_FIELD)?;
            pem("tls.ca_cert", &tls.ca_cert)?;
        }
        if let Some(azure) = &self.spec.azure {
            line("azure.name", &azure.name, MAX_FIELD)?;
            line("azure.resource_id", &azure.resource_id, MAX_FIELD)?;
        }
        Ok(())
    }
}

/// A command's output as a dynamic label value: surrounding whitespace
/// trimmed, line breaks and tabs inside made single spaces, other control
/// characters (an escape sequence's ESC) shown as U+FFFD, at most 256
/// characters (so at most [`MAX_LABEL_VALUE`] bytes).
pub fn label_from_output(output: &str) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = false;
    for c in output.trim().chars() {
        if count == 256 {
            break;
        }
        let c = match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{fffd}',
            c => c,
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
        count += 1;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_free_of_control_characters() {
        assert!(check_label("env", "prod").is_ok());
        assert!(check_label("Cost Center", "Finance & Ops").is_ok());
        assert!(check_label("", "x").is_err());
        assert!(check_label("k\u{1b}[31m", "x").is_err());
        assert!(check_label("k", "v\nforged").is_err());
        assert!(check_label("k", "v\u{9b}2J").is_err());
        assert!(check_label(&"k".repeat(MAX_LABEL_KEY), &"v".repeat(MAX_LABEL_VALUE)).is_ok());
        assert!(check_label(&"k".repeat(MAX_LABEL_KEY + 1), "v").is_err());
        assert!(check_label("k", &"v".repeat(MAX_LABEL_VALUE + 1)).is_err());
    }

    #[test]
    fn command_output_becomes_one_clean_line() {
        assert_eq!(label_from_output("x86_64\n"), "x86_64");
        assert_eq!(label_from_output(" a\r\n\tb \n"), "a b");
        assert_eq!(
            label_from_output("\u{1b}]0;owned\u{7}ok"),
            "\u{fffd}]0;owned\u{fffd}ok"
        );
        let long = label_from_output(&"\u{10348}".repeat(1000));
        assert_eq!(long.chars().count(), 256);
        assert!(long.len() <= MAX_LABEL_VALUE);
        assert!(check_label("k", &label_from_output("a\u{0}b\u{7f}\u{85}c\n")).is_ok());
    }
}
