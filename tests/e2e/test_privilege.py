"""Secrets, files and least privilege (issue 11), each attack tried for real.

- Secrets travel only over verified TLS: an http:// [pks] url or uaa_url is
  a configuration error, and a CA configured is the only one trusted (not
  libcurl's default CApath beside it).
- The files a kubeconfig names lie under the kubeconfig folder or
  [kubeconfigs] allow_dirs, symlinks resolved; anything else is refused.
- Files that hold secrets give group and others no access (mode & 077).
- The run folder is ours and writable by no one else; nothing portico
  creates in it follows a symlink.
- The four daemons (and HAProxy, started by applyd) run as an unprivileged
  user that owns the run folder and the store.
"""

import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import pytest

import harness
import testlib
from harness import EXPOSE, Pki, PksSim, need, payments_cluster, search_cluster

NS = "payments"
USER = "portico"                # the user scripts/deps.sh creates

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: chown, setpriv, mount namespaces")


def log_has(fleet, daemon, pattern, timeout=30):
    testlib.wait_until(lambda: re.search(pattern, fleet[daemon].log()), timeout,
                       "/%s/ in %s's log" % (pattern, daemon))


def run_n(daemon, conf, *args):
    """daemon -n -f conf: check the configuration, print it, exit."""
    need(daemon)
    return subprocess.run([harness.daemon_path(daemon), "-n", "-f", conf] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=20)


DAEMONS = [("allocd", []), ("watcherd", []), ("renderd", ["-p", "haproxy"]),
           ("applyd", ["-p", "haproxy"])]


def minimal_conf(dir, run_dir, extra="", mode=0o600):
    """A configuration with the kubeconfig folder as its only source."""
    os.makedirs(os.path.join(dir, "kc"), exist_ok=True)
    path = os.path.join(dir, "portico.conf")
    with open(path, "w") as f:
        f.write("[portico]\ndomain = priv.test\nrun_dir = %s\nlisten = 127.0.0.1\n"
                "api_port = 20443\nports = 21000-21009\n[store]\npath = %s/store\n"
                "[kubeconfigs]\ndir = %s/kc\n%s" % (run_dir, dir, dir, extra))
    os.chmod(path, mode)
    return path


@pytest.fixture
def work():
    d = tempfile.mkdtemp(prefix="pt-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------ TLS only

PKS_HTTP = "[pks]\nurl = {pks}\nuaa_url = {uaa}\nclient_id = portico\nclient_secret = s3cret\n"


@pytest.mark.parametrize("key", ["url", "uaa_url"])
def test_plain_http_pks_is_a_config_error(work, key):
    """An http:// PKS or UAA URL is refused at load, naming the key, by every
    daemon; watcherd started on it exits before a byte of the secret goes
    out: a plain listener there sees no connection."""
    lsock = socket.socket()
    lsock.bind((testlib.loopback_addr(), 0))
    lsock.listen(8)
    host, port = lsock.getsockname()
    conns = []

    def accept():
        lsock.settimeout(0.2)
        while lsock.fileno() != -1:
            try:
                conns.append(lsock.accept()[0].recv(65536))
            except OSError:
                continue
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        plain = "http://%s:%d" % (host, port)
        urls = {"pks": "https://%s:%d" % (host, port), "uaa": "https://%s:%d" % (host, port)}
        urls["pks" if key == "url" else "uaa"] = plain
        conf = minimal_conf(work, os.path.join(work, "run"), PKS_HTTP.format(**urls))
        for daemon, args in DAEMONS:
            cp = run_n(daemon, conf, *args)
            assert cp.returncode == 1, (daemon, cp.stdout, cp.stderr)
            assert re.search(r"portico\.conf:\d+: %s: not an https:// URL" % key,
                             cp.stderr), cp.stderr
            assert "s3cret" not in cp.stdout + cp.stderr
        proc = testlib.Proc([harness.daemon_path("watcherd"), "-d", "-f", conf],
                            "watcherd", work)
        try:
            testlib.wait_until(lambda: not proc.alive(), 20, "watcherd to refuse its config")
        finally:
            proc.stop()
        assert proc.popen.returncode == 1, proc.log()
        assert "not an https:// URL" in proc.log()
        assert conns == [], conns
    finally:
        lsock.close()
        t.join(2)


class RoguePki(Pki):
    """A CA of a name of its own: OpenSSL looks an issuer up by its subject
    name, and the fleet's CA is CN=portico-test-ca."""

    def __init__(self, dir):
        super().__init__(dir)
        subprocess.run(["openssl", "req", "-x509", "-new", "-key", self.ca[1],
                        "-out", self.ca_cert, "-days", "30", "-subj", "/CN=portico-rogue-ca",
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.ctx = ssl.create_default_context(cafile=self.ca_cert)


def ca_hash(cert):
    return subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", cert], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


def in_store(capath, argv):
    """argv in a mount namespace of its own whose system CA folder
    (/etc/ssl/certs, libcurl's and OpenSSL's default CApath) is capath."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/ssl/certs && exec "$@"', capath] + argv


def test_ca_pinning_is_exclusive(make_fleet):
    """[pks] ca_file, and a kubeconfig's certificate-authority-data, are the
    only CA trusted. The PKS API and UAA present a certificate from another
    CA, one the system's store holds (a throwaway CA in /etc/ssl/certs, in
    a mount namespace of watcherd's own): curl with --cacert trusts it
    there, watcherd refuses it, and UAA never gets a token request (the
    client secret never went out). A kubeconfig cluster whose server is
    that same host is refused too: not one request reaches it."""
    need("watcherd")
    fleet = make_fleet(sources=("pks", "kubeconfigs"))
    fleet.pks.stop()
    rogue = RoguePki(os.path.join(fleet.run_dir, "rogue-pki"))
    fleet.pks = PksSim(os.path.join(fleet.run_dir, "pks-rogue"), rogue, fleet.pks_auth)
    capath = os.path.join(fleet.run_dir, "system-certs")
    os.makedirs(capath)
    shutil.copyfile(rogue.ca_cert, os.path.join(capath, ca_hash(rogue.ca_cert) + ".0"))
    os.chmod(capath, 0o755)
    os.chmod(os.path.join(capath, ca_hash(rogue.ca_cert) + ".0"), 0o644)
    write_kc(fleet, "rogue.yaml", {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "rogue", "cluster": {
            "server": fleet.pks.url, "certificate-authority-data": fleet.pki.ca_data()}}],
        "users": [{"name": "u", "user": {"token": "not-for-a-rogue"}}],
        "contexts": [{"name": "c", "context": {"cluster": "rogue", "user": "u"}}]})
    fleet.write_conf()

    # The control: the rogue CA is in that system store, and only there.
    curl = ["curl", "-sS", "-o", "/dev/null", "--cacert", fleet.pki.ca_cert,
            fleet.pks.url + "/_sim/requests"]
    host = subprocess.run(curl, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert host.returncode == 60, host.stderr          # not trusted on the host
    ns = subprocess.run(in_store(capath, curl), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    assert ns.returncode == 0, ns.stderr               # trusted by default there

    argv = [harness.daemon_path("watcherd"), "-d", "-v", "-f", fleet.conf_path]
    proc = testlib.Proc(in_store(capath, argv), "watcherd", fleet.log_dir, env=fleet.env())
    try:
        testlib.wait_until(lambda: re.search(r"pks: UAA token .*; keeping the routes",
                                             proc.log()) or not proc.alive(), 30,
                           "watcherd to refuse the PKS certificate")
        testlib.wait_until(lambda: re.search(r"rogue: .*(transport error|certificate)",
                                             proc.log()) or not proc.alive(), 30,
                           "watcherd to refuse the rogue cluster's certificate")
        assert proc.alive(), proc.log()
        assert fleet.pks.token_requests() == [], proc.log()
        asked = [k for k in fleet.pks.requests() if "/_sim/" not in k]
        assert asked == [], asked
    finally:
        assert proc.stop(10) == 0, proc.log()


# ------------------------------------------------------------------ secret files

SECRET_MODE = "%s (it holds [pks] client_secret) has mode %04o, which gives group or " \
    "others access to a secret; refused (chmod 600 it)"
WRITE_MODE = "%s has mode %04o: group or others may write it; refused (chmod go-w it)"


@pytest.mark.parametrize("mode,want", [(0o644, SECRET_MODE), (0o640, SECRET_MODE),
                                       (0o604, SECRET_MODE), (0o601, SECRET_MODE),
                                       (0o620, WRITE_MODE), (0o602, WRITE_MODE)])
def test_config_with_secret_readable_by_others(work, mode, want):
    """A configuration holding [pks] client_secret (or password) is refused
    by every daemon when group or others have any access to it, with the
    file, the mode and the fix in the error; at 0600 it is taken, and one
    without a secret may be 0644."""
    https = PKS_HTTP.format(pks="https://127.0.0.1:9021", uaa="https://127.0.0.1:8443")
    conf = minimal_conf(work, os.path.join(work, "run"), https, mode)
    for daemon, args in DAEMONS:
        cp = run_n(daemon, conf, *args)
        assert cp.returncode == 1, (daemon, cp.stdout)
        assert want % (conf, mode) in cp.stderr, cp.stderr
        assert "s3cret" not in cp.stdout + cp.stderr
    os.chmod(conf, 0o600)
    assert run_n("allocd", conf).returncode == 0
    pw = https.replace("client_secret = s3cret", "username = u\npassword = s3cret")
    conf = minimal_conf(work, os.path.join(work, "run"), pw, 0o640)
    cp = run_n("watcherd", conf)
    assert cp.returncode == 1 and "(it holds [pks] password)" in cp.stderr, cp.stderr
    conf = minimal_conf(work, os.path.join(work, "run"), "", 0o644)
    assert run_n("watcherd", conf).returncode == 0


@pytest.mark.parametrize("mode", [0o666, 0o664, 0o646])
def test_config_writable_by_others(work, mode):
    """The configuration names the binaries applyd runs: one that group or
    others may write is refused by every daemon, secret or not."""
    conf = minimal_conf(work, os.path.join(work, "run"), "", mode)
    for daemon, args in DAEMONS:
        cp = run_n(daemon, conf, *args)
        assert cp.returncode == 1, (daemon, cp.stdout)
        assert WRITE_MODE % (conf, mode) in cp.stderr, cp.stderr


# ------------------------------------------------------------------ the run folder

def start_refused(conf, work, daemon, args):
    """Start daemon for real; it must exit 1. Its log."""
    proc = testlib.Proc([harness.daemon_path(daemon), "-d", "-f", conf] + args,
                        daemon, os.path.join(work, "log"))
    try:
        testlib.wait_until(lambda: not proc.alive(), 20, "%s to exit" % daemon)
    finally:
        proc.stop()
    assert proc.popen.returncode == 1, proc.log()
    return proc.log()


@pytest.mark.parametrize("case", ["world-writable", "group-writable", "other-owner",
                                  "symlink"])
def test_run_folder_must_be_ours(work, case):
    """A run folder that others may write in, that another uid owns, or that
    is a symlink, is refused at start with a clear error by every daemon,
    and nothing is created in it (no pid file, no socket)."""
    need(*[d for d, _ in DAEMONS])
    run_dir = os.path.join(work, "run")
    if case == "symlink":
        os.mkdir(os.path.join(work, "elsewhere"), 0o700)
        os.symlink(os.path.join(work, "elsewhere"), run_dir)
    else:
        os.mkdir(run_dir)
        os.chmod(run_dir, {"world-writable": 0o777, "group-writable": 0o770}.get(case, 0o700))
        if case == "other-owner":
            os.chown(run_dir, 65534, 65534)
    conf = minimal_conf(work, run_dir)
    want = {"world-writable": r"%s has mode 0777: group or others may write in it; refused",
            "group-writable": r"%s has mode 0770: group or others may write in it; refused",
            "other-owner": r"%s is owned by uid 65534, not by the uid portico runs as \(0\): "
                           r"refused",
            "symlink": r"%s: not a directory \(a symlink is refused\)"}[case] % re.escape(run_dir)
    for daemon, args in DAEMONS:
        log = start_refused(conf, work, daemon, args)
        assert re.search(r"run folder " + want, log), log
    assert os.listdir(run_dir) == []


def test_no_symlink_followed_in_run_folder(make_fleet):
    """Symlinks planted under the names of every file portico creates in
    the run folder (the pid files' temporary twins, applyd's *.new and
    *.check.new, HAProxy's map files' *.new), pointing at a file outside:
    the fleet starts, a route goes live, and the file outside is untouched."""
    need("allocd", "renderd", "applyd", "watcherd")
    run_dir = tempfile.mkdtemp(prefix="pt-", dir="/tmp")
    victim_dir = tempfile.mkdtemp(prefix="pt-victim-", dir="/tmp")
    try:
        victim = os.path.join(victim_dir, "victim")
        with open(victim, "w") as f:
            f.write("precious\n")
        before = os.stat(victim)
        names = ["allocd.pid.tmp", "renderd-haproxy.pid.tmp", "applyd-haproxy.pid.tmp",
                 "watcherd.pid.tmp", "haproxy.cfg.new", "haproxy.cfg.check.new",
                 "haproxy-ports.map.new", "haproxy-api.map.new"]
        for n in names:
            os.symlink(victim, os.path.join(run_dir, n))
        fleet = make_fleet(run_dir=run_dir)
        pay = payments_cluster(fleet)
        fleet.start()
        pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
        port = fleet.wait_address(pay, NS, "ledger-db")[0]
        fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
        fleet.wait_api(pay.host)
        with open(victim) as f:
            assert f.read() == "precious\n"
        after = os.stat(victim)
        assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
        for n in names:
            assert not os.path.islink(os.path.join(run_dir, n)), n
    finally:
        shutil.rmtree(victim_dir, ignore_errors=True)


# ------------------------------------------------------------------ kubeconfig folder

def write_kc(fleet, name, kc, mode=0o600):
    import yaml
    path = os.path.join(fleet.kubeconfig_dir, name)
    with open(path, "w") as f:
        yaml.safe_dump(kc, f)
    os.chmod(path, mode)
    return path


def write_secret(path, text, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def test_kubeconfig_files_stay_in_their_places(make_fleet):
    """Kubeconfigs that name files outside the folder (by ../, by an
    absolute path, through a symlink in the folder, or are themselves a link
    to a kubeconfig elsewhere) are refused with the file and the key logged,
    and their API server never hears from watcherd, though the file outside
    holds its real token. So are secrets that group or others may read.
    A file under [kubeconfigs] allow_dirs is taken, and that cluster
    (search) is routed."""
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("kubeconfigs",))
    pay = payments_cluster(fleet, register=False)
    search = search_cluster(fleet, register=False)
    kdir = fleet.kubeconfig_dir
    secret = write_secret(os.path.join(fleet.run_dir, "secret-file"), pay.sim.token + "\n")
    allowed = os.path.join(fleet.run_dir, "allowed")
    write_secret(os.path.join(allowed, "search-token"), search.sim.token + "\n")

    def kc(cluster, **user):
        doc = cluster.kubeconfig()
        doc["clusters"][0]["cluster"]["server"] = cluster.sim.url
        doc["users"][0]["user"] = user
        return doc

    write_kc(fleet, "payments.yaml", kc(pay, tokenFile="../secret-file"))
    write_kc(fleet, "evil-abs.yaml", kc(pay, tokenFile=secret))
    os.symlink("../secret-file", os.path.join(kdir, "link-token"))
    write_kc(fleet, "evil-link.yaml", kc(pay, tokenFile="link-token"))
    key = write_secret(os.path.join(fleet.run_dir, "client.key"), "not a key\n")
    write_kc(fleet, "evil-key.yaml", kc(pay, **{"client-certificate-data": pay.fleet.pki.ca_data(),
                                                "client-key": key}))
    doc = kc(pay, token=pay.sim.token)
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]
    doc["clusters"][0]["cluster"]["certificate-authority"] = fleet.pki.ca_cert
    write_kc(fleet, "evil-ca.yaml", doc)
    outside = os.path.join(fleet.run_dir, "outside.yaml")
    write_kc(fleet, "evil-self.yaml", kc(pay, token=pay.sim.token))
    os.rename(os.path.join(kdir, "evil-self.yaml"), outside)
    os.symlink(outside, os.path.join(kdir, "evil-self.yaml"))
    write_secret(os.path.join(kdir, "tokens", "loose"), pay.sim.token, 0o644)
    write_kc(fleet, "loose-token.yaml", kc(pay, tokenFile="tokens/loose"))
    write_kc(fleet, "loose-inline.yaml", kc(pay, token=pay.sim.token), 0o640)
    write_kc(fleet, "search.yaml", kc(search, tokenFile=os.path.join(allowed, "search-token")))

    fleet.write_conf(kubeconfigs={"allow_dirs": "/nonexistent, " + allowed})
    fleet.start_daemons()
    fleet.wait_api(search.host)
    search.annotate("search", "index", **{EXPOSE: "true"})
    port = fleet.wait_address(search, "search", "index")[0]
    fleet.wait_serves(port, search.markers("search", "index", 9200))

    outside_msg = "lies outside the kubeconfig folder and \\[kubeconfigs\\] allow_dirs; refused"
    loose = "has mode %s, which gives group or others access to a secret; refused"
    for f, why in [
            ("payments.yaml", 'tokenFile "../secret-file": ' + outside_msg),
            ("evil-abs.yaml", 'tokenFile "%s": %s' % (re.escape(secret), outside_msg)),
            ("evil-link.yaml", 'tokenFile "link-token": ' + outside_msg),
            ("evil-key.yaml", 'client-key "%s": %s' % (re.escape(key), outside_msg)),
            ("evil-ca.yaml", 'certificate-authority "%s": %s' % (
                re.escape(fleet.pki.ca_cert), outside_msg)),
            ("evil-self.yaml", outside_msg),
            ("loose-token.yaml", 'tokenFile "tokens/loose": the file ' + loose % "0644"),
            ("loose-inline.yaml", "the file " + loose % "0640")]:
        log_has(fleet, "watcherd", r"kubeconfigs: %s: %s" % (re.escape(f), why))
    # search's token file swapped for a link to outside: refused at the
    # next look, and search keeps the token it has
    link = os.path.join(allowed, "search-token.new")
    os.symlink(secret, link)
    os.rename(link, os.path.join(allowed, "search-token"))
    log_has(fleet, "watcherd", r"search: token file \S+/search-token: %s; keeping the "
            r"token we have" % outside_msg)
    search.annotate("search", "query", **{EXPOSE: "true"})
    port = fleet.wait_address(search, "search", "query")[0]
    fleet.wait_serves(port, search.markers("search", "query", 9300))
    # payments' API server never heard from watcherd, by any of them
    asked = [k for k in pay.sim_control("GET", "requests") if "/_sim/" not in k]
    assert asked == [], asked
    assert not fleet.tls_probe(pay.host)
    assert pay.sim.token not in fleet["watcherd"].log()


# ------------------------------------------------------------------ no root

def portico_user():
    """The system user the daemons run as: scripts/deps.sh makes it; made
    here too when missing (useradd --system)."""
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        # another test may make it at the same moment: then that one is it
        cp = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                             USER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            return pwd.getpwnam(USER)
        except KeyError:
            raise AssertionError("useradd %s: %s" % (USER, cp.stdout))


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^Uid:\s+(\d+)", f.read(), re.M).group(1))


def chown_tree(top, uid, gid):
    for d, dirs, files in os.walk(top):
        os.chown(d, uid, gid)
        for f in files:
            os.chown(os.path.join(d, f), uid, gid, follow_symlinks=False)


def test_daemons_run_unprivileged(make_fleet):
    """allocd, renderd, applyd (and the HAProxy it starts) and watcherd run
    as the portico user, which owns the run folder and the store: a route
    and an API route go live, and kubectl works through the shared port."""
    need("allocd", "renderd", "applyd", "watcherd")
    pw = portico_user()
    fleet = make_fleet(run_as=USER)
    pay = payments_cluster(fleet)
    fleet.write_conf()
    chown_tree(fleet.run_dir, pw.pw_uid, pw.pw_gid)
    fleet.start_daemons()
    fleet.wait_api(pay.host)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    port = fleet.wait_address(pay, NS, "ledger-db")[0]
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    out = pay.kubectl_via_portico("get", "namespaces", "-o", "name").stdout
    assert "namespace/payments" in out
    for d in fleet.daemons.values():
        assert uid_of(d.pid) == pw.pw_uid, d.name
    master = fleet.proxy_master()
    assert master and uid_of(master) == pw.pw_uid
    assert os.stat(fleet.store).st_uid == pw.pw_uid
