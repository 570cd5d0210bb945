use strata_engine::Engine;

use crate::cli::TagArgs;

pub fn run(engine: &Engine, args: TagArgs) -> anyhow::Result<u8> {
    engine.tag(&args.source, &args.target)?;
    Ok(0)
}
