//! rustls client/server configurations on the aws-lc-rs provider.
//!
//! All configs are built with an explicit `aws_lc_rs` provider, so no process-wide default
//! provider needs to be installed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::{all_cert_ders, Identity, PkiError};

/// Client certificate policy of a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Do not ask for a client certificate.
    None,
    /// Ask; accept clients without one, but verify any that is presented.
    Optional,
    /// Require a client certificate chaining to one of the client CAs.
    Required,
}

/// The aws-lc-rs provider used by every config of this crate.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server config presenting `cert_chain_pem` (leaf first) with `key_pem`, verifying client
/// certificates against `client_ca_pems` (each may hold several certificates) per
/// `client_auth`, and offering `alpn` protocols.
pub fn server_config(
    cert_chain_pem: &str,
    key_pem: &str,
    client_ca_pems: &[String],
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<ServerConfig, PkiError> {
    let provider = provider();
    let (chain, key) = chain_and_key(cert_chain_pem, key_pem)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let roots = root_store(client_ca_pems)?;
            let mut vb = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if client_auth == ClientAuth::Optional {
                vb = vb.allow_unauthenticated();
            }
            let verifier = vb
                .build()
                .map_err(|e| PkiError::InvalidInput(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client config trusting `roots_pem`, optionally presenting a client certificate
/// (`cert_pem` may hold a chain, leaf first), offering `alpn` protocols.
///
/// With `insecure_skip_verify` the server certificate is not verified at all (any chain and
/// name is accepted), but the handshake signatures are still checked against the presented
/// certificate's key; `roots_pem` may then be empty.
pub fn client_config(
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    roots_pem: &[String],
    insecure_skip_verify: bool,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    client_config_checking(
        cert_pem,
        key_pem,
        roots_pem,
        insecure_skip_verify,
        alpn,
        false,
    )
}

/// [`client_config`] for a client of the cluster's proxy or auth service
/// (tsh, tctl) that trusts the cluster's host CA beside public roots: a
/// server certificate issued by a cluster CA must also be a cluster
/// server's ([`check_server_role`]), since agents' certificates chain to the
/// same host CA.
pub fn proxy_client_config(
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    roots_pem: &[String],
    insecure_skip_verify: bool,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    client_config_checking(
        cert_pem,
        key_pem,
        roots_pem,
        insecure_skip_verify,
        alpn,
        true,
    )
}

fn client_config_checking(
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    roots_pem: &[String],
    insecure_skip_verify: bool,
    alpn: &[&[u8]],
    check_role: bool,
) -> Result<ClientConfig, PkiError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure_skip_verify {
        Arc::new(AcceptAnyServerCert {
            algorithms: provider.signature_verification_algorithms,
        })
    } else {
        Arc::new(ServerRoleVerifier::new(
            roots_pem,
            None,
            check_role,
            provider.clone(),
        )?)
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    finish_client(builder, cert_pem, key_pem, alpn)
}

/// Add the client certificate (if any) and ALPN to a client config builder.
fn finish_client(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let mut config = match (cert_pem, key_pem) {
        (Some(cert), Some(key)) => {
            let (chain, key) = chain_and_key(cert, key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(PkiError::InvalidInput(
                "client certificate and key must be given together".into(),
            ))
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The identity in the peer's leaf certificate, if the peer presented one.
///
/// Only meaningful after the handshake, where rustls has verified the chain (unless the
/// config was built with `insecure_skip_verify`).
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Result<Identity, PkiError>> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| Identity::from_cert_der(leaf))
}

fn chain_and_key(
    cert_chain_pem: &str,
    key_pem: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let chain = all_cert_ders(cert_chain_pem)?;
    if chain.is_empty() {
        return Err(PkiError::Pem("no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| PkiError::Key(format!("private key PEM: {e}")))?;
    Ok((chain, key))
}

fn root_store(pems: &[String]) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for pem in pems {
        for der in all_cert_ders(pem)? {
            roots.add(der)?;
        }
    }
    if roots.is_empty() {
        return Err(PkiError::InvalidInput(
            "no trusted CA certificates given".into(),
        ));
    }
    Ok(roots)
}

/// Accepts any server certificate; still verifies handshake signatures.
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The name every cluster server certificate carries:
/// `<hex of the cluster name>.teleport.cluster.local`.
pub fn cluster_server_name(cluster_name: &str) -> String {
    format!(
        "{}.teleport.cluster.local",
        hex::encode(cluster_name.as_bytes())
    )
}

/// A client config for talking to the cluster's own servers (the proxy's
/// `teleport-cluster` and `teleport-reversetunnel` routes, the auth port):
/// the server must present a certificate from the host CA `host_ca_pems`
/// naming [`cluster_server_name`], whatever address was dialled, for one of
/// the [`CLUSTER_SERVER_ROLES`].
pub fn cluster_client_config(
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    host_ca_pems: &[String],
    cluster_name: &str,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let provider = provider();
    let name = ServerName::try_from(cluster_server_name(cluster_name))
        .map_err(|e| PkiError::InvalidInput(format!("cluster name: {e}")))?;
    let verifier = Arc::new(ServerRoleVerifier::new(
        host_ca_pems,
        Some(name),
        true,
        provider.clone(),
    )?);
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    finish_client(builder, cert_pem, key_pem, alpn)
}

/// The system roles whose host certificates may serve a cluster endpoint
/// (the proxy's listeners, the auth port). An agent's host certificate
/// (`App`, `Db`, `Node`, ...) chains to the same host CA, so a client that
/// trusts the host CA must also check the role, not only the chain and name.
pub const CLUSTER_SERVER_ROLES: &[&str] = &["Auth", "Proxy"];

/// Why a server certificate that chains to a trusted root is still refused
/// ([`check_server_role`]).
#[derive(Debug, thiserror::Error)]
pub enum ServerRoleError {
    /// The certificate could not be read as a cluster identity.
    #[error("server certificate: {0}")]
    Unreadable(#[source] PkiError),
    /// A cluster CA issued it, but not to a proxy or auth server.
    #[error("the server presented a cluster certificate for {username:?} with system role {role}, not a proxy or auth server's: refusing it")]
    NotAClusterServer {
        /// The certificate's user (the host ID for a host certificate).
        username: String,
        /// Its system role, or `none (a user certificate)`.
        role: String,
    },
}

/// [`ServerRoleError`] as rustls carries it: rustls shows the `Debug` form in
/// its message (`invalid peer certificate: Other(OtherError(...))`), so
/// that form holds the text.
#[derive(thiserror::Error)]
#[error(transparent)]
struct NotAClusterServer(ServerRoleError);

impl std::fmt::Debug for NotAClusterServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("NotAClusterServer")
            .field(&self.0.to_string())
            .finish()
    }
}

/// Checks a server certificate that verified against trusted roots: a
/// certificate issued by a cluster CA (it carries `teleport_cluster` or a
/// system role) must be a cluster server's ([`CLUSTER_SERVER_ROLES`]); other
/// certificates (public CAs, database CAs) carry no cluster identity and pass.
pub fn check_server_role(leaf_der: &[u8]) -> Result<(), ServerRoleError> {
    let id = Identity::from_cert_der(leaf_der).map_err(ServerRoleError::Unreadable)?;
    let cluster_issued = !id.teleport_cluster.is_empty() || id.system_role.is_some();
    if !cluster_issued {
        return Ok(());
    }
    if id
        .groups
        .iter()
        .any(|g| CLUSTER_SERVER_ROLES.contains(&g.as_str()))
        && id.system_role.is_some()
    {
        return Ok(());
    }
    let role = id
        .system_role
        .unwrap_or_else(|| "none (a user certificate)".to_string());
    Err(ServerRoleError::NotAClusterServer {
        username: id.username,
        role,
    })
}

/// Verifies the chain with web PKI rules against fixed roots (checking a
/// fixed name instead of the dialled one when `name` is set), then, with
/// `check_role`, [`check_server_role`].
#[derive(Debug)]
struct ServerRoleVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: Option<ServerName<'static>>,
    check_role: bool,
}

impl ServerRoleVerifier {
    fn new(
        roots_pem: &[String],
        name: Option<ServerName<'static>>,
        check_role: bool,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, PkiError> {
        let roots = Arc::new(root_store(roots_pem)?);
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| PkiError::InvalidInput(format!("trusted roots: {e}")))?;
        Ok(ServerRoleVerifier {
            inner,
            name,
            check_role,
        })
    }
}

impl ServerCertVerifier for ServerRoleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.name.as_ref().unwrap_or(server_name);
        let verified =
            self.inner
                .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)?;
        if !self.check_role {
            return Ok(verified);
        }
        check_server_role(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(NotAClusterServer(e)),
            )))
        })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
