//! Identity <-> certificate round trips, CA behaviour and malformed input.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use pki::{
    ca_pin_from_cert_der, ca_pin_from_cert_pem, cert_not_after, generate_key, CaType,
    CertAuthority, HostIdentity, Identity, PkiError, RouteToApp, RouteToDatabase,
};
use sha2::{Digest, Sha256};
use time::macros::datetime;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// The PEM of a CA's software key.
fn key_pem(ca: &CertAuthority) -> String {
    ca.key_reference().software_key_pem().unwrap().to_owned()
}

fn full_identity() -> Identity {
    let mut traits = BTreeMap::new();
    traits.insert(
        "logins".to_string(),
        vec!["root".to_string(), "ünïcødé".to_string()],
    );
    traits.insert(
        "weird \"key\"\n".to_string(),
        vec!["{\"json\": [1,2]}".to_string(), String::new()],
    );
    traits.insert("empty".to_string(), vec![]);
    Identity {
        username: "アリス@example.com".into(),
        groups: vec!["access".into(), "editor".into(), "rôle ☃".into()],
        logins: vec!["root".into(), "ubuntu".into(), "".into()],
        route_to_cluster: "leaf.example.com".into(),
        traits,
        teleport_cluster: "root.example.com".into(),
        expires: datetime!(2031-05-06 07:08:09 UTC),
        route_to_app: Some(RouteToApp {
            session_id: "3f1c".into(),
            name: "azure-cli".into(),
            public_addr: "azure-cli.example.com".into(),
            cluster_name: "leaf.example.com".into(),
            azure_identity: "/subscriptions/1/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/ü".into(),
        }),
        azure_identities: vec!["/subscriptions/1/a".into(), "/subscriptions/1/b".into()],
        route_to_database: Some(RouteToDatabase {
            service_name: "redis-cache".into(),
            protocol: "redis".into(),
            username: "default".into(),
            database: "0".into(),
        }),
        db_users: vec!["default".into(), "admin".into()],
        db_names: vec!["0".into(), "1".into()],
        usage: vec!["usage:apps".into(), "usage:db".into()],
        system_role: Some("Proxy".into()),
    }
}

fn roundtrip(ca: &CertAuthority, id: &Identity) -> Identity {
    let key = generate_key().unwrap();
    let pem = ca.sign_identity(id, &key.public_key_der).unwrap();
    let from_pem = Identity::from_cert_pem(&pem).unwrap();
    assert_eq!(from_pem, Identity::from_cert_der(&der_of(&pem)).unwrap());
    // The certificate carries the caller's key and names the CA as issuer.
    let der = der_of(&pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(cert.public_key().raw, key.public_key_der.as_slice());
    let ca_der = ca.cert_der().to_vec();
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
    cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    from_pem
}

#[test]
fn full_identity_roundtrips() {
    let ca = CertAuthority::generate("root.example.com", CaType::User).unwrap();
    let id = full_identity();
    assert_eq!(roundtrip(&ca, &id), id);
}

#[test]
fn empty_identity_roundtrips() {
    let ca = CertAuthority::generate("c", CaType::User).unwrap();
    let id = Identity {
        expires: datetime!(2030-01-01 00:00:00 UTC),
        ..Identity::default()
    };
    assert_eq!(roundtrip(&ca, &id), id);
}

#[test]
fn many_values_and_long_strings_roundtrip() {
    let ca = CertAuthority::generate("c", CaType::User).unwrap();
    let mut id = full_identity();
    id.groups = (0..200).map(|i| format!("role-{i}-ř")).collect();
    id.azure_identities = (0..50).map(|i| "x".repeat(i * 20)).collect();
    id.username = "ü".repeat(5000);
    id.expires = datetime!(2060-02-03 04:05:06 UTC); // GeneralizedTime range
    assert_eq!(roundtrip(&ca, &id), id);
}

/// Tiny deterministic xorshift generator for the property test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 0
    }

    fn string(&mut self) -> String {
        const ALPHABET: &str = "aZ09 -_.@/:{}\"\\\n\tüß☃アリス😀,;=+<>#";
        let chars: Vec<char> = ALPHABET.chars().collect();
        let n = (self.next() % 12) as usize;
        (0..n)
            .map(|_| chars[(self.next() % chars.len() as u64) as usize])
            .collect()
    }

    fn non_empty(&mut self) -> String {
        let s = self.string();
        if s.is_empty() {
            "x".into()
        } else {
            s
        }
    }

    fn list(&mut self) -> Vec<String> {
        let n = (self.next() % 4) as usize;
        (0..n).map(|_| self.string()).collect()
    }
}

/// Round trip over many pseudo-random identities (deterministic seed).
#[test]
fn roundtrip_property() {
    let ca = CertAuthority::generate("prop", CaType::User).unwrap();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..64 {
        let mut traits = BTreeMap::new();
        for _ in 0..(r.next() % 3) {
            traits.insert(r.string(), r.list());
        }
        let id = Identity {
            username: r.string(),
            groups: r.list(),
            logins: r.list(),
            route_to_cluster: r.string(),
            traits,
            teleport_cluster: r.string(),
            expires: OffsetDateTime::from_unix_timestamp(
                1_700_000_000 + (r.next() % 2_000_000_000) as i64,
            )
            .unwrap(),
            route_to_app: r.coin().then(|| RouteToApp {
                session_id: r.non_empty(),
                name: r.string(),
                public_addr: r.string(),
                cluster_name: r.string(),
                azure_identity: r.string(),
            }),
            azure_identities: r.list(),
            route_to_database: r.coin().then(|| RouteToDatabase {
                service_name: r.non_empty(),
                protocol: r.string(),
                username: r.string(),
                database: r.string(),
            }),
            db_users: r.list(),
            db_names: r.list(),
            usage: r.list(),
            system_role: r.coin().then(|| r.string()),
        };
        assert_eq!(roundtrip(&ca, &id), id);
    }
}

#[test]
fn expires_is_not_after_with_second_precision() {
    let ca = CertAuthority::generate("c", CaType::User).unwrap();
    let key = generate_key().unwrap();
    let expires = OffsetDateTime::now_utc() + time::Duration::hours(12);
    let id = Identity {
        username: "bob".into(),
        expires,
        ..Identity::default()
    };
    let pem = ca.sign_identity(&id, &key.public_key_der).unwrap();
    let got = cert_not_after(&pem).unwrap();
    assert_eq!(got, expires.replace_nanosecond(0).unwrap());
    assert_eq!(Identity::from_cert_pem(&pem).unwrap().expires, got);
}

#[test]
fn expired_certificates_can_be_issued() {
    let ca = CertAuthority::generate("c", CaType::User).unwrap();
    let id = Identity {
        username: "old".into(),
        expires: datetime!(2001-01-01 00:00:00 UTC),
        ..Identity::default()
    };
    assert_eq!(roundtrip(&ca, &id), id);
}

#[test]
fn host_certificate() {
    let ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let key = generate_key().unwrap();
    let host = HostIdentity {
        host_id: "6a2e8f5c-0000-4000-8000-000000000001".into(),
        nodename: "vm-1".into(),
        cluster_name: "example.com".into(),
        system_roles: vec!["App".into(), "Db".into()],
        dns_names: vec![
            "vm-1".into(),
            "6a2e8f5c-0000-4000-8000-000000000001.example.com".into(),
            "10.0.0.4".into(),
            "::1".into(),
        ],
        expires: datetime!(2035-01-01 00:00:00 UTC),
    };
    let pem = ca.sign_host(&host, &key.public_key_der).unwrap();
    let id = Identity::from_cert_pem(&pem).unwrap();
    assert_eq!(id, host.to_identity());
    assert_eq!(id.username, host.host_id);
    assert_eq!(id.groups, ["App", "Db"]);
    assert_eq!(id.system_role.as_deref(), Some("App"));

    let der = der_of(&pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!("ip:{}", ip.len()),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "vm-1",
            "6a2e8f5c-0000-4000-8000-000000000001.example.com",
            "ip:4",
            "ip:16"
        ]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap();
    assert!(eku.value.client_auth && eku.value.server_auth);
    assert!(!cert.is_ca());

    let mut bad = host.clone();
    bad.dns_names.push("bad\u{e9}.example.com".into());
    assert!(matches!(
        ca.sign_host(&bad, &key.public_key_der),
        Err(PkiError::InvalidInput(_))
    ));
}

#[test]
fn ca_generation_and_reload() {
    let user = CertAuthority::generate("example.com", CaType::User).unwrap();
    let host = CertAuthority::generate("example.com", CaType::Host).unwrap();
    let db = CertAuthority::generate("example.com", CaType::Db).unwrap();
    assert_ne!(user.pin(), host.pin());
    assert_ne!(host.pin(), db.pin());
    for ca in [&user, &host, &db] {
        let (_, cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
        assert!(cert.is_ca());
        assert_eq!(
            cert.subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "example.com"
        );
        assert_eq!(
            cert.subject()
                .iter_organization()
                .next()
                .unwrap()
                .as_str()
                .unwrap(),
            "example.com"
        );
        let ou = cert.subject().iter_organizational_unit().next().unwrap();
        assert_eq!(ou.as_str().unwrap(), ca.ca_type().to_string());
        let years = (cert.validity().not_after.to_datetime()
            - cert.validity().not_before.to_datetime())
        .whole_days()
            / 365;
        assert_eq!(years, 10);

        let again = CertAuthority::from_pem(ca.cert_pem(), &key_pem(ca)).unwrap();
        assert_eq!(again.ca_type(), ca.ca_type());
        assert_eq!(again.pin(), ca.pin());
        assert_eq!(again.cert_der(), ca.cert_der());
    }
    let serials: std::collections::HashSet<Vec<u8>> = [&user, &host, &db]
        .iter()
        .map(|ca| {
            X509Certificate::from_der(ca.cert_der())
                .unwrap()
                .1
                .raw_serial()
                .to_vec()
        })
        .collect();
    assert_eq!(serials.len(), 3);

    // Mismatched key, non-CA cert, garbage.
    assert!(matches!(
        CertAuthority::from_pem(user.cert_pem(), &key_pem(&host)),
        Err(PkiError::Key(_))
    ));
    let key = generate_key().unwrap();
    let leaf = user
        .sign_identity(
            &Identity {
                username: "u".into(),
                expires: datetime!(2030-01-01 00:00:00 UTC),
                ..Identity::default()
            },
            &key.public_key_der,
        )
        .unwrap();
    assert!(CertAuthority::from_pem(&leaf, &key.private_key_pem).is_err());
    assert!(CertAuthority::from_pem("garbage", "garbage").is_err());
    assert!(CertAuthority::generate("", CaType::User).is_err());
    assert!(!format!("{user:?}").contains("PRIVATE"));
}

#[test]
fn pin_is_sha256_of_spki() {
    let ca = CertAuthority::generate("example.com", CaType::Host).unwrap();
    // Independently: the SPKI derived from the private key, hashed here.
    let spki = pki::public_key_der_from_private_pem(&key_pem(&ca)).unwrap();
    let expected = format!("sha256:{}", hex::encode(Sha256::digest(&spki)));
    assert_eq!(ca.pin(), expected);
    // And via x509-parser's raw SPKI of the certificate.
    let (_, cert) = X509Certificate::from_der(ca.cert_der()).unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(cert.public_key().raw))
        ),
        expected
    );
    assert_eq!(ca_pin_from_cert_pem(ca.cert_pem()).unwrap(), expected);
    assert_eq!(ca_pin_from_cert_der(ca.cert_der()).unwrap(), expected);
    assert_eq!(expected.len(), "sha256:".len() + 64);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let inputs = [
        "",
        "garbage",
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ];
    for input in inputs {
        assert!(Identity::from_cert_pem(input).is_err(), "{input:?}");
        assert!(cert_not_after(input).is_err(), "{input:?}");
        assert!(ca_pin_from_cert_pem(input).is_err(), "{input:?}");
    }

    // Every truncation and many single-byte corruptions of a real certificate.
    let ca = CertAuthority::generate("c", CaType::User).unwrap();
    let key = generate_key().unwrap();
    let der = der_of(
        &ca.sign_identity(&full_identity(), &key.public_key_der)
            .unwrap(),
    );
    for len in 0..der.len() {
        assert!(Identity::from_cert_der(&der[..len]).is_err());
    }
    for i in 0..der.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut d = der.clone();
            d[i] ^= flip;
            let _ = Identity::from_cert_der(&d); // may succeed or fail; must not panic
        }
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert!(Identity::from_cert_der(&trailing).is_err());
}

#[test]
fn bad_public_key_is_rejected() {
    let ca = CertAuthority::generate("c", CaType::User).unwrap();
    let id = Identity {
        username: "u".into(),
        expires: datetime!(2030-01-01 00:00:00 UTC),
        ..Identity::default()
    };
    for bad in [&b""[..], b"\x30\x00", b"not der at all"] {
        assert!(matches!(ca.sign_identity(&id, bad), Err(PkiError::Key(_))));
    }
    let mut spki = generate_key().unwrap().public_key_der;
    spki.push(0);
    assert!(ca.sign_identity(&id, &spki).is_err());
}
