//! End-to-end harness: real `teleport`, `tctl` and `tsh` processes in a
//! temporary directory, on free ports, torn down on drop.
//!
//! The binaries are taken from the workspace's target directory (build them
//! with `cargo build --workspace --bins`; `cargo xtask test` does).

pub mod azure;
pub mod redis;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Errors of the harness (the tests turn them into failures).
pub type Result<T> = std::result::Result<T, String>;

/// Writes `text` to `config` and runs teleport with it ([`spawn_teleport`]), its log in a new
/// `dir/teleport.log`.
fn start_teleport(
    dir: &Path,
    config: &Path,
    text: &str,
    env: &[(String, String)],
) -> Result<Child> {
    std::fs::write(config, text).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("teleport.log")).map_err(|e| e.to_string())?;
    spawn_teleport(config, env, log)
}

/// Runs `teleport start -c config` with `env` added, its stderr to `log`.
fn spawn_teleport(config: &Path, env: &[(String, String)], log: std::fs::File) -> Result<Child> {
    Command::new(bin("teleport")?)
        .args(["start", "-c"])
        .arg(config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start teleport: {e}"))
}

/// Directory holding the built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2E_BIN_DIR") {
        return dir.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug")
}

/// Path of one binary; fails clearly when it was not built.
pub fn bin(name: &str) -> Result<PathBuf> {
    let p = bin_dir().join(name);
    if p.exists() {
        Ok(p)
    } else {
        Err(format!(
            "{} is missing: run `cargo build --workspace --bins` first (cargo xtask test does)",
            p.display()
        ))
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Storage for a test cluster.
#[derive(Debug, Clone)]
pub enum Storage {
    /// sqlite in the data dir.
    Sqlite,
    /// A PostgreSQL connection string.
    Postgres(String),
}

/// One `teleport start` process with auth and proxy.
pub struct Node {
    /// Its directory (config, data dir, logs).
    pub dir: PathBuf,
    /// Config file.
    pub config: PathBuf,
    /// `127.0.0.1:port` of the proxy.
    pub web_addr: String,
    /// `127.0.0.1:port` of the auth service.
    pub auth_addr: String,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl Node {
    /// Write a config and start `teleport start`, waiting until the proxy answers.
    pub fn start(dir: &Path, cluster: &str, storage: &Storage) -> Result<Node> {
        Self::start_with_keypair(dir, cluster, storage, None)
    }

    /// Like [`Node::start`], with `https_keypairs` (cert, key) for the proxy.
    pub fn start_with_keypair(
        dir: &Path,
        cluster: &str,
        storage: &Storage,
        keypair: Option<(&Path, &Path)>,
    ) -> Result<Node> {
        Self::start_with_env(dir, cluster, storage, keypair, &[], "")
    }

    /// Like [`Node::start_with_keypair`], with extra environment variables for the process
    /// (e.g. the Azure emulator's proxy and CA) and `auth_extra_yaml` appended to the
    /// `auth_service` section (lines indented by two spaces, e.g. `  azure_join: ...`).
    pub fn start_with_env(
        dir: &Path,
        cluster: &str,
        storage: &Storage,
        keypair: Option<(&Path, &Path)>,
        env: &[(String, String)],
        auth_extra_yaml: &str,
    ) -> Result<Node> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let web_port = free_port();
        let auth_port = free_port();
        let storage_yaml = match storage {
            Storage::Sqlite => String::new(),
            Storage::Postgres(conn) => {
                format!("  storage:\n    type: postgresql\n    conn_string: \"{conn}\"\n")
            }
        };
        let keypair_yaml = match keypair {
            Some((cert, key)) => format!(
                "  https_keypairs:\n  - cert_file: {}\n    key_file: {}\n",
                cert.display(),
                key.display()
            ),
            None => String::new(),
        };
        let config = dir.join("teleport.yaml");
        let text = format!(
            "version: v3\nteleport:\n  nodename: node-{web_port}\n  data_dir: {data}\n{storage_yaml}  log:\n    severity: DEBUG\nauth_service:\n  enabled: yes\n  cluster_name: {cluster}\n  listen_addr: 127.0.0.1:{auth_port}\n{auth_extra}proxy_service:\n  enabled: yes\n  web_listen_addr: 127.0.0.1:{web_port}\n  public_addr: 127.0.0.1:{web_port}\n{keypair_yaml}ssh_service:\n  enabled: no\n",
            data = dir.join("data").display(),
            auth_extra = if auth_extra_yaml.is_empty() || auth_extra_yaml.ends_with('\n') {
                auth_extra_yaml.to_string()
            } else {
                format!("{auth_extra_yaml}\n")
            },
        );
        let child = start_teleport(dir, &config, &text, env)?;
        let mut node = Node {
            dir: dir.to_path_buf(),
            config,
            web_addr: format!("127.0.0.1:{web_port}"),
            auth_addr: format!("127.0.0.1:{auth_port}"),
            child: Some(child),
            env: env.to_vec(),
        };
        node.wait_ready(Duration::from_secs(60))?;
        Ok(node)
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("teleport.log")).unwrap_or_default()
    }

    /// Kill the process (as a crash would) and start it again with the same
    /// config, ports and data; waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("teleport.log"))
            .map_err(|e| e.to_string())?;
        self.child = Some(spawn_teleport(&self.config, &self.env, log)?);
        self.wait_ready(Duration::from_secs(60))
    }

    /// Rewrites the node's `teleport.yaml` with `edit`, then [restarts](Self::restart) it.
    pub fn restart_with_config(&mut self, edit: impl FnOnce(String) -> String) -> Result<()> {
        let text = std::fs::read_to_string(&self.config).map_err(|e| e.to_string())?;
        std::fs::write(&self.config, edit(text)).map_err(|e| e.to_string())?;
        self.restart()
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let start = Instant::now();
        let rt = runtime()?;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("teleport exited with {status}:\n{}", self.log()));
                }
            }
            let ok = rt.block_on(async {
                match client::ApiClient::new(&self.web_addr, None, true) {
                    Ok(c) => c.ping().await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok && self.dir.join("data").join("admin-identity.pem").exists() {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!("teleport did not become ready:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send SIGTERM and wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err("already stopped".into());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Ok(status);
            }
            if start.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                return Err("teleport did not stop within 20s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `tctl -c <config> args...` (the local admin identity).
    pub fn tctl(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(bin("tctl")?);
        cmd.arg("-c").arg(&self.config).args(args);
        output(cmd, None)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A tokio runtime for the harness' own HTTP calls.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Run a command with optional stdin; never fails on a non-zero exit (the
/// caller checks).
pub fn output(mut cmd: Command, stdin: Option<&str>) -> Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if let Some(input) = stdin {
        if let Some(mut s) = child.stdin.take() {
            let _ = s.write_all(input.as_bytes());
        }
    }
    child.wait_with_output().map_err(|e| e.to_string())
}

/// `tsh args...` with `TELEPORT_HOME=home`.
pub fn tsh(home: &Path, args: &[&str], stdin: Option<&str>) -> Result<Output> {
    let mut cmd = Command::new(bin("tsh")?);
    // A developer's exported COLUMNS would cut tables' Labels column.
    cmd.env("TELEPORT_HOME", home)
        .env_remove("COLUMNS")
        .args(args);
    output(cmd, stdin)
}

/// `tctl args...` with `TELEPORT_HOME=home` and no config (profile or -i).
pub fn tctl_as(home: &Path, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new(bin("tctl")?);
    cmd.env("TELEPORT_HOME", home)
        .env_remove("TELEPORT_CONFIG_FILE")
        .args(args);
    output(cmd, None)
}

/// Stdout of a successful command, or an error with both streams.
pub fn ok(out: Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "command failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Stderr of a failed command, or an error when it succeeded.
pub fn fails(out: Output) -> Result<String> {
    if out.status.success() {
        Err(format!(
            "command succeeded but should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ))
    } else {
        Ok(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// Pull the invite URL out of `tctl users add` output.
pub fn invite_token(tctl_output: &str) -> Result<String> {
    tctl_output
        .split_whitespace()
        .find_map(|w| w.split("/web/invite/").nth(1))
        .map(str::to_string)
        .ok_or_else(|| format!("no invite link in {tctl_output:?}"))
}

/// Set a password through the proxy's invite endpoint, as the web page does.
pub fn set_password(proxy: &str, token: &str, password: &str) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let c = client::ApiClient::new(proxy, None, true).map_err(|e| e.to_string())?;
        c.set_password(token, password)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Create a user with `tctl users add` on `node` and set its password.
pub fn add_user(node: &Node, name: &str, roles: &str, password: &str) -> Result<()> {
    add_user_with(node, name, roles, &[], password)
}

/// A node of `cluster` on SQLite in a temporary directory of its own (`node` in it).
pub fn sqlite_node(cluster: &str) -> Result<(tempfile::TempDir, Node)> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let node = Node::start(&tmp.path().join("node"), cluster, &Storage::Sqlite)?;
    Ok((tmp, node))
}

/// The head of an agent's `teleport.yaml`: `nodename`, joining the proxy at `proxy` (pinned to
/// the CA hash `ca_pin`, `sha256:...`) with the token in `token_file`; no auth, proxy or SSH
/// service. The services it runs follow as YAML.
pub fn token_agent_config(nodename: &str, proxy: &str, ca_pin: &str, token_file: &Path) -> String {
    format!(
        "version: v3\nteleport:\n  nodename: {nodename}\n  data_dir: \"{{data_dir}}\"\n  proxy_server: \"{proxy}\"\n  ca_pin: \"{ca_pin}\"\n  join_params:\n    token_name: \"{}\"\n    method: token\nauth_service:\n  enabled: no\nproxy_service:\n  enabled: no\nssh_service:\n  enabled: no\n",
        token_file.display()
    )
}

/// An agent joined to `node` with a fresh `tctl tokens add --type=roles`
/// token and the cluster's CA pin, running `services` (the YAML of its
/// `app_service` / `db_service` sections); its files under `dir/nodename`.
pub fn start_token_agent(
    node: &Node,
    dir: &Path,
    roles: &str,
    nodename: &str,
    services: &str,
) -> Result<Agent> {
    let home = dir.join(nodename);
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let token_file = home.join("token");
    std::fs::write(&token_file, join_token(node, roles)?.trim()).map_err(|e| e.to_string())?;
    let config = token_agent_config(nodename, &node.web_addr, &ca_pin(node)?, &token_file);
    Agent::start(&home, &(config + services))
}

/// Writes `yaml` to `file` and runs `tctl create file` on `node`.
pub fn create_from(node: &Node, file: &Path, yaml: &str) -> Result<Output> {
    std::fs::write(file, yaml).map_err(|e| e.to_string())?;
    let path = file
        .to_str()
        .ok_or("the resource file's path is not UTF-8")?;
    node.tctl(&["create", path])
}

/// An identity file for `user` at `out` from `tctl auth sign --ttl=ttl`; tctl's output.
pub fn sign_identity(node: &Node, user: &str, out: &Path, ttl: &str) -> Result<String> {
    let user = format!("--user={user}");
    let out = out
        .to_str()
        .ok_or("the identity file's path is not UTF-8")?;
    let ttl = format!("--ttl={ttl}");
    ok(node.tctl(&["auth", "sign", &user, "--out", out, &ttl])?)
}

/// The `tctl users add` flags of the Redis guide's user: every database user and name.
pub const ALL_DATABASE_USERS: &[&str] = &["--db-users=*", "--db-names=*"];

/// Like [`add_user`], with more `tctl users add` flags (`--db-users=*`, ...).
pub fn add_user_with(
    node: &Node,
    name: &str,
    roles: &str,
    flags: &[&str],
    password: &str,
) -> Result<()> {
    let roles = format!("--roles={roles}");
    let mut args = vec!["users", "add", name, &roles];
    args.extend_from_slice(flags);
    let out = ok(node.tctl(&args)?)?;
    set_password(&node.web_addr, &invite_token(&out)?, password)
}

/// `tsh login` of `user` with `password` to `node`'s proxy (not verifying its certificate),
/// as the user of `home`.
pub fn tsh_login(node: &Node, home: &Path, user: &str, password: &str) -> Result<Output> {
    let proxy = format!("--proxy={}", node.web_addr);
    let user = format!("--user={user}");
    let args = ["login", &proxy, &user, "--insecure"];
    tsh(home, &args, Some(&format!("{password}\n")))
}

/// A join token for an agent of `kind` (`app`, `db`), valid for an hour, from `tctl tokens add`.
pub fn join_token(node: &Node, kind: &str) -> Result<String> {
    let kind = format!("--type={kind}");
    ok(node.tctl(&["tokens", "add", &kind, "--ttl=1h", "--format=text"])?)
}

/// A PostgreSQL database of its own, dropped on drop.
pub struct TempDatabase {
    /// Database name.
    pub name: String,
    /// Connection string for it.
    pub conn_string: String,
}

fn psql(sql: &str) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=postgres",
            tokio_postgres::NoTls,
        )
        .await
        .map_err(|e| {
            format!("PostgreSQL on 127.0.0.1:5432 is required (cargo xtask test starts it): {e}")
        })?;
        let h = tokio::spawn(conn);
        let r = c.batch_execute(sql).await.map_err(|e| e.to_string());
        drop(c);
        let _ = h.await;
        r
    })
}

impl TempDatabase {
    /// Create a fresh database.
    pub fn create(prefix: &str) -> Result<TempDatabase> {
        let name = format!("{prefix}_{}_{}", std::process::id(), free_port());
        psql(&format!("CREATE DATABASE {name}"))?;
        Ok(TempDatabase {
            conn_string: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        })
    }
}

/// Two nodes of one cluster (two processes) on one fresh PostgreSQL database. The nodes stop
/// before the database is dropped.
pub struct PostgresPair {
    /// The first node (`a` in `tmp`).
    pub a: Node,
    /// The second node (`b` in `tmp`).
    pub b: Node,
    /// Their directory.
    pub tmp: tempfile::TempDir,
    /// Their database.
    pub db: TempDatabase,
}

impl PostgresPair {
    /// Two nodes of `cluster` on a new database named after `db_prefix`.
    pub fn start(db_prefix: &str, cluster: &str) -> Result<PostgresPair> {
        let db = TempDatabase::create(db_prefix)?;
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let storage = Storage::Postgres(db.conn_string.clone());
        let a = Node::start(&tmp.path().join("a"), cluster, &storage)?;
        let b = Node::start(&tmp.path().join("b"), cluster, &storage)?;
        Ok(PostgresPair { a, b, tmp, db })
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let _ = psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// A `teleport start` agent process (app or db service) with its own config.
pub struct Agent {
    /// Its directory.
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// The process ID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Write `config_yaml` (with `{data_dir}` replaced) and start `teleport start`.
    /// Does not wait: callers poll for what they expect.
    pub fn start(dir: &Path, config_yaml: &str) -> Result<Agent> {
        Self::start_with_env(dir, config_yaml, &[])
    }

    /// Like [`Agent::start`], with extra environment variables for the process.
    pub fn start_with_env(
        dir: &Path,
        config_yaml: &str,
        env: &[(String, String)],
    ) -> Result<Agent> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let config = dir.join("teleport.yaml");
        let text = config_yaml.replace("{data_dir}", &dir.join("data").display().to_string());
        let child = start_teleport(dir, &config, &text, env)?;
        Ok(Agent {
            dir: dir.to_path_buf(),
            child: Some(child),
        })
    }

    /// The process log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("teleport.log")).unwrap_or_default()
    }

    /// Wait for the process to exit (it should, e.g. on a refused join).
    pub fn wait_exit(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Ok(status);
                }
            }
            if start.elapsed() > limit {
                return Err(format!("the agent is still running:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `f` every 100 ms until it returns `Some`, or fail after `limit`.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > limit {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `CA pin` line's value from `tctl status`.
pub fn ca_pin(node: &Node) -> Result<String> {
    let status = ok(node.tctl(&["status"])?)?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CA pin"))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("no CA pin in {status}"))
}

/// A runtime of its own for an emulator.
fn emulator_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The guides' emulator fixture.
fn emulator_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/azure-emulator.yaml")
}

/// The Azure emulator with the guides' fixture, on a runtime of its own
/// (keep both alive for as long as the emulator is needed).
pub fn start_emulator() -> Result<(tokio::runtime::Runtime, azure_emulator::EmulatorHandle)> {
    let rt = emulator_runtime()?;
    let fixture = emulator_fixture();
    let emu = rt
        .block_on(azure_emulator::Emulator::start_fixture(&fixture))
        .map_err(|e| format!("starting the Azure emulator: {e}"))?;
    Ok((rt, emu))
}

/// An emulator environment for a cluster process: Azure hosts through the
/// emulator, the cluster's own loopback traffic direct.
pub fn loopback_direct(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k != "NO_PROXY" && k != "no_proxy")
        .collect();
    env.push(("NO_PROXY".into(), "127.0.0.1,localhost".into()));
    env.push(("no_proxy".into(), "127.0.0.1,localhost".into()));
    env
}

/// The Azure emulator with the guides' fixture changed by `edit` (the
/// fixture as YAML), on a runtime of its own.
pub fn start_emulator_with(
    edit: impl FnOnce(&mut serde_yaml_ng::Value),
) -> Result<(tokio::runtime::Runtime, azure_emulator::EmulatorHandle)> {
    let rt = emulator_runtime()?;
    let text = std::fs::read_to_string(emulator_fixture()).map_err(|e| e.to_string())?;
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| e.to_string())?;
    edit(&mut doc);
    let text = serde_yaml_ng::to_string(&doc).map_err(|e| e.to_string())?;
    let world = azure_emulator::World::from_yaml(&text).map_err(|e| e.to_string())?;
    let emu = rt
        .block_on(azure_emulator::Emulator::start(world))
        .map_err(|e| format!("starting the Azure emulator: {e}"))?;
    Ok((rt, emu))
}

/// The list under `kind` (`redis`, `redis_enterprise`, ...) of the
/// fixture's resource group that holds the resource `name` (for
/// [`start_emulator_with`]).
pub fn fixture_list<'a>(
    doc: &'a mut serde_yaml_ng::Value,
    kind: &str,
    name: &str,
) -> Option<&'a mut Vec<serde_yaml_ng::Value>> {
    for sub in doc.get_mut("subscriptions")?.as_sequence_mut()? {
        for rg in sub.get_mut("resource_groups")?.as_sequence_mut()? {
            let Some(list) = rg.get_mut(kind).and_then(|r| r.as_sequence_mut()) else {
                continue;
            };
            if list
                .iter()
                .any(|r| r.get("name").and_then(|n| n.as_str()) == Some(name))
            {
                return Some(list);
            }
        }
    }
    None
}

/// The mapping of the fixture's resource `name` under `kind` (see
/// [`fixture_list`]).
pub fn fixture_resource<'a>(
    doc: &'a mut serde_yaml_ng::Value,
    kind: &str,
    name: &str,
) -> Option<&'a mut serde_yaml_ng::Mapping> {
    fixture_list(doc, kind, name)?
        .iter_mut()
        .find(|r| r.get("name").and_then(|n| n.as_str()) == Some(name))?
        .as_mapping_mut()
}
