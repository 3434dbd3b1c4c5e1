"""What renderd and applyd let out, whatever allocd's decisions say.

- A route on a port the configuration does not give out (outside `ports`,
  reserved, the API port, port 0) and a cluster whose masters listen on
  port 0 are left out of every renderer's output and logged; the rest
  renders and passes the proxy's own checker. State files (renderd -T) for
  HAProxy, nginx and Envoy, and end to end through a real nginx fed by a
  stand-in allocd on the bus (FakeAlloc): nginx keeps reloading for the
  other routes.
- A run_dir HAProxy's map() cannot carry is a configuration error.
"""

import json
import os
import re
import shutil
import subprocess

import pytest

import harness
import testlib

C1 = "c1c0ffee-0000-4000-8000-000000000002"
C2 = "d2c0ffee-0000-4000-8000-000000000004"
LISTEN = "192.0.2.10"

CONF = """\
[portico]
domain = k8s.example.test
run_dir = {run_dir}
listen = {listen}
api_port = 443
ports = 21000-21009, 21417
reserved = 21008

[kubeconfigs]
dir = /etc/portico-golden/kubeconfigs

[proxy.edge]
kind = {kind}
"""


def ev(type, seq, **body):
    return {"type": type, "seq": seq, "time": 0, "body": body}


def api_set(seq, cluster, cname, mport, masters=("10.20.0.11",)):
    return ev("API_SET", seq, c=cluster, cn=cname, h="%s.k8s.example.test" % cname,
              m=list(masters), mp=mport)


def port_set(seq, port, name, backends=(("10.20.1.1", 31543, 1),), cluster=C1):
    return ev("PORT_SET", seq, p=port, c=cluster, ns="payments", n=name, r=0,
              b=[list(b) for b in backends])


# What no configuration above allows: outside ports, reserved, the API port, 0.
BAD_PORTS = {80: "outside", 21008: "reserved", 443: "api", 0: "zero", 65535: "top"}


def hostile_state():
    """Two good routes and one good cluster, each bad port a route, and a
    cluster whose masters listen on port 0."""
    evs = [api_set(1, C1, "payments", 8443), api_set(2, C2, "search", 0),
           port_set(3, 21002, "cache"), port_set(4, 21417, "orders-db")]
    for i, (p, name) in enumerate(sorted(BAD_PORTS.items())):
        evs.append(port_set(10 + i, p, "bad-" + name))
    return evs


def write_state(path, events):
    with open(path, "w") as f:
        f.write("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def render(tmp_path, kind, events, listen=LISTEN):
    """renderd -T with CONF for kind: (returncode, stdout text, stderr text)."""
    harness.need("renderd")
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    conf = tmp_path / ("%s.conf" % kind)
    conf.write_text(CONF.format(run_dir=run_dir, kind=kind, listen=listen))
    state = write_state(tmp_path / "state.in", events)
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", str(conf), "-p", "edge",
                         "-T", state], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=60)
    return cp.returncode, cp.stdout.decode(), cp.stderr.decode()


def assert_refusals_logged(err):
    for p, name in BAD_PORTS.items():
        assert re.search(r"route %s/payments/bad-%s/0 on port %d: not a workload "
                         r"port of the configuration; left out" % (C1, name, p), err), \
            (p, err)
    assert "cluster %s (search): master port 0; its API route is left out" % C2 in err, err


def checker(argv):
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return cp.returncode, cp.stdout.decode(errors="replace")


def test_haproxy_leaves_out_bad_ports_and_master_port_0(tmp_path):
    rc, out, err = render(tmp_path, "haproxy", hostile_state())
    assert rc == 0, err
    assert_refusals_logged(err)
    servers = re.findall(r"^\tserver \S+ (\S+)", out, re.M)
    assert "10.20.0.11:8443" in servers and "10.20.1.1:31543" in servers, servers
    assert not [s for s in servers if s.endswith(":0")], servers
    assert "search.k8s.example.test" not in out and C2 not in out
    for p in BAD_PORTS:
        assert "backend p%d\n" % p not in out, p
    # the two good routes, each in its backend; HAProxy accepts the whole
    assert re.search(r"backend p21002\n\t# %s/payments/cache route 0\n\tserver " % C1, out)
    assert re.search(r"backend p21417\n\t# %s/payments/orders-db route 0\n\tserver " % C1,
                     out)
    cfg = tmp_path / "edge.cfg"
    cfg.write_text(out)
    for m in ("ports", "api"):
        (tmp_path / "run" / ("edge-%s.map" % m)).write_text("")
    rc, msg = checker([shutil.which("haproxy") or "/usr/sbin/haproxy", "-c", "-f",
                       str(cfg)])
    assert rc == 0, msg


def test_nginx_leaves_out_bad_ports_and_master_port_0(tmp_path):
    # nginx -t binds: an address of the test's own
    listen = testlib.loopback_addr()
    rc, out, err = render(tmp_path, "nginx", hostile_state(), listen)
    assert rc == 0, err
    assert_refusals_logged(err)
    listens = sorted(int(p) for p in re.findall(r"listen %s:(\d+);" % listen, out))
    assert listens == [443, 21002, 21417], listens
    assert ":0;" not in out and "search.k8s.example.test" not in out and C2 not in out
    cfg = tmp_path / "nginx.conf"
    cfg.write_text(out)
    rc, msg = checker([shutil.which("nginx") or "/usr/sbin/nginx", "-t", "-q",
                       "-p", str(tmp_path / "run"), "-c", str(cfg)])
    assert rc == 0, msg


def test_envoy_leaves_out_bad_ports_and_master_port_0(tmp_path):
    rc, out, err = render(tmp_path, "envoy", hostile_state())
    assert rc == 0, err
    assert_refusals_logged(err)
    docs = {}
    for m in re.finditer(r"^=== (\S+) (\d+)\n", out, re.M):
        docs[m.group(1)] = json.loads(out[m.end():m.end() + int(m.group(2))])
    listeners = docs["lds.json"]["resources"]
    ports = sorted(l["address"]["socket_address"]["port_value"] for l in listeners)
    assert ports == [443, 21002, 21417], ports
    clusters = sorted(c["name"] for c in docs["cds.json"]["resources"])
    assert clusters == ["p21002", "p21417", "sni-payments.k8s.example.test"], clusters
    assert '"port_value": 0' not in out and '"port_value":0' not in out


def test_master_port_0_withdraws_the_cluster_it_replaces(tmp_path):
    """A cluster first routed, then said to listen on port 0: its old masters
    are not kept (the event withdrew them), for every kind."""
    evs = [api_set(1, C1, "payments", 8443), port_set(2, 21002, "cache"),
           api_set(3, C1, "payments", 0)]
    for kind in ("haproxy", "nginx", "envoy"):
        rc, out, err = render(tmp_path, kind, evs)
        assert rc == 0, (kind, err)
        assert "payments.k8s.example.test" not in out and "8443" not in out, kind
        assert "master port 0" in err, (kind, err)
        assert "21002" in out, kind


# ------------------------------------------------------------ configuration

@pytest.mark.parametrize("daemon,args", [("allocd", []), ("renderd", ["-p", "edge"]),
                                         ("applyd", ["-p", "edge"])])
@pytest.mark.parametrize("run_dir", ["/tmp/portico,x", "/tmp/portico)x"])
def test_run_dir_haproxy_map_cannot_carry(tmp_path, daemon, args, run_dir):
    """`,` ends the file argument of HAProxy's map() converter (and `)` the
    converter): such a run_dir is a configuration error naming the key and
    its line, before anything is created."""
    harness.need(daemon)
    conf = tmp_path / "portico.conf"
    conf.write_text(CONF.format(run_dir=run_dir, kind="haproxy", listen=LISTEN))
    cp = subprocess.run([harness.daemon_path(daemon), "-n", "-f", str(conf)] + args,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        timeout=30)
    assert cp.returncode == 1 and cp.stdout == "", (cp.returncode, cp.stdout)
    assert "%s:3: run_dir: not an absolute path" % conf in cp.stderr, cp.stderr
    assert not os.path.exists(run_dir)
