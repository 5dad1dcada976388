"""NetworkPolicy (networking.k8s.io/v1) objects, as the API serves them in JSON, into the one
policy model, with the meaning Kubernetes gives them.

The API server validates NetworkPolicies, so a malformed object should never arrive; but the
agent must not crash on one, and above all must not let it open the data path wider than its
author asked. Every choice below therefore fails closed: what Ringlane cannot read or cannot
hold becomes less allowed, never more.

- A rule with anything wrong in it (a bad CIDR, an unknown protocol, endPort below port, a
  field Ringlane does not know, a value of the wrong JSON type) is dropped whole and reported:
  the policy keeps isolating its pods with its remaining rules. Dropping only the broken peer
  or port could widen the rule (a rule whose last peer is gone allows every peer), and an
  unknown field may be one that narrows the rule, as endPort once was.
- policyTypes that cannot be read isolate both directions; only the rules of the directions
  it names correctly are kept.
- A podSelector that cannot be read isolates every pod of the namespace, with no rules: a
  guess at the selected pods could hand this policy's allows to pods it never selected.
- Whatever `validate()` refuses is treated the same way (it also enforces Ringlane's limits,
  such as peers per rule); if the policy still fails with its rules dropped, it is dropped.
- A spec that cannot be read (including one with a field NetworkPolicy v1 does not have)
  isolates both directions of every pod of the namespace, with no rules.
- Without a usable metadata.name and metadata.namespace there is no policy to key or scope,
  so none is returned (the API server never serves such an object).

The data path is IPv4-only: an IPv6 ipBlock can never match its traffic, so it is skipped with
a warning, and a rule left without peers that way is dropped (never read as "every peer").

Field paths in messages are the object's own (``spec.ingress[1].from[0].ipBlock.except[2]``),
so an operator can find the spot with kubectl.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from agent.policy.model import (
    MAX_RULES_PER_DIRECTION,
    CidrPeer,
    Direction,
    LabelSelector,
    Operator,
    Origin,
    PodPeer,
    Policy,
    PolicyError,
    PortMatch,
    Protocol,
    Requirement,
    Rule,
    validate,
)

_PROTOCOLS = {"TCP": Protocol.TCP, "UDP": Protocol.UDP, "SCTP": Protocol.SCTP}
_OPERATORS = {op.value: op for op in Operator}
_POLICY_TYPES = {"Ingress": Direction.INGRESS, "Egress": Direction.EGRESS}
_PEERS_KEY = {Direction.INGRESS: "from", Direction.EGRESS: "to"}
# IANA_SVC_NAME, as Kubernetes checks container port names: at least one letter, no "--".
_PORT_NAME = re.compile(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_RULE_PATH = re.compile(r"^policy\.(ingress|egress)\[(\d+)\](?:\.peers(?:\[(\d+)\])?)?")

_RULE_DROPPED = "rule dropped: the policy allows less than written"
_SUBJECT_CLOSED = "every pod of the namespace isolated, no rules kept"


@dataclass(frozen=True)
class Translation:
    """The policy an object means (None only when it has no usable name or namespace), what
    was noticed on the way (`warnings`: faithful but worth logging, such as a skipped IPv6
    block), and `error` when the object was malformed and the policy allows less than
    written (every problem, separated by "; ")."""

    policy: Policy | None
    warnings: tuple[str, ...] = ()
    error: str | None = None


# Where each translated rule came from: its index in the object's rule list, and the object's
# index of each of its peers (IPv6 blocks are skipped, so the model's indices may differ).
_Origin = tuple[int, tuple[int, ...]]


def _kind(value: Any) -> str:
    """`value`'s JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _object(value: Any, path: str, fields: Iterable[str] | None = None, *,
            null: bool = True) -> Mapping[Any, Any]:
    """`value` as a JSON object (null: the empty one, if `null`) holding only `fields`."""
    if value is None and null:
        return {}
    if not isinstance(value, Mapping):
        raise PolicyError(path, f"expected an object, got {_kind(value)}")
    if fields is not None:
        known = set(fields)
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise PolicyError(f"{path}.{unknown[0]}",
                              "unknown field, which Ringlane cannot enforce")
    return value


def _array(value: Any, path: str) -> Sequence[Any]:
    """`value` as a JSON array; null is the empty one (Go reads both as an empty slice)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise PolicyError(path, f"expected an array, got {_kind(value)}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(path, f"expected a string, got {_kind(value)}")
    return value


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(path, f"expected an integer, got {_kind(value)}")
    return value


def _selector(value: Any, path: str) -> LabelSelector:
    """A metav1.LabelSelector; null or {} selects everything."""
    sel = _object(value, path, ("matchLabels", "matchExpressions"))
    labels = _object(sel.get("matchLabels"), f"{path}.matchLabels")
    match_labels = frozenset(
        (_string(k, f"{path}.matchLabels"), _string(v, f"{path}.matchLabels[{k}]"))
        for k, v in labels.items())
    exprs: list[Requirement] = []
    for i, item in enumerate(_array(sel.get("matchExpressions"), f"{path}.matchExpressions")):
        w = f"{path}.matchExpressions[{i}]"
        expr = _object(item, w, ("key", "operator", "values"), null=False)
        key = _string(expr.get("key"), f"{w}.key")
        op = _string(expr.get("operator"), f"{w}.operator")
        if op not in _OPERATORS:
            raise PolicyError(f"{w}.operator",
                              f"{op!r} is not one of {', '.join(_OPERATORS)}")
        values = frozenset(_string(v, f"{w}.values[{j}]")
                           for j, v in enumerate(_array(expr.get("values"), f"{w}.values")))
        exprs.append(Requirement(key, _OPERATORS[op], values))
    return LabelSelector(match_labels, frozenset(exprs))


@dataclass
class _Translator:
    """One object's translation; collects warnings and errors as it goes."""

    warnings: list[str]
    errors: list[str]

    def error(self, exc: PolicyError, consequence: str) -> None:
        self.errors.append(f"{exc.field}: {exc.message} ({consequence})")

    # -- peers and ports ---------------------------------------------------------------------

    def network(self, value: Any, path: str) -> IPv4Network | IPv6Network:
        if not isinstance(value, str) or "/" not in value:
            raise PolicyError(path, f"{value!r} is not a CIDR")
        try:
            return ip_network(value)
        except ValueError:
            pass
        try:  # Kubernetes accepts host bits and ignores them
            net = ip_network(value, strict=False)
        except ValueError as exc:
            raise PolicyError(path, f"{value!r} is not a CIDR: {exc}") from exc
        self.warnings.append(f"{path}: {value} read as {net} (host bits set)")
        return net

    def ip_block(self, value: Any, path: str) -> CidrPeer | None:
        """The block, or None for an IPv6 block (it can never match IPv4 traffic)."""
        block = _object(value, path, ("cidr", "except"), null=False)
        cidr = self.network(block.get("cidr"), f"{path}.cidr")
        excepts = [self.network(e, f"{path}.except[{i}]")
                   for i, e in enumerate(_array(block.get("except"), f"{path}.except"))]
        for i, ex in enumerate(excepts):
            if not (ex.version == cidr.version and ex.prefixlen > cidr.prefixlen
                    and ex.network_address in cidr):
                raise PolicyError(f"{path}.except[{i}]", f"{ex} is not strictly inside {cidr}")
        if not isinstance(cidr, IPv4Network):
            self.warnings.append(f"{path}.cidr: {cidr} skipped: the data path is IPv4-only")
            return None
        return CidrPeer(cidr, frozenset(ex for ex in excepts if isinstance(ex, IPv4Network)))

    def peer(self, value: Any, path: str) -> PodPeer | CidrPeer | None:
        peer = _object(value, path, ("podSelector", "namespaceSelector", "ipBlock"), null=False)
        pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")
        if peer.get("ipBlock") is not None:
            if pods is not None or namespaces is not None:
                raise PolicyError(path, "ipBlock cannot be combined with a selector")
            return self.ip_block(peer["ipBlock"], f"{path}.ipBlock")
        if pods is None and namespaces is None:
            raise PolicyError(path, "a peer needs podSelector, namespaceSelector or ipBlock")
        # namespaceSelector alone: every pod of the selected namespaces; podSelector alone:
        # pods of the policy's own namespace (namespaces None); both: the intersection.
        return PodPeer(
            pods=LabelSelector() if pods is None else _selector(pods, f"{path}.podSelector"),
            namespaces=None if namespaces is None
            else _selector(namespaces, f"{path}.namespaceSelector"))

    @staticmethod
    def port(value: Any, path: str) -> PortMatch:
        """A NetworkPolicyPort; protocol defaults to TCP, no port means all of its ports.
        The port is an IntOrString: a JSON string is always a name, even "80"."""
        spec = _object(value, path, ("protocol", "port", "endPort"), null=False)
        protocol = spec.get("protocol")
        if protocol is not None and (not isinstance(protocol, str)
                                     or protocol not in _PROTOCOLS):
            raise PolicyError(f"{path}.protocol", f"{protocol!r} is not TCP, UDP or SCTP")
        port: int | str | None = spec.get("port")
        if isinstance(port, str):
            if len(port) > 15 or not _PORT_NAME.match(port):
                raise PolicyError(f"{path}.port", f"{port!r} is not a port name (a quoted "
                                                  "number is a name; write ports unquoted)")
        elif port is not None:
            port = _integer(port, f"{path}.port")
        end = spec.get("endPort")
        return PortMatch(protocol=_PROTOCOLS[protocol] if protocol else Protocol.TCP,
                         port=port,
                         end_port=None if end is None else _integer(end, f"{path}.endPort"))

    # -- rules -------------------------------------------------------------------------------

    def rule(self, value: Any, path: str, peers_key: str) -> tuple[Rule, tuple[int, ...]] | None:
        """The rule and its peers' indices, or None when every peer it lists is an IPv6 block
        (such a rule allows nothing here; reading it as "no peers" would allow everyone)."""
        spec = _object(value, path, (peers_key, "ports"), null=False)
        listed = _array(spec.get(peers_key), f"{path}.{peers_key}")
        ports = tuple(self.port(p, f"{path}.ports[{j}]")
                      for j, p in enumerate(_array(spec.get("ports"), f"{path}.ports")))
        peers: list[PodPeer | CidrPeer] = []
        origins: list[int] = []
        for j, item in enumerate(listed):
            peer = self.peer(item, f"{path}.{peers_key}[{j}]")
            if peer is not None:
                peers.append(peer)
                origins.append(j)
        if listed and not peers:
            self.warnings.append(f"{path}: dropped: its only peers are IPv6 blocks")
            return None
        return Rule(tuple(peers), ports), tuple(origins)

    def rules(self, spec: Mapping[Any, Any], d: Direction) -> tuple[list[Rule], list[_Origin]]:
        path = f"spec.{d.value}"
        try:
            items = _array(spec.get(d.value), path)
        except PolicyError as exc:
            self.error(exc, f"no {d.value} rules kept")
            return [], []
        rules: list[Rule] = []
        origins: list[_Origin] = []
        for i, item in enumerate(items):
            try:
                built = self.rule(item, f"{path}[{i}]", _PEERS_KEY[d])
            except PolicyError as exc:
                self.error(exc, _RULE_DROPPED)
                continue
            if built is not None:
                rules.append(built[0])
                origins.append((i, built[1]))
        return rules, origins

    def directions(self, spec: Mapping[Any, Any]) -> tuple[frozenset[Direction],
                                                           frozenset[Direction]]:
        """(the directions isolated, the directions whose rules are read)."""
        types = spec.get("policyTypes")
        if types is None or types == []:
            # The API server's defaulting: Ingress always, Egress if there are egress rules
            # (a malformed spec.egress counts as present: isolating more is the safe side).
            egress = spec.get("egress")
            has_egress = egress is not None and egress != []
            found = frozenset({Direction.INGRESS, *([Direction.EGRESS] if has_egress else [])})
            return found, found
        try:
            listed = _array(types, "spec.policyTypes")
        except PolicyError as exc:
            self.error(exc, "both directions isolated, no rules kept")
            return frozenset(Direction), frozenset()
        named: set[Direction] = set()
        bad = False
        for i, t in enumerate(listed):
            if isinstance(t, str) and t in _POLICY_TYPES:
                named.add(_POLICY_TYPES[t])
            else:
                bad = True
                self.error(PolicyError(f"spec.policyTypes[{i}]",
                                       f"{t!r} is not Ingress or Egress"),
                           "both directions isolated")
        return (frozenset(Direction) if bad else frozenset(named)), frozenset(named)

    # -- the policy --------------------------------------------------------------------------

    def policy(self, obj: Any) -> Policy | None:
        try:
            root = _object(obj, "object", null=False)
            meta = _object(root.get("metadata"), "metadata", null=False)
            name = _string(meta.get("name"), "metadata.name")
            namespace = _string(meta.get("namespace"), "metadata.namespace")
        except PolicyError as exc:
            self.error(exc, "no policy")
            return None
        labels = meta.get("labels")
        policy = Policy(name=name, namespace=namespace, origin=Origin.KUBERNETES,
                        directions=frozenset(Direction))
        if isinstance(labels, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            policy = replace(policy, labels=frozenset(labels.items()))
        try:
            spec = _object(root.get("spec"), "spec",
                           ("podSelector", "policyTypes", "ingress", "egress"))
        except PolicyError as exc:
            self.error(exc, "both directions of every pod of the namespace isolated")
            return self.gate(policy, {})
        try:
            subject: LabelSelector | None = _selector(spec.get("podSelector"), "spec.podSelector")
        except PolicyError as exc:
            self.error(exc, _SUBJECT_CLOSED)
            subject = None
        isolated, read = self.directions(spec)
        policy = replace(policy, directions=isolated)
        for d in Direction:
            if d not in isolated and spec.get(d.value) not in (None, []):
                self.warnings.append(f"spec.{d.value}: ignored: {d.value.capitalize()} is not in "
                                     "policyTypes")
        if subject is None:
            return self.gate(policy, {})
        origins: dict[Direction, list[_Origin]] = {}
        found: dict[Direction, list[Rule]] = {}
        for d in read:
            found[d], origins[d] = self.rules(spec, d)
        return self.gate(replace(policy, subject=subject,
                                 ingress=tuple(found.get(Direction.INGRESS, ())),
                                 egress=tuple(found.get(Direction.EGRESS, ()))), origins)

    def gate(self, policy: Policy, origins: Mapping[Direction, list[_Origin]]) -> Policy | None:
        """`policy` through validate(), dropping what it refuses (see the module docstring).
        The policy without rules goes first, then each rule on its own, so that an object
        with thousands of broken rules costs one pass, not one per rule."""
        base = replace(policy, ingress=(), egress=())
        try:
            validate(base)
        except PolicyError as exc:
            if not exc.field.startswith("policy.podSelector"):
                field = {"policy.name": "metadata.name", "policy.namespace": "metadata.namespace"
                         }.get(exc.field, "spec" + exc.field.removeprefix("policy"))
                self.error(PolicyError(field, exc.message), "no policy")
                return None
            # validate() checks name, namespace and policyTypes before the selector: those
            # passed, and the empty selector is valid, so the closed policy is too.
            self.error(PolicyError("spec" + exc.field.removeprefix("policy"), exc.message),
                       _SUBJECT_CLOSED)
            return validate(replace(base, subject=LabelSelector()))
        kept: dict[Direction, tuple[Rule, ...]] = {}
        for d in Direction:
            good: list[Rule] = []
            for rule, origin in zip(policy.rules(d), origins.get(d, ()), strict=True):
                try:
                    validate(replace(base, ingress=(rule,)) if d is Direction.INGRESS
                             else replace(base, egress=(rule,)))
                except PolicyError as exc:
                    self.error(PolicyError(_object_path(exc.field, d, origin), exc.message),
                               _RULE_DROPPED)
                else:
                    good.append(rule)
            if len(good) > MAX_RULES_PER_DIRECTION:
                self.error(PolicyError(f"spec.{d.value}",
                                       f"more than {MAX_RULES_PER_DIRECTION} rules"),
                           f"rules after the first {MAX_RULES_PER_DIRECTION} dropped")
            kept[d] = tuple(good[:MAX_RULES_PER_DIRECTION])
        return validate(replace(policy, ingress=kept[Direction.INGRESS],
                                egress=kept[Direction.EGRESS]))


def _object_path(field: str, d: Direction, origin: _Origin) -> str:
    """validate()'s path in a one-rule policy (``policy.ingress[0].peers[1].podSelector``) as
    the object's (``spec.ingress[4].from[2].podSelector``): its rule and peer indices."""
    m = _RULE_PATH.match(field)
    if m is None:
        return field
    rule_i, peer_is = origin
    head = f"spec.{d.value}[{rule_i}]"
    if m[3] is not None:
        head += f".{_PEERS_KEY[d]}[{peer_is[int(m[3])]}]"
    elif ".peers" in m[0]:
        head += f".{_PEERS_KEY[d]}"
    return head + field[m.end():]


def translate(obj: Mapping[str, Any]) -> Translation:
    """The NetworkPolicy `obj` (a JSON object as the API serves it) as a Policy with origin
    KUBERNETES. Never raises on malformed input: see the module docstring for what a
    malformed object becomes."""
    t = _Translator([], [])
    policy = t.policy(obj)
    return Translation(policy, tuple(t.warnings), "; ".join(t.errors) or None)


def translate_all(objs: Mapping[str, Mapping[str, Any]]) -> tuple[list[Policy], list[str]]:
    """Every object of `objs` (ClusterState.policies(): by "namespace/name") translated:
    the policies ordered by key, and one message per warning or error, each prefixed with
    the object's key, for the caller to log."""
    policies: list[Policy] = []
    messages: list[str] = []
    seen: dict[tuple[str, str, str], str] = {}
    for key in sorted(objs):
        result = translate(objs[key])
        messages.extend(f"{key}: warning: {w}" for w in result.warnings)
        if result.error:
            messages.append(f"{key}: error: {result.error}")
        if result.policy is not None:
            if result.policy.key in seen:
                messages.append(f"{key}: warning: same namespace/name as {seen[result.policy.key]}")
            seen.setdefault(result.policy.key, key)
            policies.append(result.policy)
    policies.sort(key=lambda p: p.key)
    return policies, messages
