//! Database sessions: certificates routed to one database (`tsh db login`).
//!
//! Access is checked here when the certificate is issued (so `tsh db login`
//! fails early and clearly) and again by the database agent for every
//! session, with the user's roles as they are then.

use api::audit::{self, AuditEvent};
use pki::{Identity, RouteToDatabase};

pub use api::certs::{DbCertRequest, DbCertResponse};

use crate::{AuthError, AuthServer, Caller, Result};

impl AuthServer {
    /// Issue a database certificate for the calling user.
    pub async fn generate_db_cert(
        &self,
        caller: &Caller,
        req: &DbCertRequest,
    ) -> Result<DbCertResponse> {
        let id = caller.user("log in with tsh login to get database certificates")?;
        if id.route_to_app.is_some() || id.route_to_database.is_some() {
            return Err(AuthError::AccessDenied(
                "a session certificate cannot be used to get another one".into(),
            ));
        }
        crate::apps::check_cert_text("db_user", &req.db_user)?;
        crate::apps::check_cert_text("db_name", &req.db_name)?;
        let (key, user, checker) = self
            .session_cert_basis(&id.username, &req.public_key)
            .await?;
        let db = self
            .served_one(
                "db",
                |s| s.db.filter(|d| d.metadata.name == req.database),
                || {
                    format!(
                        "database {:?} not found: tsh db ls lists the databases you may use",
                        req.database
                    )
                },
            )
            .await?;
        let db_user = if req.db_user.is_empty() {
            db.default_db_user().unwrap_or_default().to_string()
        } else {
            req.db_user.clone()
        };
        if db_user.is_empty() {
            return Err(AuthError::BadParameter(format!(
                "database {:?} needs a database user: pass --db-user",
                db.metadata.name
            )));
        }
        db.check_db_user(&db_user)
            .map_err(AuthError::AccessDenied)?;
        // Redis has no database names to check (Teleport ignores db_names there).
        let db_name = (db.spec.protocol != "redis" && !req.db_name.is_empty())
            .then_some(req.db_name.as_str());
        checker
            .check_access_to_db(&db.all_labels(), Some(&db_user), db_name)
            .map_err(|e| {
                AuthError::AccessDenied(format!(
                    "{e} (database {:?} as user {db_user:?})",
                    db.metadata.name
                ))
            })?;
        // The session lives no longer than the user's own certificate.
        let identity = Identity {
            route_to_database: Some(RouteToDatabase {
                service_name: db.metadata.name.clone(),
                protocol: db.spec.protocol.clone(),
                username: db_user.clone(),
                database: req.db_name.clone(),
            }),
            db_users: checker.db_users(),
            db_names: checker.db_names(),
            ..self.session_identity(id, &user, &checker, "usage:db")
        };
        let cert = self.user_ca().sign_identity(&identity, &key)?;
        self.emit(AuditEvent::CertCreate(audit::CertCreate::Db {
            user: id.username.clone(),
            db_service: db.metadata.name.clone(),
            db_user: db_user.clone(),
        }))
        .await;
        Ok(DbCertResponse {
            tls_cert: cert,
            database: db,
            db_user,
        })
    }
}
