//! tctl: the administrator's client.

// `println!` and `print!` that end quietly when standard output's reader has
// gone (`| head -1`) instead of panicking: see `api::output`.
macro_rules! println {
    () => { api::output::println(format_args!("")) };
    ($($t:tt)*) => { api::output::println(format_args!($($t)*)) };
}
macro_rules! print {
    ($($t:tt)*) => { api::output::print(format_args!($($t)*)) };
}

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use client::format::Format;
use client::term::cell;
use client::{ApiClient, Credentials, Profile, ProfileStore};

mod connect;
mod edit;
mod invite;
mod servers;

use servers::ServerKind;

#[derive(Parser)]
#[command(
    name = "tctl",
    about = "Teleport cluster administration",
    disable_version_flag = true
)]
struct Cli {
    /// Verbose logging to stderr.
    #[arg(long, short = 'd', global = true)]
    debug: bool,
    /// teleport.yaml of the auth host (default /etc/teleport.yaml when present).
    #[arg(long, short = 'c', global = true, env = "TELEPORT_CONFIG_FILE")]
    config: Option<PathBuf>,
    /// Identity file (from `tctl auth sign`).
    #[arg(long, short = 'i', global = true)]
    identity: Option<PathBuf>,
    /// Address of the auth service or proxy, host:port.
    #[arg(long, global = true, env = "TELEPORT_AUTH_SERVER")]
    auth_server: Option<String>,
    /// Skip checking the server's certificate.
    #[arg(long, global = true)]
    insecure: bool,
    #[command(flatten)]
    _early: client::cli::EarlyFlags,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cluster name, version, CAs and their rotation state, CA pin.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCmd),
    /// Manage provision tokens.
    #[command(subcommand)]
    Tokens(TokensCmd),
    /// Create resources from a YAML/JSON file or standard input.
    Create {
        /// Overwrite existing resources.
        #[arg(long, short = 'f')]
        force: bool,
        /// File (`-` or none for standard input).
        file: Option<String>,
    },
    /// Show resources: KIND or KIND/NAME, or `all`.
    Get {
        /// e.g. `role`, `roles`, `role/admin`, `users`, `tokens`,
        /// `app_server`, `db_server`, `all`.
        what: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Yaml)]
        format: Format,
    },
    /// Edit a resource (KIND/NAME) in $VISUAL or $EDITOR and save it.
    Edit {
        /// e.g. `role/dev`.
        what: String,
    },
    /// Delete a resource: KIND/NAME.
    Rm {
        /// e.g. `role/dev`.
        what: String,
    },
    /// Certificate operations.
    #[command(subcommand)]
    Auth(AuthCmd),
    /// Audit events.
    #[command(subcommand)]
    Events(EventsCmd),
    /// Applications registered by the app agents.
    #[command(subcommand)]
    Apps(ServersCmd),
    /// Databases registered by the database agents.
    #[command(subcommand)]
    Db(ServersCmd),
    /// Agents connected to the proxies through reverse tunnels.
    #[command(subcommand)]
    Inventory(InventoryCmd),
    /// Print the version.
    Version,
    /// Teleport's SSH nodes: not in this build.
    #[command(hide = true)]
    Nodes {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
}

#[derive(Subcommand)]
enum ServersCmd {
    /// List the registered servers, one row per agent.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum UsersCmd {
    /// Create a user; prints an invite link to set the password.
    Add(UserAdd),
    /// Change a user's roles or traits.
    Update(UserUpdate),
    /// List users.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Delete a user.
    Rm {
        /// User name.
        name: String,
    },
}

#[derive(Args)]
struct UserAdd {
    /// User name.
    name: String,
    /// Roles, comma separated.
    #[arg(long)]
    roles: String,
    /// Allowed logins.
    #[arg(long)]
    logins: Option<String>,
    /// Allowed database users.
    #[arg(long = "db-users")]
    db_users: Option<String>,
    /// Allowed database names.
    #[arg(long = "db-names")]
    db_names: Option<String>,
    /// Allowed Azure identities (full resource IDs).
    #[arg(long = "azure-identities")]
    azure_identities: Option<String>,
}

#[derive(Args)]
struct UserUpdate {
    /// User name.
    name: String,
    /// New roles, comma separated.
    #[arg(long = "set-roles")]
    set_roles: Option<String>,
    /// New logins.
    #[arg(long = "set-logins")]
    set_logins: Option<String>,
    /// New database users.
    #[arg(long = "set-db-users")]
    set_db_users: Option<String>,
    /// New database names.
    #[arg(long = "set-db-names")]
    set_db_names: Option<String>,
    /// New Azure identities.
    #[arg(long = "set-azure-identities")]
    set_azure_identities: Option<String>,
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Create a token.
    Add {
        /// Roles the token grants: app, db, node, ... (comma separated).
        #[arg(long = "type")]
        kind: String,
        /// Validity, Go duration (default 30m).
        #[arg(long, default_value = "30m")]
        ttl: String,
        /// Use this value instead of a random one.
        #[arg(long)]
        value: Option<String>,
        /// text (the token alone), json or yaml; without it a message with
        /// the command that starts the agent.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// List tokens.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Delete a token.
    Rm {
        /// The token.
        token: String,
    },
}

#[derive(Subcommand)]
enum AuthCmd {
    /// Write an identity file for a user (automation, CI).
    Sign {
        /// User name.
        #[arg(long)]
        user: String,
        /// Output file.
        #[arg(long, short = 'o')]
        out: PathBuf,
        /// Validity, Go duration.
        #[arg(long, default_value = "12h")]
        ttl: String,
        /// Only `file` is supported.
        #[arg(long, default_value = "file")]
        format: String,
        /// Overwrite an existing file.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Subcommand)]
enum InventoryCmd {
    /// List connected agents.
    Ls {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum EventsCmd {
    /// List audit events.
    Ls {
        /// Only these event types (comma separated), e.g. user.login.
        #[arg(long = "type")]
        kind: Option<String>,
        /// How far back, Go duration.
        #[arg(long, default_value = "24h")]
        since: String,
        /// Most events to show.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

fn main() -> ExitCode {
    // `tctl --version` as `tctl version` (clap's own flag would print only
    // the number), and the completion scripts, stand alone as in Teleport.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(flag) = client::cli::early_flag(&args) {
        let cmd = <Cli as clap::CommandFactory>::command();
        print!("{}", client::cli::early_output(flag, cmd, "tctl"));
        return ExitCode::SUCCESS;
    }
    let cli = Cli::parse_from(&args);
    let level = if cli.debug { "debug" } else { "warn" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(level)
        .with_writer(std::io::stderr)
        // Colour for a terminal only: a log file or pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if matches!(cli.cmd, Cmd::Nodes { .. }) {
        eprintln!(
            "{}",
            client::term::error_line(
                "tctl nodes: this build has no SSH service, so no nodes; the registered apps and databases are listed by `tctl apps ls` and `tctl db ls`"
            )
        );
        return ExitCode::FAILURE;
    }
    if matches!(cli.cmd, Cmd::Version) {
        println!("{}", api::version_line());
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}", client::term::error_line(&e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", client::term::error_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

const DEFAULT_CONFIG: &str = "/etc/teleport.yaml";

/// Find who we are and where the cluster is.
fn connect(cli: &Cli) -> Result<ApiClient> {
    if let Some(path) = &cli.identity {
        let creds = Credentials::load_identity_file(path)?;
        let addr = match &cli.auth_server {
            Some(a) => a.clone(),
            None => ProfileStore::from_env()?
                .current()
                .map(|(p, _)| p.web_proxy_addr)
                .map_err(|_| anyhow!("--auth-server must be set when using an identity file"))?,
        };
        let renew = connect::check_identity_file(path, &creds)?;
        return Ok(
            connect::identity_file_client(&addr, &creds, cli.insecure)?.with_login_hint(renew)
        );
    }
    let config_path = cli.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.exists().then_some(p)
    });
    if let Some(path) = config_path {
        let cfg = config::load(&path)?;
        if cfg.auth_service.enabled {
            let id_path = cfg.data_dir().join(ADMIN_IDENTITY);
            let creds = connect::load_admin_identity(&id_path, &path)?;
            let addr = match &cli.auth_server {
                Some(a) => a.clone(),
                None => local_addr(cfg.auth_listen_addr()?),
            };
            return Ok(ApiClient::new(&addr, Some(&creds), cli.insecure)?);
        }
    }
    let (profile, creds) = ProfileStore::from_env()?.current().map_err(|_| {
        anyhow!(
            "not logged in: run tsh login, use an identity file (-i), or run tctl on the auth host"
        )
    })?;
    let login = Profile {
        insecure: cli.insecure || profile.insecure,
        ..profile.clone()
    }
    .login_command();
    client::check_session(&creds, &login, Duration::ZERO)?;
    let addr = cli.auth_server.clone().unwrap_or(profile.web_proxy_addr);
    Ok(
        ApiClient::new(&addr, Some(&creds), cli.insecure || profile.insecure)?
            .with_login_hint(login),
    )
}

/// Name of the admin identity file in the data directory (shared with teleport).
const ADMIN_IDENTITY: &str = "admin-identity.pem";

fn local_addr(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    }
}

fn parse_ttl(text: &str) -> Result<Duration> {
    resources::parse_go_duration(text).map_err(|e| anyhow!("bad duration {text:?}: {e}"))
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

fn check_azure_identities(ids: &[String]) -> Result<()> {
    for id in ids {
        if id == "*" {
            bail!("Azure identity cannot be a wildcard.");
        }
        if !resources::is_valid_azure_identity(id) {
            bail!(
                "Azure identity {id:?} has invalid format: expected /subscriptions/<subscription>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"
            );
        }
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    let api = connect(&cli)?;
    match cli.cmd {
        Cmd::Version | Cmd::Nodes { .. } => Ok(()),
        Cmd::Status { format } => {
            let s = api.status().await?;
            match client::format::document(&s, format)? {
                Some(doc) => print!("{doc}"),
                None => print!("{}", status_text(&s)),
            }
            Ok(())
        }
        Cmd::Apps(ServersCmd::Ls { format }) => servers_ls(&api, ServerKind::App, format).await,
        Cmd::Db(ServersCmd::Ls { format }) => servers_ls(&api, ServerKind::Db, format).await,
        Cmd::Users(cmd) => users(&api, cmd).await,
        Cmd::Tokens(cmd) => tokens(&api, cmd).await,
        Cmd::Create { force, file } => {
            let text = match file.as_deref() {
                None | Some("-") => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading standard input")?;
                    s
                }
                Some(path) => {
                    std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?
                }
            };
            // Parse locally first: errors name the document and line.
            resources::parse_resources(&text)?;
            for r in api.upsert_resources(&text, force).await? {
                let kind = r["kind"].as_str().unwrap_or("resource");
                let kind = if kind == "token" {
                    "provision_token"
                } else {
                    kind
                };
                println!(
                    "{} {:?} has been {}",
                    cell(kind),
                    r["name"].as_str().unwrap_or(""),
                    cell(r["action"].as_str().unwrap_or("saved"))
                );
            }
            Ok(())
        }
        Cmd::Get { what, format } => {
            let items = get_items(&api, &what).await?;
            print_resources(&items, format)
        }
        Cmd::Edit { what } => {
            let (kind, name) = resources::parse_kind_ref(&what)?;
            let name =
                name.ok_or_else(|| anyhow!("give the resource as KIND/NAME, e.g. role/dev"))?;
            println!("{}", cell(&edit::edit(&api, kind, &name).await?));
            Ok(())
        }
        Cmd::Rm { what } => {
            let (kind, name) = resources::parse_kind_ref(&what)?;
            let name =
                name.ok_or_else(|| anyhow!("give the resource as KIND/NAME, e.g. role/dev"))?;
            api.delete_resource(kind, &name).await?;
            println!("{kind} {name:?} has been deleted");
            Ok(())
        }
        Cmd::Auth(AuthCmd::Sign {
            user,
            out,
            ttl,
            format,
            overwrite,
        }) => {
            if format != "file" {
                bail!("unsupported identity format {format:?}: only \"file\" is supported");
            }
            if out.exists() && !overwrite {
                bail!(
                    "output file {} exists: remove it or pass --overwrite",
                    out.display()
                );
            }
            let key = pki::generate_key()?;
            let certs = api
                .sign_user(&user, &key.public_key_der, parse_ttl(&ttl)?)
                .await?;
            let creds = Credentials {
                key_pem: key.private_key_pem,
                cert_pem: certs.tls_cert,
                ca_pems: certs.host_ca_certs,
            };
            client::profile::write_private(&out, creds.to_identity_file().as_bytes())?;
            println!("\nThe credentials have been written to {}", out.display());
            Ok(())
        }
        Cmd::Inventory(InventoryCmd::Ls { format }) => {
            let list: Vec<serde_json::Value> = api.get("/v1/auth/inventory").await?;
            if format != Format::Text {
                print_resources(&list, format)?;
            } else {
                println!("{:<38} {:<24} Last Seen", "Server ID", "Proxy");
                println!("{:<38} {:<24} ---------", "---------", "-----");
                for e in &list {
                    println!(
                        "{:<38} {:<24} {}",
                        cell(e["server_id"].as_str().unwrap_or("")),
                        cell(e["proxy"].as_str().unwrap_or("")),
                        cell(e["last_seen"].as_str().unwrap_or(""))
                    );
                }
            }
            Ok(())
        }
        Cmd::Events(EventsCmd::Ls {
            kind,
            since,
            limit,
            format,
        }) => {
            let from = time::OffsetDateTime::now_utc() - parse_ttl(&since)?;
            let q = api::EventsQuery {
                from: Some(from.format(&time::format_description::well_known::Rfc3339)?),
                to: None,
                types: kind,
                limit: Some(limit),
            };
            let events = api.events(&q).await?;
            if format != Format::Text {
                print_resources(&events, format)?;
            } else {
                println!(
                    "{:<32} {:<22} {:<8} {:<16} Details",
                    "Time", "Event", "Code", "User"
                );
                for e in &events {
                    println!(
                        "{:<32} {:<22} {:<8} {:<16} {}",
                        cell(e["time"].as_str().unwrap_or("")),
                        cell(e["event"].as_str().unwrap_or("")),
                        cell(e["code"].as_str().unwrap_or("")),
                        cell(e["user"].as_str().unwrap_or("")),
                        cell(
                            e.get("name")
                                .or_else(|| e.get("error"))
                                .and_then(|v| v.as_str())
                                .unwrap_or("")
                        )
                    );
                }
            }
            Ok(())
        }
    }
}

/// `tctl status` as text: the cluster, each CA with its rotation state and
/// pin, and the host CA pin (the line agents' `ca_pin` takes).
fn status_text(s: &api::StatusResponse) -> String {
    let mut out = String::new();
    out.push_str(&format!("Cluster      {}\n", cell(&s.cluster_name)));
    out.push_str(&format!("Version      {}\n", cell(&s.version)));
    for ca in &s.cas {
        // CAs are never rotated in this build.
        let label = format!("{} CA", capitalized(&ca.kind));
        out.push_str(&format!("{:<12} never updated\n", cell(&label)));
    }
    for ca in &s.cas {
        let label = format!("{} CA pin", ca.kind);
        out.push_str(&format!("{:<12} {}\n", cell(&label), cell(&ca.pin)));
    }
    out.push_str(&format!("CA pin       {}\n", cell(&s.ca_pin)));
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `tctl get WHAT`: a stored kind (or KIND/NAME), the registered servers
/// (`app_server`, `db_server`), or `all` (every kind `tctl create` takes,
/// with the cluster name and CAs, as a backup would).
async fn get_items(api: &ApiClient, what: &str) -> Result<Vec<serde_json::Value>> {
    let (kind_text, name) = match what.trim().split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (what.trim(), None),
    };
    if let Some(kind) = ServerKind::from_get_kind(kind_text) {
        let list = servers::list(api, kind).await?;
        let mut items = servers::as_resources(kind, &list)?;
        if let Some(n) = name {
            items.retain(|i| i["metadata"]["name"].as_str() == Some(n));
            if items.is_empty() {
                bail!("{kind_text} {n:?} is not found");
            }
        }
        return Ok(items);
    }
    if kind_text.eq_ignore_ascii_case("all") {
        if name.is_some() {
            bail!("`tctl get all` takes no name");
        }
        let mut items = Vec::new();
        for kind in [
            "cluster_name",
            "cert_authority",
            "role",
            "user",
            "token",
            "app",
            "db",
        ] {
            items.extend(api.get_resources(kind, None).await?);
        }
        return Ok(items);
    }
    let (kind, name) = resources::parse_kind_ref(what)?;
    Ok(api.get_resources(kind, name.as_deref()).await?)
}

async fn servers_ls(api: &ApiClient, kind: ServerKind, format: Format) -> Result<()> {
    let list = servers::list(api, kind).await?;
    match format {
        Format::Text => print!("{}", servers::text(kind, &list)),
        _ => print_resources(&servers::as_resources(kind, &list)?, format)?,
    }
    Ok(())
}

fn print_resources(items: &[serde_json::Value], format: Format) -> Result<()> {
    print!("{}", client::format::resources(items, format)?);
    Ok(())
}

async fn users(api: &ApiClient, cmd: UsersCmd) -> Result<()> {
    match cmd {
        UsersCmd::Add(a) => {
            let roles = split_list(&a.roles);
            if roles.is_empty() {
                bail!("--roles must name at least one role");
            }
            let mut traits: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (key, val) in [
                ("logins", &a.logins),
                ("db_users", &a.db_users),
                ("db_names", &a.db_names),
                ("azure_identities", &a.azure_identities),
            ] {
                if let Some(v) = val {
                    traits.insert(key.to_string(), split_list(v));
                }
            }
            if let Some(ids) = traits.get("azure_identities") {
                check_azure_identities(ids)?;
            }
            let user = new_user(&a.name, roles, traits)?;
            let invite = api.create_user(&user).await?;
            let host = invite
                .invite_url
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            println!(
                "User {:?} has been created but requires a password. Share this URL with the user to complete user setup, link is valid for {}:\n{}\n\nNOTE: Make sure {} points at a Teleport proxy which users can access.",
                a.name,
                go_hours(invite.ttl_seconds),
                cell(&invite.invite_url),
                cell(&host)
            );
            Ok(())
        }
        UsersCmd::Update(u) => {
            let mut user = api.get_user(&u.name).await?;
            let mut changes = Vec::new();
            if let Some(r) = &u.set_roles {
                let roles = split_list(r);
                changes.push(format!("New roles: {}", roles.join(",")));
                user.spec.roles = roles;
            }
            for (key, label, val) in [
                ("logins", "New logins", &u.set_logins),
                ("db_users", "New database users", &u.set_db_users),
                ("db_names", "New database names", &u.set_db_names),
                (
                    "azure_identities",
                    "New Azure identities",
                    &u.set_azure_identities,
                ),
            ] {
                if let Some(v) = val {
                    let list = split_list(v);
                    if key == "azure_identities" {
                        check_azure_identities(&list)?;
                    }
                    changes.push(format!("{label}: {}", list.join(",")));
                    user.spec.traits.insert(key.to_string(), list);
                }
            }
            if changes.is_empty() {
                bail!("Nothing to update. Please provide at least one --set flag.");
            }
            api.update_user(&user).await?;
            println!("User {} has been updated:", u.name);
            for c in changes {
                println!("\t{c}");
            }
            Ok(())
        }
        UsersCmd::Ls { format } => {
            let users = api.get_resources("user", None).await?;
            if format == Format::Text {
                println!("{:<24} Roles", "User");
                println!("{:<24} -----", "----");
                for u in &users {
                    let roles: Vec<&str> = u["spec"]["roles"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
                        .unwrap_or_default();
                    println!(
                        "{:<24} {}",
                        cell(u["metadata"]["name"].as_str().unwrap_or("")),
                        cell(&roles.join(","))
                    );
                }
                Ok(())
            } else {
                print_resources(&users, format)
            }
        }
        UsersCmd::Rm { name } => {
            api.delete_resource("user", &name).await?;
            println!("User {name:?} has been deleted");
            Ok(())
        }
    }
}

fn go_hours(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else {
        format!("{}m", secs / 60)
    }
}

fn new_user(
    name: &str,
    roles: Vec<String>,
    traits: BTreeMap<String, Vec<String>>,
) -> Result<resources::User> {
    Ok(serde_json::from_value(serde_json::json!({
        "kind": "user", "version": "v2",
        "metadata": {"name": name},
        "spec": {"roles": roles, "traits": traits},
    }))?)
}

/// The address agents join through: the first proxy the cluster knows, or
/// the address tctl reached.
async fn proxy_addr(api: &ApiClient) -> String {
    let proxies: Vec<api::inventory::ProxyEntry> =
        api.get("/v1/auth/proxies").await.unwrap_or_default();
    let mut addrs: Vec<String> = proxies.into_iter().map(|p| p.addr).collect();
    addrs.sort();
    addrs
        .into_iter()
        .next()
        .unwrap_or_else(|| api.base().trim_start_matches("https://").to_string())
}

async fn tokens(api: &ApiClient, cmd: TokensCmd) -> Result<()> {
    match cmd {
        TokensCmd::Add {
            kind,
            ttl,
            value,
            format,
        } => {
            let ttl = parse_ttl(&ttl)?;
            let roles = resources::SystemRole::parse_list(&kind)
                .map_err(|e| anyhow!(invite::bad_type(&kind, &e)))?;
            let token = api.create_token(&kind, ttl, value.as_deref()).await?;
            let name = token.metadata.name.clone();
            match format {
                Some(Format::Text) => println!("{}", cell(&name)),
                Some(format @ (Format::Json | Format::Yaml)) => {
                    print!(
                        "{}",
                        client::format::document(&token, format)?.unwrap_or_default()
                    )
                }
                None => {
                    let pin = api.status().await?.ca_pin;
                    let proxy = proxy_addr(api).await;
                    print!(
                        "{}",
                        invite::join_message(&cell(&name), &roles, ttl, &cell(&pin), &cell(&proxy))
                    );
                }
            }
            Ok(())
        }
        TokensCmd::Ls { format } => {
            let list = api.get_resources("token", None).await?;
            if format != Format::Text {
                return print_resources(&list, format);
            }
            println!(
                "{:<34} {:<12} {:<8} Expiry Time (UTC)",
                "Token", "Type", "Labels"
            );
            println!(
                "{:<34} {:<12} {:<8} -----------------",
                "-----", "----", "------"
            );
            for t in &list {
                let roles: Vec<&str> = t["spec"]["roles"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
                    .unwrap_or_default();
                println!(
                    "{:<34} {:<12} {:<8} {}",
                    cell(t["metadata"]["name"].as_str().unwrap_or("")),
                    cell(&roles.join(",")),
                    "",
                    cell(t["metadata"]["expires"].as_str().unwrap_or("never"))
                );
            }
            Ok(())
        }
        TokensCmd::Rm { token } => {
            api.delete_resource("token", &token).await?;
            println!("Token {token} has been deleted");
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Generated from the command tree: every listing takes `--format`
    /// with exactly text, json and yaml (`auth sign --format` names an
    /// identity file format, not a listing's).
    #[test]
    fn every_listing_takes_text_json_yaml() {
        let mut checked = 0;
        for (path, cmd) in &client::format::leaf_commands(&Cli::command()) {
            let values = client::format::format_values(cmd);
            let is_listing = path.ends_with(" ls") || path == "get" || path == "status";
            if is_listing {
                assert!(values.is_some(), "{path} has no --format");
            }
            let Some(values) = values else { continue };
            if path == "auth sign" {
                continue;
            }
            assert_eq!(values, ["text", "json", "yaml"], "{path}");
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} listings found");
    }

    #[test]
    fn status_text_shows_each_ca_rotation_and_the_pin() {
        let s = api::StatusResponse {
            cluster_name: "c".into(),
            version: "1".into(),
            cas: vec![api::CaStatus {
                kind: "host".into(),
                pin: "sha256:aa".into(),
                cert: String::new(),
            }],
            ca_pin: "sha256:aa".into(),
        };
        let t = status_text(&s);
        assert!(t.contains("Host CA      never updated\n"), "{t}");
        assert!(t.contains("host CA pin  sha256:aa\n"), "{t}");
        assert!(t.ends_with("CA pin       sha256:aa\n"), "{t}");
    }
}
