"""The node agent as the gRPC API's backend (agent.api.backend.Backend).

Policy changes return only once the data path enforces them: the engine commits, then a
reconcile pass compiles and swaps the trie, and the call waits for that pass. Reads come from
the data path's counters at call time; nothing here is on the packet path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

from agent.api.backend import EndpointView, FlowSubscription, LinkHealth, NodeStats, PolicyEvent
from agent.errors import RinglaneError
from agent.policy.model import Policy

if TYPE_CHECKING:
    from agent.node_agent import NodeAgent

PROGRAM_WAIT_SECONDS = 5.0


class NodeBackend:
    def __init__(self, agent: NodeAgent) -> None:
        self._agent = agent
        self.node_name = agent.cfg.node_name

    def status(self) -> Mapping[str, object]:
        return self._agent.status()

    def _programmed(self) -> int:
        """Wait for a reconcile pass that starts after now; the engine's revision."""
        a = self._agent
        if not a.reconciler.wait_pass(a.reconciler.trigger(), PROGRAM_WAIT_SECONDS):
            raise RinglaneError(f"policy stored but not programmed within "
                                f"{PROGRAM_WAIT_SECONDS:.0f}s; the agent keeps retrying")
        failed = a.reconciler.last.failed
        why = failed.get("policy") or failed.get("pass")
        if why:
            raise RinglaneError(f"policy stored but not programmed: {why}; the agent keeps "
                                "retrying")
        return a.engine.revision

    def apply_policies(self, policies: Sequence[Policy]) -> int:
        self._agent.engine.apply(policies)
        return self._programmed()

    def delete_policies(self, names: Sequence[tuple[str, str]]) -> int:
        self._agent.engine.delete(names)
        return self._programmed()

    def list_policies(self) -> list[Policy]:
        return self._agent.engine.policies()

    def watch_policies(self, stop: threading.Event) -> Iterator[PolicyEvent]:
        return self._agent.engine.watch(stop)

    def endpoints(self) -> list[EndpointView]:
        a = self._agent
        slots = a.dp.endpoints()
        counters = a.dp.endpoint_stats()
        pods = {p.ip: p for p in a.inventory.pods if p.ip is not None}
        selected = a.compiled.selected
        out = []
        for ip, ep in sorted(a.dp.programmed_endpoints().items()):
            pod = pods.get(ip)
            out.append(EndpointView(
                name=ep.name, ip=ip, host_ifname=ep.host_ifname, slot=slots.get(ip, -1),
                namespace=pod.namespace if pod else "",
                labels=pod.label_map if pod else {},
                policies=selected.get(ip, {}), counters=counters.get(ip, {})))
        return out

    def stats(self) -> NodeStats:
        dp = self._agent.dp
        return NodeStats(node=self.node_name, core=dp.core_counters(), xdp=dp.xdp_stats(),
                         endpoints=dp.endpoint_stats())

    def link_health(self) -> list[LinkHealth]:
        names: dict[IPv4Address, str] = {r.ip: r.name for r in self._agent.dp.remotes().values()}
        return [LinkHealth(peer_node=names.get(s.node_ip, ""), peer_ip=s.node_ip, sent=s.sent,
                           received=s.received, loss_ratio=s.loss, rtt_last_us=s.rtt_last_us,
                           rtt_min_us=s.rtt_min_us, rtt_avg_us=s.rtt_avg_us,
                           rtt_max_us=s.rtt_max_us, jitter_us=s.jitter_us,
                           last_reply_age_s=s.last_reply_age_s)
                for s in self._agent.dp.link_stats()]

    def subscribe_flows(self, queue_size: int) -> FlowSubscription:
        return self._agent.flows.subscribe(queue_size)
