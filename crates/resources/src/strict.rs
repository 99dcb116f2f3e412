//! Strict decoding: every struct of a resource (and of `teleport.yaml`, which uses these
//! helpers too) refuses keys it does not know, at every depth, because a dropped key is a
//! dropped rule (`deny: {azure_identitie: ['*']}` would silently remove a denial).
//!
//! The structs say `#[serde(deny_unknown_fields)]`; this module tracks the path of the value
//! being decoded (with `serde_path_to_error`) and turns serde's "unknown field" error into one
//! that names the key's full path, suggests a close valid key and lists the valid ones.

use serde::de::DeserializeSeed;
use serde_path_to_error::{Path, Segment, Track};

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// The steps of a tracked path.
pub(crate) fn steps(path: &Path) -> Vec<Step> {
    path.iter()
        .map(|s| match s {
            Segment::Seq { index } => Step::Index(*index),
            Segment::Map { key } | Segment::Enum { variant: key } => Step::Key(key.clone()),
            _ => Step::Key("?".to_string()),
        })
        .collect()
}

/// `spec.allow.rules[0].verbs`; empty for the root.
pub(crate) fn render(steps: &[Step]) -> String {
    render_with(steps, false)
}

/// [`render`], with every sequence index as `[*]` when `any_index`
/// (`spec.allow.rules[*].verbs`).
pub(crate) fn render_with(steps: &[Step], any_index: bool) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(_) if any_index => out.push_str("[*]"),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Decodes with `seed` from `de`, keeping the path of the value that failed.
pub(crate) fn decode_seed<'de, D, S>(de: D, seed: S) -> Result<S::Value, (Vec<Step>, D::Error)>
where
    D: serde::Deserializer<'de>,
    S: DeserializeSeed<'de>,
{
    let mut track = Track::new();
    let result = seed.deserialize(serde_path_to_error::Deserializer::new(de, &mut track));
    result.map_err(|e| (steps(&track.path()), e))
}

/// The key and the valid keys of serde's `unknown field `k`, expected one of `a`, `b``
/// (or `expected `a``, or `there are no fields`), wherever it appears in `raw`.
fn unknown_field(raw: &str) -> Option<(String, Vec<String>)> {
    const MARK: &str = "unknown field `";
    let start = raw.find(MARK)? + MARK.len();
    let rest = &raw[start..];
    let end = rest.find('`')?;
    let key = rest[..end].to_string();
    let after = &rest[end + 1..];
    let mut valid = Vec::new();
    if let Some(list) = after.strip_prefix(", expected ") {
        // Backticked names: "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
        let mut parts = list.split('`');
        parts.next();
        for (i, part) in parts.enumerate() {
            if i % 2 == 0 {
                valid.push(part.to_string());
            } else if part != ", " && part != " or " {
                break;
            }
        }
    }
    Some((key, valid))
}

/// Levenshtein distance (the strings are short keys).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The valid key closest to `key`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(key: &str, valid: &'a [String]) -> Option<&'a str> {
    let lower = key.to_ascii_lowercase();
    let limit = (key.chars().count() / 3).max(1);
    valid
        .iter()
        .map(|v| (distance(&lower, &v.to_ascii_lowercase()), v))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v.as_str())
}

/// A decode error's message: for an unknown key, the key's full path, a close valid key and
/// the valid keys; otherwise `path: what`. `raw` is the decoder's text without position.
pub(crate) fn explain(steps: &[Step], raw: &str) -> String {
    let path = render(steps);
    if let Some((key, valid)) = unknown_field(raw) {
        let parent = match steps.split_last() {
            Some((Step::Key(k), parent)) if *k == key => render(parent),
            _ => path.clone(),
        };
        let full = if parent.is_empty() {
            key.clone()
        } else {
            format!("{parent}.{key}")
        };
        let parent_steps = match steps.split_last() {
            Some((Step::Key(k), parent)) if *k == key => parent,
            _ => steps,
        };
        let hint = if teleport_only(parent_steps, &key) {
            " (a Teleport setting this build does not support: remove it)".to_string()
        } else {
            did_you_mean(&key, &valid)
                .map(|v| format!(" (did you mean `{v}`?)"))
                .unwrap_or_default()
        };
        let place = if parent.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in `{parent}`")
        };
        let list = if valid.is_empty() {
            "none".to_string()
        } else {
            valid.join(", ")
        };
        return format!("unknown key `{full}`{hint}; the valid keys {place} are: {list}");
    }
    let bare = strip_path_prefix(raw, steps);
    if path.is_empty() {
        bare.to_string()
    } else {
        format!("{path}: {bare}")
    }
}

/// Keys Teleport reads in a place (`[*]` for any index) that this build does not: they are
/// refused like any unknown key, and the error says so instead of suggesting a typo fix.
const TELEPORT_ONLY: &[(&str, &[&str])] = &[
    ("metadata", &["namespace", "id"]),
    (
        "spec.options",
        &[
            "cert_format",
            "create_host_user",
            "create_host_user_mode",
            "create_db_user",
            "create_db_user_mode",
            "create_desktop_user",
            "desktop_clipboard",
            "desktop_directory_sharing",
            "device_trust_mode",
            "enhanced_recording",
            "idp",
            "lock",
            "max_connections",
            "max_kubernetes_connections",
            "max_sessions",
            "permit_x11_forwarding",
            "pin_source_ip",
            "port_forwarding",
            "ssh_port_forwarding",
            "record_session",
            "require_session_mfa",
            "ssh_file_copy",
        ],
    ),
    ("spec.allow", ROLE_CONDITIONS),
    ("spec.deny", ROLE_CONDITIONS),
    (
        "teleport",
        &[
            "diag_addr",
            "pid_file",
            "advertise_ip",
            "cache",
            "connection_limits",
            "debug_service",
        ],
    ),
    (
        "auth_service",
        &[
            "public_addr",
            "session_recording",
            "client_idle_timeout",
            "disconnect_expired_cert",
            "message_of_the_day",
            "license_file",
            "keep_alive_interval",
            "keep_alive_count_max",
            "routing_strategy",
            "tunnel_strategy",
        ],
    ),
    (
        "proxy_service",
        &[
            "listen_addr",
            "ssh_public_addr",
            "tunnel_public_addr",
            "kube_listen_addr",
            "kube_public_addr",
            "mysql_listen_addr",
            "postgres_listen_addr",
            "mongo_listen_addr",
            "https_key_file",
            "https_cert_file",
            "trust_x_forwarded_for",
            "ui",
        ],
    ),
    (
        "app_service.apps[*]",
        &["insecure_skip_verify", "rewrite", "aws", "cors"],
    ),
    (
        "ssh_service",
        &[
            "listen_addr",
            "public_addr",
            "labels",
            "commands",
            "pam",
            "enhanced_recording",
        ],
    ),
];

const ROLE_CONDITIONS: &[&str] = &[
    "request",
    "review_requests",
    "impersonate",
    "join_sessions",
    "require_session_join",
    "host_groups",
    "host_sudoers",
    "kubernetes_resources",
    "kubernetes_labels_expression",
    "node_labels_expression",
    "db_service_labels",
    "db_permissions",
    "cluster_labels",
    "windows_desktop_labels",
    "group_labels",
    "desktop_groups",
    "account_assignments",
    "github_permissions",
    "spiffe",
];

fn teleport_only(parent: &[Step], key: &str) -> bool {
    let pattern = render_with(parent, true);
    TELEPORT_ONLY
        .iter()
        .any(|(place, keys)| *place == pattern && keys.contains(&key))
}

/// Drops the path serde_yaml_ng puts in front of its messages (the failing value's path or
/// one of its parents'), since [`explain`] writes the full one.
fn strip_path_prefix<'a>(raw: &'a str, steps: &[Step]) -> &'a str {
    for n in (1..=steps.len()).rev() {
        let prefix = render(&steps[..n]);
        if let Some(rest) = raw.strip_prefix(&prefix).and_then(|r| r.strip_prefix(": ")) {
            return rest;
        }
    }
    raw
}

/// Removes a trailing ` at line N column M` (the position is reported on its own).
pub(crate) fn strip_position(text: &str) -> String {
    if let Some(i) = text.rfind(" at line ") {
        let tail = &text[i + " at line ".len()..];
        let mut it = tail.splitn(2, " column ");
        let line_ok = it
            .next()
            .is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
        let col_ok = it
            .next()
            .is_some_and(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
        if line_ok && col_ok {
            return text[..i].to_string();
        }
    }
    text.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_serde_messages() {
        let (k, v) =
            unknown_field("unknown field `clod`, expected one of `name`, `uri`, `cloud`").unwrap();
        assert_eq!(k, "clod");
        assert_eq!(v, ["name", "uri", "cloud"]);
        let (_, v) = unknown_field("unknown field `x`, expected `time` or `user`").unwrap();
        assert_eq!(v, ["time", "user"]);
        let (k, v) = unknown_field("unknown field `x`, expected `name`").unwrap();
        assert_eq!((k.as_str(), v), ("x", vec!["name".to_string()]));
        let (_, v) = unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(v.is_empty());
        assert!(unknown_field("missing field `name`").is_none());
    }

    #[test]
    fn suggestions() {
        let valid: Vec<String> = ["azure_identities", "app_labels", "logins"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            did_you_mean("azure_identitie", &valid),
            Some("azure_identities")
        );
        assert_eq!(did_you_mean("app_label", &valid), Some("app_labels"));
        assert_eq!(did_you_mean("Logins", &valid), Some("logins"));
        assert_eq!(did_you_mean("zz_unknown", &valid), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn messages() {
        let steps = vec![
            Step::Key("spec".into()),
            Step::Key("deny".into()),
            Step::Key("azure_identitie".into()),
        ];
        assert_eq!(
            explain(
                &steps,
                "spec.deny: unknown field `azure_identitie`, expected one of `logins`, `azure_identities`"
            ),
            "unknown key `spec.deny.azure_identitie` (did you mean `azure_identities`?); the valid keys in `spec.deny` are: logins, azure_identities"
        );
        let steps = vec![
            Step::Key("spec".into()),
            Step::Key("roles".into()),
            Step::Index(0),
        ];
        assert_eq!(
            explain(&steps, "spec.roles[0]: \"x\" is not a valid role"),
            "spec.roles[0]: \"x\" is not a valid role"
        );
        let steps = vec![
            Step::Key("app_service".into()),
            Step::Key("apps".into()),
            Step::Index(0),
            Step::Key("rewrite".into()),
        ];
        assert_eq!(
            explain(&steps, "unknown field `rewrite`, expected `name` or `uri`"),
            "unknown key `app_service.apps[0].rewrite` (a Teleport setting this build does not support: remove it); the valid keys in `app_service.apps[0]` are: name, uri"
        );
        assert_eq!(strip_position("bad at line 3 column 4"), "bad");
        assert_eq!(strip_position("at line x"), "at line x");
    }
}

/// Support for tests that prove every mapping of a document refuses unknown keys (here and
/// in the `config` crate): from a document that sets every field, the probes inject an
/// unknown key (and a typo of a valid one) into each mapping in turn.
#[doc(hidden)]
pub mod probe {
    use super::{render_with, Step};
    use serde_yaml_ng::{Mapping, Value};

    /// One document with one key injected.
    #[derive(Debug, Clone)]
    pub struct Probe {
        /// The document with the key injected.
        pub doc: Value,
        /// The injected key.
        pub key: String,
        /// Its full path (`spec.deny.azure_identitie`).
        pub path: String,
        /// The keys of the mapping it went into, in the full document.
        pub siblings: Vec<String>,
        /// The mapping takes any key (labels, traits): the document must still load.
        pub free: bool,
        /// For a typo: the key it is a typo of.
        pub typo_of: Option<String>,
    }

    fn at_mut<'v>(v: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
        let Some((first, rest)) = path.split_first() else {
            return Some(v);
        };
        let next = match (first, v) {
            (Step::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str())?,
            (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i)?,
            _ => return None,
        };
        at_mut(next, rest)
    }

    fn inject(doc: &Value, path: &[Step], key: &str) -> Option<Value> {
        let mut out = doc.clone();
        let Value::Mapping(m) = at_mut(&mut out, path)? else {
            return None;
        };
        // Any value does for an unknown key; a free mapping gets a copy of one of its own.
        let value = m
            .values()
            .next()
            .cloned()
            .unwrap_or_else(|| Value::from("x"));
        m.insert(Value::from(key), value);
        Some(out)
    }

    fn keys(m: &Mapping) -> Vec<String> {
        m.keys()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect()
    }

    /// The probes of every mapping of `doc`. `free` lists the paths of mappings that take
    /// any key, with `[*]` for sequence indexes (`app_service.apps[*].labels`); the values
    /// of a free mapping are walked too (`dynamic_labels.NAME` is a struct).
    pub fn probes(doc: &Value, free: &[&str]) -> Vec<Probe> {
        let mut out = Vec::new();
        walk(doc, doc, &mut Vec::new(), free, &mut out);
        out
    }

    fn walk(root: &Value, v: &Value, path: &mut Vec<Step>, free: &[&str], out: &mut Vec<Probe>) {
        match v {
            Value::Mapping(m) => {
                let is_free = free.contains(&render_with(path, true).as_str());
                let siblings = keys(m);
                let key = "zz_unknown_key".to_string();
                let mut full = path.clone();
                full.push(Step::Key(key.clone()));
                if let Some(doc) = inject(root, path, &key) {
                    out.push(Probe {
                        doc,
                        key,
                        path: render_with(&full, false),
                        siblings: siblings.clone(),
                        free: is_free,
                        typo_of: None,
                    });
                }
                if !is_free {
                    // A typo of the first key of 5+ characters: its last character dropped
                    // or doubled, spelt nowhere else in the document (so that its line is
                    // unambiguous).
                    let text = serde_yaml_ng::to_string(root).unwrap_or_default();
                    let typo = siblings
                        .iter()
                        .filter(|k| k.len() >= 5 && k.is_ascii())
                        .find_map(|k| {
                            let last = &k[k.len() - 1..];
                            [k[..k.len() - 1].to_string(), format!("{k}{last}")]
                                .into_iter()
                                .find(|t| !text.contains(&format!("{t}:")))
                                .map(|t| (k.clone(), t))
                        });
                    if let Some((orig, typo)) = typo {
                        let mut doc = root.clone();
                        if let Some(Value::Mapping(m)) = at_mut(&mut doc, path) {
                            if let Some(value) = m.remove(orig.as_str()) {
                                m.insert(Value::from(typo.as_str()), value);
                            }
                        }
                        let mut full = path.clone();
                        full.push(Step::Key(typo.clone()));
                        out.push(Probe {
                            doc,
                            key: typo,
                            path: render_with(&full, false),
                            siblings: siblings.clone(),
                            free: false,
                            typo_of: Some(orig),
                        });
                    }
                }
                for (k, child) in m {
                    if let Some(k) = k.as_str() {
                        path.push(Step::Key(k.to_string()));
                        walk(root, child, path, free, out);
                        path.pop();
                    }
                }
            }
            Value::Sequence(items) => {
                for (i, child) in items.iter().enumerate() {
                    path.push(Step::Index(i));
                    walk(root, child, path, free, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The 1-based line of `text` where the key `key` is written (YAML `key:` or JSON
    /// `"key":`), at the start of the line's content or after a `- `.
    pub fn line_of(text: &str, key: &str) -> Option<usize> {
        let yaml = format!("{key}:");
        let json = format!("\"{key}\":");
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("- ").unwrap_or(l);
                l.starts_with(&yaml) || l.starts_with(&json)
            })
            .map(|i| i + 1)
    }

    /// The valid keys an unknown-key message lists.
    pub fn listed_keys(message: &str) -> Option<Vec<String>> {
        let (_, list) = message.split_once(" are: ")?;
        Some(list.split(", ").map(str::to_string).collect())
    }

    /// What is wrong with `message` as the refusal of `p` (None when it is right).
    pub fn check_refusal(p: &Probe, message: &str) -> Option<String> {
        let want = format!("unknown key `{}`", p.path);
        if !message.contains(&want) {
            return Some(format!("expected {want:?} in {message:?}"));
        }
        let mut listed = listed_keys(message).unwrap_or_default();
        listed.sort();
        let mut siblings = p.siblings.clone();
        siblings.sort();
        if listed != siblings {
            return Some(format!(
                "the document must set every key of `{}` (so that every depth is probed): \
                 it sets {siblings:?}, the valid keys are {listed:?}",
                p.path
            ));
        }
        if let Some(orig) = &p.typo_of {
            let hint = format!("(did you mean `{orig}`?)");
            if !message.contains(&hint) {
                return Some(format!("expected {hint:?} in {message:?}"));
            }
        }
        None
    }
}
