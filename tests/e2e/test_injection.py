"""Config injection, end to end: hostile values in everything watcherd reads
from outside (PKS clusters, kubeconfig files, VirtualServices, nodes) are
refused with a log line or a portico.dev/error write-back, watcherd goes
on, the rest of the fleet is routed, and the configuration HAProxy serves
holds no trace of them and passes `haproxy -c`.

Every hostile value carries the marker "pwn", which nothing valid in the
fleet contains: a value that got through whole, cut short at a NUL or
otherwise "cleaned", would leave it in the config, a log, or an annotation.
The event-level side is tests/golden/test_state_injection.py.
"""

import json
import os
import re
import subprocess

import yaml

import harness
import testlib
from harness import ADDRESS, DOMAIN, ERROR, EXPOSE, PORT, need

MARK = "pwn"
NS = "shop"
INVALID_NAME = "an object with an invalid name was ignored"
NUL_OBJECT = "an object with a NUL byte"


def exposed(name, ns=NS, host="db", port=5432, weight=None, ann=None):
    """A VirtualService exposed on the shop's db Service (or on host)."""
    return harness.virtualservice(name, ns, [[harness.dest(host, port, weight)]],
                                  annotations=dict({EXPOSE: "true"}, **(ann or {})))


# Valid names, hostile contents: each is refused with a reason written back.
REFUSED = {
    "port-newline": (exposed("port-newline", ann={PORT: "21000\n#pwn"}), PORT),
    "port-space": (exposed("port-space", ann={PORT: "21000 pwn"}), PORT),
    "port-fullwidth": (exposed("port-fullwidth", ann={PORT: "\uff12\uff11pwn"}), PORT),
    "port-brace": (exposed("port-brace", ann={PORT: "{pwn};"}), PORT),
    "dest-newline": (exposed("dest-newline", host="db\n\tbind :1 #pwn"), "DNS name"),
    "dest-space": (exposed("dest-space", host="db #pwn"), "DNS name"),
    "dest-brace": (exposed("dest-brace", host="db{pwn}"), "DNS name"),
    "dest-semicolon": (exposed("dest-semicolon", host="db;pwn"), "DNS name"),
    "dest-quote": (exposed("dest-quote", host='db"pwn'), "DNS name"),
    "dest-backslash": (exposed("dest-backslash", host="db\\pwn"), "DNS name"),
    "dest-cyrillic": (exposed("dest-cyrillic", host="d\u0431.pwn"), "DNS name"),
    "dest-overlong": (exposed("dest-overlong", host="pwn" + "a" * 300), "DNS name"),
    "dest-port-text": (harness.virtualservice("dest-port-text", NS, [[{
        "destination": {"host": "db", "port": {"number": "5432\npwn"}}}]],
        annotations={EXPOSE: "true"}), "port.number"),
}

# Hostile names and namespaces: ignored, with a log line; nothing to write
# back to (a PATCH would carry the name).
IGNORED = [
    exposed("pwn-newline\nlisten x"), exposed("pwn space"), exposed("pwn;{}"),
    exposed("pwn-\u0430"), exposed("pwn" + "a" * 300), exposed("Pwn-upper"),
    exposed("web", ns="shop\npwn"), exposed("web", ns="pwn ns"),
]


def nul(fleet):
    """NUL bytes, where C would cut a string short into something valid: a
    port in the range, the db Service, the name of the db VirtualService."""
    return [exposed("nul-port", ann={PORT: "%d\u0000pwn" % fleet.port_lo}),
            exposed("nul-dest", host="db\u0000.pwn"),
            exposed("db\u0000pwn")]


def pks_hostile(fleet, good):
    """PKS clusters whose uuid, name or master IPs are hostile: not routed."""
    kc = good.kubeconfig()
    base = good.pks_cluster()
    bad = [dict(base, name="pwn\nx"), dict(base, name="pwn x"),
           dict(base, name="pwn;{}"), dict(base, name="pwn-\u0430"),
           dict(base, name="pwn-" + "a" * 70), dict(base, uuid="pwn uuid"),
           dict(base, uuid="pwn\n"), dict(base, uuid="Pwn-upper"),
           dict(base, name="m1", kubernetes_master_ips=["10.0.0.1\n#pwn"]),
           dict(base, name="m2", kubernetes_master_ips=["10.0.0.1 pwn"]),
           dict(base, name="m3", kubernetes_master_ips=["::1%pwn"]),
           dict(base, name="m4", kubernetes_master_ips=["pwn.example.test"])]
    for i, c in enumerate(bad):
        if c["uuid"] == base["uuid"]:
            c["uuid"] = "%s-%d" % (base["uuid"][:-3], 100 + i)
        fleet.pks.put_cluster(c, kc)
    # A hostile master host is not used (the SNI name falls back to
    # <name>.<domain>), and a hostile server URL from binds is refused.
    kc = json.loads(json.dumps(kc))
    kc["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1\n#pwn"
    fleet.pks.put_cluster(dict(base, uuid=base["uuid"][:-3] + "999", name="badhost",
                               parameters=dict(base["parameters"],
                                               kubernetes_master_host="api.pwn x." + DOMAIN)),
                          kc)
    fleet.pks.put_cluster(dict(base, uuid=base["uuid"][:-3] + "998", name="nul\u0000pwn"),
                          good.kubeconfig())


def kubeconfig_hostile(fleet, good):
    """Kubeconfig files: hostile file names (ignored), and hostile server
    URLs (refused, or reduced to a host and a port that are valid)."""
    kc = good.kubeconfig()

    def put(name, server):
        doc = json.loads(json.dumps(kc))
        doc["clusters"][0]["cluster"]["server"] = server
        with open(os.path.join(fleet.kubeconfig_dir, name), "w") as f:
            yaml.safe_dump(doc, f)
    for name in ("pwn x.yaml", "pwn\nx.yaml", "pwn-\u0430.yaml", "Pwn.yaml", "pwn;.json"):
        put(name, "https://127.0.0.1:1")
    put("kc-newline.yaml", "https://127.0.0.1:1\n#pwn")
    put("kc-host.yaml", "https://pwn host:6443")
    put("kc-zone.yaml", "https://[::1%pwn]:6443")
    put("kc-port.yaml", "https://127.0.0.1:6443pwn")
    put("kc-quote.yaml", 'https://127.0.0.1:1/"pwn')
    # Whatever follows the host and port never reaches a config (at an
    # address backends may have: 127.0.0.1 itself is refused as a master).
    put("kc-tail.yaml", "https://%s:1/#{pwn};" % testlib.loopback_addr())


def assert_clean(fleet, *clusters):
    """No trace of a hostile value in the config, the logs or any annotation,
    and HAProxy accepts the config."""
    cfg_path = os.path.join(fleet.run_dir, harness.HAPROXY_NAME + ".cfg")
    with open(cfg_path) as f:
        cfg = f.read()
    assert MARK not in cfg.lower(), cfg
    for name in ("watcherd", "allocd", "renderd", "applyd"):
        lines = fleet[name].log().splitlines()
        # an ignored object is named, each unusual byte a '?' and cut short
        named = [line.split(INVALID_NAME + ": ", 1)[1] for line in lines
                 if INVALID_NAME + ": " in line]
        for what in named:
            assert re.fullmatch(r"[A-Za-z]+ [A-Za-z0-9._?()-]*/?[A-Za-z0-9._?()-]{1,71}",
                                what), what
        log = "\n".join(line for line in lines if INVALID_NAME not in line)
        assert MARK not in log.lower(), "%s logged a hostile value:\n%s" % (
            name, "\n".join(line for line in log.splitlines() if MARK in line.lower()))
    for c in clusters:
        for vs in c.sim.get(harness.VS_API + "/virtualservices")["items"]:
            for k, v in (vs["metadata"].get("annotations") or {}).items():
                if k in (ADDRESS, ERROR):
                    assert MARK not in v.lower(), (vs["metadata"]["name"], k, v)
    cp = subprocess.run(["haproxy", "-c", "-f", cfg_path], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, timeout=30)
    assert cp.returncode == 0, cp.stdout.decode(errors="replace")
    return cfg


def test_hostile_values_never_reach_the_config(make_fleet):
    need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet(sources=("pks", "kubeconfigs"))
    vss = [exposed("db"), exposed("cache", weight=100)]
    vss += [vs for vs, _ in REFUSED.values()] + IGNORED + nul(fleet)
    vss.append(exposed("addr-hostile", ann={ADDRESS: "shop.%s:21000\n#pwn" % DOMAIN,
                                            ERROR: "pwn {\n}"}))
    shop = fleet.add_cluster("shop", [("db", NS, [5432])], vss)
    pks_hostile(fleet, shop)
    kubeconfig_hostile(fleet, shop)
    fleet.start()
    db_markers = shop.markers(NS, "db", 5432)

    # The good objects of the same cluster are routed and serve.
    fleet.wait_api(shop.host)
    (port,) = fleet.wait_address(shop, NS, "db")
    fleet.wait_serves(port, db_markers)
    fleet.wait_address(shop, NS, "cache")
    # An address and an error that were hostile are replaced by true ones.
    fleet.wait_address(shop, NS, "addr-hostile")
    fleet.wait_no_annotation(shop, NS, "addr-hostile", ERROR)
    # Each hostile content is refused, with a reason written back.
    for name, (_, why) in REFUSED.items():
        err = fleet.wait_annotation(shop, NS, name, ERROR)
        assert why in err, (name, err)
        assert ADDRESS not in shop.annotations(NS, name), name
    # The sanitized clusters are routed by their valid parts only.
    cfg_path = os.path.join(fleet.run_dir, harness.HAPROXY_NAME + ".cfg")
    testlib.wait_until(lambda: fleet._check_alive() or all(
        "%s.%s" % (n, DOMAIN) in (harness._read(cfg_path) or "")
        for n in ("badhost", "kc-tail")), 30, "badhost and kc-tail routed")

    cfg = assert_clean(fleet, shop)
    # Routed: the good cluster, the two sanitized ones, three ports; and
    # nothing got an address by being read cut short at a NUL.
    sni = sorted(line[len("\t# sni "):] for line in cfg.splitlines()
                 if line.startswith("\t# sni "))
    assert sni == sorted("%s.%s" % (n, DOMAIN) for n in ("badhost", "kc-tail", "shop")), sni
    assert len(harness.haproxy_ports(cfg)) == 3, cfg   # db, cache, addr-hostile
    for name in ("nul-port", "nul-dest"):
        ann = shop.annotations(NS, name)
        assert ADDRESS not in ann and ERROR not in ann, (name, ann)

    wlog = fleet["watcherd"].log()
    # each hostile name is ignored, and named in the log safely
    for what in ("VirtualService shop/pwn-newline?listen?x", "VirtualService shop/pwn?space",
                 "VirtualService shop/pwn???", "VirtualService shop/pwn-??",
                 "VirtualService shop/Pwn-upper", "VirtualService shop?pwn/web",
                 "VirtualService pwn?ns/web",
                 "VirtualService shop/pwn" + "a" * 65 + "..."):
        assert "%s: %s\n" % (INVALID_NAME, what) in wlog, what
    assert NUL_OBJECT in wlog
    assert "badhost: binds: server is not an https:// URL" in wlog
    for f in ("kc-newline.yaml", "kc-quote.yaml"):
        assert "kubeconfigs: %s: server is not an https:// URL" % f in wlog, f
    for f in ("kc-host.yaml", "kc-zone.yaml", "kc-port.yaml"):
        assert "kubeconfigs: %s: server URL has no valid host and port" % f in wlog, f
    assert wlog.count("pks: 13 clusters refused: ") == 1, wlog

    # The watch path: hostile objects created and changed while watched.
    shop.create(exposed("late-dest", host="db\n#pwn"))
    shop.create(exposed("late-nul", ann={PORT: "%d\u0000pwn" % fleet.port_hi}))
    shop.annotate(NS, "cache", **{PORT: "%d\npwn" % fleet.port_hi})
    named_ip = testlib.loopback_addr()
    for n, ip in (("pwn\nnode", named_ip), ("ip-newline", "10.9.9.9\npwn"),
                  ("ip-zone", "fe80::1%pwn"), ("ip-space", "10.9.9.9 pwn")):
        status, body = shop.sim.request("POST", "/api/v1/nodes", harness.node(n, ip))
        assert status == 201, body
    # A good node after them: once it is a backend, they were all seen.
    good_ip = testlib.loopback_addr()
    status, body = shop.sim.request("POST", "/api/v1/nodes",
                                    harness.node("shop-worker-9", good_ip))
    assert status == 201, body
    testlib.wait_until(lambda: fleet._check_alive() or
                       "%s:" % good_ip in (harness._read(cfg_path) or ""), 30,
                       "the new node in the config")
    assert "DNS name" in fleet.wait_annotation(shop, NS, "late-dest", ERROR)
    assert PORT in fleet.wait_annotation(shop, NS, "cache", ERROR)
    assert fleet["watcherd"].log().count(NUL_OBJECT) > wlog.count(NUL_OBJECT)
    assert ADDRESS not in shop.annotations(NS, "late-nul")
    cfg = assert_clean(fleet, shop)
    # No hostile node is a backend; the good ones still serve.
    assert "%s:" % named_ip not in cfg and "10.9.9.9" not in cfg, cfg
    fleet.wait_serves(port, db_markers)
    assert fleet["watcherd"].alive()
