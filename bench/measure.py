#!/usr/bin/env python3
"""Times a command over several runs: median wall seconds and peak RSS (MiB) of the process tree
it waits on. Usage: measure.py RUNS PREPARE_CMD CMD  (PREPARE_CMD may be '' ; runs untimed before each run).
`{run}` in either command is replaced by the run's number: each run can use a directory of its own,
so no run creates files right after a mass deletion (ext4 then skips recently freed inodes while
allocating, which made the same pull 0.4-3 s from one run to the next)."""
import os, resource, statistics, subprocess, sys, time

runs, prepare, command = int(sys.argv[1]), sys.argv[2], sys.argv[3]
times, peaks = [], []
for run in range(runs):
    prepare_run, command_run = prepare.replace("{run}", str(run)), command.replace("{run}", str(run))
    if prepare:
        subprocess.run(prepare_run, shell=True, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Each measurement runs in a fresh child so ru_maxrss is this run's alone.
    child = os.fork()
    if child == 0:
        start = time.perf_counter()
        result = subprocess.run(command_run, shell=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
