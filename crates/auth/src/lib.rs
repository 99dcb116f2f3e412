//! The auth service: the cluster's source of truth.
//!
//! It owns the certificate authorities, users and their passwords, roles,
//! provision tokens and the audit log, all kept in a [`backend::Backend`], and
//! issues certificates. Nothing is cached in memory beyond the CAs, so several
//! auth processes sharing one PostgreSQL database serve one cluster.
//!
//! [`http::router`] exposes it as JSON over mutual TLS; [`serve`] runs that
//! router on a TLS listener.

pub mod agents;
pub mod apps;
pub mod azure_join;
pub mod dbs;
pub mod error;
pub mod http;
mod idle;
pub mod presets;
pub mod serve;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::audit::{self, AuditEvent};
use backend::{audit::AuditLog, Backend, Item};
use pki::keystore::{KeyReference, SoftwareKeyStore};
use pki::{CaType, CertAuthority, HostIdentity, Identity};
use rand::RngCore;
use resources::{ProvisionToken, Resource, Role, User};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use error::{exists_as, not_found_as};
pub use error::{AuthError, Result};

/// Failed logins that lock an account (Teleport: 5).
pub const MAX_LOGIN_ATTEMPTS: usize = 5;
/// Window in which failed logins count.
pub const LOGIN_ATTEMPT_WINDOW: Duration = Duration::from_secs(30 * 60);
/// How long an account stays locked.
pub const ACCOUNT_LOCK_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// Validity of an invite link.
pub const INVITE_TTL: Duration = Duration::from_secs(3600);
/// Default validity of a user certificate.
pub const DEFAULT_USER_CERT_TTL: Duration = Duration::from_secs(12 * 3600);
/// Validity of the local admin identity.
pub const ADMIN_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// System role of the local administrator identity.
pub const ADMIN_ROLE: &str = "Admin";
/// Longest resource name (bytes).
pub const MAX_RESOURCE_NAME_LEN: usize = 253;

/// A resource name is the last component of its backend key: a '/' would store it where
/// listing skips it and deletion refuses it (created, then neither seen nor removable), and a
/// control character would forge lines wherever it is printed.
fn check_resource_name(kind: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_RESOURCE_NAME_LEN
        || name.contains('/')
        || name.chars().any(char::is_control)
    {
        return Err(AuthError::BadParameter(format!(
            "bad {kind} name {name:?}: a name is 1 to {MAX_RESOURCE_NAME_LEN} bytes without '/' or control characters"
        )));
    }
    Ok(())
}

/// Who is calling the API, from the client certificate.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The local administrator (tctl on the auth host).
    Admin,
    /// A person, with the identity from their certificate.
    User(Box<Identity>),
    /// An agent (host certificate with a system role).
    Host(Box<Identity>),
    /// No client certificate.
    Anonymous,
}

impl Caller {
    /// Classify a verified client certificate identity.
    pub fn from_identity(id: Identity) -> Caller {
        match id.system_role.as_deref() {
            Some(ADMIN_ROLE) => Caller::Admin,
            Some(_) => Caller::Host(Box::new(id)),
            None => Caller::User(Box::new(id)),
        }
    }

    /// The identity of a person calling; anyone else is denied with `hint` (what to do).
    pub(crate) fn user(&self, hint: &str) -> Result<&Identity> {
        match self {
            Caller::User(id) => Ok(id),
            _ => Err(AuthError::AccessDenied(hint.into())),
        }
    }

    /// The identity of an agent calling; anyone else is denied with `hint` (what to do).
    pub(crate) fn host(&self, hint: &str) -> Result<&Identity> {
        match self {
            Caller::Host(id) => Ok(id),
            _ => Err(AuthError::AccessDenied(hint.into())),
        }
    }

    /// A name for audit events.
    pub fn name(&self) -> String {
        match self {
            Caller::Admin => "admin".into(),
            Caller::User(id) | Caller::Host(id) => id.username.clone(),
            Caller::Anonymous => "anonymous".into(),
        }
    }
}

/// A CA as stored under `authorities/<type>`: `{"cert_pem": ..., <key reference>}`. A
/// software key's reference is its `key_pem` field, so records of every version load.
#[derive(Serialize, Deserialize)]
struct StoredCa {
    cert_pem: String,
    #[serde(flatten)]
    key: KeyReference,
}

#[derive(Serialize, Deserialize)]
struct InviteToken {
    user: String,
}

/// Settings of an auth server.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Cluster name (used when the cluster is first created).
    pub cluster_name: String,
    /// Static tokens `roles:value` from the config file.
    pub static_tokens: Vec<String>,
    /// Public address of the proxy, for invite links.
    pub proxy_public_addr: Option<String>,
    /// `auth_service.azure_join.trust_bundle_path`: extra roots for attested documents.
    pub azure_join_trust_bundle: Option<std::path::PathBuf>,
    /// Extra roots (PEM) for attested documents (tests).
    pub azure_join_extra_roots: Vec<String>,
    /// Outbound HTTP to Azure (Entra ID, ARM, AIA); the environment's proxies and CAs when `None`.
    pub azure_http: Option<azure_mint::http::HttpConfig>,
}

/// The auth service.
pub struct AuthServer {
    backend: Arc<dyn Backend>,
    audit: AuditLog,
    cluster_name: String,
    user_ca: CertAuthority,
    host_ca: CertAuthority,
    db_ca: CertAuthority,
    static_tokens: Vec<String>,
    proxy_public_addr: Option<String>,
    azure_join: azure_join::AzureJoinState,
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// Format a duration as Go does (`12h0m0s`).
pub fn go_duration(d: Duration) -> String {
    resources::Duration(d).to_string()
}

impl AuthServer {
    /// Open the cluster on `backend`: create the cluster name, CAs and preset
    /// roles the first time, load them otherwise. Safe to run from several
    /// processes at once.
    pub async fn init(backend: Arc<dyn Backend>, cfg: AuthConfig) -> Result<Arc<AuthServer>> {
        let cluster_name = match backend.get("cluster_name").await {
            Ok(item) => String::from_utf8_lossy(&item.value).to_string(),
            Err(backend::BackendError::NotFound(_)) => {
                if cfg.cluster_name.is_empty() {
                    return Err(AuthError::BadParameter("cluster name is empty".into()));
                }
                match backend
                    .create(Item::new(
                        "cluster_name",
                        cfg.cluster_name.as_bytes().to_vec(),
                    ))
                    .await
                {
                    Ok(_) => cfg.cluster_name.clone(),
                    Err(backend::BackendError::AlreadyExists(_)) => {
                        let item = backend.get("cluster_name").await?;
                        String::from_utf8_lossy(&item.value).to_string()
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        if !cfg.cluster_name.is_empty() && cfg.cluster_name != cluster_name {
            return Err(AuthError::BadParameter(format!(
                "the storage holds cluster {cluster_name:?}, but the config names {:?}",
                cfg.cluster_name
            )));
        }
        let user_ca = Self::load_or_create_ca(&*backend, &cluster_name, CaType::User).await?;
        let host_ca = Self::load_or_create_ca(&*backend, &cluster_name, CaType::Host).await?;
        let db_ca = Self::load_or_create_ca(&*backend, &cluster_name, CaType::Db).await?;
        for role in presets::preset_roles() {
            let key = format!("roles/{}", role.metadata.name);
            match backend
                .create(Item::new(key, serde_json::to_vec(&role)?))
                .await
            {
                Ok(_) | Err(backend::BackendError::AlreadyExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(addr) = &cfg.proxy_public_addr {
            backend
                .put(Item::new(
                    "cluster/proxy_public_addr",
                    addr.as_bytes().to_vec(),
                ))
                .await?;
        }
        Ok(Arc::new(AuthServer {
            audit: AuditLog::new(backend.clone()),
            backend,
            cluster_name,
            user_ca,
            host_ca,
            db_ca,
            static_tokens: cfg.static_tokens,
            proxy_public_addr: cfg.proxy_public_addr,
            azure_join: azure_join::AzureJoinState::new(
                cfg.azure_join_trust_bundle.as_deref(),
                &cfg.azure_join_extra_roots,
                cfg.azure_http,
            )?,
        }))
    }

    async fn load_or_create_ca(
        backend: &dyn Backend,
        cluster: &str,
        kind: CaType,
    ) -> Result<CertAuthority> {
        // Where CA keys live; every CA signature goes through the keystore's signers.
        let keystore = SoftwareKeyStore;
        let key = format!("authorities/{kind}");
        let stored = match backend.get(&key).await {
            Ok(item) => item,
            Err(backend::BackendError::NotFound(_)) => {
                let ca = CertAuthority::generate_in(&keystore, cluster, kind)?;
                let stored = StoredCa {
                    cert_pem: ca.cert_pem().to_string(),
                    key: ca.key_reference(),
                };
                match backend
                    .create(Item::new(key.clone(), serde_json::to_vec(&stored)?))
                    .await
                {
                    Ok(_) => return Ok(ca),
                    // Another auth server created it first: use theirs.
                    Err(backend::BackendError::AlreadyExists(_)) => backend.get(&key).await?,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(e) => return Err(e.into()),
        };
        let stored: StoredCa = serde_json::from_slice(&stored.value)?;
        Ok(CertAuthority::load(
            &stored.cert_pem,
            &stored.key,
            &keystore,
        )?)
    }

    /// Cluster name.
    pub fn cluster_name(&self) -> &str {
        &self.cluster_name
    }

    /// The user CA.
    pub fn user_ca(&self) -> &CertAuthority {
        &self.user_ca
    }

    /// The host CA.
    pub fn host_ca(&self) -> &CertAuthority {
        &self.host_ca
    }

    /// The database CA.
    pub fn db_ca(&self) -> &CertAuthority {
        &self.db_ca
    }

    /// Settings and caches of the Azure join method.
    pub fn azure_join(&self) -> &azure_join::AzureJoinState {
        &self.azure_join
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The storage.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Record an audit event; failures are logged, never returned.
    pub async fn emit(&self, event: AuditEvent) {
        if let Err(e) = self.audit.emit(event.to_value()).await {
            tracing::error!(error = %e, "failed to write an audit event");
        }
    }

    /// Status for `tctl status`.
    pub fn status(&self) -> api::StatusResponse {
        let cas = [&self.host_ca, &self.user_ca, &self.db_ca]
            .iter()
            .map(|ca| api::CaStatus {
                kind: ca.ca_type().to_string(),
                pin: ca.pin(),
                cert: ca.cert_pem().to_string(),
            })
            .collect();
        api::StatusResponse {
            cluster_name: self.cluster_name.clone(),
            version: api::VERSION.to_string(),
            cas,
            ca_pin: self.host_ca.pin(),
        }
    }

    /// Public address of the proxy (config of this process, else what a proxy
    /// of the cluster stored).
    pub async fn proxy_public_addr(&self) -> Option<String> {
        if let Some(a) = &self.proxy_public_addr {
            return Some(a.clone());
        }
        self.backend
            .get("cluster/proxy_public_addr")
            .await
            .ok()
            .map(|i| String::from_utf8_lossy(&i.value).to_string())
    }

    // ----- authorization -----

    /// Check that `caller` may `verb` resources of `kind`.
    pub async fn authorize(&self, caller: &Caller, kind: &str, verb: &str) -> Result<()> {
        match caller {
            Caller::Admin => Ok(()),
            Caller::User(id) => {
                let checker = self.checker_for_identity(id).await?;
                checker
                    .check_rule(kind, verb)
                    .map_err(|e| AuthError::AccessDenied(e.to_string()))
            }
            Caller::Host(_) | Caller::Anonymous => Err(AuthError::AccessDenied(format!(
                "access denied to perform action \"{verb}\" on \"{kind}\""
            ))),
        }
    }

    async fn checker_for_identity(&self, id: &Identity) -> Result<rbac::AccessChecker> {
        self.checker_for(&id.groups, &id.traits).await
    }

    /// The access of a holder of the roles named `roles`, as they are now, with `traits`.
    pub(crate) async fn checker_for(
        &self,
        roles: &[String],
        traits: &rbac::Traits,
    ) -> Result<rbac::AccessChecker> {
        let roles = self.get_roles(roles).await?;
        rbac::AccessChecker::new(roles, traits)
            .map_err(|e| AuthError::BadParameter(format!("role evaluation failed: {e}")))
    }

    pub(crate) async fn get_roles(&self, names: &[String]) -> Result<Vec<Role>> {
        let mut roles = Vec::with_capacity(names.len());
        for name in names {
            match self.get_role(name).await {
                Ok(r) => roles.push(r),
                Err(AuthError::NotFound(_)) => {
                    return Err(AuthError::NotFound(format!("role {name:?} is not found")))
                }
                Err(e) => return Err(e),
            }
        }
        Ok(roles)
    }

    // ----- roles -----

    /// One role.
    pub async fn get_role(&self, name: &str) -> Result<Role> {
        self.get_record(
            &format!("roles/{name}"),
            format!("role {name:?} is not found"),
        )
        .await
    }

    /// The JSON record under `key`; `missing` is the error's message when there is none.
    async fn get_record<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        missing: String,
    ) -> Result<T> {
        let item = self.backend.get(key).await.map_err(not_found_as(missing))?;
        Ok(serde_json::from_slice(&item.value)?)
    }

    // ----- users -----

    /// One user.
    pub async fn get_user(&self, name: &str) -> Result<User> {
        self.get_record(
            &format!("users/{name}"),
            format!("user {name:?} is not found"),
        )
        .await
    }

    async fn check_user(&self, user: &User) -> Result<()> {
        if user.metadata.name.is_empty() {
            return Err(AuthError::BadParameter("user name is empty".into()));
        }
        check_resource_name("user", &user.metadata.name)?;
        if user.spec.roles.is_empty() {
            return Err(AuthError::BadParameter(format!(
                "user {:?} has no roles: give at least one with --roles",
                user.metadata.name
            )));
        }
        for role in &user.spec.roles {
            self.get_role(role).await?;
        }
        Ok(())
    }

    /// Create a user and an invite token for setting the password.
    pub async fn create_user(
        &self,
        caller: &Caller,
        user: User,
    ) -> Result<api::CreateUserResponse> {
        self.write_user(caller, &user, true).await?;
        let name = user.metadata.name;
        let token = random_hex(16);
        let expires = SystemTime::now() + INVITE_TTL;
        self.backend
            .put(
                Item::new(
                    format!("usertokens/{token}"),
                    serde_json::to_vec(&InviteToken { user: name })?,
                )
                .with_expiry(expires),
            )
            .await?;
        let addr = self
            .proxy_public_addr()
            .await
            .unwrap_or_else(|| "<proxyhost>:3080".into());
        Ok(api::CreateUserResponse {
            invite_url: format!("https://{addr}/web/invite/{token}"),
            invite_token: token,
            ttl_seconds: INVITE_TTL.as_secs(),
        })
    }

    /// Replace a user's spec (roles, traits).
    pub async fn update_user(&self, caller: &Caller, user: User) -> Result<()> {
        self.write_user(caller, &user, false).await
    }

    /// Create (`create`) or replace a user's record, after checking the caller and the user,
    /// and audit it.
    async fn write_user(&self, caller: &Caller, user: &User, create: bool) -> Result<()> {
        self.authorize(caller, "user", if create { "create" } else { "update" })
            .await?;
        self.check_user(user).await?;
        let name = &user.metadata.name;
        let item = Item::new(format!("users/{name}"), serde_json::to_vec(user)?);
        if create {
            let exists = exists_as(format!("user {name:?} already exists"));
            self.backend.create(item).await.map_err(exists)?;
        } else {
            let missing = not_found_as(format!("user {name:?} is not found"));
            self.backend.update(item).await.map_err(missing)?;
        }
        let change = audit::UserChange {
            user: caller.name(),
            name: name.clone(),
            roles: user.spec.roles.clone(),
        };
        self.emit(if create {
            AuditEvent::UserCreate(change)
        } else {
            AuditEvent::UserUpdate(change)
        })
        .await;
        Ok(())
    }

    /// Set a password from an invite token; the token is spent.
    pub async fn set_password_with_token(&self, token: &str, password: &str) -> Result<String> {
        const GONE: &str = "invite token is not found or expired";
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(AuthError::NotFound(GONE.into()));
        }
        let key = format!("usertokens/{token}");
        let invite: InviteToken = self.get_record(&key, GONE.into()).await?;
        check_password_strength(password)?;
        // Spend the token first: a second use fails even if hashing is slow.
        self.backend
            .delete(&key)
            .await
            .map_err(not_found_as(GONE.into()))?;
        self.get_user(&invite.user).await?;
        let hash = hash_password(password.to_string()).await?;
        self.backend
            .put(Item::new(
                format!("passwords/{}", invite.user),
                hash.into_bytes(),
            ))
            .await?;
        self.emit(AuditEvent::UserPasswordChange(audit::PasswordChange {
            user: invite.user.clone(),
        }))
        .await;
        Ok(invite.user)
    }

    /// Check a password; count failures and lock the account after
    /// [`MAX_LOGIN_ATTEMPTS`] within [`LOGIN_ATTEMPT_WINDOW`].
    pub async fn authenticate(&self, user: &str, password: &str, remote: &str) -> Result<User> {
        let result = self.authenticate_inner(user, password).await;
        // The name is the client's: a name no user can have is recorded shortened.
        let user: String = if result.is_ok() || check_resource_name("user", user).is_ok() {
            user.to_string()
        } else {
            user.chars().take(64).collect()
        };
        self.emit(AuditEvent::UserLogin(audit::UserLogin {
            user,
            method: audit::LoginMethod::Local,
            outcome: audit::Outcome::of(&result),
            remote_addr: remote.to_string(),
        }))
        .await;
        result
    }

    async fn authenticate_inner(&self, user: &str, password: &str) -> Result<User> {
        // One message for every failure so that user names can't be probed.
        let invalid = || AuthError::AccessDenied("invalid user name or password".into());
        if check_resource_name("user", user).is_err() {
            // No such user can exist: nothing is looked up or recorded under this name.
            return Err(invalid());
        }
        if let Ok(lock) = self.backend.get(&format!("locks/users/{user}")).await {
            let until = String::from_utf8_lossy(&lock.value).to_string();
            return Err(AuthError::LimitExceeded(format!(
                "user {user:?} has exceeded the maximum number of failed login attempts and is locked until {until}; contact your cluster administrator"
            )));
        }
        let stored = match self.backend.get(&format!("passwords/{user}")).await {
            Ok(item) => Some(String::from_utf8_lossy(&item.value).to_string()),
            Err(backend::BackendError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let ok = match stored {
            Some(hash) => verify_password(password.to_string(), hash).await?,
            None => {
                // Spend the same time as a real check.
                let _ = hash_password(password.to_string()).await;
                false
            }
        };
        if !ok {
            self.record_failed_login(user).await?;
            return Err(invalid());
        }
        self.get_user(user).await.map_err(|_| invalid())
    }

    async fn record_failed_login(&self, user: &str) -> Result<()> {
        let prefix = format!("login_attempts/{user}/");
        let key = format!("{prefix}{}", random_hex(8));
        self.backend
            .put(
                Item::new(key, b"1".to_vec()).with_expiry(SystemTime::now() + LOGIN_ATTEMPT_WINDOW),
            )
            .await?;
        let attempts = backend::get_prefix(&*self.backend, &prefix).await?;
        if attempts.len() >= MAX_LOGIN_ATTEMPTS {
            let until = now() + ACCOUNT_LOCK_INTERVAL;
            let until_text = until
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            self.backend
                .put(
                    Item::new(format!("locks/users/{user}"), until_text.into_bytes())
                        .with_expiry(SystemTime::now() + ACCOUNT_LOCK_INTERVAL),
                )
                .await?;
            self.backend
                .delete_range(&prefix, &backend::prefix_end(&prefix))
                .await?;
            self.emit(AuditEvent::LockCreated(audit::LockCreated {
                user: "system".into(),
                target: audit::LockTarget {
                    user: user.to_string(),
                },
                reason: "too many failed login attempts".into(),
            }))
            .await;
        }
        Ok(())
    }

    // ----- certificates -----

    /// Issue a user certificate over `public_key_der`, valid for `ttl` capped
    /// by the user's roles.
    pub async fn generate_user_cert(
        &self,
        username: &str,
        public_key_der: &[u8],
        ttl: Duration,
    ) -> Result<api::CertsResponse> {
        let user = self.get_user(username).await?;
        let traits: rbac::Traits = user.spec.traits.clone();
        let checker = self.checker_for(&user.spec.roles, &traits).await?;
        let requested = if ttl.is_zero() {
            DEFAULT_USER_CERT_TTL
        } else {
            ttl
        };
        let ttl = checker.adjust_session_ttl(requested);
        let azure_identities = checker.check_azure_identities(ttl).unwrap_or_default();
        let identity = Identity {
            username: username.to_string(),
            groups: user.spec.roles.clone(),
            logins: checker.logins(),
            route_to_cluster: self.cluster_name.clone(),
            traits: traits.clone(),
            teleport_cluster: self.cluster_name.clone(),
            expires: now() + ttl,
            azure_identities,
            db_users: checker.db_users(),
            db_names: checker.db_names(),
            ..Default::default()
        };
        let cert = self.user_ca.sign_identity(&identity, public_key_der)?;
        self.emit(AuditEvent::CertCreate(audit::CertCreate::User {
            identity: audit::CertIdentity {
                user: username.to_string(),
                roles: identity.groups,
                expires: identity
                    .expires
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            },
        }))
        .await;
        Ok(api::CertsResponse {
            username: username.to_string(),
            tls_cert: cert,
            host_ca_certs: vec![self.host_ca.cert_pem().to_string()],
            cluster_name: self.cluster_name.clone(),
        })
    }

    /// Password login: check the password, then certify the key.
    pub async fn login(&self, req: &api::LoginRequest, remote: &str) -> Result<api::CertsResponse> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(req.tls_pub_key.as_bytes())
            .map_err(|_| AuthError::BadParameter("tls_pub_key is not base64".into()))?;
        self.authenticate(&req.user, &req.pass, remote).await?;
        self.generate_user_cert(&req.user, &key, Duration::from_secs(req.ttl_seconds))
            .await
    }

    /// Identity of the local administrator, as PEM (key, certificate, host CA).
    pub fn admin_identity_pem(&self) -> Result<String> {
        let key = pki::generate_key()?;
        let host = HostIdentity {
            host_id: "admin".to_string(),
            nodename: "admin".to_string(),
            cluster_name: self.cluster_name.clone(),
            system_roles: vec![ADMIN_ROLE.to_string()],
            dns_names: vec![],
            expires: now() + ADMIN_CERT_TTL,
        };
        let cert = self.host_ca.sign_host(&host, &key.public_key_der)?;
        Ok(format!(
            "{}{}{}",
            ensure_newline(&key.private_key_pem),
            ensure_newline(&cert),
            ensure_newline(self.host_ca.cert_pem())
        ))
    }

    /// A server certificate for one of this cluster's listeners, for system
    /// role `role` (`Auth` for the auth port, `Proxy` for the proxy's cluster
    /// routes): `dns_names` come from this process's configuration, never
    /// from a peer.
    pub fn server_keypair(
        &self,
        host_id: &str,
        role: resources::SystemRole,
        dns_names: Vec<String>,
    ) -> Result<(String, String)> {
        let key = pki::generate_key()?;
        let mut names = dns_names;
        names.push(format!(
            "{}.teleport.cluster.local",
            hex::encode(self.cluster_name.as_bytes())
        ));
        names.push("localhost".into());
        names.push("127.0.0.1".into());
        let host = HostIdentity {
            host_id: host_id.to_string(),
            nodename: host_id.to_string(),
            cluster_name: self.cluster_name.clone(),
            system_roles: vec![role.to_string()],
            dns_names: names,
            expires: now() + ADMIN_CERT_TTL,
        };
        let cert = self.host_ca.sign_host(&host, &key.public_key_der)?;
        Ok((cert, key.private_key_pem))
    }

    // ----- generic resources -----

    /// Create or (with `force`) overwrite one resource. Returns `created` or
    /// `updated`.
    pub async fn upsert_resource(
        &self,
        caller: &Caller,
        resource: Resource,
        force: bool,
    ) -> Result<&'static str> {
        resource
            .validate()
            .map_err(|e| AuthError::BadParameter(e.to_string()))?;
        let kind = resource.kind().to_string();
        let name = resource.name().to_string();
        check_resource_name(&kind, &name)?;
        let (key, value) = match &resource {
            Resource::Role(role) => {
                rbac::validate_role(role).map_err(|e| AuthError::BadParameter(e.to_string()))?;
                (format!("roles/{name}"), serde_json::to_vec(role)?)
            }
            Resource::User(user) => {
                self.check_user(user).await?;
                (format!("users/{name}"), serde_json::to_vec(user)?)
            }
            Resource::Token(token) => (format!("tokens/{name}"), serde_json::to_vec(token)?),
            Resource::App(app) => (format!("apps/{name}"), serde_json::to_vec(app)?),
            Resource::Database(db) => (format!("dbs/{name}"), serde_json::to_vec(db)?),
            Resource::ClusterName(_) | Resource::CertAuthority(_) => {
                return Err(AuthError::BadParameter(format!(
                    "resources of kind {kind:?} are managed by the auth service and cannot be created"
                )))
            }
        };
        let audit_kind = audit::ResourceKind::from_name(&kind).ok_or_else(|| {
            AuthError::BadParameter(format!("resources of kind {kind:?} cannot be created"))
        })?;
        let exists = match self.backend.get(&key).await {
            Ok(_) => true,
            Err(backend::BackendError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        let verb = if exists { "update" } else { "create" };
        self.authorize(caller, &kind, verb).await?;
        if exists && !force {
            return Err(AuthError::AlreadyExists(format!(
                "{kind} {name:?} already exists; use -f or --force flag to overwrite"
            )));
        }
        let mut item = Item::new(key.clone(), value);
        if let Resource::Token(t) = &resource {
            if let Some(exp) = t.metadata.expires {
                item = item.with_expiry(SystemTime::from(exp));
            }
        }
        if exists {
            self.backend.put(item).await?;
        } else {
            self.backend.create(item).await.map_err(exists_as(format!(
                "{kind} {name:?} already exists; use -f or --force flag to overwrite"
            )))?;
        }
        self.emit(AuditEvent::ResourceWrite(audit::ResourceWrite {
            user: caller.name(),
            name,
            kind: audit_kind,
            created: !exists,
        }))
        .await;
        Ok(if exists { "updated" } else { "created" })
    }

    fn prefix_of(kind: &str) -> Result<&'static str> {
        Ok(match kind {
            "role" => "roles/",
            "user" => "users/",
            "token" => "tokens/",
            "app" => "apps/",
            "db" => "dbs/",
            "cert_authority" => "authorities/",
            "cluster_name" => "cluster_name",
            other => {
                return Err(AuthError::BadParameter(format!(
                    "unsupported resource kind {other:?}"
                )))
            }
        })
    }

    /// Resources of a kind, optionally one by name.
    pub async fn get_resources(
        &self,
        caller: &Caller,
        kind: &str,
        name: Option<&str>,
    ) -> Result<Vec<serde_json::Value>> {
        let prefix = Self::prefix_of(kind)?;
        self.authorize(caller, kind, if name.is_some() { "read" } else { "list" })
            .await?;
        if kind == "cluster_name" {
            return Ok(vec![serde_json::json!({
                "kind": "cluster_name", "version": "v2",
                "metadata": {"name": "cluster-name"},
                "spec": {"cluster_name": self.cluster_name, "cluster_id": ""},
            })]);
        }
        if kind == "cert_authority" {
            let mut out = Vec::new();
            for ca in [&self.user_ca, &self.host_ca, &self.db_ca] {
                if name.is_some_and(|n| n != ca.ca_type().to_string()) {
                    continue;
                }
                out.push(serde_json::json!({
                    "kind": "cert_authority", "version": "v2",
                    "metadata": {"name": self.cluster_name},
                    "spec": {"cluster_name": self.cluster_name, "type": ca.ca_type().to_string(),
                             "active_keys": {"tls": [{"cert": ca.cert_pem()}]}},
                }));
            }
            return Ok(out);
        }
        let items = match name {
            Some(n) => vec![self
                .backend
                .get(&format!("{prefix}{n}"))
                .await
                .map_err(not_found_as(format!("{kind} {n:?} is not found")))?],
            None => backend::get_prefix(&*self.backend, prefix).await?,
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            // `users/<name>` only: nested keys are not resources.
            if item.key[prefix.len()..].contains('/') {
                continue;
            }
            let mut value: serde_json::Value = serde_json::from_slice(&item.value)?;
            if kind == "token" {
                // The token value is its name; only admins and editors see it (checked above).
                value["metadata"]["revision"] = serde_json::Value::Null;
            }
            out.push(value);
        }
        Ok(out)
    }

    /// Delete one resource.
    pub async fn delete_resource(&self, caller: &Caller, kind: &str, name: &str) -> Result<()> {
        let prefix = Self::prefix_of(kind)?;
        if matches!(kind, "cert_authority" | "cluster_name") {
            return Err(AuthError::BadParameter(format!(
                "resources of kind {kind:?} cannot be deleted"
            )));
        }
        let audit_kind = audit::ResourceKind::from_name(kind).ok_or_else(|| {
            AuthError::BadParameter(format!("resources of kind {kind:?} cannot be deleted"))
        })?;
        self.authorize(caller, kind, "delete").await?;
        if name.is_empty() || name.contains('/') {
            return Err(AuthError::BadParameter(format!("bad {kind} name {name:?}")));
        }
        if kind == "role" {
            // Refuse to orphan users.
            let users = backend::get_prefix(&*self.backend, "users/").await?;
            for item in users {
                if let Ok(u) = serde_json::from_slice::<User>(&item.value) {
                    if u.spec.roles.iter().any(|r| r == name) {
                        return Err(AuthError::BadParameter(format!(
                            "failed to delete role {name:?} that is still in use by user {:?}",
                            u.metadata.name
                        )));
                    }
                }
            }
        }
        self.backend
            .delete(&format!("{prefix}{name}"))
            .await
            .map_err(not_found_as(format!("{kind} {name:?} is not found")))?;
        if kind == "user" {
            let _ = self.backend.delete(&format!("passwords/{name}")).await;
        }
        self.emit(AuditEvent::ResourceDelete(audit::ResourceDelete {
            user: caller.name(),
            name: name.to_string(),
            kind: audit_kind,
        }))
        .await;
        Ok(())
    }

    /// Create a provision token (tctl tokens add).
    pub async fn create_token(
        &self,
        caller: &Caller,
        roles: Vec<resources::SystemRole>,
        ttl: Duration,
        value: Option<String>,
    ) -> Result<ProvisionToken> {
        self.authorize(caller, "token", "create").await?;
        if roles.is_empty() {
            return Err(AuthError::BadParameter(
                "a token needs at least one role (--type)".into(),
            ));
        }
        let name = value.unwrap_or_else(|| random_hex(16));
        let expires = now() + ttl;
        let token: ProvisionToken = serde_json::from_value(serde_json::json!({
            "kind": "token", "version": "v2",
            "metadata": {"name": name, "expires": expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()},
            "spec": {"roles": roles.iter().map(|r| r.to_string()).collect::<Vec<_>>(), "join_method": "token"},
        }))
        .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.backend
            .create(
                Item::new(format!("tokens/{name}"), serde_json::to_vec(&token)?)
                    .with_expiry(SystemTime::from(expires)),
            )
            .await?;
        self.emit(AuditEvent::JoinTokenCreate(audit::JoinTokenCreate {
            user: caller.name(),
            roles,
            join_method: resources::JoinMethod::Token,
        }))
        .await;
        Ok(token)
    }

    /// Static tokens from the configuration, as `(roles, value)`.
    pub fn static_tokens(&self) -> &[String] {
        &self.static_tokens
    }

    /// Sign a certificate for a user on an administrator's request (tctl auth sign).
    pub async fn sign_user_for(
        &self,
        caller: &Caller,
        req: &api::SignUserRequest,
    ) -> Result<api::CertsResponse> {
        use base64::Engine;
        self.authorize(caller, "user", "update").await?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(req.tls_pub_key.as_bytes())
            .map_err(|_| AuthError::BadParameter("tls_pub_key is not base64".into()))?;
        self.generate_user_cert(&req.user, &key, Duration::from_secs(req.ttl_seconds))
            .await
    }

    /// Audit events.
    pub async fn search_events(
        &self,
        caller: &Caller,
        q: &api::EventsQuery,
    ) -> Result<Vec<serde_json::Value>> {
        self.authorize(caller, "event", "list").await?;
        let parse = |s: &Option<String>, default: OffsetDateTime| -> Result<OffsetDateTime> {
            match s {
                Some(t) => OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                    .map_err(|e| AuthError::BadParameter(format!("bad time {t:?}: {e}"))),
                None => Ok(default),
            }
        };
        let to = parse(&q.to, now() + Duration::from_secs(60))?;
        let from = parse(&q.from, now() - Duration::from_secs(24 * 3600))?;
        let types: Vec<String> = q
            .types
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Ok(self
            .audit
            .search(from, to, &types, q.limit.unwrap_or(1000))
            .await?)
    }
}

fn ensure_newline(s: &str) -> String {
    if s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}

/// Minimum password length, as Teleport's local auth.
pub const MIN_PASSWORD_LEN: usize = 12;

fn check_password_strength(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(AuthError::BadParameter(format!(
            "password is too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    if password.len() > 128 {
        return Err(AuthError::BadParameter(
            "password is too long: use at most 128 bytes".into(),
        ));
    }
    Ok(())
}

async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw);
        let salt = SaltString::encode_b64(&raw)
            .map_err(|e| AuthError::Internal(format!("password salt: {e}")))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| AuthError::Internal(e.to_string()))?
}

async fn verify_password(password: String, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| AuthError::Internal(format!("stored password hash is corrupt: {e}")))?;
        Ok(argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| AuthError::Internal(e.to_string()))?
}

/// Build a user resource from `tctl users add` flags.
pub fn new_user(
    name: &str,
    roles: Vec<String>,
    traits: BTreeMap<String, Vec<String>>,
) -> Result<User> {
    serde_json::from_value(serde_json::json!({
        "kind": "user", "version": "v2",
        "metadata": {"name": name},
        "spec": {"roles": roles, "traits": traits},
    }))
    .map_err(|e| AuthError::BadParameter(e.to_string()))
}

#[cfg(test)]
mod ca_store_tests;
#[cfg(test)]
mod tests;
