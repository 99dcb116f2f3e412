//! The public web API: version and settings discovery, password login, and
//! the invite page that sets a new user's password.

use std::sync::Arc;

use auth::serve::PeerAddr;
use auth::{AuthError, AuthServer};
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Form, Json, Router};
use serde::Deserialize;

use crate::limit::{Limit, RateLimiter};

/// Counts a request of `what` kind (`join`, `login`) from `peer` against
/// `limiter`; refused with 429 and how long to wait when the address is
/// over its limit.
fn limit(limiter: &RateLimiter, what: &str, peer: &PeerAddr) -> Result<(), AuthError> {
    limiter
        .check(peer.0.ip(), std::time::Instant::now())
        .map_err(|wait| {
            tracing::warn!(peer = %peer.0, "{what} request refused: rate limit");
            AuthError::LimitExceeded(format!(
                "too many {what} requests from {}: try again in {} s",
                peer.0.ip(),
                wait.as_secs() + 1
            ))
        })
}

fn limit_join(web: &Web, peer: &PeerAddr) -> Result<(), AuthError> {
    limit(&web.join_limit, "join", peer)
}

fn limit_login(web: &Web, peer: &PeerAddr) -> Result<(), AuthError> {
    limit(&web.login_limit, "login", peer)
}

#[derive(Clone)]
struct Web {
    auth: Arc<AuthServer>,
    public_addr: String,
    join_limit: Arc<RateLimiter>,
    login_limit: Arc<RateLimiter>,
}

/// Routes of the public web API. The join and password routes need no
/// credentials and each request writes to the backend, hashes a password
/// or signs, so they are rate-limited per client address (`join_limit`,
/// `login_limit`), and a flood is refused with 429 before it reaches the
/// auth service.
pub fn router(
    auth: Arc<AuthServer>,
    public_addr: String,
    join_limit: Limit,
    login_limit: Limit,
) -> Router {
    let state = Web {
        auth,
        public_addr,
        join_limit: Arc::new(RateLimiter::new(join_limit.burst, join_limit.per_sec)),
        login_limit: Arc::new(RateLimiter::new(login_limit.burst, login_limit.per_sec)),
    };
    Router::new()
        .route("/webapi/ping", get(ping))
        .route("/v1/webapi/ping", get(ping))
        .route("/webapi/find", get(ping))
        .route("/v1/webapi/find", get(ping))
        .route(
            "/v1/webapi/automaticupgrades/channel/default/version",
            get(upgrade_version),
        )
        .route(
            "/webapi/automaticupgrades/channel/default/version",
            get(upgrade_version),
        )
        .route(
            "/v1/webapi/automaticupgrades/channel/default/critical",
            get(upgrade_critical),
        )
        .route(
            "/webapi/automaticupgrades/channel/default/critical",
            get(upgrade_critical),
        )
        .route("/v1/webapi/ssh/certs", axum::routing::post(login))
        .route("/webapi/ssh/certs", axum::routing::post(login))
        .route(
            "/v1/webapi/users/password/token",
            axum::routing::post(set_password_json),
        )
        .route("/web/invite/{token}", get(invite_page).post(invite_form))
        .route(
            "/v1/webapi/host/credentials",
            axum::routing::post(host_credentials),
        )
        .route("/v1/webapi/host-ca", get(host_ca))
        .route(
            "/v1/webapi/host/azure/challenge",
            axum::routing::post(azure_challenge),
        )
        .route(
            "/v1/webapi/host/azure/credentials",
            axum::routing::post(azure_credentials),
        )
        .route(
            "/webapi/host/credentials",
            axum::routing::post(host_credentials),
        )
        .with_state(state)
}

async fn ping(State(web): State<Web>) -> Json<api::PingResponse> {
    Json(api::PingResponse {
        auth: api::AuthSettings {
            kind: "local".into(),
            second_factor: "off".into(),
            local_auth_enabled: true,
        },
        proxy: api::ProxySettings {
            public_addr: web.public_addr.clone(),
            tls_routing_enabled: true,
            tunnel_public_addr: web.public_addr.clone(),
        },
        server_version: api::VERSION.into(),
        min_client_version: api::VERSION.into(),
        cluster_name: web.auth.cluster_name().into(),
        automatic_upgrades: false,
    })
}

/// The host CA, for agents to check against `teleport.ca_pin` before they
/// trust the cluster.
async fn host_ca(State(web): State<Web>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "cluster_name": web.auth.cluster_name(),
        "host_ca": web.auth.host_ca().cert_pem(),
    }))
}

async fn upgrade_version() -> String {
    format!("v{}", api::VERSION)
}

async fn upgrade_critical() -> &'static str {
    "no"
}

async fn login(
    State(web): State<Web>,
    Extension(peer): Extension<PeerAddr>,
    body: axum::body::Bytes,
) -> Result<Json<api::CertsResponse>, AuthError> {
    limit_login(&web, &peer)?;
    let req: api::LoginRequest = auth::http::parse_body(&body, "login request")?;
    Ok(Json(web.auth.login(&req, &peer.0.to_string()).await?))
}

async fn host_credentials(
    State(web): State<Web>,
    Extension(peer): Extension<PeerAddr>,
    body: axum::body::Bytes,
) -> Result<Json<auth::agents::HostCerts>, AuthError> {
    limit_join(&web, &peer)?;
    let req: auth::agents::RegisterRequest = auth::http::parse_body(&body, "join request")?;
    Ok(Json(
        web.auth
            .register_with_token(&req, &peer.0.to_string())
            .await?,
    ))
}

async fn azure_challenge(
    State(web): State<Web>,
    Extension(peer): Extension<PeerAddr>,
) -> Result<Json<api::join::AzureChallenge>, AuthError> {
    limit_join(&web, &peer)?;
    Ok(Json(web.auth.create_azure_challenge().await?))
}

async fn azure_credentials(
    State(web): State<Web>,
    Extension(peer): Extension<PeerAddr>,
    body: axum::body::Bytes,
) -> Result<Json<auth::agents::HostCerts>, AuthError> {
    limit_join(&web, &peer)?;
    let req: api::join::AzureRegisterRequest = auth::http::parse_body(&body, "Azure join request")?;
    Ok(Json(
        web.auth
            .register_with_azure(&req, &peer.0.to_string())
            .await?,
    ))
}

async fn set_password_json(
    State(web): State<Web>,
    Extension(peer): Extension<PeerAddr>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, AuthError> {
    limit_login(&web, &peer)?;
    let req: api::SetPasswordRequest = auth::http::parse_body(&body, "request")?;
    let user = web
        .auth
        .set_password_with_token(&req.token, &req.password)
        .await?;
    Ok(Json(serde_json::json!({ "user": user })))
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&#39;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title></head><body><h1>{}</h1>{}</body></html>",
        escape(title),
        escape(title),
        body
    ))
}

async fn invite_page(Path(token): Path<String>) -> Html<String> {
    page(
        "Set up your account",
        &format!(
            "<form method=\"post\" action=\"/web/invite/{}\">\
             <label>Password <input type=\"password\" name=\"password\" minlength=\"{}\" required></label>\
             <label>Confirm <input type=\"password\" name=\"password_confirm\" required></label>\
             <button type=\"submit\">Set password</button></form>",
            escape(&token),
            auth::MIN_PASSWORD_LEN
        ),
    )
}

#[derive(Deserialize)]
struct InviteForm {
    password: String,
    #[serde(default)]
    password_confirm: Option<String>,
}

/// The invite page's answer when the password could not be set.
fn password_not_set(e: AuthError) -> Response {
    (
        e.status(),
        page(
            "Could not set the password",
            &format!("<p>{}</p>", escape(&e.to_string())),
        ),
    )
        .into_response()
}

async fn invite_form(
    State(web): State<Web>,
    Extension(peer): Extension<PeerAddr>,
    Path(token): Path<String>,
    Form(form): Form<InviteForm>,
) -> Response {
    if let Err(e) = limit_login(&web, &peer) {
        return password_not_set(e);
    }
    if form
        .password_confirm
        .as_deref()
        .is_some_and(|c| c != form.password)
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            page(
                "Passwords do not match",
                "<p>Go back and type the same password twice.</p>",
            ),
        )
            .into_response();
    }
    match web.auth.set_password_with_token(&token, &form.password).await {
        Ok(user) => page(
            "Password set",
            &format!(
                "<p>The password of <b>{}</b> is set. Log in with <code>tsh login --proxy={} --user={}</code> (add <code>--insecure</code> if the proxy's certificate is self-signed, as on a test cluster; tsh then remembers it for this proxy).</p>",
                escape(&user),
                escape(&web.public_addr),
                escape(&user)
            ),
        )
        .into_response(),
        Err(e) => password_not_set(e),
    }
}
