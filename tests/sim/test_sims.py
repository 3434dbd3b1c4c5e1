"""The simulators speak the real protocols: the k8s sim is driven by the real
kubectl and by raw HTTP, the PKS sim by raw HTTP and by kubectl through the
kubeconfig it hands out.

Run: /usr/bin/python3 -m pytest -q tests/sim
"""

import base64
import http.client
import json
import os
import queue
import re
import secrets
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import testlib  # noqa: E402

PYTHON = "/usr/bin/python3"
# shared/ sits beside the work tree, both here and in CI.
EXAMPLES = os.path.join(os.path.dirname(ROOT), "shared", "examples")
if not os.path.isdir(EXAMPLES):
    EXAMPLES = "/work/shared/examples"

VS_GROUP = "/apis/networking.istio.io/v1"


def vs(name, ns, **annotations):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "spec": {"hosts": ["%s.%s.svc.cluster.local" % (name, ns)], "gateways": ["mesh"],
                     "tcp": [{"match": [{"port": 5432}],
                              "route": [{"destination": {"host": name,
                                                         "port": {"number": 5432}}}]}]}}


SEED = {"objects": [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}},
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "search"}},
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
     "status": {"addresses": [{"type": "InternalIP", "address": "10.0.11.21"},
                              {"type": "Hostname", "address": "worker-1"}]}},
    {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-2"},
     "status": {"addresses": [{"type": "InternalIP", "address": "10.0.11.22"}]}},
    {"apiVersion": "v1", "kind": "Service",
     "metadata": {"name": "orders-db", "namespace": "payments"},
     "spec": {"type": "NodePort", "selector": {"app": "orders-db"},
              "ports": [{"name": "pg", "protocol": "TCP", "port": 5432,
                         "targetPort": 5432, "nodePort": 31432}]}},
    vs("orders-db", "payments", **{"portico.dev/expose": "true"}),
    vs("ledger-db", "payments"),
    vs("index", "search"),
]}


def wait_port_file(proc, path):
    """The sims write their port file once listening: wait for it."""
    def ready():
        if not proc.alive():
            raise AssertionError("%s exited early:\n%s" % (proc.name, proc.log()))
        return os.path.exists(path) and open(path).read().strip()
    return int(testlib.wait_until(ready, 15, "%s port file" % proc.name))


class Pki:
    """A CA in a tmp dir, and an SSL context trusting it."""

    def __init__(self, d):
        self.dir = str(d)
        self.ca = testlib.make_ca(self.dir)
        self.ca_cert = self.ca[0]
        self.ctx = ssl.create_default_context(cafile=self.ca_cert)

    def cert(self, name, dns=(), ips=()):
        return testlib.make_cert(self.dir, self.ca, name, dns=dns, ips=ips)


class K8sSim:
    """A k8s_sim.py on its own loopback address and free port."""

    def __init__(self, tmp, pki, seed=SEED, args=(), dns=("kubernetes.default.svc",),
                 ips=None):
        self.pki = pki
        self.host = testlib.loopback_addr()
        self.port = testlib.free_port(self.host)
        self.token = secrets.token_hex(16)
        self.url = "https://%s:%d" % (self.host, self.port)
        self.cache_dir = os.path.join(tmp, "kube-cache")
        cert, key = pki.cert("apiserver", dns=dns,
                             ips=[self.host] if ips is None else ips)
        argv = [PYTHON, os.path.join(HERE, "k8s_sim.py"), "--listen", self.host,
                "--port", str(self.port), "--cert", cert, "--key", key,
                "--token", self.token, "--port-file", os.path.join(tmp, "k8s.port")]
        if seed is not None:
            seed_path = os.path.join(tmp, "seed.json")
            with open(seed_path, "w") as f:
                json.dump(seed, f)
            argv += ["--seed", seed_path]
        argv += list(args)
        self.proc = testlib.Proc(argv, "k8s_sim", tmp)
        assert wait_port_file(self.proc, os.path.join(tmp, "k8s.port")) == self.port

    def kubectl(self, *args, **kw):
        return testlib.kubectl(args, self.url, self.token, self.pki.ca_cert,
                               self.cache_dir, **kw)

    def request(self, method, path, body=None, ctype="application/json", token=True):
        """(status, decoded JSON body) of one raw HTTP request."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", ctype)
        if token:
            req.add_header("Authorization", "Bearer " + (
                self.token if token is True else token))
        try:
            with urllib.request.urlopen(req, context=self.pki.ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def get(self, path):
        status, body = self.request("GET", path)
        assert status == 200, body
        return body

    def stream(self, path):
        """Open a watch; returns the response to readline() events from."""
        req = urllib.request.Request(self.url + path)
        req.add_header("Authorization", "Bearer " + self.token)
        return urllib.request.urlopen(req, context=self.pki.ctx, timeout=10)

    def stop(self):
        self.proc.stop()


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def start_k8s(tmp_path, pki):
    """Factory starting k8s sims; stops them (by PID) afterwards."""
    sims = []

    def start(**kw):
        d = tmp_path / ("k8s%d" % len(sims))
        d.mkdir()
        sims.append(K8sSim(str(d), pki, **kw))
        return sims[-1]
    yield start
    for sim in sims:
        sim.stop()


@pytest.fixture
def k8s(start_k8s):
    return start_k8s()


def read_events(resp, n):
    """The next n watch events from a streaming response."""
    events = []
    while len(events) < n:
        line = resp.readline()
        assert line, "watch ended after %d of %d events: %r" % (len(events), n, events)
        events.append(json.loads(line))
    return events


# ------------------------------------------------------------ k8s: kubectl

def test_kubectl_get_and_discovery(k8s):
    out = k8s.kubectl("get", "nodes").stdout
    assert "worker-1" in out and "worker-2" in out
    out = k8s.kubectl("get", "services", "-A").stdout
    assert "payments" in out and "orders-db" in out
    out = k8s.kubectl("get", "virtualservices", "-A").stdout
    assert all(n in out for n in ("orders-db", "ledger-db", "index"))
    doc = yaml.safe_load(k8s.kubectl("get", "virtualservice", "orders-db", "-n",
                                     "payments", "-o", "yaml").stdout)
    assert doc["apiVersion"] == "networking.istio.io/v1"
    assert doc["kind"] == "VirtualService"
    assert doc["metadata"]["annotations"] == {"portico.dev/expose": "true"}
    assert doc["spec"]["tcp"][0]["match"] == [{"port": 5432}]
    versions = k8s.kubectl("api-versions").stdout.split()
    for v in ("v1", "discovery.k8s.io/v1", "networking.istio.io/v1",
              "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"):
        assert v in versions
    node = json.loads(k8s.kubectl("get", "node", "worker-1", "-o", "json").stdout)
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "10.0.11.21"}


EPS_GROUP = "/apis/discovery.k8s.io/v1"


def endpointslice(name, ns, svc, ips, ready=True):
    """An EndpointSlice as the controller writes it (no spec, no status)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}}
                          for ip in ips],
            "ports": [{"name": "pg", "protocol": "TCP", "port": 15432}]}


def test_kubectl_endpointslices(k8s):
    """EndpointSlices as the real kubectl reads them: discovered, listed in
    every namespace, selected by the service-name label, and watched."""
    for obj in (endpointslice("orders-db-abcde", "payments", "orders-db",
                              ["10.200.1.5", "10.200.2.7"]),
                endpointslice("index-fghij", "search", "index", ["10.200.3.9"], False)):
        status, body = k8s.request("POST", EPS_GROUP + "/namespaces/%s/endpointslices"
                                   % obj["metadata"]["namespace"], obj)
        assert status == 201, body
    out = k8s.kubectl("get", "endpointslices", "-A").stdout
    assert "orders-db-abcde" in out and "index-fghij" in out, out
    assert "payments" in out and "search" in out, out
    out = k8s.kubectl("get", "endpointslices", "-A", "-l",
                      "kubernetes.io/service-name=orders-db", "-o", "name").stdout
    assert out.split() == ["endpointslice.discovery.k8s.io/orders-db-abcde"], out
    doc = yaml.safe_load(k8s.kubectl("get", "endpointslice", "orders-db-abcde", "-n",
                                     "payments", "-o", "yaml").stdout)
    assert doc["apiVersion"] == "discovery.k8s.io/v1" and doc["kind"] == "EndpointSlice"
    assert doc["addressType"] == "IPv4" and "spec" not in doc and "status" not in doc
    assert [e["addresses"] for e in doc["endpoints"]] == [["10.200.1.5"], ["10.200.2.7"]]
    assert doc["ports"] == [{"name": "pg", "protocol": "TCP", "port": 15432}]
    # a watch of one namespace, by label, sees a pod turn unready
    w = KubectlWatch(k8s, "endpointslices", "-n", "payments", "-l",
                     "kubernetes.io/service-name=orders-db")
    try:
        w.wait("ADDED", "orders-db-abcde")
        k8s.request("PATCH", EPS_GROUP + "/namespaces/payments/endpointslices/"
                    "orders-db-abcde",
                    {"endpoints": [{"addresses": ["10.200.1.5"],
                                    "conditions": {"ready": False}}]},
                    ctype="application/merge-patch+json")
        w.wait("MODIFIED", "orders-db-abcde")
        assert not w.saw("index-fghij")
    finally:
        w.stop()


def test_kubectl_annotate_and_remove(k8s):
    k8s.kubectl("annotate", "virtualservice", "ledger-db", "-n", "payments",
                "portico.dev/expose=true")
    before = k8s.get(VS_GROUP + "/namespaces/payments/virtualservices/ledger-db")
    assert before["metadata"]["annotations"] == {"portico.dev/expose": "true"}
    out = k8s.kubectl("get", "vs", "ledger-db", "-n", "payments", "-o",
                      "jsonpath={.metadata.annotations.portico\\.dev/expose}").stdout
    assert out == "true"
    k8s.kubectl("annotate", "virtualservice", "ledger-db", "-n", "payments",
                "portico.dev/expose-")
    after = k8s.get(VS_GROUP + "/namespaces/payments/virtualservices/ledger-db")
    assert "annotations" not in after["metadata"]
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # Annotations are metadata: the generation stays.
    assert after["metadata"]["generation"] == 1


def test_kubectl_delete(k8s):
    out = k8s.kubectl("delete", "virtualservice", "index", "-n", "search").stdout
    assert "deleted" in out
    cp = k8s.kubectl("get", "vs", "index", "-n", "search", check=False)
    assert cp.returncode != 0 and "NotFound" in cp.stderr
    status, body = k8s.request("GET", VS_GROUP + "/namespaces/search/virtualservices/index")
    assert status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"


class KubectlWatch:
    """`kubectl get ... -w --output-watch-events` in the background; saw()
    tells whether a line with all the given words has come out yet."""

    def __init__(self, k8s, *args):
        argv = [testlib.KUBECTL, "--kubeconfig=/dev/null", "--server=" + k8s.url,
                "--token=" + k8s.token, "--certificate-authority=" + k8s.pki.ca_cert,
                "--cache-dir=" + k8s.cache_dir, "get"] + list(args) + [
                "-w", "--output-watch-events", "--request-timeout=60s"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout],
                         daemon=True).start()

    def saw(self, *words):
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return any(all(w in line for w in words) for line in self.seen)

    def wait(self, *words, timeout=20):
        testlib.wait_until(lambda: self.saw(*words), timeout,
                           "kubectl -w printing %s (so far %r)" % (words, self.seen))

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def test_kubectl_watch_sees_event(k8s):
    w = KubectlWatch(k8s, "vs", "-n", "payments")
    try:
        # The initial list shows up first, then the change made after it.
        w.wait("ADDED", "ledger-db")
        k8s.kubectl("annotate", "vs", "ledger-db", "-n", "payments", "portico.dev/port=21017")
        w.wait("MODIFIED", "ledger-db")
    finally:
        w.stop()


def test_kubectl_istio_v1alpha3_only(start_k8s):
    sim = start_k8s(args=["--istio-versions", "v1alpha3"])
    out = sim.kubectl("get", "virtualservices.v1alpha3.networking.istio.io", "-A").stdout
    assert "orders-db" in out
    doc = json.loads(sim.kubectl("get", "vs", "index", "-n", "search", "-o", "json").stdout)
    assert doc["apiVersion"] == "networking.istio.io/v1alpha3"
    versions = sim.kubectl("api-versions").stdout.split()
    assert "networking.istio.io/v1alpha3" in versions
    assert "networking.istio.io/v1" not in versions
    status, _ = sim.request("GET", VS_GROUP + "/virtualservices")
    assert status == 404


@pytest.mark.parametrize("minor", range(27, 34))
def test_kubectl_versions(start_k8s, minor):
    """/usr/bin/kubectl runs the kubectl matching /version: all of them work."""
    sim = start_k8s(args=["--server-version", "1.%d.3" % minor])
    info = json.loads(sim.kubectl("version", "-o", "json").stdout)
    assert info["serverVersion"]["gitVersion"] == "v1.%d.3" % minor
    assert info["clientVersion"]["gitVersion"].startswith("v1.%d." % minor)
    sim.kubectl("annotate", "vs", "index", "-n", "search", "portico.dev/expose=true")
    out = sim.kubectl("get", "vs", "-A", "-o", "name").stdout
    assert "virtualservice.networking.istio.io/index" in out


def test_kubectl_tls_server_name(start_k8s):
    """A certificate without the IP: --tls-server-name makes it verify."""
    sim = start_k8s(dns=["payments.k8s.example.com"], ips=[])
    cp = sim.kubectl("get", "nodes", check=False)
    assert cp.returncode != 0 and "certificate" in cp.stderr
    out = sim.kubectl("get", "nodes", tls_server_name="payments.k8s.example.com").stdout
    assert "worker-1" in out


# ------------------------------------------------------------ k8s: raw HTTP

def test_auth_required(k8s):
    status, body = k8s.request("GET", "/api/v1/nodes", token=False)
    assert status == 401 and body["kind"] == "Status" and body["reason"] == "Unauthorized"
    status, body = k8s.request("GET", "/version", token="wrong")
    assert status == 401 and body["code"] == 401
    with urllib.request.urlopen(k8s.url + "/healthz", context=k8s.pki.ctx) as resp:
        assert resp.read() == b"ok"
    assert k8s.get("/version")["gitVersion"] == "v1.32.0"
    assert k8s.token not in k8s.proc.log()


def test_list_paging(k8s):
    for i in range(7):
        status, _ = k8s.request("POST", VS_GROUP + "/namespaces/search/virtualservices",
                                vs("svc-%d" % i, "search"))
        assert status == 201
    names, cont, pages = [], "", 0
    while True:
        q = {"limit": 3}
        if cont:
            q["continue"] = cont
        page = k8s.get(VS_GROUP + "/virtualservices?" + urllib.parse.urlencode(q))
        assert page["kind"] == "VirtualServiceList"
        assert page["metadata"]["resourceVersion"]
        assert len(page["items"]) <= 3
        names += [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in page["items"]]
        pages += 1
        cont = page["metadata"].get("continue")
        if not cont:
            break
    assert pages == 4 and len(names) == 10 and names == sorted(set(names))
    status, body = k8s.request("GET", VS_GROUP + "/virtualservices?limit=2&continue=%21bad")
    assert status == 400 and body["reason"] == "BadRequest"
    # Namespace scoping and selectors.
    ns_list = k8s.get(VS_GROUP + "/namespaces/payments/virtualservices")
    assert {o["metadata"]["name"] for o in ns_list["items"]} == {"orders-db", "ledger-db"}
    one = k8s.get(VS_GROUP + "/virtualservices?fieldSelector=metadata.name%3Dindex")
    assert [o["metadata"]["name"] for o in one["items"]] == ["index"]


def test_watch_replays_from_resource_version(k8s):
    rv = k8s.get(VS_GROUP + "/namespaces/payments/virtualservices")["metadata"]["resourceVersion"]
    base = VS_GROUP + "/namespaces/payments/virtualservices"
    assert k8s.request("POST", base, vs("cache", "payments"))[0] == 201
    assert k8s.request("PATCH", base + "/cache",
                       {"metadata": {"annotations": {"portico.dev/expose": "true"}}},
                       ctype="application/merge-patch+json")[0] == 200
    assert k8s.request("DELETE", base + "/cache")[0] == 200
    # Noise in another namespace and another resource type is filtered out.
    assert k8s.request("POST", VS_GROUP + "/namespaces/search/virtualservices",
                       vs("other", "search"))[0] == 201
    with k8s.stream(base + "?watch=1&resourceVersion=%s&timeoutSeconds=5" % rv) as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"
        events = read_events(resp, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert all(e["object"]["metadata"]["name"] == "cache" for e in events)
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    assert events[1]["object"]["metadata"]["annotations"] == {"portico.dev/expose": "true"}


def test_watch_live_initial_and_timeout(k8s):
    base = VS_GROUP + "/namespaces/payments/virtualservices"
    with k8s.stream(base + "?watch=True&timeoutSeconds=30") as resp:
        initial = read_events(resp, 2)
        assert {e["type"] for e in initial} == {"ADDED"}
        assert {e["object"]["metadata"]["name"] for e in initial} == {"orders-db", "ledger-db"}
        k8s.request("PATCH", base + "/ledger-db", {"metadata": {"labels": {"a": "b"}}},
                    ctype="application/merge-patch+json")
        (ev,) = read_events(resp, 1)
        assert ev["type"] == "MODIFIED" and ev["object"]["metadata"]["labels"] == {"a": "b"}
    # timeoutSeconds ends the stream cleanly; bookmarks arrive meanwhile.
    with k8s.stream(VS_GROUP + "/virtualservices?watch=true&resourceVersion=0"
                    "&allowWatchBookmarks=true&timeoutSeconds=2") as resp:
        events = []
        while True:
            line = resp.readline()
            if not line:
                break
            events.append(json.loads(line))
    assert [e["type"] for e in events[:3]] == ["ADDED"] * 3
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks and set(bookmarks[0]["object"]["metadata"]) == {"resourceVersion"}


def test_watch_field_selector_and_cluster_scope(k8s):
    with k8s.stream("/api/v1/nodes?watch=t&fieldSelector=metadata.name%3Dworker-2"
                    "&timeoutSeconds=10") as resp:
        (ev,) = read_events(resp, 1)
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "worker-2"
        assert ev["object"]["kind"] == "Node" and ev["object"]["apiVersion"] == "v1"
        k8s.request("PATCH", "/api/v1/nodes/worker-1", {"metadata": {"labels": {"x": "1"}}},
                    ctype="application/merge-patch+json")
        k8s.request("DELETE", "/api/v1/nodes/worker-2")
        (ev,) = read_events(resp, 1)
        assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "worker-2"


def test_watch_too_old_resource_version(start_k8s):
    sim = start_k8s(args=["--history", "3"])   # the seed alone makes 8 events
    with sim.stream(VS_GROUP + "/virtualservices?watch=1&resourceVersion=4") as resp:
        (ev,) = read_events(resp, 1)
        assert ev["type"] == "ERROR"
        assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
        assert resp.readline() == b""
    with sim.stream(VS_GROUP + "/virtualservices?watch=1&resourceVersion=5"
                    "&timeoutSeconds=5") as resp:
        events = read_events(resp, 3)
    assert [e["object"]["metadata"]["resourceVersion"] for e in events] == ["6", "7", "8"]


def test_close_watches(k8s):
    path = VS_GROUP + "/virtualservices?watch=1&timeoutSeconds=60"
    with k8s.stream(path) as resp:
        read_events(resp, 3)
        assert k8s.request("POST", "/_sim/close-watches")[0] == 200
        assert resp.read() == b""   # the final chunk: a clean end of stream
    with k8s.stream(path) as resp:
        read_events(resp, 3)
        k8s.request("POST", "/_sim/close-watches?abort=true")
        # readline() would hide it; read() notices the missing final chunk.
        with pytest.raises(http.client.IncompleteRead):
            resp.read()


def test_watch_bad_boolean(k8s):
    status, body = k8s.request("GET", VS_GROUP + "/virtualservices?watch=bogus")
    assert status == 400 and body["kind"] == "Status" and body["code"] == 400
    # watch=false is a plain list.
    assert k8s.get(VS_GROUP + "/virtualservices?watch=F")["kind"] == "VirtualServiceList"


def test_writes_and_conflicts(k8s):
    path = VS_GROUP + "/namespaces/payments/virtualservices/orders-db"
    cur = k8s.get(path)
    rv = cur["metadata"]["resourceVersion"]
    stale = {"metadata": {"resourceVersion": str(int(rv) - 1),
                          "annotations": {"portico.dev/address": "x:1"}}}
    status, body = k8s.request("PATCH", path, stale, ctype="application/merge-patch+json")
    assert status == 409 and body["reason"] == "Conflict" and body["kind"] == "Status"
    fresh = {"metadata": {"resourceVersion": rv,
                          "annotations": {"portico.dev/address": "payments.k8s.example.com:21017"}}}
    status, body = k8s.request("PATCH", path, fresh, ctype="application/merge-patch+json")
    assert status == 200 and int(body["metadata"]["resourceVersion"]) > int(rv)
    assert body["metadata"]["annotations"]["portico.dev/expose"] == "true"
    # A no-op patch changes nothing.
    status, same = k8s.request("PATCH", path,
                               {"metadata": {"annotations": {"portico.dev/expose": "true"}}},
                               ctype="application/merge-patch+json")
    assert same["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    # Strategic merge patch acts as a merge patch; JSON patch works too.
    status, body = k8s.request("PATCH", path, {"metadata": {"annotations": {
        "portico.dev/address": None, "portico.dev/error": "port taken"}}},
        ctype="application/strategic-merge-patch+json")
    assert status == 200
    assert body["metadata"]["annotations"] == {"portico.dev/expose": "true",
                                               "portico.dev/error": "port taken"}
    status, body = k8s.request("PATCH", path, [
        {"op": "test", "path": "/metadata/resourceVersion",
         "value": body["metadata"]["resourceVersion"]},
        {"op": "remove", "path": "/metadata/annotations/portico.dev~1error"}],
        ctype="application/json-patch+json")
    assert status == 200 and body["metadata"]["annotations"] == {"portico.dev/expose": "true"}
    # Spec changes bump the generation; PUT with a stale rv conflicts.
    obj = k8s.get(path)
    obj["spec"]["hosts"] = ["changed"]
    status, body = k8s.request("PUT", path, obj)
    assert status == 200 and body["metadata"]["generation"] == 2
    status, body = k8s.request("PUT", path, obj)
    assert status == 409 and body["reason"] == "Conflict"
    # Create twice, unknown objects, unsupported patch types.
    coll = VS_GROUP + "/namespaces/payments/virtualservices"
    status, body = k8s.request("POST", coll, vs("orders-db", "payments"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    status, body = k8s.request("POST", coll, vs("fresh", "payments"))
    assert status == 201 and body["metadata"]["uid"] and body["metadata"]["generation"] == 1
    assert body["metadata"]["creationTimestamp"].endswith("Z")
    status, body = k8s.request("DELETE", coll + "/missing")
    assert status == 404 and body["reason"] == "NotFound"
    status, body = k8s.request("PATCH", path, {}, ctype="application/apply-patch+yaml")
    assert status == 415


def test_every_istio_version_serves_the_same_objects(k8s):
    for version in ("v1", "v1beta1", "v1alpha3"):
        lst = k8s.get("/apis/networking.istio.io/%s/virtualservices" % version)
        assert len(lst["items"]) == 3
        assert {o["apiVersion"] for o in lst["items"]} == {"networking.istio.io/" + version}
    disc = k8s.get("/apis")
    istio = [g for g in disc["groups"] if g["name"] == "networking.istio.io"][0]
    assert istio["preferredVersion"]["version"] == "v1"
    res = k8s.get("/apis/networking.istio.io/v1beta1")["resources"]
    vsr = [r for r in res if r["name"] == "virtualservices"][0]
    assert vsr["kind"] == "VirtualService" and vsr["namespaced"] and vsr["shortNames"] == ["vs"]
    assert k8s.get("/apis/discovery.k8s.io/v1/endpointslices")["kind"] == "EndpointSliceList"


# ------------------------------------------------------------ PKS / UAA

CLIENT_ID, CLIENT_SECRET = "portico", "s3cret:with&odd=chars"


class PksSim:
    def __init__(self, tmp, pki, state=None, token_ttl=None, args=()):
        self.pki = pki
        self.host = testlib.loopback_addr()
        cert, key = pki.cert("pks", dns=["pks.example.com"], ips=[self.host])
        port_file = os.path.join(tmp, "pks.port")
        argv = [PYTHON, os.path.join(HERE, "pks_sim.py"), "--listen", self.host,
                "--port", "0", "--cert", cert, "--key", key, "--client-id", CLIENT_ID,
                "--client-secret", CLIENT_SECRET, "--port-file", port_file]
        if state is not None:
            path = os.path.join(tmp, "pks-state.json")
            with open(path, "w") as f:
                json.dump(state, f)
            argv += ["--state", path]
        if token_ttl is not None:
            argv += ["--token-ttl", str(token_ttl)]
        argv += list(args)
        self.proc = testlib.Proc(argv, "pks_sim", tmp)
        self.port = wait_port_file(self.proc, port_file)
        assert 0 < self.port < 32768
        self.url = "https://%s:%d" % (self.host, self.port)

    def request(self, method, path, body=None, headers=None, form=None):
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers=headers or {})
        if form is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with urllib.request.urlopen(req, context=self.pki.ctx, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def token(self, client_id=CLIENT_ID, secret=CLIENT_SECRET, quote=urllib.parse.quote_plus):
        """client_credentials grant; RFC 6749 2.3.1 form-encodes id and secret
        before Base64, pass quote=str for clients that do not."""
        basic = base64.b64encode(("%s:%s" % (quote(client_id), quote(secret))).encode())
        return self.request("POST", "/oauth/token",
                            headers={"Authorization": "Basic " + basic.decode()},
                            form={"grant_type": "client_credentials"})

    def bearer(self, method, path, token, body=None):
        return self.request(method, path, body, headers={"Authorization": "Bearer " + token})

    def stop(self):
        self.proc.stop()


@pytest.fixture
def start_pks(tmp_path, pki):
    sims = []

    def start(**kw):
        d = tmp_path / ("pks%d" % len(sims))
        d.mkdir()
        sims.append(PksSim(str(d), pki, **kw))
        return sims[-1]
    yield start
    for sim in sims:
        sim.stop()


def example_clusters():
    with open(os.path.join(EXAMPLES, "pks-clusters.json")) as f:
        return json.load(f)


def test_pks_token_and_clusters(start_pks):
    clusters = example_clusters()
    pks = start_pks(state={"clusters": [{"cluster": c, "kubeconfig": {}} for c in clusters]})
    status, tok = pks.token()
    assert status == 200
    with open(os.path.join(EXAMPLES, "uaa-token-response.json")) as f:
        assert set(tok) == set(json.load(f))
    assert tok["token_type"] == "bearer" and tok["expires_in"] == 43199
    status, got = pks.bearer("GET", "/v1/clusters", tok["access_token"])
    assert status == 200 and got == clusters
    status, one = pks.bearer("GET", "/v1/clusters/search", tok["access_token"])
    assert status == 200 and one["kubernetes_master_ips"] == ["In Progress"]
    assert pks.bearer("GET", "/v1/clusters/nope", tok["access_token"])[0] == 404
    # Each grant gives a fresh token; unencoded Basic credentials and the
    # password grant work as well.
    status, raw = pks.token(quote=str)
    assert status == 200 and raw["access_token"] != tok["access_token"]
    status, tok2 = pks.request("POST", "/oauth/token", form={
        "grant_type": "password", "username": CLIENT_ID, "password": CLIENT_SECRET})
    assert status == 200 and pks.bearer("GET", "/v1/clusters", tok2["access_token"])[0] == 200


def test_pks_rejects_bad_credentials_and_tokens(start_pks):
    pks = start_pks(token_ttl=1)
    status, body = pks.token(secret="wrong")
    assert status == 401 and body["error"] == "unauthorized"
    assert pks.request("GET", "/v1/clusters")[0] == 401
    assert pks.bearer("GET", "/v1/clusters", "not-a-token")[0] == 401
    status, tok = pks.token()
    assert status == 200 and tok["expires_in"] == 1
    assert pks.bearer("GET", "/v1/clusters", tok["access_token"]) == (200, [])
    testlib.wait_until(lambda: pks.bearer("GET", "/v1/clusters", tok["access_token"])[0] == 401,
                       5, "token expiry")
    assert CLIENT_SECRET not in pks.proc.log()


def test_pks_password_grant_with_its_own_user(start_pks):
    """--username/--password: the password grant wants that user and the
    client authenticated too (UAA's rule); the client's own id/secret are no
    longer a user. Every token request is recorded, without passwords."""
    pks = start_pks(args=["--username", "alice", "--password", "pa ss&w=rd%"])

    def grant(user, password, client=(CLIENT_ID, CLIENT_SECRET)):
        headers = {}
        if client is not None:
            basic = base64.b64encode(("%s:%s" % client).encode()).decode()
            headers["Authorization"] = "Basic " + basic
        return pks.request("POST", "/oauth/token", headers=headers, form={
            "grant_type": "password", "username": user, "password": password})[0]
    assert grant("alice", "pa ss&w=rd%") == 200
    assert grant("alice", "wrong") == 401
    assert grant("alice", "pa ss&w=rd%", client=None) == 401
    assert grant("alice", "pa ss&w=rd%", client=(CLIENT_ID, "nope")) == 401
    assert grant(CLIENT_ID, CLIENT_SECRET) == 401
    assert pks.token()[0] == 200        # client_credentials as before
    status, log = pks.request("GET", "/_sim/token-requests")
    assert status == 200
    assert [(r["grant_type"], r["username"], r["client_id"], r["status"]) for r in log] == [
        ("password", "alice", CLIENT_ID, 200), ("password", "alice", CLIENT_ID, 401),
        ("password", "alice", None, 401), ("password", "alice", CLIENT_ID, 401),
        ("password", CLIENT_ID, CLIENT_ID, 401), ("client_credentials", None, CLIENT_ID, 200)]
    assert "pa ss" not in json.dumps(log) and "pa ss" not in pks.proc.log()


def test_pks_control_api_and_request_counts(start_pks):
    pks = start_pks()
    tok = pks.token()[1]["access_token"]
    cluster = dict(example_clusters()[0])
    assert pks.request("PUT", "/_sim/clusters/" + cluster["uuid"],
                       {"cluster": cluster, "kubeconfig": {}})[0] == 200
    assert pks.bearer("GET", "/v1/clusters", tok) == (200, [cluster])
    cluster["last_action_state"] = "failed"
    pks.request("PUT", "/_sim/clusters/" + cluster["uuid"], {"cluster": cluster})
    assert pks.bearer("GET", "/v1/clusters", tok)[1][0]["last_action_state"] == "failed"
    assert pks.request("DELETE", "/_sim/clusters/" + cluster["uuid"])[0] == 200
    assert pks.bearer("GET", "/v1/clusters", tok) == (200, [])
    assert pks.request("DELETE", "/_sim/clusters/" + cluster["uuid"])[0] == 404
    counts = pks.request("GET", "/_sim/requests")[1]
    assert counts["/v1/clusters"] == 3 and counts["/oauth/token"] == 1
    # Injected faults: the next two listings fail, then it recovers.
    pks.request("PUT", "/_sim/faults", {"path": "/v1/clusters", "status": 503, "count": 2})
    assert [pks.bearer("GET", "/v1/clusters", tok)[0] for _ in range(3)] == [503, 503, 200]
    pks.request("POST", "/_sim/expire-tokens")
    assert pks.bearer("GET", "/v1/clusters", tok)[0] == 401


def test_pks_binds_kubeconfig_drives_kubectl(start_pks, start_k8s, tmp_path):
    k8s = start_k8s()
    with open(k8s.pki.ca_cert, "rb") as f:
        ca_data = base64.b64encode(f.read()).decode()
    cluster = example_clusters()[0]
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": cluster["name"],
                      "cluster": {"server": k8s.url, "certificate-authority-data": ca_data}}],
        "users": [{"name": "portico", "user": {"token": k8s.token}}],
        "contexts": [{"name": cluster["name"],
                      "context": {"cluster": cluster["name"], "user": "portico"}}],
        "current-context": cluster["name"]}
    pks = start_pks(state={"clusters": [{"cluster": cluster, "kubeconfig": kubeconfig}]})
    tok = pks.token()[1]["access_token"]
    assert pks.bearer("POST", "/v1/clusters/nope/binds", tok, {})[0] == 404
    assert pks.request("POST", "/v1/clusters/%s/binds" % cluster["name"], {})[0] == 401
    status, got = pks.bearer("POST", "/v1/clusters/%s/binds" % cluster["name"], tok,
                             {"user": "portico"})
    assert status == 200 and got == kubeconfig
    # "answer": the usual answer, with another status (201 Created).
    pks.request("PUT", "/_sim/faults", {"path": "/v1/clusters/%s/binds" % cluster["name"],
                                        "answer": 201, "count": 1})
    assert pks.bearer("POST", "/v1/clusters/%s/binds" % cluster["name"], tok, {}) == \
        (201, kubeconfig)
    path = tmp_path / "kubeconfig.json"
    path.write_text(json.dumps(got))
    cp = subprocess.run([testlib.KUBECTL, "--kubeconfig", str(path),
                         "--cache-dir", str(tmp_path / "bind-cache"),
                         "get", "virtualservices", "-A"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert "orders-db" in cp.stdout


# ------------------------------------------------------------ k8s: fault switches

def fault(k8s, **f):
    status, body = k8s.request("PUT", "/_sim/faults", f)
    assert status == 200, body


def test_fault_split_chunks_and_bookmarks(k8s):
    """Events cut into 3-byte chunks, or many events in one chunk, with
    bookmarks every 0.1 s: kubectl reads every event; the raw stream shows
    the BOOKMARKs carry the current resourceVersion."""
    fault(k8s, kind="split", bytes=3)
    fault(k8s, kind="bookmarks", interval=0.1)
    w = KubectlWatch(k8s, "vs", "-A")
    try:
        w.wait("ADDED", "ledger-db")
        w.wait("ADDED", "index")
        k8s.kubectl("annotate", "vs", "ledger-db", "-n", "payments", "a=1")
        w.wait("MODIFIED", "ledger-db")
    finally:
        w.stop()
    k8s.request("DELETE", "/_sim/faults")
    fault(k8s, kind="split", bytes=1 << 20)     # the three ADDED in one chunk
    w = KubectlWatch(k8s, "vs", "-A")
    try:
        for name in ("orders-db", "ledger-db", "index"):
            w.wait("ADDED", name)
    finally:
        w.stop()
    rv = k8s.get(VS_GROUP + "/virtualservices")["metadata"]["resourceVersion"]
    fault(k8s, kind="bookmarks", interval=0.1)
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1&allowWatchBookmarks=true"
                    "&resourceVersion=" + rv) as resp:
        # moves rv, with no VirtualService event
        assert k8s.request("POST", "/api/v1/namespaces",
                           {"metadata": {"name": "other"}})[0] == 201
        (ev,) = read_events(resp, 1)
        assert ev["type"] == "BOOKMARK"
        assert int(ev["object"]["metadata"]["resourceVersion"]) > int(rv)


def test_fault_in_stream_410(k8s):
    """After compaction a watch from an old resourceVersion gets an ERROR
    event with a 410 Status; kubectl reports it as expired. watch-error
    sends one with reason Gone."""
    rv = k8s.get(VS_GROUP + "/virtualservices")["metadata"]["resourceVersion"]
    k8s.kubectl("annotate", "vs", "index", "-n", "search", "a=1")
    assert k8s.request("POST", "/_sim/compact")[0] == 200
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1&resourceVersion=" + rv) as resp:
        (ev,) = read_events(resp, 1)
        assert ev["type"] == "ERROR"
        assert (ev["object"]["code"], ev["object"]["reason"]) == (410, "Expired")
    # kubectl lists, then watches from the list: the fault answers that watch.
    fault(k8s, kind="watch-error", count=1, message="too old resource version: 1 (9)")
    # kubectl prints the Status (Failure, Expired) and the watch ends.
    out = k8s.kubectl("get", "vs", "-A", "-w", timeout=20).stdout
    assert re.search(r"Failure\s+Expired\s+too old resource version", out), out
    fault(k8s, kind="watch-error", reason="Gone", count=1)
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1") as resp:
        (ev,) = read_events(resp, 1)
        assert (ev["type"], ev["object"]["code"], ev["object"]["reason"]) == \
            ("ERROR", 410, "Gone")
        assert resp.readline() == b""


def test_fault_stall_and_slow(k8s):
    """A stalled watch sends nothing, not even its timeout's end; a slow list
    comes in small delayed chunks and kubectl still reads it."""
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1&timeoutSeconds=1") as resp:
        read_events(resp, 3)
        fault(k8s, kind="stall", count=0)       # the open watch only
        k8s.kubectl("annotate", "vs", "index", "-n", "search", "a=1")
        resp.fp.raw._sock.settimeout(2.5)
        with pytest.raises(TimeoutError):
            resp.readline()
    w = KubectlWatch(k8s, "vs", "-A")           # a new watch is not stalled
    try:
        w.wait("ADDED", "index")
    finally:
        w.stop()
    fault(k8s, kind="slow", bytes=64, delay=0.01)
    out = k8s.kubectl("get", "vs", "-A").stdout
    assert "orders-db" in out and "index" in out


def test_fault_status_malformed_continue(k8s):
    fault(k8s, kind="status", status=500, count=1, path=VS_GROUP)
    cp = k8s.kubectl("get", "vs", "-A", check=False)
    assert cp.returncode != 0 and "InternalError" in cp.stderr + cp.stdout or \
        "injected fault" in cp.stderr, cp.stderr
    assert "index" in k8s.kubectl("get", "vs", "-A").stdout     # count used up
    fault(k8s, kind="malformed", count=1, on="list", path=VS_GROUP)
    cp = k8s.kubectl("get", "vs", "-A", check=False)
    assert cp.returncode != 0, cp.stdout
    fault(k8s, kind="continue-expired", count=1)
    cp = k8s.kubectl("get", "vs", "-A", "--chunk-size=1", check=False)
    assert cp.returncode != 0 and "continue parameter is too old" in cp.stderr, cp.stderr
    status, body = k8s.request("GET", VS_GROUP + "/virtualservices?limit=1")
    assert status == 200 and body["metadata"]["continue"]
    fault(k8s, kind="continue-expired", count=1)
    status, body = k8s.request("GET", VS_GROUP + "/virtualservices?limit=1&continue="
                               + body["metadata"]["continue"])
    assert (status, body["code"], body["reason"]) == (410, 410, "Expired")
    fault(k8s, kind="malformed", count=1, on="watch")
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1") as resp:
        with pytest.raises(ValueError):
            json.loads(resp.readline())
    counts = k8s.get("/_sim/requests")
    assert counts["watch " + VS_GROUP + "/virtualservices"] == 1


def test_fault_corrupt(k8s):
    """corrupt cuts a watch's events in half (every one at fraction 1): each
    line is there and is not JSON. Once its count is used up, watches are
    whole again."""
    fault(k8s, kind="corrupt", fraction=1.0, count=1, path=VS_GROUP)
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1") as resp:
        for _ in range(3):
            line = resp.readline()
            assert line.endswith(b"\n") and b'"ADDED"' in line, line
            with pytest.raises(ValueError):
                json.loads(line)
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1") as resp:
        assert [e["type"] for e in read_events(resp, 3)] == ["ADDED"] * 3
    fault(k8s, kind="empty", count=1, path=VS_GROUP)
    with k8s.stream(VS_GROUP + "/virtualservices?watch=1") as resp:
        assert resp.status == 200 and resp.read() == b""


def test_rotate_token_and_oversized_object(k8s):
    """After a rotation the old token is refused with 401 (kubectl: not
    logged in) and the new one works; a 5 MiB object is stored and served,
    its name ahead of its annotations as the apiserver orders them."""
    new = secrets.token_hex(16)
    assert k8s.request("POST", "/_sim/rotate-token", {"token": new})[0] == 200
    cp = k8s.kubectl("get", "vs", "-A", check=False)
    assert cp.returncode != 0 and "must be logged in" in cp.stderr, cp.stderr
    k8s.token = new
    big = vs("huge", "payments", pad="x" * (5 << 20))
    assert k8s.request("POST", VS_GROUP + "/namespaces/payments/virtualservices",
                       big)[0] == 201
    raw = k8s.stream(VS_GROUP + "/namespaces/payments/virtualservices/huge").read()
    assert len(raw) > 5 << 20
    assert raw.index(b'"name"') < raw.index(b'"resourceVersion"') < raw.index(b'"pad"')
    out = k8s.kubectl("get", "vs", "huge", "-n", "payments", "-o", "name").stdout
    assert out.strip() == "virtualservice.networking.istio.io/huge"
