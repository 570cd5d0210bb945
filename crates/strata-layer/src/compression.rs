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

/// Bytes of input per gzip member in [`gzip_members`].
pub const GZIP_MEMBER: usize = 2 << 20;

/// Gzip of `input` (libdeflate) as independent members of [`GZIP_MEMBER`] input bytes each, `workers` of
/// them compressed at once (a push gzips a layer on every core). The output is the same for the
/// same input, `workers` and `level` aside — a layer compressed again has the same digest — and
/// any gzip reader reads it (members follow each other as RFC 1952 allows: Go's, zlib's
/// `gzip -d`, flate2's `MultiGzDecoder`). Returns the compressed size.
pub fn gzip_members(input: &mut dyn Read, output: &mut dyn io::Write, workers: usize, level: u32) -> io::Result<u64> {
    use std::sync::mpsc;
    type Job = (Vec<u8>, mpsc::SyncSender<io::Result<Vec<u8>>>);
    let workers = workers.max(1);
    // libdeflate: a whole member at once, as fast as zlib's fastest level and a sixth smaller.
    let level = libdeflater::CompressionLvl::new(level as i32)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("gzip level {level}: {e:?}")))?;
    let compress = |chunk: &[u8]| -> io::Result<Vec<u8>> {
        let mut compressor = libdeflater::Compressor::new(level);
        let mut out = vec![0; compressor.gzip_compress_bound(chunk.len())];
        let n = compressor.gzip_compress(chunk, &mut out).map_err(|e| io::Error::other(format!("gzip: {e:?}")))?;
        out.truncate(n);
        Ok(out)
    };
    // Workers take chunks as they come; this thread reads the input and writes the members in
    // order, one more in flight than there are workers (memory stays a few MiB per worker).
    let (jobs, queue) = mpsc::sync_channel::<Job>(workers);
    let queue = std::sync::Mutex::new(queue);
    std::thread::scope(|scope| {
        // Moved in: an early return drops it, which stops the workers before the scope waits.
        let jobs = jobs;
        for _ in 0..workers {
            let queue = &queue;
            scope.spawn(move || loop {
                let job = queue.lock().map_err(|_| ()).and_then(|q| q.recv().map_err(|_| ()));
                let Ok((chunk, done)) = job else { return };
                let _ = done.send(compress(&chunk));
            });
        }
        let mut pending: std::collections::VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>> = Default::default();
        let mut written = 0u64;
        let mut write_next = |pending: &mut std::collections::VecDeque<mpsc::Receiver<io::Result<Vec<u8>>>>| {
            let Some(next) = pending.pop_front() else { return Ok(()) };
            let member = next.recv().map_err(|_| io::Error::other("a gzip worker stopped"))??;
            output.write_all(&member)?;
            written += member.len() as u64;
            Ok::<(), io::Error>(())
        };
        let mut chunks = 0usize;
        loop {
            let mut chunk = Vec::with_capacity(GZIP_MEMBER);
            input.take(GZIP_MEMBER as u64).read_to_end(&mut chunk)?;
            // An empty input is one empty member (a valid gzip stream).
            if chunk.is_empty() && chunks > 0 {
                break;
            }
            let last = chunk.len() < GZIP_MEMBER;
            let (done, result) = mpsc::sync_channel(1);
            jobs.send((chunk, done)).map_err(|_| io::Error::other("the gzip workers stopped"))?;
            pending.push_back(result);
            chunks += 1;
            while pending.len() > workers {
                write_next(&mut pending)?;
            }
            if last {
                break;
            }
        }
        drop(jobs);
        while !pending.is_empty() {
            write_next(&mut pending)?;
        }
        Ok(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_members_read_back_and_do_not_depend_on_the_workers() {
        let data: Vec<u8> = (0..(GZIP_MEMBER * 2 + 12345)).map(|i| (i % 251) as u8 ^ (i / 7919) as u8).collect();
        let mut one = Vec::new();
        gzip_members(&mut &data[..], &mut one, 1, 1).expect("gzip");
        let mut three = Vec::new();
        gzip_members(&mut &data[..], &mut three, 3, 1).expect("gzip");
        assert_eq!(one, three, "the same bytes whatever the workers");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..]).read_to_end(&mut back).expect("gunzip");
        assert_eq!(back, data);
        let mut empty = Vec::new();
        gzip_members(&mut &[][..], &mut empty, 2, 1).expect("gzip");
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&empty[..]).read_to_end(&mut back).expect("gunzip");
        assert!(back.is_empty() && !empty.is_empty());
    }
}
