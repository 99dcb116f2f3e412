//! The real redis-server behind an emulated cache: when a key is regenerated through ARM, its
//! `default` user's passwords become the two new keys, as Azure changes the cache's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixture::RedisServerSpec;

/// How long one step (connect, handshake, a reply) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest reply line read from the server.
const MAX_REPLY: usize = 4096;

/// Where a server's nodes are and how to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTarget {
    /// Host (and TLS name).
    pub host: String,
    /// Ports of its nodes.
    pub ports: Vec<u16>,
    /// CA of its TLS certificate; plain TCP when `None`.
    pub ca_file: Option<PathBuf>,
}

impl ServerTarget {
    /// The target of `spec`, for a resource at `host` (if the fixture names one) and `port`.
    pub fn of(spec: &RedisServerSpec, host: Option<&str>, port: u16) -> ServerTarget {
        ServerTarget {
            host: spec
                .host
                .clone()
                .or_else(|| host.map(str::to_string))
                .unwrap_or_else(|| "localhost".to_string()),
            ports: if spec.ports.is_empty() {
                vec![port]
            } else {
                spec.ports.clone()
            },
            ca_file: spec.ca_file.clone(),
        }
    }

    /// Logs in to every node with the first of `old` it accepts and makes `new` the passwords of
    /// its `default` user (and only they).
    pub async fn set_keys(&self, old: &[&str], new: (&str, &str)) -> Result<(), String> {
        let tls = match &self.ca_file {
            Some(path) => Some(client_config(path)?),
            None => None,
        };
        for port in &self.ports {
            let at = format!("{}:{port}", self.host);
            self.set_keys_on(*port, tls.clone(), old, new)
                .await
                .map_err(|e| format!("the Redis server at {at}: {e}"))?;
        }
        Ok(())
    }

    async fn set_keys_on(
        &self,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
        old: &[&str],
        new: (&str, &str),
    ) -> Result<(), String> {
        let tcp =
            tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect((self.host.as_str(), port)))
                .await
                .map_err(|_| "connecting timed out".to_string())?
                .map_err(|e| format!("connecting: {e}"))?;
        match tls {
            None => set_keys_over(tcp, old, new).await,
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("TLS name {:?}: {e}", self.host))?;
                let stream = tokio::time::timeout(
                    STEP_TIMEOUT,
                    tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
                )
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake: {e}"))?;
                set_keys_over(stream, old, new).await
            }
        }
    }
}

/// A rustls client trusting the CA certificates in the PEM file at `path`.
fn client_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let pem = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

async fn set_keys_over<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    old: &[&str],
    new: (&str, &str),
) -> Result<(), String> {
    let mut logged_in = false;
    for key in old {
        let reply = call(&mut stream, &["AUTH", key]).await?;
        if reply.starts_with('+') {
            logged_in = true;
            break;
        }
    }
    if !logged_in {
        return Err("it accepts none of the keys the emulator had (start it with --requirepass <primary key>)".into());
    }
    let primary = format!(">{}", new.0);
    let secondary = format!(">{}", new.1);
    let reply = call(
        &mut stream,
        &[
            "ACL",
            "SETUSER",
            "default",
            "on",
            "resetpass",
            &primary,
            &secondary,
        ],
    )
    .await?;
    if !reply.starts_with('+') {
        return Err(format!("ACL SETUSER answered {reply:?}"));
    }
    let _ = stream.shutdown().await;
    Ok(())
}

/// Sends one command and reads its one-line reply (a simple string or an error).
async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    args: &[&str],
) -> Result<String, String> {
    let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        cmd.extend_from_slice(a.as_bytes());
        cmd.extend_from_slice(b"\r\n");
    }
    stream
        .write_all(&cmd)
        .await
        .map_err(|e| format!("writing: {e}"))?;
    stream.flush().await.map_err(|e| format!("writing: {e}"))?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() > MAX_REPLY {
            return Err("reply too long".into());
        }
        let n = tokio::time::timeout(STEP_TIMEOUT, stream.read(&mut byte))
            .await
            .map_err(|_| "no reply".to_string())?
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        line.push(byte[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}
