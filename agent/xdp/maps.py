"""The pinned maps of the XDP programs, as the agent reads and writes them.

The XDP objects pin every map by name in one directory (bpf/include/ringlane/maps.h); the agent
opens the pins (bpf_obj_get) instead of holding the objects, so it can update endpoints and
routes while the programs stay attached and across agent restarts. Layouts come from abi.h
through cffi (ffi.new("struct rl_endpoint_info *")), so no field offset or constant is repeated
here.
"""

from __future__ import annotations

import enum
import errno
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self

from agent.xdp.bpfobj import BpfError, ffi, lib
from agent.xdp.cvalues import be32, from_be16, from_be32

# bpf_map_update_elem flags (uapi linux/bpf.h)
BPF_ANY = 0  # create or replace
BPF_NOEXIST = 1  # create only: EEXIST if present

# Every map the agent opens by its pin (maps.h pins rl_xsks too; the ring core owns that one).
_MAPS = (
    "rl_endpoints",
    "rl_local_ips",
    "rl_remote_cidrs",
    "rl_vteps",
    "rl_flows",
    "rl_xdp_stats",
    "rl_meta",
    "rl_policy",
    "rl_policy_ct",
    "rl_ep_stats",
    "rl_flow_samples",
)

_STAT_PREFIX = "RL_XS_"
_RETIRED_SUFFIX = "_RETIRED"  # enum values kept only for their number (abi.h)


def retire_stale_pins(pin_dir: Path) -> int | None:
    """Unpin the maps a Ringlane of another ABI version left in `pin_dir`, before we load ours.

    libbpf refuses to reuse a pinned map whose shape changed, so without this an upgraded agent
    could not start. The old programs keep their maps alive until the new programs replace them
    (by name); nothing they hold can be read with the new layouts anyway. Returns the version
    retired (-1 if unreadable), or None when the pins are ours or there are none.
    """
    meta = pin_dir / "rl_meta"
    if not meta.exists():
        return None
    version = -1
    fd = lib.bpf_obj_get(str(meta).encode())
    if fd >= 0:
        try:
            # room for any past rl_meta value: the kernel copies the pinned map's value size
            key, value = ffi.new("__u32 *", 0), ffi.new("__u32[64]")
            if lib.bpf_map_lookup_elem(fd, key, value) == 0:
                version = int(value[0])
        finally:
            os.close(fd)
    if version in (0, lib.RL_ABI_VERSION):
        return None
    for pin in pin_dir.glob("rl_*"):
        pin.unlink()
    return version


def _stat_names() -> dict[int, str]:
    """enum rl_xdp_stat value -> counter name, read from the compiled module.

    Derived from lib so that adding a counter in abi.h needs no Python change.
    """
    names: dict[int, str] = {}
    for attr in dir(lib):
        if (attr.startswith(_STAT_PREFIX) and attr != "RL_XS_MAX"
                and not attr.endswith(_RETIRED_SUFFIX)):
            names[int(getattr(lib, attr))] = attr.removeprefix(_STAT_PREFIX).lower()
    return names


class VtepFlag(enum.IntFlag):
    """What an underlay address is to this node (rl_vteps, RL_VTEP_F_* in abi.h)."""

    NODE = lib.RL_VTEP_F_NODE  # another node of the cluster: may send us VXLAN
    EXTRA = lib.RL_VTEP_F_EXTRA  # an operator-listed VTEP (extraVteps): may send us VXLAN
    SELF = lib.RL_VTEP_F_SELF  # one of this node's underlay addresses: VXLAN is sent to it


@dataclass(frozen=True)
class Endpoint:
    """An rl_endpoints value: the pod behind a host veth."""

    slot: int  # XSKMAP slot of the veth's AF_XDP socket
    ip: IPv4Address
    mac: bytes


@dataclass(frozen=True)
class LocalIp:
    """An rl_local_ips value: where decapsulated traffic for a local pod goes."""

    slot: int
    ifindex: int


class Flow(NamedTuple):
    """An rl_flows key: a pod's TCP flow in its egress direction (the pod is saddr/sport).

    Ports are host order. A plain tuple, so (saddr, daddr, sport, dport) compares equal.
    """

    saddr: IPv4Address
    daddr: IPv4Address
    sport: int
    dport: int


def open_pin(pin_dir: Path, name: str) -> int:
    """A new fd on map `name` pinned in `pin_dir`; the caller closes it."""
    path = Path(pin_dir) / name
    fd: int = lib.bpf_obj_get(str(path).encode())
    if fd < 0:
        hint = (
            "load the XDP objects first (they create and pin the maps)"
            if fd == -errno.ENOENT
            else "is the pin directory on bpffs and are we root?"
        )
        raise BpfError(-fd, f"opening pinned map {path}: {os.strerror(-fd)}; {hint}")
    return fd


def map_keys(fd: int, ctype: str, what: str) -> list[Any]:
    """All keys of the map `fd` (cdata of `ctype *`), walked with get_next_key."""
    keys: list[Any] = []
    prev: Any = ffi.NULL
    while True:
        nxt = ffi.new(f"{ctype} *")
        rc = lib.bpf_map_get_next_key(fd, prev, nxt)
        if rc == -errno.ENOENT:
            return keys
        if rc < 0:
            raise BpfError(-rc, f"listing {what}: {os.strerror(-rc)}")
        keys.append(nxt)
        prev = nxt


def possible_cpus() -> int:
    """Slots of a per-CPU map value (one 8-byte aligned value per possible CPU)."""
    ncpus: int = lib.libbpf_num_possible_cpus()
    if ncpus < 0:
        raise BpfError(-ncpus, f"counting possible CPUs: {os.strerror(-ncpus)}")
    return ncpus


class PinnedMapSet:
    """Maps pinned in `pin_dir` (the names in MAPS), opened by path, with the primitives every
    facade over them needs. A context manager; close() closes the fds, the maps stay pinned.

    Writes are create-or-replace unless said otherwise and deletes are idempotent, because the
    agent reconciles: it re-applies its desired state after restarts and partial failures.
    """

    MAPS: ClassVar[tuple[str, ...]] = ()

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = Path(pin_dir)
        self._fds: dict[str, int] = {}
        try:
            for name in self.MAPS:
                self._fds[name] = open_pin(self.pin_dir, name)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the map fds. The maps themselves stay pinned."""
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- primitives --------------------------------------------------------------------------

    def _fd(self, name: str) -> int:
        try:
            return self._fds[name]
        except KeyError:
            raise BpfError(errno.EBADF, f"pinned maps in {self.pin_dir} are closed") from None

    def _update(self, name: str, key: Any, value: Any, what: str, flags: int = BPF_ANY) -> None:
        rc = lib.bpf_map_update_elem(self._fd(name), key, value, flags)
        if rc < 0:
            hint = f" ({name} is full)" if rc == -errno.E2BIG else ""
            raise BpfError(-rc, f"updating {name} for {what}: {os.strerror(-rc)}{hint}")

    def _delete(self, name: str, key: Any, what: str) -> None:
        rc = lib.bpf_map_delete_elem(self._fd(name), key)
        if rc < 0 and rc != -errno.ENOENT:
            raise BpfError(-rc, f"deleting {what} from {name}: {os.strerror(-rc)}")

    def _lookup(self, name: str, key: Any, value: Any) -> bool:
        rc = lib.bpf_map_lookup_elem(self._fd(name), key, value)
        if rc == -errno.ENOENT:
            return False
        if rc < 0:
            raise BpfError(-rc, f"reading {name}: {os.strerror(-rc)}")
        return True

    def _keys(self, name: str, ctype: str) -> list[Any]:
        """All keys of map `name` (cdata of `ctype *`), walked with get_next_key."""
        return map_keys(self._fd(name), ctype, name)


class PinnedMaps(PinnedMapSet):
    """Every map the agent uses, pinned in `pin_dir`: endpoints, routes, VTEPs, steered flows,
    counters and the ABI stamp. Policy and telemetry have their own facade
    (agent.xdp.policy_maps), over the same pins.
    """

    MAPS = _MAPS

    # --- endpoints (host veth ifindex -> pod) --------------------------------------------------

    def set_endpoint(self, *, ifindex: int, slot: int, ip: IPv4Address, mac: bytes) -> None:
        """Register the pod behind host veth `ifindex`; from_pod then redirects its overlay
        traffic to XSKMAP `slot`.

        Pod slots are [0, RL_MAX_ENDPOINTS): a larger slot would hand pod traffic to an
        underlay queue's socket, so it is refused here rather than misrouted at runtime.
        """
        if not 0 <= slot < lib.RL_MAX_ENDPOINTS:
            raise ValueError(f"endpoint slot {slot} outside [0, {lib.RL_MAX_ENDPOINTS})")
        if len(mac) != 6:
            raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
        key = ffi.new("__u32 *", ifindex)
        val = ffi.new("struct rl_endpoint_info *")
        val.slot = slot
        val.ip = be32(ip)
        val.mac = list(mac)
        val.flags = 0
        self._update("rl_endpoints", key, val, f"ifindex {ifindex}")

    def delete_endpoint(self, ifindex: int) -> None:
        """Unregister host veth `ifindex`; absent is fine (reconciliation repeats deletes)."""
        self._delete("rl_endpoints", ffi.new("__u32 *", ifindex), f"ifindex {ifindex}")

    def endpoints(self) -> dict[int, Endpoint]:
        """Every registered endpoint, by host veth ifindex."""
        out: dict[int, Endpoint] = {}
        val = ffi.new("struct rl_endpoint_info *")
        for key in self._keys("rl_endpoints", "__u32"):
            if self._lookup("rl_endpoints", key, val):
                out[int(key[0])] = Endpoint(
                    slot=int(val.slot), ip=from_be32(val.ip), mac=bytes(val.mac)
                )
        return out

    # --- local pod addresses (decap side) ----------------------------------------------------

    def set_local_ip(self, ip: IPv4Address, *, slot: int, ifindex: int) -> None:
        """Mark pod address `ip` as accelerated: from_wire redirects VXLAN traffic for it."""
        key = ffi.new("__be32 *", be32(ip))
        val = ffi.new("struct rl_local_ip_info *")
        val.slot = slot
        val.ifindex = ifindex
        self._update("rl_local_ips", key, val, str(ip))

    def delete_local_ip(self, ip: IPv4Address) -> None:
        """Stop accelerating traffic to `ip`; absent is fine."""
        self._delete("rl_local_ips", ffi.new("__be32 *", be32(ip)), str(ip))

    def local_ips(self) -> dict[IPv4Address, LocalIp]:
        """Every accelerated local pod address."""
        out: dict[IPv4Address, LocalIp] = {}
        val = ffi.new("struct rl_local_ip_info *")
        for key in self._keys("rl_local_ips", "__be32"):
            if self._lookup("rl_local_ips", key, val):
                out[from_be32(key[0])] = LocalIp(slot=int(val.slot), ifindex=int(val.ifindex))
        return out

    # --- remote podCIDRs (encap side) --------------------------------------------------------

    @staticmethod
    def _lpm_key(cidr: IPv4Network) -> Any:
        key = ffi.new("struct rl_lpm4_key *")
        key.prefixlen = cidr.prefixlen
        key.addr = be32(cidr.network_address)
        return key

    def set_remote_cidr(self, cidr: IPv4Network, node_ip: IPv4Address) -> None:
        """Route podCIDR `cidr` through the overlay to node `node_ip` (from_pod redirects it)."""
        val = ffi.new("struct rl_remote_info *")
        val.node_ip = be32(node_ip)
        val.flags = 0
        self._update("rl_remote_cidrs", self._lpm_key(cidr), val, str(cidr))

    def delete_remote_cidr(self, cidr: IPv4Network) -> None:
        """Forget podCIDR `cidr`; absent is fine."""
        self._delete("rl_remote_cidrs", self._lpm_key(cidr), str(cidr))

    def remote_cidrs(self) -> dict[IPv4Network, IPv4Address]:
        """Every remote podCIDR and the node that owns it."""
        out: dict[IPv4Network, IPv4Address] = {}
        val = ffi.new("struct rl_remote_info *")
        for key in self._keys("rl_remote_cidrs", "struct rl_lpm4_key"):
            if self._lookup("rl_remote_cidrs", key, val):
                net = IPv4Network((from_be32(key.addr), int(key.prefixlen)))
                out[net] = from_be32(val.node_ip)
        return out

    # --- VTEPs (underlay address -> RL_VTEP_F_*) -----------------------------------------------

    def set_vtep(self, ip: IPv4Address, flags: VtepFlag) -> None:
        """Record what underlay address `ip` is (all its flags at once; 0 deletes it).

        from_wire accepts VXLAN only from NODE or EXTRA addresses and only to SELF ones;
        from_pod refuses pod traffic to the VXLAN port of any of them.
        """
        if not flags:
            self.delete_vtep(ip)
            return
        key = ffi.new("__be32 *", be32(ip))
        val = ffi.new("struct rl_vtep_info *")
        val.flags = int(flags)
        val.pad = 0
        self._update("rl_vteps", key, val, f"VTEP {ip}")

    def delete_vtep(self, ip: IPv4Address) -> None:
        """Forget underlay address `ip`; absent is fine."""
        self._delete("rl_vteps", ffi.new("__be32 *", be32(ip)), f"VTEP {ip}")

    def vteps(self) -> dict[IPv4Address, VtepFlag]:
        """Every underlay address in rl_vteps with its flags."""
        out: dict[IPv4Address, VtepFlag] = {}
        val = ffi.new("struct rl_vtep_info *")
        for key in self._keys("rl_vteps", "__be32"):
            if self._lookup("rl_vteps", key, val):
                out[from_be32(key[0])] = VtepFlag(int(val.flags))
        return out

    # --- TCP flows steered to the kernel path (written by the XDP programs) ------------------

    def flows(self) -> set[Flow]:
        """Every TCP flow the XDP programs moved to the kernel path (RL_TCP_AUTO).

        from_pod records a pod's flow at its first TSO super-frame; from_wire records the
        reverse of a flow whose frames a kernel VXLAN sender sent. rl_flows is an LRU map, so
        finished (or merely old) flows may be gone.
        """
        out: set[Flow] = set()
        for key in self._keys("rl_flows", "struct rl_flow_key"):
            out.add(
                Flow(
                    saddr=from_be32(key.saddr),
                    daddr=from_be32(key.daddr),
                    sport=from_be16(key.sport),
                    dport=from_be16(key.dport),
                )
            )
        return out

    # --- counters and metadata ---------------------------------------------------------------

    def xdp_stats(self) -> dict[str, int]:
        """The XDP outcome counters summed over all possible CPUs, e.g. {"pod_redirect": 12}.

        Names are enum rl_xdp_stat's without the RL_XS_ prefix, lowercased.
        """
        ncpus = possible_cpus()
        # A per-CPU lookup fills one 8-byte-aligned slot per possible CPU; __u64 is exactly that.
        values = ffi.new("__u64[]", ncpus)
        key = ffi.new("__u32 *")
        out: dict[str, int] = {}
        for index, name in sorted(_stat_names().items()):
            key[0] = index
            out[name] = sum(values) if self._lookup("rl_xdp_stats", key, values) else 0
        return out

    def check_abi(self) -> None:
        """Make sure the pinned maps speak our ABI (rl_meta[0].abi_version).

        0 means the maps were just created: stamp them with RL_ABI_VERSION. Another version means
        they were pinned by an incompatible Ringlane whose layouts we would misread.
        """
        key = ffi.new("__u32 *", 0)
        meta = ffi.new("struct rl_meta *")
        if not self._lookup("rl_meta", key, meta):
            raise BpfError(errno.ENOENT, f"rl_meta in {self.pin_dir} has no entry 0")
        if meta.abi_version == 0:
            meta.abi_version = lib.RL_ABI_VERSION
            self._update("rl_meta", key, meta, "the ABI version")
        elif meta.abi_version != lib.RL_ABI_VERSION:
            raise BpfError(
                errno.EPROTO,
                f"the maps pinned in {self.pin_dir} were created by Ringlane ABI version "
                f"{meta.abi_version}, this agent needs {lib.RL_ABI_VERSION}: run the Ringlane "
                f"cleanup on this node (it detaches the XDP programs and removes {self.pin_dir}), "
                "then start the agent again",
            )
