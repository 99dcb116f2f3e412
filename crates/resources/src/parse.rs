//! The [`Resource`] enum and the multi-document YAML/JSON reader.

use std::sync::LazyLock;

use serde::de::{DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::strict::{self, Step};

use crate::{
    App, CertAuthority, ClusterName, Database, Metadata, ParseError, ProvisionToken, ResourceError,
    Role, User, KIND_APP, KIND_CERT_AUTHORITY, KIND_CLUSTER_NAME, KIND_DB, KIND_ROLE, KIND_TOKEN,
    KIND_USER, SUPPORTED_ROLE_VERSIONS,
};

/// Any resource this crate knows.
///
/// Variants hold the resources unboxed so callers can match and build them directly; the
/// size difference does not matter off the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// `kind: role`.
    Role(Role),
    /// `kind: user`.
    User(User),
    /// `kind: token`.
    Token(ProvisionToken),
    /// `kind: app`.
    App(App),
    /// `kind: db`.
    Database(Database),
    /// `kind: cluster_name`.
    ClusterName(ClusterName),
    /// `kind: cert_authority`.
    CertAuthority(CertAuthority),
}

macro_rules! each {
    ($self:expr, $r:ident => $body:expr) => {
        match $self {
            Resource::Role($r) => $body,
            Resource::User($r) => $body,
            Resource::Token($r) => $body,
            Resource::App($r) => $body,
            Resource::Database($r) => $body,
            Resource::ClusterName($r) => $body,
            Resource::CertAuthority($r) => $body,
        }
    };
}

impl Resource {
    /// The resource kind (`role`, `user`, `token`, `app`, `db`, `cluster_name`, `cert_authority`).
    pub fn kind(&self) -> &str {
        match self {
            Resource::Role(_) => KIND_ROLE,
            Resource::User(_) => KIND_USER,
            Resource::Token(_) => KIND_TOKEN,
            Resource::App(_) => KIND_APP,
            Resource::Database(_) => KIND_DB,
            Resource::ClusterName(_) => KIND_CLUSTER_NAME,
            Resource::CertAuthority(_) => KIND_CERT_AUTHORITY,
        }
    }

    /// The resource version.
    pub fn version(&self) -> &str {
        each!(self, r => &r.version)
    }

    /// `metadata.name`.
    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    /// The metadata.
    pub fn metadata(&self) -> &Metadata {
        each!(self, r => &r.metadata)
    }

    /// Mutable metadata (for setting the revision or expiry).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        each!(self, r => &mut r.metadata)
    }

    /// Structural validation of the resource.
    pub fn validate(&self) -> Result<(), ResourceError> {
        each!(self, r => r.validate())
    }

    /// YAML text of the resource.
    pub fn to_yaml(&self) -> Result<String, ResourceError> {
        serde_yaml_ng::to_string(self).map_err(|e| ResourceError::Encode(e.to_string()))
    }

    /// Pretty JSON text of the resource.
    pub fn to_json(&self) -> Result<String, ResourceError> {
        serde_json::to_string_pretty(self).map_err(|e| ResourceError::Encode(e.to_string()))
    }

    /// Several resources as one multi-document YAML text (`---` separated).
    pub fn to_yaml_documents(resources: &[Resource]) -> Result<String, ResourceError> {
        let mut out = String::new();
        for (i, r) in resources.iter().enumerate() {
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&r.to_yaml()?);
        }
        Ok(out)
    }
}

impl Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        each!(self, r => r.serialize(s))
    }
}

macro_rules! from_impl {
    ($($t:ident => $v:ident),*) => {
        $(impl From<$t> for Resource {
            fn from(r: $t) -> Self {
                Resource::$v(r)
            }
        })*
    };
}
from_impl!(Role => Role, User => User, ProvisionToken => Token, App => App, Database => Database,
    ClusterName => ClusterName, CertAuthority => CertAuthority);

/// Splits `tctl get`'s `KIND[/NAME]` argument, accepting plural and alias spellings
/// (`roles`, `users`, `tokens`, `apps`, `dbs`, `databases`, `cas`).
pub fn parse_kind_ref(text: &str) -> Result<(&'static str, Option<String>), ResourceError> {
    let text = text.trim();
    let (kind, name) = match text.split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (text, None),
    };
    let kind = match kind.to_ascii_lowercase().as_str() {
        "role" | "roles" => KIND_ROLE,
        "user" | "users" => KIND_USER,
        "token" | "tokens" => KIND_TOKEN,
        "app" | "apps" => KIND_APP,
        "db" | "dbs" | "database" | "databases" => KIND_DB,
        "cluster_name" | "cluster_names" => KIND_CLUSTER_NAME,
        "cert_authority" | "cert_authorities" | "ca" | "cas" => KIND_CERT_AUTHORITY,
        _ => return Err(ResourceError::UnsupportedKind(kind.to_string())),
    };
    match name {
        Some("") => Err(ResourceError::BadParameter(format!(
            "missing resource name after {kind:?}/"
        ))),
        Some(n) => Ok((kind, Some(n.to_string()))),
        None => Ok((kind, None)),
    }
}

/// A decode failure before it is tied to a document.
struct Failure {
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl From<ResourceError> for Failure {
    fn from(e: ResourceError) -> Self {
        Failure {
            line: None,
            column: None,
            message: e.to_string(),
        }
    }
}

static YAML_POS: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r" at line (\d+) column (\d+)").ok());

fn yaml_failure(err: &serde_yaml_ng::Error, line_offset: usize) -> Failure {
    let mut message = err.to_string();
    let loc = err.location();
    if let Some(re) = YAML_POS.as_ref() {
        // The position `location()` reports is printed in front: drop it from the text,
        // and shift any other position (a libyaml context mark) to whole-input lines.
        if let Some(loc) = &loc {
            let found = re.captures_iter(&message).find_map(|c| {
                let same = c[1].parse::<usize>().ok() == Some(loc.line())
                    && c[2].parse::<usize>().ok() == Some(loc.column());
                let m = c.get(0)?;
                same.then(|| (m.start(), m.end()))
            });
            if let Some((start, end)) = found {
                message.replace_range(start..end, "");
            }
        }
        message = re
            .replace_all(&message, |c: &regex::Captures<'_>| {
                let line: usize = c[1].parse().unwrap_or(0);
                format!(" at line {} column {}", line + line_offset, &c[2])
            })
            .into_owned();
    }
    Failure {
        line: loc.as_ref().map(|l| l.line() + line_offset),
        column: loc.as_ref().map(|l| l.column()),
        message,
    }
}

/// Where a piece of text starts in the whole input: 0-based line, and the column offset
/// of its first line.
#[derive(Clone, Copy, Default)]
struct Origin {
    line: usize,
    column: usize,
}

impl Origin {
    fn of(text: &str, byte: usize) -> Origin {
        let before = text.get(..byte).unwrap_or(text);
        Origin {
            line: before.matches('\n').count(),
            column: before.len() - before.rfind('\n').map_or(0, |i| i + 1),
        }
    }

    /// A 1-based position in the piece, as a position in the whole input.
    fn shift(self, line: usize, column: usize) -> (usize, usize) {
        let column = if line == 1 {
            column + self.column
        } else {
            column
        };
        (line + self.line, column)
    }
}

/// A decode failure with the path of the value that failed; its message is still the
/// decoder's (see [`strict::explain`]).
type Tracked = (Vec<Step>, Failure);

/// Decodes YAML text with `seed`; a failure has the position in the whole input.
fn decode_yaml<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    origin: Origin,
    seed: S,
) -> Result<S::Value, Tracked> {
    strict::decode_seed(serde_yaml_ng::Deserializer::from_str(text), seed).map_err(|(steps, e)| {
        let mut f = yaml_failure(&e, origin.line);
        if let (Some(l), Some(c)) = (f.line, f.column) {
            // yaml_failure shifted the line already; shift the column of line 1 only.
            if l == origin.line + 1 {
                f.column = Some(c + origin.column);
            }
        }
        f.message = strict::strip_position(&f.message);
        (steps, f)
    })
}

/// Decodes JSON text with `seed`, as [`decode_yaml`] does YAML.
fn decode_json<'de, S: DeserializeSeed<'de>>(
    text: &'de str,
    origin: Origin,
    seed: S,
) -> Result<S::Value, Tracked> {
    let mut de = serde_json::Deserializer::from_str(text);
    strict::decode_seed(&mut de, seed).map_err(|(steps, e)| {
        let known = e.line() > 0;
        let (line, column) = origin.shift(e.line(), e.column());
        let failure = Failure {
            line: known.then_some(line),
            column: known.then_some(column),
            message: strip_json_position(&e),
        };
        (steps, failure)
    })
}

fn header_str<'v>(v: &'v serde_json::Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// The keys of a resource document.
const TOP_KEYS: [&str; 4] = ["kind", "version", "metadata", "spec"];

/// The keys of `metadata`.
const METADATA_KEYS: [&str; 5] = ["name", "description", "labels", "expires", "revision"];

fn unknown_keys<'v>(v: Option<&'v serde_json::Value>, known: &[&str]) -> Vec<&'v str> {
    v.and_then(serde_json::Value::as_object)
        .map(|m| {
            m.keys()
                .map(String::as_str)
                .filter(|k| !known.contains(k))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks kind/version/name from the generic value; answers the kind to decode.
///
/// When a key of the document or of its metadata is unknown (`versio:`), a missing
/// version or name is left to the typed decoder, which names the unknown key and its line.
fn header_kind(header: &serde_json::Value) -> Result<&'static str, Failure> {
    if !header.is_object() {
        return Err(ResourceError::BadParameter(
            "expected a resource (a mapping with kind, version, metadata and spec)".to_string(),
        )
        .into());
    }
    let unknown_top = unknown_keys(Some(header), &TOP_KEYS);
    let Some(kind) = header_str(header, "kind") else {
        if let Some(key) = unknown_top.first() {
            let valid: Vec<String> = TOP_KEYS.iter().map(|k| k.to_string()).collect();
            return Err(ResourceError::BadParameter(strict::explain(
                &[Step::Key((*key).to_string())],
                &format!(
                    "unknown field `{key}`, expected one of {}",
                    valid
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ))
            .into());
        }
        return Err(ResourceError::Missing("kind").into());
    };
    let Some(kind) = crate::KINDS.iter().copied().find(|k| *k == kind) else {
        return Err(ResourceError::UnsupportedKind(kind.to_string()).into());
    };
    let defer =
        !unknown_top.is_empty() || !unknown_keys(header.get("metadata"), &METADATA_KEYS).is_empty();
    match header.get("version") {
        None if defer => return Ok(kind),
        None => return Err(ResourceError::Missing("version").into()),
        Some(_) => {}
    }
    let version = header_str(header, "version").unwrap_or_default();
    if kind == KIND_ROLE && !SUPPORTED_ROLE_VERSIONS.contains(&version) {
        return Err(ResourceError::UnsupportedRoleVersion(version.to_string()).into());
    }
    let name = header
        .get("metadata")
        .and_then(|m| header_str(m, "name"))
        .unwrap_or_default();
    if name.is_empty() && !defer {
        return Err(ResourceError::Missing("metadata.name").into());
    }
    Ok(kind)
}

/// Decodes one resource of a known kind.
struct KindSeed(&'static str);

impl<'de> DeserializeSeed<'de> for KindSeed {
    type Value = Resource;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Resource, D::Error> {
        Ok(match self.0 {
            KIND_ROLE => Resource::Role(Role::deserialize(d)?),
            KIND_USER => Resource::User(User::deserialize(d)?),
            KIND_TOKEN => Resource::Token(ProvisionToken::deserialize(d)?),
            KIND_APP => Resource::App(App::deserialize(d)?),
            KIND_DB => Resource::Database(Database::deserialize(d)?),
            KIND_CLUSTER_NAME => Resource::ClusterName(ClusterName::deserialize(d)?),
            _ => Resource::CertAuthority(CertAuthority::deserialize(d)?),
        })
    }
}

/// Decodes a sequence of resources whose kinds are known, one per item.
struct SeqSeed<'k>(&'k [&'static str]);

impl<'de> DeserializeSeed<'de> for SeqSeed<'_> {
    type Value = Vec<Resource>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Resource>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SeqSeed<'_> {
    type Value = Vec<Resource>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of resources")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Resource>, A::Error> {
        let mut out = Vec::with_capacity(self.0.len());
        for kind in self.0 {
            match seq.next_element_seed(KindSeed(kind))? {
                Some(r) => out.push(r),
                None => break,
            }
        }
        Ok(out)
    }
}

/// Decodes the items of one document (a resource, or a sequence of them: `value` is its
/// generic form) and validates them; `first` is the number of the first item's document.
/// `decode` gets the kinds and whether the document is a sequence.
fn decode_items(
    value: &serde_json::Value,
    first: usize,
    decode: impl FnOnce(&[&'static str], bool) -> Result<Vec<Resource>, Tracked>,
) -> Result<Vec<Resource>, ParseError> {
    let (kinds, is_seq) = match value {
        serde_json::Value::Array(items) => {
            let mut kinds = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                kinds.push(header_kind(item).map_err(|f| f.at(first + i))?);
            }
            (kinds, true)
        }
        header => (vec![header_kind(header).map_err(|f| f.at(first))?], false),
    };
    let resources = decode(&kinds, is_seq).map_err(|(steps, mut f)| {
        // In a sequence, `[1].spec...` is document first+1's `spec...`.
        let (document, steps) = match steps.split_first() {
            Some((Step::Index(i), rest)) if is_seq => (first + i, rest),
            _ => (first, steps.as_slice()),
        };
        f.message = strict::explain(steps, &f.message);
        f.at(document)
    })?;
    for (i, r) in resources.iter().enumerate() {
        r.validate().map_err(|e| Failure::from(e).at(first + i))?;
    }
    Ok(resources)
}

/// A YAML document: its text and the 0-based line where it starts in the input.
struct Chunk {
    text: String,
    line_offset: usize,
}

/// Splits YAML text at document markers (`---` and `...` at column 0).
fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = Chunk {
        text: String::new(),
        line_offset: 0,
    };
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        let is_end = line == "..." || line.starts_with("... ");
        if is_start || is_end {
            chunks.push(std::mem::replace(
                &mut current,
                Chunk {
                    text: String::new(),
                    line_offset: i,
                },
            ));
            if is_start {
                // Keep content after the marker (`--- {kind: role}`) at its column.
                current.text.push_str("   ");
                current.text.push_str(&line[3..]);
            }
            current.text.push('\n');
            continue;
        }
        current.text.push_str(raw);
    }
    chunks.push(current);
    chunks
}

fn looks_like_json(text: &str) -> bool {
    matches!(
        text.trim_start().as_bytes().first(),
        Some(b'{') | Some(b'[')
    )
}

/// Reads resources from multi-document YAML (`---` separated; empty documents skipped) or
/// JSON (one object, a sequence of objects, or several concatenated objects).
///
/// Each resource is dispatched on `kind`, decoded and validated structurally
/// ([`Resource::validate`]). Errors name the 1-based document and, when known, the line and
/// column in the whole input.
pub fn parse_resources(text: &str) -> Result<Vec<Resource>, ParseError> {
    let mut out = Vec::new();
    if looks_like_json(text) {
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        let mut start = 0;
        while let Some(value) = stream.next() {
            let value = value.map_err(|e| ParseError {
                document: out.len() + 1,
                line: Some(e.line()),
                column: Some(e.column()),
                message: strip_json_position(&e),
            })?;
            let end = stream.byte_offset();
            let piece = text.get(start..end).unwrap_or_default();
            let origin = Origin::of(text, start);
            start = end;
            out.extend(decode_items(&value, out.len() + 1, |kinds, is_seq| {
                if is_seq {
                    decode_json(piece, origin, SeqSeed(kinds))
                } else {
                    decode_json(piece, origin, KindSeed(kinds[0])).map(|r| vec![r])
                }
            })?);
        }
        return Ok(out);
    }
    for chunk in split_documents(text) {
        let value: serde_json::Value = match serde_yaml_ng::from_str(&chunk.text) {
            Ok(v) => v,
            Err(e) => {
                return Err(yaml_failure(&e, chunk.line_offset).at(out.len() + 1));
            }
        };
        if value.is_null() {
            continue;
        }
        let origin = Origin {
            line: chunk.line_offset,
            column: 0,
        };
        out.extend(decode_items(&value, out.len() + 1, |kinds, is_seq| {
            if is_seq {
                decode_yaml(&chunk.text, origin, SeqSeed(kinds))
            } else {
                decode_yaml(&chunk.text, origin, KindSeed(kinds[0])).map(|r| vec![r])
            }
        })?);
    }
    Ok(out)
}

fn strip_json_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl Failure {
    fn at(self, document: usize) -> ParseError {
        ParseError {
            document,
            line: self.line,
            column: self.column,
            message: self.message,
        }
    }
}

/// Reads exactly one resource (YAML or JSON).
pub fn parse_resource(text: &str) -> Result<Resource, ParseError> {
    let mut all = parse_resources(text)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(ParseError {
            document: n.max(1),
            line: None,
            column: None,
            message: format!("expected exactly one resource, found {n}"),
        }),
    }
}

/// Decodes one YAML or JSON document straight into `T` (no kind dispatch, no validation),
/// for callers that know what they read (a backend value, a config fragment).
pub fn parse_resource_of<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    let seed = std::marker::PhantomData::<T>;
    let origin = Origin::default();
    let decoded = if looks_like_json(text) {
        decode_json(text, origin, seed)
    } else {
        decode_yaml(text, origin, seed)
    };
    decoded.map_err(|(steps, mut f)| {
        f.message = strict::explain(&steps, &f.message);
        f.at(1)
    })
}

/// Decodes one YAML document straight into `T`, as [`parse_resource_of`] does (for files
/// that are YAML even when they start with `{`, like `teleport.yaml`).
pub fn parse_yaml_of<T: DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    decode_yaml(text, Origin::default(), std::marker::PhantomData::<T>).map_err(|(steps, mut f)| {
        f.message = strict::explain(&steps, &f.message);
        f.at(1)
    })
}
