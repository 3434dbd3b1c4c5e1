"""Routes change under load without a failed connection.

A steady stream of new connections (50 a second), a few clients opening
connections as fast as they can (so that even a millisecond without a
server would be hit), and a few long-lived connections run through HAProxy
on one port while other routes are added and removed
and that very port is re-pointed to another Service and back, everything
through the real pipeline (simulated cluster, watcherd, allocd, renderd,
applyd, HAProxy).  Every new connection must reach a workload and every
long-lived one must keep echoing; HAProxy must not reload once.
"""

import socket
import threading
import time

import harness
import testlib
from harness import ADDRESS, EXPOSE, start_payments

NS = "payments"

RATE = 50                       # new connections a second
LONG = 4                        # long-lived connections
ROUNDS = 4
HOLD = 0.3                      # seconds each state is held under load
HAMMERS = 3                     # clients without a pause


def vs_dest(cluster, name, svc):
    """Point VirtualService name's only route at Service svc."""
    status, body = cluster.sim.request(
        "PATCH", "%s/namespaces/%s/virtualservices/%s" % (harness.VS_API, NS, name),
        {"spec": {"tcp": [{"route": [harness.dest(svc, 5432)]}]}},
        ctype="application/merge-patch+json")
    assert status == 200, body


class Load(threading.Thread):
    """New connections to host:port at RATE a second, each read to its
    greeting; what answered, and what failed, by time."""

    def __init__(self, host, port, rate=RATE):
        super().__init__(daemon=True)
        self.host, self.port, self.rate = host, port, rate
        self.stop = threading.Event()
        self.seen, self.failures, self.n = {}, [], 0

    def run(self):
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                marker = harness.read_marker(self.host, self.port, timeout=3)
                self.seen[marker] = self.seen.get(marker, 0) + 1
            except OSError as e:
                self.failures.append((time.monotonic(), repr(e)))
            self.n += 1
            if self.rate:
                next_at += 1.0 / self.rate
                time.sleep(max(0, next_at - time.monotonic()))


def test_no_failed_connection_while_routes_change(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    ledger = pay.markers(NS, "ledger-db", 5432)
    canary = pay.markers(NS, "orders-db-canary", 5432)
    fleet.wait_serves(port, ledger)
    reloads = fleet.haproxy_reloads()

    longs = []
    for i in range(LONG):
        s = socket.create_connection((fleet.listen, port), timeout=5)
        f = s.makefile("rb")
        assert f.readline().decode().strip() in ledger
        longs.append((s, f))
    load = Load(fleet.listen, port)
    hammers = [Load(fleet.listen, port, rate=0) for _ in range(HAMMERS)]
    for t in [load] + hammers:
        t.start()
    try:
        for round in range(ROUNDS):
            # another route comes and goes
            pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
            (orders,) = fleet.wait_address(pay, NS, "orders-db")
            fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                              pay.markers(NS, "orders-db-canary", 5432))
            time.sleep(HOLD)
            # this port is re-pointed to another Service, and back
            vs_dest(pay, "ledger-db", "orders-db-canary")
            fleet.wait_serves(port, canary)
            time.sleep(HOLD)
            vs_dest(pay, "ledger-db", "ledger-db")
            fleet.wait_serves(port, ledger)
            time.sleep(HOLD)
            pay.annotate(NS, "orders-db", **{EXPOSE: None})
            fleet.wait_no_annotation(pay, NS, "orders-db", ADDRESS)
            fleet.wait_refused(orders)
            time.sleep(HOLD)
            for i, (s, f) in enumerate(longs):
                s.sendall(b"round %d on %d\n" % (round, i))
                assert f.readline() == b"round %d on %d\n" % (round, i), \
                    "long-lived connection %d dropped" % i
    finally:
        for t in [load] + hammers:
            t.stop.set()
        for t in [load] + hammers:
            t.join(10)
        for s, f in longs:
            s.close()
    print("%d connections, answered by %s" % (load.n, load.seen))
    for t in [load] + hammers:
        assert not t.failures, "%d of %d connections failed: %s" % (
            len(t.failures), t.n, t.failures[:5])
    print("and %d as fast as they went" % sum(t.n for t in hammers))
    assert load.n >= ROUNDS * 4 * HOLD * RATE, "the load ran %d connections only" % load.n
    assert set(load.seen) & canary and set(load.seen) & ledger, load.seen
    assert fleet.haproxy_reloads() == reloads, "HAProxy reloaded"
    assert fleet["applyd"].alive()
    assert "reloading instead" not in fleet["applyd"].log()
