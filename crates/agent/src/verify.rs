//! The signed-policy checks of `docs/device-channel.md` ("Signed
//! policies"), in order, and nothing else:
//!
//! 1. the Ed25519 signature over the exact payload bytes received;
//! 2. the payload's tenant and device are this device's;
//! 3. no version older than the one held, and no same version with another
//!    digest (a replay);
//! 4. only then is the policy handed back, as a [`VerifiedPolicy`] — the
//!    only type `enforce` and `state` accept.
//!
//! And the two other signed messages: the offboarding notice, and the
//! announcement of a rotated policy key, which is followed only from the
//! key this device already trusts.

use rampart_core::resolve::Resolution;
use rampart_proto::device::{
    KeyAnnouncement, KeyAnnouncementPayload, NoticePayload, OffboardNotice, PolicyPayload,
    SignedPolicy, ANNOUNCE_POLICY_KEY, NOTICE_OFFBOARD,
};
use serde_json::Value;

/// Whose policy this device accepts.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub tenant_id: &'a str,
    pub device_id: &'a str,
    /// The tenant's Ed25519 public key, hex.
    pub policy_key: &'a str,
}

/// The version and digest of the policy the device holds.
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    pub version: u64,
    pub digest: &'a str,
}

/// A policy that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedPolicy {
    /// As received: what is stored and verified again on load.
    pub signed: SignedPolicy,
    pub payload: PolicyPayload,
    pub resolution: Resolution,
}

/// Why a policy was refused; the agent keeps the one it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the policy's signature does not verify with the tenant's policy key")]
    BadSignature,
    #[error("the signed policy does not parse: {0}")]
    Malformed(String),
    #[error("the policy is for tenant {tenant_id}, device {device_id}: not this device")]
    WrongDevice {
        tenant_id: String,
        device_id: String,
    },
    #[error("policy version {got} is older than version {held}, which this device holds")]
    Older { held: u64, got: u64 },
    #[error("policy version {version} arrived again with a different digest (a replay)")]
    Replay { version: u64 },
    #[error("a policy-key announcement was refused: {0}")]
    BadAnnouncement(String),
}

impl VerifyError {
    /// A stable code for `status` and logs.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::BadSignature => "policy_bad_signature",
            VerifyError::Malformed(_) => "policy_malformed",
            VerifyError::WrongDevice { .. } => "policy_wrong_device",
            VerifyError::Older { .. } => "policy_older",
            VerifyError::Replay { .. } => "policy_replay",
            VerifyError::BadAnnouncement(_) => "policy_key_announcement_invalid",
        }
    }
}

/// Runs the checks in the protocol's order.
pub fn verify(
    signed: &SignedPolicy,
    expected: Expected<'_>,
    held: Option<Held<'_>>,
) -> Result<VerifiedPolicy, VerifyError> {
    rampart_pki::verify(
        expected.policy_key,
        signed.payload.as_bytes(),
        &signed.signature,
    )
    .map_err(|_| VerifyError::BadSignature)?;

    let payload: PolicyPayload =
        serde_json::from_str(&signed.payload).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if payload.tenant_id != expected.tenant_id || payload.device_id != expected.device_id {
        return Err(VerifyError::WrongDevice {
            tenant_id: payload.tenant_id,
            device_id: payload.device_id,
        });
    }
    if let Some(held) = held {
        if payload.version < held.version {
            return Err(VerifyError::Older {
                held: held.version,
                got: payload.version,
            });
        }
        if payload.version == held.version && payload.digest != held.digest {
            return Err(VerifyError::Replay {
                version: payload.version,
            });
        }
    }
    let resolution = parse_resolution(&payload.resolution)?;
    Ok(VerifiedPolicy {
        signed: signed.clone(),
        payload,
        resolution,
    })
}

/// [`verify`] for the policy this device stored itself: it may have been
/// signed with a policy key the tenant has rotated away from since
/// (`retired_keys`, the ones this device held before, newest first), and it
/// stays valid until the server sends the next one. A policy from the
/// network is only ever checked against the current key.
pub fn verify_stored(
    signed: &SignedPolicy,
    expected: Expected<'_>,
    retired_keys: &[String],
) -> Result<VerifiedPolicy, VerifyError> {
    let mut result = verify(signed, expected, None);
    for key in retired_keys {
        if result != Err(VerifyError::BadSignature) {
            break;
        }
        result = verify(
            signed,
            Expected {
                policy_key: key,
                ..expected
            },
            None,
        );
    }
    result
}

/// Follows the tenant's key announcements from `held_key`: each one whose
/// `previous_key` is the key reached so far must verify with that key and
/// be for this tenant; it then makes its `key` the one reached. Returns the
/// keys taken on, oldest first (empty when none follows from `held_key`).
/// Announcements that do not start from a key reached are ignored (they
/// are older than this device's key); one that starts from it but does not
/// verify stops everything, and the device keeps `held_key`.
pub fn follow_key_announcements(
    tenant_id: &str,
    held_key: &str,
    announcements: &[KeyAnnouncement],
) -> Result<Vec<String>, VerifyError> {
    let mut reached = held_key.to_string();
    let mut taken = Vec::new();
    for announcement in announcements {
        let payload: KeyAnnouncementPayload = serde_json::from_str(&announcement.payload)
            .map_err(|e| VerifyError::BadAnnouncement(format!("it does not parse: {e}")))?;
        if payload.previous_key != reached {
            continue;
        }
        rampart_pki::verify(
            &reached,
            announcement.payload.as_bytes(),
            &announcement.signature,
        )
        .map_err(|_| {
            VerifyError::BadAnnouncement(format!(
                "generation {} does not verify with the key it claims to replace",
                payload.generation
            ))
        })?;
        if payload.kind != ANNOUNCE_POLICY_KEY {
            return Err(VerifyError::BadAnnouncement(format!(
                "a message of kind {:?}, not {ANNOUNCE_POLICY_KEY:?}",
                payload.kind
            )));
        }
        if payload.tenant_id != tenant_id {
            return Err(VerifyError::BadAnnouncement(format!(
                "it is for tenant {}, not this device's",
                payload.tenant_id
            )));
        }
        reached = payload.key.clone();
        taken.push(payload.key);
    }
    Ok(taken)
}

/// Checks an offboarding notice the way a policy is checked: the signature
/// over the exact bytes, then that it is a notice (not a policy passed off
/// as one) for this tenant and device. Only a notice that passes removes
/// what Rampart set.
pub fn verify_notice(
    notice: &OffboardNotice,
    expected: Expected<'_>,
) -> Result<NoticePayload, VerifyError> {
    rampart_pki::verify(
        expected.policy_key,
        notice.payload.as_bytes(),
        &notice.signature,
    )
    .map_err(|_| VerifyError::BadSignature)?;
    let payload: NoticePayload =
        serde_json::from_str(&notice.payload).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    if payload.kind != NOTICE_OFFBOARD {
        return Err(VerifyError::Malformed(format!(
            "a notice of kind {:?}, not {NOTICE_OFFBOARD:?}",
            payload.kind
        )));
    }
    if payload.tenant_id != expected.tenant_id || payload.device_id != expected.device_id {
        return Err(VerifyError::WrongDevice {
            tenant_id: payload.tenant_id,
            device_id: payload.device_id,
        });
    }
    Ok(payload)
}

/// `Resolution` from the payload. The core omits empty `entries` and
/// `superseded` lists when it serializes but requires them when it
/// deserializes, so they are filled in first.
pub(crate) fn parse_resolution(value: &Value) -> Result<Resolution, VerifyError> {
    let mut value = value.clone();
    if let Some(settings) = value.get_mut("settings").and_then(Value::as_array_mut) {
        for setting in settings {
            if let Some(obj) = setting.as_object_mut() {
                for field in ["entries", "superseded"] {
                    obj.entry(field).or_insert_with(|| Value::Array(Vec::new()));
                }
            }
        }
    }
    serde_json::from_value(value).map_err(|e| VerifyError::Malformed(format!("resolution: {e}")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rampart_core::resolve::EffectiveSetting;
    use std::collections::BTreeMap;

    /// A signing key for tests, and a signed policy built with it.
    pub(crate) struct Signer {
        pub key: rampart_pki::SigningKeyPair,
    }

    impl Signer {
        pub(crate) fn new() -> Signer {
            Signer {
                key: rampart_pki::new_signing_key().unwrap(),
            }
        }

        pub(crate) fn sign(&self, payload: &PolicyPayload) -> SignedPolicy {
            let text = serde_json::to_string(payload).unwrap();
            SignedPolicy {
                signature: rampart_pki::sign(&self.key.secret_hex, text.as_bytes()).unwrap(),
                payload: text,
            }
        }
    }

    pub(crate) fn resolution(settings: &[(&str, Value)]) -> Resolution {
        Resolution {
            device: "dev".into(),
            managed: true,
            reason: None,
            settings: settings
                .iter()
                .map(|(id, v)| EffectiveSetting {
                    setting: (*id).into(),
                    value: v.clone(),
                    sources: vec!["p1".into()],
                    entries: Vec::new(),
                    superseded: Vec::new(),
                })
                .collect(),
            conflicts: Vec::new(),
            not_applicable: Vec::new(),
            policy_versions: BTreeMap::new(),
            digest: "r".into(),
        }
    }

    pub(crate) fn payload(version: u64, digest: &str, r: &Resolution) -> PolicyPayload {
        PolicyPayload {
            tenant_id: "t1".into(),
            device_id: "d1".into(),
            version,
            digest: digest.into(),
            issued_at: 0,
            resolution: serde_json::to_value(r).unwrap(),
        }
    }

    fn expected(key: &str) -> Expected<'_> {
        Expected {
            tenant_id: "t1",
            device_id: "d1",
            policy_key: key,
        }
    }

    #[test]
    fn a_good_policy_verifies_and_parses() {
        let s = Signer::new();
        let r = resolution(&[("real_time_protection", Value::Bool(true))]);
        let signed = s.sign(&payload(3, "abc", &r));
        let v = verify(&signed, expected(&s.key.public_hex), None).unwrap();
        assert_eq!(v.payload.version, 3);
        assert_eq!(v.resolution, r);
        // Newer than held, and the same policy again, both pass.
        let held = Held {
            version: 2,
            digest: "old",
        };
        assert!(verify(&signed, expected(&s.key.public_hex), Some(held)).is_ok());
        let same = Held {
            version: 3,
            digest: "abc",
        };
        assert!(verify(&signed, expected(&s.key.public_hex), Some(same)).is_ok());
    }

    fn notice(s: &Signer, kind: &str, device: &str) -> OffboardNotice {
        let text = serde_json::to_string(&NoticePayload {
            kind: kind.into(),
            tenant_id: "t1".into(),
            device_id: device.into(),
            issued_at: 0,
            reason: "deleted by token:admin".into(),
        })
        .unwrap();
        OffboardNotice {
            signature: rampart_pki::sign(&s.key.secret_hex, text.as_bytes()).unwrap(),
            payload: text,
        }
    }

    #[test]
    fn only_a_signed_notice_for_this_device_offboards() {
        let s = Signer::new();
        let good = notice(&s, NOTICE_OFFBOARD, "d1");
        let p = verify_notice(&good, expected(&s.key.public_hex)).unwrap();
        assert_eq!(p.reason, "deleted by token:admin");
        // Another device's notice, another kind, another key, edited bytes.
        assert!(matches!(
            verify_notice(
                &notice(&s, NOTICE_OFFBOARD, "d2"),
                expected(&s.key.public_hex)
            ),
            Err(VerifyError::WrongDevice { .. })
        ));
        assert!(verify_notice(&notice(&s, "policy", "d1"), expected(&s.key.public_hex)).is_err());
        let other = Signer::new();
        assert_eq!(
            verify_notice(&good, expected(&other.key.public_hex)),
            Err(VerifyError::BadSignature)
        );
        let mut edited = good.clone();
        edited.payload = edited.payload.replace("d1", "d2");
        assert_eq!(
            verify_notice(&edited, expected(&s.key.public_hex)),
            Err(VerifyError::BadSignature)
        );
        // A signed policy is not a notice, even with a valid signature.
        let policy = s.sign(&payload(1, "abc", &resolution(&[])));
        let as_notice = OffboardNotice {
            payload: policy.payload,
            signature: policy.signature,
        };
        assert!(verify_notice(&as_notice, expected(&s.key.public_hex)).is_err());
    }

    fn announce(from: &Signer, to: &Signer, tenant: &str, kind: &str) -> KeyAnnouncement {
        let text = serde_json::to_string(&KeyAnnouncementPayload {
            kind: kind.into(),
            tenant_id: tenant.into(),
            previous_key: from.key.public_hex.clone(),
            key: to.key.public_hex.clone(),
            generation: 1,
            issued_at: 0,
        })
        .unwrap();
        KeyAnnouncement {
            signature: rampart_pki::sign(&from.key.secret_hex, text.as_bytes()).unwrap(),
            payload: text,
        }
    }

    #[test]
    fn a_chain_of_announcements_leads_from_the_held_key_to_the_current_one() {
        let (k0, k1, k2) = (Signer::new(), Signer::new(), Signer::new());
        let chain = vec![
            announce(&k0, &k1, "t1", ANNOUNCE_POLICY_KEY),
            announce(&k1, &k2, "t1", ANNOUNCE_POLICY_KEY),
        ];
        let from_first = follow_key_announcements("t1", &k0.key.public_hex, &chain).unwrap();
        assert_eq!(
            from_first,
            vec![k1.key.public_hex.clone(), k2.key.public_hex.clone()]
        );
        // A device that already moved once takes only the rest; one holding
        // the current key takes nothing.
        let from_middle = follow_key_announcements("t1", &k1.key.public_hex, &chain).unwrap();
        assert_eq!(from_middle, vec![k2.key.public_hex.clone()]);
        assert!(follow_key_announcements("t1", &k2.key.public_hex, &chain)
            .unwrap()
            .is_empty());
        // A key this device never held leads nowhere.
        let stranger = Signer::new();
        assert!(
            follow_key_announcements("t1", &stranger.key.public_hex, &chain)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn only_an_announcement_signed_with_the_held_key_moves_the_device() {
        let (k0, k1, attacker) = (Signer::new(), Signer::new(), Signer::new());
        // Claims to replace k0 but is signed by someone else.
        let mut forged = announce(&attacker, &attacker, "t1", ANNOUNCE_POLICY_KEY);
        forged.payload = forged
            .payload
            .replace(&attacker.key.public_hex, &k0.key.public_hex);
        let e = follow_key_announcements("t1", &k0.key.public_hex, &[forged]).unwrap_err();
        assert_eq!(e.code(), "policy_key_announcement_invalid");
        // Edited after signing.
        let mut edited = announce(&k0, &k1, "t1", ANNOUNCE_POLICY_KEY);
        edited.payload = edited
            .payload
            .replace(&k1.key.public_hex, &attacker.key.public_hex);
        assert!(follow_key_announcements("t1", &k0.key.public_hex, &[edited]).is_err());
        // Another tenant's, or another kind of signed message.
        let other_tenant = announce(&k0, &k1, "t2", ANNOUNCE_POLICY_KEY);
        assert!(follow_key_announcements("t1", &k0.key.public_hex, &[other_tenant]).is_err());
        let other_kind = announce(&k0, &k1, "t1", NOTICE_OFFBOARD);
        assert!(follow_key_announcements("t1", &k0.key.public_hex, &[other_kind]).is_err());
        // A signed policy is not an announcement.
        let policy = k0.sign(&payload(1, "abc", &resolution(&[])));
        let as_announcement = KeyAnnouncement {
            payload: policy.payload,
            signature: policy.signature,
        };
        assert!(follow_key_announcements("t1", &k0.key.public_hex, &[as_announcement]).is_err());
    }

    #[test]
    fn a_stored_policy_signed_with_a_retired_key_still_verifies_but_a_new_one_must_not() {
        let (old, new) = (Signer::new(), Signer::new());
        let signed = old.sign(&payload(2, "abc", &resolution(&[])));
        let retired = vec![old.key.public_hex.clone()];
        let v = verify_stored(&signed, expected(&new.key.public_hex), &retired).unwrap();
        assert_eq!(v.payload.version, 2);
        assert_eq!(
            verify(&signed, expected(&new.key.public_hex), None),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify_stored(&signed, expected(&new.key.public_hex), &[]),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn a_tampered_payload_is_refused() {
        let s = Signer::new();
        let mut signed = s.sign(&payload(1, "abc", &resolution(&[])));
        signed.payload = signed.payload.replace("\"version\":1", "\"version\":9");
        assert_eq!(
            verify(&signed, expected(&s.key.public_hex), None),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn another_tenants_key_is_refused() {
        let (s, other) = (Signer::new(), Signer::new());
        let signed = s.sign(&payload(1, "abc", &resolution(&[])));
        assert_eq!(
            verify(&signed, expected(&other.key.public_hex), None),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify(&signed, expected("not hex"), None),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn another_devices_policy_is_refused() {
        let s = Signer::new();
        let mut p = payload(1, "abc", &resolution(&[]));
        p.device_id = "d2".into();
        let e = verify(&s.sign(&p), expected(&s.key.public_hex), None).unwrap_err();
        assert!(matches!(e, VerifyError::WrongDevice { .. }), "{e}");
        let mut p = payload(1, "abc", &resolution(&[]));
        p.tenant_id = "t2".into();
        let e = verify(&s.sign(&p), expected(&s.key.public_hex), None).unwrap_err();
        assert_eq!(e.code(), "policy_wrong_device");
    }

    #[test]
    fn an_older_version_is_refused() {
        let s = Signer::new();
        let signed = s.sign(&payload(4, "abc", &resolution(&[])));
        let held = Held {
            version: 5,
            digest: "new",
        };
        assert_eq!(
            verify(&signed, expected(&s.key.public_hex), Some(held)),
            Err(VerifyError::Older { held: 5, got: 4 })
        );
    }

    #[test]
    fn the_same_version_with_another_digest_is_a_replay() {
        let s = Signer::new();
        let signed = s.sign(&payload(5, "abc", &resolution(&[])));
        let held = Held {
            version: 5,
            digest: "xyz",
        };
        assert_eq!(
            verify(&signed, expected(&s.key.public_hex), Some(held)),
            Err(VerifyError::Replay { version: 5 })
        );
    }

    #[test]
    fn a_signed_payload_that_is_not_a_policy_is_malformed() {
        let s = Signer::new();
        let text = "{\"hello\":1}".to_string();
        let signed = SignedPolicy {
            signature: rampart_pki::sign(&s.key.secret_hex, text.as_bytes()).unwrap(),
            payload: text,
        };
        let e = verify(&signed, expected(&s.key.public_hex), None).unwrap_err();
        assert_eq!(e.code(), "policy_malformed");
    }
}
