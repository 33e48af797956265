//! Rampart's cryptography, and nothing else: the installation and tenant
//! CAs, the device channel's server certificate, device keys, CSRs and
//! certificates, the device identity a certificate carries, rustls
//! configurations for mutual TLS, and Ed25519 policy signatures.
//!
//! Everything is exchanged as PEM or hex text so that callers (the server's
//! store, the agent's state directory) only ever handle strings. ring is the
//! only crypto backend.

mod attest;
mod error;
mod identity;
mod issue;
mod signing;
mod tls;
mod util;

pub use attest::{
    attestation_message, certified_device_key, device_public_key, key_sha256, sign_with_device_key,
    verify_with_public_key, CertifiedKey,
};
pub use error::{PkiError, Result};
pub use identity::{cert_not_after, peer_identity, sha256_fingerprint, PeerIdentity};
pub use issue::{
    csr_pem, issue_device_cert, issue_server_cert, new_ca, new_device_key, CaBundle, DeviceKey,
    IssuedCert,
};
pub use signing::{new_signing_key, sign, verify, SigningKeyPair};
pub use tls::{
    certificate_rejection, client_config, install_crypto_provider, plain_server_config,
    server_config, CertificateRejection, ClientCaRoots,
};
