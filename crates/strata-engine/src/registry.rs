//! `pull` and `push` through the distribution client: manifests and indexes (the host's
//! platform, `--platform`, `--all-platforms`), config and layer blobs verified while they
//! stream into the content store, layers downloaded and unpacked side by side, interrupted
//! downloads resumed, `RepoDigests` recorded; pushes gzip uncompressed layers; manifests and
//! referrers read from a registry.

use std::io::Read;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;

use strata_dockerfile::vars::Platform;
use strata_oci::reference::{self, Reference};
use strata_oci::spec::{ImageConfig, Index, Manifest};
use strata_oci::{media_types, Digest};
use strata_registry::{auth, Client, Endpoint, RegistryError};
pub use strata_registry::{
    auth::{config_key, Credentials},
    ReferrersSource,
};
use strata_store::LayerRecord;

use crate::error::{EngineError, Result};
use crate::import::record_image;
use crate::snapshots::Onto;
use crate::{tag_key, Engine};

/// What `pull` reports as it goes (Docker's lines are made from these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// `latest: Pulling from library/busybox`
    Start {
        tag: String,
        repository: String,
    },
    /// A layer was already in the store.
    Exists(Digest),
    Downloaded(Digest),
    Unpacked(Digest),
    /// A mirror failed; the next source is tried.
    MirrorFailed {
        mirror: String,
        error: String,
    },
    /// Bytes of a layer received so far (reported every few hundred KiB).
    Progress {
        digest: Digest,
        done: u64,
        total: u64,
    },
}

/// Counts what is read and reports it now and then.
struct Counted<'a, R> {
    inner: R,
    digest: &'a Digest,
    total: u64,
    done: u64,
    reported: u64,
    events: &'a (dyn Fn(PullEvent) + Sync),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.done - self.reported >= 256 << 10 || (n == 0 && self.done != self.reported) {
            self.reported = self.done;
            (self.events)(PullEvent::Progress { digest: self.digest.clone(), done: self.done, total: self.total });
        }
        Ok(n)
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    /// `os/arch[/variant]`; default the host's.
    pub platform: Option<String>,
    /// Layers downloaded at once.
    pub parallel: usize,
    /// Registries spoken to without checking certificates (default: [`insecure_registries`],
    /// the environment's and the registries file's).
    pub insecure: Vec<String>,
    /// `--tls-verify`: `Some(true)` checks every certificate, `Some(false)` none; `None` is
    /// Docker's rule (loopback and insecure registries unchecked, with a plain-HTTP fallback).
    pub tls_verify: Option<bool>,
    /// Every platform of an index: their blobs are stored (not unpacked) and the index is
    /// kept with the image (`save --all-platforms`, `push`).
    pub all_platforms: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        let config = RegistriesConfig::load();
        PullOptions {
            platform: None,
            parallel: pull_parallel(&config),
            insecure: insecure_registries_in(&config),
            tls_verify: None,
            all_platforms: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PullReport {
    pub id: Digest,
    /// The digest the registry names the pulled manifest (or index) by.
    pub digest: Digest,
    /// The reference as pulled (`docker.io/library/busybox:latest`).
    pub reference: Reference,
    pub downloaded: usize,
    /// The image already was in the store under that name.
    pub up_to_date: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushEvent {
    /// `The push refers to repository [localhost:5000/app]`
    Start(String),
    Exists(Digest),
    Mounted(Digest),
    Pushed(Digest),
    /// Bytes of a blob sent so far.
    Progress {
        digest: Digest,
        done: u64,
        total: u64,
    },
}

/// How `push` sends layers that are stored uncompressed (built and imported ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushCompression {
    /// gzip, as `docker push` does (default).
    #[default]
    Gzip,
    /// As stored: bigger uploads, no compressing (a registry next door).
    None,
}

impl std::str::FromStr for PushCompression {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" => Ok(PushCompression::Gzip),
            "none" | "uncompressed" => Ok(PushCompression::None),
            other => Err(EngineError::InvalidArgument(format!("unknown compression {other:?} (gzip or none)"))),
        }
    }
}

/// gzip level for pushed layers: libdeflate's fastest (debian's 121 MB layer: 0.56 s of one
/// core for 49 MB; level 6 takes twice that for 46 MB).
const GZIP_LEVEL: u32 = 1;

#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Registries spoken to without checking certificates (see [`PullOptions::insecure`]).
    pub insecure: Vec<String>,
    pub tls_verify: Option<bool>,
    pub compression: PushCompression,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions { insecure: insecure_registries(), tls_verify: None, compression: PushCompression::default() }
    }
}

#[derive(Debug, Clone)]
pub struct PushReport {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
}

/// The registries file: `STRATA_REGISTRIES_CONF`, else `/etc/strata/registries.json`, in
/// Docker's daemon.json words: `{"insecure-registries": [...], "registry-mirrors": [...]}` —
/// mirrors as a list serve docker.io (as Docker), as an object any registry
/// (`{"registry-mirrors": {"quay.io": ["127.0.0.1:5001"]}}`).
#[derive(Debug, Default, Clone)]
pub struct RegistriesConfig {
    pub insecure: Vec<String>,
    pub mirrors: std::collections::BTreeMap<String, Vec<String>>,
    pub max_concurrent_downloads: Option<usize>,
    /// `bip`: the default bridge's gateway address and prefix (`172.26.0.1/16`).
    pub bip: Option<String>,
    /// `default-address-pools`: `[{"base": "10.10.0.0/16", "size": 24}]`.
    pub address_pools: Vec<(String, u8)>,
}

impl RegistriesConfig {
    pub fn path() -> std::path::PathBuf {
        std::env::var_os("STRATA_REGISTRIES_CONF").map_or_else(|| "/etc/strata/registries.json".into(), Into::into)
    }

    /// The file's settings (none when it is missing or unreadable; a bad file is reported).
    pub fn load() -> RegistriesConfig {
        let path = Self::path();
        let Ok(data) = std::fs::read(&path) else { return RegistriesConfig::default() };
        let value: serde_json::Value = match serde_json::from_slice(&data) {
            Ok(value) => value,
            Err(e) => {
                eprintln!("WARNING: {} is not valid JSON ({e}); ignored", path.display());
                return RegistriesConfig::default();
            }
        };
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str()).map(strip_scheme).collect()).unwrap_or_default()
        };
        let mut config = RegistriesConfig {
            insecure: strings(&value["insecure-registries"]),
            max_concurrent_downloads: value["max-concurrent-downloads"].as_u64().map(|n| n as usize),
            bip: value["bip"].as_str().map(str::to_owned),
            address_pools: value["default-address-pools"]
                .as_array()
                .map(|pools| {
                    pools
                        .iter()
                        .filter_map(|p| Some((p["base"].as_str()?.to_owned(), p["size"].as_u64()? as u8)))
                        .collect()
                })
                .unwrap_or_default(),
            ..Default::default()
        };
        match &value["registry-mirrors"] {
            serde_json::Value::Array(_) => {
                config.mirrors.insert("docker.io".to_owned(), strings(&value["registry-mirrors"]));
            }
            serde_json::Value::Object(map) => {
                for (registry, mirrors) in map {
                    config.mirrors.insert(registry.clone(), strings(mirrors));
                }
            }
            _ => {}
        }
        config
    }

    pub fn mirrors_of(&self, registry: &str) -> Vec<String> {
        self.mirrors.get(registry).cloned().unwrap_or_default()
    }
}

/// The registry a `login`/`logout` argument (or the Engine API's `serveraddress`) names:
/// `https://host/...` → `host`; none, or Docker Hub's index/registry hosts → `docker.io`.
pub fn registry_host(server: Option<&str>) -> String {
    let Some(server) = server.filter(|s| !s.is_empty()) else { return "docker.io".to_owned() };
    let host = server.split("://").last().unwrap_or(server);
    let host = host.split('/').next().unwrap_or(host);
    if host == "index.docker.io" || host == "registry-1.docker.io" {
        "docker.io".to_owned()
    } else {
        host.to_owned()
    }
}

/// `docker login`'s check: the credentials are good for `registry` (its ping answers them),
/// nothing stored.
pub fn check_login(registry: &str, credentials: &Credentials, tls_verify: Option<bool>) -> Result<()> {
    let endpoint = Endpoint::for_registry(registry, &insecure_registries(), tls_verify);
    Client::new(endpoint, Some(credentials.clone()))
        .ping()
        .map_err(|e| EngineError::InvalidArgument(format!("login to {registry} failed: {e}")))
}

/// `docker login`: checked against the registry, then stored where pulls and pushes find them.
pub fn login(registry: &str, credentials: &Credentials, tls_verify: Option<bool>) -> Result<()> {
    check_login(registry, credentials, tls_verify)?;
    auth::store(registry, credentials).map_err(EngineError::Registry)
}

/// `docker logout`: whether there were credentials to remove.
pub fn logout(registry: &str) -> Result<bool> {
    auth::erase(registry).map_err(EngineError::Registry)
}

/// `https://mirror.example/` → `mirror.example`.
fn strip_scheme(url: &str) -> String {
    let rest = url.split("://").last().unwrap_or(url);
    rest.trim_end_matches('/').to_owned()
}

/// `STRATA_INSECURE_REGISTRIES` (comma-separated) and the registries file's
/// `insecure-registries`: spoken to without checking certificates, with a plain-HTTP fallback.
pub fn insecure_registries() -> Vec<String> {
    insecure_registries_in(&RegistriesConfig::load())
}

pub(crate) fn insecure_registries_in(config: &RegistriesConfig) -> Vec<String> {
    let mut insecure: Vec<String> = std::env::var("STRATA_INSECURE_REGISTRIES")
        .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    insecure.extend(config.insecure.iter().cloned());
    insecure
}

/// Layers pulled at once: `STRATA_PULL_PARALLEL`, else the registries file's
/// `max-concurrent-downloads` (Docker's daemon.json key), else 3 (Docker's default).
fn pull_parallel(config: &RegistriesConfig) -> usize {
    std::env::var("STRATA_PULL_PARALLEL")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .or(config.max_concurrent_downloads)
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// Blobs larger than this are pushed in chunks of this size (`STRATA_PUSH_CHUNK`, bytes with
/// k/m/g; default 64 MiB).
pub fn push_chunk() -> u64 {
    std::env::var("STRATA_PUSH_CHUNK")
        .ok()
        .and_then(|v| crate::run::parse_bytes(&v).ok())
        .filter(|n| *n > 0)
        .map_or(64 << 20, |n| n as u64)
}

fn registry_error(reference: &Reference, e: RegistryError) -> EngineError {
    match e.code() {
        Some("MANIFEST_UNKNOWN") | Some("NAME_UNKNOWN") => EngineError::NotFound(format!(
            "manifest for {} not found: manifest unknown: manifest unknown",
            reference.familiar_string()
        )),
        _ => match e {
            RegistryError::Unauthorized(message) => EngineError::InvalidArgument(message),
            other => EngineError::Registry(other.to_string()),
        },
    }
}

/// Commits a downloaded blob; a wrong digest is told as a download's fault (and the kept bytes
/// are gone: the next pull starts that blob over).
fn commit_download(writer: strata_store::BlobWriter, digest: &Digest, size: u64) -> Result<()> {
    match writer.commit(Some(digest), Some(size)) {
        Ok(_) => Ok(()),
        Err(strata_store::StoreError::DigestMismatch { expected, actual }) => {
            Err(EngineError::Registry(strata_registry::blob_digest_error(&expected, &actual.to_string())))
        }
        Err(e) => Err(e.into()),
    }
}

/// Where a push streams what it compresses.
struct StreamTo<'a> {
    client: &'a Client,
    repository: &'a str,
    events: &'a dyn Fn(PushEvent),
}

/// Writes to a blob and hands a copy of every write to a channel, until nobody listens there.
struct Tee {
    writer: strata_store::BlobWriter,
    sender: Option<std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>>,
}

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write_all(buf)?;
        if let Some(sender) = &self.sender {
            if sender.send(Ok(buf.to_vec())).is_err() {
                self.sender = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// NAME[:TAG|@DIGEST] as `pull` and `push` read it (`:latest` when neither is given).
fn parse_pull_reference(name: &str) -> Result<Reference> {
    let parsed = reference::parse_normalized_named(name)
        .map_err(|e| EngineError::InvalidArgument(format!("invalid reference format: {e}")))?;
    Ok(if parsed.tag().is_none() && parsed.digest().is_none() { parsed.with_default_tag() } else { parsed })
}

/// What a manifest request names: the reference's digest, else its tag (`latest` by default).
fn manifest_reference(reference: &Reference) -> String {
    reference.digest().map_or_else(|| reference.tag().unwrap_or("latest").to_owned(), ToString::to_string)
}

/// A client for a registry (as references name it), with its stored credentials.
fn client_for(registry: &str, insecure: &[String], tls_verify: Option<bool>) -> Result<Client> {
    let endpoint = Endpoint::for_registry(registry, insecure, tls_verify);
    let credentials = auth::lookup(registry).map_err(EngineError::InvalidArgument)?;
    Ok(Client::new(endpoint, credentials))
}

impl Engine {
    /// One layer in one pass: downloaded, verified, stored and unpacked into a new active
    /// snapshot (its key is returned with the layer's uncompressed size); the blob is
    /// committed only when its digest checks.
    fn stream_layer(
        &self,
        client: &Client,
        repository: &str,
        layer: &strata_oci::spec::Descriptor,
        diff_id: &Digest,
        (onto, alongside): (Onto<'_>, usize),
        events: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<(String, u64)> {
        // The blob writer hashes what it stores: the body is not hashed twice. What an
        // interrupted pull got is kept and only the rest is asked for (a `Range` request); the
        // unpacker reads the kept bytes first.
        let (mut writer, have) = self.store.content().resumable_writer(&layer.digest, layer.size)?;
        let (blob, start) = client
            .get_blob_from(repository, &layer.digest, layer.size, have)
            .map_err(|e| EngineError::Registry(e.to_string()))?;
        if start != have {
            writer.restart()?;
        }
        let kept = writer.reader(start)?;
        let what = format!("layer {}", layer.digest);
        // A receiving thread (socket → blob file, hashed by the blob writer) hands the bytes
        // over; the unpacker decompresses (on a thread of its own) and writes files meanwhile.
        std::thread::scope(|scope| {
            // Created in here: if the unpacker gives up early, the receiving end is dropped
            // before the scope waits for the thread, so its sends fail instead of blocking.
            let (sender, receiver) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
            let received = scope.spawn(move || -> std::result::Result<strata_store::BlobWriter, String> {
                let mut counted = Counted {
                    inner: blob,
                    digest: &layer.digest,
                    total: layer.size,
                    done: start,
                    reported: start,
                    events,
                };
                let failed = |e: std::io::Error| {
                    let _ = sender.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    e.to_string()
                };
                let mut kept = kept;
                strata_layer::Chunks::send_all(&mut kept, &sender).map_err(|e| e.to_string())?;
                loop {
                    let chunk = match strata_layer::Chunks::read_chunk(&mut counted) {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => return Ok(writer),
                        Err(e) => return Err(failed(e)),
                    };
                    if let Err(e) = std::io::Write::write_all(&mut writer, &chunk) {
                        return Err(failed(e));
                    }
                    // The unpacker may have stopped (it failed): the rest is still read for
                    // the digest.
                    let _ = sender.send(Ok(chunk));
                }
            });
            let mut input = strata_layer::Chunks::new(receiver);
            let mut received = Some(received);
            self.extract_layer(&mut input, &what, diff_id, onto, alongside, &mut |rest| {
                // The unpacker stops at the tar's end: the rest still counts for the digest.
                std::io::copy(rest, &mut std::io::sink()).map_err(|e| EngineError::Registry(e.to_string()))?;
                let handle = received.take().ok_or_else(|| EngineError::Registry(format!("{what}: verified twice")))?;
                let blob_writer = handle
                    .join()
                    .map_err(|_| EngineError::Registry(format!("{what}: the receiving thread panicked")))?
                    .map_err(EngineError::Registry)?;
                commit_download(blob_writer, &layer.digest, layer.size)
            })
        })
    }

    /// `docker pull NAME[:TAG|@DIGEST]`.
    pub fn pull(&self, name: &str, options: &PullOptions, events: &(dyn Fn(PullEvent) + Sync)) -> Result<PullReport> {
        let report = self.pull_any(name, options, events)?;
        self.emit_image("pull", &report.reference.familiar_string(), &report.reference.familiar_name());
        Ok(report)
    }

    fn pull_any(&self, name: &str, options: &PullOptions, events: &(dyn Fn(PullEvent) + Sync)) -> Result<PullReport> {
        let reference = parse_pull_reference(name)?;
        let repository = reference.path().to_owned();
        let wanted = manifest_reference(&reference);
        events(PullEvent::Start { tag: wanted.clone(), repository: repository.clone() });
        // Mirrors first, in order, then the registry itself; a mirror that fails in any way is
        // passed over.
        // (`options.insecure` already holds the file's insecure registries: `insecure_registries`.)
        for mirror in RegistriesConfig::load().mirrors_of(reference.domain()) {
            let pulled = client_for(&mirror, &options.insecure, options.tls_verify)
                .and_then(|client| self.pull_with(&client, &reference, &repository, &wanted, options, events));
            match pulled {
                Ok(report) => return Ok(report),
                Err(e) => events(PullEvent::MirrorFailed { mirror: mirror.clone(), error: e.to_string() }),
            }
        }
        let client = client_for(reference.domain(), &options.insecure, options.tls_verify)?;
        self.pull_with(&client, &reference, &repository, &wanted, options, events)
    }

    fn pull_with(
        &self,
        client: &Client,
        reference: &Reference,
        repository: &str,
        wanted: &str,
        options: &PullOptions,
        events: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<PullReport> {
        let reference = reference.clone();
        let repository = repository.to_owned();
        let top = client.get_manifest(&repository, wanted).map_err(|e| registry_error(&reference, e))?;
        // An index (or manifest list): the entry for the platform asked for.
        let index: Option<Index> =
            if top.media_type == media_types::OCI_INDEX || top.media_type == media_types::DOCKER_MANIFEST_LIST {
                Some(
                    serde_json::from_slice(&top.bytes)
                        .map_err(|e| EngineError::Archive(format!("index {}: {e}", top.digest)))?,
                )
            } else {
                None
            };
        let manifest = match &index {
            Some(index) => {
                // `--platform` as FROM --platform reads it (`amd64` is linux/amd64).
                let wanted = match &options.platform {
                    Some(p) => Platform::parse(p).map_err(EngineError::InvalidArgument)?,
                    None => Platform::host(),
                };
                let (os, arch) = (&wanted.os, &wanted.architecture);
                let entry = index
                    .manifests
                    .iter()
                    .find(|d| d.platform.as_ref().is_some_and(|p| &p.os == os && &p.architecture == arch))
                    .ok_or_else(|| {
                        EngineError::NotFound(format!(
                            "no matching manifest for {os}/{arch} in the manifest list entries of {}",
                            reference.familiar_string()
                        ))
                    })?;
                client
                    .get_manifest(&repository, &entry.digest.to_string())
                    .map_err(|e| registry_error(&reference, e))?
            }
            None => top.clone(),
        };
        let parsed: Manifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| EngineError::Archive(format!("manifest {}: {e}", manifest.digest)))?;
        if parsed.config.size > crate::MAX_JSON_BLOB {
            return Err(EngineError::Archive(format!("config {} is larger than 4 MiB", parsed.config.digest)));
        }
        let repo_digest = format!("{}@{}", reference.name(), top.digest);

        // Already here under that name, with that manifest: nothing to do.
        let db = self.store.read_db()?;
        let id = parsed.config.digest.clone();
        if let Some(image) = db.images.get(id.hex()) {
            let tagged = reference.tag().is_none_or(|_| db.tags.get(&tag_key(&reference)) == Some(&id));
            let platforms = !options.all_platforms || index.is_none() || image.index.is_some();
            if tagged && platforms && image.repo_digests.contains(&repo_digest) {
                return Ok(PullReport { id, digest: top.digest, reference, downloaded: 0, up_to_date: true });
            }
        }
        drop(db);

        // Blobs go to the content store verified; the ingest guard keeps a GC from taking them
        // before the image record names them.
        let _ingest = self.store.ingest_guard()?;
        let content = self.store.content();
        self.fetch_blob(client, &reference, &parsed.config.digest, parsed.config.size, events)?;
        let config_bytes = content.read_blob(&parsed.config.digest, crate::MAX_JSON_BLOB)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| EngineError::Archive(format!("config {}: {e}", parsed.config.digest)))?;
        if config.rootfs.diff_ids.len() != parsed.layers.len() {
            return Err(EngineError::Archive(format!(
                "manifest {} lists {} layers, its config {}",
                manifest.digest,
                parsed.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let (downloaded, measured) =
            self.pull_layers(client, &reference, &parsed.layers, &config.rootfs.diff_ids, options.parallel, events)?;
        // `--all-platforms`: every other entry of the index too, its blobs into the store (not
        // unpacked), the index recorded with the image.
        let all_platforms = match (&index, options.all_platforms) {
            (Some(index), true) => {
                let blobs = self.pull_index_blobs(client, &reference, index, &manifest, options.parallel)?;
                content.put(&top.bytes)?;
                Some(blobs)
            }
            _ => None,
        };
        let manifest_digest = content.put(&manifest.bytes)?;
        let descriptor =
            strata_oci::spec::Descriptor::new(&manifest.media_type, manifest_digest, manifest.bytes.len() as u64);
        let records: Vec<(Digest, LayerRecord)> = parsed
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .enumerate()
            .map(|(index, (layer, diff_id))| {
                (
                    layer.digest.clone(),
                    LayerRecord {
                        diff_id: diff_id.clone(),
                        media_type: layer.media_type.clone(),
                        size: layer.size,
                        // As unpacked; a layer unpacked before keeps its record (below).
                        uncompressed_size: measured.get(index).copied().flatten().unwrap_or(layer.size),
                        snapshot: None,
                    },
                )
            })
            .collect();
        let tags: Vec<Reference> = reference.tag().map(|_| vec![reference.clone()]).unwrap_or_default();
        self.store.update(|db| {
            record_image(db, &id, descriptor, records, config.created.clone(), &tags);
            if let Some(image) = db.images.get_mut(id.hex()) {
                if !image.repo_digests.contains(&repo_digest) {
                    image.repo_digests.push(repo_digest.clone());
                }
                if let Some(blobs) = &all_platforms {
                    image.index = Some(strata_oci::spec::Descriptor::new(
                        &top.media_type,
                        top.digest.clone(),
                        top.bytes.len() as u64,
                    ));
                    image.index_blobs = blobs.clone();
                }
            }
            Ok::<_, strata_store::StoreError>(())
        })?;
        Ok(PullReport { id, digest: top.digest, reference, downloaded, up_to_date: false })
    }

    /// The layers of a pull: each worker takes the lowest layer nobody has taken and does it
    /// in one streaming pass (download → verify → decompress → unpack, the blob stored on the
    /// way), so layers download and unpack side by side. On overlay a layer is unpacked into a
    /// snapshot of its own and committed onto its parent once that is committed; a layer
    /// hard-linking a lower layer's file waits for its parent and is unpacked again from its
    /// stored blob. Returns how many blobs were downloaded and the uncompressed sizes the
    /// unpacks measured (`None`: unpacked before).
    fn pull_layers(
        &self,
        client: &Client,
        reference: &Reference,
        layers: &[strata_oci::spec::Descriptor],
        diff_ids: &[Digest],
        parallel: usize,
        events: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<(usize, Vec<Option<u64>>)> {
        let content = self.store.content();
        let repository = reference.path();
        let fetch = |digest: &Digest, size: u64| self.fetch_blob(client, reference, digest, size, events);
        let chains: Vec<String> = crate::snapshots::chain_ids(diff_ids).iter().map(ToString::to_string).collect();
        let snapshotter = self.snapshotter();
        let alone = snapshotter.unpacks_independently();
        let committed: Vec<AtomicBool> =
            chains.iter().map(|c| AtomicBool::new(snapshotter.stat(c).ok().flatten().is_some())).collect();
        for (layer, done) in layers.iter().zip(&committed) {
            if done.load(SeqCst) || content.exists(&layer.digest) {
                events(PullEvent::Exists(layer.digest.clone()));
            }
        }
        let failure: Mutex<Option<EngineError>> = Mutex::new(None);
        let failed = || failure.lock().map(|f| f.is_some()).unwrap_or(true);
        let fail = |e: EngineError| {
            if let Ok(mut f) = failure.lock() {
                f.get_or_insert(e);
            }
        };
        // Waits for layer `i`'s snapshot; an error when the pull failed meanwhile.
        let committed_below = |i: usize| -> Result<Option<&str>> {
            let Some(below) = i.checked_sub(1) else { return Ok(None) };
            while !committed[below].load(SeqCst) {
                if failed() {
                    return Err(EngineError::Registry("cancelled".to_owned()));
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Ok(Some(chains[below].as_str()))
        };
        let downloaded = AtomicUsize::new(0);
        let next = AtomicUsize::new(0);
        // Uncompressed sizes, as the unpacks measured them (for `images`).
        let sizes: Mutex<Vec<Option<u64>>> = Mutex::new(vec![None; layers.len()]);
        let workers = parallel.max(1).min(layers.len().max(1));
        let from_blob = |i: usize, onto: Onto<'_>| -> Result<(String, u64)> {
            let mut file = content.open_blob(&layers[i].digest)?;
            let what = format!("layer {}", layers[i].digest);
            self.extract_layer(&mut file, &what, &diff_ids[i], onto, workers, &mut |_| Ok(()))
        };
        let one = |i: usize| -> Result<Option<u64>> {
            let layer = &layers[i];
            if committed[i].load(SeqCst) {
                // Unpacked already; the blob is still wanted (push and save read it).
                if !content.exists(&layer.digest) {
                    fetch(&layer.digest, layer.size)?;
                    downloaded.fetch_add(1, SeqCst);
                    events(PullEvent::Downloaded(layer.digest.clone()));
                }
                return Ok(None);
            }
            let onto = if alone { Onto::Later } else { Onto::Parent(committed_below(i)?) };
            let extracted = if content.exists(&layer.digest) {
                from_blob(i, onto)
            } else {
                let streamed = self.stream_layer(client, repository, layer, &diff_ids[i], (onto, workers), events);
                if streamed.is_ok() || content.exists(&layer.digest) {
                    downloaded.fetch_add(1, SeqCst);
                    events(PullEvent::Downloaded(layer.digest.clone()));
                }
                streamed
            };
            let (key, size, onto) = match extracted {
                Ok((key, size)) => (key, size, onto),
                // Its blob is stored (the digest checked); unpacked again on its parent.
                Err(EngineError::Layer(strata_layer::ApplyError::NeedsLowers(_))) => {
                    let onto = Onto::Parent(committed_below(i)?);
                    let (key, size) = from_blob(i, onto)?;
                    (key, size, onto)
                }
                Err(e) => return Err(e),
            };
            let onto = match onto {
                Onto::Later => match committed_below(i) {
                    Ok(parent) => Some(parent),
                    Err(e) => {
                        let _ = snapshotter.remove(&key);
                        return Err(e);
                    }
                },
                Onto::Parent(_) => None,
            };
            self.commit_layer(&chains[i], &key, onto)?;
            Ok(Some(size))
        };
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    if failed() {
                        return;
                    }
                    let i = next.fetch_add(1, SeqCst);
                    if i >= layers.len() {
                        return;
                    }
                    match one(i) {
                        Ok(size) => {
                            if let (Some(size), Ok(mut sizes)) = (size, sizes.lock()) {
                                sizes[i] = Some(size);
                            }
                            committed[i].store(true, SeqCst);
                            events(PullEvent::Unpacked(layers[i].digest.clone()));
                        }
                        Err(e) => {
                            fail(e);
                            return;
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok((downloaded.into_inner(), sizes.into_inner().unwrap_or_default()))
    }

    /// Downloads a blob into the content store (verified) unless it is there already.
    fn fetch_blob(
        &self,
        client: &Client,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        events: &(dyn Fn(PullEvent) + Sync),
    ) -> Result<()> {
        let content = self.store.content();
        if content.exists(digest) {
            return Ok(());
        }
        // As a streamed layer: what an interrupted pull got is kept, the rest asked for.
        let (mut writer, have) = content.resumable_writer(digest, size)?;
        let (blob, start) =
            client.get_blob_from(reference.path(), digest, size, have).map_err(|e| registry_error(reference, e))?;
        if start != have {
            writer.restart()?;
        }
        let mut blob = Counted { inner: blob, digest, total: size, done: start, reported: start, events };
        std::io::copy(&mut blob, &mut writer).map_err(|e| EngineError::Registry(e.to_string()))?;
        commit_download(writer, digest, size)
    }

    /// Stores the index `top` names and every blob of each of its entries (manifests, configs,
    /// layers; `parallel` downloads at once); returns the digests, each once.
    fn pull_index_blobs(
        &self,
        client: &Client,
        reference: &Reference,
        index: &Index,
        chosen: &strata_registry::FetchedManifest,
        parallel: usize,
    ) -> Result<Vec<Digest>> {
        let content = self.store.content();
        let repository = reference.path();
        let mut blobs: Vec<Digest> = Vec::new();
        let mut wanted: Vec<(Digest, u64)> = Vec::new();
        for entry in &index.manifests {
            let fetched = if entry.digest == chosen.digest {
                chosen.clone()
            } else {
                client.get_manifest(repository, &entry.digest.to_string()).map_err(|e| registry_error(reference, e))?
            };
            content.put(&fetched.bytes)?;
            blobs.push(entry.digest.clone());
            // Image manifests and artifacts alike name a config and layers; a nested index is
            // kept as a blob only.
            if let Ok(manifest) = serde_json::from_slice::<Manifest>(&fetched.bytes) {
                for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                    if !blobs.contains(&blob.digest) {
                        blobs.push(blob.digest.clone());
                        wanted.push((blob.digest.clone(), blob.size));
                    }
                }
            }
        }
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<EngineError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..parallel.max(1) {
                scope.spawn(|| {
                    while let Some((digest, size)) = wanted.get(next.fetch_add(1, SeqCst)) {
                        if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                            return;
                        }
                        let fetched = self.fetch_blob(client, reference, digest, *size, &|_| {});
                        if let (Err(e), Ok(mut failure)) = (fetched, failure.lock()) {
                            failure.get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(blobs)
    }

    /// The manifest as pushed: every uncompressed layer gzipped (as `docker push` sends it). A
    /// layer compressed for an earlier push is found by its diffID and not compressed again;
    /// compressing is deterministic, so after a GC took that blob the same digest comes back.
    /// A layer gzipped for the first time is uploaded as it is compressed (see
    /// [`Engine::push_gzipped`]) and its digest added to `streamed`. Returns the manifest
    /// unchanged when every layer is compressed already.
    fn gzip_manifest(
        &self,
        upload: &StreamTo<'_>,
        descriptor: &strata_oci::spec::Descriptor,
        bytes: &[u8],
        streamed: &mut Vec<Digest>,
    ) -> Result<(strata_oci::spec::Descriptor, Vec<u8>)> {
        let mut manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| EngineError::Archive(format!("manifest {}: {e}", descriptor.digest)))?;
        let content = self.store.content();
        let mut changed = false;
        for layer in &mut manifest.layers {
            let gzip_type = match layer.media_type.as_str() {
                media_types::OCI_LAYER => media_types::OCI_LAYER_GZIP,
                media_types::DOCKER_LAYER => media_types::DOCKER_LAYER_GZIP,
                _ => continue,
            };
            let db = self.store.read_db()?;
            let diff_id = db.layers.get(&layer.digest).map_or_else(|| layer.digest.clone(), |r| r.diff_id.clone());
            let earlier = db
                .layers
                .iter()
                .find(|(blob, r)| r.diff_id == diff_id && r.media_type == gzip_type && content.exists(blob))
                .map(|(blob, r)| (blob.clone(), r.size));
            drop(db);
            let (digest, size) = match earlier {
                Some(found) => found,
                None => {
                    let (digest, size, uploaded) = self.push_gzipped(upload, layer, &diff_id, gzip_type)?;
                    if uploaded {
                        streamed.push(digest.clone());
                    }
                    (digest, size)
                }
            };
            *layer = strata_oci::spec::Descriptor::new(gzip_type, digest, size);
            changed = true;
        }
        if !changed {
            return Ok((descriptor.clone(), bytes.to_vec()));
        }
        let bytes = crate::import::to_json(&manifest)?;
        let pushed = strata_oci::spec::Descriptor::new(&descriptor.media_type, Digest::of(&bytes), bytes.len() as u64);
        Ok((pushed, bytes))
    }

    /// Gzips a layer and uploads it as it is compressed (a streamed upload: the digest is known
    /// only at the end), keeping the gzip blob in the store, recorded by diffID, for the next
    /// push. When the streamed upload fails the compressing still finishes and is kept, and the
    /// blob (known now) goes the resumable way with the others. Returns the gzip blob's digest
    /// and size, and whether the streamed upload went through.
    fn push_gzipped(
        &self,
        upload: &StreamTo<'_>,
        layer: &strata_oci::spec::Descriptor,
        diff_id: &Digest,
        gzip_type: &str,
    ) -> Result<(Digest, u64, bool)> {
        let content = self.store.content();
        let mut source = std::io::BufReader::with_capacity(1 << 20, content.open_blob(&layer.digest)?);
        let writer = content.writer()?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (uploaded, compressed) = std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
            let compressing = scope.spawn(move || {
                let mut tee = Tee { writer, sender: Some(sender) };
                let size = strata_layer::compression::gzip_members(&mut source, &mut tee, cores, GZIP_LEVEL);
                if let (Err(e), Some(sender)) = (&size, &tee.sender) {
                    let _ = sender.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                }
                (tee.writer, size)
            });
            let progress =
                |done| (upload.events)(PushEvent::Progress { digest: layer.digest.clone(), done, total: layer.size });
            let uploaded = upload.client.push_blob_stream(
                upload.repository,
                Box::new(strata_layer::Chunks::new(receiver)),
                &progress,
            );
            (uploaded, compressing.join())
        });
        let (writer, size) = compressed.map_err(|_| EngineError::Archive("the gzip thread panicked".to_owned()))?;
        let size = size.map_err(|e| EngineError::Archive(format!("gzip of layer {}: {e}", layer.digest)))?;
        let expected = uploaded.as_ref().ok().map(|(digest, _)| digest);
        let digest = writer.commit(expected, Some(size))?;
        let record = LayerRecord {
            diff_id: diff_id.clone(),
            media_type: gzip_type.to_owned(),
            size,
            uncompressed_size: layer.size,
            snapshot: None,
        };
        self.store.update(|db| {
            db.layers.entry(digest.clone()).or_insert(record);
            Ok::<_, strata_store::StoreError>(())
        })?;
        let went = uploaded.is_ok();
        if went {
            (upload.events)(PushEvent::Pushed(layer.digest.clone()));
        }
        Ok((digest, size, went))
    }

    /// `docker manifest inspect NAME`: the manifest or index NAME names in its registry, as the
    /// registry sent it (verified when NAME has a digest).
    pub fn remote_manifest(
        &self,
        name: &str,
        insecure: &[String],
        tls_verify: Option<bool>,
    ) -> Result<strata_registry::FetchedManifest> {
        let reference = parse_pull_reference(name)?;
        let client = client_for(reference.domain(), insecure, tls_verify)?;
        let wanted = manifest_reference(&reference);
        client.get_manifest(reference.path(), &wanted).map_err(|e| registry_error(&reference, e))
    }

    /// The manifests (signatures, SBOMs, attestations) whose subject is NAME's manifest or
    /// index, through the registry's referrers API or the referrers tag schema; with the
    /// subject's digest.
    pub fn referrers(
        &self,
        name: &str,
        artifact_type: Option<&str>,
        insecure: &[String],
        tls_verify: Option<bool>,
    ) -> Result<(Digest, strata_registry::Referrers)> {
        let reference = parse_pull_reference(name)?;
        let client = client_for(reference.domain(), insecure, tls_verify)?;
        let subject = match reference.digest() {
            Some(digest) => digest.clone(),
            None => {
                let tag = manifest_reference(&reference);
                client.get_manifest(reference.path(), &tag).map_err(|e| registry_error(&reference, e))?.digest
            }
        };
        let found =
            client.referrers(reference.path(), &subject, artifact_type).map_err(|e| registry_error(&reference, e))?;
        Ok((subject, found))
    }

    /// `docker push NAME[:TAG]`: the image tagged NAME goes to NAME's registry; blobs the
    /// repository has are skipped, blobs from another repository of the same registry are
    /// mounted.
    pub fn push(&self, name: &str, options: &PushOptions, events: &dyn Fn(PushEvent)) -> Result<PushReport> {
        let report = self.push_tagged(name, options, events)?;
        if let Ok(reference) = parse_pull_reference(name) {
            self.emit_image("push", &reference.familiar_string(), &reference.familiar_name());
        }
        Ok(report)
    }

    fn push_tagged(&self, name: &str, options: &PushOptions, events: &dyn Fn(PushEvent)) -> Result<PushReport> {
        let reference = parse_pull_reference(name)?;
        let db = self.store.read_db()?;
        let id = db.tags.get(&tag_key(&reference)).cloned().ok_or_else(|| {
            EngineError::NotFound(format!(
                "An image does not exist locally with the tag: {}",
                reference.familiar_name()
            ))
        })?;
        let image = db
            .images
            .get(id.hex())
            .cloned()
            .ok_or_else(|| EngineError::NotFound(format!("image {id} has no record")))?;
        drop(db);
        let repository = reference.path().to_owned();
        let tag = reference.tag().unwrap_or("latest").to_owned();
        events(PushEvent::Start(reference.name()));
        let client = client_for(reference.domain(), &options.insecure, options.tls_verify)?;
        let manifest_bytes = self.store.content().read_blob(&image.manifest.digest, crate::MAX_JSON_BLOB)?;
        // A repository of the same registry the image came from can lend its blobs.
        let mount_from: Option<String> = image.repo_digests.iter().find_map(|rd| {
            let other = reference::parse_normalized_named(rd).ok()?;
            (other.domain() == reference.domain() && other.path() != repository).then(|| other.path().to_owned())
        });
        let content = self.store.content();
        // Compressed layers are stored blobs until the manifest names them: no GC meanwhile.
        let _ingest = self.store.ingest_guard()?;
        // An image pulled with --all-platforms goes with its index: every platform's blobs,
        // each manifest by digest, the index under the tag (when its blobs are all here).
        let index: Option<(strata_oci::spec::Descriptor, Index, Vec<u8>)> =
            image.index.as_ref().filter(|_| image.index_blobs.iter().all(|blob| content.exists(blob))).and_then(
                |descriptor| {
                    let bytes = content.read_blob(&descriptor.digest, crate::MAX_JSON_BLOB).ok()?;
                    let parsed: Index = serde_json::from_slice(&bytes).ok()?;
                    Some((descriptor.clone(), parsed, bytes))
                },
            );
        let mut manifests: Vec<(strata_oci::spec::Descriptor, Vec<u8>)> = Vec::new();
        // Layers uploaded while they were compressed (already in the repository).
        let mut streamed: Vec<Digest> = Vec::new();
        match &index {
            Some((_, parsed, _)) => {
                for entry in &parsed.manifests {
                    let bytes = content.read_blob(&entry.digest, crate::MAX_JSON_BLOB)?;
                    manifests.push((entry.clone(), bytes));
                }
            }
            None => {
                let (descriptor, bytes) = match options.compression {
                    PushCompression::Gzip => {
                        let upload = StreamTo { client: &client, repository: &repository, events };
                        self.gzip_manifest(&upload, &image.manifest, &manifest_bytes, &mut streamed)?
                    }
                    PushCompression::None => (image.manifest.clone(), manifest_bytes.clone()),
                };
                manifests.push((descriptor, bytes));
            }
        }
        let mut blobs: Vec<strata_oci::spec::Descriptor> = Vec::new();
        for (entry, bytes) in &manifests {
            let parsed = match serde_json::from_slice::<Manifest>(bytes) {
                Ok(parsed) => parsed,
                // An index inside the index: its manifest is pushed, nothing below it.
                Err(_) if index.is_some() => continue,
                Err(e) => return Err(EngineError::Archive(format!("manifest {}: {e}", entry.digest))),
            };
            for blob in parsed.layers.iter().chain(std::iter::once(&parsed.config)) {
                if !blobs.iter().any(|b| b.digest == blob.digest) {
                    blobs.push(blob.clone());
                }
            }
        }
        for blob in blobs.iter().filter(|b| !streamed.contains(&b.digest)) {
            if client.blob_exists(&repository, &blob.digest).map_err(|e| registry_error(&reference, e))? {
                events(PushEvent::Exists(blob.digest.clone()));
                continue;
            }
            let digest = blob.digest.clone();
            let open = |offset: u64| -> std::io::Result<Box<dyn Read + Send>> {
                let mut file = content.open_blob(&digest).map_err(|e| std::io::Error::other(e.to_string()))?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset))?;
                Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, file)))
            };
            // The upload session is kept while it runs: a push killed half-way resumes it.
            let sessions = self.store.root().join("uploads");
            let _ = std::fs::create_dir_all(&sessions);
            let session =
                sessions.join(Digest::of(format!("{}/{repository}/{digest}", reference.domain()).as_bytes()).hex());
            let upload = strata_registry::BlobUpload {
                digest: &digest,
                size: blob.size,
                mount_from: mount_from.as_deref(),
                chunk: push_chunk(),
                session: Some(&session),
                progress: &|done| events(PushEvent::Progress { digest: digest.clone(), done, total: blob.size }),
            };
            let mounted = client.push_blob(&repository, &upload, &open).map_err(|e| registry_error(&reference, e))?;
            events(if mounted { PushEvent::Mounted(digest) } else { PushEvent::Pushed(digest) });
        }
        let media_type_of = |descriptor: &strata_oci::spec::Descriptor| {
            if descriptor.media_type.is_empty() {
                media_types::OCI_MANIFEST.to_owned()
            } else {
                descriptor.media_type.clone()
            }
        };
        let (digest, size) = match &index {
            Some((descriptor, _, bytes)) => {
                for (entry, bytes) in &manifests {
                    client
                        .put_manifest(&repository, &entry.digest.to_string(), &media_type_of(entry), bytes)
                        .map_err(|e| registry_error(&reference, e))?;
                }
                let digest = client
                    .put_manifest(&repository, &tag, &media_type_of(descriptor), bytes)
                    .map_err(|e| registry_error(&reference, e))?;
                (digest, bytes.len() as u64)
            }
            None => {
                let (descriptor, bytes) = &manifests[0];
                let digest = client
                    .put_manifest(&repository, &tag, &media_type_of(descriptor), bytes)
                    .map_err(|e| registry_error(&reference, e))?;
                (digest, bytes.len() as u64)
            }
        };
        let repo_digest = format!("{}@{digest}", reference.name());
        self.store.update(|db| {
            if let Some(record) = db.images.get_mut(id.hex()) {
                if !record.repo_digests.contains(&repo_digest) {
                    record.repo_digests.push(repo_digest.clone());
                }
            }
            Ok::<_, strata_store::StoreError>(())
        })?;
        Ok(PushReport { tag, digest, size })
    }
}
