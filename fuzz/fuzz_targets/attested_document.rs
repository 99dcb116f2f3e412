//! The Azure join's attested document (peer bytes read by the auth service before any trust):
//! the JSON wrapper, the PKCS#7 / DER reader, the certificate lookups, the date format.
//!
//! The first byte picks the form: even, the rest is the DER of the PKCS#7 SignedData, wrapped
//! as IMDS does (so mutations reach the DER reader instead of breaking base64); odd, the rest is
//! the document as sent.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ROOTS: LazyLock<Vec<String>> = LazyLock::new(azure_attest::pinned_roots);
const NONCE: &str = "abcdefghijklmnopqrstuvwxyzABCDEF";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let document = if mode % 2 == 0 {
        let b64 = base64::engine::general_purpose::STANDARD.encode(rest);
        format!(r#"{{"encoding":"pkcs7","signature":"{b64}"}}"#).into_bytes()
    } else {
        rest.to_vec()
    };
    let now = time::OffsetDateTime::from_unix_timestamp(1_780_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // The embedded certificates, and what the auth service reads from each.
    if let Ok(certs) = azure_attest::document_certificates(&document) {
        for c in &certs {
            for url in azure_attest::ca_issuers_urls(c) {
                let _ = azure_mint::aia::aia_url_allowed(&url);
            }
        }
        let _ = azure_attest::verify_attested_document(&document, &ROOTS, &certs, NONCE, now);
    }
    let _ = azure_attest::verify_attested_document(&document, &ROOTS, &[], NONCE, now);
    // A certificate as fetched through AIA, and the date format of the signed content.
    let _ = azure_attest::ca_issuers_urls(rest);
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = azure_attest::parse_attested_date(text);
        let _ = azure_attest::signer_name_allowed(text);
    }
});
