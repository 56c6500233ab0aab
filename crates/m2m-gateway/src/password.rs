//! Argon2id password hashes (PHC strings) computed in reused working memory.
//!
//! Each argon2 computation needs `m_cost` KiB of memory (19 MiB with the
//! contract's parameters). Allocating and freeing that much per login made
//! glibc raise its mmap and trim thresholds to match (they adapt to the
//! largest block freed), after which every thread's arena kept tens of MiB
//! it no longer used: `m2m serve` peaked at ~500 MB of RSS with a heap of
//! under 40 MB (docs/performance.md has the heaptrack figures). The working
//! memory is therefore allocated once per concurrent hasher and reused.
//!
//! The hashes are standard PHC strings, interchangeable with those of the
//! `argon2` crate's `PasswordHasher`, which the tests check.

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use m2m_domain::Password;
use rand::RngCore;
use std::sync::{Mutex, PoisonError};

/// Argon2id with the parameters of the contract (m = 19456 KiB, t = 2, p = 1).
pub(crate) fn contract_params() -> Params {
    Params::new(19_456, 2, 1, None).expect("valid argon2 parameters")
}

/// The PHC string the gateway stores for `password`: argon2id with the
/// contract's parameters and a random salt, as registration computes it.
/// Blocking (tens of milliseconds of CPU and 19 MiB of memory): for tools
/// such as `m2m users add` that create accounts outside the gateway.
pub fn hash_password(password: &Password) -> anyhow::Result<String> {
    Hasher::new(contract_params()).hash_random_salt(password.expose().as_bytes())
}

/// Hashes and verifies passwords, keeping the working memory of finished
/// computations for the next ones.
#[derive(Debug)]
pub(crate) struct Hasher {
    params: Params,
    /// Free working memories. The caller bounds the computations running at
    /// once, which bounds how many are ever allocated.
    free: Mutex<Vec<Vec<Block>>>,
}

impl Hasher {
    pub(crate) fn new(params: Params) -> Self {
        Hasher {
            params,
            free: Mutex::new(Vec::new()),
        }
    }

    /// The PHC string of `password` with `salt`, with this hasher's
    /// parameters.
    pub(crate) fn hash(&self, password: &[u8], salt: &SaltString) -> anyhow::Result<String> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let output = self.compute(&argon2, password, salt.as_salt(), None)?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: (&self.params)
                .try_into()
                .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(hash.to_string())
    }

    /// The PHC string of `password` with a new random salt.
    pub(crate) fn hash_random_salt(&self, password: &[u8]) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        self.hash(password, &salt)
    }

    /// Whether `password` matches the PHC string `phc`, with the algorithm,
    /// version and parameters that `phc` names. Anything unparsable is a
    /// mismatch.
    pub(crate) fn verify(&self, password: &[u8], phc: &str) -> bool {
        let Ok(stored) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(stored.algorithm) else {
            return false;
        };
        let Ok(version) = stored.version.map_or(Ok(Version::V0x13), Version::try_from) else {
            return false;
        };
        let Ok(params) = Params::try_from(&stored) else {
            return false;
        };
        let argon2 = Argon2::new(algorithm, version, params);
        self.compute(&argon2, password, salt, Some(expected.len()))
            // `Output`'s equality is constant-time.
            .is_ok_and(|computed| computed == expected)
    }

    /// Runs argon2 in a reused working memory.
    fn compute(
        &self,
        argon2: &Argon2<'_>,
        password: &[u8],
        salt: argon2::password_hash::Salt<'_>,
        output_len: Option<usize>,
    ) -> anyhow::Result<Output> {
        let mut salt_buf = [0u8; 64];
        let salt = salt
            .decode_b64(&mut salt_buf)
            .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let len = output_len
            .or(argon2.params().output_len())
            .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let blocks = argon2.params().block_count();
        let mut memory = self.take(blocks);
        let output = Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut memory[..])
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|e| anyhow::anyhow!("hashing: {e}"));
        self.give_back(memory);
        output
    }

    fn take(&self, blocks: usize) -> Vec<Block> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        match free.last() {
            Some(m) if m.len() >= blocks => free.pop().expect("checked"),
            // None free, or too small for a stored hash's parameters.
            _ => {
                drop(free);
                vec![Block::new(); blocks]
            }
        }
    }

    fn give_back(&self, memory: Vec<Block>) {
        // Only memory of this hasher's own size is kept: a stored hash with
        // other parameters is rare and should not pin its memory.
        if memory.len() == self.params.block_count() {
            self.free
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(memory);
        }
    }

    /// Working memories kept for reuse (for tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};

    fn small() -> Params {
        Params::new(64, 2, 1, None).unwrap()
    }

    fn salt() -> SaltString {
        SaltString::encode_b64(b"0123456789abcdef").unwrap()
    }

    /// A hash made by the argon2 crate itself, with parameters other than
    /// the hasher's.
    fn hash_with_other_params(password: &[u8]) -> String {
        let other = Params::new(128, 1, 1, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, other)
            .hash_password(password, &salt())
            .unwrap()
            .to_string()
    }

    #[test]
    fn hashes_are_those_of_the_argon2_crate() {
        let h = Hasher::new(small());
        let mine = h.hash(b"correct horse", &salt()).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, small())
            .hash_password(b"correct horse", &salt())
            .unwrap()
            .to_string();
        assert_eq!(mine, theirs);
        assert!(mine.starts_with("$argon2id$v=19$m=64,t=2,p=1$"));
    }

    /// The public hash is registration's: the contract's parameters, a
    /// new salt each time, and the gateway verifies it.
    #[test]
    fn the_public_hash_is_the_contracts() {
        let pw = Password::parse("a long enough password".into()).unwrap();
        let a = hash_password(&pw).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, hash_password(&pw).unwrap(), "salted");
        assert!(Hasher::new(contract_params()).verify(pw.expose().as_bytes(), &a));
    }

    #[test]
    fn verifies_its_own_and_the_crates_hashes() {
        let h = Hasher::new(small());
        let mine = h.hash(b"pw", &salt()).unwrap();
        assert!(h.verify(b"pw", &mine));
        assert!(!h.verify(b"pW", &mine));
        // A hash made elsewhere, with other parameters, still verifies.
        let theirs = hash_with_other_params(b"pw");
        assert!(h.verify(b"pw", &theirs));
        assert!(!h.verify(b"nope", &theirs));
        // And the crate agrees with ours.
        let parsed = PasswordHash::new(&mine).unwrap();
        assert!(Argon2::default().verify_password(b"pw", &parsed).is_ok());
    }

    #[test]
    fn garbage_never_verifies() {
        let h = Hasher::new(small());
        for phc in [
            "",
            "not a hash",
            "$argon2id$v=19$m=64,t=2,p=1$c2FsdHNhbHQ",
            "$bcrypt$v=19$m=64,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAA",
        ] {
            assert!(!h.verify(b"pw", phc), "{phc}");
        }
    }

    #[test]
    fn working_memory_is_reused() {
        let h = Hasher::new(small());
        for _ in 0..5 {
            h.hash(b"pw", &salt()).unwrap();
        }
        assert_eq!(h.kept(), 1, "one computation at a time needs one memory");
        let theirs = hash_with_other_params(b"pw");
        assert!(h.verify(b"pw", &theirs));
        assert_eq!(h.kept(), 1, "memory of other parameters is not kept");
    }
}
