//! Publisher keys: ed25519, written as text.
//!
//! - A public key is `ed25519:` followed by 64 hex digits; that is how rules.toml's trust
//!   policy, signatures, indexes and `KEY.pub` files spell it. Its **fingerprint** is the
//!   first 16 hex digits, used in messages.
//! - A secret key file holds one line `ed25519-secret:` + 64 hex digits (the seed) and
//!   comments. `engine pack keygen` creates it readable by its owner only and never
//!   overwrites an existing file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::{MarketError, io};

const PUBLIC_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

/// An ed25519 public key: who signed a bundle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// The first 16 hex digits of the key, for messages.
    pub fn fingerprint(&self) -> String {
        hex::encode(&self.0.as_bytes()[..8])
    }

    /// Whether `signature` is this key's signature of `message` (strict verification:
    /// no malleable or small-order encodings).
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify_strict(message, &Signature::from_bytes(signature)).is_ok()
    }

    /// Reads a key written as text, or a file (such as `KEY.pub`) holding one.
    pub fn from_arg(arg: &str) -> Result<PublicKey, MarketError> {
        if let Ok(key) = arg.parse() {
            return Ok(key);
        }
        let path = Path::new(arg);
        if path.is_file() {
            let text = crate::fsio::read_to_string(path).map_err(io(path))?;
            let line = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#')).unwrap_or("");
            return line.parse().map_err(|e| MarketError::Invalid { file: arg.to_string(), message: e });
        }
        Err(MarketError::Invalid {
            file: arg.to_string(),
            message: format!("neither a public key ({PUBLIC_PREFIX} + 64 hex digits) nor a file holding one"),
        })
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = String;
    /// `ed25519:<64 hex>`; the prefix may be left out.
    fn from_str(s: &str) -> Result<PublicKey, String> {
        let s = s.trim();
        let digits = s.strip_prefix(PUBLIC_PREFIX).unwrap_or(s);
        let bytes = decode_32(digits)
            .ok_or_else(|| format!("{s:?} is not an ed25519 public key ({PUBLIC_PREFIX} followed by 64 hex digits)"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| format!("{s:?} is not a valid ed25519 public key (not a curve point)"))
    }
}

/// An ed25519 signing key.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public())
    }
}

impl SecretKey {
    /// A key from 32 secret bytes.
    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, MarketError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| MarketError::Other(format!("no random source for a new key: {e}")))?;
        Ok(SecretKey::from_seed(seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Reads a secret key file written by [`SecretKey::write_new`].
    pub fn read(path: &Path) -> Result<SecretKey, MarketError> {
        let text = crate::fsio::read_to_string(path).map_err(io(path))?;
        let invalid = |message: String| MarketError::Invalid { file: path.display().to_string(), message };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| invalid("empty key file".into()))?;
        if line.starts_with(PUBLIC_PREFIX) {
            return Err(invalid("this is a public key; signing needs the secret key file (without .pub)".into()));
        }
        let digits = line
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| invalid(format!("not a secret key file: expected a line {SECRET_PREFIX}<64 hex digits>")))?;
        let seed =
            decode_32(digits).ok_or_else(|| invalid(format!("{SECRET_PREFIX} must be followed by 64 hex digits")))?;
        Ok(SecretKey::from_seed(seed))
    }

    /// Writes the key to `path` (owner-only permissions) and its public key to
    /// `path.pub`. Refuses to overwrite either file. Missing parent folders are created
    /// owner-only (0700), so that `--out keys/alice` works on a fresh checkout and the
    /// folder holding a secret key is not readable by others either.
    pub fn write_new(&self, path: &Path) -> Result<PathBuf, MarketError> {
        let public_path = public_path(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::DirBuilderExt as _;
                builder.mode(0o700);
            }
            builder.create(parent).map_err(io(parent))?;
        }
        if public_path.exists() {
            return Err(MarketError::Io {
                path: public_path,
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "refusing to overwrite an existing key"),
            });
        }
        let secret = format!(
            "# safety-rules publisher signing key (ed25519). Keep it secret; publish {} instead.\n\
             # public key: {}\n{SECRET_PREFIX}{}\n",
            public_path.file_name().unwrap_or_default().to_string_lossy(),
            self.public(),
            hex::encode(self.0.to_bytes())
        );
        write_private(path, secret.as_bytes())?;
        std::fs::write(&public_path, format!("{}\n", self.public())).map_err(io(&public_path))?;
        Ok(public_path)
    }
}

/// `KEY` → `KEY.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), MarketError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn decode_32(digits: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(digits.trim()).ok()?;
    bytes.try_into().ok()
}

/// Decodes a 64-byte signature from hex.
pub(crate) fn decode_signature(digits: &str) -> Option<[u8; 64]> {
    let bytes = hex::decode(digits.trim()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_text_and_files() {
        let key = SecretKey::from_seed([1; 32]);
        let public = key.public();
        let text = public.to_string();
        assert!(text.starts_with("ed25519:") && text.len() == 8 + 64, "{text}");
        assert_eq!(text.parse::<PublicKey>().unwrap(), public);
        assert_eq!(text["ed25519:".len()..].parse::<PublicKey>().unwrap(), public, "prefix optional");
        assert!("ed25519:abcd".parse::<PublicKey>().unwrap_err().contains("64 hex digits"));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alice");
        let pub_path = key.write_new(&path).unwrap();
        assert_eq!(pub_path, dir.path().join("alice.pub"));
        assert_eq!(SecretKey::read(&path).unwrap().public(), public);
        assert_eq!(PublicKey::from_arg(pub_path.to_str().unwrap()).unwrap(), public);
        let again = key.write_new(&path).unwrap_err().to_string();
        assert!(again.contains("alice.pub") && again.contains("overwrite"), "{again}");
        let err = SecretKey::read(&pub_path).unwrap_err().to_string();
        assert!(err.contains("public key") && err.contains("secret"), "{err}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn write_new_creates_missing_folders_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/publisher/alice");
        SecretKey::from_seed([3; 32]).write_new(&path).unwrap();
        assert!(path.is_file() && dir.path().join("keys/publisher/alice.pub").is_file());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for folder in ["keys", "keys/publisher"] {
                let mode = std::fs::metadata(dir.path().join(folder)).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o700, "{folder}");
            }
        }
    }

    #[test]
    fn signatures_verify_only_with_the_signing_key_and_the_same_message() {
        let (a, b) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let sig = a.sign(b"manifest");
        assert!(a.public().verifies(b"manifest", &sig));
        assert!(!a.public().verifies(b"manifest!", &sig));
        assert!(!b.public().verifies(b"manifest", &sig));
        assert_ne!(SecretKey::generate().unwrap().public(), SecretKey::generate().unwrap().public());
    }
}
