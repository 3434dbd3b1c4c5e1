"""bench_ctl_tables — porticoctl clusters, routes and ports over allocd's
tables at fleet size.

A real allocd, on a scratch folder, is fed through its input socket (a
ZeroMQ DEALER, as watcherd is) CLUSTERS clusters and ROUTES routes
spread over them, each cluster as one resync, then an APPLIED from the
one proxy for allocd's last seq, so every route is live; WAITING more
routes find the pool full and wait. Each command then runs to
completion, its output to /dev/null; wall time and peak RSS come from
/usr/bin/time. JSON lines on stdout:
    {"bench": "ctl_tables", "metric": "...", "value": N, "unit": "..."}

    PORTICO_BIN=build/bin python3 tests/bench/bench_ctl_tables.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import testlib  # noqa: E402

CLUSTERS = 20
ROUTES = 10000          # the pool's size: every one gets a port
WAITING = 2000          # past it: refused, waiting for a port
LO = 20000
EV = {"CLUSTER_UP": 10, "ROUTE": 12, "SYNC_BEGIN": 14, "SYNC_END": 15,
      "APPLIED": 16, "SINCE": 2, "SINCE_END": 3}


def cluster(i):
    return "c1c0ffee-0000-4000-8000-%012d" % i


def measure(argv):
    """(seconds, peak KiB) of argv, its stdout to /dev/null."""
    with tempfile.NamedTemporaryFile("r") as t, open(os.devnull, "w") as null:
        subprocess.run(["/usr/bin/time", "-o", t.name, "-f", "%e %M"] + argv,
                       stdout=null, check=True)
        secs, kib = t.read().split()[-2:]
    return float(secs), int(kib)


class Feed:
    def __init__(self, run):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect("ipc://%s/alloc.in" % run)
        self.run = run
        self.seq = 0

    def send(self, type, body):
        self.seq += 1
        self.sock.send(msgpack.packb([1, EV[type], self.seq, 0, body]))

    def drain(self, timeout=300):
        """Until allocd acknowledged everything sent."""
        deadline = time.monotonic() + timeout
        acked = 0
        while acked < self.seq:
            assert time.monotonic() < deadline, "allocd acked %d of %d" % (acked, self.seq)
            if self.sock.poll(1000):
                acked = max(acked, msgpack.unpackb(self.sock.recv())[2])

    def allocd_seq(self):
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect("ipc://%s/alloc.sync" % self.run)
        s.send(msgpack.packb([1, EV["SINCE"], 0, 0, {}]))
        while True:
            assert s.poll(60000), "no answer to SINCE"
            ev = msgpack.unpackb(s.recv(), raw=False, strict_map_key=False)
            if ev[1] == EV["SINCE_END"]:
                s.close()
                return ev[2]


def main():
    bindir = os.environ.get("PORTICO_BIN", "build/bin")
    ctl = os.path.join(bindir, "porticoctl")
    work = tempfile.mkdtemp(prefix="pt-bench-ctlt-", dir="/tmp")
    run = os.path.join(work, "run")
    conf = os.path.join(work, "portico.conf")
    ip = testlib.loopback_addr()
    with open(conf, "w") as f:
        f.write("[portico]\ndomain = bench.test\nrun_dir = %s\nlisten = %s\n"
                "api_port = %d\nports = %d-%d\n[store]\npath = %s/store\n"
                "[limits]\nroutes_per_cluster = 0\nports_per_cluster = 0\n"
                "backends_per_cluster = 0\nbytes_per_cluster = 0\nbytes_total = 0\n"
                "[kubeconfigs]\ndir = %s\n"
                % (run, ip, LO - 1, LO, LO + ROUTES - 1, work, work))
    allocd = testlib.Proc([os.path.join(bindir, "allocd"), "-d", "-f", conf],
                          "allocd", work)
    try:
        testlib.wait_until(lambda: os.path.exists(os.path.join(run, "allocd.pid")),
                           30, "allocd ready")
        feed = Feed(run)
        per = (ROUTES + WAITING) // CLUSTERS
        t0 = time.monotonic()
        for c in range(CLUSTERS):
            cid = cluster(c)
            feed.send("CLUSTER_UP", {"c": cid, "cn": "c%d" % c, "h": "c%d.bench.test" % c,
                                     "m": ["10.1.%d.1" % c], "mp": 8443})
            feed.send("SYNC_BEGIN", {"c": cid, "sid": 1})
            for r in range(per):
                feed.send("ROUTE", {"c": cid, "ns": "ns%d" % (r % 10), "n": "svc-%d" % r,
                                    "r": 0, "b": [["10.2.%d.%d" % (c, 1 + r % 200),
                                                   30000 + r % 2000, 1],
                                                  ["10.3.%d.%d" % (c, 1 + r % 200),
                                                   30000 + r % 2000, 1]]})
            feed.send("SYNC_END", {"c": cid, "sid": 1})
        feed.drain()
        fed = time.monotonic() - t0
        gen = feed.allocd_seq()
        feed.send("APPLIED", {"px": "haproxy", "g": gen})
        feed.drain()

        def live():
            cp = subprocess.run([ctl, "-f", conf, "-j", "ports"], stdout=subprocess.PIPE,
                                check=True)
            p = json.loads(cp.stdout)
            return p if p["used"] == ROUTES and p["waiting"] == WAITING else None
        testlib.wait_until(live, 120, "every route held, the rest waiting")
        out = [("clusters", CLUSTERS, "clusters"), ("routes_held", ROUTES, "routes"),
               ("routes_waiting", WAITING, "routes"), ("feed_time", round(fed, 2), "s"),
               ("store_size", os.path.getsize(os.path.join(work, "store", "data.mdb")) >> 20,
                "MiB")]
        runs = {"clusters": ["clusters"], "routes": ["routes"],
                "routes_json": ["-j", "routes"],
                "routes_one_cluster": ["routes", "-c", "c7"],
                "ports": ["ports"], "ports_json": ["-j", "ports"]}
        for name, args in runs.items():
            secs, kib = measure([ctl, "-f", conf] + args)
            out += [(name + "_time", secs, "s"), (name + "_peak_rss", kib >> 10, "MiB")]
        for metric, value, unit in out:
            print(json.dumps({"bench": "ctl_tables", "metric": metric, "value": value,
                              "unit": unit}))
    finally:
        allocd.stop()
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
