//! `tsh apps config [APP]`: how to reach an app with the session `tsh apps
//! login` made: its URI, the files of the session (CA, certificate, key) and
//! an example curl command, as Teleport prints them; `--format` picks one of
//! them (for scripts) or all of them as JSON or YAML.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::env::shell_word;
use crate::{load_session, Cli};

/// `--format` of `tsh apps config`, Teleport's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigFormat {
    /// The app's address.
    Uri,
    /// Path of the cluster's CA certificates.
    Ca,
    /// Path of the app certificate.
    Cert,
    /// Path of the app session's private key.
    Key,
    /// An example curl command.
    Curl,
    /// Everything, as JSON.
    Json,
    /// Everything, as YAML.
    Yaml,
}

/// One app session's connection details.
#[derive(Debug, Serialize)]
pub struct AppConfig {
    /// App name.
    pub name: String,
    /// `https://` address of the app.
    pub uri: String,
    /// The cluster's CA certificates.
    pub ca: PathBuf,
    /// The app certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// Example curl command.
    pub curl: String,
    /// The Azure identity of an Azure app session.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub azure_identity: String,
}

/// `tsh apps config [APP] [--format F]`.
pub fn run(cli: &Cli, app: Option<&str>, format: Option<ConfigFormat>) -> Result<()> {
    // An expired login is said as such (with how to log in again) before
    // the app session, which cannot outlive it, is looked at.
    let (profile, _) = load_session(cli, std::time::Duration::ZERO)?;
    if profile.web_proxy_addr.is_empty() {
        bail!("--proxy must be set when using an identity file");
    }
    let store = client::ProfileStore::from_env()?;
    let app = match app {
        Some(a) => a.to_string(),
        None => only_session(&logged_in_apps(&store, &profile))?,
    };
    let paths = store.app_paths(&profile, &app)?;
    let cert = std::fs::read_to_string(&paths.cert).map_err(|_| {
        anyhow!(
            "not logged into app {:?}: log in with `tsh apps login {}` (tsh apps ls lists the apps)",
            client::term::cell(&app),
            shell_word(&app)
        )
    })?;
    let id = pki::Identity::from_cert_pem(&cert)
        .map_err(|e| anyhow!("the certificate of app {app:?} cannot be read ({e}): log in again with `tsh apps login {}`", shell_word(&app)))?;
    if id.expires <= time::OffsetDateTime::now_utc() {
        bail!(
            "the session of app {app:?} has expired: log in again with `tsh apps login {}`",
            shell_word(&app)
        );
    }
    let route = id.route_to_app.unwrap_or_default();
    let uri = app_uri(&route.public_addr, &app, &profile.web_proxy_addr);
    let insecure = cli.insecure || profile.insecure;
    let config = AppConfig {
        curl: curl_command(&paths.cert, &paths.key, &uri, insecure),
        name: app,
        uri,
        ca: store.ca_path(&profile),
        cert: paths.cert,
        key: paths.key,
        azure_identity: route.azure_identity,
    };
    print!("{}", render(&config, format)?);
    Ok(())
}

/// The names of the app sessions of `profile` (files `<app>.crt`), sorted.
fn logged_in_apps(store: &client::ProfileStore, profile: &client::Profile) -> Vec<String> {
    let Ok(client::apps::AppPaths { dir, .. }) = store.app_paths(profile, "x") else {
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            (path.extension()? == "crt").then_some(())?;
            Some(path.file_stem()?.to_str()?.to_string())
        })
        .collect();
    names.sort();
    names
}

/// The app to describe when none was named: the one app session there is.
fn only_session(names: &[String]) -> Result<String> {
    match names {
        [one] => Ok(one.clone()),
        [] => bail!("not logged into any app: log in with `tsh apps login APP` (tsh apps ls lists the apps)"),
        many => bail!(
            "logged into several apps ({}): name one, `tsh apps config APP`",
            client::term::cell(&many.join(", "))
        ),
    }
}

/// `https://` and the app's public address, with the proxy's port unless it
/// is 443 (as Teleport); `<app>.<proxy host>` when the certificate has none.
pub fn app_uri(public_addr: &str, app: &str, proxy_addr: &str) -> String {
    let (proxy_host, port) = client::discover::split_addr(proxy_addr);
    let host = if public_addr.is_empty() {
        format!("{app}.{proxy_host}")
    } else {
        client::discover::split_addr(public_addr).0.to_string()
    };
    match port {
        Some(443) | None => format!("https://{host}"),
        Some(p) => format!("https://{host}:{p}"),
    }
}

/// Teleport's example: curl with the app certificate and key (and
/// `--insecure` for a profile that skips certificate checks).
pub fn curl_command(cert: &Path, key: &Path, uri: &str, insecure: bool) -> String {
    let insecure = if insecure { " --insecure" } else { "" };
    format!(
        "curl{insecure} \\\n  --cert {} \\\n  --key {} \\\n  {}",
        shell_word(&cert.display().to_string()),
        shell_word(&key.display().to_string()),
        shell_word(uri)
    )
}

/// The text of `tsh apps config` in `format` (a table without one).
pub fn render(c: &AppConfig, format: Option<ConfigFormat>) -> Result<String> {
    let doc = |f| -> Result<String> { Ok(client::format::document(c, f)?.unwrap_or_default()) };
    Ok(match format {
        // The address came from the cluster (the app's registration): its
        // control characters are shown escaped, as everywhere.
        Some(ConfigFormat::Uri) => format!("{}\n", client::term::cell(&c.uri)),
        Some(ConfigFormat::Ca) => format!("{}\n", c.ca.display()),
        Some(ConfigFormat::Cert) => format!("{}\n", c.cert.display()),
        Some(ConfigFormat::Key) => format!("{}\n", c.key.display()),
        Some(ConfigFormat::Curl) => format!("{}\n", client::term::printable(&c.curl)),
        Some(ConfigFormat::Json) => doc(client::format::Format::Json)?,
        Some(ConfigFormat::Yaml) => doc(client::format::Format::Yaml)?,
        None => {
            let mut rows = vec![
                ("Name:", c.name.clone()),
                ("URI:", c.uri.clone()),
                ("CA:", c.ca.display().to_string()),
                ("Cert:", c.cert.display().to_string()),
                ("Key:", c.key.display().to_string()),
            ];
            if !c.azure_identity.is_empty() {
                rows.push(("Azure Id:", c.azure_identity.clone()));
            }
            let mut out = String::new();
            for (label, value) in rows {
                out.push_str(&format!("{label:<10} {}\n", client::term::cell(&value)));
            }
            out
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(azure: &str) -> AppConfig {
        let cert = PathBuf::from("/home/a/.tsh/keys/p/alice-app/c/grafana.crt");
        let key = PathBuf::from("/home/a/.tsh/keys/p/alice-app/c/grafana.key");
        let uri = app_uri("grafana.example.com", "grafana", "p.example.com:3080");
        AppConfig {
            name: "grafana".into(),
            curl: curl_command(&cert, &key, &uri, true),
            uri,
            ca: "/home/a/.tsh/keys/p/cas/c.pem".into(),
            cert,
            key,
            azure_identity: azure.into(),
        }
    }

    #[test]
    fn uris_carry_the_proxy_port_unless_443() {
        assert_eq!(
            app_uri("grafana.example.com", "grafana", "p.example.com:443"),
            "https://grafana.example.com"
        );
        assert_eq!(
            app_uri("", "grafana", "p.example.com:3080"),
            "https://grafana.p.example.com:3080"
        );
    }

    #[test]
    fn every_format_as_teleport() {
        let c = config("");
        assert_eq!(
            render(&c, Some(ConfigFormat::Uri)).unwrap(),
            "https://grafana.example.com:3080\n"
        );
        assert_eq!(
            render(&c, Some(ConfigFormat::Curl)).unwrap(),
            "curl --insecure \\\n  --cert /home/a/.tsh/keys/p/alice-app/c/grafana.crt \\\n  \
             --key /home/a/.tsh/keys/p/alice-app/c/grafana.key \\\n  https://grafana.example.com:3080\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&c, Some(ConfigFormat::Json)).unwrap()).unwrap();
        assert_eq!(json["cert"], "/home/a/.tsh/keys/p/alice-app/c/grafana.crt");
        assert_eq!(json["curl"], c.curl);
        assert!(json.get("azure_identity").is_none(), "{json}");
        let text = render(&config("/subscriptions/0/x"), None).unwrap();
        let labels: Vec<&str> = text.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            labels,
            ["Name", "URI", "CA", "Cert", "Key", "Azure Id"],
            "{text}"
        );
        // Paths a shell would split are quoted.
        let odd = curl_command(Path::new("/a b/c.crt"), Path::new("/k"), "https://x", false);
        assert!(
            odd.starts_with("curl \\\n  --cert '/a b/c.crt' \\"),
            "{odd}"
        );
    }

    #[test]
    fn a_hostile_address_reaches_no_terminal_raw() {
        let uri = app_uri("evil\u{1b}]0;title\u{7}.example.com", "evil", "p:3080");
        let cert = PathBuf::from("/c");
        let c = AppConfig {
            name: "evil".into(),
            curl: curl_command(&cert, &cert, &uri, false),
            uri,
            ca: cert.clone(),
            cert: cert.clone(),
            key: cert,
            azure_identity: String::new(),
        };
        for format in [
            None,
            Some(ConfigFormat::Uri),
            Some(ConfigFormat::Curl),
            Some(ConfigFormat::Json),
            Some(ConfigFormat::Yaml),
        ] {
            let out = render(&c, format).unwrap();
            assert!(
                !out.contains('\u{1b}') && !out.contains('\u{7}'),
                "{format:?}: {out}"
            );
        }
    }

    #[test]
    fn one_session_is_chosen_or_named() {
        assert_eq!(only_session(&["a".into()]).unwrap(), "a");
        let none = only_session(&[]).unwrap_err().to_string();
        assert!(none.contains("tsh apps login APP"), "{none}");
        let many = only_session(&["a".into(), "b".into()])
            .unwrap_err()
            .to_string();
        assert!(
            many.contains("(a, b)") && many.contains("tsh apps config APP"),
            "{many}"
        );
    }
}
