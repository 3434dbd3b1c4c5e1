"""The watch path under attack (issue 11): what a cluster's API server, or
the way to it, can do to watcherd, tried for real against the simulators'
fault switches (tests/sim/README.md). Each costs that cluster at most a
quick restart, never watcherd itself, and never another cluster."""

import re
import time

import harness
import testlib
from harness import EXPOSE, dest, need, payments_cluster, search_cluster, virtualservice
from test_informer import NS, expose, log_has, new_vs, start


def watch_count(pay):
    """How many VirtualService watches the simulator has been asked for."""
    return pay.sim_control("GET", "requests").get(
        "watch %s/virtualservices" % pay.vs_api, 0)


def two_clusters(make_fleet):
    """A started fleet of payments (ledger-db exposed) and search."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet)
    search = search_cluster(fleet)
    fleet.start()
    expose(fleet, pay, "ledger-db")
    return fleet, pay, search


def expose_index(fleet, search):
    """search's index exposed; its port once written back."""
    search.annotate("search", "index", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(search, "search", "index")
    return port


def wait_watches(pay, n, timeout, what):
    """Until the simulator has been asked for n VirtualService watches;
    the seconds that took."""
    t0 = time.monotonic()
    testlib.wait_until(lambda: watch_count(pay) >= n, timeout, what)
    return time.monotonic() - t0


def test_error_event_with_reason(make_fleet):
    """An in-stream ERROR of code 500 with a reason (any API server may send
    one): watcherd read the reason after freeing it, and the ASan build
    died. Now it backs off, says which code, and goes on."""
    fleet, pay = start(make_fleet)
    expose(fleet, pay, "ledger-db")
    pay.fault(kind="watch-error", code=500, reason="InternalError",
              message="etcdserver: request timed out", count=1, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    new_vs(fleet, pay, "after-error")
    assert fleet["watcherd"].alive()
    log_has(fleet, r"virtualservices: watch: server sent an ERROR event, code 500")


def test_malformed_line_restarts_at_once(make_fleet):
    """The error backoff resets once the stream is healthy, and a line that
    is not JSON costs a quick restart of that watch: before, four 500s on a
    watch left the backoff at 4 s for ever, and one malformed line after a
    long healthy stream made the next change wait 6 to 10 s."""
    fleet, pay = start(make_fleet)
    expose(fleet, pay, "ledger-db")

    # Four refused watches in a row: 0.5, 1, 2 and 4 s of backoff.
    n = watch_count(pay)
    pay.fault(kind="status", status=500, on="watch", count=4, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    wait_watches(pay, n + 5, 40, "four refused watches and a good one")
    # A healthy stream: bookmarks every second (the simulator's default).
    marks = pay.sim_control("GET", "requests").get(
        "bookmark %s/virtualservices" % pay.vs_api, 0)
    testlib.wait_until(lambda: pay.sim_control("GET", "requests").get(
        "bookmark %s/virtualservices" % pay.vs_api, 0) >= marks + 2, 20,
        "two bookmarks on the healthy watch")

    # The next watch's events are all cut: the new VirtualService's ADDED
    # is not JSON. watcherd watches again from where it was, at once.
    pay.fault(kind="corrupt", fraction=1.0, count=1, path=pay.vs_api)
    n = watch_count(pay)
    pay.sim_control("POST", "close-watches")
    wait_watches(pay, n + 1, 20, "the watch that will be corrupted")
    pay.create(virtualservice("after-malformed", NS, [[dest("ledger-db", 5432)]],
                              annotations={EXPOSE: "true"}))
    took = wait_watches(pay, n + 2, 30, "the watch after the malformed line")
    assert took < 4, "the watch restarted %.1f s after the malformed line" % took
    log_has(fleet, r"virtualservices: watch: malformed event; again in \d+ ms")
    (port,) = fleet.wait_address(pay, NS, "after-malformed")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))


def test_thirty_percent_malformed(make_fleet):
    """30% of payments' watch events are cut in half: every change is still
    seen within a few seconds, and the search cluster beside it is not
    slowed at all."""
    fleet, pay, search = two_clusters(make_fleet)
    expose_index(fleet, search)
    pay.fault(kind="corrupt", fraction=0.3, seed=11, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    for i in range(8):
        t0 = time.monotonic()
        name = "churn-%d" % i
        pay.create(virtualservice(name, NS, [[dest("ledger-db", 5432)]],
                                  annotations={EXPOSE: "true"}))
        fleet.wait_address(pay, NS, name, timeout=20)
        took = time.monotonic() - t0
        assert took < 8, "%s seen and written back after %.1f s" % (name, took)
    t0 = time.monotonic()
    search.create(virtualservice("beside", "search", [[dest("query", 9300)]],
                                 annotations={EXPOSE: "true"}))
    (port,) = fleet.wait_address(search, "search", "beside", timeout=20)
    assert time.monotonic() - t0 < 8
    fleet.wait_serves(port, search.markers("search", "query", 9300))
    assert len(re.findall(r"payments: virtualservices: watch: malformed event",
                          fleet["watcherd"].log())) >= 2
    assert "search: virtualservices: watch: malformed" not in fleet["watcherd"].log()
    assert fleet["watcherd"].alive()


def test_list_page_too_big(make_fleet):
    """20 VirtualServices of 3.5 MiB each (under the 4 MiB an object may
    be): a page of them is over the 64 MiB an answer may be. The page is
    asked for again with half the limit until it fits, the log says so,
    and the cluster's VirtualServices are all seen; a relist after it
    works too."""
    pad = "x" * (3500 << 10)

    def before(p):
        for i in range(20):
            p.create(virtualservice("big-%02d" % i, NS, [[dest("ledger-db", 5432)]],
                                    annotations={"pad": pad}))
    fleet, pay = start(make_fleet, before=before)
    port = expose(fleet, pay, "ledger-db", timeout=120)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    log = fleet["watcherd"].log()
    assert re.search(r"payments: virtualservices: list page over 64 MiB, asking "
                     r"for pages of 250", log), log[-2000:]
    limits = [int(x) for x in re.findall(r"virtualservices: list page over 64 MiB, "
                                         r"asking for pages of (\d+)", log)]
    assert limits == sorted(limits, reverse=True) and limits[-1] >= 1
    # The big ones were seen: exposing one gets it an address.
    expose(fleet, pay, "big-07", timeout=60)
    # A relist (an in-stream 410) goes through with the smaller pages.
    lists = pay.sim_control("GET", "requests")["list %s/virtualservices" % pay.vs_api]
    pay.fault(kind="watch-error", count=1, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    testlib.wait_until(lambda: pay.sim_control("GET", "requests")[
        "list %s/virtualservices" % pay.vs_api] > lists, 30, "a relist")
    new_vs(fleet, pay, "after-relist", timeout=60)
    assert fleet["watcherd"].alive()


def test_first_master_down(make_fleet):
    """A PKS cluster whose first master is down (a loopback address nobody
    listens on): watcherd reaches the API through the second, verifying
    TLS against the cluster's CA for the kubeconfig's host as before."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet, register=False)
    dead = testlib.loopback_addr()
    assert harness.refused(dead, pay.sim.port)
    pay.register(kubernetes_master_ips=[dead, pay.sim.host])
    fleet.start()
    port = expose(fleet, pay, "ledger-db", timeout=60)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    log_has(fleet, r"payments: master %s: transport error, trying %s"
            % (re.escape(dead), re.escape(pay.sim.host)))
    new_vs(fleet, pay, "through-second")


def test_binds_201(make_fleet):
    """PKS answers the binds POST with 201 Created (any 2xx with a
    kubeconfig): the cluster is watched, and its VirtualServices get their
    addresses."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet)
    fleet.pks.control("PUT", "/_sim/faults", {
        "path": "/v1/clusters/payments/binds", "answer": 201})
    fleet.start()
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    assert fleet.pks.requests().get("/v1/clusters/payments/binds", 0) >= 1
    log_has(fleet, r"payments: credentials from PKS")


def test_no_master_answers(make_fleet):
    """Neither of payments' masters answers: watcherd tries each in turn,
    then backs off, while the search cluster beside it is watched as ever.
    Once PKS lists a master that answers, payments is watched through it."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet, register=False)
    search = search_cluster(fleet)
    dead = [testlib.loopback_addr(), testlib.loopback_addr()]
    assert all(harness.refused(ip, pay.sim.port) for ip in dead)
    pay.register(kubernetes_master_ips=dead)
    fleet.start()
    port = expose_index(fleet, search)
    fleet.wait_serves(port, search.markers("search", "index", 9200))
    log_has(fleet, r"payments: master %s: transport error, trying %s"
            % (re.escape(dead[0]), re.escape(dead[1])))
    log_has(fleet, r"payments: master %s: transport error, trying %s"
            % (re.escape(dead[1]), re.escape(dead[0])))
    log_has(fleet, r"payments: networking.istio.io not served \(transport error")
    pay.register(kubernetes_master_ips=[dead[0], pay.sim.host])
    port = expose(fleet, pay, "ledger-db", timeout=90)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    log_has(fleet, r"payments: API answering through master %s" % re.escape(pay.sim.host))


def test_empty_watches_do_not_spin(make_fleet):
    """payments' API answers every VirtualService watch with 200 and
    nothing, at once: watcherd watched again at once, for ever, as fast as
    the loop went. Now it pauses 100 ms doubling to 2 s, and the search
    cluster beside it is watched as ever."""
    fleet, pay, search = two_clusters(make_fleet)
    n = watch_count(pay)
    pay.fault(kind="empty", path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    # Six empty watches: at least 0.75 x (0.1 + 0.2 + 0.4 + 0.8) s apart
    # in all, however fast or loaded the machine.
    took = wait_watches(pay, n + 6, 30, "six empty watches")
    assert took >= 1.1, "six empty watches in %.2f s" % took
    log_has(fleet, r"payments: virtualservices: watch: ended at once; again in 2000 ms")
    expose_index(fleet, search)
    pay.sim_control("DELETE", "faults")
    new_vs(fleet, pay, "after-empty")


def test_impostor_master(make_fleet):
    """payments' first master answers TLS with a certificate from the same
    CA but for another name: watcherd refuses it as before, sends it no
    request (and so no token), and goes on through the second master."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = payments_cluster(fleet, register=False)
    # PKS masters share one port: the impostor listens on the real one's.
    impostor = harness.K8sSim(pay.dir + "-impostor", fleet.pki, "impostor",
                              ["impostor." + harness.DOMAIN], [],
                              args=("--port", str(pay.sim.port)))
    try:
        assert impostor.port == pay.sim.port
        pay.register(kubernetes_master_ips=[impostor.host, pay.sim.host])
        fleet.start()
        port = expose(fleet, pay, "ledger-db", timeout=60)
        fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
        log_has(fleet, r"payments: master %s: transport error, trying %s"
                % (re.escape(impostor.host), re.escape(pay.sim.host)))
        assert impostor.get("/_sim/requests") == {}
    finally:
        impostor.stop()
