use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::bail;
use strata_engine::container_ops::CommitOptions;
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
    match (split(&args.source), split(&args.destination)) {
        (Some((container, path)), None) => {
            if args.destination == "-" {
                let mut out = io::BufWriter::new(io::stdout().lock());
                engine.copy_from_container(container, path, &mut out)?;
                out.flush()?;
                return Ok(0);
            }
            // Into a local directory: the archive holds the entry under its own name.
            let mut tar = Vec::new();
            engine.copy_from_container(container, path, &mut tar)?;
            let destination = Path::new(&args.destination);
            let (target_dir, rename) = if destination.is_dir() {
                (destination.to_path_buf(), None)
            } else {
                let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                if !parent.is_dir() {
                    bail!("destination directory {} does not exist", parent.display());
                }
                (parent.to_path_buf(), destination.file_name().map(|n| n.to_owned()))
            };
            let staging = target_dir.join(format!(".strata-cp-{}", std::process::id()));
            std::fs::create_dir(&staging)?;
            let result = (|| -> anyhow::Result<()> {
                let options =
                    strata_layer::ApplyOptions { whiteouts: strata_layer::WhiteoutMode::Delete, ..Default::default() };
                strata_layer::apply_layer(&tar[..], &staging, &options)?;
                for entry in std::fs::read_dir(&staging)? {
                    let entry = entry?;
                    let name = rename.clone().unwrap_or_else(|| entry.file_name());
                    let final_path = target_dir.join(name);
                    if final_path.is_dir() && entry.path().is_dir() {
                        // Merge into an existing directory, as docker cp does.
                        copy_merge(&entry.path(), &final_path)?;
                    } else {
                        std::fs::rename(entry.path(), final_path)?;
                    }
                }
                Ok(())
            })();
            let _ = std::fs::remove_dir_all(&staging);
            result?;
            Ok(0)
        }
        (None, Some((container, path))) => {
            if args.source == "-" {
                engine.copy_into_container(container, path, &mut io::stdin())?;
                return Ok(0);
            }
            let source = Path::new(&args.source);
            if !source.exists() {
                bail!("lstat {}: no such file or directory", source.display());
            }
            // A tar of the source under its own name, unpacked into the destination directory.
            let parent = source.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = source.file_name().ok_or_else(|| anyhow::anyhow!("invalid source {}", source.display()))?;
            let mut tar = tar::Builder::new(Vec::new());
            tar.follow_symlinks(false);
            if source.is_dir() {
                tar.append_dir_all(name, source)?;
            } else {
                tar.append_path_with_name(parent.join(name), name)?;
            }
            let data = tar.into_inner()?;
            engine.copy_into_container(container, path, &mut &data[..])?;
            Ok(0)
        }
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

fn copy_merge(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() && target.is_dir() {
            copy_merge(&entry.path(), &target)?;
        } else {
            std::fs::rename(entry.path(), target)?;
        }
    }
    Ok(())
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
