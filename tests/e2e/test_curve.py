"""An authenticated bus: every endpoint on tcp:// with CURVE keys.

A fleet whose bus runs over tcp:// on loopback, with a key pair per role
made by `porticoctl keygen`, routes as one on ipc:// does.  Each server
socket admits only the roles that may speak on it: a client with a key of
its own, without CURVE, or with the key of a role that may not write
there (renderd's, porticoctl's on allocd's input) is refused by ZAP before
any message is read; nothing it sends reaches the log, and the refusal is
logged and counted (bus_refused).  A fake renderd, which cannot hold
renderd's secret key, feeds applyd nothing.  porticoctl reads allocd's and
renderd's SINCE with its own key.  A tcp:// endpoint without keys, or a
key file others may read, is refused by the configuration check.  A
message larger than any event is dropped by libzmq (ZMQ_MAXMSGSIZE) and
allocd goes on deciding.
"""

import json
import os
import subprocess
import time
import urllib.request

import pytest

import harness
import testlib
from harness import ADDRESS, EXPOSE, need, payments_cluster

zmq = pytest.importorskip("zmq")
msgpack = pytest.importorskip("msgpack")

E = testlib.events
NS = "payments"
ROLES = ("allocd", "watcherd", "renderd", "applyd", "porticoctl")
EVIL_UUID = "0badc0de-0000-4000-8000-0000000e7117"


def ctl(fleet, *args, check=True):
    p = subprocess.run([harness.daemon_path("porticoctl"), "-f", fleet.conf_path]
                       + list(args), capture_output=True, text=True, timeout=60)
    if check:
        assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def make_keys(dir):
    os.makedirs(dir, mode=0o700, exist_ok=True)
    for role in ROLES:
        p = subprocess.run([harness.daemon_path("porticoctl"), "keygen", role, dir],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
    return dir


def read_pair(dir, role):
    """(public, secret) of DIR/role.key, as bytes of Z85."""
    kv = {}
    with open(os.path.join(dir, role + ".key")) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                kv[k.strip()] = v.strip().encode()
    return kv["public"], kv["secret"]


def tcp_bus(fleet, keys):
    """[bus] and [proxy.haproxy] endpoints on tcp:// at one loopback address."""
    addr = testlib.loopback_addr()
    ports = set()
    while len(ports) < 5:
        ports.add(testlib.free_port(addr))
    p = sorted(ports)
    ep = ["tcp://%s:%d" % (addr, n) for n in p]
    fleet.bus = {"alloc_in": ep[0], "alloc_pub": ep[1], "alloc_sync": ep[2],
                 "render_pub": ep[3], "render_sync": ep[4]}
    extra = {"bus": {"alloc_in": ep[0], "alloc_pub": ep[1], "alloc_sync": ep[2]},
             "proxy." + harness.HAPROXY_NAME: {"pub": ep[3], "sync": ep[4]}}
    if keys is not None:
        extra["bus"]["keys"] = keys
    return extra


def start_curve(make_fleet, metrics=False):
    need("allocd", "renderd", "applyd", "watcherd", "porticoctl")
    fleet = make_fleet()
    pay = payments_cluster(fleet)
    keys = make_keys(os.path.join(fleet.run_dir, "keys"))
    extra = tcp_bus(fleet, keys)
    if metrics:
        fleet.metrics_port = testlib.free_port(fleet.listen)
        extra["metrics"] = {"allocd": "%s:%d" % (fleet.listen, fleet.metrics_port)}
    fleet.write_conf(**extra)
    fleet.start_daemons()
    fleet.keys = keys
    return fleet, pay


def counters(fleet, name):
    p = ctl(fleet, "-j", "status", check=False)
    st = json.loads(p.stdout)
    return {d["name"]: d for d in st["daemons"]}[name]["counters"]


def refused(fleet, name="allocd"):
    return counters(fleet, name).get("bus_refused", 0)


def observation_cluster_up(cname):
    body = {E.F_CLUSTER: EVIL_UUID, E.F_CNAME: cname,
            E.F_HOST: "%s.%s" % (cname, harness.DOMAIN),
            E.F_MASTERS: ["10.9.9.9"], E.F_MPORT: 8443}
    return msgpack.packb([E.VERSION, E.EV_CLUSTER_UP, 1, int(time.time() * 1000), body],
                         use_bin_type=True)


def client(ctx, endpoint, server_pub=None, pair=None, kind=None):
    """A DEALER (or kind) to endpoint: CURVE with pair against server_pub,
    or plain NULL when pair is None."""
    s = ctx.socket(kind or zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if pair is not None:
        s.curve_serverkey = server_pub
        s.curve_publickey, s.curve_secretkey = pair
    s.connect(endpoint)
    return s


def server_pub(fleet, role):
    with open(os.path.join(fleet.keys, role + ".pub")) as f:
        return f.readline().strip().encode()


def log_mentions(fleet, text):
    return text in ctl(fleet, "log", "dump").stdout


def settled_log(fleet):
    """allocd's log once the fleet has stopped adding to it (the write-back
    of an address comes back as one more observation)."""
    last = [None]

    def same():
        now = ctl(fleet, "log", "dump").stdout
        if now == last[0]:
            return now
        last[0] = now
        time.sleep(1)
        return None
    return testlib.wait_until(same, 60, "allocd's log to settle")


def test_fleet_on_tcp_with_curve_routes(make_fleet):
    """kubectl through the SNI port; annotate -> address -> TCP."""
    fleet, pay = start_curve(make_fleet, metrics=True)
    out = pay.kubectl_via_portico("get", "virtualservices", "-A", "-o", "name").stdout
    assert "virtualservice.networking.istio.io/ledger-db" in out, out
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db", timeout=60)
    assert pay.annotations(NS, "ledger-db")[ADDRESS] == "%s:%d" % (pay.host, port)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    # every daemon spoke CURVE: nobody was refused, and it says so
    assert refused(fleet) == 0
    assert refused(fleet, "renderd-" + harness.HAPROXY_NAME) == 0
    body = urllib.request.urlopen("http://%s:%d/metrics" % (
        fleet.listen, fleet.metrics_port), timeout=10).read().decode()
    assert 'portico_loop_counter_total{name="bus_refused"} 0' in body, body

    # porticoctl reads allocd's SINCE, and renderd's, with its own key
    lines = [json.loads(l) for l in ctl(fleet, "bus", "since").stdout.splitlines()]
    assert lines[-1]["type"] == "SINCE_END", lines[-3:]
    assert any(l["type"] == "PORT_SET" and l["body"].get("p") == port for l in lines), lines
    lines = [json.loads(l) for l in ctl(fleet, "bus", "since", "--proxy",
                                        harness.HAPROXY_NAME).stdout.splitlines()]
    assert any(l["type"] == "RT_PORT" and l["body"].get("p") == port for l in lines), lines
    assert any(l["type"] == "RT_API" for l in lines), lines


def test_strangers_are_refused_before_a_message_is_read(make_fleet):
    fleet, pay = start_curve(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    fleet.wait_address(pay, NS, "ledger-db", timeout=60)
    allocd = fleet["allocd"]
    alloc_key = server_pub(fleet, "allocd")
    before = settled_log(fleet)
    n0 = refused(fleet)

    ctx = zmq.Context()
    socks = []
    try:
        # a key of its own, plain NULL, renderd's and porticoctl's keys:
        # none may write to allocd's input
        cases = [("stranger", zmq.curve_keypair()), ("null", None),
                 ("renderd", read_pair(fleet.keys, "renderd")),
                 ("porticoctl", read_pair(fleet.keys, "porticoctl"))]
        for name, pair in cases:
            s = client(ctx, fleet.bus["alloc_in"], alloc_key, pair)
            socks.append(s)
            s.send(observation_cluster_up("evil-" + name), zmq.NOBLOCK)
        testlib.wait_until(lambda: refused(fleet) >= n0 + len(cases), 30,
                           "allocd to count %d refusals" % len(cases))
        # and a stranger cannot read the state either
        s = client(ctx, fleet.bus["alloc_sync"], alloc_key, zmq.curve_keypair())
        socks.append(s)
        s.send(msgpack.packb([E.VERSION, E.EV_SINCE, 0, 0, {}]), zmq.NOBLOCK)
        testlib.wait_until(lambda: refused(fleet) >= n0 + len(cases) + 1, 30,
                           "allocd to refuse a stranger on its SINCE")
        assert not s.poll(1000, zmq.POLLIN), "a stranger got an answer to SINCE"
    finally:
        for s in socks:
            s.close()

    log = allocd.log()
    assert "bus: alloc_in/tcp" not in log     # the door is named, not the domain
    assert "bus: alloc_in: refused" in log, log
    assert "is not listed for watcherd applyd" in log, log
    # the mismatch is seen on both sides: whichever hangs up first
    assert "a client without CURVE" in log or "one without CURVE?" in log, log
    assert "bus: alloc_feed: refused" in log, log
    # the first characters of a refused key, never a secret
    rpub, rsec = read_pair(fleet.keys, "renderd")
    assert "key %s..." % rpub[:8].decode() in log, log
    for role in ROLES:
        assert read_pair(fleet.keys, role)[1].decode() not in log
    for name in ("stranger", "null", "renderd", "porticoctl"):
        assert "evil-" + name not in allocd.log()
    # nothing reached the store: the log as it was, but for what the
    # fleet itself did meanwhile (nothing: no object changed)
    after = ctl(fleet, "log", "dump").stdout
    assert "evil" not in after and EVIL_UUID not in after
    assert after == before

    # the same message with watcherd's key is read: the refusals were the keys
    try:
        s = client(ctx, fleet.bus["alloc_in"], alloc_key, read_pair(fleet.keys, "watcherd"))
        s.send(observation_cluster_up("evil-control"))
        testlib.wait_until(lambda: log_mentions(fleet, "evil-control"), 30,
                           "the control observation in the log")
        s.close()
    finally:
        ctx.destroy(linger=0)


def test_fake_renderd_feeds_applyd_nothing(make_fleet):
    """A renderd without renderd's secret key, on renderd's endpoints."""
    fleet, pay = start_curve(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db", timeout=60)
    cfg = fleet.proxy_cfg()
    assert "p%d" % port in cfg
    applyd = fleet["applyd"]
    served = applyd.log().count("serving generation")
    fleet["renderd"].stop()

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    sync = ctx.socket(zmq.ROUTER)
    monitors = []
    try:
        fpub, fsec = zmq.curve_keypair()
        for s, ep in ((pub, fleet.bus["render_pub"]), (sync, fleet.bus["render_sync"])):
            s.setsockopt(zmq.LINGER, 0)
            s.curve_server = True
            s.curve_publickey, s.curve_secretkey = fpub, fsec
            monitors.append(s.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL))
            s.bind(ep)
        # what it would say: a table without the route, a new generation
        gen = 10 ** 9
        heartbeat = msgpack.packb([E.VERSION, E.EV_HEARTBEAT, gen, 0, {E.F_BOOT: 7}])
        state = msgpack.packb([E.VERSION, E.EV_STATE, gen, 0, {E.F_GEN: gen}])
        end = msgpack.packb([E.VERSION, E.EV_SINCE_END, gen, 0, {}])
        failed = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and failed < 3:
            pub.send(heartbeat)
            if sync.poll(100, zmq.POLLIN):
                ident = sync.recv_multipart()[0]
                sync.send_multipart([ident, state])
                sync.send_multipart([ident, end])
            for m in monitors:
                while m.poll(0, zmq.POLLIN):
                    m.recv_multipart()
                    failed += 1
        # applyd knocked, and could not get in: it does not know this key
        assert failed >= 3, "applyd never tried the fake renderd"
        assert not sync.poll(0, zmq.POLLIN)
    finally:
        for m in monitors:
            m.close()
        pub.close()
        sync.close()
        ctx.destroy(linger=0)
    assert applyd.alive()
    assert applyd.log().count("serving generation") == served, applyd.log()
    assert fleet.proxy_cfg() == cfg
    assert fleet.marker(port) in pay.markers(NS, "ledger-db", 5432)


def test_tcp_without_keys_is_a_configuration_error(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd", "porticoctl")
    fleet = make_fleet()
    fleet.write_conf(**tcp_bus(fleet, None))
    for d in ("allocd", "watcherd", "renderd", "applyd"):
        p = subprocess.run([harness.daemon_path(d), "-n", "-f", fleet.conf_path],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1, (d, p.stdout)
        assert "[bus] alloc_in: %s is tcp:// but [bus] keys is not set" % (
            fleet.bus["alloc_in"]) in p.stderr, (d, p.stderr)

    # keys, but one readable by others: the daemon of that role refuses
    keys = make_keys(os.path.join(fleet.run_dir, "keys"))
    fleet.write_conf(**tcp_bus(fleet, keys))
    os.chmod(os.path.join(keys, "renderd.key"), 0o644)
    p = subprocess.run([harness.daemon_path("renderd"), "-n", "-f", fleet.conf_path],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "gives group or others access" in p.stderr, p.stderr
    # ...the others read only their own
    p = subprocess.run([harness.daemon_path("allocd"), "-n", "-f", fleet.conf_path],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    # a server's own key must be the first of its .pub: its clients take it
    with open(os.path.join(keys, "allocd.pub")) as f:
        mine = f.read()
    with open(os.path.join(keys, "allocd.pub"), "w") as f:
        f.write(zmq.curve_keypair()[0].decode() + "\n" + mine)
    p = subprocess.run([harness.daemon_path("allocd"), "-n", "-f", fleet.conf_path],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "allocd.pub: ours is not the first" in p.stderr, p.stderr
    # a server's .pub without a key: its clients cannot know it
    with open(os.path.join(keys, "allocd.pub"), "w") as f:
        f.write("# emptied\n")
    p = subprocess.run([harness.daemon_path("watcherd"), "-n", "-f", fleet.conf_path],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "allocd.pub: no key" in p.stderr, p.stderr


def test_oversized_message_is_dropped_by_libzmq(make_fleet):
    fleet, pay = start_curve(make_fleet)
    allocd = fleet["allocd"]
    pid = allocd.pid
    ctx = zmq.Context()
    try:
        # with a key allocd admits: past ZAP, stopped by ZMQ_MAXMSGSIZE
        s = client(ctx, fleet.bus["alloc_in"], server_pub(fleet, "allocd"),
                   read_pair(fleet.keys, "watcherd"))
        big = observation_cluster_up("evil-big")[:-1] + b"\x00" * (200 << 10)
        s.send(big)
        s.close()
    finally:
        ctx.destroy(linger=0)
    # allocd goes on deciding
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db", timeout=60)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    assert allocd.alive() and allocd.pid == pid
    # libzmq dropped it before a byte was decoded
    assert "bus: dropped a %d-byte" % len(big) not in allocd.log()
    assert not log_mentions(fleet, "evil-big")


NOBODY_CLIENT = r"""
import sys, time, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(sys.argv[1])
s.send(bytes.fromhex(sys.argv[2]))
time.sleep(float(sys.argv[3]))
s.close()
ctx.term()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: setpriv")
def test_ipc_peer_of_another_uid_is_refused(make_fleet):
    """On ipc://, ZAP sees the peer's uid (SO_PEERCRED, through libzmq):
    with the run folder and the socket opened to everyone, a process of
    another uid still cannot speak to allocd."""
    fleet, pay = harness.start_payments(make_fleet)
    fleet.wait_api(pay.host)
    sock = os.path.join(fleet.run_dir, "alloc.in")
    n0 = refused(fleet)
    os.chmod(fleet.run_dir, 0o711)
    os.chmod(sock, 0o777)
    try:
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                            "--clear-groups", "/usr/bin/python3", "-c", NOBODY_CLIENT,
                            "ipc://" + sock, observation_cluster_up("evil-nobody").hex(),
                            "3"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
    finally:
        os.chmod(sock, 0o755)
        os.chmod(fleet.run_dir, 0o700)
    testlib.wait_until(lambda: refused(fleet) > n0, 30, "allocd to count the refusal")
    assert "bus: alloc_in: refused" in fleet["allocd"].log()
    assert "uid 65534 is neither ours nor root's" in fleet["allocd"].log()
    assert not log_mentions(fleet, "evil-nobody")
