#!/usr/bin/env python3
"""Times a command over several runs: median wall seconds and peak RSS (MiB) of the process tree
it waits on. Usage: measure.py RUNS PREPARE_CMD CMD  (PREPARE_CMD may be '' ; runs untimed before each run)."""
import os, resource, statistics, subprocess, sys, time

runs, prepare, command = int(sys.argv[1]), sys.argv[2], sys.argv[3]
times, peaks = [], []
for _ in range(runs):
    if prepare:
        subprocess.run(prepare, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Each measurement runs in a fresh child so ru_maxrss is this run's alone.
    child = os.fork()
    if child == 0:
        start = time.perf_counter()
        result = subprocess.run(command, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            sys.stderr.write(result.stderr.decode(errors="replace"))
            os._exit(1)
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        with open(f"/tmp/measure.{os.getpid()}", "w") as f:
            f.write(f"{elapsed} {peak_kib}")
        os._exit(0)
    _, status = os.waitpid(child, 0)
    if status != 0:
        sys.exit(f"command failed: {command}")
    with open(f"/tmp/measure.{child}") as f:
        elapsed, peak = f.read().split()
    os.unlink(f"/tmp/measure.{child}")
    times.append(float(elapsed))
    peaks.append(int(peak) / 1024)
print(f"{statistics.median(times):.3f} {max(peaks):.1f}")
