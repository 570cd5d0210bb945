//! Content digests (`sha256:<hex>`), parsed and validated like go-digest.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// Why a string is not a usable digest. Messages match go-digest's errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid checksum digest format")]
    InvalidFormat,
    #[error("invalid checksum digest length")]
    InvalidLength,
    #[error("unsupported digest algorithm")]
    Unsupported,
}

/// A validated sha256 digest. Only sha256 is supported, as in Docker's reference library.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>` with go-digest's error rules.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let Some(colon) = s.find(':').filter(|&i| i > 0 && i + 1 < s.len()) else {
            return Err(DigestError::InvalidFormat);
        };
        let (algorithm, encoded) = (&s[..colon], &s[colon + 1..]);
        if algorithm != "sha256" {
            if !is_go_digest_shape(s) {
                return Err(DigestError::InvalidFormat);
            }
            return Err(DigestError::Unsupported);
        }
        Self::from_hex(encoded)
    }

    /// Validates a bare 64-character lowercase hex string.
    pub fn from_hex(encoded: &str) -> Result<Self, DigestError> {
        if encoded.len() != 64 {
            return Err(DigestError::InvalidLength);
        }
        if !encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::InvalidFormat);
        }
        Ok(Digest { hex: encoded.to_owned() })
    }

    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_bytes(&Sha256::digest(data))
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push(HEX[usize::from(b >> 4)] as char);
            hex.push(HEX[usize::from(b & 15)] as char);
        }
        Digest { hex }
    }

    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as Docker shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

/// go-digest's `DigestRegexp`: `[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+`.
fn is_go_digest_shape(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm
        .split(['.', '+', '_', '-'])
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let encoded_ok =
        !encoded.is_empty() && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
    algorithm_ok && encoded_ok
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(|e| serde::de::Error::custom(format!("{e}: {s:?}")))
    }
}

/// Hashes everything written to it and counts the bytes.
#[derive(Default, Clone)]
pub struct Digester {
    hasher: Sha256,
    len: u64,
}

impl Digester {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.len += data.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn finish(self) -> Digest {
        Digest::from_bytes(&self.hasher.finalize())
    }
}

impl Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_is_the_known_value() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_errors_follow_go_digest() {
        assert_eq!(Digest::parse("sha256:abc"), Err(DigestError::InvalidLength));
        assert_eq!(Digest::parse("nocolon"), Err(DigestError::InvalidFormat));
        assert_eq!(Digest::parse("sha512:abc"), Err(DigestError::Unsupported));
        assert_eq!(Digest::parse("Sha256:abc"), Err(DigestError::InvalidFormat));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert_eq!(Digest::parse(&upper), Err(DigestError::InvalidFormat));
    }
}
