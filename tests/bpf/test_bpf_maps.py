"""The Python side of the pinned maps (agent.xdp.maps) and of loading (agent.xdp.bpfobj)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from agent.policy.model import Direction
from agent.xdp import bpfobj
from agent.xdp.bpfobj import BpfError, XdpObject, ensure_bpffs, ffi, lib, object_path
from agent.xdp.maps import Endpoint, Flow, LocalIp, PinnedMaps, retire_stale_pins
from agent.xdp.policy_maps import PolicyEntry, PolicyMaps

from ..native.packets import ip4, udp_frame
from .xdp_harness import XDP_DROP, XDP_PASS, XDP_REDIRECT, Datapath, XskSocket, needs_root

# uapi linux/bpf.h enum bpf_map_type and map flags
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_RINGBUF = 27
BPF_F_NO_PREALLOC = 1

pytestmark = [pytest.mark.bpf, needs_root]

MAC = bytes.fromhex("0a0000000001")


def test_maps_are_pinned_by_name(datapath: Datapath, pin_dir: Path) -> None:
    assert sorted(p.name for p in pin_dir.iterdir()) == sorted(
        [
            "rl_xsks",
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
        ]
    )


def _fdinfo(fd: int) -> dict[str, str]:
    """The kernel's own description of a BPF map fd (/proc/self/fdinfo), independent of libbpf."""
    out: dict[str, str] = {}
    for line in Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def test_flows_map_is_an_lru_of_flow_keys(datapath: Datapath) -> None:
    """LRU, so that finished flows age out without the agent; sizes as abi.h lays them out."""
    info = _fdinfo(datapath.pod.map_fd("rl_flows"))
    assert (info["map_type"], info["key_size"], info["value_size"], info["max_entries"]) == (
        str(BPF_MAP_TYPE_LRU_HASH),
        str(ffi.sizeof("struct rl_flow_key")),
        str(ffi.sizeof("struct rl_flow_info")),
        str(lib.RL_MAX_FLOWS),
    )
    assert (ffi.sizeof("struct rl_flow_key"), ffi.sizeof("struct rl_flow_info")) == (12, 8)
    # both objects share one map: the one from_wire writes is the one from_pod reads
    wire_info = _fdinfo(datapath.wire.map_fd("rl_flows"))
    assert wire_info["map_id"] == info["map_id"]


def _shape(fd: int) -> tuple[int, int, int, int, int]:
    info = _fdinfo(fd)
    return (int(info["map_type"]), int(info["key_size"]), int(info["value_size"]),
            int(info["max_entries"]), int(info["map_flags"], 16))


def test_policy_and_telemetry_maps_have_abi_shapes(datapath: Datapath) -> None:
    """The kernel's view of the ABI 4 maps, and both objects share each of them."""
    pod, wire = datapath.pod, datapath.wire
    assert _shape(pod.map_fd("rl_policy")) == (BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 1, 0)
    assert _shape(pod.map_fd("rl_policy_ct")) == (
        BPF_MAP_TYPE_LRU_HASH, ffi.sizeof("struct rl_ct_key"), ffi.sizeof("struct rl_ct_value"),
        lib.RL_MAX_POLICY_CT, 0,
    )  # fmt: skip
    assert _shape(pod.map_fd("rl_ep_stats")) == (
        BPF_MAP_TYPE_PERCPU_HASH, 4, ffi.sizeof("struct rl_ep_counters"), lib.RL_MAX_ENDPOINTS, 0,
    )  # fmt: skip
    assert _shape(pod.map_fd("rl_flow_samples")) == (
        BPF_MAP_TYPE_RINGBUF, 0, 0, lib.RL_FLOW_SAMPLES_BYTES, 0,
    )  # fmt: skip
    for name in ("rl_policy", "rl_policy_ct", "rl_ep_stats", "rl_flow_samples"):
        assert _fdinfo(pod.map_fd(name))["map_id"] == _fdinfo(wire.map_fd(name))["map_id"], name


def test_policy_trie_has_the_inner_template_shape(datapath: Datapath) -> None:
    """rl_policy__new_trie() makes what rl_policy accepts (the kernel compares the shapes)."""
    fd = lib.rl_policy__new_trie()
    assert fd >= 0
    try:
        assert _shape(fd) == (
            BPF_MAP_TYPE_LPM_TRIE, ffi.sizeof("struct rl_policy_key"),
            ffi.sizeof("struct rl_policy_value"), lib.RL_MAX_POLICY_ENTRIES, BPF_F_NO_PREALLOC,
        )  # fmt: skip
        key, val = ffi.new("__u32 *", 0), ffi.new("__u32 *", fd)
        assert lib.bpf_map_update_elem(datapath.pod.map_fd("rl_policy"), key, val, 0) == 0
    finally:
        os.close(fd)


def test_reload_reuses_the_pinned_map_in_map(datapath: Datapath, pin_dir: Path,
                                             xsk: XskSocket) -> None:
    """An agent restart loads the objects again: libbpf reuses the pinned ARRAY_OF_MAPS (and
    skips its inner template), the installed policy stays in force for the new programs, and
    the agent can still swap in tries of the template's shape."""
    policy_id = _fdinfo(datapath.pod.map_fd("rl_policy"))["map_id"]
    datapath.maps.set_remote_cidr(IPv4Network("10.244.2.0/24"), IPv4Address("192.168.0.2"))
    datapath.maps.set_endpoint(
        ifindex=datapath.ifindex, slot=1, ip=IPv4Address("10.244.1.2"), mac=MAC
    )
    datapath.put_xsk(1, xsk)
    deny = [PolicyEntry(IPv4Address("10.244.1.2"), Direction.EGRESS, IPv4Network("0.0.0.0/0"))]
    datapath.policy.swap_policy(deny)
    frame = udp_frame(saddr=ip4("10.244.1.2"), daddr=ip4("10.244.2.3"), src_mac=MAC)
    with (
        XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts={}) as again,
        XdpObject(object_path("from_wire"), pin_dir=pin_dir, consts={}) as wire_again,
        PolicyMaps(pin_dir) as policy,
    ):
        assert _fdinfo(again.map_fd("rl_policy"))["map_id"] == policy_id
        assert _fdinfo(wire_again.map_fd("rl_policy"))["map_id"] == policy_id
        with datapath.netns.entered():
            fd = again.prog_fd("rl_from_pod")
            action, _ = bpfobj.test_run(fd, frame, ingress_ifindex=datapath.ifindex)
            assert action == XDP_DROP
            policy.swap_policy([])
            action, _ = bpfobj.test_run(fd, frame, ingress_ifindex=datapath.ifindex)
            assert action == XDP_REDIRECT
    stats = datapath.maps.xdp_stats()
    assert (stats["pod_drop_policy_egress"], stats["pod_redirect"]) == (1, 1)


def test_flows_reads_what_the_map_holds(datapath: Datapath) -> None:
    """flows() turns the network-order key back into addresses and host-order ports. The
    harness writes the key from wire bytes, not through agent.xdp.maps."""
    m = datapath.maps
    assert m.flows() == set()
    a = Flow(IPv4Address("10.244.1.2"), IPv4Address("10.244.2.3"), 40000, 5201)
    b = Flow(IPv4Address("10.244.1.7"), IPv4Address("10.245.0.1"), 1, 65535)
    datapath.put_flow(a)
    datapath.put_flow(b)
    assert m.flows() == {a, b}
    assert (IPv4Address("10.244.1.2"), IPv4Address("10.244.2.3"), 40000, 5201) in m.flows()
    assert datapath.flow_info(a) == (lib.RL_FLOW_KERNEL, 0)


def test_endpoints_roundtrip_and_idempotent_delete(datapath: Datapath) -> None:
    m = datapath.maps
    m.set_endpoint(ifindex=7, slot=3, ip=IPv4Address("10.244.1.2"), mac=MAC)
    m.set_endpoint(ifindex=8, slot=4, ip=IPv4Address("10.244.1.3"), mac=MAC)
    m.set_endpoint(ifindex=8, slot=9, ip=IPv4Address("10.244.1.4"), mac=MAC)  # replaces
    assert m.endpoints() == {
        7: Endpoint(slot=3, ip=IPv4Address("10.244.1.2"), mac=MAC),
        8: Endpoint(slot=9, ip=IPv4Address("10.244.1.4"), mac=MAC),
    }
    m.delete_endpoint(7)
    m.delete_endpoint(7)
    assert list(m.endpoints()) == [8]


def test_endpoint_ip_is_stored_in_network_order(datapath: Datapath) -> None:
    """abi.h says __be32: the bytes in the map are the address bytes, as from_pod reads them."""
    datapath.maps.set_endpoint(ifindex=7, slot=3, ip=IPv4Address("10.244.1.2"), mac=MAC)
    key = ffi.new("__u32 *", 7)
    val = ffi.new("struct rl_endpoint_info *")
    assert lib.bpf_map_lookup_elem(datapath.pod.map_fd("rl_endpoints"), key, val) == 0
    assert bytes(ffi.buffer(ffi.addressof(val, "ip"), 4)) == ip4("10.244.1.2")


@pytest.mark.parametrize("slot", [-1, lib.RL_MAX_ENDPOINTS, lib.RL_UNDERLAY_SLOT_BASE])
def test_endpoint_slot_must_be_a_pod_slot(datapath: Datapath, slot: int) -> None:
    with pytest.raises(ValueError, match="slot"):
        datapath.maps.set_endpoint(ifindex=7, slot=slot, ip=IPv4Address("10.0.0.1"), mac=MAC)


def test_endpoint_mac_must_be_six_bytes(datapath: Datapath) -> None:
    with pytest.raises(ValueError, match="MAC"):
        datapath.maps.set_endpoint(ifindex=7, slot=1, ip=IPv4Address("10.0.0.1"), mac=b"\x00")


def test_local_ips_roundtrip(datapath: Datapath) -> None:
    m = datapath.maps
    m.set_local_ip(IPv4Address("10.244.1.2"), slot=3, ifindex=7)
    m.set_local_ip(IPv4Address("10.244.1.3"), slot=4, ifindex=8)
    assert m.local_ips() == {
        IPv4Address("10.244.1.2"): LocalIp(slot=3, ifindex=7),
        IPv4Address("10.244.1.3"): LocalIp(slot=4, ifindex=8),
    }
    m.delete_local_ip(IPv4Address("10.244.1.2"))
    m.delete_local_ip(IPv4Address("10.244.1.2"))
    assert list(m.local_ips()) == [IPv4Address("10.244.1.3")]


def test_remote_cidrs_roundtrip(datapath: Datapath) -> None:
    m = datapath.maps
    want = {
        IPv4Network("10.244.2.0/24"): IPv4Address("192.168.0.2"),
        IPv4Network("10.244.0.0/16"): IPv4Address("192.168.0.3"),
        IPv4Network("0.0.0.0/0"): IPv4Address("192.168.0.4"),
        IPv4Network("10.244.3.7/32"): IPv4Address("192.168.0.5"),
    }
    for cidr, node in want.items():
        m.set_remote_cidr(cidr, node)
    assert m.remote_cidrs() == want
    m.delete_remote_cidr(IPv4Network("10.244.0.0/16"))
    m.delete_remote_cidr(IPv4Network("10.244.0.0/16"))
    del want[IPv4Network("10.244.0.0/16")]
    assert m.remote_cidrs() == want


def test_xdp_stats_names_come_from_the_enum(datapath: Datapath) -> None:
    stats = datapath.maps.xdp_stats()
    retired = [n for n in dir(lib) if n.startswith("RL_XS_") and n.endswith("_RETIRED")]
    assert retired == ["RL_XS_WIRE_PASS_OTHER_VNI_RETIRED"]
    assert len(stats) == lib.RL_XS_MAX - len(retired)
    assert "wire_pass_other_vni_retired" not in stats
    assert stats["pod_redirect"] == 0
    assert stats["wire_pass_malformed"] == 0
    # the counters of TCP steering and of outer fragments
    assert {
        "pod_pass_tcp_kernel",
        "pod_flow_to_kernel",
        "wire_pass_kernel_sent",
        "wire_pass_fragment",
    } <= set(stats)
    # and of overlay hardening: every rejection by reason
    assert {
        "pod_drop_spoof_mac",
        "pod_drop_spoof_ip",
        "pod_drop_vxlan_to_node",
        "pod_drop_vxlan_to_vtep",
        "pod_drop_icmp_underlay",
        "wire_drop_unknown_vtep",
        "wire_drop_not_to_node",
        "wire_drop_bad_vni",
        "wire_drop_fragment",
        "wire_drop_nested_vxlan",
        "wire_rsvd_cleared",
    } <= set(stats)
    # and of policy, flow samples and link probes (ABI 4)
    assert {
        "pod_drop_policy_egress",
        "pod_drop_policy_ingress",
        "wire_drop_policy_ingress",
        "policy_reply",
        "flow_samples_lost",
        "wire_probe",
        "kernel_ct_error",
    } <= set(stats)
    assert set(stats.values()) == {0}


def test_check_abi_stamps_fresh_maps_and_accepts_them_again(datapath: Datapath) -> None:
    # The datapath fixture already ran check_abi() on the fresh maps.
    key = ffi.new("__u32 *", 0)
    meta = ffi.new("struct rl_meta *")
    assert lib.bpf_map_lookup_elem(datapath.pod.map_fd("rl_meta"), key, meta) == 0
    assert meta.abi_version == lib.RL_ABI_VERSION
    datapath.maps.check_abi()


def test_check_abi_refuses_other_version(datapath: Datapath) -> None:
    key = ffi.new("__u32 *", 0)
    meta = ffi.new("struct rl_meta *", {"abi_version": lib.RL_ABI_VERSION + 1})
    assert lib.bpf_map_update_elem(datapath.pod.map_fd("rl_meta"), key, meta, 0) == 0
    with pytest.raises(BpfError, match="cleanup") as info:
        datapath.maps.check_abi()
    assert info.value.errno == errno.EPROTO


def test_reload_reuses_pinned_maps(datapath: Datapath, pin_dir: Path, xsk: XskSocket) -> None:
    """An agent restart loads the objects again: they must find the maps (and entries) the
    first load pinned, or every restart would drop all state."""
    datapath.maps.set_remote_cidr(IPv4Network("10.244.2.0/24"), IPv4Address("192.168.0.2"))
    datapath.maps.set_endpoint(
        ifindex=datapath.ifindex, slot=1, ip=IPv4Address("10.244.1.2"), mac=MAC
    )
    datapath.put_xsk(1, xsk)
    frame = udp_frame(saddr=ip4("10.244.1.2"), daddr=ip4("10.244.2.3"), src_mac=MAC)
    with (
        XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts={}) as again,
        datapath.netns.entered(),
    ):
        action, _ = bpfobj.test_run(
            again.prog_fd("rl_from_pod"), frame, ingress_ifindex=datapath.ifindex
        )
    assert action == XDP_REDIRECT
    assert datapath.maps.xdp_stats()["pod_redirect"] == 1


def test_pinned_maps_missing(tmp_path: Path) -> None:
    with pytest.raises(BpfError, match="load the XDP objects first") as info:
        PinnedMaps(tmp_path)
    assert info.value.errno == errno.ENOENT


def test_unknown_const_is_refused(pin_dir: Path) -> None:
    with pytest.raises(BpfError, match="rl_cfg_nope") as info:
        XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts={"rl_cfg_nope": 1})
    assert info.value.errno == errno.ENOENT


def test_const_must_be_u32(pin_dir: Path) -> None:
    with pytest.raises(ValueError, match="__u32"):
        XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts={"rl_cfg_overlay_mtu": -1})


def test_overlay_mtu_const_reaches_the_program(datapath: Datapath, pin_dir: Path) -> None:
    """Loaded with a 9000-byte overlay MTU, a 1451-byte UDP packet is no longer oversize."""
    datapath.maps.set_remote_cidr(IPv4Network("10.244.2.0/24"), IPv4Address("192.168.0.2"))
    datapath.maps.set_endpoint(
        ifindex=datapath.ifindex, slot=1, ip=IPv4Address("10.244.1.2"), mac=MAC
    )
    frame = udp_frame(b"x" * 1423, saddr=ip4("10.244.1.2"), daddr=ip4("10.244.2.3"),
                      src_mac=MAC)
    with (
        XdpObject(
            object_path("from_pod"), pin_dir=pin_dir, consts={"rl_cfg_overlay_mtu": 9000}
        ) as big,
        datapath.netns.entered(),
    ):
        action, _ = bpfobj.test_run(
            big.prog_fd("rl_from_pod"), frame, ingress_ifindex=datapath.ifindex
        )
    assert action == XDP_PASS
    assert datapath.maps.xdp_stats()["pod_fallback"] == 1


def test_object_path_missing() -> None:
    with pytest.raises(BpfError, match=r"pip install -e \."):
        object_path("no_such_program")


def test_ensure_bpffs_is_idempotent(pin_dir: Path) -> None:
    sub = pin_dir / "a" / "b"
    ensure_bpffs(sub)
    ensure_bpffs(sub)
    assert sub.is_dir()


_MOUNT_PROBE = """
import sys
from pathlib import Path
from agent.xdp.bpfobj import _mount_fstype, ensure_bpffs
elsewhere = Path(sys.argv[1]) / "pins" / "ringlane"
ensure_bpffs(elsewhere)
print(_mount_fstype(elsewhere), _mount_fstype(elsewhere.parent))
# /sys/fs/bpf without bpffs, as on a host that never mounted it (private to this namespace).
if _mount_fstype(Path("/sys/fs/bpf")) == "bpf":
    import subprocess
    subprocess.run(["umount", "/sys/fs/bpf"], check=True)
print(_mount_fstype(Path("/sys/fs/bpf")))
under = Path("/sys/fs/bpf/rl-mount-probe/a")
ensure_bpffs(under)
print(_mount_fstype(under), under.is_dir())
"""


def test_ensure_bpffs_mounts_when_missing(tmp_path: Path) -> None:
    """Run in a private mount namespace (unshare -m), so the host's mounts are never touched."""
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        ["unshare", "--mount", "--propagation", "private",
         sys.executable, "-c", _MOUNT_PROBE, str(tmp_path)],
        capture_output=True, text=True, cwd=root, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    # Elsewhere: bpffs on the path itself, not above it. Under /sys/fs/bpf: on /sys/fs/bpf.
    elsewhere, parent = res.stdout.split("\n")[0].split()
    assert (elsewhere, parent != "bpf") == ("bpf", True), res.stdout
    assert res.stdout.split("\n")[1:3] == ["sysfs", "bpf True"], res.stdout


def test_pins_of_another_abi_are_retired_before_loading(pin_dir: Path) -> None:
    """An upgraded agent finds maps its libbpf cannot reuse: they are unpinned, the new
    objects then load and stamp the fresh maps with the current version."""
    with XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts={}), PinnedMaps(pin_dir) as m:
        m.check_abi()
        key, meta = ffi.new("__u32 *", 0), ffi.new("struct rl_meta *")
        meta.abi_version = lib.RL_ABI_VERSION + 7
        assert lib.bpf_map_update_elem(m._fds["rl_meta"], key, meta, 0) == 0
    assert retire_stale_pins(pin_dir) == lib.RL_ABI_VERSION + 7
    assert not list(pin_dir.glob("rl_*"))
    with XdpObject(object_path("from_pod"), pin_dir=pin_dir, consts={}), PinnedMaps(pin_dir) as m:
        m.check_abi()
    assert retire_stale_pins(pin_dir) is None  # our own pins stay
