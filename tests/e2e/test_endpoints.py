"""The endpoints backend mode: a cluster named in a [cluster.NAME] section
with backend = endpoints is routed straight to its pods, the ready
endpoints of the EndpointSlices of each destination Service, at the target
port; a cluster beside it in the default nodeport mode goes on through its
nodes. Pods coming and going move the backends, never the address."""

import harness
import testlib
from harness import ADDRESS, ERROR, EXPOSE, dest, need, steady, virtualservice

NS = "shop"


def shop_cluster(fleet):
    """A cluster in endpoints mode: "orders" with two ready pods, "idle"
    whose two pods are not ready; both exposed."""
    services = [("orders", NS, [5432]), ("idle", NS, [6000])]
    vss = [virtualservice("orders", NS, [[dest("orders", 5432)]], {EXPOSE: "true"}),
           virtualservice("idle", NS, [[dest("idle.shop.svc.cluster.local", 6000)]],
                          {EXPOSE: "true"})]
    shop = fleet.add_cluster("shop", services, vss, backend="endpoints", pods=2)
    for pod, _ in shop.pods[(NS, "idle")]:
        shop.set_ready(NS, "idle", pod, False)
    return shop


def serves_exactly(fleet, port, expect, n=8):
    """A condition: n connections to port reach exactly the markers expect."""
    def check():
        fleet._check_alive()
        try:
            return set(fleet.markers(port, n)) == expect
        except OSError:
            return False
    return steady(check, 0.5)


def test_endpoints_and_nodeport_clusters(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    shop = shop_cluster(fleet)
    search = harness.search_cluster(fleet)
    fleet.start()
    conf = open(fleet.conf_path).read()
    assert "[cluster.shop]\nbackend = endpoints" in conf
    assert "cluster.search" not in conf

    # Served straight at the pods' addresses: their markers, no node's.
    (port,) = fleet.wait_address(shop, NS, "orders")
    address = shop.annotations(NS, "orders")[ADDRESS]
    pods = shop.pod_markers(NS, "orders", 5432)
    nodes = shop.markers(NS, "orders", 5432)
    assert len(pods) == 2 and not pods & nodes
    seen = fleet.markers(port, 8)
    assert set(seen) == pods, seen
    marker, echoed = harness.read_marker(fleet.listen, port, send=b"to the pod\n")
    assert marker in pods and echoed == b"to the pod\n"
    cfg = fleet.proxy_cfg()
    for _, ip in shop.pods[(NS, "orders")]:
        assert "%s:%d" % (ip, shop.target_ports[(NS, "orders", 5432)]) in cfg
    for _, ip in shop.nodes:
        assert ip not in cfg

    # A pod turning not ready stops getting connections.
    (p1, _), (p2, _) = shop.pods[(NS, "orders")]
    shop.set_ready(NS, "orders", p1, False)
    testlib.wait_until(serves_exactly(fleet, port, shop.pod_markers(
        NS, "orders", 5432, [p2])), 30, "only %s served" % p2)
    # A new pod in the slice starts getting them.
    p3 = shop.add_pod(NS, "orders")
    testlib.wait_until(serves_exactly(fleet, port, shop.pod_markers(
        NS, "orders", 5432, [p2, p3])), 30, "%s and %s served" % (p2, p3))
    # A pod taken out of the slice stops getting them.
    shop.remove_pod(NS, "orders", p2)
    testlib.wait_until(serves_exactly(fleet, port, shop.pod_markers(
        NS, "orders", 5432, [p3])), 30, "only %s served" % p3)
    # ... and the address never moved.
    ann = shop.annotations(NS, "orders")
    assert ann[ADDRESS] == address and ERROR not in ann, ann

    # A Service with no ready endpoint: refused, with the reason.
    why = fleet.wait_annotation(shop, NS, "idle", ERROR)
    assert why == "destination idle.shop.svc.cluster.local: no ready endpoint " \
        "for port 6000", why
    assert ADDRESS not in shop.annotations(NS, "idle")
    # One of its pods ready: it is routed, and the error goes.
    (i1, _), _ = shop.pods[(NS, "idle")]
    shop.set_ready(NS, "idle", i1, True)
    (iport,) = fleet.wait_address(shop, NS, "idle")
    fleet.wait_no_annotation(shop, NS, "idle", ERROR)
    fleet.wait_serves(iport, shop.pod_markers(NS, "idle", 6000, [i1]))

    # The nodeport cluster beside it works as before.
    search.annotate("search", "index", **{EXPOSE: "true"})
    (sport,) = fleet.wait_address(search, "search", "index")
    seen = fleet.markers(sport, 8)
    assert set(seen) == search.markers("search", "index", 9200), seen

    # Each cluster is watched for what its mode needs: slices or nodes.
    eps, nodes = "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/nodes"
    got = shop.sim_control("GET", "requests")
    assert got.get("list " + eps) and not got.get("list " + nodes), got
    got = search.sim_control("GET", "requests")
    assert got.get("list " + nodes) and not got.get("list " + eps), got


def listen(shop, marker, port):
    """A workload at a fresh loopback address (closed with the cluster)."""
    for _ in range(20):
        ip = testlib.loopback_addr()
        try:
            shop.servers.append(harness.EchoServer(ip, port, marker))
            return ip
        except OSError:
            continue
    raise RuntimeError("no address for %s" % marker)


def post_slice(shop, obj):
    status, body = shop.sim.request(
        "POST", "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices"
        % obj["metadata"]["namespace"], obj)
    assert status == 201, body


def test_slices_split_unnamed_and_hostile(make_fleet):
    """A Service's endpoints may come in several slices (each address and
    port once), an endpoint without conditions is ready, an unnamed
    Service port is matched by the slice port named "", and what is not an
    IP address, a slice of FQDNs, a slice holding a NUL and another
    Service's slice never reach the proxy or a log line."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    vss = [virtualservice("db", NS, [[dest("db", 5432)]], {EXPOSE: "true"}),
           virtualservice("solo", NS, [[dest("solo", 7000)]], {EXPOSE: "true"})]
    shop = fleet.add_cluster("shop", [("db", NS, [5432])], vss, backend="endpoints",
                             pods=1)
    tp = shop.target_ports[(NS, "db", 5432)]
    ((pod1, ip1),) = shop.pods[(NS, "db")]
    ip2 = listen(shop, "split@pod", tp)
    nul_ip = listen(shop, "nul@pod", tp)
    other_ip = listen(shop, "other@pod", tp)
    ports = [("p5432", tp)]
    split = harness.endpointslice("db-x2", NS, "db", ports, [
        {"addresses": [ip2]},                               # no conditions: ready
        harness.endpoint((NS, pod1), ip1, "n1"),            # also in db-x1
        {"addresses": ["10.0.0.1\n#pwn"], "conditions": {"ready": True}},
        {"addresses": ["pwn"]},
        {"addresses": ["::ffff:10.0.0.1 pwn"]},
        {"addresses": []},
    ])
    post_slice(shop, split)
    post_slice(shop, harness.endpointslice("db-x3", NS, "db", ports, [
        {"addresses": [nul_ip], "hostname": "pwn\u0000"}]))
    fqdn = harness.endpointslice("db-x4", NS, "db", ports,
                                 [{"addresses": ["pwn.example.test"]}])
    fqdn["addressType"] = "FQDN"
    post_slice(shop, fqdn)
    post_slice(shop, harness.endpointslice("other-x1", NS, "other", ports,
                                           [{"addresses": [other_ip]}]))
    # a Service with one unnamed port, its slice port named ""
    solo_tp = testlib.free_port(ip1)
    solo_ip = listen(shop, "solo@pod", solo_tp)
    svc = harness.service("solo", NS, [(7000, 0, solo_tp)])
    del svc["spec"]["ports"][0]["name"], svc["spec"]["ports"][0]["nodePort"]
    svc["spec"]["type"] = "ClusterIP"
    status, body = shop.sim.request("POST", "/api/v1/namespaces/%s/services" % NS, svc)
    assert status == 201, body
    post_slice(shop, harness.endpointslice("solo-x1", NS, "solo", [("", solo_tp)],
                                           [{"addresses": [solo_ip]}]))
    fleet.start()

    (port,) = fleet.wait_address(shop, NS, "db")
    expect = shop.pod_markers(NS, "db", 5432) | {"split@pod"}
    testlib.wait_until(serves_exactly(fleet, port, expect), 30, "db served by %s" % expect)
    cfg = fleet.proxy_cfg()
    assert cfg.count("%s:%d " % (ip1, tp)) == 1, cfg    # once, from two slices
    (sport,) = fleet.wait_address(shop, NS, "solo")
    fleet.wait_serves(sport, {"solo@pod"})
    assert ERROR not in shop.annotations(NS, "solo")

    cfg = fleet.proxy_cfg()
    log = fleet["watcherd"].log()
    assert "pwn" not in cfg and "pwn" not in log
    assert nul_ip not in cfg and other_ip not in cfg
    # the three hostile addresses and the endpoint without one
    assert "endpointslice shop/db-x2: 4 endpoints without an IP address" in log, log
