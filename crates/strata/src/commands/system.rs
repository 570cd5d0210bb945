use std::io::{self, BufRead, Write};

use strata_engine::Engine;
use strata_oci::time::human_size;

use crate::cli::PruneArgs;
use crate::commands::rmi::describe;
use crate::output::{print, table};

pub fn df(engine: &Engine) -> anyhow::Result<u8> {
    let usage = engine.disk_usage()?;
    let percent = |part: u64, whole: u64| (part * 100).checked_div(whole).unwrap_or(0);
    let rows = vec![
        ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"].map(String::from).to_vec(),
        vec![
            "Images".into(),
            usage.images.to_string(),
            usage.active_images.to_string(),
            human_size(usage.images_size),
            format!("{} ({}%)", human_size(usage.reclaimable), percent(usage.reclaimable, usage.images_size)),
        ],
        vec![
            "Containers".into(),
            usage.containers.to_string(),
            usage.running_containers.to_string(),
            human_size(usage.containers_size),
            format!(
                "{} ({}%)",
                human_size(usage.containers_reclaimable),
                percent(usage.containers_reclaimable, usage.containers_size)
            ),
        ],
        vec![
            "Local Volumes".into(),
            usage.volumes.to_string(),
            usage.active_volumes.to_string(),
            human_size(usage.volumes_size),
            format!(
                "{} ({}%)",
                human_size(usage.volumes_reclaimable),
                percent(usage.volumes_reclaimable, usage.volumes_size)
            ),
        ],
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
        let removed = engine.prune_containers()?;
        if !removed.is_empty() {
            out.push_str("Deleted Containers:\n");
            for id in &removed {
                out.push_str(id);
                out.push('\n');
            }
            out.push('\n');
        }
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
