//! `cargo run --release -p strata-layer --example apply -- LAYER DIR [workers] [delete]`:
//! applies a layer tarball onto DIR and prints the time and digests (for bench/layers.sh).

use std::time::Instant;

use strata_layer::{apply_layer, ApplyOptions, WhiteoutMode};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (layer, dir) = (&args[1], &args[2]);
    let mut options = ApplyOptions::default();
    if let Some(workers) = args.get(3).and_then(|w| w.parse().ok()) {
        options.workers = workers;
    }
    if args.get(4).map(String::as_str) == Some("delete") {
        options.whiteouts = WhiteoutMode::Delete;
    }
    std::fs::create_dir_all(dir).expect("create target");
    let file = std::fs::File::open(layer).expect("open layer");
    let start = Instant::now();
    let report = apply_layer(file, std::path::Path::new(dir), &options).expect("apply");
    println!(
        "seconds={:.3} entries={} diff_id={} compression={}",
        start.elapsed().as_secs_f64(),
        report.entries,
        report.diff_id,
        report.compression.name()
    );
}
