//! Registry credentials where Docker keeps them: `$DOCKER_CONFIG/config.json` (default
//! `~/.docker/config.json`) — `auths` entries (base64 `user:password`), and `credsStore` /
//! `credHelpers`, which name `docker-credential-NAME` programs spoken to as Docker does
//! (`get`/`store`/`erase`, JSON on stdin/stdout). `login` and `logout` write the same file.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{json, Value};

/// The key Docker files Docker Hub's credentials under.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    /// `Authorization: Basic ...`
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// The config file's path.
pub fn config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".docker").join("config.json")
}

/// The key a registry's entry has in `auths`/`credHelpers`.
pub fn config_key(registry: &str) -> String {
    if registry == "docker.io" || registry == "index.docker.io" || registry == "registry-1.docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        registry.to_owned()
    }
}

fn read_config() -> Result<Value, String> {
    let path = config_path();
    match std::fs::read(&path) {
        Ok(data) => serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Written aside and renamed, mode 0600: a reader never sees half of it.
fn write_config(config: &Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = config_path();
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let data = serde_json::to_vec_pretty(config).map_err(|e| e.to_string())?;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(fail)?;
    file.write_all(&data).and_then(|()| file.write_all(b"\n")).map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)
}

/// The credential helper for `key`, if the config names one.
fn helper(config: &Value, key: &str) -> Option<String> {
    config["credHelpers"][key]
        .as_str()
        .or_else(|| config["credsStore"].as_str())
        .filter(|h| !h.is_empty())
        .map(|h| format!("docker-credential-{h}"))
}

fn run_helper(program: &str, action: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(|e| format!("{program}: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("{program}: {e}"))?;
    if !output.status.success() {
        let message =
            String::from_utf8_lossy(&output.stdout).trim().to_owned() + String::from_utf8_lossy(&output.stderr).trim();
        return Err(format!("{program} {action}: {message}"));
    }
    Ok(output.stdout)
}

/// The credentials stored for a registry, if any.
pub fn lookup(registry: &str) -> Result<Option<Credentials>, String> {
    let config = read_config()?;
    let key = config_key(registry);
    if let Some(program) = helper(&config, &key) {
        return match run_helper(&program, "get", key.as_bytes()) {
            Ok(out) => {
                let value: Value = serde_json::from_slice(&out).map_err(|e| format!("{program} get: {e}"))?;
                Ok(Some(Credentials {
                    username: value["Username"].as_str().unwrap_or_default().to_owned(),
                    secret: value["Secret"].as_str().unwrap_or_default().to_owned(),
                }))
            }
            // Helpers answer "credentials not found in native keychain" when they have none.
            Err(e) if e.contains("not found") => Ok(None),
            Err(e) => Err(e),
        };
    }
    let Some(encoded) = config["auths"][&key]["auth"].as_str() else { return Ok(None) };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("{}: auths.{key}.auth is not base64: {e}", config_path().display()))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (username, secret) = raw
        .split_once(':')
        .ok_or_else(|| format!("{}: auths.{key}.auth is not user:password", config_path().display()))?;
    Ok(Some(Credentials { username: username.to_owned(), secret: secret.to_owned() }))
}

/// `login`: stores credentials in the helper the config names, else in `auths`.
pub fn store(registry: &str, credentials: &Credentials) -> Result<(), String> {
    let mut config = read_config()?;
    let key = config_key(registry);
    if let Some(program) = helper(&config, &key) {
        let input = json!({"ServerURL": key, "Username": credentials.username, "Secret": credentials.secret});
        run_helper(&program, "store", input.to_string().as_bytes())?;
        // The helper holds the secret; `auths` only records that there is an entry.
        config["auths"][&key] = json!({});
    } else {
        let raw = format!("{}:{}", credentials.username, credentials.secret);
        config["auths"][&key] = json!({"auth": base64::engine::general_purpose::STANDARD.encode(raw)});
    }
    write_config(&config)
}

/// `logout`: removes the registry's entry (and asks the helper to erase its copy). Returns
/// false when there was nothing to remove.
pub fn erase(registry: &str) -> Result<bool, String> {
    let mut config = read_config()?;
    let key = config_key(registry);
    let mut found = false;
    if let Some(program) = helper(&config, &key) {
        found |= run_helper(&program, "erase", key.as_bytes()).is_ok();
    }
    if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
        found |= auths.remove(&key).is_some();
    }
    if found {
        write_config(&config)?;
    }
    Ok(found)
}
