//! Outbound HTTP honours HTTPS_PROXY / HTTP_PROXY / SSL_CERT_FILE from the environment.
//! (Its own test binary: it changes the process environment.)

#![allow(clippy::unwrap_used)]

use std::path::Path;

use azure_emulator::Emulator;
use azure_mint::arm::ArmClient;
use azure_mint::credential;
use azure_mint::http::HttpConfig;
use azure_mint::imds::{ImdsClient, ManagedIdentityId};
use azure_mint::Cloud;

#[tokio::test]
async fn clients_use_the_proxy_and_ca_of_the_environment() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml");
    let emu = Emulator::start_fixture(&path).await.unwrap();
    for (k, v) in emu.env(None) {
        std::env::set_var(k, v);
    }
    for k in azure_emulator::CLIENT_ENV_TO_CLEAR {
        std::env::remove_var(k);
    }
    let cfg = HttpConfig::from_env();
    assert!(cfg.proxy.is_none());
    assert_eq!(cfg.extra_ca_file.as_deref(), Some(emu.ca_path()));

    let token = ImdsClient::new(&cfg)
        .unwrap()
        .token("https://management.azure.com/", &ManagedIdentityId::System)
        .await
        .unwrap();
    assert!(!token.access_token.is_empty());

    let mi = credential::managed_identity(
        &ManagedIdentityId::ClientId("6a2f5c0e-1b3d-4e8f-9a7b-0c1d2e3f4a01".into()),
        &cfg,
        Cloud::AzureCloud,
    )
    .unwrap();
    let arm = ArmClient::with_credential(&cfg, Cloud::AzureCloud, mi).unwrap();
    let subs = arm.list_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);

    // A CA file that does not exist is a setup error, not a panic.
    let broken = HttpConfig {
        extra_ca_file: Some(emu.ca_path().with_file_name("missing.pem")),
        ..HttpConfig::default()
    };
    assert!(matches!(broken.client(), Err(azure_mint::Error::Config(_))));
}
