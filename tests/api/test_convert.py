"""Protobuf <-> model (agent/api/convert.py) and the YAML policy files of ringlanectl
(agent/api/policyfile.py), without a server."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Network

import pytest
import yaml

from agent.api import convert, policyfile
from agent.api.v1 import policy_pb2 as ppb
from agent.policy.model import (
    CidrPeer,
    Direction,
    LabelSelector,
    Operator,
    PodPeer,
    Policy,
    PolicyError,
    PortMatch,
    Protocol,
    Requirement,
    Rule,
)
from tests.api.test_server import rich

pytestmark = pytest.mark.unit

MODEL = Policy(
    name="web", namespace="shop",
    subject=LabelSelector.of({"app": "web"}, Requirement("tier", Operator.NOT_IN,
                                                         frozenset({"x"}))),
    directions=frozenset({Direction.INGRESS, Direction.EGRESS}),
    ingress=(Rule(peers=(PodPeer(LabelSelector.of({"a": "b"}), LabelSelector()),
                         PodPeer(),
                         CidrPeer(IPv4Network("10.0.0.0/8"),
                                  frozenset({IPv4Network("10.9.0.0/16")}))),
                  ports=(PortMatch(Protocol.TCP, 80, 81), PortMatch(Protocol.SCTP, "x"),
                         PortMatch(Protocol.ICMP), PortMatch(Protocol.ANY))),),
    egress=(Rule(),),
    labels=frozenset({("team", "a")}))


def test_model_proto_model_round_trip() -> None:
    msg = convert.policy_to_proto(MODEL)
    back = convert.policy_to_model(msg)
    assert back == MODEL
    assert back.labels == MODEL.labels
    assert convert.policy_to_proto(back) == msg


def test_proto_model_proto_round_trip() -> None:
    expected = rich()
    expected.origin = ppb.ORIGIN_API
    assert convert.policy_to_proto(convert.policy_to_model(rich())) == expected


def test_unspecified_protocol_is_tcp_as_in_networkpolicy() -> None:
    msg = ppb.Policy(name="a", namespace="b",
                     ingress=[ppb.Rule(ports=[ppb.PortMatch(number=53)])])
    assert convert.policy_to_model(msg).ingress[0].ports == (PortMatch(Protocol.TCP, 53),)


def test_codec_round_trip_and_refuses_garbage() -> None:
    dump, load = convert.CODEC
    assert load(dump([MODEL])) == [MODEL]
    assert load(dump([])) == []
    with pytest.raises(ValueError, match="not an ApplyPoliciesRequest"):
        load(b"\xff\xff\xff")
    with pytest.raises(ValueError, match="newer agent"):
        load(dump([MODEL]) + b"\xa0\x06\x01")  # field 100, varint


def test_unknown_fields_walks_nested_messages() -> None:
    rule = ppb.Rule.FromString(ppb.Rule().SerializeToString() + b"\xf8\x01\x01")  # field 31
    msg = ppb.ApplyPoliciesRequest(policies=[ppb.Policy(), ppb.Policy(egress=[ppb.Rule(),
                                                                              rule])])
    assert convert.unknown_fields(msg) == ["policies[1].egress[1]: unknown field number 31"]
    assert convert.unknown_fields(ppb.ApplyPoliciesRequest()) == []


def test_api_path_names_the_pods_message() -> None:
    assert convert.api_path("p.ingress[0].peers[2].namespaceSelector.matchLabels") == (
        "p.ingress[0].peers[2].pods.namespaceSelector.matchLabels")
    assert convert.api_path("p.podSelector") == "p.podSelector"
    with pytest.raises(PolicyError) as info:
        convert.policy_to_model(ppb.Policy(name="a", namespace="b", ingress=[ppb.Rule(
            peers=[ppb.Peer(pods=ppb.PodPeer(namespace_selector=ppb.LabelSelector(
                match_expressions=[ppb.Requirement(key="k", operator=ppb.OPERATOR_EXISTS,
                                                   values=["v"])])))])]))
    assert info.value.field == "policy.ingress[0].peers[0].namespaceSelector.matchExpressions[k]"


# -- YAML files ---------------------------------------------------------------------------------

GOOD = textwrap.dedent("""\
    name: web
    namespace: shop
    labels: {team: a}
    podSelector:
      matchLabels: {app: web}
      matchExpressions: [{key: tier, operator: NotIn, values: [x]}]
    policyTypes: [Ingress, egress]
    ingress:
      - from:
          - podSelector: {matchLabels: {a: b}}
            namespaceSelector: {}
          - podSelector: {}
          - ipBlock: {cidr: 10.0.0.0/8, except: [10.9.0.0/16]}
        ports:
          - {port: 80, endPort: 81}
          - {protocol: SCTP, port: x}
          - {protocol: icmp}
          - {protocol: ANY}
    egress:
      - {}
    """)


def test_yaml_gives_the_same_model_as_the_proto() -> None:
    ((where, msg, model),) = policyfile.load(GOOD, "p.yaml")
    assert where == "p.yaml: document 1"
    assert model == MODEL
    assert model.labels == MODEL.labels
    assert convert.policy_to_model(msg) == MODEL


def test_documents_round_trip_through_policy_list_output() -> None:
    msg = convert.policy_to_proto(MODEL)
    doc = policyfile.proto_to_doc(msg)
    assert doc["origin"] == "api"
    assert list(doc) == ["name", "namespace", "origin", "labels", "podSelector", "policyTypes",
                         "ingress", "egress"]
    ((_, _, model),) = policyfile.load(yaml.safe_dump(doc), "listed.yaml")
    assert model == MODEL


def test_several_documents_and_empty_ones() -> None:
    text = "name: a\nnamespace: x\n---\n---\nname: b\nnamespace: x\n...\n"
    assert [m.name for _, _, m in policyfile.load(text, "f")] == ["a", "b"]


@pytest.mark.parametrize(("text", "message"), [
    ("name: a\nnamespace: b\n---\nname: c\nnamespace: d\ningress:\n- from:\n  - podSelector: {}\n"
     "  - podSelectr: {}\n",
     "f.yaml: document 2: ingress[0].from[1]: unknown key 'podSelectr' "
     "(did you mean 'podSelector'?)"),
    ("name: a\nnamespace: b\negress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: "
     "[11.0.0.0/8]}}]}]\n",
     "f.yaml: document 1: egress[0].to[0].ipBlock.except[0]: 11.0.0.0/8 is not strictly "
     "inside 10.0.0.0/8"),
    ("name: a\nnamespace: b\ningress: [{ports: [{protocol: ICMP, port: 8}]}]\n",
     "f.yaml: document 1: ingress[0].ports[0]: protocol icmp has no ports"),
    ("name: a\nnamespace: b\ningress: [{ports: [{port: 0}]}]\n",
     "f.yaml: document 1: ingress[0].ports[0].port: 0 is not in 1..65535"),
    ("name: a\nnamespace: b\ningress: [{ports: [{protocol: GRE}]}]\n",
     "f.yaml: document 1: ingress[0].ports[0].protocol: 'GRE' is not one of TCP, UDP, SCTP, "
     "ICMP, ANY"),
    ("name: a\nnamespace: b\npodSelector: {matchLabels: {version: 2}}\n",
     "f.yaml: document 1: podSelector.matchLabels.version: expected a string, got a number "
     "(quote it)"),
    ("name: a\nnamespace: b\ningress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, "
     "podSelector: {}}]}]\n",
     "f.yaml: document 1: ingress[0].from[0]: ipBlock cannot be combined"),
    ("name: a\n", "f.yaml: document 1: missing 'namespace'"),
    ("- name: a\n", "f.yaml: document 1: expected a mapping, got a list"),
    ("name: a\nnamespace: b\norigin: kubernetes\n", "f.yaml: document 1: origin: 'kubernetes'"),
    ("name: a\nnamespace: b\npolicyTypes: [Sideways]\n",
     "f.yaml: document 1: policyTypes[0]: 'Sideways' is not one of Ingress, Egress"),
    ("name: [a\n", "f.yaml: not valid YAML"),
])
def test_yaml_errors_name_document_and_path(text: str, message: str) -> None:
    with pytest.raises(policyfile.PolicyFileError) as info:
        policyfile.load(text, "f.yaml")
    assert str(info.value).startswith(message), str(info.value)
