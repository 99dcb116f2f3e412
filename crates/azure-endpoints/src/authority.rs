//! Addresses built from client input, parsed into what they must be before anything is dialled.
//!
//! A client names the host it wants in text (a `Host` header, a `CONNECT` target). That text is
//! never pasted into a URL: it is parsed into an [`Authority`] (a host that is a DNS name or an IP
//! literal, and an optional port), which refuses userinfo, paths, queries, fragments, whitespace,
//! control characters, percent-encoding and anything else a URL parser could read differently. An
//! [`AzureEndpoint`] is an authority whose DNS name is on the Azure allow-list; its [`url`] method
//! is the only way to turn it, with an [`OriginForm`] request target, into the URL that is dialled,
//! so the allow-list is checked on the host that is actually dialled.
//!
//! [`url`]: AzureEndpoint::url

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use api::names::{check_host_name, LastLabel};

/// Longest authority accepted (a 253-character DNS name, `:`, a 5-digit port, with room).
const MAX_AUTHORITY_LEN: usize = 270;
/// Longest request target accepted (bytes).
pub const MAX_TARGET_LEN: usize = 16 * 1024;

/// Why a client-supplied authority or request target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Nothing was given.
    #[error("the host is empty")]
    Empty,
    /// Too long to be a host and port.
    #[error("the host is longer than {MAX_AUTHORITY_LEN} characters")]
    TooLong,
    /// `user@host`: whatever comes before `@` is not the host that would be dialled.
    #[error("{0:?} carries userinfo ('@'): give only host[:port]")]
    Userinfo(String),
    /// A character that has no place in a host and port.
    #[error("{text:?} contains {found:?}, which has no place in host[:port]")]
    Character {
        /// The whole text.
        text: String,
        /// The offending character.
        found: char,
    },
    /// The port is not a number from 1 to 65535 without sign or leading zeros.
    #[error("{text:?} has an invalid port {port:?}: expected a number from 1 to 65535")]
    Port {
        /// The whole text.
        text: String,
        /// The port as given.
        port: String,
    },
    /// The host is not a DNS name (RFC 1123 labels) nor an IP literal.
    #[error("{text:?} is not a valid host name: {reason}")]
    Host {
        /// The whole text.
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The host is not on the Azure allow-list.
    #[error("{0:?} is not an Azure endpoint")]
    NotAzure(String),
    /// The request target is not origin-form (`/path?query`).
    #[error("the request target {0:?} is not a path starting with '/' (origin-form)")]
    Target(String),
}

/// The host part of an [`Authority`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name of RFC 1123 labels, lowercase, without a trailing dot.
    Dns(String),
    /// A dotted-quad IPv4 literal.
    Ipv4(Ipv4Addr),
    /// A bracketed IPv6 literal.
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Dns(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A `host[:port]` parsed from client input: nothing else (no userinfo, path, query, fragment).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    host: Host,
    port: Option<u16>,
}

impl Authority {
    /// Parses `host[:port]` as a `Host` header or a `CONNECT` target carries it. The host is a
    /// DNS name (letters, digits and `-` in labels of 1 to 63 characters, at most 253 in all, no
    /// trailing dot, the last label starting with a letter so that it cannot be read as a number),
    /// a dotted-quad IPv4 address, or a bracketed IPv6 address; the port, when given, is 1 to
    /// 65535 in decimal without leading zeros.
    pub fn parse(text: &str) -> Result<Authority, AddressError> {
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.len() > MAX_AUTHORITY_LEN {
            return Err(AddressError::TooLong);
        }
        if text.contains('@') {
            return Err(AddressError::Userinfo(text.to_string()));
        }
        if let Some(found) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
        {
            return Err(AddressError::Character {
                text: text.to_string(),
                found,
            });
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let Some((inside, after)) = rest.split_once(']') else {
                return Err(host_error(text, "an IPv6 literal without its closing ']'"));
            };
            let ip: Ipv6Addr = inside
                .parse()
                .map_err(|_| host_error(text, "not an IPv6 address inside '[ ]'"))?;
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(parse_port(text, p)?),
                    None => return Err(host_error(text, "text after the IPv6 literal")),
                },
            };
            (Host::Ipv6(ip), port)
        } else {
            if text.contains(['[', ']']) {
                return Err(host_error(text, "'[' or ']' outside an IPv6 literal"));
            }
            let (name, port) = match text.split_once(':') {
                Some((name, p)) => (name, Some(parse_port(text, p)?)),
                None => (text, None),
            };
            (parse_host(text, name)?, port)
        };
        Ok(Authority { host, port })
    }

    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port, when one was given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => write!(f, "{}", self.host),
        }
    }
}

fn host_error(text: &str, reason: &'static str) -> AddressError {
    AddressError::Host {
        text: text.to_string(),
        reason,
    }
}

fn parse_port(text: &str, port: &str) -> Result<u16, AddressError> {
    let bad = || AddressError::Port {
        text: text.to_string(),
        port: port.to_string(),
    };
    if port.is_empty() || port.len() > 5 || port.starts_with('0') {
        return Err(bad());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad()),
    }
}

fn parse_host(text: &str, name: &str) -> Result<Host, AddressError> {
    if name.is_empty() {
        return Err(host_error(text, "no host before the port"));
    }
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Ok(Host::Ipv4(ip));
    }
    if name.ends_with('.') {
        return Err(host_error(text, "a trailing '.'"));
    }
    // RFC 1123 labels (the rule host certificates follow too, `pki::names`), and a last label
    // starting with a letter: `127.1`, `0x7f000001`, `2130706433` are read as IPv4 addresses.
    check_host_name(name, LastLabel::StartsWithLetter).map_err(|e| host_error(text, e.reason()))?;
    Ok(Host::Dns(name.to_ascii_lowercase()))
}

/// An [`Authority`] whose host is a DNS name on the Azure allow-list
/// ([`crate::cloud::AZURE_ENDPOINT_SUFFIXES`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AzureEndpoint(Authority);

impl AzureEndpoint {
    /// Parses `host[:port]` (see [`Authority::parse`]) and requires its host to be an Azure
    /// endpoint.
    pub fn parse(text: &str) -> Result<AzureEndpoint, AddressError> {
        AzureEndpoint::try_from(Authority::parse(text)?)
    }

    /// The authority.
    pub fn authority(&self) -> &Authority {
        &self.0
    }

    /// The DNS name (lowercase).
    pub fn host(&self) -> &str {
        match &self.0.host {
            Host::Dns(name) => name,
            // Unreachable by construction; an empty host never matches anything.
            Host::Ipv4(_) | Host::Ipv6(_) => "",
        }
    }

    /// The HTTPS URL of `target` on this endpoint: built from the parsed authority only, and
    /// checked once more after parsing to name exactly this host and port.
    pub fn url(&self, target: &OriginForm) -> Result<url::Url, AddressError> {
        let text = format!("https://{}{}", self.0, target.as_str());
        let url = url::Url::parse(&text).map_err(|_| AddressError::Target(target.0.clone()))?;
        let same = url.scheme() == "https"
            && url.username().is_empty()
            && url.password().is_none()
            && url.host_str() == Some(self.host())
            && url.port_or_known_default() == Some(self.0.port.unwrap_or(443));
        if !same {
            return Err(AddressError::Target(target.0.clone()));
        }
        Ok(url)
    }
}

impl TryFrom<Authority> for AzureEndpoint {
    type Error = AddressError;

    fn try_from(authority: Authority) -> Result<AzureEndpoint, AddressError> {
        match &authority.host {
            Host::Dns(name) if crate::cloud::on_allow_list(name) => Ok(AzureEndpoint(authority)),
            host => Err(AddressError::NotAzure(host.to_string())),
        }
    }
}

impl fmt::Display for AzureEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A request target in origin-form: `/path[?query]`, visible ASCII only, no fragment, no
/// backslash. Absolute-form (`https://other.host/...`), authority-form (`host:port`) and
/// asterisk-form (`*`) are refused, so the target can never name a host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginForm(String);

impl OriginForm {
    /// Parses a request target as sent on the request line.
    pub fn parse(text: &str) -> Result<OriginForm, AddressError> {
        let bad = || AddressError::Target(text.chars().take(200).collect());
        if !text.starts_with('/') || text.len() > MAX_TARGET_LEN {
            return Err(bad());
        }
        if text
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'#' || b == b'\\')
        {
            return Err(bad());
        }
        Ok(OriginForm(text.to_string()))
    }

    /// The target text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn authorities_parse_into_host_and_port() {
        let a = Authority::parse("Management.Azure.com:443").unwrap();
        assert_eq!(a.host(), &Host::Dns("management.azure.com".into()));
        assert_eq!(a.port(), Some(443));
        assert_eq!(a.to_string(), "management.azure.com:443");
        let a = Authority::parse("management.azure.com").unwrap();
        assert_eq!(a.port(), None);
        let a = Authority::parse("169.254.169.254").unwrap();
        assert_eq!(a.host(), &Host::Ipv4(Ipv4Addr::new(169, 254, 169, 254)));
        let a = Authority::parse("[::1]:8443").unwrap();
        assert_eq!(a.host(), &Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(a.to_string(), "[::1]:8443");
        assert_eq!(
            Authority::parse("localhost:65535").unwrap().port(),
            Some(65535)
        );
        assert!(Authority::parse(&format!("{}.com", "a".repeat(63))).is_ok());
    }

    #[test]
    fn authorities_refuse_everything_but_host_and_port() {
        type Expect = fn(&AddressError) -> bool;
        let cases: &[(&str, Expect)] = &[
            ("", |e| matches!(e, AddressError::Empty)),
            ("management.azure.com:443@other.host:8443", |e| {
                matches!(e, AddressError::Userinfo(_))
            }),
            ("user:pw@management.azure.com", |e| {
                matches!(e, AddressError::Userinfo(_))
            }),
            ("@management.azure.com", |e| {
                matches!(e, AddressError::Userinfo(_))
            }),
            ("other.host/management.azure.com", |e| {
                matches!(e, AddressError::Character { found: '/', .. })
            }),
            ("other.host?management.azure.com", |e| {
                matches!(e, AddressError::Character { found: '?', .. })
            }),
            ("other.host#management.azure.com", |e| {
                matches!(e, AddressError::Character { found: '#', .. })
            }),
            ("other.host\\.management.azure.com", |e| {
                matches!(e, AddressError::Character { found: '\\', .. })
            }),
            ("management.azure.com ", |e| {
                matches!(e, AddressError::Character { found: ' ', .. })
            }),
            (" management.azure.com", |e| {
                matches!(e, AddressError::Character { .. })
            }),
            ("management.azure.com\t", |e| {
                matches!(e, AddressError::Character { .. })
            }),
            ("management.azure.com\r\nX: y", |e| {
                matches!(e, AddressError::Character { .. })
            }),
            ("management.azure.com\0", |e| {
                matches!(e, AddressError::Character { .. })
            }),
            ("management%2eazure.com", |e| {
                matches!(e, AddressError::Character { found: '%', .. })
            }),
            ("managément.azure.com", |e| {
                matches!(e, AddressError::Character { .. })
            }),
            ("management.azure.com:", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            ("management.azure.com:0", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            ("management.azure.com:0443", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            ("management.azure.com:65536", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            ("management.azure.com:99999999999", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            ("management.azure.com:+443", |e| {
                matches!(e, AddressError::Character { found: '+', .. })
            }),
            ("management.azure.com:443:80", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            ("management.azure.com:https", |e| {
                matches!(e, AddressError::Port { .. })
            }),
            (":443", |e| matches!(e, AddressError::Host { .. })),
            ("management.azure.com.", |e| {
                matches!(e, AddressError::Host { .. })
            }),
            ("management..azure.com", |e| {
                matches!(e, AddressError::Host { .. })
            }),
            (".management.azure.com", |e| {
                matches!(e, AddressError::Host { .. })
            }),
            ("-x.azure.com", |e| matches!(e, AddressError::Host { .. })),
            ("x-.azure.com", |e| matches!(e, AddressError::Host { .. })),
            ("127.1", |e| matches!(e, AddressError::Host { .. })),
            ("0x7f000001", |e| matches!(e, AddressError::Host { .. })),
            ("2130706433", |e| matches!(e, AddressError::Host { .. })),
            ("[::1", |e| matches!(e, AddressError::Host { .. })),
            ("[::1]x", |e| matches!(e, AddressError::Host { .. })),
            ("[nothex]", |e| matches!(e, AddressError::Host { .. })),
            ("a]b", |e| matches!(e, AddressError::Host { .. })),
        ];
        for (text, expected) in cases {
            let err = Authority::parse(text).unwrap_err();
            assert!(expected(&err), "{text:?}: {err:?}");
        }
        let long_label = format!("{}.azure.com", "a".repeat(64));
        assert!(Authority::parse(&long_label).is_err());
        let long_name = format!("{}azure.com", "abcdefghi.".repeat(25));
        assert!(Authority::parse(&long_name).is_err());
        assert_eq!(
            Authority::parse(&"a".repeat(300)),
            Err(AddressError::TooLong)
        );
    }

    #[test]
    fn azure_endpoints_are_checked_on_the_parsed_host() {
        let e = AzureEndpoint::parse("management.azure.com:443").unwrap();
        assert_eq!(e.host(), "management.azure.com");
        assert!(AzureEndpoint::parse("myvault.vault.azure.net").is_ok());
        for bad in [
            "169.254.169.254",
            "[::1]:443",
            "other.host",
            "management.azure.com.other.host",
            "evilmanagement.azure.com",
        ] {
            assert!(
                matches!(AzureEndpoint::parse(bad), Err(AddressError::NotAzure(_))),
                "{bad}"
            );
        }
        assert_eq!(
            AzureEndpoint::parse("169.254.169.254")
                .unwrap_err()
                .to_string(),
            "\"169.254.169.254\" is not an Azure endpoint"
        );
        assert!(matches!(
            AzureEndpoint::parse("management.azure.com:443@other.host:8443"),
            Err(AddressError::Userinfo(_))
        ));
    }

    #[test]
    fn urls_name_only_the_parsed_endpoint() {
        let e = AzureEndpoint::parse("management.azure.com").unwrap();
        let t = OriginForm::parse("/subscriptions?api-version=2022-12-01").unwrap();
        let url = e.url(&t).unwrap();
        assert_eq!(
            url.as_str(),
            "https://management.azure.com/subscriptions?api-version=2022-12-01"
        );
        let e = AzureEndpoint::parse("management.azure.com:8443").unwrap();
        let url = e
            .url(&OriginForm::parse("//other.host/x@y").unwrap())
            .unwrap();
        assert_eq!(url.host_str(), Some("management.azure.com"));
        assert_eq!(url.port(), Some(8443));
        assert_eq!(url.path(), "//other.host/x@y");
    }

    #[test]
    fn request_targets_must_be_origin_form() {
        assert!(OriginForm::parse("/").is_ok());
        assert!(OriginForm::parse("/a/b?c=d&e=%2F").is_ok());
        for bad in [
            "",
            "*",
            "https://other.host/x",
            "other.host:443",
            "@other.host/x",
            "/x#frag",
            "/x y",
            "/x\ty",
            "/x\r\n",
            "/x\\y",
            "/é",
        ] {
            assert!(
                matches!(OriginForm::parse(bad), Err(AddressError::Target(_))),
                "{bad:?}"
            );
        }
        assert!(OriginForm::parse(&format!("/{}", "a".repeat(MAX_TARGET_LEN))).is_err());
    }
}
