from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    DIRECTION_INGRESS: _ClassVar[Direction]
    DIRECTION_EGRESS: _ClassVar[Direction]

class Protocol(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_UNSPECIFIED: _ClassVar[Protocol]
    PROTOCOL_TCP: _ClassVar[Protocol]
    PROTOCOL_UDP: _ClassVar[Protocol]
    PROTOCOL_SCTP: _ClassVar[Protocol]
    PROTOCOL_ICMP: _ClassVar[Protocol]
    PROTOCOL_ANY: _ClassVar[Protocol]

class Origin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORIGIN_UNSPECIFIED: _ClassVar[Origin]
    ORIGIN_API: _ClassVar[Origin]
    ORIGIN_KUBERNETES: _ClassVar[Origin]

class Operator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPERATOR_UNSPECIFIED: _ClassVar[Operator]
    OPERATOR_IN: _ClassVar[Operator]
    OPERATOR_NOT_IN: _ClassVar[Operator]
    OPERATOR_EXISTS: _ClassVar[Operator]
    OPERATOR_DOES_NOT_EXIST: _ClassVar[Operator]

class PolicyEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POLICY_EVENT_KIND_UNSPECIFIED: _ClassVar[PolicyEventKind]
    POLICY_EVENT_KIND_APPLIED: _ClassVar[PolicyEventKind]
    POLICY_EVENT_KIND_DELETED: _ClassVar[PolicyEventKind]
DIRECTION_UNSPECIFIED: Direction
DIRECTION_INGRESS: Direction
DIRECTION_EGRESS: Direction
PROTOCOL_UNSPECIFIED: Protocol
PROTOCOL_TCP: Protocol
PROTOCOL_UDP: Protocol
PROTOCOL_SCTP: Protocol
PROTOCOL_ICMP: Protocol
PROTOCOL_ANY: Protocol
ORIGIN_UNSPECIFIED: Origin
ORIGIN_API: Origin
ORIGIN_KUBERNETES: Origin
OPERATOR_UNSPECIFIED: Operator
OPERATOR_IN: Operator
OPERATOR_NOT_IN: Operator
OPERATOR_EXISTS: Operator
OPERATOR_DOES_NOT_EXIST: Operator
POLICY_EVENT_KIND_UNSPECIFIED: PolicyEventKind
POLICY_EVENT_KIND_APPLIED: PolicyEventKind
POLICY_EVENT_KIND_DELETED: PolicyEventKind

class Requirement(_message.Message):
    __slots__ = ("key", "operator", "values")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    key: str
    operator: Operator
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., operator: _Optional[_Union[Operator, str]] = ..., values: _Optional[_Iterable[str]] = ...) -> None: ...

class LabelSelector(_message.Message):
    __slots__ = ("match_labels", "match_expressions")
    class MatchLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MATCH_LABELS_FIELD_NUMBER: _ClassVar[int]
    MATCH_EXPRESSIONS_FIELD_NUMBER: _ClassVar[int]
    match_labels: _containers.ScalarMap[str, str]
    match_expressions: _containers.RepeatedCompositeFieldContainer[Requirement]
    def __init__(self, match_labels: _Optional[_Mapping[str, str]] = ..., match_expressions: _Optional[_Iterable[_Union[Requirement, _Mapping]]] = ...) -> None: ...

class PodPeer(_message.Message):
    __slots__ = ("pod_selector", "namespace_selector")
    POD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    pod_selector: LabelSelector
    namespace_selector: LabelSelector
    def __init__(self, pod_selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., namespace_selector: _Optional[_Union[LabelSelector, _Mapping]] = ...) -> None: ...

class IPBlock(_message.Message):
    __slots__ = ("cidr", "excepts")
    CIDR_FIELD_NUMBER: _ClassVar[int]
    EXCEPTS_FIELD_NUMBER: _ClassVar[int]
    cidr: str
    excepts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cidr: _Optional[str] = ..., excepts: _Optional[_Iterable[str]] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("pods", "ip_block")
    PODS_FIELD_NUMBER: _ClassVar[int]
    IP_BLOCK_FIELD_NUMBER: _ClassVar[int]
    pods: PodPeer
    ip_block: IPBlock
    def __init__(self, pods: _Optional[_Union[PodPeer, _Mapping]] = ..., ip_block: _Optional[_Union[IPBlock, _Mapping]] = ...) -> None: ...

class PortMatch(_message.Message):
    __slots__ = ("protocol", "number", "name", "end_port")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    END_PORT_FIELD_NUMBER: _ClassVar[int]
    protocol: Protocol
    number: int
    name: str
    end_port: int
    def __init__(self, protocol: _Optional[_Union[Protocol, str]] = ..., number: _Optional[int] = ..., name: _Optional[str] = ..., end_port: _Optional[int] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("peers", "ports")
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    ports: _containers.RepeatedCompositeFieldContainer[PortMatch]
    def __init__(self, peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[PortMatch, _Mapping]]] = ...) -> None: ...

class Policy(_message.Message):
    __slots__ = ("name", "namespace", "origin", "pod_selector", "policy_types", "ingress", "egress", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    POD_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    POLICY_TYPES_FIELD_NUMBER: _ClassVar[int]
    INGRESS_FIELD_NUMBER: _ClassVar[int]
    EGRESS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    name: str
    namespace: str
    origin: Origin
    pod_selector: LabelSelector
    policy_types: _containers.RepeatedScalarFieldContainer[Direction]
    ingress: _containers.RepeatedCompositeFieldContainer[Rule]
    egress: _containers.RepeatedCompositeFieldContainer[Rule]
    labels: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., namespace: _Optional[str] = ..., origin: _Optional[_Union[Origin, str]] = ..., pod_selector: _Optional[_Union[LabelSelector, _Mapping]] = ..., policy_types: _Optional[_Iterable[_Union[Direction, str]]] = ..., ingress: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., egress: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PolicyRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ApplyPoliciesRequest(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ...) -> None: ...

class ApplyPoliciesResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class DeletePoliciesRequest(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyRef]
    def __init__(self, policies: _Optional[_Iterable[_Union[PolicyRef, _Mapping]]] = ...) -> None: ...

class DeletePoliciesResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListPoliciesRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListPoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _containers.RepeatedCompositeFieldContainer[Policy]
    def __init__(self, policies: _Optional[_Iterable[_Union[Policy, _Mapping]]] = ...) -> None: ...

class WatchPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PolicyEvent(_message.Message):
    __slots__ = ("kind", "policy", "revision")
    KIND_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    kind: PolicyEventKind
    policy: Policy
    revision: int
    def __init__(self, kind: _Optional[_Union[PolicyEventKind, str]] = ..., policy: _Optional[_Union[Policy, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...
