//! The emulator's own certificate authority and the per-SNI leaf certificates of the TLS hosts it fakes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::Error;

/// A CA that signs leaf certificates on demand.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

/// Parameters of a CA certificate that signs certificates and CRLs: subject `dn` (in that
/// order), at most `path_len` CAs below it (`None`: no limit), valid from a day ago for `days`
/// days.
pub(crate) fn ca_params(
    dn: &[(DnType, &str)],
    path_len: Option<u8>,
    days: i64,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    for (kind, value) in dn {
        params.distinguished_name.push(kind.clone(), *value);
    }
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
    Ok(params)
}

impl Ca {
    /// Creates a fresh CA (ECDSA P-256).
    pub fn generate(common_name: &str) -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(tls_err)?;
        let params = ca_params(
            &[
                (DnType::CommonName, common_name),
                (DnType::OrganizationName, "Azure Emulator"),
            ],
            None,
            3650,
        )
        .map_err(tls_err)?;
        let cert = params.self_signed(&key).map_err(tls_err)?;
        Ok(Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate, DER.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// Issues a server certificate for `host`; returns (cert DER, PKCS#8 key DER).
    pub fn issue_server(&self, host: &str) -> Result<(CertificateDer<'static>, Vec<u8>), Error> {
        let key = KeyPair::generate().map_err(tls_err)?;
        let mut params = CertificateParams::new(vec![host.to_string()]).map_err(tls_err)?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
        Ok((cert.der().clone(), key.serialize_der()))
    }
}

/// Resolves a certificate per SNI name, issuing and caching leaves as hosts are seen.
pub struct SniResolver {
    ca: Arc<Ca>,
    cache: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl SniResolver {
    /// A resolver backed by `ca`.
    pub fn new(ca: Arc<Ca>) -> Self {
        Self {
            ca,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The certified key for `host`, issued on first use.
    pub fn for_host(&self, host: &str) -> Result<Arc<CertifiedKey>, Error> {
        let host = host.to_ascii_lowercase();
        if let Ok(cache) = self.cache.lock() {
            if let Some(found) = cache.get(&host) {
                return Ok(found.clone());
            }
        }
        let (cert, key) = self.ca.issue_server(&host)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
        let signing = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key).map_err(tls_err)?;
        let certified = Arc::new(CertifiedKey::new(
            vec![cert, self.ca.der().clone()],
            signing,
        ));
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(host, certified.clone());
        }
        Ok(certified)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = client_hello.server_name()?;
        match self.for_host(host) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(host, error = %e, "cannot issue a leaf certificate");
                None
            }
        }
    }
}

/// A rustls server config that answers every SNI name with a leaf from `ca`.
pub fn server_config(ca: Arc<Ca>) -> Result<Arc<rustls::ServerConfig>, Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(ca)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
