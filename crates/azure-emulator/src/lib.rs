//! A fake Azure for tests and demos: IMDS, Entra ID and ARM, served behind a forward proxy so that
//! unmodified clients (the real `az` CLI, the Azure SDKs, `azure-mint`) believe they talk to Azure.
//!
//! Driven by a fixture file ([`fixture`]); [`Emulator::start`] returns a handle whose
//! [`EmulatorHandle::env`] is the environment a client needs to be a given VM of the fixture.

#![forbid(unsafe_code)]

pub mod arm;
pub mod der;
pub mod entra;
pub mod fixture;
pub mod imds;
pub mod jwt;
pub mod local_redis;
pub mod pki;
pub mod redis_server;
pub mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use fixture::World;
pub use server::Fault;

/// Errors of the emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The fixture file cannot be read or is inconsistent.
    #[error("fixture {path}: {message}")]
    Fixture {
        /// File path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Certificate or TLS setup failed.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// Key generation or signing failed.
    #[error("crypto: {0}")]
    Crypto(String),
    /// Socket or file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A VM name that the fixture does not have.
    #[error("no VM named {0:?} in the fixture")]
    UnknownVm(String),
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Hosts a client of the emulator reaches directly, not through its proxy: loopback, where the
/// rest of a test or demo (a Teleport cluster, a redis-server) listens. The proxy serves only the
/// Azure hosts it emulates and refuses a `CONNECT` to anything else.
pub const NO_PROXY: &str = "127.0.0.1,localhost,::1";

/// Variables of a client's own environment that would take its requests past the emulator
/// (other proxies, another managed-identity endpoint) or make it another identity. A client
/// given [`EmulatorHandle::env`] should inherit none of them.
pub const CLIENT_ENV_TO_CLEAR: [&str; 13] = [
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "ALL_PROXY",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
];

/// Entry point.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Starts the emulator for `world` on `127.0.0.1` with a free port.
    pub async fn start(world: World) -> Result<EmulatorHandle, Error> {
        Self::start_on(world, "127.0.0.1:0").await
    }

    /// Loads a fixture file and starts the emulator on a free port.
    pub async fn start_fixture(path: &Path) -> Result<EmulatorHandle, Error> {
        Self::start(World::load(path)?).await
    }

    /// Starts the emulator listening on `addr`.
    pub async fn start_on(world: World, addr: &str) -> Result<EmulatorHandle, Error> {
        let state = Arc::new(server::State::new(world)?);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("bind {addr}"), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("local address", e))?;
        let dir = tempfile::Builder::new()
            .prefix("azure-emulator-")
            .tempdir()
            .map_err(|e| Error::io("state directory", e))?;
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, state.ca_pem()).map_err(|e| Error::io("write CA file", e))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server::serve(listener, state.clone(), stop_rx));
        Ok(EmulatorHandle {
            addr: local,
            state,
            ca_path,
            _dir: dir,
            stop: stop_tx,
            task: Some(task),
        })
    }
}

/// A running emulator; stops when dropped.
#[derive(Debug)]
pub struct EmulatorHandle {
    addr: SocketAddr,
    state: Arc<server::State>,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The world being served.
    pub fn world(&self) -> &World {
        self.state.world()
    }

    /// The name of the default VM.
    pub fn default_vm(&self) -> &str {
        &self.state.world().default_vm
    }

    /// The proxy URL that makes a client the VM `vm` (the default VM when `None`).
    pub fn proxy_url(&self, vm: Option<&str>) -> String {
        match vm {
            Some(vm) => format!("http://{vm}:x@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The CA certificate (PEM) that the emulator's TLS hosts chain to.
    pub fn ca_pem(&self) -> &str {
        self.state.ca_pem()
    }

    /// The root (PEM) that attested documents chain to; verifiers pin it instead of Azure's roots.
    pub fn attestation_root_pem(&self) -> Result<String, Error> {
        self.state
            .attest_pki()
            .map(|p| p.root_pem.clone())
            .map_err(Error::Tls)
    }

    /// The file holding [`Self::ca_pem`].
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// Writes [`Self::attestation_root_pem`] to `path`, or to `attestation-root.pem` in the
    /// emulator's state directory when `None`, and returns the file's path: what a verifier of
    /// attested documents (the auth service's `azure_join.trust_bundle_path`) is given.
    pub fn write_attestation_root(&self, path: Option<&Path>) -> Result<PathBuf, Error> {
        let path = path.map_or_else(
            || self._dir.path().join("attestation-root.pem"),
            Path::to_path_buf,
        );
        std::fs::write(&path, self.attestation_root_pem()?)
            .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(path)
    }

    /// The environment that makes a client the VM `vm` (default VM when `None`): `HTTPS_PROXY`,
    /// `HTTP_PROXY`, `NO_PROXY` and `no_proxy` (loopback: [`NO_PROXY`]), `REQUESTS_CA_BUNDLE`,
    /// `SSL_CERT_FILE`. An unknown VM gets 407 from the proxy; [`Self::try_env`] checks the name
    /// first.
    pub fn env(&self, vm: Option<&str>) -> Vec<(String, String)> {
        let proxy = self.proxy_url(vm);
        let ca = self.ca_path.display().to_string();
        vec![
            ("HTTPS_PROXY".to_string(), proxy.clone()),
            ("HTTP_PROXY".to_string(), proxy),
            ("NO_PROXY".to_string(), NO_PROXY.to_string()),
            ("no_proxy".to_string(), NO_PROXY.to_string()),
            ("REQUESTS_CA_BUNDLE".to_string(), ca.clone()),
            ("SSL_CERT_FILE".to_string(), ca),
        ]
    }

    /// [`Self::env`], failing on a VM name the fixture does not have.
    pub fn try_env(&self, vm: Option<&str>) -> Result<Vec<(String, String)>, Error> {
        if let Some(name) = vm {
            if self.state.world().find_vm(name).is_none() {
                return Err(Error::UnknownVm(name.to_string()));
            }
        }
        Ok(self.env(vm))
    }

    /// The environment of the App Service managed-identity protocol (2019-08-01, `mi_res_id`,
    /// `X-IDENTITY-HEADER`) for VM `vm`, on top of [`Self::env`].
    pub fn app_service_env(&self, vm: Option<&str>) -> Result<Vec<(String, String)>, Error> {
        let mut env = self.try_env(vm)?;
        env.push((
            "IDENTITY_ENDPOINT".to_string(),
            format!("http://{}{}", server::IMDS_HOST, imds::APP_SERVICE_PATH),
        ));
        env.push((
            "IDENTITY_HEADER".to_string(),
            self.state.identity_header().to_string(),
        ));
        Ok(env)
    }

    /// Makes the next `count` requests whose `host + path` contains `pattern` fail with `status`
    /// and `body` (a JSON error in Azure's shape when `None`).
    pub fn fail_next(&self, pattern: &str, count: u32, status: u16, body: Option<&str>) {
        self.state.add_fault(Fault {
            pattern: pattern.to_string(),
            remaining: count,
            status,
            body: body.map(str::to_string),
            delay: None,
        });
    }

    /// Delays the next `count` requests matching `pattern` by `delay`.
    pub fn delay_next(&self, pattern: &str, count: u32, delay: Duration) {
        self.state.add_fault(Fault {
            pattern: pattern.to_string(),
            remaining: count,
            status: 0,
            body: None,
            delay: Some(delay),
        });
    }

    /// Sets the lifetime of tokens issued from now on (to expire them early).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.set_token_lifetime(lifetime);
    }

    /// Makes every token issued so far expired for ARM (the next request with one gets 401
    /// `ExpiredAuthenticationToken`); tokens minted afterwards (from the next second on) work.
    pub fn expire_issued_tokens(&self) {
        self.state.expire_issued_tokens();
    }

    /// Replaces the access keys of the Redis cache or Redis Enterprise database whose resource ID ends with
    /// `/<name>` (case-insensitive); returns the new (primary, secondary) keys.
    pub fn rotate_redis_keys(&self, name: &str) -> Option<(String, String)> {
        self.state.rotate_keys(name)
    }

    /// Number of requests served per `host + path` containing `pattern`.
    pub fn request_count(&self, pattern: &str) -> usize {
        self.state.request_count(pattern)
    }

    /// Stops serving and waits for the listener to close.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
