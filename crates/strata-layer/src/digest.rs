//! Both digests of a layer blob from one pass over its bytes: the blob digest of what was
//! written and the diffID of the decompressed tar, decompressing on the write side.

use std::io::{self, Write};

use strata_oci::{Digest, Digester};

use crate::compression::{Compression, MAGIC_LEN};

/// What a layer blob turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    pub compression: Compression,
    pub digest: Digest,
    pub size: u64,
    pub diff_id: Digest,
    pub uncompressed_size: u64,
}

enum Decoder {
    Pending(Vec<u8>),
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<Digester>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Digester>>),
}

/// A `Write` sink that hashes the raw bytes and, when they are compressed, the decompressed
/// bytes too. Tee the blob's bytes into it while they stream to their destination.
pub struct LayerDigester {
    raw: Digester,
    decoder: Decoder,
}

impl Default for LayerDigester {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerDigester {
    pub fn new() -> Self {
        LayerDigester { raw: Digester::new(), decoder: Decoder::Pending(Vec::new()) }
    }

    fn start(&mut self, head: &[u8]) -> io::Result<()> {
        self.decoder = match Compression::detect(head) {
            Compression::None => Decoder::Plain,
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Digester::new()))),
            Compression::Zstd => Decoder::Zstd(Box::new(zstd::stream::write::Decoder::new(Digester::new())?)),
        };
        self.feed(head)
    }

    fn feed(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.decoder {
            Decoder::Pending(_) => unreachable!("feed is called after start"),
            // A plain stream's diffID is its digest: no second hash.
            Decoder::Plain => {}
            Decoder::Gzip(decoder) => decoder.write_all(buf)?,
            Decoder::Zstd(decoder) => decoder.write_all(buf)?,
        }
        Ok(())
    }

    /// Ends the stream; a compressed stream that stops early is an error.
    pub fn finish(mut self) -> io::Result<LayerDigests> {
        if let Decoder::Pending(head) = &mut self.decoder {
            let head = std::mem::take(head);
            self.start(&head)?;
        }
        let (compression, plain) = match self.decoder {
            Decoder::Pending(_) => unreachable!("started above"),
            Decoder::Plain => {
                let size = self.raw.len();
                let digest = self.raw.finish();
                return Ok(LayerDigests {
                    compression: Compression::None,
                    digest: digest.clone(),
                    size,
                    diff_id: digest,
                    uncompressed_size: size,
                });
            }
            Decoder::Gzip(decoder) => (Compression::Gzip, decoder.finish()?),
            Decoder::Zstd(mut decoder) => {
                decoder.flush()?;
                (Compression::Zstd, decoder.into_inner())
            }
        };
        let size = self.raw.len();
        let uncompressed_size = plain.len();
        Ok(LayerDigests { compression, digest: self.raw.finish(), size, diff_id: plain.finish(), uncompressed_size })
    }
}

impl Write for LayerDigester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.raw.update(buf);
        if let Decoder::Pending(head) = &mut self.decoder {
            head.extend_from_slice(buf);
            if head.len() >= MAGIC_LEN {
                let head = std::mem::take(head);
                self.start(&head)?;
            }
            return Ok(buf.len());
        }
        self.feed(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digests_of(data: &[u8]) -> LayerDigests {
        let mut digester = LayerDigester::new();
        for chunk in data.chunks(3) {
            digester.write_all(chunk).expect("write");
        }
        digester.finish().expect("finish")
    }

    #[test]
    fn diff_id_is_the_digest_of_the_decompressed_bytes() {
        let plain = b"some layer bytes, repeated, repeated, repeated".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let zst = zstd::encode_all(&plain[..], 3).expect("zstd");

        let expected = Digest::of(&plain);
        for (data, compression) in [(&plain, Compression::None), (&gz, Compression::Gzip), (&zst, Compression::Zstd)] {
            let d = digests_of(data);
            assert_eq!(d.compression, compression);
            assert_eq!(d.diff_id, expected);
            assert_eq!(d.digest, Digest::of(data));
            assert_eq!(d.uncompressed_size, plain.len() as u64);
        }
    }

    #[test]
    fn truncated_gzip_is_an_error() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[7u8; 10000]).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let mut digester = LayerDigester::new();
        digester.write_all(&gz[..gz.len() / 2]).expect("write");
        assert!(digester.finish().is_err());
    }
}
