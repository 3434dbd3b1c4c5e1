"""The Gateway API in portico: a GatewayClass naming portico's controller, a
Gateway of that class, and the TCPRoutes and TLSRoutes attached to it, applied
with the real kubectl as a user writes them.  A TCPRoute gets a port of its
own (TCP flows through HAProxy to its backendRefs), its status says Accepted,
its address is written back; detached or deleted, the port goes into
quarantine.  A TLSRoute's hostnames are SNI names on the shared TLS port:
one under the cluster's own host is observed (SNI_ROUTE), one under another
cluster's name is refused in the route's status and never observed."""

import os

import harness
import testlib
from harness import ADDRESS, EXPOSE, need, payments_cluster, search_cluster

NS = "payments"
GW = "/apis/gateway.networking.k8s.io"

GATEWAY_YAML = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: portico
spec:
  controllerName: portico.dev/gateway-controller
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: shared
  namespace: payments
spec:
  gatewayClassName: portico
  listeners:
  - name: tcp
    protocol: TCP
    port: 1          # portico gives each TCPRoute a port of its own
    allowedRoutes:
      kinds:
      - kind: TCPRoute
  - name: tls
    protocol: TLS
    port: 443
    tls:
      mode: Passthrough
    allowedRoutes:
      namespaces:
        from: All
      kinds:
      - kind: TLSRoute
"""

TCPROUTE_YAML = """\
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: %(name)s
  namespace: payments
spec:
  parentRefs:
  - name: %(parent)s
  rules:
  - backendRefs:
    - name: ledger-db
      port: 5432
"""

TLSROUTE_YAML = """\
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata:
  name: %(name)s
  namespace: payments
spec:
  parentRefs:
  - name: shared
  hostnames:
  - %(host)s
  rules:
  - backendRefs:
    - name: ledger-db
      port: 5432
"""


def apply(cluster, text, name):
    path = os.path.join(cluster.dir, name + ".yaml")
    with open(path, "w") as f:
        f.write(text)
    cluster.kubectl("apply", "-f", path)


def get(cluster, path):
    status, body = cluster.sim.request("GET", path)
    return body if status == 200 else None


def tcproute(cluster, name):
    return get(cluster, "%s/v1alpha2/namespaces/%s/tcproutes/%s" % (GW, NS, name))


def tlsroute(cluster, name):
    return get(cluster, "%s/v1alpha2/namespaces/%s/tlsroutes/%s" % (GW, NS, name))


def conditions(obj):
    """{type: (status, reason)} of portico's entry in status.parents."""
    for p in (obj or {}).get("status", {}).get("parents", []):
        if p.get("controllerName") == "portico.dev/gateway-controller":
            return {c["type"]: (c["status"], c["reason"]) for c in p["conditions"]}
    return {}


def wait_conditions(fleet, fetch, want, timeout=30):
    def check():
        fleet._check_alive()
        got = conditions(fetch())
        return got if all(got.get(k, (None,))[0:len(v)] == v
                          for k, v in want.items()) else None
    return testlib.wait_until(check, timeout, "status %s" % want)


def wait_route_address(fleet, cluster, name, timeout=30):
    def check():
        fleet._check_alive()
        obj = tcproute(cluster, name) or {}
        return (obj.get("metadata", {}).get("annotations") or {}).get(ADDRESS)
    addr = testlib.wait_until(check, timeout, "address on TCPRoute %s" % name)
    host, _, port = addr.rpartition(":")
    assert host == cluster.host, addr
    assert fleet.port_lo <= int(port) <= fleet.port_hi, addr
    return int(port)


def start(make_fleet, search=False):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet)
    other = search_cluster(fleet) if search else None
    fleet.start()
    apply(pay, GATEWAY_YAML, "gateway")
    return fleet, pay, other


def test_tcproute_port_status_detach_delete(make_fleet):
    fleet, pay, _ = start(make_fleet)
    apply(pay, TCPROUTE_YAML % {"name": "ledger", "parent": "shared"}, "ledger")
    port = wait_route_address(fleet, pay, "ledger")

    # Real TCP through HAProxy reaches the backendRef's Service, every node.
    expect = pay.markers(NS, "ledger-db", 5432)
    fleet.wait_serves(port, expect)
    assert set(fleet.markers(port, 8)) == expect

    # The route's status: Accepted and ResolvedRefs, by portico's controller.
    got = wait_conditions(fleet, lambda: tcproute(pay, "ledger"),
                          {"Accepted": ("True", "Accepted"),
                           "ResolvedRefs": ("True", "ResolvedRefs")})
    assert got["Accepted"] == ("True", "Accepted"), got
    # The Gateway's: its address is the cluster's host; Accepted, Programmed.
    gw_path = "%s/v1/namespaces/%s/gateways/shared" % (GW, NS)

    def gw_ready():
        st = (get(pay, gw_path) or {}).get("status", {})
        conds = {c["type"]: c["status"] for c in st.get("conditions", [])}
        return st.get("addresses") == [{"type": "Hostname", "value": pay.host}] \
            and conds.get("Accepted") == "True" and conds.get("Programmed") == "True"
    testlib.wait_until(gw_ready, 30, "the Gateway's status")
    # The class is accepted.
    testlib.wait_until(lambda: [c["status"] for c in (get(
        pay, "%s/v1/gatewayclasses/portico" % GW) or {}).get("status", {})
        .get("conditions", []) if c["type"] == "Accepted"] == ["True"], 30,
        "the GatewayClass accepted")
    # Another controller's entry in status.parents stays as it is when
    # portico writes its own (a merge patch replaces the whole list).
    route_path = "%s/v1alpha2/namespaces/%s/tcproutes/ledger" % (GW, NS)
    foreign = {"parentRef": {"name": "theirs"}, "controllerName": "example.com/other",
               "conditions": [{"type": "Accepted", "status": "True",
                               "reason": "Accepted", "message": "",
                               "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    parents = tcproute(pay, "ledger")["status"]["parents"] + [foreign]
    status, body = pay.sim.request("PATCH", route_path + "/status",
                                   {"status": {"parents": parents}},
                                   ctype="application/merge-patch+json")
    assert status == 200, body
    # kubectl shows it as a user would see it.
    out = pay.kubectl("get", "tcproute", "ledger", "-n", NS, "-o",
                      "jsonpath={.status.parents[0].conditions[0].type}").stdout
    assert out == "Accepted"

    # Detached (its parentRef names a Gateway that is not portico's): no
    # port, no address, and its status no longer ours.
    apply(pay, TCPROUTE_YAML % {"name": "ledger", "parent": "elsewhere"}, "ledger")
    fleet.wait_refused(port)
    testlib.wait_until(lambda: ADDRESS not in (tcproute(pay, "ledger")["metadata"]
                                               .get("annotations") or {}),
                       30, "the address removed")
    testlib.wait_until(lambda: tcproute(pay, "ledger")["status"]["parents"] == [foreign],
                       30, "only the other controller's status left")
    # Attached again within the quarantine: the same port comes back.
    apply(pay, TCPROUTE_YAML % {"name": "ledger", "parent": "shared"}, "ledger")
    assert wait_route_address(fleet, pay, "ledger") == port
    fleet.wait_serves(port, expect)

    # Deleted: the port is freed into quarantine (nobody else gets it).
    pay.kubectl("delete", "tcproute", "ledger", "-n", NS)
    fleet.wait_refused(port)
    apply(pay, TCPROUTE_YAML % {"name": "other", "parent": "shared"}, "other")
    assert wait_route_address(fleet, pay, "other") != port


def test_tcproute_refused_backend_and_listener(make_fleet):
    fleet, pay, _ = start(make_fleet)
    # A backendRef to no Service: accepted, but its refs do not resolve.
    apply(pay, (TCPROUTE_YAML % {"name": "ghost", "parent": "shared"})
          .replace("ledger-db", "nowhere"), "ghost")
    wait_conditions(fleet, lambda: tcproute(pay, "ghost"),
                    {"ResolvedRefs": ("False", "BackendNotFound")})
    # Another namespace's Service without its consent: RefNotPermitted.
    apply(pay, (TCPROUTE_YAML % {"name": "peek", "parent": "shared"})
          .replace("port: 5432", "namespace: billing\n      port: 5432"), "peek")
    wait_conditions(fleet, lambda: tcproute(pay, "peek"),
                    {"ResolvedRefs": ("False", "RefNotPermitted")})
    # A route in a namespace the TCP listener does not admit (Same).
    apply(pay, (TCPROUTE_YAML % {"name": "stray", "parent": "shared"})
          .replace("namespace: payments", "namespace: billing")
          .replace("- name: shared", "- name: shared\n    namespace: payments"),
          "stray")

    def stray():
        return get(pay, "%s/v1alpha2/namespaces/billing/tcproutes/stray" % GW)
    wait_conditions(fleet, stray, {"Accepted": ("False", "NotAllowedByListeners")})
    assert ADDRESS not in (stray()["metadata"].get("annotations") or {})


def test_tlsroute_hostnames(make_fleet):
    fleet, pay, other = start(make_fleet, search=True)
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        mine = "db." + pay.host
        apply(pay, TLSROUTE_YAML % {"name": "mine", "host": mine}, "mine")
        ev = tap.wait("SNI_ROUTE", n="mine")
        assert ev["h"] == mine and ev["ns"] == NS and ev["r"] == 0, ev
        assert ev.get("b"), ev          # the backends of ledger-db

        # Under another cluster's name: refused in status, never observed.
        theirs = "db." + other.host
        apply(pay, TLSROUTE_YAML % {"name": "theirs", "host": theirs}, "theirs")
        got = wait_conditions(fleet, lambda: tlsroute(pay, "theirs"),
                              {"Accepted": ("False", "NoMatchingListenerHostname")})
        assert got["Accepted"][0] == "False"
        assert not tap.seen("SNI_ROUTE", n="theirs")

        # Deleted: SNI_GONE.
        mark = tap.mark()
        pay.kubectl("delete", "tlsroute", "mine", "-n", NS)
        tap.wait("SNI_GONE", after=mark, n="mine")
    finally:
        tap.close()


def test_tcproute_and_virtualservice_same_name(make_fleet):
    """Two owners: a VirtualService and a TCPRoute both named ledger-db."""
    fleet, pay, _ = start(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (vs_port,) = fleet.wait_address(pay, NS, "ledger-db")
    apply(pay, TCPROUTE_YAML % {"name": "ledger-db", "parent": "shared"}, "ledger-db")
    tcp_port = wait_route_address(fleet, pay, "ledger-db")
    assert tcp_port != vs_port
    expect = pay.markers(NS, "ledger-db", 5432)
    fleet.wait_serves(tcp_port, expect)
    fleet.wait_serves(vs_port, expect)


def test_tlsroute_through_the_shared_port(make_fleet):
    """A TLSRoute's hostname is reached by SNI through the shared TLS port, at
    a TLS workload (an EndpointSlice's pod) whose certificate the client
    verifies for that name; a hostname under another cluster's name gets
    no traffic."""
    from test_sni import TlsServer, s_client
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet, backend="endpoints")
    other = search_cluster(fleet)
    fleet.start()
    apply(pay, GATEWAY_YAML, "gateway")
    name = "db." + pay.host
    theirs = "db." + other.host
    srv = TlsServer(fleet.pki, [name, theirs], "tls-db")
    try:
        svc = harness.service("tls-db", NS, [(443, 30443, srv.port)])
        eps = harness.endpointslice("tls-db-1", NS, "tls-db", [("p443", srv.port)], [
            harness.endpoint((NS, "tls-db-0"), srv.host, "node-0")])
        for path, obj in (("/api/v1/namespaces/%s/services" % NS, svc),
                          ("/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices"
                           % NS, eps)):
            status, body = pay.sim.request("POST", path, obj)
            assert status == 201, body
        route = TLSROUTE_YAML.replace("ledger-db", "tls-db").replace("5432", "443")
        apply(pay, route % {"name": "db", "host": name}, "db")
        testlib.wait_until(lambda: s_client(fleet, name, timeout=5) == "tls-db", 60,
                           "%s served through the shared port" % name)
        wait_conditions(fleet, lambda: tlsroute(pay, "db"),
                        {"Accepted": ("True", "Accepted"),
                         "ResolvedRefs": ("True", "ResolvedRefs")})
        # Under the search cluster's name: refused, and nothing answers it.
        apply(pay, route % {"name": "theirs", "host": theirs}, "theirs")
        wait_conditions(fleet, lambda: tlsroute(pay, "theirs"),
                        {"Accepted": ("False", "NoMatchingListenerHostname")})
        assert s_client(fleet, theirs, timeout=5) is None
        # Deleted: the name is no longer served.
        pay.kubectl("delete", "tlsroute", "db", "-n", NS)
        testlib.wait_until(lambda: s_client(fleet, name, timeout=5) is None, 60,
                           "%s no longer served" % name)
    finally:
        srv.close()


BILLING_YAML = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: open
  namespace: billing
spec:
  gatewayClassName: portico
  listeners:
  - name: tcp
    protocol: TCP
    port: 1
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: orders
  namespace: billing
spec:
  parentRefs:
  - name: open
  rules:
  - backendRefs:
    - name: orders-db
      namespace: payments
      port: 5432
"""

GRANT_YAML = """\
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: billing-orders
  namespace: payments
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: TCPRoute
    namespace: billing
  to:
  - group: ""
    kind: Service
    name: orders-db
"""


def test_tcproute_reference_grant(make_fleet):
    """A backendRef to another namespace's Service: refused until a
    ReferenceGrant there lets that namespace's TCPRoutes in; withdrawn, the
    route is cut again."""
    fleet, pay, _ = start(make_fleet)

    def orders():
        return get(pay, "%s/v1alpha2/namespaces/billing/tcproutes/orders" % GW)
    apply(pay, BILLING_YAML, "billing")
    wait_conditions(fleet, orders, {"ResolvedRefs": ("False", "RefNotPermitted")})
    apply(pay, GRANT_YAML, "grant")
    wait_conditions(fleet, orders, {"Accepted": ("True", "Accepted"),
                                    "ResolvedRefs": ("True", "ResolvedRefs")})

    def address():
        fleet._check_alive()
        return ((orders() or {}).get("metadata", {}).get("annotations") or {}).get(ADDRESS)
    port = int(testlib.wait_until(address, 30, "the address").rpartition(":")[2])
    fleet.wait_serves(port, pay.markers(NS, "orders-db", 5432))
    pay.kubectl("delete", "referencegrant", "billing-orders", "-n", NS)
    wait_conditions(fleet, orders, {"ResolvedRefs": ("False", "RefNotPermitted")})
    fleet.wait_refused(port)


def test_tcproute_asks_for_a_port(make_fleet):
    """portico.dev/port on a TCPRoute asks for its first rule's port, as on a
    VirtualService."""
    fleet, pay, _ = start(make_fleet)
    want = fleet.port_hi
    route = (TCPROUTE_YAML % {"name": "pinned", "parent": "shared"}).replace(
        "  namespace: payments\nspec:",
        "  namespace: payments\n  annotations:\n    portico.dev/port: \"%d\"\nspec:" % want)
    apply(pay, route, "pinned")
    assert wait_route_address(fleet, pay, "pinned") == want
    fleet.wait_serves(want, pay.markers(NS, "ledger-db", 5432))


def test_cluster_without_the_gateway_api(make_fleet):
    """A cluster that does not serve gateway.networking.k8s.io is routed as
    before: its VirtualServices are not held up by the missing group."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet, sim_args=("--no-gateway-api",))
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    log = fleet["watcherd"].log()
    assert "TCPRoutes at" not in log and "gateway.networking.k8s.io not served" \
        not in log, log
