//! A plain-TCP redis-server of a test's own, to stand behind an emulated cache: it requires a
//! password, listens on a free port of 127.0.0.1, and is killed when dropped. Shared by the
//! tests of the crates that rotate cache keys (the emulator's own, db-service's).

use std::io::{Error, ErrorKind};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The redis-server binary the tests run.
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// The redis-cli binary used to change a running server's password.
const REDIS_CLI: &str = "/usr/bin/redis-cli";
/// How long a server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How many free ports are tried: another test may be handed the same one, and the server that
/// loses exits.
const PORT_ATTEMPTS: usize = 5;

/// A running redis-server; killed on drop.
pub struct LocalRedis {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What became of a server started on one port.
enum Started {
    Ready,
    Exited,
}

impl LocalRedis {
    /// Starts one requiring `password`, ready when its log says so.
    pub fn start(password: &str) -> Result<LocalRedis, Error> {
        let dir = tempfile::tempdir()?;
        let deadline = Instant::now() + START_TIMEOUT;
        for _ in 0..PORT_ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let log = dir.path().join(format!("redis-{port}.log"));
            let mut child = Command::new(REDIS_SERVER)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--requirepass", password])
                .arg("--dir")
                .arg(dir.path())
                .arg("--logfile")
                .arg(&log)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            match Self::wait_ready(&mut child, &log, deadline) {
                Ok(Started::Ready) => {
                    return Ok(LocalRedis {
                        child,
                        port,
                        _dir: dir,
                    })
                }
                Ok(Started::Exited) => continue,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            }
        }
        Err(Error::other(format!(
            "redis-server could not take any of {PORT_ATTEMPTS} free ports"
        )))
    }

    /// Polls the log of `child` until it is ready, or it exits, or `deadline` passes.
    fn wait_ready(child: &mut Child, log: &Path, deadline: Instant) -> Result<Started, Error> {
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return Ok(Started::Ready);
            }
            if child.try_wait()?.is_some() {
                return Ok(Started::Exited);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(Error::new(
            ErrorKind::TimedOut,
            "redis-server did not start",
        ))
    }

    /// Makes the server accept `new` only (as a cache after a key regeneration),
    /// authenticating with `old`.
    pub fn set_password(&self, old: &str, new: &str) -> Result<(), Error> {
        let out = Command::new(REDIS_CLI)
            .args(["-p", &self.port.to_string(), "--no-auth-warning", "-a", old])
            .args(["CONFIG", "SET", "requirepass", new])
            .output()?;
        let reply = String::from_utf8_lossy(&out.stdout);
        if reply.trim() == "OK" {
            Ok(())
        } else {
            Err(Error::other(format!(
                "CONFIG SET requirepass: {} {}",
                reply.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}
