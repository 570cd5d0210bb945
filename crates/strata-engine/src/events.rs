//! The event log: what `docker events` shows, kept on disk because strata has no daemon to
//! hold it in memory. Every command that changes a container, image or volume appends one JSON
//! line per event (Docker's `events.Message`) to `<root>/events.log` with a single `O_APPEND`
//! write, so concurrent commands never interleave and a killed one leaves at most a torn last
//! line, which readers skip. Past 8 MiB the file is renamed to `events.log.1` (one generation
//! kept), under a `flock` so that two writers rotate once.
//!
//! Readers take what lies between `since` and `until` from both generations and, to follow,
//! poll the file for growth (and for the rename of a rotation).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_oci::time::Timestamp;

use crate::containers::ContainerRecord;
use crate::{Engine, EngineError, Result};

const EVENTS_FILE: &str = "events.log";
const ROTATE_AT: u64 = 8 << 20;
/// How often a follower looks for new lines.
const POLL: Duration = Duration::from_millis(50);

/// Docker's `events.Actor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Docker's `events.Message`, with the pre-1.22 `status`/`id`/`from` fields Docker still sends
/// for container and image events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let now = Timestamp::now();
        let legacy = matches!(kind, "container" | "image");
        Event {
            status: if legacy { action.to_owned() } else { String::new() },
            id: if legacy { id.to_owned() } else { String::new() },
            from: if kind == "container" {
                attributes.get("image").cloned().unwrap_or_default()
            } else {
                String::new()
            },
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: Actor { id: id.to_owned(), attributes },
            scope: "local".to_owned(),
            time: now.seconds,
            time_nano: now.seconds * 1_000_000_000 + i64::from(now.nanos),
        }
    }

    /// The line `docker events` prints: time, type, action, actor and sorted attributes.
    pub fn pretty(&self) -> String {
        let time = Timestamp {
            seconds: self.time_nano.div_euclid(1_000_000_000),
            nanos: self.time_nano.rem_euclid(1_000_000_000) as u32,
        };
        let rfc = time.to_rfc3339();
        // Go's RFC3339NanoFixed: always nine digits of fraction.
        let whole = rfc.split(['.', 'Z']).next().unwrap_or_default();
        let mut line = format!("{whole}.{:09}Z {} {} {}", time.nanos, self.kind, self.action, self.actor.id);
        if !self.actor.attributes.is_empty() {
            let attributes: Vec<String> = self.actor.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line.push_str(&format!(" ({})", attributes.join(", ")));
        }
        line
    }
}

fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

impl Engine {
    fn events_path(&self) -> PathBuf {
        self.store.root().join(EVENTS_FILE)
    }

    /// Appends an event. The log is a record for people, not state: failing to write it never
    /// fails the command that did the work.
    pub fn emit(&self, event: &Event) {
        let _ = append(&self.events_path(), event);
    }

    /// A container event with the attributes Docker gives them: image, name, the container's
    /// labels, and `extra`.
    pub fn emit_container(&self, record: &ContainerRecord, action: &str, extra: &[(&str, &str)]) {
        let mut attrs = attributes(&[("image", &record.image), ("name", &record.name)]);
        if let Some(labels) = record.config.get("Labels").and_then(|l| l.as_object()) {
            for (key, value) in labels {
                attrs.entry(key.clone()).or_insert_with(|| value.as_str().unwrap_or_default().to_owned());
            }
        }
        attrs.extend(attributes(extra));
        self.emit(&Event::new("container", action, &record.id, attrs));
    }

    /// An image event: `id` is what Docker names the actor (an image ID, or the reference for
    /// pull and push), `name` its `name` attribute.
    pub fn emit_image(&self, action: &str, id: &str, name: &str) {
        self.emit(&Event::new("image", action, id, attributes(&[("name", name)])));
    }

    /// A `build` event for a built image, and a `tag` event for each of its names.
    pub(crate) fn emit_built(&self, id: &strata_oci::Digest, tags: &[strata_oci::Reference]) {
        let id = id.to_string();
        let names: Vec<String> = tags.iter().map(strata_oci::Reference::familiar_string).collect();
        self.emit_image("build", &id, names.first().unwrap_or(&id));
        for name in &names {
            self.emit_image("tag", &id, name);
        }
    }

    /// A network event (`container`: the one connected or disconnected).
    pub fn emit_network(&self, action: &str, id: &str, name: &str, container: Option<&str>) {
        let mut attrs = attributes(&[("name", name), ("type", "bridge")]);
        if let Some(container) = container {
            attrs.insert("container".to_owned(), container.to_owned());
        }
        self.emit(&Event::new("network", action, id, attrs));
    }

    pub fn emit_volume(&self, action: &str, name: &str) {
        self.emit(&Event::new("volume", action, name, attributes(&[("driver", "local")])));
    }

    /// The events logged between `since` and `until` (nanoseconds since the epoch), oldest
    /// first, that `filter` lets through.
    pub fn past_events(&self, since: Option<i64>, until: Option<i64>, filter: &EventFilter) -> Result<Vec<Event>> {
        let path = self.events_path();
        let mut data = read_file(&rotated(&path), None)?;
        data.extend(read_file(&path, None)?);
        Ok(select(&data, since, until, filter))
    }

    /// `docker events`: the past events from `since` (all of them with only `until`, none with
    /// neither), then the new ones as they are logged, until `until` passes or `each` returns
    /// false.
    pub fn follow_events(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &EventFilter,
        each: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<()> {
        self.follow_events_while(since, until, filter, &|| true, each)
    }

    /// [`Engine::follow_events`] that also ends, within a poll, once `alive` says no (a
    /// client that went away while no event came).
    pub fn follow_events_while(
        &self,
        since: Option<i64>,
        until: Option<i64>,
        filter: &EventFilter,
        alive: &dyn Fn() -> bool,
        each: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<()> {
        let path = self.events_path();
        // The past is what the file held when the follower opened it: nothing is missed or
        // shown twice.
        let mut follower = Follower::open(&path)?;
        if since.is_some() || until.is_some() {
            let mut data = read_file(&rotated(&path), None)?;
            data.extend(read_file(&path, Some(follower.offset))?);
            for event in select(&data, since, until, filter) {
                if !each(&event) {
                    return Ok(());
                }
            }
        }
        loop {
            if until.is_some_and(|until| now_nanos() > until) || !alive() {
                return Ok(());
            }
            for event in follower.read_new(&path)? {
                if in_window(&event, since, until) && filter.matches(&event) && !each(&event) {
                    return Ok(());
                }
            }
            std::thread::sleep(POLL);
        }
    }
}

/// A generation of the log (its first `limit` bytes); nothing when it does not exist.
fn read_file(path: &Path, limit: Option<u64>) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    match File::open(path) {
        Ok(file) => file
            .take(limit.unwrap_or(u64::MAX))
            .read_to_end(&mut data)
            .map_err(|e| EngineError::Io { path: path.to_owned(), source: e })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(EngineError::Io { path: path.to_owned(), source: e }),
    };
    // A generation ends on a whole line, even when its writer was killed mid-line.
    if data.last().is_some_and(|&b| b != b'\n') {
        data.push(b'\n');
    }
    Ok(data)
}

fn select(data: &[u8], since: Option<i64>, until: Option<i64>, filter: &EventFilter) -> Vec<Event> {
    let mut events: Vec<Event> =
        parse_lines(data).filter(|e| in_window(e, since, until) && filter.matches(e)).collect();
    // Commands log concurrently: a line can land after one stamped later.
    events.sort_by_key(|e| e.time_nano);
    events
}

fn now_nanos() -> i64 {
    let now = Timestamp::now();
    now.seconds * 1_000_000_000 + i64::from(now.nanos)
}

fn in_window(event: &Event, since: Option<i64>, until: Option<i64>) -> bool {
    since.is_none_or(|since| event.time_nano >= since) && until.is_none_or(|until| event.time_nano <= until)
}

fn rotated(path: &Path) -> PathBuf {
    path.with_extension("log.1")
}

fn parse_lines(data: &[u8]) -> impl Iterator<Item = Event> + '_ {
    // A line torn by a killed writer does not parse, and is skipped.
    data.split(|&b| b == b'\n').filter_map(|line| serde_json::from_slice(line).ok())
}

fn append(path: &Path, event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let open = || OpenOptions::new().create(true).append(true).mode(0o600).open(path);
    let mut file = open()?;
    if file.metadata()?.len() >= ROTATE_AT {
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        // Another writer may have rotated while we waited: rename only the file still named so.
        let current = fs::metadata(path).ok();
        let ours = file.metadata()?;
        if current.is_some_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev()) {
            fs::rename(path, rotated(path))?;
        }
        drop(file);
        file = open()?;
    }
    // One write: O_APPEND places it whole at the end, whoever else is writing.
    file.write_all(&line)
}

/// Reads the lines appended to the log since the last call, across rotations.
struct Follower {
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    fn open(path: &Path) -> Result<Follower> {
        let file = match File::open(path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(EngineError::Io { path: path.to_owned(), source: e }),
        };
        let offset = match &file {
            Some(file) => file.metadata().map(|m| m.len()).unwrap_or(0),
            None => 0,
        };
        Ok(Follower { file, offset, partial: Vec::new() })
    }

    fn read_new(&mut self, path: &Path) -> Result<Vec<Event>> {
        let mut events = self.drain()?;
        // Rotated (or created) since we opened it: finish the old file, go on with the new one.
        let current = fs::metadata(path).ok();
        let same = match (&self.file, &current) {
            (Some(file), Some(current)) => {
                let ours = file.metadata().map_err(|e| EngineError::Io { path: path.to_owned(), source: e })?;
                ours.ino() == current.ino() && ours.dev() == current.dev()
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.file = File::open(path).ok();
            self.offset = 0;
            self.partial.clear();
            events.extend(self.drain()?);
        }
        Ok(events)
    }

    fn drain(&mut self) -> Result<Vec<Event>> {
        let Some(file) = &mut self.file else { return Ok(Vec::new()) };
        let io = |e| EngineError::Io { path: PathBuf::from(EVENTS_FILE), source: e };
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io)?;
        self.offset += data.len() as u64;
        self.partial.extend_from_slice(&data);
        // Only whole lines: a writer's line may be half-visible while we read.
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else { return Ok(Vec::new()) };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        Ok(parse_lines(&whole).collect())
    }
}

/// `--filter` of `docker events`: values of one key are alternatives, keys must all match
/// (Docker's `daemon/events/filter.go`).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    values: BTreeMap<String, BTreeSet<String>>,
}

const FILTER_KEYS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

impl EventFilter {
    /// Parses `key=value` arguments.
    pub fn parse(arguments: &[String]) -> Result<EventFilter> {
        let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for argument in arguments {
            let Some((key, value)) = argument.split_once('=') else {
                return Err(EngineError::InvalidArgument(format!(
                    "bad format of filter (expected name=value): {argument}"
                )));
            };
            let key = key.trim().to_lowercase();
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(EngineError::InvalidArgument(format!("invalid filter '{key}'")));
            }
            values.entry(key).or_default().insert(value.trim().to_owned());
        }
        Ok(EventFilter { values })
    }

    fn exact(&self, key: &str, candidates: &[&str]) -> bool {
        self.values.get(key).is_none_or(|wanted| candidates.iter().any(|c| wanted.contains(*c)))
    }

    fn fuzzy(&self, key: &str, candidates: &[&str]) -> bool {
        self.values.get(key).is_none_or(|wanted| {
            candidates
                .iter()
                .any(|c| wanted.contains(*c) || wanted.iter().any(|w| !w.is_empty() && c.starts_with(w.as_str())))
        })
    }

    pub fn matches(&self, event: &Event) -> bool {
        let attributes = &event.actor.attributes;
        let name = attributes.get("name").map(String::as_str).unwrap_or_default();
        let of_type = |kind: &str| {
            if event.kind == kind {
                self.fuzzy(kind, &[&event.actor.id, name])
            } else {
                !self.values.contains_key(kind)
            }
        };
        // `exec_start` matches `exec_start: sh -c ...`, as in Docker.
        let action = if self
            .values
            .get("event")
            .is_some_and(|w| w.iter().any(|v| matches!(v.as_str(), "exec_create" | "exec_start" | "health_status")))
        {
            self.fuzzy("event", &[&event.action])
        } else {
            self.exact("event", &[&event.action])
        };
        let image_name = attributes.get(if event.kind == "image" { "name" } else { "image" }).map(String::as_str);
        let image = match self.values.get("image") {
            None => true,
            Some(_) => {
                let mut candidates = vec![event.actor.id.as_str(), strip_tag(&event.actor.id)];
                if let Some(name) = image_name {
                    candidates.extend([name, strip_tag(name)]);
                }
                self.exact("image", &candidates)
            }
        };
        let labels = self.values.get("label").is_none_or(|wanted| {
            wanted.iter().all(|label| match label.split_once('=') {
                Some((key, value)) => attributes.get(key).is_some_and(|v| v == value),
                None => attributes.contains_key(label.as_str()),
            })
        });
        action
            && self.exact("type", &[&event.kind])
            && self.exact("scope", &[&event.scope])
            && ["container", "volume", "network", "daemon", "plugin", "node", "service", "secret", "config"]
                .iter()
                .all(|kind| of_type(kind))
            && image
            && labels
    }
}

/// `busybox:1.36` → `busybox` (a registry port is not a tag).
fn strip_tag(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    }
}

/// Docker's `--since`/`--until` values (`timetypes.GetTimestamp`): a duration before now
/// (`10m`, `1h30m`), Unix seconds (`1700000000.5`), RFC 3339 with or without fraction and zone
/// (no zone is UTC here), or a date. Nanoseconds since the epoch.
pub fn parse_time(value: &str, now: Timestamp) -> Result<i64> {
    let invalid = || {
        EngineError::InvalidArgument(format!(
            "invalid value for time: {value:?}: expected a timestamp, Unix seconds or a duration such as 10m"
        ))
    };
    let now_nanos = now.seconds * 1_000_000_000 + i64::from(now.nanos);
    if let Some(duration) = parse_go_duration(value) {
        return Ok(now_nanos - duration);
    }
    if let Some((seconds, fraction)) = value.split_once('.').or(Some((value, ""))) {
        if !seconds.is_empty()
            && seconds.bytes().all(|b| b.is_ascii_digit())
            && fraction.bytes().all(|b| b.is_ascii_digit())
            && fraction.len() <= 9
        {
            let seconds: i64 = seconds.parse().map_err(|_| invalid())?;
            let nanos: i64 =
                if fraction.is_empty() { 0 } else { format!("{fraction:0<9}").parse().map_err(|_| invalid())? };
            return Ok(seconds * 1_000_000_000 + nanos);
        }
    }
    let candidates = [value.to_owned(), format!("{value}Z"), format!("{value}T00:00:00Z")];
    for candidate in candidates {
        if let Some(time) = Timestamp::parse_rfc3339(&candidate) {
            return Ok(time.seconds * 1_000_000_000 + i64::from(time.nanos));
        }
    }
    Err(invalid())
}

/// Go's `time.ParseDuration` for non-negative values: `300ms`, `1.5h`, `2h45m`.
fn parse_go_duration(text: &str) -> Option<i64> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if number_end == 0 {
            return None;
        }
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event::new(kind, action, id, attributes(attrs))
    }

    fn filter(args: &[&str]) -> EventFilter {
        EventFilter::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("ok")
    }

    #[test]
    fn filters_as_docker_does() {
        let start =
            event("container", "start", "abc123", &[("image", "busybox:1.36"), ("name", "web"), ("tier", "front")]);
        let exec = event("container", "exec_start: sh -c true", "abc123", &[("image", "busybox"), ("name", "web")]);
        let pulled = event("image", "pull", "busybox:latest", &[("name", "busybox")]);
        assert!(filter(&[]).matches(&start));
        assert!(filter(&["container=web"]).matches(&start));
        assert!(filter(&["container=abc"]).matches(&start), "ID prefix");
        assert!(!filter(&["container=web"]).matches(&pulled), "a container filter leaves out image events");
        assert!(filter(&["event=start", "event=die"]).matches(&start));
        assert!(!filter(&["event=start", "type=image"]).matches(&start));
        assert!(filter(&["event=exec_start"]).matches(&exec));
        assert!(!filter(&["event=exec"]).matches(&exec));
        assert!(filter(&["image=busybox"]).matches(&start), "tag stripped");
        assert!(filter(&["image=busybox"]).matches(&pulled));
        assert!(filter(&["label=tier"]).matches(&start));
        assert!(filter(&["label=tier=front"]).matches(&start));
        assert!(!filter(&["label=tier=back"]).matches(&start));
        assert!(!filter(&["label=tier", "label=other"]).matches(&start), "labels all match");
        assert!(EventFilter::parse(&["bogus=1".to_owned()]).is_err());
        assert!(EventFilter::parse(&["nokey".to_owned()]).is_err());
    }

    #[test]
    fn times_as_docker_reads_them() {
        let now = Timestamp { seconds: 1_700_000_000, nanos: 0 };
        let at = |s: i64| s * 1_000_000_000;
        assert_eq!(parse_time("10m", now).expect("ok"), at(1_700_000_000 - 600));
        assert_eq!(parse_time("1h30m", now).expect("ok"), at(1_700_000_000 - 5400));
        assert_eq!(parse_time("1700000100", now).expect("ok"), at(1_700_000_100));
        assert_eq!(parse_time("1700000100.5", now).expect("ok"), at(1_700_000_100) + 500_000_000);
        assert_eq!(parse_time("2023-11-14T22:13:20Z", now).expect("ok"), at(1_700_000_000));
        assert_eq!(parse_time("2023-11-14T22:13:20", now).expect("ok"), at(1_700_000_000));
        assert_eq!(parse_time("2023-11-14", now).expect("ok"), at(1_699_920_000));
        assert!(parse_time("yesterday", now).is_err());
    }

    #[test]
    fn pretty_line() {
        let mut e = event("container", "die", "abc", &[("name", "x"), ("exitCode", "3")]);
        e.time_nano = 1_700_000_000_000_000_005;
        assert_eq!(e.pretty(), "2023-11-14T22:13:20.000000005Z container die abc (exitCode=3, name=x)");
        assert_eq!(strip_tag("localhost:5000/a:b"), "localhost:5000/a");
        assert_eq!(strip_tag("localhost:5000/a"), "localhost:5000/a");
    }

    #[test]
    fn appends_rotates_and_skips_torn_lines() {
        let dir = tempfile::tempdir().expect("ok");
        let path = dir.path().join(EVENTS_FILE);
        append(&path, &event("volume", "create", "v1", &[])).expect("ok");
        fs::OpenOptions::new().append(true).open(&path).expect("ok").write_all(b"{\"Type\":\"vol").expect("ok");
        fs::OpenOptions::new().append(true).open(&path).expect("ok").write_all(b"\n").expect("ok");
        append(&path, &event("volume", "destroy", "v1", &[])).expect("ok");
        let data = fs::read(&path).expect("ok");
        let actions: Vec<String> = parse_lines(&data).map(|e| e.action).collect();
        assert_eq!(actions, ["create", "destroy"]);
        // Past the limit the next append starts a new generation.
        let file = fs::OpenOptions::new().append(true).open(&path).expect("ok");
        file.set_len(ROTATE_AT).expect("ok");
        append(&path, &event("volume", "create", "v2", &[])).expect("ok");
        assert!(rotated(&path).exists());
        assert_eq!(parse_lines(&fs::read(&path).expect("ok")).count(), 1);
    }
}
