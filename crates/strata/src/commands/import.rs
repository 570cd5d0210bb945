use std::fs::File;
use std::io;

use anyhow::Context;
use strata_engine::import::ImportOptions;
use strata_engine::Engine;

use crate::cli::ImportArgs;
use crate::output::print;

pub fn run(engine: &Engine, args: ImportArgs) -> anyhow::Result<u8> {
    let options = ImportOptions {
        // The docker CLI streams a local file as the request body, so Docker records
        // "Imported from -" for files and stdin alike.
        source_name: "-".to_owned(),
        reference: args.reference,
        changes: args.changes,
        message: args.message,
    };
    let id = if args.file == "-" {
        engine.import(io::stdin().lock(), &options)?
    } else {
        let file = File::open(&args.file).with_context(|| format!("open {}", args.file))?;
        engine.import(file, &options)?
    };
    print(&format!("{id}\n"))?;
    Ok(0)
}
