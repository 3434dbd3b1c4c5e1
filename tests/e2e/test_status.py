"""porticoctl status and the daemons' control sockets (common/control.c).

- A converged fleet: `porticoctl status` lists the four daemons answering,
  ready, with their positions and a lag of 0, and the proxy with the
  generation its applyd serves; -j says the same as JSON. Each control
  socket is mode 0600 and answers `counters` too.
- A daemon stopped (its socket gone) or killed (its socket left behind,
  refusing): its row says it is not answering, and the exit code is 1.
- Clients that connect and send nothing, one that sends 1 MB without a
  newline, and more clients than the daemon serves at once do not stop
  allocd from deciding: a route still goes live, and status still answers
  once their deadline has passed.
"""

import json
import os
import socket
import stat
import subprocess

import harness
import testlib
from harness import EXPOSE, start_payments

NS = "payments"
NAMES = ["allocd", "renderd-haproxy", "applyd-haproxy", "watcherd"]


def status(fleet, *args):
    """porticoctl -f <conf> status [args]: (rc, stdout, stderr)."""
    argv = [harness.daemon_path("porticoctl"), "-f", fleet.conf_path] + \
        list(args) + ["status"]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=60, env=fleet.env())
    return cp.returncode, cp.stdout.decode(), cp.stderr.decode()


def status_json(fleet):
    rc, out, err = status(fleet, "-j")
    return rc, json.loads(out)


def ask(fleet, name, request, timeout=10):
    """One request line on <run_dir>/<name>.ctl; the answer, decoded."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.path.join(fleet.run_dir, name + ".ctl"))
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return json.loads(data)


def expose(fleet, pay, name):
    pay.annotate(NS, name, **{EXPOSE: "true"})
    return fleet.wait_address(pay, NS, name, timeout=60)


def converged(fleet):
    """The status -j once every daemon answers, is ready, and lags by 0."""
    def check():
        rc, st = status_json(fleet)
        ds = {d["name"]: d for d in st["daemons"]}
        if rc != 0 or not all(ds[n]["answering"] and ds[n]["ready"] and
                              ds[n]["lag"] == 0 for n in NAMES):
            return None
        return st
    return testlib.wait_until(check, 60, "a converged status")


def test_status_lists_the_fleet_ready_and_converged(make_fleet):
    fleet, pay = start_payments(make_fleet)
    expose(fleet, pay, "orders-db")
    st = converged(fleet)
    ds = {d["name"]: d for d in st["daemons"]}
    assert [d["name"] for d in st["daemons"]] == NAMES, st
    for n in NAMES:
        d = ds[n]
        assert d["pid"] == fleet[n.split("-")[0]].pid, d
        assert d["version"] and d["uptime_ms"] >= 0 and d["waiting"] is None
        assert isinstance(d["counters"], dict) and "bus_garbage" in d["counters"]
    alloc = ds["allocd"]
    assert alloc["seq"] > 0
    assert ds["renderd-haproxy"]["seq"] == alloc["seq"]
    assert ds["watcherd"]["seq"] == alloc["seq"]
    gen = ds["applyd-haproxy"]["gen"]
    assert 0 < gen <= alloc["seq"] and gen == ds["renderd-haproxy"]["gen"]
    assert st["proxies"] == [{"proxy": "haproxy", "kind": "haproxy",
                              "gen": gen}], st

    # the table: one row per daemon, ready, lag 0; the proxy and its gen
    rc, out, _ = status(fleet)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split()[:7] == ["DAEMON", "VERSION", "PID", "READY",
                                    "SEQ", "GEN", "LAG"], out
    rows = {l.split()[0]: l.split() for l in lines[1:5]}
    for n in NAMES:
        assert rows[n][3] == "yes" and rows[n][6] == "0", out
    assert ["haproxy", "haproxy", str(gen)] in [l.split() for l in lines], out

    # the sockets: 0600; counters; an unknown request is told so
    for n in NAMES:
        mode = os.stat(os.path.join(fleet.run_dir, n + ".ctl")).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    counters = ask(fleet, "allocd", b"counters\n")
    assert counters["control_served"] >= 1 and "ignored" in counters, counters
    assert "error" in ask(fleet, "renderd-haproxy", b"\x1b[31mshow me\n")

    # stopped (socket removed) and killed (socket left): not answering, rc 1
    fleet["watcherd"].stop()
    assert not os.path.exists(os.path.join(fleet.run_dir, "watcherd.ctl"))
    fleet["renderd"].kill9()
    rc, out, _ = status(fleet)
    assert rc == 1, out
    for n in ("watcherd", "renderd-haproxy"):
        row = [l for l in out.splitlines() if l.startswith(n + " ")]
        assert row and "not answering" in row[0], out
    rc, st = status_json(fleet)
    ds = {d["name"]: d for d in st["daemons"]}
    assert rc == 1 and not ds["watcherd"]["answering"] and \
        ds["allocd"]["answering"] and ds["allocd"]["ready"], st


def test_hostile_clients_do_not_stop_allocd(make_fleet):
    fleet, pay = start_payments(make_fleet)
    converged(fleet)
    path = os.path.join(fleet.run_dir, "allocd.ctl")
    socks = []
    try:
        # silent clients, more than allocd serves at once
        for _ in range(24):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            socks.append(s)
        # a megabyte without a newline, as much as allocd takes of it
        big = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        big.connect(path)
        big.setblocking(False)
        socks.append(big)
        sent, blob = 0, b"x" * (1 << 20)
        try:
            while sent < len(blob):
                sent += big.send(blob[sent:sent + 65536])
        except (BlockingIOError, BrokenPipeError, ConnectionResetError):
            pass

        # allocd still decides: a route goes live meanwhile
        assert expose(fleet, pay, "ledger-db")

        # the silent ones are closed at their deadline
        first = socks[0]
        first.settimeout(15)
        assert first.recv(16) == b""
    finally:
        for s in socks:
            s.close()
    # and status answers again, with the route's decisions in allocd's seq
    st = converged(fleet)
    alloc = [d for d in st["daemons"] if d["name"] == "allocd"][0]
    assert alloc["counters"]["control_refused"] >= 1 or \
        alloc["counters"]["control_bad"] >= 1, alloc


def test_ready_means_something(make_fleet):
    """On an empty store and with no watcherd, allocd holds what it hears
    until the clusters are resynced: it is not ready, nor is renderd (it
    cannot catch up with allocd) nor applyd (no configuration yet), and
    each says what it waits for. watcherd started, all become ready."""
    harness.need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    harness.payments_cluster(fleet)
    fleet.write_conf(store={"adopt_wait": 120})
    fleet.start_daemons(watcherd=False, wait_proxy=False)
    rc, st = status_json(fleet)
    ds = {d["name"]: d for d in st["daemons"]}
    assert rc == 1 and not ds["watcherd"]["answering"], st
    assert ds["allocd"]["ready"] is False and \
        "resynced" in ds["allocd"]["waiting"], ds["allocd"]
    assert ds["renderd-haproxy"]["ready"] is False and \
        "allocd" in ds["renderd-haproxy"]["waiting"], ds["renderd-haproxy"]
    assert ds["applyd-haproxy"]["ready"] is False and \
        ds["applyd-haproxy"]["gen"] == 0, ds["applyd-haproxy"]
    rc, out, _ = status(fleet)
    assert "not ready: waiting for" in out, out

    d = harness.Daemon(fleet, "watcherd", "watcherd", [])
    fleet.daemons[d.key] = d
    d.start()
    st = converged(fleet)
    assert all(d["ready"] for d in st["daemons"]), st
