"""What the gRPC services need from the agent, as plain Python: the servicers translate between
protobuf and these types and nothing else, so the API can be tested against any backend that
keeps this contract (the node agent in production, a policy engine alone in unit tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Protocol

from agent.policy.model import Direction, Policy


@dataclass(frozen=True)
class PolicyEvent:
    """A change in the set of policies. kind: "applied" (new or changed) or "deleted"."""

    kind: str
    policy: Policy
    revision: int


@dataclass(frozen=True)
class EndpointView:
    """A local pod the agent accelerates, with the policies that select it."""

    name: str                      # "namespace/pod" (or the CNI container id when unknown)
    ip: IPv4Address
    host_ifname: str
    slot: int
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    policies: Mapping[Direction, tuple[str, ...]] = field(default_factory=dict)  # policy ids
    counters: Mapping[str, int] = field(default_factory=dict)  # rl_ep_stats, by name


@dataclass(frozen=True)
class NodeStats:
    """Counters of one node: ring core (incl. ring occupancy and XDP_STATISTICS of its
    sockets), the XDP programs, and per endpoint."""

    node: str
    core: Mapping[str, int]
    xdp: Mapping[str, int]
    endpoints: Mapping[IPv4Address, Mapping[str, int]]


@dataclass(frozen=True)
class LinkHealth:
    """The overlay link from this node to `peer_node`, measured by ring core probes."""

    peer_node: str
    peer_ip: IPv4Address
    sent: int
    received: int
    loss_ratio: float              # over the probe window
    rtt_last_us: float
    rtt_min_us: float
    rtt_avg_us: float
    rtt_max_us: float
    jitter_us: float
    last_reply_age_s: float | None


@dataclass(frozen=True)
class FlowRecord:
    """One sampled policy decision."""

    node: str
    ts_ns: int                     # CLOCK_MONOTONIC of the node
    src: IPv4Address
    dst: IPv4Address
    sport: int
    dport: int
    protocol: int                  # IP protocol number
    verdict: str                   # "allow" | "deny" | "reply"
    direction: Direction
    point: str                     # "from_pod" | "from_wire"
    length: int


class FlowSubscription(Protocol):
    """A client's bounded queue of flow records: a slow client loses records (counted in
    `lost`), it never slows the producer."""

    @property
    def lost(self) -> int: ...

    def get(self, timeout: float) -> list[FlowRecord]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """The agent as the API sees it. Policy calls raise agent.policy.model.PolicyError (bad
    input, names the field), agent.policy.engine.PolicyNotFound, PolicyConflict (e.g. the
    name of a Kubernetes-owned policy) or PolicyLimitError (too big for the node's maps);
    on any error nothing changed."""

    node_name: str

    def status(self) -> Mapping[str, object]: ...

    def apply_policies(self, policies: Sequence[Policy]) -> int:
        """Validate, compile and program all of `policies` or none; the new revision."""
        ...

    def delete_policies(self, names: Sequence[tuple[str, str]]) -> int:
        """Delete API policies by (namespace, name), all or none; the new revision."""
        ...

    def list_policies(self) -> list[Policy]: ...

    def watch_policies(self, stop: threading.Event) -> Iterator[PolicyEvent]:
        """Every current policy as "applied", then changes as they happen, until `stop`."""
        ...

    def endpoints(self) -> list[EndpointView]: ...

    def stats(self) -> NodeStats: ...

    def link_health(self) -> list[LinkHealth]: ...

    def subscribe_flows(self, queue_size: int) -> FlowSubscription: ...
