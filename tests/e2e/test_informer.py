"""watcherd's informers against the Kubernetes simulator's fault switches
(tests/sim/README.md): after each fault the system converges (routes and
written-back addresses right, nothing missed), and watcherd keeps running
with bounded memory."""

import re

import harness
import testlib
from harness import ADDRESS, EXPOSE, need, payments_cluster, service, virtualservice, dest

NS = "payments"
WATCH_IDLE = 5          # the smallest [clusters] watch_idle allowed


def start(make_fleet, sim_args=(), extra_objects=(), before=None):
    """The payments fleet with a short watch_idle and a long watch_timeout
    (a stalled watch can only end by watcherd's idle timer). before(pay)
    runs once the simulator is up, before watcherd starts."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(watch_timeout=300)
    pay = payments_cluster(fleet, sim_args=sim_args)
    for obj in extra_objects:
        pay.sim.request("POST", "/api/v1/namespaces/%s/services" % NS, obj)
    if before:
        before(pay)
    fleet.write_conf(clusters={"watch_timeout": 300, "watch_idle": WATCH_IDLE})
    fleet.start_daemons()
    return fleet, pay


def expose(fleet, pay, name, timeout=30):
    """Expose a VirtualService of payments; its port once written back."""
    pay.annotate(NS, name, **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, name, timeout)
    return port


def new_vs(fleet, pay, name, timeout=30):
    """A new exposed VirtualService to ledger-db; its port once written back
    and served."""
    pay.create(virtualservice(name, NS, [[dest("ledger-db", 5432)]],
                              annotations={EXPOSE: "true"}))
    (port,) = fleet.wait_address(pay, NS, name, timeout)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    return port


def log_has(fleet, pattern, timeout=20):
    testlib.wait_until(lambda: re.search(pattern, fleet["watcherd"].log()), timeout,
                       "watcherd logging %r" % pattern)


def test_watch_stream_faults(make_fleet):
    """Split chunks and bookmarks, a malformed line, 500s, a 410 in-stream
    with changes made while watcherd could not see them, and a stalled
    watch: each time the routes and addresses converge."""
    fleet, pay = start(make_fleet)
    orders = expose(fleet, pay, "orders-db")

    # Events across chunk boundaries (3 bytes a chunk), several in one.
    pay.fault(kind="split", bytes=3)
    pay.fault(kind="bookmarks", interval=0.2)
    pay.sim_control("POST", "close-watches")
    new_vs(fleet, pay, "split-a")
    pay.sim_control("DELETE", "faults")
    pay.fault(kind="split", bytes=1 << 20)
    new_vs(fleet, pay, "split-b")
    pay.sim_control("DELETE", "faults")

    # Bookmarks carry the resourceVersion on: after a change watcherd does
    # not watch (a namespace) and a compaction, the VirtualService watch
    # resumes from its last bookmark, with no relist.
    pay.fault(kind="bookmarks", interval=0.2)
    pay.sim_control("POST", "close-watches")
    vs_path = pay.vs_api + "/virtualservices"
    relists = pay.sim_control("GET", "requests")["list " + vs_path]
    assert pay.sim.request("POST", "/api/v1/namespaces",
                           {"metadata": {"name": "unwatched"}})[0] == 201
    marks = pay.sim_control("GET", "requests").get("bookmark " + vs_path, 0)
    testlib.wait_until(lambda: pay.sim_control("GET", "requests").get(
        "bookmark " + vs_path, 0) >= marks + 2, 10, "two more bookmarks")
    pay.sim_control("POST", "compact")
    pay.sim_control("POST", "close-watches")
    new_vs(fleet, pay, "after-bookmarks")
    assert pay.sim_control("GET", "requests")["list " + vs_path] == relists
    pay.sim_control("DELETE", "faults")

    # Slow streams: 64 bytes every 10 ms.
    pay.fault(kind="slow", bytes=64, delay=0.01)
    pay.sim_control("POST", "close-watches")
    new_vs(fleet, pay, "after-slow")
    pay.sim_control("DELETE", "faults")

    # A watch line that is not JSON, then 500s for the next requests: watcherd
    # backs off and comes back.
    pay.fault(kind="malformed", on="watch", count=1)
    pay.fault(kind="status", status=500, count=3)
    pay.sim_control("POST", "close-watches")
    log_has(fleet, r"watch: malformed event")
    new_vs(fleet, pay, "after-500")

    # The 410 window: the open watches go silent, a VirtualService is made
    # and another deleted, the history is compacted, the streams break. The
    # resumed watch gets an in-stream 410; the relist finds both changes.
    pay.fault(kind="stall", count=0)
    pay.create(virtualservice("in-window", NS, [[dest("ledger-db", 5432)]],
                              annotations={EXPOSE: "true"}))
    pay.delete(NS, "orders-db")
    pay.sim_control("POST", "compact")
    pay.sim_control("POST", "close-watches?abort=true")
    log_has(fleet, r"virtualservices: watch expired, relisting")
    (port,) = fleet.wait_address(pay, NS, "in-window")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    fleet.wait_refused(orders)

    # A stalled watch (open, silent, no end in sight: watch_timeout is 300 s)
    # is cut by watcherd's own idle timer, and the watch resumes.
    pay.fault(kind="stall", count=0)
    pay.create(virtualservice("after-stall", NS, [[dest("ledger-db", 5432)]],
                              annotations={EXPOSE: "true"}))
    log_has(fleet, r"virtualservices: watch idle for %d s, restarting" % WATCH_IDLE,
            WATCH_IDLE + 10)
    fleet.wait_address(pay, NS, "after-stall")

    # A 410 Gone in-stream relists too.
    pay.fault(kind="watch-error", reason="Gone", count=1, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    new_vs(fleet, pay, "after-gone")
    assert fleet["watcherd"].alive()


def test_oversized_object_and_continue_expiry(make_fleet):
    """A 5 MiB VirtualService (over watcherd's 4 MiB event cap) is refused,
    by the watch and by the list, with a log line naming it; the others
    still work and watcherd's memory stays bounded. A paged list whose
    continue token expires starts over and completes."""
    # 520 Services: the list of services takes two pages of 500.
    filler = [service("filler-%03d" % i, NS, [(80, 30000 + i)]) for i in range(520)]

    def before(pay):
        pay.fault(kind="continue-expired", count=1, path="/api/v1/services")
    fleet, pay = start(make_fleet, extra_objects=filler, before=before)
    expose(fleet, pay, "ledger-db")
    counts = pay.sim_control("GET", "requests")
    assert counts["list /api/v1/services"] >= 3, counts
    log_has(fleet, r"services: continue token expired, relisting")

    big = virtualservice("huge", NS, [[dest("ledger-db", 5432)]],
                         annotations={EXPOSE: "true", "pad": "x" * (5 << 20)})
    pay.create(big)
    log_has(fleet, r"virtualservices: payments/huge: object larger than 4 MiB refused")
    new_vs(fleet, pay, "after-huge")
    # A relist meets it in a list page: refused the same way.
    pay.fault(kind="watch-error", count=1, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    testlib.wait_until(lambda: len(re.findall(r"payments/huge: object larger",
                                              fleet["watcherd"].log())) >= 2, 20,
                       "the relist refusing payments/huge")
    new_vs(fleet, pay, "after-relist")
    assert ADDRESS not in pay.annotations(NS, "huge")
    assert fleet["watcherd"].alive()
    with open("/proc/%d/status" % fleet["watcherd"].pid) as f:
        hwm = int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
    # A 5 MiB object seen twice, a 4 MiB head kept once: well under this,
    # even under ASan (which adds its own shadow and quarantine).
    assert hwm < 256 * 1024, "watcherd VmHWM %d kB" % hwm


def test_token_rotation(make_fleet):
    """The cluster's token is rotated: the API server answers 401 until
    watcherd asks PKS for the new credentials (binds), then all is well."""
    fleet, pay = start(make_fleet)
    expose(fleet, pay, "ledger-db")
    pay.sim_control("POST", "rotate-token", {"token": "rotated-" + pay.sim.token})
    pay.sim.token = "rotated-" + pay.sim.token
    pay.register()                          # PKS's binds now hand out the new one
    pay.sim_control("POST", "close-watches")
    log_has(fleet, r"payments: credentials refused \(401\), asking PKS")
    new_vs(fleet, pay, "after-rotation")


def test_istio_v1alpha3_only(make_fleet):
    """A cluster that serves networking.istio.io only at v1alpha3."""
    fleet, pay = start(make_fleet, sim_args=("--istio-versions", "v1alpha3"))
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    log_has(fleet, r"VirtualServices at networking.istio.io/v1alpha3")
    harness.read_marker(fleet.listen, port)
