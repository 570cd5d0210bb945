//! Streaming a tarball (plain, gzip or zstd) into a sink as an uncompressed tar, checking as it
//! passes that it really is a tar archive.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::compression::{decompress, Compression};
use crate::DecompressionLimits;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("empty input: expected a tar archive")]
    Empty,
    #[error("not a valid tar archive: {}", one_line(&.0.to_string()))]
    Invalid(#[source] io::Error),
    #[error("cannot decompress the {compression} stream: {source}")]
    Decompress {
        compression: &'static str,
        #[source]
        source: io::Error,
    },
    /// Bigger than the layer limits allow (a decompression bomb, or just too big).
    #[error("{0}")]
    Limit(String),
    /// The sink failed (it names its own path).
    #[error("{0}")]
    Sink(#[source] io::Error),
}

/// Parser errors (the tar crate's among them) can quote raw input: this keeps such a message
/// to one short printable line.
pub fn one_line(text: &str) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// What streamed through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarSummary {
    pub compression: Compression,
    pub entries: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    /// Sum of the regular files' sizes (what Docker calls a layer's size).
    pub content_size: u64,
}

/// Passes everything read to `sink`, remembering a sink error apart from read errors, and
/// stops at the decompression limits.
struct Tee<R, W> {
    reader: R,
    sink: W,
    sink_error: Option<io::Error>,
    read_error: bool,
    total: u64,
    limit_error: Option<String>,
    /// Compressed bytes read so far, and whether the input is compressed at all.
    raw: std::rc::Rc<std::cell::Cell<u64>>,
    compressed: bool,
    limits: DecompressionLimits,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf).inspect_err(|_| self.read_error = true)?;
        if let Some(why) = self.limits.exceeded(self.total + n as u64, self.raw.get(), self.compressed) {
            self.limit_error = Some(why.clone());
            return Err(io::Error::other(why));
        }
        if let Err(e) = self.sink.write_all(&buf[..n]) {
            let message = e.to_string();
            self.sink_error = Some(e);
            return Err(io::Error::other(message));
        }
        self.total += n as u64;
        Ok(n)
    }
}

/// Counts the bytes read from the (compressed) input.
struct RawCounter<R> {
    inner: R,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for RawCounter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Decompresses `input` as needed and copies the tar into `sink`, validating every header on
/// the way. Returns what passed through; the sink holds the exact uncompressed tar bytes.
/// At most [`DecompressionLimits::configured`] come out.
pub fn copy_validated_tar<R: Read, W: Write>(input: R, sink: W) -> Result<TarSummary, TarError> {
    let raw = std::rc::Rc::new(std::cell::Cell::new(0));
    let counting = RawCounter { inner: input, count: raw.clone() };
    let mut input = BufReader::with_capacity(1 << 20, counting);
    let head = input.fill_buf().map_err(TarError::Invalid)?;
    if head.is_empty() {
        return Err(TarError::Empty);
    }
    let (compression, decoded) = decompress(input).map_err(TarError::Invalid)?;
    let tee = Tee {
        reader: decoded,
        sink,
        sink_error: None,
        read_error: false,
        total: 0,
        limit_error: None,
        raw,
        compressed: compression != Compression::None,
        limits: DecompressionLimits::configured(),
    };
    let mut archive = tar::Archive::new(tee);
    let mut entries = 0;
    let mut content_size = 0;
    let result = (|| -> io::Result<()> {
        for entry in archive.entries()? {
            let entry = entry?;
            if entry.header().entry_type().is_file() {
                content_size += entry.size();
            }
            entries += 1;
        }
        Ok(())
    })();
    let mut tee = archive.into_inner();
    let result = result.and_then(|()| io::copy(&mut tee, &mut io::sink()).map(drop));
    if let Some(e) = tee.sink_error.take() {
        return Err(TarError::Sink(e));
    }
    if let Some(why) = tee.limit_error.take() {
        return Err(TarError::Limit(why));
    }
    if let Err(e) = result {
        return Err(match compression {
            Compression::None => TarError::Invalid(e),
            _ if tee.read_error => TarError::Decompress { compression: compression.name(), source: e },
            _ => TarError::Invalid(e),
        });
    }
    if tee.total == 0 {
        return Err(TarError::Empty);
    }
    Ok(TarSummary { compression, entries, tar_size: tee.total, content_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_tar() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "etc/hello", &b"hello"[..]).expect("append");
        builder.into_inner().expect("finish")
    }

    #[test]
    fn plain_gzip_and_zstd_give_the_same_tar() {
        let tar = sample_tar();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
        for input in [&tar, &gz, &zst] {
            let mut out = Vec::new();
            let summary = copy_validated_tar(&input[..], &mut out).expect("valid");
            assert_eq!(out, tar);
            assert_eq!(summary.entries, 1);
            assert_eq!(summary.content_size, 5);
            assert_eq!(summary.tar_size, tar.len() as u64);
        }
    }

    #[test]
    fn rejects_what_is_not_a_tar() {
        let err = copy_validated_tar(&b"this is plainly not a tar archive, just some text"[..], io::sink());
        assert!(matches!(err, Err(TarError::Invalid(_))), "{err:?}");
        assert!(matches!(copy_validated_tar(&b""[..], io::sink()), Err(TarError::Empty)));
        let tar = sample_tar();
        let truncated = &tar[..600];
        assert!(copy_validated_tar(truncated, io::sink()).is_err());
    }
}
