//! Join request bodies (`POST /v1/webapi/host/credentials` and `.../azure/credentials`, sent by
//! anyone who can reach the proxy): the JSON, the roles asked for, the names the auth service
//! lets into the certificate (`auth::agents::agent_cert_names`: only the agent's own host ID and
//! node name, checked host names, never a cluster-internal one), the public key to certify, and
//! the host certificate built from them, which must read back as the identity and names it was
//! given. The first byte picks the key: even, the body's own `public_key`; odd, a valid key.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::pem::PemObject as _;
use std::sync::LazyLock;

static CA: LazyLock<Option<pki::CertAuthority>> =
    LazyLock::new(|| pki::CertAuthority::generate("fuzz.example.com", pki::CaType::Host).ok());
static KEY: LazyLock<Option<Vec<u8>>> =
    LazyLock::new(|| pki::generate_key().ok().map(|k| k.public_key_der));

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let (host_id, node_name, roles, public_key, dns_names) =
        if let Ok(r) = serde_json::from_slice::<api::join::RegisterRequest>(body) {
            (r.host_id, r.node_name, r.roles, r.public_key, r.dns_names)
        } else if let Ok(r) = serde_json::from_slice::<api::join::AzureRegisterRequest>(body) {
            let _ = format!("{r:?}");
            (r.host_id, r.node_name, r.roles, r.public_key, r.dns_names)
        } else {
            return;
        };
    let mut asked = Vec::new();
    for r in &roles {
        match resources::SystemRole::parse_list(r) {
            Ok(list) => asked.extend(list),
            Err(_) => return,
        }
    }
    let system_roles: Vec<String> = asked.iter().map(|r| r.to_string()).collect();
    let key = if mode % 2 == 0 {
        match base64::engine::general_purpose::STANDARD.decode(public_key.as_bytes()) {
            Ok(k) => k,
            Err(_) => return,
        }
    } else {
        match KEY.as_ref() {
            Some(k) => k.clone(),
            None => return,
        }
    };
    let Some(ca) = CA.as_ref() else {
        return;
    };
    // The auth service's choice of names: only the agent's own, checked.
    let Ok(names) = auth::agents::agent_cert_names(&host_id, &node_name, &dns_names) else {
        return;
    };
    for n in &names {
        assert!(
            n.eq_ignore_ascii_case(&host_id) || n.eq_ignore_ascii_case(&node_name),
            "{n:?} is neither the host ID nor the node name"
        );
        assert!(pki::names::check_agent_name(n).is_ok(), "{n:?} not checked");
        let lower = n.trim_end_matches('.').to_ascii_lowercase();
        let suffix = pki::names::CLUSTER_LOCAL_SUFFIX;
        assert!(
            lower != suffix && !lower.ends_with(&format!(".{suffix}")),
            "{n:?} is a cluster-internal name"
        );
        // What a TLS client would dial by that name: a DNS name, not an IP address.
        match rustls_pki_types::ServerName::try_from(n.as_str()) {
            Ok(rustls_pki_types::ServerName::DnsName(_)) => {}
            other => panic!("{n:?} accepted as a host name, but TLS clients read it as {other:?}"),
        }
    }
    let host = pki::HostIdentity {
        host_id,
        nodename: node_name,
        cluster_name: "fuzz.example.com".into(),
        system_roles,
        dns_names: names.clone(),
        expires: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    if let Ok(pem) = ca.sign_host(&host, &key) {
        let want = host.to_identity();
        match pki::Identity::from_cert_pem(&pem) {
            Ok(got) => {
                assert_eq!(
                    got.username, want.username,
                    "host ID changed in the certificate"
                );
                assert_eq!(got.groups, want.groups, "roles changed in the certificate");
                assert_eq!(got.system_role, want.system_role);
                assert_eq!(got.teleport_cluster, want.teleport_cluster);
            }
            Err(e) => panic!("a host certificate we signed does not parse: {e}"),
        }
        // The certificate names exactly the names chosen, as DNS names.
        let der = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .and_then(Result::ok);
        let Some(der) = der else {
            panic!("a host certificate we signed is not PEM");
        };
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .unwrap_or_else(|e| panic!("a host certificate we signed does not parse: {e}"));
        let mut sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for g in &san.value.general_names {
                match g {
                    x509_parser::extensions::GeneralName::DNSName(d) => sans.push(d.to_string()),
                    other => panic!("unexpected SAN {other:?} in an agent certificate"),
                }
            }
        }
        assert_eq!(
            sans, names,
            "the certificate's SANs are not the names chosen"
        );
    }
});
