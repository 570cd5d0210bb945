//! Which compression a stream uses, from its first bytes.

use std::io::{self, BufRead, Read};

use strata_oci::media_types;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The longest magic we look at.
pub const MAGIC_LEN: usize = 4;

impl Compression {
    /// Detects gzip (`1f 8b`) and zstd (`28 b5 2f fd`); anything else is taken as plain.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => media_types::OCI_LAYER,
            Compression::Gzip => media_types::OCI_LAYER_GZIP,
            Compression::Zstd => media_types::OCI_LAYER_ZSTD,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Detects the compression of `reader` without consuming anything.
pub fn detect_reader<R: BufRead>(reader: &mut R) -> io::Result<Compression> {
    // fill_buf may return fewer than MAGIC_LEN bytes at the very start of a pipe; a short
    // head can only be a (too short) plain stream or a gzip magic, which needs two bytes.
    let head = reader.fill_buf()?;
    Ok(Compression::detect(head))
}

/// Wraps `reader` in the decompressor its first bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let compression = detect_reader(&mut reader)?;
    let decoded: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((compression, decoded))
}
