"""Deletions the plugin could not hand to the agent, kept on disk until the agent drains them.

A DEL must succeed while the agent is down (kubelet retries a failed DEL forever and the pod
cannot go away meanwhile), yet the agent must learn about it, or it would keep an endpoint for
a veth that no longer exists. So the plugin appends the deletion here and the agent, once its
control socket is listening, calls `drain(state_dir)` and applies what it returns like cni_del
requests (draining after listening means no deletion can be queued after the drain by a plugin
that still found no socket).

Format: `<stateDir>/del-queue.jsonl`, one JSON object per line, oldest first:

    {"op": "cni_del", "containerId": "<CNI_CONTAINERID>", "ifName": "<CNI_IFNAME>",
     "queuedAt": <unix time, seconds>}

* At most MAX_ENTRIES lines; when full, the oldest are dropped (the agent's own reconciliation
  against the node's veths remains the backstop for those).
* One entry per (containerId, ifName): a repeated DEL (containerd sends two) is queued once.
* Every change rewrites the whole file through a temporary file, fsync and rename, under an
  exclusive flock on `<stateDir>/del-queue.lock` (the data file itself is replaced, so it
  cannot carry the lock): concurrent plugins and the agent never see a torn file.

Standard library only: the plugin imports this module in its isolated interpreter.
"""

from __future__ import annotations

import fcntl
import json
import os
import time

QUEUE_FILE = "del-queue.jsonl"
LOCK_FILE = "del-queue.lock"
MAX_ENTRIES = 1024


def _valid(entry: object) -> bool:
    return (isinstance(entry, dict) and entry.get("op") == "cni_del"
            and isinstance(entry.get("containerId"), str)
            and isinstance(entry.get("ifName"), str))


def _lock(state_dir: str) -> int:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int) -> None:
    os.close(fd)  # closing the only descriptor releases the flock


def _read(state_dir: str) -> list[dict[str, object]]:
    """The queued entries, oldest first; lines that are not entries are skipped (the file is
    only ever replaced whole, so such a line was written by something else)."""
    try:
        with open(os.path.join(state_dir, QUEUE_FILE), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    entries: list[dict[str, object]] = []
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if _valid(entry):
            entries.append(entry)
    return entries


def _fsync_dir(state_dir: str) -> None:
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(state_dir: str, entries: list[dict[str, object]]) -> None:
    path = os.path.join(state_dir, QUEUE_FILE)
    tmp = f"{path}.{os.getpid()}.tmp"
    data = b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in entries)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(state_dir)


def enqueue(state_dir: str, container_id: str, if_name: str) -> int:
    """Queue the deletion of (container_id, if_name); returns how many of the oldest entries
    were dropped to stay within MAX_ENTRIES (0 normally). Raises OSError when stateDir cannot
    be written."""
    fd = _lock(state_dir)
    try:
        entries = _read(state_dir)
        if any(e["containerId"] == container_id and e["ifName"] == if_name for e in entries):
            return 0
        dropped = max(0, len(entries) + 1 - MAX_ENTRIES)
        entries = entries[dropped:]
        entries.append({"op": "cni_del", "containerId": container_id, "ifName": if_name,
                        "queuedAt": round(time.time(), 3)})
        _write(state_dir, entries)
        return dropped
    finally:
        _unlock(fd)


def pending(state_dir: str) -> list[dict[str, object]]:
    """The queued deletions without removing them (diagnostics)."""
    if not os.path.isdir(state_dir):
        return []
    fd = _lock(state_dir)
    try:
        return _read(state_dir)
    finally:
        _unlock(fd)


def drain(state_dir: str) -> list[dict[str, object]]:
    """Remove and return every queued deletion, oldest first. The agent applies each like a
    cni_del request; a second drain returns only what was queued since."""
    if not os.path.isdir(state_dir):
        return []
    fd = _lock(state_dir)
    try:
        entries = _read(state_dir)
        path = os.path.join(state_dir, QUEUE_FILE)
        if os.path.exists(path):
            os.unlink(path)
            _fsync_dir(state_dir)
        return entries
    finally:
        _unlock(fd)
