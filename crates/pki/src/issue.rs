//! Making keys and certificates: the installation and tenant CAs, the device
//! channel's server certificate, a device's key and CSR (agent side) and the
//! device certificate a tenant CA issues for that CSR (server side).
//!
//! Every key made here is ECDSA P-256.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateSigningRequestDer, ServerName};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::identity::{identity_uri, parse_cert, serial_hex};
use crate::util::{first_cert_from_pem, random_bytes, validity};
use crate::{PkiError, Result};

/// How far back a new CA's validity starts, so that a device whose clock is
/// a little behind the server's still accepts it.
const CA_BACKDATE_SECS: i64 = 3600;

/// A CA certificate and its private key (PKCS#8), both PEM. Used for the
/// installation CA (which signs the device channel's server certificate) and
/// for each tenant's CA (which signs that tenant's device certificates).
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A device's private key (PKCS#8 PEM). It is made on the device and never
/// leaves it: only a CSR signed with it does.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKey {
    pub key_pem: String,
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKey")
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A device certificate as issued, with what the server records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// Lowercase hex of the serial's bytes without leading zero bytes;
    /// [`crate::peer_identity`] reads the same string back from the
    /// certificate.
    pub serial_hex: String,
    /// Seconds since the epoch.
    pub not_after: i64,
    /// Hex SHA-256 of the certified public key (SubjectPublicKeyInfo DER).
    pub key_sha256: String,
}

/// A new self-signed CA valid from an hour ago (clock skew) for
/// `valid_days` days. It may sign end-entity certificates only (path length
/// 0): nothing in Rampart needs intermediate CAs.
pub fn new_ca(common_name: &str, valid_days: u32) -> Result<CaBundle> {
    let now = unix_now();
    let not_before = now - CA_BACKDATE_SECS;
    let not_after = now.saturating_add(i64::from(valid_days).saturating_mul(86_400));
    let (not_before, not_after) = validity(not_before, not_after)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key)?;
    Ok(CaBundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A TLS server certificate for the device channel, signed by the
/// installation CA, for `hostnames` (each an IP literal, which becomes an IP
/// SAN, or a DNS name). Returns `(cert_pem, key_pem)` with a fresh key.
pub fn issue_server_cert(
    ca: &CaBundle,
    hostnames: &[String],
    not_before: i64,
    not_after: i64,
) -> Result<(String, String)> {
    let (not_before, not_after) = validity(not_before, not_after)?;
    let first = hostnames
        .first()
        .ok_or_else(|| PkiError::InvalidHostname(String::new()))?;
    let mut sans = Vec::with_capacity(hostnames.len());
    for host in hostnames {
        // Validate the way the client will: it connects with a
        // rustls `ServerName` and matches it against these SANs.
        let san = match ServerName::try_from(host.as_str()) {
            Ok(ServerName::IpAddress(ip)) => SanType::IpAddress(std::net::IpAddr::from(ip)),
            Ok(ServerName::DnsName(_)) => SanType::DnsName(
                Ia5String::try_from(host.as_str())
                    .map_err(|_| PkiError::InvalidHostname(host.clone()))?,
            ),
            _ => return Err(PkiError::InvalidHostname(host.clone())),
        };
        sans.push(san);
    }

    let issuer_key = ca_key(ca)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, issuer_key)?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(first);
    params.subject_alt_names = sans;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// A new device key (agent side).
pub fn new_device_key() -> Result<DeviceKey> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    Ok(DeviceKey {
        key_pem: key.serialize_pem(),
    })
}

/// A PEM certificate signing request for `key`, subject CN `device_name`.
/// The name is informative only: the CA ignores everything in a CSR but its
/// public key.
pub fn csr_pem(key: &DeviceKey, device_name: &str) -> Result<String> {
    let key = KeyPair::from_pem(&key.key_pem).map_err(|e| PkiError::PrivateKey(e.to_string()))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(device_name);
    Ok(params.serialize_request(&key)?.pem()?)
}

/// The device certificate a tenant CA issues for a CSR (server side).
///
/// The CSR's signature must verify with its own public key (proof that the
/// requester holds the private key); then only that public key is used. The
/// subject, SANs and extensions of the CSR are ignored: the certificate gets
/// subject CN `device_id`, the URI SAN
/// `rampart://tenant/<tenant_id>/device/<device_id>`, the client-auth EKU and
/// a random 128-bit serial. Device keys must be ECDSA P-256 or P-384 or
/// Ed25519.
pub fn issue_device_cert(
    ca: &CaBundle,
    csr_pem: &str,
    tenant_id: &str,
    device_id: &str,
    not_before: i64,
    not_after: i64,
) -> Result<IssuedCert> {
    let uri = identity_uri(tenant_id, device_id)?;
    let (not_before, not_after) = validity(not_before, not_after)?;
    let public_key = csr_public_key(csr_pem)?;

    let issuer_key = ca_key(ca)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, issuer_key)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name_dn(device_id);
    params.subject_alt_names = vec![SanType::URI(
        Ia5String::try_from(uri.as_str())
            .map_err(|e| PkiError::MalformedIdentity(e.to_string()))?,
    )];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&public_key, &issuer)?;

    // Read serial and expiry back from the certificate itself, so that they
    // are exactly what `peer_identity` will report for it.
    let parsed = parse_cert(cert.der())?;
    Ok(IssuedCert {
        serial_hex: serial_hex(&parsed),
        not_after: parsed.validity().not_after.timestamp(),
        key_sha256: crate::attest::key_sha256(parsed.public_key().raw),
        cert_pem: cert.pem(),
    })
}

/// The CSR's public key, once its self-signature has been checked.
fn csr_public_key(csr_pem: &str) -> Result<SubjectPublicKeyInfo> {
    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    let (rest, csr) =
        X509CertificationRequest::from_der(&der).map_err(|e| PkiError::Csr(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::Csr("trailing bytes after the request".to_owned()));
    }
    csr.verify_signature().map_err(|_| PkiError::CsrSignature)?;
    let spki = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| PkiError::UnsupportedKey(e.to_string()))?;
    let alg = spki.algorithm();
    if alg == &PKCS_ECDSA_P256_SHA256 || alg == &PKCS_ECDSA_P384_SHA384 || alg == &PKCS_ED25519 {
        Ok(spki)
    } else {
        Err(PkiError::UnsupportedKey(format!("{alg:?}")))
    }
}

/// The CA's key, checked against its certificate: a mismatched pair would
/// sign certificates that nobody can verify, which is better refused here.
fn ca_key(ca: &CaBundle) -> Result<KeyPair> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|e| PkiError::PrivateKey(e.to_string()))?;
    let der = first_cert_from_pem(&ca.cert_pem)?;
    let cert = parse_cert(&der)?;
    if cert.tbs_certificate.subject_pki.raw != key.subject_public_key_info().as_slice() {
        return Err(PkiError::CaKeyMismatch);
    }
    Ok(key)
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A random positive 128-bit serial (RFC 5280 wants it unpredictable and
/// non-zero; rcgen adds the sign byte when the top bit is set).
fn random_serial() -> Result<SerialNumber> {
    loop {
        let bytes = random_bytes::<16>()?;
        if bytes.iter().any(|b| *b != 0) {
            return Ok(SerialNumber::from_slice(&bytes));
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::{cert_not_after, peer_identity, sha256_fingerprint};

    const DAY: i64 = 86_400;

    fn window() -> (i64, i64) {
        let now = unix_now();
        (now - 60, now + 30 * DAY)
    }

    fn der(pem: &str) -> Vec<u8> {
        first_cert_from_pem(pem).unwrap().to_vec()
    }

    fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
        cert.subject_alternative_name()
            .unwrap()
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .map(|name| match name {
                        GeneralName::DNSName(d) => format!("dns:{d}"),
                        GeneralName::URI(u) => format!("uri:{u}"),
                        GeneralName::IPAddress(ip) => format!("ip:{ip:?}"),
                        other => format!("other:{other:?}"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn common_name(cert: &X509Certificate<'_>) -> String {
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn to_pem(tag: &str, der: Vec<u8>) -> String {
        pem::encode(&pem::Pem::new(tag, der))
    }

    #[test]
    fn new_ca_is_a_path_length_zero_ca() {
        let ca = new_ca("Rampart installation CA", 3650).unwrap();
        let der = der(&ca.cert_pem);
        let cert = parse_cert(&der).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        assert_eq!(common_name(&cert), "Rampart installation CA");
        let not_after = cert_not_after(&ca.cert_pem).unwrap();
        let expected = unix_now() + 3650 * DAY;
        assert!(
            (not_after - expected).abs() < 60,
            "{not_after} vs {expected}"
        );
    }

    #[test]
    fn debug_redacts_private_keys() {
        let ca = new_ca("ca", 1).unwrap();
        let text = format!("{ca:?}");
        assert!(text.contains("<redacted>"));
        assert!(!text.contains("PRIVATE KEY"));
        let key = new_device_key().unwrap();
        assert!(!format!("{key:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn server_cert_has_ip_and_dns_sans() {
        let ca = new_ca("ca", 1).unwrap();
        let (nb, na) = window();
        let hosts = vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "rampart.example".to_owned(),
        ];
        let (cert_pem, key_pem) = issue_server_cert(&ca, &hosts, nb, na).unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let der = der(&cert_pem);
        let cert = parse_cert(&der).unwrap();
        assert_eq!(
            sans(&cert),
            vec![
                "ip:[127, 0, 0, 1]".to_owned(),
                "ip:[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]".to_owned(),
                "dns:rampart.example".to_owned(),
            ]
        );
        assert_eq!(common_name(&cert), "127.0.0.1");
        assert_eq!(cert.validity().not_after.timestamp(), na);
        assert_eq!(
            cert.issuer(),
            parse_cert(&self::der(&ca.cert_pem)).unwrap().subject()
        );
    }

    #[test]
    fn server_cert_refuses_bad_hostnames() {
        let ca = new_ca("ca", 1).unwrap();
        let (nb, na) = window();
        for bad in [vec![], vec!["".to_owned()], vec!["bad host".to_owned()]] {
            assert!(matches!(
                issue_server_cert(&ca, &bad, nb, na),
                Err(PkiError::InvalidHostname(_))
            ));
        }
        assert!(matches!(
            issue_server_cert(&ca, &["a.example".to_owned()], na, nb),
            Err(PkiError::InvalidValidity { .. })
        ));
    }

    #[test]
    fn device_cert_carries_identity_and_nothing_from_the_csr() {
        let ca = new_ca("tenant CA", 1).unwrap();
        let key = new_device_key().unwrap();
        // A CSR asking for much more than a device may have.
        let key_pair = KeyPair::from_pem(&key.key_pem).unwrap();
        let mut params =
            CertificateParams::new(vec!["evil.example".to_owned(), "10.0.0.1".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            Ia5String::try_from("rampart://tenant/other/device/victim").unwrap(),
        ));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.distinguished_name = common_name_dn("laptop-7");
        let csr = params.serialize_request(&key_pair).unwrap().pem().unwrap();

        let (nb, na) = window();
        let issued = issue_device_cert(&ca, &csr, "tenant-1", "device-9", nb, na).unwrap();
        let der = der(&issued.cert_pem);
        let cert = parse_cert(&der).unwrap();
        assert_eq!(
            sans(&cert),
            vec!["uri:rampart://tenant/tenant-1/device/device-9"]
        );
        assert_eq!(common_name(&cert), "device-9");
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth && eku.other.is_empty());
        // The certificate is for the CSR's key.
        assert_eq!(
            cert.public_key().raw,
            key_pair.subject_public_key_info().as_slice()
        );

        let id = peer_identity(&der).unwrap();
        assert_eq!(id.tenant_id, "tenant-1");
        assert_eq!(id.device_id, "device-9");
        assert_eq!(id.serial_hex, issued.serial_hex);
        assert_eq!(id.not_after, na);
        assert_eq!(issued.not_after, na);
        assert_eq!(cert_not_after(&issued.cert_pem).unwrap(), na);
    }

    #[test]
    fn serials_are_random_and_about_128_bits() {
        let ca = new_ca("ca", 1).unwrap();
        let key = new_device_key().unwrap();
        let csr = csr_pem(&key, "d").unwrap();
        let (nb, na) = window();
        let a = issue_device_cert(&ca, &csr, "t", "d", nb, na).unwrap();
        let b = issue_device_cert(&ca, &csr, "t", "d", nb, na).unwrap();
        assert_ne!(a.serial_hex, b.serial_hex);
        // 16 random bytes; a leading zero byte shortens it now and then.
        assert!(
            a.serial_hex.len() <= 32 && a.serial_hex.len() >= 20,
            "{}",
            a.serial_hex
        );
        assert!(!a.serial_hex.starts_with("00") && a.serial_hex.len().is_multiple_of(2));
    }

    #[test]
    fn csr_with_bad_signature_is_refused() {
        let ca = new_ca("ca", 1).unwrap();
        let key = new_device_key().unwrap();
        let csr = csr_pem(&key, "laptop").unwrap();
        let mut bytes = pem::parse(&csr).unwrap().into_contents();
        // The signature BIT STRING is last: flip a bit in it.
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let tampered = to_pem("CERTIFICATE REQUEST", bytes);
        let (nb, na) = window();
        assert!(matches!(
            issue_device_cert(&ca, &tampered, "t", "d", nb, na),
            Err(PkiError::CsrSignature)
        ));
    }

    #[test]
    fn csr_for_a_key_the_requester_does_not_hold_is_refused() {
        // Someone puts another device's public key in a CSR they sign with
        // their own key: the signature does not verify with the key carried.
        let ca = new_ca("ca", 1).unwrap();
        let mine = KeyPair::from_pem(&new_device_key().unwrap().key_pem).unwrap();
        let theirs = KeyPair::from_pem(&new_device_key().unwrap().key_pem).unwrap();
        let csr = pem::parse(
            csr_pem(
                &DeviceKey {
                    key_pem: mine.serialize_pem(),
                },
                "x",
            )
            .unwrap(),
        )
        .unwrap()
        .into_contents();
        let my_spki = mine.subject_public_key_info();
        let their_spki = theirs.subject_public_key_info();
        let at = csr
            .windows(my_spki.len())
            .position(|w| w == my_spki.as_slice())
            .unwrap();
        let mut spliced = csr.clone();
        spliced[at..at + my_spki.len()].copy_from_slice(&their_spki);
        let (nb, na) = window();
        assert!(matches!(
            issue_device_cert(
                &ca,
                &to_pem("CERTIFICATE REQUEST", spliced),
                "t",
                "d",
                nb,
                na
            ),
            Err(PkiError::CsrSignature)
        ));
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = new_ca("ca", 1).unwrap();
        let (nb, na) = window();
        assert!(matches!(
            issue_device_cert(&ca, "not pem", "t", "d", nb, na),
            Err(PkiError::Pem(_))
        ));
        assert!(matches!(
            issue_device_cert(
                &ca,
                &to_pem("CERTIFICATE REQUEST", vec![0x30, 0x03, 1, 2, 3]),
                "t",
                "d",
                nb,
                na
            ),
            Err(PkiError::Csr(_))
        ));
    }

    #[test]
    fn bad_ids_are_refused_before_issuing() {
        let ca = new_ca("ca", 1).unwrap();
        let csr = csr_pem(&new_device_key().unwrap(), "x").unwrap();
        let (nb, na) = window();
        for (tenant, device) in [("", "d"), ("t", ""), ("t/device/x", "d"), ("t", "d e")] {
            assert!(matches!(
                issue_device_cert(&ca, &csr, tenant, device, nb, na),
                Err(PkiError::InvalidId { .. })
            ));
        }
    }

    #[test]
    fn mismatched_ca_key_is_refused() {
        let a = new_ca("a", 1).unwrap();
        let b = new_ca("b", 1).unwrap();
        let mixed = CaBundle {
            cert_pem: a.cert_pem,
            key_pem: b.key_pem,
        };
        let csr = csr_pem(&new_device_key().unwrap(), "x").unwrap();
        let (nb, na) = window();
        assert!(matches!(
            issue_device_cert(&mixed, &csr, "t", "d", nb, na),
            Err(PkiError::CaKeyMismatch)
        ));
    }

    #[test]
    fn peer_identity_requires_the_uri_san() {
        let ca = new_ca("ca", 1).unwrap();
        let (nb, na) = window();
        let (server, _) = issue_server_cert(&ca, &["127.0.0.1".to_owned()], nb, na).unwrap();
        assert!(matches!(
            peer_identity(&der(&server)),
            Err(PkiError::MissingIdentity)
        ));
        assert!(matches!(
            peer_identity(&der(&ca.cert_pem)),
            Err(PkiError::MissingIdentity)
        ));
        assert!(matches!(
            peer_identity(b"junk"),
            Err(PkiError::Certificate(_))
        ));
    }

    #[test]
    fn peer_identity_refuses_malformed_or_duplicate_uris() {
        // Certificates not made by `issue_device_cert`, signed by a CA all
        // the same: the parser must not trust the URI's shape.
        let ca = new_ca("ca", 1).unwrap();
        let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key(&ca).unwrap()).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let make = |uris: &[&str]| {
            let mut params = CertificateParams::default();
            params.subject_alt_names = uris
                .iter()
                .map(|u| SanType::URI(Ia5String::try_from(*u).unwrap()))
                .collect();
            params.signed_by(&key, &issuer).unwrap().der().to_vec()
        };
        for uris in [
            &["rampart://tenant/t/device/"][..],
            &["rampart://tenant/t/device/d/x"],
            &["rampart://tenant/t%2F/device/d"],
            &["rampart://tenant/t/device/d", "rampart://tenant/u/device/e"],
        ] {
            assert!(
                matches!(
                    peer_identity(&make(uris)),
                    Err(PkiError::MalformedIdentity(_))
                ),
                "{uris:?}"
            );
        }
        // Other URIs are ignored.
        let id = peer_identity(&make(&[
            "https://x.example/",
            "rampart://tenant/t/device/d",
        ]))
        .unwrap();
        assert_eq!((id.tenant_id.as_str(), id.device_id.as_str()), ("t", "d"));
    }

    #[test]
    fn fingerprint_is_hex_sha256_of_der() {
        let ca = new_ca("ca", 1).unwrap();
        let fp = sha256_fingerprint(&ca.cert_pem).unwrap();
        assert_eq!(fp.len(), 64);
        assert!(fp
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let expected = crate::util::hex_encode(
            ring::digest::digest(&ring::digest::SHA256, &der(&ca.cert_pem)).as_ref(),
        );
        assert_eq!(fp, expected);
        assert_ne!(
            fp,
            sha256_fingerprint(&new_ca("ca", 1).unwrap().cert_pem).unwrap()
        );
        assert!(matches!(sha256_fingerprint("nope"), Err(PkiError::Pem(_))));
    }
}
