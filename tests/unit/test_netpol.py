"""NetworkPolicy objects -> Policy: the scenarios of the upstream e2e suite
(test/e2e/network/netpol), the policyTypes defaulting, and malformed objects, which must never
raise and never allow more than their author wrote."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import pytest

from agent.policy.model import (
    MAX_PEERS_PER_RULE,
    MAX_RULES_PER_DIRECTION,
    CidrPeer,
    Direction,
    LabelSelector,
    Operator,
    Origin,
    PodPeer,
    Policy,
    PortMatch,
    Protocol,
    Requirement,
    Rule,
    validate,
)
from agent.policy.netpol import Translation, translate, translate_all

pytestmark = pytest.mark.unit

IN, EG = Direction.INGRESS, Direction.EGRESS
NS_NAME = "kubernetes.io/metadata.name"
POD_A = {"matchLabels": {"pod": "a"}}


def netpol(spec: Any, *, name: str = "np", namespace: str = "x") -> dict[str, Any]:
    """An object as the API serves it (only the fields translation reads, plus some noise)."""
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace, "uid": "u-1",
                         "resourceVersion": "7", "labels": {"team": "web"}},
            "spec": spec}


def policy(**fields: Any) -> Policy:
    base: dict[str, Any] = {"name": "np", "namespace": "x", "origin": Origin.KUBERNETES}
    return Policy(**{**base, **fields})


def sel(labels: dict[str, str] | None = None, *exprs: Requirement) -> LabelSelector:
    return LabelSelector.of(labels, *exprs)


def net(text: str) -> IPv4Network:
    return IPv4Network(text)


def clean(obj: Any) -> Policy:
    """The translation of a well-formed object: no error, no warning, a valid policy."""
    t = translate(obj)
    assert (t.error, t.warnings) == (None, ())
    assert t.policy is not None
    assert validate(t.policy) is t.policy
    return t.policy


def failed(obj: Any, *fragments: str) -> Translation:
    """The translation of a malformed object: an error naming every fragment."""
    t = translate(obj)
    assert t.error is not None, t
    for f in fragments:
        assert f in t.error, t.error
    if t.policy is not None:
        validate(t.policy)
    return t


# -- the upstream e2e scenarios --------------------------------------------------------------


def test_default_deny_ingress() -> None:
    got = clean(netpol({"podSelector": {}, "policyTypes": ["Ingress"]}))
    assert got == policy(subject=LabelSelector(), directions=frozenset({IN}))
    assert got.labels == frozenset({("team", "web")})


def test_default_deny_all() -> None:
    got = clean(netpol({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    assert got == policy(directions=frozenset({IN, EG}))


def test_deny_egress_for_selected_pods() -> None:
    got = clean(netpol({"podSelector": POD_A, "policyTypes": ["Egress"]}))
    assert got == policy(subject=sel({"pod": "a"}), directions=frozenset({EG}))


def test_allow_all_ingress_is_one_empty_rule() -> None:
    got = clean(netpol({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}))
    assert got == policy(ingress=(Rule(),))
    # "from: []" and "ports: []" mean the same as absent: every peer, every port
    also = clean(netpol({"podSelector": {}, "ingress": [{"from": [], "ports": []}]}))
    assert also == got


def test_allow_from_pods_of_own_namespace() -> None:
    got = clean(netpol({"podSelector": POD_A, "policyTypes": ["Ingress"],
                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert got == policy(subject=sel({"pod": "a"}),
                         ingress=(Rule(peers=(PodPeer(sel({"pod": "b"}), None),)),))


def test_deny_ingress_from_other_namespaces() -> None:
    got = clean(netpol({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}))
    assert got == policy(ingress=(Rule(peers=(PodPeer(LabelSelector(), None),)),))


def test_allow_from_namespace_by_namespace_selector() -> None:
    got = clean(netpol({"podSelector": POD_A, "policyTypes": ["Ingress"], "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {NS_NAME: "y"}}}]}]}))
    assert got == policy(subject=sel({"pod": "a"}), ingress=(
        Rule(peers=(PodPeer(pods=LabelSelector(), namespaces=sel({NS_NAME: "y"})),)),))


def test_allow_from_all_namespaces() -> None:
    got = clean(netpol({"podSelector": POD_A, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {}}}]}]}))
    assert got.ingress == (Rule(peers=(PodPeer(LabelSelector(), LabelSelector()),)),)


def test_allow_from_pods_in_namespaces_both_selectors() -> None:
    not_x = Requirement(NS_NAME, Operator.NOT_IN, frozenset({"x"}))
    got = clean(netpol({"podSelector": POD_A, "ingress": [{"from": [{
        "namespaceSelector": {"matchExpressions": [
            {"key": NS_NAME, "operator": "NotIn", "values": ["x"]}]},
        "podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert got.ingress == (Rule(peers=(PodPeer(sel({"pod": "b"}), sel(None, not_x)),)),)
    # both empty: every pod of every namespace (upstream's "allow-all-to-a")
    every = clean(netpol({"podSelector": POD_A, "ingress": [
        {"from": [{"podSelector": {}, "namespaceSelector": {}}]}]}))
    assert every.ingress == (Rule(peers=(PodPeer(LabelSelector(), LabelSelector()),)),)


def test_pod_selector_or_namespace_selector_are_two_peers() -> None:
    got = clean(netpol({"podSelector": POD_A, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {NS_NAME: "y"}}},
        {"podSelector": {"matchLabels": {"pod": "b"}}}]}]}))
    assert got.ingress == (Rule(peers=(PodPeer(LabelSelector(), sel({NS_NAME: "y"})),
                                       PodPeer(sel({"pod": "b"}), None))),)


def test_match_expressions_every_operator() -> None:
    exprs = [{"key": "pod", "operator": "In", "values": ["b", "c"]},
             {"key": "tier", "operator": "NotIn", "values": ["db"]},
             {"key": "app", "operator": "Exists"},
             {"key": "legacy", "operator": "DoesNotExist", "values": []}]
    want = sel(None,
               Requirement("pod", Operator.IN, frozenset({"b", "c"})),
               Requirement("tier", Operator.NOT_IN, frozenset({"db"})),
               Requirement("app", Operator.EXISTS),
               Requirement("legacy", Operator.DOES_NOT_EXIST))
    got = clean(netpol({"podSelector": {"matchLabels": {"pod": "a"}, "matchExpressions": exprs},
                        "ingress": [{"from": [{"podSelector": {"matchExpressions": exprs}}]}]}))
    assert got.subject == LabelSelector(frozenset({("pod", "a")}), want.match_expressions)
    assert got.ingress == (Rule(peers=(PodPeer(want, None),)),)


def test_numbered_port_from_a_namespace() -> None:
    got = clean(netpol({"podSelector": POD_A, "ingress": [{
        "from": [{"namespaceSelector": {"matchLabels": {NS_NAME: "y"}}}],
        "ports": [{"port": 81, "protocol": "TCP"}]}]}))
    assert got.ingress == (Rule(peers=(PodPeer(LabelSelector(), sel({NS_NAME: "y"})),),
                                ports=(PortMatch(Protocol.TCP, 81),)),)


def test_named_ports_ingress_and_egress() -> None:
    got = clean(netpol({"podSelector": {}, "ingress": [{"ports": [{"port": "serve-81-tcp"}]}]}))
    assert got.ingress == (Rule(ports=(PortMatch(Protocol.TCP, "serve-81-tcp"),)),)
    got = clean(netpol({"podSelector": {}, "policyTypes": ["Egress"],
                        "egress": [{"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}]}))
    assert got == policy(directions=frozenset({EG}),
                         egress=(Rule(ports=(PortMatch(Protocol.UDP, "serve-80-udp"),)),))


def test_protocol_without_port_is_every_port_of_it() -> None:
    got = clean(netpol({"podSelector": POD_A, "ingress": [{"ports": [{"protocol": "TCP"}]}]}))
    assert got.ingress == (Rule(ports=(PortMatch(Protocol.TCP, None),)),)
    # neither port nor protocol: every TCP port
    got = clean(netpol({"podSelector": POD_A, "ingress": [{"ports": [{}]}]}))
    assert got.ingress == (Rule(ports=(PortMatch(Protocol.TCP, None),)),)


def test_udp_and_sctp_are_not_tcp() -> None:
    got = clean(netpol({"podSelector": POD_A, "ingress": [
        {"ports": [{"port": 81, "protocol": "UDP"}]},
        {"ports": [{"port": 80, "protocol": "SCTP"}]}]}))
    assert got.ingress == (Rule(ports=(PortMatch(Protocol.UDP, 81),)),
                           Rule(ports=(PortMatch(Protocol.SCTP, 80),)))


def test_multiple_ports_and_protocols_in_one_rule() -> None:
    got = clean(netpol({"podSelector": POD_A, "ingress": [{"ports": [
        {"port": 53, "protocol": "UDP"}, {"port": 53}, {"port": 9000, "protocol": "SCTP"},
        {"port": "metrics", "protocol": "TCP"}]}]}))
    assert got.ingress == (Rule(ports=(
        PortMatch(Protocol.UDP, 53), PortMatch(Protocol.TCP, 53),
        PortMatch(Protocol.SCTP, 9000), PortMatch(Protocol.TCP, "metrics"))),)


def test_end_port_ranges() -> None:
    got = clean(netpol({"podSelector": {}, "ingress": [{"ports": [
        {"port": 80, "endPort": 82, "protocol": "TCP"},
        {"port": 30000, "endPort": 32767, "protocol": "UDP"},
        {"port": 443, "endPort": 443}]}]}))
    assert got.ingress == (Rule(ports=(
        PortMatch(Protocol.TCP, 80, 82), PortMatch(Protocol.UDP, 30000, 32767),
        PortMatch(Protocol.TCP, 443, 443))),)


def test_egress_to_ip_block() -> None:
    got = clean(netpol({"podSelector": POD_A, "policyTypes": ["Egress"],
                        "egress": [{"to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}]}]}))
    assert got == policy(subject=sel({"pod": "a"}), directions=frozenset({EG}),
                         egress=(Rule(peers=(CidrPeer(net("10.1.2.3/32")),)),))


def test_ip_block_with_except() -> None:
    got = clean(netpol({"podSelector": POD_A, "policyTypes": ["Egress"], "egress": [{"to": [
        {"ipBlock": {"cidr": "0.0.0.0/4", "except": ["10.1.2.3/32", "8.0.0.0/8"]}}]}]}))
    assert got.egress == (Rule(peers=(CidrPeer(
        net("0.0.0.0/4"), frozenset({net("10.1.2.3/32"), net("8.0.0.0/8")})),)),)


def test_ingress_and_egress_together() -> None:
    got = clean(netpol({
        "podSelector": POD_A, "policyTypes": ["Egress", "Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
        "egress": [{"ports": [{"port": 80}]}]}))
    assert got == policy(
        subject=sel({"pod": "a"}), directions=frozenset({IN, EG}),
        ingress=(Rule(peers=(PodPeer(sel({"pod": "b"})),)),),
        egress=(Rule(ports=(PortMatch(Protocol.TCP, 80),)),))


# -- policyTypes defaulting --------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "directions"), [
    ({"podSelector": {}}, {IN}),
    ({"podSelector": {}, "policyTypes": []}, {IN}),
    ({"podSelector": {}, "policyTypes": None}, {IN}),
    ({"podSelector": {}, "egress": []}, {IN}),   # Kubernetes looks at len(egress)
    ({"podSelector": {}, "egress": [{}]}, {IN, EG}),
    ({"podSelector": {}, "ingress": [{}], "egress": [{}]}, {IN, EG}),
    ({"podSelector": {}, "policyTypes": ["Egress", "Egress"]}, {EG}),
])
def test_policy_types_defaulting(spec: dict[str, Any], directions: set[Direction]) -> None:
    assert clean(netpol(spec)).directions == directions


def test_egress_without_policy_types_keeps_its_rules() -> None:
    got = clean(netpol({"podSelector": POD_A, "egress": [{"to": [{"podSelector": {}}]}]}))
    assert got == policy(subject=sel({"pod": "a"}), directions=frozenset({IN, EG}),
                         egress=(Rule(peers=(PodPeer(),)),))


def test_absent_spec_and_pod_selector_select_every_pod() -> None:
    """Go decodes a missing podSelector (or spec) as the empty selector: every pod."""
    assert clean(netpol(None)) == policy()
    assert clean(netpol({"policyTypes": ["Ingress"]})) == policy()


def test_rules_of_an_unlisted_direction_are_ignored() -> None:
    t = translate(netpol({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}))
    assert t.error is None
    assert t.policy == policy(directions=frozenset({EG}))
    assert t.warnings == ("spec.ingress: ignored: Ingress is not in policyTypes",)


# -- IPv6 and non-canonical blocks -------------------------------------------------------------


def test_ipv6_block_is_skipped_with_a_warning() -> None:
    t = translate(netpol({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "fd00::/8", "except": ["fd00::1/128"]}},
                {"ipBlock": {"cidr": "10.0.0.0/8"}}]}]}))
    assert t.error is None
    assert t.policy == policy(directions=frozenset({EG}),
                              egress=(Rule(peers=(CidrPeer(net("10.0.0.0/8")),)),))
    assert t.warnings == ("spec.egress[0].to[0].ipBlock.cidr: fd00::/8 skipped: "
                          "the data path is IPv4-only",)


def test_rule_with_only_ipv6_peers_is_dropped_not_opened() -> None:
    """Without its IPv6 peers the rule must not become "every peer"."""
    t = translate(netpol({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
        {"to": [{"ipBlock": {"cidr": "::/0"}}], "ports": [{"port": 53}]}]}))
    assert t.error is None
    assert t.policy == policy(directions=frozenset({EG}))  # isolated, nothing allowed
    assert "spec.egress[0]: dropped: its only peers are IPv6 blocks" in t.warnings


def test_cidr_with_host_bits_is_read_as_its_network() -> None:
    t = translate(netpol({"podSelector": {}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.2.3/24"]}}]}]}))
    assert t.error is None
    assert t.policy is not None
    assert t.policy.ingress == (Rule(peers=(CidrPeer(net("10.1.0.0/16"),
                                                     frozenset({net("10.1.2.0/24")})),)),)
    assert len(t.warnings) == 2


# -- malformed objects: no exception, the error named, never more permissive -------------------


GOOD_RULE = {"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}], "ports": [{"port": 80}]}
GOOD = Rule(peers=(PodPeer(sel({"pod": "b"})),), ports=(PortMatch(Protocol.TCP, 80),))


@pytest.mark.parametrize(("bad_rule", "where"), [
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}, "spec.ingress[1].from[0].ipBlock.cidr"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.1"}}]}, "spec.ingress[1].from[0].ipBlock.cidr"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]},
     "spec.ingress[1].from[0].ipBlock.except[0]: 11.0.0.0/16 is not strictly inside"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]},
     "spec.ingress[1].from[0].ipBlock.except[0]"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/64"]}}]},
     "spec.ingress[1].from[0].ipBlock.except[0]"),
    ({"from": [{"ipBlock": {"cidr": "fd00::/8", "except": ["10.0.0.0/16"]}}]},
     "spec.ingress[1].from[0].ipBlock.except[0]"),
    ({"from": [{"ipBlock": {}}]}, "spec.ingress[1].from[0].ipBlock.cidr"),
    ({"ports": [{"port": 80, "protocol": "HTTP"}]}, "spec.ingress[1].ports[0].protocol"),
    ({"ports": [{"port": 80, "protocol": "tcp"}]}, "spec.ingress[1].ports[0].protocol"),
    ({"ports": [{"port": 80, "protocol": ["TCP"]}]}, "spec.ingress[1].ports[0].protocol"),
    ({"ports": [{"port": 80, "endPort": 79}]},
     "spec.ingress[1].ports[0].endPort: 79 is below port 80"),
    ({"ports": [{"endPort": 90}]}, "spec.ingress[1].ports[0].endPort"),
    ({"ports": [{"port": "http", "endPort": 90}]}, "spec.ingress[1].ports[0].endPort"),
    ({"ports": [{"port": 70000}]}, "spec.ingress[1].ports[0].port"),
    ({"ports": [{"port": 0}]}, "spec.ingress[1].ports[0].port"),
    ({"ports": [{"port": "80"}]}, "spec.ingress[1].ports[0].port: '80' is not a port name"),
    ({"ports": [{"port": "Http"}]}, "spec.ingress[1].ports[0].port"),
    ({"ports": [{"port": "a-very-long-port-name"}]}, "spec.ingress[1].ports[0].port"),
    ({"ports": [{"port": True}]}, "spec.ingress[1].ports[0].port"),
    ({"ports": [{"port": 80.0}]}, "spec.ingress[1].ports[0].port"),
    ({"ports": [{"port": 80, "endPort": "90"}]}, "spec.ingress[1].ports[0].endPort"),
    ({"ports": {"port": 80}}, "spec.ingress[1].ports: expected an array, got an object"),
    ({"ports": [[80]]}, "spec.ingress[1].ports[0]: expected an object"),
    ({"ports": [None]}, "spec.ingress[1].ports[0]"),
    ({"from": {"podSelector": {}}}, "spec.ingress[1].from: expected an array"),
    ({"from": [{}]}, "spec.ingress[1].from[0]: a peer needs"),
    ({"from": [None]}, "spec.ingress[1].from[0]"),
    ({"from": [{"podSelector": []}]}, "spec.ingress[1].from[0].podSelector"),
    ({"from": [{"podSelector": {}, "ipBlock": {"cidr": "10.0.0.0/8"}}]},
     "spec.ingress[1].from[0]: ipBlock cannot be combined"),
    ({"from": [{"podSelector": {"matchLabels": {"pod": 1}}}]},
     "spec.ingress[1].from[0].podSelector.matchLabels[pod]"),
    ({"from": [{"podSelector": {"matchLabels": {"pod": "no spaces"}}}]},
     "spec.ingress[1].from[0].podSelector.matchLabels[pod]"),
    ({"from": [{"namespaceSelector": {"matchExpressions": [
        {"key": "a", "operator": "Gt", "values": ["1"]}]}}]},
     "spec.ingress[1].from[0].namespaceSelector.matchExpressions[0].operator"),
    ({"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]},
     "spec.ingress[1].from[0].podSelector.matchExpressions[a]: operator In needs"),
    ({"from": [{"podSelector": {"matchExpressions": [
        {"key": "a", "operator": "Exists", "values": ["x"]}]}}]},
     "spec.ingress[1].from[0].podSelector.matchExpressions[a]"),
    ({"from": [{"podSelector": {"matchExpression": []}}]},
     "spec.ingress[1].from[0].podSelector.matchExpression: unknown field"),
    ({"to": [{"podSelector": {}}]}, "spec.ingress[1].to: unknown field"),
    ({"ports": [{"port": 80, "portRange": "80-90"}]}, "spec.ingress[1].ports[0].portRange"),
    ([GOOD_RULE], "spec.ingress[1]: expected an object, got an array"),
    (None, "spec.ingress[1]: expected an object, got null"),
])
def test_broken_rule_is_dropped_and_the_rest_kept(bad_rule: Any, where: str) -> None:
    t = failed(netpol({"podSelector": POD_A, "ingress": [GOOD_RULE, bad_rule, GOOD_RULE]}),
               where, "rule dropped")
    assert t.policy == policy(subject=sel({"pod": "a"}), ingress=(GOOD, GOOD))


def test_peer_index_in_a_validate_error_is_the_objects() -> None:
    """validate() sees the rule without its skipped IPv6 peer; the message counts the object's."""
    t = failed(netpol({"podSelector": {}, "ingress": [{"from": [
        {"ipBlock": {"cidr": "fd00::/8"}},
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn"}]}}]}]}),
        "spec.ingress[0].from[1].podSelector.matchExpressions[a]")
    assert t.policy == policy()


def test_too_many_peers_drops_the_rule() -> None:
    many = [{"ipBlock": {"cidr": f"10.0.{i // 256}.{i % 256}/32"}}
            for i in range(MAX_PEERS_PER_RULE + 1)]
    t = failed(netpol({"podSelector": {}, "ingress": [{"from": many}, {}]}),
               f"spec.ingress[0].from: more than {MAX_PEERS_PER_RULE} peers")
    assert t.policy == policy(ingress=(Rule(),))


def test_too_many_rules_keeps_the_first() -> None:
    rules = [{"ports": [{"port": 1 + i}]} for i in range(MAX_RULES_PER_DIRECTION + 2)]
    t = failed(netpol({"podSelector": {}, "ingress": rules}), "spec.ingress: more than")
    assert t.policy is not None
    assert len(t.policy.ingress) == MAX_RULES_PER_DIRECTION
    assert t.policy.ingress[-1] == Rule(ports=(PortMatch(port=MAX_RULES_PER_DIRECTION),))


@pytest.mark.parametrize(("spec", "where"), [
    ({"podSelector": [], "ingress": [{}]}, "spec.podSelector: expected an object"),
    ({"podSelector": {"matchLabels": ["pod", "a"]}, "ingress": [{}]},
     "spec.podSelector.matchLabels"),
    ({"podSelector": {"matchExpressions": [{"key": "pod", "operator": "Like",
                                            "values": ["a"]}]}, "ingress": [{}]},
     "spec.podSelector.matchExpressions[0].operator"),
    ({"podSelector": {"matchLabels": {f"k{i}": "v" for i in range(40)}}, "ingress": [{}]},
     "spec.podSelector: more than 32 terms"),
    ({"podSelector": {"matchLabels": {"-bad-": "v"}}, "ingress": [{}]},
     "spec.podSelector.matchLabels"),
])
def test_unreadable_subject_isolates_the_namespace(spec: dict[str, Any], where: str) -> None:
    """A guess at the selected pods could give them this policy's allows: deny instead."""
    t = failed(netpol(spec), where, "every pod of the namespace isolated")
    assert t.policy == policy(subject=LabelSelector(), directions=frozenset({IN}))


@pytest.mark.parametrize("types", [["Ingress", "ingress"], "Ingress", [None], {"Ingress": 1}])
def test_unreadable_policy_types_isolate_both_directions(types: Any) -> None:
    t = failed(netpol({"podSelector": POD_A, "policyTypes": types,
                       "ingress": [GOOD_RULE], "egress": [{}]}),
               "spec.policyTypes", "both directions isolated")
    kept = (GOOD,) if types == ["Ingress", "ingress"] else ()
    assert t.policy == policy(subject=sel({"pod": "a"}), directions=frozenset({IN, EG}),
                              ingress=kept)


@pytest.mark.parametrize("spec", [[{"podSelector": {}}], "deny", {"podSelector": {},
                                                                  "ingres": [{}]}])
def test_unreadable_spec_isolates_everything(spec: Any) -> None:
    t = failed(netpol(spec), "spec")
    assert t.policy == policy(directions=frozenset({IN, EG}))


@pytest.mark.parametrize(("direction", "value"), [("ingress", {"from": []}), ("egress", "all")])
def test_rules_that_are_not_an_array_allow_nothing(direction: str, value: Any) -> None:
    t = failed(netpol({"podSelector": {}, direction: value}),
               f"spec.{direction}: expected an array", f"no {direction} rules kept")
    assert t.policy == policy(directions=frozenset({IN, Direction(direction)}))


@pytest.mark.parametrize(("obj", "where"), [
    (netpol({}, name=""), "metadata.name"),
    (netpol({}, name="Not_A_Name"), "metadata.name"),
    (netpol({}, namespace="a.b"), "metadata.namespace"),
    ({"metadata": {"namespace": "x"}, "spec": {}}, "metadata.name: expected a string"),
    ({"metadata": {"name": "np"}, "spec": {}}, "metadata.namespace"),
    ({"metadata": ["np"], "spec": {}}, "metadata: expected an object"),
    ({"spec": {}}, "metadata"),
    ([netpol({})], "object: expected an object"),
    (None, "object"),
])
def test_no_usable_name_or_namespace_no_policy(obj: Any, where: str) -> None:
    t = failed(obj, where, "no policy")
    assert t.policy is None


def test_several_errors_are_all_reported() -> None:
    t = failed(netpol({"podSelector": {}, "ingress": [
        {"ports": [{"protocol": "ICMP"}]}, {"from": [{"ipBlock": {"cidr": "x"}}]}]}),
        "spec.ingress[0].ports[0].protocol", "spec.ingress[1].from[0].ipBlock.cidr")
    assert t.policy == policy()


# -- robustness: every node of every scenario replaced with junk --------------------------------

SCENARIOS: list[dict[str, Any]] = [
    netpol({"podSelector": {"matchLabels": {"pod": "a"}, "matchExpressions": [
        {"key": "tier", "operator": "NotIn", "values": ["db", "cache"]}]},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {NS_NAME: "y"}},
                               "podSelector": {"matchExpressions": [
                                   {"key": "pod", "operator": "In", "values": ["b"]}]}},
                              {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                     "ports": [{"port": 80, "endPort": 90, "protocol": "TCP"},
                               {"port": "dns", "protocol": "UDP"}]},
                    {}],
        "egress": [{"to": [{"podSelector": {}}], "ports": [{"protocol": "SCTP"}]}]}),
    netpol({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
    netpol({"podSelector": {}, "policyTypes": ["Egress"]}),
]
INVALID_EVERYWHERE: list[Any] = [{"?": 1}, [{"?": 1}], True]
OTHER_JUNK: list[Any] = [None, [], {}, 0, -1, 2**70, 1.5, float("nan"), "", "??", "Ingress",
                         [None], [[]], "::/0", "10.0.0.0/8"]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


def _replaced(obj: Any, path: tuple[Any, ...], junk: Any) -> Any:
    out = copy.deepcopy(obj)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = copy.deepcopy(junk)
    return out


def _no_wider(got: Policy, want: Policy) -> None:
    """`got` isolates at least what `want` does and allows nothing `want` does not."""
    assert got.key == want.key
    assert got.directions >= want.directions
    if got.subject != want.subject:
        assert got.subject == LabelSelector() and not got.ingress and not got.egress
    for d in Direction:
        assert set(got.rules(d)) <= set(want.rules(d))


@pytest.mark.parametrize("index", range(len(SCENARIOS)))
def test_junk_anywhere_never_raises_and_never_widens(index: int) -> None:
    original = SCENARIOS[index]
    want = clean(original)
    checked = 0
    for path in _paths(original):
        for junk in INVALID_EVERYWHERE + OTHER_JUNK:
            t = translate(_replaced(original, path, junk))
            assert isinstance(t, Translation)
            if t.policy is not None:
                assert validate(t.policy) is t.policy
                assert t.policy.origin is Origin.KUBERNETES
            if junk in INVALID_EVERYWHERE and path[:2] != ("metadata", "labels"):
                if path[0] in ("metadata", "apiVersion", "kind"):
                    continue
                assert t.error is not None, (path, junk)
                assert t.policy is not None, (path, junk)
                _no_wider(t.policy, want)
            checked += 1
    assert checked > 100


# -- translate_all -------------------------------------------------------------------------------


def test_translate_all_orders_and_reports() -> None:
    objs = {
        "y/deny": netpol({"podSelector": {}}, name="deny", namespace="y"),
        "x/broken": netpol({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]},
                           name="broken"),
        "x/v6": netpol({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "::/0"}}]}]},
                       name="v6"),
        "x/nameless": {"metadata": {"namespace": "x"}, "spec": {}},
    }
    policies, messages = translate_all(objs)
    assert [p.id for p in policies] == ["kubernetes/x/broken", "kubernetes/x/v6",
                                        "kubernetes/y/deny"]
    assert all(p.rules(IN) == () for p in policies)  # nothing got through
    assert [m.split(":", 2)[:2] for m in messages] == [
        ["x/broken", " error"], ["x/nameless", " error"], ["x/v6", " warning"],
        ["x/v6", " warning"]]
    assert translate_all(dict(reversed(objs.items()))) == (policies, messages)
    assert translate_all({}) == ([], [])


def test_translate_all_keeps_both_of_a_duplicate_and_says_so() -> None:
    objs = {"x/np": netpol({"podSelector": {}}), "x/np-copy": netpol({"podSelector": {}})}
    policies, messages = translate_all(objs)
    assert policies == [policy(), policy()]
    assert messages == ["x/np-copy: warning: same namespace/name as x/np"]


def test_thousands_of_broken_rules_cost_one_pass() -> None:
    """Each rule is checked on its own: no quadratic re-validation of the whole policy."""
    rules = [{"ports": [{"port": 0}]}] * 20000 + [{"ports": [{"port": 80}]}]
    t = failed(netpol({"podSelector": {}, "ingress": rules}), "spec.ingress[19999].ports[0].port")
    assert t.policy == policy(ingress=(Rule(ports=(PortMatch(Protocol.TCP, 80),)),))
    assert t.error is not None and t.error.count("rule dropped") == 20000
