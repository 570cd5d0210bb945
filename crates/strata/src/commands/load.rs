use std::fs::File;
use std::io::{self, IsTerminal};

use anyhow::{bail, Context};
use strata_engine::Engine;

use crate::cli::LoadArgs;
use crate::output::print;

pub fn run(engine: &Engine, args: LoadArgs) -> anyhow::Result<u8> {
    let loaded = match &args.input {
        Some(path) => {
            let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
            engine.load(file)?
        }
        None => {
            if io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            engine.load(io::stdin().lock())?
        }
    };
    if args.quiet {
        return Ok(0);
    }
    let mut out = String::new();
    for image in &loaded {
        for (tag, old) in &image.displaced {
            out.push_str(&format!(
                "The image {tag} already exists, renaming the old one with ID {old} to empty string\n"
            ));
        }
        if image.tags.is_empty() {
            out.push_str(&format!("Loaded image ID: {}\n", image.id));
        }
        for tag in &image.tags {
            out.push_str(&format!("Loaded image: {tag}\n"));
        }
    }
    print(&out)?;
    Ok(0)
}
