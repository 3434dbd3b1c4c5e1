"""The man pages (man/): mdoc that mandoc's linter passes without a
warning, that man(1) renders, and that say what the code does:

- portico.conf(5) documents every key of common/config.c's keyword table,
  under its section, and no key the table does not have;
- each daemon's page documents every option its usage line names;
- porticoctl(8) documents every command of porticoctl's command table.

The tables are read from the source, so a key, an option or a command
added without its documentation fails here.
"""

import os
import re
import subprocess

import pytest

import harness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAN = os.path.join(ROOT, "man")
PAGES = ["portico.conf.5", "porticoctl.8", "watcherd.8", "allocd.8", "renderd.8",
         "applyd.8"]
DAEMONS = ["watcherd", "allocd", "renderd", "applyd"]


def read(*path):
    with open(os.path.join(ROOT, *path)) as f:
        return f.read()


@pytest.mark.parametrize("page", PAGES)
def test_page_lints_clean_and_renders(page):
    path = os.path.join(MAN, page)
    cp = subprocess.run(["mandoc", "-Tlint", "-W", "warning", path],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert cp.returncode == 0 and cp.stdout == b"", cp.stdout.decode()
    cp = subprocess.run(["man", "-l", path], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=60,
                        env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
    assert cp.returncode == 0 and cp.stderr == b"", cp.stderr.decode()
    out = cp.stdout.decode()
    assert "NAME" in out and "SEE ALSO" in out, out


def config_keys():
    """{(section, key)} of config.c's keyword table; [proxy.NAME] keys are
    section "proxy", [cluster.NAME] keys "cluster"."""
    src = read("common", "config.c")
    table = src[src.index("ckeys[] = {"):]
    table = table[:table.index("};")]
    keys = set()
    for m in re.finditer(r'\b([CPK])\(\s*"([^"]+)"(?:,\s*"([^"]+)")?', table):
        kind, a, b = m.groups()
        if kind == "C":
            keys.add((a, b))
        else:
            keys.add(({"P": "proxy", "K": "cluster"}[kind], a))
    assert len(keys) > 50, keys
    return keys


def documented_keys():
    """{(section, key)}: each `.It Ic key` under `.Ss [section]`."""
    keys, section = set(), None
    for line in read("man", "portico.conf.5").splitlines():
        m = re.match(r"\.Ss \[([a-z]+)(?:\.NAME)?\]$", line)
        if m:
            section = m.group(1)
            continue
        if line.startswith(".Sh "):
            section = None
        m = re.match(r"\.It Ic ([a-z_]+)\b", line)
        if m and section is not None:
            keys.add((section, m.group(1)))
    return keys


def test_every_config_key_is_documented():
    code, doc = config_keys(), documented_keys()
    assert sorted(code - doc) == [], "keys in config.c, not in portico.conf.5"
    assert sorted(doc - code) == [], "keys in portico.conf.5, not in config.c"


def usage_flags(daemon):
    """The option letters a daemon's usage line names (it prints it, exit 1,
    on an option it does not take)."""
    cp = subprocess.run([harness.daemon_path(daemon), "-?"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=30)
    usage = [l for l in cp.stderr.decode().splitlines() if l.startswith("usage: ")]
    assert cp.returncode == 1 and len(usage) == 1, cp.stderr
    usage = usage[0]
    assert usage.startswith("usage: %s " % daemon), usage
    flags = set()
    for group in re.findall(r"\[-([A-Za-z]+)\]", usage):
        flags |= set(group)
    flags |= set(re.findall(r"-([A-Za-z]) \w", usage))
    return flags


def synopsis_flags(page):
    text = read("man", page)
    syn = text[text.index(".Sh SYNOPSIS"):text.index(".Sh DESCRIPTION")]
    flags = set()
    for arg in re.findall(r"\bFl ([A-Za-z]+)", syn):
        flags |= set(arg)
    return flags, text


@pytest.mark.parametrize("daemon", DAEMONS)
def test_daemon_page_names_every_option(daemon):
    harness.need(daemon)
    want = usage_flags(daemon)
    syn, text = synopsis_flags(daemon + ".8")
    assert want == syn, (sorted(want), sorted(syn))
    for f in want:      # and each is described in the options list
        assert re.search(r"^\.It Fl %s\b" % f, text, re.M), f


def test_porticoctl_page_names_every_command():
    src = read("porticoctl", "porticoctl.c")
    table = src[src.index("} cmds[] = {"):]
    table = table[:table.index("};")]
    cmds = re.findall(r'\{\s*"([a-z]+)",\s*(?:"([a-z]+)"|NULL)', table)
    assert len(cmds) >= 6, cmds
    text = read("man", "porticoctl.8")
    for word, sub in cmds:
        name = word + (" " + sub if sub else "")
        assert re.search(r"^\.It Cm %s\b" % name.replace(" ", r"\s+"), text, re.M), name
