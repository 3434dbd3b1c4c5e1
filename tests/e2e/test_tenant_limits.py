"""Tenants against one another (DESIGN.md, "Trust and tenants"), each
attack tried for real through the daemons, HAProxy and kubectl:

- a cluster that claims another's API host (by kubernetes_master_host, or
  by a name like a kubeconfig-folder cluster's) is refused, and kubectl
  for the holder still reaches the holder's API server;
- one cluster past its limits gets errors on the routes past them, and
  another cluster's new route still goes live, fast;
- a backend on loopback, link-local or a proxy's own address is refused,
  naming the address, and the public port never reaches it;
- no refusal names another tenant's route."""

import time

import harness
import testlib
from harness import ADDRESS, DOMAIN, ERROR, EXPOSE, PORT, need

E = testlib.events

# ids sort below any other cluster's: the old rule, "the lowest id wins",
# would hand the impostor the host.
IMPOSTOR_UUID = "00000000-0000-4000-8000-000000000001"


def vs_names(cluster, host=None, token_of=None):
    """The VirtualServices kubectl lists through HAProxy's SNI port, with
    cluster's token (or token_of's) and SNI host (cluster's own by default).
    Which API server answered shows in the names (and its certificate must
    verify for host, or kubectl fails)."""
    tok = (token_of or cluster).sim.token
    f = cluster.fleet
    cp = testlib.kubectl(["get", "virtualservices", "-A", "-o", "name"],
                         "https://%s:%d" % (f.listen, f.api_port), tok,
                         f.pki.ca_cert, cluster.cache_dir(),
                         tls_server_name=host or cluster.host)
    return sorted(line.split("/")[-1] for line in cp.stdout.split())


PAYMENTS_VS = ["cache", "ghost", "ledger-db", "orders-db", "reports", "web"]


def impostor(fleet, **kw):
    ns = "evil"
    return fleet.add_cluster("impostor", [("grab", ns, [8080])],
                             [harness.virtualservice("grab", ns,
                                                     [[harness.dest("grab", 8080)]])],
                             register=False, **kw)


def wait_log(daemon, text, timeout=30):
    testlib.wait_until(lambda: text in daemon.log(), timeout,
                       "%r in %s's log" % (text, daemon.name))


def test_pks_impostor_host_is_refused(make_fleet):
    """A PKS cluster whose kubernetes_master_host is payments' host: refused
    with a log line naming it; kubectl for payments still reaches payments,
    across an allocd restart; once payments goes, the newcomer has it."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    imp = impostor(fleet, master_host=pay.host)
    imp.uuid = IMPOSTOR_UUID
    fleet.start()
    fleet.wait_api(pay.host)
    assert vs_names(pay) == PAYMENTS_VS

    imp.register()
    # watcherd watches the impostor (its workloads may route: once one has
    # an address, allocd knows the cluster), but the host stays with
    # payments: the same server, every time.
    imp.annotate("evil", "grab", **{EXPOSE: "true"})
    fleet.wait_address(imp, "evil", "grab", timeout=60)
    testlib.wait_until(harness.steady(lambda: vs_names(pay) == PAYMENTS_VS, hold=3),
                       60, "kubectl for payments reaching payments, steadily")
    assert fleet.proxy_cfg().count("# sni %s\n" % pay.host) == 1
    wait_log(fleet["allocd"], "cluster %s claims host %s, which another cluster "
             "holds" % (IMPOSTOR_UUID, pay.host))

    # allocd restarted (watcherd resends both clusters to it): the first
    # holder still holds, for as long as we look.
    fleet["allocd"].stop()
    fleet["allocd"].start()
    testlib.wait_until(harness.steady(lambda: vs_names(pay) == PAYMENTS_VS, hold=5),
                       60, "kubectl for payments reaching payments, steadily")

    # The holder goes: the host is the newcomer's now.
    pay.unregister()
    testlib.wait_until(lambda: _names_or_none(imp, pay.host) == ["grab"], 60,
                       "the impostor routed at %s once payments went" % pay.host)

    # allocd's log replays to the same decisions.
    fleet["allocd"].stop()
    rc, out = _replay(fleet)
    assert rc == 0, out


def _names_or_none(cluster, host):
    try:
        return vs_names(cluster, host=host)
    except AssertionError:
        return None


def _replay(fleet):
    import subprocess
    cp = subprocess.run([harness.daemon_path("allocd"), "-f", fleet.conf_path,
                         "-R", fleet.store], capture_output=True, text=True,
                        timeout=120)
    return cp.returncode, cp.stdout + cp.stderr


def test_pks_cluster_named_like_a_kubeconfig_cluster(make_fleet):
    """payments comes from the kubeconfig folder; a PKS cluster named
    "payments" (routed as payments.<domain>) is refused, and kubectl for
    payments still reaches the folder's payments."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("pks", "kubeconfigs"))
    pay = harness.payments_cluster(fleet, register=False)
    pay.write_kubeconfig(".yaml")
    imp = impostor(fleet, master_host="impostor.elsewhere.example")
    fleet.start()
    fleet.wait_api(pay.host)
    assert vs_names(pay) == PAYMENTS_VS

    imp.register(name="payments")
    imp.annotate("evil", "grab", **{EXPOSE: "true"})
    fleet.wait_annotation(imp, "evil", "grab", ADDRESS, timeout=60)
    testlib.wait_until(harness.steady(lambda: vs_names(pay) == PAYMENTS_VS, hold=3),
                       60, "kubectl for payments reaching payments, steadily")
    assert fleet.proxy_cfg().count("# sni payments.%s\n" % DOMAIN) == 1
    wait_log(fleet["allocd"], "claims host payments.%s, which another cluster "
             "holds" % DOMAIN)


def _errors(cluster, ns, names):
    return {n: cluster.annotations(ns, n).get(ERROR) for n in names}


def goes_live_fast(fleet, search, beside):
    """search's index exposed now: its address within 15 s (generous, on a
    loaded machine; it takes a fraction of a second), serving. Its port."""
    t0 = time.monotonic()
    search.annotate("search", "index", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(search, "search", "index")
    took = time.monotonic() - t0
    fleet.wait_serves(port, search.markers("search", "index", 9200))
    print("search's route went live in %.2f s %s" % (took, beside))
    assert took < 15, took
    return port


def test_one_cluster_over_its_limits(make_fleet):
    """greedy exposes more routes than its port quota (one asking for a
    chosen port), wide more backends than its share: each gets errors on
    the routes past its limits and keeps the others; search's new route
    still goes live, fast; no error names another tenant's route."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=40)
    fleet.limits.update(ports_per_cluster=3, backends_per_cluster=7)
    ns = "greedy"
    names = ["g%d" % i for i in range(6)]
    greedy = fleet.add_cluster(
        "greedy", [("app", ns, [8080])],
        [harness.virtualservice(n, ns, [[harness.dest("app", 8080)]]) for n in names],
        nodes=1)
    wide = fleet.add_cluster(
        "wide", [("app", "wide", [8080])],
        [harness.virtualservice(n, "wide", [[harness.dest("app", 8080)]])
         for n in ("w0", "w1", "w2")], nodes=3)
    search = harness.search_cluster(fleet)
    fleet.start()

    for n in names[:3]:
        greedy.annotate(ns, n, **{EXPOSE: "true"})
    held = {n: fleet.wait_address(greedy, ns, n)[0] for n in names[:3]}
    # past the quota: a plain route, and one camping on a chosen free port
    camp = next(p for p in range(fleet.port_lo, fleet.port_hi + 1)
                if p not in held.values())
    greedy.annotate(ns, "g3", **{EXPOSE: "true"})
    greedy.annotate(ns, "g4", **{EXPOSE: "true", PORT: str(camp)})
    for n in ("g3", "g4"):
        err = fleet.wait_annotation(greedy, ns, n, ERROR)
        assert err.startswith("the cluster holds 3 ports, its quota"), err
        assert ADDRESS not in greedy.annotations(ns, n)

    # wide: 3 nodes, so 3 backends a route; 7 in all fit two routes
    for n in ("w0", "w1"):
        wide.annotate("wide", n, **{EXPOSE: "true"})
        fleet.wait_address(wide, "wide", n)
    wide.annotate("wide", "w2", **{EXPOSE: "true"})
    err = fleet.wait_annotation(wide, "wide", "w2", ERROR)
    assert "would have 9 backends, more than its 7" in err, err

    # the camped port is search's to have (asked for first: index's port,
    # picked by its hash, could otherwise land on it)
    search.annotate("search", "query", **{EXPOSE: "true", PORT: str(camp)})
    assert fleet.wait_address(search, "search", "query") == [camp]
    # another tenant is not held up by either
    port = goes_live_fast(fleet, search, "beside clusters over their limits")

    # greedy's held routes still serve their own workload
    for n, p in held.items():
        assert fleet.marker(p) in greedy.markers(ns, "app", 8080)
    # a port let go makes room: the first refused, g3, goes live by itself
    greedy.annotate(ns, "g0", **{EXPOSE: None})
    fleet.wait_address(greedy, ns, "g3")
    fleet.wait_no_annotation(greedy, ns, "g3", ERROR)
    assert ADDRESS not in greedy.annotations(ns, "g4")

    # within its quota, asking for another tenant's port: refused, naming
    # nothing of theirs
    greedy.annotate(ns, "g1", **{EXPOSE: None})
    fleet.wait_no_annotation(greedy, ns, "g1", ADDRESS)
    greedy.annotate(ns, "g5", **{EXPOSE: "true", PORT: str(port)})
    err = fleet.wait_annotation(greedy, ns, "g5", ERROR)
    assert err == "port %d is taken" % port, err
    for c, cns, vnames in ((greedy, ns, names), (wide, "wide", ["w2"])):
        for n, e in _errors(c, cns, vnames).items():
            assert e is None or ("search" not in e and search.uuid not in e), (n, e)


def test_a_cluster_of_many_nodes(make_fleet):
    """The issue's freeze: a cluster with hundreds of Nodes and many
    exposed routes, every route carrying every node.  Its routes past its
    backends share are refused with the reason; renderd, applyd and
    HAProxy go on; another cluster's new route goes live, fast."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    fleet.limits.update(backends_per_cluster=2000)
    ns = "huge"
    names = ["h%02d" % i for i in range(12)]
    huge = fleet.add_cluster(
        ns, [("app", ns, [8080])],
        [harness.virtualservice(n, ns, [[harness.dest("app", 8080)]]) for n in names],
        nodes=1)
    for i in range(499):        # 500 nodes in all
        status, body = huge.sim.request("POST", "/api/v1/nodes", harness.node(
            "huge-%03d" % i, "10.77.%d.%d" % (i // 250, i % 250 + 1)))
        assert status == 201, body
    search = harness.search_cluster(fleet)
    fleet.start()
    for n in names:
        huge.annotate(ns, n, **{EXPOSE: "true"})

    def settled():
        ann = [huge.annotations(ns, n) for n in names]
        return all(ADDRESS in a or ERROR in a for a in ann) and ann
    ann = testlib.wait_until(settled, 120, "every route of huge settled")
    live = [a for a in ann if ADDRESS in a]
    refused = [a[ERROR] for a in ann if ERROR in a]
    assert len(live) == 4, ann            # 4 x 500 backends = its 2,000
    assert len(refused) == 8, ann
    for e in refused:
        assert "backends, more than its 2000 (backends_per_cluster)" in e, e

    goes_live_fast(fleet, search, "beside a cluster of 500 nodes")
    for d in ("allocd", "renderd", "applyd", "watcherd"):
        assert fleet[d].alive(), d


def local_node_cluster(fleet, name, marker):
    """A cluster whose admin added a Node at 127.0.0.1 ("<name>-lo") beside
    its worker, a listener there (on the proxy host: this one) greeting
    with marker, and a Service "local" whose nodePort is that listener's
    port: its VirtualService "local" sends the public port to it."""
    port = testlib.free_port("127.0.0.1")
    c = fleet.add_cluster(name, [("app", name, [8080])],
                          [harness.virtualservice("local", name,
                                                  [[harness.dest("local", 80)]])],
                          nodes=1)
    c.servers.append(harness.EchoServer("127.0.0.1", port, marker))
    status, body = c.sim.request("POST", "/api/v1/namespaces/%s/services" % name,
                                 harness.service("local", name, [(80, port)]))
    assert status == 201, body
    status, body = c.sim.request("POST", "/api/v1/nodes",
                                 harness.node(name + "-lo", "127.0.0.1"))
    assert status == 201, body
    return c


def test_backends_into_the_proxy_host_are_refused(make_fleet):
    """A cluster admin adds a Node whose InternalIP is 127.0.0.1 (where a
    service of the proxy host listens), then 169.254.169.254, then the
    proxy's own address: the route is refused each time, naming the
    address and its kind, and the public port never reaches 127.0.0.1.
    Another cluster's routes are untouched."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    ns = "evil"
    evil = local_node_cluster(fleet, ns, "SECRET-of-the-proxy-host")
    fleet.start()
    pay.annotate("payments", "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, "payments", "ledger-db")

    evil.annotate(ns, "local", **{EXPOSE: "true"})
    err = fleet.wait_annotation(evil, ns, "local", ERROR)
    assert err == "backend 127.0.0.1 is loopback", err
    assert ADDRESS not in evil.annotations(ns, "local")
    cfg = fleet.proxy_cfg()
    assert "server 127.0.0.1_" not in cfg
    for p in fleet.routed_ports():
        for _ in range(4):
            assert fleet.marker(p) != "SECRET-of-the-proxy-host"

    for ip, why in (("169.254.169.254", "backend 169.254.169.254 is link-local"),
                    (fleet.listen, "backend %s is the address proxy %s listens on"
                     % (fleet.listen, harness.HAPROXY_NAME))):
        # a Node's addresses are status: the node is made anew
        status, body = evil.sim.request("DELETE", "/api/v1/nodes/evil-lo")
        assert status == 200, body
        status, body = evil.sim.request("POST", "/api/v1/nodes",
                                        harness.node("evil-lo", ip))
        assert status == 201, body
        fleet.wait_annotation(evil, ns, "local", ERROR, value=why)
        # (between the two, the route had a good node alone and may
        # hold a port: it keeps it, and the backends it had)
        assert "server %s_" % ip not in fleet.proxy_cfg()

    # the node fixed: the route goes live on the good node alone
    status, body = evil.sim.request("DELETE", "/api/v1/nodes/evil-lo")
    assert status == 200, body
    fleet.wait_address(evil, ns, "local")
    fleet.wait_no_annotation(evil, ns, "local", ERROR)
    # payments kept its port and its traffic throughout
    assert pay.annotations("payments", "ledger-db")[ADDRESS] == \
        "%s:%d" % (pay.host, ledger)
    assert fleet.marker(ledger) in pay.markers("payments", "ledger-db", 5432)
    assert fleet["allocd"].alive()


def test_backends_allowed_by_range(make_fleet):
    """[limits] allow_backends lets a range through: 127.0.0.1 allowed, the
    route is live and its port reaches the listener there."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    fleet.limits["allow_backends"] = harness.TEST_BACKENDS + ", 127.0.0.1/32"
    ops = local_node_cluster(fleet, "ops", "allowed-local")
    fleet.start()
    ops.annotate("ops", "local", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(ops, "ops", "local")
    fleet.wait_serves(port, {"allowed-local"})


def test_masters_into_the_proxy_host_are_refused(make_fleet):
    """A kubeconfig whose server is https://127.0.0.1:PORT (a port of the
    proxy host): watcherd never connects there with the file's credentials,
    that cluster is not routed, and the log says why; the folder's other
    cluster is."""
    import socket
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("kubeconfigs",))
    pay = harness.payments_cluster(fleet, register=False)
    pay.write_kubeconfig(".yaml")
    path = pay.write_kubeconfig(".yaml", name="sneaky")
    trap = socket.socket()
    trap.bind(("127.0.0.1", 0))
    trap.listen(16)
    trap.setblocking(False)
    with open(path) as f:
        text = f.read().replace(pay.sim.url, "https://127.0.0.1:%d" % trap.getsockname()[1])
    with open(path, "w") as f:
        f.write(text)
    fleet.start()
    fleet.wait_api(pay.host)
    wait_log(fleet["watcherd"], "kubeconfigs: sneaky.yaml: server 127.0.0.1: "
             "127.0.0.1 is loopback; not connected to")
    # the folder's other cluster is up: nothing knocked on the trap's door
    try:
        trap.accept()
        knocked = True
    except BlockingIOError:
        knocked = False
    trap.close()
    assert not knocked, "watcherd connected to a loopback master"
    assert "sneaky" not in fleet["allocd"].log()
    assert "# sni sneaky.%s\n" % DOMAIN not in fleet.proxy_cfg()
    assert "server 127.0.0.1_" not in fleet.proxy_cfg()
    assert vs_names(pay) == PAYMENTS_VS


def test_store_bounded_by_bytes(tmp_path):
    """Routes of 1,024 backends whose backends keep changing: far fewer
    records than compact_records, but past compact_mb of log, so the log
    is compacted; allocd keeps serving, and its log replays the same."""
    import subprocess

    import msgpack
    import zmq
    need("allocd")
    run = tmp_path / "run"
    lo = testlib.free_port("127.0.0.1")
    conf = tmp_path / "portico.conf"
    conf.write_text("[portico]\ndomain = bytes.test\nrun_dir = %s\nlisten = %s\n"
                    "api_port = %d\nports = %d-%d\n[store]\npath = %s\n"
                    "compact_records = 1000000\ncompact_mb = 1\n"
                    "[kubeconfigs]\ndir = %s\n"
                    % (run, testlib.loopback_addr(), lo, lo + 1, lo + 10,
                       tmp_path / "store", tmp_path))
    allocd = testlib.Proc([harness.daemon_path("allocd"), "-d", "-f", str(conf)],
                          "allocd", str(tmp_path))
    ctx = zmq.Context()
    try:
        testlib.wait_until(lambda: (run / "allocd.pid").exists(), 20, "allocd ready")
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect("ipc://%s/alloc.in" % run)
        for seq in range(1, 121):
            body = {E.F_CLUSTER: "bytes", E.F_NS: "ns", E.F_NAME: "wide", E.F_ROUTE: 0,
                    E.F_BACKENDS: [["10.%d.%d.%d" % (seq % 200, i // 250, i % 250 + 1),
                           30000 + seq, 1] for i in range(1024)]}
            sock.send(msgpack.packb([E.VERSION, E.EV_ROUTE, seq, 0, body]))
            assert sock.poll(20000), "no ack from allocd"
            sock.recv()
        testlib.wait_until(lambda: "compacted the log" in allocd.log(), 30,
                           "allocd to compact a log of 240 records past 1 MiB")
        assert allocd.alive()
        allocd.stop()
        cp = subprocess.run([harness.daemon_path("allocd"), "-f", str(conf), "-R",
                             str(tmp_path / "store")], capture_output=True, text=True,
                            timeout=120)
        assert cp.returncode == 0 and "identical" in cp.stdout, cp.stdout + cp.stderr
    finally:
        ctx.destroy(linger=0)
        if allocd.alive():
            allocd.kill9()
