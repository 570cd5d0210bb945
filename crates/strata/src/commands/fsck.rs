use strata_engine::Engine;

use crate::output::print;

pub fn run(engine: &Engine) -> anyhow::Result<u8> {
    let report = engine.fsck()?;
    for fault in &report.faults {
        eprintln!("fault: {fault}");
    }
    print(&format!(
        "checked {} blobs and {} images: {} faults\n",
        report.blobs_checked,
        report.images_checked,
        report.faults.len()
    ))?;
    Ok(if report.faults.is_empty() { 0 } else { 1 })
}
