"""Envoy as the proxy, end to end, without Envoy.

Envoy cannot run on this machine, and applyd does not run it for an Envoy
proxy anyway: it installs the bootstrap and the LDS and CDS files (by
rename, which Envoy's path config source watches for) and acks the
generation, so that allocd writes the address back. This runs the real
pipeline with one proxy of kind envoy and checks those files: what they
route, that hostile values from the clusters never reach them (as
test_injection.py does for HAProxy), and that a file removed under applyd
is written again. What Envoy would make of them is checked against its
documented fields in tests/golden/test_envoy.py, and nowhere against a
real Envoy.
"""

import json
import os

import harness
import testlib
from harness import DOMAIN, EXPOSE, need
from test_injection import IGNORED, MARK, REFUSED, exposed

NS = "payments"
NAME = "envoy"
FILES = ("bootstrap", "cds", "lds")


def path(fleet, what):
    return os.path.join(fleet.run_dir, "%s-%s.json" % (NAME, what))


def files(fleet):
    """The three installed files, parsed (each must be JSON)."""
    out = {}
    for what in FILES:
        with open(path(fleet, what)) as f:
            out[what] = json.load(f)
    return out


def routes(fleet):
    """{listener name: (port, [(ip, port, weight)] of its cluster)}."""
    docs = files(fleet)
    clusters = {c["name"]: c for c in docs["cds"]["resources"]}
    out = {}
    for lis in docs["lds"]["resources"]:
        port = lis["address"]["socket_address"]["port_value"]
        assert lis["address"]["socket_address"]["address"] == fleet.listen
        eps = []
        for fc in lis["filter_chains"]:
            cluster = clusters[fc["filters"][0]["typed_config"]["cluster"]]
            for loc in cluster["load_assignment"]["endpoints"]:
                for ep in loc["lb_endpoints"]:
                    sa = ep["endpoint"]["address"]["socket_address"]
                    eps.append((sa["address"], sa["port_value"],
                                ep["load_balancing_weight"]))
        out[lis["name"]] = (port, eps)
    return out


def test_envoy_files_installed_and_acked(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(proxies=[(NAME, "envoy")])
    pay = harness.payments_cluster(fleet)
    vss = [exposed("db")] + [vs for vs, _ in REFUSED.values()] + IGNORED
    shop = fleet.add_cluster("shop", [("db", "shop", [5432])], vss)
    fleet.start(wait_proxy=False)       # nothing listens: Envoy is not run

    # The address is written back: applyd acked a generation with the port.
    (db,) = fleet.wait_address(shop, "shop", "db")
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    testlib.wait_until(lambda: fleet._check_alive() or "p%d" % orders in routes(fleet),
                       30, "p%d in %s" % (orders, path(fleet, "lds")))

    docs = files(fleet)
    dyn = docs["bootstrap"]["dynamic_resources"]
    for what in ("lds", "cds"):
        assert dyn["%s_config" % what]["path_config_source"]["path"] == path(fleet, what)
    r = routes(fleet)
    assert r["api"][0] == fleet.api_port
    (api,) = [lis for lis in docs["lds"]["resources"] if lis["name"] == "api"]
    hosts = sorted(fc["filter_chain_match"]["server_names"][0] for fc in api["filter_chains"])
    assert hosts == sorted([pay.host, shop.host]) and shop.host == "shop." + DOMAIN
    for name, port in (("p%d" % db, db), ("p%d" % orders, orders)):
        assert r[name][0] == port and r[name][1], r[name]
        assert all(w >= 1 for _, _, w in r[name][1])
    # orders-db: 75 to its Service, 25 to the canary's, on each node
    assert sorted({w for _, _, w in r["p%d" % orders][1]}) == [25, 75]

    # Hostile values never reach the files or the served text.
    for what in FILES:
        with open(path(fleet, what)) as f:
            assert MARK not in f.read().lower(), what
    assert MARK not in fleet.proxy_cfg().lower()

    # applyd says what it does, and runs nothing.
    applyd = fleet["applyd"]
    assert "does not run Envoy" in applyd.log()
    assert harness._children(applyd.pid) == []
    assert fleet.proxy_master() is None

    # A file removed under applyd is installed again, by rename.
    os.unlink(path(fleet, "lds"))
    testlib.wait_until(lambda: fleet._check_alive() or os.path.exists(path(fleet, "lds")),
                       20, "lds.json written again")
    assert "p%d" % orders in routes(fleet)
    assert not [f for f in os.listdir(fleet.run_dir) if f.endswith(".json.new")]
