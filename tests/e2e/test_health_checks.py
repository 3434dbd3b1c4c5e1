"""Health checks within a budget: a real HAProxy checks the servers of one
cluster (every route on every node) at most [proxy] check_rate times a
second while nothing happens, and a backend that dies still leaves service
at once: traffic goes to the other node, and comes back when it returns.

The checks are counted where they land: SYNs to the workloads' node ports
on the loopback interface (a raw packet socket, so root), since HAProxy's
TCP checks reset the connection before a workload could accept() it.
"""

import time

import pytest

import harness
import testlib
from harness import EXPOSE, PORT, need

NS = "hc"
ROUTES = 40             # 2 nodes: 80 servers, and the cluster's master
BUDGET = 10             # checks a second: the interval doubles to 10 s
WINDOW = 25             # seconds counted: over one whole interval and more


def hc_fleet(make_fleet, check_rate=BUDGET):
    fleet = make_fleet(ports=ROUTES + 10)
    lo = fleet.port_lo
    vss = []
    for i in range(ROUTES):
        v = harness.virtualservice("r-%d" % i, NS, [[harness.dest("echo", 7000)]])
        v["metadata"]["annotations"] = {EXPOSE: "true", PORT: str(lo + i)}
        vss.append(v)
    c = fleet.add_cluster("hc", [("echo", NS, [7000])], vss)
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {"check_rate": check_rate}})
    fleet.start_daemons()

    def all_routed():
        fleet._check_alive()
        return len(fleet.routed_ports()) >= ROUTES
    testlib.wait_until(all_routed, 60, "%d routes in HAProxy" % ROUTES)
    return fleet, c


def syn_counter(c):
    try:
        return testlib.SynCounter({(s.host, s.port) for s in c.servers})
    except PermissionError:
        pytest.skip("counting SYNs needs a raw packet socket (root)")


def inter_ms(line):
    f = line.split()
    return int(f[f.index("inter") + 1].rstrip("ms"))


def test_idle_checks_keep_to_the_cluster_budget(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    syn = None
    fleet, c = hc_fleet(make_fleet)
    try:
        servers = [l for l in fleet.proxy_cfg().splitlines()
                   if l.startswith("\tserver ") and " check " in l]
        assert len(servers) == 2 * ROUTES + 1, servers[:3]
        # 81 servers at 10 checks/s: 10 s at least, each spread over [10, 20) s
        assert all(10000 <= inter_ms(l) < 20000 for l in servers), servers[:3]
        declared = sum(1000.0 / inter_ms(l) for l in servers)
        assert declared <= BUDGET, declared
        syn = syn_counter(c)
        rate = syn.rate(WINDOW)
        # every server checked about once in the window: more than nothing,
        # and within the budget (a tenth over, for the odd retransmitted SYN)
        assert 0.3 * declared <= rate <= BUDGET * 1.1, (rate, declared)
        # the same fleet without a budget would check at 81 / 5 s = 16/s
    finally:
        if syn is not None:
            syn.close()


def serving_node(fleet, port):
    try:
        return harness.read_marker(fleet.listen, port, timeout=3).rsplit("@", 1)[1]
    except OSError:
        return None


def test_dead_backend_leaves_service_at_once_and_comes_back(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet, c = hc_fleet(make_fleet)
    port = fleet.port_lo
    (n1, ip1), (n2, _) = c.nodes
    testlib.wait_until(lambda: {serving_node(fleet, port) for _ in range(6)} == {n1, n2},
                       20, "both nodes serving port %d" % port)
    dead = next(s for s in c.servers if s.host == ip1)
    dead.close()
    t0 = time.monotonic()
    # At once: the first connection after the kill is already served (by
    # the other node, redispatched), and so is every one after it.
    got = [serving_node(fleet, port) for _ in range(20)]
    assert got == [n2] * 20, got
    assert time.monotonic() - t0 < 5
    # and another route, whose first connection meets the dead node too
    got = [serving_node(fleet, port + 1) for _ in range(10)]
    assert got == [n2] * 10, got
    # Back: a down server is checked every 5-10 s, up after 2 checks 1 s apart
    c.servers.remove(dead)
    c.servers.append(harness.EchoServer(dead.host, dead.port, dead.marker))
    testlib.wait_until(lambda: n1 in {serving_node(fleet, port) for _ in range(4)},
                       15, "node %s back in service on port %d" % (n1, port))



def reload_count(fleet):
    """The master's reload counter, once its CLI answers."""
    (n,) = testlib.wait_until(lambda: (lambda r: r is not None and (r,))(
        fleet.haproxy_reloads()), 10, "HAProxy's master CLI")
    return n


def test_budget_crossed_goes_live_then_one_reload(make_fleet):
    """Routes that take a cluster past a power of two of its budget go live
    at once, through the runtime API, their servers with the new interval;
    the servers in place keep theirs until one reload, when the change is
    in, gives them the new one too."""
    need("allocd", "renderd", "applyd", "watcherd")
    extra = 10          # 20 servers more: 101, past 10/s x 10 s
    fleet = make_fleet(ports=ROUTES + extra + 10)
    lo = fleet.port_lo
    vss = []
    for i in range(ROUTES + extra):
        v = harness.virtualservice("r-%d" % i, NS, [[harness.dest("echo", 7000)]])
        v["metadata"]["annotations"] = {PORT: str(lo + i)}
        if i < ROUTES:
            v["metadata"]["annotations"][EXPOSE] = "true"
        vss.append(v)
    c = fleet.add_cluster("hc", [("echo", NS, [7000])], vss)
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {"check_rate": BUDGET}})
    fleet.start_daemons()
    testlib.wait_until(lambda: len(fleet.routed_ports()) >= ROUTES, 60,
                       "%d routes in HAProxy" % ROUTES)
    reloads = reload_count(fleet)
    applyd = fleet["applyd"]
    mark = len(applyd.log())
    for i in range(ROUTES, ROUTES + extra):
        c.annotate(NS, "r-%d" % i, **{EXPOSE: "true"})
    for i in range(ROUTES, ROUTES + extra):
        fleet.wait_address(c, NS, "r-%d" % i)
    # then one reload, once the change is in, for the servers in place
    testlib.wait_until(lambda: reload_count(fleet) > reloads, 30,
                       "the reload that gives the old servers the new interval")
    log = applyd.log()[mark:]
    assert "reloading to keep its check budget" in log, harness.tail(log, 20)
    # the new routes went live: no check (no reload) before that one
    first = log.index("reloading to keep its check budget")
    assert "checks it" not in log[:first], harness.tail(log, 20)
    testlib.wait_until(lambda: all(
        20000 <= inter_ms(l) < 40000 for l in fleet.proxy_cfg().splitlines()
        if l.startswith("\tserver ") and " check " in l), 30,
        "every server of the cluster at the doubled interval")
    servers = [l for l in fleet.proxy_cfg().splitlines()
               if l.startswith("\tserver ") and " check " in l]
    assert len(servers) == 2 * (ROUTES + extra) + 1, len(servers)
    assert reload_count(fleet) == reloads + 1
