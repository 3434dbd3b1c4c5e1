"""Metrics, /healthz and /readyz, scraped by a real Prometheus.

A fleet with every daemon's metrics on a free loopback port, and HAProxy's
own exporter on a stats frontend; Debian's Prometheus (/usr/bin/prometheus,
scraping every second, its database in the fleet's folder) scrapes them all.
Routes are exposed one at a time; PromQL over
portico_route_convergence_seconds_count sees them; every metric the Grafana
dashboard (deploy/grafana/portico.json) uses is among what Prometheus
scraped; /readyz says 503 until applyd's proxy serves, 200 after; and many
idle or half-sent connections to the metrics ports hold up no decision.
"""

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import harness
import testlib
from harness import EXPOSE

PROMETHEUS = "/usr/bin/prometheus"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "portico.json")
NS = "payments"
# exposed one at a time, each waited for: each is a generation of its own
ROUTES = ["ledger-db", "orders-db", "cache"]
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

pytestmark = pytest.mark.skipif(not os.access(PROMETHEUS, os.X_OK),
                                reason="needs Debian's prometheus package")


def get(host, port, path, timeout=5):
    """(status, content type, body) of GET http://host:port/path."""
    url = "http://%s:%d%s" % (host, port, path)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def samples(text):
    """{name{labels}: value} of an OpenMetrics text (no exemplars here)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class Prometheus:
    """/usr/bin/prometheus on a free loopback port, scraping targets
    ({job: ["host:port"]}) every second, with a metrics_path per job."""

    def __init__(self, dir, host, jobs):
        self.dir = os.path.join(dir, "prometheus")
        os.makedirs(self.dir, exist_ok=True)
        self.host, self.port = host, testlib.free_port(host)
        conf = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s",
                "  evaluation_interval: 1s", "scrape_configs:"]
        for job, targets in jobs.items():
            conf += ["  - job_name: %s" % job, "    static_configs:",
                     "      - targets: [%s]" % ", ".join('"%s"' % t for t in targets)]
        self.conf = os.path.join(self.dir, "prometheus.yml")
        with open(self.conf, "w") as f:
            f.write("\n".join(conf) + "\n")
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + self.conf,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=%s:%d" % (host, self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        testlib.wait_until(self._ready, 60, "prometheus ready")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited:\n" + self.logtext())
        try:
            return get(self.host, self.port, "/-/ready", 2)[0] == 200
        except OSError:
            return False

    def logtext(self):
        with open(os.path.join(self.dir, "prometheus.log")) as f:
            return f.read()[-4000:]

    def api(self, path, **params):
        status, _, body = get(self.host, self.port, "/api/v1/%s?%s" % (
            path, urllib.parse.urlencode(params)), 10)
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", body
        return doc["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture
def prometheus():
    made = []

    def make(*a):
        p = Prometheus(*a)
        made.append(p)
        return p
    yield make
    for p in made:
        p.stop()


def dashboard_metrics():
    """Every metric name the dashboard's PromQL reads."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []))
            walk(p.get("panels", []))
    walk(dash["panels"])
    assert exprs, "no expressions in the dashboard"
    names = set()
    for e in exprs:
        # drop label matchers and strings, then keep identifiers that name
        # a series (not functions, keywords or label names in by/without)
        e = re.sub(r'\{[^}]*\}', "", e)
        e = re.sub(r'\b(by|without)\s*\([^)]*\)', "", e)
        e = re.sub(r'\[[^\]]*\]', "", e)
        for m in re.finditer(r'[a-zA-Z_:][a-zA-Z0-9_:]*', e):
            if m.group(0).startswith(("portico_", "haproxy_")):
                names.add(m.group(0))
    return names


def start_fleet(make_fleet):
    """The payments fleet with metrics everywhere, applyd started first and
    alone (nothing to serve yet). Returns (fleet, cluster, {job: port})."""
    harness.need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    ports = {}
    for job in ("watcherd", "allocd", "renderd", "applyd", "haproxy"):
        while True:
            p = testlib.free_port(fleet.listen)
            if p not in ports.values() and not fleet.port_lo <= p <= fleet.port_hi \
                    and p != fleet.api_port:
                ports[job] = p
                break
    addr = lambda job: "%s:%d" % (fleet.listen, ports[job])
    fleet.write_conf(**{
        "metrics": {"watcherd": addr("watcherd"), "allocd": addr("allocd")},
        "proxy." + harness.HAPROXY_NAME: {
            "renderd_metrics": addr("renderd"), "applyd_metrics": addr("applyd"),
            "stats_listen": addr("haproxy")}})
    return fleet, pay, ports


def test_prometheus_scrapes_the_fleet(make_fleet, prometheus):
    fleet, pay, ports = start_fleet(make_fleet)
    host = fleet.listen

    # applyd alone: alive, not ready, and it says what it waits for
    applyd = harness.Daemon(fleet, "applyd", "applyd-" + harness.HAPROXY_NAME,
                            ["-p", harness.HAPROXY_NAME])
    fleet.daemons[applyd.key] = applyd
    applyd.start()
    testlib.wait_until(lambda: get(host, ports["applyd"], "/healthz")[0] == 200,
                       10, "applyd /healthz 200")
    status, _, body = get(host, ports["applyd"], "/readyz")
    assert status == 503 and "waiting for a first generation" in body, (status, body)
    status, ctype, body = get(host, ports["applyd"], "/metrics")
    assert status == 200 and ctype == OPENMETRICS, (status, ctype)
    assert body.endswith("# EOF\n")
    assert 'portico_route_convergence_seconds_count{proxy="haproxy"} 0' in body
    # the counters its control socket reports, under their own names
    assert 'portico_loop_counter_total{proxy="haproxy",name="apply_failures"} 0' \
        in body, body

    # renderd without allocd: not ready either, until it has the table
    renderd = harness.Daemon(fleet, "renderd", "renderd-" + harness.HAPROXY_NAME,
                             ["-p", harness.HAPROXY_NAME])
    fleet.daemons[renderd.key] = renderd
    renderd.start()
    status, _, body = get(host, ports["renderd"], "/readyz")
    assert status == 503 and "catching up with allocd" in body, (status, body)

    # the rest of the fleet: applyd serves, and says so
    for name in ("allocd", "watcherd"):
        d = harness.Daemon(fleet, name, name, [])
        fleet.daemons[d.key] = d
        d.start()
    fleet.wait_proxy()
    testlib.wait_until(lambda: get(host, ports["applyd"], "/readyz")[0] == 200,
                       30, "applyd /readyz 200")
    for job in ("watcherd", "allocd", "renderd"):
        assert get(host, ports[job], "/healthz")[0] == 200, job
        testlib.wait_until(lambda: get(host, ports[job], "/readyz")[0] == 200,
                           30, "%s /readyz 200" % job)
    # only GET, only the three paths
    assert get(host, ports["allocd"], "/nothing")[0] == 404
    req = urllib.request.Request("http://%s:%d/metrics" % (host, ports["allocd"]),
                                 method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 405

    prom = prometheus(fleet.run_dir, host, {
        job: ["%s:%d" % (host, p)] for job, p in ports.items()})
    testlib.wait_until(
        lambda: len([r for r in prom.query("up == 1")]) == len(ports),
        60, "every target up in prometheus")

    before = samples(get(host, ports["applyd"], "/metrics")[2])[
        'portico_route_convergence_seconds_count{proxy="haproxy"}']
    for name in ROUTES:
        pay.annotate(NS, name, **{EXPOSE: "true"})
        # live on the proxy before the next one is exposed
        for port in fleet.wait_address(pay, NS, name):
            testlib.wait_until(lambda: port in fleet.routed_ports(), 30,
                               "port %d routed" % port)

    def converged():
        r = prom.query('portico_route_convergence_seconds_count{job="applyd",proxy="haproxy"}')
        return r and float(r[0]["value"][1]) >= before + len(ROUTES) and r
    result = testlib.wait_until(converged, 30, "convergence counted in prometheus")
    assert result[0]["metric"]["proxy"] == "haproxy"
    # the watch -> decision stage saw the same routes
    # the stages and the state, as Prometheus last scraped them
    def at_least(expr, n):
        def check():
            r = prom.query(expr)
            return r and float(r[0]["value"][1]) >= n and r
        return testlib.wait_until(check, 30, "%s >= %s" % (expr, n))
    at_least('portico_watch_to_observation_seconds_count{job="watcherd"}', len(ROUTES))
    at_least('portico_watch_to_decision_seconds_count{job="allocd"}', len(ROUTES))
    # each route's decision was committed: a commit for it, at least
    at_least('portico_store_commit_seconds_count{job="allocd"}', len(ROUTES))
    at_least('portico_decision_to_table_seconds_count{job="renderd"}', len(ROUTES))
    at_least('portico_table_to_proxy_seconds_count{job="applyd"}', len(ROUTES))
    at_least('portico_decisions_total{job="allocd",type="port_set"}', len(ROUTES))
    at_least('portico_ports{job="allocd",state="used"}', len(ROUTES) + 1)  # cache: 2
    at_least('portico_clusters{job="allocd"}', 1)
    at_least('portico_writebacks_total{job="watcherd",result="written"}', len(ROUTES))
    at_least('portico_proxy_changes_total{job="applyd",how="runtime"}', 1)
    # HAProxy's exporter, on the stats frontend of the rendered config
    at_least('haproxy_process_nbthread{job="haproxy"}', 1)

    # every metric of the dashboard is among those scraped
    names = set(prom.api("label/__name__/values"))
    missing = sorted(dashboard_metrics() - names)
    assert not missing, "dashboard metrics never scraped: %s" % missing


def test_idle_clients_hold_up_no_decision(make_fleet):
    """Hundreds of connections that never finish a request, to every
    daemon's metrics port: the HTTP server is bounded (connections at
    once, per address, and an idle timeout) and runs beside the loop, so
    a route is still decided, written back and served as fast as ever, and
    /metrics answers again once the clients are cut."""
    fleet, pay, ports = start_fleet(make_fleet)
    fleet.start_daemons()
    host = fleet.listen
    daemons = ("watcherd", "allocd", "renderd", "applyd")
    for job in daemons:
        assert get(host, ports[job], "/metrics")[0] == 200, job
    nfds = lambda job: len(os.listdir("/proc/%d/fd" % fleet[job].pid))
    fds = {job: nfds(job) for job in daemons}

    hostile = []
    try:
        for job in daemons:
            for i in range(100):
                try:
                    s = socket.create_connection((host, ports[job]), timeout=2)
                except OSError:
                    continue        # refused at the limit: as meant
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never ends
                hostile.append(s)
        # what the daemons hold for them is bounded (32 at once)
        for job in daemons:
            assert nfds(job) <= fds[job] + 40, (job, fds[job], nfds(job))
        t0 = time.monotonic()
        pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
        (port,) = fleet.wait_address(pay, NS, "ledger-db", timeout=20)
        fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432), timeout=20)
        took = time.monotonic() - t0
        assert took < 15, "a route took %.1f s behind idle metrics clients" % took
        for d in fleet.daemons.values():
            assert d.alive(), d.name
    finally:
        for s in hostile:
            s.close()
    # the server is the daemons' again once they are gone (until it has
    # seen them go, a new connection may still be cut at the limit)
    def healthy(job):
        try:
            return get(host, ports[job], "/healthz")[0] == 200
        except OSError:
            return False
    for job in daemons:
        testlib.wait_until(lambda: healthy(job), 20,
                           "%s /healthz after the idle clients" % job)
        status, _, body = get(host, ports[job], "/metrics")
        assert status == 200 and body.endswith("# EOF\n"), job


def counter(host, port, name):
    return samples(get(host, port, "/metrics")[2]).get(name, 0)


def test_restarts_and_refusals_by_class(make_fleet):
    """Each watch restart counted under its cause (an in-stream 410, an
    ERROR of another code, a line that is not JSON), and a refused route
    under its class of reason; the malformed line's event is the
    annotation that follows, sent again on the restarted watch."""
    fleet, pay, ports = start_fleet(make_fleet)
    fleet.start_daemons()
    host, w = fleet.listen, ports["watcherd"]
    name = lambda cause: 'portico_watch_restarts_total{cause="%s"}' % cause
    before = {c: counter(host, w, name(c)) for c in ("410", "error", "malformed")}

    pay.fault(kind="watch-error", count=1, path=pay.vs_api)      # 410, Expired
    pay.sim_control("POST", "close-watches")
    testlib.wait_until(lambda: counter(host, w, name("410")) > before["410"], 30,
                       "a 410 counted")
    pay.fault(kind="watch-error", code=500, reason="InternalError", count=1,
              path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    testlib.wait_until(lambda: counter(host, w, name("error")) > before["error"], 30,
                       "an ERROR counted")
    pay.fault(kind="corrupt", fraction=1.0, count=1, path=pay.vs_api)
    pay.sim_control("POST", "close-watches")
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    testlib.wait_until(lambda: counter(host, w, name("malformed")) > before["malformed"],
                       30, "a malformed line counted")
    fleet.wait_address(pay, NS, "orders-db")

    # a route whose Service does not exist: refused, as the object's fault
    a = ports["allocd"]
    refused = 'portico_refusals_total{reason="invalid_object"}'
    n = counter(host, a, refused)
    pay.annotate(NS, "ghost", **{EXPOSE: "true"})
    testlib.wait_until(lambda: counter(host, a, refused) > n, 30, "a refusal counted")
    assert counter(host, a, 'portico_decisions_total{type="refused"}') >= 1


def test_address_taken_is_fatal_before_ready(make_fleet):
    """A metrics address another program holds: the daemon says so and
    exits before its pid file, rather than run unobserved."""
    fleet, pay, ports = start_fleet(make_fleet)
    with socket.socket() as s:
        s.bind((fleet.listen, ports["allocd"]))
        s.listen(1)
        d = harness.Daemon(fleet, "allocd", "allocd", [])
        fleet.daemons[d.key] = d
        with pytest.raises(AssertionError, match="exited"):
            d.start(timeout=20)
    assert "metrics: cannot listen on %s:%d" % (fleet.listen, ports["allocd"]) in d.log()
    assert not os.path.exists(d.pidfile)
