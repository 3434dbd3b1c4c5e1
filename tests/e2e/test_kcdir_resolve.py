"""The kubeconfig folder's server names are resolved off watcherd's loop.

Whoever writes one kubeconfig may name a host whose DNS server answers late
or never. watcherd runs here in a mount namespace of its own whose
/etc/resolv.conf names a DNS server of the test's (tests/sim/dns_sim.py on a
loopback address): one cluster's name hangs while another cluster keeps
routing, then answers and its cluster comes up; a file that changes while a
lookup is out takes only the answer for the name it names now; an answer
that names an address no backend may have is refused like an IP."""

import json
import os
import shutil
import subprocess
import time

import pytest

import harness
import testlib
from harness import DOMAIN, need

SIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sim", "dns_sim.py")
# glibc waits this long for one answer, once: longer than watcherd's 15 s
RESOLV_OPTIONS = "options timeout:20 attempts:1"


def _can_unshare():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    cp = subprocess.run(["unshare", "-m", "--", "sh", "-c",
                         "mount --bind /etc/hostname /etc/hostname"],
                        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    return cp.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(),
                                reason="needs root and unshare -m to give watcherd "
                                "a resolv.conf of its own")


class Dns:
    """dns_sim.py on a loopback address, and watcherd's resolv.conf naming
    it alone."""

    def __init__(self, fleet):
        self.dir = os.path.join(fleet.run_dir, "dns")
        os.makedirs(self.dir, exist_ok=True)
        self.zone_path = os.path.join(self.dir, "zone.json")
        self.zone = {}
        self.set()
        self.addr = testlib.loopback_addr()
        port_file = os.path.join(self.dir, "dns.port")
        self.proc = testlib.Proc([harness.PY, SIM, "--listen", self.addr, "--port", "53",
                                  "--zone", self.zone_path, "--port-file", port_file],
                                 "dns", self.dir)
        harness.wait_port_file(self.proc, port_file)
        self.resolv_conf = os.path.join(self.dir, "resolv.conf")
        with open(self.resolv_conf, "w") as f:
            f.write("nameserver %s\n%s\n" % (self.addr, RESOLV_OPTIONS))
        # unshare and sh exec watcherd: its PID is the one started
        fleet.wrap["watcherd"] = [
            "unshare", "-m", "--", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', self.resolv_conf]

    def set(self, **names):
        """names: {name: entry} (None removes it), as dns_sim.py reads them."""
        for name, entry in names.items():
            if entry is None:
                self.zone.pop(name, None)
            else:
                self.zone[name] = entry
        tmp = self.zone_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.zone, f)
        os.rename(tmp, self.zone_path)

    def log(self):
        return self.proc.log()

    def wait_asked(self, name, what, timeout=30):
        testlib.wait_until(lambda: "%s A %s" % (name, what) in self.log(), timeout,
                           "a query for %s (%s)" % (name, what))

    def stop(self):
        self.proc.stop()


@pytest.fixture
def dns_fleet(make_fleet):
    made = []

    def make():
        need("allocd", "renderd", "applyd", "watcherd")
        fleet = make_fleet(sources=("kubeconfigs",))
        dns = Dns(fleet)
        made.append(dns)
        return fleet, dns
    yield make
    for dns in made:
        dns.stop()


def server(cluster, name):
    return "https://%s:%d" % (name, cluster.sim.port)


def test_a_name_that_hangs_holds_up_only_its_cluster(dns_fleet):
    fleet, dns = dns_fleet()
    pay = harness.payments_cluster(fleet, register=False)
    search = harness.search_cluster(fleet, register=False)
    # payments' DNS server never answers, nor that of five more files; search's
    # answers at once
    hangs = ["h%d.%s" % (i, DOMAIN) for i in range(5)]
    dns.set(**{pay.master_host: {"mode": "hang"},
               search.master_host: {"a": [search.sim.host]}},
            **{h: {"mode": "hang"} for h in hangs})
    pay.write_kubeconfig(server=server(pay, pay.master_host))
    for i, h in enumerate(hangs):
        pay.write_kubeconfig(name="h%d" % i, server=server(pay, h))
    search.write_kubeconfig(server=server(search, search.master_host))
    fleet.start()

    # search routes, by the address its name gave, while payments' lookup
    # is out
    fleet.wait_api(search.host)
    dns.wait_asked(pay.master_host, "hang")
    t0 = time.monotonic()
    search.annotate("search", "index", **{harness.EXPOSE: "true"})
    (port,) = fleet.wait_address(search, "search", "index")
    took = time.monotonic() - t0
    fleet.wait_serves(port, search.markers("search", "index", 9200))
    assert not fleet.tls_probe(pay.host)
    wlog = fleet["watcherd"].log()
    assert "resolves now" not in wlog
    # the lookup is still out: glibc waits 20 s for it
    assert "%s A 1 records" % pay.master_host not in dns.log()
    assert took < 15, "search's address took %.1f s" % took

    # watcherd gives up waiting at 15 s and says so, naming nothing else
    said = "kubeconfigs: payments.yaml: %s does not resolve (no answer in 15 s); " \
        "its cluster waits for it" % pay.master_host
    testlib.wait_until(lambda: said in fleet["watcherd"].log(), 40, "the name given up on")
    for i, h in enumerate(hangs):
        line = "kubeconfigs: h%d.yaml: %s does not resolve (no answer in 15 s)" % (i, h)
        testlib.wait_until(lambda: line in fleet["watcherd"].log(), 20, line)

    # the name answers: payments comes up at the address it gave, and its
    # workloads route
    dns.set(**{pay.master_host: {"a": [pay.sim.host]}})
    fleet.wait_api(pay.host, timeout=90)
    assert "payments.yaml: %s resolves now" % pay.master_host in fleet["watcherd"].log()
    pay.annotate("payments", "ledger-db", **{harness.EXPOSE: "true"})
    (lport,) = fleet.wait_address(pay, "payments", "ledger-db")
    fleet.wait_serves(lport, pay.markers("payments", "ledger-db", 5432))
    assert fleet.tls_probe(search.host)
    assert fleet.marker(port) in search.markers("search", "index", 9200)


def test_a_file_changed_during_a_lookup_takes_the_new_answer(dns_fleet):
    fleet, dns = dns_fleet()
    pay = harness.payments_cluster(fleet, register=False)
    stale = "stale." + DOMAIN
    nowhere = testlib.loopback_addr()       # nothing listens there
    # the first file's name answers in 6 s, with an address nothing serves
    dns.set(**{stale: {"a": [nowhere], "mode": "delay", "delay": 6},
               pay.master_host: {"a": [pay.sim.host]},
               "metadata." + DOMAIN: {"a": ["169.254.169.254"]}})
    pay.write_kubeconfig(server=server(pay, stale))
    fleet.start()
    dns.wait_asked(stale, "1 records in 6s")

    # the file changes while that lookup is out: the new name's answer is
    # the one taken, the late one is not
    pay.write_kubeconfig(server=server(pay, pay.master_host))
    fleet.wait_api(pay.host)
    testlib.wait_until(lambda: "%s A sent" % stale in dns.log(), 30, "the late answer")
    testlib.wait_until(lambda: "resolve: %s: 1 addresses" % stale in fleet["watcherd"].log(),
                       30, "watcherd took the late answer in")
    pay.annotate("payments", "ledger-db", **{harness.EXPOSE: "true"})
    (lport,) = fleet.wait_address(pay, "payments", "ledger-db")
    fleet.wait_serves(lport, pay.markers("payments", "ledger-db", 5432))
    assert fleet.tls_probe(pay.host)
    cfg = fleet.proxy_cfg()
    assert nowhere not in cfg and pay.sim.host in cfg

    # a name that resolves to link-local is refused as that IP would be
    meta = fleet.add_cluster("metadata", register=False, nodes=1)
    meta.write_kubeconfig(server=server(meta, "metadata." + DOMAIN))
    testlib.wait_until(lambda: "kubeconfigs: metadata.yaml: server metadata.%s: "
                       "169.254.169.254 is link-local; not connected to" % DOMAIN
                       in fleet["watcherd"].log(), 30, "the link-local master refused")
    assert "metadata" not in fleet["allocd"].log()
    assert not fleet.tls_probe(meta.host)
    assert fleet.tls_probe(pay.host)
