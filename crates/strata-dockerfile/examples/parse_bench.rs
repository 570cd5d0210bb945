//! Times parsing of a generated 10,000-line Dockerfile (the speed goal: < 20 ms).
//! `cargo run --release -p strata-dockerfile --example parse_bench [LINES] [RUNS]`

use std::time::Instant;

fn generate(lines: usize) -> String {
    let mut text = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut stage = 0;
    while text.lines().count() < lines {
        text.push_str(&format!("FROM ${{BASE}} AS stage{stage}\n"));
        text.push_str("ARG VERSION=1.2.3\nENV PATH=/opt/bin:$PATH LANG=C.UTF-8 \\\n    HOME=/root\n");
        text.push_str("LABEL org.opencontainers.image.title=\"strata bench\" version=$VERSION\n");
        text.push_str("RUN --mount=type=cache,target=/var/cache/apt apt-get update && \\\n    apt-get install -y --no-install-recommends ca-certificates curl && \\\n    rm -rf /var/lib/apt/lists/*\n");
        text.push_str("COPY --chown=1000:1000 --chmod=755 src/ /app/src/\n");
        text.push_str("COPY <<EOF /etc/app.conf\nkey=value\nother=${VERSION}\nEOF\n");
        text.push_str("RUN [\"/bin/sh\", \"-c\", \"echo built ${VERSION}\"]\n");
        text.push_str("WORKDIR /app\nEXPOSE 8080/tcp 9090\nUSER 1000:1000\n");
        text.push_str("HEALTHCHECK --interval=30s --timeout=3s CMD curl -f http://localhost:8080/ || exit 1\n");
        text.push_str("ONBUILD RUN echo triggered\nCMD [\"/app/run\", \"--serve\"]\n\n");
        stage += 1;
    }
    text
}

fn main() {
    let mut args = std::env::args().skip(1);
    let lines: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(21);
    let text = generate(lines);
    let mut times = Vec::new();
    let mut instructions = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let dockerfile =
            strata_dockerfile::parse_dockerfile(&text, "Dockerfile").expect("the generated Dockerfile parses");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        instructions = dockerfile.stages.iter().map(|s| s.commands.len() + 1).sum::<usize>();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "lines={} bytes={} instructions={} median_ms={:.2} min_ms={:.2}",
        text.lines().count(),
        text.len(),
        instructions,
        times[times.len() / 2],
        times[0]
    );
}
