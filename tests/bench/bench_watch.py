"""bench-watch: watcherd against a fleet of Kubernetes API servers.

CLUSTERS clusters (200) with VS exposed VirtualServices each (50), every
cluster an API server of its own on a loopback address of its own, all
served by SIM_PROCS simulator processes (tests/sim/k8s_sim.py's Handler and
Store, many servers a process: 200 Python processes would not fit 2 cores).
watcherd reads the clusters from a kubeconfig folder and sends its
observations to a real allocd; no proxy runs, so nothing is written back
and what is timed is watcherd alone.

- full_sync: watcherd's exec to the last of the CLUSTERS*VS routes observed
  by allocd (ROUTE events on allocd's PUB, as harness.BusTap taps it).
- watcherd_peak_rss (VmHWM) and watcherd_cpu (user+system) at full sync,
  and again after the churn.
- event_to_observation p50/p99: RATE changes a second across the fleet for
  SECONDS seconds, each a new weight on one VirtualService (made inside the
  simulator, stamped as it is stored), to the ROUTE carrying that weight
  on allocd's PUB.

Prints JSON lines {"bench": "watch", "metric", "value", "unit"}.
"""

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "sim"))
import harness  # noqa: E402
import testlib  # noqa: E402

E = testlib.events

CLUSTERS = int(os.environ.get("WATCH_CLUSTERS", "200"))
VS = int(os.environ.get("WATCH_VS", "50"))
RATE = int(os.environ.get("WATCH_RATE", "1000"))
SECONDS = float(os.environ.get("WATCH_SECONDS", "10"))
SIM_PROCS = int(os.environ.get("WATCH_SIM_PROCS", "2"))
# watcherds splitting the clusters (-s i/N); RSS is the largest shard's,
# CPU all of theirs together
SHARDS = int(os.environ.get("WATCH_SHARDS", "1"))
NS = "bench"
PY = "/usr/bin/python3"


def emit(metric, value, unit):
    print(json.dumps({"bench": "watch", "metric": metric,
                      "value": round(value, 3), "unit": unit}), flush=True)


def vs_name(j):
    return "vs-%03d" % j


def seed(node_ip):
    """One cluster: a node, two NodePort Services, VS exposed
    VirtualServices weighted 50/50 across the two."""
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
             "status": {"addresses": [{"type": "InternalIP", "address": node_ip}]}}]
    for svc, np in (("svc-a", 30001), ("svc-b", 30002)):
        objs.append({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": svc, "namespace": NS},
                     "spec": {"type": "NodePort", "ports": [
                         {"name": "tcp", "protocol": "TCP", "port": 5432,
                          "targetPort": 5432, "nodePort": np}]}})
    for j in range(VS):
        objs.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                     "metadata": {"name": vs_name(j), "namespace": NS,
                                  "annotations": {"portico.dev/expose": "true"}},
                     "spec": {"hosts": [vs_name(j)], "tcp": [{"route": [
                         {"destination": {"host": "svc-a", "port": {"number": 5432}},
                          "weight": 50},
                         {"destination": {"host": "svc-b", "port": {"number": 5432}},
                          "weight": 50}]}]}})
    return objs


# ------------------------------------------------------------ simulator host

def serve(spec_path):
    """A simulator process: one k8s_sim server per cluster of the spec, each
    with its own store. Prints {"ports": {name: port}} once all listen;
    then each stdin line "churn RATE SECONDS" makes RATE changes a second
    and prints {"changes": [[name, vs, weight, unix time], ...]}."""
    import collections
    import k8s_sim
    import simcommon
    spec = json.load(open(spec_path))
    clusters = {}
    ports = {}
    for c in spec["clusters"]:
        rtypes = k8s_sim.resource_types(["v1"])
        h = type("H_" + c["name"], (k8s_sim.Handler,), {
            "token": c["token"], "rtypes": rtypes, "server_version": "1.32.0",
            "store": k8s_sim.Store(100000), "faults": k8s_sim.Faults(),
            "lock": threading.Lock(), "requests": collections.Counter()})
        h.store.load_seed(rtypes, seed(c["node"]))
        srv = simcommon.bind_server(c["addr"], 0, h, spec["cert"], spec["key"])
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        ports[c["name"]] = srv.server_address[1]
        clusters[c["name"]] = (h.store, [rt for rt in rtypes
                                         if rt.plural == "virtualservices"][0])
    print(json.dumps({"ports": ports}), flush=True)
    names = sorted(clusters)
    for line in sys.stdin:
        _, rate, seconds = line.split()
        rate, seconds = float(rate), float(seconds)
        total, changes, start = int(rate * seconds), [], time.monotonic()
        for k in range(total):
            delay = start + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            name = names[k % len(names)]
            j = (k // len(names)) % VS
            w = 1 + (k // (len(names) * VS) * 37 + j) % 98
            if w == 50:
                w = 51
            store, rt = clusters[name]

            def change(obj, w=w):
                r = obj["spec"]["tcp"][0]["route"]
                r[0]["weight"], r[1]["weight"] = w, 100 - w
                return obj
            store.modify(rt, NS, vs_name(j), change)
            changes.append([name, vs_name(j), w, time.time()])
        print(json.dumps({"changes": changes}), flush=True)


# ------------------------------------------------------------ the bench

def proc_stats(pid):
    """(VmHWM in MB, user+system CPU seconds) of pid."""
    with open("/proc/%d/status" % pid) as f:
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm, cpu


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    bindir = os.environ.get("PORTICO_BIN") or os.path.join(ROOT, "build", "bin")
    d = tempfile.mkdtemp(prefix="pt-bw-", dir="/tmp")
    procs = []
    sims = []
    try:
        run(bindir, d, procs, sims)
    finally:
        for p in procs:
            p.stop()
        for s in sims:
            s.stdin.close()
            s.terminate()
            s.wait(10)
        subprocess.run(["rm", "-rf", d])


def run(bindir, d, procs, sims):
    third = random.randint(1, 250)
    clusters = [{"name": "c%03d" % i, "addr": "127.79.%d.%d" % (third, i + 1),
                 "node": "10.%d.%d.1" % (i // 250, i % 250),
                 "token": "t%03d-%s" % (i, os.urandom(8).hex())}
                for i in range(CLUSTERS)]
    ca = testlib.make_ca(os.path.join(d, "pki"))
    cert, key = testlib.make_cert(os.path.join(d, "pki"), ca, "apiservers",
                                  ips=[c["addr"] for c in clusters])
    ports = {}
    for k in range(SIM_PROCS):
        spec = os.path.join(d, "sim-%d.json" % k)
        with open(spec, "w") as f:
            json.dump({"cert": cert, "key": key, "clusters": clusters[k::SIM_PROCS]}, f)
        s = subprocess.Popen([PY, os.path.abspath(__file__), "--serve", spec],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             stderr=open(os.path.join(d, "sim-%d.log" % k), "w"),
                             start_new_session=True)
        sims.append(s)
    for s in sims:
        ports.update(json.loads(s.stdout.readline())["ports"])
    kc = os.path.join(d, "kubeconfigs")
    os.makedirs(kc)
    ca_data = __import__("base64").b64encode(open(ca[0], "rb").read()).decode()
    for c in clusters:
        with open(os.path.join(kc, c["name"] + ".json"), "w") as f:
            json.dump({"apiVersion": "v1", "kind": "Config",
                       "clusters": [{"name": "x", "cluster": {
                           "server": "https://%s:%d" % (c["addr"], ports[c["name"]]),
                           "certificate-authority-data": ca_data}}],
                       "users": [{"name": "x", "user": {"token": c["token"]}}],
                       "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}],
                       "current-context": "x"}, f)
    run_dir = os.path.join(d, "run")
    os.makedirs(run_dir)
    conf = os.path.join(d, "portico.conf")
    with open(conf, "w") as f:
        f.write("[portico]\ndomain = bench.example.test\nrun_dir = %s\n"
                "listen = 127.0.0.1\nports = 2000-31999\nquarantine = 600\n"
                "[store]\npath = %s\n[kubeconfigs]\ndir = %s\npoll_interval = 10\n"
                "[clusters]\nwatch_timeout = 300\n" % (run_dir, os.path.join(d, "store"), kc))
    logs = os.path.join(d, "log")

    def daemon(name):
        p = testlib.Proc([os.path.join(bindir, name), "-d", "-f", conf], name, logs)
        procs.append(p)
        testlib.wait_until(lambda: os.path.exists(os.path.join(run_dir, name + ".pid"))
                           or not p.alive(), 30, name + " ready")
        assert p.alive(), open(p.log_path).read()[-3000:]
        return p

    daemon("allocd")
    tap = harness.BusTap("ipc://" + os.path.join(run_dir, "alloc.pub"))

    seen_owners, cursor = set(), [0]

    def owners():
        """The route owners observed so far (read incrementally)."""
        with tap.lock:
            new, cursor[0] = tap.events[cursor[0]:], len(tap.events)
        seen_owners.update((e[E.F_CLUSTER], e[E.F_NS], e[E.F_NAME], e[E.F_ROUTE]) for e in new
                           if e["type"] == "ROUTE")
        return seen_owners
    time.sleep(0.5)                         # the SUB joins before anything is sent
    want = CLUSTERS * VS
    t0 = time.monotonic()
    ws = []
    for i in range(SHARDS):
        shard = ["-s", "%d/%d" % (i, SHARDS)] if SHARDS > 1 else []
        ws.append(testlib.Proc([os.path.join(bindir, "watcherd"), "-d", "-f", conf] + shard,
                               "watcherd-%d" % i, logs))
    procs.extend(ws)
    try:
        testlib.wait_until(lambda: len(owners()) >= want or not all(w.alive() for w in ws),
                           120, "%d routes observed" % want)
    finally:
        if len(owners()) < want:
            for w in ws:
                sys.stderr.write(open(w.log_path).read()[-3000:])
    assert all(w.alive() for w in ws), "watcherd died"

    def stats():
        st = [proc_stats(w.pid) for w in ws]
        return max(h for h, _ in st), sum(c for _, c in st)
    emit("full_sync", time.monotonic() - t0, "s")
    emit("routes_observed", len(owners()), "routes")
    emit("watcherd_shards", SHARDS, "processes")
    hwm, cpu = stats()
    emit("watcherd_peak_rss_at_sync", hwm, "MB")
    emit("watcherd_cpu_to_sync", cpu, "s")

    time.sleep(1)
    mark = tap.mark()
    for s in sims:
        s.stdin.write("churn %g %g\n" % (RATE / SIM_PROCS, SECONDS))
        s.stdin.flush()
    changes = []
    for s in sims:
        changes += json.loads(s.stdout.readline())["changes"]
    time.sleep(2)                           # the last ones arrive
    seen = {}
    for e in tap.seen("ROUTE", mark):
        seen.setdefault((e[E.F_CLUSTER], e[E.F_NAME], (e.get(E.F_BACKENDS) or [[0, 0, 0]])[0][2]), e["rx"])
    lat = [(seen[(c, n, wt)] - t) * 1000 for c, n, wt, t in changes if (c, n, wt) in seen]
    span = max(t for *_, t in changes) - min(t for *_, t in changes)
    emit("churn_rate", len(changes) / span if span else 0, "changes/s")
    emit("churn_observed", len(lat), "of %d" % len(changes))
    if lat:
        emit("event_to_observation_p50", pct(lat, 50), "ms")
        emit("event_to_observation_p99", pct(lat, 99), "ms")
    hwm2, cpu2 = stats()
    emit("watcherd_peak_rss", hwm2, "MB")
    emit("watcherd_cpu_churn", cpu2 - cpu, "s")
    tap.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    else:
        main()
