//! argon2id password hashes (PHC strings).

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};

/// The cost of a hash: memory in KiB and passes.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl HashCost {
    /// OWASP's recommendation for argon2id (19 MiB, 2 passes).
    pub const RECOMMENDED: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
}

/// Hashes `password` with a fresh salt.
pub fn hash(password: &str, cost: HashCost) -> String {
    let params =
        Params::new(cost.memory_kib, cost.iterations, 1, None).expect("valid argon2 parameters");
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing succeeds with valid parameters")
        .to_string()
}

/// Whether `password` matches the PHC string `hash` (its own parameters apply).
pub fn verify(password: &[u8], hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let cost = HashCost {
            memory_kib: 256,
            iterations: 1,
        };
        let h = hash("demo-password", cost);
        assert!(h.starts_with("$argon2id$"));
        assert!(verify(b"demo-password", &h));
        assert!(!verify(b"demo-passwore", &h));
        assert!(!verify(b"demo-password", "not a hash"));
    }
}
