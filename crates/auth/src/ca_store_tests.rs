//! The stored CA format: records written before CA keys went through `pki::keystore` load,
//! and records written now are what older versions read.
#![allow(clippy::unwrap_used)]

use rustls::pki_types::pem::PemObject as _;
use x509_parser::prelude::FromDer as _;

use super::*;

/// The CA record as written before `KeyReference` (and as read by older versions).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OldStoredCa {
    cert_pem: String,
    key_pem: String,
}

fn key_pem(ca: &CertAuthority) -> String {
    ca.key_reference().software_key_pem().unwrap().to_owned()
}

#[tokio::test]
async fn cas_stored_by_the_old_format_load() {
    let backend: Arc<dyn Backend> = Arc::new(backend::MemoryBackend::new().await);
    backend
        .create(Item::new("cluster_name", b"old.example.com".to_vec()))
        .await
        .unwrap();
    let mut pins = BTreeMap::new();
    for kind in [CaType::User, CaType::Host, CaType::Db] {
        let ca = CertAuthority::generate("old.example.com", kind).unwrap();
        // Written literally, as the old code's serde_json::to_vec(&StoredCa) did.
        let json = format!(
            "{{\"cert_pem\":{},\"key_pem\":{}}}",
            serde_json::to_string(ca.cert_pem()).unwrap(),
            serde_json::to_string(&key_pem(&ca)).unwrap()
        );
        backend
            .create(Item::new(format!("authorities/{kind}"), json.into_bytes()))
            .await
            .unwrap();
        pins.insert(kind.to_string(), ca.pin());
    }
    let auth = AuthServer::init(backend, AuthConfig::default())
        .await
        .unwrap();
    assert_eq!(auth.cluster_name(), "old.example.com");
    assert_eq!(auth.user_ca().pin(), pins["user"]);
    assert_eq!(auth.host_ca().pin(), pins["host"]);
    assert_eq!(auth.db_ca().pin(), pins["db"]);

    // The loaded key signs: an admin certificate verifies with the stored host CA.
    let pem = auth.admin_identity_pem().unwrap();
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .unwrap();
    let (_, leaf) = x509_parser::certificate::X509Certificate::from_der(&certs[0]).unwrap();
    let (_, ca) = x509_parser::certificate::X509Certificate::from_der(&certs[1]).unwrap();
    assert_eq!(certs[1].as_ref(), auth.host_ca().cert_der());
    leaf.verify_signature(Some(ca.public_key())).unwrap();
}

#[tokio::test]
async fn cas_stored_now_keep_the_old_format() {
    let backend: Arc<dyn Backend> = Arc::new(backend::MemoryBackend::new().await);
    let auth = AuthServer::init(
        backend.clone(),
        AuthConfig {
            cluster_name: "new.example.com".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for (kind, ca) in [
        (CaType::User, auth.user_ca()),
        (CaType::Host, auth.host_ca()),
        (CaType::Db, auth.db_ca()),
    ] {
        let item = backend.get(&format!("authorities/{kind}")).await.unwrap();
        let old: OldStoredCa = serde_json::from_slice(&item.value).unwrap();
        assert_eq!(old.cert_pem, ca.cert_pem());
        assert_eq!(old.key_pem, key_pem(ca));
        assert_eq!(
            CertAuthority::from_pem(&old.cert_pem, &old.key_pem)
                .unwrap()
                .pin(),
            ca.pin()
        );
    }
}
