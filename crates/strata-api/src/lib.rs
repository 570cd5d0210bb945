//! `strata serve`: the Docker Engine API (v1.47, down to 1.24) over the same engine library
//! the CLI uses, so the docker CLI, the SDKs and compose drive strata unchanged. The store is
//! the only state: what the CLI did is what the API sees, and the other way round.
//!
//! So far (issue 14, first step): version negotiation (`/_ping`, `/version`, paths with and
//! without `/v1.NN`), `info`, `events` (streaming), `containers/json`, `containers/{id}/json`,
//! `images/json`, `images/{name}/json`, `containers/create`, `containers/{id}/logs` (follow too), the lifecycle of containers (start, stop, restart, kill, pause, unpause, rename, wait, DELETE), `networks`,
//! `networks/{id}` (create, connect, disconnect, DELETE, prune), `volumes`, `volumes/{name}`
//! (create, DELETE, prune), on unix sockets
//! (mode 0660, group `docker` when it exists). The JSON is the engine's (`docker_shape`), the
//! same the CLI prints.

mod create;

use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use strata_engine::error::ErrorKind;
use strata_engine::{Engine, EngineError};

/// The API version strata speaks, and the oldest it accepts.
pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";

/// An error as dockerd sends it: `{"message": ...}` with its status code.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "message": self.1 }))).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Runs blocking engine work off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T, EngineError> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("engine task failed: {e}")))?
        .map_err(ApiError::from)
}

/// The headers every answer carries, as dockerd's.
fn server_headers(headers: &mut HeaderMap) {
    headers.insert("api-version", HeaderValue::from_static(API_VERSION));
    headers.insert("docker-experimental", HeaderValue::from_static("false"));
    headers.insert("ostype", HeaderValue::from_static("linux"));
    headers.insert(header::SERVER, HeaderValue::from_static(concat!("Docker/strata-", env!("CARGO_PKG_VERSION"))));
}

async fn ping(method: Method) -> Response {
    let mut response = if method == Method::HEAD { ().into_response() } else { "OK".into_response() };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // The classic builder's protocol (`POST /build` with a tar), not BuildKit's session.
    headers.insert("builder-version", HeaderValue::from_static("1"));
    response
}

async fn version() -> Json<Value> {
    let kernel = rustix::system::uname().release().to_string_lossy().into_owned();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let version = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "strata"},
        "Components": [{"Name": "Engine", "Version": version, "Details": {
            "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Arch": arch, "Os": "linux",
            "KernelVersion": kernel, "Experimental": "false", "GitCommit": "", "GoVersion": "", "BuildTime": "",
        }}],
        "Version": version, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "",
        "GoVersion": "", "Os": "linux", "Arch": arch, "KernelVersion": kernel, "BuildTime": "",
    }))
}

async fn info(State(engine): State<Engine>) -> ApiResult<Json<Value>> {
    Ok(Json(blocking(move || engine.info()).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

fn truthy(flag: Option<&str>) -> bool {
    matches!(flag, Some("1" | "true" | "True"))
}

async fn list_containers(State(engine): State<Engine>, Query(query): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let all = truthy(query.all.as_deref());
    let summaries = blocking(move || {
        let now = strata_oci::time::Timestamp::now().seconds;
        let mut listed: Vec<Value> = engine
            .list_containers()?
            .iter()
            .filter(|c| all || c.state.status.is_live())
            .map(|c| strata_engine::docker_shape::container_summary(c, now))
            .collect();
        if let Some(limit) = query.limit.filter(|l| *l > 0) {
            listed.truncate(limit as usize);
        }
        Ok(listed)
    })
    .await?;
    Ok(Json(Value::Array(summaries)))
}

async fn inspect_container(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(blocking(move || Ok(engine.container_json(&engine.find_container(&name)?))).await?))
}

#[derive(Deserialize, Default)]
struct LifecycleQuery {
    t: Option<i64>,
    signal: Option<String>,
    force: Option<String>,
    v: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct CreateQuery {
    name: Option<String>,
}

/// `POST /containers/create`: 201 `{"Id", "Warnings"}`; an unknown image is Docker's 404
/// (the docker CLI then pulls it and asks again).
async fn create_container(
    State(engine): State<Engine>,
    Query(query): Query<CreateQuery>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let body = create::parse(&body).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let options = create::options(body, query.name).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let record = blocking(move || engine.create_container(&options)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": record.id, "Warnings": [] }))))
}

#[derive(Deserialize, Default)]
struct LogsQuery {
    stdout: Option<String>,
    stderr: Option<String>,
    timestamps: Option<String>,
    follow: Option<String>,
    tail: Option<String>,
}

/// Log entries as the API sends them: stdcopy frames (stream 1 stdout, 2 stderr, a 4-byte
/// big-endian length) for a container without a terminal, the bare bytes for one with.
fn frames(entries: &[(String, String, String)], tty: bool, query: &LogsQuery) -> Vec<u8> {
    let mut out = Vec::new();
    for (stream, time, text) in entries {
        let kind = if stream == "stderr" { 2u8 } else { 1u8 };
        let wanted = if kind == 2 { truthy(query.stderr.as_deref()) } else { truthy(query.stdout.as_deref()) };
        if !wanted {
            continue;
        }
        let line = if truthy(query.timestamps.as_deref()) { format!("{time} {text}") } else { text.clone() };
        if !tty {
            out.extend_from_slice(&[kind, 0, 0, 0]);
            out.extend_from_slice(&(line.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// `GET /containers/{id}/logs`: what the log holds (`tail`), then, with `follow`, what comes
/// until the container stops. A client that goes away ends the stream (nothing polls on).
async fn container_logs(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LogsQuery>,
) -> ApiResult<Response> {
    let lookup = engine.clone();
    let record = blocking(move || lookup.find_container(&name)).await?;
    let tty = record.spec.terminal;
    let path = engine.log_path(&record.id);
    let tail = match query.tail.as_deref() {
        None | Some("all") | Some("") => None,
        Some(n) => {
            Some(n.parse::<usize>().map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("invalid tail: {n}")))?)
        }
    };
    let reading = path.clone();
    let entries = tokio::task::spawn_blocking(move || strata_engine::containers::read_log(&reading))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let start = tail.map_or(0, |n| entries.len().saturating_sub(n));
    let first = frames(&entries[start..], tty, &query);
    let content_type =
        if tty { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    if !truthy(query.follow.as_deref()) {
        return Ok(([(header::CONTENT_TYPE, content_type)], first).into_response());
    }
    let id = record.id.clone();
    let state = (engine, path, id, entries.len(), Some(first), query, false);
    let stream = futures_util::stream::unfold(state, move |(engine, path, id, seen, first, query, done)| async move {
        if let Some(first) = first {
            return Some((Ok::<_, std::io::Error>(first), (engine, path, id, seen, None, query, done)));
        }
        if done {
            return None;
        }
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let (probe, reading) = (engine.clone(), path.clone());
            let (entries, live) = tokio::task::spawn_blocking({
                let id = id.clone();
                move || {
                    let live = probe.find_container(&id).is_ok_and(|c| c.state.status.is_live());
                    (strata_engine::containers::read_log(&reading), live)
                }
            })
            .await
            .ok()?;
            if entries.len() > seen || !live {
                let chunk = frames(&entries[seen.min(entries.len())..], tty, &query);
                let seen = entries.len();
                return Some((Ok(chunk), (engine, path, id, seen, None, query, !live)));
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(stream)).into_response())
}

/// What answers a request that changes a container: 204, or 304 when it was already so.
fn done(changed: bool) -> StatusCode {
    if changed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    }
}

async fn start_container(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<StatusCode> {
    use strata_engine::containers::Status;
    blocking(move || {
        let record = engine.find_container(&name)?;
        if matches!(record.state.status, Status::Running | Status::Paused) {
            return Ok(done(false));
        }
        engine.start_detached(&record.id).map(|()| done(true))
    })
    .await
}

async fn stop_container(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LifecycleQuery>,
) -> ApiResult<StatusCode> {
    blocking(move || {
        // A container waiting to be restarted by its policy is stopped too, as the CLI's stop.
        if !engine.find_container(&name)?.state.status.is_live() {
            return Ok(done(false));
        }
        engine.stop_container(&name, query.t).map(|_| done(true))
    })
    .await
}

async fn restart_container(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LifecycleQuery>,
) -> ApiResult<StatusCode> {
    blocking(move || engine.restart_container(&name, query.t).map(|_| done(true))).await
}

async fn kill_container(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LifecycleQuery>,
) -> ApiResult<StatusCode> {
    let signal = query.signal.unwrap_or_else(|| "KILL".to_owned());
    blocking(move || engine.kill_container(&name, &signal).map(|_| done(true))).await
}

async fn pause_container(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<StatusCode> {
    blocking(move || engine.pause_container(&name, true).map(|()| done(true))).await
}

async fn unpause_container(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<StatusCode> {
    blocking(move || engine.pause_container(&name, false).map(|()| done(true))).await
}

async fn rename_container(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LifecycleQuery>,
) -> ApiResult<StatusCode> {
    let Some(new_name) = query.name.filter(|n| !n.is_empty()) else {
        return Err(ApiError(StatusCode::BAD_REQUEST, "rename: the new name (name=) is missing".into()));
    };
    blocking(move || engine.rename_container(&name, &new_name).map(|()| done(true))).await
}

async fn remove_container(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LifecycleQuery>,
) -> ApiResult<StatusCode> {
    let (force, volumes) = (truthy(query.force.as_deref()), truthy(query.v.as_deref()));
    blocking(move || engine.remove_container(&name, force, volumes).map(|_| done(true))).await
}

/// `POST /containers/{id}/wait`: blocks until the container stops; its exit code.
async fn wait_container(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<Json<Value>> {
    let code = blocking(move || engine.wait_container(&name)).await?;
    Ok(Json(json!({ "StatusCode": code, "Error": null })))
}

async fn list_images(State(engine): State<Engine>) -> ApiResult<Json<Value>> {
    Ok(Json(Value::Array(blocking(move || engine.image_summaries()).await?)))
}

/// `GET /images/{name}/json`: what `strata inspect` of an image prints. Names may hold
/// slashes (`registry:5000/team/app`), so the route takes the rest of the path.
async fn image_json(State(engine): State<Engine>, UrlPath(rest): UrlPath<String>) -> ApiResult<Json<Value>> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("page not found: /images/{rest}")));
    };
    let name = name.to_owned();
    Ok(Json(blocking(move || engine.inspect(&name)).await?))
}

#[derive(Deserialize, Default)]
struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

/// `GET /events`: the event log (the CLI's commands write it too) as a stream of JSON
/// messages — the past from `since`, then the new ones until `until` or the client leaves
/// (the follower stops within a poll of that).
async fn events(State(engine): State<Engine>, Query(query): Query<EventsQuery>) -> ApiResult<Response> {
    use strata_engine::events::{parse_time, EventFilter};
    let now = strata_oci::time::Timestamp::now();
    let time = |t: &Option<String>| -> ApiResult<Option<i64>> {
        t.as_deref().filter(|t| !t.is_empty()).map(|t| parse_time(t, now)).transpose().map_err(ApiError::from)
    };
    let (since, until) = (time(&query.since)?, time(&query.until)?);
    let mut arguments = Vec::new();
    if let Some(text) = query.filters.as_deref().filter(|t| !t.is_empty()) {
        let filters: std::collections::BTreeMap<String, Value> = serde_json::from_str(text)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid filters: {e}")))?;
        for (key, values) in filters {
            let values: Vec<String> = match values {
                Value::Array(values) => values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                Value::Object(values) => values.keys().cloned().collect(),
                _ => Vec::new(),
            };
            arguments.extend(values.into_iter().map(|value| format!("{key}={value}")));
        }
    }
    let filter = EventFilter::parse(&arguments)?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::task::spawn_blocking(move || {
        let alive = || !sender.is_closed();
        let _ = engine.follow_events_while(since, until, &filter, &alive, &mut |event| {
            let mut line = serde_json::to_vec(event).unwrap_or_default();
            line.push(b'\n');
            sender.blocking_send(line).is_ok()
        });
    });
    let stream = futures_util::stream::poll_fn(move |context| {
        receiver.poll_recv(context).map(|line| line.map(Ok::<_, std::io::Error>))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(stream)).into_response())
}

/// `GET /networks`: every network as `network inspect` shows it (the default `bridge` made if
/// missing), then `host` and `none`.
async fn list_networks(State(engine): State<Engine>) -> ApiResult<Json<Value>> {
    let networks = blocking(move || {
        engine.find_network(strata_engine::networks::DEFAULT_NETWORK)?;
        let mut all = engine.list_networks()?.iter().map(|n| engine.network_json(n)).collect::<Result<Vec<_>, _>>()?;
        all.extend(["host", "none"].map(|name| engine.predefined_network_json(name)));
        Ok(all)
    })
    .await?;
    Ok(Json(Value::Array(networks)))
}

async fn inspect_network(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<Json<Value>> {
    Ok(Json(
        blocking(move || match name.as_str() {
            "host" | "none" => Ok(engine.predefined_network_json(&name)),
            _ => engine.network_json(&engine.find_network(&name)?),
        })
        .await?,
    ))
}

async fn list_volumes(State(engine): State<Engine>) -> ApiResult<Json<Value>> {
    let volumes = blocking(move || engine.list_volumes()).await?;
    Ok(Json(json!({ "Volumes": volumes, "Warnings": [] })))
}

async fn inspect_volume(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<Json<Value>> {
    let volume = blocking(move || engine.inspect_volume(&name)).await?;
    Ok(Json(serde_json::to_value(volume).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?))
}

/// A JSON body of type `T`, or 400 saying what is wrong with it.
fn body_of<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(if bytes.is_empty() { b"{}" } else { bytes })
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid request body: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct VolumeCreate {
    name: String,
    driver: String,
    driver_opts: std::collections::BTreeMap<String, String>,
}

async fn create_volume(State(engine): State<Engine>, body: axum::body::Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let request: VolumeCreate = body_of(&body)?;
    if !request.driver.is_empty() && request.driver != "local" {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("volume driver {:?} is not supported (local is)", request.driver),
        ));
    }
    if !request.driver_opts.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "volume driver options are not supported yet".into()));
    }
    let name = (!request.name.is_empty()).then_some(request.name);
    let (volume, _) = blocking(move || engine.create_volume(name.as_deref(), false)).await?;
    let value = serde_json::to_value(volume).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(value)))
}

async fn remove_volume(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    Query(query): Query<LifecycleQuery>,
) -> ApiResult<StatusCode> {
    let force = truthy(query.force.as_deref());
    blocking(move || engine.remove_volume(&name, force).map(|()| StatusCode::NO_CONTENT)).await
}

#[derive(Deserialize, Default)]
struct FiltersQuery {
    filters: Option<String>,
}

impl FiltersQuery {
    /// `filters={"all":["true"]}` (the values of one key).
    fn values(&self, key: &str) -> ApiResult<Vec<String>> {
        let Some(text) = self.filters.as_deref().filter(|t| !t.is_empty()) else { return Ok(Vec::new()) };
        let filters: std::collections::BTreeMap<String, Value> = serde_json::from_str(text)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid filters: {e}")))?;
        Ok(match filters.get(key) {
            Some(Value::Array(values)) => values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            // The older form: {"key": {"value": true}}.
            Some(Value::Object(values)) => values.keys().cloned().collect(),
            _ => Vec::new(),
        })
    }
}

/// `POST /volumes/prune`: anonymous volumes no container uses, or every unused one with the
/// `all` filter (API ≥ 1.42, as dockerd).
async fn prune_volumes(State(engine): State<Engine>, Query(query): Query<FiltersQuery>) -> ApiResult<Json<Value>> {
    let all = query.values("all")?.iter().any(|v| truthy(Some(v)));
    let deleted = blocking(move || engine.prune_volumes(all)).await?;
    Ok(Json(json!({ "VolumesDeleted": deleted, "SpaceReclaimed": 0 })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkCreate {
    name: String,
    driver: String,
    internal: bool,
    labels: std::collections::BTreeMap<String, String>,
    options: std::collections::BTreeMap<String, String>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    config: Vec<IpamPool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamPool {
    subnet: String,
    gateway: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
}

async fn create_network(State(engine): State<Engine>, body: axum::body::Bytes) -> ApiResult<(StatusCode, Json<Value>)> {
    let request: NetworkCreate = body_of(&body)?;
    let pool = request.ipam.and_then(|i| i.config.into_iter().next()).unwrap_or_default();
    let some = |text: String| (!text.is_empty()).then_some(text);
    let options = strata_engine::networks::NetworkCreateOptions {
        name: request.name,
        driver: some(request.driver),
        subnet: some(pool.subnet),
        gateway: some(pool.gateway),
        ip_range: some(pool.ip_range),
        internal: request.internal,
        labels: request.labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        options: request.options.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
    };
    let record = blocking(move || engine.create_network(&options)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": record.id, "Warning": "" }))))
}

async fn remove_network(State(engine): State<Engine>, UrlPath(name): UrlPath<String>) -> ApiResult<StatusCode> {
    blocking(move || engine.remove_network(&name).map(|_| StatusCode::NO_CONTENT)).await
}

async fn prune_networks(State(engine): State<Engine>) -> ApiResult<Json<Value>> {
    let deleted = blocking(move || engine.prune_networks()).await?;
    Ok(Json(json!({ "NetworksDeleted": deleted })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NetworkConnect {
    container: String,
    endpoint_config: Option<create::EndpointSettings>,
}

async fn connect_network(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let request: NetworkConnect = body_of(&body)?;
    let settings = request.endpoint_config.unwrap_or_default();
    let aliases = settings.aliases.unwrap_or_default();
    let ip = settings.ipam_config.and_then(|c| c.ipv4_address).filter(|a| !a.is_empty());
    blocking(move || {
        engine.connect_network(&name, &request.container, &aliases, ip.as_deref()).map(|()| StatusCode::OK)
    })
    .await
}

async fn disconnect_network(
    State(engine): State<Engine>,
    UrlPath(name): UrlPath<String>,
    body: axum::body::Bytes,
) -> ApiResult<StatusCode> {
    let request: NetworkConnect = body_of(&body)?;
    blocking(move || engine.disconnect_network(&name, &request.container).map(|()| StatusCode::OK)).await
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("page not found: {}", uri.path()))
}

/// The API's routes, without the version prefix.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/events", get(events))
        .route("/containers/json", get(list_containers))
        .route("/containers/create", post(create_container))
        .route("/containers/{name}/json", get(inspect_container))
        .route("/containers/{name}/logs", get(container_logs))
        .route("/containers/{name}", axum::routing::delete(remove_container))
        .route("/containers/{name}/start", post(start_container))
        .route("/containers/{name}/stop", post(stop_container))
        .route("/containers/{name}/restart", post(restart_container))
        .route("/containers/{name}/kill", post(kill_container))
        .route("/containers/{name}/pause", post(pause_container))
        .route("/containers/{name}/unpause", post(unpause_container))
        .route("/containers/{name}/rename", post(rename_container))
        .route("/containers/{name}/wait", post(wait_container))
        .route("/images/json", get(list_images))
        .route("/images/{*rest}", get(image_json))
        .route("/networks", get(list_networks))
        .route("/networks/create", post(create_network))
        .route("/networks/prune", post(prune_networks))
        .route("/networks/{name}", get(inspect_network).delete(remove_network))
        .route("/networks/{name}/connect", post(connect_network))
        .route("/networks/{name}/disconnect", post(disconnect_network))
        .route("/volumes", get(list_volumes))
        .route("/volumes/create", post(create_volume))
        .route("/volumes/prune", post(prune_volumes))
        .route("/volumes/{name}", get(inspect_volume).delete(remove_volume))
        .fallback(not_found)
        .with_state(engine)
        .layer(axum::middleware::map_response(|mut response: Response| async move {
            server_headers(response.headers_mut());
            response
        }))
}

/// `/v1.43/containers/json` → `/containers/json`; a version older than 1.24 (or newer than
/// strata's) is refused as dockerd refuses it.
fn strip_version(path: &str) -> Result<&str, String> {
    let Some(rest) = path.strip_prefix("/v") else { return Ok(path) };
    let (version, tail) = match rest.split_once('/') {
        Some((version, tail)) => (version, Some(tail)),
        None => (rest, None),
    };
    let parse = |v: &str| -> Option<(u32, u32)> {
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    };
    let Some(asked) = parse(version) else { return Ok(path) };
    let oldest = parse(MIN_API_VERSION).unwrap_or((1, 24));
    let newest = parse(API_VERSION).unwrap_or((1, 47));
    if asked < oldest {
        return Err(format!(
            "client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        ));
    }
    if asked > newest {
        return Err(format!("client version {version} is too new. Maximum supported API version is {API_VERSION}"));
    }
    Ok(match tail {
        Some(tail) => &path[path.len() - tail.len() - 1..],
        None => "/",
    })
}

/// The whole service: the version prefix taken off before routing.
async fn handle(router: Router, mut request: Request) -> Response {
    use tower::ServiceExt;
    let path = request.uri().path().to_owned();
    match strip_version(&path) {
        Ok(stripped) if stripped.len() != path.len() => {
            let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
            if let Ok(uri) = format!("{stripped}{query}").parse::<Uri>() {
                *request.uri_mut() = uri;
            }
        }
        Ok(_) => {}
        Err(message) => {
            let mut response = ApiError(StatusCode::BAD_REQUEST, message).into_response();
            server_headers(response.headers_mut());
            return response;
        }
    }
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Where `-H unix:///path` points.
fn unix_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => anyhow::bail!("{host}: only unix:///PATH hosts are served so far (tcp with mutual TLS is not done yet)"),
    }
}

/// Binds the socket at `path`: a stale socket replaced, mode 0660, group `docker` when the
/// host has one (as dockerd's).
fn bind_unix(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!("{}: another server is listening there", path.display());
    }
    let _ = std::fs::remove_file(path);
    let listener = std::os::unix::net::UnixListener::bind(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot listen: {e}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = docker_group() {
        let _ = rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)));
    }
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

fn docker_group() -> Option<u32> {
    std::fs::read_to_string("/etc/group").ok()?.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == "docker").then_some(())?;
        fields.nth(1)?.parse().ok()
    })
}

/// Serves the API on `hosts` until SIGINT or SIGTERM.
pub fn serve(engine: Engine, hosts: &[String]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let router = router(engine);
        let service = tower::service_fn(move |request: Request| {
            let router = router.clone();
            async move { Ok::<_, std::convert::Infallible>(handle(router, request).await) }
        });
        let mut servers = Vec::new();
        let mut paths = Vec::new();
        for host in hosts {
            let path = unix_path(host)?;
            let listener = bind_unix(&path)?;
            eprintln!("strata serve: API listening on {host}");
            paths.push(path);
            let service = service.clone();
            servers.push(tokio::spawn(async move { axum::serve(listener, tower::make::Shared::new(service)).await }));
        }
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        for server in servers {
            server.abort();
        }
        for path in paths {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        assert_eq!(strip_version("/v1.47/containers/json"), Ok("/containers/json"));
        assert_eq!(strip_version("/v1.24/_ping"), Ok("/_ping"));
        assert_eq!(strip_version("/containers/json"), Ok("/containers/json"));
        assert_eq!(strip_version("/volumes"), Ok("/volumes"), "not a version");
        assert_eq!(strip_version("/v1.47"), Ok("/"));
        assert!(strip_version("/v1.12/info").expect_err("too old").contains("Minimum supported API version is 1.24"));
        assert!(strip_version("/v1.99/info").expect_err("too new").contains("too new"));
    }
}
