//! Password hashing: argon2id in PHC string form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
//!
//! Only the hash is ever stored. Verification recomputes the hash with the parameters and
//! salt recorded in the string and compares in constant time (the `argon2` crate's
//! `verify_password`). Hashing is slow on purpose; callers on an async thread run it on
//! the blocking pool ([`Gate::authenticate`](super::Gate::authenticate)).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Cost of new hashes (existing hashes keep the cost they were made with).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashCost {
    /// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("password hashing: {0}")]
pub struct HashError(String);

/// The hasher for `cost`.
fn hasher(cost: HashCost) -> Result<Argon2<'static>, HashError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
        .map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Checks that `cost` is usable (argon2's own limits).
pub fn check_cost(cost: HashCost) -> Result<(), HashError> {
    hasher(cost).map(|_| ())
}

/// Hashes `password` with a fresh random salt.
pub fn hash(password: &[u8], cost: HashCost) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    hasher(cost)?
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the PHC string `phc`. A malformed string matches nothing.
pub fn verify(password: &[u8], phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    // The parameters come from the string; the default instance only selects the algorithms.
    Argon2::default().verify_password(password, &parsed).is_ok()
}

/// The cheapest cost argon2 accepts, for unit tests of code that hashes.
#[cfg(test)]
pub(crate) const TEST_COST: HashCost = HashCost {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = TEST_COST;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let phc = hash(b"s3cret", CHEAP).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(!phc.contains("s3cret"));
        assert!(verify(b"s3cret", &phc));
        assert!(!verify(b"s3cret ", &phc));
        assert!(!verify(b"", &phc));
        assert!(!verify(b"s3cret", "not a hash"));
        // A new salt every time.
        assert_ne!(phc, hash(b"s3cret", CHEAP).unwrap());
    }

    #[test]
    fn bad_cost_is_an_error() {
        assert!(check_cost(HashCost {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1
        })
        .is_err());
        assert!(check_cost(HashCost::default()).is_ok());
    }
}
