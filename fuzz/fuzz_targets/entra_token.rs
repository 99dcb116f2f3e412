//! Entra ID access tokens that agents send with an Azure join: the part of the auth service's
//! check that needs no network (`azure_mint::entra::ArmToken`). Parts split at NUL bytes: mode
//! byte, header JSON, claims JSON. In signing mode the target signs with its own RSA key and
//! verifies with it, so mutations reach the audience and time checks; otherwise the bytes are
//! the token as sent.
#![no_main]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};
use azure_mint::entra::ArmToken;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

struct Key {
    pair: RsaKeyPair,
    n: Vec<u8>,
    e: Vec<u8>,
}

static KEY: LazyLock<Option<Key>> = LazyLock::new(|| {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).ok()?;
    let n = pair
        .public_key()
        .modulus()
        .big_endian_without_leading_zero()
        .to_vec();
    let e = pair
        .public_key()
        .exponent()
        .big_endian_without_leading_zero()
        .to_vec();
    Some(Key { pair, n, e })
});

/// A fixed clock (2026-05-28), so findings reproduce.
const NOW: i64 = 1_780_000_000;

fuzz_target!(|data: &[u8]| {
    let Some(key) = KEY.as_ref() else {
        return;
    };
    let p = teleport_fuzz::parts(data, 3);
    if p[0].first().is_some_and(|m| m % 2 == 0) {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(p[1]),
            URL_SAFE_NO_PAD.encode(p[2])
        );
        let mut sig = vec![0; key.pair.public_modulus_len()];
        if key
            .pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed.as_bytes(),
                &mut sig,
            )
            .is_err()
        {
            return;
        }
        let jwt = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig));
        if let Ok(t) = ArmToken::parse(&jwt) {
            assert!(azure_mint::entra::tenant_id_ok(&t.tenant));
            if let Ok(v) = t.verify(&key.n, &key.e, NOW) {
                assert!(azure_mint::entra::tenant_id_ok(&v.tenant));
                let _ = v.str_claim("xms_mirid");
            }
        }
    } else if let Ok(jwt) = std::str::from_utf8(data) {
        if let Ok(t) = ArmToken::parse(jwt) {
            let _ = t.verify(&key.n, &key.e, NOW);
        }
    }
});
