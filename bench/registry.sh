#!/bin/bash
# Pull and push against Debian's docker-registry on 127.0.0.1, side by side in one run:
# strata vs docker (dockerd, when it answers) and skopeo (to containers-storage), plus plain
# `tar -x` of the same rootfs on the same disk as the floor. Images: debian:local (~121 MB,
# debootstrap) and big (busybox + 200 MB of text, one layer), put in the registry gzip-compressed
# by skopeo as Docker would push them. Each pull goes into an empty store.
# Usage: bench/registry.sh [RUNS] (default 5). Needs root; ../shared/peers/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
export OUT_DIR=${OUT_DIR:-/tmp/peers}
export MIRROR=${MIRROR:-$(grep -h -o -E 'https?://[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v -E 'security|nodesource|cloud' | head -1)}
command -v skopeo >/dev/null && command -v podman >/dev/null || bash "$PEERS/setup.sh" --no-docker
[ -f "$OUT_DIR/debian-rootfs.tar" ] || bash "$PEERS/make-debian-rootfs.sh" >/dev/null
[ -f "$OUT_DIR/big-rootfs.tar" ] || python3 "$PEERS/make-big-image.py" "$OUT_DIR" >/dev/null
cargo build --release -q
STRATA=$PWD/target/release/strata
WORK=/var/tmp/strata-registry-bench/$(date +%s)
mkdir -p "$WORK"
# Nothing is deleted while strata and tar -x are measured (they run first, a new directory per
# run; everything goes when the bench ends): after a mass deletion ext4 skips recently freed
# inodes while allocating for minutes, and the same pull took 0.4-3 s from one run to the next
# (see measure.py). Leave a few minutes between two benches. A fresh loop-mounted ext4 was
# tried instead: it makes big writes slow (the loop file's own writeback) and is not the disk.
PORT=5077
REG=127.0.0.1:$PORT
PORT=$PORT OUT_DIR=$WORK bash "$PEERS/start-registry.sh" >/dev/null
trap 'kill $(cat $WORK/pids/registry.pid) 2>/dev/null || true; rm -rf "$WORK"' EXIT
M="python3 bench/measure.py $RUNS"
measure() { read -r secs mib < <($M "$2" "$3"); echo "$1 $secs $mib"; }

# The images, into the registry through skopeo (gzip, as docker push would).
SEED=$WORK/seed
for image in debian big; do
  tarball=$OUT_DIR/$image-rootfs.tar
  $STRATA --root "$SEED" import "$tarball" "bench/$image:1" >/dev/null
  $STRATA --root "$SEED" save -o "$WORK/$image.tar" "bench/$image:1"
  skopeo copy -q --dest-tls-verify=false "docker-archive:$WORK/$image.tar" "docker://$REG/bench/$image:1" >/dev/null
done
DOCKER=""
if [ -x /usr/bin/docker ] && /usr/bin/docker info >/dev/null 2>&1; then DOCKER=/usr/bin/docker; fi

# The peers must not hold these layers already (setup.sh imports the same rootfs tarballs as
# debian:local and base:latest): removed before each of their runs.
P_CLEAN="podman rmi -af >/dev/null 2>&1; sync; true"
D_CLEAN="$DOCKER rmi -f \$($DOCKER images -aq) >/dev/null 2>&1; sync; true"
results=()
# Push first (before the peers' rmi runs delete anything): into a registry started empty for
# each run, so every blob is uploaded (a registry that has the blobs lets both tools skip or
# mount them).
PPORT=5078
fresh_registry="kill \$(cat $WORK/push/pids/registry.pid 2>/dev/null) 2>/dev/null; sleep 0.2; rm -rf $WORK/push; PORT=$PPORT OUT_DIR=$WORK/push bash $PEERS/start-registry.sh >/dev/null"
# A store per run, so every run compresses the layer (as skopeo does every run).
results+=("$(measure strata-push "$fresh_registry; $STRATA --root $WORK/p-{run} import $OUT_DIR/debian-rootfs.tar 127.0.0.1:$PPORT/push/debian:1 >/dev/null; sync" \
  "$STRATA --root $WORK/p-{run} push -q 127.0.0.1:$PPORT/push/debian:1")")
results+=("$(measure strata-push-plain "$fresh_registry" \
  "$STRATA --root $WORK/p-0 push -q --compression none 127.0.0.1:$PPORT/push/debian:1")")
results+=("$(measure skopeo-push "$fresh_registry" \
  "skopeo copy -q --dest-tls-verify=false docker-archive:$WORK/debian.tar docker://127.0.0.1:$PPORT/push/debian:1")")
kill "$(cat $WORK/push/pids/registry.pid)" 2>/dev/null || true
for image in debian big; do
  ref=$REG/bench/$image:1
  results+=("$(measure "strata-pull-$image" "sync" "$STRATA --root $WORK/s-$image-{run} pull -q $ref")")
  results+=("$(measure "tar-x-$image" "mkdir -p $WORK/t-$image-{run}; sync" "tar -xf $OUT_DIR/$image-rootfs.tar -C $WORK/t-$image-{run}")")
done
# The peers, which delete between runs.
for image in debian big; do
  ref=$REG/bench/$image:1
  results+=("$(measure "skopeo-pull-$image" "$P_CLEAN" \
    "skopeo copy -q --src-tls-verify=false docker://$ref containers-storage:cs-$image:1")")
  if [ -n "$DOCKER" ]; then
    results+=("$(measure "docker-pull-$image" "$D_CLEAN" "$DOCKER pull -q $ref")")
  fi
done

python3 - "${results[@]}" <<'PY' | tee "$WORK/section.md"
import sys
rows = {}
for line in sys.argv[1:]:
    name, secs, mib = line.split()
    rows[name] = (float(secs), float(mib))
def cell(name, base):
    if name not in rows: return "–"
    s, m = rows[name]
    ratio = f" ({s / rows[base][0]:.2f}× strata)" if base in rows and name != base else ""
    return f"{s:.2f} s{ratio}, {m:.0f} MiB"
print("## registry (bench/registry.sh, docker-registry on 127.0.0.1, median of runs)\n")
print("| case | strata | skopeo | docker | tar -x (floor) |")
print("|---|---|---|---|---|")
for image, label in (("debian", "pull debian:local (~121 MB, gzip)"), ("big", "pull big (200 MB text, one layer, gzip)")):
    print(f"| {label} | {cell(f'strata-pull-{image}', '')} | {cell(f'skopeo-pull-{image}', f'strata-pull-{image}')} | "
          f"{cell(f'docker-pull-{image}', f'strata-pull-{image}')} | {cell(f'tar-x-{image}', f'strata-pull-{image}')} |")
print(f"| push debian (to an empty registry, gzip) | {cell('strata-push', '')} | {cell('skopeo-push', 'strata-push')} | – | – |")
print(f"| push debian as stored (`--compression none`) | {cell('strata-push-plain', '')} | – | – | – |")
print("\nPushes first, then strata and tar -x, a new directory per run, nothing deleted meanwhile; skopeo"
      " and docker pulls last, their storage emptied (rmi) before each of their runs.")
PY
python3 bench/update_results.py registry < "$WORK/section.md"
