"""porticoctl: allocd's event log as the debugging tool.

- The debugging story of issue 13: a route asks for a port outside the
  range and is refused, then the annotation is corrected and it gets the
  port. `porticoctl why` tells both steps with their reasons, and
  `porticoctl log state --at G | renderd -T` renders, byte for byte, the
  configuration applyd served at generation G (renderd's generation is the
  seq of the last decision it applied; applyd's APPLIED says which it
  serves).
- `log dump` filters by seq, type and owner; bad arguments exit 1.
- The store is read read-only: beside a live allocd that goes on
  committing, and on a copy (cp -r), also one whose folder is read-only.
"""

import json
import os
import shutil
import subprocess
import tempfile

import harness
import testlib
from harness import ADDRESS, ERROR, EXPOSE, PORT, start_payments

E = testlib.events

NS = "payments"


def ctl(fleet, *args, store=None, check=True):
    """porticoctl -f <fleet's config> args [store]: (rc, stdout, stderr)."""
    argv = [harness.daemon_path("porticoctl"), "-f", fleet.conf_path] + list(args)
    if store is not None:
        argv.append(store)
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        timeout=60, env=fleet.env())
    out, err = cp.stdout.decode(), cp.stderr.decode()
    if check:
        assert cp.returncode == 0, (args, cp.returncode, err)
    return cp.returncode, out, err


def dump(fleet, *args, store=None):
    _, out, _ = ctl(fleet, "log", "dump", *args, store=store)
    return [json.loads(line) for line in out.splitlines()]


def owner_of(pay, name, route=0):
    return "%s/%s/%s/%d" % (pay.uuid, NS, name, route)


def refused_then_fixed(fleet, pay, between=lambda: None):
    """ledger-db asks for a port outside the range (refused), then, after
    between(), for one inside it (served): (bad port, good port)."""
    bad, good = fleet.port_hi + 1, fleet.port_hi - 2
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true", PORT: str(bad)})
    assert str(bad) in fleet.wait_annotation(pay, NS, "ledger-db", ERROR)
    between()
    pay.annotate(NS, "ledger-db", **{PORT: str(good)})
    assert fleet.wait_address(pay, NS, "ledger-db") == [good]
    fleet.wait_no_annotation(pay, NS, "ledger-db", ERROR)
    fleet.wait_serves(good, pay.markers(NS, "ledger-db", 5432))
    return bad, good


def test_why_tells_the_refusal_and_the_fix(make_fleet):
    fleet, pay = start_payments(make_fleet)
    bad, good = refused_then_fixed(fleet, pay)
    owner = owner_of(pay, "ledger-db")

    def story():
        _, out, _ = ctl(fleet, "why", owner)
        return out if "live on every proxy on port %d" % good in out else None
    out = testlib.wait_until(story, 30, "ledger-db live in porticoctl why")
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["SEQ", "TIME"], out

    def first(text):
        hits = [i for i, l in enumerate(lines) if text in l]
        assert hits, "%r not in:\n%s" % (text, out)
        return hits[0]
    asked_bad = first("asked for port %d" % bad)
    refused = first("refused: port %d is outside" % bad)
    asked_good = first("asked for port %d" % good)
    got = first("got port %d" % good)
    live = first("live on every proxy on port %d" % good)
    assert asked_bad < refused < asked_good < got < live, out
    # each line: a seq, then the time in UTC
    seqs = [int(l.split()[0]) for l in lines[1:]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), out
    assert all(l.split()[1].endswith("Z") and l.split()[1][:2] == "20"
               for l in lines[1:]), out

    # -j: the same story as JSON lines, each with the event itself
    _, out, _ = ctl(fleet, "-j", "why", owner)
    recs = [json.loads(l) for l in out.splitlines()]
    assert [r["seq"] for r in recs][:len(seqs)] == seqs    # more may come
    refusal = [r for r in recs if r["type"] == "REFUSED"][0]
    assert refusal["owner"] == owner and refusal["event"]["body"][E.F_WHY] \
        .startswith("port %d is outside" % bad), refusal
    assert {"seq", "time", "owner", "type", "story", "event"} <= set(refusal)

    # a prefix (cluster/ns/name) tells every route of the object
    _, out, _ = ctl(fleet, "why", "%s/%s/ledger-db" % (pay.uuid, NS))
    assert "0: refused: port %d" % bad in out, out
    # an owner never seen: exit 1; not an owner: exit 1
    rc, _, err = ctl(fleet, "why", owner_of(pay, "nobody"), check=False)
    assert rc == 1 and "not in the log" in err, err
    for badowner in ("x", "a/b", "%s/%s/ledger-db/0/1" % (pay.uuid, NS),
                     "%s/%s/Ledger\x1b[31m/0" % (pay.uuid, NS)):
        rc, _, err = ctl(fleet, "why", badowner, check=False)
        assert rc == 1 and "want cluster/ns/name" in err, (badowner, err)


def served_generation(fleet):
    """(gen, config text) once applyd's last APPLIED for the proxy names the
    generation whose configuration is on disk, and nothing moves."""
    name = fleet.proxy().name

    def settled():
        cfg = fleet.proxy_cfg()
        applied = [e for e in dump(fleet, "--type", "APPLIED")
                   if e["body"][E.F_PROXY] == name and E.F_FGEN not in e["body"]]
        if not applied or fleet.proxy_cfg() != cfg:
            return None
        return applied[-1]["body"][E.F_GEN], cfg
    return testlib.wait_until(settled, 30, "a settled generation")


def render_state(fleet, state_text, tmp_path):
    path = tmp_path / "state.jsonl"
    path.write_text(state_text)
    cp = subprocess.run([harness.daemon_path("renderd"), "-f", fleet.conf_path,
                         "-p", fleet.proxy().name, "-T", str(path)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()
    return cp.stdout.decode()


def piped(fleet, gen):
    """porticoctl log state --at gen | renderd -T /dev/stdin: its stdout."""
    ctl_p = subprocess.Popen([harness.daemon_path("porticoctl"), "-f", fleet.conf_path,
                              "log", "state", "--at", str(gen)], stdout=subprocess.PIPE)
    rend = subprocess.run([harness.daemon_path("renderd"), "-f", fleet.conf_path, "-p",
                           fleet.proxy().name, "-T", "/dev/stdin"], stdin=ctl_p.stdout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    ctl_p.stdout.close()
    assert ctl_p.wait(timeout=60) == 0
    assert rend.returncode == 0, rend.stderr.decode()
    return rend.stdout.decode()


def test_log_state_renders_the_served_config_again(make_fleet, tmp_path):
    fleet, pay = start_payments(make_fleet)

    def same():
        gen, cfg = served_generation(fleet)
        return (gen, cfg) if piped(fleet, gen) == cfg else None
    refusal = []
    _, good = refused_then_fixed(fleet, pay, lambda: refusal.append(
        testlib.wait_until(same, 60, "log state | renderd -T == served, refused")))
    gen, cfg = testlib.wait_until(same, 60, "log state | renderd -T == served, fixed")
    # the generation served while the route was refused renders again
    # as it was then, without the route
    (gen0, cfg0), = refusal
    assert gen0 < gen and cfg0 != cfg
    assert piped(fleet, gen0) == cfg0
    _, state, _ = ctl(fleet, "log", "state", "--at", str(gen))
    assert render_state(fleet, state, tmp_path) == cfg
    assert "p%d" % good in cfg, cfg
    evs = [json.loads(l) for l in state.splitlines()]
    assert {e["type"] for e in evs} == {"API_SET", "PORT_SET"}, state
    assert all(e["seq"] <= gen for e in evs)
    assert [e["body"][E.F_PORT] for e in evs if e["type"] == "PORT_SET"] == [good]

    # Just before the route got its port, the state has no PORT_SET for it,
    # and its servers (named <ip>_<port>) are in no backend.
    set_ev = dump(fleet, "--type", "PORT_SET", "--owner", owner_of(pay, "ledger-db"))[0]
    _, before, _ = ctl(fleet, "log", "state", "--at", str(set_ev["seq"] - 1))
    assert "PORT_SET" not in before, before
    ip, bport, _ = set_ev["body"][E.F_BACKENDS][0]
    server = "%s_%d" % (ip, bport)
    assert server in cfg
    assert server not in render_state(fleet, before, tmp_path)

    # Outside the log: a clear error, exit 1, nothing printed.
    last = dump(fleet)[-1]["seq"]
    for at in ("0", str(last + 1000)):
        rc, out, err = ctl(fleet, "log", "state", "--at", at, check=False)
        assert rc == 1 and out == "" and "seq %s is" % at in err, err
    rc, _, err = ctl(fleet, "log", "state", check=False)
    assert rc == 1, err


def test_log_state_after_compaction(make_fleet, tmp_path):
    """A compacted log starts with a SNAPSHOT: the state after it is the
    snapshot's tables and the decisions since, and renders as served."""
    harness.need("allocd", "renderd", "applyd", "watcherd")
    fleet = make_fleet()
    pay = harness.payments_cluster(fleet)
    fleet.write_conf(store={"compact_age": 1})     # compact once idle 1 s
    fleet.start_daemons()
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    fleet.wait_serves(port, pay.markers(NS, "ledger-db", 5432))
    ledger = owner_of(pay, "ledger-db")

    def compacted():
        log = dump(fleet)
        mine = [e for e in log if e["type"] == "PORT_SET" and e["body"][E.F_NAME] == "ledger-db"]
        return log if log[0]["type"] == "SNAPSHOT" and not mine else None
    log = testlib.wait_until(compacted, 60, "ledger-db's PORT_SET compacted away")
    first = log[0]["seq"]
    assert first > 1

    def same():
        last = dump(fleet)[-1]["seq"]
        cfg = fleet.proxy_cfg()
        _, state, _ = ctl(fleet, "log", "state", "--at", str(last))
        return (cfg, state) if render_state(fleet, state, tmp_path) == cfg else None
    cfg, state = testlib.wait_until(same, 60, "state after a snapshot == served")
    sets = [json.loads(l) for l in state.splitlines() if '"PORT_SET"' in l]
    assert [(e["body"][E.F_PORT], e["body"][E.F_NAME]) for e in sets] == [(port, "ledger-db")], state
    assert sets[0]["seq"] < first        # from the snapshot, not the log
    assert "_%d" % sets[0]["body"][E.F_BACKENDS][0][1] in cfg
    # The seqs the compaction dropped are gone: said, exit 1.
    rc, out, err = ctl(fleet, "log", "state", "--at", str(first - 1), check=False)
    assert rc == 1 and out == "" and "compacted away" in err, err
    assert "got port" not in ctl(fleet, "why", ledger, check=False)[1]


def test_log_dump_filters(make_fleet):
    fleet, pay = start_payments(make_fleet)
    bad, good = refused_then_fixed(fleet, pay)
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})
    fleet.wait_address(pay, NS, "orders-db")
    everything = dump(fleet)
    seqs = [e["seq"] for e in everything]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert {"type", "seq", "time", "body"} == set(everything[0])

    mid = seqs[len(seqs) // 2]
    assert [e["seq"] for e in dump(fleet, "--since", str(mid))] == \
        [s for s in seqs if s >= mid]
    assert [e["seq"] for e in dump(fleet, "--since", str(mid), "--until",
                                   str(mid + 2))] == [mid, mid + 1, mid + 2]
    assert dump(fleet, "--until", "0") == []

    refusals = dump(fleet, "--type", "REFUSED")
    assert refusals and all(e["type"] == "REFUSED" for e in refusals)
    ledger = owner_of(pay, "ledger-db")
    mine = dump(fleet, "--type", "REFUSED", "--owner", ledger)
    assert mine and {e["body"][E.F_WHY].split(" is ")[0] for e in mine} == {"port %d" % bad}, mine
    sets = dump(fleet, "--type", "PORT_SET", "--owner", "%s/%s/orders-db" % (pay.uuid, NS))
    assert sets and all(e["body"][E.F_NAME] == "orders-db" for e in sets), sets
    assert all(e["body"][E.F_NAME] == "ledger-db" for e in dump(fleet, "--owner", ledger))

    for args, what in ((["--type", "NOPE"], "no such event type"),
                       (["--since", "-1"], "not a seq"),
                       (["--until", "12x"], "not a seq"),
                       (["--owner", "a/b"], "want cluster/ns/name")):
        rc, out, err = ctl(fleet, "log", "dump", *args, check=False)
        assert rc == 1 and out == "" and what in err, (args, err)
    rc, _, err = ctl(fleet, "log", "dump", store=os.path.join(fleet.run_dir, "nowhere"),
                     check=False)
    assert rc == 2, err
    rc, _, err = ctl(fleet, "frobnicate", check=False)
    assert rc == 1 and "usage" in err, err


def read_only_copy(store):
    """A copy of store that only root could write: files 0444, folder 0555,
    no lock file; in a folder of its own that everyone may enter."""
    top = tempfile.mkdtemp(prefix="pt-ro-", dir="/tmp")
    os.chmod(top, 0o755)
    ro = os.path.join(top, "store")
    shutil.copytree(store, ro)
    os.remove(os.path.join(ro, "lock.mdb"))
    for f in os.listdir(ro):
        os.chmod(os.path.join(ro, f), 0o444)
    os.chmod(ro, 0o555)
    return top, ro


def ctl_as_nobody(store, *args):
    """porticoctl args store, run as nobody (no config: the store is named)."""
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
            harness.daemon_path("porticoctl")] + list(args) + [store]
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()
    assert "read without LMDB's lock file" in cp.stderr.decode()
    return cp.stdout.decode()


def test_read_only_beside_live_allocd_and_on_a_copy(make_fleet, tmp_path):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    (port,) = fleet.wait_address(pay, NS, "ledger-db")
    pid = fleet["allocd"].pid
    before = dump(fleet)
    # allocd commits while porticoctl reads, again and again
    pay.annotate(NS, "orders-db", **{EXPOSE: "true"})

    def read_meanwhile():
        assert len(dump(fleet)) >= len(before)
        assert fleet["allocd"].alive()
        return ADDRESS in pay.annotations(NS, "orders-db")
    testlib.wait_until(read_meanwhile, 60, "orders-db's address, read meanwhile")
    after = dump(fleet)
    assert after[:len(before)] == before and len(after) > len(before)
    # beside allocd, a reader takes its slot in the lock file, as LMDB wants
    assert "lock file" not in ctl(fleet, "log", "dump")[2]
    assert any(e["type"] == "PORT_SET" and e["body"][E.F_NAME] == "orders-db" for e in after)

    # a copy, as an operator takes one: the same log
    copy = str(tmp_path / "store-copy")
    shutil.copytree(fleet.store, copy)
    assert dump(fleet, store=copy)[:len(after)] == after
    _, out, _ = ctl(fleet, "why", owner_of(pay, "ledger-db"), store=copy)
    assert "got port %d" % port in out, out
    # a copy its reader may not write: read without LMDB's lock file, and
    # nothing written into it
    top, ro = read_only_copy(fleet.store)
    try:
        out = ctl_as_nobody(ro, "log", "dump")
        assert "got port %d" % port in ctl_as_nobody(ro, "why", owner_of(pay, "ledger-db"))
        assert sorted(os.listdir(ro)) == ["data.mdb"]
        # (root may write: it takes the lock, and reads the same)
        assert [json.loads(l) for l in out.splitlines()] == dump(fleet, store=ro)
        assert len(out.splitlines()) >= len(after)
    finally:
        os.chmod(ro, 0o755)
        shutil.rmtree(top)
    # allocd never noticed: still the same process, still deciding
    pay.annotate(NS, "cache", **{EXPOSE: "true"})
    fleet.wait_address(pay, NS, "cache")
    assert fleet["allocd"].pid == pid


def mp_str(b):
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b


def hostile_record(seq, cluster):
    """A ROUTE record as msgpack ([version, type, seq, time, body]) whose
    name carries a terminal escape and a newline."""
    body = {b"c": mp_str(cluster.encode()), b"ns": mp_str(b"payments"),
            b"n": mp_str(b"evil\x1b[31m\nname"), b"r": b"\x00", b"b": b"\x90"}
    out = b"\x95\x01\x0c" + b"\xcf" + seq.to_bytes(8, "big") + b"\xcf" + \
        (1).to_bytes(8, "big") + bytes([0x80 | len(body)])
    for k, v in body.items():
        out += mp_str(k) + v
    return out


def test_hostile_record_is_named_never_printed(make_fleet, tmp_path):
    """A record that does not pass the validators (written into a copy of
    the store with mdb_load) is reported by its seq and skipped, exit 2;
    its bytes reach neither stdout nor stderr, and the rest is printed."""
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    fleet.wait_address(pay, NS, "ledger-db")
    copy = str(tmp_path / "store")
    shutil.copytree(fleet.store, copy)
    good = dump(fleet, store=copy)
    seq = good[-1]["seq"] + 1
    rec = hostile_record(seq, pay.uuid)
    load = "VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n %s\n %s\nDATA=END\n" % (
        seq.to_bytes(8, "big").hex(), rec.hex())
    subprocess.run(["mdb_load", "-s", "log", copy], input=load.encode(), check=True,
                   timeout=60)
    for args in (["log", "dump"], ["why", "%s/%s/ledger-db" % (pay.uuid, NS)],
                 ["log", "state", "--at", str(seq)]):
        rc, out, err = ctl(fleet, *args, store=copy, check=False)
        assert rc == 2, (args, rc, err)
        assert "seq %d: not an event: field n: bad value" % seq in err, err
        assert "\x1b" not in out + err and "evil" not in out + err, (out, err)
    rc, out, _ = ctl(fleet, "log", "dump", store=copy, check=False)
    assert [json.loads(l) for l in out.splitlines()] == good
