"""bench-converge: how soon a new route takes traffic, with many live.

For 100, 1,000 and 10,000 routes already live, a fleet (Kubernetes API
simulator, watcherd, allocd, renderd, applyd, HAProxy) is started with that
many exposed VirtualServices, and then SAMPLES more are exposed one at a
time: the time from the watch event to the first byte read from a workload
through the new port.  Two clocks: from the moment the simulator wrote the
watch event to watcherd's stream (it records it: GET /_sim/sent), which is
the target's definition (`watch_to_first_byte_*`); and from the moment the
PATCH that annotates the object was answered (`first_byte_*`), which can be
before or after that write by a few milliseconds of the simulator's own
threads.  The PATCH itself, a Python TLS client against a Python server, is
reported apart.  Each size runs twice, side by side: HAProxy changed live through its
runtime API, and HAProxy reloaded for every change (`live = 0`);
CONVERGE_MODES=live (or reload) runs only one.  Then, live,
1,000 route changes (exposed, unexposed) and the reloads they caused; and at
10,000 routes the memory of HAProxy (master and workers) and applyd.

Prints JSON lines {"bench": "converge", "metric", "value", "unit"}.
"""

import json
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import harness  # noqa: E402
import testlib  # noqa: E402

SIZES = [int(n) for n in os.environ.get("CONVERGE_SIZES", "100,1000,10000").split(",")]
SAMPLES = int(os.environ.get("CONVERGE_SAMPLES", "30"))
MODES = os.environ.get("CONVERGE_MODES", "live,reload").split(",")
CHANGES = 1000
NS = "bench"
EXPOSE, PORT, ADDRESS = harness.EXPOSE, harness.PORT, harness.ADDRESS


def emit(metric, value, unit):
    print(json.dumps({"bench": "converge", "metric": metric,
                      "value": round(value, 3), "unit": unit}), flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    return out


def vs(name, port=None):
    v = harness.virtualservice(name, NS, [[harness.dest("echo", 7000)]])
    if port is not None:
        v["metadata"]["annotations"] = {EXPOSE: "true", PORT: str(port)}
    return v


def first_byte(host, port, deadline):
    """Seconds until a connection to host:port reads a byte, polling."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.settimeout(1)
                if s.recv(1):
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError("%s:%d never answered" % (host, port))


def fleet_with(n, live):
    """A started fleet with n routes live, and SAMPLES more ready to expose."""
    fleet = harness.Fleet(ports=n + SAMPLES + 200, verbose=False, poll_interval=1)
    lo = fleet.port_lo
    vss = [vs("live-%d" % i, lo + i) for i in range(n)]
    vss += [vs("new-%d" % i) for i in range(SAMPLES + 100)]
    c = fleet.add_cluster("bench", [("echo", NS, [7000])], vss)
    # one cluster holds every route: no per-cluster quota here
    fleet.limits.update(routes_per_cluster=0, ports_per_cluster=0,
                        backends_per_cluster=0, bytes_per_cluster=0,
                        bytes_total=0)
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {"live": int(live),
                                                           "maxconn": 2000}})
    t0 = time.monotonic()
    fleet.start_daemons()

    def all_live():
        fleet._check_alive()
        return len(fleet.routed_ports()) >= n
    testlib.wait_until(all_live, 600, "%d routes in HAProxy" % n)
    # and served: the last one answers
    first_byte(fleet.listen, lo + n - 1, time.monotonic() + 120)
    return fleet, c, time.monotonic() - t0


def settle(fleet, c, n):
    """Until the write-backs of the first n addresses are done."""
    def done():
        items = c.sim.get(harness.VS_API + "/namespaces/%s/virtualservices" % NS)["items"]
        return sum(1 for o in items
                   if ADDRESS in (o["metadata"].get("annotations") or {})) >= n
    testlib.wait_until(done, 600, "%d addresses written back" % n)


def measure(fleet, c, n):
    lat, watch, patch = [], [], []
    base = fleet.port_lo + n
    for i in range(SAMPLES):
        port = base + i
        t0 = time.monotonic()
        obj = c.annotate(NS, "new-%d" % i, **{EXPOSE: "true", PORT: str(port)})
        t1 = time.monotonic()
        patch.append((t1 - t0) * 1000)
        fb = first_byte(fleet.listen, port, t1 + 60)
        lat.append((fb - t1) * 1000)
        # CLOCK_MONOTONIC is the machine's: the simulator's reads compare
        sent = c.sim.get("/_sim/sent?rv=%s" % obj["metadata"]["resourceVersion"])
        watch.append((fb - sent["monotonic"]) * 1000)
        time.sleep(0.2)     # one change at a time: the next after this settles
    return lat, watch, patch


def churn(fleet, c, n):
    """CHANGES route changes, live; the reloads they cost."""
    before = fleet.haproxy_reloads()
    names = ["new-%d" % (SAMPLES + i) for i in range(100)]
    base = fleet.port_lo + n + SAMPLES
    t0 = time.monotonic()
    for k in range(CHANGES):
        i = k % len(names)
        on = (k // len(names)) % 2 == 0
        c.annotate(NS, names[i], **({EXPOSE: "true", PORT: str(base + i)} if on
                                    else {EXPOSE: None, PORT: None}))
    # the last state: every one of them unexposed (CHANGES / 100 is even)
    testlib.wait_until(lambda: not set(range(base, base + 100)) & set(fleet.routed_ports()),
                       120, "the churn applied")
    secs = time.monotonic() - t0
    return fleet.haproxy_reloads() - before, secs


def main():
    harness.need("allocd", "renderd", "applyd", "watcherd")
    for n in SIZES:
        for mode in ("live", "reload"):
            if mode not in MODES:
                continue
            live = mode == "live"
            fleet, c, start = fleet_with(n, live)
            try:
                emit("start_to_%d_routes_%s" % (n, mode), start, "s")
                settle(fleet, c, n)
                lat, watch, patch = measure(fleet, c, n)
                emit("watch_to_first_byte_p50_%d_routes_%s" % (n, mode),
                     pct(watch, 50), "ms")
                emit("watch_to_first_byte_p99_%d_routes_%s" % (n, mode),
                     pct(watch, 99), "ms")
                emit("first_byte_p50_%d_routes_%s" % (n, mode), pct(lat, 50), "ms")
                emit("first_byte_p99_%d_routes_%s" % (n, mode), pct(lat, 99), "ms")
                emit("sim_patch_p50_%d_routes_%s" % (n, mode), pct(patch, 50), "ms")
                if live and n == 1000:
                    reloads, secs = churn(fleet, c, n)
                    emit("reloads_per_1000_changes", reloads * 1000.0 / CHANGES,
                         "reloads")
                    emit("changes_per_s", CHANGES / secs, "changes/s")
                if live and n == max(SIZES):
                    master = fleet.proxy_master()
                    hap = rss_mb(master) + sum(rss_mb(p) for p in children(master))
                    emit("haproxy_rss_%d_routes" % n, hap, "MB")
                    emit("applyd_rss_%d_routes" % n, rss_mb(fleet["applyd"].pid), "MB")
                    emit("renderd_rss_%d_routes" % n, rss_mb(fleet["renderd"].pid), "MB")
            finally:
                problems = fleet.stop()
                if problems:
                    print("fleet: %s" % problems, file=sys.stderr)
                fleet.cleanup()


if __name__ == "__main__":
    main()
