#!/usr/bin/env python3
"""Builds the build corpus (crates/strata/tests/corpus) with strata and with a peer builder
(buildah, or docker's BuildKit), and lists every difference in the resulting file trees and
configs. Usage (as root, after ../shared/peers/setup.sh):

    bench/corpus-compare.py [--peer buildah|docker] [--strata target/release/strata] [CASE...]

Trees are compared entry by entry: type, mode, owner, size, content digest and link target
(times only for the reproducible case). Configs: Env, Cmd, Entrypoint, WorkingDir, User,
ExposedPorts, Volumes, Labels, StopSignal, Shell, OnBuild, Healthcheck. Cases whose `expect`
wants an error must fail with both. Prints a summary line per case and the differences; exit
status 0 even with differences (this is a report, not a test)."""

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "..", "crates", "strata", "tests", "corpus")
# Debian's docker.io CLI drives dockerd's own BuildKit without the buildx plugin.
DOCKER = os.environ.get("DOCKER", "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a peer adds by itself, reported apart: buildah's version label and the empty
# hosts/hostname/resolv.conf mount stubs it leaves in images.
PEER_ARTIFACTS = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
CONFIG_KEYS = ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels",
               "StopSignal", "Shell", "OnBuild", "Healthcheck"]


def run(cmd, env=None, check=True):
    result = subprocess.run(cmd, capture_output=True, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr.decode(errors='replace')}")
    return result


def tree(tar_bytes, with_times):
    entries = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
        for member in archive.getmembers():
            name = "/" + member.name.lstrip("./").rstrip("/")
            if name == "/":
                continue
            kind = "d" if member.isdir() else "l" if member.issym() else "h" if member.islnk() else "f" if member.isfile() else "?"
            digest = ""
            if member.isfile():
                digest = hashlib.sha256(archive.extractfile(member).read()).hexdigest()[:12]
            entry = f"{kind} {member.mode & 0o7777:o} {member.uid}:{member.gid} size={member.size if member.isfile() else 0} {digest}"
            if member.issym() or member.islnk():
                entry += f" -> {member.linkname}"
            if with_times:
                entry += f" mtime={member.mtime}"
            entries[name] = entry
    return entries


def expectations(case_dir):
    lines = [l.strip() for l in open(os.path.join(case_dir, "expect")) if l.strip() and not l.startswith("#")]
    args, env, error = [], {}, None
    for line in lines:
        if line.startswith("args "):
            args += [a.replace("{case}", case_dir) for a in line[5:].split()]
        elif line.startswith("env "):
            key, value = line[4:].split("=", 1)
            env[key] = value
        elif line.startswith("error "):
            error = line[6:]
    return args, env, error


class Strata:
    name = "strata"

    def __init__(self, binary, root):
        self.binary, self.root = binary, root

    def build(self, case, dockerfile, context, args, env, out_tar):
        cmd = [self.binary, "--root", self.root, "build", "--progress", "plain", "-t", f"corpus-{case}", "-f",
               dockerfile, "-o", f"type=tar,dest={out_tar}", *args, context]
        return run(cmd, env=env, check=False)

    def config(self, case):
        data = json.loads(run([self.binary, "--root", self.root, "inspect", f"corpus-{case}"]).stdout)
        return data[0].get("Config") or {}


class Buildah:
    name = "buildah"

    def build(self, case, dockerfile, context, args, env, out_tar):
        # Docker format: OCI configs drop SHELL, HEALTHCHECK and ONBUILD.
        result = run(["buildah", "build", "--format", "docker", "--layers", "-q", "-t", f"corpus-{case}", "-f",
                      dockerfile, *args, context], env=env, check=False)
        if result.returncode != 0:
            return result
        # An image mount, not `buildah from`: that would run the image's ONBUILD triggers.
        mount = run(["podman", "image", "mount", f"corpus-{case}"]).stdout.decode().strip()
        try:
            run(["tar", "-C", mount, "--numeric-owner", "-cf", out_tar, "."])
        finally:
            run(["podman", "image", "unmount", f"corpus-{case}"], check=False)
        return result

    def config(self, case):
        data = json.loads(run(["podman", "image", "inspect", f"corpus-{case}"]).stdout)
        return data[0].get("Config") or {}


class Docker:
    name = "docker"

    def build(self, case, dockerfile, context, args, env, out_tar):
        env = dict(env, DOCKER_BUILDKIT="1")
        result = run([DOCKER, "build", "-q", "-t", f"corpus-{case}", "-f", dockerfile, *args, context],
                     env=env, check=False)
        if result.returncode != 0:
            return result
        run([DOCKER, "build", "-q", "-f", dockerfile, "-o", f"type=tar,dest={out_tar}", *args, context], env=env)
        return result

    def config(self, case):
        data = json.loads(run([DOCKER, "image", "inspect", f"corpus-{case}"]).stdout)
        return data[0].get("Config") or {}


def normalize(config):
    out = {}
    for key in CONFIG_KEYS:
        value = config.get(key)
        if key == "Labels" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k != "io.buildah.version"}
        if value in ({}, [], "", None):
            value = None
        out[key] = value
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer", default="buildah", choices=["buildah", "docker"])
    parser.add_argument("--strata", default=os.path.join(HERE, "..", "target", "release", "strata"))
    parser.add_argument("cases", nargs="*")
    options = parser.parse_args()
    peer = Buildah() if options.peer == "buildah" else Docker()
    if not shutil.which(DOCKER if options.peer == "docker" else options.peer):
        print(f"SKIPPED: {options.peer} is not installed (run ../shared/peers/setup.sh)")
        return 0
    rootfs = "/tmp/peers/busybox-rootfs.tar"
    work = tempfile.mkdtemp(prefix="corpus-compare-")
    strata = Strata(os.path.abspath(options.strata), os.path.join(work, "root"))
    if options.peer == "buildah":
        # podman import gives the image a PATH; the same base for both.
        run([strata.binary, "--root", strata.root, "import", "-c", f"ENV PATH={DEFAULT_PATH}", rootfs, "busybox"])
        run(["podman", "import", "-q", rootfs, "busybox"])
    else:
        run([strata.binary, "--root", strata.root, "import", rootfs, "busybox"])
        run([DOCKER, "import", rootfs, "busybox"])
    cases = sorted(c for c in os.listdir(CORPUS) if os.path.isfile(os.path.join(CORPUS, c, "Dockerfile")))
    if options.cases:
        cases = [c for c in cases if c in options.cases]
    same = 0
    artifacts = 0
    for case in cases:
        case_dir = os.path.abspath(os.path.join(CORPUS, case))
        dockerfile, context = os.path.join(case_dir, "Dockerfile"), os.path.join(case_dir, "context")
        os.makedirs(context, exist_ok=True)
        args, extra_env, error = expectations(case_dir)
        env = dict(os.environ, **extra_env)
        outs, results = {}, {}
        for builder in (strata, peer):
            out_tar = os.path.join(work, f"{case}.{builder.name}.tar")
            results[builder.name] = builder.build(case, dockerfile, context, args, env, out_tar)
            outs[builder.name] = out_tar
        codes = {name: r.returncode for name, r in results.items()}
        differences = []
        if error is not None or any(codes.values()):
            if (codes["strata"] == 0) != (codes[peer.name] == 0):
                for name, result in results.items():
                    differences.append(f"{name} exit {result.returncode}: {result.stderr.decode(errors='replace').strip().splitlines()[-1:] }")
        else:
            with_times = "SOURCE_DATE_EPOCH" in extra_env
            ours = tree(open(outs["strata"], "rb").read(), with_times)
            theirs = tree(open(outs[peer.name], "rb").read(), with_times)
            for path in sorted(set(ours) | set(theirs)):
                stub = path in PEER_ARTIFACTS and path not in ours and " size=0 " in theirs.get(path, "")
                if stub:
                    artifacts += 1
                elif ours.get(path) != theirs.get(path):
                    differences.append(f"{path}: strata {ours.get(path, 'absent')} | {peer.name} {theirs.get(path, 'absent')}")
            a, b = normalize(strata.config(case)), normalize(peer.config(case))
            for key in CONFIG_KEYS:
                if a[key] != b[key]:
                    differences.append(f"config {key}: strata {json.dumps(a[key])} | {peer.name} {json.dumps(b[key])}")
        if differences:
            print(f"{case}: {len(differences)} difference(s)")
            for line in differences:
                print(f"    {line}")
        else:
            same += 1
            print(f"{case}: same")
    print(f"\n{same} of {len(cases)} cases identical between strata and {peer.name}"
          f" ({artifacts} empty mount stubs the peer left in its images not counted)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
