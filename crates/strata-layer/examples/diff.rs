//! `cargo run --release -p strata-layer --example diff -- DIR [gzip|zstd|none] [OUT]`: writes
//! DIR as one layer (to OUT or nowhere) and prints the time and digests (for bench/layers.py).

use std::time::Instant;

use strata_layer::{write_diff, Compression, DiffOptions, DiffSource};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let compression = match args.get(2).map(String::as_str) {
        Some("zstd") => Compression::Zstd,
        Some("none") => Compression::None,
        _ => Compression::Gzip,
    };
    let out: Box<dyn std::io::Write> = match args.get(3) {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path).expect("create output"))),
        None => Box::new(std::io::sink()),
    };
    let options = DiffOptions { compression: Some(compression), ..DiffOptions::default() };
    let start = Instant::now();
    let (report, _) = write_diff(DiffSource::Trees { lower: None, upper: dir }, out, &options).expect("diff");
    println!(
        "seconds={:.3} entries={} size={} uncompressed={} digest={} diff_id={}",
        start.elapsed().as_secs_f64(),
        report.entries,
        report.size,
        report.uncompressed_size,
        report.digest,
        report.diff_id
    );
}
