use std::io::Read;

use anyhow::Context;
use strata_dockerfile::lint::lint;

use crate::cli::DebugDockerfileArgs;
use crate::output::print;

/// `strata debug dockerfile [--check] FILE`: BuildKit's parser dump, or the lint findings.
pub fn dockerfile(args: DebugDockerfileArgs) -> anyhow::Result<u8> {
    let (text, name) = if args.file == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("read the Dockerfile from stdin")?;
        (text, "Dockerfile".to_owned())
    } else {
        let text = std::fs::read_to_string(&args.file).with_context(|| format!("read {}", args.file))?;
        (text, args.file.clone())
    };
    if !args.check {
        let parsed = strata_dockerfile::parse(&text, &name)?;
        for warning in &parsed.warnings {
            eprintln!("{warning}");
        }
        print(&parsed.dump())?;
        return Ok(0);
    }
    let dockerfile = strata_dockerfile::parse_dockerfile(&text, &name)?;
    let (report, failed) = check_report(&lint(&dockerfile, &name));
    print(&report)?;
    Ok(if failed { 1 } else { 0 })
}

/// The findings of the build checks as `--check` prints them, and whether one fails the check.
pub fn check_report(findings: &[strata_dockerfile::lint::Warning]) -> (String, bool) {
    let mut out = String::new();
    for finding in findings {
        out.push_str(&format!("{finding}\n  see {}\n", finding.url()));
    }
    out.push_str(&format!("Check complete, {} warning(s) found\n", findings.len()));
    (out, findings.iter().any(|f| f.is_error()))
}
