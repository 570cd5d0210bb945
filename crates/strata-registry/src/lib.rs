//! The OCI distribution client: which host a reference lives on (as Docker names them), auth
//! (anonymous, basic, bearer tokens from the `WWW-Authenticate` challenge, cached per scope),
//! manifests (size-limited, media type checked, digest verified) and blobs (verified while they
//! stream, so a consumer fails before anything it wrote is committed), pushes (existing blobs
//! skipped with HEAD, cross-repository mounts, monolithic uploads). Blocking (ureq): each layer
//! is a blocking pipeline — download, hash, decompress, unpack — run on a thread of its own.
//!
//! TLS is rustls with the platform's roots, or the CA certificates Docker's way
//! (`certs.d/<registry>/*.crt`); loopback and insecure registries are tried over HTTPS without
//! verification first and plain HTTP after, as Docker does. Not yet: chunked and resumed
//! uploads, mirrors, the referrers API.

pub mod auth;

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use strata_oci::{media_types, Digest};

/// The largest manifest read into memory (the distribution spec's recommended limit).
pub const MAX_MANIFEST: u64 = 4 << 20;

/// Attempts for a request that failed with a connection error, 429 or 5xx.
const ATTEMPTS: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status and (usually) a distribution-spec error body.
    #[error("{message}")]
    Status { status: u16, code: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{url}: {source}")]
    Transport { url: String, source: Box<ureq::Error> },
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl RegistryError {
    /// The distribution-spec error code (`MANIFEST_UNKNOWN`, ...), if the registry gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Status { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// Where a registry named in a reference is reached, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As references name it (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// The host (and port) requests go to (`registry-1.docker.io`).
    pub host: String,
    /// Check the server's certificate (the platform's roots, or the registry's CA files).
    pub verify: bool,
    /// When HTTPS does not answer, plain HTTP (loopback and insecure registries).
    pub http_fallback: bool,
}

impl Endpoint {
    /// Docker's rules: `docker.io` is served by `registry-1.docker.io`; `localhost`, the
    /// loopback addresses and the registries listed as insecure are tried over HTTPS without
    /// checking the certificate, then over plain HTTP. `tls_verify` (`--tls-verify`) overrides:
    /// `true` checks every certificate and never falls back, `false` checks none.
    pub fn for_registry(registry: &str, insecure: &[String], tls_verify: Option<bool>) -> Endpoint {
        let host = if registry == "docker.io" || registry == "index.docker.io" {
            "registry-1.docker.io".to_owned()
        } else {
            registry.to_owned()
        };
        let lenient = is_loopback(&host) || insecure.iter().any(|i| i == registry || i == &host);
        let (verify, http_fallback) = match tls_verify {
            Some(true) => (true, false),
            Some(false) => (false, true),
            None => (!lenient, lenient),
        };
        Endpoint { registry: registry.to_owned(), host, verify, http_fallback }
    }
}

/// The directory of per-registry CA files: `STRATA_CERTS_D`, else Docker's `/etc/docker/certs.d`.
pub fn certs_dir() -> std::path::PathBuf {
    std::env::var_os("STRATA_CERTS_D").map_or_else(|| "/etc/docker/certs.d".into(), Into::into)
}

/// The CA certificates (`*.crt`, PEM) configured for a registry, if any.
fn registry_roots(registry: &str) -> Vec<ureq::tls::Certificate<'static>> {
    let Ok(entries) = std::fs::read_dir(certs_dir().join(registry)) else { return Vec::new() };
    let mut roots = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "crt") {
            if let Ok(pem) = std::fs::read(&path) {
                roots.extend(ureq::tls::parse_pem(&pem).filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                }));
            }
        }
    }
    roots
}

/// `localhost[:port]`, `127.x.y.z[:port]`, `[::1][:port]`.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| if port.chars().all(|c| c.is_ascii_digit()) { h } else { host })
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A blob to push: what it is, where it may be mounted from, how to send it.
#[derive(Clone, Copy)]
pub struct BlobUpload<'a> {
    pub digest: &'a Digest,
    pub size: u64,
    /// Another repository of the same registry that may lend it (cross-repository mount).
    pub mount_from: Option<&'a str>,
    /// Larger blobs go in PATCH chunks of this size.
    pub chunk: u64,
    /// A file keeping the upload session's URL, so an interrupted push resumes it.
    pub session: Option<&'a std::path::Path>,
    /// Told how many bytes of the blob have gone (from its start) as they go.
    pub progress: &'a dyn Fn(u64),
}

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// The content from its start (opened again for a retry), and who hears how much of it went.
    Stream(&'a dyn Fn() -> io::Result<Box<dyn Read + Send>>, &'a dyn Fn(u64)),
}

/// One registry, with the credentials to use there and the tokens it handed out.
pub struct Client {
    agent: ureq::Agent,
    endpoint: Endpoint,
    credentials: Option<auth::Credentials>,
    /// Authorization header values by scope (`repository:x:pull`); `*` for basic auth.
    tokens: Mutex<HashMap<String, String>>,
    /// `https`, or `http` once HTTPS failed on a registry that may fall back.
    scheme: Mutex<&'static str>,
}

impl Client {
    pub fn new(endpoint: Endpoint, credentials: Option<auth::Credentials>) -> Client {
        let roots = registry_roots(&endpoint.registry);
        let roots = if roots.is_empty() {
            ureq::tls::RootCerts::PlatformVerifier
        } else {
            ureq::tls::RootCerts::new_with_certs(&roots)
        };
        let tls = ureq::tls::TlsConfig::builder().root_certs(roots).disable_verification(!endpoint.verify).build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            // A loopback or insecure registry is tried over HTTPS first: a server that never
            // answers the handshake should not hold the command long.
            .timeout_connect(Some(Duration::from_secs(if endpoint.http_fallback { 3 } else { 15 })))
            .max_redirects(5)
            .build()
            .into();
        Client { agent, endpoint, credentials, tokens: Mutex::new(HashMap::new()), scheme: Mutex::new("https") }
    }

    /// `SCHEME://HOST/path` with the scheme that works for this registry so far.
    fn url(&self, path: &str) -> String {
        let scheme = self.scheme.lock().map(|s| *s).unwrap_or("https");
        format!("{scheme}://{}{path}", self.endpoint.host)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// `GET /v2/`: reachable, and are the credentials good? (what `login` checks)
    pub fn ping(&self) -> Result<()> {
        let response = self.send("GET", &self.url("/v2/"), "registry:catalog:*", &[], Body::Empty)?;
        expect_success(response, "/v2/").map(|_| ())
    }

    /// A manifest or index by tag or digest, at most [`MAX_MANIFEST`] bytes; verified when
    /// asked for by digest; its declared media type must agree with the body's.
    pub fn get_manifest(&self, repository: &str, reference: &str) -> Result<FetchedManifest> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let accept = [
            media_types::OCI_INDEX,
            media_types::OCI_MANIFEST,
            media_types::DOCKER_MANIFEST_LIST,
            media_types::DOCKER_MANIFEST,
        ]
        .join(", ");
        let response =
            self.send("GET", &self.url(&path), &pull_scope(repository), &[("Accept", accept.as_str())], Body::Empty)?;
        let mut response = expect_success(response, &format!("{repository}:{reference}"))?;
        let header_type =
            header(&response, "content-type").map(|t| t.split(';').next().unwrap_or("").trim().to_owned());
        if let Some(length) = header(&response, "content-length").and_then(|l| l.parse::<u64>().ok()) {
            if length > MAX_MANIFEST {
                return Err(RegistryError::Invalid(format!(
                    "manifest {repository}:{reference} is {length} bytes, more than the {MAX_MANIFEST}-byte limit"
                )));
            }
        }
        let bytes = response.body_mut().with_config().limit(MAX_MANIFEST).read_to_vec().map_err(|e| {
            RegistryError::Invalid(format!(
                "manifest {repository}:{reference}: {e} (the limit is {MAX_MANIFEST} bytes)"
            ))
        })?;
        let digest = Digest::of(&bytes);
        if let Ok(wanted) = reference.parse::<Digest>() {
            if wanted != digest {
                return Err(RegistryError::Invalid(format!(
                    "manifest {repository}@{wanted}: the registry sent content whose digest is {digest}"
                )));
            }
        }
        let body: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::Invalid(format!("manifest {repository}:{reference} is not JSON: {e}")))?;
        let body_type = body.get("mediaType").and_then(|t| t.as_str()).map(str::to_owned);
        let media_type = match (header_type, body_type) {
            (Some(h), Some(b)) if h != b && is_manifest_type(&h) => {
                return Err(RegistryError::Invalid(format!(
                    "manifest {repository}:{reference}: the registry says {h} but the manifest says {b}"
                )))
            }
            (_, Some(b)) => b,
            (Some(h), None) if is_manifest_type(&h) => h,
            _ if body.get("manifests").is_some() => media_types::OCI_INDEX.to_owned(),
            _ => media_types::OCI_MANIFEST.to_owned(),
        };
        if !is_manifest_type(&media_type) {
            return Err(RegistryError::Invalid(format!(
                "manifest {repository}:{reference} has the unsupported media type {media_type}"
            )));
        }
        Ok(FetchedManifest { bytes, media_type, digest })
    }

    /// The manifests whose `subject` is `digest`, as an image index (`manifests`: their
    /// descriptors, with `artifactType` and annotations): through the referrers API
    /// (`GET /v2/NAME/referrers/DIGEST`, distribution-spec 1.1, pages followed) where the
    /// registry offers it, else through the referrers tag schema (the index tagged
    /// `sha256-HEX`), else none. `artifact_type` keeps only that type (filtered here unless the
    /// registry says it filtered, `OCI-Filters-Applied`).
    pub fn referrers(&self, repository: &str, digest: &Digest, artifact_type: Option<&str>) -> Result<Referrers> {
        let accept = [("Accept", media_types::OCI_INDEX)];
        let mut url = self.url(&format!("/v2/{repository}/referrers/{digest}"));
        if let Some(kind) = artifact_type {
            url = format!("{url}?artifactType={}", encode(kind));
        }
        let mut manifests: Vec<serde_json::Value> = Vec::new();
        let mut filtered = false;
        for page in 0.. {
            if page == 100 {
                return Err(RegistryError::Invalid(format!("referrers of {repository}@{digest}: more than 100 pages")));
            }
            let response = self.send("GET", &url, &pull_scope(repository), &accept, Body::Empty)?;
            let mut response = match expect_success(response, &format!("referrers of {repository}@{digest}")) {
                Ok(response) => response,
                // No referrers API here (distribution 2.8 answers 404): the tag schema.
                Err(RegistryError::Status { status: 404, .. }) if page == 0 => {
                    return self.referrers_by_tag(repository, digest, artifact_type)
                }
                Err(e) => return Err(e),
            };
            filtered |= header(&response, "oci-filters-applied")
                .is_some_and(|f| f.split(',').any(|f| f.trim() == "artifactType"));
            let next = header(&response, "link").and_then(|link| next_link(&link)).map(|next| self.absolute(&next));
            let bytes = response.body_mut().with_config().limit(MAX_MANIFEST).read_to_vec().map_err(|e| {
                RegistryError::Invalid(format!(
                    "referrers of {repository}@{digest}: {e} (the limit is {MAX_MANIFEST} bytes)"
                ))
            })?;
            let index: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::Invalid(format!("referrers of {repository}@{digest}: not an image index: {e}"))
            })?;
            manifests.extend(index["manifests"].as_array().cloned().unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => break,
            }
        }
        if !filtered {
            manifests.retain(|m| artifact_type.is_none_or(|kind| m["artifactType"].as_str() == Some(kind)));
        }
        Ok(Referrers { manifests, source: ReferrersSource::Api })
    }

    fn referrers_by_tag(&self, repository: &str, digest: &Digest, artifact_type: Option<&str>) -> Result<Referrers> {
        let tag = digest.to_string().replace(':', "-");
        let fetched = match self.get_manifest(repository, &tag) {
            Ok(fetched) => fetched,
            Err(e) if e.status() == Some(404) => {
                return Ok(Referrers { manifests: Vec::new(), source: ReferrersSource::None })
            }
            Err(e) => return Err(e),
        };
        let index: serde_json::Value = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| RegistryError::Invalid(format!("{repository}:{tag}: not an image index: {e}")))?;
        let mut manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        manifests.retain(|m| artifact_type.is_none_or(|kind| m["artifactType"].as_str() == Some(kind)));
        Ok(Referrers { manifests, source: ReferrersSource::TagSchema })
    }

    /// end a wrong or truncated body fails instead.
    pub fn get_blob(&self, repository: &str, digest: &Digest, size: u64) -> Result<VerifiedBlob> {
        Ok(self.blob_reader(repository, digest, size, 0, Some(Sha256::new()))?.0)
    }

    /// A blob from byte `offset` on (a `Range` request when `offset` is not 0), checked for its
    /// size only: for a caller that hashes what it stores anyway (a content-store writer) and
    /// checks the digest itself — see [`blob_digest_error`]. Returns where the body starts:
    /// `offset`, or 0 when the registry sends the whole blob instead.
    pub fn get_blob_from(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
    ) -> Result<(VerifiedBlob, u64)> {
        self.blob_reader(repository, digest, size, offset, None)
    }

    fn blob_reader(
        &self,
        repository: &str,
        digest: &Digest,
        size: u64,
        offset: u64,
        hasher: Option<Sha256>,
    ) -> Result<(VerifiedBlob, u64)> {
        let offset = if offset >= size { 0 } else { offset };
        let path = format!("/v2/{repository}/blobs/{digest}");
        let range = format!("bytes={offset}-");
        let headers: &[(&str, &str)] = if offset == 0 { &[] } else { &[("Range", range.as_str())] };
        let response = self.send("GET", &self.url(&path), &pull_scope(repository), headers, Body::Empty)?;
        let response = expect_success(response, &format!("blob {digest}"))?;
        // `Content-Range: bytes START-END/TOTAL` must start where asked; a 200 is the whole blob.
        let start = match (offset, response.status().as_u16()) {
            (0, _) => 0,
            (_, 206) => {
                let range = header(&response, "content-range");
                match range.and_then(|r| r.trim().strip_prefix("bytes ")?.split('-').next()?.parse::<u64>().ok()) {
                    Some(start) if start == offset => offset,
                    _ => {
                        drop(response);
                        return self.blob_reader(repository, digest, size, 0, hasher);
                    }
                }
            }
            _ => 0,
        };
        let blob = VerifiedBlob {
            inner: Box::new(response.into_body().into_reader()),
            hasher,
            read: start,
            expected: digest.clone(),
            size,
        };
        Ok((blob, start))
    }

    /// Whether the repository already has the blob (`HEAD`).
    pub fn blob_exists(&self, repository: &str, digest: &Digest) -> Result<bool> {
        let path = format!("/v2/{repository}/blobs/{digest}");
        let response = self.send("HEAD", &self.url(&path), &push_scope(repository), &[], Body::Empty)?;
        match response.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            _ => expect_success(response, &format!("blob {digest}")).map(|_| true),
        }
    }

    /// Uploads a blob, or mounts it from `mount_from` of the same registry when the registry
    /// allows it. Blobs up to `chunk` bytes go in one PUT; larger ones in PATCH chunks, each
    /// acknowledged by the registry, so an interrupted upload resumes where the registry says it
    /// stopped — within this call (a failed chunk asks the session's status and goes on), and
    /// across processes through `session` (a file keeping the upload's URL; removed when done).
    /// `open(offset)` gives the content from that offset.
    /// Returns whether the registry mounted the blob (nothing was sent).
    pub fn push_blob(
        &self,
        repository: &str,
        upload: &BlobUpload<'_>,
        open: &dyn Fn(u64) -> io::Result<Box<dyn Read + Send>>,
    ) -> Result<bool> {
        let BlobUpload { digest, size, mount_from, chunk, session, progress } = *upload;
        let scope = push_scope(repository);
        let what = format!("upload of {digest}");
        // A session an earlier (interrupted) push left: where does the registry stand?
        let mut resumed = None;
        if let Some(saved) = session.and_then(|p| std::fs::read_to_string(p).ok()) {
            let saved = saved.trim().to_owned();
            if let Ok(Some(found)) = self.upload_offset(&saved, &scope) {
                resumed = Some(found);
            }
        }
        let start_session = || -> Result<Option<String>> {
            let mut start = format!("/v2/{repository}/blobs/uploads/");
            if let Some(from) = mount_from.filter(|f| *f != repository) {
                start.push_str(&format!("?mount={digest}&from={from}"));
            }
            let response = self.send("POST", &self.url(&start), &scope, &[], Body::Empty)?;
            if response.status().as_u16() == 201 {
                return Ok(None); // mounted
            }
            let response = expect_success(response, &what)?;
            let location = header(&response, "location")
                .ok_or_else(|| RegistryError::Invalid(format!("{what}: the registry gave no Location")))?;
            Ok(Some(self.absolute(&location)))
        };
        let (mut location, mut offset) = match resumed {
            Some(found) => found,
            None => match start_session()? {
                Some(location) => (location, 0),
                None => return Ok(true),
            },
        };
        if let Some(path) = session {
            let _ = std::fs::write(path, &location);
        }
        if size > chunk {
            let mut failures = 0;
            while offset < size {
                let end = (offset + chunk).min(size);
                let range = format!("{offset}-{}", end - 1);
                let length = (end - offset).to_string();
                let from = offset;
                let part = move || -> io::Result<Box<dyn Read + Send>> { Ok(Box::new(open(from)?.take(end - from))) };
                let headers = [
                    ("Content-Type", "application/octet-stream"),
                    ("Content-Range", range.as_str()),
                    ("Content-Length", length.as_str()),
                ];
                let report = move |n: u64| progress(from + n);
                let sent = self.send("PATCH", &location, &scope, &headers, Body::Stream(&part, &report));
                match sent.and_then(|r| expect_success(r, &what)) {
                    Ok(response) => {
                        let next = header(&response, "location").map(|l| self.absolute(&l));
                        location = next.unwrap_or(location);
                        offset =
                            header(&response, "range").and_then(|r| parse_range_end(&r)).map_or(end, |last| last + 1);
                        if let Some(path) = session {
                            let _ = std::fs::write(path, &location);
                        }
                    }
                    Err(e) if failures < ATTEMPTS => {
                        // Ask the registry how much it has and go on from there; a session it
                        // cannot tell about any more (part of the cut chunk was written) is
                        // started over, as Docker does.
                        failures += 1;
                        std::thread::sleep(Duration::from_millis(100 << failures));
                        match self.upload_offset(&location, &scope) {
                            Ok(Some((url, acknowledged))) => {
                                location = url;
                                offset = acknowledged;
                            }
                            Ok(None) => match start_session()? {
                                Some(fresh) => {
                                    location = fresh;
                                    offset = 0;
                                }
                                None => return Ok(true),
                            },
                            Err(_) => return Err(e),
                        }
                        if let Some(path) = session {
                            let _ = std::fs::write(path, &location);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut url = location.clone();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("digest={digest}"));
            let response = self.send("PUT", &url, &scope, &[("Content-Length", "0")], Body::Empty)?;
            expect_success(response, &what)?;
        } else {
            let mut url = location.clone();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("digest={digest}"));
            let whole = || open(0);
            // A known length (not chunked transfer encoding), which every registry and proxy takes.
            let length = size.to_string();
            let headers = [("Content-Type", "application/octet-stream"), ("Content-Length", length.as_str())];
            let response = self.send("PUT", &url, &scope, &headers, Body::Stream(&whole, progress))?;
            expect_success(response, &what)?;
        }
        if let Some(path) = session {
            let _ = std::fs::remove_file(path);
        }
        Ok(false)
    }

    /// Uploads a blob whose digest is not known before it is all read (a layer compressed as it
    /// goes): one session, the body in one streamed `PATCH` (chunked transfer encoding), the
    /// digest of what went in the closing `PUT` (the registry checks it). Returns the digest
    /// and size. Not resumable, and `body` is read once: on an error the caller pushes the blob
    /// again once it knows it.
    pub fn push_blob_stream(
        &self,
        repository: &str,
        body: Box<dyn Read + Send>,
        progress: &dyn Fn(u64),
    ) -> Result<(Digest, u64)> {
        let scope = push_scope(repository);
        let what = "streamed upload".to_owned();
        let start = format!("/v2/{repository}/blobs/uploads/");
        let response = expect_success(self.send("POST", &self.url(&start), &scope, &[], Body::Empty)?, &what)?;
        let location = header(&response, "location")
            .map(|l| self.absolute(&l))
            .ok_or_else(|| RegistryError::Invalid(format!("{what}: the registry gave no Location")))?;
        let hashed = std::sync::Arc::new(Mutex::new(strata_oci::Digester::new()));
        let body = std::sync::Mutex::new(Some(Hashing { inner: body, state: hashed.clone() }));
        let open = || -> io::Result<Box<dyn Read + Send>> {
            let taken = body.lock().ok().and_then(|mut b| b.take());
            taken
                .map(|b| Box::new(b) as Box<dyn Read + Send>)
                .ok_or_else(|| io::Error::other("a streamed upload cannot be sent twice"))
        };
        let headers = [("Content-Type", "application/octet-stream")];
        let response = self.send("PATCH", &location, &scope, &headers, Body::Stream(&open, progress))?;
        let response = expect_success(response, &what)?;
        let location = header(&response, "location").map_or(location, |l| self.absolute(&l));
        let digester = hashed.lock().map(|h| h.clone()).map_err(|_| RegistryError::Invalid(what.clone()))?;
        let size = digester.len();
        let digest = digester.finish();
        let mut url = location;
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let response = self.send("PUT", &url, &scope, &[("Content-Length", "0")], Body::Empty)?;
        expect_success(response, &format!("upload of {digest}"))?;
        Ok((digest, size))
    }

    /// Where an upload session stands: the URL to go on with and how many bytes the registry
    /// holds (`GET` the session: 204 with `Range: 0-N`); `None` when the session is gone. A
    /// state token that no longer matches (a chunk was cut half-way, part of it written) is
    /// dropped: the session's own size says where to go on.
    fn upload_offset(&self, location: &str, scope: &str) -> Result<Option<(String, u64)>> {
        let stateless = strip_query_param(location, "_state");
        let mut candidates = vec![location.to_owned()];
        if stateless != location {
            candidates.push(stateless);
        }
        for url in candidates {
            let response = self.send("GET", &url, scope, &[], Body::Empty)?;
            if matches!(response.status().as_u16(), 204 | 202 | 200) {
                let offset = header(&response, "range").and_then(|r| parse_range_end(&r)).map_or(0, |last| last + 1);
                let next = header(&response, "location").map_or(url, |l| self.absolute(&l));
                return Ok(Some((next, offset)));
            }
        }
        Ok(None)
    }

    /// Stores a manifest under a tag (or its digest); returns the digest the registry names it by.
    pub fn put_manifest(&self, repository: &str, reference: &str, media_type: &str, bytes: &[u8]) -> Result<Digest> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let response = self.send(
            "PUT",
            &self.url(&path),
            &push_scope(repository),
            &[("Content-Type", media_type)],
            Body::Bytes(bytes),
        )?;
        let response = expect_success(response, &format!("manifest {repository}:{reference}"))?;
        let ours = Digest::of(bytes);
        if let Some(theirs) = header(&response, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok()) {
            if theirs != ours {
                return Err(RegistryError::Invalid(format!(
                    "manifest {repository}:{reference}: the registry stored {theirs}, not {ours}"
                )));
            }
        }
        Ok(ours)
    }

    fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else {
            self.url(location)
        }
    }

    /// After a connection or TLS failure over HTTPS, a registry allowed to fall back is spoken
    /// to in plain HTTP from then on; returns the URL to retry with.
    fn fall_back(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix("https://")?;
        if !self.endpoint.http_fallback {
            return None;
        }
        if let Ok(mut scheme) = self.scheme.lock() {
            *scheme = "http";
        }
        Some(format!("http://{rest}"))
    }

    /// One request with auth (answering a 401 challenge once) and bounded retries with
    /// back-off on connection errors, 429 and 5xx.
    fn send(
        &self,
        method: &str,
        url: &str,
        scope: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<ureq::http::Response<ureq::Body>> {
        let mut challenged = false;
        let mut attempt = 0;
        let mut url = url.to_owned();
        loop {
            attempt += 1;
            let authorization = self.tokens.lock().ok().and_then(|t| t.get(scope).or_else(|| t.get("*")).cloned());
            let result = self.once(method, &url, headers, authorization.as_deref(), &body);
            if result.is_err() {
                if let Some(plain) = self.fall_back(&url) {
                    url = plain;
                    attempt -= 1;
                    continue;
                }
            }
            let retry_after = Duration::from_millis(100 << attempt.min(6));
            match result {
                Ok(response) if response.status().as_u16() == 401 && !challenged => {
                    challenged = true;
                    let challenge = header(&response, "www-authenticate").unwrap_or_default();
                    self.answer(&challenge, scope)?;
                }
                Ok(response)
                    if (response.status().as_u16() == 429 || response.status().is_server_error())
                        && attempt < ATTEMPTS =>
                {
                    std::thread::sleep(retry_after);
                }
                Ok(response) => return Ok(response),
                // A PATCH is not repeated blindly: the caller asks where the upload stands.
                Err(e) if attempt < ATTEMPTS && retryable(&e) && method != "PATCH" => std::thread::sleep(retry_after),
                Err(e) => return Err(RegistryError::Transport { url: url.clone(), source: Box::new(e) }),
            }
        }
    }

    fn once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        authorization: Option<&str>,
        body: &Body<'_>,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        macro_rules! with_headers {
            ($request:expr) => {{
                let mut request = $request;
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                if let Some(value) = authorization {
                    request = request.header("Authorization", value);
                }
                request
            }};
        }
        match method {
            "GET" => with_headers!(self.agent.get(url)).call(),
            "HEAD" => with_headers!(self.agent.head(url)).call(),
            "DELETE" => with_headers!(self.agent.delete(url)).call(),
            "POST" | "PUT" | "PATCH" => {
                let request = match method {
                    "POST" => self.agent.post(url),
                    "PUT" => self.agent.put(url),
                    _ => self.agent.patch(url),
                };
                let request = with_headers!(request);
                match body {
                    Body::Empty => request.send_empty(),
                    Body::Bytes(bytes) => request.send(*bytes),
                    Body::Stream(open, progress) => {
                        let reader = open().map_err(ureq::Error::Io)?;
                        let mut counted = Sent { inner: reader, sent: 0, progress: *progress };
                        request.send(ureq::SendBody::from_reader(&mut counted))
                    }
                }
            }
            other => Err(ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("method {other}")))),
        }
    }

    /// Answers a `WWW-Authenticate` challenge: basic with the stored credentials, or a bearer
    /// token from the token service (with the credentials, if any, as basic auth).
    fn answer(&self, challenge: &str, scope: &str) -> Result<()> {
        let (kind, params) = parse_challenge(challenge);
        let who = &self.endpoint.registry;
        let value = match kind.to_ascii_lowercase().as_str() {
            "basic" => {
                let Some(credentials) = &self.credentials else {
                    return Err(RegistryError::Unauthorized(format!(
                        "{who}: authentication required (strata login {who})"
                    )));
                };
                credentials.basic_header()
            }
            "bearer" => {
                let realm = params
                    .get("realm")
                    .ok_or_else(|| RegistryError::Invalid(format!("{who}: a bearer challenge without a realm")))?;
                let mut url = realm.clone();
                url.push(if url.contains('?') { '&' } else { '?' });
                let mut query = Vec::new();
                if let Some(service) = params.get("service") {
                    query.push(format!("service={}", encode(service)));
                }
                let wanted = params.get("scope").cloned().unwrap_or_else(|| scope.to_owned());
                query.push(format!("scope={}", encode(&wanted)));
                url.push_str(&query.join("&"));
                let mut request = self.agent.get(&url);
                if let Some(credentials) = &self.credentials {
                    request = request.header("Authorization", credentials.basic_header());
                }
                let mut response =
                    request.call().map_err(|e| RegistryError::Transport { url: url.clone(), source: Box::new(e) })?;
                if response.status().as_u16() == 401 || response.status().as_u16() == 403 {
                    return Err(RegistryError::Unauthorized(format!(
                        "{who}: the token service refused the credentials (unauthorized: incorrect username or password)"
                    )));
                }
                if !response.status().is_success() {
                    return Err(RegistryError::Unauthorized(format!(
                        "{who}: the token service answered {}",
                        response.status().as_u16()
                    )));
                }
                let data = response
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| RegistryError::Invalid(format!("{who}: token response: {e}")))?;
                let body: serde_json::Value = serde_json::from_slice(&data)
                    .map_err(|e| RegistryError::Invalid(format!("{who}: token response: {e}")))?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| RegistryError::Invalid(format!("{who}: the token response holds no token")))?;
                format!("Bearer {token}")
            }
            _ => {
                return Err(RegistryError::Unauthorized(format!(
                    "{who}: unsupported authentication challenge {challenge:?}"
                )))
            }
        };
        let key = if kind.eq_ignore_ascii_case("basic") { "*" } else { scope };
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(key.to_owned(), value);
        }
        Ok(())
    }
}

/// Counts what a request body has sent (reported every 256 KiB and at the end).
/// Hashes and counts what is read, for a caller that looks afterwards.
struct Hashing {
    inner: Box<dyn Read + Send>,
    state: std::sync::Arc<Mutex<strata_oci::Digester>>,
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut state) = self.state.lock() {
            state.update(&buf[..n]);
        }
        Ok(n)
    }
}

struct Sent<'a> {
    inner: Box<dyn Read + Send>,
    sent: u64,
    progress: &'a dyn Fn(u64),
}

impl Read for Sent<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.sent;
        self.sent += n as u64;
        if n == 0 || before / (256 << 10) != self.sent / (256 << 10) {
            (self.progress)(self.sent);
        }
        Ok(n)
    }
}

/// What a blob whose content hashes to `actual` instead of `expected` is told.
pub fn blob_digest_error(expected: &Digest, actual: &str) -> String {
    format!("blob {expected}: the content's digest is {actual} (corrupted in transit or by the registry)")
}

/// What [`Client::referrers`] found.
#[derive(Debug, Clone)]
pub struct Referrers {
    /// The referring manifests' descriptors, as the registry gave them.
    pub manifests: Vec<serde_json::Value>,
    pub source: ReferrersSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferrersSource {
    /// The registry's referrers API.
    Api,
    /// The referrers tag schema (a registry without the API).
    TagSchema,
    /// Neither: no referrers.
    None,
}

impl Referrers {
    /// The image index the referrers API would answer.
    pub fn index(&self) -> serde_json::Value {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": self.manifests,
        })
    }
}

/// `<url>; rel="next"` in a `Link` header → url.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().trim_start_matches("rel=").trim_matches('"') == "next")
            .then(|| target.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

/// A blob body checked against its size, and its digest unless unhashed, as it is read.
pub struct VerifiedBlob {
    inner: Box<dyn Read + Send>,
    hasher: Option<Sha256>,
    read: u64,
    expected: Digest,
    size: u64,
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("blob {}: the download failed after {} of {} bytes: {e}", self.expected, self.read, self.size),
            )
        })?;
        self.read += n as u64;
        if self.read > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {}: more than the {} bytes its descriptor says", self.expected, self.size),
            ));
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        if n == 0 || self.read == self.size {
            if self.read != self.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob {}: the body ended after {} of {} bytes", self.expected, self.read, self.size),
                ));
            }
            if let Some(hasher) = &self.hasher {
                let actual = format!("sha256:{:x}", hasher.clone().finalize());
                if actual != self.expected.to_string() {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, blob_digest_error(&self.expected, &actual)));
                }
            }
        }
        Ok(n)
    }
}

/// The URL without one query parameter.
fn strip_query_param(url: &str, name: &str) -> String {
    let Some((base, query)) = url.split_once('?') else { return url.to_owned() };
    let kept: Vec<&str> = query.split('&').filter(|kv| kv.split('=').next() != Some(name)).collect();
    if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

/// `0-1023` (or `bytes=0-1023`) → 1023.
fn parse_range_end(range: &str) -> Option<u64> {
    range.trim().trim_start_matches("bytes=").split_once('-')?.1.trim().parse().ok()
}

fn is_manifest_type(media_type: &str) -> bool {
    [media_types::OCI_INDEX, media_types::OCI_MANIFEST, media_types::DOCKER_MANIFEST_LIST, media_types::DOCKER_MANIFEST]
        .contains(&media_type)
}

fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

fn push_scope(repository: &str) -> String {
    format!("repository:{repository}:pull,push")
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn retryable(error: &ureq::Error) -> bool {
    matches!(error, ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_))
}

/// A success, or the registry's error as a [`RegistryError::Status`] (the first error of a
/// distribution-spec error body, else the status).
fn expect_success(
    mut response: ureq::http::Response<ureq::Body>,
    what: &str,
) -> Result<ureq::http::Response<ureq::Body>> {
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Ok(response);
    }
    let data = response.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&data).unwrap_or(serde_json::Value::Null);
    let first = &body["errors"][0];
    let code = first["code"].as_str().unwrap_or_default().to_owned();
    let detail = first["message"].as_str().unwrap_or_default().to_owned();
    let message = match (status, code.as_str()) {
        (401, _) => return Err(RegistryError::Unauthorized(format!("{what}: unauthorized: {detail}"))),
        (_, "") => format!("{what}: the registry answered {status}"),
        (_, code) => format!("{what}: {}: {detail}", code.to_ascii_lowercase().replace('_', " ")),
    };
    Err(RegistryError::Status { status, code, message })
}

/// `Bearer realm="https://auth",service="registry",scope="repository:x:pull"` →
/// ("Bearer", {realm, service, scope}).
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (kind, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if key.is_empty() || chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (kind.to_owned(), params)
}

/// Percent-encoding for a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_as_docker_names_them() {
        let hub = Endpoint::for_registry("docker.io", &[], None);
        assert_eq!((hub.host.as_str(), hub.verify, hub.http_fallback), ("registry-1.docker.io", true, false));
        for lenient in ["localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"] {
            let endpoint = Endpoint::for_registry(lenient, &[], None);
            assert_eq!((endpoint.verify, endpoint.http_fallback), (false, true), "{lenient}");
        }
        assert!(Endpoint::for_registry("registry.example:5000", &[], None).verify);
        let insecure = Endpoint::for_registry("registry.example:5000", &["registry.example:5000".into()], None);
        assert!(!insecure.verify && insecure.http_fallback);
        let forced = Endpoint::for_registry("127.0.0.1:5000", &[], Some(true));
        assert!(forced.verify && !forced.http_fallback);
    }

    #[test]
    fn challenges() {
        let (kind, params) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(kind, "Bearer");
        assert_eq!(params["realm"], "https://auth.example/token");
        assert_eq!(params["service"], "registry.example");
        assert_eq!(params["scope"], "repository:a/b:pull,push");
        let (kind, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((kind.as_str(), params["realm"].as_str()), ("Basic", "Registry Realm"));
        assert_eq!(encode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }

    #[test]
    fn blobs_are_verified_while_read() {
        let data = b"layer bytes".to_vec();
        let digest = Digest::of(&data);
        let blob = |body: Vec<u8>, size: u64| VerifiedBlob {
            inner: Box::new(io::Cursor::new(body)),
            hasher: Some(Sha256::new()),
            read: 0,
            expected: digest.clone(),
            size,
        };
        let mut out = Vec::new();
        blob(data.clone(), data.len() as u64).read_to_end(&mut out).expect("good blob");
        assert_eq!(out, data);
        let mut flipped = data.clone();
        flipped[3] ^= 1;
        let error = blob(flipped, data.len() as u64).read_to_end(&mut Vec::new()).expect_err("corrupt");
        assert!(error.to_string().contains("corrupted"), "{error}");
        let error = blob(data[..5].to_vec(), data.len() as u64).read_to_end(&mut Vec::new()).expect_err("short");
        assert!(error.to_string().contains("ended after 5 of 11 bytes"), "{error}");
        let error = blob(data.clone(), 4).read_to_end(&mut Vec::new()).expect_err("long");
        assert!(error.to_string().contains("more than the 4 bytes"), "{error}");
    }

    #[test]
    fn referrers_pages_and_filters_are_spelled_as_the_spec_says() {
        assert_eq!(
            next_link(r#"</v2/a/referrers/sha256:1?n=2&last=x>; rel="next""#).as_deref(),
            Some("/v2/a/referrers/sha256:1?n=2&last=x")
        );
        assert_eq!(next_link(r#"<https://r/x>; rel="prev", <https://r/y>; rel=next"#).as_deref(), Some("https://r/y"));
        assert_eq!(next_link(r#"<https://r/x>; rel="prev""#), None);
        assert_eq!(encode("application/vnd.example+json"), "application%2Fvnd.example%2Bjson");
    }
}
