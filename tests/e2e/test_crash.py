"""allocd killed with SIGKILL at random moments under churn, and its log
compacted under the same churn.

Killed 100 times, without compaction; at the end
- the log is whole (seqs 1..N, each record decodes) and a clean replay of it
  (allocd -R) decides exactly what was recorded, tables included;
- no owner that stayed exposed ever moved, and no port was held by two
  owners at once;
- renderd, which consumed allocd's stream through all of it, renders exactly
  the ports the log says are held: every gap it saw, it repaired.

Killed during compactions (in the read of the tables, the write of their
copy or the deletion of the log before it) until a restart had one to finish:
no owner moves, and replay from the snapshot decides what was recorded.

Killed 30 times or more with the log compacted every 1,000 records: after every
restart the state allocd serves keeps every owner on its one port, the log
stays bounded and starts at a SNAPSHOT, replay from that snapshot decides
exactly what was recorded, and renderd (which had to take the whole state
when it fell behind the compaction) renders the same as a fresh one.
"""

import os
import random
import re
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import testlib  # noqa: E402
import harness  # noqa: E402
from harness import bin_dir, need  # noqa: E402

OWNERS = 24
E = testlib.events
EV_SINCE, EV_SINCE_END, EV_STATE = E.EV_SINCE, E.EV_SINCE_END, E.EV_STATE
EV_ROUTE, EV_ROUTE_GONE, EV_SNAPSHOT = E.EV_ROUTE, E.EV_ROUTE_GONE, E.EV_SNAPSHOT
EV_SYNC_BEGIN, EV_SYNC_END = E.EV_SYNC_BEGIN, E.EV_SYNC_END
EV_PORT_SET, EV_PORT_FREE = E.EV_PORT_SET, E.EV_PORT_FREE
# renderd's route table (common/event.h): a workload port's entry
EV_RT_PORT = E.EV_RT_PORT


def observation(seq, owner, gone):
    body = {E.F_CLUSTER: "crash", E.F_NS: "ns", E.F_NAME: "vs-%d" % owner, E.F_ROUTE: 0}
    if not gone:
        body[E.F_BACKENDS] = [["10.0.0.1", 30000 + owner, 1]]
    return msgpack.packb([E.VERSION, EV_ROUTE_GONE if gone else EV_ROUTE, seq, 0, body])


def since(ctx, endpoint, seq=0, end_type=EV_SINCE_END):
    """Everything a producer answers to SINCE seq, decoded."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send(msgpack.packb([E.VERSION, EV_SINCE, seq, 0, {}]))
    out = []
    while True:
        assert s.poll(10000), "no answer to SINCE from " + endpoint
        ev = msgpack.unpackb(s.recv(), raw=False, strict_map_key=False)
        if ev[1] == end_type:
            s.close()
            return out, ev[2]
        out.append(ev)


class Rig:
    """allocd and renderd on a scratch folder, fed ROUTE churn directly."""

    def __init__(self, store_extra=""):
        need("allocd", "renderd")
        self.work = tempfile.mkdtemp(prefix="pt-", dir="/tmp")
        ip = testlib.loopback_addr()
        lo = 20000 + random.randrange(0, 10000)
        self.conf = os.path.join(self.work, "portico.conf")
        with open(self.conf, "w") as f:
            f.write("[portico]\ndomain = crash.test\nrun_dir = %s/run\n"
                    "listen = %s\napi_port = %d\nports = %d-%d\n"
                    "quarantine = 600\n[store]\npath = %s/store\n%s"
                    "[kubeconfigs]\ndir = %s\n"
                    % (self.work, ip, lo - 1, lo, lo + 2 * OWNERS, self.work,
                       store_extra, self.work))
        self.run = os.path.join(self.work, "run")
        self.ctx = zmq.Context()
        self.allocd = self.renderd = None
        self.starts = 0
        self.seq = 0
        self.exposed = [False] * OWNERS
        self.rng = random.Random()
        seed = self.rng.randrange(1 << 30)
        self.rng.seed(seed)
        print("seed", seed)

    def start_allocd(self):
        pidfile = os.path.join(self.run, "allocd.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        self.allocd = testlib.Proc(
            [os.path.join(bin_dir(), "allocd"), "-d", "-f", self.conf],
            "allocd-%d" % self.starts, self.work)
        self.starts += 1
        testlib.wait_until(lambda: os.path.exists(pidfile), 20, "allocd ready")

    def start_renderd(self):
        pidfile = os.path.join(self.run, "renderd-haproxy.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        self.renderd = testlib.Proc(
            [os.path.join(bin_dir(), "renderd"), "-d", "-f", self.conf,
             "-p", "haproxy"], "renderd-%d" % self.starts, self.work)
        testlib.wait_until(lambda: os.path.exists(pidfile), 20, "renderd ready")

    def connect(self):
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDTIMEO, 10000)
        self.sock.connect("ipc://%s/alloc.in" % self.run)

    def resync(self):
        """The crash cluster, resynced with nothing in it: a first start
        holds what it hears until its clusters are resynced (or 6 s)."""
        for t in (EV_SYNC_BEGIN, EV_SYNC_END):
            self.seq += 1
            self.sock.send(msgpack.packb([E.VERSION, t, self.seq, 0, {E.F_CLUSTER: "crash", E.F_SID: 1}]))
        testlib.wait_until(lambda: self.sock.poll(100) and
                           msgpack.unpackb(self.sock.recv())[2] == self.seq,
                           20, "the resync acknowledged")

    def churn(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            o = self.rng.randrange(OWNERS)
            self.seq += 1
            self.sock.send(observation(self.seq, o, self.exposed[o]))
            self.exposed[o] = not self.exposed[o]

    def settle(self):
        """The final truth for every owner, sent twice, then acks drained."""
        for o in range(OWNERS):
            self.seq += 1
            self.sock.send(observation(self.seq, o, not self.exposed[o]))
        while self.sock.poll(3000):
            self.sock.recv()

    def log(self, seq=0):
        return since(self.ctx, "ipc://%s/alloc.sync" % self.run, seq)

    def rendered(self, last):
        """The routed ports of renderd's table once it has taken allocd's
        log up to seq last (its STATE's "g"), or None."""
        items, gen = since(self.ctx, "ipc://%s/render-haproxy.sync" % self.run)
        state = [e for e in items if e[1] == EV_STATE]
        self.seen_gen = state and (gen, state[0][4].get("g"))
        if not state or state[0][4].get("g") != last:
            return None
        return sorted(e[4]["p"] for e in items
                      if e[1] == EV_RT_PORT and e[4].get("b"))

    def replay(self):
        self.allocd.stop()
        cp = subprocess.run([os.path.join(bin_dir(), "allocd"), "-f", self.conf,
                             "-R", os.path.join(self.work, "store")],
                            capture_output=True, text=True, timeout=120)
        assert cp.returncode == 0 and "identical" in cp.stdout, \
            cp.stdout + cp.stderr
        return cp.stdout

    def close(self):
        self.ctx.destroy(linger=0)
        for p in [self.renderd, self.allocd]:
            if p is not None and p.alive():
                p.kill9()
        if not os.environ.get("PORTICO_KEEP"):
            subprocess.run(["rm", "-rf", self.work])


def wait_rendered(rig, last, what="renderd"):
    """renderd's config once it is at seq last; a loaded machine gets a
    minute, and a failure says where renderd was and what it logged."""
    try:
        return testlib.wait_until(lambda: rig.rendered(last), 60,
                                  "%s at seq %d" % (what, last))
    except AssertionError as e:
        raise AssertionError("%s (renderd at %s)\n%s" % (
            e, getattr(rig, "seen_gen", None), rig.renderd.log()[-4000:]))


def test_allocd_sigkill_under_churn():
    rig = Rig()
    try:
        rig.start_allocd()
        rig.start_renderd()
        rig.connect()
        rig.resync()
        for kill in range(100):
            rig.churn(rig.rng.uniform(0.005, 0.08))
            rig.allocd.kill9()
            rig.start_allocd()
        rig.settle()

        records, last = rig.log()
        print("log: %d records, %d observations sent" % (len(records), rig.seq))
        assert [r[2] for r in records] == list(range(1, last + 1)), "log not whole"
        held, port_of = {}, {}
        for r in records:
            body = r[4]
            if r[1] == EV_PORT_SET:
                owner = body[E.F_NAME]
                p = body[E.F_PORT]
                assert port_of.get(owner, p) == p, \
                    "seq %d: %s moved from %s to %d" % (r[2], owner, port_of[owner], p)
                assert held.get(p, owner) == owner, \
                    "seq %d: port %d given to %s while %s holds it" % (r[2], p, owner, held[p])
                port_of[owner] = p
                held[p] = owner
            elif r[1] == EV_PORT_FREE:
                assert held.pop(body[E.F_PORT]) == body[E.F_NAME]
                port_of.pop(body[E.F_NAME])
        want = {o: p for o, p in port_of.items()}
        assert sorted(want) == sorted("vs-%d" % o for o in range(OWNERS)
                                      if rig.exposed[o])

        # renderd repaired every gap: its table has exactly those ports
        assert wait_rendered(rig, last) == sorted(want.values())
        rig.replay()
        assert "sanitizer" not in (rig.allocd.log() + rig.renderd.log()).lower()
    finally:
        rig.close()


def held_ports(rig):
    """The state allocd serves a consumer from 0: owner -> port, one port
    each.  Once the log is compacted that is the state itself; before, the
    whole log."""
    records, last = rig.log()
    ports = {}
    if records and records[0][1] == EV_STATE:
        assert records[0][2] == last, "state at %d, log at %d" % (records[0][2], last)
        ports = {r[4][E.F_NAME]: r[4][E.F_PORT] for r in records if r[1] == EV_PORT_SET}
    else:
        assert [r[2] for r in records] == list(range(1, last + 1)), "log not whole"
        for r in records:
            if r[1] == EV_PORT_SET:
                ports[r[4][E.F_NAME]] = r[4][E.F_PORT]
            elif r[1] == EV_PORT_FREE:
                del ports[r[4][E.F_NAME]]
    assert len(set(ports.values())) == len(ports), "a port held twice"
    return ports, last, records[:1] and records[0][1] == EV_STATE


def test_allocd_sigkill_with_compaction():
    rig = Rig("compact_records = 1000\n")
    try:
        rig.start_allocd()
        rig.start_renderd()
        rig.connect()
        rig.resync()
        port_of, last, kills = {}, 0, 0
        # at least 30 kills, and enough churn for several compactions;
        # on a loaded machine the kills come first and the churn after
        deadline = time.monotonic() + 240
        while kills < 30 or last < 5000:
            assert time.monotonic() < deadline, \
                "allocd logs too slowly: seq %d after %d kills" % (last, kills)
            kills += 1
            rig.churn(rig.rng.uniform(0.02, 0.15) if kills <= 30 else 1.0)
            rig.allocd.kill9()
            rig.start_allocd()
            ports, last, compacted = held_ports(rig)
            for owner, p in ports.items():
                # quarantine outlasts the test: an owner has one port, ever
                assert port_of.setdefault(owner, p) == p, \
                    "%s moved from %d to %d" % (owner, port_of[owner], p)
        rig.settle()

        ports, last, compacted = held_ports(rig)
        assert compacted, "a consumer from 0 is not given the state"
        assert sorted(ports) == sorted("vs-%d" % o for o in range(OWNERS)
                                       if rig.exposed[o])
        # the log is bounded and starts at its snapshot
        snap = int(subprocess.run(
            ["mdb_stat", "-s", "log", os.path.join(rig.work, "store")],
            capture_output=True, text=True, check=True).stdout.split(
            "Entries: ")[1].split()[0])
        assert snap <= 1000 + 2 * OWNERS + 200, "log of %d records" % snap

        # renderd, fed through kills and compactions, and a fresh one agree
        text = wait_rendered(rig, last)
        assert text == sorted(ports.values())
        rig.renderd.stop()
        rig.start_renderd()
        again = wait_rendered(rig, last, "restarted renderd")
        assert again == text
        assert "compacted; taking the state" in rig.renderd.log()

        out = rig.replay()
        assert "starting from the snapshot at seq" in out, out
        assert "sanitizer" not in (rig.allocd.log() + rig.renderd.log()).lower()
    finally:
        rig.close()


def test_allocd_sigkill_during_compaction():
    """Killed while a compaction is under way (allocd logged its start, not
    its end), again and again: each restart forgets the half copy or
    finishes deleting the log before the snapshot, no owner ever moves, the
    log ends up bounded, and replay from the snapshot decides exactly what
    was recorded.  5,000 owners wait for one of the 48 ports, so that the
    tables take several steps to copy."""
    rig = Rig("compact_records = 1000\n")
    try:
        rig.start_allocd()
        rig.connect()
        rig.resync()
        for i in range(5000):
            rig.seq += 1
            rig.sock.send(msgpack.packb([1, EV_ROUTE, rig.seq, 0, {
                "c": "crash", "ns": "wait", "n": "vs-%d" % i, "r": 0,
                "b": [["10.0.0.2", 30000, 1]]}]))
        testlib.wait_until(lambda: rig.sock.poll(100) and
                           msgpack.unpackb(rig.sock.recv())[2] == rig.seq,
                           60, "the waiting owners acknowledged")

        port_of, cut, finished, kills = {}, 0, 0, 0
        span = 0.03
        deadline = time.monotonic() + 180
        while cut < 5 or finished < 1:
            assert time.monotonic() < deadline, \
                "%d kills, %d of them during a compaction, %d restarts " \
                "finished one" % (kills, cut, finished)
            log = rig.allocd.log()
            started = log.count("compacting the log:")
            # churn until the next compaction has started, then kill
            while log.count("compacting the log:") == started:
                assert time.monotonic() < deadline, "no compaction starts"
                rig.churn(0.002)
                log = rig.allocd.log()
            # anywhere in it: reading, writing the copy, trimming; as long
            # as the last one that ran whole took (slower under ASan)
            took = re.findall(r"compacted the log: .* dropped in (\d+) ms",
                              log)
            if took:
                span = max(0.03, int(took[-1]) / 1000.0)
            rig.churn(rig.rng.uniform(0, span))
            rig.allocd.kill9()
            kills += 1
            log = rig.allocd.log()
            if log.count("compacting the log:") > log.count("compacted the log:"):
                cut += 1
            rig.start_allocd()
            if "finishing the compaction" in rig.allocd.log():
                finished += 1
            ports, last, compacted = held_ports(rig)
            for owner, p in ports.items():
                assert port_of.setdefault(owner, p) == p, \
                    "%s moved from %d to %d" % (owner, port_of[owner], p)
        print("%d kills, %d during a compaction, %d restarts finished one"
              % (kills, cut, finished))
        rig.settle()

        # idle, allocd finishes what it started: the log starts at its
        # snapshot and is bounded
        def trimmed():
            cp = subprocess.run(["mdb_stat", "-s", "log",
                                 os.path.join(rig.work, "store")],
                                capture_output=True, text=True, check=True)
            return int(cp.stdout.split("Entries: ")[1].split()[0]) <= \
                1000 + 2 * OWNERS + 200
        testlib.wait_until(trimmed, 30, "the log trimmed")
        ports, last, compacted = held_ports(rig)
        assert compacted
        out = rig.replay()
        assert "starting from the snapshot at seq" in out, out
        assert "sanitizer" not in rig.allocd.log().lower()
    finally:
        rig.close()
