"""RSS and CPU of each daemon in its pod, at a fleet of some size: the
figures deploy/kubernetes's requests and limits are checked against.

    PORTICO_BIN=build/bin python3 tests/bench/bench_pods.py [CLUSTERS] [ROUTES_PER_CLUSTER]

Plays the manifests as tests/e2e/test_pods.py does (the image, the
simulators outside the pods), exposes every route, waits until HAProxy
serves them all, and prints one JSON line per daemon: VmRSS and VmHWM of
its process (MiB), and its CPU seconds, at the end of the sync. HAProxy's
master and workers are counted apart.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import harness  # noqa: E402
import pods as podlib  # noqa: E402

testlib = harness.testlib


def proc_usage(pid):
    with open("/proc/%d/status" % pid) as f:
        st = {l.split(":")[0]: l.split()[1] for l in f if len(l.split()) > 1}
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return int(st["VmRSS"]) / 1024.0, int(st["VmHWM"]) / 1024.0, cpu


def main():
    nclusters = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    fleet = harness.Fleet(ports=nclusters * per + 10, verbose=False)
    img = podlib.Image()
    pods = None
    try:
        clusters = []
        for i in range(nclusters):
            ns = "app"
            vss = [harness.virtualservice("db%d" % j, ns, [[harness.dest("db", 5432)]],
                                          annotations={harness.EXPOSE: "true"})
                   for j in range(per)]
            clusters.append(fleet.add_cluster("c%d" % i, [("db", ns, [5432])], vss,
                                              nodes=1))
        pods = podlib.Pods(fleet, img)
        t0 = time.monotonic()
        pods.start()
        total = nclusters * per
        testlib.wait_until(lambda: len(harness.haproxy_ports(pods.proxy_cfg())) >= total,
                           600, "%d routes in HAProxy" % total)
        sync = time.monotonic() - t0
        print(json.dumps({"bench": "pods", "metric": "start_to_all_routes_in_haproxy",
                          "routes": total, "value": round(sync, 1), "unit": "s"}))
        for what in ("allocd", "renderd-0", "applyd-a", "watcherd"):
            d = what.split("-")[0]
            pid = int(podlib.podman("inspect", "--format", "{{.State.Pid}}",
                                    pods.pods[what].container(d)).stdout.strip())
            rss, hwm, cpu = proc_usage(pid)
            print(json.dumps({"bench": "pods", "daemon": d, "routes": total,
                              "rss_mib": round(rss, 1), "hwm_mib": round(hwm, 1),
                              "cpu_s": round(cpu, 2)}))
            if d == "applyd":
                for child in harness._children(pid):
                    if harness._comm(child).startswith("haproxy"):
                        rss, hwm, cpu = proc_usage(child)
                        kids = [c for c in harness._children(child)]
                        for k in kids:
                            r, h, c = proc_usage(k)
                            rss, hwm, cpu = rss + r, hwm + h, cpu + c
                        print(json.dumps({"bench": "pods", "daemon": "haproxy",
                                          "routes": total, "rss_mib": round(rss, 1),
                                          "hwm_mib": round(hwm, 1),
                                          "cpu_s": round(cpu, 2)}))
    finally:
        if pods:
            pods.cleanup()
        img.remove()
        fleet.stop()
        fleet.cleanup()


if __name__ == "__main__":
    main()
