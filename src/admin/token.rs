//! The admin API's bearer token: where it comes from and how a request's token is checked.
//!
//! [`Broker::start`](crate::Broker::start) calls [`resolve`] once: `http.token` when the
//! configuration sets it (e.g. through `FUBAR_HTTP__TOKEN`), else the contents of
//! `<node.data_dir>/admin.token`, which the first start of a node creates with 32 random
//! bytes from the OS RNG, hex-encoded, readable by its owner only (mode 0600). The CLI
//! ([`super::client`]) finds the token the same way. [`matches()`] compares in constant time.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use std::fs::OpenOptions;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Name of the token file inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Random bytes in a generated token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// Why the token could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token file (or its directory) could not be read, created or written.
    #[error("admin token file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The token file holds no token.
    #[error("admin token file {0} is empty: delete it to have a new token generated")]
    Empty(PathBuf),
}

/// Where a node's token file is.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// The token a node serves with: `configured` when not empty, else the token file in
/// `data_dir`, created with a fresh random token when missing.
pub fn resolve(configured: &str, data_dir: &Path) -> Result<String, TokenError> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    let path = token_path(data_dir);
    let io = |source| TokenError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let token = generate();
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io)?;
            Ok(token)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(io(e)),
    }
}

/// Reads an existing token file (surrounding whitespace ignored).
pub fn read(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty(path.to_path_buf()));
    }
    Ok(token.to_string())
}

/// A new random token: `TOKEN_BYTES` (32) bytes from the OS RNG as lowercase hex.
pub fn generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `presented` equals `expected`, in time independent of where they differ.
pub fn matches(expected: &str, presented: &str) -> bool {
    expected.as_bytes().ct_eq(presented.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_once_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = resolve("", &data).unwrap();
        assert_eq!(first.len(), 2 * TOKEN_BYTES);
        assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
        let mode = std::fs::metadata(token_path(&data))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(resolve("", &data).unwrap(), first);
        assert_ne!(generate(), first);
    }

    #[test]
    fn configured_token_wins_and_empty_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve("from-config-0123456", dir.path()).unwrap(),
            "from-config-0123456"
        );
        assert!(!token_path(dir.path()).exists());
        std::fs::write(token_path(dir.path()), "\n").unwrap();
        assert!(matches!(resolve("", dir.path()), Err(TokenError::Empty(_))));
    }

    #[test]
    fn comparison() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "abd"));
        assert!(!matches("abc", "ab"));
        assert!(!matches("abc", ""));
    }
}
