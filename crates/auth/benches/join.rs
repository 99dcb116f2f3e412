//! Joins per second on one auth service (memory backend): the token join as the baseline, the
//! Azure method's verification path (attested document + access token, JWKS cached), and the
//! whole `register_with_azure` against the Azure emulator (challenge, verification, ARM lookup of
//! the VM, allow rules, certificates).

use std::sync::Arc;

use api::join::{AzureRegisterRequest, RegisterRequest};
use auth::{AuthConfig, AuthServer};
use azure_mint::http::HttpConfig;
use base64::Engine as _;

fn main() {
    divan::main();
}

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const CLIENT: &str = "6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01";

struct Env {
    rt: tokio::runtime::Runtime,
    emu: azure_emulator::EmulatorHandle,
    auth: Arc<AuthServer>,
    public_key: String,
}

fn env() -> Env {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let emu = rt
        .block_on(azure_emulator::Emulator::start_fixture(&fixture))
        .unwrap_or_else(|e| panic!("emulator: {e}"));
    let auth = rt
        .block_on(async {
            let backend: Arc<dyn backend::Backend> = Arc::new(backend::MemoryBackend::new().await);
            AuthServer::init(
                backend,
                AuthConfig {
                    cluster_name: "bench".into(),
                    static_tokens: vec!["node:bench-token-value".into()],
                    azure_join_extra_roots: vec![emu
                        .attestation_root_pem()
                        .unwrap_or_else(|e| panic!("{e}"))],
                    azure_http: Some(HttpConfig::with_proxy(
                        emu.proxy_url(None),
                        emu.ca_pem().as_bytes().to_vec(),
                    )),
                    ..Default::default()
                },
            )
            .await
        })
        .unwrap_or_else(|e| panic!("auth: {e}"));
    let token = serde_json::json!({
        "kind": "token", "version": "v2", "metadata": {"name": "azure-token"},
        "spec": {"roles": ["Node"], "join_method": "azure",
                 "azure": {"allow": [{"subscription": SUB, "resource_groups": ["my-resource-group"]}]}},
    });
    rt.block_on(auth.backend().put(backend::Item::new(
        "tokens/azure-token",
        serde_json::to_vec(&token).unwrap_or_default(),
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let key = pki::generate_key().unwrap_or_else(|e| panic!("{e}"));
    Env {
        rt,
        emu,
        auth,
        public_key: base64::engine::general_purpose::STANDARD.encode(&key.public_key_der),
    }
}

/// What an agent on the default VM sends (challenge, document, token, intermediates).
fn azure_request(e: &Env) -> AzureRegisterRequest {
    e.rt.block_on(async {
        let http =
            HttpConfig::with_proxy(e.emu.proxy_url(None), e.emu.ca_pem().as_bytes().to_vec());
        let imds = azure_mint::imds::ImdsClient::new(&http).unwrap_or_else(|e| panic!("{e}"));
        let challenge = e
            .auth
            .create_azure_challenge()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let doc = imds
            .attested_document(&challenge.challenge)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let token = imds
            .token(
                azure_attest::ARM_RESOURCE,
                &azure_mint::imds::ManagedIdentityId::ClientId(CLIENT.into()),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let attested_data =
            serde_json::json!({"encoding": doc.encoding, "signature": doc.signature}).to_string();
        let certs = azure_attest::document_certificates(attested_data.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let fetcher = azure_mint::aia::AiaFetcher::new(&http).unwrap_or_else(|e| panic!("{e}"));
        let ints = fetcher
            .intermediates(&certs[0])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        AzureRegisterRequest {
            token: "azure-token".into(),
            host_id: "bench-host".into(),
            node_name: "bench-host".into(),
            roles: vec!["Node".into()],
            public_key: e.public_key.clone(),
            dns_names: vec![],
            challenge: challenge.challenge,
            attested_data,
            intermediates: ints
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
                .collect(),
            access_token: token.access_token,
        }
    })
}

/// Baseline: a token join (token lookup, certificate issuance, audit).
#[divan::bench(sample_count = 30, sample_size = 10)]
fn token_join(bencher: divan::Bencher) {
    let e = env();
    let req = RegisterRequest {
        token: "bench-token-value".into(),
        host_id: "bench-host".into(),
        node_name: "bench-host".into(),
        roles: vec!["Node".into()],
        public_key: e.public_key.clone(),
        dns_names: vec![],
    };
    bencher.bench_local(|| {
        e.rt.block_on(e.auth.register_with_token(&req, "bench"))
            .unwrap_or_else(|e| panic!("{e}"))
    });
}

/// The Azure verification path with the JWKS cached: attested document (PKCS#7, signer, chain,
/// nonce, expiry) and access token (RS256, issuer, audience, times).
#[divan::bench(sample_count = 30, sample_size = 10)]
fn azure_verification(bencher: divan::Bencher) {
    let e = env();
    let req = azure_request(&e);
    let jwks = e.auth.azure_join().jwks().unwrap_or_else(|e| panic!("{e}"));
    let ints: Vec<Vec<u8>> = req
        .intermediates
        .iter()
        .filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .collect();
    let roots = e.auth.azure_join().roots().to_vec();
    // Warm the JWKS cache.
    e.rt.block_on(jwks.verify_arm_token(
        &req.access_token,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    bencher.bench_local(|| {
        let now = time::OffsetDateTime::now_utc();
        azure_attest::verify_attested_document(
            req.attested_data.as_bytes(),
            &roots,
            &ints,
            &req.challenge,
            now,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        e.rt.block_on(jwks.verify_arm_token(&req.access_token, now.unix_timestamp()))
            .unwrap_or_else(|e| panic!("{e}"))
    });
}

/// The whole `register_with_azure`, including the ARM lookup of the VM through the emulator.
#[divan::bench(sample_count = 10, sample_size = 3)]
fn azure_join_full(bencher: divan::Bencher) {
    let e = env();
    bencher
        .with_inputs(|| azure_request(&e))
        .bench_local_values(|req| {
            e.rt.block_on(e.auth.register_with_azure(&req, "bench"))
                .unwrap_or_else(|e| panic!("{e}"))
        });
}
