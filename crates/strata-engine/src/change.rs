//! `--change` instructions (`import`, later `commit`): the Dockerfile instructions that only
//! touch the image config, read by the Dockerfile frontend and applied as `docker import -c`
//! and `docker commit -c` do (values expanded with the image's Env).

use std::collections::BTreeMap;

use serde_json::Value;
use strata_dockerfile::instructions::{parse_command, CommandLine, Healthcheck, Instruction};
use strata_dockerfile::shell::{env_from_list, Lexer};
use strata_dockerfile::vars::expose_ports;
use strata_oci::spec::ContainerConfig;

use crate::error::{EngineError, Result};

/// Applies one `--change` line to `config`.
pub fn apply_change(config: &mut ContainerConfig, line: &str) -> Result<()> {
    let invalid = |why: String| EngineError::InvalidArgument(format!("invalid --change {line:?}: {why}"));
    let parsed = strata_dockerfile::parse(line, "--change").map_err(|e| invalid(e.message))?;
    let [node] = parsed.nodes.as_slice() else {
        return Err(invalid("exactly one instruction is expected".to_owned()));
    };
    let instruction = parse_command(node).map_err(invalid)?.instruction;
    let lexer = Lexer::new(parsed.escape);
    let env = env_from_list(config.env.as_deref().unwrap_or_default());
    let expand = |word: &str| lexer.process_word(word, &env).map_err(|e| invalid(e.to_string()));
    let command = |line: CommandLine| match line {
        CommandLine::Exec(args) => args,
        CommandLine::Shell(text) => vec!["/bin/sh".to_owned(), "-c".to_owned(), text],
    };
    match instruction {
        Instruction::Cmd(line) => config.cmd = Some(command(line)),
        Instruction::Entrypoint(line) => config.entrypoint = line.map(command),
        Instruction::Env(pairs) => {
            for (key, value) in pairs {
                let (key, value) = (expand(&key)?, expand(&value)?);
                let entries = config.env.get_or_insert_with(Vec::new);
                let prefix = format!("{key}=");
                entries.retain(|entry| !entry.starts_with(&prefix));
                entries.push(format!("{key}={value}"));
            }
        }
        Instruction::Label(pairs) => {
            for (key, value) in pairs {
                let (key, value) = (expand(&key)?, expand(&value)?);
                config.labels.get_or_insert_with(BTreeMap::new).insert(key, value);
            }
        }
        Instruction::Expose(specs) => {
            for spec in specs {
                for word in lexer.process_words(&spec, &env).map_err(|e| invalid(e.to_string()))? {
                    for port in expose_ports(&word).map_err(invalid)? {
                        config.exposed_ports.get_or_insert_with(BTreeMap::new).insert(port, Value::Object(Default::default()));
                    }
                }
            }
        }
        Instruction::Volume(paths) => {
            for path in paths {
                config.volumes.get_or_insert_with(BTreeMap::new).insert(expand(&path)?, Value::Object(Default::default()));
            }
        }
        Instruction::User(user) => config.user = Some(expand(&user)?),
        Instruction::Workdir(dir) => {
            let dir = expand(&dir)?;
            config.working_dir = Some(match (&config.working_dir, dir.starts_with('/')) {
                (Some(base), false) => format!("{}/{dir}", base.trim_end_matches('/')),
                (None, false) => format!("/{dir}"),
                (_, true) => dir,
            });
        }
        Instruction::StopSignal(signal) => config.stop_signal = Some(expand(&signal)?),
        Instruction::Onbuild(trigger) => config.on_build.get_or_insert_with(Vec::new).push(trigger),
        Instruction::Healthcheck(health) => {
            config.healthcheck = Some(match health {
                Healthcheck::None => serde_json::json!({ "Test": ["NONE"] }),
                Healthcheck::Check { test, interval, timeout, start_period, start_interval, retries } => {
                    let nanos = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_nanos() as u64);
                    serde_json::json!({
                        "Test": test,
                        "Interval": nanos(interval),
                        "Timeout": nanos(timeout),
                        "StartPeriod": nanos(start_period),
                        "StartInterval": nanos(start_interval),
                        "Retries": retries.unwrap_or(0),
                    })
                }
            })
        }
        other => {
            return Err(invalid(format!(
                "{} is not allowed (CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR are)",
                other.name()
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_forms() {
        let mut config = ContainerConfig::default();
        for change in [
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/init",
            r#"ENV A=1 B="two words""#,
            "ENV LEGACY some value",
            "ENV C=$A-x",
            "EXPOSE 80 53/UDP",
            "WORKDIR /app",
            "WORKDIR sub",
            r#"LABEL org.example="x y""#,
            "VOLUME /data",
            "USER 1000:1000",
            "HEALTHCHECK --interval=5s CMD true",
        ] {
            apply_change(&mut config, change).expect(change);
        }
        assert_eq!(config.cmd.as_deref(), Some(&["sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()][..]));
        assert_eq!(config.entrypoint.as_ref().map(|e| e[2].as_str()), Some("/bin/init"));
        assert_eq!(
            config.env,
            Some(vec!["A=1".into(), "B=two words".into(), "LEGACY=some value".into(), "C=1-x".into()])
        );
        let ports: Vec<_> = config.exposed_ports.as_ref().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        assert_eq!(ports, vec!["53/udp".to_owned(), "80/tcp".to_owned()]);
        assert_eq!(config.working_dir.as_deref(), Some("/app/sub"));
        assert_eq!(config.labels.as_ref().and_then(|l| l.get("org.example")).map(String::as_str), Some("x y"));
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            config.healthcheck.as_ref().map(|h| h["Interval"].clone()),
            Some(serde_json::json!(5_000_000_000u64))
        );
    }

    #[test]
    fn rejects_filesystem_instructions_and_bad_lines() {
        let err = apply_change(&mut ContainerConfig::default(), "RUN rm -rf /").expect_err("RUN");
        assert!(err.to_string().contains("RUN is not allowed"), "{err}");
        let err = apply_change(&mut ContainerConfig::default(), "CMDD x").expect_err("typo");
        assert!(err.to_string().contains("did you mean CMD?"), "{err}");
    }
}
