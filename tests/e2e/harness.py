"""The end-to-end harness: a whole portico fleet on loopback.

A `Fleet` owns one run folder (/tmp/pt-XXXXXX: short, because ipc:// socket
paths must fit in sun_path) that holds everything it makes: a CA and
certificates, the PKS/UAA simulator, one Kubernetes API simulator per cluster
(each on a loopback address of its own), the TCP workloads behind each
cluster's nodes, portico.conf, the LMDB store and the daemons' logs.

    fleet = Fleet()
    pay = fleet.add_cluster("payments", services=[...], virtualservices=[...])
    fleet.start()                       # allocd, then renderd, applyd, watcherd
    addr = fleet.wait_address(pay, "payments", "orders-db")
    fleet.stop()                        # everything, by PID

Everything binds to 127.0.0.0/8 with ports below 32768 that were free when
picked; processes are stopped by their own PID only (a proxy's master by the
PID in its pid file, its workers as the master's children). Waits poll a
condition (testlib.wait_until), never sleep a fixed time.

The proxies default to one HAProxy called "haproxy"; Fleet(proxies=...)
names others, of any kind (haproxy, nginx), each with its own renderd and
applyd and, when given one, a listen address of its own.

The same classes drive scripts/demo.py, which starts the daemons under
supervisord instead of `Fleet.start_daemons()`.
"""

import base64
import json
import os
import re
import random
import secrets
import shutil
import signal
import socket
import ssl
import string
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import testlib  # noqa: E402

PY = "/usr/bin/python3"

# What the tests write holds secrets (portico.conf's [pks] client_secret,
# kubeconfigs with tokens, token files): portico refuses such files when
# group or others may read them, as ssh refuses a private key.
os.umask(0o077)

SIM_DIR = os.path.join(ROOT, "tests", "sim")
DOMAIN = "k8s.example.test"
CLIENT_ID = "portico"
# Characters that HTTP Basic auth and form encoding treat specially.
CLIENT_SECRET = "s3cret:odd&chars=1"
VS_API = "/apis/networking.istio.io/v1"
HAPROXY_NAME = "haproxy"        # the [proxy.NAME] of the default fleet
# The loopback range testlib.loopback_addr() draws every address from.
TEST_BACKENDS = "127.77.0.0/16"

# Addresses and ports are random: let this many attempts find free ones.
_RETRIES = 20


def haproxy_ports(text):
    """The workload ports a rendered HAProxy configuration routes: each
    backend p<port> that has a server."""
    return sorted(int(p) for p in re.findall(r"^backend p(\d+)\n(?:\t#[^\n]*\n)*\tserver ",
                                             text, re.M))


def bin_dir():
    """Where the daemons are: $PORTICO_BIN (make test: the ASan build) or build/bin."""
    return os.environ.get("PORTICO_BIN") or os.path.join(ROOT, "build", "bin")


def daemon_path(name):
    return os.path.join(bin_dir(), name)


def have_daemon(name):
    return os.access(daemon_path(name), os.X_OK)


# ------------------------------------------------------------------ PKI, HTTP

class Pki:
    """A CA in dir; leaf certificates with unique names; a context trusting it."""

    def __init__(self, dir):
        self.dir = dir
        self.ca = testlib.make_ca(dir)
        self.ca_cert = self.ca[0]
        self.ctx = ssl.create_default_context(cafile=self.ca_cert)
        self._n = 0

    def cert(self, name, dns=(), ips=()):
        self._n += 1
        return testlib.make_cert(self.dir, self.ca, "%s-%d" % (name, self._n), dns, ips)

    def ca_data(self):
        with open(self.ca_cert, "rb") as f:
            return base64.b64encode(f.read()).decode()


def http_json(url, method="GET", body=None, ctx=None, headers=None,
              ctype="application/json", timeout=10):
    """(status, decoded JSON or None) of one HTTPS request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def wait_port_file(proc, path, timeout=20):
    """The simulators write their port to path once listening."""
    def ready():
        if not proc.alive():
            raise AssertionError("%s exited early:\n%s" % (proc.name, proc.log()))
        if os.path.exists(path):
            return open(path).read().strip()
        return None
    return int(testlib.wait_until(ready, timeout, "%s port file" % proc.name))


# ------------------------------------------------------------------ simulators

class K8sSim:
    """tests/sim/k8s_sim.py on a loopback address of its own (port picked by
    the sim, reported in its port file)."""

    def __init__(self, dir, pki, name, dns, seed, args=()):
        os.makedirs(dir, exist_ok=True)
        self.pki = pki
        self.host = testlib.loopback_addr()
        self.token = secrets.token_hex(16)
        cert, key = pki.cert("k8s-" + name, dns=dns, ips=[self.host])
        seed_path = os.path.join(dir, "seed.json")
        with open(seed_path, "w") as f:
            json.dump({"objects": seed}, f)
        port_file = os.path.join(dir, "k8s.port")
        argv = [PY, os.path.join(SIM_DIR, "k8s_sim.py"), "--listen", self.host,
                "--port", "0", "--cert", cert, "--key", key, "--token", self.token,
                "--seed", seed_path, "--port-file", port_file] + list(args)
        self.proc = testlib.Proc(argv, "k8s-" + name, dir)
        self.port = wait_port_file(self.proc, port_file)
        self.url = "https://%s:%d" % (self.host, self.port)

    def request(self, method, path, body=None, ctype="application/json"):
        return http_json(self.url + path, method, body, self.pki.ctx,
                         {"Authorization": "Bearer " + self.token}, ctype)

    def get(self, path):
        status, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        return body

    def stop(self):
        self.proc.stop()


class PksSim:
    """tests/sim/pks_sim.py: the PKS API and UAA on one loopback address.
    auth: the UAA credentials it accepts (client_id, client_secret, and for
    the password grant username and password); the fleet's by default."""

    def __init__(self, dir, pki, auth=None):
        os.makedirs(dir, exist_ok=True)
        self.pki = pki
        self.host = testlib.loopback_addr()
        cert, key = pki.cert("pks", dns=["pks." + DOMAIN], ips=[self.host])
        port_file = os.path.join(dir, "pks.port")
        auth = dict({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, **(auth or {}))
        argv = [PY, os.path.join(SIM_DIR, "pks_sim.py"), "--listen", self.host,
                "--port", "0", "--cert", cert, "--key", key,
                "--client-id", auth["client_id"], "--client-secret", auth["client_secret"],
                "--port-file", port_file]
        if "username" in auth:
            argv += ["--username", auth["username"], "--password", auth["password"]]
        self.proc = testlib.Proc(argv, "pks", dir)
        self.port = wait_port_file(self.proc, port_file)
        self.url = "https://%s:%d" % (self.host, self.port)

    def control(self, method, path, body=None):
        status, got = http_json(self.url + path, method, body, self.pki.ctx)
        assert status == 200, (method, path, status, got)
        return got

    def put_cluster(self, cluster, kubeconfig):
        self.control("PUT", "/_sim/clusters/" + urllib.parse.quote(cluster["uuid"], safe=""),
                     {"cluster": cluster, "kubeconfig": kubeconfig})

    def delete_cluster(self, uuid):
        self.control("DELETE", "/_sim/clusters/" + urllib.parse.quote(uuid, safe=""))

    def requests(self):
        return self.control("GET", "/_sim/requests")

    def token_requests(self):
        """[{"grant_type", "username", "client_id", "status"}] in order."""
        return self.control("GET", "/_sim/token-requests")

    def stop(self):
        self.proc.stop()


# ------------------------------------------------------------------ workloads

class EchoServer:
    """A TCP workload: greets each connection with "<marker>\\n", then echoes.

    Runs in threads of this process; close() stops it.
    """

    def __init__(self, host, port, marker):
        self.host, self.port, self.marker = host, port, marker
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._conns = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name="echo-%s" % marker)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            with self._lock:
                self.accepted += 1
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(120)
            conn.sendall(self.marker.encode() + b"\n")
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)    # wakes accept()
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(2)


def read_marker(host, port, timeout=5, send=None):
    """Connect, return the first line the other side sends (the workload's
    marker). With send, write it and return (marker, echoed bytes).
    Raises OSError (ConnectionRefusedError when nothing listens)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        buf = b""
        while b"\n" not in buf:
            data = s.recv(4096)
            if not data:
                raise ConnectionError("closed by %s:%d before a marker (%r)"
                                      % (host, port, buf))
            buf += data
        line, _, rest = buf.partition(b"\n")
        if send is None:
            return line.decode()
        s.sendall(send)
        while len(rest) < len(send):
            data = s.recv(4096)
            if not data:
                break
            rest += data
        return line.decode(), rest


def steady(fn, hold=0.3):
    """fn as a condition that holds only once fn() has been true for hold
    seconds on end. After a reload a proxy's old workers may go on accepting
    for a moment (nginx's for 100 ms), routing by the old configuration: one
    probe that sees the new one says nothing of the next connection."""
    since = []

    def check():
        if not fn():
            since.clear()
            return False
        since[:] = since or [time.monotonic()]
        return time.monotonic() - since[0] >= hold
    return check


def refused(host, port):
    """True when nothing is served at host:port: the connection is refused,
    or closed without a byte (HAProxy binds every workload port once and
    rejects, at accept, the ports it does not route)."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(1) == b""
    except (ConnectionRefusedError, ConnectionResetError):
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ objects

def namespace(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def node(name, ip):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                     {"type": "Hostname", "address": name}]}}


def service(name, ns, ports):
    """ports: [(port, nodePort)] or [(port, nodePort, targetPort)]"""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"type": "NodePort", "selector": {"app": name},
                     "ports": [{"name": "p%d" % p[0], "protocol": "TCP", "port": p[0],
                                "targetPort": p[2] if len(p) > 2 else p[0],
                                "nodePort": p[1]}
                               for p in ports]}}


SERVICE_NAME = "kubernetes.io/service-name"


def endpoint(pod, ip, node_name, ready=True):
    """One entry of an EndpointSlice's endpoints, as the controller writes it."""
    return {"addresses": [ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": node_name,
            "targetRef": {"kind": "Pod", "namespace": pod[0], "name": pod[1]}}


def endpointslice(name, ns, svc, ports, endpoints):
    """ports: [(name, port)], the Service port's name and its target port."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {SERVICE_NAME: svc,
                                    "endpointslice.kubernetes.io/managed-by":
                                    "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": [{"name": n, "protocol": "TCP", "port": p} for n, p in ports]}


def dest(host, port, weight=None):
    d = {"destination": {"host": host, "port": {"number": port}}}
    if weight is not None:
        d["weight"] = weight
    return d


def virtualservice(name, ns, tcp, annotations=None, http=None):
    """tcp: a list of routes, each a list of dest() entries (the shape of
    /work/shared/examples/virtualservice-tcp.yaml)."""
    spec = {"hosts": ["%s.%s.svc.cluster.local" % (name, ns)], "gateways": ["mesh"]}
    if tcp is not None:
        spec["tcp"] = [{"match": [{"port": r[0]["destination"]["port"]["number"]}],
                        "route": r} for r in tcp]
    if http is not None:
        spec["http"] = http
    md = {"name": name, "namespace": ns}
    if annotations:
        md["annotations"] = dict(annotations)
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": md, "spec": spec}


# ------------------------------------------------------------------ a cluster

class Cluster:
    """One Kubernetes cluster: its API simulator, its nodes (one loopback
    address each), the workloads listening on every node at each Service's
    nodePorts, and its PKS record.

    backend="endpoints" puts the cluster in that mode ([cluster.NAME]) and
    gives each Service pods too: `pods` loopback addresses where a workload
    listens on the Service's targetPort (greeting "<what>@<pod>"), listed in
    one EndpointSlice per Service. The node ports still serve, so that a
    reply tells which way a connection went.

    svc_annotations: {(ns, svc): {key: value}} set on those Services (for
    one, the portico.dev/allow-from by which a Service lets other
    namespaces' routes in)."""

    def __init__(self, fleet, name, services, virtualservices, nodes=2,
                 master_host=None, sim_args=(), backend="nodeport", pods=2,
                 svc_annotations=None, uuid=None):
        self.fleet = fleet
        self.name = name
        self.backend = backend
        # uuid: a test that needs clusters' API slots to collide picks it
        self.uuid = uuid or str(uuidlib.uuid4())
        self.master_host = master_host or "%s.%s" % (name, DOMAIN)
        # The SNI name portico routes: master_host when under the domain.
        if self.master_host.endswith("." + DOMAIN):
            self.host = self.master_host
        else:
            self.host = "%s.%s" % (name, DOMAIN)
        self.dir = os.path.join(fleet.dir, "c-" + name)
        self.nodes = [("%s-worker-%d" % (name, i + 1), testlib.loopback_addr())
                      for i in range(nodes)]
        self.servers = []
        self.node_ports = {}            # (ns, svc, port) -> nodePort
        self.target_ports = {}          # (ns, svc, port) -> targetPort
        self.pods = {}                  # (ns, svc) -> [(pod, ip)]
        self.pod_servers = {}           # pod -> [EchoServer]
        self.slices = {}                # (ns, svc) -> [endpoint()]
        self.svc_ports = {}             # (ns, svc) -> [port]
        self._npods = 0
        objects = [namespace(ns) for ns in
                   sorted({s[1] for s in services} | {v["metadata"]["namespace"]
                                                      for v in virtualservices})]
        objects += [node(n, ip) for n, ip in self.nodes]
        for svc_name, ns, ports in services:
            pairs = []
            for port in ports:
                np = self._serve_everywhere("%s/%s/%s:%d" % (name, ns, svc_name, port))
                self.node_ports[(ns, svc_name, port)] = np
                pairs.append((port, np))
            if backend == "endpoints":
                pairs = [(port, np, self._pick_target_port()) for port, np in pairs]
                self.svc_ports[(ns, svc_name)] = list(ports)
                for port, _, tp in pairs:
                    self.target_ports[(ns, svc_name, port)] = tp
                self.pods[(ns, svc_name)] = []
                self.slices[(ns, svc_name)] = []
                for _ in range(pods):
                    self._start_pod(ns, svc_name)
                objects.append(self._slice(ns, svc_name))
            svc = service(svc_name, ns, pairs)
            ann = (svc_annotations or {}).get((ns, svc_name))
            if ann:
                svc["metadata"]["annotations"] = dict(ann)
            objects.append(svc)
        objects += virtualservices
        dns = sorted({"%s.%s" % (name, DOMAIN), self.host, self.master_host})
        self.sim = K8sSim(self.dir, fleet.pki, name, dns, objects, sim_args)
        self.cache_n = 0
        # The VirtualServices' API: the sim's preferred istio version.
        args = list(sim_args)
        self.vs_api = VS_API if "--istio-versions" not in args else \
            "/apis/networking.istio.io/" + args[args.index("--istio-versions") + 1].split(",")[0]

    def _serve_everywhere(self, what):
        """A free port below 32768 on every node, with a workload on each node
        that greets with "<what>@<node>"."""
        for _ in range(_RETRIES):
            port = testlib.free_port(self.nodes[0][1])
            started = []
            try:
                for n, ip in self.nodes:
                    started.append(EchoServer(ip, port, "%s@%s" % (what, n)))
            except OSError:
                for s in started:
                    s.close()
                continue
            self.servers += started
            return port
        raise RuntimeError("no port free on every node of %s" % self.name)

    def markers(self, ns, svc, port):
        return {"%s/%s/%s:%d@%s" % (self.name, ns, svc, port, n) for n, _ in self.nodes}

    # -- pods (backend="endpoints")
    def _pick_target_port(self):
        """A port for a Service's pods; pods are addresses of their own, so
        this only avoids what the machine already uses on the usual ones."""
        return testlib.free_port(self.nodes[0][1])

    def _start_pod(self, ns, svc):
        """A new pod of svc: a fresh loopback address with a workload on
        each of the Service's target ports. Not yet in its EndpointSlice."""
        pods = self.pods[(ns, svc)]
        self._npods += 1
        pod = "%s-%d" % (svc, self._npods)
        for _ in range(_RETRIES):
            ip = testlib.loopback_addr()
            started = []
            try:
                for port in self.svc_ports[(ns, svc)]:
                    tp = self.target_ports[(ns, svc, port)]
                    started.append(EchoServer(ip, tp, "%s/%s/%s:%d@%s" % (
                        self.name, ns, svc, port, pod)))
            except OSError:
                for s in started:
                    s.close()
                continue
            self.pod_servers[pod] = started
            pods.append((pod, ip))
            self.slices[(ns, svc)].append(endpoint((ns, pod), ip, self.nodes[0][0]))
            return pod
        raise RuntimeError("no address for a pod of %s/%s" % (ns, svc))

    def _slice(self, ns, svc):
        ports = [("p%d" % p, self.target_ports[(ns, svc, p)])
                 for p in self.svc_ports[(ns, svc)]]
        return endpointslice("%s-x1" % svc, ns, svc, ports, self.slices[(ns, svc)])

    def pod_markers(self, ns, svc, port, pods=None):
        """The markers of svc's pods (those named in pods, else all)."""
        return {"%s/%s/%s:%d@%s" % (self.name, ns, svc, port, p)
                for p, _ in self.pods[(ns, svc)] if pods is None or p in pods}

    def put_slice(self, ns, svc):
        """Write svc's EndpointSlice as the harness holds it now."""
        path = "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices/%s-x1" % (ns, svc)
        status, body = self.sim.request("PUT", path, self._slice(ns, svc))
        assert status == 200, body
        return body

    def set_ready(self, ns, svc, pod, ready):
        """Mark a pod's endpoint ready or not (as the controller does when its
        readiness probe changes)."""
        for ep in self.slices[(ns, svc)]:
            if ep["targetRef"]["name"] == pod:
                ep["conditions"].update(ready=ready, serving=ready)
        return self.put_slice(ns, svc)

    def add_pod(self, ns, svc):
        """A new ready pod of svc, listening and in its EndpointSlice."""
        pod = self._start_pod(ns, svc)
        self.put_slice(ns, svc)
        return pod

    def remove_pod(self, ns, svc, pod):
        """Take a pod out of its EndpointSlice (its workload goes on
        listening: a connection that reached it would show)."""
        self.slices[(ns, svc)] = [ep for ep in self.slices[(ns, svc)]
                                  if ep["targetRef"]["name"] != pod]
        return self.put_slice(ns, svc)

    # -- PKS
    def pks_cluster(self, **over):
        c = {"name": self.name, "plan_name": "small", "uuid": self.uuid,
             "last_action": "CREATE", "last_action_state": "succeeded",
             "last_action_description": "Instance provisioning completed",
             "kubernetes_master_ips": [self.sim.host], "network_profile_name": "",
             "parameters": {"kubernetes_master_host": self.master_host,
                            "kubernetes_master_port": self.sim.port,
                            "kubernetes_worker_instances": len(self.nodes),
                            "authorization_mode": "rbac"}}
        c.update(over)
        return c

    def kubeconfig(self):
        """What POST /v1/clusters/{name}/binds hands out: the server by name
        (the certificate carries it), the CA, a bearer token."""
        server = "https://%s:%d" % (self.master_host, self.sim.port)
        return {"apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": self.name, "cluster": {
                    "server": server,
                    "certificate-authority-data": self.fleet.pki.ca_data()}}],
                "users": [{"name": "portico-" + self.name,
                           "user": {"token": self.sim.token}}],
                "contexts": [{"name": self.name, "context": {
                    "cluster": self.name, "user": "portico-" + self.name}}],
                "current-context": self.name}

    def write_kubeconfig(self, ext=".yaml", ca_path=False, name=None,
                         token_file=None, server=None):
        """Put this cluster's kubeconfig into the fleet's [kubeconfigs] dir:
        the server by IP (or server, a URL), the
        CA inline or (ca_path) as a file, the token inline or (token_file)
        as the user's tokenFile. Returns the file's path."""
        kc = self.kubeconfig()
        cl = kc["clusters"][0]["cluster"]
        cl["server"] = server or self.sim.url
        if ca_path:
            # inside the folder: a kubeconfig's files may lie nowhere else
            del cl["certificate-authority-data"]
            ca = os.path.join(self.fleet.kubeconfig_dir, "ca.crt")
            shutil.copyfile(self.fleet.pki.ca_cert, ca)
            cl["certificate-authority"] = "ca.crt"
        if token_file:
            kc["users"][0]["user"] = {"tokenFile": token_file}
        path = os.path.join(self.fleet.kubeconfig_dir, (name or self.name) + ext)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            if ext == ".json":
                json.dump(kc, f)
            else:
                import yaml
                yaml.safe_dump(kc, f)
        os.rename(tmp, path)
        return path

    def register(self, **over):
        """PUT the cluster into the PKS simulator (over: fields to change)."""
        self.fleet.pks.put_cluster(self.pks_cluster(**over), self.kubeconfig())

    def unregister(self):
        self.fleet.pks.delete_cluster(self.uuid)

    # -- the API, directly
    def cache_dir(self):
        self.cache_n += 1
        return os.path.join(self.dir, "kube-cache-%d" % self.cache_n)

    def kubectl(self, *args, check=True, timeout=30):
        """kubectl straight at the simulator (as the cluster's owner would)."""
        return testlib.kubectl(args, self.sim.url, self.sim.token, self.fleet.pki.ca_cert,
                               self.cache_dir(), check=check, timeout=timeout)

    def kubectl_via_portico(self, *args, check=True, timeout=30, host=None):
        """kubectl through HAProxy: the shared TLS port, SNI = the cluster's host."""
        f = self.fleet
        return testlib.kubectl(args, "https://%s:%d" % (f.listen, f.api_port),
                               self.sim.token, f.pki.ca_cert, self.cache_dir(),
                               tls_server_name=host or self.host, check=check,
                               timeout=timeout)

    def vs(self, ns, name):
        status, body = self.sim.request("GET", "%s/namespaces/%s/virtualservices/%s"
                                        % (self.vs_api, ns, name))
        return body if status == 200 else None

    def annotations(self, ns, name):
        obj = self.vs(ns, name)
        return (obj or {}).get("metadata", {}).get("annotations") or {}

    def annotate(self, ns, name, **ann):
        """Merge-patch annotations straight into the simulator, as a user
        would: annotate(ns, name, **{"portico.dev/expose": "true"}); a value
        of None removes the annotation."""
        status, body = self.sim.request(
            "PATCH", "%s/namespaces/%s/virtualservices/%s" % (self.vs_api, ns, name),
            {"metadata": {"annotations": ann}}, ctype="application/merge-patch+json")
        assert status == 200, body
        return body

    def create(self, obj):
        ns = obj["metadata"]["namespace"]
        status, body = self.sim.request(
            "POST", "%s/namespaces/%s/virtualservices" % (self.vs_api, ns), obj)
        assert status == 201, body
        return body

    def delete(self, ns, name):
        status, body = self.sim.request(
            "DELETE", "%s/namespaces/%s/virtualservices/%s" % (self.vs_api, ns, name))
        assert status == 200, body

    def sim_control(self, method, path, body=None):
        """The simulator's /_sim/ switches (tests/sim/README.md)."""
        status, got = self.sim.request(method, "/_sim/" + path, body)
        assert status == 200, (path, status, got)
        return got

    def fault(self, **f):
        """Switch a simulator fault on: fault(kind="split", bytes=3)."""
        return self.sim_control("PUT", "faults", f)

    def close(self):
        self.sim.stop()
        for s in self.servers:
            s.close()
        for servers in self.pod_servers.values():
            for s in servers:
                s.close()


# ------------------------------------------------------------------ daemons

class Daemon:
    """One portico daemon: started with -d (foreground, log to stderr), ready
    once <run_dir>/<pidname>.pid holds its PID."""

    def __init__(self, fleet, name, pidname, args, key=None):
        self.fleet = fleet
        self.name = name
        self.key = key or name          # fleet[key], and its log's name
        self.pidname = pidname
        self.args = list(args)
        self.proc = None
        self.exits = []                 # (pid, returncode) of earlier runs

    @property
    def pidfile(self):
        return os.path.join(self.fleet.run_dir, self.pidname + ".pid")

    def start(self, timeout=20):
        argv = [daemon_path(self.name), "-d"] + (["-v"] if self.fleet.verbose else []) + \
            ["-f", self.fleet.conf_path] + self.args
        if self.fleet.run_as:
            # setpriv execs the daemon: the PID stays the daemon's
            argv = ["setpriv", "--reuid=" + self.fleet.run_as, "--regid=" + self.fleet.run_as,
                    "--clear-groups", "--"] + argv
        argv = self.fleet.wrap.get(self.name, []) + argv
        self.proc = testlib.Proc(argv, self.key, self.fleet.log_dir, env=self.fleet.env())
        proc = self.proc

        def ready():
            if not proc.alive():
                raise AssertionError("%s exited (%s) before it was ready:\n%s" % (
                    self.name, proc.popen.returncode, tail(proc.log(), 60)))
            try:
                with open(self.pidfile) as f:
                    return int(f.read().strip() or 0) == proc.pid
            except (OSError, ValueError):
                return False
        testlib.wait_until(ready, timeout, "%s ready (%s)" % (self.name, self.pidfile))
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill9(self):
        self.proc.kill9()
        self.exits.append((self.proc.pid, self.proc.popen.returncode))

    def stop(self, timeout=10):
        if self.proc is None:
            return None
        was_alive = self.proc.alive()
        rc = self.proc.stop(timeout)
        if was_alive:
            self.exits.append((self.proc.pid, rc))
            return rc
        return None

    def log(self):
        path = os.path.join(self.fleet.log_dir, self.key + ".log")
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def tail(text, n):
    lines = text.splitlines()
    return "\n".join(lines[-n:])


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _children(pid):
    """PIDs whose parent is pid (HAProxy's workers are its master's children)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        stat = _read("/proc/%s/stat" % d)
        if stat:
            # pid (comm) state ppid ...: comm may hold spaces, split after ')'
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1 and fields[1] == str(pid):
                out.append(int(d))
    return out


def _comm(pid):
    return (_read("/proc/%d/comm" % pid) or "").strip()


def _is_our_master(pid, run_dir, kind):
    """pid runs kind's binary, and its command line (nginx: its title)
    names a file in run_dir."""
    cmdline = (_read("/proc/%d/cmdline" % pid) or "").replace("\0", " ")
    return _comm(pid).startswith(kind) and run_dir.rstrip("/") + "/" in cmdline


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # a zombie is gone for our purposes
    stat = _read("/proc/%d/stat" % pid) or ""
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]


def master_pid(run_dir, name):
    """The PID in <run_dir>/<name>-master.pid (both drivers write it there)."""
    text = _read(os.path.join(run_dir, "%s-master.pid" % name))
    try:
        return int((text or "").split()[0])
    except (ValueError, IndexError):
        return None


def stop_proxy(run_dir, name=HAPROXY_NAME, kind="haproxy", timeout=5):
    """Stop the proxy master whose PID is in <run_dir>/<name>-master.pid,
    and its workers (its children running the same binary), when the master
    is ours (its command line names run_dir). Returns the PIDs it had to
    signal."""
    master = master_pid(run_dir, name)
    if not master or master <= 1 or _gone(master) or \
            not _is_our_master(master, run_dir, kind):
        return []
    pids = [master] + [p for p in _children(master) if _comm(p).startswith(kind)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.05)
        if all(_gone(p) for p in pids):
            break
    return pids


# ------------------------------------------------------------------ the fleet

class Proxy:
    """One [proxy.NAME]: its kind, and a listen address of its own or None."""

    def __init__(self, name, kind, listen=None):
        self.name, self.kind, self.listen = name, kind, listen


class Fleet:
    """Simulators, workloads, configuration and the four daemons."""

    def __init__(self, poll_interval=1, ports=40, quarantine=600, verbose=True,
                 run_dir=None, watch_timeout=30, sources=("pks",), proxies=None,
                 pks_auth=None, run_as=None):
        self.run_dir = run_dir or tempfile.mkdtemp(prefix="pt-", dir="/tmp")
        self.run_as = run_as            # a user to run the daemons as (setpriv)
        # daemon name -> argv put before it (a command that execs it, so
        # that the PID stays the daemon's): e.g. its own resolv.conf
        self.wrap = {}
        os.makedirs(self.run_dir, exist_ok=True)
        self.dir = self.run_dir
        self.log_dir = os.path.join(self.run_dir, "log")
        os.makedirs(self.log_dir, exist_ok=True)
        self.conf_path = os.path.join(self.run_dir, "portico.conf")
        self.store = os.path.join(self.run_dir, "store")
        self.verbose = verbose
        self.poll_interval = poll_interval
        self.quarantine = quarantine
        self.watch_timeout = watch_timeout
        self.sources = tuple(sources)
        self.kubeconfig_dir = os.path.join(self.run_dir, "kubeconfigs")
        os.makedirs(self.kubeconfig_dir, exist_ok=True)
        self.clusters = []
        self.daemons = {}
        self.stopped = False
        self.pks = None
        self.listen = testlib.loopback_addr()
        self.api_port = testlib.free_port(self.listen)
        self.port_lo, self.port_hi = self._free_range(ports)
        # proxies: [(name, kind)] or [(name, kind, listen)]; None is the one
        # HAProxy of the default configuration (no [proxy.NAME] written).
        self.proxy_sections = proxies is not None
        self.proxies = [Proxy(*p) for p in (proxies or [(HAPROXY_NAME, "haproxy")])]
        self.pki = Pki(os.path.join(self.run_dir, "pki"))
        # pks_auth: UAA credentials for both the simulator and [pks]
        # (client_id, client_secret, username, password).
        self.pks_auth = dict({"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
                             **(pks_auth or {}))
        self.pks = PksSim(os.path.join(self.run_dir, "pks"), self.pki, self.pks_auth)
        # [limits]: the workloads and pods of the tests live on loopback
        # addresses (testlib.loopback_addr), which portico refuses as
        # backends unless a range allows them.
        self.limits = {"allow_backends": TEST_BACKENDS}

    def _free_range(self, n):
        """n consecutive ports below 32768, each free on listen, not api_port."""
        for _ in range(500):
            lo = random.randrange(10000, 32000 - n)
            if lo <= self.api_port < lo + n:
                continue
            if all(testlib._can_bind(self.listen, p) for p in range(lo, lo + n)):
                return lo, lo + n - 1
        raise RuntimeError("no free range of %d ports on %s" % (n, self.listen))

    def env(self):
        env = dict(os.environ)
        # Under the ASan build: fail loudly, and report leaks at exit.
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        return env

    # -- clusters
    def add_cluster(self, name, services=(), virtualservices=(), register=True, **kw):
        c = Cluster(self, name, list(services), list(virtualservices), **kw)
        self.clusters.append(c)
        if register:
            c.register()
        return c

    # -- configuration
    def conf_text(self, **extra):
        """portico.conf for this fleet; extra: {"section": {"key": value}}."""
        sections = {
            "portico": {"domain": DOMAIN, "run_dir": self.run_dir, "listen": self.listen,
                        "api_port": self.api_port,
                        "ports": "%d-%d" % (self.port_lo, self.port_hi),
                        "quarantine": self.quarantine},
            "store": {"path": self.store},
            "pks": dict({"url": self.pks.url, "uaa_url": self.pks.url},
                        **self.pks_auth, ca_file=self.pki.ca_cert,
                        poll_interval=self.poll_interval),
            "clusters": {"watch_timeout": self.watch_timeout},
        }
        if self.limits:
            sections["limits"] = dict(self.limits)
        if "pks" not in self.sources:
            del sections["pks"]
        if "kubeconfigs" in self.sources:
            sections["kubeconfigs"] = {"dir": self.kubeconfig_dir,
                                       "poll_interval": self.poll_interval}
        for c in self.clusters:
            if c.backend != "nodeport":
                sections["cluster." + c.name] = {"backend": c.backend}
        if self.proxy_sections:
            for px in self.proxies:
                sections["proxy." + px.name] = dict(
                    {"kind": px.kind}, **({"listen": px.listen} if px.listen else {}))
        for sect, kv in extra.items():
            sections.setdefault(sect, {}).update(kv)
        out = ["; portico.conf written by tests/e2e/harness.py"]
        for sect, kv in sections.items():
            out.append("\n[%s]" % sect)
            out += ["%s = %s" % (k, v) for k, v in kv.items()]
        return "\n".join(out) + "\n"

    def write_conf(self, **extra):
        with open(self.conf_path, "w") as f:
            f.write(self.conf_text(**extra))
        return self.conf_path

    # -- daemons
    def start(self, watcherd=True, wait_proxy=True):
        """Write portico.conf, start the daemons (allocd first), wait until
        each is ready and (wait_proxy) HAProxy listens on the shared TLS port."""
        self.write_conf()
        self.start_daemons(watcherd, wait_proxy)
        return self

    def start_daemons(self, watcherd=True, wait_proxy=True):
        """allocd, then a renderd and an applyd per proxy, then watcherd.
        The first proxy's are fleet["renderd"] and fleet["applyd"], the
        others' fleet["renderd-NAME"] and fleet["applyd-NAME"]."""
        specs = [("allocd", "allocd", [], None)]
        for i, px in enumerate(self.proxies):
            for d in ("renderd", "applyd"):
                specs.append((d, "%s-%s" % (d, px.name), ["-p", px.name],
                              d if i == 0 else "%s-%s" % (d, px.name)))
        if watcherd:
            specs.append(("watcherd", "watcherd", [], None))
        for name, pidname, args, key in specs:
            d = Daemon(self, name, pidname, args, key)
            self.daemons[d.key] = d     # stopped at the end even if never ready
            d.start()
        if wait_proxy:
            self.wait_proxy()

    def proxy_listen(self, px=None):
        """The address a proxy binds: its own, or [portico] listen."""
        return (px or self.proxies[0]).listen or self.listen

    def wait_proxy(self, timeout=30):
        """Every proxy is up (applyd starts it with the first rendered config)."""
        for px in self.proxies:
            addr = self.proxy_listen(px)
            testlib.wait_until(lambda: not refused(addr, self.api_port)
                               or self._check_alive(), timeout,
                               "%s listening on %s:%d" % (px.name, addr, self.api_port))

    def _check_alive(self):
        for d in self.daemons.values():
            if d.proc is not None and not d.alive():
                raise AssertionError("%s died (rc %s):\n%s" % (
                    d.name, d.proc.popen.returncode, tail(d.log(), 60)))
        return False

    def __getitem__(self, name):
        return self.daemons[name]

    def proxy(self, name=None):
        return self.proxies[0] if name is None else \
            [px for px in self.proxies if px.name == name][0]

    def proxy_master(self, name=None):
        """The PID of a proxy's master (the first proxy's by default)."""
        return master_pid(self.run_dir, self.proxy(name).name)

    def haproxy_reloads(self):
        """The HAProxy master's reload counter (master CLI "show proc")."""
        path = os.path.join(self.run_dir, "%s-master.sock" % HAPROXY_NAME)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(path)
                s.sendall(b"show proc\n")
                s.shutdown(socket.SHUT_WR)
                out = b""
                while True:
                    data = s.recv(65536)
                    if not data:
                        break
                    out += data
        except OSError:
            return None
        for line in out.decode(errors="replace").splitlines():
            f = line.split()
            if len(f) > 2 and f[1] == "master" and f[2].isdigit():
                return int(f[2])
        return None

    def proxy_cfg(self, name=None):
        """The configuration a proxy serves (the first proxy's by default)."""
        return _read(os.path.join(self.run_dir, "%s.cfg" % self.proxy(name).name)) or ""

    def routed_ports(self, name=None):
        """The workload ports an HAProxy configuration routes."""
        return haproxy_ports(self.proxy_cfg(name))

    # -- workload routes
    def wait_annotation(self, cluster, ns, name, key, timeout=30, value=None):
        """The annotation's value once it is set (to value, when given)."""
        def check():
            self._check_alive()
            v = cluster.annotations(ns, name).get(key)
            return v if v is not None and (value is None or v == value) else None
        return testlib.wait_until(check, timeout, "%s on %s/%s/%s" % (
            key, cluster.name, ns, name))

    def wait_no_annotation(self, cluster, ns, name, key, timeout=30):
        def check():
            self._check_alive()
            return key not in cluster.annotations(ns, name)
        testlib.wait_until(check, timeout, "%s gone from %s/%s/%s" % (
            key, cluster.name, ns, name))

    def wait_address(self, cluster, ns, name, timeout=30):
        """The ports of portico.dev/address once set, after checking its form:
        '<sni host>:<port>[,<sni host>:<port>...]', ports in the range."""
        addr = self.wait_annotation(cluster, ns, name, "portico.dev/address", timeout)
        ports = []
        for part in addr.split(","):
            host, _, port = part.rpartition(":")
            assert host == cluster.host, "address %r: host is not %s" % (addr, cluster.host)
            assert port.isdigit() and self.port_lo <= int(port) <= self.port_hi, \
                "address %r: port outside %d-%d" % (addr, self.port_lo, self.port_hi)
            ports.append(int(port))
        return ports

    def marker(self, port, timeout=5):
        return read_marker(self.listen, port, timeout)

    def markers(self, port, n):
        """The workload markers seen over n connections to listen:port."""
        return [self.marker(port) for _ in range(n)]

    def wait_serves(self, port, expect, timeout=20):
        """Until a connection to listen:port reaches one of the markers in expect."""
        def check():
            self._check_alive()
            try:
                return self.marker(port, 2) in expect
            except OSError:
                return False
        testlib.wait_until(check, timeout, "%s:%d serving %s" % (self.listen, port,
                                                                  sorted(expect)))

    def wait_refused(self, port, timeout=20):
        testlib.wait_until(steady(lambda: refused(self.listen, port) or self._check_alive()),
                           timeout, "%s:%d refusing connections" % (self.listen, port))

    # -- API routes
    def tls_probe(self, host, timeout=3):
        """True when a TLS handshake to the shared port with SNI host reaches a
        server whose certificate verifies for host; False otherwise."""
        try:
            with socket.create_connection((self.listen, self.api_port), timeout=timeout) as s:
                with self.pki.ctx.wrap_socket(s, server_hostname=host):
                    return True
        except (OSError, ssl.SSLError):
            return False

    def wait_api(self, host, up=True, timeout=30):
        testlib.wait_until(steady(lambda: self.tls_probe(host) == up or self._check_alive()),
                           timeout, "API route for %s %s" % (host, "up" if up else "gone"))

    # -- teardown
    def logs(self, lines=80):
        """The tail of every log of the fleet (daemons, HAProxy via applyd, sims)."""
        out = []
        paths = sorted(os.path.join(self.log_dir, f) for f in os.listdir(self.log_dir))
        paths.append(os.path.join(self.run_dir, "pks", "pks.log"))
        for c in self.clusters:
            paths.append(os.path.join(c.dir, "k8s-%s.log" % c.name))
        for p in paths:
            text = _read(p)
            if text is None:
                continue
            out.append("----- %s (last %d lines)\n%s" % (p, lines, tail(text, lines)))
        return "\n".join(out)

    def stop(self):
        """Stop everything by PID: watcherd, each applyd (which stops its
        proxy), each renderd, allocd, then any proxy left (its pid file), the
        simulators and the workloads. Returns a list of problems: a daemon
        that did not exit 0 on SIGTERM, a proxy its applyd left running, or a
        sanitizer report in a log."""
        if self.stopped:
            return []
        self.stopped = True
        problems = []
        stopped = {}
        order = ("watcherd", "applyd", "renderd", "allocd")
        for d in sorted(self.daemons.values(), key=lambda d: order.index(d.name)):
            rc = d.stop()
            if rc not in (None, 0):
                problems.append("%s exited %s on SIGTERM" % (d.key, rc))
            stopped[d.key] = rc is not None
        for i, px in enumerate(self.proxies):
            applyd_stopped = stopped.get("applyd" if i == 0 else "applyd-" + px.name)
            master = self.proxy_master(px.name)
            if applyd_stopped and master:
                # applyd stops its proxy on SIGTERM: give the master a moment.
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline and not _gone(master):
                    time.sleep(0.05)
            left = stop_proxy(self.run_dir, px.name, px.kind)
            if left and applyd_stopped:
                problems.append("%s %s (pids %s) was still running after applyd "
                                "exited on SIGTERM" % (px.kind, px.name, left))
        for c in self.clusters:
            c.close()
        if self.pks:
            self.pks.stop()
        for d in self.daemons.values():
            log = d.log()
            for mark in SANITIZER_MARKS:
                if mark in log:
                    i = log.index(mark)
                    problems.append("%s log has a sanitizer report:\n%s" % (
                        d.name, log[max(0, i - 200):i + 3000]))
                    break
        return problems

    def cleanup(self):
        shutil.rmtree(self.run_dir, ignore_errors=True)


# ------------------------------------------------------------------ worlds

def payments_cluster(fleet, register=True, **kw):
    """The "payments" cluster: workloads behind NodePort Services and
    VirtualServices of every shape the tests need; none exposed."""
    ns = "payments"
    services = [("orders-db", ns, [5432]), ("orders-db-canary", ns, [5432]),
                ("ledger-db", ns, [5432]), ("cache", ns, [6379, 16379])]
    vss = [
        # weighted, as in /work/shared/examples/virtualservice-tcp.yaml
        virtualservice("orders-db", ns, [[
            dest("orders-db", 5432, 75),
            dest("orders-db-canary.payments.svc.cluster.local", 5432, 25)]]),
        virtualservice("ledger-db", ns, [[dest("ledger-db", 5432)]]),
        # two tcp routes; the second names its Service <svc>.<ns>.svc and
        # the Service's second port
        virtualservice("cache", ns, [[dest("cache", 6379)],
                                     [dest("cache.payments.svc", 16379)]]),
        virtualservice("web", ns, None, http=[{"route": [
            {"destination": {"host": "web", "port": {"number": 80}}}]}]),
        virtualservice("ghost", ns, [[dest("nowhere", 5432)]]),
        # another namespace, pointing at payments' Service by its full name
        # (which lets billing's routes in)
        virtualservice("reports", "billing", [[
            dest("ledger-db.payments.svc.cluster.local", 5432)]]),
    ]
    kw.setdefault("svc_annotations", {(ns, "ledger-db"): {ALLOW_FROM: "billing"}})
    return fleet.add_cluster("payments", services, vss, register=register, **kw)


# The annotations portico reads and writes.
EXPOSE = "portico.dev/expose"
ADDRESS = "portico.dev/address"
ERROR = "portico.dev/error"
PORT = "portico.dev/port"
ALLOW_FROM = "portico.dev/allow-from"      # on a Service


def start_payments(make_fleet):
    """A started fleet with the payments cluster registered in PKS."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet)
    fleet.start()
    return fleet, pay


def search_cluster(fleet, register=True, **kw):
    """The "search" cluster: other names, so that a reply proves which
    cluster answered."""
    ns = "search"
    services = [("index", ns, [9200]), ("query", ns, [9300])]
    vss = [virtualservice("index", ns, [[dest("index", 9200)]]),
           virtualservice("query", ns, [[dest("query", 9300)]])]
    return fleet.add_cluster("search", services, vss, register=register, **kw)


# ------------------------------------------------------------------ the bus

class BusTap:
    """Subscribes to allocd's PUB (ipc://<run_dir>/alloc.pub) and keeps every
    decoded event: {"type", "seq", "time", "rx" (time.time() on arrival),
    **body}. Needs python3-zmq and python3-msgpack."""

    TYPES = testlib.events.TYPES    # generated from common/event.h

    def __init__(self, endpoint):
        import zmq
        import msgpack
        self._msgpack = msgpack
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVHWM, 0)     # a burst is kept whole
        self.sock.connect(endpoint)
        self.events = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import zmq
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            raw = self.sock.recv()
            try:
                v, t, seq, tm, body = self._msgpack.unpackb(raw, raw=False)
            except Exception:
                continue
            ev = dict(body or {}, type=self.TYPES.get(t, t), seq=seq, time=tm,
                      rx=time.time())
            with self.lock:
                self.events.append(ev)

    def mark(self):
        """A position in the events seen so far, for seen(after=...)."""
        with self.lock:
            return len(self.events)

    def seen(self, type, after=0, **match):
        with self.lock:
            return [e for e in self.events[after:] if e["type"] == type
                    and all(e.get(k) == v for k, v in match.items())]

    def wait(self, type, timeout=30, after=0, **match):
        return testlib.wait_until(lambda: self.seen(type, after, **match), timeout,
                                  "%s %s on allocd's bus" % (type, match))[-1]

    def close(self):
        self._stop.set()
        # the thread looks at _stop every 100 ms: its socket is closed
        # only once it is done with it (a socket is one thread's), and
        # destroy, unlike term, never waits for a socket left open
        self._thread.join(30)
        if not self._thread.is_alive():
            self.sock.close()
            self.ctx.destroy(linger=0)


def render_template(path, **values):
    """etc/*.conf templates: ${name} placeholders (string.Template)."""
    with open(path) as f:
        return string.Template(f.read()).substitute(values)


def need(*daemons):
    """Fail the test, clearly, when a daemon binary has not been built."""
    import pytest
    missing = [daemon_path(d) for d in daemons if not have_daemon(d)]
    if missing:
        pytest.fail("not built: %s (run make)" % ", ".join(missing), pytrace=False)
