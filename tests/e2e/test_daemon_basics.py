"""What every daemon does the same way (common/daemon.c, common/log.c):
-V names its version; a log line carries one prefix, or in logfmt the keys
ts level daemon msg and nothing a logged value can forge; the pid file goes
at exit; SIGHUP re-reads portico.conf, applies what is safe to change live,
names each key that needs a restart, and keeps the running configuration
when the new one is bad. Real daemons, real HAProxy, real TCP."""

import os
import re
import signal
import subprocess

import harness
import testlib
from harness import ERROR, EXPOSE, need, start_payments

DAEMONS = ("allocd", "renderd", "applyd", "watcherd")
NS = "payments"
# A text line: "<ts> <daemon>: <message>".
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\w+): (.*)$")
# A logfmt line, whole: these four keys in this order, the message quoted.
LOGFMT_LINE = re.compile(r'^ts=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) '
                         r'level=(debug|info|warn|fatal) daemon=(\w+) '
                         r'msg="((?:[^"\\]|\\.)*)"$')
LOGFMT_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)\s*')


def logfmt_keys(line):
    """The keys a logfmt reader finds on a line, in order."""
    keys, pos = [], 0
    while pos < len(line):
        m = LOGFMT_PAIR.match(line, pos)
        if m is None:
            keys.append(None)       # not logfmt from here on
            break
        keys.append(m.group(1))
        pos = m.end()
    return keys


def pks_polls(fleet):
    return fleet.pks.requests().get("/v1/clusters", 0)


def hup_all(fleet):
    for d in fleet.daemons.values():
        os.kill(d.pid, signal.SIGHUP)


def wait_log(d, text, timeout=30):
    testlib.wait_until(lambda: text in d.log(), timeout,
                       "%r in %s's log" % (text, d.key))


def all_alive(fleet):
    for d in fleet.daemons.values():
        assert d.alive(), "%s died:\n%s" % (d.key, harness.tail(d.log(), 40))


def expose(fleet, pay, name):
    pay.annotate(NS, name, **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, name)
    return port


def test_version():
    """-V prints "<daemon> <version>" and exits 0; in a git checkout the
    version names a commit of it."""
    need(*DAEMONS)
    described = subprocess.run(["git", "-C", harness.ROOT, "rev-parse", "HEAD"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for name in DAEMONS:
        r = subprocess.run([harness.daemon_path(name), "-V"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=20)
        assert r.returncode == 0, (name, r.returncode, r.stderr)
        m = re.fullmatch(r"(\w+) ([A-Za-z0-9._+-]+)\n", r.stdout)
        assert m and m.group(1) == name, r.stdout
        version = m.group(2)
        if described.returncode == 0 and version != "unknown":
            commit = re.sub(r"-dirty$", "", version)
            ok = subprocess.run(["git", "-C", harness.ROOT, "rev-parse", "--verify",
                                 "--quiet", commit + "^{commit}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert ok.returncode == 0, "%s -V: %s is no commit here" % (name, version)


def test_one_prefix_per_line(make_fleet):
    """A running fleet that routes traffic: every line of every daemon names
    that daemon once, and no message repeats a daemon's name as a prefix."""
    fleet, pay = start_payments(make_fleet)
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    seen = 0
    for d in fleet.daemons.values():
        for line in d.log().splitlines():
            m = TEXT_LINE.match(line)
            if m is None:
                continue            # a proxy's own output, in applyd's log
            seen += 1
            assert m.group(1) == d.name, line
            for other in DAEMONS:
                assert not m.group(2).startswith(other + ":"), line
        assert "%s: %s: " % (d.name, d.name) not in d.log()
        assert re.search(r"Z %s: ready" % d.name, d.log()), d.key
    assert seen > 8


HOSTILE = 'nope" level=fatal daemon=forged msg="forged\nts=0 level=fatal \\ x'


def write_hostile_kubeconfig(fleet):
    """A kubeconfig whose certificate-authority path watcherd logs, quoted,
    when it refuses the file."""
    path = os.path.join(fleet.kubeconfig_dir, "evil.yaml")
    quoted = HOSTILE.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    with open(path, "w") as f:
        f.write('apiVersion: v1\nkind: Config\ncurrent-context: evil\n'
                'clusters:\n- name: evil\n  cluster:\n'
                '    server: https://127.0.0.1:6443\n'
                '    certificate-authority: "%s"\n'
                'contexts:\n- name: evil\n  context: {cluster: evil, user: evil}\n'
                'users:\n- name: evil\n  user: {token: abc}\n' % quoted)


def test_logfmt_and_hostile_value(make_fleet):
    """[portico] log_format = logfmt: every daemon line is ts level daemon
    msg; a refused kubeconfig's hostile path (quotes, a newline, key=value
    pairs) stays inside msg."""
    need(*DAEMONS)
    fleet = make_fleet(sources=("pks", "kubeconfigs"))
    pay = harness.payments_cluster(fleet)
    write_hostile_kubeconfig(fleet)
    fleet.write_conf(portico={"log_format": "logfmt"})
    fleet.start_daemons()
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    wd = fleet["watcherd"]
    wait_log(wd, "forged")

    # logged at each look at the folder: every time on one line of its own
    for line in wd.log().splitlines():
        if "forged" not in line:
            continue
        m = LOGFMT_LINE.match(line)
        assert m, line
        assert (m.group(2), m.group(3)) == ("warn", "watcherd"), line
        assert logfmt_keys(line) == ["ts", "level", "daemon", "msg"], line
        assert "evil.yaml" in m.group(4) and "fatal" in m.group(4), line
    for d in fleet.daemons.values():
        lines = [line for line in d.log().splitlines() if line.startswith("ts=")]
        assert len(lines) >= 2, d.key
        for line in lines:
            m = LOGFMT_LINE.match(line)
            assert m and m.group(3) == d.name, line
            assert logfmt_keys(line) == ["ts", "level", "daemon", "msg"], line
        assert not any(TEXT_LINE.match(line) for line in d.log().splitlines())


def test_pid_files_removed_at_exit(make_fleet):
    """SIGTERM: each daemon removes its pid file, unless the file has since
    been taken by another process."""
    need(*DAEMONS)
    fleet = make_fleet()
    fleet.start()
    rd = fleet["renderd"]
    other = "%d\n" % os.getpid()
    with open(rd.pidfile, "w") as f:
        f.write(other)              # not renderd's any more
    for d in sorted(fleet.daemons.values(),
                    key=lambda d: ("watcherd", "applyd", "renderd", "allocd").index(d.name)):
        assert os.path.exists(d.pidfile)
        assert d.stop() == 0, harness.tail(d.log(), 40)
        if d is rd:
            with open(d.pidfile) as f:
                assert f.read() == other
        else:
            assert not os.path.exists(d.pidfile), d.pidfile


def test_sighup_restart_only_key_and_live_limit(make_fleet):
    """SIGHUP after quarantine, ports_per_cluster and [pks] poll_interval
    changed: each daemon names quarantine as needing its restart, only
    watcherd the PKS poll; allocd applies the limit at once (the next route
    is refused over it); the held route keeps serving."""
    fleet, pay = start_payments(make_fleet)
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))

    fleet.write_conf(portico={"quarantine": 300}, limits={"ports_per_cluster": 1},
                     pks={"poll_interval": 2})
    hup_all(fleet)
    for d in fleet.daemons.values():
        wait_log(d, "config: [portico] quarantine changed; restart %s to apply" % d.name)
        wait_log(d, "config: [limits] ports_per_cluster changed; applied")
        # [pks] is watcherd's alone: the others have nothing to restart for
        wait_log(d, "%d need a restart" % (2 if d.name == "watcherd" else 1))
    wait_log(fleet["watcherd"], "config: [pks] poll_interval changed; restart watcherd")
    assert "[pks]" not in fleet["allocd"].log()
    all_alive(fleet)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    err = fleet.wait_annotation(pay, NS, "orders-db", ERROR)
    assert err.startswith("the cluster holds 1 port"), err
    all_alive(fleet)


def test_sighup_broken_config_keeps_the_old(make_fleet):
    """SIGHUP with a portico.conf that does not parse: each daemon says so
    and keeps what it runs with; routes keep their port and traffic, and a
    new route still gets a port of the running configuration."""
    fleet, pay = start_payments(make_fleet)
    port = expose(fleet, pay, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))

    fleet.write_conf(portico={"ports": "lots"})
    hup_all(fleet)
    for d in fleet.daemons.values():
        wait_log(d, "ports: not ports")
        wait_log(d, "keeping the running configuration")
    all_alive(fleet)
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    orders = expose(fleet, pay, "orders-db")
    assert fleet.port_lo <= orders <= fleet.port_hi
    fleet.wait_serves(orders, pay.markers(NS, "orders-db", 5432) |
                      pay.markers(NS, "orders-db-canary", 5432))
    all_alive(fleet)


def test_sighup_verbosity(make_fleet):
    """[portico] log_level = debug on SIGHUP turns watcherd's debug lines on
    (one per PKS poll); back to info, they stop."""
    need(*DAEMONS)
    fleet = make_fleet(verbose=False)
    harness.payments_cluster(fleet)
    fleet.start()
    wd = fleet["watcherd"]
    polled = pks_polls(fleet)
    testlib.wait_until(lambda: pks_polls(fleet) >= polled + 2, 30, "PKS polls")
    assert "clusters routed" not in wd.log()

    fleet.write_conf(portico={"log_level": "debug"})
    os.kill(wd.pid, signal.SIGHUP)
    wait_log(wd, "config: [portico] log_level changed; applied")
    wait_log(wd, "pks: 1 clusters routed")

    fleet.write_conf(portico={"log_level": "info"})
    os.kill(wd.pid, signal.SIGHUP)
    testlib.wait_until(lambda: wd.log().count("log_level changed; applied") == 2, 30,
                       "the second reload")
    before = wd.log().count("clusters routed")
    polled = pks_polls(fleet)
    testlib.wait_until(lambda: pks_polls(fleet) >= polled + 3, 30, "PKS polls")
    assert wd.log().count("clusters routed") == before
    all_alive(fleet)


def test_log_option_over_config(make_fleet):
    """-l logfmt wins over [portico] log_format = text, at start and after a
    SIGHUP; -l with an unknown format is a usage error."""
    need("allocd")
    r = subprocess.run([harness.daemon_path("allocd"), "-l", "json", "-V"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=20)
    assert r.returncode == 1 and "usage:" in r.stderr, r
    fleet = make_fleet()
    fleet.write_conf(portico={"log_format": "text"})
    ad = harness.Daemon(fleet, "allocd", "allocd", ["-l", "logfmt"])
    fleet.daemons[ad.key] = ad
    ad.start()
    fleet.write_conf(portico={"log_format": "text", "log_level": "debug"})
    os.kill(ad.pid, signal.SIGHUP)
    wait_log(ad, "log_level changed; applied")
    lines = ad.log().splitlines()
    assert len(lines) >= 3
    for line in lines:
        m = LOGFMT_LINE.match(line)
        assert m and m.group(3) == "allocd", line
