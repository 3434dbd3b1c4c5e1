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
"""

import json
import os
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
        self.ctx.term()


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


@pytest.fixture
def rig(make_fleet):
    need(*DAEMONS)
    fleet = make_fleet(sources=("kubeconfigs",))
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
    shop = TlsServer(fleet.pki, [app, www], "shop-a")
    shop2 = TlsServer(fleet.pki, [app, www], "shop-b")
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
    cfg = fleet.proxy_cfg()
    assert "backend tls_%s" % www in cfg
    assert "weight 3" in cfg.split("backend tls_%s" % www)[1].split("\nbackend")[0]

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
    assert stolen not in fleet.proxy_cfg()
    beta.kubectl_via_portico("get", "namespaces")      # the APIs keep working
    alpha.kubectl_via_portico("get", "namespaces")

    routes = sni_routes(fleet)
    owner = "%s/%s/web/0/tls" % (alpha.uuid, NS)
    assert routes[owner][:3] == ("live", app, None), routes[owner]
    assert routes["%s/%s/evil/0/tls" % (alpha.uuid, NS)][0] == "refused"

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
