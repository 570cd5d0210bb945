#!/usr/bin/env python3
"""Layer apply and diff, strata vs the peers, in one run on the same disk (bench/RESULTS.md).

apply: the Debian rootfs as one gzip layer (gzip -6, as registries usually serve) and as zstd,
       strata (library apply, the path pull/load/import use) vs `umoci raw unpack` of the same
       layer vs `podman load` of an OCI archive holding it vs `tar -xzf` + `sha256sum`.
diff:  the unpacked tree back into a gzip-1 layer, strata vs `tar -c | gzip -1`.

Runs are interleaved (one of each tool per round), each into a fresh directory (podman: a fresh
--root), with nothing deleted until the end: this disk is much slower right after large deletions,
which would otherwise be charged to whichever tool runs next.
Usage: bench/layers.py [ROUNDS]   (needs root; run ../shared/peers/setup.sh first)
"""
import hashlib, json, os, pathlib, resource, shutil, statistics, subprocess, sys, tempfile, time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
REPO = pathlib.Path(__file__).resolve().parent.parent
PEERS = pathlib.Path(os.environ.get("OUT_DIR", "/tmp/peers"))
ROOTFS = PEERS / "debian-rootfs.tar"
WORK = pathlib.Path("/var/tmp/strata-layers-bench")

def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, **kw)

def settle():
    os.sync()
    time.sleep(1.0)

COUNTER = [0]

def fresh(prefix):
    COUNTER[0] += 1
    return WORK / f"{prefix}-{COUNTER[0]}"

def timed(cmd):
    """Wall seconds and peak RSS (MiB) of one command, in a fresh child."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.execvp("sh", ["sh", "-c", cmd + " >/dev/null"])
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"failed: {cmd}")
    return elapsed, usage.ru_maxrss / 1024

def main():
    if not ROOTFS.exists():
        sys.exit(f"{ROOTFS} missing: run ../shared/peers/setup.sh (MIRROR=http://deb.debian.org/debian if it stops early)")
    sh(f"cd {REPO} && cargo build -q --release -p strata-layer --examples")
    apply_bin = REPO / "target/release/examples/apply"
    diff_bin = REPO / "target/release/examples/diff"
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    gz = WORK / "layer.tar.gz"
    zst = WORK / "layer.tar.zst"
    sh(f"gzip -6 -c {ROOTFS} > {gz}")
    sh(f"zstd -q -3 -c {ROOTFS} > {zst}")
    diff_id = "sha256:" + hashlib.sha256(ROOTFS.read_bytes()).hexdigest()
    # An OCI layout (and archive) holding the gzip layer, for umoci and podman.
    layout = WORK / "layout"
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)
    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}
    layer = put(gz.read_bytes())
    config = put(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode())
    manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}).encode())
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
         "annotations": {"org.opencontainers.image.ref.name": "bench"}}]}))
    archive = WORK / "layout.tar"
    sh(f"tar -C {layout} -cf {archive} .")

    tools = {
        "strata apply (gzip)": lambda t: f"{apply_bin} {gz} {t}",
        "strata apply (zstd)": lambda t: f"{apply_bin} {zst} {t}",
        "umoci raw unpack": lambda t: f"umoci raw unpack --image {layout}:bench {t}",
        "podman load": lambda t: f"podman --root {t}/root --runroot {t}/run load -q -i {archive}",
        "tar -xzf + sha256sum": lambda t: f"mkdir -p {t} && tar -xzf {gz} -C {t} && sha256sum {gz}",
    }
    results = {name: [] for name in tools}
    podman_roots = []
    for _ in range(ROUNDS):
        for name, cmd in tools.items():
            target = fresh("target")
            if name == "podman load":
                podman_roots.append(target)
            settle()
            results[name].append(timed(cmd(target)))
    for root in podman_roots:
        subprocess.run(f"podman --root {root}/root --runroot {root}/run system reset -f", shell=True, capture_output=True)

    # diff: the unpacked tree back into a gzip-1 layer.
    target = fresh("target")
    sh(f"{apply_bin} {gz} {target}")
    diffs = {
        "strata diff (gzip-1)": f"{diff_bin} {target} gzip {WORK}/out.tar.gz",
        "strata diff (zstd-3)": f"{diff_bin} {target} zstd {WORK}/out.tar.zst",
        "tar -c | gzip -1": f"tar -C {target} -cf - . | gzip -1 > {WORK}/tar.tar.gz",
    }
    diff_results = {name: [] for name in diffs}
    for _ in range(ROUNDS):
        for name, cmd in diffs.items():
            diff_results[name].append(timed(cmd))

    # The same applies on tmpfs: no disk, only the CPU cost of each tool.
    tmpfs = WORK / "tmpfs"
    tmpfs.mkdir()
    sh(f"mount -t tmpfs -o size=2g strata-bench {tmpfs}")
    cpu_tools = {name: cmd(tmpfs / "t") for name, cmd in tools.items()
                 if name.startswith("strata") or name.startswith("tar")}
    cpu_results = {name: [] for name in cpu_tools}
    try:
        for _ in range(ROUNDS):
            for name, cmd in cpu_tools.items():
                shutil.rmtree(tmpfs / "t", ignore_errors=True)
                cpu_results[name].append(timed(cmd))
    finally:
        sh(f"umount {tmpfs}")

    def row(name, runs):
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        return seconds, peak
    lines = [f"## Layer apply and diff (`bench/layers.py`, {time.strftime('%Y-%m-%d')}, median of {ROUNDS} interleaved rounds)", "",
             f"Layer: the Debian minbase rootfs ({ROOTFS.stat().st_size // 1_000_000} MB tar, 6,675 entries) as gzip -6 "
             f"({gz.stat().st_size // 1_000_000} MB) and zstd -3 ({zst.stat().st_size // 1_000_000} MB). Every run goes "
             "into a fresh directory after a sync; nothing is deleted until the end.", "",
             "| apply | seconds | peak RSS | vs strata gzip |", "|---|---|---|---|"]
    base = row("strata apply (gzip)", results["strata apply (gzip)"])[0]
    for name, runs in results.items():
        seconds, peak = row(name, runs)
        lines.append(f"| {name} | {seconds:.2f} | {peak:.0f} MiB | {seconds / base:.2f}× |")
    lines += ["", "Same applies onto tmpfs (no disk: CPU cost only):", "", "| apply on tmpfs | seconds | vs strata gzip |", "|---|---|---|"]
    cpu_base = row("", cpu_results["strata apply (gzip)"])[0]
    for name, runs in cpu_results.items():
        seconds, _ = row(name, runs)
        lines.append(f"| {name} | {seconds:.2f} | {seconds / cpu_base:.2f}× |")
    lines += ["", "| diff of the unpacked tree | seconds | peak RSS | vs tar -c \\| gzip -1 |", "|---|---|---|---|"]
    tar_seconds = row("tar -c | gzip -1", diff_results["tar -c | gzip -1"])[0]
    for name, runs in diff_results.items():
        seconds, peak = row(name, runs)
        lines.append(f"| {name} | {seconds:.2f} | {peak:.0f} MiB | {seconds / tar_seconds:.2f}× |")
    text = "\n".join(lines)
    print(text)
    subprocess.run([sys.executable, str(REPO / "bench/update_results.py"), "layers"], input=text.encode(), check=True)
    shutil.rmtree(WORK, ignore_errors=True)

main()
