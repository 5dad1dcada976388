from agent.api.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_ALLOW: _ClassVar[Verdict]
    VERDICT_DENY: _ClassVar[Verdict]
    VERDICT_REPLY: _ClassVar[Verdict]

class ObservationPoint(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OBSERVATION_POINT_UNSPECIFIED: _ClassVar[ObservationPoint]
    OBSERVATION_POINT_FROM_POD: _ClassVar[ObservationPoint]
    OBSERVATION_POINT_FROM_WIRE: _ClassVar[ObservationPoint]
VERDICT_UNSPECIFIED: Verdict
VERDICT_ALLOW: Verdict
VERDICT_DENY: Verdict
VERDICT_REPLY: Verdict
OBSERVATION_POINT_UNSPECIFIED: ObservationPoint
OBSERVATION_POINT_FROM_POD: ObservationPoint
OBSERVATION_POINT_FROM_WIRE: ObservationPoint

class GetStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EndpointCounters(_message.Message):
    __slots__ = ("ip", "counters")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    IP_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    ip: str
    counters: _containers.ScalarMap[str, int]
    def __init__(self, ip: _Optional[str] = ..., counters: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("node", "core", "xdp", "endpoints")
    class CoreEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class XdpEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    CORE_FIELD_NUMBER: _ClassVar[int]
    XDP_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    node: str
    core: _containers.ScalarMap[str, int]
    xdp: _containers.ScalarMap[str, int]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointCounters]
    def __init__(self, node: _Optional[str] = ..., core: _Optional[_Mapping[str, int]] = ..., xdp: _Optional[_Mapping[str, int]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointCounters, _Mapping]]] = ...) -> None: ...

class GetLinkHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkHealth(_message.Message):
    __slots__ = ("peer_node", "peer_ip", "sent", "received", "loss_ratio", "rtt_last_us", "rtt_min_us", "rtt_avg_us", "rtt_max_us", "jitter_us", "last_reply_age_s")
    PEER_NODE_FIELD_NUMBER: _ClassVar[int]
    PEER_IP_FIELD_NUMBER: _ClassVar[int]
    SENT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    LOSS_RATIO_FIELD_NUMBER: _ClassVar[int]
    RTT_LAST_US_FIELD_NUMBER: _ClassVar[int]
    RTT_MIN_US_FIELD_NUMBER: _ClassVar[int]
    RTT_AVG_US_FIELD_NUMBER: _ClassVar[int]
    RTT_MAX_US_FIELD_NUMBER: _ClassVar[int]
    JITTER_US_FIELD_NUMBER: _ClassVar[int]
    LAST_REPLY_AGE_S_FIELD_NUMBER: _ClassVar[int]
    peer_node: str
    peer_ip: str
    sent: int
    received: int
    loss_ratio: float
    rtt_last_us: float
    rtt_min_us: float
    rtt_avg_us: float
    rtt_max_us: float
    jitter_us: float
    last_reply_age_s: float
    def __init__(self, peer_node: _Optional[str] = ..., peer_ip: _Optional[str] = ..., sent: _Optional[int] = ..., received: _Optional[int] = ..., loss_ratio: _Optional[float] = ..., rtt_last_us: _Optional[float] = ..., rtt_min_us: _Optional[float] = ..., rtt_avg_us: _Optional[float] = ..., rtt_max_us: _Optional[float] = ..., jitter_us: _Optional[float] = ..., last_reply_age_s: _Optional[float] = ...) -> None: ...

class GetLinkHealthResponse(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[LinkHealth]
    def __init__(self, links: _Optional[_Iterable[_Union[LinkHealth, _Mapping]]] = ...) -> None: ...

class FlowRecord(_message.Message):
    __slots__ = ("node", "ts_ns", "src", "dst", "sport", "dport", "protocol", "verdict", "direction", "point", "length")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TS_NS_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    SPORT_FIELD_NUMBER: _ClassVar[int]
    DPORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    POINT_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    node: str
    ts_ns: int
    src: str
    dst: str
    sport: int
    dport: int
    protocol: int
    verdict: Verdict
    direction: _policy_pb2.Direction
    point: ObservationPoint
    length: int
    def __init__(self, node: _Optional[str] = ..., ts_ns: _Optional[int] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., sport: _Optional[int] = ..., dport: _Optional[int] = ..., protocol: _Optional[int] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., direction: _Optional[_Union[_policy_pb2.Direction, str]] = ..., point: _Optional[_Union[ObservationPoint, str]] = ..., length: _Optional[int] = ...) -> None: ...

class StreamFlowsRequest(_message.Message):
    __slots__ = ("queue_size",)
    QUEUE_SIZE_FIELD_NUMBER: _ClassVar[int]
    queue_size: int
    def __init__(self, queue_size: _Optional[int] = ...) -> None: ...

class FlowBatch(_message.Message):
    __slots__ = ("records", "lost")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[FlowRecord]
    lost: int
    def __init__(self, records: _Optional[_Iterable[_Union[FlowRecord, _Mapping]]] = ..., lost: _Optional[int] = ...) -> None: ...
