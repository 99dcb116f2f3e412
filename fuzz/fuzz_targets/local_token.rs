//! The local proxy's token (`tsh proxy azure`): a JWT any local process can send. Parts split
//! at NUL bytes: mode byte, header JSON, claims JSON. In signing mode the target signs header
//! and claims with its own ES256 key, so mutations of the JSON reach the claim checks past the
//! signature; otherwise the bytes are the token as sent.
#![no_main]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static KEY: LazyLock<Option<EcdsaKeyPair>> = LazyLock::new(|| {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).ok()?;
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).ok()
});

fuzz_target!(|data: &[u8]| {
    let Some(key) = KEY.as_ref() else {
        return;
    };
    let public = key.public_key().as_ref();
    let p = teleport_fuzz::parts(data, 3);
    if p[0].first().is_some_and(|m| m % 2 == 0) {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(p[1]),
            URL_SAFE_NO_PAD.encode(p[2])
        );
        let Ok(sig) = key.sign(&SystemRandom::new(), signed.as_bytes()) else {
            return;
        };
        let jwt = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
        if let Ok(claims) = msi_proxy::verify_local_token(&jwt, public) {
            assert_eq!(claims.iss, msi_proxy::ISSUER);
        }
    } else if let Ok(jwt) = std::str::from_utf8(data) {
        let _ = msi_proxy::verify_local_token(jwt, public);
    }
});
