#!/bin/bash
# Side by side: the key paths `inspect` prints for a container and an image, strata vs dockerd
# (run ../shared/peers/setup.sh first; base:latest is the busybox rootfs in both).
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
work=$(mktemp -d /tmp/strata-keys.XXXXXX)
export STRATA_ROOT=$work/root
trap 'docker rm -f keys >/dev/null 2>&1; "$STRATA" rm -f keys >/dev/null 2>&1; rm -rf "$work"' EXIT
"$STRATA" import /tmp/peers/busybox-rootfs.tar base:latest >/dev/null
docker run -d --name keys base:latest sleep 60 >/dev/null
"$STRATA" run -d --name keys base:latest sleep 60 >/dev/null
docker inspect keys >"$work/d-ctr.json"; docker image inspect base:latest >"$work/d-img.json"
"$STRATA" inspect keys >"$work/s-ctr.json"; "$STRATA" image inspect base:latest >"$work/s-img.json"
python3 - "$work" "$(docker version --format '{{.Server.Version}}')" <<'PY'
import json, sys
work, version = sys.argv[1], sys.argv[2]
def keys(v, p=''):
    out = set()
    if isinstance(v, dict):
        for k, x in v.items():
            out.add(p + '.' + k); out |= keys(x, p + '.' + k)
    return out
print(f"| inspect of | dockerd {version} keys | strata keys | dockerd's keys strata lacks | strata's keys dockerd lacks |")
print("|---|---|---|---|---|")
for kind, name in [('ctr', 'container'), ('img', 'image')]:
    d = keys(json.load(open(f'{work}/d-{kind}.json'))[0]); s = keys(json.load(open(f'{work}/s-{kind}.json'))[0])
    lack = sorted(d - s); extra = sorted(s - d)
    short = lambda l: (', '.join(l[:4]) + (f' (+{len(l) - 4})' if len(l) > 4 else '')) or '–'
    print(f"| {name} | {len(d)} | {len(s)} | {len(lack)}: {short(lack)} | {len(extra)}: {short(extra)} |")
PY
