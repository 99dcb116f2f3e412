//! tsh: the user's client.

// `println!` and `print!` that end quietly when standard output's reader has
// gone (`| head -1`) instead of panicking: see `api::output`.
macro_rules! println {
    () => { api::output::println(format_args!("")) };
    ($($t:tt)*) => { api::output::println(format_args!($($t)*)) };
}
macro_rules! print {
    ($($t:tt)*) => { api::output::print(format_args!($($t)*)) };
}

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use client::{Credentials, Profile, ProfileStore};

mod appconfig;
mod azure;
mod clusters;
mod db;
mod env;
mod list;
mod teleport_only;

use list::{print_profile, status};

#[derive(Parser)]
#[command(name = "tsh", about = "Teleport client", disable_version_flag = true)]
struct Cli {
    /// Verbose logging to stderr.
    #[arg(long, short = 'd', global = true)]
    debug: bool,
    /// Identity file (from `tctl auth sign`) instead of a profile.
    #[arg(long, short = 'i', global = true)]
    identity: Option<PathBuf>,
    /// Proxy address, host:port (without a port: 443, then 3080).
    #[arg(long, global = true, env = "TELEPORT_PROXY")]
    proxy: Option<String>,
    /// Skip checking the proxy's certificate (test clusters only).
    #[arg(long, global = true)]
    insecure: bool,
    #[command(flatten)]
    _early: client::cli::EarlyFlags,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Log in to a cluster and get a certificate.
    Login {
        /// Teleport user name.
        #[arg(long, env = "TELEPORT_USER")]
        user: Option<String>,
        /// Requested validity: minutes as Teleport takes them (`90`), or a
        /// duration (`90m`, `1h`, `30s`).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<Duration>,
    },
    /// Show the current profile.
    Status {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = client::format::Format::Text)]
        format: client::format::Format,
    },
    /// Delete the profile(s) and their keys.
    Logout,
    /// Applications.
    #[command(subcommand)]
    Apps(AppsCmd),
    /// Run the az CLI through the Azure app session.
    #[command(disable_help_flag = true)]
    Az {
        /// Arguments for az.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Local proxies.
    #[command(subcommand)]
    Proxy(ProxyCmd),
    /// Databases.
    #[command(subcommand)]
    Db(DbCmd),
    /// Print the version.
    Version,
    /// Print the shell commands that set TELEPORT_PROXY and TELEPORT_CLUSTER
    /// for the current profile: `eval $(tsh env)`.
    Env {
        /// Print the commands that remove them instead.
        #[arg(long)]
        unset: bool,
    },
    /// List the clusters of the current login (this build has no trusted
    /// clusters: the root cluster).
    Clusters {
        /// Output format.
        #[arg(long, short = 'f', value_enum, default_value_t = client::format::Format::Text)]
        format: client::format::Format,
    },
}

#[derive(Subcommand)]
enum AppsCmd {
    /// List the applications you may access.
    Ls(list::LsArgs),
    /// Get a certificate for an app (and, for Azure, log the az CLI in).
    Login {
        /// App name.
        app: String,
        /// Azure identity: full resource ID or its name.
        #[arg(long = "azure-identity")]
        azure_identity: Option<String>,
        /// List the Azure identities you may assume with this app, and stop.
        #[arg(long = "list-identities", conflicts_with = "azure_identity")]
        list_identities: bool,
    },
    /// Remove app certificates.
    Logout {
        /// App name (all when absent).
        app: Option<String>,
    },
    /// Print an app session's connection details: URI, CA, certificate and
    /// key paths, an example curl command.
    Config {
        /// App name (needed when logged into several apps).
        app: Option<String>,
        /// Print one detail (uri, ca, cert, key, curl) or all as json or yaml.
        #[arg(long, short = 'f', value_enum)]
        format: Option<appconfig::ConfigFormat>,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// List the databases you may access.
    Ls(list::LsArgs),
    /// Get a certificate for a database.
    Login {
        /// Database name.
        db: String,
        /// Database user (Redis: `default` when absent).
        #[arg(long = "db-user")]
        db_user: Option<String>,
        /// Database name inside the server (Redis: the database number).
        #[arg(long = "db-name")]
        db_name: Option<String>,
    },
    /// Connect to a database with its CLI (redis-cli), logging in if needed.
    Connect {
        /// Database name.
        db: String,
        /// Database user (Redis: `default` when absent).
        #[arg(long = "db-user")]
        db_user: Option<String>,
        /// Database name inside the server (Redis: the database number).
        #[arg(long = "db-name")]
        db_name: Option<String>,
        /// Extra arguments for the database CLI (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Remove database certificates.
    Logout {
        /// Database name (all when absent).
        db: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProxyCmd {
    /// A local authenticated tunnel to a database for any client.
    Db {
        /// Database name.
        db: String,
        /// Open an authenticated tunnel (clients need no certificate).
        #[arg(long)]
        tunnel: bool,
        /// Local port (random when absent).
        #[arg(long, short = 'p')]
        port: Option<u16>,
        /// Database user (Redis: `default` when absent).
        #[arg(long = "db-user")]
        db_user: Option<String>,
        /// Database name inside the server.
        #[arg(long = "db-name")]
        db_name: Option<String>,
    },
    /// A local proxy any Azure client can use (alias: az).
    #[command(alias = "az")]
    Azure {
        /// Local port (random when absent).
        #[arg(long, short = 'p')]
        port: Option<u16>,
        /// unix, command-prompt, powershell or text.
        #[arg(long, short = 'f', default_value = "unix")]
        format: String,
    },
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--version` and the completion scripts stand alone, as in Teleport.
    if let Some(flag) = client::cli::early_flag(&args) {
        print!("{}", client::cli::early_output(flag, Cli::command(), "tsh"));
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return teleport_only::refuse(&e, &args).unwrap_or_else(|| e.exit()),
    };
    init_logging(cli.debug);
    match run(&cli).or_else(|e| relogin_and_retry(&cli, e)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", client::term::error_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn init_logging(debug: bool) {
    let level = if debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(level)
        .with_writer(std::io::stderr)
        // Colour for a terminal only: a log file or pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// As Teleport does, a command refused because the session expired is, on
/// a terminal, run again after logging in again (the password is asked for;
/// the profile's proxy, user and `--insecure` are kept). Elsewhere (scripts,
/// pipes, identity files) the error stands, naming the `tsh login` to run.
fn relogin_and_retry(cli: &Cli, e: anyhow::Error) -> Result<()> {
    let expired = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<client::ClientError>(),
            Some(client::ClientError::SessionExpired { .. })
        )
    });
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let renewable = !matches!(
        cli.cmd,
        Cmd::Login { .. } | Cmd::Logout | Cmd::Status { .. } | Cmd::Version
    );
    if !expired || !interactive || !renewable || cli.identity.is_some() {
        return Err(e);
    }
    eprintln!("{e:#}");
    eprintln!("Logging in again.");
    runtime()?.block_on(login(cli, None, None))?;
    run(cli)
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.cmd {
        Cmd::Version => {
            println!("{}", api::version_line());
            Ok(())
        }
        Cmd::Status { format } => status(cli, *format),
        Cmd::Logout => logout(),
        Cmd::Env { unset } => env::run(cli, *unset),
        Cmd::Clusters { format } => runtime()?.block_on(clusters::run(cli, *format)),
        Cmd::Apps(AppsCmd::Ls(args)) => runtime()?.block_on(list::apps_ls(cli, args)),
        Cmd::Apps(AppsCmd::Login {
            app,
            azure_identity: _,
            list_identities: true,
        }) => runtime()?.block_on(azure::list_identities(cli, app)),
        Cmd::Apps(AppsCmd::Login {
            app,
            azure_identity,
            list_identities: false,
        }) => runtime()?.block_on(azure::apps_login(cli, app, azure_identity.as_deref())),
        Cmd::Apps(AppsCmd::Logout { app }) => azure::apps_logout(cli, app.as_deref()),
        Cmd::Apps(AppsCmd::Config { app, format }) => appconfig::run(cli, app.as_deref(), *format),
        Cmd::Db(DbCmd::Ls(args)) => runtime()?.block_on(list::db_ls(cli, args)),
        Cmd::Db(DbCmd::Login {
            db,
            db_user,
            db_name,
        }) => runtime()?.block_on(db::login(
            cli,
            &db::Route {
                db,
                db_user: db_user.as_deref(),
                db_name: db_name.as_deref(),
            },
        )),
        Cmd::Db(DbCmd::Connect {
            db,
            db_user,
            db_name,
            args,
        }) => {
            let route = db::Route {
                db,
                db_user: db_user.as_deref(),
                db_name: db_name.as_deref(),
            };
            let code = runtime()?.block_on(db::connect(cli, &route, args))?;
            std::process::exit(code);
        }
        Cmd::Db(DbCmd::Logout { db }) => db::logout(cli, db.as_deref()),
        Cmd::Proxy(ProxyCmd::Db {
            db,
            tunnel,
            port,
            db_user,
            db_name,
        }) => runtime()?.block_on(db::proxy(
            cli,
            &db::Route {
                db,
                db_user: db_user.as_deref(),
                db_name: db_name.as_deref(),
            },
            *port,
            *tunnel,
        )),
        Cmd::Az { args } => {
            let code = runtime()?.block_on(azure::az(cli, args))?;
            std::process::exit(code);
        }
        Cmd::Proxy(ProxyCmd::Azure { port, format }) => {
            runtime()?.block_on(azure::proxy_azure(cli, *port, format))
        }
        Cmd::Login { user, ttl } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(login(cli, user.clone(), *ttl))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // One event loop: tsh serves one user, and its local tunnels cost the
    // least CPU per command on a single thread (see ARCHITECTURE.md).
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn read_password(user: &str) -> Result<String> {
    if std::io::stdin().is_terminal() {
        let pw = rpassword::prompt_password(format!("Enter password for Teleport user {user}:"))
            .context("reading the password")?;
        Ok(pw)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_string())
    }
}

/// `--ttl`: a bare number is minutes, as in Teleport; else a duration
/// (`90m`, `1h30m`, `30s`).
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .ok()
            .and_then(|m| m.checked_mul(60))
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} minutes is too long"));
    }
    resources::parse_go_duration(text)
        .map_err(|e| format!("{e}: give minutes (90) or a duration (90m, 1h, 30s)"))
}

async fn login(cli: &Cli, user: Option<String>, ttl: Option<Duration>) -> Result<()> {
    let store = ProfileStore::from_env()?;
    let previous = store.current().ok();
    let proxy = cli
        .proxy
        .clone()
        .or_else(|| previous.as_ref().map(|(p, _)| p.web_proxy_addr.clone()))
        .ok_or_else(|| anyhow!("--proxy must be set: tsh login --proxy=HOST:PORT --user=USER"))?;
    let user = user
        .or_else(|| previous.as_ref().map(|(p, _)| p.user.clone()))
        .or_else(|| std::env::var("USER").ok())
        .ok_or_else(|| anyhow!("--user must be set"))?;
    // Logging in again to the proxy of a profile made with --insecure (after
    // expiry, or to refresh roles) keeps it, as later commands of the
    // profile do; a proxy without a profile (after `tsh logout`) is checked.
    let insecure = cli.insecure || store.profile_for(&proxy).is_some_and(|p| p.insecure);
    // Reach the proxy before asking for a password: an untrusted proxy (or
    // the auth service's port) is refused with what to do, and no password
    // is typed for nothing. Without a port, 443 then 3080 are tried.
    let (addr, _) = client::discover::find_proxy(&proxy, insecure).await?;
    let password = read_password(&user)?;
    let ttl = ttl.unwrap_or(Duration::ZERO);
    let (ping, creds) = client::password_login(&addr, &user, &password, insecure, ttl).await?;
    let profile = Profile {
        web_proxy_addr: addr,
        user: user.clone(),
        cluster: ping.cluster_name.clone(),
        insecure,
    };
    store.save(&profile, &creds)?;
    print_profile(&profile, &creds, true)?;
    if let Some(note) = list::capped_ttl_note(ttl, &creds) {
        eprintln!("{note}");
    }
    Ok(())
}

pub(crate) fn load_active(cli: &Cli) -> Result<(Profile, Credentials)> {
    if let Some(path) = &cli.identity {
        let creds = Credentials::load_identity_file(path)?;
        let id = client::identity_of(&creds)?;
        // `--proxy=host` finds the port as `tsh login` does (443, then 3080).
        let proxy = match &cli.proxy {
            Some(p) => client::discover::resolve_proxy_blocking(p, cli.insecure)?,
            None => String::new(),
        };
        let profile = Profile {
            web_proxy_addr: proxy,
            user: id.username.clone(),
            cluster: id.teleport_cluster.clone(),
            insecure: cli.insecure,
        };
        return Ok((profile, creds));
    }
    let store = ProfileStore::from_env()?;
    Ok(store.current()?)
}

/// The command that gets a fresh certificate for `profile`: `tsh login` with
/// its proxy, user and `--insecure`, or a new identity file.
pub(crate) fn login_command(cli: &Cli, profile: &Profile) -> String {
    if cli.identity.is_some() {
        return format!("tctl auth sign --user={} --out=FILE", profile.user);
    }
    Profile {
        insecure: cli.insecure || profile.insecure,
        ..profile.clone()
    }
    .login_command()
}

/// The active profile, refused with "your session has expired" and how to log
/// in again when its certificate has expired (or expires within `margin`):
/// found here, before any connection, rather than as a TLS alert.
pub(crate) fn load_session(cli: &Cli, margin: Duration) -> Result<(Profile, Credentials)> {
    let (profile, creds) = load_active(cli)?;
    client::check_session(&creds, &login_command(cli, &profile), margin)?;
    Ok((profile, creds))
}

fn logout() -> Result<()> {
    let store = ProfileStore::from_env()?;
    let removed = store.remove(None)?;
    if removed.is_empty() {
        println!("All users logged out.");
    } else {
        for r in removed {
            println!("Logged out {r}.");
        }
    }
    Ok(())
}

pub(crate) fn api_client(cli: &Cli) -> Result<client::ApiClient> {
    let (profile, creds) = load_session(cli, Duration::ZERO)?;
    if profile.web_proxy_addr.is_empty() {
        bail!("--proxy must be set when using an identity file");
    }
    Ok(client::ApiClient::new(
        &profile.web_proxy_addr,
        Some(&creds),
        cli.insecure || profile.insecure,
    )?
    .with_login_hint(login_command(cli, &profile)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ttl_takes_minutes_or_a_duration() {
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90 * 60));
        assert_eq!(parse_ttl("90m").unwrap(), Duration::from_secs(90 * 60));
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_ttl("30s").unwrap(), Duration::from_secs(30));
        assert!(parse_ttl("soon").unwrap_err().contains("90m, 1h, 30s"));
        assert!(parse_ttl("-5m").is_err());
        assert!(parse_ttl(&u64::MAX.to_string()).is_err());
    }
}
