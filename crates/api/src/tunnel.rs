//! The target header of a reverse-tunnel stream: what the proxy asks the
//! agent for when it opens a stream. The proxy writes it with
//! [`StreamTarget::header`]; the agent reads it with [`StreamTarget::parse`],
//! which refuses anything but the known kinds with the fields they need.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What the proxy asks for on a tunnel stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamTarget {
    /// A keepalive probe: the agent answers `pong`.
    Ping,
    /// An app session: the app's name and the user's certificate (DER).
    App { name: String, cert: Vec<u8> },
    /// One database session of the user's certificate (DER).
    Db { cert: Vec<u8> },
    /// A user's multiplexed database connection (see
    /// [`crate::alpn::REDIS_MUX`]): every stream on it is a session of that
    /// certificate's.
    DbMux { cert: Vec<u8> },
}

/// The header as JSON: `{"kind": K, "name": N, "cert": base64 DER}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
}

/// Why a target header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tunnel stream target: {0}")]
pub struct TargetError(String);

impl StreamTarget {
    /// The kind as written in the header.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamTarget::Ping => "ping",
            StreamTarget::App { .. } => "app",
            StreamTarget::Db { .. } => "db",
            StreamTarget::DbMux { .. } => "db-mux",
        }
    }

    /// The header bytes the proxy sends.
    pub fn header(&self) -> Vec<u8> {
        let b64 = |c: &[u8]| Some(base64::engine::general_purpose::STANDARD.encode(c));
        let (name, cert) = match self {
            StreamTarget::Ping => (None, None),
            StreamTarget::App { name, cert } => (Some(name.clone()), b64(cert)),
            StreamTarget::Db { cert } | StreamTarget::DbMux { cert } => (None, b64(cert)),
        };
        let header = Header {
            kind: self.kind().to_string(),
            name,
            cert,
        };
        serde_json::to_vec(&header).unwrap_or_default()
    }

    /// Parses a header: a JSON object with only `kind`, `name` and `cert`,
    /// a known kind, and for sessions a certificate and (apps) an app name.
    /// A `name` on database kinds (sent by earlier proxies) is ignored.
    pub fn parse(bytes: &[u8]) -> Result<StreamTarget, TargetError> {
        let bad = |m: String| TargetError(m);
        // serde would also take the fields as an array: only an object is a header.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(bad("not a JSON object".into()));
        }
        let h: Header = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let cert = || -> Result<Vec<u8>, TargetError> {
            let b64 = h
                .cert
                .as_deref()
                .ok_or_else(|| bad("no \"cert\" (the user's certificate)".into()))?;
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| bad(format!("\"cert\" is not base64: {e}")))?;
            if der.is_empty() {
                return Err(bad("\"cert\" is empty".into()));
            }
            Ok(der)
        };
        match h.kind.as_str() {
            "ping" => Ok(StreamTarget::Ping),
            "app" => {
                let name = h
                    .name
                    .as_deref()
                    .ok_or_else(|| bad("no \"name\" (the app)".into()))?;
                if !crate::inventory::safe_name(name) {
                    return Err(bad(format!("{name:?} is not an app name")));
                }
                Ok(StreamTarget::App {
                    name: name.to_string(),
                    cert: cert()?,
                })
            }
            "db" => Ok(StreamTarget::Db { cert: cert()? }),
            "db-mux" => Ok(StreamTarget::DbMux { cert: cert()? }),
            other => Err(bad(format!("unknown kind {other:?}"))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::StreamTarget;

    /// The target header is the proxy's, but it is still parsed into what
    /// it must be: known kinds with the fields they need, nothing else.
    #[test]
    fn stream_targets_are_parsed_strictly() {
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"ping"}"#),
            Ok(StreamTarget::Ping)
        );
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"app","name":"azure-cli","cert":"AQI="}"#),
            Ok(StreamTarget::App {
                name: "azure-cli".into(),
                cert: vec![1, 2]
            })
        );
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"db-mux","name":"cache","cert":"AQI="}"#),
            Ok(StreamTarget::DbMux { cert: vec![1, 2] })
        );
        assert_eq!(
            StreamTarget::parse(br#"{"kind":"db","name":"cache","cert":"AQI="}"#),
            Ok(StreamTarget::Db { cert: vec![1, 2] })
        );
        for bad in [
            &br#"{"kind":"shell","cert":"AQI="}"#[..],
            br#"{"kind":"app","name":"azure-cli"}"#,
            br#"{"kind":"app","name":"../x","cert":"AQI="}"#,
            br#"{"kind":"app","name":"","cert":"AQI="}"#,
            br#"{"kind":"app","name":"a","cert":"not base64!"}"#,
            br#"{"kind":"db","cert":""}"#,
            br#"{"kind":"db"}"#,
            br#"{"kind":"db","cert":1}"#,
            br#"{"kind":"ping","extra":1}"#,
            br#"{"kind":7}"#,
            br#"{"kind":"ping","kind":"db"}"#,
            br#"["ping"]"#,
            br#"{}"#,
            b"",
            b"\xff\xfe",
        ] {
            assert!(
                StreamTarget::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// What the proxy writes, the agent reads back as the same target.
    #[test]
    fn headers_round_trip() {
        for t in [
            StreamTarget::Ping,
            StreamTarget::App {
                name: "azure-cli".into(),
                cert: vec![9; 300],
            },
            StreamTarget::Db { cert: vec![1] },
            StreamTarget::DbMux { cert: vec![2, 3] },
        ] {
            assert_eq!(StreamTarget::parse(&t.header()), Ok(t));
        }
    }
}
