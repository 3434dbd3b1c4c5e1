"""Cluster API as a cluster source: watcherd reads cluster.x-k8s.io Clusters
in a management cluster (tests/sim/capi_sim.py), routes those that are
Provisioned with a ready control plane at spec.controlPlaneEndpoint, and
reaches each with the kubeconfig of its Secret <cluster>-kubeconfig. The
workload clusters are the usual k8s sims; kubectl goes through HAProxy's
shared TLS port with the routed host as SNI."""

import base64
import json
import os
import secrets
import socket
import subprocess
import threading

import pytest

import harness
import testlib
from harness import DOMAIN, EXPOSE, need

CAPI = "/apis/cluster.x-k8s.io/v1beta1"


def _localhost_v4():
    """localhost resolves to 127.0.0.1 alone (as /etc/hosts says here)."""
    try:
        return {a[4][0] for a in socket.getaddrinfo("localhost", 1, 0,
                                                     socket.SOCK_STREAM)} == {"127.0.0.1"}
    except OSError:
        return False


LOCALHOST_V4 = _localhost_v4()
NS = "fleet-a"


class MgmtSim:
    """capi_sim.py on a loopback address of its own: the management
    cluster, with a kubeconfig for it in the fleet's folder."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.dir = os.path.join(fleet.dir, "mgmt")
        os.makedirs(self.dir, exist_ok=True)
        self.host = testlib.loopback_addr()
        self.token = secrets.token_hex(16)
        cert, key = fleet.pki.cert("mgmt", dns=["mgmt." + DOMAIN], ips=[self.host])
        port_file = os.path.join(self.dir, "k8s.port")
        argv = [harness.PY, os.path.join(harness.SIM_DIR, "capi_sim.py"),
                "--listen", self.host, "--port", "0", "--cert", cert, "--key", key,
                "--token", self.token, "--port-file", port_file]
        self.proc = testlib.Proc(argv, "mgmt", self.dir)
        self.port = harness.wait_port_file(self.proc, port_file)
        self.url = "https://%s:%d" % (self.host, self.port)
        self.kubeconfig = os.path.join(self.dir, "mgmt.kubeconfig")
        kc = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "mgmt", "cluster": {
                  "server": self.url, "certificate-authority-data": fleet.pki.ca_data()}}],
              "users": [{"name": "portico", "user": {"token": self.token}}],
              "contexts": [{"name": "mgmt", "context": {"cluster": "mgmt", "user": "portico"}}],
              "current-context": "mgmt"}
        with open(self.kubeconfig, "w") as f:
            json.dump(kc, f)

    def request(self, method, path, body=None, ctype="application/json"):
        return harness.http_json(self.url + path, method, body, self.fleet.pki.ctx,
                                 {"Authorization": "Bearer " + self.token}, ctype)

    def must(self, method, path, body=None, codes=(200, 201)):
        status, got = self.request(method, path, body)
        assert status in codes, (method, path, status, got)
        return got

    def stop(self):
        self.proc.stop()


def cluster_obj(name, ns, host, port, phase="Provisioned", ready=True, annotations=None):
    md = {"name": name, "namespace": ns}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster", "metadata": md,
            "spec": {"controlPlaneEndpoint": {"host": host, "port": port}},
            "status": {"phase": phase, "controlPlaneReady": ready,
                       "infrastructureReady": True}}


def put_cluster(mgmt, obj):
    """Create the Cluster (or replace it), then its status, as the
    controllers would write it."""
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    path = "%s/namespaces/%s/clusters" % (CAPI, ns)
    status, _ = mgmt.request("GET", "%s/%s" % (path, name))
    if status == 404:
        mgmt.must("POST", path, obj)
    else:
        mgmt.must("PUT", "%s/%s" % (path, name), obj)
    mgmt.must("PUT", "%s/%s/status" % (path, name), obj)


def put_secret(mgmt, ns, name, kubeconfig):
    """<name>-kubeconfig in ns, as Cluster API writes it."""
    obj = {"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name + "-kubeconfig", "namespace": ns,
                        "labels": {"cluster.x-k8s.io/cluster-name": name}},
           "type": "cluster.x-k8s.io/secret",
           "data": {"value": base64.b64encode(json.dumps(kubeconfig).encode()).decode()}}
    path = "/api/v1/namespaces/%s/secrets" % ns
    status, _ = mgmt.request("GET", "%s/%s-kubeconfig" % (path, name))
    if status == 404:
        mgmt.must("POST", path, obj)
    else:
        mgmt.must("PUT", "%s/%s-kubeconfig" % (path, name), obj)


@pytest.fixture
def capi_fleet(make_fleet):
    """Factory: a fleet whose one cluster source is a management cluster,
    which is stopped, by PID, after the test."""
    made = []

    def make(**kw):
        fleet, mgmt = _capi_fleet(make_fleet, **kw)
        made.append(mgmt)
        return fleet, mgmt
    yield make
    for m in made:
        m.stop()


def _capi_fleet(make_fleet, capi=None, **kw):
    """capi: [capi] keys over the fleet's."""
    fleet = make_fleet(sources=(), **kw)
    mgmt = MgmtSim(fleet)
    base = fleet.conf_text

    def conf_text(**extra):
        extra = dict(extra)
        keys = {"kubeconfig": mgmt.kubeconfig, "poll_interval": fleet.poll_interval,
                "secret_interval": fleet.poll_interval}
        keys.update(capi or {})
        keys.update(extra.get("capi", {}))
        extra["capi"] = keys
        return base(**extra)
    fleet.conf_text = conf_text
    return fleet, mgmt


def workload(fleet, name, exposed=(), **kw):
    """A workload cluster with one Service and VirtualService per name in
    exposed (annotated portico.dev/expose), routed as <name>.<domain>."""
    ns = "apps"
    svcs = [(s, ns, [7000 + i]) for i, s in enumerate(exposed)]
    vss = [harness.virtualservice(s, ns, [[harness.dest(s, 7000 + i)]],
                                  annotations={EXPOSE: "true"})
           for i, s in enumerate(exposed)]
    return fleet.add_cluster(name, svcs, vss, register=False, **kw)


def register(mgmt, c, ns=NS, **kw):
    put_secret(mgmt, ns, c.name, c.kubeconfig())
    put_cluster(mgmt, cluster_obj(c.name, ns, c.sim.host, c.sim.port, **kw))


def vs_names(c):
    out = c.kubectl_via_portico("get", "virtualservices", "-A", "-o", "name").stdout
    return sorted(line.split("/")[-1] for line in out.split())


def test_capi_clusters(capi_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet, mgmt = capi_fleet()
    alpha = workload(fleet, "alpha", exposed=["pg"])
    beta = workload(fleet, "beta", exposed=["redis"])
    gamma = workload(fleet, "gamma", exposed=["mq"])
    register(mgmt, alpha)
    register(mgmt, beta)
    # not there yet: its control plane is still coming up
    register(mgmt, gamma, phase="Provisioning", ready=False)
    fleet.start()

    # Both routed for kubectl, each to its own API server.
    fleet.wait_api(alpha.host)
    fleet.wait_api(beta.host)
    assert vs_names(alpha) == ["pg"]
    assert vs_names(beta) == ["redis"]
    assert not fleet.tls_probe(gamma.host)
    # Workload routes work in a CAPI cluster as anywhere else.
    [pg] = fleet.wait_address(alpha, "apps", "pg", timeout=60)
    fleet.wait_serves(pg, alpha.markers("apps", "pg", 7000))
    [redis] = fleet.wait_address(beta, "apps", "redis", timeout=60)
    fleet.wait_serves(redis, beta.markers("apps", "redis", 7000))

    # The third becomes provisioned and ready: routed, its VS served.
    register(mgmt, gamma)
    fleet.wait_api(gamma.host)
    assert vs_names(gamma) == ["mq"]
    [mq] = fleet.wait_address(gamma, "apps", "mq", timeout=60)
    fleet.wait_serves(mq, gamma.markers("apps", "mq", 7000))

    # A Cluster deleted: its API route and its workload port go.
    mgmt.must("DELETE", "%s/namespaces/%s/clusters/beta" % (CAPI, NS))
    fleet.wait_api(beta.host, up=False)
    fleet.wait_refused(redis, timeout=30)
    assert fleet.tls_probe(alpha.host) and fleet.tls_probe(gamma.host)
    fleet.wait_serves(pg, alpha.markers("apps", "pg", 7000))

    # No longer ready (phase back to Provisioning): gone as well.
    register(mgmt, gamma, phase="Deleting", ready=True)
    fleet.wait_api(gamma.host, up=False)

    # The kubeconfig Secret is rotated: the sim takes only the new token
    # from now on, the route and the port stay, and watcherd, on the new
    # credentials, still sees what changes in the cluster.
    old, new = alpha.sim.token, secrets.token_hex(16)
    alpha.sim_control("POST", "rotate-token", {"token": new})
    alpha.sim.token = new
    register(mgmt, alpha)
    alpha.create(harness.virtualservice("pg2", "apps", [[harness.dest("pg", 7000)]],
                                        annotations={EXPOSE: "true"}))
    [pg2] = fleet.wait_address(alpha, "apps", "pg2", timeout=60)
    assert pg2 != pg
    assert fleet.wait_address(alpha, "apps", "pg") == [pg]
    fleet.wait_serves(pg, alpha.markers("apps", "pg", 7000))
    fleet.wait_serves(pg2, alpha.markers("apps", "pg", 7000))
    assert vs_names(alpha) == ["pg", "pg2"]
    log = fleet["watcherd"].log()
    assert "alpha: new credentials" in log, log[-3000:]
    assert new not in log and old not in log


def test_capi_hostile_clusters(capi_fleet):
    """Clusters that must not be routed, next to one that is: each refused
    (with a reason in watcherd's log), the good one untouched."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet, mgmt = capi_fleet()
    good = workload(fleet, "good", exposed=["pg"])
    register(mgmt, good)
    fleet.start()
    fleet.wait_api(good.host)
    [pg] = fleet.wait_address(good, "apps", "pg", timeout=60)
    port = good.sim.port
    bad = [
        # a name that is no DNS label
        cluster_obj("Bad_Name", NS, good.sim.host, port),
        # a huge object
        cluster_obj("huge", NS, good.sim.host, port,
                    annotations={"example.com/blob": "x" * 300000}),
        # endpoints on loopback outside the allowed range, on link-local,
        # by a name that resolves to loopback (from /etc/hosts: the tests
        # send no DNS query)
        cluster_obj("lo", NS, "127.0.0.1", port),
        cluster_obj("meta", NS, "169.254.169.254", 80),
        cluster_obj("local", NS, "localhost", port),
        # another namespace's Cluster of the same name: the host stays
        # with its first holder
        cluster_obj("good", "fleet-b", fleet.clusters[0].nodes[0][1], port),
    ]
    for obj in bad:
        put_cluster(mgmt, obj)
    # a Secret that names a file of ours is refused: the route comes, no
    # credentials do
    evil = workload(fleet, "evil")
    kc = evil.kubeconfig()
    kc["users"][0]["user"] = {"tokenFile": "/etc/passwd"}
    put_secret(mgmt, NS, "evil", kc)
    put_cluster(mgmt, cluster_obj("evil", NS, evil.sim.host, evil.sim.port))

    w = fleet["watcherd"]

    def said(*parts):
        return lambda: all(p in w.log() for p in parts)
    testlib.wait_until(said("a Cluster of ", "not a DNS label",
                            "fleet-a/lo: controlPlaneEndpoint 127.0.0.1 is loopback",
                            "fleet-a/meta: controlPlaneEndpoint 169.254.169.254 is "
                            "link-local",
                            "Secret fleet-a/evil-kubeconfig: tokenFile: file paths "
                            "are refused"), 30, "the refusals logged")
    # evil is routed (its API's certificate is its own), the others not:
    # HAProxy's configuration has no SNI entry for them
    fleet.wait_api("evil." + DOMAIN)
    cfg = fleet.proxy_cfg()
    assert "# sni good.%s\n" % DOMAIN in cfg and "# sni evil.%s\n" % DOMAIN in cfg
    if LOCALHOST_V4:
        testlib.wait_until(said("fleet-a/local: controlPlaneEndpoint localhost "
                                "(127.0.0.1) is loopback"), 30, "localhost refused")
    for name in ("huge", "lo", "meta", "local", "bad_name", "Bad_Name"):
        assert "# sni %s.%s\n" % (name, DOMAIN) not in cfg, name
    assert cfg.count("# sni ") == 2, cfg
    # the good one: its own API still, its workload still served
    assert vs_names(good) == ["pg"]
    fleet.wait_serves(pg, good.markers("apps", "pg", 7000))
    assert fleet["watcherd"].alive()


def test_capi_namespaces_and_config(capi_fleet):
    """[capi] namespaces: Clusters elsewhere are not looked at; with
    namespace_in_host, the host names the namespace; past max_clusters,
    Clusters are refused. The section is checked by -n like any other."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet, mgmt = capi_fleet(capi={"namespaces": "fleet-a, fleet-c",
                                   "namespace_in_host": 1, "secret_interval": 3600,
                                   "max_clusters": 1})
    inside = workload(fleet, "inside", exposed=["pg"],
                      master_host="inside.fleet-a." + DOMAIN)
    outside = workload(fleet, "outside")
    third = workload(fleet, "third")
    register(mgmt, inside)
    register(mgmt, outside, ns="fleet-z")
    # listed after inside, past max_clusters: refused
    register(mgmt, third, ns="fleet-c")
    for bad, key in (({"namespaces": "fleet-a, Bad_NS"}, "namespaces"),
                     ({"namespace_in_host": "2"}, "namespace_in_host"),
                     ({"max_clusters": "0"}, "max_clusters")):
        path = fleet.write_conf(capi=bad)
        cp = subprocess.run([harness.daemon_path("watcherd"), "-n", "-f", path],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 1 and key in cp.stderr, (bad, cp.stderr)
    path = fleet.write_conf()
    cp = subprocess.run([harness.daemon_path("watcherd"), "-n", "-f", path],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert "[capi]" in cp.stdout and "namespaces = fleet-a, fleet-c" in cp.stdout
    fleet.start()
    fleet.wait_api(inside.host)
    assert vs_names(inside) == ["pg"]
    assert fleet.wait_address(inside, "apps", "pg", timeout=60)
    assert not fleet.tls_probe("outside." + DOMAIN)
    assert not fleet.tls_probe("outside.fleet-z." + DOMAIN)
    assert "outside" not in fleet["watcherd"].log()
    assert "capi: 1 Clusters refused: more than 1 Clusters (max_clusters)" in \
        fleet["watcherd"].log()
    assert "# sni third." not in fleet.proxy_cfg()

    # Rotated while the Secret is read only once an hour: the 401 of the
    # cluster's next request (its watches cut) has it read at once.
    [pg] = fleet.wait_address(inside, "apps", "pg")
    new = secrets.token_hex(16)
    inside.sim_control("POST", "rotate-token", {"token": new})
    inside.sim.token = new
    register(mgmt, inside)
    inside.sim_control("POST", "close-watches")
    testlib.wait_until(lambda: "inside: new credentials" in fleet["watcherd"].log(),
                       30, "the new credentials taken")
    assert "inside: credentials refused (401), reading Secret fleet-a/" \
        "inside-kubeconfig again" in fleet["watcherd"].log()
    inside.create(harness.virtualservice("pg2", "apps", [[harness.dest("pg", 7000)]],
                                         annotations={EXPOSE: "true"}))
    [pg2] = fleet.wait_address(inside, "apps", "pg2", timeout=60)
    assert pg2 != pg and fleet.wait_address(inside, "apps", "pg") == [pg]


class Relay:
    """A TCP relay on 127.0.0.1: every connection goes on to target, as
    a load balancer in front of a control plane would forward it."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        for _ in range(50):
            try:
                self.sock.bind(("127.0.0.1", testlib.free_port("127.0.0.1")))
                break
            except OSError:
                continue
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _pipe(self, a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self):
        while not self.stopped.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def close(self):
        self.stopped.set()
        self.sock.close()


@pytest.mark.skipif(not LOCALHOST_V4, reason="localhost is not 127.0.0.1 alone here")
def test_capi_endpoint_by_name(capi_fleet):
    """A controlPlaneEndpoint given by name is resolved without holding up
    the loop, and routed to the addresses it resolves to once they pass
    the checks every backend passes ([limits] allow_backends here lets
    127.0.0.1 in)."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet, mgmt = capi_fleet()
    fleet.limits["allow_backends"] = harness.TEST_BACKENDS + ", 127.0.0.1/32"
    byname = workload(fleet, "byname", exposed=["pg"])
    relay = Relay((byname.sim.host, byname.sim.port))
    try:
        put_secret(mgmt, NS, "byname", byname.kubeconfig())
        put_cluster(mgmt, cluster_obj("byname", NS, "localhost", relay.port))
        fleet.start()
        fleet.wait_api(byname.host)
        cfg = fleet.proxy_cfg()
        sni = cfg.index("# sni %s\n" % byname.host)
        end = cfg.find("\nbackend", sni)
        assert cfg[sni:end if end != -1 else len(cfg)].count(" 127.0.0.1:%d " % relay.port) \
            == 1, cfg[sni:sni + 400]
        assert vs_names(byname) == ["pg"]
        [pg] = fleet.wait_address(byname, "apps", "pg", timeout=60)
        fleet.wait_serves(pg, byname.markers("apps", "pg", 7000))
    finally:
        relay.close()
