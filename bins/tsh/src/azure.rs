//! `tsh apps login`, `tsh az`, `tsh proxy azure`.

use std::process::Stdio;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use client::{Credentials, Profile, ProfileStore};

use crate::{load_active, load_session, login_command, Cli};

struct Session {
    profile: Profile,
    creds: Credentials,
    store: ProfileStore,
}

/// The active profile; with `margin`, refused when its session has expired
/// (or expires within `margin`). Logging out needs no live session.
fn session(cli: &Cli, margin: Option<std::time::Duration>) -> Result<Session> {
    let (profile, creds) = match margin {
        Some(m) => load_session(cli, m)?,
        None => load_active(cli)?,
    };
    if profile.web_proxy_addr.is_empty() {
        bail!("--proxy must be set when using an identity file");
    }
    Ok(Session {
        profile,
        creds,
        store: ProfileStore::from_env()?,
    })
}

fn az_binary() -> String {
    std::env::var("TELEPORT_AZ_CLI").unwrap_or_else(|_| "az".into())
}

/// Start the local proxy for an Azure app session.
async fn start_local_proxy(
    s: &Session,
    app: &str,
    app_creds: &Credentials,
    insecure: bool,
    port: u16,
) -> Result<msi_proxy::MsiProxy> {
    let id = client::identity_of(app_creds)?;
    let route = id
        .route_to_app
        .clone()
        .ok_or_else(|| anyhow!("the certificate of {app} is not an app certificate"))?;
    let paths = s.store.app_paths(&s.profile, app)?;
    let upstream = msi_proxy::AppUpstream::new(&s.profile.web_proxy_addr, app_creds, insecure)?;
    let cfg = msi_proxy::MsiProxyConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        identity: route.azure_identity.clone(),
        tenant_id: None,
        signing_key_pem: app_creds.key_pem.clone(),
        token_expiry: id.expires,
        local_ca_path: paths.local_ca.clone(),
        secret: None,
        upstream_proxy: msi_proxy::upstream_proxy_from_env(|k| std::env::var(k).ok()),
    };
    Ok(msi_proxy::MsiProxy::start(cfg, Arc::new(upstream)).await?)
}

/// Run az with the proxy's environment; returns az's exit code.
async fn run_az(
    proxy: &msi_proxy::MsiProxy,
    config_dir: &std::path::Path,
    args: &[String],
    capture: bool,
) -> Result<(i32, String)> {
    std::fs::create_dir_all(config_dir)
        .with_context(|| format!("creating {}", config_dir.display()))?;
    let mut cmd = tokio::process::Command::new(az_binary());
    cmd.args(args)
        .env("AZURE_CONFIG_DIR", config_dir)
        .env("AZURE_CORE_COLLECT_TELEMETRY", "0");
    for (k, v) in proxy.env() {
        cmd.env(k, v);
    }
    if capture {
        cmd.stdout(Stdio::piped());
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}: is the Azure CLI installed?", az_binary()))?;
    let out = child.wait_with_output().await?;
    Ok((
        out.status.code().unwrap_or(1),
        String::from_utf8_lossy(&out.stdout).to_string(),
    ))
}

/// An app session needs a few seconds of the user's certificate left: one
/// asked for at its last second would expire while az logs in (az then says
/// only `ERROR: None, None`).
const APP_LOGIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The app `app` as the cluster lists it for the user, with an API client.
async fn find_app(
    cli: &Cli,
    s: &Session,
    app: &str,
) -> Result<(client::ApiClient, resources::App)> {
    let insecure = cli.insecure || s.profile.insecure;
    let api = client::ApiClient::new(&s.profile.web_proxy_addr, Some(&s.creds), insecure)?
        .with_login_hint(login_command(cli, &s.profile));
    let apps: Vec<resources::App> = api.get("/v1/auth/apps").await?;
    let found = apps
        .into_iter()
        .find(|a| a.metadata.name == app)
        .ok_or_else(|| anyhow!("app {app:?} not found: tsh apps ls lists the apps you may use"))?;
    Ok((api, found))
}

/// `tsh apps login APP --list-identities`: the Azure identities the user's
/// certificate lets them assume, without asking for an app session. Read from
/// the certificate alone (no connection), so it works whatever the state of
/// the app's agent; the cluster checks the choice again at `tsh apps login`.
pub async fn list_identities(cli: &Cli, app: &str) -> Result<()> {
    let s = session(cli, Some(std::time::Duration::ZERO))?;
    let user = client::identity_of(&s.creds)?;
    print!("{}", client::apps::identities_table(&user.azure_identities));
    if !user.azure_identities.is_empty() {
        println!(
            "\nLog in with one: tsh apps login {} --azure-identity <name>",
            client::term::cell(app)
        );
    }
    Ok(())
}

pub async fn apps_login(cli: &Cli, app: &str, flag: Option<&str>) -> Result<()> {
    let s = session(cli, Some(APP_LOGIN_MARGIN))?;
    let (api, found) = find_app(cli, &s, app).await?;
    let found = &found;
    let insecure = cli.insecure || s.profile.insecure;
    let user = client::identity_of(&s.creds)?;
    let azure_identity = if found.is_azure_cloud() {
        client::apps::resolve_azure_identity(&user.azure_identities, flag)?
    } else {
        String::new()
    };
    let key = pki::generate_key()?;
    let resp: api::certs::AppCertResponse = match api
        .post(
            "/v1/auth/certs/app",
            &api::certs::AppCertRequest {
                app: app.to_string(),
                azure_identity: azure_identity.clone(),
                public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            },
        )
        .await
    {
        Ok(r) => r,
        // The certificate lists the identity but the cluster refuses it: the
        // roles changed since login.
        Err(client::ClientError::Http {
            status: 403,
            message,
        }) if found.is_azure_cloud() => bail!(client::apps::identity_no_longer_allowed(
            &azure_identity,
            &message,
            &user.azure_identities,
            &login_command(cli, &s.profile),
        )),
        Err(e) => return Err(e.into()),
    };
    let cert = resp.tls_cert;
    let paths = s
        .store
        .save_app(&s.profile, app, &key.private_key_pem, &cert)?;
    if !found.is_azure_cloud() {
        println!("Logged into app {app:?}.");
        return Ok(());
    }
    let app_creds = Credentials {
        key_pem: key.private_key_pem,
        cert_pem: cert,
        ca_pems: s.creds.ca_pems.clone(),
    };
    let proxy = start_local_proxy(&s, app, &app_creds, insecure, 0).await?;
    let args: Vec<String> = ["login", "--identity", "--resource-id", &azure_identity]
        .iter()
        .map(|x| x.to_string())
        .collect();
    let (code, out) = run_az(&proxy, &paths.azure_config_dir, &args, true).await?;
    proxy.shutdown().await;
    print!("{out}");
    if code != 0 {
        // The session may have run out while az logged in: say so rather
        // than leave az's own message alone.
        client::check_session(
            &app_creds,
            &login_command(cli, &s.profile),
            std::time::Duration::ZERO,
        )?;
        bail!("az login failed (exit code {code})");
    }
    println!("Logged into Azure app {app:?}.");
    println!("Your identity: {}", client::term::cell(&azure_identity));
    println!("Example Azure CLI command: tsh az vm list");
    Ok(())
}

pub fn apps_logout(cli: &Cli, app: Option<&str>) -> Result<()> {
    let s = session(cli, None)?;
    let names: Vec<String> = match app {
        Some(a) => vec![a.to_string()],
        None => s
            .store
            .azure_sessions(&s.profile, &s.creds.ca_pems)
            .into_iter()
            .map(|(n, _)| n)
            .collect(),
    };
    for n in names {
        let paths = s.store.app_paths(&s.profile, &n)?;
        client::apps::remove_app(&paths);
        let _ = std::fs::remove_dir_all(&paths.azure_config_dir);
        println!("Logged out of app {n:?}.");
    }
    Ok(())
}

fn azure_session(s: &Session) -> Result<(String, Credentials)> {
    s.store
        .azure_sessions(&s.profile, &s.creds.ca_pems)
        .into_iter()
        .next()
        .ok_or_else(|| {
            anyhow!("not logged into an Azure app: run tsh apps login <app> --azure-identity <identity>")
        })
}

pub async fn az(cli: &Cli, args: &[String]) -> Result<i32> {
    let s = session(cli, Some(std::time::Duration::ZERO))?;
    let insecure = cli.insecure || s.profile.insecure;
    let (app, creds) = azure_session(&s)?;
    let proxy = start_local_proxy(&s, &app, &creds, insecure, 0).await?;
    let paths = s.store.app_paths(&s.profile, &app)?;
    let (code, _) = run_az(&proxy, &paths.azure_config_dir, args, false).await?;
    proxy.shutdown().await;
    Ok(code)
}

pub async fn proxy_azure(cli: &Cli, port: Option<u16>, format: &str) -> Result<()> {
    if !matches!(format, "unix" | "command-prompt" | "powershell" | "text") {
        bail!("unsupported format {format:?}: use unix, command-prompt, powershell or text");
    }
    let s = session(cli, Some(std::time::Duration::ZERO))?;
    let insecure = cli.insecure || s.profile.insecure;
    let (app, creds) = azure_session(&s)?;
    let proxy = start_local_proxy(&s, &app, &creds, insecure, port.unwrap_or(0)).await?;
    let paths = s.store.app_paths(&s.profile, &app)?;
    let mut env = vec![(
        "AZURE_CONFIG_DIR".to_string(),
        paths.azure_config_dir.display().to_string(),
    )];
    env.extend(proxy.env());
    println!("Started Azure proxy on http://{}.", proxy.addr());
    println!(
        "To avoid port randomization, you can choose the listening port using the --port flag.\n"
    );
    println!("Use the following credentials and HTTPS proxy setting to connect to the proxy.");
    println!(
        "The secret in HTTPS_PROXY and IDENTITY_HEADER gives your Azure identity: keep it private.\n"
    );
    print!("{}", msi_proxy::format_exports(&env, format)?);
    println!();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    proxy.shutdown().await;
    Ok(())
}
