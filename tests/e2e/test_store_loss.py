"""Losing allocd's store loses nothing and gives nothing away (issue 16).

Each scenario runs real daemons, the Kubernetes and PKS simulators and a real
HAProxy, while a prober connects to every owner's port again and again over
TCP. In every case: no owner moves, no probe of an owner's port reaches
another backend, and `allocd -R` replays the new store identically.

- the store deleted while watcherd, renderd and applyd keep running: a route
  exposed after the recovery goes live as fast as one exposed before;
- the store deleted together with a watcherd restart;
- addresses (and their proofs) copied onto other objects, in the same
  namespace, another namespace and another cluster, walked before and after
  their owners: the copies are refused, on the copier, naming nobody;
- a portico.dev/port request for a port another cluster holds, across the
  loss;
- a store loss during churn.
"""

import os
import shutil
import subprocess
import threading
import time

import msgpack
import zmq

import harness
import testlib
from harness import (ADDRESS, ERROR, EXPOSE, PORT, dest, need,  # noqa: F401
                     payments_cluster, search_cluster, virtualservice)

E = testlib.events

PROOF = "portico.dev/proof"
STORE_LOST, RECOVERED = "STORE_LOST", "RECOVERED"     # as the tap names them
NS = "payments"
UNPROVEN = "was not written by portico for this object"
CACHE = "cache.payments.svc.cluster.local"      # from another namespace


class Prober:
    """Connects to each owner's port, round and round, until stopped. A probe
    answered by a marker outside the owner's own reached another backend; one
    not answered at all is traffic lost. Neither may happen."""

    def __init__(self, fleet, expect):
        self.fleet = fleet
        self.expect = dict(expect)      # port -> (owner, {markers})
        self.ok = 0
        self.failed = 0
        self.wrong = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            for port, (owner, markers) in self.expect.items():
                try:
                    m = harness.read_marker(self.fleet.listen, port, timeout=2)
                except OSError:
                    self.failed += 1
                    continue
                if m in markers:
                    self.ok += 1
                else:
                    self.wrong.append((owner, port, m))
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        print("probes: %d reached their owner, %d failed, %d reached another "
              "backend" % (self.ok, self.failed, len(self.wrong)))
        assert self.ok > 10 * len(self.expect), "the prober hardly ran"
        assert not self.wrong, "probes reached another backend: %r" % self.wrong[:10]
        assert not self.failed, "%d probes of owners' ports failed" % self.failed


def owners_fleet(make_fleet):
    """payments and search, seven routes exposed across three namespaces and
    two clusters (ledger-db on a port it asked for); each route's port and
    the markers of its own backends."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(ports=60)
    # billing's routes may reach payments' ledger-db and cache
    pay = payments_cluster(fleet, svc_annotations={
        (NS, svc): {harness.ALLOW_FROM: "billing"} for svc in ("ledger-db", "cache")})
    sea = search_cluster(fleet)
    fleet.start()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(fleet.port_lo + 7)})
    for ns, name in ((NS, "orders-db"), (NS, "cache"), ("billing", "reports")):
        pay.annotate(ns, name, **{EXPOSE: "true"})
    for name in ("index", "query"):
        sea.annotate("search", name, **{EXPOSE: "true"})
    ledger = pay.markers(NS, "ledger-db", 5432)
    routes = {
        (pay, NS, "orders-db"): [pay.markers(NS, "orders-db", 5432) |
                                 pay.markers(NS, "orders-db-canary", 5432)],
        (pay, NS, "ledger-db"): [ledger],
        (pay, NS, "cache"): [pay.markers(NS, "cache", 6379),
                             pay.markers(NS, "cache", 16379)],
        (pay, "billing", "reports"): [ledger],
        (sea, "search", "index"): [sea.markers("search", "index", 9200)],
        (sea, "search", "query"): [sea.markers("search", "query", 9300)],
    }
    expect, ports = {}, {}
    for (c, ns, name), markers in routes.items():
        got = fleet.wait_address(c, ns, name)
        ports[(c.name, ns, name)] = got
        for port, m in zip(got, markers):
            fleet.wait_serves(port, m)
            expect[port] = ("%s/%s/%s" % (c.name, ns, name), m)
    assert ports[("payments", NS, "ledger-db")] == [fleet.port_lo + 7]
    return fleet, pay, sea, expect, ports


def addresses(fleet, ports):
    """Every owner's address annotation, as ports, now."""
    by = {c.name: c for c in fleet.clusters}
    return {k: fleet.wait_address(by[k[0]], k[1], k[2]) for k in ports}


def lose_store(fleet, between=None):
    """SIGKILL allocd, delete its store, start it again (between() runs while
    it is down)."""
    allocd = fleet["allocd"]
    allocd.kill9()
    shutil.rmtree(fleet.store)
    if between is not None:
        between()
    allocd.start()


def replay(fleet):
    """allocd -R on the live store: the new store's log explains it whole."""
    cp = subprocess.run([harness.daemon_path("allocd"), "-f", fleet.conf_path,
                         "-R", fleet.store], capture_output=True, text=True,
                        timeout=120)
    assert cp.returncode == 0 and "identical to the record" in cp.stdout, \
        cp.stdout + cp.stderr
    return cp.stdout


def across_the_loss(fleet, expect, lose, tap=None, then=None):
    """lose() the store while the prober runs, wait for RECOVERED, run
    then(tap), and wait until every owner serves; the RECOVERED event, what
    then() gave, and every event on allocd's bus from the loss on."""
    own = tap is None
    tap = tap or harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        probe = Prober(fleet, expect)
        mark = tap.mark()
        lose()
        rec = tap.wait(RECOVERED, timeout=60, after=mark)
        got = then(tap) if then is not None else None
        for port, (owner, m) in expect.items():
            fleet.wait_serves(port, m)
        probe.stop()
        with tap.lock:
            events = tap.events[mark:]
    finally:
        if own:
            tap.close()
    print("recovered: %s" % rec.get(E.F_WHY))
    return rec, got, events


def age(fleet, sea, cycles=12):
    """History before the loss: search/warm exposed, then unexposed and
    exposed again, so that the generation the proxies serve is well above
    anything a new store would start from."""
    sea.create(virtualservice("warm", "search", [[dest("index", 9200)]],
                              annotations={EXPOSE: "true"}))
    fleet.wait_address(sea, "search", "warm")
    for _ in range(cycles):
        sea.annotate("search", "warm", **{EXPOSE: None})
        fleet.wait_no_annotation(sea, "search", "warm", ADDRESS)
        sea.annotate("search", "warm", **{EXPOSE: "true"})
        fleet.wait_address(sea, "search", "warm")


def stale_ack(fleet, gen):
    """What applyd acks every few seconds, its generation, sent to the new
    allocd before applyd has heard of the new store: the lost store's."""
    ctx = zmq.Context()
    try:
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 5000)
        s.connect("ipc://%s/alloc.in" % fleet.run_dir)
        s.send(msgpack.packb([E.VERSION, E.EV_APPLIED, 1, int(time.time() * 1000),
                              {E.F_PROXY: harness.HAPROXY_NAME, E.F_GEN: gen}]))
        assert s.poll(10000), "no ACK from allocd"
        s.close()
    finally:
        ctx.destroy(linger=0)


def time_to_live(fleet, tap, cluster, ns, name, svc, port):
    """Expose a new VirtualService; seconds until its PORT_LIVE, and by then
    the proxy serves it."""
    mark = tap.mark()
    t0 = time.time()
    cluster.create(virtualservice(name, ns, [[dest(svc, port)]],
                                  annotations={EXPOSE: "true"}))
    ev = tap.wait("PORT_LIVE", timeout=30, after=mark, n=name)
    assert harness.read_marker(fleet.listen, ev[E.F_PORT], timeout=5) in \
        cluster.markers(ns, svc, port), "live before the proxy serves it"
    got = fleet.wait_address(cluster, ns, name)
    assert got == [ev[E.F_PORT]]
    fleet.wait_serves(ev[E.F_PORT], cluster.markers(ns, svc, port))
    return ev["rx"] - t0


def test_store_lost_while_the_others_run(make_fleet):
    """The store deleted, watcherd, renderd and applyd running on: every
    owner keeps its port and its traffic, and the first route exposed after
    the recovery goes live as fast as one exposed before, though applyd's
    periodic ack of the lost store's generation reaches the new allocd
    first (as it does, sooner or later, on a fleet with a long history)."""
    fleet, pay, sea, expect, ports = owners_fleet(make_fleet)
    tap = harness.BusTap("ipc://%s/alloc.pub" % fleet.run_dir)
    try:
        age(fleet, sea)
        before = time_to_live(fleet, tap, sea, "search", "before", "index", 9200)
        old_seq = max(e["seq"] for e in tap.seen("PORT_LIVE"))
        gen = max(e[E.F_GEN] for e in tap.seen("APPLIED"))

        def lose():
            lose_store(fleet)
            stale_ack(fleet, gen)
        rec, after, events = across_the_loss(fleet, expect, lose, tap,
            lambda tap: time_to_live(fleet, tap, sea, "search", "fresh", "query", 9300))
    finally:
        tap.close()
    lost = [e for e in events if e["type"] == STORE_LOST]
    print("a new route went live in %.2f s before the loss, %.2f s after it"
          % (before, after))
    assert lost and lost[0]["seq"] > max(old_seq, lost[0]["g"]), \
        "the new store's seqs went back below the old one's"
    assert rec[E.F_SADOPT] == len(expect) + 2 and rec[E.F_SREFUSED] == 0, rec
    assert after < max(3 * before, 3.0), (before, after)
    assert addresses(fleet, ports) == ports
    for k in ports:
        c = pay if k[0] == "payments" else sea
        assert c.annotations(k[1], k[2]).get(PROOF)
    replay(fleet)


def copy_claim(fleet, src, src_ns, src_name, dst, dst_ns, dst_name, svc, port):
    """A VirtualService dst_ns/dst_name in dst (to svc:port) that carries
    src's address (with dst's host, as a tenant would forge it) and src's
    proof: exposed, and claiming src's port."""
    ann = src.annotations(src_ns, src_name)
    copy = {EXPOSE: "true", ADDRESS: ann[ADDRESS].replace(src.host, dst.host)}
    if PROOF in ann:
        copy[PROOF] = ann[PROOF]
    dst.create(virtualservice(dst_name, dst_ns, [[dest(svc, port)]], annotations=copy))


def slow_lists(cluster):
    """The cluster's next VirtualService list comes slowly: its resync
    reaches allocd after the other cluster's."""
    cluster.fault(kind="slow", bytes=700, delay=0.5, count=1, on="list",
                  path="/apis/networking.istio.io/")


def restart_watcherd_and_lose_store(fleet, slow=None):
    watcherd = fleet["watcherd"]
    watcherd.stop()
    lose_store(fleet)
    if slow is not None:
        slow_lists(slow)
    watcherd.start()


def test_store_lost_with_a_watcherd_restart(make_fleet):
    """The store deleted and watcherd restarted with it (it relists every
    cluster): no owner moves, traffic stays, new routes go live."""
    fleet, pay, sea, expect, ports = owners_fleet(make_fleet)
    age(fleet, sea)
    rec, _, _ = across_the_loss(
        fleet, expect, lambda: restart_watcherd_and_lose_store(fleet), None,
        lambda tap: time_to_live(fleet, tap, pay, NS, "fresh", "cache", 6379))
    assert rec[E.F_SADOPT] == len(expect) + 1 and rec[E.F_SREFUSED] == 0, rec
    assert addresses(fleet, ports) == ports
    replay(fleet)


def assert_refused_copy(fleet, cluster, ns, name, owners):
    """The copy carries an error that says why and names none of owners."""
    err = fleet.wait_annotation(cluster, ns, name, ERROR, timeout=30)
    assert UNPROVEN in err, err
    for word in owners:
        assert word not in err, (word, err)


def test_copied_addresses_are_refused(make_fleet):
    """Addresses copied with their proofs onto other objects: in the same
    namespace, in another namespace and in another cluster. They are refused
    before the loss, and across it, whether the copy is walked before its
    owner (the owner's cluster lists slowly) or after it; the owners keep
    their ports and their traffic."""
    fleet, pay, sea, expect, ports = owners_fleet(make_fleet)
    copies = [
        # copier cluster, ns, name, of (cluster, ns, name), to svc:port
        (pay, NS, "copy-orders", (pay, NS, "orders-db"), "cache", 6379),
        (pay, "billing", "copy-ledger", (pay, NS, "ledger-db"), CACHE, 6379),
        (sea, "search", "copy-orders", (pay, NS, "orders-db"), "query", 9300),
        (pay, NS, "copy-index", (sea, "search", "index"), "cache", 16379),
    ]
    for c, ns, name, (oc, ons, oname), svc, port in copies:
        copy_claim(fleet, oc, ons, oname, c, ns, name, svc, port)
    secrets = {"orders-db", "ledger-db", "index", "payments/", "search/"}
    secrets |= {c.uuid for c in fleet.clusters}
    for c, ns, name, _, _, _ in copies:
        assert_refused_copy(fleet, c, ns, name, secrets - {ns + "/"})
    # payments lists slowly: search's copy of orders-db is walked before
    # orders-db, payments' copy of index after index
    rec, _, events = across_the_loss(
        fleet, expect, lambda: restart_watcherd_and_lose_store(fleet, slow=pay))
    refused = [e for e in events if e["type"] == "REFUSED" and UNPROVEN in e[E.F_WHY]]
    assert rec[E.F_SADOPT] == len(expect) and rec[E.F_SREFUSED] == len(copies), rec
    assert sorted((e[E.F_NS], e[E.F_NAME]) for e in refused) == \
        sorted((ns, name) for _, ns, name, _, _, _ in copies)
    assert addresses(fleet, ports) == ports
    for c, ns, name, _, _, _ in copies:
        assert_refused_copy(fleet, c, ns, name, secrets - {ns + "/"})
    # a copy made after the recovery is refused as well
    copy_claim(fleet, sea, "search", "index", pay, "billing", "late-copy", CACHE, 6379)
    assert_refused_copy(fleet, pay, "billing", "late-copy", secrets - {"billing/"})
    # and once the copier drops the address, it gets a port of its own
    pay.annotate(NS, "copy-orders", **{ADDRESS: None, PROOF: None})
    (own,) = fleet.wait_address(pay, NS, "copy-orders")
    assert own not in expect
    fleet.wait_serves(own, pay.markers(NS, "cache", 6379))
    fleet.wait_no_annotation(pay, NS, "copy-orders", ERROR)
    replay(fleet)


def test_requested_port_held_across_the_loss(make_fleet):
    """search/query asks for the port payments/orders-db holds: refused
    before the loss, and refused after it though search resyncs first;
    orders-db keeps the port and its clients reach only its backends."""
    fleet, pay, sea, expect, ports = owners_fleet(make_fleet)
    (held,) = ports[("payments", NS, "orders-db")]
    (query,) = ports[("search", "search", "query")]
    sea.annotate("search", "query", **{PORT: str(held)})
    err = fleet.wait_annotation(sea, "search", "query", ERROR)
    assert "port %d" % held in err, err
    rec, _, events = across_the_loss(
        fleet, expect, lambda: restart_watcherd_and_lose_store(fleet, slow=pay))
    sets = {(e[E.F_NS], e[E.F_NAME]): e[E.F_PORT] for e in events if e["type"] == "PORT_SET"}
    assert sets.get((NS, "orders-db")) == held, sets
    assert sets.get(("search", "query")) in (None, query), sets
    assert rec[E.F_SREFUSED] == 0, rec
    assert addresses(fleet, ports) == ports
    assert "port %d" % held in sea.annotations("search", "query").get(ERROR, "")
    replay(fleet)


def test_store_lost_during_churn(make_fleet):
    """VirtualServices come and go, exposed and not, while the store is
    lost: the owners that stay exposed throughout keep their ports and their
    traffic; afterwards every churned one that is exposed serves its own
    backends on a port of its own."""
    fleet, pay, sea, expect, ports = owners_fleet(make_fleet)
    stop = threading.Event()
    state = {}
    errors = []

    def churn():
        i = 0
        try:
            while not stop.is_set():
                name = "churn-%d" % (i % 6)
                if name in state:
                    sea.delete("search", name)
                    del state[name]
                else:
                    sea.create(virtualservice(name, "search", [[dest("index", 9200)]],
                                              annotations={EXPOSE: "true"}))
                    state[name] = True
                i += 1
                time.sleep(0.15)
        except Exception as e:      # the test fails on it, below
            errors.append(e)

    t = threading.Thread(target=churn, daemon=True)
    t.start()
    try:
        time.sleep(1.0)
        across_the_loss(fleet, expect, lambda: lose_store(fleet))
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(10)
    assert not errors, errors
    assert addresses(fleet, ports) == ports
    held = {p for v in ports.values() for p in v}
    seen = set()
    for name in state:
        (p,) = fleet.wait_address(sea, "search", name)
        assert p not in held and p not in seen, (name, p)
        seen.add(p)
        fleet.wait_serves(p, sea.markers("search", "index", 9200))
    replay(fleet)


def test_first_store_under_proofs_adopts_unproven_once(make_fleet):
    """Addresses written before proofs (today's portico: no proof, and no
    key yet): the first store under proofs adopts them, writes their proofs,
    and from then on a lost store adopts them as proven ones."""
    fleet, pay, sea, expect, ports = owners_fleet(make_fleet)
    key = fleet.store + "-proof.key"
    assert os.stat(key).st_mode & 0o777 == 0o600

    objects = [(pay, NS, "orders-db"), (pay, NS, "ledger-db"), (pay, NS, "cache"),
               (pay, "billing", "reports"), (sea, "search", "index"),
               (sea, "search", "query")]

    def as_before_proofs():
        fleet["watcherd"].stop()
        lose_store(fleet, between=lambda: os.unlink(key))
        for c, ns, name in objects:
            c.annotate(ns, name, **{PROOF: None})
        fleet["watcherd"].start()
    rec, _, events = across_the_loss(fleet, expect, as_before_proofs)
    lost = [e for e in events if e["type"] == STORE_LOST]
    assert lost and lost[0]["sfirst"] == 1, lost
    assert rec[E.F_SADOPT] == len(expect) and rec[E.F_SREFUSED] == 0, rec
    assert addresses(fleet, ports) == ports
    for c, ns, name in objects:
        fleet.wait_annotation(c, ns, name, PROOF)
    replay(fleet)
    # the next loss (the key kept) finds them proven
    rec, _, events = across_the_loss(fleet, expect, lambda: lose_store(fleet))
    lost = [e for e in events if e["type"] == STORE_LOST]
    assert lost and lost[0]["sfirst"] == 0, lost
    assert rec[E.F_SADOPT] == len(expect) and rec[E.F_SREFUSED] == 0, rec
    assert addresses(fleet, ports) == ports
    replay(fleet)
