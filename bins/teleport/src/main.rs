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

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

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

mod configure;

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
            let unit = match server::systemd::unit(&pid_file, &teleport_path, &env_file, fd_limit) {
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
    let result = server::run(&cfg, shutdown_signal(), |cluster| {
        eprintln!("Teleport is running (cluster {cluster}).");
    })
    .await;
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(result?)
}
