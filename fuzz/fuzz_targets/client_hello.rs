//! The first bytes of every connection to the proxy: the ClientHello and its ALPN list, read
//! before any handshake to pick the route.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(route)) = proxy::client_hello_route(data) {
        assert!(
            matches!(route.as_str(), "http" | "cluster" | "app" | "db")
                || route.starts_with("unsupported:"),
            "unknown route {route}"
        );
    }
});
