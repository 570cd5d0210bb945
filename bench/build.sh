#!/bin/bash
# The reference build (../shared/peers/make-build-context.py: busybox base, ENV, WORKDIR, COPY of
# 2,000 files, RUN creating 500 files, RUN rm, VOLUME, CMD): strata vs buildah --layers, and vs
# BuildKit (/usr/bin/docker with DOCKER_BUILDKIT=1) when a docker daemon answers. Three cases:
# cold (empty cache), nothing changed, one file's content changed. All on the same disk.
# Usage: bench/build.sh [RUNS] (default 5). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
export OUT_DIR=${OUT_DIR:-/tmp/peers}
command -v buildah >/dev/null || bash "$PEERS/setup.sh" --no-docker
[ -f "$OUT_DIR/busybox-rootfs.tar" ] || bash "$PEERS/make-busybox-rootfs.sh" >/dev/null
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
cargo build -q --release
STRATA=$PWD/target/release/strata
WORK=/var/tmp/strata-build-bench
rm -rf "$WORK"; mkdir -p "$WORK"
python3 "$PEERS/make-build-context.py" "$WORK/ctx" >/dev/null
export STRATA_ROOT=$WORK/root
TAR=$OUT_DIR/busybox-rootfs.tar
CHANGE="python3 -c \"import os; open('$WORK/ctx/ctx/sub3/file_0003.dat','ab').write(os.urandom(8))\""
podman image exists base:latest || podman import -q "$TAR" base:latest >/dev/null

json() { python3 -c "import json,sys; print(json.load(open('$1'))['results'][0]['median'])"; }
bench() { # name prepare command
  hyperfine -N --runs "$RUNS" --prepare "$2" --export-json "$WORK/$1.json" "$3" >/dev/null 2>&1 \
    || hyperfine --runs "$RUNS" --prepare "$2" --export-json "$WORK/$1.json" "$3" >/dev/null
  json "$WORK/$1.json"
}

# strata
s_cold=$(bench s_cold "sh -c 'rm -rf $WORK/root; $STRATA import $TAR base >/dev/null'" "$STRATA build -q -t ref $WORK/ctx")
s_same=$(bench s_same "true" "$STRATA build -q -t ref $WORK/ctx")
s_one=$(bench s_one "$CHANGE" "$STRATA build -q -t ref $WORK/ctx")
# buildah
b_cold=$(bench b_cold "sh -c 'buildah rmi -f ref >/dev/null 2>&1; buildah rmi --prune >/dev/null 2>&1; true'" "buildah bud -q --layers -t ref $WORK/ctx")
b_same=$(bench b_same "true" "buildah bud -q --layers -t ref $WORK/ctx")
b_one=$(bench b_one "$CHANGE" "buildah bud -q --layers -t ref $WORK/ctx")
# BuildKit, when a daemon is up
k_cold=""; why=""
if [ -x /usr/bin/docker ] && /usr/bin/docker info >/dev/null 2>&1; then
  /usr/bin/docker image inspect base:latest >/dev/null 2>&1 || /usr/bin/docker import "$TAR" base:latest >/dev/null
  export DOCKER_BUILDKIT=1
  k_cold=$(bench k_cold "sh -c '/usr/bin/docker builder prune -af >/dev/null 2>&1; true'" "/usr/bin/docker build -q -t ref $WORK/ctx")
  k_same=$(bench k_same "true" "/usr/bin/docker build -q -t ref $WORK/ctx")
  k_one=$(bench k_one "$CHANGE" "/usr/bin/docker build -q -t ref $WORK/ctx")
else
  why="BuildKit not measured: no docker daemon answers (run ../shared/peers/setup.sh without --no-docker)."
fi

row() { # label strata buildah buildkit
  python3 - "$@" <<'PY'
import sys
label, s, b, k = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
kit = f"{float(k)*1000:.0f} ms ({float(k)/s:.1f}× strata)" if k else "–"
print(f"| {label} | {s*1000:.0f} ms | {b*1000:.0f} ms ({b/s:.1f}× strata) | {kit} |")
PY
}
{
  echo "## build (bench/build.sh, reference build, median of $RUNS)"
  echo
  echo "| case | strata | buildah --layers | BuildKit |"
  echo "|---|---|---|---|"
  row "cold" "$s_cold" "$b_cold" "$k_cold"
  row "nothing changed" "$s_same" "$b_same" "${k_same:-}"
  row "one file changed" "$s_one" "$b_one" "${k_one:-}"
  if [ -n "$why" ]; then echo; echo "$why"; fi
} | tee "$WORK/section.md"
python3 bench/update_results.py build < "$WORK/section.md"
rm -rf "$WORK"
