//! The one error type of this crate.

/// Everything that can go wrong while making, reading or checking keys,
/// certificates, signatures and TLS configurations.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The text is not the PEM this call expects.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// A certificate could not be parsed.
    #[error("invalid certificate: {0}")]
    Certificate(String),
    /// A private key could not be parsed or used.
    #[error("invalid private key: {0}")]
    PrivateKey(String),
    /// The CA key is not the key of the CA certificate it came with.
    #[error("the CA private key does not match the CA certificate")]
    CaKeyMismatch,
    /// A certificate signing request could not be parsed.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// The request is not signed by the key it carries, so whoever sent it
    /// does not hold that key.
    #[error("the certificate signing request's signature does not verify")]
    CsrSignature,
    /// The request's key is of a kind devices are not allowed to use.
    #[error("unsupported public key in the certificate signing request: {0}")]
    UnsupportedKey(String),
    /// A hostname for a server certificate is neither an IP address nor a
    /// valid DNS name.
    #[error("invalid hostname {0:?}")]
    InvalidHostname(String),
    /// A tenant or device id that cannot be put in (or was read from) a
    /// certificate's identity URI.
    #[error("invalid {what} {value:?}: expected 1 to 128 characters among A-Z a-z 0-9 . _ -")]
    InvalidId {
        /// `tenant id` or `device id`.
        what: &'static str,
        /// The offending value.
        value: String,
    },
    /// A validity period that ends before it starts, or is out of range.
    #[error("invalid validity period: not_before {not_before}, not_after {not_after}")]
    InvalidValidity {
        /// Seconds since the epoch.
        not_before: i64,
        /// Seconds since the epoch.
        not_after: i64,
    },
    /// The certificate has no `rampart://tenant/<t>/device/<d>` URI SAN.
    #[error("the certificate carries no rampart device identity (URI SAN rampart://tenant/<tenant-id>/device/<device-id>)")]
    MissingIdentity,
    /// The certificate's identity URI is present but not well formed, or
    /// there is more than one.
    #[error("malformed rampart device identity: {0}")]
    MalformedIdentity(String),
    /// Hex text (key or signature) that does not decode to what is expected.
    #[error("invalid {what}: {reason}")]
    Hex {
        /// `secret key`, `public key` or `signature`.
        what: &'static str,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The signature is not a valid signature of the message by that key.
    #[error("the signature does not verify")]
    BadSignature,
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// rcgen refused to build a key, request or certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The set of tenant CAs could not be turned into a client verifier.
    #[error("invalid client CA set: {0}")]
    ClientRoots(String),
}

/// This crate's `Result`.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;
