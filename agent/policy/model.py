"""The one policy model: what the gRPC API accepts, what NetworkPolicies translate into, and
what the compiler turns into BPF maps.

It follows Kubernetes NetworkPolicy semantics so that both origins mean the same thing: a
policy selects pods of its namespace (`subject`) and, for each of its `directions`, makes them
default-deny in that direction; its rules are allows, and the allows of every policy selecting
a pod are unioned. On top of NetworkPolicy it adds ICMP and "any protocol" port matches.

Every value is frozen and hashable: policies are compared to skip work, kept in sets and
shared between threads without locks. `validate()` is the single gate for both origins; a
policy that passed it compiles, except for the node-wide limits the compiler checks.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from agent.errors import RinglaneError

MAX_RULES_PER_DIRECTION = 256
MAX_PEERS_PER_RULE = 256
MAX_PORTS_PER_RULE = 64
MAX_SELECTOR_TERMS = 32
MAX_POLICIES = 4096

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class PolicyError(RinglaneError):
    """A policy is invalid. `field` is the path of the offending field, e.g.
    ``policies[0].ingress[1].ports[0].endPort``, so an API can name it."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


class Direction(enum.Enum):
    INGRESS = "ingress"
    EGRESS = "egress"


class Protocol(enum.Enum):
    ANY = "any"
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"
    ICMP = "icmp"


class Origin(enum.Enum):
    """Who owns a policy: the gRPC API, or a NetworkPolicy object (read-only through the API)."""

    API = "api"
    KUBERNETES = "kubernetes"


class Operator(enum.Enum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class Requirement:
    """One matchExpressions term."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator is Operator.IN:
            return self.key in labels and labels[self.key] in self.values
        if self.operator is Operator.NOT_IN:
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator is Operator.EXISTS:
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector; the empty selector matches everything."""

    match_labels: frozenset[tuple[str, str]] = frozenset()
    match_expressions: frozenset[Requirement] = frozenset()

    @classmethod
    def of(cls, labels: Mapping[str, str] | None = None, *exprs: Requirement) -> LabelSelector:
        return cls(frozenset((labels or {}).items()), frozenset(exprs))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (all(labels.get(k) == v for k, v in self.match_labels)
                and all(r.matches(labels) for r in self.match_expressions))


@dataclass(frozen=True)
class PodPeer:
    """Pods chosen by labels. `namespaces` None: the policy's own namespace only (as in a
    NetworkPolicy peer without namespaceSelector); the empty selector: every namespace."""

    pods: LabelSelector = LabelSelector()
    namespaces: LabelSelector | None = None


@dataclass(frozen=True)
class CidrPeer:
    """Addresses of `cidr` except those in `excepts` (each strictly inside `cidr`)."""

    cidr: IPv4Network
    excepts: frozenset[IPv4Network] = frozenset()


Peer = PodPeer | CidrPeer


@dataclass(frozen=True)
class PortMatch:
    """A protocol and optionally ports: `port` None means every port of `protocol`; a str is a
    named port (a container port name of the pod that receives); `end_port` makes a range."""

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    """An allow: traffic to or from any of `peers` (none listed: every peer) on any of `ports`
    (none listed: every protocol and port)."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PortMatch, ...] = ()


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    origin: Origin = Origin.API
    subject: LabelSelector = LabelSelector()
    directions: frozenset[Direction] = frozenset({Direction.INGRESS})
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    labels: frozenset[tuple[str, str]] = field(default=frozenset(), compare=False)

    @property
    def key(self) -> tuple[str, str, str]:
        """Unique across origins: a NetworkPolicy and an API policy may share a name."""
        return (self.origin.value, self.namespace, self.name)

    @property
    def id(self) -> str:
        return "/".join(self.key)

    def rules(self, direction: Direction) -> tuple[Rule, ...]:
        return self.ingress if direction is Direction.INGRESS else self.egress


# -- validation -------------------------------------------------------------------------------


def _check_selector(sel: LabelSelector, where: str) -> None:
    if len(sel.match_labels) + len(sel.match_expressions) > MAX_SELECTOR_TERMS:
        raise PolicyError(where, f"more than {MAX_SELECTOR_TERMS} terms")
    for k, v in sel.match_labels:
        if not _LABEL_KEY.match(k) or len(k) > 317:
            raise PolicyError(f"{where}.matchLabels", f"invalid label key {k!r}")
        if not _LABEL_VALUE.match(v) or len(v) > 63:
            raise PolicyError(f"{where}.matchLabels[{k}]", f"invalid label value {v!r}")
    for r in sel.match_expressions:
        w = f"{where}.matchExpressions[{r.key}]"
        if not _LABEL_KEY.match(r.key):
            raise PolicyError(w, f"invalid label key {r.key!r}")
        needs_values = r.operator in (Operator.IN, Operator.NOT_IN)
        if needs_values and not r.values:
            raise PolicyError(w, f"operator {r.operator.value} needs at least one value")
        if not needs_values and r.values:
            raise PolicyError(w, f"operator {r.operator.value} takes no values")
        for v in sorted(r.values):
            if not _LABEL_VALUE.match(v) or len(v) > 63:
                raise PolicyError(f"{w}.values", f"invalid label value {v!r}")


def _check_port(pm: PortMatch, where: str) -> None:
    if pm.protocol in (Protocol.ICMP, Protocol.ANY):
        if pm.port is not None or pm.end_port is not None:
            raise PolicyError(where, f"protocol {pm.protocol.value} has no ports; "
                                     "remove port/endPort or choose tcp, udp or sctp")
        return
    if isinstance(pm.port, str):
        if not _PORT_NAME.match(pm.port) or len(pm.port) > 15 or not re.search("[a-z]", pm.port):
            raise PolicyError(f"{where}.port", f"invalid port name {pm.port!r}")
        if pm.end_port is not None:
            raise PolicyError(f"{where}.endPort", "a named port cannot have an endPort")
        return
    if pm.port is None:
        if pm.end_port is not None:
            raise PolicyError(f"{where}.endPort", "endPort needs a numeric port")
        return
    if not 1 <= pm.port <= 65535:
        raise PolicyError(f"{where}.port", f"{pm.port} is not in 1..65535")
    if pm.end_port is not None:
        if not 1 <= pm.end_port <= 65535:
            raise PolicyError(f"{where}.endPort", f"{pm.end_port} is not in 1..65535")
        if pm.end_port < pm.port:
            raise PolicyError(f"{where}.endPort", f"{pm.end_port} is below port {pm.port}")


def _check_peer(peer: Peer, where: str) -> None:
    if isinstance(peer, PodPeer):
        _check_selector(peer.pods, f"{where}.podSelector")
        if peer.namespaces is not None:
            _check_selector(peer.namespaces, f"{where}.namespaceSelector")
        return
    for i, ex in enumerate(sorted(peer.excepts)):
        if not ex.subnet_of(peer.cidr) or ex.prefixlen <= peer.cidr.prefixlen:
            raise PolicyError(f"{where}.ipBlock.except[{i}]",
                              f"{ex} is not strictly inside {peer.cidr}")


def validate(policy: Policy, where: str = "policy") -> Policy:
    """Return `policy` if it is well-formed; else raise PolicyError naming the field."""
    if not policy.name or len(policy.name) > 253 or not _NAME.match(policy.name):
        raise PolicyError(f"{where}.name", f"{policy.name!r} is not a DNS subdomain name")
    if not policy.namespace or len(policy.namespace) > 63 or not _DNS_LABEL.match(
            policy.namespace):
        raise PolicyError(f"{where}.namespace", f"{policy.namespace!r} is not a DNS label")
    if not policy.directions:
        raise PolicyError(f"{where}.policyTypes", "at least one of ingress, egress")
    _check_selector(policy.subject, f"{where}.podSelector")
    for d in Direction:
        rules = policy.rules(d)
        if rules and d not in policy.directions:
            raise PolicyError(f"{where}.{d.value}",
                              f"{d.value} rules given but {d.value} is not in policyTypes")
        if len(rules) > MAX_RULES_PER_DIRECTION:
            raise PolicyError(f"{where}.{d.value}", f"more than {MAX_RULES_PER_DIRECTION} rules")
        for i, rule in enumerate(rules):
            w = f"{where}.{d.value}[{i}]"
            if len(rule.peers) > MAX_PEERS_PER_RULE:
                raise PolicyError(f"{w}.peers", f"more than {MAX_PEERS_PER_RULE} peers")
            if len(rule.ports) > MAX_PORTS_PER_RULE:
                raise PolicyError(f"{w}.ports", f"more than {MAX_PORTS_PER_RULE} ports")
            for j, peer in enumerate(rule.peers):
                _check_peer(peer, f"{w}.peers[{j}]")
            for j, pm in enumerate(rule.ports):
                _check_port(pm, f"{w}.ports[{j}]")
    return policy


# -- what the compiler needs to know of the cluster ----------------------------------------------


@dataclass(frozen=True)
class NamedPort:
    name: str
    protocol: Protocol
    port: int


@dataclass(frozen=True)
class PodRef:
    """A pod as policy sees it: where it is, what it is called, its labels and named ports.
    `ip` None: the API does not show one yet (a pod being created; see kube_source)."""

    namespace: str
    name: str
    ip: IPv4Address | None
    labels: frozenset[tuple[str, str]] = frozenset()
    ports: frozenset[NamedPort] = frozenset()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True)
class Inventory:
    """Every pod with an IP in the cluster and every namespace's labels: what selectors pick
    from. `node_addresses`: the addresses this node's own traffic to its pods comes from (the
    routes' preferred sources), which egress-isolated pods may always answer: kubelet probes
    come from the node and never cross a Ringlane program, so no reply is ever recorded."""

    pods: tuple[PodRef, ...] = ()
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    node_addresses: frozenset[IPv4Address] = frozenset()
