use strata_engine::Engine;

use crate::cli::InspectArgs;
use crate::output::{print, print_error, render_template};

/// Prints every image it finds; like Docker, a missing one is reported and makes the exit
/// status 1 without hiding the others.
pub fn run(engine: &Engine, args: InspectArgs) -> anyhow::Result<u8> {
    let mut found = Vec::new();
    let mut status = 0;
    for name in &args.images {
        match engine.inspect(name) {
            Ok(value) => found.push(value),
            Err(e) => {
                print_error(&e.into());
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
