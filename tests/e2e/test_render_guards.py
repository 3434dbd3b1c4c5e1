"""What renderd and applyd let out, whatever allocd's decisions say.

- A route on a port the configuration does not give out (outside `ports`,
  reserved, the API port, port 0) and a cluster whose masters listen on
  port 0 are left out of every renderer's output and logged; the rest
  renders and passes the proxy's own checker. State files (renderd -T) for
  HAProxy, nginx and Envoy, and end to end through a real nginx fed by a
  stand-in allocd on the bus (FakeAlloc): nginx keeps reloading for the
  other routes.
- A table far larger than a message goes item by item, and renderd lives on.
- A run_dir HAProxy's map() cannot carry is a configuration error.
- HAProxy's and nginx's workers run as an unprivileged user ([proxy.NAME]
  user, by default Debian's `haproxy` / `www-data`): read from
  /proc/<worker>/status, while live changes (HAProxy's runtime API) and
  reloads go on working.
"""

import json
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

import harness
import testlib

E = testlib.events
from harness import EXPOSE, start_payments

C1 = "c1c0ffee-0000-4000-8000-000000000002"
C2 = "d2c0ffee-0000-4000-8000-000000000004"
LISTEN = "192.0.2.10"

CONF = """\
[portico]
domain = k8s.example.test
run_dir = {run_dir}
listen = {listen}
api_port = 443
ports = 21000-21009, 21417
reserved = 21008

[kubeconfigs]
dir = /etc/portico-golden/kubeconfigs

[proxy.edge]
kind = {kind}
"""


def ev(type, seq, **body):
    return {"type": type, "seq": seq, "time": 0, "body": body}


def api_set(seq, cluster, cname, mport, masters=("10.20.0.11",)):
    return ev("API_SET", seq, c=cluster, cn=cname, h="%s.k8s.example.test" % cname,
              m=list(masters), mp=mport)


def port_set(seq, port, name, backends=(("10.20.1.1", 31543, 1),), cluster=C1):
    return ev("PORT_SET", seq, p=port, c=cluster, ns="payments", n=name, r=0,
              b=[list(b) for b in backends])


# What no configuration above allows: outside ports, reserved, the API port, 0.
BAD_PORTS = {80: "outside", 21008: "reserved", 443: "api", 0: "zero", 65535: "top"}


def hostile_state():
    """Two good routes and one good cluster, each bad port a route, and a
    cluster whose masters listen on port 0."""
    evs = [api_set(1, C1, "payments", 8443), api_set(2, C2, "search", 0),
           port_set(3, 21002, "cache"), port_set(4, 21417, "orders-db")]
    for i, (p, name) in enumerate(sorted(BAD_PORTS.items())):
        evs.append(port_set(10 + i, p, "bad-" + name))
    return evs


def write_state(path, events):
    with open(path, "w") as f:
        f.write("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def render(tmp_path, kind, events, listen=LISTEN):
    """renderd -T with CONF for kind: (returncode, stdout text, stderr text)."""
    harness.need("renderd")
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    conf = tmp_path / ("%s.conf" % kind)
    conf.write_text(CONF.format(run_dir=run_dir, kind=kind, listen=listen))
    state = write_state(tmp_path / "state.in", events)
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", str(conf), "-p", "edge",
                         "-T", state], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=60)
    return cp.returncode, cp.stdout.decode(), cp.stderr.decode()


def assert_refusals_logged(err):
    for p, name in BAD_PORTS.items():
        assert re.search(r"route %s/payments/bad-%s/0 on port %d: not a workload "
                         r"port of the configuration; left out" % (C1, name, p), err), \
            (p, err)
    assert "cluster %s (search): master port 0; its API route is left out" % C2 in err, err


def checker(argv):
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return cp.returncode, cp.stdout.decode(errors="replace")


def test_haproxy_leaves_out_bad_ports_and_master_port_0(tmp_path):
    rc, out, err = render(tmp_path, "haproxy", hostile_state())
    assert rc == 0, err
    assert_refusals_logged(err)
    servers = re.findall(r"^\tserver \S+ (\S+)", out, re.M)
    assert "10.20.0.11:8443" in servers and "10.20.1.1:31543" in servers, servers
    assert not [s for s in servers if s.endswith(":0")], servers
    assert "search.k8s.example.test" not in out and C2 not in out
    for p in BAD_PORTS:
        assert "backend p%d\n" % p not in out, p
    # the two good routes, each in its backend; HAProxy accepts the whole
    assert re.search(r"backend p21002\n\t# %s/payments/cache route 0\n\tserver " % C1, out)
    assert re.search(r"backend p21417\n\t# %s/payments/orders-db route 0\n\tserver " % C1,
                     out)
    cfg = tmp_path / "edge.cfg"
    cfg.write_text(out)
    for m in ("ports", "api"):
        (tmp_path / "run" / ("edge-%s.map" % m)).write_text("")
    rc, msg = checker([shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f",
                       str(cfg)])
    assert rc == 0, msg


def test_nginx_leaves_out_bad_ports_and_master_port_0(tmp_path):
    # nginx -t binds: an address of the test's own
    listen = testlib.loopback_addr()
    rc, out, err = render(tmp_path, "nginx", hostile_state(), listen)
    assert rc == 0, err
    assert_refusals_logged(err)
    listens = sorted(int(p) for p in re.findall(r"listen %s:(\d+);" % listen, out))
    assert listens == [443, 21002, 21417], listens
    assert ":0;" not in out and "search.k8s.example.test" not in out and C2 not in out
    cfg = tmp_path / "nginx.conf"
    cfg.write_text(out)
    rc, msg = checker([shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-q",
                       "-p", str(tmp_path / "run"), "-c", str(cfg)])
    assert rc == 0, msg


def test_envoy_leaves_out_bad_ports_and_master_port_0(tmp_path):
    rc, out, err = render(tmp_path, "envoy", hostile_state())
    assert rc == 0, err
    assert_refusals_logged(err)
    docs = {}
    for m in re.finditer(r"^=== (\S+) (\d+)\n", out, re.M):
        docs[m.group(1)] = json.loads(out[m.end():m.end() + int(m.group(2))])
    listeners = docs["lds.json"]["resources"]
    ports = sorted(l["address"]["socket_address"]["port_value"] for l in listeners)
    assert ports == [443, 21002, 21417], ports
    clusters = sorted(c["name"] for c in docs["cds.json"]["resources"])
    assert clusters == ["p21002", "p21417", "sni-payments.k8s.example.test"], clusters
    assert '"port_value": 0' not in out and '"port_value":0' not in out


def test_master_port_0_withdraws_the_cluster_it_replaces(tmp_path):
    """A cluster first routed, then said to listen on port 0: its old masters
    are not kept (the event withdrew them), for every kind."""
    evs = [api_set(1, C1, "payments", 8443), port_set(2, 21002, "cache"),
           api_set(3, C1, "payments", 0)]
    for kind in ("haproxy", "nginx", "envoy"):
        rc, out, err = render(tmp_path, kind, evs)
        assert rc == 0, (kind, err)
        assert "payments.k8s.example.test" not in out and "8443" not in out, kind
        assert "master port 0" in err, (kind, err)
        assert "21002" in out, kind


# ------------------------------------------------------------ configuration

@pytest.mark.parametrize("daemon,args", [("allocd", []), ("renderd", ["-p", "edge"]),
                                         ("applyd", ["-p", "edge"])])
@pytest.mark.parametrize("run_dir", ["/tmp/portico,x", "/tmp/portico)x"])
def test_run_dir_haproxy_map_cannot_carry(tmp_path, daemon, args, run_dir):
    """`,` ends the file argument of HAProxy's map() converter (and `)` the
    converter): such a run_dir is a configuration error naming the key and
    its line, before anything is created."""
    harness.need(daemon)
    conf = tmp_path / "portico.conf"
    conf.write_text(CONF.format(run_dir=run_dir, kind="haproxy", listen=LISTEN))
    cp = subprocess.run([harness.daemon_path(daemon), "-n", "-f", str(conf)] + args,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        timeout=30)
    assert cp.returncode == 1 and cp.stdout == "", (cp.returncode, cp.stdout)
    assert "%s:3: run_dir: not an absolute path" % conf in cp.stderr, cp.stderr
    assert not os.path.exists(run_dir)


# ------------------------------------------------------------ end to end

class FakeAlloc:
    """allocd's side of the bus, with no allocd: a PUB (heartbeats) and a
    ROUTER that answers SINCE from a log the test writes, so renderd can be
    fed decisions allocd itself would never make. New records reach renderd
    the way a missed burst does: a heartbeat with a higher seq, a SINCE, one
    answer, then one render. One thread owns the sockets."""

    TYPES = testlib.events.CODES    # generated from common/event.h

    def __init__(self, run_dir):
        import msgpack
        import zmq
        self.msgpack, self.zmq = msgpack, zmq
        self.run_dir = run_dir
        self.log = []
        self.lock = threading.Lock()
        self.boot = random.randrange(1, 1 << 62)
        self.asked = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "FakeAlloc did not bind"

    def pack(self, type, seq, body):
        return self.msgpack.packb([testlib.events.VERSION, self.TYPES[type], seq, 0, body])

    def append(self, *events):
        """(type, body) records, numbered on from the last: renderd takes
        them all in one SINCE answer."""
        with self.lock:
            for type, body in events:
                self.log.append((len(self.log) + 1, type, body))
            return len(self.log)

    def _run(self):
        zmq = self.zmq
        ctx = zmq.Context()
        pub = ctx.socket(zmq.PUB)
        sync = ctx.socket(zmq.ROUTER)
        for s in (pub, sync):
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
        pub.bind("ipc://%s/alloc.pub" % self.run_dir)
        sync.bind("ipc://%s/alloc.sync" % self.run_dir)
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sync, zmq.POLLIN)
        next_hb = 0
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_hb:
                    with self.lock:
                        last = len(self.log)
                    pub.send(self.pack("HEARTBEAT", last, {"boot": self.boot}))
                    next_hb = now + 0.3
                if not poller.poll(100):
                    continue
                ident, raw = sync.recv_multipart()
                _, t, since, _, _ = self.msgpack.unpackb(raw, raw=False)
                if t != self.TYPES["SINCE"]:
                    continue
                self.asked += 1
                with self.lock:
                    records = [r for r in self.log if r[0] > since]
                    last = len(self.log)
                for seq, type, body in records:
                    sync.send_multipart([ident, self.pack(type, seq, body)])
                sync.send_multipart([ident, self.pack("SINCE_END", last, {})])
        finally:
            pub.close()
            sync.close()
            ctx.destroy(linger=0)

    def close(self):
        self._stop.set()
        self._thread.join(5)


def b_port_set(port, name, backends):
    return ("PORT_SET", {E.F_PORT: port, E.F_CLUSTER: C1, E.F_NS: "payments",
                         E.F_NAME: name, E.F_ROUTE: 0,
                         E.F_BACKENDS: [list(b) for b in backends]})


def b_port_free(port, name):
    return ("PORT_FREE", {E.F_PORT: port, E.F_CLUSTER: C1, E.F_NS: "payments",
                          E.F_NAME: name, E.F_ROUTE: 0})


def start_render_apply(fleet, **conf):
    """renderd and applyd for the fleet's one proxy, fed by a FakeAlloc;
    conf: sections for the configuration, as write_conf takes them."""
    fleet.write_conf(**conf)
    fake = FakeAlloc(fleet.run_dir)
    px = fleet.proxies[0].name
    for name in ("renderd", "applyd"):
        d = harness.Daemon(fleet, name, "%s-%s" % (name, px), ["-p", px])
        fleet.daemons[d.key] = d.start()
    return fake


def echo(marker):
    host = testlib.loopback_addr()
    return harness.EchoServer(host, testlib.free_port(host), marker)


def generations_published(fleet):
    return [int(g) for g in re.findall(r"renderd: generation (\d+): ",
                                       fleet["renderd"].log())]


@pytest.fixture
def fed(make_fleet):
    """Factory: fed(**Fleet kwargs) -> (fleet, fake, one, two): renderd and
    applyd of a fleet fed by a FakeAlloc, two echo workloads, and the
    first port routed to "one" and serving. Everything is closed after."""
    made = []

    def make(**kw):
        harness.need("renderd")
        harness.need("applyd")
        fleet = make_fleet(**kw)
        one, two = echo("one"), echo("two")
        made.extend([one, two])
        fake = start_render_apply(fleet)
        made.append(fake)
        fake.append(b_port_set(fleet.port_lo, "one", [(one.host, one.port, 1)]))
        fleet.wait_serves(fleet.port_lo, {"one"}, timeout=60)
        return fleet, fake, one, two
    yield make
    for x in made:
        x.close()


def test_nginx_keeps_reloading_past_a_bad_port(fed):
    """Decisions on port 0, the API port and a port outside the range reach
    renderd: nginx never sees them, a route added after them goes live, and
    the route before them keeps its traffic. (Before, nginx refused every
    configuration after the port-0 route: nothing changed again.)"""
    fleet, fake, one, two = fed(proxies=[("nginx", "nginx")], ports=8)
    lo = fleet.port_lo
    first = generations_published(fleet)[-1]
    bad = [0, fleet.api_port, fleet.port_hi + 1]
    fake.append(*[b_port_set(p, "bad-%d" % i, [(two.host, two.port, 1)])
                  for i, p in enumerate(bad)])
    seq = fake.append(b_port_set(lo + 1, "two", [(two.host, two.port, 1)]))
    fleet.wait_serves(lo + 1, {"two"}, timeout=60)
    testlib.wait_until(lambda: max(generations_published(fleet)) >= seq, 30,
                       "renderd publishing generation %d" % seq)
    assert fleet.marker(lo) == "one"
    assert harness.refused(fleet.listen, fleet.port_hi + 1)
    log = fleet["renderd"].log()
    for i, p in enumerate(bad):
        assert "route %s/payments/bad-%d/0 on port %d: not a workload port" % (
            C1, i, p) in log, (p, log[-3000:])
    assert re.search(r"generation %d: .*; 3 decisions left out so far" % seq, log)
    cfg = fleet.proxy_cfg()
    assert re.findall(r"listen [^;]*:(\d+);", cfg) == [
        str(fleet.api_port), str(lo), str(lo + 1)], cfg
    assert "cannot apply" not in fleet["applyd"].log()
    assert first < seq


def test_haproxy_master_port_0_cluster_is_left_out(fed):
    """A cluster said to listen on port 0 (HAProxy refuses a server with no
    port: every configuration after it failed) is left out; the cluster
    beside it and a route added after it are served by the real HAProxy."""
    fleet, fake, one, two = fed(ports=8)
    lo = fleet.port_lo
    seq = fake.append(
        ("API_SET", {"c": C2, "cn": "search", "h": "search.k8s.example.test",
                     "m": ["10.99.0.1"], "mp": 0}),
        ("API_SET", {"c": C1, "cn": "payments", "h": "payments.k8s.example.test",
                     "m": [one.host], "mp": one.port}),
        b_port_set(lo + 1, "two", [(two.host, two.port, 1)]))
    fleet.wait_serves(lo + 1, {"two"}, timeout=60)
    testlib.wait_until(lambda: max(generations_published(fleet)) >= seq, 30,
                       "renderd publishing generation %d" % seq)
    # the files follow the runtime API after a quiet moment (applyd.c,
    # SYNC_QUIET_MS): on disk soon after the generation is served
    testlib.wait_until(lambda: "serving generation %d " % seq in fleet["applyd"].log(),
                       30, "applyd serving generation %d" % seq)
    cfg = testlib.wait_until(lambda: (lambda c: c if "# sni payments.k8s.example.test\n"
                                      in c else None)(fleet.proxy_cfg()),
                             30, "the served generation on disk")
    assert "search.k8s.example.test" not in cfg and ":0 " not in cfg
    assert "cluster %s (search): master port 0" % C2 in fleet["renderd"].log()
    assert "cannot apply" not in fleet["applyd"].log()
    assert fleet.marker(lo) == "one"


def big_backends(port_index):
    """1,024 backends of long IPv6 addresses: one route's worth of a
    cluster of 1,024 nodes."""
    return [("fd00:aaaa:bbbb:cccc:dddd:eeee:%04x:%04x" % (port_index, j), 30000 + j % 1000, 1)
            for j in range(1024)]


def test_big_table_goes_in_items_and_a_reload(fed):
    """A change far larger than the runtime API should take (24 routes of
    1,024 backends: more than 20,000 server changes for one cluster) used
    to be one multi-megabyte configuration event. Now each route is one
    item on the bus, bounded by the event limits, renderd lives, and
    applyd takes the change by one reload (not 24,000 runtime commands);
    the route served before keeps serving, and shrinking works as well."""
    nbig = 24
    fleet, fake, one, two = fed(ports=nbig + 4)
    lo = fleet.port_lo
    rd, ad = fleet["renderd"], fleet["applyd"]
    big = [lo + 2 + i for i in range(nbig)]
    before = ad.log().count("(reloaded)")
    seq = fake.append(*[b_port_set(p, "big-%d" % i, big_backends(i))
                        for i, p in enumerate(big)])
    testlib.wait_until(lambda: "serving generation %d (reloaded)" % seq in ad.log()
                       or fleet._check_alive(), 180, "the big routes served by a reload")
    assert set(big) <= set(fleet.routed_ports())
    assert max(generations_published(fleet)) == seq
    assert ad.log().count("(reloaded)") > before
    assert fleet.marker(lo) == "one"
    # shrink: every big route goes, a new one comes
    fits = fake.append(*[b_port_free(p, "big-%d" % i) for i, p in enumerate(big)],
                       b_port_set(lo + 1, "two", [(two.host, two.port, 1)]))
    fleet.wait_serves(lo + 1, {"two"}, timeout=120)
    testlib.wait_until(lambda: not set(big) & set(fleet.routed_ports()) or
                       fleet._check_alive(), 120, "the big routes gone")
    assert generations_published(fleet)[-1] == fits
    assert fleet.marker(lo) == "one"
    assert rd.alive() and rd.exits == []


def proc_ids(pid):
    """{"Uid": [real, effective, saved, fs], "Gid": [...], "Groups": [...]}."""
    out = {}
    for line in harness._read("/proc/%d/status" % pid).splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            out[key] = [int(x) for x in rest.split()]
    return out


def workers(fleet, kind):
    """The proxy's master and its live workers (its children running it)."""
    master = fleet.proxy_master()
    assert master, "no %s master" % kind
    kids = [p for p in harness._children(master) if harness._comm(p) == kind]
    return master, kids


def assert_unprivileged(fleet, kind, user):
    """Every worker runs as user and its primary group alone, on all four
    ids; the master keeps root. Returns the workers' PIDs."""
    pw = pwd.getpwnam(user)
    assert pw.pw_uid != 0 and pw.pw_gid != 0, user
    master, kids = [], []

    def found():
        nonlocal master, kids
        master, kids = workers(fleet, kind)
        return kids
    testlib.wait_until(found, 30, "%s workers" % kind)
    assert proc_ids(master)["Uid"][1] == 0, "the master must keep root for binds"
    for pid in kids:
        ids = proc_ids(pid)
        if not ids:
            continue        # an old worker that just exited
        assert ids["Uid"] == [pw.pw_uid] * 4, (pid, user, ids)
        assert ids["Gid"] == [pw.pw_gid] * 4, (pid, user, ids)
        assert 0 not in ids["Groups"], (pid, ids)
    return kids


def test_haproxy_workers_are_unprivileged(make_fleet):
    """The default fleet (no user configured): HAProxy's workers run as
    Debian's haproxy user, traffic flows, and a route added afterwards goes
    live through the runtime API (the stats socket the master bound as
    root), with no reload."""
    fleet, pay = start_payments(make_fleet)
    assert "\tuser haproxy\n\tgroup " in fleet.proxy_cfg()
    pay.annotate("payments", "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, "payments", "ledger-db")
    fleet.wait_serves(ledger, pay.markers("payments", "ledger-db", 5432))
    assert_unprivileged(fleet, "haproxy", "haproxy")
    reloads = fleet.haproxy_reloads()
    pay.annotate("payments", "orders-db", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, "payments", "orders-db")
    fleet.wait_serves(orders, pay.markers("payments", "orders-db", 5432) |
                      pay.markers("payments", "orders-db-canary", 5432))
    assert fleet.haproxy_reloads() == reloads, "the change was not live"
    assert_unprivileged(fleet, "haproxy", "haproxy")


def test_haproxy_reload_keeps_workers_unprivileged(fed):
    """A reload (the API slot pool growing past 16: 9 clusters) starts new
    workers as the unprivileged user too, and the runtime API still changes
    routes live after it."""
    fleet, fake, one, two = fed(ports=8)
    lo = fleet.port_lo
    before = set(assert_unprivileged(fleet, "haproxy", "haproxy"))
    reloads = fleet.haproxy_reloads()
    fake.append(*[("API_SET", {"c": "%08x-0000-4000-8000-000000000001" % i,
                               "cn": "c%d" % i, "h": "c%d.k8s.example.test" % i,
                               "m": ["10.99.0.%d" % (i + 1)], "mp": 6443})
                  for i in range(9)])
    testlib.wait_until(lambda: (fleet.haproxy_reloads() or 0) > reloads, 60,
                       "HAProxy reloading for the larger pool")
    assert "backend api31\n" in fleet.proxy_cfg()
    after = set(assert_unprivileged(fleet, "haproxy", "haproxy"))
    assert after - before, "no new worker after the reload"
    assert fleet.marker(lo) == "one"
    reloads = fleet.haproxy_reloads()
    fake.append(b_port_set(lo + 1, "two", [(two.host, two.port, 1)]))
    fleet.wait_serves(lo + 1, {"two"}, timeout=60)
    assert fleet.haproxy_reloads() == reloads, "the change was not live"


def test_nginx_workers_are_unprivileged(fed):
    """nginx's worker runs as www-data (Debian's nginx user), before and
    after a reload, and the reload serves the new route."""
    fleet, fake, one, two = fed(proxies=[("nginx", "nginx")], ports=8)
    lo = fleet.port_lo
    assert "\nuser www-data " in fleet.proxy_cfg()
    before = set(assert_unprivileged(fleet, "nginx", "www-data"))
    fake.append(b_port_set(lo + 1, "two", [(two.host, two.port, 1)]))
    fleet.wait_serves(lo + 1, {"two"}, timeout=60)
    testlib.wait_until(lambda: set(workers(fleet, "nginx")[1]) - before, 30,
                       "a new nginx worker after the reload")
    assert_unprivileged(fleet, "nginx", "www-data")
    assert fleet.marker(lo) == "one"


def test_worker_user_config(tmp_path):
    """-n shows the user each kind's workers get; one that does not exist,
    or a name a proxy config cannot carry, is an error naming the key."""
    harness.need("renderd")
    conf = tmp_path / "portico.conf"

    def check(proxies):
        conf.write_text(CONF.format(run_dir=tmp_path / "run", kind="haproxy",
                                    listen=LISTEN) + proxies)
        return subprocess.run([harness.daemon_path("renderd"), "-n", "-f", str(conf),
                               "-p", "edge"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=30)

    cp = check("\n[proxy.ngx]\nkind = nginx\n[proxy.env]\nkind = envoy\n"
               "[proxy.own]\nkind = haproxy\nuser = nobody\n"
               "[proxy.root]\nkind = haproxy\nuser =\n")
    assert cp.returncode == 0, cp.stderr
    users = dict(re.findall(r"\[proxy\.(\w+)\]\n(?:.*\n)*?user = (.*)\n", cp.stdout))
    assert users == {"edge": "haproxy", "ngx": "www-data", "env": "", "own": "nobody",
                     "root": ""}, users
    cp = check("\n[proxy.bad]\nuser = no-such-user-here\n")
    assert cp.returncode == 1 and cp.stdout == ""
    assert "[proxy.bad] user: no such user: no-such-user-here" in cp.stderr, cp.stderr
    cp = check("\n[proxy.bad]\nuser = www-data;x\n")
    assert cp.returncode == 1 and ":16: user: not a user name" in cp.stderr, cp.stderr


def test_no_default_worker_user_when_not_root():
    """A master that is not root cannot change user (HAProxy would not
    start), so portico run as another user gives the workers none by
    default; an explicit one is still printed."""
    harness.need("renderd")
    d = tempfile.mkdtemp(prefix="pt-user-", dir="/tmp")
    try:
        os.chmod(d, 0o755)
        conf = os.path.join(d, "portico.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(run_dir=d + "/run", kind="haproxy", listen=LISTEN) +
                    "\n[proxy.ngx]\nkind = nginx\n[proxy.own]\nuser = nobody\n")
        os.chmod(conf, 0o644)
        cp = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                             "--clear-groups", harness.daemon_path("renderd"), "-n",
                             "-f", conf, "-p", "edge"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, timeout=30)
        assert cp.returncode == 0, cp.stderr
        users = dict(re.findall(r"\[proxy\.(\w+)\]\n(?:.*\n)*?user = (.*)\n", cp.stdout))
        assert users == {"edge": "", "ngx": "", "own": "nobody"}, users
    finally:
        shutil.rmtree(d, ignore_errors=True)
