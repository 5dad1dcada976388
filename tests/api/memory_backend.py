"""An in-memory agent.api.backend.Backend for the API tests: the real PolicyEngine (with an
empty cluster) for policies, fixed endpoints, counters and link health, and the agent's
own flow hub fed with what a test publishes."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from pathlib import Path

from agent.api.backend import EndpointView, FlowRecord, LinkHealth, NodeStats, PolicyEvent
from agent.api.convert import CODEC
from agent.flows import FlowHub, Subscription
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


class Published:
    """The flow hub's sample source: whatever the test published, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[FlowRecord] = queue.Queue()

    def put(self, record: FlowRecord) -> None:
        self._queue.put(record)

    def read(self, timeout_s: float, max_records: int) -> list[FlowRecord]:
        try:
            out = [self._queue.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while len(out) < max_records:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out


class GatedSubscription:
    """The agent's own subscription (agent.flows), read only while the gate is open: a closed
    gate makes the server a slow reader, whose queue then overflows."""

    def __init__(self, sub: Subscription, gate: threading.Event) -> None:
        self._sub = sub
        self._gate = gate

    @property
    def lost(self) -> int:
        return self._sub.lost

    def get(self, timeout: float) -> list[FlowRecord]:
        if not self._gate.wait(timeout):
            return []
        return self._sub.get(timeout)

    def close(self) -> None:
        self._sub.close()


class MemoryBackend:
    """Backend for tests. `fail`: raised by the next call of any read method (then cleared)."""

    node_name = NODE

    def __init__(self, state_dir: Path, kube: Sequence[Policy] = ()) -> None:
        self.engine = PolicyEngine(state_dir / "policies.pb", CODEC,
                                   snapshot=lambda: (Inventory(), ()),
                                   kube_policies=lambda: kube)
        self.fail: Exception | None = None
        self.stall = 0.0  # seconds status() takes: an agent that answers too late
        self._published = Published()
        self.flows = FlowHub(lambda: self._published)
        self.flows.start()
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

    def subscribe_flows(self, queue_size: int) -> GatedSubscription:
        return GatedSubscription(self.flows.subscribe(queue_size), self.flow_gate)

    @property
    def subscriptions(self) -> list[Subscription]:
        return self.flows.subscriptions

    def publish(self, record: FlowRecord) -> None:
        """The producer: never blocks, whatever the subscribers do."""
        self._published.put(record)

    def close(self) -> None:
        self.flows.stop()
