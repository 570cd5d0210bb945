//! BuildKit's build checks that can be decided from the Dockerfile text alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::error::Location;
use crate::instructions::{CommandLine, Dockerfile, Instruction};
use crate::vars::{BuildContext, GlobalScope, StageScope, PREDEFINED_ARGS};

/// One finding, named like BuildKit's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub rule: &'static str,
    pub message: String,
    pub file: String,
    pub location: Location,
}

impl Warning {
    /// The rule's documentation page.
    pub fn url(&self) -> String {
        // CamelCase → kebab-case, keeping acronyms together (JSONArgs → json-args).
        let chars: Vec<char> = self.rule.chars().collect();
        let mut slug = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let previous_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let acronym_end =
                i > 0 && chars[i - 1].is_ascii_uppercase() && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if c.is_ascii_uppercase() && (previous_lower || acronym_end) {
                slug.push('-');
            }
            slug.push(c.to_ascii_lowercase());
        }
        format!("https://docs.docker.com/go/dockerfile/rule/{slug}/")
    }

    /// Whether this finding should fail a `--check` build on its own.
    pub fn is_error(&self) -> bool {
        self.rule == "SecretsUsedInArgOrEnv"
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file, self.location.start, self.rule, self.message)?;
        if self.is_error() {
            write!(f, " (hint: pass it with --secret id=NAME and RUN --mount=type=secret,id=NAME)")?;
        }
        Ok(())
    }
}

/// Whether an ARG/ENV name looks like it holds a secret (BuildKit's token rule).
pub fn is_secret_name(name: &str) -> bool {
    const DENY: &[&str] =
        &["apikey", "auth", "credential", "credentials", "key", "password", "pword", "passwd", "secret", "token"];
    let parts: Vec<String> = name.split('_').map(str::to_lowercase).collect();
    !parts.iter().any(|p| p == "public") && parts.iter().any(|p| DENY.contains(&p.as_str()))
}

/// Environment variables nearly every base image sets; not reported as undefined.
const COMMON_IMAGE_ENV: &[&str] = &["PATH", "HOME", "HOSTNAME", "TERM", "LANG", "USER", "PWD", "SHELL"];

/// Runs every text-only check. `file` names the Dockerfile in the findings.
pub fn lint(dockerfile: &Dockerfile, file: &str) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let mut warn = |rule: &'static str, location: Location, message: String| {
        warnings.push(Warning { rule, message, file: file.to_owned(), location });
    };

    let context = BuildContext::default();
    let Ok(global) = GlobalScope::new(dockerfile, &context) else {
        return warnings;
    };
    let mut stage_names: BTreeMap<String, Location> = BTreeMap::new();
    for command in &dockerfile.meta_args {
        if let Instruction::Arg(definitions) = &command.instruction {
            for definition in definitions.iter().filter(|d| is_secret_name(&d.name)) {
                warn(
                    "SecretsUsedInArgOrEnv",
                    command.location,
                    format!("Do not use ARG or ENV instructions for sensitive data (ARG {:?})", definition.name),
                );
            }
        }
    }
    for stage in &dockerfile.stages {
        // FROM ... AS casing.
        if let Some(as_keyword) = &stage.as_keyword {
            let from_keyword = stage.original.split_whitespace().next().unwrap_or("FROM");
            let from_upper = from_keyword.chars().all(|c| !c.is_ascii_lowercase());
            let as_upper = as_keyword.chars().all(|c| !c.is_ascii_lowercase());
            if from_upper != as_upper {
                warn(
                    "FromAsCasing",
                    stage.location,
                    format!("'{as_keyword}' and '{from_keyword}' keywords' casing do not match"),
                );
            }
        }
        if let Some(name) = &stage.name {
            if stage_names.insert(name.clone(), stage.location).is_some() {
                warn(
                    "DuplicateStageName",
                    stage.location,
                    format!("Duplicate stage name {name:?}, stage names should be unique"),
                );
            }
        }
        for variable in undefined(&global.undefined_in(&stage.base), &BTreeSet::new()) {
            warn("UndefinedVar", stage.location, format!("Usage of undefined variable '${variable}'"));
        }

        let mut scope = StageScope::new(&global, &context, &[]);
        let mut declared: BTreeSet<String> = COMMON_IMAGE_ENV.iter().map(|s| (*s).to_owned()).collect();
        declared.extend(PREDEFINED_ARGS.iter().map(|s| (*s).to_owned()));
        let mut absolute_workdir = false;
        for command in &stage.commands {
            let location = command.location;
            let words: Vec<&str> = match &command.instruction {
                Instruction::Env(pairs) | Instruction::Label(pairs) => pairs.iter().map(|(_, v)| v.as_str()).collect(),
                Instruction::Workdir(w) | Instruction::User(w) | Instruction::StopSignal(w) => vec![w.as_str()],
                Instruction::Expose(v) | Instruction::Volume(v) => v.iter().map(String::as_str).collect(),
                Instruction::Copy(c) => c.sources.iter().chain(std::iter::once(&c.dest)).map(String::as_str).collect(),
                Instruction::Add(a) => a.sources.iter().chain(std::iter::once(&a.dest)).map(String::as_str).collect(),
                _ => Vec::new(),
            };
            for word in words {
                for variable in undefined(&scope.undefined_in(word), &declared) {
                    warn("UndefinedVar", location, format!("Usage of undefined variable '${variable}'"));
                }
            }
            match &command.instruction {
                Instruction::Arg(definitions) => {
                    for definition in definitions {
                        declared.insert(definition.name.clone());
                        if is_secret_name(&definition.name) {
                            warn(
                                "SecretsUsedInArgOrEnv",
                                location,
                                format!(
                                    "Do not use ARG or ENV instructions for sensitive data (ARG {:?})",
                                    definition.name
                                ),
                            );
                        }
                    }
                }
                Instruction::Env(pairs) => {
                    for (key, _) in pairs {
                        declared.insert(key.clone());
                        if is_secret_name(key) {
                            warn(
                                "SecretsUsedInArgOrEnv",
                                location,
                                format!("Do not use ARG or ENV instructions for sensitive data (ENV {key:?})"),
                            );
                        }
                    }
                    if is_legacy_key_value(&command.original, &command.keyword) {
                        warn(
                            "LegacyKeyValueFormat",
                            location,
                            "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format".to_owned(),
                        );
                    }
                }
                Instruction::Label(_) if is_legacy_key_value(&command.original, &command.keyword) => warn(
                    "LegacyKeyValueFormat",
                    location,
                    "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format".to_owned(),
                ),
                Instruction::Cmd(CommandLine::Shell(_)) | Instruction::Entrypoint(Some(CommandLine::Shell(_))) => {
                    let name = command.instruction.name();
                    warn(
                        "JSONArgsRecommended",
                        location,
                        format!("JSON arguments recommended for {name} to prevent unintended behavior related to OS signals"),
                    );
                }
                Instruction::Maintainer(_) => warn(
                    "MaintainerDeprecated",
                    location,
                    "Maintainer instruction is deprecated in favor of using label".to_owned(),
                ),
                Instruction::Workdir(path) => {
                    if path.starts_with('/') || path.starts_with('$') {
                        absolute_workdir = true;
                    } else if !absolute_workdir {
                        warn(
                            "WorkdirRelativePath",
                            location,
                            format!("Relative workdir {path:?} can have unexpected results if the base image changes"),
                        );
                    }
                }
                _ => {}
            }
            let _ = scope.apply(command, &context);
        }
    }
    warnings.sort_by_key(|w| w.location);
    warnings
}

fn undefined(unmatched: &BTreeSet<String>, declared: &BTreeSet<String>) -> Vec<String> {
    unmatched.iter().filter(|v| !declared.contains(*v)).cloned().collect()
}

/// `ENV key value` (no `=` in the first word after the keyword and flags).
fn is_legacy_key_value(original: &str, keyword: &str) -> bool {
    let rest = original.trim_start();
    let rest = rest.get(keyword.len()..).unwrap_or("").trim_start();
    rest.split_whitespace().next().is_some_and(|first| !first.contains('='))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instructions::parse_dockerfile;

    fn rules(text: &str) -> Vec<(&'static str, usize)> {
        let dockerfile = parse_dockerfile(text, "Dockerfile").expect("parse");
        lint(&dockerfile, "Dockerfile").into_iter().map(|w| (w.rule, w.location.start)).collect()
    }

    #[test]
    fn finds_each_rule() {
        let text = "\
FROM alpine as build
MAINTAINER me
ARG DB_PASSWORD
ENV API_TOKEN=x PUBLIC_KEY=y
ENV LEGACY value
WORKDIR app
COPY $NOPE /dst
CMD echo hi
FROM alpine AS build
ENTRYPOINT [\"/bin/sh\"]
";
        assert_eq!(
            rules(text),
            vec![
                ("FromAsCasing", 1),
                ("MaintainerDeprecated", 2),
                ("SecretsUsedInArgOrEnv", 3),
                ("SecretsUsedInArgOrEnv", 4),
                ("LegacyKeyValueFormat", 5),
                ("WorkdirRelativePath", 6),
                ("UndefinedVar", 7),
                ("JSONArgsRecommended", 8),
                ("DuplicateStageName", 9),
            ]
        );
    }

    #[test]
    fn clean_dockerfile_has_no_findings() {
        let text = "ARG VERSION=1\nFROM alpine:${VERSION} AS base\nARG VERSION\nENV APP=/app PATH=$PATH:/app\nWORKDIR $APP\nCOPY . .\nCMD [\"./run\"]\n";
        assert_eq!(rules(text), vec![]);
    }

    #[test]
    fn rule_urls() {
        let warning =
            |rule| Warning { rule, message: String::new(), file: String::new(), location: Location::default() };
        assert_eq!(
            warning("JSONArgsRecommended").url(),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        assert_eq!(warning("FromAsCasing").url(), "https://docs.docker.com/go/dockerfile/rule/from-as-casing/");
    }

    #[test]
    fn secret_names() {
        for name in ["PASSWORD", "api_key", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "auth"] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["PUBLIC_KEY", "TOKENIZER", "KEYBOARD", "PATH"] {
            assert!(!is_secret_name(name), "{name}");
        }
    }
}
