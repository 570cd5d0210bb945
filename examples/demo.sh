#!/bin/bash
# strata's main job: make a busybox rootfs, import it as a base image, build an image on it from a
# Dockerfile, and run containers from it.
# Uses a throwaway store unless STRATA_ROOT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
export STRATA_ROOT=${STRATA_ROOT:-$(mktemp -d /tmp/strata-demo.XXXXXX)}
work=$(mktemp -d /tmp/strata-demo-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
R=$work/rootfs
mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root}
cp /bin/busybox "$R/bin/busybox"
for app in $(/bin/busybox --list-full); do
  [ "$app" = bin/busybox ] || { mkdir -p "$R/$(dirname "$app")"; ln -sf /bin/busybox "$R/$app"; }
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$R/etc/passwd"
printf 'root:x:0:\n' > "$R/etc/group"
tar --numeric-owner --owner=0 --group=0 -C "$R" -czf "$work/busybox.tar.gz" .

echo "+ strata import --change 'CMD [\"sh\"]' busybox.tar.gz busybox"
"$STRATA" import --change 'CMD ["sh"]' "$work/busybox.tar.gz" busybox
echo "+ strata images"; "$STRATA" images
echo "+ strata history busybox"; "$STRATA" history busybox
echo "+ strata inspect -f '{{json .Config}}' busybox"; "$STRATA" inspect -f '{{json .Config}}' busybox
echo "+ strata save busybox | strata load   (into a second store)"
"$STRATA" save busybox | STRATA_ROOT="$STRATA_ROOT/copy" "$STRATA" load
mkdir -p "$work/app"
printf 'hello from a strata-built image\n' > "$work/app/greeting.txt"
cat > "$work/app/Dockerfile" <<'DOCKERFILE'
FROM busybox
ARG WHO=world
ENV GREETING_FILE=/app/greeting.txt
WORKDIR /app
COPY greeting.txt ./
RUN echo "built for $WHO" >> greeting.txt
CMD ["sh", "-c", "cat $GREETING_FILE"]
DOCKERFILE
echo "+ strata build -t hello --build-arg WHO=you app/"; "$STRATA" build -t hello --build-arg WHO=you "$work/app"
echo "+ strata build -t hello --build-arg WHO=you app/   (again: every step from the cache)"
"$STRATA" build -t hello --build-arg WHO=you "$work/app"
echo "+ strata history hello"; "$STRATA" history hello
echo "+ strata run --rm hello"; "$STRATA" run --rm hello
echo "+ strata run --rm busybox sh -c 'hostname; id; ls /'"; "$STRATA" run --rm busybox sh -c 'hostname; id; ls /'
echo "+ strata run -d --name demo busybox sh -c 'echo hello from the container; sleep 60'"
"$STRATA" run -d --name demo busybox sh -c 'echo hello from the container; sleep 60'
sleep 0.3
echo "+ strata ps"; "$STRATA" ps
echo "+ strata logs demo"; "$STRATA" logs demo
echo "+ strata exec demo ps"; "$STRATA" exec demo ps
echo "+ strata rm -f demo"; "$STRATA" rm -f demo
echo "+ strata fsck"; "$STRATA" fsck
echo "store: $STRATA_ROOT"
