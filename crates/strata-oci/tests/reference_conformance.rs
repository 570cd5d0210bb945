//! Every case of distribution/reference's test tables (transcribed with the real library's
//! outputs in tests/data/reference-cases.txt) must give the same result here.

use strata_oci::reference::{self, AnyReference, Reference};

const CASES: &str = include_str!("data/reference-cases.txt");

fn describe_parse(r: &Reference) -> String {
    let mut s = format!("OK string=\"{r}\" name=\"{}\" domain=\"{}\" path=\"{}\"", r.name(), r.domain(), r.path());
    push_tag_digest(&mut s, r);
    s
}

fn describe_normalized(r: &Reference) -> String {
    let mut s = format!(
        "OK string=\"{r}\" familiar=\"{}\" name=\"{}\" domain=\"{}\" path=\"{}\"",
        r.familiar_string(),
        r.name(),
        r.domain(),
        r.path()
    );
    push_tag_digest(&mut s, r);
    s
}

fn push_tag_digest(s: &mut String, r: &Reference) {
    if let Some(tag) = r.tag() {
        s.push_str(&format!(" tag=\"{tag}\""));
    }
    if let Some(digest) = r.digest() {
        s.push_str(&format!(" digest=\"{digest}\""));
    }
}

fn or_err<T>(result: Result<T, reference::ReferenceError>, ok: impl Fn(&T) -> String) -> String {
    match result {
        Ok(value) => ok(&value),
        Err(e) => format!("ERR {e}"),
    }
}

#[test]
fn section_b_matches_the_real_library_for_every_input() {
    let mut failures = Vec::new();
    let mut count = 0;
    for line in CASES.lines().filter(|l| l.starts_with("B\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let input: String = serde_json::from_str(cols[1]).expect("input is a JSON string");
        let got = [
            or_err(reference::parse(&input), describe_parse),
            or_err(reference::parse_normalized_named(&input), describe_normalized),
            or_err(reference::parse_docker_ref(&input), |r| format!("OK {r}")),
            or_err(reference::parse_any(&input), |r| match r {
                AnyReference::Named(named) => format!("OK {} {named}", named.go_type()),
                AnyReference::Digest(digest) => format!("OK reference.digestReference {digest}"),
            }),
        ];
        for (i, (want, got)) in cols[2..6].iter().zip(got.iter()).enumerate() {
            if want != got {
                let function = ["Parse", "ParseNormalizedNamed", "ParseDockerRef", "ParseAnyReference"][i];
                failures.push(format!("{function}({input:?}):\n  want {want}\n  got  {got}"));
            }
        }
        count += 1;
    }
    assert!(count > 150, "expected the whole table, read {count} cases");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn section_a_parse_table() {
    let mut failures = Vec::new();
    for line in CASES.lines().filter(|l| l.starts_with("A\t")) {
        let cols: Vec<&str> = line.split('\t').collect();
        let input: String = serde_json::from_str(cols[1]).expect("input is a JSON string");
        let got = match reference::parse(&input) {
            Ok(r) => format!(
                "ok repository=\"{}\" domain=\"{}\" tag=\"{}\" digest=\"{}\"",
                r.name(),
                r.domain(),
                r.tag().unwrap_or(""),
                r.digest().map(|d| d.to_string()).unwrap_or_default()
            ),
            Err(e) => format!("err {e}"),
        };
        // The error column is `err Symbol "message"`: compare the message.
        let want = match cols[2].strip_prefix("err ") {
            Some(rest) => {
                let message = rest.split_once(' ').map(|(_, m)| m).unwrap_or(rest);
                format!("err {}", serde_json::from_str::<String>(message).expect("quoted message"))
            }
            None => cols[2].to_owned(),
        };
        if want != got {
            failures.push(format!("Parse({input:?}):\n  want {want}\n  got  {got}"));
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
}
