//! The tunnel over mutual TLS with ALPN `teleport-reversetunnel`, the way the
//! proxy and the agent wire it.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tunnel::{
    connector_fn, handler_fn, AgentInfo, AgentTunnel, AsyncReadWrite, TunnelServer, TunnelState,
    TunnelStream,
};

/// The reverse tunnel's ALPN (`api::alpn::REVERSE_TUNNEL`; this crate is the transport only).
const ALPN: &[u8] = b"teleport-reversetunnel";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

struct Pki {
    ca: CertificateDer<'static>,
    proxy: (CertificateDer<'static>, PrivateKeyDer<'static>),
    agent: (CertificateDer<'static>, PrivateKeyDer<'static>),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    };
    Pki {
        ca: ca.der().clone(),
        proxy: leaf("proxy.example.com"),
        agent: leaf("node-1.example.com"),
    }
}

#[tokio::test]
async fn tunnel_over_mutual_tls_with_alpn() {
    let pki = pki();
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let roots = Arc::new(roots);

    // Proxy: requires a client certificate from the CA and the tunnel ALPN.
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .unwrap();
    let mut server_cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.proxy.0.clone()], pki.proxy.1.clone_key())
        .unwrap();
    server_cfg.alpn_protocols = vec![ALPN.to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(server_cfg));
    // Stand-in for reading the identity out of the verified certificate.
    let identities: HashMap<Vec<u8>, String> =
        HashMap::from([(pki.agent.0.to_vec(), "node-1".to_string())]);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = TunnelServer::new();
    let srv = server.clone();
    let _proxy = tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let server = srv.clone();
            let identities = identities.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(sock).await else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                if conn.alpn_protocol() != Some(ALPN) {
                    return;
                }
                let Some(id) = conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| identities.get(c.as_ref()))
                    .cloned()
                else {
                    return;
                };
                let agent = AgentInfo {
                    server_id: id,
                    cluster: "example.com".into(),
                    roles: vec!["App".into()],
                };
                let _ = server.serve_agent(tls, agent).await;
            });
        }
    });

    // Agent: trusts the CA, presents its host certificate.
    let mut client_cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![pki.agent.0.clone()], pki.agent.1.clone_key())
        .unwrap();
    client_cfg.alpn_protocols = vec![ALPN.to_vec()];
    let tls = TlsConnector::from(Arc::new(client_cfg));
    let connector = connector_fn(move || {
        let tls = tls.clone();
        async move {
            let sock = TcpStream::connect(addr).await?;
            let name = ServerName::try_from("proxy.example.com").map_err(std::io::Error::other)?;
            let stream = tls.connect(name, sock).await?;
            Ok(Box::new(stream) as Box<dyn AsyncReadWrite>)
        }
    });
    let handler = handler_fn(|target: Vec<u8>, stream: TunnelStream| async move {
        let (mut r, mut w) = tokio::io::split(stream);
        let _ = w.write_all(&target).await;
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    });
    let agent = AgentTunnel::new(connector, handler);
    let mut state = agent.state();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = tokio::spawn(agent.run(async move {
        let _ = stopped.await;
    }));

    server
        .wait_connected("node-1", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(server.connected()[0].roles, vec!["App"]);
    let target = br#"{"kind":"app","name":"azure-cli"}"#;
    let mut stream = server.dial("node-1", target).await.unwrap();
    stream.write_all(b"over tls").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, [&target[..], b"over tls"].concat());

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*state.borrow_and_update(), TunnelState::Stopped);
}
