"""renderd's Envoy target, checked against Envoy's documented v3 API.

Envoy cannot run on this machine, so nothing here (or anywhere in the
suite) starts one: the output is held to the golden files (test_golden.py)
and, here, to the fields Envoy's v3 API documents for file-based dynamic
configuration (the `path_config_source` of a ConfigSource, Listener,
FilterChainMatch.server_names, the tls_inspector listener filter, the
tcp_proxy network filter, Cluster, ClusterLoadAssignment, LbEndpoint).

Each envoy_* case is split into its three files exactly as applyd splits it
(a "=== <name> <bytes>" line before each), every file must be JSON, and the
listeners and clusters must be what the state says: the state is replayed
here independently of renderd (API hosts, ports and their weighted
backends) and compared with what the files route.

The hostile values of test_state_injection.py (quotes, backslashes,
newlines and the rest) are refused with the Envoy configuration too, and a
refusal reason full of JSON's punctuation (accepted, never rendered) leaves
the files valid JSON and unchanged.
"""

import configparser
import ipaddress
import json
import os
import re

import pytest

from test_golden import CASES, HERE, conf_of, kind_of, render_case, renderd, write
import test_state_injection as inj
from testlib import events as E  # noqa: E402  (on sys.path: test_golden)

ENVOY_CASES = [c for c in CASES if kind_of(c) == "envoy"]
FILES = ["bootstrap.json", "cds.json", "lds.json"]
T_LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
T_CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
T_TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
T_TLS_INSPECTOR = ("type.googleapis.com/"
                   "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")


def split(text):
    """{name: bytes} of an Envoy text; asserts the framing is exact: an
    optional comment line, each file once in order, nothing after."""
    if text.startswith(b"# "):
        text = text[text.index(b"\n") + 1:]
    out = {}
    for name in FILES:
        m = re.match(rb"=== (\S+) (\d+)\n", text)
        assert m and m.group(1).decode() == name, (name, text[:80])
        n = int(m.group(2))
        body = text[m.end():m.end() + n]
        assert len(body) == n and body.endswith(b"\n"), name
        out[name] = body
        text = text[m.end() + n:]
    assert text == b"", "bytes after the last file: %r" % text[:80]
    return out


def documents(text):
    return {name: json.loads(body) for name, body in split(text).items()}


def conf(case):
    ini = configparser.ConfigParser(inline_comment_prefixes=(" ;",))
    ini.read(conf_of(case))
    (px,) = [s for s in ini.sections() if s.startswith("proxy.")]
    return {"run_dir": ini.get("portico", "run_dir"), "listen": ini.get("portico", "listen"),
            "api_port": ini.getint("portico", "api_port"), "proxy": px[len("proxy."):]}


def replay(case, sni=None):
    """The state a case ends in: {cluster id: host}, {port: backends};
    and in sni, when given, {TLSRoute hostname: backends}."""
    api, ports = {}, {}
    sni = {} if sni is None else sni
    with open(os.path.join(HERE, case + ".in")) as f:
        for line in f:
            if not line.strip():
                continue
            ev = json.loads(line)
            b = ev["body"]
            if ev["type"] == "API_SET":
                api[b[E.F_CLUSTER]] = (b[E.F_HOST], b[E.F_MASTERS], b[E.F_MPORT])
            elif ev["type"] == "API_DEL":
                api.pop(b[E.F_CLUSTER], None)
            elif ev["type"] == "PORT_SET":
                ports[b[E.F_PORT]] = b[E.F_BACKENDS]
            elif ev["type"] == "PORT_FREE":
                ports.pop(b[E.F_PORT], None)
            elif ev["type"] == "SNI_SET":
                sni[b[E.F_HOST]] = b[E.F_BACKENDS]
            elif ev["type"] == "SNI_DEL":
                sni.pop(b[E.F_HOST], None)
    return api, ports


def merged(backends):
    """(ip, port, weight) with the weights of one address summed, weight 0
    left out: one endpoint an address, Envoy's weights start at 1."""
    want = {}
    for ip, bport, w in backends:
        want[(ip, bport)] = want.get((ip, bport), 0) + w
    return sorted((ip, bport, w) for (ip, bport), w in want.items() if w > 0)


def endpoints(cluster):
    """[(ip, port, weight)] of a cluster, after checking their shape."""
    la = cluster["load_assignment"]
    assert la["cluster_name"] == cluster["name"]
    out = []
    for locality in la["endpoints"]:
        assert locality["lb_endpoints"], cluster["name"]
        for ep in locality["lb_endpoints"]:
            sa = ep["endpoint"]["address"]["socket_address"]
            ipaddress.ip_address(sa["address"])
            assert 1 <= sa["port_value"] <= 65535
            w = ep["load_balancing_weight"]
            assert isinstance(w, int) and w >= 1, (cluster["name"], w)
            out.append((sa["address"], sa["port_value"], w))
    return out


def check_bootstrap(boot, c):
    assert boot["node"] == {"id": c["proxy"], "cluster": "portico"}
    dyn = boot["dynamic_resources"]
    for x in ("lds", "cds"):
        src = dyn["%s_config" % x]
        assert src["resource_api_version"] == "V3"
        assert src["path_config_source"]["path"] == "%s/%s-%s.json" % (
            c["run_dir"], c["proxy"], x)


def check_listener(lis, c, clusters):
    assert lis["@type"] == T_LISTENER and lis["name"]
    sa = lis["address"]["socket_address"]
    assert sa["address"] == c["listen"]
    assert isinstance(sa["port_value"], int) and 1 <= sa["port_value"] <= 65535
    assert lis["filter_chains"], lis["name"]
    for fc in lis["filter_chains"]:
        (f,) = fc["filters"]
        assert f["name"] == "envoy.filters.network.tcp_proxy"
        tc = f["typed_config"]
        assert tc["@type"] == T_TCP_PROXY and tc["stat_prefix"]
        assert tc["cluster"] in clusters, (lis["name"], tc["cluster"])
    return sa["port_value"]


def check_case(case, text):
    c = conf(case)
    docs = documents(text)
    check_bootstrap(docs["bootstrap.json"], c)
    for name in ("cds.json", "lds.json"):
        assert re.fullmatch(r"[0-9a-f]{16}", docs[name]["version_info"])
        assert set(docs[name]) == {"version_info", "resources"}
    clusters = {}
    for cl in docs["cds.json"]["resources"]:
        assert cl["@type"] == T_CLUSTER and cl["name"] not in clusters
        assert cl["type"] == "STATIC" and cl["lb_policy"] == "ROUND_ROBIN"
        assert re.fullmatch(r"\d+s", cl["connect_timeout"])
        clusters[cl["name"]] = endpoints(cl)
    listeners = docs["lds.json"]["resources"]
    by_port = {}
    for lis in listeners:
        port = check_listener(lis, c, clusters)
        assert port not in by_port, "two listeners on port %d" % port
        by_port[port] = lis
    assert len({lis["name"] for lis in listeners}) == len(listeners)

    sni = {}
    api, ports = replay(case, sni)
    # The API port: SNI by the TLS inspector, one chain per host.
    hosts = {}
    for cid in sorted(api):     # the lowest cluster id has a host two claim
        hosts.setdefault(api[cid][0], api[cid])
    # a TLSRoute's hostname that is a cluster's API host is not rendered
    tls = {h: b for h, b in sni.items() if h not in hosts}
    if not hosts and not tls:
        assert c["api_port"] not in by_port
    else:
        lis = by_port[c["api_port"]]
        assert lis["name"] == "api"
        assert lis["listener_filters"] == [{
            "name": "envoy.filters.listener.tls_inspector",
            "typed_config": {"@type": T_TLS_INSPECTOR}}]
        names = [fc["filter_chain_match"]["server_names"] for fc in lis["filter_chains"]]
        assert all(len(n) == 1 for n in names)
        assert sorted(n[0] for n in names) == sorted(list(hosts) + list(tls))
        for fc in lis["filter_chains"]:
            (host,) = fc["filter_chain_match"]["server_names"]
            cluster = fc["filters"][0]["typed_config"]["cluster"]
            if host in tls:
                assert cluster == "tls-" + host
                assert sorted(clusters[cluster]) == merged(tls[host])
                continue
            assert cluster == "sni-" + host
            _, masters, mport = hosts[host]
            assert sorted(clusters[cluster]) == sorted({(m, mport, 1) for m in masters})
    # Each routed port: a listener to cluster p<port>, weights merged by
    # address, weight 0 left out (Envoy's weights start at 1).
    assert sorted(p for p in by_port if p != c["api_port"]) == sorted(ports)
    for p, backends in ports.items():
        tc = by_port[p]["filter_chains"][0]["filters"][0]["typed_config"]
        assert by_port[p]["name"] == tc["cluster"] == "p%d" % p
        want = {}
        for ip, bport, w in backends:
            want[(ip, bport)] = want.get((ip, bport), 0) + w
        assert sorted(clusters["p%d" % p]) == sorted(
            (ip, bport, w) for (ip, bport), w in want.items() if w > 0)
    assert set(clusters) == ({"sni-" + h for h in hosts} | {"tls-" + h for h in tls}
                             | {"p%d" % p for p in ports})
    return docs


def test_envoy_cases_exist():
    assert {"envoy_empty", "envoy_api_many", "envoy_ports_weighted",
            "envoy_ipv6_listen", "envoy_ipv6_backends", "envoy_sni"} <= set(ENVOY_CASES)


@pytest.mark.parametrize("case", ENVOY_CASES)
def test_envoy_documented_fields(case, tmp_path):
    check_case(case, render_case(case, tmp_path))


def test_version_follows_the_resources(tmp_path):
    """version_info is a hash of the resources: the same in any generation
    for the same routes, another when they change."""
    a = documents(render_case("envoy_fleet", tmp_path))
    b = documents(render_case("envoy_removal", tmp_path))
    e = documents(render_case("envoy_empty", tmp_path))
    assert e["cds.json"]["version_info"] == e["lds.json"]["version_info"]
    for name in ("cds.json", "lds.json"):
        assert a[name]["version_info"] != b[name]["version_info"]


ENVOY_CONF = os.path.join(HERE, "envoy.conf")


@pytest.mark.parametrize("what,base,key,values", inj.FIELDS, ids=[f[0] for f in inj.FIELDS])
def test_hostile_field_refused_for_envoy(what, base, key, values, tmp_path):
    """What breaks a JSON string (quotes, backslashes, control characters)
    never gets as far as the Envoy renderer: the line is refused and
    nothing is printed."""
    for v in values:
        path = inj.state_with(tmp_path, inj.with_field(base, key, v), True)
        rc, out, err = renderd(ENVOY_CONF, path, tmp_path)
        assert rc == 1 and out == b"", "%r accepted in %s" % (v[:40], key)


def test_free_text_leaves_the_json_valid(tmp_path):
    """A reason holding JSON's punctuation is accepted (free text; quotes
    and backslashes are refused even there) and never rendered: the files
    are the fleet's, and valid JSON."""
    reason = "tcp[0]: destination x #{}; ' $ %s: {a: [1]}, ]} no such service"
    lines = [json.dumps(e) for e in inj.FLEET]
    lines.insert(inj.LINE - 1, json.dumps(inj.with_field(inj.REFUSED, "why", reason)))
    path = write(tmp_path / "state.in", "\n".join(lines) + "\n")
    rc, out, err = renderd(ENVOY_CONF, path, tmp_path)
    assert rc == 0 and err == b""
    with open(os.path.join(HERE, "envoy_fleet.out"), "rb") as f:
        assert out == f.read()
    check_case("envoy_fleet", out)
