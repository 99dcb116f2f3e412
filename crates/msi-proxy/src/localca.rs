//! The per-session local CA and the leaf certificates it issues for intercepted hosts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::ServerConfig;
use time::OffsetDateTime;

use crate::MsiProxyError;

/// Subject name of the local CA.
const CA_NAME: &str = "Teleport local Azure proxy";
/// Most server configs kept; the cache is cleared beyond (a client cannot grow memory unboundedly).
const MAX_CACHED_HOSTS: usize = 512;
/// Validity of issued leaves.
const LEAF_VALIDITY: time::Duration = time::Duration::days(7);

/// System root bundles tried, in order, when `SSL_CERT_FILE` is not set.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
];

pub(crate) struct LocalCa {
    ca: pki::CertAuthority,
    leaf_key: pki::KeyPair,
    configs: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl LocalCa {
    pub(crate) fn generate() -> Result<Self, MsiProxyError> {
        let ca = pki::CertAuthority::generate(CA_NAME, pki::CaType::Host)
            .map_err(|e| MsiProxyError::Pki(e.to_string()))?;
        let leaf_key = pki::generate_key().map_err(|e| MsiProxyError::Pki(e.to_string()))?;
        Ok(Self {
            ca,
            leaf_key,
            configs: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// A TLS server config presenting a leaf for `host` (lowercase DNS name), cached per host.
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, MsiProxyError> {
        if let Ok(map) = self.configs.lock() {
            if let Some(c) = map.get(host) {
                return Ok(c.clone());
            }
        }
        let leaf = self
            .ca
            .sign_server(
                &[host.to_owned()],
                &self.leaf_key.public_key_der,
                OffsetDateTime::now_utc() + LEAF_VALIDITY,
            )
            .map_err(|e| MsiProxyError::Pki(e.to_string()))?;
        let config = pki::tls::server_config(
            &leaf,
            &self.leaf_key.private_key_pem,
            &[],
            pki::tls::ClientAuth::None,
            &[b"http/1.1"],
        )
        .map_err(|e| MsiProxyError::Pki(e.to_string()))?;
        let config = Arc::new(config);
        if let Ok(mut map) = self.configs.lock() {
            if map.len() >= MAX_CACHED_HOSTS {
                map.clear();
            }
            map.insert(host.to_owned(), config.clone());
        }
        Ok(config)
    }
}

/// The bundle path next to the CA file: `<dir>/<stem>-<port>-bundle.pem`.
pub(crate) fn bundle_path(ca_path: &Path, port: u16) -> PathBuf {
    let stem = ca_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "localca".into());
    ca_path.with_file_name(format!("{stem}-{port}-bundle.pem"))
}

/// The system roots (PEM) this process would use: `SSL_CERT_FILE` if set (and not one of our
/// own files), else the first distribution bundle found.
pub(crate) fn system_roots_pem(exclude: &[&Path]) -> Option<String> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates = from_env
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from));
    for path in candidates {
        if exclude.contains(&path.as_path()) {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&path) {
            if text.contains("-----BEGIN CERTIFICATE-----") {
                return Some(text);
            }
        }
    }
    None
}

/// Writes `contents` to `path` with mode 0600 (atomically: temporary file then rename),
/// creating missing parent directories with mode 0700 ([`pki::private_file::write`]).
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), MsiProxyError> {
    pki::private_file::write(path, contents.as_bytes()).map_err(|e| MsiProxyError::Io {
        path: e.path,
        source: e.source,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bundle_name() {
        assert_eq!(
            bundle_path(Path::new("/a/b/app-localca.pem"), 4242),
            PathBuf::from("/a/b/app-localca-4242-bundle.pem")
        );
    }

    #[test]
    fn leaves_are_cached() {
        let ca = LocalCa::generate().unwrap();
        let a = ca.server_config("management.azure.com").unwrap();
        let b = ca.server_config("management.azure.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = ca.server_config("graph.microsoft.com").unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[cfg(unix)]
    #[test]
    fn written_0600() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x/y/ca.pem");
        write_private(&p, "hello").unwrap();
        write_private(&p, "again").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "again");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
