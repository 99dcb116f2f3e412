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
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        builder.with_root_certificates(root_store(roots_pem)?)
    };
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
/// naming [`cluster_server_name`], whatever address was dialled.
pub fn cluster_client_config(
    cert_pem: Option<&str>,
    key_pem: Option<&str>,
    host_ca_pems: &[String],
    cluster_name: &str,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let provider = provider();
    let roots = Arc::new(root_store(host_ca_pems)?);
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| PkiError::InvalidInput(format!("host CA: {e}")))?;
    let name = ServerName::try_from(cluster_server_name(cluster_name))
        .map_err(|e| PkiError::InvalidInput(format!("cluster name: {e}")))?;
    let verifier = Arc::new(FixedNameVerifier { inner, name });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    finish_client(builder, cert_pem, key_pem, alpn)
}

/// Verifies the chain with web PKI rules against fixed roots, checking a fixed
/// name instead of the dialled one.
#[derive(Debug)]
struct FixedNameVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
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
