"""The generated event table (build/gen/events.py) says what common/event.h
says: every type with its code, every field with its key, and the fields
each type requires and allows.

events.py is written by a program built from the header's X-macros, with
the names event_name() gives; this reads the header as text instead, so a
generator that lost or renamed an entry fails here, not in a test that
happens to use it.
"""

import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import testlib  # noqa: E402

E = testlib.events


def macro(text, name):
    """The X(...) lines of #define name(X), joined across backslashes."""
    m = re.search(r"#define %s\(X\)(.*?)(?<!\\)\n(?!\s*X\()" % name, text, re.S)
    assert m, name
    body = m.group(1).replace("\\\n", " ")
    return re.findall(r"X\(([^()]*)\)", body)


def header():
    with open(os.path.join(ROOT, "common", "event.h")) as f:
        return f.read()


def bits(expr, keys):
    names = re.findall(r"F_([A-Z0-9_]+)", expr)
    return tuple(sorted(keys[n] for n in names))


def test_fields_and_keys():
    fields = [[a.strip() for a in x.split(",")] for x in macro(header(), "EV_FIELDS")]
    want = {f[0]: f[1].strip('"') for f in fields}
    assert want == E.KEYS
    for name, key in want.items():
        assert getattr(E, "F_" + name) == key
    assert len(set(want.values())) == len(want), "a key used twice"


def test_types_and_codes():
    keys = E.KEYS
    types = macro(header(), "EV_TYPES")
    assert len(types) == len(E.TYPES)
    for t in types:
        name, code, req, opt = [a.strip() for a in t.split(",", 3)]
        assert E.TYPES[int(code)] == name
        assert E.CODES[name] == int(code)
        assert getattr(E, "EV_" + name) == int(code)
        assert tuple(sorted(E.REQUIRED[name])) == bits(req, keys), name
        assert tuple(sorted(E.OPTIONAL[name])) == bits(opt, keys), name


def test_version_and_limits():
    text = header()
    for name, value in (("EV_VERSION", E.VERSION), ("EV_MAX_BACKENDS", E.MAX_BACKENDS),
                        ("EV_MAX_MASTERS", E.MAX_MASTERS)):
        m = re.search(r"#define %s\s+(\d+)" % name, text)
        assert m and int(m.group(1)) == value, name
