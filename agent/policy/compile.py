"""Policies + the cluster's pods -> the entries of the data path's policy trie.

The trie (abi.h, "Policy") is keyed by (local endpoint, direction, peer prefix) and answered
by longest prefix match, so the compiler must store, for every prefix it emits, everything
the rules allow for addresses whose longest match is that prefix: the union of the port ranges
of every rule whose CIDR contains the prefix and none of whose exceptions does. Emitting that
for the set of all rule CIDRs and exceptions (plus 0.0.0.0/0, which makes "isolated" explicit)
is exact: for an address, the rules that match it are precisely those that match its longest
matching prefix in the set (prefixes nest or are disjoint).

Selectors are resolved here, against a snapshot of the cluster: a pod peer becomes the /32 of
every pod it selects, and a named port becomes the receiving pod's numbered port (the subject
for ingress, each peer pod for egress). The data path therefore never sees a label.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import NamedTuple

from agent.errors import RinglaneError
from agent.policy.model import (
    CidrPeer,
    Direction,
    Inventory,
    PodPeer,
    PodRef,
    Policy,
    PortMatch,
    Protocol,
    Rule,
)

# abi.h: RL_POLICY_RANGES and RL_MAX_POLICY_ENTRIES (tests/unit/test_abi.py checks they agree;
# this module stays importable without the compiled data path module).
MAX_RANGES = 16
MAX_ENTRIES = 131072
ALL = IPv4Network("0.0.0.0/0")

PROTO_NUMBER = {Protocol.ANY: 0, Protocol.ICMP: 1, Protocol.TCP: 6, Protocol.UDP: 17,
                Protocol.SCTP: 132}


class PolicyLimitError(RinglaneError):
    """The policies are valid but do not fit the data path's maps; nothing was changed."""


class PortRange(NamedTuple):
    """rl_port_range: protocol number (0: any) and an inclusive destination port range
    (ignored for ICMP; a later IPv4 fragment matches only 0..65535)."""

    proto: int
    lo: int = 0
    hi: int = 65535


class PolicyEntry(NamedTuple):
    """One trie entry; `ranges` empty means deny. An endpoint isolated in a direction has a
    0.0.0.0/0 entry there (the data path refuses a trie without it)."""

    endpoint: IPv4Address
    direction: Direction
    peer: IPv4Network
    ranges: tuple[PortRange, ...] = ()


@dataclass(frozen=True)
class Compiled:
    """The trie's entries, and which policies select each local endpoint (for the API)."""

    entries: tuple[PolicyEntry, ...] = ()
    selected: dict[IPv4Address, dict[Direction, tuple[str, ...]]] = field(default_factory=dict)


class _Allow(NamedTuple):
    cidr: IPv4Network
    excepts: frozenset[IPv4Network]
    ranges: frozenset[PortRange]


_ANY = PortRange(0, 0, 65535)


def normalize(ranges: Iterable[PortRange]) -> tuple[PortRange, ...]:
    """Fewest ranges with the same meaning: ANY swallows everything, ICMP has no ports, and
    overlapping or adjacent ranges of one protocol merge."""
    by_proto: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in ranges:
        if r.proto == 0:
            return (_ANY,)
        by_proto[r.proto].append((0, 65535) if r.proto == 1 else (r.lo, r.hi))
    out: list[PortRange] = []
    for proto in sorted(by_proto):
        spans = sorted(by_proto[proto])
        lo, hi = spans[0]
        for a, b in spans[1:]:
            if a <= hi + 1:
                hi = max(hi, b)
            else:
                out.append(PortRange(proto, lo, hi))
                lo, hi = a, b
        out.append(PortRange(proto, lo, hi))
    return tuple(out)


def _port_range(pm: PortMatch, receiver: PodRef | None) -> PortRange | None:
    """`pm` as a range; a named port through `receiver`'s container ports (None when the
    receiver is unknown or has no such port: the match then allows nothing)."""
    proto = PROTO_NUMBER[pm.protocol]
    if isinstance(pm.port, str):
        for named in receiver.ports if receiver else ():
            if named.name == pm.port and named.protocol is pm.protocol:
                return PortRange(proto, named.port, named.port)
        return None
    if pm.port is None:
        return PortRange(proto, 0, 65535)
    return PortRange(proto, pm.port, pm.end_port if pm.end_port is not None else pm.port)


class _Resolver:
    """Selector resolution against one inventory snapshot."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        # a rule's peers resolve the same for every endpoint it applies to
        self._cidrs: dict[tuple[str, Rule], list[tuple[IPv4Network,
                                                       frozenset[IPv4Network]]]] = {}
        self._pods: dict[tuple[str, Rule], list[PodRef]] = {}
        self.pods_with_ip = [p for p in inv.pods if p.ip is not None]
        self.by_ip = {p.ip: p for p in self.pods_with_ip}

    def namespaces(self, policy: Policy, peer: PodPeer) -> set[str]:
        if peer.namespaces is None:
            return {policy.namespace}
        sel = peer.namespaces
        return {ns for ns, labels in self.inv.namespaces.items() if sel.matches(labels)}

    def pods(self, policy: Policy, peer: PodPeer) -> list[PodRef]:
        spaces = self.namespaces(policy, peer)
        return [p for p in self.pods_with_ip
                if p.namespace in spaces and peer.pods.matches(p.label_map)]

    def allows(self, policy: Policy, rule: Rule, direction: Direction,
               ep: PodRef) -> list[_Allow]:
        """What `rule` of `policy` allows `ep` in `direction`, as CIDR allows."""
        numbered = [pm for pm in rule.ports if not isinstance(pm.port, str)]
        named = [pm for pm in rule.ports if isinstance(pm.port, str)]
        out: list[_Allow] = []

        def ranges(pms: Sequence[PortMatch], receiver: PodRef | None) -> frozenset[PortRange]:
            return frozenset(r for pm in pms if (r := _port_range(pm, receiver)) is not None)

        # numbered ports (or no ports: everything) hold for every peer as written
        if numbered or not rule.ports:
            rs = ranges(numbered, None) if rule.ports else frozenset({_ANY})
            out += [_Allow(cidr, ex, rs) for cidr, ex in self.peer_cidrs(policy, rule)]
        if not named:
            return out
        if direction is Direction.INGRESS:  # the subject receives: its own port names
            rs = ranges(named, ep)
            if rs:
                out += [_Allow(cidr, ex, rs) for cidr, ex in self.peer_cidrs(policy, rule)]
            return out
        # egress: each destination pod names its own ports, so pods are listed one by one
        for pod in self.peer_pods(policy, rule):
            rs = ranges(named, pod)
            if rs and pod.ip is not None:
                out.append(_Allow(IPv4Network(pod.ip), frozenset(), rs))
        return out

    def peer_cidrs(self, policy: Policy,
                   rule: Rule) -> list[tuple[IPv4Network, frozenset[IPv4Network]]]:
        key = (policy.namespace, rule)
        if key not in self._cidrs:
            self._cidrs[key] = self._peer_cidrs(policy, rule)
        return self._cidrs[key]

    def _peer_cidrs(self, policy: Policy,
                    rule: Rule) -> list[tuple[IPv4Network, frozenset[IPv4Network]]]:
        if not rule.peers:
            return [(ALL, frozenset())]
        out: list[tuple[IPv4Network, frozenset[IPv4Network]]] = []
        for peer in rule.peers:
            if isinstance(peer, CidrPeer):
                out.append((peer.cidr, peer.excepts))
            else:
                out += [(IPv4Network(p.ip), frozenset()) for p in self.pods(policy, peer)
                        if p.ip is not None]
        return out

    def peer_pods(self, policy: Policy, rule: Rule) -> list[PodRef]:
        """Known pods among the rule's peers (a CIDR peer: the pods inside it)."""
        key = (policy.namespace, rule)
        if key not in self._pods:
            self._pods[key] = self._peer_pods(policy, rule)
        return self._pods[key]

    def _peer_pods(self, policy: Policy, rule: Rule) -> list[PodRef]:
        if not rule.peers:
            return list(self.pods_with_ip)
        found: dict[IPv4Address | None, PodRef] = {}
        for peer in rule.peers:
            if isinstance(peer, PodPeer):
                found.update((p.ip, p) for p in self.pods(policy, peer))
            else:
                found.update((p.ip, p) for p in self.pods_with_ip if p.ip is not None
                             and p.ip in peer.cidr and not any(p.ip in e for e in peer.excepts))
        return list(found.values())


Prefix = tuple[int, int]  # (network address as an int, prefix length): cheap to hash


def _key(net: IPv4Network) -> Prefix:
    return int(net.network_address), net.prefixlen


def _supernets(p: Prefix) -> list[Prefix]:
    """`p` and every prefix that contains it, longest first (33 at most)."""
    addr, plen = p
    return [(addr & ((0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF), n) for n in range(plen, -1, -1)]


def _trie(ep: IPv4Address, direction: Direction,
          allows: list[_Allow]) -> list[PolicyEntry]:
    """The entries of one isolated (endpoint, direction): every prefix with its union.

    Linear in the prefixes: the rules that contain a prefix are found among its 33
    supernets (by exact CIDR), and an exception contains it iff it is one of them."""
    by_cidr: dict[Prefix, list[tuple[frozenset[Prefix], frozenset[PortRange]]]] = {}
    for a in allows:
        by_cidr.setdefault(_key(a.cidr), []).append(
            (frozenset(_key(e) for e in a.excepts), a.ranges))
    prefixes = {(0, 0)} | set(by_cidr) | {
        x for rules in by_cidr.values() for excepts, _ in rules for x in excepts}
    value: dict[Prefix, tuple[PortRange, ...]] = {}
    for p in prefixes:
        sups = _supernets(p)
        inside = set(sups)
        value[p] = normalize(r for s in sups for excepts, ranges in by_cidr.get(s, ())
                             if not excepts & inside for r in ranges)
        if len(value[p]) > MAX_RANGES:
            raise PolicyLimitError(
                f"endpoint {ep} {direction.value}: peer {IPv4Network(p)} needs "
                f"{len(value[p])} port ranges; the data path holds {MAX_RANGES} per peer "
                "(merge ports or ranges)")
    out = []
    for p in sorted(prefixes, key=lambda k: (k[1], k[0])):
        # a prefix that says what its nearest enclosing prefix says adds nothing
        parent = next((s for s in _supernets(p)[1:] if s in prefixes), None)
        if parent is None or value[parent] != value[p]:
            out.append(PolicyEntry(ep, direction, IPv4Network(p), value[p]))
    return out


def _selection(res: _Resolver, policies: Sequence[Policy], local: Iterable[IPv4Address]
               ) -> Iterator[tuple[PodRef, Direction, list[Policy]]]:
    """Each local endpoint the inventory knows, in each direction some policy selects it."""
    for ip in sorted(set(local)):
        ep = res.by_ip.get(ip)
        if ep is None:
            continue
        for direction in Direction:
            chosen = [p for p in policies
                      if direction in p.directions and p.namespace == ep.namespace
                      and p.subject.matches(ep.label_map)]
            if chosen:
                yield ep, direction, chosen


def _node_allows(inventory: Inventory) -> list[_Allow]:
    return [_Allow(IPv4Network(a), frozenset(), frozenset({_ANY}))
            for a in sorted(inventory.node_addresses)]


def compile_policies(policies: Sequence[Policy], inventory: Inventory,
                     local: Iterable[IPv4Address]) -> Compiled:
    """The trie entries for this node's endpoints `local`. An endpoint the inventory does not
    know (no namespace, no labels) is selected by no policy. Raises PolicyLimitError."""
    res = _Resolver(inventory)
    node = _node_allows(inventory)
    entries: list[PolicyEntry] = []
    selected: dict[IPv4Address, dict[Direction, tuple[str, ...]]] = {}
    for ep, direction, chosen in _selection(res, policies, local):
        assert ep.ip is not None  # by_ip holds only pods with an address
        selected.setdefault(ep.ip, {})[direction] = tuple(p.id for p in chosen)
        allows = [a for p in chosen for rule in p.rules(direction)
                  for a in res.allows(p, rule, direction, ep)]
        if direction is Direction.EGRESS:
            allows += node
        entries += _trie(ep.ip, direction, allows)
    if len(entries) > MAX_ENTRIES:
        raise PolicyLimitError(f"policies compile to {len(entries)} entries; the data path "
                               f"holds {MAX_ENTRIES}")
    return Compiled(tuple(entries), selected)


def compile_closed(policies: Sequence[Policy], inventory: Inventory,
                   local: Iterable[IPv4Address]) -> Compiled:
    """What to enforce when the policies do not fit the maps: every endpoint a policy
    isolates denies everything in that direction (replies and its node's traffic still pass).
    Failing closed: never more than the policies allow, and a pod started meanwhile is
    isolated as its policies say, not left open."""
    res = _Resolver(inventory)
    node = _node_allows(inventory)
    entries: list[PolicyEntry] = []
    selected: dict[IPv4Address, dict[Direction, tuple[str, ...]]] = {}
    for ep, direction, chosen in _selection(res, policies, local):
        assert ep.ip is not None
        selected.setdefault(ep.ip, {})[direction] = tuple(p.id for p in chosen)
        entries += _trie(ep.ip, direction, node if direction is Direction.EGRESS else [])
    return Compiled(tuple(entries), selected)
