#!/usr/bin/python3
"""A Kubernetes API server simulator, good enough for the real kubectl and for
portico's watchers.

Serves, over HTTPS with a bearer token, in memory:
  v1 namespaces, services, nodes; discovery.k8s.io/v1 endpointslices;
  networking.istio.io/<each --istio-versions> virtualservices (one store,
  served under every version with apiVersion rewritten);
  gateway.networking.k8s.io gatewayclasses and gateways (v1, v1beta1),
  tcproutes and tlsroutes (v1alpha2), referencegrants (v1beta1), with
  their status subresources (--no-gateway-api: not served).
with discovery, list (limit/continue, label and field selectors), watch
(chunked JSON lines, history replay, bookmarks, timeoutSeconds), get, create,
update, delete, and merge / strategic-merge (as merge) / JSON patches.

Leniencies, for tests' convenience: namespaces need not exist for namespaced
objects, status given on create is kept, updates need no resourceVersion.

Test control (bearer token required like everything else):
  POST /_sim/close-watches[?abort=true]  ends every open watch, cleanly (final
  chunk) or by dropping the connection mid-stream.
  POST /_sim/compact  the history is compacted up to now: a watch from an
  older resourceVersion gets an in-stream ERROR 410 Expired.
  POST /_sim/rotate-token {"token": T}  only T is accepted from now on (a
  401 for the old one, as after a token expires).
  PUT /_sim/faults {"kind", "count", "path", "on", ...}  a fault switch (see
  Faults); DELETE /_sim/faults clears them; GET /_sim/requests counts
  requests by verb and path.
  GET /_sim/sent?rv=N  when the watch event of resourceVersion N was first
  written to a watch stream ({"monotonic": seconds, CLOCK_MONOTONIC, the
  clock every process on the machine shares}), for benchmarks that time
  from the watch event; 404 until it was.

Readiness: the listening port is written to --port-file (atomically).
"""

import argparse
import base64
import collections
import copy
import datetime
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simcommon  # noqa: E402

BOOKMARK_INTERVAL = 1.0    # seconds between BOOKMARKs when asked for
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch",
             "update", "watch"]


class RType:
    """One resource type: where it is served and how it is named."""

    def __init__(self, group, versions, plural, singular, kind, namespaced,
                 short_names=(), categories=(), has_status=True):
        self.group = group
        self.versions = list(versions)
        self.plural = plural
        self.singular = singular
        self.kind = kind
        self.namespaced = namespaced
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.has_status = has_status

    def api_version(self, version):
        return "%s/%s" % (self.group, version) if self.group else version

    def qualified(self):
        """'virtualservices.networking.istio.io' as used in error messages."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    def discovery(self):
        """APIResource entries (the resource and its status subresource)."""
        out = [{"name": self.plural, "singularName": self.singular,
                "namespaced": self.namespaced, "kind": self.kind,
                "verbs": ALL_VERBS}]
        if self.short_names:
            out[0]["shortNames"] = self.short_names
        if self.categories:
            out[0]["categories"] = self.categories
        if self.has_status:
            out.append({"name": self.plural + "/status", "singularName": "",
                        "namespaced": self.namespaced, "kind": self.kind,
                        "verbs": ["get", "patch", "update"]})
        return out


GW_GROUP = "gateway.networking.k8s.io"


def resource_types(istio_versions, gateway_api=True):
    return [
        RType("", ["v1"], "namespaces", "namespace", "Namespace", False, ["ns"]),
        RType("", ["v1"], "services", "service", "Service", True, ["svc"], ["all"]),
        RType("", ["v1"], "nodes", "node", "Node", False, ["no"]),
        RType("discovery.k8s.io", ["v1"], "endpointslices", "endpointslice",
              "EndpointSlice", True, has_status=False),
        RType("networking.istio.io", istio_versions, "virtualservices",
              "virtualservice", "VirtualService", True, ["vs"],
              ["istio-io", "networking-istio-io"]),
    ] + ([] if not gateway_api else [
        # The Gateway API, as its standard and experimental CRDs serve it.
        RType(GW_GROUP, ["v1", "v1beta1"], "gatewayclasses", "gatewayclass",
              "GatewayClass", False, ["gc"], ["gateway-api"]),
        RType(GW_GROUP, ["v1", "v1beta1"], "gateways", "gateway", "Gateway",
              True, ["gtw"], ["gateway-api"]),
        RType(GW_GROUP, ["v1alpha2"], "tcproutes", "tcproute", "TCPRoute",
              True, [], ["gateway-api"]),
        RType(GW_GROUP, ["v1alpha2"], "tlsroutes", "tlsroute", "TLSRoute",
              True, [], ["gateway-api"]),
        RType(GW_GROUP, ["v1beta1"], "referencegrants", "referencegrant",
              "ReferenceGrant", True, ["refgrant"], ["gateway-api"],
              has_status=False),
    ])


class APIError(Exception):
    """Becomes a metav1.Status reply."""

    REASONS = {400: "BadRequest", 401: "Unauthorized", 404: "NotFound",
               405: "MethodNotAllowed", 409: "Conflict", 410: "Expired",
               415: "UnsupportedMediaType", 422: "Invalid"}

    def __init__(self, code, message, reason=None, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason or self.REASONS.get(code, "InternalError")
        self.details = details

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {},
              "status": "Failure", "message": str(self), "reason": self.reason,
              "code": self.code}
        if self.details:
            st["details"] = self.details
        return st


def not_found(rt, name):
    return APIError(404, '%s "%s" not found' % (rt.qualified(), name),
                    details={"name": name, "group": rt.group, "kind": rt.plural})


def conflict(rt, name):
    return APIError(409, 'Operation cannot be fulfilled on %s "%s": the object has '
                    'been modified; please apply your changes to the latest version '
                    'and try again' % (rt.qualified(), name),
                    details={"name": name, "group": rt.group, "kind": rt.plural})


def parse_bool(value, name):
    """Go's strconv.ParseBool, as the apiserver uses for query booleans."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise APIError(400, 'invalid value for %s: %r (want a boolean)' % (name, value))


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- selectors

_LABEL_REQ = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<val>[A-Za-z0-9_.-]*)"
    r"|\s(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?\s*(?:,|$)")


def parse_label_selector(text):
    """A predicate over a labels dict, for the labelSelector syntax."""
    reqs, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _LABEL_REQ.match(text, pos)
        if not m or m.end() == pos:
            raise APIError(400, "unable to parse requirement: %r" % text)
        reqs.append(m.groupdict())
        pos = m.end()

    def match(labels):
        for r in reqs:
            key, present = r["key"], r["key"] in labels
            if r["op"] in ("=", "=="):
                ok = labels.get(key) == r["val"]
            elif r["op"] == "!=":
                ok = labels.get(key) != r["val"]
            elif r["setop"]:
                values = {v.strip() for v in r["set"].split(",")}
                ok = (labels.get(key) in values) if r["setop"] == "in" \
                    else (labels.get(key) not in values)
            else:
                ok = present != bool(r["neg"])
            if not ok:
                return False
        return True
    return match


def parse_field_selector(text):
    """A predicate over an object; only metadata.name/namespace are supported,
    as for custom resources on a real apiserver."""
    reqs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([A-Za-z.]+)\s*(==|=|!=)\s*(.*)", part)
        if not m or m.group(1) not in ("metadata.name", "metadata.namespace"):
            raise APIError(400, 'field label not supported: %r' % part)
        reqs.append((m.group(1).split(".")[1], m.group(2) != "!=", m.group(3)))

    def match(obj):
        md = obj.get("metadata", {})
        return all((md.get(f, "") == v) == eq for f, eq, v in reqs)
    return match


# ---------------------------------------------------------------- patches

def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strip_directives(patch):
    """Drop strategic-merge-patch directives ($patch, $setElementOrder/...)."""
    if isinstance(patch, dict):
        return {k: strip_directives(v) for k, v in patch.items()
                if not k.startswith("$")}
    return patch


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise APIError(422, "invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc, ops):
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    doc = copy.deepcopy(doc)

    def walk(parts):
        node = doc
        for p in parts[:-1]:
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node, parts[-1]

    def get(path):
        node = doc
        for p in _pointer(path):
            node = node[int(p)] if isinstance(node, list) else node[p]
        return node

    def remove(path):
        parent, last = walk(_pointer(path))
        return parent.pop(int(last)) if isinstance(parent, list) else parent.pop(last)

    def add(path, value):
        parent, last = walk(_pointer(path))
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value

    if not isinstance(ops, list):
        raise APIError(400, "a JSON patch must be a list of operations")
    try:
        for op in ops:
            kind, path = op["op"], op["path"]
            if kind == "add":
                add(path, copy.deepcopy(op["value"]))
            elif kind == "remove":
                remove(path)
            elif kind == "replace":
                remove(path)
                add(path, copy.deepcopy(op["value"]))
            elif kind == "move":
                add(path, remove(op["from"]))
            elif kind == "copy":
                add(path, copy.deepcopy(get(op["from"])))
            elif kind == "test":
                if get(path) != op["value"]:
                    raise APIError(422, "the server rejected our request due to an "
                                   "error in our request: test failed at %s" % path)
            else:
                raise APIError(400, "unknown JSON patch op %r" % kind)
    except (KeyError, IndexError, ValueError, TypeError) as e:
        raise APIError(422, "the server rejected our request due to an error in "
                       "our request: JSON patch failed: %r" % e)
    return doc


# ---------------------------------------------------------------- faults

class Faults:
    """Runtime fault switches, each applying to the next `count` requests
    (-1: until cleared) whose path starts with `path` and whose verb is `on`
    ("list": any GET that is not a watch, "watch", or "any"):

      status            answer {"status": N} (500, 503, 401...) with a Status
      malformed         a list's body, or a watch's first line, is not JSON
      continue-expired  a list page asked with a continue token: 410 Expired
      watch-error       a watch sends one ERROR event, {"code", "reason"}
                        (410 and Expired or Gone by default), and ends
      split             a watch's events go out in chunks of `bytes` bytes,
                        pieces of one event across chunks and several events
                        in one (a list body likewise)
      slow              as split, with `delay` seconds between chunks
      stall             watches send their headers, then nothing, ever; set,
                        it also silences the watches open at that moment
      bookmarks         a BOOKMARK every `interval` seconds (when asked for)
      empty             a watch is answered 200 with no event and ends at once
      corrupt           each ADDED/MODIFIED/DELETED line of a watch is cut in
                        half (not JSON) with probability `fraction` (default
                        0.3), drawn from one generator seeded with `seed`
    """

    KINDS = ("status", "malformed", "continue-expired", "watch-error", "split",
             "slow", "stall", "bookmarks", "empty", "corrupt")

    def __init__(self):
        self.lock = threading.Lock()
        self.active = []

    def add(self, f):
        if not isinstance(f, dict) or f.get("kind") not in self.KINDS:
            raise APIError(400, "a fault is {\"kind\": one of %s, ...}" % ", ".join(self.KINDS))
        f = dict({"count": -1, "path": "/", "on": "any"}, **f)
        if f["on"] not in ("any", "list", "watch") or not isinstance(f["count"], int):
            raise APIError(400, "bad fault %r" % f)
        if f["kind"] == "corrupt":
            # One generator for every watch the fault reaches: a watch that
            # starts again is not cut at the same events again.
            f["rng"] = random.Random(f.get("seed", 0))
        with self.lock:
            self.active.append(f)
        return f

    def clear(self):
        with self.lock:
            self.active.clear()

    def take(self, kinds, path, verb):
        """The first fault of one of kinds for this request, consuming a use."""
        with self.lock:
            for f in self.active:
                if f["kind"] in kinds and f["count"] != 0 and path.startswith(f["path"]) \
                        and f["on"] in ("any", verb):
                    if f["count"] > 0:
                        f["count"] -= 1
                    return dict(f)
        return None


# ---------------------------------------------------------------- the store

Event = collections.namedtuple("Event", "rv rtype type obj")


class Store:
    """All objects, one global resourceVersion counter and the event history.

    Objects are keyed by resource type then (namespace, name); namespace is ""
    for cluster-scoped types. A Condition wakes watchers on every change.
    """

    def __init__(self, history_len):
        self.cond = threading.Condition()
        self.rv = 0
        self.objects = collections.defaultdict(dict)
        self.history = collections.deque(maxlen=history_len)
        # Bumped by close_watches(); open watches end when it changes.
        self.watch_epoch = 0
        self.abort_watches = False
        # Bumped by a stall fault; the watches open then go silent.
        self.stall_epoch = 0
        self.compacted = 0
        # resourceVersion -> when its event first left on a watch stream
        self.sent = collections.OrderedDict()

    def sent_at(self, rv, when):
        with self.cond:
            if rv not in self.sent:
                self.sent[rv] = when
                if len(self.sent) > 200000:
                    self.sent.popitem(last=False)

    def compact(self):
        """Forget the history up to now, as etcd compaction does."""
        with self.cond:
            self.compacted = self.rv

    def close_watches(self, abort):
        """End every open watch: cleanly, or by dropping the connection."""
        with self.cond:
            self.watch_epoch += 1
            self.abort_watches = abort
            self.cond.notify_all()

    def floor(self):
        """Watches from an rv below this can no longer be served (410)."""
        if len(self.history) < self.history.maxlen:
            return self.compacted
        return max(self.compacted, self.history[0].rv - 1)

    def events_after(self, rv, rt):
        """History events of type rt newer than rv, oldest first (caller
        holds the lock)."""
        out = []
        for ev in reversed(self.history):
            if ev.rv <= rv:
                break
            if ev.rtype is rt:
                out.append(ev)
        out.reverse()
        return out

    def _emit(self, rt, type_, obj):
        """Record a change at a new resourceVersion (caller holds the lock)."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.history.append(Event(self.rv, rt, type_, copy.deepcopy(obj)))
        self.cond.notify_all()

    def get(self, rt, ns, name):
        with self.cond:
            obj = self.objects[rt].get((ns, name))
            if obj is None:
                raise not_found(rt, name)
            return copy.deepcopy(obj)

    def list(self, rt, ns):
        """(sorted objects in ns or all namespaces, current rv)."""
        with self.cond:
            items = [copy.deepcopy(o) for (ons, _), o in sorted(self.objects[rt].items())
                     if ns is None or ons == ns]
            return items, self.rv

    def create(self, rt, ns, obj):
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            if not md.get("generateName"):
                raise APIError(422, "metadata.name: Required value: name or "
                               "generateName is required", reason="Invalid")
            md["name"] = md["generateName"] + uuid.uuid4().hex[:5]
        if rt.namespaced:
            if md.get("namespace", ns) != ns:
                raise APIError(400, "the namespace of the provided object does not "
                               "match the namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        with self.cond:
            key = (ns or "", md["name"])
            if key in self.objects[rt]:
                raise APIError(409, '%s "%s" already exists' % (rt.qualified(), md["name"]),
                               reason="AlreadyExists",
                               details={"name": md["name"], "group": rt.group,
                                        "kind": rt.plural})
            tidy_metadata(md)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_rfc3339()
            md["generation"] = 1
            self.objects[rt][key] = obj
            self._emit(rt, "ADDED", obj)
            return copy.deepcopy(obj)

    def modify(self, rt, ns, name, change, subresource=None, precondition_rv=None):
        """Apply change(old) -> new under the lock, with optimistic locking.

        The server owns identity fields; with a status subresource, writes to
        the main resource keep the old status and writes to /status keep
        everything but the status. A no-op change bumps nothing.
        """
        with self.cond:
            old = self.objects[rt].get((ns or "", name))
            if old is None:
                raise not_found(rt, name)
            new = change(copy.deepcopy(old))
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise APIError(400, "the result is not an object with metadata")
            want_rv = new["metadata"].get("resourceVersion") or precondition_rv
            if want_rv and want_rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            if new["metadata"].get("name", name) != name:
                raise APIError(400, "the name of the object (%s) does not match the "
                               "name on the URL (%s)" % (new["metadata"]["name"], name))
            if subresource == "status":
                new = dict(copy.deepcopy(old), status=new.get("status"))
                if new["status"] is None:
                    del new["status"]
            elif rt.has_status:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            tidy_metadata(new["metadata"])
            for field in ("name", "namespace", "uid", "creationTimestamp",
                          "resourceVersion", "generation"):
                if field in old["metadata"]:
                    new["metadata"][field] = old["metadata"][field]
                else:
                    new["metadata"].pop(field, None)
            if new == old:
                return copy.deepcopy(old)
            if _spec_of(new) != _spec_of(old):
                new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
            self.objects[rt][(ns or "", name)] = new
            self._emit(rt, "MODIFIED", new)
            return copy.deepcopy(new)

    def delete(self, rt, ns, name, precondition_rv=None, precondition_uid=None):
        with self.cond:
            obj = self.objects[rt].get((ns or "", name))
            if obj is None:
                raise not_found(rt, name)
            md = obj["metadata"]
            if (precondition_rv and precondition_rv != md["resourceVersion"]) or \
                    (precondition_uid and precondition_uid != md["uid"]):
                raise conflict(rt, name)
            if rt.plural == "namespaces":
                # Cascade: everything in the namespace goes with it.
                for other, objs in self.objects.items():
                    if other.namespaced:
                        for key in sorted(k for k in objs if k[0] == name):
                            self._emit(other, "DELETED", objs.pop(key))
            del self.objects[rt][(ns or "", name)]
            self._emit(rt, "DELETED", obj)
            return copy.deepcopy(obj)

    def load_seed(self, rtypes, objects):
        """Create seed objects as they are (status included)."""
        for obj in objects:
            rt = find_rtype(rtypes, obj.get("apiVersion", ""), obj.get("kind", ""))
            ns = obj.get("metadata", {}).get("namespace", "default") if rt.namespaced else ""
            self.create(rt, ns, copy.deepcopy(obj))


def tidy_metadata(md):
    """Empty label/annotation maps vanish, as ObjectMeta's omitempty does."""
    for field in ("labels", "annotations"):
        if not md.get(field, True):
            del md[field]


def _spec_of(obj):
    """Everything that counts towards metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def find_rtype(rtypes, api_version, kind):
    group = api_version.rpartition("/")[0]
    for rt in rtypes:
        if rt.group == group and rt.kind == kind:
            return rt
    raise SystemExit("seed: unsupported object %s %s" % (api_version, kind))


# ---------------------------------------------------------------- HTTP

class Handler(simcommon.JSONHandler):
    # Set on the class by main().
    token = None
    store = None
    rtypes = None
    server_version = None
    faults = None
    lock = threading.Lock()
    requests = collections.Counter()

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            if path in ("/healthz", "/livez", "/readyz"):
                return self.send_text(200, "ok")
            if self.headers.get("Authorization") != "Bearer " + self.token:
                raise APIError(401, "Unauthorized")
            body = self.read_body()
            if path.startswith("/_sim/"):
                return self.control(method, path, query, body)
            verb = "watch" if method == "GET" and "watch" in query and \
                parse_bool(query["watch"], "watch") else \
                "list" if method == "GET" else method.lower()
            with self.lock:
                self.requests["%s %s" % (verb, path)] += 1
            fault = self.faults.take(("status",), path, verb)
            if fault:
                raise APIError(fault.get("status", 500), "injected fault")
            self.shape = self.faults.take(("split", "slow"), path, verb)
            if path == "/version":
                return self.send_json(200, self.version_info())
            if path.startswith("/openapi/") and not path.startswith("/openapi/v3"):
                # kubectl copes without OpenAPI v2; v3 is the little that
                # kubectl apply needs (openapi_v3).
                raise APIError(404, "the server could not find the requested resource")
            reply = self.discovery(path)
            if reply is not None:
                return self.send_json(200, reply)
            return self.resource_request(method, path, query, body)
        except APIError as e:
            self.send_json(e.code, e.status())

    def control(self, method, path, query, body):
        """The /_sim/ endpoints (see the module's doc)."""
        store = self.store
        if path == "/_sim/close-watches" and method == "POST":
            store.close_watches(parse_bool(query.get("abort", "false"), "abort"))
        elif path == "/_sim/compact" and method == "POST":
            store.compact()
        elif path == "/_sim/rotate-token" and method == "POST":
            token = self.json_body(body).get("token")
            if not isinstance(token, str) or not token:
                raise APIError(400, 'want {"token": "..."}')
            Handler.token = token
        elif path == "/_sim/faults" and method == "PUT":
            f = self.faults.add(self.json_body(body))
            if f["kind"] == "stall":
                with store.cond:
                    store.stall_epoch += 1
                    store.cond.notify_all()
        elif path == "/_sim/faults" and method == "DELETE":
            self.faults.clear()
        elif path == "/_sim/requests" and method == "GET":
            with self.lock:
                return self.send_json(200, dict(self.requests))
        elif path == "/_sim/sent" and method == "GET":
            with store.cond:
                when = store.sent.get(query.get("rv", ""))
            if when is None:
                raise APIError(404, "no watch event of that resourceVersion sent")
            return self.send_json(200, {"monotonic": when})
        else:
            raise APIError(404, "no such control endpoint")
        return self.send_json(200, {})

    def send_json(self, code, obj, headers=None):
        """As JSONHandler's, but shaped by a split or slow fault."""
        shape = getattr(self, "shape", None)
        if shape is None:
            return super().send_json(code, obj, headers)
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.write_shaped(body)
        self.end_chunked()

    def write_shaped(self, data):
        """data in chunks of the shape's size, with its delay between them."""
        size = max(1, int(self.shape.get("bytes", 1)))
        for i in range(0, len(data), size):
            if i and self.shape.get("delay"):
                time.sleep(self.shape["delay"])
            self.write_chunk(data[i:i + size])

    def version_info(self):
        major, minor, _ = self.server_version.split(".")
        return {"major": major, "minor": minor, "gitVersion": "v" + self.server_version,
                "gitCommit": "0" * 40, "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.4",
                "compiler": "gc", "platform": "linux/amd64"}

    # Legacy (unaggregated) discovery. kubectl asks for the aggregated
    # apidiscovery.k8s.io/v2 form first; a plain application/json reply makes
    # it fall back to these documents.
    def groups(self):
        """{group: [versions]} in discovery order, preferred version first."""
        out = collections.OrderedDict()
        for rt in self.rtypes:
            if rt.group:
                out.setdefault(rt.group, [])
                for v in rt.versions:
                    if v not in out[rt.group]:
                        out[rt.group].append(v)
        return out

    def api_group(self, group, versions):
        vs = [{"groupVersion": "%s/%s" % (group, v), "version": v} for v in versions]
        return {"name": group, "versions": vs, "preferredVersion": vs[0]}

    def resource_list(self, group, version):
        resources = [r for rt in self.rtypes
                     if rt.group == group and version in rt.versions
                     for r in rt.discovery()]
        if not resources:
            return None
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (group, version) if group else version,
                "resources": resources}

    def openapi_v3(self, parts):
        """Just enough OpenAPI v3 for kubectl's validation: every PATCH takes
        the fieldValidation query parameter, so kubectl leaves validation to
        the server (which, here, is lenient) instead of asking for schemas."""
        gvs = collections.OrderedDict()
        for rt in self.rtypes:
            for v in rt.versions:
                key = ("apis/%s/%s" % (rt.group, v)) if rt.group else "api/" + v
                gvs.setdefault(key, []).append((rt, v))
        if len(parts) == 2:
            return {"paths": {k: {"serverRelativeURL": "/openapi/v3/%s?hash=0" % k}
                              for k in gvs}}
        key = "/".join(parts[2:])
        if key not in gvs:
            raise APIError(404, "the server could not find the requested resource")
        paths = {}
        for rt, v in gvs[key]:
            gvk = {"group": rt.group, "version": v, "kind": rt.kind}
            prefix = "/" + key + ("/namespaces/{namespace}" if rt.namespaced else "")
            paths["%s/%s/{name}" % (prefix, rt.plural)] = {"patch": {
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [{"name": "fieldValidation", "in": "query",
                                "schema": {"type": "string"}}]}}
        return {"openapi": "3.0.0", "info": {"title": "k8s_sim", "version": "v"},
                "paths": paths}

    def discovery(self, path):
        """The discovery document at path, or None when path is not one."""
        parts = path.strip("/").split("/")
        if parts[:2] == ["openapi", "v3"]:
            return self.openapi_v3(parts)
        if path == "/api":
            host, port = self.server.server_address[:2]
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "%s:%d" % (host, port)}]}
        if path == "/api/v1":
            return self.resource_list("", "v1")
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1",
                    "groups": [self.api_group(g, vs) for g, vs in self.groups().items()]}
        if parts[0] == "apis" and len(parts) in (2, 3):
            versions = self.groups().get(parts[1])
            if versions is None:
                raise APIError(404, "the server could not find the requested resource")
            if len(parts) == 2:
                return dict(self.api_group(parts[1], versions), kind="APIGroup",
                            apiVersion="v1")
            reply = self.resource_list(parts[1], parts[2])
            if reply is None:
                raise APIError(404, "the server could not find the requested resource")
            return reply
        return None

    def route(self, path):
        """(rtype, version, namespace or None, name or None, subresource)."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3 and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise APIError(404, "the server could not find the requested resource")
        ns = None
        # /namespaces/{ns}/{resource}... unless it is the namespace object itself.
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2:] != ["status"]:
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise APIError(404, "the server could not find the requested resource")
        plural, name, sub = (rest + [None, None])[:3]
        for rt in self.rtypes:
            if rt.group == group and rt.plural == plural and version in rt.versions:
                break
        else:
            raise APIError(404, "the server could not find the requested resource")
        if ns is not None and not rt.namespaced:
            raise APIError(404, "the server could not find the requested resource")
        if sub is not None and (sub != "status" or not rt.has_status):
            raise APIError(404, "the server could not find the requested resource")
        if rt.namespaced and name is not None and ns is None:
            raise APIError(404, "the server could not find the requested resource")
        if not rt.namespaced and name is not None:
            ns = ""  # cluster-scoped objects live in the "" namespace of the store
        return rt, version, ns, name, sub

    # ObjectMeta's fields in the order Go encodes them: what a client reads
    # of an object before its (possibly huge) annotations.
    META_ORDER = ("name", "generateName", "namespace", "selfLink", "uid",
                  "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "labels", "annotations")

    def out(self, rt, version, obj):
        """An object as served under version (apiVersion/kind rewritten,
        metadata in the apiserver's order)."""
        md = obj.get("metadata") or {}
        ordered = {k: md[k] for k in self.META_ORDER if k in md}
        ordered.update(md)
        served = {"apiVersion": rt.api_version(version), "kind": rt.kind,
                  "metadata": ordered}
        served.update((k, v) for k, v in obj.items() if k not in served)
        return served

    def resource_request(self, method, path, query, body):
        rt, version, ns, name, sub = self.route(path)
        if name is None:
            if method == "GET":
                if "watch" in query and parse_bool(query["watch"], "watch"):
                    return self.watch(rt, version, ns, query)
                reply = self.list_objects(rt, version, ns, query)
                if self.faults.take(("malformed",), path, "list"):
                    return self.send_text(200, json.dumps(reply)[:40])
                return self.send_json(200, reply)
            if method == "POST":
                obj = self.create(rt, ns, body)
                return self.send_json(201, self.out(rt, version, obj))
            raise APIError(405, "method %s not allowed on a collection" % method)
        store = self.store
        if method == "GET":
            obj = store.get(rt, ns, name)
        elif method == "PUT":
            new = self.json_body(body)
            obj = store.modify(rt, ns, name, lambda old: new, sub)
        elif method == "PATCH":
            patch = self.json_body(body)
            obj = store.modify(rt, ns, name, self.patcher(patch), sub)
        elif method == "DELETE":
            opts = self.json_body(body) if body.strip() else {}
            pre = opts.get("preconditions") or {}
            obj = store.delete(rt, ns, name, pre.get("resourceVersion"), pre.get("uid"))
        else:
            raise APIError(405, "method %s not allowed" % method)
        return self.send_json(200, self.out(rt, version, obj))

    def json_body(self, body):
        try:
            return json.loads(body or b"null")
        except ValueError as e:
            raise APIError(400, "invalid JSON body: %s" % e)

    def create(self, rt, ns, body):
        obj = self.json_body(body)
        if not isinstance(obj, dict):
            raise APIError(400, "the body is not a JSON object")
        if ns is None and rt.namespaced:
            raise APIError(404, "the server could not find the requested resource")
        return self.store.create(rt, ns, obj)

    def patcher(self, patch):
        """change(old) -> new for the request's patch Content-Type."""
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        if ctype == "application/json-patch+json":
            return lambda old: json_patch(old, patch)
        if ctype not in ("application/merge-patch+json",
                         "application/strategic-merge-patch+json"):
            raise APIError(415, "the body of the request was in an unknown format - "
                           "accepted media types include: application/json-patch+json, "
                           "application/merge-patch+json, "
                           "application/strategic-merge-patch+json")
        if not isinstance(patch, dict):
            raise APIError(400, "a merge patch must be a JSON object")
        return lambda old: merge_patch(old, strip_directives(patch))

    def selector(self, query):
        """A predicate for labelSelector and fieldSelector together."""
        labels = parse_label_selector(query.get("labelSelector", ""))
        fields = parse_field_selector(query.get("fieldSelector", ""))
        return lambda o: labels(o.get("metadata", {}).get("labels") or {}) and fields(o)

    def list_objects(self, rt, version, ns, query):
        match = self.selector(query)
        items, rv = self.store.list(rt, ns)
        items = [o for o in items if match(o)]
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise APIError(400, "invalid limit %r" % query.get("limit"))
        # The continue token is opaque to clients: base64 JSON of the last key.
        path = urllib.parse.urlsplit(self.path).path
        if query.get("continue") and self.faults.take(("continue-expired",), path, "list"):
            raise APIError(410, "The provided continue parameter is too old to display "
                           "a consistent list result. You can start a new list without "
                           "the continue parameter.", reason="Expired")
        if query.get("continue"):
            try:
                after = tuple(json.loads(base64.urlsafe_b64decode(query["continue"]))["after"])
            except (ValueError, KeyError, TypeError):
                raise APIError(400, "invalid continue token")
            items = [o for o in items if self.key(o) > after]
        meta = {"resourceVersion": str(rv)}
        if limit > 0 and len(items) > limit:
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"after": list(self.key(items[-1]))}).encode()).decode()
        return {"kind": rt.kind + "List", "apiVersion": rt.api_version(version),
                "metadata": meta, "items": [self.out(rt, version, o) for o in items]}

    @staticmethod
    def key(obj):
        md = obj["metadata"]
        return (md.get("namespace", ""), md["name"])

    def watch(self, rt, version, ns, query):
        """Stream watch events as chunked JSON lines until timeoutSeconds, a
        client hang-up or server shutdown."""
        match = self.selector(query)
        bookmarks = parse_bool(query.get("allowWatchBookmarks", "false"),
                               "allowWatchBookmarks")
        initial_events = parse_bool(query.get("sendInitialEvents", "false"),
                                    "sendInitialEvents")
        try:
            timeout = float(query.get("timeoutSeconds") or 0)
        except ValueError:
            raise APIError(400, "invalid timeoutSeconds")
        rv_param = query.get("resourceVersion", "")
        store = self.store
        path = urllib.parse.urlsplit(self.path).path
        faults = self.faults
        error = faults.take(("watch-error",), path, "watch")
        if faults.take(("empty",), path, "watch"):
            self.close_connection = True
            self.start_chunked(200)
            return self.end_chunked()
        interval = BOOKMARK_INTERVAL
        corrupt = faults.take(("corrupt",), path, "watch")
        f = faults.take(("bookmarks",), path, "watch")
        if f:
            interval = float(f.get("interval", BOOKMARK_INTERVAL))

        def in_scope(obj):
            return (ns is None or obj["metadata"].get("namespace", "") == ns) and match(obj)

        with store.cond:
            epoch = store.watch_epoch
            stall_epoch = store.stall_epoch
            if faults.take(("stall",), path, "watch"):
                stall_epoch = -1
            if rv_param in ("", "0") or initial_events:
                # Start now, with the current objects as synthetic ADDED events.
                pos = store.rv
                first = [("ADDED", o) for o in store.list(rt, ns)[0] if match(o)]
            else:
                try:
                    pos = int(rv_param)
                except ValueError:
                    raise APIError(400, "invalid resourceVersion %r" % rv_param)
                first = []
                if pos < store.floor():
                    first = [("ERROR", APIError(
                        410, "too old resource version: %d (%d)" % (pos, store.floor()),
                        reason="Expired").status())]
        if error:
            first = [("ERROR", APIError(
                error.get("code", 410), error.get("message", "injected watch error"),
                reason=error.get("reason", "Expired")).status())]
        self.start_chunked(200)
        pending = []

        sent = []       # the resourceVersions of what is pending

        def send(type_, obj):
            line = json.dumps({"type": type_, "object": obj}).encode()
            rv = obj.get("metadata", {}).get("resourceVersion") \
                if isinstance(obj, dict) and type_ != "ERROR" else None
            if corrupt and type_ in ("ADDED", "MODIFIED", "DELETED") and \
                    corrupt["rng"].random() < corrupt.get("fraction", 0.3):
                line, rv = line[:len(line) // 2], None
            pending.append(line + b"\n")
            sent.append(rv)

        def flush():
            """What is pending: an event a chunk, or shaped by a fault."""
            if self.shape:
                self.write_shaped(b"".join(pending))
            else:
                for line, rv in zip(pending, sent):
                    self.write_chunk(line)
                    if rv is not None:
                        store.sent_at(rv, time.monotonic())
            pending.clear()
            sent.clear()

        def bookmark(rv, annotations=None):
            with self.lock:
                self.requests["bookmark " + path] += 1
            md = {"resourceVersion": str(rv)}
            if annotations:
                md["annotations"] = annotations
            send("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version(version),
                              "metadata": md})

        try:
            if stall_epoch != -1 and faults.take(("malformed",), path, "watch"):
                pending.append(b'{"type": "ADDED", "object": {"kind": \n')
                sent.append(None)
            for type_, obj in first:
                send(type_, obj if type_ == "ERROR" else self.out(rt, version, obj))
            if first and first[0][0] == "ERROR":
                flush()
                return self.end_chunked()
            if initial_events and bookmarks:
                bookmark(pos, {"k8s.io/initial-events-end": "true"})
            deadline = time.monotonic() + timeout if timeout > 0 else None
            last_bookmark = time.monotonic()
            while True:
                with store.cond:
                    stalled = store.stall_epoch != stall_epoch
                if not stalled:
                    flush()     # the initial events go out before any wait
                with store.cond:
                    if store.rv == pos or stalled:
                        wait = interval
                        if deadline is not None and not stalled:
                            wait = min(wait, max(0.0, deadline - time.monotonic()))
                        store.cond.wait(wait)
                    closing = store.watch_epoch != epoch
                    stalled = store.stall_epoch != stall_epoch
                    if stalled:
                        pending.clear()
                        sent.clear()
                    else:
                        pending_ev = store.events_after(pos, rt)
                        pos = store.rv
                if stalled:
                    # Silent for good: only a hang-up or close-watches ends it.
                    if closing:
                        if store.abort_watches:
                            return
                        break
                    if self.peer_closed():
                        return
                    continue
                for ev in pending_ev:
                    if in_scope(ev.obj):
                        send(ev.type, self.out(rt, version, copy.deepcopy(ev.obj)))
                if closing:
                    flush()
                    if store.abort_watches:
                        return  # no final chunk: the client sees a broken stream
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    flush()
                    break
                if bookmarks and now - last_bookmark >= interval:
                    bookmark(pos)
                    last_bookmark = now
                had = bool(pending)
                flush()
                if not had and self.peer_closed():
                    return
            self.end_chunked()
        except OSError:
            pass  # the client went away mid-write
        finally:
            # A stream ends the exchange; the client opens a new one to go on.
            self.close_connection = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", required=True, help="loopback address to bind")
    ap.add_argument("--port", type=int, required=True, help="0 = pick a free one")
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--token", required=True, help="the accepted bearer token")
    ap.add_argument("--seed", help='JSON file {"objects": [...]} loaded at start')
    ap.add_argument("--istio-versions", default="v1,v1beta1,v1alpha3",
                    help="networking.istio.io versions served, preferred first")
    ap.add_argument("--no-gateway-api", action="store_true",
                    help="serve no gateway.networking.k8s.io (CRDs not installed)")
    ap.add_argument("--server-version", default="1.32.0",
                    help="reported by /version (selects kubectl's version)")
    ap.add_argument("--history", type=int, default=100000,
                    help="watch events kept; watches from older rvs get 410 Expired")
    ap.add_argument("--port-file", help="written with the port once listening")
    args = ap.parse_args()
    if not simcommon.is_loopback(args.listen):
        ap.error("--listen must be an address in 127.0.0.0/8")

    versions = [v.strip() for v in args.istio_versions.split(",") if v.strip()]
    Handler.token = args.token
    Handler.faults = Faults()
    Handler.rtypes = resource_types(versions, not args.no_gateway_api)
    Handler.server_version = args.server_version
    Handler.store = Store(args.history)
    if args.seed:
        Handler.store.load_seed(Handler.rtypes, simcommon.load_json_file(args.seed)["objects"])
    server = simcommon.bind_server(args.listen, args.port, Handler, args.cert, args.key)
    simcommon.serve(server, args.port_file)


if __name__ == "__main__":
    main()
