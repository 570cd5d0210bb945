//! Which variables each instruction sees, and how it is expanded — BuildKit's rules, so the
//! builder does not re-implement them:
//!
//! - ARGs before the first FROM form the *global scope*, with the automatic platform args
//!   (`BUILDPLATFORM`, `TARGETARCH`, ...). Only FROM (base and `--platform`) sees it directly.
//! - Inside a stage, a global ARG is visible only after `ARG NAME` re-declares it. `--build-arg`
//!   overrides any ARG default; predefined proxy args (`HTTP_PROXY`, ...) need no declaration.
//! - ENV (from the base image and the stage) wins over ARG of the same name.
//! - ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and the COPY/ADD
//!   flags are expanded; EXPOSE also splits words. RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK and
//!   ONBUILD are not (RUN's shell sees the variables in its environment instead).

use std::collections::{BTreeMap, BTreeSet};

use crate::instructions::{ArgDefinition, Command, Copy, Dockerfile, Instruction, Stage};
use crate::shell::{Env, LexError, Lexer};

/// Args any build accepts without an ARG line; they never enter the image history.
pub const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on, in OCI terms.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { os: "linux".to_owned(), architecture: architecture.to_owned(), variant: None }
    }

    /// Parses `linux/amd64`, `linux/arm/v7`, `amd64` (os defaults to linux).
    pub fn parse(spec: &str) -> Result<Platform, String> {
        let parts: Vec<&str> = spec.split('/').collect();
        let lower = |s: &str| s.to_lowercase();
        match parts.as_slice() {
            [arch] if !arch.is_empty() => Ok(Platform { os: "linux".into(), architecture: lower(arch), variant: None }),
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: lower(os), architecture: lower(arch), variant: None })
            }
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform { os: lower(os), architecture: lower(arch), variant: Some(lower(variant)) })
            }
            _ => Err(format!("invalid platform {spec:?}: expected os/arch[/variant]")),
        }
    }

    fn args(&self, prefix: &str) -> Vec<(String, String)> {
        vec![
            (format!("{prefix}PLATFORM"), self.to_string()),
            (format!("{prefix}OS"), self.os.clone()),
            (format!("{prefix}ARCH"), self.architecture.clone()),
            (format!("{prefix}VARIANT"), self.variant.clone().unwrap_or_default()),
        ]
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// What the user passed with `--build-arg`, and the platforms of the build.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub build_args: BTreeMap<String, String>,
    pub build_platform: Platform,
    pub target_platform: Platform,
}

impl Default for BuildContext {
    fn default() -> Self {
        BuildContext {
            build_args: BTreeMap::new(),
            build_platform: Platform::host(),
            target_platform: Platform::host(),
        }
    }
}

impl BuildContext {
    /// The automatic platform args.
    fn automatic_args(&self) -> Vec<(String, String)> {
        let mut args = self.build_platform.args("BUILD");
        args.extend(self.target_platform.args("TARGET"));
        args
    }
}

/// The global scope: ARGs before the first FROM, resolved.
#[derive(Debug, Clone)]
pub struct GlobalScope {
    lexer: Lexer,
    values: Env,
}

impl GlobalScope {
    /// Resolves the meta ARGs in order (each default may use the ones before it).
    pub fn new(dockerfile: &Dockerfile, context: &BuildContext) -> Result<GlobalScope, LexError> {
        let lexer = Lexer::new(dockerfile.escape);
        let mut values: Env = context.automatic_args().into_iter().collect();
        for command in &dockerfile.meta_args {
            let Instruction::Arg(definitions) = &command.instruction else { continue };
            for definition in definitions {
                if let Some(value) = resolve_arg(&lexer, definition, context, &values, None)? {
                    values.insert(definition.name.clone(), value);
                }
            }
        }
        Ok(GlobalScope { lexer, values })
    }

    /// The value of a global ARG.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Variables a word refers to that the global scope does not define.
    pub fn undefined_in(&self, word: &str) -> BTreeSet<String> {
        self.lexer.process(word, &self.values).map(|p| p.unmatched).unwrap_or_default()
    }

    /// A stage's base image reference and `--platform`, expanded with the global args.
    pub fn expand_from(&self, stage: &Stage) -> Result<(String, Option<String>), LexError> {
        let base = self.lexer.process_word(&stage.base, &self.values)?;
        let platform = stage.platform.as_deref().map(|p| self.lexer.process_word(p, &self.values)).transpose()?;
        Ok((base, platform))
    }
}

/// The default (expanded) or the override of one ARG; `None` when it has no value.
fn resolve_arg(
    lexer: &Lexer,
    definition: &ArgDefinition,
    context: &BuildContext,
    env: &Env,
    global: Option<&GlobalScope>,
) -> Result<Option<String>, LexError> {
    if let Some(value) = context.build_args.get(&definition.name) {
        return Ok(Some(value.clone()));
    }
    if let Some(default) = &definition.default {
        return lexer.process_word(default, env).map(Some);
    }
    Ok(global.and_then(|g| g.get(&definition.name)).map(str::to_owned))
}

/// The variables of one stage as its instructions run, in order.
#[derive(Debug, Clone)]
pub struct StageScope<'g> {
    global: &'g GlobalScope,
    lexer: Lexer,
    /// Declared ARGs with a value, in declaration order.
    args: Vec<(String, String)>,
    /// ENV from the base image and the stage, in order (`KEY=value`).
    env: Vec<(String, String)>,
    /// Predefined args the user passed.
    predefined: Vec<(String, String)>,
}

impl<'g> StageScope<'g> {
    /// A stage starting from a base image whose config has `image_env` (`KEY=value`).
    pub fn new(global: &'g GlobalScope, context: &BuildContext, image_env: &[String]) -> StageScope<'g> {
        let env = image_env
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (entry.clone(), String::new()),
            })
            .collect();
        let predefined = PREDEFINED_ARGS
            .iter()
            .filter_map(|name| context.build_args.get(*name).map(|v| ((*name).to_owned(), v.clone())))
            .collect();
        StageScope { global, lexer: global.lexer.clone(), args: Vec::new(), env, predefined }
    }

    /// What expansions see: predefined args, then declared ARGs, then ENV on top.
    pub fn expansion_env(&self) -> Env {
        let mut env: Env = self.predefined.iter().cloned().collect();
        env.extend(self.args.iter().cloned());
        env.extend(self.env.iter().cloned());
        env
    }

    /// The environment of a RUN step: ENV plus ARGs (ENV wins), sorted by name.
    pub fn run_env(&self) -> Vec<String> {
        self.expansion_env().into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// ARG values a RUN step depends on (for its cache key), `NAME=value`, sorted.
    pub fn arg_values(&self) -> Vec<String> {
        let env_names: BTreeSet<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        let mut values: Vec<String> = self
            .args
            .iter()
            .chain(self.predefined.iter())
            .filter(|(k, _)| !env_names.contains(k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        values.sort();
        values
    }

    /// The config's Env after the stage's ENV instructions so far.
    pub fn image_env(&self) -> Vec<String> {
        self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    pub fn expand_word(&self, word: &str) -> Result<String, LexError> {
        self.lexer.process_word(word, &self.expansion_env())
    }

    pub fn expand_words(&self, word: &str) -> Result<Vec<String>, LexError> {
        self.lexer.process_words(word, &self.expansion_env())
    }

    /// Heredoc sources with an unquoted delimiter have their variables expanded as one word,
    /// quotes kept as written (BuildKit's raw expansion: `\\` escapes, SkipProcessQuotes).
    fn expand_inline(
        &self,
        inline: &[crate::instructions::InlineSource],
    ) -> Result<Vec<crate::instructions::InlineSource>, LexError> {
        inline
            .iter()
            .map(|source| {
                let mut source = source.clone();
                if source.expand {
                    let mut lexer = crate::shell::Lexer::new('\\');
                    lexer.skip_process_quotes = true;
                    source.data = lexer.process_word(&source.data, &self.expansion_env())?;
                }
                Ok(source)
            })
            .collect()
    }

    /// Variables a word refers to that are neither ARG nor ENV here (for the lint).
    pub fn undefined_in(&self, word: &str) -> BTreeSet<String> {
        self.lexer.process(word, &self.expansion_env()).map(|p| p.unmatched).unwrap_or_default()
    }

    /// Expands an instruction by the rules above and applies what it declares (ARG, ENV) to
    /// the scope. Returns the expanded instruction.
    pub fn apply(&mut self, command: &Command, context: &BuildContext) -> Result<Instruction, LexError> {
        let expanded = match &command.instruction {
            Instruction::Arg(definitions) => {
                for definition in definitions {
                    let env = self.expansion_env();
                    if let Some(value) = resolve_arg(&self.lexer, definition, context, &env, Some(self.global))? {
                        self.args.retain(|(k, _)| k != &definition.name);
                        self.args.push((definition.name.clone(), value));
                    }
                }
                command.instruction.clone()
            }
            Instruction::Env(pairs) => {
                // Every word with the variables as they were before this instruction: in
                // `ENV a=bye b=$a`, b is the old a (the reference's "Environment replacement").
                let expanded: Vec<(String, String)> = pairs
                    .iter()
                    .map(|(k, v)| Ok((self.expand_word(k)?, self.expand_word(v)?)))
                    .collect::<Result<_, LexError>>()?;
                for (key, value) in &expanded {
                    self.env.retain(|(k, _)| k != key);
                    self.env.push((key.clone(), value.clone()));
                }
                Instruction::Env(expanded)
            }
            Instruction::Label(pairs) => Instruction::Label(
                pairs
                    .iter()
                    .map(|(k, v)| Ok((self.expand_word(k)?, self.expand_word(v)?)))
                    .collect::<Result<_, LexError>>()?,
            ),
            Instruction::Expose(ports) => {
                let mut all = Vec::new();
                for port in ports {
                    all.extend(self.expand_words(port)?);
                }
                Instruction::Expose(all)
            }
            Instruction::Volume(volumes) => {
                Instruction::Volume(volumes.iter().map(|v| self.expand_word(v)).collect::<Result<_, _>>()?)
            }
            Instruction::Workdir(path) => Instruction::Workdir(self.expand_word(path)?),
            Instruction::User(user) => Instruction::User(self.expand_word(user)?),
            Instruction::StopSignal(signal) => Instruction::StopSignal(self.expand_word(signal)?),
            Instruction::Copy(copy) => Instruction::Copy(Copy {
                sources: copy.sources.iter().map(|s| self.expand_word(s)).collect::<Result<_, _>>()?,
                dest: self.expand_word(&copy.dest)?,
                from: copy.from.as_deref().map(|f| self.expand_word(f)).transpose()?,
                chown: copy.chown.as_deref().map(|f| self.expand_word(f)).transpose()?,
                chmod: copy.chmod.as_deref().map(|f| self.expand_word(f)).transpose()?,
                exclude: copy.exclude.iter().map(|s| self.expand_word(s)).collect::<Result<_, _>>()?,
                inline: self.expand_inline(&copy.inline)?,
                ..copy.clone()
            }),
            Instruction::Add(add) => {
                let mut add = add.clone();
                add.sources = add.sources.iter().map(|s| self.expand_word(s)).collect::<Result<_, _>>()?;
                add.dest = self.expand_word(&add.dest)?;
                add.chown = add.chown.as_deref().map(|f| self.expand_word(f)).transpose()?;
                add.chmod = add.chmod.as_deref().map(|f| self.expand_word(f)).transpose()?;
                add.checksum = add.checksum.as_deref().map(|f| self.expand_word(f)).transpose()?;
                add.exclude = add.exclude.iter().map(|s| self.expand_word(s)).collect::<Result<_, _>>()?;
                add.inline = self.expand_inline(&add.inline)?;
                Instruction::Add(add)
            }
            other => other.clone(),
        };
        Ok(expanded)
    }
}

/// `--build-arg`s that no ARG of the Dockerfile declares (Docker warns about them).
pub fn unused_build_args(dockerfile: &Dockerfile, context: &BuildContext) -> Vec<String> {
    let mut declared: BTreeSet<&str> = PREDEFINED_ARGS.iter().copied().collect();
    let all_commands = dockerfile.meta_args.iter().chain(dockerfile.stages.iter().flat_map(|s| s.commands.iter()));
    for command in all_commands {
        if let Instruction::Arg(definitions) = &command.instruction {
            declared.extend(definitions.iter().map(|d| d.name.as_str()));
        }
    }
    // SOURCE_DATE_EPOCH and BUILDKIT_* settings are read by the builder itself.
    context
        .build_args
        .keys()
        .filter(|k| !declared.contains(k.as_str()) && *k != "SOURCE_DATE_EPOCH" && !k.starts_with("BUILDKIT_"))
        .cloned()
        .collect()
}

/// Validates and expands one EXPOSE word (`80`, `80/udp`, `8000-8002/tcp`) into
/// `port/proto` entries as the image config stores them.
pub fn expose_ports(spec: &str) -> Result<Vec<String>, String> {
    let (ports, protocol) = match spec.split_once('/') {
        Some((ports, protocol)) => (ports, protocol.to_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {protocol}"));
    }
    // `ip:hostPort:containerPort` forms are accepted by Docker's parser; only the container
    // port matters for EXPOSE.
    let ports = ports.rsplit(':').next().unwrap_or(ports);
    let number = |s: &str| -> Result<u16, String> { s.parse().map_err(|_| format!("invalid containerPort: {spec}")) };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => {
            let port = number(ports)?;
            (port, port)
        }
    };
    if end < start {
        return Err(format!("invalid range specified for container port: {spec}"));
    }
    Ok((start..=end).map(|port| format!("{port}/{protocol}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::parse_dockerfile;

    fn context(args: &[(&str, &str)]) -> BuildContext {
        BuildContext {
            build_args: args.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            build_platform: Platform::parse("linux/amd64").expect("platform"),
            target_platform: Platform::parse("linux/arm64").expect("platform"),
        }
    }

    #[test]
    fn global_args_reach_from_and_only_redeclared_args_reach_the_stage() {
        let text = "ARG BASE=alpine\nARG TAG=3\nFROM ${BASE}:${TAG} AS build\nARG TAG\nARG TARGETARCH\nENV A=$TAG-$BASE-$TARGETARCH\n";
        let dockerfile = parse_dockerfile(text, "Dockerfile").expect("parse");
        let context = context(&[("TAG", "edge")]);
        let global = GlobalScope::new(&dockerfile, &context).expect("global");
        let stage = &dockerfile.stages[0];
        assert_eq!(global.expand_from(stage).expect("from").0, "alpine:edge");
        let mut scope = StageScope::new(&global, &context, &["PATH=/bin".to_owned()]);
        let mut last = None;
        for command in &stage.commands {
            last = Some(scope.apply(command, &context).expect("apply"));
        }
        assert_eq!(last, Some(Instruction::Env(vec![("A".into(), "edge--arm64".into())])));
        assert_eq!(scope.image_env(), vec!["PATH=/bin", "A=edge--arm64"]);
        assert!(scope.arg_values().contains(&"TAG=edge".to_owned()));
    }

    #[test]
    fn env_wins_over_arg_and_build_args_override_defaults() {
        let text = "FROM a\nARG X=default\nENV Y=$X\nENV X=env\nCOPY $X /dst\n";
        let dockerfile = parse_dockerfile(text, "Dockerfile").expect("parse");
        let context = context(&[("X", "cli"), ("UNUSED", "1"), ("HTTP_PROXY", "http://p")]);
        let global = GlobalScope::new(&dockerfile, &context).expect("global");
        let mut scope = StageScope::new(&global, &context, &[]);
        let results: Vec<Instruction> =
            dockerfile.stages[0].commands.iter().map(|c| scope.apply(c, &context).expect("apply")).collect();
        assert_eq!(results[1], Instruction::Env(vec![("Y".into(), "cli".into())]));
        let Instruction::Copy(copy) = &results[3] else { panic!("copy") };
        assert_eq!(copy.sources, vec!["env"]);
        assert!(scope.run_env().contains(&"HTTP_PROXY=http://p".to_owned()));
        assert_eq!(unused_build_args(&dockerfile, &context), vec!["UNUSED"]);
    }

    #[test]
    fn one_instruction_expands_with_the_variables_from_before_it() {
        // The reference's "Environment replacement" example: def=hello, ghi=bye.
        let text = "FROM a\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\nLABEL x=$abc y=${def}\n";
        let dockerfile = parse_dockerfile(text, "Dockerfile").expect("parse");
        let context = context(&[]);
        let global = GlobalScope::new(&dockerfile, &context).expect("global");
        let mut scope = StageScope::new(&global, &context, &[]);
        let results: Vec<Instruction> =
            dockerfile.stages[0].commands.iter().map(|c| scope.apply(c, &context).expect("apply")).collect();
        assert_eq!(results[1], Instruction::Env(vec![("abc".into(), "bye".into()), ("def".into(), "hello".into())]));
        assert_eq!(results[2], Instruction::Env(vec![("ghi".into(), "bye".into())]));
        assert_eq!(results[3], Instruction::Label(vec![("x".into(), "bye".into()), ("y".into(), "hello".into())]));
    }

    #[test]
    fn expose_specs() {
        assert_eq!(expose_ports("80").expect("ok"), vec!["80/tcp"]);
        assert_eq!(expose_ports("53/UDP").expect("ok"), vec!["53/udp"]);
        assert_eq!(expose_ports("8000-8002").expect("ok"), vec!["8000/tcp", "8001/tcp", "8002/tcp"]);
        assert!(expose_ports("http").is_err());
        assert!(expose_ports("80/xyz").is_err());
    }
}
