//! Pseudonyms: a user id (and a glove's id) replaced by a keyed hash, the
//! same in every export made with the same key and unlinkable to the id
//! without it.
//!
//! `HMAC-SHA-256(key, text)` in lower-case hex, its first 32 characters
//! (128 bits: no two of a study's users share one in practice). The text is
//! the user id as lower-case hyphenated text, exactly; a glove's id is
//! hashed as `glove:<id>`, so that it can never equal a user's pseudonym.
//!
//! The key is bytes: those of the text given with `--pseudonym-key`
//! (`M2M_PSEUDONYM_KEY`) as it is (UTF-8, hex or not), or of the file
//! `export-key` in the data directory, trimmed, which the first export of
//! a data directory makes (32 random bytes as 64 hex digits, mode 0600).
//! So `--pseudonym-key "$(cat m2m-data/export-key)"` gives the pseudonyms
//! of the kept key, for instance to export a copy of the database.

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The file of the kept key, in the data directory.
pub(crate) const KEY_FILE: &str = "export-key";

/// The shortest key accepted, in bytes (32 hex digits are 128 bits).
pub(crate) const MIN_KEY_BYTES: usize = 32;

/// Characters of a pseudonym (hex digits of the HMAC).
pub(crate) const PSEUDONYM_CHARS: usize = 32;

/// The key of the pseudonyms. `Debug` does not print it.
#[derive(Clone)]
pub(crate) struct PseudonymKey(Vec<u8>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(<redacted>)")
    }
}

/// Where the key came from, for the summary line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `--pseudonym-key` or `M2M_PSEUDONYM_KEY`.
    Given,
    /// The data directory's key file, read.
    Kept(PathBuf),
    /// The data directory's key file, made now.
    Made(PathBuf),
}

impl PseudonymKey {
    /// A key given as text: its bytes, refused (with a message naming the
    /// flag) when shorter than [`MIN_KEY_BYTES`].
    pub(crate) fn given(text: &str) -> Result<PseudonymKey, String> {
        if text.len() < MIN_KEY_BYTES {
            return Err(format!(
                "--pseudonym-key (M2M_PSEUDONYM_KEY) must be at least {MIN_KEY_BYTES} \
                 characters (it has {})",
                text.len()
            ));
        }
        Ok(PseudonymKey(text.as_bytes().to_vec()))
    }

    /// The key kept in `data_dir`, made (32 random bytes as hex, mode
    /// 0600) when there is none.
    pub(crate) fn kept_in(data_dir: &Path) -> anyhow::Result<(PseudonymKey, KeySource)> {
        let path = data_dir.join(KEY_FILE);
        for _ in 0..2 {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let key = PseudonymKey::given(text.trim()).map_err(|_| {
                        anyhow::anyhow!(
                            "{} holds no key of at least {MIN_KEY_BYTES} characters; \
                             remove it to make a new one (the pseudonyms will change) \
                             or give --pseudonym-key",
                            path.display()
                        )
                    })?;
                    return Ok((key, KeySource::Kept(path)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let bytes: [u8; 32] = rand::random();
                    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    match write_private(&path, &text) {
                        Ok(()) => {
                            return Ok((PseudonymKey(text.into_bytes()), KeySource::Made(path)))
                        }
                        // Another export made it first: read theirs.
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("cannot write {}", path.display()))
                        }
                    }
                }
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        anyhow::bail!("cannot read {}", path.display())
    }

    /// The pseudonym of a user.
    pub(crate) fn user(&self, user_id: Uuid) -> String {
        self.hash(user_id.hyphenated().to_string().as_bytes())
    }

    /// The pseudonym of a glove's id.
    pub(crate) fn glove(&self, glove_id: &str) -> String {
        self.hash(format!("glove:{glove_id}").as_bytes())
    }

    fn hash(&self, text: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(text);
        let digest = mac.finalize().into_bytes();
        digest[..PSEUDONYM_CHARS / 2]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Writes a new file readable by its owner only, and makes it durable.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_the_hmac_of_the_id_truncated() {
        // Python: hmac.new(key, text, hashlib.sha256).hexdigest()[:32]
        let key = PseudonymKey::given("0123456789abcdef0123456789abcdef").unwrap();
        let user: Uuid = "01890a5d-ac96-774b-bcce-b302099a8057".parse().unwrap();
        assert_eq!(key.user(user), "7d9bd4bfc5f3590c2c9689058e129d11");
        assert_eq!(key.glove("G-17"), "f04456930310706cd1950db7bfeea5cd");
        assert_eq!(key.user(user).len(), PSEUDONYM_CHARS);
        let other = PseudonymKey::given("0123456789abcdef0123456789abcdeF").unwrap();
        assert_ne!(other.user(user), key.user(user));
        assert_ne!(key.user(Uuid::now_v7()), key.user(user));
    }

    #[test]
    fn short_keys_are_refused_naming_the_flag() {
        let err = PseudonymKey::given("too short").unwrap_err();
        assert!(err.contains("--pseudonym-key"), "{err}");
        assert!(err.contains("at least 32"), "{err}");
        assert!(
            format!("{:?}", PseudonymKey::given(&"k".repeat(40)).unwrap()).contains("redacted")
        );
    }

    #[test]
    fn the_kept_key_is_made_once_private_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let (made, source) = PseudonymKey::kept_in(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        assert_eq!(source, KeySource::Made(path.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 64);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
        let (kept, source) = PseudonymKey::kept_in(dir.path()).unwrap();
        assert_eq!(source, KeySource::Kept(path.clone()));
        let user = Uuid::now_v7();
        assert_eq!(kept.user(user), made.user(user));
        // The same key given as text gives the same pseudonyms.
        assert_eq!(
            PseudonymKey::given(&text).unwrap().user(user),
            made.user(user)
        );

        std::fs::write(&path, "short\n").unwrap();
        let err = PseudonymKey::kept_in(dir.path()).unwrap_err().to_string();
        assert!(err.contains("export-key holds no key"), "{err}");
    }
}
