//! `--change` instructions (`import`, later `commit`): the Dockerfile instructions that only
//! touch the image config. A small reader of its own until the Dockerfile frontend crate can
//! be shared; it keeps Docker's forms (JSON or shell form, `k=v` or legacy `k v`).

use std::collections::BTreeMap;

use serde_json::Value;
use strata_oci::spec::ContainerConfig;

use crate::error::{EngineError, Result};

/// Applies one `--change` line to `config`.
pub fn apply_change(config: &mut ContainerConfig, line: &str) -> Result<()> {
    let line = line.trim();
    let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
    let rest = rest.trim();
    let invalid = |why: &str| EngineError::InvalidArgument(format!("invalid --change {line:?}: {why}"));
    match instruction.to_ascii_uppercase().as_str() {
        "CMD" => config.cmd = Some(command(rest)),
        "ENTRYPOINT" => config.entrypoint = Some(command(rest)),
        "ENV" => {
            let pairs = key_values(rest, "ENV").map_err(|e| invalid(&e))?;
            let env = config.env.get_or_insert_with(Vec::new);
            for (key, value) in pairs {
                let prefix = format!("{key}=");
                env.retain(|entry| !entry.starts_with(&prefix));
                env.push(format!("{key}={value}"));
            }
        }
        "LABEL" => {
            let pairs = key_values(rest, "LABEL").map_err(|e| invalid(&e))?;
            config.labels.get_or_insert_with(BTreeMap::new).extend(pairs);
        }
        "EXPOSE" => {
            let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
            for port in words(rest).map_err(|e| invalid(&e))? {
                let port = if port.contains('/') { port.to_ascii_lowercase() } else { format!("{port}/tcp") };
                let number = port.split('/').next().unwrap_or("");
                if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
                    return Err(invalid(&format!("invalid port {port:?}")));
                }
                ports.insert(port, Value::Object(Default::default()));
            }
        }
        "VOLUME" => {
            let paths = match serde_json::from_str::<Vec<String>>(rest) {
                Ok(paths) => paths,
                Err(_) => words(rest).map_err(|e| invalid(&e))?,
            };
            let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
            for path in paths {
                volumes.insert(path, Value::Object(Default::default()));
            }
        }
        "USER" => config.user = Some(single(rest).map_err(|e| invalid(&e))?),
        "WORKDIR" => {
            let dir = single(rest).map_err(|e| invalid(&e))?;
            let dir = match (&config.working_dir, dir.starts_with('/')) {
                (Some(base), false) => format!("{}/{dir}", base.trim_end_matches('/')),
                (None, false) => format!("/{dir}"),
                (_, true) => dir,
            };
            config.working_dir = Some(dir);
        }
        "STOPSIGNAL" => config.stop_signal = Some(single(rest).map_err(|e| invalid(&e))?),
        "ONBUILD" => {
            if rest.is_empty() {
                return Err(invalid("ONBUILD needs an instruction"));
            }
            config.on_build.get_or_insert_with(Vec::new).push(rest.to_owned());
        }
        "" => return Err(invalid("empty instruction")),
        other => {
            return Err(invalid(&format!(
                "{other} is not allowed (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR are)"
            )))
        }
    }
    Ok(())
}

/// JSON array form, or shell form wrapped in `/bin/sh -c`.
fn command(rest: &str) -> Vec<String> {
    match serde_json::from_str::<Vec<String>>(rest) {
        Ok(args) => args,
        Err(_) => vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.to_owned()],
    }
}

fn single(rest: &str) -> Result<String, String> {
    let mut all = words(rest)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        0 => Err("a value is required".to_owned()),
        _ => Err("exactly one value is allowed".to_owned()),
    }
}

/// `k=v k2="v 2"` or the legacy single pair `k v w`.
fn key_values(rest: &str, instruction: &str) -> Result<Vec<(String, String)>, String> {
    let all = words(rest)?;
    let Some(first) = all.first() else {
        return Err(format!("{instruction} needs at least one key"));
    };
    if !first.contains('=') {
        let (key, value) =
            rest.split_once(char::is_whitespace).ok_or_else(|| format!("{instruction} {first} needs a value"))?;
        return Ok(vec![(key.to_owned(), value.trim().to_owned())]);
    }
    all.into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(format!("{instruction} names cannot be empty")),
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(format!("{word:?} is not of the form key=value")),
        })
        .collect()
}

/// Splits on unquoted whitespace; quotes group and are removed; backslash escapes.
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(next) = chars.next() {
                    current.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".to_owned());
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
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
            "EXPOSE 80 53/UDP",
            "WORKDIR /app",
            "WORKDIR sub",
            r#"LABEL org.example="x y""#,
            "VOLUME /data",
            "USER 1000:1000",
        ] {
            apply_change(&mut config, change).expect(change);
        }
        assert_eq!(config.cmd.as_deref(), Some(&["sh".to_owned(), "-c".to_owned(), "echo hi".to_owned()][..]));
        assert_eq!(config.entrypoint.as_ref().map(|e| e[2].as_str()), Some("/bin/init"));
        assert_eq!(config.env, Some(vec!["A=1".into(), "B=two words".into(), "LEGACY=some value".into()]));
        let ports: Vec<_> = config.exposed_ports.as_ref().map(|p| p.keys().cloned().collect()).unwrap_or_default();
        assert_eq!(ports, vec!["53/udp".to_owned(), "80/tcp".to_owned()]);
        assert_eq!(config.working_dir.as_deref(), Some("/app/sub"));
        assert_eq!(config.labels.as_ref().and_then(|l| l.get("org.example")).map(String::as_str), Some("x y"));
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn rejects_filesystem_instructions() {
        let err = apply_change(&mut ContainerConfig::default(), "RUN rm -rf /").expect_err("RUN");
        assert!(err.to_string().contains("RUN is not allowed"), "{err}");
        assert!(apply_change(&mut ContainerConfig::default(), "ENV A=\"open").is_err());
    }
}
