//! `cargo fuzz run dockerfile`: the Dockerfile frontend must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_dockerfile::shell::{env_from_list, Lexer};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(parsed) = strata_dockerfile::parse(&text, "Dockerfile") {
        let _ = parsed.dump();
    }
    if let Ok(dockerfile) = strata_dockerfile::parse_dockerfile(&text, "Dockerfile") {
        let _ = strata_dockerfile::lint::lint(&dockerfile, "Dockerfile");
    }
    let env = env_from_list(&["A=abc", "EMPTY="]);
    let _ = Lexer::new('\\').process(&text, &env);
});
