//! `strata build`: parse the Dockerfile, run the build through the engine, tag the result.

use std::io::Read;

use strata_build::{BuildError, BuildOptions};
use strata_dockerfile::vars::BuildContext;
use strata_engine::Engine;

use crate::cli::BuildArgs;
use crate::output::print;

pub fn run(engine: &Engine, args: BuildArgs) -> anyhow::Result<u8> {
    let context_dir = args.context.clone();
    if !context_dir.is_dir() {
        eprintln!("ERROR: unable to prepare context: path {:?} not found", context_dir.display().to_string());
        return Ok(1);
    }
    let (text, file) = match args.file.as_deref() {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            (text, "Dockerfile".to_owned())
        }
        Some(path) => (read_dockerfile(std::path::Path::new(path))?, path.to_owned()),
        None => (read_dockerfile(&context_dir.join("Dockerfile"))?, "Dockerfile".to_owned()),
    };
    let shown = std::path::Path::new(&file).file_name().map_or(file.clone(), |n| n.to_string_lossy().into_owned());
    let dockerfile = match strata_dockerfile::parse_dockerfile(&text, &shown) {
        Ok(dockerfile) => dockerfile,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return Ok(1);
        }
    };
    let mut context = BuildContext::default();
    for arg in &args.build_args {
        let (key, value) = match arg.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            // `--build-arg KEY` takes the value from the environment, or is ignored.
            None => match std::env::var(arg) {
                Ok(value) => (arg.clone(), value),
                Err(_) => continue,
            },
        };
        context.build_args.insert(key, value);
    }
    let options = BuildOptions {
        file: shown,
        context_dir,
        context,
        target: args.target.clone(),
        tags: args.tags.clone(),
        quiet: args.quiet,
    };
    let worker = engine.build_worker(!args.no_cache)?;
    let mut progress: Box<dyn std::io::Write> =
        if args.quiet { Box::new(std::io::sink()) } else { Box::new(std::io::stderr()) };
    let started = std::time::Instant::now();
    match strata_build::build(&dockerfile, &options, &worker, &mut progress) {
        Ok(id) => {
            if let Some(path) = &args.iidfile {
                std::fs::write(path, &id)?;
            }
            if args.quiet {
                print(&format!("{id}\n"))?;
            } else {
                eprintln!("writing image {id} done");
                for tag in &args.tags {
                    eprintln!("naming to {tag} done");
                }
                eprintln!("built in {:.2}s", started.elapsed().as_secs_f64());
            }
            Ok(0)
        }
        Err(BuildError::Step { message, .. }) | Err(BuildError::Invalid(message)) => {
            eprintln!("ERROR: {message}");
            Ok(1)
        }
    }
}

fn read_dockerfile(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("failed to read dockerfile: open {}: {}", path.display(), e.to_string().to_lowercase())
    })
}
