"""The kubeconfig folder's first lookups: N kubeconfigs whose servers are
DNS names, answered at once by tests/sim/dns_sim.py, and H more whose names
hang (their DNS server never answers), all read by one watcherd at start.

Times watcherd's start to its "routed as" log line for each of the N
clusters (each cluster up sent to allocd).  All N point at one Kubernetes
simulator whose certificate holds *.k8s.example.test.  watcherd runs in a
mount namespace whose resolv.conf names the DNS simulator alone (root and
unshare -m needed), with glibc waiting 20 s for an answer, once.

    PORTICO_BIN=build/bin /usr/bin/python3 tests/bench/bench_kcdir_names.py [N [H]]

Prints one JSON line {"bench": "kcdir-names", "n", "hang", "seconds"}.
"""

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "e2e"), os.path.join(HERE, "..", "lib")]

import harness  # noqa: E402
import testlib  # noqa: E402
from test_kcdir_resolve import Dns  # noqa: E402


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    hang = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    fleet = harness.Fleet(sources=("kubeconfigs",), verbose=False)
    dns = Dns(fleet)
    try:
        api = harness.search_cluster(fleet, register=False,
                                     master_host="*." + harness.DOMAIN)
        zone = {"c%d.%s" % (i, harness.DOMAIN): {"a": [api.sim.host]} for i in range(n)}
        zone.update({"h%d.%s" % (i, harness.DOMAIN): {"mode": "hang"} for i in range(hang)})
        dns.set(**zone)
        for name in zone:
            api.write_kubeconfig(name=name.split(".")[0],
                                 server="https://%s:%d" % (name, api.sim.port))
        fleet.start(watcherd=False)
        t0 = time.monotonic()
        fleet.start_daemons(watcherd=True, wait_proxy=False)
        testlib.wait_until(lambda: fleet["watcherd"].log().count(", routed as ") >= n,
                           600, "%d clusters up" % n)
        took = time.monotonic() - t0
    finally:
        fleet.stop()
        dns.stop()
        fleet.cleanup()
    print(json.dumps({"bench": "kcdir-names", "n": n, "hang": hang,
                      "seconds": round(took, 2)}))


if __name__ == "__main__":
    main()
