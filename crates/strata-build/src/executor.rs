//! Runs a plan: each needed stage from its base, instruction by instruction. Steps that change
//! files (RUN, COPY) go to the [`Worker`] (the engine), which returns the new layer; the rest
//! change the config here. The target stage's config and layers become the image.
//!
//! Not yet: the cache, ADD, `COPY --from`, RUN mounts, parallel stages (levels run in order).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};
use strata_dockerfile::instructions::{CommandLine, Instruction};
use strata_dockerfile::vars::{BuildContext, GlobalScope, StageScope};
use strata_dockerfile::{Dockerfile, Location};
use strata_oci::spec::ContainerConfig;

use crate::config::{self, StageFlags};
use crate::plan::{plan, Base, Plan};

/// One layer as the worker made or found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The compressed (or not) blob's digest, `sha256:...`.
    pub blob: String,
    /// The uncompressed tar's digest (the config's `rootfs.diff_ids`).
    pub diff_id: String,
    pub size: u64,
    /// When the step that made it first ran (kept on cache hits, so an unchanged rebuild
    /// gives the same image).
    pub created: String,
    /// Found in the build cache: nothing ran.
    pub cached: bool,
}

/// A base image: its whole config JSON and its layers, bottom first.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub config: Value,
    pub layers: Vec<Layer>,
}

/// A RUN step: the process to start on top of `layers`.
#[derive(Debug, Clone)]
pub struct RunStep {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    /// The host's network (the default and `--network=host`), else none (`--network=none`).
    pub network_host: bool,
    /// `-q`: the step's output is not shown.
    pub quiet: bool,
    /// `--mount=type=cache|tmpfs|bind|secret` and heredoc scripts.
    pub mounts: Vec<RunMount>,
    /// `--mount=type=secret,env=NAME`: variables set for the process only, never part of the
    /// cache key, the layer or the history.
    pub secret_env: Vec<(String, Secret)>,
}

/// A secret's bytes (`--secret`): never printed (Debug shows no content), never hashed into a
/// cache key, never written to the store.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where a bind mount's files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSource {
    /// A path of the build context.
    Context { context: PathBuf, path: String },
    /// A path of another stage's (or an image's) filesystem.
    Layers { layers: Vec<Layer>, path: String },
}

/// A RUN mount the worker provides for the step only (never part of the layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunMount {
    /// A directory kept between builds, shared by every step that names the same id.
    Cache {
        target: String,
        id: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        target: String,
        size: Option<u64>,
    },
    /// Read-only unless `rw` (then writes are thrown away after the step).
    Bind {
        target: String,
        source: BindSource,
        read_only: bool,
    },
    /// A file on a tmpfs of the build process, bound read-only at `target`.
    Secret {
        target: String,
        id: String,
        data: Secret,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A file made for the step (a heredoc script at `/dev/pipes/NAME`), read-only.
    File {
        target: String,
        data: Vec<u8>,
        mode: u32,
    },
}

impl RunMount {
    pub fn target(&self) -> &str {
        match self {
            RunMount::Cache { target, .. }
            | RunMount::Tmpfs { target, .. }
            | RunMount::Bind { target, .. }
            | RunMount::Secret { target, .. }
            | RunMount::File { target, .. } => target,
        }
    }

    /// What the mount contributes to the step's cache key: everything but a secret's bytes
    /// (as BuildKit, a changed secret does not invalidate the cache) and a bind source's files
    /// (the worker hashes those itself).
    pub fn key_text(&self) -> String {
        match self {
            RunMount::Secret { target, id, mode, uid, gid, .. } => {
                format!("secret {target} id={id} mode={mode:o} uid={uid} gid={gid}")
            }
            RunMount::Bind { target, source, read_only } => {
                let source = match source {
                    BindSource::Context { path, .. } => format!("context:{path}"),
                    BindSource::Layers { layers, path } => {
                        let ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
                        format!("layers:{}:{path}", ids.join(","))
                    }
                };
                format!("bind {target} {source} ro={read_only}")
            }
            other => format!("{other:?}"),
        }
    }
}

/// A COPY step from the build context, or (`from`) from another stage's or image's files.
#[derive(Debug, Clone)]
pub struct CopyStep {
    pub context: PathBuf,
    /// `--from`: the source filesystem's layers instead of the context.
    pub from: Option<Vec<Layer>>,
    /// Paths relative to the context, as written.
    pub sources: Vec<String>,
    /// Heredoc sources: (file name, content), created with mode 0644.
    pub inline: Vec<(String, Vec<u8>)>,
    /// ADD: `http(s)://` sources, downloaded (never unpacked), mode 0600 unless `--chmod`.
    pub remote: Vec<String>,
    /// ADD `--checksum=sha256:...` of the one remote source.
    pub checksum: Option<String>,
    /// Absolute destination inside the image (a trailing `/` means a directory).
    pub dest: String,
    /// `--chown=user[:group]` (names looked up in the destination's /etc/passwd and /etc/group).
    pub chown: Option<String>,
    /// `--chmod=OCTAL`.
    pub chmod: Option<u32>,
    /// ADD: a local tar archive (plain, gzip, zstd) is unpacked at the destination.
    pub extract_archives: bool,
    /// `--exclude=PATTERN` (several): paths below each source left out.
    pub exclude: Vec<String>,
    /// `--parents`: sources keep their path (below a `/./` pivot) under the destination.
    pub parents: bool,
    /// `--link`: the layer is the copied files alone, independent of the layers below, so its
    /// cache survives a change of the base.
    pub link: bool,
    /// WORKDIR: make the destination directory itself (and its parents) where missing, owned
    /// by `chown` (the stage's USER).
    pub make_dest: bool,
}

/// The diffID of a layer that changes nothing (an empty tar): BuildKit leaves such layers out
/// of the image and marks their history entries `empty_layer`.
pub const EMPTY_LAYER_DIFF_ID: &str = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// What the engine does for the builder.
pub trait Worker {
    fn resolve(&self, reference: &str) -> Result<BaseImage, String>;
    /// Runs the step; `Err((exit code, message))` when it fails.
    fn run(&self, layers: &[Layer], step: &RunStep) -> Result<Layer, (i32, String)>;
    fn copy(&self, layers: &[Layer], step: &CopyStep) -> Result<Layer, String>;
    /// Stores the image; returns its ID.
    fn write_image(&self, config: &Value, layers: &[Layer], tags: &[String]) -> Result<String, String>;
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// How errors name the Dockerfile.
    pub file: String,
    pub context_dir: PathBuf,
    pub context: BuildContext,
    pub target: Option<String>,
    pub tags: Vec<String>,
    /// `-q`: RUN output is not shown.
    pub quiet: bool,
    /// `--label KEY=VALUE`: set on the resulting image (no history entry, as Docker).
    pub labels: Vec<(String, String)>,
    /// `--secret id=ID,...`: the bytes by id, for `RUN --mount=type=secret`.
    pub secrets: std::collections::BTreeMap<String, Secret>,
    /// `SOURCE_DATE_EPOCH` (or `--reproducible`): the time of every history entry this build
    /// adds and of the image (the worker clamps file times in new layers).
    pub source_date_epoch: Option<i64>,
    /// `--progress`.
    pub progress: ProgressMode,
    /// `--network=none|host|default`: the network of RUN steps that do not say (`None`: the
    /// default, the host's, as BuildKit without CNI).
    pub network_none: bool,
}

/// `--progress`: `plain` (BuildKit's log: `#N [stage i/n] TEXT` ... `#N DONE 0.1s`), `tty`
/// (one `=> [stage i/n] TEXT  0.1s` line per finished step), or `quiet`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProgressMode {
    #[default]
    Plain,
    Tty,
    Quiet,
}

/// A step in progress.
struct Step {
    number: usize,
    label: String,
    text: String,
    started: std::time::Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Cached,
    Error,
}

/// Writes progress in the chosen form.
struct Reporter<'a> {
    mode: ProgressMode,
    out: &'a mut (dyn Write + Send),
}

impl<'a> Reporter<'a> {
    fn new(mode: ProgressMode, out: &'a mut (dyn Write + Send)) -> Self {
        Reporter { mode, out }
    }

    fn start(&mut self, number: usize, label: &str, text: &str) {
        if self.mode == ProgressMode::Plain {
            let _ = writeln!(self.out, "#{number} [{label}] {text}");
        }
    }

    fn end(&mut self, step: &Step, outcome: Outcome) {
        let seconds = step.started.elapsed().as_secs_f64();
        let _ = match (self.mode, outcome) {
            (ProgressMode::Quiet, _) => Ok(()),
            (ProgressMode::Plain, Outcome::Done) => writeln!(self.out, "#{} DONE {seconds:.1}s", step.number),
            (ProgressMode::Plain, Outcome::Cached) => writeln!(self.out, "#{} CACHED", step.number),
            (ProgressMode::Plain, Outcome::Error) => writeln!(self.out, "#{} ERROR {seconds:.1}s", step.number),
            (ProgressMode::Tty, outcome) => {
                let mark = match outcome {
                    Outcome::Cached => "CACHED ",
                    Outcome::Error => "ERROR ",
                    Outcome::Done => "",
                };
                let line = format!(" => {mark}[{}] {}", step.label, step.text.replace('\n', " "));
                let line: String = if line.chars().count() > 70 {
                    line.chars().take(69).chain(std::iter::once('…')).collect()
                } else {
                    line
                };
                if outcome == Outcome::Cached {
                    writeln!(self.out, "{line:<72}")
                } else {
                    writeln!(self.out, "{line:<72} {seconds:>5.1}s")
                }
            }
        };
    }
}

/// Records a step's layer: its time, its outcome in the progress, and the layer itself unless
/// it changed nothing (BuildKit leaves empty layers out). Returns whether it was empty.
fn take_layer(layer: Layer, layers: &mut Vec<Layer>, last_created: &mut String, finish: &dyn Fn(Outcome)) -> bool {
    last_created.clone_from(&layer.created);
    finish(if layer.cached { Outcome::Cached } else { Outcome::Done });
    let empty = layer.diff_id == EMPTY_LAYER_DIFF_ID;
    if !empty {
        layers.push(layer);
    }
    empty
}

/// The instructions that are steps of their own in the progress (they may make a layer).
fn makes_layer(instruction: &Instruction) -> bool {
    matches!(instruction, Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::Workdir(_))
}

/// A history entry as BuildKit writes it; `empty` when the step made no layer.
fn history_entry(created: &str, created_by: &str, empty: bool) -> Value {
    let mut entry = json!({"created": created, "created_by": created_by, "comment": "buildkit.dockerfile.v0"});
    if empty {
        entry["empty_layer"] = json!(true);
    }
    entry
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Bad Dockerfile or arguments, with the file and line.
    #[error("{0}")]
    Invalid(String),
    /// A RUN step failed (its exit code).
    #[error("{message}")]
    Step { code: i32, message: String },
}

struct StageResult {
    config: Value,
    layers: Vec<Layer>,
}

/// Builds the target of `dockerfile`; returns the image ID. Progress goes to `progress` in
/// `options.progress`'s form. Stages that do not depend on each other (one level of the plan)
/// build at the same time, one thread each.
pub fn build(
    dockerfile: &Dockerfile,
    options: &BuildOptions,
    worker: &(dyn Worker + Sync),
    progress: &mut (dyn Write + Send),
) -> Result<String, BuildError> {
    let file = options.file.as_str();
    let plan = plan(dockerfile, file, &options.context, options.target.as_deref())
        .map_err(|e| BuildError::Invalid(e.to_string()))?;
    let global = GlobalScope::new(dockerfile, &options.context).map_err(|e| BuildError::Invalid(e.to_string()))?;
    let ctx = StageContext {
        dockerfile,
        options,
        worker,
        plan: &plan,
        global: &global,
        reporter: Mutex::new(Reporter::new(options.progress, progress)),
        counter: AtomicUsize::new(0),
    };
    let mut results: Vec<Option<StageResult>> = (0..dockerfile.stages.len()).map(|_| None).collect();
    for level in &plan.levels {
        let built: Vec<(usize, Result<StageResult, BuildError>)> = if level.len() == 1 {
            level.iter().map(|&index| (index, build_stage(&ctx, index, &results))).collect()
        } else {
            let done = &results;
            let ctx = &ctx;
            std::thread::scope(|scope| {
                let handles: Vec<_> =
                    level.iter().map(|&index| scope.spawn(move || (index, build_stage(ctx, index, done)))).collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| (usize::MAX, Err(BuildError::Invalid("a stage panicked".into()))))
                    })
                    .collect()
            })
        };
        for (index, result) in built {
            let result = result?;
            results[index] = Some(result);
        }
    }
    let mut target =
        results[plan.target].take().ok_or_else(|| BuildError::Invalid("the target was not built".into()))?;
    if !options.labels.is_empty() {
        let config = &mut target.config["config"];
        if !config.is_object() {
            *config = json!({});
        }
        if !config["Labels"].is_object() {
            config["Labels"] = json!({});
        }
        for (key, value) in &options.labels {
            config["Labels"][key] = json!(value);
        }
    }
    worker.write_image(&target.config, &target.layers, &options.tags).map_err(BuildError::Invalid)
}

/// What every stage of one build shares.
struct StageContext<'a> {
    dockerfile: &'a Dockerfile,
    options: &'a BuildOptions,
    worker: &'a (dyn Worker + Sync),
    plan: &'a Plan,
    global: &'a GlobalScope,
    reporter: Mutex<Reporter<'a>>,
    /// Step numbers (`#N`) across stages.
    counter: AtomicUsize,
}

impl StageContext<'_> {
    /// Starts a step: its number, announced.
    fn begin(&self, label: &str, text: &str) -> Step {
        let number = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut reporter) = self.reporter.lock() {
            reporter.start(number, label, text);
        }
        Step { number, label: label.to_owned(), text: text.to_owned(), started: std::time::Instant::now() }
    }

    fn end(&self, step: &Step, outcome: Outcome) {
        if let Ok(mut reporter) = self.reporter.lock() {
            reporter.end(step, outcome);
        }
    }
}

/// One stage from its base to its config and layers.
fn build_stage(
    ctx: &StageContext<'_>,
    index: usize,
    results: &[Option<StageResult>],
) -> Result<StageResult, BuildError> {
    let (dockerfile, options, worker, plan, global) = (ctx.dockerfile, ctx.options, ctx.worker, ctx.plan, ctx.global);
    let file = options.file.as_str();
    let at = |location: Location, message: String| BuildError::Invalid(format!("{file}:{}: {message}", location.start));
    let stage = &dockerfile.stages[index];
    let planned = &plan.stages[index];
    let vertices = 1 + stage.commands.iter().filter(|c| makes_layer(&c.instruction)).count();
    let mut position = 1;
    let label = |position: usize, total: usize| format!("{} {position}/{total}", planned.display_name());
    let from_step = ctx.begin(&label(1, vertices), stage.original.trim());
    let base = (|| -> Result<(Value, Vec<Layer>), BuildError> {
        Ok(match &planned.base {
            Base::Scratch => (scratch_config(), Vec::new()),
            Base::Stage(other) => {
                let result = results[*other].as_ref().ok_or_else(|| {
                    at(stage.location, format!("stage {} is not built yet", plan.stages[*other].display_name()))
                })?;
                (result.config.clone(), result.layers.clone())
            }
            Base::Image(reference) => {
                let base = worker.resolve(reference).map_err(|e| at(stage.location, e))?;
                // Without emulation, only an image of the asked platform can be used.
                if let Some(wanted) = planned.platform.as_deref().filter(|p| !p.is_empty()) {
                    let have = format!(
                        "{}/{}",
                        base.config["os"].as_str().unwrap_or("linux"),
                        base.config["architecture"].as_str().unwrap_or("")
                    );
                    let wanted = wanted.trim_end_matches('/');
                    if !wanted.eq_ignore_ascii_case(&have) && !wanted.starts_with(&format!("{have}/")) {
                        return Err(at(
                            stage.location,
                            format!("image {reference} is for {have}, not {wanted}: strata builds for this machine's platform only (no emulation)"),
                        ));
                    }
                }
                (base.config, base.layers)
            }
        })
    })();
    ctx.end(&from_step, if base.is_ok() { Outcome::Done } else { Outcome::Error });
    let (mut image, mut layers) = base?;
    let mut container: ContainerConfig =
        serde_json::from_value(image.get("config").cloned().unwrap_or(Value::Null)).unwrap_or_default();
    let mut history: Vec<Value> = image.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
    let inherited_history = history.len();
    // Metadata-only entries take the time of the layer before them (the base's creation
    // at first), so a rebuild that changes nothing produces the same config and image ID.
    let mut last_created = image
        .get("created")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| strata_oci::time::Timestamp::now().to_rfc3339());
    let mut flags = StageFlags::default();
    // BuildKit gives a stage a PATH when its base has none.
    let env = container.env.get_or_insert_with(Vec::new);
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    let image_env = container.env.clone().unwrap_or_default();
    let mut scope = StageScope::new(global, &options.context, &image_env);
    // The base's ONBUILD triggers run first, as if written right after FROM; the new
    // image does not inherit them.
    let triggers = container.on_build.take().unwrap_or_default();
    let mut commands = Vec::with_capacity(triggers.len() + stage.commands.len());
    for trigger in &triggers {
        commands.push(onbuild_command(trigger, stage.location).map_err(|e| at(stage.location, e))?);
    }
    commands.extend(stage.commands.iter().cloned());

    let vertices = vertices + commands[..triggers.len()].iter().filter(|c| makes_layer(&c.instruction)).count();
    for command in &commands {
        let vertex = makes_layer(&command.instruction).then(|| {
            position += 1;
            ctx.begin(&label(position, vertices), command.original.trim())
        });
        let finish = |outcome: Outcome| {
            if let Some(vertex) = &vertex {
                ctx.end(vertex, outcome);
            }
        };
        let instruction = scope.apply(command, &options.context).map_err(|e| at(command.location, e.to_string()))?;
        match &instruction {
            Instruction::Run(run) => {
                let workdir = container.working_dir.clone().unwrap_or_default();
                let mut mounts = Vec::new();
                let mut secret_env = Vec::new();
                for mount in &run.mounts {
                    use strata_dockerfile::instructions::MountType;
                    let target = absolute_dest(&workdir, &mount.target).trim_end_matches('/').to_owned();
                    match mount.kind {
                        MountType::Cache => mounts.push(RunMount::Cache {
                            id: mount.id.clone().unwrap_or_else(|| target.clone()),
                            target,
                            mode: mount.mode.unwrap_or(0o755),
                            uid: mount.uid.unwrap_or(0),
                            gid: mount.gid.unwrap_or(0),
                        }),
                        MountType::Tmpfs => mounts.push(RunMount::Tmpfs { target, size: mount.size }),
                        MountType::Bind => {
                            let path = mount.source.clone().unwrap_or_else(|| "/".to_owned());
                            let source = match &mount.from {
                                None => BindSource::Context { context: options.context_dir.clone(), path },
                                Some(value) => BindSource::Layers {
                                    layers: from_layers(dockerfile, results, worker, value)
                                        .map_err(|e| at(command.location, e))?,
                                    path,
                                },
                            };
                            mounts.push(RunMount::Bind { target, source, read_only: mount.read_only });
                        }
                        MountType::Secret => {
                            let id = mount.id.clone().unwrap_or_default();
                            match options.secrets.get(&id) {
                                None if mount.required => {
                                    return Err(at(
                                        command.location,
                                        format!("secret {id}: not found (pass it with --secret id={id},src=FILE)"),
                                    ))
                                }
                                // Not required: the step runs without it, as BuildKit does.
                                None => {}
                                Some(data) => {
                                    if let Some(name) = &mount.env {
                                        secret_env.push((name.clone(), data.clone()));
                                    }
                                    if !mount.target.is_empty() {
                                        mounts.push(RunMount::Secret {
                                            target,
                                            id,
                                            data: data.clone(),
                                            mode: mount.mode.unwrap_or(0o400),
                                            uid: mount.uid.unwrap_or(0),
                                            gid: mount.gid.unwrap_or(0),
                                        });
                                    }
                                }
                            }
                        }
                        MountType::Ssh => {
                            if mount.required {
                                return Err(at(
                                    command.location,
                                    "RUN --mount=type=ssh: no SSH agent is forwarded (strata build has no --ssh yet)"
                                        .to_owned(),
                                ));
                            }
                        }
                    }
                }
                let command_line = heredoc_command(run, &mut mounts);
                let args = config::run_args(&container, &command_line);
                let step = RunStep {
                    args: args.clone(),
                    env: scope.run_env(),
                    cwd: container.working_dir.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "/".to_owned()),
                    user: container.user.clone().unwrap_or_default(),
                    // The default is the host's network, as buildkitd's "auto" mode without CNI;
                    // `--network=none` (on the step, or `build --network=none` for steps that do
                    // not say) isolates the step.
                    network_host: match run.network {
                        Some(strata_dockerfile::instructions::NetworkMode::None) => false,
                        None => !options.network_none,
                        Some(_) => true,
                    },
                    quiet: options.quiet,
                    mounts,
                    secret_env,
                };
                let layer = worker.run(&layers, &step).map_err(|(code, message)| {
                    finish(Outcome::Error);
                    BuildError::Step {
                        code,
                        message: format!(
                            "{file}:{}: process \"{}\" did not complete successfully: exit code: {code}{}",
                            command.location.start,
                            args.join(" "),
                            if message.is_empty() { String::new() } else { format!(": {message}") }
                        ),
                    }
                })?;
                let empty = take_layer(layer, &mut layers, &mut last_created, &finish);
                let build_args: Vec<(String, String)> = scope
                    .arg_values()
                    .iter()
                    .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                    .filter(|(k, _)| stage_declares_arg(stage, k))
                    .collect();
                history.push(history_entry(&last_created, &config::run_history(&args, &build_args), empty));
            }
            Instruction::Copy(_) | Instruction::Add(_) => {
                // ADD is COPY plus local archives unpacked at the destination.
                let mut remote_sources: Vec<String> = Vec::new();
                let (keyword, copy, extract) = match &instruction {
                    Instruction::Copy(copy) => ("COPY", copy.clone(), false),
                    Instruction::Add(add) => {
                        let is_url = |s: &String| s.starts_with("http://") || s.starts_with("https://");
                        let is_git = |s: &String| {
                            s.starts_with("git@") || s.starts_with("git://") || (is_url(s) && s.contains(".git"))
                        };
                        if add.sources.iter().any(is_git) {
                            return Err(at(command.location, "ADD of a git source is not supported yet".to_owned()));
                        }
                        let remote: Vec<String> = add.sources.iter().filter(|s| is_url(s)).cloned().collect();
                        if let Some(checksum) = &add.checksum {
                            if remote.len() != 1 || add.sources.len() != 1 {
                                return Err(at(
                                    command.location,
                                    "checksum can't be specified for multiple sources or non-HTTP sources".to_owned(),
                                ));
                            }
                            if !checksum.starts_with("sha256:") || checksum.len() != 71 {
                                return Err(at(
                                    command.location,
                                    format!("invalid checksum {checksum:?}: use sha256:<64 hex digits>"),
                                ));
                            }
                        }
                        remote_sources = remote;
                        let copy = strata_dockerfile::instructions::Copy {
                            sources: add.sources.iter().filter(|s| !is_url(s)).cloned().collect(),
                            inline: add.inline.clone(),
                            dest: add.dest.clone(),
                            from: None,
                            chown: add.chown.clone(),
                            chmod: add.chmod.clone(),
                            link: add.link,
                            exclude: add.exclude.clone(),
                            parents: false,
                        };
                        ("ADD", copy, add.unpack != Some(false))
                    }
                    _ => unreachable!("matched above"),
                };
                let chmod = match &copy.chmod {
                    None => None,
                    Some(text) => {
                        Some(u32::from_str_radix(text, 8).ok().filter(|m| *m <= 0o7777).ok_or_else(|| {
                            at(
                                command.location,
                                format!("invalid chmod parameter: {text:?}: use an octal mode such as 755"),
                            )
                        })?)
                    }
                };
                let from = match &copy.from {
                    None => None,
                    Some(value) => {
                        Some(from_layers(dockerfile, results, worker, value).map_err(|e| at(command.location, e))?)
                    }
                };
                let workdir = container.working_dir.clone().unwrap_or_default();
                let dest = absolute_dest(&workdir, &copy.dest);
                let step = CopyStep {
                    context: options.context_dir.clone(),
                    from,
                    sources: copy.sources.clone(),
                    inline: copy.inline.iter().map(|i| (i.name.clone(), i.data.clone().into_bytes())).collect(),
                    remote: remote_sources.clone(),
                    checksum: match &instruction {
                        Instruction::Add(add) => add.checksum.clone(),
                        _ => None,
                    },
                    dest,
                    chown: copy.chown.clone(),
                    chmod,
                    extract_archives: extract,
                    exclude: copy.exclude.clone(),
                    parents: copy.parents,
                    link: copy.link,
                    make_dest: false,
                };
                let layer = worker.copy(&layers, &step).map_err(|e| {
                    finish(Outcome::Error);
                    at(command.location, e)
                })?;
                let empty = take_layer(layer, &mut layers, &mut last_created, &finish);
                // BuildKit's text: `--chown`/`--chmod` (not `--from`) before the sources.
                let mut flags_text = String::new();
                if copy.parents {
                    flags_text.push_str("--parents ");
                }
                for (flag, value) in [("chown", &copy.chown), ("chmod", &copy.chmod)] {
                    if let Some(value) = value {
                        flags_text.push_str(&format!("--{flag}={value} "));
                    }
                }
                let mut sources_text: Vec<String> = match &instruction {
                    Instruction::Add(add) => add.sources.clone(),
                    _ => copy.sources.clone(),
                };
                sources_text.extend(copy.inline.iter().map(|i| format!("<<{}", i.name)));
                let created_by = format!("{keyword} {flags_text}{} {} # buildkit", sources_text.join(" "), copy.dest);
                history.push(history_entry(&last_created, &created_by, empty));
            }
            Instruction::Arg(definitions) => {
                let values: Vec<(String, Option<String>)> = definitions
                    .iter()
                    .map(|d| {
                        let value = scope
                            .run_env()
                            .iter()
                            .find_map(|kv| kv.strip_prefix(&format!("{}=", d.name)).map(str::to_owned));
                        (d.name.clone(), value)
                    })
                    .collect();
                history.push(json!({"created": last_created, "created_by": config::arg_history(&values), "comment": "buildkit.dockerfile.v0", "empty_layer": true}));
            }
            Instruction::Workdir(_) => {
                // As BuildKit: the directory is made (owned by the USER), a layer when that
                // changed anything.
                let text = config::apply(&mut container, &mut flags, &instruction)
                    .map_err(|e| at(command.location, e))?
                    .unwrap_or_default();
                let workdir = container.working_dir.clone().unwrap_or_else(|| "/".to_owned());
                let mut empty = true;
                if workdir != "/" {
                    let step = CopyStep {
                        context: options.context_dir.clone(),
                        from: None,
                        sources: Vec::new(),
                        inline: Vec::new(),
                        remote: Vec::new(),
                        checksum: None,
                        dest: format!("{}/", workdir.trim_end_matches('/')),
                        chown: container.user.clone().filter(|u| !u.is_empty()),
                        chmod: None,
                        extract_archives: false,
                        exclude: Vec::new(),
                        parents: false,
                        link: false,
                        make_dest: true,
                    };
                    let layer = worker.copy(&layers, &step).map_err(|e| {
                        finish(Outcome::Error);
                        at(command.location, e)
                    })?;
                    finish(if layer.cached { Outcome::Cached } else { Outcome::Done });
                    empty = layer.diff_id == EMPTY_LAYER_DIFF_ID;
                    if !empty {
                        last_created = layer.created.clone();
                        layers.push(layer);
                    }
                } else {
                    finish(Outcome::Done);
                }
                history.push(history_entry(&last_created, &text, empty));
            }
            other => {
                if let Instruction::Maintainer(name) = other {
                    // The image's `author`, not a setting of the container config.
                    image["author"] = json!(name);
                }
                if let Some(text) =
                    config::apply(&mut container, &mut flags, other).map_err(|e| at(command.location, e))?
                {
                    history.push(json!({"created": last_created, "created_by": text, "comment": "buildkit.dockerfile.v0", "empty_layer": true}));
                }
            }
        }
    }
    if let Some(epoch) = options.source_date_epoch {
        let epoch = strata_oci::time::Timestamp::from_unix(epoch).to_rfc3339();
        for entry in &mut history[inherited_history..] {
            entry["created"] = json!(epoch);
        }
        last_created = epoch;
    }
    let object = image.as_object_mut().expect("image config is an object");
    object.insert("config".to_owned(), serde_json::to_value(&container).unwrap_or(Value::Null));
    object.insert(
        "rootfs".to_owned(),
        json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()}),
    );
    object.insert("history".to_owned(), Value::Array(history));
    object.insert("created".to_owned(), json!(last_created));
    Ok(StageResult { config: image, layers })
}

/// One ONBUILD trigger of a base image as a command of the stage that uses it.
fn onbuild_command(trigger: &str, location: Location) -> Result<strata_dockerfile::instructions::Command, String> {
    let keyword = trigger.split_whitespace().next().unwrap_or_default().to_uppercase();
    if matches!(keyword.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(format!("{keyword} isn't allowed as an ONBUILD trigger"));
    }
    let text = format!("FROM scratch\n{trigger}\n");
    let parsed = strata_dockerfile::parse_dockerfile(&text, "ONBUILD")
        .map_err(|e| format!("the base image's ONBUILD trigger {trigger:?} is invalid: {e}"))?;
    let mut command = parsed
        .stages
        .into_iter()
        .next()
        .and_then(|stage| stage.commands.into_iter().next())
        .ok_or_else(|| format!("the base image's ONBUILD trigger {trigger:?} is empty"))?;
    command.location = location;
    Ok(command)
}

/// The layers `--from=VALUE` names: a stage built before, or else an image.
fn from_layers(
    dockerfile: &Dockerfile,
    results: &[Option<StageResult>],
    worker: &dyn Worker,
    value: &str,
) -> Result<Vec<Layer>, String> {
    match stage_index(dockerfile, value) {
        Some(other) => {
            results[other].as_ref().map(|r| r.layers.clone()).ok_or_else(|| format!("stage {value} is not built yet"))
        }
        None => worker.resolve(value).map(|base| base.layers),
    }
}

/// A RUN with heredocs, as BuildKit runs it: a lone `<<EOF` whose body starts with `#!` is a
/// script file mounted at `/dev/pipes/EOF` and run; a lone `<<EOF` otherwise is the shell's
/// command text; anything else (`cat <<EOF > f`) goes to the shell with the bodies appended.
fn heredoc_command(run: &strata_dockerfile::instructions::Run, mounts: &mut Vec<RunMount>) -> CommandLine {
    let (CommandLine::Shell(line), Some(first)) = (&run.command, run.heredocs.first()) else {
        return run.command.clone();
    };
    let lone = strata_dockerfile::parser::parse_heredoc(line.trim()).ok().flatten();
    match lone {
        Some(_) if run.heredocs.len() == 1 => {
            let data = first.effective_content();
            if data.starts_with("#!") {
                let target = format!("/dev/pipes/{}", first.name);
                mounts.push(RunMount::File { target: target.clone(), data: data.into_bytes(), mode: 0o755 });
                CommandLine::Shell(target)
            } else {
                CommandLine::Shell(data)
            }
        }
        _ => {
            let mut full = line.clone();
            for heredoc in &run.heredocs {
                full.push('\n');
                full.push_str(&heredoc.content);
                full.push_str(&heredoc.name);
            }
            CommandLine::Shell(full)
        }
    }
}

/// `--from=VALUE` names a stage (by name or index) or else an image.
fn stage_index(dockerfile: &Dockerfile, value: &str) -> Option<usize> {
    dockerfile
        .stages
        .iter()
        .position(|s| s.name.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(value)))
        .or_else(|| value.parse::<usize>().ok().filter(|i| *i < dockerfile.stages.len()))
}

fn stage_declares_arg(stage: &strata_dockerfile::Stage, name: &str) -> bool {
    stage
        .commands
        .iter()
        .any(|c| matches!(&c.instruction, Instruction::Arg(defs) if defs.iter().any(|d| d.name == name)))
}

/// BuildKit's PATH for stages whose base sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config of `FROM scratch`.
fn scratch_config() -> Value {
    json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {"Env": [format!("PATH={DEFAULT_PATH}")], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// COPY's destination against the working directory; a trailing `/` (or `.`) keeps meaning
/// "a directory".
fn absolute_dest(workdir: &str, dest: &str) -> String {
    let directory = dest.ends_with('/') || dest == "." || dest.ends_with("/.");
    let joined = if dest.starts_with('/') { dest.to_owned() } else { format!("/{workdir}/{dest}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if directory && out != "/" {
        out.push('/');
    }
    out
}

/// The shell-form text of a command line, for messages.
pub fn command_text(command: &CommandLine) -> String {
    match command {
        CommandLine::Shell(line) => line.clone(),
        CommandLine::Exec(args) => args.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as TestMutex;

    /// A worker that records the steps it is asked for.
    #[derive(Default)]
    struct Recorder {
        steps: TestMutex<Vec<String>>,
    }

    impl Worker for Recorder {
        fn resolve(&self, reference: &str) -> Result<BaseImage, String> {
            if reference != "busybox" {
                return Err(format!("pull access denied for {reference}, repository does not exist"));
            }
            Ok(BaseImage {
                config: json!({"os": "linux", "created": "t0", "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]}, "history": [{"created_by": "base"}]}),
                layers: vec![Layer {
                    blob: "sha256:b".into(),
                    diff_id: "sha256:d".into(),
                    size: 1,
                    created: "t0".into(),
                    cached: false,
                }],
            })
        }
        fn run(&self, layers: &[Layer], step: &RunStep) -> Result<Layer, (i32, String)> {
            self.steps.lock().expect("lock").push(format!(
                "run {} on {} as {:?} in {}",
                step.args.join(" "),
                layers.len(),
                step.user,
                step.cwd
            ));
            if step.args.last().is_some_and(|a| a == "false") {
                return Err((1, String::new()));
            }
            Ok(Layer {
                blob: format!("sha256:run{}", layers.len()),
                diff_id: format!("sha256:rd{}", layers.len()),
                size: 2,
                created: format!("t{}", layers.len()),
                cached: false,
            })
        }
        fn copy(&self, layers: &[Layer], step: &CopyStep) -> Result<Layer, String> {
            if step.make_dest {
                // WORKDIR: a directory under /new is made (a layer), any other exists already.
                self.steps.lock().expect("lock").push(format!("mkdir {} as {:?}", step.dest, step.chown));
                let made = step.dest.starts_with("/new");
                return Ok(Layer {
                    blob: "sha256:m".into(),
                    diff_id: if made { "sha256:md".into() } else { EMPTY_LAYER_DIFF_ID.into() },
                    size: 1,
                    created: "tm".into(),
                    cached: false,
                });
            }
            self.steps.lock().expect("lock").push(format!(
                "copy {:?} to {} on {}",
                step.sources,
                step.dest,
                layers.len()
            ));
            Ok(Layer {
                blob: "sha256:c".into(),
                diff_id: "sha256:cd".into(),
                size: 3,
                created: "tc".into(),
                cached: false,
            })
        }
        fn write_image(&self, config: &Value, layers: &[Layer], tags: &[String]) -> Result<String, String> {
            self.steps.lock().expect("lock").push(format!("image {} layers {tags:?}", layers.len()));
            self.steps.lock().expect("lock").push(config.to_string());
            Ok("sha256:image".into())
        }
    }

    fn build_text(text: &str, target: Option<&str>) -> (Result<String, BuildError>, Vec<String>) {
        let dockerfile = strata_dockerfile::parse_dockerfile(text, "Dockerfile").expect("parses");
        let worker = Recorder::default();
        let options = BuildOptions {
            file: "Dockerfile".into(),
            target: target.map(str::to_owned),
            tags: vec!["app".into()],
            ..BuildOptions::default()
        };
        let result = build(&dockerfile, &options, &worker, &mut Vec::new());
        let steps = worker.steps.lock().expect("lock").clone();
        (result, steps)
    }

    #[test]
    fn steps_config_and_history() {
        let (result, steps) = build_text(
            "FROM busybox AS base\nARG V=1\nENV X=$V\nWORKDIR /app\nUSER nobody\nRUN echo $X > f\nCOPY a b/ ./\nCMD [\"./run\"]\n",
            None,
        );
        assert_eq!(result, Ok("sha256:image".to_owned()));
        assert_eq!(steps[0], "mkdir /app/ as None", "WORKDIR makes its directory");
        assert_eq!(steps[1], "run /bin/sh -c echo $X > f on 1 as \"nobody\" in /app");
        assert_eq!(steps[2], "copy [\"a\", \"b/\"] to /app/ on 2");
        assert_eq!(steps[3], "image 3 layers [\"app\"]");
        let config: Value = serde_json::from_str(&steps[4]).expect("json");
        assert_eq!(config["config"]["Env"], json!(["PATH=/bin", "X=1"]));
        assert_eq!(config["config"]["Cmd"], json!(["./run"]));
        assert_eq!(config["config"]["WorkingDir"], "/app");
        assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:d", "sha256:rd1", "sha256:cd"]));
        let history: Vec<&str> = config["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["created_by"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            history,
            [
                "base",
                "ARG V=1",
                "ENV X=1",
                "WORKDIR /app",
                "USER nobody",
                "RUN |1 V=1 /bin/sh -c echo $X > f # buildkit",
                "COPY a b/ ./ # buildkit",
                "CMD [\"./run\"]",
            ]
        );
        let created: Vec<&str> = config["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|h| h["created"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            created[1..],
            ["t0", "t0", "t0", "t0", "t1", "tc", "tc"],
            "metadata entries take the last layer's time"
        );
        assert_eq!(config["created"], "tc");
        let empty: Vec<bool> =
            config["history"].as_array().expect("history").iter().map(|h| h["empty_layer"] == true).collect();
        assert_eq!(empty, [false, true, true, true, true, false, false, true]);
    }

    #[test]
    fn workdir_layers_and_empty_steps() {
        let (result, steps) = build_text("FROM busybox\nUSER nobody\nWORKDIR /new/dir\nWORKDIR /etc\n", None);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(&steps[..2], ["mkdir /new/dir/ as Some(\"nobody\")", "mkdir /etc/ as Some(\"nobody\")"]);
        let config: Value = serde_json::from_str(steps.last().expect("config")).expect("json");
        assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:d", "sha256:md"]), "an empty mkdir adds no layer");
        let history = config["history"].as_array().expect("history");
        assert_eq!(history[2]["created_by"], "WORKDIR /new/dir");
        assert!(history[2].get("empty_layer").is_none());
        assert_eq!(history[3]["empty_layer"], true);
        assert_eq!(config["config"]["Env"], json!(["PATH=/bin"]));
        let (_, steps) = build_text("FROM scratch\nCMD [\"x\"]\n", None);
        let config: Value = serde_json::from_str(steps.last().expect("config")).expect("json");
        assert_eq!(config["config"]["WorkingDir"], "/", "BuildKit's empty image");
        assert_eq!(config["config"]["Env"], json!([format!("PATH={DEFAULT_PATH}")]));
    }

    #[test]
    fn onbuild_triggers_run_first_in_the_stage_that_uses_the_base() {
        let (result, steps) = build_text(
            "FROM busybox AS base\nONBUILD RUN trig\nONBUILD ENV T=1\nRUN own\nFROM base\nRUN after\n",
            None,
        );
        assert!(result.is_ok(), "{result:?}");
        let runs: Vec<&str> = steps.iter().filter(|s| s.starts_with("run")).map(String::as_str).collect();
        assert_eq!(
            runs,
            [
                "run /bin/sh -c own on 1 as \"\" in /",
                "run /bin/sh -c trig on 2 as \"\" in /",
                "run /bin/sh -c after on 3 as \"\" in /"
            ]
        );
        let config: Value = serde_json::from_str(steps.last().expect("config")).expect("json");
        assert_eq!(config["config"]["Env"], json!(["PATH=/bin", "T=1"]), "triggers apply to the stage");
        assert!(config["config"]["OnBuild"].is_null(), "not inherited: {}", config["config"]);
        assert_eq!(
            onbuild_command("FROM x", Location { start: 3, end: 3 }).map(|c| c.original),
            Err("FROM isn't allowed as an ONBUILD trigger".to_owned()),
            "a trigger from an image's config is checked like one in a Dockerfile"
        );
        assert_eq!(onbuild_command("RUN a", Location { start: 3, end: 3 }).map(|c| c.location.start), Ok(3));
    }

    #[test]
    fn stages_and_failures() {
        let (result, steps) = build_text("FROM busybox AS a\nRUN one\nFROM a\nRUN two\n", None);
        assert!(result.is_ok());
        assert_eq!(&steps[..2], ["run /bin/sh -c one on 1 as \"\" in /", "run /bin/sh -c two on 2 as \"\" in /"]);
        let (result, _) = build_text("FROM busybox\nRUN false\n", None);
        assert_eq!(
            result,
            Err(BuildError::Step {
                code: 1,
                message: "Dockerfile:2: process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
                    .into()
            })
        );
        let (result, _) = build_text("FROM nosuch\n", None);
        assert_eq!(
            result,
            Err(BuildError::Invalid("Dockerfile:1: pull access denied for nosuch, repository does not exist".into()))
        );
        let (result, steps) = build_text("FROM scratch\nCOPY x /x\n", None);
        assert!(result.is_ok());
        assert_eq!(steps[0], "copy [\"x\"] to /x on 0");
        assert_eq!(absolute_dest("/app", "../etc/"), "/etc/");
        assert_eq!(absolute_dest("", "."), "/");
    }
}
