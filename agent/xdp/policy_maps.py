"""The policy and telemetry maps of the XDP programs: policy tries, the reply table, per-endpoint
counters and flow samples (abi.h "Policy", maps.h, bpf/lib/policy.h).

The agent compiles policies into PolicyEntry rows (agent.policy.compile); this module only
installs them. Each generation is a fresh LPM trie swapped into rl_policy[0] with one map
update, so a packet sees either the old policy or the new one, never half of each, and a
failed build leaves the old one in force. Layouts come from abi.h through cffi; no C value is
repeated here.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from agent.policy.compile import PolicyEntry, PortRange
from agent.policy.model import Direction
from agent.xdp.bpfobj import BpfError, ffi, lib
from agent.xdp.cvalues import be32, from_be16, from_be32
from agent.xdp.maps import BPF_NOEXIST, PinnedMapSet, map_keys, open_pin, possible_cpus

__all__ = [
    "FlowSample",
    "FlowSampleReader",
    "PolicyEntry",
    "PolicyMaps",
    "PortRange",
    "TrackedFlow",
    "endpoint_counter_names",
]

_EPC_PREFIX = "RL_EPC_"
_RL_DIR = {Direction.EGRESS: lib.RL_DIR_EGRESS, Direction.INGRESS: lib.RL_DIR_INGRESS}
_DIRECTION = {v: k for k, v in _RL_DIR.items()}
_PORT_MAX = 0xFFFF
_PROTO_MAX = 0xFF
_WAIT_FOREVER_MS = -1  # rl_flow_reader__read's "no timeout"
_WAIT_MAX_MS = 0x7FFFFFFF  # the largest poll timeout (an int of milliseconds)


class TrackedFlow(NamedTuple):
    """An rl_policy_ct key: a flow some check allowed, as its first packet had it. Ports host
    order; an ICMP echo has its identifier as sport and 0 as dport."""

    saddr: IPv4Address
    daddr: IPv4Address
    sport: int
    dport: int
    proto: int


class FlowSample(NamedTuple):
    """One rl_flow_samples record (struct rl_flow_sample) as Python values."""

    ts_ns: int  # bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the decision
    src: IPv4Address
    dst: IPv4Address
    sport: int  # host order; the ICMP echo identifier, 0 when the packet had no ports
    dport: int
    proto: int
    verdict: int  # lib.RL_VERDICT_*
    direction: Direction  # of the check that decided
    point: int  # lib.RL_POINT_*: which program decided
    length: int  # IPv4 total length


def endpoint_counter_names() -> dict[int, str]:
    """enum rl_ep_counter value -> name ("tx_packets", ...), read from the compiled module."""
    return {
        int(getattr(lib, attr)): attr.removeprefix(_EPC_PREFIX).lower()
        for attr in dir(lib)
        if attr.startswith(_EPC_PREFIX) and attr != "RL_EPC_MAX"
    }


def _describe(entry: PolicyEntry) -> str:
    direction = getattr(entry.direction, "value", f"direction {entry.direction}")
    return f"{entry.endpoint} {direction} {entry.peer}"


def _check_entry(entry: PolicyEntry) -> None:
    """BpfError(EINVAL or E2BIG) naming the entry if the trie could not hold it as meant.
    (Called for every entry of every swap: the message is only formatted on failure.)"""
    if not isinstance(entry.endpoint, IPv4Address) or not isinstance(entry.peer, IPv4Network):
        raise BpfError(errno.EINVAL,
                       f"policy entry {_describe(entry)}: endpoint and peer must be IPv4")
    if entry.direction not in _RL_DIR:
        raise BpfError(errno.EINVAL,
                       f"policy entry {_describe(entry)}: direction must be a Direction")
    if len(entry.ranges) > lib.RL_POLICY_RANGES:
        raise BpfError(
            errno.E2BIG,
            f"policy entry {_describe(entry)} has {len(entry.ranges)} port ranges, at most "
            f"{lib.RL_POLICY_RANGES} fit in one entry: merge adjacent ranges",
        )
    for r in entry.ranges:
        if not (0 <= r.proto <= _PROTO_MAX and 0 <= r.lo <= r.hi <= _PORT_MAX):
            raise BpfError(errno.EINVAL,
                           f"policy entry {_describe(entry)}: invalid port range {r}")


def _check_isolation(entries: list[PolicyEntry]) -> None:
    """Every isolated (endpoint, direction) has a /0 entry, as abi.h requires: without one a
    peer no entry covers would miss the trie and be allowed."""
    isolated = {(e.endpoint, e.direction) for e in entries}
    covered = {(e.endpoint, e.direction) for e in entries if e.peer.prefixlen == 0}
    missing = sorted(isolated - covered, key=lambda m: (m[0], m[1].value))
    if missing:
        ep, direction = missing[0]
        raise BpfError(
            errno.EINVAL,
            f"policy for {ep} {direction.value} has entries but no 0.0.0.0/0 entry "
            f"({len(missing)} endpoint/direction pairs like it): peers outside every entry "
            "would be allowed",
        )


def _fill_key(key: Any, entry: PolicyEntry) -> None:
    key.prefixlen = lib.RL_POLICY_KEY_FIXED_BITS + entry.peer.prefixlen
    key.endpoint = be32(entry.endpoint)
    key.dir = _RL_DIR[entry.direction]
    key.pad = [0, 0, 0]
    key.peer = be32(entry.peer.network_address)


def _fill_value(value: Any, ranges: tuple[PortRange, ...]) -> None:
    ffi.memmove(value, bytes(ffi.sizeof(value[0])), ffi.sizeof(value[0]))
    value.nranges = len(ranges)
    for i, r in enumerate(ranges):
        value.ranges[i].proto = r.proto
        value.ranges[i].lo = r.lo
        value.ranges[i].hi = r.hi


def _entry_of(key: Any, value: Any) -> PolicyEntry:
    prefixlen = int(key.prefixlen) - lib.RL_POLICY_KEY_FIXED_BITS
    return PolicyEntry(
        endpoint=from_be32(key.endpoint),
        direction=_DIRECTION[int(key.dir)],
        peer=IPv4Network((from_be32(key.peer), prefixlen)),
        ranges=tuple(
            PortRange(int(r.proto), int(r.lo), int(r.hi))
            for r in value.ranges[0 : min(int(value.nranges), lib.RL_POLICY_RANGES)]
        ),
    )


class PolicyMaps(PinnedMapSet):
    """rl_policy, rl_policy_ct and rl_ep_stats, opened by their pins in `pin_dir`."""

    MAPS = ("rl_policy", "rl_policy_ct", "rl_ep_stats")

    # --- policy generations --------------------------------------------------------------------

    def swap_policy(self, entries: Iterable[PolicyEntry]) -> int:
        """Install `entries` as the whole policy of this node; returns how many were installed.

        A fresh trie is built and filled first, then put in rl_policy[0] with one update: the
        programs switch from the old policy to the new one between two packets. On any failure
        the new trie is dropped and the old policy stays in force. No entries at all still
        installs a (empty) policy: nothing isolated, but flows are tracked; clear_policy()
        is "no policy".

        Raises BpfError: E2BIG for too many entries or ranges, EINVAL for a malformed or
        duplicate entry or an isolated endpoint without a 0.0.0.0/0 entry (the message names
        the endpoint), or what the kernel said.
        """
        rows = list(entries)
        if len(rows) > lib.RL_MAX_POLICY_ENTRIES:
            raise BpfError(
                errno.E2BIG,
                f"policy has {len(rows)} entries, a trie holds {lib.RL_MAX_POLICY_ENTRIES}",
            )
        for entry in rows:
            _check_entry(entry)
        _check_isolation(rows)
        fd = lib.rl_policy__new_trie()
        if fd < 0:
            raise BpfError(-fd, f"creating a policy trie: {os.strerror(-fd)}")
        try:
            key = ffi.new("struct rl_policy_key *")
            value = ffi.new("struct rl_policy_value *")
            for entry in rows:
                _fill_key(key, entry)
                _fill_value(value, entry.ranges)
                rc = lib.bpf_map_update_elem(fd, key, value, BPF_NOEXIST)
                if rc == -errno.EEXIST:
                    raise BpfError(errno.EINVAL, f"policy entry {_describe(entry)} twice")
                if rc < 0:
                    raise BpfError(
                        -rc, f"filling the policy trie with {_describe(entry)}: {os.strerror(-rc)}"
                    )
            self._update(
                "rl_policy", ffi.new("__u32 *", 0), ffi.new("__u32 *", fd), "the new policy"
            )
        finally:
            # rl_policy holds its own reference once the update succeeded.
            os.close(fd)
        return len(rows)

    def clear_policy(self) -> None:
        """Remove the policy: everything allowed, nothing tracked. Idempotent."""
        self._delete("rl_policy", ffi.new("__u32 *", 0), "the policy")

    def _current_trie(self) -> int | None:
        """A new fd on the trie in rl_policy[0], or None if there is none."""
        key, map_id = ffi.new("__u32 *", 0), ffi.new("__u32 *")
        # A swap may free the trie between reading its id and opening it: read again.
        for _ in range(3):
            if not self._lookup("rl_policy", key, map_id):
                return None
            fd: int = lib.bpf_map_get_fd_by_id(map_id[0])
            if fd >= 0:
                return fd
            if fd != -errno.ENOENT:
                raise BpfError(-fd, f"opening the policy trie (map id {map_id[0]}): "
                               f"{os.strerror(-fd)}")
        raise BpfError(errno.EAGAIN, "the policy trie kept changing while being read")

    def installed_entries(self) -> list[PolicyEntry]:
        """The entries of the installed policy, sorted; [] when there is none."""
        fd = self._current_trie()
        if fd is None:
            return []
        try:
            out = []
            value = ffi.new("struct rl_policy_value *")
            for key in map_keys(fd, "struct rl_policy_key", "the policy trie"):
                rc = lib.bpf_map_lookup_elem(fd, key, value)
                if rc == -errno.ENOENT:
                    continue
                if rc < 0:
                    raise BpfError(-rc, f"reading the policy trie: {os.strerror(-rc)}")
                out.append(_entry_of(key, value))
        finally:
            os.close(fd)
        return sorted(out, key=lambda e: (e.endpoint, e.direction.value, e.peer.prefixlen,
                                          e.peer.network_address))

    def installed(self) -> bool:
        """Whether a policy is installed (rl_policy[0] holds a trie)."""
        return self._lookup("rl_policy", ffi.new("__u32 *", 0), ffi.new("__u32 *"))

    # --- reply tracking ------------------------------------------------------------------------

    def tracked_flows(self) -> set[TrackedFlow]:
        """Every flow in rl_policy_ct (LRU: old ones may be gone)."""
        return {
            TrackedFlow(
                saddr=from_be32(k.saddr),
                daddr=from_be32(k.daddr),
                sport=from_be16(k.sport),
                dport=from_be16(k.dport),
                proto=int(k.proto),
            )
            for k in self._keys("rl_policy_ct", "struct rl_ct_key")
        }

    def flush_ct(self) -> int:
        """Forget every tracked flow (their replies are then checked like any packet); returns
        how many were removed. Flows the programs record meanwhile may stay."""
        keys = self._keys("rl_policy_ct", "struct rl_ct_key")
        for key in keys:
            self._delete("rl_policy_ct", key, "a tracked flow")
        return len(keys)

    # --- per-endpoint counters -----------------------------------------------------------------

    def ensure_endpoint_stats(self, ip: IPv4Address) -> None:
        """Give local pod `ip` counters (zero), keeping any it already has: the programs only
        count for pods that have an entry."""
        value = ffi.new("struct rl_ep_counters[]", possible_cpus())
        try:
            self._update("rl_ep_stats", ffi.new("__be32 *", be32(ip)), value, str(ip),
                         flags=BPF_NOEXIST)
        except BpfError as e:
            if e.errno != errno.EEXIST:
                raise

    def delete_endpoint_stats(self, ip: IPv4Address) -> None:
        """Drop the counters of `ip`; absent is fine."""
        self._delete("rl_ep_stats", ffi.new("__be32 *", be32(ip)), str(ip))

    def endpoint_stats(self) -> dict[IPv4Address, dict[str, int]]:
        """Every endpoint's counters summed over CPUs, e.g. {ip: {"tx_packets": 3, ...}}.

        Names are enum rl_ep_counter's without RL_EPC_, lowercased.
        """
        names = sorted(endpoint_counter_names().items())
        values = ffi.new("struct rl_ep_counters[]", possible_cpus())
        out: dict[IPv4Address, dict[str, int]] = {}
        for key in self._keys("rl_ep_stats", "__be32"):
            if self._lookup("rl_ep_stats", key, values):
                out[from_be32(key[0])] = {
                    name: sum(int(v.c[index]) for v in values) for index, name in names
                }
        return out


class FlowSampleReader:
    """The consumer of rl_flow_samples pinned in `pin_dir`. A context manager.

    The ring buffer has one consumer position: run one reader per node. Samples are copied in C
    in batches, so Python never runs a callback per sample.
    """

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = Path(pin_dir)
        self._reader: Any = None
        self._fd = open_pin(self.pin_dir, "rl_flow_samples")
        out = ffi.new("struct rl_flow_reader **")
        rc = lib.rl_flow_reader__new(self._fd, out)
        if rc < 0:
            os.close(self._fd)
            raise BpfError(-rc, f"reading rl_flow_samples in {self.pin_dir}: {os.strerror(-rc)}")
        self._reader = out[0]

    def read(self, timeout_s: float, max: int = 256) -> list[FlowSample]:
        """Up to `max` samples, oldest first; waits up to `timeout_s` only while there are none
        (0: never waits, math.inf or a negative value: until one comes). [] on timeout.

        Blocks in C with the GIL released (cffi releases it around every call).
        """
        if self._reader is None:
            raise BpfError(errno.EBADF, f"flow sample reader of {self.pin_dir} is closed")
        if max <= 0:
            return []
        if timeout_s < 0 or math.isinf(timeout_s):
            timeout_ms = _WAIT_FOREVER_MS
        else:
            timeout_ms = min(math.ceil(timeout_s * 1000), _WAIT_MAX_MS)
        buf = ffi.new("struct rl_flow_sample[]", max)
        n = lib.rl_flow_reader__read(self._reader, buf, max, timeout_ms)
        if n < 0:
            raise BpfError(-n, f"reading rl_flow_samples in {self.pin_dir}: {os.strerror(-n)}")
        return [
            FlowSample(
                ts_ns=int(s.ts_ns),
                src=from_be32(s.saddr),
                dst=from_be32(s.daddr),
                sport=from_be16(s.sport),
                dport=from_be16(s.dport),
                proto=int(s.proto),
                verdict=int(s.verdict),
                direction=_DIRECTION[int(s.dir)],
                point=int(s.point),
                length=int(s.len),
            )
            for s in buf[0:n]
        ]

    def close(self) -> None:
        """Free the reader and close the map fd. Unread samples stay in the ring."""
        if self._reader is not None:
            lib.rl_flow_reader__free(self._reader)
            self._reader = None
            os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

