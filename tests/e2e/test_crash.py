"""allocd killed with SIGKILL at random moments under churn, 100 times.

After every restart allocd serves from its store; at the end
- the log is whole (seqs 1..N, each record decodes) and a clean replay of it
  (allocd -R) decides exactly what was recorded, tables included;
- no owner that stayed exposed ever moved, and no port was held by two
  owners at once;
- renderd, which consumed allocd's stream through all of it, renders exactly
  the ports the log says are held: every gap it saw, it repaired.
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
from harness import bin_dir, need  # noqa: E402

KILLS = 100
OWNERS = 24
EV_ROUTE, EV_ROUTE_GONE, EV_SINCE, EV_SINCE_END = 12, 13, 2, 3
EV_PORT_SET, EV_PORT_FREE, EV_CONFIG = 32, 34, 50


def observation(seq, owner, gone):
    body = {"c": "crash", "ns": "ns", "n": "vs-%d" % owner, "r": 0}
    if not gone:
        body["b"] = [["10.0.0.1", 30000 + owner, 1]]
    return msgpack.packb([1, EV_ROUTE_GONE if gone else EV_ROUTE, seq, 0, body])


def since(ctx, endpoint, end_type=EV_SINCE_END):
    """Everything a producer answers to SINCE 0, decoded."""
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    s.send(msgpack.packb([1, EV_SINCE, 0, 0, {}]))
    out = []
    while True:
        assert s.poll(10000), "no answer to SINCE from " + endpoint
        ev = msgpack.unpackb(s.recv(), raw=False, strict_map_key=False)
        if ev[1] == end_type:
            s.close()
            return out, ev[2]
        out.append(ev)


def test_allocd_sigkill_under_churn():
    need("allocd", "renderd")
    work = tempfile.mkdtemp(prefix="pt-", dir="/tmp")
    ip = testlib.loopback_addr()
    lo = 20000 + random.randrange(0, 10000)
    conf = os.path.join(work, "portico.conf")
    with open(conf, "w") as f:
        f.write("[portico]\ndomain = crash.test\nrun_dir = %s/run\n"
                "listen = %s\napi_port = %d\nports = %d-%d\nquarantine = 600\n"
                "[store]\npath = %s/store\n[kubeconfigs]\ndir = %s\n"
                % (work, ip, lo - 1, lo, lo + 2 * OWNERS, work, work))
    pidfile = os.path.join(work, "run", "allocd.pid")
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print("seed", seed)

    def start_allocd(n):
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        p = testlib.Proc([os.path.join(bin_dir(), "allocd"), "-d", "-f", conf],
                         "allocd-%d" % n, work)
        testlib.wait_until(lambda: os.path.exists(pidfile), 20, "allocd ready")
        return p

    ctx = zmq.Context()
    renderd = None
    try:
        allocd = start_allocd(0)
        renderd = testlib.Proc([os.path.join(bin_dir(), "renderd"), "-d", "-f", conf,
                                "-p", "haproxy"], "renderd", work)
        testlib.wait_until(lambda: os.path.exists(
            os.path.join(work, "run", "renderd-haproxy.pid")), 20, "renderd ready")
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SNDTIMEO, 10000)
        s.connect("ipc://%s/run/alloc.in" % work)
        exposed = [False] * OWNERS
        seq = 0
        for kill in range(KILLS):
            deadline = time.monotonic() + rng.uniform(0.005, 0.08)
            while time.monotonic() < deadline:
                o = rng.randrange(OWNERS)
                seq += 1
                s.send(observation(seq, o, exposed[o]))
                exposed[o] = not exposed[o]
            allocd.kill9()
            allocd = start_allocd(kill + 1)
        # the final truth for every owner, then let it settle
        for o in range(OWNERS):
            seq += 1
            s.send(observation(seq, o, not exposed[o]))
        while s.poll(3000):
            s.recv()
        s.close()

        records, last = since(ctx, "ipc://%s/run/alloc.sync" % work)
        print("log: %d records, %d observations sent" % (len(records), seq))
        assert [r[2] for r in records] == list(range(1, last + 1)), "log not whole"
        held, port_of = {}, {}
        for r in records:
            body = r[4]
            if r[1] == EV_PORT_SET:
                owner = body["n"]
                p = body["p"]
                assert port_of.get(owner, p) == p, \
                    "seq %d: %s moved from %s to %d" % (r[2], owner, port_of[owner], p)
                assert held.get(p, owner) == owner, \
                    "seq %d: port %d given to %s while %s holds it" % (r[2], p, owner, held[p])
                port_of[owner] = p
                held[p] = owner
            elif r[1] == EV_PORT_FREE:
                assert held.pop(body["p"]) == body["n"]
                port_of.pop(body["n"])
        want = {o: p for o, p in port_of.items()}
        assert sorted(want) == sorted("vs-%d" % o for o in range(OWNERS) if exposed[o])

        # renderd repaired every gap: its config has exactly those ports
        def rendered():
            configs, gen = since(ctx, "ipc://%s/run/render-haproxy.sync" % work)
            if gen != last or not configs:
                return None
            return sorted(int(p) for p in re.findall(r"^listen port-(\d+)$",
                                                     configs[-1][4]["text"], re.M))
        assert testlib.wait_until(rendered, 20, "renderd at seq %d" % last) == \
            sorted(want.values())

        allocd.stop()
        cp = subprocess.run([os.path.join(bin_dir(), "allocd"), "-f", conf, "-R",
                             os.path.join(work, "store")],
                            capture_output=True, text=True, timeout=120)
        assert cp.returncode == 0 and "identical" in cp.stdout, cp.stdout + cp.stderr
        assert "sanitizer" not in (allocd.log() + renderd.log()).lower()
    finally:
        ctx.destroy(linger=0)
        if renderd is not None:
            renderd.stop()
        for p in [allocd]:
            if p.alive():
                p.kill9()
        if not os.environ.get("PORTICO_KEEP"):
            subprocess.run(["rm", "-rf", work])
