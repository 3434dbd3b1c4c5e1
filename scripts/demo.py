#!/usr/bin/python3
"""portico, running: what `make run` starts.

A small fleet on this machine, all on loopback: a CA; the PKS/UAA simulator
with two clusters, payments and search, each backed by its own Kubernetes API
simulator seeded with nodes, Services and two VirtualServices (one already
exposed); TCP echo workloads behind every node's nodePorts; a portico.conf;
and allocd, renderd, applyd and watcherd under supervisord (etc/supervisord.conf,
rendered with this run's paths). Once the exposed VirtualServices carry their
portico.dev/address, it prints the kubectl and nc commands to try, then waits.
Ctrl-C stops everything it started, by PID.

    scripts/demo.py [--keep] [--check]

--keep   keep the run folder (logs, config) after Ctrl-C
--check  do not wait: check the routes work, stop, exit 0 (or 1)

The daemons come from $PORTICO_BIN, else build/bin (`make` builds them).
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402
import testlib  # noqa: E402
from harness import dest, virtualservice  # noqa: E402

SUPERVISORD = "/usr/bin/supervisord"
DAEMONS = [("allocd", "allocd"), ("renderd", "renderd-haproxy"),
           ("applyd", "applyd-haproxy"), ("watcherd", "watcherd")]
EXPOSE = {"portico.dev/expose": "true"}


def say(msg=""):
    print(msg, flush=True)


def add_clusters(fleet):
    pay = fleet.add_cluster(
        "payments",
        services=[("orders-db", "payments", [5432]),
                  ("orders-db-canary", "payments", [5432]),
                  ("ledger-db", "payments", [5432])],
        virtualservices=[
            virtualservice("orders-db", "payments", [[
                dest("orders-db", 5432, 90),
                dest("orders-db-canary.payments.svc.cluster.local", 5432, 10)]],
                annotations=EXPOSE),
            virtualservice("ledger-db", "payments", [[dest("ledger-db", 5432)]])])
    search = fleet.add_cluster(
        "search",
        services=[("index", "search", [9200]), ("query", "search", [9300])],
        virtualservices=[
            virtualservice("index", "search", [[dest("index", 9200)]], annotations=EXPOSE),
            virtualservice("query", "search", [[dest("query", 9300)]])])
    return [(pay, "payments", "orders-db", "ledger-db"),
            (search, "search", "index", "query")]


def start_supervisord(fleet):
    conf = os.path.join(fleet.run_dir, "supervisord.conf")
    text = harness.render_template(os.path.join(ROOT, "etc", "supervisord.conf"),
                                   bin=harness.bin_dir(), conf=fleet.conf_path,
                                   run_dir=fleet.run_dir, log_dir=fleet.log_dir)
    with open(conf, "w") as f:
        f.write(text)
    proc = testlib.Proc([SUPERVISORD, "-n", "-c", conf], "supervisord-console",
                        fleet.log_dir)

    def ready():
        if not proc.alive():
            raise SystemExit("supervisord exited:\n" + proc.log())
        for _, pidname in DAEMONS:
            try:
                with open(os.path.join(fleet.run_dir, pidname + ".pid")) as f:
                    pid = int(f.read().strip())
            except (OSError, ValueError):
                return False
            if not os.path.exists("/proc/%d" % pid):
                return False
        return True
    testlib.wait_until(ready, 30, "the four daemons to be ready")
    return proc, conf


def kubectl_cmd(fleet, cluster, args):
    argv = ["kubectl", "--kubeconfig=/dev/null",
            "--server=https://%s:%d" % (fleet.listen, fleet.api_port),
            "--tls-server-name=" + cluster.host,
            "--certificate-authority=" + fleet.pki.ca_cert,
            "--token=" + cluster.sim.token,
            "--cache-dir=" + os.path.join(fleet.run_dir, "kube-cache")] + args
    return " ".join(shlex.quote(a) for a in argv)


def instructions(fleet, worlds, sup_conf):
    say()
    say("portico is running. Run folder: %s" % fleet.run_dir)
    say("Shared proxy address: %s  (cluster APIs on TLS port %d, workload ports %d-%d)"
        % (fleet.listen, fleet.api_port, fleet.port_lo, fleet.port_hi))
    for cluster, ns, exposed, other in worlds:
        addr = cluster.annotations(ns, exposed)["portico.dev/address"]
        port = int(addr.rsplit(":", 1)[1])
        say()
        say("== cluster %s (API routed as %s)" % (cluster.name, cluster.host))
        say("# its API, through HAProxy (SNI %s):" % cluster.host)
        say(kubectl_cmd(fleet, cluster, ["get", "virtualservices", "-A"]))
        say("# the address portico wrote back on %s/%s:" % (ns, exposed))
        say(kubectl_cmd(fleet, cluster, ["get", "virtualservice", exposed, "-n", ns,
                                         "-o", "yaml"]))
        say("# talk to the workload (it greets, then echoes what you type):")
        say("nc %s %d" % (fleet.listen, port))
        say("# expose the other one, then read its address and nc to it:")
        say(kubectl_cmd(fleet, cluster, ["annotate", "virtualservice", other, "-n", ns,
                                         "portico.dev/expose=true"]))
        say(kubectl_cmd(fleet, cluster, ["get", "virtualservice", other, "-n", ns,
                                         "-o", "jsonpath={.metadata.annotations."
                                         "portico\\.dev/address}{\"\\n\"}"]))
    pay = worlds[0][0]
    body = os.path.join(fleet.run_dir, "pks-payments.json")
    with open(body, "w") as f:
        json.dump({"cluster": pay.pks_cluster(), "kubeconfig": pay.kubeconfig()}, f)
    say()
    say("== PKS (simulated): take payments away, and bring it back")
    say("curl -s --cacert %s -X DELETE %s/_sim/clusters/%s"
        % (fleet.pki.ca_cert, fleet.pks.url, pay.uuid))
    say("curl -s --cacert %s -X PUT --data @%s %s/_sim/clusters/%s"
        % (fleet.pki.ca_cert, body, fleet.pks.url, pay.uuid))
    say()
    say("== the daemons")
    say("supervisorctl -c %s status" % sup_conf)
    say("tail -f %s/*.log" % fleet.log_dir)
    say()
    say("Ctrl-C stops everything.")


def check(fleet, worlds):
    """--check: the exposed routes answer, the API routes list objects."""
    for cluster, ns, exposed, other in worlds:
        addr = cluster.annotations(ns, exposed)["portico.dev/address"]
        port = int(addr.rsplit(":", 1)[1])
        marker = harness.read_marker(fleet.listen, port)
        assert marker.startswith("%s/%s/" % (cluster.name, ns)), marker
        out = subprocess.run(kubectl_cmd(fleet, cluster, ["get", "virtualservices", "-A"]),
                             shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=60)
        assert out.returncode == 0 and exposed in out.stdout, out.stderr
        cluster.annotate(ns, other, **EXPOSE)
        (p,) = fleet.wait_address(cluster, ns, other, timeout=60)
        # in this world each VirtualService routes to the Service of its name
        (svc_port,) = [pt for (n, s, pt) in cluster.node_ports if (n, s) == (ns, other)]
        fleet.wait_serves(p, cluster.markers(ns, other, svc_port))
        say("ok: %s %s:%d -> %s; %s exposed on %d" % (cluster.name, fleet.listen, port,
                                                       marker, other, p))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    ap.add_argument("--check", action="store_true", help="check, stop, exit")
    args = ap.parse_args()

    for name, _ in DAEMONS:
        if not harness.have_daemon(name):
            raise SystemExit("%s is not built: run make" % harness.daemon_path(name))
    if not os.access(SUPERVISORD, os.X_OK):
        raise SystemExit("supervisord is not installed: run make deps")

    def on_signal(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)    # one Ctrl-C is enough
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt
    # Both, explicitly: a shell may have started us with SIGINT ignored.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    run_dir = tempfile.mkdtemp(prefix="portico-", dir="/tmp")
    fleet = sup = None
    ok = False
    try:
        say("starting the simulators and workloads in %s ..." % run_dir)
        fleet = harness.Fleet(run_dir=run_dir, poll_interval=2, watch_timeout=120)
        worlds = add_clusters(fleet)
        fleet.write_conf()
        say("starting allocd, renderd, applyd, watcherd under supervisord ...")
        sup, sup_conf = start_supervisord(fleet)
        say("waiting for the exposed VirtualServices to get their address ...")
        for cluster, ns, exposed, _ in worlds:
            fleet.wait_address(cluster, ns, exposed, timeout=60)
        if args.check:
            check(fleet, worlds)
            ok = True
        else:
            instructions(fleet, worlds, sup_conf)
            while sup.alive():
                time.sleep(0.5)
            say("supervisord exited; see %s" % sup.log_path)
    except KeyboardInterrupt:
        ok = True
        say("\nstopping ...")
    finally:
        if sup is not None:
            sup.stop(timeout=60)
        if fleet is not None:
            # applyd stops HAProxy when supervisord stops it; anything left
            # over (applyd killed) goes by the pid in HAProxy's pid file.
            left = harness.stop_proxy(fleet.run_dir)
            if left:
                say("stopped a HAProxy left behind: %s" % left)
            fleet.stop()
        if args.keep or not ok:
            say("run folder kept: %s" % run_dir)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        say("stopped.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
