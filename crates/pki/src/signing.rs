//! Ed25519 signatures over policy payloads: the server signs each device's
//! effective policy with its tenant's key, the agent verifies it with the
//! public half it received at enrollment.
//!
//! Keys and signatures travel as lowercase hex: the secret is the 32-byte
//! Ed25519 seed, the public key 32 bytes, a signature 64 bytes.

use std::fmt;

use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use crate::util::{hex_decode, hex_encode, random_bytes};
use crate::{PkiError, Result};

/// A tenant's policy signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyPair {
    /// Hex of the 32-byte seed. Secret.
    pub secret_hex: String,
    /// Hex of the 32-byte public key: what agents verify with.
    pub public_hex: String,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("secret_hex", &"<redacted>")
            .field("public_hex", &self.public_hex)
            .finish()
    }
}

/// A new random signing key.
pub fn new_signing_key() -> Result<SigningKeyPair> {
    let seed = random_bytes::<32>()?;
    let pair = key_pair(&seed)?;
    Ok(SigningKeyPair {
        secret_hex: hex_encode(&seed),
        public_hex: hex_encode(pair.public_key().as_ref()),
    })
}

/// The hex Ed25519 signature of `message` by the key whose seed is
/// `secret_hex`.
pub fn sign(secret_hex: &str, message: &[u8]) -> Result<String> {
    let seed = hex_decode::<32>(secret_hex, "secret key")?;
    Ok(hex_encode(key_pair(&seed)?.sign(message).as_ref()))
}

/// `Ok(())` only when `signature_hex` is a valid signature of exactly
/// `message` by `public_hex`.
pub fn verify(public_hex: &str, message: &[u8], signature_hex: &str) -> Result<()> {
    let public = hex_decode::<32>(public_hex, "public key")?;
    let signature = hex_decode::<64>(signature_hex, "signature")?;
    UnparsedPublicKey::new(&ED25519, public)
        .verify(message, &signature)
        .map_err(|_| PkiError::BadSignature)
}

fn key_pair(seed: &[u8; 32]) -> Result<Ed25519KeyPair> {
    // Any 32 bytes are a valid Ed25519 seed; ring only refuses a wrong length.
    Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| PkiError::Hex {
        what: "secret key",
        reason: "not an Ed25519 seed",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = br#"{"tenant_id":"t","device_id":"d","version":3}"#;

    #[test]
    fn sign_verify_round_trip() {
        let key = new_signing_key().unwrap();
        let sig = sign(&key.secret_hex, MESSAGE).unwrap();
        assert_eq!(sig.len(), 128);
        verify(&key.public_hex, MESSAGE, &sig).unwrap();
        // Uppercase hex is the same key and signature.
        verify(&key.public_hex.to_uppercase(), MESSAGE, &sig.to_uppercase()).unwrap();
    }

    #[test]
    fn signatures_are_deterministic_per_key() {
        let key = new_signing_key().unwrap();
        assert_eq!(
            sign(&key.secret_hex, MESSAGE).unwrap(),
            sign(&key.secret_hex, MESSAGE).unwrap()
        );
        assert_ne!(key, new_signing_key().unwrap());
    }

    #[test]
    fn tampered_message_is_refused() {
        let key = new_signing_key().unwrap();
        let sig = sign(&key.secret_hex, MESSAGE).unwrap();
        let mut tampered = MESSAGE.to_vec();
        let last = tampered.len() - 2;
        tampered[last] = b'4';
        assert!(matches!(
            verify(&key.public_hex, &tampered, &sig),
            Err(PkiError::BadSignature)
        ));
        assert!(verify(&key.public_hex, b"", &sig).is_err());
    }

    #[test]
    fn tampered_signature_is_refused() {
        let key = new_signing_key().unwrap();
        let sig = sign(&key.secret_hex, MESSAGE).unwrap();
        for i in [0, 63, 64, 127] {
            let mut bytes = sig.clone().into_bytes();
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert!(matches!(
                verify(&key.public_hex, MESSAGE, &tampered),
                Err(PkiError::BadSignature)
            ));
        }
        assert!(matches!(
            verify(&key.public_hex, MESSAGE, &sig[..126]),
            Err(PkiError::Hex { .. })
        ));
    }

    #[test]
    fn wrong_key_is_refused() {
        let key = new_signing_key().unwrap();
        let other = new_signing_key().unwrap();
        let sig = sign(&key.secret_hex, MESSAGE).unwrap();
        assert!(matches!(
            verify(&other.public_hex, MESSAGE, &sig),
            Err(PkiError::BadSignature)
        ));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(sign("00", MESSAGE).is_err());
        assert!(sign(&"zz".repeat(32), MESSAGE).is_err());
        let sig = "00".repeat(64);
        assert!(verify("00", MESSAGE, &sig).is_err());
    }

    #[test]
    fn debug_redacts_the_secret() {
        let key = new_signing_key().unwrap();
        let text = format!("{key:?}");
        assert!(!text.contains(&key.secret_hex));
        assert!(text.contains(&key.public_hex));
    }
}
