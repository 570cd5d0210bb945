//! Nodes → typed instructions grouped into stages, with BuildKit's checks and messages
//! (`frontend/dockerfile/instructions/parse.go`). Variables are not expanded here: values
//! are kept as written, and `vars` expands them with the right scope.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{suggest, Error, Location};
use crate::parser::{self, parse_heredoc, Heredoc, Node};

/// A parsed Dockerfile: ARGs before the first FROM, then the stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub meta_args: Vec<Command>,
    pub stages: Vec<Stage>,
    pub escape: char,
    pub syntax: Option<String>,
    pub check: Option<String>,
    pub warnings: Vec<String>,
}

/// One `FROM` and the instructions under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// `AS name`, lowercased.
    pub name: Option<String>,
    /// The base as written (may hold `$ARG`s).
    pub base: String,
    pub platform: Option<String>,
    pub location: Location,
    /// The FROM line as written.
    pub original: String,
    /// The raw `AS` keyword as written, for the casing lint.
    pub as_keyword: Option<String>,
    pub commands: Vec<Command>,
}

/// A typed instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub location: Location,
    /// The logical line as written (continuations joined).
    pub original: String,
    /// The instruction word as written (`run`, `RUN`).
    pub keyword: String,
    pub comments: Vec<String>,
    pub instruction: Instruction,
}

/// Shell form (run through the stage's SHELL) or exec form (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    Shell(String),
    Exec(Vec<String>),
}

impl CommandLine {
    fn from_args(args: &[String], json: bool) -> CommandLine {
        if json {
            CommandLine::Exec(args.to_vec())
        } else {
            CommandLine::Shell(args.join(" "))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Run(Run),
    Cmd(CommandLine),
    /// `None` for `ENTRYPOINT []`.
    Entrypoint(Option<CommandLine>),
    Shell(Vec<String>),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<ArgDefinition>),
    Workdir(String),
    User(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    Copy(Copy),
    Add(Add),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// The trigger as written (`RUN echo hi`), heredoc bodies appended as BuildKit does.
    Onbuild(String),
    Maintainer(String),
}

impl Instruction {
    /// The instruction name in capitals.
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Env(_) => "ENV",
            Instruction::Label(_) => "LABEL",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDefinition {
    pub name: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandLine,
    pub heredocs: Vec<Heredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Default,
    None,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityMode {
    Sandbox,
    Insecure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheSharing {
    Shared,
    Private,
    Locked,
}

/// `RUN --mount=...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub target: String,
    pub source: Option<String>,
    pub from: Option<String>,
    pub read_only: bool,
    pub id: Option<String>,
    pub sharing: CacheSharing,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub required: bool,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// secret: expose as this environment variable.
    pub env: Option<String>,
}

/// A source given inline as a heredoc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineSource {
    pub name: String,
    pub data: String,
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    pub sources: Vec<String>,
    pub inline: Vec<InlineSource>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
    pub parents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Add {
    pub sources: Vec<String>,
    pub inline: Vec<InlineSource>,
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub keep_git_dir: bool,
    pub checksum: Option<String>,
    pub exclude: Vec<String>,
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable the base image's check.
    None,
    Check {
        /// `["CMD", args...]` or `["CMD-SHELL", command]`, as the image config stores it.
        test: Vec<String>,
        interval: Option<Duration>,
        timeout: Option<Duration>,
        start_period: Option<Duration>,
        start_interval: Option<Duration>,
        retries: Option<u32>,
    },
}

/// Every instruction name, for suggestions.
pub const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Parses Dockerfile text all the way to stages of typed instructions.
pub fn parse_dockerfile(text: &str, file: &str) -> Result<Dockerfile, Error> {
    let parsed = parser::parse(text, file)?;
    let mut dockerfile = Dockerfile {
        meta_args: Vec::new(),
        stages: Vec::new(),
        escape: parsed.escape,
        syntax: parsed.syntax,
        check: parsed.check,
        warnings: parsed.warnings,
    };
    for node in &parsed.nodes {
        let error = |message: String| Error::new(file, node.location, message);
        if node.value == "from" {
            dockerfile.stages.push(parse_from(node).map_err(error)?);
            continue;
        }
        let command = parse_command(node).map_err(error)?;
        match dockerfile.stages.last_mut() {
            Some(stage) => stage.commands.push(command),
            None if matches!(command.instruction, Instruction::Arg(_)) => dockerfile.meta_args.push(command),
            None => {
                return Err(error(format!(
                    "no build stage in current context: {} before FROM (only ARG may come before the first FROM)",
                    node.keyword.to_uppercase()
                )))
            }
        }
    }
    Ok(dockerfile)
}

fn parse_from(node: &Node) -> Result<Stage, String> {
    let flags = Flags::parse(node, &[("platform", FlagKind::String)])?;
    let args = &node.args;
    let (name, as_keyword) = match args.len() {
        3 if args[1].eq_ignore_ascii_case("as") => {
            let name = args[2].to_lowercase();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
            if !valid {
                return Err(format!(
                    "invalid name for build stage: {}, name can't start with a number or contain symbols",
                    parser::go_quote(&args[2])
                ));
            }
            (Some(name), Some(args[1].clone()))
        }
        1 => (None, None),
        _ => return Err("FROM requires either one or three arguments".to_owned()),
    };
    Ok(Stage {
        name,
        base: args[0].clone(),
        platform: flags.string("platform"),
        location: node.location,
        original: node.original.trim().to_owned(),
        as_keyword,
        commands: Vec::new(),
    })
}

/// Parses one non-FROM node.
pub fn parse_command(node: &Node) -> Result<Command, String> {
    let instruction = parse_instruction(node)?;
    Ok(Command {
        location: node.location,
        original: node.original.clone(),
        keyword: node.keyword.clone(),
        comments: node.comments.clone(),
        instruction,
    })
}

fn no_flags(node: &Node) -> Result<(), String> {
    Flags::parse(node, &[]).map(drop)
}

fn exactly_one(node: &Node, name: &str) -> Result<String, String> {
    if node.args.len() != 1 {
        return Err(format!("{name} requires exactly one argument"));
    }
    no_flags(node)?;
    Ok(node.args[0].clone())
}

fn parse_instruction(node: &Node) -> Result<Instruction, String> {
    let args = &node.args;
    Ok(match node.value.as_str() {
        "env" | "label" => {
            no_flags(node)?;
            let name = node.value.to_uppercase();
            if args.is_empty() {
                return Err(format!("{name} requires at least one argument"));
            }
            let mut pairs = Vec::new();
            for triple in args.chunks(3) {
                if triple[0].is_empty() {
                    return Err(format!("{name} names can not be blank"));
                }
                pairs.push((triple[0].clone(), triple.get(1).cloned().unwrap_or_default()));
            }
            if node.value == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "maintainer" => Instruction::Maintainer(exactly_one(node, "MAINTAINER")?),
        "workdir" => Instruction::Workdir(exactly_one(node, "WORKDIR")?),
        "user" => Instruction::User(exactly_one(node, "USER")?),
        "stopsignal" => Instruction::StopSignal(exactly_one(node, "STOPSIGNAL")?),
        "add" => {
            if args.len() < 2 {
                return Err(no_destination("ADD"));
            }
            let flags = Flags::parse(
                node,
                &[
                    ("chown", FlagKind::String),
                    ("chmod", FlagKind::String),
                    ("link", FlagKind::Bool),
                    ("keep-git-dir", FlagKind::Bool),
                    ("checksum", FlagKind::String),
                    ("exclude", FlagKind::Strings),
                    ("unpack", FlagKind::Bool),
                ],
            )?;
            let (sources, inline, dest) = sources_and_dest(node, "ADD")?;
            Instruction::Add(Add {
                sources,
                inline,
                dest,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                keep_git_dir: flags.bool("keep-git-dir"),
                checksum: flags.string("checksum"),
                exclude: flags.strings("exclude"),
                unpack: flags.optional_bool("unpack"),
            })
        }
        "copy" => {
            if args.len() < 2 {
                return Err(no_destination("COPY"));
            }
            let flags = Flags::parse(
                node,
                &[
                    ("chown", FlagKind::String),
                    ("chmod", FlagKind::String),
                    ("from", FlagKind::String),
                    ("link", FlagKind::Bool),
                    ("exclude", FlagKind::Strings),
                    ("parents", FlagKind::Bool),
                ],
            )?;
            let (sources, inline, dest) = sources_and_dest(node, "COPY")?;
            Instruction::Copy(Copy {
                sources,
                inline,
                dest,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                exclude: flags.strings("exclude"),
                parents: flags.bool("parents"),
            })
        }
        "onbuild" => {
            no_flags(node)?;
            let Some(trigger) = &node.sub else {
                return Err("ONBUILD requires at least one argument".to_owned());
            };
            match trigger.value.as_str() {
                "onbuild" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned()),
                "from" | "maintainer" => {
                    return Err(format!("{} isn't allowed as an ONBUILD trigger", trigger.value.to_uppercase()))
                }
                _ => {}
            }
            parse_instruction(trigger)?;
            let mut expression = strip_onbuild_keyword(&node.original);
            for heredoc in &node.heredocs {
                expression.push('\n');
                expression.push_str(&heredoc.content);
                expression.push_str(&heredoc.name);
            }
            Instruction::Onbuild(expression)
        }
        "run" => {
            let flags = Flags::parse(
                node,
                &[("mount", FlagKind::Strings), ("network", FlagKind::String), ("security", FlagKind::String)],
            )?;
            let mounts = flags.strings("mount").iter().map(|m| parse_mount(m)).collect::<Result<Vec<_>, _>>()?;
            let network = match flags.string("network").as_deref() {
                None => None,
                Some("default") => Some(NetworkMode::Default),
                Some("none") => Some(NetworkMode::None),
                Some("host") => Some(NetworkMode::Host),
                Some(other) => return Err(format!("unsupported network mode {}", parser::go_quote(other))),
            };
            let security = match flags.string("security").as_deref() {
                None => None,
                Some("sandbox") => Some(SecurityMode::Sandbox),
                Some("insecure") => Some(SecurityMode::Insecure),
                Some(other) => return Err(format!("unsupported security mode {}", parser::go_quote(other))),
            };
            Instruction::Run(Run {
                command: CommandLine::from_args(args, node.json),
                heredocs: node.heredocs.clone(),
                mounts,
                network,
                security,
            })
        }
        "cmd" => {
            no_flags(node)?;
            Instruction::Cmd(CommandLine::from_args(args, node.json))
        }
        "entrypoint" => {
            no_flags(node)?;
            Instruction::Entrypoint((!args.is_empty()).then(|| CommandLine::from_args(args, node.json)))
        }
        "healthcheck" => parse_healthcheck(node)?,
        "expose" => {
            if args.is_empty() {
                return Err("EXPOSE requires at least one argument".to_owned());
            }
            no_flags(node)?;
            let mut ports = args.clone();
            ports.sort();
            Instruction::Expose(ports)
        }
        "volume" => {
            if args.is_empty() {
                return Err("VOLUME requires at least one argument".to_owned());
            }
            no_flags(node)?;
            let mut volumes = Vec::new();
            for volume in args {
                let volume = volume.trim();
                if volume.is_empty() {
                    return Err("VOLUME specified can not be an empty string".to_owned());
                }
                volumes.push(volume.to_owned());
            }
            Instruction::Volume(volumes)
        }
        "arg" => {
            if args.is_empty() {
                return Err("ARG requires at least one argument".to_owned());
            }
            no_flags(node)?;
            let mut definitions = Vec::new();
            for arg in args {
                match arg.split_once('=') {
                    Some(("", _)) => return Err("ARG names can not be blank".to_owned()),
                    Some((name, value)) => {
                        definitions.push(ArgDefinition { name: name.to_owned(), default: Some(value.to_owned()) })
                    }
                    None => definitions.push(ArgDefinition { name: arg.clone(), default: None }),
                }
            }
            Instruction::Arg(definitions)
        }
        "shell" => {
            no_flags(node)?;
            if args.is_empty() {
                return Err("SHELL requires at least one argument".to_owned());
            }
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".to_owned());
            }
            Instruction::Shell(args.clone())
        }
        _ => {
            let mut message = format!("unknown instruction: {}", node.keyword);
            if let Some(close) = suggest(&node.keyword, INSTRUCTIONS, false) {
                message.push_str(&format!(" (did you mean {close}?)"));
            }
            return Err(message);
        }
    })
}

fn strip_onbuild_keyword(original: &str) -> String {
    let trimmed = original.trim_start();
    let rest = match (trimmed.get(..7), trimmed.get(7..)) {
        (Some(keyword), Some(rest)) if keyword.eq_ignore_ascii_case("onbuild") => rest,
        _ => trimmed,
    };
    rest.trim_start().to_owned()
}

fn no_destination(name: &str) -> String {
    format!("{name} requires at least two arguments, but only one was provided. Destination could not be determined")
}

fn sources_and_dest(node: &Node, name: &str) -> Result<(Vec<String>, Vec<InlineSource>, String), String> {
    let (dest, sources) = node.args.split_last().ok_or_else(|| no_destination(name))?;
    if !node.json && parse_heredoc(dest)?.is_some() {
        return Err(format!("{name} cannot accept a heredoc as a destination"));
    }
    let heredocs: BTreeMap<&str, &Heredoc> = node.heredocs.iter().map(|h| (h.name.as_str(), h)).collect();
    let mut paths = Vec::new();
    let mut inline = Vec::new();
    for source in sources {
        let heredoc = if node.json { None } else { parse_heredoc(source)? };
        match heredoc {
            Some(opener) => {
                let body = heredocs.get(opener.name.as_str());
                inline.push(InlineSource {
                    name: opener.name.clone(),
                    data: body.map(|h| h.effective_content()).unwrap_or_default(),
                    expand: opener.expand,
                });
            }
            None => paths.push(source.clone()),
        }
    }
    Ok((paths, inline, dest.clone()))
}

fn parse_healthcheck(node: &Node) -> Result<Instruction, String> {
    let Some(kind) = node.args.first() else {
        return Err("HEALTHCHECK requires at least one argument".to_owned());
    };
    let kind = kind.to_uppercase();
    let rest = &node.args[1..];
    if kind == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".to_owned());
        }
        no_flags(node)?;
        return Ok(Instruction::Healthcheck(Healthcheck::None));
    }
    let flags = Flags::parse(
        node,
        &[
            ("interval", FlagKind::String),
            ("timeout", FlagKind::String),
            ("start-period", FlagKind::String),
            ("start-interval", FlagKind::String),
            ("retries", FlagKind::String),
        ],
    )?;
    if kind != "CMD" {
        return Err(format!("Unknown type {} in HEALTHCHECK (try CMD)", parser::go_quote(&kind)));
    }
    if rest.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".to_owned());
    }
    let test = if node.json {
        std::iter::once("CMD".to_owned()).chain(rest.iter().cloned()).collect()
    } else {
        vec!["CMD-SHELL".to_owned(), rest.join(" ")]
    };
    let interval = |name: &str| -> Result<Option<Duration>, String> {
        let Some(value) = flags.string(name) else { return Ok(None) };
        if value.is_empty() {
            return Ok(None);
        }
        let duration =
            parse_go_duration(&value).ok_or_else(|| format!("time: invalid duration {}", parser::go_quote(&value)))?;
        if duration.is_zero() {
            return Ok(None);
        }
        if duration < Duration::from_millis(1) {
            return Err(format!("Interval {} cannot be less than 1ms", parser::go_quote(name)));
        }
        Ok(Some(duration))
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(value) if value.is_empty() => None,
        Some(value) => {
            let parsed: i64 = value
                .parse()
                .map_err(|_| format!("strconv.ParseInt: parsing {}: invalid syntax", parser::go_quote(&value)))?;
            if parsed < 0 {
                return Err(format!("--retries cannot be negative ({parsed})"));
            }
            Some(u32::try_from(parsed).map_err(|_| format!("--retries is too large ({parsed})"))?)
        }
    };
    Ok(Instruction::Healthcheck(Healthcheck::Check {
        test,
        interval: interval("interval")?,
        timeout: interval("timeout")?,
        start_period: interval("start-period")?,
        start_interval: interval("start-interval")?,
        retries,
    }))
}

/// Go's `time.ParseDuration` for non-negative values: `300ms`, `1.5h`, `2h45m`, `0`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    Some(Duration::from_nanos(total as u64))
}

/// `RUN --mount=type=...,target=...` (comma-separated key=value fields, quotes allowed).
pub fn parse_mount(spec: &str) -> Result<Mount, String> {
    let mut mount = Mount {
        kind: MountType::Bind,
        target: String::new(),
        source: None,
        from: None,
        read_only: true,
        id: None,
        sharing: CacheSharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        required: false,
        size: None,
        env: None,
    };
    let fields = split_csv(spec)?;
    // The type decides defaults, so find it first.
    for field in &fields {
        if let Some(("type", value)) = field.split_once('=').map(|(k, v)| (k.trim(), v)) {
            mount.kind = match value.to_lowercase().as_str() {
                "bind" => MountType::Bind,
                "cache" => MountType::Cache,
                "tmpfs" => MountType::Tmpfs,
                "secret" => MountType::Secret,
                "ssh" => MountType::Ssh,
                other => return Err(format!("unsupported mount type {}", parser::go_quote(other))),
            };
        }
    }
    mount.read_only = matches!(mount.kind, MountType::Bind | MountType::Secret | MountType::Ssh);
    for field in &fields {
        let (key, value) = match field.split_once('=') {
            Some((key, value)) => (key.trim().to_lowercase(), Some(value.to_owned())),
            None => (field.trim().to_lowercase(), None),
        };
        let bool_value = |value: &Option<String>| -> Result<bool, String> {
            match value.as_deref() {
                None => Ok(true),
                Some(v) => match v.to_lowercase().as_str() {
                    "true" | "1" => Ok(true),
                    "false" | "0" => Ok(false),
                    _ => Err(format!("invalid value for {key}: {v}")),
                },
            }
        };
        let required_value =
            |value: Option<String>| value.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match key.as_str() {
            "type" => {}
            "readonly" | "ro" => {
                mount.read_only = bool_value(&value)?;
            }
            "readwrite" | "rw" => {
                mount.read_only = !bool_value(&value)?;
            }
            "required" => mount.required = bool_value(&value)?,
            "target" | "dst" | "destination" => mount.target = required_value(value)?,
            "source" | "src" => mount.source = Some(required_value(value)?),
            "from" => mount.from = Some(required_value(value)?),
            "id" => mount.id = Some(required_value(value)?),
            "env" => mount.env = Some(required_value(value)?),
            "sharing" => {
                mount.sharing = match required_value(value)?.to_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    other => return Err(format!("unsupported sharing value {}", parser::go_quote(other))),
                }
            }
            "mode" => {
                let value = required_value(value)?;
                mount.mode =
                    Some(u32::from_str_radix(&value, 8).map_err(|_| format!("invalid value {value} for mode"))?);
            }
            "uid" | "gid" => {
                let value = required_value(value)?;
                let number: u32 = value.parse().map_err(|_| format!("invalid value {value} for {key}"))?;
                if key == "uid" {
                    mount.uid = Some(number);
                } else {
                    mount.gid = Some(number);
                }
            }
            "size" => {
                let value = required_value(value)?;
                mount.size = Some(parse_size(&value).ok_or_else(|| format!("invalid value {value} for size"))?);
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    match mount.kind {
        MountType::Secret => {
            if mount.id.is_none() {
                let from_target = mount.target.rsplit('/').next().filter(|s| !s.is_empty()).map(str::to_owned);
                mount.id = from_target.or_else(|| mount.source.clone());
            }
            let Some(id) = &mount.id else {
                return Err("secret mount requires an id or a target".to_owned());
            };
            if mount.target.is_empty() && mount.env.is_none() {
                mount.target = format!("/run/secrets/{id}");
            }
        }
        MountType::Ssh => {
            if mount.target.is_empty() {
                mount.target = "/run/buildkit/ssh_agent.0".to_owned();
            }
        }
        _ => {
            if mount.target.is_empty() {
                return Err(format!("mount type {} requires a target", mount_type_name(mount.kind)));
            }
        }
    }
    Ok(mount)
}

fn mount_type_name(kind: MountType) -> &'static str {
    match kind {
        MountType::Bind => "bind",
        MountType::Cache => "cache",
        MountType::Tmpfs => "tmpfs",
        MountType::Secret => "secret",
        MountType::Ssh => "ssh",
    }
}

/// `64m`, `1g`, `512k`, `100` (bytes), binary units as Docker's `RAMInBytes`.
fn parse_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower).to_owned();
    let (number, multiplier) = match lower.chars().last()? {
        'k' => (&lower[..lower.len() - 1], 1u64 << 10),
        'm' => (&lower[..lower.len() - 1], 1 << 20),
        'g' => (&lower[..lower.len() - 1], 1 << 30),
        't' => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower.as_str(), 1),
    };
    let value: f64 = number.parse().ok()?;
    (value >= 0.0).then_some((value * multiplier as f64) as u64)
}

/// Comma-separated fields with double quotes (Go's csv reader, roughly).
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if in_quotes {
        return Err(format!("unterminated quote in {}", parser::go_quote(s)));
    }
    fields.push(field);
    Ok(fields.into_iter().filter(|f| !f.is_empty()).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// BuildKit's `BFlags`: the flags an instruction accepts, checked and typed.
struct Flags {
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    fn parse(node: &Node, specs: &[(&str, FlagKind)]) -> Result<Flags, String> {
        let instruction = node.value.to_uppercase();
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for flag in &node.flags {
            let Some(body) = flag.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {flag}"));
            };
            let (name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let Some((_, kind)) = specs.iter().find(|(spec, _)| *spec == name) else {
                let mut message = format!("unknown flag: --{name} for {instruction}");
                let names: Vec<&str> = specs.iter().map(|(spec, _)| *spec).collect();
                if let Some(close) = suggest(name, &names, true) {
                    message.push_str(&format!(" (did you mean --{close}?)"));
                }
                return Err(message);
            };
            if values.contains_key(name) && *kind != FlagKind::Strings {
                return Err(format!("duplicate flag specified: --{name} for {instruction}"));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_owned(),
                (FlagKind::Bool, Some("")) => return Err(format!("missing a value on flag: --{name}")),
                (FlagKind::Bool, Some(v)) => match v.to_lowercase().as_str() {
                    "true" | "false" => v.to_lowercase(),
                    _ => return Err(format!("expecting boolean value for flag --{name}, not: {v}")),
                },
                (_, None) => return Err(format!("missing a value on flag: --{name}")),
                (_, Some(v)) => v.to_owned(),
            };
            values.entry(name.to_owned()).or_default().push(value);
        }
        Ok(Flags { values })
    }

    fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    fn bool(&self, name: &str) -> bool {
        self.optional_bool(name).unwrap_or(false)
    }

    fn optional_bool(&self, name: &str) -> Option<bool> {
        self.string(name).map(|v| v == "true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_command(text: &str) -> Result<Instruction, Error> {
        let dockerfile = parse_dockerfile(&format!("FROM scratch\n{text}\n"), "Dockerfile")?;
        Ok(dockerfile.stages[0].commands[0].instruction.clone())
    }

    fn error_of(text: &str) -> String {
        parse_dockerfile(text, "Dockerfile").expect_err(text).to_string()
    }

    #[test]
    fn unknown_instructions_and_flags_name_the_line() {
        assert_eq!(
            error_of("FROM a\n\n\n\n\n\nCOPPY x y\n"),
            "Dockerfile:7: unknown instruction: COPPY (did you mean COPY?)"
        );
        assert_eq!(
            error_of("FROM a\n\nCOPY --chwn=1 x y\n"),
            "Dockerfile:3: unknown flag: --chwn for COPY (did you mean --chown?)"
        );
        assert!(error_of("RUN x\n").starts_with("Dockerfile:1: no build stage in current context"));
        assert_eq!(
            error_of("FROM a\nONBUILD ONBUILD RUN x\n"),
            "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"
        );
        assert_eq!(error_of("FROM a\nONBUILD FROM b\n"), "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger");
        assert_eq!(
            error_of("FROM a AS 1x\n"),
            "Dockerfile:1: invalid name for build stage: \"1x\", name can't start with a number or contain symbols"
        );
        assert_eq!(error_of("FROM a\nSHELL sh -c\n"), "Dockerfile:2: SHELL requires the arguments to be in JSON form");
    }

    #[test]
    fn typed_instructions() {
        let Instruction::Copy(copy) =
            first_command("COPY --from=build --chown=1:2 --link --exclude=*.md --exclude=x a b /dst/").expect("copy")
        else {
            panic!("not a copy");
        };
        assert_eq!(copy.sources, vec!["a", "b"]);
        assert_eq!(copy.dest, "/dst/");
        assert_eq!(copy.from.as_deref(), Some("build"));
        assert!(copy.link);
        assert_eq!(copy.exclude, vec!["*.md", "x"]);

        let Instruction::Run(run) = first_command(
            "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok --network=none make",
        )
        .expect("run") else {
            panic!("not a run");
        };
        assert_eq!(run.command, CommandLine::Shell("make".into()));
        assert_eq!(run.mounts[0].kind, MountType::Cache);
        assert_eq!(run.mounts[0].sharing, CacheSharing::Locked);
        assert_eq!(run.mounts[1].target, "/run/secrets/tok");
        assert_eq!(run.network, Some(NetworkMode::None));

        let Instruction::Healthcheck(Healthcheck::Check { test, interval, retries, .. }) =
            first_command("HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/").expect("health")
        else {
            panic!("not a healthcheck");
        };
        assert_eq!(test, vec!["CMD-SHELL", "curl -f http://localhost/"]);
        assert_eq!(interval, Some(Duration::from_secs(90)));
        assert_eq!(retries, Some(3));

        assert_eq!(
            first_command("ARG a b=2").expect("arg"),
            Instruction::Arg(vec![
                ArgDefinition { name: "a".into(), default: None },
                ArgDefinition { name: "b".into(), default: Some("2".into()) }
            ])
        );
        assert_eq!(first_command("ENTRYPOINT []").expect("entrypoint"), Instruction::Entrypoint(None));
        assert_eq!(first_command("onbuild run echo hi").expect("onbuild"), Instruction::Onbuild("run echo hi".into()));
    }

    #[test]
    fn copy_heredoc_sources() {
        let Instruction::Copy(copy) = first_command("COPY <<EOF /etc/motd\nhello $NAME\nEOF").expect("copy") else {
            panic!("not a copy");
        };
        assert!(copy.sources.is_empty());
        assert_eq!(copy.inline, vec![InlineSource { name: "EOF".into(), data: "hello $NAME\n".into(), expand: true }]);
    }
}
