//! Finding the proxy a user named: `--proxy=host` without a port tries 443
//! (what the guides and public clusters use) and then Teleport's default web
//! port 3080, and the address that answered is the one kept in the profile.
//! An address that is the cluster's auth service rather than its proxy is
//! recognised by the certificate it presents and named as such.

use std::time::Duration;

use crate::{ClientError, Result};

/// Ports tried, in order, for a proxy address given without one.
pub const DEFAULT_PROXY_PORTS: [u16; 2] = [443, 3080];

/// How long the auth-service probe may take (TCP and TLS): it only runs after
/// the ping has failed, to choose the error message.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// `addr` without a scheme or trailing slash, split into the host and the
/// port when one is given (`[::1]:3080` keeps its brackets in the host).
pub fn split_addr(addr: &str) -> (&str, Option<u16>) {
    let addr = addr.trim_start_matches("https://").trim_end_matches('/');
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !host.is_empty() => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (addr, None),
        },
        _ => (addr, None),
    }
}

/// The addresses to try for `addr`: itself when it has a port, else the host
/// on each of [`DEFAULT_PROXY_PORTS`].
pub fn candidates(addr: &str) -> Vec<String> {
    match split_addr(addr) {
        (host, Some(port)) => vec![format!("{host}:{port}")],
        (host, None) => DEFAULT_PROXY_PORTS
            .iter()
            .map(|p| format!("{host}:{p}"))
            .collect(),
    }
}

/// Find the proxy at `addr` and ping it: the `host:port` that answered
/// `/webapi/ping`, and its answer. Without a port, `host:443` is tried, then
/// `host:3080`. When none answers, the error of the most telling attempt is
/// returned: an auth service ([`ClientError::AuthServiceNotProxy`]), an
/// untrusted certificate or an HTTP error before a connection failure.
pub async fn find_proxy(addr: &str, insecure: bool) -> Result<(String, api::PingResponse)> {
    let mut failures: Vec<(String, ClientError)> = Vec::new();
    for candidate in candidates(addr) {
        match crate::ping_proxy(&candidate, insecure).await {
            Ok(ping) => return Ok((candidate, ping)),
            Err(e) => {
                let e = if is_auth_service(&candidate).await {
                    ClientError::AuthServiceNotProxy {
                        addr: candidate.clone(),
                    }
                } else {
                    e
                };
                tracing::debug!(addr = %candidate, error = %e, "no proxy here");
                failures.push((candidate, e));
            }
        }
    }
    Err(most_telling(failures))
}

/// [`find_proxy`] from synchronous code, inside or outside an async runtime
/// (on a thread of its own): the `host:port` of the proxy at `addr`. An
/// address with a port is returned as it is, without a connection.
pub fn resolve_proxy_blocking(addr: &str, insecure: bool) -> Result<String> {
    if let (host, Some(port)) = split_addr(addr) {
        return Ok(format!("{host}:{port}"));
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| ClientError::Local(format!("cannot start a runtime: {e}")))?;
            rt.block_on(find_proxy(addr, insecure))
                .map(|(found, _)| found)
        })
        .join()
        .unwrap_or_else(|_| Err(ClientError::Local("finding the proxy failed".into())))
    })
}

/// How much an error says about the address: a server that answered as
/// something (auth service, untrusted certificate, HTTP error, expired
/// session) says more than one that could not be reached.
fn weight(e: &ClientError) -> u8 {
    match e {
        ClientError::AuthServiceNotProxy { .. } => 3,
        ClientError::UntrustedProxy { .. } => 2,
        ClientError::Http { .. } | ClientError::SessionExpired { .. } => 1,
        ClientError::Transport(_) | ClientError::Local(_) => 0,
    }
}

fn most_telling(mut failures: Vec<(String, ClientError)>) -> ClientError {
    let best = failures.iter().map(|(_, e)| weight(e)).max().unwrap_or(0);
    if failures.len() > 1 && best == 0 {
        let tried: Vec<String> = failures.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        return ClientError::Transport(format!(
            "no Teleport proxy answered on port 443 or 3080 (tried {}); give the proxy's \
             address with its port (--proxy=HOST:PORT, the proxy_service.web_listen_addr or \
             public_addr of the cluster)",
            tried.join("; ")
        ));
    }
    match failures.iter().position(|(_, e)| weight(e) == best) {
        Some(i) => failures.swap_remove(i).1,
        None => ClientError::Transport("no address to try".into()),
    }
}

/// Whether `addr` (`host:port`) is a Teleport auth service: it presents a
/// certificate of the cluster's host CA with the system role `Auth`. The
/// certificate is read without being trusted (nothing is sent over the
/// connection): it only chooses the message of a failed login.
pub async fn is_auth_service(addr: &str) -> bool {
    let probe = async {
        let (host, _) = split_addr(addr);
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .ok()?;
        let tls = pki::tls::client_config(None, None, &[], true, &[b"h2", b"http/1.1"]).ok()?;
        let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect(name, tcp)
            .await
            .ok()?;
        let leaf = stream.get_ref().1.peer_certificates()?.first()?.clone();
        Some(is_auth_certificate(leaf.as_ref()))
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Whether a DER certificate is an auth server's host certificate.
pub fn is_auth_certificate(der: &[u8]) -> bool {
    pki::Identity::from_cert_der(der).is_ok_and(|id| {
        id.system_role.as_deref() == Some("Auth") && !id.teleport_cluster.is_empty()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_addr("proxy.example.com"), ("proxy.example.com", None));
        assert_eq!(
            split_addr("https://proxy.example.com:3080/"),
            ("proxy.example.com", Some(3080))
        );
        assert_eq!(split_addr("[::1]:443"), ("[::1]", Some(443)));
        assert_eq!(split_addr("[::1]"), ("[::1]", None));
        assert_eq!(split_addr("host:notaport"), ("host:notaport", None));
        assert_eq!(split_addr("host:99999"), ("host:99999", None));
        assert_eq!(
            candidates("proxy.example.com"),
            ["proxy.example.com:443", "proxy.example.com:3080"]
        );
        assert_eq!(
            candidates("proxy.example.com:8443"),
            ["proxy.example.com:8443"]
        );
    }

    #[test]
    fn the_most_telling_failure_is_reported() {
        let refused = |a: &str| (a.to_string(), ClientError::Transport("refused".into()));
        let e = most_telling(vec![refused("h:443"), refused("h:3080")]);
        let text = e.to_string();
        assert!(text.contains("h:443: refused; h:3080: refused"), "{text}");
        assert!(text.contains("--proxy=HOST:PORT"), "{text}");
        let e = most_telling(vec![
            refused("h:443"),
            (
                "h:3080".into(),
                ClientError::AuthServiceNotProxy {
                    addr: "h:3080".into(),
                },
            ),
        ]);
        assert!(matches!(e, ClientError::AuthServiceNotProxy { .. }), "{e}");
        // One address given with its port: its own error, as it was.
        let e = most_telling(vec![refused("h:3025")]);
        assert_eq!(e.to_string(), "refused");
    }

    #[test]
    fn auth_certificates_are_recognised() {
        let ca = pki::CertAuthority::generate("c", pki::CaType::Host).unwrap();
        let key = pki::generate_key().unwrap();
        let host = |role: &str| pki::HostIdentity {
            host_id: "h".into(),
            nodename: "h".into(),
            cluster_name: "c".into(),
            system_roles: vec![role.into()],
            dns_names: vec!["localhost".into()],
            expires: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        let der = |pem: String| {
            use base64::Engine;
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
        };
        let auth = der(ca.sign_host(&host("Auth"), &key.public_key_der).unwrap());
        assert!(is_auth_certificate(&auth));
        let proxy = der(ca.sign_host(&host("Proxy"), &key.public_key_der).unwrap());
        assert!(!is_auth_certificate(&proxy));
        assert!(!is_auth_certificate(b"not a certificate"));
    }
}
