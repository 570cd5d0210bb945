#!/bin/bash
# `run --rm IMAGE true`: strata vs podman (--network none) vs bare crun on a prepared bundle of
# the same busybox rootfs, plus the monitor's memory with 100 detached containers.
# Usage: bench/run.sh [RUNS] (default 30). Needs root; installs peers with ../shared/peers/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
export OUT_DIR=${OUT_DIR:-/tmp/peers}
command -v podman >/dev/null || bash "$PEERS/setup.sh" --no-docker
[ -f "$OUT_DIR/busybox-rootfs.tar" ] || bash "$PEERS/make-busybox-rootfs.sh" >/dev/null
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
cargo build -q --release
STRATA=$PWD/target/release/strata
WORK=/var/tmp/strata-run-bench
rm -rf "$WORK"; mkdir -p "$WORK"
export STRATA_ROOT=$WORK/root
$STRATA import -q "$OUT_DIR/busybox-rootfs.tar" bench:busybox >/dev/null 2>&1 || $STRATA import "$OUT_DIR/busybox-rootfs.tar" bench:busybox >/dev/null
podman image exists base:latest || podman import -q "$OUT_DIR/busybox-rootfs.tar" base:latest >/dev/null
# A crun bundle of the same rootfs.
mkdir -p "$WORK/bundle/rootfs"
tar -xf "$OUT_DIR/busybox-rootfs.tar" -C "$WORK/bundle/rootfs"
(cd "$WORK/bundle" && crun spec && python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["true"]
c["process"]["terminal"] = False
json.dump(c, open("config.json", "w"))
PY
)
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/run.json" \
  -n strata "$STRATA run --rm bench:busybox true" \
  -n "podman --network none" "podman run --rm --network none base true" \
  -n "crun run (bundle)" "crun run --bundle $WORK/bundle bench-$$" >/dev/null
read -r strata podman crun < <(python3 -c "
import json; r={x['command']:x['median'] for x in json.load(open('$WORK/run.json'))['results']}
print(r['strata'], r['podman --network none'], r['crun run (bundle)'])")

# exec of `true` in a running container: strata vs crun on the same rootfs.
cp -r "$WORK/bundle" "$WORK/bundle-sleep"
python3 - "$WORK/bundle-sleep/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["process"]["args"] = ["sleep", "600"]; json.dump(c, open(sys.argv[1], "w"))
PY
crun run -d --bundle "$WORK/bundle-sleep" bench-exec-$$ >/dev/null
$STRATA run -d --name bench-exec bench:busybox sleep 600 >/dev/null
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/exec.json" \
  -n "strata exec" "$STRATA exec bench-exec true" \
  -n "crun exec" "crun exec bench-exec-$$ true" >/dev/null
read -r strata_exec crun_exec < <(python3 -c "
import json; r={x['command']:x['median'] for x in json.load(open('$WORK/exec.json'))['results']}
print(r['strata exec'], r['crun exec'])")
crun kill bench-exec-$$ KILL >/dev/null 2>&1 || true; sleep 0.2; crun delete -f bench-exec-$$ >/dev/null 2>&1 || true
$STRATA rm -f bench-exec >/dev/null

# 100 detached sleepers: RSS of their monitors.
for i in $(seq 100); do $STRATA run -d bench:busybox sleep 600 >/dev/null; done
sleep 1
rss_kb=$(ps -o rss=,args= -C strata | awk '/__monitor/ {s+=$1; n++} END {print s/n}')
monitors=$(ps -o args= -C strata | grep -c __monitor)
$STRATA rm -f $($STRATA ps -aq) >/dev/null
rm -rf "$WORK"

python3 bench/update_results.py run <<MD
## \`run --rm IMAGE true\` (\`bench/run.sh\`, $(date -u +%Y-%m-%d), hyperfine median of $RUNS)

| tool | median | strata is |
|---|---|---|
| strata run --rm | $(python3 -c "print(f'{$strata*1000:.1f} ms')") | 1× |
| podman run --rm --network none | $(python3 -c "print(f'{$podman*1000:.1f} ms')") | $(python3 -c "print(f'{$podman/$strata:.1f}× faster')") |
| crun run (prepared bundle) | $(python3 -c "print(f'{$crun*1000:.1f} ms')") | $(python3 -c "print(f'{$strata/$crun:.2f}× its time')") |

| \`exec\` of \`true\` in a running container | strata | crun exec |
|---|---|---|
| median | $(python3 -c "print(f'{$strata_exec*1000:.1f} ms')") | $(python3 -c "print(f'{$crun_exec*1000:.1f} ms')") ($(python3 -c "print(f'{$strata_exec/$crun_exec:.2f}')")× its time; goal < 2×) |

100 detached \`sleep 600\` containers: $monitors monitor processes, $(python3 -c "print(f'{$rss_kb/1024:.1f}')") MiB RSS each on average (goal < 2 MiB).
MD
tail -12 bench/RESULTS.md
