#!/bin/bash
# The whole test suite, on a fresh Debian machine of this project's kind (as root).
# Installs what the tests use: busybox-static (the base rootfs), skopeo and umoci (interop),
# docker-registry (the registry the pull/push tests talk to), apache2-utils (its htpasswd), openssl
# (test CAs and token signatures), curl (writes an index into the registry) and nftables (bridge
# networks: published ports and masquerading).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends busybox-static skopeo umoci docker-registry apache2-utils openssl curl gcc libc6-dev nftables iptables >/dev/null
fi
cargo test --workspace --locked
