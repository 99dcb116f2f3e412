//! Profiles under `~/.tsh` (or `$TELEPORT_HOME`), laid out as Teleport does:
//!
//! ```text
//! current-profile                 name of the active profile (the proxy host)
//! <proxy>.yaml                    web_proxy_addr, user, cluster
//! keys/<proxy>/<user>.key         private key (0600)
//! keys/<proxy>/<user>.crt         X.509 certificate
//! keys/<proxy>/cas/<cluster>.pem  trusted host CA
//! ```
//!
//! An identity file (`tctl auth sign`, `-i FILE`) is the same material in one
//! PEM file: the private key, the certificate, then the CA certificates.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{ClientError, Result};

/// A profile: where and as whom the user logged in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// `host:port` of the proxy.
    pub web_proxy_addr: String,
    /// Teleport user.
    pub user: String,
    /// Cluster name.
    pub cluster: String,
    /// The login skipped server certificate checks (`--insecure`); later
    /// commands of this profile do the same.
    #[serde(default)]
    pub insecure: bool,
}

impl Profile {
    /// Profile name: the proxy host without the port.
    pub fn name(&self) -> String {
        profile_name(&self.web_proxy_addr)
    }

    /// The command that logs this profile in again:
    /// `tsh login --proxy=ADDR --user=USER`, with `--insecure` when the
    /// profile was made with it.
    pub fn login_command(&self) -> String {
        let insecure = if self.insecure { " --insecure" } else { "" };
        format!(
            "tsh login --proxy={} --user={}{insecure}",
            self.web_proxy_addr, self.user
        )
    }
}

/// The profile name for a proxy address.
pub fn profile_name(addr: &str) -> String {
    let addr = addr.trim_start_matches("https://");
    match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            host.trim_matches(['[', ']']).to_string()
        }
        _ => addr.to_string(),
    }
}

/// Longest name accepted as a path component (bytes): a file name is at most 255 bytes and the
/// store appends suffixes such as `-localca.pem`.
pub const MAX_NAME_LEN: usize = 200;

/// `name` when it can safely become one component of a path under the profile store: not empty,
/// at most [`MAX_NAME_LEN`] bytes, without `/`, `\`, `..`, NUL or other control characters, and
/// not `.`. The user name, the cluster name (answered by the proxy), the profile name (from the
/// proxy address) and app and database names all become file names; a hostile proxy answering
/// `"cluster_name": "../../x"` must not make tsh write outside `~/.tsh`. `what` names the value
/// in the error.
pub fn path_component<'a>(what: &str, name: &'a str) -> Result<&'a str> {
    let problem = if name.is_empty() {
        Some("it is empty".to_string())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!("it is longer than {MAX_NAME_LEN} bytes"))
    } else if name == "." || name.contains("..") {
        Some("it contains '..' or is '.'".to_string())
    } else {
        name.chars()
            .find(|c| matches!(c, '/' | '\\') || c.is_control())
            .map(|c| format!("it contains {c:?}"))
    };
    match problem {
        None => Ok(name),
        Some(why) => Err(ClientError::Local(format!(
            "the {what} {name:?} cannot name a file under the profile store: {why}; \
             names may not contain '/', '\\', '..' or control characters"
        ))),
    }
}

/// Checks every name of `profile` that becomes a path component.
pub(crate) fn check_profile_names(profile: &Profile) -> Result<()> {
    path_component("profile name (the proxy host)", &profile.name())?;
    path_component("user name", &profile.user)?;
    path_component("cluster name", &profile.cluster)?;
    Ok(())
}

/// A key, its certificate and the CAs to trust.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Private key PEM.
    pub key_pem: String,
    /// Certificate PEM.
    pub cert_pem: String,
    /// Trusted CA certificates PEM.
    pub ca_pems: Vec<String>,
}

impl Credentials {
    /// As an identity file.
    pub fn to_identity_file(&self) -> String {
        let mut out = String::new();
        for part in std::iter::once(&self.key_pem)
            .chain(std::iter::once(&self.cert_pem))
            .chain(self.ca_pems.iter())
        {
            out.push_str(part);
            if !part.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Parse an identity file.
    pub fn from_identity_file(text: &str) -> Result<Credentials> {
        let bad = |what: &str| {
            ClientError::Local(format!(
                "the identity file is not valid: {what}; make one with `tctl auth sign --user USER --out FILE`"
            ))
        };
        let key_start = text
            .find("-----BEGIN PRIVATE KEY-----")
            .or_else(|| text.find("-----BEGIN EC PRIVATE KEY-----"))
            .ok_or_else(|| bad("no private key"))?;
        let key_tail = &text[key_start..];
        let key_end = key_tail
            .find("PRIVATE KEY-----\n")
            .and_then(|first| {
                let after = first + "PRIVATE KEY-----\n".len();
                key_tail[after..]
                    .find("PRIVATE KEY-----")
                    .map(|e| after + e + "PRIVATE KEY-----".len())
            })
            .ok_or_else(|| bad("the private key is truncated"))?;
        let key_pem = format!("{}\n", &key_tail[..key_end]);
        let mut certs = crate::split_pem_certs(text);
        if certs.is_empty() {
            return Err(bad("no certificate"));
        }
        let cert_pem = certs.remove(0);
        Ok(Credentials {
            key_pem,
            cert_pem,
            ca_pems: certs,
        })
    }

    /// Read an identity file from disk.
    pub fn load_identity_file(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ClientError::Local(format!("cannot read identity file {}: {e}", path.display()))
        })?;
        Self::from_identity_file(&text)
    }
}

/// Write a file readable only by its owner: mode 0600, replaced atomically, missing parent
/// directories created 0700 ([`pki::private_file::write`]).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    pki::private_file::write(path, contents).map_err(|e| ClientError::Local(e.to_string()))
}

/// The profile directory and what is in it.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    dir: PathBuf,
}

impl ProfileStore {
    /// `$TELEPORT_HOME`, else `~/.tsh`.
    pub fn from_env() -> Result<ProfileStore> {
        if let Some(home) = std::env::var_os("TELEPORT_HOME").filter(|v| !v.is_empty()) {
            return Ok(ProfileStore { dir: home.into() });
        }
        let home = dirs::home_dir()
            .ok_or_else(|| ClientError::Local("cannot find the home directory".into()))?;
        Ok(ProfileStore {
            dir: home.join(".tsh"),
        })
    }

    /// A store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> ProfileStore {
        ProfileStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn keys_dir(&self, name: &str) -> PathBuf {
        self.dir.join("keys").join(name)
    }

    /// Save a profile and its credentials, and make it current.
    pub fn save(&self, profile: &Profile, creds: &Credentials) -> Result<()> {
        check_profile_names(profile)?;
        let name = profile.name();
        let keys = self.keys_dir(&name);
        write_private(
            &keys.join(format!("{}.key", profile.user)),
            creds.key_pem.as_bytes(),
        )?;
        write_private(
            &keys.join(format!("{}.crt", profile.user)),
            creds.cert_pem.as_bytes(),
        )?;
        write_private(&self.ca_path(profile), creds.ca_pems.concat().as_bytes())?;
        let yaml = serde_yaml_ng::to_string(profile)
            .map_err(|e| ClientError::Local(format!("cannot encode the profile: {e}")))?;
        write_private(&self.dir.join(format!("{name}.yaml")), yaml.as_bytes())?;
        write_private(&self.dir.join("current-profile"), name.as_bytes())
    }

    /// The cluster's CA certificates of `profile`:
    /// `keys/<proxy>/cas/<cluster>.pem`.
    pub fn ca_path(&self, profile: &Profile) -> PathBuf {
        self.keys_dir(&profile.name())
            .join("cas")
            .join(format!("{}.pem", profile.cluster))
    }

    /// Name of the current profile.
    pub fn current_name(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("current-profile"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Load one profile and its credentials.
    pub fn load(&self, name: &str) -> Result<(Profile, Credentials)> {
        path_component("profile name", name)?;
        let text = std::fs::read_to_string(self.dir.join(format!("{name}.yaml")))
            .map_err(|_| ClientError::Local("Not logged in.".into()))?;
        let profile: Profile = serde_yaml_ng::from_str(&text).map_err(|e| {
            ClientError::Local(format!(
                "profile {name} is corrupt ({e}); run tsh login again"
            ))
        })?;
        check_profile_names(&profile)?;
        let keys = self.keys_dir(name);
        let read = |p: PathBuf| {
            std::fs::read_to_string(&p).map_err(|_| {
                ClientError::Local(format!(
                    "profile {name} is missing {}; run tsh login again",
                    p.display()
                ))
            })
        };
        let key_pem = read(keys.join(format!("{}.key", profile.user)))?;
        let cert_pem = read(keys.join(format!("{}.crt", profile.user)))?;
        let cas = read(keys.join("cas").join(format!("{}.pem", profile.cluster)))?;
        Ok((
            profile,
            Credentials {
                key_pem,
                cert_pem,
                ca_pems: crate::split_pem_certs(&cas),
            },
        ))
    }

    /// The profile stored for the proxy at `addr` (`host:port`, or `host`
    /// alone for whichever port the profile found), whatever the state of
    /// its keys (an expired session's profile is still there): `tsh login`
    /// takes its `--insecure` from it.
    pub fn profile_for(&self, addr: &str) -> Option<Profile> {
        let (host, port) = crate::discover::split_addr(addr);
        let name = profile_name(&format!("{host}:{}", port.unwrap_or(3080)));
        path_component("profile name", &name).ok()?;
        let text = std::fs::read_to_string(self.dir.join(format!("{name}.yaml"))).ok()?;
        let profile: Profile = serde_yaml_ng::from_str(&text).ok()?;
        let (p_host, p_port) = crate::discover::split_addr(&profile.web_proxy_addr);
        let same_port = port.is_none() || p_port.unwrap_or(3080) == port.unwrap_or(3080);
        (p_host == host && same_port).then_some(profile)
    }

    /// The current profile, if logged in.
    pub fn current(&self) -> Result<(Profile, Credentials)> {
        let name = self
            .current_name()
            .ok_or_else(|| ClientError::Local("Not logged in.".into()))?;
        self.load(&name)
    }

    /// Names of all profiles.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(&self.dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some(stem) = n.strip_suffix(".yaml") {
                    out.push(stem.to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// Remove one profile (or all when `name` is None).
    pub fn remove(&self, name: Option<&str>) -> Result<Vec<String>> {
        let names = match name {
            Some(n) => vec![n.to_string()],
            None => self.names(),
        };
        let mut removed = Vec::new();
        for n in names {
            path_component("profile name", &n)?;
            let yaml = self.dir.join(format!("{n}.yaml"));
            let profile = std::fs::read_to_string(&yaml)
                .ok()
                .and_then(|t| serde_yaml_ng::from_str::<Profile>(&t).ok());
            let _ = std::fs::remove_file(&yaml);
            let _ = std::fs::remove_dir_all(self.keys_dir(&n));
            if self.current_name().as_deref() == Some(n.as_str()) {
                let _ = std::fs::remove_file(self.dir.join("current-profile"));
            }
            if let Some(p) = profile {
                removed.push(format!("{} ({})", p.user, p.web_proxy_addr));
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        let ca = pki::CertAuthority::generate("c", pki::CaType::User).unwrap();
        let key = pki::generate_key().unwrap();
        let id = pki::Identity {
            username: "alice".into(),
            groups: vec!["access".into()],
            expires: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            ..Default::default()
        };
        Credentials {
            cert_pem: ca.sign_identity(&id, &key.public_key_der).unwrap(),
            key_pem: key.private_key_pem,
            ca_pems: vec![ca.cert_pem().to_string()],
        }
    }

    #[test]
    fn identity_file_round_trip() {
        let c = creds();
        let back = Credentials::from_identity_file(&c.to_identity_file()).unwrap();
        assert_eq!(back.key_pem.trim(), c.key_pem.trim());
        assert_eq!(back.cert_pem.trim(), c.cert_pem.trim());
        assert_eq!(back.ca_pems.len(), 1);
        assert!(Credentials::from_identity_file("garbage").is_err());
        assert!(Credentials::from_identity_file(&c.key_pem).is_err());
    }

    #[test]
    fn save_load_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::at(dir.path());
        assert!(store.current().is_err());
        let p = Profile {
            web_proxy_addr: "proxy.example.com:3080".into(),
            user: "alice".into(),
            cluster: "example".into(),
            insecure: true,
        };
        store.save(&p, &creds()).unwrap();
        let (back, c) = store.current().unwrap();
        assert_eq!(back, p);
        assert!(c.cert_pem.contains("BEGIN CERTIFICATE"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys/proxy.example.com/alice.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(store.remove(None).unwrap().len(), 1);
        assert!(store.current().is_err());
    }

    /// Every file under `dir`, relative to it.
    fn files_under(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    todo.push(p);
                } else {
                    out.push(p.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn names_from_a_hostile_proxy_never_leave_the_store() {
        let root = tempfile::tempdir().unwrap();
        // Deep enough that even the unfixed code's escapes stay inside `root`.
        let store = ProfileStore::at(root.path().join("d1/d2/d3/d4/home/.tsh"));
        let good = Profile {
            web_proxy_addr: "proxy.example.com:3080".into(),
            user: "alice@example.com".into(),
            cluster: "example".into(),
            insecure: false,
        };
        let hostile = [
            ("cluster", "../../../../outside"),
            ("cluster", "a/b"),
            ("cluster", "..\\x"),
            ("cluster", ".."),
            ("cluster", ""),
            ("cluster", "new\nline"),
            ("cluster", "nul\0byte"),
            ("user", "../../../../outside"),
            ("user", "/etc/passwd"),
            ("proxy", "../../../outside:3080"),
            ("proxy", "a/b:443"),
        ];
        for (field, value) in hostile {
            let mut p = good.clone();
            match field {
                "cluster" => p.cluster = value.into(),
                "user" => p.user = value.into(),
                _ => p.web_proxy_addr = value.into(),
            }
            let err = store.save(&p, &creds()).unwrap_err().to_string();
            assert!(
                err.contains("cannot name a file"),
                "{field} {value:?}: {err}"
            );
            assert!(
                store.save_app(&p, "azure-cli", "k", "c").is_err(),
                "app session of {field} {value:?}"
            );
            assert!(
                store.save_db(&p, "redis", "k", "c").is_err(),
                "db session of {field} {value:?}"
            );
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for app in ["../../../../outside", "a/b", "..", "", long.as_str()] {
            assert!(store.save_app(&good, app, "k", "c").is_err(), "app {app:?}");
            assert!(store.save_db(&good, app, "k", "c").is_err(), "db {app:?}");
            // Paths to read or remove (`tsh apps logout ../../..`) are refused alike.
            assert!(store.app_paths(&good, app).is_err(), "app paths {app:?}");
            assert!(store.db_paths(&good, app).is_err(), "db paths {app:?}");
            assert!(!store.remove_db(&good, app), "remove db {app:?}");
        }
        assert_eq!(files_under(root.path()), Vec::<String>::new());
        assert!(store.load("../../outside").is_err());

        // Names that are merely unusual still work.
        store.save(&good, &creds()).unwrap();
        store.save_app(&good, "azure-cli", "k", "c").unwrap();
        let (back, _) = store.current().unwrap();
        assert_eq!(back, good);
        assert!(files_under(root.path())
            .iter()
            .all(|f| f.starts_with("d1/d2/d3/d4/home/.tsh/")));
    }

    #[test]
    fn names() {
        assert_eq!(profile_name("proxy.example.com:3080"), "proxy.example.com");
        assert_eq!(profile_name("127.0.0.1:443"), "127.0.0.1");
        assert_eq!(profile_name("host"), "host");
        assert_eq!(crate::base_url("host"), "https://host:3080");
        assert_eq!(crate::base_url("host:443"), "https://host:443");
    }
}
