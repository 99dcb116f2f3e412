//! The [`Resource`] enum and the multi-document YAML/JSON reader.

use std::sync::LazyLock;

use serde::de::DeserializeOwned;
use serde::Serialize;

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

/// One document's source.
enum Source<'a> {
    /// YAML text (positions in it are relative to `line_offset`).
    Yaml { text: &'a str, line_offset: usize },
    /// An already parsed value (a JSON array item or a YAML sequence item).
    Json(&'a serde_json::Value),
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

fn decode<T: DeserializeOwned>(src: &Source<'_>) -> Result<T, Failure> {
    match src {
        Source::Yaml { text, line_offset } => {
            serde_yaml_ng::from_str(text).map_err(|e| yaml_failure(&e, *line_offset))
        }
        Source::Json(v) => T::deserialize(*v).map_err(|e| Failure {
            line: None,
            column: None,
            message: e.to_string(),
        }),
    }
}

fn header_str<'v>(v: &'v serde_json::Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(serde_json::Value::as_str)
}

/// Checks kind/version/name from the generic value, then decodes and validates.
fn build(header: &serde_json::Value, src: &Source<'_>) -> Result<Resource, Failure> {
    if !header.is_object() {
        return Err(ResourceError::BadParameter(
            "expected a resource (a mapping with kind, version, metadata and spec)".to_string(),
        )
        .into());
    }
    let kind = header_str(header, "kind").ok_or(ResourceError::Missing("kind"))?;
    if header.get("version").is_none() {
        return Err(ResourceError::Missing("version").into());
    }
    let version = header_str(header, "version").unwrap_or_default();
    let name = header
        .get("metadata")
        .and_then(|m| header_str(m, "name"))
        .unwrap_or_default();
    if !crate::KINDS.contains(&kind) {
        return Err(ResourceError::UnsupportedKind(kind.to_string()).into());
    }
    if kind == KIND_ROLE && !SUPPORTED_ROLE_VERSIONS.contains(&version) {
        return Err(ResourceError::UnsupportedRoleVersion(version.to_string()).into());
    }
    if name.is_empty() {
        return Err(ResourceError::Missing("metadata.name").into());
    }
    let resource = match kind {
        KIND_ROLE => Resource::Role(decode(src)?),
        KIND_USER => Resource::User(decode(src)?),
        KIND_TOKEN => Resource::Token(decode(src)?),
        KIND_APP => Resource::App(decode(src)?),
        KIND_DB => Resource::Database(decode(src)?),
        KIND_CLUSTER_NAME => Resource::ClusterName(decode(src)?),
        _ => Resource::CertAuthority(decode(src)?),
    };
    resource.validate()?;
    Ok(resource)
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
    let mut doc = 0usize;
    if looks_like_json(text) {
        let stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
        for value in stream {
            let value = value.map_err(|e| ParseError {
                document: doc + 1,
                line: Some(e.line()),
                column: Some(e.column()),
                message: strip_json_position(&e),
            })?;
            let items = match value {
                serde_json::Value::Array(items) => items,
                other => vec![other],
            };
            for item in items {
                doc += 1;
                out.push(build(&item, &Source::Json(&item)).map_err(|f| f.at(doc))?);
            }
        }
        return Ok(out);
    }
    for chunk in split_documents(text) {
        let value: serde_json::Value = match serde_yaml_ng::from_str(&chunk.text) {
            Ok(v) => v,
            Err(e) => {
                return Err(yaml_failure(&e, chunk.line_offset).at(doc + 1));
            }
        };
        match value {
            serde_json::Value::Null => continue,
            serde_json::Value::Array(items) => {
                for item in items {
                    doc += 1;
                    out.push(build(&item, &Source::Json(&item)).map_err(|f| f.at(doc))?);
                }
            }
            header => {
                doc += 1;
                let src = Source::Yaml {
                    text: &chunk.text,
                    line_offset: chunk.line_offset,
                };
                out.push(build(&header, &src).map_err(|f| f.at(doc))?);
            }
        }
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
    if looks_like_json(text) {
        return serde_json::from_str(text).map_err(|e| ParseError {
            document: 1,
            line: Some(e.line()),
            column: Some(e.column()),
            message: strip_json_position(&e),
        });
    }
    serde_yaml_ng::from_str(text).map_err(|e| yaml_failure(&e, 0).at(1))
}
