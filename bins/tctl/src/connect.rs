//! How tctl finds who it is and where the cluster is: an identity file
//! (`-i`), the local admin identity of the auth host (`-c`), or the tsh
//! profile.

use std::io::ErrorKind;
use std::path::Path;

use anyhow::{anyhow, Result};
use client::{ApiClient, Credentials};

/// A client for `addr` with the credentials of an identity file from
/// `tctl auth sign`: the server must present a certificate of the cluster's
/// host CA that the file carries (the proxy's `teleport-cluster` route, or
/// the auth port), so a proxy whose web certificate is self-signed needs no
/// `--insecure`. With `insecure`, any certificate is accepted.
pub fn identity_file_client(addr: &str, creds: &Credentials, insecure: bool) -> Result<ApiClient> {
    if insecure {
        return Ok(ApiClient::new(addr, Some(creds), true)?);
    }
    let id = client::identity_of(creds)?;
    if id.teleport_cluster.is_empty() || creds.ca_pems.is_empty() {
        // Nothing to pin the cluster with: the system roots decide.
        return Ok(ApiClient::new(addr, Some(creds), false)?);
    }
    let tls = pki::tls::cluster_client_config(
        Some(&creds.cert_pem),
        Some(&creds.key_pem),
        &creds.ca_pems,
        &id.teleport_cluster,
        // The proxy routes `teleport-cluster` to its host-CA certificate;
        // the auth port only speaks HTTP and picks `http/1.1`.
        &[api::alpn::CLUSTER, b"http/1.1"],
    )
    .map_err(|e| anyhow!("the identity file's certificates cannot be used: {e}"))?;
    Ok(ApiClient::with_tls(addr, tls)?)
}

/// Refuses an identity file whose certificate has expired, naming the
/// command that makes a new one.
pub fn check_identity_file(path: &Path, creds: &Credentials) -> Result<String> {
    let id = client::identity_of(creds)?;
    let renew = format!(
        "tctl auth sign --user={} --out={}",
        id.username,
        path.display()
    );
    client::check_session(creds, &renew, std::time::Duration::ZERO)?;
    Ok(renew)
}

/// Reads the local admin identity `path` of the auth service configured in
/// `config`, saying what to do when it cannot be read.
pub fn load_admin_identity(path: &Path, config: &Path) -> Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| admin_identity_error(path, config, e.kind(), &e))?;
    Ok(Credentials::from_identity_file(&text)?)
}

/// The error for a local admin identity that could not be read.
pub fn admin_identity_error(
    path: &Path,
    config: &Path,
    kind: ErrorKind,
    err: &dyn std::fmt::Display,
) -> anyhow::Error {
    match kind {
        ErrorKind::PermissionDenied => anyhow!(
            "permission denied reading the local admin identity {}: run tctl as the user that runs teleport (for example with sudo), or use an identity file (-i)",
            path.display()
        ),
        ErrorKind::NotFound => anyhow!(
            "cannot read the local admin identity {}: is the auth service (teleport start -c {}) running on this host?",
            path.display(),
            config.display()
        ),
        _ => anyhow!(
            "cannot read the local admin identity {}: {err}",
            path.display()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn permission_denied_names_the_path_and_not_the_service() {
        let path = Path::new("/var/lib/teleport/admin-identity.pem");
        let io = std::io::Error::from(ErrorKind::PermissionDenied);
        let msg =
            admin_identity_error(path, Path::new("/etc/teleport.yaml"), io.kind(), &io).to_string();
        assert!(msg.contains("permission denied"), "{msg}");
        assert!(
            msg.contains("/var/lib/teleport/admin-identity.pem"),
            "{msg}"
        );
        assert!(!msg.contains("running on this host"), "{msg}");
    }

    #[test]
    fn missing_file_asks_whether_the_service_runs() {
        let io = std::io::Error::from(ErrorKind::NotFound);
        let msg = admin_identity_error(
            Path::new("/d/admin-identity.pem"),
            Path::new("/etc/t.yaml"),
            io.kind(),
            &io,
        )
        .to_string();
        assert!(msg.contains("running on this host"), "{msg}");
        assert!(msg.contains("teleport start -c /etc/t.yaml"), "{msg}");
    }

    #[test]
    fn a_real_unreadable_file_is_reported_as_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin-identity.pem");
        std::fs::write(&path, "x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        if std::fs::read(&path).is_ok() {
            // Running as root: permissions do not deny reads; the mapping
            // is covered by the test above.
            return;
        }
        let msg = load_admin_identity(&path, Path::new("/etc/t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("permission denied"), "{msg}");
    }
}
