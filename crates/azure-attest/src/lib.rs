//! The Azure join method's proof: verifying IMDS attested documents. Pure: bytes in, a verdict
//! out (no I/O; following AIA URLs takes the fetch as a function), so the auth service links no
//! agent or client code for it.
//!
//! An attested document is what IMDS returns for
//! `GET /metadata/attested/document?format=json&nonce=<challenge>`:
//! `{"encoding":"pkcs7","signature":"<base64 DER of a PKCS#7 SignedData>"}`. The SignedData holds
//! the content inline (a JSON object with `nonce`, `vmId`, `subscriptionId`, `timeStamp`, ...), the
//! signer's certificate (issued to `metadata.azure.com`) and one RSA PKCS#1 v1.5 SHA-256 signature.
//! Azure writes the signature algorithm's OID where the digest algorithm belongs; it is accepted
//! as SHA-256.
//!
//! [`verify_attested_document`] checks it all: encoding, structure, the signer found by issuer and
//! serial number, the signer's name, the signature, the chain to the trusted roots, the nonce and
//! the expiry.

use std::time::Duration;

use aws_lc_rs::signature;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer as _, GeneralName, ParsedExtension, X509Certificate};

/// The resource of the access token an agent sends.
pub const ARM_RESOURCE: &str = "https://management.azure.com/";
/// Most AIA certificates followed from the signer.
pub const MAX_AIA_DEPTH: usize = 10;
/// Longest accepted attested document (JSON).
pub const MAX_DOCUMENT: usize = 64 * 1024;

/// Microsoft's and DigiCert's roots that attested documents chain to (public certificates, as
/// distributed in the system trust stores).
pub const PINNED_ROOTS: &[&str] = &[
    include_str!("../roots/DigiCert_Global_Root_CA.pem"),
    include_str!("../roots/DigiCert_Global_Root_G2.pem"),
    include_str!("../roots/DigiCert_Global_Root_G3.pem"),
    include_str!("../roots/Microsoft_ECC_Root_Certificate_Authority_2017.pem"),
    include_str!("../roots/Microsoft_RSA_Root_Certificate_Authority_2017.pem"),
];

/// The pinned roots as owned strings.
pub fn pinned_roots() -> Vec<String> {
    PINNED_ROOTS.iter().map(|s| s.to_string()).collect()
}

/// Why an attested document was refused.
#[derive(Debug, thiserror::Error)]
pub enum AzureJoinError {
    /// The JSON wrapper is not what IMDS returns.
    #[error("the attested document is malformed: {0}")]
    Malformed(String),
    /// `encoding` is not `pkcs7`.
    #[error("the attested document's encoding is {0:?}, expected \"pkcs7\"")]
    Encoding(String),
    /// The PKCS#7 structure cannot be parsed.
    #[error("the attested document's PKCS#7 signature cannot be parsed: {0}")]
    Pkcs7(String),
    /// An algorithm other than RSA with SHA-256.
    #[error("the attested document uses an unsupported algorithm: {0}")]
    Algorithm(String),
    /// No embedded certificate matches the signer's issuer and serial number.
    #[error("the attested document's signer certificate is not embedded (no certificate matches the signer's issuer and serial number)")]
    SignerNotFound,
    /// The signer is not Azure's metadata service.
    #[error("the attested document is signed by {0:?}, not by metadata.azure.com (or a sovereign cloud's metadata service)")]
    SignerName(String),
    /// The signature does not verify.
    #[error("the attested document's signature does not verify: it was altered or not signed by its certificate")]
    Signature,
    /// The signer's chain does not verify to a trusted root.
    #[error("the attested document's signer certificate does not chain to a trusted root ({0}); if this is a new Azure chain, add its root to auth_service.azure_join.trust_bundle_path")]
    Chain(String),
    /// The signed content is not the expected JSON.
    #[error("the attested document's content is malformed: {0}")]
    Content(String),
    /// The nonce is not the challenge.
    #[error("the attested document's nonce does not match the challenge: it was fetched for another join attempt (replayed?)")]
    Nonce,
    /// `expiresOn` has passed.
    #[error("the attested document expired at {0}: fetch a fresh one")]
    Expired(String),
}

type Res<T> = std::result::Result<T, AzureJoinError>;

/// What a verified attested document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedContent {
    /// The nonce (the auth service's challenge).
    pub nonce: String,
    /// The VM's unique ID.
    pub vm_id: String,
    /// The VM's subscription.
    pub subscription_id: String,
    /// When the document was made.
    pub created_on: OffsetDateTime,
    /// When it expires.
    pub expires_on: OffsetDateTime,
    /// The image SKU.
    pub sku: String,
    /// The license type, if any.
    pub license_type: String,
    /// DNS names (SAN or CN) of the signer certificate.
    pub signer_names: Vec<String>,
}

#[derive(Deserialize)]
struct Wrapper {
    encoding: String,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawContent {
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    vm_id: String,
    #[serde(default)]
    subscription_id: String,
    #[serde(default)]
    sku: String,
    #[serde(default)]
    license_type: String,
    time_stamp: Option<RawTimeStamp>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTimeStamp {
    created_on: String,
    expires_on: String,
}

// ---------------------------------------------------------------------------------------------
// A minimal DER reader: definite lengths only, which is what Azure sends.

fn pkcs7_err(m: &str) -> AzureJoinError {
    AzureJoinError::Pkcs7(m.to_string())
}

/// One TLV: tag, content, and the whole encoding.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    full: &'a [u8],
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    fn read(&mut self) -> Res<Tlv<'a>> {
        let buf = self.buf;
        let (&tag, rest) = buf.split_first().ok_or_else(|| pkcs7_err("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(pkcs7_err("multi-byte tags are not supported"));
        }
        let (&first, rest) = rest.split_first().ok_or_else(|| pkcs7_err("truncated"))?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(pkcs7_err("indefinite lengths are not supported"));
            }
            if n > 4 || rest.len() < n {
                return Err(pkcs7_err("bad length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(pkcs7_err("truncated"));
        }
        let header = buf.len() - rest.len();
        let tlv = Tlv {
            tag,
            content: &rest[..len],
            full: &buf[..header + len],
        };
        self.buf = &rest[len..];
        Ok(tlv)
    }

    fn expect(&mut self, tag: u8, what: &str) -> Res<Tlv<'a>> {
        let t = self.read()?;
        if t.tag != tag {
            return Err(AzureJoinError::Pkcs7(format!(
                "expected {what} (tag {tag:#04x}), found tag {:#04x}",
                t.tag
            )));
        }
        Ok(t)
    }
}

const OID_SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
const OID_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
const OID_SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];

/// The parts of a SignedData that verification needs.
struct SignedData<'a> {
    content: Vec<u8>,
    certs: Vec<&'a [u8]>,
    sid_issuer: &'a [u8],
    sid_serial: &'a [u8],
    digest_oid: &'a [u8],
    signed_attrs: Option<Tlv<'a>>,
    signature_oid: &'a [u8],
    signature: &'a [u8],
}

fn algorithm_oid<'a>(alg: Tlv<'a>) -> Res<&'a [u8]> {
    Ok(Reader::new(alg.content)
        .expect(0x06, "an algorithm OID")?
        .content)
}

fn parse_signed_data(der: &[u8]) -> Res<SignedData<'_>> {
    let mut top = Reader::new(der);
    let ci = top.expect(0x30, "ContentInfo")?;
    let mut ci = Reader::new(ci.content);
    if ci.expect(0x06, "the content type")?.content != OID_SIGNED_DATA {
        return Err(pkcs7_err("not a SignedData"));
    }
    let explicit = ci.expect(0xa0, "[0] content")?;
    let sd = Reader::new(explicit.content).expect(0x30, "SignedData")?;
    let mut sd = Reader::new(sd.content);
    sd.expect(0x02, "the version")?;
    sd.expect(0x31, "the digest algorithms")?;
    let encap = sd.expect(0x30, "the encapsulated content")?;
    let mut encap = Reader::new(encap.content);
    if encap.expect(0x06, "the content type")?.content != OID_DATA {
        return Err(pkcs7_err("the signed content is not id-data"));
    }
    let econtent = encap.expect(
        0xa0,
        "the signed content (detached signatures are not accepted)",
    )?;
    let mut inner = Reader::new(econtent.content);
    let octets = inner.read()?;
    let content = match octets.tag {
        0x04 => octets.content.to_vec(),
        // A constructed OCTET STRING: the concatenation of its primitive parts.
        0x24 => {
            let mut out = Vec::new();
            let mut parts = Reader::new(octets.content);
            while !parts.is_empty() {
                out.extend_from_slice(parts.expect(0x04, "an OCTET STRING part")?.content);
            }
            out
        }
        _ => return Err(pkcs7_err("the signed content is not an OCTET STRING")),
    };
    let mut certs = Vec::new();
    if sd.peek_tag() == Some(0xa0) {
        let set = sd.read()?;
        let mut r = Reader::new(set.content);
        while !r.is_empty() {
            let c = r.read()?;
            if c.tag == 0x30 {
                certs.push(c.full);
            }
        }
    }
    if sd.peek_tag() == Some(0xa1) {
        sd.read()?;
    }
    let infos = sd.expect(0x31, "the signer infos")?;
    let mut infos = Reader::new(infos.content);
    let info = infos.expect(0x30, "a SignerInfo")?;
    if !infos.is_empty() {
        return Err(pkcs7_err("more than one signer"));
    }
    let mut si = Reader::new(info.content);
    si.expect(0x02, "the signer version")?;
    let sid = si.read()?;
    if sid.tag != 0x30 {
        return Err(pkcs7_err(
            "the signer is not identified by issuer and serial number",
        ));
    }
    let mut sid_r = Reader::new(sid.content);
    let sid_issuer = sid_r.expect(0x30, "the signer's issuer")?.full;
    let sid_serial = sid_r.expect(0x02, "the signer's serial number")?.content;
    let digest_oid = algorithm_oid(si.expect(0x30, "the digest algorithm")?)?;
    let signed_attrs = if si.peek_tag() == Some(0xa0) {
        Some(si.read()?)
    } else {
        None
    };
    let signature_oid = algorithm_oid(si.expect(0x30, "the signature algorithm")?)?;
    let signature = si.expect(0x04, "the signature")?.content;
    Ok(SignedData {
        content,
        certs,
        sid_issuer,
        sid_serial,
        digest_oid,
        signed_attrs,
        signature_oid,
        signature,
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|x| **x == 0).count();
    &b[n.min(b.len().saturating_sub(1))..]
}

/// The message the signature covers: the content, or the signed attributes (re-tagged as a SET)
/// after checking their message digest.
fn signed_message(sd: &SignedData<'_>) -> Res<Vec<u8>> {
    let Some(attrs) = sd.signed_attrs else {
        return Ok(sd.content.clone());
    };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &sd.content);
    let mut r = Reader::new(attrs.content);
    let mut matched = false;
    while !r.is_empty() {
        let attr = r.expect(0x30, "a signed attribute")?;
        let mut a = Reader::new(attr.content);
        if a.expect(0x06, "an attribute type")?.content == OID_MESSAGE_DIGEST {
            let values = a.expect(0x31, "the attribute values")?;
            let v = Reader::new(values.content).expect(0x04, "the message digest")?;
            if v.content != digest.as_ref() {
                return Err(AzureJoinError::Signature);
            }
            matched = true;
        }
    }
    if !matched {
        return Err(pkcs7_err("signed attributes without a message digest"));
    }
    let mut msg = attrs.full.to_vec();
    if let Some(first) = msg.first_mut() {
        *first = 0x31;
    }
    Ok(msg)
}

/// Whether `name` is Azure's metadata service (public cloud, US Government, China, Germany) or a
/// subdomain of it.
pub fn signer_name_allowed(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    [
        "metadata.azure.com",
        "metadata.azure.us",
        "metadata.azure.cn",
        "metadata.microsoftazure.de",
    ]
    .iter()
    .any(|d| name == *d || name.strip_suffix(d).is_some_and(|p| p.ends_with('.')))
}

fn cert_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_string());
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            names.push(s.to_string());
        }
    }
    names
}

/// Parses `MM/DD/YY HH:MM:SS -0000`, the date format of attested documents.
pub fn parse_attested_date(s: &str) -> Option<OffsetDateTime> {
    let mut parts = s.split_whitespace();
    let (date, clock, offset) = (
        parts.next()?,
        parts.next()?,
        parts.next().unwrap_or("-0000"),
    );
    if parts.next().is_some() {
        return None;
    }
    let nums = |s: &str, sep: char| -> Option<Vec<u8>> {
        let v: Option<Vec<u8>> = s.split(sep).map(|p| p.parse::<u8>().ok()).collect();
        v.filter(|v| v.len() == 3)
    };
    let d = nums(date, '/')?;
    let t = nums(clock, ':')?;
    let year = 2000 + i32::from(d[2]);
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(d[0]).ok()?, d[1]).ok()?;
    let clock = time::Time::from_hms(t[0], t[1], t[2]).ok()?;
    let (sign, hhmm) = match offset.split_at_checked(1)? {
        ("-", rest) => (-1i8, rest),
        ("+", rest) => (1i8, rest),
        _ => return None,
    };
    if hhmm.len() != 4 {
        return None;
    }
    let oh: i8 = hhmm.get(..2)?.parse().ok()?;
    let om: i8 = hhmm.get(2..)?.parse().ok()?;
    let offset = time::UtcOffset::from_hms(sign * oh, sign * om, 0).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_offset(offset))
}

fn unix_time(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(
        u64::try_from(t.unix_timestamp()).unwrap_or(0),
    ))
}

fn decode_wrapper(document_json: &[u8]) -> Res<Vec<u8>> {
    if document_json.len() > MAX_DOCUMENT {
        return Err(AzureJoinError::Malformed(format!(
            "larger than {MAX_DOCUMENT} bytes"
        )));
    }
    let w: Wrapper = serde_json::from_slice(document_json)
        .map_err(|e| AzureJoinError::Malformed(format!("not the JSON IMDS returns: {e}")))?;
    if !w.encoding.eq_ignore_ascii_case("pkcs7") {
        return Err(AzureJoinError::Encoding(w.encoding));
    }
    let compact: String = w.signature.split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| AzureJoinError::Malformed("the signature is not base64".into()))
}

/// The certificates embedded in an attested document (DER), signer first when it is found.
pub fn document_certificates(document_json: &[u8]) -> Res<Vec<Vec<u8>>> {
    let der = decode_wrapper(document_json)?;
    let sd = parse_signed_data(&der)?;
    Ok(sd.certs.iter().map(|c| c.to_vec()).collect())
}

/// Verifies one attested document, as IMDS returns it (`{"encoding":"pkcs7","signature":...}`),
/// and returns what it says.
///
/// Checks, in order: `encoding` is `pkcs7`; the PKCS#7 SignedData parses; its digest algorithm is
/// SHA-256 (Azure's quirk of writing sha256WithRSAEncryption there is accepted); the signer
/// certificate is the embedded one whose issuer and serial number match the SignerInfo; its DNS
/// name (SAN, else CN) is `metadata.azure.com`, `metadata.azure.us`, `metadata.azure.cn` or
/// `metadata.microsoftazure.de`, or a subdomain; the RSA PKCS#1 v1.5 SHA-256 signature verifies
/// with its key; its chain verifies at `now` to one of `trusted_roots_pem` through the embedded
/// certificates and `intermediates_der`; the content is JSON with `timeStamp`; its nonce equals
/// `expected_nonce`; `expiresOn` has not passed at `now`.
///
/// ```no_run
/// # fn demo(document: &[u8], intermediate: Vec<u8>) -> Result<(), azure_attest::AzureJoinError> {
/// let roots = azure_attest::pinned_roots();
/// let content = azure_attest::verify_attested_document(
///     document,          // the body of GET /metadata/attested/document?format=json&nonce=...
///     &roots,            // PEM roots: Microsoft's and DigiCert's, or a test root
///     &[intermediate],   // DER intermediates, e.g. fetched through the signer's AIA URL
///     "3q2-7wAAAAAAAAAAAAAAAAAAAAAAAAAA", // the challenge handed to the agent
///     time::OffsetDateTime::now_utc(),
/// )?;
/// println!("VM {} in subscription {}", content.vm_id, content.subscription_id);
/// # Ok(())
/// # }
/// ```
pub fn verify_attested_document(
    document_json: &[u8],
    trusted_roots_pem: &[String],
    intermediates_der: &[Vec<u8>],
    expected_nonce: &str,
    now: OffsetDateTime,
) -> Result<AttestedContent, AzureJoinError> {
    let der = decode_wrapper(document_json)?;
    let sd = parse_signed_data(&der)?;
    if sd.digest_oid != OID_SHA256 && sd.digest_oid != OID_SHA256_RSA {
        return Err(AzureJoinError::Algorithm(
            "the digest algorithm is not SHA-256".into(),
        ));
    }
    if sd.signature_oid != OID_RSA && sd.signature_oid != OID_SHA256_RSA {
        return Err(AzureJoinError::Algorithm(
            "the signature algorithm is not RSA".into(),
        ));
    }

    // The signer: the embedded certificate with the SignerInfo's issuer and serial number.
    let mut signer = None;
    for c in &sd.certs {
        let Ok((_, cert)) = X509Certificate::from_der(c) else {
            continue;
        };
        if cert.tbs_certificate.issuer.as_raw() == sd.sid_issuer
            && strip_zeros(cert.tbs_certificate.raw_serial()) == strip_zeros(sd.sid_serial)
        {
            signer = Some((*c, cert));
            break;
        }
    }
    let (signer_der, signer) = signer.ok_or(AzureJoinError::SignerNotFound)?;

    let names = cert_names(&signer);
    if !names.iter().any(|n| signer_name_allowed(n)) {
        return Err(AzureJoinError::SignerName(names.join(", ")));
    }

    let spki = signer.public_key();
    if spki.algorithm.algorithm.as_bytes() != OID_RSA {
        return Err(AzureJoinError::Algorithm(
            "the signer's key is not RSA".into(),
        ));
    }
    let message = signed_message(&sd)?;
    signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        spki.subject_public_key.data.as_ref(),
    )
    .verify(&message, sd.signature)
    .map_err(|_| AzureJoinError::Signature)?;

    // The chain.
    let mut root_ders = Vec::new();
    for pem in trusted_roots_pem {
        for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            match c {
                Ok(c) => root_ders.push(c),
                Err(e) => {
                    return Err(AzureJoinError::Chain(format!(
                        "a trusted root is not valid PEM: {e}"
                    )))
                }
            }
        }
    }
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    if anchors.is_empty() {
        return Err(AzureJoinError::Chain(
            "no trusted root is configured".into(),
        ));
    }
    let mut intermediates: Vec<CertificateDer<'_>> = intermediates_der
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    for c in &sd.certs {
        if *c != signer_der {
            intermediates.push(CertificateDer::from(*c));
        }
    }
    let leaf = CertificateDer::from(signer_der);
    let ee = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| AzureJoinError::Chain(format!("the signer certificate: {e}")))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &intermediates,
        unix_time(now),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| AzureJoinError::Chain(e.to_string()))?;

    // The content.
    let raw: RawContent = serde_json::from_slice(&sd.content)
        .map_err(|e| AzureJoinError::Content(format!("not JSON: {e}")))?;
    let ts = raw
        .time_stamp
        .ok_or_else(|| AzureJoinError::Content("no timeStamp".into()))?;
    let created_on = parse_attested_date(&ts.created_on).ok_or_else(|| {
        AzureJoinError::Content(format!("bad timeStamp.createdOn {:?}", ts.created_on))
    })?;
    let expires_on = parse_attested_date(&ts.expires_on).ok_or_else(|| {
        AzureJoinError::Content(format!("bad timeStamp.expiresOn {:?}", ts.expires_on))
    })?;
    if raw.vm_id.is_empty() || raw.subscription_id.is_empty() {
        return Err(AzureJoinError::Content(
            "vmId or subscriptionId is missing".into(),
        ));
    }
    if expected_nonce.is_empty() || raw.nonce != expected_nonce {
        return Err(AzureJoinError::Nonce);
    }
    if expires_on <= now {
        return Err(AzureJoinError::Expired(ts.expires_on));
    }
    Ok(AttestedContent {
        nonce: raw.nonce,
        vm_id: raw.vm_id,
        subscription_id: raw.subscription_id,
        created_on,
        expires_on,
        sku: raw.sku,
        license_type: raw.license_type,
        signer_names: names,
    })
}

/// The AIA "CA Issuers" URLs of a certificate (DER).
pub fn ca_issuers_urls(cert_der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else {
        return Vec::new();
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for d in &aia.accessdescs {
                if d.access_method
                    == x509_parser::oid_registry::OID_PKIX_ACCESS_DESCRIPTOR_CA_ISSUERS
                {
                    if let GeneralName::URI(u) = &d.access_location {
                        urls.push(u.to_string());
                    }
                }
            }
        }
    }
    urls
}

/// Why following AIA URLs stopped.
#[derive(Debug, thiserror::Error)]
pub enum IntermediatesError<E: std::error::Error + 'static> {
    /// Fetching a URL failed.
    #[error(transparent)]
    Fetch(E),
    /// A URL answered something that is not a DER certificate.
    #[error("{0} is not a DER certificate")]
    NotCertificate(String),
}

/// Follows AIA "CA Issuers" URLs from `leaf_der` (at most [`MAX_AIA_DEPTH`], only URLs that
/// `allowed` accepts, no cycles), returning the certificates found, self-signed roots excluded.
/// `fetch` does the I/O (the auth service and agents pass `azure_mint::aia::AiaFetcher`).
pub async fn fetch_intermediates<F, Fut, E>(
    leaf_der: &[u8],
    allowed: impl Fn(&str) -> bool,
    mut fetch: F,
) -> Result<Vec<Vec<u8>>, IntermediatesError<E>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<u8>, E>>,
    E: std::error::Error + 'static,
{
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut current = leaf_der.to_vec();
    for _ in 0..MAX_AIA_DEPTH {
        let urls = ca_issuers_urls(&current);
        let Some(url) = urls.into_iter().find(|u| allowed(u) && !seen.contains(u)) else {
            break;
        };
        seen.insert(url.clone());
        let der = fetch(url.clone())
            .await
            .map_err(IntermediatesError::Fetch)?;
        let Ok((_, cert)) = X509Certificate::from_der(&der) else {
            return Err(IntermediatesError::NotCertificate(url));
        };
        if cert.subject().as_raw() == cert.issuer().as_raw() {
            break;
        }
        out.push(der.clone());
        current = der;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use azure_emulator::der;
    use azure_mint::http::HttpConfig;

    /// Follows AIA URLs with the real fetcher, as the auth service does.
    async fn follow(
        fetcher: &azure_mint::aia::AiaFetcher,
        leaf: &[u8],
    ) -> Result<Vec<Vec<u8>>, String> {
        // azure-mint links its own build of this crate, so its error type is not `crate`'s.
        fetcher.intermediates(leaf).await.map_err(|e| e.to_string())
    }

    const NONCE: &str = "abcdefghijklmnopqrstuvwxyzABCDEF";

    fn fixture() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/azure-emulator.yaml")
    }

    /// A document fetched from the emulator's IMDS, its root and the intermediates found via AIA.
    struct Fetched {
        doc: Vec<u8>,
        root: String,
        intermediates: Vec<Vec<u8>>,
        _emu: azure_emulator::EmulatorHandle,
    }

    async fn fetch(nonce: &str) -> Fetched {
        let emu = azure_emulator::Emulator::start_fixture(&fixture())
            .await
            .unwrap();
        let http = HttpConfig::with_proxy(emu.proxy_url(None), emu.ca_pem().as_bytes().to_vec());
        let imds = azure_mint::imds::ImdsClient::new(&http).unwrap();
        let d = imds.attested_document(nonce).await.unwrap();
        let doc = serde_json::json!({"encoding": d.encoding, "signature": d.signature})
            .to_string()
            .into_bytes();
        let certs = document_certificates(&doc).unwrap();
        assert_eq!(certs.len(), 1, "Azure embeds the leaf only");
        let fetcher = azure_mint::aia::AiaFetcher::new(&http).unwrap();
        let intermediates = follow(&fetcher, &certs[0]).await.unwrap();
        assert_eq!(intermediates.len(), 1, "one intermediate, root excluded");
        Fetched {
            doc,
            root: emu.attestation_root_pem().unwrap(),
            intermediates,
            _emu: emu,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn wrap(der_bytes: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der_bytes);
        serde_json::json!({"encoding": "pkcs7", "signature": b64})
            .to_string()
            .into_bytes()
    }

    fn unwrap_der(doc: &[u8]) -> Vec<u8> {
        decode_wrapper(doc).unwrap()
    }

    #[tokio::test]
    async fn emulator_documents() {
        let f = fetch(NONCE).await;
        let roots = vec![f.root.clone()];
        // Valid.
        let c = verify_attested_document(&f.doc, &roots, &f.intermediates, NONCE, now()).unwrap();
        assert_eq!(c.nonce, NONCE);
        assert_eq!(c.vm_id, "8c4f7e20-3d5f-4a01-9c9d-2e3f4a5b6c03");
        assert_eq!(c.subscription_id, "00000000-0000-0000-0000-000000000000");
        assert!(c.expires_on > c.created_on);
        assert_eq!(c.sku, "server");

        // Wrong nonce (a replayed document).
        let e = verify_attested_document(&f.doc, &roots, &f.intermediates, "other", now());
        assert!(matches!(e, Err(AzureJoinError::Nonce)), "{e:?}");

        // Expired: expiresOn is 6 hours after creation.
        let later = now() + time::Duration::hours(7);
        let e = verify_attested_document(&f.doc, &roots, &f.intermediates, NONCE, later);
        assert!(matches!(e, Err(AzureJoinError::Expired(_))), "{e:?}");

        // Untrusted root.
        let other = azure_emulator::imds::AttestPki::generate().unwrap();
        let e = verify_attested_document(
            &f.doc,
            std::slice::from_ref(&other.root_pem),
            &f.intermediates,
            NONCE,
            now(),
        );
        assert!(matches!(e, Err(AzureJoinError::Chain(_))), "{e:?}");
        // The pinned Azure roots do not trust the emulator either.
        let e = verify_attested_document(&f.doc, &pinned_roots(), &f.intermediates, NONCE, now());
        assert!(matches!(e, Err(AzureJoinError::Chain(_))), "{e:?}");
        // Without the intermediate the chain does not build.
        let e = verify_attested_document(&f.doc, &roots, &[], NONCE, now());
        assert!(matches!(e, Err(AzureJoinError::Chain(_))), "{e:?}");

        // Tampered signature (the last bytes of the DER are the signature).
        let mut der_bytes = unwrap_der(&f.doc);
        let n = der_bytes.len();
        der_bytes[n - 5] ^= 0x01;
        let e = verify_attested_document(&wrap(&der_bytes), &roots, &f.intermediates, NONCE, now());
        assert!(matches!(e, Err(AzureJoinError::Signature)), "{e:?}");

        // Tampered content: another vmId.
        let mut der_bytes = unwrap_der(&f.doc);
        let needle = b"8c4f7e20";
        let at = der_bytes
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap();
        der_bytes[at] = b'9';
        let e = verify_attested_document(&wrap(&der_bytes), &roots, &f.intermediates, NONCE, now());
        assert!(matches!(e, Err(AzureJoinError::Signature)), "{e:?}");

        // Wrong encoding, garbage.
        let e = verify_attested_document(
            br#"{"encoding":"base64","signature":"AAAA"}"#,
            &roots,
            &[],
            NONCE,
            now(),
        );
        assert!(matches!(e, Err(AzureJoinError::Encoding(_))), "{e:?}");
        let e = verify_attested_document(&wrap(b"\x30\x03\x02\x01"), &roots, &[], NONCE, now());
        assert!(matches!(e, Err(AzureJoinError::Pkcs7(_))), "{e:?}");
    }

    #[tokio::test]
    async fn expired_document_signed_by_the_emulator_chain() {
        let pki = azure_emulator::imds::AttestPki::generate().unwrap();
        let content = serde_json::json!({
            "nonce": NONCE, "vmId": "v", "subscriptionId": "s", "sku": "",
            "timeStamp": {"createdOn": "01/02/24 03:04:05 -0000", "expiresOn": "01/02/24 09:04:05 -0000"},
        })
        .to_string();
        let doc = wrap(&pki.sign_pkcs7(content.as_bytes()).unwrap());
        let roots = vec![pki.root_pem.clone()];
        let ints = vec![pki.intermediate_der.clone()];
        let e = verify_attested_document(&doc, &roots, &ints, NONCE, now());
        match e {
            Err(AzureJoinError::Expired(at)) => assert_eq!(at, "01/02/24 09:04:05 -0000"),
            other => panic!("{other:?}"),
        }
        // Valid at a time before expiry (the chain is valid from a day ago).
        let fresh = serde_json::json!({
            "nonce": NONCE, "vmId": "v", "subscriptionId": "s",
            "timeStamp": {"createdOn": "01/02/24 03:04:05 -0000", "expiresOn": "01/02/99 09:04:05 -0000"},
        })
        .to_string();
        let doc = wrap(&pki.sign_pkcs7(fresh.as_bytes()).unwrap());
        verify_attested_document(&doc, &roots, &ints, NONCE, now()).unwrap();
        // No timeStamp.
        let bare =
            serde_json::json!({"nonce": NONCE, "vmId": "v", "subscriptionId": "s"}).to_string();
        let doc = wrap(&pki.sign_pkcs7(bare.as_bytes()).unwrap());
        let e = verify_attested_document(&doc, &roots, &ints, NONCE, now());
        assert!(matches!(e, Err(AzureJoinError::Content(_))), "{e:?}");
    }

    /// A self-made chain and SignedData, to control the signer's name and certificate order.
    struct Chain {
        root_pem: String,
        leaf_der: Vec<u8>,
        leaf_key: rcgen::KeyPair,
    }

    fn chain(name: &str) -> Chain {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let rsa = || {
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
        };
        let root_key = rsa();
        let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.distinguished_name
            .push(DnType::CommonName, "Test Root");
        let root_cert = root.self_signed(&root_key).unwrap();
        let leaf_key = rsa();
        let mut leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
        leaf.distinguished_name.push(DnType::CommonName, name);
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_cert = leaf
            .signed_by(&leaf_key, &Issuer::from_params(&root, &root_key))
            .unwrap();
        Chain {
            root_pem: root_cert.pem(),
            leaf_der: leaf_cert.der().to_vec(),
            leaf_key,
        }
    }

    fn signed_data(c: &Chain, content: &[u8], certs: &[&[u8]]) -> Vec<u8> {
        use rcgen::SigningKey as _;
        let (_, leaf) = X509Certificate::from_der(&c.leaf_der).unwrap();
        let sig = c.leaf_key.sign(content).unwrap();
        let sha256_rsa = der::seq(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 11]), &der::null()]);
        let rsa = der::seq(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 1]), &der::null()]);
        let encap = der::seq(&[
            &der::oid(&[1, 2, 840, 113549, 1, 7, 1]),
            &der::explicit(0, &der::octets(content)),
        ]);
        let sid = der::seq(&[
            leaf.tbs_certificate.issuer.as_raw(),
            &der::tlv(0x02, leaf.tbs_certificate.raw_serial()),
        ]);
        let info = der::seq(&[
            &der::small_int(1),
            &sid,
            &sha256_rsa,
            &rsa,
            &der::octets(&sig),
        ]);
        let all: Vec<u8> = certs.concat();
        let sd = der::seq(&[
            &der::small_int(1),
            &der::set(&[&sha256_rsa]),
            &encap,
            &der::tlv(0xa0, &all),
            &der::set(&[&info]),
        ]);
        der::seq(&[
            &der::oid(&[1, 2, 840, 113549, 1, 7, 2]),
            &der::explicit(0, &sd),
        ])
    }

    fn content(nonce: &str) -> Vec<u8> {
        serde_json::json!({
            "nonce": nonce, "vmId": "v", "subscriptionId": "s",
            "timeStamp": {"createdOn": "01/02/24 03:04:05 -0000", "expiresOn": "01/02/99 09:04:05 -0000"},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn signer_is_found_by_issuer_and_serial_and_named_like_azure() {
        let good = chain("metadata.azure.com");
        let decoy = chain("metadata.azure.com");
        // The signer is the second certificate: found by issuer and serial, not by position.
        let doc = wrap(&signed_data(
            &good,
            &content(NONCE),
            &[&decoy.leaf_der, &good.leaf_der],
        ));
        let c = verify_attested_document(
            &doc,
            std::slice::from_ref(&good.root_pem),
            &[],
            NONCE,
            now(),
        )
        .unwrap();
        assert_eq!(c.vm_id, "v");
        // Without the signer's certificate.
        let doc = wrap(&signed_data(&good, &content(NONCE), &[&decoy.leaf_der]));
        let e = verify_attested_document(
            &doc,
            std::slice::from_ref(&good.root_pem),
            &[],
            NONCE,
            now(),
        );
        assert!(matches!(e, Err(AzureJoinError::SignerNotFound)), "{e:?}");
        // A validly chained signer that is not Azure's metadata service.
        let evil = chain("metadata.azure.com.evil.example");
        let doc = wrap(&signed_data(&evil, &content(NONCE), &[&evil.leaf_der]));
        let e = verify_attested_document(
            &doc,
            std::slice::from_ref(&evil.root_pem),
            &[],
            NONCE,
            now(),
        );
        assert!(matches!(e, Err(AzureJoinError::SignerName(_))), "{e:?}");
        // A sovereign cloud's subdomain is fine.
        let us = chain("eastus.metadata.azure.us");
        let doc = wrap(&signed_data(&us, &content(NONCE), &[&us.leaf_der]));
        verify_attested_document(&doc, std::slice::from_ref(&us.root_pem), &[], NONCE, now())
            .unwrap();
    }

    #[test]
    fn names_and_dates() {
        for ok in [
            "metadata.azure.com",
            "METADATA.AZURE.COM",
            "westeurope.metadata.azure.com",
            "metadata.azure.us",
            "metadata.azure.cn",
            "metadata.microsoftazure.de",
        ] {
            assert!(signer_name_allowed(ok), "{ok}");
        }
        for bad in [
            "azure.com",
            "evilmetadata.azure.com",
            "metadata.azure.com.evil",
            "",
        ] {
            assert!(!signer_name_allowed(bad), "{bad}");
        }
        let t = parse_attested_date("11/24/26 05:06:07 -0000").unwrap();
        assert_eq!(t.year(), 2026);
        assert_eq!(u8::from(t.month()), 11);
        assert_eq!((t.day(), t.hour(), t.minute(), t.second()), (24, 5, 6, 7));
        assert!(parse_attested_date("13/24/26 05:06:07 -0000").is_none());
        assert!(parse_attested_date("2026-11-24T05:06:07Z").is_none());
    }

    #[tokio::test]
    async fn aia_elsewhere_is_not_fetched() {
        // A leaf whose AIA URL points at IMDS: never fetched (the fetcher's proxy is a dead port).
        let mut params =
            rcgen::CertificateParams::new(vec!["metadata.azure.com".to_string()]).unwrap();
        let access = der::seq(&[
            &der::oid(&[1, 3, 6, 1, 5, 5, 7, 48, 2]),
            &der::tlv(
                0x86,
                b"http://169.254.169.254/metadata/identity/oauth2/token.crt",
            ),
        ]);
        params.custom_extensions = vec![rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 5, 5, 7, 1, 1],
            der::seq(&[&access]),
        )];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            ca_issuers_urls(cert.der()),
            vec!["http://169.254.169.254/metadata/identity/oauth2/token.crt".to_string()]
        );
        let fetcher = azure_mint::aia::AiaFetcher::new(&HttpConfig {
            proxy: Some("http://127.0.0.1:9".into()),
            ..HttpConfig::default()
        })
        .unwrap();
        let found = follow(&fetcher, cert.der()).await.unwrap();
        assert!(found.is_empty());
        assert!(fetcher
            .fetch("http://169.254.169.254/metadata/identity/oauth2/token.crt")
            .await
            .is_err());
    }
}
