use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::bail;
use strata_engine::container_ops::CommitOptions;
use strata_engine::copy::{CopyOptions, CopySource, CopyTarget};
use strata_engine::Engine;

use crate::cli::{CommitArgs, CpArgs, ExportArgs, OneContainer, RenameArgs};
use crate::output::{print, table};

pub fn diff(engine: &Engine, args: OneContainer) -> anyhow::Result<u8> {
    let changes = engine.container_changes(&args.container)?;
    print(&changes.iter().map(|c| format!("{} {}\n", c.kind, c.path)).collect::<String>())?;
    Ok(0)
}

pub fn commit(engine: &Engine, args: CommitArgs) -> anyhow::Result<u8> {
    let options = CommitOptions {
        reference: args.reference,
        changes: args.changes,
        message: args.message,
        author: args.author,
        pause: args.pause,
    };
    let id = engine.commit_container(&args.container, &options)?;
    print(&format!("{id}\n"))?;
    Ok(0)
}

pub fn export(engine: &Engine, args: ExportArgs) -> anyhow::Result<u8> {
    match &args.output {
        Some(path) => {
            let mut file = io::BufWriter::new(std::fs::File::create(path)?);
            engine.export_container(&args.container, &mut file)?;
            file.flush()?;
        }
        None => {
            if io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = io::BufWriter::new(io::stdout().lock());
            engine.export_container(&args.container, &mut out)?;
            out.flush()?;
        }
    }
    Ok(0)
}

/// `CONTAINER:PATH` (a container part never holds `/`, so `./a:b` is a local path).
fn split(spec: &str) -> Option<(&str, &str)> {
    let (container, path) = spec.split_once(':')?;
    (!container.is_empty() && !container.contains('/')).then_some((container, path))
}

pub fn cp(engine: &Engine, args: CpArgs) -> anyhow::Result<u8> {
    let options = CopyOptions { archive: args.archive, follow_link: args.follow_link };
    match (split(&args.source), split(&args.destination)) {
        (Some((container, path)), None) => {
            if args.destination == "-" {
                let mut out = io::BufWriter::new(io::stdout().lock());
                engine.copy_from_container(container, path, CopyTarget::Tar(&mut out), options)?;
                out.flush()?;
            } else {
                engine.copy_from_container(container, path, CopyTarget::Host(Path::new(&args.destination)), options)?;
            }
            Ok(0)
        }
        (None, Some((container, path))) => {
            if args.source == "-" {
                engine.copy_into_container(container, path, CopySource::Tar(&mut io::stdin()), options)?;
            } else {
                engine.copy_into_container(container, path, CopySource::Host(Path::new(&args.source)), options)?;
            }
            Ok(0)
        }
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

pub fn rename(engine: &Engine, args: RenameArgs) -> anyhow::Result<u8> {
    engine.rename_container(&args.container, &args.new_name)?;
    Ok(0)
}

pub fn top(engine: &Engine, args: OneContainer) -> anyhow::Result<u8> {
    let rows = engine.container_processes(&args.container)?;
    let mut cells = vec![["UID", "PID", "PPID", "CMD"].map(String::from).to_vec()];
    for (uid, pid, ppid, cmd) in rows {
        let user = if uid == "0" { "root".to_owned() } else { uid };
        cells.push(vec![user, pid.to_string(), ppid.to_string(), cmd]);
    }
    print(&table(&cells))?;
    Ok(0)
}
