//! Credentials on the official `azure_identity` crate: managed identity, workload identity, client
//! secret, and the default chain (environment, workload identity, managed identity), plus minting
//! tokens for other user-assigned identities (on a VM through IMDS, on AKS through workload identity).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::arm::ArmClient;
use crate::cache::{FetchToken, Token};
use crate::http::HttpConfig;
use crate::imds::ManagedIdentityId;
use crate::{Cloud, Error};

/// The first line of the default chain's error, as Azure SDKs (and Teleport's docs) print it.
pub const DEFAULT_CHAIN_ERROR: &str = "DefaultAzureCredential: failed to acquire a token.";

/// A shared credential.
pub type Credential = Arc<dyn TokenCredential>;

/// `<resource>/.default` for a v1 resource; scopes are returned unchanged. Right for every resource,
/// not only ARM (`https://vault.azure.net` -> `https://vault.azure.net/.default`).
pub fn to_scope(resource: &str) -> String {
    if resource.ends_with("/.default") || resource.contains(' ') {
        return resource.to_string();
    }
    let trimmed = resource.trim_end_matches('/');
    format!("{trimmed}/.default")
}

fn cred_err(e: impl std::fmt::Display) -> Error {
    Error::Credential(e.to_string())
}

/// A managed-identity credential (IMDS on VMs; App Service when `IDENTITY_ENDPOINT` is set).
pub fn managed_identity(
    id: &ManagedIdentityId,
    http: &HttpConfig,
    cloud: Cloud,
) -> Result<Credential, Error> {
    let user_assigned_id = match id {
        ManagedIdentityId::System => None,
        ManagedIdentityId::ClientId(c) => Some(UserAssignedId::ClientId(c.clone())),
        ManagedIdentityId::ObjectId(o) => Some(UserAssignedId::ObjectId(o.clone())),
        ManagedIdentityId::ResourceId(r) => Some(UserAssignedId::ResourceId(r.clone())),
    };
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id,
        client_options: http.client_options(cloud)?,
    };
    let cred = ManagedIdentityCredential::new(Some(options)).map_err(cred_err)?;
    Ok(cred)
}

/// A workload-identity credential (AKS): values default to `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
/// `AZURE_FEDERATED_TOKEN_FILE`.
pub fn workload_identity(
    client_id: Option<String>,
    tenant_id: Option<String>,
    token_file: Option<PathBuf>,
    http: &HttpConfig,
    cloud: Cloud,
) -> Result<Credential, Error> {
    let options = WorkloadIdentityCredentialOptions {
        credential_options: ClientAssertionCredentialOptions {
            client_options: http.client_options(cloud)?,
        },
        client_id,
        tenant_id,
        token_file_path: token_file,
    };
    let cred = WorkloadIdentityCredential::new(Some(options)).map_err(cred_err)?;
    Ok(cred)
}

/// A client-secret credential.
pub fn client_secret(
    tenant_id: &str,
    client_id: &str,
    secret: &str,
    http: &HttpConfig,
    cloud: Cloud,
) -> Result<Credential, Error> {
    let options = ClientSecretCredentialOptions {
        client_options: http.client_options(cloud)?,
    };
    let cred = ClientSecretCredential::new(
        tenant_id,
        client_id.to_string(),
        Secret::new(secret.to_string()),
        Some(options),
    )
    .map_err(cred_err)?;
    Ok(cred)
}

/// Why a link of the default chain has no credential (reported when no
/// link gives a token, as `azidentity` reports it).
#[derive(Debug, thiserror::Error)]
enum Unavailable {
    /// The credential could not be built from its settings.
    #[error(transparent)]
    Build(#[from] Error),
    /// A variable the link needs is not set.
    #[error("missing environment variable {0}")]
    MissingVariable(&'static str),
    /// `AZURE_CLIENT_SECRET` is not set (the only environment credential
    /// supported).
    #[error("missing environment variable AZURE_CLIENT_SECRET (client certificates and passwords are not supported)")]
    NoClientSecret,
    /// `AZURE_FEDERATED_TOKEN_FILE` is not set.
    #[error("no token file specified: set AZURE_FEDERATED_TOKEN_FILE (AKS workload identity)")]
    NoTokenFile,
    /// The token file is set but the tenant or client ID is not.
    #[error("missing AZURE_TENANT_ID or AZURE_CLIENT_ID for workload identity")]
    NoWorkloadIds,
}

/// One link of the default chain: a credential, or why it could not be built.
struct Link {
    name: &'static str,
    credential: Result<Credential, Unavailable>,
}

/// The default chain: environment (client secret), workload identity, managed identity, in that order.
pub struct DefaultChain {
    links: Vec<Link>,
    /// The link that worked last, tried first next time.
    last_good: Mutex<Option<usize>>,
}

impl std::fmt::Debug for DefaultChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.links.iter().map(|l| l.name).collect();
        f.debug_struct("DefaultChain")
            .field("links", &names)
            .finish()
    }
}

impl DefaultChain {
    /// The chain configured from the process environment.
    pub fn from_env(http: &HttpConfig, cloud: Cloud) -> Self {
        Self::from_vars(
            |k| std::env::var(k).ok().filter(|v| !v.is_empty()),
            http,
            cloud,
        )
    }

    /// The chain configured from `var` (for tests: no process environment involved).
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        http: &HttpConfig,
        cloud: Cloud,
    ) -> Self {
        let tenant = var("AZURE_TENANT_ID");
        let client = var("AZURE_CLIENT_ID");
        let environment = match (&tenant, &client, var("AZURE_CLIENT_SECRET")) {
            (Some(t), Some(c), Some(s)) => {
                client_secret(t, c, &s, http, cloud).map_err(Unavailable::from)
            }
            (None, _, _) => Err(Unavailable::MissingVariable("AZURE_TENANT_ID")),
            (_, None, _) => Err(Unavailable::MissingVariable("AZURE_CLIENT_ID")),
            (_, _, None) => Err(Unavailable::NoClientSecret),
        };
        let workload = match (&tenant, &client, var("AZURE_FEDERATED_TOKEN_FILE")) {
            (Some(t), Some(c), Some(f)) => workload_identity(
                Some(c.clone()),
                Some(t.clone()),
                Some(PathBuf::from(f)),
                http,
                cloud,
            )
            .map_err(Unavailable::from),
            (_, _, None) => Err(Unavailable::NoTokenFile),
            _ => Err(Unavailable::NoWorkloadIds),
        };
        let id = match client {
            Some(c) => ManagedIdentityId::ClientId(c),
            None => ManagedIdentityId::System,
        };
        let managed = managed_identity(&id, http, cloud).map_err(Unavailable::from);
        Self {
            links: vec![
                Link {
                    name: "EnvironmentCredential",
                    credential: environment,
                },
                Link {
                    name: "WorkloadIdentityCredential",
                    credential: workload,
                },
                Link {
                    name: "ManagedIdentityCredential",
                    credential: managed,
                },
            ],
            last_good: Mutex::new(None),
        }
    }

    /// Gets a token for `scopes`, trying each source in order.
    pub async fn token(&self, scopes: &[&str]) -> Result<AccessToken, Error> {
        let first = self.last_good.lock().ok().and_then(|g| *g);
        let mut order: Vec<usize> = (0..self.links.len()).collect();
        if let Some(i) = first {
            order.retain(|&j| j != i);
            order.insert(0, i);
        }
        let mut failures: Vec<(usize, String)> = Vec::new();
        for i in order {
            let Some(link) = self.links.get(i) else {
                continue;
            };
            match &link.credential {
                Err(why) => failures.push((i, why.to_string())),
                Ok(cred) => match cred.get_token(scopes, None).await {
                    Ok(token) => {
                        if let Ok(mut g) = self.last_good.lock() {
                            *g = Some(i);
                        }
                        return Ok(token);
                    }
                    Err(e) => failures.push((i, e.to_string().replace('\n', " "))),
                },
            }
        }
        failures.sort_by_key(|(i, _)| *i);
        let mut message = format!("{DEFAULT_CHAIN_ERROR}\nAttempted credentials:");
        for (i, why) in failures {
            let name = self.links.get(i).map(|l| l.name).unwrap_or("Credential");
            message.push_str(&format!("\n\t{name}: {why}"));
        }
        Err(Error::Credential(message))
    }
}

#[async_trait::async_trait]
impl TokenCredential for DefaultChain {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.token(scopes).await.map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string())
        })
    }
}

/// Converts an SDK token into a cache token.
pub fn to_token(token: &AccessToken) -> Token {
    let secs = token.expires_on.unix_timestamp();
    let expires_on = if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    };
    Token::new(token.token.secret(), expires_on)
}

/// How tokens for other user-assigned identities are minted.
pub enum MintStrategy {
    /// On a VM holding the identities: IMDS with the identity's resource ID.
    Vm,
    /// On AKS: the identity's client ID is resolved through ARM, then workload identity with that client ID.
    Aks {
        /// ARM client used to resolve client IDs.
        arm: Arc<ArmClient>,
        /// Tenant.
        tenant_id: String,
        /// The projected service-account token file.
        token_file: PathBuf,
    },
}

/// Mints tokens for (user-assigned identity resource ID, scope); plug it into a [`crate::TokenCache`].
pub struct IdentityMinter {
    strategy: MintStrategy,
    http: HttpConfig,
    cloud: Cloud,
    credentials: Mutex<HashMap<String, Credential>>,
}

impl std::fmt::Debug for IdentityMinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityMinter").finish_non_exhaustive()
    }
}

impl IdentityMinter {
    /// A minter.
    pub fn new(strategy: MintStrategy, http: HttpConfig, cloud: Cloud) -> Self {
        Self {
            strategy,
            http,
            cloud,
            credentials: Mutex::new(HashMap::new()),
        }
    }

    async fn credential_for(&self, identity: &str) -> Result<Credential, Error> {
        let key = identity.to_ascii_lowercase();
        if let Some(c) = self
            .credentials
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(c);
        }
        let cred = match &self.strategy {
            MintStrategy::Vm => managed_identity(
                &ManagedIdentityId::ResourceId(identity.to_string()),
                &self.http,
                self.cloud,
            )?,
            MintStrategy::Aks {
                arm,
                tenant_id,
                token_file,
            } => {
                let resolved = arm.get_identity(identity).await?;
                workload_identity(
                    Some(resolved.properties.client_id),
                    Some(tenant_id.clone()),
                    Some(token_file.clone()),
                    &self.http,
                    self.cloud,
                )?
            }
        };
        if let Ok(mut m) = self.credentials.lock() {
            m.insert(key, cred.clone());
        }
        Ok(cred)
    }
}

#[async_trait::async_trait]
impl FetchToken for IdentityMinter {
    async fn fetch(&self, identity: &str, scope: &str) -> Result<Token, Error> {
        let cred = self.credential_for(identity).await?;
        let scope = to_scope(scope);
        let token = cred
            .get_token(&[scope.as_str()], None)
            .await
            .map_err(|e| Error::Credential(format!("token for {identity} ({scope}): {e}")))?;
        Ok(to_token(&token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_for_every_resource() {
        assert_eq!(
            to_scope("https://management.azure.com/"),
            "https://management.azure.com/.default"
        );
        assert_eq!(
            to_scope("https://vault.azure.net"),
            "https://vault.azure.net/.default"
        );
        assert_eq!(
            to_scope("https://redis.azure.com/.default"),
            "https://redis.azure.com/.default"
        );
        assert_eq!(
            to_scope("https://storage.azure.com"),
            "https://storage.azure.com/.default"
        );
    }
}
