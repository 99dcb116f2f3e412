//! App sessions on the client: choosing the Azure identity, storing the app
//! certificate under the profile, and the connection that carries a local
//! proxy's requests to the cluster.

use std::path::{Path, PathBuf};

use crate::{ClientError, Credentials, Profile, ProfileStore, Result};

/// Pick the Azure identity for `tsh apps login --azure-identity`, as Teleport
/// does: the full resource ID or its last segment, case-insensitively; no
/// flag is fine when exactly one identity is allowed. Every refusal lists the
/// identities one may assume ([`identities_table`]), as Teleport prints them
/// before its error.
pub fn resolve_azure_identity(allowed: &[String], flag: Option<&str>) -> Result<String> {
    let denied = |m: String| ClientError::Local(with_identities(&m, allowed));
    if allowed.is_empty() {
        return Err(ClientError::Local(
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
        .filter(|a| identity_name(a).eq_ignore_ascii_case(wanted))
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

/// The name of an identity: the last segment of its resource ID.
pub fn identity_name(resource_id: &str) -> &str {
    resource_id.rsplit('/').next().unwrap_or(resource_id)
}

/// `message`, then the identities one may assume.
pub fn with_identities(message: &str, allowed: &[String]) -> String {
    format!("{message}\n\n{}", identities_table(allowed).trim_end())
}

/// The identities of `allowed` as a table (`Available Azure identities`:
/// the name `--azure-identity` takes, then the full resource ID), each cell
/// with its control characters escaped: the IDs come from the cluster's roles.
pub fn identities_table(allowed: &[String]) -> String {
    if allowed.is_empty() {
        return "No Azure identities available: ask your administrator for a role with azure_identities.\n"
            .into();
    }
    let rows: Vec<(String, String)> = allowed
        .iter()
        .map(|a| {
            (
                crate::term::cell(identity_name(a)).into_owned(),
                crate::term::cell(a).into_owned(),
            )
        })
        .collect();
    let width = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .chain(std::iter::once("Name".len()))
        .max()
        .unwrap_or(4);
    let mut out = String::from("Available Azure identities:\n");
    out.push_str(&format!("  {:<width$} Resource ID\n", "Name"));
    out.push_str(&format!("  {} {}\n", "-".repeat(width), "-".repeat(11)));
    for (name, id) in rows {
        out.push_str(&format!("  {name:<width$} {id}\n"));
    }
    out
}

/// The message for an identity the cluster refused though the certificate
/// lists it: the roles changed since login. `server` is the cluster's reason,
/// `login` the command that refreshes the certificate.
pub fn identity_no_longer_allowed(
    identity: &str,
    server: &str,
    allowed: &[String],
    login: &str,
) -> String {
    format!(
        "the cluster refused Azure identity {:?}: {server}\n\
         Your roles may have changed since you logged in: log in again with `{login}` \
         to refresh the identities you may assume, then list them with \
         `tsh apps login <app> --list-identities`.\n\n{}",
        crate::term::cell(identity),
        identities_table(allowed).trim_end().replacen(
            "Available Azure identities:",
            "Identities in your current certificate:",
            1
        )
    )
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
        assert!(err(&[A, B], None).starts_with(
            "multiple Azure identities available, choose one with --azure-identity flag\n"
        ));
        assert!(
            err(&[A], Some("nope")).starts_with("failed to find the identity matching \"nope\"\n")
        );
        assert!(err(&[B, B2], Some("other")).starts_with(
            "provided identity \"other\" is ambiguous, please specify full identity name\n"
        ));
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

    /// Every refusal lists what one may assume: names and full IDs.
    #[test]
    fn refusals_list_the_identities() {
        for (allowed, flag) in [
            (&[A, B][..], None),
            (&[A, B][..], Some("teleport-azur")),
            (&[B, B2, A][..], Some("other")),
        ] {
            let e = err(allowed, flag);
            let (_, list) = e.split_once("\n\n").unwrap();
            let lines: Vec<&str> = list.lines().collect();
            assert_eq!(lines[0], "Available Azure identities:", "{e}");
            assert!(lines[1].trim_start().starts_with("Name"), "{e}");
            assert_eq!(lines.len(), 3 + allowed.len(), "{e}");
            for (line, id) in lines[3..].iter().zip(allowed) {
                let cols: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(cols, [identity_name(id), *id], "{e}");
            }
        }
        // Control characters from a role reach the terminal escaped.
        let table = identities_table(&["/x/evil\u{1b}[2J".to_string()]);
        assert!(!table.contains('\u{1b}'), "{table}");
        assert!(identities_table(&[]).starts_with("No Azure identities available"));

        let msg = identity_no_longer_allowed(
            A,
            "access denied",
            &[A.to_string(), B.to_string()],
            "tsh login --proxy=p:3080 --user=alice",
        );
        assert!(msg.contains("the cluster refused Azure identity"), "{msg}");
        assert!(
            msg.contains("log in again with `tsh login --proxy=p:3080 --user=alice`"),
            "{msg}"
        );
        assert!(
            msg.contains("Identities in your current certificate:"),
            "{msg}"
        );
        assert!(msg.contains(B), "{msg}");
    }
}
