"""portico as pods (issue 14): the manifests of deploy/kubernetes played on
Podman (`kube play`) from the image `make image` builds, the simulators
outside the pods.

Each test says what it costs in time (printed with -s, and in the failure
report): the image once per module, then each pod's play.
"""

import os
import re
import subprocess
import time

import pytest

import harness
import pods as podlib
from harness import ADDRESS, EXPOSE

pytestmark = [
    pytest.mark.skipif(not podlib.have_podman(),
                       reason="podman is not installed (scripts/deps.sh)"),
    # rootful podman: the pods' folders are given to the image's users
    pytest.mark.skipif(os.geteuid() != 0, reason="the pod tests run as root"),
]


@pytest.fixture(scope="module")
def image():
    harness.need("allocd", "renderd", "applyd", "watcherd", "porticoctl")
    img = podlib.Image()
    print("\nimage %s built and imported in %.1f s" % (img.name, img.seconds))
    yield img
    img.remove()


@pytest.fixture
def make_pods(request, make_fleet, image):
    """Factory: make_pods(fleet) -> Pods over that (unstarted) fleet. Every
    pod, ConfigMap volume and claim made is removed afterwards, by name;
    a sanitizer report in any pod's log fails the test."""
    made = []

    def make(fleet, **kw):
        p = podlib.Pods(fleet, image, **kw)
        made.append(p)
        return p
    yield make
    failed = any(getattr(request.node, "rep_" + w, None) is not None and
                 getattr(request.node, "rep_" + w).failed for w in ("setup", "call"))
    reports = []
    for p in made:
        if failed:
            print(p.logs())
        reports += p.stop()
        reports += p.sanitizer_reports()
        t0 = time.monotonic()
        p.cleanup()
        print("cleanup: %d pods down and removed in %.1f s" % (
            len(p.pods), time.monotonic() - t0))
    if reports:
        pytest.fail("teardown of the pods:\n" + "\n".join(reports), pytrace=False)


def expose(fleet, cluster, ns, name):
    cluster.annotate(ns, name, **{EXPOSE: "true"})
    return fleet.wait_address(cluster, ns, name, timeout=60)


def timed(what, t0, costs):
    costs.append("%s %.1f s" % (what, time.monotonic() - t0))
    return time.monotonic()


def test_kubectl_and_workloads_through_the_pods(make_fleet, make_pods):
    """kubectl through HAProxy's SNI port in the applyd pod reaches each
    simulated cluster; a VirtualService annotated gets an address, and TCP
    through the pod's port reaches its workload."""
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    search = harness.search_cluster(fleet)
    pods = make_pods(fleet)
    costs = []
    t = time.monotonic()
    pods.start()
    t = timed("four pods up, HAProxy listening", t, costs)

    for c, ns in ((pay, "payments"), (search, "search")):
        out = c.kubectl_via_portico("get", "virtualservices", "-n", ns, "-o", "name").stdout
        assert "virtualservice.networking.istio.io/" in out, out
    t = timed("kubectl through the pod, both clusters", t, costs)

    port = expose(fleet, pay, "payments", "ledger-db")[0]
    fleet.wait_serves(port, pay.markers("payments", "ledger-db", 5432), timeout=30)
    port2 = expose(fleet, search, "search", "index")[0]
    assert port2 != port
    fleet.wait_serves(port2, search.markers("search", "index", 9200), timeout=30)
    t = timed("two routes: address written, TCP through the pod", t, costs)

    # The daemons report ready on the probes' paths.
    for what in ("allocd", "renderd-0", "applyd-a", "watcherd"):
        pods.pods[what].wait_ready(timeout=30)
    print("costs: " + "; ".join(costs))
    print("usage: " + "; ".join("%s %.1f MiB, %.2f CPU s" % ((w,) + pods.pods[w].usage(
        w.split("-")[0])) for w in ("allocd", "renderd-0", "applyd-a", "watcherd")))


def test_allocd_pod_killed_keeps_every_port(make_fleet, make_pods):
    """allocd's pod killed and played again on the same claim: no port
    moves, no address changes, the routes keep serving."""
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    pods = make_pods(fleet)
    costs = []
    t = time.monotonic()
    pods.start()
    t = timed("four pods up", t, costs)
    names = ("ledger-db", "orders-db", "cache")
    before = {n: expose(fleet, pay, "payments", n) for n in names}
    addrs = {n: pay.annotations("payments", n)[ADDRESS] for n in names}
    t = timed("three routes live", t, costs)

    pods.kill(pods.pods["allocd"])
    t = timed("allocd's pod killed", t, costs)
    # While allocd is away, the proxy goes on serving what it has.
    port = before["ledger-db"][0]
    fleet.wait_serves(port, pay.markers("payments", "ledger-db", 5432), timeout=10)
    pods.up(pods.pods["allocd"])
    pods.pods["allocd"].wait_ready(timeout=60)
    t = timed("allocd played again on its claim, ready", t, costs)

    # A new route after the restart: proof that allocd decides again, and
    # a fence for what it decided about the old ones.
    new = expose(fleet, pay, "billing", "reports")
    for n in names:
        assert fleet.wait_address(pay, "payments", n) == before[n]
        assert pay.annotations("payments", n)[ADDRESS] == addrs[n]
    assert new[0] not in [p for ps in before.values() for p in ps]
    for n in names:
        port = before[n][0]
        svc = {"ledger-db": "ledger-db", "orders-db": "orders-db", "cache": "cache"}[n]
        expect = pay.markers("payments", svc, 6379 if n == "cache" else 5432)
        if n == "orders-db":
            expect |= pay.markers("payments", "orders-db-canary", 5432)
        fleet.wait_serves(port, expect, timeout=30)
    timed("every port and address unchanged, serving", t, costs)
    print("costs: " + "; ".join(costs))


def test_renderd_scaled_every_applyd_serves_the_same_table(make_fleet, make_pods):
    """renderd from 1 to 3 replicas: applyd pods fed by different replicas
    (as a Service spreads them) serve the same table, byte for byte, and
    the applyd that was serving before goes on serving its route."""
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    pods = make_pods(fleet)
    costs = []
    t = time.monotonic()
    pods.start()
    port = expose(fleet, pay, "payments", "ledger-db")[0]
    ledger = pay.markers("payments", "ledger-db", 5432)
    fleet.wait_serves(port, ledger)
    t = timed("four pods up, one route live", t, costs)

    # Two more replicas, and an applyd on each of two more "nodes" (an
    # address of their own) fed by replicas 1 and 2.
    nodes = {"b": harness.testlib.loopback_addr(), "c": harness.testlib.loopback_addr()}
    for r in (1, 2):
        pods.start_renderd(r).wait_healthy()
    t = timed("renderd scaled to 3", t, costs)
    assert fleet.marker(port) in ledger
    for node, r in (("b", 1), ("c", 2)):
        pods.start_applyd(node, replica=r, listen=nodes[node]).wait_healthy()
    addrs = {"a": fleet.listen, **nodes}
    for node, addr in nodes.items():
        harness.testlib.wait_until(
            lambda: _serves(addr, port, ledger), 60, "applyd-%s serving" % node)
    t = timed("two more applyd pods, each on its own replica, serving", t, costs)

    # A change after the scale-out reaches every proxy through every replica.
    port2 = expose(fleet, pay, "payments", "orders-db")[0]
    orders = pay.markers("payments", "orders-db", 5432) | \
        pay.markers("payments", "orders-db-canary", 5432)
    for node, addr in addrs.items():
        harness.testlib.wait_until(lambda: _serves(addr, port2, orders), 60,
                                   "applyd-%s serving the new route" % node)
        assert _serves(addr, port, ledger)
    harness.testlib.wait_until(
        lambda: len({pods.proxy_cfg(n).replace(addrs[n], "LISTEN") for n in addrs}) == 1,
        30, "the three proxies' configurations equal")
    timed("a new route on all three, same configuration", t, costs)
    print("costs: " + "; ".join(costs))


def test_watcherd_in_two_shards(make_fleet, make_pods):
    """The StatefulSet of overlays/watcherd-shards, two pods: each cluster
    is served by its shard alone; one shard's pod killed and played again:
    its clusters come back (a route made meanwhile gets its address), the
    other shard's are not touched (not resynced, no port moves)."""
    from test_shards import add_cluster
    fleet = make_fleet()
    a = add_cluster(fleet, "alpha", n2=0)
    b = add_cluster(fleet, "bravo", n2=1)
    pods = make_pods(fleet, overlay="watcherd-shards")
    costs = []
    t = time.monotonic()
    pods.start(shards=2)
    t = timed("five pods up (two shards)", t, costs)
    got = {}
    for c in (a, b):
        fleet.wait_api(c.host, timeout=60)
        out = c.kubectl_via_portico("get", "namespaces", "-o", "name").stdout
        assert "namespace/app" in out, out
        (got[c.name],) = fleet.wait_address(c, "app", "db", timeout=60)
        fleet.wait_serves(got[c.name], c.markers("app", "db", 5432), timeout=30)
    addr = {c.name: c.annotations("app", "db")[ADDRESS] for c in (a, b)}
    t = timed("both clusters routed through their shards", t, costs)

    s0, s1 = pods.pods["watcherd"], pods.pods["watcherd-1"]

    def resyncs(pod, name):
        return len(re.findall(r"\b%s: resync sent" % re.escape(name), pod.logs("watcherd")))
    # served exactly once: each cluster resynced by its own shard only
    assert resyncs(s0, "alpha") >= 1 and resyncs(s0, "bravo") == 0
    assert resyncs(s1, "bravo") >= 1 and resyncs(s1, "alpha") == 0

    alpha_before = resyncs(s0, "alpha")
    pods.kill(s1)
    t = timed("shard 1's pod killed", t, costs)
    # its cluster stays routed as it was; a route made meanwhile waits
    fleet.wait_serves(got["bravo"], b.markers("app", "db", 5432), timeout=10)
    b.create(harness.virtualservice("db2", "app", [[harness.dest("db", 5432)]],
                                    annotations={EXPOSE: "true"}))
    pods.up(s1)
    s1.wait_ready(timeout=60)
    t = timed("shard 1 played again, ready", t, costs)
    (new,) = fleet.wait_address(b, "app", "db2", timeout=60)
    fleet.wait_serves(new, b.markers("app", "db", 5432), timeout=30)
    t = timed("its cluster back: the new route live", t, costs)
    for c in (a, b):
        assert fleet.wait_address(c, "app", "db") == [got[c.name]]
        assert c.annotations("app", "db")[ADDRESS] == addr[c.name]
        fleet.wait_serves(got[c.name], c.markers("app", "db", 5432), timeout=30)
    # the other shard never resynced its cluster again
    assert resyncs(s0, "alpha") == alpha_before
    assert resyncs(s0, "bravo") == 0
    print("costs: " + "; ".join(costs))


def test_strangers_and_a_fake_renderd_are_refused(make_fleet, make_pods):
    """The bus between the pods is CURVE: from outside the pods, a client
    with a key of its own or none is refused at allocd's input (nothing it
    sends reaches the store or a proxy); a fake renderd on renderd's
    address, without renderd's secret key, feeds applyd nothing."""
    zmq = pytest.importorskip("zmq")
    msgpack = pytest.importorskip("msgpack")
    from test_curve import client, observation_cluster_up
    E = harness.testlib.events
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    pods = make_pods(fleet)
    costs = []
    t = time.monotonic()
    pods.start()
    port = expose(fleet, pay, "payments", "ledger-db")[0]
    ledger = pay.markers("payments", "ledger-db", 5432)
    fleet.wait_serves(port, ledger)
    cfg = pods.proxy_cfg()
    assert "p%d" % port in cfg
    t = timed("four pods up, one route live", t, costs)

    allocd = pods.pods["allocd"]
    alloc_in = "tcp://%s:%d" % (pods.allocd_addr, pods.bus_ports[0])
    with open(os.path.join(pods.deploy, "base", "secrets", "allocd.pub")) as f:
        alloc_key = f.readline().strip().encode()
    n0 = _counter(allocd, "bus_refused")
    ctx = zmq.Context()
    socks = []
    try:
        for name, pair in (("stranger", zmq.curve_keypair()), ("null", None)):
            socks.append(client(ctx, alloc_in, alloc_key, pair))
            socks[-1].send(observation_cluster_up("evil-" + name), zmq.NOBLOCK)
        try:
            harness.testlib.wait_until(
                lambda: _counter(allocd, "bus_refused") >= n0 + 2, 60,
                "allocd's pod to count two refusals")
        except AssertionError as e:
            raise AssertionError("%s (from %d to %d):\n%s" % (
                e, n0, _counter(allocd, "bus_refused"),
                harness.tail(allocd.logs("allocd"), 40)))
    finally:
        for s in socks:
            s.close()
    assert "evil" not in allocd.logs("allocd")
    t = timed("two strangers refused", t, costs)

    applyd = pods.pods["applyd-a"]
    served = applyd.logs("applyd").count("serving generation")
    renderd = pods.pods["renderd-0"]
    pods.kill(renderd)
    pub, sync = ctx.socket(zmq.PUB), ctx.socket(zmq.ROUTER)
    monitors = []
    try:
        fpub, fsec = zmq.curve_keypair()
        for sock, p in ((pub, pods.bus_ports[3]), (sync, pods.bus_ports[4])):
            sock.setsockopt(zmq.LINGER, 0)
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = fpub, fsec
            monitors.append(sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL))
            sock.bind("tcp://%s:%d" % (pods.render_addr[0], p))
        # what it would say: a table without the route, at a new generation
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
        assert failed >= 3, "applyd never knocked at the fake renderd"
        assert not sync.poll(0, zmq.POLLIN)
    finally:
        for m in monitors:
            m.close()
        pub.close()
        sync.close()
        ctx.destroy(linger=0)
    assert applyd.logs("applyd").count("serving generation") == served
    assert pods.proxy_cfg() == cfg
    assert fleet.marker(port) in ledger
    timed("a fake renderd: applyd refused it, the proxy unchanged", t, costs)
    print("costs: " + "; ".join(costs))


def _counter(pod, name):
    """A daemon's loop counter, from its /metrics."""
    status, body = pod.http("/metrics")
    m = re.search(r'portico_loop_counter_total\{name="%s"\} (\d+)' % name, body or "")
    return int(m.group(1)) if m else 0


def _serves(addr, port, expect):
    try:
        return harness.read_marker(addr, port, 2) in expect
    except OSError:
        return False


def test_manifests_are_real_kinds():
    """What a user applies: kubectl kustomize (offline) makes the kinds the
    design names, and the overlay turns applyd into a Deployment."""
    import playable
    import shutil
    import tempfile
    d = tempfile.mkdtemp(prefix="pt-kust-")
    try:
        shutil.copytree(podlib.DEPLOY, os.path.join(d, "k"))
        ca = os.path.join(d, "ca.crt")
        with open(ca, "w") as fh:
            fh.write("not read\n")
        subprocess.run(["sh", os.path.join(d, "k", "make-secrets.sh"), "-c", ca],
                       check=True, stdout=subprocess.DEVNULL, timeout=30,
                       env=dict(os.environ, PORTICO_PKS_SECRET="x",
                                PORTICOCTL=harness.daemon_path("porticoctl")))
        kinds = {(x["kind"], x["metadata"]["name"])
                 for x in playable.kustomize(os.path.join(d, "k"))}
        over = {(x["kind"], x["metadata"]["name"]) for x in playable.kustomize(
            os.path.join(d, "k", "overlays", "applyd-deployment"))}
        shards = playable.find(playable.kustomize(
            os.path.join(d, "k", "overlays", "watcherd-shards")),
            "StatefulSet", "portico-watcherd")
    finally:
        shutil.rmtree(d)
    for k in (("Namespace", "portico"), ("ServiceAccount", "portico"),
              ("StatefulSet", "portico-allocd"), ("StatefulSet", "portico-watcherd"),
              ("Deployment", "portico-renderd"), ("Service", "portico-renderd"),
              ("DaemonSet", "portico-applyd")):
        assert k in kinds, k
    assert {n.rsplit("-", 1)[0] for k, n in kinds if k == "ConfigMap"} == \
        {"portico-config", "portico-bus-pub"}
    assert {n.rsplit("-", 1)[0] for k, n in kinds if k == "Secret"} == \
        {"portico-pks", "portico-proof", "portico-key-allocd", "portico-key-watcherd",
         "portico-key-renderd", "portico-key-applyd"}
    assert ("Deployment", "portico-applyd") in over
    assert ("DaemonSet", "portico-applyd") not in over
    # the shards' count in its two places, agreeing
    assert shards["spec"]["replicas"] == 2
    assert shards["spec"]["template"]["spec"]["containers"][0]["env"] == \
        [{"name": "PORTICO_SHARDS", "value": "2"}]


def test_bus_bind_is_an_address(make_fleet):
    """[bus] bind: an IP address (what a pod binds its tcp:// endpoints
    on), printed by -n; anything else is a configuration error."""
    harness.need("allocd")
    fleet = make_fleet()
    for value, ok in (("0.0.0.0", True), ("::", True), ("eth0", False),
                      ("portico-allocd", False)):
        fleet.write_conf(bus={"bind": value})
        p = subprocess.run([harness.daemon_path("allocd"), "-n", "-f", fleet.conf_path],
                           capture_output=True, text=True, timeout=30)
        if ok:
            assert p.returncode == 0, p.stderr
            assert "\nbind = %s\n" % value in p.stdout, p.stdout
        else:
            assert p.returncode == 1, p.stdout
            assert "[bus] bind: not an IP address: %s" % value in p.stderr, p.stderr
