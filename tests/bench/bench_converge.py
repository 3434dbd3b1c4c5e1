"""bench-converge: how soon a new route takes traffic, and what a change
costs, with many routes live.

For 1,000 and 10,000 routes, and for the most routes one HAProxy can serve
within this machine's open-file limit (max_routes() says what bounds it),
a fleet (Kubernetes API simulator, watcherd, allocd, renderd, applyd,
HAProxy) starts with that many exposed VirtualServices, and then:

  - the checks HAProxy is configured to make, their intervals summed
    (`idle_checks_per_s_declared_*`);
  - SAMPLES more are exposed one at a time: the time from the moment the
    simulator wrote the watch event to watcherd's stream (it records it:
    GET /_sim/sent) to the first byte read from a workload through the new
    port (`watch_to_first_byte_*`), and from the answer to the annotating
    PATCH (`first_byte_*`);
  - CHANGES route changes (100 VirtualServices exposed and unexposed in
    turn), during which the bench counts the bytes allocd and renderd
    publish (subscribed to their PUB endpoints: `bus_bytes_per_change_*`),
    the CPU seconds of each daemon and of HAProxy (master and workers, from
    /proc/PID/stat utime + stime: `cpu_s_per_1000_changes_*`) and
    HAProxy's reloads;
  - idle: for IDLE_S seconds nothing changes, and the bench counts the
    connection attempts (SYNs, on the loopback interface) that reach the
    workloads: HAProxy's health checks (`idle_checks_per_s_*`).  A check
    never gets as far as the workload's accept().  Needs root (a raw
    packet socket).

HAProxy is changed live through its runtime API; CONVERGE_MODES=live,reload
adds the same fleet with `live = 0` (a reload for every change).
CONVERGE_SIZES (e.g. "1000,10000,max"), CONVERGE_SAMPLES and
CONVERGE_IDLE_S override the rest.  The whole run stays under 10 minutes.

Prints JSON lines {"bench": "converge", "metric", "value", "unit"}.
"""

import json
import os
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "lib"))
import harness  # noqa: E402
import testlib  # noqa: E402

E = testlib.events
SIZES = os.environ.get("CONVERGE_SIZES", "1000,10000,max").split(",")
SAMPLES = int(os.environ.get("CONVERGE_SAMPLES", "100"))
MODES = os.environ.get("CONVERGE_MODES", "live").split(",")
IDLE_S = float(os.environ.get("CONVERGE_IDLE_S", "20"))
# one line a sample: routes, port, PATCH sent and answered, watch event
# sent, first byte (CLOCK_MONOTONIC, s), to break the latency down
SAMPLES_OUT = os.environ.get("CONVERGE_SAMPLES_OUT")
CHANGES = 1000
CHURN = 100             # VirtualServices exposed and unexposed in turn
SPARE_PORTS = 100       # in the range beyond the routes, never routed
MAXCONN = 2000
FD_SPARE = 200          # renderd/haproxy.c: sockets, pipes, logs, the CLI
NS = "bench"
EXPOSE, PORT, ADDRESS = harness.EXPOSE, harness.PORT, harness.ADDRESS
DAEMONS = ("watcherd", "allocd", "renderd", "applyd")


def emit(metric, value, unit, **extra):
    print(json.dumps(dict({"bench": "converge", "metric": metric,
                           "value": round(value, 3), "unit": unit}, **extra)),
          flush=True)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def max_routes():
    """The most routes one HAProxy serves here, and why.

    HAProxy holds a descriptor for every port it binds (the fleet binds its
    whole range: the routes, the samples, the churn and some spare), two
    for every connection up to maxconn, and some of its own (renderd
    keeps FD_SPARE for them); renderd declares health checks only while a
    descriptor for each checked server fits too.  The limit is the hard
    RLIMIT_NOFILE, which [proxy] fd_limit says to renderd (20,000 by
    default and on this machine)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = min(hard, 20000) if hard != resource.RLIM_INFINITY else 20000
    extra = SAMPLES + CHURN + SPARE_PORTS
    n = (limit - 2 * MAXCONN - FD_SPARE - extra) // 500 * 500
    checked = (limit - 2 * MAXCONN - FD_SPARE - extra) // 3   # 2 servers a route
    why = ("fd_limit %d (ulimit -Hn %s) = one per bound port (routes + %d) + "
           "2 x maxconn %d + %d spare; health checks (one descriptor per checked "
           "server, 2 a route) only up to %d routes"
           % (limit, hard, extra, MAXCONN, FD_SPARE, checked))
    return n, why


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def cpu_s(pid):
    """utime + stime of a process, in seconds (0 once it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    return out


def cpu_snapshot(fleet):
    """{name: {pid: cpu seconds}}: per pid, so that a worker that comes or
    goes during a window counts from 0 or up to its last reading."""
    snap = {d: {fleet[d].pid: cpu_s(fleet[d].pid)} for d in DAEMONS}
    master = fleet.proxy_master()
    snap["haproxy"] = {p: cpu_s(p) for p in [master] + children(master)}
    return snap


def cpu_delta(before, after):
    out = {}
    for name, pids in after.items():
        out[name] = sum(max(0.0, s - before[name].get(p, 0.0)) for p, s in pids.items())
    return out


class BusCounter:
    """Subscribed to a PUB endpoint: counts the messages and their bytes,
    heartbeats aside (they come by time, not by change)."""

    def __init__(self, endpoint):
        import msgpack
        import zmq
        self._unpacker = msgpack.Unpacker
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(endpoint)
        self.bytes = self.msgs = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import zmq
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            while True:
                try:
                    raw = self.sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if self._type(raw) == E.EV_HEARTBEAT:
                    continue
                with self.lock:
                    self.bytes += len(raw)
                    self.msgs += 1

    def _type(self, raw):
        """The type of an event: the envelope's second item, read without
        unpacking a CONFIG's megabytes."""
        u = self._unpacker()
        u.feed(raw[:16])
        try:
            u.read_array_header()
            u.skip()
            return u.unpack()
        except Exception:
            return None

    def read(self):
        with self.lock:
            return self.bytes, self.msgs

    def close(self):
        self._stop.set()
        # the thread looks at _stop every 100 ms: its socket is closed
        # only once it is done with it (a socket is one thread's), and
        # destroy, unlike term, never waits for a socket left open
        self._thread.join(30)
        if not self._thread.is_alive():
            self.sock.close()
            self.ctx.destroy(linger=0)


def vs(name, port=None):
    v = harness.virtualservice(name, NS, [[harness.dest("echo", 7000)]])
    if port is not None:
        v["metadata"]["annotations"] = {EXPOSE: "true", PORT: str(port)}
    return v


def first_byte(host, port, deadline):
    """When a connection to host:port first reads a byte, polling."""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.settimeout(1)
                if s.recv(1):
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.0005)
    raise RuntimeError("%s:%d never answered" % (host, port))


def new_fleet(nports):
    """A Fleet whose range holds nports ports.  Its API port is drawn first,
    anywhere below 32768, and no range may hold it: at 15,800 ports about
    half the draws leave no room, so draw again (a failed draw has started
    nothing but its run folder)."""
    for _ in range(20):
        run_dir = tempfile.mkdtemp(prefix="pt-", dir="/tmp")
        try:
            return harness.Fleet(ports=nports, verbose=False, poll_interval=1,
                                 run_dir=run_dir)
        except RuntimeError as e:
            shutil.rmtree(run_dir, ignore_errors=True)
            last = e
    raise last


def fleet_with(n, live):
    """A started fleet with n routes live, SAMPLES to expose and CHURN to
    change."""
    fleet = new_fleet(n + SAMPLES + CHURN + SPARE_PORTS)
    lo = fleet.port_lo
    vss = [vs("live-%d" % i, lo + i) for i in range(n)]
    vss += [vs("new-%d" % i) for i in range(SAMPLES + CHURN)]
    c = fleet.add_cluster("bench", [("echo", NS, [7000])], vss)
    # one cluster holds every route: no per-cluster quota here
    fleet.limits.update(routes_per_cluster=0, ports_per_cluster=0,
                        backends_per_cluster=0, bytes_per_cluster=0,
                        bytes_total=0)
    fleet.write_conf(**{"proxy.%s" % harness.HAPROXY_NAME: {"live": int(live),
                                                           "maxconn": MAXCONN}})
    t0 = time.monotonic()
    fleet.start_daemons()

    def all_live():
        fleet._check_alive()
        return len(fleet.routed_ports()) >= n
    testlib.wait_until(all_live, 600, "%d routes in HAProxy" % n)
    # and served: the last one answers
    first_byte(fleet.listen, lo + n - 1, time.monotonic() + 120)
    return fleet, c, time.monotonic() - t0


def settle(fleet, c, n):
    """Until the write-backs of the first n addresses are done."""
    def done():
        items = c.sim.get(harness.VS_API + "/namespaces/%s/virtualservices" % NS)["items"]
        return sum(1 for o in items
                   if ADDRESS in (o["metadata"].get("annotations") or {})) >= n
    testlib.wait_until(done, 600, "%d addresses written back" % n)


def idle_checks(fleet, c):
    """Connection attempts a second at the workloads while nothing changes:
    HAProxy's health checks (nothing else connects meanwhile).  Counted as
    SYNs on the wire: a check never gets as far as an accept()."""
    syn = testlib.SynCounter({(s.host, s.port) for s in c.servers})
    try:
        return syn.rate(IDLE_S)
    finally:
        syn.close()


def declared_checks(fleet):
    """The checked servers in HAProxy's configuration, and the checks a
    second their intervals add up to (the steady rate, which a window
    shorter than the intervals cannot see)."""
    n, rate = 0, 0.0
    for line in fleet.proxy_cfg().splitlines():
        f = line.split()
        if line.startswith("\tserver ") and "check" in f:
            n += 1
            inter = f[f.index("inter") + 1] if "inter" in f else "2s"
            ms = float(inter[:-2]) if inter.endswith("ms") else float(inter[:-1]) * 1000
            rate += 1000.0 / ms
    return n, rate


def measure(fleet, c, n):
    lat, watch, patch = [], [], []
    base = fleet.port_lo + n
    for i in range(SAMPLES):
        port = base + i
        t0 = time.monotonic()
        obj = c.annotate(NS, "new-%d" % i, **{EXPOSE: "true", PORT: str(port)})
        t1 = time.monotonic()
        patch.append((t1 - t0) * 1000)
        fb = first_byte(fleet.listen, port, t1 + 60)
        lat.append((fb - t1) * 1000)
        # CLOCK_MONOTONIC is the machine's: the simulator's reads compare
        sent = c.sim.get("/_sim/sent?rv=%s" % obj["metadata"]["resourceVersion"])
        watch.append((fb - sent["monotonic"]) * 1000)
        if SAMPLES_OUT:
            with open(SAMPLES_OUT, "a") as f:
                f.write("%d %d %.6f %.6f %.6f %.6f\n" % (n, port, t0, t1,
                                                     sent["monotonic"], fb))
        time.sleep(0.2)     # one change at a time: the next after this settles
    return lat, watch, patch


def churn(fleet, c, n):
    """CHANGES route changes; the reloads, CPU seconds and bus bytes they
    cost, and how long they took."""
    buses = {"allocd": BusCounter("ipc://%s/alloc.pub" % fleet.run_dir),
             "renderd": BusCounter("ipc://%s/render-%s.pub" % (fleet.run_dir,
                                                               harness.HAPROXY_NAME))}
    time.sleep(0.5)         # let the subscriptions reach the publishers
    names = ["new-%d" % (SAMPLES + i) for i in range(CHURN)]
    base = fleet.port_lo + n + SAMPLES
    before = fleet.haproxy_reloads()
    cpu0 = cpu_snapshot(fleet)
    bus0 = {k: b.read() for k, b in buses.items()}
    t0 = time.monotonic()
    for k in range(CHANGES):
        i = k % len(names)
        on = (k // len(names)) % 2 == 0
        c.annotate(NS, names[i], **({EXPOSE: "true", PORT: str(base + i)} if on
                                    else {EXPOSE: None, PORT: None}))
    # the last state: every one of them unexposed (CHANGES / CHURN is even)
    testlib.wait_until(lambda: not set(range(base, base + CHURN)) & set(fleet.routed_ports()),
                       120, "the churn applied")
    secs = time.monotonic() - t0
    cpu = cpu_delta(cpu0, cpu_snapshot(fleet))
    bus = {k: tuple(a - b for a, b in zip(buses[k].read(), bus0[k])) for k in buses}
    reloads = fleet.haproxy_reloads() - before
    for b in buses.values():
        b.close()
    return reloads, secs, cpu, bus


def sizes():
    out = []
    for s in SIZES:
        if s == "max":
            n, why = max_routes()
            emit("max_routes", n, "routes", bound=why)
            out.append(n)
        else:
            out.append(int(s))
    return out


def run(n, mode):
    live = mode == "live"
    fleet, c, start = fleet_with(n, live)
    tag = "%d_routes_%s" % (n, mode)
    try:
        emit("start_to_%s" % tag, start, "s")
        settle(fleet, c, n)
        nchecked, declared = declared_checks(fleet)
        emit("checked_servers_%s" % tag, nchecked, "servers")
        emit("idle_checks_per_s_declared_%s" % tag, declared, "checks/s")
        lat, watch, patch = measure(fleet, c, n)
        emit("watch_to_first_byte_p50_%s" % tag, pct(watch, 50), "ms")
        emit("watch_to_first_byte_p99_%s" % tag, pct(watch, 99), "ms")
        emit("first_byte_p50_%s" % tag, pct(lat, 50), "ms")
        emit("first_byte_p99_%s" % tag, pct(lat, 99), "ms")
        emit("sim_patch_p50_%s" % tag, pct(patch, 50), "ms")
        reloads, secs, cpu, bus = churn(fleet, c, n)
        emit("reloads_per_1000_changes_%s" % tag, reloads * 1000.0 / CHANGES, "reloads")
        emit("changes_per_s_%s" % tag, CHANGES / secs, "changes/s")
        for name, s in sorted(cpu.items()):
            emit("cpu_s_per_1000_changes_%s_%s" % (name, tag), s * 1000.0 / CHANGES, "s")
        for name, (nbytes, msgs) in sorted(bus.items()):
            emit("bus_bytes_per_change_%s_%s" % (name, tag), nbytes / CHANGES, "bytes")
            emit("bus_messages_per_change_%s_%s" % (name, tag), msgs / CHANGES, "messages")
        emit("idle_checks_per_s_%s" % tag, idle_checks(fleet, c), "connections/s")
        master = fleet.proxy_master()
        hap = rss_mb(master) + sum(rss_mb(p) for p in children(master))
        emit("haproxy_rss_%s" % tag, hap, "MB")
        emit("applyd_rss_%s" % tag, rss_mb(fleet["applyd"].pid), "MB")
        emit("renderd_rss_%s" % tag, rss_mb(fleet["renderd"].pid), "MB")
    finally:
        problems = fleet.stop()
        if problems:
            print("fleet: %s" % problems, file=sys.stderr)
        fleet.cleanup()


def main():
    harness.need("allocd", "renderd", "applyd", "watcherd")
    t0 = time.monotonic()
    for n in sizes():
        for mode in ("live", "reload"):
            if mode in MODES:
                run(n, mode)
    emit("bench_wall_time", time.monotonic() - t0, "s")


if __name__ == "__main__":
    main()
