#!/usr/bin/python3
"""An Enterprise PKS / TKGI API and UAA simulator, over HTTPS.

UAA:  POST /oauth/token  (client_credentials with HTTP Basic client id:secret,
      or password grant with username/password = client id/secret; with
      --username and --password, the password grant wants those and the
      client authenticated as id:secret, as UAA does; the secret may be
      empty, like the PKS CLI's public client pks_cli)
PKS:  GET /v1/clusters, GET /v1/clusters/{name}, POST /v1/clusters/{name}/binds
      (Bearer token issued by /oauth/token and not expired)
Test control, no auth, under /_sim/:
  PUT    /_sim/clusters/{uuid}   {"cluster": {...}, "kubeconfig": {...}}
         (uuid percent-encoded)
  DELETE /_sim/clusters/{uuid}
  GET    /_sim/requests          {"/v1/clusters": 3, ...} requests per path
  GET    /_sim/token-requests    [{"grant_type", "username", "client_id",
                                   "status"}, ...] every POST /oauth/token
         in order: the client as authenticated (Basic, else the form), the
         status answered; passwords and secrets are never kept
  PUT    /_sim/faults            {"path": "/v1/clusters", "status": 503,
                                  "count": 2, "delay": 0.0}
         the next `count` requests whose path starts with `path` are delayed
         by `delay` seconds and, if status is non-zero, answered with it
         (count -1 = until cleared); with "answer": N instead, a request
         is answered as usual but with status N (binds: 201 Created, say);
         DELETE /_sim/faults clears them all.
  POST   /_sim/expire-tokens     every issued token becomes invalid

Readiness: the listening port is written to --port-file (atomically).
"""

import argparse
import base64
import collections
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simcommon  # noqa: E402


class State:
    """Clusters by uuid, issued tokens, request counts and faults."""

    def __init__(self, token_ttl):
        self.lock = threading.Lock()
        self.token_ttl = token_ttl
        self.clusters = collections.OrderedDict()   # uuid -> {"cluster", "kubeconfig"}
        self.tokens = {}                            # token -> monotonic expiry
        self.requests = collections.Counter()
        self.token_requests = []                    # see module doc
        self.faults = []                            # dicts, see module doc

    def put_cluster(self, entry):
        if not isinstance(entry, dict) or not isinstance(entry.get("cluster"), dict):
            raise ValueError('want {"cluster": {...}, "kubeconfig": {...}}')
        uuid = entry["cluster"].get("uuid")
        if not uuid:
            raise ValueError("cluster.uuid is required")
        with self.lock:
            self.clusters[uuid] = entry
        return uuid

    def by_name(self, name):
        with self.lock:
            for entry in self.clusters.values():
                if entry["cluster"].get("name") == name:
                    return entry
        return None

    def issue_token(self):
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_ttl
        return token

    def token_valid(self, token):
        with self.lock:
            expiry = self.tokens.get(token)
            return expiry is not None and time.monotonic() < expiry

    def take_fault(self, path):
        """The fault that applies to this request, consuming one use."""
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault["path"]) and fault["count"] != 0:
                    if fault["count"] > 0:
                        fault["count"] -= 1
                    return dict(fault)
        return None


class Handler(simcommon.JSONHandler):
    # Set on the class by main().
    state = None
    client_id = None
    client_secret = None
    username = None     # None: the password grant takes the client's id/secret
    password = None

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        path = urllib.parse.urlsplit(self.path).path
        body = self.read_body()
        if path.startswith("/_sim/"):
            return self.control(method, path, body)
        state = self.state
        with state.lock:
            state.requests[path] += 1
        fault = state.take_fault(path)
        answer = 200
        if fault:
            time.sleep(fault.get("delay", 0))
            if fault.get("status"):
                return self.send_json(fault["status"], {"error": "injected fault"})
            answer = fault.get("answer", 200)
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/oauth/token":
            return self.token(body)
        if parts[:2] != ["v1", "clusters"]:
            return self.send_json(404, {"error": "not found"})
        auth = self.headers.get("Authorization", "")
        if not (auth.startswith("Bearer ") and state.token_valid(auth[7:])):
            return self.send_json(401, {"error": "invalid_token",
                                        "error_description": "missing, invalid or expired token"})
        if method == "GET" and len(parts) == 2:
            with state.lock:
                clusters = [e["cluster"] for e in state.clusters.values()]
            return self.send_json(200, clusters)
        entry = state.by_name(parts[2]) if len(parts) >= 3 else None
        if method == "GET" and len(parts) == 3:
            if entry is None:
                return self.send_json(404, {"error": "cluster %s not found" % parts[2]})
            return self.send_json(200, entry["cluster"])
        if method == "POST" and len(parts) == 4 and parts[3] == "binds":
            if entry is None or not entry.get("kubeconfig"):
                return self.send_json(404, {"error": "cluster %s not found" % parts[2]})
            return self.send_json(answer, entry["kubeconfig"])
        return self.send_json(404, {"error": "not found"})

    def token(self, body):
        """UAA /oauth/token: client credentials from Basic auth or the form;
        the password grant's user from the form."""
        form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
        expected = (self.client_id, self.client_secret)
        # Credentials as offered: form fields, and HTTP Basic both as sent and
        # form-decoded (RFC 6749 2.3.1 says to form-encode before Base64; many
        # clients do not).
        offered = [(form.get("client_id"), form.get("client_secret"))]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
            except ValueError:
                decoded = ""  # not Base64 of UTF-8: no credentials
            user, _, password = decoded.partition(":")
            offered += [(user, password), (urllib.parse.unquote_plus(user),
                                           urllib.parse.unquote_plus(password))]
        grant = form.get("grant_type")
        status = self.check_grant(grant, form, expected, offered)
        with self.state.lock:
            self.state.token_requests.append({
                "grant_type": grant, "username": form.get("username"),
                "client_id": offered[1][0] if len(offered) > 1 else offered[0][0],
                "status": status})
        if status == 400:
            return self.send_json(400, {"error": "unsupported_grant_type",
                                        "error_description": "Unsupported grant type: %s"
                                        % grant})
        if status == 401:
            return self.send_json(401, {"error": "unauthorized",
                                        "error_description": "Bad credentials"})
        self.send_json(200, {"access_token": self.state.issue_token(),
                             "token_type": "bearer",
                             "expires_in": self.state.token_ttl,
                             "scope": "pks.clusters.admin",
                             "jti": secrets.token_hex(16)},
                       headers={"Cache-Control": "no-store"})

    def check_grant(self, grant, form, expected, offered):
        """200, 400 (unsupported grant) or 401 (bad credentials)."""
        if grant == "password":
            user = (form.get("username"), form.get("password"))
            if self.username is None:
                return 200 if user == expected else 401
            return 200 if user == (self.username, self.password) and \
                expected in offered else 401
        if grant == "client_credentials":
            return 200 if expected in offered else 401
        return 400

    def control(self, method, path, body):
        state = self.state
        parts = path.strip("/").split("/")
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as e:
            return self.send_json(400, {"error": "invalid JSON: %s" % e})
        if parts[1:2] == ["clusters"] and len(parts) == 3:
            if method == "PUT":
                if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict):
                    return self.send_json(400, {"error": 'want {"cluster": {...}, '
                                                         '"kubeconfig": {...}}'})
                # The uuid in the path wins over the one in the body; it is
                # percent-encoded, so that tests can hand out hostile ones.
                uuid = urllib.parse.unquote(parts[2])
                state.put_cluster(dict(data, cluster=dict(data["cluster"], uuid=uuid)))
                return self.send_json(200, {"uuid": uuid})
            if method == "DELETE":
                uuid = urllib.parse.unquote(parts[2])
                with state.lock:
                    gone = state.clusters.pop(uuid, None)
                return self.send_json(200 if gone else 404, {"uuid": uuid})
        if path == "/_sim/requests" and method == "GET":
            with state.lock:
                counts = dict(state.requests)
            return self.send_json(200, counts)
        if path == "/_sim/token-requests" and method == "GET":
            with state.lock:
                got = [dict(r) for r in state.token_requests]
            return self.send_json(200, got)
        if path == "/_sim/faults":
            if method not in ("PUT", "DELETE") or (method == "PUT" and
                                                   not isinstance(data, dict)):
                return self.send_json(400, {"error": "PUT a fault object or DELETE"})
            with state.lock:
                if method == "PUT":
                    state.faults.append(dict({"path": "/", "status": 0, "count": -1,
                                              "delay": 0.0}, **data))
                else:
                    state.faults.clear()
                faults = [dict(f) for f in state.faults]
            return self.send_json(200, {"faults": faults})
        if path == "/_sim/expire-tokens" and method == "POST":
            with state.lock:
                state.tokens.clear()
            return self.send_json(200, {})
        return self.send_json(404, {"error": "not found"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="loopback address to bind")
    ap.add_argument("--port", type=int, required=True, help="0 = pick a free one")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True, help="may be empty")
    ap.add_argument("--username", help="the password grant's user (with --password)")
    ap.add_argument("--password")
    ap.add_argument("--token-ttl", type=int, default=43199, help="seconds")
    ap.add_argument("--state", help='JSON file {"clusters": [{"cluster", "kubeconfig"}]}')
    ap.add_argument("--port-file", help="written with the port once listening")
    args = ap.parse_args()
    if not simcommon.is_loopback(args.listen):
        ap.error("--listen must be an address in 127.0.0.0/8")
    if (args.username is None) != (args.password is None):
        ap.error("--username and --password go together")

    Handler.state = State(args.token_ttl)
    Handler.client_id = args.client_id
    Handler.client_secret = args.client_secret
    Handler.username = args.username
    Handler.password = args.password
    if args.state:
        for entry in simcommon.load_json_file(args.state).get("clusters", []):
            Handler.state.put_cluster(entry)
    server = simcommon.bind_server(args.listen, args.port, Handler, args.cert, args.key)
    simcommon.serve(server, args.port_file)


if __name__ == "__main__":
    main()
