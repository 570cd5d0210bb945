use strata_engine::Engine;

use crate::cli::InspectArgs;
use crate::output::{print, print_error, render_template};

/// `strata inspect`: containers first, then images, as `docker inspect` looks them up.
pub fn any(engine: &Engine, args: InspectArgs) -> anyhow::Result<u8> {
    match args.kind.as_deref() {
        Some("container") => return containers(engine, args),
        Some("image") => return run(engine, args),
        Some("volume") => {
            return render(args, |name| Ok(serde_json::to_value(engine.inspect_volume(name)?)?));
        }
        Some("network") => return render(args, |name| super::networks::network_json(engine, name)),
        _ => {}
    }
    render(args, |name| match engine.find_container(name) {
        Ok(record) => Ok(engine.container_json(&record)),
        Err(_) => match engine.inspect(name) {
            Ok(image) => Ok(image),
            Err(strata_engine::EngineError::ImageNotFound(name)) => match engine.inspect_volume(&name) {
                Ok(volume) => Ok(serde_json::to_value(volume)?),
                Err(_) => {
                    super::networks::network_json(engine, &name).map_err(|_| anyhow::anyhow!("No such object: {name}"))
                }
            },
            Err(other) => Err(other.into()),
        },
    })
}

pub fn containers(engine: &Engine, args: InspectArgs) -> anyhow::Result<u8> {
    render(args, |name| Ok(engine.container_json(&engine.find_container(name)?)))
}

/// Prints every image it finds; like Docker, a missing one is reported and makes the exit
/// status 1 without hiding the others.
pub fn run(engine: &Engine, args: InspectArgs) -> anyhow::Result<u8> {
    render(args, |name| Ok(engine.inspect(name)?))
}

fn render(args: InspectArgs, lookup: impl Fn(&str) -> anyhow::Result<serde_json::Value>) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut status = 0;
    for name in &args.images {
        match lookup(name) {
            Ok(value) => found.push(value),
            Err(e) => {
                print_error(&e);
                status = 1;
            }
        }
    }
    match args.format.as_deref() {
        None | Some("json") => {
            print(&format!("{}\n", serde_json::to_string_pretty(&found)?))?;
        }
        Some(template) => {
            let mut out = String::new();
            for value in &found {
                out.push_str(&render_template(template, value)?);
                out.push('\n');
            }
            print(&out)?;
        }
    }
    Ok(status)
}
