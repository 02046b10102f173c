//! [`SampleHash`]: the content address of a sample.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::Message;

/// The sha256 of the concatenated contents of `files` as 64 hex digits, read in 1 MiB
/// chunks (checkpoints are large). Model ids are made from it. On failure, the file
/// that could not be read and why.
pub fn sha256_files<P: AsRef<Path>>(files: &[P]) -> Result<String, (PathBuf, std::io::Error)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let path = path.as_ref();
        let fail = |e| (path.to_path_buf(), e);
        let mut file = std::fs::File::open(path).map_err(fail)?;
        loop {
            let n = match file.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(fail(e)),
            };
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Version tag at the start of every encoding, so that a future change of the
/// encoding can never produce the hash of an older one.
const DOMAIN: &[u8] = b"safety-rules/sample/v1";

/// The SHA-256 of a sample's canonical encoding; shown and serialized as 64
/// lowercase hex digits.
///
/// Scores are stored under this hash, so it must only change when the sample
/// does. The canonical encoding is a sequence of fields where every number is a
/// `u64` in big-endian order and every string is written as its UTF-8 byte length
/// (such a `u64`) followed by its bytes:
///
/// 1. the string `"safety-rules/sample/v1"`;
/// 2. the number of prompt messages;
/// 3. for each prompt message, in order: its role as a string (`"system"`,
///    `"user"` or `"assistant"`), then its content as a string;
/// 4. the response as a string.
///
/// Because every variable-length part carries its length, two different samples
/// never share an encoding: moving text from one message to the next, or from the
/// last message into the response, changes the bytes. Text is hashed exactly as
/// read, without trimming or Unicode normalization.
///
/// Ordering compares the digests byte by byte, which is the same as comparing the
/// hex strings.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SampleHash([u8; 32]);

impl SampleHash {
    /// Hashes a prompt and a response without building a [`Sample`](super::Sample).
    pub fn of(prompt: &[Message], response: &str) -> SampleHash {
        let mut hasher = Sha256::new();
        write_bytes(&mut hasher, DOMAIN);
        write_len(&mut hasher, prompt.len());
        for message in prompt {
            write_bytes(&mut hasher, message.role.as_str().as_bytes());
            write_bytes(&mut hasher, message.content.as_bytes());
        }
        write_bytes(&mut hasher, response.as_bytes());
        SampleHash(hasher.finalize().into())
    }

    /// The raw 32-byte digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits (the same as `to_string()`).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

fn write_len(hasher: &mut Sha256, len: usize) {
    // usize is at most 64 bits on every target Rust supports.
    hasher.update((len as u64).to_be_bytes());
}

fn write_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    write_len(hasher, bytes.len());
    hasher.update(bytes);
}

impl fmt::Display for SampleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SampleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SampleHash({self})")
    }
}

/// A string that is not 64 lowercase hex digits was given as a [`SampleHash`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid sample hash \"{0}\": expected 64 lowercase hex digits")]
pub struct ParseSampleHashError(String);

impl FromStr for SampleHash {
    type Err = ParseSampleHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let well_formed = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let mut digest = [0u8; 32];
        if !well_formed || hex::decode_to_slice(s, &mut digest).is_err() {
            return Err(ParseSampleHashError(s.to_owned()));
        }
        Ok(SampleHash(digest))
    }
}

impl Serialize for SampleHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SampleHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Role, Sample};

    fn sample(prompt: &[(Role, &str)], response: &str) -> Sample {
        Sample {
            prompt: prompt.iter().map(|&(role, text)| Message::new(role, text)).collect(),
            response: response.to_owned(),
        }
    }

    /// Pinned once (and cross-checked with an independent script following the
    /// documented encoding); if this changes, every stored score file is orphaned.
    #[test]
    fn golden_value_is_stable() {
        let s = sample(
            &[(Role::System, "Be kind."), (Role::User, "Hi there"), (Role::Assistant, "Hello!"), (Role::User, "Bye")],
            "Goodbye, take care.",
        );
        assert_eq!(s.hash().to_string(), "25e4e6f293856200b06ccb87bb8ce94ddfb44f2b9b4ce3790fb2ee239c6d43a9");
    }

    #[test]
    fn ambiguous_splits_hash_differently() {
        let u = Role::User;
        let a = Role::Assistant;
        let hashes = [
            sample(&[(u, "ab"), (a, "c")], "d").hash(),
            sample(&[(u, "a"), (a, "bc")], "d").hash(),
            sample(&[(u, "ab"), (a, "")], "cd").hash(),
            sample(&[(u, "ab")], "cd").hash(),
            sample(&[(u, "abc")], "d").hash(),
            sample(&[(a, "ab")], "cd").hash(),
            sample(&[], "abcd").hash(),
        ];
        for (i, x) in hashes.iter().enumerate() {
            for y in &hashes[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn hex_round_trips_through_display_fromstr_and_serde() {
        let h = sample(&[(Role::User, "q")], "r").hash();
        let hex = h.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, h.to_hex());
        assert_eq!(hex.parse::<SampleHash>().unwrap(), h);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<SampleHash>(&json).unwrap(), h);
        assert_eq!(format!("{h:?}"), format!("SampleHash({hex})"));
    }

    #[test]
    fn rejects_malformed_hex() {
        let upper = "AB".repeat(32);
        for bad in ["", "abc", upper.as_str(), &"g".repeat(64), &"a".repeat(66)] {
            let err = bad.parse::<SampleHash>().unwrap_err();
            assert!(err.to_string().contains("expected 64 lowercase hex digits"), "{err}");
        }
        assert!(serde_json::from_str::<SampleHash>("\"00\"").is_err());
    }

    #[test]
    fn order_matches_hex_order() {
        let mut hashes: Vec<SampleHash> =
            (0..20).map(|i| sample(&[(Role::User, "q")], &i.to_string()).hash()).collect();
        let mut hexes: Vec<String> = hashes.iter().map(SampleHash::to_hex).collect();
        hashes.sort();
        hexes.sort();
        assert_eq!(hashes.iter().map(SampleHash::to_hex).collect::<Vec<_>>(), hexes);
    }
}
