//! Azure Cache for Redis and Redis Enterprise discovery: list what the
//! matchers select through ARM and turn each usable endpoint into a database.
//!
//! Skipped: caches without a TLS port or in a transitional/failed state;
//! Enterprise databases that are not `Encrypted` or are being created,
//! deleted, cancelled or failed (as Teleport does). Names come from the
//! resource (Enterprise: the cluster, or `<cluster>-<db>` for a database not
//! named `default`); the `TeleportDatabaseName` tag overrides them.
//!
//! ARM is a peer: the host name it reports becomes a dial target and the TLS
//! server name, so it is parsed as an authority (a DNS name and nothing else:
//! no userinfo, port, path or query) and must lie under one of Azure's Redis
//! DNS suffixes ([`AZURE_REDIS_SUFFIXES`]); ports must be 1 to 65535 and names
//! must be resource names, and resource IDs (later part of ARM URLs) plain
//! paths. Anything else is skipped with a warning.

use std::collections::BTreeMap;

use azure_mint::arm::{ArmClient, Redis, RedisEnterprise, RedisEnterpriseDatabase};
use azure_mint::authority::{AddressError, Authority, Host};
use config::AzureMatcher;
use resources::{Database, DatabaseAzure};

/// Redis cache states that are skipped.
const SKIPPED_REDIS_STATES: [&str; 6] = [
    "creating",
    "deleting",
    "disabled",
    "failed",
    "provisioning",
    "unprovisioning",
];
/// Redis Enterprise states that are skipped.
const SKIPPED_ENTERPRISE_STATES: [&str; 4] = ["canceled", "creating", "deleting", "failed"];

/// DNS suffixes under which Azure serves Redis: Azure Cache for Redis, Redis Enterprise and
/// Azure Managed Redis, in the public cloud, Azure operated by 21Vianet and Azure Government.
/// A discovered host must be a name strictly below one of them (private endpoints'
/// `*.privatelink.redis.cache.windows.net` included).
pub const AZURE_REDIS_SUFFIXES: &[&str] = &[
    "redis.cache.windows.net",
    "redisenterprise.cache.azure.net",
    "redis.azure.net",
    "redis.cache.chinacloudapi.cn",
    "redisenterprise.cache.chinacloudapi.cn",
    "redis.cache.usgovcloudapi.net",
    "redisenterprise.cache.usgovcloudapi.net",
];

/// The one name outside [`AZURE_REDIS_SUFFIXES`] accepted: the agent's own loopback, where the
/// Azure emulator's caches live (it cannot serve them under Azure's names without DNS). A host
/// ARM names this way reaches nothing beyond the agent's host, and TLS still verifies it.
const LOOPBACK_NAME: &str = "localhost";

/// Why a resource ARM reported is not registered as a database (logged,
/// and the resource skipped).
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    /// The host name is not a host.
    #[error(transparent)]
    BadHost(#[from] AddressError),
    /// The host name carries a port.
    #[error("{0:?} carries a port: ARM reports host names without one")]
    HostWithPort(String),
    /// The host is an IP address.
    #[error("{0:?} is an IP address, not an Azure Redis host name")]
    IpAddress(String),
    /// The host is not under one of [`AZURE_REDIS_SUFFIXES`].
    #[error("{0:?} is not under an Azure Redis DNS suffix ({suffixes})", suffixes = AZURE_REDIS_SUFFIXES.join(", "))]
    NotAzureRedisHost(String),
    /// The name (resource name or `TeleportDatabaseName` tag) is not one
    /// the auth service registers.
    #[error(
        "the database name {0:?} is not 1 to 253 letters, digits, '-', '_' and '.' \
         (set the TeleportDatabaseName tag to one)"
    )]
    BadName(String),
    /// The resource ID is not a plain ARM path.
    #[error("{0:?} is not a plain ARM resource ID")]
    BadResourceId(String),
}

/// The host of a Redis endpoint that ARM reported, when it may be dialled: a DNS name
/// ([`Authority::parse`]: no userinfo, port, path, query, whitespace or IP literal) strictly
/// under one of [`AZURE_REDIS_SUFFIXES`] (or [`LOOPBACK_NAME`]). Lowercase.
pub fn redis_endpoint_host(host_name: &str) -> Result<String, SkipReason> {
    let authority = Authority::parse(host_name)?;
    if authority.port().is_some() {
        return Err(SkipReason::HostWithPort(host_name.to_string()));
    }
    let Host::Dns(name) = authority.host() else {
        return Err(SkipReason::IpAddress(host_name.to_string()));
    };
    let under = |suffix: &str| {
        name.len() > suffix.len() + 1
            && name.ends_with(suffix)
            && name.as_bytes().get(name.len() - suffix.len() - 1) == Some(&b'.')
    };
    if name == LOOPBACK_NAME || AZURE_REDIS_SUFFIXES.iter().any(|s| under(s)) {
        Ok(name.clone())
    } else {
        Err(SkipReason::NotAzureRedisHost(host_name.to_string()))
    }
}

/// A database name from Azure (a resource name or a `TeleportDatabaseName` tag) when it is one
/// the auth service registers: 1 to 253 letters, digits, `-`, `_` and `.`, not only dots.
fn resource_name(name: &str) -> Result<(), SkipReason> {
    let ok = api::inventory::safe_name(name) && !name.bytes().all(|b| b == b'.');
    if ok {
        Ok(())
    } else {
        Err(SkipReason::BadName(name.to_string()))
    }
}

/// An ARM resource ID that later becomes part of ARM URLs (`listKeys`, the resource's settings):
/// `/subscriptions/...` segments of letters, digits and `-_.()`, none empty, `.` or `..`, so that
/// no URL built from it names another path, query or fragment.
fn resource_id_ok(id: &str) -> Result<(), SkipReason> {
    let ok = id.len() <= 1024
        && id.starts_with("/subscriptions/")
        && id.split('/').skip(1).all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'(' | b')')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(SkipReason::BadResourceId(id.to_string()))
    }
}

/// The host to dial a discovered resource at, to be announced as `name`, when its resource ID,
/// that name and the host name ARM reported may all be used.
fn checked_host(id: &str, name: &str, host_name: &str) -> Result<String, SkipReason> {
    resource_id_ok(id)?;
    resource_name(name)?;
    redis_endpoint_host(host_name)
}

/// A discovered resource that cannot be registered: skipped, and said why.
fn skip(id: &str, why: &dyn std::fmt::Display) -> Option<Database> {
    tracing::warn!(resource = %id, "Azure discovery skips the resource: {why}");
    None
}

/// A discovered database as the auth service takes it in a heartbeat
/// (`resources::served`): Azure tags that cannot be labels (control
/// characters, too long) are left out, as Teleport leaves out tags that are
/// not valid label keys; a resource whose other text still cannot be shown
/// (its location in the description) is skipped.
fn announceable(mut db: Database) -> Option<Database> {
    db.metadata.labels.retain(|k, v| match resources::served::check_label(k, v) {
        Ok(()) => true,
        Err(why) => {
            tracing::debug!(database = %db.metadata.name, "Azure discovery leaves out a tag: {why}");
            false
        }
    });
    if let Err(why) = db.check_served_text() {
        let id = db
            .spec
            .azure
            .as_ref()
            .map(|a| a.resource_id.clone())
            .unwrap_or_default();
        return skip(&id, &why);
    }
    Some(db)
}

/// `East US` -> `eastus`.
pub fn normalize_region(region: &str) -> String {
    region
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn wildcard(list: &[String]) -> bool {
    list.is_empty() || list.iter().any(|s| s == "*")
}

fn region_ok(m: &AzureMatcher, location: &str) -> bool {
    wildcard(&m.regions)
        || m.regions
            .iter()
            .any(|r| normalize_region(r) == normalize_region(location))
}

fn tags_ok(m: &AzureMatcher, tags: &BTreeMap<String, String>) -> bool {
    m.tags.iter().all(|(k, want)| {
        let values = want.to_vec();
        match tags.get(k) {
            Some(v) => values.iter().any(|w| w == "*" || w == v),
            None => k == "*" && values.iter().any(|w| w == "*"),
        }
    })
}

/// `/subscriptions/<s>/resourceGroups/<g>/...` -> (s, g).
pub fn parse_resource_id(id: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = id.split('/').collect();
    let sub = parts
        .iter()
        .position(|p| p.eq_ignore_ascii_case("subscriptions"))
        .and_then(|i| parts.get(i + 1))?;
    let group = parts
        .iter()
        .position(|p| p.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| parts.get(i + 1))?;
    Some((sub.to_string(), group.to_string()))
}

fn group_ok(m: &AzureMatcher, group: &str) -> bool {
    wildcard(&m.resource_groups)
        || m.resource_groups
            .iter()
            .any(|g| g.eq_ignore_ascii_case(group))
}

/// Whether an ARM provisioning state is one of `states` (lowercase), in any case.
fn in_state(states: &[&str], provisioning_state: &str) -> bool {
    states.contains(&provisioning_state.to_ascii_lowercase().as_str())
}

/// Whether the matcher selects the resource `id` in `location` with `tags`.
fn selected(m: &AzureMatcher, id: &str, location: &str, tags: &BTreeMap<String, String>) -> bool {
    parse_resource_id(id)
        .is_some_and(|(_, group)| region_ok(m, location) && tags_ok(m, tags) && group_ok(m, &group))
}

fn base_labels(
    id: &str,
    location: &str,
    tags: &BTreeMap<String, String>,
    engine: &str,
    version: &str,
) -> BTreeMap<String, String> {
    let mut labels = tags.clone();
    let (sub, group) = parse_resource_id(id).unwrap_or_default();
    labels.insert("region".into(), normalize_region(location));
    labels.insert("resource-group".into(), group);
    labels.insert("subscription-id".into(), sub);
    labels.insert("engine".into(), engine.into());
    labels.insert("engine-version".into(), version.into());
    labels.insert("teleport.dev/origin".into(), "cloud".into());
    labels
}

/// The database for one Azure Cache for Redis, or None when it is skipped.
pub fn redis_database(m: &AzureMatcher, r: &Redis) -> Option<Database> {
    let port = r.properties.ssl_port?;
    if in_state(&SKIPPED_REDIS_STATES, &r.properties.provisioning_state)
        || !selected(m, &r.id, &r.location, &r.tags)
    {
        return None;
    }
    let name = r
        .tags
        .get("TeleportDatabaseName")
        .cloned()
        .unwrap_or_else(|| r.name.clone());
    if port == 0 {
        return skip(&r.id, &"its TLS port is 0");
    }
    let host = match checked_host(&r.id, &name, &r.properties.host_name) {
        Ok(host) => host,
        Err(why) => return skip(&r.id, &why),
    };
    let mut db = Database::new(name, "redis", format!("{host}:{port}"));
    db.metadata.description = format!("Azure Redis server in {}", r.location);
    db.metadata.labels = base_labels(
        &r.id,
        &r.location,
        &r.tags,
        "Microsoft.Cache/Redis",
        &r.properties.redis_version,
    );
    db.spec.azure = Some(DatabaseAzure {
        name: r.name.clone(),
        resource_id: r.id.clone(),
        is_enterprise: false,
    });
    db.validate().ok()?;
    announceable(db)
}

/// The database for one Redis Enterprise database, or None when skipped.
pub fn enterprise_database(
    m: &AzureMatcher,
    cluster: &RedisEnterprise,
    d: &RedisEnterpriseDatabase,
) -> Option<Database> {
    if !d
        .properties
        .client_protocol
        .eq_ignore_ascii_case("Encrypted")
    {
        return None;
    }
    if in_state(&SKIPPED_ENTERPRISE_STATES, &d.properties.provisioning_state)
        || in_state(
            &SKIPPED_ENTERPRISE_STATES,
            &cluster.properties.provisioning_state,
        )
        || !selected(m, &cluster.id, &cluster.location, &cluster.tags)
    {
        return None;
    }
    let port = d.properties.port.unwrap_or(10000);
    let default_name = if d.name == "default" {
        cluster.name.clone()
    } else {
        format!("{}-{}", cluster.name, d.name)
    };
    let name = cluster
        .tags
        .get("TeleportDatabaseName")
        .cloned()
        .unwrap_or(default_name);
    if port == 0 {
        return skip(&d.id, &"its port is 0");
    }
    let host = match checked_host(&d.id, &name, &cluster.properties.host_name) {
        Ok(host) => host,
        Err(why) => return skip(&d.id, &why),
    };
    // The OSS cluster policy exposes the shards themselves: clients follow
    // MOVED/ASK, so sessions run the engine's cluster mode.
    let uri = if d
        .properties
        .clustering_policy
        .eq_ignore_ascii_case("OSSCluster")
    {
        format!("rediss://{host}:{port}?mode=cluster")
    } else {
        format!("rediss://{host}:{port}")
    };
    let mut db = Database::new(name, "redis", uri);
    db.metadata.description = format!("Azure Redis Enterprise server in {}", cluster.location);
    let mut labels = base_labels(
        &cluster.id,
        &cluster.location,
        &cluster.tags,
        "Microsoft.Cache/redisEnterprise",
        &cluster.properties.redis_version,
    );
    labels.insert(
        "endpoint-type".into(),
        d.properties.clustering_policy.clone(),
    );
    db.metadata.labels = labels;
    db.spec.azure = Some(DatabaseAzure {
        name: cluster.name.clone(),
        resource_id: d.id.clone(),
        is_enterprise: true,
    });
    db.validate().ok()?;
    announceable(db)
}

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// ARM refused or failed.
    #[error("Azure discovery: {0}")]
    Arm(#[from] azure_mint::Error),
}

/// Everything the matchers select, de-duplicated by name (first wins).
pub async fn discover(
    arm: &ArmClient,
    matchers: &[AzureMatcher],
) -> Result<Vec<Database>, DiscoveryError> {
    let mut out: BTreeMap<String, Database> = BTreeMap::new();
    for m in matchers {
        if !m.types.is_empty() && !m.types.iter().any(|t| t == "redis") {
            continue;
        }
        let subs: Vec<String> = if wildcard(&m.subscriptions) {
            arm.list_subscriptions()
                .await?
                .into_iter()
                .map(|s| s.subscription_id)
                .collect()
        } else {
            m.subscriptions.clone()
        };
        for sub in subs {
            for r in arm.list_redis(&sub).await? {
                if let Some(db) = redis_database(m, &r) {
                    out.entry(db.metadata.name.clone()).or_insert(db);
                }
            }
            for cluster in arm.list_redis_enterprise(&sub).await? {
                for d in arm.list_redis_enterprise_databases(&cluster.id).await? {
                    if let Some(db) = enterprise_database(m, &cluster, &d) {
                        out.entry(db.metadata.name.clone()).or_insert(db);
                    }
                }
            }
        }
    }
    Ok(out.into_values().collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_say_what_is_wrong() {
        let why = |r: Result<String, SkipReason>| r.unwrap_err().to_string();
        assert_eq!(
            why(redis_endpoint_host("c.redis.cache.windows.net:6380")),
            "\"c.redis.cache.windows.net:6380\" carries a port: ARM reports host names without one"
        );
        assert_eq!(
            why(redis_endpoint_host("10.0.0.1")),
            "\"10.0.0.1\" is an IP address, not an Azure Redis host name"
        );
        assert!(why(redis_endpoint_host("c.example.com")).starts_with(
            "\"c.example.com\" is not under an Azure Redis DNS suffix (redis.cache.windows.net, "
        ));
        assert!(matches!(
            redis_endpoint_host("u@c.redis.cache.windows.net"),
            Err(SkipReason::BadHost(AddressError::Userinfo(_)))
        ));
        assert_eq!(
            resource_name("..").unwrap_err().to_string(),
            "the database name \"..\" is not 1 to 253 letters, digits, '-', '_' and '.' (set the TeleportDatabaseName tag to one)"
        );
        assert_eq!(
            resource_id_ok("/subscriptions/../x")
                .unwrap_err()
                .to_string(),
            "\"/subscriptions/../x\" is not a plain ARM resource ID"
        );
    }
}
