//! Reading certificates: the device identity a client certificate carries,
//! expiry and fingerprints.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::util::{first_cert_from_pem, hex_encode};
use crate::{PkiError, Result};

/// The scheme and fixed prefix of the identity URI in device certificates.
const URI_PREFIX: &str = "rampart://tenant/";

/// Who is on the other end of a mutual-TLS connection, as its (already
/// verified) certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub tenant_id: String,
    pub device_id: String,
    /// The certificate's serial number, lowercase hex of its bytes without
    /// leading zero bytes; the same form as [`crate::IssuedCert::serial_hex`].
    pub serial_hex: String,
    /// Seconds since the epoch.
    pub not_after: i64,
}

/// The identity URI for a device: `rampart://tenant/<tenant>/device/<device>`.
pub(crate) fn identity_uri(tenant_id: &str, device_id: &str) -> Result<String> {
    check_id("tenant id", tenant_id)?;
    check_id("device id", device_id)?;
    Ok(format!("{URI_PREFIX}{tenant_id}/device/{device_id}"))
}

/// Ids go into a URI and come back out of it, so they are restricted to
/// characters that need no escaping and cannot contain the separator.
pub(crate) fn check_id(what: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(PkiError::InvalidId {
            what,
            value: value.to_owned(),
        })
    }
}

fn parse_identity_uri(uri: &str) -> Result<(String, String)> {
    let malformed = || PkiError::MalformedIdentity(format!("{uri:?}"));
    let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(malformed)?;
    let (tenant_id, device_id) = rest.split_once("/device/").ok_or_else(malformed)?;
    check_id("tenant id", tenant_id).map_err(|_| malformed())?;
    check_id("device id", device_id).map_err(|_| malformed())?;
    Ok((tenant_id.to_owned(), device_id.to_owned()))
}

pub(crate) fn parse_cert(der: &[u8]) -> Result<X509Certificate<'_>> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::Certificate(
            "trailing bytes after the certificate".to_owned(),
        ));
    }
    Ok(cert)
}

/// Serial number as lowercase hex of its unsigned value, without leading
/// zero bytes (so without the DER sign byte): two digits per byte.
pub(crate) fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let raw = cert.tbs_certificate.raw_serial();
    let start = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
    let hex = hex_encode(&raw[start..]);
    if hex.is_empty() {
        "00".to_owned()
    } else {
        hex
    }
}

/// The device identity in a client certificate (DER, as rustls hands it
/// over). This only reads the certificate: call it on certificates the TLS
/// layer has already verified against the tenant CAs.
///
/// Errors when the certificate has no `rampart://` URI SAN, when that URI is
/// malformed, or when there is more than one (an identity must be
/// unambiguous).
pub fn peer_identity(cert_der: &[u8]) -> Result<PeerIdentity> {
    let cert = parse_cert(cert_der)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    let mut found = None;
    if let Some(san) = san {
        for name in &san.value.general_names {
            let GeneralName::URI(uri) = name else {
                continue;
            };
            if !uri.starts_with("rampart:") {
                continue;
            }
            if found.is_some() {
                return Err(PkiError::MalformedIdentity(
                    "more than one rampart:// URI SAN".to_owned(),
                ));
            }
            found = Some(parse_identity_uri(uri)?);
        }
    }
    let (tenant_id, device_id) = found.ok_or(PkiError::MissingIdentity)?;
    Ok(PeerIdentity {
        tenant_id,
        device_id,
        serial_hex: serial_hex(&cert),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// When the (first) certificate in `cert_pem` expires, in seconds since the
/// epoch.
pub fn cert_not_after(cert_pem: &str) -> Result<i64> {
    let der = first_cert_from_pem(cert_pem)?;
    Ok(parse_cert(&der)?.validity().not_after.timestamp())
}

/// Lowercase hex SHA-256 of the (first) certificate's DER: the pin of the
/// installation CA in onboarding packages.
pub fn sha256_fingerprint(cert_pem: &str) -> Result<String> {
    let der = first_cert_from_pem(cert_pem)?;
    Ok(hex_encode(
        ring::digest::digest(&ring::digest::SHA256, &der).as_ref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uri_round_trip() {
        let uri = identity_uri("t-1", "d_2.x").unwrap();
        assert_eq!(uri, "rampart://tenant/t-1/device/d_2.x");
        assert_eq!(
            parse_identity_uri(&uri).unwrap(),
            ("t-1".to_owned(), "d_2.x".to_owned())
        );
    }

    #[test]
    fn identity_uri_refuses_bad_ids() {
        assert!(identity_uri("", "d").is_err());
        assert!(identity_uri("t/device/x", "d").is_err());
        assert!(identity_uri("t", "d?x=1").is_err());
        assert!(identity_uri(&"a".repeat(129), "d").is_err());
    }

    #[test]
    fn malformed_identity_uris_are_refused() {
        for uri in [
            "rampart://tenant/t/device/",
            "rampart://tenant//device/d",
            "rampart://tenant/t/device/d/extra",
            "rampart://tenant/t/device/d/device/e",
            "rampart://tenant/t",
            "rampart://other/t/device/d",
            "https://tenant/t/device/d",
        ] {
            assert!(parse_identity_uri(uri).is_err(), "{uri}");
        }
    }
}
