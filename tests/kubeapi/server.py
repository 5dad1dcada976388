"""A Kubernetes API endpoint for tests, speaking the real REST and watch protocol.

The real `kubernetes` client talks to it through a generated kubeconfig (plain HTTP, no auth),
so the agent's list/watch code runs unmodified: paging, chunked watch streams, resourceVersion
resume, bookmarks, 410 Gone, server-side timeouts. What a real API server does that matters to
a watcher is reproduced; everything else (writes over HTTP, auth, namespaced paths, label
selectors) is left out. Tests change the cluster through methods (`add`, `update`, `delete`)
and inject faults (`drop_connections`, `expire_history`, `pause`).

ResourceVersion model: one global counter bumped by every change, as etcd's revision is. A
bounded history of changes serves watches that resume from an RV; an RV older than the oldest
change still held is answered with 410 Gone, by default as an ERROR event in a 200 stream (what
the API server does for a watch), or as an HTTP 410 after `expire_history(http=True)`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
PauseMode = Literal["503", "refuse"]


@dataclass(frozen=True)
class Resource:
    """One collection the endpoint serves, at its all-namespaces path."""

    plural: str
    kind: str
    api_version: str
    path: str
    namespaced: bool


RESOURCES = {
    "nodes": Resource("nodes", "Node", "v1", "/api/v1/nodes", False),
    "pods": Resource("pods", "Pod", "v1", "/api/v1/pods", True),
    "namespaces": Resource("namespaces", "Namespace", "v1", "/api/v1/namespaces", False),
    "networkpolicies": Resource("networkpolicies", "NetworkPolicy", "networking.k8s.io/v1",
                                "/apis/networking.k8s.io/v1/networkpolicies", True),
}
_BY_PATH = {r.path: r for r in RESOURCES.values()}


@dataclass(frozen=True)
class Request:
    """One request as the endpoint saw it; status 0 means the connection was refused."""

    at: float
    method: str
    path: str
    params: dict[str, str]
    status: int

    @property
    def watch(self) -> bool:
        return self.params.get("watch") in ("1", "true")

    @property
    def resource_version(self) -> str | None:
        return self.params.get("resourceVersion")


@dataclass(frozen=True)
class _Change:
    rv: int
    plural: str
    type: str
    obj: Obj
    old: Obj | None


def _field(obj: Obj, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


class _Selector:
    """A field selector: comma-separated `path=value`, `path==value`, `path!=value` terms."""

    def __init__(self, text: str) -> None:
        self.terms: list[tuple[str, str, bool]] = []
        for term in filter(None, text.split(",")):
            if "!=" in term:
                path, value = term.split("!=", 1)
                self.terms.append((path, value, False))
            else:
                path, value = term.replace("==", "=").split("=", 1)
                self.terms.append((path, value, True))

    def __call__(self, obj: Obj) -> bool:
        return all((_field(obj, p) == v) == eq for p, v, eq in self.terms)


def _translate(change: _Change, match: _Selector) -> tuple[str, Obj] | None:
    """What a watcher with this selector sees of a change: an object moving into the selection
    is ADDED, out of it DELETED, as the API server reports it."""
    if change.type != "MODIFIED" or change.old is None:
        return (change.type, change.obj) if match(change.obj) else None
    was, now = match(change.old), match(change.obj)
    if was and now:
        return "MODIFIED", change.obj
    if now:
        return "ADDED", change.obj
    if was:
        return "DELETED", change.obj
    return None


class _Watcher:
    def __init__(self, plural: str, match: _Selector, sock: socket.socket) -> None:
        self.plural = plural
        self.match = match
        self.sock = sock
        self.queue: queue.SimpleQueue[tuple[str, Obj] | None] = queue.SimpleQueue()
        self.dropped = False


def _status(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeKubeAPI

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.api.paused == "refuse":
            self.api._log("GET", "<refused>", {}, 0)
            return False
        return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.api._handle(self)

    def send_json(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def start_chunked(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def chunk(self, event: Obj) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class FakeKubeAPI:
    """The endpoint: cluster state, change history, open watches, request log, fault controls.

    Use as a context manager; `url` and `write_kubeconfig()` connect a real client to it.
    """

    def __init__(self, *, history: int = 1000, bookmark_interval: float = 0.5,
                 start_rv: int = 1000, host: str = "127.0.0.1") -> None:
        """`host`: the address to listen on; the socket is made in the calling thread's
        network namespace (enter another one to serve a sandbox's nodes)."""
        self.bookmark_interval = bookmark_interval
        self.paused: PauseMode | None = None
        self._pause_paths: set[str] | None = None
        self.gone_as_http = False
        self._lock = threading.Lock()
        self._rv = start_rv
        self._compacted = start_rv  # watches from an RV below this get 410
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {p: {} for p in RESOURCES}
        self._history: deque[_Change] = deque(maxlen=history)
        self._watchers: set[_Watcher] = set()
        self._continues: dict[str, tuple[int, list[Obj]]] = {}
        self._requests: list[Request] = []
        self._server = _Server((host, 0), _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="fake-kubeapi", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self.drop_connections()
        self._server.server_close()

    def __enter__(self) -> FakeKubeAPI:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this endpoint (JSON is YAML): plain HTTP, an empty user."""
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }
        path.write_text(json.dumps(cfg, indent=1))
        return path

    # -- cluster state -----------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def add(self, plural: str, obj: Obj) -> Obj:
        """Create an object (uid, namespace and creationTimestamp filled in); returns it as
        stored, with its resourceVersion."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if RESOURCES[plural].namespaced:
            meta.setdefault("namespace", "default")
        with self._lock:
            key = self._key(obj)
            if key in self._objects[plural]:
                raise KeyError(f"{plural} {key} exists")
            return self._commit(plural, "ADDED", obj, None)

    def update(self, plural: str, obj: Obj) -> Obj:
        """Replace an existing object (identified by namespace/name); uid is kept."""
        obj = copy.deepcopy(obj)
        with self._lock:
            key = self._key(obj)
            old = self._objects[plural][key]
            obj["metadata"]["uid"] = old["metadata"]["uid"]
            return self._commit(plural, "MODIFIED", obj, old)

    def delete(self, plural: str, name: str, namespace: str = "") -> Obj:
        with self._lock:
            key = (namespace or ("default" if RESOURCES[plural].namespaced else ""), name)
            old = self._objects[plural][key]
            return self._commit(plural, "DELETED", copy.deepcopy(old), old)

    def get(self, plural: str, name: str, namespace: str = "") -> Obj:
        with self._lock:
            key = (namespace or ("default" if RESOURCES[plural].namespaced else ""), name)
            return copy.deepcopy(self._objects[plural][key])

    def _key(self, obj: Obj) -> tuple[str, str]:
        meta = obj["metadata"]
        return meta.get("namespace", ""), meta["name"]

    def _commit(self, plural: str, type_: str, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        res = RESOURCES[plural]
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        if type_ == "DELETED":
            del self._objects[plural][self._key(obj)]
        else:
            self._objects[plural][self._key(obj)] = obj
        change = _Change(self._rv, plural, type_, obj, old)
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(change)
        for w in self._watchers:
            if w.plural == plural and (seen := _translate(change, w.match)) is not None:
                w.queue.put(seen)
        return copy.deepcopy(obj)

    # -- faults ------------------------------------------------------------------------------

    def drop_connections(self) -> int:
        """Close every open watch stream abruptly (no terminating chunk), as a broken
        connection or a restarting API server does. Returns how many were open."""
        with self._lock:
            watchers = list(self._watchers)
            for w in watchers:
                w.dropped = True
                w.queue.put(None)
        for w in watchers:
            with contextlib.suppress(OSError):  # already closed by the client
                w.sock.shutdown(socket.SHUT_RDWR)
        return len(watchers)

    def expire_history(self, *, http: bool = False) -> None:
        """Forget every change so far (as etcd compaction does): a watch from any older RV,
        and any outstanding continue token, gets 410 Gone; as an HTTP 410 if `http`."""
        with self._lock:
            self._compacted = self._rv
            self._history.clear()
            self._continues.clear()
            self.gone_as_http = http

    def pause(self, mode: PauseMode = "503", paths: set[str] | None = None) -> None:
        """Go down: answer 503 (only for `paths`, if given), or close every new connection
        unanswered ("refuse"); open watches are dropped either way."""
        self.paused, self._pause_paths = mode, paths
        self.drop_connections()

    def resume(self) -> None:
        self.paused = None

    # -- observation -------------------------------------------------------------------------

    def requests(self, *, path: str | None = None, watch: bool | None = None,
                 since: float = 0.0) -> list[Request]:
        """The request log, optionally filtered by path, list/watch and time (monotonic)."""
        with self._lock:
            log = list(self._requests)
        return [r for r in log if (path is None or r.path == path)
                and (watch is None or r.watch == watch) and r.at >= since]

    def open_watches(self, plural: str | None = None) -> int:
        with self._lock:
            return sum(1 for w in self._watchers if plural in (None, w.plural) and not w.dropped)

    def _log(self, method: str, path: str, params: dict[str, str], status: int) -> None:
        with self._lock:
            self._requests.append(Request(time.monotonic(), method, path, params, status))

    # -- serving -----------------------------------------------------------------------------

    def _handle(self, h: _Handler) -> None:
        url = urlsplit(h.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if self.paused == "refuse":
            self._log(h.command, url.path, params, 0)
            h.close_connection = True
            return
        if self.paused == "503" and (self._pause_paths is None or url.path in self._pause_paths):
            self._log(h.command, url.path, params, 503)
            h.send_json(503, _status(503, "ServiceUnavailable", "paused by the test"))
            return
        res = _BY_PATH.get(url.path)
        if res is None:
            self._log(h.command, url.path, params, 404)
            h.send_json(404, _status(404, "NotFound", f"no resource at {url.path}"))
            return
        if params.get("watch") in ("1", "true"):
            self._watch(h, res, url.path, params)
        else:
            self._list(h, res, url.path, params)

    def _list(self, h: _Handler, res: Resource, path: str, params: dict[str, str]) -> None:
        match = _Selector(params.get("fieldSelector", ""))
        limit = int(params.get("limit") or 0)
        token = params.get("continue")
        with self._lock:
            if token:
                entry = self._continues.pop(token, None)
            else:
                objs = sorted(self._objects[res.plural].items())
                entry = (self._rv, [copy.deepcopy(o) for _, o in objs if match(o)])
            if entry is None:
                gone = _status(410, "Expired", "The provided continue parameter is too old")
            else:
                rv, items = entry
                meta: Obj = {"resourceVersion": str(rv)}
                if limit and len(items) > limit:
                    items, rest = items[:limit], items[limit:]
                    meta["continue"] = uuid.uuid4().hex
                    meta["remainingItemCount"] = len(rest)
                    self._continues[meta["continue"]] = (rv, rest)
        if entry is None:
            self._log("GET", path, params, 410)
            h.send_json(410, gone)
            return
        for item in items:  # list items carry no kind/apiVersion, as the API server's
            item.pop("kind", None)
            item.pop("apiVersion", None)
        self._log("GET", path, params, 200)
        h.send_json(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                          "metadata": meta, "items": items})

    def _watch(self, h: _Handler, res: Resource, path: str, params: dict[str, str]) -> None:
        match = _Selector(params.get("fieldSelector", ""))
        since = params.get("resourceVersion", "")
        timeout = float(params.get("timeoutSeconds") or 3600)
        bookmarks = params.get("allowWatchBookmarks") in ("1", "true")
        if since not in ("", "0") and not since.isdigit():
            self._log("GET", path, params, 400)
            h.send_json(400, _status(400, "BadRequest", f"invalid resourceVersion {since!r}"))
            return
        watcher = _Watcher(res.plural, match, h.connection)
        backlog: list[tuple[str, Obj]] = []
        with self._lock:
            if since in ("", "0"):  # "any version": the current state as ADDED, then changes
                backlog = [("ADDED", o) for o in self._objects[res.plural].values() if match(o)]
                gone = False
            else:
                gone = int(since) < self._compacted
                backlog = [seen for c in self._history if c.plural == res.plural
                           and c.rv > int(since) and (seen := _translate(c, match)) is not None]
            if not gone:
                self._watchers.add(watcher)
            compacted, as_http = self._compacted, self.gone_as_http
        if gone:
            self._log("GET", path, params, 410 if as_http else 200)
            status = _status(410, "Expired", f"too old resource version: {since} ({compacted})")
            if as_http:
                h.send_json(410, status)
            else:
                h.start_chunked()
                h.chunk({"type": "ERROR", "object": status})
                h.end_chunked()
            return
        self._log("GET", path, params, 200)
        try:
            self._stream(h, res, watcher, backlog, timeout, bookmarks)
        except OSError:
            h.close_connection = True
        finally:
            with self._lock:
                self._watchers.discard(watcher)

    def _stream(self, h: _Handler, res: Resource, w: _Watcher, backlog: list[tuple[str, Obj]],
                timeout: float, bookmarks: bool) -> None:
        h.start_chunked()
        for type_, obj in backlog:
            h.chunk({"type": type_, "object": obj})
        deadline = time.monotonic() + timeout
        next_bookmark = time.monotonic() + self.bookmark_interval
        while not w.dropped:
            now = time.monotonic()
            if now >= deadline:
                h.end_chunked()  # a clean end: the client resumes from its last RV
                return
            wake = min(deadline, next_bookmark) if bookmarks else deadline
            try:
                item = w.queue.get(timeout=max(0.0, wake - now))
            except queue.Empty:
                item = None
                if bookmarks and time.monotonic() >= next_bookmark:
                    next_bookmark = time.monotonic() + self.bookmark_interval
                    with self._lock:  # changes are queued under the lock: empty queue means
                        rv = self._rv if w.queue.empty() else None  # all up to rv were sent
                    if rv is not None:
                        h.chunk({"type": "BOOKMARK", "object": {
                            "kind": res.kind, "apiVersion": res.api_version,
                            "metadata": {"resourceVersion": str(rv)}}})
            if item is not None and not w.dropped:
                h.chunk({"type": item[0], "object": item[1]})
        h.close_connection = True  # dropped: no terminating chunk, the socket is shut down


# -- object builders ---------------------------------------------------------------------------

def node(name: str, ip: str | None, pod_cidr: str | None = None, *,
         pod_cidrs: list[str] | None = None) -> Obj:
    """A Node as the API server stores it (the fields Ringlane reads, plus some noise)."""
    spec: Obj = {}
    if pod_cidr is not None:
        spec["podCIDR"] = pod_cidr
    if pod_cidrs is not None:
        spec["podCIDRs"] = pod_cidrs
    elif pod_cidr is not None:
        spec["podCIDRs"] = [pod_cidr]
    addresses = [{"type": "Hostname", "address": name}]
    if ip is not None:
        addresses.insert(0, {"type": "InternalIP", "address": ip})
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": spec, "status": {"addresses": addresses}}


def pod(name: str, node_name: str, ip: str | None = None, *, namespace: str = "default",
        host_network: bool = False, phase: str = "Running", labels: dict[str, str] | None = None,
        ports: dict[str, int] | None = None) -> Obj:
    """`ports`: named TCP container ports."""
    status: Obj = {"phase": phase}
    if ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    container: Obj = {"name": "c", "image": "busybox"}
    if ports:
        container["ports"] = [{"name": k, "containerPort": v} for k, v in ports.items()]
    return {"metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
            "spec": {"nodeName": node_name, "hostNetwork": host_network,
                     "containers": [container]},
            "status": status}


def namespace(name: str, **labels: str) -> Obj:
    return {"metadata": {"name": name,
                         "labels": {"kubernetes.io/metadata.name": name, **labels}}}


def policy(name: str, namespace: str = "default") -> Obj:
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
