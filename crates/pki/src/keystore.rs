//! Where CA private keys live, and the one way they sign.
//!
//! Every signature a [`crate::CertAuthority`] makes — each leaf certificate and the CA's own
//! self-signed certificate — goes through a [`Signer`] trait object. Today the only
//! implementation is [`SoftwareKey`], a private key held in memory and stored (as PEM) in the
//! cluster backend. A key held by a remote key service (Azure Key Vault) implements the same
//! trait, so the certificate-building code does not change when one is added.
//!
//! * [`Signer`]: the public key (SPKI DER), the [`SignatureAlgorithm`], and `sign`.
//! * [`KeyReference`]: what the backend stores to find a CA key again: today the PEM itself
//!   ([`KeyReference::Software`]); a Key Vault key would store its key identifier instead.
//! * [`KeyStore`]: creates new CA keys and opens stored ones ([`SoftwareKeyStore`] today).
//!
//! # Why `sign` is synchronous
//!
//! Issuing a certificate ([`crate::CertAuthority::sign_identity`] and friends) is synchronous
//! and called from many places, and rcgen — which builds the CA certificate — calls its
//! signing key synchronously too. A key whose signature is a network call (Key Vault) makes
//! that call blocking inside `sign` (e.g. `tokio::task::block_in_place`, or its callers issue
//! on `spawn_blocking`); with a software key, an async trait would only add an allocation
//! and an await point to every certificate for nothing.

use std::fmt;
use std::sync::Arc;

use rcgen::PublicKeyData as _;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer as _;

use crate::PkiError;

/// A signature algorithm a CA key signs certificates with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256 (`ecdsa-with-SHA256`); the default for new CAs.
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384 (`ecdsa-with-SHA384`).
    EcdsaP384Sha384,
    /// Ed25519.
    Ed25519,
    /// RSA PKCS#1 v1.5 with SHA-256 (`sha256WithRSAEncryption`).
    RsaPkcs1Sha256,
}

// AlgorithmIdentifier DER of each algorithm, as it appears in a certificate's
// `signature` and `signatureAlgorithm` fields.
const ALG_ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const ALG_ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const ALG_ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
const ALG_RSA_SHA256: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];

impl SignatureAlgorithm {
    /// The X.509 `AlgorithmIdentifier`, DER encoded.
    pub fn algorithm_identifier_der(self) -> &'static [u8] {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => ALG_ECDSA_SHA256,
            SignatureAlgorithm::EcdsaP384Sha384 => ALG_ECDSA_SHA384,
            SignatureAlgorithm::Ed25519 => ALG_ED25519,
            SignatureAlgorithm::RsaPkcs1Sha256 => ALG_RSA_SHA256,
        }
    }

    /// rcgen's name for the same algorithm.
    pub(crate) fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            SignatureAlgorithm::EcdsaP384Sha384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            SignatureAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
            SignatureAlgorithm::RsaPkcs1Sha256 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    fn from_rcgen(alg: &rcgen::SignatureAlgorithm) -> Result<Self, PkiError> {
        [
            SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::Ed25519,
            SignatureAlgorithm::RsaPkcs1Sha256,
        ]
        .into_iter()
        .find(|a| a.rcgen() == alg)
        .ok_or_else(|| PkiError::Key(format!("unsupported CA key algorithm {alg:?}")))
    }
}

/// A CA private key that signs. Implementations must be cheap to share (`Arc<dyn Signer>`).
pub trait Signer: Send + Sync {
    /// The public key, DER `SubjectPublicKeyInfo`. It must be the key of the CA certificate.
    fn public_key_der(&self) -> &[u8];

    /// The algorithm of every signature [`Signer::sign`] makes.
    fn algorithm(&self) -> SignatureAlgorithm;

    /// Signs `message` (the whole to-be-signed bytes, not a digest: a signer that signs
    /// digests hashes it first with the algorithm's hash). The result is the value of an
    /// X.509 `signatureValue`: for ECDSA the DER `Ecdsa-Sig-Value` (a signer whose service
    /// returns raw `r || s`, as Key Vault does, converts it), for RSA and Ed25519 the raw
    /// signature.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError>;

    /// What to store in the backend to open this key again with a [`KeyStore`].
    fn key_reference(&self) -> KeyReference;
}

/// How the backend refers to a CA key.
///
/// Serialized untagged, each variant with field names of its own, so that it can be
/// `#[serde(flatten)]`ed into the stored CA record: [`KeyReference::Software`] is then the
/// `key_pem` field that CA records have always had, and records written before this type
/// existed load unchanged (and records written now load in older versions).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum KeyReference {
    /// A private key held in the backend itself: PEM (PKCS#8, SEC1 or PKCS#1).
    Software {
        /// The private key, PEM.
        key_pem: String,
    },
}

impl KeyReference {
    /// The private key PEM of a [`KeyReference::Software`] key.
    pub fn software_key_pem(&self) -> Option<&str> {
        match self {
            KeyReference::Software { key_pem } => Some(key_pem),
        }
    }
}

impl fmt::Debug for KeyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyReference::Software { .. } => f
                .debug_struct("Software")
                .field("key_pem", &"[elided]")
                .finish(),
        }
    }
}

/// Creates CA keys and opens stored ones.
pub trait KeyStore: Send + Sync {
    /// Creates a new key for a CA (ECDSA P-256).
    fn generate(&self) -> Result<Arc<dyn Signer>, PkiError>;

    /// Opens the key `reference` names. A reference of a kind this store cannot open is a
    /// [`PkiError::Key`].
    fn load(&self, reference: &KeyReference) -> Result<Arc<dyn Signer>, PkiError>;
}

/// The key store of [`SoftwareKey`]s: keys are generated in process and stored as PEM.
#[derive(Clone, Copy, Debug, Default)]
pub struct SoftwareKeyStore;

impl KeyStore for SoftwareKeyStore {
    fn generate(&self) -> Result<Arc<dyn Signer>, PkiError> {
        Ok(Arc::new(SoftwareKey::generate()?))
    }

    fn load(&self, reference: &KeyReference) -> Result<Arc<dyn Signer>, PkiError> {
        match reference {
            KeyReference::Software { key_pem } => Ok(Arc::new(SoftwareKey::from_pem(key_pem)?)),
        }
    }
}

/// A private key in memory. `Debug` does not print it.
pub struct SoftwareKey {
    key: rcgen::KeyPair,
    /// The PEM as given (or as generated: PKCS#8), exported unchanged.
    key_pem: String,
    spki_der: Vec<u8>,
    algorithm: SignatureAlgorithm,
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SoftwareKey")
            .field("algorithm", &self.algorithm)
            .field("public_key_der", &hex::encode(&self.spki_der))
            .finish_non_exhaustive()
    }
}

impl SoftwareKey {
    /// Generates an ECDSA P-256 key.
    pub fn generate() -> Result<Self, PkiError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let pem = key.serialize_pem();
        Self::new(key, pem)
    }

    /// Loads a private key (PKCS#8, SEC1 or PKCS#1 PEM): ECDSA P-256/P-384, Ed25519 or RSA
    /// (signing with SHA-256).
    pub fn from_pem(key_pem: &str) -> Result<Self, PkiError> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| PkiError::Key(e.to_string()))?;
        Self::new(key, key_pem.to_owned())
    }

    fn new(key: rcgen::KeyPair, key_pem: String) -> Result<Self, PkiError> {
        let algorithm = SignatureAlgorithm::from_rcgen(key.algorithm())?;
        Ok(Self {
            spki_der: key.subject_public_key_info(),
            key,
            key_pem,
            algorithm,
        })
    }

    /// The private key, PEM: as given to [`SoftwareKey::from_pem`], PKCS#8 when generated.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

impl Signer for SoftwareKey {
    fn public_key_der(&self) -> &[u8] {
        &self.spki_der
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        Ok(rcgen::SigningKey::sign(&self.key, message)?)
    }

    fn key_reference(&self) -> KeyReference {
        KeyReference::Software {
            key_pem: self.key_pem.clone(),
        }
    }
}

/// A [`Signer`] as rcgen's [`rcgen::SigningKey`], so that rcgen-built certificates (the CA's
/// self-signed one) are signed through the trait too. rcgen's error for a failed remote
/// signature carries no detail, so the signer's own error is kept for [`RcgenSigner::into_error`].
pub(crate) struct RcgenSigner<'a> {
    signer: &'a dyn Signer,
    /// The `subjectPublicKey` BIT STRING contents of the signer's SPKI.
    public_key: Vec<u8>,
    algorithm: &'static rcgen::SignatureAlgorithm,
    error: std::sync::Mutex<Option<PkiError>>,
}

impl<'a> RcgenSigner<'a> {
    pub(crate) fn new(signer: &'a dyn Signer) -> Result<Self, PkiError> {
        let spki = signer.public_key_der();
        let public_key = match x509_parser::x509::SubjectPublicKeyInfo::from_der(spki) {
            Ok(([], parsed)) => parsed.subject_public_key.data.to_vec(),
            Ok(_) => return Err(PkiError::Key("trailing bytes after public key".into())),
            Err(e) => return Err(PkiError::Key(format!("invalid SubjectPublicKeyInfo: {e}"))),
        };
        let rcgen_signer = Self {
            signer,
            public_key,
            algorithm: signer.algorithm().rcgen(),
            error: std::sync::Mutex::new(None),
        };
        // rcgen writes the SPKI from the algorithm and the key bits: it must be the signer's.
        if rcgen_signer.subject_public_key_info() != spki {
            return Err(PkiError::Key(
                "the signer's public key does not match its algorithm".into(),
            ));
        }
        Ok(rcgen_signer)
    }

    /// The signer's error if rcgen failed because [`Signer::sign`] did, else `err` itself.
    pub(crate) fn into_error(self, err: rcgen::Error) -> PkiError {
        match self.error.into_inner() {
            Ok(Some(e)) => e,
            _ => err.into(),
        }
    }
}

impl rcgen::PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl rcgen::SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign(msg).map_err(|e| {
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert(e);
            }
            rcgen::Error::RemoteKeyError
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn software_key_signs_verifiably() {
        let key = SoftwareKey::generate().unwrap();
        assert_eq!(key.algorithm(), SignatureAlgorithm::EcdsaP256Sha256);
        assert!(key.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        let sig = key.sign(b"message").unwrap();
        let (_, spki) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(key.public_key_der()).unwrap();
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            &spki.subject_public_key.data,
        )
        .verify(b"message", &sig)
        .unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn key_reference_round_trips_through_the_store() {
        let store = SoftwareKeyStore;
        let key = store.generate().unwrap();
        let reference = key.key_reference();
        let json = serde_json::to_value(&reference).unwrap();
        // The stored form is the `key_pem` field CA records have always had.
        assert_eq!(
            json,
            serde_json::json!({ "key_pem": reference.software_key_pem().unwrap() })
        );
        let back: KeyReference = serde_json::from_value(json).unwrap();
        assert_eq!(back, reference);
        let again = store.load(&back).unwrap();
        assert_eq!(again.public_key_der(), key.public_key_der());
        assert!(!format!("{reference:?}").contains("PRIVATE"));
        assert!(store
            .load(&KeyReference::Software {
                key_pem: "garbage".into()
            })
            .is_err());
        assert!(serde_json::from_value::<KeyReference>(serde_json::json!({})).is_err());
    }

    #[test]
    fn algorithms_map_both_ways() {
        for alg in [
            SignatureAlgorithm::EcdsaP256Sha256,
            SignatureAlgorithm::EcdsaP384Sha384,
            SignatureAlgorithm::Ed25519,
            SignatureAlgorithm::RsaPkcs1Sha256,
        ] {
            assert_eq!(SignatureAlgorithm::from_rcgen(alg.rcgen()).unwrap(), alg);
            let key = rcgen::KeyPair::generate_for(alg.rcgen()).unwrap();
            let soft = SoftwareKey::from_pem(&key.serialize_pem()).unwrap();
            assert_eq!(soft.algorithm(), alg);
            // The rcgen view of a signer rebuilds exactly its SPKI.
            RcgenSigner::new(&soft).unwrap();
        }
        assert!(SignatureAlgorithm::from_rcgen(&rcgen::PKCS_ECDSA_P521_SHA512).is_err());
    }
}
