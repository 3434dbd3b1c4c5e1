"""porticoctl clusters, routes and ports against a real fleet.

What they print is what the fleet did: the port written on each object,
the backends behind it, the proxy that serves it, a refused route's
reason (the one written in portico.dev/error), and a deleted route's port
in quarantine until the time the configuration says. Names read from the
store are validated before they are printed: a hostile record written into
a copy of the store is left out, said by its table, and its bytes reach
neither stdout nor stderr.
"""

import json
import shutil
import socket
import subprocess

import harness
import testlib
from harness import ERROR, EXPOSE, PORT, start_payments
from test_porticoctl import ctl

NS = "payments"


def lines(fleet, *args, store=None):
    return [json.loads(l) for l in ctl(fleet, "-j", *args, store=store)[1].splitlines()]


def routes_by_name(fleet, *args):
    """{name or name/route past the first: the route}"""
    return {r["name"] + ("/%d" % r["route"] if r["route"] else ""): r
            for r in lines(fleet, "routes", *args)}


def table(text):
    """A plain table: header words and rows split on runs of spaces (the
    last column may hold spaces: it is everything after the others)."""
    rows = text.splitlines()
    head = rows[0].split()
    return head, [r.split(None, len(head) - 1) for r in rows[1:]]


def test_tables_say_what_the_fleet_did(make_fleet):
    fleet, pay = start_payments(make_fleet)
    px = fleet.proxy().name
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    bad = fleet.port_hi + 1
    pay.annotate(NS, "cache", **{EXPOSE: "true", PORT: str(bad)})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    why = fleet.wait_annotation(pay, NS, "cache", ERROR)
    assert str(bad) in why

    def settled():
        r = routes_by_name(fleet)
        ok = r.get("ledger-db", {}).get("address_written") and \
            r.get("orders-db", {}).get("address_written") and "cache" in r
        return r if ok else None
    routes = testlib.wait_until(settled, 30, "routes live in porticoctl")

    # routes: the port written on the object, live, served, its backends
    r = routes["ledger-db"]
    assert r["port"] == ledger and r["state"] == "live", r
    assert r["address"] == "%s:%d" % (pay.host, ledger)
    assert r["owner"] == "%s/%s/ledger-db/0" % (pay.uuid, NS)
    assert r["cluster"] == pay.uuid and r["cluster_name"] == "payments"
    assert r["refused"] is None and r["fault"] is None
    assert [(p["proxy"], p["state"]) for p in r["proxies"]] == [(px, "serves")]
    node_port = pay.node_ports[(NS, "ledger-db", 5432)]
    assert sorted((b["ip"], b["port"]) for b in r["backends"]) == \
        sorted((ip, node_port) for _, ip in pay.nodes)
    # weights kept: orders-db is 75/25 over two Services
    assert sorted({b["weight"] for b in routes["orders-db"]["backends"]}) == [25, 75]
    # the refused route: its reason, as written on its object; its route
    # index is the first tcp route, and it holds no port
    c = routes["cache"]
    assert c["state"] in ("refused", "waiting") and c["port"] is None, c
    assert c["refused"] and c["refused"] in why, (c, why)
    assert c["address_written"] is False and c["proxies"] == []

    # filters: by cluster name or id, by namespace
    assert set(routes_by_name(fleet, "-c", "payments")) == set(routes)
    assert set(routes_by_name(fleet, "-c", pay.uuid)) == set(routes)
    assert routes_by_name(fleet, "-c", "nosuch") == {}
    assert routes_by_name(fleet, "-n", "billing") == {}
    assert set(routes_by_name(fleet, "-n", NS)) == set(routes)
    for bad_args in (["-c", "Pay\x1b[31m"], ["-n", "a/b"], ["-x"]):
        rc, out, err = ctl(fleet, "routes", *bad_args, check=False)
        assert rc == 1 and out == "" and "\x1b" not in err, (bad_args, err)

    # the plain table: a header, one row per owner, the error last
    _, out, _ = ctl(fleet, "routes")
    head, rows = table(out)
    assert head == ["OWNER", "CLUSTER", "PORT", "STATE", "BACKENDS", "PROXIES", "ERROR"]
    byowner = {row[0]: row for row in rows}
    row = byowner[r["owner"]]
    assert row[1:4] == ["payments", str(ledger), "live"], row
    assert row[5] == "%s:serves" % px and row[6] == "-", row
    crow = byowner[c["owner"]]
    assert crow[2] == "-" and c["refused"] in crow[6], crow

    # clusters: its host and masters, its counts, the proxy that serves it
    (cl,) = lines(fleet, "clusters")
    assert cl["id"] == pay.uuid and cl["name"] == "payments"
    assert cl["host"] == pay.host and cl["error"] is None
    # cache's second route asks for nothing and is served
    assert routes["cache/1"]["state"] == "live"
    assert cl["ports"] == 3 and cl["live"] == 3 and cl["refused"] == 1, cl
    assert cl["routes"] == 4 and cl["quarantined"] == 0, cl
    assert [(p["proxy"], p["state"]) for p in cl["proxies"]] == [(px, "serves")]
    assert cl["proxies"][0]["gen"] >= 1 and cl["masters"] and cl["mport"], cl
    _, out, _ = ctl(fleet, "clusters")
    head, rows = table(out)
    assert head[:3] == ["NAME", "ID", "HOST"] and len(rows) == 1
    assert rows[0][:3] == ["payments", pay.uuid, pay.host], rows

    # ports: the pool from the configuration, what is used, per cluster
    (p,) = lines(fleet, "ports")
    size = fleet.port_hi - fleet.port_lo + 1
    assert p["range"] == "%d-%d" % (fleet.port_lo, fleet.port_hi)
    assert (p["size"], p["used"], p["quarantined"], p["free"]) == (size, 3, 0, size - 3), p
    assert p["refused"] == 1 and p["quarantine"] == []
    assert [(x["name"], x["used"], x["refused"]) for x in p["clusters"]] == \
        [("payments", 3, 1)]

    # a deleted route: its port is quarantined, until released + quarantine
    pay.delete(NS, "orders-db")

    def quarantined():
        (p,) = lines(fleet, "ports")
        return p if p["quarantine"] else None
    p = testlib.wait_until(quarantined, 30, "orders-db's port quarantined")
    (q,) = p["quarantine"]
    assert q["port"] == orders and q["owner"] == "%s/%s/orders-db/0" % (pay.uuid, NS)
    assert (p["used"], p["quarantined"], p["free"]) == (2, 1, size - 3), p
    released, until = (stamp_ms(q["released"]), stamp_ms(q["until"]))
    assert until - released == fleet.quarantine * 1000, q
    assert lines(fleet, "clusters")[0]["quarantined"] == 1
    gone = routes_by_name(fleet)["orders-db"]
    assert gone["state"] == "released" and gone["port"] == orders
    assert gone["quarantined_until"] == q["until"]
    _, out, _ = ctl(fleet, "ports")
    assert "2 used, 1 quarantined, %d free" % (size - 3) in out, out
    assert "%d  %s  %s" % (orders, q["until"], q["owner"]) in out, out


def stamp_ms(stamp):
    """"2026-12-07T05:40:01.123Z" as ms since the epoch."""
    import calendar
    import time
    base, ms = stamp.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * 1000 + int(ms)


def mdb_load(store, db, pairs):
    body = "".join(" %s\n %s\n" % (k.hex(), v.hex()) for k, v in pairs)
    load = "VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n%sDATA=END\n" % body
    subprocess.run(["mdb_load", "-s", db, store], input=load.encode(), check=True,
                   timeout=60)


def test_hostile_records_are_left_out_never_printed(make_fleet, tmp_path):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    copy = str(tmp_path / "store")
    shutil.copytree(fleet.store, copy)
    owner = "%s/%s/ledger-db/0" % (pay.uuid, NS)
    evil = b"evil\x1b[31m\n|name"
    # an owner whose key is not a name Kubernetes takes (a quarantined
    # record: 4 + 1 + 1 + 1 + 1 + 4 bytes, two u64, a 256-byte reason)
    rec = bytes(16) + bytes(16) + bytes(256)
    mdb_load(copy, "owners", [(("%s/%s/" % (pay.uuid, NS)).encode() + evil + b"/0", rec)])
    # a cluster whose id is not one
    mdb_load(copy, "clusters", [(evil, bytes(24))])
    # a proxy fault whose reason carries an escape, on a real owner
    mdb_load(copy, "meta", [(b"fault/" + owner.encode(), b"bad \x1b[2J reason")])
    for args in (["routes"], ["clusters"], ["ports"], ["-j", "routes"],
                 ["-j", "clusters"], ["-j", "ports"]):
        rc, out, err = ctl(fleet, *args, store=copy, check=False)
        assert rc == 2, (args, rc, err)
        assert "\x1b" not in out + err and "evil" not in out + err, (args, out, err)
        assert "left out" in err, err
        # the rest is printed
        assert "ledger-db" in out or args[-1] != "routes", out
    _, out, _ = ctl(fleet, "routes", store=copy, check=False)
    row = [l for l in out.splitlines() if "ledger-db" in l][0]
    assert str(port) in row and "live" in row


def test_a_held_port_and_a_claimed_host(make_fleet):
    """What a proxy cannot serve and what a cluster cannot have, as the
    tables say it: a route on a port another program holds on the proxy's
    host is pending, the proxy `held`, its error the fault written on its
    object; a cluster whose master host another cluster holds is not
    routed, and says why. Once the program lets go, the route is live."""
    harness.need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=8)
    pay = harness.payments_cluster(fleet)
    imp = fleet.add_cluster("impostor", [("grab", "evil", [8080])],
                            [harness.virtualservice("grab", "evil",
                                                    [[harness.dest("grab", 8080)]])],
                            register=False, master_host=pay.host)
    held = fleet.port_hi
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((fleet.listen, held))
    squatter.listen(8)
    px = fleet.proxy().name
    try:
        fleet.start()
        fleet.wait_api(pay.host)
        imp.register()
        pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(held)})
        why = fleet.wait_annotation(pay, NS, "orders-db", ERROR)
        assert str(held) in why and "held by another program" in why, why

        def pending():
            r = routes_by_name(fleet).get("orders-db")
            return r if r and r["fault"] else None
        r = testlib.wait_until(pending, 30, "orders-db's fault in porticoctl")
        assert r["state"] == "pending" and r["port"] == held, r
        assert r["fault"] == why and r["address_written"] is False, (r, why)
        assert [(p["proxy"], p["state"]) for p in r["proxies"]] == [(px, "held")]
        _, out, _ = ctl(fleet, "routes")
        row = [l for l in out.splitlines() if "/orders-db/" in l][0]
        assert "%s:held" % px in row and row.endswith(why), row

        def refused_host():
            cls = {c["name"]: c for c in lines(fleet, "clusters")}
            return cls if "impostor" in cls else None
        cls = testlib.wait_until(refused_host, 60, "the impostor in porticoctl clusters")
        assert cls["impostor"]["id"] == imp.uuid and cls["impostor"]["host"] is None
        assert cls["impostor"]["error"] == \
            "not routed: host %s is held by another cluster" % pay.host, cls
        assert cls["impostor"]["proxies"] == []
        assert cls["payments"]["host"] == pay.host and cls["payments"]["error"] is None
        assert cls["payments"]["faults"] == 1, cls
        _, out, _ = ctl(fleet, "clusters")
        row = [l for l in out.splitlines() if l.startswith("impostor ")][0]
        assert row.endswith("not routed: host %s is held by another cluster" % pay.host)
    finally:
        squatter.close()
    assert fleet.wait_address(pay, NS, "orders-db", timeout=30) == [held]

    def live():
        r = routes_by_name(fleet)["orders-db"]
        return r if r["state"] == "live" else None
    r = testlib.wait_until(live, 30, "orders-db live in porticoctl")
    assert r["fault"] is None and r["proxies"][0]["state"] == "serves", r
