"""Plumbing shared by the simulators: an HTTPS threading server on loopback,
port selection below 32768, the port-file readiness signal, request logging
and small JSON helpers.
"""

import errno
import json
import os
import random
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that does the TLS handshake in the request thread,
    so a slow or broken client cannot stall the accept loop."""

    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 64

    def __init__(self, addr, handler, cert, key):
        self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ssl_ctx.load_cert_chain(cert, key)
        # Go clients offer h2 first; only HTTP/1.1 is spoken here.
        self.ssl_ctx.set_alpn_protocols(["http/1.1"])
        super().__init__(addr, handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        # Handshake failures and clients hanging up are routine in tests.
        if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
            log("connection from %s: %s" % (client_address[0], exc))
        else:
            super().handle_error(request, client_address)


def bind_server(listen, port, handler, cert, key):
    """Bind a TLSServer; port 0 means a random free port in [10000, 32000)."""
    if port:
        return TLSServer((listen, port), handler, cert, key)
    for _ in range(200):
        try:
            return TLSServer((listen, random.randrange(10000, 32000)), handler, cert, key)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
    raise SystemExit("no free port on %s" % listen)


def write_port_file(path, port):
    """Write the port atomically (tmp + rename): the readiness signal."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def serve(server, port_file):
    """Announce readiness and serve until SIGTERM/SIGINT."""
    port = server.server_address[1]
    if port_file:
        write_port_file(port_file, port)
    log("listening on %s:%d" % server.server_address[:2])

    def stop(signum, frame):
        # shutdown() blocks until serve_forever returns, so not in this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever(poll_interval=0.1)
    server.server_close()


_log_lock = threading.Lock()


def log(msg):
    with _log_lock:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()


class JSONHandler(BaseHTTPRequestHandler):
    """Base request handler: TLS wrap, HTTP/1.1, body reading, JSON replies.

    Logs one line per request (method, path, status); headers, and so tokens,
    are never logged.
    """

    protocol_version = "HTTP/1.1"
    # Keep-alive connections idle longer than this are dropped.
    timeout = 120

    def setup(self):
        self.request = self.server.ssl_ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_request(self, code="-", size="-"):
        log("%s %s %s" % (self.command, self.path, getattr(code, "value", code)))

    def log_message(self, format, *args):
        pass  # log_request covers what we want; errors arrive via log()

    def read_body(self):
        """The request body as bytes (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_json(self, code, obj, headers=None):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_text(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # Chunked streaming (watches).
    def start_chunked(self, code, content_type="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def peer_closed(self):
        """True when the client has closed its side of the connection.

        Used by long-running streams: a readable socket with nothing to read
        (EOF) means the peer is gone.
        """
        sock = self.connection
        saved = sock.gettimeout()
        try:
            sock.setblocking(False)
            try:
                return sock.recv(1) == b""
            finally:
                sock.settimeout(saved)
        except ssl.SSLWantReadError:
            return False
        except BlockingIOError:
            return False
        except (OSError, ssl.SSLError):
            return True


def load_json_file(path):
    with open(path) as f:
        return json.load(f)


def is_loopback(host):
    try:
        return socket.inet_aton(host)[0] == 127
    except OSError:
        return False
