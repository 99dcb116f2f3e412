//! Audit events: [`AuditEvent`] is the one typed enum of every kind of event
//! the cluster records, serialized once, in Teleport's shape.
//!
//! Each variant knows its `event` name and its `code` (a success and a failure
//! code where the event has both); its payload is a typed struct whose fields
//! sit beside `event` and `code` in the JSON object. The audit log adds `uid`
//! and `time` when it stores the object. New kinds of events are new variants
//! here.
//!
//! Agents send their events (app and database sessions) to the auth service
//! (`POST /v1/auth/agent/events`), which takes them only through
//! [`AuditEvent::from_agent`]: the parse is the check, so an agent can record
//! nothing but the kinds agents may send, with the fields those kinds have,
//! under its own identity.
//!
//! A database session's commands are grouped: the agent serializes the
//! session's common part once ([`DbSession::query_prefix`]) and sends all the
//! session's commands of one batch as one `db.session.query` event whose
//! `db_queries` lists them; the audit log reads it back as one event per
//! command, each with its `db_query`.

use resources::{JoinMethod, SystemRole};
use serde::de::DeserializeOwned;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// An audit event.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditEvent {
    /// `user.create` (T1002I): a user created with an invite (`tctl users add`).
    UserCreate(UserChange),
    /// `user.update` (T1003I): a user's roles or traits replaced.
    UserUpdate(UserChange),
    /// `user.password_change` (T1005I): a password set from an invite.
    UserPasswordChange(PasswordChange),
    /// `user.login` (T1000I, or T1000W when refused): a password login.
    UserLogin(UserLogin),
    /// `lock.created` (TLK00I): an account locked after failed logins.
    LockCreated(LockCreated),
    /// `cert.create` (TC000I): a user or database certificate issued.
    CertCreate(CertCreate),
    /// A resource created or overwritten (`tctl create`): `role.created`,
    /// `user.create`/`user.update`, `join_token.create`,
    /// `app.create`/`app.update`, `db.create`/`db.update` (see
    /// [`ResourceKind`]).
    ResourceWrite(ResourceWrite),
    /// A resource deleted (`tctl rm`): `role.deleted`, `user.delete`,
    /// `join_token.delete`, `app.delete`, `db.delete`.
    ResourceDelete(ResourceDelete),
    /// `join_token.create` (TJT00I): a join token made by `tctl tokens add`.
    JoinTokenCreate(JoinTokenCreate),
    /// `instance.join` (TJ002I, or TJ002E when refused): an agent's join.
    InstanceJoin(InstanceJoin),
    /// `app.session.start` (T2007I): an app certificate issued.
    AppSessionStart(AppSessionStart),
    /// `app.session.request` (T2009I): one request of an app session.
    AppSessionRequest(AppSessionRequest),
    /// `app.session.end` (T2011I): an app session's connection closed.
    AppSessionEnd(AppSessionEnd),
    /// `db.session.start` (TDB00I, or TDB00W when refused).
    DbSessionStart(DbSessionStart),
    /// `db.session.query` (TDB02I): commands of a database session.
    DbSessionQuery(DbSessionQuery),
    /// `db.session.query.failed` (TDB02W): a command the agent refused.
    DbSessionQueryFailed(DbSessionQueryFailed),
    /// `db.session.end` (TDB01I).
    DbSessionEnd(DbSessionEnd),
}

/// Whether an attempt succeeded: `"success": true`, or `"success": false`
/// with the `"error"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It worked.
    Success,
    /// It was refused or failed, with the error.
    Failure(String),
}

impl Outcome {
    /// `Success` or `Failure` with the error's text.
    pub fn of<T, E: std::fmt::Display>(result: &Result<T, E>) -> Outcome {
        match result {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(e.to_string()),
        }
    }

    /// Whether it worked.
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success)
    }

    fn code(&self, success: &'static str, failure: &'static str) -> &'static str {
        if self.is_success() {
            success
        } else {
            failure
        }
    }
}

// Flattened into its event: `success`, and `error` on failure.
impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            Outcome::Success => map.serialize_entry("success", &true)?,
            Outcome::Failure(error) => {
                map.serialize_entry("success", &false)?;
                map.serialize_entry("error", error)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            success: bool,
            #[serde(default)]
            error: Option<String>,
        }
        let w = Wire::deserialize(d)?;
        Ok(if w.success {
            Outcome::Success
        } else {
            Outcome::Failure(w.error.unwrap_or_default())
        })
    }
}

/// `user.create` and `user.update` by the user API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserChange {
    /// Who did it.
    pub user: String,
    /// The user created or changed.
    pub name: String,
    /// That user's roles.
    pub roles: Vec<String>,
}

/// `user.password_change`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PasswordChange {
    /// Whose password.
    pub user: String,
}

/// How a user logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginMethod {
    /// User name and password.
    Local,
}

/// `user.login`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserLogin {
    /// The user name given (cut short when no user can have it).
    pub user: String,
    /// How.
    pub method: LoginMethod,
    /// Whether the login worked.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The client's address.
    #[serde(rename = "addr.remote")]
    pub remote_addr: String,
}

/// `lock.created`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockCreated {
    /// Who locked (`system` for automatic locks).
    pub user: String,
    /// What is locked.
    pub target: LockTarget,
    /// Why.
    pub reason: String,
}

/// What a lock holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockTarget {
    /// The locked user.
    pub user: String,
}

/// `cert.create`, by the certificate's type (`cert_type`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "cert_type", rename_all = "lowercase")]
pub enum CertCreate {
    /// A user's login certificate.
    User {
        /// Whom it certifies.
        identity: CertIdentity,
    },
    /// A database session certificate.
    Db {
        /// Whose.
        user: String,
        /// The database (its name in the cluster).
        db_service: String,
        /// The database user it routes to.
        db_user: String,
    },
}

/// The identity in a user certificate's `cert.create`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertIdentity {
    /// User name.
    pub user: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// Expiry, RFC 3339.
    pub expires: String,
}

/// The kinds of resources `tctl create` and `tctl rm` change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// `role`.
    Role,
    /// `user`.
    User,
    /// `token`.
    Token,
    /// `app`.
    App,
    /// `db`.
    Db,
}

impl ResourceKind {
    /// The kind named `kind` (`role`, `user`, `token`, `app`, `db`), if it is one.
    pub fn from_name(kind: &str) -> Option<ResourceKind> {
        Some(match kind {
            "role" => ResourceKind::Role,
            "user" => ResourceKind::User,
            "token" => ResourceKind::Token,
            "app" => ResourceKind::App,
            "db" => ResourceKind::Db,
            _ => return None,
        })
    }

    /// `(event, code)` of writing a resource of this kind (`created`: it was new).
    /// Roles are `role.created` either way, and tokens `join_token.create`,
    /// as in Teleport.
    fn write_event(self, created: bool) -> (&'static str, &'static str) {
        match (self, created) {
            (ResourceKind::Role, _) => ("role.created", "T9000I"),
            (ResourceKind::User, true) => (USER_CREATE, "T1002I"),
            (ResourceKind::User, false) => (USER_UPDATE, "T1003I"),
            (ResourceKind::Token, _) => (JOIN_TOKEN_CREATE, "TJT00I"),
            (ResourceKind::App, true) => ("app.create", "TAP03I"),
            (ResourceKind::App, false) => ("app.update", "TAP04I"),
            (ResourceKind::Db, true) => ("db.create", "TDB03I"),
            (ResourceKind::Db, false) => ("db.update", "TDB04I"),
        }
    }

    /// `(event, code)` of deleting a resource of this kind.
    fn delete_event(self) -> (&'static str, &'static str) {
        match self {
            ResourceKind::Role => ("role.deleted", "T9001I"),
            ResourceKind::User => ("user.delete", "T1004I"),
            ResourceKind::Token => ("join_token.delete", "TJT01I"),
            ResourceKind::App => ("app.delete", "TAP05I"),
            ResourceKind::Db => ("db.delete", "TDB05I"),
        }
    }
}

/// A resource created or overwritten.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceWrite {
    /// Who did it.
    pub user: String,
    /// The resource's name.
    pub name: String,
    /// Its kind.
    pub kind: ResourceKind,
    /// Whether it was new (else overwritten): chooses the event.
    #[serde(skip)]
    pub created: bool,
}

/// A resource deleted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceDelete {
    /// Who did it.
    pub user: String,
    /// The resource's name.
    pub name: String,
    /// Its kind.
    pub kind: ResourceKind,
}

/// `join_token.create` by `tctl tokens add`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinTokenCreate {
    /// Who made it.
    pub user: String,
    /// The roles it allows.
    pub roles: Vec<SystemRole>,
    /// How agents use it.
    pub join_method: JoinMethod,
}

/// `instance.join`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceJoin {
    /// The agent's host ID, as it asked.
    pub host_id: String,
    /// The agent's node name, as it asked.
    pub node_name: String,
    /// The roles it asked for, comma separated.
    pub role: String,
    /// The join method.
    pub method: JoinMethod,
    /// The token's name: only for methods where the name is not the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_name: Option<String>,
    /// Whether the join worked.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The Azure VM that joined (Azure joins that worked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureJoin>,
    /// The agent's address.
    #[serde(rename = "addr.remote")]
    pub remote_addr: String,
}

/// Where an Azure join came from, as attested.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AzureJoin {
    /// The VM's ID.
    pub vm_id: String,
    /// Its subscription.
    pub subscription: String,
    /// Its resource group.
    pub resource_group: String,
    /// Its tenant.
    pub tenant: String,
}

/// The part every app session event has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSession {
    /// The user.
    pub user: String,
    /// Session ID (from the app certificate).
    pub sid: String,
    /// The app's name.
    pub app_name: String,
    /// The Azure identity of the session (Azure apps; else empty).
    pub azure_identity: String,
    /// The agent that recorded it (set by the auth service for agents' events).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_id: String,
}

/// `app.session.start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSessionStart {
    /// The session.
    #[serde(flatten)]
    pub session: AppSession,
    /// The app's public address.
    pub app_public_addr: String,
}

/// `app.session.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSessionRequest {
    /// The session.
    #[serde(flatten)]
    pub session: AppSession,
    /// HTTP method.
    pub method: String,
    /// `Host` header.
    pub host: String,
    /// Path, without the query.
    pub path: String,
    /// Status of the answer.
    pub status_code: u16,
}

/// `app.session.end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppSessionEnd {
    /// The session.
    #[serde(flatten)]
    pub session: AppSession,
}

/// The part every database session event has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbSession {
    /// The user.
    pub user: String,
    /// Session ID.
    pub sid: String,
    /// The database (its name in the cluster).
    pub db_service: String,
    /// Its protocol (`redis`).
    pub db_protocol: String,
    /// The database user.
    pub db_user: String,
    /// The database name asked for.
    pub db_name: String,
    /// The agent serving the session.
    #[serde(default)]
    pub server_id: String,
    /// The database's address (once the session is allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_uri: Option<String>,
    /// Where the database comes from (`teleport.dev/origin`; once the
    /// session is allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_origin: Option<String>,
}

impl DbSession {
    /// The text of this session's `db.session.query` event without its
    /// closing brace and without queries: a batch appends
    /// `,"db_queries":[...]}` to send the session's commands as one event.
    /// Serialized once per session, so a command costs only its own text.
    pub fn query_prefix(&self) -> String {
        let mut text = AuditEvent::DbSessionQuery(DbSessionQuery {
            session: self.clone(),
            db_queries: Vec::new(),
        })
        .to_json();
        text.pop();
        text
    }
}

/// `db.session.start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbSessionStart {
    /// The session.
    #[serde(flatten)]
    pub session: DbSession,
    /// Whether the session was allowed.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// `db.session.query`: commands of a session, as agents send them and the
/// audit log stores them (`db_queries`); a search of the log returns one
/// event per command, with its `db_query`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbSessionQuery {
    /// The session.
    #[serde(flatten)]
    pub session: DbSession,
    /// The commands, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub db_queries: Vec<String>,
}

/// `db.session.query.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbSessionQueryFailed {
    /// The session.
    #[serde(flatten)]
    pub session: DbSession,
    /// The command.
    pub db_query: String,
    /// Why it was refused.
    pub error: String,
}

/// `db.session.end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DbSessionEnd {
    /// The session.
    #[serde(flatten)]
    pub session: DbSession,
    /// How the session failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

const USER_CREATE: &str = "user.create";
const USER_UPDATE: &str = "user.update";
const JOIN_TOKEN_CREATE: &str = "join_token.create";
const APP_SESSION_START: &str = "app.session.start";
const APP_SESSION_REQUEST: &str = "app.session.request";
const APP_SESSION_END: &str = "app.session.end";
const DB_SESSION_START: &str = "db.session.start";
const DB_SESSION_QUERY: &str = "db.session.query";
const DB_SESSION_QUERY_FAILED: &str = "db.session.query.failed";
const DB_SESSION_END: &str = "db.session.end";

/// The kinds of events agents may send (see [`AuditEvent::from_agent`]).
/// `app.session.start` is not one: the auth service records it when it
/// issues the app certificate, so an agent cannot invent a session.
pub const AGENT_EVENTS: [&str; 6] = [
    APP_SESSION_REQUEST,
    APP_SESSION_END,
    DB_SESSION_START,
    DB_SESSION_QUERY,
    DB_SESSION_QUERY_FAILED,
    DB_SESSION_END,
];

/// Why an agent's event was refused.
#[derive(Debug, thiserror::Error)]
pub enum AgentEventError {
    /// Not a JSON object with a string `event`.
    #[error("an event is a JSON object with an \"event\" name")]
    NotAnEvent,
    /// A kind agents may not record.
    #[error("agents may not record {0:?} events")]
    NotForAgents(String),
    /// A kind agents may record, without the fields it has.
    #[error("bad {kind} event: {error}")]
    Malformed {
        /// The event's kind.
        kind: &'static str,
        /// What is wrong.
        error: serde_json::Error,
    },
}

/// The longest event name an error repeats.
const MAX_NAME_IN_ERROR: usize = 64;

impl AuditEvent {
    /// The event's name (`event`).
    pub fn event(&self) -> &'static str {
        self.event_and_code().0
    }

    /// The event's code (`code`): which of its codes depends on the outcome
    /// for events that have a failure code.
    pub fn code(&self) -> &'static str {
        self.event_and_code().1
    }

    fn event_and_code(&self) -> (&'static str, &'static str) {
        match self {
            AuditEvent::UserCreate(_) => (USER_CREATE, "T1002I"),
            AuditEvent::UserUpdate(_) => (USER_UPDATE, "T1003I"),
            AuditEvent::UserPasswordChange(_) => ("user.password_change", "T1005I"),
            AuditEvent::UserLogin(e) => ("user.login", e.outcome.code("T1000I", "T1000W")),
            AuditEvent::LockCreated(_) => ("lock.created", "TLK00I"),
            AuditEvent::CertCreate(_) => ("cert.create", "TC000I"),
            AuditEvent::ResourceWrite(e) => e.kind.write_event(e.created),
            AuditEvent::ResourceDelete(e) => e.kind.delete_event(),
            AuditEvent::JoinTokenCreate(_) => (JOIN_TOKEN_CREATE, "TJT00I"),
            AuditEvent::InstanceJoin(e) => ("instance.join", e.outcome.code("TJ002I", "TJ002E")),
            AuditEvent::AppSessionStart(_) => (APP_SESSION_START, "T2007I"),
            AuditEvent::AppSessionRequest(_) => (APP_SESSION_REQUEST, "T2009I"),
            AuditEvent::AppSessionEnd(_) => (APP_SESSION_END, "T2011I"),
            AuditEvent::DbSessionStart(e) => (DB_SESSION_START, e.outcome.code("TDB00I", "TDB00W")),
            AuditEvent::DbSessionQuery(_) => (DB_SESSION_QUERY, "TDB02I"),
            AuditEvent::DbSessionQueryFailed(_) => (DB_SESSION_QUERY_FAILED, "TDB02W"),
            AuditEvent::DbSessionEnd(_) => (DB_SESSION_END, "TDB01I"),
        }
    }

    /// The event as JSON text.
    pub fn to_json(&self) -> String {
        // Every field is a string, number, boolean, list or object with
        // string keys: serializing cannot fail (the tests serialize every
        // variant). Were it to, the event would still be recorded by name.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(r#"{{"event":"{}","code":"{}"}}"#, self.event(), self.code())
        })
    }

    /// The event as a JSON object (see [`AuditEvent::to_json`]).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self)
            .unwrap_or_else(|_| serde_json::json!({"event": self.event(), "code": self.code()}))
    }

    /// An event an agent sent, as the audit log records it: only the kinds
    /// agents may send ([`AGENT_EVENTS`]), with their fields (others are
    /// dropped, as are `uid` and `time`: the log sets them; `code` follows
    /// from the event), recorded as `server_id`, the agent's identity.
    pub fn from_agent(event: Value, server_id: &str) -> Result<AuditEvent, AgentEventError> {
        fn parse<T: DeserializeOwned>(kind: &'static str, v: Value) -> Result<T, AgentEventError> {
            serde_json::from_value(v).map_err(|error| AgentEventError::Malformed { kind, error })
        }
        let kind = match event.get("event") {
            Some(Value::String(k)) => k.as_str(),
            _ => return Err(AgentEventError::NotAnEvent),
        };
        let mut parsed = match kind {
            APP_SESSION_REQUEST => {
                AuditEvent::AppSessionRequest(parse(APP_SESSION_REQUEST, event)?)
            }
            APP_SESSION_END => AuditEvent::AppSessionEnd(parse(APP_SESSION_END, event)?),
            DB_SESSION_START => AuditEvent::DbSessionStart(parse(DB_SESSION_START, event)?),
            DB_SESSION_QUERY => AuditEvent::DbSessionQuery(parse(DB_SESSION_QUERY, event)?),
            DB_SESSION_QUERY_FAILED => {
                AuditEvent::DbSessionQueryFailed(parse(DB_SESSION_QUERY_FAILED, event)?)
            }
            DB_SESSION_END => AuditEvent::DbSessionEnd(parse(DB_SESSION_END, event)?),
            other => {
                return Err(AgentEventError::NotForAgents(
                    other.chars().take(MAX_NAME_IN_ERROR).collect(),
                ))
            }
        };
        if let Some(id) = parsed.session_server_id() {
            *id = server_id.to_string();
        }
        Ok(parsed)
    }

    /// The `server_id` of a session event's session: the agent that served it.
    fn session_server_id(&mut self) -> Option<&mut String> {
        match self {
            AuditEvent::AppSessionStart(AppSessionStart { session, .. })
            | AuditEvent::AppSessionRequest(AppSessionRequest { session, .. })
            | AuditEvent::AppSessionEnd(AppSessionEnd { session }) => Some(&mut session.server_id),
            AuditEvent::DbSessionStart(DbSessionStart { session, .. })
            | AuditEvent::DbSessionQuery(DbSessionQuery { session, .. })
            | AuditEvent::DbSessionQueryFailed(DbSessionQueryFailed { session, .. })
            | AuditEvent::DbSessionEnd(DbSessionEnd { session, .. }) => {
                Some(&mut session.server_id)
            }
            _ => None,
        }
    }
}

/// `event`, `code`, then the payload's fields.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    event: &'static str,
    code: &'static str,
    #[serde(flatten)]
    fields: &'a T,
}

impl Serialize for AuditEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (event, code) = self.event_and_code();
        macro_rules! tagged {
            ($fields:expr) => {
                Tagged {
                    event,
                    code,
                    fields: $fields,
                }
                .serialize(s)
            };
        }
        match self {
            AuditEvent::UserCreate(f) | AuditEvent::UserUpdate(f) => tagged!(f),
            AuditEvent::UserPasswordChange(f) => tagged!(f),
            AuditEvent::UserLogin(f) => tagged!(f),
            AuditEvent::LockCreated(f) => tagged!(f),
            AuditEvent::CertCreate(f) => tagged!(f),
            AuditEvent::ResourceWrite(f) => tagged!(f),
            AuditEvent::ResourceDelete(f) => tagged!(f),
            AuditEvent::JoinTokenCreate(f) => tagged!(f),
            AuditEvent::InstanceJoin(f) => tagged!(f),
            AuditEvent::AppSessionStart(f) => tagged!(f),
            AuditEvent::AppSessionRequest(f) => tagged!(f),
            AuditEvent::AppSessionEnd(f) => tagged!(f),
            AuditEvent::DbSessionStart(f) => tagged!(f),
            AuditEvent::DbSessionQuery(f) => tagged!(f),
            AuditEvent::DbSessionQueryFailed(f) => tagged!(f),
            AuditEvent::DbSessionEnd(f) => tagged!(f),
        }
    }
}

#[cfg(test)]
#[path = "audit_tests.rs"]
mod tests;
