"""Replay and the store's schema (issues 12 and 13).

- A store written by the allocd of 7ce3994 (schema 1, host structs:
  tests/fixtures/store-v1, made by tests/fixtures/make_store_v1.py) is
  refused by readers, migrated by today's allocd when it starts on it, and
  then replays identically, every table included: the migration kept what
  the old code decided, in the new encoding.
- A store written by the allocd of 889e7eb (schema 2, before the index of
  the owners waiting for a port: tests/fixtures/store-v2, made by
  tests/fixtures/make_store_v2.py) is migrated the same way: the waiting
  owners are indexed, in the tables and in the snapshot's copy (replay
  from the snapshot serves them in their order again), and the next port
  to come free goes to the first of them.
- `porticoctl log replay` runs today's allocator against the recorded
  decisions, on the live store and on a copy; in a copy whose log was
  tampered with, it names the first decision that differs by its seq; in
  one whose owners table was, the table and the key (also as JSON, -j).
"""

import json
import os
import shutil
import signal
import re
import subprocess
import sys

import harness
import testlib
from harness import EXPOSE, start_payments

NS = "payments"
FIXTURE = os.path.join(harness.ROOT, "tests", "fixtures", "store-v1")
SCHEMA = int(re.search(r"#define STORE_SCHEMA\s+(\d+)", open(os.path.join(
    harness.ROOT, "common", "store.h")).read()).group(1))
FIXTURE_V2 = os.path.join(harness.ROOT, "tests", "fixtures", "store-v2")


def run(*argv, check_rc=None):
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    if check_rc is not None:
        assert cp.returncode == check_rc, (argv, cp.returncode, cp.stdout, cp.stderr)
    return cp


def ctl(conf, *args):
    return run(harness.daemon_path("porticoctl"), "-f", conf, *args)


def fixture_store(tmp_path, fixture=FIXTURE):
    """A fixture store (schema 1 by default) in a fresh folder, with its
    configuration (compaction by age off, so that the store stays as it
    was written)."""
    work = str(tmp_path)
    os.makedirs(os.path.join(work, "run"), mode=0o700)
    store = os.path.join(work, "store")
    os.makedirs(store, mode=0o700)
    shutil.copy(os.path.join(fixture, "data.mdb"), store)
    shutil.copy(os.path.join(fixture, "store-proof.key"), store + "-proof.key")
    os.chmod(store + "-proof.key", 0o600)
    with open(os.path.join(fixture, "portico.conf")) as f:
        text = f.read().replace("@WORK@", work)
    text = text.replace("compact_age = 3", "compact_age = 0")
    conf = os.path.join(work, "portico.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf, store


def test_a_schema_1_store_migrates_and_replays_identically(tmp_path):
    conf, store = fixture_store(tmp_path)
    before = open(os.path.join(store, "data.mdb"), "rb").read()

    # readers refuse it, and say what to do; nothing is written
    cp = ctl(conf, "log", "dump")
    assert cp.returncode == 2 and "schema 1, older than this build's" in cp.stderr, \
        cp.stderr
    cp = run(harness.daemon_path("allocd"), "-f", conf, "-R", store)
    assert cp.returncode == 2 and "allocd migrates it" in cp.stderr, cp.stderr
    assert open(os.path.join(store, "data.mdb"), "rb").read() == before

    # allocd starts on it: migrated, at the seq it had
    log = open(str(tmp_path / "allocd.log"), "w")
    p = subprocess.Popen([harness.daemon_path("allocd"), "-d", "-f", conf],
                         stderr=log)
    try:
        testlib.wait_until(lambda: os.path.exists(str(tmp_path / "run" / "allocd.pid")),
                           30, "allocd ready")
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(30)
        log.close()
    text = open(str(tmp_path / "allocd.log")).read()
    assert "migrated from schema 1 to %d" % SCHEMA in text and "ready at seq 32" in text, text

    # what the old code decided is what today's decides, tables included
    cp = run(harness.daemon_path("allocd"), "-f", conf, "-R", store, check_rc=0)
    assert "starting from the snapshot at seq 23" in cp.stdout, cp.stdout
    assert "then every table: identical to the record" in cp.stdout, cp.stdout
    cp = ctl(conf, "log", "replay")
    assert cp.returncode == 0 and "identical to the record" in cp.stdout, \
        cp.stdout + cp.stderr

    # and the tools read it: db's port, asked for, from the snapshot on
    cp = ctl(conf, "log", "state", "--at", "32")
    assert cp.returncode == 0, cp.stderr
    sets = [json.loads(l) for l in cp.stdout.splitlines()]
    ports = {e["body"]["n"]: e["body"]["p"] for e in sets if e["type"] == "PORT_SET"}
    assert ports.get("db") == 20005 and "api" not in ports, ports
    cp = ctl(conf, "log", "dump", "--type", "PORT_FAULT")
    assert cp.returncode == 0 and "held by another program" in cp.stdout, cp.stdout


def start_allocd(tmp_path, conf, logname):
    log = open(str(tmp_path / logname), "w")
    p = subprocess.Popen([harness.daemon_path("allocd"), "-d", "-f", conf],
                         stderr=log)
    log.close()
    testlib.wait_until(lambda: os.path.exists(str(tmp_path / "run" / "allocd.pid")),
                       30, "allocd ready")
    return p


def stop_allocd(tmp_path, p):
    p.send_signal(signal.SIGTERM)
    p.wait(30)
    testlib.wait_until(lambda: not os.path.exists(str(tmp_path / "run" / "allocd.pid")),
                       30, "allocd's pid file gone")


def waiting_index(store):
    """The owners of meta's waiting index, in its order."""
    return [k.split(b"/", 2)[2].decode() for k in sorted(store_records(store, "meta"))
            if k.startswith(b"wait/")]


def test_a_schema_2_store_gets_its_waiting_owners_indexed(tmp_path):
    conf, store = fixture_store(tmp_path, FIXTURE_V2)
    cp = ctl(conf, "log", "dump")
    assert cp.returncode == 2 and "schema 2, older than this build's" in cp.stderr, \
        cp.stderr
    assert waiting_index(store) == []

    p = start_allocd(tmp_path, conf, "allocd.log")
    stop_allocd(tmp_path, p)
    text = open(str(tmp_path / "allocd.log")).read()
    assert "migrated from schema 2 to %d" % SCHEMA in text, text
    assert "2 waiting owners indexed (3 in the snapshot)" in text, text
    assert "ready at seq 24" in text, text
    # w2 asked before w3 (and w1, served by seq 24's TICK, before both)
    assert waiting_index(store) == ["c1-5f0e7b2a/shop/w2/0",
                                    "c1-5f0e7b2a/shop/w3/0"]

    # replay starts at the snapshot, where w1, w2 and w3 wait: the TICK
    # after it serves w1 from the snapshot's index, as 889e7eb did
    cp = run(harness.daemon_path("allocd"), "-f", conf, "-R", store, check_rc=0)
    assert "starting from the snapshot at seq 20" in cp.stdout, cp.stdout
    assert "then every table: identical to the record" in cp.stdout, cp.stdout

    # live: b goes, and its port goes to w2, the first waiting
    sys.path.insert(0, os.path.dirname(FIXTURE_V2))
    try:
        import make_store_v2 as v2
    finally:
        sys.path.pop(0)
    p = start_allocd(tmp_path, conf, "allocd2.log")
    try:
        pub = v2.Sub("ipc://%s/alloc.pub" % (tmp_path / "run"))
        feed = v2.Feed("ipc://%s/alloc.in" % (tmp_path / "run"))
        feed.send(v2.ROUTE_GONE, {"c": v2.C1, "ns": "shop", "n": "b", "r": 0})
        assert pub.wait_port_set("w2") == 20001
        feed.close()
        pub.close()
    finally:
        stop_allocd(tmp_path, p)
    assert waiting_index(store) == ["c1-5f0e7b2a/shop/w3/0"]
    cp = run(harness.daemon_path("allocd"), "-f", conf, "-R", store, check_rc=0)
    assert "then every table: identical to the record" in cp.stdout, cp.stdout


def store_records(store, table):
    """{key bytes: value bytes} of one table, read with mdb_dump."""
    cp = run("mdb_dump", "-s", table, store, check_rc=0)
    lines = cp.stdout.splitlines()
    data = lines[lines.index("HEADER=END") + 1:lines.index("DATA=END")]
    return {bytes.fromhex(data[i].strip()): bytes.fromhex(data[i + 1].strip())
            for i in range(0, len(data), 2)}


def load_record(store, table, key, value):
    load = "VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n %s\n %s\nDATA=END\n" % (
        key.hex(), value.hex())
    subprocess.run(["mdb_load", "-s", table, store], input=load.encode(),
                   check=True, timeout=60)


def test_log_replay_live_copy_and_tampered(make_fleet, tmp_path):
    fleet, pay = start_payments(make_fleet)
    pay.annotate(NS, "ledger-db", **{EXPOSE: "true"})
    ledger = fleet.wait_address(pay, NS, "ledger-db")[0]
    conf = fleet.conf_path

    # the live store, read in one snapshot while allocd goes on
    def live():
        cp = ctl(conf, "log", "replay")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        return "then every table: identical to the record" in cp.stdout
    testlib.wait_until(live, 30, "the live store replays identically")

    copy = str(tmp_path / "copy")
    shutil.copytree(fleet.store, copy)
    cp = ctl(conf, "log", "replay", copy)
    assert cp.returncode == 0 and "identical to the record" in cp.stdout, cp.stdout

    # a copy whose PORT_SET for ledger-db says another port
    sets = [json.loads(l) for l in ctl(conf, "log", "dump", "--type", "PORT_SET",
                                       copy).stdout.splitlines()]
    seq = [e["seq"] for e in sets if e["body"]["p"] == ledger][0]
    key = seq.to_bytes(8, "big")
    rec = store_records(copy, "log")[key]
    old = b"\xa1p\xcd" + ledger.to_bytes(2, "big")
    assert rec.count(old) == 1, rec
    tampered = str(tmp_path / "tampered")
    shutil.copytree(copy, tampered)
    load_record(tampered, "log", key, rec.replace(old, b"\xa1p\xcd" +
                                                  (ledger + 1).to_bytes(2, "big")))
    cp = ctl(conf, "log", "replay", tampered)
    assert cp.returncode == 3, cp.stdout + cp.stderr
    assert "first difference at seq %d:" % seq in cp.stdout, cp.stdout
    assert '"p":%d' % (ledger + 1) in cp.stdout.split("recorded:")[1], cp.stdout
    assert "they differ" in cp.stdout
    cp = ctl(conf, "-j", "log", "replay", tampered)
    rep = json.loads(cp.stdout)
    assert cp.returncode == 3 and rep["result"] == "differ" and rep["seq"] == seq \
        and rep["table"] is None and "first difference at seq" in rep["report"], rep
    # up to the seq before it, they agree (and the tables are not compared)
    cp = ctl(conf, "log", "replay", "--until", str(seq - 1), tampered)
    assert cp.returncode == 0 and "tables compared only at the log's end" in \
        cp.stdout, cp.stdout
    cp = run(harness.daemon_path("allocd"), "-f", conf, "-R", tampered)
    assert cp.returncode == 1 and "first difference at seq %d:" % seq in cp.stdout

    # a copy whose owners table says ledger-db is not live: named by key
    owner = "%s/%s/ledger-db/0" % (pay.uuid, NS)
    rec = store_records(copy, "owners")[owner.encode()]
    assert rec[3] == 1, rec                 # live, in the fixed encoding
    load_record(copy, "owners", owner.encode(), rec[:3] + b"\x00" + rec[4:])
    cp = ctl(conf, "log", "replay", copy)
    assert cp.returncode == 3, cp.stdout + cp.stderr
    assert "first difference in table owners at %s:" % owner in cp.stdout, cp.stdout
    assert "recorded: port %d, active, set" % ledger in cp.stdout, cp.stdout
    assert "replayed: port %d, active, live" % ledger in cp.stdout, cp.stdout
    cp = ctl(conf, "-j", "log", "replay", copy)
    rep = json.loads(cp.stdout)
    assert cp.returncode == 3 and rep["table"] == "owners" and rep["key"] == owner \
        and rep["seq"] is None and rep["tables"], rep

    # bad arguments
    assert ctl(conf, "log", "replay", "--until", "x").returncode == 1
    assert ctl(conf, "log", "replay", "a", "b").returncode == 1
