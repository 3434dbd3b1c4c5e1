#!/usr/bin/python3
"""A DNS server on loopback that answers late, never, or at once, by name.

    dns_sim.py --listen ADDR [--port 53] --zone ZONE.json [--port-file F]

ZONE.json, read again for every query (replace it by rename to change what
the server says): {"name": {"a": ["ip", ...], "aaaa": [...], "mode": M,
"delay": seconds}}, names without the final dot, any case.  M is "answer"
(the default), "delay" (the answer after `delay` seconds, the server going
on with other queries meanwhile), or "hang" (no answer at all).  A name the
zone does not hold is NXDOMAIN; a type it has no records of is an empty
answer.  One line per query on stderr: "<name> <type> <what was done>",
and "<name> <type> sent" when a late answer goes.
Only UDP: glibc's resolver asks over UDP for answers this small.
"""
import argparse
import ipaddress
import json
import os
import socket
import struct
import sys
import threading

import simcommon

T_A, T_AAAA = 1, 28


def parse_query(pkt):
    """(id, flags, qname, qtype, question bytes) or None."""
    if len(pkt) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", pkt[:6])
    if qd != 1 or flags & 0x8000:
        return None
    labels, i = [], 12
    while True:
        if i >= len(pkt):
            return None
        n = pkt[i]
        i += 1
        if n == 0:
            break
        if n > 63 or i + n > len(pkt):
            return None
        labels.append(pkt[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(pkt):
        return None
    qtype = struct.unpack("!H", pkt[i:i + 2])[0]
    return qid, flags, ".".join(labels).lower(), qtype, pkt[12:i + 4]


def response(qid, flags, question, rcode, rrs):
    """A reply to the question: rrs are (type, rdata) for the name asked."""
    out = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | 0x0080 | rcode,
                      1, len(rrs), 0, 0) + question
    for rtype, rdata in rrs:
        out += struct.pack("!HHHIH", 0xc00c, rtype, 1, 1, len(rdata)) + rdata
    return out


def load_zone(path):
    try:
        with open(path) as f:
            return {k.lower().rstrip("."): v for k, v in json.load(f).items()}
    except (OSError, ValueError):
        return {}


def send_late(sock, reply, peer, name, tname):
    sock.sendto(reply, peer)
    print("%s %s sent" % (name, tname), file=sys.stderr, flush=True)


def serve(sock, zone_path):
    while True:
        try:
            pkt, peer = sock.recvfrom(4096)
        except OSError:
            return
        q = parse_query(pkt)
        if q is None:
            continue
        qid, flags, name, qtype, question = q
        entry = load_zone(zone_path).get(name)
        tname = {T_A: "A", T_AAAA: "AAAA"}.get(qtype, str(qtype))
        if entry is None:
            reply = response(qid, flags, question, 3, [])
            what = "NXDOMAIN"
        else:
            rrs = []
            if qtype == T_A:
                rrs = [(T_A, ipaddress.IPv4Address(a).packed) for a in entry.get("a", [])]
            elif qtype == T_AAAA:
                rrs = [(T_AAAA, ipaddress.IPv6Address(a).packed)
                       for a in entry.get("aaaa", [])]
            reply = response(qid, flags, question, 0, rrs)
            what = "%d records" % len(rrs)
        mode = (entry or {}).get("mode", "answer")
        if mode == "hang":
            print("%s %s hang" % (name, tname), file=sys.stderr, flush=True)
            continue
        if mode == "delay":
            delay = float(entry.get("delay", 1))
            print("%s %s %s in %gs" % (name, tname, what, delay), file=sys.stderr, flush=True)
            t = threading.Timer(delay, send_late, (sock, reply, peer, name, tname))
            t.daemon = True
            t.start()
            continue
        print("%s %s %s" % (name, tname, what), file=sys.stderr, flush=True)
        sock.sendto(reply, peer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True)
    ap.add_argument("--port", type=int, default=53)
    ap.add_argument("--zone", required=True)
    ap.add_argument("--port-file")
    args = ap.parse_args()
    if not simcommon.is_loopback(args.listen):
        ap.error("--listen must be a loopback address")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, args.port))
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % sock.getsockname()[1])
        os.rename(tmp, args.port_file)
    serve(sock, args.zone)


if __name__ == "__main__":
    main()
