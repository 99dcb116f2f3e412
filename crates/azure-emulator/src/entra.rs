//! Entra ID (login.microsoftonline.com): token minting, OIDC discovery, JWKS, and the
//! client-credentials grant (client secret or federated client assertion).

use serde_json::{json, Map, Value};

use crate::fixture::{app_principal, identity_principal, FederatedCredentialSpec, Principal};
use crate::server::{json_resp, now, Req, Resp, State};
use crate::Error;

/// A minted token.
#[derive(Debug, Clone)]
pub struct Minted {
    /// The JWT.
    pub token: String,
    /// Issued at / not before.
    pub nbf: i64,
    /// Expiry.
    pub exp: i64,
    /// Lifetime in seconds.
    pub lifetime: u64,
}

/// The v1 issuer of a tenant.
pub fn issuer(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}

/// Mints an access token for `principal` and `resource` (a v1 resource or a `/.default` scope).
pub fn mint(
    state: &State,
    principal: &Principal,
    resource: &str,
    vm_resource_id: Option<&str>,
) -> Result<Minted, Error> {
    let tenant = state.world().tenant_id();
    let aud = resource.strip_suffix("/.default").unwrap_or(resource);
    let now = now();
    let lifetime = state.token_lifetime();
    let exp = now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX / 2));
    let mut claims = Map::new();
    claims.insert("aud".into(), json!(aud));
    claims.insert("iss".into(), json!(issuer(tenant)));
    claims.insert("iat".into(), json!(now));
    claims.insert("nbf".into(), json!(now));
    claims.insert("exp".into(), json!(exp));
    claims.insert("aio".into(), json!("emulated"));
    claims.insert("appid".into(), json!(principal.client_id));
    claims.insert("appidacr".into(), json!("2"));
    claims.insert("idp".into(), json!(issuer(tenant)));
    claims.insert("idtyp".into(), json!("app"));
    claims.insert("oid".into(), json!(principal.object_id));
    claims.insert("sub".into(), json!(principal.object_id));
    claims.insert("tid".into(), json!(tenant));
    claims.insert("ver".into(), json!("1.0"));
    if let Some(id) = &principal.identity_id {
        claims.insert("xms_mirid".into(), json!(id));
    }
    if let Some(vm) = vm_resource_id {
        claims.insert("xms_az_rid".into(), json!(vm));
    }
    let token = state.signer().sign(&claims)?;
    Ok(Minted {
        token,
        nbf: now,
        exp,
        lifetime,
    })
}

fn aad_error(status: u16, error: &str, code: u32, description: &str) -> Resp {
    json_resp(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        }),
    )
}

/// Serves a login.microsoftonline.com request.
pub fn handle(req: &Req, state: &State) -> Resp {
    let world = state.world();
    let tenant = world.tenant_id().to_string();
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&first, rest)) = segs.split_first() else {
        return json_resp(404, &json!({"error": "not_found"}));
    };
    let known_tenant =
        first.eq_ignore_ascii_case(&tenant) || matches!(first, "common" | "organizations");
    if !known_tenant {
        return aad_error(
            400,
            "invalid_tenant",
            90002,
            &format!("Tenant '{first}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        );
    }
    let base = format!("https://{}/{tenant}", crate::server::LOGIN_HOST);
    match rest {
        [".well-known", "openid-configuration"] => json_resp(
            200,
            &json!({
                "token_endpoint": format!("{base}/oauth2/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": format!("https://{}/common/discovery/keys", crate::server::LOGIN_HOST),
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
                "scopes_supported": ["openid"],
                "issuer": issuer(&tenant),
                "authorization_endpoint": format!("{base}/oauth2/authorize"),
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
            }),
        ),
        ["v2.0", ".well-known", "openid-configuration"] => json_resp(
            200,
            &json!({
                "token_endpoint": format!("{base}/oauth2/v2.0/token"),
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": format!("{base}/discovery/v2.0/keys"),
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": format!("https://{}/{tenant}/v2.0", crate::server::LOGIN_HOST),
                "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
            }),
        ),
        ["discovery", "keys"] | ["discovery", "v2.0", "keys"] => {
            json_resp(200, &state.signer().jwks(&issuer(&tenant)))
        }
        ["discovery", "instance"] => json_resp(
            200,
            &json!({
                "tenant_discovery_endpoint": format!("{base}/v2.0/.well-known/openid-configuration"),
                "api-version": "1.1",
                "metadata": [{
                    "preferred_network": "login.microsoftonline.com",
                    "preferred_cache": "login.windows.net",
                    "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"],
                }],
            }),
        ),
        ["oauth2", "v2.0", "token"] | ["oauth2", "token"] if req.method == http::Method::POST => {
            token(req, state, rest.len() == 3)
        }
        _ => json_resp(404, &json!({"error": "not_found"})),
    }
}

fn token(req: &Req, state: &State, v2: bool) -> Resp {
    let form = req.form();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("client_credentials") {
        return aad_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    let Some(client_id) = get("client_id") else {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let resource = if v2 { get("scope") } else { get("resource") };
    let Some(resource) = resource.map(|r| r.split(' ').next().unwrap_or_default().to_string())
    else {
        return aad_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        );
    };
    let world = state.world();
    let tenant = world.tenant_id();
    // The client: an app registration or a user-assigned identity (federated credentials only).
    let app = world
        .fixture
        .applications
        .iter()
        .find(|a| a.client_id.eq_ignore_ascii_case(client_id));
    let identity = world
        .identities()
        .into_iter()
        .find(|(_, i)| i.client_id.eq_ignore_ascii_case(client_id));
    let (principal, secrets, federated): (Principal, Vec<String>, Vec<FederatedCredentialSpec>) =
        match (app, identity) {
            (Some(a), _) => (
                app_principal(a),
                a.secrets.clone(),
                a.federated_credentials.clone(),
            ),
            (None, Some((loc, i))) => (
                identity_principal(&loc, i),
                Vec::new(),
                i.federated_credentials.clone(),
            ),
            (None, None) => {
                return aad_error(
                    400,
                    "unauthorized_client",
                    700016,
                    &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
                );
            }
        };
    if let Some(secret) = get("client_secret") {
        let ok = secrets
            .iter()
            .any(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()));
        if !ok {
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            );
        }
    } else if let Some(assertion) = get("client_assertion") {
        let claims = crate::jwt::unverified_claims(assertion).unwrap_or_default();
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if exp <= now() {
            return aad_error(
                400,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        let Some(record) = federated
            .iter()
            .find(|f| f.issuer == iss && f.subject == sub)
        else {
            return aad_error(
                400,
                "invalid_request",
                70021,
                &format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'."),
            );
        };
        if !auds.iter().any(|a| record.audiences.iter().any(|w| w == a)) {
            return aad_error(
                400,
                "invalid_request",
                700212,
                &format!("No matching federated identity record found for presented assertion audience '{}'.", auds.join(",")),
            );
        }
    } else {
        return aad_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    match mint(state, &principal, &resource, None) {
        Ok(m) => json_resp(
            200,
            &json!({
                "token_type": "Bearer",
                "expires_in": m.lifetime,
                "ext_expires_in": m.lifetime,
                "access_token": m.token,
            }),
        ),
        Err(e) => aad_error(500, "server_error", 50000, &e.to_string()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
