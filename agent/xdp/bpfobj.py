"""Load, attach and test-run Ringlane's XDP programs (bpf/*.bpf.c).

A typed facade over the cffi module agent.xdp._bpfobj (agent/xdp/src/bpfobj.c, libbpf and libxdp
underneath). The C layer reports failures as -errno; here they become BpfError, an OSError that
keeps the errno and says what failed and what the operator can do about it, because the agent
runs unattended and its log line is often the only diagnosis anyone gets.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

# The compiled cffi module has no stubs; ffi and lib are re-exported (see __all__) so that the
# rest of the package and the tests import them from here, typed as Any in one place.
from agent.xdp._bpfobj import ffi, lib

__all__ = [
    "BpfError",
    "XdpAttachment",
    "XdpMode",
    "XdpObject",
    "detach_by_name",
    "ensure_bpffs",
    "ffi",
    "lib",
    "object_path",
    "test_run",
]

BPFFS_ROOT = Path("/sys/fs/bpf")
_BPFFS_TYPE = "bpf"  # fs type of bpffs in /proc/self/mountinfo

# Headroom for programs that grow the packet (none of ours do today); test runs then never fail
# with ENOSPC just because the output buffer is exactly the input size.
_TEST_RUN_SLACK = 512


class BpfError(OSError):
    """A BPF operation failed. `errno` is the kernel's or libbpf's error number."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)


def _fail(rc: int, what: str, hint: str = "") -> BpfError:
    """BpfError for a -errno return: '<what>: <strerror>[; <hint>]'."""
    err = -rc if rc < 0 else rc
    msg = f"{what}: {os.strerror(err)}"
    if hint:
        msg += f"; {hint}"
    return BpfError(err, msg)


class XdpMode(enum.IntEnum):
    """Where an XDP program runs. Values come from the C side (libxdp's attach modes)."""

    NATIVE = lib.RL_XDP_MODE_NATIVE  # in the driver, before an skb exists (underlay NIC)
    SKB = lib.RL_XDP_MODE_SKB  # generic: on the skb, any device (pod veths)


def object_path(name: str) -> Path:
    """The compiled BPF object `name` (e.g. "from_pod"), shipped next to this package.

    The objects are build artefacts (setup.py compiles bpf/*.bpf.c), so a missing file means an
    incomplete install rather than a runtime problem.
    """
    path = Path(__file__).parent / "bpf" / f"{name}.o"
    if not path.is_file():
        raise BpfError(
            errno.ENOENT,
            f"BPF object {path} not found: the XDP programs are compiled at install time; "
            "run pip install -e . (needs clang and libbpf-dev)",
        )
    return path


def _unescape_mountinfo(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mount_fstype(path: Path) -> str | None:
    """Filesystem type of the mount that contains `path` (which must exist), or None."""
    best: tuple[int, str] | None = None
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, sep, right = line.partition(" - ")
            if not sep:
                continue
            fields = left.split()
            if len(fields) < 5:
                continue
            mnt = _unescape_mountinfo(fields[4])
            inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
            # Later lines are mounts stacked on top of earlier ones: ">=" keeps the last.
            if inside and (best is None or len(mnt) >= best[0]):
                best = (len(mnt), right.split()[0])
    return best[1] if best else None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


# libxdp creates this directory (its lock and dispatcher pins) on the first attach through it
LIBXDP_DIR = BPFFS_ROOT / "xdp"


def remove_libxdp_dir() -> bool:
    """Remove libxdp's directory if it is empty (nothing of anyone's pinned in it); libxdp
    makes it again when it next needs it. True if it was removed."""
    try:
        LIBXDP_DIR.rmdir()
    except OSError:  # absent, not empty, or no bpffs: nothing to do
        return False
    return True


def ensure_bpffs(path: Path) -> None:
    """Make `path` an existing directory on a BPF filesystem (mkdir -p, mounting bpffs if needed).

    Pinned maps outlive the agent only on bpffs. A path under /sys/fs/bpf gets bpffs mounted at
    /sys/fs/bpf itself (the conventional place, also where libxdp looks); any other path gets it
    mounted on the path. Creating directories first would fail or land on the wrong filesystem
    (/sys/fs/bpf is a read-only sysfs directory until bpffs is mounted there).
    """
    path = Path(os.path.abspath(path))
    if _mount_fstype(_nearest_existing(path)) != _BPFFS_TYPE:
        under_root = path == BPFFS_ROOT or BPFFS_ROOT in path.parents
        mountpoint = BPFFS_ROOT if under_root else path
        try:
            mountpoint.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BpfError(
                e.errno or errno.EIO, f"cannot create bpffs mount point {mountpoint}: {e}"
            ) from e
        try:
            res = subprocess.run(
                ["mount", "-t", "bpf", "bpf", str(mountpoint)],
                capture_output=True,
                text=True,
                check=False,
            )
            failure = res.stderr.strip() or f"exit status {res.returncode}"
        except OSError as e:  # no mount(8) in the image
            res, failure = None, str(e)
        if res is None or res.returncode != 0:
            raise BpfError(
                errno.EPERM,
                f"mounting bpffs at {mountpoint} failed ({failure}); "
                "run as root with CAP_SYS_ADMIN, or mount it beforehand "
                "(a hostPath volume for /sys/fs/bpf in the DaemonSet)",
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BpfError(e.errno or errno.EIO, f"cannot create pin directory {path}: {e}") from e


class XdpAttachment:
    """One program attached to one interface; `detach()` removes exactly that program.

    `multiprog` tells whether libxdp's dispatcher holds the hook (other XDP programs can share
    the interface) or our program was attached alone.
    """

    def __init__(
        self, handle: Any, *, prog: str, ifindex: int, mode: XdpMode, multiprog: bool
    ) -> None:
        self._handle = handle
        self.prog = prog
        self.ifindex = ifindex
        self.mode = mode
        self.multiprog = multiprog

    @property
    def attached(self) -> bool:
        """False once detach() or release() was called."""
        return self._handle is not None

    def detach(self) -> None:
        """Detach our program; a program someone else attached since is left alone (ENOENT).

        Must be called while the XdpObject that attached it is still open (the kernel matches
        the program through its fd). Calling it twice is a no-op.
        """
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        rc = lib.rl_xdp__detach(handle)
        if rc < 0:
            raise _fail(
                rc,
                f"detaching {self.prog} from ifindex {self.ifindex} ({self.mode.name})",
                "another program replaced it; inspect with `ip -d link show`",
            )

    def release(self) -> None:
        """Forget the attachment but leave the program attached (e.g. across an agent restart).

        It can later be removed with detach_by_name().
        """
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        lib.rl_xdp__release(handle)

    def __repr__(self) -> str:
        return (
            f"XdpAttachment({self.prog!r}, ifindex={self.ifindex}, mode={self.mode.name}, "
            f"multiprog={self.multiprog}, attached={self.attached})"
        )


class XdpObject:
    """A loaded BPF object whose maps are pinned in (or reused from) `pin_dir`.

    Opening, setting load-time constants and loading happen in the constructor, because an
    object whose constants are not yet set must never be loaded by accident. Load-time constants
    are the object's `const volatile __u32` globals (rl_cfg_*).
    """

    def __init__(self, path: Path, *, pin_dir: Path, consts: Mapping[str, int]) -> None:
        self.path = Path(path)
        self.pin_dir = Path(pin_dir)
        self._obj: Any = None
        out = ffi.new("struct rl_bpfobj **")
        rc = lib.rl_bpfobj__open(str(self.path).encode(), str(self.pin_dir).encode(), out)
        if rc < 0:
            raise _fail(rc, f"opening BPF object {self.path}", "is it a Ringlane build artefact?")
        self._obj = out[0]
        try:
            for name, value in consts.items():
                # Every rl_cfg_* is a __u32: the C side checks the size against the BTF.
                if not 0 <= value < 1 << 32:
                    raise ValueError(f"{name}={value}: load-time constants are __u32")
                rc = lib.rl_bpfobj__set_const(self._obj, name.encode(), value, 4)
                if rc < 0:
                    raise _fail(
                        rc,
                        f"setting load-time constant {name} in {self.path}",
                        "the object has no __u32 const volatile of that name",
                    )
            rc = lib.rl_bpfobj__load(self._obj)
            if rc < 0:
                raise _fail(
                    rc,
                    f"loading {self.path} with maps pinned in {self.pin_dir}",
                    "libbpf's messages (verifier log, pinned-map mismatches) are on stderr; "
                    "maps pinned by another Ringlane version must be removed with cleanup first",
                )
        except BaseException:
            self.close()
            raise

    def _handle(self) -> Any:
        if self._obj is None:
            raise BpfError(errno.EBADF, f"BPF object {self.path} is closed")
        return self._obj

    def prog_fd(self, name: str) -> int:
        """fd of program `name`; owned by this object (closed by close())."""
        fd: int = lib.rl_bpfobj__prog_fd(self._handle(), name.encode())
        if fd < 0:
            raise _fail(fd, f"program {name} in {self.path}")
        return fd

    def map_fd(self, name: str) -> int:
        """fd of map `name`; owned by this object (closed by close())."""
        fd: int = lib.rl_bpfobj__map_fd(self._handle(), name.encode())
        if fd < 0:
            raise _fail(fd, f"map {name} in {self.path}")
        return fd

    def attach(self, prog: str, ifindex: int, mode: XdpMode) -> XdpAttachment:
        """Attach program `prog` to `ifindex` in `mode`, never replacing someone else's program.

        Detach (or release) the attachment before closing this object.
        """
        out = ffi.new("struct rl_xdp_attachment **")
        multiprog = ffi.new("int *")
        rc = lib.rl_xdp__attach(self._handle(), prog.encode(), ifindex, int(mode), multiprog, out)
        if rc < 0:
            hint = (
                "another XDP program holds the interface; inspect with `ip -d link show` "
                "and remove it, or run the agent's cleanup if it is a stale Ringlane program"
                if rc == -errno.EEXIST
                else "the driver may not support this mode; see libxdp/libbpf messages on stderr"
            )
            raise _fail(rc, f"attaching {prog} to ifindex {ifindex} ({mode.name})", hint)
        return XdpAttachment(
            out[0], prog=prog, ifindex=ifindex, mode=mode, multiprog=bool(multiprog[0])
        )

    def close(self) -> None:
        """Close the object and its fds. Pinned maps stay; attached programs stay attached."""
        if self._obj is not None:
            lib.rl_bpfobj__close(self._obj)
            self._obj = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def detach_by_name(ifindex: int, mode: XdpMode, prog_name: str) -> bool:
    """Detach our program `prog_name` from `ifindex` if attached there in `mode`.

    For recovery after a crash, when no XdpAttachment survived. Programs of any other name are
    never touched. True if ours was removed, False if it was not there.
    """
    rc = lib.rl_xdp__detach_by_name(ifindex, int(mode), prog_name.encode())
    if rc == -errno.ENOENT:
        return False
    if rc < 0:
        raise _fail(rc, f"detaching {prog_name} from ifindex {ifindex} ({mode.name})")
    return True


def test_run(
    prog_fd: int, packet: bytes, *, ingress_ifindex: int = 0, rx_queue: int = 0
) -> tuple[int, bytes]:
    """Run an XDP program once on `packet` (BPF_PROG_TEST_RUN); return (XDP action, packet out).

    `ingress_ifindex` must name an existing device in the caller's network namespace and
    `rx_queue` one of its receive queues (the kernel checks both); 0 means the namespace's
    loopback device, queue 0. Redirects are only decided, not performed.
    """
    size_out = len(packet) + _TEST_RUN_SLACK
    data_out = ffi.new("unsigned char[]", size_out)
    size = ffi.new("__u32 *", size_out)
    retval = ffi.new("__u32 *")
    rc = lib.rl_bpf__test_run(
        prog_fd,
        ffi.from_buffer(packet),
        len(packet),
        data_out,
        size,
        ingress_ifindex,
        rx_queue,
        retval,
    )
    if rc < 0:
        raise _fail(
            rc,
            f"BPF_PROG_TEST_RUN of prog fd {prog_fd} ({len(packet)} bytes, "
            f"ifindex {ingress_ifindex}, queue {rx_queue})",
            "ifindex/queue must exist in this network namespace",
        )
    return int(retval[0]), bytes(ffi.buffer(data_out, size[0]))
