//! teleport: the service binary (auth, proxy; agents in later issues).

// `println!` and `print!` that end quietly when standard output's reader has
// gone (`| head -1`) instead of panicking: see `api::output`.
macro_rules! println {
    () => { api::output::println(format_args!("")) };
    ($($t:tt)*) => { api::output::println(format_args!($($t)*)) };
}
macro_rules! print {
    ($($t:tt)*) => { api::output::print(format_args!($($t)*)) };
}

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    name = "teleport",
    about = "Teleport services",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the services enabled in the config file.
    Start {
        /// Config file.
        #[arg(long, short = 'c', default_value = "/etc/teleport.yaml")]
        config: PathBuf,
        /// Verbose logging.
        #[arg(long, short = 'd')]
        debug: bool,
        /// Write the process ID here.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Agents: accept any proxy certificate when no ca_pin is set (tests only).
        #[arg(long)]
        insecure: bool,
    },
    /// Print the version.
    Version,
    /// Install helpers.
    #[command(subcommand)]
    Install(InstallCmd),
    /// Database Service helpers.
    #[command(subcommand)]
    Db(DbCmd),
}

#[derive(Subcommand)]
enum DbCmd {
    /// Database Service configuration.
    #[command(subcommand)]
    Configure(DbConfigureCmd),
}

#[derive(Subcommand)]
enum DbConfigureCmd {
    /// Write a Database Service configuration (Azure Redis discovery).
    Create(configure::DbConfigureCreate),
}

#[derive(Subcommand)]
enum InstallCmd {
    /// Print (or write with -o) a systemd unit for teleport.
    Systemd {
        /// Write the unit here instead of printing it.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// PID file the unit uses.
        #[arg(long = "pid-file", default_value = "/run/teleport.pid")]
        pid_file: String,
        /// Path of the teleport binary.
        #[arg(long = "teleport-path", default_value = "/usr/local/bin/teleport")]
        teleport_path: String,
        /// Environment file (optional, `-` prefix added).
        #[arg(long = "env-file", default_value = "/etc/default/teleport")]
        env_file: String,
        /// Open file limit.
        #[arg(long = "fd-limit", default_value_t = 524288)]
        fd_limit: u64,
    },
}

/// A path that can be written into the unit as it is: absolute, of letters, digits and
/// `/ . _ - + @ ,` only. Whitespace, quotes, `$`, `%` (systemd specifiers), `;`, backquotes and
/// newlines would otherwise split `ExecStart`, add directives, or run in `ExecReload`'s shell.
fn unit_path<'a>(flag: &str, path: &'a str) -> Result<&'a str, String> {
    let ok = path.starts_with('/')
        && path.len() <= 1024
        && path.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@' | b',')
        });
    if ok {
        Ok(path)
    } else {
        Err(format!(
            "--{flag} {path:?} cannot be written into a systemd unit: give an absolute path of \
             letters, digits and / . _ - + @ , only"
        ))
    }
}

fn systemd_unit(
    pid_file: &str,
    teleport_path: &str,
    env_file: &str,
    fd_limit: u64,
) -> Result<String, String> {
    let pid_file = unit_path("pid-file", pid_file)?;
    let teleport_path = unit_path("teleport-path", teleport_path)?;
    let env_file = unit_path("env-file", env_file)?;
    Ok(format!(
        "[Unit]\n\
         Description=Teleport Service\n\
         After=network.target\n\
         \n\
         [Service]\n\
         Type=simple\n\
         Restart=always\n\
         RestartSec=5\n\
         EnvironmentFile=-{env_file}\n\
         ExecStart={teleport_path} start --config /etc/teleport.yaml --pid-file={pid_file}\n\
         ExecReload=/bin/sh -c \"exec pkill -HUP -L -F {pid_file}\"\n\
         PIDFile={pid_file}\n\
         LimitNOFILE={fd_limit}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    ))
}

mod configure;

/// Name of the admin identity file in the data directory (read by tctl).
const ADMIN_IDENTITY: &str = "admin-identity.pem";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Version => {
            println!("{}", api::version_line());
            ExitCode::SUCCESS
        }
        Cmd::Db(DbCmd::Configure(DbConfigureCmd::Create(flags))) => match configure::run(&flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{}", client::term::error_line(&format!("{e:#}")));
                ExitCode::FAILURE
            }
        },
        Cmd::Install(InstallCmd::Systemd {
            output,
            pid_file,
            teleport_path,
            env_file,
            fd_limit,
        }) => {
            let unit = match systemd_unit(&pid_file, &teleport_path, &env_file, fd_limit) {
                Ok(unit) => unit,
                Err(e) => {
                    eprintln!("{}", client::term::error_line(&e.to_string()));
                    return ExitCode::FAILURE;
                }
            };
            match output {
                None => {
                    print!("{unit}");
                    ExitCode::SUCCESS
                }
                Some(path) => match std::fs::write(&path, unit) {
                    Ok(()) => {
                        println!("Wrote config to file {:?}. You can now run \"systemctl enable teleport\" and \"systemctl start teleport\".", path.display().to_string());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!(
                            "{}",
                            client::term::error_line(&format!(
                                "cannot write {}: {e}",
                                path.display()
                            ))
                        );
                        ExitCode::FAILURE
                    }
                },
            }
        }
        Cmd::Start {
            config,
            debug,
            pid_file,
            insecure,
        } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}", client::term::error_line(&format!("{e:#}")));
                    return ExitCode::FAILURE;
                }
            };
            let mut b = match cfg.teleport.worker_threads {
                None | Some(0) | Some(1) => tokio::runtime::Builder::new_current_thread(),
                Some(n) => {
                    let mut b = tokio::runtime::Builder::new_multi_thread();
                    b.worker_threads(n.min(MAX_WORKER_THREADS));
                    b
                }
            };
            let rt = match b.enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("{}", client::term::error_line(&e.to_string()));
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(start(cfg, debug, pid_file, insecure)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}", client::term::error_line(&format!("{e:#}")));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(debug: bool, cfg: &config::FileConfig) {
    let level = if debug {
        "debug".to_string()
    } else {
        cfg.teleport
            .log
            .as_ref()
            .and_then(|l| l.severity.clone())
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "warning" => "warn".to_string(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "info".into())
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(level)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    // HUP (systemd's reload) must not kill the process: configuration
    // changes take effect on restart.
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::warn!("SIGHUP received: configuration changes take effect after a restart (systemctl restart teleport)");
            }
        }
    }
}

fn storage_config(cfg: &config::FileConfig) -> Result<backend::StorageConfig> {
    let storage = cfg.teleport.storage.clone().unwrap_or_default();
    Ok(match storage.kind.as_str() {
        "" | "sqlite" | "dir" => backend::StorageConfig::Sqlite {
            path: cfg.data_dir().join("backend").join("sqlite.db"),
        },
        "postgresql" | "postgres" => backend::StorageConfig::Postgres {
            conn_string: storage
                .conn_string
                .ok_or_else(|| anyhow!("storage type postgresql needs conn_string"))?,
        },
        other => bail!("unsupported storage type {other:?}"),
    })
}

fn public_addr(cfg: &config::FileConfig, bound: std::net::SocketAddr) -> String {
    if let Some(p) = cfg
        .proxy_service
        .public_addr
        .as_ref()
        .and_then(|p| p.to_vec().into_iter().next())
    {
        return p;
    }
    if bound.ip().is_unspecified() {
        format!("{}:{}", cfg.nodename(), bound.port())
    } else {
        bound.to_string()
    }
}

/// `proxy_service.<key>` as a rate, or `default` when it is not set.
fn rate_limit(
    key: &str,
    configured: Option<&config::RateLimit>,
    default: proxy::limit::Limit,
) -> Result<proxy::limit::Limit> {
    let Some(l) = configured else {
        return Ok(default);
    };
    let period = resources::parse_go_duration(&l.period)
        .map_err(|e| anyhow!("proxy_service.{key}.period: {e}"))?;
    if period.is_zero() {
        bail!("proxy_service.{key}.period must be more than zero");
    }
    Ok(proxy::limit::Limit {
        burst: l.burst,
        per_sec: f64::from(l.average) / period.as_secs_f64(),
    })
}

/// Most event-loop threads `teleport.worker_threads` may ask for.
const MAX_WORKER_THREADS: usize = 256;

async fn start(
    cfg: config::FileConfig,
    debug: bool,
    pid_file: Option<PathBuf>,
    insecure: bool,
) -> Result<()> {
    init_logging(debug, &cfg);
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {}", p.display()))?;
    }
    let data_dir = cfg.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;

    if cfg.ssh_service.enabled {
        tracing::warn!("the SSH service is not available in this build; ssh_service is ignored");
    }
    if !cfg.auth_service.enabled {
        if cfg.proxy_service.enabled {
            bail!("proxy_service needs auth_service enabled in the same process in this build");
        }
        let result = agent::Agent::new(cfg, insecure)
            .service(Box::new(app_service::AppService::from_config))
            .service(Box::new(db_service::DbService::from_config))
            .run(shutdown_signal())
            .await
            .map_err(anyhow::Error::from);
        if let Some(p) = &pid_file {
            let _ = std::fs::remove_file(p);
        }
        return result;
    }
    if cfg.app_service.enabled || cfg.db_service.enabled {
        tracing::warn!(
            "app_service and db_service run as separate agents in this build: start them in their own process with join_params"
        );
    }

    let nodename = cfg.nodename();
    let web_listener =
        if cfg.proxy_service.enabled {
            let addr = cfg.web_listen_addr()?;
            Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on {addr} (proxy_service.web_listen_addr)")
            })?)
        } else {
            None
        };
    let proxy_public = match &web_listener {
        Some(l) => Some(public_addr(&cfg, l.local_addr()?)),
        None => None,
    };

    let storage = storage_config(&cfg)?;
    let backend = backend::open(&storage)
        .await
        .map_err(|e| anyhow!("opening storage: {e}"))?;
    let cluster_name = cfg
        .auth_service
        .cluster_name
        .clone()
        .unwrap_or_else(|| nodename.clone());
    let auth = auth::AuthServer::init(
        backend.clone(),
        auth::AuthConfig {
            cluster_name,
            static_tokens: cfg.auth_service.tokens.clone(),
            proxy_public_addr: proxy_public.clone(),
            azure_join_trust_bundle: cfg
                .auth_service
                .azure_join
                .as_ref()
                .and_then(|a| a.trust_bundle_path.clone()),
            ..Default::default()
        },
    )
    .await?;

    // The local administrator identity, for tctl on this host.
    let admin = auth.admin_identity_pem()?;
    let admin_path = data_dir.join(ADMIN_IDENTITY);
    pki::private_file::write(&admin_path, admin.as_bytes())
        .with_context(|| format!("writing {}", admin_path.display()))?;

    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::new();

    // Auth listener: the authenticated API over mutual TLS.
    let auth_addr = cfg.auth_listen_addr()?;
    let auth_listener = TcpListener::bind(auth_addr)
        .await
        .with_context(|| format!("cannot listen on {auth_addr} (auth_service.listen_addr)"))?;
    let (cert, key) = auth.server_keypair(
        &nodename,
        resources::SystemRole::Auth,
        vec![nodename.clone()],
    )?;
    let auth_tls = pki::tls::server_config(
        &cert,
        &key,
        &[
            auth.user_ca().cert_pem().to_string(),
            auth.host_ca().cert_pem().to_string(),
        ],
        pki::tls::ClientAuth::Required,
        &[b"h2", b"http/1.1"],
    )?;
    tracing::info!(addr = %auth_listener.local_addr()?, cluster = %auth.cluster_name(), "auth service is listening");
    {
        let mut stop = stop_tx.subscribe();
        let router = auth::http::router(auth.clone());
        tasks.push(tokio::spawn(auth::serve::serve_tls(
            auth_listener,
            Arc::new(auth_tls),
            router,
            async move {
                let _ = stop.recv().await;
            },
        )));
    }

    if let (Some(listener), Some(public)) = (web_listener, proxy_public) {
        let (cert_pem, key_pem) = match cfg.proxy_service.https_keypairs.first() {
            Some(kp) => (
                std::fs::read_to_string(&kp.cert_file)
                    .with_context(|| format!("reading {}", kp.cert_file.display()))?,
                std::fs::read_to_string(&kp.key_file)
                    .with_context(|| format!("reading {}", kp.key_file.display()))?,
            ),
            None => {
                let host = public
                    .rsplit_once(':')
                    .map(|(h, _)| h.to_string())
                    .unwrap_or(public.clone());
                tracing::warn!("no https_keypairs configured: using a self-signed certificate (clients need --insecure)");
                pki::self_signed_server_cert(&[host, "localhost".into(), nodename.clone()])?
            }
        };
        let join_limit = rate_limit(
            "join_rate_limit",
            cfg.proxy_service.join_rate_limit.as_ref(),
            proxy::limit::Limit::JOIN_DEFAULT,
        )?;
        let login_limit = rate_limit(
            "login_rate_limit",
            cfg.proxy_service.login_rate_limit.as_ref(),
            proxy::limit::Limit::LOGIN_DEFAULT,
        )?;
        let proxy = Arc::new(proxy::Proxy::new(
            auth.clone(),
            proxy::ProxyConfig {
                join_limit,
                login_limit,
                public_addr: public.clone(),
                cert_pem,
                key_pem,
                binaries_dir: std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(|d| d.to_path_buf())),
            },
        )?);
        tracing::info!(addr = %listener.local_addr()?, public_addr = %public, "proxy web service is listening");
        let mut stop = stop_tx.subscribe();
        tasks.push(tokio::spawn(proxy.serve(listener, async move {
            let _ = stop.recv().await;
        })));
    }

    eprintln!("Teleport is running (cluster {}).", auth.cluster_name());
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(());
    for t in tasks {
        let _ = t.await;
    }
    if let Err(e) = backend.close().await {
        tracing::warn!(error = %e, "closing storage");
    }
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Flags become unit lines and part of `ExecReload`'s shell command: text that could add a
    /// directive or run a command is refused, never written.
    #[test]
    fn systemd_unit_paths_cannot_add_directives_or_commands() {
        let unit = systemd_unit(
            "/run/teleport.pid",
            "/usr/local/bin/teleport",
            "/etc/default/teleport",
            1024,
        )
        .unwrap();
        assert!(unit.contains("PIDFile=/run/teleport.pid\n"), "{unit}");
        for bad in [
            "/run/t.pid\nExecStartPre=/bin/touch /tmp/pwned",
            "/run/t.pid; touch /tmp/pwned",
            "/run/$(touch /tmp/pwned)",
            "/run/`id`",
            "/run/\"x\"",
            "/run/with space",
            "/run/%h",
            "relative/t.pid",
            "",
        ] {
            for which in 0..3 {
                let mut args = [
                    "/run/teleport.pid",
                    "/usr/local/bin/teleport",
                    "/etc/default/teleport",
                ];
                args[which] = bad;
                let err = systemd_unit(args[0], args[1], args[2], 1024).unwrap_err();
                assert!(
                    err.contains("cannot be written into a systemd unit"),
                    "{err}"
                );
            }
        }
    }
}
