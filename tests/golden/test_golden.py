"""Golden tests for renderd: each tests/golden/<case>.in, a state as JSON
lines (one event a line, in the shape of the JSON dumps), rendered by
`renderd -T` with <case>.conf, or the shared portico.conf when the case has
none (envoy.conf for the envoy_* cases, the same states rendered for Envoy:
their .in files are links to the others'), must give <case>.out byte for
byte; a mismatch shows a unified diff.

    make golden             check every case
    make golden-update      rewrite the .out files, for a change that is meant

The renderer is a pure function of the state. It runs here in a scratch
folder with an environment of nothing in particular, and the cases that
reach one state by different paths (SAME) must render the same bytes.
"""

import configparser
import difflib
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import harness  # noqa: E402

UPDATE = os.environ.get("PORTICO_GOLDEN_UPDATE") == "1"
CASES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "*.in")))

# One state, reached in another order and through a longer history.
SAME = [("fleet", "fleet_reordered", "fleet_history"),
        ("envoy_fleet", "envoy_fleet_reordered", "envoy_fleet_history")]


def conf_of(case):
    own = os.path.join(HERE, case + ".conf")
    if os.path.exists(own):
        return own
    shared = "envoy.conf" if case.startswith("envoy_") else "portico.conf"
    return os.path.join(HERE, shared)


def kind_of(case):
    """The proxy kind the case's config renders (haproxy by default)."""
    ini = configparser.ConfigParser(inline_comment_prefixes=(" ;",))
    ini.read(conf_of(case))
    kinds = {ini.get(s, "kind", fallback="haproxy") for s in ini.sections()
             if s.startswith("proxy.")}
    assert len(kinds) <= 1, "%s: one proxy kind per case" % case
    return kinds.pop() if kinds else "haproxy"


def renderd(conf, state, cwd):
    """renderd -T: (returncode, stdout, stderr), in cwd, with a fixed
    environment (what ASan needs to report, and a time zone far away)."""
    harness.need("renderd")
    env = {"PATH": "/usr/bin:/bin", "TZ": "Pacific/Chatham", "LC_ALL": "C.UTF-8",
           "HOME": str(cwd)}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", conf, "-T", state],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(cwd),
                        env=env, timeout=60)
    return cp.returncode, cp.stdout, cp.stderr


def render_case(case, cwd):
    rc, out, err = renderd(conf_of(case), os.path.join(HERE, case + ".in"), cwd)
    assert rc == 0 and err == b"", "%s: renderd -T exited %d:\n%s" % (
        case, rc, err.decode(errors="replace"))
    return out


def unified(want, got, case):
    return b"".join(difflib.diff_bytes(
        difflib.unified_diff, want.splitlines(True), got.splitlines(True),
        b"tests/golden/" + case.encode() + b".out",
        b"renderd -T tests/golden/" + case.encode() + b".in")).decode(errors="replace")


def test_cases_exist():
    assert len(CASES) >= 9, CASES
    for group in SAME:
        assert set(group) <= set(CASES), group


@pytest.mark.parametrize("case", CASES)
def test_golden(case, tmp_path):
    got = render_case(case, tmp_path)
    path = os.path.join(HERE, case + ".out")
    if UPDATE:
        with open(path, "wb") as f:
            f.write(got)
        return
    if not os.path.exists(path):
        pytest.fail("%s: no .out file (make golden-update writes it)" % case, pytrace=False)
    with open(path, "rb") as f:
        want = f.read()
    if got != want:
        pytest.fail("%s: the rendered config differs from the golden file "
                    "(make golden-update if the change is meant):\n%s"
                    % (case, unified(want, got, case)), pytrace=False)


@pytest.mark.parametrize("group", SAME, ids=lambda g: "=".join(g))
def test_same_state_same_bytes(group, tmp_path):
    first = render_case(group[0], tmp_path)
    for case in group[1:]:
        got = render_case(case, tmp_path)
        assert got == first, "%s renders otherwise than %s:\n%s" % (
            case, group[0], unified(first, got, case))


def haproxy_maps(text, dir):
    """The config with its map files moved into dir, and the maps written
    there as applyd derives them: each backend with servers, by its key
    (p<port> by the port, an api<n> slot by the host of its "# sni" line)."""
    text = re.sub(r"map\((/[^)]*/)([^/)]*)\)",
                  lambda m: "map(%s/%s)" % (dir, m.group(2)), text)
    maps = {"ports": [], "api": []}
    section = sni = None
    for line in text.splitlines():
        if line.startswith("backend "):
            section, sni = line[8:], None
        elif not line.startswith("\t"):
            section = None
        elif line.startswith("\t# sni "):
            sni = line[7:]
        elif line.startswith("\tserver ") and section is not None:
            if re.fullmatch(r"p\d+", section):
                maps["ports"].append("%s %s" % (section[1:], section))
            elif re.fullmatch(r"api\d+", section) and sni is not None:
                maps["api"].append("%s %s" % (sni, section))
            section = None      # one entry a backend
    for name, entries in maps.items():
        for path in re.findall(r"map\(([^)]*-%s\.map)\)" % name, text):
            with open(path, "w") as f:
                f.write("".join(e + "\n" for e in entries))
    return text


@pytest.mark.parametrize("case", [c for c in CASES if kind_of(c) == "haproxy"])
def test_haproxy_accepts(case, tmp_path):
    """Every golden HAProxy config passes `haproxy -c` (which binds nothing),
    with the map files applyd would write beside it."""
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.access(haproxy, os.X_OK):
        pytest.fail("haproxy is not installed (make deps)", pytrace=False)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy_maps(render_case(case, tmp_path).decode(), tmp_path))
    cp = subprocess.run([haproxy, "-c", "-f", str(cfg)], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, timeout=60)
    assert cp.returncode == 0, "%s:\n%s" % (case, cp.stdout.decode(errors="replace"))


# ------------------------------------------------------------------ -T itself

def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_bad_line_names_its_number_and_prints_nothing(tmp_path):
    with open(os.path.join(HERE, "fleet.in")) as f:
        good = f.read().splitlines()
    bad = {
        "not json {": "not JSON",
        '{"type":"API_SET","seq":1,"time":0,"body":{"c":"c1"}}': "missing field",
        '{"type":"PORT_GONE","seq":1,"time":0,"body":{}}': "unknown event type",
        '{"type":"API_DEL","body":{"c":"c1"}}': "not an event",
        '{"type":"API_DEL","seq":1,"time":0,"body":{"c":"c1"}} {}': "not JSON",
        '{"type":"API_DEL","seq":1,"time":0,"body":{"c":"c1","c":"c2"}}': "duplicate",
    }
    for line, why in bad.items():
        # a blank line first: it counts as a line, and is no error
        state = write(tmp_path / "state.in", "\n".join(good[:3] + ["", line] + good[3:]) + "\n")
        rc, out, err = renderd(os.path.join(HERE, "portico.conf"), state, tmp_path)
        assert rc == 1 and out == b"", (line, rc, out[:200])
        err = err.decode()
        assert err.startswith("renderd: %s:5: " % state) and why in err, (line, err)


def test_no_run_folder_no_pid_file(tmp_path):
    """-T is a command: it creates nothing, not even the run folder."""
    with open(os.path.join(HERE, "portico.conf")) as f:
        conf = f.read().replace("/run/portico-golden", str(tmp_path / "run"))
    conf_path = write(tmp_path / "portico.conf", conf)
    rc, out, err = renderd(conf_path, os.path.join(HERE, "fleet.in"), tmp_path)
    assert rc == 0 and err == b"" and b"backend p21417\n\t# " in out
    assert sorted(os.listdir(tmp_path)) == ["portico.conf"]
    rc, out, err = renderd(conf_path, str(tmp_path / "missing.in"), tmp_path)
    assert rc == 1 and out == b"" and b"missing.in" in err
    assert sorted(os.listdir(tmp_path)) == ["portico.conf"]


def test_usage_names_T():
    harness.need("renderd")
    cp = subprocess.run([harness.daemon_path("renderd"), "-x"], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, timeout=30)
    assert cp.returncode == 1 and b"[-T statefile]" in cp.stderr, cp.stderr
