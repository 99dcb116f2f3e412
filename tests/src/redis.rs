//! A TLS `redis-server` of a test's own: certificate for `localhost` from a
//! fresh CA, a password, a free port; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{free_port, output, poll, Result};

/// A running TLS redis-server.
pub struct RedisTls {
    child: Child,
    /// TLS port on 127.0.0.1.
    pub port: u16,
    /// Plain TCP port, when asked for (benchmarks).
    pub plain_port: Option<u16>,
    /// The CA that issued the server certificate (PEM file).
    pub ca_path: PathBuf,
    /// Its PEM text.
    pub ca_pem: String,
    password: std::sync::Mutex<String>,
    _dir: tempfile::TempDir,
}

impl Drop for RedisTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RedisTls {
    /// The server's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Start one requiring `password` (plain TCP disabled).
    pub fn start(password: &str) -> Result<RedisTls> {
        Self::start_opts(password, false)
    }

    /// Start one requiring `password`, also on a plain TCP port when `plain`.
    pub fn start_opts(password: &str, plain: bool) -> Result<RedisTls> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let ca_pem = write_tls_material(dir.path(), port)?;
        let plain_port = plain.then(free_port);
        let child = spawn_tls_server(
            dir.path(),
            port,
            password,
            &["--port", &plain_port.unwrap_or(0).to_string()],
        )?;
        let server = RedisTls {
            child,
            port,
            plain_port,
            ca_path: dir.path().join("ca.pem"),
            ca_pem,
            password: std::sync::Mutex::new(password.to_string()),
            _dir: dir,
        };
        poll(Duration::from_secs(15), "redis-server to answer", || {
            let out = server.cli(&["PING"]).ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("PONG")
                .then_some(())
        })?;
        Ok(server)
    }

    /// Run `redis-cli` against the server directly (TLS, the current password).
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let pw = self.password.lock().map_err(|e| e.to_string())?.clone();
        let mut cmd = Command::new(redis_cli());
        cmd.args(["--tls", "-h", "localhost", "-p", &self.port.to_string()])
            .arg("--cacert")
            .arg(&self.ca_path)
            .args(["--no-auth-warning", "-a", &pw])
            .args(args);
        output(cmd, None)
    }

    /// Change the password the server requires (connections already
    /// authenticated stay so, as with Azure's key regeneration).
    pub fn set_password(&self, new: &str) -> Result<()> {
        let out = self.cli(&["CONFIG", "SET", "requirepass", new])?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !text.contains("OK") {
            return Err(format!("CONFIG SET requirepass: {text}"));
        }
        *self.password.lock().map_err(|e| e.to_string())? = new.to_string();
        Ok(())
    }
}

/// A fresh CA (named after `tag`: a client trusting several test servers'
/// CAs must not confuse them) and a certificate for `localhost` in `dir`
/// (`ca.pem`, `server.pem`, `server.key`); returns the CA's PEM. The
/// certificate is good for clients too: cluster nodes present it to each
/// other, and Redis requires it on the cluster bus.
fn write_tls_material(dir: &Path, tag: u16) -> Result<String> {
    let ca = pki::CertAuthority::generate(&format!("redis-test-ca-{tag}"), pki::CaType::Db)
        .map_err(|e| e.to_string())?;
    let key = pki::generate_key().map_err(|e| e.to_string())?;
    let host = pki::HostIdentity {
        host_id: "localhost".into(),
        nodename: "localhost".into(),
        cluster_name: "redis-test".into(),
        system_roles: vec!["Db".into()],
        dns_names: vec!["localhost".into()],
        expires: time::OffsetDateTime::now_utc() + time::Duration::days(1),
    };
    let cert = ca
        .sign_host(&host, &key.public_key_der)
        .map_err(|e| e.to_string())?;
    let key = key.private_key_pem;
    for (f, text) in [
        ("ca.pem", ca.cert_pem()),
        ("server.pem", &cert),
        ("server.key", &key),
    ] {
        std::fs::write(dir.join(f), text).map_err(|e| e.to_string())?;
    }
    Ok(ca.cert_pem().to_string())
}

/// redis-server with TLS on `tls_port` (material from [`write_tls_material`]
/// in `dir`), requiring `password`, nothing persisted, plus `extra` flags.
fn spawn_tls_server(dir: &Path, tls_port: u16, password: &str, extra: &[&str]) -> Result<Child> {
    Command::new(redis_server())
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .args(["--tls-port", &tls_port.to_string()])
        .arg("--tls-cert-file")
        .arg(dir.join("server.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.pem"))
        .args(["--tls-auth-clients", "no", "--requirepass", password])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting redis-server: {e}"))
}

/// A three-master TLS Redis Cluster (the shards of a Redis Enterprise
/// database with the OSS cluster policy): certificate for `localhost`,
/// nodes announcing 127.0.0.1, one password; killed on drop.
pub struct RedisCluster {
    children: Vec<Child>,
    /// TLS ports of the masters on 127.0.0.1.
    pub ports: Vec<u16>,
    /// The CA's PEM text.
    pub ca_pem: String,
    ca_path: PathBuf,
    password: String,
    _dir: tempfile::TempDir,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl RedisCluster {
    /// Start the nodes, give each a third of the slots, introduce them and
    /// wait for `cluster_state:ok` everywhere.
    pub fn start(password: &str) -> Result<RedisCluster> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 6 {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let (tls, bus) = ports.split_at(3);
        let ca_pem = write_tls_material(dir.path(), tls[0])?;
        let mut cluster = RedisCluster {
            children: Vec::new(),
            ports: tls.to_vec(),
            ca_pem,
            ca_path: dir.path().join("ca.pem"),
            password: password.to_string(),
            _dir: dir,
        };
        let path = cluster._dir.path().to_path_buf();
        for (i, (port, bus)) in tls.iter().zip(bus).enumerate() {
            let conf = path.join(format!("nodes-{i}.conf"));
            let log = path.join(format!("node-{i}.log"));
            let child = spawn_tls_server(
                &path,
                *port,
                password,
                &[
                    "--port",
                    "0",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus.to_string(),
                    "--cluster-config-file",
                    &conf.display().to_string(),
                    "--cluster-announce-ip",
                    "127.0.0.1",
                    "--tls-cluster",
                    "yes",
                    "--masterauth",
                    password,
                    "--logfile",
                    &log.display().to_string(),
                ],
            )?;
            cluster.children.push(child);
        }
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (i, (lo, hi)) in ranges.iter().enumerate() {
            poll(Duration::from_secs(15), "a cluster node to answer", || {
                cluster
                    .node_cli(i, &["PING"])
                    .ok()?
                    .contains("PONG")
                    .then_some(())
            })?;
            let out = cluster.node_cli(
                i,
                &["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()],
            )?;
            if !out.contains("OK") {
                return Err(format!("CLUSTER ADDSLOTSRANGE: {out}"));
            }
        }
        // MEET again every few seconds until the nodes know each other: on
        // a busy machine a handshake may time out, and Redis does not retry
        // it by itself.
        let started = std::time::Instant::now();
        let formed = loop {
            for i in 1..3 {
                let (port, bus) = (tls[i].to_string(), bus[i].to_string());
                let out = cluster.node_cli(0, &["CLUSTER", "MEET", "127.0.0.1", &port, &bus])?;
                if !out.contains("OK") {
                    return Err(format!("CLUSTER MEET: {out}"));
                }
            }
            let round = poll(Duration::from_secs(5), "the cluster to form", || {
                (0..3)
                    .all(|i| {
                        cluster.node_cli(i, &["CLUSTER", "INFO"]).is_ok_and(|t| {
                            t.contains("cluster_state:ok") && t.contains("cluster_known_nodes:3")
                        })
                    })
                    .then_some(())
            });
            if round.is_ok() || started.elapsed() > Duration::from_secs(60) {
                break round;
            }
        };
        formed.map_err(|e| {
            let logs: Vec<String> = (0..3)
                .map(|i| {
                    std::fs::read_to_string(path.join(format!("node-{i}.log"))).unwrap_or_default()
                })
                .collect();
            format!("{e}\n{}", logs.join("\n"))
        })?;
        Ok(cluster)
    }

    /// `redis-cli` against node `i` (TLS); its stdout.
    pub fn node_cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let port = self.ports.get(i).ok_or("no such node")?;
        let mut cmd = Command::new(redis_cli());
        cmd.args(["--tls", "-h", "localhost", "-p", &port.to_string()])
            .arg("--cacert")
            .arg(&self.ca_path)
            .args(["--no-auth-warning", "-a", &self.password])
            .args(args);
        let out = output(cmd, None)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `DBSIZE` summed over the masters.
    pub fn total_keys(&self) -> Result<u64> {
        let mut n = 0;
        for i in 0..self.ports.len() {
            n += self
                .node_cli(i, &["DBSIZE"])?
                .trim()
                .parse::<u64>()
                .map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

fn redis_server() -> &'static str {
    if Path::new("/usr/bin/redis-server").exists() {
        "/usr/bin/redis-server"
    } else {
        "redis-server"
    }
}

/// The redis-cli binary.
pub fn redis_cli() -> &'static str {
    if Path::new("/usr/bin/redis-cli").exists() {
        "/usr/bin/redis-cli"
    } else {
        "redis-cli"
    }
}

/// The fixture's primary key of my-redis (the server's first password).
pub const MY_REDIS_PRIMARY: &str = "cHJpbWFyeS1rZXktb2YtbXktcmVkaXM=";

/// Object ID (principal ID) of the agent's managed identity `teleport-azure`:
/// the Redis user Microsoft Entra authentication logs in as.
pub const AGENT_OBJECT_ID: &str = "7b3e6d1f-2c4e-4f90-8b8c-1d2e3f4a5b02";

/// What [`AzureRedis::start_with`] adds to the guide's world.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extras {
    /// Open a plain TCP port on my-redis's server too (benchmarks).
    pub plain: bool,
    /// Add `entra-redis`: a cache with access keys disabled (Microsoft
    /// Entra ID only), backed by a second TLS redis-server where the agent's
    /// object ID is a user that takes any token (the server cannot check
    /// JWTs) and the default user's password is unknown to everyone.
    pub entra: bool,
    /// Back the fixture's Redis Enterprise database (OSS cluster policy,
    /// named `my-azure-redis-enterprise` by its `TeleportDatabaseName` tag)
    /// with a local three-node TLS Redis Cluster.
    pub enterprise: bool,
}

/// The fixture's primary key of my-enterprise's database.
pub const ENTERPRISE_PRIMARY: &str = "ZW50ZXJwcmlzZS1wcmltYXJ5";

/// The Redis guide's world: a cluster (auth + proxy), a TLS redis-server,
/// the emulator whose `my-redis` cache points at that server (named
/// `my-azure-redis` by its `TeleportDatabaseName` tag, `env: dev`), and a
/// database agent on the emulator's VM configured by `teleport db configure
/// create` with discovery in eastus. Everything stops on drop.
pub struct AzureRedis {
    /// Field order is drop order: the agent first.
    pub agent: crate::Agent,
    pub node: crate::Node,
    pub emu: azure_emulator::EmulatorHandle,
    pub rt: tokio::runtime::Runtime,
    pub redis: RedisTls,
    /// The server behind `entra-redis` ([`Extras::entra`]).
    pub entra: Option<RedisTls>,
    /// The cluster behind `my-azure-redis-enterprise` ([`Extras::enterprise`]).
    pub enterprise: Option<RedisCluster>,
    /// Where the pieces keep their files.
    pub dir: PathBuf,
}

impl AzureRedis {
    /// Start it all under `dir`; `plain` also opens a plain port on the server.
    pub fn start(dir: &Path, plain: bool) -> Result<AzureRedis> {
        Self::start_with(
            dir,
            Extras {
                plain,
                ..Extras::default()
            },
        )
    }

    /// Start it all under `dir`, with `extras`.
    pub fn start_with(dir: &Path, extras: Extras) -> Result<AzureRedis> {
        use crate::*;
        let redis = RedisTls::start_opts(MY_REDIS_PRIMARY, extras.plain)?;
        let port = redis.port;
        let redis_ca = redis.ca_path.display().to_string();
        let entra = if extras.entra {
            let unknown: [u8; 16] = rand_bytes();
            let server = RedisTls::start(&hex(&unknown))?;
            let out = server.cli(&[
                "ACL",
                "SETUSER",
                AGENT_OBJECT_ID,
                "on",
                "nopass",
                "~*",
                "&*",
                "+@all",
            ])?;
            if !String::from_utf8_lossy(&out.stdout).contains("OK") {
                return Err(format!("ACL SETUSER: {out:?}"));
            }
            Some(server)
        } else {
            None
        };
        let enterprise = if extras.enterprise {
            Some(RedisCluster::start(ENTERPRISE_PRIMARY)?)
        } else {
            None
        };
        let entra_port = entra.as_ref().map(|e| e.port);
        let enterprise_port = enterprise.as_ref().map(|c| c.ports[0]);
        let (rt, emu) = start_emulator_with(|doc| {
            if let Some(port) = enterprise_port {
                if let Some(e) = fixture_resource(doc, "redis_enterprise", "my-enterprise") {
                    e.insert("host".into(), "localhost".into());
                    let mut tags = serde_yaml_ng::Mapping::new();
                    tags.insert("env".into(), "dev".into());
                    tags.insert(
                        "TeleportDatabaseName".into(),
                        "my-azure-redis-enterprise".into(),
                    );
                    e.insert("tags".into(), tags.into());
                    if let Some(db) = e
                        .get_mut("databases")
                        .and_then(|d| d.as_sequence_mut())
                        .and_then(|d| d.first_mut())
                        .and_then(|d| d.as_mapping_mut())
                    {
                        db.insert("port".into(), (port as u64).into());
                    }
                }
            }
            let Some(r) = fixture_resource(doc, "redis", "my-redis") else {
                return;
            };
            r.insert("host".into(), "localhost".into());
            r.insert("ssl_port".into(), (port as u64).into());
            let mut tags = serde_yaml_ng::Mapping::new();
            tags.insert("env".into(), "dev".into());
            tags.insert("TeleportDatabaseName".into(), "my-azure-redis".into());
            r.insert("tags".into(), tags.into());
            // ARM's regenerateKey makes the new keys the server's passwords.
            let mut server = serde_yaml_ng::Mapping::new();
            server.insert("ca_file".into(), redis_ca.into());
            r.insert("server".into(), server.into());
            let Some(entra_port) = entra_port else {
                return;
            };
            let mut e = r.clone();
            e.remove("server");
            e.insert("name".into(), "entra-redis".into());
            e.insert("ssl_port".into(), (entra_port as u64).into());
            e.insert("access_keys_disabled".into(), true.into());
            let mut tags = serde_yaml_ng::Mapping::new();
            tags.insert("env".into(), "dev".into());
            e.insert("tags".into(), tags.into());
            if let Some(list) = fixture_list(doc, "redis", "my-redis") {
                list.push(e.into());
            }
        })?;
        let node = Node::start(&dir.join("node"), "redis.example", &Storage::Sqlite)?;
        let token = ok(node.tctl(&["tokens", "add", "--type=db", "--ttl=1h", "--format=text"])?)?;
        let token_file = dir.join("token");
        std::fs::write(&token_file, token.trim()).map_err(|e| e.to_string())?;
        let agent_dir = dir.join("agent");
        std::fs::create_dir_all(&agent_dir).map_err(|e| e.to_string())?;
        let conf = agent_dir.join("generated.yaml");
        let out = Command::new(bin("teleport")?)
            .args(["db", "configure", "create"])
            .arg(format!("-o=file://{}", conf.display()))
            .arg(format!("--proxy={}", node.web_addr))
            .arg(format!("--token={}", token_file.display()))
            .arg("--azure-redis-discovery=eastus")
            .arg(format!("--ca-pin={}", ca_pin(&node)?))
            .arg("--data-dir={data_dir}")
            .arg("--node-name=redis-agent")
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success()
            || !String::from_utf8_lossy(&out.stdout).contains("Wrote config to file")
        {
            return Err(format!("teleport db configure create: {out:?}"));
        }
        let config = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
        // The agent trusts the emulator's CA and the Redis server's CA as
        // system roots, as a VM trusts Azure's.
        let bundle = dir.join("roots.pem");
        let mut roots = format!("{}\n{}", emu.ca_pem(), redis.ca_pem);
        for ca in [
            entra.as_ref().map(|e| &e.ca_pem),
            enterprise.as_ref().map(|c| &c.ca_pem),
        ]
        .into_iter()
        .flatten()
        {
            roots.push('\n');
            roots.push_str(ca);
        }
        std::fs::write(&bundle, roots).map_err(|e| e.to_string())?;
        let mut env: Vec<(String, String)> = loopback_direct(emu.env(None))
            .into_iter()
            .filter(|(k, _)| k != "SSL_CERT_FILE")
            .collect();
        env.push(("SSL_CERT_FILE".into(), bundle.display().to_string()));
        env.push((
            "AZURE_CLIENT_ID".into(),
            "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01".into(),
        ));
        let agent = Agent::start_with_env(&agent_dir, &config, &env)?;
        Ok(AzureRedis {
            agent,
            node,
            emu,
            rt,
            redis,
            entra,
            enterprise,
            dir: dir.to_path_buf(),
        })
    }

    /// Add a user with `roles` (and extra `tctl users add` flags), log them
    /// in with tsh; returns their TELEPORT_HOME.
    pub fn login(&self, user: &str, roles: &str, extra: &[&str]) -> Result<PathBuf> {
        use crate::*;
        const PASSWORD: &str = "correct horse battery staple";
        let r = format!("--roles={roles}");
        let mut args = vec!["users", "add", user, r.as_str()];
        args.extend_from_slice(extra);
        let out = ok(self.node.tctl(&args)?)?;
        set_password(&self.node.web_addr, &invite_token(&out)?, PASSWORD)?;
        let home = self.dir.join(user);
        ok(tsh(
            &home,
            &[
                "login",
                &format!("--proxy={}", self.node.web_addr),
                &format!("--user={user}"),
                "--insecure",
            ],
            Some(&format!("{PASSWORD}\n")),
        )?)?;
        Ok(home)
    }

    /// Wait until `home`'s user sees `my-azure-redis` in `tsh db ls`.
    pub fn wait_listed(&self, home: &Path) -> Result<String> {
        self.wait_listed_db(home, "my-azure-redis")
    }

    /// Wait until `home`'s user sees `db` in `tsh db ls`.
    pub fn wait_listed_db(&self, home: &Path, db: &str) -> Result<String> {
        crate::poll(Duration::from_secs(60), "the discovered cache", || {
            let out = crate::ok(crate::tsh(home, &["db", "ls"], None).ok()?).ok()?;
            out.contains(db).then_some(out)
        })
        .map_err(|e| format!("{e}\n{}", self.agent.log()))
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A `tsh proxy db --tunnel` process; killed on drop.
pub struct Tunnel {
    child: Child,
    /// The local port the tunnel listens on.
    pub port: u16,
    /// Held open: tsh prints more after its first line.
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tunnel {
    /// `tsh [global...] proxy db --tunnel --port N db` as the user of `home`, started once tsh
    /// says so.
    pub fn start(home: &Path, global: &[&str], db: &str) -> Result<Tunnel> {
        use std::io::BufRead;
        let port = free_port();
        let mut child = Command::new(crate::bin("tsh")?)
            .env("TELEPORT_HOME", home)
            .args(global)
            .args(["proxy", "db", "--tunnel", "--port", &port.to_string(), db])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start tsh: {e}"))?;
        let mut tunnel = Tunnel {
            _stdout: std::io::BufReader::new(child.stdout.take().ok_or("tsh has no stdout")?),
            child,
            port,
        };
        let mut line = String::new();
        tunnel
            ._stdout
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let started = format!("Started authenticated tunnel for the Redis database \"{db}\"");
        if !line.contains(&started) {
            return Err(format!("tsh proxy db: {line}"));
        }
        Ok(tunnel)
    }
}

/// A raw RESP connection to 127.0.0.1, as a client keeps one.
pub struct Resp(pub std::net::TcpStream);

impl Resp {
    /// Connects to `port`; a reply may take `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> Result<Resp> {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        Ok(Resp(s))
    }

    /// Sends one command.
    pub fn send(&mut self, args: &[&str]) -> Result<()> {
        use std::io::Write;
        let mut b = format!("*{}\r\n", args.len());
        for a in args {
            b.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.write_all(b.as_bytes()).map_err(|e| e.to_string())
    }

    /// One line-ish reply: a simple, error or integer reply's line, a short bulk string's text,
    /// `(nil)` for a null bulk string; what was read when the connection closes.
    pub fn reply(&mut self) -> Result<String> {
        use std::io::Read;
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            if self.0.read(&mut byte).map_err(|e| e.to_string())? == 0 {
                break;
            }
            out.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&out).to_string();
        let Some(n) = head
            .strip_prefix('$')
            .and_then(|n| n.trim().parse::<i64>().ok())
        else {
            return Ok(head.trim_end().to_string());
        };
        let Ok(n) = usize::try_from(n) else {
            return Ok("(nil)".into());
        };
        let mut body = vec![0u8; n + 2];
        self.0.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&body[..n]).to_string())
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> Result<String> {
        self.send(args)?;
        self.reply()
    }
}

/// What `redis-benchmark` did: whether it succeeded, and its output.
pub struct Benchmark {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `redis-benchmark -h 127.0.0.1 -p port args...`, killed after `limit`.
pub fn redis_benchmark(port: u16, args: &[&str], limit: Duration) -> Result<Benchmark> {
    let mut bench = Command::new("/usr/bin/redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start redis-benchmark: {e}"))?;
    let status = poll(limit, "redis-benchmark to finish", || {
        bench.try_wait().ok().flatten()
    });
    if status.is_err() {
        let _ = bench.kill();
    }
    let out = bench.wait_with_output().map_err(|e| e.to_string())?;
    Ok(Benchmark {
        success: status?.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
