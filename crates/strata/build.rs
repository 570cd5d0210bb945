//! Records the commit and build date for `strata version` (both "unknown" outside a git
//! checkout; the date is the commit's, so a rebuild of the same commit is the same binary).
fn main() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    if let Some(commit) = git(&["rev-parse", "--short=7", "HEAD"]) {
        println!("cargo:rustc-env=STRATA_GIT_COMMIT={commit}");
    }
    if let Some(date) = git(&["log", "-1", "--format=%cd", "--date=format-local:%a %b %e %H:%M:%S %Y"]) {
        println!("cargo:rustc-env=STRATA_BUILT={date}");
    }
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
