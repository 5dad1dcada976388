"""An in-memory agent.api.backend.Backend for the API tests: the real PolicyEngine (with an
empty cluster) for policies, fixed endpoints, counters and link health, and flow
subscriptions with bounded queues that count what they drop."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path

from agent.api.backend import EndpointView, FlowRecord, LinkHealth, NodeStats, PolicyEvent
from agent.api.convert import CODEC
from agent.policy.engine import PolicyEngine
from agent.policy.model import Direction, Inventory, Policy

NODE = "node-a"
ENDPOINTS = (
    EndpointView(name="shop/web-1", namespace="shop", ip=IPv4Address("10.244.1.10"),
                 host_ifname="rl1a2b3c", slot=1, labels={"app": "web"},
                 policies={Direction.INGRESS: ("api/shop/web",)},
                 counters={"rx_packets": 10, "tx_packets": 12, "drop_policy": 1}),
    EndpointView(name="0123456789ab", ip=IPv4Address("10.244.1.11"), host_ifname="rl4d5e6f",
                 slot=2),
)
STATS = NodeStats(node=NODE, core={"rx_packets": 100, "tx_packets": 90, "ring_fill": 7},
                  xdp={"redirect": 50, "drop_spoofed": 2},
                  endpoints={e.ip: e.counters for e in ENDPOINTS})
LINKS = (
    LinkHealth(peer_node="node-b", peer_ip=IPv4Address("192.168.0.2"), sent=10, received=9,
               loss_ratio=0.1, rtt_last_us=80.0, rtt_min_us=50.0, rtt_avg_us=70.0,
               rtt_max_us=120.0, jitter_us=8.5, last_reply_age_s=0.4),
    LinkHealth(peer_node="node-c", peer_ip=IPv4Address("192.168.0.3"), sent=10, received=0,
               loss_ratio=1.0, rtt_last_us=0.0, rtt_min_us=0.0, rtt_avg_us=0.0,
               rtt_max_us=0.0, jitter_us=0.0, last_reply_age_s=None),
)


class MemorySubscription:
    """A bounded queue: when full, new records are dropped and counted."""

    def __init__(self, size: int, on_close: Callable[[MemorySubscription], None],
                 gate: threading.Event) -> None:
        self.size = size
        self._gate = gate
        self._queue: deque[FlowRecord] = deque()
        self._lost = 0
        self._cond = threading.Condition()
        self._on_close = on_close
        self.closed = threading.Event()

    @property
    def lost(self) -> int:
        return self._lost

    def put(self, record: FlowRecord) -> None:
        with self._cond:
            if len(self._queue) >= self.size:
                self._lost += 1
                return
            self._queue.append(record)
            self._cond.notify()

    def get(self, timeout: float) -> list[FlowRecord]:
        if not self._gate.wait(timeout):
            return []
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            out = list(self._queue)
            self._queue.clear()
            return out

    def close(self) -> None:
        self.closed.set()
        self._on_close(self)


class MemoryBackend:
    """Backend for tests. `fail`: raised by the next call of any read method (then cleared)."""

    node_name = NODE

    def __init__(self, state_dir: Path, kube: Sequence[Policy] = ()) -> None:
        self.engine = PolicyEngine(state_dir / "policies.pb", CODEC,
                                   snapshot=lambda: (Inventory(), ()),
                                   kube_policies=lambda: kube)
        self.fail: Exception | None = None
        self.stall = 0.0  # seconds status() takes: an agent that answers too late
        self._lock = threading.Lock()
        self.subscriptions: list[MemorySubscription] = []
        self.flow_gate = threading.Event()  # cleared: subscribers read nothing (slow clients)
        self.flow_gate.set()

    def _maybe_fail(self) -> None:
        exc, self.fail = self.fail, None
        if exc is not None:
            raise exc

    def status(self) -> Mapping[str, object]:
        self._maybe_fail()
        time.sleep(self.stall)
        return {"ready": True, "revision": self.engine.revision,
                "reconcile": {"passes": 3, "failed": {}}}

    def apply_policies(self, policies: Sequence[Policy]) -> int:
        return self.engine.apply(policies)

    def delete_policies(self, names: Sequence[tuple[str, str]]) -> int:
        return self.engine.delete(names)

    def list_policies(self) -> list[Policy]:
        self._maybe_fail()
        return self.engine.policies()

    def watch_policies(self, stop: threading.Event) -> Iterator[PolicyEvent]:
        return self.engine.watch(stop)

    def endpoints(self) -> list[EndpointView]:
        self._maybe_fail()
        return list(ENDPOINTS)

    def stats(self) -> NodeStats:
        self._maybe_fail()
        return STATS

    def link_health(self) -> list[LinkHealth]:
        self._maybe_fail()
        return list(LINKS)

    def subscribe_flows(self, queue_size: int) -> MemorySubscription:
        sub = MemorySubscription(queue_size, self._unsubscribe, self.flow_gate)
        with self._lock:
            self.subscriptions.append(sub)
        return sub

    def _unsubscribe(self, sub: MemorySubscription) -> None:
        with self._lock:
            if sub in self.subscriptions:
                self.subscriptions.remove(sub)

    def publish(self, record: FlowRecord) -> None:
        """The producer: never blocks, whatever the subscribers do."""
        with self._lock:
            subs = list(self.subscriptions)
        for sub in subs:
            sub.put(record)
