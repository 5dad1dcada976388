"""Build hooks that pyproject.toml cannot express: the cffi ring core and the BPF objects.

`pip install .` (or `-e .`) compiles the ring core through cffi (agent/xdp/_build.py) and every
bpf/*.bpf.c with clang into agent/xdp/bpf/, shipped as package data. A missing tool or header
stops the build with the Debian packages to install, instead of a compiler backtrace.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "agent" / "xdp"))
import _toolchain  # noqa: E402  (sibling of _build.py; no package import at build time)

sys.path.pop(0)


class BuildWithBpf(build_ext):
    """build_ext that first compiles the XDP programs next to the cffi module."""

    def run(self) -> None:
        _toolchain.check_toolchain()
        out_dir = (ROOT if self.inplace else Path(self.build_lib)) / "agent" / "xdp" / "bpf"
        _toolchain.build_bpf_objects(ROOT / "bpf", out_dir)
        super().run()


setup(
    cffi_modules=["agent/xdp/_build.py:ringcore_ffi", "agent/xdp/_build.py:bpfobj_ffi"],
    cmdclass={"build_ext": BuildWithBpf},
)
