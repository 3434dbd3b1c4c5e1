"""Several renderd at once, each catching up from allocd by itself.

A fleet of two HAProxy (each on a loopback address of its own) and one
nginx, each proxy with its own renderd and applyd. The configurations are
read three ways: what each proxy serves (fleet.proxy_cfg), `renderd -T` of
the route table each renderd answers a SINCE with on its sync socket (what
its applyd renders), and what `renderd -T` makes of allocd's own log (asked
for with SINCE 0 on allocd's sync socket) up to the table's generation. renderd is a pure function of
the state: the two HAProxy configurations differ only where they name the
proxy itself, and a renderd that starts late, or is SIGKILLed and
restarted while routes change, renders what one running all along did."""

import json
import os
import re
import socket
import ssl
import subprocess
import time

import msgpack
import zmq

import harness
import testlib
from harness import ADDRESS, EXPOSE, dest, need

NS = "payments"
HA1, HA2, NGX = "ha1", "ha2", "ngx"
# allocd's decisions that change a route table (renderd/routes.c)
ROUTE_TYPES = ("API_SET", "API_DEL", "PORT_SET", "PORT_FREE")
# the event types by wire code (common/event.h)
E = testlib.events
TYPES = E.TYPES


# ------------------------------------------------------------------ the bus

def ask_since(endpoint, since=0, timeout=10, state=False):
    """SINCE since on a producer's ROUTER: (events, SINCE_END's seq). Each
    event is {"type", "seq", "time", "body"}, the shape of renderd -T's
    state lines. allocd answers at most 50,000 records at a time: ask on
    until the answers reach SINCE_END's seq. With state, a compacted log's
    answer (STATE, then the state's events) is taken too."""
    ctx = zmq.Context()
    events, end = [], None
    try:
        while True:
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            s.send(msgpack.packb([E.VERSION, E.EV_SINCE, since, int(time.time() * 1000), {}]))
            got = []
            while True:
                assert s.poll(timeout * 1000), "no answer to SINCE %d on %s" % (
                    since, endpoint)
                v, t, seq, tm, body = msgpack.unpackb(s.recv(), raw=False)
                assert v == 1, v
                name = TYPES.get(t, t)
                if name == "STATE":
                    assert state, "%s: the log was compacted" % endpoint
                    got.append({"type": name, "seq": seq, "time": tm, "body": body or {}})
                    continue
                if name == "SINCE_END":
                    end = seq
                    break
                got.append({"type": name, "seq": seq, "time": tm, "body": body or {}})
            s.close()
            events += got
            if not got or got[0]["type"] == "STATE" or got[-1]["seq"] >= end:
                return events, end
            assert got[-1]["seq"] > since, (since, got[-1])
            since = got[-1]["seq"]
    finally:
        ctx.destroy(linger=0)


def alloc_log(fleet):
    """allocd's whole log, in order, with no gap."""
    events, end = ask_since("ipc://%s/alloc.sync" % fleet.run_dir)
    assert [e["seq"] for e in events] == list(range(1, end + 1)), \
        "allocd's log is not 1..%d" % end
    return events


def last_route_seq(log):
    return max([e["seq"] for e in log if e["type"] in ROUTE_TYPES] or [0])


def latest_config(fleet, name):
    """The route table renderd NAME answers a SINCE with, rendered by
    renderd -T (as its applyd renders it): (generation, text as bytes), or
    None before its first."""
    events, end = ask_since("ipc://%s/render-%s.sync" % (fleet.run_dir, name),
                            state=True)
    if not events:
        return None
    assert events[0]["type"] == "STATE" and events[0]["seq"] == end, events[:1]
    items = events[1:]
    assert all(e["type"].startswith("RT_") and e["seq"] == end for e in items)
    state = [dict(e, seq=i + 1) for i, e in enumerate(items)]
    return end, render_state(fleet, name, state, len(state), types=None)


def generations(fleet, key, since=0):
    """The generations renderd (fleet[key]) logged it published, from
    offset since of its log on."""
    return [int(g) for g in re.findall(r"renderd: generation (\d+):",
                                       fleet[key].log()[since:])]


def render_state(fleet, name, log, upto, types=ROUTE_TYPES):
    """renderd -T -p NAME of allocd's log up to seq upto: what any renderd
    must publish for that state (types: the events taken, None for all)."""
    path = os.path.join(fleet.run_dir, "state-%s-%d.jsonl" % (name, upto))
    with open(path, "w") as f:
        for e in log:
            if e["seq"] <= upto and (types is None or e["type"] in types):
                f.write(json.dumps(e) + "\n")
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", fleet.conf_path,
                         "-p", name, "-T", path], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, env=fleet.env(), timeout=30)
    assert cp.returncode == 0 and cp.stderr == b"", cp.stderr.decode(errors="replace")
    return cp.stdout


def normalised(fleet, name, text):
    """An HAProxy configuration with what names the proxy itself (its
    listen address on the bind lines, its socket and map paths) replaced,
    so that two proxies' configurations compare byte for byte. Checks that
    each was there to replace."""
    px = fleet.proxy(name)
    listen = fleet.proxy_listen(px).encode()
    own = ("%s/%s" % (fleet.run_dir, name)).encode()
    text, nbind = re.subn(rb"^\tbind " + re.escape(listen) + rb":", b"\tbind LISTEN:",
                          text, flags=re.M)
    text, npath = re.subn(re.escape(own) + rb"([.-])", rb"RUN/PROXY\1", text)
    # the API's bind, the workload ports' (one range); the stats socket,
    # the API map twice, the ports map twice
    assert nbind >= 2 and npath == 5, (name, nbind, npath)
    assert listen not in text and own not in text, name
    return text


def blocks(text):
    """An HAProxy configuration as {first line: section}, sections split at
    blank lines."""
    out = {}
    for part in text.split(b"\n\n"):
        head = part.split(b"\n", 1)[0]
        assert head not in out, head
        out[head] = part
    return out


# ------------------------------------------------------------------ the fleet

def make_three(make_fleet):
    """ha1 on the fleet's address, ha2 and ngx on addresses of their own;
    the payments cluster registered, search not yet."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(proxies=[(HA1, "haproxy"),
                                (HA2, "haproxy", testlib.loopback_addr()),
                                (NGX, "nginx", testlib.loopback_addr())])
    pay = harness.payments_cluster(fleet)
    search = harness.search_cluster(fleet, register=False)
    return fleet, pay, search


def renderd_key(fleet, name):
    return "renderd" if fleet.proxies[0].name == name else "renderd-" + name


def start(fleet, late=(), **conf):
    """fleet.start(), except that the renderd of the proxies named in late
    are not started (fleet[key].start() starts them later); waits for the
    other proxies to listen. conf: more of portico.conf, as write_conf's."""
    fleet.write_conf(**conf)
    specs = [("allocd", "allocd", [], None)]
    for i, px in enumerate(fleet.proxies):
        for d in ("renderd", "applyd"):
            specs.append((d, "%s-%s" % (d, px.name), ["-p", px.name],
                          d if i == 0 else "%s-%s" % (d, px.name)))
    specs.append(("watcherd", "watcherd", [], None))
    for name, pidname, args, key in specs:
        d = harness.Daemon(fleet, name, pidname, args, key)
        fleet.daemons[d.key] = d
        if not (name == "renderd" and args[1] in late):
            d.start()
    for px in fleet.proxies:
        if px.name not in late:
            addr = fleet.proxy_listen(px)
            testlib.wait_until(lambda: not harness.refused(addr, fleet.api_port)
                               or fleet._check_alive(), 30,
                               "%s listening on %s" % (px.name, addr))


def listens(fleet, names=None):
    return [(px.name, fleet.proxy_listen(px)) for px in fleet.proxies
            if names is None or px.name in names]


def serves(fleet, addr, port, expect):
    """A connection to addr:port now reaches one of the markers in expect."""
    try:
        return harness.read_marker(addr, port, 2) in expect
    except OSError:
        return False


def check_alive(fleet, down=()):
    """fleet._check_alive(), but for the daemons (keys) in down, which the
    test took down itself. Always False."""
    for key, d in fleet.daemons.items():
        if key not in down and d.proc is not None and not d.alive():
            raise AssertionError("%s died (rc %s):\n%s" % (
                key, d.proc.popen.returncode, harness.tail(d.log(), 60)))
    return False


def wait_routes(fleet, routes, gone=(), names=None, timeout=30, down=()):
    """Every proxy (of names) serves every port of routes {port: markers}
    (a few connections each, so as to see every node), steadily, and
    refuses every port of gone. down: as check_alive's."""
    for name, addr in listens(fleet, names):
        for port, expect in sorted(routes.items()):
            testlib.wait_until(harness.steady(
                lambda: serves(fleet, addr, port, expect) or check_alive(fleet, down)),
                timeout, "%s (%s:%d) serving %s" % (name, addr, port, sorted(expect)))
            seen = {harness.read_marker(addr, port) for _ in range(6)}
            assert seen <= expect, (name, port, seen, expect)
        for port in gone:
            testlib.wait_until(harness.steady(
                lambda: harness.refused(addr, port) or check_alive(fleet, down)),
                timeout, "%s (%s:%d) refusing" % (name, addr, port))


def tls_ok(fleet, addr, host):
    """A TLS handshake with SNI host through addr's shared port reaches a
    server whose certificate verifies for host."""
    try:
        with socket.create_connection((addr, fleet.api_port), timeout=3) as s:
            with fleet.pki.ctx.wrap_socket(s, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def wait_api(fleet, host, up=True, names=None):
    for name, addr in listens(fleet, names):
        testlib.wait_until(harness.steady(
            lambda: tls_ok(fleet, addr, host) == up or fleet._check_alive()),
            30, "API route for %s %s through %s" % (host, "up" if up else "gone", name))


def settled(fleet, names):
    """Once every renderd of names has a table that reflects allocd's last
    route decision, and every proxy serves that table: (allocd's log,
    {name: (generation, text)})."""
    def check():
        fleet._check_alive()
        log = alloc_log(fleet)
        last = last_route_seq(log)
        got = {}
        for name in names:
            cfg = latest_config(fleet, name)
            if cfg is None or cfg[0] < last or \
                    fleet.proxy_cfg(name).encode() != cfg[1]:
                return None
            got[name] = cfg
        return log, got
    return testlib.wait_until(check, 30, "%s to serve allocd's last route decision"
                              % ", ".join(names))


def check_pure(fleet, log, configs):
    """Each table is renderd -T of allocd's log up to its generation, and
    the HAProxy ones are the same but for the proxy's own names."""
    for name, (seq, text) in configs.items():
        want = render_state(fleet, name, log, seq)
        assert text == want, "%s's table at %d is not renderd -T's" % (name, seq)
    ha = [n for n in configs if fleet.proxy(n).kind == "haproxy"]
    for a, b in zip(ha, ha[1:]):
        assert normalised(fleet, a, configs[a][1]) == normalised(fleet, b, configs[b][1]), \
            "%s and %s differ beyond their own names" % (a, b)


def repoint(cluster, ns, name, route):
    """Merge-patch a VirtualService's one tcp route to other destinations."""
    port = route[0]["destination"]["port"]["number"]
    status, body = cluster.sim.request(
        "PATCH", "%s/namespaces/%s/virtualservices/%s" % (cluster.vs_api, ns, name),
        {"spec": {"tcp": [{"match": [{"port": port}], "route": route}]}},
        ctype="application/merge-patch+json")
    assert status == 200, body


def orders_markers(pay):
    return pay.markers(NS, "orders-db", 5432) | pay.markers(NS, "orders-db-canary", 5432)


# ------------------------------------------------------------------ the tests

def test_two_haproxy_and_nginx_render_alike(make_fleet):
    """Routes added, removed and re-pointed, a cluster added: every proxy
    serves every route, and the two HAProxy render the same configuration
    but for their own names."""
    fleet, pay, search = make_three(make_fleet)
    fleet.start()
    for ns, name in ((NS, "ledger-db"), (NS, "orders-db"), (NS, "cache"),
                     ("billing", "reports")):
        pay.annotate(ns, name, **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    c6379, c16379 = fleet.wait_address(pay, NS, "cache")
    (reports,) = fleet.wait_address(pay, "billing", "reports")
    wait_api(fleet, pay.host)
    wait_routes(fleet, {orders: orders_markers(pay)})

    # a cluster appears (a new backend: HAProxy reloads), its routes exposed
    search.register()
    wait_api(fleet, search.host)
    search.annotate("search", "index", **{EXPOSE: "true"})
    search.annotate("search", "query", **{EXPOSE: "true"})
    (index,) = fleet.wait_address(search, "search", "index")
    (query,) = fleet.wait_address(search, "search", "query")

    # one unexposed, one deleted, one re-pointed to another Service
    pay.annotate(NS, "orders-db", **{EXPOSE: None})
    search.delete("search", "query")
    repoint(pay, NS, "ledger-db", [dest("orders-db-canary", 5432)])
    routes = {
        ledger: pay.markers(NS, "orders-db-canary", 5432),
        c6379: pay.markers(NS, "cache", 6379),
        c16379: pay.markers(NS, "cache", 16379),
        reports: pay.markers(NS, "ledger-db", 5432),
        index: search.markers("search", "index", 9200),
    }
    wait_routes(fleet, routes, gone=(orders, query))
    fleet.wait_no_annotation(pay, NS, "orders-db", ADDRESS)
    assert pay.annotations(NS, "ledger-db")[ADDRESS] == "%s:%d" % (pay.host, ledger)
    for host in (pay.host, search.host):
        wait_api(fleet, host)

    log, configs = settled(fleet, [HA1, HA2, NGX])
    kinds = {e["type"] for e in log}
    assert {"API_SET", "PORT_SET", "PORT_FREE"} <= kinds, kinds
    check_pure(fleet, log, configs)
    a, b = (normalised(fleet, n, configs[n][1]) for n in (HA1, HA2))
    assert a == b
    for port in routes:
        assert port in harness.haproxy_ports(configs[HA1][1].decode())
    for port in (orders, query):
        assert port not in harness.haproxy_ports(configs[HA1][1].decode())
    # every renderd caught up by itself: none was told by another
    for name in (HA1, HA2, NGX):
        assert "caught up at" in fleet[renderd_key(fleet, name)].log()


def test_late_renderd_renders_the_same(make_fleet):
    """ha2's and ngx's renderd start only after the routes changed: their
    proxies serve nothing and no address is written meanwhile; once
    started, each catches up from allocd alone, its first table is what a
    renderd running all along published (ha1's, but for its names) and
    renderd -T's for that state, and its proxy serves every route."""
    fleet, pay, search = make_three(make_fleet)
    start(fleet, late=(HA2, NGX))
    search.register()
    for ns, name in ((NS, "ledger-db"), (NS, "orders-db"), (NS, "cache")):
        pay.annotate(ns, name, **{EXPOSE: "true"})
    search.annotate("search", "index", **{EXPOSE: "true"})
    ports = {}
    for c, ns, name in ((pay, NS, "ledger-db"), (pay, NS, "orders-db"),
                        (pay, NS, "cache"), (search, "search", "index")):
        testlib.wait_until(lambda: ask_ports(fleet, c, ns, name, ports) or
                           fleet._check_alive(), 30, "ports of %s/%s" % (ns, name))
    ledger, orders = ports["ledger-db"][0], ports["orders-db"][0]
    c6379, c16379 = ports["cache"]
    index = ports["index"][0]
    wait_routes(fleet, {orders: orders_markers(pay)}, names=[HA1])
    pay.annotate(NS, "orders-db", **{EXPOSE: None})
    repoint(pay, NS, "ledger-db", [dest("orders-db-canary", 5432)])
    routes = {
        ledger: pay.markers(NS, "orders-db-canary", 5432),
        c6379: pay.markers(NS, "cache", 6379),
        c16379: pay.markers(NS, "cache", 16379),
        index: search.markers("search", "index", 9200),
    }
    wait_routes(fleet, routes, gone=(orders,), names=[HA1])
    wait_api(fleet, search.host, names=[HA1])
    # ha2 and ngx serve nothing yet, so nothing is live: no address
    for name, addr in listens(fleet, [HA2, NGX]):
        assert harness.refused(addr, ledger) and not tls_ok(fleet, addr, pay.host), name
    for ns, name in ((NS, "ledger-db"), (NS, "cache")):
        assert ADDRESS not in pay.annotations(ns, name), name
    ha1 = settled(fleet, [HA1])[1][HA1]

    offsets = {}
    for name in (HA2, NGX):
        key = renderd_key(fleet, name)
        offsets[name] = len(fleet[key].log())
        fleet[key].start()
    assert fleet.wait_address(pay, NS, "ledger-db") == [ledger]
    assert fleet.wait_address(pay, NS, "cache") == [c6379, c16379]
    assert fleet.wait_address(search, "search", "index") == [index]
    wait_routes(fleet, routes, gone=(orders,))
    for host in (pay.host, search.host):
        wait_api(fleet, host)

    log, configs = settled(fleet, [HA1, HA2, NGX])
    assert configs[HA1] == ha1, "ha1 rendered again though no route changed"
    for name in (HA2, NGX):
        # its first table is the one it serves: it published no other
        gens = generations(fleet, renderd_key(fleet, name), offsets[name])
        assert gens == [configs[name][0]], (name, gens, configs[name][0])
        assert configs[name][0] >= ha1[0]
    check_pure(fleet, log, configs)


def ask_ports(fleet, cluster, ns, name, ports, state=False):
    """The ports allocd gave ns/name (from its log, or with state from what
    it answers a SINCE 0 with), into ports[name]; None until every tcp
    route of it has one."""
    if state:
        log, _ = ask_since("ipc://%s/alloc.sync" % fleet.run_dir, state=True)
    else:
        log = alloc_log(fleet)
    got = {}
    for e in log:
        b = e["body"]
        if b.get(E.F_CLUSTER) == cluster.uuid and b.get(E.F_NS) == ns and b.get(E.F_NAME) == name:
            if e["type"] == "PORT_SET":
                got[b[E.F_ROUTE]] = b[E.F_PORT]
            elif e["type"] == "PORT_FREE":
                got.pop(b[E.F_ROUTE], None)
    want = len(cluster.vs(ns, name)["spec"]["tcp"])
    if len(got) < want:
        return None
    ports[name] = [got[r] for r in sorted(got)]
    return ports[name]


def test_renderd_sigkill_while_routes_change(make_fleet):
    """ha1's renderd is SIGKILLed; routes change while it is down (and as it
    comes back). HAProxy keeps serving what it had, to connections old and
    new; the restarted renderd catches up and renders exactly its old
    configuration plus the changes: renderd -T's for the new state, ha2's
    but for its names, and different from the old only in the backends of
    the ports that changed."""
    fleet, pay, search = make_three(make_fleet)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    pay.annotate(NS, "cache", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    c6379, c16379 = fleet.wait_address(pay, NS, "cache")
    ledger_old = pay.markers(NS, "ledger-db", 5432)
    wait_routes(fleet, {ledger: ledger_old, c6379: pay.markers(NS, "cache", 6379)})
    log, before = settled(fleet, [HA1, HA2, NGX])
    check_pure(fleet, log, before)
    ha1_addr = fleet.proxy_listen(fleet.proxy(HA1))
    renderd = fleet["renderd"]
    master = fleet.proxy_master(HA1)

    with socket.create_connection((ha1_addr, ledger), timeout=5) as held:
        f = held.makefile("rb")
        assert f.readline().decode().strip() in ledger_old
        renderd.kill9()
        # HAProxy needs no renderd: new connections are served too
        assert harness.read_marker(ha1_addr, ledger) in ledger_old
        assert harness.read_marker(ha1_addr, c6379) in pay.markers(NS, "cache", 6379)

        # changes while it is down: ha2 and ngx take them, ha1 cannot
        pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
        pay.annotate(NS, "cache", **{EXPOSE: None})
        repoint(pay, NS, "ledger-db", [dest("orders-db-canary", 5432)])
        ports = {}
        testlib.wait_until(lambda: ask_ports(fleet, pay, NS, "orders-db", ports) or
                           check_alive(fleet, ["renderd"]), 30, "a port for orders-db")
        (orders,) = ports["orders-db"]
        canary = pay.markers(NS, "orders-db-canary", 5432)
        wait_routes(fleet, {ledger: canary, orders: orders_markers(pay)},
                    gone=(c6379, c16379), names=[HA2, NGX], down=["renderd"])
        # ha1 still serves the old table, to a connection made now
        assert harness.read_marker(ha1_addr, ledger) in ledger_old
        assert harness.read_marker(ha1_addr, c16379) in pay.markers(NS, "cache", 16379)
        assert harness.refused(ha1_addr, orders)
        assert ADDRESS not in pay.annotations(NS, "orders-db")     # ha1 has not acked
        held.sendall(b"while renderd is down\n")
        assert f.readline() == b"while renderd is down\n"

        # one more change as it comes back: live events during its catch-up
        offset = len(renderd.log())
        pay.annotate("billing", "reports", **{EXPOSE: "true"})
        renderd.start()
        assert renderd.pid != renderd.exits[-1][0]
        assert fleet.wait_address(pay, NS, "orders-db") == [orders]
        (reports,) = fleet.wait_address(pay, "billing", "reports")
        routes = {ledger: canary, orders: orders_markers(pay),
                  reports: pay.markers(NS, "ledger-db", 5432)}
        wait_routes(fleet, routes, gone=(c6379, c16379))
        held.sendall(b"after the restart\n")
        assert f.readline() == b"after the restart\n"
    assert fleet.proxy_master(HA1) == master       # never restarted

    log, after = settled(fleet, [HA1, HA2, NGX])
    check_pure(fleet, log, after)
    gens = generations(fleet, "renderd", offset)
    assert gens and gens[-1] == after[HA1][0], gens
    assert "caught up at" in renderd.log()[offset:]
    # the old configuration plus the changes, and nothing else
    old, new = blocks(before[HA1][1]), blocks(after[HA1][1])
    assert old.keys() == new.keys()
    changed = sorted(k.decode() for k in old if old[k] != new[k])
    assert changed == sorted("backend p%d" % p for p in
                             (ledger, c6379, c16379, orders, reports)), changed


def test_late_renderd_from_a_compacted_log(make_fleet):
    """allocd compacts its log every second (compact_age = 1): a renderd
    that starts late is answered with the state instead of the history,
    and still renders what ha1, running all along, renders (but for its
    names), and what renderd -T makes of that state."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(proxies=[(HA1, "haproxy"), (HA2, "haproxy", testlib.loopback_addr())])
    pay = harness.payments_cluster(fleet)
    start(fleet, late=(HA2,), store={"compact_age": 1})
    for ns, name in ((NS, "ledger-db"), (NS, "orders-db"), (NS, "cache"),
                     ("billing", "reports")):
        pay.annotate(ns, name, **{EXPOSE: "true"})
    ports = {}
    for ns, name in ((NS, "ledger-db"), (NS, "orders-db"), (NS, "cache"),
                     ("billing", "reports")):
        testlib.wait_until(lambda: ask_ports(fleet, pay, ns, name, ports, state=True)
                           or fleet._check_alive(), 30, "ports of %s/%s" % (ns, name))
    pay.annotate(NS, "orders-db", **{EXPOSE: None})
    repoint(pay, NS, "ledger-db", [dest("orders-db-canary", 5432)])
    ledger, orders, reports = (ports[n][0] for n in ("ledger-db", "orders-db", "reports"))
    c6379, c16379 = ports["cache"]
    routes = {
        ledger: pay.markers(NS, "orders-db-canary", 5432),
        c6379: pay.markers(NS, "cache", 6379),
        c16379: pay.markers(NS, "cache", 16379),
        reports: pay.markers(NS, "ledger-db", 5432),
    }
    wait_routes(fleet, routes, gone=(orders,), names=[HA1])

    # the log holds no history any more: a SINCE 0 is answered with the state
    def compacted():
        fleet._check_alive()
        events, _ = ask_since("ipc://%s/alloc.sync" % fleet.run_dir, state=True)
        return events and events[0]["type"] == "STATE" and events
    testlib.wait_until(compacted, 20, "allocd to compact its log")
    assert "compacted the log" in fleet["allocd"].log()

    key = renderd_key(fleet, HA2)
    fleet[key].start()
    assert fleet.wait_address(pay, NS, "ledger-db") == [ledger]
    assert fleet.wait_address(pay, NS, "cache") == [c6379, c16379]
    wait_routes(fleet, routes, gone=(orders,))
    wait_api(fleet, pay.host)
    assert "the log after 0 is compacted" in fleet[key].log()

    def both():
        fleet._check_alive()
        got = {n: latest_config(fleet, n) for n in (HA1, HA2)}
        return all(got.values()) and all(
            fleet.proxy_cfg(n).encode() == got[n][1] for n in got) and got
    configs = testlib.wait_until(both, 30, "both proxies to serve their renderd's latest")
    assert normalised(fleet, HA1, configs[HA1][1]) == normalised(fleet, HA2, configs[HA2][1])
    assert generations(fleet, key) == [configs[HA2][0]]
    # renderd -T of the state allocd answers with now (no route changed since)
    events, end = ask_since("ipc://%s/alloc.sync" % fleet.run_dir, state=True)
    assert events[0]["type"] == "STATE"
    state = [dict(e, seq=i + 1) for i, e in enumerate(events[1:])]
    assert render_state(fleet, HA2, state, len(state)) == configs[HA2][1]
