#!/bin/bash
# Bridge networking figures (issue 13), as ratios measured in one run on this machine:
#  1. `run --rm --network bridge IMAGE true` vs `--network none` (goal ≤ 1.3×; podman's pair too
#     when podman is installed);
#  2. TCP throughput host → container through a published port vs to its address directly
#     (goal ≥ 90%);
#  3. `run -d` of the 100th container on one network vs the 1st (goal ≤ 1.2×).
# Usage: bench/network.sh [RUNS] (default 30). Needs root, nft and hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-30}
command -v hyperfine >/dev/null || apt-get install -y -q hyperfine >/dev/null
command -v nft >/dev/null || apt-get install -y -q nftables >/dev/null
cargo build -q --release
STRATA=$PWD/target/release/strata
WORK=/var/tmp/strata-network-bench
rm -rf "$WORK"; mkdir -p "$WORK/rootfs/bin"
export STRATA_ROOT=$WORK/root
cp /bin/busybox "$WORK/rootfs/bin/"
for applet in $(/bin/busybox --list); do [ "$applet" = busybox ] || ln -sf busybox "$WORK/rootfs/bin/$applet"; done
tar -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
$STRATA import -c 'ENV PATH=/bin' "$WORK/rootfs.tar" bench:net >/dev/null

# 1. Start cost of a network.
commands=(-n "strata none" "$STRATA run --rm --network none bench:net true"
          -n "strata bridge" "$STRATA run --rm --network bridge bench:net true")
if command -v podman >/dev/null && podman image exists base:latest 2>/dev/null; then
  commands+=(-n "podman none" "podman run --rm --network none base true"
             -n "podman bridge" "podman run --rm --network bridge base true")
fi
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/start.json" "${commands[@]}" >/dev/null
python3 - "$WORK/start.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] * 1000 for x in json.load(open(sys.argv[1]))["results"]}
print(f"start: strata none {r['strata none']:.1f} ms, bridge {r['strata bridge']:.1f} ms "
      f"({r['strata bridge'] / r['strata none']:.2f}x, goal <= 1.3x)")
if "podman none" in r:
    print(f"start: podman none {r['podman none']:.1f} ms, bridge {r['podman bridge']:.1f} ms "
          f"({r['podman bridge'] / r['podman none']:.2f}x)")
PY

# 2. Throughput: 2 GB into a container's `nc -l`, through the published port and directly.
$STRATA run -d --name sink --network bridge -p 127.0.0.1:18500:80 bench:net \
  sh -c 'while true; do nc -l -p 80 > /dev/null; done' >/dev/null
sleep 0.5
address=$($STRATA inspect -f '{{.NetworkSettings.IPAddress}}' sink)
send() { # host port → seconds for 2 GB (until the receiver has it all: it closes after EOF)
  python3 - "$1" "$2" <<'PY'
import socket, sys, time
chunk = bytes(1 << 20)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
start = time.monotonic()
for _ in range(2048):
    s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(time.monotonic() - start)
PY
}
best() { local b=999; for _ in 1 2 3; do t=$(send "$1" "$2"); b=$(python3 -c "print(min($b, $t))"); sleep 0.2; done; echo "$b"; }
direct=$(best "$address" 80)
published=$(best 127.0.0.1 18500)
python3 -c "
d, p = $direct, $published
print(f'throughput: direct {2048/d:.0f} MB/s, published port {2048/p:.0f} MB/s ({d/p*100:.0f}%, goal >= 90%)')"
$STRATA rm -f sink >/dev/null

# 3. 100 containers on one network: the 1st and the 100th `run -d`.
times=()
for i in $(seq 100); do
  start=$(date +%s%N)
  $STRATA run -d --network bridge bench:net sleep 600 >/dev/null
  times+=($(( ($(date +%s%N) - start) / 1000 )))
done
python3 -c "
import statistics
t = [$(IFS=,; echo "${times[*]}")]
first = sum(t[:5]) / 5 / 1000; last = sum(t[-5:]) / 5 / 1000
print(f'100 on one network: run -d of the first five {first:.1f} ms, last five {last:.1f} ms ({last/first:.2f}x, goal <= 1.2x)')
# Medians of ten: one slow start (this machine has them at any count) moves a mean of five.
first = statistics.median(t[:10]) / 1000; last = statistics.median(t[-10:]) / 1000
print(f'100 on one network: median run -d of the first ten {first:.1f} ms, last ten {last:.1f} ms ({last/first:.2f}x)')"
$STRATA rm -f $($STRATA ps -q) >/dev/null
$STRATA network prune -f >/dev/null  # bridges and tables live on the host
rm -rf "$WORK"
