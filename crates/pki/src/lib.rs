//! Certificate authorities, Teleport identities in X.509 certificates, and rustls helpers.
//!
//! # Bird's-eye view
//!
//! * [`CertAuthority`] holds a self-signed CA (ECDSA P-256 by default) and issues leaf
//!   certificates: user/app/db certificates from an [`Identity`] ([`CertAuthority::sign_identity`]),
//!   host certificates ([`CertAuthority::sign_host`]) and listener certificates
//!   ([`CertAuthority::sign_server`]).
//! * [`Identity`] is encoded in the certificate **subject**, following Teleport's
//!   `lib/tlsca` layout, and read back by [`Identity::from_cert_der`].
//! * [`tls`] builds rustls client and server configurations on the aws-lc-rs provider.
//!
//! # Subject layout
//!
//! Every value is a `UTF8String` in its own RDN; list fields repeat the attribute,
//! one attribute per value, in order. Empty scalar fields are omitted.
//!
//! | Field | Attribute |
//! |---|---|
//! | `username` | CN (2.5.4.3) |
//! | `groups` (roles) | O (2.5.4.10), repeated |
//! | `usage` | OU (2.5.4.11), repeated — as Teleport does |
//! | `logins` | L (2.5.4.7), repeated |
//! | `route_to_cluster` | STREET (2.5.4.9) |
//! | `traits` | POSTALCODE (2.5.4.17), JSON object, omitted when empty |
//! | `route_to_app.session_id` | 1.3.9999.1.4 |
//! | `route_to_app.cluster_name` | 1.3.9999.1.5 |
//! | `route_to_app.public_addr` | 1.3.9999.1.6 |
//! | `teleport_cluster` | 1.3.9999.1.7 (Teleport's `TeleportClusterASN1ExtensionOID`) |
//! | `route_to_app.name` | 1.3.9999.1.10 |
//! | `route_to_app.azure_identity` | 1.3.9999.1.16 |
//! | `azure_identities` | 1.3.9999.1.17, repeated |
//! | `route_to_database.service_name` | 1.3.9999.2.1 |
//! | `route_to_database.protocol` | 1.3.9999.2.2 |
//! | `route_to_database.username` | 1.3.9999.2.3 |
//! | `route_to_database.database` | 1.3.9999.2.4 |
//! | `db_names` | 1.3.9999.2.5, repeated |
//! | `db_users` | 1.3.9999.2.6, repeated |
//! | `system_role` | 1.3.9999.2.11 (Teleport's `SystemRolesASN1ExtensionOID`) |
//!
//! `route_to_app` / `route_to_database` are `Some` after parsing iff at least one of their
//! attributes is present, so `Some(RouteToApp::default())` reads back as `None`.
//! `expires` is the certificate's `notAfter` and has second precision.
//!
//! # Why leaves are not built with rcgen
//!
//! rcgen's `DistinguishedName` keeps a single value per attribute type (a later `push`
//! replaces the earlier one), so it cannot express repeated `O`/`L`/custom attributes.
//! Leaf certificates are therefore DER-encoded by this crate (module `der`) and signed
//! with the CA's [`keystore::Signer`]; CAs and standalone self-signed certificates use rcgen
//! (a CA's own certificate is signed through its `Signer` too).
//! Tests check every issued certificate with x509-parser and with rustls/webpki.

mod ca;
mod der;
mod identity;
pub mod keystore;
pub mod local_token;
pub mod names;
pub mod private_file;
pub mod tls;

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use sha2::{Digest as _, Sha256};
use x509_parser::prelude::FromDer as _;

pub use ca::{cert_not_after, self_signed_server_cert, CertAuthority};
pub use identity::{oid, HostIdentity, Identity, RouteToApp, RouteToDatabase};

/// Errors of this crate. Malformed input (PEM, DER, keys) from any source yields an error,
/// never a panic.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// The input had no PEM block of the expected kind, or it was malformed.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate could not be parsed or does not have the expected shape.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// A key could not be parsed, is unsupported, or does not match its certificate.
    #[error("invalid key: {0}")]
    Key(String),
    /// A caller-supplied value cannot be encoded (e.g. a non-ASCII DNS name).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Certificate or key generation failed in rcgen.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A rustls configuration error.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// Traits could not be (de)serialized as JSON.
    #[error("traits json: {0}")]
    Json(#[from] serde_json::Error),
}

/// The kind of a certificate authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaType {
    /// Signs user certificates (login, app and db sessions).
    User,
    /// Signs host certificates (agents, proxy, auth).
    Host,
    /// Signs certificates presented to databases.
    Db,
}

impl CaType {
    /// The lowercase name: `user`, `host` or `db`.
    pub fn as_str(self) -> &'static str {
        match self {
            CaType::User => "user",
            CaType::Host => "host",
            CaType::Db => "db",
        }
    }
}

impl fmt::Display for CaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CaType {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(CaType::User),
            "host" => Ok(CaType::Host),
            "db" => Ok(CaType::Db),
            other => Err(PkiError::InvalidInput(format!(
                "unknown CA type {other:?} (expected user, host or db)"
            ))),
        }
    }
}

/// A freshly generated private key with its public half.
#[derive(Clone)]
pub struct KeyPair {
    /// PKCS#8 private key, PEM encoded (`-----BEGIN PRIVATE KEY-----`).
    pub private_key_pem: String,
    /// The public key as DER `SubjectPublicKeyInfo`.
    pub public_key_der: Vec<u8>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_key_pem", &"[elided]")
            .field("public_key_der", &hex::encode(&self.public_key_der))
            .finish()
    }
}

/// Generates an ECDSA P-256 key pair.
pub fn generate_key() -> Result<KeyPair, PkiError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    Ok(KeyPair {
        private_key_pem: key.serialize_pem(),
        public_key_der: rcgen::PublicKeyData::subject_public_key_info(&key),
    })
}

/// Returns the DER `SubjectPublicKeyInfo` of a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn public_key_der_from_private_pem(pem: &str) -> Result<Vec<u8>, PkiError> {
    let key = rcgen::KeyPair::from_pem(pem).map_err(|e| PkiError::Key(e.to_string()))?;
    Ok(rcgen::PublicKeyData::subject_public_key_info(&key))
}

/// The pin of the CA in the first `CERTIFICATE` block of `pem`: see [`ca_pin_from_cert_der`].
pub fn ca_pin_from_cert_pem(pem: &str) -> Result<String, PkiError> {
    ca_pin_from_cert_der(&first_cert_der(pem)?)
}

/// `sha256:<hex>` of the SHA-256 over the certificate's `SubjectPublicKeyInfo` DER.
pub fn ca_pin_from_cert_der(der: &[u8]) -> Result<String, PkiError> {
    let cert = parse_cert(der)?;
    Ok(pin_of_spki(cert.public_key().raw))
}

pub(crate) fn pin_of_spki(spki_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(spki_der)))
}

/// Decodes the first `CERTIFICATE` block of `pem`.
pub(crate) fn first_cert_der(pem: &str) -> Result<Vec<u8>, PkiError> {
    match CertificateDer::pem_slice_iter(pem.as_bytes()).next() {
        Some(Ok(der)) => Ok(der.to_vec()),
        Some(Err(e)) => Err(PkiError::Pem(e.to_string())),
        None => Err(PkiError::Pem("no CERTIFICATE block found".into())),
    }
}

/// Decodes every `CERTIFICATE` block of `pem`.
pub(crate) fn all_cert_ders(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))
}

/// Parses a DER certificate, rejecting trailing bytes.
pub(crate) fn parse_cert(
    der: &[u8],
) -> Result<x509_parser::certificate::X509Certificate<'_>, PkiError> {
    let (rest, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::Certificate(
            "trailing bytes after certificate".into(),
        ));
    }
    Ok(cert)
}

/// PEM-encodes a DER certificate.
pub(crate) fn cert_pem_from_der(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ca_type_roundtrip() {
        for t in [CaType::User, CaType::Host, CaType::Db] {
            assert_eq!(t.to_string().parse::<CaType>().unwrap(), t);
        }
        assert!("User".parse::<CaType>().is_err());
    }

    #[test]
    fn key_public_half_matches() {
        let k = generate_key().unwrap();
        assert!(k.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(
            public_key_der_from_private_pem(&k.private_key_pem).unwrap(),
            k.public_key_der
        );
        assert!(public_key_der_from_private_pem("nope").is_err());
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn pem_roundtrip() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = cert_pem_from_der(&der);
        assert_eq!(first_cert_der(&pem).unwrap(), der);
        assert!(pem.lines().all(|l| l.len() <= 64 || l.starts_with("-----")));
    }
}
