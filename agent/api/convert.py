"""Protobuf messages <-> the agent's model (agent/policy/model.py, agent/api/backend.py).

Requests become model values here and nowhere else, and every policy passes through
`validate()` on the way in, so the server and `ringlanectl` (which turns its YAML into the same
messages first) refuse exactly the same inputs with the same field paths.

Field paths follow the model's: proto3 JSON names, and a pod peer's selectors directly on the
peer (``ingress[0].peers[1].podSelector``) as in a NetworkPolicy; `api_path()` spells the
path as the protobuf request does (``peers[1].pods.podSelector``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from ipaddress import IPv4Network
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from agent.api.backend import EndpointView, FlowRecord, LinkHealth, NodeStats, PolicyEvent
from agent.api.v1 import endpoint_pb2 as epb
from agent.api.v1 import policy_pb2 as ppb
from agent.api.v1 import telemetry_pb2 as tpb
from agent.policy.model import (
    CidrPeer,
    Direction,
    LabelSelector,
    Operator,
    Origin,
    Peer,
    PodPeer,
    Policy,
    PolicyError,
    PortMatch,
    Protocol,
    Requirement,
    Rule,
    validate,
)

DIRECTION_TO_PB: dict[Direction, ppb.Direction] = {Direction.INGRESS: ppb.DIRECTION_INGRESS,
                                         Direction.EGRESS: ppb.DIRECTION_EGRESS}
DIRECTION_FROM_PB: dict[int, Direction] = {v: k for k, v in DIRECTION_TO_PB.items()}
PROTOCOL_TO_PB: dict[Protocol, ppb.Protocol] = {
    Protocol.TCP: ppb.PROTOCOL_TCP, Protocol.UDP: ppb.PROTOCOL_UDP,
    Protocol.SCTP: ppb.PROTOCOL_SCTP, Protocol.ICMP: ppb.PROTOCOL_ICMP,
    Protocol.ANY: ppb.PROTOCOL_ANY}
PROTOCOL_FROM_PB: dict[int, Protocol] = {ppb.PROTOCOL_UNSPECIFIED: Protocol.TCP,
                                         **{v: k for k, v in PROTOCOL_TO_PB.items()}}
OPERATOR_TO_PB: dict[Operator, ppb.Operator] = {
    Operator.IN: ppb.OPERATOR_IN, Operator.NOT_IN: ppb.OPERATOR_NOT_IN,
    Operator.EXISTS: ppb.OPERATOR_EXISTS, Operator.DOES_NOT_EXIST: ppb.OPERATOR_DOES_NOT_EXIST}
OPERATOR_FROM_PB: dict[int, Operator] = {v: k for k, v in OPERATOR_TO_PB.items()}
ORIGIN_TO_PB: dict[Origin, ppb.Origin] = {Origin.API: ppb.ORIGIN_API,
                                   Origin.KUBERNETES: ppb.ORIGIN_KUBERNETES}
EVENT_KIND_TO_PB: dict[str, ppb.PolicyEventKind] = {"applied": ppb.POLICY_EVENT_KIND_APPLIED,
                                    "deleted": ppb.POLICY_EVENT_KIND_DELETED}
VERDICT_TO_PB: dict[str, tpb.Verdict] = {"allow": tpb.VERDICT_ALLOW, "deny": tpb.VERDICT_DENY,
                                 "reply": tpb.VERDICT_REPLY}
POINT_TO_PB: dict[str, tpb.ObservationPoint] = {"from_pod": tpb.OBSERVATION_POINT_FROM_POD,
                               "from_wire": tpb.OBSERVATION_POINT_FROM_WIRE}

_POD_PEER_FIELD = re.compile(r"(peers\[\d+\])\.(podSelector|namespaceSelector)")


def api_path(field_path: str) -> str:
    """A model field path as the protobuf request spells it (a pod peer's selectors are in
    its `pods` message)."""
    return _POD_PEER_FIELD.sub(r"\1.pods.\2", field_path)


# -- requests -> model --------------------------------------------------------------------------


def _enum(table: Mapping[int, Any], value: int, where: str, what: str) -> Any:
    try:
        return table[value]
    except KeyError:
        raise PolicyError(where, f"{value} is not a valid {what}") from None


def selector_to_model(msg: ppb.LabelSelector, where: str) -> LabelSelector:
    exprs = []
    for i, r in enumerate(msg.match_expressions):
        op: Operator = _enum(OPERATOR_FROM_PB, r.operator,
                             f"{where}.matchExpressions[{i}].operator", "operator")
        exprs.append(Requirement(r.key, op, frozenset(r.values)))
    return LabelSelector(frozenset(msg.match_labels.items()), frozenset(exprs))


def network(text: str, where: str) -> IPv4Network:
    """An IPv4 prefix written with its length and without host bits."""
    if "/" not in text:
        raise PolicyError(where, f"{text!r} needs a prefix length, e.g. {text}/32")
    try:
        return IPv4Network(text)
    except ValueError:
        pass
    try:
        loose = IPv4Network(text, strict=False)
    except ValueError:
        raise PolicyError(where, f"{text!r} is not an IPv4 CIDR (e.g. 10.0.0.0/8)") from None
    raise PolicyError(where, f"{text!r} has host bits set; did you mean {loose}?")


def peer_to_model(msg: ppb.Peer, where: str) -> Peer:
    kind = msg.WhichOneof("peer")
    if kind == "pods":
        pods = selector_to_model(msg.pods.pod_selector, f"{where}.podSelector")
        namespaces = (selector_to_model(msg.pods.namespace_selector,
                                        f"{where}.namespaceSelector")
                      if msg.pods.HasField("namespace_selector") else None)
        return PodPeer(pods, namespaces)
    if kind == "ip_block":
        cidr = network(msg.ip_block.cidr, f"{where}.ipBlock.cidr")
        excepts = frozenset(network(e, f"{where}.ipBlock.except[{i}]")
                            for i, e in enumerate(msg.ip_block.excepts))
        return CidrPeer(cidr, excepts)
    raise PolicyError(where, "empty peer: set pods (podSelector/namespaceSelector) or ipBlock")


def port_to_model(msg: ppb.PortMatch, where: str) -> PortMatch:
    protocol: Protocol = _enum(PROTOCOL_FROM_PB, msg.protocol, f"{where}.protocol",
                               "protocol")
    kind = msg.WhichOneof("port")
    port: int | str | None = (msg.number if kind == "number" else
                              msg.name if kind == "name" else None)
    end_port = msg.end_port if msg.HasField("end_port") else None
    return PortMatch(protocol, port, end_port)


def _rules(msgs: Iterable[ppb.Rule], where: str) -> tuple[Rule, ...]:
    return tuple(
        Rule(tuple(peer_to_model(p, f"{where}[{i}].peers[{j}]") for j, p in enumerate(r.peers)),
             tuple(port_to_model(p, f"{where}[{i}].ports[{j}]") for j, p in enumerate(r.ports)))
        for i, r in enumerate(msgs))


def policy_to_model(msg: ppb.Policy, where: str = "policy") -> Policy:
    """A validated API policy, or PolicyError naming the field (relative to `where`)."""
    if msg.origin not in (ppb.ORIGIN_UNSPECIFIED, ppb.ORIGIN_API):
        raise PolicyError(f"{where}.origin", "output only: leave it unset (only API policies "
                                             "can be applied)")
    directions = set()
    for i, d in enumerate(msg.policy_types):
        directions.add(_enum(DIRECTION_FROM_PB, d, f"{where}.policyTypes[{i}]",
                             "policy type (ingress or egress)"))
    if not msg.policy_types:  # NetworkPolicy's default
        directions = {Direction.INGRESS} | ({Direction.EGRESS} if msg.egress else set())
    policy = Policy(
        name=msg.name, namespace=msg.namespace, origin=Origin.API,
        subject=selector_to_model(msg.pod_selector, f"{where}.podSelector"),
        directions=frozenset(directions),
        ingress=_rules(msg.ingress, f"{where}.ingress"),
        egress=_rules(msg.egress, f"{where}.egress"),
        labels=frozenset(msg.labels.items()))
    return validate(policy, where)


def policies_to_model(msgs: Sequence[ppb.Policy], where: str = "policies") -> list[Policy]:
    """Each policy validated; a (namespace, name) twice is refused (the request would be
    ambiguous)."""
    out: list[Policy] = []
    seen: dict[tuple[str, str], int] = {}
    for i, msg in enumerate(msgs):
        p = policy_to_model(msg, f"{where}[{i}]")
        first = seen.setdefault((p.namespace, p.name), i)
        if first != i:
            raise PolicyError(f"{where}[{i}].name",
                              f"{p.namespace}/{p.name} is also {where}[{first}]")
        out.append(p)
    return out


# -- model -> responses -------------------------------------------------------------------------


def selector_to_proto(sel: LabelSelector) -> ppb.LabelSelector:
    exprs = sorted(sel.match_expressions,
                   key=lambda r: (r.key, r.operator.value, sorted(r.values)))
    return ppb.LabelSelector(
        match_labels=dict(sorted(sel.match_labels)),
        match_expressions=[ppb.Requirement(key=r.key, operator=OPERATOR_TO_PB[r.operator],
                                           values=sorted(r.values)) for r in exprs])


def peer_to_proto(peer: Peer) -> ppb.Peer:
    if isinstance(peer, CidrPeer):
        return ppb.Peer(ip_block=ppb.IPBlock(cidr=str(peer.cidr),
                                             excepts=[str(e) for e in sorted(peer.excepts)]))
    pods = ppb.PodPeer()
    if peer.pods != LabelSelector():  # unset and empty mean the same; unset is canonical
        pods.pod_selector.CopyFrom(selector_to_proto(peer.pods))
    if peer.namespaces is not None:  # here unset and empty differ
        pods.namespace_selector.CopyFrom(selector_to_proto(peer.namespaces))
    return ppb.Peer(pods=pods)


def port_to_proto(pm: PortMatch) -> ppb.PortMatch:
    msg = ppb.PortMatch(protocol=PROTOCOL_TO_PB[pm.protocol])
    if isinstance(pm.port, str):
        msg.name = pm.port
    elif pm.port is not None:
        msg.number = pm.port
    if pm.end_port is not None:
        msg.end_port = pm.end_port
    return msg


def _rules_to_proto(rules: Iterable[Rule]) -> list[ppb.Rule]:
    return [ppb.Rule(peers=[peer_to_proto(p) for p in r.peers],
                     ports=[port_to_proto(p) for p in r.ports]) for r in rules]


def policy_to_proto(p: Policy) -> ppb.Policy:
    msg = ppb.Policy(
        name=p.name, namespace=p.namespace, origin=ORIGIN_TO_PB[p.origin],
        policy_types=[DIRECTION_TO_PB[d] for d in Direction if d in p.directions],
        ingress=_rules_to_proto(p.ingress), egress=_rules_to_proto(p.egress),
        labels=dict(sorted(p.labels)))
    if p.subject != LabelSelector():
        msg.pod_selector.CopyFrom(selector_to_proto(p.subject))
    return msg


def event_to_proto(ev: PolicyEvent) -> ppb.PolicyEvent:
    return ppb.PolicyEvent(kind=EVENT_KIND_TO_PB.get(ev.kind, ppb.POLICY_EVENT_KIND_UNSPECIFIED),
                           policy=policy_to_proto(ev.policy), revision=ev.revision)


def _counters(values: Mapping[str, int]) -> dict[str, int]:
    """Counter maps as uint64: a negative value (a bug upstream) reads as 0, not as a failed
    call."""
    return {str(k): max(0, int(v)) for k, v in sorted(values.items())}


def pod_name(view: EndpointView) -> str:
    """The endpoint's pod name without its namespace (EndpointView.name is "ns/pod")."""
    prefix = view.namespace + "/"
    return view.name[len(prefix):] if view.namespace and view.name.startswith(prefix) else (
        view.name)


def endpoint_to_proto(view: EndpointView) -> epb.Endpoint:
    return epb.Endpoint(
        name=pod_name(view), namespace=view.namespace, ip=str(view.ip),
        host_ifname=view.host_ifname, slot=view.slot, labels=dict(sorted(view.labels.items())),
        ingress_policies=list(view.policies.get(Direction.INGRESS, ())),
        egress_policies=list(view.policies.get(Direction.EGRESS, ())),
        counters=_counters(view.counters))


def stats_to_proto(stats: NodeStats) -> tpb.Stats:
    return tpb.Stats(
        node=stats.node, core=_counters(stats.core), xdp=_counters(stats.xdp),
        endpoints=[tpb.EndpointCounters(ip=str(ip), counters=_counters(c))
                   for ip, c in sorted(stats.endpoints.items())])


def link_to_proto(link: LinkHealth) -> tpb.LinkHealth:
    msg = tpb.LinkHealth(
        peer_node=link.peer_node, peer_ip=str(link.peer_ip), sent=link.sent,
        received=link.received, loss_ratio=link.loss_ratio, rtt_last_us=link.rtt_last_us,
        rtt_min_us=link.rtt_min_us, rtt_avg_us=link.rtt_avg_us, rtt_max_us=link.rtt_max_us,
        jitter_us=link.jitter_us)
    if link.last_reply_age_s is not None:
        msg.last_reply_age_s = link.last_reply_age_s
    return msg


def flow_to_proto(rec: FlowRecord) -> tpb.FlowRecord:
    return tpb.FlowRecord(
        node=rec.node, ts_ns=rec.ts_ns, src=str(rec.src), dst=str(rec.dst), sport=rec.sport,
        dport=rec.dport, protocol=rec.protocol,
        verdict=VERDICT_TO_PB.get(rec.verdict, tpb.VERDICT_UNSPECIFIED),
        direction=DIRECTION_TO_PB[rec.direction],
        point=POINT_TO_PB.get(rec.point, tpb.OBSERVATION_POINT_UNSPECIFIED), length=rec.length)


def jsonable(value: Any) -> Any:
    """`value` as JSON values (for google.protobuf.Struct): mappings with string keys, lists,
    numbers, strings, booleans, None; anything else as its str()."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


# -- unknown fields -----------------------------------------------------------------------------


def _walk(msg: Message, where: str) -> Iterator[str]:
    unknown = UnknownFieldSet(msg)
    for i in range(len(unknown)):
        yield f"{where or '(request)'}: unknown field number {unknown[i].field_number}"
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        path = f"{where}.{fd.json_name}" if where else fd.json_name
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].message_type is not None:
                for k, v in value.items():
                    yield from _walk(v, f"{path}[{k}]")
        elif fd.is_repeated:
            for i, v in enumerate(value):
                yield from _walk(v, f"{path}[{i}]")
        else:
            yield from _walk(value, path)


def unknown_fields(msg: Message) -> list[str]:
    """Where `msg` carries fields its schema does not define (sent by a newer client): one
    "path: unknown field number N" per field."""
    return list(_walk(msg, ""))


# -- the engine's state file ------------------------------------------------------------------


def dump_policies(policies: Sequence[Policy]) -> bytes:
    """API policies in their wire format: an ApplyPoliciesRequest that would recreate them."""
    msg = ppb.ApplyPoliciesRequest(policies=[policy_to_proto(p) for p in policies])
    return bytes(msg.SerializeToString(deterministic=True))


def load_policies(data: bytes) -> list[Policy]:
    """Inverse of dump_policies; ValueError for bytes that are not such a message (or carry
    fields this version does not know: a newer agent wrote them), PolicyError for a policy
    this version refuses."""
    msg = ppb.ApplyPoliciesRequest()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"not an ApplyPoliciesRequest: {exc}") from exc
    unknown = unknown_fields(msg)
    if unknown:
        raise ValueError(f"written by a newer agent: {'; '.join(unknown)}")
    return policies_to_model(msg.policies)


# agent.policy.engine.Codec
CODEC = (dump_policies, load_policies)

