"""A proxy that takes seconds to check and to reload does not stall applyd.

HAProxy is run through a wrapper that, while a flag file exists, sleeps
SLOW seconds before it becomes the real binary: the checker (haproxy -c)
sleeps, and so does the master when it re-executes itself for a reload
(it runs argv[0] again, the wrapper).  Each sleep alone is longer than the
bus's silence limit (3.5 s), so an applyd that waited for its proxy would
find its renderd feed silent and reconnect and catch up.  Instead, during
the ~2 x SLOW s job applyd goes on reading the bus (a newer generation is
taken and queued), the old workers keep serving, nothing is reconnected or
caught up, and when the reload ends its generation is acknowledged (the
address is written) and the queued one goes live at once, without a second
reload.
"""

import os
import socket
import time

import harness
import testlib
from harness import ERROR, EXPOSE, PORT, need

NS = "payments"
SLOW = 5                        # seconds the checker and the re-exec sleep

WRAPPER = """#!/bin/bash
# haproxy, slowed down while %(flag)s exists (tests/e2e/test_slow_reload.py)
echo "$(date +%%s.%%N) $$ $*" >> %(flag)s.log
[ -e %(flag)s ] && sleep %(slow)d
exec -a "$0" %(real)s "$@"
"""

# What applyd logs when its loop was held up long enough to lose the bus.
STALLED = ("silent for", "reconnecting", "catching up", "gap after",
           "no answer to SINCE")


def cpu_seconds(pid):
    """User and system CPU seconds a process has used."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def slow_haproxy(fleet, kind="haproxy"):
    """A wrapper named after the proxy (its comm stays the proxy's) and
    its flag."""
    bindir = os.path.join(fleet.run_dir, "slowbin")
    os.makedirs(bindir)
    flag = os.path.join(fleet.run_dir, "slow")
    path = os.path.join(bindir, kind)
    with open(path, "w") as f:
        f.write(WRAPPER % {"flag": flag, "slow": SLOW, "real": "/usr/sbin/" + kind})
    os.chmod(path, 0o755)
    return path, flag


def test_slow_check_and_reload_keep_the_bus(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=8)
    pay = harness.payments_cluster(fleet)
    binary, flag = slow_haproxy(fleet)
    # A port held by another program: once it is let go, applyd reloads
    # HAProxy by itself to bind it; the reload this test slows down.
    held = fleet.port_hi
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((fleet.listen, held))
    squatter.listen(8)
    try:
        fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {
            "kind": "haproxy", "binary": binary}})
        fleet.start_daemons()
        pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(fleet.port_lo)})
        (port,) = fleet.wait_address(pay, NS, "ledger-db")
        ledger = pay.markers(NS, "ledger-db", 5432)
        fleet.wait_serves(port, ledger)
        pay.annotate(NS, "orders-db", **{EXPOSE: "true", PORT: str(held)})
        fleet.wait_annotation(pay, NS, "orders-db", ERROR)
        applyd = fleet["applyd"]
        mark = len(applyd.log())
        reloads = fleet.haproxy_reloads()
        master = fleet.proxy_master()
        open(flag, "w").close()
    finally:
        squatter.close()

    def since():
        return applyd.log()[mark:]

    # applyd looks for freed ports every 5 s, then checks (SLOW s) and
    # reloads (SLOW s more)
    testlib.wait_until(lambda: "haproxy -c checks it" in since(), 15,
                       "applyd checking the reload's configuration")
    began = time.monotonic()
    cpu = cpu_seconds(applyd.pid)
    # meanwhile: another route, and the one served keeps serving
    pay.annotate(NS, "cache", **{EXPOSE: "true"})
    testlib.wait_until(lambda: " waits for the " in since(), SLOW,
                       "the new generation taken off the bus during the check")
    assert set(fleet.markers(port, 3)) <= ledger
    assert fleet.wait_address(pay, NS, "orders-db", timeout=4 * SLOW + 15) == [held]
    took = time.monotonic() - began
    cpu = cpu_seconds(applyd.pid) - cpu
    print("slow reload: %.1f s, applyd used %.2f s of CPU meanwhile" % (took, cpu))
    # following the job costs little: it is polled, not spun on
    assert cpu < 0.25 * took, "applyd used %.2f s of CPU in %.1f s" % (cpu, took)
    cache = fleet.wait_address(pay, NS, "cache", timeout=10)
    os.unlink(flag)
    fleet.wait_serves(held, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    fleet.wait_serves(cache[0], pay.markers(NS, "cache", 6379))
    log = since()
    assert took >= 1.5 * SLOW, "the job took %.1f s: was it slowed?" % took
    assert "(reloaded)" in log
    for words in STALLED:
        assert words not in log, "applyd stalled: %r in its log:\n%s" % (
            words, harness.tail(log, 40))
    assert fleet.proxy_master() == master       # a reload, not a restart
    # the queued route went live after the reload: no second reload
    assert fleet.haproxy_reloads() == reloads + 1


HANGING = """#!/bin/bash
# haproxy whose master never comes up while %(flag)s exists; its checker
# runs as usual (tests/e2e/test_slow_reload.py)
if [ -e %(flag)s ] && [ "$1" != "-c" ]; then
	exec -a "$0" sleep 60
fi
exec -a "$0" %(real)s "$@"
"""


def test_start_that_never_comes_up_keeps_the_last_good(make_fleet):
    """HAProxy dies and its restart hangs: after its deadline (15 s) the
    start has failed, the last good configuration is still the one on disk,
    and the start is tried again (it then comes up); the bus was never lost
    meanwhile, and a route added during the hung start is served after."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    binary, flag = slow_haproxy(fleet)
    with open(binary, "w") as f:
        f.write(HANGING % {"flag": flag, "real": "/usr/sbin/haproxy"})
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {
        "kind": "haproxy", "binary": binary}})
    fleet.start_daemons()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    ledger = pay.markers(NS, "ledger-db", 5432)
    fleet.wait_serves(port, ledger)
    applyd = fleet["applyd"]
    mark = len(applyd.log())
    good = fleet.proxy_cfg()
    open(flag, "w").close()
    assert harness.stop_proxy(fleet.run_dir), "no HAProxy to stop"

    def since():
        return applyd.log()[mark:]

    testlib.wait_until(lambda: "exited (" in since(), 10, "applyd seeing HAProxy exit")
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    testlib.wait_until(lambda: " waits for the " in since(), 15,
                       "the new generation taken off the bus during the apply")
    testlib.wait_until(lambda: "did not come up in 15000 ms" in since(), 25,
                       "the hung start given up")
    assert fleet.proxy_cfg() == good
    os.unlink(flag)
    fleet.wait_serves(port, ledger, timeout=30)
    (orders,) = fleet.wait_address(pay, NS, "orders-db", timeout=30)
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    log = since()
    assert "start failed" in log
    for words in STALLED:
        assert words not in log, "applyd stalled: %r in its log:\n%s" % (
            words, harness.tail(log, 40))


def test_slow_nginx_check_keeps_the_bus(make_fleet):
    """nginx reloads for every change, each checked by nginx -t first: a
    check that takes SLOW s does not hold applyd, the change made meanwhile
    is queued and applied after, and nothing is reconnected."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(proxies=[("nginx", "nginx")])
    pay = harness.payments_cluster(fleet)
    binary, flag = slow_haproxy(fleet, "nginx")
    fleet.write_conf(**{"proxy.nginx": {"binary": binary}})
    fleet.start_daemons()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (ledger,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(ledger, pay.markers(NS, "ledger-db", 5432))
    applyd = fleet["applyd"]
    mark = len(applyd.log())
    master = fleet.proxy_master()
    open(flag, "w").close()

    def since():
        return applyd.log()[mark:]

    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    testlib.wait_until(lambda: "nginx -t checks it" in since(), 15,
                       "applyd checking the new configuration")
    began = time.monotonic()
    pay.annotate(NS, "cache", **{EXPOSE: "true"})
    testlib.wait_until(lambda: " waits for the " in since(), SLOW,
                       "the new generation taken off the bus during the check")
    assert fleet.marker(ledger) in pay.markers(NS, "ledger-db", 5432)
    (orders,) = fleet.wait_address(pay, NS, "orders-db", timeout=4 * SLOW + 15)
    assert time.monotonic() - began >= 0.5 * SLOW
    os.unlink(flag)
    cache = fleet.wait_address(pay, NS, "cache", timeout=4 * SLOW + 15)
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    fleet.wait_serves(cache[0], pay.markers(NS, "cache", 6379))
    log = since()
    for words in STALLED:
        assert words not in log, "applyd stalled: %r in its log:\n%s" % (
            words, harness.tail(log, 40))
    assert fleet.proxy_master() == master       # reloaded, never restarted
