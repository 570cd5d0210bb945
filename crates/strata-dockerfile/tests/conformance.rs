//! BuildKit's own parser and shell test data (tests/data, copied from ../shared/conformance with
//! its SOURCE.txt and LICENSE): every case must give BuildKit's result.

use std::path::{Path, PathBuf};

use strata_dockerfile::parser;
use strata_dockerfile::shell::{env_from_list, Env, Lexer};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/frontend/dockerfile")
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(data().join(dir)).expect("conformance data").map(|e| e.expect("entry").path()).collect();
    cases.sort();
    cases
}

#[test]
fn parser_testfiles_dump_byte_for_byte() {
    let mut failures = Vec::new();
    let all = cases("parser/testfiles");
    assert!(all.len() >= 33, "expected BuildKit's 33 cases, found {}", all.len());
    for case in &all {
        let text = std::fs::read_to_string(case.join("Dockerfile")).expect("Dockerfile");
        let expected = std::fs::read_to_string(case.join("result")).expect("result");
        match parser::parse(&text, "Dockerfile") {
            Ok(result) if result.dump() == expected => {}
            Ok(result) => failures.push(format!("{}:\n--- want\n{expected}--- got\n{}", case.display(), result.dump())),
            Err(e) => failures.push(format!("{}: {e}", case.display())),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), all.len(), failures.join("\n"));
}

#[test]
fn parser_negative_cases_fail() {
    let all = cases("parser/testfiles-negative");
    assert_eq!(all.len(), 4);
    for case in all {
        let text = std::fs::read_to_string(case.join("Dockerfile")).expect("Dockerfile");
        let result = parser::parse(&text, "Dockerfile");
        assert!(result.is_err(), "{} should fail, got {:?}", case.display(), result.map(|r| r.dump()));
    }
}

#[test]
fn line_numbers_match() {
    let text = std::fs::read_to_string(data().join("parser/testfile-line/Dockerfile")).expect("Dockerfile");
    let result = parser::parse(&text, "Dockerfile").expect("parses");
    assert_eq!((result.location.start, result.location.end), (5, 31));
    let lines: Vec<(usize, usize)> = result.nodes.iter().map(|n| (n.location.start, n.location.end)).collect();
    assert_eq!(lines, vec![(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn shell_env_var_test() {
    let text = std::fs::read_to_string(data().join("shell/envVarTest")).expect("envVarTest");
    let env: Env = env_from_list(&["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]);
    let lexer = Lexer::new('\\');
    let mut failures = Vec::new();
    let mut count = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '|').collect();
        assert_eq!(fields.len(), 3, "bad line {line:?}");
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform == "W" {
            continue;
        }
        count += 1;
        let got = lexer.process_word(input, &env);
        match (expected, got) {
            ("error", Err(_)) => {}
            ("error", Ok(value)) => failures.push(format!("{input:?}: want error, got {value:?}")),
            (want, Ok(value)) if value == want => {}
            (want, got) => failures.push(format!("{input:?}: want {want:?}, got {got:?}")),
        }
    }
    assert!(count >= 220, "read {count} cases");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn shell_words_test() {
    let text = std::fs::read_to_string(data().join("shell/wordsTest")).expect("wordsTest");
    let lexer = Lexer::new('\\');
    let mut env = Env::new();
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(assignment) = line.strip_prefix("ENV ") {
            let (key, value) = assignment.split_once('=').expect("k=v");
            env.insert(key.to_owned(), value.to_owned());
            continue;
        }
        let (input, expected) = line.split_once('|').expect("input | words");
        let input = input.trim();
        let expected: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        match (expected.as_slice(), lexer.process_words(input, &env)) {
            (["error"], Err(_)) => {}
            (want, Ok(got)) if got == want => {}
            (want, got) => failures.push(format!("{input:?}: want {want:?}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
