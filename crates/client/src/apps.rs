//! App sessions on the client: choosing the Azure identity, storing the app
//! certificate under the profile, and the connection that carries a local
//! proxy's requests to the cluster.

use std::path::{Path, PathBuf};

use crate::{ClientError, Credentials, Profile, ProfileStore, Result};

/// Pick the Azure identity for `tsh apps login --azure-identity`, as Teleport
/// does: the full resource ID or its last segment, case-insensitively; no
/// flag is fine when exactly one identity is allowed.
pub fn resolve_azure_identity(allowed: &[String], flag: Option<&str>) -> Result<String> {
    let denied = |m: String| ClientError::Local(m);
    if allowed.is_empty() {
        return Err(denied(
            "no Azure identities available, check your permissions".into(),
        ));
    }
    let Some(wanted) = flag.map(str::trim).filter(|f| !f.is_empty()) else {
        if allowed.len() == 1 {
            return Ok(allowed[0].clone());
        }
        return Err(denied(
            "multiple Azure identities available, choose one with --azure-identity flag".into(),
        ));
    };
    if let Some(full) = allowed.iter().find(|a| a.eq_ignore_ascii_case(wanted)) {
        return Ok(full.clone());
    }
    let by_name: Vec<&String> = allowed
        .iter()
        .filter(|a| {
            a.rsplit('/')
                .next()
                .is_some_and(|last| last.eq_ignore_ascii_case(wanted))
        })
        .collect();
    match by_name.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(denied(format!(
            "failed to find the identity matching {wanted:?}"
        ))),
        _ => Err(denied(format!(
            "provided identity {wanted:?} is ambiguous, please specify full identity name"
        ))),
    }
}

/// Where an app session's files live:
/// `keys/<proxy>/<user>-app/<cluster>/<app>.{crt,key}` and `<app>-localca.pem`.
#[derive(Debug, Clone)]
pub struct AppPaths {
    /// Directory of the user's app certificates for the cluster.
    pub dir: PathBuf,
    /// Certificate.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// Local CA of the local proxy.
    pub local_ca: PathBuf,
    /// `AZURE_CONFIG_DIR` for the app: `~/.tsh/azure/<cluster>/<app>`.
    pub azure_config_dir: PathBuf,
}

impl ProfileStore {
    /// Paths of an app session of `profile`; refused when a name cannot be a path component
    /// ([`crate::profile::path_component`]): `tsh apps logout ../../..` must not remove `~`.
    pub fn app_paths(&self, profile: &Profile, app: &str) -> Result<AppPaths> {
        crate::profile::check_profile_names(profile)?;
        crate::profile::path_component("app name", app)?;
        let dir = self
            .dir()
            .join("keys")
            .join(profile.name())
            .join(format!("{}-app", profile.user))
            .join(&profile.cluster);
        Ok(AppPaths {
            cert: dir.join(format!("{app}.crt")),
            key: dir.join(format!("{app}.key")),
            local_ca: dir.join(format!("{app}-localca.pem")),
            azure_config_dir: self.dir().join("azure").join(&profile.cluster).join(app),
            dir,
        })
    }

    /// Store an app session's key and certificate.
    pub fn save_app(
        &self,
        profile: &Profile,
        app: &str,
        key_pem: &str,
        cert_pem: &str,
    ) -> Result<AppPaths> {
        let paths = self.app_paths(profile, app)?;
        crate::profile::write_private(&paths.key, key_pem.as_bytes())?;
        crate::profile::write_private(&paths.cert, cert_pem.as_bytes())?;
        Ok(paths)
    }

    /// App sessions of `profile` holding an Azure identity, newest first:
    /// `(app name, credentials)`.
    pub fn azure_sessions(
        &self,
        profile: &Profile,
        ca_pems: &[String],
    ) -> Vec<(String, Credentials)> {
        let Ok(AppPaths { dir, .. }) = self.app_paths(profile, "x") else {
            return Vec::new();
        };
        let mut found: Vec<(std::time::SystemTime, String, Credentials)> = Vec::new();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("crt") {
                continue;
            }
            let Some(app) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
            else {
                continue;
            };
            let (Ok(cert), Ok(key)) = (
                std::fs::read_to_string(&path),
                std::fs::read_to_string(path.with_extension("key")),
            ) else {
                continue;
            };
            let Ok(id) = pki::Identity::from_cert_pem(&cert) else {
                continue;
            };
            let azure = id
                .route_to_app
                .as_ref()
                .is_some_and(|r| !r.azure_identity.is_empty());
            if !azure || id.expires <= time::OffsetDateTime::now_utc() {
                continue;
            }
            let mtime = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((
                mtime,
                app,
                Credentials {
                    key_pem: key,
                    cert_pem: cert,
                    ca_pems: ca_pems.to_vec(),
                },
            ));
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.into_iter().map(|(_, a, c)| (a, c)).collect()
    }
}

/// Remove the app session files of `app`.
pub fn remove_app(paths: &AppPaths) {
    for p in [&paths.cert, &paths.key, &paths.local_ca] {
        let _ = std::fs::remove_file(p);
    }
}

/// True when `path` exists and is a file.
pub fn exists(path: &Path) -> bool {
    path.is_file()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const A: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/teleport-azure";
    const B: &str = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other";
    const B2: &str = "/subscriptions/0000/resourceGroups/rg2/providers/Microsoft.ManagedIdentity/userAssignedIdentities/other";

    fn err(allowed: &[&str], flag: Option<&str>) -> String {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        resolve_azure_identity(&allowed, flag)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn identities_resolve_as_teleport_does() {
        let all = vec![A.to_string(), B.to_string()];
        assert_eq!(
            resolve_azure_identity(&all, Some("teleport-azure")).unwrap(),
            A
        );
        assert_eq!(
            resolve_azure_identity(&all, Some("TELEPORT-AZURE")).unwrap(),
            A
        );
        assert_eq!(
            resolve_azure_identity(&all, Some(&A.to_uppercase())).unwrap(),
            A
        );
        assert_eq!(resolve_azure_identity(&[A.to_string()], None).unwrap(), A);
        assert_eq!(
            err(&[A, B], None),
            "multiple Azure identities available, choose one with --azure-identity flag"
        );
        assert_eq!(
            err(&[A], Some("nope")),
            "failed to find the identity matching \"nope\""
        );
        assert_eq!(
            err(&[B, B2], Some("other")),
            "provided identity \"other\" is ambiguous, please specify full identity name"
        );
        assert_eq!(
            resolve_azure_identity(&[B.into(), B2.into()], Some(B2)).unwrap(),
            B2
        );
        assert_eq!(
            err(&[], Some("x")),
            "no Azure identities available, check your permissions"
        );
        assert_eq!(
            err(&[], None),
            "no Azure identities available, check your permissions"
        );
    }
}
