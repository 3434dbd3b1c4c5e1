"""The route table between renderd and applyd.

renderd publishes its table as items (one a route change, numbered by
allocd's seq); applyd keeps the table its proxy serves and decides from
two tables what goes through HAProxy's runtime API and what reloads.
renderd and applyd run here against a FakeAlloc (test_render_guards.py),
which feeds renderd decisions as the test writes them.

- A big change for one cluster (hundreds of routes, thousands of servers)
  does not hold up a small one for another that comes after it: the small
  cluster's route is served first, and neither reloads HAProxy.
- Two renderd replicas of one proxy publish the same table under the same
  generation: applyd follows one, the other takes its place, and applyd
  goes on serving (and changing live) without a reload.
"""

import os
import socket
import time

import harness
import testlib

E = testlib.events
from test_render_guards import FakeAlloc, echo, start_render_apply

C_A = "aaaaaaaa-0000-4000-8000-00000000000a"
C_B = "bbbbbbbb-0000-4000-8000-00000000000b"


def port_set(port, cluster, name, backends):
    return ("PORT_SET", {E.F_PORT: port, E.F_CLUSTER: cluster, E.F_NS: "payments", E.F_NAME: name,
                         E.F_ROUTE: 0, E.F_BACKENDS: [list(b) for b in backends]})


def runtime(fleet, cmd):
    """One command on the HAProxy worker's runtime API: its answer."""
    path = os.path.join(fleet.run_dir, "%s.sock" % fleet.proxies[0].name)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out.decode()
            out += b


def mapped_ports(fleet):
    """The ports the running HAProxy's ports map routes now."""
    path = os.path.join(fleet.run_dir, "%s-ports.map" % fleet.proxies[0].name)
    out = runtime(fleet, "show map " + path)
    return {int(line.split()[1]) for line in out.splitlines() if len(line.split()) == 3}


def reloads(fleet):
    return fleet["applyd"].log().count("(reloaded)")


def test_small_cluster_goes_before_a_big_one(make_fleet):
    """Cluster A gets 300 routes of 30 backends (9,000 servers, ~27,000
    runtime commands), then cluster B one route: B serves while A's routes
    are still going in, and nothing reloads."""
    harness.need("renderd")
    harness.need("applyd")
    fleet = make_fleet(ports=320)
    b, first = echo("b"), echo("first")
    # A's 9,000 servers would cross powers of two of a check budget as
    # they go in, and its interval would change under the servers in
    # place: a reload when the change is done (test_health_checks).  Not
    # what this test is about: a budget A never crosses.
    fake = start_render_apply(fleet, **{"proxy.%s" % fleet.proxies[0].name:
                                        {"check_rate": "100000"}})
    try:
        # a first route, so that HAProxy runs and its table is served
        fake.append(port_set(fleet.port_lo, C_B, "first", [(first.host, first.port, 1)]))
        fleet.wait_serves(fleet.port_lo, {"first"}, timeout=60)
        before = reloads(fleet)
        a_ports = list(range(fleet.port_lo + 1, fleet.port_lo + 301))
        # backends that refuse connections: only the maps tell A's progress
        dead = [("127.0.0.1", 1 + i, 1) for i in range(30)]
        b_port = fleet.port_lo + 301
        fake.append(*[port_set(p, C_A, "a-%d" % p, dead) for p in a_ports],
                    port_set(b_port, C_B, "b", [(b.host, b.port, 1)]))
        fleet.wait_serves(b_port, {"b"}, timeout=60)
        done = mapped_ports(fleet) & set(a_ports)
        assert len(done) < len(a_ports), \
            "cluster A's 300 routes were all in before B's one"
        testlib.wait_until(lambda: set(a_ports) <= mapped_ports(fleet) or
                           fleet._check_alive(), 120, "cluster A's routes in")
        assert reloads(fleet) == before, "a change the runtime API takes reloaded"
        print("B served while %d of A's 300 routes were in" % len(done))
    finally:
        fake.close()
        b.close()
        first.close()


def table_of(fleet, endpoint):
    """What a renderd answers SINCE 0 with: (generation, [(type, body)])."""
    import msgpack
    import zmq
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        s.send(msgpack.packb([E.VERSION, E.EV_SINCE, 0, 0, {}]))
        items = []
        while True:
            assert s.poll(10000), "no answer from " + endpoint
            _, t, seq, _, body = msgpack.unpackb(s.recv(), raw=False)
            if t == 3:
                return seq, sorted(items, key=repr)
            if t != 5:
                items.append((t, body))
    finally:
        ctx.destroy(linger=0)


def test_applyd_follows_another_replica_without_a_reload(make_fleet):
    """Two renderd for the one HAProxy, the second with a run folder of its
    own (its own sockets, the same allocd). Both publish the same table at
    the same generation. The first is SIGKILLed and the second's sockets
    take the first's place: applyd catches up from it with no reload, and a
    route added then goes in live."""
    harness.need("renderd")
    harness.need("applyd")
    fleet = make_fleet(ports=10)
    one, two = echo("one"), echo("two")
    fake = start_render_apply(fleet)
    px = fleet.proxies[0].name
    r2 = os.path.join(fleet.run_dir, "r2")
    os.makedirs(r2, mode=0o700, exist_ok=True)
    conf2 = os.path.join(fleet.run_dir, "portico-r2.conf")
    bus = {k: "ipc://%s/%s" % (fleet.run_dir, v) for k, v in
           (("alloc_in", "alloc.in"), ("alloc_pub", "alloc.pub"),
            ("alloc_sync", "alloc.sync"))}
    with open(conf2, "w") as f:
        f.write(fleet.conf_text(portico={"run_dir": r2}, bus=bus))
    second = harness.Daemon(fleet, "renderd", "r2/renderd-%s" % px,
                            ["-f", conf2, "-p", px], "renderd-2")
    fleet.daemons[second.key] = second.start()
    try:
        fake.append(port_set(fleet.port_lo, C_A, "one", [(one.host, one.port, 1)]),
                    port_set(fleet.port_lo + 1, C_B, "two", [(two.host, two.port, 1)]))
        fleet.wait_serves(fleet.port_lo, {"one"}, timeout=60)
        fleet.wait_serves(fleet.port_lo + 1, {"two"}, timeout=60)
        first_ep = "ipc://%s/render-%s.sync" % (fleet.run_dir, px)
        second_ep = "ipc://%s/render-%s.sync" % (r2, px)
        testlib.wait_until(lambda: table_of(fleet, first_ep) == table_of(fleet, second_ep),
                           30, "both replicas at the same table")
        gen, items = table_of(fleet, first_ep)
        assert gen > 0 and len(items) == 2, (gen, items)
        before, master = reloads(fleet), fleet.proxy_master()

        # the first dies; the second's sockets are where applyd connects
        fleet["renderd"].kill9()
        fleet["renderd"].proc = None		# meant: not a death to report
        for end in ("pub", "sync"):
            os.rename(os.path.join(r2, "render-%s.%s" % (px, end)),
                      os.path.join(fleet.run_dir, "render-%s.%s" % (px, end)))
        offset = len(fleet["applyd"].log())
        # ZeroMQ reconnects to the path by itself: what applyd hears now is
        # the second's, at the same generation; the next item follows on
        fake.append(port_set(fleet.port_lo + 2, C_A, "three", [(two.host, two.port, 1)]))
        fleet.wait_serves(fleet.port_lo + 2, {"two"}, timeout=60)
        assert fleet.marker(fleet.port_lo) == "one"
        assert reloads(fleet) == before, "applyd reloaded on changing replicas"
        assert fleet.proxy_master() == master
        log = fleet["applyd"].log()[offset:]
        assert "starting over" not in log and "compacted" not in log, log[-2000:]
    finally:
        fake.close()
        one.close()
        two.close()


def test_bus_bytes_per_change_do_not_grow_with_the_table(make_fleet):
    """One route changed costs the same bytes on renderd's feed with 10 or
    with 5,000 routes in the table: one item, the route's own entry. And a
    consumer that missed a few items is sent those, not the whole table."""
    import msgpack
    import zmq
    harness.need("renderd")
    fleet = make_fleet(ports=5100)
    fleet.write_conf()
    fake = FakeAlloc(fleet.run_dir)
    px = fleet.proxies[0].name
    d = harness.Daemon(fleet, "renderd", "renderd-%s" % px, ["-p", px])
    fleet.daemons[d.key] = d.start()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.LINGER, 0)
    sub.connect("ipc://%s/render-%s.pub" % (fleet.run_dir, px))
    backends = [("127.0.0.1", 30000 + i, 1) for i in range(3)]

    def change_bytes(seq_wanted):
        """The bytes renderd publishes for the decision at seq_wanted."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not sub.poll(1000):
                continue
            raw = sub.recv()
            _, t, seq, _, _ = msgpack.unpackb(raw, raw=False)
            if t == E.EV_RT_PORT and seq == seq_wanted:
                return len(raw)
        raise AssertionError("no item for seq %d" % seq_wanted)
    try:
        # a heartbeat heard: the subscription is in place
        deadline = time.monotonic() + 30
        while not (sub.poll(1000) and msgpack.unpackb(sub.recv(), raw=False)[1] == E.EV_HEARTBEAT):
            assert time.monotonic() < deadline, "no heartbeat from renderd"
        fake.append(*[port_set(fleet.port_lo + i, C_A, "r-%d" % i, backends)
                      for i in range(10)])
        seq = fake.append(port_set(fleet.port_lo + 10, C_B, "probe", backends))
        small = change_bytes(seq)
        fake.append(*[port_set(fleet.port_lo + i, C_A, "r-%d" % i, backends)
                      for i in range(11, 5000)])
        seq = fake.append(port_set(fleet.port_lo + 10, C_B, "probe", backends))
        big = change_bytes(seq)
        print("bytes per change: %d with 11 routes, %d with 5,000" % (small, big))
        # the seqs differ in length only (msgpack integers)
        assert abs(big - small) <= 8, (small, big)
        assert big < 400, big
        # a consumer that lacks the last few items gets those, not the table
        asker = ctx.socket(zmq.DEALER)
        asker.setsockopt(zmq.LINGER, 0)
        asker.connect("ipc://%s/render-%s.sync" % (fleet.run_dir, px))
        asker.send(msgpack.packb([E.VERSION, E.EV_SINCE, seq - 11, 0, {}]))
        got = []
        while True:
            assert asker.poll(10000), "no answer to SINCE"
            _, t, s, _, body = msgpack.unpackb(asker.recv(), raw=False)
            if t == E.EV_SINCE_END:
                break
            got.append((t, s, body.get(E.F_PREV)))
        assert s == seq and [g[1] for g in got] == list(range(seq - 10, seq + 1)), got
        assert all(t != E.EV_STATE for t, _, _ in got), "answered with the whole table"
    finally:
        ctx.destroy(linger=0)
        fake.close()
