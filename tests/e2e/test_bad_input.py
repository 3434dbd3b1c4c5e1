"""The bad-input suite (issue 11): hostile or broken input on every way in,
each case asserting the clear error it gets and that nothing else was lost.

One fleet runs for the whole module (real daemons, real HAProxy, the PKS
and Kubernetes simulators, real TCP workloads): a PKS cluster "shop" with
two exposed VirtualServices and a kubeconfig-folder cluster "lab" with one.
Before a case, their addresses and ports are recorded; after it, every one
of them must still carry the same address, no error, be routed by HAProxy
to its own workload over real TCP, both API routes must answer by SNI, and
each daemon must be the same process as before (same PID).

The groups:
- bus: bytes sent to allocd's input socket (a ZeroMQ DEALER of our own on
  ipc://<run_dir>/alloc.in): each is dropped with "bus: dropped a N-byte
  message: <reason>", and allocd goes on;
- applyd: a second applyd (its own [proxy.fake], kind envoy: files only)
  fed by a fake renderd of ours: the same drop, applyd goes on;
- api: VirtualServices and API answers a tenant or a broken API server
  could produce;
- files: what may lie in the kubeconfig folder.

State files and configuration, which need no fleet, are in
test_bad_input_offline.py.
"""

import json
import os
import re
import time
import urllib.parse

import pytest

import harness
import testlib
from harness import ADDRESS, DOMAIN, ERROR, EXPOSE, PORT, need

E = testlib.events

DAEMONS = ("allocd", "renderd", "applyd", "watcherd")
SHOP = "shop"
LAB = "lab"
FAKE_UUID = "0badc0de-0000-4000-8000-00000000bad1"
NOT_A_PORT = "portico.dev/port is not a port number"
INVALID_NAME = "an object with an invalid name was ignored"


def exposed(name, ns, host, port, ann=None, extra_routes=0):
    tcp = [[harness.dest(host, port)]] * (1 + extra_routes)
    return harness.virtualservice(name, ns, tcp, annotations=dict({EXPOSE: "true"},
                                                                  **(ann or {})))


# ------------------------------------------------------------------ the world

class Route:
    def __init__(self, cluster, ns, name, svc, port):
        self.cluster, self.ns, self.name = cluster, ns, name
        self.markers = cluster.markers(ns, svc, port)
        self.address = None
        self.port = None


class World:
    """The module's fleet, what it must keep, and the ways to feed it."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.shop = fleet.add_cluster(
            SHOP, [("db", SHOP, [5432]), ("cache", SHOP, [6379])],
            [exposed("db", SHOP, "db", 5432), exposed("cache", SHOP, "cache", 6379)])
        self.lab = fleet.add_cluster(
            LAB, [("web", LAB, [8080])], [exposed("web", LAB, "web", 8080)],
            register=False)
        self.lab.write_kubeconfig()
        self.routes = [Route(self.shop, SHOP, "db", "db", 5432),
                       Route(self.shop, SHOP, "cache", "cache", 6379),
                       Route(self.lab, LAB, "web", "web", 8080)]
        self._dealer = None
        self._zctx = None

    def start(self):
        f = self.fleet
        f.start()
        for c in (self.shop, self.lab):
            f.wait_api(c.host, timeout=60)
        for r in self.routes:
            (r.port,) = f.wait_address(r.cluster, r.ns, r.name, timeout=60)
            r.address = r.cluster.annotations(r.ns, r.name)[ADDRESS]
            f.wait_serves(r.port, r.markers, timeout=60)
        self.pids = {d: f[d].pid for d in DAEMONS}
        self.tap = harness.BusTap("ipc://%s/alloc.pub" % f.run_dir)

    # -- what must not be lost
    def intact(self):
        """Every daemon is the same process; every route keeps its address,
        has no error, and a real TCP connection through HAProxy reaches its
        own workload; both clusters' API routes answer by SNI."""
        f = self.fleet
        for d in DAEMONS:
            assert f[d].alive(), "%s died:\n%s" % (d, harness.tail(f[d].log(), 40))
            assert f[d].pid == self.pids[d], "%s was restarted" % d
        for r in self.routes:
            ann = r.cluster.annotations(r.ns, r.name)
            assert ann.get(ADDRESS) == r.address, (r.name, ann)
            assert ERROR not in ann, (r.name, ann)
            f.wait_serves(r.port, r.markers, timeout=30)
            assert f.marker(r.port) in r.markers
        assert r.port in f.routed_ports()
        for c in (self.shop, self.lab):
            f.wait_api(c.host, timeout=30)

    # -- logs
    def mark(self):
        return {d: len(self.fleet[d].log()) for d in DAEMONS}

    def wait_log(self, daemon, text, mark, timeout=30):
        """The line of daemon's log, written after mark, that holds text
        (a str, or a compiled regex)."""
        def find():
            self.fleet._check_alive()
            new = self.fleet[daemon].log()[mark[daemon]:]
            for line in new.splitlines():
                if (text.search(line) if hasattr(text, "search") else text in line):
                    return line
            return None
        return testlib.wait_until(find, timeout, "%r in %s's log" % (text, daemon))

    def new_log(self, daemon, mark):
        return self.fleet[daemon].log()[mark[daemon]:]

    # -- the bus
    def dealer(self):
        """A DEALER on allocd's input socket, as watcherd and applyd have."""
        if self._dealer is None:
            import zmq
            self._zctx = zmq.Context()
            self._dealer = self._zctx.socket(zmq.DEALER)
            self._dealer.setsockopt(zmq.LINGER, 0)
            self._dealer.connect("ipc://%s/alloc.in" % self.fleet.run_dir)
        return self._dealer

    def close(self):
        if getattr(self, "tap", None) is not None:
            self.tap.close()
        if self._dealer is not None:
            self._dealer.close()
            self._zctx.destroy(linger=0)


@pytest.fixture(scope="module")
def world(request):
    need(*DAEMONS)
    fleet = harness.Fleet(sources=("pks", "kubeconfigs"), ports=60, quarantine=5)
    w = World(fleet)
    ok = False
    failed = request.session.testsfailed
    try:
        w.start()
        yield w
        ok = request.session.testsfailed == failed
    finally:
        w.close()
        problems = fleet.stop()
        if ok and not problems and not os.environ.get("PORTICO_KEEP"):
            fleet.cleanup()
        else:
            print("portico: kept %s for inspection" % fleet.run_dir)
        assert not problems, "\n".join(problems)


@pytest.fixture
def w(world, request):
    """The module's world, its logs attached to a failing case's report."""
    request.node.portico_fleets = [world.fleet]
    world.intact()          # a case starts from a whole fleet
    return world


# ------------------------------------------------------------------ the bus

def mp(obj):
    import msgpack
    return msgpack.packb(obj, use_bin_type=True)


def envelope(type_, body, version=E.VERSION, seq=1, t=0):
    return mp([version, type_, seq, t, body])


def route_body(**over):
    """A ROUTE for a cluster that does not exist: valid but for what a case
    changes (each case makes it invalid)."""
    b = {E.F_CLUSTER: FAKE_UUID, E.F_NS: "tenant", E.F_NAME: "probe", E.F_ROUTE: 0,
         E.F_BACKENDS: [["10.1.2.3", 30000, 1]]}
    b.update(over)
    return b


def route(**over):
    return envelope(E.EV_ROUTE, route_body(**over))


def raw_route_head(nkeys):
    """[1, ROUTE, 1, 0, {map of nkeys}] up to the map's first key."""
    return b"\x95\x01\x0c\x01\x00" + bytes([0x80 | nkeys])


def _str(b):
    """msgpack str of raw bytes (NULs, bad UTF-8 and all)."""
    n = len(b)
    if n < 32:
        return bytes([0xa0 | n]) + b
    if n < 256:
        return b"\xd9" + bytes([n]) + b
    if n < 65536:
        return b"\xda" + n.to_bytes(2, "big") + b
    return b"\xdb" + n.to_bytes(4, "big") + b


def _nested(depth):
    return b"\x91" * depth + b"\xc0"


VALID_ROUTE = route()

# (id, bytes, the reason allocd logs)
BUS = [
    ("garbage", b"\xc1\xff garbage \x00\x01", "not an event envelope"),
    ("empty-message", b"", "not an event envelope"),
    ("json-not-msgpack", json.dumps([1, 12, 1, 0, {}]).encode(), "not an event envelope"),
    ("envelope-of-4", mp([1, 12, 1, 0]), "not an event envelope"),
    ("envelope-not-array", mp({"v": 1}), "not an event envelope"),
    ("truncated-envelope", VALID_ROUTE[:3], "not an event envelope"),
    ("truncated-in-body", VALID_ROUTE[:7], "ROUTE: body is not a map"),
    ("key-not-a-string", raw_route_head(1) + b"\x01\x02", "ROUTE: bad key"),
    ("truncated-in-value", VALID_ROUTE[:len(VALID_ROUTE) - 4], "field b: bad value"),
    ("wrong-version-2", envelope(E.EV_ROUTE, route_body(), version=2), "unknown version"),
    ("wrong-version-0", envelope(E.EV_ROUTE, route_body(), version=0), "unknown version"),
    ("version-as-string", mp(["1", 12, 1, 0, route_body()]), "unknown version"),
    ("type-beyond-16-bits", envelope(70000, route_body()), "bad envelope"),
    ("seq-negative", mp([1, 12, -1, 0, route_body()]), "bad envelope"),
    ("seq-float", mp([1, 12, 1.5, 0, route_body()]), "bad envelope"),
    ("huge-envelope-count", b"\xdd\xff\xff\xff\xff\x01\x0c", "not an event envelope"),
    ("huge-body-map-count", b"\x95\x01\x0c\x01\x00\xdf\xff\xff\xff\xff\xa1c",
     "ROUTE: body is not a map"),
    ("body-is-array", envelope(E.EV_ROUTE, [1, 2, 3]), "ROUTE: body is not a map"),
    ("huge-backends-count", raw_route_head(1) + _str(b"b") + b"\xdd\x7f\xff\xff\xff",
     "field b: bad value"),
    ("huge-string-length", raw_route_head(1) + b"\xdb\xff\xff\xff\xf0c", "ROUTE: bad key"),
    ("oversize-cluster-id", route(c="a" * 100000), "field c: bad value"),
    ("oversize-name", route(n="a" * (100 << 10)), "field n: bad value"),
    ("too-many-backends", route(b=[["10.1.2.3", 30000 + i % 1000, 1] for i in range(1025)]),
     "field b: bad value"),
    ("backend-bad-ip", route(b=[["10.1.2.300", 30000, 1]]), "field b: bad value"),
    ("backend-ip-newline", route(b=[["10.1.2.3\n#x", 30000, 1]]), "field b: bad value"),
    ("backend-ip-hostname", route(b=[["db.example.test", 30000, 1]]), "field b: bad value"),
    ("backend-port-0", route(b=[["10.1.2.3", 0, 1]]), "field b: bad value"),
    ("backend-port-65536", route(b=[["10.1.2.3", 65536, 1]]), "field b: bad value"),
    ("backend-weight-257", route(b=[["10.1.2.3", 30000, 257]]), "field b: bad value"),
    ("backend-two-fields", route(b=[["10.1.2.3", 30000]]), "field b: bad value"),
    ("want-65536", route(want=65536), "field want: bad value"),
    ("want-negative", route(want=-5), "field want: bad value"),
    ("want-string", route(want="21000"), "field want: bad value"),
    ("ns-newline", route(ns="tenant\nbind :1"), "field ns: bad value"),
    ("ns-semicolon", route(ns="tenant;x"), "field ns: bad value"),
    ("name-hash", route(n="probe#x"), "field n: bad value"),
    ("name-space", route(n="probe x"), "field n: bad value"),
    ("name-nul", raw_route_head(5) + _str(b"c") + _str(FAKE_UUID.encode()) +
     _str(b"ns") + _str(b"tenant") + _str(b"n") + _str(b"probe\x00x") +
     _str(b"r") + b"\x00" + _str(b"b") + mp([["10.1.2.3", 30000, 1]]),
     "field n: bad value"),
    ("name-upper-case", route(n="Probe"), "field n: bad value"),
    ("cluster-id-slash", route(c="a/b"), "field c: bad value"),
    ("route-as-string", route(r="0"), "field r: bad value"),
    ("missing-backends", envelope(E.EV_ROUTE, {E.F_CLUSTER: FAKE_UUID, E.F_NS: "tenant", E.F_NAME: "p", E.F_ROUTE: 0}),
     "ROUTE: missing field b"),
    ("cluster-up-bad-master", envelope(E.EV_CLUSTER_UP, {E.F_CLUSTER: FAKE_UUID, E.F_CNAME: "fake", E.F_HOST: "fake." + DOMAIN,
                                            E.F_MASTERS: ["10.0.0.1", "::1%lo"], E.F_MPORT: 8443}),
     "field m: bad value"),
    ("cluster-up-17-masters", envelope(E.EV_CLUSTER_UP, {E.F_CLUSTER: FAKE_UUID, E.F_CNAME: "fake", E.F_HOST: "fake." + DOMAIN,
                                            E.F_MASTERS: ["10.0.0.%d" % i for i in range(17)],
                                            E.F_MPORT: 8443}), "field m: bad value"),
    ("cluster-up-master-port-65536", envelope(E.EV_CLUSTER_UP, {E.F_CLUSTER: FAKE_UUID, E.F_CNAME: "fake",
                                                   E.F_HOST: "fake." + DOMAIN, E.F_MASTERS: ["10.0.0.1"],
                                                   E.F_MPORT: 65536}), "field mp: bad value"),
    ("cluster-up-host-space", envelope(E.EV_CLUSTER_UP, {E.F_CLUSTER: FAKE_UUID, E.F_CNAME: "fake",
                                            E.F_HOST: "fake ." + DOMAIN, E.F_MASTERS: ["10.0.0.1"],
                                            E.F_MPORT: 8443}), "field h: bad value"),
    ("applied-held-port-0", envelope(E.EV_APPLIED, {E.F_PROXY: "haproxy", E.F_GEN: 1, E.F_HELD: [0]}),
     "field held: bad value"),
    ("applied-held-unsorted", envelope(E.EV_APPLIED, {E.F_PROXY: "haproxy", E.F_GEN: 1, E.F_HELD: [21001, 21000]}),
     "field held: bad value"),
    ("applied-why-newline", envelope(E.EV_APPLIED, {E.F_PROXY: "haproxy", E.F_GEN: 1, E.F_FGEN: 2,
                                          E.F_WHY: "reload failed\n[ALERT] x"}),
     "field why: bad value"),
    ("sync-begin-sid-map", envelope(E.EV_SYNC_BEGIN, {E.F_CLUSTER: FAKE_UUID, E.F_SID: {"a": 1}}), "field sid: bad value"),
    ("duplicate-key-first-hostile", raw_route_head(6) + _str(b"c") + _str(b"A B") +
     _str(b"c") + _str(FAKE_UUID.encode()) + _str(b"ns") + _str(b"tenant") +
     _str(b"n") + _str(b"probe") + _str(b"r") + b"\x00" + _str(b"b") +
     mp([["10.1.2.3", 30000, 1]]), "field c: bad value"),
    ("unknown-key-nested-too-deep", raw_route_head(1) + _str(b"zz") + _nested(40),
     "ROUTE: bad value"),
    ("unknown-key-ext-type", raw_route_head(1) + _str(b"zz") + b"\xd4\x01\x02",
     "ROUTE: bad value"),
    ("trailing-bytes", VALID_ROUTE + b"\xc0", "ROUTE: trailing bytes"),
]


@pytest.mark.parametrize("payload,reason", [b[1:] for b in BUS], ids=[b[0] for b in BUS])
def test_bus_to_allocd(w, payload, reason):
    """allocd's input: the message is dropped, the reason logged, and
    nothing decided: allocd publishes nothing about the fake cluster."""
    mark = w.mark()
    w.dealer().send(payload)
    line = w.wait_log("allocd", "bus: dropped a %d-byte message: %s" % (len(payload), reason),
                      mark)
    assert line.endswith(reason), line
    w.intact()
    assert FAKE_UUID not in w.new_log("allocd", mark)
    assert not [e for e in w.tap.events if e.get("c") == FAKE_UUID]


def test_bus_unknown_type_is_ignored(w):
    """An event type allocd does not know decodes, is counted and ignored."""
    mark = w.mark()
    w.dealer().send(envelope(999, route_body()))
    w.wait_log("allocd", "allocd: ignored UNKNOWN on input", mark)
    w.intact()


def test_bus_multipart_message(w):
    """Frames after the first are drained with it, never read as events of
    their own: one drop for the whole message."""
    mark = w.mark()
    w.dealer().send_multipart([b"\xc1 first", route(ns="x y"), b"third"])
    w.dealer().send(b"\xc1 sentinel!")
    w.wait_log("allocd", "bus: dropped a 11-byte message: not an event envelope", mark)
    new = w.new_log("allocd", mark)
    assert new.count("bus: dropped a 7-byte message: not an event envelope") == 1, new
    assert "field ns" not in new and "5-byte" not in new, new
    w.intact()


# ------------------------------------------------------------------ applyd

class FakeRenderd:
    """A renderd of our own for a second applyd: [proxy.fake], kind envoy
    (applyd only writes Envoy's files, so it runs no proxy), in a copy of
    the fleet's configuration that only this applyd reads (allocd never
    waits on a proxy it does not know)."""

    def __init__(self, world):
        import types
        import zmq
        f = world.fleet
        self.run_dir = f.run_dir
        self.pub_ep = "ipc://%s/fake.pub" % f.run_dir
        self.sync_ep = "ipc://%s/fake.sync" % f.run_dir
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.PUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.pub.bind(self.pub_ep)
        self.sync = self.ctx.socket(zmq.ROUTER)
        self.sync.setsockopt(zmq.LINGER, 0)
        self.sync.bind(self.sync_ep)
        conf = os.path.join(f.run_dir, "fake.conf")
        with open(conf, "w") as out:
            out.write(f.conf_text(**{"proxy.haproxy": {"kind": "haproxy"},
                                     "proxy.fake": {"kind": "envoy", "pub": self.pub_ep,
                                                    "sync": self.sync_ep}}))
        shim = types.SimpleNamespace(run_dir=f.run_dir, conf_path=conf, log_dir=f.log_dir,
                                     verbose=True, env=f.env, run_as=None,
                                     wrap={})
        self.applyd = harness.Daemon(shim, "applyd", "applyd-fake", ["-p", "fake"],
                                     "applyd-fake").start()

    def log(self):
        return self.applyd.log()

    def answer_since(self, payload, timeout=10):
        """Answer applyd's next SINCE with payload. applyd asks anew (on a
        new socket) every few seconds while unanswered: the requests that
        wait are stale, only a fresh one is answered."""
        import zmq
        while self.sync.poll(0, zmq.POLLIN):
            self.sync.recv_multipart()
        assert self.sync.poll(timeout * 1000, zmq.POLLIN), "no SINCE from applyd"
        ident, _ = self.sync.recv_multipart()
        self.sync.send_multipart([ident, payload])

    def close(self):
        rc = self.applyd.stop()
        self.pub.close()
        self.sync.close()
        self.ctx.destroy(linger=0)
        return rc


@pytest.fixture(scope="module")
def fake(world):
    fr = FakeRenderd(world)
    yield fr
    assert fr.close() == 0, harness.tail(fr.log(), 40)


def config_event(kind="envoy", text="{}", seq=1):
    return envelope(E.EV_CONFIG, {E.F_KIND: kind, E.F_TEXT: text}, seq=seq)


# (id, what the fake renderd sends, on which socket, the reason applyd logs)
APPLYD = [
    ("pub-garbage", b"\x00garbage\xff", "pub", "not an event envelope"),
    ("pub-wrong-version", mp([9, E.EV_CONFIG, 1, 0, {}]), "pub", "unknown version"),
    ("pub-huge-map-count", b"\x95\x01\x32\x01\x00\xdf\x7f\xff\xff\xff", "pub",
     "CONFIG: body is not a map"),
    ("pub-config-kind-newline", config_event(kind="envoy\nx"), "pub", "field kind: bad value"),
    ("pub-config-text-int", envelope(E.EV_CONFIG, {E.F_KIND: "envoy", E.F_TEXT: 7}), "pub",
     "field text: bad value"),
    ("pub-config-no-text", envelope(E.EV_CONFIG, {E.F_KIND: "envoy"}), "pub", "CONFIG: missing field text"),
    ("pub-heartbeat-no-boot", envelope(E.EV_HEARTBEAT, {}), "pub", "HEARTBEAT: missing field boot"),
    ("since-answer-garbage", b"\xc1\xc1\xc1", "sync", "not an event envelope"),
    ("since-answer-truncated", config_event()[:9], "sync", "CONFIG: body is not a map"),
    ("since-answer-text-bin-huge", b"\x95\x01\x32\x01\x00\x82" + _str(b"kind") +
     _str(b"envoy") + _str(b"text") + b"\xc6\xff\xff\xff\x00", "sync", "field text: bad value"),
]


@pytest.mark.parametrize("payload,sock,reason", [a[1:] for a in APPLYD],
                         ids=[a[0] for a in APPLYD])
def test_fake_renderd_to_applyd(w, fake, payload, sock, reason):
    """applyd's feed: what a broken renderd sends is dropped with its
    reason, applyd goes on (same PID) and so does the fleet."""
    pid = fake.applyd.pid
    start = len(fake.log())
    want = "bus: dropped a %d-byte message: %s" % (len(payload), reason)
    # a SUB hears nothing until its subscription arrives, and an answer to
    # a SINCE that applyd gave up on goes nowhere: send until it is heard
    def seen():
        if sock == "pub":
            fake.pub.send(payload)
        else:
            fake.answer_since(payload)
        return want in fake.log()[start:] or time.sleep(0.2)
    testlib.wait_until(seen, 60, want)
    assert fake.applyd.alive() and fake.applyd.pid == pid
    w.intact()


# ------------------------------------------------------------------ API objects

def vs_path(cluster, ns, name=None):
    return "%s/namespaces/%s/virtualservices%s" % (cluster.vs_api, ns,
                                                   "" if name is None else "/" + name)


def create_raw(cluster, obj):
    status, body = cluster.sim.request("POST", vs_path(cluster, obj["metadata"]["namespace"]),
                                       obj)
    assert status == 201, body


@pytest.fixture
def scratch(w):
    """VirtualServices a case creates in shop, deleted after it."""
    made = []

    def create(obj):
        create_raw(w.shop, obj)
        made.append((obj["metadata"]["namespace"], obj["metadata"]["name"]))
        return obj["metadata"]["name"]
    yield create
    for ns, name in made:
        w.shop.sim.request("DELETE", vs_path(w.shop, ns, urllib.parse.quote(name, safe="")))


def refused_with(w, name, error, timeout=30):
    """name (in shop) gets error written back, and never an address."""
    got = w.fleet.wait_annotation(w.shop, SHOP, name, ERROR, timeout)
    assert got == error, got
    assert ADDRESS not in w.shop.annotations(SHOP, name)


BAD_PORTS = [("zero", "0"), ("negative", "-1"), ("65536", "65536"), ("exponent", "1e3"),
             ("leading-space", " 123"), ("hex", "0x10"), ("plus", "+21000"),
             ("huge", "9" * 40), ("empty", ""), ("trailing-newline", "21000\n"),
             ("fullwidth-digits", "\uff12\uff11\uff10\uff10\uff10"), ("float", "21000.0")]


@pytest.mark.parametrize("value", [v for _, v in BAD_PORTS], ids=[i for i, _ in BAD_PORTS])
def test_api_port_annotation(w, scratch, value):
    name = scratch(exposed("want-port", SHOP, "db", 5432, ann={PORT: value}))
    refused_with(w, name, NOT_A_PORT)
    w.intact()


EXPOSE_ODD = [("yes", "yes"), ("one", "1"), ("leading-space", " true"), ("on", "on"),
              ("empty", ""), ("true-newline", "true\n")]


@pytest.mark.parametrize("value", [v for _, v in EXPOSE_ODD], ids=[i for i, _ in EXPOSE_ODD])
def test_api_expose_odd_value(w, scratch, value):
    """Only "true" (any case) exposes and "false" does not: anything else
    is a mistake the owner is told of, never taken silently for "no"."""
    name = scratch(exposed("odd-expose", SHOP, "db", 5432, ann={EXPOSE: value}))
    refused_with(w, name, "portico.dev/expose must be true or false")
    w.intact()


def test_api_port_held_by_another_cluster(w, scratch):
    """A tenant asks for the port another cluster's route holds: refused,
    and the holder keeps its port, address and traffic."""
    web = w.routes[2]
    name = scratch(exposed("camp", SHOP, "db", 5432, ann={PORT: str(web.port)}))
    err = w.fleet.wait_annotation(w.shop, SHOP, name, ERROR)
    assert err.startswith("port %d is taken" % web.port), err
    w.intact()


def test_api_port_held_error_names_no_other_cluster(w, scratch):
    web = w.routes[2]
    name = scratch(exposed("camp2", SHOP, "db", 5432, ann={PORT: str(web.port)}))
    err = w.fleet.wait_annotation(w.shop, SHOP, name, ERROR)
    assert w.lab.uuid not in err and "web" not in err and LAB not in err, err


def test_api_port_outside_range(w, scratch):
    want = w.fleet.port_hi + 1
    name = scratch(exposed("far", SHOP, "db", 5432, ann={PORT: str(want)}))
    err = w.fleet.wait_annotation(w.shop, SHOP, name, ERROR)
    assert err.startswith("port %d is outside " % want), err
    w.intact()


def test_api_port_is_the_api_port(w, scratch):
    name = scratch(exposed("on-api", SHOP, "db", 5432,
                           ann={PORT: str(w.fleet.api_port)}))
    err = w.fleet.wait_annotation(w.shop, SHOP, name, ERROR)
    assert err.startswith("port %d is outside " % w.fleet.api_port), err
    w.intact()


HOSTILE_NAMES = [("newline", "x\nlisten"), ("semicolon", "x;y"), ("hash", "x#y"),
                 ("space", "x y"), ("upper", "Xy"), ("long-254", "a" * 254),
                 ("dot-dot", "a..b")]


@pytest.mark.parametrize("name", [n for _, n in HOSTILE_NAMES],
                         ids=[i for i, _ in HOSTILE_NAMES])
def test_api_hostile_name(w, scratch, name):
    """An object whose name Kubernetes would never accept: ignored, with a
    line saying so; nothing is written back (a PATCH would carry the name)."""
    mark = w.mark()
    scratch(exposed(name, SHOP, "db", 5432))
    w.wait_log("watcherd", "%s: %s" % (SHOP, INVALID_NAME), mark)
    w.intact()


def test_api_unknown_fields(w, scratch):
    """Fields portico does not know, anywhere in the object, change nothing:
    the route is exposed like any other."""
    obj = exposed("extra", SHOP, "db", 5432)
    obj["metadata"]["finalizers"] = ["example.test/keep"]
    obj["metadata"]["x-unknown"] = {"deep": [1, 2, {"x": None}]}
    obj["spec"]["x-unknown"] = "value"
    obj["spec"]["tcp"][0]["x-unknown"] = [True]
    obj["spec"]["tcp"][0]["route"][0]["destination"]["subset"] = "v1"
    obj["spec"]["tcp"][0]["route"][0]["x-unknown"] = 1.5
    obj["status"] = {"conditions": [{"type": "Reconciled", "status": "True"}]}
    name = scratch(obj)
    (port,) = w.fleet.wait_address(w.shop, SHOP, name)
    w.fleet.wait_serves(port, w.routes[0].markers)
    # the tap the bus cases trust to see a decision does see this one
    assert w.tap.seen("PORT_SET", c=w.shop.uuid, n=name, p=port)
    w.intact()


def test_api_object_of_1_5_mib(w, scratch):
    """A big object (an annotation of 1.5 MiB) is read like a small one."""
    name = scratch(exposed("big", SHOP, "db", 5432, ann={"example.test/pad": "x" * (3 << 19)}))
    (port,) = w.fleet.wait_address(w.shop, SHOP, name, timeout=60)
    w.fleet.wait_serves(port, w.routes[0].markers)
    w.intact()


def test_api_object_over_4_mib(w, scratch):
    mark = w.mark()
    scratch(exposed("huge", SHOP, "db", 5432, ann={"example.test/pad": "x" * (5 << 20)}))
    w.wait_log("watcherd", "%s: virtualservices: %s/huge: object larger than 4 MiB refused"
               % (SHOP, SHOP), mark, timeout=60)
    w.intact()


def test_api_10000_tcp_routes(w, scratch):
    """One VirtualService with 10,000 tcp routes: refused whole, with the
    reason on it; no port of the pool is spent on it."""
    name = scratch(exposed("many", SHOP, "db", 5432, extra_routes=9999))
    err = w.fleet.wait_annotation(w.shop, SHOP, name, ERROR, timeout=60)
    assert re.fullmatch(r"more than \d+ tcp routes", err), err
    # (a route an earlier case deleted may take a moment to go)
    testlib.wait_until(lambda: sorted(w.fleet.routed_ports()) ==
                       sorted(r.port for r in w.routes), 30, "only the fleet's own ports routed")
    w.intact()


def test_api_destinations_not_a_list(w, scratch):
    obj = exposed("dests", SHOP, "db", 5432)
    obj["spec"]["tcp"][0]["route"] = {"destination": {"host": "db"}}
    name = scratch(obj)
    refused_with(w, name, "tcp[0] needs 1 to 8 destinations")
    w.intact()


def test_api_tcp_not_a_list(w, scratch):
    obj = exposed("tcp-map", SHOP, "db", 5432)
    obj["spec"]["tcp"] = {"route": []}
    name = scratch(obj)
    refused_with(w, name, "no tcp route in spec.tcp")
    w.intact()


VS_LIST = harness.VS_API + "/virtualservices"


def relist(cluster):
    """Make watcherd list the VirtualServices again: their watch ends with
    410 Expired, as when the history was compacted under it."""
    cluster.fault(kind="watch-error", count=1, path=VS_LIST, on="watch")
    cluster.sim_control("POST", "close-watches")


def test_api_malformed_list(w):
    """A list answer that is not JSON: that list is tried again, the
    cluster's routes stay as they were meanwhile."""
    mark = w.mark()
    w.shop.fault(kind="malformed", count=1, path=VS_LIST, on="list")
    relist(w.shop)
    w.wait_log("watcherd", "%s: virtualservices: list: malformed JSON; again in" % SHOP,
               mark, timeout=60)
    w.intact()


def test_api_list_http_500(w):
    mark = w.mark()
    w.shop.fault(kind="status", status=500, count=1, path=VS_LIST, on="list")
    relist(w.shop)
    w.wait_log("watcherd", "%s: virtualservices: list: HTTP 500; again in" % SHOP, mark,
               timeout=60)
    w.intact()


def test_api_malformed_watch_event(w):
    mark = w.mark()
    w.shop.fault(kind="malformed", count=1, path=VS_LIST, on="watch")
    w.shop.sim_control("POST", "close-watches")
    w.wait_log("watcherd", "%s: virtualservices: watch: malformed event; again in" % SHOP,
               mark, timeout=60)
    w.intact()


def test_pks_clusters_http_500(w):
    """PKS failing its cluster list: said once, the PKS clusters keep their
    routes (an error is not an empty list), then it answers again."""
    mark = w.mark()
    w.fleet.pks.control("PUT", "/_sim/faults", {"path": "/v1/clusters", "status": 500,
                                                "count": 3})
    w.wait_log("watcherd", "pks: GET /v1/clusters: HTTP 500; keeping the routes we have",
               mark)
    w.intact()
    w.wait_log("watcherd", "pks: answering again", mark, timeout=60)
    w.intact()


def test_pks_uaa_token_http_503(w):
    """UAA failing the token renewal a 401 asked for: the same."""
    mark = w.mark()
    w.fleet.pks.control("PUT", "/_sim/faults", {"path": "/oauth/token", "status": 503,
                                                "count": 2})
    w.fleet.pks.control("POST", "/_sim/expire-tokens")
    w.wait_log("watcherd", re.compile(r"pks: UAA token \(.*\): HTTP 503; keeping the routes "
                                      r"we have"), mark, timeout=60)
    w.intact()
    w.wait_log("watcherd", "pks: answering again", mark, timeout=60)
    w.intact()


def test_api_watch_error_event(make_fleet):
    """A watch ERROR event other than 410 Expired: that watch starts over,
    the cluster's routes go on. A fleet of its own: the ASan build of the
    watcherd before the fix died of it (a use-after-free of the reason),
    and must not take the module's fleet along."""
    need(*DAEMONS)
    fleet = make_fleet()
    solo = fleet.add_cluster("solo", [("db", "solo", [5432])],
                             [exposed("db", "solo", "db", 5432)])
    fleet.start()
    (port,) = fleet.wait_address(solo, "solo", "db")
    markers = solo.markers("solo", "db", 5432)
    fleet.wait_serves(port, markers)
    pid, mark = fleet["watcherd"].pid, len(fleet["watcherd"].log())
    try:
        solo.fault(kind="watch-error", count=1, path=VS_LIST, code=500,
                   reason="InternalError")
        solo.sim_control("POST", "close-watches")
        testlib.wait_until(lambda: fleet._check_alive() or
                           "solo: virtualservices: watch: server sent an ERROR event"
                           in fleet["watcherd"].log()[mark:], 60, "the ERROR event seen")
        fleet.wait_serves(port, markers)
        assert fleet["watcherd"].alive() and fleet["watcherd"].pid == pid
    finally:
        problems = fleet.stop()
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ files on disk

# (id, file name, contents, what watcherd says of it)
KUBECONFIGS = [
    ("garbage", "garbage.yaml", b"{{{ not: [yaml\n\t- :", "YAML syntax error at line 2"),
    ("empty", "empty.yaml", b"", "empty document"),
    ("binary", "binary.yaml", bytes(range(256)) * 16, "YAML syntax error at line 1"),
    ("huge", "huge.yaml", b"# " + b"x" * (2 << 20) + b"\n", "larger than 1048576 bytes"),
    ("json-array", "array.json", b"[1, 2, 3]", "no current-context"),
    ("no-clusters", "nocluster.yaml", b"apiVersion: v1\nkind: Config\nclusters: []\n",
     "no current-context"),
    ("yaml-bomb", "bomb.yaml", b"a: &a [x, x, x, x, x, x, x, x, x]\n" +
     b"".join(b"%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n"
              % ((ord("b") + i,) * 2 + (ord("a") + i,) * 9) for i in range(8)),
     "YAML aliases are not supported"),
]


@pytest.mark.parametrize("fname,data,reason", [k[1:] for k in KUBECONFIGS],
                         ids=[k[0] for k in KUBECONFIGS])
def test_kubeconfig_file(w, fname, data, reason):
    """A broken file in the kubeconfig folder: a line naming it, no
    cluster of that name, and the folder's other cluster untouched."""
    path = os.path.join(w.fleet.kubeconfig_dir, fname)
    mark = w.mark()
    with open(path, "wb") as f:
        f.write(data)
    try:
        line = w.wait_log("watcherd", "kubeconfigs: %s: " % fname, mark, timeout=30)
        assert line.endswith("kubeconfigs: %s: %s" % (fname, reason)), line
        name = fname.rsplit(".", 1)[0]
        assert "%s.%s" % (name, DOMAIN) not in w.fleet.proxy_cfg()
        w.intact()
    finally:
        os.unlink(path)


@pytest.mark.parametrize("what", ["dangling-symlink", "directory", "fifo"])
def test_kubeconfig_not_a_file(w, what):
    """An entry named like a kubeconfig that is no file to read: said so,
    never waited on (a FIFO would block a read forever)."""
    path = os.path.join(w.fleet.kubeconfig_dir, "odd-%s.yaml" % what)
    mark = w.mark()
    if what == "dangling-symlink":
        os.symlink(os.path.join(w.fleet.run_dir, "nothing-here"), path)
    elif what == "directory":
        os.mkdir(path)
    else:
        os.mkfifo(path)
    try:
        w.wait_log("watcherd", "kubeconfigs: odd-%s.yaml: not a regular file" % what, mark)
        w.intact()
    finally:
        os.rmdir(path) if what == "directory" else os.unlink(path)
