"""The bad-input suite (issue 11), the part that needs no fleet: broken
state files for `renderd -T`, and a bad value of every configuration key
for `allocd -n` and `watcherd -n`. Each case asserts the exact error (exit
1, the file, the line and the reason or key on stderr) and that nothing
was written: no configuration on stdout, no run folder. The cases that
need running daemons are in test_bad_input.py.
"""

import json
import os
import subprocess

import pytest

import harness
from harness import need
from test_config import GOOD, SECRET


# ------------------------------------------------------------------ state files

GOLDEN = os.path.join(harness.ROOT, "tests", "golden")
with open(os.path.join(GOLDEN, "fleet.in")) as _f:
    _FLEET = [json.loads(line) for line in _f]
API_SET = next(e for e in _FLEET if e["type"] == "API_SET")
PORT_SET = next(e for e in _FLEET if e["type"] == "PORT_SET")


def port_set(**over):
    ev = json.loads(json.dumps(PORT_SET))
    for k, v in over.items():
        if k in ("seq", "time", "type"):
            ev[k] = v
        else:
            ev["body"][k] = v
    return json.dumps(ev)


def api_set(**over):
    ev = json.loads(json.dumps(API_SET))
    ev["body"].update(over)
    return json.dumps(ev)


# (id, the third line of a state file, the reason renderd gives for it)
STATE = [
    ("not-json", '{"type": "PORT_SET", ', "not JSON: "),
    ("binary-junk", "\x01\x02\xff\xfe\x00junk", "not JSON: "),
    ("json-array", "[1, 2, 3]", "not an event: want"),
    ("json-string", '"PORT_SET"', "not JSON: "),
    ("seq-negative", port_set(seq=-1), "not an event: want"),
    ("seq-string", port_set(seq="3"), "not an event: want"),
    ("seq-float", port_set(seq=3.5), "not an event: want"),
    ("body-array", json.dumps({"type": "PORT_SET", "seq": 3, "time": 0, "body": []}),
     "not an event: want"),
    ("unknown-type", port_set(type="port_set"), "unknown event type"),
    ("missing-backends", json.dumps({"type": "PORT_SET", "seq": 3, "time": 0,
                                     "body": {k: v for k, v in PORT_SET["body"].items()
                                              if k != "b"}}), "PORT_SET: missing field b"),
    ("duplicate-key", port_set()[:-2] + ', "p": 21001}}', "not JSON: "),
    ("port-string", port_set(p="21000"), "field p: bad value"),
    ("port-65536", port_set(p=65536), "field p: bad value"),
    ("port-negative", port_set(p=-21000), "field p: bad value"),
    ("port-float", port_set(p=21000.0), "field p: bad value"),
    ("port-huge", port_set(p=2 ** 64 + 1), "not JSON: "),
    ("backend-ip-newline", port_set(b=[["10.20.1.1\nserver x", 31543, 1]]), "field b: bad value"),
    ("backend-ip-name", port_set(b=[["evil.example.test", 31543, 1]]), "field b: bad value"),
    ("backend-port-0", port_set(b=[["10.20.1.1", 0, 1]]), "field b: bad value"),
    ("backend-weight-string", port_set(b=[["10.20.1.1", 31543, "1"]]), "field b: bad value"),
    ("backends-not-array", port_set(b="10.20.1.1:31543"), "field b: bad value"),
    ("name-space", port_set(n="orders db"), "field n: bad value"),
    ("name-semicolon", port_set(n="orders;db"), "field n: bad value"),
    ("name-hash", port_set(n="orders#db"), "field n: bad value"),
    ("name-nul", port_set(n="orders\u0000db"), "field n: bad value"),
    ("ns-newline", port_set(ns="payments\nbind :1"), "field ns: bad value"),
    ("name-2mib", port_set(n="a" * (2 << 20)), "field n: bad value"),
    ("host-space", api_set(h="payments .k8s.example.test"), "field h: bad value"),
    ("master-zone", api_set(m=["fe80::1%eth0"]), "field m: bad value"),
    ("master-port-65536", api_set(mp=65536), "field mp: bad value"),
    ("cluster-id-upper", api_set(c="C1C0FFEE"), "field c: bad value"),
    ("deep-nesting", '{"type": "PORT_SET", "x": ' + "[" * 5000 + "]" * 5000 + "}", "not JSON: "),
]


def run_render(state_path, cwd):
    need("renderd")
    cp = subprocess.run([harness.daemon_path("renderd"), "-f",
                         os.path.join(GOLDEN, "portico.conf"), "-T", state_path],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(cwd),
                        timeout=60)
    return cp.returncode, cp.stdout, cp.stderr.decode(errors="replace")


@pytest.mark.parametrize("line,reason", [s[1:] for s in STATE], ids=[s[0] for s in STATE])
def test_state_file(tmp_path, line, reason):
    """renderd -T: exit 1, "renderd: FILE:3: reason" on stderr, and not a
    byte of configuration on stdout, though lines 1 and 2 were good."""
    path = tmp_path / "state.in"
    good = [json.dumps(API_SET), json.dumps(PORT_SET)]
    path.write_bytes(("\n".join(good + [line]) + "\n").encode("utf-8", "surrogatepass"))
    rc, out, err = run_render(str(path), tmp_path)
    assert rc == 1, err
    assert out == b""
    assert err.startswith("renderd: %s:3: %s" % (path, reason)), err
    assert err.count("\n") == 1, err


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_state_file_unreadable(tmp_path, what):
    path = tmp_path / "state.in"
    if what == "directory":
        path.mkdir()
    rc, out, err = run_render(str(path), tmp_path)
    assert rc == 1 and out == b""
    assert err == "renderd: %s: %s\n" % (path, "No such file or directory"
                                          if what == "missing" else "Is a directory"), err


# ------------------------------------------------------------------ configuration

# test_config's good file, with a section for every key of CONFIG below
CONF = GOOD.format(run_dir="{run}", secret=SECRET) + """
[kubeconfigs]
dir = {run}/kubeconfigs

[bus]

[proxy.haproxy]
kind = haproxy

[cluster.shop]
backend = nodeport
"""

# (section, key, bad value): at least one for every key that can be wrong
CONFIG = [
    ("portico", "domain", "Not_A_Domain"), ("portico", "domain", "k8s..example.test"),
    ("portico", "run_dir", "run/portico"), ("portico", "run_dir", "/run/x#y"),
    ("portico", "run_dir", "/run/x;y"), ("portico", "listen", "localhost"),
    ("portico", "listen", "127.0.0.1/8"), ("portico", "listen", "::1%lo"),
    ("portico", "api_port", "0"), ("portico", "api_port", "65536"),
    ("portico", "api_port", "-1"), ("portico", "api_port", "1e3"),
    ("portico", "api_port", "0x10"), ("portico", "api_port", "443x"),
    ("portico", "api_port", "9" * 30), ("portico", "api_port", ""),
    ("portico", "ports", "1000-1100"), ("portico", "ports", "21000-70000"),
    ("portico", "ports", "21010-21000"), ("portico", "ports", "x"),
    ("portico", "reserved", "70000"), ("portico", "reserved", "21000-x"),
    ("portico", "quarantine", "-1"), ("portico", "quarantine", "2592001"),
    ("portico", "quarantine", "10m"), ("portico", "allow_shrink", "2"),
    ("portico", "allow_shrink", "yes"),
    ("store", "map_size_mb", "0"), ("store", "map_size_mb", "1048577"),
    ("store", "compact_records", "999"), ("store", "compact_records", "1000001"),
    ("store", "compact_age", "31536001"), ("store", "compact_age", "1w"),
    ("pks", "url", "ftp://pks.example.test"), ("pks", "url", "pks.example.test"),
    ("pks", "uaa_url", "file:///etc/passwd"), ("pks", "poll_interval", "0"),
    ("pks", "poll_interval", "3601"), ("kubeconfigs", "poll_interval", "0"),
    ("clusters", "backend", "pods"), ("clusters", "backend", "NodePort"),
    ("clusters", "watch_timeout", "4"), ("clusters", "watch_timeout", "3601"),
    ("clusters", "watch_idle", "4"),
    ("bus", "alloc_in", "http://127.0.0.1:5555"), ("bus", "alloc_in", "ipc://"),
    ("bus", "alloc_pub", "tcp://"), ("bus", "alloc_pub", "tcp://127.0.0.1"),
    ("bus", "alloc_sync", "tcp://:5555"), ("bus", "alloc_sync", "inproc://x"),
    ("proxy.haproxy", "kind", "squid"), ("proxy.haproxy", "kind", "HAProxy"),
    ("proxy.haproxy", "listen", "0.0.0.0:443"), ("proxy.haproxy", "pub", "pgm://x"),
    ("proxy.haproxy", "sync", "ipc://"), ("proxy.haproxy", "hard_stop_after", "0"),
    ("proxy.haproxy", "hard_stop_after", "86401"), ("proxy.haproxy", "max_reloads", "0"),
    ("proxy.haproxy", "max_reloads", "101"), ("proxy.haproxy", "maxconn", "15"),
    ("proxy.haproxy", "fd_limit", "1023"), ("proxy.haproxy", "fd_limit", "16777217"),
    ("proxy.haproxy", "live", "2"), ("proxy.haproxy", "live", "true"),
    ("cluster.shop", "backend", "pods"),
    ("portico", "colour", "blue"), ("cluster.shop", "watch_timeout", "30"),
]
# a key given twice, each value good alone: which one was meant is not guessed
TWICE = [("portico", "api_port", "20444"), ("proxy.haproxy", "kind", "nginx"),
         ("pks", "poll_interval", "2")]


def config_id(c):
    v = c[2].replace("\n", "\\n") or "empty"
    return "%s.%s=%s" % (c[0], c[1], v if len(v) < 20 else v[:12] + "...")


def check_config(tmp_path, daemon, section, key, value, twice):
    """DAEMON -n with key = value added to section (after the key's own
    line when twice): exit 1, nothing on stdout, and one line on stderr
    naming the file, the added line and the key; no secret in it, nothing
    created."""
    need(daemon)
    run = tmp_path / "run"
    lines = CONF.format(run=run).splitlines()
    at = lines.index("[%s]" % section) + 1
    if twice:
        at = [i for i in range(at, len(lines)) if lines[i].startswith(key + " =")][0] + 1
    lines.insert(at, "%s = %s" % (key, value))
    path = tmp_path / "portico.conf"
    path.write_text("\n".join(lines) + "\n")
    cp = subprocess.run([harness.daemon_path(daemon), "-n", "-f", str(path)],
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=30)
    assert cp.returncode == 1, cp.stdout
    assert cp.stdout == ""
    assert cp.stderr.startswith("%s: %s:%d: %s: " % (daemon, path, at + 1, key)), cp.stderr
    assert cp.stderr.count("\n") == 1, cp.stderr
    assert SECRET not in cp.stderr
    assert not run.exists()
    return cp.stderr


@pytest.mark.parametrize("daemon", ["allocd", "watcherd"])
@pytest.mark.parametrize("section,key,value", CONFIG, ids=[config_id(c) for c in CONFIG])
def test_config_value(tmp_path, daemon, section, key, value):
    check_config(tmp_path, daemon, section, key, value, twice=False)


@pytest.mark.parametrize("daemon", ["allocd", "watcherd"])
@pytest.mark.parametrize("section,key,value", TWICE, ids=[config_id(c) for c in TWICE])
def test_config_key_twice(tmp_path, daemon, section, key, value):
    err = check_config(tmp_path, daemon, section, key, value, twice=True)
    assert err.rstrip().endswith("given twice in [%s]" % section), err
