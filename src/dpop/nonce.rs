use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ConfigError;

/// Stateless server nonces for DPoP (RFC 9449 §9).
///
/// A nonce is the number of the current time slot and an HMAC-SHA256 of it under a secret:
/// nothing is stored, and every instance given the same secret issues and accepts the same
/// nonces. A proof must carry the nonce of the current slot or of the one before (so a nonce
/// lives between one and two slots; default slot 5 minutes). A proof without a valid nonce
/// is refused with `use_dpop_nonce` and the current nonce in `DPoP-Nonce`; a proof with the
/// previous slot's nonce passes, and the response carries the current one.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_bearer::dpop::DpopNonces;
///
/// let nonces = DpopNonces::new(b"a secret of at least thirty-two bytes!").unwrap()
///     .slot(Duration::from_secs(120));
/// let nonce = nonces.issue(SystemTime::now());
/// assert_eq!(nonce.len(), 32);
/// assert!(DpopNonces::new(b"short").is_err());
/// ```
#[derive(Clone)]
pub struct DpopNonces {
    key: [u8; 64],
    slot: Duration,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// How a nonce checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceState {
    /// Of the current slot.
    Current,
    /// Of the previous slot: valid, but the client should get the current one.
    Previous,
    /// Forged, malformed, or too old.
    Invalid,
}

const NONCE_BYTES: usize = 8 + 16;

impl DpopNonces {
    /// Nonces keyed by `secret` (at least 32 bytes; share it between the instances that
    /// serve the same clients), with 5-minute slots.
    pub fn new(secret: &[u8]) -> Result<Self, ConfigError> {
        if secret.len() < 32 {
            return Err(ConfigError::new(
                "the DPoP nonce secret must be at least 32 bytes",
            ));
        }
        let mut key = [0u8; 64];
        if secret.len() > 64 {
            key[..32].copy_from_slice(&Sha256::digest(secret));
        } else {
            key[..secret.len()].copy_from_slice(secret);
        }
        Ok(Self {
            key,
            slot: Duration::from_secs(300),
        })
    }

    /// The slot length (at least one second).
    #[must_use]
    pub fn slot(mut self, slot: Duration) -> Self {
        self.slot = slot.max(Duration::from_secs(1));
        self
    }

    fn slot_at(&self, now: SystemTime) -> u64 {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        secs / self.slot.as_secs().max(1)
    }

    fn mac(&self, slot: u64) -> [u8; 16] {
        let mut msg = Vec::with_capacity(32);
        msg.extend_from_slice(b"tower-bearer dpop nonce\0");
        msg.extend_from_slice(&slot.to_be_bytes());
        let full = hmac_sha256(&self.key, &msg);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    fn encode(&self, slot: u64) -> String {
        let mut raw = [0u8; NONCE_BYTES];
        raw[..8].copy_from_slice(&slot.to_be_bytes());
        raw[8..].copy_from_slice(&self.mac(slot));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The nonce of the slot `now` falls in.
    pub fn issue(&self, now: SystemTime) -> String {
        self.encode(self.slot_at(now))
    }

    pub(crate) fn check(&self, nonce: &str, now: SystemTime) -> NonceState {
        let Ok(raw) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceState::Invalid;
        };
        if raw.len() != NONCE_BYTES {
            return NonceState::Invalid;
        }
        let mut slot_bytes = [0u8; 8];
        slot_bytes.copy_from_slice(&raw[..8]);
        let slot = u64::from_be_bytes(slot_bytes);
        if !bool::from(self.mac(slot).ct_eq(&raw[8..])) {
            return NonceState::Invalid;
        }
        let current = self.slot_at(now);
        if slot == current {
            NonceState::Current
        } else if slot.checked_add(1) == Some(current) {
            NonceState::Previous
        } else {
            NonceState::Invalid
        }
    }
}

/// HMAC-SHA256 (RFC 2104) with a key of at most 64 bytes, zero-padded.
fn hmac_sha256(key: &[u8; 64], msg: &[u8]) -> [u8; 32] {
    let mut ipad = [0x36u8; 64];
    let mut opad = [0x5cu8; 64];
    for i in 0..64 {
        ipad[i] ^= key[i];
        opad[i] ^= key[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mut key = [0u8; 64];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn nonces_live_one_to_two_slots_and_need_the_secret() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_020);
        let n = DpopNonces::new(&[7; 32])
            .unwrap()
            .slot(Duration::from_secs(60));
        let nonce = n.issue(t0);
        assert_eq!(n.check(&nonce, t0), NonceState::Current);
        assert_eq!(
            n.check(&nonce, t0 + Duration::from_secs(60)),
            NonceState::Previous
        );
        assert_eq!(
            n.check(&nonce, t0 + Duration::from_secs(120)),
            NonceState::Invalid
        );
        assert_eq!(
            n.check(&nonce, t0 - Duration::from_secs(60)),
            NonceState::Invalid
        );
        // Another instance with the same secret agrees; another secret does not.
        let same = DpopNonces::new(&[7; 32])
            .unwrap()
            .slot(Duration::from_secs(60));
        assert_eq!(same.check(&nonce, t0), NonceState::Current);
        let other = DpopNonces::new(&[8; 32])
            .unwrap()
            .slot(Duration::from_secs(60));
        assert_eq!(other.check(&nonce, t0), NonceState::Invalid);
        for junk in ["", "abc", "!!!", &"A".repeat(32)] {
            assert_eq!(n.check(junk, t0), NonceState::Invalid, "{junk}");
        }
    }
}
