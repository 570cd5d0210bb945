use std::io::{self, BufRead, Write};

use strata_engine::Engine;
use strata_oci::time::human_size;

use crate::cli::PruneArgs;
use crate::commands::rmi::describe;
use crate::output::{print, table};

pub fn df(engine: &Engine) -> anyhow::Result<u8> {
    let usage = engine.disk_usage()?;
    // TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE (with its share of SIZE).
    let row = |kind: &str, total: usize, active: usize, size: u64, reclaimable: u64| {
        let percent = (reclaimable * 100).checked_div(size).unwrap_or(0);
        vec![
            kind.to_owned(),
            total.to_string(),
            active.to_string(),
            human_size(size),
            format!("{} ({percent}%)", human_size(reclaimable)),
        ]
    };
    let rows = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"].map(String::from).to_vec(),
        row("Images", usage.images, usage.active_images, usage.images_size, usage.reclaimable),
        row(
            "Containers",
            usage.containers,
            usage.running_containers,
            usage.containers_size,
            usage.containers_reclaimable,
        ),
        row("Local Volumes", usage.volumes, usage.active_volumes, usage.volumes_size, usage.volumes_reclaimable),
        ["Build Cache", "0", "0", "0B", "0B"].map(String::from).to_vec(),
    ];
    print(&table(&rows))?;
    Ok(0)
}

/// `system prune` and `image prune`: asks first unless `--force`, as Docker does.
pub fn prune(engine: &Engine, args: PruneArgs, system: bool) -> anyhow::Result<u8> {
    if !args.force {
        let what = match (system, args.all) {
            (true, true) => {
                "  - all stopped containers\n  - all images without at least one container associated to them\n"
            }
            (true, false) => "  - all stopped containers\n  - all dangling images\n",
            (false, true) => "",
            (false, false) => "",
        };
        let warning = if system {
            format!("WARNING! This will remove:\n{what}\nAre you sure you want to continue? [y/N] ")
        } else if args.all {
            "WARNING! This will remove all images without at least one container associated to them.\nAre you sure you want to continue? [y/N] ".to_owned()
        } else {
            "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] ".to_owned()
        };
        eprint!("{warning}");
        io::stderr().flush()?;
        let mut answer = String::new();
        io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let mut out = String::new();
    if system {
        // Stopped containers first, so the images only they used can go too.
        out.push_str(&super::containers::deleted_containers(&engine.prune_containers()?));
    }
    let report = engine.prune(args.all)?;
    if !report.events.is_empty() {
        out.push_str("Deleted Images:\n");
        for event in &report.events {
            out.push_str(&describe(event).replacen("Untagged", "untagged", 1).replacen("Deleted", "deleted", 1));
        }
        out.push('\n');
    }
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(report.reclaimed)));
    print(&out)?;
    Ok(0)
}
