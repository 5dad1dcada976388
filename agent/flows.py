"""Flow samples from the XDP programs' ring buffer to any number of API clients.

One thread drains the kernel's ring buffer all the time, so that a full buffer
(RL_XS_FLOW_SAMPLES_LOST) means the node really sampled faster than it could read, not that
nobody was listening. Each client gets a bounded queue of its own: when it falls behind, its
oldest records are dropped and counted for it alone; neither the drain thread nor the data
path ever waits for a client.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Protocol

import structlog

from agent.api.backend import FlowRecord

log = structlog.get_logger(__name__)

READ_BATCH = 512
QUEUE_MAX = 65536


class SampleSource(Protocol):
    """Where records come from (the data path's ring buffer reader)."""

    def read(self, timeout_s: float, max_records: int) -> list[FlowRecord]: ...


class Subscription:
    """One client's queue (FlowSubscription in agent.api.backend)."""

    def __init__(self, hub: FlowHub, size: int) -> None:
        self._hub = hub
        self._queue: deque[FlowRecord] = deque()
        self._size = size
        self._cond = threading.Condition()
        self._lost = 0
        self.closed = False

    @property
    def lost(self) -> int:
        return self._lost

    def offer(self, records: list[FlowRecord]) -> None:
        with self._cond:
            self._queue.extend(records)
            over = len(self._queue) - self._size
            for _ in range(max(0, over)):
                self._queue.popleft()
            self._lost += max(0, over)
            self._cond.notify()

    def get(self, timeout: float) -> list[FlowRecord]:
        """What has queued up, waiting up to `timeout` seconds for the first record."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            out = list(self._queue)
            self._queue.clear()
            return out

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()
        self._hub.unsubscribe(self)


class FlowHub:
    """Drains `source` on its own thread between start() and stop()."""

    def __init__(self, source: Callable[[], SampleSource | None]) -> None:
        self._source = source
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flow-samples", daemon=True)
        self.records = 0

    @property
    def subscriptions(self) -> list[Subscription]:
        """The open subscriptions (a copy)."""
        with self._lock:
            return list(self._subs)

    def subscribe(self, queue_size: int) -> Subscription:
        sub = Subscription(self, max(1, min(queue_size, QUEUE_MAX)))
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            src = self._source()
            if src is None:  # the data path is not up yet
                self._stop.wait(0.5)
                continue
            try:
                records = src.read(0.2, READ_BATCH)
            except Exception as exc:  # a bad record must not end every stream
                log.warning("flows.read_failed", error=str(exc))
                self._stop.wait(1.0)
                continue
            if not records:
                continue
            self.records += len(records)
            with self._lock:
                subs = list(self._subs)
            for sub in subs:
                sub.offer(records)
