"""nginx as the proxy, end to end: the real nginx (stream {}, Debian's
libnginx-mod-stream) driven by renderd and applyd.

The scenarios that hold for any proxy are the HAProxy suite's own, imported
here: pytest collects them in this module, where make_fleet makes fleets
whose one proxy is an nginx. kubectl reaches each cluster through the SNI
map (TLS passed through), TCP reaches the workloads through the ports, and
nginx outlives an applyd killed outright. What is nginx's own follows: a
port another program holds, which "nginx -t" cannot see, and a fleet of one
HAProxy and one nginx."""

import socket

import pytest

import harness
import testlib
from harness import ADDRESS, ERROR, EXPOSE, PORT, need, start_payments
from test_api_route import test_cluster_appears_routes_and_goes  # noqa: F401
from test_restart import test_applyd_and_renderd_sigkill  # noqa: F401
from test_workload_route import (  # noqa: F401
    test_expose_route_and_unexpose, test_weighted_destinations)

E = testlib.events

NS = "payments"


@pytest.fixture
def make_fleet(make_fleet):
    """conftest's make_fleet, with one nginx called "nginx" unless the test
    names its proxies."""
    def make(**kw):
        kw.setdefault("proxies", [("nginx", "nginx")])
        return make_fleet(**kw)
    return make


def orders_markers(pay):
    return pay.markers(NS, "orders-db", 5432) | pay.markers(NS, "orders-db-canary", 5432)


def test_config_is_nginx_stream(make_fleet):
    """What nginx serves is renderd's nginx.conf: the SNI map, one server
    per port, our own pid file and error log in the run folder."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    cfg = fleet.proxy_cfg()
    assert "stream {" in cfg and "http {" not in cfg
    assert "pid %s/nginx-master.pid;" % fleet.run_dir in cfg
    assert "ssl_preread on;" in cfg and "proxy_half_close on;" in cfg
    assert "\t\t%s api_%s;\n" % (pay.host, pay.uuid) in cfg
    assert "listen %s:%d;" % (fleet.listen, ledger) in cfg
    master = fleet.proxy_master()
    assert harness._comm(master) == "nginx"
    assert "master process" in harness._read("/proc/%d/cmdline" % master)


def test_port_held_by_another_program(make_fleet):
    """nginx -t passes a port another program holds (it does not bind), and
    the reload would then fail as a whole.  applyd finds the port taken (a
    bind, for the ports nginx's master does not listen on), leaves its
    server out of what nginx reads, and the rest reloads: the route on it
    gets no address and says why.  Once the program lets go, applyd sees it
    while idle, reloads, and the address is written."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(ledger, pay.markers(NS, "ledger-db", 5432))
    master = fleet.proxy_master()
    held = next(p for p in range(fleet.port_hi, fleet.port_lo, -1) if p != ledger)
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((fleet.listen, held))
    holder.listen(1)
    try:
        applyd = fleet["applyd"]
        pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(held)})
        why = fleet.wait_annotation(pay, NS, "orders-db", ERROR)
        assert why == "port %d is held by another program on proxy nginx" % held, why
        assert "1 workload port held by another program, not bound: %d" % held \
            in applyd.log()
        assert "refused" not in applyd.log()        # no failed reload
        assert ADDRESS not in pay.annotations(NS, "orders-db")
        assert ERROR not in pay.annotations(NS, "ledger-db")
        # nginx reads the config without that server
        assert ":%d;" % held not in fleet.proxy_cfg()
        assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
        assert fleet.proxy_master() == master
    finally:
        holder.close()
    assert fleet.wait_address(pay, NS, "orders-db") == [held]
    fleet.wait_no_annotation(pay, NS, "orders-db", ERROR)
    assert "workload port %d came free; reloading to bind it" % held in applyd.log()
    fleet.wait_serves(held, orders_markers(pay))
    assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
    assert fleet.proxy_master() == master       # reloaded, never restarted


def test_mixed_fleet_writes_back_when_both_serve(make_fleet):
    """One HAProxy and one nginx, each with its own renderd and applyd (and
    here an address of its own, as on two hosts): an address is written
    back only once both serve it."""
    need("allocd", "renderd", "applyd", "watcherd")
    b_listen = testlib.loopback_addr()
    fleet = make_fleet(proxies=[("a", "haproxy"), ("b", "nginx", b_listen)])
    pay = harness.payments_cluster(fleet)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    for addr in (fleet.listen, b_listen):
        assert harness.read_marker(addr, ledger) in pay.markers(NS, "ledger-db", 5432)
    assert ledger in fleet.routed_ports("a")
    assert "listen %s:%d;" % (b_listen, ledger) in fleet.proxy_cfg("b")

    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        tap.wait("HEARTBEAT", timeout=10)
        # b's applyd dies: nginx keeps serving what it had, and b acks nothing new
        fleet["applyd-b"].kill9()
        mark = tap.mark()
        pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
        port_set = tap.wait("PORT_SET", timeout=30, after=mark, n="orders-db")
        port = port_set[E.F_PORT]

        def a_applied():
            return [e for e in tap.seen("APPLIED", mark, px="a") if e[E.F_GEN] >= port_set["seq"]]
        applied = testlib.wait_until(a_applied, 30, "proxy a to serve orders-db")[0]
        # allocd decides liveness in the transaction that logs the APPLIED;
        # a heartbeat after it closes that batch on the PUB stream
        after = tap.events.index(applied)
        tap.wait("HEARTBEAT", timeout=10, after=after)
        assert harness.read_marker(fleet.listen, port) in orders_markers(pay)
        assert tap.seen("PORT_LIVE", mark, n="orders-db") == []
        assert ADDRESS not in pay.annotations(NS, "orders-db")
        assert harness.refused(b_listen, port)

        # b's applyd is back: it adopts nginx, reloads it, acks; then the address
        fleet["applyd-b"].start()
        assert fleet.wait_address(pay, NS, "orders-db") == [port]
        assert tap.seen("PORT_LIVE", mark, n="orders-db")
        assert tap.seen("APPLIED", mark, px="b")
    finally:
        tap.close()
    assert harness.read_marker(b_listen, port) in orders_markers(pay)
    assert "adopted the running nginx master" in fleet["applyd-b"].log()
