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

async fn script(State(st): State<Install>) -> Response {
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
        addr = st.public_addr,
        arch = std::env::consts::ARCH,
    );
    ([(header::CONTENT_TYPE, "text/x-shellscript")], text).into_response()
}
