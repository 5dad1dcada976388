"""The policy compiler against a reference evaluator written straight from the semantics."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from agent.policy.compile import (
    ALL,
    MAX_RANGES,
    PolicyEntry,
    PolicyLimitError,
    PortRange,
    compile_closed,
    compile_policies,
    normalize,
)
from agent.policy.model import (
    CidrPeer,
    Direction,
    Inventory,
    LabelSelector,
    NamedPort,
    PodPeer,
    PodRef,
    Policy,
    PortMatch,
    Protocol,
    Rule,
)
from tests.policy_reference import allows

pytestmark = pytest.mark.unit

IN, EG = Direction.INGRESS, Direction.EGRESS
TCP, UDP, ICMP = 6, 17, 1


def pod(ns: str, name: str, ip: str, ports: tuple[NamedPort, ...] = (),
        **labels: str) -> PodRef:
    return PodRef(ns, name, IPv4Address(ip), frozenset(labels.items()), frozenset(ports))


WEB = pod("prod", "web", "10.0.1.2", (NamedPort("http", Protocol.TCP, 8080),), app="web")
DB = pod("prod", "db", "10.0.2.2", (NamedPort("sql", Protocol.TCP, 5432),), app="db")
CLIENT = pod("dev", "client", "10.0.2.3", app="client")
WEB_IP, DB_IP, CLIENT_IP = (IPv4Address(a) for a in ("10.0.1.2", "10.0.2.2", "10.0.2.3"))
INV = Inventory(pods=(WEB, DB, CLIENT),
                namespaces={"prod": {"env": "prod"}, "dev": {"env": "dev"}})
NODE = IPv4Address("192.168.250.1")


def lpm(entries: tuple[PolicyEntry, ...], ep: IPv4Address, d: Direction,
        peer: IPv4Address) -> tuple[PortRange, ...] | None:
    """What the kernel's LPM lookup returns: the longest matching entry's ranges."""
    best = None
    for e in entries:
        if e.endpoint == ep and e.direction is d and peer in e.peer and (
                best is None or e.peer.prefixlen > best.peer.prefixlen):
            best = e
    return None if best is None else best.ranges


def verdict(entries: tuple[PolicyEntry, ...], ep: IPv4Address, d: Direction,
            peer: IPv4Address, proto: int, port: int) -> bool:
    ranges = lpm(entries, ep, d, peer)
    return ranges is None or any(
        r.proto in (0, proto) and (proto == ICMP or r.proto == 0 or r.lo <= port <= r.hi)
        for r in ranges)


def entries_of(*policies: Policy) -> tuple[PolicyEntry, ...]:
    return compile_policies(list(policies), INV, [WEB_IP, DB_IP]).entries


def test_no_policy_no_entries() -> None:
    assert entries_of() == ()


def test_deny_all_ingress_is_one_deny_entry() -> None:
    deny = Policy("deny", "prod", directions=frozenset({IN}))
    got = entries_of(deny)
    assert set(got) == {PolicyEntry(WEB_IP, IN, ALL, ()), PolicyEntry(DB_IP, IN, ALL, ())}


def test_pod_selector_on_tcp_port() -> None:
    p = Policy("db", "prod", subject=LabelSelector.of({"app": "db"}), ingress=(Rule(
        peers=(PodPeer(LabelSelector.of({"app": "web"})),),
        ports=(PortMatch(Protocol.TCP, 5432),)),))
    got = entries_of(p)
    assert set(got) == {PolicyEntry(DB_IP, IN, ALL, ()),
                        PolicyEntry(DB_IP, IN, IPv4Network("10.0.1.2/32"),
                                    (PortRange(TCP, 5432, 5432),))}


def test_ip_block_except_overlapping_rules_union() -> None:
    p = Policy("blk", "prod", subject=LabelSelector.of({"app": "web"}), ingress=(
        Rule(peers=(CidrPeer(IPv4Network("10.0.0.0/8"),
                             frozenset({IPv4Network("10.1.0.0/16")})),),
             ports=(PortMatch(Protocol.TCP, 80),)),
        Rule(peers=(CidrPeer(IPv4Network("10.1.2.0/24")),), ports=(PortMatch(Protocol.UDP),)),
    ))
    e = entries_of(p)
    assert lpm(e, WEB_IP, IN, IPv4Address("10.9.9.9")) == ((TCP, 80, 80),)
    assert lpm(e, WEB_IP, IN, IPv4Address("10.1.9.9")) == ()            # the exception
    assert lpm(e, WEB_IP, IN, IPv4Address("10.1.2.9")) == ((UDP, 0, 65535),)  # except ∩ rule 2
    assert lpm(e, WEB_IP, IN, IPv4Address("11.0.0.1")) == ()
    assert lpm(e, DB_IP, IN, IPv4Address("10.9.9.9")) is None           # DB not selected


def test_named_ports_resolve_on_the_receiver() -> None:
    ingress = Policy("in", "prod", subject=LabelSelector.of({"app": "web"}),
                     ingress=(Rule(ports=(PortMatch(Protocol.TCP, "http"),)),))
    assert lpm(entries_of(ingress), WEB_IP, IN, CLIENT_IP) == ((TCP, 8080, 8080),)
    egress = Policy("out", "prod", subject=LabelSelector.of({"app": "web"}),
                    directions=frozenset({EG}),
                    egress=(Rule(ports=(PortMatch(Protocol.TCP, "sql"),)),))
    e = entries_of(egress)
    assert lpm(e, WEB_IP, EG, DB_IP) == ((TCP, 5432, 5432),)  # db names 5432 "sql"
    assert lpm(e, WEB_IP, EG, CLIENT_IP) == ()                # client has no "sql"
    assert lpm(e, WEB_IP, EG, NODE) == ()                     # no node address given


def test_egress_isolated_pods_may_answer_their_node() -> None:
    deny = Policy("deny", "prod", directions=frozenset({EG}))
    inv = Inventory(INV.pods, INV.namespaces, frozenset({NODE}))
    e = compile_policies([deny], inv, [WEB_IP]).entries
    assert lpm(e, WEB_IP, EG, NODE) == ((0, 0, 65535),)
    assert lpm(e, WEB_IP, EG, DB_IP) == ()


def test_namespace_selector() -> None:
    p = Policy("ns", "prod", ingress=(Rule(peers=(
        PodPeer(namespaces=LabelSelector.of({"env": "dev"})),)),))
    e = entries_of(p)
    assert lpm(e, WEB_IP, IN, CLIENT_IP) == ((0, 0, 65535),)
    assert lpm(e, WEB_IP, IN, DB_IP) == ()


def test_normalize_merges_and_any_wins() -> None:
    assert normalize([PortRange(TCP, 10, 20), PortRange(TCP, 21, 30), PortRange(TCP, 5, 6),
                      PortRange(ICMP, 3, 3)]) == ((ICMP, 0, 65535), (TCP, 5, 6), (TCP, 10, 30))
    assert normalize([PortRange(TCP, 1, 2), PortRange(0, 0, 65535)]) == ((0, 0, 65535),)


def test_too_many_ranges_is_a_limit_error_naming_the_endpoint() -> None:
    ports = tuple(PortMatch(Protocol.TCP, 1000 + 2 * i) for i in range(MAX_RANGES + 1))
    p = Policy("many", "prod", subject=LabelSelector.of({"app": "web"}),
               ingress=(Rule(ports=ports),))
    with pytest.raises(PolicyLimitError, match=r"10\.0\.1\.2 ingress"):
        entries_of(p)


def _random_policy(rng: random.Random, i: int) -> Policy:
    def peer() -> CidrPeer | PodPeer:
        if rng.random() < 0.5:
            base = IPv4Network(f"10.0.{rng.choice([0, 1, 2])}.0/{rng.choice([8, 16, 24])}",
                               strict=False)
            sub = list(base.subnets(new_prefix=min(32, base.prefixlen + rng.choice([1, 8]))))
            return CidrPeer(base, frozenset(rng.sample(sub, k=min(len(sub), rng.randint(0, 2)))))
        return PodPeer(LabelSelector.of(rng.choice([{}, {"app": "web"}, {"app": "db"}])),
                       rng.choice([None, LabelSelector.of({"env": "dev"}), LabelSelector()]))

    def portm() -> PortMatch:
        proto = rng.choice([Protocol.TCP, Protocol.UDP, Protocol.ICMP, Protocol.ANY])
        if proto in (Protocol.ICMP, Protocol.ANY) or rng.random() < 0.3:
            return PortMatch(proto)
        if rng.random() < 0.2:
            return PortMatch(Protocol.TCP, rng.choice(["http", "sql"]))
        lo = rng.randint(1, 100)
        return PortMatch(proto, lo, rng.choice([None, lo + rng.randint(0, 20)]))

    def rules() -> tuple[Rule, ...]:
        return tuple(Rule(tuple(peer() for _ in range(rng.randint(0, 2))),
                          tuple(portm() for _ in range(rng.randint(0, 2))))
                     for _ in range(rng.randint(0, 2)))

    dirs = rng.choice([{IN}, {EG}, {IN, EG}])
    return Policy(f"p{i}", "prod", subject=LabelSelector.of(rng.choice([{}, {"app": "web"}])),
                  directions=frozenset(dirs), ingress=rules() if IN in dirs else (),
                  egress=rules() if EG in dirs else ())


def test_compiled_trie_agrees_with_the_reference_on_random_policies() -> None:
    rng = random.Random(4)
    peers = [IPv4Address(a) for a in ("10.0.1.2", "10.0.2.2", "10.0.2.3", "10.0.0.1",
                                      "10.0.1.200", "10.200.0.1", "10.0.2.128", "8.8.8.8")]
    checked = 0
    for round_ in range(150):
        policies = [_random_policy(rng, i) for i in range(rng.randint(1, 3))]
        e = compile_policies(policies, INV, [WEB_IP, DB_IP]).entries
        for ep, ep_ip in ((WEB, WEB_IP), (DB, DB_IP)):
            for d in Direction:
                for peer_ip in peers:
                    for proto, port in ((Protocol.TCP, 5), (Protocol.TCP, 50), (Protocol.UDP, 50),
                                        (Protocol.UDP, 99), (Protocol.ICMP, 0),
                                        (Protocol.TCP, 8080), (Protocol.TCP, 5432),
                                        (Protocol.SCTP, 50)):
                        want = allows(policies, INV, ep, d, peer_ip, proto, port)
                        got = verdict(e, ep_ip, d, peer_ip, {Protocol.TCP: TCP,
                                      Protocol.UDP: UDP, Protocol.ICMP: ICMP,
                                      Protocol.SCTP: 132}[proto], port)
                        assert got == want, (round_, policies, ep.name, d, peer_ip, proto, port)
                        checked += 1
    assert checked > 10000


def test_what_does_not_fit_is_enforced_closed() -> None:
    ports = tuple(PortMatch(Protocol.TCP, 1000 + 2 * i) for i in range(MAX_RANGES + 1))
    p = Policy("many", "prod", subject=LabelSelector.of({"app": "web"}),
               directions=frozenset({Direction.INGRESS, Direction.EGRESS}),
               ingress=(Rule(ports=ports),), egress=(Rule(),))
    inv = Inventory(INV.pods, INV.namespaces, frozenset({NODE}))
    closed = compile_closed([p], inv, [WEB_IP, DB_IP])
    assert set(closed.entries) == {
        PolicyEntry(WEB_IP, IN, ALL, ()), PolicyEntry(WEB_IP, EG, ALL, ()),
        PolicyEntry(WEB_IP, EG, IPv4Network(NODE), (PortRange(0, 0, 65535),))}
    assert closed.selected[WEB_IP] == {IN: ("api/prod/many",), EG: ("api/prod/many",)}
