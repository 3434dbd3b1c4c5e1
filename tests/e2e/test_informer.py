"""watcherd's informers against the Kubernetes simulator's fault switches
(tests/sim/README.md): after each fault the system converges (routes and
written-back addresses right, nothing missed), and watcherd keeps running
with bounded memory."""

import os
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


def project_token(dir, version, token):
    """Write token as Kubernetes projects a service-account token: into
    dir/..<version>/token, made current by swapping the dir/..data symlink
    at once (dir/token points through it). Returns dir/token."""
    os.makedirs(os.path.join(dir, ".." + version))
    with open(os.path.join(dir, ".." + version, "token"), "w") as f:
        f.write(token)
    os.symlink(".." + version, os.path.join(dir, "..data.tmp"))
    os.rename(os.path.join(dir, "..data.tmp"), os.path.join(dir, "..data"))
    path = os.path.join(dir, "token")
    if not os.path.islink(path):
        os.symlink(os.path.join("..data", "token"), path)
    return path


def test_token_file_rotation(make_fleet):
    """A kubeconfig cluster whose user has a tokenFile: the token is rotated
    (the old one now gets a 401) and the file swapped, as Kubernetes does
    with projected tokens. watcherd reads the file again and its requests
    go on with the new token, with the same kubeconfig; an empty file on the
    way is logged once and keeps the token it has. No token is logged."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("kubeconfigs",))
    pay = payments_cluster(fleet, register=False)
    tokdir = os.path.join(fleet.kubeconfig_dir, "token")
    old = pay.sim.token
    pay.write_kubeconfig(token_file=project_token(tokdir, "1", old + "\n"))
    fleet.start()
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))

    new = "rotated-" + old
    pay.sim_control("POST", "rotate-token", {"token": new})
    pay.sim.token = new
    pay.sim_control("POST", "close-watches")
    log_has(fleet, r"payments: credentials refused \(401\), waiting for a "
            r"new kubeconfig or token file")

    # An empty file: logged once, however many 401s and polls follow.
    project_token(tokdir, "2", "")
    log_has(fleet, r"payments: token file \S+/token: empty; keeping the "
            r"token we have")
    refused = len(re.findall(r"credentials refused", fleet["watcherd"].log()))
    testlib.wait_until(lambda: len(re.findall(
        r"credentials refused", fleet["watcherd"].log())) >= refused + 3, 20,
        "three more 401s")
    assert len(re.findall(r"token file .*: empty", fleet["watcherd"].log())) == 1

    project_token(tokdir, "3", new + "\n")
    log_has(fleet, r"payments: token file \S+/token changed, read again")
    log_has(fleet, r"payments: new credentials, its requests start over")
    new_vs(fleet, pay, "after-token-file")
    assert fleet.marker(port) in pay.markers(NS, "ledger-db", 5432)
    for d in fleet.daemons.values():
        assert old not in d.log() and new not in d.log(), d.name


def test_token_file_read_on_401(make_fleet):
    """The folder is scanned only hourly: the 401 that follows a rotation
    is what makes watcherd look at the token file again."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("kubeconfigs",), poll_interval=3600)
    pay = payments_cluster(fleet, register=False)
    tokdir = os.path.join(fleet.kubeconfig_dir, "token")
    pay.write_kubeconfig(token_file=project_token(tokdir, "1", pay.sim.token))
    fleet.start()
    expose(fleet, pay, "ledger-db")

    new = "rotated-" + pay.sim.token
    project_token(tokdir, "2", new)
    pay.sim_control("POST", "rotate-token", {"token": new})
    pay.sim.token = new
    pay.sim_control("POST", "close-watches")
    log_has(fleet, r"payments: token file \S+/token changed, read again")
    new_vs(fleet, pay, "after-401")


def test_istio_v1alpha3_only(make_fleet):
    """A cluster that serves networking.istio.io only at v1alpha3."""
    fleet, pay = start(make_fleet, sim_args=("--istio-versions", "v1alpha3"))
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    log_has(fleet, r"VirtualServices at networking.istio.io/v1alpha3")
    harness.read_marker(fleet.listen, port)
