//! Text that may carry bytes that are not UTF-8. A Dockerfile is bytes to BuildKit (Go strings):
//! a Latin-1 `RUN echo café` runs with the byte 0xE9, a file named with it can be copied. strata
//! keeps such bytes in its `String`s as the private-use characters U+10FD80–U+10FDFF (byte
//! 0x80 + n → U+10FD80 + n, as Python's `surrogateescape`, which Rust's `char` cannot hold),
//! turns them back into bytes where they leave for the kernel (exec arguments, paths, tar
//! names), and into U+FFFD where they become JSON, as Go's encoder does to invalid UTF-8
//! (image configs, history). Text that already holds those private-use characters would be
//! read as escapes: a Dockerfile never does in practice.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const BASE: u32 = 0x10FD00;

fn escape(byte: u8) -> char {
    char::from_u32(BASE + u32::from(byte)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

fn unescape(c: char) -> Option<u8> {
    let code = u32::from(c);
    (BASE + 0x80..=BASE + 0xFF).contains(&code).then(|| (code - BASE) as u8)
}

/// Bytes as text: UTF-8 as it is, every other byte as its escape.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(bytes.len() + 16);
    let mut rest = bytes;
    loop {
        match std::str::from_utf8(rest) {
            Ok(text) => {
                out.push_str(text);
                break;
            }
            Err(error) => {
                let (valid, after) = rest.split_at(error.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = error.error_len().unwrap_or(after.len());
                out.extend(after[..bad].iter().map(|&b| escape(b)));
                rest = &after[bad..];
            }
        }
    }
    Cow::Owned(out)
}

/// Text back to the bytes it was decoded from.
pub fn encode(text: &str) -> Cow<'_, [u8]> {
    if !text.chars().any(|c| unescape(c).is_some()) {
        return Cow::Borrowed(text.as_bytes());
    }
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unescape(c) {
            Some(byte) => out.push(byte),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Cow::Owned(out)
}

/// Text as a path or argument for the kernel.
pub fn to_os(text: &str) -> Cow<'_, OsStr> {
    match encode(text) {
        Cow::Borrowed(bytes) => Cow::Borrowed(OsStr::from_bytes(bytes)),
        Cow::Owned(bytes) => Cow::Owned(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes)),
    }
}

/// A name from the kernel as text, losing nothing.
pub fn from_os(name: &OsStr) -> Cow<'_, str> {
    decode(name.as_bytes())
}

/// Text for JSON: escapes become U+FFFD, as Go's `json.Marshal` writes invalid UTF-8.
pub fn lossy(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| unescape(c).is_some()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if unescape(c).is_some() { char::REPLACEMENT_CHARACTER } else { c }).collect())
}

/// [`lossy`] over every string (keys included) of a JSON value.
pub fn lossy_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(clean) = lossy(s) {
                *s = clean;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(lossy_json),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                lossy_json(&mut item);
                map.insert(lossy(&key).into_owned(), item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let samples: [&[u8]; 5] =
            [b"plain", b"caf\xe9", b"\xff\xfe\x80", b"ok \xc3\xa9 \xc3", "naïve \u{1F600}".as_bytes()];
        for bytes in samples {
            let text = decode(bytes);
            assert_eq!(&*encode(&text), bytes, "{bytes:?}");
        }
        assert!(matches!(decode(b"plain"), Cow::Borrowed(_)));
        assert_eq!(lossy(&decode(b"caf\xe9 \xc3\xa9")), "caf\u{FFFD} é");
        assert_eq!(to_os(&decode(b"a\xe9")).as_bytes(), b"a\xe9");
        let mut json = serde_json::json!({"Env": [decode(b"A=\xe9").into_owned()], decode(b"k\xff").into_owned(): 1});
        lossy_json(&mut json);
        assert_eq!(json, serde_json::json!({"Env": ["A=\u{FFFD}"], "k\u{FFFD}": 1}));
    }
}
