"""List-then-watch one Kubernetes collection, and keep watching through every failure.

The client's raw streaming (`_preload_content=False`) is used rather than
`kubernetes.watch.Watch().stream()`, because that helper hides the things this loop exists to
control:

* without `timeout_seconds` it reconnects internally when a stream ends, so the caller can
  neither count restarts nor back off; with it, it returns and the caller must track the RV;
* after an ERROR 410 event it retries *once with the same stale RV* (which can only be 410
  again) before raising, instead of telling the caller to relist;
* it deserializes every object into generated models (slow, lossy for fields the client
  version does not know), and keeps the resourceVersion only when deserializing;
* it drops lines that are not JSON without a word.

Raw streaming gives the undecoded dicts (which is what the consumers store), one place that
sees every event (BOOKMARKs included) to keep the resume RV, an explicit 410 path, and a
response object that `stop()` can shut down from another thread to end a blocked read at once.

Semantics, as client-go's reflector:

* list (paged with `limit`/`continue`, a consistent snapshot) -> `on_sync(items)` with the
  complete current set, so the consumer drops whatever vanished while we were away;
* watch from the list's RV with bookmarks -> `on_event(type, obj)` for ADDED/MODIFIED/DELETED;
* a stream that ends (server timeout) or breaks -> watch again from the last RV seen,
  BOOKMARKs included (no relist, no event lost or repeated);
* 410 Gone (HTTP 410, or an ERROR event with code 410), or a consumer callback that raised ->
  relist;
* any failure -> jittered exponential backoff, reset once a watch delivers something.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes.client.exceptions import ApiException

from agent.errors import RinglaneError

log = structlog.get_logger(__name__)

Obj = dict[str, Any]
ListFunc = Callable[..., Any]
OnSync = Callable[[list[Obj]], None]
OnEvent = Callable[[str, Obj], None]

EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED"})


class KubeError(RinglaneError):
    """The Kubernetes API failed us in a way the watch loop retries (the message says how)."""


class _Expired(KubeError):
    """410 Gone: the resume RV is older than the server's history; only a relist helps."""


class _CallbackFailed(KubeError):
    """The consumer raised; its view may be half-applied, so it gets a fresh list."""


@dataclass(frozen=True)
class BackoffPolicy:
    """Jittered exponential delays between failed attempts: initial*factor^n, capped, plus
    up to `jitter` of itself so that every agent in the cluster does not retry in step."""

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th consecutive failure (1-based), in
        [initial, maximum]."""
        exp = min(max(failures - 1, 0), 64)  # no float overflow on a very long outage
        base = min(self.maximum, self.initial * self.factor**exp)
        return min(self.maximum, base * (1.0 + self.jitter * random.random()))


@dataclass(frozen=True)
class WatchStats:
    """Counters of one ListWatch, read by the caller (metrics, tests, the status op)."""

    kind: str
    lists: int  # complete lists delivered through on_sync, the first included
    relists: int  # lists after the first one (410 Gone, consumer failure)
    restarts: int  # watch requests from a resume RV after a stream ended or broke (attempts)
    events: int  # ADDED/MODIFIED/DELETED delivered through on_event
    bookmarks: int
    errors: int  # failed attempts, each followed by a backoff
    resource_version: str | None  # where the next watch resumes; None means "relist"
    synced: bool  # the first list has been delivered


class ListWatch:
    """One collection, listed then watched, until `stop()`.

    `list_func` is a generated client list method (e.g. `CoreV1Api(api).list_node`); the
    callbacks run on the watch's own thread, one at a time, never concurrently. Each watch
    asks the server for a `timeoutSeconds` drawn from [watch_timeout, 2 * watch_timeout), as
    client-go does, so that agents started together do not all reconnect together; the
    client-side read timeout is that plus 30 s (a dead connection is noticed even without
    keepalive). `page_size` is the list's `limit`; `read_timeout` bounds each list page.
    """

    def __init__(self, kind: str, list_func: ListFunc, *, on_sync: OnSync, on_event: OnEvent,
                 field_selector: str | None = None, label_selector: str | None = None,
                 page_size: int = 500, watch_timeout: float = 300.0,
                 backoff: BackoffPolicy | None = None, connect_timeout: float = 10.0,
                 read_timeout: float = 60.0, stop_event: threading.Event | None = None) -> None:
        self.kind = kind
        self._list_func = list_func
        self._on_sync = on_sync
        self._on_event = on_event
        self._selectors: dict[str, str] = {}
        if field_selector:
            self._selectors["field_selector"] = field_selector
        if label_selector:
            self._selectors["label_selector"] = label_selector
        self._page_size = page_size
        self._watch_timeout = watch_timeout
        self._backoff = backoff or BackoffPolicy()
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._stopping = stop_event or threading.Event()
        self._resp_lock = threading.Lock()
        self._resp: Any = None  # the open watch response, for stop() to shut down
        self._thread: threading.Thread | None = None
        self._rv: str | None = None
        self._delivered = False  # the current watch has delivered something (backoff reset)
        self._lists = self._restarts = self._events = self._bookmarks = self._errors = 0

    # -- control -----------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run the loop on a daemon thread (daemon: a hung API call never blocks exit)."""
        self._thread = threading.Thread(target=self.run, name=f"watch-{self.kind}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self) -> None:
        """Ask the loop to end and unblock it: a watch blocked in a read is shut down now,
        a backoff wait ends now. A list in flight finishes first (bounded by read_timeout)."""
        self._stopping.set()
        with self._resp_lock:  # held: the watch thread cannot release the response meanwhile
            if self._resp is not None:
                # ValueError/RuntimeError: already closed or released, the loop is leaving
                with contextlib.suppress(ValueError, RuntimeError, OSError):
                    self._resp.shutdown()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread started by start(); True when it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stats(self) -> WatchStats:
        return WatchStats(self.kind, self._lists, max(0, self._lists - 1), self._restarts,
                          self._events, self._bookmarks, self._errors, self._rv,
                          self._lists > 0)

    @property
    def synced(self) -> bool:
        return self._lists > 0

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        """The loop; returns only when stopped."""
        failures = 0
        resuming = False  # the next watch reopens from a resume RV rather than a fresh list
        log.info("watch.started", kind=self.kind, selectors=self._selectors or None)
        while not self._stopping.is_set():
            self._delivered = False
            try:
                if self._rv is None:
                    self._list()
                    resuming = False
                    continue
                if resuming:
                    self._restarts += 1
                resuming = True
                elapsed, timeout = self._watch()
                if self._stopping.is_set():
                    break
                if not self._delivered and elapsed < timeout / 2:
                    raise KubeError(f"watch ended after {elapsed:.1f}s of {timeout}s, empty")
                failures = 0
                log.info("watch.restarted", kind=self.kind, reason="stream ended",
                         elapsed=round(elapsed, 1), resume_rv=self._rv)
            except Exception as exc:  # every failure is retried, with backoff; see _classify
                if self._stopping.is_set():
                    break
                reason, relist, unexpected = _classify(exc)
                if relist:
                    self._rv = None
                if self._delivered:  # the stream was healthy until now: a fresh start
                    failures = 0
                failures += 1
                self._errors += 1
                delay = self._backoff.delay(failures)
                log.warning("watch.relist" if relist else "watch.restarted", kind=self.kind,
                            reason=reason, retry_in=round(delay, 3), resume_rv=self._rv,
                            failures=failures, exc_info=unexpected)
                resuming = True
                self._stopping.wait(delay)
        log.info("watch.stopped", kind=self.kind, **_counts(self.stats()))

    def _list(self) -> None:
        items: list[Obj] = []
        cont: str | None = None
        pages = 0
        while True:
            kwargs: dict[str, Any] = dict(self._selectors, limit=self._page_size)
            if cont:
                kwargs["_continue"] = cont
            resp = self._list_func(**kwargs, _preload_content=False,
                                   _request_timeout=(self._connect_timeout, self._read_timeout))
            try:
                body = json.loads(resp.data)
            finally:
                resp.release_conn()
            pages += 1
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            cont = meta.get("continue") or None
            if cont is None:
                break
            if self._stopping.is_set():
                return
        rv = str(meta["resourceVersion"])
        try:
            self._on_sync(items)
        except Exception as exc:
            raise _CallbackFailed(f"on_sync raised {exc!r}") from exc
        self._rv = rv
        self._lists += 1
        log.info("watch.listed", kind=self.kind, items=len(items), pages=pages,
                 resource_version=rv, relist=self._lists > 1)

    def _watch(self) -> tuple[float, int]:
        """One watch request, streamed to its end; returns (seconds it lasted, the timeout
        asked of the server). Sets _delivered as soon as anything arrives."""
        timeout = max(1, int(self._watch_timeout * (1.0 + random.random())))  # spread load
        started = time.monotonic()
        resp = self._list_func(**self._selectors, watch=True, resource_version=self._rv,
                               allow_watch_bookmarks=True, timeout_seconds=timeout,
                               _preload_content=False,
                               _request_timeout=(self._connect_timeout, timeout + 30.0))
        with self._resp_lock:
            self._resp = resp
        try:
            if not self._stopping.is_set():  # else stop() ran before _resp was set
                for line in _lines(resp):
                    self._dispatch(json.loads(line))
                    self._delivered = True
                    if self._stopping.is_set():
                        break
        finally:
            with self._resp_lock:
                self._resp = None
            resp.close()
            resp.release_conn()
        return time.monotonic() - started, timeout

    def _dispatch(self, event: Obj) -> None:
        type_ = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise KubeError(f"watch event without an object: {str(event)[:200]}")
        if type_ == "ERROR":
            code, reason = obj.get("code"), f"{obj.get('reason')}: {obj.get('message')}"
            if code == 410:
                raise _Expired(f"ERROR event 410 {reason}")
            raise KubeError(f"ERROR event {code} {reason}")
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if type_ == "BOOKMARK":
            self._bookmarks += 1
        elif type_ in EVENT_TYPES:
            try:
                self._on_event(type_, obj)
            except Exception as exc:
                raise _CallbackFailed(f"on_event({type_}) raised {exc!r}") from exc
            self._events += 1
        else:
            log.warning("watch.unknown_event", kind=self.kind, type=type_)
        if rv:
            self._rv = str(rv)


def _lines(resp: Any) -> Iterator[bytes]:
    """Newline-delimited events out of the chunked body; a chunk may hold several lines or
    part of one, so bytes are buffered up to each newline."""
    buf = b""
    for chunk in resp.stream(None, decode_content=True):  # None: each chunk as it arrives
        buf += chunk
        *lines, buf = buf.split(b"\n")
        yield from (line for line in lines if line.strip())
    if buf.strip():
        yield buf


def _classify(exc: Exception) -> tuple[str, bool, bool]:
    """(a short reason for the log, whether the next step must be a relist, whether the
    failure is unexpected enough to log its traceback)."""
    if isinstance(exc, _Expired):
        return str(exc), True, False
    if isinstance(exc, _CallbackFailed):
        return str(exc), True, True
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}", exc.status == 410, False
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError | KubeError):
        return f"{type(exc).__name__}: {exc}", False, False
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError):  # not what we expect
        return f"bad response: {type(exc).__name__}: {exc}", False, True
    return f"unexpected {type(exc).__name__}: {exc}", False, True


def _counts(s: WatchStats) -> dict[str, int]:
    return {"lists": s.lists, "restarts": s.restarts, "events": s.events, "errors": s.errors}
