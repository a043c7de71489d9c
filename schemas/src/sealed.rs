//! The sealed password of `login_attempt`: it travels from the gateway to
//! user-svc sealed to user-svc's X25519 public key (libsodium-style sealed
//! box), so no topic ever holds it in clear. Part of the contract: whoever
//! writes a login seals with [`SealKey`], user-svc opens with
//! [`UnsealKey`]. Keys are passed as base64 in settings.

use std::fmt;

use base64::{engine::general_purpose::STANDARD, Engine};
use crypto_box::{aead::OsRng, PublicKey, SecretKey};

/// A key that did not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0} must be 32 bytes in base64 (run `storefront keygen`)")]
pub struct KeyError(&'static str);

/// user-svc's secret key. Never printed.
#[derive(Clone)]
pub struct UnsealKey(SecretKey);

impl UnsealKey {
    pub fn generate() -> Self {
        Self(SecretKey::generate(&mut OsRng))
    }

    pub fn parse(base64: &str) -> Result<Self, KeyError> {
        decode32(base64, "the user-svc secret key").map(|b| Self(SecretKey::from(b)))
    }

    /// The matching public key, for the gateway.
    pub fn seal_key(&self) -> SealKey {
        SealKey(self.0.public_key())
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Opens a sealed password; `None` if it was not sealed to this key.
    pub fn unseal(&self, sealed: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
        self.0.unseal(sealed).ok().map(zeroize::Zeroizing::new)
    }
}

impl fmt::Debug for UnsealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnsealKey([redacted])")
    }
}

/// user-svc's public key, held by the gateway.
#[derive(Clone, Debug)]
pub struct SealKey(PublicKey);

impl SealKey {
    pub fn parse(base64: &str) -> Result<Self, KeyError> {
        decode32(base64, "the user-svc public key").map(|b| Self(PublicKey::from(b)))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// Seals `password` so only the holder of the secret key can open it.
    pub fn seal(&self, password: &[u8]) -> Vec<u8> {
        self.0
            .seal(&mut OsRng, password)
            .expect("sealing a short message cannot fail")
    }
}

fn decode32(base64: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    STANDARD
        .decode(base64.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or(KeyError(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_password_opens_only_with_the_matching_key() {
        let key = UnsealKey::generate();
        let sealed = key.seal_key().seal(b"demo-password");
        assert!(!sealed.windows(13).any(|w| w == b"demo-password"));
        assert_eq!(key.unseal(&sealed).unwrap().as_slice(), b"demo-password");
        assert!(UnsealKey::generate().unseal(&sealed).is_none());
        let round = UnsealKey::parse(&key.to_base64()).unwrap();
        assert_eq!(round.seal_key().to_base64(), key.seal_key().to_base64());
        assert!(format!("{key:?}").contains("redacted"));
    }
}
