#!/bin/bash
# Parse speed of the Dockerfile frontend on a generated 10,000-line Dockerfile (goal < 20 ms).
# BuildKit's parser is not run here: its Go source is not reachable offline (only Debian's packages are, and
# none ships it), so strata's figure stands alone.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cargo run -q --release -p strata-dockerfile --example parse_bench -- 10000 41)
echo "$out"
eval "$(echo "$out" | tr ' ' '\n' | grep '=')"
python3 bench/update_results.py dockerfile <<MD
## Dockerfile parsing (\`bench/dockerfile.sh\`, $(date -u +%Y-%m-%d))

Generated Dockerfile: $lines lines, $bytes bytes, $instructions instructions (continuations, heredocs,
flags, JSON and shell forms). Text → typed instructions in stages, median of 41 runs:
**$median_ms ms** (min $min_ms ms; goal < 20 ms). BuildKit's Go parser could not be run beside it
here (its Go source is not reachable from this machine: no Debian package ships it), so there is no ratio.
MD
