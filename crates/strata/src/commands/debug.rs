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
    let findings = lint(&dockerfile, &name);
    let mut out = String::new();
    for finding in &findings {
        out.push_str(&format!("{finding}\n  see {}\n", finding.url()));
    }
    out.push_str(&format!("Check complete, {} warning(s) found\n", findings.len()));
    print(&out)?;
    Ok(if findings.iter().any(|f| f.is_error()) { 1 } else { 0 })
}
