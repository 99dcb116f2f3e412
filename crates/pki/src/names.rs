//! Which names may appear in a host certificate.
//!
//! A host certificate's names decide which servers it can pose as, so they
//! come from what the auth service knows about the holder (its host ID, its
//! node name, a proxy's configured addresses), never from text a peer sends
//! beyond that; and the names every cluster server shares are reserved.

use std::fmt;

use api::names::{check_host_name, LastLabel};

/// The suffix of the cluster-internal names (`<hex(cluster)>.teleport.cluster.local`):
/// only the auth service's and proxy's own certificates carry them.
pub const CLUSTER_LOCAL_SUFFIX: &str = "teleport.cluster.local";

/// Why a name may not go into an agent's host certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not an RFC 1123 host name (letters, digits and '-' in dot-separated
    /// labels of 1 to 63 characters, 253 in all, no leading or trailing '-').
    NotHostName(String),
    /// A wildcard (`*`): agents hold names of one host only.
    Wildcard(String),
    /// A name of the cluster's own servers (`*.teleport.cluster.local`,
    /// `localhost`) or an IP address.
    Reserved(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::NotHostName(n) => write!(
                f,
                "{n:?} is not a valid host name (RFC 1123: letters, digits and '-' in dot-separated labels of at most 63 characters)"
            ),
            NameError::Wildcard(n) => write!(f, "{n:?} is a wildcard: agents' certificates name one host"),
            NameError::Reserved(n) => write!(
                f,
                "{n:?} is reserved for the cluster's own servers and cannot be in an agent's certificate"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Whether `name` is an RFC 1123 host name (ASCII, case-insensitive, one trailing dot allowed)
/// whose last label is not a number: `5`, `127.1` or `0x7f.1` are read as IPv4 addresses by URL
/// parsers and refused as DNS names by TLS clients (RFC 1123 2.1, the WHATWG URL "ends in a
/// number" rule). A last label may start with a digit otherwise (UUID host IDs). The parser is
/// [`api::names::check_host_name`], shared with the addresses clients name for dialling.
pub fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    check_host_name(name, LastLabel::NotNumeric).is_ok()
}

/// Checks a name an agent's host certificate would carry: an RFC 1123 host
/// name, no wildcard, not an IP address, not `localhost`, not under
/// [`CLUSTER_LOCAL_SUFFIX`].
pub fn check_agent_name(name: &str) -> Result<(), NameError> {
    if name.contains('*') {
        return Err(NameError::Wildcard(name.to_string()));
    }
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    if lower == "localhost"
        || lower.ends_with(".localhost")
        || lower == CLUSTER_LOCAL_SUFFIX
        || lower.ends_with(&format!(".{CLUSTER_LOCAL_SUFFIX}"))
        || lower.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(NameError::Reserved(name.to_string()));
    }
    if !is_host_name(name) {
        return Err(NameError::NotHostName(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        for ok in [
            "a",
            "node-1",
            "0e6c1f12-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
            "vm.example.com",
            "A.B",
        ] {
            assert!(check_agent_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "a b",
            "é.com",
            "a/b",
            "a@b",
            &"x".repeat(64),
        ] {
            assert!(
                matches!(check_agent_name(bad), Err(NameError::NotHostName(_))),
                "{bad}"
            );
        }
        assert!(!is_host_name(&format!("{}.com", "a.".repeat(126))));
    }

    /// Found by the join_request fuzz target: a host ID `5` went into a host
    /// certificate as a DNS name that TLS clients refuse to read as one.
    #[test]
    fn names_ending_in_a_number_are_not_host_names() {
        // URL parsers and TLS clients read these as IPv4 addresses (or refuse them).
        for numeric in [
            "5",
            "127.1",
            "010.0.0.4",
            "1.2.3.04",
            "0x7f.1",
            "host.0x",
            "vm.123",
        ] {
            assert!(
                matches!(check_agent_name(numeric), Err(NameError::NotHostName(_))),
                "{numeric}"
            );
        }
        for ok in [
            "12345678-1234-1234-1234-123456789012",
            "1a",
            "0xg",
            "123.vm-1",
            "node-1.example.com",
        ] {
            assert!(check_agent_name(ok).is_ok(), "{ok}");
        }
        // Every name accepted is a DNS name to rustls, as the agents' peers read it.
        for n in [
            "5",
            "a.5",
            "0x1f",
            "0",
            "a-1",
            "x.y1",
            "0e6c1f12-3a4b-4c5d-8e9f-0a1b2c3d4e5f",
        ] {
            if check_agent_name(n).is_ok() {
                assert!(
                    matches!(
                        rustls::pki_types::ServerName::try_from(n),
                        Ok(rustls::pki_types::ServerName::DnsName(_))
                    ),
                    "{n}"
                );
            }
        }
    }

    #[test]
    fn reserved_and_wildcards() {
        let cluster = format!("{}.{CLUSTER_LOCAL_SUFFIX}", hex::encode("example.com"));
        for reserved in [
            cluster.as_str(),
            "TELEPORT.CLUSTER.LOCAL",
            "x.Teleport.Cluster.Local.",
            "localhost",
            "a.localhost",
            "127.0.0.1",
            "::1",
        ] {
            assert!(
                matches!(check_agent_name(reserved), Err(NameError::Reserved(_))),
                "{reserved}"
            );
        }
        assert!(matches!(
            check_agent_name("*.example.com"),
            Err(NameError::Wildcard(_))
        ));
    }
}
