//! `strata build`: parse the Dockerfile, run the build through the engine, tag the result.

use std::io::{Read, Write};

use strata_build::{BuildError, BuildOptions};
use strata_dockerfile::vars::BuildContext;
use strata_engine::Engine;

use crate::cli::BuildArgs;
use crate::output::print;

/// `strata build -`: stdin is a tar of the context (plain or compressed), or else the
/// Dockerfile itself with an empty context, as with `docker build -`.
fn stdin_context() -> anyhow::Result<(strata_engine::build::UnpackedContext, Option<String>)> {
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data)?;
    if strata_engine::build::is_tar(&data) {
        return Ok((strata_engine::build::unpack_context(&data, &std::env::temp_dir())?, None));
    }
    let empty = strata_engine::build::unpack_context(&[], &std::env::temp_dir());
    Ok((empty?, Some(strata_oci::bytes::decode(&data).into_owned())))
}

/// `--secret id=ID[,type=file|env][,src=FILE|,env=VAR]`, as buildx reads it: `src`/`source`
/// name a file, `env` a variable; with neither, a variable named like the id, else a file.
fn parse_secret(spec: &str) -> Result<(String, Vec<u8>), String> {
    let (mut id, mut kind, mut src, mut env) = (None, None, None, None);
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').ok_or_else(|| format!("{field:?} is not KEY=VALUE"))?;
        match key.trim().to_lowercase().as_str() {
            "id" => id = Some(value.to_owned()),
            "type" => kind = Some(value.to_lowercase()),
            "src" | "source" => src = Some(value.to_owned()),
            "env" => env = Some(value.to_owned()),
            other => return Err(format!("unexpected key {other:?} (use id, type, src or env)")),
        }
    }
    let id = id.or_else(|| env.clone()).or_else(|| {
        src.as_deref().and_then(|s| std::path::Path::new(s).file_name()).map(|n| n.to_string_lossy().into_owned())
    });
    let id = id.filter(|i| !i.is_empty()).ok_or("an id is required (id=NAME)")?;
    let from_env =
        |name: &str| std::env::var_os(name).map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec());
    let from_file = |path: &str| std::fs::read(path).map_err(|e| format!("reading {path}: {e}"));
    let data = match (kind.as_deref(), &src, &env) {
        (Some("env"), _, _) | (None, None, Some(_)) => {
            let name = env.clone().unwrap_or_else(|| id.clone());
            from_env(&name).ok_or_else(|| format!("environment variable {name} is not set"))?
        }
        (Some("file") | None, Some(path), _) => from_file(path)?,
        (Some("file"), None, _) => from_file(&id)?,
        (None, None, None) => match from_env(&id) {
            Some(data) => data,
            None => from_file(&id)?,
        },
        (Some(other), _, _) => return Err(format!("unsupported secret type {other:?} (file or env)")),
    };
    Ok((id, data))
}

pub fn run(engine: &Engine, mut args: BuildArgs) -> anyhow::Result<u8> {
    // `--progress quiet` is `-q`: no progress, no step output, the image ID on stdout.
    args.quiet |= args.progress == "quiet";
    let mut _stdin_context = None;
    let mut stdin_dockerfile = None;
    if args.context.as_os_str() == "-" {
        if args.file.as_deref() == Some("-") {
            eprintln!("ERROR: invalid argument: can't use stdin for both build context and dockerfile");
            return Ok(1);
        }
        let (dir, dockerfile) = stdin_context()?;
        args.context = dir.dir.clone();
        stdin_dockerfile = dockerfile;
        _stdin_context = Some(dir);
    }
    let context_dir = args.context.clone();
    if !context_dir.is_dir() {
        eprintln!("ERROR: unable to prepare context: path {:?} not found", context_dir.display().to_string());
        return Ok(1);
    }
    let (text, file) = match (args.file.as_deref(), stdin_dockerfile) {
        (_, Some(text)) => (text, "Dockerfile".to_owned()),
        (Some("-"), None) => {
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data)?;
            (strata_oci::bytes::decode(&data).into_owned(), "Dockerfile".to_owned())
        }
        (Some(path), None) => {
            // Inside a context from stdin, `-f` names a file of that context.
            let path = if _stdin_context.is_some() { context_dir.join(path) } else { std::path::PathBuf::from(path) };
            (read_dockerfile(&path)?, path.display().to_string())
        }
        (None, None) => (read_dockerfile(&context_dir.join("Dockerfile"))?, "Dockerfile".to_owned()),
    };
    let shown = std::path::Path::new(&file).file_name().map_or(file.clone(), |n| n.to_string_lossy().into_owned());
    let dockerfile = match strata_dockerfile::parse_dockerfile(&text, &shown) {
        Ok(dockerfile) => dockerfile,
        Err(e) => {
            eprintln!("ERROR: {e}");
            return Ok(1);
        }
    };
    let output = match args.output.as_deref().map(parse_output).transpose() {
        Ok(output) => output.unwrap_or(Output::Image),
        Err(message) => {
            eprintln!("ERROR: --output: {message}");
            return Ok(1);
        }
    };
    let findings = strata_dockerfile::lint::lint(&dockerfile, &shown);
    if args.check {
        let (report, failed) = super::debug::check_report(&findings);
        print(&report)?;
        return Ok(if failed { 1 } else { 0 });
    }
    if !findings.is_empty() && !args.quiet {
        // As BuildKit, a build lists what its checks found and goes on.
        eprintln!(" {} warning(s) found (strata build --check for details):", findings.len());
        for finding in &findings {
            eprintln!(" - {}: {} (line {})", finding.rule, finding.message, finding.location.start);
        }
    }
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
    let mut secrets = std::collections::BTreeMap::new();
    for spec in &args.secrets {
        match parse_secret(spec) {
            Ok((id, data)) => {
                secrets.insert(id, strata_build::Secret(data));
            }
            Err(message) => {
                eprintln!("ERROR: --secret {spec:?}: {message}");
                return Ok(1);
            }
        }
    }
    let unused = strata_dockerfile::vars::unused_build_args(&dockerfile, &context);
    if !unused.is_empty() && !args.quiet {
        eprintln!("[Warning] One or more build-args [{}] were not consumed", unused.join(" "));
    }
    // SOURCE_DATE_EPOCH as a build argument (BuildKit's way) or in the environment (buildx's).
    let epoch_text =
        context.build_args.get("SOURCE_DATE_EPOCH").cloned().or_else(|| std::env::var("SOURCE_DATE_EPOCH").ok());
    let source_date_epoch = match epoch_text.filter(|t| !t.is_empty()) {
        Some(text) => match text.parse::<i64>() {
            Ok(epoch) if epoch >= 0 => Some(epoch),
            _ => {
                eprintln!("ERROR: invalid SOURCE_DATE_EPOCH {text:?}: a number of seconds since 1970 is expected");
                return Ok(1);
            }
        },
        None if args.reproducible => Some(0),
        None => None,
    };
    let progress_mode = match args.progress.as_str() {
        _ if args.quiet => strata_build::ProgressMode::Quiet,
        "quiet" => strata_build::ProgressMode::Quiet,
        "plain" | "rawjson" => strata_build::ProgressMode::Plain,
        "tty" => strata_build::ProgressMode::Tty,
        "auto" if std::io::IsTerminal::is_terminal(&std::io::stderr()) => strata_build::ProgressMode::Tty,
        "auto" => strata_build::ProgressMode::Plain,
        other => {
            eprintln!("ERROR: --progress {other:?}: use auto, plain, tty or quiet");
            return Ok(1);
        }
    };
    let network_none = match args.network.as_deref() {
        None | Some("default" | "host") => false,
        Some("none") => true,
        Some(other) => {
            eprintln!("ERROR: network mode {other:?} not supported by strata build: use default, host or none");
            return Ok(1);
        }
    };
    let options = BuildOptions {
        progress: progress_mode,
        file: shown,
        secrets,
        source_date_epoch,
        context_dir,
        context,
        target: args.target.clone(),
        tags: args.tags.clone(),
        quiet: args.quiet,
        labels: args
            .labels
            .iter()
            .map(|l| l.split_once('=').map_or((l.clone(), String::new()), |(k, v)| (k.to_owned(), v.to_owned())))
            .collect(),
        network_none,
    };
    let worker = engine.build_worker(!args.no_cache, source_date_epoch)?;
    let mut progress: Box<dyn std::io::Write + Send> =
        if args.quiet { Box::new(std::io::sink()) } else { Box::new(std::io::stderr()) };
    let started = std::time::Instant::now();
    let result = strata_build::build(&dockerfile, &options, &worker, &mut progress);
    let wrote_cache = worker.wrote_cache();
    drop(worker);
    if wrote_cache {
        // The cache grew: keep it under its cap (oldest entries go first).
        let cap = engine.build_cache_cap();
        if engine.build_cache_usage().is_ok_and(|usage| usage.size > cap) {
            let pruned = engine.prune_build_cache(false, Some(cap))?;
            let _ = writeln!(progress, "build cache over its cap: {} entries removed", pruned.removed);
        }
    }
    match result {
        Ok(id) if args.verify => {
            // The same build again, every step run anew, its image kept only if it differs.
            let _ = writeln!(progress, "verifying: building again without the cache");
            let again = BuildOptions { tags: Vec::new(), ..options.clone() };
            let worker = engine.build_worker(false, source_date_epoch)?;
            let second = strata_build::build(&dockerfile, &again, &worker, &mut progress);
            drop(worker);
            let second = match second {
                Ok(second) => second,
                Err(BuildError::Step { message, .. }) | Err(BuildError::Invalid(message)) => {
                    eprintln!("ERROR: verify: the second build failed: {message}");
                    return Ok(1);
                }
            };
            match engine.first_difference(&id, &second)? {
                None => {
                    eprintln!("verify: the rebuild gave the same image {id}");
                    export(engine, &output, &id, &args.tags)?;
                    finish(&args, &id, started)
                }
                Some(difference) => {
                    eprintln!("ERROR: verify: the build is not reproducible: {id} then {second}: {difference}");
                    Ok(1)
                }
            }
        }
        Ok(id) => {
            export(engine, &output, &id, &args.tags)?;
            finish(&args, &id, started)
        }
        Err(BuildError::Step { message, .. }) | Err(BuildError::Invalid(message)) => {
            eprintln!("ERROR: {message}");
            Ok(1)
        }
    }
}

/// Where `--output` sends the result.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Output {
    Image,
    Local(std::path::PathBuf),
    /// Tar of the filesystem, OCI or Docker archive; `-` is stdout.
    Tar(String),
    Archive(strata_engine::archive::ArchiveFormat, String),
}

fn parse_output(spec: &str) -> Result<Output, String> {
    if !spec.contains('=') {
        return Ok(if spec == "-" { Output::Tar("-".into()) } else { Output::Local(spec.into()) });
    }
    let (mut kind, mut dest) = (None, None);
    for field in spec.split(',') {
        let (key, value) = field.split_once('=').ok_or_else(|| format!("{field:?} is not KEY=VALUE"))?;
        match key.trim() {
            "type" => kind = Some(value.to_lowercase()),
            "dest" => dest = Some(value.to_owned()),
            // Accepted as BuildKit does; nothing to do here.
            "name" | "push" | "compression" | "oci-mediatypes" => {}
            other => return Err(format!("unknown output attribute {other:?}")),
        }
    }
    let need_dest = |kind: &str| dest.clone().filter(|d| !d.is_empty()).ok_or(format!("type={kind} needs dest=..."));
    match kind.as_deref().unwrap_or("local") {
        "image" | "moby" => Ok(Output::Image),
        "local" => Ok(Output::Local(need_dest("local")?.into())),
        "tar" => Ok(Output::Tar(need_dest("tar")?)),
        "oci" => Ok(Output::Archive(strata_engine::archive::ArchiveFormat::OciArchive, need_dest("oci")?)),
        "docker" => Ok(Output::Archive(strata_engine::archive::ArchiveFormat::DockerArchive, need_dest("docker")?)),
        other => Err(format!("unsupported output type {other:?} (image, local, tar, oci, docker)")),
    }
}

/// Sends a built image where `--output` says; an image nobody tagged is not kept then.
fn export(engine: &Engine, output: &Output, id: &str, tags: &[String]) -> anyhow::Result<()> {
    let to = |dest: &str| -> anyhow::Result<Box<dyn std::io::Write>> {
        Ok(if dest == "-" {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                anyhow::bail!("refusing to write an archive to a terminal: redirect the output or give dest=FILE");
            }
            Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
        } else {
            Box::new(std::io::BufWriter::new(std::fs::File::create(dest)?))
        })
    };
    match output {
        Output::Image => return Ok(()),
        Output::Local(dir) => engine.export_image_to_dir(id, dir)?,
        Output::Tar(dest) => {
            let mut out = to(dest)?;
            engine.export_image_rootfs(id, &mut out)?;
            out.flush()?;
        }
        Output::Archive(format, dest) => {
            let names = if tags.is_empty() { vec![id.to_owned()] } else { tags.to_vec() };
            let mut out = to(dest)?;
            engine.save(&names, *format, &mut out)?;
            out.flush()?;
        }
    }
    let tagged = engine.inspect(id)?.get("RepoTags").and_then(|t| t.as_array()).is_some_and(|t| !t.is_empty());
    if !tagged {
        engine.remove_image(id, false)?;
    }
    Ok(())
}

/// What a successful build prints (and the --iidfile).
fn finish(args: &BuildArgs, id: &str, started: std::time::Instant) -> anyhow::Result<u8> {
    if let Some(path) = &args.iidfile {
        std::fs::write(path, id)?;
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

/// The Dockerfile's bytes as text: bytes that are not UTF-8 are kept (as BuildKit keeps them),
/// escaped as `strata_oci::bytes` says.
fn read_dockerfile(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read(path).map(|data| strata_oci::bytes::decode(&data).into_owned()).map_err(|e| {
        anyhow::anyhow!("failed to read dockerfile: open {}: {}", path.display(), e.to_string().to_lowercase())
    })
}
