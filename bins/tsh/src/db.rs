//! `tsh db login | connect | logout`, `tsh proxy db`.

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use client::{Credentials, Profile, ProfileStore};

use crate::{load_active, load_session, login_command, Cli};

struct Session {
    profile: Profile,
    creds: Credentials,
    store: ProfileStore,
    insecure: bool,
    /// The command that logs in again, for an expired session.
    login: String,
}

/// The active profile; when `live`, refused if its session has expired
/// (logging out needs no live session).
fn session(cli: &Cli, live: bool) -> Result<Session> {
    let (profile, creds) = if live {
        load_session(cli, std::time::Duration::ZERO)?
    } else {
        load_active(cli)?
    };
    let login = login_command(cli, &profile);
    if profile.web_proxy_addr.is_empty() {
        bail!("--proxy must be set when using an identity file");
    }
    let insecure = cli.insecure || profile.insecure;
    Ok(Session {
        profile,
        creds,
        store: ProfileStore::from_env()?,
        insecure,
        login,
    })
}

/// What `tsh db login` asks for.
pub struct Route<'a> {
    pub db: &'a str,
    pub db_user: Option<&'a str>,
    pub db_name: Option<&'a str>,
}

/// Get a database certificate and store it.
async fn login_inner(s: &Session, route: &Route<'_>) -> Result<(Credentials, resources::Database)> {
    let api = client::ApiClient::new(&s.profile.web_proxy_addr, Some(&s.creds), s.insecure)?
        .with_login_hint(s.login.clone());
    let key = pki::generate_key()?;
    let resp: api::certs::DbCertResponse = api
        .post(
            "/v1/auth/certs/db",
            &api::certs::DbCertRequest {
                database: route.db.to_string(),
                db_user: route.db_user.unwrap_or_default().to_string(),
                db_name: route.db_name.unwrap_or_default().to_string(),
                public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
            },
        )
        .await?;
    let (cert, db) = (resp.tls_cert, resp.database);
    s.store
        .save_db(&s.profile, route.db, &key.private_key_pem, &cert)?;
    Ok((
        Credentials {
            key_pem: key.private_key_pem,
            cert_pem: cert,
            ca_pems: s.creds.ca_pems.clone(),
        },
        db,
    ))
}

pub async fn login(cli: &Cli, route: &Route<'_>) -> Result<()> {
    let s = session(cli, true)?;
    let (_, db) = login_inner(&s, route).await?;
    // The name as the cluster sent it may reach the terminal: escaped.
    let name = client::term::cell(&db.metadata.name);
    println!("Connection information for database \"{name}\" has been saved.\n");
    println!("You can now connect to it using:\n\n  $ tsh db connect {name}\n");
    println!(
        "or start a local tunnel any Redis client can use:\n\n  $ tsh proxy db --tunnel --port 6379 {name}"
    );
    Ok(())
}

/// The stored session for the route, or a new one.
async fn session_creds(s: &Session, route: &Route<'_>) -> Result<Credentials> {
    if let Some(c) = s.store.load_db(&s.profile, route.db, &s.creds.ca_pems) {
        let id = client::identity_of(&c)?;
        let r = id.route_to_database.unwrap_or_default();
        let user_ok = route.db_user.is_none_or(|u| u == r.username);
        let name_ok = route.db_name.is_none_or(|n| n == r.database);
        if user_ok && name_ok && id.username == s.profile.user {
            return Ok(c);
        }
    }
    Ok(login_inner(s, route).await?.0)
}

fn redis_cli() -> String {
    std::env::var("TELEPORT_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// `tsh db connect`: a local tunnel and `redis-cli` on it; returns
/// redis-cli's exit code.
pub async fn connect(cli: &Cli, route: &Route<'_>, extra: &[String]) -> Result<i32> {
    let s = session(cli, true)?;
    let creds = session_creds(&s, route).await?;
    let dialer = client::db::DbDialer::new(&s.profile.web_proxy_addr, &creds, s.insecure)?;
    let tunnel = client::db::LocalTunnel::start(dialer, 0).await?;
    let addr = tunnel.addr();
    let mut cmd = tokio::process::Command::new(redis_cli());
    cmd.arg("-h")
        .arg(addr.ip().to_string())
        .arg("-p")
        .arg(addr.port().to_string());
    if let Some(n) = route.db_name.filter(|n| !n.is_empty()) {
        cmd.arg("-n").arg(n);
    }
    cmd.args(extra);
    let status = cmd
        .status()
        .await
        .with_context(|| format!("cannot run {}: is redis-cli installed?", redis_cli()))?;
    drop(tunnel);
    Ok(status.code().unwrap_or(1))
}

pub fn logout(cli: &Cli, db: Option<&str>) -> Result<()> {
    let s = session(cli, false)?;
    if let Some(d) = db {
        if !s.store.remove_db(&s.profile, d) {
            bail!("not logged into database {d:?}");
        }
        println!("Logged out of database {d}");
        return Ok(());
    }
    for n in &s.store.db_sessions(&s.profile) {
        s.store.remove_db(&s.profile, n);
        println!("Logged out of database {n}");
    }
    Ok(())
}

/// `tsh proxy db --tunnel`.
pub async fn proxy(cli: &Cli, route: &Route<'_>, port: Option<u16>, tunnel: bool) -> Result<()> {
    if !tunnel {
        bail!(
            "Redis clients connect through an authenticated local tunnel: run tsh proxy db --tunnel [--port N] {}",
            route.db
        );
    }
    let s = session(cli, true)?;
    let creds = session_creds(&s, route).await?;
    let id = client::identity_of(&creds)?;
    let dialer = client::db::DbDialer::new(&s.profile.web_proxy_addr, &creds, s.insecure)?;
    // Fail now, not at the first client, when the proxy refuses the certificate.
    dialer
        .dial()
        .await
        .map_err(|e| anyhow!("cannot reach the proxy: {e}"))?;
    let local = client::db::LocalTunnel::start(dialer, port.unwrap_or(0)).await?;
    let addr = local.addr();
    // Whoever reads this may go away (a script reading the first line): the
    // tunnel keeps serving, so write errors are ignored rather than fatal.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "Started authenticated tunnel for the Redis database \"{}\" in cluster \"{}\" on {}.",
        route.db, s.profile.cluster, addr
    );
    let _ = writeln!(
        out,
        "\nUse the following command to connect to the database:\n  redis-cli -h {} -p {}",
        addr.ip(),
        addr.port()
    );
    let _ = writeln!(out, "\nThe tunnel is valid until {}.", id.expires);
    let _ = out.flush();
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}
