//! What the instructions that change no files do to the image config, and the history entry
//! each one leaves — BuildKit's (`CMD ["sh" "-c" "x"]`, `EXPOSE [80/tcp]`, `ENV A=1`, ...), so
//! `strata history` of a strata-built image reads like Docker's.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_dockerfile::instructions::{CommandLine, Healthcheck, Instruction};
use strata_oci::spec::ContainerConfig;

/// The shell used for shell-form commands when the image sets none.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// Per-stage facts the config rules depend on.
#[derive(Debug, Clone, Default)]
pub struct StageFlags {
    /// `CMD` was given in this stage (an `ENTRYPOINT` after it keeps it).
    pub cmd_set: bool,
}

/// Applies one expanded, file-less instruction to `config`; returns the history text, or
/// `None` when BuildKit records no history entry (`ONBUILD`). Errors name what is wrong.
pub fn apply(
    config: &mut ContainerConfig,
    flags: &mut StageFlags,
    instruction: &Instruction,
) -> Result<Option<String>, String> {
    let text = match instruction {
        Instruction::Env(pairs) => {
            let env = config.env.get_or_insert_with(Vec::new);
            let mut text = String::from("ENV");
            for (key, value) in pairs {
                set_env(env, key, value);
                text.push_str(&format!(" {key}={value}"));
            }
            text
        }
        Instruction::Label(pairs) => {
            let labels = config.labels.get_or_insert_with(BTreeMap::new);
            let mut text = String::from("LABEL");
            for (key, value) in pairs {
                labels.insert(key.clone(), value.clone());
                text.push_str(&format!(" {key}={value}"));
            }
            text
        }
        Instruction::Workdir(path) => {
            let current = config.working_dir.clone().unwrap_or_default();
            let dir = if path.starts_with('/') { clean_path(path) } else { clean_path(&format!("/{current}/{path}")) };
            config.working_dir = Some(dir.clone());
            format!("WORKDIR {dir}")
        }
        Instruction::User(user) => {
            config.user = Some(user.clone());
            format!("USER {user}")
        }
        Instruction::Expose(ports) => {
            let mut specs = Vec::new();
            for port in ports {
                specs.extend(port_specs(port)?);
            }
            let exposed = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for spec in &specs {
                exposed.insert(spec.clone(), serde_json::json!({}));
            }
            format!("EXPOSE [{}]", specs.join(" "))
        }
        Instruction::Volume(volumes) => {
            if volumes.iter().any(String::is_empty) {
                return Err("VOLUME specified can not be an empty string".to_owned());
            }
            let map = config.volumes.get_or_insert_with(BTreeMap::new);
            for volume in volumes {
                map.insert(volume.clone(), serde_json::json!({}));
            }
            format!("VOLUME [{}]", volumes.join(" "))
        }
        Instruction::Cmd(command) => {
            let args = with_shell(config, command);
            config.cmd = Some(args.clone());
            config.extra.insert("ArgsEscaped".to_owned(), serde_json::Value::Bool(true));
            flags.cmd_set = true;
            format!("CMD {}", go_quoted_list(&args))
        }
        Instruction::Entrypoint(command) => {
            let args = command.as_ref().map(|c| with_shell(config, c)).unwrap_or_default();
            config.entrypoint = Some(args.clone());
            if !flags.cmd_set {
                config.cmd = None;
            }
            format!("ENTRYPOINT {}", go_quoted_list(&args))
        }
        Instruction::StopSignal(signal) => {
            if !valid_signal(signal) {
                return Err(format!("Invalid signal: {signal}"));
            }
            config.stop_signal = Some(signal.clone());
            format!("STOPSIGNAL {signal}")
        }
        Instruction::Shell(shell) => {
            config.shell = Some(shell.clone());
            format!("SHELL [{}]", shell.join(" "))
        }
        Instruction::Healthcheck(check) => {
            let (value, text) = healthcheck(check);
            config.healthcheck = Some(value);
            format!("HEALTHCHECK {text}")
        }
        Instruction::Onbuild(trigger) => {
            config.on_build.get_or_insert_with(Vec::new).push(trigger.clone());
            return Ok(None);
        }
        Instruction::Maintainer(name) => format!("MAINTAINER {name}"),
        other => return Err(format!("{} changes files; it is not a config instruction", other.name())),
    };
    Ok(Some(text))
}

/// The history text of `ARG` with the values it took (`ARG A=1 B`).
pub fn arg_history(args: &[(String, Option<String>)]) -> String {
    let parts: Vec<String> = args
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => key.clone(),
        })
        .collect();
    format!("ARG {}", parts.join(" "))
}

/// The argv of a RUN: shell form through the image's SHELL (or `/bin/sh -c`), exec form as is.
pub fn run_args(config: &ContainerConfig, command: &CommandLine) -> Vec<String> {
    with_shell(config, command)
}

/// The history text of a RUN: the stage's build args in use (`|2 A=1 B=2`, each once, the last
/// value winning), the argv, and BuildKit's `# buildkit` mark for steps that make a layer.
pub fn run_history(args: &[String], build_args: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in build_args {
        match pairs.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value.clone(),
            None => pairs.push((key.clone(), value.clone())),
        }
    }
    let mut words: Vec<String> = Vec::new();
    if !pairs.is_empty() {
        words.push(format!("|{}", pairs.len()));
        words.extend(pairs.iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(args.iter().cloned());
    format!("RUN {} # buildkit", words.join(" "))
}

/// Replaces or appends `key=value` (keys compare exactly, as on Linux).
fn set_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
        Some(existing) => *existing = entry,
        None => env.push(entry),
    }
}

/// A shell-form command runs through the image's SHELL (or `/bin/sh -c`).
fn with_shell(config: &ContainerConfig, command: &CommandLine) -> Vec<String> {
    match command {
        CommandLine::Exec(args) => args.clone(),
        CommandLine::Shell(line) => {
            let mut args: Vec<String> = match &config.shell {
                Some(shell) if !shell.is_empty() => shell.clone(),
                _ => DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect(),
            };
            args.push(line.clone());
            args
        }
    }
}

/// Go's `path.Clean` for absolute paths.
fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// `80`, `80/udp`, `8000-8002/tcp`, `127.0.0.1:80:80` → `port/proto` entries.
fn port_specs(spec: &str) -> Result<Vec<String>, String> {
    // The container port is the last `:` field.
    let container = spec.rsplit(':').next().unwrap_or(spec);
    let (port, proto) = container.split_once('/').unwrap_or((container, "tcp"));
    if port.is_empty() {
        return Err(format!("invalid port: {spec:?}: no port specified"));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_owned(),
        p @ ("tcp" | "udp" | "sctp") => p.to_owned(),
        _ => return Err(format!("invalid port: {spec:?}: invalid proto: {proto}")),
    };
    let invalid = || format!("invalid containerPort: {port}");
    let (low, high) = match port.split_once('-') {
        Some((low, high)) => (low.parse::<u16>().map_err(|_| invalid())?, high.parse::<u16>().map_err(|_| invalid())?),
        None => {
            let single = port.parse::<u16>().map_err(|_| invalid())?;
            (single, single)
        }
    };
    if high < low {
        return Err(invalid());
    }
    Ok((low..=high).map(|p| format!("{p}/{proto}")).collect())
}

fn valid_signal(signal: &str) -> bool {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL", "USR1", "SEGV", "USR2", "PIPE", "ALRM",
        "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF",
        "WINCH", "IO", "PWR", "SYS",
    ];
    if let Ok(number) = signal.parse::<u32>() {
        return (1..=64).contains(&number);
    }
    let name = signal.to_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX")
}

/// The config value and BuildKit's history text (Go's `%q` of the struct).
fn healthcheck(check: &Healthcheck) -> (serde_json::Value, String) {
    match check {
        Healthcheck::None => {
            let test = vec!["NONE".to_owned()];
            (
                serde_json::json!({ "Test": test }),
                format!("&{{{} \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}}", go_quoted_list(&test)),
            )
        }
        Healthcheck::Check { test, interval, timeout, start_period, start_interval, retries } => {
            let nanos = |d: &Option<Duration>| d.map_or(0, |d| d.as_nanos() as u64);
            let mut value = serde_json::json!({ "Test": test });
            for (key, duration) in [
                ("Interval", interval),
                ("Timeout", timeout),
                ("StartPeriod", start_period),
                ("StartInterval", start_interval),
            ] {
                if duration.is_some() {
                    value[key] = serde_json::json!(nanos(duration));
                }
            }
            if let Some(retries) = retries {
                value["Retries"] = serde_json::json!(retries);
            }
            let durations: Vec<String> = [interval, timeout, start_period, start_interval]
                .iter()
                .map(|d| go_quote(&go_duration(d.unwrap_or_default())))
                .collect();
            let text = format!(
                "&{{{} {} {}}}",
                go_quoted_list(test),
                durations.join(" "),
                go_quoted_rune(retries.unwrap_or(0))
            );
            (value, text)
        }
    }
}

/// Go's `time.Duration.String()`.
fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        return match nanos {
            n if n < 1_000 => format!("{n}ns"),
            n if n < 1_000_000 => format!("{}µs", trim_fraction(n as f64 / 1e3)),
            n => format!("{}ms", trim_fraction(n as f64 / 1e6)),
        };
    }
    let total_seconds = duration.as_secs();
    let fraction = duration.subsec_nanos();
    let (hours, minutes, seconds) = (total_seconds / 3600, (total_seconds / 60) % 60, total_seconds % 60);
    let seconds = if fraction == 0 {
        format!("{seconds}s")
    } else {
        format!("{}s", trim_fraction(seconds as f64 + f64::from(fraction) / 1e9))
    };
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

fn trim_fraction(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| go_quote(s)).collect::<Vec<_>>().join(" "))
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` of an integer: the quoted character (`'\x03'`, `'a'`).
fn go_quoted_rune(value: u32) -> String {
    match char::from_u32(value) {
        Some(c) if !c.is_control() && c != '\'' && c != '\\' => format!("'{c}'"),
        _ if value < 0x100 => format!("'\\x{value:02x}'"),
        _ => format!("'\\u{value:04x}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stage's instructions after expansion, as the executor will see them.
    fn parse(text: &str) -> Vec<Instruction> {
        use strata_dockerfile::vars::{BuildContext, GlobalScope, StageScope};
        let dockerfile =
            strata_dockerfile::parse_dockerfile(&format!("FROM scratch\n{text}"), "Dockerfile").expect("parses");
        let context = BuildContext::default();
        let global = GlobalScope::new(&dockerfile, &context).expect("global scope");
        let mut scope = StageScope::new(&global, &context, &[]);
        dockerfile.stages[0].commands.iter().map(|c| scope.apply(c, &context).expect("expands")).collect()
    }

    fn history(text: &str) -> (ContainerConfig, Vec<String>) {
        let mut config = ContainerConfig::default();
        let mut flags = StageFlags::default();
        let lines = parse(text).iter().filter_map(|i| apply(&mut config, &mut flags, i).expect("applies")).collect();
        (config, lines)
    }

    #[test]
    fn history_text_matches_buildkit() {
        let (config, lines) = history(
            "ENV A=1 B=\"two words\"\nLABEL version=1.0\nWORKDIR /app\nWORKDIR sub/../src\nUSER app:app\n\
             EXPOSE 80 443/udp 8000-8001\nVOLUME /data /cache\nSTOPSIGNAL SIGQUIT\nSHELL [\"/bin/bash\", \"-c\"]\n\
             CMD echo \"hi\"\nENTRYPOINT [\"/entry\"]\nONBUILD RUN make\nMAINTAINER someone\n",
        );
        assert_eq!(
            lines,
            [
                "ENV A=1 B=two words",
                "LABEL version=1.0",
                "WORKDIR /app",
                "WORKDIR /app/src",
                "USER app:app",
                // The frontend sorts EXPOSE arguments as strings, as BuildKit's parser does.
                "EXPOSE [443/udp 80/tcp 8000/tcp 8001/tcp]",
                "VOLUME [/data /cache]",
                "STOPSIGNAL SIGQUIT",
                "SHELL [/bin/bash -c]",
                "CMD [\"/bin/bash\" \"-c\" \"echo \\\"hi\\\"\"]",
                "ENTRYPOINT [\"/entry\"]",
                "MAINTAINER someone",
            ]
        );
        assert_eq!(config.env, Some(vec!["A=1".to_owned(), "B=two words".to_owned()]));
        assert_eq!(config.working_dir.as_deref(), Some("/app/src"));
        assert_eq!(config.cmd, Some(vec!["/bin/bash".to_owned(), "-c".to_owned(), "echo \"hi\"".to_owned()]));
        assert_eq!(config.on_build, Some(vec!["RUN make".to_owned()]));
        assert_eq!(config.exposed_ports.as_ref().map(|p| p.len()), Some(4));
    }

    #[test]
    fn entrypoint_resets_an_inherited_cmd_but_not_this_stages() {
        let mut config = ContainerConfig { cmd: Some(vec!["sh".to_owned()]), ..ContainerConfig::default() };
        let mut flags = StageFlags::default();
        for instruction in parse("ENTRYPOINT [\"/e\"]\n") {
            apply(&mut config, &mut flags, &instruction).expect("applies");
        }
        assert_eq!(config.cmd, None, "the base image's CMD goes");
        let (config, _) = history("CMD [\"x\"]\nENTRYPOINT [\"/e\"]\n");
        assert_eq!(config.cmd, Some(vec!["x".to_owned()]));
        // ENV replaces a key in place.
        let (config, _) = history("ENV A=1 B=2\nENV A=3\n");
        assert_eq!(config.env, Some(vec!["A=3".to_owned(), "B=2".to_owned()]));
    }

    #[test]
    fn healthcheck_and_bad_values() {
        let (config, lines) = history("HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://x/\n");
        assert_eq!(
            lines,
            ["HEALTHCHECK &{[\"CMD-SHELL\" \"curl -f http://x/\"] \"30s\" \"0s\" \"0s\" \"0s\" '\\x03'}"]
        );
        let check = config.healthcheck.expect("set");
        assert_eq!(check["Interval"], 30_000_000_000u64);
        assert_eq!(check["Retries"], 3);
        let mut config = ContainerConfig::default();
        let mut flags = StageFlags::default();
        let bad = apply(&mut config, &mut flags, &Instruction::StopSignal("SIGNOPE".to_owned()));
        assert_eq!(bad, Err("Invalid signal: SIGNOPE".to_owned()));
        let bad = apply(&mut config, &mut flags, &Instruction::Expose(vec!["80/xtp".to_owned()]));
        assert_eq!(bad, Err("invalid port: \"80/xtp\": invalid proto: xtp".to_owned()));
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(arg_history(&[("A".to_owned(), Some("1".to_owned())), ("B".to_owned(), None)]), "ARG A=1 B");
        let shell = run_args(&ContainerConfig::default(), &CommandLine::Shell("make all".to_owned()));
        assert_eq!(run_history(&shell, &[]), "RUN /bin/sh -c make all # buildkit");
        let args =
            [("V".to_owned(), "1".to_owned()), ("W".to_owned(), "x".to_owned()), ("V".to_owned(), "2".to_owned())];
        assert_eq!(run_history(&["true".to_owned()], &args), "RUN |2 V=2 W=x true # buildkit");
    }
}
