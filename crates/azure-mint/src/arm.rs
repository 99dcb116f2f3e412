//! The Azure Resource Manager client: subscriptions, VMs, user-assigned identities, Azure Cache for
//! Redis and Redis Enterprise; `nextLink` paging, 429 `Retry-After`, typed ARM errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::error::ArmError;
use crate::http::HttpConfig;
use crate::imds::read_capped;
use crate::{Cloud, Error};

/// api-version for subscriptions.
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";
/// api-version for VMs.
pub const COMPUTE_API: &str = "2024-07-01";
/// api-version for user-assigned identities.
pub const IDENTITY_API: &str = "2023-01-31";
/// api-version for Azure Cache for Redis.
pub const REDIS_API: &str = "2024-11-01";
/// api-version for Redis Enterprise.
pub const REDIS_ENTERPRISE_API: &str = "2025-07-01";

const MAX_BODY: usize = 16 << 20;
const MAX_PAGES: usize = 1000;

/// Supplies bearer tokens for ARM.
#[async_trait::async_trait]
pub trait BearerSource: Send + Sync {
    /// A token for ARM.
    async fn bearer(&self) -> Result<String, Error>;
}

/// A fixed token (tests, or a token minted elsewhere).
#[derive(Clone)]
pub struct StaticBearer(pub String);

#[async_trait::async_trait]
impl BearerSource for StaticBearer {
    async fn bearer(&self) -> Result<String, Error> {
        Ok(self.0.clone())
    }
}

/// Tokens from an `azure_core` credential for the cloud's ARM scope.
pub struct CredentialBearer {
    credential: Arc<dyn azure_core::credentials::TokenCredential>,
    scope: String,
}

impl CredentialBearer {
    /// Tokens from `credential` for ARM of `cloud`.
    pub fn new(
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
        cloud: Cloud,
    ) -> Self {
        Self {
            credential,
            scope: crate::credential::to_scope(cloud.management_resource()),
        }
    }
}

#[async_trait::async_trait]
impl BearerSource for CredentialBearer {
    async fn bearer(&self) -> Result<String, Error> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|e| Error::Credential(e.to_string()))?;
        Ok(token.token.secret().to_string())
    }
}

/// A subscription.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// `/subscriptions/<id>`.
    pub id: String,
    /// The GUID.
    pub subscription_id: String,
    /// Tenant.
    #[serde(default)]
    pub tenant_id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: String,
    /// `Enabled`, `Disabled`, ...
    #[serde(default)]
    pub state: String,
}

/// Common ARM resource fields.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Resource<P> {
    /// Resource ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Region.
    #[serde(default)]
    pub location: String,
    /// Tags.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: BTreeMap<String, String>,
    /// Type-specific properties.
    pub properties: P,
    /// Managed identities attached to it (VMs).
    #[serde(default)]
    pub identity: Option<ResourceIdentity>,
    /// SKU.
    #[serde(default)]
    pub sku: Option<Sku>,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Identity block of a resource.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIdentity {
    /// `UserAssigned`, `SystemAssigned`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// System-assigned principal.
    #[serde(default)]
    pub principal_id: Option<String>,
    /// User-assigned identities by resource ID.
    #[serde(default, deserialize_with = "null_default")]
    pub user_assigned_identities: BTreeMap<String, AttachedIdentity>,
}

/// A user-assigned identity attached to a resource.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AttachedIdentity {
    /// Principal ID.
    #[serde(default)]
    pub principal_id: String,
    /// Client ID.
    #[serde(default)]
    pub client_id: String,
}

/// SKU.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Sku {
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// VM properties.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VmProperties {
    /// Unique VM ID.
    pub vm_id: String,
    /// Provisioning state.
    #[serde(default)]
    pub provisioning_state: String,
}

/// A virtual machine.
pub type VirtualMachine = Resource<VmProperties>;

/// User-assigned identity properties.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProperties {
    /// Client ID.
    pub client_id: String,
    /// Principal ID.
    pub principal_id: String,
    /// Tenant ID.
    #[serde(default)]
    pub tenant_id: String,
}

/// A user-assigned identity.
pub type UserAssignedIdentity = Resource<IdentityProperties>;

/// Azure Cache for Redis properties.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisProperties {
    /// Host name.
    pub host_name: String,
    /// TLS port (absent when TLS is off).
    #[serde(default)]
    pub ssl_port: Option<u16>,
    /// Provisioning state.
    #[serde(default)]
    pub provisioning_state: String,
    /// Redis version.
    #[serde(default)]
    pub redis_version: String,
    /// Access keys are refused; clients authenticate with Microsoft Entra ID tokens
    /// (`AUTH <object-id> <token>`).
    #[serde(default, deserialize_with = "null_default")]
    pub disable_access_key_authentication: bool,
}

/// An Azure Cache for Redis.
pub type Redis = Resource<RedisProperties>;

/// Redis Enterprise cluster properties.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisEnterpriseProperties {
    /// Host name.
    #[serde(default)]
    pub host_name: String,
    /// Provisioning state.
    #[serde(default)]
    pub provisioning_state: String,
    /// Redis version.
    #[serde(default)]
    pub redis_version: String,
}

/// A Redis Enterprise cluster.
pub type RedisEnterprise = Resource<RedisEnterpriseProperties>;

/// Redis Enterprise database properties.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RedisEnterpriseDatabaseProperties {
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// `Encrypted` or `Plaintext`.
    #[serde(default)]
    pub client_protocol: String,
    /// `OSSCluster` or `EnterpriseCluster`.
    #[serde(default)]
    pub clustering_policy: String,
    /// Provisioning state.
    #[serde(default)]
    pub provisioning_state: String,
    /// `Enabled` or `Disabled` (Azure Managed Redis's default): whether access keys are accepted.
    #[serde(default, deserialize_with = "null_default")]
    pub access_keys_authentication: String,
}

impl RedisEnterpriseDatabaseProperties {
    /// Whether access keys are refused (`accessKeysAuthentication: Disabled`), so clients must use
    /// Microsoft Entra ID tokens.
    pub fn access_keys_disabled(&self) -> bool {
        self.access_keys_authentication
            .eq_ignore_ascii_case("Disabled")
    }
}

/// A Redis Enterprise database (no location or tags of its own).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RedisEnterpriseDatabase {
    /// Resource ID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Properties.
    pub properties: RedisEnterpriseDatabaseProperties,
}

/// Access keys.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessKeys {
    /// Primary key.
    #[serde(default)]
    pub primary_key: Option<String>,
    /// Secondary key.
    #[serde(default)]
    pub secondary_key: Option<String>,
}

impl std::fmt::Debug for AccessKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKeys(<redacted>)")
    }
}

impl AccessKeys {
    /// The primary key, else the secondary.
    pub fn preferred(&self) -> Option<&str> {
        self.primary_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .or(self.secondary_key.as_deref().filter(|k| !k.is_empty()))
    }
}

/// A parsed resource ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceId {
    /// Subscription.
    pub subscription: String,
    /// Resource group.
    pub resource_group: String,
    /// Provider namespace (`Microsoft.Compute`).
    pub provider: String,
    /// Type (`virtualMachines`).
    pub kind: String,
    /// Name.
    pub name: String,
}

impl ResourceId {
    /// Parses `/subscriptions/<s>/resourceGroups/<g>/providers/<ns>/<type>/<name>` (case-insensitive keys).
    pub fn parse(id: &str) -> Result<Self, Error> {
        let segs: Vec<&str> = id.split('/').collect();
        let bad = || Error::InvalidArgument(format!("not a resource ID: {id:?}"));
        // Every segment is one plain path segment: IDs become ARM URLs.
        let plain = |s: &&str| {
            !s.is_empty()
                && *s != "."
                && *s != ".."
                && !s
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || "?#%\\".contains(c))
        };
        if id.len() > 1024 || !segs.iter().skip(1).all(plain) {
            return Err(bad());
        }
        match segs.as_slice() {
            ["", subs, sub, rgs, rg, providers, ns, kind, name, ..]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && rgs.eq_ignore_ascii_case("resourceGroups")
                    && providers.eq_ignore_ascii_case("providers")
                    && ![sub, rg, ns, kind, name].iter().any(|s| s.is_empty()) =>
            {
                Ok(Self {
                    subscription: sub.to_string(),
                    resource_group: rg.to_string(),
                    provider: ns.to_string(),
                    kind: kind.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Retry policy for throttling.
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    /// Retries after a 429.
    pub max_retries: u32,
    /// Longest `Retry-After` honoured (longer ones fail at once).
    pub max_wait: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            max_wait: Duration::from_secs(60),
        }
    }
}

/// The ARM client.
pub struct ArmClient {
    http: reqwest::Client,
    base: String,
    bearer: Arc<dyn BearerSource>,
    throttle: ThrottlePolicy,
}

impl std::fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn malformed(message: impl Into<String>) -> Error {
    Error::Malformed {
        service: "ARM",
        message: message.into(),
    }
}

fn parse_retry_after(h: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let s = h?.to_str().ok()?.trim();
    s.parse::<u64>().ok().map(Duration::from_secs)
}

fn arm_error(status: u16, body: &[u8]) -> Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let text = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (code, mut message) = (text("code"), text("message"));
    if message.is_empty() {
        message = String::from_utf8_lossy(body).chars().take(300).collect();
    }
    Error::Arm(ArmError {
        status,
        code,
        message,
    })
}

impl ArmClient {
    /// A client for `cloud`'s ARM endpoint.
    pub fn new(
        config: &HttpConfig,
        cloud: Cloud,
        bearer: Arc<dyn BearerSource>,
    ) -> Result<Self, Error> {
        Ok(Self {
            http: config.client()?,
            base: cloud.resource_manager().to_string(),
            bearer,
            throttle: ThrottlePolicy::default(),
        })
    }

    /// A client whose bearer tokens come from `credential` for ARM of `cloud`
    /// ([`CredentialBearer`]).
    pub fn with_credential(
        config: &HttpConfig,
        cloud: Cloud,
        credential: Arc<dyn azure_core::credentials::TokenCredential>,
    ) -> Result<Self, Error> {
        Self::new(
            config,
            cloud,
            Arc::new(CredentialBearer::new(credential, cloud)),
        )
    }

    /// A client for `cloud`'s ARM endpoint on an existing HTTP client (built once by
    /// [`HttpConfig::client`] and shared, e.g. by a server making one client per caller token).
    pub fn with_http(http: reqwest::Client, cloud: Cloud, bearer: Arc<dyn BearerSource>) -> Self {
        Self {
            http,
            base: cloud.resource_manager().to_string(),
            bearer,
            throttle: ThrottlePolicy::default(),
        }
    }

    /// Uses another throttling policy.
    pub fn with_throttle(mut self, throttle: ThrottlePolicy) -> Self {
        self.throttle = throttle;
        self
    }

    /// Sends one request (following 429s) and returns the JSON body.
    async fn call(&self, method: reqwest::Method, url: &str) -> Result<Value, Error> {
        let token = self.bearer.bearer().await?;
        let mut retries = 0;
        loop {
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token);
            if method == reqwest::Method::POST {
                req = req.body("");
            }
            let resp = req.send().await.map_err(|e| Error::Transport {
                service: "ARM",
                message: e.to_string(),
            })?;
            let status = resp.status().as_u16();
            let retry_after = parse_retry_after(resp.headers().get(reqwest::header::RETRY_AFTER));
            let body = read_capped(resp, MAX_BODY, "ARM").await?;
            if status == 429 {
                let wait = retry_after.unwrap_or(Duration::from_secs(1));
                if retries >= self.throttle.max_retries || wait > self.throttle.max_wait {
                    return Err(Error::Throttled { retry_after });
                }
                retries += 1;
                tracing::debug!(?wait, "ARM throttled; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !(200..300).contains(&status) {
                return Err(arm_error(status, &body));
            }
            return serde_json::from_slice(&body).map_err(|e| malformed(format!("not JSON: {e}")));
        }
    }

    fn url(&self, path: &str, api_version: &str) -> String {
        format!("{}{path}?api-version={api_version}", self.base)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, api_version: &str) -> Result<T, Error> {
        let v = self
            .call(reqwest::Method::GET, &self.url(path, api_version))
            .await?;
        serde_json::from_value(v).map_err(|e| malformed(e.to_string()))
    }

    /// Lists every page, following `nextLink` on the same host only.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<T>, Error> {
        let mut url = self.url(path, api_version);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let v = self.call(reqwest::Method::GET, &url).await?;
            let items = match v.get("value") {
                Some(Value::Array(items)) => items.clone(),
                Some(_) => return Err(malformed("\"value\" is not an array")),
                None => return Err(malformed("list without \"value\"")),
            };
            for item in items {
                out.push(serde_json::from_value(item).map_err(|e| malformed(e.to_string()))?);
            }
            match v.get("nextLink") {
                None | Some(Value::Null) => return Ok(out),
                Some(Value::String(next)) if next.is_empty() => return Ok(out),
                Some(Value::String(next)) => {
                    if !next.starts_with(&format!("{}/", self.base)) {
                        return Err(malformed(format!(
                            "nextLink leaves {}: {next:?}",
                            self.base
                        )));
                    }
                    url = next.clone();
                }
                Some(_) => return Err(malformed("\"nextLink\" is not a string")),
            }
        }
        Err(malformed(format!("more than {MAX_PAGES} pages")))
    }

    fn check_id(id: &str) -> Result<(), Error> {
        ResourceId::parse(id).map(|_| ())
    }

    /// Subscriptions the caller can see.
    pub async fn list_subscriptions(&self) -> Result<Vec<Subscription>, Error> {
        self.list("/subscriptions", SUBSCRIPTIONS_API).await
    }

    /// A VM by resource ID.
    pub async fn get_vm(&self, id: &str) -> Result<VirtualMachine, Error> {
        Self::check_id(id)?;
        self.get(id, COMPUTE_API).await
    }

    /// VMs of a subscription.
    pub async fn list_vms(&self, subscription: &str) -> Result<Vec<VirtualMachine>, Error> {
        self.list(
            &format!("/subscriptions/{subscription}/providers/Microsoft.Compute/virtualMachines"),
            COMPUTE_API,
        )
        .await
    }

    /// VMs of a resource group.
    pub async fn list_vms_in_group(
        &self,
        subscription: &str,
        group: &str,
    ) -> Result<Vec<VirtualMachine>, Error> {
        self.list(
            &format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Compute/virtualMachines"),
            COMPUTE_API,
        )
        .await
    }

    /// The VM of a subscription whose `vmId` is `vm_id` (case-insensitive).
    pub async fn find_vm_by_vm_id(
        &self,
        subscription: &str,
        vm_id: &str,
    ) -> Result<Option<VirtualMachine>, Error> {
        Ok(self
            .list_vms(subscription)
            .await?
            .into_iter()
            .find(|vm| vm.properties.vm_id.eq_ignore_ascii_case(vm_id)))
    }

    /// A user-assigned identity by resource ID.
    pub async fn get_identity(&self, id: &str) -> Result<UserAssignedIdentity, Error> {
        Self::check_id(id)?;
        self.get(id, IDENTITY_API).await
    }

    /// Azure Cache for Redis instances of a subscription.
    pub async fn list_redis(&self, subscription: &str) -> Result<Vec<Redis>, Error> {
        self.list(
            &format!("/subscriptions/{subscription}/providers/Microsoft.Cache/redis"),
            REDIS_API,
        )
        .await
    }

    /// Azure Cache for Redis instances of a resource group.
    pub async fn list_redis_in_group(
        &self,
        subscription: &str,
        group: &str,
    ) -> Result<Vec<Redis>, Error> {
        self.list(
            &format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Cache/redis"),
            REDIS_API,
        )
        .await
    }

    /// An Azure Cache for Redis by resource ID.
    pub async fn get_redis(&self, id: &str) -> Result<Redis, Error> {
        Self::check_id(id)?;
        self.get(id, REDIS_API).await
    }

    /// Access keys of an Azure Cache for Redis (needs the `listKeys` action).
    pub async fn redis_keys(&self, id: &str) -> Result<AccessKeys, Error> {
        Self::check_id(id)?;
        let v = self
            .call(
                reqwest::Method::POST,
                &self.url(&format!("{id}/listKeys"), REDIS_API),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| malformed(e.to_string()))
    }

    /// Redis Enterprise clusters of a subscription.
    pub async fn list_redis_enterprise(
        &self,
        subscription: &str,
    ) -> Result<Vec<RedisEnterprise>, Error> {
        self.list(
            &format!("/subscriptions/{subscription}/providers/Microsoft.Cache/redisEnterprise"),
            REDIS_ENTERPRISE_API,
        )
        .await
    }

    /// Redis Enterprise clusters of a resource group.
    pub async fn list_redis_enterprise_in_group(
        &self,
        subscription: &str,
        group: &str,
    ) -> Result<Vec<RedisEnterprise>, Error> {
        self.list(
            &format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Cache/redisEnterprise"),
            REDIS_ENTERPRISE_API,
        )
        .await
    }

    /// Databases of a Redis Enterprise cluster.
    pub async fn list_redis_enterprise_databases(
        &self,
        cluster_id: &str,
    ) -> Result<Vec<RedisEnterpriseDatabase>, Error> {
        Self::check_id(cluster_id)?;
        self.list(&format!("{cluster_id}/databases"), REDIS_ENTERPRISE_API)
            .await
    }

    /// A Redis Enterprise cluster by resource ID.
    pub async fn get_redis_enterprise(&self, id: &str) -> Result<RedisEnterprise, Error> {
        Self::check_id(id)?;
        self.get(id, REDIS_ENTERPRISE_API).await
    }

    /// A Redis Enterprise database by resource ID (`.../redisEnterprise/<cluster>/databases/<db>`).
    pub async fn get_redis_enterprise_database(
        &self,
        database_id: &str,
    ) -> Result<RedisEnterpriseDatabase, Error> {
        Self::check_id(database_id)?;
        self.get(database_id, REDIS_ENTERPRISE_API).await
    }

    /// Access keys of a Redis Enterprise database.
    pub async fn redis_enterprise_keys(&self, database_id: &str) -> Result<AccessKeys, Error> {
        Self::check_id(database_id)?;
        let v = self
            .call(
                reqwest::Method::POST,
                &self.url(&format!("{database_id}/listKeys"), REDIS_ENTERPRISE_API),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| malformed(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids() {
        let id = ResourceId::parse(
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v",
        )
        .unwrap();
        assert_eq!(id.subscription, "s");
        assert_eq!(id.resource_group, "g");
        assert_eq!(id.name, "v");
        assert!(ResourceId::parse("/subscriptions/s").is_err());
        assert!(ResourceId::parse("").is_err());
        assert!(ResourceId::parse("/subscriptions//resourceGroups/g/providers/a/b/c").is_err());
        // IDs become ARM URLs: every segment is one plain path segment.
        let base = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/redis/r";
        assert!(ResourceId::parse(&format!("{base}/databases/default")).is_ok());
        for bad in [
            format!("{base}/../../../other"),
            format!("{base}/./x"),
            format!("{base}//x"),
            format!("{base}?api-version=1"),
            format!("{base}#x"),
            format!("{base}/%2e%2e"),
            format!("{base}/a b"),
            format!("{base}/a\\b"),
            format!("{base}/a\nb"),
            "/subscriptions/s/resourceGroups/../providers/a/b/c".to_string(),
        ] {
            assert!(ResourceId::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_access_key_settings() {
        let r: Redis = serde_json::from_value(serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Cache/Redis/r",
            "name": "r",
            "properties": {"hostName": "r.redis.cache.windows.net", "disableAccessKeyAuthentication": true},
        }))
        .unwrap();
        assert!(r.properties.disable_access_key_authentication);
        for props in [
            serde_json::json!({"hostName": "h", "disableAccessKeyAuthentication": null}),
            serde_json::json!({"hostName": "h"}),
        ] {
            let r: RedisProperties = serde_json::from_value(props).unwrap();
            assert!(!r.disable_access_key_authentication);
        }
        let d: RedisEnterpriseDatabaseProperties =
            serde_json::from_value(serde_json::json!({"accessKeysAuthentication": "Disabled"}))
                .unwrap();
        assert!(d.access_keys_disabled());
        let d: RedisEnterpriseDatabaseProperties =
            serde_json::from_value(serde_json::json!({"accessKeysAuthentication": null})).unwrap();
        assert!(!d.access_keys_disabled());
    }

    #[test]
    fn error_bodies() {
        let e = arm_error(
            403,
            br#"{"error":{"code":"AuthorizationFailed","message":"no"}}"#,
        );
        assert!(e.arm().unwrap().is_authorization_failed());
        let e = arm_error(500, b"\xff\xfegarbage");
        assert_eq!(e.arm().unwrap().code, "");
        let e = arm_error(404, br#"{"error":"x"}"#);
        assert!(e.arm().unwrap().is_not_found());
    }
}
