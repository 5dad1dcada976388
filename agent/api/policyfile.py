"""Policies as YAML documents for people (ringlanectl), in a shape close to a NetworkPolicy's
spec, and back:

    name: web                  # required
    namespace: shop            # required
    labels: {team: payments}   # optional, bookkeeping only
    podSelector:               # the pods it applies to; {} or absent: every pod of namespace
      matchLabels: {app: web}
      matchExpressions: [{key: tier, operator: In, values: [front]}]
    policyTypes: [Ingress, Egress]   # absent: Ingress, plus Egress when egress rules exist
    ingress:
      - from:                  # absent or []: every peer
          - podSelector: {matchLabels: {app: shop}}
            namespaceSelector: {}          # with it: pods of every namespace
          - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}
        ports:                 # absent or []: every protocol and port
          - {protocol: TCP, port: 80, endPort: 90}
          - {protocol: TCP, port: http}    # a named container port
          - {protocol: ICMP}               # ICMP and ANY take no port
    egress:
      - to: [...]              # as `from`
        ports: [...]

A document becomes a ringlane.v1.Policy message, and that message passes through the same
conversion and validation as the server's (agent/api/convert.py), so the file is refused
exactly where the agent would refuse it; errors name the document and the path in it. Unknown
keys are errors (a typo must not silently widen a policy).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from agent.api import convert
from agent.api.v1 import policy_pb2 as ppb
from agent.errors import RinglaneError
from agent.policy.model import Policy, PolicyError

_PROTOCOL_NAMES = {"TCP": ppb.PROTOCOL_TCP, "UDP": ppb.PROTOCOL_UDP,
                   "SCTP": ppb.PROTOCOL_SCTP, "ICMP": ppb.PROTOCOL_ICMP,
                   "ANY": ppb.PROTOCOL_ANY}
_DIRECTION_NAMES = {"Ingress": ppb.DIRECTION_INGRESS, "Egress": ppb.DIRECTION_EGRESS}
_OPERATOR_NAMES = {"In": ppb.OPERATOR_IN, "NotIn": ppb.OPERATOR_NOT_IN,
                   "Exists": ppb.OPERATOR_EXISTS, "DoesNotExist": ppb.OPERATOR_DOES_NOT_EXIST}


class PolicyFileError(RinglaneError):
    """A policy document is malformed or invalid; the message names the file, the document
    (1-based) and the path in it."""


class _Bad(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str, keys: Sequence[str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(path, f"expected a mapping, got {_kind(value)}")
    for key in value:
        if key not in keys:
            hint = difflib.get_close_matches(str(key), keys, n=1)
            raise _Bad(path, f"unknown key {key!r}"
                             + (f" (did you mean {hint[0]!r}?)" if hint else
                                f" (known: {', '.join(keys)})"))
    return value


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(path, f"expected a list, got {_kind(value)}")
    return value


def _str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _Bad(path, f"expected a string, got {_kind(value)}"
                         + (" (quote it)" if isinstance(value, int | float | bool) else ""))
    return value


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(path, f"expected an integer, got {_kind(value)}")
    if not 0 <= value < 2**32:
        raise _Bad(path, f"{value} is out of range")
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


_E = TypeVar("_E", bound=int)


def _name(table: Mapping[str, _E], value: Any, path: str) -> _E:
    text = _str(value, path)
    for name, number in table.items():
        if text.lower() == name.lower():
            return number
    raise _Bad(path, f"{text!r} is not one of {', '.join(table)}")


def _str_map(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(path, f"expected a mapping, got {_kind(value)}")
    return {_str(k, path): _str(v, _join(path, str(k))) for k, v in value.items()}


def _selector(value: Any, path: str) -> ppb.LabelSelector:
    doc = _mapping(value, path, ("matchLabels", "matchExpressions"))
    msg = ppb.LabelSelector(match_labels=_str_map(doc.get("matchLabels"),
                                                  _join(path, "matchLabels")))
    for i, item in enumerate(_list(doc.get("matchExpressions"), _join(path, "matchExpressions"))):
        where = f"{_join(path, 'matchExpressions')}[{i}]"
        expr = _mapping(item, where, ("key", "operator", "values"))
        msg.match_expressions.append(ppb.Requirement(
            key=_str(expr.get("key"), _join(where, "key")),
            operator=_name(_OPERATOR_NAMES, expr.get("operator"), _join(where, "operator")),
            values=[_str(v, f"{_join(where, 'values')}[{j}]")
                    for j, v in enumerate(_list(expr.get("values"), _join(where, "values")))]))
    return msg


def _peer(value: Any, path: str) -> ppb.Peer:
    doc = _mapping(value, path, ("podSelector", "namespaceSelector", "ipBlock"))
    # a key with no value is absent, as in Kubernetes (a null namespaceSelector is not {})
    doc = {k: v for k, v in doc.items() if v is not None}
    if "ipBlock" in doc:
        if "podSelector" in doc or "namespaceSelector" in doc:
            raise _Bad(path, "ipBlock cannot be combined with podSelector or "
                             "namespaceSelector (make them two peers)")
        where = _join(path, "ipBlock")
        block = _mapping(doc["ipBlock"], where, ("cidr", "except"))
        return ppb.Peer(ip_block=ppb.IPBlock(
            cidr=_str(block.get("cidr"), _join(where, "cidr")),
            excepts=[_str(e, f"{_join(where, 'except')}[{i}]")
                     for i, e in enumerate(_list(block.get("except"), _join(where, "except")))]))
    if not doc:
        raise _Bad(path, "empty peer: give podSelector, namespaceSelector or ipBlock")
    pods = ppb.PodPeer(pod_selector=_selector(doc.get("podSelector"),
                                              _join(path, "podSelector")))
    if doc.get("namespaceSelector") is not None:
        pods.namespace_selector.CopyFrom(_selector(doc["namespaceSelector"],
                                                   _join(path, "namespaceSelector")))
    return ppb.Peer(pods=pods)


def _port(value: Any, path: str) -> ppb.PortMatch:
    doc = _mapping(value, path, ("protocol", "port", "endPort"))
    msg = ppb.PortMatch(protocol=_name(_PROTOCOL_NAMES, doc.get("protocol", "TCP"),
                                       _join(path, "protocol")))
    port = doc.get("port")
    if isinstance(port, str):
        msg.name = port
    elif port is not None:
        msg.number = _int(port, _join(path, "port"))
    if doc.get("endPort") is not None:
        msg.end_port = _int(doc["endPort"], _join(path, "endPort"))
    return msg


def _rules(value: Any, path: str, peers_key: str) -> list[ppb.Rule]:
    rules = []
    for i, item in enumerate(_list(value, path)):
        where = f"{path}[{i}]"
        doc = _mapping(item, where, (peers_key, "ports"))
        peers_at = _join(where, peers_key)
        ports_at = _join(where, "ports")
        rules.append(ppb.Rule(
            peers=[_peer(p, f"{peers_at}[{j}]") for j, p in enumerate(_list(doc.get(peers_key),
                                                                             peers_at))],
            ports=[_port(p, f"{ports_at}[{j}]") for j, p in enumerate(_list(doc.get("ports"),
                                                                             ports_at))]))
    return rules


_TOP_KEYS = ("name", "namespace", "origin", "labels", "podSelector", "policyTypes", "ingress",
             "egress")


def doc_to_proto(doc: Any) -> ppb.Policy:
    """One YAML document as a Policy message (structure checked, values not yet validated);
    _Bad with the path on a structural error."""
    top = _mapping(doc, "", _TOP_KEYS)
    if not top:
        raise _Bad("", "empty policy document")
    for key in ("name", "namespace"):
        if key not in top:
            raise _Bad("", f"missing {key!r}")
    origin = top.get("origin", "api")
    if origin != "api":
        raise _Bad("origin", f"{origin!r}: only API policies can be applied (a Kubernetes "
                             "policy is changed with kubectl)")
    return ppb.Policy(
        name=_str(top["name"], "name"), namespace=_str(top["namespace"], "namespace"),
        labels=_str_map(top.get("labels"), "labels"),
        pod_selector=_selector(top.get("podSelector"), "podSelector"),
        policy_types=[_name(_DIRECTION_NAMES, t, f"policyTypes[{i}]")
                      for i, t in enumerate(_list(top.get("policyTypes"), "policyTypes"))],
        ingress=_rules(top.get("ingress"), "ingress", "from"),
        egress=_rules(top.get("egress"), "egress", "to"))


_PEERS = re.compile(r"\b(ingress|egress)(\[\d+\])\.peers\b")


def doc_path(field_path: str) -> str:
    """A model field path (``policy.ingress[0].peers[1].podSelector``) in this file's words
    (``ingress[0].from[1].podSelector``)."""
    path = field_path.removeprefix("policy").removeprefix(".")
    return _PEERS.sub(lambda m: f"{m[1]}{m[2]}.{'from' if m[1] == 'ingress' else 'to'}", path)


def load(text: str, source: str) -> list[tuple[str, ppb.Policy, Policy]]:
    """Every policy of a YAML stream: (where, message, validated model); PolicyFileError
    naming `source`, the document and the path of the first problem."""
    out: list[tuple[str, ppb.Policy, Policy]] = []
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        raise PolicyFileError(f"{source}: not valid YAML: {exc}") from None
    for n, doc in enumerate(docs, 1):
        if doc is None:
            continue  # an empty document, e.g. after a trailing ---
        where = f"{source}: document {n}"
        try:
            msg = doc_to_proto(doc)
            model = convert.policy_to_model(msg, "policy")
        except _Bad as exc:
            raise PolicyFileError(f"{where}: {exc}") from None
        except PolicyError as exc:
            raise PolicyFileError(f"{where}: {doc_path(exc.field)}: {exc.message}") from None
        out.append((where, msg, model))
    return out


# -- messages -> documents (policy list) ----------------------------------------------------


def _selector_doc(msg: ppb.LabelSelector) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if msg.match_labels:
        doc["matchLabels"] = dict(sorted(msg.match_labels.items()))
    if msg.match_expressions:
        names = {v: k for k, v in _OPERATOR_NAMES.items()}
        doc["matchExpressions"] = [
            {"key": r.key, "operator": names.get(r.operator, str(r.operator)),
             **({"values": list(r.values)} if r.values else {})}
            for r in msg.match_expressions]
    return doc


def _peer_doc(msg: ppb.Peer) -> dict[str, Any]:
    if msg.WhichOneof("peer") == "ip_block":
        block: dict[str, Any] = {"cidr": msg.ip_block.cidr}
        if msg.ip_block.excepts:
            block["except"] = list(msg.ip_block.excepts)
        return {"ipBlock": block}
    doc = {"podSelector": _selector_doc(msg.pods.pod_selector)}
    if msg.pods.HasField("namespace_selector"):
        doc["namespaceSelector"] = _selector_doc(msg.pods.namespace_selector)
    return doc


def _port_doc(msg: ppb.PortMatch) -> dict[str, Any]:
    names = {v: k for k, v in _PROTOCOL_NAMES.items()}
    doc: dict[str, Any] = {"protocol": names.get(msg.protocol, "TCP")}
    kind = msg.WhichOneof("port")
    if kind == "number":
        doc["port"] = msg.number
    elif kind == "name":
        doc["port"] = msg.name
    if msg.HasField("end_port"):
        doc["endPort"] = msg.end_port
    return doc


def _rules_doc(rules: Sequence[ppb.Rule], peers_key: str) -> list[dict[str, Any]]:
    return [{peers_key: [_peer_doc(p) for p in r.peers], "ports": [_port_doc(p) for p in r.ports]}
            for r in rules]


ORIGIN_NAMES = {ppb.ORIGIN_API: "api", ppb.ORIGIN_KUBERNETES: "kubernetes"}


def proto_to_doc(msg: ppb.Policy) -> dict[str, Any]:
    """A Policy message as a document of this format (with `origin`, which `load` accepts
    when it is "api"), so `policy list -o yaml` output can be edited and applied again."""
    names = {v: k for k, v in _DIRECTION_NAMES.items()}
    return {
        "name": msg.name,
        "namespace": msg.namespace,
        "origin": ORIGIN_NAMES.get(msg.origin, "unknown"),
        "labels": dict(sorted(msg.labels.items())),
        "podSelector": _selector_doc(msg.pod_selector),
        "policyTypes": [names[t] for t in msg.policy_types if t in names],
        "ingress": _rules_doc(msg.ingress, "from"),
        "egress": _rules_doc(msg.egress, "to"),
    }

