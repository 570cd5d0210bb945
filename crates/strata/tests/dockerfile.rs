//! `strata debug dockerfile`: BuildKit's dump through the real binary, and `--check`.

use std::path::Path;

use strata_testkit::{Run, TestRoot};

const STRATA: &str = env!("CARGO_BIN_EXE_strata");

fn debug(root: &TestRoot, args: &[&str]) -> Run {
    let mut command = root.strata(STRATA);
    command.arg("debug").arg("dockerfile").args(args);
    Run::of(command)
}

#[test]
fn dump_matches_buildkit_results() {
    let root = TestRoot::new();
    let cases = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../strata-dockerfile/tests/data/frontend/dockerfile/parser/testfiles");
    let mut checked = 0;
    for entry in std::fs::read_dir(&cases).expect("conformance data") {
        let case = entry.expect("entry").path();
        let expected = std::fs::read_to_string(case.join("result")).expect("result");
        let dockerfile = case.join("Dockerfile");
        let got = debug(&root, &[dockerfile.to_str().expect("utf-8")]).ok().stdout();
        assert_eq!(got, expected, "{}", case.display());
        checked += 1;
    }
    assert!(checked >= 33);
}

#[test]
fn errors_name_file_and_line() {
    let root = TestRoot::new();
    let file = root.path("Dockerfile");
    std::fs::write(&file, "FROM scratch\n\nCOPY --chwn=1 a /b\n").expect("write");
    let run = debug(&root, &["--check", file.to_str().expect("utf-8")]).fails();
    assert_eq!(
        run.stderr().trim(),
        format!("Error: {}:3: unknown flag: --chwn for COPY (did you mean --chown?)", file.display())
    );
}

#[test]
fn check_fails_on_secrets_and_passes_clean_files() {
    let root = TestRoot::new();
    let secret = root.path("secret.Dockerfile");
    std::fs::write(&secret, "FROM scratch\nARG GITHUB_TOKEN\nCMD [\"x\"]\n").expect("write");
    let run = debug(&root, &["--check", secret.to_str().expect("utf-8")]).fails();
    assert!(run.stdout().contains("SecretsUsedInArgOrEnv") && run.stdout().contains("--secret"), "{}", run.stdout());

    let clean = root.path("clean.Dockerfile");
    std::fs::write(&clean, "FROM scratch AS base\nENV A=1\nCMD [\"x\"]\n").expect("write");
    let run = debug(&root, &["--check", clean.to_str().expect("utf-8")]).ok();
    assert!(run.stdout().contains("0 warning(s)"), "{}", run.stdout());
}
