//! Named and anonymous volumes: `ROOT/volumes/<name>/_data`.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_oci::time::Timestamp;

use crate::containers::Status;
use crate::error::{EngineError, IoContext, Result};
use crate::Engine;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub scope: String,
    /// Made for one container (an image VOLUME or `-v /path`).
    #[serde(default, skip_serializing)]
    pub anonymous: bool,
}

/// Docker's rule for volume names.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.store.root().join("volumes")
    }

    /// Creates a volume (a random 64-hex name when `name` is None); an existing one is returned.
    pub fn create_volume(&self, name: Option<&str>, anonymous: bool) -> Result<(Volume, bool)> {
        let name = match name {
            Some(name) if !valid_name(name) => {
                return Err(EngineError::InvalidArgument(format!(
                    "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                )))
            }
            Some(name) => name.to_owned(),
            None => crate::run::random_hex(32),
        };
        let dir = self.volumes_dir().join(&name);
        let meta = dir.join("volume.json");
        if let Ok(data) = fs::read(&meta) {
            if let Ok(volume) = serde_json::from_slice(&data) {
                return Ok((volume, false));
            }
        }
        let data_dir = dir.join("_data");
        fs::create_dir_all(&data_dir).at(&data_dir)?;
        let volume = Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: data_dir.display().to_string(),
            created_at: Timestamp::now().to_rfc3339(),
            labels: Default::default(),
            scope: "local".into(),
            anonymous,
        };
        let mut stored = serde_json::to_value(&volume).map_err(|e| EngineError::Archive(e.to_string()))?;
        stored["Anonymous"] = serde_json::Value::Bool(anonymous);
        fs::write(&meta, stored.to_string()).at(&meta)?;
        self.emit_volume("create", &name);
        Ok((volume, true))
    }

    pub fn list_volumes(&self) -> Result<Vec<Volume>> {
        let dir = self.volumes_dir();
        let mut volumes = Vec::new();
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(volumes) };
        for entry in entries {
            let entry = entry.at(&dir)?;
            let meta = entry.path().join("volume.json");
            let Ok(data) = fs::read(&meta) else { continue };
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&data) {
                if let Ok(mut volume) = serde_json::from_value::<Volume>(value.clone()) {
                    volume.anonymous = value["Anonymous"].as_bool().unwrap_or(false);
                    volumes.push(volume);
                }
            }
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    pub fn inspect_volume(&self, name: &str) -> Result<Volume> {
        self.list_volumes()?
            .into_iter()
            .find(|v| v.name == name)
            .ok_or_else(|| EngineError::VolumeNotFound(name.to_owned()))
    }

    fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .list_containers()?
            .into_iter()
            .filter(|c| c.mounts.iter().any(|m| m.kind == "volume" && m.name == name))
            .map(|c| c.id)
            .collect())
    }

    /// `docker volume rm [-f]`: refused while a container uses it (unless `force`).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        self.inspect_volume(name)?;
        let users = self.volume_users(name)?;
        if !users.is_empty() && !force {
            return Err(EngineError::Conflict(format!("remove {name}: volume is in use - [{}]", users.join(", "))));
        }
        let dir = self.volumes_dir().join(name);
        fs::remove_dir_all(&dir).at(&dir)?;
        self.emit_volume("destroy", name);
        Ok(())
    }

    /// `docker volume prune`: anonymous volumes no container uses (all unused with `all`).
    pub fn prune_volumes(&self, all: bool) -> Result<Vec<String>> {
        let containers = self.list_containers()?;
        let mut removed = Vec::new();
        for volume in self.list_volumes()? {
            let used = containers.iter().any(|c| {
                c.mounts.iter().any(|m| m.kind == "volume" && m.name == volume.name) && c.state.status != Status::Dead
            });
            if !used && (all || volume.anonymous) {
                let dir = self.volumes_dir().join(&volume.name);
                fs::remove_dir_all(&dir).at(&dir)?;
                self.emit_volume("destroy", &volume.name);
                removed.push(volume.name);
            }
        }
        Ok(removed)
    }
}
