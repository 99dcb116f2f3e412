//! The first bytes of every connection to the proxy: the ClientHello and its ALPN list, read
//! before any handshake to pick the route.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Any bytes: a route, a need for more, or an error that can be shown;
    // never a panic.
    match proxy::client_hello_route(data) {
        Ok(route) => drop(format!("{route:?}")),
        Err(e) => drop(e.to_string()),
    }
});
