"""What watcherd takes from a cluster's objects, tried as a tenant would:
real watcherd, allocd, renderd, applyd and HAProxy (nginx too where names
reach its configuration), the real kubectl where a user would use it, and
TCP through the proxies.

- A VirtualService of one namespace cannot publish another namespace's
  Service unless that Service's owner consents (portico.dev/allow-from on
  the Service), in nodeport and in endpoints mode; consent can be given,
  narrowed and withdrawn, and withdrawn it stops the traffic.
- Names the API server accepts (a label past 63 characters) are routed;
  names it would not are ignored, and named in the log safely.
- No ready node, a Service port past the 32nd, a weight that is not an
  integer: each is a clear refusal, or (the port) no refusal at all.
"""

import json

import harness
import testlib
from harness import ADDRESS, ALLOW_FROM, ERROR, EXPOSE, dest, need, steady, virtualservice
from test_endpoints import serves_exactly

KS = "kube-system"
TA = "tenant-a"
TB = "tenant-b"
SECRET = "etcd-metrics"


def exposed(name, ns, host, port, weight=None):
    return virtualservice(name, ns, [[dest(host, port, weight)]], {EXPOSE: "true"})


def no_consent(host, ns):
    """The refusal of a destination in another namespace: the same words
    whether or not the Service exists there."""
    return ("destination %s: in another namespace, and no service there allows "
            "routes from %s (%s)" % (host, ns, ALLOW_FROM))


def never_reaches(fleet, port, forbidden, n=6):
    """n connections to port: none reaches a marker in forbidden."""
    for _ in range(n):
        try:
            marker = fleet.marker(port, 2)
        except OSError:
            continue
        assert marker not in forbidden, "port %d reached %s" % (port, marker)


def allow_from(cluster, value):
    """The Service owner's consent, as they would give it: kubectl annotate
    (None: withdrawn)."""
    arg = ALLOW_FROM + "-" if value is None else "%s=%s" % (ALLOW_FROM, value)
    cluster.kubectl("annotate", "--overwrite", "service", SECRET, "-n", KS, arg)


def tenants_cluster(fleet, **kw):
    """kube-system's etcd-metrics, tenant-a's own web, and VirtualServices
    of tenant-a and tenant-b that point at etcd-metrics."""
    services = [(SECRET, KS, [2381]), ("web", TA, [8080])]
    vss = [exposed("steal", TA, SECRET + "." + KS, 2381),
           exposed("steal-fqdn", TA, SECRET + "." + KS + ".svc.cluster.local", 2381),
           exposed("probe", TA, "nothere." + KS, 2381),
           exposed("web", TA, "web", 8080),
           exposed("peek", TB, SECRET + "." + KS + ".svc", 2381),
           exposed("metrics", KS, SECRET, 2381)]
    return fleet.add_cluster("tenants", services, vss, **kw)


def test_cross_namespace_needs_consent_nodeport(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    ten = tenants_cluster(fleet)
    fleet.start()
    secret = ten.markers(KS, SECRET, 2381)

    # Each namespace's own Services are routed.
    (web,) = fleet.wait_address(ten, TA, "web")
    fleet.wait_serves(web, ten.markers(TA, "web", 8080))
    (metrics,) = fleet.wait_address(ten, KS, "metrics")
    fleet.wait_serves(metrics, secret)

    # Another namespace's are refused: no port, and the same words whether
    # the Service is there or not (no map of kube-system from errors).
    for name, host in (("steal", SECRET + "." + KS),
                       ("steal-fqdn", SECRET + "." + KS + ".svc.cluster.local"),
                       ("probe", "nothere." + KS)):
        assert fleet.wait_annotation(ten, TA, name, ERROR) == no_consent(host, TA), name
    assert fleet.wait_annotation(ten, TB, "peek", ERROR) == \
        no_consent(SECRET + "." + KS + ".svc", TB)
    for ns, name in ((TA, "steal"), (TA, "steal-fqdn"), (TA, "probe"), (TB, "peek")):
        assert ADDRESS not in ten.annotations(ns, name), name
    assert sorted(fleet.routed_ports()) == sorted([web, metrics])

    # Consent for tenant-b alone: peek comes up, steal stays refused.
    allow_from(ten, TB)
    (peek,) = fleet.wait_address(ten, TB, "peek")
    fleet.wait_no_annotation(ten, TB, "peek", ERROR)
    fleet.wait_serves(peek, secret)
    assert ten.annotations(TA, "steal")[ERROR] == no_consent(SECRET + "." + KS, TA)
    assert ADDRESS not in ten.annotations(TA, "steal")
    assert sorted(fleet.routed_ports()) == sorted([web, metrics, peek])

    # A value that is no list of namespaces lets no one in: peek loses
    # its traffic at once, and the log says why, naming only the Service.
    allow_from(ten, "tenant-b;tenant-a")
    assert fleet.wait_annotation(ten, TB, "peek", ERROR, value=no_consent(
        SECRET + "." + KS + ".svc", TB))
    fleet.wait_refused(peek)
    bad = "tenants: service %s/%s: %s is not a list of namespaces" % (KS, SECRET, ALLOW_FROM)
    assert fleet["watcherd"].log().count(bad) == 1
    # so is a list longer than 4,096 characters, however valid its names
    allow_from(ten, ",".join([TA] * 500))
    testlib.wait_until(lambda: fleet["watcherd"].log().count(bad) == 2, 30,
                       "the overlong list logged")

    # Both, with spaces: both come up, and steal reaches kube-system's Service.
    allow_from(ten, " tenant-b , tenant-a ")
    (steal,) = fleet.wait_address(ten, TA, "steal")
    fleet.wait_no_annotation(ten, TA, "steal", ERROR)
    testlib.wait_until(serves_exactly(fleet, steal, secret), 30, "steal served")
    fleet.wait_address(ten, TB, "peek")
    testlib.wait_until(serves_exactly(fleet, peek, secret), 30, "peek served again")
    # ... and a host in kube-system that names no Service is still refused.
    assert ten.annotations(TA, "probe")[ERROR] == no_consent("nothere." + KS, TA)

    # Consent withdrawn: refused again, and the port stops reaching it.
    allow_from(ten, None)
    fleet.wait_annotation(ten, TA, "steal", ERROR, value=no_consent(SECRET + "." + KS, TA))
    fleet.wait_refused(steal)
    fleet.wait_refused(peek)
    never_reaches(fleet, steal, secret)
    # The rest of the cluster kept its ports and its traffic.
    testlib.wait_until(serves_exactly(fleet, web, ten.markers(TA, "web", 8080)), 30, "web")
    testlib.wait_until(serves_exactly(fleet, metrics, secret), 30, "metrics")
    assert fleet.wait_address(ten, TA, "web") == [web]

    # Consent for every namespace: steal is back on the port it had.
    allow_from(ten, "*")
    fleet.wait_no_annotation(ten, TA, "steal", ERROR)
    testlib.wait_until(serves_exactly(fleet, steal, secret), 30, "steal back")
    assert fleet.wait_address(ten, TA, "steal") == [steal]

    # A route refused for another reason keeps what it had: a tenant who
    # breaks its own first destination must not keep kube-system's
    # backends once consent goes.
    spec = virtualservice("steal", TA, [[dest("nowhere", 2381, 50),
                                          dest(SECRET + "." + KS, 2381, 50)]])["spec"]
    ten.kubectl("patch", "virtualservice", "steal", "-n", TA, "--type=merge",
                "-p", json.dumps({"spec": spec}))
    fleet.wait_annotation(ten, TA, "steal", ERROR,
                          value="destination nowhere: no such service")
    allow_from(ten, None)
    fleet.wait_annotation(ten, TA, "steal", ERROR, value=no_consent(SECRET + "." + KS, TA))
    fleet.wait_refused(steal)
    never_reaches(fleet, steal, secret)
    assert fleet["watcherd"].alive()


def test_cross_namespace_needs_consent_endpoints(make_fleet):
    """In endpoints mode the pods are reached straight, even those of a
    ClusterIP-only Service: consent is needed all the same."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    ten = tenants_cluster(fleet, backend="endpoints", pods=1)
    # kube-system's Service has no nodePort at all
    svc = ten.sim.get("/api/v1/namespaces/%s/services/%s" % (KS, SECRET))
    svc["spec"]["type"] = "ClusterIP"
    for p in svc["spec"]["ports"]:
        del p["nodePort"]
    status, body = ten.sim.request("PUT", "/api/v1/namespaces/%s/services/%s"
                                   % (KS, SECRET), svc)
    assert status == 200, body
    fleet.start()
    pods = ten.pod_markers(KS, SECRET, 2381)

    (metrics,) = fleet.wait_address(ten, KS, "metrics")
    testlib.wait_until(serves_exactly(fleet, metrics, pods), 30, "metrics by its pod")
    assert fleet.wait_annotation(ten, TA, "steal", ERROR) == no_consent(SECRET + "." + KS, TA)
    assert ADDRESS not in ten.annotations(TA, "steal")
    (web,) = fleet.wait_address(ten, TA, "web")
    assert sorted(fleet.routed_ports()) == sorted([web, metrics])

    allow_from(ten, TA)
    (steal,) = fleet.wait_address(ten, TA, "steal")
    testlib.wait_until(serves_exactly(fleet, steal, pods), 30, "steal by the pod")
    allow_from(ten, None)
    fleet.wait_annotation(ten, TA, "steal", ERROR, value=no_consent(SECRET + "." + KS, TA))
    fleet.wait_refused(steal)
    never_reaches(fleet, steal, pods)
    testlib.wait_until(serves_exactly(fleet, metrics, pods), 30, "metrics still")


LONG = "ledger-" + "x" * 70 + ".v1"          # a 70-character label: the API takes it


def test_names_kubernetes_accepts(make_fleet):
    """A VirtualService and a Node whose names hold a label past 63
    characters are routed through HAProxy and nginx alike; a name the API
    server would refuse is ignored, and the log names it safely."""
    need("allocd", "renderd", "applyd", "watcherd")
    b_listen = testlib.loopback_addr()
    fleet = make_fleet(proxies=[("a", "haproxy"), ("b", "nginx", b_listen)])
    ns = "shop"
    hostile = "Bad_Name\u001b[31m" + "z" * 300
    shop = fleet.add_cluster("shop", [("db", ns, [5432])], [
        virtualservice(LONG, ns, [[dest("db", 5432)]]),
        exposed(hostile, ns, "db", 5432)])
    # the second node, under a name with a 70-character label
    (n1, _), (n2, ip2) = shop.nodes
    long_node = "worker-" + "n" * 70 + ".rack-1"
    status, body = shop.sim.request("DELETE", "/api/v1/nodes/" + n2)
    assert status == 200, body
    status, body = shop.sim.request("POST", "/api/v1/nodes", harness.node(long_node, ip2))
    assert status == 201, body
    fleet.start()

    # Exposed as a user would, with kubectl; the address read back with it.
    shop.kubectl("annotate", "virtualservice", LONG, "-n", ns, EXPOSE + "=true")
    (port,) = fleet.wait_address(shop, ns, LONG)
    out = shop.kubectl("get", "virtualservice", LONG, "-n", ns, "-o", "json").stdout
    assert json.loads(out)["metadata"]["annotations"][ADDRESS] == \
        "%s:%d" % (shop.host, port)
    # Both nodes are backends, the long-named one too, on both proxies.
    both = shop.markers(ns, "db", 5432)
    for addr in (fleet.listen, b_listen):
        def check(addr=addr):
            fleet._check_alive()
            try:
                return {harness.read_marker(addr, port) for _ in range(8)} == both
            except OSError:
                return False
        testlib.wait_until(steady(check, 0.5), 30, "both nodes behind %s:%d" % (addr, port))
    assert "%s/%s route 0" % (ns, LONG) in fleet.proxy_cfg("a")
    assert "%s/%s route 0" % (ns, LONG) in fleet.proxy_cfg("b")

    # The hostile name: ignored, named safely (no escape byte, cut short).
    log = fleet["watcherd"].log()
    line = [x for x in log.splitlines() if "an object with an invalid name" in x]
    assert line, log
    assert line[0].endswith("was ignored: VirtualService shop/Bad_Name??31m" +
                            "z" * 55 + "..."), line[0]
    assert "\u001b" not in log
    assert fleet["watcherd"].alive()


def set_ready(cluster, node, ip, ready):
    """The node's Ready condition, as its kubelet writes it."""
    obj = harness.node(node, ip)
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                    "reason": "KubeletReady" if ready else "KubeletNotReady"}]
    status, body = cluster.sim.request("PUT", "/api/v1/nodes/%s/status" % node, obj)
    assert status == 200, body


def test_no_ready_node_is_refused_and_comes_back(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    ns = "shop"
    shop = fleet.add_cluster("shop", [("db", ns, [5432]), ("cache", ns, [6379])], [
        exposed("db", ns, "db", 5432), virtualservice("cache", ns, [[dest("cache", 6379)]])],
        nodes=1)
    search = harness.search_cluster(fleet)
    ((node, ip),) = shop.nodes
    set_ready(shop, node, ip, True)
    fleet.start()
    search.annotate("search", "index", **{EXPOSE: "true"})
    (sport,) = fleet.wait_address(search, "search", "index")
    (port,) = fleet.wait_address(shop, ns, "db")
    fleet.wait_serves(port, shop.markers(ns, "db", 5432))
    address = shop.annotations(ns, "db")[ADDRESS]

    # The one node goes not ready: refused with the reason, the port kept.
    set_ready(shop, node, ip, False)
    np = shop.node_ports[(ns, "db", 5432)]
    assert fleet.wait_annotation(shop, ns, "db", ERROR) == \
        "destination db: no ready node for nodePort %d" % np
    # a route exposed now gets no address at all
    shop.annotate(ns, "cache", **{EXPOSE: "true"})
    assert fleet.wait_annotation(shop, ns, "cache", ERROR) == \
        "destination cache: no ready node for nodePort %d" % shop.node_ports[(ns, "cache", 6379)]
    assert ADDRESS not in shop.annotations(ns, "cache")
    assert shop.annotations(ns, "db")[ADDRESS] == address
    # the other cluster is untouched
    testlib.wait_until(serves_exactly(fleet, sport, search.markers("search", "index", 9200)),
                       30, "search served")

    # Ready again: the error goes, the same port serves, cache comes up.
    set_ready(shop, node, ip, True)
    fleet.wait_no_annotation(shop, ns, "db", ERROR)
    fleet.wait_serves(port, shop.markers(ns, "db", 5432))
    assert fleet.wait_address(shop, ns, "db") == [port]
    (cport,) = fleet.wait_address(shop, ns, "cache")
    fleet.wait_no_annotation(shop, ns, "cache", ERROR)
    fleet.wait_serves(cport, shop.markers(ns, "cache", 6379))


def test_service_port_past_the_32nd(make_fleet):
    """A Service port past the 32nd is routed; a Service of more ports than
    portico keeps is refused in those words."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    ns = "shop"
    many = list(range(7000, 7040))                      # 40 ports
    shop = fleet.add_cluster("shop", [("many", ns, many)], [
        exposed("port-35", ns, "many", many[34]), exposed("huge", ns, "huge", 1)], nodes=1)
    huge = harness.service("huge", ns, [(p, 30000 + p) for p in range(1, 1026)])
    status, body = shop.sim.request("POST", "/api/v1/namespaces/%s/services" % ns, huge)
    assert status == 201, body
    fleet.start()

    (p35,) = fleet.wait_address(shop, ns, "port-35")
    fleet.wait_serves(p35, shop.markers(ns, "many", many[34]))
    assert fleet.wait_annotation(shop, ns, "huge", ERROR) == \
        "destination huge: the service has more than 1024 ports"
    assert ADDRESS not in shop.annotations(ns, "huge")


def test_weight_must_be_an_integer(make_fleet):
    """A weight that is not an integer is refused (it was taken as 1); a
    null one is as if absent."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    ns = "shop"
    shop = fleet.add_cluster("shop", [("db", ns, [5432])], [
        exposed("w-string", ns, "db", 5432, weight="50"),
        exposed("w-real", ns, "db", 5432, weight=2.5),
        exposed("w-null", ns, "db", 5432),
        virtualservice("w-bool", ns, [[dict(dest("db", 5432), weight=True)]],
                       {EXPOSE: "true"}),
    ], nodes=1)
    # "w-null" with an explicit JSON null weight
    vs = shop.vs(ns, "w-null")
    vs["spec"]["tcp"][0]["route"][0]["weight"] = None
    status, body = shop.sim.request("PUT", "%s/namespaces/%s/virtualservices/w-null"
                                    % (harness.VS_API, ns), vs)
    assert status == 200, body
    fleet.start()

    (wn,) = fleet.wait_address(shop, ns, "w-null")
    fleet.wait_serves(wn, shop.markers(ns, "db", 5432))
    for name in ("w-string", "w-real", "w-bool"):
        assert fleet.wait_annotation(shop, ns, name, ERROR) == \
            "tcp[0]: destination weight is not an integer", name
        assert ADDRESS not in shop.annotations(ns, name), name
