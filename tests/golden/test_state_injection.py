"""Config injection at the event level: a hostile value in any field that
comes from outside is refused by event_from_json(), the validators the bus
uses too (tests/unit/test_event.c runs the same values through
event_decode), so it cannot reach a renderer.

Each case takes the golden fleet state, replaces one line with the same
event carrying one hostile value, and runs `renderd -T`: it must exit 1,
name the line and the field, echo nothing of the value, and print no
config at all. The end-to-end side is tests/e2e/test_injection.py.
"""

import json
import os

import pytest

from test_golden import HERE, renderd, write
from testlib import events as E  # noqa: E402  (on sys.path: test_golden)

CONF = os.path.join(HERE, "portico.conf")
LINE = 4                # the line replaced

# What means something in an HAProxy, nginx or Envoy config, a log line or
# JSON; control characters; Unicode look-alikes and invisibles.
SPECIALS = ["\n", "\r", "\t", "\x00", "\x7f", "#", " ", '"', "'", "{", "}", ";", "\\",
            "$", "%", "/", ",", ":", "[", "]", "=", "`",
            "\u0430",       # Cyrillic a
            "\uff50",       # fullwidth p
            "\u200b",       # zero-width space
            "\u202e",       # right-to-left override
            "\u00e9"]


def names(kind):
    """Hostile values for a name of this kind: each special inside a name
    that is valid without it, then names too long for the kind."""
    out = ["pay%sments" % c for c in SPECIALS] + ["payments\n", "\npayments"]
    longest = {"label": 63, "id": 63, "host": 253, "name": 253}[kind]
    out += ["a" * (longest + 1), "a" * 100000, ""]
    if kind in ("host", "name"):
        out += ["payments..example.test", ".payments", "payments.",
                "Payments.k8s.example.test"]
    if kind == "host":
        # a label past 63 is no DNS name (an object's name may hold one)
        out += ["a" * 64 + ".example.test"]
    elif kind != "name":
        out += ["a.b", "Payments"]
    if kind == "label":
        out += ["-payments", "payments-"]
    return out


def ips():
    out = ["10.20.0.1" + c for c in SPECIALS] + [" 10.20.0.1", "\n10.20.0.1"]
    out += ["10.20.\uff10.1", "fd00::1%lo", "[fd00::1]", "10.20.0.1:8443", "10.20.0.1/32",
            "payments.k8s.example.test", "1" * 100000, "", "010.20.0.1", "10.20.0"]
    return out


def text():
    """`why` is free text, never rendered: only what breaks a line or a JSON
    string is refused there (and what is not ASCII)."""
    return ["no\nsuch", "no\rsuch", "no\tsuch", "no\x00such", "say \"no\"", "a\\b",
            "caf\u00e9", "\u202eecivres", "x" * 256]


with open(os.path.join(HERE, "fleet.in")) as f:
    FLEET = [json.loads(line) for line in f]
API = next(e for e in FLEET if e["type"] == "API_SET")
PORT = next(e for e in FLEET if e["type"] == "PORT_SET")
REFUSED = {"type": "REFUSED", "seq": 99, "time": 0,
           "body": {E.F_CLUSTER: PORT["body"][E.F_CLUSTER], E.F_NS: "payments", E.F_NAME: "ghost", E.F_ROUTE: 0,
                    "why": "destination nowhere: no such service"}}


def with_field(base, key, value):
    ev = json.loads(json.dumps(base))
    if key == "m":
        ev["body"][E.F_MASTERS] = ["10.20.0.11", value]
    elif key == "b":
        ev["body"][E.F_BACKENDS] = [["10.20.1.1", 31543, 1], [value, 31543, 1]]
    else:
        ev["body"][key] = value
    return ev


# (what comes from outside, event, key, hostile values)
FIELDS = [
    ("cluster uuid", API, "c", names("id")),
    ("cluster name", API, "cn", names("label")),
    ("SNI host (master host)", API, "h", names("host")),
    ("master IPs (PKS, kubeconfig server)", API, "m", ips()),
    ("owner cluster", PORT, "c", names("id")),
    ("VirtualService namespace", PORT, "ns", names("label")),
    ("VirtualService name", PORT, "n", names("name")),
    ("backend IPs (node InternalIP)", PORT, "b", ips()),
    ("refusal reason", REFUSED, "why", text()),
]


def state_with(tmp_path, line, ascii):
    lines = [json.dumps(e) for e in FLEET]
    lines[LINE - 1] = json.dumps(line, ensure_ascii=ascii)
    return write(tmp_path / "state.in", "\n".join(lines) + "\n")


def refused(tmp_path, ev, key, shown):
    """renderd -T must refuse the line, naming it and the field; what is
    not ASCII, both as \\u escapes and as raw UTF-8."""
    line = json.dumps(ev)
    for ascii in (True, False) if "\\u" in line else (True,):
        path = state_with(tmp_path, ev, ascii)
        rc, out, err = renderd(CONF, path, tmp_path)
        err = err.decode(errors="replace")
        assert rc == 1, "%r accepted in %s (rc %d)" % (shown, key, rc)
        assert out == b"", "%r in %s: a config was printed" % (shown, key)
        assert err == "renderd: %s:%d: field %s: bad value\n" % (path, LINE, key), \
            "%r in %s: %r" % (shown, key, err)


@pytest.mark.parametrize("what,base,key,values", FIELDS, ids=[f[0] for f in FIELDS])
def test_hostile_field_refused(what, base, key, values, tmp_path):
    for v in values:
        refused(tmp_path, with_field(base, key, v), key, v[:40])


def test_hostile_numbers_refused(tmp_path):
    bad = [("p", 65536), ("p", -1), ("p", "21417"), ("p", 21417.5), ("p", None),
           ("r", -1), ("r", "0")]
    for key, v in bad:
        refused(tmp_path, with_field(PORT, key, v), key, v)
    for key, v in [("mp", 65536), ("mp", "8443"), ("mp", -8443)]:
        refused(tmp_path, with_field(API, key, v), key, v)
    for be in (["10.20.1.1", 0, 1], ["10.20.1.1", 65536, 1], ["10.20.1.1", 31543, 257],
               ["10.20.1.1", 31543, -1], ["10.20.1.1", "31543", 1],
               ["10.20.1.1", 31543], ["10.20.1.1", 31543, 1, "x"]):
        ev = json.loads(json.dumps(PORT))
        ev["body"][E.F_BACKENDS] = [be]
        refused(tmp_path, ev, "b", be)


def test_free_text_never_reaches_the_config(tmp_path):
    """A refusal's reason may hold punctuation (it is written back as a JSON
    string); it is accepted, and the config is the fleet's, unchanged."""
    reason = "tcp[0]: destination x #{}; ' $ %s: no such service"
    lines = [json.dumps(e) for e in FLEET]
    lines.insert(LINE - 1, json.dumps(with_field(REFUSED, "why", reason)))
    path = write(tmp_path / "state.in", "\n".join(lines) + "\n")
    rc, out, err = renderd(CONF, path, tmp_path)
    assert rc == 0 and err == b""
    with open(os.path.join(HERE, "fleet.out"), "rb") as f:
        assert out == f.read()


def test_name_with_a_long_label_is_rendered(tmp_path):
    """An object name the API server takes, with a label past 63 characters,
    is no hostile value: it is rendered, in its route's comment only."""
    name = "ledger-" + "x" * 70 + ".v1"
    path = state_with(tmp_path, with_field(PORT, "n", name), True)
    rc, out, err = renderd(CONF, path, tmp_path)
    assert rc == 0 and err == b"", err
    assert ("/payments/%s route 0\n" % name).encode() in out, out.decode()
