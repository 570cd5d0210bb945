use strata_engine::Engine;

use crate::cli::ImageNamesArgs;
use crate::output::{print, print_error};

/// `strata image mount IMAGE...`: prints one mount point per image.
pub fn mount(engine: &Engine, args: ImageNamesArgs) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in &args.images {
        match engine.mount_image(name) {
            Ok(path) => print(&format!("{}\n", path.display()))?,
            Err(e) => {
                print_error(&e.into());
                status = 1;
            }
        }
    }
    Ok(status)
}

pub fn umount(engine: &Engine, args: ImageNamesArgs) -> anyhow::Result<u8> {
    let mut status = 0;
    for name in &args.images {
        if let Err(e) = engine.unmount_image(name) {
            print_error(&e.into());
            status = 1;
        }
    }
    Ok(status)
}
