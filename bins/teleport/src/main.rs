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
    disable_version_flag = true,
    arg_required_else_help = true
)]
struct Cli {
    /// Print the version (as `teleport version`).
    #[arg(long)]
    version: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the services of the config file and the flags (--roles).
    Start(Box<StartArgs>),
    /// Print the version.
    Version,
    /// Install helpers.
    #[command(subcommand)]
    Install(InstallCmd),
    /// Database Service helpers.
    #[command(subcommand)]
    Db(DbCmd),
}

/// Flags of `teleport start`: a config file, and Teleport's flags that set
/// (or override) its values, so that the command `tctl tokens add` prints
/// runs with no file.
#[derive(clap::Args)]
struct StartArgs {
    /// Config file [default: /etc/teleport.yaml; none needed with --roles/--token/--auth-server].
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Verbose logging.
    #[arg(long, short = 'd')]
    debug: bool,
    /// Write the process ID here.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Agents: accept any proxy certificate when no ca_pin is set (tests only).
    #[arg(long)]
    insecure: bool,
    /// Services to run, comma-separated: app, db, node (SSH: not in this build), auth, proxy.
    #[arg(long)]
    roles: Option<String>,
    /// Join token, or a file holding it.
    #[arg(long)]
    token: Option<String>,
    /// How to join: token or azure.
    #[arg(long = "join-method")]
    join_method: Option<String>,
    /// CA pin(s) of the cluster (`tctl status` prints it); repeatable.
    #[arg(long = "ca-pin")]
    ca_pin: Vec<String>,
    /// Address (host:port) to join through: the proxy's, as `tctl tokens add` prints it; repeatable.
    #[arg(long = "auth-server")]
    auth_server: Vec<String>,
    /// Name of this node [default: the host name].
    #[arg(long)]
    nodename: Option<String>,
    /// Data directory [default: /var/lib/teleport].
    #[arg(long = "data-dir")]
    data_dir: Option<PathBuf>,
    /// Static labels of the --app-name app, e.g. env=dev,team=x.
    #[arg(long)]
    labels: Vec<String>,
    /// Name of an app to serve (with --app-uri).
    #[arg(long = "app-name")]
    app_name: Option<String>,
    /// Address of the --app-name app, e.g. http://localhost:3000.
    #[arg(long = "app-uri")]
    app_uri: Option<String>,
    /// Public address of the --app-name app.
    #[arg(long = "app-public-addr")]
    app_public_addr: Option<String>,
}

impl StartArgs {
    fn flags(&self) -> config::StartFlags {
        config::StartFlags {
            roles: self.roles.clone(),
            token: self.token.clone(),
            join_method: self.join_method.clone(),
            ca_pins: self.ca_pin.clone(),
            auth_servers: self.auth_server.clone(),
            nodename: self.nodename.clone(),
            data_dir: self.data_dir.clone(),
            labels: self.labels.clone(),
            app_name: self.app_name.clone(),
            app_uri: self.app_uri.clone(),
            app_public_addr: self.app_public_addr.clone(),
        }
    }

    /// The configuration to run: the file's (-c, else /etc/teleport.yaml
    /// when it exists), with the flags laid over it; and the warnings for
    /// the log.
    fn configuration(&self) -> Result<(config::FileConfig, Vec<String>)> {
        let flags = self.flags();
        let default = PathBuf::from(DEFAULT_CONFIG);
        let mut cfg = match &self.config {
            Some(path) => config::load(path)?,
            None if default.exists() => config::load(&default)?,
            None if !flags.is_empty() => config::FileConfig::empty(),
            None => bail!(
                "{DEFAULT_CONFIG} does not exist: give a config file with -c FILE, or the flags `tctl tokens add` prints (--roles, --token, --ca-pin, --auth-server)"
            ),
        };
        let warnings = flags.apply(&mut cfg)?;
        Ok((cfg, warnings))
    }
}

/// The file `teleport start` reads without -c.
const DEFAULT_CONFIG: &str = "/etc/teleport.yaml";

#[derive(Subcommand)]
enum DbCmd {
    /// Database Service configuration.
    #[command(subcommand)]
    Configure(DbConfigureCmd),
}

#[derive(Subcommand)]
enum DbConfigureCmd {
    /// Write a Database Service configuration (Azure Redis discovery).
    Create(Box<configure::DbConfigureCreate>),
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
    let Some(cmd) = cli.cmd.filter(|_| !cli.version) else {
        println!("{}", api::version_line());
        return ExitCode::SUCCESS;
    };
    match cmd {
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
        Cmd::Start(args) => {
            let (cfg, warnings) = match args.configuration() {
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
            let StartArgs {
                debug,
                pid_file,
                insecure,
                ..
            } = *args;
            match rt.block_on(start(cfg, &warnings, debug, pid_file, insecure)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{}", client::term::error_line(&format!("{e:#}")));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Logs go to `teleport.log.output` (`stderr`, the default, `stdout`, or a
/// file, appended to), coloured only on a terminal.
fn init_logging(debug: bool, cfg: &config::FileConfig) -> Result<()> {
    use std::io::IsTerminal;
    let log = cfg.teleport.log.as_ref();
    let level = if debug {
        "debug".to_string()
    } else {
        log.and_then(|l| l.severity.clone())
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "warning" => "warn".to_string(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| "info".into())
    };
    let builder = tracing_subscriber::fmt().with_env_filter(level);
    let output = log.and_then(|l| l.output.as_deref()).unwrap_or("stderr");
    let _ = match output {
        "" | "stderr" | "syslog" => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init(),
        "stdout" => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .try_init(),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| {
                    format!("opening the log file {path} (teleport.log.output): check the directory exists and is writable, or use stderr")
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init()
        }
    };
    if output == "syslog" {
        tracing::warn!("teleport.log.output: syslog is not available in this build; logging to stderr (systemd's journal keeps it)");
    }
    Ok(())
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
    warnings: &[String],
    debug: bool,
    pid_file: Option<PathBuf>,
    insecure: bool,
) -> Result<()> {
    init_logging(debug, &cfg)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid file {}", p.display()))?;
    }
    let data_dir = cfg.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;

    if cfg.ssh_service.enabled {
        tracing::warn!("the SSH service is not available in this build (role node, ssh_service): nothing serves SSH on this host");
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
