//! Command-line values the `teleport` binary turns into configuration: the
//! `k=v` lists and CA pins its commands take, and the flags of `teleport
//! start` laid over a file (as Teleport: a flag overrides the file's value),
//! so that the command `tctl tokens add` prints runs with no file at all.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::{AppConfig, ConfigError, FileConfig, JoinParams, StringOrList};

/// The values of a repeated flag, each comma-separated: trimmed, empty ones
/// dropped (`--x=a,b --x=c` is `a`, `b`, `c`).
pub fn split_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect()
}

fn flag_error(message: String) -> ConfigError {
    ConfigError::Flag(message)
}

/// `k=v[,k2=v2]` pairs of the repeated flag `--{flag}`, in order.
pub fn parse_pairs(values: &[String], flag: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for item in split_list(values) {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            flag_error(format!(
                "--{flag}: {item:?} is not key=value (e.g. --{flag}=env=dev,team=x)"
            ))
        })?;
        if k.trim().is_empty() {
            return Err(flag_error(format!("--{flag}: {item:?} has an empty key")));
        }
        out.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Static labels from `--{flag}=env=dev,team=x`: each key once, keys and
/// values as the cluster accepts them (no control characters, bounded).
pub fn parse_labels(
    values: &[String],
    flag: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for (k, v) in parse_pairs(values, flag)? {
        resources::served::check_label(&k, &v).map_err(|e| flag_error(format!("--{flag}: {e}")))?;
        if labels.insert(k.clone(), v).is_some() {
            return Err(flag_error(format!(
                "--{flag}: the label {k:?} is given twice"
            )));
        }
    }
    Ok(labels)
}

/// CA pins from a repeated, comma-separated `--ca-pin`, each of the form
/// `tctl status` prints (`sha256:` and 64 hex digits).
pub fn parse_ca_pins(values: &[String]) -> Result<Vec<String>, ConfigError> {
    let pins = split_list(values);
    for pin in &pins {
        let ok = pin
            .strip_prefix("sha256:")
            .is_some_and(|hex| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(flag_error(format!(
                "--ca-pin {pin:?} is not a CA pin: give it as `tctl status` prints it (sha256: and 64 hex digits)"
            )));
        }
    }
    Ok(pins)
}

/// Roles `teleport start --roles` takes here.
const ROLES: [&str; 5] = ["node", "proxy", "auth", "app", "db"];
/// Teleport's roles for services this build does not have.
const ABSENT_ROLES: [&str; 4] = ["kube", "windowsdesktop", "discovery", "okta"];

/// The flags of `teleport start` that set configuration (Teleport's names).
#[derive(Debug, Clone, Default)]
pub struct StartFlags {
    /// `--roles=app,db,node`: the services to run; every other one is off.
    pub roles: Option<String>,
    /// `--token`: a join token, or a file holding it.
    pub token: Option<String>,
    /// `--join-method`: `token` or `azure`.
    pub join_method: Option<String>,
    /// `--ca-pin` (repeatable, comma-separated).
    pub ca_pins: Vec<String>,
    /// `--auth-server` (repeatable): the address the agent joins through
    /// (here the proxy's `host:port`, as `tctl tokens add` prints it).
    pub auth_servers: Vec<String>,
    /// `--nodename`.
    pub nodename: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--labels=env=dev,team=x`: static labels of the `--app-name` app.
    pub labels: Vec<String>,
    /// `--app-name`: an app to serve.
    pub app_name: Option<String>,
    /// `--app-uri`: its backend.
    pub app_uri: Option<String>,
    /// `--app-public-addr`: its public address.
    pub app_public_addr: Option<String>,
}

impl StartFlags {
    /// No flag that sets configuration was given.
    pub fn is_empty(&self) -> bool {
        self.roles.is_none()
            && self.token.is_none()
            && self.join_method.is_none()
            && self.ca_pins.is_empty()
            && self.auth_servers.is_empty()
            && self.nodename.is_none()
            && self.data_dir.is_none()
            && self.labels.is_empty()
            && self.app_name.is_none()
            && self.app_uri.is_none()
            && self.app_public_addr.is_none()
    }

    /// Lays the flags over `cfg` (a file's, or [`FileConfig::empty`]) and
    /// checks the result as a file is checked. Returns warnings for the log.
    pub fn apply(&self, cfg: &mut FileConfig) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        if let Some(roles) = &self.roles {
            let roles = split_list(std::slice::from_ref(roles));
            if roles.is_empty() {
                return Err(flag_error(format!(
                    "--roles is empty: give the services to run, among {}",
                    ROLES.join(", ")
                )));
            }
            for r in &roles {
                let r = r.to_ascii_lowercase();
                if ABSENT_ROLES.contains(&r.as_str()) {
                    return Err(flag_error(format!(
                        "--roles: the {r} service is not available in this build (roles here: {})",
                        ROLES.join(", ")
                    )));
                }
                if !ROLES.contains(&r.as_str()) {
                    return Err(flag_error(format!(
                        "--roles: unknown role {r:?}; valid roles: {}",
                        ROLES.join(", ")
                    )));
                }
            }
            let has = |name: &str| roles.iter().any(|r| r.eq_ignore_ascii_case(name));
            cfg.ssh_service.enabled = has("node");
            cfg.proxy_service.enabled = has("proxy");
            cfg.auth_service.enabled = has("auth");
            cfg.app_service.enabled = has("app");
            cfg.db_service.enabled = has("db");
        }
        if let Some(token) = &self.token {
            if token.trim().is_empty() {
                return Err(flag_error(
                    "--token is empty: give the token `tctl tokens add` printed, or a file holding it".into(),
                ));
            }
            let params = cfg
                .teleport
                .join_params
                .get_or_insert_with(JoinParams::default);
            params.token_name = token.trim().to_string();
        }
        if let Some(method) = &self.join_method {
            if !matches!(method.as_str(), "token" | "azure") {
                return Err(flag_error(format!(
                    "--join-method {method:?} is not supported: use token or azure"
                )));
            }
            let params = cfg
                .teleport
                .join_params
                .get_or_insert_with(JoinParams::default);
            params.method = method.clone();
        }
        if let Some(params) = cfg.teleport.join_params.as_mut() {
            if params.method.is_empty() {
                params.method = "token".into();
            }
        }
        let pins = parse_ca_pins(&self.ca_pins)?;
        if !pins.is_empty() {
            cfg.teleport.ca_pin = Some(StringOrList::Many(pins));
        }
        let servers = split_list(&self.auth_servers);
        if !servers.is_empty() {
            // The flag wins over whichever address key the file used.
            cfg.teleport.proxy_server = None;
            cfg.teleport.auth_server = None;
            cfg.teleport.auth_servers = servers;
        }
        if let Some(n) = &self.nodename {
            cfg.teleport.nodename = Some(n.clone());
        }
        if let Some(d) = &self.data_dir {
            cfg.teleport.data_dir = Some(d.clone());
        }
        let labels = parse_labels(&self.labels, "labels")?;
        match &self.app_name {
            Some(name) => {
                let name = name.trim();
                let Some(uri) = self
                    .app_uri
                    .as_deref()
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                else {
                    return Err(flag_error(format!(
                        "--app-name {name:?} needs --app-uri, the address the app is served at (e.g. http://localhost:3000)"
                    )));
                };
                if name.is_empty() {
                    return Err(flag_error("--app-name is empty".into()));
                }
                let app = AppConfig {
                    name: name.to_string(),
                    uri: Some(uri.to_string()),
                    public_addr: self.app_public_addr.clone(),
                    labels,
                    ..AppConfig::default()
                };
                // As Teleport: the flag's app is served, replacing a file's app of that name.
                cfg.app_service.enabled = true;
                cfg.app_service.apps.retain(|a| a.name != app.name);
                cfg.app_service.apps.push(app);
            }
            None => {
                for (flag, given) in [
                    ("--app-uri", self.app_uri.is_some()),
                    ("--app-public-addr", self.app_public_addr.is_some()),
                ] {
                    if given {
                        return Err(flag_error(format!(
                            "{flag} needs --app-name, the name of the app to serve"
                        )));
                    }
                }
                if !labels.is_empty() {
                    warnings.push(
                        "--labels labels the SSH node (not in this build) and the app of --app-name: with no --app-name they label nothing".into(),
                    );
                }
            }
        }
        cfg.check()?;
        Ok(warnings)
    }
}

impl FileConfig {
    /// The configuration of a process started with flags and no file:
    /// `version: v3` and every default.
    pub fn empty() -> FileConfig {
        FileConfig {
            version: Some("v3".into()),
            ..FileConfig::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PIN: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    /// The flags of the command `tctl tokens add --type=app` prints.
    fn invite(extra: impl FnOnce(&mut StartFlags)) -> StartFlags {
        let mut f = StartFlags {
            roles: s("app"),
            token: s("abcd"),
            ca_pins: vec![PIN.into()],
            auth_servers: vec!["proxy.example.com:443".into()],
            ..StartFlags::default()
        };
        extra(&mut f);
        f
    }

    #[test]
    fn the_printed_command_makes_an_agent_without_a_file() {
        let f = invite(|f| {
            f.roles = s("app,db,node");
            f.app_name = s("grafana");
            f.app_uri = s("http://localhost:3000");
            f.labels = vec!["env=dev,team=x".into()];
            f.data_dir = Some("/tmp/agent".into());
        });
        assert!(!f.is_empty());
        let mut cfg = FileConfig::empty();
        let warnings = f.apply(&mut cfg).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(cfg.app_service.enabled && cfg.db_service.enabled && cfg.ssh_service.enabled);
        assert!(!cfg.auth_service.enabled && !cfg.proxy_service.enabled);
        let jp = cfg.teleport.join_params.as_ref().unwrap();
        assert_eq!(
            (jp.token_name.as_str(), jp.method.as_str()),
            ("abcd", "token")
        );
        assert_eq!(
            cfg.teleport.ca_pin,
            Some(StringOrList::Many(vec![PIN.into()]))
        );
        assert_eq!(cfg.teleport.auth_servers, vec!["proxy.example.com:443"]);
        assert_eq!(cfg.data_dir(), PathBuf::from("/tmp/agent"));
        let app = &cfg.app_service.apps[0];
        assert_eq!(app.name, "grafana");
        assert_eq!(app.uri.as_deref(), Some("http://localhost:3000"));
        assert_eq!(app.labels["env"], "dev");
        assert_eq!(app.labels["team"], "x");
        // No --data-dir: the file's default.
        let mut cfg = FileConfig::empty();
        invite(|_| {}).apply(&mut cfg).unwrap();
        assert_eq!(cfg.data_dir(), PathBuf::from(crate::DEFAULT_DATA_DIR));
    }

    #[test]
    fn flags_override_the_file() {
        let mut cfg = crate::parse(
            "version: v3\nteleport:\n  proxy_server: old:3080\n  ca_pin: sha256:old\n  join_params:\n    token_name: /tmp/old\n    method: azure\napp_service:\n  enabled: yes\n  apps:\n  - name: grafana\n    uri: http://old\n  - name: kept\n    uri: http://kept\ndb_service:\n  enabled: yes\n",
            "t",
        )
        .unwrap();
        invite(|f| {
            f.app_name = s("grafana");
            f.app_uri = s("http://new");
        })
        .apply(&mut cfg)
        .unwrap();
        assert_eq!(cfg.teleport.proxy_server, None);
        assert_eq!(cfg.teleport.auth_servers, vec!["proxy.example.com:443"]);
        assert_eq!(
            cfg.teleport.ca_pin,
            Some(StringOrList::Many(vec![PIN.into()]))
        );
        let jp = cfg.teleport.join_params.as_ref().unwrap();
        // The token is the flag's; the file's join method stays.
        assert_eq!(
            (jp.token_name.as_str(), jp.method.as_str()),
            ("abcd", "azure")
        );
        assert!(!cfg.db_service.enabled, "--roles=app turns db_service off");
        let apps: Vec<(&str, Option<&str>)> = cfg
            .app_service
            .apps
            .iter()
            .map(|a| (a.name.as_str(), a.uri.as_deref()))
            .collect();
        assert_eq!(
            apps,
            vec![
                ("kept", Some("http://kept")),
                ("grafana", Some("http://new"))
            ]
        );
    }

    #[test]
    fn bad_flags_say_what_to_give() {
        for (edit, want) in [
            (
                Box::new(|f: &mut StartFlags| f.roles = s("app,ssh"))
                    as Box<dyn Fn(&mut StartFlags)>,
                "unknown role \"ssh\"; valid roles: node, proxy, auth, app, db",
            ),
            (
                Box::new(|f| f.roles = s("kube")),
                "the kube service is not available",
            ),
            (Box::new(|f| f.roles = s(" , ")), "--roles is empty"),
            (
                Box::new(|f| f.ca_pins = vec!["sha256:abcd".into()]),
                "sha256: and 64 hex digits",
            ),
            (Box::new(|f| f.token = s(" ")), "--token is empty"),
            (Box::new(|f| f.join_method = s("iam")), "use token or azure"),
            (Box::new(|f| f.app_name = s("grafana")), "needs --app-uri"),
            (
                Box::new(|f| f.app_uri = s("http://x")),
                "--app-uri needs --app-name",
            ),
            (
                Box::new(|f| {
                    f.app_name = s("a");
                    f.app_uri = s("http://a");
                    f.labels = vec!["env".into()];
                }),
                "--labels: \"env\" is not key=value",
            ),
            (
                Box::new(|f| {
                    f.app_name = s("a");
                    f.app_uri = s("http://a");
                    f.labels = vec!["env=a,env=b".into()];
                }),
                "the label \"env\" is given twice",
            ),
            (
                Box::new(|f| {
                    f.app_name = s("a");
                    f.app_uri = s("http://a");
                    f.labels = vec!["env=a\u{1b}[31m".into()];
                }),
                "control character",
            ),
        ] {
            let err = invite(|f| edit(f))
                .apply(&mut FileConfig::empty())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{err} (want {want})");
        }
        // Labels without an app: a warning, as they would label the SSH node.
        let warnings = invite(|f| f.labels = vec!["env=dev".into()])
            .apply(&mut FileConfig::empty())
            .unwrap();
        assert!(warnings[0].contains("label nothing"), "{warnings:?}");
        assert!(StartFlags::default().is_empty());
    }
}
