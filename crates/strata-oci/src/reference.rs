//! Image references, parsed exactly like Docker's `distribution/reference` library.
//!
//! `busybox` → `docker.io/library/busybox:latest`, `localhost:5000/x@sha256:…`, and the same
//! error messages for the same mistakes. The grammar is matched by hand (no regex engine):
//!
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain-and-port "/" ] path-component ( "/" path-component )*
//! ```

use std::fmt;

use crate::digest::{Digest, DigestError};

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_TOTAL_LENGTH_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("repository name must have at least one component")]
    NameEmpty,
    #[error("invalid reference format")]
    InvalidFormat,
    #[error("repository name must be lowercase")]
    NameContainsUppercase,
    #[error("repository name must not be more than 255 characters")]
    NameTooLong,
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    RepositoryUppercase(String),
    #[error("invalid repository name ({0}), cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
}

/// A named reference: repository name with an optional tag and digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// What [`parse_any`] returns: a name, or a bare digest / image ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyReference {
    Named(Reference),
    Digest(Digest),
}

impl Reference {
    /// The domain; empty for references from [`parse`] that had none.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The full repository name (`docker.io/library/busybox`).
    pub fn name(&self) -> String {
        if self.domain.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The short name Docker shows (`busybox`, `user/app`, `localhost:5000/x`).
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            if let Some(rest) = self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
                if !rest.contains('/') {
                    return rest.to_owned();
                }
            }
            return self.path.clone();
        }
        self.name()
    }

    /// The short form of the whole reference (`busybox:latest`).
    pub fn familiar_string(&self) -> String {
        self.with_suffix(self.familiar_name())
    }

    fn with_suffix(&self, mut s: String) -> String {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
        s
    }

    /// Neither tag nor digest.
    pub fn is_name_only(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }

    /// Adds `:latest` when the reference has neither tag nor digest (Docker's `TagNameOnly`).
    pub fn with_default_tag(mut self) -> Self {
        if self.is_name_only() {
            self.tag = Some("latest".to_owned());
        }
        self
    }

    /// The same repository with a digest and no tag.
    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference { domain: self.domain.clone(), path: self.path.clone(), tag: None, digest: Some(digest) }
    }

    /// The same repository with this tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Self {
        Reference { domain: self.domain.clone(), path: self.path.clone(), tag: Some(tag.to_owned()), digest: None }
    }

    /// The name of the kind of reference, as Go's `reference` package types it.
    pub fn go_type(&self) -> &'static str {
        match (&self.tag, &self.digest) {
            (None, None) => "reference.repository",
            (Some(_), None) => "reference.taggedReference",
            (None, Some(_)) => "reference.canonicalReference",
            (Some(_), Some(_)) => "reference.reference",
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.with_suffix(self.name()))
    }
}

impl fmt::Display for AnyReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnyReference::Named(named) => named.fmt(f),
            AnyReference::Digest(digest) => digest.fmt(f),
        }
    }
}

/// `reference.Parse`: the grammar only, no `docker.io` normalization.
pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
    let Some((name, tag, digest)) = match_reference(s) else {
        if s.is_empty() {
            return Err(ReferenceError::NameEmpty);
        }
        if match_reference(&s.to_lowercase()).is_some() {
            return Err(ReferenceError::NameContainsUppercase);
        }
        return Err(ReferenceError::InvalidFormat);
    };
    let (domain, path) = split_name(name);
    if path.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    let digest = digest.map(Digest::parse).transpose()?;
    Ok(Reference { domain: domain.to_owned(), path: path.to_owned(), tag: tag.map(str::to_owned), digest })
}

/// `reference.ParseNormalizedNamed`: what `docker pull NAME` accepts (`busybox` →
/// `docker.io/library/busybox`). Does not add a default tag.
pub fn parse_normalized_named(s: &str) -> Result<Reference, ReferenceError> {
    if is_hex_identifier(s) {
        return Err(ReferenceError::HexIdentifier(s.to_owned()));
    }
    let (domain, remainder) = split_docker_domain(s);
    let remote = remainder.split_once(':').map_or(remainder.as_str(), |(before, _)| before);
    if remote.to_lowercase() != remote {
        return Err(ReferenceError::RepositoryUppercase(remote.to_owned()));
    }
    parse(&format!("{domain}/{remainder}"))
}

/// `reference.ParseDockerRef`: normalized, `:latest` added to bare names, and a reference with
/// both tag and digest keeps only the digest.
pub fn parse_docker_ref(s: &str) -> Result<Reference, ReferenceError> {
    let mut named = parse_normalized_named(s)?;
    if named.digest.is_some() {
        named.tag = None;
        return Ok(named);
    }
    Ok(named.with_default_tag())
}

/// `reference.ParseAnyReference`: a 64-hex image ID, a digest, or a normalized name.
pub fn parse_any(s: &str) -> Result<AnyReference, ReferenceError> {
    if is_hex_identifier(s) {
        let digest = Digest::from_hex(s)?;
        return Ok(AnyReference::Digest(digest));
    }
    if let Ok(digest) = Digest::parse(s) {
        return Ok(AnyReference::Digest(digest));
    }
    parse_normalized_named(s).map(AnyReference::Named)
}

fn is_hex_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn split_docker_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        None => return (DEFAULT_DOMAIN.to_owned(), format!("{OFFICIAL_REPO_PREFIX}{name}")),
        Some((first, rest)) => {
            if first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first {
                (first.to_owned(), rest.to_owned())
            } else {
                (DEFAULT_DOMAIN.to_owned(), name.to_owned())
            }
        }
    };
    if domain == LEGACY_DEFAULT_DOMAIN {
        domain = DEFAULT_DOMAIN.to_owned();
    }
    if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        remainder = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
    }
    (domain, remainder)
}

/// Splits `s` into (name, tag, digest) when it matches the reference grammar.
fn match_reference(s: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => {
            if !is_digest_pattern(digest) {
                return None;
            }
            (rest, Some(digest))
        }
        None => (s, None),
    };
    // A name's own colons only sit in `host:port/`, so a last colon with no slash after it
    // can only start a tag.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => {
            if !is_tag(tag) {
                return None;
            }
            (name, Some(tag))
        }
        _ => (rest, None),
    };
    if !is_name(name) {
        return None;
    }
    Some((name, tag, digest))
}

fn is_name(name: &str) -> bool {
    let (domain, path) = split_name(name);
    (domain.is_empty() || is_domain_and_port(domain)) && path.split('/').all(is_path_component)
}

/// Splits a matching name into (domain, path), preferring a domain when the first component
/// can be one, as the leftmost-first regular expression does.
fn split_name(name: &str) -> (&str, &str) {
    if let Some((first, rest)) = name.split_once('/') {
        if is_domain_and_port(first) && rest.split('/').all(is_path_component) {
            return (first, rest);
        }
    }
    ("", name)
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_path_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while *i < bytes.len() && alnum(bytes[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while i < bytes.len() {
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
        if !run(&mut i) {
            return false;
        }
    }
    true
}

/// `(?:domain-name|\[ipv6\])(?::[0-9]+)?`
fn is_domain_and_port(s: &str) -> bool {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return false;
        };
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (None, port)
    } else {
        match s.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(s), None),
        }
    };
    if let Some(host) = host {
        if !host.split('.').all(is_domain_component) {
            return false;
        }
    }
    port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[\w][\w.-]{0,127}`
pub fn is_tag(s: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..].iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`
fn is_digest_pattern(s: &str) -> bool {
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let bytes = part.as_bytes();
        !bytes.is_empty() && bytes[0].is_ascii_alphabetic() && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && encoded.len() >= 32 && encoded.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_ref_normalizes_familiar_names() {
        let r = parse_docker_ref("busybox").expect("valid");
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar_string(), "busybox:latest");
        let r = parse_docker_ref("localhost:5000/x").expect("valid");
        assert_eq!(r.to_string(), "localhost:5000/x:latest");
        assert_eq!(r.familiar_name(), "localhost:5000/x");
    }

    #[test]
    fn path_components() {
        assert!(is_path_component("a__b"));
        assert!(!is_path_component("a___b"));
        assert!(is_path_component("a---b"));
        assert!(!is_path_component("a..b"));
        assert!(!is_path_component("-a"));
    }
}
