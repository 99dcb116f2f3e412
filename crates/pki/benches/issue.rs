//! Certificate issuance throughput.
//!
//! `sign_identity` with a realistic app identity, against a baseline of a bare rcgen
//! self-signed certificate (no custom attributes), both ECDSA P-256.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use pki::{CaType, CertAuthority, Identity, RouteToApp};

fn main() {
    divan::main();
}

fn realistic_identity() -> Identity {
    let mut traits = BTreeMap::new();
    traits.insert(
        "logins".to_string(),
        vec!["root".to_string(), "ubuntu".to_string()],
    );
    traits.insert(
        "azure_identities".to_string(),
        vec![azure_id("teleport-azure")],
    );
    traits.insert("db_users".to_string(), vec!["default".to_string()]);
    Identity {
        username: "alice@example.com".into(),
        groups: vec!["access".into(), "editor".into(), "azure-cli".into()],
        logins: vec!["root".into(), "ubuntu".into()],
        route_to_cluster: "example.teleport.sh".into(),
        traits,
        teleport_cluster: "example.teleport.sh".into(),
        expires: time::OffsetDateTime::now_utc() + time::Duration::hours(12),
        route_to_app: Some(RouteToApp {
            session_id: "9b0b6a8e-2f3c-4a57-9c55-5a1c1d3f8e21".into(),
            name: "azure-cli".into(),
            public_addr: "azure-cli.example.teleport.sh".into(),
            cluster_name: "example.teleport.sh".into(),
            azure_identity: azure_id("teleport-azure"),
        }),
        azure_identities: vec![azure_id("teleport-azure"), azure_id("reader")],
        usage: vec!["usage:apps".into()],
        ..Identity::default()
    }
}

fn azure_id(name: &str) -> String {
    format!(
        "/subscriptions/0a1b2c3d-1111-2222-3333-444455556666/resourceGroups/teleport-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

#[divan::bench]
fn sign_identity(bencher: divan::Bencher) {
    let ca = CertAuthority::generate("example.teleport.sh", CaType::User).unwrap();
    let key = pki::generate_key().unwrap();
    let id = realistic_identity();
    bencher.bench(|| {
        ca.sign_identity(divan::black_box(&id), &key.public_key_der)
            .unwrap()
    });
}

#[divan::bench]
fn parse_identity(bencher: divan::Bencher) {
    let ca = CertAuthority::generate("example.teleport.sh", CaType::User).unwrap();
    let key = pki::generate_key().unwrap();
    let pem = ca
        .sign_identity(&realistic_identity(), &key.public_key_der)
        .unwrap();
    let der = rustls_pki_der(&pem);
    bencher.bench(|| Identity::from_cert_der(divan::black_box(&der)).unwrap());
}

#[divan::bench]
fn baseline_rcgen_self_signed(bencher: divan::Bencher) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::default();
    bencher.bench(|| divan::black_box(&params).self_signed(&key).unwrap().pem());
}

fn rustls_pki_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
