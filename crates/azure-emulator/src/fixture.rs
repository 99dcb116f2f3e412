//! The fixture file: a YAML description of the fake Azure world, and its checked, resolved form.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::Error;

/// Default lifetime of the tokens the emulator issues (real IMDS hands out about 24 hours).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 86_399;
/// Default page size of ARM lists.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The fixture as written in YAML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Entra tenant ID.
    pub tenant_id: String,
    /// Display name of the tenant.
    #[serde(default)]
    pub tenant_display_name: Option<String>,
    /// The VM a client is when its proxy URL carries no credentials.
    #[serde(default)]
    pub default_vm: Option<String>,
    /// Page size of every ARM list (small values exercise `nextLink`).
    #[serde(default)]
    pub page_size: Option<usize>,
    /// Lifetime of issued tokens, in seconds.
    #[serde(default)]
    pub token_lifetime_secs: Option<u64>,
    /// Subscriptions and everything in them.
    pub subscriptions: Vec<SubscriptionSpec>,
    /// Role assignments (who may do what where).
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignmentSpec>,
    /// App registrations (service principals) for the client-credentials grant.
    #[serde(default)]
    pub applications: Vec<ApplicationSpec>,
}

/// A subscription.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// Subscription ID (a GUID).
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Resource groups.
    #[serde(default)]
    pub resource_groups: Vec<ResourceGroupSpec>,
}

/// A resource group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceGroupSpec {
    /// Name.
    pub name: String,
    /// Azure region name (`eastus`).
    #[serde(default = "default_location")]
    pub location: String,
    /// User-assigned managed identities.
    #[serde(default)]
    pub identities: Vec<IdentitySpec>,
    /// Virtual machines.
    #[serde(default)]
    pub vms: Vec<VmSpec>,
    /// Azure Cache for Redis instances.
    #[serde(default)]
    pub redis: Vec<RedisSpec>,
    /// Redis Enterprise clusters.
    #[serde(default)]
    pub redis_enterprise: Vec<RedisEnterpriseSpec>,
}

fn default_location() -> String {
    "eastus".to_string()
}

/// A user-assigned managed identity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySpec {
    /// Name.
    pub name: String,
    /// Application (client) ID.
    pub client_id: String,
    /// Object (principal) ID.
    pub principal_id: String,
    /// Region; the resource group's when absent.
    #[serde(default)]
    pub location: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Federated credentials (workload identity): tokens from `issuer` with `subject` may be exchanged.
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredentialSpec>,
}

/// A federated identity credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederatedCredentialSpec {
    /// Issuer of the external token.
    pub issuer: String,
    /// Subject of the external token.
    pub subject: String,
    /// Audiences accepted (Entra's default when absent).
    #[serde(default = "default_federated_audiences")]
    pub audiences: Vec<String>,
}

fn default_federated_audiences() -> Vec<String> {
    vec!["api://AzureADTokenExchange".to_string()]
}

/// A virtual machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Name.
    pub name: String,
    /// The VM's unique ID (a GUID).
    pub vm_id: String,
    /// Region; the resource group's when absent.
    #[serde(default)]
    pub location: Option<String>,
    /// Size.
    #[serde(default = "default_vm_size")]
    pub size: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Attached user-assigned identities: names (unique in the subscription) or resource IDs.
    #[serde(default)]
    pub identities: Vec<String>,
}

fn default_vm_size() -> String {
    "Standard_B2s".to_string()
}

/// An Azure Cache for Redis instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSpec {
    /// Name.
    pub name: String,
    /// Region display name as ARM reports it for Redis (`East US`); the group's location when absent.
    #[serde(default)]
    pub location: Option<String>,
    /// Host name; `<name>.redis.cache.windows.net` when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// TLS port.
    #[serde(default = "default_ssl_port")]
    pub ssl_port: u16,
    /// Redis version.
    #[serde(default = "default_redis_version")]
    pub redis_version: String,
    /// Provisioning state.
    #[serde(default = "default_succeeded")]
    pub provisioning_state: String,
    /// Primary access key.
    pub primary_key: String,
    /// Secondary access key.
    pub secondary_key: String,
    /// Access keys refused (`disableAccessKeyAuthentication: true`): clients use Microsoft Entra ID
    /// tokens, and `listKeys` fails.
    #[serde(default)]
    pub access_keys_disabled: bool,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The real redis-server behind this cache, if any (tests, demos): `regenerateKey` changes its
    /// passwords as Azure changes the cache's.
    #[serde(default)]
    pub server: Option<RedisServerSpec>,
}

/// A real redis-server standing in for a cache or database. When a key is regenerated through ARM,
/// the emulator logs in with one of the keys it had (as the `default` user) and makes that user's
/// passwords exactly the two new keys (`ACL SETUSER default on resetpass >primary >secondary`), so
/// the server, like Azure, accepts either key and refuses a regenerated one, while connections
/// already authenticated stay so. The server must accept one of the keys when that happens (start
/// it with `--requirepass <primary key>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisServerSpec {
    /// Host to connect to (and the TLS name checked); the resource's `host`, else `localhost`.
    #[serde(default)]
    pub host: Option<String>,
    /// Ports of its nodes (every master of a cluster); the resource's port when empty.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// PEM file of the CA its TLS certificate chains to; plain TCP when absent.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn default_ssl_port() -> u16 {
    6380
}
fn default_redis_version() -> String {
    "6.0".to_string()
}
fn default_succeeded() -> String {
    "Succeeded".to_string()
}

/// A Redis Enterprise cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisEnterpriseSpec {
    /// Name.
    pub name: String,
    /// Region; the group's when absent.
    #[serde(default)]
    pub location: Option<String>,
    /// Host name; `<name>.<region>.redisenterprise.cache.azure.net` when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// SKU name.
    #[serde(default = "default_enterprise_sku")]
    pub sku: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Databases.
    #[serde(default)]
    pub databases: Vec<RedisEnterpriseDatabaseSpec>,
}

fn default_enterprise_sku() -> String {
    "Enterprise_E10".to_string()
}

/// A Redis Enterprise database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisEnterpriseDatabaseSpec {
    /// Name (`default` for the usual one).
    #[serde(default = "default_db_name")]
    pub name: String,
    /// Port.
    #[serde(default = "default_enterprise_port")]
    pub port: u16,
    /// `Encrypted` or `Plaintext`.
    #[serde(default = "default_client_protocol")]
    pub client_protocol: String,
    /// `OSSCluster` or `EnterpriseCluster`.
    #[serde(default = "default_clustering_policy")]
    pub clustering_policy: String,
    /// Primary access key.
    pub primary_key: String,
    /// Secondary access key.
    pub secondary_key: String,
    /// Access keys refused (`accessKeysAuthentication: Disabled`, Azure Managed Redis's default):
    /// clients use Microsoft Entra ID tokens, and `listKeys` fails.
    #[serde(default)]
    pub access_keys_disabled: bool,
    /// The real redis-server behind this database, if any (see [`RedisServerSpec`]).
    #[serde(default)]
    pub server: Option<RedisServerSpec>,
}

fn default_db_name() -> String {
    "default".to_string()
}
fn default_enterprise_port() -> u16 {
    10000
}
fn default_client_protocol() -> String {
    "Encrypted".to_string()
}
fn default_clustering_policy() -> String {
    "OSSCluster".to_string()
}

/// A role assignment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignmentSpec {
    /// An identity name, an application name, or a principal (object) ID.
    pub principal: String,
    /// `Reader`, `Contributor`, `Owner` or `Redis Cache Contributor`.
    pub role: String,
    /// `/`, `/subscriptions/<s>`, `/subscriptions/<s>/resourceGroups/<g>` or any resource ID.
    pub scope: String,
}

/// An app registration with its service principal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSpec {
    /// Display name.
    pub name: String,
    /// Application (client) ID.
    pub client_id: String,
    /// Object ID of the service principal.
    pub object_id: String,
    /// Client secrets accepted.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Federated credentials.
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredentialSpec>,
}

/// Built-in roles the emulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `*/read`.
    Reader,
    /// Everything but authorization writes.
    Contributor,
    /// Everything.
    Owner,
    /// `Microsoft.Cache/*` plus reads.
    RedisCacheContributor,
}

impl Role {
    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "reader" => Some(Self::Reader),
            "contributor" => Some(Self::Contributor),
            "owner" => Some(Self::Owner),
            "redis cache contributor" => Some(Self::RedisCacheContributor),
            _ => None,
        }
    }

    /// Whether this role grants `action` (e.g. `Microsoft.Compute/virtualMachines/read`).
    pub fn allows(self, action: &str) -> bool {
        let action = action.to_ascii_lowercase();
        match self {
            Self::Reader => action.ends_with("/read"),
            Self::Contributor | Self::Owner => true,
            Self::RedisCacheContributor => {
                action.ends_with("/read") || action.starts_with("microsoft.cache/")
            }
        }
    }
}

/// A principal that may hold roles: an identity or an application.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Object ID.
    pub object_id: String,
    /// Client ID.
    pub client_id: String,
    /// The identity's resource ID when it is a managed identity.
    pub identity_id: Option<String>,
    /// Display name.
    pub name: String,
}

/// A resolved role assignment.
#[derive(Debug, Clone)]
pub struct RoleAssignment {
    /// Object ID of the principal.
    pub principal_object_id: String,
    /// The role.
    pub role: Role,
    /// Scope, lower-cased, without a trailing slash (`""` is the root).
    pub scope_lc: String,
}

/// The checked world: the fixture plus lookups.
#[derive(Debug, Clone)]
pub struct World {
    /// The fixture as loaded.
    pub fixture: Fixture,
    /// Role assignments with principals resolved.
    pub assignments: Vec<RoleAssignment>,
    /// Name of the default VM.
    pub default_vm: String,
}

/// Where a resource sits.
#[derive(Debug, Clone, Copy)]
pub struct Loc<'a> {
    /// Its subscription.
    pub sub: &'a SubscriptionSpec,
    /// Its resource group.
    pub rg: &'a ResourceGroupSpec,
}

impl Loc<'_> {
    /// `/subscriptions/<s>/resourceGroups/<g>`.
    pub fn rg_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.sub.id, self.rg.name
        )
    }
}

impl World {
    /// Loads and checks a fixture file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Fixture {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            Error::Fixture { message, .. } => Error::Fixture {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and checks fixture YAML.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        let fixture: Fixture = serde_yaml_ng::from_str(text).map_err(|e| Error::Fixture {
            path: "<inline>".to_string(),
            message: e.to_string(),
        })?;
        Self::new(fixture)
    }

    /// Checks a fixture and resolves its references.
    pub fn new(fixture: Fixture) -> Result<Self, Error> {
        let bad = |message: String| Error::Fixture {
            path: "<inline>".to_string(),
            message,
        };
        let mut world = World {
            fixture,
            assignments: Vec::new(),
            default_vm: String::new(),
        };
        // Every VM identity reference must resolve.
        for (loc, vm) in world.vms() {
            for reference in &vm.identities {
                if world.find_identity_ref(reference).is_none() {
                    return Err(bad(format!(
                        "VM {:?} in {}: identity {reference:?} not found (or ambiguous)",
                        vm.name,
                        loc.rg_id()
                    )));
                }
            }
        }
        let default_vm = match &world.fixture.default_vm {
            Some(name) => {
                if world.find_vm(name).is_none() {
                    return Err(bad(format!(
                        "default_vm {name:?} is not a VM of the fixture"
                    )));
                }
                name.clone()
            }
            None => match world.vms().first() {
                Some((_, vm)) => vm.name.clone(),
                None => String::new(),
            },
        };
        world.default_vm = default_vm;
        let mut assignments = Vec::new();
        for ra in &world.fixture.role_assignments {
            let role =
                Role::parse(&ra.role).ok_or_else(|| bad(format!("unknown role {:?}", ra.role)))?;
            let principal = world.find_principal(&ra.principal).ok_or_else(|| {
                bad(format!(
                    "role assignment principal {:?} not found",
                    ra.principal
                ))
            })?;
            let scope_lc = ra.scope.trim_end_matches('/').to_ascii_lowercase();
            if !(scope_lc.is_empty() || scope_lc.starts_with("/subscriptions/")) {
                return Err(bad(format!(
                    "role assignment scope {:?} is not a scope",
                    ra.scope
                )));
            }
            assignments.push(RoleAssignment {
                principal_object_id: principal.object_id,
                role,
                scope_lc,
            });
        }
        world.assignments = assignments;
        Ok(world)
    }

    /// The tenant ID.
    pub fn tenant_id(&self) -> &str {
        &self.fixture.tenant_id
    }

    /// ARM page size.
    pub fn page_size(&self) -> usize {
        self.fixture.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1)
    }

    /// Resource groups with their subscription.
    pub fn groups(&self) -> Vec<Loc<'_>> {
        self.fixture
            .subscriptions
            .iter()
            .flat_map(|sub| sub.resource_groups.iter().map(move |rg| Loc { sub, rg }))
            .collect()
    }

    /// Every VM with where it sits.
    pub fn vms(&self) -> Vec<(Loc<'_>, &VmSpec)> {
        self.groups()
            .into_iter()
            .flat_map(|loc| loc.rg.vms.iter().map(move |vm| (loc, vm)))
            .collect()
    }

    /// Every identity with where it sits.
    pub fn identities(&self) -> Vec<(Loc<'_>, &IdentitySpec)> {
        self.groups()
            .into_iter()
            .flat_map(|loc| loc.rg.identities.iter().map(move |i| (loc, i)))
            .collect()
    }

    /// Every Redis cache with where it sits.
    pub fn redis(&self) -> Vec<(Loc<'_>, &RedisSpec)> {
        self.groups()
            .into_iter()
            .flat_map(|loc| loc.rg.redis.iter().map(move |r| (loc, r)))
            .collect()
    }

    /// Every Redis Enterprise cluster with where it sits.
    pub fn redis_enterprise(&self) -> Vec<(Loc<'_>, &RedisEnterpriseSpec)> {
        self.groups()
            .into_iter()
            .flat_map(|loc| loc.rg.redis_enterprise.iter().map(move |r| (loc, r)))
            .collect()
    }

    /// A VM by name.
    pub fn find_vm(&self, name: &str) -> Option<(Loc<'_>, &VmSpec)> {
        self.vms()
            .into_iter()
            .find(|(_, vm)| vm.name.eq_ignore_ascii_case(name))
    }

    /// An identity by full resource ID (case-insensitive) or by a name unique in the fixture.
    pub fn find_identity_ref(&self, reference: &str) -> Option<(Loc<'_>, &IdentitySpec)> {
        if reference.starts_with('/') {
            return self.identities().into_iter().find(|(loc, i)| {
                identity_id(loc, i).eq_ignore_ascii_case(reference.trim_end_matches('/'))
            });
        }
        let mut matches = self
            .identities()
            .into_iter()
            .filter(|(_, i)| i.name.eq_ignore_ascii_case(reference));
        let first = matches.next()?;
        if matches.next().is_some() {
            return None;
        }
        Some(first)
    }

    /// A principal by identity name/ID, application name, or object ID.
    pub fn find_principal(&self, reference: &str) -> Option<Principal> {
        if let Some((loc, i)) = self.find_identity_ref(reference) {
            return Some(identity_principal(&loc, i));
        }
        for (loc, i) in self.identities() {
            if i.principal_id.eq_ignore_ascii_case(reference) {
                return Some(identity_principal(&loc, i));
            }
        }
        self.fixture
            .applications
            .iter()
            .find(|a| {
                a.name.eq_ignore_ascii_case(reference)
                    || a.object_id.eq_ignore_ascii_case(reference)
            })
            .map(app_principal)
    }
}

/// The resource ID of an identity.
pub fn identity_id(loc: &Loc<'_>, i: &IdentitySpec) -> String {
    format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
        loc.rg_id(),
        i.name
    )
}

/// The resource ID of a VM.
pub fn vm_resource_id(loc: &Loc<'_>, vm: &VmSpec) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{}",
        loc.rg_id(),
        vm.name
    )
}

/// The principal of an identity.
pub fn identity_principal(loc: &Loc<'_>, i: &IdentitySpec) -> Principal {
    Principal {
        object_id: i.principal_id.clone(),
        client_id: i.client_id.clone(),
        identity_id: Some(identity_id(loc, i)),
        name: i.name.clone(),
    }
}

/// The principal of an application.
pub fn app_principal(a: &ApplicationSpec) -> Principal {
    Principal {
        object_id: a.object_id.clone(),
        client_id: a.client_id.clone(),
        identity_id: None,
        name: a.name.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn example_fixture_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
        let world = World::load(&path).unwrap();
        assert_eq!(world.default_vm, "teleport-vm");
        assert!(world.find_identity_ref("teleport-azure").is_some());
        assert!(!world.assignments.is_empty());
    }

    #[test]
    fn bad_references_are_errors() {
        let yaml = r#"
tenant_id: t
subscriptions:
  - id: s
    resource_groups:
      - name: g
        vms:
          - name: v
            vm_id: x
            identities: [nope]
"#;
        let err = World::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let err = World::from_yaml("tenant_id: [").unwrap_err().to_string();
        assert!(err.contains("fixture"), "{err}");
    }
}
