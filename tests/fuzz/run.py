#!/usr/bin/python3
"""Run portico's libFuzzer harnesses: make fuzz, and briefly in make test.

For each harness <h> (build/fuzz/fuzz_<h>):
  1. replay every file of tests/fuzz/regress/<h>/ (the crashes found
     before, each fixed): any failure fails the run;
  2. fuzz for --seconds from the committed seeds tests/fuzz/corpus/<h>/,
     new inputs going to build/fuzz/corpus/<h>/ (the seeds stay as they
     are), crashes to build/fuzz/crashes/<h>/.

Prints JSON lines {"bench": "fuzz", "metric", "value", "unit"}: per
harness its executions, seconds and crashes.  Exits 1 if any harness
crashed or a regression input failed.
"""
import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Seeds hold whole watch streams and list pages: inputs may be that big.
MAX_LEN = 1 << 16
# Every harness answers within milliseconds; a second is a hang.
TIMEOUT_S = 10
RSS_MB = 1536


FIGURES = threading.Lock()    # harnesses run side by side (--jobs)


def figure(metric, value, unit):
    line = json.dumps({"bench": "fuzz", "metric": metric, "value": value,
                       "unit": unit})
    with FIGURES:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def files(d):
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if not f.startswith("."))


def replay(binary, name):
    """The regression inputs of one harness: each must pass."""
    inputs = files(os.path.join(HERE, "regress", name))
    if not inputs:
        return True
    p = subprocess.run([binary, "-timeout=%d" % TIMEOUT_S,
                        "-rss_limit_mb=%d" % RSS_MB] + inputs,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace")
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-6000:])
        sys.stderr.write("fuzz: %s: a regression input fails again\n"
                         % name)
        return False
    figure(name + "_regressions", len(inputs), "inputs")
    return True


def fuzz(binary, name, seconds, build):
    work = os.path.join(build, "corpus", name)
    crashes = os.path.join(build, "crashes", name)
    os.makedirs(work, exist_ok=True)
    os.makedirs(crashes, exist_ok=True)
    seeds = os.path.join(HERE, "corpus", name)
    dicts = os.path.join(HERE, name + ".dict")
    cmd = [binary, "-max_total_time=%d" % seconds, "-print_final_stats=1",
           "-max_len=%d" % MAX_LEN, "-timeout=%d" % TIMEOUT_S,
           "-rss_limit_mb=%d" % RSS_MB, "-close_fd_mask=3",
           "-artifact_prefix=%s/" % crashes, work, seeds]
    if os.path.exists(dicts):
        cmd.insert(1, "-dict=" + dicts)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, errors="replace")
    took = time.monotonic() - t0
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", p.stdout)
    execs = int(m.group(1)) if m else 0
    crashed = p.returncode != 0
    figure(name + "_execs", execs, "execs")
    figure(name + "_seconds", round(took, 1), "s")
    figure(name + "_crashes", 1 if crashed else 0, "crashes")
    if crashed:
        sys.stderr.write(p.stdout[-8000:])
        sys.stderr.write("fuzz: %s crashed; the input is in %s\n"
                         % (name, crashes))
    return not crashed


def one(a, name):
    """A harness's regression inputs, then its run: whether both pass."""
    binary = os.path.join(a.bin, "fuzz_" + name)
    return replay(binary, name) and fuzz(binary, name, a.seconds, a.bin)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/fuzz")
    ap.add_argument("--seconds", type=int, default=60)
    # each harness is one process on one core: --jobs of them at once
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("harness", nargs="+")
    a = ap.parse_args()
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as pool:
        results = list(pool.map(lambda n: one(a, n), a.harness))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
