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
                "  - all stopped containers\n  - all networks not used by at least one container\n  - all images without at least one container associated to them\n  - all build cache\n"
            }
            (true, false) => "  - all stopped containers\n  - all networks not used by at least one container\n  - all dangling images\n  - unused build cache\n",
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
        // Then networks no container is on (and idle bridges, the firewall table).
        let networks = engine.prune_networks()?;
        if !networks.is_empty() {
            out.push_str(&format!(
                "Deleted Networks:\n{}\n",
                networks.iter().map(|n| format!("{n}\n")).collect::<String>()
            ));
        }
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

/// `strata info`: Docker's layout over the engine's `Info` object; `--format` renders it.
pub fn info(engine: &Engine, args: &crate::cli::VersionArgs) -> anyhow::Result<u8> {
    let info = engine.info()?;
    if let Some(format) = &args.format {
        let rendered = if format == "json" || format == "{{json .}}" {
            info.to_string()
        } else {
            crate::output::render_template(format, &info)?
        };
        print(&format!("{rendered}\n"))?;
        return Ok(0);
    }
    let text = |key: &str| match &info[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let list = |key: &str| -> Vec<String> {
        info[key]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let mut out = String::from("Client:\n Context:    default\n Debug Mode: false\n\nServer:\n");
    out.push_str(&format!(
        " Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n Server Version: {}\n",
        text("Containers"),
        text("ContainersRunning"),
        text("ContainersPaused"),
        text("ContainersStopped"),
        text("Images"),
        text("ServerVersion")
    ));
    out.push_str(&format!(" Storage Driver: {}\n", text("Driver")));
    for pair in info["DriverStatus"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}: {}\n", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or("")));
    }
    out.push_str(&format!(
        " Logging Driver: {}\n Cgroup Driver: {}\n Cgroup Version: {}\n Default Runtime: {}\n",
        text("LoggingDriver"),
        text("CgroupDriver"),
        text("CgroupVersion"),
        text("DefaultRuntime")
    ));
    if let Some(driver) = info["FirewallBackend"]["Driver"].as_str() {
        out.push_str(&format!(" Firewall Backend: {driver}\n"));
    }
    out.push_str(" Security Options:\n");
    for option in list("SecurityOptions") {
        let name = option.split(',').next().and_then(|n| n.strip_prefix("name=")).unwrap_or(&option).to_owned();
        out.push_str(&format!("  {name}\n"));
        if let Some(profile) = option.split(',').find_map(|p| p.strip_prefix("profile=")) {
            out.push_str(&format!("   Profile: {profile}\n"));
        }
    }
    let memory = info["MemTotal"].as_u64().unwrap_or(0) as f64 / (1u64 << 30) as f64;
    out.push_str(&format!(
        " Kernel Version: {}\n Operating System: {}\n OSType: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {memory:.2}GiB\n Name: {}\n Docker Root Dir: {}\n Debug Mode: false\n",
        text("KernelVersion"),
        text("OperatingSystem"),
        text("OSType"),
        text("Architecture"),
        text("NCPU"),
        text("Name"),
        text("DockerRootDir")
    ));
    out.push_str(" Insecure Registries:\n");
    for registry in list("InsecureRegistries") {
        out.push_str(&format!("  {registry}\n"));
    }
    let mirrors: Vec<String> = info["RegistryConfig"]["Mirrors"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if !mirrors.is_empty() {
        out.push_str(" Registry Mirrors:\n");
        for mirror in mirrors {
            out.push_str(&format!("  {mirror}\n"));
        }
    }
    out.push_str(" Live Restore Enabled: true\n");
    print(&out)?;
    for warning in list("Warnings") {
        eprintln!("{warning}");
    }
    Ok(0)
}

/// `strata events`: the event log, from `--since` (or from now), following it until
/// `--until` passes or the reader goes away.
pub fn events(engine: &Engine, args: crate::cli::EventsArgs) -> anyhow::Result<u8> {
    use strata_engine::events::{parse_time, EventFilter};
    let now = strata_oci::time::Timestamp::now();
    let since = args.since.as_deref().map(|t| parse_time(t, now)).transpose()?;
    let until = args.until.as_deref().map(|t| parse_time(t, now)).transpose()?;
    let filter = EventFilter::parse(&args.filters)?;
    let mut stdout = io::stdout().lock();
    let mut failed = None;
    engine.follow_events(since, until, &filter, &mut |event| {
        let line = match &args.format {
            None => Ok(event.pretty() + "\n"),
            Some(format) if format == "json" || format == "{{json .}}" => {
                serde_json::to_string(event).map(|json| json + "\n").map_err(anyhow::Error::from)
            }
            // Templates see the Go struct's field names, `{{json .}}` its JSON names.
            Some(format) => {
                let fields = serde_json::json!({
                    "Status": event.status, "ID": event.id, "From": event.from, "Type": event.kind,
                    "Action": event.action, "Actor": event.actor, "Scope": event.scope,
                    "Time": event.time, "TimeNano": event.time_nano,
                });
                crate::output::format_objects(format, &[fields], &|name| name.to_owned())
            }
        };
        match line {
            Ok(line) => stdout.write_all(line.as_bytes()).and_then(|()| stdout.flush()).is_ok(),
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
