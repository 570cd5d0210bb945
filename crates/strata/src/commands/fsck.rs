use strata_engine::Engine;

use crate::output::print;

pub fn run(engine: &Engine) -> anyhow::Result<u8> {
    let report = engine.fsck()?;
    for fault in &report.faults {
        eprintln!("fault: {fault}");
    }
    for (dir, size) in &report.leftovers {
        eprintln!(
            "leftover: {} ({}): an unpacked layer no record names, freed by the next prune",
            dir.display(),
            strata_oci::time::human_size(*size)
        );
    }
    print(&format!(
        "checked {} blobs and {} images: {} faults\n",
        report.blobs_checked,
        report.images_checked,
        report.faults.len()
    ))?;
    Ok(if report.faults.is_empty() { 0 } else { 1 })
}
