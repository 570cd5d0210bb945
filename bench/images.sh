#!/bin/bash
# Side-by-side import / save / load of the ~120 MB Debian rootfs (debootstrap): strata vs podman,
# in one run on this machine. Prints a table with ratios and writes bench/RESULTS.md.
# Not run in CI. Needs root; installs the peers with ../shared/peers/setup.sh.
# Usage: bench/images.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PEERS=${PEERS:-$(cd .. && pwd)/shared/peers}
export OUT_DIR=${OUT_DIR:-/tmp/peers}
# make-debian-rootfs.sh looks for the mirror in /etc/apt/sources.list too, which may not exist.
export MIRROR=${MIRROR:-$(grep -h -o -E 'https?://[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v -E 'security|nodesource|cloud' | head -1)}
command -v podman >/dev/null || bash "$PEERS/setup.sh" --no-docker
[ -f "$OUT_DIR/debian-rootfs.tar" ] || bash "$PEERS/make-debian-rootfs.sh" >/dev/null
ROOTFS=$OUT_DIR/debian-rootfs.tar
cargo build --release -q
STRATA=$PWD/target/release/strata
WORK=/var/tmp/strata-bench
rm -rf "$WORK"; mkdir -p "$WORK"
export STRATA_ROOT=$WORK/root
M="python3 bench/measure.py $RUNS"
cat "$ROOTFS" > /dev/null   # page cache warm for both

measure() { # name prepare command
  read -r secs mib < <($M "$2" "$3")
  echo "$1 $secs $mib"
}

# import and load go into a fresh, empty store each run (strata --root, podman --root), and
# nothing is deleted until the end: this disk is much slower right after large deletions,
# which would otherwise be charged to whichever tool runs next.
fresh() { echo "d=$WORK/$1-\$(date +%s%N); mkdir -p \$d; echo \$d > $WORK/current; sync; sleep 1"; }
S_CUR="STRATA_ROOT=\$(cat $WORK/current)"
P_CUR="podman --root \$(cat $WORK/current)/root --runroot \$(cat $WORK/current)/run"
results=()
results+=("$(measure strata-import "$(fresh s)" "$S_CUR $STRATA import $ROOTFS deb:bench")")
results+=("$(measure podman-import "$(fresh p)" "$P_CUR import -q $ROOTFS deb:bench")")
# save: the image imported once into each tool's store.
$STRATA import "$ROOTFS" deb:bench >/dev/null
podman image exists deb:bench || podman import -q "$ROOTFS" deb:bench >/dev/null
results+=("$(measure strata-save "rm -f $WORK/s.tar; sync" "$STRATA save -o $WORK/s.tar deb:bench")")
results+=("$(measure podman-save "rm -f $WORK/p.tar; sync" "podman save -q -o $WORK/p.tar deb:bench")")
# load: both load the same docker-archive (podman's) into a fresh store.
results+=("$(measure strata-load "$(fresh s)" "$S_CUR $STRATA load -q -i $WORK/p.tar")")
results+=("$(measure podman-load "$(fresh p)" "$P_CUR load -q -i $WORK/p.tar")")
podman rmi -f deb:bench >/dev/null 2>&1 || true
for d in "$WORK"/p-*; do podman --root "$d/root" --runroot "$d/run" system reset -f >/dev/null 2>&1 || true; done
rm -rf "$WORK"

row() { # op
  local s p; s=($(printf '%s\n' "${results[@]}" | awk -v k="strata-$1" '$1==k{print $2, $3}'))
  p=($(printf '%s\n' "${results[@]}" | awk -v k="podman-$1" '$1==k{print $2, $3}'))
  local ratio; ratio=$(python3 -c "print(f'{${p[0]}/${s[0]}:.2f}')")
  echo "| $1 | ${s[0]} s | ${s[1]} MiB | ${p[0]} s | ${p[1]} MiB | ${ratio}× |"
}
size=$(du -m "$ROOTFS" | cut -f1)
entries=$(tar -tf "$ROOTFS" | wc -l)
{
  echo "## Image import / save / load vs podman (\`bench/images.sh\`)"
  echo
  echo "Latest run of \`bench/images.sh\` ($(date -u +%Y-%m-%d), $(nproc) cores, median of $RUNS runs; peak RSS is the largest of the runs)."
  echo "Input: Debian bookworm minbase rootfs from debootstrap, ${size} MB, ${entries} entries. Same disk for both stores."
  echo "podman $(podman --version | awk '{print $3}'); 'speed-up' is podman time / strata time (goal ≥ 2×, strata peak memory < 64 MiB)."
  echo
  echo "| operation | strata | strata peak RSS | podman | podman peak RSS | speed-up |"
  echo "|---|---|---|---|---|---|"
  row import; row save; row load
  echo
  echo "Both tools verify and store the layer and unpack it into their snapshot storage (strata: overlay"
  echo "snapshotter, checked entry by entry before the image becomes visible). import and load run into a fresh"
  echo "empty store each time and nothing is deleted until the end (this disk slows down after big deletions)."
  echo "Peak RSS is ru_maxrss of the measured process tree."
} | python3 bench/update_results.py images
cat bench/RESULTS.md
