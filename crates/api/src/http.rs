//! HTTP rules shared by everything that forwards requests (the app service's Azure forwarder,
//! tsh's app upstream, the local Azure proxy). Pure: header names are plain text, so no HTTP
//! library is needed.

/// Hop-by-hop header fields (lowercase): they describe one connection, never the request or
/// answer, so a forwarder drops them in both directions (RFC 9110 7.6.1, plus the
/// `Proxy-Connection` of old clients and the proxy credentials of RFC 9110 11.7).
/// `Content-Length` is not here: each forwarder decides whether the body it sends keeps it.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Whether the header named `name` (any case) is hop-by-hop ([`HOP_BY_HOP`]).
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_in_any_case() {
        for hop in [
            "connection",
            "Connection",
            "PROXY-CONNECTION",
            "Keep-Alive",
            "te",
            "Trailer",
            "transfer-encoding",
            "Upgrade",
            "Proxy-Authorization",
            "proxy-authenticate",
        ] {
            assert!(is_hop_by_hop(hop), "{hop}");
        }
        for end_to_end in [
            "authorization",
            "host",
            "content-length",
            "content-type",
            "trailers",
            "x-connection",
            "connection ",
            "",
        ] {
            assert!(!is_hop_by_hop(end_to_end), "{end_to_end}");
        }
    }
}
