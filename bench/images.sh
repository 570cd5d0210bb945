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

results=()
results+=("$(measure strata-import "$STRATA rmi -f deb:bench >/dev/null 2>&1 || true; $STRATA system prune -af >/dev/null" "$STRATA import $ROOTFS deb:bench")")
results+=("$(measure podman-import "podman rmi -f deb:bench >/dev/null 2>&1 || true" "podman import -q $ROOTFS deb:bench")")
results+=("$(measure strata-save "rm -f $WORK/s.tar" "$STRATA save -o $WORK/s.tar deb:bench")")
results+=("$(measure podman-save "rm -f $WORK/p.tar" "podman save -q -o $WORK/p.tar deb:bench")")
# Both load the same docker-archive (podman's), into a store without the image.
results+=("$(measure strata-load "$STRATA rmi -f deb:bench >/dev/null 2>&1 || true; $STRATA system prune -af >/dev/null" "$STRATA load -q -i $WORK/p.tar")")
results+=("$(measure podman-load "podman rmi -f deb:bench >/dev/null 2>&1 || true" "podman load -q -i $WORK/p.tar")")
podman rmi -f deb:bench >/dev/null 2>&1 || true

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
  echo "What each does: strata verifies the tar stream and stores the layer as one verified blob (fsynced); it"
  echo "unpacks a layer into a snapshot once, when a container or build first needs it (layers issue), so that"
  echo "cost is not in these figures. podman unpacks every layer into its overlay storage during import/load."
  echo "Peak RSS is ru_maxrss of the measured process tree."
} | python3 bench/update_results.py images
cat bench/RESULTS.md
