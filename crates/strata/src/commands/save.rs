use std::io::{self, IsTerminal, Write};

use anyhow::bail;
use strata_engine::archive::{save_to_file, ArchiveFormat};
use strata_engine::Engine;

use crate::cli::SaveArgs;

pub fn run(engine: &Engine, args: SaveArgs) -> anyhow::Result<u8> {
    let format: ArchiveFormat = args.format.parse()?;
    match &args.output {
        Some(path) => save_to_file(engine, &args.images, format, args.all_platforms, path)?,
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = io::BufWriter::with_capacity(1 << 20, io::stdout().lock());
            engine.save_platforms(&args.images, format, args.all_platforms, &mut out)?;
            out.flush()?;
        }
    }
    Ok(0)
}
