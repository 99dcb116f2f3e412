//! Output formats of listings (`--format text|json|yaml`), shared by tsh and
//! tctl: one enum, so every listing refuses the same other values with the
//! same list of valid ones, and one JSON/YAML printer, so both binaries
//! carry the same fields in the same order.
//!
//! The printer drops what storage leaves behind (`null` fields, the
//! backend's `metadata.revision`): a listing shows resources as a user
//! writes them, not as the backend keeps them.

use serde::Serialize;
use serde_json::Value;

/// Output format of a listing (`--format` / `-f`); clap refuses any other
/// value and lists these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table (or the command's own text), for people.
    #[default]
    Text,
    /// Pretty-printed JSON.
    Json,
    /// YAML.
    Yaml,
}

/// A value that could not be written as JSON or YAML.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// serde_json refused the value.
    #[error("cannot write the listing as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// serde_yaml_ng refused the value.
    #[error("cannot write the listing as YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// `value` without storage leftovers: `null` fields of objects are dropped
/// at every depth, and so is `revision` inside a `metadata` object (the
/// backend's, meaningless to a reader and different on every write).
pub fn clean(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("metadata", Value::Object(mut meta)) => {
                            meta.remove("revision");
                            Value::Object(meta)
                        }
                        (_, v) => v,
                    };
                    (k, clean(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
        other => other,
    }
}

/// `value` as one JSON or YAML document (a listing of tsh: a JSON array or
/// object, a YAML sequence or mapping), ending with a line feed; `None` for
/// [`Format::Text`], whose text each command writes itself. Strings keep
/// their control characters escaped in both (see [`crate::term::json`]).
pub fn document<T: Serialize>(value: &T, format: Format) -> Result<Option<String>, FormatError> {
    let value = clean(serde_json::to_value(value)?);
    Ok(match format {
        Format::Text => None,
        Format::Json => Some(json(&value)?),
        Format::Yaml => Some(serde_yaml_ng::to_string(&value)?),
    })
}

/// Resources as tctl prints them (`tctl get`, `tctl users ls -f yaml`, ...):
/// JSON as one array, YAML as one document per resource separated by
/// `---` (ready for `tctl create`), text as `kind name` lines.
pub fn resources(items: &[Value], format: Format) -> Result<String, FormatError> {
    let items: Vec<Value> = items.iter().cloned().map(clean).collect();
    Ok(match format {
        Format::Json => json(&Value::Array(items))?,
        Format::Yaml => {
            let mut out = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                out.push_str(&serde_yaml_ng::to_string(item)?);
            }
            out
        }
        Format::Text => {
            let mut out = String::new();
            for item in &items {
                let field = |v: &Value| crate::term::cell(v.as_str().unwrap_or("")).into_owned();
                out.push_str(&field(&item["kind"]));
                out.push(' ');
                out.push_str(&field(&item["metadata"]["name"]));
                out.push('\n');
            }
            out
        }
    })
}

/// The leaves of a command tree with their paths (`db ls`, `status`): for
/// the checks, generated from clap's tree, that every listing takes
/// `--format`.
pub fn leaf_commands(cmd: &clap::Command) -> Vec<(String, clap::Command)> {
    let mut out = Vec::new();
    let mut stack: Vec<(String, &clap::Command)> = vec![(String::new(), cmd)];
    while let Some((path, cmd)) = stack.pop() {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name()).trim().to_string();
            if sub.get_subcommands().next().is_none() {
                out.push((p, sub.clone()));
            } else {
                stack.push((p, sub));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The values `--format` of `cmd` accepts (`None`: it has no `--format`).
pub fn format_values(cmd: &clap::Command) -> Option<Vec<String>> {
    let arg = cmd.get_arguments().find(|a| a.get_id() == "format")?;
    Some(
        arg.get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect(),
    )
}

/// Pretty JSON with a final line feed, control characters escaped.
fn json(value: &Value) -> Result<String, FormatError> {
    let mut text = crate::term::json(serde_json::to_string_pretty(value)?);
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::ValueEnum;
    use serde_json::json;

    #[test]
    fn the_formats_are_text_json_yaml() {
        let names: Vec<String> = Format::value_variants()
            .iter()
            .filter_map(|f| f.to_possible_value())
            .map(|v| v.get_name().to_string())
            .collect();
        assert_eq!(names, ["text", "json", "yaml"]);
        assert!(Format::from_str("bogus", true).is_err());
        assert_eq!(Format::default(), Format::Text);
    }

    #[test]
    fn storage_leftovers_are_dropped() {
        let v = json!({
            "kind": "app",
            "metadata": {"name": "a", "revision": "7", "expires": null},
            "spec": {"cloud": null, "uri": "x", "list": [{"k": null, "v": 1}]},
            "labels": {"revision": "kept outside metadata"},
        });
        let c = clean(v);
        assert_eq!(
            c,
            json!({
                "kind": "app",
                "metadata": {"name": "a"},
                "spec": {"uri": "x", "list": [{"v": 1}]},
                "labels": {"revision": "kept outside metadata"},
            })
        );
        let yaml = document(&c, Format::Yaml).unwrap().unwrap();
        assert!(
            !yaml.contains("null") && !yaml.contains("revision: '7'"),
            "{yaml}"
        );
    }

    #[test]
    fn json_and_yaml_carry_the_same_fields_in_the_same_order() {
        let v = json!({"zeta": 1, "alpha": {"b": "x", "a": "y"}, "mid": [1, 2]});
        let j = document(&v, Format::Json).unwrap().unwrap();
        let y = document(&v, Format::Yaml).unwrap().unwrap();
        let from_yaml: Value = serde_yaml_ng::from_str(&y).unwrap();
        let from_json: Value = serde_json::from_str(&j).unwrap();
        assert_eq!(from_json, from_yaml);
        let keys = |t: &str, names: &[&str]| -> Vec<usize> {
            names.iter().map(|n| t.find(n).unwrap()).collect()
        };
        // serde_json's maps are sorted: the same order in both, whatever the input's.
        let order = ["alpha", "mid", "zeta"];
        let (jk, yk) = (keys(&j, &order), keys(&y, &order));
        assert!(jk.windows(2).all(|w| w[0] < w[1]), "{j}");
        assert!(yk.windows(2).all(|w| w[0] < w[1]), "{y}");
        assert!(document(&v, Format::Text).unwrap().is_none());
    }

    #[test]
    fn control_characters_never_reach_the_terminal_raw() {
        let v = json!([{"kind": "app", "metadata": {"name": "a\u{1b}[2J\u{9b}"}}]);
        for f in [Format::Json, Format::Yaml, Format::Text] {
            let out = resources(v.as_array().unwrap(), f).unwrap();
            assert!(
                !out.chars().any(|c| c.is_control() && c != '\n'),
                "{f:?}: {out:?}"
            );
        }
    }

    #[test]
    fn tctl_yaml_is_one_document_per_resource() {
        let items = [json!({"kind": "role"}), json!({"kind": "user"})];
        assert_eq!(
            resources(&items, Format::Yaml).unwrap(),
            "kind: role\n---\nkind: user\n"
        );
        assert_eq!(resources(&[], Format::Json).unwrap(), "[]\n");
    }
}
