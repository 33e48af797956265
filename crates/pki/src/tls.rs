//! rustls configurations for the device channel, all on the ring provider.
//!
//! The server asks every client for a certificate, accepts a connection
//! without one (enrollment needs that; the HTTP layer refuses every other
//! route without a certificate), and verifies a presented one against the
//! tenant CAs *as they are now*: [`ClientCaRoots`] is shared with the
//! verifier, so a tenant created after start is trusted without rebuilding
//! the server configuration.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::util::certs_from_pem;
use crate::{PkiError, Result};

/// The only application protocol the device channel speaks.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Installs ring as the process-wide default rustls provider, for code (such
/// as an HTTP client built elsewhere) that asks rustls for the default.
/// Calling it again, or after another provider was installed, does nothing.
pub fn install_crypto_provider() {
    // An error only means a default is already installed, which is fine:
    // every configuration made by this crate names its provider explicitly.
    let _already_installed = ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// The tenant CA certificates client certificates are verified against: a
/// cheap handle (clone it freely) on one shared, replaceable set.
#[derive(Clone, Default)]
pub struct ClientCaRoots {
    inner: Arc<RwLock<Roots>>,
}

#[derive(Default)]
struct Roots {
    /// `None` while the set is empty: webpki refuses to build a verifier
    /// without anchors, and every client certificate is then refused.
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    count: usize,
}

impl std::fmt::Debug for ClientCaRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCaRoots")
            .field("count", &self.len())
            .finish()
    }
}

impl ClientCaRoots {
    /// A set holding `ca_pems` (each may hold several certificates).
    pub fn new(ca_pems: &[String]) -> Result<Self> {
        let roots = Self::default();
        roots.replace(ca_pems)?;
        Ok(roots)
    }

    /// Replaces the whole set. On error the previous set stays in force.
    /// Connections already established are not affected; handshakes that
    /// start afterwards use the new set.
    pub fn replace(&self, ca_pems: &[String]) -> Result<()> {
        let mut store = RootCertStore::empty();
        for pem in ca_pems {
            for cert in certs_from_pem(pem)? {
                store.add(cert)?;
            }
        }
        let count = store.len();
        let verifier = if store.is_empty() {
            None
        } else {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::ClientRoots(e.to_string()))?;
            Some(verifier)
        };
        // The lock only guards a swap of two fields, so a panic elsewhere
        // while it was held cannot have left it half-written.
        let mut roots = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        *roots = Roots { verifier, count };
        Ok(())
    }

    /// How many CA certificates the set holds.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }

    /// Whether the set is empty (every client certificate is then refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn current(&self) -> Option<Arc<dyn ClientCertVerifier>> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .verifier
            .clone()
    }
}

/// Verifies client certificates against the current [`ClientCaRoots`].
#[derive(Debug)]
struct DynamicClientVerifier {
    roots: ClientCaRoots,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for DynamicClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: the list would change at run time (it cannot be borrowed
        // out of the lock), it would grow with the number of tenants, and it
        // would tell anyone who connects the name of every tenant's CA. An
        // empty list lets the agent send the one certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        match self.roots.current() {
            Some(verifier) => verifier.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        // Handshake signatures depend only on the algorithms, not on the
        // roots: the same check WebPkiClientVerifier makes.
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The device channel's server configuration: TLS 1.3 and 1.2, ALPN
/// `http/1.1`, the installation's server certificate (`server_cert_pem` may
/// carry a chain, leaf first), and client certificates requested, optional,
/// and verified against the current contents of `roots`.
pub fn server_config(
    server_cert_pem: &str,
    server_key_pem: &str,
    roots: ClientCaRoots,
) -> Result<Arc<ServerConfig>> {
    let chain = certs_from_pem(server_cert_pem)?;
    let key = private_key(server_key_pem)?;
    let provider = provider();
    let verifier = Arc::new(DynamicClientVerifier {
        roots,
        provider: provider.clone(),
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// A plain TLS server configuration (no client certificates): the admin API
/// and console when `rampart-server` is given `--tls-cert`/`--tls-key`.
pub fn plain_server_config(
    server_cert_pem: &str,
    server_key_pem: &str,
) -> Result<Arc<ServerConfig>> {
    let chain = certs_from_pem(server_cert_pem)?;
    let key = private_key(server_key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(Arc::new(config))
}

/// The agent's client configuration: it trusts only `server_ca_pem` (the
/// installation CA pinned in the onboarding package, not the system roots)
/// and presents `identity` (`(cert_pem, key_pem)`) when given.
pub fn client_config(server_ca_pem: &str, identity: Option<(&str, &str)>) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(server_ca_pem)? {
        roots.add(cert)?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => {
            builder.with_client_auth_cert(certs_from_pem(cert_pem)?, private_key(key_pem)?)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    Ok(config)
}

/// Why a TLS peer's certificate was refused, when that is why a connection
/// failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateRejection {
    /// Not issued by a trusted CA, or not for the name connected to.
    Untrusted,
    /// Outside its validity at this machine's time: this clock, or the
    /// certificate, is wrong.
    OutsideValidity,
}

/// Finds a refused certificate in an error's chain (a rustls error, as is
/// or inside the `io::Error`s TLS streams and connectors report it in).
pub fn certificate_rejection(
    err: &(dyn std::error::Error + 'static),
) -> Option<CertificateRejection> {
    let mut next = Some(err);
    while let Some(e) = next {
        // TLS streams wrap the rustls error in an `io::Error`, which
        // connectors may wrap in another; `source()` skips the wrapped one.
        let mut tls = e.downcast_ref::<rustls::Error>();
        let mut io = e.downcast_ref::<std::io::Error>();
        while let (None, Some(wrapper)) = (tls, io) {
            let inner = wrapper.get_ref();
            tls = inner.and_then(|i| i.downcast_ref::<rustls::Error>());
            io = inner.and_then(|i| i.downcast_ref::<std::io::Error>());
        }
        if let Some(rustls::Error::InvalidCertificate(c)) = tls {
            return Some(match c {
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. }
                | rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. } => {
                    CertificateRejection::OutsideValidity
                }
                _ => CertificateRejection::Untrusted,
            });
        }
        next = e.source();
    }
    None
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::PrivateKey(e.to_string()))
}
