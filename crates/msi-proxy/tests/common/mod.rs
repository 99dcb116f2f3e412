//! What the whole-proxy tests and the real-client tests share: the identity the proxy stands
//! for, its configuration, and ARM's answer to `GET /subscriptions`.
#![allow(dead_code)]

use msi_proxy::MsiProxyConfig;

pub const IDENTITY: &str = "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/my-resource-group/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
pub const SUB: &str = "11111111-1111-1111-1111-111111111111";
pub const TENANT: &str = "22222222-2222-2222-2222-222222222222";

/// The proxy's configuration: IDENTITY of TENANT on a free port, its tokens signed by `key`
/// and valid for `hours`, its local CA written to `local_ca_path`.
pub fn config(key: &pki::KeyPair, hours: i64, local_ca_path: std::path::PathBuf) -> MsiProxyConfig {
    MsiProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        identity: IDENTITY.into(),
        tenant_id: Some(TENANT.into()),
        signing_key_pem: key.private_key_pem.clone(),
        token_expiry: time::OffsetDateTime::now_utc() + time::Duration::hours(hours),
        local_ca_path,
        secret: None,
        upstream_proxy: None,
    }
}

/// ARM's answer to `GET /subscriptions` (SUB alone) and to any other path (nothing).
pub fn arm_body(path: &str) -> serde_json::Value {
    if path == "/subscriptions" {
        serde_json::json!({"value": [{
            "id": format!("/subscriptions/{SUB}"),
            "subscriptionId": SUB,
            "tenantId": TENANT,
            "displayName": "teleport-test-sub",
            "state": "Enabled",
            "subscriptionPolicies": {},
            "authorizationSource": "RoleBased",
            "managedByTenants": [],
        }]})
    } else {
        serde_json::json!({"value": []})
    }
}

/// An upstream response with `body` as its JSON.
pub fn json_response(body: &serde_json::Value) -> http::Response<bytes::Bytes> {
    let mut r = http::Response::new(bytes::Bytes::from(body.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
