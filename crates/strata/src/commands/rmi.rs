use strata_engine::images::RemoveEvent;
use strata_engine::Engine;

use crate::cli::RmiArgs;
use crate::output::{print, print_error};

pub fn run(engine: &Engine, args: RmiArgs) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in &args.images {
        match engine.remove_image(name, args.force) {
            Ok(events) => print(&events.iter().map(describe).collect::<String>())?,
            Err(e) => {
                print_error(&e.into());
                status = 1;
            }
        }
    }
    Ok(status)
}

pub fn describe(event: &RemoveEvent) -> String {
    match event {
        RemoveEvent::Untagged(name) => format!("Untagged: {name}\n"),
        RemoveEvent::Deleted(id) => format!("Deleted: {id}\n"),
    }
}
