//! Real rustls handshakes over an in-memory duplex with certificates from this crate.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pki::tls::{client_config, peer_identity, server_config, ClientAuth};
use pki::{generate_key, CaType, CertAuthority, HostIdentity, Identity, RouteToApp};
use rustls::pki_types::ServerName;
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct Server {
    cert: String,
    key: String,
}

/// The proxy's certificate from `host_ca`, for proxy.example.com and 127.0.0.1.
fn host_server(host_ca: &CertAuthority) -> Server {
    let names = ["proxy.example.com".to_string(), "127.0.0.1".to_string()];
    host_cert_for(host_ca, &["Proxy"], &names)
}

/// A cluster's host and user CAs, and the proxy's certificate from the host CA.
struct Cluster {
    host_ca: CertAuthority,
    user_ca: CertAuthority,
    srv: Server,
}

impl Cluster {
    fn new() -> Cluster {
        let host_ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
        let user_ca = CertAuthority::generate("example.com", CaType::User).unwrap();
        let srv = host_server(&host_ca);
        Cluster {
            host_ca,
            user_ca,
            srv,
        }
    }

    /// The proxy's config, checking client certificates against the user CA per `auth` and
    /// offering `server_alpn`, and a client's presenting `cert_key` (a certificate and its
    /// key) if any, trusting the host CA and offering `client_alpn`.
    fn mutual(
        &self,
        cert_key: Option<(&str, &str)>,
        auth: ClientAuth,
        server_alpn: &[&[u8]],
        client_alpn: &[&[u8]],
    ) -> (rustls::ServerConfig, rustls::ClientConfig) {
        let cas = [self.user_ca.cert_pem().to_string()];
        let server = server_config(&self.srv.cert, &self.srv.key, &cas, auth, server_alpn).unwrap();
        let roots = [self.host_ca.cert_pem().to_string()];
        let (cert, key) = (cert_key.map(|c| c.0), cert_key.map(|c| c.1));
        let client = client_config(cert, key, &roots, false, client_alpn).unwrap();
        (server, client)
    }
}

fn user_cert(user_ca: &CertAuthority, expires: OffsetDateTime) -> (String, String, Identity) {
    let key = generate_key().unwrap();
    let id = Identity {
        username: "alice".into(),
        groups: vec!["access".into(), "azure-cli".into()],
        teleport_cluster: "example.com".into(),
        expires: expires.replace_nanosecond(0).unwrap(),
        route_to_app: Some(RouteToApp {
            session_id: "s1".into(),
            name: "azure-cli".into(),
            azure_identity: "/subscriptions/x/id".into(),
            ..RouteToApp::default()
        }),
        azure_identities: vec!["/subscriptions/x/id".into()],
        usage: vec!["usage:apps".into()],
        ..Identity::default()
    };
    let cert = user_ca.sign_identity(&id, &key.public_key_der).unwrap();
    (cert, key.private_key_pem, id)
}

/// Runs one handshake plus a ping; returns (client result, server result with peer identity).
async fn handshake(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
    name: &str,
) -> (
    Result<Option<Vec<u8>>, std::io::Error>,
    Result<Option<Identity>, std::io::Error>,
) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(Arc::new(server));
    let connector = TlsConnector::from(Arc::new(client));
    let name = ServerName::try_from(name.to_string()).unwrap();
    let server_task = tokio::spawn(async move {
        let mut tls = acceptor.accept(s).await?;
        let id = peer_identity(tls.get_ref().1).map(|r| r.unwrap());
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        tls.write_all(b"pong").await?;
        tls.flush().await?;
        Ok::<_, std::io::Error>(id)
    });
    let client_res = async {
        let mut tls = connector.connect(name, c).await?;
        let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
        tls.write_all(b"ping").await?;
        tls.flush().await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"pong");
        Ok(alpn)
    }
    .await;
    let server_res = server_task.await.unwrap();
    (client_res, server_res)
}

#[tokio::test]
async fn mutual_tls_with_identity() {
    let cluster = Cluster::new();
    let expires = OffsetDateTime::now_utc() + Duration::hours(1);
    let (cert, key, id) = user_cert(&cluster.user_ca, expires);
    let (server, client) = cluster.mutual(
        Some((&cert, &key)),
        ClientAuth::Required,
        &[b"teleport-proxy", b"http/1.1"],
        &[b"http/1.1"],
    );
    let (c, s) = handshake(server, client, "proxy.example.com").await;
    assert_eq!(c.unwrap(), Some(b"http/1.1".to_vec()));
    assert_eq!(s.unwrap(), Some(id));
}

#[tokio::test]
async fn client_cert_from_another_ca_is_rejected() {
    let cluster = Cluster::new();
    let rogue_ca = CertAuthority::generate("example.com", CaType::User).unwrap();
    let (cert, key, _) = user_cert(&rogue_ca, OffsetDateTime::now_utc() + Duration::hours(1));
    for auth in [ClientAuth::Required, ClientAuth::Optional] {
        let (server, client) = cluster.mutual(Some((&cert, &key)), auth, &[], &[]);
        let (c, s) = handshake(server, client, "proxy.example.com").await;
        assert!(c.is_err() && s.is_err(), "{auth:?}");
    }
}

/// A client without a certificate is refused where one is required, and accepted with no
/// identity where it is optional or not asked for (there also dialling the server's IP SAN).
#[tokio::test]
async fn missing_client_cert_and_ip_san() {
    let cluster = Cluster::new();
    for (auth, name, accepted) in [
        (ClientAuth::Required, "proxy.example.com", false),
        (ClientAuth::Optional, "proxy.example.com", true),
        (ClientAuth::None, "127.0.0.1", true),
    ] {
        let (server, client) = cluster.mutual(None, auth, &[], &[]);
        let (c, s) = handshake(server, client, name).await;
        if accepted {
            c.unwrap();
            assert_eq!(s.unwrap(), None, "{auth:?}");
        } else {
            assert!(s.is_err(), "{auth:?}");
        }
    }
}

#[tokio::test]
async fn expired_client_cert_is_rejected() {
    let cluster = Cluster::new();
    let expired = OffsetDateTime::now_utc() - Duration::hours(1);
    let (cert, key, _) = user_cert(&cluster.user_ca, expired);
    let (server, client) = cluster.mutual(Some((&cert, &key)), ClientAuth::Required, &[], &[]);
    let (_, s) = handshake(server, client, "proxy.example.com").await;
    assert!(s.is_err());
}

#[tokio::test]
async fn server_verification_and_insecure_mode() {
    let host_ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let other_ca = CertAuthority::generate("other.com", CaType::Host).unwrap();
    let srv = host_server(&host_ca);
    let mk_server = || server_config(&srv.cert, &srv.key, &[], ClientAuth::None, &[]).unwrap();

    // Wrong trust root.
    let client = client_config(None, None, &[other_ca.cert_pem().to_string()], false, &[]).unwrap();
    let (c, _) = handshake(mk_server(), client, "proxy.example.com").await;
    assert!(c.is_err());

    // Wrong name.
    let client = client_config(None, None, &[host_ca.cert_pem().to_string()], false, &[]).unwrap();
    let (c, _) = handshake(mk_server(), client, "evil.example.com").await;
    assert!(c.is_err());

    // Insecure accepts anything.
    let client = client_config(None, None, &[], true, &[]).unwrap();
    let (c, _) = handshake(mk_server(), client, "evil.example.com").await;
    c.unwrap();
}

#[tokio::test]
async fn self_signed_and_ca_server_certs() {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let (cert, key) = pki::self_signed_server_cert(&names).unwrap();
    let server = server_config(&cert, &key, &[], ClientAuth::None, &[]).unwrap();
    let client = client_config(None, None, std::slice::from_ref(&cert), false, &[]).unwrap();
    let (c, _) = handshake(server, client, "localhost").await;
    c.unwrap();

    let ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let (cert, key) = ca.issue_server_cert(&names).unwrap();
    let roots = [ca.cert_pem().to_string()];
    for name in ["localhost", "127.0.0.1"] {
        let server = server_config(&cert, &key, &[], ClientAuth::None, &[]).unwrap();
        let client = client_config(None, None, &roots, false, &[]).unwrap();
        let (c, _) = handshake(server, client, name).await;
        c.unwrap();
    }
}

#[test]
fn config_errors() {
    let ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let (cert, key) = ca
        .issue_server_cert(&["a.example.com".to_string()])
        .unwrap();
    assert!(server_config("nope", &key, &[], ClientAuth::None, &[]).is_err());
    assert!(server_config(&cert, "nope", &[], ClientAuth::None, &[]).is_err());
    assert!(server_config(&cert, &key, &[], ClientAuth::Required, &[]).is_err());
    assert!(client_config(None, None, &[], false, &[]).is_err());
    assert!(client_config(Some(&cert), None, std::slice::from_ref(&cert), false, &[]).is_err());
    assert!(client_config(None, None, &["garbage".into()], false, &[]).is_err());
    assert!(pki::self_signed_server_cert(&[]).is_err());
}

/// A host certificate for `roles` naming `names`, as the host CA signs agents' and servers'.
fn host_cert_for(host_ca: &CertAuthority, roles: &[&str], names: &[String]) -> Server {
    let key = generate_key().unwrap();
    let host = HostIdentity {
        host_id: "agent-1".into(),
        nodename: "agent-1".into(),
        cluster_name: "example.com".into(),
        system_roles: roles.iter().map(|r| r.to_string()).collect(),
        dns_names: names.to_vec(),
        expires: OffsetDateTime::now_utc() + Duration::hours(1),
    };
    Server {
        cert: host_ca.sign_host(&host, &key.public_key_der).unwrap(),
        key: key.private_key_pem,
    }
}

/// An agent's host certificate chains to the same host CA as the proxy's: a
/// client that trusts the host CA must refuse it as a server, even for the
/// right name, on both the cluster routes and the public web port.
#[tokio::test]
async fn agent_certificates_cannot_serve_as_the_proxy_or_auth() {
    let host_ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let cluster_name = pki::tls::cluster_server_name("example.com");
    let names = vec![cluster_name.clone(), "proxy.example.com".to_string()];
    let roots = [host_ca.cert_pem().to_string()];
    for (roles, accepted) in [
        (&["App"][..], false),
        (&["Db"][..], false),
        (&["Node", "App"][..], false),
        (&["Proxy"][..], true),
        (&["Auth"][..], true),
    ] {
        let srv = host_cert_for(&host_ca, roles, &names);
        let server = || server_config(&srv.cert, &srv.key, &[], ClientAuth::None, &[]).unwrap();
        // Agents dialling the proxy (teleport-cluster, the reverse tunnel,
        // renewals, heartbeats): any dialled address, the fixed cluster name.
        let cluster =
            pki::tls::cluster_client_config(None, None, &roots, "example.com", &[]).unwrap();
        let (c, _) = handshake(server(), cluster, "10.0.0.9").await;
        assert_eq!(c.is_ok(), accepted, "cluster route, roles {roles:?}: {c:?}");
        if !accepted {
            let msg = c.unwrap_err().to_string();
            assert!(msg.contains("not a proxy or auth server"), "{msg}");
        }
        // tsh and tctl dialling the proxy by its public name with the host CA trusted.
        let web = pki::tls::proxy_client_config(None, None, &roots, false, &[]).unwrap();
        let (c, _) = handshake(server(), web, "proxy.example.com").await;
        assert_eq!(c.is_ok(), accepted, "web route, roles {roles:?}: {c:?}");
    }
    // A user certificate is not a server's either.
    let user_ca = CertAuthority::generate("example.com", CaType::User).unwrap();
    let (cert, key, _) = user_cert(&user_ca, OffsetDateTime::now_utc() + Duration::hours(1));
    let server = server_config(&cert, &key, &[], ClientAuth::None, &[]).unwrap();
    let client =
        pki::tls::proxy_client_config(None, None, &[user_ca.cert_pem().to_string()], false, &[])
            .unwrap();
    let (c, _) = handshake(server, client, "alice").await;
    assert!(c.is_err());
}

/// Certificates with no cluster identity (public CAs, databases' own CAs)
/// are checked by chain and name only.
#[tokio::test]
async fn plain_server_certificates_need_no_role() {
    let ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let (cert, key) = ca
        .issue_server_cert(&["cache.example.com".to_string()])
        .unwrap();
    let server = server_config(&cert, &key, &[], ClientAuth::None, &[]).unwrap();
    let client =
        pki::tls::proxy_client_config(None, None, &[ca.cert_pem().to_string()], false, &[])
            .unwrap();
    let (c, _) = handshake(server, client, "cache.example.com").await;
    c.unwrap();
}
