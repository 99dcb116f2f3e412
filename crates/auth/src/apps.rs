//! App sessions: certificates routed to one app (and, for Azure, carrying
//! the chosen identity), what agents may read to re-check access, and the
//! audit events agents send.

use std::time::Duration;

use api::audit::{self, AuditEvent};
use pki::{Identity, RouteToApp};

pub use api::certs::{AppCertRequest, AppCertResponse};

use crate::{now, random_hex, AuthError, AuthServer, Caller, Result};

impl AuthServer {
    /// Issue an app certificate for the calling user.
    pub async fn generate_app_cert(
        &self,
        caller: &Caller,
        req: &AppCertRequest,
    ) -> Result<AppCertResponse> {
        let id = caller.user("log in with tsh login to get app certificates")?;
        if id.route_to_app.is_some() {
            return Err(AuthError::AccessDenied(
                "an app certificate cannot be used to get another one".into(),
            ));
        }
        check_cert_text("azure_identity", &req.azure_identity)?;
        let (key, user, checker) = self
            .session_cert_basis(&id.username, &req.public_key)
            .await?;
        let app = self
            .served_one(
                "app",
                |s| s.app.filter(|a| a.metadata.name == req.app),
                || {
                    format!(
                        "app {:?} not found: tsh apps ls lists the apps you may use",
                        req.app
                    )
                },
            )
            .await?;
        let labels = app.all_labels();
        checker
            .check_access_to_app(&labels)
            .map_err(|e| AuthError::AccessDenied(e.to_string()))?;
        // The session lives no longer than the user's own certificate.
        let ttl = (id.expires - now()).max(time::Duration::ZERO);
        let ttl_std = Duration::from_secs(ttl.whole_seconds().max(0) as u64);
        let allowed = if app.is_azure_cloud() {
            checker
                .check_azure_identities(ttl_std)
                .map_err(|e| AuthError::AccessDenied(e.to_string()))?
        } else {
            Vec::new()
        };
        if !app.is_azure_cloud() && !req.azure_identity.is_empty() {
            // Nothing checks an identity for such an app: it must not reach the certificate.
            return Err(AuthError::BadParameter(format!(
                "app {:?} is not an Azure app: it takes no Azure identity (drop --azure-identity)",
                app.metadata.name
            )));
        }
        if app.is_azure_cloud() {
            if req.azure_identity.is_empty() {
                return Err(AuthError::BadParameter(
                    "an Azure app session needs an identity (--azure-identity)".into(),
                ));
            }
            checker
                .check_app_azure_identity(&labels, &req.azure_identity)
                .map_err(|e| AuthError::AccessDenied(e.to_string()))?;
        }
        let session_id = random_hex(16);
        let identity = Identity {
            route_to_app: Some(RouteToApp {
                session_id: session_id.clone(),
                name: app.metadata.name.clone(),
                public_addr: app.spec.public_addr.clone(),
                cluster_name: self.cluster_name().to_string(),
                azure_identity: req.azure_identity.clone(),
            }),
            azure_identities: allowed,
            ..self.session_identity(id, &user, &checker, "usage:apps")
        };
        let cert = self.user_ca().sign_identity(&identity, &key)?;
        self.emit(AuditEvent::AppSessionStart(audit::AppSessionStart {
            session: audit::AppSession {
                user: id.username.clone(),
                sid: session_id.clone(),
                app_name: app.metadata.name.clone(),
                azure_identity: req.azure_identity.clone(),
                server_id: String::new(),
            },
            app_public_addr: app.spec.public_addr.clone(),
        }))
        .await;
        Ok(AppCertResponse {
            tls_cert: cert,
            app,
            session_id,
        })
    }

    /// Roles by name, for agents re-checking a user's access.
    pub async fn roles_for_agent(
        &self,
        caller: &Caller,
        names: &[String],
    ) -> Result<Vec<resources::Role>> {
        match caller {
            Caller::Host(id) if id.groups.iter().any(|g| g == "App" || g == "Db") => {}
            Caller::Admin => {}
            _ => {
                return Err(AuthError::AccessDenied(
                    "only app and database agents may read roles this way".into(),
                ))
            }
        }
        self.get_roles(names).await
    }

    /// The start of every session certificate request: the public key to
    /// certify (base64 SPKI DER), the caller's user and their access as their
    /// roles are now.
    pub(crate) async fn session_cert_basis(
        &self,
        username: &str,
        public_key_b64: &str,
    ) -> Result<(Vec<u8>, resources::User, rbac::AccessChecker)> {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(public_key_b64.as_bytes())
            .map_err(|_| AuthError::BadParameter("public_key is not base64".into()))?;
        let user = self.get_user(username).await?;
        let checker = self
            .checker_for(&user.spec.roles, &user.spec.traits)
            .await?;
        Ok((key, user, checker))
    }

    /// The identity of a session certificate for the user of `id`: their roles, logins and
    /// traits as they are now, in this cluster, for `usage`; it expires with the user's own
    /// certificate.
    pub(crate) fn session_identity(
        &self,
        id: &Identity,
        user: &resources::User,
        checker: &rbac::AccessChecker,
        usage: &str,
    ) -> Identity {
        Identity {
            username: id.username.clone(),
            groups: user.spec.roles.clone(),
            logins: checker.logins(),
            route_to_cluster: self.cluster_name().to_string(),
            traits: user.spec.traits.clone(),
            teleport_cluster: self.cluster_name().to_string(),
            expires: id.expires,
            usage: vec![usage.into()],
            ..Default::default()
        }
    }

    /// The first of the agents' servers of `kind` that `pick` takes, or not found with the
    /// message `missing` gives.
    pub(crate) async fn served_one<T>(
        &self,
        kind: &str,
        pick: impl FnMut(crate::agents::ServerEntry) -> Option<T>,
        missing: impl FnOnce() -> String,
    ) -> Result<T> {
        self.servers(kind)
            .await?
            .into_iter()
            .find_map(pick)
            .ok_or_else(|| AuthError::NotFound(missing()))
    }

    /// Record an audit event sent by an agent (session events only).
    pub async fn agent_event(&self, caller: &Caller, event: serde_json::Value) -> Result<()> {
        self.agent_events(caller, vec![event]).await
    }

    /// Records events from an agent in one write: all of them or, when one
    /// is refused, none.
    pub async fn agent_events(
        &self,
        caller: &Caller,
        events: Vec<serde_json::Value>,
    ) -> Result<()> {
        let id = caller.host("only agents may send audit events")?;
        // The parse is the check: only the kinds agents may send, with their
        // fields, recorded under the agent's identity and the server's time.
        let events = events
            .into_iter()
            .map(|e| {
                AuditEvent::from_agent(e, &id.username)
                    .map(|e| e.to_value())
                    .map_err(|e| AuthError::BadParameter(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        self.audit()
            .emit_many(events)
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }
}

/// Longest text a session request may place in a certificate (bytes).
pub const MAX_CERT_TEXT: usize = 1024;

/// Text a user's request places in a session certificate beside what the auth service checked
/// (an Azure identity, a database user or database name): at most [`MAX_CERT_TEXT`] bytes and
/// no control characters, so that what the certificate carries prints and logs as one line.
pub(crate) fn check_cert_text(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_CERT_TEXT {
        return Err(AuthError::BadParameter(format!(
            "{what} is longer than {MAX_CERT_TEXT} bytes"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AuthError::BadParameter(format!(
            "{what} {value:?} contains control characters"
        )));
    }
    Ok(())
}
