"""TLSRoute hostnames routed by SNI on the shared TLS port, end to end.

allocd is driven with the observations watcherd sends (CLUSTER_UP, a
resync, SNI_ROUTE, SNI_GONE) on its input socket, as a DEALER, the way
watcherd speaks to it: the TLSRoute informers that emit SNI_ROUTE come
with the Gateway API work in watcherd. From there on everything is real:
allocd decides, renderd renders, applyd reloads HAProxy, and a TLS client
(`openssl s_client -servername NAME -verify_return_error`) reaches a TLS
workload through the shared port and verifies its certificate for NAME.

- A name under the cluster's own host is routed, weights kept.
- A name under another cluster's host, a cluster's API host itself, or a
  name another route holds is refused (REFUSED, rk "tls"), and no traffic
  goes there; the cluster APIs keep answering by SNI.
- A deleted route, and a resync that no longer has it, stop routing.
- allocd killed (-9) and restarted replays to the same SNI state, and
  `porticoctl log replay` finds no decision that differs.
The same through HAProxy and through nginx; the renderers' output passes
`haproxy -c` and `nginx -t`.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import threading

import pytest

import harness
import testlib
from harness import DOMAIN, need

E = testlib.events
DAEMONS = ("allocd", "renderd", "applyd", "porticoctl")
NS = "shop"


class TlsServer:
    """A TLS workload on a loopback address of its own: a certificate for
    names (from the fleet's CA), greets each connection with marker."""

    def __init__(self, pki, names, marker):
        self.host = testlib.loopback_addr()
        self.marker = marker
        self.accepted = 0
        cert, key = pki.cert("tls-" + marker, dns=names)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.accepted += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(10)
            with self.ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(self.marker.encode() + b"\n")
                s.recv(1)       # until the client goes
        except (OSError, ssl.SSLError):
            pass

    def close(self):
        self._stop.set()
        self.sock.close()
        self._thread.join(2)


def s_client(fleet, name, timeout=10):
    """openssl s_client through the shared TLS port with SNI name, the
    certificate verified against the fleet's CA for name: the first line
    the workload sends, or None when the handshake or the check fails."""
    argv = [testlib.OPENSSL, "s_client", "-connect",
            "%s:%d" % (fleet.listen, fleet.api_port), "-servername", name,
            "-verify_hostname", name, "-verify_return_error",
            "-CAfile", fleet.pki.ca_cert, "-quiet"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        line = p.stdout.readline().decode(errors="replace").strip()
    finally:
        timer.cancel()
        p.kill()
        p.wait()
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
    return line or None


class Allocd:
    """watcherd's side of allocd's input: a DEALER on ipc://<run>/alloc.in."""

    def __init__(self, fleet):
        import msgpack
        import zmq
        self.msgpack = msgpack
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect("ipc://%s/alloc.in" % fleet.run_dir)
        self.seq = 0
        self.sid = 1000

    def send(self, type_, **body):
        self.seq += 1
        self.sock.send(self.msgpack.packb([E.VERSION, type_, self.seq, 0, body],
                                          use_bin_type=True))

    def cluster_up(self, c):
        self.send(E.EV_CLUSTER_UP, **{E.F_CLUSTER: c.uuid, E.F_CNAME: c.name,
                                      E.F_HOST: c.host, E.F_MASTERS: [c.sim.host],
                                      E.F_MPORT: c.sim.port})

    def sync(self, c, routes):
        """A resync of c: what it holds is routes [(name, index, host, backends)]."""
        self.sid += 1
        self.send(E.EV_SYNC_BEGIN, **{E.F_CLUSTER: c.uuid, E.F_SID: self.sid})
        for name, index, host, backends in routes:
            self.sni(c, name, index, host, backends)
        self.send(E.EV_SYNC_END, **{E.F_CLUSTER: c.uuid, E.F_SID: self.sid})

    def sni(self, c, name, index, host, backends):
        self.send(E.EV_SNI_ROUTE, **{E.F_CLUSTER: c.uuid, E.F_NS: NS, E.F_NAME: name,
                                     E.F_ROUTE: index, E.F_HOST: host,
                                     E.F_BACKENDS: [list(b) for b in backends]})

    def sni_gone(self, c, name, index):
        self.send(E.EV_SNI_GONE, **{E.F_CLUSTER: c.uuid, E.F_NS: NS, E.F_NAME: name,
                                    E.F_ROUTE: index})

    def close(self):
        self.sock.close()
        self.ctx.destroy(linger=0)


def sni_slot(cfg, host):
    """The text of HAProxy's slot backend tls<n> that holds host."""
    for part in cfg.split("\nbackend ")[1:]:
        if part.startswith("tls") and "\t# sni %s\n" % host in part:
            return part
    raise AssertionError("no slot for %s in:\n%s" % (host, cfg))


def ctl(fleet, *args):
    p = subprocess.run([harness.daemon_path("porticoctl"), "-f", fleet.conf_path] +
                       list(args), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def sni_routes(fleet):
    """porticoctl routes -j, the TLSRoutes' hostnames: {owner: (state, host,
    refused, backends)}."""
    rc, out, err = ctl(fleet, "-j", "routes")
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {r["owner"]: (r["state"], r["hostname"], r["refused"],
                         sorted(tuple(b) if isinstance(b, list) else
                                (b["ip"], b["port"], b["weight"]) for b in r["backends"]))
            for r in rows if r["kind"] == "TLSRoute"}


@pytest.fixture(params=["haproxy", "nginx"])
def rig(make_fleet, request):
    need(*DAEMONS)
    # the proxy named after its kind: harness's haproxy_reloads() finds it
    fleet = make_fleet(sources=("kubeconfigs",),
                       proxies=[(request.param, request.param)])
    alpha = fleet.add_cluster("alpha", register=False)
    beta = fleet.add_cluster("beta", register=False)
    # no watcherd: this test is watcherd; an empty store waits for resyncs
    fleet.write_conf(store={"adopt_wait": 1})
    fleet.start_daemons(watcherd=False)
    bus = Allocd(fleet)
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    servers = []
    try:
        yield fleet, alpha, beta, bus, tap, servers
    finally:
        for s in servers:
            s.close()
        tap.close()
        bus.close()


def test_sni_routes(rig):
    fleet, alpha, beta, bus, tap, servers = rig
    app = "app." + alpha.host
    www = "www.app." + alpha.host
    stolen = "pay." + beta.host
    late = "late." + alpha.host
    shop = TlsServer(fleet.pki, [app, www, late], "shop-a")
    shop2 = TlsServer(fleet.pki, [app, www, late], "shop-b")
    thief = TlsServer(fleet.pki, [stolen, beta.host, app], "thief")
    servers += [shop, shop2, thief]

    for c in (alpha, beta):
        bus.cluster_up(c)
    bus.sync(alpha, [("web", 0, app, [(shop.host, shop.port, 1)]),
                     ("web", 1, www, [(shop.host, shop.port, 3),
                                      (shop2.host, shop2.port, 1)])])
    bus.sync(beta, [])
    for c in (alpha, beta):
        fleet.wait_api(c.host, timeout=60)

    # routed by SNI, TLS passed through: the workload's own certificate
    testlib.wait_until(lambda: s_client(fleet, app) == "shop-a", 60, app + " routed")
    seen = {s_client(fleet, www) for _ in range(12)}
    assert seen == {"shop-a", "shop-b"}, seen          # weights 3:1, both serve
    haproxy = fleet.proxy().kind == "haproxy"
    if haproxy:
        slot = sni_slot(fleet.proxy_cfg(), www)
        assert "weight 3" in slot, slot

    # another name, other backends: through HAProxy's runtime API, no
    # reload (the pool of slots is there); nginx reloads
    reloads = fleet.haproxy_reloads() if haproxy else None
    assert reloads is not None or not haproxy
    bus.sni(alpha, "web", 2, late, [(shop2.host, shop2.port, 1)])
    testlib.wait_until(lambda: s_client(fleet, late) == "shop-b", 60, late + " routed")
    bus.sni(alpha, "web", 2, late, [(shop.host, shop.port, 1)])
    testlib.wait_until(lambda: s_client(fleet, late) == "shop-a", 60, late + " moved")
    if haproxy:
        assert fleet.haproxy_reloads() == reloads
        assert "serving generation" in fleet["applyd"].log()
        assert re.search(r"serving generation \d+ \(live\)", fleet["applyd"].log())

    # refused: another cluster's name, a cluster's API host, a name held,
    # a loopback backend; nothing of them reaches a proxy
    mark = len(tap.events)
    bus.sni(alpha, "evil", 0, stolen, [(thief.host, thief.port, 1)])
    bus.sni(alpha, "evil", 1, beta.host, [(thief.host, thief.port, 1)])
    bus.sni(alpha, "evil", 2, app, [(thief.host, thief.port, 1)])
    bus.sni(alpha, "evil", 3, "x." + alpha.host, [("127.0.0.1", thief.port, 1)])
    want = {0: "is not under the cluster's host (*.%s)" % alpha.host,
            1: "is not under the cluster's host",
            2: "is held by another route",
            3: "is loopback"}

    def refusals():
        got = {e[E.F_ROUTE]: e for e in tap.events[mark:]
               if e["type"] == "REFUSED" and e.get(E.F_NAME) == "evil"}
        return got if len(got) == len(want) else None
    got = testlib.wait_until(refusals, 30, "four refusals")
    for i, why in want.items():
        assert got[i][E.F_RKIND] == "tls" and why in got[i][E.F_WHY], got[i]
        # a reason names nothing outside the route's own cluster
        assert beta.uuid not in got[i][E.F_WHY]
    assert not [e for e in tap.events[mark:] if e["type"] == "SNI_SET"]
    for name in (stolen, "x." + alpha.host):
        assert s_client(fleet, name) is None
    assert s_client(fleet, app) == "shop-a"            # the first holder keeps it
    assert thief.accepted == 0
    if haproxy:
        assert stolen not in fleet.proxy_cfg()
    beta.kubectl_via_portico("get", "namespaces")      # the APIs keep working
    alpha.kubectl_via_portico("get", "namespaces")

    routes = sni_routes(fleet)
    owner = "%s/%s/web/0/tls" % (alpha.uuid, NS)
    assert routes[owner][:3] == ("live", app, None), routes[owner]
    assert routes["%s/%s/evil/0/tls" % (alpha.uuid, NS)][0] == "refused"

    # porticoctl: the story of a hostname, and the state as renderd -T reads it
    rc, out, err = ctl(fleet, "why", owner)
    assert rc == 0 and "routed hostname %s by SNI (1 backends)" % app in out, out + err
    rc, out, err = ctl(fleet, "why", "%s/%s/evil/0/tls" % (alpha.uuid, NS))
    assert rc == 0 and "refused: hostname %s is not under" % stolen in out, out + err
    last = max(e["seq"] for e in tap.events)
    rc, state, err = ctl(fleet, "log", "state", "--at", str(last))
    assert rc == 0, err
    held = sorted(json.loads(l)["body"][E.F_HOST] for l in state.splitlines()
                  if json.loads(l)["type"] == "SNI_SET")
    assert held == sorted([app, www, late]), held
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", fleet.conf_path, "-T",
                         "/dev/stdin"], input=state, capture_output=True, text=True,
                        timeout=60)
    assert cp.returncode == 0, cp.stderr
    if haproxy:     # what HAProxy serves, byte for byte, once applyd wrote it
        testlib.wait_until(lambda: cp.stdout == fleet.proxy_cfg(), 30,
                           "the served configuration written")

    # allocd dies and comes back: the same SNI state, from its store
    before = sni_routes(fleet)
    fleet["allocd"].kill9()
    fleet["allocd"].start()
    assert sni_routes(fleet) == before
    rc, out, err = ctl(fleet, "log", "replay")
    assert rc == 0, out + err
    assert s_client(fleet, app) == "shop-a"
    # (the DEALER reconnects to the new allocd by itself)

    # deleted: no longer routed; a resync without it: neither
    bus.sni_gone(alpha, "web", 0)
    testlib.wait_until(lambda: s_client(fleet, app, timeout=5) is None, 60, app + " gone")
    assert s_client(fleet, www) in ("shop-a", "shop-b")
    bus.sync(alpha, [])
    testlib.wait_until(lambda: s_client(fleet, www, timeout=5) is None, 60, www + " gone")
    assert not sni_routes(fleet)
    fleet.wait_api(alpha.host)
    fleet.wait_api(beta.host)


def fnv1a(s):
    """FNV-1a 64, as common/hash.h: the hash that homes a hostname's slot."""
    h = 14695981039346656037
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def api_map(fleet):
    """The SNI map HAProxy routes the shared port by: {host: backend}."""
    path = os.path.join(fleet.run_dir, "%s-api.map" % fleet.proxy().name)
    with open(path) as f:
        return dict(line.split() for line in f if line.strip())


def tls_line(fleet, name, timeout=5):
    """A TLS connection through the shared port with SNI name, and the
    first line the workload sent on it (None: refused or failed)."""
    s = socket.create_connection((fleet.listen, fleet.api_port), timeout=timeout)
    try:
        t = fleet.pki.ctx.wrap_socket(s, server_hostname=name)
    except (OSError, ssl.SSLError):
        s.close()
        return None, None
    try:
        return t, t.makefile("rb").readline().decode().strip() or None
    except (OSError, ssl.SSLError):
        t.close()
        return None, None


@pytest.mark.parametrize("rig", ["haproxy"], indirect=True)
def test_sni_host_displaced_from_its_slot_moves_live(rig):
    """A hostname that comes homed where one is routed, sorting first,
    takes its slot; the one routed moves to the next slot through the
    runtime API: it keeps being served, a connection on it stays, HAProxy
    does not reload; the same when the newcomer goes and it moves back."""
    fleet, alpha, beta, bus, tap, servers = rig
    first = "z0." + alpha.host
    home = fnv1a(first) & 15
    comer = next("a%d.%s" % (i, alpha.host) for i in range(4096)
                 if fnv1a("a%d.%s" % (i, alpha.host)) & 15 == home)
    shop = TlsServer(fleet.pki, [first], "shop-first")
    other = TlsServer(fleet.pki, [comer], "shop-comer")
    servers += [shop, other]
    for c in (alpha, beta):
        bus.cluster_up(c)
    bus.sync(alpha, [("web", 0, first, [(shop.host, shop.port, 1)])])
    bus.sync(beta, [])
    fleet.wait_api(alpha.host, timeout=60)
    testlib.wait_until(lambda: s_client(fleet, first) == "shop-first", 60, first + " routed")
    assert api_map(fleet)[first] == "tls%d" % home
    reloads = fleet.haproxy_reloads()
    assert reloads is not None

    failures = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            t, line = tls_line(fleet, first)
            if t is not None:
                t.close()
            if line != "shop-first":
                failures.append(line)

    held, line = tls_line(fleet, first, timeout=30)
    assert line == "shop-first"
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    try:
        bus.sni(alpha, "web", 1, comer, [(other.host, other.port, 1)])
        testlib.wait_until(lambda: s_client(fleet, comer) == "shop-comer", 60,
                           comer + " routed")
        testlib.wait_until(lambda: api_map(fleet).get(first) == "tls%d" % ((home + 1) % 16),
                           30, first + " moved to the next slot")
        assert api_map(fleet)[comer] == "tls%d" % home
        assert s_client(fleet, first) == "shop-first"
        assert fleet.haproxy_reloads() == reloads, "a displaced hostname reloaded HAProxy"

        bus.sni_gone(alpha, "web", 1)
        testlib.wait_until(lambda: s_client(fleet, comer, timeout=5) is None, 60,
                           comer + " gone")
        testlib.wait_until(lambda: api_map(fleet).get(first) == "tls%d" % home,
                           30, first + " back in its home slot")
        assert s_client(fleet, first) == "shop-first"
        assert fleet.haproxy_reloads() == reloads, "a hostname moving back reloaded HAProxy"
    finally:
        stop.set()
        t.join()
    # the connection made before is still open: nothing to read, no EOF
    held.settimeout(0.2)
    with pytest.raises(socket.timeout):
        held.recv(1)
    held.close()
    assert not failures, "%s failed %d probes: %s" % (first, len(failures), failures[:3])


# ------------------------------------------------ the renderers, checked

CONF = """\
[portico]
domain = k8s.example.test
run_dir = {run_dir}
listen = {listen}
api_port = 443
ports = 21000-21009

[kubeconfigs]
dir = /etc/portico-golden/kubeconfigs

[proxy.edge]
kind = {kind}
"""

C1 = "c1c0ffee-0000-4000-8000-000000000002"
API_HOST = "payments.k8s.example.test"


def sni_state():
    """A cluster, two TLSRoute hostnames (one with weights, one IPv6), one
    without backends, one deleted, one shadowed by the API host."""
    def ev(type_, seq, **body):
        return json.dumps({"type": type_, "seq": seq, "time": 0, "body": body})

    def sni(seq, name, host, backends):
        return ev("SNI_SET", seq, c=C1, ns=NS, n=name, r=0, h=host, b=backends)
    return "\n".join([
        ev("API_SET", 1, c=C1, cn="payments", h=API_HOST, m=["10.20.0.11"], mp=8443),
        sni(2, "web", "shop." + API_HOST, [["10.20.1.1", 30443, 3], ["10.20.1.2", 30443, 1]]),
        sni(3, "v6", "v6." + API_HOST, [["fd00::7", 8443, 1]]),
        sni(4, "none", "none." + API_HOST, []),
        sni(5, "gone", "gone." + API_HOST, [["10.20.1.9", 30443, 1]]),
        ev("SNI_DEL", 6, c=C1, ns=NS, n="gone", r=0, h="gone." + API_HOST),
        sni(7, "shadow", API_HOST, [["10.20.1.5", 30443, 1]]),
    ]) + "\n"


def render(tmp_path, kind, listen="192.0.2.10"):
    need("renderd")
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    conf = tmp_path / ("%s.conf" % kind)
    conf.write_text(CONF.format(run_dir=run_dir, kind=kind, listen=listen))
    state = tmp_path / "state.in"
    state.write_text(sni_state())
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", str(conf), "-p", "edge",
                         "-T", str(state)], capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


def checker(argv):
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return cp.returncode, cp.stdout.decode(errors="replace")


def test_haproxy_sni_config_checks(tmp_path):
    """HAProxy's slots tls<n>, weights merged; haproxy -c takes them with
    the map applyd would write."""
    out = render(tmp_path, "haproxy")
    shop = sni_slot(out, "shop." + API_HOST)
    assert "weight 3" in shop and "weight 1" in shop
    assert "gone." not in out and "10.20.1.5" not in out
    cfg = tmp_path / "edge.cfg"
    cfg.write_text(out)
    (tmp_path / "run" / "edge-ports.map").write_text("")
    (tmp_path / "run" / "edge-api.map").write_text(
        "%s api0\nshop.%s %s\n" % (API_HOST, API_HOST, shop.split("\n")[0]))
    rc, msg = checker([shutil_which("haproxy"), "-c", "-f", str(cfg)])
    assert rc == 0, msg


def test_nginx_sni_config_checks(tmp_path):
    """nginx's SNI map and upstreams pass nginx -t (which binds: an address
    of the test's own)."""
    listen = testlib.loopback_addr()
    out = render(tmp_path, "nginx", listen)
    assert "\t\tshop.%s tls_shop.%s;\n" % (API_HOST, API_HOST) in out
    assert "\t\tnone.%s portico_none;\n" % API_HOST in out
    assert "10.20.1.5" not in out and "gone." not in out
    cfg = tmp_path / "nginx.conf"
    cfg.write_text(out)
    rc, msg = checker([shutil_which("nginx"), "-t", "-q", "-p", str(tmp_path / "run"),
                       "-c", str(cfg)])
    assert rc == 0, msg


def shutil_which(name):
    import shutil
    return shutil.which(name) or "/usr/sbin/" + name
