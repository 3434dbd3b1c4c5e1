"""make install: PREFIX and DESTDIR put the daemons, porticoctl, the man
pages, the systemd units and the example configuration where operators
look for them, with the modes they expect; the installed daemons run
(-V), man(1) reads the installed pages, and an existing configuration is
never overwritten. The units pass `systemd-analyze verify` (offline: it
reads the files, it needs no running systemd), installed under a PREFIX
of their own so that the binaries they name exist."""

import os
import re
import shutil
import stat
import subprocess

import pytest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAEMONS = ["watcherd", "allocd", "renderd", "applyd"]
UNITS = ["portico.target", "portico-allocd.service", "portico-watcherd.service",
         "portico-renderd@.service", "portico-applyd@.service"]


def make_install(**var):
    """make install VAR=... with the build the tests run ($PORTICO_BIN/..)."""
    build = os.path.relpath(os.path.dirname(harness.bin_dir()), ROOT)
    argv = ["make", "-s", "-C", ROOT, "install", "BUILD=" + build] + \
        ["%s=%s" % kv for kv in var.items()]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        timeout=600)
    assert cp.returncode == 0, cp.stdout.decode()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_install_tree(tmp_path):
    harness.need(*DAEMONS)
    dest = str(tmp_path / "root")
    make_install(DESTDIR=dest, PREFIX="/usr")
    usr = os.path.join(dest, "usr")
    for d in DAEMONS:
        path = os.path.join(usr, "sbin", d)
        assert mode(path) == 0o755, (path, oct(mode(path)))
        cp = subprocess.run([path, "-V"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            timeout=30)
        assert cp.returncode == 0, cp.stderr
        assert re.match(r"%s [A-Za-z0-9._+-]+\n$" % d, cp.stdout.decode()), cp.stdout
    ctl = os.path.join(usr, "bin", "porticoctl")
    assert mode(ctl) == 0o755
    cp = subprocess.run([ctl], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert cp.returncode == 1 and b"usage: porticoctl" in cp.stderr
    pages = [("man5", "portico.conf.5")] + \
        [("man8", p + ".8") for p in ["porticoctl"] + DAEMONS]
    for sect, page in pages:
        path = os.path.join(usr, "share", "man", sect, page)
        assert mode(path) == 0o644, path
        cp = subprocess.run(["man", "-l", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=60,
                            env=dict(os.environ, MANPAGER="cat", PAGER="cat"))
        assert cp.returncode == 0 and cp.stderr == b"", (page, cp.stderr)
        assert page.split(".")[0].upper() in cp.stdout.decode()
    units = os.path.join(usr, "lib", "systemd", "system")
    assert sorted(os.listdir(units)) == sorted(UNITS)
    for u in UNITS:
        text = open(os.path.join(units, u)).read()
        assert mode(os.path.join(units, u)) == 0o644
        assert "@" + "SBINDIR@" not in text and "@SYSCONFDIR@" not in text, u
        for line in re.findall(r"^ExecStart=(\S+)", text, re.M):
            assert line.startswith("/usr/sbin/"), line
        assert "-f /etc/portico/portico.conf" in text or u.endswith(".target")
    ex = os.path.join(usr, "share", "examples", "portico", "portico.conf.example")
    assert open(ex).read() == open(os.path.join(ROOT, "etc", "portico.conf.example")).read()
    conf = os.path.join(dest, "etc", "portico", "portico.conf")
    assert mode(conf) == 0o600
    # the installed example loads (-n), and is kept on a second install
    with open(conf, "a") as f:
        f.write("; edited by the operator\n")
    make_install(DESTDIR=dest, PREFIX="/usr")
    assert open(conf).read().endswith("; edited by the operator\n")
    # nothing outside DESTDIR: the tree holds only these folders
    assert sorted(os.listdir(dest)) == ["etc", "usr"]
    assert sorted(os.listdir(usr)) == ["bin", "lib", "sbin", "share"]


def test_default_prefix_is_usr_local(tmp_path):
    harness.need(*DAEMONS)
    dest = str(tmp_path / "root")
    make_install(DESTDIR=dest)
    assert os.path.exists(os.path.join(dest, "usr", "local", "sbin", "allocd"))
    assert os.path.exists(os.path.join(dest, "usr", "local", "share", "man", "man8",
                                       "allocd.8"))
    text = open(os.path.join(dest, "usr", "local", "lib", "systemd", "system",
                             "portico-allocd.service")).read()
    assert "ExecStart=/usr/local/sbin/allocd -d -f /etc/portico/portico.conf" in text


def test_units_verify(tmp_path):
    """systemd-analyze verify on each unit (templates by an instance)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    harness.need(*DAEMONS)
    prefix = str(tmp_path / "usr")
    make_install(PREFIX=prefix, SYSCONFDIR=str(tmp_path / "etc"))
    units = os.path.join(prefix, "lib", "systemd", "system")
    for t in ("renderd", "applyd"):
        shutil.copy(os.path.join(units, "portico-%s@.service" % t),
                    os.path.join(units, "portico-%s@haproxy.service" % t))
    names = [u.replace("@.", "@haproxy.") for u in UNITS]
    cp = subprocess.run(["systemd-analyze", "verify", "--man=no"] +
                        [os.path.join(units, n) for n in names],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                        env=dict(os.environ, SYSTEMD_LOG_LEVEL="notice"), cwd=units)
    out = cp.stdout.decode()
    if cp.returncode != 0 and "portico" not in out:
        pytest.skip("systemd-analyze cannot run here: %s" % out.strip()[:200])
    assert cp.returncode == 0 and "portico" not in out, out


def test_units_exposure(tmp_path):
    """systemd-analyze security, offline: how much each unit exposes (0 is
    none, 10 is a service with no hardening). applyd keeps more than the
    others: the proxy it starts binds ports and runs a JIT."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    harness.need(*DAEMONS)
    prefix = str(tmp_path / "usr")
    make_install(PREFIX=prefix, SYSCONFDIR=str(tmp_path / "etc"))
    units = os.path.join(prefix, "lib", "systemd", "system")
    for t in ("renderd", "applyd"):
        shutil.copy(os.path.join(units, "portico-%s@.service" % t),
                    os.path.join(units, "portico-%s@haproxy.service" % t))
    most = {"portico-allocd.service": 2.0, "portico-watcherd.service": 2.0,
            "portico-renderd@haproxy.service": 2.0, "portico-applyd@haproxy.service": 3.5}
    for unit, limit in most.items():
        cp = subprocess.run(["systemd-analyze", "security", "--offline=true",
                             os.path.join(units, unit)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120,
                            cwd=units)
        out = cp.stdout.decode()
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        if m is None:
            pytest.skip("systemd-analyze security cannot run here: %s" % out.strip()[-200:])
        assert float(m.group(1)) <= limit, (unit, m.group(1), out)
