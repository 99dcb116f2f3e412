//! Agents: joining with a provision token, host certificate renewal, and the
//! app and database servers they heartbeat.

use std::time::{Duration, SystemTime};

use api::audit::{self, AuditEvent};
use backend::Item;
use pki::{HostIdentity, Identity};
use resources::{App, Database, JoinMethod, SystemRole};

use crate::{now, AuthError, AuthServer, Caller, Result};

/// Validity of host certificates; agents renew at half-life.
pub const HOST_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a heartbeat keeps a server registered.
pub const SERVER_TTL: Duration = Duration::from_secs(45);
/// How long a tunnel record lives without a refresh.
pub const TUNNEL_TTL: Duration = Duration::from_secs(20);
/// How long a proxy record lives without a refresh.
pub const PROXY_TTL: Duration = Duration::from_secs(60);

pub use api::inventory::{
    safe_name, Heartbeat, ProxyEntry, ServerEntry, TunnelEntry, FEATURE_DB_MUX,
};
pub use api::join::{HostCerts, RegisterRequest};

/// Most features a heartbeat may announce, and the longest name of one.
const MAX_FEATURES: usize = 32;
const MAX_FEATURE_LEN: usize = 64;

/// The DNS names of an agent's host certificate: its host ID and its node
/// name, each when it is a host name ([`pki::names::check_agent_name`]), and
/// nothing a peer asks for beyond them. A reserved name or a wildcard as host
/// ID or node name is refused; so is any other name in `asked`. Public for
/// the join request fuzz target.
pub fn agent_cert_names(host_id: &str, node_name: &str, asked: &[String]) -> Result<Vec<String>> {
    use pki::names::{check_agent_name, NameError};
    let mut names = Vec::new();
    for (field, name) in [("host_id", host_id), ("node_name", node_name)] {
        match check_agent_name(name) {
            Ok(()) => {
                if !names.iter().any(|n: &String| n.eq_ignore_ascii_case(name)) {
                    names.push(name.to_string());
                }
            }
            // A node name that is not a DNS name (`my_host`) stays out of
            // the certificate but does not stop the join.
            Err(NameError::NotHostName(_)) => {}
            Err(e) => return Err(AuthError::BadParameter(format!("{field}: {e}"))),
        }
    }
    if let Some(extra) = asked
        .iter()
        .find(|a| !names.iter().any(|n| n.eq_ignore_ascii_case(a)))
    {
        let why = match check_agent_name(extra) {
            Err(e) => e.to_string(),
            Ok(()) => format!("{extra:?} is not this agent's host ID or node name"),
        };
        return Err(AuthError::BadParameter(format!(
            "dns_names: {why}; an agent's certificate names only its host ID and node name, which the auth service sets: remove dns_names from the request"
        )));
    }
    Ok(names)
}

/// What every join method checks first: the request's host ID is a [`safe_name`], and its
/// roles (each entry a comma-separated list) name at least one system role.
pub(crate) fn join_roles(host_id: &str, roles: &[String]) -> Result<Vec<SystemRole>> {
    if !safe_name(host_id) {
        return Err(AuthError::BadParameter(
            "host_id must be letters, digits, '-', '_' or '.'".into(),
        ));
    }
    let asked: Vec<SystemRole> = roles
        .iter()
        .map(|r| SystemRole::parse_list(r))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| AuthError::BadParameter(e.to_string()))?
        .into_iter()
        .flatten()
        .collect();
    if asked.is_empty() {
        return Err(AuthError::BadParameter(
            "the join request names no role".into(),
        ));
    }
    Ok(asked)
}

impl AuthServer {
    /// Check a join attempt and issue host certificates. Every outcome is
    /// audited as `instance.join`.
    pub async fn register_with_token(
        &self,
        req: &RegisterRequest,
        remote: &str,
    ) -> Result<HostCerts> {
        let result = self.register_inner(req).await;
        self.emit(AuditEvent::InstanceJoin(audit::InstanceJoin {
            host_id: req.host_id.clone(),
            node_name: req.node_name.clone(),
            role: req.roles.join(","),
            method: resources::JoinMethod::Token,
            // The token's name is its secret value.
            token_name: None,
            outcome: audit::Outcome::of(&result),
            azure: None,
            remote_addr: remote.to_string(),
        }))
        .await;
        result
    }

    async fn register_inner(&self, req: &RegisterRequest) -> Result<HostCerts> {
        let asked = join_roles(&req.host_id, &req.roles)?;
        let allowed = self.token_roles(&req.token).await?;
        for role in &asked {
            if !allowed.contains(role) {
                return Err(AuthError::AccessDenied(format!(
                    "the token does not allow joining as {role}: it allows {}; create one with tctl tokens add --type={}",
                    allowed.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(","),
                    role.to_string().to_lowercase()
                )));
            }
        }
        let roles: Vec<String> = asked.iter().map(|r| r.to_string()).collect();
        self.issue_host_certs(
            &req.host_id,
            &req.node_name,
            roles,
            &req.public_key,
            &req.dns_names,
        )
    }

    async fn token_roles(&self, token: &str) -> Result<Vec<SystemRole>> {
        let invalid = || {
            AuthError::AccessDenied(
                "the join token is not valid: it does not exist or has expired; create a new one with tctl tokens add".into(),
            )
        };
        if token.is_empty() || token.contains('/') || token.len() > 512 {
            return Err(invalid());
        }
        for st in self.static_tokens() {
            if let Some((roles, value)) = st.rsplit_once(':') {
                if subtle_eq(value.as_bytes(), token.as_bytes()) {
                    return resources::SystemRole::parse_list(roles)
                        .map_err(|e| AuthError::Internal(format!("static token: {e}")));
                }
            }
        }
        let t = self.live_token(token).await?.ok_or_else(invalid)?;
        if t.spec.join_method != JoinMethod::Token {
            return Err(AuthError::AccessDenied(format!(
                "the token uses the {:?} join method: set join_params.method to it",
                t.spec.join_method.as_str()
            )));
        }
        Ok(t.spec.roles)
    }

    /// The provision token `name`, or None when it does not exist or has
    /// expired.
    pub(crate) async fn live_token(&self, name: &str) -> Result<Option<resources::ProvisionToken>> {
        let item = match self.backend().get(&format!("tokens/{name}")).await {
            Ok(item) => item,
            Err(backend::BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let t: resources::ProvisionToken = serde_json::from_slice(&item.value)?;
        Ok(t.metadata.expires.is_none_or(|e| e > now()).then_some(t))
    }

    /// Sign host certificates for an agent that proved itself.
    pub fn issue_host_certs(
        &self,
        host_id: &str,
        node_name: &str,
        roles: Vec<String>,
        public_key_b64: &str,
        dns_names: &[String],
    ) -> Result<HostCerts> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(public_key_b64.as_bytes())
            .map_err(|_| AuthError::BadParameter("public_key is not base64".into()))?;
        if let Some(role) = roles.iter().find(|r| {
            pki::tls::CLUSTER_SERVER_ROLES.contains(&r.as_str()) || *r == crate::ADMIN_ROLE
        }) {
            return Err(AuthError::AccessDenied(format!(
                "agents cannot join as {role}: the auth service and proxy get their certificates from the cluster itself, not by joining"
            )));
        }
        let names = agent_cert_names(host_id, node_name, dns_names)?;
        let host = HostIdentity {
            host_id: host_id.to_string(),
            nodename: node_name.to_string(),
            cluster_name: self.cluster_name().to_string(),
            system_roles: roles,
            dns_names: names,
            expires: now() + HOST_CERT_TTL,
        };
        let cert = self.host_ca().sign_host(&host, &key)?;
        Ok(HostCerts {
            tls_cert: cert,
            host_ca_certs: vec![self.host_ca().cert_pem().to_string()],
            user_ca_certs: vec![self.user_ca().cert_pem().to_string()],
            cluster_name: self.cluster_name().to_string(),
        })
    }

    /// Renew the calling agent's own host certificate.
    pub async fn renew_host_certs(
        &self,
        caller: &Caller,
        public_key_b64: &str,
    ) -> Result<HostCerts> {
        let id = caller.host("only agents (host certificates) may renew host certificates")?;
        self.issue_host_certs(
            &id.username,
            &id.username,
            id.groups.clone(),
            public_key_b64,
            &[],
        )
    }

    /// Record a heartbeat from the calling agent.
    pub async fn heartbeat(&self, caller: &Caller, hb: Heartbeat) -> Result<()> {
        let id = caller.host("only agents may send heartbeats")?;
        if hb.features.len() > MAX_FEATURES
            || hb
                .features
                .iter()
                .any(|f| f.is_empty() || f.len() > MAX_FEATURE_LEN)
        {
            return Err(AuthError::BadParameter(format!(
                "a heartbeat announces at most {MAX_FEATURES} features, each of 1 to {MAX_FEATURE_LEN} bytes"
            )));
        }
        let (prefix, role, name, app, db) = match (hb.kind.as_str(), hb.app, hb.db) {
            ("app", Some(app), _) => {
                check_announced(
                    "app",
                    &app.metadata.name,
                    app.validate(),
                    app.check_served_text(),
                )?;
                // It is copied into the certificates of the app's sessions.
                let addr = &app.spec.public_addr;
                if addr.len() > 300 || addr.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err(AuthError::BadParameter(format!(
                        "app {:?} has a bad public_addr {addr:?}: give host[:port]",
                        app.metadata.name
                    )));
                }
                let name = app.metadata.name.clone();
                ("app_servers", "App", name, Some(app), None)
            }
            ("db", _, Some(db)) => {
                check_announced(
                    "database",
                    &db.metadata.name,
                    db.validate(),
                    db.check_served_text(),
                )?;
                let name = db.metadata.name.clone();
                ("db_servers", "Db", name, None, Some(db))
            }
            _ => {
                return Err(AuthError::BadParameter(
                    "a heartbeat carries an app or a db".into(),
                ))
            }
        };
        let entry = ServerEntry {
            host_id: id.username.clone(),
            hostname: id.username.clone(),
            app,
            db,
            features: hb.features,
        };
        if !id.groups.iter().any(|g| g == role) {
            return Err(AuthError::AccessDenied(format!(
                "this agent did not join with the {role} role"
            )));
        }
        if !safe_name(&name) {
            return Err(AuthError::BadParameter(format!(
                "bad resource name {name:?}"
            )));
        }
        self.put_expiring(
            format!("{prefix}/{name}/{}", id.username),
            &entry,
            SERVER_TTL,
        )
        .await
    }

    /// Store `record` as JSON under `key` for `ttl`.
    async fn put_expiring(
        &self,
        key: String,
        record: &impl serde::Serialize,
        ttl: Duration,
    ) -> Result<()> {
        let item = Item::new(key, serde_json::to_vec(record)?);
        self.backend()
            .put(item.with_expiry(SystemTime::now() + ttl))
            .await?;
        Ok(())
    }

    /// The records under `prefix` that parse as `T` (one that does not is left out).
    async fn list_records<T: serde::de::DeserializeOwned>(&self, prefix: &str) -> Result<Vec<T>> {
        let items = backend::get_prefix(&**self.backend(), prefix).await?;
        Ok(items
            .iter()
            .filter_map(|i| serde_json::from_slice(&i.value).ok())
            .collect())
    }

    /// Registered servers of a kind (`app` or `db`), every agent's entry.
    pub async fn servers(&self, kind: &str) -> Result<Vec<ServerEntry>> {
        let prefix = match kind {
            "app" => "app_servers/",
            "db" => "db_servers/",
            other => {
                return Err(AuthError::BadParameter(format!(
                    "unknown server kind {other:?}"
                )))
            }
        };
        let items = backend::get_prefix(&**self.backend(), prefix).await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match serde_json::from_slice(&item.value) {
                Ok(e) => out.push(e),
                Err(e) => {
                    tracing::warn!(key = %item.key, error = %e, "skipping a corrupt server entry")
                }
            }
        }
        Ok(out)
    }

    /// Apps the calling user may access, one entry per app name.
    pub async fn list_apps_for(&self, caller: &Caller) -> Result<Vec<App>> {
        let id = caller.user("log in with tsh login to list apps")?;
        self.visible(
            id,
            "app",
            |entry| entry.app.map(|app| (app.metadata.name.clone(), app)),
            |checker, app| checker.check_access_to_app(&app.all_labels()).is_ok(),
        )
        .await
    }

    /// Databases the calling user may see, one entry per name.
    pub async fn list_dbs_for(&self, caller: &Caller) -> Result<Vec<Database>> {
        let id = caller.user("log in with tsh login to list databases")?;
        self.visible(
            id,
            "db",
            |entry| entry.db.map(|db| (db.metadata.name.clone(), db)),
            |checker, db| {
                checker
                    .check_access_to_db(&db.all_labels(), None, None)
                    .is_ok()
            },
        )
        .await
    }

    /// What the user of `id` may see among the agents' servers of `kind`, one per name:
    /// `pick` takes an entry's name and resource, `allowed` asks the user's access about it.
    async fn visible<T>(
        &self,
        id: &Identity,
        kind: &str,
        pick: impl Fn(ServerEntry) -> Option<(String, T)>,
        allowed: impl Fn(&rbac::AccessChecker, &T) -> bool,
    ) -> Result<Vec<T>> {
        let checker = self.checker_for_identity(id).await?;
        let mut seen = std::collections::BTreeMap::new();
        for (name, resource) in self.servers(kind).await?.into_iter().filter_map(pick) {
            if allowed(&checker, &resource) {
                seen.entry(name).or_insert(resource);
            }
        }
        Ok(seen.into_values().collect())
    }
}

/// What a heartbeat announces (`what` named `name`): `valid`, its validation, and `text`, the
/// check of its names, labels and description, which reach users' terminals.
fn check_announced(
    what: &str,
    name: &str,
    valid: std::result::Result<(), impl std::fmt::Display>,
    text: std::result::Result<(), String>,
) -> Result<()> {
    valid.map_err(|e| AuthError::BadParameter(e.to_string()))?;
    text.map_err(|e| AuthError::BadParameter(format!("{what} {name:?} cannot be announced: {e}")))
}

fn subtle_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AuthServer {
    /// Record that `proxy` reached `server_id` through its tunnel just now.
    pub async fn record_tunnel(&self, server_id: &str, proxy: &str) -> Result<()> {
        let entry = TunnelEntry {
            server_id: server_id.to_string(),
            proxy: proxy.to_string(),
            last_seen: now()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let key = format!("tunnels/{server_id}/{}", proxy.replace('/', "_"));
        self.put_expiring(key, &entry, TUNNEL_TTL).await
    }

    /// Agents reachable through a proxy's tunnel (`tctl inventory ls`).
    pub async fn inventory(&self, caller: &Caller) -> Result<Vec<TunnelEntry>> {
        self.authorize(caller, "app_server", "list").await?;
        self.list_records("tunnels/").await
    }

    /// Record (refresh) a proxy of the cluster.
    pub async fn record_proxy(&self, id: &str, addr: &str) -> Result<()> {
        let entry = ProxyEntry {
            id: id.to_string(),
            addr: addr.to_string(),
        };
        let key = format!("proxies/{}", id.replace('/', "_"));
        self.put_expiring(key, &entry, PROXY_TTL).await
    }

    /// The cluster's proxies (agents connect a tunnel to each).
    pub async fn proxies(&self, caller: &Caller) -> Result<Vec<ProxyEntry>> {
        if matches!(caller, Caller::Anonymous) {
            return Err(AuthError::AccessDenied(
                "identify yourself to list proxies".into(),
            ));
        }
        self.list_records("proxies/").await
    }
}
