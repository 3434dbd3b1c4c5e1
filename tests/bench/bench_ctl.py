"""bench_ctl — porticoctl over a log as long as the default compaction
policy lets it grow (compact_records = 200000 records).

The store is written with mdb_load (lmdb-utils), the records encoded here
as allocd encodes them (msgpack [version, type, seq, time, body]): 20
clusters' API_SET, then 2,000 owners observed and decided over and over
(ROUTE with two backends, then PORT_SET; every tenth pair a PORT_FREE
instead). Each command runs to completion, its output to /dev/null; wall
time and peak RSS come from /usr/bin/time. JSON lines on stdout:
    {"bench": "ctl", "metric": "...", "value": N, "unit": "..."}

    PORTICO_BIN=build/bin python3 tests/bench/bench_ctl.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

RECORDS = 200000
OWNERS = 2000
CLUSTERS = 20
T0 = 1796620000000


def mp_uint(v):
    if v < 0x80:
        return bytes([v])
    if v < 0x10000:
        return b"\xcd" + v.to_bytes(2, "big")
    if v < 0x100000000:
        return b"\xce" + v.to_bytes(4, "big")
    return b"\xcf" + v.to_bytes(8, "big")


def mp_str(s):
    b = s.encode()
    return (bytes([0xa0 | len(b)]) if len(b) < 32 else bytes([0xd9, len(b)])) + b


def mp_array(items):
    assert len(items) < 16
    return bytes([0x90 | len(items)]) + b"".join(items)


def mp_map(kv):
    assert len(kv) < 16
    return bytes([0x80 | len(kv)]) + b"".join(mp_str(k) + v for k, v in kv)


def event(type, seq, body):
    return mp_array([mp_uint(1), mp_uint(type), b"\xcf" + seq.to_bytes(8, "big"),
                     b"\xcf" + (T0 + seq).to_bytes(8, "big"), mp_map(body)])


def cluster(i):
    return "c1c0ffee-0000-4000-8000-%012d" % i


def route_body(o):
    c = cluster(o % CLUSTERS)
    backends = mp_array([mp_array([mp_str("10.20.%d.%d" % (o % 250, n)),
                                   mp_uint(30000 + o % 2000), mp_uint(1)])
                         for n in (1, 2)])
    return [("c", mp_str(c)), ("ns", mp_str("ns%d" % (o % 50))),
            ("n", mp_str("svc-%d" % o)), ("r", mp_uint(0)), ("b", backends)]


def records():
    seq = 0
    for i in range(CLUSTERS):
        seq += 1
        yield seq, event(30, seq, [("c", mp_str(cluster(i))), ("cn", mp_str("k%d" % i)),
                                   ("h", mp_str("k%d.k8s.example.test" % i)),
                                   ("m", mp_array([mp_str("10.0.0.%d" % (i + 1))])),
                                   ("mp", mp_uint(8443))])
    pair = 0
    while seq + 2 <= RECORDS:
        o = pair % OWNERS
        port = 2000 + o
        seq += 1
        yield seq, event(12, seq, route_body(o))
        seq += 1
        if pair % 10 == 9:
            yield seq, event(34, seq, [("p", mp_uint(port))] + route_body(o)[:4])
        else:
            yield seq, event(32, seq, [("p", mp_uint(port))] + route_body(o))
        pair += 1


def mdb_load(store, db, pairs):
    head = "VERSION=3\nformat=bytevalue\ntype=btree\nmapsize=%d\nHEADER=END\n" % (1 << 30)
    body = "".join(" %s\n %s\n" % (k.hex(), v.hex()) for k, v in pairs)
    subprocess.run(["mdb_load", "-s", db, store], input=(head + body + "DATA=END\n").encode(),
                   check=True)


def measure(argv):
    """(seconds, peak KiB) of argv, its stdout to /dev/null."""
    with tempfile.NamedTemporaryFile("r") as t, open(os.devnull, "w") as null:
        subprocess.run(["/usr/bin/time", "-o", t.name, "-f", "%e %M"] + argv,
                       stdout=null, check=True)
        secs, kib = t.read().split()[-2:]
    return float(secs), int(kib)


def main():
    ctl = os.path.join(os.environ.get("PORTICO_BIN", "build/bin"), "porticoctl")
    top = tempfile.mkdtemp(prefix="pt-bench-ctl-", dir="/tmp")
    try:
        store = os.path.join(top, "store")
        os.mkdir(store)
        mdb_load(store, "meta", [(b"schema", (1).to_bytes(8, "big"))])
        for db in ("ports", "owners", "clusters", "snap"):
            mdb_load(store, db, [])
        recs = list(records())
        mdb_load(store, "log", [(s.to_bytes(8, "big"), v) for s, v in recs])
        last = recs[-1][0]
        owner = "%s/ns7/svc-7/0" % cluster(7)
        runs = {
            "log_dump_all": ["log", "dump"],
            "log_dump_one_owner": ["log", "dump", "--owner", owner],
            "why_one_owner": ["why", owner],
            "log_state_at_last": ["log", "state", "--at", str(last)],
        }
        out = [("log_records", last, "records"),
               ("store_size", os.path.getsize(os.path.join(store, "data.mdb")) >> 20, "MiB")]
        # what is timed is the real thing: every record decodes and prints
        dumped = subprocess.run([ctl, "log", "dump", store], stdout=subprocess.PIPE,
                                check=True).stdout.count(b"\n")
        assert dumped == last, (dumped, last)
        for name, args in runs.items():
            secs, kib = measure([ctl] + args + [store])
            out += [(name + "_time", secs, "s"), (name + "_peak_rss", kib >> 10, "MiB")]
        for metric, value, unit in out:
            print(json.dumps({"bench": "ctl", "metric": metric, "value": value, "unit": unit}))
    finally:
        shutil.rmtree(top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
