"""One node's data path: XDP programs, pinned maps, the ring core and the kernel fallback.

Order is what keeps traffic flowing: the kernel VXLAN fallback for a remote node is programmed
before the XDP programs may redirect towards it, and an endpoint's socket is served and primed
with frames before its veth's XDP program may redirect into it. Removal runs the other way
round. Whatever the ring core cannot serve at a given moment is XDP_PASS, and the kernel carries
it over the fallback: slower, never lost.

The same programs reject what no one may send (docs/threat-model.md), with or without the ring
core; so a node is accepted as a VXLAN sender (rl_vteps) before anything is programmed for it,
and this node's own underlay addresses are recorded before from_wire is attached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import structlog

from agent.api.backend import FlowRecord
from agent.config import AgentConfig
from agent.errors import ConfigError, RinglaneError
from agent.netlink import ethtool, links, neigh, vxlan
from agent.policy.compile import PolicyEntry
from agent.xdp import bpfobj
from agent.xdp.bpfobj import XdpAttachment, XdpMode, XdpObject, lib
from agent.xdp.cvalues import mac_bytes
from agent.xdp.maps import PinnedMaps, VtepFlag, retire_stale_pins
from agent.xdp.policy_maps import FlowSampleReader, PolicyMaps
from agent.xdp.ringcore import PROBES_OFF, CoreStats, LinkStat, RingCore

log = structlog.get_logger(__name__)

POD_PROG = "rl_from_pod"
WIRE_PROG = "rl_from_wire"
# Maximum endpoints a node serves: the XSKMAP's pod slots.
MAX_ENDPOINTS = 1024


@dataclass(frozen=True)
class Endpoint:
    """A pod as the data path sees it: its IP and MAC, and the host side of its veth."""

    name: str
    ip: IPv4Address
    host_ifname: str
    mac: str = ""  # empty: resolved through the neighbour table


@dataclass(frozen=True)
class RemoteNode:
    """Another node: where its pods live and how to reach it on the underlay."""

    name: str
    ip: IPv4Address
    pod_cidr: IPv4Network


@dataclass
class _Served:
    endpoint: Endpoint
    slot: int
    ifindex: int
    attachment: XdpAttachment
    gro_before: bool


@dataclass
class _NodeState:
    """What must survive an agent restart to put the node back as it was (run_dir/state.json)."""

    gro_before: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> _NodeState:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        return cls(gro_before={str(k): bool(v) for k, v in data.get("gro_before", {}).items()})

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"gro_before": self.gro_before}))
        os.replace(tmp, path)


class NodeDatapath:
    """Programs one node. Not thread-safe: the agent drives it from one thread."""

    def __init__(self, config: AgentConfig, *, pod_cidr: IPv4Network) -> None:
        self.config = config
        self.pod_cidr = pod_cidr
        self.underlay = links.link_by_name(
            config.underlay_interface or links.default_route_interface()
        )
        addrs = links.ipv4_addresses(self.underlay.name)
        if not addrs:
            raise ConfigError(f"underlay interface {self.underlay.name} has no IPv4 address")
        self.underlay_addr: IPv4Interface = addrs[0]
        # where other nodes send VXLAN to (every address of the underlay, secondaries too)
        self.self_addrs: frozenset[IPv4Address] = frozenset(a.ip for a in addrs)
        self.extra_vteps: frozenset[IPv4Address] = frozenset(
            IPv4Address(a) for a in config.extra_vteps)
        self.overlay_mtu = self.underlay.mtu - 50
        self.vtep_mac = vxlan.vtep_mac(self.underlay_addr.ip)
        self._state_path = config.run_dir / "state.json"
        self._state = _NodeState.load(self._state_path)
        self._objs: list[XdpObject] = []
        self._pod_obj: XdpObject | None = None
        self._wire_attach: XdpAttachment | None = None
        self._maps: PinnedMaps | None = None
        self._policy: PolicyMaps | None = None
        self._samples: _SampleSource | None = None
        self.policy_entries: tuple[PolicyEntry, ...] | None = None  # None: not set since start
        self._core: RingCore | None = None
        self._vxlan_index = 0
        self._served: dict[IPv4Address, _Served] = {}
        self._remotes: dict[str, RemoteNode] = {}
        self._adding: RemoteNode | None = None  # set_remote() in progress: already a VTEP

    # -- start and stop -------------------------------------------------------------------

    def start(self) -> None:
        """Fallback device, BPF objects, underlay program, ring core. Idempotent on a node
        where a previous agent left its programs and pins (they are adopted or replaced)."""
        cfg = self.config
        self._vxlan_index = vxlan.ensure_device(
            vxlan.VxlanDevice(
                name=cfg.vxlan_device, vni=cfg.vni, port=cfg.vxlan_port,
                local_ip=self.underlay_addr.ip, underlay_ifname=self.underlay.name,
                mac=self.vtep_mac, mtu=self.overlay_mtu,
                address=self.pod_cidr.network_address,
                sport_min=lib.RL_KERNEL_SPORT_MIN, sport_max=lib.RL_KERNEL_SPORT_MAX,
            )
        )
        _ensure_conntrack()
        bpfobj.ensure_bpffs(cfg.pin_dir)
        cfg.pin_dir.mkdir(parents=True, exist_ok=True)
        retired = retire_stale_pins(cfg.pin_dir)
        if retired is not None:
            log.warning("pins.retired", pin_dir=str(cfg.pin_dir), old_abi=retired,
                        abi=lib.RL_ABI_VERSION)
        self._pod_obj = self._load("from_pod", {
            "rl_cfg_overlay_mtu": self.overlay_mtu,
            "rl_cfg_tcp_mode": getattr(lib, f"RL_TCP_{cfg.tcp_mode.upper()}"),
            "rl_cfg_vxlan_port": cfg.vxlan_port,
            "rl_cfg_antispoof": int(cfg.pod_anti_spoofing),
            "rl_cfg_flow_sample_every": cfg.flow_sample_every,
        })
        wire_obj = self._load("from_wire", {
            "rl_cfg_vxlan_port": cfg.vxlan_port, "rl_cfg_vni": cfg.vni,
            "rl_cfg_ring_sport_min": lib.RL_RING_SPORT_MIN,
            "rl_cfg_ring_sport_max": lib.RL_RING_SPORT_MAX,
            "rl_cfg_underlay_ip": int(self.underlay_addr.ip),
            "rl_cfg_flow_sample_every": cfg.flow_sample_every,
        })
        self._maps = PinnedMaps(cfg.pin_dir)
        self._maps.check_abi()
        self._policy = PolicyMaps(cfg.pin_dir)
        self._samples = _SampleSource(FlowSampleReader(cfg.pin_dir), cfg.node_name)
        # before from_wire is (re)attached: from then on it drops VXLAN from anyone else
        self._program_vteps()
        wire_mode = self._wire_mode()
        for mode in XdpMode:
            bpfobj.detach_by_name(self.underlay.index, mode, WIRE_PROG)
        self._wire_attach = wire_obj.attach(WIRE_PROG, self.underlay.index, wire_mode)
        self._core = RingCore(
            underlay_ifname=self.underlay.name, underlay_ip=self.underlay_addr.ip,
            underlay_mac=self.underlay.mac, vtep_mac=self.vtep_mac,
            xsks_map_fd=wire_obj.map_fd("rl_xsks"), vni=cfg.vni, vxlan_port=cfg.vxlan_port,
            overlay_mtu=self.overlay_mtu, n_frames=cfg.frames, ring_size=cfg.ring_size,
            batch_size=cfg.batch_size,
            busy_poll=cfg.busy_poll, hugepages=cfg.hugepages, cpu=cfg.cpu,
            probe_interval_ms=cfg.probe_interval_ms or PROBES_OFF,
        )
        self._core.start()
        st = self._core.stats()
        log.info(
            "datapath.started", underlay=self.underlay.name, underlay_ip=str(self.underlay_addr.ip),
            overlay_mtu=self.overlay_mtu, umem="hugepages" if st.hugepages else "4k-pages",
            underlay_bind=st.underlay.bind_mode, dispatcher=self._wire_attach.multiprog,
            frames=st.frames_total,
        )

    def _wire_mode(self) -> XdpMode:
        """Native XDP on a veth turns TSO off on its peer, which on a veth underlay is the other
        node's sender: its kernel VXLAN path would then segment everything in software (3.9
        instead of 13.8 Gbit/s measured). Generic mode on a veth underlay keeps it; a physical
        NIC has no such coupling, so native there."""
        mode = self.config.wire_xdp_mode
        if mode == "auto":
            mode = "skb" if self.underlay.kind == "veth" else "native"
        return XdpMode.SKB if mode == "skb" else XdpMode.NATIVE

    def _load(self, name: str, consts: dict[str, int]) -> XdpObject:
        obj = XdpObject(bpfobj.object_path(name), pin_dir=self.config.pin_dir, consts=consts)
        self._objs.append(obj)
        return obj

    def stop(self) -> None:
        """Stop accelerating: sockets withdrawn, so the XDP programs pass every packet they
        accepted to the kernel fallback. The programs stay attached with the maps they consult
        (endpoints, VTEPs), so the node keeps rejecting what it rejected while the agent is
        gone or restarting (docs/threat-model.md); a new agent replaces them, `--cleanup`
        removes them. With detachOnStop the programs are detached and GRO restored instead,
        leaving the bare kernel fallback. Either way the fallback and the pinned maps stay, so
        pods keep talking and a new agent can adopt."""
        if self._core is not None:
            self._core.close()  # XSKMAP entries go first: traffic falls back at once
            self._core = None
        if self.config.detach_on_stop:
            for ip in list(self._served):
                self._unserve(ip)
            if self._wire_attach is not None:
                self._wire_attach.detach()
        else:
            # state.json keeps each veth's GRO setting for --cleanup
            for served in self._served.values():
                served.attachment.release()
            self._served.clear()
            if self._wire_attach is not None:
                self._wire_attach.release()
        self._wire_attach = None
        if self._maps is not None:
            self._maps.close()
            self._maps = None
        if self._samples is not None:
            self._samples.close()
            self._samples = None
        if self._policy is not None:
            self._policy.close()
            self._policy = None
        self.policy_entries = None
        for obj in self._objs:
            obj.close()
        self._objs.clear()
        log.info("datapath.stopped", fallback=self.config.vxlan_device,
                 programs="detached" if self.config.detach_on_stop else "kept")

    # -- endpoints ------------------------------------------------------------------------

    def _free_slot(self) -> int:
        used = {s.slot for s in self._served.values()}
        for slot in range(MAX_ENDPOINTS):
            if slot not in used:
                return slot
        raise RinglaneError(f"node serves {MAX_ENDPOINTS} endpoints already")

    def add_endpoint(self, ep: Endpoint) -> None:
        """Serve a pod (idempotent for an unchanged endpoint)."""
        if self._core is None or self._maps is None or self._pod_obj is None:
            raise RinglaneError("data path not started")
        current = self._served.get(ep.ip)
        if current is not None and current.endpoint == dataclasses.replace(
                ep, mac=ep.mac or current.endpoint.mac):
            return
        if current is not None:
            self.remove_endpoint(ep.ip)
        host = links.link_by_name(ep.host_ifname)
        mac = ep.mac or neigh.resolve_mac(ep.ip, ifindex=host.index)
        slot = self._free_slot()
        gro_before = self._state.gro_before.get(host.name, ethtool.get_gro(host.name))
        self._state.gro_before[host.name] = gro_before
        self._state.save(self._state_path)
        ethtool.set_gro(host.name, True)
        mode = XdpMode.SKB if self.config.pod_xdp_mode == "skb" else XdpMode.NATIVE
        bpfobj.detach_by_name(host.index, mode, POD_PROG)
        attachment = self._pod_obj.attach(POD_PROG, host.index, mode)
        served = False
        try:
            self._core.add_endpoint(slot=slot, ifname=host.name, ip=ep.ip, pod_mac=mac,
                                    host_mac=host.mac)
            served = True
            if self._policy is not None:  # before the endpoint: its first packet counts
                self._policy.ensure_endpoint_stats(ep.ip)
            self._maps.set_local_ip(ep.ip, slot=slot, ifindex=host.index)
            self._maps.set_endpoint(ifindex=host.index, slot=slot, ip=ep.ip,
                                    mac=mac_bytes(mac))
        except Exception:
            # nothing half-added: undo in reverse order, then report the first failure
            self._maps.delete_endpoint(host.index)
            self._maps.delete_local_ip(ep.ip)
            if self._policy is not None:
                self._policy.delete_endpoint_stats(ep.ip)
            if served:
                self._core.remove_endpoint(slot)
            attachment.detach()
            ethtool.set_gro(host.name, gro_before)
            raise
        self._served[ep.ip] = _Served(dataclasses.replace(ep, mac=mac), slot, host.index,
                                      attachment, gro_before)
        log.info("endpoint.added", pod=ep.name, ip=str(ep.ip), veth=host.name, slot=slot,
                 xdp_mode=mode.name.lower(), dispatcher=attachment.multiprog)

    def remove_endpoint(self, ip: IPv4Address) -> bool:
        if ip not in self._served:
            return False
        self._unserve(ip)
        return True

    def _unserve(self, ip: IPv4Address) -> None:
        s = self._served.pop(ip)
        if self._maps is not None:
            self._maps.delete_endpoint(s.ifindex)  # from_pod stops redirecting first
            self._maps.delete_local_ip(ip)
        if self._policy is not None:
            self._policy.delete_endpoint_stats(ip)
        if self._core is not None:
            self._core.remove_endpoint(s.slot)
        try:
            s.attachment.detach()
            ethtool.set_gro(s.endpoint.host_ifname, s.gro_before)
        except (RinglaneError, OSError) as exc:
            # the pod (and its veth) may be gone already: nothing left to undo there
            log.info("endpoint.veth_gone", pod=s.endpoint.name, error=str(exc))
        self._state.gro_before.pop(s.endpoint.host_ifname, None)
        self._state.save(self._state_path)
        log.info("endpoint.removed", pod=s.endpoint.name, ip=str(ip), slot=s.slot)

    def endpoints(self) -> dict[IPv4Address, int]:
        # a copy first: API and metrics threads read while the reconciler changes it
        return {ip: s.slot for ip, s in dict(self._served).items()}

    def programmed_endpoints(self) -> dict[IPv4Address, Endpoint]:
        return {ip: s.endpoint for ip, s in dict(self._served).items()}

    def remotes(self) -> dict[str, RemoteNode]:
        return dict(self._remotes)

    # -- remote nodes ---------------------------------------------------------------------

    def set_remote(self, node: RemoteNode) -> None:
        """Reach `node`'s pods: accept its VXLAN first (rl_vteps), then the kernel fallback,
        then the ring core, then the XDP map."""
        if self._core is None or self._maps is None:
            raise RinglaneError("data path not started")
        old = self._remotes.get(node.name)
        if old == node:
            return
        self._adding = node
        try:
            self._maps.set_vtep(node.ip, self._vtep_flags(node.ip))
            if old is not None:
                self.remove_remote(node.name)
            remote_vtep = vxlan.vtep_mac(node.ip)
            vxlan.add_remote(self._vxlan_index, cidr=node.pod_cidr, node_ip=node.ip,
                             remote_vtep_mac=remote_vtep)
            next_hop = neigh.resolve_mac(node.ip, ifindex=self.underlay.index)
            self._core.set_remote(cidr=node.pod_cidr, node_ip=node.ip, next_hop_mac=next_hop,
                                  vtep_mac=remote_vtep)
            self._maps.set_remote_cidr(node.pod_cidr, node.ip)
            self._remotes[node.name] = node
        finally:
            self._adding = None
        log.info("remote.set", node=node.name, ip=str(node.ip), pod_cidr=str(node.pod_cidr),
                 next_hop=next_hop)

    def remove_remote(self, name: str) -> bool:
        node = self._remotes.pop(name, None)
        if node is None:
            return False
        if self._maps is not None:
            self._maps.delete_remote_cidr(node.pod_cidr)
        if self._core is not None:
            self._core.remove_remote(node.pod_cidr)
        vxlan.remove_remote(self._vxlan_index, cidr=node.pod_cidr, node_ip=node.ip,
                            remote_vtep_mac=vxlan.vtep_mac(node.ip))
        if self._maps is not None:  # last: its VXLAN is refused from now on
            self._maps.set_vtep(node.ip, self._vtep_flags(node.ip))
        log.info("remote.removed", node=name)
        return True

    # -- VTEPs: who may send this node VXLAN ----------------------------------------------

    def _vtep_flags(self, ip: IPv4Address) -> VtepFlag:
        """What `ip` is to this node now: a node's (or the one being added), an extra VTEP,
        one of ours."""
        flags = VtepFlag(0)
        nodes = [*self._remotes.values(), *([self._adding] if self._adding else [])]
        if any(n.ip == ip for n in nodes):
            flags |= VtepFlag.NODE
        if ip in self.extra_vteps:
            flags |= VtepFlag.EXTRA
        if ip in self.self_addrs:
            flags |= VtepFlag.SELF
        return flags

    def _program_vteps(self) -> None:
        """At start: this node's addresses and extraVteps as configured now. NODE entries a
        previous agent left stay, so that VXLAN from the other nodes is not refused between
        this start and the first reconcile pass; prune_stale_vteps() then drops the ones that
        are no longer nodes."""
        assert self._maps is not None
        have = self._maps.vteps()
        for ip in have.keys() | self.extra_vteps | self.self_addrs:
            want = (have.get(ip, VtepFlag(0)) & VtepFlag.NODE) | self._vtep_flags(ip)
            if want != have.get(ip):
                self._maps.set_vtep(ip, want)
        log.info("vteps.programmed", own=sorted(map(str, self.self_addrs)),
                 extra=sorted(map(str, self.extra_vteps)))

    def prune_stale_vteps(self) -> list[IPv4Address]:
        """Make rl_vteps exactly what the node list and the configuration say: called after a
        reconcile pass in which every remote node was programmed. Returns what changed."""
        if self._maps is None:
            return []
        changed = []
        for ip, flags in self._maps.vteps().items():
            want = self._vtep_flags(ip)
            if want != flags:
                self._maps.set_vtep(ip, want)
                changed.append(ip)
        if changed:
            log.info("vteps.pruned", addresses=sorted(map(str, changed)))
        return changed

    # -- telemetry ------------------------------------------------------------------------

    def stats(self) -> CoreStats | None:
        return self._core.stats() if self._core is not None else None

    def xdp_stats(self) -> dict[str, int]:
        return self._maps.xdp_stats() if self._maps is not None else {}

    def core_counters(self) -> dict[str, int]:
        """The ring core's counters as one flat map (API and CLI): worker counters, drops by
        reason, probe counters, frames by holder, and each socket's XDP_STATISTICS and ring
        occupancy."""
        st = self.stats()
        if st is None:
            return {}
        out = {**st.worker.values, **{f"drop_{k}": v for k, v in st.worker.drops.items()},
               **st.probe,
               **{f"underlay_{k}": v for k, v in st.underlay.kernel.items()},
               **{f"underlay_{r}_ring_entries": v for r, v in st.underlay.rings.items()},
               "frames_total": st.frames_total, "frames_free": st.frames_free,
               "frames_worker": st.frames_worker, "frames_sockets": st.frames_sockets,
               "endpoints": st.n_endpoints}
        for slot, ep in st.endpoints.items():
            out.update({f"endpoint{slot}_{k}": v for k, v in ep.kernel.items()})
            out.update({f"endpoint{slot}_{r}_ring_entries": v for r, v in ep.rings.items()})
        return {k: int(v) for k, v in out.items()}

    # -- policy and telemetry ----------------------------------------------------------------

    def set_policy(self, entries: tuple[PolicyEntry, ...]) -> None:
        """Swap in the compiled policy (one map update; empty: none, everything allowed)."""
        if self._policy is None:
            raise RinglaneError("data path not started")
        if entries:
            self._policy.swap_policy(entries)
        else:
            self._policy.clear_policy()
        self.policy_entries = entries
        log.info("policy.installed", entries=len(entries))

    def endpoint_stats(self) -> dict[IPv4Address, dict[str, int]]:
        return self._policy.endpoint_stats() if self._policy is not None else {}

    def flow_source(self) -> _SampleSource | None:
        """Where the flow hub reads samples (None while stopped)."""
        return self._samples

    def link_stats(self) -> list[LinkStat]:
        """The overlay link to every remote node, from the ring core's probes (none while the
        data path is stopped)."""
        return self._core.link_stats() if self._core is not None else []


def _ensure_conntrack() -> None:
    """The programs' conntrack kfuncs (replies of Service backends to isolated pods, see
    bpf/lib/policy.h) resolve when the programs load, or never: load nf_conntrack first if it
    is a module nobody loaded yet (kube-proxy does, but may start after us). Best effort."""
    if Path("/sys/module/nf_conntrack").exists():
        return
    if shutil.which("modprobe"):
        subprocess.run(["modprobe", "nf_conntrack"], capture_output=True, check=False)
    if not Path("/sys/module/nf_conntrack").exists():
        log.warning("policy.no_conntrack",
                    hint="nf_conntrack is not loaded: replies of Service backends to pods "
                         "whose ingress is isolated are dropped; load it (modprobe "
                         "nf_conntrack) and restart the agent")


_VERDICTS = {lib.RL_VERDICT_ALLOW: "allow", lib.RL_VERDICT_DENY: "deny",
             lib.RL_VERDICT_REPLY: "reply"}
_POINTS = {lib.RL_POINT_FROM_POD: "from_pod", lib.RL_POINT_FROM_WIRE: "from_wire"}


class _SampleSource:
    """The programs' flow samples as the API's records (agent.flows.SampleSource)."""

    def __init__(self, reader: FlowSampleReader, node: str) -> None:
        self._reader = reader
        self._node = node

    def read(self, timeout_s: float, max_records: int) -> list[FlowRecord]:
        return [FlowRecord(node=self._node, ts_ns=s.ts_ns, src=s.src, dst=s.dst, sport=s.sport,
                           dport=s.dport, protocol=s.proto,
                           verdict=_VERDICTS.get(s.verdict, str(s.verdict)),
                           direction=s.direction, point=_POINTS.get(s.point, str(s.point)),
                           length=s.length)
                for s in self._reader.read(timeout_s, max_records)]

    def close(self) -> None:
        self._reader.close()


def cleanup_node(config: AgentConfig) -> list[str]:
    """Remove everything Ringlane put on this node (programs, fallback device, pins, state).

    Only our own objects: programs are found by name on every interface, the device and the pin
    directory by the configured names. Returns what was removed, for the log.
    """
    removed: list[str] = []
    state = _NodeState.load(config.run_dir / "state.json")
    with links.rtnl() as ipr:
        all_links = [(int(m["index"]), str(m.get_attr("IFLA_IFNAME"))) for m in ipr.get_links()]
    for index, name in all_links:
        for mode in (XdpMode.SKB, XdpMode.NATIVE):
            for prog in (POD_PROG, WIRE_PROG):
                if bpfobj.detach_by_name(index, mode, prog):
                    removed.append(f"xdp {prog} on {name}")
        if name in state.gro_before:
            with contextlib.suppress(OSError):
                ethtool.set_gro(name, state.gro_before[name])
    if vxlan.remove_device(config.vxlan_device):
        removed.append(f"link {config.vxlan_device}")
    if config.pin_dir.exists():
        for pin in config.pin_dir.iterdir():
            pin.unlink()
        config.pin_dir.rmdir()
        removed.append(f"pins {config.pin_dir}")
    state_file = config.run_dir / "state.json"
    if state_file.exists():
        state_file.unlink()
    if bpfobj.remove_libxdp_dir():
        removed.append(f"empty {bpfobj.LIBXDP_DIR} (libxdp's)")
    # the API's policies (the agent's own file; stateDir itself may hold the CNI's queue)
    policies = config.state_dir / "policies.pb"
    if policies.exists():
        policies.unlink()
        removed.append(f"policies {policies}")
    return removed
