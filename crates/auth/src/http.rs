//! The authenticated API (`/v1/auth/...`), JSON over mutual TLS.
//!
//! The caller is identified by the connection's client certificate, which the
//! TLS layer verified against the cluster's CAs; [`crate::serve`] puts the
//! resulting [`Caller`] into each request's extensions.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use crate::{AuthError, AuthServer, Caller, Result};

/// The authenticated API router.
pub fn router(auth: Arc<AuthServer>) -> Router {
    Router::new()
        .route("/v1/auth/status", get(status))
        .route("/v1/auth/users", post(create_user))
        .route("/v1/auth/users/{name}", axum::routing::put(update_user))
        .route("/v1/auth/resources", post(upsert_resources))
        .route("/v1/auth/resources/{kind}", get(list_resources))
        .route(
            "/v1/auth/resources/{kind}/{name}",
            get(get_resource).delete(delete_resource),
        )
        .route("/v1/auth/tokens", post(create_token))
        .route("/v1/auth/certs/user", post(sign_user))
        .route("/v1/auth/events", get(events))
        .route("/v1/auth/whoami", get(whoami))
        .route("/v1/auth/hosts/renew", post(renew_host))
        .route("/v1/auth/heartbeat", post(heartbeat))
        .route("/v1/auth/apps", get(list_apps))
        .route("/v1/auth/dbs", get(list_dbs))
        .route("/v1/auth/inventory", get(inventory))
        .route("/v1/auth/servers/{kind}", get(list_servers))
        .route("/v1/auth/proxies", get(proxies))
        .route("/v1/auth/certs/app", post(app_cert))
        .route("/v1/auth/certs/db", post(db_cert))
        .route("/v1/auth/agent/roles", post(agent_roles))
        .route("/v1/auth/agent/events", post(agent_event))
        .with_state(auth)
}

/// A JSON request body; a malformed one is refused as a bad `what`.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| AuthError::BadParameter(format!("bad {what}: {e}")))
}

fn require_identified(caller: &Caller) -> Result<()> {
    if matches!(caller, Caller::Anonymous) {
        return Err(AuthError::AccessDenied(
            "this API needs a client certificate: log in with tsh login, or use an identity file (-i)".into(),
        ));
    }
    Ok(())
}

async fn status(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<api::StatusResponse>> {
    require_identified(&caller)?;
    Ok(Json(auth.status()))
}

async fn whoami(Extension(caller): Extension<Caller>) -> Result<Json<serde_json::Value>> {
    require_identified(&caller)?;
    Ok(Json(serde_json::json!({ "name": caller.name() })))
}

async fn create_user(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<api::CreateUserResponse>> {
    require_identified(&caller)?;
    let user: resources::User = parse_body(&body, "user")?;
    Ok(Json(auth.create_user(&caller, user).await?))
}

async fn update_user(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>> {
    require_identified(&caller)?;
    let user: resources::User = parse_body(&body, "user")?;
    if user.metadata.name != name {
        return Err(AuthError::BadParameter(
            "user name in the path and body differ".into(),
        ));
    }
    auth.update_user(&caller, user).await?;
    Ok(Json(serde_json::json!({})))
}

#[derive(Deserialize)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// Body: resource documents as text (YAML or JSON, one or many).
async fn upsert_resources(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ForceQuery>,
    body: String,
) -> Result<Json<Vec<serde_json::Value>>> {
    require_identified(&caller)?;
    let docs =
        resources::parse_resources(&body).map_err(|e| AuthError::BadParameter(e.to_string()))?;
    if docs.is_empty() {
        return Err(AuthError::BadParameter(
            "no resources found in the input".into(),
        ));
    }
    // Validate everything before writing anything.
    for d in &docs {
        d.validate()
            .map_err(|e| AuthError::BadParameter(format!("{} {:?}: {e}", d.kind(), d.name())))?;
    }
    let mut out = Vec::new();
    for d in docs {
        let kind = d.kind().to_string();
        let name = d.name().to_string();
        let action = auth.upsert_resource(&caller, d, q.force).await?;
        out.push(serde_json::json!({"kind": kind, "name": name, "action": action}));
    }
    Ok(Json(out))
}

async fn list_resources(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Path(kind): Path<String>,
) -> Result<Json<Vec<serde_json::Value>>> {
    require_identified(&caller)?;
    Ok(Json(auth.get_resources(&caller, &kind, None).await?))
}

async fn get_resource(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<Vec<serde_json::Value>>> {
    require_identified(&caller)?;
    Ok(Json(auth.get_resources(&caller, &kind, Some(&name)).await?))
}

async fn delete_resource(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Path((kind, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>> {
    require_identified(&caller)?;
    auth.delete_resource(&caller, &kind, &name).await?;
    Ok(Json(serde_json::json!({})))
}

async fn create_token(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<api::certs::TokenRequest>,
) -> Result<Json<resources::ProvisionToken>> {
    require_identified(&caller)?;
    let roles = resources::SystemRole::parse_list(&req.roles)
        .map_err(|e| AuthError::BadParameter(e.to_string()))?;
    let ttl = Duration::from_secs(req.ttl_seconds.max(1));
    Ok(Json(
        auth.create_token(&caller, roles, ttl, req.value).await?,
    ))
}

async fn sign_user(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<api::SignUserRequest>,
) -> Result<Json<api::CertsResponse>> {
    require_identified(&caller)?;
    Ok(Json(auth.sign_user_for(&caller, &req).await?))
}

async fn events(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<api::EventsQuery>,
) -> Result<Json<Vec<serde_json::Value>>> {
    require_identified(&caller)?;
    Ok(Json(auth.search_events(&caller, &q).await?))
}

async fn renew_host(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Json(req): Json<api::certs::RenewRequest>,
) -> Result<Json<crate::agents::HostCerts>> {
    Ok(Json(auth.renew_host_certs(&caller, &req.public_key).await?))
}

async fn heartbeat(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>> {
    let hb: crate::agents::Heartbeat = parse_body(&body, "heartbeat")?;
    auth.heartbeat(&caller, hb).await?;
    Ok(Json(serde_json::json!({})))
}

async fn list_apps(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<resources::App>>> {
    Ok(Json(auth.list_apps_for(&caller).await?))
}

async fn list_dbs(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<resources::Database>>> {
    Ok(Json(auth.list_dbs_for(&caller).await?))
}

/// Every agent's registered server of a kind (`app` or `db`), for
/// `tctl apps ls` / `tctl db ls` / `tctl get app_server`: needs `list` on
/// that kind of resource.
async fn list_servers(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Path(kind): Path<String>,
) -> Result<Json<Vec<crate::agents::ServerEntry>>> {
    require_identified(&caller)?;
    let resource = match kind.as_str() {
        "app" => resources::KIND_APP,
        "db" => resources::KIND_DB,
        other => {
            return Err(AuthError::BadParameter(format!(
                "unknown server kind {other:?}: app or db"
            )))
        }
    };
    auth.authorize(&caller, resource, "list").await?;
    Ok(Json(auth.servers(&kind).await?))
}

async fn inventory(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<crate::agents::TunnelEntry>>> {
    require_identified(&caller)?;
    Ok(Json(auth.inventory(&caller).await?))
}

async fn app_cert(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<crate::apps::AppCertResponse>> {
    require_identified(&caller)?;
    let req: crate::apps::AppCertRequest = parse_body(&body, "app certificate request")?;
    Ok(Json(auth.generate_app_cert(&caller, &req).await?))
}

async fn db_cert(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<crate::dbs::DbCertResponse>> {
    require_identified(&caller)?;
    let req: crate::dbs::DbCertRequest = parse_body(&body, "database certificate request")?;
    Ok(Json(auth.generate_db_cert(&caller, &req).await?))
}

async fn agent_roles(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Json(names): Json<Vec<String>>,
) -> Result<Json<Vec<resources::Role>>> {
    Ok(Json(auth.roles_for_agent(&caller, &names).await?))
}

async fn agent_event(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
    Json(event): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>> {
    // One event, or a batch of them in order.
    match event {
        serde_json::Value::Array(events) => auth.agent_events(&caller, events).await?,
        e => auth.agent_event(&caller, e).await?,
    }
    Ok(Json(serde_json::json!({})))
}

async fn proxies(
    State(auth): State<Arc<AuthServer>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<crate::agents::ProxyEntry>>> {
    Ok(Json(auth.proxies(&caller).await?))
}
