use std::io::{self, BufRead, Write};

use strata_engine::Engine;
use strata_oci::time::human_size;

use crate::cli::{BuilderPruneArgs, PruneArgs};
use crate::commands::rmi::describe;
use crate::output::{print, table};

pub fn df(engine: &Engine) -> anyhow::Result<u8> {
    let usage = engine.disk_usage()?;
    let cache = engine.build_cache_usage()?;
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
        row("Build Cache", cache.entries, cache.entries - cache.unshared, cache.size, cache.reclaimable),
    ];
    print(&table(&rows))?;
    Ok(0)
}

/// Asks on stderr; true when the answer is yes.
fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question}");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// `builder prune`: cache mounts and the step cache no image shares (all of it with `-a`),
/// down to `--keep-storage` when given.
pub fn builder_prune(engine: &Engine, args: BuilderPruneArgs) -> anyhow::Result<u8> {
    let keep = match &args.keep_storage {
        None => None,
        Some(text) => match strata_engine::run::parse_bytes(text) {
            Ok(bytes) if bytes >= 0 => Some(bytes as u64),
            _ => {
                eprintln!("invalid argument {text:?} for \"--keep-storage\" flag: expected a size such as 512m or 2g");
                return Ok(125);
            }
        },
    };
    let what = if args.all { "all build cache" } else { "all dangling build cache" };
    if !args.force && !confirm(&format!("WARNING! This will remove {what}. Are you sure you want to continue? [y/N] "))?
    {
        return Ok(0);
    }
    let report = engine.prune_build_cache(args.all, keep)?;
    print(&format!("Deleted build cache objects: {}\nTotal:\t{}\n", report.removed, human_size(report.reclaimed)))?;
    Ok(0)
}

/// `system prune` and `image prune`: asks first unless `--force`, as Docker does.
pub fn prune(engine: &Engine, args: PruneArgs, system: bool) -> anyhow::Result<u8> {
    if !args.force {
        let what = match (system, args.all) {
            (true, true) => {
                "  - all stopped containers\n  - all images without at least one container associated to them\n  - all build cache\n"
            }
            (true, false) => "  - all stopped containers\n  - all dangling images\n  - unused build cache\n",
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
        if !confirm(&warning)? {
            return Ok(0);
        }
    }
    let mut out = String::new();
    if system {
        // Stopped containers first, so the images only they used can go too.
        out.push_str(&super::containers::deleted_containers(&engine.prune_containers()?));
    }
    let report = engine.prune(args.all)?;
    let mut reclaimed = report.reclaimed;
    let cache = if system { Some(engine.prune_build_cache(args.all, None)?) } else { None };
    if !report.events.is_empty() {
        out.push_str("Deleted Images:\n");
        for event in &report.events {
            out.push_str(&describe(event).replacen("Untagged", "untagged", 1).replacen("Deleted", "deleted", 1));
        }
        out.push('\n');
    }
    if let Some(cache) = cache.filter(|c| c.removed > 0) {
        out.push_str(&format!("Deleted build cache objects: {}\n\n", cache.removed));
        reclaimed += cache.reclaimed;
    }
    out.push_str(&format!("Total reclaimed space: {}\n", human_size(reclaimed)));
    print(&out)?;
    Ok(0)
}

/// The API version `strata serve` is to speak (Docker Engine API), and the oldest it accepts.
const API_VERSION: &str = "1.43";
const MIN_API_VERSION: &str = "1.24";

/// `strata version`: Docker's layout, the client and the engine being one binary (daemonless),
/// so both sections describe it; `--format` renders the same object Docker's does.
pub fn version(
    args: &crate::cli::VersionArgs,
    root: &std::path::Path,
    snapshotter: Option<&str>,
) -> anyhow::Result<u8> {
    let version = env!("CARGO_PKG_VERSION");
    let commit = option_env!("STRATA_GIT_COMMIT").unwrap_or("unknown");
    let built = option_env!("STRATA_BUILT").unwrap_or("unknown");
    let arch = strata_oci::spec::host_architecture();
    let os_arch = format!("linux/{arch}");
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    let driver = snapshotter.unwrap_or(if rustix::process::geteuid().is_root() { "overlay" } else { "copy" });
    let object = serde_json::json!({
        "Client": {
            "Platform": {"Name": "strata"}, "Version": version, "ApiVersion": API_VERSION,
            "DefaultAPIVersion": API_VERSION, "GitCommit": commit, "GoVersion": "", "Os": "linux", "Arch": arch,
            "BuildTime": built, "Context": "default",
        },
        "Server": {
            "Platform": {"Name": "strata (daemonless)"},
            "Components": [
                {"Name": "Engine", "Version": version, "Details": {
                    "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": commit, "GoVersion": "",
                    "Os": "linux", "Arch": arch, "KernelVersion": kernel, "BuildTime": built, "Experimental": "false",
                }},
                {"Name": "runtime", "Version": version, "Details": {"GitCommit": commit}},
            ],
            "Version": version, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": commit,
            "GoVersion": "", "Os": "linux", "Arch": arch, "KernelVersion": kernel, "BuildTime": built,
            "StorageDriver": driver, "Root": root.to_string_lossy(),
        },
    });
    if let Some(format) = &args.format {
        let rendered = if format == "json" || format == "{{json .}}" {
            object.to_string()
        } else {
            crate::output::render_template(format, &object)?
        };
        print(&format!("{rendered}\n"))?;
        return Ok(0);
    }
    print(&format!(
        "Client:\n Version:           {version}\n API version:       {API_VERSION}\n Git commit:        {commit}\n \
         Built:             {built}\n OS/Arch:           {os_arch}\n Context:           default\n\n\
         Server: strata (daemonless)\n Engine:\n  Version:          {version}\n  \
         API version:      {API_VERSION} (minimum version {MIN_API_VERSION})\n  Git commit:       {commit}\n  \
         Built:            {built}\n  OS/Arch:          {os_arch}\n  Kernel:           {kernel}\n  \
         Storage driver:   {driver}\n  Root:             {}\n  Experimental:     false\n runtime (built in):\n  \
         Version:          {version}\n",
        root.display()
    ))?;
    Ok(0)
}
