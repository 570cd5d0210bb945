//! Property: no input makes the frontend panic. Random bytes and random soups of Dockerfile
//! tokens go through the parser, the instruction parser, the lint and the lexer; every error
//! must name a line inside the input.

use strata_dockerfile::lint::lint;
use strata_dockerfile::shell::{env_from_list, Lexer};
use strata_dockerfile::{parse, parse_dockerfile};

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "FROM ",
    "from ",
    "RUN ",
    "COPY ",
    "ADD ",
    "ENV ",
    "ARG ",
    "LABEL ",
    "CMD ",
    "ENTRYPOINT ",
    "ONBUILD ",
    "HEALTHCHECK ",
    "SHELL ",
    "EXPOSE ",
    "VOLUME ",
    "WORKDIR ",
    "USER ",
    "STOPSIGNAL ",
    "MAINTAINER ",
    "AS ",
    "NONE",
    "CMD",
    "\n",
    "\n",
    "\n",
    " ",
    " ",
    "\t",
    "\\\n",
    "`\n",
    "\\",
    "`",
    "# escape=`\n",
    "# syntax=x\n",
    "#",
    "# c\n",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF\n",
    "\tEOF\n",
    "$",
    "${",
    "}",
    "${A:-",
    "${A#",
    "${A%%",
    "${A/",
    "/",
    ":",
    "?",
    "'",
    "\"",
    "[",
    "]",
    "[\"a\", \"b\"]",
    ",",
    "=",
    "a=b",
    "k v",
    "--",
    "--from=x",
    "--mount=type=cache,target=/c",
    "--mount=",
    "--chown=1:1",
    "--link",
    "--network=none",
    "--platform=$P",
    "--interval=5s",
    "--retries=-1",
    "x",
    "é",
    "안녕",
    "\u{0}",
    "\r\n",
    "*",
    "**",
    "\u{feff}",
    "--exclude=*.md",
    "--parents",
    "--checksum=sha256:0",
];

fn check(text: &str) {
    let lines = text.lines().count().max(1) + 1;
    match parse(text, "Dockerfile") {
        Ok(parsed) => {
            let _ = parsed.dump();
            for node in &parsed.nodes {
                assert!(node.location.start >= 1 && node.location.end <= lines, "{text:?}: {:?}", node.location);
            }
        }
        Err(e) => assert!(e.location.start <= lines, "{text:?}: error line {} > {lines}", e.location.start),
    }
    match parse_dockerfile(text, "Dockerfile") {
        Ok(dockerfile) => {
            let _ = lint(&dockerfile, "Dockerfile");
        }
        Err(e) => assert!(e.to_string().starts_with("Dockerfile:"), "{e}"),
    }
    let env = env_from_list(&["A=abc", "EMPTY="]);
    let mut lexer = Lexer::new('\\');
    let _ = lexer.process(text, &env);
    lexer.raw_quotes = true;
    lexer.skip_unset_env = true;
    let _ = lexer.process_words(text, &env);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn random_token_soups_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..20000 {
        let count = rng.below(40);
        let text: String = (0..count).map(|_| TOKENS[rng.below(TOKENS.len())]).collect();
        check(&text);
    }
}
