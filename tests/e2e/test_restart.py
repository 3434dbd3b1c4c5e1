"""Restarts and hostile input: allocd SIGKILLed and restarted keeps every
port (LMDB), traffic flows meanwhile; watcherd SIGKILLed and restarted
moves nothing; garbage on allocd's bus endpoints is dropped and counted,
and allocd goes on."""

import os
import re

import msgpack
import zmq

import harness
import testlib
from harness import ADDRESS, EXPOSE, PORT, need, start_payments  # noqa: F401

E = testlib.events

NS = "payments"


def snapshot(pay, names):
    """(resourceVersion, annotations) of each VirtualService (ns, name)."""
    out = {}
    for ns, name in names:
        obj = pay.vs(ns, name)
        out[(ns, name)] = (obj["metadata"]["resourceVersion"],
                           obj["metadata"].get("annotations"))
    return out


def test_allocd_sigkill_keeps_ports(make_fleet):
    fleet, pay = start_payments(make_fleet)
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        allocd_restarts(fleet, pay, tap)
    finally:
        tap.close()


def allocd_restarts(fleet, pay, tap):
    # ledger-db holds a port it asked for, then stops asking: it keeps it.
    # Only the store remembers that port (it is not the owner's hashed one,
    # unless by a 1 in 40 chance).
    want = fleet.port_lo + 7
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(want)})
    assert fleet.wait_address(pay, NS, "ledger-db") == [want]
    pay.annotate(NS, "ledger-db", **{PORT: None})
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    fleet.wait_serves(want, pay.markers(NS, "ledger-db", 5432))
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    before = snapshot(pay, [(NS, "ledger-db"), (NS, "orders-db")])
    allocd = fleet["allocd"]

    def kill_and_restart():
        # killed once its heartbeat was heard (so a restart can be noticed)
        tap.wait("HEARTBEAT", timeout=10, after=tap.mark())
        allocd.kill9()
        yield
        allocd.start()
        assert allocd.pid != allocd.exits[-1][0]
        yield

    restart = kill_and_restart()
    next(restart)
    # HAProxy does not need allocd: traffic flows while it is down.
    assert set(fleet.markers(want, 4)) == pay.markers(NS, "ledger-db", 5432)
    # A change made meanwhile waits for allocd...
    pay.annotate(NS, "cache", **{EXPOSE: "true"})
    mark = tap.mark()
    next(restart)
    # ... and lands once allocd is back (watcherd resends the whole truth).
    tap.wait("SYNC_END", timeout=30, after=mark, c=pay.uuid)
    ports = fleet.wait_address(pay, NS, "cache")
    assert len(ports) == 2 and want not in ports and orders not in ports
    fleet.wait_serves(ports[0], pay.markers(NS, "cache", 6379))
    # The same ports for the same objects; their objects were not touched.
    assert snapshot(pay, [(NS, "ledger-db"), (NS, "orders-db")]) == before
    assert fleet.marker(want) in pay.markers(NS, "ledger-db", 5432)
    assert want in fleet.routed_ports()

    # Once more, with nothing changing while it is down: nothing moves.
    restart = kill_and_restart()
    next(restart)
    mark = tap.mark()
    next(restart)
    tap.wait("SYNC_END", timeout=30, after=mark, c=pay.uuid)
    moved = tap.seen("PORT_FREE", mark) + tap.seen("PORT_SET", mark)
    assert moved == [], moved
    assert snapshot(pay, [(NS, "ledger-db"), (NS, "orders-db")]) == before
    assert fleet.marker(want) in pay.markers(NS, "ledger-db", 5432)


def test_watcherd_sigkill_moves_nothing(make_fleet):
    fleet, pay = start_payments(make_fleet)
    names = [(NS, "ledger-db"), (NS, "cache"), ("billing", "reports"), (NS, "web")]
    for ns, name in names:
        pay.annotate(ns, name, **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_address(pay, NS, "cache")
    fleet.wait_address(pay, "billing", "reports")
    fleet.wait_annotation(pay, NS, "web", "portico.dev/error")
    fleet.wait_serves(ledger, pay.markers(NS, "ledger-db", 5432))
    before = snapshot(pay, names)
    cfg = fleet.proxy_cfg()

    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        watcherd = fleet["watcherd"]
        watcherd.kill9()
        assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
        mark = tap.mark()
        watcherd.start()
        # The restarted watcherd resyncs the cluster in full...
        tap.wait("SYNC_END", timeout=30, after=mark, c=pay.uuid)
        # ... and nothing moved: no port released or reassigned, no refusal
        # said again, the proxy's configuration and the objects untouched.
        moved = tap.seen("PORT_FREE", mark) + tap.seen("PORT_SET", mark)
        assert moved == [], moved
        assert tap.seen("REFUSED", mark) == []
        assert tap.seen("ROUTE", mark), "the resync sent no routes"
    finally:
        tap.close()
    assert fleet.proxy_cfg() == cfg
    assert snapshot(pay, names) == before
    assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
    # A change after the restart is handled as usual.
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    assert snapshot(pay, names) == before


def garbage():
    """Bytes that are not portico events, or are events no sender may send."""
    pk = msgpack.packb
    huge_array = b"\xdd\xff\xff\xff\xff"
    yield b""
    for n in (1, 5, 64, 4096, 1 << 20):
        yield os.urandom(n)
    yield huge_array
    yield b"\x95\x01\x0c\x01\x00" + huge_array                  # body: not a map
    yield b"\x95\x01\x0c\x01\x00\x81\xa1b" + huge_array          # ROUTE, 4G backends
    yield b"\x95\x01\x0c\x01\x00\xdf\xff\xff\xff\xff"            # 4G-entry body
    yield b"\x95\x01\x0c\x01\x00\x81\xa2zz" + b"\x91" * 10000 + b"\xc0"   # deep nesting
    yield b"\x95\x01\x0c\x01\x00\x81\xa1c\xdb\xff\xff\xff\xff"   # str32 past the end
    yield pk([2, 12, 1, 0, {}])                                 # unknown version
    yield pk([1, 12, 1, 0, {"c": "x"}])                         # missing fields
    yield pk([1, 12, "seq", 0, {}])
    yield pk([1, 10, 1, 0, {"c": 5, "cn": ["a"], "h": None, "m": "x", "mp": -1}])
    yield pk([1, 10, 1, 0, {"c": "../../etc", "cn": "UPPER", "h": "a b",
                            "m": ["999.1.1.1"], "mp": 70000}])
    yield pk([1, 12, 1, 0, {"c": "abc", "ns": "a/b", "n": "x\ny", "r": 0,
                            "b": [["127.0.0.1", 0, 9999]]}])
    yield pk([1, 12, 1, 0, {"c": "abc", "ns": "ns", "n": "x", "r": 0,
                            "b": [["127.0.0.1\x00evil", 80, 1]]}])
    yield pk([1, 50, 1, 0, {"kind": "haproxy", "text": "global\n"}])  # not an observation
    yield pk([1, 4242, 1, 0, {"zz": 1}])                        # unknown type
    yield pk({"not": "an array"})
    yield pk([1, 2, 3])
    yield b"\xc1" * 100                                         # never-used code


def test_bus_garbage_is_dropped(make_fleet):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    allocd = fleet["allocd"]
    pid = allocd.pid

    ctx = zmq.Context()
    socks = []
    try:
        for ep in ("alloc.in", "alloc.sync"):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect("ipc://%s/%s" % (fleet.run_dir, ep))
            socks.append(s)
            for msg in garbage():
                s.send(msg)
            # multipart messages, and one larger than the bus accepts
            s.send_multipart([b"\x01", b"\x02", os.urandom(32)])
            s.send(b"\x00" * (34 << 20))
        testlib.wait_until(lambda: allocd.log().count("bus: dropped") >= 20, 20,
                           "allocd to drop the garbage")
    finally:
        for s in socks:
            s.close()
        ctx.destroy(linger=0)

    assert allocd.alive() and allocd.pid == pid
    # Routes still work, old and new.
    assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    assert pay.annotations(NS, "ledger-db")[ADDRESS] == "%s:%d" % (pay.host, ledger)
    # Nothing of the garbage reached the proxy.
    cfg = fleet.proxy_cfg()
    assert "evil" not in cfg and "999.1.1.1" not in cfg and "../" not in cfg


def test_applyd_and_renderd_sigkill(make_fleet):
    """HAProxy outlives applyd; a restarted applyd adopts it; a restarted
    renderd catches up; routes keep flowing throughout."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(ledger, pay.markers(NS, "ledger-db", 5432))
    master = fleet.proxy_master()

    fleet["applyd"].kill9()
    fleet["renderd"].kill9()
    assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
    fleet["renderd"].start()
    fleet["applyd"].start()
    assert fleet.proxy_master() == master      # adopted, not restarted
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
    assert fleet.proxy_master() == master


def test_observations_are_acknowledged_with_their_own_seq(make_fleet):
    """allocd ACKs each sender with the highest seq it received from that
    sender, nothing else: a higher ACK would make watcherd forget
    observations allocd never had, a wrong one makes it resync for nothing."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    fleet.wait_address(pay, NS, "ledger-db")
    ctx = zmq.Context()
    try:
        for attempt in range(4):
            s = ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect("ipc://%s/alloc.in" % fleet.run_dir)
            acks = []
            for seq in (1, 2, 3):
                # an APPLIED from a proxy allocd does not know: acknowledged,
                # otherwise ignored
                s.send(msgpack.packb([E.VERSION, E.EV_APPLIED, seq, 0,
                                      {E.F_PROXY: "test-%d" % attempt, E.F_GEN: 1}]))
                assert s.poll(5000), "no ACK for seq %d" % seq
                version, type_, ack, _, _ = msgpack.unpackb(s.recv(), raw=False)
                assert type_ == E.EV_ACK
                acks.append(ack)
            s.close()
            assert acks == [1, 2, 3], "attempt %d: ACKs %s for seqs 1, 2, 3" % (attempt, acks)
            # traffic from watcherd in between
            pay.annotate(NS, "orders-db", **{EXPOSE: "true" if attempt % 2 == 0 else None})
            if attempt % 2 == 0:
                fleet.wait_address(pay, NS, "orders-db")
            else:
                fleet.wait_no_annotation(pay, NS, "orders-db", ADDRESS)
    finally:
        ctx.destroy(linger=0)


def test_dropped_watches_move_nothing(make_fleet):
    """The cluster API drops every watch, mid-stream and cleanly: watcherd
    watches again (from where it was), nothing moves, and later changes are
    still seen."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    before = snapshot(pay, [(NS, "ledger-db")])
    cfg = fleet.proxy_cfg()

    def watches():
        return pay.sim.proc.log().count("watch=1")
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        testlib.wait_until(lambda: tap.seen("HEARTBEAT"), 10, "the tap to connect")
        mark = tap.mark()
        for abort in ("true", "false"):
            n = watches()
            status, _ = pay.sim.request("POST", "/_sim/close-watches?abort=" + abort)
            assert status == 200
            # Services, Nodes and VirtualServices are watched again
            testlib.wait_until(lambda: watches() >= n + 3, 20, "three new watches")
        # a change made now is seen through the new watches
        pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
        (orders,) = fleet.wait_address(pay, NS, "orders-db")
        moved = [e for e in tap.seen("PORT_FREE", mark) + tap.seen("PORT_SET", mark)
                 if e.get(E.F_NAME) != "orders-db"]
        assert moved == [], moved
    finally:
        tap.close()
    assert snapshot(pay, [(NS, "ledger-db")]) == before
    assert ledger in fleet.routed_ports()
    assert set(cfg.splitlines()) <= set(fleet.proxy_cfg().splitlines())
    pay.annotate(NS, "ledger-db", **{EXPOSE: None})
    fleet.wait_refused(ledger)
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))


def lose_store(fleet):
    """SIGKILL allocd, remove its LMDB environment, start it afresh."""
    import shutil
    allocd = fleet["allocd"]
    allocd.kill9()
    shutil.rmtree(fleet.store)
    allocd.start()


def test_lost_store_gives_hashed_ports_back(make_fleet):
    """The preferred port is a hash of the owner: even with the store lost,
    an owner that did not ask for a port gets its old one back, and the
    other daemons start over from allocd's new history."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    pay.annotate("billing", "reports", **{EXPOSE: "true"})
    (orders,) = fleet.wait_address(pay, NS, "orders-db")
    (reports,) = fleet.wait_address(pay, "billing", "reports")
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        tap.wait("HEARTBEAT", timeout=10)
        lose_store(fleet)
        ports = {e[E.F_NAME]: e[E.F_PORT] for e in
                 [tap.wait("PORT_SET", timeout=30, n=n) for n in ("orders-db", "reports")]}
    finally:
        tap.close()
    assert ports == {"orders-db": orders, "reports": reports}
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    assert pay.annotations(NS, "orders-db")[ADDRESS] == "%s:%d" % (pay.host, orders)
    # and the fleet goes on working
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(ledger, pay.markers(NS, "ledger-db", 5432))


def test_lost_store_adopts_written_ports(make_fleet):
    """A port asked for and then kept is not a hash port: with the store
    lost, allocd adopts it from the address written on the object."""
    fleet, pay = start_payments(make_fleet)
    want = fleet.port_lo + 7
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(want)})
    assert fleet.wait_address(pay, NS, "ledger-db") == [want]
    pay.annotate(NS, "ledger-db", **{PORT: None})
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        tap.wait("HEARTBEAT", timeout=10)
        lose_store(fleet)
        got = tap.wait("PORT_SET", timeout=30, n="ledger-db")["p"]
    finally:
        tap.close()
    assert got == want


def test_shrinking_the_ports_needs_allow_shrink(make_fleet):
    """A port taken out of the configured ports while an owner holds it:
    allocd -n lists who would move, allocd will not start and names them;
    with allow_shrink = 1 it moves them, the new address is written and the
    old port stops."""
    import subprocess
    fleet, pay = start_payments(make_fleet)
    top = fleet.port_hi
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(top)})
    assert fleet.wait_address(pay, NS, "ledger-db") == [top]
    pay.annotate(NS, "ledger-db", **{PORT: None})
    allocd = fleet["allocd"]
    allocd.stop()
    shrunk = {"portico": {"ports": "%d-%d" % (fleet.port_lo, top - 1)}}
    fleet.write_conf(**shrunk)
    cp = subprocess.run([harness.daemon_path("allocd"), "-n", "-f", fleet.conf_path],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert re.search(r"^#\t[^\t]*/payments/ledger-db/0\tport %d$" % top, cp.stdout,
                     re.M), cp.stdout
    assert "allocd would not start: 1 owners would move" in cp.stdout, cp.stdout
    cp = subprocess.run([harness.daemon_path("allocd"), "-d", "-f", fleet.conf_path],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 1, cp.stderr
    assert "would move" in cp.stderr and "/payments/ledger-db/0" in cp.stderr, cp.stderr
    shrunk["portico"]["allow_shrink"] = 1
    fleet.write_conf(**shrunk)
    cp = subprocess.run([harness.daemon_path("allocd"), "-n", "-f", fleet.conf_path],
                        capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and "will move (allow_shrink = 1)" in cp.stdout, \
        cp.stdout + cp.stderr
    allocd.start()

    def moved():
        addr = pay.annotations(NS, "ledger-db").get(ADDRESS, "")
        return addr and not addr.endswith(":%d" % top) and int(addr.rsplit(":", 1)[1])
    port = testlib.wait_until(moved, 30, "ledger-db's new address")
    assert fleet.port_lo <= port < top
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    fleet.wait_refused(top)
