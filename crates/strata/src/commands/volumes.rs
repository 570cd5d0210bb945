use strata_engine::Engine;

use crate::cli::{NamesArgs, PruneArgs, VolumeCreateArgs, VolumeLsArgs, VolumeRmArgs};
use crate::output::{print, print_error, table};

pub fn create(engine: &Engine, args: VolumeCreateArgs) -> anyhow::Result<u8> {
    let (volume, _) = engine.create_volume(args.name.as_deref(), false)?;
    print(&format!("{}\n", volume.name))?;
    Ok(0)
}

pub fn ls(engine: &Engine, args: VolumeLsArgs) -> anyhow::Result<u8> {
    let volumes = engine.list_volumes()?;
    if args.quiet {
        return print(&volumes.iter().map(|v| format!("{}\n", v.name)).collect::<String>()).map(|()| 0);
    }
    if args.format.as_deref() == Some("json") {
        let lines: String = volumes
            .iter()
            .map(|v| {
                serde_json::json!({"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": v.scope})
                    .to_string()
                    + "\n"
            })
            .collect();
        return print(&lines).map(|()| 0);
    }
    let mut rows = vec![vec!["DRIVER".to_owned(), "VOLUME NAME".to_owned()]];
    rows.extend(volumes.iter().map(|v| vec![v.driver.clone(), v.name.clone()]));
    print(&table(&rows))?;
    Ok(0)
}

pub fn inspect(engine: &Engine, args: NamesArgs) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut status = 0;
    for name in &args.names {
        match engine.inspect_volume(name) {
            Ok(volume) => found.push(volume),
            Err(e) => {
                print_error(&e.into());
                status = 1;
            }
        }
    }
    print(&format!("{}\n", serde_json::to_string_pretty(&found)?))?;
    Ok(status)
}

pub fn rm(engine: &Engine, args: VolumeRmArgs) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in &args.names {
        match engine.remove_volume(name, args.force) {
            Ok(()) => print(&format!("{name}\n"))?,
            Err(e) => {
                print_error(&e.into());
                status = 1;
            }
        }
    }
    Ok(status)
}

pub fn prune(engine: &Engine, args: PruneArgs) -> anyhow::Result<u8> {
    if !args.force {
        eprint!("WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let removed = engine.prune_volumes(args.all)?;
    let mut out = String::new();
    if !removed.is_empty() {
        out.push_str("Deleted Volumes:\n");
        for name in &removed {
            out.push_str(name);
            out.push('\n');
        }
        out.push('\n');
    }
    out.push_str("Total reclaimed space: 0B\n");
    print(&out)?;
    Ok(0)
}
