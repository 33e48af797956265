//! Small helpers shared by the modules: hex, randomness, PEM and time.

use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{PkiError, Result};

/// Lowercase hex of `bytes`.
pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes hex (either case) that must be exactly `N` bytes long.
pub(crate) fn hex_decode<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N]> {
    let text = text.trim();
    if text.len() != N * 2 {
        return Err(PkiError::Hex {
            what,
            reason: "wrong length",
        });
    }
    let mut out = [0u8; N];
    for (slot, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (nibble(pair[0]), nibble(pair[1])) else {
            return Err(PkiError::Hex {
                what,
                reason: "not hex",
            });
        };
        *slot = (hi << 4) | lo;
    }
    Ok(out)
}

/// Decodes hex (either case) of any even length up to 4 KiB.
pub(crate) fn hex_decode_vec(text: &str, what: &'static str) -> Result<Vec<u8>> {
    let text = text.trim().as_bytes();
    if !text.len().is_multiple_of(2) || text.len() > 8192 {
        return Err(PkiError::Hex {
            what,
            reason: "wrong length",
        });
    }
    text.chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok((hi << 4) | lo),
            _ => Err(PkiError::Hex {
                what,
                reason: "not hex",
            }),
        })
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| PkiError::Random)?;
    Ok(out)
}

/// Every certificate in `pem`, in order; an error when there is none.
pub(crate) fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(PkiError::Pem("no CERTIFICATE block found".to_owned()));
    }
    Ok(certs)
}

/// The first certificate in `pem`.
pub(crate) fn first_cert_from_pem(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem(e.to_string()))
}

/// A validity period as rcgen wants it, refusing one that is empty or out of
/// the range X.509 can express.
pub(crate) fn validity(
    not_before: i64,
    not_after: i64,
) -> Result<(OffsetDateTime, OffsetDateTime)> {
    let invalid = || PkiError::InvalidValidity {
        not_before,
        not_after,
    };
    if not_before >= not_after {
        return Err(invalid());
    }
    let start = OffsetDateTime::from_unix_timestamp(not_before).map_err(|_| invalid())?;
    let end = OffsetDateTime::from_unix_timestamp(not_after).map_err(|_| invalid())?;
    // GeneralizedTime in a certificate carries four-digit years.
    if start.year() < 0 || end.year() > 9999 {
        return Err(invalid());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let bytes = [0x00, 0x01, 0xab, 0xff];
        let text = hex_encode(&bytes);
        assert_eq!(text, "0001abff");
        assert_eq!(hex_decode::<4>(&text, "x").unwrap(), bytes);
        assert_eq!(hex_decode::<4>("0001ABFF", "x").unwrap(), bytes);
    }

    #[test]
    fn hex_refuses_bad_input() {
        assert!(hex_decode::<2>("abc", "x").is_err());
        assert!(hex_decode::<2>("abcdef", "x").is_err());
        assert!(hex_decode::<2>("zzzz", "x").is_err());
        // Multi-byte characters must not slip through the length check.
        assert!(hex_decode::<2>("éé", "x").is_err());
    }

    #[test]
    fn validity_refuses_empty_periods() {
        assert!(validity(10, 10).is_err());
        assert!(validity(11, 10).is_err());
        assert!(validity(i64::MAX - 1, i64::MAX).is_err());
        assert!(validity(0, 10).is_ok());
    }
}
