"""Readings of the machine itself: CPU time per CPU and per process, and what it is.

Nothing here changes the system. CPU time comes from /proc: /proc/stat per CPU (split into user,
system, softirq, idle), /proc/<pid>/stat per process (utime + stime, in clock ticks; the kernel
samples them at HZ and charges a tick spent in softirq to the task it interrupted) and
/proc/<pid>/task/*/schedstat (nanoseconds on CPU, per thread, summed).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")

# /proc/stat columns after the CPU name, in order
_STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


@dataclass(frozen=True)
class CpuSnapshot:
    """/proc/stat's per-CPU counters (clock ticks) at one moment."""

    per_cpu: dict[str, dict[str, int]]

    @classmethod
    def take(cls) -> CpuSnapshot:
        """Read /proc/stat now."""
        per_cpu: dict[str, dict[str, int]] = {}
        for line in Path("/proc/stat").read_text().splitlines():
            name, *vals = line.split()
            if re.fullmatch(r"cpu\d+", name):
                per_cpu[name] = {f: int(v) for f, v in zip(_STAT_FIELDS, vals, strict=False)}
        return cls(per_cpu)


def cpu_split(a: CpuSnapshot, b: CpuSnapshot) -> dict[str, dict[str, float]]:
    """Per CPU, the share of the interval [a, b] spent in user (with nice), system, softirq
    (with hardirq) and idle (with iowait), in percent."""
    out: dict[str, dict[str, float]] = {}
    for cpu, end in b.per_cpu.items():
        start = a.per_cpu.get(cpu)
        if start is None:
            continue
        d = {f: end[f] - start[f] for f in _STAT_FIELDS if f in end}
        total = sum(d.values()) or 1
        out[cpu] = {
            "user": 100.0 * (d["user"] + d["nice"]) / total,
            "system": 100.0 * d["system"] / total,
            "softirq": 100.0 * (d["softirq"] + d["irq"]) / total,
            "idle": 100.0 * (d["idle"] + d["iowait"]) / total,
        }
    return out


def process_ticks_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of a process, all its threads included (and cutime + cstime of its waited-
    for children if asked), in seconds; 0.0 if it is gone. Resolution: one clock tick."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # the command name may contain spaces and parentheses: fields start after the last ')'
    fields = text[text.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def process_runtime_seconds(pid: int) -> float:
    """Time on CPU of every live thread of a process, from schedstat (nanosecond resolution);
    0.0 if it is gone."""
    total = 0
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


@dataclass(frozen=True)
class TaskTimes:
    """Time on CPU of every process on the machine at one moment (schedstat, ns resolution):
    pid -> (command name, seconds, kernel thread?)."""

    tasks: dict[int, tuple[str, float, bool]]

    @classmethod
    def take(cls) -> TaskTimes:
        """Read every process's stat and schedstat now (a few milliseconds)."""
        tasks: dict[int, tuple[str, float, bool]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                text = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            flags = int(text[text.rindex(")") + 2:].split()[6])
            tasks[int(entry.name)] = (comm, process_runtime_seconds(int(entry.name)),
                                      bool(flags & PF_KTHREAD))
        return cls(tasks)


def others_cpu(a: TaskTimes, b: TaskTimes, ours: set[int]) -> dict[str, Any]:
    """CPU seconds used between a and b by processes that are not `ours` (another test run, a
    neighbour's benchmark) and by kernel threads (ksoftirqd, kworkers: often our own packets'
    softirq work), with the three busiest other processes."""
    others: dict[str, float] = {}
    kthreads = 0.0
    for pid, (comm, secs, kthread) in b.tasks.items():
        used = secs - (a.tasks[pid][1] if pid in a.tasks else 0.0)
        if kthread:
            kthreads += used
        elif pid not in ours:
            others[f"{comm}[{pid}]"] = used
    return {"others_s": sum(others.values()), "kthreads_s": kthreads,
            "top_others": sorted(others.items(), key=lambda kv: -kv[1])[:3]}


def _first_line(*cmd: str) -> str:
    """The first line a command prints (a tool's version), or "missing"."""
    if shutil.which(cmd[0]) is None:
        return "missing"
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = (p.stdout or p.stderr).strip().splitlines()
    return out[0].strip() if out else ""


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _git_commit(root: Path) -> str:
    """HEAD of the checkout at `root`, "+dirty" if agent/ or bpf/ differ from it, or
    "unknown" outside a git checkout."""
    p = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "agent",
                            "bpf"], capture_output=True, text=True).stdout.strip()
    return p.stdout.strip() + ("+dirty" if dirty else "")


def code_fingerprint(root: Path) -> str:
    """A digest of everything the agent runs (agent/ with its built .so and BPF objects, bpf/):
    identifies the code measured even when the tree has uncommitted changes, and tells when it
    changed under a running benchmark (every agent start loads it afresh)."""
    h = hashlib.sha256()
    for top in ("agent", "bpf"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(str(path.relative_to(root)).encode() + b"\0")
                with contextlib.suppress(OSError):
                    h.update(path.read_bytes())
    return h.hexdigest()[:12]


def machine_info(root: Path) -> dict[str, Any]:
    """What the figures were measured on: kernel, CPUs, date, tool versions, Ringlane commit."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kernel": platform.release(),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ringlane_commit": _git_commit(root),
        "code_fingerprint": code_fingerprint(root),
        "tools": {
            "trafgen": _first_line("trafgen", "-v"),
            "iperf3": _first_line("iperf3", "--version"),
            "sockperf": _first_line("sockperf", "--version"),
            "clang": _first_line("clang", "--version"),
        },
    }


def foreign_sandboxes(own_prefix: str) -> list[str]:
    """Network namespaces of other Ringlane sandboxes (a concurrent test run or benchmark):
    they share these CPUs, so their traffic would distort our figures."""
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = [line.split()[0] for line in p.stdout.splitlines() if line.strip()]
    return sorted(n for n in names if re.match(r"rl[0-9a-f]{6}-", n)
                  and not n.startswith(own_prefix + "-"))
