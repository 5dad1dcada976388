"""The contracts written once in abi.h, checked where they are read elsewhere.

Python's enums come from the compiled module; these tests make sure the pieces that cannot
(the per-reason counter array, the BPF objects' BTF) still agree with abi.h.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from agent.xdp import bpfobj, ringcore
from agent.xdp.bpfobj import ffi as bpf_ffi
from agent.xdp.ringcore import ffi, lib

pytestmark = pytest.mark.unit


def test_drop_reason_enum_mirrors_c() -> None:
    assert [r.value for r in sorted(ringcore.DropReason)] == list(range(lib.RL_DROP_MAX))
    assert len(ffi.new("struct rl_counters *").drops) == lib.RL_DROP_MAX


def test_both_modules_agree_on_shared_structs() -> None:
    for struct in ("struct rl_endpoint_info", "struct rl_local_ip_info", "struct rl_lpm4_key",
                   "struct rl_remote_info", "struct rl_flow_key", "struct rl_flow_info",
                   "struct rl_vtep_info", "struct rl_meta", "struct rl_policy_key",
                   "struct rl_port_range", "struct rl_policy_value", "struct rl_ct_key",
                   "struct rl_ct_value", "struct rl_ep_counters", "struct rl_flow_sample"):
        assert ffi.sizeof(struct) == bpf_ffi.sizeof(struct), struct


def test_policy_layouts_are_what_the_programs_read() -> None:
    """The offsets bpf/lib/policy.h and the LPM trie rely on: prefixlen first, then the 64 fixed
    bits (endpoint, dir, pad), then the peer; ranges packed at 6 bytes after a 4-byte header."""
    assert [bpf_ffi.offsetof("struct rl_policy_key", f)
            for f in ("prefixlen", "endpoint", "dir", "pad", "peer")] == [0, 4, 8, 9, 12]
    fixed = bpf_ffi.offsetof("struct rl_policy_key", "peer") - bpf_ffi.offsetof(
        "struct rl_policy_key", "endpoint")
    assert fixed * 8 == lib.RL_POLICY_KEY_FIXED_BITS
    assert [bpf_ffi.offsetof("struct rl_port_range", f) for f in ("proto", "lo", "hi")] == [0, 2, 4]
    assert bpf_ffi.offsetof("struct rl_policy_value", "ranges") == 4
    assert len(bpf_ffi.new("struct rl_policy_value *").ranges) == lib.RL_POLICY_RANGES
    assert len(bpf_ffi.new("struct rl_ep_counters *").c) == lib.RL_EPC_MAX


def _btf_struct_sizes(obj: str) -> dict[str, int]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool not installed (Debian package bpftool)")
    out = subprocess.run(["bpftool", "-j", "btf", "dump", "file", obj], capture_output=True,
                         text=True, check=True).stdout
    return {t["name"]: t["size"] for t in json.loads(out)["types"]
            if t.get("kind") == "STRUCT" and t.get("name", "").startswith("rl_")}


@pytest.mark.parametrize("name", ["from_pod", "from_wire"])
def test_bpf_objects_btf_matches_cffi(name: str) -> None:
    """cffi compiled abi.h with gcc, the BPF objects with clang -target bpf: same layouts."""
    sizes = _btf_struct_sizes(str(bpfobj.object_path(name)))
    assert sizes, "no rl_* structs in the object's BTF"
    for struct, size in sizes.items():
        assert ffi.sizeof(f"struct {struct}") == size, struct
