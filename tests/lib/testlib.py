"""Shared helpers for portico's Python tests (standard library only).

Everything here is safe on a shared machine: listeners go on random loopback
addresses in 127.0.0.0/8 with random ports below 32768, and processes are only
ever stopped by their own PID.
"""

import importlib.util
import os
import random
import signal
import socket
import subprocess
import time

KUBECTL = "/usr/bin/kubectl"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_events():
    """The event table, generated from common/event.h at build time.

    make writes it beside the binaries under test ($PORTICO_BIN/../gen, so
    the ASan build has its own), and every test takes type codes and field
    keys from it: events.EV_PORT_SET, events.F_PROXY, events.TYPES...
    """
    bin_dir = os.environ.get("PORTICO_BIN") or os.path.join(ROOT, "build", "bin")
    path = os.path.join(os.path.dirname(os.path.normpath(bin_dir)), "gen", "events.py")
    if not os.path.exists(path):
        # binaries built without it (an older tree's, for a benchmark's
        # "before"): this tree's own build says the same, codes never change
        path = os.path.join(ROOT, "build", "gen", "events.py")
    if not os.path.exists(path):
        raise RuntimeError("%s is missing: run make first" % path)
    spec = importlib.util.spec_from_file_location("portico_events", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


events = _load_events()
OPENSSL = "openssl"


def _can_bind(host, port):
    """True when a TCP socket can be bound to (host, port) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


_given = set()


def loopback_addr():
    """A random, bindable address of the form 127.77.X.Y, never one this
    process was given before: a node drawn at the proxy's own address is
    refused by allocd (a backend on the address the proxy listens on), and
    with a few thousand draws a run, that happened."""
    for _ in range(100):
        addr = "127.77.%d.%d" % (random.randint(1, 254), random.randint(1, 254))
        if addr not in _given and _can_bind(addr, 0):
            _given.add(addr)
            return addr
    raise RuntimeError("no bindable loopback address found in 127.77.0.0/16")


def free_port(host):
    """A random TCP port in [10000, 32000) that can be bound on host."""
    for _ in range(200):
        port = random.randrange(10000, 32000)
        if _can_bind(host, port):
            return port
    raise RuntimeError("no free port found on %s" % host)


def _openssl(args, cwd):
    subprocess.run([OPENSSL] + args, cwd=cwd, check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def make_ca(dir):
    """Create a self-signed CA in dir; returns (ca_cert_path, ca_key_path)."""
    os.makedirs(dir, exist_ok=True)
    cert = os.path.join(dir, "ca.crt")
    key = os.path.join(dir, "ca.key")
    _openssl(["req", "-x509", "-new", "-nodes",
              "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-keyout", key, "-out", cert, "-days", "30",
              "-subj", "/CN=portico-test-ca",
              "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign",
              "-addext", "subjectKeyIdentifier=hash"], dir)
    return cert, key


def make_cert(dir, ca, name, dns=(), ips=()):
    """Issue a leaf certificate signed by ca=(cert, key) with the given SANs.

    The certificate carries both serverAuth and clientAuth EKUs so it can be
    used on either side of a TLS connection. Returns (cert_path, key_path).
    """
    ca_cert, ca_key = ca
    os.makedirs(dir, exist_ok=True)
    key = os.path.join(dir, name + ".key")
    csr = os.path.join(dir, name + ".csr")
    cert = os.path.join(dir, name + ".crt")
    ext = os.path.join(dir, name + ".ext")
    sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips]
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth,clientAuth\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n")
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(sans))
    _openssl(["req", "-new", "-nodes",
              "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name], dir)
    # A random serial avoids clashes between certificates of one CA.
    _openssl(["x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
              "-set_serial", str(random.getrandbits(63)), "-days", "30",
              "-extfile", ext, "-out", cert], dir)
    return cert, key


def wait_until(fn, timeout=10, what="condition"):
    """Poll fn() every 20 ms until it returns a truthy value, and return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(0.02)


def wait_tcp(host, port, timeout=10):
    """Wait until a TCP connection to (host, port) succeeds."""
    def connects():
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            return False
    wait_until(connects, timeout, "tcp %s:%s" % (host, port))


class Proc:
    """A subprocess whose stdout and stderr go to logdir/name.log."""

    def __init__(self, argv, name, logdir, env=None):
        os.makedirs(logdir, exist_ok=True)
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        self._logf = open(self.log_path, "ab")
        # A session of its own keeps terminal signals (Ctrl-C) away from it;
        # we still only ever signal this one PID.
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=self._logf, stderr=subprocess.STDOUT,
                                      env=env, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self, timeout=5):
        """SIGTERM, then SIGKILL if it has not exited within timeout seconds."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._logf.close()
        return self.popen.returncode

    def kill9(self):
        if self.alive():
            self.popen.kill()
        self.popen.wait()

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()


def kubectl(args, server, token, ca, cache_dir, tls_server_name=None, timeout=30,
            check=True):
    """Run the real kubectl against server with a bearer token.

    --kubeconfig=/dev/null keeps any kubeconfig on the machine out of the way.
    Returns the CompletedProcess (text). Raises AssertionError carrying stderr
    when kubectl fails and check is true.
    """
    argv = [KUBECTL, "--kubeconfig=/dev/null", "--server=" + server,
            "--token=" + token, "--certificate-authority=" + ca,
            "--cache-dir=" + cache_dir]
    if tls_server_name:
        argv.append("--tls-server-name=" + tls_server_name)
    argv += list(args)
    cp = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError("kubectl %s failed (rc=%d): %s"
                             % (" ".join(args), cp.returncode, cp.stderr))
    return cp


class SynCounter:
    """Counts the TCP connection attempts (SYNs) that reach given addresses
    on the loopback interface, from a raw packet socket (needs root).

    HAProxy's plain TCP checks never complete a connection (SYN, SYN-ACK,
    then a reset instead of the last ACK), so a workload never accepts
    them: the SYNs are what a check costs a backend, and what this counts.
    A classic BPF filter keeps everything but IPv4 SYNs in the kernel.
    """

    # ethertype IPv4, protocol TCP, not a fragment, SYN without ACK
    _FILTER = [(0x28, 0, 0, 12), (0x15, 0, 9, 0x800), (0x30, 0, 0, 23),
               (0x15, 0, 7, 6), (0x28, 0, 0, 20), (0x45, 5, 0, 0x1fff),
               (0xb1, 0, 0, 14), (0x50, 0, 0, 27), (0x54, 0, 0, 0x12),
               (0x15, 0, 1, 0x02), (0x06, 0, 0, 128), (0x06, 0, 0, 0)]
    SO_ATTACH_FILTER = 26
    PACKET_OUTGOING = 4

    def __init__(self, targets):
        """targets: {(ip, port)} whose SYNs count."""
        import ctypes
        import struct
        import threading
        self._struct = struct
        self.targets = {(socket.inet_aton(ip), port) for ip, port in targets}
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        prog = b"".join(struct.pack("HBBI", *ins) for ins in self._FILTER)
        self._buf = ctypes.create_string_buffer(prog)
        fprog = struct.pack("HL", len(self._FILTER), ctypes.addressof(self._buf))
        self.sock.setsockopt(socket.SOL_SOCKET, self.SO_ATTACH_FILTER, fprog)
        self.sock.bind(("lo", 0))
        self.sock.settimeout(0.1)
        self.count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                pkt, addr = self.sock.recvfrom(256)
            except socket.timeout:
                continue
            except OSError:
                break
            if addr[2] == self.PACKET_OUTGOING or len(pkt) < 38:
                continue            # loopback shows each packet twice
            ihl = (pkt[14] & 0x0f) * 4
            dst = pkt[30:34]
            port = self._struct.unpack("!H", pkt[14 + ihl + 2:14 + ihl + 4])[0]
            if (dst, port) in self.targets:
                with self._lock:
                    self.count += 1

    def read(self):
        with self._lock:
            return self.count

    def rate(self, seconds):
        """SYNs a second over a window of that many seconds from now."""
        c0, t0 = self.read(), time.monotonic()
        time.sleep(seconds)     # a measuring window, not a wait for a condition
        return (self.read() - c0) / (time.monotonic() - t0)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
