"""watcherd in shards (watcherd.8, SHARDS): shard i of n owns the clusters
whose id hashes to i (FNV-1a 64 of the PKS uuid or the kubeconfig file's
name, modulo n).

- Two shards, clusters from PKS and from kubeconfig files: every cluster is
  served, and by one shard only: every SYNC_BEGIN allocd logged for a
  cluster carries its owner's sync tag, and only the owner's log says it
  resynced it; kubectl reaches each cluster through HAProxy, and TCP each
  cluster's port.
- One shard killed: its clusters keep routing (last good state); a cluster
  deleted from PKS meanwhile stays routed (no other shard takes it down)
  until the shard is back, which takes it down; the other shard's clusters
  see no decision at all.
- The count from 2 to 3 by restarts, with a time when two shards own one
  cluster, and back to 2 by SIGHUP: no port moves, no address changes,
  `porticoctl ports` the same, no CLUSTER_DOWN.
- Cluster API clusters (ids: their Clusters' uids) split the same way; one
  deleted while its shard is down is taken down by that shard once back,
  never by the other, whose capi polls do see it gone; the count from 2 to
  1 by SIGHUP moves the rest to shard 0 without a port moving.
- A bad -s is a usage error.

Real processes: allocd, renderd, applyd with HAProxy, the shards, the PKS
and Kubernetes simulators, kubectl.
"""
import json
import os
import re
import signal
import subprocess
import uuid as uuidlib

import pytest

import harness
import testlib
from harness import EXPOSE, dest, virtualservice

pytestmark = pytest.mark.skipif(not harness.have_daemon("watcherd"),
                                reason="watcherd not built")

# Decisions: what allocd decides (observations are what watcherd says).
DECISIONS = {"API_SET", "API_DEL", "PORT_SET", "PORT_LIVE", "PORT_FREE",
             "REFUSED", "PORT_FAULT"}
SYNC_TAG_MASK = (1 << 20) - 1


def fnv1a64(s):
    h = 14695981039346656037
    for b in s.encode():
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def shard_of(cluster_id, n):
    return fnv1a64(cluster_id) % n


def uuid_for(**want):
    """A uuid whose shard is want["n<count>"] for each count given:
    uuid_for(n2=0, n3=1) is shard 0 of 2 and shard 1 of 3."""
    while True:
        u = str(uuidlib.uuid4())
        if all(shard_of(u, int(k[1:])) == v for k, v in want.items()):
            return u


def add_cluster(fleet, name, kubeconfig=False, **want):
    """A cluster with one exposed VirtualService (ns "app", "db" → Service
    db:5432): in PKS, its uuid chosen for the shards it must fall in; or
    (kubeconfig) a file in the folder, its name being its id."""
    ns = "app"
    c = fleet.add_cluster(name, [("db", ns, [5432])],
                          [virtualservice("db", ns, [[dest("db", 5432)]],
                                          annotations={EXPOSE: "true"})],
                          register=False, nodes=1)
    if kubeconfig:
        assert all(shard_of(name, int(k[1:])) == v for k, v in want.items()), name
        c.write_kubeconfig()
        return c
    c.uuid = uuid_for(**want)
    c.register()
    return c


def ctl(fleet, *args, check=True):
    argv = [harness.daemon_path("porticoctl"), "-f", fleet.conf_path] + list(args)
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=60, env=fleet.env())
    if check:
        assert cp.returncode == 0, (args, cp.returncode, cp.stderr.decode())
    return cp.returncode, cp.stdout.decode()


# The log's short keys (common/event.h), by the names used here.
KEYS = {"c": "cluster", "ns": "ns", "n": "name", "r": "route", "p": "port", "sid": "sid"}


def log_since(fleet, seq):
    """allocd's log from seq: {"type", "seq", and the body's fields by name}."""
    _, out = ctl(fleet, "log", "dump", "--since", str(seq))
    events = []
    for line in out.splitlines():
        e = json.loads(line)
        events.append(dict({KEYS.get(k, k): v for k, v in e.get("body", {}).items()},
                           type=e["type"], seq=e["seq"]))
    return events


def top_seq(fleet):
    _, out = ctl(fleet, "-j", "status", check=False)
    st = json.loads(out)
    return [d for d in st["daemons"] if d["name"] == "allocd"][0]["seq"]


def status_rows(fleet):
    _, out = ctl(fleet, "-j", "status", check=False)
    return {d["name"]: d for d in json.loads(out)["daemons"]}


def owner_of(e):
    return "%s/%s/%s/%d" % (e.get("cluster"), e.get("ns"), e.get("name"), e.get("route", 0))


def ports(fleet):
    """owner -> (port, address) from allocd's tables."""
    _, out = ctl(fleet, "-j", "routes")
    return {r["owner"]: (r["port"], r["address"])
            for r in map(json.loads, out.splitlines())}


class Shard(harness.Daemon):
    """watcherd -s I[/N]: its pid file and control socket are watcherd-I.
    Its log is its own (key): a later run of the same spec takes another."""

    def __init__(self, fleet, spec, run=1):
        i = spec.split("/")[0]
        super().__init__(fleet, "watcherd", "watcherd-" + i, ["-s", spec],
                         key="watcherd-%s-run%d" % (spec.replace("/", "of"), run))
        self.spec = spec
        fleet.daemons[self.key] = self

    def kill9(self):
        super().kill9()
        del self.fleet.daemons[self.key]    # dead on purpose: not a failure

    def hup(self):
        os.kill(self.pid, signal.SIGHUP)

    def retire(self):
        """SIGTERM, as a change of the count does: it must exit 0."""
        rc = super().stop()
        del self.fleet.daemons[self.key]
        assert rc == 0, "%s exited %s on SIGTERM" % (self.key, rc)

    def start(self, timeout=20):
        self.fleet.daemons[self.key] = self
        return super().start(timeout)

    def tag(self):
        """The low bits of the sync ids this run sends (its ready line)."""
        m = re.findall(r"sync ids end in ([0-9a-f]{5})", self.log())
        return int(m[-1], 16) if m else None

    def resynced(self, name):
        return len(re.findall(r"\b%s: resync sent" % re.escape(name), self.log()))

    def polls(self):
        return len(re.findall(r"pks: \d+ clusters routed", self.log()))


def wait_ready(fleet, names, timeout=60):
    def ready():
        fleet._check_alive()
        rows = status_rows(fleet)
        return all(rows.get(n, {}).get("ready") for n in names)
    testlib.wait_until(ready, timeout, "%s ready" % ", ".join(names))


def serves(fleet, c, port):
    fleet.wait_serves(port, c.markers("app", "db", 5432))


def kubectl_through(c):
    out = c.kubectl_via_portico("get", "namespaces", "-o", "name").stdout
    assert "namespace/app" in out, out


def test_two_shards_one_killed_and_a_cluster_gone_meanwhile(make_fleet):
    harness.need("allocd", "renderd", "applyd", "watcherd", "porticoctl")
    fleet = make_fleet(sources=("pks", "kubeconfigs"))
    a = add_cluster(fleet, "alpha", n2=0)
    b = add_cluster(fleet, "bravo", n2=1)
    c = add_cluster(fleet, "charlie", n2=1)
    e = add_cluster(fleet, "echo", kubeconfig=True, n2=0)     # FNV-1a("echo") % 2
    # the count in the configuration, the index on the command line
    fleet.write_conf(clusters={"shards": 2, "watch_timeout": fleet.watch_timeout})
    fleet.start_daemons(watcherd=False)
    s0, s1 = Shard(fleet, "0").start(), Shard(fleet, "1").start()
    wait_ready(fleet, ["watcherd-0", "watcherd-1"])
    rows = status_rows(fleet)
    assert rows["watcherd-0"]["shard"] == "0/2", rows["watcherd-0"]
    assert rows["watcherd-1"]["shard"] == "1/2", rows["watcherd-1"]
    assert "watcherd" not in rows, rows.keys()

    got = {}
    for cl in (a, b, c, e):
        fleet.wait_api(cl.host)
        kubectl_through(cl)
        (got[cl.name],) = fleet.wait_address(cl, "app", "db")
        serves(fleet, cl, got[cl.name])

    # served exactly once: allocd's log has each cluster's syncs from its
    # owner only, and only the owner says it resynced it
    owner = {a.uuid: s0, b.uuid: s1, c.uuid: s1, "echo": s0}
    syncs = [ev for ev in log_since(fleet, 0) if ev["type"] == "SYNC_BEGIN"]
    assert {ev["cluster"] for ev in syncs} == set(owner), syncs
    for ev in syncs:
        assert ev["sid"] & SYNC_TAG_MASK == owner[ev["cluster"]].tag(), (ev, s0.tag(), s1.tag())
    for name in ("alpha", "echo"):
        assert s0.resynced(name) >= 1 and s1.resynced(name) == 0, name
    for name in ("bravo", "charlie"):
        assert s1.resynced(name) >= 1 and s0.resynced(name) == 0, name
    _, table = ctl(fleet, "clusters")
    assert re.search(r"^alpha\s+%s\s+0\s" % a.uuid, table, re.M), table
    assert re.search(r"^bravo\s+%s\s+1\s" % b.uuid, table, re.M), table

    # shard 1 dies: bravo and charlie keep routing as they were
    mark = top_seq(fleet)
    s1.kill9()
    rows = status_rows(fleet)
    assert not rows["watcherd-1"]["answering"], rows["watcherd-1"]
    for cl in (b, c):
        kubectl_through(cl)
        serves(fleet, cl, got[cl.name])

    # charlie is deleted from PKS while its shard is down: shard 0 sees it
    # gone from two polls, and leaves it alone
    c.unregister()
    polls = s0.polls()
    testlib.wait_until(lambda: s0.polls() >= polls + 2, 30, "two polls of shard 0")
    assert fleet.tls_probe(c.host), "charlie taken down by another shard"
    serves(fleet, c, got["charlie"])

    # shard 1 back: bravo resynced, charlie taken down
    s1.start()
    wait_ready(fleet, ["watcherd-1"])
    fleet.wait_api(c.host, up=False)
    fleet.wait_refused(got["charlie"])
    kubectl_through(b)
    serves(fleet, b, got["bravo"])
    for cl in (a, e):
        kubectl_through(cl)
        serves(fleet, cl, got[cl.name])
    after = log_since(fleet, mark + 1)
    assert any(ev["type"] == "SYNC_BEGIN" and ev["cluster"] == b.uuid for ev in after), after
    assert any(ev["type"] == "API_DEL" and ev["cluster"] == c.uuid for ev in after), after
    # the other shard's clusters: no decision, and nothing said by shard 1
    touched = [ev for ev in after if ev.get("cluster") in (a.uuid, "echo") and
               (ev["type"] in DECISIONS or
                (ev["type"] == "SYNC_BEGIN" and ev["sid"] & SYNC_TAG_MASK != s0.tag()))]
    assert touched == [], touched
    moved = [ev for ev in after if ev["type"] in DECISIONS and ev.get("cluster") == b.uuid]
    assert moved == [], moved
    assert status_rows(fleet)["watcherd-1"]["counters"]["shard_downs"] >= 1


def test_count_from_two_to_three_and_back(make_fleet):
    harness.need("allocd", "renderd", "applyd", "watcherd", "porticoctl")
    fleet = make_fleet()
    # x moves 0 -> 1, y moves 1 -> 2 (the new shard), z stays on 0
    x = add_cluster(fleet, "xray", n2=0, n3=1)
    y = add_cluster(fleet, "yankee", n2=1, n3=2)
    z = add_cluster(fleet, "zulu", n2=0, n3=0)
    fleet.start(watcherd=False)
    shards = {"0/2": Shard(fleet, "0/2").start(), "1/2": Shard(fleet, "1/2").start()}
    wait_ready(fleet, ["watcherd-0", "watcherd-1"])
    # [clusters] shards left at 1: the shards found in the run folder
    rows = status_rows(fleet)
    assert "watcherd" not in rows and rows["watcherd-1"]["shard"] == "1/2", rows.keys()
    addrs = {}
    for cl in (x, y, z):
        fleet.wait_api(cl.host)
        addrs[cl.name] = fleet.wait_address(cl, "app", "db")
        serves(fleet, cl, addrs[cl.name][0])
    testlib.wait_until(lambda: all(p[1] for p in ports(fleet).values()), 30,
                       "every address written")
    before, (_, pool) = ports(fleet), ctl(fleet, "ports")
    mark = top_seq(fleet)

    def same(spec_running):
        wait_ready(fleet, ["watcherd-%s" % s.split("/")[0] for s in spec_running])
        for cl in (x, y, z):
            kubectl_through(cl)
            serves(fleet, cl, addrs[cl.name][0])
            assert fleet.wait_address(cl, "app", "db") == addrs[cl.name]
        assert ports(fleet) == before
        assert ctl(fleet, "ports")[1] == pool
        bad = [e for e in log_since(fleet, mark + 1)
               if e["type"] in ("PORT_FREE", "API_DEL", "REFUSED") or
               (e["type"] == "PORT_SET" and
                before.get(owner_of(e), (None,))[0] != e.get("port"))]
        assert bad == [], bad

    # 2 -> 3 by restarts: the new shard first (yankee has two owners for a
    # while: both resync it), then each old one restarted; the count now
    # from [clusters] shards, the index from -s
    fleet.write_conf(clusters={"shards": 3, "watch_timeout": fleet.watch_timeout})
    shards["2"] = Shard(fleet, "2").start()
    testlib.wait_until(lambda: shards["2"].resynced("yankee") >= 1, 60,
                       "yankee resynced by shard 2 of 3")
    assert shards["2"].resynced("xray") == 0 and shards["2"].resynced("zulu") == 0
    # two owners' syncs of yankee, each under its own tag
    tags = {ev["sid"] & SYNC_TAG_MASK for ev in log_since(fleet, 0)
            if ev["type"] == "SYNC_BEGIN" and ev["cluster"] == y.uuid}
    assert {shards["1/2"].tag(), shards["2"].tag()} <= tags, tags
    for old, new in (("0/2", "0"), ("1/2", "1")):
        shards[old].retire()
        shards[new] = Shard(fleet, new).start()
    same(["0", "1", "2"])
    for name, i in (("xray", "1"), ("yankee", "2"), ("zulu", "0")):
        assert shards[i].resynced(name) >= 1, (name, i)
    assert shards["0"].resynced("xray") == 0
    assert status_rows(fleet)["watcherd-2"]["shard"] == "2/3"

    # 3 -> 2 live: the configuration says 2, SIGHUP; shards 0 and 1 take
    # the new count, shard 2 has no place in it and stays as it is until
    # stopped.  xray goes from 1 to 0, yankee from 2 to 1, without a
    # CLUSTER_DOWN.
    fleet.write_conf(clusters={"shards": 2, "watch_timeout": fleet.watch_timeout})
    for i in ("0", "1", "2"):
        shards[i].hup()
    testlib.wait_until(lambda: shards["0"].resynced("xray") >= 1, 60, "xray resynced by 0 of 2")
    testlib.wait_until(lambda: shards["1"].resynced("yankee") >= 1, 60,
                       "yankee resynced by 1 of 2")
    assert re.search(r"xray: cluster \S+ is another shard's now: let go", shards["1"].log())
    assert "has no place in the new count" in shards["2"].log()
    rows = status_rows(fleet)
    assert rows["watcherd-0"]["shard"] == "0/2" and rows["watcherd-1"]["shard"] == "1/2", rows
    shards["2"].retire()
    same(["0", "1"])
    downs = [e for e in log_since(fleet, mark + 1) if e["type"] == "CLUSTER_DOWN"]
    assert downs == [], downs


def test_capi_clusters_split_between_two_shards(make_fleet):
    """Cluster API clusters, whose ids are their Clusters' uids: each served
    by its own shard only; one deleted from the management cluster while
    its shard is down is left alone by the other shard (whose capi polls
    see it gone), and taken down by its owner once back; then one shard
    takes them all (SIGHUP, [clusters] shards = 1) without a port moving."""
    import test_capi
    harness.need("allocd", "renderd", "applyd", "watcherd", "porticoctl")
    fleet, mgmt = test_capi._capi_fleet(make_fleet)
    try:
        _capi_split(fleet, mgmt, test_capi)
    finally:
        mgmt.stop()


def _capi_split(fleet, mgmt, capi):
    # Clusters until both shards own one (uids are the sim's to draw)
    owned, uid = {0: [], 1: []}, {}
    for i in range(16):
        if owned[0] and len(owned[1]) >= 2:
            break
        c = capi.workload(fleet, "cl%d" % i, exposed=["pg"])
        capi.register(mgmt, c)
        uid[c.name] = mgmt.must("GET", "%s/namespaces/%s/clusters/%s" %
                                (capi.CAPI, capi.NS, c.name))["metadata"]["uid"]
        owned[shard_of(uid[c.name], 2)].append(c)
    assert owned[0] and len(owned[1]) >= 2, uid
    fleet.write_conf(clusters={"shards": 2, "watch_timeout": fleet.watch_timeout})
    fleet.start_daemons(watcherd=False)
    shards = [Shard(fleet, "0").start(), Shard(fleet, "1").start()]
    wait_ready(fleet, ["watcherd-0", "watcherd-1"])

    got = {}
    for i in (0, 1):
        for c in owned[i]:
            fleet.wait_api(c.host)
            assert capi.vs_names(c) == ["pg"]
            (got[c.name],) = fleet.wait_address(c, "apps", "pg", timeout=60)
            fleet.wait_serves(got[c.name], c.markers("apps", "pg", 7000))
            # served exactly once: only its owner resyncs it
            assert shards[i].resynced(c.name) >= 1, c.name
            assert shards[1 - i].resynced(c.name) == 0, c.name
    owner_tag = {uid[c.name]: shards[i].tag() for i in (0, 1) for c in owned[i]}
    syncs = [ev for ev in log_since(fleet, 0) if ev["type"] == "SYNC_BEGIN"]
    assert {ev["cluster"] for ev in syncs} == set(owner_tag), syncs
    for ev in syncs:
        assert ev["sid"] & SYNC_TAG_MASK == owner_tag[ev["cluster"]], ev

    # shard 1 dies; one of its Clusters is deleted meanwhile: shard 0's
    # capi polls see it gone, and leave it routed
    gone, kept = owned[1][0], owned[0][0]
    mark = top_seq(fleet)
    shards[1].kill9()
    mgmt.must("DELETE", "%s/namespaces/%s/clusters/%s" % (capi.CAPI, capi.NS, gone.name))

    def capi_polls():
        return len(re.findall(r"capi: \d+ Clusters listed", shards[0].log()))
    polls = capi_polls()
    testlib.wait_until(lambda: capi_polls() >= polls + 2, 30, "two capi polls of shard 0")
    assert fleet.tls_probe(gone.host), "%s taken down by another shard" % gone.name
    fleet.wait_serves(got[gone.name], gone.markers("apps", "pg", 7000))

    # shard 1 back: it takes the deleted one down, shard 0's are untouched
    shards[1] = Shard(fleet, "1", run=2).start()
    wait_ready(fleet, ["watcherd-1"])
    fleet.wait_api(gone.host, up=False)
    fleet.wait_refused(got[gone.name])
    fleet.wait_api(kept.host)
    fleet.wait_serves(got[kept.name], kept.markers("apps", "pg", 7000))
    after = log_since(fleet, mark + 1)
    assert any(ev["type"] == "API_DEL" and ev["cluster"] == uid[gone.name]
               for ev in after), after
    mine0 = {uid[c.name] for c in owned[0]}
    touched = [ev for ev in after if ev.get("cluster") in mine0 and
               (ev["type"] in DECISIONS or ev["type"] == "CLUSTER_DOWN" or
                (ev["type"] == "SYNC_BEGIN" and ev["sid"] & SYNC_TAG_MASK != shards[0].tag()))]
    assert touched == [], touched
    assert status_rows(fleet)["watcherd-1"]["counters"]["shard_downs"] >= 1

    # 2 -> 1 by SIGHUP: shard 0 takes shard 1's Clusters (its capi pass
    # then), shard 1 has no place and is retired; nothing is taken down,
    # no port moves
    moved = owned[1][1:]
    before, mark = ports(fleet), top_seq(fleet)
    fleet.write_conf(clusters={"shards": 1, "watch_timeout": fleet.watch_timeout})
    for sh in shards:
        sh.hup()
    for c in moved:
        testlib.wait_until(lambda: shards[0].resynced(c.name) >= 1, 60,
                           "%s resynced by shard 0 of 1" % c.name)
    assert "has no place in the new count" in shards[1].log()
    shards[1].retire()
    for c in owned[0] + moved:
        fleet.wait_api(c.host)
        assert fleet.wait_address(c, "apps", "pg") == [got[c.name]]
        fleet.wait_serves(got[c.name], c.markers("apps", "pg", 7000))
    assert ports(fleet) == before
    bad = [e for e in log_since(fleet, mark + 1)
           if e["type"] in ("CLUSTER_DOWN", "API_DEL", "PORT_FREE", "REFUSED") or
           (e["type"] == "PORT_SET" and before.get(owner_of(e), (None,))[0] != e.get("port"))]
    assert bad == [], bad


@pytest.mark.parametrize("args,why", [
    ([], "[clusters] shards is 3: which one is this? (-s index)"),
    (["-s", "3"], "-s 3: not index or index/count"),
    (["-s", "2/2"], "-s 2/2: not index or index/count"),
    (["-s", "1/"], "-s 1/: not index or index/count"),
    (["-s", "0/1025"], "-s 0/1025: not index or index/count"),
    (["-s", "-1/2"], "-s -1/2: not index or index/count"),
])
def test_bad_shard_is_a_usage_error(tmp_path, args, why):
    """Said on stderr even without -d (where the log is syslog), exit 1."""
    kc = tmp_path / "kc"
    kc.mkdir()
    tmp_path.chmod(0o700)
    conf = tmp_path / "portico.conf"
    conf.write_text("[portico]\ndomain = k.example.test\nrun_dir = %s\n"
                    "ports = 20000-20010\n[kubeconfigs]\ndir = %s\n"
                    "[clusters]\nshards = 3\n" % (tmp_path / "run", kc))
    cp = subprocess.run([harness.daemon_path("watcherd"), "-f", str(conf)] + args,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        timeout=30)
    assert cp.returncode == 1 and why in cp.stderr, cp
