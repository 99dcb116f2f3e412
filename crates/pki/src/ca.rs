//! [`CertAuthority`]: CA generation/loading and leaf issuance.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer as _;

use crate::der::{tag, Writer};
use crate::identity::{HostIdentity, Identity};
use crate::keystore::{
    KeyReference, KeyStore, RcgenSigner, SignatureAlgorithm, Signer, SoftwareKey,
};
use crate::{cert_pem_from_der, first_cert_der, parse_cert, pin_of_spki, CaType, PkiError};

/// CA validity.
const CA_VALIDITY: Duration = Duration::days(3650);
/// Backdating of `notBefore` to tolerate clock skew.
const CLOCK_SKEW: Duration = Duration::minutes(1);
/// Validity of [`self_signed_server_cert`] and [`CertAuthority::issue_server_cert`] defaults.
const SERVER_VALIDITY: Duration = Duration::days(365);

// Extension OIDs (content octets).
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const OID_KP_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const OID_KP_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// A certificate authority: its certificate and the [`Signer`] of its private key.
///
/// Every certificate it makes, its own self-signed one included, is signed only through
/// that `Signer`. Cheap to clone (the signer is shared). `Debug` does not print the key.
#[derive(Clone)]
pub struct CertAuthority {
    ca_type: CaType,
    cert_pem: String,
    cert_der: Vec<u8>,
    signer: Arc<dyn Signer>,
    /// The CA's subject `Name`, DER: the issuer of every leaf.
    subject_der: Vec<u8>,
    /// The CA's SubjectKeyIdentifier, copied into leaves' AuthorityKeyIdentifier.
    key_id: Option<Vec<u8>>,
    spki_der: Vec<u8>,
    sig_alg: SignatureAlgorithm,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("ca_type", &self.ca_type)
            .field("pin", &self.pin())
            .field("key", &"[elided]")
            .finish()
    }
}

/// What kind of leaf to build.
struct Leaf<'a> {
    subject_der: Vec<u8>,
    public_key_der: &'a [u8],
    not_after: OffsetDateTime,
    sans: &'a [String],
    server_auth: bool,
    client_auth: bool,
}

impl CertAuthority {
    /// Generates a self-signed CA with a new in-memory ECDSA P-256 key ([`SoftwareKey`]):
    /// see [`CertAuthority::generate_with_signer`].
    pub fn generate(cluster_name: &str, ca_type: CaType) -> Result<Self, PkiError> {
        Self::generate_with_signer(cluster_name, ca_type, Arc::new(SoftwareKey::generate()?))
    }

    /// Generates a self-signed CA with a new key of `keystore`.
    pub fn generate_in(
        keystore: &dyn KeyStore,
        cluster_name: &str,
        ca_type: CaType,
    ) -> Result<Self, PkiError> {
        Self::generate_with_signer(cluster_name, ca_type, keystore.generate()?)
    }

    /// Makes a CA of `signer`'s key, self-signed through it: valid 10 years, subject
    /// `CN=<cluster_name>, O=<cluster_name>, OU=<ca_type>`, random 128-bit serial.
    pub fn generate_with_signer(
        cluster_name: &str,
        ca_type: CaType,
        signer: Arc<dyn Signer>,
    ) -> Result<Self, PkiError> {
        if cluster_name.is_empty() {
            return Err(PkiError::InvalidInput("empty cluster name".into()));
        }
        let now = OffsetDateTime::now_utc();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cluster_name);
        dn.push(DnType::OrganizationName, cluster_name);
        dn.push(DnType::OrganizationalUnitName, ca_type.as_str());
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = truncate(now - CLOCK_SKEW);
        params.not_after = truncate(now + CA_VALIDITY);
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        let key = RcgenSigner::new(&*signer)?;
        let cert = match params.self_signed(&key) {
            Ok(cert) => cert,
            Err(e) => return Err(key.into_error(e)),
        };
        Self::with_signer(&cert.pem(), signer)
    }

    /// Loads a CA from its certificate and private key (PKCS#8/SEC1/PKCS#1 PEM), which
    /// becomes a [`SoftwareKey`]: see [`CertAuthority::with_signer`].
    /// Supported key types: ECDSA P-256/P-384, Ed25519, RSA (SHA-256).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        Self::with_signer(cert_pem, Arc::new(SoftwareKey::from_pem(key_pem)?))
    }

    /// Loads a CA from its certificate and the stored reference to its key in `keystore`.
    pub fn load(
        cert_pem: &str,
        key: &KeyReference,
        keystore: &dyn KeyStore,
    ) -> Result<Self, PkiError> {
        Self::with_signer(cert_pem, keystore.load(key)?)
    }

    /// A CA of its certificate and the signer of its key.
    ///
    /// The certificate must be a CA (basicConstraints cA=TRUE) whose first OU is the CA type
    /// (`user`/`host`/`db`, as written by [`CertAuthority::generate`]), and the signer's public
    /// key must be the certificate's.
    pub fn with_signer(cert_pem: &str, signer: Arc<dyn Signer>) -> Result<Self, PkiError> {
        let cert_der = first_cert_der(cert_pem)?;
        let cert = parse_cert(&cert_der)?;
        if !cert.is_ca() {
            return Err(PkiError::Certificate("not a CA certificate".into()));
        }
        let ca_type = cert
            .subject()
            .iter_organizational_unit()
            .next()
            .and_then(|ou| ou.as_str().ok())
            .ok_or_else(|| PkiError::Certificate("CA subject has no OU with the CA type".into()))?
            .parse::<CaType>()?;
        let spki_der = cert.public_key().raw.to_vec();
        if signer.public_key_der() != spki_der {
            return Err(PkiError::Key(
                "private key does not match the CA certificate".into(),
            ));
        }
        let sig_alg = signer.algorithm();
        let key_id = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(kid) => Some(kid.0.to_vec()),
                _ => None,
            });
        let subject_der = cert.subject().as_raw().to_vec();
        Ok(Self {
            ca_type,
            cert_pem: cert_pem_from_der(&cert_der),
            signer,
            subject_der,
            key_id,
            spki_der,
            sig_alg,
            cert_der,
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// What to store to open the CA's key again ([`CertAuthority::load`]): for a software key,
    /// its PEM as given/generated.
    pub fn key_reference(&self) -> KeyReference {
        self.signer.key_reference()
    }

    /// The signer of the CA's key.
    pub fn signer(&self) -> &Arc<dyn Signer> {
        &self.signer
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA type (from the certificate's OU).
    pub fn ca_type(&self) -> CaType {
        self.ca_type
    }

    /// `sha256:<hex>` of the SHA-256 over the CA's SubjectPublicKeyInfo DER.
    pub fn pin(&self) -> String {
        pin_of_spki(&self.spki_der)
    }

    /// Issues a leaf certificate for `identity` over `public_key_der` (SPKI DER), returned as
    /// PEM. `notAfter` = `identity.expires` (truncated to seconds), `notBefore` = now − 1 min.
    /// EKU clientAuth + serverAuth, no SANs.
    pub fn sign_identity(
        &self,
        identity: &Identity,
        public_key_der: &[u8],
    ) -> Result<String, PkiError> {
        let mut w = Writer::with_capacity(512);
        identity.write_subject(&mut w)?;
        self.sign_leaf(Leaf {
            subject_der: w.finish(),
            public_key_der,
            not_after: identity.expires,
            sans: &[],
            server_auth: true,
            client_auth: true,
        })
    }

    /// Issues a host certificate: CN = host id, O = each system role, `teleport_cluster` =
    /// cluster name, `system_role` = first system role, SANs = `dns_names` (IP SANs for
    /// entries that parse as IP addresses), EKU clientAuth + serverAuth.
    /// [`Identity::from_cert_der`] reads back [`HostIdentity::to_identity`].
    pub fn sign_host(
        &self,
        host: &HostIdentity,
        public_key_der: &[u8],
    ) -> Result<String, PkiError> {
        let mut w = Writer::with_capacity(256);
        host.to_identity().write_subject(&mut w)?;
        self.sign_leaf(Leaf {
            subject_der: w.finish(),
            public_key_der,
            not_after: host.expires,
            sans: &host.dns_names,
            server_auth: true,
            client_auth: true,
        })
    }

    /// Issues a server certificate for a listener over `public_key_der`: CN = first name,
    /// SANs = `dns_names` (IP SANs for entries that parse as IPs), EKU serverAuth.
    pub fn sign_server(
        &self,
        dns_names: &[String],
        public_key_der: &[u8],
        expires: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let first = dns_names
            .first()
            .ok_or_else(|| PkiError::InvalidInput("server certificate needs a name".into()))?;
        let mut w = Writer::with_capacity(128);
        Identity {
            username: first.clone(),
            ..Identity::default()
        }
        .write_subject(&mut w)?;
        self.sign_leaf(Leaf {
            subject_der: w.finish(),
            public_key_der,
            not_after: expires,
            sans: dns_names,
            server_auth: true,
            client_auth: false,
        })
    }

    /// Generates a P-256 key and a [`CertAuthority::sign_server`] certificate valid one year.
    /// Returns `(cert_pem, key_pem)`.
    pub fn issue_server_cert(&self, dns_names: &[String]) -> Result<(String, String), PkiError> {
        let key = crate::generate_key()?;
        let cert = self.sign_server(
            dns_names,
            &key.public_key_der,
            OffsetDateTime::now_utc() + SERVER_VALIDITY,
        )?;
        Ok((cert, key.private_key_pem))
    }

    fn sign_leaf(&self, leaf: Leaf<'_>) -> Result<String, PkiError> {
        check_spki(leaf.public_key_der)?;
        let not_after = truncate(leaf.not_after);
        let mut not_before = truncate(OffsetDateTime::now_utc() - CLOCK_SKEW);
        if not_before >= not_after {
            // Already-expired certificates are allowed (useful in tests); keep the range valid.
            not_before = not_after - CLOCK_SKEW;
        }
        check_year(not_before)?;
        check_year(not_after)?;

        let mut w = Writer::with_capacity(leaf.subject_der.len() + 512);
        let mut san_err = None;
        w.sequence(|w| {
            // version [0] EXPLICIT v3
            w.raw(&[0xa0, 0x03, 0x02, 0x01, 0x02]);
            w.unsigned_integer(&random_serial());
            w.raw(self.sig_alg.algorithm_identifier_der());
            w.raw(&self.subject_der);
            w.sequence(|w| {
                w.time(not_before);
                w.time(not_after);
            });
            w.raw(&leaf.subject_der);
            w.raw(leaf.public_key_der);
            w.nested(0xa3, |w| {
                w.sequence(|w| {
                    // basicConstraints: critical, cA FALSE
                    extension(w, OID_BASIC_CONSTRAINTS, true, |w| w.sequence(|_| {}));
                    // keyUsage: critical, digitalSignature
                    extension(w, OID_KEY_USAGE, true, |w| w.raw(&[0x03, 0x02, 0x07, 0x80]));
                    extension(w, OID_EXT_KEY_USAGE, false, |w| {
                        w.sequence(|w| {
                            if leaf.server_auth {
                                w.oid(OID_KP_SERVER_AUTH);
                            }
                            if leaf.client_auth {
                                w.oid(OID_KP_CLIENT_AUTH);
                            }
                        })
                    });
                    if !leaf.sans.is_empty() {
                        extension(w, OID_SUBJECT_ALT_NAME, false, |w| {
                            w.sequence(|w| {
                                for name in leaf.sans {
                                    if let Err(e) = write_san(w, name) {
                                        san_err.get_or_insert(e);
                                    }
                                }
                            })
                        });
                    }
                    if let Some(kid) = &self.key_id {
                        extension(w, OID_AUTHORITY_KEY_ID, false, |w| {
                            w.sequence(|w| w.primitive(0x80, kid))
                        });
                    }
                })
            });
        });
        if let Some(e) = san_err {
            return Err(e);
        }
        let tbs = w.finish();
        let signature = self.signer.sign(&tbs)?;
        let mut w = Writer::with_capacity(tbs.len() + signature.len() + 32);
        w.sequence(|w| {
            w.raw(&tbs);
            w.raw(self.sig_alg.algorithm_identifier_der());
            w.bit_string(&signature);
        });
        Ok(cert_pem_from_der(&w.finish()))
    }
}

/// Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
fn extension(w: &mut Writer, oid: &[u8], critical: bool, value: impl FnOnce(&mut Writer)) {
    w.sequence(|w| {
        w.oid(oid);
        if critical {
            w.boolean(true);
        }
        w.nested(tag::OCTET_STRING, value);
    });
}

fn write_san(w: &mut Writer, name: &str) -> Result<(), PkiError> {
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => w.primitive(0x87, &ip.octets()),
        Ok(IpAddr::V6(ip)) => w.primitive(0x87, &ip.octets()),
        Err(_) => {
            if name.is_empty() || !name.is_ascii() || name.bytes().any(|b| b.is_ascii_control()) {
                return Err(PkiError::InvalidInput(format!(
                    "{name:?} is not a valid DNS name for a certificate"
                )));
            }
            w.primitive(0x82, name.as_bytes());
        }
    }
    Ok(())
}

fn check_spki(der: &[u8]) -> Result<(), PkiError> {
    match x509_parser::x509::SubjectPublicKeyInfo::from_der(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(PkiError::Key("trailing bytes after public key".into())),
        Err(e) => Err(PkiError::Key(format!("invalid SubjectPublicKeyInfo: {e}"))),
    }
}

fn check_year(t: OffsetDateTime) -> Result<(), PkiError> {
    if (0..=9999).contains(&t.year()) {
        Ok(())
    } else {
        Err(PkiError::InvalidInput(format!(
            "{t} is out of range for X.509"
        )))
    }
}

/// 16 random bytes, positive and with a non-zero first byte (minimal DER, webpki-friendly).
fn random_serial() -> [u8; 16] {
    let mut s: [u8; 16] = rand::random();
    s[0] = (s[0] & 0x7f) | 0x40;
    s
}

fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

/// `notAfter` of the first certificate in `pem`.
pub fn cert_not_after(pem: &str) -> Result<OffsetDateTime, PkiError> {
    let der = first_cert_der(pem)?;
    Ok(parse_cert(&der)?.validity().not_after.to_datetime())
}

/// A self-signed ECDSA P-256 server certificate valid one year with SANs `dns_names`
/// (IP SANs for entries that parse as IPs), CN = first name. Returns `(cert_pem, key_pem)`.
pub fn self_signed_server_cert(dns_names: &[String]) -> Result<(String, String), PkiError> {
    let first = dns_names
        .first()
        .ok_or_else(|| PkiError::InvalidInput("server certificate needs a name".into()))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, first.as_str());
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = truncate(now - CLOCK_SKEW);
    params.not_after = truncate(now + SERVER_VALIDITY);
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::keystore::SoftwareKeyStore;

    /// A signer that counts its signatures, over a real key; `fail` makes every signature fail.
    struct Counting {
        inner: SoftwareKey,
        calls: AtomicUsize,
        fail: bool,
    }

    impl Counting {
        fn new(inner: SoftwareKey) -> Arc<Self> {
            Arc::new(Self {
                inner,
                calls: AtomicUsize::new(0),
                fail: false,
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Signer for Counting {
        fn public_key_der(&self) -> &[u8] {
            self.inner.public_key_der()
        }
        fn algorithm(&self) -> SignatureAlgorithm {
            self.inner.algorithm()
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail {
                return Err(PkiError::Key("key service unavailable".into()));
            }
            self.inner.sign(message)
        }
        fn key_reference(&self) -> KeyReference {
            self.inner.key_reference()
        }
    }

    /// Parses `pem` and checks its signature with the CA certificate's public key.
    fn verify_with_ca(ca: &CertAuthority, pem: &str) {
        let der = first_cert_der(pem).unwrap();
        let cert = parse_cert(&der).unwrap();
        let ca_cert = parse_cert(ca.cert_der()).unwrap();
        assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
        cert.verify_signature(Some(ca_cert.public_key())).unwrap();
    }

    fn host(expires: OffsetDateTime) -> HostIdentity {
        HostIdentity {
            host_id: "h1".into(),
            nodename: "node".into(),
            cluster_name: "example.com".into(),
            system_roles: vec!["Node".into()],
            dns_names: vec!["node.example.com".into(), "10.0.0.1".into()],
            expires,
        }
    }

    #[test]
    fn every_signature_goes_through_the_signer() {
        let signer = Counting::new(SoftwareKey::generate().unwrap());
        let ca = CertAuthority::generate_with_signer("example.com", CaType::Host, signer.clone())
            .unwrap();
        // The CA's own certificate: one signature, and it verifies with its own key.
        assert_eq!(signer.calls(), 1);
        let ca_cert = parse_cert(ca.cert_der()).unwrap();
        ca_cert.verify_signature(None).unwrap();
        assert_eq!(ca_cert.public_key().raw, signer.public_key_der());

        let key = crate::generate_key().unwrap();
        let expires = OffsetDateTime::now_utc() + Duration::hours(1);
        let identity = Identity {
            username: "alice".into(),
            groups: vec!["access".into()],
            expires,
            ..Identity::default()
        };
        let pem = ca.sign_identity(&identity, &key.public_key_der).unwrap();
        assert_eq!(signer.calls(), 2);
        verify_with_ca(&ca, &pem);

        let pem = ca.sign_host(&host(expires), &key.public_key_der).unwrap();
        assert_eq!(signer.calls(), 3);
        verify_with_ca(&ca, &pem);

        let names = vec!["proxy.example.com".to_string()];
        let pem = ca
            .sign_server(&names, &key.public_key_der, expires)
            .unwrap();
        assert_eq!(signer.calls(), 4);
        verify_with_ca(&ca, &pem);

        let (pem, _key) = ca.issue_server_cert(&names).unwrap();
        assert_eq!(signer.calls(), 5);
        verify_with_ca(&ca, &pem);

        // Clones share the signer; reloading over the same signer signs nothing.
        let again = CertAuthority::with_signer(ca.cert_pem(), signer.clone()).unwrap();
        assert_eq!(signer.calls(), 5);
        let pem = again
            .clone()
            .sign_identity(&identity, &key.public_key_der)
            .unwrap();
        assert_eq!(signer.calls(), 6);
        verify_with_ca(&ca, &pem);
    }

    #[test]
    fn other_algorithms_sign_through_the_trait() {
        for alg in [
            SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::Ed25519,
            SignatureAlgorithm::RsaPkcs1Sha256,
        ] {
            let pem = rcgen::KeyPair::generate_for(alg.rcgen())
                .unwrap()
                .serialize_pem();
            let signer = Counting::new(SoftwareKey::from_pem(&pem).unwrap());
            let ca =
                CertAuthority::generate_with_signer("c", CaType::User, signer.clone()).unwrap();
            parse_cert(ca.cert_der())
                .unwrap()
                .verify_signature(None)
                .unwrap();
            let key = crate::generate_key().unwrap();
            let identity = Identity {
                username: "u".into(),
                expires: OffsetDateTime::now_utc() + Duration::hours(1),
                ..Identity::default()
            };
            verify_with_ca(
                &ca,
                &ca.sign_identity(&identity, &key.public_key_der).unwrap(),
            );
            assert_eq!(signer.calls(), 2, "{alg:?}");
            // The stored reference opens the same key.
            let loaded =
                CertAuthority::load(ca.cert_pem(), &ca.key_reference(), &SoftwareKeyStore).unwrap();
            assert_eq!(loaded.pin(), ca.pin());
        }
    }

    #[test]
    fn a_failing_signer_fails_issuance_with_its_own_error() {
        let failing = Arc::new(Counting {
            inner: SoftwareKey::generate().unwrap(),
            calls: AtomicUsize::new(0),
            fail: true,
        });
        let err =
            CertAuthority::generate_with_signer("c", CaType::User, failing.clone()).unwrap_err();
        assert!(
            matches!(&err, PkiError::Key(m) if m == "key service unavailable"),
            "{err:?}"
        );
        assert_eq!(failing.calls(), 1);

        let ca = CertAuthority::generate("c", CaType::User).unwrap();
        let ca = CertAuthority::with_signer(
            ca.cert_pem(),
            Arc::new(Counting {
                inner: SoftwareKey::from_pem(ca.key_reference().software_key_pem().unwrap())
                    .unwrap(),
                calls: AtomicUsize::new(0),
                fail: true,
            }),
        )
        .unwrap();
        let key = crate::generate_key().unwrap();
        assert!(matches!(
            ca.sign_server(
                &["a".to_string()],
                &key.public_key_der,
                OffsetDateTime::now_utc() + Duration::hours(1)
            ),
            Err(PkiError::Key(_))
        ));
    }

    #[test]
    fn a_signer_of_another_key_is_refused() {
        let ca = CertAuthority::generate_in(&SoftwareKeyStore, "c", CaType::Db).unwrap();
        assert_eq!(ca.ca_type(), CaType::Db);
        let other = SoftwareKeyStore.generate().unwrap();
        assert!(matches!(
            CertAuthority::with_signer(ca.cert_pem(), other),
            Err(PkiError::Key(_))
        ));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}
