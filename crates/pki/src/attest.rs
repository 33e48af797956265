//! Re-attestation: how a device proves it is the device the server enrolled
//! without a valid TLS client certificate — its certificate expired while it
//! was offline, the server's database was restored from before a renewal,
//! or the certificate file on the device broke.
//!
//! The device signs a statement naming the tenant, its device id and the
//! CSR of its next key with the key it was enrolled with. The server accepts
//! the statement when that key is either the one on record for the device,
//! or the key of a certificate the tenant CA issued for that device id
//! (checked whatever the time, since an expired certificate is exactly what
//! this is for). Binding the CSR means a copied statement can only ever get
//! a certificate for a key its copier does not hold.

use rcgen::{KeyPair, PublicKeyData};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::identity::{parse_cert, peer_identity, PeerIdentity};
use crate::issue::DeviceKey;
use crate::util::{first_cert_from_pem, hex_decode_vec, hex_encode};
use crate::{PkiError, Result};

/// Names the statement's format, so a signature made for anything else can
/// never be taken for one.
const CONTEXT: &str = "rampart-reattest-v1";

/// The exact bytes a device signs to re-attest.
pub fn attestation_message(tenant_id: &str, device_id: &str, csr_pem: &str) -> Vec<u8> {
    let csr_hash =
        hex_encode(ring::digest::digest(&ring::digest::SHA256, csr_pem.as_bytes()).as_ref());
    format!("{CONTEXT}\n{tenant_id}\n{device_id}\n{csr_hash}").into_bytes()
}

/// Lowercase hex SHA-256 of a public key's SubjectPublicKeyInfo DER: what
/// the server records of the key a device's certificate is for.
pub fn key_sha256(spki_der: &[u8]) -> String {
    hex_encode(ring::digest::digest(&ring::digest::SHA256, spki_der).as_ref())
}

/// The public half of a device key, as hex SubjectPublicKeyInfo DER.
pub fn device_public_key(key: &DeviceKey) -> Result<String> {
    let pair = KeyPair::from_pem(&key.key_pem).map_err(|e| PkiError::PrivateKey(e.to_string()))?;
    Ok(hex_encode(pair.subject_public_key_info().as_slice()))
}

/// Signs `message` with a device key (ECDSA P-256, SHA-256, ASN.1); hex.
pub fn sign_with_device_key(key: &DeviceKey, message: &[u8]) -> Result<String> {
    let pair = KeyPair::from_pem(&key.key_pem).map_err(|e| PkiError::PrivateKey(e.to_string()))?;
    let rng = SystemRandom::new();
    let signer =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pair.serialize_der(), &rng)
            .map_err(|e| PkiError::PrivateKey(e.to_string()))?;
    let signature = signer.sign(&rng, message).map_err(|_| PkiError::Random)?;
    Ok(hex_encode(signature.as_ref()))
}

/// Checks a device-key signature against a public key given as hex
/// SubjectPublicKeyInfo DER (an ECDSA P-256 key: the only kind agents make).
pub fn verify_with_public_key(spki_hex: &str, message: &[u8], signature_hex: &str) -> Result<()> {
    let spki = hex_decode_vec(spki_hex, "public key")?;
    let signature = hex_decode_vec(signature_hex, "signature")?;
    let (rest, info) = SubjectPublicKeyInfo::from_der(&spki)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::UnsupportedKey(
            "trailing bytes after the key".into(),
        ));
    }
    UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        info.subject_public_key.data.as_ref(),
    )
    .verify(message, &signature)
    .map_err(|_| PkiError::BadSignature)
}

/// A device certificate checked against its tenant CA, with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedKey {
    pub identity: PeerIdentity,
    /// The certificate's public key, hex SubjectPublicKeyInfo DER.
    pub public_key: String,
    /// [`key_sha256`] of that key.
    pub key_sha256: String,
}

/// The identity and key of `cert_pem` once its signature is checked against
/// the CA `ca_cert_pem`. Validity dates are deliberately not checked: an
/// expired certificate still proves which key the CA certified for which
/// device, and that is all re-attestation asks of it.
pub fn certified_device_key(ca_cert_pem: &str, cert_pem: &str) -> Result<CertifiedKey> {
    let ca_der = first_cert_from_pem(ca_cert_pem)?;
    let ca = parse_cert(&ca_der)?;
    let der = first_cert_from_pem(cert_pem)?;
    let cert = parse_cert(&der)?;
    if cert.issuer() != ca.subject() {
        return Err(PkiError::Certificate(
            "the certificate was not issued by this tenant's CA".into(),
        ));
    }
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|_| PkiError::BadSignature)?;
    let spki = cert.public_key().raw;
    Ok(CertifiedKey {
        identity: peer_identity(&der)?,
        public_key: hex_encode(spki),
        key_sha256: key_sha256(spki),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{csr_pem, issue_device_cert, new_ca, new_device_key};

    #[test]
    fn a_statement_signed_with_the_key_verifies_and_nothing_else_does() {
        let key = new_device_key().unwrap();
        let public = device_public_key(&key).unwrap();
        let csr = csr_pem(&new_device_key().unwrap(), "pc").unwrap();
        let message = attestation_message("t1", "d1", &csr);
        let signature = sign_with_device_key(&key, &message).unwrap();
        verify_with_public_key(&public, &message, &signature).unwrap();
        // Another device, another CSR, another key: refused.
        let other = attestation_message("t1", "d2", &csr);
        assert!(verify_with_public_key(&public, &other, &signature).is_err());
        let other_csr = csr_pem(&new_device_key().unwrap(), "pc").unwrap();
        let other = attestation_message("t1", "d1", &other_csr);
        assert!(verify_with_public_key(&public, &other, &signature).is_err());
        let stranger = device_public_key(&new_device_key().unwrap()).unwrap();
        assert!(verify_with_public_key(&stranger, &message, &signature).is_err());
        assert!(verify_with_public_key("zz", &message, &signature).is_err());
    }

    #[test]
    fn an_expired_certificate_still_certifies_its_key() {
        let ca = new_ca("tenant", 30).unwrap();
        let key = new_device_key().unwrap();
        let csr = csr_pem(&key, "pc").unwrap();
        // Valid for a day, two years ago.
        let issued =
            issue_device_cert(&ca, &csr, "t1", "d1", 1_600_000_000, 1_600_086_400).unwrap();
        let certified = certified_device_key(&ca.cert_pem, &issued.cert_pem).unwrap();
        assert_eq!(certified.identity.device_id, "d1");
        assert_eq!(certified.identity.tenant_id, "t1");
        assert_eq!(certified.public_key, device_public_key(&key).unwrap());
        assert_eq!(certified.key_sha256, issued.key_sha256);
        // Another tenant's CA did not issue it.
        let other = new_ca("other", 30).unwrap();
        assert!(certified_device_key(&other.cert_pem, &issued.cert_pem).is_err());
    }
}
