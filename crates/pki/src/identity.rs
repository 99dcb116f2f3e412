//! [`Identity`] and its encoding in an X.509 subject (see the crate docs for the layout).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::x509::X509Name;

use crate::der::{tag, Writer};
use crate::{first_cert_der, parse_cert, PkiError};

/// OIDs of the subject attributes used by [`Identity`], as arcs.
pub mod oid {
    /// commonName: user name / host id.
    pub const COMMON_NAME: &[u64] = &[2, 5, 4, 3];
    /// localityName: one per login.
    pub const LOCALITY: &[u64] = &[2, 5, 4, 7];
    /// streetAddress: route-to cluster.
    pub const STREET: &[u64] = &[2, 5, 4, 9];
    /// organizationName: one per role (or system role for hosts).
    pub const ORGANIZATION: &[u64] = &[2, 5, 4, 10];
    /// organizationalUnitName: one per usage restriction.
    pub const ORGANIZATIONAL_UNIT: &[u64] = &[2, 5, 4, 11];
    /// postalCode: JSON traits.
    pub const POSTAL_CODE: &[u64] = &[2, 5, 4, 17];
    /// App session id.
    pub const APP_SESSION_ID: &[u64] = &[1, 3, 9999, 1, 4];
    /// App cluster name.
    pub const APP_CLUSTER_NAME: &[u64] = &[1, 3, 9999, 1, 5];
    /// App public address.
    pub const APP_PUBLIC_ADDR: &[u64] = &[1, 3, 9999, 1, 6];
    /// Teleport cluster that issued the certificate.
    pub const TELEPORT_CLUSTER: &[u64] = &[1, 3, 9999, 1, 7];
    /// App name.
    pub const APP_NAME: &[u64] = &[1, 3, 9999, 1, 10];
    /// Azure identity chosen for the app session.
    pub const APP_AZURE_IDENTITY: &[u64] = &[1, 3, 9999, 1, 16];
    /// Allowed Azure identities, one attribute per value.
    pub const AZURE_IDENTITIES: &[u64] = &[1, 3, 9999, 1, 17];
    /// Database service name.
    pub const DB_SERVICE_NAME: &[u64] = &[1, 3, 9999, 2, 1];
    /// Database protocol.
    pub const DB_PROTOCOL: &[u64] = &[1, 3, 9999, 2, 2];
    /// Database user of the session.
    pub const DB_USERNAME: &[u64] = &[1, 3, 9999, 2, 3];
    /// Database name of the session.
    pub const DB_NAME: &[u64] = &[1, 3, 9999, 2, 4];
    /// Allowed database names, one attribute per value.
    pub const DB_NAMES: &[u64] = &[1, 3, 9999, 2, 5];
    /// Allowed database users, one attribute per value.
    pub const DB_USERS: &[u64] = &[1, 3, 9999, 2, 6];
    /// System role of a host / service certificate.
    pub const SYSTEM_ROLE: &[u64] = &[1, 3, 9999, 2, 11];
}

/// Content octets of the OIDs in [`oid`], in the same order as [`Attr::ALL`].
mod oid_der {
    pub const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    pub const LOCALITY: &[u8] = &[0x55, 0x04, 0x07];
    pub const STREET: &[u8] = &[0x55, 0x04, 0x09];
    pub const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
    pub const ORGANIZATIONAL_UNIT: &[u8] = &[0x55, 0x04, 0x0b];
    pub const POSTAL_CODE: &[u8] = &[0x55, 0x04, 0x11];
    pub const APP_SESSION_ID: &[u8] = &[0x2b, 0xce, 0x0f, 1, 4];
    pub const APP_CLUSTER_NAME: &[u8] = &[0x2b, 0xce, 0x0f, 1, 5];
    pub const APP_PUBLIC_ADDR: &[u8] = &[0x2b, 0xce, 0x0f, 1, 6];
    pub const TELEPORT_CLUSTER: &[u8] = &[0x2b, 0xce, 0x0f, 1, 7];
    pub const APP_NAME: &[u8] = &[0x2b, 0xce, 0x0f, 1, 10];
    pub const APP_AZURE_IDENTITY: &[u8] = &[0x2b, 0xce, 0x0f, 1, 16];
    pub const AZURE_IDENTITIES: &[u8] = &[0x2b, 0xce, 0x0f, 1, 17];
    pub const DB_SERVICE_NAME: &[u8] = &[0x2b, 0xce, 0x0f, 2, 1];
    pub const DB_PROTOCOL: &[u8] = &[0x2b, 0xce, 0x0f, 2, 2];
    pub const DB_USERNAME: &[u8] = &[0x2b, 0xce, 0x0f, 2, 3];
    pub const DB_NAME: &[u8] = &[0x2b, 0xce, 0x0f, 2, 4];
    pub const DB_NAMES: &[u8] = &[0x2b, 0xce, 0x0f, 2, 5];
    pub const DB_USERS: &[u8] = &[0x2b, 0xce, 0x0f, 2, 6];
    pub const SYSTEM_ROLE: &[u8] = &[0x2b, 0xce, 0x0f, 2, 11];
}

/// A Teleport identity as carried by a certificate's subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identity {
    /// User name (CN).
    pub username: String,
    /// Roles (one O each).
    pub groups: Vec<String>,
    /// Allowed logins (one L each).
    pub logins: Vec<String>,
    /// Cluster to route requests to (STREET).
    pub route_to_cluster: String,
    /// User traits (POSTALCODE, JSON).
    pub traits: BTreeMap<String, Vec<String>>,
    /// Cluster that issued the certificate (1.3.9999.1.7).
    pub teleport_cluster: String,
    /// Expiry; the certificate's `notAfter` (second precision).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// App session routing, for app certificates.
    pub route_to_app: Option<RouteToApp>,
    /// Azure identities the user may assume (1.3.9999.1.17, repeated).
    pub azure_identities: Vec<String>,
    /// Database session routing, for db certificates.
    pub route_to_database: Option<RouteToDatabase>,
    /// Allowed database users (1.3.9999.2.6, repeated).
    pub db_users: Vec<String>,
    /// Allowed database names (1.3.9999.2.5, repeated).
    pub db_names: Vec<String>,
    /// Usage restrictions such as `usage:apps` (OU, repeated, like Teleport).
    pub usage: Vec<String>,
    /// System role for host / service certificates (1.3.9999.2.11).
    pub system_role: Option<String>,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            username: String::new(),
            groups: Vec::new(),
            logins: Vec::new(),
            route_to_cluster: String::new(),
            traits: BTreeMap::new(),
            teleport_cluster: String::new(),
            expires: OffsetDateTime::UNIX_EPOCH,
            route_to_app: None,
            azure_identities: Vec::new(),
            route_to_database: None,
            db_users: Vec::new(),
            db_names: Vec::new(),
            usage: Vec::new(),
            system_role: None,
        }
    }
}

/// Routing of an application session.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteToApp {
    /// App session id (1.3.9999.1.4).
    pub session_id: String,
    /// App name (1.3.9999.1.10).
    pub name: String,
    /// App public address (1.3.9999.1.6).
    pub public_addr: String,
    /// Cluster the app lives in (1.3.9999.1.5).
    pub cluster_name: String,
    /// Azure identity chosen for the session (1.3.9999.1.16).
    pub azure_identity: String,
}

/// Routing of a database session.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RouteToDatabase {
    /// Database service name (1.3.9999.2.1).
    pub service_name: String,
    /// Protocol, e.g. `redis` (1.3.9999.2.2).
    pub protocol: String,
    /// Database user (1.3.9999.2.3).
    pub username: String,
    /// Database name (1.3.9999.2.4).
    pub database: String,
}

/// The identity of a host (agent or service) for a host certificate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostIdentity {
    /// Host UUID; the certificate's CN.
    pub host_id: String,
    /// Node name (informational; add it to `dns_names` if it must be a SAN).
    pub nodename: String,
    /// Cluster name, written as `teleport_cluster`.
    pub cluster_name: String,
    /// System roles such as `App`, `Db`, `Proxy` (one O each; the first also as `system_role`).
    pub system_roles: Vec<String>,
    /// SANs: entries that parse as IP addresses become IP SANs, the rest DNS SANs.
    pub dns_names: Vec<String>,
    /// Expiry (`notAfter`).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
}

impl HostIdentity {
    /// The [`Identity`] that [`crate::CertAuthority::sign_host`] writes and that
    /// [`Identity::from_cert_der`] reads back from a host certificate.
    pub fn to_identity(&self) -> Identity {
        Identity {
            username: self.host_id.clone(),
            groups: self.system_roles.clone(),
            teleport_cluster: self.cluster_name.clone(),
            expires: self.expires,
            system_role: self.system_roles.first().cloned(),
            ..Identity::default()
        }
    }
}

impl Identity {
    /// Reads an identity from a DER certificate. Does not verify the signature or validity
    /// period: do that first (e.g. in the rustls handshake).
    pub fn from_cert_der(der: &[u8]) -> Result<Identity, PkiError> {
        let cert = parse_cert(der)?;
        let mut id = from_name(cert.subject())?;
        id.expires = cert.validity().not_after.to_datetime();
        Ok(id)
    }

    /// Reads an identity from the first `CERTIFICATE` block of `pem`.
    pub fn from_cert_pem(pem: &str) -> Result<Identity, PkiError> {
        Self::from_cert_der(&first_cert_der(pem)?)
    }

    /// Writes the subject `Name` (a DER SEQUENCE of RDNs) for this identity.
    pub(crate) fn write_subject(&self, w: &mut Writer) -> Result<(), PkiError> {
        let traits = if self.traits.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&self.traits)?)
        };
        w.sequence(|w| {
            let one = |w: &mut Writer, oid: &[u8], v: &str| {
                if !v.is_empty() {
                    attr(w, oid, v);
                }
            };
            let many = |w: &mut Writer, oid: &[u8], vs: &[String]| {
                for v in vs {
                    attr(w, oid, v);
                }
            };
            one(w, oid_der::COMMON_NAME, &self.username);
            many(w, oid_der::ORGANIZATION, &self.groups);
            many(w, oid_der::ORGANIZATIONAL_UNIT, &self.usage);
            many(w, oid_der::LOCALITY, &self.logins);
            one(w, oid_der::STREET, &self.route_to_cluster);
            if let Some(t) = &traits {
                attr(w, oid_der::POSTAL_CODE, t);
            }
            one(w, oid_der::TELEPORT_CLUSTER, &self.teleport_cluster);
            if let Some(app) = &self.route_to_app {
                one(w, oid_der::APP_SESSION_ID, &app.session_id);
                one(w, oid_der::APP_CLUSTER_NAME, &app.cluster_name);
                one(w, oid_der::APP_PUBLIC_ADDR, &app.public_addr);
                one(w, oid_der::APP_NAME, &app.name);
                one(w, oid_der::APP_AZURE_IDENTITY, &app.azure_identity);
            }
            many(w, oid_der::AZURE_IDENTITIES, &self.azure_identities);
            if let Some(db) = &self.route_to_database {
                one(w, oid_der::DB_SERVICE_NAME, &db.service_name);
                one(w, oid_der::DB_PROTOCOL, &db.protocol);
                one(w, oid_der::DB_USERNAME, &db.username);
                one(w, oid_der::DB_NAME, &db.database);
            }
            many(w, oid_der::DB_NAMES, &self.db_names);
            many(w, oid_der::DB_USERS, &self.db_users);
            if let Some(role) = &self.system_role {
                attr(w, oid_der::SYSTEM_ROLE, role);
            }
        });
        Ok(())
    }
}

/// RDN: SET { SEQUENCE { type, UTF8String value } }.
fn attr(w: &mut Writer, oid: &[u8], value: &str) {
    w.nested(tag::SET, |w| {
        w.sequence(|w| {
            w.oid(oid);
            w.utf8(value);
        })
    });
}

fn from_name(name: &X509Name<'_>) -> Result<Identity, PkiError> {
    let mut id = Identity::default();
    let mut app = RouteToApp::default();
    let mut has_app = false;
    let mut db = RouteToDatabase::default();
    let mut has_db = false;
    for rdn in name.iter_rdn() {
        for atv in rdn.iter() {
            let oid = atv.attr_type().as_bytes();
            let value = || -> Result<String, PkiError> {
                atv.as_str().map(str::to_owned).map_err(|e| {
                    PkiError::Certificate(format!(
                        "subject attribute {} is not a string: {e}",
                        atv.attr_type()
                    ))
                })
            };
            match oid {
                oid_der::COMMON_NAME => id.username = value()?,
                oid_der::ORGANIZATION => id.groups.push(value()?),
                oid_der::ORGANIZATIONAL_UNIT => id.usage.push(value()?),
                oid_der::LOCALITY => id.logins.push(value()?),
                oid_der::STREET => id.route_to_cluster = value()?,
                oid_der::POSTAL_CODE => {
                    let raw = value()?;
                    if !raw.is_empty() {
                        id.traits = serde_json::from_str(&raw)?;
                    }
                }
                oid_der::TELEPORT_CLUSTER => id.teleport_cluster = value()?,
                oid_der::APP_SESSION_ID => (app.session_id, has_app) = (value()?, true),
                oid_der::APP_CLUSTER_NAME => (app.cluster_name, has_app) = (value()?, true),
                oid_der::APP_PUBLIC_ADDR => (app.public_addr, has_app) = (value()?, true),
                oid_der::APP_NAME => (app.name, has_app) = (value()?, true),
                oid_der::APP_AZURE_IDENTITY => (app.azure_identity, has_app) = (value()?, true),
                oid_der::AZURE_IDENTITIES => id.azure_identities.push(value()?),
                oid_der::DB_SERVICE_NAME => (db.service_name, has_db) = (value()?, true),
                oid_der::DB_PROTOCOL => (db.protocol, has_db) = (value()?, true),
                oid_der::DB_USERNAME => (db.username, has_db) = (value()?, true),
                oid_der::DB_NAME => (db.database, has_db) = (value()?, true),
                oid_der::DB_NAMES => id.db_names.push(value()?),
                oid_der::DB_USERS => id.db_users.push(value()?),
                oid_der::SYSTEM_ROLE => {
                    let v = value()?;
                    id.system_role.get_or_insert(v);
                }
                // Unknown attributes (other Teleport versions, other issuers) are ignored.
                _ => {}
            }
        }
    }
    if has_app {
        id.route_to_app = Some(app);
    }
    if has_db {
        id.route_to_database = Some(db);
    }
    Ok(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::der::encode_oid;

    #[test]
    fn oid_tables_agree() {
        let pairs: &[(&[u64], &[u8])] = &[
            (oid::COMMON_NAME, oid_der::COMMON_NAME),
            (oid::LOCALITY, oid_der::LOCALITY),
            (oid::STREET, oid_der::STREET),
            (oid::ORGANIZATION, oid_der::ORGANIZATION),
            (oid::ORGANIZATIONAL_UNIT, oid_der::ORGANIZATIONAL_UNIT),
            (oid::POSTAL_CODE, oid_der::POSTAL_CODE),
            (oid::APP_SESSION_ID, oid_der::APP_SESSION_ID),
            (oid::APP_CLUSTER_NAME, oid_der::APP_CLUSTER_NAME),
            (oid::APP_PUBLIC_ADDR, oid_der::APP_PUBLIC_ADDR),
            (oid::TELEPORT_CLUSTER, oid_der::TELEPORT_CLUSTER),
            (oid::APP_NAME, oid_der::APP_NAME),
            (oid::APP_AZURE_IDENTITY, oid_der::APP_AZURE_IDENTITY),
            (oid::AZURE_IDENTITIES, oid_der::AZURE_IDENTITIES),
            (oid::DB_SERVICE_NAME, oid_der::DB_SERVICE_NAME),
            (oid::DB_PROTOCOL, oid_der::DB_PROTOCOL),
            (oid::DB_USERNAME, oid_der::DB_USERNAME),
            (oid::DB_NAME, oid_der::DB_NAME),
            (oid::DB_NAMES, oid_der::DB_NAMES),
            (oid::DB_USERS, oid_der::DB_USERS),
            (oid::SYSTEM_ROLE, oid_der::SYSTEM_ROLE),
        ];
        let mut seen = std::collections::HashSet::new();
        for (arcs, der) in pairs {
            assert_eq!(encode_oid(arcs).unwrap(), *der, "{arcs:?}");
            assert!(seen.insert(*der), "duplicate {arcs:?}");
        }
    }

    #[test]
    fn identity_json_roundtrip() {
        let id = Identity {
            username: "alice".into(),
            expires: time::macros::datetime!(2030-01-02 03:04:05 UTC),
            ..Identity::default()
        };
        let s = serde_json::to_string(&id).unwrap();
        assert!(s.contains("2030-01-02T03:04:05Z"));
        assert_eq!(serde_json::from_str::<Identity>(&s).unwrap(), id);
    }
}
