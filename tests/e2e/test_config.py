"""portico.conf as the daemons read it: -n prints the normalised
configuration (defaults filled in, the secret hidden) and touches nothing;
a bad value stops the daemon with a message that names the file, the line
and the key."""

import os
import re
import subprocess

import pytest

import harness
from harness import need

ROOT = harness.ROOT
SECRET = "hunter2-do-not-print"

GOOD = """\
; a comment
# another comment
[portico]
domain = k8s.example.test
run_dir = {run_dir}
listen = 127.77.1.2          ; where HAProxy binds
api_port = 20443
ports = 21000-21049
quarantine = 600

[store]
path = {run_dir}/store

[pks]
url = https://127.77.1.3:9021
uaa_url = https://127.77.1.3:8443
client_id = portico
client_secret = {secret}
ca_file = /etc/portico/pks-ca.pem
poll_interval = 1

[clusters]
watch_timeout = 30
"""

# Where each daemon gets its proxy from.
DAEMONS = [("allocd", []), ("watcherd", []), ("renderd", ["-p", "haproxy"]),
           ("applyd", ["-p", "haproxy"])]


def run(daemon, conf, *args):
    need(daemon)
    return subprocess.run([harness.daemon_path(daemon), "-n", "-f", conf] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=20)


@pytest.fixture
def confdir(tmp_path):
    return tmp_path


def write(confdir, text, name="portico.conf"):
    path = confdir / name
    path.write_text(text)
    return str(path)


def good(confdir, **kw):
    run_dir = str(confdir / "run")
    return GOOD.format(run_dir=run_dir, secret=SECRET, **kw), run_dir


def sections(text):
    """{section: {key: value}} of the -n output."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("["):
            cur = out.setdefault(line.strip("[]"), {})
        elif " = " in line or line.endswith(" ="):
            k, _, v = line.partition(" =")
            cur[k] = v.strip()
    return out


@pytest.mark.parametrize("daemon,args", DAEMONS, ids=[d for d, _ in DAEMONS])
def test_check_prints_the_normalised_config(confdir, daemon, args):
    text, run_dir = good(confdir)
    path = write(confdir, text)
    cp = run(daemon, path, *args)
    assert cp.returncode == 0, cp.stderr
    assert SECRET not in cp.stdout + cp.stderr
    conf = sections(cp.stdout)
    p = conf["portico"]
    assert p["domain"] == "k8s.example.test" and p["listen"] == "127.77.1.2"
    assert p["api_port"] == "20443" and p["ports"] == "21000-21049"
    assert p["run_dir"] == run_dir
    assert conf["pks"]["client_secret"] == "(set, not shown)"
    assert conf["pks"]["poll_interval"] == "1"
    # defaults filled in
    assert conf["store"]["map_size_mb"] == "64"
    assert conf["clusters"] == {"backend": "nodeport", "watch_timeout": "30",
                                "watch_idle": "90", "shards": "1"}
    assert conf["kubeconfigs"]["poll_interval"] == "10"
    assert conf["bus"]["alloc_in"] == "ipc://%s/alloc.in" % run_dir
    px = conf["proxy.haproxy"]
    assert px["kind"] == "haproxy" and px["config"] == run_dir + "/haproxy.cfg"
    assert px["pub"] == "ipc://%s/render-haproxy.pub" % run_dir
    # -n only reads: no run folder, no store, no pid file
    assert not os.path.exists(run_dir)


def test_proxy_kinds(confdir):
    """kind = nginx or haproxy; the binary follows the kind unless given, and
    a proxy binds [portico] listen unless it names its own address."""
    text, run_dir = good(confdir)
    text += ("\n[proxy.edge]\nkind = nginx\n"
             "\n[proxy.lb]\nkind = haproxy\nlisten = 127.77.1.9\nlive = 0\n"
             "\n[proxy.ng2]\nkind = nginx\nbinary = /opt/nginx/sbin/nginx\n")
    path = write(confdir, text)
    for daemon, args in DAEMONS[:2] + [("renderd", ["-p", "edge"]), ("applyd", ["-p", "edge"])]:
        cp = run(daemon, path, *args)
        assert cp.returncode == 0, (daemon, cp.stderr)
        conf = sections(cp.stdout)
        assert "proxy.haproxy" not in conf
        assert conf["proxy.edge"]["kind"] == "nginx"
        assert conf["proxy.edge"]["binary"] == "/usr/sbin/nginx"
        assert conf["proxy.edge"]["listen"] == "127.77.1.2"
        assert conf["proxy.edge"]["config"] == run_dir + "/edge.cfg"
        assert conf["proxy.lb"]["binary"] == "/usr/sbin/haproxy"
        assert conf["proxy.lb"]["listen"] == "127.77.1.9"
        # a key given as 0 is not mistaken for a key not given
        assert conf["proxy.lb"]["live"] == "0" and conf["proxy.edge"]["live"] == "1"
        assert conf["proxy.ng2"]["binary"] == "/opt/nginx/sbin/nginx"
    # what applyd prints, allocd reads back to the same proxies
    again = run("allocd", write(confdir, cp.stdout, "normalised.conf"))
    assert again.returncode == 0, again.stderr
    assert {k: v for k, v in sections(again.stdout).items() if k.startswith("proxy.")} == \
        {k: v for k, v in conf.items() if k.startswith("proxy.")}


def test_cluster_backend_modes(confdir):
    """[clusters] backend is every cluster's mode; a [cluster.NAME] section
    sets one cluster's own. -n prints each section with its mode filled in,
    and what it prints reads back the same."""
    text, _ = good(confdir)
    text = text.replace("[clusters]\n", "[clusters]\nbackend = endpoints\n")
    text += ("\n[cluster.payments]\nbackend = nodeport\n"
             "\n[cluster.search-2]\n"
             "\n[cluster.billing]\nbackend = endpoints\n")
    for daemon, args in DAEMONS:
        cp = run(daemon, write(confdir, text), *args)
        assert cp.returncode == 0, (daemon, cp.stderr)
        conf = sections(cp.stdout)
        assert conf["clusters"]["backend"] == "endpoints"
        assert conf["cluster.payments"] == {"backend": "nodeport"}
        assert conf["cluster.billing"] == {"backend": "endpoints"}
        # a section without the key: no section key was given at all
        assert "cluster.search-2" not in conf
    first = run("allocd", write(confdir, text))
    again = run("allocd", write(confdir, first.stdout, "normalised.conf"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_normalised_config_reads_back_the_same(confdir):
    text, _ = good(confdir)
    first = run("allocd", write(confdir, text))
    assert first.returncode == 0, first.stderr
    again = run("allocd", write(confdir, first.stdout, "normalised.conf"))
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


def test_example_config_is_valid(confdir):
    # installed as an operator would (install -m 600): it holds a secret
    example = write(confdir, open(os.path.join(ROOT, "etc", "portico.conf.example")).read())
    os.chmod(example, 0o600)
    for daemon, args in DAEMONS:
        cp = run(daemon, example, *args)
        assert cp.returncode == 0, (daemon, cp.stderr)
        assert "(set, not shown)" in cp.stdout


# (section, bad line, key the message must name)
BAD = [
    ("portico", "ports = 30000-20000", "ports"),
    ("portico", "ports = 21000-21009, 21005", "ports"),     # overlapping
    ("portico", "ports = 21000-", "ports"),
    ("portico", "reserved = 21000-x", "reserved"),
    ("portico", "ports = 100-2000", "ports"),
    ("portico", "api_port = x", "api_port"),
    ("portico", "api_port = 70000", "api_port"),
    ("portico", "api_port = -1", "api_port"),
    ("portico", "quarantine = 1h", "quarantine"),
    ("portico", "listen = 127.0.0.300", "listen"),
    ("portico", "domain = Not_A_Domain", "domain"),
    ("portico", "colour = blue", "colour"),
    ("store", "map_size_mb = 0", "map_size_mb"),
    ("pks", "url = ftp://pks.example.com", "url"),
    ("pks", "poll_interval = 0", "poll_interval"),
    ("clusters", "watch_timeout = 1", "watch_timeout"),
    ("metrics", "allocd = localhost:9100", "allocd"),
    ("metrics", "watcherd = ::1:9100", "watcherd"),
    ("clusters", "backend = magic", "backend"),
    ("clusters", "shards = 0", "shards"),
    ("clusters", "shards = 1025", "shards"),
    ("cluster.payments", "backend = magic", "backend"),
    ("cluster.payments", "watch_idle = 5", "watch_idle"),   # not per cluster
    ("cluster.Not_A_Label", "backend = endpoints", "cluster.Not_A_Label"),
    ("bus", "alloc_in = http://127.0.0.1:5555", "alloc_in"),
    # tcp://HOST:PORT only (without [bus] keys, a tcp:// endpoint is an
    # error of the whole file: test_curve.py)
    ("bus", "alloc_in = tcp://127.0.0.1", "alloc_in"),
    ("bus", "alloc_pub = tcp://bad_host:5556", "alloc_pub"),
    ("proxy.haproxy", "pub = tcp://127.0.0.1:0", "pub"),
    ("proxy.haproxy", "kind = squid", "kind"),
    ("proxy.haproxy", "listen = 127.0.0.300", "listen"),
    ("portico", "run_dir = run/portico", "run_dir"),             # relative
    ("portico", "run_dir = /run/x;y", "run_dir"),               # nginx would read ';'
    ("proxy.haproxy", "maxconn = 1", "maxconn"),
    ("proxy.haproxy", "check_rate = 0", "check_rate"),
    ("nonsense", "key = value", "key"),
]


@pytest.mark.parametrize("section,line,key", BAD, ids=[b[1] for b in BAD])
def test_bad_value_names_key_and_line(confdir, section, line, key):
    text, run_dir = good(confdir)
    lines = text.splitlines()
    if "[%s]" % section in lines:
        at = lines.index("[%s]" % section) + 1
        lines.insert(at, line)
    else:
        lines += ["", "[%s]" % section, line]
        at = len(lines) - 1
    path = write(confdir, "\n".join(lines) + "\n")
    lineno = at + 1
    for daemon, args in DAEMONS:
        cp = run(daemon, path, *args)
        assert cp.returncode == 1, (daemon, cp.stdout)
        assert cp.stdout == ""
        msg = cp.stderr
        assert "%s:%d:" % (path, lineno) in msg, (daemon, lineno, msg)
        assert key in msg, (daemon, msg)
        assert SECRET not in msg
    assert not os.path.exists(run_dir)


def test_whole_file_errors(confdir):
    text, _ = good(confdir)
    # api_port inside the workload range
    cp = run("allocd", write(confdir, text.replace("api_port = 20443", "api_port = 21010")))
    assert cp.returncode == 1 and "api_port" in cp.stderr, cp.stderr
    # a required key missing
    cp = run("allocd", write(confdir, text.replace("domain = k8s.example.test\n", "")))
    assert cp.returncode == 1 and "domain" in cp.stderr, cp.stderr
    # no cluster source at all
    no_pks = text.split("[pks]")[0] + "[clusters]\nwatch_timeout = 30\n"
    cp = run("allocd", write(confdir, no_pks))
    assert cp.returncode == 1 and "source" in cp.stderr, cp.stderr
    # the kubeconfig folder alone is a source
    kc = no_pks + "[kubeconfigs]\ndir = %s\n" % confdir
    cp = run("allocd", write(confdir, kc))
    assert cp.returncode == 0, cp.stderr
    # a file that is not there, and a line that is not INI
    cp = run("allocd", str(confdir / "missing.conf"))
    assert cp.returncode == 1 and "missing.conf" in cp.stderr
    cp = run("allocd", write(confdir, text.replace("[store]", "[store\nthis is not ini")))
    assert cp.returncode == 1 and "portico.conf:" in cp.stderr, cp.stderr


def test_password_grant_keys(confdir):
    """[pks] username and password go together: the password is a secret
    like client_secret, and one without the other stops every daemon with
    a message naming both keys (and never the password)."""
    text, _ = good(confdir)
    both = text.replace("client_secret = %s\n" % SECRET,
                        "client_secret =\nusername = alice\npassword = %s\n" % SECRET)
    for daemon, args in DAEMONS:
        cp = run(daemon, write(confdir, both), *args)
        assert cp.returncode == 0, (daemon, cp.stderr)
        pks = sections(cp.stdout)["pks"]
        assert pks["username"] == "alice" and pks["password"] == "(set, not shown)"
        assert pks["client_secret"] == ""
        assert SECRET not in cp.stdout + cp.stderr
    for drop, keep in (("password", "username"), ("username", "password")):
        lines = [line for line in both.splitlines() if not line.startswith(drop + " =")]
        path = write(confdir, "\n".join(lines) + "\n")
        for daemon, args in DAEMONS:
            cp = run(daemon, path, *args)
            assert cp.returncode == 1, (daemon, cp.stdout)
            assert cp.stdout == ""
            assert "[pks] %s is set but %s is not" % (keep, drop) in cp.stderr, cp.stderr
            assert SECRET not in cp.stderr


def test_long_lines(confdir):
    """A line up to libinih's limit (198 characters) is read whole; a longer
    one is refused as such, naming its own line, not parsed as two lines."""
    text, _ = good(confdir)
    # "ca_file = " + path: exactly 198 characters
    path = "/etc/portico/" + "p" * (198 - len("ca_file = ") - len("/etc/portico/") - 4) + ".pem"
    fits = text.replace("/etc/portico/pks-ca.pem", path)
    assert "ca_file = " + path in fits.splitlines()
    cp = run("allocd", write(confdir, fits))
    assert cp.returncode == 0, cp.stderr
    assert sections(cp.stdout)["pks"]["ca_file"] == path

    long_url = "https://pks.example.com:9021/" + "u" * 270
    lines = text.replace("https://127.77.1.3:9021", long_url).splitlines()
    lineno = [n for n, line in enumerate(lines, 1) if long_url in line][0]
    conf = write(confdir, "\n".join(lines) + "\n")
    for daemon, args in DAEMONS:
        cp = run(daemon, conf, *args)
        assert cp.returncode == 1, (daemon, cp.stdout)
        assert "%s:%d:" % (conf, lineno) in cp.stderr and "long" in cp.stderr, cp.stderr
        assert SECRET not in cp.stderr


def test_ports_in_the_ephemeral_range_are_refused(confdir):
    """Workload ports the kernel may hand out as source ports are refused,
    naming the range, unless the kernel reserves them."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    with open("/proc/sys/net/ipv4/ip_local_reserved_ports") as f:
        kernel_reserved = f.read().strip()
    p = lo + 10
    assert str(p) not in kernel_reserved
    text, _ = good(confdir)
    text = re.sub(r"(?m)^ports = .*$", "ports = %d-%d" % (p, p + 5), text)
    cp = run("allocd", write(confdir, text))
    assert cp.returncode == 1, cp.stdout
    assert "ephemeral range %d-%d" % (lo, hi) in cp.stderr, cp.stderr


def test_port_sets_normalised(confdir):
    text, _ = good(confdir)
    text = re.sub(r"(?m)^ports = .*$", "ports = 21030 ,21000-21009,21020-21021", text)
    text = text.replace("[portico]\n", "[portico]\nreserved = 21001, 21003\n", 1)
    cp = run("allocd", write(confdir, text))
    assert cp.returncode == 0, cp.stderr
    conf = sections(cp.stdout)
    assert conf["portico"]["ports"] == "21000-21009, 21020-21021, 21030"
    assert conf["portico"]["reserved"] == "21001, 21003"
