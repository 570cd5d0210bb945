//! `strata pull`, `push`, `login`, `logout`, `manifest inspect|referrers`, printing what Docker prints.

use std::io::Read;

use serde::Serialize;

use strata_engine::registry::{insecure_registries, PullEvent, PullOptions, PushEvent, PushOptions};
use strata_engine::Engine;

use crate::cli::{LoginArgs, LogoutArgs, ManifestInspectArgs, PullArgs, PushArgs, ReferrersArgs};
use crate::output::print;

/// The 12-hex short form Docker shows layers by.
fn short(digest: &strata_oci::Digest) -> String {
    digest.hex()[..12].to_owned()
}

/// Per-layer progress bars for a terminal.
#[derive(Default)]
struct Bars {
    multi: indicatif::MultiProgress,
    layers: std::sync::Mutex<std::collections::HashMap<strata_oci::Digest, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, digest: &strata_oci::Digest) -> indicatif::ProgressBar {
        let mut layers = self.layers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        layers
            .entry(digest.clone())
            .or_insert_with(|| {
                let style = indicatif::ProgressStyle::with_template(
                    "{prefix}: {msg:<18} [{bar:30}] {bytes:>10}/{total_bytes:<10}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> ");
                let bar = self.multi.add(indicatif::ProgressBar::new(0).with_style(style));
                bar.set_prefix(short(digest));
                bar
            })
            .clone()
    }

    fn show(&self, event: PullEvent) {
        match event {
            PullEvent::Start { tag, repository } => {
                let _ = self.multi.println(format!("{tag}: Pulling from {repository}"));
            }
            PullEvent::Exists(digest) => self.bar(&digest).finish_with_message("Already exists"),
            PullEvent::Progress { digest, done, total } => {
                let bar = self.bar(&digest);
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message("Downloading");
            }
            PullEvent::Downloaded(digest) => self.bar(&digest).set_message("Download complete"),
            PullEvent::Unpacked(digest) => {
                let bar = self.bar(&digest);
                if !bar.is_finished() {
                    bar.finish_with_message("Pull complete");
                }
            }
            PullEvent::MirrorFailed { mirror, error } => {
                let _ = self.multi.println(format!("mirror {mirror} failed ({error}); trying the next source"));
            }
        }
    }

    fn show_push(&self, event: PushEvent) {
        match event {
            PushEvent::Start(repository) => {
                let _ = self.multi.println(format!("The push refers to repository [{repository}]"));
            }
            PushEvent::Exists(digest) => self.bar(&digest).finish_with_message("Layer already exists"),
            PushEvent::Mounted(digest) => self.bar(&digest).finish_with_message("Mounted from another repository"),
            PushEvent::Progress { digest, done, total } => {
                let bar = self.bar(&digest);
                bar.set_length(total);
                bar.set_position(done);
                bar.set_message("Pushing");
            }
            PushEvent::Pushed(digest) => self.bar(&digest).finish_with_message("Pushed"),
        }
    }
}

/// Progress lines, on stdout as Docker prints them (nothing with `-q`).
fn say(quiet: bool, line: String) {
    if !quiet {
        let _ = print(&format!("{line}\n"));
    }
}

pub fn pull(engine: &Engine, args: PullArgs) -> anyhow::Result<u8> {
    let options = PullOptions {
        platform: args.platform.clone(),
        tls_verify: args.tls_verify,
        all_platforms: args.all_platforms,
        ..PullOptions::default()
    };
    let quiet = args.quiet;
    // A bar per layer on a terminal (indicatif), Docker's lines otherwise.
    let bars = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stdout())).then(Bars::default);
    let events = move |event: PullEvent| {
        if let Some(bars) = &bars {
            bars.show(event);
            return;
        }
        match event {
            PullEvent::Start { tag, repository } => say(quiet, format!("{tag}: Pulling from {repository}")),
            PullEvent::Exists(digest) => say(quiet, format!("{}: Already exists", short(&digest))),
            PullEvent::Downloaded(digest) => say(quiet, format!("{}: Pull complete", short(&digest))),
            PullEvent::Unpacked(_) | PullEvent::Progress { .. } => {}
            PullEvent::MirrorFailed { mirror, error } => {
                eprintln!("mirror {mirror} failed ({error}); trying the next source")
            }
        }
    };
    let report = engine.pull(&args.name, &options, &events)?;
    let shown = report.reference.familiar_string();
    say(quiet, format!("Digest: {}", report.digest));
    if report.up_to_date {
        say(quiet, format!("Status: Image is up to date for {shown}"));
    } else {
        say(quiet, format!("Status: Downloaded newer image for {shown}"));
    }
    print(&format!("{}\n", report.reference))?;
    Ok(0)
}

pub fn push(engine: &Engine, args: PushArgs) -> anyhow::Result<u8> {
    let quiet = args.quiet;
    let bars = (!quiet && std::io::IsTerminal::is_terminal(&std::io::stdout())).then(Bars::default);
    let events = move |event: PushEvent| {
        if let Some(bars) = &bars {
            bars.show_push(event);
            return;
        }
        match event {
            PushEvent::Start(repository) => say(quiet, format!("The push refers to repository [{repository}]")),
            PushEvent::Exists(digest) => say(quiet, format!("{}: Layer already exists", short(&digest))),
            PushEvent::Mounted(digest) => say(quiet, format!("{}: Mounted from another repository", short(&digest))),
            PushEvent::Pushed(digest) => say(quiet, format!("{}: Pushed", short(&digest))),
            PushEvent::Progress { .. } => {}
        }
    };
    let options = PushOptions {
        insecure: insecure_registries(),
        tls_verify: args.tls_verify,
        compression: args.compression.parse()?,
    };
    let report = engine.push(&args.name, &options, &events)?;
    if quiet {
        print(&format!("{}\n", args.name))?;
    } else {
        print(&format!("{}: digest: {} size: {}\n", report.tag, report.digest, report.size))?;
    }
    Ok(0)
}

/// The registries spoken to without checking certificates, `host` added with `--insecure`.
fn insecure_with(name: &str, insecure: bool) -> Vec<String> {
    let mut list = insecure_registries();
    if insecure {
        if let Ok(reference) = strata_oci::reference::parse_normalized_named(name) {
            list.push(reference.domain().to_owned());
        }
    }
    list
}

/// JSON indented as `docker manifest inspect` prints it (three spaces).
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut serializer)?;
    out.push(b'\n');
    print(&String::from_utf8(out)?)?;
    Ok(())
}

pub fn manifest_inspect(engine: &Engine, args: ManifestInspectArgs) -> anyhow::Result<u8> {
    let insecure = insecure_with(&args.name, args.insecure);
    let fetched = engine.remote_manifest(&args.name, &insecure, None)?;
    print_json(&serde_json::from_slice(&fetched.bytes)?)?;
    Ok(0)
}

pub fn referrers(engine: &Engine, args: ReferrersArgs) -> anyhow::Result<u8> {
    let insecure = insecure_with(&args.name, args.insecure);
    let (subject, found) = engine.referrers(&args.name, args.artifact_type.as_deref(), &insecure, None)?;
    if found.source == strata_engine::registry::ReferrersSource::TagSchema {
        eprintln!(
            "(no referrers API on this registry: read the referrers tag {})",
            subject.to_string().replace(':', "-")
        );
    }
    print_json(&found.index())?;
    Ok(0)
}

pub fn login(args: LoginArgs) -> anyhow::Result<u8> {
    let registry = strata_engine::registry::registry_host(args.server.as_deref());
    let username = match args.username {
        Some(user) => user,
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => anyhow::bail!("--password and --password-stdin are mutually exclusive"),
        (Some(password), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            password
        }
        (None, _) => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    if username.is_empty() || password.is_empty() {
        anyhow::bail!("Error: Cannot perform an interactive login from a non TTY device");
    }
    let credentials = strata_engine::registry::Credentials { username, secret: password };
    // Checked against the registry before anything is stored.
    if let Err(e) = strata_engine::registry::login(&registry, &credentials, args.tls_verify) {
        eprintln!("Error response from daemon: {e}");
        return Ok(1);
    }
    print("Login Succeeded\n")?;
    Ok(0)
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<u8> {
    let registry = strata_engine::registry::registry_host(args.server.as_deref());
    if strata_engine::registry::logout(&registry)? {
        print(&format!("Removing login credentials for {}\n", strata_engine::registry::config_key(&registry)))?;
    } else {
        print(&format!("Not logged in to {}\n", strata_engine::registry::config_key(&registry)))?;
    }
    Ok(0)
}
