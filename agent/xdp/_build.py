"""cffi (API mode) builds: agent.xdp._ringcore (the ring core) and agent.xdp._bpfobj (the
libbpf/libxdp loader for the XDP programs). Two modules so that loading BPF objects never needs
the ring core, and the other way round.

The cdef is read from the C headers themselves (abi.h and the `cffi:begin`/`cffi:end` section of
each API header), so the C compiler checks every declaration Python relies on and no signature
is written twice.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cffi import FFI

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _toolchain  # type: ignore[import-not-found]  # a sibling, not a package

sys.path.pop(0)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SRC = HERE / "src"
BPF_INCLUDE = ROOT / "bpf" / "include"

# module name -> (headers whose cffi section Python sees, in dependency order; C sources)
MODULES = {
    "_ringcore": (["ringcore.h", "ring.h", "frame_pool.h"],
                  ["ringcore.c", "worker.c", "fwd.c", "frame_pool.c", "pkt.c", "probe.c"]),
    "_bpfobj": (["bpfobj.h"], ["bpfobj.c"]),
}

# the kernel's types as <linux/types.h> defines them on 64-bit Linux (__u64 is long long)
_TYPEDEFS = """
typedef uint8_t __u8; typedef uint16_t __u16; typedef uint32_t __u32;
typedef unsigned long long __u64; typedef int32_t __s32; typedef long long __s64;
typedef uint16_t __be16; typedef uint32_t __be32;
"""
_DEFINE = re.compile(r"^#define\s+(RL_\w+)\s+(\(?-?(?:0x[0-9a-fA-F]+|\d+)\)?)\s*(/\*.*)?$")


def _cdef_from_abi(text: str) -> str:
    """abi.h without preprocessor lines (but integer #defines) and static asserts."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            m = _DEFINE.match(line)
            if m:
                out.append(f"#define {m.group(1)} {m.group(2).strip('()')}")
            continue
        if line.startswith("_Static_assert"):
            continue
        out.append(line)
    return "\n".join(out)


def _cdef_section(text: str, name: str) -> str:
    m = re.search(r"/\* cffi:begin \*/(.*?)/\* cffi:end \*/", text, re.S)
    if m is None:
        raise RuntimeError(f"{name}: no /* cffi:begin */ ... /* cffi:end */ section")
    return m.group(1).replace("RL_INLINE ", "")


SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined",
            "-fno-omit-frame-pointer"]


def make_ffibuilder(module: str, *, sanitize: bool = False) -> FFI:
    """The builder of `module`; with `sanitize`, an ASan/UBSan build named `<module>_asan`
    that the test suite loads into agents started with libasan preloaded."""
    headers, sources = MODULES[module]
    ffi = FFI()
    parts = [_TYPEDEFS, _cdef_from_abi((BPF_INCLUDE / "ringlane" / "abi.h").read_text())]
    parts += [_cdef_section((SRC / h).read_text(), h) for h in headers]
    ffi.cdef("\n".join(parts))
    includes = "".join(f'#include "{h}"\n' for h in headers)
    ffi.set_source(
        f"agent.xdp.{module}_asan" if sanitize else f"agent.xdp.{module}",
        '#include "ringlane/abi.h"\n' + includes,
        sources=[str((SRC / c).relative_to(ROOT)) for c in sources],
        include_dirs=[str(SRC), str(BPF_INCLUDE)],
        libraries=["xdp", "bpf", "pthread"],
        extra_compile_args=["-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                            "-Wno-unused-parameter", "-fno-strict-aliasing",
                            *(SANITIZE if sanitize else [])],
        extra_link_args=SANITIZE if sanitize else [],
    )
    return ffi


def ringcore_ffi() -> FFI:
    """setup.py's cffi_modules entry for agent.xdp._ringcore."""
    _toolchain.check_toolchain()
    return make_ffibuilder("_ringcore")


def bpfobj_ffi() -> FFI:
    """setup.py's cffi_modules entry for agent.xdp._bpfobj."""
    _toolchain.check_toolchain()
    return make_ffibuilder("_bpfobj")


if __name__ == "__main__":
    # Developer shortcut: rebuild in place what `pip install -e .` builds, or only the modules
    # named on the command line (`python agent/xdp/_build.py _bpfobj bpf`; a name ending in
    # _asan builds the sanitizer variant).
    wanted = sys.argv[1:] or [*MODULES, "bpf"]
    _toolchain.check_toolchain()
    for name in wanted:
        if name == "bpf":
            _toolchain.build_bpf_objects(ROOT / "bpf", HERE / "bpf")
        else:
            base = name.removesuffix("_asan")
            make_ffibuilder(base, sanitize=base != name).compile(tmpdir=str(ROOT))
