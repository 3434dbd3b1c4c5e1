"""UAA's password grant (issue 3): with [pks] username and password,
watcherd gets its token as that user, the client authenticated by HTTP
Basic with an empty secret (the PKS CLI's public client pks_cli). A
cluster is routed as with client credentials; a wrong password is a clear
log line and nothing worse; the password is never printed, logged or
stored anywhere."""

import os
import subprocess

import harness
import testlib
from harness import need

USER = "alice@corp.example"
# What form encoding and INI parsing treat specially: an unescaped '&', '='
# or '+' would cut or change it on the way to UAA.
PASSWORD = "Tr1cky pa&ss=w+rd%2F:x"
WRONG = "not-alices-Password"
AUTH = {"client_id": "pks_cli", "client_secret": "", "username": USER,
        "password": PASSWORD}


def vs_names(cluster):
    out = cluster.kubectl_via_portico("get", "virtualservices", "-A", "-o", "name").stdout
    return sorted(line.split("/")[-1] for line in out.split())


def files_holding(top, needles, skip):
    """Every file under top (but skip) whose bytes hold one of needles."""
    found = []
    for d, _, files in os.walk(top):
        for f in files:
            path = os.path.join(d, f)
            if path == skip or os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as fp:
                    data = fp.read()
            except OSError:
                continue
            found += ["%s holds %r" % (path, n) for n in needles if n.encode() in data]
    return found


def test_password_grant(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(pks_auth=AUTH)
    pay = harness.payments_cluster(fleet)
    search = harness.search_cluster(fleet, register=False)
    fleet.start()

    # Routed: the real kubectl reaches the cluster's API through HAProxy.
    fleet.wait_api(pay.host)
    assert vs_names(pay) == ["cache", "ghost", "ledger-db", "orders-db", "reports", "web"]
    got = fleet.pks.token_requests()
    assert got, "no token request"
    assert all(r == {"grant_type": "password", "username": USER, "client_id": "pks_cli",
                     "status": 200} for r in got), got

    # Every token revoked: the 401 renews it once, by the same grant.
    n = len(got)
    fleet.pks.control("POST", "/_sim/expire-tokens")
    search.register()
    fleet.wait_api(search.host)
    got = fleet.pks.token_requests()
    assert len(got) > n and got[n]["grant_type"] == "password" and \
        got[n]["username"] == USER and got[n]["status"] == 200, got

    # -n names the user, hides the password.
    cp = subprocess.run([harness.daemon_path("watcherd"), "-n", "-f", fleet.conf_path],
                        capture_output=True, text=True, timeout=20)
    assert cp.returncode == 0, cp.stderr
    assert "username = %s\n" % USER in cp.stdout
    assert "password = (set, not shown)\n" in cp.stdout
    assert PASSWORD not in cp.stdout + cp.stderr

    # A wrong password: a line that says whose credentials UAA refused,
    # watcherd lives on, and the routes it had stay.
    fleet["watcherd"].stop()
    fleet.write_conf(pks={"password": WRONG})
    n = len(fleet.pks.token_requests())
    fleet["watcherd"].start()
    testlib.wait_until(lambda: len([r for r in fleet.pks.token_requests()[n:]
                                    if r["status"] == 401]) >= 2 or fleet._check_alive(),
                       20, "two refused token requests")
    assert fleet["watcherd"].alive()
    log = fleet["watcherd"].log()
    assert 'pks: UAA token (password grant for user "%s"): HTTP 401, credentials ' \
        'refused; keeping the routes we have' % USER in log, harness.tail(log, 30)
    assert fleet.tls_probe(pay.host) and fleet.tls_probe(search.host)

    # Neither password, nor its form encoding, anywhere: logs (the
    # simulators' too), the store, the proxy's configuration.
    fleet.write_conf()
    needles = [PASSWORD, WRONG, "pa%26ss%3Dw%2Brd"]
    assert files_holding(fleet.run_dir, needles, fleet.conf_path) == []
