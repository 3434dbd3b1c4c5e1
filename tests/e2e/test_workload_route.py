"""Workload TCP routing: a VirtualService annotated portico.dev/expose gets a
port on the shared proxies, its address written back, and real TCP traffic
reaches the workload behind its Services' nodePorts on every node."""

import json
import os
import shutil
import socket
import threading
import time

import yaml

import harness
import testlib
from harness import ADDRESS, ERROR, EXPOSE, PORT, need, start_payments  # noqa: F401

NS = "payments"


def vs_yaml(cluster, name, ns=NS):
    out = cluster.kubectl("get", "virtualservice", name, "-n", ns, "-o", "yaml").stdout
    return yaml.safe_load(out)


def test_expose_route_and_unexpose(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.kubectl("annotate", "virtualservice", "ledger-db", "-n", NS, EXPOSE + "=true")
    (port,) = fleet.wait_address(pay, NS, "ledger-db")

    # What a user sees: the address on the object, as kubectl shows it.
    doc = vs_yaml(pay, "ledger-db")
    assert doc["metadata"]["annotations"][ADDRESS] == "%s:%d" % (pay.host, port)
    assert ERROR not in doc["metadata"]["annotations"]

    # Real TCP through HAProxy reaches the workload, on every node (nodePort).
    expect = pay.markers(NS, "ledger-db", 5432)
    seen = fleet.markers(port, 8)
    assert set(seen) == expect, seen
    marker, echoed = harness.read_marker(fleet.listen, port, send=b"ping portico\n")
    assert marker in expect and echoed == b"ping portico\n"

    # Nothing else was exposed or annotated.
    for name in ("orders-db", "cache", "web", "ghost"):
        ann = pay.annotations(NS, name)
        assert ADDRESS not in ann and ERROR not in ann, (name, ann)

    # Unexposed: the port goes away after the reload, and so does the address.
    pay.kubectl("annotate", "virtualservice", "ledger-db", "-n", NS, EXPOSE + "-")
    fleet.wait_refused(port)
    fleet.wait_no_annotation(pay, NS, "ledger-db", ADDRESS)
    ann = vs_yaml(pay, "ledger-db")["metadata"].get("annotations") or {}
    assert ADDRESS not in ann and EXPOSE not in ann


def test_weighted_destinations(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.kubectl("annotate", "virtualservice", "orders-db", "-n", NS, EXPOSE + "=true")
    (port,) = fleet.wait_address(pay, NS, "orders-db")
    main = pay.markers(NS, "orders-db", 5432)
    canary = pay.markers(NS, "orders-db-canary", 5432)
    seen = fleet.markers(port, 40)
    assert set(seen) <= main | canary, seen
    n_main = sum(m in main for m in seen)
    n_canary = sum(m in canary for m in seen)
    # Both destinations get traffic, in the VirtualService's 75/25 proportion
    # (round robin over weighted servers: exact up to the starting point).
    assert n_canary > 0 and n_main > 0, seen
    assert 25 <= n_main <= 35, (n_main, n_canary)
    # Every node of each destination is a backend.
    assert main | canary == set(seen), sorted(set(seen))


def test_several_tcp_routes_and_service_names(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "cache", **{EXPOSE: "true"})
    pay.annotate("billing", "reports", **{EXPOSE: "true"})
    # one port per spec.tcp entry, written in order, comma-separated
    p6379, p16379 = fleet.wait_address(pay, NS, "cache")
    assert p6379 != p16379
    assert pay.annotations(NS, "cache")[ADDRESS] == "%s:%d,%s:%d" % (
        pay.host, p6379, pay.host, p16379)
    # a destination's port number picks the Service port, so the nodePort
    fleet.wait_serves(p6379, pay.markers(NS, "cache", 6379))
    assert set(fleet.markers(p6379, 4)) == pay.markers(NS, "cache", 6379)
    assert set(fleet.markers(p16379, 4)) == pay.markers(NS, "cache", 16379)
    # <svc>.<ns>.svc.cluster.local from another namespace
    (rp,) = fleet.wait_address(pay, "billing", "reports")
    assert rp not in (p6379, p16379)
    assert set(fleet.markers(rp, 4)) == pay.markers(NS, "ledger-db", 5432)


def test_refusals_are_written_back(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.kubectl("annotate", "virtualservice", "ledger-db", "-n", NS,
                EXPOSE + "=true", PORT + "=abc")
    err = fleet.wait_annotation(pay, NS, "ledger-db", ERROR)
    assert PORT in err, err
    # no tcp routes; a destination that names no Service
    pay.annotate(NS, "web", **{EXPOSE: "true"})
    pay.annotate(NS, "ghost", **{EXPOSE: "true"})
    assert "tcp" in fleet.wait_annotation(pay, NS, "web", ERROR)
    assert "nowhere" in fleet.wait_annotation(pay, NS, "ghost", ERROR)
    for name in ("ledger-db", "web", "ghost"):
        assert ADDRESS not in pay.annotations(NS, name), name
    # Fixing the object clears the error and brings the address.
    pay.kubectl("annotate", "virtualservice", "ledger-db", "-n", NS, PORT + "-")
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_no_annotation(pay, NS, "ledger-db", ERROR)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    # A refusal of one object stopped nothing else.
    assert "tcp" in pay.annotations(NS, "web").get(ERROR, "")


def test_requested_port_honoured_or_refused(make_fleet):
    fleet, pay = start_payments(make_fleet)
    want = fleet.port_hi - 3
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(want)})
    assert fleet.wait_address(pay, NS, "ledger-db") == [want]
    fleet.wait_serves(want, pay.markers(NS, "ledger-db", 5432))
    # The same port for another object: taken.
    pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(want)})
    err = fleet.wait_annotation(pay, NS, "orders-db", ERROR)
    assert str(want) in err and "taken" in err, err
    assert ADDRESS not in pay.annotations(NS, "orders-db")
    # Outside the range: refused.
    pay.annotate("billing", "reports", **{EXPOSE: "true", PORT: str(fleet.port_hi + 1)})
    err = fleet.wait_annotation(pay, "billing", "reports", ERROR)
    assert str(fleet.port_hi + 1) in err, err
    # The holder still serves.
    assert fleet.marker(want) in pay.markers(NS, "ledger-db", 5432)
    # Asking for another free port moves the route: the old one goes.
    other = fleet.port_hi - 1
    pay.annotate(NS, "ledger-db", **{PORT: str(other)})
    fleet.wait_annotation(pay, NS, "ledger-db", ADDRESS, value="%s:%d" % (pay.host, other))
    fleet.wait_serves(other, pay.markers(NS, "ledger-db", 5432))
    fleet.wait_refused(want)


def test_deleted_virtualservice_releases_its_port(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    pay.kubectl("delete", "virtualservice", "ledger-db", "-n", NS)
    fleet.wait_refused(port)
    # Quarantined: nobody else may have it meanwhile, even by asking.
    pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(port)})
    err = fleet.wait_annotation(pay, NS, "orders-db", ERROR)
    assert str(port) in err and "quarantine" in err, err
    # Recreated within the quarantine: the same owner gets its port back.
    obj = [o for o in json.load(open(pay.dir + "/seed.json"))["objects"]
           if o["kind"] == "VirtualService" and o["metadata"]["name"] == "ledger-db"][0]
    obj["metadata"]["annotations"] = {EXPOSE: "true"}
    pay.create(obj)
    assert fleet.wait_address(pay, NS, "ledger-db") == [port]
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))


def test_new_node_becomes_a_backend(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    np = pay.node_ports[(NS, "ledger-db", 5432)]
    ip = testlib.loopback_addr()
    try:
        server = harness.EchoServer(ip, np, "new-node")
    except OSError as e:        # the nodePort is taken on that address
        raise AssertionError("cannot serve %s:%d: %s" % (ip, np, e))
    pay.servers.append(server)
    status, body = pay.sim.request("POST", "/api/v1/nodes",
                                   harness.node("payments-worker-9", ip))
    assert status == 201, body

    def reaches_new_node():
        fleet._check_alive()
        try:
            return "new-node" in fleet.markers(port, 3)
        except (ConnectionError, socket.timeout):
            return False
    testlib.wait_until(reaches_new_node, 30, "traffic on the new node")
    # The address did not change.
    assert pay.annotations(NS, "ledger-db")[ADDRESS] == "%s:%d" % (pay.host, port)


def test_port_exhaustion_is_written_back(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=2)
    pay = harness.payments_cluster(fleet)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    a = fleet.wait_address(pay, NS, "ledger-db")
    b = fleet.wait_address(pay, NS, "orders-db")
    assert sorted(a + b) == [fleet.port_lo, fleet.port_hi]
    pay.annotate("billing", "reports", **{EXPOSE: "true"})
    err = fleet.wait_annotation(pay, "billing", "reports", ERROR)
    assert "%d-%d" % (fleet.port_lo, fleet.port_hi) in err, err
    assert ADDRESS not in pay.annotations("billing", "reports")
    # the others go on serving
    fleet.wait_serves(a[0], pay.markers(NS, "ledger-db", 5432))


def test_routes_change_live_and_reloads_keep_connections(make_fleet):
    """Another VirtualService exposed, re-pointed and unexposed changes
    HAProxy through its runtime API: no reload, and a connection in progress
    is untouched.  A cluster that comes (it takes a free API slot) or goes
    changes it the same way, through the SNI map and the slot's servers."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    search = harness.search_cluster(fleet, register=False)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    reloads = fleet.haproxy_reloads()
    assert reloads is not None
    with socket.create_connection((fleet.listen, port), timeout=5) as s:
        f = s.makefile("rb")
        assert f.readline().decode().strip() in pay.markers(NS, "ledger-db", 5432)
        pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
        (orders,) = fleet.wait_address(pay, NS, "orders-db")
        fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432))
        s.sendall(b"still there 0?\n")
        assert f.readline() == b"still there 0?\n"
        pay.annotate(NS, "orders-db", **{EXPOSE: None})
        fleet.wait_no_annotation(pay, NS, "orders-db", ADDRESS)
        fleet.wait_refused(orders)
        assert fleet.haproxy_reloads() == reloads, "a route change reloaded HAProxy"
        s.sendall(b"still there 1?\n")
        assert f.readline() == b"still there 1?\n"

        search.register()
        fleet.wait_api(search.host)
        assert search.host in fleet.proxy_cfg()
        search.unregister()
        fleet.wait_api(search.host, up=False)
        assert fleet.tls_probe(pay.host)
        assert fleet.haproxy_reloads() == reloads, "a cluster reloaded HAProxy"
        s.sendall(b"still there 2?\n")
        assert f.readline() == b"still there 2?\n"


def fnv1a(s):
    """FNV-1a 64, as common/hash.h: the hash that homes an API slot."""
    h = 14695981039346656037
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def colliding_uuids(pool=16):
    """Two cluster ids whose API slots share a home in a pool of 16, the
    second sorting first: when it comes, it takes the first one's slot and
    the first one moves to the next."""
    old = "f0000000-0000-4000-8000-000000000000"
    home = fnv1a(old) & (pool - 1)
    for i in range(4096):
        new = "00000000-0000-4000-8000-%012x" % i
        if fnv1a(new) & (pool - 1) == home:
            return old, new, home
    raise AssertionError("no colliding id")


def api_map(fleet):
    """The SNI map HAProxy routes the shared port by: {host: backend}."""
    path = os.path.join(fleet.run_dir, "%s-api.map" % harness.HAPROXY_NAME)
    with open(path) as f:
        return dict(line.split() for line in f if line.strip())


def test_a_cluster_displaced_from_its_slot_moves_live(make_fleet):
    """A cluster that comes with the same home slot as one routed, and
    sorts first, takes its slot; the one routed moves to the next slot
    through the runtime API (servers, then the map re-pointed): its API
    keeps answering on the shared port all along, a workload connection
    is untouched, HAProxy does not reload.  The same when the newcomer
    leaves and the first cluster moves back."""
    need("allocd", "renderd", "applyd", "watcherd")
    old_id, new_id, home = colliding_uuids()
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet, uuid=old_id)
    search = harness.search_cluster(fleet, register=False, uuid=new_id)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_api(pay.host)
    assert api_map(fleet)[pay.host] == "api%d" % home
    reloads = fleet.haproxy_reloads()
    assert reloads is not None

    failures = []
    stop = threading.Event()

    def probe():
        while not stop.is_set():
            if not fleet.tls_probe(pay.host):
                failures.append(time.monotonic())

    with socket.create_connection((fleet.listen, port), timeout=5) as s:
        f = s.makefile("rb")
        assert f.readline().decode().strip() in pay.markers(NS, "ledger-db", 5432)
        t = threading.Thread(target=probe, daemon=True)
        t.start()
        try:
            search.register()
            fleet.wait_api(search.host)
            testlib.wait_until(lambda: api_map(fleet).get(pay.host) == "api%d" % ((home + 1) % 16),
                               30, "payments moved to the next slot")
            assert api_map(fleet)[search.host] == "api%d" % home
            assert fleet.tls_probe(pay.host)
            pay.kubectl_via_portico("get", "namespaces")
            assert fleet.haproxy_reloads() == reloads, "a displaced cluster reloaded HAProxy"
            s.sendall(b"still there 1?\n")
            assert f.readline() == b"still there 1?\n"

            search.unregister()
            fleet.wait_api(search.host, up=False)
            testlib.wait_until(lambda: api_map(fleet).get(pay.host) == "api%d" % home,
                               30, "payments back in its home slot")
            assert fleet.tls_probe(pay.host)
            pay.kubectl_via_portico("get", "namespaces")
            assert fleet.haproxy_reloads() == reloads, "a cluster moving back reloaded HAProxy"
            s.sendall(b"still there 2?\n")
            assert f.readline() == b"still there 2?\n"
        finally:
            stop.set()
            t.join()
    assert not failures, "payments' API failed %d probes" % len(failures)


def test_old_workers_are_capped_by_max_reloads(make_fleet):
    """With reloads for every change (live = 0) and max_reloads = 2, a
    worker kept alive by a long-lived connection is stopped once it has
    outlived two more reloads: no more than three workers at once, and the
    connections of younger workers stay."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {"live": 0, "max_reloads": 2}})
    fleet.start_daemons()
    assert "mworker-max-reloads 2" in fleet.proxy_cfg()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    markers = pay.markers(NS, "ledger-db", 5432)
    master = fleet.proxy_master()

    def reload_once(n):
        """One route change, so one reload; n: the count it must reach."""
        if (n - base) % 2:
            pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
            fleet.wait_address(pay, NS, "orders-db")
        else:
            pay.annotate(NS, "orders-db", **{EXPOSE: None})
            fleet.wait_no_annotation(pay, NS, "orders-db", ADDRESS)
        testlib.wait_until(lambda: (fleet.haproxy_reloads() or 0) >= n, 20,
                         "reload %d" % n)
        workers = harness._children(master)
        assert len(workers) <= 3, "%d workers after reload %d" % (len(workers), n)

    def talks(conn, i):
        conn.sendall(b"ping %d\n" % i)
        return conn.makefile("rb").readline() == b"ping %d\n" % i

    base = fleet.haproxy_reloads()
    old = socket.create_connection((fleet.listen, port), timeout=5)
    young = None
    try:
        assert old.makefile("rb").readline().decode().strip() in markers
        reload_once(base + 1)
        young = socket.create_connection((fleet.listen, port), timeout=5)
        assert young.makefile("rb").readline().decode().strip() in markers
        reload_once(base + 2)
        assert talks(old, 1) and talks(young, 1)
        reload_once(base + 3)
        # old's worker outlived three reloads: stopped; young's only two
        testlib.wait_until(lambda: not talks(old, 2), 10, "the oldest worker stopped")
        assert talks(young, 2)
    finally:
        old.close()
        if young is not None:
            young.close()


def test_port_held_by_another_program_blocks_nothing(make_fleet):
    """A workload port another program holds would fail HAProxy's bind of
    the whole range: applyd leaves that port out, says so, and every other
    port serves.  The route given that port gets no address, and its object
    says why.  Once the program lets go, applyd notices by itself, reloads
    to bind the port, and the address is written."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=8)
    pay = harness.payments_cluster(fleet)
    held = fleet.port_hi
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((fleet.listen, held))
    squatter.listen(8)
    why = "port %d is held by another program on proxy %s" % (held, harness.HAPROXY_NAME)
    try:
        fleet.start()
        pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(fleet.port_lo)})
        (port,) = fleet.wait_address(pay, NS, "ledger-db")
        assert port == fleet.port_lo
        fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
        assert "1 workload port held by another program, not bound: %d" % held \
            in fleet["applyd"].log()
        # what HAProxy reads binds around it; what renderd rendered does not
        cfg = fleet.proxy_cfg()
        assert "%s:%d-%d\n" % (fleet.listen, fleet.port_lo, held - 1) in cfg
        assert str(held) + "\n" not in cfg.split("frontend ports", 1)[1].split("backend", 1)[0]
        # a route on the held port: the map has it, the address waits
        pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(held)})
        fleet.wait_annotation(pay, NS, "orders-db", ERROR, value=why)
        assert held in fleet.routed_ports()
        time.sleep(1)               # acks come every few seconds: none writes it
        assert ADDRESS not in pay.annotations(NS, "orders-db")
        assert ERROR not in pay.annotations(NS, "ledger-db")
        fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
        master = fleet.proxy_master()
    finally:
        squatter.close()
    assert fleet.wait_address(pay, NS, "orders-db", timeout=30) == [held]
    fleet.wait_no_annotation(pay, NS, "orders-db", ERROR)
    log = fleet["applyd"].log()
    assert "workload port %d came free; reloading to bind it" % held in log
    assert "every workload port binds again" in log
    assert fleet.proxy_master() == master   # a reload, not a restart
    fleet.wait_serves(held, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))


GATE = """#!/bin/sh
# HAProxy, whose check refuses every configuration while %(gate)s exists
for a in "$@"; do
	if [ "$a" = -c ] && [ -e %(gate)s ]; then
		echo "[ALERT]    (1) : config : refused while the test's gate is shut" >&2
		exit 1
	fi
done
exec %(haproxy)s "$@"
"""


def test_failed_apply_is_reported_on_its_routes(make_fleet):
    """An apply the proxy's checker refuses leaves the last good
    configuration serving, is retried with backoff, and the routes waiting
    for it say why on their objects (routes already served are untouched).
    Once a later apply succeeds, the address is written and the reason
    withdrawn."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    gate = os.path.join(fleet.run_dir, "gate")
    binary = os.path.join(fleet.run_dir, "haproxy-gated")
    with open(binary, "w") as f:
        f.write(GATE % {"gate": gate, "haproxy": shutil.which("haproxy")})
    os.chmod(binary, 0o755)
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {"live": 0, "binary": binary}})
    fleet.start_daemons()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(fleet.port_lo)})
    assert fleet.wait_address(pay, NS, "ledger-db") == [fleet.port_lo]
    open(gate, "w").close()
    want = fleet.port_lo + 1
    pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(want)})
    why = fleet.wait_annotation(pay, NS, "orders-db", ERROR)
    assert why == ("proxy %s cannot apply its configuration (haproxy -c refused it); "
                   "port %d is not served yet" % (harness.HAPROXY_NAME, want)), why
    assert ADDRESS not in pay.annotations(NS, "orders-db")
    assert ERROR not in pay.annotations(NS, "ledger-db")
    assert want not in fleet.routed_ports()         # the last good one, on disk too
    fleet.wait_serves(fleet.port_lo, pay.markers(NS, "ledger-db", 5432))
    testlib.wait_until(lambda: "retry in 1000 ms" in fleet["applyd"].log(), 30,
                       "a retry with backoff")
    assert "refused while the test's gate is shut" in fleet["applyd"].log()
    os.unlink(gate)
    assert fleet.wait_address(pay, NS, "orders-db", timeout=45) == [want]
    fleet.wait_no_annotation(pay, NS, "orders-db", ERROR)
    fleet.wait_serves(want, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))


def test_istio_v1alpha3_only_cluster(make_fleet):
    """A cluster whose Istio serves only networking.istio.io/v1alpha3."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    old = fleet.add_cluster(
        "legacy", [("db", "apps", [5432])],
        [harness.virtualservice("db", "apps", [[harness.dest("db", 5432)]])],
        sim_args=["--istio-versions", "v1alpha3"])
    fleet.start()
    out = old.kubectl("annotate", "virtualservices.v1alpha3.networking.istio.io", "db",
                      "-n", "apps", EXPOSE + "=true").stdout
    assert "annotated" in out
    status, _ = old.sim.request("GET", harness.VS_API + "/virtualservices")
    assert status == 404                    # no v1 here

    def address():
        fleet._check_alive()
        status, obj = old.sim.request(
            "GET", "/apis/networking.istio.io/v1alpha3/namespaces/apps/virtualservices/db")
        return (obj["metadata"].get("annotations") or {}).get(ADDRESS)
    addr = testlib.wait_until(address, 30, "the address on a v1alpha3 VirtualService")
    host, _, port = addr.rpartition(":")
    assert host == old.host
    fleet.wait_serves(int(port), old.markers("apps", "db", 5432))


def test_waiting_owner_gets_a_freed_port(make_fleet):
    """Exhaustion refuses with a reason; the refused route waits, and once a
    port comes out of quarantine allocd hands it over by itself, in the order
    the owners asked: address written, error gone, traffic flows."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=2, quarantine=2)
    pay = harness.payments_cluster(fleet)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    fleet.wait_address(pay, NS, "orders-db")
    pay.annotate("billing", "reports", **{EXPOSE: "true"})
    err = fleet.wait_annotation(pay, "billing", "reports", ERROR)
    assert "no free port" in err, err
    pay.annotate(NS, "ledger-db", **{EXPOSE: None})
    assert fleet.wait_address(pay, "billing", "reports", timeout=30) == [ledger]
    fleet.wait_no_annotation(pay, "billing", "reports", ERROR)
    fleet.wait_serves(ledger, pay.markers(NS, "ledger-db", 5432))
