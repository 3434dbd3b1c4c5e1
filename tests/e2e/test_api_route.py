"""Cluster API routing: a cluster that appears in PKS is reachable by the
real kubectl through HAProxy's shared TLS port (SNI, TLS passed through);
when it goes from PKS, the route goes."""

import os
import uuid

import harness
import testlib
from harness import DOMAIN, need


def kubectl_fails(cluster, host=None):
    """kubectl through HAProxy must fail. --raw skips discovery, whose retries
    would take half a minute against a connection that is closed at once."""
    cp = cluster.kubectl_via_portico(
        "get", "--raw", "/apis/networking.istio.io/v1/virtualservices",
        "--request-timeout=3s", check=False, timeout=60, host=host)
    assert cp.returncode != 0, cp.stdout
    return cp.stderr


def vs_names(cluster, host=None):
    out = cluster.kubectl_via_portico("get", "virtualservices", "-A", "-o", "name",
                                      host=host).stdout
    return sorted(line.split("/")[-1] for line in out.split())


def test_cluster_appears_routes_and_goes(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet, register=False)
    search = harness.search_cluster(fleet, register=False)
    fleet.start(wait_proxy=False)

    pay.register()
    fleet.wait_api(pay.host)
    assert vs_names(pay) == ["cache", "ghost", "ledger-db", "orders-db", "reports", "web"]

    # A second cluster routes to its own API server: other objects.
    search.register()
    fleet.wait_api(search.host)
    assert vs_names(search) == ["index", "query"]
    # The token of one cluster is refused by the other: SNI picked the server.
    cp = testlib.kubectl(["get", "virtualservices", "-A"],
                         "https://%s:%d" % (fleet.listen, fleet.api_port),
                         pay.sim.token, fleet.pki.ca_cert, search.cache_dir(),
                         tls_server_name=search.host, check=False)
    assert cp.returncode != 0 and "provide credentials" in cp.stderr, cp.stderr
    # kubectl writes through the route too.
    search.kubectl_via_portico("annotate", "virtualservice", "index", "-n", "search",
                               "example.com/touched=yes")
    assert search.annotations("search", "index")["example.com/touched"] == "yes"
    # An SNI name that is no cluster's gets nothing.
    assert not fleet.tls_probe("nothing." + DOMAIN)

    # Deleted in PKS: its route goes, the other stays.
    pay.unregister()
    fleet.wait_api(pay.host, up=False)
    kubectl_fails(pay)
    assert fleet.tls_probe(search.host)
    assert vs_names(search) == ["index", "query"]


def fnv1a(s):
    h = 14695981039346656037
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def test_api_slot_changing_hands_moves_live(make_fleet):
    """Clusters live in a pool of API backend slots, by the hash of their
    id.  Two whose ids hash to the same slot: the first takes it, the
    second the next.  When the first goes, the second moves into its slot
    through the runtime API (the slot filled once the first's key is gone,
    then its key re-pointed): no reload.  Both before and after, each host
    reaches its own cluster."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet, register=False)
    search = harness.search_cluster(fleet, register=False)
    while True:                 # two ids in the same home of the 16 slots
        a, b = sorted(str(uuid.uuid4()) for _ in range(2))
        if fnv1a(a) % 16 == fnv1a(b) % 16:
            break
    pay.uuid, search.uuid = a, b
    fleet.start()
    pay.register()
    search.register()
    fleet.wait_api(pay.host)
    fleet.wait_api(search.host)
    home = fnv1a(a) % 16
    cfg = fleet.proxy_cfg()
    assert "backend api%d\n\t# sni %s\n" % (home, pay.host) in cfg
    assert "backend api%d\n\t# sni %s\n" % ((home + 1) % 16, search.host) in cfg
    assert vs_names(search) == ["index", "query"]
    reloads = fleet.haproxy_reloads()
    pay.unregister()
    fleet.wait_api(pay.host, up=False)
    testlib.wait_until(lambda: "backend api%d\n\t# sni %s\n" % (home, search.host)
                       in fleet.proxy_cfg(), 20, "search moved into the freed slot")
    fleet.wait_api(search.host)
    assert vs_names(search) == ["index", "query"]
    assert fleet.haproxy_reloads() == reloads, "a slot changing hands reloaded HAProxy"


def test_which_clusters_are_routed(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    ns = "apps"
    svc = [("app", ns, [8080])]

    def vss():
        return [harness.virtualservice("app", ns, [[harness.dest("app", 8080)]])]
    # kubernetes_master_host outside the domain: routed as <name>.<domain>
    alpha = fleet.add_cluster("alpha", svc, vss(), master_host="alpha.k8s.example.com")
    # under the domain: routed by that very name
    beta = fleet.add_cluster("beta", svc, vss(), master_host="api.beta." + DOMAIN)
    # still being created: no master IP yet
    gamma = fleet.add_cluster("gamma", svc, vss(), register=False)
    gamma.register(last_action_state="in progress", kubernetes_master_ips=["In Progress"])
    # failed
    delta = fleet.add_cluster("delta", svc, vss(), register=False)
    delta.register(last_action_state="failed")
    # being deleted
    eps = fleet.add_cluster("epsilon", svc, vss(), register=False)
    eps.register(last_action="DELETE", last_action_state="in progress")
    fleet.start()

    assert alpha.host == "alpha." + DOMAIN and beta.host == "api.beta." + DOMAIN
    fleet.wait_api(alpha.host)
    fleet.wait_api(beta.host)
    assert vs_names(alpha) == ["app"]
    assert vs_names(beta) == ["app"]
    assert not fleet.tls_probe("beta." + DOMAIN)
    for c in (gamma, delta, eps):
        assert not fleet.tls_probe(c.host), c.name

    # gamma's creation completes: routed from the next poll on.
    gamma.register()
    fleet.wait_api(gamma.host)
    assert vs_names(gamma) == ["app"]

    # A DELETE in progress on a routed cluster takes its route away.
    alpha.register(last_action="DELETE", last_action_state="in progress")
    fleet.wait_api(alpha.host, up=False)
    kubectl_fails(alpha)
    assert fleet.tls_probe(beta.host) and fleet.tls_probe(gamma.host)


def test_deleted_cluster_releases_its_ports(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    search = harness.search_cluster(fleet)
    fleet.start()
    pay.annotate("payments", "ledger-db", **{"portico.dev/expose": "true"})
    search.annotate("search", "index", **{"portico.dev/expose": "true"})
    (pport,) = fleet.wait_address(pay, "payments", "ledger-db")
    (sport,) = fleet.wait_address(search, "search", "index")
    fleet.wait_serves(pport, pay.markers("payments", "ledger-db", 5432))
    fleet.wait_serves(sport, search.markers("search", "index", 9200))

    pay.unregister()
    fleet.wait_api(pay.host, up=False)
    fleet.wait_refused(pport)
    # The other cluster keeps its API route and its port.
    assert fleet.tls_probe(search.host)
    assert fleet.marker(sport) in search.markers("search", "index", 9200)


def test_proxy_serves_before_the_first_cluster(make_fleet):
    """With no cluster at all, HAProxy still comes up on the shared TLS port
    (a load balancer's health check needs something to talk to)."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    fleet.start(wait_proxy=False)
    fleet.wait_proxy(timeout=20)
    assert not fleet.tls_probe("payments." + DOMAIN)


def test_kubeconfig_folder_source(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("kubeconfigs",))
    pay = harness.payments_cluster(fleet, register=False)
    search = harness.search_cluster(fleet, register=False)
    pay.write_kubeconfig(".yaml")
    search.write_kubeconfig(".json", ca_path=True)
    # what is not a cluster's kubeconfig is ignored
    kc = fleet.kubeconfig_dir
    pay.write_kubeconfig(".yaml", name="Not_A_Label")
    with open(kc + "/broken.yaml", "w") as f:
        f.write("clusters: [ {\n")
    with open(kc + "/README.txt", "w") as f:
        f.write("not a kubeconfig\n")
    fleet.start()

    fleet.wait_api(pay.host)
    fleet.wait_api(search.host)
    assert vs_names(search) == ["index", "query"]
    assert "ledger-db" in vs_names(pay)
    assert not fleet.tls_probe("not_a_label." + DOMAIN)
    assert not fleet.tls_probe("broken." + DOMAIN)
    # workloads of a kubeconfig cluster route too
    pay.annotate("payments", "ledger-db", **{"portico.dev/expose": "true"})
    (port,) = fleet.wait_address(pay, "payments", "ledger-db")
    fleet.wait_serves(port, pay.markers("payments", "ledger-db", 5432))

    # the file goes: so does the cluster
    os.unlink(kc + "/search.json")
    fleet.wait_api(search.host, up=False)
    assert fleet.tls_probe(pay.host)
    assert fleet.marker(port) in pay.markers("payments", "ledger-db", 5432)


def test_pks_token_expiry_and_outage(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    search = harness.search_cluster(fleet, register=False)
    fleet.start()
    fleet.wait_api(pay.host)

    # Every token UAA issued is revoked: watcherd gets a new one and goes on.
    tokens = fleet.pks.requests().get("/oauth/token", 0)
    fleet.pks.control("POST", "/_sim/expire-tokens")
    search.register()
    fleet.wait_api(search.host)
    assert fleet.pks.requests()["/oauth/token"] > tokens

    # PKS fails: the routes we have stay, even for a cluster deleted meanwhile...
    fleet.pks.control("PUT", "/_sim/faults", {"path": "/v1/clusters", "status": 503,
                                              "count": -1})
    polls = fleet.pks.requests()["/v1/clusters"]
    search.unregister()
    testlib.wait_until(lambda: fleet.pks.requests()["/v1/clusters"] >= polls + 2, 20,
                       "two failed polls")
    assert fleet.tls_probe(pay.host) and fleet.tls_probe(search.host)
    # ... and once it answers again, what it says is done.
    fleet.pks.control("DELETE", "/_sim/faults")
    fleet.wait_api(search.host, up=False)
    assert fleet.tls_probe(pay.host)
    assert "keeping the routes we have" in fleet["watcherd"].log()
